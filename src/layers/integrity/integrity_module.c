/*
 * The integrity layer as a module: its section, its runtime (the pin store, a manifest pinned
 * at start, the thread that puts the store's events on the audit chain), its reload rule,
 * its admin API topic and the `toolgate tools` command. Its stage (integrity_layer.c) runs
 * between safety and policy: on the way back it must see a backend's whole list before policy
 * filters it per principal, and on the way in a quarantined tool is refused before policy or
 * limits spend anything on it.
 */
#include "layers/integrity/integrity.h"
#include "core/reload.h"
#include "layers/layer.h"
#include "lib/events.h"
#include "lib/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Atomic(struct integrity_store *) g_store;
static pthread_t g_drain;
static atomic_int g_draining;

struct integrity_store *integrity_running_store(void)
{
    return atomic_load(&g_store);
}

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
    free(ic->store_url);
    free(ic->manifest);
    free(ic->manifest_key);
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

static int parse_backends(const struct cfg_doc *doc, const struct cfg_node *node,
                          struct integrity_config *ic, struct cfg_error *err)
{
    const struct cfg_node *be = cfg_map_get(node, "backends");
    if (!be)
        return 0;
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
            parse_mode(doc, be->items[i], path, &m->mode, err) != 0)
            return -1;
        if (!(m->backend = strdup(be->keys[i])))
            return cfg_errorf(err, doc, be->items[i], path, "out of memory");
        ic->n_backends++;
    }
    return 0;
}

static int parse_store(const struct cfg_doc *doc, const struct cfg_node *node,
                       struct integrity_config *ic, struct cfg_error *err)
{
    char *store = NULL;
    if (cfg_get_string(doc, node, "integrity", "store", 0, &store, err) != 0)
        return -1;
    if (!store)
        return 0;
    int rc = 0;
    if (strcmp(store, "memory") == 0) {
        free(ic->store_url);
        ic->store_url = NULL;
    } else if (idb_is_postgres_url(store) || (strncmp(store, "sqlite:", 7) == 0 && store[7])) {
        free(ic->store_url);
        ic->store_url = store;
        store = NULL;
    } else {
        rc = cfg_errorf(err, doc, cfg_map_get(node, "store"), "integrity.store",
                        "memory, \"sqlite:PATH\" or \"postgres://...\"");
    }
    free(store);
    return rc;
}

