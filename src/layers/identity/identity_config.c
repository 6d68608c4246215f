/* identity_config: the `identity:` section of the configuration. */
#include "layers/identity/identity.h"
#include "lib/discovery.h"
#include "lib/jwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A fetched key set's TTL is never above this, whatever Cache-Control says. */
#define MAX_LIST IDENTITY_MAX_LIST

static char **strv_of(const char *const *items)
{
    size_t n = 0;
    while (items[n])
        n++;
    char **v = calloc(n + 1, sizeof *v);
    if (!v)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        v[i] = strdup(items[i]);
        if (!v[i]) {
            cfg_strv_free(v);
            return NULL;
        }
    }
    return v;
}

/* A list key: absent keeps the default; present must hold 1..MAX_LIST non-empty strings. */
static int get_list(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                    const char *key, int allow_empty, char ***out, struct cfg_error *err)
{
    char **v = NULL;
    size_t n = 0;
    char p[256];
    cfg_path_key(p, sizeof p, path, key);
    if (cfg_get_string_list(doc, map, path, key, &v, &n, err) != 0)
        return -1;
    if (!v)
        return 0;
    const struct cfg_node *node = cfg_map_get(map, key);
    if ((n == 0 && !allow_empty) || n > MAX_LIST) {
        cfg_strv_free(v);
        return cfg_errorf(err, doc, node, p, "expected 1 to %d entries", MAX_LIST);
    }
    for (size_t i = 0; i < n; i++) {
        if (!v[i][0] || strlen(v[i]) > 1024) {
            cfg_strv_free(v);
            return cfg_errorf(err, doc, node, p, "entries must be non-empty and short");
        }
    }
    cfg_strv_free(*out);
    *out = v;
    return 0;
}

static int duration_in(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                       const char *key, uint64_t min_ms, uint64_t max_ms, uint64_t *out,
                       struct cfg_error *err)
{
    if (cfg_get_duration_ms(doc, map, path, key, out, err) != 0)
        return -1;
    if (*out < min_ms || *out > max_ms) {
        char p[256];
        cfg_path_key(p, sizeof p, path, key);
        return cfg_errorf(err, doc, cfg_map_get(map, key), p, "must be between %llums and %llums",
                          (unsigned long long)min_ms, (unsigned long long)max_ms);
    }
    return 0;
}

static int parse_issuer(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                        struct identity_issuer_config *ic, struct cfg_error *err)
{
    static const char *const keys[] = {
        "issuer",       "audiences",     "jwks_uri", "jwks_file",
        "algorithms",   "leeway",        "jwks_ttl", "jwks_refetch_interval",
        "jwks_timeout", "discovery_ttl", NULL};
    static const char *const default_algs[] = {"RS256", "ES256", "EdDSA", NULL};
    char **algs = NULL;
    int rc = -1;
    char p[256];
    ic->leeway_ms = 60 * 1000;
    ic->jwks_ttl_ms = 10 * 60 * 1000;
    ic->jwks_refetch_interval_ms = 30 * 1000;
    ic->jwks_timeout_ms = 5 * 1000;
    ic->discovery_ttl_ms = 3600 * 1000;
    if (cfg_check_keys(doc, node, path, keys, err) != 0 ||
        cfg_get_string(doc, node, path, "issuer", 1, &ic->issuer, err) != 0 ||
        get_list(doc, node, path, "audiences", 0, &ic->audiences, err) != 0 ||
        cfg_get_string(doc, node, path, "jwks_uri", 0, &ic->jwks_uri, err) != 0 ||
        cfg_get_string(doc, node, path, "jwks_file", 0, &ic->jwks_file, err) != 0 ||
        duration_in(doc, node, path, "leeway", 0, 10 * 60 * 1000, &ic->leeway_ms, err) != 0 ||
        duration_in(doc, node, path, "jwks_ttl", 1000, 24 * 3600 * 1000, &ic->jwks_ttl_ms, err) !=
            0 ||
        duration_in(doc, node, path, "jwks_refetch_interval", 1, 24 * 3600 * 1000,
                    &ic->jwks_refetch_interval_ms, err) != 0 ||
        duration_in(doc, node, path, "jwks_timeout", 10, 60 * 1000, &ic->jwks_timeout_ms, err) !=
            0 ||
        duration_in(doc, node, path, "discovery_ttl", 60 * 1000, 24 * 3600 * 1000,
                    &ic->discovery_ttl_ms, err) != 0)
        goto out;
    if (!ic->issuer[0]) {
        cfg_path_key(p, sizeof p, path, "issuer");
        cfg_errorf(err, doc, cfg_map_get(node, "issuer"), p, "must not be empty");
        goto out;
    }
    if (!ic->audiences) {
        cfg_path_key(p, sizeof p, path, "audiences");
        cfg_errorf(err, doc, node, p,
                   "required: the resource identifiers tokens must be issued for (RFC 8707)");
        goto out;
    }
    if (ic->jwks_uri && ic->jwks_file) {
        cfg_errorf(err, doc, node, path, "give at most one of jwks_uri and jwks_file");
        goto out;
    }
    if (!ic->jwks_uri && !ic->jwks_file) {
        /* Neither: the keys' location comes from the issuer's own metadata. */
        char urls[DISCOVERY_MAX_URLS][DISCOVERY_MAX_URL], why[200];
        size_t n;
        if (discovery_urls(ic->issuer, urls, &n, why, sizeof why) != 0) {
            cfg_path_key(p, sizeof p, path, "issuer");
            cfg_errorf(err, doc, cfg_map_get(node, "issuer"), p,
                       "%s (or give jwks_uri or jwks_file)", why);
            goto out;
        }
        ic->discover = 1;
    }
    if (ic->jwks_uri && !discovery_url_ok(ic->jwks_uri)) {
        cfg_path_key(p, sizeof p, path, "jwks_uri");
        cfg_errorf(err, doc, cfg_map_get(node, "jwks_uri"), p,
                   "must be an https:// URL (http:// only to 127.0.0.1, localhost or [::1])");
        goto out;
    }
    if (!(algs = strv_of(default_algs)) ||
        get_list(doc, node, path, "algorithms", 0, &algs, err) != 0)
        goto out;
    ic->algorithms = 0;
    for (char **a = algs; *a; a++) {
        int alg = jwt_alg_from_name(*a, strlen(*a));
        if (alg < 0) {
            cfg_path_key(p, sizeof p, path, "algorithms");
            cfg_errorf(err, doc, cfg_map_get(node, "algorithms"), p,
                       "\"%s\" is not supported (RS256/384/512, PS256/384/512, ES256/384, "
                       "EdDSA; none and HMAC are never accepted)",
                       *a);
            goto out;
        }
        ic->algorithms |= JWT_ALG_BIT(alg);
    }
    rc = 0;
out:
    cfg_strv_free(algs);
    return rc;
}

