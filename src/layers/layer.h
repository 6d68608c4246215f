/*
 * layer: the one interface every governance layer implements, and the pipeline that runs
 * them in the fixed order identity -> safety -> policy -> limits -> routing -> audit.
 *
 * A layer never calls another layer and never writes to the network. It reads the request
 * context, records what it saw, and returns a verdict. Any internal error is a denial (fail
 * closed). A layer that must wait (a key fetch, a Redis round trip) returns GW_ASYNC and
 * later calls gw_pipeline_resume() on the request's worker thread.
 */
#ifndef GW_LAYER_H
#define GW_LAYER_H

#include <jansson.h>

#include "core/request.h"

struct gw_layer_ops {
    const char *name; /* "identity", "safety", ... */
    /* Request path. Fills `out` on deny. Returns GW_PASS, GW_DENY or GW_ASYNC. */
    int (*check)(struct gw_request *req, struct gw_decision *out);
    /*
     * Response path, optional: one decoded JSON-RPC message from upstream (the JSON body, or
     * the data of one SSE event). The layer may change `msg` in place and set *modified.
     * Returns GW_PASS, or GW_DENY to replace the message with an error for the client.
     */
    int (*on_response)(struct gw_request *req, json_t *msg, int *modified, struct gw_decision *out);
    /* Optional: the response has ended (or failed); settle, complete records. */
    void (*on_complete)(struct gw_request *req);
};

extern const struct gw_layer_ops identity_layer;
extern const struct gw_layer_ops safety_layer;
extern const struct gw_layer_ops policy_layer;
extern const struct gw_layer_ops limits_layer;
extern const struct gw_layer_ops routing_layer;
extern const struct gw_layer_ops audit_layer;

/* Called when the pipeline has decided: verdict GW_PASS (forward) or GW_DENY. */
typedef void (*gw_pipeline_done_cb)(struct gw_request *req, int verdict);

/*
 * Runs the layers from the first; calls done (possibly before returning) once decided. A
 * denial by any stage skips the later stages except audit, which sees every request.
 */
void gw_pipeline_start(struct gw_request *req, gw_pipeline_done_cb done);
/*
 * A layer that returned GW_ASYNC reports its verdict here, on the request's own thread (use
 * gw_request_post from other threads); its decision is already in req->decision[stage].
 */
void gw_pipeline_resume(struct gw_request *req, int verdict);
/* Response path: runs each layer's on_response in order; returns GW_PASS or GW_DENY. */
int gw_pipeline_response(struct gw_request *req, json_t *msg, int *modified,
                         struct gw_decision *out);
/* Runs each layer's on_complete, audit last. */
void gw_pipeline_complete(struct gw_request *req);

#endif
