/*
 * conn: one client connection on a worker: accepting it, reading and parsing requests
 * (HTTP/1.1, bounded in bytes and time), handing each complete request to the listener's
 * handler, and going on to the next one when the answer ends (conn_write.c writes it).
 * Pipelined requests are answered in order.
 */
#include "core/server-int.h"
#include "lib/log.h"
#include "lib/timeutil.h"
#include "mcp/jsonrpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static atomic_long open_connections;

static void conn_process(struct gw_conn *c);
static void conn_update_reading(struct gw_conn *c);
static void on_header_timeout(uv_timer_t *t);
static void on_idle_timeout(uv_timer_t *t);

long conn_open_count(void)
{
    return atomic_load(&open_connections);
}

struct gw_worker *gw_conn_worker(const struct gw_conn *c)
{
    return c->w;
}

int gw_conn_http_minor(const struct gw_conn *c)
{
    return c->parser ? c->parser->http_minor : 1;
}

int gw_conn_peer(const struct gw_conn *c, struct sockaddr_storage *out)
{
    int len = (int)sizeof *out;
    memset(out, 0, sizeof *out);
    return uv_tcp_getpeername(&c->tcp, (struct sockaddr *)out, &len) == 0 ? 0 : -1;
}

size_t gw_conn_queued(const struct gw_conn *c)
{
    return c->queued;
}

void gw_conn_on_drain(struct gw_conn *c, void (*cb)(void *arg), void *arg)
{
    c->drain_cb = cb;
    c->drain_arg = arg;
}

void gw_conn_set_hooks(struct gw_conn *c, void (*abort_cb)(void *arg),
                       void (*shutdown_cb)(void *arg), void *arg)
{
    c->abort_cb = abort_cb;
    c->shutdown_cb = shutdown_cb;
    c->hook_arg = arg;
}

void gw_conn_end(struct gw_conn *c, int abandon)
{
    if (c->closed || c->shutting)
        return;
    conn_flush_head(c);
    if (c->head_sent && c->chunked && !abandon)
        conn_write(c, "0\r\n\r\n", 5);
    int keep = c->keep_alive && c->head_sent && !abandon && !c->w->stopping;
    c->abort_cb = NULL;
    c->shutdown_cb = NULL;
    c->drain_cb = NULL;
    c->head_sent = 0;
    c->streaming = c->chunked = 0;
    c->requests++;
    if (!keep) {
        c->state = C_HANDLING;
        conn_finish_close(c);
        return;
    }
    if (c->inbuf.len == 0) {
        /* Nothing pipelined: let go of the request's buffers while the connection idles. */
        http1_free(c->parser);
        free(c->parser);
        c->parser = NULL;
        gw_buf_free(&c->inbuf);
        gw_buf_free(&c->head_buf);
    } else {
        http1_reset(c->parser);
    }
    c->state = C_IDLE;
    c->body_started = 0;
    c->first_request = 0;
    uv_timer_start(&c->timer, on_idle_timeout, c->w->cfg->server.limits.idle_timeout_ms, 0);
    if (!c->in_process)
        conn_process(c);
}

/* ---------- errors the server answers itself ---------- */

static void conn_error(struct gw_conn *c, int status, const char *msg)
{
    char body[256], id[37], fields[96];
    int n = snprintf(body, sizeof body,
                     "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":%d,\"message\":\"%s\"}}",
                     JSONRPC_INVALID_REQUEST, msg);
    gw_uuid7(id);
    snprintf(fields, sizeof fields, "\"status\":%d,\"route\":\"\"", status);
    gw_log(GW_LOG_INFO, "request", id, fields, "malformed request answered %d: %s", status, msg);
    c->parser->keep_alive = 0;
    c->state = C_HANDLING;
    struct gw_header rid = {GW_SLICE_LIT("X-Request-Id"), {id, 36}};
    if (gw_conn_respond(c, status, "application/json", body, (size_t)n, &rid, 1) != 0) {
        conn_close(c);
        return;
    }
    gw_conn_end(c, 0);
}

static void on_header_timeout(uv_timer_t *t)
{
    struct gw_conn *c = t->data;
    if (c->state == C_HEAD || c->state == C_BODY) {
        conn_error(c, 408,
                   c->state == C_HEAD ? "Request header not received in time"
                                      : "Request body not received in time");
    } else if (c->state == C_IDLE) {
        conn_close(c);
    }
}

static void on_idle_timeout(uv_timer_t *t)
{
    struct gw_conn *c = t->data;
    if (c->state == C_IDLE)
        conn_close(c);
}

/* ---------- reading ---------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct gw_conn *c = h->data;
    struct gw_worker *w = c->w;
    /* Reads are handled before the next allocation, so one buffer per worker serves all. */
    *buf = uv_buf_init(w->readbuf, sizeof w->readbuf);
}

static void conn_dispatch(struct gw_conn *c)
{
    c->state = C_HANDLING;
    c->w->dispatched++;
    uv_timer_stop(&c->timer);
    worker_refresh_config(c->w);
    c->handler.handle(c->handler.ctx, c, c->parser);
}

