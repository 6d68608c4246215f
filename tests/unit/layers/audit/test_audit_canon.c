/* Canonical JSON (RFC 8785) as the audit chain hashes it. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "layers/audit/audit_canon.h"
#include "layers/audit/audit_record.h"

static char *canon_of(const json_t *v)
{
    struct gw_buf b = {0};
    if (audit_canon_append(&b, v) != 0) {
        gw_buf_free(&b);
        return NULL;
    }
    return b.data;
}

static char *canon_text(const char *json)
{
    json_error_t e;
    json_t *v = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    assert_non_null(v);
    char *out = canon_of(v);
    json_decref(v);
    return out;
}

/* RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript serializations. */
static void test_rfc8785_numbers(void **state)
{
    static const struct {
        uint64_t bits;
        const char *text;
    } cases[] = {
        {0x0000000000000000ull, "0"},
        {0x8000000000000000ull, "0"},
        {0x0000000000000001ull, "5e-324"},
        {0x8000000000000001ull, "-5e-324"},
        {0x7fefffffffffffffull, "1.7976931348623157e+308"},
        {0xffefffffffffffffull, "-1.7976931348623157e+308"},
        {0x4340000000000000ull, "9007199254740992"},
        {0xc340000000000000ull, "-9007199254740992"},
        {0x4430000000000000ull, "295147905179352830000"},
        {0x44b52d02c7e14af5ull, "9.999999999999997e+22"},
        {0x44b52d02c7e14af6ull, "1e+23"},
        {0x44b52d02c7e14af7ull, "1.0000000000000001e+23"},
        {0x444b1ae4d6e2ef4eull, "999999999999999700000"},
        {0x444b1ae4d6e2ef4full, "999999999999999900000"},
        {0x444b1ae4d6e2ef50ull, "1e+21"},
        {0x3eb0c6f7a0b5ed8cull, "9.999999999999997e-7"},
        {0x3eb0c6f7a0b5ed8dull, "0.000001"},
        {0x41b3de4355555553ull, "333333333.3333332"},
        {0x41b3de4355555554ull, "333333333.33333325"},
        {0x41b3de4355555555ull, "333333333.3333333"},
        {0x41b3de4355555556ull, "333333333.3333334"},
        {0x41b3de4355555557ull, "333333333.33333343"},
        {0xbecbf647612f3696ull, "-0.0000033333333333333333"},
        {0x43143ff3c1cb0959ull, "1424953923781206.2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double d;
        memcpy(&d, &cases[i].bits, sizeof d);
        char out[40];
        int n = audit_canon_number(d, out, sizeof out);
        assert_int_equal(n, (int)strlen(cases[i].text));
        assert_string_equal(out, cases[i].text);
    }
    char out[40];
    assert_int_equal(audit_canon_number(NAN, out, sizeof out), -1);
    assert_int_equal(audit_canon_number(INFINITY, out, sizeof out), -1);
    assert_int_equal(audit_canon_number(-INFINITY, out, sizeof out), -1);
}

/* Random doubles: the output parses back to the same value and has at most 17 digits. */
static void test_numbers_round_trip(void **state)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double d;
        memcpy(&d, &x, sizeof d);
        if (isnan(d) || isinf(d))
            continue;
        char out[40];
        assert_true(audit_canon_number(d, out, sizeof out) > 0);
        assert_true(strtod(out, NULL) == d);
        int digits = 0;
        for (const char *p = out; *p && *p != 'e'; p++)
            digits += *p >= '0' && *p <= '9';
        assert_true(digits <= 21 + 17); /* plain notation pads with zeros up to 1e21 */
    }
}

/* RFC 8785 §3.2.2 example. */
static void test_rfc8785_example(void **state)
{
    char *c = canon_text("{\n  \"numbers\": [333333333.33333329, 1E30, 4.50, 2e-3, "
                         "0.000000000000000000000000001],\n"
                         "  \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\"
                         "\\\"\\/\",\n"
                         "  \"literals\": [null, true, false]\n}");
    assert_non_null(c);
    assert_string_equal(c, "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,"
                           "1e+30,4.5,0.002,1e-27],\"string\":\"\xe2\x82\xac$\\u000f\\nA'B\\\""
                           "\\\\\\\\\\\"/\"}");
    free(c);
}

