/* config_util: small helpers the configuration loader's parts share, and URL checks. */
#include "core/config-int.h"
#include "lib/url.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- small helpers ------------------------------------------------------------------------ */

/* Parses 1..5 decimal digits as a TCP port 1..65535; -1 otherwise. */
int config_parse_port(const char *s, size_t len)
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
void config_format_size(uint64_t v, char *out, size_t outlen)
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

void config_format_duration(uint64_t ms, char *out, size_t outlen)
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
const struct cfg_node *config_at_key(const struct cfg_node *map, const char *key)
{
    const struct cfg_node *n = cfg_map_get(map, key);
    return n ? n : map;
}

/* A required key: present, not null, a scalar. `example` shows what to write. */
int config_get_required_string(const struct cfg_doc *doc, const struct cfg_node *map,
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
int config_get_count(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                     const char *key, int64_t min, int64_t max, const char *hint, int64_t *out,
                     struct cfg_error *err)
{
    int64_t v = *out;
    if (cfg_get_int(doc, map, path, key, INT64_MIN, INT64_MAX, &v, err) != 0)
        return -1;
    if (v < min || v > max) {
        char p[PATH_MAX_LEN];
        cfg_path_key(p, sizeof p, path, key);
        return cfg_errorf(err, doc, config_at_key(map, key), p,
                          "%" PRId64 " is out of range: write a number from %" PRId64 " to %" PRId64
                          "%s%s",
                          v, min, max, hint ? " " : "", hint ? hint : "");
    }
    *out = v;
    return 0;
}

/* A URL with credentials in it is not repeated in the error: errors reach logs and terminals. */
const char *config_shown_url(const char *url)
{
    return strchr(url, '@') ? "the URL" : url;
}

const char *config_shown_quote(const char *url)
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
const char *config_check_http_url(const char *url, int *https, int *port, const char **path_out)
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

/* The file must exist, be a regular file and be readable by this process now. */
int config_check_readable_file(const struct cfg_doc *doc, const struct cfg_node *node,
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
