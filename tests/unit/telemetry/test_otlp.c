/*
 * Tests for otlp.c: the protobuf bytes of spans. A generic protobuf wire-format reader (tags,
 * varints, fixed, length-delimited; nothing about OTLP) walks what the encoder wrote and the
 * tests check the OTLP field numbers and values. The e2e tests decode the same bytes with the
 * OpenTelemetry project's own definitions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "telemetry/otlp.h"

struct field {
    unsigned num, wire;
    uint64_t v;       /* varint or fixed */
    const uint8_t *p; /* length-delimited */
    size_t n;
};

/* Reads the field at *pos of [p, end); returns 0, or -1 on malformed input. */
static int next_field(const uint8_t *p, size_t len, size_t *pos, struct field *f)
{
    uint64_t tag = 0;
    unsigned shift = 0;
    for (;;) {
        if (*pos >= len || shift > 63)
            return -1;
        uint8_t b = p[(*pos)++];
        tag |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80))
            break;
    }
    f->num = (unsigned)(tag >> 3);
    f->wire = (unsigned)(tag & 7);
    f->v = 0;
    f->p = NULL;
    f->n = 0;
    if (f->wire == 0 || f->wire == 2) {
        uint64_t v = 0;
        shift = 0;
        for (;;) {
            if (*pos >= len || shift > 63)
                return -1;
            uint8_t b = p[(*pos)++];
            v |= (uint64_t)(b & 0x7f) << shift;
            shift += 7;
            if (!(b & 0x80))
                break;
        }
        if (f->wire == 0) {
            f->v = v;
            return 0;
        }
        if (v > len - *pos)
            return -1;
        f->p = p + *pos;
        f->n = (size_t)v;
        *pos += (size_t)v;
        return 0;
    }
    size_t w = f->wire == 1 ? 8 : f->wire == 5 ? 4 : 0;
    if (!w || len - *pos < w)
        return -1;
    for (size_t i = 0; i < w; i++)
        f->v |= (uint64_t)p[*pos + i] << (8 * i);
    *pos += w;
    return 0;
}

/* The first field numbered num in [p, p+len); asserts there is one. */
static struct field get(const uint8_t *p, size_t len, unsigned num)
{
    size_t pos = 0;
    struct field f;
    while (pos < len) {
        assert_int_equal(next_field(p, len, &pos, &f), 0);
        if (f.num == num)
            return f;
    }
    fail_msg("no field %u", num);
    return f;
}

static size_t count(const uint8_t *p, size_t len, unsigned num)
{
    size_t pos = 0, n = 0;
    struct field f;
    while (pos < len) {
        assert_int_equal(next_field(p, len, &pos, &f), 0);
        n += f.num == num;
    }
    return n;
}

/* The attribute `key` of a span (field 9 KeyValue): its AnyValue. */
static struct field attr(const uint8_t *span, size_t len, const char *key)
{
    size_t pos = 0;
    struct field f;
    while (pos < len) {
        assert_int_equal(next_field(span, len, &pos, &f), 0);
        if (f.num != 9)
            continue;
        struct field k = get(f.p, f.n, 1);
        if (k.n == strlen(key) && memcmp(k.p, key, k.n) == 0)
            return get(f.p, f.n, 2);
    }
    fail_msg("no attribute %s", key);
    return f;
}

static const uint8_t trace_id[16] = {0x4b, 0xf9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0x36};
static const uint8_t span_id[8] = {1, 2, 3, 4, 5, 6, 7, 8};
static const uint8_t parent_id[8] = {8, 7, 6, 5, 4, 3, 2, 1};

