/*
 * http1: HTTP/1.1 request parsing behind our own interface (http_parser underneath).
 *
 * Feeds bytes as they arrive and reports one request at a time: the head (method, target,
 * headers) when it is complete, then the body (Content-Length or chunked, de-chunked), then
 * the end of the message. Parsing stops after each complete message, so pipelined requests
 * stay in the caller's buffer until the response to the previous one has been written.
 *
 * Every bound is checked here: header bytes (431), header count (431), body bytes (413),
 * malformed syntax (400), unsupported version (505). Slices in the head point into the
 * parser's own storage and stay valid until http1_reset().
 */
#ifndef GW_HTTP1_H
#define GW_HTTP1_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "core/request-t.h"

#define HTTP1_MAX_HEADERS 100

enum http1_state {
    HTTP1_HEAD = 0, /* reading the request line and headers */
    HTTP1_BODY,     /* head complete, reading the body */
    HTTP1_DONE,     /* a whole message was read; call http1_reset() before the next */
    HTTP1_ERROR,    /* the request is unusable; `error_status` says how to answer */
};

struct http1_parser {
    http_parser hp;
    enum http1_state state;
    uint64_t max_header;
    uint64_t max_body;

    /* Head storage: url and header names/values are copied here as they arrive. */
    struct gw_buf head;
    size_t url_off, url_len;
    struct {
        size_t name_off, name_len, value_off, value_len;
    } raw_headers[HTTP1_MAX_HEADERS];
    size_t n_headers;
    int in_value; /* the last callback was a header value */
    size_t header_bytes;

    /* Filled when the head is complete. */
    enum gw_http_method method;
    struct gw_slice method_name;
    struct gw_slice target; /* request-target as sent */
    struct gw_slice path;   /* target without the query */
    struct gw_slice query;  /* after '?', without it */
    struct gw_header headers[HTTP1_MAX_HEADERS];
    int http_minor; /* 0 or 1 (major is always 1) */
    int keep_alive; /* the client wants the connection kept */
    int expect_continue;
    int chunked;
    uint64_t content_length; /* when not chunked */
    int has_content_length;

    struct gw_buf raw_head; /* the head's bytes as received, checked against the grammar */
    struct gw_buf body;
    int error_status;      /* 400, 413, 431, 505, 501 when state == HTTP1_ERROR */
    const char *error_msg; /* static text safe to send */
};

void http1_init(struct http1_parser *p, uint64_t max_header, uint64_t max_body);
/* Forgets the previous message (keeps buffers' capacity) to read the next one. */
void http1_reset(struct http1_parser *p);
void http1_free(struct http1_parser *p);

/*
 * Feeds bytes. Returns how many were consumed: fewer than len when a message ended (the rest
 * belongs to the next, pipelined, request) or when an error stopped parsing. Check
 * p->state after each call.
 */
size_t http1_feed(struct http1_parser *p, const char *data, size_t len);

/* Returns the first header with this name (case-insensitive) or a NULL slice. */
struct gw_slice http1_header(const struct http1_parser *p, const char *name);
size_t http1_header_count(const struct http1_parser *p, const char *name);

/* The standard reason phrase for a status code ("OK", "Not Found", ...). */
const char *http1_reason(int status);

#endif
