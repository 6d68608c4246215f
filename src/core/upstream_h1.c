#include "core/upstream_h1.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/timeutil.h"

/* Idle connections kept per worker, across all backends (curl's cache held as many). */
#define H1_MAX_IDLE 256
/* An idle connection older than this is closed rather than reused. */
#define H1_IDLE_MAX_MS 60000
/* One read buffer per worker: every read is taken (or copied) before the next one. */
#define H1_READ_BUF 65536
#define H1_DEFAULT_CONNECT_MS 2000

/* ---- the response reader ---- */

static struct upstream_h1_reader *reader_of(http_parser *hp)
{
    return hp->data;
}

static int reader_fail(struct upstream_h1_reader *r, const char *why)
{
    if (r->state != UPSTREAM_H1_ERROR && r->state != UPSTREAM_H1_STOPPED) {
        r->state = UPSTREAM_H1_ERROR;
        r->error = why;
    }
    return -1;
}

static int reader_count(struct upstream_h1_reader *r, size_t n)
{
    r->head_bytes += n;
    return r->head_bytes > UPSTREAM_H1_MAX_HEAD ? reader_fail(r, "response head too large") : 0;
}

static int rd_message_begin(http_parser *hp)
{
    struct upstream_h1_reader *r = reader_of(hp);
    r->n_headers = 0;
    r->in_value = 0;
    r->head_bytes = 0;
    gw_buf_reset(&r->head);
    return 0;
}

static int rd_status(http_parser *hp, const char *at, size_t len)
{
    return reader_count(reader_of(hp), len);
}

static int rd_header_field(http_parser *hp, const char *at, size_t len)
{
    struct upstream_h1_reader *r = reader_of(hp);
    if (r->state != UPSTREAM_H1_HEAD)
        return 0; /* a trailer field of a chunked body: not relayed */
    if (reader_count(r, len + 4) != 0)
        return -1;
    if (r->in_value || r->n_headers == 0) {
        if (r->n_headers >= UPSTREAM_H1_MAX_HEADERS)
            return reader_fail(r, "too many response header fields");
        r->name_off[r->n_headers] = (uint32_t)r->head.len;
        r->name_len[r->n_headers] = 0;
        r->value_off[r->n_headers] = 0;
        r->value_len[r->n_headers] = 0;
        r->n_headers++;
        r->in_value = 0;
    }
    if (gw_buf_append(&r->head, at, len) != 0)
        return reader_fail(r, "out of memory");
    r->name_len[r->n_headers - 1] += (uint32_t)len;
    return 0;
}

static int rd_header_value(http_parser *hp, const char *at, size_t len)
{
    struct upstream_h1_reader *r = reader_of(hp);
    if (r->state != UPSTREAM_H1_HEAD)
        return 0;
    if (reader_count(r, len) != 0)
        return -1;
    if (!r->in_value) {
        r->in_value = 1;
        r->value_off[r->n_headers - 1] = (uint32_t)r->head.len;
    }
    if (gw_buf_append(&r->head, at, len) != 0)
        return reader_fail(r, "out of memory");
    r->value_len[r->n_headers - 1] += (uint32_t)len;
    return 0;
}

static int rd_headers_complete(http_parser *hp)
{
    struct upstream_h1_reader *r = reader_of(hp);
    if (hp->http_major != 1)
        return reader_fail(r, "the backend's answer is not HTTP/1");
    if (hp->status_code < 200) {
        if (hp->status_code == 101 || hp->upgrade)
            return reader_fail(r, "the backend switched protocols unasked");
        return 0; /* an interim head: the final one follows */
    }
    if (hp->upgrade)
        return reader_fail(r, "the backend switched protocols unasked");
    struct gw_header hdrs[UPSTREAM_H1_MAX_HEADERS];
    for (size_t i = 0; i < r->n_headers; i++) {
        struct gw_slice name = {r->head.data + r->name_off[i], r->name_len[i]};
        struct gw_slice value = {r->head.data + r->value_off[i], r->value_len[i]};
        if (r->value_len[i] == 0)
            value.ptr = r->head.data + r->head.len; /* an empty value: a valid empty slice */
        while (value.len && (value.ptr[value.len - 1] == ' ' || value.ptr[value.len - 1] == '\t'))
            value.len--;
        hdrs[i] = (struct gw_header){name, value};
    }
    r->state = UPSTREAM_H1_BODY;
    if (r->cb->on_head(r->arg, hp->status_code, hdrs, r->n_headers) != 0) {
        r->state = UPSTREAM_H1_STOPPED;
        return -1;
    }
    return 0;
}

static int rd_body(http_parser *hp, const char *at, size_t len)
{
    struct upstream_h1_reader *r = reader_of(hp);
    if (r->state != UPSTREAM_H1_BODY)
        return reader_fail(r, "body bytes before the final head");
    if (len && r->cb->on_body(r->arg, at, len) != 0) {
        r->state = UPSTREAM_H1_STOPPED;
        return -1;
    }
    return 0;
}

