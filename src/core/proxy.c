/*
 * proxy: what happens to one client request. The gateway's own paths (/healthz, OAuth
 * metadata) are answered here; a request on a route is decoded, run through the pipeline of
 * layers, and, when allowed, relayed to the route's backend with its answer streamed back:
 * SSE event by event (each event's message through the layers' response hooks), JSON and
 * other bodies buffered within bounds so the hooks see whole messages.
 */
#include "core/proxy.h"
#include "core/federation.h"
#include "lib/log.h"
#include "core/server.h"
#include "lib/timeutil.h"
#include "core/upstream.h"
#include "core/module.h"
#include "core/pipeline.h"
#include "mcp/session.h"
#include "mcp/jsonrpc.h"
#include "mcp/sse.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Bounds on the few header values that are copied into the request context. */
#define MAX_SESSION_ID 256
#define MAX_PROTOCOL_VERSION 64
#define MAX_OUT_HEADERS (8 + GW_MAX_RESPONSE_HEADERS)
/* The protocol revision toolgate speaks with the backends of a federated route. */
#define FED_BACKEND_PROTOCOL "2025-06-18"

enum relay_mode { RELAY_NONE = 0, RELAY_SSE, RELAY_BUFFER };

struct exchange {
    struct gw_conn *conn; /* NULL once the client has gone */
    struct gw_worker *w;
    struct gw_request *req;
    struct upstream_call *up;
    uv_timer_t timer;
    enum relay_mode mode;
    int timed_out;
    int finished;
    int in_pipeline_start;
    struct gw_buf resp;     /* buffered answer body */
    struct gw_buf resp_hdr; /* storage of relayed header values */
    struct gw_header out_headers[MAX_OUT_HEADERS];
    size_t n_out;
    struct sse_parser sse;
    uint64_t max_response;

    /*
     * The answer held back until its completion record is durable: a whole answer (status,
     * headers, body), or the tail of an event stream from its final response on.
     */
    int held_whole;
    int held_status;
    struct gw_header held_headers[MAX_OUT_HEADERS + 4];
    size_t n_held_headers;
    struct gw_buf held_hdr_storage;
    struct gw_buf held_body;
    int holding_stream;
    int abandon;
    _Atomic int durable_ok;

    /* REST tool route: POST <path>/<tool>; see rest_prepare. */
    int rest;
    char *rest_url;  /* <backend url>/<tool> */
    char *rest_body; /* the arguments as the backend gets them */

    /* Federation (a route with several backends): see core/federation.h. */
    int fed_list;          /* the answer is a backend's tools/list page to rewrite */
    size_t fed_index;      /* the backend this exchange talks to */
    char *fed_cursor;      /* that backend's cursor for tools/list */
    char *fed_body;        /* the request as the backend gets it */
    char *fed_backend_sid; /* the backend's session id */
    int fed_step;          /* FED_INIT, FED_INITIALIZED, FED_CALL */
    int fed_status;        /* status of an initialisation step */
    struct gw_buf fed_scratch;
};

enum { FED_INIT = 1, FED_INITIALIZED, FED_CALL };

static const struct gw_header *find_header(const struct gw_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (gw_slice_casecmp_eq(h[i].name, name))
            return &h[i];
    return NULL;
}

/* ---------- building answers ---------- */

static json_t *decision_meta(const struct gw_request *req, const struct gw_decision *d)
{
    json_t *m = json_object();
    json_object_set_new(m, "layer", json_string(gw_request_denial_layer(req)));
    json_object_set_new(m, "reason", json_string(d->reason_code));
    if (d->rule_id[0])
        json_object_set_new(m, "rule", json_string(d->rule_id));
    if (d->retry_after_ms)
        json_object_set_new(m, "retry_after_ms", json_integer((json_int_t)d->retry_after_ms));
    json_object_set_new(m, "request_id", json_string(req->id));
    return m;
}

/*
 * Denials that must look exactly like "there is no such thing": a hidden tool answers as a
 * nonexistent one, a session owned by someone else as an unknown session. Their answers carry
 * no decision detail (the audit record has it).
 */
static int opaque_denial(const struct gw_decision *d)
{
    return strcmp(d->reason_code, "policy.hidden") == 0 ||
           strcmp(d->reason_code, "identity.session_owner") == 0;
}

/*
 * The answer to one JSON-RPC request that was denied. A tools/call denied by a layer that
 * wants the model to see why (http 200, no JSON-RPC code) becomes a tool result with
 * isError; everything else a JSON-RPC error.
 */
static json_t *denial_for(const struct gw_request *req, const struct mcp_message *m,
                          const struct gw_decision *d)
{
    json_t *id = m && m->id ? json_incref(m->id) : json_null();
    json_t *out;
    if (m && m->method && strcmp(m->method, "tools/call") == 0 && d->http_status == 200 &&
        d->jsonrpc_code == 0) {
        json_t *meta = json_object();
        json_object_set_new(meta, "toolgate/decision", decision_meta(req, d));
        out = json_pack("{s:s, s:o, s:{s:[{s:s, s:s}], s:b, s:o}}", "jsonrpc", "2.0", "id", id,
                        "result", "content", "type", "text", "text", d->reason, "isError", 1,
                        "_meta", meta);
    } else if (opaque_denial(d)) {
        out = json_pack("{s:s, s:o, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id, "error", "code",
                        d->jsonrpc_code ? d->jsonrpc_code : -32003, "message",
                        d->reason[0] ? d->reason : "Not found");
    } else {
        int code = d->jsonrpc_code ? d->jsonrpc_code : -32003;
        json_t *data = json_object();
        json_object_set_new(data, "toolgate/decision", decision_meta(req, d));
        out = json_pack("{s:s, s:o, s:{s:i, s:s, s:o}}", "jsonrpc", "2.0", "id", id, "error",
                        "code", code, "message", d->reason[0] ? d->reason : "Denied", "data", data);
    }
    return out;
}

/* A JSON body answering every request of the batch (or the single request) with `one`. */
static char *denial_body(const struct gw_request *req, const struct gw_decision *d, size_t *len)
{
    json_t *body;
    if (req->rpc.is_batch) {
        body = json_array();
        for (size_t i = 0; i < req->rpc.n; i++)
            if (req->rpc.msgs[i].kind == MCP_REQUEST)
                json_array_append_new(body, denial_for(req, &req->rpc.msgs[i], d));
        if (json_array_size(body) == 0) {
            json_decref(body);
            body = denial_for(req, NULL, d);
        }
    } else {
        body = denial_for(req, req->rpc.n ? &req->rpc.msgs[0] : NULL, d);
    }
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    *len = s ? strlen(s) : 0;
    return s;
}

/* ---------- the exchange's life ---------- */

/* The timeouts of the backend this exchange talks to (its own, or its route's). */
static const struct gw_route_timeouts *tmo(const struct exchange *x)
{
    const struct gw_request *req = x->req;
    const struct gw_route *route = req->route;
    if (fed_route_is_federated(route) && x->fed_index < route->n_backends)
        return &route->backends[x->fed_index].timeouts;
    return req->backend ? &req->backend->timeouts : &route->timeouts;
}

static void exchange_closed(uv_handle_t *h)
{
    struct exchange *x = h->data;
    gw_buf_free(&x->held_hdr_storage);
    gw_buf_free(&x->held_body);
    gw_buf_free(&x->fed_scratch);
    free(x->fed_cursor);
    free(x->fed_body);
    free(x->fed_backend_sid);
    free(x->rest_url);
    free(x->rest_body);
    gw_buf_free(&x->resp);
    gw_buf_free(&x->resp_hdr);
    sse_parser_free(&x->sse);
    free(x);
}

