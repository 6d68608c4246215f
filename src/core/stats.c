/* stats: the core's counters and their exposition (stats.h). */
#include "core/stats.h"
#include "core/reload.h"
#include "core/module.h"
#include "core/route_kind.h"
#include "core/server.h"
#include "lib/alloc.h"
#include "lib/timeutil.h"
#include "mcp/methods.h"
#include "mcp/session.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The core's own reason codes: requests refused before the layers, and internal errors. */
static const char *const core_reasons[] = {
    "protocol.bad_cursor",
    "protocol.bad_header",
    "protocol.bad_tool",
    "protocol.batch",
    "protocol.bridge",
    "protocol.content_type",
    "protocol.header_mismatch",
    "protocol.host",
    "protocol.invalid_params",
    "protocol.invalid_request",
    "protocol.method",
    "protocol.origin",
    "protocol.parse_error",
    "protocol.unknown_method",
    "protocol.unsupported_version",
    "internal.layer_error",
    "internal.memory",
    "internal.session",
    NULL,
};

/* Backend failures, as the relay names them in req->upstream_error ("upstream.<kind>"). */
static const char *const upstream_kinds[] = {
    "bad_json", "bad_message",     "bridge",  "connect", "idle",    "lost",      "not_understood",
    "protocol", "refused_request", "session", "start",   "timeout", "too_large", "other",
};
#define N_UPSTREAM_KINDS (sizeof upstream_kinds / sizeof upstream_kinds[0])

/* Seconds, end to end and per backend: 0.5ms to 30s. */
static const uint64_t request_bounds_ns[] = {
    500000,    1000000,   2500000,    5000000,    10000000,   25000000,    50000000,    100000000,
    250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000, 30000000000,
};
/* A stage's own work on the worker thread: 1us to 100ms. */
static const uint64_t stage_bounds_ns[] = {
    1000,   2500,   5000,    10000,   25000,   50000,    100000,
    250000, 500000, 1000000, 2500000, 5000000, 25000000, 100000000,
};
#define N_BOUNDS(a) (sizeof a / sizeof a[0])

/* Packed key of toolgate_requests_total: route slot+1, method, layer, reason (0 = none). */
#define KEY(route, method, layer, reason)                                                          \
    (((uint64_t)(route) << 40) | ((uint64_t)(method) << 24) | ((uint64_t)(layer) << 16) |          \
     (uint64_t)(reason))
#define REQUEST_SERIES 8192

/*
 * Per route and per backend series are kept by name, in slots claimed when a generation
 * with the name is loaded (at start, and by each reload before its generation serves): a
 * route a reload keeps keeps its counts, a new one gets a slot, a removed one keeps its last
 * counts. Slots are never given back, so the count is bounded here; a route or backend past
 * the bound is counted in toolgate_metrics_route_series_dropped_total only.
 */
#define STATS_MAX_ROUTES 256
#define STATS_MAX_BACKENDS 1024

struct route_slot {
    char *name;
    struct metrics_histogram duration;
};

struct backend_slot {
    char *route, *name;
    struct metrics_histogram duration;
    atomic_uint_fast64_t errors[N_UPSTREAM_KINDS];
};

static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;

static struct {
    int started;
    struct metrics_table requests;
    struct metrics_histogram stage_duration[GW_MAX_STAGES];
    /* Written by gw_stats_follow under names_lock (start, the reload thread); read by any
     * thread up to the published counts. */
    struct route_slot *routes;
    atomic_size_t n_routes;
    struct backend_slot *backends;
    atomic_size_t n_backends;
    atomic_uint_fast64_t unslotted; /* requests on a route or backend without a slot */
    /* Method table index -> index in `methods` (names deduplicated, sorted). */
    unsigned short *method_of_spec;
    const char **methods;
    size_t n_methods;
    const char **reasons; /* sorted, deduplicated; index + 1 is the key part */
    size_t n_reasons;
    uint64_t generation;
} S;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts and deduplicates a vector of strings in place; returns the new count. */
static size_t sort_unique(const char **v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_str);
    size_t out = 0;
    for (size_t i = 0; i < n; i++)
        if (out == 0 || strcmp(v[out - 1], v[i]) != 0)
            v[out++] = v[i];
    return out;
}

