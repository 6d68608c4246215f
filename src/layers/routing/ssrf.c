/*
 * ssrf: strict URL parsing, host canonicalization, address classes and the allow list.
 * See ssrf.h for the rules; the comments here say why each one exists.
 */
#include "layers/routing/ssrf.h"

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

const char *ssrf_error_text(int err)
{
    switch (err) {
    case SSRF_OK:
        return "is a valid URL";
    case SSRF_E_TOO_LONG:
        return "is too long";
    case SSRF_E_SYNTAX:
        return "is not a well-formed URL";
    case SSRF_E_SCHEME:
        return "does not use http or https";
    case SSRF_E_USERINFO:
        return "has a userinfo part (user@host)";
    case SSRF_E_HOST:
        return "has a host that is neither a valid name nor an IP address";
    case SSRF_E_PORT:
        return "has a port that is not a number from 1 to 65535";
    case SSRF_E_ENCODED:
        return "has a percent-encoded or non-ASCII host";
    case SSRF_E_IDNA:
        return "has an internationalized host label that is not clean punycode";
    case SSRF_E_ZONE:
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

int ssrf_ipv4_parse(const char *s, size_t len, uint32_t *out)
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
static int check_name(const char *h, size_t len)
{
    if (len == 0 || len > SSRF_MAX_HOST)
        return SSRF_E_HOST;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && h[i] != '.') {
            char c = h[i];
            if (!(is_digit(c) || (c >= 'a' && c <= 'z') || c == '-' || c == '_'))
                return SSRF_E_HOST;
            continue;
        }
        size_t ll = i - start;
        if (ll == 0 || ll > 63)
            return SSRF_E_HOST;
        if (h[start] == '-' || h[i - 1] == '-')
            return SSRF_E_HOST;
        if (ll >= 4 && memcmp(h + start, "xn--", 4) == 0 && check_a_label(h + start, ll) != 0)
            return SSRF_E_IDNA;
        /* "ab--": reserved for future ACE prefixes; none is safe to guess at. */
        if (ll >= 4 && h[start + 2] == '-' && h[start + 3] == '-' &&
            memcmp(h + start, "xn", 2) != 0)
            return SSRF_E_IDNA;
        start = i + 1;
    }
    return SSRF_OK;
}

/* ---- the URL ------------------------------------------------------------------------------ */

static int parse_host(const char *h, size_t len, struct ssrf_url *out)
{
    char buf[SSRF_MAX_HOST + 2];
    if (len == 0)
        return SSRF_E_SYNTAX;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c == '%' || c >= 0x80)
            return SSRF_E_ENCODED;
    }
    if (h[0] == '[') {
        if (len < 3 || h[len - 1] != ']')
            return SSRF_E_HOST;
        const char *in = h + 1;
        size_t il = len - 2;
        if (il > 45)
            return SSRF_E_HOST;
        if (in[0] == 'v' || in[0] == 'V')
            return SSRF_E_HOST; /* IPvFuture */
        memcpy(buf, in, il);
        buf[il] = '\0';
        if (inet_pton(AF_INET6, buf, out->ip.bytes) != 1)
            return SSRF_E_HOST;
        out->ip.family = AF_INET6;
        out->host_is_ip = 1;
        ssrf_addr_format(&out->ip, out->host, sizeof out->host);
        return SSRF_OK;
    }
    if (len > SSRF_MAX_HOST + 1)
        return SSRF_E_HOST;
    for (size_t i = 0; i < len; i++)
        buf[i] = lower(h[i]);
    /* One trailing dot names the same host (an absolute name); two are an empty label. */
    if (buf[len - 1] == '.')
        len--;
    if (len == 0 || len > SSRF_MAX_HOST)
        return SSRF_E_HOST;
    buf[len] = '\0';
    if (ends_in_number(buf, len)) {
        uint32_t v;
        if (ssrf_ipv4_parse(buf, len, &v) != 0)
            return SSRF_E_HOST;
        out->ip.family = AF_INET;
        memset(out->ip.bytes, 0, sizeof out->ip.bytes);
        out->ip.bytes[0] = (uint8_t)(v >> 24);
        out->ip.bytes[1] = (uint8_t)(v >> 16);
        out->ip.bytes[2] = (uint8_t)(v >> 8);
        out->ip.bytes[3] = (uint8_t)v;
        out->host_is_ip = 1;
        ssrf_addr_format(&out->ip, out->host, sizeof out->host);
        return SSRF_OK;
    }
    int rc = check_name(buf, len);
    if (rc != SSRF_OK)
        return rc;
    memcpy(out->host, buf, len + 1);
    return SSRF_OK;
}