static int parse_claims(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                        struct identity_claims_config *cc, struct cfg_error *err)
{
    static const char *const keys[] = {"subject", "tenant", "roles", "scopes", "client", NULL};
    if (!node || cfg_is_null(node))
        return 0;
    if (cfg_check_keys(doc, node, path, keys, err) != 0)
        return -1;
    return get_list(doc, node, path, "subject", 0, &cc->subject, err) != 0 ||
                   get_list(doc, node, path, "tenant", 1, &cc->tenant, err) != 0 ||
                   get_list(doc, node, path, "roles", 1, &cc->roles, err) != 0 ||
                   get_list(doc, node, path, "scopes", 1, &cc->scopes, err) != 0 ||
                   get_list(doc, node, path, "client", 1, &cc->client, err) != 0
               ? -1
               : 0;
}

static int set_claim_defaults(struct identity_claims_config *cc)
{
    static const char *const subject[] = {"sub", NULL};
    static const char *const tenant[] = {"org_id", NULL};
    static const char *const roles[] = {"roles", "realm_access.roles", NULL};
    static const char *const scopes[] = {"scope", "scp", NULL};
    static const char *const client[] = {"azp", "client_id", NULL};
    cc->subject = strv_of(subject);
    cc->tenant = strv_of(tenant);
    cc->roles = strv_of(roles);
    cc->scopes = strv_of(scopes);
    cc->client = strv_of(client);
    return cc->subject && cc->tenant && cc->roles && cc->scopes && cc->client ? 0 : -1;
}

void identity_config_free(struct identity_config *cfg)
{
    if (!cfg)
        return;
    identity_runtime_free(cfg->runtime);
    for (size_t i = 0; i < cfg->n_issuers; i++) {
        struct identity_issuer_config *ic = &cfg->issuers[i];
        free(ic->issuer);
        cfg_strv_free(ic->audiences);
        free(ic->jwks_uri);
        free(ic->jwks_file);
    }
    free(cfg->issuers);
    cfg_strv_free(cfg->claims.subject);
    cfg_strv_free(cfg->claims.tenant);
    cfg_strv_free(cfg->claims.roles);
    cfg_strv_free(cfg->claims.scopes);
    cfg_strv_free(cfg->claims.client);
    cfg_strv_free(cfg->authorization_servers);
    cfg_strv_free(cfg->scopes_supported);
    free(cfg);
}