static void log_request(const struct exchange *x)
{
    const struct gw_request *req = x->req;
    char fields[768];
    const struct gw_decision *d = gw_request_denial(req);
    const char *layer = gw_request_denial_layer(req);
    uint64_t ms = (gw_mono_ns() - req->timing.start_ns) / 1000000ull;
    const char *method = req->rpc.n ? req->rpc.msgs[0].method : NULL;
    snprintf(fields, sizeof fields,
             "\"http_method\":\"%.*s\",\"route\":\"%s\",\"status\":%d,\"upstream_status\":%d,"
             "\"duration_ms\":%llu,\"bytes\":%llu,\"decision\":\"%s\",\"layer\":\"%s\","
             "\"reason\":\"%s\",\"rpc_method\":\"%s\",\"messages\":%zu",
             (int)req->method_name.len, req->method_name.ptr, req->route ? req->route->name : "",
             req->response_status, req->upstream_status, (unsigned long long)ms,
             (unsigned long long)req->response_bytes, d ? "deny" : "allow", layer ? layer : "",
             d ? d->reason_code : "", method && strlen(method) < 64 ? method : "", req->rpc.n);
    gw_log(GW_LOG_INFO, "request", req->id, fields, "%s", "request done");
}

/* Keeps a whole answer until the exchange is released (see exchange_finish). */
static void hold_whole(struct exchange *x, int status, const struct gw_header *h, size_t n,
                       const char *body, size_t len)
{
    size_t off[MAX_OUT_HEADERS + 4][2];
    if (n > MAX_OUT_HEADERS + 4)
        n = MAX_OUT_HEADERS + 4;
    gw_buf_reset(&x->held_hdr_storage);
    gw_buf_reset(&x->held_body);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        off[i][0] = x->held_hdr_storage.len;
        rc |= gw_buf_append(&x->held_hdr_storage, h[i].name.ptr, h[i].name.len);
        off[i][1] = x->held_hdr_storage.len;
        rc |= gw_buf_append(&x->held_hdr_storage, h[i].value.ptr, h[i].value.len);
    }
    rc |= gw_buf_append(&x->held_body, body ? body : "", len);
    for (size_t i = 0; i < n && rc == 0; i++)
        x->held_headers[i] =
            (struct gw_header){{x->held_hdr_storage.data + off[i][0], h[i].name.len},
                               {x->held_hdr_storage.data + off[i][1], h[i].value.len}};
    x->n_held_headers = rc == 0 ? n : 0;
    x->held_status = rc == 0 ? status : 503;
    x->held_whole = 1;
}

/*
 * Sends what was held and ends the exchange. `durable` says whether the completion record
 * made it: when it did not, the client gets no result it could act on without a record (a
 * whole answer becomes 503, a stream is cut before its final response).
 */
static void exchange_release(struct exchange *x, int durable)
{
    struct gw_request *req = x->req;
    struct gw_conn *conn = x->conn;
    int abandon = x->abandon;
    x->conn = NULL;
    if (conn) {
        gw_conn_set_hooks(conn, NULL, NULL, NULL);
        if (!durable) {
            static const char lost[] =
                "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,\"message\":\"The "
                "gateway could not record this call; its result is withheld.\"}}";
            if (x->held_whole)
                gw_conn_respond(conn, 503, "application/json", lost, sizeof lost - 1, NULL, 0);
            req->response_status = 503;
            abandon = !x->held_whole;
        } else if (x->held_whole) {
            if (gw_conn_write_head(conn, x->held_status, x->held_headers, x->n_held_headers,
                                   (int64_t)x->held_body.len) == 0)
                gw_conn_write_body(conn, x->held_body.data ? x->held_body.data : "",
                                   x->held_body.len);
        } else if (x->held_body.len) {
            gw_conn_write_body(conn, x->held_body.data, x->held_body.len);
        }
    }
    log_request(x);
    gw_request_free(req);
    x->req = NULL;
    uv_close((uv_handle_t *)&x->timer, exchange_closed);
    /*
     * Last: ending the response lets go of the connection's request buffers (the request
     * context pointed into them) and may start on the next pipelined request at once.
     */
    if (conn)
        gw_conn_end(conn, abandon);
}

static void on_durable(void *arg)
{
    struct exchange *x = arg;
    struct gw_worker *w = x->w;
    exchange_release(x, atomic_load(&x->durable_ok));
    gw_worker_unref(w);
}

/* Called by the audit writer thread: hand the news to the exchange's own worker. */
static void on_durable_any_thread(void *arg, int ok)
{
    struct exchange *x = arg;
    atomic_store(&x->durable_ok, ok);
    if (gw_worker_post(x->w, on_durable, x) != 0)
        gw_log(GW_LOG_ERROR, "audit_notify_lost", NULL, NULL,
               "could not hand a durable-record notice to its worker; a connection may hang");
}

/*
 * Ends the exchange: completes the layers (audit last, which queues the completion record)
 * and releases the answer, at once or, when the audit layer holds it, once the record is
 * durable.
 */
static void exchange_finish(struct exchange *x, int abandon)
{
    if (x->finished)
        return;
    x->finished = 1;
    x->abandon = abandon;
    if (x->up) {
        upstream_cancel(x->up);
        x->up = NULL;
    }
    uv_timer_stop(&x->timer);
    struct gw_request *req = x->req;
    req->timing.end_ns = gw_mono_ns();
    req->completion_durable = on_durable_any_thread;
    req->completion_arg = x;
    gw_pipeline_complete(req);
    if (req->completion_pending) {
        /* The worker stays up (even without this connection) until the news comes. */
        gw_worker_ref(x->w);
        return;
    }
    exchange_release(x, !req->completion_lost);
}

static void respond(struct exchange *x, int status, const char *body, size_t len,
                    const struct gw_header *extra, size_t n_extra)
{
    struct gw_request *req = x->req;
    req->response_status = status;
    req->response_bytes += len;
    struct gw_header hdrs[4 + GW_MAX_RESPONSE_HEADERS];
    size_t n = 0;
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("X-Request-Id"), {req->id, strlen(req->id)}};
    for (size_t i = 0; i < n_extra && n < 4; i++)
        hdrs[n++] = extra[i];
    for (size_t i = 0; i < req->n_response_headers; i++)
        hdrs[n++] = req->response_headers[i];
    struct gw_header all[5 + GW_MAX_RESPONSE_HEADERS];
    all[0] = (struct gw_header){GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("application/json")};
    memcpy(all + 1, hdrs, n * sizeof *hdrs);
    hold_whole(x, status, all, n + 1, body, len);
}

static char *rest_error_body(const struct gw_request *req, const struct gw_decision *d,
                             const char *layer, size_t *len);

/* Answers with a JSON-RPC error for each request in the message(s), e.g. 502/504. */
static void respond_error(struct exchange *x, int status, int code, const char *message,
                          const char *reason_code)
{
    struct gw_decision d = {0};
    gw_decision_deny(&d, status, code, reason_code, message);
    size_t len;
    struct gw_request *req = x->req;
    if (x->rest) {
        char *rb = rest_error_body(req, &d, NULL, &len);
        snprintf(req->upstream_error, sizeof req->upstream_error, "%s", reason_code);
        respond(x, status == 200 ? 400 : status, rb ? rb : "", len, NULL, 0);
        free(rb);
        exchange_finish(x, 0);
        return;
    }
    /* Built like a denial, but the deciding layer is the upstream, not a governance layer. */
    json_t *body;
    json_t *data = json_pack("{s:{s:s, s:s, s:s}}", "toolgate/error", "reason", reason_code,
                             "message", message, "request_id", req->id);
    if (req->rpc.is_batch) {
        body = json_array();
        for (size_t i = 0; i < req->rpc.n; i++)
            if (req->rpc.msgs[i].kind == MCP_REQUEST)
                json_array_append_new(body,
                                      json_pack("{s:s, s:O, s:{s:i, s:s, s:O}}", "jsonrpc", "2.0",
                                                "id", req->rpc.msgs[i].id, "error", "code", code,
                                                "message", message, "data", data));
    } else {
        json_t *id = req->rpc.n && req->rpc.msgs[0].id ? req->rpc.msgs[0].id : json_null();
        body = json_pack("{s:s, s:O, s:{s:i, s:s, s:O}}", "jsonrpc", "2.0", "id", id, "error",
                         "code", code, "message", message, "data", data);
    }
    json_decref(data);
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    len = s ? strlen(s) : 0;
    snprintf(req->upstream_error, sizeof req->upstream_error, "%s", reason_code);
    respond(x, status, s ? s : "", len, NULL, 0);
    free(s);
    exchange_finish(x, 0);
}

/*
 * A REST route answers in plain HTTP terms: {"error": {code, message, layer, rule,
 * request_id}} with a status that says what happened (a tool error the model could read on
 * MCP is 403 here, a hidden or unknown tool 404).
 */
