#include "telemetry/trace_context.h"

#include <string.h>

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is invalid in traceparent */
}

/* Decodes 2*n lower-case hex characters into n bytes; -1 on any other character. */
static int hex_decode(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

int tc_traceparent_parse(const char *s, size_t n, struct tc_parent *out)
{
    uint8_t version;
    if (!s || n < TC_TRACEPARENT_LEN || n > TC_MAX_TRACEPARENT)
        return -1;
    if (hex_decode(s, &version, 1) != 0 || version == 0xff)
        return -1;
    if (version == 0 && n != TC_TRACEPARENT_LEN)
        return -1;
    if (n > TC_TRACEPARENT_LEN && s[TC_TRACEPARENT_LEN] != '-')
        return -1;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        return -1;
    struct tc_parent p;
    if (hex_decode(s + 3, p.trace_id, 16) != 0 || hex_decode(s + 36, p.span_id, 8) != 0 ||
        hex_decode(s + 53, &p.flags, 1) != 0)
        return -1;
    if (all_zero(p.trace_id, 16) || all_zero(p.span_id, 8))
        return -1;
    *out = p;
    return 0;
}

static void hex_encode(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
}

void tc_traceparent_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags,
                           char out[TC_TRACEPARENT_LEN + 1])
{
    memcpy(out, "00-", 3);
    hex_encode(trace_id, 16, out + 3);
    out[35] = '-';
    hex_encode(span_id, 8, out + 36);
    out[52] = '-';
    hex_encode(&flags, 1, out + 53);
    out[55] = '\0';
}

/* ---- tracestate ---- */

static int ows(char c)
{
    return c == ' ' || c == '\t';
}

static int lcalpha(char c)
{
    return c >= 'a' && c <= 'z';
}

static int digit(char c)
{
    return c >= '0' && c <= '9';
}

