/*
 * server: the process side of serving: worker threads with a libuv loop each, their
 * SO_REUSEPORT listeners, work posted to them from other threads, signals and the graceful
 * drain. Connections (conn.c) hand each request to the handler the server was started with;
 * the server knows nothing of what the handler does.
 */
#include "core/generation.h"
#include "core/reload.h"
#include "core/server-int.h"
#include "core/upstream.h"
#include "core/upstream_h1.h"
#include "lib/alloc.h"
#include "lib/log.h"
#include "lib/timeutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The listeners the server was started with (their TLS contexts: server_tls.c). */
static const struct gw_server_listener *listener_specs;
static size_t n_listener_specs;

long gw_server_open_connections(void)
{
    return conn_open_count();
}

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

static int host_stopping(const void *w)
{
    return gw_worker_stopping(w);
}

struct gw_request_host gw_worker_host(struct gw_worker *w)
{
    return (struct gw_request_host){
        .loop = &w->loop, .ctx = w, .post = gw_worker_post, .stopping = host_stopping};
}

/* ---------- workers ---------- */

void worker_refresh_config(struct gw_worker *w)
{
    if (!w->owns_cfg || gw_generation_current_number() == w->cfg_number)
        return;
    struct gw_config *cur = gw_generation_acquire();
    if (!cur)
        return;
    gw_generation_release(w->cfg);
    w->cfg = cur;
    w->cfg_number = cur->generation;
}

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

/* Held by gw_server_post_each while it posts, and while a worker closes its async handle. */
static pthread_mutex_t post_each_lock = PTHREAD_MUTEX_INITIALIZER;

