#include "layers/audit/audit_codec.h"
#include "layers/audit/audit_canon.h"

#include "lib/bytescan.h"
#include "lib/digest.h"
#include "lib/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zdict.h>
#define ZSTD_STATIC_LINKING_ONLY /* the magicless frame format of version 2 */
#include <zstd.h>

#define CODEC_VERSION 1
#define CODEC_VERSION_MARKERS 2

struct codec_dict {
    uint32_t id;
    ZSTD_CDict *cdict;
    ZSTD_DDict *ddict;
};

struct audit_codec {
    int level;
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    struct codec_dict dicts[AUDIT_CODEC_MAX_DICTS];
    size_t n_dicts;
    uint32_t in_use;
    struct gw_buf scratch;  /* the reduced text of the last record encoded */
    struct gw_buf frame[2]; /* compressed with the dictionary, with the decision */
    int markers;            /* encode version 2 */
    int dctx_magicless;     /* the decompression context is set for version 2 frames */
};

_Static_assert(AUDIT_CUT_MAX <= 32, "the cut codes are bits of a uint32_t");

static const char *const cut_keys[AUDIT_CUT_MAX] = {
    [AUDIT_CUT_PREV_HASH] = "\"prev_hash\":", [AUDIT_CUT_TIME_NS] = "\"time_ns\":",
    [AUDIT_CUT_TIME] = "\"time\":",           [AUDIT_CUT_REQUEST_ID] = "\"request_id\":",
    [AUDIT_CUT_SUBJECT] = "\"subject\":",     [AUDIT_CUT_TENANT] = "\"tenant\":",
    [AUDIT_CUT_TOOL] = "\"tool\":",           [AUDIT_CUT_SEQ] = "\"seq\":",
    [AUDIT_CUT_HEAD_HASH] = "\"head_hash\":", [AUDIT_CUT_SIGNED_TIME] = "\"signed_time_ns\":",
};

size_t audit_reqid_pack(const char *id, unsigned char *out, size_t outlen)
{
    size_t len = strlen(id);
    /* 8-4-4-4-12 lower-case hex: what the gateway generates (UUIDv7). */
    static const int dash[] = {8, 13, 18, 23};
    int uuid = len == 36;
    for (int i = 0; uuid && i < 4; i++)
        uuid = id[dash[i]] == '-';
    if (uuid && outlen >= 16) {
        char hex[33];
        size_t h = 0;
        for (size_t i = 0; i < 36; i++)
            if (id[i] != '-')
                hex[h++] = id[i];
        if (h == 32 && gw_unhex(hex, 16, out, 1) == 0)
            return 16;
    }
    if (len + 1 > outlen)
        return 0;
    out[0] = 0;
    memcpy(out + 1, id, len);
    return len + 1;
}

int audit_reqid_unpack(const unsigned char *in, size_t len, char *out, size_t outlen)
{
    if (len == 16 && outlen >= 37) {
        /* 8-4-4-4-12: the bytes as hex, a dash before bytes 4, 6, 8 and 10 (every row). */
        static const char digits[] = "0123456789abcdef";
        char *o = out;
        for (size_t i = 0; i < 16; i++) {
            if (i == 4 || i == 6 || i == 8 || i == 10)
                *o++ = '-';
            *o++ = digits[in[i] >> 4];
            *o++ = digits[in[i] & 15];
        }
        *o = '\0';
        return 0;
    }
    if (len >= 1 && in[0] == 0 && len <= outlen && !memchr(in + 1, 0, len - 1)) {
        memcpy(out, in + 1, len - 1);
        out[len - 1] = '\0';
        return 0;
    }
    return -1;
}

/* Decimal digits of v into out (>= 21 bytes); returns the length. No locale, no printf. */
static size_t format_u64(uint64_t v, char *out)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

static void put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

/*
 * RFC 3339 with nanoseconds, as gw_time_rfc3339 writes it, by arithmetic (days to civil
 * date, exact for every date after 1970): this runs for every row read.
 */