static int key_char(char c)
{
    return lcalpha(c) || digit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

/* simple-key = lcalpha 0*255 key_char; multi = (lcalpha|digit) 0*240 key_char "@" lcalpha 0*13. */
static int tracestate_key_ok(const char *k, size_t n)
{
    const char *at = memchr(k, '@', n);
    if (!at) {
        if (n < 1 || n > 256 || !lcalpha(k[0]))
            return 0;
        for (size_t i = 1; i < n; i++)
            if (!key_char(k[i]))
                return 0;
        return 1;
    }
    size_t tn = (size_t)(at - k), sn = n - tn - 1;
    if (tn < 1 || tn > 241 || sn < 1 || sn > 14)
        return 0;
    if (!lcalpha(k[0]) && !digit(k[0]))
        return 0;
    for (size_t i = 1; i < tn; i++)
        if (!key_char(k[i]))
            return 0;
    if (!lcalpha(at[1]))
        return 0;
    for (size_t i = 2; i <= sn; i++)
        if (!key_char(at[i]))
            return 0;
    return 1;
}

/* value = 0*255 chr nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E. */
static int tracestate_value_ok(const char *v, size_t n)
{
    if (n < 1 || n > 256 || v[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
            return 0;
    }
    return 1;
}

int tc_tracestate_check(const char *s, size_t n)
{
    struct {
        const char *p;
        size_t n;
    } keys[TC_MAX_TRACESTATE_MEMBERS];
    size_t members = 0, i = 0;
    if (!s || n > TC_MAX_TRACESTATE)
        return -1;
    while (i <= n) {
        size_t end = i;
        while (end < n && s[end] != ',')
            end++;
        size_t a = i, b = end;
        while (a < b && ows(s[a]))
            a++;
        while (b > a && ows(s[b - 1]))
            b--;
        if (b > a) {
            const char *eq = memchr(s + a, '=', b - a);
            if (!eq)
                return -1;
            size_t kn = (size_t)(eq - (s + a));
            if (!tracestate_key_ok(s + a, kn) ||
                !tracestate_value_ok(eq + 1, (size_t)(s + b - (eq + 1))))
                return -1;
            if (members == TC_MAX_TRACESTATE_MEMBERS)
                return -1;
            for (size_t k = 0; k < members; k++)
                if (keys[k].n == kn && memcmp(keys[k].p, s + a, kn) == 0)
                    return -1;
            keys[members].p = s + a;
            keys[members].n = kn;
            members++;
        }
        i = end + 1;
    }
    return (int)members;
}

/* ---- baggage ---- */

/* RFC 9110 tchar. */
static int token_char(char c)
{
    if (lcalpha(c) || digit(c) || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E */
static int baggage_octet(char ch)
{
    unsigned char c = (unsigned char)ch;
    return c >= 0x21 && c <= 0x7e && c != '"' && c != ',' && c != ';' && c != '\\';
}

static int allowed(const char *k, size_t n, const char *const *allow, size_t n_allow)
{
    for (size_t i = 0; i < n_allow; i++)
        if (strlen(allow[i]) == n && memcmp(allow[i], k, n) == 0)
            return 1;
    return 0;
}

/*
 * One list member s[a, b) (already without surrounding OWS): key OWS "=" OWS value
 * *(OWS ";" OWS property). Sets the key and value slices. Returns 0 or -1.
 */
static int baggage_member(const char *s, size_t a, size_t b, size_t *ka, size_t *kb, size_t *va,
                          size_t *vb)
{
    size_t i = a;
    while (i < b && token_char(s[i]))
        i++;
    if (i == a)
        return -1;
    *ka = a;
    *kb = i;
    while (i < b && ows(s[i]))
        i++;
    if (i == b || s[i] != '=')
        return -1;
    i++;
    while (i < b && ows(s[i]))
        i++;
    *va = i;
    while (i < b && baggage_octet(s[i]))
        i++;
    *vb = i;
    while (i < b && ows(s[i]))
        i++;
    /* Properties: each "; key" or "; key = value", checked but not forwarded. */
    while (i < b) {
        if (s[i] != ';')
            return -1;
        i++;
        while (i < b && ows(s[i]))
            i++;
        size_t pk = i;
        while (i < b && token_char(s[i]))
            i++;
        if (i == pk)
            return -1;
        while (i < b && ows(s[i]))
            i++;
        if (i < b && s[i] == '=') {
            i++;
            while (i < b && ows(s[i]))
                i++;
            while (i < b && baggage_octet(s[i]))
                i++;
            while (i < b && ows(s[i]))
                i++;
        }
    }
    return 0;
}

int tc_baggage_filter(const char *s, size_t n, const char *const *allow, size_t n_allow, char *out,
                      size_t cap)
{
    size_t used = 0, members = 0, i = 0;
    int kept = 0;
    out[0] = '\0';
    if (!s || n > TC_MAX_BAGGAGE_IN)
        return -1;
    /* First pass: the whole value must parse; only then is anything kept. */
    for (int pass = 0; pass < 2; pass++) {
        i = 0;
        members = 0;
        while (i <= n) {
            size_t end = i;
            while (end < n && s[end] != ',')
                end++;
            size_t a = i, b = end;
            while (a < b && ows(s[a]))
                a++;
            while (b > a && ows(s[b - 1]))
                b--;
            i = end + 1;
            if (a == b) {
                if (n == 0)
                    break;
                return -1; /* an empty member is malformed */
            }
            size_t ka, kb, va, vb;
            if (baggage_member(s, a, b, &ka, &kb, &va, &vb) != 0)
                return -1;
            if (++members > TC_MAX_BAGGAGE_MEMBERS)
                return -1;
            if (pass == 0 || !allowed(s + ka, kb - ka, allow, n_allow))
                continue;
            size_t need = (used ? 1 : 0) + (kb - ka) + 1 + (vb - va);
            if (used + need + 1 > cap)
                continue;
            if (used)
                out[used++] = ',';
            memcpy(out + used, s + ka, kb - ka);
            used += kb - ka;
            out[used++] = '=';
            memcpy(out + used, s + va, vb - va);
            used += vb - va;
            out[used] = '\0';
            kept++;
        }
    }
    return kept;
}

int tc_ratio_keeps(const uint8_t trace_id[16], double sample)
{
    if (sample >= 1.0)
        return 1;
    if (sample <= 0.0)
        return 0;
    /* The trace id's last 8 bytes as a number, compared with the ratio of 2^64. */
    uint64_t v = 0;
    for (int i = 8; i < 16; i++)
        v = v << 8 | trace_id[i];
    return (double)(v >> 11) < sample * (double)(UINT64_C(1) << 53);
}
