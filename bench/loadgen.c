/*
 * loadgen: an open-loop (fixed-rate) HTTP/1.1 load generator for bench/run.sh.
 *
 *   loadgen -u http://HOST:PORT/PATH -r RATE -c CONNECTIONS -d SECONDS [-w WARMUP_SECONDS]
 *           [-t TIMEOUT_SECONDS] [-H "Name: value"]... [-b BODY | -B BODY_FILE]
 *
 * Request i is due at start + i / RATE, whatever happened to the requests before it. It goes
 * out on the first of CONNECTIONS keep-alive connections that is free; when none is, it waits
 * in line. Its latency is measured from the time it was due, not from the time it was written,
 * so a server that stalls is charged for every request that should have been sent during the
 * stall (no coordinated omission: a closed-loop generator like wrk sends nothing while its
 * connections wait and reports only the few slow requests). Requests due during the warm-up
 * are sent but not counted.
 *
 * Each request is a POST of BODY to PATH with the -H headers (Host, Content-Type
 * application/json and Content-Length are added unless given). Responses are delimited by
 * Content-Length or chunked encoding; a 2xx status counts as ok, anything else as a status
 * error. Latencies go into a log-linear histogram (1/64 relative precision, 1 ns to 2^40 ns).
 *
 * At the end it prints one line that bench/run.sh parses:
 *
 *   BENCH_RESULT rate=F due=N sent=N completed=N ok=N duration_us=N achieved_rps=F
 *                p50_us=F p90_us=F p99_us=F p999_us=F max_us=F
 *                errors_connect=N errors_read=N errors_status=N errors_timeout=N errors_unsent=N
 *                send_lag_p99_us=F send_lag_max_us=F sent_all=N cpu_us=N
 *
 * "send_lag" is how long after its due time a request was written: when it is large the
 * connections (or this process) were the bottleneck, and the latencies include that wait.
 * "sent_all" counts the warm-up's requests too (for CPU per request over the whole run). Exit
 * status 0 when the run completed (whatever the errors), 1 when it could not run, 2 on bad
 * arguments. Everything is bounded: rate, connections, duration, request size, response head,
 * per-request timeout, and the drain after the last request is due.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define LG_MAX_RATE 1000000
#define LG_MAX_CONNS 10000
#define LG_MAX_DURATION 3600
#define LG_MAX_WARMUP 600
#define LG_MAX_HEADERS 32
#define LG_MAX_REQUEST 65536   /* bytes of the whole request */
#define LG_MAX_HEAD 16384      /* bytes of a response's status line and headers */
#define LG_MAX_BODY (64 << 20) /* bytes of one response body */
#define LG_CONNECT_TIMEOUT_NS (5 * 1000000000LL)
#define LG_DRAIN_NS (5 * 1000000000LL) /* after the last request is due */

/* ------------------------------------------------------------------------------------------ */
/* Log-linear histogram of nanoseconds: values below 2^SUB_BITS exactly, above that 2^(SUB_BITS
 * - 1) linear buckets per power of two, so every bucket is at most 1/64 of its value wide. */

#define HIST_SUB_BITS 7
#define HIST_SUB (1 << HIST_SUB_BITS)
#define HIST_HALF (HIST_SUB / 2)
#define HIST_MAX_BIT 40 /* 2^40 ns is about 18 minutes; longer values are clamped */
#define HIST_BUCKETS (HIST_SUB + (HIST_MAX_BIT - HIST_SUB_BITS + 1) * HIST_HALF)

struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
};

static size_t hist_index(uint64_t v)
{
    if (v >= (1ULL << (HIST_MAX_BIT + 1)))
        v = (1ULL << (HIST_MAX_BIT + 1)) - 1;
    if (v < HIST_SUB)
        return (size_t)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - (HIST_SUB_BITS - 1);
    uint64_t sub = v >> shift; /* HIST_HALF .. HIST_SUB - 1 */
    return HIST_SUB + (size_t)(shift - 1) * HIST_HALF + (size_t)(sub - HIST_HALF);
}