static int rd_message_complete(http_parser *hp)
{
    struct upstream_h1_reader *r = reader_of(hp);
    if (r->state == UPSTREAM_H1_HEAD)
        return 0; /* the end of an interim answer */
    r->state = UPSTREAM_H1_DONE;
    http_parser_pause(hp, 1); /* what follows is not this answer's */
    return 0;
}

static const http_parser_settings reader_settings = {
    .on_message_begin = rd_message_begin,
    .on_status = rd_status,
    .on_header_field = rd_header_field,
    .on_header_value = rd_header_value,
    .on_headers_complete = rd_headers_complete,
    .on_body = rd_body,
    .on_message_complete = rd_message_complete,
};

void upstream_h1_reader_init(struct upstream_h1_reader *r,
                             const struct upstream_h1_reader_callbacks *cb, void *arg)
{
    memset(r, 0, sizeof *r);
    http_parser_init(&r->hp, HTTP_RESPONSE);
    r->hp.data = r;
    r->cb = cb;
    r->arg = arg;
}

void upstream_h1_reader_free(struct upstream_h1_reader *r)
{
    gw_buf_free(&r->head);
}

size_t upstream_h1_reader_feed(struct upstream_h1_reader *r, const char *data, size_t len)
{
    if (r->state >= UPSTREAM_H1_DONE || len == 0)
        return 0;
    r->got_bytes = 1;
    size_t n = http_parser_execute(&r->hp, &reader_settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->hp);
    if (r->state == UPSTREAM_H1_DONE) {
        if (e == HPE_PAUSED)
            http_parser_pause(&r->hp, 0);
        return n > len ? len : n;
    }
    if (r->state == UPSTREAM_H1_ERROR || r->state == UPSTREAM_H1_STOPPED)
        return n > len ? len : n;
    if (e != HPE_OK)
        reader_fail(r, "malformed response");
    return n > len ? len : n;
}

void upstream_h1_reader_eof(struct upstream_h1_reader *r)
{
    if (r->state >= UPSTREAM_H1_DONE)
        return;
    if (r->state == UPSTREAM_H1_BODY) {
        /* An answer without a length ends with the connection. */
        http_parser_execute(&r->hp, &reader_settings, NULL, 0);
        if (r->state == UPSTREAM_H1_DONE)
            return;
    }
    reader_fail(r, r->got_bytes ? "connection closed before the answer was complete"
                                : "connection closed before any answer");
}

int upstream_h1_reader_keep_alive(const struct upstream_h1_reader *r)
{
    return r->state == UPSTREAM_H1_DONE && http_should_keep_alive(&r->hp);
}

/* ---- where a request goes ---- */

/* Parses one address of a pin ("1.2.3.4" or "[::1]"). 0, or -1. */
static int parse_addr(const char *s, size_t len, int port, struct sockaddr_storage *out)
{
    char a[INET6_ADDRSTRLEN + 1];
    memset(out, 0, sizeof *out);
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        if (len - 2 >= sizeof a)
            return -1;
        memcpy(a, s + 1, len - 2);
        a[len - 2] = '\0';
        return uv_ip6_addr(a, port, (struct sockaddr_in6 *)out) == 0 ? 0 : -1;
    }
    if (len >= sizeof a)
        return -1;
    memcpy(a, s, len);
    a[len] = '\0';
    return uv_ip4_addr(a, port, (struct sockaddr_in *)out) == 0 ? 0 : -1;
}