static char *rest_error_body(const struct gw_request *req, const struct gw_decision *d,
                             const char *layer, size_t *len)
{
    json_t *e = json_pack("{s:s, s:s, s:s}", "code", d->reason_code, "message",
                          d->reason[0] ? d->reason : "Denied", "request_id", req->id);
    if (e && layer)
        json_object_set_new(e, "layer", json_string(layer));
    if (e && d->rule_id[0] && strcmp(d->reason_code, "policy.hidden") != 0)
        json_object_set_new(e, "rule", json_string(d->rule_id));
    if (e && d->retry_after_ms)
        json_object_set_new(e, "retry_after_ms", json_integer((json_int_t)d->retry_after_ms));
    json_t *body = e ? json_pack("{s:o}", "error", e) : NULL;
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    *len = s ? strlen(s) : 0;
    return s;
}

static int rest_status(const struct gw_decision *d)
{
    if (d->jsonrpc_code == JSONRPC_INVALID_PARAMS && strncmp(d->reason_code, "policy.", 7) == 0)
        return 404;
    if (d->http_status == 200)
        return d->jsonrpc_code == JSONRPC_INVALID_PARAMS ? 400 : 403;
    return d->http_status ? d->http_status : 403;
}

static void respond_denied(struct exchange *x)
{
    struct gw_request *req = x->req;
    const struct gw_decision *d = gw_request_denial(req);
    size_t len = 0;
    char *body = x->rest ? rest_error_body(req, d, gw_request_denial_layer(req), &len)
                         : denial_body(req, d, &len);
    struct gw_header extra[2];
    size_t n = 0;
    char retry[32];
    if (d->www_authenticate[0])
        extra[n++] = (struct gw_header){GW_SLICE_LIT("WWW-Authenticate"),
                                        {d->www_authenticate, strlen(d->www_authenticate)}};
    if (d->retry_after_ms) {
        snprintf(retry, sizeof retry, "%llu",
                 (unsigned long long)((d->retry_after_ms + 999) / 1000));
        extra[n++] = (struct gw_header){GW_SLICE_LIT("Retry-After"), {retry, strlen(retry)}};
    }
    int status = x->rest ? rest_status(d) : d->http_status ? d->http_status : 403;
    respond(x, status, body ? body : "", len, extra, n);
    free(body);
    exchange_finish(x, 0);
}

/* ---------- relaying the answer ---------- */

static void on_timer(uv_timer_t *t);

static void arm_timer(struct exchange *x, uint64_t ms)
{
    if (ms)
        uv_timer_start(&x->timer, on_timer, ms, 0);
    else
        uv_timer_stop(&x->timer);
}

/* Headers of the backend's answer that reach the client; everything else is dropped. */
static const char *const relayed_headers[] = {
    "Content-Type",
    "Mcp-Session-Id",
    "MCP-Protocol-Version",
    "Cache-Control",
    "Retry-After",
    "Allow",
    NULL,
};

static void on_up_head(void *arg, int status, const struct gw_header *headers, size_t n)
{
    struct exchange *x = arg;
    struct gw_request *req = x->req;
    req->upstream_status = status;
    req->timing.upstream_first_byte_ns = gw_mono_ns();
    x->n_out = 0;
    gw_buf_reset(&x->resp_hdr);
    /* Copy the relayed values first (the slices die with the callback). */
    size_t offs[MAX_OUT_HEADERS], lens[MAX_OUT_HEADERS];
    const char *names[MAX_OUT_HEADERS];
    size_t k = 0;
    int federated = fed_route_is_federated(req->route);
    for (const char *const *name = relayed_headers; *name && k < MAX_OUT_HEADERS - 1; name++) {
        /* A federated route's client session is toolgate's, not the backend's. */
        if (federated && strcmp(*name, "Mcp-Session-Id") == 0)
            continue;
        const struct gw_header *h = find_header(headers, n, *name);
        if (!h || h->value.len > 1024)
            continue;
        offs[k] = x->resp_hdr.len;
        lens[k] = h->value.len;
        names[k] = *name;
        gw_buf_append(&x->resp_hdr, h->value.ptr, h->value.len);
        k++;
    }
    const char *rid = req->id;
    for (size_t i = 0; i < k; i++)
        x->out_headers[x->n_out++] =
            (struct gw_header){{names[i], strlen(names[i])}, {x->resp_hdr.data + offs[i], lens[i]}};
    x->out_headers[x->n_out++] =
        (struct gw_header){GW_SLICE_LIT("X-Request-Id"), {rid, strlen(rid)}};
    for (size_t i = 0; i < req->n_response_headers; i++)
        x->out_headers[x->n_out++] = req->response_headers[i];

    /*
     * A new session (the backend answered with an id the client did not send) belongs to
     * the user who created it; a closed one is forgotten.
     */
    const struct gw_header *sid = find_header(headers, n, "Mcp-Session-Id");
    if (sid && sid->value.len <= MAX_SESSION_ID) {
        free(req->upstream_session_id);
        req->upstream_session_id = gw_slice_dup(sid->value);
    }
    if (!federated && status >= 200 && status < 300 && req->identity.verified &&
        req->identity.subject) {
        if (sid && sid->value.len <= MAX_SESSION_ID &&
            (!req->session_id || !gw_slice_eq(sid->value, req->session_id))) {
            char *id = gw_slice_dup(sid->value);
            if (id)
                mcp_session_bind(id, req->identity.issuer ? req->identity.issuer : "",
                                 req->identity.subject);
            free(id);
        }
        if (req->method == GW_HTTP_DELETE && req->session_id)
            mcp_session_forget(req->session_id);
    }

    const struct gw_header *ct = find_header(headers, n, "Content-Type");
    int is_sse =
        ct && ct->value.len >= 17 && strncasecmp(ct->value.ptr, "text/event-stream", 17) == 0;
    if (is_sse && status == 200 && !x->rest) {
        x->mode = RELAY_SSE;
        req->response_status = status;
        if (x->conn && gw_conn_write_head(x->conn, status, x->out_headers, x->n_out, -1) != 0) {
            exchange_finish(x, 1);
            return;
        }
        arm_timer(x, tmo(x)->idle_ms);
    } else {
        x->mode = RELAY_BUFFER;
        arm_timer(x, tmo(x)->idle_ms);
    }
}

static void on_drain(void *arg)
{
    struct exchange *x = arg;
    if (x->up)
        upstream_resume(x->up);
}

/*
 * Streams bytes to the client, or holds them once the stream's final response has come
 * (it is released when the completion record is durable). What is held is bounded by
 * server.limits.max_response.
 */
static int write_to_client(struct exchange *x, const char *data, size_t len)
{
    x->req->response_bytes += len;
    if (!x->conn)
        return -1;
    if (x->holding_stream) {
        if (x->held_body.len + len > x->max_response)
            return -1;
        return gw_buf_append(&x->held_body, data, len);
    }
    return gw_conn_write_body(x->conn, data, len);
}

/* A response (not a request or notification): the answer the client is waiting for. */
static int is_final_response(const json_t *msg)
{
    return json_is_object(msg) && json_object_get(msg, "id") && !json_object_get(msg, "method") &&
           (json_object_get(msg, "result") || json_object_get(msg, "error"));
}

