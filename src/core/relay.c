/*
 * relay: the way to the backend and back. One builder for every upstream request, answers
 * relayed as they come (SSE event by event, with backpressure) or buffered within bounds so
 * the hooks (relay_hooks.c, one path for every message) see whole messages. The core's own
 * route kind, which relays an MCP endpoint, is in relay_kind.c.
 */
#include "core/exchange.h"
#include "core/pipeline.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/timeutil.h"
#include "mcp/json_write.h"
#include "mcp/jsonrpc.h"
#include "mcp/methods.h"
#include "mcp/modern.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the answer's head ---- */

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
    /* First: the kind may add headers of its own (the client's session id). */
    if (x->kind && x->kind->on_head)
        x->kind->on_head(x, status, headers, n);
    x->n_out = 0;
    gw_buf_reset(&x->resp_hdr);
    /* Copy the relayed values first (the slices die with the callback). */
    size_t offs[EXCHANGE_MAX_OUT_HEADERS], lens[EXCHANGE_MAX_OUT_HEADERS];
    const char *names[EXCHANGE_MAX_OUT_HEADERS];
    size_t k = 0;
    /* A kind that owns the client's session (federation) does not pass the backend's on. */
    int own_session = x->kind->owns_session;
    for (const char *const *name = relayed_headers; *name && k < EXCHANGE_MAX_OUT_HEADERS - 1;
         name++) {
        if (own_session && strcmp(*name, "Mcp-Session-Id") == 0)
            continue;
        const struct gw_header *h = gw_header_find(headers, n, *name);
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

    const struct gw_header *sid = gw_header_find(headers, n, "Mcp-Session-Id");
    if (sid && sid->value.len <= EXCHANGE_MAX_SESSION_ID) {
        free(req->upstream_session_id);
        req->upstream_session_id = gw_slice_dup(sid->value);
    }

    const struct gw_header *ct = gw_header_find(headers, n, "Content-Type");
    int is_sse =
        ct && ct->value.len >= 17 && strncasecmp(ct->value.ptr, "text/event-stream", 17) == 0;
    if (is_sse && status == 200 && x->kind->streams) {
        x->mode = RELAY_SSE;
        req->response_status = status;
        /* A stream begun already (toolgate asked the client first) goes on as it is. */
        if (x->conn && !x->client_streaming &&
            gw_conn_write_head(x->conn, status, x->out_headers, x->n_out, -1) != 0) {
            exchange_finish(x, 1);
            return;
        }
        if (req->method == GW_HTTP_GET)
            reload_notify_stream_open(x);
    } else {
        x->mode = RELAY_BUFFER;
    }
    exchange_arm_timer(x, exchange_timeouts(x)->idle_ms);
}

/* ---- streams ---- */

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

/*
 * The fields of an event toolgate passes on: an id of printable ASCII within bounds (a
 * client echoes it in Last-Event-ID), and no event type but the default "message" (MCP uses
 * no other; a name a client might dispatch differently is not let through).
 */
static int sse_fields_ok(const struct sse_event *ev)
{
    if (ev->event.len > 0 && !gw_slice_eq(ev->event, "message"))
        return 0;
    if (ev->has_id) {
        if (ev->id.len > EXCHANGE_MAX_SESSION_ID)
            return 0;
        for (size_t i = 0; i < ev->id.len; i++)
            if ((unsigned char)ev->id.ptr[i] < 0x21 || (unsigned char)ev->id.ptr[i] > 0x7e)
                return 0;
    }
    return 1;
}

/*
 * The backend sent, on the stream of the client's call, a request the call's revision does not
 * have (elicitation/create to a 2025-03-26 client, say). It was not let through, so the backend
 * would wait for an answer the client cannot give, and the client for the call's result: the
 * call is answered now with an error naming the request, and the stream ends (closing it is
 * the cancellation the backend sees).
 */
