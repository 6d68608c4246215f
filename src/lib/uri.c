#include "lib/uri.h"

#include <string.h>

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int hex_val(int c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int unreserved(int c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/*
 * Decodes the percent-encodings of one component into out (unreserved characters decoded,
 * the rest re-encoded with upper-case hex). Returns 0, or -1 with *why.
 */
static int normalize_part(const char *s, size_t len, struct gw_buf *out, const char **why)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '%') {
            if (gw_buf_append(out, (const char *)&c, 1) != 0)
                goto memory;
            continue;
        }
        int h = i + 2 < len ? hex_val(s[i + 1]) : -1;
        int l = h >= 0 ? hex_val(s[i + 2]) : -1;
        if (l < 0) {
            *why = "has a '%' that is not followed by two hex digits";
            return -1;
        }
        int v = h * 16 + l;
        if (v == '/' || v == '\\') {
            *why = "has an encoded '/' or '\\' (%2F, %5C), which backends read differently";
            return -1;
        }
        if (v < 0x20 || v == 0x7f) {
            *why = "has an encoded NUL or control character";
            return -1;
        }
        char enc[3] = {'%', hex[v >> 4], hex[v & 15]};
        char dec = (char)v;
        if (unreserved(v) ? gw_buf_append(out, &dec, 1) != 0 : gw_buf_append(out, enc, 3) != 0)
            goto memory;
        i += 2;
    }
    return 0;
memory:
    *why = "cannot be processed (out of memory)";
    return -1;
}

/*
 * RFC 3986 §5.2.4 on a path that starts with '/', refusing empty segments and '..' above the
 * root. Appends the result to out.
 */
static int remove_dots(const char *p, size_t len, struct gw_buf *out, const char **why)
{
    size_t base = out->len;
    size_t i = 0;
    while (i < len) {
        /* p[i] == '/': one segment follows, up to the next '/' or the end. */
        size_t j = i + 1;
        while (j < len && p[j] != '/')
            j++;
        const char *seg = p + i + 1;
        size_t sl = j - i - 1;
        int last = j >= len;
        if (sl == 0 && !last) {
            *why = "has an empty path segment (\"//\")";
            return -1;
        }
        if (sl == 1 && seg[0] == '.') {
            /* "/./" is "/"; a trailing "/." leaves the trailing '/'. */
            if (last && gw_buf_append(out, "/", 1) != 0)
                goto memory;
        } else if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
            if (out->len == base) {
                *why = "has a '..' that climbs above the root";
                return -1;
            }
            while (out->len > base && out->data[out->len - 1] != '/')
                out->len--;
            if (out->len > base)
                out->len--; /* the '/' before the removed segment */
            if (last && gw_buf_append(out, "/", 1) != 0)
                goto memory;
        } else {
            if (gw_buf_append(out, p + i, sl + 1) != 0)
                goto memory;
        }
        i = j;
    }
    if (out->len == base && len > 0 && gw_buf_append(out, "/", 1) != 0)
        goto memory;
    if (out->data)
        out->data[out->len] = '\0';
    return 0;
memory:
    *why = "cannot be processed (out of memory)";
    return -1;
}

int gw_uri_canonical(const char *s, size_t len, struct gw_buf *out, const char **why)
{
    struct gw_buf path = {0};
    int rc = -1;
    *why = "is not a URI";
    if (!s || len == 0)
        return -1;
    if (len > GW_URI_MAX) {
        *why = "is longer than 8192 bytes";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f) {
            *why = "has whitespace or a control character";
            return -1;
        }
        if (c == '\\') {
            *why = "has a '\\', which backends read as '/' or not";
            return -1;
        }
    }
    /* Scheme. */
    size_t i = 0;
    if (!is_alpha((unsigned char)s[0])) {
        *why = "is not an absolute URI (scheme:...)";
        return -1;
    }
    while (i < len && (is_alpha((unsigned char)s[i]) || is_digit((unsigned char)s[i]) ||
                       s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (i >= len || s[i] != ':' || i > 32) {
        *why = "is not an absolute URI (scheme:...)";
        return -1;
    }
    size_t start = out->len;
    for (size_t k = 0; k < i; k++) {
        char c = (char)lower((unsigned char)s[k]);
        if (gw_buf_append(out, &c, 1) != 0)
            goto memory;
    }
    if (gw_buf_append(out, ":", 1) != 0)
        goto memory;
    i++;
    /* Authority. */
    if (len - i >= 2 && s[i] == '/' && s[i + 1] == '/') {
        i += 2;
        size_t a = i;
        while (i < len && s[i] != '/' && s[i] != '?' && s[i] != '#')
            i++;
        if (memchr(s + a, '@', i - a)) {
            *why = "has userinfo (user@host) in its authority";
            goto fail;
        }
        if (gw_buf_append(out, "//", 2) != 0)
            goto memory;
        struct gw_buf host = {0};
        if (normalize_part(s + a, i - a, &host, why) != 0) {
            gw_buf_free(&host);
            goto fail;
        }
        /*
         * What is left must be a plain host[:port]: an encoding still there (of a reserved or
         * non-ASCII byte) or a raw non-ASCII byte is one a backend may resolve differently.
         */
        for (size_t k = 0; k < host.len; k++) {
            unsigned char c = (unsigned char)host.data[k];
            if (!is_alpha(c) && !is_digit(c) && !strchr("-._~!$&'()*+,;=:[]", c)) {
                *why = "has a character in its authority that is not allowed there";
                gw_buf_free(&host);
                goto fail;
            }
            host.data[k] = (char)lower(c);
        }
        int ok = gw_buf_append(out, host.data ? host.data : "", host.len) == 0;
        gw_buf_free(&host);
        if (!ok)
            goto memory;
    }
    /* Path: decoded first (so "%2e%2e" is ".."), then dot segments. */
    size_t p = i;
    while (i < len && s[i] != '?' && s[i] != '#')
        i++;
    if (normalize_part(s + p, i - p, &path, why) != 0)
        goto fail;
    if (path.len > 0 && path.data[0] == '/') {
        if (remove_dots(path.data, path.len, out, why) != 0)
            goto fail;
    } else if (path.len > 0) {
        /*
         * A path without a root (urn:, mailto:, mem:notes/1): nothing to resolve, but no dot
         * tricks either, and no empty segment a backend might fold.
         */
        for (size_t k = 0; k + 1 < path.len; k++)
            if (path.data[k] == '.' && path.data[k + 1] == '.') {
                *why = "has '..' in a path that is not hierarchical";
                goto fail;
            }
        for (size_t k = 0, seg = 0; k <= path.len; k++) {
            if (k < path.len && path.data[k] != '/')
                continue;
            size_t n = k - seg;
            if ((n == 0 && k < path.len) || (n == 1 && path.data[seg] == '.')) {
                *why = n == 0 ? "has an empty path segment (\"//\")"
                              : "has a '.' segment in a path that is not hierarchical";
                goto fail;
            }
            seg = k + 1;
        }
        if (gw_buf_append(out, path.data, path.len) != 0)
            goto memory;
    }
    /* Query and fragment: percent-encodings normalized, otherwise as written. */
    if (i < len && normalize_part(s + i, len - i, out, why) != 0)
        goto fail;
    rc = 0;
    goto done;
memory:
    *why = "cannot be processed (out of memory)";
fail:
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
done:
    gw_buf_free(&path);
    return rc;
}