/* The highest value bucket i holds: a percentile is never reported lower than it was. */
static uint64_t hist_upper(size_t i)
{
    if (i < HIST_SUB)
        return i;
    size_t shift = (i - HIST_SUB) / HIST_HALF + 1;
    uint64_t sub = (i - HIST_SUB) % HIST_HALF + HIST_HALF;
    return ((sub + 1) << shift) - 1;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

/* The value at or below which a fraction p of the samples lie (0 when there are none). */
static uint64_t hist_percentile(const struct hist *h, double p)
{
    if (h->total == 0)
        return 0;
    uint64_t rank = (uint64_t)(p * (double)h->total + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank)
            return hist_upper(i) < h->max ? hist_upper(i) : h->max;
    }
    return h->max;
}

/* ------------------------------------------------------------------------------------------ */

enum conn_state { CONN_CONNECTING, CONN_IDLE, CONN_WRITING, CONN_READING, CONN_CLOSED };
enum resp_state {
    RESP_HEAD,
    RESP_BODY,
    RESP_CHUNK_SIZE,
    RESP_CHUNK_DATA,
    RESP_CHUNK_CRLF,
    RESP_TRAILER
};

struct conn {
    int fd;
    enum conn_state state;
    size_t index;       /* position in the idle ring while idle */
    int64_t due_ns;     /* when the request in flight was due */
    int64_t written_ns; /* when its first byte was written */
    size_t sent;        /* bytes of the request written */
    enum resp_state resp;
    char head[LG_MAX_HEAD];
    size_t head_len;
    int status;
    int close_after;    /* the server said Connection: close */
    uint64_t remaining; /* body or chunk bytes still to come */
    uint64_t body_seen;
    char line[40]; /* a chunk-size or trailer line */
    size_t line_len;
};

struct loadgen {
    struct sockaddr_in addr;
    char request[LG_MAX_REQUEST];
    size_t request_len;
    double rate;
    long n_conns;
    int64_t warmup_ns, duration_ns, timeout_ns;
    int64_t start_ns, measure_ns, end_ns;
    struct conn *conns;
    struct conn **idle; /* ring of idle connections, FIFO so the load is spread over all */
    size_t idle_head, idle_count;
    int ep, timer;
    int64_t armed_ns; /* what the timer is set to; 0 = disarmed */
    uint64_t next;    /* index of the next request to send */
    uint64_t due, sent, completed, ok;
    uint64_t e_connect, e_read, e_status, e_timeout;
    struct hist latency, send_lag;
};

static volatile sig_atomic_t lg_stop;

