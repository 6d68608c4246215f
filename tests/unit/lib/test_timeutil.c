/* Tests for timeutil.c: durations, sizes, RFC 3339, UUIDv7, clocks, randomness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/timeutil.h"

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint64_t ms;
    } ok[] = {
        {"0", 0},         {"0ms", 0},       {"250ms", 250},
        {"30s", 30000},   {"5m", 300000},   {"1h", 3600000},
        {"1d", 86400000}, {"1ns", 1},       {"999999ns", 1},
        {"1000000ns", 1}, {"1000001ns", 2}, {"1500us", 2},
        {"2000us", 2},    {"0us", 0},       {"100000d", 8640000000000},
        {"007s", 7000},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t v = 12345;
        if (gw_parse_duration_ms(ok[i].in, &v) != 0)
            fail_msg("\"%s\" was refused", ok[i].in);
        if (v != ok[i].ms)
            fail_msg("\"%s\" -> %llu, want %llu", ok[i].in, (unsigned long long)v,
                     (unsigned long long)ok[i].ms);
    }
    uint64_t ns = 0;
    assert_int_equal(gw_parse_duration_ns("1500us", &ns), 0);
    assert_int_equal(ns, 1500000);
    assert_int_equal(gw_parse_duration_ns("3s", &ns), 0);
    assert_int_equal(ns, 3000000000ull);
}

static void test_duration_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "30",
        "s",
        "-1s",
        "+1s",
        "1.5s",
        "1S",
        "1 sec",
        "1min",
        "1hr",
        "1s ",
        " 1s",
        "1s1",
        "1e3ms",
        "0x10s",
        "1w",
        "1y",
        "213504d",                  /* overflows 64-bit nanoseconds */
        "18446744073709551616ns",   /* one past the 64-bit maximum */
        "99999999999999999999999s", /* overflow while reading digits */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 77;
        if (gw_parse_duration_ms(bad[i], &v) == 0)
            fail_msg("\"%s\" was accepted as %llu ms", bad[i], (unsigned long long)v);
        assert_int_equal(v, 77); /* untouched on error */
    }
    uint64_t v = 0;
    assert_int_equal(gw_parse_duration_ms(NULL, &v), -1);
    /* The largest whole-day count that fits in nanoseconds is accepted. */
    assert_int_equal(gw_parse_duration_ns("213503d", &v), 0);
    assert_int_equal(v, 213503ull * 86400ull * 1000000000ull);
}

static void test_sizes(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint64_t v;
    } ok[] = {
        {"0", 0},
        {"512", 512},
        {"512b", 512},
        {"512B", 512},
        {"16KiB", 16384},
        {"16k", 16384},
        {"1MiB", 1048576},
        {"1m", 1048576},
        {"1GiB", 1073741824},
        {"2G", 2147483648ull},
        {"2KB", 2000},
        {"2kB", 2000},
        {"2MB", 2000000},
        {"2GB", 2000000000},
        {"17179869183GiB", 17179869183ull * 1073741824ull},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t v = 1;
        if (gw_parse_size(ok[i].in, &v) != 0)
            fail_msg("\"%s\" was refused", ok[i].in);
        if (v != ok[i].v)
            fail_msg("\"%s\" -> %llu, want %llu", ok[i].in, (unsigned long long)v,
                     (unsigned long long)ok[i].v);
    }
    static const char *const bad[] = {"",
                                      "KiB",
                                      "-1",
                                      "1.5MiB",
                                      "1 parsec",
                                      "1kib",
                                      "1mb",
                                      "1TiB",
                                      "1MiBs",
                                      "0x10",
                                      "1e3",
                                      "17179869184GiB",
                                      "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 77;
        if (gw_parse_size(bad[i], &v) == 0)
            fail_msg("\"%s\" was accepted as %llu", bad[i], (unsigned long long)v);
        assert_int_equal(v, 77);
    }
}