/* One SSE event from the backend: its message goes through the response hooks. */
static int on_sse_event(void *arg, const struct sse_event *ev)
{
    struct exchange *x = arg;
    if (!ev->has_data) {
        /* Comments and id-only events carry no message: relay as they are. */
        return write_to_client(x, ev->raw.ptr, ev->raw.len) == 0 ? 0 : 1;
    }
    json_t *msg = NULL;
    size_t depth = x->req->cfg->server.limits.max_json_depth;
    if (mcp_parse_message(ev->data.ptr, ev->data.len, depth, &msg) != 0) {
        /* What cannot be inspected does not reach the client. */
        gw_log(GW_LOG_WARN, "upstream_bad_event", x->req->id, NULL,
               "dropped an SSE event whose data is not a JSON-RPC message");
        return 0;
    }
    int modified = 0;
    struct gw_decision d = {0};
    int rc = 0;
    if (x->fed_list && is_final_response(msg) && json_object_get(msg, "result"))
        modified = fed_rewrite_tools_list(msg, x->req->route, x->fed_index) == 0;
    if (gw_pipeline_response(x->req, msg, &modified, &d) != GW_PASS) {
        json_t *id = json_object_get(msg, "id");
        json_t *err =
            json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                      "error", "code", d.jsonrpc_code ? d.jsonrpc_code : -32003, "message",
                      d.reason[0] ? d.reason : "Denied");
        json_decref(msg);
        msg = err;
        modified = 1;
    }
    if (is_final_response(msg))
        x->holding_stream = 1;
    if (modified && msg) {
        char *s = json_dumps(msg, JSON_COMPACT);
        struct gw_buf out = {0};
        if (s &&
            sse_encode(&out, ev->event, ev->id, ev->has_id, (struct gw_slice){s, strlen(s)}) == 0)
            rc = write_to_client(x, out.data, out.len) == 0 ? 0 : 1;
        else
            rc = 1;
        free(s);
        gw_buf_free(&out);
    } else {
        rc = write_to_client(x, ev->raw.ptr, ev->raw.len) == 0 ? 0 : 1;
    }
    json_decref(msg);
    return rc;
}

static int on_up_data(void *arg, const char *data, size_t len)
{
    struct exchange *x = arg;
    struct gw_request *req = x->req;
    if (x->mode == RELAY_SSE) {
        if (!x->conn)
            return 0;
        if (gw_conn_queued(x->conn) > req->cfg->server.limits.write_buffer) {
            /* The client is slow: stop reading from the backend until it catches up. */
            gw_conn_on_drain(x->conn, on_drain, x);
            return 1;
        }
        arm_timer(x, tmo(x)->idle_ms);
        int rc = sse_feed(&x->sse, data, len, on_sse_event, x);
        if (rc == SSE_TOO_LARGE) {
            gw_log(GW_LOG_WARN, "upstream_event_too_large", req->id, NULL,
                   "an SSE event from the backend exceeded server.limits.max_sse_event; "
                   "ending the stream");
            exchange_finish(x, 0);
        } else if (rc != 0) {
            exchange_finish(x, 1);
        }
        return 0;
    }
    if (x->resp.len + len > x->max_response) {
        upstream_cancel(x->up);
        x->up = NULL;
        respond_error(x, 502, JSONRPC_INTERNAL_ERROR,
                      "The backend's answer exceeds server.limits.max_response",
                      "upstream.too_large");
        return 0;
    }
    arm_timer(x, tmo(x)->idle_ms);
    if (gw_buf_append(&x->resp, data, len) != 0) {
        upstream_cancel(x->up);
        x->up = NULL;
        respond_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
    }
    return 0;
}

/* A whole JSON answer: every message through the response hooks, then to the client. */
static void rest_finish(struct exchange *x);

static void finish_buffered(struct exchange *x)
{
    if (x->rest) {
        rest_finish(x);
        return;
    }
    struct gw_request *req = x->req;
    int status = req->upstream_status;
    const struct gw_header *ct = find_header(x->out_headers, x->n_out, "Content-Type");
    int is_json =
        ct && ct->value.len >= 16 && strncasecmp(ct->value.ptr, "application/json", 16) == 0;
    char *rewritten = NULL;
    if (is_json && x->resp.len > 0) {
        json_t *body = NULL;
        if (mcp_parse_message(x->resp.data, x->resp.len, req->cfg->server.limits.max_json_depth,
                              &body) != 0) {
            gw_log(GW_LOG_WARN, "upstream_bad_json", req->id, NULL,
                   "the backend answered with JSON that is not a JSON-RPC message");
            respond_error(x, 502, JSONRPC_INTERNAL_ERROR,
                          "The backend's answer is not valid JSON-RPC", "upstream.bad_json");
            return;
        }
        int modified = 0;
        size_t n = json_is_array(body) ? json_array_size(body) : 1;
        for (size_t i = 0; i < n; i++) {
            json_t *msg = json_is_array(body) ? json_array_get(body, i) : body;
            struct gw_decision d = {0};
            int mod = 0;
            if (x->fed_list && json_object_get(msg, "result"))
                mod = fed_rewrite_tools_list(msg, req->route, x->fed_index) == 0;
            if (gw_pipeline_response(req, msg, &mod, &d) != GW_PASS) {
                json_t *id = json_object_get(msg, "id");
                json_t *err = json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id",
                                        id ? id : json_null(), "error", "code",
                                        d.jsonrpc_code ? d.jsonrpc_code : -32003, "message",
                                        d.reason[0] ? d.reason : "Denied");
                if (json_is_array(body)) {
                    json_array_set_new(body, i, err);
                } else {
                    json_decref(body);
                    body = err;
                }
                mod = 1;
            }
            modified |= mod;
        }
        if (modified)
            rewritten = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (modified && !rewritten) {
            respond_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
            return;
        }
    }
    const char *out = rewritten ? rewritten : x->resp.data;
    size_t out_len = rewritten ? strlen(rewritten) : x->resp.len;
    req->response_status = status;
    req->response_bytes += out_len;
    hold_whole(x, status, x->out_headers, x->n_out, out, out_len);
    free(rewritten);
    exchange_finish(x, 0);
}

static void on_up_done(void *arg, int err, const char *detail)
{
    struct exchange *x = arg;
    struct gw_request *req = x->req;
    x->up = NULL;
    if (err != UPSTREAM_OK) {
        const char *backend = req->backend ? req->backend->name : "";
        char fields[256];
        snprintf(fields, sizeof fields, "\"backend\":\"%s\",\"error\":%d", backend, err);
        gw_log(GW_LOG_WARN, "upstream_error", req->id, fields, "backend exchange failed: %s",
               detail ? detail : "");
        if (x->mode == RELAY_SSE) {
            /* Mid-stream: end the client's stream cleanly; the client may resume it. */
            snprintf(req->upstream_error, sizeof req->upstream_error, "upstream.lost");
            exchange_finish(x, 0);
        } else if (err == UPSTREAM_ETIMEOUT) {
            respond_error(x, 504, JSONRPC_INTERNAL_ERROR, "The backend did not answer in time",
                          "upstream.timeout");
        } else if (err == UPSTREAM_ECONNECT) {
            respond_error(x, 502, JSONRPC_INTERNAL_ERROR, "The backend is unreachable",
                          "upstream.connect");
        } else {
            respond_error(x, 502, JSONRPC_INTERNAL_ERROR,
                          "The backend's answer was cut short or malformed", "upstream.protocol");
        }
        return;
    }
    if (x->mode == RELAY_SSE)
        exchange_finish(x, 0);
    else
        finish_buffered(x);
}

static void on_timer(uv_timer_t *t)
{
    struct exchange *x = t->data;
    if (x->finished)
        return;
    if (x->up) {
        upstream_cancel(x->up);
        x->up = NULL;
    }
    if (x->mode == RELAY_SSE) {
        snprintf(x->req->upstream_error, sizeof x->req->upstream_error, "upstream.idle");
        exchange_finish(x, 0);
    } else if (x->mode == RELAY_NONE) {
        respond_error(x, 504, JSONRPC_INTERNAL_ERROR, "The backend did not start answering in time",
                      "upstream.timeout");
    } else {
        respond_error(x, 504, JSONRPC_INTERNAL_ERROR, "The backend stalled while answering",
                      "upstream.timeout");
    }
}

/* Headers of the client's request that go to the backend; Authorization never does. */
static const char *const forwarded_headers[] = {
    "Content-Type", "Accept", "Mcp-Session-Id", "MCP-Protocol-Version", "Last-Event-ID", NULL,
};

/* ---------- REST tool routes: POST <path>/<tool> with the arguments ---------- */

static void protocol_error(struct gw_request *req, int http_status, int code,
                           const char *reason_code, const char *message);

/*
 * A REST call becomes the tools/call it stands for, so every layer governs it exactly like an
 * MCP call: the tool is the last path segment, the arguments the JSON object in the body.
 */
