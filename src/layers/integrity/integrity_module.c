/*
 * The integrity layer as a module: its section, its stage (between safety and policy: on the
 * way back it must see a backend's whole list before policy filters it per principal, and on
 * the way in a quarantined tool is refused before policy or limits spend anything on it) and
 * the `toolgate tools` command.
 */
#include "layers/integrity/integrity.h"
#include "layers/audit/audit.h"
#include "layers/layer.h"
#include "lib/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct integrity_store *g_store;
static char *g_store_path;

/* ---- configuration ---- */

static int parse_mode(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                      enum integrity_mode *out, struct cfg_error *err)
{
    char *s = NULL;
    if (cfg_get_string(doc, map, path, "mode", 0, &s, err) != 0)
        return -1;
    int rc = 0;
    if (s) {
        if (strcmp(s, "enforce") == 0)
            *out = INTEGRITY_ENFORCE;
        else if (strcmp(s, "warn") == 0)
            *out = INTEGRITY_WARN;
        else if (strcmp(s, "off") == 0)
            *out = INTEGRITY_OFF;
        else
            rc = cfg_errorf(err, doc, cfg_map_get(map, "mode"), path, "mode: enforce, warn or off");
    }
    free(s);
    return rc ? -1 : 0;
}

void integrity_config_free(struct integrity_config *ic)
{
    if (!ic)
        return;
    free(ic->store_path);
    for (size_t i = 0; i < ic->n_backends; i++)
        free(ic->backends[i].backend);
    free(ic->backends);
    integrity_rules_free(ic->rules);
    free(ic);
}

static int parse_rules(const struct cfg_doc *doc, const struct cfg_node *node,
                       struct integrity_config *ic, struct cfg_error *err)
{
    const struct cfg_node *rules = cfg_map_get(node, "rules");
    if (!rules)
        return 0;
    if (cfg_expect_seq(doc, rules, "integrity.rules", err) != 0)
        return -1;
    static const char *const keys[] = {"id", "pattern", NULL};
    for (size_t i = 0; i < rules->n; i++) {
        char path[64];
        cfg_path_index(path, sizeof path, "integrity.rules", i);
        const struct cfg_node *r = rules->items[i];
        char *id = NULL, *pat = NULL;
        if (cfg_expect_map(doc, r, path, err) != 0 || cfg_check_keys(doc, r, path, keys, err) ||
            cfg_get_string(doc, r, path, "id", 1, &id, err) != 0 ||
            cfg_get_string(doc, r, path, "pattern", 1, &pat, err) != 0) {
            free(id);
            free(pat);
            return -1;
        }
        struct gw_buf line = {0};
        char msg[256];
        int rc = strpbrk(id, " \t\n") || strchr(pat, '\n') ? -1 : 0;
        if (rc == 0 && gw_buf_printf(&line, "%s %s", id, pat) == 0)
            rc = integrity_rules_add(&ic->rules, line.data, path, msg, sizeof msg);
        else
            snprintf(msg, sizeof msg, "an id is one word and a pattern one line");
        gw_buf_free(&line);
        free(id);
        free(pat);
        if (rc != 0)
            return cfg_errorf(err, doc, r, path, "%s", msg);
    }
    return 0;
}

