/*
 * stdio_module: local backends (`command` under routes[].backends[]) as a module. It owns
 * their configuration keys, and between start and stop a thread with its own loop that
 * serves every local backend on one private endpoint: HTTP on a unix socket in a directory
 * made for this process (mode 0700), which toolgate's relay reaches as it reaches any MCP
 * backend over Streamable HTTP. See docs/stdio.md.
 */
#include "core/config.h"
#include "core/module.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "stdio/stdio-int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

static char dir[256], sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static pthread_t thread;
static int thread_live;
static uv_loop_t loop;
static uv_async_t wake;
static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cv = PTHREAD_COND_INITIALIZER;
static int start_state; /* 0 pending, 1 up, -1 failed */

static int parse_backend(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                         struct gw_backend *b, void **out, struct cfg_error *err)
{
    struct stdio_spec *s = NULL;
    int rc = stdio_spec_parse(doc, node, path, NULL, &s, err);
    *out = s;
    if (rc <= 0)
        return rc;
    gw_config_node_digest(node, s->digest);
    size_t n = strlen(s->id) + 32;
    b->url = malloc(n);
    if (b->url)
        snprintf(b->url, n, "http://localhost/stdio/%s", s->id);
    b->local_socket = calloc(1, sizeof sock_path);
    return 1;
}

static void free_backend(void *conf)
{
    stdio_spec_free(conf);
}

static void on_wake(uv_async_t *a)
{
    stdio_mux_stop_all();
    stdio_http_close_all();
    uv_close((uv_handle_t *)&wake, NULL);
}

