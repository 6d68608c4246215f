/*
 * reload: one thread per reload, at most one at a time. The state below is shared by the
 * main thread (SIGHUP), the workers (POST /admin/reload, GET /admin/status, /metrics) and the
 * reload thread, all under `lock`; the lock is never held while the file is parsed.
 */
#include "core/reload.h"
#include "core/generation.h"
#include "core/module.h"
#include "core/server.h"
#include "core/stats.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/timeutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct waiter {
    void (*done)(void *arg, const struct gw_reload_outcome *o);
    void *arg;
    struct waiter *next;
};

static struct {
    pthread_mutex_t lock;
    char *path;
    int running, again, stopping, have_thread;
    pthread_t thread;
    const char *source;
    struct waiter *waiters;
    /* The last reload's outcome (strings copied). */
    int have_last, last_ok, last_status, last_line;
    char last_code[24], last_message[768];
    uint64_t last_generation, last_duration_ms, last_at_ms, succeeded, failed;
} R = {.lock = PTHREAD_MUTEX_INITIALIZER};

void gw_reload_setup(const char *config_path)
{
    pthread_mutex_lock(&R.lock);
    free(R.path);
    R.path = config_path ? strdup(config_path) : NULL;
    R.stopping = 0;
    pthread_mutex_unlock(&R.lock);
}

static int listen_differs(const struct gw_listen *a, const struct gw_listen *b)
{
    return strcmp(a->address, b->address) != 0 || (a->tls_cert == NULL) != (b->tls_cert == NULL);
}

int gw_reload_check_restart(const struct gw_config *running, const struct gw_config *next,
                            char *err, size_t errlen)
{
    const char *key = NULL;
    const struct gw_server_config *a = &running->server, *b = &next->server;
    int listen_changed = a->n_listen != b->n_listen;
    for (size_t i = 0; !listen_changed && i < a->n_listen; i++)
        listen_changed = listen_differs(&a->listen[i], &b->listen[i]);
    if (listen_changed)
        key = "server.listen (its addresses, or whether one has tls)";
    else if (a->workers != b->workers)
        key = "server.workers";
    else if (a->limits.max_header != b->limits.max_header)
        key = "server.limits.max_header";
    else if (running->admin.enabled != next->admin.enabled)
        key = "admin (adding or removing the section)";
    else if (running->admin.enabled &&
             strcmp(running->admin.listen.address, next->admin.listen.address) != 0)
        key = "admin.listen";
    if (!key)
        return 0;
    snprintf(err, errlen,
             "%s changed: it is fixed when toolgate starts, so a restart is needed to change it "
             "(the running configuration keeps serving)",
             key);
    return -1;
}

int gw_reload_require_same(const struct gw_config *running, const struct gw_config *next,
                           const char *key, const char *why, struct cfg_error *err)
{
    if (gw_config_section_same(running, next, key))
        return 0;
    snprintf(err->msg, sizeof err->msg,
             "%s changed: %s, so a restart is needed to change it (the running configuration "
             "keeps serving)",
             key, why);
    return -1;
}

/* The line a loader error points at: "<file>:<line>:<col>: ...". */
static int error_line(const char *msg, const char *path)
{
    size_t n = path ? strlen(path) : 0;
    int line = 0;
    if (n && strncmp(msg, path, n) == 0 && msg[n] == ':' && sscanf(msg + n + 1, "%d:", &line) == 1)
        return line > 0 ? line : 0;
    return 0;
}

static void set_outcome(struct gw_reload_outcome *o, int status, const char *code,
                        const char *message)
{
    o->ok = status == 200;
    o->status = status;
    o->code = code;
    o->message = message;
}

/*
 * Builds and, when everything is ready, commits the next generation. Fills `o` (its message
 * points into `msg`).
 */
