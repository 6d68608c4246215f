/*
 * subscriptions/listen (2026-07-28) on a federated route: one listen per backend, merged into
 * the client's one stream. Each backend is asked for what it could tell of the client's filter
 * (the list changes asked for, and its own share of the resources, without their URI prefix);
 * the client gets one acknowledgement, once every backend has acknowledged or ended, naming
 * what the backends acknowledged (combined, URIs with their prefix); then every backend's
 * notifications, under the client's subscription id (the id of its listen request), each
 * through the kind's rewriting (resources/updated gets the URI prefix) and the layers'
 * response hooks (a resource the user may not read is not told of). The backends' own
 * acknowledgements and their answers to the listen request stay here. The client's stream
 * ends when every backend's has (with toolgate's own answer to the listen request), when the
 * client leaves or when it is idle longer than the backends' idle timeout.
 */
#include "lib/log.h"
#include "mcp/jsonrpc.h"
#include "routes/federation/fed-int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SUBSCRIPTION_ID "io.modelcontextprotocol/subscriptionId"
/* Notifications that come before the client's acknowledgement are held up to this much. */
#define FED_MAX_LISTEN_HELD (256 * 1024)

/* The client's listen request id (its subscription id). */
static json_t *client_id(struct exchange *x)
{
    const struct gw_request *req = x->req;
    return req->rpc.n && req->rpc.msgs[0].id ? req->rpc.msgs[0].id : json_null();
}

/* One message to the client as an SSE event; 0, or -1 (the client is gone, or memory). */
static int write_event(struct exchange *x, const json_t *msg)
{
    struct fed_state *s = state(x);
    char *text = json_dumps(msg, JSON_COMPACT);
    struct gw_buf out = {0};
    int rc = -1;
    if (!text || sse_encode(&out, GW_SLICE_LIT(""), GW_SLICE_LIT(""), 0, -1,
                            (struct gw_slice){text, strlen(text)}) != 0)
        goto end;
    if (!s->client_acked) {
        /* Nothing goes before the acknowledgement: held (bounded) until it is written. */
        if (s->listen_held.len + out.len > FED_MAX_LISTEN_HELD) {
            gw_log(GW_LOG_WARN, "federation_listen_dropped", x->req->id, NULL,
                   "a notification that came before every backend had acknowledged the listen "
                   "was dropped: more than %d bytes were waiting",
                   FED_MAX_LISTEN_HELD);
            rc = 0;
        } else {
            rc = gw_buf_append(&s->listen_held, out.data, out.len);
        }
        goto end;
    }
    if (x->conn && gw_conn_write_body(x->conn, out.data, out.len) == 0) {
        x->req->response_bytes += out.len;
        rc = 0;
    }
end:
    free(text);
    gw_buf_free(&out);
    return rc;
}

/* The client's one acknowledgement, once no backend's is outstanding; then what was held. */
static int maybe_acknowledge(struct exchange *x)
{
    struct fed_state *s = state(x);
    if (s->client_acked || s->acks_pending > 0)
        return 0;
    if (fed_write_stream_head(x) != 0)
        return -1;
    json_t *ack = json_pack("{s:s, s:s, s:{s:{s:O}, s:O}}", "jsonrpc", "2.0", "method",
                            "notifications/subscriptions/acknowledged", "params", "_meta",
                            SUBSCRIPTION_ID, client_id(x), "notifications", s->listen_ack);
    s->client_acked = 1;
    int rc = ack ? write_event(x, ack) : -1;
    json_decref(ack);
    /* From now on the stream lives while it is not idle (the acknowledgement deadline ends). */
    exchange_arm_timer(x, exchange_timeouts(x)->idle_ms);
    if (rc == 0 && s->listen_held.len > 0) {
        if (!x->conn || gw_conn_write_body(x->conn, s->listen_held.data, s->listen_held.len) != 0)
            rc = -1;
        else
            x->req->response_bytes += s->listen_held.len;
        gw_buf_free(&s->listen_held);
    }
    return rc;
}

/* Every backend's listen has ended: toolgate answers the listen request and ends the stream. */
static void listen_ended(struct exchange *x)
{
    struct fed_state *s = state(x);
    if (s->live_streams > 0 || x->finished)
        return;
    if (maybe_acknowledge(x) != 0) {
        exchange_finish(x, 1);
        return;
    }
    json_t *end = json_pack("{s:s, s:O, s:{s:s, s:{s:O, s:{s:s, s:s}}}}", "jsonrpc", "2.0", "id",
                            client_id(x), "result", "resultType", "complete", "_meta",
                            SUBSCRIPTION_ID, client_id(x), "io.modelcontextprotocol/serverInfo",
                            "name", "toolgate", "version", TOOLGATE_VERSION);
    int rc = end ? write_event(x, end) : -1;
    json_decref(end);
    exchange_finish(x, rc != 0);
}

