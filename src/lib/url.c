/*
 * url: the one URL parser of toolgate. Configuration (backend URLs), the egress guard (the
 * backend and URL-valued tool arguments) and policy's host predicates all read URLs here, so
 * that they cannot disagree about where a URL points.
 *
 * The reading follows what the connecting party (curl, a WHATWG parser) would dial, and
 * where parsers disagree (userinfo, backslashes, whitespace, numeric host forms, encodings),
 * the URL is refused rather than guessed at. See url.h for the rules; the comments here say
 * why each one exists.
 */
#include "lib/url.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int hex_val(char c)
{
    if (is_digit(c))
        return c - '0';
    return lower(c) - 'a' + 10;
}

const char *gw_url_error_text(int err)
{
    switch (err) {
    case GW_URL_OK:
        return "is a valid URL";
    case GW_URL_E_TOO_LONG:
        return "is too long";
    case GW_URL_E_SYNTAX:
        return "is not a well-formed URL";
    case GW_URL_E_SCHEME:
        return "does not use http or https";
    case GW_URL_E_USERINFO:
        return "has a userinfo part (user@host)";
    case GW_URL_E_HOST:
        return "has a host that is neither a valid name nor an IP address";
    case GW_URL_E_PORT:
        return "has a port that is not a number from 1 to 65535";
    case GW_URL_E_ENCODED:
        return "has a percent-encoded or non-ASCII host";
    case GW_URL_E_IDNA:
        return "has an internationalized host label that is not clean punycode";
    case GW_URL_E_ZONE:
        return "has an IPv6 zone id";
    default:
        return "cannot be read";
    }
}

/* ---- IPv4 in every form ------------------------------------------------------------------- */

/* One part of a numeric host: decimal, octal (leading 0) or hex (0x). -1 on anything else. */
static int ipv4_part(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    unsigned base = 10;
    if (len == 0)
        return -1;
    if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
        len -= 2;
        /* "0x" alone: WHATWG reads 0, inet_aton refuses; two readings, so refuse. */
        if (len == 0)
            return -1;
    } else if (len >= 2 && s[0] == '0') {
        base = 8;
        s++;
        len--;
    }
    /* Leading zeros could make a part arbitrarily long without changing its value. */
    if (len > 32)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned d;
        if (base == 16 && is_hex(s[i]))
            d = (unsigned)hex_val(s[i]);
        else if (base == 10 && is_digit(s[i]))
            d = (unsigned)(s[i] - '0');
        else if (base == 8 && s[i] >= '0' && s[i] <= '7')
            d = (unsigned)(s[i] - '0');
        else
            return -1;
        v = v * base + d;
        if (v > 0xffffffffu)
            return -1;
    }
    *out = v;
    return 0;
}

int gw_ipv4_parse(const char *s, size_t len, uint32_t *out)
{
    uint64_t parts[4];
    size_t n = 0, start = 0;
    if (len == 0 || len > 64)
        return -1;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.')
            continue;
        if (n == 4)
            return -1;
        if (ipv4_part(s + start, i - start, &parts[n]) != 0)
            return -1;
        n++;
        start = i + 1;
    }
    uint64_t v = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (parts[i] > 255)
            return -1;
        v |= parts[i] << (8 * (3 - i));
    }
    uint64_t last = parts[n - 1];
    if (last >= (UINT64_C(1) << (8 * (5 - n))))
        return -1;
    v |= last;
    *out = (uint32_t)v;
    return 0;
}

/*
 * WHATWG's "ends in a number": the last label is all digits or 0x-hex. Such a host must be an
 * IPv4 address or nothing; resolvers would read it as one.
 */
static int ends_in_number(const char *h, size_t len)
{
    size_t start = len;
    while (start > 0 && h[start - 1] != '.')
        start--;
    const char *l = h + start;
    size_t ll = len - start;
    if (ll == 0)
        return 0;
    int digits = 1;
    for (size_t i = 0; i < ll; i++)
        digits &= is_digit(l[i]);
    if (digits)
        return 1;
    if (ll >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X')) {
        for (size_t i = 2; i < ll; i++)
            if (!is_hex(l[i]))
                return 0;
        return 1;
    }
    /* A last label that starts with a digit is read as a number by inet_aton-style parsers
     * ("1e3", "0o7"): treat it as numeric too, so it has to parse or be refused. */
    return is_digit(l[0]);
}

