/*
 * limits layer: the pipeline slot. For each request's tool calls it
 *   1. runs the loop detector (warn, deny, cool down),
 *   2. reserves the estimated cost against every budget that covers the call and admits the
 *      call through every rate limit that covers it, all or nothing (a denial leaves no trace
 *      in the other limits),
 *   3. records the reservation in the ledger before the call is forwarded,
 * and after the response settles each call: the backend's reported cost
 * (_meta["toolgate/cost"]) replaces the estimate, a call that was sent is charged its estimate
 * whatever became of its answer, and a call that never left is refunded.
 *
 * With the memory store steps 1 and 2 are synchronous, and on a worker step 3 waits (GW_ASYNC)
 * for the ledger's batch of this loop turn to be committed; with Redis, step 2 is one script
 * round trip on the worker's loop (GW_ASYNC), and Redis holds the spend.
 */
#include "layers/layer.h"
#include "layers/limits/limits_request.h"
#include "lib/digest.h"
#include "lib/log.h"
#include "lib/timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct limits_runtime *limits_rt;

static __thread uv_loop_t *thread_loop;

void limits_set_thread_loop(void *loop)
{
    thread_loop = loop;
}

uv_loop_t *limits_loop_for(const struct gw_request *req)
{
    return gw_request_loop(req) ? gw_request_loop(req) : thread_loop;
}

static void lreq_free(void *p)
{
    struct lreq *s = p;
    if (!s)
        return;
    for (size_t i = 0; i < s->n_res; i++) {
        free(s->res[i].ledger_key);
        free(s->res[i].redis_key);
    }
    for (size_t i = 0; s->rr && i < s->rr->n_rrates; i++)
        free(s->rr->rkeys[i]);
    free(s->admission);
    free(s->rr);
    free(s->calls);
    free(s);
}

/* ---- principal keys ---- */

static const char *or_none(const char *s)
{
    /* A limit keyed by a claim the token lacks shares one bucket: it still limits. */
    return s && *s ? s : "(none)";
}

static void per_parts(enum limits_per per, const struct gw_identity *id, const char *tool,
                      const char **a, const char **b)
{
    *b = NULL;
    switch (per) {
    case LIMITS_PER_TENANT:
        *a = or_none(id->tenant);
        break;
    case LIMITS_PER_TOOL:
        *a = tool;
        break;
    case LIMITS_PER_USER_TOOL:
        *a = or_none(id->subject);
        *b = tool;
        break;
    case LIMITS_PER_TENANT_TOOL:
        *a = or_none(id->tenant);
        *b = tool;
        break;
    case LIMITS_PER_CLIENT:
        *a = or_none(id->client_id);
        break;
    default:
        *a = or_none(id->subject);
        break;
    }
}

/* Stable (process-independent) key names for Redis: no principal value appears in them. */
static char *redis_key(const struct limits_config *lc, const char *kind, const char *name,
                       int64_t period, const char *a, const char *b)
{
    uint8_t md[GW_SHA256_LEN];
    struct gw_sha256_ctx ctx;
    gw_sha256_init(&ctx);
    gw_sha256_update(&ctx, a, strlen(a) + 1);
    gw_sha256_update(&ctx, b ? b : "", b ? strlen(b) + 1 : 1);
    if (gw_sha256_final(&ctx, md) != 0)
        return NULL;
    char hex[33];
    gw_hex(md, 16, hex);
    char buf[256];
    if (period >= 0)
        snprintf(buf, sizeof buf, "%s{limits}:%s:%s:%lld:%s", lc->redis_prefix, kind, name,
                 (long long)period, hex);
    else
        snprintf(buf, sizeof buf, "%s{limits}:%s:%s:%s", lc->redis_prefix, kind, name, hex);
    return strdup(buf);
}

/* ---- decisions ---- */

static int deny_unavailable(struct gw_request *req, struct gw_decision *out, const char *why)
{
    gw_decision_deny(out, 503, JSONRPC_INTERNAL_ERROR, "limits.unavailable",
                     "Usage limits cannot be checked right now; try again shortly.");
    gw_log(GW_LOG_WARN, "limits_unavailable", req->id, NULL, "limits layer denied: %s", why);
    return GW_DENY;
}

static uint64_t ns_to_ms_ceil(uint64_t ns)
{
    return (ns + 999999) / 1000000;
}

