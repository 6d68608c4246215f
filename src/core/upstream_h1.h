/*
 * upstream_h1: toolgate's own HTTP/1.1 client for plain-http backends, on the worker's libuv
 * loop. core/upstream.c sends an exchange here when it needs nothing libcurl adds: the URL
 * is http://, and the address to connect to is known without a lookup (the routing layer's
 * pin, an IP literal, or a local backend's unix socket). Everything else (https, a name to
 * resolve, a URL this client does not take as it is) still goes through libcurl.
 *
 * Per worker, idle keep-alive connections are pooled by what they connect to and are reused
 * most recently used first; an idle connection stays in the loop's read set, so a backend
 * that closes it is noticed at once and it is never handed out. A request sent on a reused
 * connection that the backend closed before any byte of an answer is sent once more on a
 * fresh connection, as curl does.
 *
 * The response reader (upstream_h1_reader_*) is a pure engine: bytes in, head and body out,
 * no sockets. It is what the fuzz driver exercises.
 */
#ifndef GW_UPSTREAM_H1_H
#define GW_UPSTREAM_H1_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/upstream.h"
#include "lib/buf.h"

/* Response head bounds: an answer beyond them is a protocol error (502). */
#define UPSTREAM_H1_MAX_HEAD 65536
#define UPSTREAM_H1_MAX_HEADERS 64

/* ---- the response reader ---- */

struct upstream_h1_reader_callbacks {
    /* The final head (interim 1xx heads are skipped). Nonzero: stop reading. */
    int (*on_head)(void *arg, int status, const struct gw_header *headers, size_t n);
    /* Body bytes, de-chunked. Nonzero: stop reading. */
    int (*on_body)(void *arg, const char *data, size_t len);
};

enum upstream_h1_reader_state {
    UPSTREAM_H1_HEAD = 0, /* reading the status line and the header fields */
    UPSTREAM_H1_BODY,     /* the final head was reported; reading the body */
    UPSTREAM_H1_DONE,     /* one whole answer was read */
    UPSTREAM_H1_ERROR,    /* malformed or out of bounds: `error` says what */
    UPSTREAM_H1_STOPPED,  /* a callback asked to stop */
};

struct upstream_h1_reader {
    http_parser hp;
    enum upstream_h1_reader_state state;
    struct gw_buf head; /* header names and values as they arrive */
    uint32_t name_off[UPSTREAM_H1_MAX_HEADERS], name_len[UPSTREAM_H1_MAX_HEADERS];
    uint32_t value_off[UPSTREAM_H1_MAX_HEADERS], value_len[UPSTREAM_H1_MAX_HEADERS];
    size_t n_headers;
    size_t head_bytes; /* of the current head, for the bound */
    int in_value;
    int got_bytes;     /* any byte of an answer arrived */
    const char *error; /* static text */
    const struct upstream_h1_reader_callbacks *cb;
    void *arg;
};

void upstream_h1_reader_init(struct upstream_h1_reader *r,
                             const struct upstream_h1_reader_callbacks *cb, void *arg);
/* Frees the head storage (r may be initialised again after). */
void upstream_h1_reader_free(struct upstream_h1_reader *r);
/*
 * Feeds bytes of the connection. Returns how many were taken; check r->state after. Once
 * DONE, the bytes not taken follow the answer (a well-behaved backend sends none).
 */
size_t upstream_h1_reader_feed(struct upstream_h1_reader *r, const char *data, size_t len);
/* The connection ended: an answer read to its end becomes DONE, anything else ERROR. */
void upstream_h1_reader_eof(struct upstream_h1_reader *r);
/* After DONE: whether the connection may carry another request. */
int upstream_h1_reader_keep_alive(const struct upstream_h1_reader *r);

/* ---- the client ---- */

struct upstream_h1_pool;
/* Begins with an int that is always UPSTREAM_H1_KIND (core/upstream.c tells calls apart so). */
struct upstream_h1_call;
#define UPSTREAM_H1_KIND 2

/* Where an exchange goes, when this client takes it (upstream_h1_target). */
#define UPSTREAM_H1_MAX_ADDRS 8
struct upstream_h1_target {
    char host[264];    /* the Host header's value */
    char target[4096]; /* request-target: path and query */
    char key[384];     /* the pool key: what an idle connection must match to be reused */
    struct sockaddr_storage addrs[UPSTREAM_H1_MAX_ADDRS];
    size_t n_addrs;
    const char *unix_socket; /* connect here instead (the request's string) */
};

/*
 * Whether this client takes the request, and where it goes. 1 yes (t filled), 0 no (libcurl
 * takes it: https, a name to resolve, a pin for another host, a URL out of the plain form).
 */
int upstream_h1_target(const struct upstream_request *r, struct upstream_h1_target *t);

struct upstream_h1_pool *upstream_h1_pool_new(uv_loop_t *loop);
/* Closes every connection; calls still running are dropped with no callback. Frees itself. */
void upstream_h1_pool_close(struct upstream_h1_pool *p);
size_t upstream_h1_pool_active(const struct upstream_h1_pool *p);

/* 1 when a header can go on one request line as given: a name with no ':' and neither name
 * nor value holding CR, LF or NUL (either would end the line early and start another). Both
 * upstream clients refuse a request with a header that fails it. */
int upstream_h1_header_ok(const struct gw_header *h);

/* As upstream_start, for a request upstream_h1_target took. NULL when it cannot start. */
struct upstream_h1_call *upstream_h1_start(struct upstream_h1_pool *p,
                                           const struct upstream_request *r,
                                           const struct upstream_h1_target *t,
                                           const struct upstream_callbacks *cb, void *arg);
void upstream_h1_resume(struct upstream_h1_call *c);
void upstream_h1_cancel(struct upstream_h1_call *c);

#endif
