#include "layers/audit/audit_canon.h"

#include "lib/bytescan.h"

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

/*
 * UTF-8 byte order is code point order, and UTF-16 code unit order differs from it only
 * where a supplementary character (4-byte UTF-8, lead byte F0-F4, a surrogate pair in
 * UTF-16) meets a character in U+E000..U+FFFF (lead byte EE or EF): the surrogate sorts
 * first. So compare bytes, and fix up that one case at the first difference (which is at
 * a lead byte whenever the two characters there have different lengths).
 */
int audit_canon_keycmp(const char *a, size_t alen, const char *b, size_t blen)
{
    const unsigned char *ua = (const unsigned char *)a, *ub = (const unsigned char *)b;
    size_t n = alen < blen ? alen : blen;
    size_t i = 0;
    while (i < n && ua[i] == ub[i])
        i++;
    if (i == n)
        return alen == blen ? 0 : (alen < blen ? -1 : 1);
    unsigned char x = ua[i], y = ub[i];
    if (x >= 0xf0 && (y == 0xee || y == 0xef))
        return -1;
    if (y >= 0xf0 && (x == 0xee || x == 0xef))
        return 1;
    return x < y ? -1 : 1;
}

/* What needs a look is written in slices of this many bytes, each in place in room for its
 * worst case (six bytes for each: \u00XX), so that a large answer never reserves six times
 * its size. */
#define CANON_SLICE 4096

static int append_string(struct gw_buf *out, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t start = out->len;
    /* Most strings are plain ASCII that needs no escape: copied between quotes at once. */
    size_t i = gw_json_plain_end(u, 0, len);
    if (gw_buf_reserve(out, i + 2) != 0)
        return -1;
    char *d = out->data + out->len;
    *d++ = '"';
    memcpy(d, s, i);
    d += i;
    while (i < len) {
        /* A slice ends after the character it would cut (at most three bytes more). */
        size_t end = len - i > CANON_SLICE ? i + CANON_SLICE : len;
        for (int k = 0; k < 3 && end < len && (u[end] & 0xc0) == 0x80; k++)
            end++;
        out->len = (size_t)(d - out->data);
        if (gw_buf_reserve(out, 6 * (end - i) + 4) != 0)
            goto fail;
        d = out->data + out->len;
        while (i < end) {
            unsigned char c = u[i];
            if (c >= 0x80) {
                size_t at = i;
                if (utf8_next(u, len, &i) < 0)
                    goto fail;
                memcpy(d, s + at, i - at);
                d += i - at;
            } else if (c >= 0x20 && c != '"' && c != '\\') {
                size_t j = gw_json_plain_end(u, i + 1, end);
                memcpy(d, s + i, j - i);
                d += j - i;
                i = j;
            } else {
                d += gw_json_escape_byte(c, d, 0);
                i++;
            }
        }
    }
    /* Every reserve above kept room for the closing quote and the NUL. */
    *d++ = '"';
    out->len = (size_t)(d - out->data);
    out->data[out->len] = '\0';
    return 0;
fail:
    /* Nothing of a string that cannot be written is left behind. */
    out->len = start;
    out->data[start] = '\0';
    return -1;
}