/* Bytes a request line or Host header may carry as they are (visible ASCII). */
static int plain_bytes(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

/* Host, pool key and addresses of an authority ("name", "name:port", "[v6]", "[v6]:port"). */
static int target_endpoint(const struct upstream_request *r, const char *auth, size_t auth_len,
                           struct upstream_h1_target *t)
{
    const char *host = auth;
    size_t host_len;
    const char *port_s = NULL;
    if (auth[0] == '[') {
        const char *close = memchr(auth, ']', auth_len);
        if (!close)
            return 0;
        host_len = (size_t)(close - auth) + 1;
        if (host_len < auth_len) {
            if (auth[host_len] != ':')
                return 0;
            port_s = auth + host_len + 1;
        }
    } else {
        const char *colon = memchr(auth, ':', auth_len);
        host_len = colon ? (size_t)(colon - auth) : auth_len;
        if (colon)
            port_s = colon + 1;
    }
    int port = 80;
    if (port_s) {
        size_t n = (size_t)(auth + auth_len - port_s);
        if (n == 0 || n > 5)
            return 0;
        port = 0;
        for (size_t i = 0; i < n; i++) {
            if (port_s[i] < '0' || port_s[i] > '9')
                return 0;
            port = port * 10 + (port_s[i] - '0');
        }
        if (port < 1 || port > 65535)
            return 0;
    }
    if (host_len == 0 || host_len >= 256)
        return 0;
    /* Host: as curl writes it, the port only when it is not the scheme's. */
    int hl = port == 80 ? snprintf(t->host, sizeof t->host, "%.*s", (int)host_len, host)
                        : snprintf(t->host, sizeof t->host, "%.*s:%d", (int)host_len, host, port);
    if (hl < 0 || (size_t)hl >= sizeof t->host)
        return 0;
    t->n_addrs = 0;
    t->unix_socket = NULL;
    if (r->unix_socket) {
        if (!r->unix_socket[0])
            return 0; /* libcurl's path refuses it (the endpoint is not up) */
        t->unix_socket = r->unix_socket;
        int kl = snprintf(t->key, sizeof t->key, "unix:%s|%s", r->unix_socket, t->host);
        return kl > 0 && (size_t)kl < sizeof t->key;
    }
    /* The bare host, for a literal or for matching the pin's name. */
    const char *bare = host;
    size_t bare_len = host_len;
    if (host[0] == '[')
        bare++, bare_len -= 2;
    if (r->pin && r->pin[0]) {
        /* "host:port:a1,a2": only for this URL's host and port, as curl applies it. */
        char head[300];
        int n = snprintf(head, sizeof head, "%.*s:%d:", (int)host_len, host, port);
        int nb = snprintf(head + n + 1, sizeof head - (size_t)n - 1, "%.*s:%d:", (int)bare_len,
                          bare, port);
        if (n < 0 || nb < 0 || (size_t)(n + 1 + nb) >= sizeof head)
            return 0;
        const char *list;
        if (strncasecmp(r->pin, head, (size_t)n) == 0)
            list = r->pin + n;
        else if (strncasecmp(r->pin, head + n + 1, (size_t)nb) == 0)
            list = r->pin + nb;
        else
            return 0;
        while (*list && t->n_addrs < UPSTREAM_H1_MAX_ADDRS) {
            size_t len = strcspn(list, ",");
            if (parse_addr(list, len, port, &t->addrs[t->n_addrs]) != 0)
                return 0;
            t->n_addrs++;
            list += len;
            if (*list == ',')
                list++;
        }
        if (t->n_addrs == 0)
            return 0;
    } else {
        /* No pin: only an address literal (a name needs a lookup, which libcurl does). */
        if (parse_addr(host, host_len, port, &t->addrs[0]) != 0)
            return 0;
        t->n_addrs = 1;
    }
    char a[INET6_ADDRSTRLEN];
    const struct sockaddr *sa = (const struct sockaddr *)&t->addrs[0];
    if (sa->sa_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)sa, a, sizeof a);
    else
        uv_ip4_name((const struct sockaddr_in *)sa, a, sizeof a);
    int kl = snprintf(t->key, sizeof t->key, "tcp:%s|%d|%s", a, port, t->host);
    return kl > 0 && (size_t)kl < sizeof t->key;
}

/*
 * The endpoint of the last URL this thread took apart. It is a function of the authority, the
 * pin and the socket path alone, and a route sends every call to the same ones: taking it
 * apart again (a pool key and a Host value formatted, an address parsed and written back)
 * was most of this client's own work per call.
 */
struct endpoint_memo {
    int valid, has_pin, has_unix;
    size_t auth_len;
    char auth[272];
    char pin[512];
    char unix_socket[256];
    char host[sizeof((struct upstream_h1_target *)0)->host];
    char key[sizeof((struct upstream_h1_target *)0)->key];
    struct sockaddr_storage addrs[UPSTREAM_H1_MAX_ADDRS];
    size_t n_addrs;
};
static __thread struct endpoint_memo memo;

/* Whether an optional string is the one remembered (NULL and "" differ). */
static int memo_same(const char *kept, int has, const char *s)
{
    return s ? has && strcmp(kept, s) == 0 : !has;
}

/* Copies an optional string to be remembered; 0 when it does not fit. */
static int memo_keep(char *kept, size_t cap, int *has, const char *s)
{
    *has = s != NULL;
    if (!s) {
        kept[0] = '\0';
        return 1;
    }
    size_t n = strlen(s);
    if (n >= cap)
        return 0;
    memcpy(kept, s, n + 1);
    return 1;
}

int upstream_h1_target(const struct upstream_request *r, struct upstream_h1_target *t)
{
    const char *url = r->url;
    if (!url || strncasecmp(url, "http://", 7) != 0)
        return 0;
    const char *auth = url + 7;
    size_t auth_len = strcspn(auth, "/?#");
    const char *rest = auth + auth_len;
    if (auth_len == 0 || memchr(auth, '@', auth_len) || strchr(rest, '#') ||
        !plain_bytes(auth, auth_len) || !plain_bytes(rest, strlen(rest)))
        return 0;
    size_t rest_len = strlen(rest);
    if (rest_len + 2 > sizeof t->target)
        return 0;
    if (rest[0] == '?') {
        t->target[0] = '/';
        memcpy(t->target + 1, rest, rest_len + 1);
    } else if (rest_len == 0) {
        memcpy(t->target, "/", 2);
    } else {
        memcpy(t->target, rest, rest_len + 1);
    }
    if (memo.valid && memo.auth_len == auth_len && memcmp(memo.auth, auth, auth_len) == 0 &&
        memo_same(memo.pin, memo.has_pin, r->pin) &&
        memo_same(memo.unix_socket, memo.has_unix, r->unix_socket)) {
        memcpy(t->host, memo.host, sizeof t->host);
        memcpy(t->key, memo.key, sizeof t->key);
        memcpy(t->addrs, memo.addrs, memo.n_addrs * sizeof t->addrs[0]);
        t->n_addrs = memo.n_addrs;
        t->unix_socket = memo.has_unix ? r->unix_socket : NULL;
        return 1;
    }
    if (!target_endpoint(r, auth, auth_len, t))
        return 0;
    memo.valid = 0;
    if (auth_len < sizeof memo.auth &&
        memo_keep(memo.pin, sizeof memo.pin, &memo.has_pin, r->pin) &&
        memo_keep(memo.unix_socket, sizeof memo.unix_socket, &memo.has_unix, r->unix_socket)) {
        memcpy(memo.auth, auth, auth_len);
        memo.auth_len = auth_len;
        memcpy(memo.host, t->host, sizeof memo.host);
        memcpy(memo.key, t->key, sizeof memo.key);
        memcpy(memo.addrs, t->addrs, t->n_addrs * sizeof t->addrs[0]);
        memo.n_addrs = t->n_addrs;
        memo.valid = 1;
    }
    return 1;
}