static void stream_finished(struct fed_stream *st)
{
    struct fed_state *s = state(st->x);
    if (st->call) {
        upstream_cancel(st->call);
        st->call = NULL;
    }
    if (!st->acked) {
        st->acked = 1;
        if (s->acks_pending > 0)
            s->acks_pending--;
    }
    if (s->live_streams > 0)
        s->live_streams--;
    if (maybe_acknowledge(st->x) != 0)
        exchange_finish(st->x, 1);
    else
        listen_ended(st->x);
}

static void listen_head(void *arg, int status, const struct gw_header *headers, size_t n)
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
    if (state(x)->client_acked)
        exchange_arm_timer(x, exchange_timeouts(x)->idle_ms);
}

/* A backend's notification for the client: rewritten, through the hooks, under its id. */
static int relay_notification(struct fed_stream *st, json_t *msg)
{
    struct exchange *x = st->x;
    struct fed_state *s = state(x);
    int modified = 0;
    s->index = st->index;
    s->list = FED_LIST_NONE;
    msg = relay_hooks(x, msg, &modified, NULL);
    if (!msg || !json_object_get(msg, "method")) {
        json_decref(msg); /* dropped, or denied: nothing for the client */
        return 0;
    }
    json_t *params = json_object_get(msg, "params");
    if (!json_is_object(params)) {
        params = json_object();
        json_object_set_new(msg, "params", params);
    }
    json_t *meta = json_object_get(params, "_meta");
    if (!json_is_object(meta)) {
        meta = json_object();
        json_object_set_new(params, "_meta", meta);
    }
    json_object_set(meta, SUBSCRIPTION_ID, client_id(x));
    int rc = write_event(x, msg);
    json_decref(msg);
    return rc == 0 ? 0 : 1;
}

static int listen_event(void *arg, const struct sse_event *ev)
{
    struct fed_stream *st = arg;
    struct exchange *x = st->x;
    struct fed_state *s = state(x);
    const char *backend = x->req->route->backends[st->index].name;
    if ((ev->event.len > 0 && !gw_slice_eq(ev->event, "message")) || !ev->has_data ||
        ev->data.len == 0)
        return 0;
    json_t *msg = NULL;
    if (mcp_parse_message(ev->data.ptr, ev->data.len, x->req->cfg->server.limits.max_json_depth,
                          &msg) != 0 ||
        !json_is_object(msg)) {
        gw_log(GW_LOG_WARN, "upstream_bad_event", x->req->id, NULL,
               "dropped an event of backend %s's listen stream that is not a JSON-RPC message",
               backend);
        json_decref(msg);
        return 0;
    }
    const char *method = json_string_value(json_object_get(msg, "method"));
    if (!method) {
        /* The backend's answer to the listen request: its listen is over. */
        if (json_object_get(msg, "error"))
            gw_log(GW_LOG_INFO, "federation_listen_refused", x->req->id, NULL,
                   "backend %s refused the listen request", backend);
        st->answered = 1;
        json_decref(msg);
        return 0;
    }
    if (strcmp(method, "notifications/subscriptions/acknowledged") == 0) {
        if (!st->acked) {
            st->acked = 1;
            if (s->acks_pending > 0)
                s->acks_pending--;
            fed_listen_ack_add(s->listen_ack,
                               json_object_get(json_object_get(msg, "params"), "notifications"),
                               x->req->route, st->index);
        }
        json_decref(msg);
        return maybe_acknowledge(x) == 0 ? 0 : 1;
    }
    if (json_object_get(msg, "id")) {
        json_decref(msg); /* no server requests in this revision */
        return 0;
    }
    return relay_notification(st, msg);
}

static void listen_drained(void *arg)
{
    struct exchange *x = arg;
    struct fed_state *s = state(x);
    for (size_t i = 0; i < s->n_streams; i++)
        if (s->streams[i].paused && s->streams[i].call) {
            s->streams[i].paused = 0;
            upstream_resume(s->streams[i].call);
        }
}

