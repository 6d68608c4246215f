#include "layers/audit/audit_record.h"
#include "layers/audit/audit_canon.h"
#include "layers/audit/audit_chain.h"
#include "lib/digest.h"

#include <stdio.h>
#include <string.h>

typedef int (*audit_part_fn)(json_t *rec, const struct gw_request *req,
                             const struct audit_config *ac);

/* Sets key to a string copy when s is non-NULL; absent fields are left out, not null. */
static int set_str(json_t *o, const char *key, const char *s)
{
    if (!s)
        return 0;
    return json_object_set_new(o, key, json_string(s));
}

static int set_int(json_t *o, const char *key, int64_t v)
{
    return json_object_set_new(o, key, json_integer((json_int_t)v));
}

static json_t *strv(char **v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && v && i < n && v[i]; i++)
        if (json_array_append_new(a, json_string(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

const char *audit_decision_name(const struct gw_request *req)
{
    const struct gw_decision *d = gw_request_denial(req);
    if (!d)
        return "allow";
    /* A layer that failed (rather than refused) denies too, but is told apart in audit. */
    if (d->http_status >= 500 || strncmp(d->reason_code, "internal.", 9) == 0)
        return "error";
    return "deny";
}

static int is_placeholder(const char *s, size_t len)
{
    if (len == 10 && memcmp(s, "[REDACTED]", 10) == 0)
        return 1;
    if (len < 12 || len > 10 + 1 + 31 + 1 || memcmp(s, "[REDACTED:", 10) != 0 || s[len - 1] != ']')
        return 0;
    for (size_t i = 10; i < len - 1; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/*
 * Arguments beyond this many values plus key bytes are not copied into the record (the body
 * limit allows a megabyte; the audit queue holds tens of thousands of records).
 */
#define REDACT_BUDGET 16384

static json_t *redact_copy(const json_t *v, int depth, size_t *budget)
{
    if (depth > AUDIT_CANON_MAX_DEPTH || *budget == 0)
        return NULL;
    (*budget)--;
    switch (json_typeof(v)) {
    case JSON_STRING:
        if (is_placeholder(json_string_value(v), json_string_length(v)))
            return json_copy((json_t *)v);
        return json_string("[REDACTED]");
    case JSON_ARRAY: {
        json_t *a = json_array();
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            if (!a || json_array_append_new(a, redact_copy(item, depth + 1, budget)) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case JSON_OBJECT: {
        json_t *o = json_object();
        const char *key;
        size_t key_len;
        json_t *item;
        json_object_keylen_foreach((json_t *)v, key, key_len, item)
        {
            *budget = key_len >= *budget ? 0 : *budget - key_len;
            if (!o ||
                json_object_setn_new(o, key, key_len, redact_copy(item, depth + 1, budget)) != 0) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    default:
        return json_copy((json_t *)v);
    }
}

json_t *audit_redact_copy(const json_t *v)
{
    size_t budget = REDACT_BUDGET;
    return v ? redact_copy(v, 0, &budget) : NULL;
}

/* Adds the arguments of one message to obj as `audit.arguments` says. */
static int add_arguments(json_t *obj, const struct mcp_message *m, const struct audit_config *ac)
{
    if (!m->arguments || ac->arguments == AUDIT_ARGS_NONE)
        return 0;
    if (ac->arguments == AUDIT_ARGS_HASH) {
        struct gw_buf b = {0};
        char hex[65];
        int rc = audit_canon_append(&b, m->arguments);
        if (rc == 0) {
            gw_sha256_hex(b.data, b.len, hex);
            rc = set_str(obj, "arguments_sha256", hex);
        } else {
            rc = set_str(obj, "arguments_error", "not canonicalizable");
        }
        gw_buf_free(&b);
        return rc;
    }
    json_t *r = audit_redact_copy(m->arguments);
    if (r)
        return json_object_set_new(obj, "arguments", r);
    /* Too large or too deep to copy: record that, and a hash to match it against. */
    struct gw_buf b = {0};
    char hex[65];
    int rc = set_str(obj, "arguments_error", "too large to record redacted");
    if (rc == 0 && audit_canon_append(&b, m->arguments) == 0) {
        gw_sha256_hex(b.data, b.len, hex);
        rc = set_str(obj, "arguments_sha256", hex);
    }
    gw_buf_free(&b);
    return rc;
}

/*
 * A target the safety layer found PII or a secret in (or may have) is not kept: what the audit
 * log holds must not carry what the safety layer found. Not even a hash: an SSN has few enough
 * values to be found again from one.
 */
static int set_target(json_t *o, const struct gw_request *req, const char *target)
{
    if (!target)
        return 0;
    return set_str(o, "tool", gw_request_target_has_finding(req) ? "[REDACTED]" : target);
}

static int part_request(json_t *rec, const struct gw_request *req, const struct audit_config *ac)
{
    int rc = 0;
    rc |= set_str(rec, "request_id", req->id);
    if (req->route)
        rc |= set_str(rec, "route", req->route->name);
    rc |= set_str(rec, "protocol_version", req->protocol_version);
    if (req->session_id) {
        char h[65];
        gw_sha256_hex(req->session_id, strlen(req->session_id), h);
        rc |= set_str(rec, "session_sha256", h);
    }
    if (req->method_name.ptr && req->method_name.len < 16) {
        char m[16];
        memcpy(m, req->method_name.ptr, req->method_name.len);
        m[req->method_name.len] = '\0';
        rc |= set_str(rec, "http_method", m);
    }
    if (req->cfg && req->cfg->config_hash[0])
        rc |= set_str(rec, "config_sha256", req->cfg->config_hash);
    if (req->backend)
        rc |= set_str(rec, "backend", req->backend->name);
    rc |= set_str(rec, "inject", req->inject_mode);
    if (req->trace_id[0]) {
        rc |= set_str(rec, "trace_id", req->trace_id);
        rc |= set_str(rec, "span_id", req->span_id);
    }
    if (req->rpc.n >= 1) {
        const struct mcp_message *m = &req->rpc.msgs[0];
        rc |= set_str(rec, "method", m->method);
        rc |= set_target(rec, req, m->target);
    }
    return rc ? -1 : 0;
}

/* Decision record only: the arguments (batches list each call). */
static int part_calls(json_t *rec, const struct gw_request *req, const struct audit_config *ac)
{
    if (req->rpc.n == 1)
        return add_arguments(rec, &req->rpc.msgs[0], ac);
    if (req->rpc.n == 0)
        return 0;
    json_t *calls = json_array();
    if (!calls || json_object_set_new(rec, "calls", calls) != 0)
        return -1;
    for (size_t i = 0; i < req->rpc.n; i++) {
        const struct mcp_message *m = &req->rpc.msgs[i];
        json_t *c = json_object();
        if (!c || json_array_append_new(calls, c) != 0)
            return -1;
        if (set_str(c, "method", m->method) || set_target(c, req, m->target) ||
            add_arguments(c, m, ac))
            return -1;
    }
    return 0;
}

static int part_identity(json_t *rec, const struct gw_request *req, const struct audit_config *ac)
{
    const struct gw_identity *id = &req->identity;
    if (!id->verified)
        return json_object_set_new(rec, "authenticated", json_false());
    int rc = json_object_set_new(rec, "authenticated", json_true());
    rc |= set_str(rec, "subject", id->subject);
    rc |= set_str(rec, "issuer", id->issuer);
    rc |= set_str(rec, "tenant", id->tenant);
    rc |= set_str(rec, "client_id", id->client_id);
    rc |= json_object_set_new(rec, "roles", strv(id->roles, id->n_roles));
    rc |= json_object_set_new(rec, "scopes", strv(id->scopes, id->n_scopes));
    return rc ? -1 : 0;
}

/* Appends the comma-separated rule ids of a decision to the array. */
static int append_rules(json_t *rules, const char *p)
{
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n && json_array_append_new(rules, json_stringn(p, n)) != 0)
            return -1;
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

/* An allowed call: the rules that let it through (policy's permits), when a layer named any. */
static int allow_rules(json_t *rec, const struct gw_request *req)
{
    json_t *rules = NULL;
    for (int s = 0; s < GW_STAGE_COUNT; s++) {
        const char *ids = req->decision[s].rule_id;
        if (!ids[0])
            continue;
        if (!rules && (!(rules = json_array()) || json_object_set_new(rec, "rule_ids", rules)))
            return -1;
        if (append_rules(rules, ids) != 0)
            return -1;
    }
    return 0;
}

static int part_decision(json_t *rec, const struct gw_request *req, const struct audit_config *ac)
{
    int rc = set_str(rec, "decision", audit_decision_name(req));
    const struct gw_decision *d = gw_request_denial(req);
    if (!d)
        return rc | allow_rules(rec, req);
    rc |= set_str(rec, "layer", gw_request_denial_layer(req));
    rc |= set_str(rec, "reason_code", d->reason_code);
    rc |= set_int(rec, "deny_status", d->http_status);
    if (d->jsonrpc_code)
        rc |= set_int(rec, "jsonrpc_code", d->jsonrpc_code);
    json_t *rules = json_array();
    rc |= json_object_set_new(rec, "rule_ids", rules);
    /* rule_id is comma-separated by the layer; each id becomes one array element. */
    if (!rules || append_rules(rules, d->rule_id) != 0)
        return -1;
    return rc ? -1 : 0;
}

static const char *const action_names[] = {"log", "redact", "block"};

static int add_findings(json_t *rec, const struct gw_request *req, enum gw_direction dir)
{
    const struct gw_findings *f = &req->findings;
    json_t *a = json_array();
    if (!a || json_object_set_new(rec, "pii", a) != 0)
        return -1;
    for (size_t i = 0; i < f->n && i < GW_MAX_FINDINGS; i++) {
        const struct gw_finding *x = &f->items[i];
        if (x->direction != dir)
            continue;
        json_t *o = json_pack("{s:s%, s:s%, s:I, s:s}", "type", x->type,
                              strnlen(x->type, sizeof x->type), "path", x->path,
                              strnlen(x->path, sizeof x->path), "count", (json_int_t)x->count,
                              "action", action_names[x->action <= GW_PII_BLOCK ? x->action : 2]);
        if (!o || json_array_append_new(a, o) != 0)
            return -1;
    }
    if (f->dropped)
        return set_int(rec, "pii_dropped", (int64_t)f->dropped);
    return 0;
}

static int part_request_findings(json_t *rec, const struct gw_request *req,
                                 const struct audit_config *ac)
{
    if (add_findings(rec, req, GW_DIR_REQUEST))
        return -1;
    /* Before the response, every redaction so far was applied to the request. */
    return set_int(rec, "redactions", req->findings.redactions);
}

static int part_response_findings(json_t *rec, const struct gw_request *req,
                                  const struct audit_config *ac)
{
    if (add_findings(rec, req, GW_DIR_RESPONSE))
        return -1;
    return set_int(rec, "redactions_total", req->findings.redactions);
}

static json_t *stage_latency(const struct gw_request *req)
{
    json_t *o = json_object();
    for (int s = 0; o && s < GW_STAGE_COUNT; s++)
        if (req->timing.stage_ns[s] &&
            set_int(o, gw_stage_name((enum gw_stage)s), (int64_t)req->timing.stage_ns[s]))
            return NULL;
    return o;
}

static int part_decision_latency(json_t *rec, const struct gw_request *req,
                                 const struct audit_config *ac)
{
    return json_object_set_new(rec, "latency_ns", stage_latency(req));
}

static int part_upstream(json_t *rec, const struct gw_request *req, const struct audit_config *ac)
{
    int rc = 0;
    if (req->upstream_status)
        rc |= set_int(rec, "upstream_status", req->upstream_status);
    if (req->upstream_error[0])
        rc |= json_object_set_new(
            rec, "upstream_error",
            json_stringn(req->upstream_error, strnlen(req->upstream_error, 64)));
    rc |= set_int(rec, "response_status", req->response_status);
    rc |= set_int(rec, "response_bytes", (int64_t)req->response_bytes);
    return rc ? -1 : 0;
}

static int part_completion_latency(json_t *rec, const struct gw_request *req,
                                   const struct audit_config *ac)
{
    json_t *o = stage_latency(req);
    if (!o || json_object_set_new(rec, "latency_ns", o) != 0)
        return -1;
    const struct gw_timing *t = &req->timing;
    if (t->upstream_first_byte_ns > t->start_ns &&
        set_int(o, "upstream_first_byte", (int64_t)(t->upstream_first_byte_ns - t->start_ns)))
        return -1;
    if (t->end_ns > t->start_ns && set_int(o, "total", (int64_t)(t->end_ns - t->start_ns)))
        return -1;
    return 0;
}

/*
 * What the limits layer decided and measured: cost (estimated, reserved, settled; micro-units
 * of the configured currency), the tightest budget and rate limit, loop flags. Only when the
 * layer looked at tool calls.
 */
static int part_limits(json_t *rec, const struct gw_request *req, const struct audit_config *ac)
{
    const struct gw_limits_state *st = &req->limits;
    if (!st->governed)
        return 0;
    json_t *o = json_object();
    if (!o || json_object_set_new(rec, "limits", o) != 0)
        return -1;
    int rc = 0;
    rc |= set_int(o, "cost_estimated", st->cost_estimated);
    rc |= set_int(o, "cost_reserved", st->cost_reserved);
    if (st->settled) {
        rc |= set_int(o, "cost_settled", st->cost_settled);
        rc |= json_object_set_new(o, "cost_reported", json_boolean(st->cost_reported));
        rc |= json_object_set_new(o, "refunded", json_boolean(st->refunded));
    }
    if (st->budget_name[0]) {
        rc |= json_object_set_new(o, "budget",
                                  json_stringn(st->budget_name, strnlen(st->budget_name, 48)));
        rc |= set_int(o, "budget_remaining", st->budget_remaining);
    }
    if (st->rate_name[0]) {
        rc |= json_object_set_new(o, "rate_limit",
                                  json_stringn(st->rate_name, strnlen(st->rate_name, 48)));
        rc |= set_int(o, "rate_remaining", st->rate_remaining);
    }
    if (st->retry_after_ms)
        rc |= set_int(o, "retry_after_ms", (int64_t)st->retry_after_ms);
    if (st->loop_flags) {
        static const char *const flags[] = {"identical", "no_progress", "cycle",
                                            "max_calls", "cooldown",    "near_identical"};
        json_t *a = json_array();
        rc |= json_object_set_new(o, "loop_flags", a);
        for (unsigned i = 0; a && i < sizeof flags / sizeof flags[0]; i++)
            if (st->loop_flags & (1u << i))
                rc |= json_array_append_new(a, json_string(flags[i]));
        rc |= set_str(o, "loop_action",
                      st->loop_action == 2   ? "deny"
                      : st->loop_action == 1 ? "warn"
                                             : "none");
    }
    if (st->store[0])
        rc |= json_object_set_new(o, "store", json_stringn(st->store, strnlen(st->store, 8)));
    if (st->store_fallback)
        rc |= json_object_set_new(o, "store_fallback", json_true());
    return rc ? -1 : 0;
}

/*
 * Human approval of the call (policy's `approval`): who was to approve, what was decided, by
 * whom, how and when; never an argument value (the call is named by a digest).
 */
static int part_approval(json_t *rec, const struct gw_request *req, const struct audit_config *ac)
{
    (void)ac;
    const struct gw_approval_record *a = &req->approval;
    if (!a->asked)
        return 0;
    json_t *o = json_object();
    if (!o || json_object_set_new(rec, "approval", o) != 0)
        return -1;
    int rc = 0;
    rc |= set_str(o, "by", a->by);
    rc |= set_str(o, "rule", a->rule_id);
    rc |= set_str(o, "decision", a->decision[0] ? a->decision : "pending");
    if (a->via[0])
        rc |= set_str(o, "via", a->via);
    if (a->approver[0])
        rc |= set_str(o, "approver", a->approver);
    if (a->decided_at_ms)
        rc |= set_int(o, "at", a->decided_at_ms);
    if (a->reference[0])
        rc |= set_str(o, "reference", a->reference);
    if (a->digest[0])
        rc |= set_str(o, "digest", a->digest);
    return rc ? -1 : 0;
}

/* The parts of each record, in order. A layer's data is one more entry. */
static const audit_part_fn decision_parts[] = {
    part_request, part_identity,         part_decision, part_request_findings,
    part_calls,   part_decision_latency, part_limits,   part_approval,
};

static const audit_part_fn completion_parts[] = {
    part_request,  part_identity,           part_decision, part_response_findings,
    part_upstream, part_completion_latency, part_limits,   part_approval,
};

static json_t *build(const char *kind, const audit_part_fn *parts, size_t n,
                     const struct gw_request *req, const struct audit_config *ac)
{
    json_t *rec = json_object();
    if (!rec || set_str(rec, "kind", kind))
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (parts[i](rec, req, ac) != 0)
            goto fail;
    return rec;
fail:
    json_decref(rec);
    return NULL;
}

json_t *audit_record_decision(const struct gw_request *req, const struct audit_config *ac)
{
    return build("decision", decision_parts, sizeof decision_parts / sizeof decision_parts[0], req,
                 ac);
}

json_t *audit_record_completion(const struct gw_request *req, const struct audit_config *ac,
                                const char *result_hash)
{
    json_t *rec = build("completion", completion_parts,
                        sizeof completion_parts / sizeof completion_parts[0], req, ac);
    if (rec && result_hash && set_str(rec, "result_sha256", result_hash)) {
        json_decref(rec);
        return NULL;
    }
    return rec;
}
