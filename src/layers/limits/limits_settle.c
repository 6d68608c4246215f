/*
 * limits_settle: the limits layer after the call: warnings and loop results on the answer,
 * settlement of each call's reservation (the backend's reported cost, the estimate once the
 * call was sent, or a refund when it never left), and the process runtime (stores, loop
 * detector, ledger).
 */
#include "layers/layer.h"
#include "layers/limits/limits_request.h"
#include "lib/log.h"
#include "lib/timeutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the response path ---- */

static struct lcall_state *call_for(struct lreq *s, const json_t *id)
{
    if (!id)
        return NULL;
    for (size_t i = 0; i < s->n_calls; i++)
        if (s->calls[i].m->id && json_equal(s->calls[i].m->id, id))
            return &s->calls[i];
    return NULL;
}

static void add_warning(json_t *result, const struct lcall_state *c)
{
    json_t *meta = json_object_get(result, "_meta");
    if (!json_is_object(meta)) {
        meta = json_object();
        if (!meta || json_object_set_new(result, "_meta", meta) != 0)
            return;
    }
    char names[96];
    json_object_set_new(
        meta, "toolgate/warning",
        json_pack("{s:s, s:s, s:s}", "reason", "limits.loop", "flags",
                  limits_loop_flag_names(c->loop_flags, names, sizeof names), "message",
                  "This call repeats earlier calls without progress; repeating it further will "
                  "be denied."));
}

/* A cost the backend reported with an answer: _meta["toolgate/cost"] of the payload. */
static void read_reported(struct lcall_state *c, const json_t *payload)
{
    int64_t cost;
    json_t *meta = json_is_object(payload) ? json_object_get(payload, "_meta") : NULL;
    json_t *reported = json_is_object(meta) ? json_object_get(meta, "toolgate/cost") : NULL;
    if (reported && !c->reported && limits_money_from_json(reported, &cost) == 0) {
        c->reported = 1;
        c->settled = cost;
    }
}

static void on_message(struct gw_request *req, struct lreq *s, json_t *msg, int *modified)
{
    struct lcall_state *c = call_for(s, json_object_get(msg, "id"));
    if (!c)
        return;
    json_t *result = json_object_get(msg, "result");
    if (!json_is_object(result)) {
        json_t *error = json_object_get(msg, "error");
        if (!error)
            return;
        /* An error may still report what the work cost (error.data._meta), even 0. */
        c->failed = 1;
        if (json_is_object(error))
            read_reported(c, json_object_get(error, "data"));
        /* The same error again and again is no progress either (its code and message). */
        if (limits_rt && limits_rt->loops && limits_config_of(req->cfg)->loops.enabled) {
            uint64_t h = (limits_json_hash(json_object_get(error, "code")) * 31 +
                          limits_json_hash(json_object_get(error, "message"))) ^
                         0x6572726f72ULL;
            lloop_result(limits_rt->loops, &s->user, s->have_session ? &s->session : NULL,
                         c->fingerprint, h);
        }
        return;
    }
    c->answered = 1;
    read_reported(c, result);
    if (limits_rt && limits_rt->loops && limits_config_of(req->cfg)->loops.enabled) {
        /* The result without _meta: bookkeeping fields must not hide a repeated answer. */
        json_t *content = json_object_get(result, "content");
        json_t *structured = json_object_get(result, "structuredContent");
        uint64_t h = limits_json_hash(content) * 31 + limits_json_hash(structured);
        lloop_result(limits_rt->loops, &s->user, s->have_session ? &s->session : NULL,
                     c->fingerprint, h);
    }
    if (c->warned) {
        add_warning(result, c);
        *modified = 1;
    }
}

int limits_on_response(struct gw_request *req, json_t *msg, int *modified, struct gw_decision *out)
{
    (void)out;
    struct lreq *s = req->layer_state[GW_STAGE_LIMITS];
    if (!s || !req->limits.governed || !req->cfg || !limits_config_of(req->cfg))
        return GW_PASS;
    if (json_is_array(msg)) {
        for (size_t i = 0; i < json_array_size(msg); i++)
            on_message(req, s, json_array_get(msg, i), modified);
    } else if (json_is_object(msg)) {
        on_message(req, s, msg, modified);
    }
    return GW_PASS;
}

/*
 * Settles the reservations. A call that never left the gateway (a later layer denied it, the
 * connection to the backend could not be opened) is charged nothing. A call that was sent is
 * charged its estimate whatever became of the answer (an error, an HTTP failure, a timeout,
 * a client that hung up): the backend may have done the work, and hanging up must not be a
 * way to spend without paying. Only the backend can change that, by reporting the cost.
 */
