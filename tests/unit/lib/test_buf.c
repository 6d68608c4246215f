/* Tests for buf.c: growable buffers, JSON string escaping, slices. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "lib/buf.h"

static void test_append_and_growth(void **state)
{
    (void)state;
    struct gw_buf b = {0};
    assert_int_equal(gw_buf_append(&b, "abc", 3), 0);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc"); /* kept NUL-terminated */
    assert_true(b.cap > b.len);
    assert_int_equal(gw_buf_append(&b, NULL, 0), 0);
    assert_int_equal(b.len, 3);
    /* Grow across several doublings with bytes that include NULs. */
    char chunk[1000];
    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = (char)(i % 251);
    for (int i = 0; i < 100; i++)
        assert_int_equal(gw_buf_append(&b, chunk, sizeof chunk), 0);
    assert_int_equal(b.len, 3 + 100 * sizeof chunk);
    assert_memory_equal(b.data + 3 + 57 * sizeof chunk, chunk, sizeof chunk);
    assert_int_equal(b.data[b.len], '\0');
    assert_true(b.cap > b.len);
    assert_int_equal(gw_buf_append_str(&b, "end"), 0);
    assert_memory_equal(b.data + b.len - 3, "end", 3);
    gw_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    gw_buf_free(&b); /* twice is harmless */
}

static void test_reserve_overflow(void **state)
{
    (void)state;
    struct gw_buf b = {0};
    /* Sizes that would wrap the length arithmetic must fail, not "succeed" small. */
    assert_int_equal(gw_buf_reserve(&b, SIZE_MAX), -1);
    assert_int_equal(gw_buf_reserve(&b, SIZE_MAX - 1), -1);
    assert_int_equal(gw_buf_append(&b, "x", 1), 0);
    assert_int_equal(gw_buf_reserve(&b, SIZE_MAX - 1), -1);
    assert_int_equal(gw_buf_reserve(&b, SIZE_MAX / 2 + 10), -1);
    assert_int_equal(b.len, 1);
    assert_string_equal(b.data, "x");
    /* Reserving what is already there does not reallocate. */
    size_t cap = b.cap;
    char *data = b.data;
    assert_int_equal(gw_buf_reserve(&b, cap - b.len - 1), 0);
    assert_ptr_equal(b.data, data);
    assert_int_equal(gw_buf_reserve(&b, cap - b.len), 0);
    assert_true(b.cap > cap);
    gw_buf_free(&b);
}

