/*
 * config_routes: the `routes` section: each route's name, path and kind, its backends (URL
 * or endpoints, prefix, health checks, ejection, timeouts), the checks its route kind adds,
 * and the keys modules own under a route.
 */
#include "core/config-int.h"
#include "core/module.h"
#include "core/route_kind.h"
#include "mcp/methods.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- routes ------------------------------------------------------------------------------- */

/* Names of routes and backends appear in logs, metrics labels and audit: keep them plain. */
static int check_name(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                      const char *name, struct cfg_error *err)
{
    size_t len = strlen(name);
    int ok = len > 0 && len <= CONFIG_MAX_NAME;
    for (size_t i = 0; ok && i < len; i++)
        ok = is_lower_alnum(name[i]) || name[i] == '_' || name[i] == '-';
    if (!ok)
        return cfg_errorf(err, doc, node, path,
                          "\"%s\" is not a valid name; use 1 to %d of a-z, 0-9, '_' and '-' "
                          "(for example ehr or billing-api)",
                          name, CONFIG_MAX_NAME);
    return 0;
}

/*
 * Route paths are matched byte for byte against the request path, so they are kept to one
 * spelling: no percent-encoding, no empty, "." or ".." segments, no query or fragment.
 */
static const char *check_route_path(const char *p)
{
    size_t len = strlen(p);
    if (p[0] != '/')
        return "does not start with '/'";
    if (len > CONFIG_MAX_ROUTE_PATH)
        return "is longer than 256 characters";
    if (strchr(p, '?'))
        return "has a query (?...); routes match the path only";
    if (strchr(p, '#'))
        return "has a fragment (#...)";
    if (strchr(p, '%'))
        return "has percent-encoding; write the path in plain characters";
    for (size_t i = 0; i < len; i++)
        if (p[i] != '/' && !is_pchar(p[i]))
            return "has a character that is not allowed in a path (letters, digits, and "
                   "-._~!$&'()*+,;=:@)";
    /* Segment checks: between slashes, never empty (except a final slash), "." or "..". */
    for (const char *seg = p + 1;;) {
        size_t slen = strcspn(seg, "/");
        if (slen == 0 && seg[0] == '/')
            return "has an empty segment (\"//\")";
        if ((slen == 1 && seg[0] == '.') || (slen == 2 && seg[0] == '.' && seg[1] == '.'))
            return "has a \".\" or \"..\" segment";
        if (seg[slen] == '\0')
            break;
        seg += slen + 1;
    }
    if (strcmp(p, "/healthz") == 0 || strcmp(p, "/metrics") == 0 ||
        strcmp(p, "/.well-known") == 0 || strncmp(p, "/.well-known/", 13) == 0)
        return "is one of toolgate's own paths (/healthz, /metrics, /.well-known/...)";
    return NULL;
}

static int check_prefix(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                        const char *prefix, struct cfg_error *err)
{
    size_t len = strlen(prefix);
    int ok = len > 0 && len <= CONFIG_MAX_NAME;
    for (size_t i = 0; ok && i < len; i++)
        ok = is_alnum(prefix[i]) || prefix[i] == '_' || prefix[i] == '-' || prefix[i] == '.';
    if (!ok)
        return cfg_errorf(err, doc, node, path,
                          "\"%s\" is not a valid tool name prefix; use 1 to %d of letters, "
                          "digits, '_', '-' and '.' (for example \"ehr.\"), or leave the key out",
                          prefix, CONFIG_MAX_NAME);
    return 0;
}

/* One endpoint URL of a backend; `node` is where an error points. */
static int check_endpoint_url(const struct cfg_doc *doc, const struct cfg_node *node,
                              const char *path, const char *url, struct cfg_error *err)
{
    int https, port;
    const char *upath;
    const char *why = config_check_http_url(url, &https, &port, &upath);
    if (why)
        return cfg_errorf(
            err, doc, node, path, "%s%s%s %s; write it like http://127.0.0.1:9001/mcp",
            config_shown_quote(url), config_shown_url(url), config_shown_quote(url), why);
    return 0;
}