void limits_on_complete(struct gw_request *req)
{
    struct lreq *s = req->layer_state[GW_STAGE_LIMITS];
    struct gw_limits_state *st = &req->limits;
    if (!s || !s->reserved || st->settled || !limits_rt) {
        limits_count_complete(req);
        return;
    }
    const struct limits_config *lc = limits_config_of(req->cfg);
    int sent = gw_request_allowed(req) && req->upstream_sent;
    int64_t charged[LIMITS_MAX_CALLS];
    int64_t total = 0;
    for (size_t i = 0; i < s->n_calls; i++) {
        struct lcall_state *c = &s->calls[i];
        if (!sent)
            charged[i] = 0;
        else if (c->reported)
            charged[i] = c->settled;
        else
            charged[i] = c->estimate;
        total += charged[i];
        st->cost_reported |= sent && c->reported;
    }
    st->cost_settled = total;
    st->refunded = total == 0;
    st->settled = 1;
    int64_t now_s = (int64_t)(gw_now_ns() / 1000000000ULL);
    struct limits_ledger_op ops[LIMITS_MAX_BUDGETS];
    size_t n_ops = 0;
    for (size_t r = 0; r < s->n_res; r++) {
        struct lreservation *res = &s->res[r];
        const struct limits_budget *bg = &lc->budgets[res->budget];
        int64_t settled = 0;
        for (size_t i = 0; i < s->n_calls; i++)
            if (limits_tools_match(bg->tools, bg->n_tools, s->calls[i].tool, s->calls[i].tool_len))
                settled += charged[i];
        int64_t delta = settled - res->amount;
        if (delta == 0)
            continue;
        if (s->redis) {
            uv_loop_t *loop = limits_loop_for(req);
            const char *k = res->redis_key;
            lredis_set_host(&req->host);
            if (loop)
                lredis_budget_add(lc, loop, &k, 1, delta, res->expires - now_s + 86400);
            continue;
        }
        lstore_budget_add(limits_rt->budgets, &res->key, delta, res->expires, now_s);
        if (limits_rt->ledger)
            ops[n_ops++] = (struct limits_ledger_op){bg->name, res->ledger_key, res->period,
                                                     res->expires, delta};
    }
    /* On a worker the settlement goes with this loop turn's batch; nothing waits for it. */
    if (n_ops &&
        limits_ledger_queue(limits_rt->ledger, limits_loop_for(req), ops, n_ops, NULL, NULL) != 0 &&
        limits_ledger_add_all(limits_rt->ledger, ops, n_ops) != 0)
        gw_log(GW_LOG_ERROR, "limits_ledger", req->id, NULL,
               "the settlement of a budget could not be written to the ledger");
    limits_count_complete(req);
}

/* ---- limits_rt ---- */

struct load_ctx {
    const struct limits_config *lc;
    int64_t now;
    size_t rows;
    size_t refused; /* rows the budget table had no room for */
};

static void load_row(void *arg, const char *budget, const char *key, int64_t period,
                     int64_t expires, int64_t amount)
{
    struct load_ctx *ctx = arg;
    for (size_t b = 0; b < ctx->lc->n_budgets; b++) {
        if (strcmp(ctx->lc->budgets[b].name, budget) != 0)
            continue;
        struct limits_key k;
        limits_key_make(&k, "b", (unsigned)b, key, budget, period);
        if (lstore_budget_add(limits_rt->budgets, &k, amount, expires, ctx->now) != 0)
            ctx->refused++;
        ctx->rows++;
    }
}

static void runtime_free(struct limits_runtime *r)
{
    if (!r)
        return;
    lstore_free(r->rates);
    lstore_free(r->budgets);
    lloop_free(r->loops);
    limits_ledger_close(r->ledger);
    free(r);
}

int limits_start(const struct gw_config *cfg)
{
    const struct limits_config *lc = cfg ? limits_config_of(cfg) : NULL;
    if (!lc)
        return 0;
    if (limits_rt)
        return -EALREADY;
    struct limits_runtime *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->lc = lc;
    r->rates = lstore_new(lc->max_keys);
    r->budgets = lstore_new(lc->max_keys);
    /* Histories are KiB each: their own bound, under the tables' (limits.loops.max_tracked). */
    uint64_t tracked = lc->loops.max_tracked < lc->max_keys ? lc->loops.max_tracked : lc->max_keys;
    r->loops = lc->loops.enabled ? lloop_new(&lc->loops, tracked) : NULL;
    if (!r->rates || !r->budgets || (lc->loops.enabled && !r->loops)) {
        runtime_free(r);
        return -ENOMEM;
    }
    /* With Redis the spend lives there; the ledger is for the in-process store. */
    if (lc->n_budgets && !lc->redis_host && strcmp(lc->ledger, "none") != 0) {
        char why[512];
        r->ledger = limits_ledger_open(lc->ledger, why, sizeof why);
        if (!r->ledger) {
            gw_log(GW_LOG_ERROR, "limits_ledger", NULL, NULL, "%s", why);
            runtime_free(r);
            return -EIO;
        }
    }
    limits_rt = r;
    if (r->ledger) {
        struct load_ctx ctx = {lc, (int64_t)(gw_now_ns() / 1000000000ULL), 0, 0};
        int lrc = limits_ledger_load(r->ledger, ctx.now, load_row, &ctx);
        if (lrc == 0 && ctx.refused) {
            /* Spend that is not held would be a fresh budget for those principals. */
            gw_log(GW_LOG_ERROR, "limits_ledger", NULL, NULL,
                   "the ledger %s holds the spend of more principals than limits.max_keys "
                   "leaves room for (%zu rows did not fit); raise limits.max_keys",
                   lc->ledger, ctx.refused);
            limits_rt = NULL;
            runtime_free(r);
            return -ENOSPC;
        }
        if (lrc != 0) {
            gw_log(GW_LOG_ERROR, "limits_ledger", NULL, NULL,
                   "cannot read the spend back from the ledger %s", lc->ledger);
            limits_rt = NULL;
            runtime_free(r);
            return -EIO;
        }
    }
    /* Sessions go where the shared limits go, so every instance knows them. */
    if (lc->redis_host)
        limits_sessions_use_redis(lc);
    return 0;
}

void limits_stop(void)
{
    struct limits_runtime *r = limits_rt;
    limits_rt = NULL;
    limits_sessions_stop();
    runtime_free(r);
}