static void build_and_swap(const char *path, struct gw_reload_outcome *o, char *msg, size_t len)
{
    struct cfg_error err = {{0}};
    struct gw_config *running = gw_generation_acquire();
    struct gw_config *next = NULL;
    void *tls = NULL;
    size_t prepared = 0;
    const struct gw_module *order[GW_MAX_MODULES];
    size_t n_mods = 0;
    if (!running) {
        snprintf(msg, len, "no configuration is being served");
        set_outcome(o, 503, "stopping", msg);
        goto out;
    }
    next = gw_config_load(path, &err);
    if (!next || gw_config_check_serve(next, &err) != 0) {
        snprintf(msg, len, "%s", err.msg);
        o->line = error_line(err.msg, path);
        set_outcome(o, 422, "invalid", msg);
        goto out;
    }
    if (gw_reload_check_restart(running, next, msg, len) != 0) {
        set_outcome(o, 409, "restart_required", msg);
        goto out;
    }
    for (size_t m = 0; m < gw_n_modules; m++)
        if (gw_modules[m]->prepare)
            order[n_mods++] = gw_modules[m];
    for (; prepared < n_mods; prepared++) {
        memset(&err, 0, sizeof err);
        if (order[prepared]->prepare(running, next, &err) != 0) {
            snprintf(msg, len, "%s", err.msg[0] ? err.msg : "a layer could not prepare");
            int restart = strstr(err.msg, "restart") != NULL;
            set_outcome(o, restart ? 409 : 422, restart ? "restart_required" : "invalid", msg);
            goto out;
        }
    }
    if (gw_server_tls_prepare(next, &tls, msg, len) != 0) {
        set_outcome(o, 422, "invalid", msg);
        goto out;
    }
    /* Certain from here on. */
    for (size_t i = 0; i < n_mods; i++)
        if (order[i]->commit)
            order[i]->commit(next);
    gw_server_tls_commit(tls);
    tls = NULL;
    gw_stats_follow(next);
    prepared = 0;
    const char *was = running->server.log_level ? running->server.log_level : "info";
    const char *now = next->server.log_level ? next->server.log_level : "info";
    enum gw_log_level lvl = GW_LOG_INFO;
    if (strcmp(was, now) != 0 && gw_log_level_parse(now, &lvl) == 0)
        gw_log_setup(lvl, 2);
    gw_generation_swap(next);
    o->generation = next->generation;
    reload_notify_all();
    next = NULL;
    snprintf(msg, len, "configuration reloaded");
    set_outcome(o, 200, "ok", msg);
out:
    while (prepared > 0) {
        const struct gw_module *mod = order[--prepared];
        if (mod->abort)
            mod->abort(next);
    }
    gw_server_tls_abort(tls);
    if (next)
        gw_config_free(next);
    gw_generation_release(running);
    if (!o->generation)
        o->generation = gw_generation_current_number();
}

static void *reload_thread(void *unused)
{
    (void)unused;
    pthread_setname_np(pthread_self(), "tg-reload");
    pthread_mutex_lock(&R.lock);
    for (;;) {
        char *path = R.path ? strdup(R.path) : NULL;
        const char *source = R.source;
        struct waiter *waiters = R.waiters;
        R.waiters = NULL;
        R.again = 0;
        pthread_mutex_unlock(&R.lock);

        char msg[768] = "";
        struct gw_reload_outcome o = {0};
        uint64_t t0 = gw_mono_ms();
        if (path)
            build_and_swap(path, &o, msg, sizeof msg);
        else
            set_outcome(&o, 500, "error", "out of memory");
        o.duration_ms = gw_mono_ms() - t0;
        char fields[160];
        snprintf(fields, sizeof fields,
                 "\"source\":\"%s\",\"outcome\":\"%s\",\"generation\":%llu,\"duration_ms\":%llu",
                 source, o.code, (unsigned long long)o.generation,
                 (unsigned long long)o.duration_ms);
        if (o.ok)
            gw_log(GW_LOG_INFO, "reload", NULL, fields, "configuration reloaded from %s", path);
        else
            gw_log(GW_LOG_ERROR, "reload_failed", NULL, fields,
                   "reload refused, the running configuration keeps serving: %s", o.message);
        free(path);

        pthread_mutex_lock(&R.lock);
        R.have_last = 1;
        R.last_ok = o.ok;
        R.last_status = o.status;
        R.last_line = o.line;
        snprintf(R.last_code, sizeof R.last_code, "%s", o.code);
        snprintf(R.last_message, sizeof R.last_message, "%s", o.message);
        R.last_generation = o.generation;
        R.last_duration_ms = o.duration_ms;
        R.last_at_ms = gw_now_ns() / 1000000u;
        if (o.ok)
            R.succeeded++;
        else
            R.failed++;
        /* Done before the answers go out, so that a request made on reading one is taken. */
        int again = R.again && !R.stopping;
        if (!again)
            R.running = 0;
        else
            R.source = "signal";
        pthread_mutex_unlock(&R.lock);
        while (waiters) {
            struct waiter *next = waiters->next;
            waiters->done(waiters->arg, &o);
            free(waiters);
            waiters = next;
        }
        if (!again)
            return NULL;
        pthread_mutex_lock(&R.lock);
    }
}