static uint64_t ns_to_s_ceil(uint64_t ns)
{
    return (ns + 999999999ULL) / 1000000000ULL;
}

static void pass_decision(struct gw_decision *out, const char *code, const char *reason)
{
    out->verdict = GW_PASS;
    snprintf(out->reason_code, sizeof out->reason_code, "%s", code);
    snprintf(out->reason, sizeof out->reason, "%s", reason);
}

static void state_name(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src);
}

/*
 * RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers): one list member per
 * rate limit that applied to the call, quota per window and what is left of it.
 */
static void add_rate_headers(struct gw_request *req, const struct limits_config *lc,
                             const size_t *rate_index, const struct gcra_result *r, size_t n)
{
    char policy[1024] = "", state[1024] = "";
    size_t pl = 0, sl = 0;
    for (size_t i = 0; i < n; i++) {
        const struct limits_rate *rl = &lc->rates[rate_index[i]];
        uint64_t w = (rl->window_ms + 999) / 1000;
        int64_t rem = r[i].remaining < 0 ? 0 : r[i].remaining;
        int a = snprintf(policy + pl, sizeof policy - pl, "%s\"%s\";q=%llu;w=%llu", pl ? ", " : "",
                         rl->name, (unsigned long long)rl->limit, (unsigned long long)(w ? w : 1));
        int b = snprintf(
            state + sl, sizeof state - sl, "%s\"%s\";r=%lld;t=%llu", sl ? ", " : "", rl->name,
            (long long)rem,
            (unsigned long long)ns_to_s_ceil(r[i].allowed ? r[i].reset_ns : r[i].retry_ns));
        if (a < 0 || b < 0 || (size_t)a >= sizeof policy - pl || (size_t)b >= sizeof state - sl)
            break;
        pl += (size_t)a;
        sl += (size_t)b;
    }
    if (pl) {
        gw_request_add_response_header(req, "RateLimit-Policy", policy);
        gw_request_add_response_header(req, "RateLimit", state);
    }
}

const char *limits_loop_flag_names(unsigned f, char *buf, size_t n)
{
    static const struct {
        unsigned flag;
        const char *name;
    } names[] = {{GW_LOOP_IDENTICAL, "identical"}, {GW_LOOP_NO_PROGRESS, "no_progress"},
                 {GW_LOOP_CYCLE, "cycle"},         {GW_LOOP_SESSION_CAP, "max_calls"},
                 {GW_LOOP_COOLDOWN, "cooldown"},   {GW_LOOP_NEAR_IDENTICAL, "near_identical"}};
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (f & names[i].flag) {
            int w = snprintf(buf + used, n - used, "%s%s", used ? "," : "", names[i].name);
            if (w < 0 || (size_t)w >= n - used)
                break;
            used += (size_t)w;
        }
    return buf;
}

/* ---- the request path ---- */

static int is_tool_call(const struct mcp_message *m)
{
    return m->kind == MCP_REQUEST && m->method && strcmp(m->method, "tools/call") == 0 && m->target;
}

/* Returns 0, 1 when there are too many calls, -1 when memory is out. */
static int collect_calls(struct gw_request *req, const struct limits_config *lc, struct lreq *s)
{
    size_t n = 0;
    for (size_t i = 0; i < req->rpc.n; i++)
        n += is_tool_call(&req->rpc.msgs[i]);
    if (n > LIMITS_MAX_CALLS)
        return 1;
    if (n && !(s->calls = calloc(n, sizeof *s->calls)))
        return -1;
    for (size_t i = 0; i < req->rpc.n; i++) {
        const struct mcp_message *m = &req->rpc.msgs[i];
        if (!is_tool_call(m))
            continue;
        struct lcall_state *c = &s->calls[s->n_calls++];
        c->m = m;
        c->tool = m->target;
        c->tool_len = strlen(m->target);
        if (lc->loops.enabled)
            limits_fingerprints(lc, c->tool, c->tool_len, m->arguments, &c->fingerprint, &c->near);
        c->estimate = limits_cost_estimate(lc, c->tool, c->tool_len, m->arguments);
    }
    return 0;
}

