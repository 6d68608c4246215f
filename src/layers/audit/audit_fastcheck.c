#include "layers/audit/audit_fastcheck.h"

#include "lib/bytescan.h"

#include <string.h>

/* Sorted, as the fields of a canonical record come; with their lengths (no strlen per row). */
#define KEY(s)                                                                                     \
    {                                                                                              \
        s, sizeof s - 1                                                                            \
    }
static const struct {
    const char *name;
    size_t len;
} keys[AF_COUNT] = {
    [AF_CLOSING] = KEY("closing"),
    [AF_DECISION] = KEY("decision"),
    [AF_HEAD_HASH] = KEY("head_hash"),
    [AF_HEAD_SEQ] = KEY("head_seq"),
    [AF_INSTANCE] = KEY("instance"),
    [AF_KEY_ID] = KEY("key_id"),
    [AF_KIND] = KEY("kind"),
    [AF_LAST_HASH] = KEY("last_hash"),
    [AF_LAYER] = KEY("layer"),
    [AF_PREV_HASH] = KEY("prev_hash"),
    [AF_PREVIOUS_SHUTDOWN] = KEY("previous_shutdown"),
    [AF_REQUEST_ID] = KEY("request_id"),
    [AF_SEQ] = KEY("seq"),
    [AF_SIGNATURE] = KEY("signature"),
    [AF_SIGNED_TIME_NS] = KEY("signed_time_ns"),
    [AF_SUBJECT] = KEY("subject"),
    [AF_TENANT] = KEY("tenant"),
    [AF_THROUGH_SEQ] = KEY("through_seq"),
    [AF_TIME_NS] = KEY("time_ns"),
    [AF_TOOL] = KEY("tool"),
};
#undef KEY
/* Every entry set, in key order (the scan below walks them alongside the record's keys). */
_Static_assert(sizeof keys / sizeof keys[0] == AF_COUNT, "one key per field");

const char *audit_field_key(enum audit_field_id id)
{
    return keys[id].name;
}

struct cursor {
    const char *p, *end;
};

/*
 * Byte classes for strings: 0 plain ASCII (taken as it is), 1 the closing quote, 2 a
 * backslash, 3 undecided here (raw controls are not canonical; non-ASCII goes the full way).
 */
static const unsigned char string_class[256] = {
    [0x00 ... 0x1f] = 3,
    ['"'] = 1,
    ['\\'] = 2,
    [0x7f ... 0xff] = 3,
};

/* A canonical string of ASCII; *escaped set when it holds an escape. 1 ok, 0 undecided. */
static int scan_string(struct cursor *c, const char **s, size_t *len, int *escaped)
{
    if (c->p >= c->end || *c->p != '"')
        return 0;
    const char *start = ++c->p;
    *escaped = 0;
    while (c->p < c->end) {
        /* Eight plain bytes at a time, up to the first that needs a look. */
        while (c->end - c->p >= 8) {
            uint64_t w = gw_word_load(c->p);
            uint64_t m = gw_word_below(w, 0x20) | gw_word_eq(w, '"') | gw_word_eq(w, '\\') |
                         gw_word_eq(w, 0x7f) | gw_word_high(w);
            if (m) {
                c->p += gw_word_first(m);
                break;
            }
            c->p += 8;
        }
        if (c->p >= c->end)
            break;
        unsigned char cls = string_class[(unsigned char)*c->p];
        if (cls == 0) {
            c->p++;
            continue;
        }
        if (cls == 1) {
            *s = start;
            *len = (size_t)(c->p - start);
            c->p++;
            return 1;
        }
        if (cls == 3)
            return 0;
        *escaped = 1;
        if (c->end - c->p < 2)
            return 0;
        char e = c->p[1];
        if (e == '"' || e == '\\' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
            c->p += 2;
            continue;
        }
        /* \u00xx only for the controls without a short form, lower-case, never NUL. */
        if (e != 'u' || c->end - c->p < 6 || c->p[2] != '0' || c->p[3] != '0')
            return 0;
        const char *h = c->p + 4;
        int hi = h[0] == '0' || h[0] == '1' ? h[0] - '0' : -1;
        int lo = h[1] >= '0' && h[1] <= '9'   ? h[1] - '0'
                 : h[1] >= 'a' && h[1] <= 'f' ? h[1] - 'a' + 10
                                              : -1;
        if (hi < 0 || lo < 0)
            return 0;
        int v = hi * 16 + lo;
        if (v == 0 || v == '\b' || v == '\f' || v == '\n' || v == '\r' || v == '\t')
            return 0;
        c->p += 6;
    }
    return 0;
}

