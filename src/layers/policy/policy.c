/*
 * policy layer: the pipeline slot. Decides every governed action of the request (the method
 * table's actions: tools/call, prompts/get, resources/read, subscribe and unsubscribe,
 * completion/complete by what its ref names) and filters every list a result carries (tools,
 * prompts, resources, resource templates) and resource notifications down to what the
 * principal may see.
 *
 * Batches: each element is decided; the first denied element denies the whole batch with its
 * decision (forwarding the allowed elements alone is a later change).
 */
#include "layers/policy/policy-int.h"
#include "core/challenge.h"
#include "lib/uri.h"
#include "mcp/methods.h"
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
    p->scope_model = policy_config_of(req->cfg);
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
static int deny_hidden(const struct gw_request *req, struct gw_decision *out,
                       enum policy_action action, const char *target, const char *rule_id)
{
    char reason[sizeof out->reason];
    int code = JSONRPC_INVALID_PARAMS;
    const char *t = target ? target : "";
    int tl = utf8_fit(t, strlen(t), 200);
    switch (action) {
    case POLICY_ACTION_RESOURCE:
        /* MCP's "resource not found" error: -32002 until 2026-07-28 retired it for -32602. */
        code = req->modern ? JSONRPC_INVALID_PARAMS : -32002;
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
    gw_strlcpy(out->rule_id, rule_id, sizeof out->rule_id);
    return GW_DENY;
}

static int deny_result(struct gw_request *req, struct gw_decision *out,
                       const struct policy_query *q, const struct policy_result *res)
{
    char reason[sizeof out->reason];
    switch (res->outcome) {
    case POLICY_DENY_HIDDEN:
        return deny_hidden(req, out, q->action, q->target, res->rule_id);
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
    gw_strlcpy(out->rule_id, res->rule_id, sizeof out->rule_id);
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
    if (m->spec && m->spec->target == MCP_TARGET_REF)
        params = json_object_get(params, "ref");
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

/*
 * The policy action a message asks for: from the method table's entry (tools/call, prompts/get,
 * resources/read, subscribe, unsubscribe, completion/complete by what its ref names), or, for
 * a message built without one, by name; -1 when it is not a governed action.
 */
static int action_of(const struct mcp_message *m)
{
    if (!m->spec)
        return policy_action_for_method(m->method);
    if (m->spec->cls != MCP_CLASS_ACTION)
        return -1;
    switch (m->target_kind) {
    case MCP_TARGET_TOOL:
        return POLICY_ACTION_TOOL;
    case MCP_TARGET_PROMPT:
        return POLICY_ACTION_PROMPT;
    case MCP_TARGET_RESOURCE:
        return POLICY_ACTION_RESOURCE;
    default:
        return -2; /* an action whose target the decoder did not settle: fail closed */
    }
}

/*
 * subscriptions/listen (2026-07-28) asks for the changes of the resources it names: each is
 * decided as a read of that resource, and one the principal may not read refuses the whole
 * subscription as an unknown resource would be. Returns the verdict.
 */
static int check_listen(struct gw_request *req, const struct mcp_message *m,
                        const struct policy_principal *principal, struct gw_decision *out,
                        char *allowed_ids, size_t ids_size, size_t *governed)
{
    const json_t *uris =
        json_object_get(json_object_get(json_object_get(m->json, "params"), "notifications"),
                        "resourceSubscriptions");
    for (size_t i = 0; i < json_array_size(uris); i++) {
        const json_t *u = json_array_get(uris, i);
        json_t *args = json_pack("{s:O}", "uri", u);
        struct policy_query q = {
            .action = POLICY_ACTION_RESOURCE,
            .target = json_string_value(u),
            .target_len = json_string_length(u),
            .arguments = args,
            .principal = principal,
        };
        struct policy_result res;
        int allowed = args && q.target && strlen(q.target) == q.target_len &&
                      policy_decide(config_of(req), &q, &res, NULL) == POLICY_ALLOW;
        json_decref(args);
        (*governed)++;
        if (!allowed) {
            if (!args || !q.target)
                return gw_decision_deny(out, 200, JSONRPC_INVALID_PARAMS, "policy.invalid_request",
                                        "Invalid params: a subscribed resource cannot be read.");
            return deny_result(req, out, &q, &res);
        }
        append_ids(allowed_ids, ids_size, res.rule_id);
    }
    return GW_PASS;
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
        if (m->method && strcmp(m->method, "subscriptions/listen") == 0 && m->spec) {
            if (check_listen(req, m, &principal, out, allowed_ids, sizeof allowed_ids, &governed) !=
                GW_PASS)
                return GW_DENY;
            continue;
        }
        int action = action_of(m);
        if (action == -2)
            return gw_decision_deny(out, 200, JSONRPC_INVALID_PARAMS, "policy.invalid_request",
                                    "Invalid params: the call's target cannot be read.");
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
        struct policy_annotations hints;
        if (q.action == POLICY_ACTION_TOOL && pc && q.target &&
            policy_annot_lookup(pc->annotations, req->route ? req->route->path : NULL, q.target,
                                q.target_len, &hints))
            q.annotations = &hints;
        struct policy_result res;
        if (policy_decide(pc, &q, &res, NULL) != POLICY_ALLOW)
            return deny_result(req, out, &q, &res);
        if (res.approval.by != POLICY_APPROVAL_NONE)
            /* Approval only narrows what the permit allows: anything but a yes denies. */
            return policy_approval_check(req, (struct mcp_message *)m, &res.approval, out);
        append_ids(allowed_ids, sizeof allowed_ids, res.rule_id);
    }
    out->verdict = GW_PASS;
    gw_strlcpy(out->reason_code, governed ? "policy.permit" : "policy.not_governed",
               sizeof out->reason_code);
    gw_strlcpy(out->rule_id, allowed_ids, sizeof out->rule_id);
    gw_strlcpy(out->reason, governed ? "Allowed by policy." : "Not an action the policy governs.",
               sizeof out->reason);
    return GW_PASS;
}

/* ---- list filtering ---- */

/* The lists a result may carry, whatever the request it answers was. */
static const struct {
    const char *key;   /* the result's array */
    const char *field; /* each entry's name */
    enum policy_action action;
} lists[] = {
    {"tools", "name", POLICY_ACTION_TOOL},
    {"prompts", "name", POLICY_ACTION_PROMPT},
    {"resources", "uri", POLICY_ACTION_RESOURCE},
    {"resourceTemplates", "uriTemplate", POLICY_ACTION_RESOURCE},
};

/*
 * Keeps each listed tool's annotations for rule conditions on them, before the list is
 * filtered (what one user may not see, another's call may still be about).
 */
static void learn_annotations(const struct gw_request *req, const json_t *tools)
{
    const struct policy_config *pc = config_of(req);
    if (!pc)
        return;
    for (size_t i = 0; i < json_array_size(tools); i++) {
        const json_t *tool = json_array_get(tools, i);
        const json_t *name = json_object_get(tool, "name");
        const char *s = json_string_value(name);
        if (!s || strlen(s) != json_string_length(name))
            continue;
        struct policy_annotations a;
        policy_annotations_from_json(json_object_get(tool, "annotations"), &a);
        policy_annot_learn(pc->annotations, req->route ? req->route->path : NULL, s,
                           json_string_length(name), &a);
    }
}

/* Removes the entries the principal may not see; entries without a usable name go too. */
static size_t filter_list(const struct policy_config *pc, const struct policy_principal *pr,
                          enum policy_action action, const char *field, json_t *arr)
{
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

/*
 * Filters every list a result carries by what the list is, not by which request the answer
 * claims to answer: an answer whose id matches another request (a batch that repeats ids, a
 * backend that mixes them up) is filtered all the same.
 */
static int filter_message(struct gw_request *req, json_t *msg, int *modified)
{
    json_t *result = json_object_get(msg, "result");
    if (!json_is_object(result))
        return GW_PASS;
    struct policy_principal pr;
    int principal_made = 0;
    for (size_t k = 0; k < sizeof lists / sizeof lists[0]; k++) {
        json_t *arr = json_object_get(result, lists[k].key);
        if (!arr)
            continue;
        if (!json_is_array(arr)) {
            /* Not a list we can filter: drop it rather than pass it unfiltered. */
            json_object_set_new(result, lists[k].key, json_array());
            *modified = 1;
            continue;
        }
        if (!principal_made) {
            principal_of(req, &pr);
            principal_made = 1;
        }
        if (lists[k].action == POLICY_ACTION_TOOL)
            learn_annotations(req, arr);
        if (filter_list(config_of(req), &pr, lists[k].action, lists[k].field, arr) > 0)
            *modified = 1;
        /*
         * A list filtered for this principal is this principal's: a shared cache must not
         * hand it to another user (2026-07-28 caching hints).
         */
        const char *scope = json_string_value(json_object_get(result, "cacheScope"));
        if (scope && strcmp(scope, "private") != 0) {
            json_object_set_new(result, "cacheScope", json_string("private"));
            *modified = 1;
        }
    }
    return GW_PASS;
}

/* A notification naming a resource (resources/updated) reaches only those who may see it. */
static int filter_notification(struct gw_request *req, json_t *msg)
{
    const char *method = json_string_value(json_object_get(msg, "method"));
    if (!method || json_object_get(msg, "id"))
        return GW_PASS;
    const struct mcp_method *spec =
        mcp_method_lookup(method, MCP_V_ALL_2025 | MCP_V_2026_07_28, MCP_DIR_SERVER_NOTIFICATION);
    if (!spec || spec->target != MCP_TARGET_RESOURCE)
        return GW_PASS;
    const json_t *uri = json_object_get(json_object_get(msg, "params"), "uri");
    struct gw_buf canon = {0};
    const char *why;
    int visible = 0;
    if (json_is_string(uri) &&
        gw_uri_canonical(json_string_value(uri), json_string_length(uri), &canon, &why) == 0) {
        struct policy_principal pr;
        principal_of(req, &pr);
        visible =
            policy_visible(config_of(req), POLICY_ACTION_RESOURCE, canon.data, canon.len, &pr);
    }
    gw_buf_free(&canon);
    return visible ? GW_PASS : GW_DROP;
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
    if (!json_is_object(msg))
        return GW_PASS;
    if (json_object_get(msg, "method"))
        return filter_notification(req, msg);
    return filter_message(req, msg, modified);
}

const struct gw_layer_ops policy_layer = {
    .check = policy_check,
    .on_response = policy_on_response,
};
