/*
 * config: loads one generation from YAML. This file parses the `server` and `routes`
 * sections and runs the section table; each layer parses its own section through an entry in
 * that table.
 *
 * Every error names file:line:col, the key path, what is wrong and what to write instead: the
 * person reading it is fixing a file, usually in a hurry.
 */
#include "core/config.h"
#include "core/module.h"
#include "core/route_kind.h"
#include "lib/url.h"
#include "lib/digest.h"

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

/* Bounds on the file and on the counts of things in it (each far above real use). */
#define CONFIG_MAX_FILE (16u * 1024 * 1024)
#define CONFIG_MAX_LISTEN 64
#define CONFIG_MAX_ROUTES 1024
#define CONFIG_MAX_BACKENDS 64
#define CONFIG_MAX_ENDPOINTS 64
#define CONFIG_MAX_NAME 64
#define CONFIG_MAX_ROUTE_PATH 256
#define CONFIG_MAX_URL 2048
#define CONFIG_MAX_HOST 253

#define KiB UINT64_C(1024)
#define MiB (UINT64_C(1024) * KiB)
#define GiB (UINT64_C(1024) * MiB)
#define SEC UINT64_C(1000)
#define MIN (UINT64_C(60) * SEC)
#define HOUR (UINT64_C(60) * MIN)
#define DAY (UINT64_C(24) * HOUR)

/* Key paths are short; this bounds the buffers that build them. */
#define PATH_MAX_LEN 256

/* ---- small helpers ------------------------------------------------------------------------ */