static int parse_port(const char *p, size_t len, int *out)
{
    if (len == 0 || len > 5)
        return SSRF_E_PORT;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(p[i]))
            return SSRF_E_PORT;
        v = v * 10 + (p[i] - '0');
    }
    if (v < 1 || v > 65535)
        return SSRF_E_PORT;
    *out = v;
    return SSRF_OK;
}

int ssrf_url_parse(const char *s, size_t len, struct ssrf_url *out)
{
    memset(out, 0, sizeof *out);
    if (len > SSRF_MAX_URL)
        return SSRF_E_TOO_LONG;
    /* WHATWG drops tabs and newlines anywhere and trims spaces: refuse them all instead. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return SSRF_E_SYNTAX;
    }
    size_t i = 0;
    if (len == 0 || !is_alpha(s[0]))
        return SSRF_E_SYNTAX;
    while (i < len &&
           (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
        i++;
    if (i >= len || s[i] != ':' || i > 32)
        return SSRF_E_SYNTAX;
    if (i == 4 && strncasecmp(s, "http", 4) == 0)
        out->https = 0;
    else if (i == 5 && strncasecmp(s, "https", 5) == 0)
        out->https = 1;
    else
        return SSRF_E_SCHEME;
    i++;
    /* Exactly "//": "http:/h", "http:h", "http:\\h" and "http:///h" are read differently by
     * different parsers. */
    if (len - i < 2 || s[i] != '/' || s[i + 1] != '/')
        return SSRF_E_SYNTAX;
    i += 2;
    if (i < len && (s[i] == '/' || s[i] == '\\'))
        return SSRF_E_SYNTAX;
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
        return SSRF_E_USERINFO;
    if (memchr(s + auth, '\\', auth_end - auth))
        return SSRF_E_SYNTAX;
    size_t alen = auth_end - auth;
    const char *a = s + auth;
    if (alen == 0)
        return SSRF_E_SYNTAX;
    size_t hlen = alen;
    const char *port = NULL;
    size_t plen = 0;
    if (a[0] == '[') {
        const char *close = memchr(a, ']', alen);
        if (!close)
            return SSRF_E_HOST;
        hlen = (size_t)(close - a) + 1;
        if (memchr(a, '%', hlen))
            return SSRF_E_ZONE;
        if (hlen < alen) {
            if (a[hlen] != ':')
                return SSRF_E_HOST;
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
    out->port = out->https ? 443 : 80;
    if (port) {
        int rc = parse_port(port, plen, &out->port);
        if (rc != SSRF_OK)
            return rc;
    }
    int rc = parse_host(a, hlen, out);
    if (rc != SSRF_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

int ssrf_looks_like_url(const char *s, size_t len)
{
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
    if (i - start > 32 || i + 1 >= len || s[i] != ':')
        return 0;
    return s[i + 1] == '/' || s[i + 1] == '\\';
}

/* ---- addresses ---------------------------------------------------------------------------- */

static void set_v4(struct ssrf_addr *out, const uint8_t *b)
{
    memset(out, 0, sizeof *out);
    out->family = AF_INET;
    memcpy(out->bytes, b, 4);
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

void ssrf_addr_canonical(const struct ssrf_addr *in, struct ssrf_addr *out)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t siit[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    const uint8_t *b = in->bytes;
    if (in->family != AF_INET6) {
        *out = *in;
        return;
    }
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, siit, 12) == 0 || memcmp(b, nat64, 12) == 0) {
        set_v4(out, b + 12);
        return;
    }
    /* IPv4-compatible (deprecated) ::a.b.c.d, but not :: and ::1 themselves. */
    if (all_zero(b, 12) && !(all_zero(b + 12, 3) && b[15] <= 1)) {
        set_v4(out, b + 12);
        return;
    }
    if (b[0] == 0x20 && b[1] == 0x02) {
        set_v4(out, b + 2);
        return;
    }
    *out = *in;
}

static int v4_in(uint32_t a, uint32_t net, int bits)
{
    uint32_t mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
    return (a & mask) == net;
}

static enum ssrf_class classify_v4(const uint8_t *b)
{
    uint32_t a = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    static const struct {
        uint32_t net;
        int bits;
        enum ssrf_class cls;
    } table[] = {
        {0x00000000, 8, SSRF_UNSPECIFIED},    {0x0a000000, 8, SSRF_PRIVATE},
        {0x64400000, 10, SSRF_CGNAT},         {0x7f000000, 8, SSRF_LOOPBACK},
        {0xa9fe0000, 16, SSRF_LINK_LOCAL},    {0xac100000, 12, SSRF_PRIVATE},
        {0xc0000000, 24, SSRF_RESERVED},      {0xc0000200, 24, SSRF_DOCUMENTATION},
        {0xc0586300, 24, SSRF_RESERVED},      {0xc0a80000, 16, SSRF_PRIVATE},
        {0xc6120000, 15, SSRF_BENCHMARK},     {0xc6336400, 24, SSRF_DOCUMENTATION},
        {0xcb007100, 24, SSRF_DOCUMENTATION}, {0xe0000000, 4, SSRF_MULTICAST},
        {0xffffffff, 32, SSRF_BROADCAST},     {0xf0000000, 4, SSRF_RESERVED},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (v4_in(a, table[i].net, table[i].bits))
            return table[i].cls;
    return SSRF_PUBLIC;
}

static int v6_prefix(const uint8_t *b, const uint8_t *net, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(b, net, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (b[full] & mask) == (net[full] & mask);
}

static enum ssrf_class classify_v6(const uint8_t *b)
{
    static const uint8_t zero[16] = {0};
    static const uint8_t one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    if (memcmp(b, zero, 16) == 0)
        return SSRF_UNSPECIFIED;
    if (memcmp(b, one, 16) == 0)
        return SSRF_LOOPBACK;
    if (b[0] == 0xff)
        return SSRF_MULTICAST;
    if ((b[0] & 0xfe) == 0xfc)
        return SSRF_PRIVATE; /* unique local, fd00:ec2::254 among them */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return SSRF_LINK_LOCAL;
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
        return SSRF_PRIVATE; /* site-local, deprecated but still routed on some networks */
    static const uint8_t nat64_local[16] = {0, 0x64, 0xff, 0x9b, 0, 1};
    if (v6_prefix(b, nat64_local, 48))
        return SSRF_PRIVATE;
    /* Only 2000::/3 is global unicast; everything else is reserved or special. */
    if ((b[0] & 0xe0) != 0x20)
        return SSRF_RESERVED;
    static const uint8_t teredo[16] = {0x20, 0x01, 0, 0};
    static const uint8_t bench[16] = {0x20, 0x01, 0, 0x02, 0, 0};
    static const uint8_t doc[16] = {0x20, 0x01, 0x0d, 0xb8};
    static const uint8_t doc2[16] = {0x3f, 0xff};
    static const uint8_t ietf[16] = {0x20, 0x01};
    if (v6_prefix(b, teredo, 32))
        return SSRF_TUNNEL;
    if (v6_prefix(b, bench, 48))
        return SSRF_BENCHMARK;
    if (v6_prefix(b, doc, 32) || v6_prefix(b, doc2, 20))
        return SSRF_DOCUMENTATION;
    if (v6_prefix(b, ietf, 23))
        return SSRF_RESERVED;
    return SSRF_PUBLIC;
}

enum ssrf_class ssrf_classify(const struct ssrf_addr *a)
{
    struct ssrf_addr c;
    ssrf_addr_canonical(a, &c);
    if (c.family == AF_INET)
        return classify_v4(c.bytes);
    if (c.family == AF_INET6)
        return classify_v6(c.bytes);
    return SSRF_RESERVED;
}

const char *ssrf_class_name(enum ssrf_class c)
{
    static const char *const names[SSRF_CLASS_COUNT] = {
        [SSRF_PUBLIC] = "public",          [SSRF_UNSPECIFIED] = "unspecified",
        [SSRF_LOOPBACK] = "loopback",      [SSRF_PRIVATE] = "private",
        [SSRF_LINK_LOCAL] = "link-local",  [SSRF_CGNAT] = "shared (CGNAT)",
        [SSRF_MULTICAST] = "multicast",    [SSRF_BROADCAST] = "broadcast",
        [SSRF_RESERVED] = "reserved",      [SSRF_DOCUMENTATION] = "documentation",
        [SSRF_BENCHMARK] = "benchmarking", [SSRF_TUNNEL] = "Teredo tunnel",
    };
    return (unsigned)c < SSRF_CLASS_COUNT ? names[c] : "unknown";
}

void ssrf_addr_format(const struct ssrf_addr *a, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    if (!inet_ntop(a->family == AF_INET ? AF_INET : AF_INET6, a->bytes, out, (socklen_t)outlen))
        out[0] = '\0';
}

int ssrf_name_is_localhost(const char *host)
{
    size_t len = strlen(host);
    static const char suffix[] = ".localhost";
    if (strcmp(host, "localhost") == 0)
        return 1;
    return len > sizeof suffix - 1 && strcmp(host + len - (sizeof suffix - 1), suffix) == 0;
}

/* ---- the allow list ---------------------------------------------------------------------- */

static int addr_in_cidr(const struct ssrf_addr *a, const struct ssrf_addr *net, int bits)
{
    if (a->family != net->family)
        return 0;
    return v6_prefix(a->bytes, net->bytes, bits);
}

int ssrf_allow_parse(const char *text, struct ssrf_allow_entry *out, const char **why)
{
    char buf[SSRF_MAX_HOST + 16];
    size_t len = strlen(text);
    memset(out, 0, sizeof *out);
    if (len == 0 || len >= sizeof buf) {
        *why = "is empty or too long";
        return -1;
    }
    memcpy(buf, text, len + 1);
    const char *slash = strchr(buf, '/');
    if (slash) {
        size_t alen = (size_t)(slash - buf);
        buf[alen] = '\0';
        const char *bits = slash + 1;
        struct ssrf_addr a = {0};
        int max;
        if (inet_pton(AF_INET, buf, a.bytes) == 1) {
            a.family = AF_INET;
            max = 32;
        } else if (inet_pton(AF_INET6, buf, a.bytes) == 1) {
            a.family = AF_INET6;
            max = 128;
        } else {
            *why = "is not a CIDR range (write it like 10.0.0.0/8 or fd00::/8)";
            return -1;
        }
        int v = 0;
        size_t bl = strlen(bits);
        if (bl == 0 || bl > 3) {
            *why = "has a prefix length that is not a number";
            return -1;
        }
        for (size_t i = 0; i < bl; i++) {
            if (!is_digit(bits[i])) {
                *why = "has a prefix length that is not a number";
                return -1;
            }
            v = v * 10 + (bits[i] - '0');
        }
        if (v > max) {
            *why = "has a prefix length larger than the address";
            return -1;
        }
        /* Host bits set ("10.0.0.1/8") usually mean a typo; say so rather than guess. */
        for (int bit = v; bit < max; bit++)
            if (a.bytes[bit / 8] & (0x80 >> (bit % 8))) {
                *why = "has bits set after the prefix length (write the network address, like "
                       "10.0.0.0/8)";
                return -1;
            }
        out->kind = SSRF_ALLOW_CIDR;
        out->addr = a;
        out->prefix = v;
        return 0;
    }
    /* A bare address: that one address, any port. */
    struct ssrf_addr a = {0};
    if (inet_pton(AF_INET, buf, a.bytes) == 1 || inet_pton(AF_INET6, buf, a.bytes) == 1) {
        a.family = strchr(buf, ':') ? AF_INET6 : AF_INET;
        out->kind = SSRF_ALLOW_CIDR;
        ssrf_addr_canonical(&a, &out->addr);
        out->prefix = out->addr.family == AF_INET ? 32 : 128;
        return 0;
    }
    /* host:port, [v6]:port */
    char *colon = strrchr(buf, ':');
    if (!colon) {
        *why = "needs a port (write host:port, like 127.0.0.1:9001), or a CIDR range";
        return -1;
    }
    *colon = '\0';
    int port;
    if (parse_port(colon + 1, strlen(colon + 1), &port) != SSRF_OK) {
        *why = "has a port that is not a number from 1 to 65535";
        return -1;
    }
    char *host = buf;
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        host++;
        if (inet_pton(AF_INET6, host, a.bytes) != 1) {
            *why = "has an invalid IPv6 address";
            return -1;
        }
        a.family = AF_INET6;
    } else if (inet_pton(AF_INET, host, a.bytes) == 1) {
        a.family = AF_INET;
    } else {
        struct ssrf_url u;
        memset(&u, 0, sizeof u);
        int rc = parse_host(host, hl, &u);
        if (rc != SSRF_OK || u.host_is_ip) {
            *why = u.host_is_ip ? "has an address that is not a dotted quad (write 127.0.0.1)"
                                : "has a host that is neither a name nor an address";
            return -1;
        }
        out->kind = SSRF_ALLOW_NAME_PORT;
        out->port = port;
        memcpy(out->name, u.host, sizeof out->name);
        return 0;
    }
    out->kind = SSRF_ALLOW_ADDR_PORT;
    ssrf_addr_canonical(&a, &out->addr);
    out->port = port;
    return 0;
}

void ssrf_allow_free(struct ssrf_allow *a)
{
    if (!a)
        return;
    free(a->entries);
    a->entries = NULL;
    a->n = 0;
}

int ssrf_addr_allowed(const struct ssrf_allow *allow, const char *host, int port,
                      const struct ssrf_addr *addr, enum ssrf_class *cls)
{
    struct ssrf_addr c;
    ssrf_addr_canonical(addr, &c);
    enum ssrf_class k = ssrf_classify(&c);
    if (cls)
        *cls = k;
    if (k == SSRF_PUBLIC)
        return 1;
    /* Connecting to these is never what an allow entry meant (0.0.0.0 reaches this host). */
    if (k == SSRF_UNSPECIFIED || k == SSRF_MULTICAST || k == SSRF_BROADCAST)
        return 0;
    for (size_t i = 0; allow && i < allow->n; i++) {
        const struct ssrf_allow_entry *e = &allow->entries[i];
        switch (e->kind) {
        case SSRF_ALLOW_CIDR:
            if (addr_in_cidr(&c, &e->addr, e->prefix))
                return 1;
            break;
        case SSRF_ALLOW_ADDR_PORT:
            if (port == e->port && addr_in_cidr(&c, &e->addr, c.family == AF_INET ? 32 : 128))
                return 1;
            break;
        case SSRF_ALLOW_NAME_PORT:
            if (host && port == e->port && strcmp(host, e->name) == 0)
                return 1;
            break;
        }
    }
    return 0;
}
