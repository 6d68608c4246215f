/*
 * limits_ops: what the limits layer tells operators: readiness (with a Redis store, whether
 * Redis answers a PING within redis_timeout, on a connection of its own, at most one probe a
 * second) and metrics (rate-limit, budget and loop events, fallbacks to local limits, spend
 * settled). Counters are process-wide relaxed atomics, like the core's: a reload must not
 * reset them. No label names a user, tenant or tool.
 */
#include "core/redis_conn.h"
#include "layers/limits/limits-int.h"
#include "layers/limits/limits_request.h"
#include "lib/metrics.h"
#include "lib/probe.h"

#include <stdatomic.h>

#include <stdio.h>
#include <string.h>

#define PROBE_INTERVAL_MS 1000

static struct gw_probe redis_probe = GW_PROBE_INIT;

static int ping_redis(void *arg, char *detail, size_t len)
{
    const struct limits_config *lc = arg;
    return gw_redis_ping(lc->redis_host, lc->redis_port, (int64_t)lc->redis_timeout_ms, detail,
                         len);
}

void limits_ready(const struct gw_config *cfg, json_t *checks)
{
    const struct limits_config *lc = limits_config_of(cfg);
    if (!lc || !lc->redis_host)
        return;
    char detail[160];
    int ok = gw_probe_run(&redis_probe, PROBE_INTERVAL_MS, ping_redis, (void *)lc, detail,
                          sizeof detail);
    json_t *c = json_pack("{s:s}", "state", ok ? "ok" : "failing");
    if (c && !ok)
        json_object_set_new(c, "detail", json_string(detail));
    json_object_set_new(checks, "limits_redis", c);
}

/* ---- metrics ---- */

enum limits_event {
    EV_RATE_DENIED,
    EV_BUDGET_DENIED,
    EV_LOOP_WARNED,
    EV_LOOP_DENIED,
    EV_STORE_FALLBACK,
    EV_UNAVAILABLE,
    EV_COUNT
};
static const char *const event_names[EV_COUNT] = {
    "rate_denied", "budget_denied", "loop_warned", "loop_denied", "store_fallback", "unavailable",
};
static const struct {
    unsigned flag;
    const char *name;
} loop_kinds[] = {
    {GW_LOOP_IDENTICAL, "identical"}, {GW_LOOP_NO_PROGRESS, "no_progress"},
    {GW_LOOP_CYCLE, "cycle"},         {GW_LOOP_SESSION_CAP, "session_cap"},
    {GW_LOOP_COOLDOWN, "cooldown"},   {GW_LOOP_NEAR_IDENTICAL, "near_identical"},
};
#define N_LOOP_KINDS (sizeof loop_kinds / sizeof loop_kinds[0])

static atomic_uint_fast64_t events[EV_COUNT];
static atomic_uint_fast64_t loops[N_LOOP_KINDS];
static atomic_uint_fast64_t spend_micro; /* settled cost, micro-units */

#define ADD(c, n) atomic_fetch_add_explicit(&(c), (n), memory_order_relaxed)
#define GET(c) atomic_load_explicit(&(c), memory_order_relaxed)

void limits_count_complete(const struct gw_request *req)
{
    const struct gw_limits_state *st = &req->limits;
    if (!st->governed)
        return;
    if (req->deciding_stage == GW_STAGE_LIMITS) {
        const char *code = req->decision[GW_STAGE_LIMITS].reason_code;
        if (strcmp(code, "limits.rate") == 0)
            ADD(events[EV_RATE_DENIED], 1);
        else if (strcmp(code, "limits.budget") == 0)
            ADD(events[EV_BUDGET_DENIED], 1);
        else if (strcmp(code, "limits.unavailable") == 0)
            ADD(events[EV_UNAVAILABLE], 1);
    }
    if (st->loop_action == 1)
        ADD(events[EV_LOOP_WARNED], 1);
    else if (st->loop_action == 2)
        ADD(events[EV_LOOP_DENIED], 1);
    for (size_t k = 0; k < N_LOOP_KINDS; k++)
        if (st->loop_flags & loop_kinds[k].flag)
            ADD(loops[k], 1);
    if (st->store_fallback)
        ADD(events[EV_STORE_FALLBACK], 1);
    if (st->settled && st->cost_settled > 0)
        ADD(spend_micro, (uint64_t)st->cost_settled);
    limits_admin_note(req);
}

void limits_metrics(const struct gw_config *cfg, struct gw_metrics_out *out)
{
    if (!limits_config_of(cfg))
        return;
    metrics_family(out, "toolgate_limits_events_total", "counter",
                   "Rate-limit and budget denials, loop warnings and denials, fallbacks to "
                   "local limits while Redis was unavailable, and refusals for it.");
    for (int e = 0; e < EV_COUNT; e++) {
        struct metrics_label l[] = {{"event", event_names[e]}};
        metrics_sample_u64(out, "toolgate_limits_events_total", l, 1, GET(events[e]));
    }
    metrics_family(out, "toolgate_limits_loops_total", "counter",
                   "Calls the loop detector flagged, by what it saw.");
    for (size_t k = 0; k < N_LOOP_KINDS; k++) {
        struct metrics_label l[] = {{"kind", loop_kinds[k].name}};
        metrics_sample_u64(out, "toolgate_limits_loops_total", l, 1, GET(loops[k]));
    }
    metrics_family(out, "toolgate_limits_spend_total", "counter",
                   "Cost settled against budgets, in the configuration's money units.");
    metrics_sample(out, "toolgate_limits_spend_total", NULL, 0, (double)GET(spend_micro) / 1e6);
    /* The in-process stores (limits.max_keys each; with Redis, the local fallback's). */
    if (limits_rt && limits_rt->rates && limits_rt->budgets) {
        struct lstore *stores[2] = {limits_rt->rates, limits_rt->budgets};
        static const char *const store_names[2] = {"rate", "budget"};
        metrics_family(out, "toolgate_limits_store_keys", "gauge",
                       "Keys the in-process limit stores hold (bound: limits.max_keys each).");
        for (int i = 0; i < 2; i++) {
            struct metrics_label l[] = {{"store", store_names[i]}};
            metrics_sample_u64(out, "toolgate_limits_store_keys", l, 1, lstore_count(stores[i]));
        }
        metrics_family(out, "toolgate_limits_store_evicted_total", "counter",
                       "Expired keys swept from the in-process limit stores to make room.");
        for (int i = 0; i < 2; i++) {
            struct metrics_label l[] = {{"store", store_names[i]}};
            metrics_sample_u64(out, "toolgate_limits_store_evicted_total", l, 1,
                               lstore_evicted(stores[i]));
        }
        metrics_family(out, "toolgate_limits_store_refused_total", "counter",
                       "New keys refused because a store was full of live keys (the call "
                       "got 503).");
        for (int i = 0; i < 2; i++) {
            struct metrics_label l[] = {{"store", store_names[i]}};
            metrics_sample_u64(out, "toolgate_limits_store_refused_total", l, 1,
                               lstore_refused(stores[i]));
        }
    }
    limits_admin_metrics(out);
}