static void format_rfc3339(uint64_t ns, char out[32])
{
    uint64_t secs = ns / 1000000000ull, nanos = ns % 1000000000ull;
    uint64_t days = secs / 86400, rem = secs % 86400;
    int64_t z = (int64_t)days + 719468;
    int64_t era = z / 146097;
    uint64_t doe = (uint64_t)(z - era * 146097);
    uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    uint64_t mp = (5 * doy + 2) / 153;
    unsigned day = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    unsigned month = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    uint64_t year = yoe + (uint64_t)era * 400 + (month <= 2);
    put2(out, (unsigned)(year / 100));
    put2(out + 2, (unsigned)(year % 100));
    out[4] = '-';
    put2(out + 5, month);
    out[7] = '-';
    put2(out + 8, day);
    out[10] = 'T';
    put2(out + 11, (unsigned)(rem / 3600));
    out[13] = ':';
    put2(out + 14, (unsigned)(rem / 60 % 60));
    out[16] = ':';
    put2(out + 17, (unsigned)(rem % 60));
    out[19] = '.';
    for (int i = 28; i >= 20; i--) {
        out[i] = (char)('0' + nanos % 10);
        nanos /= 10;
    }
    out[29] = 'Z';
    out[30] = '\0';
}

/*
 * A value as a canonical JSON string: names and ids are plain ASCII nearly always, and are
 * then the text in quotes; anything else goes through audit_canon. This runs for every row.
 */
static int append_canon_string(struct gw_buf *buf, const char *s, size_t len)
{
    /* 1: a byte canonical JSON writes otherwise (controls, quote, backslash, non-ASCII). */
    static const unsigned char special[256] = {
        [0x00 ... 0x1f] = 1,
        ['"'] = 1,
        ['\\'] = 1,
        [0x7f ... 0xff] = 1,
    };
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    for (; i + 4 <= len; i += 4)
        if (special[u[i]] | special[u[i + 1]] | special[u[i + 2]] | special[u[i + 3]])
            return audit_canon_string(buf, s, len);
    for (; i < len; i++)
        if (special[u[i]])
            return audit_canon_string(buf, s, len);
    if (gw_buf_reserve(buf, len + 2) != 0)
        return -1;
    buf->data[buf->len] = '"';
    memcpy(buf->data + buf->len + 1, s, len);
    buf->data[buf->len + 1 + len] = '"';
    buf->len += len + 2;
    buf->data[buf->len] = '\0';
    return 0;
}

int audit_cut_values_fill(struct audit_cut_values *cv, struct gw_buf *buf, const char *prev_hex,
                          int64_t time_ns, uint64_t seq, const char *request_id,
                          const char *subject, const char *tenant, const char *tool)
{
    /* Offsets first: buf may move while it grows. */
    size_t off[AUDIT_CUT_MAX];
    int have[AUDIT_CUT_MAX] = {0};
    char t[48];
    gw_buf_reset(buf);
    const char *strs[AUDIT_CUT_MAX] = {[AUDIT_CUT_PREV_HASH] = prev_hex,
                                       [AUDIT_CUT_REQUEST_ID] = request_id,
                                       [AUDIT_CUT_SUBJECT] = subject,
                                       [AUDIT_CUT_TENANT] = tenant,
                                       [AUDIT_CUT_TOOL] = tool};
    if (time_ns < 0)
        return -1;
    format_u64((uint64_t)time_ns, t);
    strs[AUDIT_CUT_TIME_NS] = t;
    strs[AUDIT_CUT_SIGNED_TIME] = t;
    strs[AUDIT_CUT_HEAD_HASH] = prev_hex;
    char t3339[48];
    format_rfc3339((uint64_t)time_ns, t3339); /* int64 nanoseconds end in 2262 */
    strs[AUDIT_CUT_TIME] = t3339;
    memset(cv, 0, sizeof *cv);
    for (int c = 1; c < AUDIT_CUT_MAX; c++) {
        off[c] = buf->len;
        if (c == AUDIT_CUT_SEQ) {
            char d[24];
            if (gw_buf_append(buf, d, format_u64(seq, d)) != 0)
                return -1;
        } else if (!strs[c]) {
            continue;
        } else if (c == AUDIT_CUT_TIME_NS || c == AUDIT_CUT_TIME || c == AUDIT_CUT_SIGNED_TIME) {
            /* Digits and punctuation: the canonical string is the text in quotes. */
            if (gw_buf_append(buf, "\"", 1) || gw_buf_append(buf, strs[c], strlen(strs[c])) ||
                gw_buf_append(buf, "\"", 1))
                return -1;
        } else if (append_canon_string(buf, strs[c], strlen(strs[c])) != 0)
            return -1;
        cv->len[c] = buf->len - off[c];
        have[c] = 1;
    }
    for (int c = 1; c < AUDIT_CUT_MAX; c++)
        if (have[c])
            cv->v[c] = buf->data + off[c];
    return 0;
}

