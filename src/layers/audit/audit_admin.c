/*
 * audit_admin: what the audit log tells the admin API (core/module.h: admin_api), read from
 * the store through its scan interface, as `toolgate audit query` reads it:
 *
 *   decisions  recent decision records, newest first, filtered and paged
 *   summary    counts over a window: calls and denials over time by layer, top tools,
 *              denials by reason and layer, PII findings by type, rate-limit and loop events
 *   audit      the chain: the writer's state, the store's head, the last checkpoint, and the
 *              outcome of the last verification (verify=1 runs one)
 *
 * It runs on libuv's pool, never on a worker's loop; each answer opens the store read-only.
 * Answers carry no argument values and no PII values (findings are types and counts).
 */
#include "layers/audit/audit.h"
#include "layers/audit/audit_store.h"
#include "layers/audit/audit_verify.h"
#include "layers/audit/audit_writer.h"
#include "layers/audit/audit_chain.h"
#include "lib/timeutil.h"

#include <fnmatch.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DECISIONS_DEFAULT_LIMIT 50
#define DECISIONS_MAX_LIMIT 200
#define DECISIONS_DEFAULT_SINCE_NS (24ull * 3600 * 1000000000ull)
#define DECISIONS_MAX_SINCE_NS (31ull * 24 * 3600 * 1000000000ull)
#define SUMMARY_DEFAULT_SINCE_NS (3600ull * 1000000000ull)
#define SUMMARY_MAX_SINCE_NS (7ull * 24 * 3600 * 1000000000ull)
#define SUMMARY_BUCKETS 30
#define SUMMARY_MAX_KEYS 256 /* distinct tools, reasons, types counted; the rest are "(other)" */
#define SUMMARY_TOP 10

__attribute__((format(printf, 2, 3))) static int bad(json_t **out, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *out = json_pack("{s:s}", "error", msg);
    return 400;
}

static int unavailable(json_t **out, const char *why)
{
    *out = json_pack("{s:s}", "error", why);
    return 503;
}

/* Every parameter must be one of `allowed`. */
static int check_params(const json_t *params, const char *const *allowed, const char *topic,
                        json_t **out)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)params, key, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(key, *a) == 0;
        if (!ok) {
            char msg[160];
            snprintf(msg, sizeof msg, "/admin/api/%s does not take \"%s\"", topic, key);
            *out = json_pack("{s:s}", "error", msg);
            return 400;
        }
    }
    return 0;
}

static const char *param(const json_t *params, const char *name)
{
    const char *s = json_string_value(json_object_get(params, name));
    return s && *s ? s : NULL;
}

/* A duration back from now ("30m", "24h"), within max; absent: def. 0, or 400 with *out. */
static int param_since(const json_t *params, uint64_t def, uint64_t max, int64_t *since_ns,
                       json_t **out)
{
    const char *s = param(params, "since");
    uint64_t d = def;
    if (s && (gw_parse_duration_ns(s, &d) != 0 || d == 0 || d > max))
        return bad(out, "\"since\" is a duration back from now, like 15m or 24h, up to %s",
                   max == DECISIONS_MAX_SINCE_NS ? "31d" : "7d");
    uint64_t now = gw_now_ns();
    *since_ns = d >= now ? 1 : (int64_t)(now - d);
    return 0;
}

/* A whole number in [lo, hi]; absent: def. */
static int param_uint(const json_t *params, const char *name, uint64_t lo, uint64_t hi,
                      uint64_t def, uint64_t *v, json_t **out)
{
    const char *s = param(params, name);
    *v = def;
    if (!s)
        return 0;
    char *end = NULL;
    if (s[0] < '0' || s[0] > '9' || strlen(s) > 19)
        goto fail;
    *v = strtoull(s, &end, 10);
    if (*end || *v < lo || *v > hi)
        goto fail;
    return 0;
fail : {
    char msg[160];
    snprintf(msg, sizeof msg, "\"%s\" is a whole number from %llu to %llu", name,
             (unsigned long long)lo, (unsigned long long)hi);
    *out = json_pack("{s:s}", "error", msg);
    return 400;
}
}

