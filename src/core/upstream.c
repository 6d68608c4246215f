#include "core/upstream.h"
#include "core/upstream_h1.h"
#include "lib/log.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Response head bounds: an answer beyond them is a protocol error (502). */
#define UPSTREAM_MAX_HEAD 65536
#define UPSTREAM_MAX_HEADERS 64
/* Finished easy handles kept for reuse per worker (curl_easy_init is not cheap). */
#define UPSTREAM_SPARE_EASY 64

struct upstream_multi {
    uv_loop_t *loop;
    struct upstream_h1_pool *h1; /* plain-http exchanges that need nothing of libcurl */
    CURLM *multi;
    uv_timer_t timer;
    size_t active;
    int closing;
    int handles_open;
    CURL *spare[UPSTREAM_SPARE_EASY];
    size_t n_spare;
    /*
     * Poll handles by descriptor. curl stops watching a pooled connection between transfers
     * and watches it again on reuse; keeping the (stopped) handle saves re-creating it each
     * time. A stopped handle is out of epoll, so a descriptor number curl closed and reused
     * for a new socket is simply watched anew.
     */
    struct sock_ctx **by_fd;
    size_t n_by_fd;
};

struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct upstream_multi *m;
};

/*
 * A call is libcurl's (below) or the own client's (struct upstream_h1_call). Both begin with
 * an int that says which, so the public functions can tell what they were given.
 */
#define CALL_CURL 1

struct upstream_call {
    int kind; /* CALL_CURL */
    struct upstream_multi *m;
    CURL *easy;
    struct curl_slist *headers;
    struct curl_slist *resolve;
    struct upstream_callbacks cb;
    void *arg;
    struct gw_buf head; /* raw header lines of the current response */
    size_t line_off[UPSTREAM_MAX_HEADERS];
    size_t line_len[UPSTREAM_MAX_HEADERS];
    size_t n_lines;
    int status;
    int head_done;
    int head_error;
    int paused;
    int in_callback;
    int canceled;
    char errbuf[CURL_ERROR_SIZE];
};

static int kind_of(const void *call)
{
    int kind;
    memcpy(&kind, call, sizeof kind);
    return kind;
}

static void call_free(struct upstream_call *c)
{
    struct upstream_multi *m = c->m;
    if (c->easy) {
        if (!m->closing && m->n_spare < UPSTREAM_SPARE_EASY) {
            curl_easy_reset(c->easy);
            m->spare[m->n_spare++] = c->easy;
        } else {
            curl_easy_cleanup(c->easy);
        }
    }
    curl_slist_free_all(c->headers);
    curl_slist_free_all(c->resolve);
    gw_buf_free(&c->head);
    free(c);
}

static void finish(struct upstream_multi *m, struct upstream_call *c, CURLcode code)
{
    curl_multi_remove_handle(m->multi, c->easy);
    m->active--;
    if (c->canceled) {
        call_free(c);
        return;
    }
    int err = UPSTREAM_OK;
    const char *detail = "";
    if (code != CURLE_OK || c->head_error) {
        detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(code);
        switch (code) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
            err = UPSTREAM_ECONNECT;
            break;
        case CURLE_OPERATION_TIMEDOUT:
            err = UPSTREAM_ETIMEOUT;
            break;
        case CURLE_OUT_OF_MEMORY:
            err = UPSTREAM_ENOMEM;
            break;
        default:
            err = UPSTREAM_EPROTO;
            break;
        }
        if (c->head_error)
            err = UPSTREAM_EPROTO, detail = "malformed response head";
    } else if (!c->head_done) {
        err = UPSTREAM_EPROTO;
        detail = "no response";
    }
    c->in_callback = 1; /* an upstream_cancel from inside on_done only marks the call */
    c->cb.on_done(c->arg, err, detail);
    call_free(c);
}