int integrity_config_parse(const struct cfg_doc *doc, const struct cfg_node *node,
                           const char *config_name, struct integrity_config **out,
                           struct cfg_error *err)
{
    struct integrity_config *ic = calloc(1, sizeof *ic);
    if (!ic)
        return cfg_errorf(err, doc, node, "integrity", "out of memory");
    *out = ic;
    ic->mode = INTEGRITY_ENFORCE;
    ic->scan = SCAN_QUARANTINE;
    ic->max_description = 4096;
    char msg[256];
    if (integrity_rules_add(&ic->rules, integrity_builtin_rules, "built-in rules", msg,
                            sizeof msg) != 0)
        return cfg_errorf(err, doc, node, "integrity", "%s", msg);
    if (!node)
        return 0;
    static const char *const keys[] = {"store",    "mode",  "scan", "max_description",
                                       "backends", "rules", NULL};
    if (cfg_expect_map(doc, node, "integrity", err) != 0 ||
        cfg_check_keys(doc, node, "integrity", keys, err) != 0 ||
        parse_mode(doc, node, "integrity", &ic->mode, err) != 0)
        return -1;
    char *store = NULL, *scan = NULL;
    int64_t maxd = (int64_t)ic->max_description;
    if (cfg_get_string(doc, node, "integrity", "store", 0, &store, err) != 0 ||
        cfg_get_string(doc, node, "integrity", "scan", 0, &scan, err) != 0 ||
        cfg_get_int(doc, node, "integrity", "max_description", 0, 1 << 20, &maxd, err) != 0) {
        free(store);
        free(scan);
        return -1;
    }
    ic->max_description = (size_t)maxd;
    if (store) {
        ic->store_path = cfg_resolve_path(config_name, store);
        free(store);
    }
    int rc = 0;
    if (scan) {
        if (strcmp(scan, "quarantine") == 0)
            ic->scan = SCAN_QUARANTINE;
        else if (strcmp(scan, "log") == 0)
            ic->scan = SCAN_LOG;
        else if (strcmp(scan, "off") == 0)
            ic->scan = SCAN_OFF;
        else
            rc = cfg_errorf(err, doc, cfg_map_get(node, "scan"), "integrity.scan",
                            "quarantine, log or off");
        free(scan);
    }
    if (rc != 0 || parse_rules(doc, node, ic, err) != 0)
        return -1;
    const struct cfg_node *be = cfg_map_get(node, "backends");
    if (be) {
        if (cfg_expect_map(doc, be, "integrity.backends", err) != 0)
            return -1;
        ic->backends = calloc(be->n ? be->n : 1, sizeof *ic->backends);
        if (!ic->backends)
            return cfg_errorf(err, doc, be, "integrity.backends", "out of memory");
        static const char *const bkeys[] = {"mode", NULL};
        for (size_t i = 0; i < be->n; i++) {
            char path[160];
            cfg_path_key(path, sizeof path, "integrity.backends", be->keys[i]);
            struct integrity_backend_mode *m = &ic->backends[ic->n_backends];
            m->mode = ic->mode;
            if (cfg_expect_map(doc, be->items[i], path, err) != 0 ||
                cfg_check_keys(doc, be->items[i], path, bkeys, err) != 0 ||
                parse_mode(doc, be->items[i], path, &m->mode, err) != 0 ||
                !(m->backend = strdup(be->keys[i])))
                return -1;
            ic->n_backends++;
        }
    }
    return 0;
}

/* ---- the stage ---- */

/* What names the pinned list: route/backend for a relay, the route for a merged one. */
static void list_key(const struct gw_request *req, char *out, size_t len)
{
    const struct gw_route *r = req->route;
    if (r && r->n_backends == 1)
        snprintf(out, len, "%s/%s", r->name, r->backends[0].name);
    else
        snprintf(out, len, "%s", r ? r->name : "");
}

static enum integrity_mode mode_for(const struct integrity_config *ic, const struct gw_route *r)
{
    for (size_t i = 0; r && i < ic->n_backends; i++)
        for (size_t b = 0; b < r->n_backends; b++)
            if (strcmp(ic->backends[i].backend, r->backends[b].name) == 0)
                return ic->backends[i].mode;
    return ic->mode;
}

static struct integrity_store *store_get(void)
{
    pthread_mutex_lock(&g_mu);
    struct integrity_store *s = g_store;
    pthread_mutex_unlock(&g_mu);
    return s;
}

static void audit_event(const char *event, const char *key, const char *kind, const char *name,
                        const char *hash, const char *detail)
{
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kind", "integrity", "event",
                            event, "backend", key, "list", kind, "name", name, "hash", hash,
                            "detail", detail ? detail : "");
    if (rec)
        audit_submit(rec); /* -ENOTCONN without a writer (tests, the command line) */
}