void worker_maybe_finish(struct gw_worker *w)
{
    if (!w->stopping || w->stop_done || w->n_conns > 0 || w->holds > 0)
        return;
    pthread_mutex_lock(&post_each_lock);
    w->async_closed = 1;
    pthread_mutex_unlock(&post_each_lock);
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

/* The worker's quiet-spell check (gw_worker.collect_timer). */
#define WORKER_COLLECT_MS 1000

static void on_collect_tick(uv_timer_t *t)
{
    struct gw_worker *w = t->data;
    if (w->dispatched != w->dispatched_seen) {
        w->dispatched_seen = w->dispatched;
        w->collected = 0;
        return;
    }
    if (!w->collected) {
        gw_allocator_collect();
        w->collected = 1;
    }
}

static int worker_init(struct gw_worker *w, int index, const struct gw_config *cfg, char *err,
                       size_t errlen)
{
    w->index = index;
    w->cfg = cfg;
    struct gw_config *cur = gw_generation_acquire();
    if (cur) {
        w->cfg = cur;
        w->cfg_number = cur->generation;
        w->owns_cfg = 1;
    }
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
    uv_timer_init(&w->loop, &w->collect_timer);
    w->collect_timer.data = w;
    w->collected = 1; /* nothing served yet: start-up's memory was collected on the main thread */
    uv_timer_start(&w->collect_timer, on_collect_tick, WORKER_COLLECT_MS, WORKER_COLLECT_MS);
    uv_unref((uv_handle_t *)&w->collect_timer); /* it never keeps the loop running */
    w->upstream = upstream_multi_new(&w->loop);
    if (!w->upstream) {
        snprintf(err, errlen, "cannot create the upstream client");
        return -1;
    }
    w->n_listeners = n_listener_specs;
    w->listeners = calloc(w->n_listeners, sizeof *w->listeners);
    w->listen_fds = calloc(w->n_listeners, sizeof *w->listen_fds);
    if (!w->listeners || !w->listen_fds) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < w->n_listeners; i++) {
        const struct gw_server_listener *spec = &listener_specs[i];
        int fd = bind_listener(spec->listen, err, errlen);
        if (fd < 0)
            return -1;
        w->listen_fds[i] = fd;
        uv_tcp_init(&w->loop, &w->listeners[i].tcp);
        w->listeners[i].tcp.data = &w->listeners[i];
        w->listeners[i].w = w;
        w->listeners[i].spec_index = i;
        w->listeners[i].handler = spec->handler;
        if (uv_tcp_open(&w->listeners[i].tcp, fd) != 0 ||
            uv_listen((uv_stream_t *)&w->listeners[i].tcp, 1024, conn_on_connection) != 0) {
            snprintf(err, errlen, "cannot listen on %s", spec->listen->address);
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
    if (w->owns_cfg)
        gw_generation_release(w->cfg);
    w->owns_cfg = 0;
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
static uv_async_t main_wakeup, main_stop;
static uv_signal_t sigterm_handle, sigint_handle, sighup_handle;
static void (*hangup_fn)(void);

void gw_server_on_hangup(void (*fn)(void))
{
    hangup_fn = fn;
}

static void on_hangup(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    if (hangup_fn)
        hangup_fn();
    else
        gw_log_info("reload", "SIGHUP received: nothing to reload");
}

/* Asks every worker to stop (on its own thread, through its async handle). */
static void stop_workers(int now)
{
    gw_reload_refuse(); /* a drain serves what it has; a reload asked for now is refused */
    for (int i = 0; i < n_workers; i++) {
        if (atomic_load(&workers[i].finished))
            continue;
        atomic_store(&workers[i].stop_requested, now ? 2 : 1);
        uv_async_send(&workers[i].async);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    signals_seen++;
    int now = signals_seen > 1;
    gw_log(GW_LOG_INFO, "shutdown", NULL, NULL, "%s received: %s",
           signum == SIGTERM ? "SIGTERM" : "SIGINT",
           now ? "closing all connections now" : "draining in-flight requests");
    stop_workers(now);
}

void gw_server_post_each(void (*fn)(void *worker))
{
    pthread_mutex_lock(&post_each_lock);
    for (int i = 0; workers && i < n_workers; i++)
        if (!workers[i].async_closed && !atomic_load(&workers[i].finished))
            gw_worker_post(&workers[i], fn, &workers[i]);
    pthread_mutex_unlock(&post_each_lock);
}

/* A stop asked for by the program (tests, the admin API), on the main loop's thread. */
static atomic_int stop_asked;

static void on_stop_asked(uv_async_t *a)
{
    (void)a;
    int now = atomic_exchange(&stop_asked, 0);
    if (now)
        stop_workers(now == 2);
}

void gw_server_stop(int now)
{
    int want = now ? 2 : 1;
    int cur = atomic_load(&stop_asked);
    while (cur < want && !atomic_compare_exchange_weak(&stop_asked, &cur, want))
        ;
    if (main_loop_open)
        uv_async_send(&main_stop);
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
    /* A SIGHUP after this point (the process is about to exit) must not kill it. */
    signal(SIGHUP, SIG_IGN);
    main_loop_open = 0;
    uv_close((uv_handle_t *)&sigterm_handle, NULL);
    uv_close((uv_handle_t *)&sigint_handle, NULL);
    uv_close((uv_handle_t *)&sighup_handle, NULL);
    uv_close((uv_handle_t *)&main_wakeup, NULL);
    uv_close((uv_handle_t *)&main_stop, NULL);
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

int gw_server_run(const struct gw_config *cfg, const struct gw_handler *handler)
{
    struct gw_server_listener *ls =
        calloc(cfg->server.n_listen ? cfg->server.n_listen : 1, sizeof *ls);
    if (!ls)
        return 1;
    for (size_t i = 0; i < cfg->server.n_listen; i++)
        ls[i] = (struct gw_server_listener){&cfg->server.listen[i], NULL, *handler};
    int rc = gw_server_run_listeners(cfg, ls, cfg->server.n_listen);
    free(ls);
    return rc;
}

int gw_server_run_listeners(const struct gw_config *cfg, const struct gw_server_listener *ls,
                            size_t n_ls)
{
    int rc = 1;
    listener_specs = ls;
    n_listener_specs = n_ls;
    signal(SIGPIPE, SIG_IGN);
    /*
     * http_parser's bound is one for the whole process, and backends' answers are parsed with
     * it too (core/upstream_h1.c): it is the larger of the two. Requests keep their own,
     * max_header, which core/http1.c counts itself.
     */
    uint64_t parser_bound = cfg->server.limits.max_header;
    if (parser_bound < UPSTREAM_H1_MAX_HEAD + 1024)
        parser_bound = UPSTREAM_H1_MAX_HEAD + 1024;
    http_parser_set_max_header_size((uint32_t)parser_bound);
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
    if (server_tls_open(ls, n_ls, err, sizeof err) != 0) {
        gw_log_error("startup", "%s", err);
        fprintf(stderr, "toolgate: %s\n", err);
        goto out_tls;
    }
    workers = calloc((size_t)n_workers, sizeof *workers);
    if (!workers)
        goto out_tls;
    int inited = 0;
    uv_loop_init(&main_loop);
    main_loop_open = 1;
    uv_async_init(&main_loop, &main_wakeup, on_main_wakeup);
    uv_async_init(&main_loop, &main_stop, on_stop_asked);
    uv_signal_init(&main_loop, &sigterm_handle);
    uv_signal_init(&main_loop, &sigint_handle);
    uv_signal_init(&main_loop, &sighup_handle);
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
    uv_signal_start(&sighup_handle, on_hangup, SIGHUP);
    /* A stop asked for before the workers existed is carried out now. */
    if (atomic_load(&stop_asked))
        uv_async_send(&main_stop);
    for (int i = 0; i < n_workers; i++)
        uv_thread_create(&workers[i].thread, worker_thread, &workers[i]);
    {
        char fields[768];
        struct gw_buf addrs = {0}, roles = {0};
        size_t n_main = 0;
        for (size_t i = 0; i < n_ls; i++) {
            const char *a = ls[i].listen->address;
            if (ls[i].role) {
                gw_buf_printf(&roles, ",\"%s\":\"", ls[i].role);
                gw_buf_append_json_escaped(&roles, a, strlen(a));
                gw_buf_append_str(&roles, "\"");
                continue;
            }
            gw_buf_printf(&addrs, "%s\"", n_main++ ? "," : "");
            gw_buf_append_json_escaped(&addrs, a, strlen(a));
            gw_buf_append_str(&addrs, "\"");
        }
        snprintf(fields, sizeof fields, "\"listen\":[%s],\"workers\":%d,\"routes\":%zu%s",
                 addrs.data ? addrs.data : "", n_workers, cfg->n_routes,
                 roles.data ? roles.data : "");
        gw_buf_free(&addrs);
        gw_buf_free(&roles);
        gw_log(GW_LOG_INFO, "startup", NULL, fields, "toolgate %s listening", TOOLGATE_VERSION);
    }
    /* The modules' start-up ran lean (cmd_serve); from here freed memory is kept for reuse,
     * and what this thread still holds free goes back. */
    gw_allocator_lean(false);
    gw_allocator_collect();
    uv_run(&main_loop, UV_RUN_DEFAULT);
    for (int i = 0; i < n_workers; i++)
        uv_thread_join(&workers[i].thread);
    gw_log_info("shutdown", "all workers stopped");
    rc = 0;
out : {
    /* No post reaches a worker from here on (gw_server_post_each). */
    pthread_mutex_lock(&post_each_lock);
    struct gw_worker *ws = workers;
    workers = NULL;
    pthread_mutex_unlock(&post_each_lock);
    for (int i = 0; i < inited; i++)
        worker_destroy(&ws[i]);
    free(ws);
}
out_tls:
    server_tls_close();
    listener_specs = NULL;
    n_listener_specs = 0;
    return rc;
}