static struct audit_store *open_store(const struct audit_config *ac, json_t **out)
{
    char err[512];
    struct audit_store *st =
        ac && ac->store ? audit_store_open(ac->store, 0, err, sizeof err) : NULL;
    if (!st)
        unavailable(out, "the audit store cannot be opened now");
    return st;
}

static json_t *load_record(const struct audit_row *r)
{
    return json_loadb(r->record, r->record_len, JSON_REJECT_DUPLICATES, NULL);
}

/* ---- decisions ---- */

struct decisions_scan {
    const char *tool; /* glob */
    uint64_t before;  /* seq, exclusive; 0: open */
    json_t **ring;
    size_t limit, n, next;
    uint64_t matched;
};

static json_t *pii_types(const json_t *pii)
{
    json_t *types = json_object();
    size_t i;
    const json_t *f;
    json_array_foreach(pii, i, f)
    {
        const char *t = json_string_value(json_object_get(f, "type"));
        json_int_t n = json_integer_value(json_object_get(f, "count"));
        if (t && types)
            json_object_set_new(types, t,
                                json_integer(json_integer_value(json_object_get(types, t)) + n));
    }
    return types;
}

/* What the API shows of a decision record: no arguments, no PII paths or values. */
static json_t *decision_view(const struct audit_row *r, const json_t *rec)
{
    json_t *limits = json_object_get(rec, "limits");
    json_t *o = json_pack(
        "{s:I, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:O?, s:o}", "seq",
        (json_int_t)r->seq, "time", json_string_value(json_object_get(rec, "time")), "request_id",
        r->request_id, "route", json_string_value(json_object_get(rec, "route")), "method",
        json_string_value(json_object_get(rec, "method")), "tool", r->tool, "user", r->subject,
        "tenant", r->tenant, "client_id", json_string_value(json_object_get(rec, "client_id")),
        "decision", r->decision, "layer", r->layer, "reason",
        json_string_value(json_object_get(rec, "reason_code")), "rules",
        json_object_get(rec, "rule_ids"), "pii", pii_types(json_object_get(rec, "pii")));
    if (o && limits) {
        json_t *cost = json_object_get(limits, "cost_estimated");
        if (cost)
            json_object_set(o, "cost_micro", cost);
    }
    return o;
}

static int decisions_row(const struct audit_row *r, void *arg)
{
    struct decisions_scan *s = arg;
    if (s->before && r->seq >= s->before)
        return 1; /* rows come in seq order: nothing later can be on this page */
    if (s->tool && (!r->tool || fnmatch(s->tool, r->tool, 0) != 0))
        return 0;
    json_t *rec = load_record(r);
    if (!rec)
        return 0;
    json_t *view = decision_view(r, rec);
    json_decref(rec);
    if (!view)
        return 0;
    s->matched++;
    json_decref(s->ring[s->next]);
    s->ring[s->next] = view;
    s->next = (s->next + 1) % s->limit;
    if (s->n < s->limit)
        s->n++;
    return 0;
}

