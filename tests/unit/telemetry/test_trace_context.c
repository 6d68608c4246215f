/* Tests for trace_context.c: W3C traceparent, tracestate and baggage, and ratio sampling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry/trace_context.h"

#define T "4bf92f3577b34da6a3ce929d0e0e4736"
#define P "00f067aa0ba902b7"

static int tp(const char *s, struct tc_parent *out)
{
    return tc_traceparent_parse(s, strlen(s), out);
}

static void test_traceparent_valid(void **state)
{
    (void)state;
    struct tc_parent p;
    assert_int_equal(tp("00-" T "-" P "-01", &p), 0);
    assert_int_equal(p.trace_id[0], 0x4b);
    assert_int_equal(p.trace_id[15], 0x36);
    assert_int_equal(p.span_id[0], 0x00);
    assert_int_equal(p.span_id[7], 0xb7);
    assert_int_equal(p.flags, 1);
    char out[TC_TRACEPARENT_LEN + 1];
    tc_traceparent_format(p.trace_id, p.span_id, p.flags, out);
    assert_string_equal(out, "00-" T "-" P "-01");
    /* Unknown flag bits are read (and only the sampled bit is acted on). */
    assert_int_equal(tp("00-" T "-" P "-ff", &p), 0);
    assert_int_equal(p.flags, 0xff);
    /* A later version: its first four fields, when a '-' follows them. */
    assert_int_equal(tp("cc-" T "-" P "-01-future-stuff", &p), 0);
    assert_int_equal(tp("01-" T "-" P "-00", &p), 0);
    assert_int_equal(p.flags, 0);
}

static void test_traceparent_invalid(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "00",
        "00-" T "-" P,
        "00-" T "-" P "-1",
        "00-" T "-" P "-011",                           /* version 00 is exactly 55 characters */
        "00-" T "-" P "-01-",                           /* ... even with a dash after */
        "ff-" T "-" P "-01",                            /* version ff is invalid */
        "0g-" T "-" P "-01",                            /* not hex */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-" P "-01", /* upper case */
        "00-" T "-00F067AA0BA902B7-01",
        "00-" T "-" P "-0A",
        "00-00000000000000000000000000000000-" P "-01", /* all-zero trace id */
        "00-" T "-0000000000000000-01",                 /* all-zero parent id */
        "00_" T "_" P "_01",
        "00-" T "-" P "-01 ",
        " 00-" T "-" P "-01",
        "cc-" T "-" P "-01x", /* a later version needs a '-' after the flags */
        "00-4bf92f3577b34da6a3ce929d0e0e473-" P "-01",
    };
    struct tc_parent p;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (tp(bad[i], &p) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
    /* Embedded NUL: length-delimited input, no strlen. */
    char nul[] = "00-" T "-" P "-01";
    nul[10] = '\0';
    assert_int_equal(tc_traceparent_parse(nul, sizeof nul - 1, &p), -1);
    /* Longer than the bound, even a valid later-version prefix. */
    char big[TC_MAX_TRACEPARENT + 2];
    memset(big, 'a', sizeof big);
    memcpy(big, "cc-" T "-" P "-01-", 56);
    assert_int_equal(tc_traceparent_parse(big, sizeof big, &p), -1);
    assert_int_equal(tc_traceparent_parse(big, TC_MAX_TRACEPARENT, &p), 0);
    assert_int_equal(tc_traceparent_parse(NULL, 0, &p), -1);
}

static int ts(const char *s)
{
    return tc_tracestate_check(s, strlen(s));
}

static void test_tracestate(void **state)
{
    (void)state;
    assert_int_equal(ts("vendor=abc"), 1);
    assert_int_equal(ts("a=1,b=2"), 2);
    assert_int_equal(ts(" a=1 ,\tb=2\t"), 2);
    assert_int_equal(ts("a=1,,b=2"), 2); /* empty members are allowed */
    assert_int_equal(ts("tenant@system=v"), 1);
    assert_int_equal(ts("0tenant@sys=v"), 1);
    assert_int_equal(ts("k/_-*=v a l!"), 1); /* spaces inside a value */
    assert_int_equal(ts(""), 0);
    assert_int_equal(ts("UPPER=1"), -1);
    assert_int_equal(ts("1abc=1"), -1);  /* a simple key starts with a letter */
    assert_int_equal(ts("a=1,a=2"), -1); /* a key twice */
    assert_int_equal(ts("a="), -1);      /* empty value */
    assert_int_equal(ts("a=x "), 1);     /* spaces around a member are OWS */
    assert_int_equal(ts("a"), -1);
    assert_int_equal(ts("a=b=c"), -1);
    assert_int_equal(ts("a=\x01"), -1);
    assert_int_equal(ts("t@=v"), -1);
    assert_int_equal(ts("@s=v"), -1);
    assert_int_equal(ts("t@s0123456789abcd=v"), -1); /* system id too long */
    /* 32 members fit, 33 do not. */
    char buf[600] = "";
    for (int i = 0; i < 33; i++) {
        char m[16];
        snprintf(m, sizeof m, "%sk%d=v", i ? "," : "", i);
        strcat(buf, m);
        assert_int_equal(ts(buf), i < 32 ? i + 1 : -1);
    }
    /* Over the byte bound. */
    char big[TC_MAX_TRACESTATE + 2];
    memset(big, 'a', sizeof big);
    big[0] = 'k';
    big[1] = '=';
    assert_int_equal(tc_tracestate_check(big, TC_MAX_TRACESTATE + 1), -1);
}