static int end_with_refusal(struct exchange *x)
{
    struct gw_request *req = x->req;
    if (x->holding_stream) {
        /* The call was answered already: nothing more to say to the client, the stream ends. */
        snprintf(req->upstream_error, sizeof req->upstream_error, "upstream.refused_request");
        x->end_stream = 1;
        return 0;
    }
    char message[200];
    snprintf(message, sizeof message,
             "The backend asked the client for %.60s, which protocol revision %s does not have; "
             "the call was ended",
             x->refused_request, req->protocol_version ? req->protocol_version : "2025-03-26");
    x->holding_stream = 1;
    int rc = 0;
    for (size_t i = 0; i < req->rpc.n && rc == 0; i++) {
        if (req->rpc.msgs[i].kind != MCP_REQUEST)
            continue;
        struct gw_buf body = {0}, ev = {0};
        if (jsonrpc_error_body(&body, req->rpc.msgs[i].id, JSONRPC_INTERNAL_ERROR, message, NULL) !=
                0 ||
            sse_encode(&ev, GW_SLICE_LIT(""), GW_SLICE_NULL, 0, -1,
                       (struct gw_slice){body.data, body.len}) != 0 ||
            write_to_client(x, ev.data, ev.len) != 0)
            rc = 1;
        gw_buf_free(&body);
        gw_buf_free(&ev);
    }
    snprintf(req->upstream_error, sizeof req->upstream_error, "upstream.refused_request");
    x->end_stream = 1;
    return rc;
}

/*
 * One SSE event from the backend. Every event that goes on is encoded anew from the fields
 * toolgate understood (id, retry, data), so comments and unknown fields never reach the
 * client. A priming event (an id, maybe retry, and no message: 2025-11-25) is passed on, so
 * the client can resume; a block of comments alone is dropped; a message goes through the
 * response hooks; anything else is dropped: what cannot be inspected does not reach the model.
 */
static int on_sse_event(void *arg, const struct sse_event *ev)
{
    struct exchange *x = arg;
    if (x->end_stream)
        return 0; /* the call was answered already; the stream is ending */
    if (!sse_fields_ok(ev)) {
        gw_log(GW_LOG_WARN, "upstream_bad_event", x->req->id, NULL,
               "dropped an SSE event with an event type or id toolgate does not pass on");
        return 0;
    }
    int rc = 0;
    struct gw_buf out = {0};
    if (!ev->has_data || ev->data.len == 0) {
        if (!ev->has_id && ev->retry < 0)
            return 0; /* comments only (keep-alives): nothing for the client */
        rc = sse_encode(&out, ev->event, ev->id, ev->has_id, ev->retry, GW_SLICE_LIT("")) == 0
                 ? (write_to_client(x, out.data, out.len) == 0 ? 0 : 1)
                 : 1;
        gw_buf_free(&out);
        return rc;
    }
    json_t *msg = NULL;
    size_t depth = x->req->cfg->server.limits.max_json_depth;
    if (mcp_parse_message(ev->data.ptr, ev->data.len, depth, &msg) != 0) {
        gw_log(GW_LOG_WARN, "upstream_bad_event", x->req->id, NULL,
               "dropped an SSE event whose data is not a JSON-RPC message");
        return 0;
    }
    int modified = 0;
    msg = relay_hooks(x, msg, &modified, NULL);
    if (!msg) {
        if (x->refused_request[0] && x->req->method == GW_HTTP_POST && !x->end_stream)
            return end_with_refusal(x);
        return 0; /* not for the client: the event is dropped */
    }
    /*
     * A POST stream's answer is held until its completion record is durable. A GET stream
     * never ends with an answer of its own: a response on it is one the backend replays after
     * the client resumed (Last-Event-ID), and goes on at once.
     */
    if (is_final_response(msg) && x->req->method != GW_HTTP_GET)
        x->holding_stream = 1;
    char *s = modified ? mcp_json_dumps(msg, 0) : NULL;
    struct gw_slice data = s ? (struct gw_slice){s, strlen(s)} : ev->data;
    if ((!modified || s) && sse_encode(&out, ev->event, ev->id, ev->has_id, ev->retry, data) == 0)
        rc = write_to_client(x, out.data, out.len) == 0 ? 0 : 1;
    else
        rc = 1;
    free(s);
    gw_buf_free(&out);
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
        exchange_arm_timer(x, exchange_timeouts(x)->idle_ms);
        int rc = sse_feed(&x->sse, data, len, on_sse_event, x);
        if (rc == 0 && x->end_stream) {
            exchange_finish(x, 0);
        } else if (rc == SSE_TOO_LARGE) {
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
        answer_error(x, 502, JSONRPC_INTERNAL_ERROR,
                     "The backend's answer exceeds server.limits.max_response",
                     "upstream.too_large");
        return 0;
    }
    exchange_arm_timer(x, exchange_timeouts(x)->idle_ms);
    if (gw_buf_append(&x->resp, data, len) != 0) {
        upstream_cancel(x->up);
        x->up = NULL;
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
    }
    return 0;
}

