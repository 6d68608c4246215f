/*
 * upstream: HTTP requests to backends, driven by the worker's libuv loop, so thousands of
 * exchanges share one thread and each backend's keep-alive connections are reused. A
 * plain-http request whose address is known (a pin, an address literal, a unix socket) goes
 * through toolgate's own HTTP/1.1 client (core/upstream_h1.c); anything else (https, a name
 * to resolve) through libcurl's multi interface (socket and timer callbacks on the loop).
 *
 * The response streams back through callbacks as it arrives. on_data may ask for a pause
 * (the client is slow); upstream_resume() continues, and the same bytes are delivered again.
 * No callback is made from inside upstream_start.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lib/buf.h"
#include "core/request-t.h"

enum upstream_error {
    UPSTREAM_OK = 0,
    UPSTREAM_ECONNECT = -1, /* refused, unreachable, name not resolved: 502 */
    UPSTREAM_ETIMEOUT = -2, /* connect timed out: 504 */
    UPSTREAM_EPROTO = -3,   /* malformed answer or connection lost mid-answer: 502 */
    UPSTREAM_ENOMEM = -4,
    UPSTREAM_ECANCELED = -5, /* never reported: a canceled call gets no callback */
};

struct upstream_multi;
struct upstream_call;

struct upstream_callbacks {
    /* The final response head (after any 1xx). Slices are valid during the call only. */
    void (*on_head)(void *arg, int status, const struct gw_header *headers, size_t n);
    /* Body bytes. Return 0 when taken, 1 to pause (the same bytes come again on resume). */
    int (*on_data)(void *arg, const char *data, size_t len);
    /* The exchange ended (err is an upstream_error; 0 = complete). The call is freed after. */
    void (*on_done)(void *arg, int err, const char *detail);
};

struct upstream_request {
    const char *url;
    enum gw_http_method method;
    struct gw_slice body; /* must stay valid until on_done or upstream_cancel */
    const struct gw_header *headers;
    size_t n_headers;
    uint64_t connect_timeout_ms;
    /* "host:port:address": connect to this vetted address only (NULL or "": resolve). */
    const char *pin;
    /*
     * https: the CA bundle the backend's certificate is verified against (NULL: the system's)
     * and a client certificate and key to present (both or neither). Verification of the
     * peer and its name is always on.
     */
    const char *ca_file, *cert_file, *key_file;
    /*
     * A local backend's private endpoint (gw_backend.local_socket): connect to this unix
     * socket instead of the URL's host. Only then does GW_LOCAL_PRINCIPAL_HEADER go out.
     */
    const char *unix_socket;
};

/* The pseudonymous user a local backend keys per-user instances on (set by routing). */
#define GW_LOCAL_PRINCIPAL_HEADER "X-Toolgate-Local-Principal"

struct upstream_multi *upstream_multi_new(uv_loop_t *loop);
/* Cancels what is still running and closes the loop handles; frees itself once closed. */
void upstream_multi_close(struct upstream_multi *m);
size_t upstream_multi_active(const struct upstream_multi *m);

/* Starts a request. Returns NULL when it cannot start (out of memory, bad URL). */
struct upstream_call *upstream_start(struct upstream_multi *m, const struct upstream_request *r,
                                     const struct upstream_callbacks *cb, void *arg);
/* Continues a call whose on_data asked for a pause. Safe to call when not paused. */
void upstream_resume(struct upstream_call *c);
/* Stops a call; no callback follows. Safe from inside this call's own callbacks. */
void upstream_cancel(struct upstream_call *c);

#endif