static void test_printf(void **state)
{
    (void)state;
    struct gw_buf b = {0};
    assert_int_equal(gw_buf_printf(&b, "%s=%d", "n", 42), 0);
    assert_string_equal(b.data, "n=42");
    assert_int_equal(gw_buf_printf(&b, "%s", ""), 0);
    assert_int_equal(b.len, 4);
    char big[5000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(gw_buf_printf(&b, ",%s,", big), 0);
    assert_int_equal(b.len, 4 + 2 + sizeof big - 1);
    assert_int_equal(b.data[b.len - 1], ',');
    assert_int_equal(b.data[b.len], '\0');
    gw_buf_free(&b);
}

static void escape(const char *s, size_t n, struct gw_buf *out)
{
    gw_buf_reset(out);
    assert_int_equal(gw_buf_append_json_escaped(out, s, n), 0);
}

static void test_json_escaping(void **state)
{
    (void)state;
    struct gw_buf b = {0};
    escape("plain", 5, &b);
    assert_string_equal(b.data, "plain");
    escape("a\"b\\c", 5, &b);
    assert_string_equal(b.data, "a\\\"b\\\\c");
    escape("\n\r\t\b\f", 5, &b);
    assert_string_equal(b.data, "\\n\\r\\t\\b\\f");
    escape("\x01\x1f", 2, &b);
    assert_string_equal(b.data, "\\u0001\\u001f");
    escape("a\0b", 3, &b); /* length, not NUL, ends the input */
    assert_string_equal(b.data, "a\\u0000b");
    escape("", 0, &b);
    assert_int_equal(b.len, 0);
    /* Well-formed UTF-8 passes through: é, €, U+1F600, U+10FFFF. */
    const char utf8[] = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf";
    escape(utf8, sizeof utf8 - 1, &b);
    assert_string_equal(b.data, utf8);
    gw_buf_free(&b);
}

static void test_json_escaping_invalid_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"\x80", 1, "\\ufffd"},                                  /* lone continuation */
        {"a\xc3", 2, "a\\ufffd"},                                /* truncated at the end */
        {"\xc3(", 2, "\\ufffd("},                                /* bad continuation */
        {"\xc0\x80", 2, "\\ufffd\\ufffd"},                       /* overlong NUL */
        {"\xe0\x80\xaf", 3, "\\ufffd\\ufffd\\ufffd"},            /* overlong '/' */
        {"\xed\xa0\x80", 3, "\\ufffd\\ufffd\\ufffd"},            /* UTF-16 surrogate */
        {"\xf4\x90\x80\x80", 4, "\\ufffd\\ufffd\\ufffd\\ufffd"}, /* above U+10FFFF */
        {"\xf5\x80", 2, "\\ufffd\\ufffd"},
        {"\xff", 1, "\\ufffd"},
        {"ok\xe2\x82", 4, "ok\\ufffd\\ufffd"},
    };
    struct gw_buf b = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        escape(cases[i].in, cases[i].len, &b);
        if (strcmp(b.data, cases[i].out) != 0)
            fail_msg("case %zu: got %s want %s", i, b.data, cases[i].out);
    }
    /* Whatever the bytes, the result parses as a JSON string. */
    for (int seed = 0; seed < 200; seed++) {
        char raw[64];
        unsigned v = (unsigned)seed * 2654435761u;
        for (size_t i = 0; i < sizeof raw; i++) {
            v = v * 1103515245u + 12345u;
            raw[i] = (char)(v >> 16);
        }
        gw_buf_reset(&b);
        assert_int_equal(gw_buf_append(&b, "\"", 1), 0);
        assert_int_equal(gw_buf_append_json_escaped(&b, raw, sizeof raw), 0);
        assert_int_equal(gw_buf_append(&b, "\"", 1), 0);
        json_error_t jerr;
        json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!j)
            fail_msg("seed %d: not JSON: %s", seed, jerr.text);
        assert_true(json_is_string(j));
        json_decref(j);
    }
    gw_buf_free(&b);
}

static void test_consume_reset_steal(void **state)
{
    (void)state;
    struct gw_buf b = {0};
    gw_buf_consume(&b, 5); /* on an empty buffer: nothing to do */
    gw_buf_reset(&b);
    assert_int_equal(gw_buf_append_str(&b, "hello world"), 0);
    gw_buf_consume(&b, 6);
    assert_int_equal(b.len, 5);
    assert_string_equal(b.data, "world");
    gw_buf_consume(&b, 0);
    assert_string_equal(b.data, "world");
    gw_buf_consume(&b, 100);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(gw_buf_append_str(&b, "abc"), 0);
    gw_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(gw_buf_append_str(&b, "kept"), 0);
    size_t len = 0;
    char *p = gw_buf_steal(&b, &len);
    assert_int_equal(len, 4);
    assert_string_equal(p, "kept");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    free(p);
    assert_null(gw_buf_steal(&b, NULL));
}

static void test_slices(void **state)
{
    (void)state;
    const char wire[] = "Content-Type: x";
    struct gw_slice name = {wire, 12};
    assert_true(gw_slice_eq(name, "Content-Type"));
    assert_false(gw_slice_eq(name, "Content-Typ"));
    assert_false(gw_slice_eq(name, "Content-Type:"));
    assert_false(gw_slice_eq(name, "content-type"));
    assert_true(gw_slice_casecmp_eq(name, "content-type"));
    assert_true(gw_slice_casecmp_eq(name, "CONTENT-TYPE"));
    assert_false(gw_slice_casecmp_eq(name, "content-typ"));
    assert_true(gw_slice_eq(GW_SLICE_NULL, ""));
    assert_true(gw_slice_casecmp_eq(GW_SLICE_NULL, ""));
    assert_false(gw_slice_eq(GW_SLICE_NULL, "a"));
    struct gw_slice lit = GW_SLICE_LIT("abc");
    assert_int_equal(lit.len, 3);
    /* A NUL inside the slice never compares equal to a shorter literal. */
    struct gw_slice with_nul = {"ab\0c", 4};
    assert_false(gw_slice_eq(with_nul, "ab"));
    assert_false(gw_slice_casecmp_eq(with_nul, "abxc"));
    char *d = gw_slice_dup(name);
    assert_string_equal(d, "Content-Type");
    free(d);
    d = gw_slice_dup(GW_SLICE_NULL);
    assert_string_equal(d, "");
    free(d);
    d = gw_slice_dup(with_nul);
    assert_memory_equal(d, "ab\0c\0", 5);
    free(d);
}

