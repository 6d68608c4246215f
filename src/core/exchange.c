#include "core/exchange.h"
#include "admin/admin_api.h"
#include "core/generation.h"
#include "core/pipeline.h"
#include "core/stats.h"
#include "lib/log.h"
#include "lib/timeutil.h"
#include "mcp/jsonrpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_timer(uv_timer_t *t);

struct exchange *exchange_new(struct gw_conn *c, const struct gw_route *route)
{
    struct gw_worker *w = gw_conn_worker(c);
    const struct gw_config *cfg = gw_worker_config(w);
    struct exchange *x = calloc(1, sizeof *x);
    struct gw_request *req = x ? gw_request_new(cfg) : NULL;
    if (!req) {
        free(x);
        return NULL;
    }
    x->conn = c;
    x->w = w;
    x->req = req;
    x->cfg = cfg;
    gw_generation_hold(cfg);
    x->kind = route->kind_ops;
    x->max_response = cfg->server.limits.max_response;
    sse_parser_init(&x->sse, cfg->server.limits.max_sse_event);
    uv_timer_init(gw_worker_loop(w), &x->timer);
    x->timer.data = x;
    req->exchange = x;
    req->host = gw_worker_host(w);
    req->route = route;
    gw_conn_set_hooks(c, exchange_on_client_gone, exchange_on_server_shutdown, x);
    return x;
}

const struct gw_route_timeouts *exchange_timeouts(const struct exchange *x)
{
    const struct gw_request *req = x->req;
    return req->backend ? &req->backend->timeouts : &req->route->timeouts;
}

void exchange_arm_timer(struct exchange *x, uint64_t ms)
{
    if (ms) {
        /* The loop's clock may be stale after a long iteration; timeouts count from now. */
        uv_update_time(x->timer.loop);
        uv_timer_start(&x->timer, on_timer, ms, 0);
    } else {
        uv_timer_stop(&x->timer);
    }
}

static void exchange_closed(uv_handle_t *h)
{
    struct exchange *x = h->data;
    if (x->kind_state && x->kind && x->kind->free_state)
        x->kind->free_state(x->kind_state);
    gw_buf_free(&x->held_hdr_storage);
    gw_buf_free(&x->held_body);
    gw_buf_free(&x->resp);
    gw_buf_free(&x->resp_hdr);
    sse_parser_free(&x->sse);
    reload_notify_stream_close(x);
    gw_generation_release(x->cfg);
    free(x);
}

static void log_request(const struct exchange *x)
{
    const struct gw_request *req = x->req;
    if (!gw_log_enabled(GW_LOG_INFO))
        return; /* formatted for nobody otherwise */
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

void exchange_hold_whole(struct exchange *x, int status, const struct gw_header *h, size_t n,
                         const char *body, size_t len)
{
    size_t off[EXCHANGE_MAX_OUT_HEADERS + 4][2];
    if (x->client_streaming) {
        /*
         * The client's answer is an event stream already (toolgate asked it something first):
         * the whole answer becomes the stream's last event, and the stream ends after it.
         */
        gw_buf_reset(&x->held_body);
        if (len > 0 && sse_encode(&x->held_body, GW_SLICE_LIT(""), GW_SLICE_NULL, 0, -1,
                                  (struct gw_slice){body, len}) != 0)
            gw_buf_reset(&x->held_body);
        x->req->response_status = 200;
        x->held_whole = 0;
        return;
    }
    if (n > EXCHANGE_MAX_OUT_HEADERS + 4)
        n = EXCHANGE_MAX_OUT_HEADERS + 4;
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
    gw_stats_request_done(req);
    admin_feed_request_done(req);
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

void exchange_finish(struct exchange *x, int abandon)
{
    if (x->finished)
        return;
    x->finished = 1;
    x->abandon = abandon;
    ask_forget(x);
    if (x->up) {
        upstream_cancel(x->up);
        x->up = NULL;
    }
    if (x->kind && x->kind->on_finish)
        x->kind->on_finish(x);
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
        answer_error(x, 504, JSONRPC_INTERNAL_ERROR, "The backend did not start answering in time",
                     "upstream.timeout");
    } else {
        answer_error(x, 504, JSONRPC_INTERNAL_ERROR, "The backend stalled while answering",
                     "upstream.timeout");
    }
}

void exchange_on_client_gone(void *arg)
{
    struct exchange *x = arg;
    x->conn = NULL;
    if (x->req)
        x->req->response_status = x->req->response_status ? x->req->response_status : 499;
    /* A layer still deciding will call the pipeline's done callback, which finishes. */
    if (x->req && !x->up && gw_pipeline_deciding(x->req)) {
        ask_client_gone(x); /* a prompt's wait ends now: the layer decides without it */
        return;
    }
    exchange_finish(x, 1);
}

void exchange_on_server_shutdown(void *arg)
{
    struct exchange *x = arg;
    /* An open-ended server stream (GET) ends now; POST answers may finish. */
    if (x->req && x->req->method == GW_HTTP_GET && x->mode == RELAY_SSE)
        exchange_finish(x, 0);
}
