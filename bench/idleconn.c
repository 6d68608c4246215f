/*
 * idleconn: opens N keep-alive connections to a loopback HTTP server, sends one request on
 * each, reads the whole response, then keeps every connection open and idle so that the
 * server's memory with N idle connections can be read from /proc.
 *
 *   idleconn HOST PORT N REQUEST_FILE HOLD_SECONDS [SESSION_REQUEST_FILE]
 *
 * REQUEST_FILE holds the exact bytes of one HTTP/1.1 request (keep-alive, with
 * Content-Length). With SESSION_REQUEST_FILE, each connection opens its own MCP session:
 * REQUEST_FILE is an initialize, its answer must carry an Mcp-Session-Id, and then the second
 * request (notifications/initialized) is sent on the same connection with every "@SESSION@"
 * in it replaced by that connection's id; a connection counts as ok when both are answered
 * 2xx. When every response is in (or after the ready timeout, 30 s plus 10 ms a connection)
 * it prints one line
 *
 *   ready connections=N ok=N failed=N
 *
 * then holds the connections until SIGTERM/SIGINT or HOLD_SECONDS, and prints
 *
 *   done held=N closed_by_server=N
 *
 * Used by bench/run.sh only; loopback only, everything bounded in count and time.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IDLE_MAX_CONNS 20000
#define IDLE_RESP_MAX 65536 /* bytes of one response kept; larger answers are a failure */
#define IDLE_BATCH 100      /* connections started per step, so the listen queue keeps up */
#define IDLE_READY_TIMEOUT_MS 30000
#define IDLE_SESSION_MAX 256 /* bytes of an Mcp-Session-Id taken from a response */

enum idle_state { IDLE_CONNECTING, IDLE_READING, IDLE_DONE, IDLE_FAILED };

struct idle_conn {
    int fd;
    enum idle_state state;
    int step;        /* 0: the first request; 1: the session's second */
    const char *out; /* the request being sent */
    size_t out_len;
    char *second; /* the second request, made from the first answer's session id */
    size_t sent;
    size_t got;
    char *resp;
};

/* The second request's template (NULL: one request a connection). */
static const char *idle_tmpl;
static size_t idle_tmpl_len;

static volatile sig_atomic_t idle_stop;

static void idle_on_signal(int sig)
{
    (void)sig;
    idle_stop = 1;
}

static long long idle_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Returns 1 when resp[0..len) holds one complete response (Content-Length body, or a chunked
 * body ending in the last chunk), 0 when more is needed, -1 when it cannot be read.
 */
static int idle_response_complete(const char *resp, size_t len)
{
    const char *end = memmem(resp, len, "\r\n\r\n", 4);
    if (!end)
        return len >= IDLE_RESP_MAX ? -1 : 0;
    size_t head = (size_t)(end - resp) + 4;
    for (const char *p = resp; p < end;) {
        const char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
        if (!eol)
            break;
        size_t n = (size_t)(eol - p);
        if (n > 15 && strncasecmp(p, "content-length:", 15) == 0) {
            unsigned long long body = strtoull(p + 15, NULL, 10);
            return len >= head + body ? 1 : 0;
        }
        if (n > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0 &&
            memmem(p, n, "chunked", 7) != NULL)
            return len >= head + 5 && memcmp(resp + len - 5, "0\r\n\r\n", 5) == 0 ? 1 : 0;
        p = eol + 2;
    }
    return -1; /* a keep-alive response without a length cannot be delimited */
}

/* Copies the Mcp-Session-Id header's value of a complete response head into id; 0 or -1. */
static int idle_session_id(const char *resp, size_t len, char *id, size_t cap)
{
    const char *end = memmem(resp, len, "\r\n\r\n", 4);
    if (!end)
        return -1;
    for (const char *p = resp; p < end;) {
        const char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
        if (!eol)
            break;
        size_t n = (size_t)(eol - p);
        if (n > 15 && strncasecmp(p, "mcp-session-id:", 15) == 0) {
            const char *v = p + 15;
            while (v < eol && *v == ' ')
                v++;
            size_t vlen = (size_t)(eol - v);
            if (vlen == 0 || vlen >= cap)
                return -1;
            memcpy(id, v, vlen);
            id[vlen] = '\0';
            return 0;
        }
        p = eol + 2;
    }
    return -1;
}

