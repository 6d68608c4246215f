/*
 * server: HTTP/1.1 on libuv + http_parser, tuned for a benchmark backend.
 *
 * The hot path does no per-request allocation once a connection's buffers have grown:
 * every read lands in the worker's one read buffer and is parsed at once, request headers
 * we care about are kept in one reused buffer, and responses produced while parsing a read
 * are collected in `out` and sent with a single write (pipelined answers coalesce). A write
 * is first tried synchronously; only what the kernel did not take goes through uv_write.
 *
 * A request whose answer is not finished when its handler returns (a timer or a fetch runs)
 * pauses the parser; bytes that arrive meanwhile are held in `pending` (bounded) and parsed
 * when the answer ends. Reading never stops for that, so a client that goes away is noticed
 * at once and its jobs are cancelled.
 */
#include "core/http1.h" /* http1_reason */
#include "ehr.h"

#include "lib/log.h"
#include "lib/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *const header_names[EHR_H_COUNT] = {
    [EHR_H_ACCEPT] = "accept",
    [EHR_H_CONTENT_TYPE] = "content-type",
    [EHR_H_SESSION] = "mcp-session-id",
    [EHR_H_PROTOCOL] = "mcp-protocol-version",
    [EHR_H_AUTHORIZATION] = "authorization",
    [EHR_H_ORIGIN] = "origin",
    [EHR_H_EXPECT] = "expect",
    [EHR_H_TG_SUBJECT] = "x-toolgate-subject",
    [EHR_H_TG_TENANT] = "x-toolgate-tenant",
    [EHR_H_TG_ROLES] = "x-toolgate-roles",
    [EHR_H_TG_SCOPES] = "x-toolgate-scopes",
    [EHR_H_TG_CLIENT] = "x-toolgate-client",
    [EHR_H_TG_REQUEST_ID] = "x-toolgate-request-id",
};

static void conn_close(struct ehr_conn *c);
static void log_request(struct ehr_conn *c, int aborted);
static void conn_flush(struct ehr_conn *c);
static void conn_update_reading(struct ehr_conn *c);
static void conn_feed(struct ehr_conn *c, const char *data, size_t len, int from_pending);

/* ---- reference counting and close ---- */

void ehr_conn_hold(struct ehr_conn *c)
{
    c->refs++;
}

void ehr_conn_release(struct ehr_conn *c)
{
    if (--c->refs > 0)
        return;
    struct ehr_worker *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else if (w->conns == c)
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    gw_buf_free(&c->url);
    gw_buf_free(&c->hvals);
    gw_buf_free(&c->body);
    gw_buf_free(&c->out);
    gw_buf_free(&c->inflight);
    gw_buf_free(&c->pending);
    gw_buf_free(&c->ex.body);
    ehr_principal_clear(&c->principal);
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    ehr_conn_release(h->data);
}

static void conn_close(struct ehr_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->in_request)
        log_request(c, 1); /* a stream or a job the client left before it ended */
    ehr_mcp_abort(c);
    if (c->ping_active) {
        c->ping_active = 0;
        uv_timer_stop(&c->ping);
        uv_close((uv_handle_t *)&c->ping, on_handle_closed);
    }
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    struct ehr_conn *c = req->data;
    conn_close(c);
    ehr_conn_release(c);
}

/* Closes once everything written so far has left, so the last answer is not cut off. */
static void conn_close_graceful(struct ehr_conn *c)
{
    if (c->closing || c->shutting)
        return;
    c->shutting = 1;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    c->shutdown_req.data = c;
    ehr_conn_hold(c);
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        ehr_conn_release(c);
        conn_close(c);
    }
}

/* ---- output ---- */

static void on_write(uv_write_t *req, int status)
{
    struct ehr_conn *c = req->data;
    c->writing = 0;
    gw_buf_reset(&c->inflight);
    if (status < 0 || c->closing) {
        conn_close(c);
    } else {
        conn_flush(c);
        conn_update_reading(c);
    }
    ehr_conn_release(c);
}