/* ---- connections and calls ---- */

struct h1_conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_timer_t timer; /* the connect timeout */
    uv_connect_t connect_req;
    uv_write_t write_req;
    struct upstream_h1_pool *pool;
    struct upstream_h1_call *call;       /* NULL while idle */
    struct h1_conn *prev, *next;         /* in the idle list */
    struct h1_conn *all_prev, *all_next; /* every open connection, for the pool's close */
    char *key;
    uint64_t idle_since_ms;
    struct gw_buf out; /* the request head being written */
    int writing;
    int reused; /* it carried a request before this one */
    int closing;
    int handles; /* still to close: the stream and the timer */
};

struct upstream_h1_call {
    int kind; /* UPSTREAM_H1_KIND: the first member (upstream_h1.h) */
    struct upstream_h1_pool *pool;
    struct h1_conn *conn;
    struct upstream_callbacks cb;
    void *arg;
    struct upstream_h1_reader reader;
    struct gw_buf head;    /* the request head, written again on a retry */
    struct gw_slice body;  /* the caller's, valid until on_done or cancel */
    struct gw_buf pending; /* body bytes read while the caller paused */
    uint64_t connect_timeout_ms;
    char key[384];
    struct sockaddr_storage addrs[UPSTREAM_H1_MAX_ADDRS];
    size_t n_addrs, next_addr;
    const char *unix_socket; /* the caller's: valid for the call (the backend's config) */
    char detail[128];
    int err; /* for a deferred end */
    int retried;
    int paused;
    int in_callback;
    int canceled;
    int done;     /* the answer was read whole; on_done is owed once pending is delivered */
    int finished; /* counted out of the pool's active calls; its connection let go */
    int deferred; /* on the pool's deferred list */
    struct upstream_h1_call *next_deferred;
};

struct upstream_h1_pool {
    uv_loop_t *loop;
    uv_timer_t defer; /* ends calls outside the caller's own call stack */
    struct upstream_h1_call *deferred;
    struct h1_conn *idle_head, *idle_tail; /* most recently used first */
    struct h1_conn *all;
    size_t n_idle;
    size_t active;
    size_t conns; /* open or closing */
    int closing;
    int timer_open;
    char rbuf[H1_READ_BUF];
};

static void pool_maybe_free(struct upstream_h1_pool *p)
{
    if (p->closing && p->conns == 0 && p->active == 0 && !p->timer_open)
        free(p);
}

static void idle_unlink(struct h1_conn *k)
{
    struct upstream_h1_pool *p = k->pool;
    if (k->prev)
        k->prev->next = k->next;
    else
        p->idle_head = k->next;
    if (k->next)
        k->next->prev = k->prev;
    else
        p->idle_tail = k->prev;
    k->prev = k->next = NULL;
    p->n_idle--;
}

static void conn_handle_closed(uv_handle_t *h)
{
    struct h1_conn *k = h->data;
    if (--k->handles > 0)
        return;
    struct upstream_h1_pool *p = k->pool;
    if (k->all_prev)
        k->all_prev->all_next = k->all_next;
    else
        p->all = k->all_next;
    if (k->all_next)
        k->all_next->all_prev = k->all_prev;
    gw_buf_free(&k->out);
    free(k->key);
    free(k);
    p->conns--;
    pool_maybe_free(p);
}

/* Closes a connection (idle or not); its call, if any, must already be detached. */
static void conn_close(struct h1_conn *k)
{
    if (k->closing)
        return;
    k->closing = 1;
    if (!k->call && (k->prev || k->next || k->pool->idle_head == k))
        idle_unlink(k);
    k->call = NULL;
    uv_timer_stop(&k->timer);
    uv_close(&k->h.handle, conn_handle_closed);
    uv_close((uv_handle_t *)&k->timer, conn_handle_closed);
}

static void call_free(struct upstream_h1_call *c)
{
    upstream_h1_reader_free(&c->reader);
    gw_buf_free(&c->head);
    gw_buf_free(&c->pending);
    free(c);
}