/* ---- punycode (RFC 3492) ------------------------------------------------------------------ */

#define PUNY_MAX_OUT 64

static int puny_digit(char c)
{
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= '0' && c <= '9')
        return c - '0' + 26;
    return -1;
}

static uint32_t puny_adapt(uint32_t delta, uint32_t numpoints, int first)
{
    delta = first ? delta / 700 : delta / 2;
    delta += delta / numpoints;
    uint32_t k = 0;
    while (delta > ((36 - 1) * 26) / 2) {
        delta /= 36 - 1;
        k += 36;
    }
    return k + (36 - 1 + 1) * delta / (delta + 38);
}

/* Decodes the part after "xn--" into code points. Returns the count, or -1. */
static int puny_decode(const char *in, size_t len, uint32_t *out, size_t outcap)
{
    size_t basic = 0, n_out = 0;
    for (size_t i = 0; i < len; i++)
        if (in[i] == '-')
            basic = i;
    size_t pos = 0;
    if (basic > 0) {
        for (size_t i = 0; i < basic; i++) {
            if (n_out >= outcap)
                return -1;
            out[n_out++] = (unsigned char)in[i];
        }
        pos = basic + 1;
    }
    uint32_t n = 128, bias = 72;
    uint64_t i = 0;
    while (pos < len) {
        uint64_t oldi = i, w = 1;
        for (uint32_t k = 36;; k += 36) {
            if (pos >= len)
                return -1;
            int d = puny_digit(in[pos++]);
            if (d < 0)
                return -1;
            i += (uint64_t)d * w;
            if (i > 0x10ffffu * (uint64_t)(PUNY_MAX_OUT + 1))
                return -1;
            uint32_t t = k <= bias ? 1 : (k >= bias + 26 ? 26 : k - bias);
            if ((uint32_t)d < t)
                break;
            w *= 36 - t;
            if (w > 0xffffffffu)
                return -1;
        }
        bias = puny_adapt((uint32_t)(i - oldi), (uint32_t)n_out + 1, oldi == 0);
        uint64_t nn = n + i / (n_out + 1);
        if (nn > 0x10ffff)
            return -1;
        n = (uint32_t)nn;
        i %= (n_out + 1);
        if (n_out >= outcap)
            return -1;
        memmove(out + i + 1, out + i, (n_out - (size_t)i) * sizeof *out);
        out[i] = n;
        n_out++;
        i++;
    }
    return (int)n_out;
}

/*
 * Code points that a mapping step (UTS 46, NFKC) turns into ASCII dots or digits, or drops
 * (soft hyphen, zero-width characters), and controls: a label carrying them names a different
 * host in some fetchers than in others.
 */
static int puny_suspicious(uint32_t c)
{
    return c == 0x3002 || c == 0xff0e || c == 0xff61 || c == 0x2024 || c == 0xfe52 ||
           (c >= 0xff01 && c <= 0xff5e) || (c >= 0x2070 && c <= 0x209f) || c == 0xb2 || c == 0xb3 ||
           c == 0xb9 || (c >= 0x2460 && c <= 0x24ff) || (c >= 0x1d7ce && c <= 0x1d7ff) ||
           (c >= 0xd800 && c <= 0xdfff) || (c >= 0x80 && c <= 0xa0) || c == 0xad ||
           (c >= 0x200b && c <= 0x200f) || c == 0x2028 || c == 0x2029 || c == 0x2060 || c == 0xfeff;
}

/* Returns rc, with *why set to the phrase (NULL: the error code's own phrase). */
static int fail(const char **why, int rc, const char *phrase)
{
    if (why)
        *why = phrase ? phrase : gw_url_error_text(rc);
    return rc;
}