static void conn_flush(struct ehr_conn *c)
{
    if (c->closing || c->writing)
        return;
    if (c->out.len > 0) {
        uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        gw_buf_consume(&c->out, n > 0 ? (size_t)n : 0);
        if (c->out.len > 0) {
            /* The kernel is full: hand the rest to libuv and collect new output aside. */
            struct gw_buf t = c->inflight;
            c->inflight = c->out;
            c->out = t;
            b = uv_buf_init(c->inflight.data, (unsigned)c->inflight.len);
            c->write_req.data = c;
            if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
                conn_close(c);
                return;
            }
            c->writing = 1;
            ehr_conn_hold(c);
            return;
        }
    }
    if (c->close_after_flush && !c->in_request)
        conn_close_graceful(c);
}

/* RFC 9110 asks origin servers with a clock for Date; format it once a second per worker. */
static const char *date_header(struct ehr_worker *w)
{
    time_t now = time(NULL);
    if ((int64_t)now != w->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(w->date, sizeof w->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        w->date_sec = (int64_t)now;
    }
    return w->date;
}

/* content_length < 0 means a streamed body (chunked, or close-delimited for HTTP/1.0). */
static void put_head(struct ehr_conn *c, int status, const char *ctype, long long content_length,
                     const char *extra)
{
    struct gw_buf *o = &c->out;
    gw_buf_printf(o, "HTTP/1.1 %d %s\r\n%sServer: ehr-backend\r\n", status, http1_reason(status),
                  date_header(c->w));
    if (ctype)
        gw_buf_printf(o, "Content-Type: %s\r\n", ctype);
    if (content_length >= 0) {
        gw_buf_printf(o, "Content-Length: %lld\r\n", content_length);
    } else if (c->parser.http_major == 1 && c->parser.http_minor >= 1) {
        gw_buf_append_str(o, "Transfer-Encoding: chunked\r\n");
        c->chunked = 1;
    } else {
        c->chunked = 0;
        c->keep_alive = 0;
    }
    if (!c->keep_alive)
        gw_buf_append_str(o, "Connection: close\r\n");
    else if (c->parser.http_minor == 0)
        gw_buf_append_str(o, "Connection: keep-alive\r\n");
    if (extra)
        gw_buf_append_str(o, extra);
    gw_buf_append(o, "\r\n", 2);
    c->status = status;
}

static void log_request(struct ehr_conn *c, int aborted)
{
    struct ehr_app *app = c->w->app;
    if (app->opt.quiet || !gw_log_enabled(GW_LOG_INFO))
        return;
    char fields[768];
    struct gw_buf path = {0};
    size_t plen = c->url.len;
    const char *q = memchr(c->url.data ? c->url.data : "", '?', plen);
    if (q)
        plen = (size_t)(q - c->url.data);
    if (plen > 200)
        plen = 200;
    gw_buf_append_json_escaped(&path, c->url.data ? c->url.data : "", plen);
    uint64_t us = (gw_now_ns() - c->start_ns) / 1000;
    snprintf(fields, sizeof fields,
             "\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"rpc\":\"%s\",\"tool\":\"%s\","
             "\"duration_us\":%llu,\"worker\":%u%s",
             http_method_str((enum http_method)c->parser.method), path.data ? path.data : "",
             c->status, c->log_rpc ? c->log_rpc : "", c->log_tool ? c->log_tool : "",
             (unsigned long long)us, c->w->index, aborted ? ",\"aborted\":true" : "");
    gw_buf_free(&path);
    /* The request id comes from the gateway; it is an identifier, bounded and escaped. */
    char rid[129] = "";
    if (c->hpresent & (1u << EHR_H_TG_REQUEST_ID)) {
        size_t n = c->hlen[EHR_H_TG_REQUEST_ID] < 128 ? c->hlen[EHR_H_TG_REQUEST_ID] : 128;
        memcpy(rid, c->hvals.data + c->hoff[EHR_H_TG_REQUEST_ID], n);
        rid[n] = '\0';
    }
    gw_log(GW_LOG_INFO, "request", rid[0] ? rid : NULL, fields, "request served");
}

/* The answer to the current request is complete: pick up pipelined requests. */
static void request_finished(struct ehr_conn *c)
{
    c->in_request = 0;
    log_request(c, 0);
    if (!c->keep_alive)
        c->close_after_flush = 1;
    if (c->in_feed)
        return; /* conn_feed flushes and goes on by itself */
    if (c->busy) {
        c->busy = 0;
        http_parser_pause(&c->parser, 0);
        if (!c->closing && !c->close_after_flush && c->pending.len > 0) {
            ehr_conn_hold(c);
            conn_feed(c, c->pending.data, c->pending.len, 1);
            ehr_conn_release(c);
            return;
        }
    }
    conn_flush(c);
    conn_update_reading(c);
}

void ehr_respond(struct ehr_conn *c, int status, const char *ctype, const char *extra,
                 const char *body, size_t len)
{
    if (c->closing || !c->in_request)
        return;
    put_head(c, status, ctype, (long long)len, extra);
    gw_buf_append(&c->out, body, len);
    request_finished(c);
}

void ehr_stream_begin(struct ehr_conn *c, int status, const char *ctype, const char *extra)
{
    if (c->closing || !c->in_request)
        return;
    put_head(c, status, ctype, -1, extra);
    if (!c->in_feed)
        conn_flush(c);
}

void ehr_stream_write(struct ehr_conn *c, const char *data, size_t len)
{
    if (c->closing || !c->in_request || len == 0)
        return;
    if (c->chunked)
        gw_buf_printf(&c->out, "%zx\r\n", len);
    gw_buf_append(&c->out, data, len);
    if (c->chunked)
        gw_buf_append(&c->out, "\r\n", 2);
    if (!c->in_feed)
        conn_flush(c);
}

void ehr_stream_end(struct ehr_conn *c)
{
    if (c->closing || !c->in_request)
        return;
    if (c->chunked)
        gw_buf_append(&c->out, "0\r\n\r\n", 5);
    request_finished(c);
}

/* ---- parsing ---- */

static int fail(struct ehr_conn *c, int status)
{
    c->fail_status = status;
    return -1;
}

static int on_message_begin(http_parser *p)
{
    struct ehr_conn *c = p->data;
    gw_buf_reset(&c->url);
    gw_buf_reset(&c->hvals);
    gw_buf_reset(&c->body);
    c->hpresent = 0;
    c->hname_len = 0;
    c->hname_overflow = 0;
    c->in_value = 0;
    c->cur_hdr = -1;
    c->fail_status = 0;
    c->log_rpc = NULL;
    c->log_tool = NULL;
    c->start_ns = gw_now_ns();
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct ehr_conn *c = p->data;
    if (c->url.len + len > EHR_MAX_URL)
        return fail(c, 414);
    return gw_buf_append(&c->url, at, len) == 0 ? 0 : fail(c, 500);
}

static void header_done(struct ehr_conn *c)
{
    if (c->in_value && c->cur_hdr >= 0)
        c->hpresent |= 1u << c->cur_hdr;
    c->in_value = 0;
    c->hname_len = 0;
    c->hname_overflow = 0;
    c->cur_hdr = -1;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct ehr_conn *c = p->data;
    if (c->in_value)
        header_done(c);
    if (c->hname_len + len >= sizeof c->hname) {
        c->hname_overflow = 1; /* longer than any name we keep */
        return 0;
    }
    memcpy(c->hname + c->hname_len, at, len);
    c->hname_len += len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct ehr_conn *c = p->data;
    if (!c->in_value) {
        c->in_value = 1;
        c->cur_hdr = -1;
        if (!c->hname_overflow) {
            for (int i = 0; i < EHR_H_COUNT; i++) {
                if (strlen(header_names[i]) == c->hname_len &&
                    strncasecmp(header_names[i], c->hname, c->hname_len) == 0) {
                    c->cur_hdr = i;
                    break;
                }
            }
        }
        if (c->cur_hdr < 0)
            return 0;
        int h = c->cur_hdr;
        uint32_t off = (uint32_t)c->hvals.len;
        if (c->hpresent & (1u << h)) {
            /* A repeated header folds into one comma-separated value (RFC 9110 5.3). */
            if (c->hvals.len + c->hlen[h] + 2 > EHR_MAX_HEADER_VALUES)
                return fail(c, 431);
            if (gw_buf_reserve(&c->hvals, c->hlen[h] + 2) != 0)
                return fail(c, 500);
            gw_buf_append(&c->hvals, c->hvals.data + c->hoff[h], c->hlen[h]);
            gw_buf_append(&c->hvals, ", ", 2);
            c->hlen[h] += 2;
        } else {
            c->hlen[h] = 0;
        }
        c->hoff[h] = off;
    }
    if (c->cur_hdr < 0)
        return 0;
    if (c->hvals.len + len > EHR_MAX_HEADER_VALUES)
        return fail(c, 431);
    if (gw_buf_append(&c->hvals, at, len) != 0)
        return fail(c, 500);
    c->hlen[c->cur_hdr] += (uint32_t)len;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct ehr_conn *c = p->data;
    header_done(c);
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > EHR_MAX_BODY)
        return fail(c, 413);
    if (c->hpresent & (1u << EHR_H_EXPECT)) {
        struct gw_slice e = {c->hvals.data + c->hoff[EHR_H_EXPECT], c->hlen[EHR_H_EXPECT]};
        if (!gw_slice_casecmp_eq(e, "100-continue"))
            return fail(c, 417);
        gw_buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
        conn_flush(c);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct ehr_conn *c = p->data;
    if (c->body.len + len > EHR_MAX_BODY)
        return fail(c, 413);
    return gw_buf_append(&c->body, at, len) == 0 ? 0 : fail(c, 500);
}

static int on_message_complete(http_parser *p)
{
    struct ehr_conn *c = p->data;
    struct ehr_request req;
    memset(&req, 0, sizeof req);
    req.method = (enum http_method)p->method;
    size_t plen = c->url.len;
    const char *q = c->url.data ? memchr(c->url.data, '?', c->url.len) : NULL;
    if (q)
        plen = (size_t)(q - c->url.data);
    req.path = (struct gw_slice){c->url.data ? c->url.data : "", plen};
    for (int i = 0; i < EHR_H_COUNT; i++) {
        if (c->hpresent & (1u << i))
            req.hdr[i] = (struct gw_slice){c->hvals.data + c->hoff[i], c->hlen[i]};
    }
    req.body = (struct gw_slice){c->body.data ? c->body.data : "", c->body.len};
    c->keep_alive = http_should_keep_alive(p) ? 1 : 0;
    c->in_request = 1;
    c->status = 0;
    ehr_mcp_handle(c, &req);
    if (c->in_request && !c->closing) {
        /* The answer continues later: hold further requests until it ends. */
        c->busy = 1;
        http_parser_pause(p, 1);
    }
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void reject(struct ehr_conn *c, int status)
{
    char body[160];
    int n = snprintf(body, sizeof body,
                     "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"
                     "\"message\":\"HTTP %d %s\"}}",
                     status, http1_reason(status));
    c->in_request = 1;
    c->keep_alive = 0;
    ehr_respond(c, status, "application/json", NULL, body, (size_t)n);
}

static void conn_feed(struct ehr_conn *c, const char *data, size_t len, int from_pending)
{
    c->in_feed = 1;
    size_t done = http_parser_execute(&c->parser, &parser_settings, data, len);
    c->in_feed = 0;
    if (c->closing)
        return;
    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    if (err == HPE_PAUSED) {
        if (from_pending) {
            gw_buf_consume(&c->pending, done);
        } else if (done < len) {
            if (gw_buf_append(&c->pending, data + done, len - done) != 0) {
                conn_close(c);
                return;
            }
        }
        if (!c->in_request) {
            /* The answer ended synchronously after the pause took effect: go on. */
            c->busy = 0;
            http_parser_pause(&c->parser, 0);
            if (c->pending.len > 0 && !c->close_after_flush) {
                conn_feed(c, c->pending.data, c->pending.len, 1);
                return;
            }
        }
    } else if (err != HPE_OK) {
        if (c->in_request) {
            conn_close(c);
            return;
        }
        int status = c->fail_status ? c->fail_status : 400;
        if (err == HPE_HEADER_OVERFLOW)
            status = 431;
        reject(c, status);
    } else if (c->parser.upgrade && done > 0 && done < len) {
        /* http_parser stops after a request carrying Upgrade (curl --http2 sends h2c). A
         * server may ignore Upgrade, and this one does: it answered in HTTP/1.1 and parses
         * what follows as HTTP/1.1 too. */
        if (from_pending) {
            gw_buf_consume(&c->pending, done);
            conn_feed(c, c->pending.data, c->pending.len, 1);
        } else {
            conn_feed(c, data + done, len - done, 0);
        }
        return;
    } else if (from_pending) {
        gw_buf_reset(&c->pending);
    }
    conn_flush(c);
    conn_update_reading(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct ehr_conn *c = h->data;
    buf->base = c->w->readbuf;
    buf->len = sizeof c->w->readbuf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct ehr_conn *c = s->data;
    if (nread < 0) {
        /* The client is gone or done sending: a running answer has no one to go to, but
         * what is already written still leaves before the socket closes. */
        if (c->in_request)
            conn_close(c);
        else
            conn_close_graceful(c);
        return;
    }
    if (nread == 0 || c->closing)
        return;
    c->last_read_ms = uv_now(&c->w->loop);
    if (c->close_after_flush)
        return; /* the connection is ending; ignore what else arrives */
    if (c->busy) {
        if (gw_buf_append(&c->pending, buf->base, (size_t)nread) != 0) {
            conn_close(c);
            return;
        }
        conn_update_reading(c);
        return;
    }
    ehr_conn_hold(c);
    conn_feed(c, buf->base, (size_t)nread, 0);
    ehr_conn_release(c);
}

/* Reading pauses while too much is unsent or held, and resumes when that drains. */
static void conn_update_reading(struct ehr_conn *c)
{
    if (c->closing || c->shutting || c->close_after_flush)
        return;
    int want = c->out.len + c->inflight.len < EHR_MAX_OUT && c->pending.len < EHR_MAX_PENDING;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

/* ---- accept, start, stop ---- */

static void on_connection(uv_stream_t *listener, int status)
{
    struct ehr_worker *w = listener->data;
    if (status < 0)
        return;
    struct ehr_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->w = w;
    c->refs = 1;
    c->cur_hdr = -1;
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    c->ping.data = c;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->last_read_ms = uv_now(&w->loop);
    conn_update_reading(c);
}

/*
 * Connections that sit idle, or dribble a request without finishing it, are closed after
 * --idle-timeout-ms. Answers still in progress (a job, a GET stream) are exempt: their
 * client is waiting on us. One sweep per worker is cheaper than a timer per connection.
 */
static void on_sweep(uv_timer_t *t)
{
    struct ehr_worker *w = t->data;
    uint64_t now = uv_now(&w->loop), idle = w->app->opt.idle_ms;
    struct ehr_conn *c = w->conns;
    while (c) {
        struct ehr_conn *next = c->next;
        if (!c->in_request && !c->closing && !c->writing && now - c->last_read_ms > idle)
            conn_close(c);
        c = next;
    }
}

int ehr_server_start(struct ehr_worker *w)
{
    int rc = uv_tcp_init(&w->loop, &w->listener);
    if (rc != 0)
        return rc;
    w->listener.data = w;
    uv_timer_init(&w->loop, &w->sweep);
    w->sweep.data = w;
    if (w->app->opt.idle_ms) {
        uint64_t every = w->app->opt.idle_ms / 4 + 1;
        uv_timer_start(&w->sweep, on_sweep, every, every);
    }
    rc = uv_tcp_open(&w->listener, w->listen_fd);
    if (rc != 0)
        close(w->listen_fd); /* not the handle's yet */
    else
        rc = uv_listen((uv_stream_t *)&w->listener, 1024, on_connection);
    return rc;
}

void ehr_server_stop(struct ehr_worker *w)
{
    if (!uv_is_closing((uv_handle_t *)&w->listener))
        uv_close((uv_handle_t *)&w->listener, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->sweep))
        uv_close((uv_handle_t *)&w->sweep, NULL);
    struct ehr_conn *c = w->conns;
    while (c) {
        struct ehr_conn *next = c->next;
        conn_close(c);
        c = next;
    }
}
