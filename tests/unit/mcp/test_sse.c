#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "mcp/sse.h"

/* Copies of the events a parser delivered. */
#define MAX_EVENTS 256

struct rec_event {
    char *event, *data, *id, *raw;
    size_t event_len, data_len, id_len, raw_len;
    int has_id, has_data;
    int64_t retry;
};

struct recorder {
    struct rec_event ev[MAX_EVENTS];
    size_t n;
    int stop_after;    /* return 7 from the callback after this many events; 0 = never */
    struct gw_buf log; /* every event serialized, for comparing runs */
};

static char *copy(struct gw_slice s)
{
    char *p = malloc(s.len + 1);
    assert_non_null(p);
    if (s.len)
        memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
    return p;
}

static void log_slice(struct gw_buf *b, const char *tag, struct gw_slice s)
{
    assert_int_equal(gw_buf_printf(b, "%s%zu:", tag, s.len), 0);
    assert_int_equal(gw_buf_append(b, s.ptr, s.len), 0);
}

static int record(void *userdata, const struct sse_event *e)
{
    struct recorder *r = userdata;
    assert_true(r->n < MAX_EVENTS);
    /* Slices are never NULL, even when empty. */
    assert_non_null(e->event.ptr);
    assert_non_null(e->data.ptr);
    assert_non_null(e->id.ptr);
    assert_non_null(e->raw.ptr);
    struct rec_event *x = &r->ev[r->n++];
    x->event = copy(e->event);
    x->event_len = e->event.len;
    x->data = copy(e->data);
    x->data_len = e->data.len;
    x->id = copy(e->id);
    x->id_len = e->id.len;
    x->raw = copy(e->raw);
    x->raw_len = e->raw.len;
    x->has_id = e->has_id;
    x->has_data = e->has_data;
    x->retry = e->retry;
    log_slice(&r->log, "E", e->event);
    log_slice(&r->log, "D", e->data);
    log_slice(&r->log, "I", e->id);
    log_slice(&r->log, "W", e->raw);
    assert_int_equal(
        gw_buf_printf(&r->log, "h%d%d r%lld|", e->has_id, e->has_data, (long long)e->retry), 0);
    if (r->stop_after && r->n >= (size_t)r->stop_after)
        return 7;
    return 0;
}

static void recorder_free(struct recorder *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->ev[i].event);
        free(r->ev[i].data);
        free(r->ev[i].id);
        free(r->ev[i].raw);
    }
    gw_buf_free(&r->log);
    memset(r, 0, sizeof *r);
}

/* Parses a whole stream in one feed. */
static int parse_all(const char *s, size_t n, size_t max_event, struct recorder *r)
{
    struct sse_parser p;
    sse_parser_init(&p, max_event);
    int rc = sse_feed(&p, s, n, record, r);
    sse_parser_free(&p);
    return rc;
}

static int parse_str(const char *s, struct recorder *r)
{
    return parse_all(s, strlen(s), 1 << 20, r);
}

static void test_basic_event(void **state)
{
    (void)state;
    struct recorder r = {0};
    const char *s = "event: message\nid: 42\ndata: {\"a\":1}\n\n";
    assert_int_equal(parse_str(s, &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].event, "message");
    assert_string_equal(r.ev[0].id, "42");
    assert_int_equal(r.ev[0].has_id, 1);
    assert_int_equal(r.ev[0].has_data, 1);
    assert_string_equal(r.ev[0].data, "{\"a\":1}");
    assert_int_equal(r.ev[0].retry, -1);
    assert_string_equal(r.ev[0].raw, s);
    recorder_free(&r);
}