/* A duration under key in [min, max] (the default already in *out). */
static int get_bounded_duration(const struct cfg_doc *doc, const struct cfg_node *map,
                                const char *path, const char *key, uint64_t min, uint64_t max,
                                uint64_t *out, struct cfg_error *err)
{
    uint64_t v = *out;
    if (cfg_get_duration_ms(doc, map, path, key, &v, err) != 0)
        return -1;
    if (v < min || v > max) {
        char p[PATH_MAX_LEN], have[32], lo[32], hi[32];
        cfg_path_key(p, sizeof p, path, key);
        config_format_duration(v, have, sizeof have);
        config_format_duration(min, lo, sizeof lo);
        config_format_duration(max, hi, sizeof hi);
        return cfg_errorf(err, doc, config_at_key(map, key), p,
                          "%s is out of range; write a duration from %s to %s", have, lo, hi);
    }
    *out = v;
    return 0;
}

/*
 * backends[].health: active checks, only when the key is present. {path: /healthz,
 * interval: 5s, timeout: 1s, unhealthy: 2, healthy: 1}; `health: {}` takes every default.
 */
static int parse_backend_health(const struct cfg_doc *doc, const struct cfg_node *backend,
                                const char *backend_path, struct gw_backend_health *h,
                                struct cfg_error *err)
{
    static const char *const keys[] = {"path", "interval", "timeout", "unhealthy", "healthy", NULL};
    char path[PATH_MAX_LEN];
    cfg_path_key(path, sizeof path, backend_path, "health");
    const struct cfg_node *node = cfg_map_get(backend, "health");
    if (!node)
        return 0;
    if (!cfg_is_null(node) && (cfg_expect_map(doc, node, path, err) != 0 ||
                               cfg_check_keys(doc, node, path, keys, err) != 0))
        return -1;
    if (cfg_is_null(node))
        node = NULL;
    h->interval_ms = 5 * SEC;
    h->timeout_ms = 1 * SEC;
    int64_t unhealthy = 2, healthy = 1;
    if (node &&
        (cfg_get_string(doc, node, path, "path", 0, &h->path, err) != 0 ||
         get_bounded_duration(doc, node, path, "interval", 100, HOUR, &h->interval_ms, err) != 0 ||
         get_bounded_duration(doc, node, path, "timeout", 10, MIN, &h->timeout_ms, err) != 0 ||
         config_get_count(doc, node, path, "unhealthy", 1, 100,
                          "(failed checks in a row that mark an endpoint down)", &unhealthy,
                          err) != 0 ||
         config_get_count(doc, node, path, "healthy", 1, 100,
                          "(good checks in a row that mark it up again)", &healthy, err) != 0))
        return -1;
    if (!h->path && !(h->path = strdup("/healthz")))
        return cfg_errorf(err, doc, backend, path, "out of memory");
    const char *bad = NULL;
    if (h->path[0] != '/' || strlen(h->path) > CONFIG_MAX_ROUTE_PATH)
        bad = "must start with '/' and be at most 256 characters";
    for (const char *c = h->path; !bad && *c; c++)
        if (*c != '/' && *c != '?' && *c != '=' && *c != '&' && !is_pchar(*c))
            bad = "has a character that is not allowed in a path";
    if (bad) {
        char p[PATH_MAX_LEN];
        cfg_path_key(p, sizeof p, path, "path");
        return cfg_errorf(err, doc, config_at_key(node, "path"), p,
                          "\"%s\" %s (for example /healthz)", h->path, bad);
    }
    h->unhealthy = (unsigned)unhealthy;
    h->healthy = (unsigned)healthy;
    return 0;
}

/*
 * backends[].eject: passive ejection. Defaults to {failures: 3, base: 30s, max: 5m} when the
 * backend has several endpoints; with one endpoint it is off unless written (ejecting the
 * only endpoint turns 502s into 503s and helps no one). `failures: 0` turns it off.
 */