/* ---- a whole answer ---- */

/* Every message of a JSON answer through the response hooks, then to the client. */
static void finish_buffered(struct exchange *x)
{
    if (x->kind && x->kind->finish) {
        x->kind->finish(x);
        return;
    }
    struct gw_request *req = x->req;
    int status = req->upstream_status;
    const struct gw_header *ct = gw_header_find(x->out_headers, x->n_out, "Content-Type");
    int is_json =
        ct && ct->value.len >= 16 && strncasecmp(ct->value.ptr, "application/json", 16) == 0;
    struct gw_buf rewritten = {0};
    if (is_json && x->resp.len > 0) {
        json_t *body = NULL;
        if (mcp_parse_message(x->resp.data, x->resp.len, req->cfg->server.limits.max_json_depth,
                              &body) != 0) {
            gw_log(GW_LOG_WARN, "upstream_bad_json", req->id, NULL,
                   "the backend answered with JSON that is not a JSON-RPC message");
            answer_error(x, 502, JSONRPC_INTERNAL_ERROR,
                         "The backend's answer is not valid JSON-RPC", "upstream.bad_json");
            return;
        }
        int modified = 0;
        body = relay_hooks(x, body, &modified, NULL);
        if (!body) {
            /* Nothing of the answer may reach the client. */
            answer_error(x, 502, JSONRPC_INTERNAL_ERROR,
                         "The backend's answer is not an MCP message toolgate lets through",
                         "upstream.not_understood");
            return;
        }
        /* Written into room for about the answer it replaces: no growth by doubling. */
        if (modified && (gw_buf_reserve(&rewritten, x->resp.len + 256) != 0 ||
                         mcp_json_write(&rewritten, body, 0) != 0))
            gw_buf_free(&rewritten);
        json_decref(body);
        if (modified && !rewritten.data) {
            answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
            return;
        }
    }
    if (x->answer_status)
        status = x->answer_status; /* the kind made the answer another (an empty list page) */
    const char *out = rewritten.data ? rewritten.data : x->resp.data;
    size_t out_len = rewritten.data ? rewritten.len : x->resp.len;
    req->response_status = status;
    req->response_bytes += out_len;
    exchange_hold_whole(x, status, x->out_headers, x->n_out, out, out_len);
    gw_buf_free(&rewritten);
    exchange_finish(x, 0);
}

static void on_up_done(void *arg, int err, const char *detail)
{
    struct exchange *x = arg;
    struct gw_request *req = x->req;
    x->up = NULL;
    /* The connection never opened: nothing of the request reached the backend. */
    if (err == UPSTREAM_ECONNECT || err == UPSTREAM_ETIMEOUT)
        req->upstream_sent = 0;
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
            answer_error(x, 504, JSONRPC_INTERNAL_ERROR, "The backend did not answer in time",
                         "upstream.timeout");
        } else if (err == UPSTREAM_ECONNECT) {
            answer_error(x, 502, JSONRPC_INTERNAL_ERROR, "The backend is unreachable",
                         "upstream.connect");
        } else {
            answer_error(x, 502, JSONRPC_INTERNAL_ERROR,
                         "The backend's answer was cut short or malformed", "upstream.protocol");
        }
        return;
    }
    if (x->mode == RELAY_SSE)
        exchange_finish(x, 0);
    else
        finish_buffered(x);
}

/* ---- one builder for every upstream request ---- */

/*
 * Headers of the client's request that go to the backend; Authorization never does, and
 * Mcp-Session-Id is toolgate's own (the backend's id goes instead, relay_forward).
 */
static const char *const forwarded_headers[] = {
    "Content-Type", "Accept", "MCP-Protocol-Version", "Last-Event-ID", NULL,
};

/*
 * A 2026-07-28 request's mirrored headers, once the envelope check held them to the body:
 * Mcp-Method and Mcp-Name made anew from the body as it goes upstream (the URI in canonical
 * form), the client's Mcp-Param-* as they were checked. `store` keeps the values.
 */
