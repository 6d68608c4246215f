/* The `egress:` configuration section and the routes[].inject key. */
#include "layers/routing/routing.h"
#include "layers/routing/tokex.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SEC UINT64_C(1000)
#define MINUTE (UINT64_C(60) * SEC)

static const char *const default_header_names[GW_INJECT_H_COUNT] = {
    [GW_INJECT_H_SUBJECT] = "X-Toolgate-Subject",
    [GW_INJECT_H_TENANT] = "X-Toolgate-Tenant",
    [GW_INJECT_H_ROLES] = "X-Toolgate-Roles",
    [GW_INJECT_H_SCOPES] = "X-Toolgate-Scopes",
    [GW_INJECT_H_CLIENT] = "X-Toolgate-Client",
    [GW_INJECT_H_REQUEST_ID] = "X-Toolgate-Request-Id",
};

static const char *const header_keys[GW_INJECT_H_COUNT + 1] = {
    "subject", "tenant", "roles", "scopes", "client", "request_id", NULL,
};

/* ---- allow lists ------------------------------------------------------------------------- */

static int parse_allow(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                       struct ssrf_allow *out, struct cfg_error *err)
{
    char **items = NULL;
    size_t n = 0;
    char p[256];
    int rc = -1;
    cfg_path_key(p, sizeof p, path, "allow");
    if (cfg_get_string_list(doc, map, path, "allow", &items, &n, err) != 0)
        return -1;
    if (!items)
        return 0;
    if (n > EGRESS_MAX_ALLOW) {
        cfg_errorf(err, doc, cfg_map_get(map, "allow"), p, "more than %d entries",
                   EGRESS_MAX_ALLOW);
        goto out;
    }
    out->entries = calloc(n ? n : 1, sizeof *out->entries);
    if (!out->entries) {
        cfg_errorf(err, doc, map, p, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *why = NULL;
        if (ssrf_allow_parse(items[i], &out->entries[i], &why) != 0) {
            const struct cfg_node *node = cfg_map_get(map, "allow");
            if (node && node->kind == CFG_SEQ && i < node->n)
                node = node->items[i];
            char ip[256];
            cfg_path_index(ip, sizeof ip, p, i);
            cfg_errorf(err, doc, node, ip,
                       "\"%s\" %s; write host:port (127.0.0.1:9001, [::1]:9001, "
                       "backend.internal:8443) or a CIDR range (10.0.0.0/8, fd00::/8)",
                       items[i], why);
            goto out;
        }
        out->n = i + 1;
    }
    rc = 0;
out:
    cfg_strv_free(items);
    return rc;
}

/* ---- url_tools ---------------------------------------------------------------------------- */

/* A JSON pointer (RFC 6901): empty (the whole arguments) or '/'-separated, ~0 and ~1 only. */
static const char *check_pointer(const char *s)
{
    size_t len = strlen(s);
    if (len > 256)
        return "is longer than 256 characters";
    if (len > 0 && s[0] != '/')
        return "does not start with '/' (write a JSON pointer like /url)";
    for (size_t i = 0; i < len; i++)
        if (s[i] == '~' && s[i + 1] != '0' && s[i + 1] != '1')
            return "has a '~' not followed by 0 or 1";
    return NULL;
}

static const char *check_tool_pattern(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 256)
        return "must be 1 to 256 characters";
    const char *star = strchr(s, '*');
    if (star && star != s + len - 1)
        return "may only end in '*' (a prefix match)";
    return NULL;
}