static int parse_backend_eject(const struct cfg_doc *doc, const struct cfg_node *backend,
                               const char *backend_path, size_t n_endpoints,
                               struct gw_backend_eject *e, struct cfg_error *err)
{
    static const char *const keys[] = {"failures", "base", "max", NULL};
    char path[PATH_MAX_LEN];
    cfg_path_key(path, sizeof path, backend_path, "eject");
    const struct cfg_node *node = cfg_map_get(backend, "eject");
    if (node && cfg_is_null(node))
        node = NULL;
    e->failures = node || n_endpoints > 1 ? 3 : 0;
    e->base_ms = 30 * SEC;
    e->max_ms = 5 * MIN;
    if (!node)
        return 0;
    int64_t failures = e->failures;
    if (cfg_expect_map(doc, node, path, err) != 0 ||
        cfg_check_keys(doc, node, path, keys, err) != 0 ||
        config_get_count(doc, node, path, "failures", 0, 1000,
                         "(failed requests in a row that eject an endpoint; 0 = never)", &failures,
                         err) != 0 ||
        get_bounded_duration(doc, node, path, "base", 1, HOUR, &e->base_ms, err) != 0 ||
        get_bounded_duration(doc, node, path, "max", 1, DAY, &e->max_ms, err) != 0)
        return -1;
    if (e->max_ms < e->base_ms) {
        char p[PATH_MAX_LEN];
        cfg_path_key(p, sizeof p, path, "max");
        return cfg_errorf(err, doc, config_at_key(node, "max"), p,
                          "is shorter than eject.base; the longest ejection cannot be shorter "
                          "than the first");
    }
    e->failures = (unsigned)failures;
    return 0;
}

/*
 * `tls` of a backend: `ca_file` (the CA bundle its certificate is verified against; default:
 * the system's), `cert_file` and `key_file` (a client certificate, both or neither). Each file
 * must be readable now. Verification itself cannot be turned off.
 */
static int parse_backend_tls(const struct cfg_doc *doc, const struct cfg_node *node,
                             const char *path, struct gw_backend *b, struct cfg_error *err)
{
    static const char *const keys[] = {"ca_file", "cert_file", "key_file", NULL};
    const struct cfg_node *tls = cfg_map_get(node, "tls");
    char p[PATH_MAX_LEN], fp[PATH_MAX_LEN];
    if (!tls || cfg_is_null(tls))
        return 0;
    cfg_path_key(p, sizeof p, path, "tls");
    if (cfg_check_keys(doc, tls, p, keys, err) != 0)
        return -1;
    char **slots[] = {&b->tls_ca, &b->tls_cert, &b->tls_key};
    for (size_t i = 0; i < 3; i++) {
        if (cfg_get_string(doc, tls, p, keys[i], 0, slots[i], err) != 0)
            return -1;
        cfg_path_key(fp, sizeof fp, p, keys[i]);
        if (*slots[i] &&
            config_check_readable_file(doc, cfg_map_get(tls, keys[i]), fp, *slots[i], err) != 0)
            return -1;
    }
    if (!b->tls_cert != !b->tls_key)
        return cfg_errorf(err, doc, tls, p,
                          "a client certificate needs both cert_file and key_file");
    for (size_t i = 0; i < b->n_endpoints; i++)
        if (strncmp(b->endpoints[i], "https://", 8) != 0)
            return cfg_errorf(err, doc, tls, p, "applies to https endpoints only (%s is not)",
                              config_shown_url(b->endpoints[i]));
    return 0;
}