/* Takes the connection away from its call, closing it (its state is the call's). */
static void call_drop_conn(struct upstream_h1_call *c)
{
    if (c->conn) {
        c->conn->call = NULL;
        conn_close(c->conn);
        c->conn = NULL;
    }
}

static void on_defer(uv_timer_t *t);

static void call_defer(struct upstream_h1_call *c)
{
    if (c->deferred)
        return;
    c->deferred = 1;
    c->next_deferred = c->pool->deferred;
    c->pool->deferred = c;
    uv_timer_start(&c->pool->defer, on_defer, 0, 0);
}

/* The call is over for the pool: no longer active, its connection let go. Idempotent. */
static void call_finish(struct upstream_h1_call *c)
{
    if (c->finished)
        return;
    c->finished = 1;
    call_drop_conn(c);
    c->pool->active--;
}

/* Frees a finished call, unless the deferred list still holds it (on_defer frees it then). */
static void call_release(struct upstream_h1_call *c)
{
    struct upstream_h1_pool *p = c->pool;
    if (c->deferred)
        return;
    call_free(c);
    pool_maybe_free(p);
}

/* Reports the end to the caller (unless it canceled) and frees the call. */
static void call_end(struct upstream_h1_call *c, int err, const char *detail)
{
    call_finish(c);
    if (!c->canceled) {
        c->in_callback = 1; /* an upstream_cancel from inside on_done only marks the call */
        c->cb.on_done(c->arg, err, detail);
    }
    call_release(c);
}

/* Ends the call from the loop, never inside upstream_h1_start or upstream_h1_resume. */
static void call_fail_later(struct upstream_h1_call *c, int err, const char *detail)
{
    call_drop_conn(c);
    c->err = err;
    snprintf(c->detail, sizeof c->detail, "%s", detail);
    call_defer(c);
}

static void on_defer(uv_timer_t *t)
{
    struct upstream_h1_pool *p = t->data;
    struct upstream_h1_call *list = p->deferred;
    p->deferred = NULL;
    while (list) {
        struct upstream_h1_call *c = list;
        list = c->next_deferred;
        c->deferred = 0;
        if (c->finished || c->canceled) {
            call_finish(c);
            call_release(c);
        } else if (c->err) {
            call_end(c, c->err, c->detail);
        } else if (c->done && c->pending.len == 0) {
            call_end(c, UPSTREAM_OK, "");
        }
    }
}

/* Delivers body bytes the caller did not take while paused. 0 done, 1 paused again, -1 gone. */
static int deliver_pending(struct upstream_h1_call *c)
{
    while (c->pending.len > 0) {
        c->in_callback = 1;
        int r = c->cb.on_data(c->arg, c->pending.data, c->pending.len);
        c->in_callback = 0;
        if (c->canceled)
            return -1;
        if (r == 1)
            return 1;
        gw_buf_reset(&c->pending);
    }
    return 0;
}

/* ---- the reader's callbacks, for a call ---- */

static int call_on_head(void *arg, int status, const struct gw_header *h, size_t n)
{
    struct upstream_h1_call *c = arg;
    c->in_callback = 1;
    c->cb.on_head(c->arg, status, h, n);
    c->in_callback = 0;
    return c->canceled;
}

/* Keeps body bytes for the resume. 0, or 1 (out of memory: the reader stops). */
static int pending_add(struct upstream_h1_call *c, const char *data, size_t len)
{
    if (gw_buf_append(&c->pending, data, len) == 0)
        return 0;
    c->err = UPSTREAM_ENOMEM;
    return 1;
}

static int call_on_body(void *arg, const char *data, size_t len)
{
    struct upstream_h1_call *c = arg;
    if (c->paused)
        return pending_add(c, data, len);
    c->in_callback = 1;
    int r = c->cb.on_data(c->arg, data, len);
    c->in_callback = 0;
    if (c->canceled)
        return 1;
    if (r == 1) {
        /* The same bytes come again on resume; the socket is not read meanwhile. */
        c->paused = 1;
        if (c->conn && !c->conn->closing)
            uv_read_stop(&c->conn->h.stream);
        return pending_add(c, data, len);
    }
    return 0;
}

static const struct upstream_h1_reader_callbacks call_reader_cbs = {call_on_head, call_on_body};

/* ---- the pool ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void pool_put_idle(struct upstream_h1_pool *p, struct h1_conn *k)
{
    k->call = NULL;
    k->reused = 1;
    k->idle_since_ms = gw_mono_ms();
    if (p->closing) {
        conn_close(k);
        return;
    }
    /* Read while idle, so a close by the backend is seen (a pause may have stopped it). */
    int rc = uv_read_start(&k->h.stream, on_alloc, on_read);
    if (rc != 0 && rc != UV_EALREADY) {
        conn_close(k);
        return;
    }
    if (p->n_idle >= H1_MAX_IDLE && p->idle_tail)
        conn_close(p->idle_tail); /* least recently used goes */
    k->prev = NULL;
    k->next = p->idle_head;
    if (p->idle_head)
        p->idle_head->prev = k;
    else
        p->idle_tail = k;
    p->idle_head = k;
    p->n_idle++;
}