static void test_fields_and_spaces(void **state)
{
    (void)state;
    struct recorder r = {0};
    /* One space after the colon is removed, no more; no colon means an empty value. */
    assert_int_equal(parse_str("data:x\n\ndata:  y\n\ndata\n\ndata:\n\n", &r), 0);
    assert_int_equal(r.n, 4);
    assert_string_equal(r.ev[0].data, "x");
    assert_string_equal(r.ev[1].data, " y");
    assert_string_equal(r.ev[2].data, "");
    assert_int_equal(r.ev[2].has_data, 1);
    assert_string_equal(r.ev[3].data, "");
    assert_int_equal(r.ev[3].has_data, 1);
    recorder_free(&r);

    /* Data lines join with LF; trailing empty data lines add LFs. */
    assert_int_equal(parse_str("data: a\ndata: b\ndata:\ndata\n\n", &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].data, "a\nb\n\n");
    recorder_free(&r);

    /* Field names are case-sensitive; unknown ones are ignored; later event/id win. */
    assert_int_equal(
        parse_str("Data: no\nfoo: bar\nevent: a\nevent: b\nid: 1\nid: 2\ndata: yes\n\n", &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].data, "yes");
    assert_string_equal(r.ev[0].event, "b");
    assert_string_equal(r.ev[0].id, "2");
    recorder_free(&r);

    /* A colon in the value stays. */
    assert_int_equal(parse_str("data: a:b: c\n\n", &r), 0);
    assert_string_equal(r.ev[0].data, "a:b: c");
    recorder_free(&r);

    /* Fields do not carry over from one event to the next. */
    assert_int_equal(parse_str("event: e\nid: 1\nretry: 5\ndata: a\n\ndata: b\n\n", &r), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.ev[1].event, "");
    assert_int_equal(r.ev[1].has_id, 0);
    assert_int_equal(r.ev[1].retry, -1);
    recorder_free(&r);
}

static void test_id_rules(void **state)
{
    (void)state;
    struct recorder r = {0};
    const char s[] = "id: a\0b\ndata: x\n\nid\ndata: y\n\nid: \ndata: z\n\n";
    assert_int_equal(parse_all(s, sizeof s - 1, 1 << 20, &r), 0);
    assert_int_equal(r.n, 3);
    /* An id containing NUL is ignored. */
    assert_int_equal(r.ev[0].has_id, 0);
    /* An empty id is an id (it resets the client's last event id). */
    assert_int_equal(r.ev[1].has_id, 1);
    assert_int_equal(r.ev[1].id_len, 0);
    assert_int_equal(r.ev[2].has_id, 1);
    assert_int_equal(r.ev[2].id_len, 0);
    recorder_free(&r);

    /* A NUL id after a good one leaves the good one. */
    const char s2[] = "id: good\nid: b\0d\ndata: x\n\n";
    assert_int_equal(parse_all(s2, sizeof s2 - 1, 1 << 20, &r), 0);
    assert_string_equal(r.ev[0].id, "good");
    recorder_free(&r);

    /* NUL in data is kept as a byte. */
    const char s3[] = "data: a\0b\n\n";
    assert_int_equal(parse_all(s3, sizeof s3 - 1, 1 << 20, &r), 0);
    assert_int_equal(r.ev[0].data_len, 3);
    assert_memory_equal(r.ev[0].data, "a\0b", 3);
    recorder_free(&r);
}

static void test_retry_rules(void **state)
{
    (void)state;
    struct recorder r = {0};
    assert_int_equal(
        parse_str("retry: 3000\n\nretry: 10a\n\nretry: -1\n\nretry:\n\nretry:  5\n\n"
                  "retry: 99999999999999999999999\n\nretry: 0\n\nretry: 1\nretry: x\n\n",
                  &r),
        0);
    assert_int_equal(r.n, 8);
    assert_int_equal(r.ev[0].retry, 3000);
    assert_int_equal(r.ev[1].retry, -1);
    assert_int_equal(r.ev[2].retry, -1);
    assert_int_equal(r.ev[3].retry, -1);
    assert_int_equal(r.ev[4].retry, -1); /* " 5" is not digits */
    assert_int_equal(r.ev[5].retry, -1); /* overflow is ignored, not wrapped */
    assert_int_equal(r.ev[6].retry, 0);
    assert_int_equal(r.ev[7].retry, 1); /* an invalid retry does not undo a valid one */
    for (size_t i = 0; i < r.n; i++)
        assert_int_equal(r.ev[i].has_data, 0);
    recorder_free(&r);
}

