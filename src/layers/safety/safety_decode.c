/*
 * safety_decode: values whose text is not written out plainly. A string that is wholly base64
 * and decodes to UTF-8 text is scanned a second time as that text (and, when a span there is
 * redacted, re-encoded the way it came); a JSON number is scanned as its decimal text.
 *
 * What counts as base64: the standard alphabet ('+', '/') or the URL-safe one ('-', '_'), not
 * both; padding with '=' only at the end and only to complete the last group, or none;
 * whitespace (line breaks of MIME, spaces) anywhere; optionally after a "data:...;base64,"
 * prefix. A last group of one character is not base64. Bits left over in the last group are
 * ignored, as decoders do. What counts as text: valid UTF-8 (no overlong forms, surrogates or
 * code points beyond U+10FFFF) with no control characters but tab, line feed and carriage
 * return, at least SAFETY_B64_MIN_TEXT bytes. Binary data fails on its first bytes, so a large
 * image costs a few bytes of decoding.
 */
#include "layers/safety/safety-int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base64.h"
#include "lib/buf.h"

/* 0..63, or -1. *alphabet: 0 not known yet, 1 standard, 2 URL-safe; mixing them fails. */
static int b64_value(unsigned char c, int *alphabet)
{
    int d = gw_b64_alnum(c);
    if (d >= 0)
        return d;
    int a, v;
    switch (c) {
    case '+':
        a = 1, v = 62;
        break;
    case '/':
        a = 1, v = 63;
        break;
    case '-':
        a = 2, v = 62;
        break;
    case '_':
        a = 2, v = 63;
        break;
    default:
        return -1;
    }
    if (*alphabet && *alphabet != a)
        return -1;
    *alphabet = a;
    return v;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* UTF-8 text checked a byte at a time: continuation bytes still expected and the range the
 * next one must be in (which excludes overlong forms, surrogates and > U+10FFFF). */
struct utf8_state {
    unsigned need;
    unsigned char lo, hi;
};

static int utf8_push(struct utf8_state *u, unsigned char c)
{
    if (u->need) {
        if (c < u->lo || c > u->hi)
            return -1;
        u->need--;
        u->lo = 0x80;
        u->hi = 0xbf;
        return 0;
    }
    if (c < 0x80)
        return (c >= 0x20 && c != 0x7f) || c == '\t' || c == '\n' || c == '\r' ? 0 : -1;
    u->lo = 0x80;
    u->hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        u->need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        u->need = 2;
        if (c == 0xe0)
            u->lo = 0xa0;
        else if (c == 0xed)
            u->hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        u->need = 3;
        if (c == 0xf0)
            u->lo = 0x90;
        else if (c == 0xf4)
            u->hi = 0x8f;
    } else {
        return -1;
    }
    return 0;
}

/* The length of a "data:<type>[;params];base64," prefix (bounded), or 0. */
static size_t data_url_prefix(const char *s, size_t len)
{
    if (len < 13 || memcmp(s, "data:", 5) != 0)
        return 0;
    size_t lim = len < 256 ? len : 256;
    for (size_t i = 5; i + 8 <= lim; i++) {
        if (s[i] == ',')
            return 0;
        if (memcmp(s + i, ";base64,", 8) == 0)
            return i + 8;
    }
    return 0;
}

/*
 * Decodes s[0, len) into out (NULL: only checks). Returns the number of bytes, or -1 when it
 * is not base64 of text. *alphabet and *padded describe the form.
 */
static long decode(const char *s, size_t len, unsigned char *out, int *alphabet, int *padded)
{
    struct utf8_state u = {0, 0x80, 0xbf};
    unsigned acc = 0;
    int bits = 0;
    size_t chars = 0, pad = 0;
    long n = 0;
    *alphabet = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_space(c))
            continue;
        if (c == '=') {
            if (++pad > 2)
                return -1;
            continue;
        }
        if (pad)
            return -1;
        int v = b64_value(c, alphabet);
        if (v < 0)
            return -1;
        chars++;
        acc = ((acc << 6) | (unsigned)v) & 0xffffu;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            unsigned char b = (unsigned char)(acc >> bits);
            if (utf8_push(&u, b) != 0)
                return -1;
            if (out)
                out[n] = b;
            n++;
        }
    }
    if (u.need || chars % 4 == 1 || (pad && (chars + pad) % 4 != 0))
        return -1;
    *padded = pad > 0;
    return n;
}