/* RFC 8785 §3.2.3: keys sort by UTF-16 code units (the emoji's surrogates before U+FB33). */
static void test_rfc8785_sorting(void **state)
{
    char *c = canon_text("{\"\\u20ac\": \"Euro Sign\", \"\\r\": \"Carriage Return\","
                         " \"\\ufb33\": \"Hebrew Letter Dalet With Dagesh\", \"1\": \"One\","
                         " \"\\ud83d\\ude00\": \"Emoji: Grinning Face\", \"\\u0080\": \"Control\","
                         " \"\\u00f6\": \"Latin Small Letter O With Diaeresis\"}");
    assert_non_null(c);
    const char *order[] = {"Carriage Return",
                           "One",
                           "Control",
                           "Latin Small Letter O With Diaeresis",
                           "Euro Sign",
                           "Emoji: Grinning Face",
                           "Hebrew Letter Dalet With Dagesh"};
    const char *p = c;
    for (size_t i = 0; i < 7; i++) {
        const char *q = strstr(p, order[i]);
        assert_non_null(q);
        p = q;
    }
    free(c);
    /* Direct comparisons, including the case byte order gets wrong. */
    assert_true(audit_canon_keycmp("\xf0\x9f\x98\x80", 4, "\xef\xac\xb3", 3) < 0);
    assert_true(audit_canon_keycmp("\xef\xac\xb3", 3, "\xf0\x9f\x98\x80", 4) > 0);
    assert_true(audit_canon_keycmp("a", 1, "ab", 2) < 0);
    assert_int_equal(audit_canon_keycmp("ab", 2, "ab", 2), 0);
    assert_true(audit_canon_keycmp("\xe2\x82\xac", 3, "\xc3\xb6", 2) > 0);
}

static void test_escapes_and_integers(void **state)
{
    char *c = canon_text("[\"\\u0000\\u001f\\u007f\\b\\f\\t\", 9007199254740993, -12, 0, "
                         "1.0, -0.0, 9223372036854775807]");
    assert_non_null(c);
    /* Integers beyond 2^53 are doubles in JSON: they print as ECMAScript would. */
    assert_string_equal(c, "[\"\\u0000\\u001f\x7f\\b\\f\\t\",9007199254740992,-12,0,1,0,"
                           "9223372036854776000]");
    free(c);
}

static void test_bad_input(void **state)
{
    /* Invalid UTF-8 (only reachable with the unchecked constructor) is refused. */
    json_t *s = json_stringn_nocheck("\xc3\x28", 2);
    assert_null(canon_of(s));
    json_decref(s);
    json_t *o = json_object();
    json_object_set_new_nocheck(o, "\xff", json_true());
    assert_null(canon_of(o));
    json_decref(o);
    /* Nesting beyond the bound is refused, not recursed into. */
    json_t *deep = json_array(), *cur = deep;
    for (int i = 0; i < AUDIT_CANON_MAX_DEPTH + 5; i++) {
        json_t *n = json_array();
        json_array_append_new(cur, n);
        cur = n;
    }
    assert_null(canon_of(deep));
    json_decref(deep);
    assert_int_equal(audit_canon_append(&(struct gw_buf){0}, NULL), -1);
}

/* Members prepared apart and merged give the same bytes as canonicalizing the whole. */
static void test_members_merge(void **state)
{
    json_t *rec = json_pack("{s:s, s:i, s:s, s:{s:[i,s]}, s:s}", "kind", "decision", "seq", 7,
                            "zeta", "z", "args", "a", 1, "x", "instance", "i-1");
    static const char *const skip[] = {"seq", "instance", NULL};
    struct audit_members a = {0}, b = {0};
    assert_int_equal(audit_members_from_object(&a, rec, skip), 0);
    assert_int_equal(a.n, 3);
    assert_int_equal(audit_members_add_raw(&b, "seq", "7", 1), 0);
    assert_int_equal(audit_members_add_raw(&b, "instance", "\"i-1\"", 5), 0);
    audit_members_sort(&b);
    struct gw_buf merged = {0};
    assert_int_equal(audit_members_write(&merged, &a, &b), 0);
    char *whole = canon_of(rec);
    assert_string_equal(merged.data, whole);
    free(whole);
    gw_buf_free(&merged);
    audit_members_free(&a);
    audit_members_free(&b);
    json_decref(rec);
}

static void test_redact_copy(void **state)
{
    json_t *args = json_pack("{s:s, s:[s, i, s], s:{s:s, s:b}, s:s, s:s}", "ssn", "123-45-6789",
                             "list", "secret", 42, "[REDACTED:ssn]", "nested", "name", "Jane Doe",
                             "flag", 1, "fake", "[REDACTED:evil value]", "plain", "[REDACTED]");
    json_t *r = audit_redact_copy(args);
    assert_non_null(r);
    char *c = canon_of(r);
    assert_string_equal(c, "{\"fake\":\"[REDACTED]\",\"list\":[\"[REDACTED]\",42,\"[REDACTED:ssn]"
                           "\"],\"nested\":{\"flag\":true,\"name\":\"[REDACTED]\"},\"plain\":"
                           "\"[REDACTED]\",\"ssn\":\"[REDACTED]\"}");
    assert_null(strstr(c, "123-45"));
    assert_null(strstr(c, "Jane"));
    free(c);
    json_decref(r);
    json_decref(args);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8785_numbers),      cmocka_unit_test(test_numbers_round_trip),
        cmocka_unit_test(test_rfc8785_example),      cmocka_unit_test(test_rfc8785_sorting),
        cmocka_unit_test(test_escapes_and_integers), cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_members_merge),        cmocka_unit_test(test_redact_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