static void test_line_endings(void **state)
{
    (void)state;
    struct recorder r = {0};
    /* LF, CRLF and CR mixed in one stream. */
    const char *s = "data: a\r\ndata: b\rdata: c\n\r\n"
                    "data: d\r\r"
                    "data: e\n\n";
    assert_int_equal(parse_str(s, &r), 0);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.ev[0].data, "a\nb\nc");
    assert_string_equal(r.ev[0].raw, "data: a\r\ndata: b\rdata: c\n\r");
    assert_string_equal(r.ev[1].data, "d");
    /* The LF after the blank line's CR was dropped, not carried into the next event. */
    assert_string_equal(r.ev[1].raw, "data: d\r\r");
    assert_string_equal(r.ev[2].raw, "data: e\n\n");
    recorder_free(&r);

    /* CR then LF across two feeds count once: no extra blank line, one event. */
    struct sse_parser p;
    sse_parser_init(&p, 1024);
    assert_int_equal(sse_feed(&p, "data: a\r", 8, record, &r), 0);
    assert_int_equal(sse_feed(&p, "\ndata: b\r", 9, record, &r), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(sse_feed(&p, "\n", 1, record, &r), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(sse_feed(&p, "\r", 1, record, &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].data, "a\nb");
    assert_int_equal(sse_feed(&p, "\n", 1, record, &r), 0);
    /* CR CR is two line ends: the second is the blank line. */
    assert_int_equal(sse_feed(&p, "data: c\r", 8, record, &r), 0);
    assert_int_equal(sse_feed(&p, "\r", 1, record, &r), 0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.ev[1].data, "c");
    /* LF CR: the CR is a second line end, not part of a pair. */
    assert_int_equal(sse_feed(&p, "data: d\n\r", 9, record, &r), 0);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.ev[2].data, "d");
    sse_parser_free(&p);
    recorder_free(&r);

    /* Blank lines with nothing before them deliver nothing. */
    assert_int_equal(parse_str("\n\r\n\r\r\n\n", &r), 0);
    assert_int_equal(r.n, 0);
    recorder_free(&r);

    /* An event without its blank line is not delivered. */
    assert_int_equal(parse_str("data: a\n\ndata: b\n", &r), 0);
    assert_int_equal(r.n, 1);
    recorder_free(&r);
}

static void test_bom(void **state)
{
    (void)state;
    struct recorder r = {0};
    assert_int_equal(parse_str("\xEF\xBB\xBF"
                               "data: a\n\n",
                               &r),
                     0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].data, "a");
    assert_string_equal(r.ev[0].raw, "data: a\n\n");
    recorder_free(&r);

    /* Split over feeds. */
    struct sse_parser p;
    sse_parser_init(&p, 1024);
    assert_int_equal(sse_feed(&p, "\xEF", 1, record, &r), 0);
    assert_int_equal(sse_feed(&p, "\xBB", 1, record, &r), 0);
    assert_int_equal(sse_feed(&p,
                              "\xBF"
                              "dat",
                              4, record, &r),
                     0);
    assert_int_equal(sse_feed(&p, "a: b\n\n", 6, record, &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].data, "b");
    sse_parser_free(&p);
    recorder_free(&r);

    /* Only at the start of the stream: a second BOM makes an unknown field name. */
    assert_int_equal(parse_str("\xEF\xBB\xBF\xEF\xBB\xBF"
                               "data: a\n\n",
                               &r),
                     0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].has_data, 0);
    recorder_free(&r);

    /* A partial BOM is data: its bytes stay in the first line. */
    assert_int_equal(parse_str("\xEF\xBB"
                               "data: a\n\n",
                               &r),
                     0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].has_data, 0);
    assert_int_equal(r.ev[0].raw_len, 11);
    recorder_free(&r);
    assert_int_equal(parse_str("\xEF\n\n", &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].raw, "\xEF\n\n");
    recorder_free(&r);
}