struct audit_codec *audit_codec_new(int level)
{
    struct audit_codec *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->level = level;
    c->cctx = ZSTD_createCCtx();
    c->dctx = ZSTD_createDCtx();
    if (!c->cctx || !c->dctx) {
        audit_codec_free(c);
        return NULL;
    }
    /* The store names the dictionary itself; the frame need not repeat it or a checksum. */
    ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_dictIDFlag, 0);
    ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 0);
    ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_contentSizeFlag, 1);
    return c;
}

int audit_codec_use_markers(struct audit_codec *c)
{
    size_t z = ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_format, ZSTD_f_zstd1_magicless);
    if (ZSTD_isError(z))
        return -1;
    c->markers = 1;
    return 0;
}

void audit_codec_clear(struct audit_codec *c)
{
    for (size_t i = 0; i < c->n_dicts; i++) {
        ZSTD_freeCDict(c->dicts[i].cdict);
        ZSTD_freeDDict(c->dicts[i].ddict);
    }
    c->n_dicts = 0;
    c->in_use = 0;
}

void audit_codec_free(struct audit_codec *c)
{
    if (!c)
        return;
    audit_codec_clear(c);
    ZSTD_freeCCtx(c->cctx);
    ZSTD_freeDCtx(c->dctx);
    gw_buf_free(&c->scratch);
    gw_buf_free(&c->frame[0]);
    gw_buf_free(&c->frame[1]);
    free(c);
}

static struct codec_dict *find_dict(struct audit_codec *c, uint32_t id)
{
    for (size_t i = 0; i < c->n_dicts; i++)
        if (c->dicts[i].id == id)
            return &c->dicts[i];
    return NULL;
}

int audit_codec_add_dict(struct audit_codec *c, uint32_t id, const void *bytes, size_t len)
{
    if (id == 0 || len == 0 || len > AUDIT_CODEC_MAX_DICT_BYTES || find_dict(c, id) ||
        c->n_dicts >= AUDIT_CODEC_MAX_DICTS)
        return -1;
    struct codec_dict *d = &c->dicts[c->n_dicts];
    /* A trained dictionary (zstd's format), or raw text of records (starting with '{'). */
    d->cdict = ZSTD_createCDict(bytes, len, c->level);
    d->ddict = ZSTD_createDDict(bytes, len);
    if (!d->cdict || !d->ddict) {
        ZSTD_freeCDict(d->cdict);
        ZSTD_freeDDict(d->ddict);
        return -1;
    }
    d->id = id;
    c->n_dicts++;
    return 0;
}

int audit_codec_use_dict(struct audit_codec *c, uint32_t id)
{
    if (id && !find_dict(c, id))
        return -1;
    c->in_use = id;
    return 0;
}

const struct gw_buf *audit_codec_last_reduced(const struct audit_codec *c)
{
    return &c->scratch;
}

size_t audit_codec_train(const void *samples, const size_t *sizes, unsigned n, void *dict,
                         size_t cap)
{
    size_t z = ZDICT_trainFromBuffer(dict, cap, samples, sizes, n);
    return ZDICT_isError(z) ? 0 : z;
}

int audit_codec_has_dict(const struct audit_codec *c, uint32_t id)
{
    for (size_t i = 0; i < c->n_dicts; i++)
        if (c->dicts[i].id == id)
            return 1;
    return 0;
}

uint32_t audit_codec_dict_in_use(const struct audit_codec *c)
{
    return c->in_use;
}

static int put_varint(struct gw_buf *b, uint64_t v)
{
    unsigned char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return gw_buf_append(b, tmp, n);
}

static int get_varint(const unsigned char **p, const unsigned char *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end)
            return -1;
        unsigned char b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

struct cut {
    size_t pos, len;
    int code;
};