static void lg_on_signal(int sig)
{
    (void)sig;
    lg_stop = 1;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t due_of(const struct loadgen *g, uint64_t i)
{
    return g->start_ns + (int64_t)((double)i * 1e9 / g->rate);
}

/* The index of the first request due at or after t. */
static uint64_t first_due_at(const struct loadgen *g, int64_t t)
{
    double x = (double)(t - g->start_ns) * g->rate / 1e9;
    uint64_t i = x > 2 ? (uint64_t)x - 2 : 0;
    while (due_of(g, i) < t)
        i++;
    return i;
}

static void idle_push(struct loadgen *g, struct conn *c)
{
    g->idle[(g->idle_head + g->idle_count) % (size_t)g->n_conns] = c;
    g->idle_count++;
    c->state = CONN_IDLE;
}

static struct conn *idle_pop(struct loadgen *g)
{
    if (g->idle_count == 0)
        return NULL;
    struct conn *c = g->idle[g->idle_head];
    g->idle_head = (g->idle_head + 1) % (size_t)g->n_conns;
    g->idle_count--;
    return c;
}

static int conn_open(struct loadgen *g, struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (const struct sockaddr *)&g->addr, sizeof g->addr) != 0 &&
        errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(g->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->state = CONN_CONNECTING;
    return 0;
}

static void conn_close(struct loadgen *g, struct conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(g->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = CONN_CLOSED;
}

/*
 * A connection that failed or was closed by the server: the request on it (if any) is an error
 * of the given kind, and a new connection takes its place (it joins the idle ring once connected).
 */
static void conn_fail(struct loadgen *g, struct conn *c, uint64_t *counter)
{
    int in_flight = c->state == CONN_WRITING || c->state == CONN_READING;
    if (in_flight && c->due_ns >= g->measure_ns && counter)
        (*counter)++;
    conn_close(g, c);
    if (!lg_stop && conn_open(g, c) != 0)
        g->e_connect++;
}

static void conn_set_events(struct loadgen *g, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes what is left of the request; 0 when all is written or the socket is full, -1 on error. */
static int conn_write(struct loadgen *g, struct conn *c)
{
    while (c->sent < g->request_len) {
        ssize_t n = send(c->fd, g->request + c->sent, g->request_len - c->sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            conn_set_events(g, c, EPOLLIN | EPOLLOUT);
            return 0;
        }
        if (n <= 0)
            return -1;
        c->sent += (size_t)n;
    }
    c->state = CONN_READING;
    conn_set_events(g, c, EPOLLIN);
    return 0;
}

static void conn_send(struct loadgen *g, struct conn *c, int64_t due, int64_t now)
{
    c->due_ns = due;
    c->written_ns = now;
    c->sent = 0;
    c->resp = RESP_HEAD;
    c->head_len = 0;
    c->status = 0;
    c->close_after = 0;
    c->remaining = 0;
    c->body_seen = 0;
    c->line_len = 0;
    c->state = CONN_WRITING;
    g->sent++;
    if (due >= g->measure_ns)
        hist_add(&g->send_lag, (uint64_t)(now - due));
    if (conn_write(g, c) != 0)
        conn_fail(g, c, &g->e_read);
}

/* Case-insensitive: does the header line [p, p+n) have the name `name` (with its colon)? */
static const char *header_value(const char *p, size_t n, const char *name)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(p, name, k) != 0)
        return NULL;
    p += k;
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/*
 * Parses the status line and the headers in c->head (ending in CRLF CRLF). Returns 0, or -1
 * when the response cannot be delimited or is not HTTP/1.x.
 */
static int parse_head(struct conn *c)
{
    const char *h = c->head, *end = c->head + c->head_len - 2;
    if (c->head_len < 12 || memcmp(h, "HTTP/1.", 7) != 0 || h[8] != ' ')
        return -1;
    if (h[9] < '1' || h[9] > '5' || h[10] < '0' || h[10] > '9' || h[11] < '0' || h[11] > '9')
        return -1;
    c->status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
    int have_length = 0, chunked = 0;
    uint64_t length = 0;
    const char *p = memmem(h, (size_t)(end - h), "\r\n", 2);
    while (p && p + 2 < end) {
        p += 2;
        const char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
        if (!eol)
            return -1;
        size_t n = (size_t)(eol - p);
        const char *v;
        if ((v = header_value(p, n, "content-length:")) != NULL) {
            char *stop;
            errno = 0;
            unsigned long long len = strtoull(v, &stop, 10);
            if (stop == v || errno != 0 || len > LG_MAX_BODY || (have_length && len != length))
                return -1;
            have_length = 1;
            length = len;
        } else if ((v = header_value(p, n, "transfer-encoding:")) != NULL) {
            if (memmem(v, (size_t)(eol - v), "chunked", 7) == NULL)
                return -1;
            chunked = 1;
        } else if ((v = header_value(p, n, "connection:")) != NULL) {
            if (memmem(v, (size_t)(eol - v), "close", 5) != NULL)
                c->close_after = 1;
        }
        p = eol;
    }
    if (c->status < 200 || c->status == 204 || c->status == 304) {
        /* No body; an informational answer (100) is not expected: we send no Expect. */
        if (c->status < 200)
            return -1;
        c->resp = RESP_BODY;
        c->remaining = 0;
        return 0;
    }
    if (chunked) {
        c->resp = RESP_CHUNK_SIZE;
        c->line_len = 0;
        return 0;
    }
    if (!have_length)
        return -1; /* a keep-alive response without a length cannot be delimited */
    c->resp = RESP_BODY;
    c->remaining = length;
    return 0;
}

/* A line of a chunked body is complete in c->line: a chunk size (with extensions) or a trailer. */
static int chunk_size_line(struct conn *c)
{
    uint64_t size = 0;
    size_t i = 0;
    for (; i < c->line_len; i++) {
        char ch = c->line[i];
        int d = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (d < 0)
            break;
        size = size * 16 + (uint64_t)d;
        if (size > LG_MAX_BODY)
            return -1;
    }
    if (i == 0 || (i < c->line_len && c->line[i] != ';' && c->line[i] != ' '))
        return -1;
    c->body_seen += size;
    if (c->body_seen > LG_MAX_BODY)
        return -1;
    c->remaining = size;
    c->resp = size == 0 ? RESP_TRAILER : RESP_CHUNK_DATA;
    c->line_len = 0;
    return 0;
}

/*
 * Feeds bytes of a response. Returns the number consumed; sets *done when the response is
 * complete (the bytes after it, if any, are left), or returns -1 when it is malformed.
 */
static ssize_t feed(struct conn *c, const char *buf, size_t len, int *done)
{
    size_t i = 0;
    *done = 0;
    while (i < len && !*done) {
        switch (c->resp) {
        case RESP_HEAD:
            while (i < len) {
                if (c->head_len == LG_MAX_HEAD)
                    return -1;
                c->head[c->head_len++] = buf[i++];
                if (c->head_len >= 4 && memcmp(c->head + c->head_len - 4, "\r\n\r\n", 4) == 0) {
                    if (parse_head(c) != 0)
                        return -1;
                    break;
                }
            }
            if (c->resp == RESP_BODY && c->remaining == 0)
                *done = 1;
            break;
        case RESP_BODY:
        case RESP_CHUNK_DATA: {
            size_t take = len - i < c->remaining ? len - i : (size_t)c->remaining;
            i += take;
            c->remaining -= take;
            if (c->remaining == 0) {
                if (c->resp == RESP_BODY)
                    *done = 1;
                else
                    c->resp = RESP_CHUNK_CRLF, c->line_len = 0;
            }
            break;
        }
        case RESP_CHUNK_CRLF:
            /* The CRLF after a chunk's data. */
            if (buf[i] != (c->line_len == 0 ? '\r' : '\n'))
                return -1;
            i++;
            if (++c->line_len == 2) {
                c->resp = RESP_CHUNK_SIZE;
                c->line_len = 0;
            }
            break;
        case RESP_CHUNK_SIZE:
        case RESP_TRAILER: {
            char ch = buf[i++];
            if (ch == '\n') {
                if (c->line_len == 0 || c->line[c->line_len - 1] != '\r')
                    return -1;
                c->line_len--;
                if (c->resp == RESP_CHUNK_SIZE) {
                    if (chunk_size_line(c) != 0)
                        return -1;
                } else if (c->line_len == 0) {
                    *done = 1; /* the empty line after the last chunk (and any trailers) */
                } else {
                    c->line_len = 0; /* a trailer field, skipped */
                }
                break;
            }
            if (c->line_len == sizeof c->line) {
                if (c->resp == RESP_CHUNK_SIZE)
                    return -1;
                c->line_len = 1; /* a long trailer: only its end matters */
                c->line[0] = 'x';
            }
            c->line[c->line_len++] = ch;
            break;
        }
        }
    }
    return (ssize_t)i;
}

static void on_response(struct loadgen *g, struct conn *c, int64_t now)
{
    if (c->due_ns >= g->measure_ns) {
        g->completed++;
        hist_add(&g->latency, (uint64_t)(now - c->due_ns));
        if (c->status >= 200 && c->status < 300)
            g->ok++;
        else
            g->e_status++;
    }
    if (c->close_after) {
        conn_close(g, c);
        if (!lg_stop && conn_open(g, c) != 0)
            g->e_connect++;
        return;
    }
    idle_push(g, c);
}

static void conn_event(struct loadgen *g, struct conn *c, uint32_t events, int64_t now)
{
    if (c->state == CONN_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if ((events & (EPOLLERR | EPOLLHUP)) ||
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            g->e_connect++;
            conn_close(g, c);
            return; /* not reopened: a server that refuses connections ends the run below */
        }
        conn_set_events(g, c, EPOLLIN);
        idle_push(g, c);
        return;
    }
    if (c->state == CONN_WRITING && (events & EPOLLOUT)) {
        if (conn_write(g, c) != 0) {
            conn_fail(g, c, &g->e_read);
            return;
        }
    }
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;
    char buf[65536];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0 || c->state != CONN_READING) {
            /* Closed by the server, a socket error, or bytes nobody asked for. */
            conn_fail(g, c, &g->e_read);
            return;
        }
        int done = 0;
        ssize_t used = feed(c, buf, (size_t)n, &done);
        if (used < 0 || (done && used != n)) {
            conn_fail(g, c, &g->e_read);
            return;
        }
        if (done) {
            on_response(g, c, now);
            return;
        }
    }
}