static void test_comments(void **state)
{
    (void)state;
    struct recorder r = {0};
    /* A keep-alive block of comments is delivered with has_data 0 so it can be relayed. */
    assert_int_equal(parse_str(": ping\n\n:\n: two\n\n", &r), 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.ev[0].has_data, 0);
    assert_string_equal(r.ev[0].raw, ": ping\n\n");
    assert_string_equal(r.ev[1].raw, ":\n: two\n\n");
    recorder_free(&r);

    /* Comments among fields are kept in raw and do not change the fields. */
    const char *s = ": hello\ndata: a\n: data: b\ndata: c\n\n";
    assert_int_equal(parse_str(s, &r), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ev[0].data, "a\nc");
    assert_string_equal(r.ev[0].raw, s);
    recorder_free(&r);

    /* A block of only an id or retry is delivered too (the client's last event id moves). */
    assert_int_equal(parse_str("id: 5\n\n", &r), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].has_data, 0);
    assert_int_equal(r.ev[0].has_id, 1);
    recorder_free(&r);
}

static void test_too_large(void **state)
{
    (void)state;
    struct recorder r = {0};
    /* "data: abc\n\n" is 11 bytes: exactly the bound passes. */
    assert_int_equal(parse_all("data: abc\n\n", 11, 11, &r), 0);
    assert_int_equal(r.n, 1);
    recorder_free(&r);
    assert_int_equal(parse_all("data: abc\n\n", 11, 10, &r), SSE_TOO_LARGE);
    assert_int_equal(r.n, 0);
    recorder_free(&r);

    /* The bound is per event; once exceeded the stream stays in error. */
    struct sse_parser p;
    sse_parser_init(&p, 16);
    for (int i = 0; i < 10; i++)
        assert_int_equal(sse_feed(&p, "data: 0123\n\n", 12, record, &r), 0);
    assert_int_equal(r.n, 10);
    /* An endless line without a line end is caught too, in small pieces. */
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++)
        rc = sse_feed(&p, "xx", 2, record, &r);
    assert_int_equal(rc, SSE_TOO_LARGE);
    assert_int_equal(sse_feed(&p, "\n\n", 2, record, &r), SSE_TOO_LARGE);
    assert_int_equal(r.n, 10);
    sse_parser_free(&p);
    recorder_free(&r);

    /* Comments count: a stream of comment lines with no blank line is bounded. */
    sse_parser_init(&p, 64);
    rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++)
        rc = sse_feed(&p, ": keep\n", 7, record, &r);
    assert_int_equal(rc, SSE_TOO_LARGE);
    sse_parser_free(&p);
    recorder_free(&r);

    /* max_event 0 is the default bound, not "unbounded". */
    sse_parser_init(&p, 0);
    assert_true(p.max_event > 0);
    sse_parser_free(&p);
}

static void test_callback_stops(void **state)
{
    (void)state;
    struct recorder r = {0};
    r.stop_after = 2;
    assert_int_equal(parse_str("data: 1\n\ndata: 2\n\ndata: 3\n\n", &r), 7);
    assert_int_equal(r.n, 2);
    recorder_free(&r);
}

/* Feeding in pieces of the sizes drawn from seed gives the same events as one feed. */
static void feed_split(const char *s, size_t n, size_t max_event, unsigned *seed, size_t max_piece,
                       struct recorder *r, int *rc_out)
{
    struct sse_parser p;
    sse_parser_init(&p, max_event);
    size_t off = 0;
    int rc = 0;
    while (off < n && rc == 0) {
        size_t piece = max_piece <= 1 ? 1 : (size_t)(rand_r(seed) % max_piece);
        if (piece > n - off)
            piece = n - off;
        rc = sse_feed(&p, s + off, piece, record, r);
        off += piece;
    }
    *rc_out = rc;
    sse_parser_free(&p);
}

