/*
 * relay_hooks: one path through the response hooks for every message of a backend's answer,
 * and the closed world on the way back: what is not an MCP message of the request's revision
 * (in the server's direction) does not reach the client.
 */
#include "core/exchange.h"
#include "core/pipeline.h"
#include "lib/log.h"
#include "mcp/jsonrpc.h"
#include "mcp/methods.h"

#include <stdio.h>
#include <string.h>

/*
 * The closed world on the way back: a message from the backend is a response (result or
 * error, with an id), or a request or notification of the method table for the server's
 * direction in the request's revision (or one the operator lets through). Anything else is
 * not understood and does not reach the client.
 */
static int understood_from_server(const struct exchange *x, const json_t *msg)
{
    if (!json_is_object(msg))
        return 0;
    const char *method = json_string_value(json_object_get(msg, "method"));
    /* An error may lack the id (some servers leave it out when the request was refused). */
    if (!method)
        return json_is_object(json_object_get(msg, "error")) ||
               (json_object_get(msg, "id") && json_object_get(msg, "result"));
    unsigned version = mcp_version_bit(x->req->protocol_version);
    unsigned dir =
        json_object_get(msg, "id") ? MCP_DIR_SERVER_REQUEST : MCP_DIR_SERVER_NOTIFICATION;
    if (mcp_method_lookup(method, version ? version : MCP_V_2025_03_26, dir))
        return 1;
    for (char *const *m = x->req->route->allow_methods; m && *m; m++)
        if (strcmp(*m, method) == 0)
            return 1;
    return 0;
}

static json_t *hooks_one(struct exchange *x, json_t *msg, int *modified, struct gw_decision *dp)
{
    struct gw_decision d = {0};
    int mod = 0;
    if (!understood_from_server(x, msg)) {
        gw_log(GW_LOG_WARN, "upstream_not_understood", x->req->id, NULL,
               "dropped a message from the backend that is not an MCP message of this "
               "revision");
        /*
         * A server request of another revision (the backend will wait for its answer): the
         * call is ended (end_with_refusal), naming the method as the table spells it. Anything
         * unknown is only dropped, and nothing the backend wrote is echoed.
         */
        const char *method = json_string_value(json_object_get(msg, "method"));
        const struct mcp_method *known =
            method && json_object_get(msg, "id")
                ? mcp_method_lookup(method, MCP_V_ALL_2025 | MCP_V_2026_07_28,
                                    MCP_DIR_SERVER_REQUEST)
                : NULL;
        if (known && !x->refused_request[0])
            snprintf(x->refused_request, sizeof x->refused_request, "%s", known->name);
        json_decref(msg);
        *modified = 1;
        return NULL;
    }
    int verdict = GW_PASS;
    if (x->kind && x->kind->on_message && x->kind->on_message(x, msg, &mod) != 0) {
        gw_decision_deny(&d, 502, JSONRPC_INTERNAL_ERROR, "upstream.bad_message",
                         "The backend's answer could not be read");
        verdict = GW_DENY;
    } else {
        verdict = gw_pipeline_response(x->req, msg, &mod, &d);
    }
    if (verdict == GW_DROP) {
        json_decref(msg);
        *modified = 1;
        return NULL;
    }
    if (verdict != GW_PASS) {
        json_t *id = json_object_get(msg, "id");
        json_t *err =
            json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                      "error", "code", d.jsonrpc_code ? d.jsonrpc_code : -32003, "message",
                      d.reason[0] ? d.reason : "Denied");
        json_decref(msg);
        *modified = 1;
        *dp = d;
        return err;
    }
    *modified |= mod;
    return msg;
}

json_t *relay_hooks(struct exchange *x, json_t *msg, int *modified, struct gw_decision *denial)
{
    struct gw_decision local = {0};
    struct gw_decision *dp = denial ? denial : &local;
    if (!json_is_array(msg))
        return hooks_one(x, msg, modified, dp);
    /* A batch (2025-03-26): element by element; dropped elements leave the array. */
    size_t i = 0;
    while (i < json_array_size(msg)) {
        json_t *m = hooks_one(x, json_incref(json_array_get(msg, i)), modified, dp);
        if (m) {
            json_array_set_new(msg, i, m);
            i++;
        } else {
            json_array_remove(msg, i);
        }
    }
    if (json_array_size(msg) == 0) {
        json_decref(msg);
        return NULL;
    }
    return msg;
}
