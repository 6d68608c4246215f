/* routes[].inject when mode is token_exchange: where to exchange, as whom, for what. */
#include "layers/routing/tokex.h"
#include "lib/discovery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS UINT64_C(1)
#define SEC UINT64_C(1000)

const char *const tokex_keys[] = {
    "token_endpoint", "issuer",         "client_id",     "client_secret_file",
    "auth_method",    "resource",       "scope",         "requested_token_type",
    "timeout",        "refresh_before", "discovery_ttl", NULL,
};

void tokex_config_free(struct tokex_config *tc)
{
    if (!tc)
        return;
    free(tc->token_endpoint);
    free(tc->issuer);
    free(tc->client_id);
    free(tc->client_secret_file);
    if (tc->client_secret) {
        memset(tc->client_secret, 0, strlen(tc->client_secret));
        free(tc->client_secret);
    }
    free(tc->resource);
    free(tc->scope);
    free(tc->requested_token_type);
    free(tc);
}

static int key_error(struct cfg_error *err, const struct cfg_doc *doc, const struct cfg_node *node,
                     const char *path, const char *key, const char *what)
{
    char p[256];
    cfg_path_key(p, sizeof p, path, key);
    const struct cfg_node *at = cfg_map_get(node, key);
    return cfg_errorf(err, doc, at ? at : node, p, "%s", what);
}

/* Printable ASCII without spaces (what fits a form field unescaped is not required). */
static int printable(const char *s, int allow_space)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p > 0x7e || (!allow_space && *p == ' '))
            return 0;
    return 1;
}

static int read_secret(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                       struct tokex_config *tc, struct cfg_error *err)
{
    char *text = NULL;
    size_t len = 0;
    struct cfg_error ferr = {{0}};
    char msg[512];
    int rc = -1;
    if (cfg_read_file(tc->client_secret_file, TOKEX_MAX_SECRET, &text, &len, &ferr) != 0) {
        snprintf(msg, sizeof msg,
                 "cannot read \"%.300s\" (at most %d bytes; relative paths are relative to the "
                 "directory toolgate is started in)",
                 tc->client_secret_file, TOKEX_MAX_SECRET);
        return key_error(err, doc, node, path, "client_secret_file", msg);
    }
    size_t end = len;
    while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r'))
        end--;
    if (end == 0 || memchr(text, '\0', end)) {
        key_error(err, doc, node, path, "client_secret_file",
                  "the file holds no secret (or a NUL byte); write the client secret the "
                  "identity provider gave toolgate's client on one line");
        goto out;
    }
    for (size_t i = 0; i < end; i++)
        if ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] == 0x7f) {
            key_error(err, doc, node, path, "client_secret_file",
                      "the secret has control characters; write it on one line");
            goto out;
        }
    if (!(tc->client_secret = strndup(text, end))) {
        key_error(err, doc, node, path, "client_secret_file", "out of memory");
        goto out;
    }
    rc = 0;
out:
    memset(text, 0, len);
    free(text);
    return rc;
}

static int get_bounded_duration(const struct cfg_doc *doc, const struct cfg_node *node,
                                const char *path, const char *key, uint64_t min, uint64_t max,
                                const char *range, uint64_t *out, struct cfg_error *err)
{
    uint64_t v = *out;
    if (cfg_get_duration_ms(doc, node, path, key, &v, err) != 0)
        return -1;
    if (v < min || v > max) {
        char what[128];
        snprintf(what, sizeof what, "out of range: write %s", range);
        return key_error(err, doc, node, path, key, what);
    }
    *out = v;
    return 0;
}