static int check_a_label(const char *l, size_t len)
{
    uint32_t cps[PUNY_MAX_OUT];
    int n = puny_decode(l + 4, len - 4, cps, PUNY_MAX_OUT);
    if (n <= 0)
        return -1;
    int non_ascii = 0;
    for (int i = 0; i < n; i++) {
        uint32_t c = cps[i];
        if (c < 0x80) {
            char a = (char)c;
            if (!(is_digit(a) || (a >= 'a' && a <= 'z') || a == '-'))
                return -1;
        } else {
            non_ascii = 1;
            if (puny_suspicious(c))
                return -1;
        }
    }
    /* An A-label of pure ASCII is not a valid IDNA label: two parsers, two answers. */
    return non_ascii ? 0 : -1;
}

/* Checks an LDH(+'_') name, lower-case, without trailing dot. Returns 0 or an ssrf_error. */
static int check_name(const char *h, size_t len, const char **why)
{
    if (len == 0 || len > GW_URL_MAX_HOST)
        return fail(why, GW_URL_E_HOST, "has a host name longer than 253 characters");
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && h[i] != '.') {
            char c = h[i];
            if (!(is_digit(c) || (c >= 'a' && c <= 'z') || c == '-' || c == '_'))
                return fail(why, GW_URL_E_HOST,
                            "has a character not allowed in a host name (letters, digits, '-', "
                            "'_' and '.')");
            continue;
        }
        size_t ll = i - start;
        if (ll == 0)
            return fail(why, GW_URL_E_HOST, "has an empty label in its host name");
        if (ll > 63)
            return fail(why, GW_URL_E_HOST, "has a host name label longer than 63 characters");
        if (h[start] == '-' || h[i - 1] == '-')
            return fail(why, GW_URL_E_HOST, "has a host name label that starts or ends with '-'");
        if (ll >= 4 && memcmp(h + start, "xn--", 4) == 0 && check_a_label(h + start, ll) != 0)
            return fail(why, GW_URL_E_IDNA, NULL);
        /* "ab--": reserved for future ACE prefixes; none is safe to guess at. */
        if (ll >= 4 && h[start + 2] == '-' && h[start + 3] == '-' &&
            memcmp(h + start, "xn", 2) != 0)
            return fail(why, GW_URL_E_IDNA, NULL);
        start = i + 1;
    }
    return GW_URL_OK;
}

/* ---- the URL ------------------------------------------------------------------------------ */

static int parse_host(const char *h, size_t len, struct gw_url *out, const char **why)
{
    char buf[GW_URL_MAX_HOST + 2];
    if (len == 0)
        return fail(why, GW_URL_E_SYNTAX, "has no host");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c == '%' || c >= 0x80)
            return fail(why, GW_URL_E_ENCODED, NULL);
    }
    if (h[0] == '[') {
        if (len < 3 || h[len - 1] != ']')
            return fail(why, GW_URL_E_HOST,
                        "has an unterminated IPv6 literal (write it like [::1])");
        const char *in = h + 1;
        size_t il = len - 2;
        if (il > 45)
            return fail(why, GW_URL_E_HOST, "has an IPv6 literal that is too long");
        if (in[0] == 'v' || in[0] == 'V')
            return fail(why, GW_URL_E_HOST, "has an IPvFuture literal"); /* nobody dials it */
        memcpy(buf, in, il);
        buf[il] = '\0';
        if (strchr(buf, '%'))
            return fail(why, GW_URL_E_ZONE, NULL);
        if (inet_pton(AF_INET6, buf, out->ip.bytes) != 1)
            return fail(why, GW_URL_E_HOST, "has an invalid IPv6 literal");
        out->ip.family = AF_INET6;
        out->host_is_ip = 1;
        gw_addr_format(&out->ip, out->host, sizeof out->host);
        return GW_URL_OK;
    }
    if (len > GW_URL_MAX_HOST + 1)
        return fail(why, GW_URL_E_HOST, "has a host name longer than 253 characters");
    for (size_t i = 0; i < len; i++)
        buf[i] = lower(h[i]);
    /* One trailing dot names the same host (an absolute name); two are an empty label. */
    if (buf[len - 1] == '.')
        len--;
    if (len == 0)
        return fail(why, GW_URL_E_HOST, "has an empty label in its host name");
    if (len > GW_URL_MAX_HOST)
        return fail(why, GW_URL_E_HOST, "has a host name longer than 253 characters");
    buf[len] = '\0';
    if (ends_in_number(buf, len)) {
        uint32_t v;
        if (gw_ipv4_parse(buf, len, &v) != 0)
            return fail(why, GW_URL_E_HOST,
                        "has a host that ends in a number but is not an IPv4 address");
        out->ip.family = AF_INET;
        memset(out->ip.bytes, 0, sizeof out->ip.bytes);
        out->ip.bytes[0] = (uint8_t)(v >> 24);
        out->ip.bytes[1] = (uint8_t)(v >> 16);
        out->ip.bytes[2] = (uint8_t)(v >> 8);
        out->ip.bytes[3] = (uint8_t)v;
        out->host_is_ip = 1;
        gw_addr_format(&out->ip, out->host, sizeof out->host);
        return GW_URL_OK;
    }
    int rc = check_name(buf, len, why);
    if (rc != GW_URL_OK)
        return rc;
    memcpy(out->host, buf, len + 1);
    return GW_URL_OK;
}