static int parse_backend(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                         struct gw_backend *b, struct cfg_error *err)
{
    static const char *const keys[] = {"name",  "url",      "endpoints", "prefix", "health",
                                       "eject", "timeouts", "protocol",  "tls",    NULL};
    char p[PATH_MAX_LEN];
    int local = config_local_backend(doc, node, path, keys, b, err); /* its keys checked too */
    if (local < 0)
        return -1;
    if (config_get_required_string(doc, node, path, "name", "ehr", &b->name, err) != 0)
        return -1;
    cfg_path_key(p, sizeof p, path, "name");
    if (check_name(doc, cfg_map_get(node, "name"), p, b->name, err) != 0)
        return -1;
    const struct cfg_node *url = cfg_map_get(node, "url");
    const struct cfg_node *eps = cfg_map_get(node, "endpoints");
    if (url && eps)
        return cfg_errorf(err, doc, eps, path,
                          "has both `url` and `endpoints`; write one URL as url: or several as "
                          "endpoints: [...]");
    if (eps && !local) {
        cfg_path_key(p, sizeof p, path, "endpoints");
        if (cfg_get_string_list(doc, node, path, "endpoints", &b->endpoints, &b->n_endpoints,
                                err) != 0)
            return -1;
        if (b->n_endpoints == 0 || b->n_endpoints > CONFIG_MAX_ENDPOINTS)
            return cfg_errorf(err, doc, eps, p, "write 1 to %d endpoint URLs",
                              CONFIG_MAX_ENDPOINTS);
        for (size_t i = 0; i < b->n_endpoints; i++) {
            char ip[PATH_MAX_LEN];
            cfg_path_index(ip, sizeof ip, p, i);
            const struct cfg_node *item = eps->kind == CFG_SEQ ? eps->items[i] : eps;
            if (check_endpoint_url(doc, item, ip, b->endpoints[i], err) != 0)
                return -1;
            for (size_t j = 0; j < i; j++)
                if (strcmp(b->endpoints[j], b->endpoints[i]) == 0)
                    return cfg_errorf(err, doc, item, ip, "is listed twice (also %s[%zu])", p, j);
        }
        if (!(b->url = strdup(b->endpoints[0])))
            return cfg_errorf(err, doc, eps, p, "out of memory");
    } else if (!local) {
        if (config_get_required_string(doc, node, path, "url", "\"http://127.0.0.1:9001/mcp\"",
                                       &b->url, err) != 0)
            return -1;
        cfg_path_key(p, sizeof p, path, "url");
        if (check_endpoint_url(doc, url, p, b->url, err) != 0)
            return -1;
        b->endpoints = calloc(2, sizeof *b->endpoints);
        if (!b->endpoints || !(b->endpoints[0] = strdup(b->url)))
            return cfg_errorf(err, doc, url, p, "out of memory");
        b->n_endpoints = 1;
    }
    if (cfg_get_string(doc, node, path, "prefix", 0, &b->prefix, err) != 0)
        return -1;
    cfg_path_key(p, sizeof p, path, "prefix");
    if (b->prefix && check_prefix(doc, cfg_map_get(node, "prefix"), p, b->prefix, err) != 0)
        return -1;
    char *protocol = NULL;
    if (cfg_get_string(doc, node, path, "protocol", 0, &protocol, err) != 0)
        return -1;
    if (protocol && strcmp(protocol, "auto") != 0) {
        b->protocol = mcp_version_bit(protocol);
        if (!b->protocol) {
            cfg_path_key(p, sizeof p, path, "protocol");
            cfg_errorf(err, doc, cfg_map_get(node, "protocol"), p,
                       "\"%s\" is not a protocol revision toolgate serves (auto, %s)", protocol,
                       mcp_versions_supported());
            free(protocol);
            return -1;
        }
    }
    free(protocol);
    if (parse_backend_tls(doc, node, path, b, err) != 0)
        return -1;
    if (parse_backend_health(doc, node, path, &b->health, err) != 0)
        return -1;
    return parse_backend_eject(doc, node, path, b->n_endpoints, &b->eject, err);
}

static const struct timeout_spec {
    const char *key;
    size_t offset;
    uint64_t def, max;
} route_timeout_specs[] = {
    {"connect", offsetof(struct gw_route_timeouts, connect_ms), 2 * SEC, 5 * MIN},
    {"first_byte", offsetof(struct gw_route_timeouts, first_byte_ms), 30 * SEC, HOUR},
    {"idle", offsetof(struct gw_route_timeouts, idle_ms), 5 * MIN, DAY},
};