static void rest_prepare(struct exchange *x)
{
    struct gw_request *req = x->req;
    const struct gw_route *route = req->route;
    req->backend = &route->backends[0];
    if (req->method != GW_HTTP_POST) {
        protocol_error(req, 405, JSONRPC_INVALID_REQUEST, "protocol.method",
                       "Call a tool with POST <path>/<tool>");
        return;
    }
    size_t plen = strlen(route->path);
    struct gw_slice tool = {req->path.ptr + plen + 1, req->path.len - plen - 1};
    int ok = tool.len > 0 && tool.len <= 128;
    for (size_t i = 0; ok && i < tool.len; i++) {
        char ch = tool.ptr[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '_' || ch == '-' || ch == '.';
    }
    if (!ok) {
        protocol_error(req, 404, JSONRPC_INVALID_PARAMS, "protocol.bad_tool",
                       "No such tool: tool names are 1 to 128 letters, digits, '_', '-', '.'");
        return;
    }
    struct gw_slice ct = gw_request_header(req, "Content-Type");
    if (req->body.len > 0 &&
        (!ct.ptr || ct.len < 16 || strncasecmp(ct.ptr, "application/json", 16) != 0)) {
        protocol_error(req, 415, JSONRPC_INVALID_REQUEST, "protocol.content_type",
                       "The arguments must be a JSON object (application/json)");
        return;
    }
    json_t *args = NULL;
    if (req->body.len == 0) {
        args = json_object();
    } else if (mcp_parse_message(req->body.ptr, req->body.len,
                                 req->cfg->server.limits.max_json_depth, &args) != 0 ||
               !json_is_object(args)) {
        json_decref(args);
        protocol_error(req, 400, JSONRPC_PARSE_ERROR, "protocol.parse_error",
                       "The body must be a JSON object of arguments (UTF-8, no duplicate keys)");
        return;
    }
    json_t *msg =
        json_pack("{s:s, s:s, s:s, s:{s:s%, s:o}}", "jsonrpc", "2.0", "id", req->id, "method",
                  "tools/call", "params", "name", tool.ptr, tool.len, "arguments", args);
    req->rpc.msgs = msg ? calloc(1, sizeof *req->rpc.msgs) : NULL;
    if (!req->rpc.msgs) {
        json_decref(msg);
        protocol_error(req, 503, JSONRPC_INTERNAL_ERROR, "internal.memory", "Out of memory");
        return;
    }
    json_t *params = json_object_get(msg, "params");
    req->rpc.n = 1;
    req->rpc.msgs[0] = (struct mcp_message){
        .kind = MCP_REQUEST,
        .json = msg,
        .method = json_string_value(json_object_get(msg, "method")),
        .id = json_object_get(msg, "id"),
        .target = json_string_value(json_object_get(params, "name")),
        .arguments = json_object_get(params, "arguments"),
    };
}

/* POST <backend url>/<tool> with the arguments as the layers left them (redactions too). */
static void rest_forward(struct exchange *x)
{
    struct gw_request *req = x->req;
    const struct gw_backend *be = req->backend;
    const char *base = req->upstream_url ? req->upstream_url : be->url;
    size_t bl = strlen(base);
    struct gw_buf url = {0};
    int rc = gw_buf_printf(&url, "%.*s/%s", (int)(bl && base[bl - 1] == '/' ? bl - 1 : bl), base,
                           req->rpc.msgs[0].target);
    x->rest_url = rc == 0 ? gw_buf_steal(&url, NULL) : NULL;
    gw_buf_free(&url);
    x->rest_body = x->rest_url ? json_dumps(req->rpc.msgs[0].arguments, JSON_COMPACT) : NULL;
    if (!x->rest_body) {
        respond_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    struct gw_header hdrs[4 + GW_MAX_UPSTREAM_HEADERS];
    size_t n = 0;
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("application/json")};
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("Accept"), GW_SLICE_LIT("application/json")};
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("X-Request-Id"), {req->id, strlen(req->id)}};
    for (size_t i = 0; i < req->n_upstream_headers; i++)
        hdrs[n++] = req->upstream_headers[i];
    struct upstream_request ur = {
        .url = x->rest_url,
        .method = GW_HTTP_POST,
        .body = {x->rest_body, strlen(x->rest_body)},
        .headers = hdrs,
        .n_headers = n,
        .connect_timeout_ms = tmo(x)->connect_ms,
        .pin = req->upstream_pin,
    };
    static const struct upstream_callbacks cbs = {on_up_head, on_up_data, on_up_done};
    x->up = upstream_start(gw_worker_upstream(x->w), &ur, &cbs, x);
    if (!x->up) {
        respond_error(x, 502, JSONRPC_INTERNAL_ERROR, "Cannot start the backend request",
                      "upstream.start");
        return;
    }
    arm_timer(x, tmo(x)->first_byte_ms);
}

/*
 * The backend's answer goes through the response hooks as the tools/call result it stands
 * for (structuredContent when it is a JSON object, else text), and back out in its own shape.
 */
static void rest_finish(struct exchange *x)
{
    struct gw_request *req = x->req;
    int status = req->upstream_status;
    json_t *doc = NULL;
    int is_object = x->resp.len > 0 &&
                    mcp_parse_message(x->resp.data, x->resp.len,
                                      req->cfg->server.limits.max_json_depth, &doc) == 0 &&
                    json_is_object(doc);
    json_t *result = is_object ? json_pack("{s:[], s:O}", "content", "structuredContent", doc)
                               : json_pack("{s:[{s:s, s:s%}]}", "content", "type", "text", "text",
                                           x->resp.data ? x->resp.data : "", x->resp.len);
    json_decref(doc);
    json_t *msg =
        result ? json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "id", req->id, "result", result)
               : NULL;
    if (!msg) {
        respond_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    int modified = 0;
    struct gw_decision d = {0};
    if (gw_pipeline_response(req, msg, &modified, &d) != GW_PASS) {
        json_decref(msg);
        size_t len;
        char *b = rest_error_body(req, &d, NULL, &len);
        respond(x, 502, b ? b : "", len, NULL, 0);
        free(b);
        exchange_finish(x, 0);
        return;
    }
    char *out = NULL;
    if (modified) {
        json_t *r = json_object_get(msg, "result");
        json_t *sc = json_object_get(r, "structuredContent");
        json_t *text = json_object_get(json_array_get(json_object_get(r, "content"), 0), "text");
        out = sc ? json_dumps(sc, JSON_COMPACT) : text ? strdup(json_string_value(text)) : NULL;
    }
    json_decref(msg);
    const char *body = out ? out : x->resp.data ? x->resp.data : "";
    size_t len = out ? strlen(out) : x->resp.len;
    req->response_status = status;
    req->response_bytes += len;
    hold_whole(x, status, x->out_headers, x->n_out, body, len);
    free(out);
    exchange_finish(x, 0);
}

/* ---------- federation: several backends behind one route ---------- */

/* Answers a JSON-RPC result the gateway makes itself (federated routes). */
static void respond_result(struct exchange *x, json_t *result, const struct gw_header *extra,
                           size_t n_extra)
{
    struct gw_request *req = x->req;
    const json_t *id = req->rpc.n ? req->rpc.msgs[0].id : NULL;
    struct gw_buf body = {0};
    int rc = jsonrpc_result_body(&body, id, result);
    json_decref(result);
    if (rc != 0) {
        gw_buf_free(&body);
        respond_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    /* The hooks see it like any answer (policy, safety, audit's result hash). */
    json_t *msg = NULL;
    int modified = 0;
    struct gw_decision d = {0};
    char *out = NULL;
    if (mcp_parse_message(body.data, body.len, 0, &msg) == 0) {
        if (gw_pipeline_response(req, msg, &modified, &d) == GW_PASS && modified)
            out = json_dumps(msg, JSON_COMPACT);
        json_decref(msg);
    }
    respond(x, 200, out ? out : body.data, out ? strlen(out) : body.len, extra, n_extra);
    free(out);
    gw_buf_free(&body);
    exchange_finish(x, 0);
}

static void respond_empty(struct exchange *x, int status)
{
    respond(x, status, "", 0, NULL, 0);
    exchange_finish(x, 0);
}

/* Upstream headers for a backend call of a federated route. */
static size_t fed_headers(struct exchange *x, struct gw_header *hdrs, int with_session)
{
    struct gw_request *req = x->req;
    size_t n = 0;
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("application/json")};
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("Accept"),
                                   GW_SLICE_LIT("application/json, text/event-stream")};
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("MCP-Protocol-Version"),
                                   GW_SLICE_LIT(FED_BACKEND_PROTOCOL)};
    if (with_session && x->fed_backend_sid)
        hdrs[n++] = (struct gw_header){GW_SLICE_LIT("Mcp-Session-Id"),
                                       {x->fed_backend_sid, strlen(x->fed_backend_sid)}};
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("X-Request-Id"), {req->id, strlen(req->id)}};
    for (size_t i = 0; i < req->n_upstream_headers; i++)
        hdrs[n++] = req->upstream_headers[i];
    return n;
}