static size_t modern_upstream_headers(const struct gw_request *req, struct gw_header *out,
                                      struct gw_buf *store)
{
    const struct mcp_message *m = req->rpc.n == 1 ? &req->rpc.msgs[0] : NULL;
    if (!m || !m->method)
        return 0;
    size_t n = 0;
    out[n++] = (struct gw_header){GW_SLICE_LIT("Mcp-Method"), {m->method, strlen(m->method)}};
    if (m->target && mcp_method_has_name(m->method)) {
        gw_buf_reset(store);
        if (mcp_header_value_encode(m->target, strlen(m->target), store) == 0)
            out[n++] = (struct gw_header){GW_SLICE_LIT("Mcp-Name"), {store->data, store->len}};
    }
    size_t params = 0;
    for (size_t i = 0; i < req->n_headers && params < MCP_MAX_PARAM_HEADERS; i++) {
        const struct gw_header *h = &req->headers[i];
        if (h->name.len > 10 && strncasecmp(h->name.ptr, "Mcp-Param-", 10) == 0) {
            if (!mcp_param_still_mirrors(m, h->value.ptr, h->value.len)) {
                /* The layers rewrote what it mirrors (a redaction): the original stays here. */
                gw_log(GW_LOG_WARN, "param_header_dropped", req->id, NULL,
                       "an Mcp-Param header no longer matches the arguments the layers let "
                       "through; it is not forwarded");
                continue;
            }
            out[n++] = *h;
            params++;
        }
    }
    return n;
}

const struct upstream_callbacks *relay_callbacks(void)
{
    static const struct upstream_callbacks cbs = {on_up_head, on_up_data, on_up_done};
    return &cbs;
}

int relay_start(struct exchange *x, const struct relay_request *r)
{
    struct gw_request *req = x->req;
    const struct gw_backend *be = r->backend ? r->backend : req->backend;
    struct gw_header hdrs[2 * (16 + MCP_MAX_PARAM_HEADERS) + 1 + GW_MAX_UPSTREAM_HEADERS];
    struct gw_buf store = {0};
    size_t n = 0;
    for (const char *const *name = forwarded_headers; r->client_headers && *name; name++) {
        if (req->modern && strcmp(*name, "Last-Event-ID") == 0)
            continue; /* nothing to resume in a stateless revision */
        struct gw_slice v = gw_request_header(req, *name);
        int injected = 0;
        for (size_t i = 0; i < req->n_upstream_headers; i++)
            injected |= gw_slice_casecmp_eq(req->upstream_headers[i].name, *name);
        if (v.ptr && !injected)
            hdrs[n++] = (struct gw_header){{*name, strlen(*name)}, v};
    }
    for (size_t i = 0; i < r->n_extra && n < 16 + MCP_MAX_PARAM_HEADERS; i++)
        hdrs[n++] = r->extra[i];
    if (req->modern && r->client_headers)
        n += modern_upstream_headers(req, hdrs + n, &store);
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("X-Request-Id"), {req->id, strlen(req->id)}};
    for (size_t i = 0; i < req->n_upstream_headers; i++)
        hdrs[n++] = req->upstream_headers[i];
    int vetted = be == req->backend && !r->no_pin;
    const char *url = r->url ? r->url : vetted && req->upstream_url ? req->upstream_url : be->url;
    struct upstream_request ur = {
        .url = url,
        .method = r->method,
        .body = r->body,
        .headers = hdrs,
        .n_headers = n,
        .connect_timeout_ms = be->timeouts.connect_ms,
        .pin = vetted ? req->upstream_pin : NULL,
        .ca_file = be->tls_ca,
        .cert_file = be->tls_cert,
        .key_file = be->tls_key,
        .unix_socket = be->local_socket,
    };
    struct upstream_call *call = upstream_start(
        gw_worker_upstream(x->w), &ur, r->cbs ? r->cbs : relay_callbacks(), r->detached ? NULL : x);
    gw_buf_free(&store);
    if (r->detached)
        return call ? 0 : -1;
    if (!call) {
        answer_error(x, 502, JSONRPC_INTERNAL_ERROR, "Cannot start the backend request",
                     "upstream.start");
        return -1;
    }
    x->up = call;
    /*
     * The request's own message is on its way (the relay's callbacks, or a kind's that wrap
     * them and say so): what limits charge and the upstream timing start here.
     */
    if (!r->cbs || r->carries_request) {
        req->upstream_sent = 1;
        req->timing.upstream_start_ns = gw_mono_ns();
    }
    exchange_arm_timer(x, be->timeouts.first_byte_ms);
    return 0;
}

const struct gw_route_kind *gw_route_kind_for(const char *name, size_t n_backends)
{
    for (size_t k = 0; k < gw_n_route_kinds; k++)
        if (gw_route_kinds[k]->claims && gw_route_kinds[k]->claims(name, n_backends))
            return gw_route_kinds[k];
    return NULL;
}