static int run_loops(struct gw_request *req, const struct limits_config *lc, struct lreq *s,
                     struct gw_decision *out)
{
    struct gw_limits_state *st = &req->limits;
    int64_t now = (int64_t)gw_mono_ns();
    unsigned warn_flags = 0;
    for (size_t i = 0; i < s->n_calls; i++) {
        struct lcall_state *c = &s->calls[i];
        struct limits_key ut;
        limits_key_make(&ut, "lt", 0, or_none(req->identity.subject), c->tool, 0);
        struct lloop_verdict v;
        lloop_call(limits_rt->loops, &s->user, s->have_session ? &s->session : NULL, &ut,
                   c->fingerprint, c->near, now, &v);
        c->loop_flags = v.flags;
        st->loop_flags |= v.flags;
        if (v.action == 2) {
            char names[96];
            char reason[sizeof out->reason];
            st->loop_action = 2;
            snprintf(reason, sizeof reason,
                     "This call repeats a pattern that makes no progress (%s); it was denied. "
                     "Change the approach instead of retrying.",
                     limits_loop_flag_names(v.flags, names, sizeof names));
            gw_decision_deny(out, 200, 0, "limits.loop", reason);
            snprintf(out->rule_id, sizeof out->rule_id, "loops.%s", names);
            out->retry_after_ms = v.retry_ms;
            st->retry_after_ms = v.retry_ms;
            return GW_DENY;
        }
        if (v.action == 3)
            return gw_decision_deny(out, 503, JSONRPC_INTERNAL_ERROR, "limits.unavailable",
                                    "Loop detection cannot keep this call's history right now "
                                    "(too many users and sessions are tracked); try again "
                                    "later.");
        if (v.action == 1) {
            c->warned = 1;
            warn_flags |= v.flags;
        }
    }
    if (warn_flags) {
        char names[96], value[160];
        st->loop_action = 1;
        snprintf(value, sizeof value, "limits.loop; flags=\"%s\"",
                 limits_loop_flag_names(warn_flags, names, sizeof names));
        gw_request_add_response_header(req, "Toolgate-Warning", value);
    }
    return GW_PASS;
}

/* Builds the budget reservations: one per budget that covers a call with a cost. */
static int build_reservations(struct gw_request *req, const struct limits_config *lc,
                              struct lreq *s, int redis)
{
    int64_t now_s = (int64_t)(gw_now_ns() / 1000000000ULL);
    for (size_t b = 0; b < lc->n_budgets; b++) {
        const struct limits_budget *bg = &lc->budgets[b];
        int64_t amount = 0;
        for (size_t i = 0; i < s->n_calls; i++)
            if (limits_tools_match(bg->tools, bg->n_tools, s->calls[i].tool, s->calls[i].tool_len))
                amount += s->calls[i].estimate;
        if (amount <= 0)
            continue;
        struct lreservation *r = &s->res[s->n_res++];
        const char *a, *unused;
        per_parts(bg->per, &req->identity, "", &a, &unused);
        r->budget = b;
        r->amount = amount;
        limits_period_of(&lc->tz, bg->period, now_s, &r->period, &r->expires);
        limits_key_make(&r->key, "b", (unsigned)b, a, bg->name, r->period);
        if (!(r->ledger_key = strdup(a)))
            return -1;
        if (redis && !(r->redis_key = redis_key(lc, "b", bg->name, r->period, a, NULL)))
            return -1;
    }
    return 0;
}

struct rate_plan {
    struct lrate_op ops[LIMITS_MAX_RATES * 4];
    size_t rate_index[LIMITS_MAX_RATES * 4];
    size_t n;
};

/*
 * One op per (rate limit, key): the calls of a batch that share a key add up. A batch whose
 * calls need more distinct keys than the plan holds is refused (batches are rare and short).
 */
static int build_rate_plan(struct gw_request *req, const struct limits_config *lc, struct lreq *s,
                           struct rate_plan *p)
{
    p->n = 0;
    for (size_t r = 0; r < lc->n_rates; r++) {
        const struct limits_rate *rl = &lc->rates[r];
        for (size_t i = 0; i < s->n_calls; i++) {
            const struct lcall_state *c = &s->calls[i];
            if (!limits_tools_match(rl->tools, rl->n_tools, c->tool, c->tool_len))
                continue;
            const char *a, *b;
            per_parts(rl->per, &req->identity, c->tool, &a, &b);
            struct limits_key k;
            limits_key_make(&k, "r", (unsigned)r, a, b, 0);
            size_t j;
            for (j = 0; j < p->n; j++)
                if (p->ops[j].key.h1 == k.h1 && p->ops[j].key.h2 == k.h2)
                    break;
            if (j < p->n) {
                p->ops[j].n++;
                continue;
            }
            if (p->n >= sizeof p->ops / sizeof p->ops[0])
                return -1;
            p->ops[p->n] = (struct lrate_op){
                .key = k, .interval_ns = rl->interval_ns, .tolerance_ns = rl->tolerance_ns, .n = 1};
            p->rate_index[p->n] = r;
            p->n++;
        }
    }
    return 0;
}