/* Starts a backend call; `body` must stay valid until the call has ended. */
static int fed_start(struct exchange *x, const char *body, int with_session,
                     const struct upstream_callbacks *cbs)
{
    struct gw_request *req = x->req;
    const struct gw_backend *be = &req->route->backends[x->fed_index];
    struct gw_header hdrs[8 + GW_MAX_UPSTREAM_HEADERS];
    size_t n = fed_headers(x, hdrs, with_session);
    struct upstream_request ur = {
        .url = req->upstream_url && be == req->backend ? req->upstream_url : be->url,
        .method = GW_HTTP_POST,
        .body = {body, strlen(body)},
        .headers = hdrs,
        .n_headers = n,
        .connect_timeout_ms = tmo(x)->connect_ms,
        .pin = be == req->backend ? req->upstream_pin : NULL,
    };
    x->up = upstream_start(gw_worker_upstream(x->w), &ur, cbs, x);
    if (!x->up)
        return -1;
    arm_timer(x, tmo(x)->first_byte_ms);
    return 0;
}

static void fed_call(struct exchange *x);

/* The steps that open a backend session: initialize, then notifications/initialized. */
static void fed_init_head(void *arg, int status, const struct gw_header *headers, size_t n)
{
    struct exchange *x = arg;
    x->fed_status = status;
    const struct gw_header *sid = find_header(headers, n, "Mcp-Session-Id");
    if (x->fed_step == FED_INIT && sid && sid->value.len > 0 && sid->value.len <= MAX_SESSION_ID) {
        free(x->fed_backend_sid);
        x->fed_backend_sid = gw_slice_dup(sid->value);
    }
}

static int fed_init_data(void *arg, const char *data, size_t len)
{
    (void)arg;
    (void)data;
    (void)len;
    return 0; /* the initialize result itself is not needed */
}

static void fed_init_done(void *arg, int err, const char *detail)
{
    struct exchange *x = arg;
    struct gw_request *req = x->req;
    x->up = NULL;
    if (err != UPSTREAM_OK || x->fed_status < 200 || x->fed_status >= 300) {
        gw_log(GW_LOG_WARN, "federation_init_failed", req->id, NULL,
               "opening a session with backend %s failed: %s (HTTP %d)",
               req->route->backends[x->fed_index].name, err ? detail : "refused", x->fed_status);
        respond_error(x, 502, JSONRPC_INTERNAL_ERROR, "The backend is unavailable",
                      "upstream.session");
        return;
    }
    static const struct upstream_callbacks cbs = {fed_init_head, fed_init_data, fed_init_done};
    if (x->fed_step == FED_INIT) {
        if (x->fed_backend_sid && req->session_id)
            fed_session_set_backend(req->session_id, x->fed_index, x->fed_backend_sid);
        x->fed_step = FED_INITIALIZED;
        if (fed_start(x, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", 1,
                      &cbs) != 0)
            respond_error(x, 502, JSONRPC_INTERNAL_ERROR, "Cannot start the backend request",
                          "upstream.start");
        return;
    }
    fed_call(x);
}

/* The call itself, on the backend's session; its answer is relayed like any other. */
static void fed_call(struct exchange *x)
{
    x->fed_step = FED_CALL;
    static const struct upstream_callbacks cbs = {on_up_head, on_up_data, on_up_done};
    if (fed_start(x, x->fed_body, 1, &cbs) != 0)
        respond_error(x, 502, JSONRPC_INTERNAL_ERROR, "Cannot start the backend request",
                      "upstream.start");
}

static void fed_forget_done(void *arg, int err, const char *detail)
{
    (void)arg;
    (void)err;
    (void)detail;
}
static void fed_forget_head(void *arg, int status, const struct gw_header *h, size_t n)
{
    (void)arg;
    (void)status;
    (void)h;
    (void)n;
}

/* Closes the backend sessions of a client session (best effort; nobody waits for them). */
static void fed_close_backends(struct exchange *x, char **sids, size_t n)
{
    struct gw_request *req = x->req;
    static const struct upstream_callbacks cbs = {fed_forget_head, fed_init_data, fed_forget_done};
    for (size_t i = 0; i < n && i < req->route->n_backends; i++) {
        if (!sids[i])
            continue;
        struct gw_header hdrs[2 + GW_MAX_UPSTREAM_HEADERS];
        size_t k = 0;
        hdrs[k++] = (struct gw_header){GW_SLICE_LIT("Mcp-Session-Id"), {sids[i], strlen(sids[i])}};
        for (size_t j = 0; j < req->n_upstream_headers; j++)
            hdrs[k++] = req->upstream_headers[j];
        const struct gw_backend *be = &req->route->backends[i];
        struct upstream_request ur = {
            .url = be->url,
            .method = GW_HTTP_DELETE,
            .headers = hdrs,
            .n_headers = k,
            .connect_timeout_ms = be->timeouts.connect_ms,
        };
        upstream_start(gw_worker_upstream(x->w), &ur, &cbs, NULL);
    }
}

/* The protocol revisions a federated route speaks with its clients, newest first. */
static const char *const fed_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26", NULL};

