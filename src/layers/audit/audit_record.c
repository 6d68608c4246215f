#include "layers/audit/audit_record.h"
#include "layers/audit/audit_canon.h"
#include "layers/audit/audit_chain.h"
#include "layers/audit/audit_item.h"
#include "lib/digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The object a part writes into: its members (canonical text, sorted at the end) and, at the
 * top level of a record, the values of the indexed columns as they are set (cols NULL in a
 * nested object).
 */
struct obj {
    struct audit_members *ms;
    struct gw_buf *cols;
    ssize_t *col_off;
};

typedef int (*audit_part_fn)(struct obj *o, const struct gw_request *req,
                             const struct audit_config *ac);

/* A string member; at the top level also the column of that name. */
static int put_strn(struct obj *o, const char *key, const char *s, size_t len)
{
    if (audit_members_add_string(o->ms, key, s, len) != 0)
        return -1;
    if (!o->cols)
        return 0;
    int c = audit_col_of(key);
    if (c >= 0) {
        o->col_off[c] = (ssize_t)o->cols->len;
        if (gw_buf_append(o->cols, s, len) != 0 || gw_buf_append(o->cols, "", 1) != 0)
            return -1;
    }
    return 0;
}

/* Sets key when s is non-NULL; absent fields are left out, not null. */
static int put_str(struct obj *o, const char *key, const char *s)
{
    return s ? put_strn(o, key, s, strlen(s)) : 0;
}

static int put_int(struct obj *o, const char *key, int64_t v)
{
    return audit_members_add_int(o->ms, key, v);
}

static int put_bool(struct obj *o, const char *key, int v)
{
    return v ? audit_members_add_raw(o->ms, key, "true", 4)
             : audit_members_add_raw(o->ms, key, "false", 5);
}

/* An array being written: "[", elements, "]" (arr_end). */
static int arr_next(struct gw_buf *a)
{
    return gw_buf_append(a, a->len ? "," : "[", 1);
}

static int arr_str(struct gw_buf *a, const char *s, size_t len)
{
    return arr_next(a) != 0 || audit_canon_string(a, s, len) != 0 ? -1 : 0;
}

/* Adds the array a holds as key's value, and frees a. */
static int put_arr(struct obj *o, const char *key, struct gw_buf *a)
{
    int rc = (a->len == 0 ? gw_buf_append(a, "[", 1) : 0) | gw_buf_append(a, "]", 1);
    if (rc == 0)
        rc = audit_members_add_raw(o->ms, key, a->data, a->len);
    gw_buf_free(a);
    return rc ? -1 : 0;
}

/* Adds the object of sub's members as key's value, and frees sub. */
static int put_obj(struct obj *o, const char *key, struct audit_members *sub)
{
    int rc = audit_members_add_object(o->ms, key, sub);
    audit_members_free(sub);
    return rc;
}

static int put_strv(struct obj *o, const char *key, char **v, size_t n)
{
    struct gw_buf a = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && v && i < n && v[i]; i++)
        rc = arr_str(&a, v[i], strlen(v[i]));
    if (rc != 0) {
        gw_buf_free(&a);
        return -1;
    }
    return put_arr(o, key, &a);
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

/* Adds the arguments of one message to o as `audit.arguments` says. */
static int add_arguments(struct obj *o, const struct mcp_message *m, const struct audit_config *ac)
{
    if (!m->arguments || ac->arguments == AUDIT_ARGS_NONE)
        return 0;
    if (ac->arguments == AUDIT_ARGS_HASH) {
        struct gw_buf b = {0};
        char hex[65];
        int rc = audit_canon_append(&b, m->arguments);
        if (rc == 0) {
            gw_sha256_hex(b.data, b.len, hex);
            rc = put_str(o, "arguments_sha256", hex);
        } else {
            rc = put_str(o, "arguments_error", "not canonicalizable");
        }
        gw_buf_free(&b);
        return rc;
    }
    json_t *r = audit_redact_copy(m->arguments);
    if (r) {
        int rc = audit_members_add_value(o->ms, "arguments", r);
        json_decref(r);
        return rc;
    }
    /* Too large or too deep to copy: record that, and a hash to match it against. */
    struct gw_buf b = {0};
    char hex[65];
    int rc = put_str(o, "arguments_error", "too large to record redacted");
    if (rc == 0 && audit_canon_append(&b, m->arguments) == 0) {
        gw_sha256_hex(b.data, b.len, hex);
        rc = put_str(o, "arguments_sha256", hex);
    }
    gw_buf_free(&b);
    return rc;
}

