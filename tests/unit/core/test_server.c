/*
 * The server (src/core/server.c, conn.c) driven with a stub handler over real loopback
 * sockets: keep-alive, pipelining, bounds, and the graceful drain. The handler knows nothing
 * of the proxy, which is the point: the server serves whatever handler it is given.
 *
 * Stub routes: GET /hello/<x> answers "hello <x>"; GET /slow answers after 300 ms (a request
 * in flight during a drain); GET /stream sends three chunks, 50 ms apart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "fixtures.h"
#include "core/config.h"
#include "core/server.h"
#include "lib/log.h"
#include "lib/timeutil.h"

/* ---- the stub handler ---- */

struct delayed {
    uv_timer_t timer;
    struct gw_conn *conn;
    int step; /* stream: chunks sent so far */
    int stream;
};

static atomic_int handled;
static atomic_int aborted;

static void delayed_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_abort(void *arg)
{
    struct delayed *d = arg;
    atomic_fetch_add(&aborted, 1);
    d->conn = NULL;
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, delayed_closed);
}

static void on_delay(uv_timer_t *t)
{
    struct delayed *d = t->data;
    if (!d->stream) {
        gw_conn_set_hooks(d->conn, NULL, NULL, NULL);
        gw_conn_respond(d->conn, 200, "text/plain", "slow", 4, NULL, 0);
        gw_conn_end(d->conn, 0);
        uv_close((uv_handle_t *)t, delayed_closed);
        return;
    }
    char chunk[16];
    int n = snprintf(chunk, sizeof chunk, "part%d;", d->step);
    gw_conn_write_body(d->conn, chunk, (size_t)n);
    if (++d->step < 3) {
        uv_timer_start(t, on_delay, 50, 0);
        return;
    }
    gw_conn_set_hooks(d->conn, NULL, NULL, NULL);
    gw_conn_end(d->conn, 0);
    uv_close((uv_handle_t *)t, delayed_closed);
}

/* /burst: 64 MiB allocated on the worker, touched and freed; RSS while it was live. */
static atomic_long burst_rss;

static void stub_handle(void *ctx, struct gw_conn *c, struct http1_parser *p)
{
    (void)ctx;
    atomic_fetch_add(&handled, 1);
    if (gw_slice_eq(p->path, "/burst"))
        atomic_store(&burst_rss, fx_churn_64mib());
    if (gw_slice_eq(p->path, "/slow") || gw_slice_eq(p->path, "/stream")) {
        struct delayed *d = calloc(1, sizeof *d);
        d->conn = c;
        d->stream = gw_slice_eq(p->path, "/stream");
        uv_timer_init(gw_worker_loop(gw_conn_worker(c)), &d->timer);
        d->timer.data = d;
        gw_conn_set_hooks(c, on_abort, NULL, d);
        if (d->stream) {
            struct gw_header ct = {GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("text/plain")};
            gw_conn_write_head(c, 200, &ct, 1, -1);
        }
        uv_timer_start(&d->timer, on_delay, d->stream ? 10 : 300, 0);
        return;
    }
    char body[256];
    int n = snprintf(body, sizeof body, "hello %.*s", (int)(p->path.len > 7 ? p->path.len - 7 : 0),
                     p->path.ptr + (p->path.len > 7 ? 7 : 0));
    if (p->body.len)
        n += snprintf(body + n, sizeof body - (size_t)n, " body=%zu", p->body.len);
    gw_conn_respond(c, 200, "text/plain", body, (size_t)n, NULL, 0);
    gw_conn_end(c, 0);
}

static const struct gw_handler stub = {stub_handle, NULL};

/* ---- a server on a thread ---- */

struct running {
    struct gw_config *cfg;
    pthread_t thread;
    int port;
    int rc;
    int joined;
};

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *server_thread(void *arg)
{
    struct running *r = arg;
    r->rc = gw_server_run(r->cfg, &stub);
    gw_server_release_signals();
    return NULL;
}

