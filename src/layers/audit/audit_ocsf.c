/*
 * The OCSF mapping of decision and completion records (audit_ocsf.h). API Activity (6003,
 * category 6 Application Activity) with the security_control profile, whose action and
 * disposition carry toolgate's allow or deny. A completion is the same call's outcome: the
 * answer's status, what the backend did, how long it took and what was found in the result;
 * both events share the request id as metadata.correlation_uid. What OCSF has no attribute for
 * goes to `unmapped` under the record's own names, so nothing a SIEM rule may need is lost on
 * the way.
 */
#include "layers/audit/audit_ocsf.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static const char *str(const json_t *rec, const char *key)
{
    return json_string_value(json_object_get(rec, key));
}

/* Sets key to a copy of the string s when s is non-NULL. Returns 0 or -1. */
static int put_str(json_t *o, const char *key, const char *s)
{
    return s ? json_object_set_new(o, key, json_string(s)) : 0;
}

/* Copies rec[key] into o[key] when present. */
static int put_copy(json_t *o, const char *key, const json_t *rec, const char *from)
{
    json_t *v = json_object_get(rec, from);
    return v ? json_object_set(o, key, v) : 0;
}

/* What the MCP method acts on, as resources[].type; NULL when it names nothing. */
static const char *target_type(const char *method)
{
    if (!method)
        return NULL;
    if (strcmp(method, "tools/call") == 0)
        return "tool";
    if (strcmp(method, "resources/read") == 0 || strncmp(method, "resources/", 10) == 0)
        return "resource";
    if (strcmp(method, "prompts/get") == 0)
        return "prompt";
    return "mcp";
}

/* Methods that only read: activity_id 2 (Read); every other method is 99 (Other). */
static int reads(const char *method)
{
    if (!method)
        return 0;
    size_t n = strlen(method);
    return strcmp(method, "resources/read") == 0 || strcmp(method, "prompts/get") == 0 ||
           (n > 5 && strcmp(method + n - 5, "/list") == 0);
}

static json_t *actor_of(const json_t *rec, const char *decision)
{
    json_t *actor = json_object(), *user = json_object();
    int rc = !actor || !user;
    const char *subject = str(rec, "subject"), *v;
    if (user && subject) {
        rc |= put_str(user, "uid", subject);
        rc |= put_str(user, "name", subject);
        rc |= json_object_set_new(user, "type_id", json_integer(1));
        rc |= put_str(user, "type", "User");
    }
    if (user && (v = str(rec, "tenant")))
        rc |= json_object_set_new(user, "org", json_pack("{s:s}", "uid", v));
    json_t *roles = json_object_get(rec, "roles");
    if (user && json_array_size(roles)) {
        json_t *groups = json_array(), *role;
        size_t i;
        json_array_foreach(roles, i, role)
        {
            if (json_is_string(role))
                rc |= json_array_append_new(groups, json_pack("{s:O}", "name", role));
        }
        rc |= json_object_set_new(user, "groups", groups);
    }
    if (actor && user) {
        rc |= json_object_set_new(actor, "user", user);
        user = NULL;
    }
    if (actor && (v = str(rec, "client_id"))) {
        rc |= put_str(actor, "app_name", v);
        rc |= put_str(actor, "app_uid", v);
    }
    if (actor && (v = str(rec, "issuer")))
        rc |= json_object_set_new(actor, "idp", json_pack("{s:s, s:s}", "name", v, "uid", v));
    if (actor && (v = str(rec, "session_sha256")))
        rc |= json_object_set_new(actor, "session", json_pack("{s:s}", "uid", v));
    /* The rules that decided, each as an authorization with the call's decision. */
    json_t *rules = json_object_get(rec, "rule_ids"), *rule;
    if (actor && json_array_size(rules)) {
        json_t *auths = json_array();
        size_t i;
        json_array_foreach(rules, i, rule)
        {
            if (json_is_string(rule))
                rc |= json_array_append_new(auths,
                                            json_pack("{s:s, s:{s:O, s:O}}", "decision", decision,
                                                      "policy", "uid", rule, "name", rule));
        }
        rc |= json_object_set_new(actor, "authorizations", auths);
    }
    json_decref(user);
    if (rc) {
        json_decref(actor);
        return NULL;
    }
    return actor;
}

/*
 * The delegation path: the user, the client acting for them (the token's azp/client_id),
 * this toolgate instance, the backend and how the identity reached it.
 */