static void test_rfc3339(void **state)
{
    (void)state;
    char out[32];
    gw_time_rfc3339(0, out, sizeof out);
    assert_string_equal(out, "1970-01-01T00:00:00.000000000Z");
    /* 2026-01-02T03:04:05.123456789Z */
    gw_time_rfc3339(1767323045123456789ull, out, sizeof out);
    assert_string_equal(out, "2026-01-02T03:04:05.123456789Z");
    /* Leap day. */
    gw_time_rfc3339(951782400000000001ull, out, sizeof out);
    assert_string_equal(out, "2000-02-29T00:00:00.000000001Z");
    /* A short buffer is truncated and terminated, never overrun. */
    char small[11];
    memset(small, 'x', sizeof small);
    gw_time_rfc3339(0, small, sizeof small);
    assert_string_equal(small, "1970-01-01");
    /* Now is between 2024 and 2100. */
    gw_time_rfc3339(gw_now_ns(), out, sizeof out);
    assert_int_equal(strlen(out), 30);
    assert_true(strncmp(out, "2024", 4) >= 0 && strncmp(out, "2100", 4) < 0);
}

static int is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static uint64_t uuid_ms(const char *u)
{
    char hex[13];
    memcpy(hex, u, 8);
    memcpy(hex + 8, u + 9, 4);
    hex[12] = '\0';
    return strtoull(hex, NULL, 16);
}

static void test_uuid7(void **state)
{
    (void)state;
    char prev[37] = "";
    uint64_t prev_ms = 0;
    for (int i = 0; i < 2000; i++) {
        char u[37];
        memset(u, 'X', sizeof u);
        uint64_t before = gw_now_ns() / 1000000ull;
        gw_uuid7(u);
        uint64_t after = gw_now_ns() / 1000000ull;
        assert_int_equal(strlen(u), 36);
        for (int k = 0; k < 36; k++) {
            if (k == 8 || k == 13 || k == 18 || k == 23)
                assert_int_equal(u[k], '-');
            else if (!is_lower_hex(u[k]))
                fail_msg("%s: position %d is not lower-case hex", u, k);
        }
        assert_int_equal(u[14], '7');           /* version 7 */
        assert_non_null(strchr("89ab", u[19])); /* RFC 9562 variant bits 10 */
        uint64_t ms = uuid_ms(u);
        /* The prefix is the Unix time in ms (or the last one given, if the clock went back). */
        assert_true(ms <= after);
        assert_true(ms + 1000 >= before);
        assert_true(ms >= prev_ms); /* never goes back */
        assert_string_not_equal(u, prev);
        prev_ms = ms;
        memcpy(prev, u, sizeof u);
    }
    /* The random part varies: 50 ids in one go have distinct tails. */
    char ids[50][37];
    for (int i = 0; i < 50; i++)
        gw_uuid7(ids[i]);
    for (int i = 0; i < 50; i++)
        for (int j = i + 1; j < 50; j++)
            assert_string_not_equal(ids[i] + 19, ids[j] + 19);
}

static void test_clocks_and_random(void **state)
{
    (void)state;
    uint64_t a = gw_mono_ns();
    uint64_t b = gw_mono_ns();
    assert_true(b >= a);
    assert_true(gw_mono_ms() >= a / 1000000ull);
    assert_true(gw_now_ns() > 1700000000ull * 1000000000ull);

    unsigned char r1[32] = {0}, r2[32] = {0}, zero[32] = {0};
    assert_int_equal(gw_random_bytes(r1, sizeof r1), 0);
    assert_int_equal(gw_random_bytes(r2, sizeof r2), 0);
    assert_memory_not_equal(r1, zero, sizeof r1);
    assert_memory_not_equal(r1, r2, sizeof r1);
    assert_int_equal(gw_random_bytes(r1, 0), 0);
    /* More than one getrandom() call may be needed for large requests. */
    size_t n = 1 << 20;
    unsigned char *big = calloc(1, n);
    assert_non_null(big);
    assert_int_equal(gw_random_bytes(big, n), 0);
    size_t zeros = 0;
    for (size_t i = n - 4096; i < n; i++)
        zeros += big[i] == 0;
    assert_true(zeros < 100); /* the tail was filled too (expected ~16) */
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations), cmocka_unit_test(test_duration_errors),
        cmocka_unit_test(test_sizes),     cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_uuid7),     cmocka_unit_test(test_clocks_and_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
