#include "core/server.h"
#include "lib/log.h"
#include "lib/timeutil.h"
#include "core/tls.h"
#include "core/upstream.h"
#include "mcp/jsonrpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Bytes of pipelined input held while a request is being answered; reading pauses beyond. */
#define CONN_MAX_PENDING_INPUT (64u * 1024)
#define WORKER_READ_BUF (64u * 1024)
#define MAX_WORKERS 256

enum conn_state {
    C_IDLE,     /* between requests (or before the first) */
    C_HEAD,     /* receiving a request head */
    C_BODY,     /* receiving a request body */
    C_HANDLING, /* the request is with the handler */
    C_CLOSING,
};

struct post_item {
    void (*fn)(void *);
    void *arg;
    struct post_item *next;
};

struct gw_listener {
    uv_tcp_t tcp; /* first member: the handle's address is the listener's */
    struct gw_worker *w;
    struct gw_tls_ctx *tls; /* NULL for plain HTTP */
};

struct gw_worker {
    int index;
    uv_loop_t loop;
    uv_thread_t thread;
    const struct gw_config *cfg;
    struct gw_listener *listeners;
    int *listen_fds;
    size_t n_listeners;
    uv_async_t async;
    pthread_mutex_t post_lock;
    struct post_item *post_head, *post_tail;
    atomic_int stop_requested; /* 1 = drain, 2 = drain now */
    int stopping;
    int stop_done;
    atomic_int finished; /* the worker's loop has returned */
    int loop_ok;
    uv_timer_t stop_timer;
    struct upstream_multi *upstream;
    struct gw_conn *conns; /* doubly linked list of open connections */
    size_t n_conns;
    size_t holds; /* work still owed to this worker outside any connection (gw_worker_ref) */
    char readbuf[WORKER_READ_BUF];
    int readbuf_busy;
    void (*on_stopped)(struct gw_worker *w);
};

struct gw_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct gw_worker *w;
    struct gw_tls_conn *tls; /* NULL for plain HTTP */
    struct gw_conn *prev, *next;
    /*
     * Parser state exists only while a request is being read or served (it is several
     * KiB); an idle keep-alive connection holds none.
     */
    struct http1_parser *parser;
    struct gw_buf inbuf;
    enum conn_state state;
    int handles_open;
    int in_process;
    int reading;
    int keep_alive; /* for the response being written */
    int streaming;  /* the response body is chunked or close-delimited */
    int chunked;
    int head_sent;
    int body_started; /* the body phase of the current request began */
    int close_after;  /* close once the queued bytes are written */
    int head_pending; /* a fixed-length head waits in head_buf to leave with the body */
    struct gw_buf head_buf;
    int shutting; /* uv_shutdown issued: no more writes */
    int closed;   /* uv_close issued: the handles are going away */
    int first_request;
    size_t queued;
    uint64_t requests;
    void (*abort_cb)(void *);
    void (*shutdown_cb)(void *);
    void *hook_arg;
    void (*drain_cb)(void *);
    void *drain_arg;
};

struct write_req {
    uv_write_t req;
    struct gw_conn *c;
    size_t len;
    char data[];
};

static atomic_long open_connections;
/* One TLS context per server.listen entry (NULL for plain ones), shared by all workers. */
static struct gw_tls_ctx **tls_contexts;
static const struct gw_config *server_cfg;

static void conn_process(struct gw_conn *c);
static void conn_close(struct gw_conn *c);
static void conn_update_reading(struct gw_conn *c);
static void worker_maybe_finish(struct gw_worker *w);
static void on_header_timeout(uv_timer_t *t);
static void on_idle_timeout(uv_timer_t *t);
static int conn_write_raw(struct gw_conn *c, const char *data, size_t len);

/* ---------- small helpers ---------- */

uv_loop_t *gw_worker_loop(struct gw_worker *w)
{
    return &w->loop;
}

struct upstream_multi *gw_worker_upstream(struct gw_worker *w)
{
    return w->upstream;
}

const struct gw_config *gw_worker_config(struct gw_worker *w)
{
    return w->cfg;
}

int gw_worker_stopping(const struct gw_worker *w)
{
    return w->stopping;
}

