/*
 * The integrity stage. On the way back it pins or checks every entry of a tools, prompts,
 * resources or resource-templates list (before policy filters it per principal, so a pin does
 * not depend on who listed first) and, in enforce mode, takes out what is not the approved
 * definition; on the way in it refuses a call to a quarantined, rejected or unlisted tool or
 * prompt, and to a quarantined resource, before policy or limits spend anything on it.
 */
#include "layers/integrity/integrity.h"
#include "layers/layer.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/timeutil.h"
#include "lib/uri.h"
#include "mcp/methods.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Longest name (or URI) pinned; an entry with a longer one is withheld. */
#define MAX_NAME 1024

/* ---- counters (GET /metrics) ---- */

static const char *const event_names[] = {"pinned", "drift",    "new",     "rename",
                                          "poison", "reverted", "matched", NULL};
static atomic_ullong n_events[8], n_hidden, n_warned, n_refused, n_store_errors;

static void count_event(const char *event)
{
    for (size_t i = 0; event_names[i]; i++)
        if (strcmp(event, event_names[i]) == 0)
            atomic_fetch_add(&n_events[i], 1);
}

void integrity_metrics(const struct gw_config *cfg, struct gw_metrics_out *out)
{
    (void)cfg;
    metrics_family(out, "toolgate_integrity_events_total", "counter",
                   "Definition events: first pins, drift, additions, renames, poisoning "
                   "findings, reverts, manifest pins first seen.");
    for (size_t i = 0; event_names[i]; i++) {
        struct metrics_label l = {"event", event_names[i]};
        metrics_sample_u64(out, "toolgate_integrity_events_total", &l, 1,
                           atomic_load(&n_events[i]));
    }
    metrics_single_u64(out, "toolgate_integrity_hidden_total", "counter",
                       "List entries withheld because they are not the approved definition "
                       "(mode enforce).",
                       atomic_load(&n_hidden));
    metrics_single_u64(out, "toolgate_integrity_warned_total", "counter",
                       "List entries and calls that are not approved and passed (mode warn).",
                       atomic_load(&n_warned));
    metrics_single_u64(out, "toolgate_integrity_refused_total", "counter",
                       "Calls refused: quarantined, rejected or unlisted definitions.",
                       atomic_load(&n_refused));
    uint64_t hits, misses;
    integrity_cache_counts(&hits, &misses);
    metrics_single_u64(out, "toolgate_integrity_cache_hits_total", "counter",
                       "Calls answered from the kept view of the pin store (integrity.cache_ttl).",
                       hits);
    metrics_single_u64(out, "toolgate_integrity_cache_misses_total", "counter",
                       "Calls that read the pin store.", misses);
    metrics_single_u64(out, "toolgate_integrity_store_errors_total", "counter",
                       "Pin store failures (lists withheld, calls refused).",
                       atomic_load(&n_store_errors));
}

/* ---- scanned-clean cache: a definition is scanned when first seen and when it changes ---- */

#define CLEAN_SLOTS 4096
static pthread_mutex_t clean_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char hash[GW_SHA256_HEX_LEN + 1];
    const void *rules; /* the rules it was scanned with (a reload brings others) */
} clean[CLEAN_SLOTS];

static size_t clean_slot(const char *hash)
{
    return (size_t)strtoul(
               (char[9]){hash[0], hash[1], hash[2], hash[3], hash[4], hash[5], hash[6], hash[7], 0},
               NULL, 16) %
           CLEAN_SLOTS;
}

static int known_clean(const char *hash, const void *rules)
{
    size_t i = clean_slot(hash);
    pthread_mutex_lock(&clean_mu);
    int hit = clean[i].rules == rules && strcmp(clean[i].hash, hash) == 0;
    pthread_mutex_unlock(&clean_mu);
    return hit;
}

static void remember_clean(const char *hash, const void *rules)
{
    size_t i = clean_slot(hash);
    pthread_mutex_lock(&clean_mu);
    memcpy(clean[i].hash, hash, sizeof clean[i].hash);
    clean[i].rules = rules;
    pthread_mutex_unlock(&clean_mu);
}

/* ---- which backend ---- */

