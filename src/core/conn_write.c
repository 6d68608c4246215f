/*
 * conn_write: writing a connection's answer: the head (with Date, framing and Connection),
 * the body fixed-length, chunked or close-delimited, TLS records, and the graceful close
 * once everything queued has reached the kernel. Writes are counted so a slow client pauses
 * the upstream (gw_conn_on_drain).
 */
#include "core/server-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct write_req {
    uv_write_t req;
    struct gw_conn *c;
    size_t len;
    char data[];
};

static void conn_after_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    struct gw_conn *c = req->data;
    free(req);
    conn_close(c);
}

/* Closes gracefully once everything queued has reached the kernel. */
void conn_finish_close(struct gw_conn *c)
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
    /*
     * Nothing queued: write at once from the caller's pieces. What the kernel takes needs no
     * copy and no write request, and the loop is not asked to watch for writability (libuv
     * changes the epoll set after every queued write it completes). Only a remainder the
     * kernel did not take is copied and queued; an error is left to the queued write to meet,
     * so it closes the connection from the loop as before.
     */
    size_t skip = 0;
    if (c->queued == 0 && n <= 4) {
        uv_buf_t now[4];
        for (size_t i = 0; i < n; i++)
            now[i] = uv_buf_init((char *)pieces[i].ptr, (unsigned)pieces[i].len);
        int w = uv_try_write((uv_stream_t *)&c->tcp, now, (unsigned)n);
        if (w > 0 && (size_t)w == total) {
            gw_buf_free(&cipher);
            return 0;
        }
        if (w > 0)
            skip = (size_t)w;
    }
    struct write_req *wr = malloc(sizeof *wr + (total - skip));
    if (!wr) {
        gw_buf_free(&cipher);
        return -1;
    }
    wr->c = c;
    wr->len = total - skip;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t from = skip < pieces[i].len ? skip : pieces[i].len;
        skip -= from;
        memcpy(wr->data + off, pieces[i].ptr + from, pieces[i].len - from);
        off += pieces[i].len - from;
    }
    total = off;
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

int conn_write(struct gw_conn *c, const char *data, size_t len)
{
    struct gw_slice s = {data, len};
    return conn_writev(c, &s, 1);
}

/* Queues bytes that are already what goes on the wire (TLS records). */
int conn_write_raw(struct gw_conn *c, const char *data, size_t len)
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

/* The Date header's value, formatted once a second per thread. */
static const char *http_date(size_t *len)
{
    static __thread time_t at = (time_t)-1;
    static __thread char text[40];
    static __thread size_t text_len;
    time_t now = time(NULL);
    if (now != at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        text_len = strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        at = now;
    }
    *len = text_len;
    return text;
}

int gw_conn_write_head(struct gw_conn *c, int status, const struct gw_header *headers,
                       size_t n_headers, int64_t content_length)
{
    if (c->closed || c->shutting || c->head_sent)
        return -1;
    if (status < 100 || status > 999)
        status = 500;
    size_t date_len;
    const char *date = http_date(&date_len);
    c->keep_alive = c->parser->keep_alive && !c->w->stopping;
    c->streaming = content_length < 0;
    c->chunked = c->streaming && c->parser->http_minor >= 1;
    if (c->streaming && !c->chunked)
        c->keep_alive = 0; /* an HTTP/1.0 stream ends when the connection closes */
    /* Built where it waits for its body: the connection's buffer, kept from the last head. */
    struct gw_buf *h = &c->head_buf;
    gw_buf_reset(h);
    char code[4] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10), ' '};
    int rc = gw_buf_append(h, "HTTP/1.1 ", 9) | gw_buf_append(h, code, 4) |
             gw_buf_append_str(h, http1_reason(status)) | gw_buf_append(h, "\r\nDate: ", 8) |
             gw_buf_append(h, date, date_len) | gw_buf_append(h, "\r\nServer: toolgate\r\n", 20);
    for (size_t i = 0; i < n_headers && rc == 0; i++) {
        rc |= gw_buf_append(h, headers[i].name.ptr, headers[i].name.len);
        rc |= gw_buf_append(h, ": ", 2);
        rc |= gw_buf_append(h, headers[i].value.ptr, headers[i].value.len);
        rc |= gw_buf_append(h, "\r\n", 2);
    }
    if (content_length >= 0)
        rc |= gw_buf_append(h, "Content-Length: ", 16) |
              gw_buf_append_u64(h, (uint64_t)content_length) | gw_buf_append(h, "\r\n", 2);
    else if (c->chunked)
        rc |= gw_buf_append_str(h, "Transfer-Encoding: chunked\r\n");
    if (!c->keep_alive)
        rc |= gw_buf_append_str(h, "Connection: close\r\n");
    else if (c->parser->http_minor == 0)
        rc |= gw_buf_append_str(h, "Connection: keep-alive\r\n");
    rc |= gw_buf_append(h, "\r\n", 2);
    if (rc == 0 && c->streaming) {
        /* A stream's head goes at once: the client may wait long for the first event. */
        rc = conn_write(c, h->data, h->len);
        gw_buf_reset(h);
    } else if (rc == 0) {
        /* A fixed-length head leaves with the body, in one write. */
        c->head_pending = 1;
    } else {
        gw_buf_reset(h);
    }
    if (rc == 0)
        c->head_sent = 1;
    return rc;
}

/* Writes a head still waiting for its body (an empty body, or the end of the answer). */
int conn_flush_head(struct gw_conn *c)
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