struct gw_worker *gw_conn_worker(const struct gw_conn *c)
{
    return c->w;
}

int gw_conn_http_minor(const struct gw_conn *c)
{
    return c->parser ? c->parser->http_minor : 1;
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

/* ---------- writing ---------- */

static void conn_after_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    struct gw_conn *c = req->data;
    free(req);
    conn_close(c);
}

/* Closes gracefully once everything queued has reached the kernel. */
static void conn_finish_close(struct gw_conn *c)
{
    if (c->closed || c->shutting)
        return;
    if (c->queued > 0) {
        c->close_after = 1;
        return;
    }
    if (c->tls) {
        struct gw_buf alert = {0};
        gw_tls_close_notify(c->tls, &alert);
        conn_write_raw(c, alert.data, alert.len);
        gw_buf_free(&alert);
    }
    c->shutting = 1;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    uv_shutdown_t *sr = malloc(sizeof *sr);
    if (sr) {
        sr->data = c;
        if (uv_shutdown(sr, (uv_stream_t *)&c->tcp, conn_after_shutdown) == 0)
            return;
        free(sr);
    }
    conn_close(c);
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *wr = (struct write_req *)req;
    struct gw_conn *c = wr->c;
    c->queued -= wr->len;
    free(wr);
    if (c->closed)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->close_after && c->queued == 0) {
        c->close_after = 0;
        conn_finish_close(c);
        return;
    }
    uint64_t low = c->w->cfg->server.limits.write_buffer / 2;
    if (c->drain_cb && c->queued <= low) {
        void (*cb)(void *) = c->drain_cb;
        c->drain_cb = NULL;
        cb(c->drain_arg);
    }
}

/* Queues the concatenation of n pieces as one write (encrypted on a TLS connection). */
static int conn_writev(struct gw_conn *c, const struct gw_slice *pieces, size_t n)
{
    if (c->closed || c->shutting)
        return -1;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += pieces[i].len;
    if (total == 0)
        return 0;
    struct gw_buf cipher = {0};
    struct gw_slice cipher_piece;
    if (c->tls) {
        for (size_t i = 0; i < n; i++) {
            if (gw_tls_encrypt(c->tls, pieces[i].ptr, pieces[i].len, &cipher) != GW_TLS_OK) {
                gw_buf_free(&cipher);
                return -1;
            }
        }
        total = cipher.len;
        cipher_piece = (struct gw_slice){cipher.data, cipher.len};
        pieces = &cipher_piece;
        n = 1;
    }
    struct write_req *wr = malloc(sizeof *wr + total);
    if (!wr) {
        gw_buf_free(&cipher);
        return -1;
    }
    wr->c = c;
    wr->len = total;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(wr->data + off, pieces[i].ptr, pieces[i].len);
        off += pieces[i].len;
    }
    gw_buf_free(&cipher);
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)total);
    c->queued += total;
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        c->queued -= total;
        free(wr);
        return -1;
    }
    return 0;
}

static int conn_write(struct gw_conn *c, const char *data, size_t len)
{
    struct gw_slice s = {data, len};
    return conn_writev(c, &s, 1);
}

/* Queues bytes that are already what goes on the wire (TLS records). */
static int conn_write_raw(struct gw_conn *c, const char *data, size_t len)
{
    if (c->closed || len == 0)
        return c->closed ? -1 : 0;
    struct write_req *wr = malloc(sizeof *wr + len);
    if (!wr)
        return -1;
    wr->c = c;
    wr->len = len;
    memcpy(wr->data, data, len);
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)len);
    c->queued += len;
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        c->queued -= len;
        free(wr);
        return -1;
    }
    return 0;
}