static int setup(void **state)
{
    struct running *r = calloc(1, sizeof *r);
    r->port = free_port();
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "server:\n"
             "  listen: [\"127.0.0.1:%d\"]\n"
             "  workers: 1\n"
             "  limits: {max_header: 1KiB, max_body: 2KiB, header_timeout: 1s, idle_timeout: 5s,"
             " shutdown_timeout: 3s}\n",
             r->port);
    struct cfg_error err = {{0}};
    r->cfg = gw_config_load_string(yaml, "server-test", &err);
    if (!r->cfg) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    atomic_store(&handled, 0);
    atomic_store(&aborted, 0);
    pthread_create(&r->thread, NULL, server_thread, r);
    /* Ready once it accepts. */
    for (int i = 0; i < 200; i++) {
        int fd = dial(r->port);
        if (fd >= 0) {
            close(fd);
            *state = r;
            return 0;
        }
        usleep(10000);
    }
    return -1;
}

static int teardown(void **state)
{
    struct running *r = *state;
    gw_server_stop(1);
    if (!r->joined)
        pthread_join(r->thread, NULL);
    gw_config_free(r->cfg);
    free(r);
    return 0;
}

static void send_all(int fd, const char *s)
{
    size_t len = strlen(s);
    assert_int_equal(write(fd, s, len), (ssize_t)len);
}

/* Reads until `want` bytes arrived or the peer closed; returns what came (NUL-terminated). */
static size_t read_some(int fd, char *buf, size_t cap, size_t want)
{
    size_t got = 0;
    while (got < want && got + 1 < cap) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    return got;
}