/* A file the configuration names (relative to the working directory, as every path). */
static int parse_file(const struct cfg_doc *doc, const struct cfg_node *node, const char *key,
                      char **out, struct cfg_error *err)
{
    char path[64];
    cfg_path_key(path, sizeof path, "integrity", key);
    if (cfg_get_string(doc, node, "integrity", key, 0, out, err) != 0)
        return -1;
    if (*out && !(*out)[0]) {
        free(*out);
        *out = NULL;
        return cfg_errorf(err, doc, cfg_map_get(node, key), path, "a file name");
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
    ic->first_window_ms = 60000;
    ic->cache_ttl_ms = 1000;
    ic->store_url = strdup("sqlite:toolgate-pins.db");
    char msg[256];
    if (!ic->store_url)
        return cfg_errorf(err, doc, node, "integrity", "out of memory");
    if (integrity_rules_add(&ic->rules, integrity_builtin_rules, "built-in rules", msg,
                            sizeof msg) != 0)
        return cfg_errorf(err, doc, node, "integrity", "%s", msg);
    if (!node)
        return 0;
    static const char *const keys[] = {
        "store",    "mode",       "scan",     "max_description", "first_listing_window",
        "manifest", "public_key", "backends", "rules",           "cache_ttl",
        NULL};
    if (cfg_expect_map(doc, node, "integrity", err) != 0 ||
        cfg_check_keys(doc, node, "integrity", keys, err) != 0 ||
        parse_mode(doc, node, "integrity", &ic->mode, err) != 0 ||
        parse_store(doc, node, ic, err) != 0 ||
        parse_file(doc, node, "manifest", &ic->manifest, err) != 0 ||
        parse_file(doc, node, "public_key", &ic->manifest_key, err) != 0 ||
        cfg_get_duration_ms(doc, node, "integrity", "first_listing_window", &ic->first_window_ms,
                            err) != 0 ||
        cfg_get_duration_ms(doc, node, "integrity", "cache_ttl", &ic->cache_ttl_ms, err) != 0)
        return -1;
    if (ic->cache_ttl_ms > 60000)
        return cfg_errorf(err, doc, cfg_map_get(node, "cache_ttl"), "integrity.cache_ttl",
                          "at most 1m: a decision taken elsewhere reaches calls within it");
    if (!ic->manifest != !ic->manifest_key)
        return cfg_errorf(err, doc, node, "integrity",
                          "manifest and public_key go together: a manifest is pinned only once "
                          "its signature verifies with the public key");
    char *scan = NULL;
    int64_t maxd = (int64_t)ic->max_description;
    if (cfg_get_string(doc, node, "integrity", "scan", 0, &scan, err) != 0 ||
        cfg_get_int(doc, node, "integrity", "max_description", 0, 1 << 20, &maxd, err) != 0) {
        free(scan);
        return -1;
    }
    ic->max_description = (size_t)maxd;
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
    if (rc != 0 || parse_rules(doc, node, ic, err) != 0 || parse_backends(doc, node, ic, err) != 0)
        return -1;
    return 0;
}

enum integrity_mode integrity_mode_for(const struct integrity_config *ic, const char *route,
                                       const char *backend)
{
    size_t rl = strlen(route);
    for (size_t i = 0; i < ic->n_backends; i++) {
        const char *k = ic->backends[i].backend;
        if (strncmp(k, route, rl) == 0 && k[rl] == '/' && strcmp(k + rl + 1, backend) == 0)
            return ic->backends[i].mode;
    }
    for (size_t i = 0; i < ic->n_backends; i++)
        if (strcmp(ic->backends[i].backend, backend) == 0)
            return ic->backends[i].mode;
    return ic->mode;
}

/* Every key of integrity.backends names a backend of a route: a typo protects nothing. */
static int backends_known(const struct gw_config *cfg, const struct integrity_config *ic, char *err,
                          size_t errlen)
{
    for (size_t i = 0; i < ic->n_backends; i++) {
        const char *k = ic->backends[i].backend;
        int found = 0;
        for (size_t r = 0; !found && r < cfg->n_routes; r++) {
            const struct gw_route *route = &cfg->routes[r];
            size_t rl = strlen(route->name);
            for (size_t b = 0; !found && b < route->n_backends; b++) {
                const char *name = route->backends[b].name;
                found = strcmp(k, name) == 0 || (strncmp(k, route->name, rl) == 0 && k[rl] == '/' &&
                                                 strcmp(k + rl + 1, name) == 0);
            }
        }
        if (!found) {
            snprintf(err, errlen,
                     "integrity.backends.%s names no backend of any route (write a backend's "
                     "name, or route/backend)",
                     k);
            return -1;
        }
    }
    return 0;
}

/* ---- runtime ---- */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Puts the store's events (the server's and the command line's) on the audit chain. */
static void *drain_main(void *arg)
{
    struct integrity_store *s = arg;
    while (atomic_load(&g_draining)) {
        if (integrity_store_drain(s, gw_event_submit) < 0)
            gw_log(GW_LOG_WARN, "integrity_drain", NULL, NULL,
                   "the pin store's events could not be read (%s); retrying",
                   integrity_store_error(s));
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    /* Whatever is left goes before audit stops (it stops after every other module). */
    for (int i = 0; i < 64 && integrity_store_drain(s, gw_event_submit) > 0; i++)
        ;
    return NULL;
}

static int start(const struct gw_config *cfg)
{
    const struct integrity_config *ic = integrity_config_of(cfg);
    if (!ic)
        return 0;
    char err[512];
    if (backends_known(cfg, ic, err, sizeof err) != 0) {
        gw_log_error("integrity_config", "%s", err);
        return -1;
    }
    const char *url = ic->store_url ? ic->store_url : ":memory:";
    struct integrity_store *s = integrity_store_open(url, err, sizeof err);
    if (!s) {
        gw_log_error("integrity_store", "%s", err);
        return -1;
    }
    if (ic->manifest) {
        char digest[GW_SHA256_HEX_LEN + 1];
        json_t *m =
            integrity_manifest_load(ic->manifest, ic->manifest_key, digest, err, sizeof err);
        int n = m ? integrity_store_apply_manifest(s, m, digest, wall_ms()) : -1;
        json_decref(m);
        if (n < 0) {
            gw_log_error("integrity_manifest", "the pin manifest is refused: %s",
                         m ? integrity_store_error(s) : err);
            integrity_store_close(s);
            return -1;
        }
        gw_log(GW_LOG_INFO, "integrity_manifest", NULL, NULL, "%s: %d pins applied%s", ic->manifest,
               n, n == 0 ? " (the same manifest as before: decisions kept)" : "");
    }
    atomic_store(&g_draining, 1);
    if (pthread_create(&g_drain, NULL, drain_main, s) != 0) {
        atomic_store(&g_draining, 0);
        integrity_store_close(s);
        gw_log_error("integrity_store", "cannot start the audit drain thread");
        return -1;
    }
    atomic_store(&g_store, s);
    return 0;
}

static void stop(void)
{
    struct integrity_store *s = atomic_exchange(&g_store, NULL);
    if (!s)
        return;
    atomic_store(&g_draining, 0);
    pthread_join(g_drain, NULL);
    integrity_cache_clear();
    integrity_store_close(s);
}

/*
 * Modes, scan settings and rules follow a reload (every request reads its own generation);
 * the store and the manifest are opened and applied at start.
 */
static int prepare(const struct gw_config *running, const struct gw_config *next,
                   struct cfg_error *err)
{
    const struct integrity_config *a = integrity_config_of(running), *b = integrity_config_of(next);
    char why[512];
    if (b && backends_known(next, b, why, sizeof why) != 0) {
        snprintf(err->msg, sizeof err->msg, "%s", why);
        return -1;
    }
    const char *fields[][2] = {
        {a ? a->store_url : NULL, b ? b->store_url : NULL},
        {a ? a->manifest : NULL, b ? b->manifest : NULL},
        {a ? a->manifest_key : NULL, b ? b->manifest_key : NULL},
    };
    static const char *const names[] = {"integrity.store", "integrity.manifest",
                                        "integrity.public_key"};
    for (size_t i = 0; i < 3; i++) {
        const char *x = fields[i][0], *y = fields[i][1];
        if ((!x != !y) || (x && strcmp(x, y) != 0)) {
            snprintf(err->msg, sizeof err->msg,
                     "%s changed: the pin store is opened and the manifest applied at start; a "
                     "restart is needed",
                     names[i]);
            return -1;
        }
    }
    return 0;
}

static int check(const struct gw_config *cfg, const char *config_path, struct gw_buf *summary)
{
    (void)config_path;
    const struct integrity_config *ic = integrity_config_of(cfg);
    char err[512];
    if (!ic)
        return 0;
    if (backends_known(cfg, ic, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (ic->manifest) {
        char digest[GW_SHA256_HEX_LEN + 1];
        json_t *m =
            integrity_manifest_load(ic->manifest, ic->manifest_key, digest, err, sizeof err);
        if (!m) {
            fprintf(stderr, "integrity.manifest: %s\n", err);
            return 1;
        }
        gw_buf_printf(summary, ", pin manifest verified (%zu pins)",
                      json_array_size(json_object_get(m, "pins")));
        json_decref(m);
    }
    return 0;
}

/* ---- admin API: GET /admin/api/integrity[?state=pending&backend=route/backend] ---- */

struct api_rows {
    json_t *pins;
    size_t n;
};

void integrity_pin_id(const char *backend, const char *kind, const char *name,
                      char id[INTEGRITY_PIN_ID_LEN + 1])
{
    struct gw_sha256_ctx c;
    uint8_t h[GW_SHA256_LEN];
    gw_sha256_init(&c);
    gw_sha256_update(&c, backend, strlen(backend) + 1);
    gw_sha256_update(&c, kind, strlen(kind) + 1);
    gw_sha256_update(&c, name, strlen(name));
    gw_sha256_final(&c, h);
    memcpy(id, "pin-", 4);
    gw_hex(h, (INTEGRITY_PIN_ID_LEN - 4) / 2, id + 4);
}

static json_t *describe_row(const struct integrity_row *r)
{
    char id[INTEGRITY_PIN_ID_LEN + 1];
    integrity_pin_id(r->backend, r->kind, r->name, id);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "backend", r->backend, "kind",
                          r->kind, "name", r->name, "state", r->state, "reason", r->reason);
    if (o && r->approved_hash)
        json_object_set_new(o, "approved_hash", json_string(r->approved_hash));
    if (o && r->seen_hash)
        json_object_set_new(o, "seen_hash", json_string(r->seen_hash));
    return o;
}

static void api_row(void *arg, const struct integrity_row *r)
{
    struct api_rows *a = arg;
    if (a->n++ >= 1000)
        return;
    json_array_append_new(a->pins, describe_row(r));
}

int integrity_admin_api(const struct gw_config *cfg, const char *topic, const json_t *params,
                        json_t **out)
{
    if (strcmp(topic, "integrity") != 0)
        return 0;
    (void)cfg;
    const char *state = json_string_value(json_object_get(params, "state"));
    const char *backend = json_string_value(json_object_get(params, "backend"));
    if (state && strcmp(state, "approved") && strcmp(state, "pending") &&
        strcmp(state, "rejected")) {
        *out = json_pack("{s:s}", "error", "state: approved, pending or rejected");
        return 400;
    }
    struct integrity_store *s = integrity_running_store();
    struct api_rows a = {json_array(), 0};
    if (!s || !a.pins || integrity_store_rows(s, backend, state, api_row, &a) != 0) {
        json_decref(a.pins);
        *out = json_pack("{s:s}", "error", "the pin store is unavailable");
        return 503;
    }
    *out = json_pack("{s:o, s:I, s:b}", "pins", a.pins, "total", (json_int_t)a.n, "truncated",
                     a.n > 1000);
    return *out ? 200 : 503;
}

/* ---- admin API: POST /admin/api/integrity/<id> {"decision", "hash"} ---- */

/* The pin an id names, found by a walk of the pins (the listing is bounded the same way). */
struct find_pin {
    const char *id;
    char *backend, *kind, *name;
    json_t *pin;
};

static void find_row(void *arg, const struct integrity_row *r)
{
    struct find_pin *f = arg;
    char id[INTEGRITY_PIN_ID_LEN + 1];
    if (f->pin)
        return;
    integrity_pin_id(r->backend, r->kind, r->name, id);
    if (strcmp(id, f->id) != 0)
        return;
    f->backend = strdup(r->backend);
    f->kind = strdup(r->kind);
    f->name = strdup(r->name);
    f->pin = describe_row(r);
}

static void find_free(struct find_pin *f)
{
    free(f->backend);
    free(f->kind);
    free(f->name);
    json_decref(f->pin);
    memset(f, 0, sizeof *f);
}

static int action_error(json_t **out, int status, const char *message, json_t *pin)
{
    *out = pin ? json_pack("{s:s, s:O}", "error", message, "pin", pin)
               : json_pack("{s:s}", "error", message);
    return status;
}

/* Reads and checks the body: 0 with the decision and the lower-cased prefix, or -1. */
static int action_body(const json_t *body, int *approve, char hash[GW_SHA256_HEX_LEN + 1],
                       const char **why)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        if (strcmp(key, "decision") != 0 && strcmp(key, "hash") != 0) {
            *why = "the body has a member other than \"decision\" and \"hash\"";
            return -1;
        }
    }
    const char *d = json_string_value(json_object_get(body, "decision"));
    if (!d || (strcmp(d, "approve") != 0 && strcmp(d, "reject") != 0)) {
        *why = "the body is {\"decision\": \"approve\" | \"reject\", \"hash\": \"<at least 8 "
               "leading hex digits of the reviewed hash>\"}";
        return -1;
    }
    *approve = strcmp(d, "approve") == 0;
    const json_t *h = json_object_get(body, "hash");
    size_t n = json_string_length(h);
    const char *t = json_string_value(h);
    if (!t || n < 8 || n > GW_SHA256_HEX_LEN) {
        *why = "\"hash\" is required: 8 to 64 leading hex digits of the hash awaiting the "
               "decision (seen_hash in GET /admin/api/integrity), so what is decided is what "
               "was reviewed";
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            *why = "\"hash\" has a character that is not a hex digit";
            return -1;
        }
        hash[i] = c;
    }
    hash[n] = '\0';
    return 0;
}