static void check_info(struct upstream_multi *m)
{
    CURLMsg *msg;
    int pending;
    while ((msg = curl_multi_info_read(m->multi, &pending))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct upstream_call *c = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        CURLcode code = msg->data.result;
        if (c)
            finish(m, c, code);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock_ctx *ctx = h->data;
    struct upstream_multi *m = ctx->m;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    int running;
    curl_multi_socket_action(m->multi, ctx->fd, flags, &running);
    check_info(m);
}

static void on_timer(uv_timer_t *t)
{
    struct upstream_multi *m = t->data;
    int running;
    curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_info(m);
}

static void ctx_closed(uv_handle_t *h)
{
    struct sock_ctx *ctx = h->data;
    struct upstream_multi *m = ctx->m;
    free(ctx);
    m->handles_open--;
    if (m->closing && m->handles_open == 0)
        free(m);
}

static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    struct upstream_multi *m = userp;
    struct sock_ctx *ctx = socketp;
    if (what == CURL_POLL_REMOVE) {
        /* Stop watching before curl closes the descriptor (it may be reused at once). */
        if (ctx)
            uv_poll_stop(&ctx->poll);
        return 0;
    }
    if (!ctx && s >= 0 && (size_t)s < m->n_by_fd)
        ctx = m->by_fd[s];
    if (!ctx) {
        if (s < 0 || s > 1 << 22)
            return -1;
        if ((size_t)s >= m->n_by_fd) {
            size_t n = m->n_by_fd ? m->n_by_fd : 64;
            while (n <= (size_t)s)
                n *= 2;
            struct sock_ctx **t = realloc(m->by_fd, n * sizeof *t);
            if (!t)
                return -1;
            memset(t + m->n_by_fd, 0, (n - m->n_by_fd) * sizeof *t);
            m->by_fd = t;
            m->n_by_fd = n;
        }
        ctx = calloc(1, sizeof *ctx);
        if (!ctx)
            return -1;
        ctx->fd = s;
        ctx->m = m;
        if (uv_poll_init_socket(m->loop, &ctx->poll, s) != 0) {
            free(ctx);
            return -1;
        }
        ctx->poll.data = ctx;
        m->handles_open++;
        m->by_fd[s] = ctx;
    }
    curl_multi_assign(m->multi, s, ctx);
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&ctx->poll, events, on_poll);
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct upstream_multi *m = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&m->timer);
    else
        uv_timer_start(&m->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

struct upstream_multi *upstream_multi_new(uv_loop_t *loop)
{
    struct upstream_multi *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->loop = loop;
    m->h1 = upstream_h1_pool_new(loop);
    m->multi = curl_multi_init();
    if (!m->multi || !m->h1) {
        if (m->multi)
            curl_multi_cleanup(m->multi);
        upstream_h1_pool_close(m->h1);
        free(m);
        return NULL;
    }
    uv_timer_init(loop, &m->timer);
    m->timer.data = m;
    m->handles_open = 1;
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    /* Idle keep-alive connections kept per worker, across all backends. */
    curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, 256L);
    return m;
}

static void timer_closed(uv_handle_t *h)
{
    struct upstream_multi *m = h->data;
    m->handles_open--;
    if (m->handles_open == 0)
        free(m);
}

void upstream_multi_close(struct upstream_multi *m)
{
    if (!m)
        return;
    m->closing = 1;
    upstream_h1_pool_close(m->h1);
    m->h1 = NULL;
    while (m->n_spare > 0)
        curl_easy_cleanup(m->spare[--m->n_spare]);
    /* curl_multi_cleanup closes pooled connections, removing their sockets via sock_cb. */
    curl_multi_cleanup(m->multi);
    m->multi = NULL;
    for (size_t i = 0; i < m->n_by_fd; i++) {
        if (m->by_fd[i]) {
            uv_poll_stop(&m->by_fd[i]->poll);
            uv_close((uv_handle_t *)&m->by_fd[i]->poll, ctx_closed);
        }
    }
    free(m->by_fd);
    m->by_fd = NULL;
    m->n_by_fd = 0;
    uv_timer_stop(&m->timer);
    uv_close((uv_handle_t *)&m->timer, timer_closed);
}

size_t upstream_multi_active(const struct upstream_multi *m)
{
    return m->active + upstream_h1_pool_active(m->h1);
}

/* Records one header line; on the blank line that ends a final head, reports it. */
static size_t header_cb(char *data, size_t size, size_t nitems, void *userdata)
{
    struct upstream_call *c = userdata;
    size_t len = size * nitems;
    if (c->canceled)
        return 0;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A status line: a new response head (interim 1xx heads are discarded). */
        gw_buf_reset(&c->head);
        c->n_lines = 0;
        c->head_done = 0;
        return len;
    }
    size_t l = len;
    while (l > 0 && (data[l - 1] == '\n' || data[l - 1] == '\r'))
        l--;
    if (l == 0) {
        long status = 0;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status < 200)
            return len; /* end of an interim head */
        c->status = (int)status;
        c->head_done = 1;
        struct gw_header hdrs[UPSTREAM_MAX_HEADERS];
        size_t n = 0;
        for (size_t i = 0; i < c->n_lines; i++) {
            const char *line = c->head.data + c->line_off[i];
            size_t ll = c->line_len[i];
            const char *colon = memchr(line, ':', ll);
            if (!colon)
                continue;
            struct gw_slice name = {line, (size_t)(colon - line)};
            struct gw_slice value = {colon + 1, ll - name.len - 1};
            while (value.len && (value.ptr[0] == ' ' || value.ptr[0] == '\t'))
                value.ptr++, value.len--;
            while (value.len &&
                   (value.ptr[value.len - 1] == ' ' || value.ptr[value.len - 1] == '\t'))
                value.len--;
            hdrs[n].name = name;
            hdrs[n].value = value;
            n++;
        }
        c->in_callback = 1;
        c->cb.on_head(c->arg, c->status, hdrs, n);
        c->in_callback = 0;
        return c->canceled ? 0 : len;
    }
    if (c->n_lines >= UPSTREAM_MAX_HEADERS || c->head.len + l > UPSTREAM_MAX_HEAD) {
        c->head_error = 1;
        return 0;
    }
    c->line_off[c->n_lines] = c->head.len;
    c->line_len[c->n_lines] = l;
    if (gw_buf_append(&c->head, data, l) != 0) {
        c->head_error = 1;
        return 0;
    }
    c->n_lines++;
    return len;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct upstream_call *c = userdata;
    size_t len = size * nmemb;
    if (c->canceled)
        return 0;
    c->in_callback = 1;
    int r = c->cb.on_data(c->arg, data, len);
    c->in_callback = 0;
    if (c->canceled)
        return 0;
    if (r == 1) {
        c->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    return len;
}