/* Reads one whole answer with a Content-Length; returns its status, copies its body. */
static int read_answer(int fd, char *body, size_t cap)
{
    char buf[4096] = "";
    size_t got = 0;
    char *end = NULL;
    while (!(end = strstr(buf, "\r\n\r\n"))) {
        ssize_t n = read(fd, buf + got, 1);
        if (n <= 0)
            return -1;
        got += (size_t)n;
        buf[got] = '\0';
    }
    int status = atoi(buf + 9);
    const char *cl = strcasestr(buf, "Content-Length: ");
    size_t len = cl ? (size_t)atol(cl + 16) : 0;
    assert_true(len < cap);
    size_t have = 0;
    while (have < len) {
        ssize_t n = read(fd, body + have, len - have);
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
    body[len] = '\0';
    return status;
}

static int peer_closed(int fd)
{
    char c;
    return read(fd, &c, 1) == 0;
}

/* ---- tests ---- */

static void test_keep_alive(void **state)
{
    struct running *r = *state;
    int fd = dial(r->port);
    char body[256];
    send_all(fd, "GET /hello/one HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_answer(fd, body, sizeof body), 200);
    assert_string_equal(body, "hello one");
    send_all(fd, "POST /hello/two HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde");
    assert_int_equal(read_answer(fd, body, sizeof body), 200);
    assert_string_equal(body, "hello two body=5");
    assert_int_equal(atomic_load(&handled), 2);
    /* Connection: close is honoured: the server closes after the answer. */
    send_all(fd, "GET /hello/three HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_int_equal(read_answer(fd, body, sizeof body), 200);
    assert_true(peer_closed(fd));
    close(fd);
}

static void test_pipelining_in_order(void **state)
{
    struct running *r = *state;
    int fd = dial(r->port);
    /* The slow request first: the fast ones behind it must wait for its answer. */
    send_all(fd, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /hello/a HTTP/1.1\r\nHost: t\r\n\r\n"
                 "GET /hello/b HTTP/1.1\r\nHost: t\r\n\r\n");
    char body[256];
    assert_int_equal(read_answer(fd, body, sizeof body), 200);
    assert_string_equal(body, "slow");
    assert_int_equal(read_answer(fd, body, sizeof body), 200);
    assert_string_equal(body, "hello a");
    assert_int_equal(read_answer(fd, body, sizeof body), 200);
    assert_string_equal(body, "hello b");
    close(fd);
}

static void test_streamed_answer_is_chunked(void **state)
{
    struct running *r = *state;
    int fd = dial(r->port);
    send_all(fd, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    char buf[2048] = "";
    size_t n = 0;
    while (!strstr(buf, "0\r\n\r\n")) {
        size_t got = read_some(fd, buf + n, sizeof buf - n, 1);
        if (got == 0)
            break;
        n += got;
    }
    assert_non_null(strstr(buf, "Transfer-Encoding: chunked"));
    assert_non_null(strstr(buf, "6\r\npart0;\r\n"));
    assert_non_null(strstr(buf, "6\r\npart2;\r\n0\r\n\r\n"));
    close(fd);
}

static void test_bounds(void **state)
{
    struct running *r = *state;
    char buf[2048];
    /* A head over max_header (1 KiB): 431, and the connection closes. */
    int fd = dial(r->port);
    char big[1500];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char req[1700];
    snprintf(req, sizeof req, "GET /hello/x HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n", big);
    send_all(fd, req);
    read_some(fd, buf, sizeof buf, sizeof buf);
    assert_true(strncmp(buf, "HTTP/1.1 431 ", 13) == 0);
    close(fd);
    /* A body over max_body (2 KiB) by Content-Length: 413. */
    fd = dial(r->port);
    send_all(fd, "POST /hello/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n");
    read_some(fd, buf, sizeof buf, sizeof buf);
    assert_true(strncmp(buf, "HTTP/1.1 413 ", 13) == 0);
    close(fd);
    /* Garbage: 400. */
    fd = dial(r->port);
    send_all(fd, "BLAH\x01 / HTTP/1.1\r\n\r\n");
    read_some(fd, buf, sizeof buf, sizeof buf);
    assert_true(strncmp(buf, "HTTP/1.1 400 ", 13) == 0);
    close(fd);
    /* A head that never completes: 408 after header_timeout (1 s). */
    fd = dial(r->port);
    send_all(fd, "GET /hello/x HTTP/1.1\r\nHost: t\r\n");
    uint64_t t0 = gw_mono_ms();
    read_some(fd, buf, sizeof buf, sizeof buf);
    assert_true(strncmp(buf, "HTTP/1.1 408 ", 13) == 0);
    assert_true(gw_mono_ms() - t0 >= 900);
    close(fd);
    /* None of these reached the handler. */
    assert_int_equal(atomic_load(&handled), 0);
}

static void test_drain_lets_in_flight_finish(void **state)
{
    struct running *r = *state;
    int busy = dial(r->port);
    int idle = dial(r->port);
    send_all(busy, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    /* Let the request reach the handler before the drain starts. */
    for (int i = 0; i < 100 && atomic_load(&handled) == 0; i++)
        usleep(5000);
    assert_int_equal(atomic_load(&handled), 1);
    gw_server_stop(0);
    /* The idle keep-alive connection goes at once. */
    assert_true(peer_closed(idle));
    close(idle);
    /* The request in flight still gets its answer, with Connection: close. */
    char buf[1024];
    read_some(busy, buf, sizeof buf, sizeof buf);
    assert_true(strncmp(buf, "HTTP/1.1 200 ", 13) == 0);
    assert_non_null(strstr(buf, "Connection: close"));
    assert_non_null(strstr(buf, "\r\n\r\nslow"));
    close(busy);
    /* The server returns 0 once drained, and no longer accepts. */
    pthread_join(r->thread, NULL);
    r->joined = 1;
    assert_int_equal(r->rc, 0);
    assert_int_equal(dial(r->port), -1);
    assert_int_equal(atomic_load(&aborted), 0);
}

/* The memory of a burst does not stay resident once the worker has been quiet for a second:
 * the worker gives its allocator's free memory back (mimalloc would otherwise keep it for
 * reuse). Glibc's allocator and ASan's manage their own; the request is served all the same. */
static void test_quiet_worker_returns_memory(void **state)
{
    struct running *r = *state;
    int fd = dial(r->port);
    char body[256];
    send_all(fd, "GET /burst HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_answer(fd, body, sizeof body), 200);
    long live = atomic_load(&burst_rss);
    assert_true(live > 64 * 1024);
    long quiet = -1;
    /* A tick sees the request, the next finds a quiet second: within about 2 s. */
    for (int i = 0; i < 40; i++) {
        usleep(100 * 1000);
        quiet = fx_rss_kib();
        if (live - quiet >= 48 * 1024)
            break;
    }
#ifdef TOOLGATE_MIMALLOC
    assert_true(live - quiet >= 48 * 1024);
#endif
    /* The connection still serves after the collection. */
    send_all(fd, "GET /hello/after HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(read_answer(fd, body, sizeof body), 200);
    assert_string_equal(body, "hello after");
    close(fd);
}

int main(void)
{
    gw_log_setup(GW_LOG_ERROR, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keep_alive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelining_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streamed_answer_is_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quiet_worker_returns_memory, setup, teardown),
        /* Last: a drained server does not start again in this process. */
        cmocka_unit_test_setup_teardown(test_drain_lets_in_flight_finish, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
