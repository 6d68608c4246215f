/* config_server: the `server` section (listen addresses, TLS files, public URL, limits). */
#include "core/config-int.h"

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

/* ---- server.listen ------------------------------------------------------------------------ */

void config_listen_free(struct gw_listen *l)
{
    free(l->address);
    free(l->host);
    free(l->tls_cert);
    free(l->tls_key);
    memset(l, 0, sizeof *l);
}

int config_parse_listen_address(const struct cfg_doc *doc, const struct cfg_node *node,
                                const char *path, const char *text, struct gw_listen *l,
                                struct cfg_error *err)
{
    static const char hint[] = "write it like 127.0.0.1:8080, [::1]:8080 or :8080";
    size_t len = strlen(text);
    char host[64];
    const char *port_text;
    int family = AF_INET;

    if (len == 0 || len > 60)
        return cfg_errorf(err, doc, node, path, "\"%s\" is not a listen address; %s", text, hint);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] <= 0x20 || (unsigned char)text[i] >= 0x7f)
            return cfg_errorf(err, doc, node, path,
                              "\"%s\" contains whitespace or a non-ASCII character; %s", text,
                              hint);
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':')
            return cfg_errorf(err, doc, node, path,
                              "\"%s\" needs a port after the IPv6 address; write it like "
                              "[::1]:8080",
                              text);
        size_t hlen = (size_t)(close - text - 1);
        memcpy(host, text + 1, hlen);
        host[hlen] = '\0';
        port_text = close + 2;
        family = AF_INET6;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon)
            return cfg_errorf(err, doc, node, path, "\"%s\" has no port; %s", text, hint);
        if (memchr(text, ':', (size_t)(colon - text)))
            return cfg_errorf(err, doc, node, path,
                              "\"%s\": write IPv6 addresses in brackets, like [::1]:8080", text);
        size_t hlen = (size_t)(colon - text);
        memcpy(host, text, hlen);
        host[hlen] = '\0';
        port_text = colon + 1;
        if (hlen == 0)
            strcpy(host, "0.0.0.0");
    }
    if (config_parse_port(port_text, strlen(port_text)) < 0)
        return cfg_errorf(err, doc, node, path,
                          "\"%s\": the port must be a number from 1 to 65535; %s", text, hint);
    if (family == AF_INET6) {
        struct in6_addr a6;
        if (strchr(host, '%'))
            return cfg_errorf(err, doc, node, path,
                              "\"%s\": IPv6 zone ids are not supported; bind [::]:PORT or a "
                              "global address",
                              text);
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return cfg_errorf(err, doc, node, path, "\"%s\": \"%s\" is not an IPv6 address; %s",
                              text, host, hint);
    } else {
        struct in_addr a4;
        if (strcmp(host, "localhost") == 0)
            return cfg_errorf(err, doc, node, path,
                              "\"%s\": listen addresses are numeric, names are not resolved; "
                              "write 127.0.0.1%s instead",
                              text, text + strlen("localhost"));
        if (inet_pton(AF_INET, host, &a4) != 1)
            return cfg_errorf(err, doc, node, path,
                              "\"%s\": \"%s\" is not a numeric IPv4 address (names are not "
                              "resolved); %s",
                              text, host, hint);
    }
    l->port = config_parse_port(port_text, strlen(port_text));
    l->address = strdup(text);
    l->host = strdup(host);
    if (!l->address || !l->host)
        return cfg_errorf(err, doc, node, path, "out of memory");
    return 0;
}

int config_parse_listen_tls(const struct cfg_doc *doc, const struct cfg_node *tls, const char *path,
                            struct gw_listen *l, struct cfg_error *err)
{
    static const char *const keys[] = {"cert", "key", NULL};
    char p[PATH_MAX_LEN];
    if (cfg_check_keys(doc, tls, path, keys, err) != 0)
        return -1;
    if (config_get_required_string(doc, tls, path, "cert", "certs/server.pem", &l->tls_cert, err) !=
            0 ||
        config_get_required_string(doc, tls, path, "key", "certs/server.key", &l->tls_key, err) !=
            0)
        return -1;
    cfg_path_key(p, sizeof p, path, "cert");
    if (config_check_readable_file(doc, cfg_map_get(tls, "cert"), p, l->tls_cert, err) != 0)
        return -1;
    cfg_path_key(p, sizeof p, path, "key");
    if (config_check_readable_file(doc, cfg_map_get(tls, "key"), p, l->tls_key, err) != 0)
        return -1;
    return 0;
}