static int parse_url_tool(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                          struct egress_url_tool *t, struct cfg_error *err)
{
    static const char *const keys[] = {"tools", "args", "allow", NULL};
    size_t n = 0;
    char p[256];
    if (node->kind != CFG_MAP)
        return cfg_errorf(err, doc, node, path,
                          "expected a map like {tools: [fetch_url], args: [/url]}");
    if (cfg_check_keys(doc, node, path, keys, err) != 0)
        return -1;
    if (cfg_get_string_list(doc, node, path, "tools", &t->tools, &n, err) != 0)
        return -1;
    cfg_path_key(p, sizeof p, path, "tools");
    if (!t->tools || n == 0)
        return cfg_errorf(err, doc, node, p,
                          "`tools` is required: the tools whose arguments are URLs the backend "
                          "fetches, like [fetch_url, \"web.*\"]");
    if (n > EGRESS_MAX_LIST)
        return cfg_errorf(err, doc, node, p, "more than %d tools", EGRESS_MAX_LIST);
    for (size_t i = 0; i < n; i++) {
        const char *why = check_tool_pattern(t->tools[i]);
        if (why)
            return cfg_errorf(err, doc, cfg_map_get(node, "tools"), p, "\"%s\" %s", t->tools[i],
                              why);
    }
    if (cfg_get_string_list(doc, node, path, "args", &t->args, &n, err) != 0)
        return -1;
    cfg_path_key(p, sizeof p, path, "args");
    if (t->args && n > EGRESS_MAX_LIST)
        return cfg_errorf(err, doc, node, p, "more than %d argument paths", EGRESS_MAX_LIST);
    for (size_t i = 0; t->args && i < n; i++) {
        const char *why = check_pointer(t->args[i]);
        if (why)
            return cfg_errorf(err, doc, cfg_map_get(node, "args"), p, "\"%s\" %s", t->args[i], why);
    }
    if (t->args && n == 0) {
        /* An empty list would silently check nothing; absent means "every URL string". */
        return cfg_errorf(err, doc, cfg_map_get(node, "args"), p,
                          "the list is empty; name the arguments (like [/url]) or leave `args` "
                          "out to check every string that looks like a URL");
    }
    return parse_allow(doc, node, path, &t->allow, err);
}

static void url_tool_free(struct egress_url_tool *t)
{
    cfg_strv_free(t->tools);
    cfg_strv_free(t->args);
    ssrf_allow_free(&t->allow);
}

/* ---- egress ------------------------------------------------------------------------------- */

void egress_config_free(struct egress_config *ec)
{
    if (!ec)
        return;
    routing_runtime_free(ec->rt);
    ssrf_allow_free(&ec->allow);
    free(ec->signing_key);
    for (size_t i = 0; i < ec->n_url_tools; i++)
        url_tool_free(&ec->url_tools[i]);
    cfg_strv_free(ec->url_exempt);
    free(ec->url_tools);
    free(ec);
}

static int get_duration(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                        const char *key, uint64_t min, uint64_t max, const char *range,
                        uint64_t *out, struct cfg_error *err)
{
    uint64_t v = *out;
    if (cfg_get_duration_ms(doc, map, path, key, &v, err) != 0)
        return -1;
    if (v < min || v > max) {
        char p[256];
        cfg_path_key(p, sizeof p, path, key);
        return cfg_errorf(err, doc, cfg_map_get(map, key), p, "out of range: write %s", range);
    }
    *out = v;
    return 0;
}