static void fed_initialize(struct exchange *x, const struct mcp_message *m)
{
    struct gw_request *req = x->req;
    const char *asked =
        json_string_value(json_object_get(json_object_get(m->json, "params"), "protocolVersion"));
    const char *version = fed_versions[0];
    for (const char *const *v = fed_versions; asked && *v; v++)
        if (strcmp(asked, *v) == 0)
            version = *v;
    char sid[FED_SESSION_ID_LEN + 1];
    if (fed_session_create(req->route, sid) != 0) {
        respond_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    if (req->identity.verified && req->identity.subject)
        mcp_session_bind(sid, req->identity.issuer ? req->identity.issuer : "",
                         req->identity.subject);
    json_t *result = json_pack(
        "{s:s, s:{s:{s:b}}, s:{s:s, s:s}, s:s}", "protocolVersion", version, "capabilities",
        "tools", "listChanged", 0, "serverInfo", "name", "toolgate", "version", TOOLGATE_VERSION,
        "instructions",
        "Tools of several services, each named with its service's prefix (service.tool).");
    /* The header value must outlive respond(): it is copied into the held answer there. */
    struct gw_header h = {GW_SLICE_LIT("Mcp-Session-Id"), {sid, strlen(sid)}};
    respond_result(x, result, &h, 1);
}

/*
 * A request on a federated route, after the layers allowed it: toolgate answers what is its
 * own (initialize, ping, notifications, DELETE) and sends tools/list and tools/call to the
 * backend they concern, opening that backend's session first when needed.
 */
static void fed_forward(struct exchange *x)
{
    struct gw_request *req = x->req;
    if (req->method == GW_HTTP_DELETE) {
        char **sids = NULL;
        size_t n = 0;
        if (!req->session_id || fed_session_drop(req->session_id, &sids, &n) != 0) {
            respond_error(x, 404, JSONRPC_INVALID_REQUEST, "Session not found",
                          "federation.unknown_session");
            return;
        }
        mcp_session_forget(req->session_id);
        fed_close_backends(x, sids, n);
        fed_strv_free(sids, n);
        respond_empty(x, 200);
        return;
    }
    const struct mcp_message *m = req->rpc.n ? &req->rpc.msgs[0] : NULL;
    if (!m || m->kind != MCP_REQUEST) {
        respond_empty(x, 202); /* notifications and client answers are toolgate's own */
        return;
    }
    if (strcmp(m->method, "initialize") == 0) {
        fed_initialize(x, m);
        return;
    }
    if (!req->session_id) {
        respond_error(x, 400, JSONRPC_INVALID_REQUEST, "Mcp-Session-Id header is required",
                      "federation.no_session");
        return;
    }
    if (!fed_session_exists(req->session_id)) {
        respond_error(x, 404, JSONRPC_INVALID_REQUEST, "Session not found",
                      "federation.unknown_session");
        return;
    }
    if (strcmp(m->method, "ping") == 0) {
        respond_result(x, json_object(), NULL, 0);
        return;
    }
    json_t *out = NULL;
    if (strcmp(m->method, "tools/list") == 0) {
        out = json_pack("{s:s, s:O, s:s}", "jsonrpc", "2.0", "id", m->id, "method", "tools/list");
        if (out && x->fed_cursor)
            json_object_set_new(out, "params", json_pack("{s:s}", "cursor", x->fed_cursor));
        x->fed_list = 1;
    } else if (strcmp(m->method, "tools/call") == 0) {
        const char *rest = NULL;
        const struct gw_backend *be = fed_backend_for_tool(req->route, m->target, &rest);
        if (!be) {
            char msg[160];
            snprintf(msg, sizeof msg, "Unknown tool: %.120s", m->target ? m->target : "");
            respond_error(x, 200, JSONRPC_INVALID_PARAMS, msg, "federation.unknown_tool");
            return;
        }
        /* The client's message as the layers left it, the prefix taken off the name. */
        out = json_deep_copy(m->json);
        json_t *params = json_object_get(out, "params");
        if (params)
            json_object_set_new(params, "name", json_string(rest));
    } else {
        respond_error(x, 200, JSONRPC_METHOD_NOT_FOUND,
                      "Method not found: a federated endpoint offers tools (and ping)",
                      "federation.method");
        return;
    }
    x->fed_body = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    if (!x->fed_body) {
        respond_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    if (fed_session_backend(req->session_id, x->fed_index, &x->fed_backend_sid) != 0) {
        respond_error(x, 404, JSONRPC_INVALID_REQUEST, "Session not found",
                      "federation.unknown_session");
        return;
    }
    if (x->fed_backend_sid) {
        fed_call(x);
        return;
    }
    x->fed_step = FED_INIT;
    /* The body must live until the call ends (curl sends it from there). */
    gw_buf_reset(&x->fed_scratch);
    if (gw_buf_printf(&x->fed_scratch,
                      "{\"jsonrpc\":\"2.0\",\"id\":\"toolgate-init\",\"method\":\"initialize\","
                      "\"params\":{\"protocolVersion\":\"%s\",\"capabilities\":{},"
                      "\"clientInfo\":{\"name\":\"toolgate\",\"version\":\"%s\"}}}",
                      FED_BACKEND_PROTOCOL, TOOLGATE_VERSION) != 0) {
        respond_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    static const struct upstream_callbacks cbs = {fed_init_head, fed_init_data, fed_init_done};
    if (fed_start(x, x->fed_scratch.data, 0, &cbs) != 0)
        respond_error(x, 502, JSONRPC_INTERNAL_ERROR, "Cannot start the backend request",
                      "upstream.start");
}

static void forward(struct exchange *x)
{
    struct gw_request *req = x->req;
    const struct gw_route *route = req->route;
    if (x->rest) {
        rest_forward(x);
        return;
    }
    if (fed_route_is_federated(route)) {
        fed_forward(x);
        return;
    }
    const struct gw_backend *be = req->backend ? req->backend : &route->backends[0];
    req->backend = be;
    struct gw_header hdrs[8 + GW_MAX_UPSTREAM_HEADERS];
    size_t n = 0;
    for (const char *const *name = forwarded_headers; *name; name++) {
        struct gw_slice v = gw_request_header(req, *name);
        int injected = 0;
        for (size_t i = 0; i < req->n_upstream_headers; i++)
            injected |= gw_slice_casecmp_eq(req->upstream_headers[i].name, *name);
        if (v.ptr && !injected)
            hdrs[n++] = (struct gw_header){{*name, strlen(*name)}, v};
    }
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("X-Request-Id"), {req->id, strlen(req->id)}};
    for (size_t i = 0; i < req->n_upstream_headers; i++)
        hdrs[n++] = req->upstream_headers[i];
    struct upstream_request ur = {
        .url = req->upstream_url ? req->upstream_url : be->url,
        .method = req->method,
        .body = gw_request_upstream_body(req),
        .headers = hdrs,
        .n_headers = n,
        .connect_timeout_ms = tmo(x)->connect_ms,
        .pin = req->upstream_pin,
    };
    static const struct upstream_callbacks cbs = {on_up_head, on_up_data, on_up_done};
    x->up = upstream_start(gw_worker_upstream(x->w), &ur, &cbs, x);
    if (!x->up) {
        respond_error(x, 502, JSONRPC_INTERNAL_ERROR, "Cannot start the backend request",
                      "upstream.start");
        return;
    }
    arm_timer(x, tmo(x)->first_byte_ms);
}

static void on_decided(struct gw_request *req, int verdict)
{
    struct exchange *x = req->exchange;
    if (!x->conn) {
        /* The client left while a layer was deciding. */
        exchange_finish(x, 1);
        return;
    }
    if (verdict == GW_PASS)
        forward(x);
    else
        respond_denied(x);
}

static void on_client_gone(void *arg)
{
    struct exchange *x = arg;
    x->conn = NULL;
    if (x->req)
        x->req->response_status = x->req->response_status ? x->req->response_status : 499;
    /* A layer still deciding will call on_decided, which finishes the exchange. */
    if (x->req && !x->up && gw_pipeline_deciding(x->req))
        return;
    exchange_finish(x, 1);
}

static void on_server_shutdown(void *arg)
{
    struct exchange *x = arg;
    /* An open-ended server stream (GET) ends now; POST answers may finish. */
    if (x->req && x->req->method == GW_HTTP_GET && x->mode == RELAY_SSE)
        exchange_finish(x, 0);
}

/* ---------- entry ---------- */

/*
 * An answer the gateway gives itself, outside any route (health, metadata, unknown path,
 * wrong method): it carries an X-Request-Id and leaves a log line like routed requests.
 */
static void simple_with(struct gw_conn *c, int status, const char *body, size_t len,
                        const struct gw_header *extra, size_t n_extra)
{
    char id[37];
    gw_uuid7(id);
    struct gw_header hdrs[4];
    size_t n = 0;
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("X-Request-Id"), {id, 36}};
    for (size_t i = 0; i < n_extra && n < 4; i++)
        hdrs[n++] = extra[i];
    gw_conn_respond(c, status, "application/json", body, len, hdrs, n);
    char fields[160];
    snprintf(fields, sizeof fields, "\"status\":%d,\"route\":\"\",\"bytes\":%zu", status, len);
    gw_log(GW_LOG_INFO, "request", id, fields, "%s", "answered by the gateway");
    gw_conn_end(c, 0);
}

static void simple(struct gw_conn *c, int status, const char *body, const struct gw_header *extra,
                   size_t n_extra)
{
    simple_with(c, status, body, strlen(body), extra, n_extra);
}

static int dup_header(struct gw_request *req, const char *name, size_t max, char **out)
{
    if (gw_request_header_count(req, name) > 1)
        return -1;
    struct gw_slice v = gw_request_header(req, name);
    if (!v.ptr)
        return 0;
    if (v.len == 0 || v.len > max)
        return -1;
    for (size_t i = 0; i < v.len; i++)
        if ((unsigned char)v.ptr[i] < 0x21 || (unsigned char)v.ptr[i] > 0x7e)
            return -1;
    *out = gw_slice_dup(v);
    return *out ? 0 : -1;
}

/*
 * Before the layers run on a federated route: which backend the request concerns (so routing
 * vets and pins that one and injects the identity for it), and what cannot be federated.
 */
static void fed_prepare(struct exchange *x)
{
    struct gw_request *req = x->req;
    const struct gw_route *route = req->route;
    req->backend = &route->backends[0];
    if (req->method == GW_HTTP_GET) {
        protocol_error(req, 405, JSONRPC_INVALID_REQUEST, "protocol.no_server_stream",
                       "This endpoint offers no server stream (GET); use POST");
        return;
    }
    if (req->rpc.is_batch) {
        protocol_error(req, 400, JSONRPC_INVALID_REQUEST, "protocol.batch",
                       "Batches are not supported on an endpoint that federates several "
                       "services");
        return;
    }
    const struct mcp_message *m = req->rpc.n ? &req->rpc.msgs[0] : NULL;
    if (!m || !m->method)
        return;
    if (strcmp(m->method, "tools/call") == 0) {
        const struct gw_backend *be = fed_backend_for_tool(route, m->target, NULL);
        if (be)
            req->backend = be;
    } else if (strcmp(m->method, "tools/list") == 0) {
        const char *cursor =
            json_string_value(json_object_get(json_object_get(m->json, "params"), "cursor"));
        size_t idx = 0;
        if (cursor && fed_cursor_decode(cursor, route->n_backends, &idx, &x->fed_cursor) != 0) {
            protocol_error(req, 200, JSONRPC_INVALID_PARAMS, "protocol.bad_cursor",
                           "Invalid cursor");
            return;
        }
        req->backend = &route->backends[idx];
    }
    x->fed_index = (size_t)fed_backend_index(route, req->backend);
}

static void protocol_error(struct gw_request *req, int http_status, int code,
                           const char *reason_code, const char *message)
{
    req->protocol_error = 1;
    gw_decision_deny(&req->protocol_decision, http_status, code, reason_code, message);
}

static void handle_request(void *ctx, struct gw_conn *c, struct http1_parser *p)
{
    (void)ctx;
    struct gw_worker *w = gw_conn_worker(c);
    const struct gw_config *cfg = gw_worker_config(w);

    if (gw_slice_eq(p->path, "/healthz")) {
        if (p->method != GW_HTTP_GET) {
            static const struct gw_header allow = {GW_SLICE_LIT("Allow"), GW_SLICE_LIT("GET")};
            simple(c, 405, "{\"error\":\"method not allowed\"}", &allow, 1);
            return;
        }
        simple(c, 200, gw_worker_stopping(w) ? "{\"status\":\"draining\"}" : "{\"status\":\"ok\"}",
               NULL, 0);
        return;
    }
    if (proxy_handle_well_known(c, p))
        return;

    const struct gw_route *route = gw_config_route_for(cfg, p->path.ptr, p->path.len);
    if (!route) {
        simple(c, 404,
               "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32601,\"message\":\"No "
               "route for this path\"}}",
               NULL, 0);
        return;
    }
    if (p->method == GW_HTTP_OTHER) {
        static const struct gw_header allow = {GW_SLICE_LIT("Allow"),
                                               GW_SLICE_LIT("GET, POST, DELETE")};
        simple(c, 405,
               "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,\"message\":\"Method "
               "not allowed: use POST, GET or DELETE\"}}",
               &allow, 1);
        return;
    }

    struct exchange *x = calloc(1, sizeof *x);
    struct gw_request *req = x ? gw_request_new(cfg) : NULL;
    if (!req) {
        free(x);
        simple(c, 503, "{\"error\":\"out of memory\"}", NULL, 0);
        return;
    }
    x->conn = c;
    x->w = w;
    x->req = req;
    x->max_response = cfg->server.limits.max_response;
    sse_parser_init(&x->sse, cfg->server.limits.max_sse_event);
    uv_timer_init(gw_worker_loop(w), &x->timer);
    x->timer.data = x;
    req->exchange = x;
    req->host = gw_worker_host(w);
    req->route = route;
    req->method = p->method;
    req->method_name = p->method_name;
    req->path = p->path;
    req->query = p->query;
    req->headers = p->headers;
    req->n_headers = p->n_headers;
    req->body = (struct gw_slice){p->body.data ? p->body.data : "", p->body.len};
    gw_conn_set_hooks(c, on_client_gone, on_server_shutdown, x);
    if (route->kind == GW_ROUTE_REST) {
        x->rest = 1;
        rest_prepare(x);
        gw_pipeline_start(req, on_decided);
        return;
    }

    if (dup_header(req, "MCP-Protocol-Version", MAX_PROTOCOL_VERSION, &req->protocol_version) != 0)
        protocol_error(req, 400, JSONRPC_INVALID_REQUEST, "protocol.bad_header",
                       "Bad MCP-Protocol-Version header");
    else if (dup_header(req, "Mcp-Session-Id", MAX_SESSION_ID, &req->session_id) != 0)
        protocol_error(req, 400, JSONRPC_INVALID_REQUEST, "protocol.bad_header",
                       "Bad Mcp-Session-Id header");
    else if (p->method == GW_HTTP_POST) {
        struct gw_slice ct = gw_request_header(req, "Content-Type");
        if (!ct.ptr || ct.len < 16 || strncasecmp(ct.ptr, "application/json", 16) != 0 ||
            (ct.len > 16 && ct.ptr[16] != ';' && ct.ptr[16] != ' ')) {
            protocol_error(req, 415, JSONRPC_INVALID_REQUEST, "protocol.content_type",
                           "POST bodies must be application/json");
        } else {
            struct mcp_limits lim = {.max_bytes = cfg->server.limits.max_body,
                                     .max_depth = cfg->server.limits.max_json_depth,
                                     .max_batch = 100};
            struct mcp_decode_error derr = {0};
            if (mcp_decode(req->body.ptr, req->body.len, &lim, req->protocol_version, &req->rpc,
                           &derr) != 0) {
                int st = derr.code == JSONRPC_INVALID_PARAMS ? 200 : 400;
                protocol_error(req, st, derr.code,
                               derr.code == JSONRPC_PARSE_ERROR      ? "protocol.parse_error"
                               : derr.code == JSONRPC_INVALID_PARAMS ? "protocol.invalid_params"
                                                                     : "protocol.invalid_request",
                               derr.message);
                /* Keep the recovered id so the error answers the right request. */
                if (derr.id) {
                    req->rpc.msgs = calloc(1, sizeof *req->rpc.msgs);
                    if (req->rpc.msgs) {
                        req->rpc.n = 1;
                        req->rpc.msgs[0].kind = MCP_REQUEST;
                        req->rpc.msgs[0].json = json_pack("{s:O}", "id", derr.id);
                        req->rpc.msgs[0].id = json_object_get(req->rpc.msgs[0].json, "id");
                    }
                    json_decref(derr.id);
                }
            }
        }
    }
    if (!req->protocol_error && fed_route_is_federated(route))
        fed_prepare(x);
    gw_pipeline_start(req, on_decided);
}

/*
 * Documents under /.well-known/ come from the modules that serve them (OAuth protected
 * resource metadata, the injected tokens' JWKS). Browser-based MCP clients fetch these across
 * origins, hence the CORS header. Any other path under the prefix is 404.
 */
int proxy_handle_well_known(struct gw_conn *c, struct http1_parser *p)
{
    static const char prefix[] = "/.well-known/";
    if (p->path.len < sizeof prefix - 1 || memcmp(p->path.ptr, prefix, sizeof prefix - 1) != 0)
        return 0;
    const struct gw_config *cfg = gw_worker_config(gw_conn_worker(c));
    static const struct gw_header extra[] = {
        {GW_SLICE_LIT("Cache-Control"), GW_SLICE_LIT("max-age=300")},
        {GW_SLICE_LIT("Access-Control-Allow-Origin"), GW_SLICE_LIT("*")},
    };
    struct gw_buf body = {0};
    int rc = 0;
    for (size_t m = 0; m < gw_n_modules && rc == 0; m++) {
        if (!gw_modules[m]->well_known)
            continue;
        gw_buf_reset(&body);
        rc = gw_modules[m]->well_known(cfg, p->path, &body);
    }
    if (rc == 1 && p->method != GW_HTTP_GET) {
        static const struct gw_header allow = {GW_SLICE_LIT("Allow"), GW_SLICE_LIT("GET")};
        simple(c, 405, "{\"error\":\"method not allowed\"}", &allow, 1);
    } else if (rc == 1) {
        simple_with(c, 200, body.data ? body.data : "", body.len, extra, 2);
    } else if (rc == -1) {
        simple(c, 503, "{\"error\":\"unavailable\"}", NULL, 0);
    } else {
        simple(c, 404, "{\"error\":\"not found\"}", NULL, 0);
    }
    gw_buf_free(&body);
    return 1;
}

const struct gw_handler *proxy_handler(void)
{
    static const struct gw_handler h = {handle_request, NULL};
    return &h;
}