static void test_span_fields(void **state)
{
    (void)state;
    struct gw_buf b = {0};
    struct otlp_span s = {
        .trace_id = trace_id,
        .span_id = span_id,
        .parent_span_id = parent_id,
        .parent_remote = 1,
        .trace_state = "vendor=abc",
        .name = "tools/call echo",
        .kind = OTLP_KIND_SERVER,
        .trace_flags = 1,
        .start_unix_ns = 1700000000123456789ull,
        .end_unix_ns = 1700000000223456789ull,
    };
    size_t mark;
    assert_int_equal(otlp_span_begin(&b, &s, &mark), 0);
    assert_int_equal(otlp_attr_cstr(&b, "mcp.method.name", "tools/call"), 0);
    assert_int_equal(otlp_attr_int(&b, "http.response.status_code", 200), 0);
    assert_int_equal(otlp_attr_int(&b, "negative", -5), 0);
    assert_int_equal(otlp_attr_bool(&b, "flag", 1), 0);
    assert_int_equal(otlp_attr_cstr(&b, "empty", ""), 0); /* not written */
    assert_int_equal(otlp_status(&b, OTLP_STATUS_ERROR, "policy.no_match"), 0);
    assert_int_equal(otlp_span_end(&b, mark), 0);

    /* The chunk is ScopeSpans.spans (field 2), one of them, spanning the whole buffer. */
    const uint8_t *p = (const uint8_t *)b.data;
    size_t pos = 0;
    struct field outer;
    assert_int_equal(next_field(p, b.len, &pos, &outer), 0);
    assert_int_equal(outer.num, 2);
    assert_int_equal(outer.wire, 2);
    assert_int_equal(pos, b.len);
    const uint8_t *sp = outer.p;
    size_t sn = outer.n;

    struct field f = get(sp, sn, 1);
    assert_int_equal(f.n, 16);
    assert_memory_equal(f.p, trace_id, 16);
    f = get(sp, sn, 2);
    assert_memory_equal(f.p, span_id, 8);
    f = get(sp, sn, 3);
    assert_int_equal(f.n, 10);
    assert_memory_equal(f.p, "vendor=abc", 10);
    f = get(sp, sn, 4);
    assert_memory_equal(f.p, parent_id, 8);
    f = get(sp, sn, 5);
    assert_memory_equal(f.p, "tools/call echo", 15);
    f = get(sp, sn, 6);
    assert_int_equal(f.wire, 0);
    assert_int_equal(f.v, 2);
    f = get(sp, sn, 7);
    assert_int_equal(f.wire, 1);
    assert_int_equal(f.v, 1700000000123456789ull);
    f = get(sp, sn, 8);
    assert_int_equal(f.v, 1700000000223456789ull);
    f = get(sp, sn, 16);
    assert_int_equal(f.wire, 5);
    assert_int_equal(f.v, 0x301); /* sampled, has-is-remote, is-remote */
    assert_int_equal(count(sp, sn, 9), 4);

    f = attr(sp, sn, "mcp.method.name");
    struct field v = get(f.p, f.n, 1);
    assert_memory_equal(v.p, "tools/call", 10);
    f = attr(sp, sn, "http.response.status_code");
    assert_int_equal(get(f.p, f.n, 3).v, 200);
    f = attr(sp, sn, "negative");
    assert_int_equal((int64_t)get(f.p, f.n, 3).v, -5);
    f = attr(sp, sn, "flag");
    assert_int_equal(get(f.p, f.n, 2).v, 1);

    f = get(sp, sn, 15);
    assert_int_equal(get(f.p, f.n, 3).v, 2);
    v = get(f.p, f.n, 2);
    assert_memory_equal(v.p, "policy.no_match", 15);
    gw_buf_free(&b);
}

/* Lengths past one varint byte (128+) and past two (16384+) close correctly. */
static void test_long_lengths(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 100, 127, 128, 300, 16383, 16384, 70000};
    char value[101];
    memset(value, 'x', 100);
    value[100] = '\0';
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        struct gw_buf b = {0};
        struct otlp_span s = {
            .trace_id = trace_id, .span_id = span_id, .name = "n", .kind = OTLP_KIND_INTERNAL};
        size_t mark, n_attrs = sizes[i] / 100 + (sizes[i] % 100 != 0);
        assert_int_equal(otlp_span_begin(&b, &s, &mark), 0);
        for (size_t k = 0; k < n_attrs; k++) {
            size_t len = k + 1 < n_attrs || sizes[i] % 100 == 0 ? 100 : sizes[i] % 100;
            assert_int_equal(otlp_attr_str(&b, "k", value, len), 0);
        }
        assert_int_equal(otlp_span_end(&b, mark), 0);
        size_t pos = 0;
        struct field outer;
        assert_int_equal(next_field((const uint8_t *)b.data, b.len, &pos, &outer), 0);
        assert_int_equal(pos, b.len);
        assert_int_equal(count(outer.p, outer.n, 4), 0); /* a root span has no parent */
        assert_int_equal(count(outer.p, outer.n, 9), n_attrs);
        struct field fl = get(outer.p, outer.n, 16);
        assert_int_equal(fl.v, 0x100);
        gw_buf_free(&b);
    }
}