int audit_canon_int(struct gw_buf *out, int64_t v)
{
    /* Integers within the exactly representable range print as themselves. */
    if (v >= -(1ll << 53) && v <= (1ll << 53)) {
        return gw_buf_append_i64(out, v);
    }
    char num[40];
    int n = audit_canon_number((double)v, num, sizeof num);
    return n < 0 ? -1 : gw_buf_append(out, num, (size_t)n);
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

/* An answer's objects have a few dozen members at most: insertion sort, the first bytes
 * compared inline where both are ASCII and differ (UTF-16 order is byte order there); qsort
 * past 32, where insertion sort's quadratic worst case would start to tell. */
static void sort_members(struct member *m, size_t n)
{
    if (n > 32) {
        qsort(m, n, sizeof *m, member_cmp);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        struct member x = m[i];
        unsigned char x0 = x.key_len ? (unsigned char)x.key[0] : 0;
        size_t j = i;
        while (j > 0) {
            const struct member *y = &m[j - 1];
            unsigned char y0 = y->key_len ? (unsigned char)y->key[0] : 0;
            int after = y0 != x0 && y0 < 0x80 && x0 < 0x80 && y->key_len && x.key_len
                            ? y0 > x0
                            : audit_canon_keycmp(y->key, y->key_len, x.key, x.key_len) > 0;
            if (!after)
                break;
            m[j] = m[j - 1];
            j--;
        }
        m[j] = x;
    }
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
    case JSON_INTEGER:
        return audit_canon_int(out, (int64_t)json_integer_value(v));
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
        sort_members(m, k);
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

int audit_canon_string(struct gw_buf *out, const char *s, size_t len)
{
    return append_string(out, s, len);
}

static int members_push(struct audit_members *ms, const char *key, size_t key_len)
{
    if (ms->n == ms->cap) {
        size_t cap = ms->cap ? ms->cap * 2 : 32;
        struct audit_member *m = realloc(ms->m, cap * sizeof *m);
        if (!m)
            return -1;
        ms->m = m;
        ms->cap = cap;
    }
    struct audit_member *x = &ms->m[ms->n];
    x->key_off = ms->keys.len;
    x->key_len = key_len;
    x->off = ms->text.len;
    if (gw_buf_append(&ms->keys, key, key_len) != 0)
        return -1;
    /* The record's own keys are plain ASCII: written as they are, without the escaper. */
    size_t i = 0;
    while (i < key_len && key[i] >= 0x20 && key[i] < 0x7f && key[i] != '"' && key[i] != '\\')
        i++;
    if (i < key_len)
        return append_string(&ms->text, key, key_len) != 0 || gw_buf_append(&ms->text, ":", 1) != 0
                   ? -1
                   : 0;
    if (gw_buf_reserve(&ms->text, key_len + 3) != 0)
        return -1;
    char *p = ms->text.data + ms->text.len;
    p[0] = '"';
    memcpy(p + 1, key, key_len);
    p[key_len + 1] = '"';
    p[key_len + 2] = ':';
    ms->text.len += key_len + 3;
    ms->text.data[ms->text.len] = '\0';
    return 0;
}

/* Ends the member members_push began: its text is what was appended since. */
static void members_close(struct audit_members *ms)
{
    ms->m[ms->n].len = ms->text.len - ms->m[ms->n].off;
    ms->n++;
}

int audit_members_add_raw(struct audit_members *ms, const char *key, const char *value,
                          size_t value_len)
{
    if (members_push(ms, key, strlen(key)) != 0 || gw_buf_append(&ms->text, value, value_len) != 0)
        return -1;
    members_close(ms);
    return 0;
}

int audit_members_add_string(struct audit_members *ms, const char *key, const char *s, size_t len)
{
    if (members_push(ms, key, strlen(key)) != 0 || append_string(&ms->text, s, len) != 0)
        return -1;
    members_close(ms);
    return 0;
}

int audit_members_add_int(struct audit_members *ms, const char *key, int64_t v)
{
    if (members_push(ms, key, strlen(key)) != 0 || audit_canon_int(&ms->text, v) != 0)
        return -1;
    members_close(ms);
    return 0;
}

int audit_members_add_value(struct audit_members *ms, const char *key, const json_t *v)
{
    if (!v || members_push(ms, key, strlen(key)) != 0 || append_value(&ms->text, v, 1) != 0)
        return -1;
    members_close(ms);
    return 0;
}

int audit_members_add_object(struct audit_members *ms, const char *key, struct audit_members *sub)
{
    audit_members_sort(sub);
    if (members_push(ms, key, strlen(key)) != 0 || audit_members_write(&ms->text, sub, NULL) != 0)
        return -1;
    members_close(ms);
    return 0;
}

int audit_members_from_object(struct audit_members *ms, const json_t *obj, const char *const *skip)
{
    const char *key;
    size_t key_len;
    json_t *v;
    if (!json_is_object(obj))
        return -1;
    json_object_keylen_foreach((json_t *)obj, key, key_len, v)
    {
        int skipped = 0;
        for (size_t i = 0; skip && skip[i] && !skipped; i++)
            skipped = strlen(skip[i]) == key_len && memcmp(skip[i], key, key_len) == 0;
        if (skipped)
            continue;
        if (members_push(ms, key, key_len) != 0 || append_value(&ms->text, v, 1) != 0)
            return -1;
        members_close(ms);
    }
    audit_members_sort(ms);
    return 0;
}

/* qsort has no context argument in C11: the keys buffer of the sort in progress. */
static _Thread_local const char *tls_keys;

static int amember_cmp(const void *a, const void *b)
{
    const struct audit_member *x = a, *y = b;
    return audit_canon_keycmp(tls_keys + x->key_off, x->key_len, tls_keys + y->key_off, y->key_len);
}

void audit_members_sort(struct audit_members *ms)
{
    if (ms->n > 32) {
        tls_keys = ms->keys.data;
        qsort(ms->m, ms->n, sizeof *ms->m, amember_cmp);
        return;
    }
    /* A record's few dozen members: insertion sort. Keys that differ in their first byte, both
     * ASCII, compare by it (UTF-16 order is byte order there) without a call. */
    const unsigned char *keys = (const unsigned char *)ms->keys.data;
    for (size_t i = 1; i < ms->n; i++) {
        struct audit_member x = ms->m[i];
        unsigned char x0 = x.key_len ? keys[x.key_off] : 0;
        size_t j = i;
        while (j > 0) {
            const struct audit_member *y = &ms->m[j - 1];
            unsigned char y0 = y->key_len ? keys[y->key_off] : 0;
            int after = y0 != x0 && y0 < 0x80 && x0 < 0x80 && y->key_len && x.key_len
                            ? y0 > x0
                            : audit_canon_keycmp((const char *)keys + y->key_off, y->key_len,
                                                 (const char *)keys + x.key_off, x.key_len) > 0;
            if (!after)
                break;
            ms->m[j] = ms->m[j - 1];
            j--;
        }
        ms->m[j] = x;
    }
}

int audit_members_write(struct gw_buf *out, const struct audit_members *a,
                        const struct audit_members *b)
{
    size_t i = 0, j = 0, k = 0;
    if (gw_buf_reserve(out, a->text.len + (b ? b->text.len : 0) + a->n + 2) != 0 ||
        gw_buf_append(out, "{", 1) != 0)
        return -1;
    size_t bn = b ? b->n : 0;
    while (i < a->n || j < bn) {
        const struct audit_member *x;
        const char *text;
        if (j >= bn ||
            (i < a->n && audit_canon_keycmp(a->keys.data + a->m[i].key_off, a->m[i].key_len,
                                            b->keys.data + b->m[j].key_off, b->m[j].key_len) < 0)) {
            x = &a->m[i++];
            text = a->text.data;
        } else {
            x = &b->m[j++];
            text = b->text.data;
        }
        if ((k++ && gw_buf_append(out, ",", 1) != 0) ||
            gw_buf_append(out, text + x->off, x->len) != 0)
            return -1;
    }
    return gw_buf_append(out, "}", 1);
}

void audit_members_reset(struct audit_members *ms)
{
    gw_buf_reset(&ms->text);
    gw_buf_reset(&ms->keys);
    ms->n = 0;
}

void audit_members_free(struct audit_members *ms)
{
    gw_buf_free(&ms->text);
    gw_buf_free(&ms->keys);
    free(ms->m);
    memset(ms, 0, sizeof *ms);
}

int audit_canon_append(struct gw_buf *out, const json_t *v)
{
    if (!v)
        return -1;
    return append_value(out, v, 0);
}