static struct h1_conn *pool_take_idle(struct upstream_h1_pool *p, const char *key)
{
    uint64_t now = gw_mono_ms();
    for (struct h1_conn *k = p->idle_head; k;) {
        struct h1_conn *next = k->next;
        if (now - k->idle_since_ms > H1_IDLE_MAX_MS) {
            conn_close(k);
        } else if (strcmp(k->key, key) == 0) {
            idle_unlink(k);
            return k;
        }
        k = next;
    }
    return NULL;
}

/* ---- one connection's events ---- */

static void start_connect(struct upstream_h1_call *c);
static void send_request(struct upstream_h1_call *c);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct h1_conn *k = h->data;
    *buf = uv_buf_init(k->pool->rbuf, sizeof k->pool->rbuf);
}

/*
 * A reused connection that ended before any byte of the answer: the backend closed it as we
 * sent (its keep-alive ran out). The request goes once more, on a fresh connection.
 */
static int retry_fresh(struct upstream_h1_call *c)
{
    if (!c->conn || !c->conn->reused || c->retried || c->reader.got_bytes)
        return 0;
    c->retried = 1;
    call_drop_conn(c);
    c->next_addr = 0;
    start_connect(c);
    return 1;
}

/* The answer was read whole: the connection goes back to the pool or is closed. */
static void call_complete(struct upstream_h1_call *c, size_t leftover)
{
    struct h1_conn *k = c->conn;
    c->conn = NULL;
    if (k) {
        if (leftover == 0 && !k->writing && upstream_h1_reader_keep_alive(&c->reader)) {
            pool_put_idle(c->pool, k);
        } else {
            k->call = NULL;
            conn_close(k);
        }
    }
    c->done = 1;
    if (c->paused)
        return; /* on_done follows the bytes still pending, at resume */
    call_end(c, UPSTREAM_OK, "");
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct h1_conn *k = s->data;
    struct upstream_h1_call *c = k->call;
    if (nread == 0)
        return;
    if (!c) {
        /* Idle: the backend closed it, or sent what nobody asked for. Either way it goes. */
        conn_close(k);
        return;
    }
    if (nread < 0) {
        if (retry_fresh(c))
            return;
        upstream_h1_reader_eof(&c->reader);
        if (c->reader.state == UPSTREAM_H1_DONE) {
            call_complete(c, 1); /* 1: the connection is over, never pooled */
            return;
        }
        if (c->canceled) {
            call_end(c, UPSTREAM_OK, "");
            return;
        }
        call_end(c, UPSTREAM_EPROTO, nread == UV_EOF ? c->reader.error : uv_strerror((int)nread));
        return;
    }
    size_t used = upstream_h1_reader_feed(&c->reader, buf->base, (size_t)nread);
    switch (c->reader.state) {
    case UPSTREAM_H1_DONE:
        call_complete(c, (size_t)nread - used);
        return;
    case UPSTREAM_H1_STOPPED:
    case UPSTREAM_H1_ERROR:
        if (c->canceled) /* inside a callback: end it quietly */
            call_end(c, UPSTREAM_OK, "");
        else if (c->err == UPSTREAM_ENOMEM)
            call_end(c, UPSTREAM_ENOMEM, "out of memory");
        else
            call_end(c, UPSTREAM_EPROTO, c->reader.error ? c->reader.error : "malformed response");
        return;
    default:
        return;
    }
}

static void on_written(uv_write_t *w, int status)
{
    struct h1_conn *k = w->data;
    k->writing = 0;
    gw_buf_free(&k->out);
    struct upstream_h1_call *c = k->call;
    if (status == 0 || !c || k->closing)
        return;
    if (retry_fresh(c))
        return;
    call_end(c, UPSTREAM_EPROTO, uv_strerror(status));
}

static void send_request(struct upstream_h1_call *c)
{
    struct h1_conn *k = c->conn;
    gw_buf_reset(&k->out);
    if (gw_buf_append(&k->out, c->head.data, c->head.len) != 0) {
        call_fail_later(c, UPSTREAM_ENOMEM, "out of memory");
        return;
    }
    uv_buf_t bufs[2] = {uv_buf_init(k->out.data, (unsigned)k->out.len),
                        uv_buf_init((char *)c->body.ptr, (unsigned)c->body.len)};
    unsigned n = c->body.len ? 2 : 1;
    /*
     * At once, as far as the kernel takes it: no write request, and no change to the loop's
     * epoll set (libuv makes one after every queued write it completes). The rest is queued.
     */
    int w = uv_try_write(&k->h.stream, bufs, n);
    if (w > 0 && (size_t)w == k->out.len + c->body.len) {
        gw_buf_free(&k->out);
        return;
    }
    if (w > 0) {
        size_t done = (size_t)w;
        if (done >= bufs[0].len) {
            done -= bufs[0].len;
            bufs[0] = uv_buf_init(bufs[1].base + done, (unsigned)(bufs[1].len - done));
            n = 1;
        } else {
            bufs[0].base += done;
            bufs[0].len -= done;
        }
    }
    k->write_req.data = k;
    int rc = uv_write(&k->write_req, &k->h.stream, bufs, n, on_written);
    if (rc != 0) {
        if (retry_fresh(c))
            return;
        call_fail_later(c, UPSTREAM_EPROTO, uv_strerror(rc));
        return;
    }
    k->writing = 1;
}