/* Builds a random stream from the pieces a hostile upstream might send. */
static size_t random_stream(char *out, size_t cap, unsigned *seed)
{
    static const char *const atoms[] = {
        "data",         "data:",    "data: ",    "data:x",   "event: e",
        "id: 1",        "id",       "retry: 12", "retry: x", ":",
        ": c",          "foo: bar", "\n",        "\r",       "\r\n",
        "\n\n",         "\r\r",     "\r\n\r\n",  " ",        "x",
        "\xEF\xBB\xBF", "\xEF",     "\0",        "::",       "data: {\"a\":[1]}",
    };
    size_t n = 0;
    size_t count = (size_t)(rand_r(seed) % 60);
    for (size_t i = 0; i < count; i++) {
        const char *a = atoms[rand_r(seed) % (sizeof atoms / sizeof *atoms)];
        size_t len = a[0] == '\0' ? 1 : strlen(a);
        if (n + len > cap)
            break;
        memcpy(out + n, a, len);
        n += len;
    }
    return n;
}

static void test_random_splits(void **state)
{
    (void)state;
    unsigned seed = 12345;
    char stream[2048];
    size_t total_events = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = random_stream(stream, sizeof stream, &seed);
        size_t max_event = iter % 4 == 0 ? 32 : 4096;
        struct recorder whole = {0}, bytes = {0}, pieces = {0};
        int rc_whole = parse_all(stream, n, max_event, &whole);
        int rc_bytes, rc_pieces;
        feed_split(stream, n, max_event, &seed, 1, &bytes, &rc_bytes);
        feed_split(stream, n, max_event, &seed, 1 + (size_t)(rand_r(&seed) % 16), &pieces,
                   &rc_pieces);
        assert_int_equal(rc_whole, rc_bytes);
        assert_int_equal(rc_whole, rc_pieces);
        assert_int_equal(whole.n, bytes.n);
        assert_int_equal(whole.n, pieces.n);
        assert_int_equal(whole.log.len, bytes.log.len);
        assert_int_equal(whole.log.len, pieces.log.len);
        if (whole.log.len) {
            assert_memory_equal(whole.log.data, bytes.log.data, whole.log.len);
            assert_memory_equal(whole.log.data, pieces.log.data, whole.log.len);
        }
        total_events += whole.n;
        recorder_free(&whole);
        recorder_free(&bytes);
        recorder_free(&pieces);
    }
    /* The generator must actually exercise delivery. */
    assert_true(total_events > 1000);
}

static void test_long_line_linear(void **state)
{
    (void)state;
    /* A 4 MiB line fed a byte at a time: a parser that rescans its buffer per feed would take
     * hours here; a linear one takes well under a second. */
    size_t n = (size_t)4 << 20;
    struct sse_parser p;
    struct recorder r = {0};
    sse_parser_init(&p, n + 64);
    clock_t start = clock();
    assert_int_equal(sse_feed(&p, "data: ", 6, record, &r), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sse_feed(&p, "a", 1, record, &r), 0);
    assert_int_equal(sse_feed(&p, "\n\n", 2, record, &r), 0);
    double secs = (double)(clock() - start) / CLOCKS_PER_SEC;
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].data_len, n);
    assert_true(secs < 10.0);
    sse_parser_free(&p);
    recorder_free(&r);
}