static json_t *delegation_of(const json_t *rec)
{
    json_t *path = json_array();
    const char *v;
    int rc = !path;
    if (path && (v = str(rec, "subject")))
        rc |= json_array_append_new(path, json_pack("{s:s, s:s}", "role", "user", "uid", v));
    if (path && (v = str(rec, "client_id")))
        rc |= json_array_append_new(path, json_pack("{s:s, s:s}", "role", "client", "uid", v));
    if (path && (v = str(rec, "instance")))
        rc |= json_array_append_new(path, json_pack("{s:s, s:s}", "role", "gateway", "uid", v));
    if (path && (v = str(rec, "backend"))) {
        json_t *b = json_pack("{s:s, s:s}", "role", "backend", "name", v);
        rc |= put_str(b, "route", str(rec, "route"));
        rc |= put_str(b, "identity", str(rec, "inject"));
        rc |= json_array_append_new(path, b);
    }
    if (rc) {
        json_decref(path);
        return NULL;
    }
    return path;
}

static json_t *unmapped_of(const json_t *rec)
{
    static const char *const keep[] = {
        "kind", "decision", "layer", "reason_code", "rule_ids", "pii", "pii_dropped", "redactions",
        "instance", "seq", "route", "backend", "inject", "trace_id", "span_id", "session_sha256",
        "config_sha256", "limits", "approval", "authenticated", "jsonrpc_code", "hash", "prev_hash",
        /* completion records */
        "upstream_status", "upstream_error", "response_status", "response_bytes", "result_sha256",
        "redactions_total", "latency_ns", NULL};
    json_t *u = json_object();
    int rc = !u;
    for (int k = 0; u && keep[k]; k++)
        rc |= put_copy(u, keep[k], rec, keep[k]);
    /* PII finding types alone, once each: what SIEM rules match on (never a value). */
    json_t *pii = json_object_get(rec, "pii"), *f;
    if (u && json_array_size(pii)) {
        json_t *types = json_array();
        size_t i, j;
        json_array_foreach(pii, i, f)
        {
            json_t *t = json_object_get(f, "type"), *seen;
            int dup = !json_is_string(t);
            json_array_foreach(types, j, seen) dup |= json_equal(seen, t);
            if (!dup)
                rc |= json_array_append(types, t);
        }
        rc |= json_object_set_new(u, "pii_types", types);
    }
    if (u)
        rc |= json_object_set_new(u, "delegation", delegation_of(rec));
    if (rc) {
        json_decref(u);
        return NULL;
    }
    return u;
}

/* An allowed call whose answer went wrong: the backend failed or the client got an error. */
static const char *failed_upstream(const json_t *rec, char *buf, size_t len)
{
    const char *e = str(rec, "upstream_error");
    json_int_t up = json_integer_value(json_object_get(rec, "upstream_status"));
    json_int_t resp = json_integer_value(json_object_get(rec, "response_status"));
    if (e)
        snprintf(buf, len, "the backend call failed (%s)", e);
    else if (up >= 400)
        snprintf(buf, len, "the backend answered HTTP %lld", (long long)up);
    else if (resp >= 400)
        snprintf(buf, len, "the client was answered HTTP %lld", (long long)resp);
    else
        return NULL;
    return buf;
}

