/*
 * The server stream of a federated route: a client's GET merged from every backend's.
 */
#include "lib/log.h"
#include "mcp/jsonrpc.h"
#include "routes/federation/fed-int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

void fed_on_finish(struct exchange *x)
{
    struct fed_state *s = state(x);
    for (size_t i = 0; s && i < s->n_streams; i++) {
        upstream_cancel(s->streams[i].call);
        s->streams[i].call = NULL;
    }
}

static void streams_ended(struct exchange *x)
{
    struct fed_state *s = state(x);
    if (s->live_streams > 0 || x->finished)
        return;
    if (s->head_written) {
        exchange_finish(x, 0);
        return;
    }
    answer_error(x, 405, JSONRPC_INVALID_REQUEST, "No backend offers a server stream (GET)",
                 "federation.no_server_stream");
}

static void stream_end(struct fed_stream *st)
{
    struct fed_state *s = state(st->x);
    if (st->call) {
        upstream_cancel(st->call);
        st->call = NULL;
    }
    if (s->live_streams > 0)
        s->live_streams--;
}

int fed_write_stream_head(struct exchange *x)
{
    struct gw_request *req = x->req;
    struct fed_state *s = state(x);
    if (s->head_written)
        return 0;
    s->head_written = 1;
    x->n_out = 0;
    x->out_headers[x->n_out++] =
        (struct gw_header){GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("text/event-stream")};
    x->out_headers[x->n_out++] =
        (struct gw_header){GW_SLICE_LIT("Cache-Control"), GW_SLICE_LIT("no-cache")};
    x->out_headers[x->n_out++] =
        (struct gw_header){GW_SLICE_LIT("X-Request-Id"), {req->id, strlen(req->id)}};
    for (size_t i = 0; i < req->n_response_headers && x->n_out < EXCHANGE_MAX_OUT_HEADERS; i++)
        x->out_headers[x->n_out++] = req->response_headers[i];
    x->mode = RELAY_SSE;
    req->response_status = 200;
    req->upstream_status = 200;
    return x->conn ? gw_conn_write_head(x->conn, 200, x->out_headers, x->n_out, -1) : -1;
}

static void stream_head(void *arg, int status, const struct gw_header *headers, size_t n)
{
    struct fed_stream *st = arg;
    struct exchange *x = st->x;
    if (x->finished)
        return;
    st->status = status;
    for (size_t i = 0; i < n; i++)
        if (gw_slice_casecmp_eq(headers[i].name, "Content-Type"))
            st->is_sse = headers[i].value.len >= 17 &&
                         strncasecmp(headers[i].value.ptr, "text/event-stream", 17) == 0;
    if (status == 200 && st->is_sse && fed_write_stream_head(x) != 0)
        exchange_finish(x, 1);
    else
        exchange_arm_timer(x, exchange_timeouts(x)->idle_ms);
}

/*
 * One event of a backend's stream. Only messages go on, each a request or a notification
 * (a server stream carries no answers), through the kind's rewriting and the layers' response
 * hooks like any message of the backend's, re-encoded without an event id: the merged stream
 * cannot be resumed (Last-Event-ID names one backend's event), and a client that reconnects
 * gets a new one. Event types other than "message", priming events and comments are dropped.
 */
static int stream_event(void *arg, const struct sse_event *ev)
{
    struct fed_stream *st = arg;
    struct exchange *x = st->x;
    struct fed_state *s = state(x);
    struct gw_request *req = x->req;
    if ((ev->event.len > 0 && !gw_slice_eq(ev->event, "message")) || !ev->has_data ||
        ev->data.len == 0)
        return 0;
    json_t *msg = NULL;
    if (mcp_parse_message(ev->data.ptr, ev->data.len, req->cfg->server.limits.max_json_depth,
                          &msg) != 0 ||
        !json_is_object(msg) || !json_is_string(json_object_get(msg, "method"))) {
        gw_log(GW_LOG_WARN, "upstream_bad_event", req->id, NULL,
               "dropped an event of backend %s's server stream that is not a request or a "
               "notification",
               req->route->backends[st->index].name);
        json_decref(msg);
        return 0;
    }
    int modified = 0;
    s->index = st->index;
    s->list = FED_LIST_NONE;
    msg = relay_hooks(x, msg, &modified, NULL);
    if (!msg || !json_object_get(msg, "method")) {
        json_decref(msg); /* dropped, or denied: nothing for the client */
        return 0;
    }
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    struct gw_buf out = {0};
    int rc = 0;
    if (!text || sse_encode(&out, GW_SLICE_LIT(""), GW_SLICE_LIT(""), 0, -1,
                            (struct gw_slice){text, strlen(text)}) != 0)
        rc = 1;
    else if (!x->conn || gw_conn_write_body(x->conn, out.data, out.len) != 0)
        rc = 1;
    else
        req->response_bytes += out.len;
    free(text);
    gw_buf_free(&out);
    return rc;
}

