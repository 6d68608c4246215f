#include "telemetry/otlp.h"

#include <string.h>

/* Wire types. */
#define WT_VARINT 0
#define WT_I64 1
#define WT_LEN 2
#define WT_I32 5

/* Fields used (opentelemetry/proto/.../v1). */
#define F_SCOPE_SPANS_SPANS 2
#define F_SPAN_TRACE_ID 1
#define F_SPAN_SPAN_ID 2
#define F_SPAN_TRACE_STATE 3
#define F_SPAN_PARENT_ID 4
#define F_SPAN_NAME 5
#define F_SPAN_KIND 6
#define F_SPAN_START 7
#define F_SPAN_END 8
#define F_SPAN_ATTRIBUTES 9
#define F_SPAN_STATUS 15
#define F_SPAN_FLAGS 16
#define F_STATUS_MESSAGE 2
#define F_STATUS_CODE 3
#define F_KV_KEY 1
#define F_KV_VALUE 2
#define F_ANY_STRING 1
#define F_ANY_BOOL 2
#define F_ANY_INT 3

/* SpanFlags: the low byte is the W3C trace flags; then whether the parent is remote. */
#define SPAN_FLAGS_HAS_IS_REMOTE 0x100u
#define SPAN_FLAGS_IS_REMOTE 0x200u

#define LEN_ROOM 5 /* a 32-bit length as a varint takes at most 5 bytes */

/* gw_buf_append without the call when there is room (spans are many small writes). */
static inline int put_raw(struct gw_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len > n) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
    }
    return gw_buf_append(b, p, n);
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static int put_varint(struct gw_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    return put_raw(b, tmp, n);
}

static int put_tag(struct gw_buf *b, unsigned field, unsigned wire)
{
    return put_varint(b, (uint64_t)field << 3 | wire);
}

static int put_bytes(struct gw_buf *b, unsigned field, const void *p, size_t n)
{
    if (put_tag(b, field, WT_LEN) != 0 || put_varint(b, n) != 0)
        return -1;
    return put_raw(b, p, n);
}

static int put_fixed(struct gw_buf *b, unsigned field, uint64_t v, int bytes)
{
    uint8_t tmp[8];
    for (int i = 0; i < bytes; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    if (put_tag(b, field, bytes == 8 ? WT_I64 : WT_I32) != 0)
        return -1;
    return put_raw(b, tmp, (size_t)bytes);
}

/* Starts a length-delimited field whose length is not known yet. */
static int open_len(struct gw_buf *b, unsigned field, size_t *mark)
{
    if (put_tag(b, field, WT_LEN) != 0 || gw_buf_reserve(b, LEN_ROOM) != 0)
        return -1;
    *mark = b->len;
    b->len += LEN_ROOM;
    return 0;
}

/* Writes the length of what follows mark's room and closes the gap. */
static int close_len(struct gw_buf *b, size_t mark)
{
    size_t body = b->len - mark - LEN_ROOM;
    if (body > UINT32_MAX)
        return -1;
    uint8_t tmp[LEN_ROOM];
    size_t n = 0;
    uint64_t v = body;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    char *base = b->data + mark;
    memcpy(base, tmp, n);
    memmove(base + n, base + LEN_ROOM, body);
    b->len -= LEN_ROOM - n;
    return 0;
}

int otlp_span_begin(struct gw_buf *b, const struct otlp_span *s, size_t *mark)
{
    if (open_len(b, F_SCOPE_SPANS_SPANS, mark) != 0)
        return -1;
    if (put_bytes(b, F_SPAN_TRACE_ID, s->trace_id, 16) != 0 ||
        put_bytes(b, F_SPAN_SPAN_ID, s->span_id, 8) != 0)
        return -1;
    if (s->trace_state && *s->trace_state &&
        put_bytes(b, F_SPAN_TRACE_STATE, s->trace_state, strlen(s->trace_state)) != 0)
        return -1;
    if (s->parent_span_id && put_bytes(b, F_SPAN_PARENT_ID, s->parent_span_id, 8) != 0)
        return -1;
    if (put_bytes(b, F_SPAN_NAME, s->name, strlen(s->name)) != 0)
        return -1;
    if (put_tag(b, F_SPAN_KIND, WT_VARINT) != 0 || put_varint(b, (uint64_t)s->kind) != 0)
        return -1;
    if (put_fixed(b, F_SPAN_START, s->start_unix_ns, 8) != 0 ||
        put_fixed(b, F_SPAN_END, s->end_unix_ns, 8) != 0)
        return -1;
    uint32_t flags = s->trace_flags | SPAN_FLAGS_HAS_IS_REMOTE;
    if (s->parent_span_id && s->parent_remote)
        flags |= SPAN_FLAGS_IS_REMOTE;
    return put_fixed(b, F_SPAN_FLAGS, flags, 4);
}

int otlp_span_end(struct gw_buf *b, size_t mark)
{
    return close_len(b, mark);
}

/* A KeyValue under `field` with a string value. */
static int kv_str(struct gw_buf *b, unsigned field, const char *key, const char *v, size_t n)
{
    size_t kn = strlen(key);
    size_t any = 1 + varint_size(n) + n;
    size_t kv = 1 + varint_size(kn) + kn + 1 + varint_size(any) + any;
    if (put_tag(b, field, WT_LEN) != 0 || put_varint(b, kv) != 0)
        return -1;
    if (put_bytes(b, F_KV_KEY, key, kn) != 0 || put_tag(b, F_KV_VALUE, WT_LEN) != 0 ||
        put_varint(b, any) != 0)
        return -1;
    return put_bytes(b, F_ANY_STRING, v, n);
}

static int kv_varint(struct gw_buf *b, unsigned field, const char *key, unsigned any_field,
                     uint64_t v)
{
    size_t kn = strlen(key);
    size_t any = 1 + varint_size(v);
    size_t kv = 1 + varint_size(kn) + kn + 1 + varint_size(any) + any;
    if (put_tag(b, field, WT_LEN) != 0 || put_varint(b, kv) != 0)
        return -1;
    if (put_bytes(b, F_KV_KEY, key, kn) != 0 || put_tag(b, F_KV_VALUE, WT_LEN) != 0 ||
        put_varint(b, any) != 0)
        return -1;
    return put_tag(b, any_field, WT_VARINT) == 0 && put_varint(b, v) == 0 ? 0 : -1;
}

size_t otlp_utf8_prefix(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t k = max;
    while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80)
        k--;
    return k;
}