int egress_config_parse(const struct cfg_doc *doc, const struct cfg_node *section,
                        struct egress_config **out, struct cfg_error *err)
{
    static const char *const keys[] = {"allow",         "signing_key",  "url_args",
                                       "url_tools",     "max_url_args", "resolve_timeout",
                                       "resolve_cache", "url_exempt",   NULL};
    static const char *const cache_keys[] = {"ttl", "entries", NULL};
    const char *P = "egress";
    char *url_args = NULL;
    struct egress_config *ec = calloc(1, sizeof *ec);
    *out = NULL;
    if (!ec)
        return cfg_errorf(err, doc, section, P, "out of memory");
    ec->url_args = 1;
    ec->max_url_args = 32;
    ec->resolve_timeout_ms = 2 * SEC;
    ec->resolve_cache_ttl_ms = 30 * SEC;
    ec->resolve_cache_entries = 1024;
    if (!section)
        goto done;
    if (section->kind != CFG_MAP) {
        cfg_errorf(err, doc, section, P, "expected a map like {allow: [\"127.0.0.1:9001\"]}");
        goto fail;
    }
    if (cfg_check_keys(doc, section, P, keys, err) != 0 ||
        parse_allow(doc, section, P, &ec->allow, err) != 0 ||
        cfg_get_string(doc, section, P, "signing_key", 0, &ec->signing_key, err) != 0 ||
        cfg_get_string(doc, section, P, "url_args", 0, &url_args, err) != 0)
        goto fail;
    if (url_args) {
        if (strcmp(url_args, "check") == 0) {
            ec->url_args = 1;
        } else if (strcmp(url_args, "off") == 0) {
            ec->url_args = 0;
        } else {
            cfg_errorf(err, doc, cfg_map_get(section, "url_args"), "egress.url_args",
                       "\"%s\" is not a mode; write check (the default) or off", url_args);
            goto fail;
        }
    }
    size_t n_exempt = 0;
    if (cfg_get_string_list(doc, section, P, "url_exempt", &ec->url_exempt, &n_exempt, err) != 0)
        goto fail;
    for (size_t i = 0; i < n_exempt; i++) {
        const char *t = ec->url_exempt[i];
        const char *star = strchr(t, '*');
        if (!t[0] || (star && star[1] != '\0')) {
            cfg_errorf(err, doc, cfg_map_get(section, "url_exempt"), "egress.url_exempt",
                       "\"%s\": write a tool name, or a prefix ending in '*'", t);
            goto fail;
        }
    }
    int64_t max_url = (int64_t)ec->max_url_args;
    if (cfg_get_int(doc, section, P, "max_url_args", 1, 1024, &max_url, err) != 0)
        goto fail;
    ec->max_url_args = (uint64_t)max_url;
    if (get_duration(doc, section, P, "resolve_timeout", 100, MINUTE, "a duration from 100ms to 1m",
                     &ec->resolve_timeout_ms, err) != 0)
        goto fail;
    const struct cfg_node *cache = cfg_map_get(section, "resolve_cache");
    if (cache && !cfg_is_null(cache)) {
        const char *cp = "egress.resolve_cache";
        if (cfg_expect_map(doc, cache, cp, err) != 0 ||
            cfg_check_keys(doc, cache, cp, cache_keys, err) != 0 ||
            get_duration(doc, cache, cp, "ttl", 0, 10 * MINUTE, "a duration from 0 (off) to 10m",
                         &ec->resolve_cache_ttl_ms, err) != 0)
            goto fail;
        int64_t entries = (int64_t)ec->resolve_cache_entries;
        if (cfg_get_int(doc, cache, cp, "entries", 1, 1000000, &entries, err) != 0)
            goto fail;
        ec->resolve_cache_entries = (uint64_t)entries;
    }
    const struct cfg_node *tools = cfg_map_get(section, "url_tools");
    if (tools && !cfg_is_null(tools)) {
        const char *tp = "egress.url_tools";
        if (cfg_expect_seq(doc, tools, tp, err) != 0)
            goto fail;
        if (tools->n > EGRESS_MAX_URL_TOOLS) {
            cfg_errorf(err, doc, tools, tp, "more than %d entries", EGRESS_MAX_URL_TOOLS);
            goto fail;
        }
        ec->url_tools = calloc(tools->n ? tools->n : 1, sizeof *ec->url_tools);
        if (!ec->url_tools) {
            cfg_errorf(err, doc, tools, tp, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < tools->n; i++) {
            char p[256];
            cfg_path_index(p, sizeof p, tp, i);
            ec->n_url_tools = i + 1; /* so a partly-parsed entry is freed */
            if (parse_url_tool(doc, tools->items[i], p, &ec->url_tools[i], err) != 0)
                goto fail;
        }
    }
done:
    free(url_args);
    *out = ec;
    return 0;
fail:
    free(url_args);
    egress_config_free(ec);
    return -1;
}

/* ---- routes[].inject ---------------------------------------------------------------------- */

void routing_inject_free(struct gw_route_inject *ri)
{
    free(ri->audience);
    ri->audience = NULL;
    tokex_config_free(ri->exchange);
    ri->exchange = NULL;
    for (int i = 0; i < GW_INJECT_H_COUNT; i++) {
        free(ri->headers[i]);
        ri->headers[i] = NULL;
    }
}

/* Header names are HTTP tokens; the ones the core or HTTP itself owns cannot be taken. */
static const char *check_header_name(const char *s)
{
    static const char *const reserved[] = {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "content-type",
        "accept",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
        "x-request-id",
        "te",
        "upgrade",
        "keep-alive",
        "trailer",
        "proxy-authorization",
        "cookie",
        "authorization",
        "expect",
        NULL,
    };
    size_t len = strlen(s);
    if (len == 0 || len > 64)
        return "must be 1 to 64 characters";
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_';
        if (!ok)
            return "is not a header name (letters, digits, '-' and '_')";
    }
    for (const char *const *r = reserved; *r; r++)
        if (strcasecmp(s, *r) == 0)
            return "is a header HTTP or toolgate itself sets";
    return NULL;
}