static int deny_rate(struct gw_request *req, const struct limits_config *lc,
                     struct gw_decision *out, const size_t *rate_index, const struct gcra_result *r,
                     size_t n)
{
    struct gw_limits_state *st = &req->limits;
    uint64_t retry = 0;
    size_t worst = 0;
    char ids[sizeof out->rule_id] = "";
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].allowed)
            continue;
        if (r[i].retry_ns >= retry) {
            retry = r[i].retry_ns;
            worst = i;
        }
        int w = snprintf(ids + used, sizeof ids - used, "%s%s", used ? "," : "",
                         lc->rates[rate_index[i]].name);
        if (w > 0 && (size_t)w < sizeof ids - used)
            used += (size_t)w;
    }
    const struct limits_rate *rl = &lc->rates[rate_index[worst]];
    char reason[sizeof out->reason];
    uint64_t ms = ns_to_ms_ceil(retry);
    snprintf(reason, sizeof reason,
             "Rate limit \"%s\" reached (%llu calls per %llums); retry in %llu ms.", rl->name,
             (unsigned long long)rl->limit, (unsigned long long)rl->window_ms,
             (unsigned long long)ms);
    gw_decision_deny(out, 200, 0, "limits.rate", reason);
    snprintf(out->rule_id, sizeof out->rule_id, "%s", ids);
    out->retry_after_ms = ms ? ms : 1;
    st->retry_after_ms = out->retry_after_ms;
    state_name(st->rate_name, sizeof st->rate_name, rl->name);
    st->rate_remaining = 0;
    add_rate_headers(req, lc, rate_index, r, n);
    return GW_DENY;
}

static int deny_budget(struct gw_request *req, const struct limits_config *lc,
                       struct gw_decision *out, const struct lreservation *r, int64_t spent)
{
    struct gw_limits_state *st = &req->limits;
    const struct limits_budget *bg = &lc->budgets[r->budget];
    char cap[32], used[32], cost[32], reason[sizeof out->reason];
    limits_money_format(bg->cap, cap, sizeof cap);
    limits_money_format(spent, used, sizeof used);
    limits_money_format(r->amount, cost, sizeof cost);
    static const char *const periods[] = {"day", "week", "month"};
    snprintf(reason, sizeof reason,
             "Spending budget \"%s\" would be exceeded: %s of %s used this %s, this call "
             "costs %s.",
             bg->name, used, cap, periods[bg->period], cost);
    gw_decision_deny(out, 200, 0, "limits.budget", reason);
    snprintf(out->rule_id, sizeof out->rule_id, "%s", bg->name);
    int64_t now_s = (int64_t)(gw_now_ns() / 1000000000ULL);
    out->retry_after_ms = r->expires > now_s ? (uint64_t)(r->expires - now_s) * 1000 : 1000;
    st->retry_after_ms = out->retry_after_ms;
    state_name(st->budget_name, sizeof st->budget_name, bg->name);
    st->budget_remaining = bg->cap - spent > 0 ? bg->cap - spent : 0;
    return GW_DENY;
}

/* Fills the audit state after an admission: tightest budget and rate limit. */
static void record_admission(struct gw_request *req, const struct limits_config *lc, struct lreq *s,
                             const int64_t *spent, const size_t *rate_index,
                             const struct gcra_result *r, size_t n_rates)
{
    struct gw_limits_state *st = &req->limits;
    for (size_t i = 0; i < s->n_res; i++) {
        int64_t rem = lc->budgets[s->res[i].budget].cap - spent[i];
        if (st->budget_remaining < 0 || rem < st->budget_remaining) {
            st->budget_remaining = rem < 0 ? 0 : rem;
            state_name(st->budget_name, sizeof st->budget_name, lc->budgets[s->res[i].budget].name);
        }
        st->cost_reserved += s->res[i].amount;
    }
    for (size_t i = 0; i < n_rates; i++)
        if (st->rate_remaining < 0 || r[i].remaining < st->rate_remaining) {
            st->rate_remaining = r[i].remaining;
            state_name(st->rate_name, sizeof st->rate_name, lc->rates[rate_index[i]].name);
        }
    s->reserved = s->n_res > 0;
    add_rate_headers(req, lc, rate_index, r, n_rates);
}

