/*
 * config: loads one generation from YAML: the core's sections (server: config_server.c,
 * routes: config_routes.c, admin: config_admin.c), then every module's own key (core/module.h).
 *
 * Every error names file:line:col, the key path, what is wrong and what to write instead: the
 * person reading it is fixing a file, usually in a hurry.
 */
#include "core/config-int.h"
#include "core/module.h"
#include "core/route_kind.h"
#include "lib/digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the core's sections; every other top-level key belongs to a module ------------------ */

static const struct config_section {
    const char *name;
    int (*parse)(struct gw_config *cfg, const struct cfg_doc *doc, const struct cfg_node *node,
                 struct cfg_error *err);
    void (*free)(struct gw_config *cfg);
} core_sections[] = {
    {"server", config_parse_server, config_free_server},
    {"routes", config_parse_routes, config_free_routes},
    {"admin", config_parse_admin, config_free_admin},
};

#define N_CORE (sizeof core_sections / sizeof core_sections[0])

void gw_config_free(struct gw_config *cfg)
{
    if (!cfg)
        return;
    for (size_t m = gw_n_modules; m > 0; m--) {
        const struct gw_module *mod = gw_modules[m - 1];
        if (cfg->modules[m - 1] && mod->free)
            mod->free(cfg->modules[m - 1]);
        cfg->modules[m - 1] = NULL;
    }
    for (size_t i = N_CORE; i > 0; i--)
        core_sections[i - 1].free(cfg);
    free(cfg->path);
    free(cfg);
}

/* Feeds a node's tree into the digest: kinds, scalars, quoting and keys, in order. */
static void digest_node(struct gw_sha256_ctx *c, const struct cfg_node *n)
{
    uint8_t tag[2] = {(uint8_t)n->kind, (uint8_t)n->quoted};
    gw_sha256_update(c, tag, sizeof tag);
    if (n->kind == CFG_SCALAR) {
        gw_sha256_update(c, n->scalar, strlen(n->scalar) + 1);
        return;
    }
    uint64_t count = n->n;
    gw_sha256_update(c, &count, sizeof count);
    for (size_t i = 0; i < n->n; i++) {
        if (n->kind == CFG_MAP)
            gw_sha256_update(c, n->keys[i], strlen(n->keys[i]) + 1);
        digest_node(c, n->items[i]);
    }
}

void gw_config_node_digest(const struct cfg_node *node, uint8_t out[32])
{
    struct gw_sha256_ctx c;
    gw_sha256_init(&c);
    digest_node(&c, node);
    gw_sha256_final(&c, out);
}

static void digest_section(struct gw_config *cfg, const struct cfg_doc *doc, const char *key)
{
    struct gw_config_section_digest *d = &cfg->sections[cfg->n_sections++];
    const struct cfg_node *node = cfg_map_get(doc->root, key);
    d->key = key;
    memset(d->digest, 0, sizeof d->digest);
    if (node && !cfg_is_null(node)) {
        struct gw_sha256_ctx c;
        gw_sha256_init(&c);
        digest_node(&c, node);
        gw_sha256_final(&c, d->digest);
    }
}

int gw_config_section_same(const struct gw_config *a, const struct gw_config *b, const char *key)
{
    const uint8_t *da = NULL, *db = NULL;
    for (size_t i = 0; i < a->n_sections; i++)
        if (strcmp(a->sections[i].key, key) == 0)
            da = a->sections[i].digest;
    for (size_t i = 0; i < b->n_sections; i++)
        if (strcmp(b->sections[i].key, key) == 0)
            db = b->sections[i].digest;
    return da && db && memcmp(da, db, 32) == 0;
}