/* Long strings are cut to OTLP_MAX_VALUE without splitting a UTF-8 character. */
static void test_utf8_cut(void **state)
{
    (void)state;
    assert_int_equal(otlp_utf8_prefix("abc", 3, 10), 3);
    assert_int_equal(otlp_utf8_prefix("abcdef", 6, 4), 4);
    assert_int_equal(otlp_utf8_prefix("\xc3\xa9\xc3\xa9", 4, 3), 2);         /* é é */
    assert_int_equal(otlp_utf8_prefix("\xe2\x82\xac\xe2\x82\xac", 6, 5), 3); /* € € */
    assert_int_equal(otlp_utf8_prefix("\xf0\x9f\x98\x80", 4, 3), 0);         /* one emoji */
    char euro[301];
    for (int i = 0; i < 100; i++)
        memcpy(euro + 3 * i, "\xe2\x82\xac", 3);
    euro[300] = '\0';
    struct gw_buf b = {0};
    struct otlp_span s = {.trace_id = trace_id, .span_id = span_id, .name = "n", .kind = 1};
    size_t mark;
    assert_int_equal(otlp_span_begin(&b, &s, &mark), 0);
    assert_int_equal(otlp_attr_cstr(&b, "k", euro), 0);
    assert_int_equal(otlp_span_end(&b, mark), 0);
    size_t pos = 0;
    struct field outer;
    assert_int_equal(next_field((const uint8_t *)b.data, b.len, &pos, &outer), 0);
    struct field a = attr(outer.p, outer.n, "k");
    struct field v = get(a.p, a.n, 1);
    assert_int_equal(v.n, 255); /* 85 whole characters */
    assert_memory_equal(v.p, euro, 255);
    gw_buf_free(&b);
}

static void test_request(void **state)
{
    (void)state;
    struct gw_buf s1 = {0}, s2 = {0}, req = {0};
    struct otlp_span s = {.trace_id = trace_id, .span_id = span_id, .name = "a", .kind = 1};
    size_t m;
    assert_int_equal(otlp_span_begin(&s1, &s, &m), 0);
    assert_int_equal(otlp_span_end(&s1, m), 0);
    s.name = "b";
    assert_int_equal(otlp_span_begin(&s2, &s, &m), 0);
    assert_int_equal(otlp_span_end(&s2, m), 0);
    const char *keys[] = {"service.name", "deployment.environment.name"};
    const char *values[] = {"toolgate", "test"};
    struct gw_slice chunks[] = {{s1.data, s1.len}, {s2.data, s2.len}};
    assert_int_equal(otlp_request(&req, keys, values, 2, "1.2.3", chunks, 2), 0);

    const uint8_t *p = (const uint8_t *)req.data;
    assert_int_equal(count(p, req.len, 1), 1);
    struct field rs = get(p, req.len, 1);        /* resource_spans */
    struct field res = get(rs.p, rs.n, 1);       /* resource */
    assert_int_equal(count(res.p, res.n, 1), 2); /* attributes */
    struct field kv = get(res.p, res.n, 1);
    struct field k = get(kv.p, kv.n, 1);
    assert_memory_equal(k.p, "service.name", 12);
    struct field ss = get(rs.p, rs.n, 2); /* scope_spans */
    struct field scope = get(ss.p, ss.n, 1);
    assert_memory_equal(get(scope.p, scope.n, 1).p, "toolgate", 8);
    assert_memory_equal(get(scope.p, scope.n, 2).p, "1.2.3", 5);
    assert_int_equal(count(ss.p, ss.n, 2), 2);
    gw_buf_free(&s1);
    gw_buf_free(&s2);
    gw_buf_free(&req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_span_fields),
        cmocka_unit_test(test_long_lengths),
        cmocka_unit_test(test_utf8_cut),
        cmocka_unit_test(test_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