static int collect_reasons(void)
{
    size_t n = 0, cap = 0;
    for (const char *const *r = core_reasons; *r; r++)
        cap++;
    for (size_t m = 0; m < gw_n_modules; m++)
        for (const char *const *r = gw_modules[m]->reason_codes; r && *r; r++)
            cap++;
    for (size_t k = 0; k < gw_n_route_kinds; k++)
        for (const char *const *r = gw_route_kinds[k]->reason_codes; r && *r; r++)
            cap++;
    S.reasons = malloc((cap ? cap : 1) * sizeof *S.reasons);
    if (!S.reasons)
        return -1;
    for (const char *const *r = core_reasons; *r; r++)
        S.reasons[n++] = *r;
    for (size_t m = 0; m < gw_n_modules; m++)
        for (const char *const *r = gw_modules[m]->reason_codes; r && *r; r++)
            S.reasons[n++] = *r;
    for (size_t k = 0; k < gw_n_route_kinds; k++)
        for (const char *const *r = gw_route_kinds[k]->reason_codes; r && *r; r++)
            S.reasons[n++] = *r;
    S.n_reasons = sort_unique(S.reasons, n);
    return 0;
}

static int collect_methods(void)
{
    size_t n_table = 0;
    const struct mcp_method *table = mcp_method_table(&n_table);
    S.methods = malloc((n_table ? n_table : 1) * sizeof *S.methods);
    S.method_of_spec = calloc(n_table ? n_table : 1, sizeof *S.method_of_spec);
    if (!S.methods || !S.method_of_spec)
        return -1;
    for (size_t i = 0; i < n_table; i++)
        S.methods[i] = table[i].name;
    S.n_methods = sort_unique(S.methods, n_table);
    for (size_t i = 0; i < n_table; i++) {
        const char *key = table[i].name;
        const char **hit = bsearch(&key, S.methods, S.n_methods, sizeof *S.methods, cmp_str);
        S.method_of_spec[i] = (unsigned short)(hit - S.methods + 1);
    }
    return 0;
}

