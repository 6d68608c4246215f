#include "layers/layer.h"
#include "lib/timeutil.h"

#include <string.h>

static const struct gw_layer_ops *const layers[GW_STAGE_COUNT] = {
    [GW_STAGE_IDENTITY] = &identity_layer, [GW_STAGE_SAFETY] = &safety_layer,
    [GW_STAGE_POLICY] = &policy_layer,     [GW_STAGE_LIMITS] = &limits_layer,
    [GW_STAGE_ROUTING] = &routing_layer,   [GW_STAGE_AUDIT] = &audit_layer,
};

/*
 * The audit stage runs even when an earlier stage denied: every request that reached a route
 * leaves a record. Its own verdict can only turn an allow into a deny (queue full -> 503).
 */
static void run(struct gw_request *req)
{
    req->pipeline_running = 1;
    while (req->next_stage < GW_STAGE_COUNT) {
        enum gw_stage s = req->next_stage;
        if ((req->deciding_stage != GW_STAGE_COUNT || req->protocol_error) && s != GW_STAGE_AUDIT) {
            req->next_stage = GW_STAGE_AUDIT;
            continue;
        }
        const struct gw_layer_ops *ops = layers[s];
        struct gw_decision *d = &req->decision[s];
        uint64_t t0 = gw_mono_ns();
        req->pipeline_early_verdict = -1;
        int v = ops->check ? ops->check(req, d) : GW_PASS;
        req->timing.stage_ns[s] += gw_mono_ns() - t0;
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
        if (v == GW_DENY && req->deciding_stage == GW_STAGE_COUNT)
            req->deciding_stage = s;
        req->next_stage = (enum gw_stage)(s + 1);
    }
    req->pipeline_running = 0;
    int allowed = req->deciding_stage == GW_STAGE_COUNT && !req->protocol_error;
    req->pipeline_done(req, allowed ? GW_PASS : GW_DENY);
}

void gw_pipeline_start(struct gw_request *req, gw_pipeline_done_cb done)
{
    req->next_stage = GW_STAGE_IDENTITY;
    req->pipeline_done = done;
    run(req);
}

void gw_pipeline_resume(struct gw_request *req, int verdict)
{
    if (req->pipeline_running) {
        req->pipeline_early_verdict = verdict;
        return;
    }
    enum gw_stage s = req->next_stage;
    if (verdict != GW_PASS) {
        if (req->decision[s].verdict != GW_DENY)
            gw_decision_deny(&req->decision[s], 500, JSONRPC_INTERNAL_ERROR, "internal.layer_error",
                             "An internal error stopped this request.");
        if (req->deciding_stage == GW_STAGE_COUNT)
            req->deciding_stage = s;
    } else {
        req->decision[s].verdict = GW_PASS;
    }
    req->next_stage = (enum gw_stage)(s + 1);
    run(req);
}

int gw_pipeline_response(struct gw_request *req, json_t *msg, int *modified,
                         struct gw_decision *out)
{
    for (int s = 0; s < GW_STAGE_COUNT; s++) {
        const struct gw_layer_ops *ops = layers[s];
        if (!ops->on_response)
            continue;
        int v = ops->on_response(req, msg, modified, out);
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
    for (int s = 0; s < GW_STAGE_COUNT; s++)
        if (layers[s]->on_complete)
            layers[s]->on_complete(req);
}