static void streams_drained(void *arg)
{
    struct exchange *x = arg;
    struct fed_state *s = state(x);
    for (size_t i = 0; i < s->n_streams; i++)
        if (s->streams[i].paused && s->streams[i].call) {
            s->streams[i].paused = 0;
            upstream_resume(s->streams[i].call);
        }
}

static int stream_data(void *arg, const char *data, size_t len)
{
    struct fed_stream *st = arg;
    struct exchange *x = st->x;
    if (x->finished || !x->conn || st->status != 200 || !st->is_sse)
        return 0;
    if (gw_conn_queued(x->conn) > x->req->cfg->server.limits.write_buffer) {
        /* The client is slow: this backend waits until it catches up. */
        st->paused = 1;
        gw_conn_on_drain(x->conn, streams_drained, x);
        return 1;
    }
    exchange_arm_timer(x, exchange_timeouts(x)->idle_ms);
    int rc = sse_feed(&st->sse, data, len, stream_event, st);
    if (rc == SSE_TOO_LARGE) {
        gw_log(GW_LOG_WARN, "upstream_event_too_large", x->req->id, NULL,
               "an event of backend %s's server stream exceeded server.limits.max_sse_event; "
               "that backend's stream ends",
               x->req->route->backends[st->index].name);
        stream_end(st);
        streams_ended(x);
    } else if (rc != 0) {
        exchange_finish(x, 1);
    }
    return 0;
}

static void stream_done(void *arg, int err, const char *detail)
{
    struct fed_stream *st = arg;
    struct exchange *x = st->x;
    st->call = NULL;
    if (x->finished)
        return;
    if (err != UPSTREAM_OK || st->status != 200 || !st->is_sse)
        gw_log(GW_LOG_INFO, "federation_stream_ended", x->req->id, NULL,
               "backend %s's server stream ended or was not offered: %s (HTTP %d)",
               x->req->route->backends[st->index].name, err ? detail : "", st->status);
    stream_end(st);
    streams_ended(x);
}

void fed_open_streams(struct exchange *x)
{
    struct gw_request *req = x->req;
    struct fed_state *s = state(x);
    const struct gw_route *route = req->route;
    if (!req->session_valid) {
        answer_error(x, req->session_id ? 404 : 400, JSONRPC_INVALID_REQUEST,
                     req->session_id ? "Session not found" : "Mcp-Session-Id header is required",
                     "federation.no_session");
        return;
    }
    size_t n =
        route->n_backends < req->session.n_backends ? route->n_backends : req->session.n_backends;
    s->streams = calloc(n ? n : 1, sizeof *s->streams);
    if (!s->streams) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    static const struct upstream_callbacks cbs = {stream_head, stream_data, stream_done};
    for (size_t i = 0; i < n; i++) {
        const char *sid = req->session.backends[i];
        if (!sid)
            continue; /* never opened (it was unreachable): nothing to listen to */
        struct fed_stream *st = &s->streams[s->n_streams++];
        const struct gw_backend *be = &route->backends[i];
        st->x = x;
        st->index = i;
        sse_parser_init(&st->sse, req->cfg->server.limits.max_sse_event);
        struct gw_header h[3] = {
            {GW_SLICE_LIT("Accept"), GW_SLICE_LIT("text/event-stream")},
            {GW_SLICE_LIT("MCP-Protocol-Version"), GW_SLICE_LIT(FED_BACKEND_PROTOCOL)},
            {GW_SLICE_LIT("Mcp-Session-Id"), {sid, strlen(sid)}},
        };
        st->call = fed_start_other(x, be, GW_HTTP_GET, NULL, h, 3, &cbs, st);
        if (st->call)
            s->live_streams++;
    }
    if (s->live_streams == 0) {
        answer_error(x, 405, JSONRPC_INVALID_REQUEST, "No backend offers a server stream (GET)",
                     "federation.no_server_stream");
        return;
    }
    exchange_arm_timer(x, exchange_timeouts(x)->first_byte_ms);
}