static struct gw_config *load_bytes(const char *text, size_t len, const char *name,
                                    const char *path, struct cfg_error *err)
{
    struct cfg_doc doc;
    struct gw_config *cfg = NULL;
    const char *known[N_CORE + GW_MAX_MODULES + 1];
    size_t n_known = 0;
    int ok = 0;

    if (cfg_load_string(text, len, name, &doc, err) != 0)
        return NULL;
    cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        cfg_errorf(err, &doc, NULL, "", "out of memory");
        goto out;
    }
    for (size_t i = 0; i < N_CORE; i++)
        known[n_known++] = core_sections[i].name;
    for (size_t m = 0; m < gw_n_modules; m++)
        if (gw_modules[m]->config_key)
            known[n_known++] = gw_modules[m]->config_key;
    known[n_known] = NULL;
    if (cfg_check_keys(&doc, doc.root, "", known, err) != 0)
        goto out;
    /* The core's sections first (modules' route keys are parsed with the routes). */
    for (size_t i = 0; i < N_CORE; i++) {
        const struct cfg_node *node = cfg_map_get(doc.root, core_sections[i].name);
        if (cfg_is_null(node))
            node = NULL;
        if (core_sections[i].parse(cfg, &doc, node, err) != 0)
            goto out;
    }
    for (size_t m = 0; m < gw_n_modules; m++) {
        const struct gw_module *mod = gw_modules[m];
        if (!mod->config_key || !mod->parse)
            continue;
        const struct cfg_node *node = cfg_map_get(doc.root, mod->config_key);
        if (cfg_is_null(node))
            node = NULL;
        if (mod->parse(&doc, node, &cfg->modules[m], err) != 0)
            goto out;
    }
    for (size_t m = 0; m < gw_n_modules; m++)
        if (gw_modules[m]->validate && gw_modules[m]->validate(cfg, &doc, err) != 0)
            goto out;
    gw_sha256_hex(text, len, cfg->config_hash);
    for (size_t i = 0; i < n_known; i++)
        digest_section(cfg, &doc, known[i]);
    atomic_init(&cfg->refs, 1);
    cfg->generation = 1;
    if (path && !(cfg->path = strdup(path))) {
        cfg_errorf(err, &doc, NULL, "", "out of memory");
        goto out;
    }
    ok = 1;
out:
    cfg_doc_free(&doc);
    if (!ok) {
        gw_config_free(cfg);
        cfg = NULL;
    }
    return cfg;
}

struct gw_config *gw_config_load_string(const char *yaml, const char *name, struct cfg_error *err)
{
    return load_bytes(yaml, strlen(yaml), name ? name : "config", NULL, err);
}

/*
 * The file is read once and both hashed and parsed from the same bytes, so config_hash names
 * exactly what was loaded even if the file changes meanwhile.
 */
struct gw_config *gw_config_load(const char *path, struct cfg_error *err)
{
    char *text;
    size_t len;
    if (cfg_read_file(path, CONFIG_MAX_FILE, &text, &len, err) != 0)
        return NULL;
    struct gw_config *cfg = load_bytes(text, len, path, path, err);
    free(text);
    return cfg;
}

int gw_config_check_serve(const struct gw_config *cfg, struct cfg_error *err)
{
    if (cfg->n_routes == 0) {
        snprintf(err->msg, sizeof err->msg,
                 "%s: routes: no routes are configured, so there is nothing to serve; add one "
                 "like {name: ehr, path: /mcp, backends: [{name: ehr, url: "
                 "\"http://127.0.0.1:9001/mcp\"}]}",
                 cfg->path ? cfg->path : "config");
        return -1;
    }
    return 0;
}

/* Routes are few (bounded by CONFIG_MAX_ROUTES) and short: a linear scan is enough. */
const struct gw_route *gw_config_route_for(const struct gw_config *cfg, const char *path,
                                           size_t len)
{
    if (!cfg || !path)
        return NULL;
    /* Defensive: a query never takes part in matching, even if the caller left it on. */
    const char *q = memchr(path, '?', len);
    if (q)
        len = (size_t)(q - path);
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const struct gw_route *r = &cfg->routes[i];
        size_t rlen = strlen(r->path);
        if (r->kind_ops && r->kind_ops->matches) {
            if (r->kind_ops->matches(r, path, len))
                return r;
        } else if (rlen == len && memcmp(r->path, path, len) == 0) {
            return r;
        }
    }
    return NULL;
}
