/*
 * The own upstream client (core/upstream_h1.c) through core/upstream.c's interface, against a
 * scripted loopback backend in a thread: framing (length, chunked, to the end), interim
 * answers, keep-alive reuse and its limits, a backend that closes a pooled connection, the
 * retry of a request sent on a connection that was already closed, answers cut short or out
 * of bounds, connect failures and time-outs, pause and resume, cancels from inside and
 * outside the callbacks, what goes upstream (and what never does), unix sockets and pins.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <sys/un.h>

#include "fixtures.h"
#include "core/upstream.h"
#include "core/upstream_h1.h"

/* ---- the scripted backend ---- */

#define BE_MAX_STEPS 8
#define BE_MAX_CONNS 8
#define BE_SEEN 8192

/* What the backend does with its n-th request (counted over all connections). */
struct be_step {
    const char *answer; /* bytes sent back (NULL: none) */
    int close;          /* close the connection after (or instead of) answering */
    int delay_ms;       /* before answering */
};

static struct {
    int listen_fd;
    int port;
    char unix_path[108];
    pthread_t thread;
    atomic_int stop;
    atomic_int accepts;
    atomic_int requests;
    struct be_step steps[BE_MAX_STEPS];
    int n_steps;
    char seen[BE_MAX_STEPS][BE_SEEN]; /* each request's bytes as received */
    pthread_mutex_t lock;
} be;

static int be_request_end(const char *buf, size_t len)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return -1;
    size_t head = (size_t)(end - buf) + 4;
    size_t body = 0;
    for (const char *p = buf; p < end; p++) {
        if (strncasecmp(p, "\r\nContent-Length:", 17) == 0) {
            body = strtoul(p + 17, NULL, 10);
            break;
        }
    }
    return head + body <= len ? (int)(head + body) : -1;
}

static void *be_thread(void *arg)
{
    (void)arg;
    struct {
        int fd;
        char buf[BE_SEEN];
        size_t len;
    } conns[BE_MAX_CONNS];
    int n = 0;
    while (!atomic_load(&be.stop)) {
        struct pollfd pfd[BE_MAX_CONNS + 1];
        pfd[0] = (struct pollfd){be.listen_fd, POLLIN, 0};
        for (int i = 0; i < n; i++)
            pfd[i + 1] = (struct pollfd){conns[i].fd, POLLIN, 0};
        if (poll(pfd, (nfds_t)n + 1, 50) <= 0)
            continue;
        if ((pfd[0].revents & POLLIN) && n < BE_MAX_CONNS) {
            int fd = accept(be.listen_fd, NULL, NULL);
            if (fd >= 0) {
                conns[n].fd = fd;
                conns[n].len = 0;
                n++;
                atomic_fetch_add(&be.accepts, 1);
            }
        }
        for (int i = 0; i < n; i++) {
            if (!(pfd[i + 1].revents & (POLLIN | POLLHUP)) || i + 1 > n)
                continue;
            ssize_t r = read(conns[i].fd, conns[i].buf + conns[i].len,
                             sizeof conns[i].buf - 1 - conns[i].len);
            int drop = r <= 0;
            if (r > 0) {
                conns[i].len += (size_t)r;
                int end = be_request_end(conns[i].buf, conns[i].len);
                if (end > 0) {
                    int k = atomic_fetch_add(&be.requests, 1);
                    struct be_step st = k < be.n_steps ? be.steps[k] : (struct be_step){0};
                    if (k < BE_MAX_STEPS) {
                        pthread_mutex_lock(&be.lock);
                        memcpy(be.seen[k], conns[i].buf, (size_t)end);
                        be.seen[k][end] = '\0';
                        pthread_mutex_unlock(&be.lock);
                    }
                    memmove(conns[i].buf, conns[i].buf + end, conns[i].len - (size_t)end);
                    conns[i].len -= (size_t)end;
                    if (st.delay_ms)
                        usleep((useconds_t)st.delay_ms * 1000);
                    if (st.answer) {
                        size_t al = strlen(st.answer), off = 0;
                        while (off < al) {
                            ssize_t w = write(conns[i].fd, st.answer + off, al - off);
                            if (w <= 0)
                                break;
                            off += (size_t)w;
                        }
                    }
                    drop = st.close;
                }
            }
            if (drop) {
                close(conns[i].fd);
                conns[i] = conns[n - 1];
                n--;
                i--;
            }
        }
    }
    for (int i = 0; i < n; i++)
        close(conns[i].fd);
    return NULL;
}

static void be_script(const struct be_step *steps, int n)
{
    memcpy(be.steps, steps, (size_t)n * sizeof *steps);
    be.n_steps = n;
    atomic_store(&be.requests, 0);
}