static int topic_decisions(const struct audit_config *ac, const json_t *params, json_t **out)
{
    static const char *const allowed[] = {"decision", "tool",   "user",  "tenant",
                                          "limit",    "before", "since", NULL};
    int rc = check_params(params, allowed, "decisions", out);
    if (rc)
        return rc;
    struct audit_filter f = {.kind = "decision", .instance = ac->instance_id};
    f.decision = param(params, "decision");
    if (f.decision && strcmp(f.decision, "allow") && strcmp(f.decision, "deny") &&
        strcmp(f.decision, "error"))
        return bad(out, "\"decision\" is allow, deny or error, not \"%s\"", f.decision);
    f.subject = param(params, "user");
    f.tenant = param(params, "tenant");
    uint64_t limit, before;
    if ((rc = param_uint(params, "limit", 1, DECISIONS_MAX_LIMIT, DECISIONS_DEFAULT_LIMIT, &limit,
                         out)) ||
        (rc = param_uint(params, "before", 1, UINT64_MAX / 2, 0, &before, out)) ||
        (rc = param_since(params, DECISIONS_DEFAULT_SINCE_NS, DECISIONS_MAX_SINCE_NS, &f.since_ns,
                          out)))
        return rc;
    struct decisions_scan s = {.tool = param(params, "tool"), .before = before, .limit = limit};
    s.ring = calloc(limit, sizeof *s.ring);
    if (!s.ring)
        return unavailable(out, "out of memory");
    struct audit_store *st = open_store(ac, out);
    if (!st) {
        free(s.ring);
        return 503;
    }
    int scan = st->ops->scan(st, &f, decisions_row, &s);
    st->ops->close(st);
    json_t *list = json_array();
    /* Newest first: walk the ring backwards from the last one written. */
    for (size_t i = 0; i < s.n; i++) {
        size_t at = (s.next + s.limit - 1 - i) % s.limit;
        json_array_append(list, s.ring[at]);
    }
    for (size_t i = 0; i < s.limit; i++)
        json_decref(s.ring[i]);
    free(s.ring);
    if (scan < 0) {
        json_decref(list);
        return unavailable(out, "the audit store could not be read");
    }
    json_t *oldest = s.n ? json_array_get(list, s.n - 1) : NULL;
    json_int_t next =
        s.matched > s.n && oldest ? json_integer_value(json_object_get(oldest, "seq")) : 0;
    *out = json_pack("{s:o, s:I, s:I}", "decisions", list, "limit", (json_int_t)limit, "matched",
                     (json_int_t)s.matched);
    if (*out && next)
        json_object_set_new(*out, "next_before", json_integer(next));
    return *out ? 200 : unavailable(out, "out of memory");
}

/* ---- summary ---- */

struct summary_scan {
    int64_t since, now, bucket_ns;
    uint64_t calls, allowed, denied, errors;
    json_t *tools;   /* tool -> {calls, denied} */
    json_t *reasons; /* "layer\treason" -> n */
    json_t *layers;  /* layer -> n */
    json_t *pii;     /* type -> {findings, requests} */
    json_t *limits;  /* event -> n */
    json_t *series;  /* array of {allowed, denied: {layer: n}} */
};

static void bump(json_t *obj, const char *key, json_int_t n)
{
    if (!key)
        key = "-";
    if (!json_object_get(obj, key) && json_object_size(obj) >= SUMMARY_MAX_KEYS)
        key = "(other)";
    json_object_set_new(obj, key, json_integer(json_integer_value(json_object_get(obj, key)) + n));
}

static void bump_member(json_t *obj, const char *key, const char *member, json_int_t n)
{
    if (!key)
        key = "-";
    if (!json_object_get(obj, key) && json_object_size(obj) >= SUMMARY_MAX_KEYS)
        key = "(other)";
    json_t *o = json_object_get(obj, key);
    if (!o) {
        o = json_object();
        if (!o || json_object_set_new(obj, key, o) != 0)
            return;
    }
    bump(o, member, n);
}

static void count_limits(struct summary_scan *s, const json_t *rec, const char *reason)
{
    if (reason && strcmp(reason, "limits.rate") == 0)
        bump(s->limits, "rate_limited", 1);
    else if (reason && strcmp(reason, "limits.budget") == 0)
        bump(s->limits, "budget_exceeded", 1);
    else if (reason && strcmp(reason, "limits.loop") == 0)
        bump(s->limits, "loop_denied", 1);
    const char *action =
        json_string_value(json_object_get(json_object_get(rec, "limits"), "loop_action"));
    if (action && strcmp(action, "warn") == 0)
        bump(s->limits, "loop_warned", 1);
}