static int cut_cmp(const void *a, const void *b)
{
    const struct cut *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/*
 * Finds each wanted `"key":VALUE` in canon, in one pass: every key starts with a quote, so only
 * the quotes are candidates, and a quote is tried against the keys whose first letter follows
 * it. For each code the first place in the text wins, as a search from the start for it alone
 * would find. pos[code] gets the offset of VALUE, or -1.
 */
static void find_values(const char *canon, size_t len, const struct audit_cut_values *cv,
                        long pos[AUDIT_CUT_MAX])
{
    uint32_t by_letter[26] = {0}, pending = 0;
    size_t klen[AUDIT_CUT_MAX];
    for (int code = 1; code < AUDIT_CUT_MAX; code++) {
        pos[code] = -1;
        if (!cv->v[code])
            continue;
        klen[code] = strlen(cut_keys[code]);
        by_letter[cut_keys[code][1] - 'a'] |= 1u << code;
        pending |= 1u << code;
    }
    const char *p = canon, *end = canon + len;
    while (pending && p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q || q + 1 >= end)
            return;
        p = q + 1;
        unsigned letter = (unsigned char)q[1] - 'a';
        if (letter >= 26)
            continue;
        for (uint32_t m = by_letter[letter] & pending; m; m &= m - 1) {
            int code = __builtin_ctz(m);
            size_t kl = klen[code], vl = cv->len[code];
            if ((size_t)(end - q) >= kl + vl && memcmp(q, cut_keys[code], kl) == 0 &&
                memcmp(q + kl, cv->v[code], vl) == 0) {
                pos[code] = (long)(q + kl - canon);
                pending &= ~(1u << code);
            }
        }
    }
}

/* Appends the header: version, flags, cuts, dictionary id, the prefix reference when set. */
static int put_header(struct gw_buf *out, int flags, const struct cut *cuts, int n,
                      const size_t *at, uint32_t dict, uint64_t prefix_delta)
{
    unsigned char head[3] = {CODEC_VERSION, (unsigned char)flags, (unsigned char)n};
    if (gw_buf_append(out, head, 3) != 0)
        return -1;
    size_t last = 0;
    for (int i = 0; i < n; i++) {
        unsigned char code = (unsigned char)cuts[i].code;
        if (gw_buf_append(out, &code, 1) != 0 || put_varint(out, at[i] - last) != 0)
            return -1;
        last = at[i];
    }
    if (put_varint(out, dict) != 0 || ((flags & 2) && put_varint(out, prefix_delta) != 0))
        return -1;
    return 0;
}

/* Version 2's header: version, flags, dictionary id, the prefix reference when set. */
static int put_marker_header(struct gw_buf *out, int flags, uint32_t dict, uint64_t prefix_delta)
{
    unsigned char head[2] = {CODEC_VERSION_MARKERS, (unsigned char)flags};
    if (gw_buf_append(out, head, 2) != 0 || put_varint(out, dict) != 0 ||
        ((flags & 2) && put_varint(out, prefix_delta) != 0))
        return -1;
    return 0;
}