static int is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 3986 unreserved and sub-delims, plus ':' and '@': what a path segment may hold. */
static int is_pchar(char c)
{
    return is_alnum(c) || strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

/* Parses 1..5 decimal digits as a TCP port 1..65535; -1 otherwise. */
static int parse_port(const char *s, size_t len)
{
    if (len == 0 || len > 5)
        return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

/* Writes a size the way a person would write it in the file (1MiB rather than 1048576). */
static void format_size(uint64_t v, char *out, size_t outlen)
{
    if (v >= GiB && v % GiB == 0)
        snprintf(out, outlen, "%" PRIu64 "GiB", v / GiB);
    else if (v >= MiB && v % MiB == 0)
        snprintf(out, outlen, "%" PRIu64 "MiB", v / MiB);
    else if (v >= KiB && v % KiB == 0)
        snprintf(out, outlen, "%" PRIu64 "KiB", v / KiB);
    else
        snprintf(out, outlen, "%" PRIu64, v);
}

static void format_duration(uint64_t ms, char *out, size_t outlen)
{
    if (ms >= DAY && ms % DAY == 0)
        snprintf(out, outlen, "%" PRIu64 "d", ms / DAY);
    else if (ms >= HOUR && ms % HOUR == 0)
        snprintf(out, outlen, "%" PRIu64 "h", ms / HOUR);
    else if (ms >= MIN && ms % MIN == 0)
        snprintf(out, outlen, "%" PRIu64 "m", ms / MIN);
    else if (ms >= SEC && ms % SEC == 0)
        snprintf(out, outlen, "%" PRIu64 "s", ms / SEC);
    else
        snprintf(out, outlen, "%" PRIu64 "ms", ms);
}

/* The node to point an error at: the value when present, else the enclosing map. */
static const struct cfg_node *at_key(const struct cfg_node *map, const char *key)
{
    const struct cfg_node *n = cfg_map_get(map, key);
    return n ? n : map;
}

/* A required key: present, not null, a scalar. `example` shows what to write. */
static int get_required_string(const struct cfg_doc *doc, const struct cfg_node *map,
                               const char *path, const char *key, const char *example, char **out,
                               struct cfg_error *err)
{
    const struct cfg_node *n = cfg_map_get(map, key);
    if (!n || cfg_is_null(n))
        return cfg_errorf(err, doc, n ? n : map, path, "`%s` is required (for example %s: %s)", key,
                          key, example);
    return cfg_get_string(doc, map, path, key, 1, out, err);
}

/* A whole number in [min, max] under key; `hint` tells what the number means. */
static int get_count(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                     const char *key, int64_t min, int64_t max, const char *hint, int64_t *out,
                     struct cfg_error *err)
{
    int64_t v = *out;
    if (cfg_get_int(doc, map, path, key, INT64_MIN, INT64_MAX, &v, err) != 0)
        return -1;
    if (v < min || v > max) {
        char p[PATH_MAX_LEN];
        cfg_path_key(p, sizeof p, path, key);
        return cfg_errorf(err, doc, at_key(map, key), p,
                          "%" PRId64 " is out of range: write a number from %" PRId64 " to %" PRId64
                          "%s%s",
                          v, min, max, hint ? " " : "", hint ? hint : "");
    }
    *out = v;
    return 0;
}

/* A URL with credentials in it is not repeated in the error: errors reach logs and terminals. */
static const char *shown_url(const char *url)
{
    return strchr(url, '@') ? "the URL" : url;
}

static const char *shown_quote(const char *url)
{
    return strchr(url, '@') ? "" : "\"";
}

/* ---- URLs --------------------------------------------------------------------------------- */

/*
 * Checks an absolute http(s) URL with the one URL parser (lib/url), then what a URL in the
 * configuration must be beyond that: printable ASCII, a lower-case scheme, an IPv4 address
 * written as a dotted quad (resolvers read "127.1" or "0x7f.0.0.1" as addresses too; the
 * file should say plainly where it points), no query or fragment, and a path of RFC 3986
 * characters. On success *https and *port are set and *path_out points at the path ("" when
 * none). On failure returns a phrase saying what is wrong.
 */
static const char *check_http_url(const char *url, int *https, int *port, const char **path_out)
{
    size_t len = strlen(url);
    if (len == 0)
        return "is empty";
    if (len > CONFIG_MAX_URL)
        return "is longer than 2048 characters";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c == 0x7f)
            return "contains whitespace or a control character";
        if (c >= 0x80)
            return "contains a non-ASCII character (percent-encode it)";
    }
    struct gw_url u;
    int rc = gw_url_parse(url, len, GW_URL_ANY_SCHEME, &u);
    if (rc == GW_URL_E_USERINFO)
        return "contains credentials (user@host); credentials do not belong in URLs";
    if (rc == GW_URL_E_SYNTAX && u.why == gw_url_error_text(rc))
        return "does not start with http:// or https://";
    if (rc != GW_URL_OK)
        return u.why;
    if (strcmp(u.scheme, "http") != 0 && strcmp(u.scheme, "https") != 0)
        return "does not start with http:// or https://";
    if (!u.scheme_lower)
        return "has an upper-case scheme (write http:// or https://)";
    if (u.host_is_ip && u.ip.family == AF_INET) {
        const char *h = url + strlen(u.scheme) + 3;
        size_t hl = strlen(u.host);
        if (strncmp(h, u.host, hl) != 0 || (h[hl] != '\0' && h[hl] != ':' && h[hl] != '/'))
            return "has an IPv4 address not written as a dotted quad (write it like 127.0.0.1)";
    }
    if (u.has_query)
        return "has a query (?...), which is not allowed here";
    if (u.has_fragment)
        return "has a fragment (#...), which is not allowed";
    const char *path = url + u.path_off;
    for (const char *c = path; c < url + u.path_off + u.path_len; c++) {
        if (*c == '%') {
            if (!is_hex(c[1]) || !is_hex(c[2]))
                return "has a '%' that is not followed by two hex digits";
            c += 2;
            continue;
        }
        if (*c != '/' && !is_pchar(*c))
            return "has a character in its path that must be percent-encoded";
    }
    *https = u.https;
    *port = u.port;
    *path_out = path;
    return NULL;
}

/* ---- server.listen ------------------------------------------------------------------------ */

static void listen_free(struct gw_listen *l)
{
    free(l->address);
    free(l->host);
    free(l->tls_cert);
    free(l->tls_key);
    memset(l, 0, sizeof *l);
}

/* Parses "host:port", "[v6]:port" or ":port" into l (address, host, port). */
static int parse_listen_address(const struct cfg_doc *doc, const struct cfg_node *node,
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
    if (parse_port(port_text, strlen(port_text)) < 0)
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
    l->port = parse_port(port_text, strlen(port_text));
    l->address = strdup(text);
    l->host = strdup(host);
    if (!l->address || !l->host)
        return cfg_errorf(err, doc, node, path, "out of memory");
    return 0;
}

