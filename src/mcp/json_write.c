/*
 * json_write: compact JSON text of a jansson tree, as jansson's own dump writes it (see
 * json_write.h). Strings are scanned once: ASCII that needs no escape is copied in runs, an
 * escape is written in place, and each non-ASCII sequence is checked by gw_utf8_seq_len (the
 * rules of jansson's own check).
 */
#include "mcp/json_write.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/bytescan.h"

/* 1: an ASCII byte that goes out as it is. 0: an escape (a control, '"', '\\'), or not ASCII. */
static const unsigned char plain_byte[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0), /* 0x00-0x1f */
    1,      1,      0,      1,      1,      1,      1,      1,
    1,      1,      1,      1,      1,      1,      1,      1, /* 0x20-0x2f: '"' */
    R16(1), R16(1),                                            /* 0x30-0x4f */
    1,      1,      1,      1,      1,      1,      1,      1,
    1,      1,      1,      1,      0,      1,      1,      1, /* 0x50-0x5f: '\\' */
    R16(1), R16(1),                                            /* 0x60-0x7f */
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0),
#undef R16
};

static int put_string(struct gw_buf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    /* Room for the common case at once: no escapes. */
    if (gw_buf_reserve(b, n + 2) != 0)
        return -1;
    b->data[b->len++] = '"';
    size_t run = 0, i = 0;
    while (i < n) {
        if (plain_byte[s[i]]) {
            i = gw_json_plain_end(s, i + 1, n);
            continue;
        }
        if (s[i] >= 0x80) {
            size_t k = gw_utf8_seq_len(s + i, n - i);
            if (k == 0)
                return -1;
            i += k;
            continue;
        }
        char e[6];
        size_t el = gw_json_escape_byte(s[i], e, 1);
        if (gw_buf_append(b, s + run, i - run) != 0 || gw_buf_append(b, e, el) != 0)
            return -1;
        run = ++i;
    }
    if (gw_buf_reserve(b, n - run + 1) != 0)
        return -1;
    memcpy(b->data + b->len, s + run, n - run);
    b->len += n - run;
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
    return 0;
}

static int put_integer(struct gw_buf *b, json_int_t v)
{
    return gw_buf_append_i64(b, (int64_t)v);
}

/* Reals are rare in messages: jansson formats them, so the digits are its own exactly. */
static int put_real(struct gw_buf *b, const json_t *v, int precision)
{
    char tmp[128];
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(precision);
    size_t n = json_dumpb(v, tmp, sizeof tmp, flags);
    if (n == 0 || n > sizeof tmp)
        return -1;
    return gw_buf_append(b, tmp, n);
}

static int put_value(struct gw_buf *b, const json_t *v, int precision, int depth)
{
    switch (json_typeof(v)) {
    case JSON_NULL:
        return gw_buf_append(b, "null", 4);
    case JSON_TRUE:
        return gw_buf_append(b, "true", 4);
    case JSON_FALSE:
        return gw_buf_append(b, "false", 5);
    case JSON_INTEGER:
        return put_integer(b, json_integer_value(v));
    case JSON_REAL:
        return put_real(b, v, precision);
    case JSON_STRING:
        return put_string(b, json_string_value(v), json_string_length(v));
    case JSON_ARRAY: {
        if (depth >= MCP_JSON_WRITE_MAX_DEPTH)
            return -1;
        size_t n = json_array_size(v);
        if (gw_buf_append(b, "[", 1) != 0)
            return -1;
        for (size_t i = 0; i < n; i++) {
            if (i && gw_buf_append(b, ",", 1) != 0)
                return -1;
            if (put_value(b, json_array_get(v, i), precision, depth + 1) != 0)
                return -1;
        }
        return gw_buf_append(b, "]", 1);
    }
    case JSON_OBJECT: {
        if (depth >= MCP_JSON_WRITE_MAX_DEPTH)
            return -1;
        if (gw_buf_append(b, "{", 1) != 0)
            return -1;
        int first = 1;
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it)) {
            if (!first && gw_buf_append(b, ",", 1) != 0)
                return -1;
            first = 0;
            if (put_string(b, json_object_iter_key(it), json_object_iter_key_len(it)) != 0 ||
                gw_buf_append(b, ":", 1) != 0 ||
                put_value(b, json_object_iter_value(it), precision, depth + 1) != 0)
                return -1;
        }
        return gw_buf_append(b, "}", 1);
    }
    default:
        return -1;
    }
}

int mcp_json_write(struct gw_buf *out, const json_t *v, int real_precision)
{
    if (!out || !v || real_precision < 0 || real_precision > 31)
        return -1;
    size_t was = out->len;
    if (put_value(out, v, real_precision, 0) != 0) {
        out->len = was;
        if (out->data)
            out->data[was] = '\0';
        return -1;
    }
    return 0;
}

char *mcp_json_dumps(const json_t *v, int real_precision)
{
    struct gw_buf b = {0};
    if (mcp_json_write(&b, v, real_precision) != 0 || gw_buf_reserve(&b, 0) != 0) {
        gw_buf_free(&b);
        return NULL;
    }
    return gw_buf_steal(&b, NULL);
}