static const char *target_kind(const struct mcp_message *m)
{
    if (!m->spec || !m->target)
        return NULL;
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

static int integrity_check(struct gw_request *req, struct gw_decision *out)
{
    const struct integrity_config *ic = integrity_config_of(req->cfg);
    if (!ic || mode_for(ic, req->route) != INTEGRITY_ENFORCE)
        return GW_PASS;
    struct integrity_store *s = store_get();
    char key[256];
    list_key(req, key, sizeof key);
    for (size_t i = 0; i < req->rpc.n; i++) {
        const struct mcp_message *m = &req->rpc.msgs[i];
        const char *kind = target_kind(m);
        if (!kind || (m->kind != MCP_REQUEST && m->kind != MCP_NOTIFICATION))
            continue;
        if (!s)
            return gw_decision_deny(out, 503, JSONRPC_INTERNAL_ERROR, "integrity.unavailable",
                                    "The tool-integrity store is unavailable.");
        struct integrity_pin pin;
        int found = integrity_store_get(s, key, kind, m->target, &pin);
        if (found < 0)
            return gw_decision_deny(out, 503, JSONRPC_INTERNAL_ERROR, "integrity.unavailable",
                                    "The tool-integrity store is unavailable.");
        if (found && strcmp(pin.state, "approved") != 0) {
            char why[400];
            snprintf(why, sizeof why,
                     "The %s '%.60s' is quarantined (%.40s): its definition changed or failed "
                     "the integrity scan; an operator must approve it. Do not retry.",
                     kind, m->target, pin.reason);
            gw_decision_deny(out, 200, -32003, "integrity.quarantined", "");
            memcpy(out->reason, why, sizeof out->reason - 1);
            out->reason[sizeof out->reason - 1] = 0;
            return GW_DENY;
        }
    }
    return GW_PASS;
}

static int filter_list(const struct integrity_config *ic, enum integrity_mode mode,
                       struct integrity_store *s, const char *key, const struct integrity_kind *k,
                       json_t *arr, const char *req_id)
{
    size_t n = json_array_size(arr);
    struct integrity_seen *seen = calloc(n ? n : 1, sizeof *seen);
    if (!seen)
        return -1;
    int rc = 0;
    struct gw_sha256_ctx set;
    gw_sha256_init(&set);
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *def = json_array_get(arr, i);
        seen[i].name = json_string_value(json_object_get(def, k->field));
        struct gw_buf b = {0};
        if (!seen[i].name ||
            strlen(seen[i].name) != json_string_length(json_object_get(def, k->field)) ||
            integrity_hash_def(def, k->field, seen[i].hash, seen[i].body) != 0 ||
            integrity_canonical(def, &b, 64) != 0 || gw_buf_append(&b, "", 1) != 0) {
            rc = -1;
            gw_buf_free(&b);
            break;
        }
        seen[i].def = b.data;
        gw_sha256_update(&set, seen[i].hash, GW_SHA256_HEX_LEN);
        if (ic->scan != SCAN_OFF &&
            integrity_scan(ic->rules, def, ic->max_description, seen[i].finding,
                           sizeof seen[i].finding) > 0 &&
            ic->scan == SCAN_LOG) {
            gw_log(GW_LOG_WARN, "integrity_finding", req_id, NULL, "%s %s: rule %s", k->kind,
                   seen[i].name, seen[i].finding);
            seen[i].finding[0] = 0;
        }
    }
    char set_hex[65];
    uint8_t d[GW_SHA256_LEN];
    gw_sha256_final(&set, d);
    for (int i = 0; i < GW_SHA256_LEN; i++)
        snprintf(set_hex + 2 * i, 3, "%02x", d[i]);
    if (rc == 0)
        rc = integrity_store_compare(s, key, k->kind, seen, n, set_hex);
    /* Hide what is not approved as it is now (enforce); say so either way. */
    size_t i = 0, w = 0;
    while (rc == 0 && w < n) {
        struct integrity_seen *e = &seen[w++];
        if (e->event[0]) {
            audit_event(e->event, key, k->kind, e->name, e->hash, e->detail);
            if (strcmp(e->event, "pinned") != 0)
                gw_log(GW_LOG_WARN, "integrity_quarantine", req_id, NULL,
                       "%s %s on %s: %s%s%s (%s)", k->kind, e->name, key, e->event,
                       e->detail[0] ? " " : "", e->detail,
                       mode == INTEGRITY_ENFORCE ? "hidden" : "warn mode: passed");
        }
        if (!e->visible && mode == INTEGRITY_ENFORCE)
            json_array_remove(arr, i);
        else
            i++;
    }
    for (size_t j = 0; j < n; j++)
        free(seen[j].def);
    free(seen);
    return rc;
}