/* The file must exist, be a regular file and be readable by this process now. */
static int check_readable_file(const struct cfg_doc *doc, const struct cfg_node *node,
                               const char *path, const char *file, struct cfg_error *err)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return cfg_errorf(err, doc, node, path,
                          "cannot read \"%s\": %s (relative paths are relative to the directory "
                          "toolgate is started in)",
                          file, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = cfg_errorf(err, doc, node, path, "\"%s\" is not a regular file", file);
    close(fd);
    return rc;
}

static int parse_listen_tls(const struct cfg_doc *doc, const struct cfg_node *tls, const char *path,
                            struct gw_listen *l, struct cfg_error *err)
{
    static const char *const keys[] = {"cert", "key", NULL};
    char p[PATH_MAX_LEN];
    if (cfg_check_keys(doc, tls, path, keys, err) != 0)
        return -1;
    if (get_required_string(doc, tls, path, "cert", "certs/server.pem", &l->tls_cert, err) != 0 ||
        get_required_string(doc, tls, path, "key", "certs/server.key", &l->tls_key, err) != 0)
        return -1;
    cfg_path_key(p, sizeof p, path, "cert");
    if (check_readable_file(doc, cfg_map_get(tls, "cert"), p, l->tls_cert, err) != 0)
        return -1;
    cfg_path_key(p, sizeof p, path, "key");
    if (check_readable_file(doc, cfg_map_get(tls, "key"), p, l->tls_key, err) != 0)
        return -1;
    return 0;
}