/* The decimal writer writes what printf's %llu writes, for every width of number. */
static void test_append_u64(void **state)
{
    (void)state;
    uint64_t v[] = {0,
                    1,
                    9,
                    10,
                    99,
                    100,
                    12345,
                    4294967295ull,
                    4294967296ull,
                    9999999999999999999ull,
                    10000000000000000000ull,
                    UINT64_MAX};
    struct gw_buf b = {0};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char want[32];
        snprintf(want, sizeof want, "%llu", (unsigned long long)v[i]);
        gw_buf_reset(&b);
        assert_int_equal(gw_buf_append(&b, "x", 1), 0);
        assert_int_equal(gw_buf_append_u64(&b, v[i]), 0);
        assert_int_equal(b.len, 1 + strlen(want));
        assert_memory_equal(b.data + 1, want, strlen(want));
    }
    for (uint64_t x = 1; x < UINT64_MAX / 3; x = x * 3 + 1) {
        char want[32];
        snprintf(want, sizeof want, "%llu", (unsigned long long)x);
        gw_buf_reset(&b);
        assert_int_equal(gw_buf_append_u64(&b, x), 0);
        assert_int_equal(b.len, strlen(want));
        assert_memory_equal(b.data, want, b.len);
    }
    gw_buf_free(&b);
}

/* Signed decimals as %lld writes them, and the JSON escape of every ASCII byte that needs one. */
static void test_append_i64_and_escape(void **state)
{
    (void)state;
    int64_t v[] = {0, 1, -1, 9, -10, 4294967296ll, -9007199254740993ll, INT64_MAX, INT64_MIN};
    struct gw_buf b = {0};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char want[32];
        snprintf(want, sizeof want, "%lld", (long long)v[i]);
        gw_buf_reset(&b);
        assert_int_equal(gw_buf_append_i64(&b, v[i]), 0);
        assert_int_equal(b.len, strlen(want));
        assert_memory_equal(b.data, want, b.len);
        /* The unterminated forms: exactly the digits, nothing written past them. */
        char out[24];
        memset(out, '#', sizeof out);
        size_t n = gw_fmt_i64(out, v[i]);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(out, want, n);
        assert_int_equal(out[n], '#');
        if (v[i] >= 0) {
            memset(out, '#', sizeof out);
            assert_int_equal(gw_fmt_u64(out, (uint64_t)v[i]), strlen(want));
            assert_memory_equal(out, want, strlen(want));
            assert_int_equal(out[strlen(want)], '#');
        }
    }
    char out[24];
    memset(out, '#', sizeof out);
    assert_int_equal(gw_fmt_u64(out, UINT64_MAX), 20);
    assert_memory_equal(out, "18446744073709551615#", 21);
    gw_buf_free(&b);
    const char *shorts = "\"\\\b\f\n\r\t", *names = "\"\\bfnrt";
    for (int c = 0; c < 0x80; c++) {
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        char e[6], want[8];
        const char *at = c ? strchr(shorts, c) : NULL;
        for (int upper = 0; upper < 2; upper++) {
            size_t n = gw_json_escape_byte((unsigned char)c, e, upper);
            if (at)
                snprintf(want, sizeof want, "\\%c", names[at - shorts]);
            else
                snprintf(want, sizeof want, upper ? "\\u%04X" : "\\u%04x", c);
            assert_int_equal(n, strlen(want));
            assert_memory_equal(e, want, n);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_growth),
        cmocka_unit_test(test_reserve_overflow),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_append_u64),
        cmocka_unit_test(test_append_i64_and_escape),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_json_escaping_invalid_utf8),
        cmocka_unit_test(test_consume_reset_steal),
        cmocka_unit_test(test_slices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