static int filter_message(struct gw_request *req, json_t *msg, int *modified,
                          struct gw_decision *out)
{
    const struct integrity_config *ic = integrity_config_of(req->cfg);
    json_t *result = json_object_get(msg, "result");
    if (!ic || !json_is_object(result))
        return GW_PASS;
    enum integrity_mode mode = mode_for(ic, req->route);
    if (mode == INTEGRITY_OFF)
        return GW_PASS;
    char key[256];
    list_key(req, key, sizeof key);
    for (size_t k = 0; k < 4; k++) {
        json_t *arr = json_object_get(result, integrity_kinds[k].list);
        if (!arr)
            continue;
        struct integrity_store *s = store_get();
        size_t before = json_array_size(arr);
        if (!json_is_array(arr) || !s ||
            filter_list(ic, mode, s, key, &integrity_kinds[k], arr, req->id) != 0) {
            if (mode != INTEGRITY_ENFORCE)
                continue;
            gw_log(GW_LOG_ERROR, "integrity_error", req->id, NULL,
                   "a %s list could not be checked against the pins; nothing of it is shown",
                   integrity_kinds[k].kind);
            json_object_set_new(result, integrity_kinds[k].list, json_array());
            *modified = 1;
            continue;
        }
        if (json_array_size(arr) != before)
            *modified = 1;
    }
    (void)out;
    return GW_PASS;
}

static int integrity_on_response(struct gw_request *req, json_t *msg, int *modified,
                                 struct gw_decision *out)
{
    if (json_is_array(msg)) {
        for (size_t i = 0; i < json_array_size(msg); i++)
            filter_message(req, json_array_get(msg, i), modified, out);
        return GW_PASS;
    }
    if (!json_is_object(msg) || json_object_get(msg, "method"))
        return GW_PASS;
    return filter_message(req, msg, modified, out);
}

const struct gw_layer_ops integrity_layer = {
    .check = integrity_check,
    .on_response = integrity_on_response,
};

/* ---- module ---- */

static int parse(const struct cfg_doc *doc, const struct cfg_node *node, void **out,
                 struct cfg_error *err)
{
    struct integrity_config *ic = NULL;
    int rc = integrity_config_parse(doc, node, doc ? doc->name : NULL, &ic, err);
    *out = ic;
    return rc;
}

static void conf_free(void *conf)
{
    integrity_config_free(conf);
}

static int start(const struct gw_config *cfg)
{
    const struct integrity_config *ic = integrity_config_of(cfg);
    const char *path = ic && ic->store_path ? ic->store_path : ":memory:";
    pthread_mutex_lock(&g_mu);
    int rc = 0;
    if (!g_store || !g_store_path || strcmp(g_store_path, path) != 0) {
        char err[256];
        struct integrity_store *s = integrity_store_open(path, err, sizeof err);
        if (!s) {
            gw_log_error("integrity_store", "%s", err);
            rc = -1;
        } else {
            integrity_store_close(g_store);
            free(g_store_path);
            g_store = s;
            g_store_path = strdup(path);
        }
    }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

static void stop(void)
{
    pthread_mutex_lock(&g_mu);
    integrity_store_close(g_store);
    g_store = NULL;
    free(g_store_path);
    g_store_path = NULL;
    pthread_mutex_unlock(&g_mu);
}

static const struct gw_command commands[] = {
    {"tools", "list|diff|approve|reject   pinned definitions and their quarantine",
     integrity_cli_main},
    {NULL, NULL, NULL},
};

static const char *const reasons[] = {"integrity.quarantined", "integrity.unavailable", NULL};

const struct gw_module integrity_module = {
    .name = "integrity",
    .config_key = "integrity",
    .parse = parse,
    .free = conf_free,
    .start = start,
    .stop = stop,
    .layer = &integrity_layer,
    .reason_codes = reasons,
    .commands = commands,
};