static int setup(void **state)
{
    (void)state;
    memset(&be, 0, sizeof be);
    pthread_mutex_init(&be.lock, NULL);
    be.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(be.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(be.listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(be.listen_fd, 16) != 0)
        return -1;
    socklen_t al = sizeof a;
    getsockname(be.listen_fd, (struct sockaddr *)&a, &al);
    be.port = ntohs(a.sin_port);
    return pthread_create(&be.thread, NULL, be_thread, NULL) == 0 ? 0 : -1;
}

/* The same backend on a unix socket instead. */
static int setup_unix(void **state)
{
    (void)state;
    memset(&be, 0, sizeof be);
    pthread_mutex_init(&be.lock, NULL);
    snprintf(be.unix_path, sizeof be.unix_path, "/tmp/toolgate-test-h1-%d.sock", (int)getpid());
    unlink(be.unix_path);
    be.listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    snprintf(u.sun_path, sizeof u.sun_path, "%s", be.unix_path);
    if (bind(be.listen_fd, (struct sockaddr *)&u, sizeof u) != 0 || listen(be.listen_fd, 16) != 0)
        return -1;
    return pthread_create(&be.thread, NULL, be_thread, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    atomic_store(&be.stop, 1);
    pthread_join(be.thread, NULL);
    close(be.listen_fd);
    if (be.unix_path[0])
        unlink(be.unix_path);
    pthread_mutex_destroy(&be.lock);
    return 0;
}

/* ---- the client side ---- */

struct outcome {
    int heads, status, done, err;
    char detail[160];
    struct gw_buf body;
    char first_header[128];
    int n_headers;
    int pause_first;    /* on_data asks for a pause the first time */
    int paused_times;   /* how often on_data paused */
    int cancel_in_head; /* cancel from inside on_head */
    struct upstream_call *call;
    uv_loop_t *loop;
};

static void cb_head(void *arg, int status, const struct gw_header *h, size_t n)
{
    struct outcome *o = arg;
    o->heads++;
    o->status = status;
    o->n_headers = (int)n;
    if (n > 0)
        snprintf(o->first_header, sizeof o->first_header, "%.*s=[%.*s]", (int)h[0].name.len,
                 h[0].name.ptr, (int)h[0].value.len, h[0].value.ptr);
    if (o->cancel_in_head) {
        upstream_cancel(o->call);
        o->call = NULL;
    }
}

static void on_resume_timer(uv_timer_t *t)
{
    struct outcome *o = t->data;
    upstream_resume(o->call);
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static int cb_data(void *arg, const char *data, size_t len)
{
    struct outcome *o = arg;
    if (o->pause_first && o->paused_times == 0) {
        o->paused_times++;
        uv_timer_t *t = malloc(sizeof *t);
        uv_timer_init(o->loop, t);
        t->data = o;
        uv_timer_start(t, on_resume_timer, 30, 0);
        return 1;
    }
    gw_buf_append(&o->body, data, len);
    return 0;
}

static void cb_done(void *arg, int err, const char *detail)
{
    struct outcome *o = arg;
    o->done++;
    o->err = err;
    snprintf(o->detail, sizeof o->detail, "%s", detail ? detail : "");
    o->call = NULL;
}

static const struct upstream_callbacks cbs = {cb_head, cb_data, cb_done};

struct client {
    uv_loop_t loop;
    struct upstream_multi *m;
    char url[128];
};

static void client_open(struct client *cl)
{
    assert_int_equal(uv_loop_init(&cl->loop), 0);
    cl->m = upstream_multi_new(&cl->loop);
    assert_non_null(cl->m);
    snprintf(cl->url, sizeof cl->url, "http://127.0.0.1:%d/mcp", be.port);
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void client_close(struct client *cl)
{
    upstream_multi_close(cl->m);
    for (int i = 0; i < 100 && uv_run(&cl->loop, UV_RUN_NOWAIT); i++)
        usleep(1000);
    uv_walk(&cl->loop, walk_close, NULL);
    uv_run(&cl->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&cl->loop), 0);
}

/* Runs the loop until the outcome is done (or the bound passes). */
static void run_until(struct client *cl, struct outcome *o, int want_done, int max_ms)
{
    uint64_t until = gw_mono_ms() + (uint64_t)max_ms;
    while (o->done < want_done && gw_mono_ms() < until)
        if (uv_run(&cl->loop, UV_RUN_NOWAIT) == 0 || o->done < want_done)
            usleep(500);
}

/* Runs the loop for a while regardless (what must not happen has time to happen). */
static void run_for(struct client *cl, int ms)
{
    uint64_t until = gw_mono_ms() + (uint64_t)ms;
    while (gw_mono_ms() < until) {
        uv_run(&cl->loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
}

static const struct gw_header test_headers[] = {
    {GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("application/json")},
    {GW_SLICE_LIT("X-Request-Id"), GW_SLICE_LIT("req-1")},
};

static struct upstream_call *post(struct client *cl, struct outcome *o, const char *body)
{
    memset(o, 0, sizeof *o);
    o->loop = &cl->loop;
    struct upstream_request r = {
        .url = cl->url,
        .method = GW_HTTP_POST,
        .body = {body, strlen(body)},
        .headers = test_headers,
        .n_headers = 2,
        .connect_timeout_ms = 1000,
    };
    o->call = upstream_start(cl->m, &r, &cbs, o);
    return o->call;
}

/* Posts and runs the call to its end, which must be a success; the body stays in o. */
static void post_ok(struct client *cl, struct outcome *o, const char *body)
{
    assert_non_null(post(cl, o, body));
    run_until(cl, o, 1, 3000);
    assert_int_equal(o->done, 1);
    if (o->err != UPSTREAM_OK)
        fail_msg("the call failed: %d %s", o->err, o->detail);
}

/* A call that had to succeed, whose body is not looked at. */
static void post_ok_quiet(struct client *cl, struct outcome *o)
{
    post_ok(cl, o, "{}");
    gw_buf_free(&o->body);
}

#define OK_ANSWER(body)                                                                            \
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " #body "\r\n\r\n"

/* ---- tests ---- */

static void test_length_answer_and_reuse(void **state)
{
    (void)state;
    struct be_step steps[] = {
        {"HTTP/1.1 200 OK\r\nX-Thing:  spaced  \r\nContent-Length: 5\r\n\r\nhello", 0, 0},
        {"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc", 0, 0},
    };
    be_script(steps, 2);
    struct client cl;
    client_open(&cl);
    struct outcome o;
    assert_non_null(post(&cl, &o, "{\"a\":1}"));
    run_until(&cl, &o, 1, 3000);
    assert_int_equal(o.done, 1);
    assert_int_equal(o.err, UPSTREAM_OK);
    assert_int_equal(o.heads, 1);
    assert_int_equal(o.status, 200);
    assert_string_equal(o.first_header, "X-Thing=[spaced]");
    assert_int_equal(o.body.len, 5);
    assert_memory_equal(o.body.data, "hello", 5);
    gw_buf_free(&o.body);
    post_ok(&cl, &o, "{}");
    assert_int_equal(o.status, 201);
    assert_memory_equal(o.body.data, "abc", 3);
    gw_buf_free(&o.body);
    /* One connection carried both. */
    assert_int_equal(atomic_load(&be.accepts), 1);
    /* What went upstream: the request line, Host with the port, the framing. */
    pthread_mutex_lock(&be.lock);
    char want[64];
    snprintf(want, sizeof want, "Host: 127.0.0.1:%d\r\n", be.port);
    assert_non_null(strstr(be.seen[0], "POST /mcp HTTP/1.1\r\n"));
    assert_non_null(strstr(be.seen[0], want));
    assert_non_null(strstr(be.seen[0], "Content-Length: 7\r\n"));
    assert_non_null(strstr(be.seen[0], "Content-Type: application/json\r\n"));
    assert_non_null(strstr(be.seen[0], "\r\n\r\n{\"a\":1}"));
    assert_null(strstr(be.seen[0], "Expect:"));
    pthread_mutex_unlock(&be.lock);
    client_close(&cl);
}

static void test_chunked_interim_and_trailers(void **state)
{
    (void)state;
    struct be_step steps[] = {
        {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         "4\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n",
         0, 0},
        {OK_ANSWER(2) "ok", 0, 0},
    };
    be_script(steps, 2);
    struct client cl;
    client_open(&cl);
    struct outcome o;
    post_ok(&cl, &o, "{}");
    assert_int_equal(o.heads, 1); /* the interim head is not reported */
    assert_int_equal(o.status, 200);
    assert_int_equal(o.body.len, 9);
    assert_memory_equal(o.body.data, "wikipedia", 9);
    gw_buf_free(&o.body);
    post_ok_quiet(&cl, &o);
    assert_int_equal(atomic_load(&be.accepts), 1);
    client_close(&cl);
}

static void test_answer_to_the_end_is_not_pooled(void **state)
{
    (void)state;
    struct be_step steps[] = {
        {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", 1, 0},
        {OK_ANSWER(2) "ok", 0, 0},
    };
    be_script(steps, 2);
    struct client cl;
    client_open(&cl);
    struct outcome o;
    post_ok(&cl, &o, "{}");
    assert_int_equal(o.body.len, 13);
    gw_buf_free(&o.body);
    post_ok_quiet(&cl, &o);
    assert_int_equal(atomic_load(&be.accepts), 2);
    client_close(&cl);
}

/* The backend closes a pooled connection: it is dropped at once and never handed out. */
static void test_backend_closes_idle_connection(void **state)
{
    (void)state;
    struct be_step steps[] = {
        {OK_ANSWER(2) "ok", 1, 0},
        {OK_ANSWER(3) "two", 0, 0},
    };
    be_script(steps, 2);
    struct client cl;
    client_open(&cl);
    struct outcome o;
    post_ok_quiet(&cl, &o);
    run_for(&cl, 100); /* the close arrives while the connection idles */
    post_ok(&cl, &o, "{}");
    assert_memory_equal(o.body.data, "two", 3);
    gw_buf_free(&o.body);
    assert_int_equal(atomic_load(&be.requests), 2); /* no request was lost or sent twice */
    assert_int_equal(atomic_load(&be.accepts), 2);
    client_close(&cl);
}

/*
 * The close races the request: the backend reads the second request on the reused connection
 * and closes it without a byte. The request goes once more on a fresh connection.
 */
static void test_reused_connection_closed_unanswered_is_retried(void **state)
{
    (void)state;
    struct be_step steps[] = {
        {OK_ANSWER(2) "ok", 0, 0},
        {NULL, 1, 0},
        {OK_ANSWER(5) "again", 0, 0},
    };
    be_script(steps, 3);
    struct client cl;
    client_open(&cl);
    struct outcome o;
    post(&cl, &o, "{}");
    run_until(&cl, &o, 1, 3000);
    gw_buf_free(&o.body);
    post_ok(&cl, &o, "{}");
    assert_memory_equal(o.body.data, "again", 5);
    gw_buf_free(&o.body);
    assert_int_equal(atomic_load(&be.requests), 3);
    assert_int_equal(atomic_load(&be.accepts), 2);
    client_close(&cl);
}

/* A fresh connection closed unanswered is not retried: the backend saw the request. */
static void test_fresh_connection_closed_unanswered_fails(void **state)
{
    (void)state;
    struct be_step steps[] = {{NULL, 1, 0}, {OK_ANSWER(2) "ok", 0, 0}};
    be_script(steps, 2);
    struct client cl;
    client_open(&cl);
    struct outcome o;
    post(&cl, &o, "{}");
    run_until(&cl, &o, 1, 3000);
    assert_int_equal(o.done, 1);
    assert_int_equal(o.err, UPSTREAM_EPROTO);
    assert_int_equal(o.heads, 0);
    run_for(&cl, 50);
    assert_int_equal(atomic_load(&be.requests), 1);
    client_close(&cl);
}

static void expect_protocol_error(const char *answer, const char *detail_part)
{
    struct be_step steps[] = {{answer, 1, 0}};
    be_script(steps, 1);
    struct client cl;
    client_open(&cl);
    struct outcome o;
    post(&cl, &o, "{}");
    run_until(&cl, &o, 1, 3000);
    assert_int_equal(o.done, 1);
    assert_int_equal(o.err, UPSTREAM_EPROTO);
    if (detail_part && !strstr(o.detail, detail_part))
        fail_msg("detail \"%s\" lacks \"%s\"", o.detail, detail_part);
    gw_buf_free(&o.body);
    client_close(&cl);
}

static void test_cut_short_and_malformed_answers(void **state)
{
    (void)state;
    expect_protocol_error("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
                          "before the answer was complete");
    expect_protocol_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc",
                          "before the answer was complete");
    expect_protocol_error("SMTP ready\r\n\r\n", "malformed");
    expect_protocol_error("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
                          "malformed");
    expect_protocol_error("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n"
                          "\r\n2\r\nok\r\n0\r\n\r\n",
                          "malformed");
    expect_protocol_error("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
                          "switched protocols");
    expect_protocol_error("HTTP/1.1 200 OK\r\nContent-Len", "before the answer was complete");
}

static void test_head_bounds(void **state)
{
    (void)state;
    /* 65 header fields: one over the bound. */
    static char many[8192];
    size_t off = (size_t)snprintf(many, sizeof many, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < UPSTREAM_H1_MAX_HEADERS + 1; i++)
        off += (size_t)snprintf(many + off, sizeof many - off, "X-H%d: v\r\n", i);
    snprintf(many + off, sizeof many - off, "Content-Length: 0\r\n\r\n");
    expect_protocol_error(many, "too many");
    /* A head over 64 KiB, in one field. */
    static char big[UPSTREAM_H1_MAX_HEAD + 256];
    off = (size_t)snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(big + off, 'a', UPSTREAM_H1_MAX_HEAD);
    off += UPSTREAM_H1_MAX_HEAD;
    snprintf(big + off, sizeof big - off, "\r\nContent-Length: 0\r\n\r\n");
    expect_protocol_error(big, NULL);
    /* Exactly at the field bound passes. */
    off = (size_t)snprintf(many, sizeof many, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < UPSTREAM_H1_MAX_HEADERS - 1; i++)
        off += (size_t)snprintf(many + off, sizeof many - off, "X-H%d: v\r\n", i);
    snprintf(many + off, sizeof many - off, "Content-Length: 0\r\n\r\n");
    struct be_step steps[] = {{many, 0, 0}};
    be_script(steps, 1);
    struct client cl;
    client_open(&cl);
    struct outcome o;
    post_ok(&cl, &o, "{}");
    assert_int_equal(o.n_headers, UPSTREAM_H1_MAX_HEADERS);
    client_close(&cl);
}

static void test_connect_refused(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd); /* a port nothing listens on */
    struct client cl;
    client_open(&cl);
    snprintf(cl.url, sizeof cl.url, "http://127.0.0.1:%d/mcp", ntohs(a.sin_port));
    struct outcome o;
    assert_non_null(post(&cl, &o, "{}"));
    assert_int_equal(o.done, 0); /* never called back from inside upstream_start */
    run_until(&cl, &o, 1, 3000);
    assert_int_equal(o.done, 1);
    assert_int_equal(o.err, UPSTREAM_ECONNECT);
    assert_non_null(strstr(o.detail, "connect"));
    client_close(&cl);
}

/* A listener whose queue is full drops the handshake: the connect times out. */
static void test_connect_timeout(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(lfd, (struct sockaddr *)&a, sizeof a);
    listen(lfd, 0);
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    usleep(50 * 1000);
    struct client cl;
    client_open(&cl);
    snprintf(cl.url, sizeof cl.url, "http://127.0.0.1:%d/mcp", ntohs(a.sin_port));
    struct outcome o;
    memset(&o, 0, sizeof o);
    struct upstream_request r = {.url = cl.url,
                                 .method = GW_HTTP_POST,
                                 .body = GW_SLICE_LIT("{}"),
                                 .connect_timeout_ms = 200};
    uint64_t t0 = gw_mono_ms();
    o.call = upstream_start(cl.m, &r, &cbs, &o);
    run_until(&cl, &o, 1, 5000);
    assert_int_equal(o.done, 1);
    assert_int_equal(o.err, UPSTREAM_ETIMEOUT);
    assert_true(gw_mono_ms() - t0 >= 150);
    client_close(&cl);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(lfd);
}

static void test_pause_delivers_the_same_bytes_again(void **state)
{
    (void)state;
    struct be_step steps[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", 0, 0},
        {OK_ANSWER(2) "ok", 0, 0},
    };
    be_script(steps, 2);
    struct client cl;
    client_open(&cl);
    struct outcome o;
    memset(&o, 0, sizeof o);
    post(&cl, &o, "{}");
    o.pause_first = 1;
    run_until(&cl, &o, 1, 3000);
    assert_int_equal(o.done, 1);
    assert_int_equal(o.err, UPSTREAM_OK);
    assert_int_equal(o.paused_times, 1);
    assert_int_equal(o.body.len, 11);
    assert_memory_equal(o.body.data, "hello world", 11);
    gw_buf_free(&o.body);
    /* The paused connection went back to the pool whole. */
    post_ok_quiet(&cl, &o);
    assert_int_equal(atomic_load(&be.accepts), 1);
    client_close(&cl);
}

static void test_cancel_inside_head_and_outside(void **state)
{
    (void)state;
    struct be_step steps[] = {
        {OK_ANSWER(2) "ok", 0, 0},
        {OK_ANSWER(2) "ok", 0, 300},
        {OK_ANSWER(2) "ok", 0, 0},
    };
    be_script(steps, 3);
    struct client cl;
    client_open(&cl);
    struct outcome o;
    post(&cl, &o, "{}");
    o.cancel_in_head = 1;
    run_for(&cl, 200);
    assert_int_equal(o.heads, 1);
    assert_int_equal(o.done, 0); /* a canceled call is never called back */
    /* Canceled while waiting for the answer: nothing follows either. */
    post(&cl, &o, "{}");
    run_for(&cl, 50);
    upstream_cancel(o.call);
    run_for(&cl, 400);
    assert_int_equal(o.heads, 0);
    assert_int_equal(o.done, 0);
    assert_int_equal(upstream_multi_active(cl.m), 0);
    /* Neither connection was pooled half-read: the next call opens its own. */
    int before = atomic_load(&be.accepts);
    post_ok_quiet(&cl, &o);
    assert_int_equal(atomic_load(&be.accepts), before + 1);
    client_close(&cl);
}

/* Closing the client with a call in flight drops it quietly; the call can still be canceled. */
static void test_close_with_call_in_flight(void **state)
{
    (void)state;
    struct be_step steps[] = {{OK_ANSWER(2) "ok", 0, 300}};
    be_script(steps, 1);
    struct client cl;
    client_open(&cl);
    struct outcome o;
    post(&cl, &o, "{}");
    run_for(&cl, 50);
    struct upstream_call *c = o.call;
    upstream_multi_close(cl.m);
    run_for(&cl, 100);
    assert_int_equal(o.done, 0);
    upstream_cancel(c);
    uv_run(&cl.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&cl.loop), 0);
}

static void test_refuses_header_injection_and_strips_local_key(void **state)
{
    (void)state;
    struct be_step steps[] = {{OK_ANSWER(2) "ok", 0, 0}};
    be_script(steps, 1);
    struct client cl;
    client_open(&cl);
    struct outcome o;
    memset(&o, 0, sizeof o);
    const struct gw_header bad[] = {{GW_SLICE_LIT("X-Evil"), GW_SLICE_LIT("a\r\nInjected: 1")}};
    struct upstream_request r = {.url = cl.url,
                                 .method = GW_HTTP_POST,
                                 .body = GW_SLICE_LIT("{}"),
                                 .headers = bad,
                                 .n_headers = 1};
    assert_null(upstream_start(cl.m, &r, &cbs, &o));
    const struct gw_header bad_name[] = {{GW_SLICE_LIT("X-A: b\nC"), GW_SLICE_LIT("d")}};
    r.headers = bad_name;
    assert_null(upstream_start(cl.m, &r, &cbs, &o));
    const struct gw_header nul[] = {{GW_SLICE_LIT("X-A"), {"a\0b", 3}}};
    r.headers = nul;
    assert_null(upstream_start(cl.m, &r, &cbs, &o));
    const struct gw_header colon[] = {{GW_SLICE_LIT("X-A: b"), GW_SLICE_LIT("c")}};
    r.headers = colon;
    assert_null(upstream_start(cl.m, &r, &cbs, &o));
    const struct gw_header empty[] = {{GW_SLICE_LIT(""), GW_SLICE_LIT("c")}};
    r.headers = empty;
    assert_null(upstream_start(cl.m, &r, &cbs, &o));
    /* libcurl's path (a name to resolve) refuses the same headers before any connection. */
    const struct upstream_request named_base = {.url = "http://backend.invalid:1/mcp",
                                                .method = GW_HTTP_POST,
                                                .body = GW_SLICE_LIT("{}"),
                                                .n_headers = 1};
    const struct gw_header *const refused[] = {bad, bad_name, nul, colon, empty};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        struct upstream_request named = named_base;
        named.headers = refused[i];
        assert_null(upstream_start(cl.m, &named, &cbs, &o));
    }
    /* The local backend's key never goes to a network backend; framing is the client's. */
    const struct gw_header mixed[] = {
        {GW_SLICE_LIT(GW_LOCAL_PRINCIPAL_HEADER), GW_SLICE_LIT("someone")},
        {GW_SLICE_LIT("Content-Length"), GW_SLICE_LIT("999")},
        {GW_SLICE_LIT("Transfer-Encoding"), GW_SLICE_LIT("chunked")},
        {GW_SLICE_LIT("X-Fine"), GW_SLICE_LIT("yes")},
    };
    r.headers = mixed;
    r.n_headers = 4;
    o.call = upstream_start(cl.m, &r, &cbs, &o);
    assert_non_null(o.call);
    run_until(&cl, &o, 1, 3000);
    assert_int_equal(o.err, UPSTREAM_OK);
    gw_buf_free(&o.body);
    pthread_mutex_lock(&be.lock);
    assert_null(strcasestr(be.seen[0], GW_LOCAL_PRINCIPAL_HEADER));
    assert_null(strstr(be.seen[0], "999"));
    assert_null(strcasestr(be.seen[0], "Transfer-Encoding"));
    assert_non_null(strstr(be.seen[0], "X-Fine: yes\r\n"));
    assert_non_null(strstr(be.seen[0], "Content-Length: 2\r\n"));
    pthread_mutex_unlock(&be.lock);
    assert_int_equal(atomic_load(&be.requests), 1);
    client_close(&cl);
}

static void test_unix_socket_backend(void **state)
{
    (void)state;
    struct be_step steps[] = {{OK_ANSWER(5) "local", 0, 0}, {OK_ANSWER(2) "ok", 0, 0}};
    be_script(steps, 2);
    struct client cl;
    client_open(&cl);
    struct outcome o;
    memset(&o, 0, sizeof o);
    const struct gw_header key[] = {
        {GW_SLICE_LIT(GW_LOCAL_PRINCIPAL_HEADER), GW_SLICE_LIT("p-123")}};
    struct upstream_request r = {.url = "http://local.backend/mcp",
                                 .method = GW_HTTP_POST,
                                 .body = GW_SLICE_LIT("{}"),
                                 .headers = key,
                                 .n_headers = 1,
                                 .unix_socket = be.unix_path};
    o.call = upstream_start(cl.m, &r, &cbs, &o);
    run_until(&cl, &o, 1, 3000);
    assert_int_equal(o.err, UPSTREAM_OK);
    assert_memory_equal(o.body.data, "local", 5);
    gw_buf_free(&o.body);
    memset(&o, 0, sizeof o);
    o.call = upstream_start(cl.m, &r, &cbs, &o);
    run_until(&cl, &o, 1, 3000);
    assert_int_equal(o.err, UPSTREAM_OK);
    gw_buf_free(&o.body);
    assert_int_equal(atomic_load(&be.accepts), 1);
    pthread_mutex_lock(&be.lock);
    assert_non_null(strstr(be.seen[0], "Host: local.backend\r\n"));
    assert_non_null(strstr(be.seen[0], GW_LOCAL_PRINCIPAL_HEADER ": p-123\r\n"));
    pthread_mutex_unlock(&be.lock);
    client_close(&cl);
}

/* A pin's addresses are tried in order; the URL's name stays the Host. */
static void test_pin_tries_addresses_in_order(void **state)
{
    (void)state;
    struct be_step steps[] = {{OK_ANSWER(2) "ok", 0, 0}};
    be_script(steps, 1);
    struct client cl;
    client_open(&cl);
    char url[96], pin[128];
    snprintf(url, sizeof url, "http://backend.example:%d/mcp?x=1", be.port);
    /* 127.0.0.2 is loopback too, but nothing listens there on this port. */
    snprintf(pin, sizeof pin, "backend.example:%d:127.0.0.2,127.0.0.1", be.port);
    struct outcome o;
    memset(&o, 0, sizeof o);
    struct upstream_request r = {
        .url = url, .method = GW_HTTP_GET, .pin = pin, .connect_timeout_ms = 1000};
    o.call = upstream_start(cl.m, &r, &cbs, &o);
    run_until(&cl, &o, 1, 3000);
    assert_int_equal(o.err, UPSTREAM_OK);
    gw_buf_free(&o.body);
    pthread_mutex_lock(&be.lock);
    char want[64];
    snprintf(want, sizeof want, "Host: backend.example:%d\r\n", be.port);
    assert_non_null(strstr(be.seen[0], "GET /mcp?x=1 HTTP/1.1\r\n"));
    assert_non_null(strstr(be.seen[0], want));
    assert_null(strstr(be.seen[0], "Content-Length"));
    pthread_mutex_unlock(&be.lock);
    client_close(&cl);
}

/* Which requests the own client takes, and what it makes of them. */
static void test_target_choice(void **state)
{
    (void)state;
    struct upstream_h1_target t;
    struct upstream_request r = {0};
    r.url = "https://127.0.0.1:8443/mcp";
    assert_int_equal(upstream_h1_target(&r, &t), 0); /* TLS: libcurl */
    r.url = "http://backend.example/mcp";
    assert_int_equal(upstream_h1_target(&r, &t), 0); /* a name to resolve: libcurl */
    r.pin = "other.example:80:10.0.0.1";
    assert_int_equal(upstream_h1_target(&r, &t), 0); /* a pin for another host */
    r.pin = "backend.example:80:10.0.0.1";
    assert_int_equal(upstream_h1_target(&r, &t), 1);
    assert_string_equal(t.host, "backend.example");
    assert_string_equal(t.target, "/mcp");
    assert_int_equal(t.n_addrs, 1);
    r.pin = "backend.example:80:not-an-address";
    assert_int_equal(upstream_h1_target(&r, &t), 0);
    r.pin = NULL;
    r.url = "http://user:pw@127.0.0.1/mcp";
    assert_int_equal(upstream_h1_target(&r, &t), 0); /* userinfo: not this client's */
    r.url = "http://127.0.0.1/a b";
    assert_int_equal(upstream_h1_target(&r, &t), 0);
    r.url = "http://127.0.0.1/mcp#frag";
    assert_int_equal(upstream_h1_target(&r, &t), 0);
    r.url = "http://127.0.0.1:99999/";
    assert_int_equal(upstream_h1_target(&r, &t), 0);
    r.url = "http://127.0.0.1:/";
    assert_int_equal(upstream_h1_target(&r, &t), 0);
    r.url = "http://127.0.0.1?q=1";
    assert_int_equal(upstream_h1_target(&r, &t), 1);
    assert_string_equal(t.target, "/?q=1");
    assert_string_equal(t.host, "127.0.0.1");
    r.url = "http://[::1]:8080";
    assert_int_equal(upstream_h1_target(&r, &t), 1);
    assert_string_equal(t.host, "[::1]:8080");
    assert_string_equal(t.target, "/");
    r.url = "http://[::1]:8080/x";
    r.pin = "[::1]:8080:[::1]";
    assert_int_equal(upstream_h1_target(&r, &t), 1);
    r.pin = "::1:8080:[::1]";
    assert_int_equal(upstream_h1_target(&r, &t), 1);
    /* A unix socket takes any http URL; an endpoint that is not up is libcurl's refusal. */
    r.pin = NULL;
    r.url = "http://local.backend/mcp";
    r.unix_socket = "/run/x.sock";
    assert_int_equal(upstream_h1_target(&r, &t), 1);
    assert_string_equal(t.host, "local.backend");
    r.unix_socket = "";
    assert_int_equal(upstream_h1_target(&r, &t), 0);
}

/*
 * Each thread keeps the endpoint of the last URL it took apart: whatever order URLs, pins and
 * sockets come in, every answer is the one a first look gives, and nothing of one endpoint
 * (a pinned address, a socket) is handed to a request for another.
 */
static void test_target_memo(void **state)
{
    (void)state;
    struct {
        const char *url, *pin, *sock;
        int ok;
        const char *host, *target;
        int port; /* of the first address; 0 for a socket or a refusal */
    } cases[] = {
        {"http://127.0.0.1:9001/mcp", NULL, NULL, 1, "127.0.0.1:9001", "/mcp", 9001},
        {"http://127.0.0.1:9001/other?q", NULL, NULL, 1, "127.0.0.1:9001", "/other?q", 9001},
        {"http://127.0.0.1:9002/mcp", NULL, NULL, 1, "127.0.0.1:9002", "/mcp", 9002},
        {"http://backend.example:9001/mcp", "backend.example:9001:10.0.0.7", NULL, 1,
         "backend.example:9001", "/mcp", 9001},
        {"http://backend.example:9001/mcp", "backend.example:9001:10.0.0.8,10.0.0.9", NULL, 1,
         "backend.example:9001", "/mcp", 9001},
        {"http://backend.example:9001/mcp", NULL, NULL, 0, NULL, NULL, 0},
        {"http://backend.example:9001/mcp", NULL, "/run/a.sock", 1, "backend.example:9001", "/mcp",
         0},
        {"http://backend.example:9001/mcp", NULL, "/run/b.sock", 1, "backend.example:9001", "/mcp",
         0},
        {"http://backend.example:9001/mcp", NULL, "", 0, NULL, NULL, 0},
    };
    size_t n = sizeof cases / sizeof cases[0];
    unsigned seed = 7;
    for (int round = 0; round < 400; round++) {
        size_t i =
            (size_t)(round < (int)n ? round
                                    : (int)((seed = seed * 1103515245u + 12345u) >> 8) % (int)n);
        struct upstream_request r = {0};
        r.url = cases[i].url;
        r.pin = cases[i].pin;
        r.unix_socket = cases[i].sock;
        struct upstream_h1_target t;
        memset(&t, 0x5a, sizeof t);
        int ok = upstream_h1_target(&r, &t);
        assert_int_equal(ok, cases[i].ok);
        if (!ok)
            continue;
        assert_string_equal(t.host, cases[i].host);
        assert_string_equal(t.target, cases[i].target);
        if (cases[i].sock) {
            assert_ptr_equal(t.unix_socket, cases[i].sock);
            assert_non_null(strstr(t.key, cases[i].sock));
            continue;
        }
        assert_null(t.unix_socket);
        char a[INET6_ADDRSTRLEN];
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&t.addrs[0];
        uv_ip4_name(sin, a, sizeof a);
        assert_int_equal(ntohs(sin->sin_port), cases[i].port);
        if (cases[i].pin) {
            assert_non_null(strstr(cases[i].pin, a));
            assert_int_equal(t.n_addrs, strchr(cases[i].pin, ',') ? 2 : 1);
        } else {
            assert_string_equal(a, "127.0.0.1");
            assert_int_equal(t.n_addrs, 1);
        }
        assert_non_null(strstr(t.key, a));
    }
}

/* The reader alone: every split of an answer gives the same head and body. */
struct rd_seen {
    int heads, status;
    struct gw_buf body;
};
static int rd_head(void *arg, int status, const struct gw_header *h, size_t n)
{
    (void)h;
    (void)n;
    struct rd_seen *s = arg;
    s->heads++;
    s->status = status;
    return 0;
}
static int rd_body(void *arg, const char *d, size_t len)
{
    return gw_buf_append(&((struct rd_seen *)arg)->body, d, len) == 0 ? 0 : 1;
}

static void test_reader_any_split(void **state)
{
    (void)state;
    static const struct upstream_h1_reader_callbacks rcb = {rd_head, rd_body};
    const char *answer = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
    size_t len = strlen(answer);
    for (size_t step = 1; step <= len; step++) {
        struct upstream_h1_reader r;
        struct rd_seen s = {0};
        upstream_h1_reader_init(&r, &rcb, &s);
        size_t off = 0;
        while (off < len && r.state < UPSTREAM_H1_DONE) {
            size_t n = len - off < step ? len - off : step;
            off += upstream_h1_reader_feed(&r, answer + off, n);
        }
        assert_int_equal(r.state, UPSTREAM_H1_DONE);
        assert_int_equal(off, len);
        assert_int_equal(s.heads, 1);
        assert_int_equal(s.status, 200);
        assert_int_equal(s.body.len, 19);
        assert_memory_equal(s.body.data, "abc0123456789abcdef", 19);
        assert_true(upstream_h1_reader_keep_alive(&r));
        gw_buf_free(&s.body);
        upstream_h1_reader_free(&r);
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* the backend writes to connections the client canceled */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_length_answer_and_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_interim_and_trailers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_to_the_end_is_not_pooled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_closes_idle_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reused_connection_closed_unanswered_is_retried, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fresh_connection_closed_unanswered_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cut_short_and_malformed_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_bounds, setup, teardown),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test_setup_teardown(test_pause_delivers_the_same_bytes_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_inside_head_and_outside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_call_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_header_injection_and_strips_local_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unix_socket_backend, setup_unix, teardown),
        cmocka_unit_test_setup_teardown(test_pin_tries_addresses_in_order, setup, teardown),
        cmocka_unit_test(test_target_choice),
        cmocka_unit_test(test_target_memo),
        cmocka_unit_test(test_reader_any_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