static int summary_row(const struct audit_row *r, void *arg)
{
    struct summary_scan *s = arg;
    int decision = r->kind && strcmp(r->kind, "decision") == 0;
    int completion = r->kind && strcmp(r->kind, "completion") == 0;
    if (!decision && !completion)
        return 0;
    json_t *rec = load_record(r);
    if (!rec)
        return 0;
    size_t i;
    const json_t *f;
    json_array_foreach(json_object_get(rec, "pii"), i, f)
    {
        const char *t = json_string_value(json_object_get(f, "type"));
        bump_member(s->pii, t, "findings", json_integer_value(json_object_get(f, "count")));
        bump_member(s->pii, t, decision ? "in_requests" : "in_responses", 1);
    }
    if (decision) {
        const char *d = r->decision ? r->decision : "";
        const char *reason = json_string_value(json_object_get(rec, "reason_code"));
        int denied = strcmp(d, "deny") == 0, error = strcmp(d, "error") == 0;
        s->calls++;
        s->allowed += !denied && !error;
        s->denied += denied;
        s->errors += error;
        bump_member(s->tools, r->tool ? r->tool : "(no tool)", "calls", 1);
        if (denied) {
            char key[200];
            snprintf(key, sizeof key, "%s\t%s", r->layer ? r->layer : "-", reason ? reason : "-");
            bump(s->reasons, key, 1);
            bump(s->layers, r->layer, 1);
            bump_member(s->tools, r->tool ? r->tool : "(no tool)", "denied", 1);
        }
        count_limits(s, rec, reason);
        int64_t b = (r->time_ns - s->since) / s->bucket_ns;
        if (b >= 0 && b < SUMMARY_BUCKETS) {
            json_t *bucket = json_array_get(s->series, (size_t)b);
            if (denied || error)
                bump_member(bucket, "denied", denied ? (r->layer ? r->layer : "-") : "error", 1);
            else
                bump(bucket, "allowed", 1);
        }
    }
    json_decref(rec);
    return 0;
}

static int by_count(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    json_int_t nx = json_integer_value(json_object_get(x, "count"));
    json_int_t ny = json_integer_value(json_object_get(y, "count"));
    return nx < ny ? 1 : nx > ny ? -1 : 0;
}

/* An object of counters as a list sorted by count, at most `top` long. */
static json_t *ranked(json_t *obj, const char *name_key, const char *count_member, size_t top)
{
    size_t n = json_object_size(obj), k = 0;
    json_t **items = calloc(n ? n : 1, sizeof *items);
    json_t *list = json_array();
    const char *key;
    json_t *v;
    if (!items || !list)
        goto out;
    json_object_foreach(obj, key, v)
    {
        json_t *item = json_is_object(v) ? json_deep_copy(v) : json_object();
        json_int_t count = json_is_object(v) ? json_integer_value(json_object_get(v, count_member))
                                             : json_integer_value(v);
        json_object_set_new(item, name_key, json_string(key));
        json_object_set_new(item, "count", json_integer(count));
        items[k++] = item;
    }
    qsort(items, k, sizeof *items, by_count);
    for (size_t i = 0; i < k; i++) {
        if (i < top)
            json_array_append(list, items[i]);
        json_decref(items[i]);
    }
out:
    free(items);
    return list;
}

static json_t *reasons_list(json_t *reasons)
{
    json_t *list = ranked(reasons, "key", NULL, SUMMARY_MAX_KEYS);
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        const char *key = json_string_value(json_object_get(item, "key"));
        const char *tab = key ? strchr(key, '\t') : NULL;
        if (tab) {
            json_object_set_new(item, "layer", json_stringn(key, (size_t)(tab - key)));
            json_object_set_new(item, "reason", json_string(tab + 1));
        }
        json_object_del(item, "key");
    }
    return list;
}