static void on_connect_timeout(uv_timer_t *t)
{
    struct h1_conn *k = t->data;
    struct upstream_h1_call *c = k->call;
    if (!c)
        return;
    call_end(c, UPSTREAM_ETIMEOUT, "connection timed out");
}

static void on_connected(uv_connect_t *req, int status)
{
    struct h1_conn *k = req->data;
    if (status == UV_ECANCELED || k->closing)
        return;
    struct upstream_h1_call *c = k->call;
    if (!c)
        return;
    uv_timer_stop(&k->timer);
    if (status < 0) {
        if (c->next_addr < c->n_addrs) {
            /* The next address of the pin, on a new socket. */
            call_drop_conn(c);
            start_connect(c);
            return;
        }
        char why[128];
        snprintf(why, sizeof why, "cannot connect: %s", uv_strerror(status));
        call_end(c, UPSTREAM_ECONNECT, why);
        return;
    }
    if (k->h.handle.type == UV_TCP)
        uv_tcp_nodelay(&k->h.tcp, 1);
    int rc = uv_read_start(&k->h.stream, on_alloc, on_read);
    if (rc != 0) {
        call_end(c, UPSTREAM_ECONNECT, uv_strerror(rc));
        return;
    }
    send_request(c);
}

static struct h1_conn *conn_new(struct upstream_h1_pool *p, const char *key)
{
    struct h1_conn *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->key = strdup(key);
    if (!k->key) {
        free(k);
        return NULL;
    }
    k->pool = p;
    return k;
}

/* Opens a new connection for the call, to its next address. Failures end the call later. */
static void start_connect(struct upstream_h1_call *c)
{
    struct upstream_h1_pool *p = c->pool;
    struct h1_conn *k = conn_new(p, c->key);
    if (!k) {
        call_fail_later(c, UPSTREAM_ENOMEM, "out of memory");
        return;
    }
    int rc;
    if (c->unix_socket)
        rc = uv_pipe_init(p->loop, &k->h.pipe, 0);
    else
        rc = uv_tcp_init(p->loop, &k->h.tcp);
    if (rc != 0) {
        free(k->key);
        free(k);
        call_fail_later(c, UPSTREAM_ENOMEM, uv_strerror(rc));
        return;
    }
    uv_timer_init(p->loop, &k->timer);
    k->h.handle.data = k;
    k->timer.data = k;
    k->handles = 2;
    p->conns++;
    k->all_next = p->all;
    if (p->all)
        p->all->all_prev = k;
    p->all = k;
    k->call = c;
    c->conn = k;
    k->connect_req.data = k;
    if (c->unix_socket) {
        c->next_addr = c->n_addrs;
        uv_pipe_connect(&k->connect_req, &k->h.pipe, c->unix_socket, on_connected);
    } else {
        const struct sockaddr *sa = (const struct sockaddr *)&c->addrs[c->next_addr++];
        rc = uv_tcp_connect(&k->connect_req, &k->h.tcp, sa, on_connected);
        if (rc != 0) {
            char why[128];
            snprintf(why, sizeof why, "cannot connect: %s", uv_strerror(rc));
            call_fail_later(c, UPSTREAM_ECONNECT, why);
            return;
        }
    }
    uv_timer_start(&k->timer, on_connect_timeout, c->connect_timeout_ms, 0);
}

/* ---- the public side ---- */

struct upstream_h1_pool *upstream_h1_pool_new(uv_loop_t *loop)
{
    struct upstream_h1_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->loop = loop;
    uv_timer_init(loop, &p->defer);
    p->defer.data = p;
    p->timer_open = 1;
    return p;
}

static void pool_timer_closed(uv_handle_t *h)
{
    struct upstream_h1_pool *p = h->data;
    p->timer_open = 0;
    pool_maybe_free(p);
}

void upstream_h1_pool_close(struct upstream_h1_pool *p)
{
    if (!p)
        return;
    p->closing = 1;
    while (p->idle_head)
        conn_close(p->idle_head);
    /* Running calls lose their connections and get no callback; a cancel still frees each. */
    for (struct h1_conn *k = p->all; k; k = k->all_next) {
        if (k->call) {
            k->call->conn = NULL;
            k->call = NULL;
        }
        conn_close(k);
    }
    struct upstream_h1_call *list = p->deferred;
    p->deferred = NULL;
    while (list) {
        struct upstream_h1_call *c = list;
        list = c->next_deferred;
        c->deferred = 0;
    }
    uv_timer_stop(&p->defer);
    uv_close((uv_handle_t *)&p->defer, pool_timer_closed);
}

size_t upstream_h1_pool_active(const struct upstream_h1_pool *p)
{
    return p ? p->active : 0;
}

