/*
 * policy layer: the pipeline slot. Decides every governed message of the request
 * (tools/call, resources/read, prompts/get) and filters list results (tools/list,
 * resources/list, prompts/list) down to what the principal may see.
 *
 * Batches: each element is decided; the first denied element denies the whole batch with its
 * decision (forwarding the allowed elements alone is a later change).
 */
#include "layers/policy/policy.h"
#include "core/challenge.h"
#include "layers/layer.h"

#include <stdio.h>
#include <string.h>

/* Counts a NULL-terminated vector: the terminator, not n_*, bounds what may be read. */
static size_t strv_count(char **v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

static void principal_of(const struct gw_request *req, struct policy_principal *p)
{
    const struct gw_identity *id = &req->identity;
    p->subject = id->subject;
    p->tenant = id->tenant;
    p->client_id = id->client_id;
    p->roles = (const char *const *)id->roles;
    p->n_roles = strv_count(id->roles);
    p->scopes = (const char *const *)id->scopes;
    p->n_scopes = strv_count(id->scopes);
}

static const struct policy_config *config_of(const struct gw_request *req)
{
    return policy_config_of(req->cfg);
}

/*
 * How many bytes of s (len bytes) fit in max without splitting a UTF-8 sequence: reasons end
 * up in JSON, and a cut character would make the answer invalid.
 */
static int utf8_fit(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return (int)len;
    size_t cut = max;
    while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
        cut--;
    return (int)cut;
}

/* What the core answers for a hidden target: the same as for one that does not exist. */
static int deny_hidden(struct gw_decision *out, enum policy_action action, const char *target,
                       const char *rule_id)
{
    char reason[sizeof out->reason];
    int code = JSONRPC_INVALID_PARAMS;
    const char *t = target ? target : "";
    int tl = utf8_fit(t, strlen(t), 200);
    switch (action) {
    case POLICY_ACTION_RESOURCE:
        /* MCP's "resource not found" error. */
        code = -32002;
        snprintf(reason, sizeof reason, "Resource not found: %.*s", tl, t);
        break;
    case POLICY_ACTION_PROMPT:
        snprintf(reason, sizeof reason, "Unknown prompt: %.*s", tl, t);
        break;
    default:
        snprintf(reason, sizeof reason, "Unknown tool: %.*s", tl, t);
        break;
    }
    gw_decision_deny(out, 200, code, "policy.hidden", reason);
    snprintf(out->rule_id, sizeof out->rule_id, "%s", rule_id);
    return GW_DENY;
}

static int deny_result(struct gw_request *req, struct gw_decision *out,
                       const struct policy_query *q, const struct policy_result *res)
{
    char reason[sizeof out->reason];
    switch (res->outcome) {
    case POLICY_DENY_HIDDEN:
        return deny_hidden(out, q->action, q->target, res->rule_id);
    case POLICY_DENY_SCOPE:
        return gw_deny_insufficient_scope(req, out, res->scopes, res->rule_id);
    case POLICY_DENY_FORBIDDEN:
        if (res->message[0])
            snprintf(reason, sizeof reason, "%.*s",
                     utf8_fit(res->message, strlen(res->message), sizeof reason - 1), res->message);
        else
            snprintf(reason, sizeof reason, "Policy forbids this call (rule %.100s).",
                     res->rule_id);
        gw_decision_deny(out, 200, 0, "policy.forbidden", reason);
        break;
    case POLICY_DENY_NO_MATCH:
        gw_decision_deny(out, 200, 0, "policy.no_match",
                         "No policy rule allows this call for this user.");
        break;
    case POLICY_DENY_INVALID:
    default:
        gw_decision_deny(out, 200, JSONRPC_INVALID_PARAMS, "policy.invalid_request",
                         "Invalid params: missing or oversized name.");
        break;
    }
    snprintf(out->rule_id, sizeof out->rule_id, "%s", res->rule_id);
    return GW_DENY;
}

static const json_t *query_arguments(const struct mcp_message *m, enum policy_action action)
{
    /* resources/read has no arguments: its conditions address params (e.g. /uri). */
    if (action == POLICY_ACTION_RESOURCE)
        return m->json ? json_object_get(m->json, "params") : NULL;
    return m->arguments;
}

/*
 * The target's length from the JSON itself: a name with an embedded NUL (which the decoder
 * refuses anyway) must not be judged by its first part.
 */
static size_t target_length(const struct mcp_message *m, enum policy_action action)
{
    if (!m->target)
        return 0;
    const json_t *params = m->json ? json_object_get(m->json, "params") : NULL;
    const json_t *t = json_object_get(params, action == POLICY_ACTION_RESOURCE ? "uri" : "name");
    size_t len = strlen(m->target);
    if (json_is_string(t) && json_string_value(t) == m->target && json_string_length(t) != len)
        return 0;
    return len;
}

/* Appends ",ids" (or "ids" to an empty list) when it fits whole; drops it otherwise. */
static void append_ids(char *list, size_t size, const char *ids)
{
    size_t used = strlen(list), add = strlen(ids);
    if (add == 0 || used + add + 2 > size)
        return;
    if (used)
        list[used++] = ',';
    memcpy(list + used, ids, add + 1);
}

static int policy_check(struct gw_request *req, struct gw_decision *out)
{
    const struct policy_config *pc = config_of(req);
    struct policy_principal principal;
    char allowed_ids[sizeof out->rule_id] = "";
    size_t governed = 0;
    principal_of(req, &principal);
    for (size_t i = 0; i < req->rpc.n; i++) {
        const struct mcp_message *m = &req->rpc.msgs[i];
        if (m->kind != MCP_REQUEST && m->kind != MCP_NOTIFICATION)
            continue;
        int action = policy_action_for_method(m->method);
        if (action < 0)
            continue;
        governed++;
        struct policy_query q = {
            .action = (enum policy_action)action,
            .target = m->target,
            .target_len = target_length(m, (enum policy_action)action),
            .arguments = query_arguments(m, (enum policy_action)action),
            .principal = &principal,
        };
        struct policy_result res;
        if (policy_decide(pc, &q, &res, NULL) != POLICY_ALLOW)
            return deny_result(req, out, &q, &res);
        append_ids(allowed_ids, sizeof allowed_ids, res.rule_id);
    }
    out->verdict = GW_PASS;
    snprintf(out->reason_code, sizeof out->reason_code, "%s",
             governed ? "policy.permit" : "policy.not_governed");
    snprintf(out->rule_id, sizeof out->rule_id, "%s", allowed_ids);
    snprintf(out->reason, sizeof out->reason, "%s",
             governed ? "Allowed by policy." : "Not an action the policy governs.");
    return GW_PASS;
}

/* ---- list filtering ---- */

static int list_kind(const struct gw_request *req, const json_t *id, enum policy_action *action)
{
    if (!id)
        return 0;
    for (size_t i = 0; i < req->rpc.n; i++) {
        const struct mcp_message *m = &req->rpc.msgs[i];
        if (m->kind != MCP_REQUEST || !m->method || !m->id || !json_equal(m->id, id))
            continue;
        if (strcmp(m->method, "tools/list") == 0)
            *action = POLICY_ACTION_TOOL;
        else if (strcmp(m->method, "resources/list") == 0)
            *action = POLICY_ACTION_RESOURCE;
        else if (strcmp(m->method, "prompts/list") == 0)
            *action = POLICY_ACTION_PROMPT;
        else
            return 0;
        return 1;
    }
    return 0;
}

/* Removes the entries the principal may not see; entries without a usable name go too. */
static size_t filter_list(const struct policy_config *pc, const struct policy_principal *pr,
                          enum policy_action action, json_t *arr)
{
    const char *field = action == POLICY_ACTION_RESOURCE ? "uri" : "name";
    size_t removed = 0;
    size_t i = 0;
    while (i < json_array_size(arr)) {
        const json_t *name = json_object_get(json_array_get(arr, i), field);
        const char *s = json_string_value(name);
        size_t len = s ? json_string_length(name) : 0;
        if (s && strlen(s) == len && policy_visible(pc, action, s, len, pr)) {
            i++;
            continue;
        }
        json_array_remove(arr, i);
        removed++;
    }
    return removed;
}

static int filter_message(struct gw_request *req, json_t *msg, int *modified)
{
    enum policy_action action;
    json_t *result = json_object_get(msg, "result");
    if (!json_is_object(result) || !list_kind(req, json_object_get(msg, "id"), &action))
        return GW_PASS;
    static const char *const keys[POLICY_ACTION_COUNT] = {"tools", "resources", "prompts"};
    json_t *arr = json_object_get(result, keys[action]);
    if (!arr)
        return GW_PASS;
    if (!json_is_array(arr)) {
        /* Not a list we can filter: drop it rather than pass it unfiltered. */
        json_object_set_new(result, keys[action], json_array());
        *modified = 1;
        return GW_PASS;
    }
    struct policy_principal pr;
    principal_of(req, &pr);
    if (filter_list(config_of(req), &pr, action, arr) > 0)
        *modified = 1;
    return GW_PASS;
}

static int policy_on_response(struct gw_request *req, json_t *msg, int *modified,
                              struct gw_decision *out)
{
    (void)out;
    if (json_is_array(msg)) {
        for (size_t i = 0; i < json_array_size(msg); i++)
            filter_message(req, json_array_get(msg, i), modified);
        return GW_PASS;
    }
    if (json_is_object(msg))
        return filter_message(req, msg, modified);
    return GW_PASS;
}

const struct gw_layer_ops policy_layer = {
    .check = policy_check,
    .on_response = policy_on_response,
};