static void http_date(char *out, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

int gw_conn_write_head(struct gw_conn *c, int status, const struct gw_header *headers,
                       size_t n_headers, int64_t content_length)
{
    if (c->closed || c->shutting || c->head_sent)
        return -1;
    struct gw_buf h = {0};
    char date[64];
    http_date(date, sizeof date);
    c->keep_alive = c->parser->keep_alive && !c->w->stopping;
    c->streaming = content_length < 0;
    c->chunked = c->streaming && c->parser->http_minor >= 1;
    if (c->streaming && !c->chunked)
        c->keep_alive = 0; /* an HTTP/1.0 stream ends when the connection closes */
    int rc = gw_buf_printf(&h, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: toolgate\r\n", status,
                           http1_reason(status), date);
    for (size_t i = 0; i < n_headers && rc == 0; i++) {
        rc |= gw_buf_append(&h, headers[i].name.ptr, headers[i].name.len);
        rc |= gw_buf_append(&h, ": ", 2);
        rc |= gw_buf_append(&h, headers[i].value.ptr, headers[i].value.len);
        rc |= gw_buf_append(&h, "\r\n", 2);
    }
    if (content_length >= 0)
        rc |= gw_buf_printf(&h, "Content-Length: %lld\r\n", (long long)content_length);
    else if (c->chunked)
        rc |= gw_buf_append_str(&h, "Transfer-Encoding: chunked\r\n");
    if (!c->keep_alive)
        rc |= gw_buf_append_str(&h, "Connection: close\r\n");
    else if (c->parser->http_minor == 0)
        rc |= gw_buf_append_str(&h, "Connection: keep-alive\r\n");
    rc |= gw_buf_append(&h, "\r\n", 2);
    if (rc == 0 && c->streaming) {
        /* A stream's head goes at once: the client may wait long for the first event. */
        rc = conn_write(c, h.data, h.len);
        gw_buf_free(&h);
    } else if (rc == 0) {
        /* A fixed-length head leaves with the body, in one write. */
        gw_buf_free(&c->head_buf);
        c->head_buf = h;
        c->head_pending = 1;
    } else {
        gw_buf_free(&h);
    }
    if (rc == 0)
        c->head_sent = 1;
    return rc;
}

/* Writes a head still waiting for its body (an empty body, or the end of the answer). */
static int flush_head(struct gw_conn *c)
{
    if (!c->head_pending)
        return 0;
    c->head_pending = 0;
    int rc = conn_write(c, c->head_buf.data, c->head_buf.len);
    gw_buf_reset(&c->head_buf);
    return rc;
}

int gw_conn_write_body(struct gw_conn *c, const char *data, size_t len)
{
    if (c->closed || c->shutting || !c->head_sent)
        return -1;
    if (len == 0)
        return 0;
    if (c->head_pending) {
        struct gw_slice pieces[2] = {{c->head_buf.data, c->head_buf.len}, {data, len}};
        c->head_pending = 0;
        int rc = conn_writev(c, pieces, 2);
        gw_buf_reset(&c->head_buf);
        return rc;
    }
    if (!c->chunked)
        return conn_write(c, data, len);
    char size[24];
    int n = snprintf(size, sizeof size, "%zx\r\n", len);
    struct gw_slice pieces[3] = {{size, (size_t)n}, {data, len}, {"\r\n", 2}};
    return conn_writev(c, pieces, 3);
}

int gw_conn_respond(struct gw_conn *c, int status, const char *content_type, const char *body,
                    size_t len, const struct gw_header *extra, size_t n_extra)
{
    struct gw_header hdrs[16];
    size_t n = 0;
    if (content_type)
        hdrs[n++] =
            (struct gw_header){GW_SLICE_LIT("Content-Type"), {content_type, strlen(content_type)}};
    for (size_t i = 0; i < n_extra && n < 16; i++)
        hdrs[n++] = extra[i];
    if (gw_conn_write_head(c, status, hdrs, n, (int64_t)len) != 0)
        return -1;
    return gw_conn_write_body(c, body, len);
}

void gw_conn_end(struct gw_conn *c, int abandon)
{
    if (c->closed || c->shutting)
        return;
    flush_head(c);
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
    uv_timer_stop(&c->timer);
    gw_handle_request(c, c->parser);
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

static void conn_close(struct gw_conn *c)
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

static void on_connection(uv_stream_t *server, int status)
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
    if (l->tls && !(c->tls = gw_tls_conn_new(l->tls))) {
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

/* ---------- workers ---------- */

void gw_worker_ref(struct gw_worker *w)
{
    w->holds++;
}

void gw_worker_unref(struct gw_worker *w)
{
    if (w->holds > 0)
        w->holds--;
    worker_maybe_finish(w);
}

int gw_worker_post(void *worker, void (*fn)(void *arg), void *arg)
{
    struct gw_worker *w = worker;
    struct post_item *it = malloc(sizeof *it);
    if (!it)
        return -1;
    it->fn = fn;
    it->arg = arg;
    it->next = NULL;
    pthread_mutex_lock(&w->post_lock);
    if (w->post_tail)
        w->post_tail->next = it;
    else
        w->post_head = it;
    w->post_tail = it;
    pthread_mutex_unlock(&w->post_lock);
    uv_async_send(&w->async);
    return 0;
}

static void on_stop_deadline(uv_timer_t *t)
{
    struct gw_worker *w = t->data;
    gw_log(GW_LOG_WARN, "shutdown", NULL, NULL,
           "worker %d: %zu connection(s) still open at the shutdown deadline; closing them",
           w->index, w->n_conns);
    while (w->conns)
        conn_close(w->conns);
    worker_maybe_finish(w);
}

static void async_closed(uv_handle_t *h)
{
    (void)h;
}

static void worker_maybe_finish(struct gw_worker *w)
{
    if (!w->stopping || w->stop_done || w->n_conns > 0 || w->holds > 0)
        return;
    w->stop_done = 1;
    uv_timer_stop(&w->stop_timer);
    uv_close((uv_handle_t *)&w->stop_timer, NULL);
    upstream_multi_close(w->upstream);
    w->upstream = NULL;
    uv_close((uv_handle_t *)&w->async, async_closed);
}

static void worker_begin_stop(struct gw_worker *w, int now)
{
    if (!w->stopping) {
        w->stopping = 1;
        for (size_t i = 0; i < w->n_listeners; i++)
            uv_close((uv_handle_t *)&w->listeners[i].tcp, NULL);
        uv_timer_start(&w->stop_timer, on_stop_deadline,
                       now ? 0 : w->cfg->server.limits.shutdown_timeout_ms, 0);
        /* Idle connections go now; requests in flight may finish; open streams end. */
        struct gw_conn *c = w->conns;
        while (c) {
            struct gw_conn *next = c->next;
            if (c->state == C_IDLE || c->state == C_HEAD) {
                conn_close(c);
            } else if (c->state == C_HANDLING && c->shutdown_cb) {
                void (*cb)(void *) = c->shutdown_cb;
                c->shutdown_cb = NULL;
                cb(c->hook_arg);
            }
            c = next;
        }
    } else if (now) {
        uv_timer_start(&w->stop_timer, on_stop_deadline, 0, 0);
    }
    worker_maybe_finish(w);
}

static void on_async(uv_async_t *a)
{
    struct gw_worker *w = a->data;
    pthread_mutex_lock(&w->post_lock);
    struct post_item *it = w->post_head;
    w->post_head = w->post_tail = NULL;
    pthread_mutex_unlock(&w->post_lock);
    while (it) {
        struct post_item *next = it->next;
        it->fn(it->arg);
        free(it);
        it = next;
    }
    int stop = atomic_load(&w->stop_requested);
    if (stop && !w->stop_done)
        worker_begin_stop(w, stop == 2);
}

static int bind_listener(const struct gw_listen *l, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof ss);
    if (strchr(l->host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)l->port);
        if (inet_pton(AF_INET6, l->host, &a->sin6_addr) != 1) {
            snprintf(err, errlen, "%s: not an IPv6 address", l->address);
            return -1;
        }
        sslen = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)l->port);
        if (inet_pton(AF_INET, l->host, &a->sin_addr) != 1) {
            snprintf(err, errlen, "%s: not an IPv4 address", l->address);
            return -1;
        }
        sslen = sizeof *a;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s: socket: %s", l->address, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        snprintf(err, errlen, "%s: SO_REUSEPORT: %s", l->address, strerror(errno));
        close(fd);
        return -1;
    }
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s%s", l->address, strerror(errno),
                 errno == EADDRINUSE ? " (another process holds the port; stop it or change "
                                       "server.listen)"
                                     : "");
        close(fd);
        return -1;
    }
    if (listen(fd, 1024) != 0) {
        snprintf(err, errlen, "%s: listen: %s", l->address, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int worker_init(struct gw_worker *w, int index, const struct gw_config *cfg, char *err,
                       size_t errlen)
{
    w->index = index;
    w->cfg = cfg;
    if (uv_loop_init(&w->loop) != 0) {
        snprintf(err, errlen, "cannot create an event loop");
        return -1;
    }
    w->loop_ok = 1;
    pthread_mutex_init(&w->post_lock, NULL);
    uv_async_init(&w->loop, &w->async, on_async);
    w->async.data = w;
    uv_timer_init(&w->loop, &w->stop_timer);
    w->stop_timer.data = w;
    w->upstream = upstream_multi_new(&w->loop);
    if (!w->upstream) {
        snprintf(err, errlen, "cannot create the upstream client");
        return -1;
    }
    w->n_listeners = cfg->server.n_listen;
    w->listeners = calloc(w->n_listeners, sizeof *w->listeners);
    w->listen_fds = calloc(w->n_listeners, sizeof *w->listen_fds);
    if (!w->listeners || !w->listen_fds) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < w->n_listeners; i++) {
        int fd = bind_listener(&cfg->server.listen[i], err, errlen);
        if (fd < 0)
            return -1;
        w->listen_fds[i] = fd;
        uv_tcp_init(&w->loop, &w->listeners[i].tcp);
        w->listeners[i].tcp.data = &w->listeners[i];
        w->listeners[i].w = w;
        w->listeners[i].tls = tls_contexts ? tls_contexts[i] : NULL;
        if (uv_tcp_open(&w->listeners[i].tcp, fd) != 0 ||
            uv_listen((uv_stream_t *)&w->listeners[i].tcp, 1024, on_connection) != 0) {
            snprintf(err, errlen, "cannot listen on %s", cfg->server.listen[i].address);
            return -1;
        }
    }
    return 0;
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void worker_destroy(struct gw_worker *w)
{
    if (!w->loop_ok)
        return;
    if (w->upstream) {
        upstream_multi_close(w->upstream);
        w->upstream = NULL;
    }
    /* Everything should be closed; close stragglers so uv_loop_close succeeds. */
    uv_walk(&w->loop, close_any, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w->loop) != 0)
        gw_log_warn("shutdown", "worker %d: event loop still had handles at exit", w->index);
    pthread_mutex_destroy(&w->post_lock);
    struct post_item *it = w->post_head;
    while (it) {
        struct post_item *next = it->next;
        free(it);
        it = next;
    }
    free(w->listeners);
    free(w->listen_fds);
}

/* ---------- the process ---------- */

static struct gw_worker *workers;
static int n_workers;
static int signals_seen;
/*
 * The main thread's loop and signal handles live until the process has finished its
 * teardown (gw_server_release_signals): a signal arriving while the audit log flushes must
 * still be caught, not kill the process.
 */
static uv_loop_t main_loop;
static int main_loop_open;
static uv_async_t main_wakeup;
static uv_signal_t sigterm_handle, sigint_handle;

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    signals_seen++;
    int now = signals_seen > 1;
    gw_log(GW_LOG_INFO, "shutdown", NULL, NULL, "%s received: %s",
           signum == SIGTERM ? "SIGTERM" : "SIGINT",
           now ? "closing all connections now" : "draining in-flight requests");
    for (int i = 0; i < n_workers; i++) {
        if (atomic_load(&workers[i].finished))
            continue;
        atomic_store(&workers[i].stop_requested, now ? 2 : 1);
        uv_async_send(&workers[i].async);
    }
}