int otlp_attr_str(struct gw_buf *b, const char *key, const char *v, size_t n)
{
    if (!v || n == 0)
        return 0;
    return kv_str(b, F_SPAN_ATTRIBUTES, key, v, otlp_utf8_prefix(v, n, OTLP_MAX_VALUE));
}

int otlp_attr_cstr(struct gw_buf *b, const char *key, const char *v)
{
    return otlp_attr_str(b, key, v, v ? strlen(v) : 0);
}

int otlp_attr_int(struct gw_buf *b, const char *key, int64_t v)
{
    return kv_varint(b, F_SPAN_ATTRIBUTES, key, F_ANY_INT, (uint64_t)v);
}

int otlp_attr_bool(struct gw_buf *b, const char *key, int v)
{
    return kv_varint(b, F_SPAN_ATTRIBUTES, key, F_ANY_BOOL, v ? 1 : 0);
}

int otlp_status(struct gw_buf *b, enum otlp_status_code code, const char *message)
{
    size_t mark;
    if (open_len(b, F_SPAN_STATUS, &mark) != 0)
        return -1;
    if (message && *message && put_bytes(b, F_STATUS_MESSAGE, message, strlen(message)) != 0)
        return -1;
    if (code != OTLP_STATUS_UNSET &&
        (put_tag(b, F_STATUS_CODE, WT_VARINT) != 0 || put_varint(b, (uint64_t)code) != 0))
        return -1;
    return close_len(b, mark);
}

int otlp_request(struct gw_buf *out, const char *const *keys, const char *const *values,
                 size_t n_attrs, const char *scope_version, const struct gw_slice *chunks,
                 size_t n_chunks)
{
    size_t rs, res, ss, scope;
    if (open_len(out, 1, &rs) != 0) /* ExportTraceServiceRequest.resource_spans */
        return -1;
    if (open_len(out, 1, &res) != 0) /* ResourceSpans.resource */
        return -1;
    for (size_t i = 0; i < n_attrs; i++)
        if (kv_str(out, 1, keys[i], values[i], strlen(values[i])) != 0) /* Resource.attributes */
            return -1;
    if (close_len(out, res) != 0 || open_len(out, 2, &ss) != 0) /* ResourceSpans.scope_spans */
        return -1;
    if (open_len(out, 1, &scope) != 0 || put_bytes(out, 1, "toolgate", 8) != 0 ||
        put_bytes(out, 2, scope_version, strlen(scope_version)) != 0 || close_len(out, scope) != 0)
        return -1;
    for (size_t i = 0; i < n_chunks; i++)
        if (gw_buf_append(out, chunks[i].ptr, chunks[i].len) != 0)
            return -1;
    if (close_len(out, ss) != 0)
        return -1;
    return close_len(out, rs);
}