int safety_base64_text(const char *s, size_t len, struct safety_b64 *out)
{
    memset(out, 0, sizeof *out);
    size_t prefix = data_url_prefix(s, len);
    const char *body = s + prefix;
    size_t blen = len - prefix;
    /* Fewer characters cannot hold SAFETY_B64_MIN_TEXT bytes. */
    if (blen < (SAFETY_B64_MIN_TEXT * 4 + 2) / 3)
        return 0;
    int alphabet = 0, padded = 0;
    long n = decode(body, blen, NULL, &alphabet, &padded);
    if (n < SAFETY_B64_MIN_TEXT)
        return 0;
    unsigned char *text = malloc((size_t)n + 1);
    if (!text)
        return -1;
    if (decode(body, blen, text, &alphabet, &padded) != n) {
        free(text);
        return 0;
    }
    text[n] = '\0';
    out->text = (char *)text;
    out->len = (size_t)n;
    out->prefix = prefix;
    out->url = alphabet == 2;
    out->padded = padded;
    return 1;
}

int safety_base64_encode(struct gw_buf *b, const struct safety_b64 *form, const char *s, size_t len)
{
    const char *alphabet = form->url ? GW_B64_URL_DIGITS : GW_B64_STD_DIGITS;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)u[i] << 16;
        size_t left = len - i;
        if (left > 1)
            v |= (unsigned)u[i + 1] << 8;
        if (left > 2)
            v |= u[i + 2];
        char q[4] = {alphabet[(v >> 18) & 63], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63],
                     alphabet[v & 63]};
        size_t k = left > 2 ? 4 : left + 1;
        if (gw_buf_append(b, q, k) != 0)
            return -1;
        if (k < 4 && form->padded && gw_buf_append(b, "==", 4 - k) != 0)
            return -1;
    }
    return 0;
}

/*
 * Most reals are written with a few decimals (12.5, 48.8566): the fewest decimals d <= 6 for
 * which the integer r = v * 10^d, divided by 10^d, gives v back exactly (IEEE division rounds
 * correctly, as strtod does, so the decimal text reads back as v). Returns the length, or 0
 * when there is none (then printf decides).
 */
static int short_decimal(double v, char *buf, size_t cap)
{
    static const double pow10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
    double a = fabs(v);
    if (!(a < 9e9) || cap < 32)
        return 0;
    for (int d = 1; d <= 6; d++) {
        double r = nearbyint(a * pow10[d]);
        if (r / pow10[d] != a)
            continue;
        uint64_t x = (uint64_t)r;
        char digits[24];
        int n = 0;
        do {
            digits[n++] = (char)('0' + x % 10);
            x /= 10;
        } while (x || n <= d);
        int k = 0;
        if (v < 0)
            buf[k++] = '-';
        for (int i = n - 1; i >= 0; i--) {
            buf[k++] = digits[i];
            if (i == d)
                buf[k++] = '.';
        }
        buf[k] = '\0';
        return k;
    }
    return 0;
}

size_t safety_number_text(const json_t *n, char *buf, size_t cap)
{
    int k;
    if (json_is_integer(n)) {
        char d[21];
        size_t dl = gw_fmt_i64(d, json_integer_value(n));
        if (dl < cap)
            memcpy(buf, d, dl);
        k = (int)dl; /* too long for buf: refused below */
    } else if (json_is_real(n)) {
        /* Integral values in full (4111111111111111, however it was written: %g would
         * switch to an exponent); others in the shortest of 15, 16 or 17 digits that reads
         * back as the same double. */
        double v = json_real_value(n);
        if (isfinite(v) && v == floor(v) && fabs(v) < 1e19) {
            k = snprintf(buf, cap, "%.0f", v);
        } else if ((k = short_decimal(v, buf, cap)) > 0) {
            /* up to six decimals, without printf */
        } else {
            k = 0;
            for (int p = 15; p <= 17; p++) {
                k = snprintf(buf, cap, "%.*g", p, v);
                if (k > 0 && (size_t)k < cap && strtod(buf, NULL) == v)
                    break;
            }
        }
    } else {
        k = 0;
    }
    if (k < 0 || (size_t)k >= cap)
        k = 0;
    buf[k] = '\0';
    return (size_t)k;
}