/* The main loop ends once every worker's loop has returned. */
static void on_main_wakeup(uv_async_t *a)
{
    (void)a;
    for (int i = 0; i < n_workers; i++)
        if (!atomic_load(&workers[i].finished))
            return;
    uv_stop(a->loop);
}

void gw_server_release_signals(void)
{
    if (!main_loop_open)
        return;
    main_loop_open = 0;
    uv_close((uv_handle_t *)&sigterm_handle, NULL);
    uv_close((uv_handle_t *)&sigint_handle, NULL);
    uv_close((uv_handle_t *)&main_wakeup, NULL);
    uv_run(&main_loop, UV_RUN_DEFAULT);
    uv_loop_close(&main_loop);
}

static void worker_thread(void *arg)
{
    struct gw_worker *w = arg;
    char name[16];
    snprintf(name, sizeof name, "tg-worker-%d", w->index);
    pthread_setname_np(pthread_self(), name);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    atomic_store(&w->finished, 1);
    uv_async_send(&main_wakeup);
}

int gw_server_run(const struct gw_config *cfg)
{
    int rc = 1;
    server_cfg = cfg;
    signal(SIGPIPE, SIG_IGN);
    http_parser_set_max_header_size((uint32_t)cfg->server.limits.max_header);
    n_workers = cfg->server.workers;
    if (n_workers <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n_workers = cores > 0 ? (int)cores : 1;
    }
    if (n_workers > MAX_WORKERS)
        n_workers = MAX_WORKERS;
    if (cfg->n_routes == 0)
        gw_log_warn("startup", "no routes are configured: only /healthz will answer");
    char err[512] = "";
    tls_contexts = calloc(cfg->server.n_listen ? cfg->server.n_listen : 1, sizeof *tls_contexts);
    if (!tls_contexts)
        return 1;
    for (size_t i = 0; i < cfg->server.n_listen; i++) {
        const struct gw_listen *l = &cfg->server.listen[i];
        if (!l->tls_cert)
            continue;
        tls_contexts[i] = gw_tls_ctx_new(l->tls_cert, l->tls_key, err, sizeof err);
        if (!tls_contexts[i]) {
            gw_log_error("startup", "server.listen[%zu]: %s", i, err);
            fprintf(stderr, "toolgate: server.listen[%zu]: %s\n", i, err);
            goto out_tls;
        }
    }
    workers = calloc((size_t)n_workers, sizeof *workers);
    if (!workers)
        goto out_tls;
    int inited = 0;
    uv_loop_init(&main_loop);
    main_loop_open = 1;
    uv_async_init(&main_loop, &main_wakeup, on_main_wakeup);
    uv_signal_init(&main_loop, &sigterm_handle);
    uv_signal_init(&main_loop, &sigint_handle);
    for (int i = 0; i < n_workers; i++) {
        inited++;
        if (worker_init(&workers[i], i, cfg, err, sizeof err) != 0) {
            gw_log_error("startup", "%s", err);
            fprintf(stderr, "toolgate: %s\n", err);
            gw_server_release_signals();
            goto out;
        }
    }
    uv_signal_start(&sigterm_handle, on_signal, SIGTERM);
    uv_signal_start(&sigint_handle, on_signal, SIGINT);
    for (int i = 0; i < n_workers; i++)
        uv_thread_create(&workers[i].thread, worker_thread, &workers[i]);
    {
        char fields[512];
        struct gw_buf addrs = {0};
        for (size_t i = 0; i < cfg->server.n_listen; i++) {
            gw_buf_printf(&addrs, "%s\"", i ? "," : "");
            gw_buf_append_json_escaped(&addrs, cfg->server.listen[i].address,
                                       strlen(cfg->server.listen[i].address));
            gw_buf_append_str(&addrs, "\"");
        }
        snprintf(fields, sizeof fields, "\"listen\":[%s],\"workers\":%d,\"routes\":%zu",
                 addrs.data ? addrs.data : "", n_workers, cfg->n_routes);
        gw_buf_free(&addrs);
        gw_log(GW_LOG_INFO, "startup", NULL, fields, "toolgate %s listening", TOOLGATE_VERSION);
    }
    uv_run(&main_loop, UV_RUN_DEFAULT);
    for (int i = 0; i < n_workers; i++)
        uv_thread_join(&workers[i].thread);
    gw_log_info("shutdown", "all workers stopped");
    rc = 0;
out:
    for (int i = 0; i < inited; i++)
        worker_destroy(&workers[i]);
    free(workers);
    workers = NULL;
out_tls:
    for (size_t i = 0; i < cfg->server.n_listen; i++)
        gw_tls_ctx_free(tls_contexts[i]);
    free(tls_contexts);
    tls_contexts = NULL;
    return rc;
}