int upstream_h1_header_ok(const struct gw_header *h)
{
    return h->name.len > 0 && !memchr(h->name.ptr, '\r', h->name.len) &&
           !memchr(h->name.ptr, '\n', h->name.len) && !memchr(h->name.ptr, '\0', h->name.len) &&
           !memchr(h->name.ptr, ':', h->name.len) && !memchr(h->value.ptr, '\r', h->value.len) &&
           !memchr(h->value.ptr, '\n', h->value.len) && !memchr(h->value.ptr, '\0', h->value.len);
}

static int build_head(struct upstream_h1_call *c, const struct upstream_request *r,
                      const struct upstream_h1_target *t)
{
    static const char *const methods[] = {[GW_HTTP_OTHER] = "GET",
                                          [GW_HTTP_GET] = "GET",
                                          [GW_HTTP_POST] = "POST",
                                          [GW_HTTP_DELETE] = "DELETE"};
    struct gw_buf *b = &c->head;
    int own_host = 1;
    for (size_t i = 0; i < r->n_headers; i++)
        if (gw_slice_casecmp_eq(r->headers[i].name, "Host"))
            own_host = 0;
    if (gw_buf_reserve(b, 256 + strlen(t->target)) != 0)
        return -1;
    int rc = gw_buf_append_str(b, methods[r->method]) | gw_buf_append(b, " ", 1) |
             gw_buf_append_str(b, t->target) | gw_buf_append(b, " HTTP/1.1\r\n", 11);
    if (own_host)
        rc |= gw_buf_append(b, "Host: ", 6) | gw_buf_append_str(b, t->host) |
              gw_buf_append(b, "\r\n", 2);
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct gw_header *h = &r->headers[i];
        if (!r->unix_socket && gw_slice_casecmp_eq(h->name, GW_LOCAL_PRINCIPAL_HEADER))
            continue; /* a local backend's key: never to a network backend */
        if (!upstream_h1_header_ok(h))
            return -1;
        /* The framing is this client's: the caller's would contradict the body it sends. */
        if (gw_slice_casecmp_eq(h->name, "Content-Length") ||
            gw_slice_casecmp_eq(h->name, "Transfer-Encoding") ||
            gw_slice_casecmp_eq(h->name, "Connection"))
            continue;
        rc |= gw_buf_append(b, h->name.ptr, h->name.len) | gw_buf_append(b, ": ", 2) |
              gw_buf_append(b, h->value.ptr, h->value.len) | gw_buf_append(b, "\r\n", 2);
    }
    if (r->method == GW_HTTP_POST)
        rc |= gw_buf_append(b, "Content-Length: ", 16) | gw_buf_append_u64(b, r->body.len) |
              gw_buf_append(b, "\r\n", 2);
    rc |= gw_buf_append(b, "\r\n", 2);
    return rc ? -1 : 0;
}

struct upstream_h1_call *upstream_h1_start(struct upstream_h1_pool *p,
                                           const struct upstream_request *r,
                                           const struct upstream_h1_target *t,
                                           const struct upstream_callbacks *cb, void *arg)
{
    if (!p || p->closing)
        return NULL;
    struct upstream_h1_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->kind = UPSTREAM_H1_KIND;
    c->pool = p;
    c->cb = *cb;
    c->arg = arg;
    upstream_h1_reader_init(&c->reader, &call_reader_cbs, c);
    if (build_head(c, r, t) != 0) {
        call_free(c);
        return NULL;
    }
    c->body = r->method == GW_HTTP_POST ? r->body : GW_SLICE_NULL;
    c->connect_timeout_ms = r->connect_timeout_ms ? r->connect_timeout_ms : H1_DEFAULT_CONNECT_MS;
    memcpy(c->key, t->key, sizeof c->key);
    memcpy(c->addrs, t->addrs, t->n_addrs * sizeof t->addrs[0]);
    c->n_addrs = t->n_addrs;
    c->unix_socket = t->unix_socket;
    p->active++;
    struct h1_conn *k = pool_take_idle(p, c->key);
    if (k) {
        k->call = c;
        c->conn = k;
        send_request(c);
    } else {
        start_connect(c);
    }
    return c;
}

void upstream_h1_resume(struct upstream_h1_call *c)
{
    if (!c || !c->paused || c->canceled || c->finished)
        return;
    c->paused = 0;
    int r = deliver_pending(c);
    if (r < 0) {
        /* Canceled from inside on_data: over now. */
        call_finish(c);
        call_release(c);
        return;
    }
    if (r == 1) {
        c->paused = 1;
        return;
    }
    if (c->done || c->err) {
        call_defer(c); /* on_done from the loop, not inside the caller's resume */
        return;
    }
    if (c->conn && !c->conn->closing && uv_read_start(&c->conn->h.stream, on_alloc, on_read) != 0)
        call_fail_later(c, UPSTREAM_EPROTO, "cannot read the backend connection");
}

void upstream_h1_cancel(struct upstream_h1_call *c)
{
    if (!c || c->canceled)
        return;
    c->canceled = 1;
    if (c->in_callback)
        return; /* the code that called back sees the mark and ends the call */
    call_finish(c);
    call_release(c);
}
