/*
 * exchange: one request being served on a route, from its decoding to the last byte of its
 * answer. The proxy's files and the route kinds share it:
 *
 *   proxy.c    the handler: gateway paths, route match, the kind's prepare, the pipeline;
 *   exchange.c its life: timers, holding the answer until its audit record is durable,
 *              the log line, the end;
 *   answers.c  answers toolgate gives itself: denials, errors, results it makes;
 *   relay.c    the way to the backend and back: one upstream request builder, one path
 *              through the response hooks, SSE event by event or buffered within bounds;
 *              and the core's own route kind (gw_relay_kind).
 *
 * An exchange lives on its worker's thread only.
 */
#ifndef GW_EXCHANGE_H
#define GW_EXCHANGE_H

#include <jansson.h>
#include <stdatomic.h>
#include <uv.h>

#include "core/request.h"
#include "core/route_kind.h"
#include "core/server.h"
#include "core/upstream.h"
#include "lib/buf.h"
#include "mcp/sse.h"

/* Bounds on the few header values that are copied into the request context. */
#define EXCHANGE_MAX_SESSION_ID 256
#define EXCHANGE_MAX_PROTOCOL_VERSION 64
#define EXCHANGE_MAX_OUT_HEADERS (8 + GW_MAX_RESPONSE_HEADERS)

enum relay_mode { RELAY_NONE = 0, RELAY_SSE, RELAY_BUFFER };

struct exchange {
    struct gw_conn *conn; /* NULL once the client has gone */
    struct gw_worker *w;
    struct gw_request *req;
    /* The generation the request started on: held until the exchange is freed. */
    const struct gw_config *cfg;
    const struct gw_route_kind *kind;
    void *kind_state; /* the kind's own, freed with kind->free_state */
    struct upstream_call *up;
    uv_timer_t timer;
    enum relay_mode mode;
    int finished;
    struct gw_buf resp;     /* buffered answer body */
    struct gw_buf resp_hdr; /* storage of relayed header values */
    struct gw_header out_headers[EXCHANGE_MAX_OUT_HEADERS];
    size_t n_out;
    struct sse_parser sse;
    uint64_t max_response;
    int answer_status; /* a buffered answer's status the kind set in on_message (0: the backend's)
                        */

    /*
     * The answer held back until its completion record is durable: a whole answer (status,
     * headers, body), or the tail of an event stream from its final response on.
     */
    int held_whole;
    int held_status;
    struct gw_header held_headers[EXCHANGE_MAX_OUT_HEADERS + 4];
    size_t n_held_headers;
    struct gw_buf held_hdr_storage;
    struct gw_buf held_body;
    int holding_stream;
    int abandon;
    _Atomic int durable_ok;
    /*
     * The backend asked the client something this revision does not have (a server request
     * not in the method table): the client's call is answered with an error and the stream
     * ends, rather than both sides waiting for an answer that cannot come.
     */
    char refused_request[64];
    int end_stream;
    /*
     * A client server stream (GET) on the worker's list for list_changed notifications after
     * a reload (reload_notify.c), with the policy digest it was last told about.
     */
    int stream_listed;
    struct exchange *stream_next, *stream_prev;
    uint8_t lists_seen[32];
};

/* ---- reload_notify.c ---- */

/* Puts an open GET stream on (or takes it off) its worker's list; the worker's thread. */
void reload_notify_stream_open(struct exchange *x);
void reload_notify_stream_close(struct exchange *x);

/* ---- exchange.c ---- */

/* A new exchange for a request on `route` read from c (its request context made). NULL: memory. */
struct exchange *exchange_new(struct gw_conn *c, const struct gw_route *route);
/*
 * Ends the exchange: completes the layers (audit last, which queues the completion record)
 * and releases the answer, at once or, when the audit layer holds it, once the record is
 * durable. `abandon` cuts a stream short (no terminating chunk, connection closed).
 */
void exchange_finish(struct exchange *x, int abandon);
/* Keeps a whole answer until the exchange is released (copies headers and body). */
void exchange_hold_whole(struct exchange *x, int status, const struct gw_header *h, size_t n,
                         const char *body, size_t len);
