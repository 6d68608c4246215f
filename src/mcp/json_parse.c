#include "mcp/json_parse.h"

#include "lib/bytescan.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * A recursive descent over the bytes, one value per call. The rules are jansson's (2.14), so
 * that a message means the same to every layer whichever parser read it: see json_parse.h.
 * Recursion is bounded by the value depth (MCP_JSON_MAX_DEPTH), a few hundred bytes of stack
 * per level.
 */

struct jp {
    const unsigned char *p, *end;
    size_t max_containers;
    char *scratch; /* escaped strings and numbers are decoded here */
    size_t scratch_cap;
};

static json_t *parse_value(struct jp *j, size_t containers, size_t level);

static inline void skip_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
        j->p++;
}

static int scratch_reserve(struct jp *j, size_t n)
{
    if (n <= j->scratch_cap)
        return 0;
    size_t cap = j->scratch_cap ? j->scratch_cap : 256;
    while (cap < n) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *s = realloc(j->scratch, cap);
    if (!s)
        return -1;
    j->scratch = s;
    j->scratch_cap = cap;
    return 0;
}

/* The length of the well-formed UTF-8 sequence of more than one byte at p, or 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    if (c < 0xc2)
        return 0; /* a continuation byte, or an overlong form of ASCII */
    else if (c < 0xe0)
        n = 2;
    else if (c < 0xf0)
        n = 3;
    else if (c < 0xf5)
        n = 4;
    else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && p[1] < 0xa0) ||  /* overlong */
        (c == 0xed && p[1] >= 0xa0) || /* a surrogate */
        (c == 0xf0 && p[1] < 0x90) ||  /* overlong */
        (c == 0xf4 && p[1] >= 0x90))   /* beyond U+10FFFF */
        return 0;
    return n;
}

static int hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
    if (end - p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/*
 * The string whose opening quote is at j->p: on success *s and *n are its decoded bytes
 * (in the input when it has no escape, else in the scratch buffer) and j->p is past the
 * closing quote.
 */
static int parse_string(struct jp *j, const char **s, size_t *n)
{
    const unsigned char *start = ++j->p, *p = start, *end = j->end;
    for (;;) {
        p = start + gw_json_plain_end(start, (size_t)(p - start), (size_t)(end - start));
        if (p >= end || *p < 0x20)
            return -1;
        if (*p == '"') {
            *s = (const char *)start;
            *n = (size_t)(p - start);
            j->p = p + 1;
            return 0;
        }
        if (*p == '\\')
            break;
        size_t k = utf8_seq(p, end);
        if (!k)
            return -1;
        p += k;
    }
    /* Escapes: decode into the scratch buffer, which the decoded text never outgrows. */
    size_t o = (size_t)(p - start);
    if (scratch_reserve(j, (size_t)(end - start)) != 0)
        return -1;
    char *out = j->scratch;
    memcpy(out, start, o);
    while (p < end) {
        unsigned c = *p;
        if (c == '"') {
            *s = out;
            *n = o;
            j->p = p + 1;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c >= 0x80) {
            size_t k = utf8_seq(p, end);
            if (!k)
                return -1;
            memcpy(out + o, p, k);
            o += k;
            p += k;
            continue;
        }
        if (c != '\\') {
            /* A run of plain bytes up to the next quote, escape or sequence. */
            size_t r = gw_json_plain_end(p, 1, (size_t)(end - p));
            memcpy(out + o, p, r);
            o += r;
            p += r;
            continue;
        }
        if (++p >= end)
            return -1;
        switch (*p++) {
        case '"':
            out[o++] = '"';
            break;
        case '\\':
            out[o++] = '\\';
            break;
        case '/':
            out[o++] = '/';
            break;
        case 'b':
            out[o++] = '\b';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'u': {
            unsigned v, lo;
            if (hex4(p, end, &v) != 0)
                return -1;
            p += 4;
            if (v >= 0xd800 && v <= 0xdbff) {
                if (end - p < 2 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &lo) != 0 ||
                    lo < 0xdc00 || lo > 0xdfff)
                    return -1;
                p += 6;
                v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
            } else if ((v >= 0xdc00 && v <= 0xdfff) || v == 0) {
                return -1; /* a lone low surrogate; NUL is not allowed */
            }
            /* Six escaped bytes (twelve for a pair) become at most four. */
            if (v < 0x80) {
                out[o++] = (char)v;
            } else if (v < 0x800) {
                out[o++] = (char)(0xc0 | v >> 6);
                out[o++] = (char)(0x80 | (v & 0x3f));
            } else if (v < 0x10000) {
                out[o++] = (char)(0xe0 | v >> 12);
                out[o++] = (char)(0x80 | ((v >> 6) & 0x3f));
                out[o++] = (char)(0x80 | (v & 0x3f));
            } else {
                out[o++] = (char)(0xf0 | v >> 18);
                out[o++] = (char)(0x80 | ((v >> 12) & 0x3f));
                out[o++] = (char)(0x80 | ((v >> 6) & 0x3f));
                out[o++] = (char)(0x80 | (v & 0x3f));
            }
            break;
        }
        default:
            return -1;
        }
    }
    return -1;
}

static inline int is_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