/* `timeouts` of a route, or of a backend (then `defaults` are the route's). */
static int parse_route_timeouts(const struct cfg_doc *doc, const struct cfg_node *route,
                                const char *route_path, struct gw_route_timeouts *t,
                                const struct gw_route_timeouts *defaults, struct cfg_error *err)
{
    static const char *const keys[] = {"connect", "first_byte", "idle", NULL};
    char path[PATH_MAX_LEN];
    cfg_path_key(path, sizeof path, route_path, "timeouts");
    const struct cfg_node *node = cfg_map_get(route, "timeouts");
    if (node && cfg_is_null(node))
        node = NULL;
    if (node && cfg_check_keys(doc, node, path, keys, err) != 0)
        return -1;
    for (size_t i = 0; i < sizeof route_timeout_specs / sizeof route_timeout_specs[0]; i++) {
        const struct timeout_spec *spec = &route_timeout_specs[i];
        uint64_t *field = (uint64_t *)((char *)t + spec->offset);
        uint64_t v =
            defaults ? *(const uint64_t *)((const char *)defaults + spec->offset) : spec->def;
        if (node && cfg_get_duration_ms(doc, node, path, spec->key, &v, err) != 0)
            return -1;
        if (v == 0 || v > spec->max) {
            char p[PATH_MAX_LEN], have[32], hi[32], def[32];
            cfg_path_key(p, sizeof p, path, spec->key);
            config_format_duration(v, have, sizeof have);
            config_format_duration(spec->max, hi, sizeof hi);
            config_format_duration(spec->def, def, sizeof def);
            return cfg_errorf(err, doc, cfg_map_get(node, spec->key), p,
                              "%s is %s; write a duration from 1ms to %s (default %s)", have,
                              v == 0 ? "not a usable timeout" : "too large", hi, def);
        }
        *field = v;
    }
    return 0;
}

static int parse_route(struct gw_config *cfg, const struct cfg_doc *doc,
                       const struct cfg_node *node, const char *path, struct gw_route *r,
                       struct cfg_error *err)
{
    static const char *const core_keys[] = {"name",     "path",     "kind",
                                            "backends", "timeouts", "allow_methods"};
    const char *keys[64];
    size_t nk = 0;
    char p[PATH_MAX_LEN];
    for (size_t i = 0; i < sizeof core_keys / sizeof core_keys[0]; i++)
        keys[nk++] = core_keys[i];
    for (size_t m = 0; m < gw_n_modules; m++)
        for (const char *const *k = gw_modules[m]->route_keys; k && *k && nk < 63; k++)
            keys[nk++] = *k;
    keys[nk] = NULL;
    if (cfg_check_keys(doc, node, path, keys, err) != 0)
        return -1;
    char *kind = NULL;
    if (cfg_get_string(doc, node, path, "kind", 0, &kind, err) != 0)
        return -1;
    int known_kind = 0;
    for (size_t k = 0; kind && k < gw_n_route_kinds; k++)
        known_kind |= strcmp(kind, gw_route_kinds[k]->name) == 0;
    char kind_name[32];
    snprintf(kind_name, sizeof kind_name, "%s", kind ? kind : "mcp");
    free(kind);
    if (!known_kind && strcmp(kind_name, "mcp") != 0) {
        cfg_path_key(p, sizeof p, path, "kind");
        return cfg_errorf(err, doc, cfg_map_get(node, "kind"), p,
                          "write mcp (an MCP endpoint, the default) or rest (POST "
                          "<path>/<tool> with the arguments as JSON)");
    }