/* Sends every request that is due on the idle connections; the rest wait for one. */
static void send_due(struct loadgen *g, int64_t now)
{
    for (;;) {
        int64_t due = due_of(g, g->next);
        if (due > now || due >= g->end_ns)
            return;
        struct conn *c = idle_pop(g);
        if (!c)
            return;
        g->next++;
        conn_send(g, c, due, now);
    }
}

/* Arms the timer for the next due request, when a connection is free to take it. */
static void arm_timer(struct loadgen *g)
{
    struct itimerspec its = {0};
    int64_t due = due_of(g, g->next), want = 0;
    if (g->idle_count > 0 && due < g->end_ns)
        want = due > 0 ? due : 1;
    if (want == g->armed_ns)
        return;
    g->armed_ns = want;
    if (want) {
        its.it_value.tv_sec = due / 1000000000LL;
        its.it_value.tv_nsec = due % 1000000000LL;
        if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
            its.it_value.tv_nsec = 1;
    }
    timerfd_settime(g->timer, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Requests in flight longer than the timeout: errors, and their connections are replaced. */
static void expire(struct loadgen *g, int64_t now)
{
    for (long i = 0; i < g->n_conns; i++) {
        struct conn *c = &g->conns[i];
        if ((c->state == CONN_WRITING || c->state == CONN_READING) &&
            now - c->written_ns > g->timeout_ns)
            conn_fail(g, c, &g->e_timeout);
    }
}

static size_t in_flight(const struct loadgen *g)
{
    size_t n = 0;
    for (long i = 0; i < g->n_conns; i++)
        if (g->conns[i].state == CONN_WRITING || g->conns[i].state == CONN_READING)
            n++;
    return n;
}

static size_t open_count(const struct loadgen *g)
{
    size_t n = 0;
    for (long i = 0; i < g->n_conns; i++)
        if (g->conns[i].state != CONN_CLOSED)
            n++;
    return n;
}

static int run(struct loadgen *g)
{
    struct epoll_event evs[256];
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(g->ep, EPOLL_CTL_ADD, g->timer, &tev) != 0)
        return -1;

    /* Every connection is established before the schedule starts. */
    for (long i = 0; i < g->n_conns; i++) {
        if (conn_open(g, &g->conns[i]) != 0) {
            fprintf(stderr, "loadgen: cannot open connection %ld: %s\n", i + 1, strerror(errno));
            return -1;
        }
    }
    int64_t limit = now_ns() + LG_CONNECT_TIMEOUT_NS;
    while (g->idle_count < (size_t)g->n_conns && !lg_stop) {
        if (open_count(g) < (size_t)g->n_conns || now_ns() > limit) {
            fprintf(stderr, "loadgen: only %zu of %ld connections to %s:%u established\n",
                    g->idle_count, g->n_conns, inet_ntoa(g->addr.sin_addr),
                    ntohs(g->addr.sin_port));
            return -1;
        }
        int n = epoll_wait(g->ep, evs, 256, 100);
        for (int i = 0; i < n; i++)
            if (evs[i].data.ptr)
                conn_event(g, evs[i].data.ptr, evs[i].events, now_ns());
    }
    g->e_connect = 0;

    g->start_ns = now_ns();
    g->measure_ns = g->start_ns + g->warmup_ns;
    g->end_ns = g->measure_ns + g->duration_ns;
    int64_t last_expire = g->start_ns;
    for (;;) {
        int64_t now = now_ns();
        if (lg_stop)
            break;
        /* Done when every request due before the end was sent and answered (a late wake-up
         * still sends what was due), or when the drain time is over. */
        if (now >= g->end_ns && ((due_of(g, g->next) >= g->end_ns && in_flight(g) == 0) ||
                                 now >= g->end_ns + LG_DRAIN_NS))
            break;
        if (open_count(g) == 0) {
            fprintf(stderr, "loadgen: every connection failed; the server does not accept any\n");
            break;
        }
        send_due(g, now);
        arm_timer(g);
        int n = epoll_wait(g->ep, evs, 256, 100);
        now = now_ns();
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                uint64_t ticks;
                if (read(g->timer, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
                    return -1;
                g->armed_ns = 0; /* fired: a one-shot timer is disarmed */
                continue;
            }
            conn_event(g, evs[i].data.ptr, evs[i].events, now);
        }
        if (now - last_expire > 100000000LL) {
            expire(g, now);
            last_expire = now;
        }
    }
    /* Requests still in flight at the end of the drain count as timeouts. */
    for (long i = 0; i < g->n_conns; i++) {
        struct conn *c = &g->conns[i];
        if ((c->state == CONN_WRITING || c->state == CONN_READING) && c->due_ns >= g->measure_ns)
            g->e_timeout++;
        conn_close(g, c);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Arguments. */

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* A header line "Name: value": a token name, no control characters (no CR/LF) in the value. */
static int header_ok(const char *h)
{
    const char *colon = strchr(h, ':');
    if (!colon || colon == h)
        return 0;
    for (const char *p = h; p < colon; p++)
        if (*p <= ' ' || *p >= 127 || strchr("()<>@,;:\\\"/[]?={}", *p))
            return 0;
    for (const char *p = colon + 1; *p; p++)
        if ((unsigned char)*p < ' ' && *p != '\t')
            return 0;
    return 1;
}

static int has_header(char *const *headers, int n, const char *name)
{
    size_t k = strlen(name);
    for (int i = 0; i < n; i++)
        if (strncasecmp(headers[i], name, k) == 0 && headers[i][k] == ':')
            return 1;
    return 0;
}

static int appendf(struct loadgen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int appendf(struct loadgen *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g->request + g->request_len, sizeof g->request - g->request_len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof g->request - g->request_len)
        return -1;
    g->request_len += (size_t)n;
    return 0;
}

static char *read_body_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "loadgen: cannot read %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(LG_MAX_REQUEST);
    size_t n = buf ? fread(buf, 1, LG_MAX_REQUEST, f) : 0;
    fclose(f);
    if (!buf || n == LG_MAX_REQUEST) {
        fprintf(stderr, "loadgen: %s: the body must be under %d bytes\n", path, LG_MAX_REQUEST);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen -u http://HOST:PORT/PATH -r RATE -c CONNECTIONS -d SECONDS\n"
            "               [-w WARMUP_SECONDS] [-t TIMEOUT_SECONDS] [-H 'Name: value']...\n"
            "               [-b BODY | -B BODY_FILE]\n"
            "  HOST is a numeric IPv4 address; RATE 1..%d requests/s; CONNECTIONS 1..%d;\n"
            "  SECONDS 1..%d; WARMUP 0..%d (default 1); TIMEOUT 1..60 (default 10)\n",
            LG_MAX_RATE, LG_MAX_CONNS, LG_MAX_DURATION, LG_MAX_WARMUP);
}

/* Splits http://A.B.C.D:PORT/PATH; the path points into url. */
static int parse_url(const char *url, struct sockaddr_in *addr, const char **path)
{
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    const char *host = url + 7, *colon = strchr(host, ':');
    if (!colon || colon - host > 15)
        return -1;
    char ip[16];
    memcpy(ip, host, (size_t)(colon - host));
    ip[colon - host] = '\0';
    const char *slash = strchr(colon, '/');
    if (!slash)
        return -1;
    char port[8];
    if (slash - colon - 1 < 1 || slash - colon - 1 > 5)
        return -1;
    memcpy(port, colon + 1, (size_t)(slash - colon - 1));
    port[slash - colon - 1] = '\0';
    long p;
    if (parse_long(port, 1, 65535, &p) != 0 || inet_pton(AF_INET, ip, &addr->sin_addr) != 1)
        return -1;
    for (const char *s = slash; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 127)
            return -1;
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)p);
    *path = slash;
    return 0;
}