/* The slot of route `name` (claimed when new), as an id (slot + 1), or 0 when full. */
static unsigned route_id(const char *name)
{
    size_t n = atomic_load_explicit(&S.n_routes, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        if (strcmp(S.routes[i].name, name) == 0)
            return (unsigned)i + 1;
    if (n >= STATS_MAX_ROUTES || !(S.routes[n].name = strdup(name)))
        return 0;
    metrics_histogram_init(&S.routes[n].duration, request_bounds_ns, N_BOUNDS(request_bounds_ns),
                           1e-9);
    atomic_store_explicit(&S.n_routes, n + 1, memory_order_release);
    return (unsigned)n + 1;
}

static unsigned backend_id(const char *route, const char *name)
{
    size_t n = atomic_load_explicit(&S.n_backends, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        if (strcmp(S.backends[i].route, route) == 0 && strcmp(S.backends[i].name, name) == 0)
            return (unsigned)i + 1;
    if (n >= STATS_MAX_BACKENDS)
        return 0;
    struct backend_slot *b = &S.backends[n];
    b->route = strdup(route);
    b->name = strdup(name);
    if (!b->route || !b->name) {
        free(b->route);
        free(b->name);
        b->route = b->name = NULL;
        return 0;
    }
    metrics_histogram_init(&b->duration, request_bounds_ns, N_BOUNDS(request_bounds_ns), 1e-9);
    for (size_t k = 0; k < N_UPSTREAM_KINDS; k++)
        atomic_store_explicit(&b->errors[k], 0, memory_order_relaxed);
    atomic_store_explicit(&S.n_backends, n + 1, memory_order_release);
    return (unsigned)n + 1;
}

void gw_stats_follow(const struct gw_config *cfg)
{
    if (!S.started || !cfg)
        return;
    pthread_mutex_lock(&names_lock);
    for (size_t r = 0; r < cfg->n_routes; r++) {
        /* The core's slot of a generation not yet serving (see gw_route.stats_id). */
        struct gw_route *route = (struct gw_route *)&cfg->routes[r];
        route->stats_id = route_id(route->name);
        for (size_t b = 0; b < route->n_backends; b++)
            route->backends[b].stats_id = backend_id(route->name, route->backends[b].name);
    }
    pthread_mutex_unlock(&names_lock);
}

int gw_stats_start(const struct gw_config *cfg)
{
    gw_stats_stop();
    if (metrics_table_init(&S.requests, REQUEST_SERIES) != 0 || collect_reasons() != 0 ||
        collect_methods() != 0)
        goto fail;
    S.routes = calloc(STATS_MAX_ROUTES, sizeof *S.routes);
    S.backends = calloc(STATS_MAX_BACKENDS, sizeof *S.backends);
    if (!S.routes || !S.backends)
        goto fail;
    for (size_t s = 0; s < GW_MAX_STAGES; s++)
        metrics_histogram_init(&S.stage_duration[s], stage_bounds_ns, N_BOUNDS(stage_bounds_ns),
                               1e-9);
    S.generation++;
    S.started = 1;
    gw_stats_follow(cfg);
    return 0;
fail:
    gw_stats_stop();
    return -1;
}

void gw_stats_stop(void)
{
    uint64_t generation = S.generation;
    metrics_table_free(&S.requests);
    for (size_t i = 0; S.routes && i < atomic_load(&S.n_routes); i++)
        free(S.routes[i].name);
    for (size_t i = 0; S.backends && i < atomic_load(&S.n_backends); i++) {
        free(S.backends[i].route);
        free(S.backends[i].name);
    }
    free(S.routes);
    free(S.backends);
    free(S.method_of_spec);
    free(S.methods);
    free(S.reasons);
    memset(&S, 0, sizeof S);
    S.generation = generation;
}

static size_t reason_index(const char *code)
{
    if (!code || !code[0])
        return 0;
    const char **hit = bsearch(&code, S.reasons, S.n_reasons, sizeof *S.reasons, cmp_str);
    return hit ? (size_t)(hit - S.reasons) + 1 : S.n_reasons + 1;
}

const char *gw_stats_reason_label(const char *code)
{
    size_t i = reason_index(code);
    return i == 0 ? "" : i <= S.n_reasons ? S.reasons[i - 1] : "other";
}

static size_t upstream_kind(const char *error)
{
    static const char prefix[] = "upstream.";
    if (strncmp(error, prefix, sizeof prefix - 1) != 0)
        return N_UPSTREAM_KINDS - 1;
    for (size_t k = 0; k + 1 < N_UPSTREAM_KINDS; k++)
        if (strcmp(error + sizeof prefix - 1, upstream_kinds[k]) == 0)
            return k;
    return N_UPSTREAM_KINDS - 1;
}

void gw_stats_request_done(const struct gw_request *req)
{
    if (!S.started || !req->route)
        return;
    size_t route = req->route->stats_id; /* slot + 1 */
    if (route == 0 || route > atomic_load_explicit(&S.n_routes, memory_order_acquire)) {
        atomic_fetch_add_explicit(&S.unslotted, 1, memory_order_relaxed);
        return;
    }
    size_t method = 0; /* "other": no message, or a method let through by allow_methods */
    if (req->rpc.n && req->rpc.msgs[0].spec) {
        size_t n_table = 0;
        const struct mcp_method *table = mcp_method_table(&n_table);
        size_t i = (size_t)(req->rpc.msgs[0].spec - table);
        if (i < n_table)
            method = S.method_of_spec[i];
    }
    size_t layer = 0, reason = 0;
    if (req->protocol_error) {
        layer = 1;
    } else if (req->deciding_stage != GW_STAGE_NONE) {
        layer = (size_t)req->deciding_stage + 2;
    }
    const struct gw_decision *d = gw_request_denial(req);
    if (d)
        reason = reason_index(d->reason_code[0] ? d->reason_code : "other");
    metrics_table_add(&S.requests, KEY(route, method, layer, reason), 1);

    uint64_t end = req->timing.end_ns ? req->timing.end_ns : gw_mono_ns();
    if (end > req->timing.start_ns)
        metrics_histogram_observe(&S.routes[route - 1].duration, end - req->timing.start_ns);
    for (size_t s = 0; s < gw_n_modules && s < GW_MAX_STAGES; s++)
        if (req->timing.stage_ns[s])
            metrics_histogram_observe(&S.stage_duration[s], req->timing.stage_ns[s]);

    const struct gw_backend *be = req->backend ? req->backend : req->route->backends;
    size_t bi = (size_t)(be - req->route->backends);
    if (!be || bi >= req->route->n_backends)
        return;
    size_t id = be->stats_id;
    if (id == 0 || id > atomic_load_explicit(&S.n_backends, memory_order_acquire)) {
        atomic_fetch_add_explicit(&S.unslotted, 1, memory_order_relaxed);
        return;
    }
    struct backend_slot *slot = &S.backends[id - 1];
    if (req->upstream_sent && req->timing.upstream_start_ns && end > req->timing.upstream_start_ns)
        metrics_histogram_observe(&slot->duration, end - req->timing.upstream_start_ns);
    if (req->upstream_error[0])
        atomic_fetch_add_explicit(&slot->errors[upstream_kind(req->upstream_error)], 1,
                                  memory_order_relaxed);
}

/* ---- exposition ---- */

static const char *layer_label(size_t layer)
{
    return layer == 0 ? "" : layer == 1 ? "protocol" : gw_stage_name((int)layer - 2);
}

static void write_request_series(void *arg, uint64_t key, uint64_t count)
{
    struct gw_metrics_out *out = arg;
    size_t route = (size_t)(key >> 40), method = (size_t)(key >> 24) & 0xffff;
    size_t layer = (size_t)(key >> 16) & 0xff, reason = (size_t)key & 0xffff;
    if (route == 0 || route > atomic_load_explicit(&S.n_routes, memory_order_acquire))
        return;
    struct metrics_label l[] = {
        {"route", S.routes[route - 1].name},
        {"method", method && method <= S.n_methods ? S.methods[method - 1] : "other"},
        {"decision", layer ? "deny" : "allow"},
        {"layer", layer_label(layer)},
        {"reason", reason == 0             ? ""
                   : reason <= S.n_reasons ? S.reasons[reason - 1]
                                           : "other"},
    };
    metrics_sample_u64(out, "toolgate_requests_total", l, 5, count);
}

static void write_backends(struct gw_metrics_out *out)
{
    size_t n = atomic_load_explicit(&S.n_backends, memory_order_acquire);
    metrics_family(out, "toolgate_upstream_duration_seconds", "histogram",
                   "From sending a request to a backend until its answer ended.");
    for (size_t b = 0; b < n; b++) {
        struct metrics_label l[] = {{"route", S.backends[b].route},
                                    {"backend", S.backends[b].name}};
        metrics_histogram_write(out, "toolgate_upstream_duration_seconds", l, 2,
                                &S.backends[b].duration);
    }
    metrics_family(out, "toolgate_upstream_errors_total", "counter",
                   "Backend exchanges that failed, by kind (connect, timeout, lost, ...).");
    for (size_t b = 0; b < n; b++)
        for (size_t k = 0; k < N_UPSTREAM_KINDS; k++) {
            uint64_t v = atomic_load_explicit(&S.backends[b].errors[k], memory_order_relaxed);
            if (!v)
                continue;
            struct metrics_label l[] = {{"route", S.backends[b].route},
                                        {"backend", S.backends[b].name},
                                        {"kind", upstream_kinds[k]}};
            metrics_sample_u64(out, "toolgate_upstream_errors_total", l, 3, v);
        }
}

void gw_stats_write(const struct gw_config *cfg, struct gw_metrics_out *out)
{
    struct metrics_label build[] = {
        {"version", TOOLGATE_VERSION}, {"revision", TOOLGATE_REV}, {"allocator", gw_allocator()}};
    metrics_family(out, "toolgate_build_info", "gauge", "The running build; always 1.");
    metrics_sample(out, "toolgate_build_info", build, 3, 1);
    metrics_single_u64(out, "toolgate_config_generation", "gauge",
                       "The configuration generation being served (1 for the first loaded).",
                       cfg ? cfg->generation : S.generation);
    metrics_family(out, "toolgate_open_connections", "gauge",
                   "Client connections open, on every listener.");
    metrics_sample(out, "toolgate_open_connections", NULL, 0, (double)gw_server_open_connections());
    metrics_single_u64(out, "toolgate_sessions", "gauge", "MCP sessions toolgate keeps.",
                       mcp_session_count());
    metrics_single_u64(out, "toolgate_sessions_evicted_total", "counter",
                       "Live MCP sessions the memory store dropped to make room for new ones "
                       "(identity.sessions.entries too small; the dropped ones get 404).",
                       mcp_session_evictions());
    gw_reload_metrics(out);
    if (!S.started)
        return;
    metrics_family(out, "toolgate_requests_total", "counter",
                   "Requests on routes that ended, by route, MCP method, decision, deciding "
                   "layer and reason code.");
    metrics_table_each(&S.requests, write_request_series, out);
    metrics_single_u64(out, "toolgate_metrics_series_dropped_total", "counter",
                       "Request counts not kept because the series table was full.",
                       atomic_load_explicit(&S.requests.dropped, memory_order_relaxed));
    metrics_single_u64(out, "toolgate_metrics_route_series_dropped_total", "counter",
                       "Requests not counted by route or backend because the series kept by "
                       "name were full (256 routes, 1024 backends since start).",
                       atomic_load_explicit(&S.unslotted, memory_order_relaxed));
    metrics_family(out, "toolgate_request_duration_seconds", "histogram",
                   "Requests on a route, from the first byte read to the end of the answer.");
    size_t n_routes = atomic_load_explicit(&S.n_routes, memory_order_acquire);
    for (size_t r = 0; r < n_routes; r++) {
        struct metrics_label l[] = {{"route", S.routes[r].name}};
        metrics_histogram_write(out, "toolgate_request_duration_seconds", l, 1,
                                &S.routes[r].duration);
    }
    metrics_family(out, "toolgate_stage_duration_seconds", "histogram",
                   "Time a pipeline stage worked on a request on its worker thread (waits for "
                   "keys or stores not included).");
    for (size_t s = 0; s < gw_n_modules && s < GW_MAX_STAGES; s++) {
        if (!gw_modules[s]->layer)
            continue;
        struct metrics_label l[] = {{"stage", gw_modules[s]->name}};
        metrics_histogram_write(out, "toolgate_stage_duration_seconds", l, 1, &S.stage_duration[s]);
    }
    write_backends(out);
}