/* Parses buffered input until it is used up or a request is with the handler. */
static void conn_process(struct gw_conn *c)
{
    if (c->in_process)
        return;
    c->in_process = 1;
    while (!c->closed && !c->shutting && c->inbuf.len > 0 &&
           (c->state == C_IDLE || c->state == C_HEAD || c->state == C_BODY)) {
        if (c->state == C_IDLE) {
            if (!c->parser) {
                c->parser = malloc(sizeof *c->parser);
                if (!c->parser) {
                    conn_close(c);
                    break;
                }
                http1_init(c->parser, c->w->cfg->server.limits.max_header,
                           c->w->cfg->server.limits.max_body);
            }
            c->state = C_HEAD;
            uv_timer_start(&c->timer, on_header_timeout, c->w->cfg->server.limits.header_timeout_ms,
                           0);
        }
        size_t n = http1_feed(c->parser, c->inbuf.data, c->inbuf.len);
        gw_buf_consume(&c->inbuf, n);
        if (c->parser->state == HTTP1_ERROR) {
            conn_error(c, c->parser->error_status, c->parser->error_msg);
            break;
        }
        if ((c->parser->state == HTTP1_BODY || c->parser->state == HTTP1_DONE) &&
            !c->body_started) {
            c->body_started = 1;
            c->state = C_BODY;
            uv_timer_start(&c->timer, on_header_timeout, c->w->cfg->server.limits.body_timeout_ms,
                           0);
            if (c->parser->expect_continue && c->parser->state == HTTP1_BODY &&
                c->parser->http_minor >= 1)
                conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        }
        if (c->parser->state == HTTP1_DONE) {
            conn_dispatch(c);
            continue;
        }
        if (n == 0)
            break;
    }
    c->in_process = 0;
    if (!c->closed && !c->shutting)
        conn_update_reading(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct gw_conn *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        /* EOF or error: the client is gone (a half-close is treated as gone). */
        conn_close(c);
        return;
    }
    if (c->closed || c->shutting)
        return;
    if (c->tls) {
        struct gw_buf out = {0};
        int rc = gw_tls_feed(c->tls, buf->base, (size_t)nread, &c->inbuf, &out);
        if (out.len)
            conn_write_raw(c, out.data, out.len);
        gw_buf_free(&out);
        if (rc != GW_TLS_OK) {
            conn_close(c);
            return;
        }
    } else if (gw_buf_append(&c->inbuf, buf->base, (size_t)nread) != 0) {
        conn_close(c);
        return;
    }
    if (c->state == C_HANDLING) {
        conn_update_reading(c);
        return;
    }
    conn_process(c);
}

/* Reads while there is room for input; pauses while a request waits with input queued. */
static void conn_update_reading(struct gw_conn *c)
{
    int want = !(c->state == C_HANDLING && c->inbuf.len >= CONN_MAX_PENDING_INPUT);
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

/* ---------- connection lifecycle ---------- */

static void conn_handle_closed(uv_handle_t *h)
{
    struct gw_conn *c = h->data;
    if (--c->handles_open > 0)
        return;
    struct gw_worker *w = c->w;
    if (c->parser) {
        http1_free(c->parser);
        free(c->parser);
    }
    gw_buf_free(&c->inbuf);
    gw_buf_free(&c->head_buf);
    gw_tls_conn_free(c->tls);
    free(c);
    atomic_fetch_sub(&open_connections, 1);
    worker_maybe_finish(w);
}

void conn_close(struct gw_conn *c)
{
    if (c->closed)
        return;
    c->closed = 1;
    int was_handling = c->state == C_HANDLING;
    c->state = C_CLOSING;
    void (*abort_cb)(void *) = c->abort_cb;
    c->abort_cb = NULL;
    c->shutdown_cb = NULL;
    c->drain_cb = NULL;
    if (abort_cb && was_handling)
        abort_cb(c->hook_arg);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->w->n_conns--;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

static void reject_full(uv_stream_t *server)
{
    /* Over max_connections: accept, answer 503 and close, so the client learns why. */
    static const char body[] = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32000,"
                               "\"message\":\"Too many connections\"}}";
    uv_tcp_t *tmp = malloc(sizeof *tmp);
    if (!tmp)
        return;
    uv_tcp_init(server->loop, tmp);
    if (uv_accept(server, (uv_stream_t *)tmp) == 0) {
        char resp[512];
        int n = snprintf(resp, sizeof resp,
                         "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\nRetry-After: 1\r\n\r\n%s",
                         sizeof body - 1, body);
        uv_buf_t b = uv_buf_init(resp, (unsigned)n);
        uv_try_write((uv_stream_t *)tmp, &b, 1);
    }
    uv_close((uv_handle_t *)tmp, (uv_close_cb)free);
}

void conn_on_connection(uv_stream_t *server, int status)
{
    struct gw_listener *l = server->data;
    struct gw_worker *w = l->w;
    if (status < 0 || w->stopping)
        return;
    long now = atomic_fetch_add(&open_connections, 1) + 1;
    if ((uint64_t)now > w->cfg->server.limits.max_connections) {
        atomic_fetch_sub(&open_connections, 1);
        reject_full(server);
        return;
    }
    struct gw_conn *c = calloc(1, sizeof *c);
    if (!c) {
        atomic_fetch_sub(&open_connections, 1);
        return;
    }
    c->w = w;
    c->handler = l->handler;
    struct gw_tls_ctx *tls = server_tls_get(l->spec_index);
    if (tls && !(c->tls = gw_tls_conn_new(tls))) {
        free(c);
        atomic_fetch_sub(&open_connections, 1);
        return;
    }
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->first_request = 1;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = C_IDLE;
    /* A new connection must send its first request head within header_timeout. */
    uv_timer_start(&c->timer, on_header_timeout, w->cfg->server.limits.header_timeout_ms, 0);
    conn_update_reading(c);
}