    if (config_get_required_string(doc, node, path, "name", "ehr", &r->name, err) != 0)
        return -1;
    cfg_path_key(p, sizeof p, path, "name");
    if (check_name(doc, cfg_map_get(node, "name"), p, r->name, err) != 0)
        return -1;
    for (size_t j = 0; j < cfg->n_routes; j++)
        if (strcmp(cfg->routes[j].name, r->name) == 0)
            return cfg_errorf(err, doc, cfg_map_get(node, "name"), p,
                              "\"%s\" is already the name of routes[%zu]; give each route its "
                              "own name",
                              r->name, j);

    if (config_get_required_string(doc, node, path, "path", "/mcp", &r->path, err) != 0)
        return -1;
    cfg_path_key(p, sizeof p, path, "path");
    const char *why = check_route_path(r->path);
    if (why)
        return cfg_errorf(err, doc, cfg_map_get(node, "path"), p,
                          "\"%s\" %s; write the endpoint clients call, like /mcp", r->path, why);
    for (size_t j = 0; j < cfg->n_routes; j++)
        if (strcmp(cfg->routes[j].path, r->path) == 0)
            return cfg_errorf(err, doc, cfg_map_get(node, "path"), p,
                              "\"%s\" is already the path of routes[%zu] (%s); each path "
                              "belongs to one route",
                              r->path, j, cfg->routes[j].name);

    const struct cfg_node *backends = cfg_map_get(node, "backends");
    cfg_path_key(p, sizeof p, path, "backends");
    if (!backends || cfg_is_null(backends))
        return cfg_errorf(err, doc, backends ? backends : node, path,
                          "`backends` is required: a list like "
                          "[{name: ehr, url: \"http://127.0.0.1:9001/mcp\"}]");
    if (backends->kind != CFG_SEQ)
        return cfg_errorf(err, doc, backends, p,
                          "expected a list like [{name: ehr, url: \"http://127.0.0.1:9001/mcp\"}]");
    if (backends->n == 0)
        return cfg_errorf(err, doc, backends, p,
                          "the list is empty; a route needs at least one backend");
    if (backends->n > CONFIG_MAX_BACKENDS)
        return cfg_errorf(err, doc, backends, p, "more than %d backends", CONFIG_MAX_BACKENDS);
    r->backends = calloc(backends->n, sizeof *r->backends);
    if (!r->backends)
        return cfg_errorf(err, doc, backends, p, "out of memory");
    for (size_t i = 0; i < backends->n; i++) {
        char bp[PATH_MAX_LEN];
        cfg_path_index(bp, sizeof bp, p, i);
        struct gw_backend *b = &r->backends[i];
        r->n_backends = i + 1; /* so a partly-parsed backend is freed */
        if (parse_backend(doc, backends->items[i], bp, b, err) != 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(r->backends[j].name, b->name) == 0) {
                char np[PATH_MAX_LEN];
                cfg_path_key(np, sizeof np, bp, "name");
                return cfg_errorf(err, doc, cfg_map_get(backends->items[i], "name"), np,
                                  "\"%s\" is already the name of %s[%zu]; give each backend of "
                                  "a route its own name",
                                  b->name, p, j);
            }
    }
    r->kind_ops = gw_route_kind_for(kind_name, r->n_backends);
    if (!r->kind_ops)
        return cfg_errorf(err, doc, node, path, "no route kind serves this route");
    if (r->kind_ops->check_route && r->kind_ops->check_route(doc, node, path, r, err) != 0)
        return -1;
    if (parse_route_timeouts(doc, node, path, &r->timeouts, NULL, err) != 0)
        return -1;
    /* A backend's own `timeouts` override the route's, key by key. */
    for (size_t i = 0; i < r->n_backends; i++) {
        char bp[PATH_MAX_LEN];
        cfg_path_index(bp, sizeof bp, p, i);
        r->backends[i].timeouts = r->timeouts;
        if (cfg_map_get(backends->items[i], "timeouts") &&
            parse_route_timeouts(doc, backends->items[i], bp, &r->backends[i].timeouts,
                                 &r->timeouts, err) != 0)
            return -1;
    }
    /*
     * Methods beyond the table of each revision that this route lets through, as plumbing:
     * an operator's explicit choice for a backend's own extensions. Same shape as a method
     * name, so a list entry cannot be a pattern.
     */
    size_t n_allow = 0;
    if (cfg_get_string_list(doc, node, path, "allow_methods", &r->allow_methods, &n_allow, err) !=
        0)
        return -1;
    for (size_t i = 0; i < n_allow; i++) {
        const char *mth = r->allow_methods[i];
        int ok = strlen(mth) > 0 && strlen(mth) <= 128;
        for (const char *c = mth; ok && *c; c++)
            ok = is_alnum(*c) || *c == '/' || *c == '_' || *c == '-' || *c == '.';
        if (!ok) {
            cfg_path_key(p, sizeof p, path, "allow_methods");
            return cfg_errorf(err, doc, cfg_map_get(node, "allow_methods"), p,
                              "\"%s\" is not a method name (1 to 128 letters, digits, '/', '_', "
                              "'-', '.')",
                              mth);
        }
    }
    for (size_t m = 0; m < gw_n_modules; m++) {
        const struct gw_module *mod = gw_modules[m];
        if (mod->parse_route && mod->parse_route(doc, node, path, &r->modules[m], err) != 0)
            return -1;
    }
    return 0;
}