int integrity_admin_decide(struct integrity_store *s, const char *id, const json_t *body,
                           const char *approver, int64_t now_ms, json_t **out)
{
    int approve = 0, status;
    char hash[GW_SHA256_HEX_LEN + 1];
    const char *why = NULL;
    struct find_pin f = {.id = id};
    if (action_body(body, &approve, hash, &why) != 0)
        return action_error(out, 400, why, NULL);
    if (!s)
        return action_error(out, 503, "the pin store is unavailable", NULL);
    if (strlen(id) != INTEGRITY_PIN_ID_LEN || strncmp(id, "pin-", 4) != 0)
        return action_error(out, 404,
                            "no pin has this id (ids are \"pin-\" and 16 hex digits, as GET "
                            "/admin/api/integrity lists them)",
                            NULL);
    if (integrity_store_rows(s, NULL, NULL, find_row, &f) != 0) {
        status = action_error(out, 503, "the pin store is unavailable", NULL);
        goto end;
    }
    if (!f.pin) {
        status = action_error(out, 404, "no pin has this id", NULL);
        goto end;
    }
    if (!f.backend || !f.kind || !f.name) {
        status = action_error(out, 503, "out of memory", NULL);
        goto end;
    }
    int r = integrity_store_decide(s, f.backend, f.kind, f.name, hash, approve, approver, now_ms);
    if (r < 0) {
        gw_log(GW_LOG_ERROR, "integrity_store", NULL, NULL,
               "an operator's decision could not be written to the pin store (%s)",
               integrity_store_error(s));
        status = action_error(out, 503, "the pin store failed; nothing was decided", NULL);
        goto end;
    }
    /* This process sees its own decision at once; other instances within cache_ttl. */
    integrity_cache_invalidate();
    json_t *old = f.pin;
    f.pin = NULL;
    struct find_pin now = {.id = id};
    if (integrity_store_rows(s, NULL, NULL, find_row, &now) == 0 && now.pin) {
        json_decref(old);
        old = json_incref(now.pin);
    }
    find_free(&now);
    if (r == INTEGRITY_DECIDE_STALE)
        status = action_error(out, 409,
                              "what awaits a decision is not the hash given (the backend changed "
                              "it again?): review seen_hash and decide again",
                              old);
    else if (r == INTEGRITY_DECIDE_NOTHING)
        status = action_error(out, 409,
                              approve ? "nothing of this pin awaits approval (decided already)"
                                      : "nothing of this pin awaits a decision (decided already)",
                              old);
    else if ((*out = json_pack("{s:O}", "pin", old)) != NULL)
        status = 200;
    else
        status = 503;
    json_decref(old);
end:
    find_free(&f);
    return status;
}

static int admin_action(const struct gw_config *cfg, const char *topic, const char *id,
                        const json_t *body, const struct gw_admin_actor *actor, json_t **out)
{
    (void)cfg;
    if (strcmp(topic, "integrity") != 0)
        return 0;
    return integrity_admin_decide(integrity_running_store(), id, body,
                                  actor && actor->credential ? actor->credential : "admin",
                                  wall_ms(), out);
}

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

static const struct gw_command commands[] = {
    {"tools", "list|diff|approve|reject|pin   pinned definitions, quarantine, signed manifests",
     integrity_cli_main},
    {NULL, NULL, NULL},
};

static const char *const reasons[] = {"integrity.quarantined", "integrity.unlisted",
                                      "integrity.unavailable", NULL};

const struct gw_module integrity_module = {
    .name = "integrity",
    .config_key = "integrity",
    .parse = parse,
    .free = conf_free,
    .check = check,
    .start = start,
    .stop = stop,
    .prepare = prepare,
    .layer = &integrity_layer,
    .reason_codes = reasons,
    .metrics = integrity_metrics,
    .admin_api = integrity_admin_api,
    .admin_action = admin_action,
    .commands = commands,
};