/* (Re)starts the exchange's one timer: `ms` from now (0 stops it). */
void exchange_arm_timer(struct exchange *x, uint64_t ms);
/* The timeouts of the backend the exchange talks to. */
const struct gw_route_timeouts *exchange_timeouts(const struct exchange *x);
/* The handler's hooks for the client leaving and the server draining. */
void exchange_on_client_gone(void *arg);
void exchange_on_server_shutdown(void *arg);

/* ---- answers.c ---- */

/* A whole JSON answer (status, body, extra headers, the layers' response headers), held. */
void answer_json(struct exchange *x, int status, const char *body, size_t len,
                 const struct gw_header *extra, size_t n_extra);
/* The request was denied: the deciding decision, in the kind's shape; ends the exchange. */
void answer_denied(struct exchange *x);
/* An error toolgate answers with (502/504 upstream, 503 memory); ends the exchange. */
void answer_error(struct exchange *x, int status, int code, const char *message,
                  const char *reason_code);
/*
 * A JSON-RPC result toolgate makes itself (takes the reference), passed through the response
 * hooks like any answer; ends the exchange.
 */
void answer_result(struct exchange *x, json_t *result, const struct gw_header *extra,
                   size_t n_extra);
/* An empty answer (202 for notifications, 200 for DELETE); ends the exchange. */
void answer_empty(struct exchange *x, int status);
/* Marks the request a protocol error (refused before the layers; audit still records it). */
void answer_protocol_error(struct gw_request *req, int http_status, int code,
                           const char *reason_code, const char *message);
/*
 * An answer the gateway gives outside any route (health, metadata, unknown path): carries an
 * X-Request-Id and leaves a log line like routed requests; ends the connection's request.
 */
void answer_simple(struct gw_conn *c, int status, const char *body, size_t len,
                   const struct gw_header *extra, size_t n_extra);

/* ---- proxy.c ---- */

/*
 * Decodes an MCP request (MCP-Protocol-Version and Mcp-Session-Id headers, the JSON-RPC
 * body of a POST) into the request context, or marks it a protocol error. For route kinds
 * that speak MCP to the client.
 */
void relay_decode_mcp(struct exchange *x);

/* ---- relay.c ---- */

/* What goes to the backend. Unset fields take the defaults said. */
struct relay_request {
    enum gw_http_method method;
    const char *url;      /* NULL: req->upstream_url, else the backend's URL */
    struct gw_slice body; /* must outlive the call */
    int client_headers;   /* 1: the client's allow-listed headers (relay); 0: only extra */
    const struct gw_header *extra;
    size_t n_extra;
    int no_pin;                       /* 1: resolve afresh (a backend other than the vetted one) */
    const struct gw_backend *backend; /* NULL: req->backend */
    const struct upstream_callbacks *cbs; /* NULL: relay the answer to the client */
    /*
     * 1: a call nobody waits for (closing backend sessions): its callbacks get a NULL
     * argument, and it is not the exchange's call (no timer, not cancelled with it).
     */
    int detached;
    /* 1: cbs wrap the relay's own and this call carries the request's message (a bridge). */
    int carries_request;
};

/*
 * Starts a backend call: the headers (allow-listed client headers or the given ones, then
 * X-Request-Id and the identity the layers injected), the vetted address pinned, the
 * backend's connect and first-byte timeouts; the callbacks get the exchange. Returns 0, or
 * -1 after answering 502 (a detached call: -1 and no answer).
 */
int relay_start(struct exchange *x, const struct relay_request *r);
/* The callbacks that relay an answer to the client (for kinds that wrap them). */
const struct upstream_callbacks *relay_callbacks(void);
/*
 * Runs one message of the answer through the kind's on_message and the layers' response
 * hooks. Returns the message to send on (msg itself, or a JSON-RPC error replacing it; the
 * caller owns the reference it returns and gives up msg) and sets *modified when it must be
 * re-encoded. When it was denied and `denial` is not NULL, the deciding decision is copied
 * there (denial->verdict is GW_DENY then). Returns NULL when nothing of it may reach the
 * client: a message toolgate does not understand (not in the method table for the server's
 * direction), or a notification a layer dropped; a batch loses such elements.
 */
json_t *relay_hooks(struct exchange *x, json_t *msg, int *modified, struct gw_decision *denial);

#endif