/*
 * A target the safety layer found PII or a secret in (or may have) is not kept: what the audit
 * log holds must not carry what the safety layer found. Not even a hash: an SSN has few enough
 * values to be found again from one.
 */
static int set_target(struct obj *o, const struct gw_request *req, const char *target)
{
    if (!target)
        return 0;
    return put_str(o, "tool", gw_request_target_has_finding(req) ? "[REDACTED]" : target);
}

static int part_request(struct obj *o, const struct gw_request *req, const struct audit_config *ac)
{
    (void)ac;
    int rc = 0;
    rc |= put_str(o, "request_id", req->id);
    if (req->route)
        rc |= put_str(o, "route", req->route->name);
    rc |= put_str(o, "protocol_version", req->protocol_version);
    if (req->session_id) {
        char h[65];
        gw_sha256_hex(req->session_id, strlen(req->session_id), h);
        rc |= put_str(o, "session_sha256", h);
    }
    if (req->method_name.ptr && req->method_name.len < 16)
        rc |= put_strn(o, "http_method", req->method_name.ptr, req->method_name.len);
    if (req->cfg && req->cfg->config_hash[0])
        rc |= put_str(o, "config_sha256", req->cfg->config_hash);
    if (req->backend)
        rc |= put_str(o, "backend", req->backend->name);
    rc |= put_str(o, "inject", req->inject_mode);
    if (req->trace_id[0]) {
        rc |= put_str(o, "trace_id", req->trace_id);
        rc |= put_str(o, "span_id", req->span_id);
    }
    if (req->rpc.n >= 1) {
        const struct mcp_message *m = &req->rpc.msgs[0];
        rc |= put_str(o, "method", m->method);
        rc |= set_target(o, req, m->target);
    }
    return rc ? -1 : 0;
}

/* Decision record only: the arguments (batches list each call). */
static int part_calls(struct obj *o, const struct gw_request *req, const struct audit_config *ac)
{
    if (req->rpc.n == 1)
        return add_arguments(o, &req->rpc.msgs[0], ac);
    if (req->rpc.n == 0)
        return 0;
    struct gw_buf calls = {0};
    struct audit_members c = {0};
    struct obj co = {&c, NULL, NULL};
    for (size_t i = 0; i < req->rpc.n; i++) {
        const struct mcp_message *m = &req->rpc.msgs[i];
        audit_members_reset(&c);
        if (put_str(&co, "method", m->method) || set_target(&co, req, m->target) ||
            add_arguments(&co, m, ac))
            goto fail;
        audit_members_sort(&c);
        if (arr_next(&calls) != 0 || audit_members_write(&calls, &c, NULL) != 0)
            goto fail;
    }
    audit_members_free(&c);
    return put_arr(o, "calls", &calls);
fail:
    audit_members_free(&c);
    gw_buf_free(&calls);
    return -1;
}

static int part_identity(struct obj *o, const struct gw_request *req, const struct audit_config *ac)
{
    (void)ac;
    const struct gw_identity *id = &req->identity;
    if (!id->verified)
        return put_bool(o, "authenticated", 0);
    int rc = put_bool(o, "authenticated", 1);
    rc |= put_str(o, "subject", id->subject);
    rc |= put_str(o, "issuer", id->issuer);
    rc |= put_str(o, "tenant", id->tenant);
    rc |= put_str(o, "client_id", id->client_id);
    rc |= put_strv(o, "roles", id->roles, id->n_roles);
    rc |= put_strv(o, "scopes", id->scopes, id->n_scopes);
    return rc ? -1 : 0;
}