/* The reservations as ledger changes. Returns how many. */
static size_t reservation_ops(const struct lreq *s, const struct limits_config *lc,
                              struct limits_ledger_op *ops)
{
    for (size_t i = 0; i < s->n_res; i++) {
        const struct lreservation *r = &s->res[i];
        ops[i] = (struct limits_ledger_op){lc->budgets[r->budget].name, r->ledger_key, r->period,
                                           r->expires, r->amount};
    }
    return s->n_res;
}

/* Writes the reservations to the ledger now, all or none. Returns 0 or -1. */
static int ledger_reserve(struct lreq *s, const struct limits_config *lc)
{
    if (!limits_rt->ledger || s->n_res == 0)
        return 0;
    struct limits_ledger_op ops[LIMITS_MAX_BUDGETS];
    return limits_ledger_add_all(limits_rt->ledger, ops, reservation_ops(s, lc, ops));
}

/* An admission waiting for the ledger: what record_admission needs afterwards. */
struct ladmission {
    int64_t spent[LIMITS_MAX_BUDGETS];
    size_t rate_index[LIMITS_MAX_RATES * 4];
    struct gcra_result r[LIMITS_MAX_RATES * 4];
    size_t n_rates;
};

static void release_memory(struct lreq *s)
{
    int64_t now_s = (int64_t)(gw_now_ns() / 1000000000ULL);
    for (size_t i = 0; i < s->n_res; i++)
        lstore_budget_add(limits_rt->budgets, &s->res[i].key, -s->res[i].amount, s->res[i].expires,
                          now_s);
}

static void finish_pass(struct gw_request *req, struct gw_decision *out);

/* The ledger's batch holding the reservations was written (ok) or not: the call goes on. */
static void on_ledger(void *arg, int ok)
{
    struct lreq *s = arg;
    struct gw_request *req = s->req;
    const struct limits_config *lc = limits_config_of(req->cfg);
    struct gw_decision *out = &req->decision[GW_STAGE_LIMITS];
    struct ladmission *a = s->admission;
    int v;
    if (!ok || !a || !limits_rt) {
        if (limits_rt)
            release_memory(s);
        v = deny_unavailable(req, out, "the budget ledger cannot be written");
    } else {
        record_admission(req, lc, s, a->spent, a->rate_index, a->r, a->n_rates);
        finish_pass(req, out);
        v = GW_PASS;
    }
    free(s->admission);
    s->admission = NULL;
    gw_pipeline_resume(req, v);
}

