#include "layers/layer.h"
#include "core/timeutil.h"

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
static void run(struct gw_pipeline *p)
{
    struct gw_request *req = p->req;
    p->running = 1;
    while (p->next < GW_STAGE_COUNT) {
        enum gw_stage s = p->next;
        if (req->deciding_stage != GW_STAGE_COUNT && s != GW_STAGE_AUDIT) {
            p->next = GW_STAGE_AUDIT;
            continue;
        }
        const struct gw_layer_ops *ops = layers[s];
        struct gw_decision *d = &req->decision[s];
        uint64_t t0 = gw_mono_ns();
        int v = ops->check ? ops->check(req, d) : GW_PASS;
        req->timing.stage_ns[s] += gw_mono_ns() - t0;
        if (v == GW_ASYNC) {
            p->running = 0;
            return;
        }
        if (v != GW_PASS && v != GW_DENY) {
            gw_decision_deny(d, 500, JSONRPC_INTERNAL_ERROR, "internal.layer_error",
                             "An internal error stopped this request.");
            v = GW_DENY;
        }
        d->verdict = (enum gw_verdict)v;
        if (v == GW_DENY && req->deciding_stage == GW_STAGE_COUNT)
            req->deciding_stage = s;
        p->next = (enum gw_stage)(s + 1);
    }
    p->running = 0;
    p->done(req, req->deciding_stage == GW_STAGE_COUNT ? GW_PASS : GW_DENY);
}

void gw_pipeline_start(struct gw_pipeline *p, struct gw_request *req, gw_pipeline_done_cb done)
{
    memset(p, 0, sizeof *p);
    p->req = req;
    p->next = GW_STAGE_IDENTITY;
    p->done = done;
    run(p);
}

void gw_pipeline_resume(struct gw_pipeline *p, int verdict)
{
    struct gw_request *req = p->req;
    enum gw_stage s = p->next;
    if (verdict != GW_PASS) {
        if (req->decision[s].verdict != GW_DENY)
            gw_decision_deny(&req->decision[s], 500, JSONRPC_INTERNAL_ERROR,
                             "internal.layer_error", "An internal error stopped this request.");
        if (req->deciding_stage == GW_STAGE_COUNT)
            req->deciding_stage = s;
    } else {
        req->decision[s].verdict = GW_PASS;
    }
    p->next = (enum gw_stage)(s + 1);
    run(p);
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