static void route_free(struct gw_route *r)
{
    for (size_t i = 0; i < r->n_backends; i++) {
        free(r->backends[i].name);
        free(r->backends[i].url);
        free(r->backends[i].prefix);
        free(r->backends[i].tls_ca);
        free(r->backends[i].tls_cert);
        free(r->backends[i].tls_key);
        cfg_strv_free(r->backends[i].endpoints);
        free(r->backends[i].health.path);
        if (r->backends[i].local_owner && r->backends[i].local_owner->free_backend)
            r->backends[i].local_owner->free_backend(r->backends[i].local);
        free(r->backends[i].local_socket);
    }
    free(r->backends);
    cfg_strv_free(r->allow_methods);
    for (size_t m = 0; m < gw_n_modules; m++) {
        if (r->modules[m] && gw_modules[m]->free_route)
            gw_modules[m]->free_route(r->modules[m]);
        r->modules[m] = NULL;
    }
    free(r->name);
    free(r->path);
}

/*
 * An absent or empty `routes` is valid here so that `toolgate check` can validate the other
 * sections of a file on their own; `serve` refuses it (gw_config_check_serve).
 */
int config_parse_routes(struct gw_config *cfg, const struct cfg_doc *doc,
                        const struct cfg_node *node, struct cfg_error *err)
{
    if (!node)
        return 0;
    if (node->kind != CFG_SEQ)
        return cfg_errorf(err, doc, node, "routes",
                          "expected a list of routes, each like {name: ehr, path: /mcp, "
                          "backends: [...]}");
    if (node->n > CONFIG_MAX_ROUTES)
        return cfg_errorf(err, doc, node, "routes", "more than %d routes", CONFIG_MAX_ROUTES);
    if (node->n == 0)
        return 0;
    cfg->routes = calloc(node->n, sizeof *cfg->routes);
    if (!cfg->routes)
        return cfg_errorf(err, doc, node, "routes", "out of memory");
    for (size_t i = 0; i < node->n; i++) {
        char p[PATH_MAX_LEN];
        cfg_path_index(p, sizeof p, "routes", i);
        /* Parsed into the slot past the last accepted route; counted once it is whole. */
        struct gw_route *r = &cfg->routes[i];
        if (parse_route(cfg, doc, node->items[i], p, r, err) != 0) {
            route_free(r);
            memset(r, 0, sizeof *r);
            return -1;
        }
        cfg->n_routes = i + 1;
    }
    return 0;
}

void config_free_routes(struct gw_config *cfg)
{
    for (size_t i = 0; i < cfg->n_routes; i++)
        route_free(&cfg->routes[i]);
    free(cfg->routes);
    cfg->routes = NULL;
    cfg->n_routes = 0;
}
