#include "core/pipeline.h"
#include "core/module.h"
#include "lib/timeutil.h"

static const struct gw_layer_ops *stage_ops(int s)
{
    return gw_modules[s]->layer;
}

static int sees_all(int s)
{
    return (gw_modules[s]->flags & GW_MODULE_SEES_ALL) != 0;
}

/*
 * Stages that see every request (audit) run even when an earlier stage denied: every
 * request that reached a route leaves a record. Their own verdict can only turn an allow
 * into a deny (audit: queue full -> 503).
 */
static void run(struct gw_request *req)
{
    int n = (int)gw_n_modules;
    req->pipeline_running = 1;
    while (req->next_stage < n) {
        int s = req->next_stage;
        const struct gw_layer_ops *ops = stage_ops(s);
        if (!ops ||
            ((req->deciding_stage != GW_STAGE_NONE || req->protocol_error) && !sees_all(s))) {
            req->next_stage = s + 1;
            continue;
        }
        struct gw_decision *d = &req->decision[s];
        uint64_t t0 = gw_mono_ns();
        if (!req->timing.stage_begin_ns[s])
            req->timing.stage_begin_ns[s] = t0;
        req->pipeline_early_verdict = -1;
        int v = ops->check ? ops->check(req, d) : GW_PASS;
        req->timing.stage_end_ns[s] = gw_mono_ns();
        req->timing.stage_ns[s] += req->timing.stage_end_ns[s] - t0;
        if (v == GW_ASYNC) {
            if (req->pipeline_early_verdict < 0) {
                req->pipeline_running = 0;
                return;
            }
            /* The layer finished before returning (e.g. posted to its own thread). */
            v = req->pipeline_early_verdict == GW_PASS ? GW_PASS : GW_DENY;
            if (v == GW_DENY && d->verdict != GW_DENY)
                gw_decision_deny(d, 500, JSONRPC_INTERNAL_ERROR, "internal.layer_error",
                                 "An internal error stopped this request.");
        }
        if (v != GW_PASS && v != GW_DENY) {
            gw_decision_deny(d, 500, JSONRPC_INTERNAL_ERROR, "internal.layer_error",
                             "An internal error stopped this request.");
            v = GW_DENY;
        }
        d->verdict = (enum gw_verdict)v;
        if (v == GW_DENY && req->deciding_stage == GW_STAGE_NONE)
            req->deciding_stage = s;
        req->next_stage = s + 1;
    }
    req->pipeline_running = 0;
    int allowed = gw_request_allowed(req);
    for (size_t m = 0; allowed && m < gw_n_modules; m++)
        if (gw_modules[m]->observer && gw_modules[m]->observer->forward)
            gw_modules[m]->observer->forward(req);
    req->pipeline_done(req, allowed ? GW_PASS : GW_DENY);
}

void gw_pipeline_start(struct gw_request *req, gw_pipeline_done_cb done)
{
    req->next_stage = 0;
    req->pipeline_done = done;
    for (size_t m = 0; m < gw_n_modules; m++)
        if (gw_modules[m]->observer && gw_modules[m]->observer->begin)
            gw_modules[m]->observer->begin(req);
    run(req);
}

void gw_pipeline_resume(struct gw_request *req, int verdict)
{
    if (req->pipeline_running) {
        req->pipeline_early_verdict = verdict;
        return;
    }
    int s = req->next_stage;
    req->timing.stage_end_ns[s] = gw_mono_ns();
    if (verdict != GW_PASS) {
        if (req->decision[s].verdict != GW_DENY)
            gw_decision_deny(&req->decision[s], 500, JSONRPC_INTERNAL_ERROR, "internal.layer_error",
                             "An internal error stopped this request.");
        if (req->deciding_stage == GW_STAGE_NONE)
            req->deciding_stage = s;
    } else {
        req->decision[s].verdict = GW_PASS;
    }
    req->next_stage = s + 1;
    run(req);
}

int gw_pipeline_deciding(const struct gw_request *req)
{
    return req->pipeline_done && req->next_stage < (int)gw_n_modules;
}

int gw_pipeline_response(struct gw_request *req, json_t *msg, int *modified,
                         struct gw_decision *out)
{
    for (size_t s = 0; s < gw_n_modules; s++) {
        const struct gw_layer_ops *ops = stage_ops((int)s);
        if (!ops || !ops->on_response)
            continue;
        int v = ops->on_response(req, msg, modified, out);
        if (v == GW_DROP)
            return GW_DROP;
        if (v != GW_PASS) {
            if (out->verdict != GW_DENY)
                gw_decision_deny(out, 502, JSONRPC_INTERNAL_ERROR, "internal.layer_error",
                                 "An internal error stopped this response.");
            return GW_DENY;
        }
    }
    return GW_PASS;
}

void gw_pipeline_complete(struct gw_request *req)
{
    for (size_t s = 0; s < gw_n_modules; s++) {
        const struct gw_layer_ops *ops = stage_ops((int)s);
        if (ops && ops->on_complete)
            ops->on_complete(req);
    }
    for (size_t m = 0; m < gw_n_modules; m++)
        if (gw_modules[m]->observer && gw_modules[m]->observer->end)
            gw_modules[m]->observer->end(req);
}