int tokex_config_parse(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                       struct tokex_config **out, struct cfg_error *err)
{
    char *auth = NULL;
    int rc = -1;
    struct tokex_config *tc = calloc(1, sizeof *tc);
    *out = NULL;
    if (!tc)
        return cfg_errorf(err, doc, node, path, "out of memory");
    tc->timeout_ms = 5 * SEC;
    tc->refresh_before_ms = 30 * SEC;
    tc->discovery_ttl_ms = 3600 * SEC;
    if (!node || node->kind != CFG_MAP) {
        cfg_errorf(err, doc, node, path,
                   "mode token_exchange needs a map like {mode: token_exchange, issuer: URL, "
                   "client_id: ID, client_secret_file: FILE, audience: AUD}");
        goto out;
    }
    if (cfg_get_string(doc, node, path, "token_endpoint", 0, &tc->token_endpoint, err) != 0 ||
        cfg_get_string(doc, node, path, "issuer", 0, &tc->issuer, err) != 0 ||
        cfg_get_string(doc, node, path, "client_id", 0, &tc->client_id, err) != 0 ||
        cfg_get_string(doc, node, path, "client_secret_file", 0, &tc->client_secret_file, err) !=
            0 ||
        cfg_get_string(doc, node, path, "auth_method", 0, &auth, err) != 0 ||
        cfg_get_string(doc, node, path, "resource", 0, &tc->resource, err) != 0 ||
        cfg_get_string(doc, node, path, "scope", 0, &tc->scope, err) != 0 ||
        cfg_get_string(doc, node, path, "requested_token_type", 0, &tc->requested_token_type,
                       err) != 0)
        goto out;
    if (get_bounded_duration(doc, node, path, "timeout", 100 * MS, 30 * SEC,
                             "a duration from 100ms to 30s", &tc->timeout_ms, err) != 0 ||
        get_bounded_duration(doc, node, path, "refresh_before", 0, 600 * SEC,
                             "a duration from 0s to 10m", &tc->refresh_before_ms, err) != 0 ||
        get_bounded_duration(doc, node, path, "discovery_ttl", SEC, 24 * 3600 * SEC,
                             "a duration from 1s to 24h", &tc->discovery_ttl_ms, err) != 0)
        goto out;
    if (!tc->token_endpoint == !tc->issuer) {
        key_error(err, doc, node, path, tc->issuer ? "issuer" : "token_endpoint",
                  tc->issuer ? "give either token_endpoint or issuer (whose metadata names the "
                               "token endpoint), not both"
                             : "is required (or issuer, to discover it from the issuer's "
                               "metadata)");
        goto out;
    }
    if (tc->token_endpoint && !discovery_url_ok(tc->token_endpoint)) {
        key_error(err, doc, node, path, "token_endpoint",
                  "must be an https:// URL (http:// only to 127.0.0.1, localhost or [::1])");
        goto out;
    }
    if (tc->issuer) {
        char urls[DISCOVERY_MAX_URLS][DISCOVERY_MAX_URL], why[256];
        size_t n;
        if (discovery_urls(tc->issuer, urls, &n, why, sizeof why) != 0) {
            key_error(err, doc, node, path, "issuer", why);
            goto out;
        }
    }
    if (!tc->client_id || !tc->client_id[0] || strlen(tc->client_id) > 256 ||
        !printable(tc->client_id, 0)) {
        key_error(err, doc, node, path, "client_id",
                  "is required: toolgate's own client id at the identity provider (1 to 256 "
                  "printable characters, no spaces)");
        goto out;
    }
    if (!auth || strcmp(auth, "client_secret_basic") == 0) {
        tc->auth_method = TOKEX_AUTH_BASIC;
    } else if (strcmp(auth, "client_secret_post") == 0) {
        tc->auth_method = TOKEX_AUTH_POST;
    } else {
        key_error(err, doc, node, path, "auth_method",
                  "is not a client authentication toolgate supports; write client_secret_basic "
                  "(the default) or client_secret_post");
        goto out;
    }
    if (!tc->client_secret_file) {
        key_error(err, doc, node, path, "client_secret_file",
                  "is required: the file holding toolgate's client secret (never the secret "
                  "itself in the configuration)");
        goto out;
    }
    if (read_secret(doc, node, path, tc, err) != 0)
        goto out;
    if (tc->resource &&
        (strlen(tc->resource) == 0 || strlen(tc->resource) > 1024 || !printable(tc->resource, 0) ||
         !strstr(tc->resource, "://") || strchr(tc->resource, '#'))) {
        key_error(err, doc, node, path, "resource",
                  "must be an absolute URI without a fragment, at most 1024 characters (RFC "
                  "8707), like https://backend.example/mcp");
        goto out;
    }
    if (tc->scope &&
        (strlen(tc->scope) == 0 || strlen(tc->scope) > 1024 || !printable(tc->scope, 1) ||
         strchr(tc->scope, '"') || strchr(tc->scope, '\\'))) {
        key_error(err, doc, node, path, "scope",
                  "must be 1 to 1024 printable characters: scopes separated by spaces "
                  "(RFC 6749 §3.3)");
        goto out;
    }
    if (!tc->requested_token_type &&
        !(tc->requested_token_type = strdup(TOKEX_TYPE_ACCESS_TOKEN))) {
        cfg_errorf(err, doc, node, path, "out of memory");
        goto out;
    }
    if (strcmp(tc->requested_token_type, TOKEX_TYPE_ACCESS_TOKEN) != 0 &&
        strcmp(tc->requested_token_type, TOKEX_TYPE_JWT) != 0) {
        key_error(err, doc, node, path, "requested_token_type",
                  "must be " TOKEX_TYPE_ACCESS_TOKEN " (the default) or " TOKEX_TYPE_JWT
                  ": what the backend receives is sent as a Bearer token");
        goto out;
    }
    rc = 0;
out:
    free(auth);
    if (rc == 0)
        *out = tc;
    else
        tokex_config_free(tc);
    return rc;
}