static int topic_summary(const struct audit_config *ac, const json_t *params, json_t **out)
{
    static const char *const allowed[] = {"since", NULL};
    int rc = check_params(params, allowed, "summary", out);
    if (rc)
        return rc;
    struct audit_filter f = {.instance = ac->instance_id};
    if ((rc =
             param_since(params, SUMMARY_DEFAULT_SINCE_NS, SUMMARY_MAX_SINCE_NS, &f.since_ns, out)))
        return rc;
    struct summary_scan s = {.since = f.since_ns, .now = (int64_t)gw_now_ns()};
    s.bucket_ns = (s.now - s.since) / SUMMARY_BUCKETS + 1;
    s.tools = json_object();
    s.reasons = json_object();
    s.layers = json_object();
    s.pii = json_object();
    s.limits = json_pack("{s:i, s:i, s:i, s:i}", "rate_limited", 0, "budget_exceeded", 0,
                         "loop_denied", 0, "loop_warned", 0);
    s.series = json_array();
    for (int b = 0; s.series && b < SUMMARY_BUCKETS; b++)
        json_array_append_new(s.series, json_object());
    json_t *result = NULL;
    struct audit_store *st = NULL;
    if (!s.tools || !s.reasons || !s.layers || !s.pii || !s.limits || !s.series) {
        rc = unavailable(out, "out of memory");
        goto end;
    }
    if (!(st = open_store(ac, out))) {
        rc = 503;
        goto end;
    }
    int scan = st->ops->scan(st, &f, summary_row, &s);
    st->ops->close(st);
    if (scan < 0) {
        rc = unavailable(out, "the audit store could not be read");
        goto end;
    }
    json_t *series = json_array();
    for (int b = 0; series && b < SUMMARY_BUCKETS; b++) {
        json_t *bucket = json_array_get(s.series, (size_t)b);
        json_t *denied = json_object_get(bucket, "denied");
        json_array_append_new(
            series, json_pack("{s:I, s:I, s:o}", "start_ms",
                              (json_int_t)((s.since + b * s.bucket_ns) / 1000000), "allowed",
                              json_integer_value(json_object_get(bucket, "allowed")), "denied",
                              denied ? json_incref(denied) : json_object()));
    }
    result = json_pack(
        "{s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I}, s:o, s:o, s:O, s:o, s:O, s:{s:I, s:o}}",
        "since_ms", (json_int_t)(s.since / 1000000), "until_ms", (json_int_t)(s.now / 1000000),
        "bucket_ms", (json_int_t)(s.bucket_ns / 1000000), "totals", "calls", (json_int_t)s.calls,
        "allowed", (json_int_t)s.allowed, "denied", (json_int_t)s.denied, "errors",
        (json_int_t)s.errors, "top_tools", ranked(s.tools, "tool", "calls", SUMMARY_TOP),
        "denials_by_reason", reasons_list(s.reasons), "denials_by_layer", s.layers, "pii_by_type",
        ranked(s.pii, "type", "findings", SUMMARY_MAX_KEYS), "limits_events", s.limits, "series",
        "buckets", (json_int_t)SUMMARY_BUCKETS, "points", series);
    rc = result ? 200 : unavailable(out, "out of memory");
    if (result)
        *out = result;
end:
    json_decref(s.tools);
    json_decref(s.reasons);
    json_decref(s.layers);
    json_decref(s.pii);
    json_decref(s.limits);
    json_decref(s.series);
    return rc;
}

/* ---- the chain ---- */

/* The outcome of the last verification, kept for every later GET (one runs at a time). */
static pthread_mutex_t verify_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    int ran, intact;
    int chain_intact;
    const char *counters; /* "intact", "not_intact", "not_kept" or "not_checked" */
    int64_t at_ms;
    uint64_t rows, last_seq;
    char problem[512];
} last_verify;

static EVP_PKEY *verify_key(const struct audit_config *ac, char *err, size_t errlen)
{
    char *path = ac->signing_key ? strdup(ac->signing_key)
                                 : audit_default_key_path(ac->store, ac->instance_id);
    if (!path) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    char pub[4300];
    snprintf(pub, sizeof pub, "%s.pub", path);
    /* The public half is enough; the private key file serves when there is no .pub. */
    EVP_PKEY *key = audit_key_load_public(access(pub, R_OK) == 0 ? pub : path, err, errlen);
    free(path);
    return key;
}