int routing_inject_parse(const struct cfg_doc *doc, const struct cfg_node *route,
                         const char *route_path, struct gw_route_inject *out, struct cfg_error *err)
{
    static const char *const keys[] = {
        "mode",           "audience",       "ttl",           "headers",
        "token_endpoint", "issuer",         "client_id",     "client_secret_file",
        "auth_method",    "resource",       "scope",         "requested_token_type",
        "timeout",        "refresh_before", "discovery_ttl", NULL};
    char path[256], p[256];
    char *mode = NULL;
    int rc = -1;
    memset(out, 0, sizeof *out);
    out->mode = GW_INJECT_JWT;
    out->ttl_ms = 60 * SEC;
    for (int i = 0; i < GW_INJECT_H_COUNT; i++)
        if (!(out->headers[i] = strdup(default_header_names[i])))
            return cfg_errorf(err, doc, route, route_path, "out of memory");
    cfg_path_key(path, sizeof path, route_path, "inject");
    const struct cfg_node *node = cfg_map_get(route, "inject");
    if (!node || cfg_is_null(node))
        return 0;
    if (node->kind == CFG_SCALAR) {
        /* inject: none -- the short form of {mode: none}. */
        mode = strdup(node->scalar);
        if (!mode)
            return cfg_errorf(err, doc, node, path, "out of memory");
    } else {
        if (cfg_expect_map(doc, node, path, err) != 0 ||
            cfg_check_keys(doc, node, path, keys, err) != 0 ||
            cfg_get_string(doc, node, path, "mode", 0, &mode, err) != 0 ||
            cfg_get_string(doc, node, path, "audience", 0, &out->audience, err) != 0)
            goto out;
        if (get_duration(doc, node, path, "ttl", SEC, 60 * SEC, "a duration from 1s to 60s",
                         &out->ttl_ms, err) != 0)
            goto out;
    }
    if (mode) {
        if (strcmp(mode, "jwt") == 0)
            out->mode = GW_INJECT_JWT;
        else if (strcmp(mode, "headers") == 0)
            out->mode = GW_INJECT_HEADERS;
        else if (strcmp(mode, "none") == 0)
            out->mode = GW_INJECT_NONE;
        else if (strcmp(mode, "token_exchange") == 0)
            out->mode = GW_INJECT_TOKEN_EXCHANGE;
        else {
            cfg_path_key(p, sizeof p, path, "mode");
            cfg_errorf(err, doc, node->kind == CFG_MAP ? cfg_map_get(node, "mode") : node, p,
                       "\"%s\" is not an injection mode; write jwt (the default), headers, "
                       "token_exchange or none",
                       mode);
            goto out;
        }
    }
    if (out->audience && (strlen(out->audience) == 0 || strlen(out->audience) > 512)) {
        cfg_path_key(p, sizeof p, path, "audience");
        cfg_errorf(err, doc, cfg_map_get(node, "audience"), p,
                   "must be 1 to 512 characters (the aud claim the backend expects)");
        goto out;
    }
    if (out->mode == GW_INJECT_TOKEN_EXCHANGE) {
        if (tokex_config_parse(doc, node, path, &out->exchange, err) != 0)
            goto out;
    } else if (node->kind == CFG_MAP) {
        /* Settings of the exchange on another mode would silently do nothing. */
        for (const char *const *k = tokex_keys; *k; k++)
            if (cfg_map_get(node, *k)) {
                cfg_path_key(p, sizeof p, path, *k);
                cfg_errorf(err, doc, cfg_map_get(node, *k), p,
                           "is a setting of mode token_exchange, not of mode %s",
                           out->mode == GW_INJECT_JWT       ? "jwt"
                           : out->mode == GW_INJECT_HEADERS ? "headers"
                                                            : "none");
                goto out;
            }
    }
    const struct cfg_node *headers = node->kind == CFG_MAP ? cfg_map_get(node, "headers") : NULL;
    if (headers && !cfg_is_null(headers)) {
        cfg_path_key(p, sizeof p, path, "headers");
        if (cfg_expect_map(doc, headers, p, err) != 0 ||
            cfg_check_keys(doc, headers, p, header_keys, err) != 0)
            goto out;
        for (int i = 0; i < GW_INJECT_H_COUNT; i++) {
            if (cfg_get_string(doc, headers, p, header_keys[i], 0, &out->headers[i], err) != 0)
                goto out;
            const char *why = check_header_name(out->headers[i]);
            if (why) {
                char hp[256];
                cfg_path_key(hp, sizeof hp, p, header_keys[i]);
                cfg_errorf(err, doc, cfg_map_get(headers, header_keys[i]), hp,
                           "\"%s\" %s; write a name like %s", out->headers[i], why,
                           default_header_names[i]);
                goto out;
            }
            for (int j = 0; j < i; j++)
                if (strcasecmp(out->headers[i], out->headers[j]) == 0) {
                    char hp[256];
                    cfg_path_key(hp, sizeof hp, p, header_keys[i]);
                    cfg_errorf(err, doc, cfg_map_get(headers, header_keys[i]), hp,
                               "\"%s\" is already the header for %s; give each its own name",
                               out->headers[i], header_keys[j]);
                    goto out;
                }
        }
    }
    rc = 0;
out:
    free(mode);
    return rc;
}