/* The in-process path: budgets, then rates; all or nothing. */
static int check_memory(struct gw_request *req, const struct limits_config *lc, struct lreq *s,
                        struct gw_decision *out)
{
    struct rate_plan plan;
    struct lbudget_op bops[LIMITS_MAX_BUDGETS];
    int64_t spent[LIMITS_MAX_BUDGETS];
    int64_t now_s = (int64_t)(gw_now_ns() / 1000000000ULL);
    if (build_rate_plan(req, lc, s, &plan) != 0)
        return deny_unavailable(req, out, "too many distinct rate-limit keys in one batch");
    for (size_t i = 0; i < s->n_res; i++)
        bops[i] = (struct lbudget_op){.key = s->res[i].key,
                                      .cap = lc->budgets[s->res[i].budget].cap,
                                      .amount = s->res[i].amount,
                                      .expires = s->res[i].expires};
    if (s->n_res) {
        int rc = lstore_budget_reserve(limits_rt->budgets, bops, s->n_res, now_s);
        if (rc < 0)
            return deny_unavailable(req, out, "the budget store is full");
        if (rc == 0) {
            for (size_t i = 0; i < s->n_res; i++)
                if (!bops[i].allowed)
                    return deny_budget(req, lc, out, &s->res[i], bops[i].spent);
        }
    }
    if (plan.n) {
        int rc = lstore_rate(limits_rt->rates, plan.ops, plan.n, (int64_t)gw_mono_ns());
        if (rc != 1) {
            release_memory(s);
            if (rc < 0)
                return deny_unavailable(req, out, "the rate-limit store is full");
            struct gcra_result r[LIMITS_MAX_RATES * 4];
            for (size_t i = 0; i < plan.n; i++)
                r[i] = plan.ops[i].r;
            return deny_rate(req, lc, out, plan.rate_index, r, plan.n);
        }
    }
    for (size_t i = 0; i < s->n_res; i++)
        spent[i] = bops[i].spent;
    struct gcra_result r[LIMITS_MAX_RATES * 4];
    for (size_t i = 0; i < plan.n; i++)
        r[i] = plan.ops[i].r;
    /* On a worker the reservations go with this loop turn's batch; the call waits for it. */
    uv_loop_t *loop = limits_rt->ledger && s->n_res ? limits_loop_for(req) : NULL;
    if (loop && (s->admission = malloc(sizeof *s->admission))) {
        struct ladmission *a = s->admission;
        memcpy(a->spent, spent, s->n_res * sizeof *spent);
        memcpy(a->rate_index, plan.rate_index, plan.n * sizeof *plan.rate_index);
        memcpy(a->r, r, plan.n * sizeof *r);
        a->n_rates = plan.n;
        struct limits_ledger_op ops[LIMITS_MAX_BUDGETS];
        size_t n = reservation_ops(s, lc, ops);
        if (limits_ledger_queue(limits_rt->ledger, loop, ops, n, on_ledger, s) == 0)
            return GW_ASYNC;
        free(s->admission);
        s->admission = NULL;
    }
    if (ledger_reserve(s, lc) != 0) {
        release_memory(s);
        return deny_unavailable(req, out, "the budget ledger cannot be written");
    }
    record_admission(req, lc, s, spent, plan.rate_index, r, plan.n);
    return GW_PASS;
}

static void finish_pass(struct gw_request *req, struct gw_decision *out)
{
    pass_decision(out, "limits.pass", "Within limits.");
}

/* ---- Redis path ---- */

static void on_redis(void *arg, const struct lredis_result *res)
{
    struct lreq *s = arg;
    struct gw_request *req = s->req;
    const struct limits_config *lc = limits_config_of(req->cfg);
    struct gw_decision *out = &req->decision[GW_STAGE_LIMITS];
    int v;
    if (!res->ok) {
        if (lc->fail == LIMITS_FAIL_LOCAL) {
            req->limits.store_fallback = 1;
            gw_log(GW_LOG_WARN, "limits_fallback", req->id, NULL,
                   "Redis is unavailable; deciding with in-process limits (limits.fail: local)");
            s->redis = 0;
            v = check_memory(req, lc, s, out);
            if (v == GW_ASYNC)
                return; /* the ledger's callback goes on */
        } else {
            v = deny_unavailable(req, out, "Redis is unavailable (limits.fail: closed)");
        }
    } else if (!res->allowed) {
        if (res->deny_kind == 2 && res->deny_index < s->n_res) {
            v = deny_budget(req, lc, out, &s->res[res->deny_index], res->spent[res->deny_index]);
        } else {
            struct gcra_result r[LIMITS_MAX_RATES];
            for (size_t i = 0; i < s->rr->n_rrates; i++)
                r[i] = res->rate[i];
            v = deny_rate(req, lc, out, s->rr->rrate_index, r, s->rr->n_rrates);
        }
    } else {
        struct gcra_result r[LIMITS_MAX_RATES];
        for (size_t i = 0; i < s->rr->n_rrates; i++)
            r[i] = res->rate[i];
        record_admission(req, lc, s, res->spent, s->rr->rrate_index, r, s->rr->n_rrates);
        v = GW_PASS;
    }
    if (v == GW_PASS)
        finish_pass(req, out);
    gw_pipeline_resume(req, v);
}