static int parse_listen_item(const struct cfg_doc *doc, const struct cfg_node *item,
                             const char *path, struct gw_listen *l, struct cfg_error *err)
{
    if (item->kind == CFG_SCALAR)
        return config_parse_listen_address(doc, item, path, item->scalar, l, err);
    if (item->kind != CFG_MAP)
        return cfg_errorf(err, doc, item, path,
                          "expected \"host:port\" or {address: \"host:port\", tls: {cert, key}}");
    static const char *const keys[] = {"address", "tls", NULL};
    if (cfg_check_keys(doc, item, path, keys, err) != 0)
        return -1;
    char *address = NULL;
    char p[PATH_MAX_LEN];
    int rc = -1;
    if (config_get_required_string(doc, item, path, "address", "\"0.0.0.0:8443\"", &address, err) !=
        0)
        goto out;
    cfg_path_key(p, sizeof p, path, "address");
    if (config_parse_listen_address(doc, cfg_map_get(item, "address"), p, address, l, err) != 0)
        goto out;
    const struct cfg_node *tls = cfg_map_get(item, "tls");
    cfg_path_key(p, sizeof p, path, "tls");
    if (tls && !cfg_is_null(tls) && config_parse_listen_tls(doc, tls, p, l, err) != 0)
        goto out;
    rc = 0;
out:
    free(address);
    return rc;
}