int gw_reload_request(const char *source,
                      void (*done)(void *arg, const struct gw_reload_outcome *o), void *arg)
{
    struct waiter *w = NULL;
    if (done && !(w = calloc(1, sizeof *w)))
        return GW_RELOAD_REFUSED;
    if (w) {
        w->done = done;
        w->arg = arg;
    }
    int rc = GW_RELOAD_STARTED;
    pthread_t joinable = 0;
    int join = 0;
    pthread_mutex_lock(&R.lock);
    if (R.stopping || !R.path) {
        rc = GW_RELOAD_REFUSED;
    } else if (R.running) {
        /* A signal folds into one more run; an answer-waiting request is told it is busy. */
        if (!w)
            R.again = 1;
        rc = GW_RELOAD_BUSY;
    } else {
        if (R.have_thread) {
            joinable = R.thread;
            join = 1;
            R.have_thread = 0;
        }
        R.running = 1;
        R.source = source;
        if (w) {
            w->next = R.waiters;
            R.waiters = w;
            w = NULL;
        }
        if (pthread_create(&R.thread, NULL, reload_thread, NULL) != 0) {
            R.running = 0;
            free(R.waiters);
            R.waiters = NULL;
            rc = GW_RELOAD_REFUSED;
        } else {
            R.have_thread = 1;
        }
    }
    pthread_mutex_unlock(&R.lock);
    /* The previous thread has no more work (it cleared `running`); joining reaps it. */
    if (join)
        pthread_join(joinable, NULL);
    free(w);
    return rc;
}

void gw_reload_on_signal(void)
{
    int rc = gw_reload_request("signal", NULL, NULL);
    if (rc == GW_RELOAD_BUSY)
        gw_log_info("reload", "SIGHUP received while a reload runs: one more follows it");
    else if (rc == GW_RELOAD_REFUSED)
        gw_log_warn("reload", "SIGHUP received while shutting down: not reloading");
    else
        gw_log_info("reload", "SIGHUP received: reloading the configuration");
}

void gw_reload_refuse(void)
{
    pthread_mutex_lock(&R.lock);
    R.stopping = 1;
    pthread_mutex_unlock(&R.lock);
}

void gw_reload_shutdown(void)
{
    pthread_mutex_lock(&R.lock);
    R.stopping = 1;
    int join = R.have_thread;
    pthread_t t = R.thread;
    R.have_thread = 0;
    pthread_mutex_unlock(&R.lock);
    if (join)
        pthread_join(t, NULL);
    pthread_mutex_lock(&R.lock);
    free(R.path);
    R.path = NULL;
    pthread_mutex_unlock(&R.lock);
}

json_t *gw_reload_status_json(void)
{
    pthread_mutex_lock(&R.lock);
    json_t *last = json_null();
    if (R.have_last) {
        last = json_pack("{s:b, s:s, s:s, s:I, s:I, s:I}", "ok", R.last_ok, "outcome", R.last_code,
                         "message", R.last_message, "generation", (json_int_t)R.last_generation,
                         "duration_ms", (json_int_t)R.last_duration_ms, "at_unix_ms",
                         (json_int_t)R.last_at_ms);
        if (last && R.last_line)
            json_object_set_new(last, "line", json_integer(R.last_line));
    }
    json_t *o = json_pack("{s:I, s:b, s:I, s:I, s:I, s:o*}", "generation",
                          (json_int_t)gw_generation_current_number(), "running", R.running,
                          "succeeded", (json_int_t)R.succeeded, "failed", (json_int_t)R.failed,
                          "generations_alive", (json_int_t)gw_generation_alive(), "last", last);
    pthread_mutex_unlock(&R.lock);
    return o;
}

void gw_reload_metrics(struct gw_metrics_out *out)
{
    pthread_mutex_lock(&R.lock);
    uint64_t ok = R.succeeded, failed = R.failed, at = R.last_at_ms, dur = R.last_duration_ms;
    int last_ok = R.last_ok, have = R.have_last;
    pthread_mutex_unlock(&R.lock);
    metrics_family(out, "toolgate_config_reloads_total", "counter",
                   "Configuration reloads that ended, by outcome.");
    struct metrics_label s[] = {{"outcome", "success"}}, f[] = {{"outcome", "failure"}};
    metrics_sample_u64(out, "toolgate_config_reloads_total", s, 1, ok);
    metrics_sample_u64(out, "toolgate_config_reloads_total", f, 1, failed);
    metrics_family(out, "toolgate_config_last_reload_timestamp_seconds", "gauge",
                   "When the last reload ended (Unix time; 0: none yet).");
    metrics_sample(out, "toolgate_config_last_reload_timestamp_seconds", NULL, 0,
                   (double)at / 1000.0);
    metrics_single_u64(out, "toolgate_config_last_reload_success", "gauge",
                       "1 when the last reload succeeded (or none was tried), 0 when it failed.",
                       (uint64_t)(!have || last_ok));
    metrics_single_u64(out, "toolgate_config_last_reload_duration_ms", "gauge",
                       "How long the last reload took, in milliseconds.", dur);
    metrics_single_u64(out, "toolgate_config_generations_alive", "gauge",
                       "Configuration generations in memory (the current one and any still "
                       "held by requests that started on an earlier one).",
                       (uint64_t)gw_generation_alive());
}