static void *run(void *arg)
{
    char why[300];
    int ok = stdio_http_listen(&loop, sock_path, why, sizeof why) == 0;
    if (!ok)
        gw_log_error("stdio_listen", "%s", why);
    pthread_mutex_lock(&start_mu);
    start_state = ok ? 1 : -1;
    pthread_cond_signal(&start_cv);
    pthread_mutex_unlock(&start_mu);
    if (ok)
        stdio_mux_start();
    else
        on_wake(&wake);
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

static int start(const struct gw_config *cfg)
{
    size_t n = 0;
    for (size_t r = 0; r < cfg->n_routes; r++)
        for (size_t b = 0; b < cfg->routes[r].n_backends; b++)
            n += cfg->routes[r].backends[b].local_owner == &stdio_module;
    if (n == 0)
        return 0;
    char why[300];
    if (stdio_seccomp_build(why, sizeof why) != 0) {
        gw_log_error("stdio_seccomp", "%s", why);
        return -1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/toolgate-stdio-XXXXXX", tmp && tmp[0] == '/' ? tmp : "/tmp");
    if (!mkdtemp(dir) || strlen(dir) + 3 >= sizeof sock_path) {
        gw_log_error("stdio_dir", "cannot make a private directory for local backends in %s",
                     tmp && tmp[0] == '/' ? tmp : "/tmp");
        dir[0] = '\0';
        return -1;
    }
    size_t dl = strlen(dir); /* checked above to leave room for "/s" */
    memcpy(sock_path, dir, dl);
    memcpy(sock_path + dl, "/s", 3);
    stdio_rt.backends = calloc(n, sizeof *stdio_rt.backends);
    if (!stdio_rt.backends)
        return -1;
    for (size_t r = 0; r < cfg->n_routes; r++)
        for (size_t b = 0; b < cfg->routes[r].n_backends; b++) {
            const struct gw_backend *be = &cfg->routes[r].backends[b];
            if (be->local_owner != &stdio_module)
                continue;
            stdio_rt.backends[stdio_rt.n_backends++].spec = be->local;
            snprintf(be->local_socket, sizeof sock_path, "%s", sock_path);
        }
    if (uv_loop_init(&loop) != 0 || uv_async_init(&loop, &wake, on_wake) != 0)
        return -1;
    stdio_rt.loop = &loop;
    start_state = 0;
    if (pthread_create(&thread, NULL, run, NULL) != 0)
        return -1;
    thread_live = 1;
    pthread_mutex_lock(&start_mu);
    while (start_state == 0)
        pthread_cond_wait(&start_cv, &start_mu);
    pthread_mutex_unlock(&start_mu);
    return start_state > 0 ? 0 : -1;
}

static void stop(void)
{
    if (thread_live) {
        uv_async_send(&wake);
        pthread_join(thread, NULL);
        thread_live = 0;
        uv_loop_close(&loop);
    }
    if (sock_path[0])
        unlink(sock_path);
    if (dir[0])
        rmdir(dir);
    sock_path[0] = dir[0] = '\0';
    free(stdio_rt.backends);
    memset(&stdio_rt, 0, sizeof stdio_rt);
    stdio_seccomp_free();
}

static void ready(const struct gw_config *cfg, json_t *checks)
{
    for (size_t b = 0; b < stdio_rt.n_backends; b++) {
        struct stdio_backend_rt *be = &stdio_rt.backends[b];
        unsigned failed = atomic_load(&be->failed), backoff = atomic_load(&be->backoff);
        unsigned running = atomic_load(&be->running);
        char name[128], detail[160];
        snprintf(name, sizeof name, "stdio:%s", be->spec->backend ? be->spec->backend : "");
        const char *state = "ok";
        if (failed) {
            state = "failing";
            snprintf(detail, sizeof detail, "%u process(es) failed too often and are not restarted",
                     failed);
        } else if (!be->spec->per_user && (backoff || !running)) {
            state = "failing";
            snprintf(detail, sizeof detail, "the shared process is %s",
                     backoff ? "restarting after a crash" : "not running");
        } else {
            snprintf(detail, sizeof detail, "%u running, %llu restarts", running,
                     (unsigned long long)atomic_load(&be->restarts));
        }
        json_object_set_new(checks, name,
                            json_pack("{s:s, s:s}", "state", state, "detail", detail));
    }
}

static void metrics(const struct gw_config *cfg, struct gw_metrics_out *out)
{
    if (!stdio_rt.n_backends)
        return;
    static const struct {
        const char *name, *type, *help;
        size_t off;
        int wide;
    } fams[] = {
        {"toolgate_stdio_processes", "gauge", "Local server processes running.",
         offsetof(struct stdio_backend_rt, running), 0},
        {"toolgate_stdio_backoff", "gauge", "Local server processes waiting to be restarted.",
         offsetof(struct stdio_backend_rt, backoff), 0},
        {"toolgate_stdio_failed", "gauge", "Local server processes given up on.",
         offsetof(struct stdio_backend_rt, failed), 0},
        {"toolgate_stdio_restarts_total", "counter", "Restarts of local server processes.",
         offsetof(struct stdio_backend_rt, restarts), 1},
        {"toolgate_stdio_exits_total", "counter", "Local server processes that ended.",
         offsetof(struct stdio_backend_rt, crashes), 1},
        {"toolgate_stdio_line_overflows_total", "counter",
         "Local servers stopped for a stdout line over max_line.",
         offsetof(struct stdio_backend_rt, overflows), 1},
        {"toolgate_stdio_stderr_suppressed_total", "counter",
         "Stderr lines of local servers not logged (over the rate).",
         offsetof(struct stdio_backend_rt, stderr_suppressed), 1},
    };
    for (size_t f = 0; f < sizeof fams / sizeof *fams; f++) {
        metrics_family(out, fams[f].name, fams[f].type, fams[f].help);
        for (size_t b = 0; b < stdio_rt.n_backends; b++) {
            const char *base = (const char *)&stdio_rt.backends[b];
            uint64_t v = fams[f].wide
                             ? atomic_load((const atomic_uint_fast64_t *)(base + fams[f].off))
                             : atomic_load((const atomic_uint *)(base + fams[f].off));
            struct metrics_label l = {"backend", stdio_rt.backends[b].spec->backend
                                                     ? stdio_rt.backends[b].spec->backend
                                                     : ""};
            metrics_sample_u64(out, fams[f].name, &l, 1, v);
        }
    }
}

/* ---- reload ------------------------------------------------------------------------------ */

/* The local backend named `backend` on the route named `route` in cfg, or NULL. */
static const struct gw_backend *find_local(const struct gw_config *cfg, const char *route,
                                           const char *backend, size_t *route_index)
{
    for (size_t r = 0; r < cfg->n_routes; r++) {
        if (strcmp(cfg->routes[r].name, route) != 0)
            continue;
        for (size_t b = 0; b < cfg->routes[r].n_backends; b++) {
            const struct gw_backend *be = &cfg->routes[r].backends[b];
            if (be->local_owner == &stdio_module && strcmp(be->name, backend) == 0) {
                if (route_index)
                    *route_index = r;
                return be;
            }
        }
    }
    return NULL;
}

static int refuse(struct cfg_error *err, size_t r, const char *route, const char *backend,
                  const char *what)
{
    snprintf(err->msg, sizeof err->msg,
             "routes[%zu] (%s): the local backend %s %s: local processes (`command`) are "
             "started when toolgate starts, so a restart is needed to add, change or remove "
             "one (the running configuration keeps serving)",
             r, route, backend, what);
    return -1;
}

/* Replaces an owned string with a copy of `text`. 0, or -1 when out of memory. */
static int set_string(char **slot, const char *text)
{
    char *copy = strdup(text);
    if (!copy)
        return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

/*
 * A reload keeps every local backend as it runs: next must have each of the running ones,
 * on the route of the same name, with the same definition, and no other. The processes
 * stay as they are (they were started for the first generation, which lives to the end);
 * next's backends are pointed at them: the same socket and the same URL (the URL names the
 * process by its position in the first generation's file, which next may have moved).
 */
static int prepare(const struct gw_config *running, const struct gw_config *next,
                   struct cfg_error *err)
{
    for (size_t r = 0; r < next->n_routes; r++)
        for (size_t b = 0; b < next->routes[r].n_backends; b++) {
            const struct gw_backend *be = &next->routes[r].backends[b];
            if (be->local_owner != &stdio_module)
                continue;
            const struct gw_backend *was =
                find_local(running, next->routes[r].name, be->name, NULL);
            if (!was)
                return refuse(err, r, next->routes[r].name, be->name, "is new");
            const struct stdio_spec *a = was->local, *s = be->local;
            if (memcmp(a->digest, s->digest, sizeof a->digest) != 0)
                return refuse(err, r, next->routes[r].name, be->name, "has a changed definition");
        }
    for (size_t r = 0; r < running->n_routes; r++)
        for (size_t b = 0; b < running->routes[r].n_backends; b++) {
            const struct gw_backend *be = &running->routes[r].backends[b];
            if (be->local_owner == &stdio_module &&
                !find_local(next, running->routes[r].name, be->name, NULL))
                return refuse(err, r, running->routes[r].name, be->name, "was removed");
        }
    for (size_t r = 0; r < next->n_routes; r++)
        for (size_t b = 0; b < next->routes[r].n_backends; b++) {
            struct gw_backend *be = (struct gw_backend *)&next->routes[r].backends[b];
            if (be->local_owner != &stdio_module)
                continue;
            const struct gw_backend *was =
                find_local(running, next->routes[r].name, be->name, NULL);
            if (set_string(&be->url, was->url) != 0 ||
                set_string(&be->endpoints[0], was->url) != 0) {
                snprintf(err->msg, sizeof err->msg, "out of memory");
                return -1;
            }
            snprintf(be->local_socket, sizeof sock_path, "%s", was->local_socket);
        }
    return 0;
}

const struct gw_module stdio_module = {
    .name = "stdio",
    .backend_keys = stdio_backend_keys,
    .parse_backend = parse_backend,
    .free_backend = free_backend,
    .start = start,
    .stop = stop,
    .prepare = prepare,
    .ready = ready,
    .metrics = metrics,
};
