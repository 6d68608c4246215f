/*
 * pipeline: runs the stages (the modules that are layers, in list order: identity, safety,
 * policy, limits, routing, audit) on a request, deny by default.
 *
 * A layer never calls another layer and never writes to the network. It reads the request
 * context, records what it saw, and returns a verdict. Any internal error is a denial (fail
 * closed). A layer that must wait (a key fetch, a Redis round trip) returns GW_ASYNC and
 * later calls gw_pipeline_resume() on the request's own thread.
 */
#ifndef GW_PIPELINE_H
#define GW_PIPELINE_H

#include <jansson.h>

#include "core/request.h"

/* Called when the pipeline has decided: verdict GW_PASS (forward) or GW_DENY. */
typedef void (*gw_pipeline_done_cb)(struct gw_request *req, int verdict);

/*
 * Runs the stages from the first; calls done (possibly before returning) once decided. A
 * denial by any stage skips the later stages except those that see every request (audit).
 */
void gw_pipeline_start(struct gw_request *req, gw_pipeline_done_cb done);
/*
 * A layer that returned GW_ASYNC reports its verdict here, on the request's own thread (use
 * gw_request_post from other threads); its decision is already in req->decision[stage].
 */
void gw_pipeline_resume(struct gw_request *req, int verdict);
/* True while stages remain to run (a layer is deciding). */
int gw_pipeline_deciding(const struct gw_request *req);
/*
 * Response path: runs each layer's on_response in order; returns GW_PASS, GW_DENY (out
 * filled) or GW_DROP (the message is not to reach the client).
 */
int gw_pipeline_response(struct gw_request *req, json_t *msg, int *modified,
                         struct gw_decision *out);
/* Runs each layer's on_complete in order (audit, the last, completes the record). */
void gw_pipeline_complete(struct gw_request *req);

#endif