int audit_codec_encode(struct audit_codec *c, const char *canon, size_t len,
                       const struct audit_cut_values *cv, struct gw_buf *out)
{
    struct cut cuts[AUDIT_CUT_MAX];
    size_t at[AUDIT_CUT_MAX];
    int n = 0;
    gw_buf_reset(out);
    if (cv) {
        long pos[AUDIT_CUT_MAX];
        find_values(canon, len, cv, pos);
        for (int code = 1; code < AUDIT_CUT_MAX; code++)
            if (pos[code] >= 0)
                cuts[n++] = (struct cut){(size_t)pos[code], cv->len[code], code};
    }
    qsort(cuts, (size_t)n, sizeof cuts[0], cut_cmp);
    for (int i = 1; i < n; i++)
        if (cuts[i].pos < cuts[i - 1].pos + cuts[i - 1].len)
            return -1; /* cannot happen for distinct keys; refuse rather than guess */
    /* Version 2 marks each cut by its code: only where no byte of the text can be taken for one. */
    int markers = c->markers;
    for (size_t i = 0; markers && i < len; i++)
        markers = (unsigned char)canon[i] >= 0x20;
    struct gw_buf *reduced = &c->scratch;
    gw_buf_reset(reduced);
    size_t from = 0;
    for (int i = 0; i < n; i++) {
        if (gw_buf_append(reduced, canon + from, cuts[i].pos - from) != 0)
            return -1;
        at[i] = reduced->len;
        unsigned char code = (unsigned char)cuts[i].code;
        if (markers && gw_buf_append(reduced, &code, 1) != 0)
            return -1;
        from = cuts[i].pos + cuts[i].len;
    }
    if (gw_buf_append(reduced, canon + from, len - from) != 0)
        return -1;
    if (c->markers && !markers) {
        /* Version 1's frames carry the magic number. */
        size_t z = ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_format, ZSTD_f_zstd1);
        int rc = ZSTD_isError(z) ? -1 : 0;
        c->markers = 0;
        if (rc == 0)
            rc = audit_codec_encode(c, canon, len, cv, out);
        if (audit_codec_use_markers(c) != 0)
            rc = -1;
        return rc;
    }
    /*
     * A completion may be compressed against its decision record instead: before the store
     * has a dictionary, both ways are tried and the smaller kept. Once it has one, the
     * dictionary alone: it was the smaller for 99.7% of the completions of the gateway's bench
     * and 95% of the generator's, so the second try (a third of the writer's compression)
     * saved about half a byte a call.
     */
    struct codec_dict *d = c->in_use ? find_dict(c, c->in_use) : NULL;
    int ways = cv && cv->prefix && cv->prefix_delta && !d ? 2 : 1;
    size_t best = 0;
    for (int way = 0; way < ways; way++) {
        int prefixed = way == 1;
        size_t z = ZSTD_CCtx_reset(c->cctx, ZSTD_reset_session_only);
        if (!ZSTD_isError(z))
            z = ZSTD_CCtx_refCDict(c->cctx, d && !prefixed ? d->cdict : NULL);
        if (!ZSTD_isError(z) && (!d || prefixed))
            z = ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, c->level);
        if (!ZSTD_isError(z) && prefixed)
            z = ZSTD_CCtx_refPrefix(c->cctx, cv->prefix, cv->prefix_len);
        size_t bound = ZSTD_compressBound(reduced->len);
        if (gw_buf_reserve(&c->frame[way], bound) != 0)
            return -1;
        if (!ZSTD_isError(z))
            z = ZSTD_compress2(c->cctx, c->frame[way].data, bound, reduced->data, reduced->len);
        c->frame[way].len = ZSTD_isError(z) ? 0 : z;
        if (c->frame[way].len && (!best || c->frame[way].len < c->frame[best - 1].len))
            best = (size_t)way + 1;
    }
    if (best && c->frame[best - 1].len < reduced->len) {
        int prefixed = best == 2;
        if (markers ? put_marker_header(out, 1 | (prefixed ? 2 : 0), d && !prefixed ? d->id : 0,
                                        prefixed ? cv->prefix_delta : 0)
                    : put_header(out, 1 | (prefixed ? 2 : 0), cuts, n, at,
                                 d && !prefixed ? d->id : 0, prefixed ? cv->prefix_delta : 0))
            return -1;
        return gw_buf_append(out, c->frame[best - 1].data, c->frame[best - 1].len);
    }
    /* Compression did not help: the reduced text as it is, referring to nothing. */
    gw_buf_reset(out);
    if (markers ? put_marker_header(out, 0, 0, 0) : put_header(out, 0, cuts, n, at, 0, 0))
        return -1;
    return gw_buf_append(out, reduced->data, reduced->len);
}

/* Walks the header to the dictionary id; *flags gets the flags. */
static const unsigned char *header_dict(const unsigned char *p, const unsigned char *end,
                                        int *flags, uint64_t *dict)
{
    if (end - p >= 2 && p[0] == CODEC_VERSION_MARKERS) {
        *flags = p[1];
        p += 2;
        if (get_varint(&p, end, dict) != 0 || *dict > UINT32_MAX)
            return NULL;
        return p;
    }
    if (end - p < 3 || p[0] != CODEC_VERSION)
        return NULL;
    *flags = p[1];
    unsigned n = p[2];
    p += 3;
    uint64_t v;
    for (unsigned i = 0; i < n; i++)
        if (p++ >= end || get_varint(&p, end, &v) != 0)
            return NULL;
    if (get_varint(&p, end, dict) != 0 || *dict > UINT32_MAX)
        return NULL;
    return p;
}

int64_t audit_codec_blob_dict(const void *blob, size_t len)
{
    int flags;
    uint64_t dict;
    const unsigned char *p = blob;
    return header_dict(p, p + len, &flags, &dict) ? (int64_t)dict : -1;
}

int64_t audit_codec_blob_prefix(const void *blob, size_t len)
{
    int flags;
    uint64_t dict, delta;
    const unsigned char *p = blob, *end = p + len;
    if (!(p = header_dict(p, end, &flags, &dict)))
        return -1;
    if (!(flags & 2))
        return 0;
    if (get_varint(&p, end, &delta) != 0 || delta == 0 || delta > INT64_MAX)
        return -1;
    return (int64_t)delta;
}