int gw_url_parse_host(const char *h, size_t len, struct gw_url *out)
{
    const char *why = NULL;
    int rc = parse_host(h, len, out, &why);
    if (rc != GW_URL_OK)
        out->why = why;
    return rc;
}

int gw_url_parse_port(const char *p, size_t len, int *out)
{
    if (len == 0 || len > 5)
        return GW_URL_E_PORT;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(p[i]))
            return GW_URL_E_PORT;
        v = v * 10 + (p[i] - '0');
    }
    if (v < 1 || v > 65535)
        return GW_URL_E_PORT;
    *out = v;
    return GW_URL_OK;
}

static int parse_url(const char *s, size_t len, unsigned flags, struct gw_url *out,
                     const char **why)
{
    if (len > GW_URL_MAX)
        return fail(why, GW_URL_E_TOO_LONG, NULL);
    /* WHATWG drops tabs and newlines anywhere and trims spaces: refuse them all instead. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return fail(why, GW_URL_E_SYNTAX, NULL);
    }
    size_t i = 0;
    if (len == 0 || !is_alpha(s[0]))
        return fail(why, GW_URL_E_SYNTAX, NULL);
    while (i < len &&
           (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (i >= len || s[i] != ':' || i >= sizeof out->scheme)
        return fail(why, GW_URL_E_SYNTAX, NULL);
    for (size_t k = 0; k < i; k++)
        out->scheme[k] = lower(s[k]);
    out->scheme[i] = '\0';
    out->scheme_lower = 1;
    for (size_t k = 0; k < i; k++)
        out->scheme_lower &= s[k] == out->scheme[k];
    int default_port = 0;
    if (strcmp(out->scheme, "http") == 0) {
        default_port = 80;
    } else if (strcmp(out->scheme, "https") == 0) {
        out->https = 1;
        default_port = 443;
    } else if (!(flags & GW_URL_ANY_SCHEME)) {
        return fail(why, GW_URL_E_SCHEME, NULL);
    }
    i++;
    /* Exactly "//": "http:/h", "http:h", "http:\\h" and "http:///h" are read differently by
     * different parsers. */
    if (len - i < 2 || s[i] != '/' || s[i + 1] != '/')
        return fail(why, GW_URL_E_SYNTAX, NULL);
    i += 2;
    if (i < len && (s[i] == '/' || s[i] == '\\'))
        return fail(why, GW_URL_E_SYNTAX, "has no host (a third '/' or a '\\' after \"//\")");
    size_t auth = i;
    size_t auth_end = auth;
    while (auth_end < len && s[auth_end] != '/' && s[auth_end] != '?' && s[auth_end] != '#')
        auth_end++;
    /*
     * Userinfo: refused outright, and so is any '@' before the first '/' of the path, so that
     * a parser splitting at the last '@' of "http://a?@b" or "http://a#@b" finds nothing.
     */
    const char *slash = memchr(s + auth, '/', len - auth);
    size_t upto = slash ? (size_t)(slash - s) : len;
    if (memchr(s + auth, '@', upto - auth))
        return fail(why, GW_URL_E_USERINFO, NULL);
    if (memchr(s + auth, '\\', auth_end - auth))
        return fail(why, GW_URL_E_SYNTAX, "contains a backslash");
    size_t alen = auth_end - auth;
    const char *a = s + auth;
    if (alen == 0)
        return fail(why, GW_URL_E_SYNTAX, "has no host");
    size_t hlen = alen;
    const char *port = NULL;
    size_t plen = 0;
    if (a[0] == '[') {
        const char *close = memchr(a, ']', alen);
        if (!close)
            return fail(why, GW_URL_E_HOST,
                        "has an unterminated IPv6 literal (write it like [::1])");
        hlen = (size_t)(close - a) + 1;
        if (memchr(a, '%', hlen))
            return fail(why, GW_URL_E_ZONE, NULL);
        if (hlen < alen) {
            if (a[hlen] != ':')
                return fail(why, GW_URL_E_HOST,
                            "has characters after the IPv6 literal that are not a port");
            port = a + hlen + 1;
            plen = alen - hlen - 1;
        }
    } else {
        const char *colon = memchr(a, ':', alen);
        if (colon) {
            hlen = (size_t)(colon - a);
            port = colon + 1;
            plen = alen - hlen - 1;
        }
    }
    out->port = default_port;
    if (port) {
        int rc = gw_url_parse_port(port, plen, &out->port);
        if (rc != GW_URL_OK)
            return fail(why, rc, NULL);
        out->port_given = 1;
    }
    int rc = parse_host(a, hlen, out, why);
    if (rc != GW_URL_OK)
        return rc;
    /* The rest: path, then ?query, then #fragment, as offsets into s. */
    size_t p = auth_end;
    out->path_off = p;
    while (p < len && s[p] != '?' && s[p] != '#')
        p++;
    out->path_len = p - out->path_off;
    if (p < len && s[p] == '?') {
        out->has_query = 1;
        out->query_off = ++p;
        while (p < len && s[p] != '#')
            p++;
        out->query_len = p - out->query_off;
    }
    if (p < len && s[p] == '#') {
        out->has_fragment = 1;
        out->fragment_off = p + 1;
        out->fragment_len = len - p - 1;
    }
    return GW_URL_OK;
}

