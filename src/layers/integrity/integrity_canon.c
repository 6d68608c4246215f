/*
 * Canonical JSON for definition pins (RFC 8785 style): the same definition always hashes the
 * same, whatever order or spacing the backend wrote it in.
 */
#include "layers/integrity/integrity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct integrity_kind integrity_kinds[4] = {
    {"tools", "name", "tool"},
    {"prompts", "name", "prompt"},
    {"resources", "uri", "resource"},
    {"resourceTemplates", "uriTemplate", "resource_template"},
};

/* Next UTF-16 code unit of a UTF-8 string (valid: jansson checked it); 0 at the end. */
struct u16_iter {
    const unsigned char *p, *end;
    unsigned low; /* pending low surrogate */
};

static unsigned u16_next(struct u16_iter *it)
{
    if (it->low) {
        unsigned l = it->low;
        it->low = 0;
        return l;
    }
    if (it->p >= it->end)
        return 0x110000; /* past every unit: shorter strings sort first */
    unsigned c = *it->p++;
    int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if (more)
        c &= 0x3F >> more;
    for (; more > 0 && it->p < it->end; more--)
        c = (c << 6) | (*it->p++ & 0x3F);
    if (c >= 0x10000) {
        c -= 0x10000;
        it->low = 0xDC00 + (c & 0x3FF);
        return 0xD800 + (c >> 10);
    }
    return c;
}

static int utf16_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    struct u16_iter x = {(const unsigned char *)a, (const unsigned char *)a + alen, 0};
    struct u16_iter y = {(const unsigned char *)b, (const unsigned char *)b + blen, 0};
    for (;;) {
        unsigned ca = u16_next(&x), cb = u16_next(&y);
        if (ca != cb)
            return ca < cb ? -1 : 1;
        if (ca == 0x110000)
            return 0;
    }
}

static int key_cmp(const void *pa, const void *pb)
{
    const char *a = *(const char *const *)pa, *b = *(const char *const *)pb;
    return utf16_cmp(a, strlen(a), b, strlen(b));
}

static int put_string(struct gw_buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    int rc = gw_buf_append(out, "\"", 1);
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            break;
        }
        if (esc) {
            rc = gw_buf_append_str(out, esc);
        } else if (c < 0x20) {
            char u[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
            rc = gw_buf_append(out, u, 6);
        } else {
            rc = gw_buf_append(out, &s[i], 1);
        }
    }
    return rc ? rc : gw_buf_append(out, "\"", 1);
}

static int put_real(struct gw_buf *out, double d)
{
    if (!isfinite(d))
        return -1;
    if (d == 0)
        return gw_buf_append_str(out, "0");
    /*
     * An integral real within 2^53 is written as an integer; beyond, in exponent form, so
     * that the text parses back (jansson refuses integers past 64 bits).
     */
    if (d == floor(d) && fabs(d) <= 9007199254740992.0)
        return gw_buf_printf(out, "%.0f", d);
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    return gw_buf_append_str(out, tmp);
}

static int canon(const json_t *v, struct gw_buf *out, int depth)
{
    if (depth <= 0)
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v), i = 0;
        const char **keys = n ? malloc(n * sizeof *keys) : NULL;
        if (n && !keys)
            return -1;
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m) keys[i++] = k;
        if (n)
            qsort(keys, n, sizeof *keys, key_cmp);
        int rc = gw_buf_append(out, "{", 1);
        for (i = 0; i < n && rc == 0; i++) {
            if (i)
                rc = gw_buf_append(out, ",", 1);
            if (rc == 0)
                rc = put_string(out, keys[i], strlen(keys[i]));
            if (rc == 0)
                rc = gw_buf_append(out, ":", 1);
            if (rc == 0)
                rc = canon(json_object_get(v, keys[i]), out, depth - 1);
        }
        free(keys);
        return rc ? rc : gw_buf_append(out, "}", 1);
    }
    case JSON_ARRAY: {
        int rc = gw_buf_append(out, "[", 1);
        for (size_t i = 0; i < json_array_size(v) && rc == 0; i++) {
            if (i)
                rc = gw_buf_append(out, ",", 1);
            if (rc == 0)
                rc = canon(json_array_get(v, i), out, depth - 1);
        }
        return rc ? rc : gw_buf_append(out, "]", 1);
    }
    case JSON_STRING:
        return put_string(out, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return gw_buf_printf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    case JSON_REAL:
        return put_real(out, json_real_value(v));
    case JSON_TRUE:
        return gw_buf_append_str(out, "true");
    case JSON_FALSE:
        return gw_buf_append_str(out, "false");
    case JSON_NULL:
        return gw_buf_append_str(out, "null");
    }
    return -1;
}

int integrity_canonical(const json_t *v, struct gw_buf *out, int max_depth)
{
    return canon(v, out, max_depth) == 0 ? 0 : -1;
}

int integrity_hash_def(const json_t *def, const char *field, char hash[GW_SHA256_HEX_LEN + 1],
                       char body[GW_SHA256_HEX_LEN + 1])
{
    if (!json_is_object(def))
        return -1;
    struct gw_buf b = {0};
    int rc = integrity_canonical(def, &b, 64);
    if (rc == 0)
        gw_sha256_hex(b.data, b.len, hash);
    gw_buf_free(&b);
    json_t *copy = rc == 0 ? json_copy((json_t *)def) : NULL;
    if (!copy)
        return -1;
    json_object_del(copy, field);
    struct gw_buf c = {0};
    rc = integrity_canonical(copy, &c, 64);
    if (rc == 0)
        gw_sha256_hex(c.data, c.len, body);
    gw_buf_free(&c);
    json_decref(copy);
    return rc;
}