#ifndef LOADGEN_NO_MAIN /* tests/fuzz/fuzz_loadgen.c includes this file for its parser */
int main(int argc, char **argv)
{
    static struct loadgen g;
    const char *url = NULL, *path = NULL, *body_arg = NULL, *body_file = NULL;
    char *headers[LG_MAX_HEADERS];
    int n_headers = 0, opt;
    long rate = 0, conns = 0, duration = 0, warmup = 1, timeout = 10;
    while ((opt = getopt(argc, argv, "u:r:c:d:w:t:H:b:B:")) != -1) {
        switch (opt) {
        case 'u':
            url = optarg;
            break;
        case 'r':
            if (parse_long(optarg, 1, LG_MAX_RATE, &rate) != 0)
                goto bad;
            break;
        case 'c':
            if (parse_long(optarg, 1, LG_MAX_CONNS, &conns) != 0)
                goto bad;
            break;
        case 'd':
            if (parse_long(optarg, 1, LG_MAX_DURATION, &duration) != 0)
                goto bad;
            break;
        case 'w':
            if (parse_long(optarg, 0, LG_MAX_WARMUP, &warmup) != 0)
                goto bad;
            break;
        case 't':
            if (parse_long(optarg, 1, 60, &timeout) != 0)
                goto bad;
            break;
        case 'H':
            if (n_headers == LG_MAX_HEADERS || !header_ok(optarg)) {
                fprintf(stderr,
                        "loadgen: -H \"%.60s\": at most %d headers \"Name: value\", no "
                        "control characters\n",
                        optarg, LG_MAX_HEADERS);
                return 2;
            }
            headers[n_headers++] = optarg;
            break;
        case 'b':
            body_arg = optarg;
            break;
        case 'B':
            body_file = optarg;
            break;
        default:
            goto bad;
        }
    }
    if (optind != argc || !url || rate == 0 || conns == 0 || duration == 0 ||
        (body_arg && body_file))
        goto bad;
    if (parse_url(url, &g.addr, &path) != 0) {
        fprintf(stderr, "loadgen: -u %s: expected http://A.B.C.D:PORT/PATH\n", url);
        return 2;
    }

    size_t body_len = 0;
    char *body = NULL;
    if (body_file) {
        if (!(body = read_body_file(body_file, &body_len)))
            return 2;
    } else if (body_arg) {
        body_len = strlen(body_arg);
    }
    const char *body_bytes = body ? body : body_arg ? body_arg : "";
    int ok = appendf(&g, "POST %s HTTP/1.1\r\n", path) == 0;
    if (ok && !has_header(headers, n_headers, "Host"))
        ok =
            appendf(&g, "Host: %s:%u\r\n", inet_ntoa(g.addr.sin_addr), ntohs(g.addr.sin_port)) == 0;
    if (ok && !has_header(headers, n_headers, "Content-Type"))
        ok = appendf(&g, "Content-Type: application/json\r\n") == 0;
    for (int i = 0; ok && i < n_headers; i++)
        ok = appendf(&g, "%s\r\n", headers[i]) == 0;
    if (ok && !has_header(headers, n_headers, "Content-Length"))
        ok = appendf(&g, "Content-Length: %zu\r\n", body_len) == 0;
    ok = ok && appendf(&g, "\r\n") == 0 && g.request_len + body_len <= sizeof g.request;
    if (ok) {
        memcpy(g.request + g.request_len, body_bytes, body_len);
        g.request_len += body_len;
    }
    free(body);
    body = NULL;
    if (!ok) {
        fprintf(stderr, "loadgen: the request is over %d bytes\n", LG_MAX_REQUEST);
        return 2;
    }

    g.rate = (double)rate;
    g.n_conns = conns;
    g.warmup_ns = warmup * 1000000000LL;
    g.duration_ns = duration * 1000000000LL;
    g.timeout_ns = timeout * 1000000000LL;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)conns + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)conns + 64 ? rl.rlim_max : (rlim_t)conns + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGTERM, lg_on_signal);
    signal(SIGINT, lg_on_signal);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    g.conns = calloc((size_t)conns, sizeof *g.conns);
    g.idle = calloc((size_t)conns, sizeof *g.idle);
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    g.timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!g.conns || !g.idle || g.ep < 0 || g.timer < 0) {
        fprintf(stderr, "loadgen: out of memory or descriptors\n");
        goto out;
    }
    for (long i = 0; i < conns; i++) {
        g.conns[i].fd = -1;
        g.conns[i].state = CONN_CLOSED;
    }
    if (run(&g) != 0)
        goto out;
    if (lg_stop) {
        fprintf(stderr, "loadgen: interrupted; no result\n");
        goto out;
    }

    uint64_t first = first_due_at(&g, g.measure_ns), last = first_due_at(&g, g.end_ns);
    uint64_t due_total = last - first;
    uint64_t unsent = g.next >= last ? 0 : last - (g.next > first ? g.next : first);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long long cpu_us = (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec +
                       (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
    double secs = (double)g.duration_ns / 1e9;
    printf("BENCH_RESULT rate=%.2f due=%" PRIu64 " sent=%" PRIu64 " completed=%" PRIu64
           " ok=%" PRIu64 " duration_us=%" PRId64 " achieved_rps=%.2f"
           " p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f"
           " errors_connect=%" PRIu64 " errors_read=%" PRIu64 " errors_status=%" PRIu64
           " errors_timeout=%" PRIu64 " errors_unsent=%" PRIu64
           " send_lag_p99_us=%.1f send_lag_max_us=%.1f sent_all=%" PRIu64 " cpu_us=%lld\n",
           g.rate, due_total, due_total - unsent, g.completed, g.ok, g.duration_ns / 1000,
           (double)g.ok / secs, hist_percentile(&g.latency, 0.50) / 1e3,
           hist_percentile(&g.latency, 0.90) / 1e3, hist_percentile(&g.latency, 0.99) / 1e3,
           hist_percentile(&g.latency, 0.999) / 1e3, g.latency.max / 1e3, g.e_connect, g.e_read,
           g.e_status, g.e_timeout, unsent, hist_percentile(&g.send_lag, 0.99) / 1e3,
           g.send_lag.max / 1e3, g.next, cpu_us);
    rc = 0;
    goto out;
bad:
    usage();
    return 2;
out:
    if (g.conns) {
        for (long i = 0; i < conns; i++)
            if (g.conns[i].fd >= 0)
                close(g.conns[i].fd);
    }
    free(g.conns);
    free(g.idle);
    if (g.ep >= 0)
        close(g.ep);
    if (g.timer >= 0)
        close(g.timer);
    return rc;
}
#endif
