/*
 * stdio_http: the private endpoint of local backends, HTTP/1.1 on a unix socket in a
 * directory only toolgate can open. Its only client is toolgate's own upstream client, but
 * its input is still bounded: a head of at most 16 KiB, a body of at most 32 MiB, one
 * request at a time per connection.
 */
#include "stdio/stdio-int.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define MAX_HEAD (16 * 1024)
#define MAX_BODY (32u * 1024 * 1024)

struct stdio_conn {
    uv_pipe_t pipe;
    http_parser parser;
    char url[512];
    size_t url_len, head_bytes;
    char hname[64];
    size_t hname_len;
    int hwhich; /* 1 session id, 2 principal */
    char sid[128], principal[80];
    char *body;
    size_t body_len;
    int busy;      /* a request is being answered */
    int streaming; /* an SSE answer is open */
    int closing;
    void *owner;
    struct stdio_conn *next, *prev;
};

static uv_pipe_t listener;
static int listening;
static struct stdio_conn *conns;

int stdio_conn_streaming(const struct stdio_conn *c)
{
    return c->streaming;
}

void stdio_conn_set_owner(struct stdio_conn *c, void *owner)
{
    c->owner = owner;
}

void *stdio_conn_owner(const struct stdio_conn *c)
{
    return c->owner;
}

static void on_closed(uv_handle_t *h)
{
    struct stdio_conn *c = h->data;
    free(c->body);
    free(c);
}

static void conn_close(struct stdio_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    if (c->owner)
        stdio_mux_conn_closed(c, c->owner);
    c->owner = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->pipe, on_closed);
}

static void on_written(uv_write_t *w, int status)
{
    free(w);
}

static void send_bytes(struct stdio_conn *c, const char *a, size_t an, const char *b, size_t bn)
{
    if (c->closing)
        return;
    uv_write_t *w = malloc(sizeof *w + an + bn);
    if (!w) {
        conn_close(c);
        return;
    }
    char *p = (char *)(w + 1);
    memcpy(p, a, an);
    if (bn)
        memcpy(p + an, b, bn);
    uv_buf_t buf = uv_buf_init(p, (unsigned)(an + bn));
    if (uv_write(w, (uv_stream_t *)&c->pipe, &buf, 1, on_written) != 0) {
        free(w);
        conn_close(c);
    }
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    default:
        return "Service Unavailable";
    }
}

static void request_done(struct stdio_conn *c)
{
    c->busy = 0;
    c->streaming = 0;
    c->body_len = 0;
    if (!c->closing)
        http_parser_pause(&c->parser, 0);
}

void stdio_conn_reply(struct stdio_conn *c, int status, const char *ctype, const char *sid,
                      const char *body, size_t len)
{
    char head[512];
    size_t n = (size_t)snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n",
                                status, reason(status), ctype ? len : 0);
    if (ctype)
        n += (size_t)snprintf(head + n, sizeof head - n, "Content-Type: %s\r\n", ctype);
    if (sid)
        n += (size_t)snprintf(head + n, sizeof head - n, "Mcp-Session-Id: %s\r\n", sid);
    n += (size_t)snprintf(head + n, sizeof head - n, "\r\n");
    send_bytes(c, head, n, ctype ? body : NULL, ctype ? len : 0);
    c->owner = NULL;
    request_done(c);
}

void stdio_conn_sse_start(struct stdio_conn *c, const char *sid)
{
    char head[384];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: "
                     "no-cache\r\nTransfer-Encoding: chunked\r\n%s%s%s\r\n",
                     sid ? "Mcp-Session-Id: " : "", sid ? sid : "", sid ? "\r\n" : "");
    send_bytes(c, head, (size_t)n, NULL, 0);
    c->streaming = 1;
}

void stdio_conn_sse_event(struct stdio_conn *c, const char *data, size_t len)
{
    if (!c->streaming)
        return;
    char pre[64];
    int n = snprintf(pre, sizeof pre, "%zx\r\nevent: message\ndata: ", len + 23);
    size_t total = (size_t)n + len + 4;
    char *buf = malloc(total);
    if (!buf) {
        conn_close(c);
        return;
    }
    memcpy(buf, pre, (size_t)n);
    memcpy(buf + n, data, len);
    memcpy(buf + n + len, "\n\n\r\n", 4);
    send_bytes(c, buf, total, NULL, 0);
    free(buf);
}

void stdio_conn_sse_end(struct stdio_conn *c)
{
    if (c->streaming)
        send_bytes(c, "0\r\n\r\n", 5, NULL, 0);
    c->owner = NULL;
    request_done(c);
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct stdio_conn *c = p->data;
    if (c->url_len + len >= sizeof c->url)
        return -1;
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = '\0';
    return 0;
}