json_t *audit_ocsf_event(const json_t *rec)
{
    const char *kind = str(rec, "kind");
    if (!kind || (strcmp(kind, "decision") != 0 && strcmp(kind, "completion") != 0))
        return NULL;
    int completion = kind[0] == 'c';
    const char *decision = str(rec, "decision");
    int allowed = decision && strcmp(decision, "allow") == 0;
    int error = decision && strcmp(decision, "error") == 0;
    char why[96];
    /* A completion of an allowed call fails when its answer did: still Allowed, not Success. */
    const char *upstream_failure =
        completion && allowed ? failed_upstream(rec, why, sizeof why) : NULL;
    int success = allowed && !upstream_failure;
    const char *tns = str(rec, "time_ns");
    long long ms = tns ? strtoll(tns, NULL, 10) / 1000000 : 0;
    const char *method = str(rec, "method");
    int activity = reads(method) ? 2 : 99;
    const char *v;
    json_t *ev = json_pack(
        "{s:i, s:s, s:i, s:s, s:i, s:s, s:i, s:I, s:i, s:s, s:i, s:s, s:i, s:s, s:i, s:s}",
        "class_uid", 6003, "class_name", "API Activity", "category_uid", 6, "category_name",
        "Application Activity", "activity_id", activity, "activity_name",
        activity == 2 ? "Read" : (method ? method : "Other"), "type_uid", 600300 + activity, "time",
        (json_int_t)ms, "severity_id",
        success            ? 1
        : upstream_failure ? 2
        : error            ? 4
                           : 3,
        "severity",
        success            ? "Informational"
        : upstream_failure ? "Low"
        : error            ? "High"
                           : "Medium",
        "status_id", success ? 1 : 2, "status", success ? "Success" : "Failure", "action_id",
        allowed ? 1 : 2, "action", allowed ? "Allowed" : "Denied", "disposition_id",
        allowed ? 1 : 2, "disposition", allowed ? "Allowed" : "Blocked");
    if (!ev)
        return NULL;
    int rc = 0;
    if (!allowed) {
        rc |= put_str(ev, "status_code", str(rec, "reason_code"));
        v = str(rec, "layer");
        if (v) {
            char detail[96];
            snprintf(detail, sizeof detail, "%s by the %s layer", error ? "failed" : "denied", v);
            rc |= put_str(ev, "status_detail", detail);
        }
    } else if (upstream_failure) {
        rc |= put_str(ev, "status_code", str(rec, "upstream_error"));
        rc |= put_str(ev, "status_detail", upstream_failure);
    }
    /* How long the call took, from its start to the answer's end (milliseconds). */
    json_t *total = json_object_get(json_object_get(rec, "latency_ns"), "total");
    if (completion && json_is_integer(total) && json_integer_value(total) >= 0) {
        json_int_t d = json_integer_value(total) / 1000000;
        rc |= json_object_set_new(ev, "duration", json_integer(d));
        rc |= json_object_set_new(ev, "start_time", json_integer((json_int_t)ms - d));
        rc |= json_object_set_new(ev, "end_time", json_integer((json_int_t)ms));
    }
    rc |= json_object_set_new(ev, "actor", actor_of(rec, allowed ? "allowed" : "denied"));

    json_t *api = json_pack("{s:s}", "operation", method ? method : "request");
    if (api && (v = str(rec, "backend")))
        rc |= json_object_set_new(api, "service", json_pack("{s:s}", "name", v));
    if (api && (v = str(rec, "request_id")))
        rc |= json_object_set_new(api, "request", json_pack("{s:s}", "uid", v));
    if (api)
        rc |= put_str(api, "version", str(rec, "protocol_version"));
    /* The answer the client got: a completion's status, or a decision's denial. */
    json_t *status = json_object_get(rec, completion ? "response_status" : "deny_status");
    if (!status && completion)
        status = json_object_get(rec, "deny_status");
    if (api && status) {
        json_t *resp = json_pack("{s:O}", "code", status);
        rc |=
            put_str(resp, "error", allowed ? str(rec, "upstream_error") : str(rec, "reason_code"));
        rc |= json_object_set_new(api, "response", resp);
    }
    rc |= json_object_set_new(ev, "api", api);

    const char *type = target_type(method);
    if (type && (v = str(rec, "tool")))
        rc |= json_object_set_new(ev, "resources",
                                  json_pack("[{s:s, s:s}]", "name", v, "type", type));
    /* Required by the class; the client's address is not part of the record. */
    rc |= json_object_set_new(ev, "src_endpoint", json_object());
    if ((v = str(rec, "backend")))
        rc |= json_object_set_new(ev, "dst_endpoint",
                                  json_pack("{s:s, s:s}", "name", v, "svc_name", v));
    if ((v = str(rec, "http_method")))
        rc |= json_object_set_new(ev, "http_request", json_pack("{s:s}", "http_method", v));

    json_t *md = json_pack(
        "{s:s, s:{s:s, s:s, s:s}, s:s, s:s, s:s, s:[s]}", "version", AUDIT_OCSF_VERSION, "product",
        "name", "toolgate", "vendor_name", "toolgate", "version", TOOLGATE_VERSION, "log_name",
        "audit", "log_provider", "toolgate", "event_code", kind, "profiles", "security_control");
    if (md) {
        rc |= put_str(md, "uid", str(rec, "hash"));
        rc |= put_str(md, "correlation_uid", str(rec, "request_id"));
        rc |= put_str(md, "tenant_uid", str(rec, "tenant"));
        rc |= put_copy(md, "sequence", rec, "seq");
        if ((v = str(rec, "time")))
            rc |= put_str(md, "original_time", v);
    }
    rc |= json_object_set_new(ev, "metadata", md);
    rc |= json_object_set_new(ev, "unmapped", unmapped_of(rec));
    if (rc) {
        json_decref(ev);
        return NULL;
    }
    return ev;
}