static int bag(const char *in, char *out, size_t cap)
{
    static const char *const allow[] = {"tenant.tier", "session.kind", "a"};
    return tc_baggage_filter(in, strlen(in), allow, 3, out, cap);
}

static void test_baggage(void **state)
{
    (void)state;
    char out[TC_MAX_BAGGAGE_OUT + 1];
    assert_int_equal(bag("tenant.tier=gold", out, sizeof out), 1);
    assert_string_equal(out, "tenant.tier=gold");
    assert_int_equal(
        bag("user.email=x%40y, tenant.tier = gold ;prop;p2=v,session.kind=chat", out, sizeof out),
        2);
    assert_string_equal(out, "tenant.tier=gold,session.kind=chat");
    assert_int_equal(bag("user.email=x%40y,token=abc", out, sizeof out), 0);
    assert_string_equal(out, "");
    /* Keys are case-sensitive, and exact. */
    assert_int_equal(bag("Tenant.Tier=gold,tenant.tier2=x,tenant=y", out, sizeof out), 0);
    assert_int_equal(bag("a=", out, sizeof out), 1); /* an empty value is a value */
    assert_string_equal(out, "a=");
    assert_int_equal(bag("", out, sizeof out), 0);
    /* Malformed anywhere: dropped whole, even the allowed members. */
    const char *bad[] = {
        "tenant.tier=gold,",
        "tenant.tier=gold,,a=1",
        ",a=1",
        "tenant.tier",
        "=v",
        "a=1;",
        "a=1;=x",
        "a=va\"lue",
        "a=va\\lue",
        "a=1 2",
        "a b=1",
        "tenant.tier=gold,a",
        "a=1;p=v;",
        " ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (bag(bad[i], out, sizeof out) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_string_equal(out, "");
    }
    /* 64 members are read, 65 are not. */
    char buf[TC_MAX_BAGGAGE_IN + 2] = "";
    for (int i = 0; i < 65; i++) {
        char m[24];
        snprintf(m, sizeof m, "%sk%d=v", i ? "," : "", i);
        strcat(buf, m);
    }
    strcat(buf, ",a=1");
    assert_int_equal(bag(buf, out, sizeof out), -1);
    /* Longer than the byte bound: dropped. */
    memset(buf, 'x', sizeof buf);
    memcpy(buf, "a=", 2);
    assert_int_equal(tc_baggage_filter(buf, TC_MAX_BAGGAGE_IN + 1, (const char *const[]){"a"}, 1,
                                       out, sizeof out),
                     -1);
    /* Allowed members past the output bound are left out, the rest kept. */
    char small[28];
    assert_int_equal(bag("a=1234567890,tenant.tier=gold,session.kind=c", small, sizeof small), 2);
    assert_string_equal(small, "a=1234567890,session.kind=c");
}

static void test_ratio(void **state)
{
    (void)state;
    uint8_t low[16] = {0}, high[16];
    memset(high, 0xff, sizeof high);
    low[15] = 1;
    assert_true(tc_ratio_keeps(high, 1.0));
    assert_false(tc_ratio_keeps(low, 0.0));
    assert_true(tc_ratio_keeps(low, 0.5));
    assert_false(tc_ratio_keeps(high, 0.5));
    /* About the ratio over many ids. */
    unsigned kept = 0;
    for (unsigned i = 0; i < 10000; i++) {
        uint8_t id[16] = {0};
        uint64_t v = (uint64_t)i * 0x9e3779b97f4a7c15ull;
        for (int k = 0; k < 8; k++)
            id[8 + k] = (uint8_t)(v >> (56 - 8 * k));
        kept += (unsigned)tc_ratio_keeps(id, 0.25);
    }
    assert_in_range(kept, 2200, 2800);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent_valid),
        cmocka_unit_test(test_traceparent_invalid),
        cmocka_unit_test(test_tracestate),
        cmocka_unit_test(test_baggage),
        cmocka_unit_test(test_ratio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