static int on_hfield(http_parser *p, const char *at, size_t len)
{
    struct stdio_conn *c = p->data;
    if ((c->head_bytes += len) > MAX_HEAD)
        return -1;
    if (c->hwhich >= 0) /* a new name after a value */
        c->hname_len = 0;
    c->hwhich = -1;
    size_t n = len < sizeof c->hname - 1 - c->hname_len ? len : sizeof c->hname - 1 - c->hname_len;
    memcpy(c->hname + c->hname_len, at, n);
    c->hname_len += n;
    c->hname[c->hname_len] = '\0';
    return 0;
}

static int on_hvalue(http_parser *p, const char *at, size_t len)
{
    struct stdio_conn *c = p->data;
    if ((c->head_bytes += len) > MAX_HEAD)
        return -1;
    if (c->hwhich < 0) {
        c->hwhich = strcasecmp(c->hname, "Mcp-Session-Id") == 0            ? 1
                    : strcasecmp(c->hname, GW_STDIO_PRINCIPAL_HEADER) == 0 ? 2
                                                                           : 0;
        c->hname_len = 0;
    }
    char *dst = c->hwhich == 1 ? c->sid : c->hwhich == 2 ? c->principal : NULL;
    size_t cap = c->hwhich == 1 ? sizeof c->sid : sizeof c->principal;
    if (dst) {
        size_t have = strlen(dst);
        if (have + len >= cap)
            return -1;
        memcpy(dst + have, at, len);
        dst[have + len] = '\0';
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct stdio_conn *c = p->data;
    if (c->body_len + len > MAX_BODY)
        return -1;
    char *b = realloc(c->body, c->body_len + len + 1);
    if (!b)
        return -1;
    c->body = b;
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    c->body[c->body_len] = '\0';
    return 0;
}

static int on_begin(http_parser *p)
{
    struct stdio_conn *c = p->data;
    c->url_len = c->head_bytes = c->hname_len = c->body_len = 0;
    c->url[0] = c->sid[0] = c->principal[0] = '\0';
    c->hwhich = 0;
    return 0;
}

static int on_complete(http_parser *p)
{
    struct stdio_conn *c = p->data;
    c->busy = 1;
    http_parser_pause(p, 1);
    struct stdio_request r = {
        .method = p->method == HTTP_POST     ? STDIO_POST
                  : p->method == HTTP_GET    ? STDIO_GET
                  : p->method == HTTP_DELETE ? STDIO_DELETE
                                             : STDIO_OTHER,
        .path = c->url,
        .session_id = c->sid[0] ? c->sid : NULL,
        .principal = c->principal[0] ? c->principal : NULL,
        .body = c->body ? c->body : "",
        .body_len = c->body_len,
    };
    stdio_mux_request(c, &r);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_begin,
    .on_url = on_url,
    .on_header_field = on_hfield,
    .on_header_value = on_hvalue,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char slab[65536]; /* one loop thread: one read buffer */
    *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct stdio_conn *c = s->data;
    if (n < 0) {
        conn_close(c);
        return;
    }
    if (n == 0)
        return;
    if (c->busy) {
        /* Nothing is pipelined by toolgate's client; a second request while one is served is
         * not expected, and its bytes would be lost: refuse the connection instead. */
        conn_close(c);
        return;
    }
    size_t used = http_parser_execute(&c->parser, &settings, buf->base, (size_t)n);
    if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) {
        if (used != (size_t)n)
            conn_close(c); /* pipelined bytes behind a request: not served */
        return;
    }
    if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || used != (size_t)n) {
        static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n";
        send_bytes(c, bad, sizeof bad - 1, NULL, 0);
        conn_close(c);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct stdio_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_pipe_init(server->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->parser.data = c;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0 ||
        uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) != 0)
        conn_close(c);
}

int stdio_http_listen(uv_loop_t *loop, const char *socket_path, char *why, size_t cap)
{
    int rc = uv_pipe_init(loop, &listener, 0);
    if (rc == 0)
        rc = uv_pipe_bind(&listener, socket_path);
    if (rc == 0 && chmod(socket_path, 0600) != 0)
        rc = UV_EPERM;
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&listener, 128, on_connection);
    listening = 1;
    if (rc != 0) {
        snprintf(why, cap, "cannot listen on %s: %s", socket_path, uv_strerror(rc));
        return -1;
    }
    return 0;
}

void stdio_http_close_all(void)
{
    while (conns)
        conn_close(conns);
    if (listening && !uv_is_closing((uv_handle_t *)&listener))
        uv_close((uv_handle_t *)&listener, NULL);
    listening = 0;
}
