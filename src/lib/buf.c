#include "lib/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int gw_buf_grow(struct gw_buf *b, size_t n)
{
    if (b->cap - b->len > n)
        return 0;
    /* Room for n bytes and the NUL; n near SIZE_MAX must fail, not wrap to a small size. */
    if (n > SIZE_MAX - b->len - 1)
        return -1;
    size_t want = b->len + n + 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int gw_buf_append_str(struct gw_buf *b, const char *s)
{
    return gw_buf_append(b, s, strlen(s));
}

size_t gw_strlcpy(char *dst, const char *src, size_t cap)
{
    size_t n = strlen(src);
    if (cap) {
        size_t k = n < cap ? n : cap - 1;
        memcpy(dst, src, k);
        dst[k] = '\0';
    }
    return n;
}

size_t gw_fmt_u64(char out[20], uint64_t v)
{
    char d[20];
    size_t n = sizeof d;
    do {
        d[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(out, d + n, sizeof d - n);
    return sizeof d - n;
}

size_t gw_fmt_i64(char out[21], int64_t v)
{
    if (v >= 0)
        return gw_fmt_u64(out, (uint64_t)v);
    /* In unsigned arithmetic, so that the most negative value has a magnitude too. */
    out[0] = '-';
    return 1 + gw_fmt_u64(out + 1, 0 - (uint64_t)v);
}

int gw_buf_append_u64(struct gw_buf *b, uint64_t v)
{
    char d[20];
    return gw_buf_append(b, d, gw_fmt_u64(d, v));
}

int gw_buf_append_i64(struct gw_buf *b, int64_t v)
{
    char d[21];
    return gw_buf_append(b, d, gw_fmt_i64(d, v));
}

size_t gw_json_escape_byte(unsigned char c, char e[6], int upper_hex)
{
    const char *hex = upper_hex ? "0123456789ABCDEF" : "0123456789abcdef";
    e[0] = '\\';
    switch (c) {
    case '"':
        e[1] = '"';
        return 2;
    case '\\':
        e[1] = '\\';
        return 2;
    case '\b':
        e[1] = 'b';
        return 2;
    case '\f':
        e[1] = 'f';
        return 2;
    case '\n':
        e[1] = 'n';
        return 2;
    case '\r':
        e[1] = 'r';
        return 2;
    case '\t':
        e[1] = 't';
        return 2;
    default:
        e[1] = 'u';
        e[2] = '0';
        e[3] = '0';
        e[4] = hex[c >> 4];
        e[5] = hex[c & 15];
        return 6;
    }
}

int gw_buf_vprintf(struct gw_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -1;
    if (gw_buf_reserve(b, (size_t)n) != 0)
        return -1;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int gw_buf_printf(struct gw_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = gw_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* The rules are RFC 3629's, the same as jansson's own check (buf.h). */
size_t gw_utf8_seq_len(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* bounds of the second byte */
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (avail < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return len;
}

int gw_buf_append_json_escaped(struct gw_buf *b, const char *s, size_t n)
{
    if (gw_buf_reserve(b, n) != 0)
        return -1;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\')
            continue;
        if (c >= 0x80) {
            /*
             * JSON text must be UTF-8 (RFC 8259 §8.1): bytes that do not form a character are
             * written as U+FFFD so that a hostile input cannot make the output unparseable.
             */
            size_t seq = gw_utf8_seq_len((const unsigned char *)s + i, n - i);
            if (seq > 0) {
                i += seq - 1;
                continue;
            }
            if (gw_buf_append(b, s + run, i - run) != 0 || gw_buf_append(b, "\\ufffd", 6) != 0)
                return -1;
            run = i + 1;
            continue;
        }
        if (gw_buf_append(b, s + run, i - run) != 0)
            return -1;
        char esc[6];
        size_t elen = gw_json_escape_byte(c, esc, 0);
        if (gw_buf_append(b, esc, elen) != 0)
            return -1;
        run = i + 1;
    }
    return gw_buf_append(b, s + run, n - run);
}

void gw_buf_consume(struct gw_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = '\0';
}

void gw_buf_reset(struct gw_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void gw_buf_free(struct gw_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *gw_buf_steal(struct gw_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

char *gw_slice_dup(struct gw_slice s)
{
    char *p = malloc(s.len + 1);
    if (!p)
        return NULL;
    if (s.len)
        memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
    return p;
}