/* Appends the comma-separated rule ids of a decision to the array (each id one element). */
static int append_rules(struct gw_buf *rules, const char *p)
{
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n && arr_str(rules, p, n) != 0)
            return -1;
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

/* An allowed call: the rules that let it through (policy's permits), when a layer named any. */
static int allow_rules(struct obj *o, const struct gw_request *req)
{
    struct gw_buf rules = {0};
    int any = 0;
    for (int s = 0; s < GW_STAGE_COUNT; s++) {
        const char *ids = req->decision[s].rule_id;
        if (!ids[0])
            continue;
        any = 1;
        if (append_rules(&rules, ids) != 0) {
            gw_buf_free(&rules);
            return -1;
        }
    }
    return any ? put_arr(o, "rule_ids", &rules) : 0;
}

static int part_decision(struct obj *o, const struct gw_request *req, const struct audit_config *ac)
{
    (void)ac;
    int rc = put_str(o, "decision", audit_decision_name(req));
    const struct gw_decision *d = gw_request_denial(req);
    if (!d)
        return rc | allow_rules(o, req);
    rc |= put_str(o, "layer", gw_request_denial_layer(req));
    rc |= put_str(o, "reason_code", d->reason_code);
    rc |= put_int(o, "deny_status", d->http_status);
    if (d->jsonrpc_code)
        rc |= put_int(o, "jsonrpc_code", d->jsonrpc_code);
    struct gw_buf rules = {0};
    if (append_rules(&rules, d->rule_id) != 0) {
        gw_buf_free(&rules);
        return -1;
    }
    rc |= put_arr(o, "rule_ids", &rules);
    return rc ? -1 : 0;
}

static const char *const action_names[] = {"log", "redact", "block"};

static int add_findings(struct obj *o, const struct gw_request *req, enum gw_direction dir)
{
    const struct gw_findings *f = &req->findings;
    struct gw_buf a = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < f->n && i < GW_MAX_FINDINGS; i++) {
        const struct gw_finding *x = &f->items[i];
        if (x->direction != dir)
            continue;
        /* The keys in canonical order: action, count, path, type. */
        const char *action = action_names[x->action <= GW_PII_BLOCK ? x->action : 2];
        rc |= arr_next(&a);
        rc |= gw_buf_append(&a, "{\"action\":", 10);
        rc |= audit_canon_string(&a, action, strlen(action));
        rc |= gw_buf_append(&a, ",\"count\":", 9);
        rc |= audit_canon_int(&a, (int64_t)x->count);
        rc |= gw_buf_append(&a, ",\"path\":", 8);
        rc |= audit_canon_string(&a, x->path, strnlen(x->path, sizeof x->path));
        rc |= gw_buf_append(&a, ",\"type\":", 8);
        rc |= audit_canon_string(&a, x->type, strnlen(x->type, sizeof x->type));
        rc |= gw_buf_append(&a, "}", 1);
    }
    if (rc != 0) {
        gw_buf_free(&a);
        return -1;
    }
    if (put_arr(o, "pii", &a) != 0)
        return -1;
    if (f->dropped)
        return put_int(o, "pii_dropped", (int64_t)f->dropped);
    return 0;
}

static int part_request_findings(struct obj *o, const struct gw_request *req,
                                 const struct audit_config *ac)
{
    (void)ac;
    if (add_findings(o, req, GW_DIR_REQUEST))
        return -1;
    /* Before the response, every redaction so far was applied to the request. */
    return put_int(o, "redactions", req->findings.redactions);
}

static int part_response_findings(struct obj *o, const struct gw_request *req,
                                  const struct audit_config *ac)
{
    (void)ac;
    if (add_findings(o, req, GW_DIR_RESPONSE))
        return -1;
    return put_int(o, "redactions_total", req->findings.redactions);
}