static int check_redis(struct gw_request *req, const struct limits_config *lc, struct lreq *s,
                       struct gw_decision *out)
{
    uv_loop_t *loop = limits_loop_for(req);
    if (!loop)
        return deny_unavailable(req, out, "no event loop for Redis on this thread");
    if (!(s->rr = calloc(1, sizeof *s->rr)))
        return deny_unavailable(req, out, "out of memory");
    /* One key per (rate limit, principal): the calls of a batch that share a key add up. */
    for (size_t r = 0; r < lc->n_rates; r++) {
        const struct limits_rate *rl = &lc->rates[r];
        for (size_t i = 0; i < s->n_calls; i++) {
            if (!limits_tools_match(rl->tools, rl->n_tools, s->calls[i].tool, s->calls[i].tool_len))
                continue;
            const char *a, *b;
            per_parts(rl->per, &req->identity, s->calls[i].tool, &a, &b);
            char *key = redis_key(lc, "r", rl->name, -1, a, b);
            if (!key)
                return deny_unavailable(req, out, "out of memory");
            size_t k;
            for (k = 0; k < s->rr->n_rrates; k++)
                if (strcmp(s->rr->rkeys[k], key) == 0)
                    break;
            if (k < s->rr->n_rrates) {
                s->rr->rrates[k].n++;
                free(key);
                continue;
            }
            if (s->rr->n_rrates >= LIMITS_MAX_RATES) {
                free(key);
                return deny_unavailable(req, out, "too many distinct rate-limit keys in one batch");
            }
            s->rr->rkeys[k] = key;
            s->rr->rrates[k] = (struct lredis_rate){.key = key,
                                                    .interval_us = rl->interval_ns / 1000,
                                                    .tolerance_us = rl->tolerance_ns / 1000,
                                                    .n = 1};
            if (s->rr->rrates[k].interval_us == 0)
                s->rr->rrates[k].interval_us = 1;
            s->rr->rrate_index[k] = r;
            s->rr->n_rrates++;
        }
    }
    int64_t now_s = (int64_t)(gw_now_ns() / 1000000000ULL);
    for (size_t i = 0; i < s->n_res; i++)
        s->rr->rbudgets[i] = (struct lredis_budget){.key = s->res[i].redis_key,
                                                    .cap = lc->budgets[s->res[i].budget].cap,
                                                    .amount = s->res[i].amount,
                                                    .ttl_s = s->res[i].expires - now_s + 86400};
    s->redis = 1;
    lredis_set_host(&req->host);
    lredis_check(lc, loop, s->rr->rrates, s->rr->n_rrates, s->rr->rbudgets, s->n_res, on_redis, s);
    return GW_ASYNC;
}

static int limits_check(struct gw_request *req, struct gw_decision *out)
{
    const struct limits_config *lc = req->cfg ? limits_config_of(req->cfg) : NULL;
    struct gw_limits_state *st = &req->limits;
    st->budget_remaining = -1;
    st->rate_remaining = -1;
    if (!lc) {
        pass_decision(out, "limits.none", "No limits are configured.");
        return GW_PASS;
    }
    if (!limits_rt)
        return deny_unavailable(req, out, "the limits limits_rt is not started");
    int redis = lc->redis_host != NULL;
    snprintf(st->store, sizeof st->store, "%s", redis ? "redis" : "memory");
    struct lreq *s = calloc(1, sizeof *s);
    if (!s)
        return deny_unavailable(req, out, "out of memory");
    req->layer_state[GW_STAGE_LIMITS] = s;
    req->layer_state_free[GW_STAGE_LIMITS] = lreq_free;
    s->req = req;
    int rc = collect_calls(req, lc, s);
    if (rc < 0)
        return deny_unavailable(req, out, "out of memory");
    if (rc > 0) {
        gw_decision_deny(out, 200, JSONRPC_INVALID_REQUEST, "limits.batch",
                         "Too many tool calls in one batch.");
        return GW_DENY;
    }
    if (s->n_calls == 0) {
        pass_decision(out, "limits.not_governed", "Not a tool call.");
        return GW_PASS;
    }
    st->governed = 1;
    for (size_t i = 0; i < s->n_calls; i++)
        st->cost_estimated += s->calls[i].estimate;
    limits_key_make(&s->user, "lu", 0, or_none(req->identity.subject), NULL, 0);
    if (req->session_id) {
        s->have_session = 1;
        limits_key_make(&s->session, "ls", 0, or_none(req->identity.subject), req->session_id, 0);
    }
    if (lc->loops.enabled && limits_rt->loops && run_loops(req, lc, s, out) == GW_DENY)
        return GW_DENY;
    if (build_reservations(req, lc, s, redis) != 0)
        return deny_unavailable(req, out, "out of memory");
    if (redis)
        return check_redis(req, lc, s, out);
    int v = check_memory(req, lc, s, out);
    if (v == GW_PASS)
        finish_pass(req, out);
    return v;
}

const struct gw_layer_ops limits_layer = {
    .check = limits_check,
    .on_response = limits_on_response,
    .on_complete = limits_on_complete,
};
