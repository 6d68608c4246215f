/*
 * ask: toolgate's own requests to the client, in the session era (protocol revisions with
 * sessions and server-to-client requests). A layer deciding a call may need the client to
 * answer something first (the user's approval, through elicitation/create): it asks through
 * here and returns GW_ASYNC; the core turns the call's answer into an event stream, sends the
 * request on it, and hands the client's answer (a later POST of the same session, whose
 * JSON-RPC id is toolgate's) back to the layer on the call's own thread. The layer never
 * writes to the network; the core does, as it does for a denial.
 *
 * Ids are "toolgate-ask-" and 32 hex digits (128 random bits), kept in a process-wide table
 * keyed by a hash of the client's session id: an answer counts only in the session that was
 * asked, once, while the call waits. An answer to an id toolgate issued that is no longer
 * waited for is taken (202) and dropped; it never reaches a backend.
 */
#ifndef GW_CORE_ASK_H
#define GW_CORE_ASK_H

#include <jansson.h>
#include <stdint.h>

#include "core/request.h"

#define GW_ASK_ID_PREFIX "toolgate-ask-"
#define GW_ASK_MAX_PENDING 4096

enum gw_ask_outcome {
    GW_ASK_ANSWERED = 0, /* `answer` is the client's JSON-RPC response (a result or an error) */
    GW_ASK_TIMEOUT,      /* no answer within the bound */
    GW_ASK_GONE,         /* the client left (or the gateway is stopping) */
};

/*
 * Called once, on the request's own thread; `answer` is borrowed for the call. The callee
 * resumes the pipeline (gw_pipeline_resume).
 */
typedef void (*gw_ask_cb)(struct gw_request *req, void *arg, enum gw_ask_outcome outcome,
                          const json_t *answer);

/*
 * Whether toolgate can ask this request's client something now: a POST of the session era in
 * a session toolgate knows, a single message, on a route kind that streams, whose client
 * accepts an event stream. 0 with *why set to a sentence when it cannot.
 */
int gw_request_can_ask(const struct gw_request *req, const char **why);

/*
 * Sends `method` with `params` (the reference is taken) to the client on the call's answer
 * stream and waits at most timeout_ms. Returns 0 (cb will be called), or -1 when it cannot
 * ask (cb is not called).
 */
int gw_request_ask(struct gw_request *req, const char *method, json_t *params, uint64_t timeout_ms,
                   gw_ask_cb cb, void *arg);

#endif