int gw_url_parse(const char *s, size_t len, unsigned flags, struct gw_url *out)
{
    const char *why = NULL;
    memset(out, 0, sizeof *out);
    int rc = parse_url(s, len, flags, out, &why);
    if (rc != GW_URL_OK) {
        memset(out, 0, sizeof *out);
        out->why = why ? why : gw_url_error_text(rc);
    }
    return rc;
}

int gw_url_looks_like(const char *s, size_t len)
{
    /* Schemes a fetcher dials: "http:host" is a URL to WHATWG parsers even without "//". */
    static const char *const fetched[] = {"http",  "https", "ws",     "wss",  "ftp",
                                          "ftps",  "file",  "gopher", "dict", "ldap",
                                          "ldaps", "tftp",  "smb",    NULL};
    size_t i = 0;
    while (i < len && ((unsigned char)s[i] <= 0x20))
        i++;
    if (len - i >= 2 && (s[i] == '/' || s[i] == '\\') && (s[i + 1] == '/' || s[i + 1] == '\\'))
        return 1;
    if (i >= len || !is_alpha(s[i]))
        return 0;
    size_t start = i;
    while (i < len &&
           (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (i - start > 32 || i >= len || s[i] != ':')
        return 0;
    for (const char *const *f = fetched; *f; f++)
        if (strlen(*f) == i - start && strncasecmp(*f, s + start, i - start) == 0)
            return 1;
    return i + 1 < len && (s[i + 1] == '/' || s[i + 1] == '\\');
}

/* ---- addresses ---------------------------------------------------------------------------- */

void gw_addr_format(const struct gw_addr *a, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    if (!inet_ntop(a->family == AF_INET ? AF_INET : AF_INET6, a->bytes, out, (socklen_t)outlen))
        out[0] = '\0';
}