static int listen_data(void *arg, const char *data, size_t len)
{
    struct fed_stream *st = arg;
    struct exchange *x = st->x;
    if (x->finished || st->status != 200 || !st->is_sse)
        return 0; /* a refusal in JSON: the stream ends without an acknowledgement */
    if (x->conn && gw_conn_queued(x->conn) > x->req->cfg->server.limits.write_buffer) {
        /* The client is slow: this backend waits until it catches up. */
        st->paused = 1;
        gw_conn_on_drain(x->conn, listen_drained, x);
        return 1;
    }
    if (state(x)->client_acked)
        exchange_arm_timer(x, exchange_timeouts(x)->idle_ms);
    int rc = sse_feed(&st->sse, data, len, listen_event, st);
    if (x->finished)
        return 0;
    if (rc == SSE_TOO_LARGE) {
        gw_log(GW_LOG_WARN, "upstream_event_too_large", x->req->id, NULL,
               "an event of backend %s's listen stream exceeded server.limits.max_sse_event; "
               "that backend's listen ends",
               x->req->route->backends[st->index].name);
        stream_finished(st);
    } else if (rc != 0) {
        exchange_finish(x, 1);
    }
    return 0;
}

static void listen_done(void *arg, int err, const char *detail)
{
    struct fed_stream *st = arg;
    struct exchange *x = st->x;
    st->call = NULL;
    if (x->finished)
        return;
    if (err != UPSTREAM_OK || st->status != 200 || !st->is_sse)
        gw_log(GW_LOG_INFO, "federation_listen_ended", x->req->id, NULL,
               "backend %s's listen stream ended or was not offered: %s (HTTP %d)",
               x->req->route->backends[st->index].name, err ? detail : "", st->status);
    stream_finished(st);
}

/*
 * The acknowledgement deadline: a backend that has not acknowledged its listen within its
 * first-byte timeout (keep-alives do not count) is left out, so that one slow backend does not
 * hold the client's acknowledgement back.
 */
static void ack_deadline(uv_timer_t *t)
{
    struct exchange *x = t->data;
    struct fed_state *s = state(x);
    uv_timer_stop(&x->timer);
    for (size_t i = 0; !x->finished && !s->client_acked && i < s->n_streams; i++) {
        struct fed_stream *st = &s->streams[i];
        if (st->acked || !st->call)
            continue;
        gw_log(GW_LOG_WARN, "federation_listen_no_ack", x->req->id, NULL,
               "backend %s did not acknowledge the listen in time; it is left out",
               x->req->route->backends[st->index].name);
        stream_finished(st);
    }
}

void fed_listen(struct exchange *x, const struct mcp_message *m)
{
    struct gw_request *req = x->req;
    struct fed_state *s = state(x);
    const struct gw_route *route = req->route;
    const json_t *filter = json_object_get(json_object_get(m->json, "params"), "notifications");
    s->listening = 1;
    s->listen_ack = json_object();
    s->streams = calloc(route->n_backends, sizeof *s->streams);
    if (!s->listen_ack || !s->streams) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    static const struct upstream_callbacks cbs = {listen_head, listen_data, listen_done};
    for (size_t i = 0; i < route->n_backends; i++) {
        json_t *mine = fed_listen_filter_for(filter, route, i);
        json_t *body = mine ? json_deep_copy(m->json) : NULL;
        json_t *params = json_object_get(body, "params");
        if (!mine || !json_is_object(params) ||
            json_object_set_new(params, "notifications", mine) != 0) {
            json_decref(body);
            continue; /* nothing this backend could tell (or memory) */
        }
        struct fed_stream *st = &s->streams[s->n_streams++];
        st->x = x;
        st->index = i;
        st->body = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        sse_parser_init(&st->sse, req->cfg->server.limits.max_sse_event);
        struct gw_header h[4] = {
            {GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("application/json")},
            {GW_SLICE_LIT("Accept"), GW_SLICE_LIT("application/json, text/event-stream")},
            {GW_SLICE_LIT("MCP-Protocol-Version"), GW_SLICE_LIT("2026-07-28")},
            {GW_SLICE_LIT("Mcp-Method"), GW_SLICE_LIT("subscriptions/listen")},
        };
        st->call = st->body ? fed_start_other(x, &route->backends[i], GW_HTTP_POST, st->body, h, 4,
                                              &cbs, st)
                            : NULL;
        if (st->call) {
            s->live_streams++;
            s->acks_pending++;
        }
    }
    if (s->live_streams == 0) {
        /* Nothing to listen to: acknowledged as nothing, and ended at once. */
        listen_ended(x);
        return;
    }
    uint64_t deadline = exchange_timeouts(x)->first_byte_ms;
    if (deadline) {
        uv_update_time(x->timer.loop);
        uv_timer_start(&x->timer, ack_deadline, deadline, 0);
    }
}
