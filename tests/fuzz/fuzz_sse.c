/*
 * libFuzzer driver for sse_feed and sse_encode.
 *
 * Input: two bytes that seed the split points and pick the event bound, then the stream. The
 * stream is parsed once whole and once in pieces whose sizes come from the seed (many of
 * them a single byte); both runs must deliver byte-identical events and end alike. Every
 * event with data is re-encoded and parsed again, which must give back its fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/sse.h"

static void log_slice(struct gw_buf *b, char tag, struct gw_slice s)
{
    if (gw_buf_printf(b, "%c%zu:", tag, s.len) != 0 || gw_buf_append(b, s.ptr, s.len) != 0)
        abort();
}

static int collect_one(void *userdata, const struct sse_event *ev)
{
    struct gw_buf *log = userdata;
    log_slice(log, 'E', ev->event);
    log_slice(log, 'D', ev->data);
    log_slice(log, 'I', ev->id);
    if (gw_buf_printf(log, "h%d%d r%lld|", ev->has_id, ev->has_data, (long long)ev->retry) != 0)
        abort();
    return 0;
}

static int same(struct gw_slice a, struct gw_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Re-encodes an event and checks that parsing it gives the same fields. */
static void check_roundtrip(const struct sse_event *ev)
{
    struct gw_buf enc = {0}, log = {0}, want = {0};
    if (sse_encode(&enc, ev->event, ev->id, ev->has_id, -1, ev->data) != 0)
        abort(); /* nothing the parser delivers is unencodable */
    struct sse_parser p;
    sse_parser_init(&p, enc.len);
    if (sse_feed(&p, enc.data, enc.len, collect_one, &log) != 0)
        abort();
    sse_parser_free(&p);
    struct sse_event copy = *ev;
    copy.retry = -1;
    collect_one(&want, &copy);
    if (log.len != want.len || memcmp(log.data, want.data, log.len) != 0)
        abort();
    gw_buf_free(&enc);
    gw_buf_free(&log);
    gw_buf_free(&want);
}

struct run {
    struct gw_buf log;
    size_t max_event;
    int roundtrip;
};

static int collect(void *userdata, const struct sse_event *ev)
{
    struct run *r = userdata;
    if (ev->raw.len == 0 || ev->raw.len > r->max_event || ev->data.len > ev->raw.len)
        abort();
    log_slice(&r->log, 'W', ev->raw);
    collect_one(&r->log, ev);
    if (r->roundtrip && ev->has_data)
        check_roundtrip(ev);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint32_t seed = (uint32_t)data[0] * 2654435761u + data[1];
    size_t max_event = (data[1] & 1) ? 64 : 65536;
    const char *s = (const char *)data + 2;
    size_t n = size - 2;

    /* An answer read whole (JSON or a stream): a result, when there is one, is a reference. */
    json_decref(sse_answer_result(s, n, max_event));

    struct run whole = {.max_event = max_event, .roundtrip = 1};
    struct run split = {.max_event = max_event};
    struct sse_parser p;

    sse_parser_init(&p, max_event);
    int rc_whole = sse_feed(&p, s, n, collect, &whole);
    sse_parser_free(&p);

    sse_parser_init(&p, max_event);
    int rc_split = 0;
    size_t off = 0;
    while (off < n && rc_split == 0) {
        seed = seed * 1103515245u + 12345u;
        size_t piece = (seed >> 16) % 4 == 0 ? 1 + (seed >> 8) % 64 : 1;
        if (piece > n - off)
            piece = n - off;
        rc_split = sse_feed(&p, s + off, piece, collect, &split);
        off += piece;
    }
    sse_parser_free(&p);

    if (rc_whole != rc_split || (rc_whole != 0 && rc_whole != SSE_TOO_LARGE))
        abort();
    if (!same((struct gw_slice){whole.log.data, whole.log.len},
              (struct gw_slice){split.log.data, split.log.len}))
        abort();
    gw_buf_free(&whole.log);
    gw_buf_free(&split.log);
    return 0;
}