/* The time each stage took, into lat (a nested object). */
static int stage_latency(struct obj *lat, const struct gw_request *req)
{
    for (int s = 0; s < GW_STAGE_COUNT; s++)
        if (req->timing.stage_ns[s] &&
            put_int(lat, gw_stage_name((enum gw_stage)s), (int64_t)req->timing.stage_ns[s]))
            return -1;
    return 0;
}

static int part_decision_latency(struct obj *o, const struct gw_request *req,
                                 const struct audit_config *ac)
{
    (void)ac;
    struct audit_members l = {0};
    struct obj lo = {&l, NULL, NULL};
    if (stage_latency(&lo, req) != 0) {
        audit_members_free(&l);
        return -1;
    }
    return put_obj(o, "latency_ns", &l);
}

static int part_upstream(struct obj *o, const struct gw_request *req, const struct audit_config *ac)
{
    (void)ac;
    int rc = 0;
    if (req->upstream_status)
        rc |= put_int(o, "upstream_status", req->upstream_status);
    if (req->upstream_error[0])
        rc |= put_strn(o, "upstream_error", req->upstream_error,
                       strnlen(req->upstream_error, sizeof req->upstream_error));
    rc |= put_int(o, "response_status", req->response_status);
    rc |= put_int(o, "response_bytes", (int64_t)req->response_bytes);
    return rc ? -1 : 0;
}

static int part_completion_latency(struct obj *o, const struct gw_request *req,
                                   const struct audit_config *ac)
{
    (void)ac;
    struct audit_members l = {0};
    struct obj lo = {&l, NULL, NULL};
    const struct gw_timing *t = &req->timing;
    int rc = stage_latency(&lo, req);
    if (rc == 0 && t->upstream_first_byte_ns > t->start_ns)
        rc =
            put_int(&lo, "upstream_first_byte", (int64_t)(t->upstream_first_byte_ns - t->start_ns));
    if (rc == 0 && t->end_ns > t->start_ns)
        rc = put_int(&lo, "total", (int64_t)(t->end_ns - t->start_ns));
    if (rc != 0) {
        audit_members_free(&l);
        return -1;
    }
    return put_obj(o, "latency_ns", &l);
}

/*
 * What the limits layer decided and measured: cost (estimated, reserved, settled; micro-units
 * of the configured currency), the tightest budget and rate limit, loop flags. Only when the
 * layer looked at tool calls.
 */
static int part_limits(struct obj *o, const struct gw_request *req, const struct audit_config *ac)
{
    (void)ac;
    const struct gw_limits_state *st = &req->limits;
    if (!st->governed)
        return 0;
    struct audit_members l = {0};
    struct obj lo = {&l, NULL, NULL};
    int rc = 0;
    rc |= put_int(&lo, "cost_estimated", st->cost_estimated);
    rc |= put_int(&lo, "cost_reserved", st->cost_reserved);
    if (st->settled) {
        rc |= put_int(&lo, "cost_settled", st->cost_settled);
        rc |= put_bool(&lo, "cost_reported", st->cost_reported);
        rc |= put_bool(&lo, "refunded", st->refunded);
    }
    if (st->budget_name[0]) {
        rc |= put_strn(&lo, "budget", st->budget_name, strnlen(st->budget_name, 48));
        rc |= put_int(&lo, "budget_remaining", st->budget_remaining);
    }
    if (st->rate_name[0]) {
        rc |= put_strn(&lo, "rate_limit", st->rate_name, strnlen(st->rate_name, 48));
        rc |= put_int(&lo, "rate_remaining", st->rate_remaining);
    }
    if (st->retry_after_ms)
        rc |= put_int(&lo, "retry_after_ms", (int64_t)st->retry_after_ms);
    if (st->loop_flags) {
        static const char *const flags[] = {"identical", "no_progress", "cycle",
                                            "max_calls", "cooldown",    "near_identical"};
        struct gw_buf a = {0};
        for (unsigned i = 0; i < sizeof flags / sizeof flags[0]; i++)
            if (st->loop_flags & (1u << i))
                rc |= arr_str(&a, flags[i], strlen(flags[i]));
        rc |= put_arr(&lo, "loop_flags", &a);
        rc |= put_str(&lo, "loop_action",
                      st->loop_action == 2   ? "deny"
                      : st->loop_action == 1 ? "warn"
                                             : "none");
    }
    if (st->store[0])
        rc |= put_strn(&lo, "store", st->store, strnlen(st->store, 8));
    if (st->store_fallback)
        rc |= put_bool(&lo, "store_fallback", 1);
    if (rc != 0) {
        audit_members_free(&l);
        return -1;
    }
    return put_obj(o, "limits", &l);
}

