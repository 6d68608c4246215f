#include "layers/audit/audit_canon.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int audit_canon_number(double d, char *out, size_t outlen)
{
    if (isnan(d) || isinf(d) || outlen < 32)
        return -1;
    if (d == 0) {
        /* -0 prints as 0 in ECMAScript. */
        out[0] = '0';
        out[1] = '\0';
        return 1;
    }
    size_t o = 0;
    if (d < 0) {
        out[o++] = '-';
        d = -d;
    }
    /*
     * Shortest digit string that parses back to the same double. printf's %e rounds
     * correctly, so the first precision that round-trips also gives the digits nearest the
     * value, which is what ECMAScript asks for when several shortest strings exist.
     */
    char tmp[40];
    int prec;
    for (prec = 0; prec < 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    if (prec == 17)
        snprintf(tmp, sizeof tmp, "%.*e", 16, d);
    char digits[20];
    int k = 0;
    const char *p = tmp;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[k++] = *p;
    int exp10 = atoi(p + 1);
    while (k > 1 && digits[k - 1] == '0')
        k--;
    int n = exp10 + 1; /* value = 0.digits * 10^n */
    if (k <= n && n <= 21) {
        memcpy(out + o, digits, (size_t)k);
        o += (size_t)k;
        for (int i = 0; i < n - k; i++)
            out[o++] = '0';
    } else if (0 < n && n <= 21) {
        memcpy(out + o, digits, (size_t)n);
        o += (size_t)n;
        out[o++] = '.';
        memcpy(out + o, digits + n, (size_t)(k - n));
        o += (size_t)(k - n);
    } else if (-6 < n && n <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -n; i++)
            out[o++] = '0';
        memcpy(out + o, digits, (size_t)k);
        o += (size_t)k;
    } else {
        out[o++] = digits[0];
        if (k > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, (size_t)(k - 1));
            o += (size_t)(k - 1);
        }
        int e = n - 1;
        o += (size_t)snprintf(out + o, outlen - o, "e%c%d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
    out[o] = '\0';
    return (int)o;
}

/*
 * Decodes one UTF-8 sequence at s[*i] (validated strictly: no overlongs, no surrogates, at
 * most U+10FFFF). Returns the code point, or -1.
 */
static int32_t utf8_next(const unsigned char *s, size_t len, size_t *i)
{
    unsigned char c = s[*i];
    int32_t cp;
    size_t need;
    if (c < 0x80) {
        (*i)++;
        return c;
    } else if ((c & 0xe0) == 0xc0) {
        cp = c & 0x1f;
        need = 1;
    } else if ((c & 0xf0) == 0xe0) {
        cp = c & 0x0f;
        need = 2;
    } else if ((c & 0xf8) == 0xf0) {
        cp = c & 0x07;
        need = 3;
    } else {
        return -1;
    }
    if (*i + need >= len)
        return -1;
    for (size_t j = 1; j <= need; j++) {
        unsigned char cc = s[*i + j];
        if ((cc & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (cc & 0x3f);
    }
    static const int32_t min_for[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_for[need] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *i += need + 1;
    return cp;
}

/* Next UTF-16 code unit of a UTF-8 string; `pending` holds a low surrogate still to give. */
static int32_t utf16_next(const unsigned char *s, size_t len, size_t *i, int32_t *pending)
{
    if (*pending) {
        int32_t u = *pending;
        *pending = 0;
        return u;
    }
    int32_t cp = utf8_next(s, len, i);
    if (cp < 0x10000)
        return cp;
    cp -= 0x10000;
    *pending = 0xdc00 + (cp & 0x3ff);
    return 0xd800 + (cp >> 10);
}

int audit_canon_keycmp(const char *a, size_t alen, const char *b, size_t blen)
{
    const unsigned char *ua = (const unsigned char *)a, *ub = (const unsigned char *)b;
    size_t i = 0, j = 0;
    int32_t pa = 0, pb = 0;
    for (;;) {
        int a_end = i >= alen && !pa, b_end = j >= blen && !pb;
        if (a_end || b_end)
            return a_end && b_end ? 0 : (a_end ? -1 : 1);
        int32_t ca = utf16_next(ua, alen, &i, &pa);
        int32_t cb = utf16_next(ub, blen, &j, &pb);
        if (ca < 0 || cb < 0) { /* invalid UTF-8: fall back to bytes, order stays total */
            int c = memcmp(a, b, alen < blen ? alen : blen);
            return c ? c : (alen < blen ? -1 : alen > blen);
        }
        if (ca != cb)
            return ca < cb ? -1 : 1;
    }
}

static int append_string(struct gw_buf *out, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    if (gw_buf_reserve(out, len + 2) != 0 || gw_buf_append(out, "\"", 1) != 0)
        return -1;
    size_t i = 0, run = 0;
    while (i < len) {
        unsigned char c = u[i];
        if (c >= 0x80) {
            size_t at = i;
            if (utf8_next(u, len, &i) < 0)
                return -1;
            run += i - at;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            i++;
            continue;
        }
        if (run && gw_buf_append(out, s + i - run, run) != 0)
            return -1;
        run = 0;
        char esc[8];
        size_t n = 2;
        esc[0] = '\\';
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            n = (size_t)snprintf(esc, sizeof esc, "\\u%04x", c);
            break;
        }
        if (gw_buf_append(out, esc, n) != 0)
            return -1;
        i++;
    }
    if (run && gw_buf_append(out, s + len - run, run) != 0)
        return -1;
    return gw_buf_append(out, "\"", 1);
}

struct member {
    const char *key;
    size_t key_len;
    const json_t *value;
};

static int member_cmp(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    return audit_canon_keycmp(x->key, x->key_len, y->key, y->key_len);
}

static int append_value(struct gw_buf *out, const json_t *v, int depth)
{
    char num[40];
    int n;
    if (depth > AUDIT_CANON_MAX_DEPTH)
        return -1;
    switch (json_typeof(v)) {
    case JSON_NULL:
        return gw_buf_append(out, "null", 4);
    case JSON_TRUE:
        return gw_buf_append(out, "true", 4);
    case JSON_FALSE:
        return gw_buf_append(out, "false", 5);
    case JSON_STRING:
        return append_string(out, json_string_value(v), json_string_length(v));
    case JSON_INTEGER: {
        json_int_t i = json_integer_value(v);
        /* Integers within the exactly representable range print as themselves. */
        if (i >= -(1ll << 53) && i <= (1ll << 53))
            n = snprintf(num, sizeof num, "%lld", (long long)i);
        else
            n = audit_canon_number((double)i, num, sizeof num);
        return n < 0 ? -1 : gw_buf_append(out, num, (size_t)n);
    }
    case JSON_REAL:
        n = audit_canon_number(json_real_value(v), num, sizeof num);
        return n < 0 ? -1 : gw_buf_append(out, num, (size_t)n);
    case JSON_ARRAY: {
        if (gw_buf_append(out, "[", 1) != 0)
            return -1;
        size_t idx;
        const json_t *item;
        json_array_foreach(v, idx, item)
        {
            if ((idx && gw_buf_append(out, ",", 1) != 0) || append_value(out, item, depth + 1))
                return -1;
        }
        return gw_buf_append(out, "]", 1);
    }
    case JSON_OBJECT: {
        size_t count = json_object_size(v);
        struct member stack_members[16];
        struct member *m = stack_members;
        if (count > 16) {
            m = malloc(count * sizeof *m);
            if (!m)
                return -1;
        }
        size_t k = 0;
        void *it = json_object_iter((json_t *)v);
        for (; it && k < count; it = json_object_iter_next((json_t *)v, it), k++) {
            m[k].key = json_object_iter_key(it);
            m[k].key_len = json_object_iter_key_len(it);
            m[k].value = json_object_iter_value(it);
        }
        qsort(m, k, sizeof *m, member_cmp);
        int rc = gw_buf_append(out, "{", 1);
        for (size_t i = 0; rc == 0 && i < k; i++) {
            if (i)
                rc = gw_buf_append(out, ",", 1);
            if (rc == 0)
                rc = append_string(out, m[i].key, m[i].key_len);
            if (rc == 0)
                rc = gw_buf_append(out, ":", 1);
            if (rc == 0)
                rc = append_value(out, m[i].value, depth + 1);
        }
        if (rc == 0)
            rc = gw_buf_append(out, "}", 1);
        if (m != stack_members)
            free(m);
        return rc;
    }
    }
    return -1;
}

int audit_canon_append(struct gw_buf *out, const json_t *v)
{
    if (!v)
        return -1;
    return append_value(out, v, 0);
}