static int bad(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "stored record is damaged: %s", what);
    return -1;
}

/*
 * The payload of a blob into c->scratch (when compressed) or in place: *text, *tlen. The
 * frame format is version 2's (no magic number) when magicless. 0, or -1 with err.
 */
static int payload_text(struct audit_codec *c, const unsigned char *p, size_t rlen, int compressed,
                        int prefixed, uint64_t dict, int magicless,
                        const struct audit_cut_values *cv, const char **text, size_t *tlen,
                        char *err, size_t errlen)
{
    *text = (const char *)p;
    *tlen = rlen;
    if (!compressed)
        return 0;
    if (magicless != c->dctx_magicless) {
        size_t z = ZSTD_DCtx_setParameter(c->dctx, ZSTD_d_format,
                                          magicless ? ZSTD_f_zstd1_magicless : ZSTD_f_zstd1);
        if (ZSTD_isError(z))
            return bad(err, errlen, "bad compressed frame");
        c->dctx_magicless = magicless;
    }
    unsigned long long size;
    if (magicless) {
        ZSTD_frameHeader fh;
        size = ZSTD_getFrameHeader_advanced(&fh, p, rlen, ZSTD_f_zstd1_magicless) == 0 &&
                       fh.frameType == ZSTD_frame
                   ? fh.frameContentSize
                   : ZSTD_CONTENTSIZE_ERROR;
    } else
        size = ZSTD_getFrameContentSize(p, rlen);
    if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR ||
        size > AUDIT_CODEC_MAX_RECORD)
        return bad(err, errlen, "bad compressed frame");
    struct codec_dict *d = dict ? find_dict(c, (uint32_t)dict) : NULL;
    if (dict && !d)
        return bad(err, errlen, "names a dictionary the store does not hold");
    gw_buf_reset(&c->scratch);
    if (gw_buf_reserve(&c->scratch, (size_t)size + 1) != 0)
        return bad(err, errlen, "out of memory");
    size_t z;
    if (prefixed) {
        z = ZSTD_DCtx_reset(c->dctx, ZSTD_reset_session_only);
        if (!ZSTD_isError(z))
            z = ZSTD_DCtx_refPrefix(c->dctx, cv->prefix, cv->prefix_len);
        if (!ZSTD_isError(z))
            z = ZSTD_decompressDCtx(c->dctx, c->scratch.data, (size_t)size, p, rlen);
    } else if (d)
        z = ZSTD_decompress_usingDDict(c->dctx, c->scratch.data, (size_t)size, p, rlen, d->ddict);
    else
        z = ZSTD_decompressDCtx(c->dctx, c->scratch.data, (size_t)size, p, rlen);
    if (ZSTD_isError(z) || z != size)
        return bad(err, errlen, "compressed frame does not decode");
    c->scratch.len = z;
    *text = c->scratch.data;
    *tlen = z;
    return 0;
}

/* The offset of the next marker byte (below 0x20) in text from i on; n when none is left. */
static size_t next_marker(const char *text, size_t i, size_t n)
{
    for (; i + 8 <= n; i += 8) {
        uint64_t m = gw_word_below(gw_word_load(text + i), 0x20);
        if (m)
            return i + gw_word_first(m);
    }
    while (i < n && (unsigned char)text[i] >= 0x20)
        i++;
    return i;
}