int identity_config_parse(const struct cfg_doc *doc, const struct cfg_node *section,
                          struct identity_config **out, struct cfg_error *err)
{
    static const char *const keys[] = {
        "mode",        "issuers",  "claims", "authorization_servers", "scopes_supported",
        "token_cache", "sessions", NULL};
    static const char *const cache_keys[] = {"entries", NULL};
    static const char *const session_keys[] = {"entries", "idle_timeout", NULL};
    const char *path = "identity";
    char p[256];
    char *mode = NULL;
    int rc = -1;
    *out = NULL;
    if (!section || cfg_is_null(section))
        return 0;
    struct identity_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return cfg_errorf(err, doc, section, path, "out of memory");
    cfg->token_cache_entries = 10000;
    cfg->session_entries = 100000;
    cfg->session_idle_ms = 3600 * 1000;
    if (set_claim_defaults(&cfg->claims) != 0) {
        cfg_errorf(err, doc, section, path, "out of memory");
        goto out;
    }
    if (cfg_check_keys(doc, section, path, keys, err) != 0 ||
        cfg_get_string(doc, section, path, "mode", 0, &mode, err) != 0)
        goto out;
    if (mode && strcmp(mode, "off") == 0) {
        cfg->mode = IDENTITY_MODE_OFF;
    } else if (mode && strcmp(mode, "on") != 0) {
        cfg_path_key(p, sizeof p, path, "mode");
        cfg_errorf(err, doc, cfg_map_get(section, "mode"), p, "must be \"on\" or \"off\"");
        goto out;
    }

    const struct cfg_node *issuers = cfg_map_get(section, "issuers");
    cfg_path_key(p, sizeof p, path, "issuers");
    if (cfg->mode == IDENTITY_MODE_ON) {
        if (!issuers || cfg_is_null(issuers)) {
            cfg_errorf(err, doc, section, p,
                       "required: at least one issuer (or write `mode: off` for local "
                       "experiments without authentication)");
            goto out;
        }
    }
    if (issuers && !cfg_is_null(issuers)) {
        if (cfg_expect_seq(doc, issuers, p, err) != 0)
            goto out;
        if (issuers->n == 0 || issuers->n > IDENTITY_MAX_ISSUERS) {
            cfg_errorf(err, doc, issuers, p, "expected 1 to %d issuers", IDENTITY_MAX_ISSUERS);
            goto out;
        }
        cfg->issuers = calloc(issuers->n, sizeof *cfg->issuers);
        if (!cfg->issuers) {
            cfg_errorf(err, doc, issuers, p, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < issuers->n; i++) {
            char ip[280];
            cfg_path_index(ip, sizeof ip, p, i);
            cfg->n_issuers = i + 1;
            if (parse_issuer(doc, issuers->items[i], ip, &cfg->issuers[i], err) != 0)
                goto out;
            for (size_t j = 0; j < i; j++) {
                if (strcmp(cfg->issuers[j].issuer, cfg->issuers[i].issuer) == 0) {
                    cfg_errorf(err, doc, issuers->items[i], ip, "issuer \"%s\" is listed twice",
                               cfg->issuers[i].issuer);
                    goto out;
                }
            }
        }
    }

    cfg_path_key(p, sizeof p, path, "claims");
    if (parse_claims(doc, cfg_map_get(section, "claims"), p, &cfg->claims, err) != 0)
        goto out;
    if (get_list(doc, section, path, "authorization_servers", 0, &cfg->authorization_servers,
                 err) != 0 ||
        get_list(doc, section, path, "scopes_supported", 1, &cfg->scopes_supported, err) != 0)
        goto out;
    if (!cfg->authorization_servers) {
        cfg->authorization_servers = calloc(cfg->n_issuers + 1, sizeof(char *));
        if (!cfg->authorization_servers)
            goto oom;
        for (size_t i = 0; i < cfg->n_issuers; i++)
            if (!(cfg->authorization_servers[i] = strdup(cfg->issuers[i].issuer)))
                goto oom;
    }
    if (!cfg->scopes_supported && !(cfg->scopes_supported = calloc(1, sizeof(char *))))
        goto oom;

    const struct cfg_node *tc = cfg_map_get(section, "token_cache");
    cfg_path_key(p, sizeof p, path, "token_cache");
    if (tc && !cfg_is_null(tc)) {
        int64_t entries = (int64_t)cfg->token_cache_entries;
        if (cfg_check_keys(doc, tc, p, cache_keys, err) != 0 ||
            cfg_get_int(doc, tc, p, "entries", 0, 10000000, &entries, err) != 0)
            goto out;
        cfg->token_cache_entries = (uint64_t)entries;
    }
    const struct cfg_node *sess = cfg_map_get(section, "sessions");
    cfg_path_key(p, sizeof p, path, "sessions");
    if (sess && !cfg_is_null(sess)) {
        int64_t entries = (int64_t)cfg->session_entries;
        if (cfg_check_keys(doc, sess, p, session_keys, err) != 0 ||
            cfg_get_int(doc, sess, p, "entries", 16, 10000000, &entries, err) != 0 ||
            duration_in(doc, sess, p, "idle_timeout", 1000, 7 * 24 * 3600 * 1000ull,
                        &cfg->session_idle_ms, err) != 0)
            goto out;
        cfg->session_entries = (uint64_t)entries;
    }
    *out = cfg;
    cfg = NULL;
    rc = 0;
    goto out;
oom:
    cfg_errorf(err, doc, section, path, "out of memory");
out:
    free(mode);
    identity_config_free(cfg);
    return rc;
}