/* An integer of at most 15 digits in canonical form. 1 ok, 0 undecided. */
static int scan_integer(struct cursor *c, int64_t *out)
{
    int neg = 0;
    if (c->p < c->end && *c->p == '-') {
        neg = 1;
        c->p++;
    }
    const char *d = c->p;
    int64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (c->p - d < 15)
            v = v * 10 + (*c->p - '0');
        c->p++;
    }
    size_t n = (size_t)(c->p - d);
    if (n == 0 || n > 15 || (n > 1 && d[0] == '0') || (neg && v == 0))
        return 0;
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E'))
        return 0;
    *out = neg ? -v : v;
    return 1;
}

static int scan_value(struct cursor *c, int depth, struct audit_field *f);

static int scan_object(struct cursor *c, int depth, struct audit_fields *top)
{
    if (depth > 100 || c->p >= c->end || *c->p != '{')
        return 0;
    c->p++;
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 1;
    }
    const char *prev = NULL;
    size_t prev_len = 0;
    int next_field = 0;
    for (;;) {
        const char *k;
        size_t klen;
        int esc;
        if (!scan_string(c, &k, &klen, &esc) || esc)
            return 0;
        if (prev) {
            /* ASCII keys: UTF-16 order is byte order; strictly increasing (no duplicates). */
            size_t m = klen < prev_len ? klen : prev_len;
            int cmp = memcmp(prev, k, m);
            if (cmp > 0 || (cmp == 0 && prev_len >= klen))
                return 0;
        }
        prev = k;
        prev_len = klen;
        if (c->p >= c->end || *c->p != ':')
            return 0;
        c->p++;
        struct audit_field *slot = NULL;
        if (top) {
            /* Both lists are sorted: walk the fields until one is not before this key. */
            while (next_field < AF_COUNT) {
                size_t flen = keys[next_field].len, m = flen < klen ? flen : klen;
                /* Keys are short: compared in line, byte by byte, up to the first difference. */
                const unsigned char *a = (const unsigned char *)keys[next_field].name,
                                    *b = (const unsigned char *)k;
                size_t i = 0;
                while (i < m && a[i] == b[i])
                    i++;
                int cmp = i < m ? a[i] - b[i] : 0;
                if (cmp == 0 && flen == klen) {
                    slot = &top->f[next_field++];
                    break;
                }
                if (cmp > 0 || (cmp == 0 && flen > klen))
                    break;
                next_field++;
            }
        }
        struct audit_field ignored;
        if (!scan_value(c, depth + 1, slot ? slot : &ignored))
            return 0;
        if (c->p >= c->end)
            return 0;
        if (*c->p == '}') {
            c->p++;
            return 1;
        }
        if (*c->p != ',')
            return 0;
        c->p++;
    }
}

static int scan_value(struct cursor *c, int depth, struct audit_field *f)
{
    memset(f, 0, sizeof *f);
    if (c->p >= c->end)
        return 0;
    char ch = *c->p;
    if (ch == '"') {
        f->type = AFT_STRING;
        return scan_string(c, &f->str, &f->len, &f->escaped);
    }
    if (ch == '{') {
        f->type = AFT_OTHER;
        return scan_object(c, depth, NULL);
    }
    if (ch == '[') {
        f->type = AFT_OTHER;
        if (depth > 100)
            return 0;
        c->p++;
        if (c->p < c->end && *c->p == ']') {
            c->p++;
            return 1;
        }
        for (;;) {
            struct audit_field x;
            if (!scan_value(c, depth + 1, &x) || c->p >= c->end)
                return 0;
            if (*c->p == ']') {
                c->p++;
                return 1;
            }
            if (*c->p != ',')
                return 0;
            c->p++;
        }
    }
    /* The first byte names the literal that may follow; anything else is a number. */
    const char *lit = ch == 't' ? "true" : ch == 'f' ? "false" : ch == 'n' ? "null" : NULL;
    if (lit) {
        size_t len = ch == 'f' ? 5 : 4;
        if ((size_t)(c->end - c->p) < len || memcmp(c->p, lit, len) != 0)
            return 0;
        c->p += len;
        f->type = ch == 't' ? AFT_TRUE : AFT_OTHER;
        return 1;
    }
    f->type = AFT_INTEGER;
    return scan_integer(c, &f->num);
}

int audit_fastcheck(const char *text, size_t len, struct audit_fields *out)
{
    struct cursor c = {text, text + len};
    memset(out, 0, sizeof *out);
    if (!scan_object(&c, 0, out) || c.p != c.end)
        return 0;
    return 1;
}