/*
 * Human approval of the call (policy's `approval`): who was to approve, what was decided, by
 * whom, how and when; never an argument value (the call is named by a digest).
 */
static int part_approval(struct obj *o, const struct gw_request *req, const struct audit_config *ac)
{
    (void)ac;
    const struct gw_approval_record *a = &req->approval;
    if (!a->asked)
        return 0;
    struct audit_members m = {0};
    struct obj ao = {&m, NULL, NULL};
    int rc = 0;
    rc |= put_str(&ao, "by", a->by);
    rc |= put_str(&ao, "rule", a->rule_id);
    rc |= put_str(&ao, "decision", a->decision[0] ? a->decision : "pending");
    if (a->via[0])
        rc |= put_str(&ao, "via", a->via);
    if (a->approver[0])
        rc |= put_str(&ao, "approver", a->approver);
    if (a->decided_at_ms)
        rc |= put_int(&ao, "at", a->decided_at_ms);
    if (a->reference[0])
        rc |= put_str(&ao, "reference", a->reference);
    if (a->digest[0])
        rc |= put_str(&ao, "digest", a->digest);
    if (rc != 0) {
        audit_members_free(&m);
        return -1;
    }
    return put_obj(o, "approval", &m);
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

static struct audit_item *build(const char *kind, const audit_part_fn *parts, size_t n,
                                const struct gw_request *req, const struct audit_config *ac,
                                const char *result_hash)
{
    struct audit_item *it = calloc(1, sizeof *it);
    struct gw_buf cols = {0};
    if (!it)
        return NULL;
    for (int c = 0; c < COL_COUNT; c++)
        it->col_off[c] = -1;
    struct obj o = {&it->body, &cols, it->col_off};
    if (gw_buf_reserve(&it->body.text, 1024) != 0 || put_str(&o, "kind", kind) != 0)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (parts[i](&o, req, ac) != 0)
            goto fail;
    if (result_hash && put_str(&o, "result_sha256", result_hash) != 0)
        goto fail;
    audit_members_sort(&it->body);
    it->cols = cols.data;
    return it;
fail:
    gw_buf_free(&cols);
    audit_item_free(it);
    return NULL;
}

struct audit_item *audit_record_decision_item(const struct gw_request *req,
                                              const struct audit_config *ac)
{
    return build("decision", decision_parts, sizeof decision_parts / sizeof decision_parts[0], req,
                 ac, NULL);
}

struct audit_item *audit_record_completion_item(const struct gw_request *req,
                                                const struct audit_config *ac,
                                                const char *result_hash)
{
    return build("completion", completion_parts,
                 sizeof completion_parts / sizeof completion_parts[0], req, ac, result_hash);
}

/* The record an item holds, as a JSON object. */
static json_t *item_json(struct audit_item *it)
{
    struct gw_buf b = {0};
    json_t *rec = NULL;
    if (it && audit_members_write(&b, &it->body, NULL) == 0)
        rec = json_loadb(b.data, b.len, 0, NULL);
    gw_buf_free(&b);
    audit_item_free(it);
    return rec;
}

json_t *audit_record_decision(const struct gw_request *req, const struct audit_config *ac)
{
    return item_json(audit_record_decision_item(req, ac));
}

json_t *audit_record_completion(const struct gw_request *req, const struct audit_config *ac,
                                const char *result_hash)
{
    return item_json(audit_record_completion_item(req, ac, result_hash));
}