static int parse_listen_item(const struct cfg_doc *doc, const struct cfg_node *item,
                             const char *path, struct gw_listen *l, struct cfg_error *err)
{
    if (item->kind == CFG_SCALAR)
        return parse_listen_address(doc, item, path, item->scalar, l, err);
    if (item->kind != CFG_MAP)
        return cfg_errorf(err, doc, item, path,
                          "expected \"host:port\" or {address: \"host:port\", tls: {cert, key}}");
    static const char *const keys[] = {"address", "tls", NULL};
    if (cfg_check_keys(doc, item, path, keys, err) != 0)
        return -1;
    char *address = NULL;
    char p[PATH_MAX_LEN];
    int rc = -1;
    if (get_required_string(doc, item, path, "address", "\"0.0.0.0:8443\"", &address, err) != 0)
        goto out;
    cfg_path_key(p, sizeof p, path, "address");
    if (parse_listen_address(doc, cfg_map_get(item, "address"), p, address, l, err) != 0)
        goto out;
    const struct cfg_node *tls = cfg_map_get(item, "tls");
    cfg_path_key(p, sizeof p, path, "tls");
    if (tls && !cfg_is_null(tls) && parse_listen_tls(doc, tls, p, l, err) != 0)
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
    const char *why = check_http_url(s->public_url, &https, &port, &path);
    if (why)
        return cfg_errorf(err, doc, cfg_map_get(server, "public_url"), "server.public_url",
                          "%s%s%s %s; write the URL clients use to reach toolgate, like "
                          "https://tools.example.com or http://127.0.0.1:8080",
                          shown_quote(s->public_url), shown_url(s->public_url),
                          shown_quote(s->public_url), why);
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
        format_size(v, out, outlen);
    else if (kind == LIMIT_DURATION)
        format_duration(v, out, outlen);
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

static int parse_server(struct gw_config *cfg, const struct cfg_doc *doc,
                        const struct cfg_node *node, struct cfg_error *err)
{
    static const char *const keys[] = {"listen",    "public_url", "workers",
                                       "log_level", "limits",     NULL};
    static const struct cfg_node empty = {.kind = CFG_MAP};
    struct gw_server_config *s = &cfg->server;
    if (!node)
        node = &empty; /* every key has a default */
    if (cfg_check_keys(doc, node, "server", keys, err) != 0)
        return -1;
    if (parse_listen(cfg, doc, node, err) != 0 || parse_public_url(cfg, doc, node, err) != 0)
        return -1;

    int64_t workers = 0;
    if (get_count(doc, node, "server", "workers", 0, 256, "(0 = one per CPU core)", &workers,
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
    return parse_limits(cfg, doc, node, err);
}

static void free_server(struct gw_config *cfg)
{
    struct gw_server_config *s = &cfg->server;
    for (size_t i = 0; i < s->n_listen; i++)
        listen_free(&s->listen[i]);
    free(s->listen);
    free(s->public_url);
    free(s->log_level);
    memset(s, 0, sizeof *s);
}

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
    const char *why = check_http_url(url, &https, &port, &upath);
    if (why)
        return cfg_errorf(err, doc, node, path,
                          "%s%s%s %s; write it like http://127.0.0.1:9001/mcp", shown_quote(url),
                          shown_url(url), shown_quote(url), why);
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
        format_duration(v, have, sizeof have);
        format_duration(min, lo, sizeof lo);
        format_duration(max, hi, sizeof hi);
        return cfg_errorf(err, doc, at_key(map, key), p,
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
         get_count(doc, node, path, "unhealthy", 1, 100,
                   "(failed checks in a row that mark an endpoint down)", &unhealthy, err) != 0 ||
         get_count(doc, node, path, "healthy", 1, 100,
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
        return cfg_errorf(err, doc, at_key(node, "path"), p, "\"%s\" %s (for example /healthz)",
                          h->path, bad);
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
        get_count(doc, node, path, "failures", 0, 1000,
                  "(failed requests in a row that eject an endpoint; 0 = never)", &failures,
                  err) != 0 ||
        get_bounded_duration(doc, node, path, "base", 1, HOUR, &e->base_ms, err) != 0 ||
        get_bounded_duration(doc, node, path, "max", 1, DAY, &e->max_ms, err) != 0)
        return -1;
    if (e->max_ms < e->base_ms) {
        char p[PATH_MAX_LEN];
        cfg_path_key(p, sizeof p, path, "max");
        return cfg_errorf(err, doc, at_key(node, "max"), p,
                          "is shorter than eject.base; the longest ejection cannot be shorter "
                          "than the first");
    }
    e->failures = (unsigned)failures;
    return 0;
}

static int parse_backend(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                         struct gw_backend *b, struct cfg_error *err)
{
    static const char *const keys[] = {"name",   "url",   "endpoints", "prefix",
                                       "health", "eject", "timeouts",  NULL};
    char p[PATH_MAX_LEN];
    if (cfg_check_keys(doc, node, path, keys, err) != 0)
        return -1;
    if (get_required_string(doc, node, path, "name", "ehr", &b->name, err) != 0)
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
    if (eps) {
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
    } else {
        if (get_required_string(doc, node, path, "url", "\"http://127.0.0.1:9001/mcp\"", &b->url,
                                err) != 0)
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
            format_duration(v, have, sizeof have);
            format_duration(spec->max, hi, sizeof hi);
            format_duration(spec->def, def, sizeof def);
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
    static const char *const core_keys[] = {"name", "path", "kind", "backends", "timeouts"};
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

    if (get_required_string(doc, node, path, "name", "ehr", &r->name, err) != 0)
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

    if (get_required_string(doc, node, path, "path", "/mcp", &r->path, err) != 0)
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
        cfg_strv_free(r->backends[i].endpoints);
        free(r->backends[i].health.path);
    }
    free(r->backends);
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
static int parse_routes(struct gw_config *cfg, const struct cfg_doc *doc,
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

static void free_routes(struct gw_config *cfg)
{
    for (size_t i = 0; i < cfg->n_routes; i++)
        route_free(&cfg->routes[i]);
    free(cfg->routes);
    cfg->routes = NULL;
    cfg->n_routes = 0;
}

/* ---- the core's sections; every other top-level key belongs to a module ------------------ */

static const struct config_section {
    const char *name;
    int (*parse)(struct gw_config *cfg, const struct cfg_doc *doc, const struct cfg_node *node,
                 struct cfg_error *err);
    void (*free)(struct gw_config *cfg);
} core_sections[] = {
    {"server", parse_server, free_server},
    {"routes", parse_routes, free_routes},
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
    gw_sha256_hex(text, len, cfg->config_hash);
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