/*
 * Runs a verification of this instance's chain in the current store and, as
 * `toolgate audit verify` does in a whole run, compares the store's stats day counters with
 * the records once the chain is intact: counters that differ make the outcome not intact
 * (the chain itself is reported intact beside it).
 */
static void run_verify(const struct audit_config *ac)
{
    char err[512] = "", counters_problem[300] = "";
    const char *counters = "not_checked";
    struct audit_verifier v;
    int intact = 0, chain_intact = 0, inited = 0;
    uint64_t rows = 0, last_seq = 0;
    struct audit_store *st = NULL;
    EVP_PKEY *key = verify_key(ac, err, sizeof err);
    if (!key)
        goto out;
    if (audit_verifier_init(&v, key, 0) != 0) {
        snprintf(err, sizeof err, "out of memory");
        goto out;
    }
    inited = 1;
    v.instance = ac->instance_id;
    json_t *unused = NULL;
    if (!(st = open_store(ac, &unused))) {
        json_decref(unused);
        snprintf(err, sizeof err, "the audit store cannot be opened");
        goto out;
    }
    int fed = audit_verifier_feed(&v, st);
    if (fed < 0) {
        snprintf(err, sizeof err, "the audit store could not be read");
        goto out;
    }
    chain_intact = intact = audit_verifier_finish(&v) == 0;
    rows = v.rows;
    for (size_t i = 0; i < v.n_inst; i++)
        last_seq = v.inst[i].seq > last_seq ? v.inst[i].seq : last_seq;
    if (!intact) {
        snprintf(err, sizeof err, "%s", v.problem[0] ? v.problem : "the chain is not intact");
        goto out;
    }
    /* Derived data, not covered by the chain: what stats answers from in this store. */
    int c = st->ops->check_counters
                ? st->ops->check_counters(st, counters_problem, sizeof counters_problem)
                : 0;
    counters = !st->ops->check_counters ? "not_kept" : c == 0 ? "intact" : "not_intact";
    if (c < 0) {
        counters = "not_checked";
        intact = 0;
        snprintf(err, sizeof err, "the stats counters could not be read");
    } else if (c > 0) {
        intact = 0;
        snprintf(err, sizeof err,
                 "the chain is intact, its stats counters are not: %s (stats answers from "
                 "them; `toolgate audit stats --from-rows` counts the records)",
                 counters_problem);
    }
out:
    if (st)
        st->ops->close(st);
    if (inited)
        audit_verifier_free(&v);
    EVP_PKEY_free(key);
    last_verify.ran = 1;
    last_verify.intact = intact;
    last_verify.chain_intact = chain_intact;
    last_verify.counters = counters;
    last_verify.at_ms = (int64_t)(gw_now_ns() / 1000000u);
    last_verify.rows = rows;
    last_verify.last_seq = last_seq;
    snprintf(last_verify.problem, sizeof last_verify.problem, "%s", intact ? "" : err);
}

struct checkpoint_scan {
    uint64_t seq;
    int64_t time_ns;
};

static int checkpoint_row(const struct audit_row *r, void *arg)
{
    struct checkpoint_scan *c = arg;
    c->seq = r->seq;
    c->time_ns = r->time_ns;
    return 0;
}

static json_t *time_json(int64_t ns)
{
    char t[40];
    if (ns <= 0)
        return json_null();
    gw_time_rfc3339((uint64_t)ns, t, sizeof t);
    return json_string(t);
}