static void test_encode(void **state)
{
    (void)state;
    struct gw_buf out = {0};
    assert_int_equal(sse_encode(&out, GW_SLICE_NULL, GW_SLICE_NULL, 0, -1, GW_SLICE_LIT("{}")), 0);
    assert_string_equal(out.data, "data: {}\n\n");
    gw_buf_reset(&out);
    assert_int_equal(
        sse_encode(&out, GW_SLICE_LIT("message"), GW_SLICE_LIT("7"), 1, -1, GW_SLICE_LIT("a\nb\n")),
        0);
    assert_string_equal(out.data, "id: 7\nevent: message\ndata: a\ndata: b\ndata: \n\n");
    gw_buf_reset(&out);
    /* Empty data still gets one data line; an empty id is written when has_id. */
    assert_int_equal(sse_encode(&out, GW_SLICE_NULL, GW_SLICE_LIT(""), 1, -1, GW_SLICE_NULL), 0);
    assert_string_equal(out.data, "id: \ndata: \n\n");
    gw_buf_reset(&out);
    /* CR and CRLF in data are line breaks as well (a CR could never be carried). */
    assert_int_equal(
        sse_encode(&out, GW_SLICE_NULL, GW_SLICE_NULL, 0, -1, GW_SLICE_LIT("a\r\nb\rc\n\rd")), 0);
    assert_string_equal(out.data, "data: a\ndata: b\ndata: c\ndata: \ndata: d\n\n");
    gw_buf_reset(&out);

    /* Fields that would break the framing are refused and leave the buffer as it was. */
    assert_int_equal(gw_buf_append_str(&out, "keep"), 0);
    assert_int_equal(
        sse_encode(&out, GW_SLICE_LIT("a\nb"), GW_SLICE_NULL, 0, -1, GW_SLICE_LIT("x")), -1);
    assert_int_equal(
        sse_encode(&out, GW_SLICE_LIT("a\rb"), GW_SLICE_NULL, 0, -1, GW_SLICE_LIT("x")), -1);
    assert_int_equal(sse_encode(&out, GW_SLICE_NULL, GW_SLICE_LIT("1\n"), 1, -1, GW_SLICE_LIT("x")),
                     -1);
    struct gw_slice nul_id = {"a\0b", 3};
    assert_int_equal(sse_encode(&out, GW_SLICE_NULL, nul_id, 1, -1, GW_SLICE_LIT("x")), -1);
    assert_string_equal(out.data, "keep");
    assert_int_equal(out.len, 4);
    /* ...but an id with a line break is irrelevant when has_id is 0. */
    assert_int_equal(sse_encode(&out, GW_SLICE_NULL, GW_SLICE_LIT("1\n"), 0, -1, GW_SLICE_LIT("x")),
                     0);
    assert_string_equal(out.data, "keepdata: x\n\n");
    gw_buf_free(&out);
}

static void test_encode_roundtrip(void **state)
{
    (void)state;
    const char *datas[] = {"", "x", "\n", "a\nb", " lead", "{\"k\":\"v\"}\n\n", ": not a comment"};
    for (size_t i = 0; i < sizeof datas / sizeof *datas; i++) {
        struct gw_buf out = {0};
        struct gw_slice data = {datas[i], strlen(datas[i])};
        assert_int_equal(sse_encode(&out, GW_SLICE_LIT("ev"), GW_SLICE_LIT(" id"), 1, -1, data), 0);
        struct recorder r = {0};
        assert_int_equal(parse_all(out.data, out.len, 4096, &r), 0);
        assert_int_equal(r.n, 1);
        assert_int_equal(r.ev[0].has_data, 1);
        assert_string_equal(r.ev[0].data, datas[i]);
        assert_string_equal(r.ev[0].event, "ev");
        assert_string_equal(r.ev[0].id, " id");
        assert_int_equal(r.ev[0].raw_len, out.len);
        recorder_free(&r);
        gw_buf_free(&out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_event),      cmocka_unit_test(test_fields_and_spaces),
        cmocka_unit_test(test_id_rules),         cmocka_unit_test(test_retry_rules),
        cmocka_unit_test(test_line_endings),     cmocka_unit_test(test_bom),
        cmocka_unit_test(test_comments),         cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_callback_stops),   cmocka_unit_test(test_random_splits),
        cmocka_unit_test(test_long_line_linear), cmocka_unit_test(test_encode),
        cmocka_unit_test(test_encode_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