struct upstream_call *upstream_start(struct upstream_multi *m, const struct upstream_request *r,
                                     const struct upstream_callbacks *cb, void *arg)
{
    if (!m->closing && m->h1) {
        struct upstream_h1_target t;
        if (upstream_h1_target(r, &t))
            return (struct upstream_call *)upstream_h1_start(m->h1, r, &t, cb, arg);
    }
    struct upstream_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->kind = CALL_CURL;
    c->m = m;
    c->cb = *cb;
    c->arg = arg;
    c->easy = m->n_spare > 0 ? m->spare[--m->n_spare] : curl_easy_init();
    if (!c->easy)
        goto fail;
    CURL *e = c->easy;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (r->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, r->ca_file);
    if (r->cert_file && r->key_file) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, r->cert_file);
        curl_easy_setopt(e, CURLOPT_SSLKEY, r->key_file);
    }
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(r->connect_timeout_ms ? r->connect_timeout_ms : 2000));
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    switch (r->method) {
    case GW_HTTP_POST:
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body.len ? r->body.ptr : "");
        break;
    case GW_HTTP_DELETE:
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
        break;
    default:
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        break;
    }
    /* Only the headers the caller built go upstream; curl's own defaults are removed. */
    struct curl_slist *h = NULL;
    static const char *const remove[] = {"Expect:", "Accept:", "Content-Type:", NULL};
    for (const char *const *p = remove; *p; p++) {
        struct curl_slist *n = curl_slist_append(h, *p);
        if (!n)
            goto fail;
        h = n;
    }
    struct gw_buf line = {0};
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct gw_header *hd = &r->headers[i];
        if (!r->unix_socket && gw_slice_casecmp_eq(hd->name, GW_LOCAL_PRINCIPAL_HEADER))
            continue; /* a local backend's key: never to a network backend */
        if (!upstream_h1_header_ok(hd)) {
            gw_buf_free(&line);
            curl_slist_free_all(h);
            goto fail;
        }
        gw_buf_reset(&line);
        if (gw_buf_append(&line, r->headers[i].name.ptr, r->headers[i].name.len) != 0 ||
            gw_buf_append(&line, ": ", 2) != 0 ||
            gw_buf_append(&line, r->headers[i].value.ptr, r->headers[i].value.len) != 0) {
            gw_buf_free(&line);
            curl_slist_free_all(h);
            goto fail;
        }
        struct curl_slist *n = curl_slist_append(h, line.data);
        if (!n) {
            gw_buf_free(&line);
            curl_slist_free_all(h);
            goto fail;
        }
        h = n;
    }
    gw_buf_free(&line);
    c->headers = h;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    /* A reused handle keeps its options: the socket is set (or cleared) every time. */
    if (r->unix_socket && !r->unix_socket[0])
        goto fail; /* its endpoint is not up: refuse rather than reach the URL's host */
    curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, r->unix_socket);
    if (r->pin && r->pin[0]) {
        /* The name keeps its role for Host and TLS SNI; the address is the vetted one. */
        c->resolve = curl_slist_append(NULL, r->pin);
        if (!c->resolve)
            goto fail;
        curl_easy_setopt(e, CURLOPT_RESOLVE, c->resolve);
    }
    if (curl_multi_add_handle(m->multi, e) != CURLM_OK)
        goto fail;
    m->active++;
    return c;
fail:
    call_free(c);
    return NULL;
}

void upstream_resume(struct upstream_call *c)
{
    if (c && kind_of(c) == UPSTREAM_H1_KIND) {
        upstream_h1_resume((struct upstream_h1_call *)c);
        return;
    }
    if (!c || !c->paused || c->canceled)
        return;
    c->paused = 0;
    /* Unpausing may deliver data at once (write_cb runs inside this call). */
    curl_easy_pause(c->easy, CURLPAUSE_CONT);
}

void upstream_cancel(struct upstream_call *c)
{
    if (c && kind_of(c) == UPSTREAM_H1_KIND) {
        upstream_h1_cancel((struct upstream_h1_call *)c);
        return;
    }
    if (!c || c->canceled)
        return;
    c->canceled = 1;
    if (c->in_callback) {
        /* The callback returns 0 to curl, which fails the transfer; finish() frees it. */
        return;
    }
    if (c->paused) {
        /* A paused transfer must be unpaused to fail; simpler to remove it outright. */
        c->paused = 0;
    }
    curl_multi_remove_handle(c->m->multi, c->easy);
    c->m->active--;
    call_free(c);
}