static json_t *parse_number(struct jp *j)
{
    const unsigned char *start = j->p, *p = start, *end = j->end;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (!is_digit(p, end))
        return NULL;
    if (*p == '0') {
        p++;
        if (is_digit(p, end))
            return NULL; /* no leading zeros */
    } else {
        while (is_digit(p, end))
            p++;
    }
    int real = 0;
    if (p < end && *p == '.') {
        p++;
        if (!is_digit(p, end))
            return NULL;
        while (is_digit(p, end))
            p++;
        real = 1;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (!is_digit(p, end))
            return NULL;
        while (is_digit(p, end))
            p++;
        real = 1;
    }
    j->p = p;
    size_t len = (size_t)(p - start);
    if (!real && len - (size_t)neg <= 18) {
        /* At most 18 digits always fit in 64 bits. */
        json_int_t v = 0;
        for (const unsigned char *d = start + neg; d < p; d++)
            v = v * 10 + (*d - '0');
        return json_integer(neg ? -v : v);
    }
    if (scratch_reserve(j, len + 1) != 0)
        return NULL;
    memcpy(j->scratch, start, len);
    j->scratch[len] = '\0';
    char *stop;
    errno = 0;
    if (!real) {
        long long v = strtoll(j->scratch, &stop, 10);
        if (errno == ERANGE || stop != j->scratch + len)
            return NULL; /* beyond json_int_t */
        return json_integer((json_int_t)v);
    }
    double d = strtod(j->scratch, &stop);
    if (stop != j->scratch + len || (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL)))
        return NULL; /* overflow; an underflow is the nearest value, as jansson keeps it */
    return json_real(d);
}

static json_t *parse_literal(struct jp *j, const char *word, size_t n, json_t *value)
{
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return NULL;
    j->p += n;
    return value;
}

static json_t *parse_array(struct jp *j, size_t containers, size_t level)
{
    json_t *a = json_array();
    if (!a)
        return NULL;
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return a;
    }
    for (;;) {
        json_t *v = parse_value(j, containers, level + 1);
        if (!v || json_array_append_new(a, v) != 0)
            goto fail;
        skip_ws(j);
        if (j->p >= j->end)
            goto fail;
        if (*j->p == ']') {
            j->p++;
            return a;
        }
        if (*j->p != ',')
            goto fail;
        j->p++;
        skip_ws(j);
    }
fail:
    json_decref(a);
    return NULL;
}

static json_t *parse_object(struct jp *j, size_t containers, size_t level)
{
    json_t *o = json_object();
    char *owned = NULL;
    if (!o)
        return NULL;
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return o;
    }
    for (;;) {
        const char *key;
        size_t klen;
        if (j->p >= j->end || *j->p != '"' || parse_string(j, &key, &klen) != 0)
            goto fail;
        if (key == j->scratch) {
            /* Decoded from escapes: the value's own strings reuse the scratch buffer. */
            if (!(owned = malloc(klen ? klen : 1)))
                goto fail;
            memcpy(owned, key, klen);
            key = owned;
        }
        if (json_object_getn(o, key, klen))
            goto fail; /* duplicate keys: which one a reader sees is a way around the rules */
        skip_ws(j);
        if (j->p >= j->end || *j->p != ':')
            goto fail;
        j->p++;
        skip_ws(j);
        json_t *v = parse_value(j, containers, level + 1);
        if (!v || json_object_setn_new_nocheck(o, key, klen, v) != 0)
            goto fail;
        free(owned);
        owned = NULL;
        skip_ws(j);
        if (j->p >= j->end)
            goto fail;
        if (*j->p == '}') {
            j->p++;
            return o;
        }
        if (*j->p != ',')
            goto fail;
        j->p++;
        skip_ws(j);
    }
fail:
    free(owned);
    json_decref(o);
    return NULL;
}

/* The value at j->p (whitespace skipped); level counts values as jansson does, from 1. */
static json_t *parse_value(struct jp *j, size_t containers, size_t level)
{
    if (level > MCP_JSON_MAX_DEPTH || j->p >= j->end)
        return NULL;
    switch (*j->p) {
    case '{':
        if (containers + 1 > j->max_containers)
            return NULL;
        return parse_object(j, containers + 1, level);
    case '[':
        if (containers + 1 > j->max_containers)
            return NULL;
        return parse_array(j, containers + 1, level);
    case '"': {
        const char *s;
        size_t n;
        if (parse_string(j, &s, &n) != 0)
            return NULL;
        return json_stringn_nocheck(s, n);
    }
    case 't':
        return parse_literal(j, "true", 4, json_true());
    case 'f':
        return parse_literal(j, "false", 5, json_false());
    case 'n':
        return parse_literal(j, "null", 4, json_null());
    default:
        if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9'))
            return parse_number(j);
        return NULL;
    }
}

json_t *mcp_json_parse(const char *buf, size_t len, size_t max_depth, unsigned flags)
{
    if (!buf)
        return NULL;
    struct jp j = {.p = (const unsigned char *)buf,
                   .end = (const unsigned char *)buf + len,
                   .max_containers = max_depth ? max_depth : SIZE_MAX};
    skip_ws(&j);
    if (!(flags & MCP_JSON_ANY) && (j.p >= j.end || (*j.p != '{' && *j.p != '[')))
        return NULL;
    json_t *v = parse_value(&j, 0, 1);
    free(j.scratch);
    if (!v)
        return NULL;
    skip_ws(&j);
    if (j.p != j.end) {
        json_decref(v);
        return NULL;
    }
    return v;
}