/* The second request: the template with every @SESSION@ replaced by id. NULL on failure. */
static char *idle_second_request(const char *id, size_t *len)
{
    size_t idlen = strlen(id), cap = idle_tmpl_len + 1, n = 0;
    for (const char *p = idle_tmpl;
         (p = memmem(p, idle_tmpl_len - (size_t)(p - idle_tmpl), "@SESSION@", 9)); p += 9)
        cap += idlen;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    for (size_t i = 0; i < idle_tmpl_len;) {
        if (i + 9 <= idle_tmpl_len && memcmp(idle_tmpl + i, "@SESSION@", 9) == 0) {
            memcpy(out + n, id, idlen);
            n += idlen;
            i += 9;
        } else {
            out[n++] = idle_tmpl[i++];
        }
    }
    *len = n;
    return out;
}

static int idle_start(struct idle_conn *c, const struct sockaddr_in *addr, int ep)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (const struct sockaddr *)addr, sizeof *addr) != 0 && errno != EINPROGRESS)
        return -1;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void idle_fail(struct idle_conn *c, int ep, size_t *pending, size_t *failed)
{
    free(c->second);
    c->second = NULL;
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->state = IDLE_FAILED;
    (*pending)--;
    (*failed)++;
}

/* Drives one connection forward on an epoll event. */
static void idle_step(struct idle_conn *c, uint32_t events, int ep, size_t *pending, size_t *ok,
                      size_t *failed)
{
    if (c->state == IDLE_CONNECTING && (events & (EPOLLOUT | EPOLLERR))) {
        while (c->sent < c->out_len) {
            ssize_t n = write(c->fd, c->out + c->sent, c->out_len - c->sent);
            if (n < 0 && errno == EAGAIN)
                return;
            if (n <= 0) {
                idle_fail(c, ep, pending, failed);
                return;
            }
            c->sent += (size_t)n;
        }
        c->state = IDLE_READING;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    if (c->state == IDLE_READING && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        for (;;) {
            if (c->got >= IDLE_RESP_MAX) {
                idle_fail(c, ep, pending, failed);
                return;
            }
            ssize_t n = read(c->fd, c->resp + c->got, IDLE_RESP_MAX - c->got);
            if (n < 0 && errno == EAGAIN)
                break;
            if (n <= 0) {
                idle_fail(c, ep, pending, failed);
                return;
            }
            c->got += (size_t)n;
        }
        int done = idle_response_complete(c->resp, c->got);
        if (done < 0 || (done == 1 && strncmp(c->resp, "HTTP/1.1 2", 10) != 0)) {
            idle_fail(c, ep, pending, failed);
        } else if (done == 1 && idle_tmpl && c->step == 0) {
            /* The session's answer: the second request goes out on the same connection. */
            char id[IDLE_SESSION_MAX];
            if (idle_session_id(c->resp, c->got, id, sizeof id) != 0 ||
                !(c->second = idle_second_request(id, &c->out_len))) {
                idle_fail(c, ep, pending, failed);
                return;
            }
            c->out = c->second;
            c->step = 1;
            c->sent = 0;
            c->got = 0;
            c->state = IDLE_CONNECTING;
            struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        } else if (done == 1) {
            c->state = IDLE_DONE;
            free(c->second);
            c->second = NULL;
            free(c->resp);
            c->resp = NULL;
            (*pending)--;
            (*ok)++;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr,
                "usage: idleconn HOST PORT N REQUEST_FILE HOLD_SECONDS [SESSION_REQUEST_FILE]\n");
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    long n_conns = strtol(argv[3], NULL, 10);
    long hold_s = strtol(argv[5], NULL, 10);
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 || n_conns <= 0 ||
        n_conns > IDLE_MAX_CONNS || hold_s <= 0 || hold_s > 3600) {
        fprintf(stderr,
                "idleconn: bad arguments (numeric IPv4 host, 1..%d connections, "
                "1..3600 s hold)\n",
                IDLE_MAX_CONNS);
        return 2;
    }
    int rc = 1, ep = -1;
    struct idle_conn *conns = NULL;
    char req[16384];
    size_t req_len = 0;
    FILE *f = fopen(argv[4], "rb");
    if (!f) {
        fprintf(stderr, "idleconn: cannot read %s: %s\n", argv[4], strerror(errno));
        return 2;
    }
    req_len = fread(req, 1, sizeof req, f);
    fclose(f);
    if (req_len == 0 || req_len == sizeof req) {
        fprintf(stderr, "idleconn: %s must hold one request under %zu bytes\n", argv[4],
                sizeof req);
        return 2;
    }

    static char tmpl[16384];
    if (argc == 7) {
        f = fopen(argv[6], "rb");
        if (!f) {
            fprintf(stderr, "idleconn: cannot read %s: %s\n", argv[6], strerror(errno));
            return 2;
        }
        idle_tmpl_len = fread(tmpl, 1, sizeof tmpl, f);
        fclose(f);
        if (idle_tmpl_len == 0 || idle_tmpl_len == sizeof tmpl) {
            fprintf(stderr, "idleconn: %s must hold one request under %zu bytes\n", argv[6],
                    sizeof tmpl);
            return 2;
        }
        idle_tmpl = tmpl;
    }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n_conns + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)n_conns + 64 ? rl.rlim_max : (rlim_t)n_conns + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGTERM, idle_on_signal);
    signal(SIGINT, idle_on_signal);
    signal(SIGPIPE, SIG_IGN);

    conns = calloc((size_t)n_conns, sizeof *conns);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || ep < 0)
        goto out;
    for (long i = 0; i < n_conns; i++)
        conns[i].fd = -1;

    size_t pending = 0, ok = 0, failed = 0, started = 0;
    struct epoll_event evs[256];
    long long deadline = idle_now_ms() + IDLE_READY_TIMEOUT_MS + 10 * n_conns;
    while ((started < (size_t)n_conns || pending > 0) && !idle_stop && idle_now_ms() < deadline) {
        /* Keep at most one batch in flight so a small listen backlog is not overrun. */
        while (started < (size_t)n_conns && pending < IDLE_BATCH) {
            struct idle_conn *c = &conns[started++];
            c->resp = malloc(IDLE_RESP_MAX);
            c->out = req;
            c->out_len = req_len;
            pending++;
            if (!c->resp || idle_start(c, &addr, ep) != 0)
                idle_fail(c, ep, &pending, &failed);
        }
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++)
            idle_step(evs[i].data.ptr, evs[i].events, ep, &pending, &ok, &failed);
    }
    for (long i = 0; i < n_conns; i++) {
        if (conns[i].state == IDLE_CONNECTING || conns[i].state == IDLE_READING) {
            if (conns[i].fd >= 0)
                close(conns[i].fd);
            conns[i].fd = -1;
            conns[i].state = IDLE_FAILED;
            failed++;
        }
    }
    printf("ready connections=%ld ok=%zu failed=%zu\n", n_conns, ok, failed);
    fflush(stdout);

    /* Hold: a server closing an idle connection shows up as readable/hang-up. */
    size_t closed = 0;
    long long hold_end = idle_now_ms() + hold_s * 1000;
    while (!idle_stop && idle_now_ms() < hold_end) {
        int n = epoll_wait(ep, evs, 256, 200);
        for (int i = 0; i < n; i++) {
            struct idle_conn *c = evs[i].data.ptr;
            if (c->state == IDLE_DONE) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                c->state = IDLE_FAILED;
                closed++;
            }
        }
    }
    printf("done held=%zu closed_by_server=%zu\n", ok - closed, closed);
    rc = 0;
out:
    if (conns) {
        for (long i = 0; i < n_conns; i++) {
            if (conns[i].fd >= 0)
                close(conns[i].fd);
            free(conns[i].resp);
            free(conns[i].second);
        }
        free(conns);
    }
    if (ep >= 0)
        close(ep);
    return rc;
}