static int topic_audit(const struct audit_config *ac, const json_t *params, json_t **out)
{
    static const char *const allowed[] = {"verify", NULL};
    int rc = check_params(params, allowed, "audit", out);
    if (rc)
        return rc;
    const char *verify = param(params, "verify");
    if (verify && strcmp(verify, "1") && strcmp(verify, "0"))
        return bad(out, "\"verify\" is 1 (run a verification now) or 0, not \"%s\"", verify);
    int busy = 0;
    if (verify && strcmp(verify, "1") == 0) {
        if (pthread_mutex_trylock(&verify_lock) == 0) {
            run_verify(ac);
            pthread_mutex_unlock(&verify_lock);
        } else {
            busy = 1;
        }
    }
    struct audit_writer_stats ws;
    audit_writer_stats(&ws);
    json_t *body = json_pack(
        "{s:s?, s:s?, s:{s:b, s:b, s:I, s:I, s:I, s:I}}", "instance", ac->instance_id, "store_kind",
        audit_store_sqlite_path(ac->store) ? "sqlite" : "postgres", "writer", "running", ws.running,
        "failed", ws.failed, "queued", (json_int_t)ws.queued, "capacity", (json_int_t)ws.capacity,
        "committed", (json_int_t)ws.committed, "last_checkpoint_seq",
        (json_int_t)ws.last_checkpoint_seq);
    if (!body)
        return unavailable(out, "out of memory");
    json_t *unused = NULL;
    struct audit_store *st = open_store(ac, &unused);
    json_decref(unused);
    struct audit_head head;
    int has_head = st ? st->ops->head(st, ac->instance_id, &head) : -1;
    if (has_head == 1) {
        json_object_set_new(body, "head",
                            json_pack("{s:I, s:o, s:s, s:s, s:b}", "seq", (json_int_t)head.seq,
                                      "time", time_json(head.time_ns), "hash", head.hash, "kind",
                                      head.kind, "closing", head.closing));
        /* The last checkpoint is at the head or shortly before it: look back a little. */
        struct checkpoint_scan cp = {0};
        struct audit_filter f = {.instance = ac->instance_id,
                                 .kind = "checkpoint",
                                 .since_ns = head.time_ns - 3600ll * 1000000000ll};
        if (st->ops->scan(st, &f, checkpoint_row, &cp) >= 0 && cp.seq)
            json_object_set_new(
                body, "last_checkpoint",
                json_pack("{s:I, s:o}", "seq", (json_int_t)cp.seq, "time", time_json(cp.time_ns)));
    } else {
        json_object_set_new(body, "head", json_null());
        json_object_set_new(body, "note",
                            json_string(has_head == 0 ? "the store has no record of this instance "
                                                        "yet"
                                                      : "the audit store cannot be read now"));
    }
    if (st)
        st->ops->close(st);
    pthread_mutex_lock(&verify_lock);
    json_t *vj =
        last_verify.ran
            ? json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:s?}", "state",
                        last_verify.intact ? "intact" : "not_intact", "chain",
                        last_verify.chain_intact ? "intact" : "not_intact", "counters",
                        last_verify.counters, "time", time_json(last_verify.at_ms * 1000000ll),
                        "records", (json_int_t)last_verify.rows, "last_seq",
                        (json_int_t)last_verify.last_seq, "problem",
                        last_verify.intact ? NULL : last_verify.problem)
            : json_pack("{s:s, s:s}", "state", "not_run", "note",
                        "no verification has run since the gateway started; ask "
                        "with verify=1");
    pthread_mutex_unlock(&verify_lock);
    if (vj && busy)
        json_object_set_new(vj, "busy", json_true());
    json_object_set_new(body, "verify", vj);
    *out = body;
    return 200;
}

int audit_admin_api(const struct gw_config *cfg, const char *topic, const json_t *params,
                    json_t **out)
{
    int (*fn)(const struct audit_config *, const json_t *, json_t **) =
        strcmp(topic, "decisions") == 0 ? topic_decisions
        : strcmp(topic, "summary") == 0 ? topic_summary
        : strcmp(topic, "audit") == 0   ? topic_audit
                                        : NULL;
    if (!fn)
        return 0;
    const struct audit_config *ac = audit_config_of(cfg);
    if (!ac || !ac->store)
        return unavailable(out, "the audit log is not configured");
    return fn(ac, params, out);
}