/* The backend a name belongs to: the route's only one, else by the longest federated prefix. */
static const struct gw_backend *backend_of(const struct gw_request *req, const char *name)
{
    const struct gw_route *r = req->route;
    if (!r || r->n_backends == 0)
        return NULL;
    if (r->n_backends == 1)
        return &r->backends[0];
    const struct gw_backend *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; name && i < r->n_backends; i++) {
        const char *p = r->backends[i].prefix;
        size_t l = p ? strlen(p) : 0;
        if (l > best_len && strncmp(name, p, l) == 0) {
            best = &r->backends[i];
            best_len = l;
        }
    }
    if (best)
        return best;
    return req->backend ? req->backend : &r->backends[0];
}

static void key_of(const struct gw_request *req, const struct gw_backend *be, char *out, size_t len)
{
    size_t n = gw_strlcpy(out, req->route ? req->route->name : "", len);
    if (n + 1 < len) {
        out[n] = '/';
        gw_strlcpy(out + n + 1, be ? be->name : "", len - n - 1);
    }
}

static enum integrity_mode mode_of(const struct integrity_config *ic, const struct gw_request *req,
                                   const struct gw_backend *be)
{
    return integrity_mode_for(ic, req->route ? req->route->name : "", be ? be->name : "");
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the request path ---- */

static const char *kind_of_target(const struct mcp_message *m)
{
    switch (m->target_kind) {
    case MCP_TARGET_TOOL:
        return "tool";
    case MCP_TARGET_PROMPT:
        return "prompt";
    case MCP_TARGET_RESOURCE:
        return "resource";
    default:
        return NULL;
    }
}

/*
 * A quarantined definition is refused with a tool result (or error) the model can read; an
 * unlisted one as nonexistent (-32602), which it is as far as the list goes.
 */
static int refuse(struct gw_decision *out, const char *code, const char *kind, const char *name,
                  const char *why)
{
    atomic_fetch_add(&n_refused, 1);
    if (strcmp(code, "integrity.unlisted") == 0) {
        gw_decision_deny(out, 200, JSONRPC_INVALID_PARAMS, code, "");
        snprintf(out->reason, sizeof out->reason, "Unknown %s: %.200s", kind, name);
        return GW_DENY;
    }
    gw_decision_deny(out, 200, 0, code, "");
    snprintf(out->reason, sizeof out->reason, "The %s '%.60s' %s Do not retry it.", kind, name,
             why);
    return GW_DENY;
}

static int integrity_check(struct gw_request *req, struct gw_decision *out)
{
    const struct integrity_config *ic = integrity_config_of(req->cfg);
    if (!ic)
        return GW_PASS;
    struct integrity_store *s = integrity_running_store();
    for (size_t i = 0; i < req->rpc.n; i++) {
        const struct mcp_message *m = &req->rpc.msgs[i];
        const char *kind = kind_of_target(m);
        if (!m->spec || m->spec->cls != MCP_CLASS_ACTION || !m->target || !kind)
            continue;
        const struct gw_backend *be = backend_of(req, m->target);
        enum integrity_mode mode = mode_of(ic, req, be);
        if (mode == INTEGRITY_OFF)
            continue;
        char key[300];
        key_of(req, be, key, sizeof key);
        struct integrity_call_view v;
        if (!s || integrity_cache_lookup(s, key, kind, m->target, ic->cache_ttl_ms, &v) != 0) {
            atomic_fetch_add(&n_store_errors, 1);
            if (mode == INTEGRITY_WARN)
                continue;
            return gw_decision_deny(out, 503, JSONRPC_INTERNAL_ERROR, "integrity.unavailable",
                                    "The tool-integrity store is unavailable; try again later.");
        }
        const char *code = NULL, *why = NULL;
        if (v.found && strcmp(v.state, "approved") != 0) {
            code = "integrity.quarantined";
            why = strcmp(v.state, "rejected") == 0
                      ? "is quarantined: an operator rejected its current definition."
                      : "is quarantined: its definition changed, is new or failed the "
                        "integrity scan, and an operator has not approved it yet.";
        } else if (!v.found && v.listed) {
            code = "integrity.unlisted";
            why = "is not in the list this server gave, so it cannot be used.";
        }
        if (!code)
            continue;
        if (mode == INTEGRITY_WARN) {
            atomic_fetch_add(&n_warned, 1);
            char fields[400];
            snprintf(fields, sizeof fields, "\"backend\":\"%.100s\",\"kind\":\"%s\",\"why\":\"%s\"",
                     key, kind, code);
            gw_log(GW_LOG_WARN, "integrity_warn_call", req->id, fields,
                   "a call to a %s that is not approved passed (mode warn)", kind);
            continue;
        }
        return refuse(out, code, kind, m->target, why);
    }
    return GW_PASS;
}

/* ---- the answer path ---- */

static void hash_set(char **hashes, size_t n, char out[GW_SHA256_HEX_LEN + 1])
{
    struct gw_sha256_ctx c;
    gw_sha256_init(&c);
    for (size_t i = 0; i < n; i++)
        gw_sha256_update(&c, hashes[i], GW_SHA256_HEX_LEN);
    uint8_t d[GW_SHA256_LEN];
    gw_sha256_final(&c, d);
    gw_hex(d, GW_SHA256_LEN, out);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Set hashes, independent of the order the backend listed the entries in. */
static void set_hashes(struct integrity_seen *seen, size_t n, struct integrity_list *l)
{
    char **v = calloc(n ? 2 * n : 1, sizeof *v);
    if (!v)
        return; /* left empty: the set is then recorded as changed, never as the same */
    for (size_t i = 0; i < n; i++) {
        v[i] = seen[i].hash;
        v[n + i] = seen[i].body;
    }
    qsort(v, n, sizeof *v, str_cmp);
    qsort(v + n, n, sizeof *v, str_cmp);
    hash_set(v, n, l->set_hash);
    hash_set(v + n, n, l->body_set_hash);
    free(v);
}

/* The pin name of an entry: its name, or its URI made canonical. 0, or -1 when unusable. */
static int entry_name(const json_t *def, const struct integrity_kind *k, struct gw_buf *out)
{
    const json_t *v = json_object_get(def, k->field);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (!s || len == 0 || len > MAX_NAME || strlen(s) != len)
        return -1;
    if (strcmp(k->kind, "resource") == 0) {
        const char *why;
        return gw_uri_canonical(s, len, out, &why) == 0 && gw_buf_append(out, "", 1) == 0 ? 0 : -1;
    }
    return gw_buf_append(out, s, len) == 0 && gw_buf_append(out, "", 1) == 0 ? 0 : -1;
}

struct group {
    const struct gw_backend *be;
    size_t *idx; /* entries of the array that belong to this backend */
    size_t n;
};

/*
 * One backend's entries of a list: hash, scan what is new, compare with the pins (or, for a
 * list that does not answer a list request, only look them up). Marks keep[i] for entries
 * that stay. Returns 0, or -1 on a store error.
 */
static int check_group(struct gw_request *req, const struct integrity_config *ic,
                       struct integrity_store *s, const struct integrity_kind *k, json_t *arr,
                       const struct group *g, int pinning, int paged, int more, unsigned char *keep)
{
    enum integrity_mode mode = mode_of(ic, req, g->be);
    if (mode == INTEGRITY_OFF) {
        for (size_t j = 0; j < g->n; j++)
            keep[g->idx[j]] = 1;
        return 0;
    }
    char key[300];
    key_of(req, g->be, key, sizeof key);
    struct integrity_seen *seen = calloc(g->n ? g->n : 1, sizeof *seen);
    struct gw_buf *names = calloc(g->n ? g->n : 1, sizeof *names);
    size_t *index = calloc(g->n ? g->n : 1, sizeof *index); /* seen[j] is arr[index[j]] */
    int rc = seen && names && index ? 0 : -1;
    size_t n = 0;
    for (size_t j = 0; rc == 0 && j < g->n; j++) {
        json_t *def = json_array_get(arr, g->idx[j]);
        struct integrity_seen *e = &seen[n];
        struct gw_buf canon = {0};
        if (!json_is_object(def) || entry_name(def, k, &names[n]) != 0 ||
            integrity_hash_def(def, k->field, e->hash, e->body) != 0 ||
            integrity_canonical(def, &canon, 64) != 0 || gw_buf_append(&canon, "", 1) != 0) {
            gw_buf_free(&canon);
            gw_buf_free(&names[n]);
            gw_log(GW_LOG_WARN, "integrity_unreadable", req->id, NULL,
                   "a %s entry of %s has no usable %s or cannot be hashed; withheld", k->kind, key,
                   k->field);
            continue; /* withheld whatever the mode: it cannot be pinned */
        }
        e->name = names[n].data;
        e->def = canon.data;
        if (ic->scan != SCAN_OFF && !known_clean(e->hash, ic->rules)) {
            if (integrity_scan(ic->rules, def, ic->max_description, e->finding,
                               sizeof e->finding) == 0) {
                remember_clean(e->hash, ic->rules);
            } else {
                char fields[400];
                snprintf(fields, sizeof fields,
                         "\"backend\":\"%.100s\",\"kind\":\"%s\",\"rule\":\"%s\"", key, k->kind,
                         e->finding);
                gw_log(GW_LOG_WARN, "integrity_finding", req->id, fields,
                       "a %s definition reads as aimed at the model (rule %s)%s", k->kind,
                       e->finding,
                       ic->scan == SCAN_QUARANTINE ? "; it is quarantined" : "; logged only");
                if (ic->scan == SCAN_LOG)
                    e->finding[0] = 0;
            }
        }
        index[n++] = g->idx[j];
    }
    if (rc == 0 && pinning) {
        struct integrity_list l = {key, k->kind, paged, more, wall_ms(), ic->first_window_ms,
                                   {0}, {0}};
        set_hashes(seen, n, &l);
        rc = integrity_store_compare(s, &l, seen, n);
        integrity_cache_invalidate(); /* even a failed compare: what is kept may be stale */
    } else if (rc == 0) {
        for (size_t j = 0; rc == 0 && j < n; j++) {
            struct integrity_pin pin;
            int found = integrity_store_get(s, key, k->kind, seen[j].name, &pin);
            rc = found < 0 ? -1 : 0;
            seen[j].visible = found > 0 && strcmp(pin.state, "approved") == 0 &&
                              strcmp(pin.approved_hash, seen[j].hash) == 0;
        }
    }
    for (size_t j = 0; rc == 0 && j < n; j++) {
        struct integrity_seen *e = &seen[j];
        if (e->event[0])
            count_event(e->event);
        if (e->visible) {
            keep[index[j]] = 1;
            continue;
        }
        char fields[600];
        snprintf(fields, sizeof fields,
                 "\"backend\":\"%.100s\",\"kind\":\"%s\",\"name\":\"%.128s\",\"change\":\"%s\","
                 "\"detail\":\"%.100s\"",
                 key, k->kind, e->name, e->event[0] ? e->event : "unapproved", e->detail);
        if (mode == INTEGRITY_WARN) {
            keep[index[j]] = 1;
            atomic_fetch_add(&n_warned, 1);
            gw_log(GW_LOG_WARN, "integrity_drift", req->id, fields,
                   "a %s definition is not the approved one; passed (mode warn)", k->kind);
        } else {
            atomic_fetch_add(&n_hidden, 1);
            gw_log(GW_LOG_WARN, "integrity_quarantine", req->id, fields,
                   "a %s definition is not the approved one; hidden until an operator approves "
                   "it",
                   k->kind);
        }
    }
    for (size_t j = 0; seen && j < n; j++)
        free(seen[j].def);
    for (size_t j = 0; names && j < n; j++)
        gw_buf_free(&names[j]);
    free(index);
    free(names);
    free(seen);
    return rc;
}

/* The request a message answers, when it is a list request of this list. */
static const struct mcp_message *list_request(const struct gw_request *req, const json_t *msg,
                                              const char *list)
{
    const json_t *id = json_object_get(msg, "id");
    for (size_t i = 0; id && i < req->rpc.n; i++) {
        const struct mcp_message *m = &req->rpc.msgs[i];
        if (m->kind == MCP_REQUEST && m->spec && m->spec->cls == MCP_CLASS_LIST &&
            m->spec->list_key && strcmp(m->spec->list_key, list) == 0 && m->id &&
            json_equal(m->id, (json_t *)id))
            return m;
    }
    return NULL;
}

static int check_list(struct gw_request *req, const struct integrity_config *ic,
                      struct integrity_store *s, const struct integrity_kind *k, json_t *result,
                      json_t *arr, const struct mcp_message *asked)
{
    size_t n = json_array_size(arr);
    const struct gw_route *r = req->route;
    size_t ng = r && r->n_backends ? r->n_backends : 1;
    struct group *groups = calloc(ng, sizeof *groups);
    unsigned char *keep = calloc(n ? n : 1, 1);
    int rc = groups && keep ? 0 : -1;
    for (size_t g = 0; rc == 0 && g < ng; g++) {
        groups[g].be = r && r->n_backends ? &r->backends[g] : NULL;
        if (!(groups[g].idx = calloc(n ? n : 1, sizeof *groups[g].idx)))
            rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *name = json_string_value(json_object_get(json_array_get(arr, i), k->field));
        const struct gw_backend *be = backend_of(req, name);
        size_t g = be && r ? (size_t)(be - r->backends) : 0;
        groups[g < ng ? g : 0].idx[groups[g < ng ? g : 0].n++] = i;
    }
    const json_t *params = asked ? json_object_get(asked->json, "params") : NULL;
    int paged = json_object_get(params, "cursor") != NULL;
    int more = json_is_string(json_object_get(result, "nextCursor"));
    for (size_t g = 0; rc == 0 && g < ng; g++)
        if (groups[g].n)
            rc = check_group(req, ic, s, k, arr, &groups[g], asked != NULL, paged, more, keep);
    for (size_t i = n; rc == 0 && i-- > 0;)
        if (!keep[i])
            json_array_remove(arr, i);
    for (size_t g = 0; groups && g < ng; g++)
        free(groups[g].idx);
    free(groups);
    free(keep);
    return rc;
}

static int any_enforced(const struct integrity_config *ic, const struct gw_request *req)
{
    const struct gw_route *r = req->route;
    for (size_t b = 0; r && b < r->n_backends; b++)
        if (mode_of(ic, req, &r->backends[b]) == INTEGRITY_ENFORCE)
            return 1;
    return !r || r->n_backends == 0 ? ic->mode == INTEGRITY_ENFORCE : 0;
}

static int check_message(struct gw_request *req, json_t *msg, int *modified)
{
    const struct integrity_config *ic = integrity_config_of(req->cfg);
    json_t *result = json_object_get(msg, "result");
    if (!ic || !json_is_object(result))
        return GW_PASS;
    for (size_t k = 0; k < INTEGRITY_N_KINDS; k++) {
        json_t *arr = json_object_get(result, integrity_kinds[k].list);
        if (!arr)
            continue;
        struct integrity_store *s = integrity_running_store();
        size_t before = json_array_size(arr);
        int rc = json_is_array(arr) && s
                     ? check_list(req, ic, s, &integrity_kinds[k], result, arr,
                                  list_request(req, msg, integrity_kinds[k].list))
                     : -1;
        if (rc != 0) {
            atomic_fetch_add(&n_store_errors, 1);
            if (!any_enforced(ic, req))
                continue;
            /* Fail closed: nothing of a list that could not be checked is shown. */
            gw_log(GW_LOG_ERROR, "integrity_error", req->id, NULL,
                   "a %s list could not be checked against the pins (%s); nothing of it is shown",
                   integrity_kinds[k].kind, s ? integrity_store_error(s) : "no store");
            json_object_set_new(result, integrity_kinds[k].list, json_array());
            *modified = 1;
            continue;
        }
        if (json_array_size(arr) != before)
            *modified = 1;
    }
    return GW_PASS;
}

static int integrity_on_response(struct gw_request *req, json_t *msg, int *modified,
                                 struct gw_decision *out)
{
    (void)out;
    if (json_is_array(msg)) {
        for (size_t i = 0; i < json_array_size(msg); i++)
            check_message(req, json_array_get(msg, i), modified);
        return GW_PASS;
    }
    if (!json_is_object(msg) || json_object_get(msg, "method"))
        return GW_PASS;
    return check_message(req, msg, modified);
}

const struct gw_layer_ops integrity_layer = {
    .check = integrity_check,
    .on_response = integrity_on_response,
};