/* Version 2: the reduced text with each marker byte replaced by its value. */
static int decode_markers(struct audit_codec *c, const unsigned char *p, const unsigned char *end,
                          const struct audit_cut_values *cv, struct gw_buf *out, int *needs,
                          char *err, size_t errlen)
{
    int flags = p[1];
    uint64_t dict, delta = 0;
    p += 2;
    if (flags > 3 || get_varint(&p, end, &dict) != 0 || dict > UINT32_MAX ||
        ((flags & 2) && get_varint(&p, end, &delta) != 0) ||
        ((flags & 2) && (!(flags & 1) || dict || !delta)))
        return bad(err, errlen, "bad header");
    if ((flags & 2) && (!cv || !cv->prefix || cv->prefix_delta != delta)) {
        *needs = AUDIT_NEED_PREFIX;
        return 0;
    }
    const char *text;
    size_t tlen;
    if (payload_text(c, p, (size_t)(end - p), flags & 1, flags & 2, dict, 1, cv, &text, &tlen, err,
                     errlen) != 0)
        return -1;
    /* One pass for the size (and whether every value is at hand), one to write. */
    size_t total = tlen;
    for (size_t i = next_marker(text, 0, tlen); i < tlen; i = next_marker(text, i + 1, tlen)) {
        unsigned char b = (unsigned char)text[i];
        total--;
        if (b < 1 || b >= AUDIT_CUT_MAX)
            return bad(err, errlen, "unknown value marker");
        if (!cv || !cv->v[b]) {
            if (b == AUDIT_CUT_PREV_HASH || b == AUDIT_CUT_HEAD_HASH) {
                *needs = AUDIT_NEED_PREV;
                return 0;
            }
            return bad(err, errlen, "a value it leaves to its row is missing");
        }
        total += cv->len[b];
    }
    if (total > AUDIT_CODEC_MAX_RECORD || gw_buf_reserve(out, total + 1) != 0)
        return bad(err, errlen, "too large");
    char *o = out->data;
    size_t from = 0;
    for (size_t i = next_marker(text, 0, tlen); i < tlen; i = next_marker(text, i + 1, tlen)) {
        unsigned char b = (unsigned char)text[i];
        memcpy(o, text + from, i - from);
        o += i - from;
        memcpy(o, cv->v[b], cv->len[b]);
        o += cv->len[b];
        from = i + 1;
    }
    memcpy(o, text + from, tlen - from);
    o += tlen - from;
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
    return 0;
}

int audit_codec_decode(struct audit_codec *c, const void *blob, size_t len,
                       const struct audit_cut_values *cv, struct gw_buf *out, int *needs, char *err,
                       size_t errlen)
{
    const unsigned char *p = blob, *end = p + len;
    struct cut cuts[AUDIT_CUT_MAX];
    *needs = 0;
    gw_buf_reset(out);
    if (len >= 2 && p[0] == CODEC_VERSION_MARKERS)
        return decode_markers(c, p, end, cv, out, needs, err, errlen);
    if (len < 3 || p[0] != CODEC_VERSION || p[1] > 3 || p[2] >= AUDIT_CUT_MAX)
        return bad(err, errlen, "unknown encoding");
    int compressed = p[1] & 1, prefixed = p[1] & 2, n = p[2];
    p += 3;
    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        uint64_t delta;
        if (p >= end)
            return bad(err, errlen, "truncated header");
        int code = *p++;
        if (code < 1 || code >= AUDIT_CUT_MAX || get_varint(&p, end, &delta) != 0 ||
            delta > AUDIT_CODEC_MAX_RECORD)
            return bad(err, errlen, "bad header");
        pos += (size_t)delta;
        cuts[i] = (struct cut){pos, 0, code};
        if (!cv || !cv->v[code]) {
            if (code == AUDIT_CUT_PREV_HASH || code == AUDIT_CUT_HEAD_HASH) {
                *needs = AUDIT_NEED_PREV;
                return 0;
            }
            return bad(err, errlen, "a value it leaves to its row is missing");
        }
    }
    uint64_t dict, delta = 0;
    if (get_varint(&p, end, &dict) != 0 || (prefixed && get_varint(&p, end, &delta) != 0) ||
        (prefixed && (!compressed || dict || !delta)))
        return bad(err, errlen, "bad header");
    if (prefixed && (!cv->prefix || cv->prefix_delta != delta)) {
        *needs = AUDIT_NEED_PREFIX;
        return 0;
    }
    const char *reduced;
    size_t rlen;
    if (payload_text(c, p, (size_t)(end - p), compressed, prefixed, dict, 0, cv, &reduced, &rlen,
                     err, errlen) != 0)
        return -1;
    size_t from = 0, total = rlen;
    for (int i = 0; i < n; i++)
        total += cv->len[cuts[i].code];
    if (total > AUDIT_CODEC_MAX_RECORD || gw_buf_reserve(out, total + 1) != 0)
        return bad(err, errlen, "too large");
    for (int i = 0; i < n; i++) {
        if (cuts[i].pos > rlen)
            return bad(err, errlen, "a cut lies beyond its text");
        if (gw_buf_append(out, reduced + from, cuts[i].pos - from) != 0 ||
            gw_buf_append(out, cv->v[cuts[i].code], cv->len[cuts[i].code]) != 0)
            return bad(err, errlen, "out of memory");
        from = cuts[i].pos;
    }
    if (gw_buf_append(out, reduced + from, rlen - from) != 0)
        return bad(err, errlen, "out of memory");
    return 0;
}