static int parse_listen(struct gw_config *cfg, const struct cfg_doc *doc,
                        const struct cfg_node *server, struct cfg_error *err)
{
    const struct cfg_node *node = cfg_map_get(server, "listen");
    struct gw_server_config *s = &cfg->server;
    if (!node || cfg_is_null(node)) {
        struct cfg_node def = {.kind = CFG_SCALAR, .scalar = "127.0.0.1:8080"};
        s->listen = calloc(1, sizeof *s->listen);
        if (!s->listen)
            return cfg_errorf(err, doc, NULL, "server.listen", "out of memory");
        s->n_listen = 1;
        return parse_listen_item(doc, &def, "server.listen", &s->listen[0], err);
    }
    /* One address (a string or a map) may be written without the surrounding list. */
    size_t count = node->kind == CFG_SEQ ? node->n : 1;
    if (count == 0)
        return cfg_errorf(err, doc, node, "server.listen",
                          "the list is empty; give at least one address, like "
                          "[\"127.0.0.1:8080\"]");
    if (count > CONFIG_MAX_LISTEN)
        return cfg_errorf(err, doc, node, "server.listen", "more than %d addresses",
                          CONFIG_MAX_LISTEN);
    s->listen = calloc(count, sizeof *s->listen);
    if (!s->listen)
        return cfg_errorf(err, doc, node, "server.listen", "out of memory");
    s->n_listen = count;
    for (size_t i = 0; i < count; i++) {
        const struct cfg_node *item = node->kind == CFG_SEQ ? node->items[i] : node;
        char p[PATH_MAX_LEN];
        if (node->kind == CFG_SEQ)
            cfg_path_index(p, sizeof p, "server.listen", i);
        else
            snprintf(p, sizeof p, "server.listen");
        if (parse_listen_item(doc, item, p, &s->listen[i], err) != 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (s->listen[j].port == s->listen[i].port &&
                strcmp(s->listen[j].host, s->listen[i].host) == 0)
                return cfg_errorf(err, doc, item, p,
                                  "\"%s\" is listed twice (also server.listen[%zu]); remove one",
                                  s->listen[i].address, j);
    }
    return 0;
}

/* ---- server ------------------------------------------------------------------------------- */

/* "http://<first listen address>", https when that listener has TLS. */
static int default_public_url(struct gw_server_config *s)
{
    const struct gw_listen *l = &s->listen[0];
    const char *scheme = l->tls_cert ? "https" : "http";
    int v6 = strchr(l->host, ':') != NULL;
    char buf[128];
    snprintf(buf, sizeof buf, "%s://%s%s%s:%d", scheme, v6 ? "[" : "", l->host, v6 ? "]" : "",
             l->port);
    s->public_url = strdup(buf);
    return s->public_url ? 0 : -1;
}

static int parse_public_url(struct gw_config *cfg, const struct cfg_doc *doc,
                            const struct cfg_node *server, struct cfg_error *err)
{
    struct gw_server_config *s = &cfg->server;
    if (cfg_get_string(doc, server, "server", "public_url", 0, &s->public_url, err) != 0)
        return -1;
    if (!s->public_url)
        return default_public_url(s) == 0
                   ? 0
                   : cfg_errorf(err, doc, NULL, "server.public_url", "out of memory");
    int https, port;
    const char *path;
    const char *why = config_check_http_url(s->public_url, &https, &port, &path);
    if (why)
        return cfg_errorf(err, doc, cfg_map_get(server, "public_url"), "server.public_url",
                          "%s%s%s %s; write the URL clients use to reach toolgate, like "
                          "https://tools.example.com or http://127.0.0.1:8080",
                          config_shown_quote(s->public_url), config_shown_url(s->public_url),
                          config_shown_quote(s->public_url), why);
    /*
     * An origin only: route paths and "/.well-known/..." are appended to it, and RFC 9728
     * places the metadata of https://h/p/mcp at https://h/.well-known/...-resource/p/mcp,
     * which plain appending would get wrong for a path prefix.
     */
    if (strcmp(path, "") != 0 && strcmp(path, "/") != 0)
        return cfg_errorf(err, doc, cfg_map_get(server, "public_url"), "server.public_url",
                          "\"%s\" has a path; write the origin only (scheme, host and port, "
                          "like https://tools.example.com): routes give the paths",
                          s->public_url);
    /* Stored without the trailing '/'. */
    size_t len = strlen(s->public_url);
    if (len > 0 && s->public_url[len - 1] == '/')
        s->public_url[len - 1] = '\0';
    return 0;
}

enum limit_kind { LIMIT_SIZE, LIMIT_DURATION, LIMIT_COUNT };

/* server.limits: one row per field of struct gw_server_limits (default, bounds). */
static const struct limit_spec {
    const char *key;
    enum limit_kind kind;
    size_t offset;
    uint64_t def, min, max;
} server_limit_specs[] = {
    {"max_body", LIMIT_SIZE, offsetof(struct gw_server_limits, max_body), MiB, KiB, GiB},
    {"max_header", LIMIT_SIZE, offsetof(struct gw_server_limits, max_header), 16 * KiB, KiB, MiB},
    {"header_timeout", LIMIT_DURATION, offsetof(struct gw_server_limits, header_timeout_ms),
     10 * SEC, 100, 10 * MIN},
    {"body_timeout", LIMIT_DURATION, offsetof(struct gw_server_limits, body_timeout_ms), 30 * SEC,
     100, HOUR},
    {"idle_timeout", LIMIT_DURATION, offsetof(struct gw_server_limits, idle_timeout_ms), 60 * SEC,
     100, DAY},
    {"max_connections", LIMIT_COUNT, offsetof(struct gw_server_limits, max_connections), 10000, 1,
     1000000},
    {"shutdown_timeout", LIMIT_DURATION, offsetof(struct gw_server_limits, shutdown_timeout_ms),
     10 * SEC, 0, HOUR},
    {"max_json_depth", LIMIT_COUNT, offsetof(struct gw_server_limits, max_json_depth), 64, 2, 256},
    {"max_response", LIMIT_SIZE, offsetof(struct gw_server_limits, max_response), 16 * MiB, KiB,
     GiB},
    {"max_sse_event", LIMIT_SIZE, offsetof(struct gw_server_limits, max_sse_event), 4 * MiB, KiB,
     256 * MiB},
    {"write_buffer", LIMIT_SIZE, offsetof(struct gw_server_limits, write_buffer), MiB, 4 * KiB,
     GiB},
};

static void format_limit(enum limit_kind kind, uint64_t v, char *out, size_t outlen)
{
    if (kind == LIMIT_SIZE)
        config_format_size(v, out, outlen);
    else if (kind == LIMIT_DURATION)
        config_format_duration(v, out, outlen);
    else
        snprintf(out, outlen, "%" PRIu64, v);
}

static int parse_limits(struct gw_config *cfg, const struct cfg_doc *doc,
                        const struct cfg_node *server, struct cfg_error *err)
{
    const size_t n_specs = sizeof server_limit_specs / sizeof server_limit_specs[0];
    const char *keys[sizeof server_limit_specs / sizeof server_limit_specs[0] + 1];
    for (size_t i = 0; i < n_specs; i++)
        keys[i] = server_limit_specs[i].key;
    keys[n_specs] = NULL;

    const struct cfg_node *node = cfg_map_get(server, "limits");
    if (node && cfg_is_null(node))
        node = NULL;
    if (node && cfg_check_keys(doc, node, "server.limits", keys, err) != 0)
        return -1;
    for (size_t i = 0; i < n_specs; i++) {
        const struct limit_spec *spec = &server_limit_specs[i];
        uint64_t *field = (uint64_t *)((char *)&cfg->server.limits + spec->offset);
        uint64_t v = spec->def;
        *field = v;
        if (!node || !cfg_map_get(node, spec->key))
            continue;
        int rc;
        if (spec->kind == LIMIT_SIZE) {
            rc = cfg_get_size(doc, node, "server.limits", spec->key, &v, err);
        } else if (spec->kind == LIMIT_DURATION) {
            rc = cfg_get_duration_ms(doc, node, "server.limits", spec->key, &v, err);
        } else {
            int64_t c = (int64_t)v;
            rc = cfg_get_int(doc, node, "server.limits", spec->key, INT64_MIN, INT64_MAX, &c, err);
            if (rc == 0 && c < 0) {
                char p[PATH_MAX_LEN];
                cfg_path_key(p, sizeof p, "server.limits", spec->key);
                return cfg_errorf(err, doc, cfg_map_get(node, spec->key), p,
                                  "%" PRId64 " is negative; write a number from %" PRIu64
                                  " to %" PRIu64,
                                  c, spec->min, spec->max);
            }
            v = (uint64_t)c;
        }
        if (rc != 0)
            return -1;
        if (v < spec->min || v > spec->max) {
            char p[PATH_MAX_LEN], have[32], lo[32], hi[32], def[32];
            cfg_path_key(p, sizeof p, "server.limits", spec->key);
            format_limit(spec->kind, v, have, sizeof have);
            format_limit(spec->kind, spec->min, lo, sizeof lo);
            format_limit(spec->kind, spec->max, hi, sizeof hi);
            format_limit(spec->kind, spec->def, def, sizeof def);
            return cfg_errorf(err, doc, cfg_map_get(node, spec->key), p,
                              "%s is too %s; write a value from %s to %s (default %s)", have,
                              v < spec->min ? "small" : "large", lo, hi, def);
        }
        *field = v;
    }
    return 0;
}

/* Appends a malloc'd copy to a NULL-terminated vector. */
static int strv_push(char ***v, size_t *n, const char *s, size_t len)
{
    char **nv = realloc(*v, (*n + 2) * sizeof *nv);
    if (!nv)
        return -1;
    *v = nv;
    if (!(nv[*n] = strndup(s, len)))
        return -1;
    nv[++*n] = NULL;
    return 0;
}

static void lower_in_place(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/*
 * server.allowed_origins and server.allowed_hosts, with their defaults from public_url (an
 * origin, checked already) and the listeners. Origins are compared as written by browsers:
 * "scheme://host[:port]", lower-case, no path.
 */
static int parse_rebinding(struct gw_config *cfg, const struct cfg_doc *doc,
                           const struct cfg_node *node, struct cfg_error *err)
{
    struct gw_server_config *s = &cfg->server;
    size_t n = 0;
    if (cfg_get_string_list(doc, node, "server", "allowed_origins", &s->allowed_origins, &n, err) !=
        0)
        return -1;
    if (!s->allowed_origins) {
        if (strv_push(&s->allowed_origins, &n, s->public_url, strlen(s->public_url)) != 0)
            return cfg_errorf(err, doc, NULL, "server.allowed_origins", "out of memory");
    }
    for (size_t i = 0; s->allowed_origins[i]; i++) {
        char *o = s->allowed_origins[i];
        lower_in_place(o);
        int https, port;
        const char *path;
        const char *why = config_check_http_url(o, &https, &port, &path);
        if (!why && path[0])
            why = "has a path; an origin is scheme://host[:port]";
        if (why)
            return cfg_errorf(err, doc, cfg_map_get(node, "allowed_origins"),
                              "server.allowed_origins", "\"%s\" %s", o, why);
    }
    n = 0;
    if (cfg_get_string_list(doc, node, "server", "allowed_hosts", &s->allowed_hosts, &n, err) != 0)
        return -1;
    if (!s->allowed_hosts) {
        /* public_url's host, and localhost when some listener is on loopback. */
        const char *h = strstr(s->public_url, "://") + 3;
        size_t hl = strcspn(h, ":/");
        if (h[0] == '[')
            hl = strcspn(h, "]") + 1;
        if (strv_push(&s->allowed_hosts, &n, h, hl) != 0)
            return cfg_errorf(err, doc, NULL, "server.allowed_hosts", "out of memory");
        for (size_t i = 0; i < s->n_listen; i++)
            if (strncmp(s->listen[i].host, "127.", 4) == 0 ||
                strcmp(s->listen[i].host, "::1") == 0) {
                if (strv_push(&s->allowed_hosts, &n, "localhost", 9) != 0)
                    return cfg_errorf(err, doc, NULL, "server.allowed_hosts", "out of memory");
                break;
            }
    }
    for (size_t i = 0; s->allowed_hosts[i]; i++) {
        lower_in_place(s->allowed_hosts[i]);
        const char *h = s->allowed_hosts[i];
        if (!h[0] || strchr(h, ':') || strchr(h, '/') || strchr(h, '*'))
            if (h[0] != '[')
                return cfg_errorf(err, doc, cfg_map_get(node, "allowed_hosts"),
                                  "server.allowed_hosts",
                                  "\"%s\" is not a host name (write it without scheme, port or "
                                  "pattern, like tools.example.com)",
                                  h);
    }
    return 0;
}

int config_parse_server(struct gw_config *cfg, const struct cfg_doc *doc,
                        const struct cfg_node *node, struct cfg_error *err)
{
    static const char *const keys[] = {"listen", "public_url",      "workers",       "log_level",
                                       "limits", "allowed_origins", "allowed_hosts", NULL};
    static const struct cfg_node empty = {.kind = CFG_MAP};
    struct gw_server_config *s = &cfg->server;
    if (!node)
        node = &empty; /* every key has a default */
    if (cfg_check_keys(doc, node, "server", keys, err) != 0)
        return -1;
    if (parse_listen(cfg, doc, node, err) != 0 || parse_public_url(cfg, doc, node, err) != 0)
        return -1;

    int64_t workers = 0;
    if (config_get_count(doc, node, "server", "workers", 0, 256, "(0 = one per CPU core)", &workers,
                         err) != 0)
        return -1;
    s->workers = (int)workers;

    if (cfg_get_string(doc, node, "server", "log_level", 0, &s->log_level, err) != 0)
        return -1;
    if (!s->log_level) {
        s->log_level = strdup("info");
        if (!s->log_level)
            return cfg_errorf(err, doc, NULL, "server.log_level", "out of memory");
    } else if (strcmp(s->log_level, "debug") != 0 && strcmp(s->log_level, "info") != 0 &&
               strcmp(s->log_level, "warn") != 0 && strcmp(s->log_level, "error") != 0) {
        return cfg_errorf(err, doc, cfg_map_get(node, "log_level"), "server.log_level",
                          "\"%s\" is not a log level; write one of debug, info, warn, error",
                          s->log_level);
    }
    if (parse_limits(cfg, doc, node, err) != 0)
        return -1;
    return parse_rebinding(cfg, doc, node, err);
}

void config_free_server(struct gw_config *cfg)
{
    struct gw_server_config *s = &cfg->server;
    cfg_strv_free(s->allowed_origins);
    cfg_strv_free(s->allowed_hosts);
    s->allowed_origins = s->allowed_hosts = NULL;
    for (size_t i = 0; i < s->n_listen; i++)
        config_listen_free(&s->listen[i]);
    free(s->listen);
    free(s->public_url);
    free(s->log_level);
    memset(s, 0, sizeof *s);
}
