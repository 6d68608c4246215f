/* Canonical JSON (RFC 8785) as the audit chain hashes it. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "layers/audit/audit_canon.h"
#include "layers/audit/audit_chain.h"
#include "lib/timeutil.h"
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

/* Keys that sort differently by bytes and by UTF-16 where they can: ASCII, empty, multi-byte,
 * and those in U+E000..U+FFFF against supplementary characters. */
static const char *const key_pool[] = {"",
                                       "a",
                                       "A",
                                       "b",
                                       "ab",
                                       "abc",
                                       "Z",
                                       "_",
                                       "~",
                                       "1",
                                       "10",
                                       "\xc3\xb6",
                                       "\xe2\x82\xac",
                                       "\xef\xac\xb3",
                                       "\xee\x80\x80",
                                       "\xf0\x9f\x98\x80",
                                       "a\xf0\x9f\x98\x80",
                                       "a\xef\xac\xb3",
                                       "tool",
                                       "tenant",
                                       "request_id",
                                       "route"};

/* Members added in random orders come out in RFC 8785 order, by both of the sort's paths
 * (insertion for a record's few dozen, qsort beyond): ASCII, empty and multi-byte keys,
 * including those whose UTF-16 order is not their byte order. */
static void test_members_sort_orders(void **state)
{
    (void)state;
    const char *const *pool = key_pool;
    size_t np = sizeof key_pool / sizeof key_pool[0];
    unsigned seed = 99;
    for (int round = 0; round < 3000; round++) {
        struct audit_members ms = {0};
        size_t n = 1 + (size_t)round % 48;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            assert_int_equal(audit_members_add_raw(&ms, pool[(seed >> 16) % np], "1", 1), 0);
        }
        audit_members_sort(&ms);
        assert_int_equal(ms.n, n);
        for (size_t i = 1; i < ms.n; i++)
            assert_true(audit_canon_keycmp(ms.keys.data + ms.m[i - 1].key_off, ms.m[i - 1].key_len,
                                           ms.keys.data + ms.m[i].key_off, ms.m[i].key_len) <= 0);
        audit_members_free(&ms);
    }
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

/* A plain per-byte escaper, as RFC 8785 writes a string of valid UTF-8. */
static void reference_string(struct gw_buf *b, const unsigned char *s, size_t n)
{
    gw_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        char e[8];
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            gw_buf_append(b, e, 2);
        } else if (c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t') {
            e[0] = '\\';
            e[1] = c == '\b' ? 'b' : c == '\f' ? 'f' : c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            gw_buf_append(b, e, 2);
        } else if (c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", c);
            gw_buf_append(b, e, 6);
        } else {
            gw_buf_append(b, (const char *)&c, 1);
        }
    }
    gw_buf_append(b, "\"", 1);
}

/* Strings written in one slice (up to 4096 bytes) and in several (longer, a character
 * across a slice's end) give the same bytes as the reference, for plain text, escapes,
 * control bytes and multi-byte characters at every position; invalid UTF-8 is refused,
 * leaving what was written before. */
static void test_strings_both_paths(void **state)
{
    (void)state;
    static const char *const pieces[] = {
        "a",    "\"",   "\\",       "\n",           "\x01",
        "\x1f", "\x7f", "\xc3\xb6", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
        "xyz/"};
    static const size_t lens[] = {0, 1, 7, 8, 9, 63, 500, 4090, 4095, 4096, 4097, 4100, 9000};
    unsigned seed = 7;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        for (int kind = 0; kind < 4; kind++) {
            struct gw_buf in = {0};
            while (in.len < lens[li]) {
                seed = seed * 1103515245u + 12345u;
                /* kind 0: plain only; 1: one escape at the end; 2: at the start; 3: mixed */
                size_t k = kind == 0 ? 0 : kind == 3 ? (seed >> 16) % 11 : 0;
                if (kind == 2 && in.len == 0)
                    k = 1;
                if (kind == 1 && in.len + 1 == lens[li])
                    k = 4;
                gw_buf_append_str(&in, pieces[k]);
            }
            json_t *v = json_stringn(in.data ? in.data : "", in.len);
            assert_non_null(v);
            struct gw_buf want = {0}, got = {0};
            gw_buf_append(&got, "x", 1);
            gw_buf_append(&want, "x", 1);
            reference_string(&want, (const unsigned char *)in.data, in.len);
            assert_int_equal(audit_canon_append(&got, v), 0);
            assert_int_equal(got.len, want.len);
            assert_memory_equal(got.data, want.data, want.len);
            assert_int_equal(got.data[got.len], '\0');
            json_decref(v);
            /* The same text with a broken sequence at its end: refused, nothing kept. */
            gw_buf_append(&in, "\xc3", 1);
            v = json_stringn_nocheck(in.data, in.len);
            size_t before = got.len;
            assert_int_equal(audit_canon_append(&got, v), -1);
            assert_int_equal(got.len, before);
            assert_int_equal(got.data[got.len], '\0');
            json_decref(v);
            gw_buf_free(&in);
            gw_buf_free(&want);
            gw_buf_free(&got);
        }
    }
}

/* A character that starts in one slice's last bytes and ends in the next: written whole,
 * once, for every offset of its lead byte around the end of the first slice. */
static void test_string_slice_boundary(void **state)
{
    (void)state;
    static const char *const chars[] = {"\xc3\xb6", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (size_t c = 0; c < 3; c++) {
        for (size_t lead = 4092; lead <= 4097; lead++) {
            struct gw_buf in = {0}, want = {0}, got = {0};
            gw_buf_append(&in, "\n", 1); /* not plain: the slices start at 0 */
            while (in.len < lead)
                gw_buf_append(&in, "a", 1);
            gw_buf_append_str(&in, chars[c]);
            gw_buf_append(&in, "\"z", 2);
            json_t *v = json_stringn(in.data, in.len);
            assert_non_null(v);
            reference_string(&want, (const unsigned char *)in.data, in.len);
            assert_int_equal(audit_canon_append(&got, v), 0);
            assert_int_equal(got.len, want.len);
            assert_memory_equal(got.data, want.data, want.len);
            json_decref(v);
            gw_buf_free(&in);
            gw_buf_free(&want);
            gw_buf_free(&got);
        }
    }
}

/* An object's members come out in RFC 8785 order by both of the sort's paths (insertion up
 * to 32 members, qsort beyond), whatever order they were added in. */
static void test_object_sort_both_paths(void **state)
{
    (void)state;
    const char *const *pool = key_pool;
    size_t np = sizeof key_pool / sizeof key_pool[0];
    unsigned seed = 3;
    for (int round = 0; round < 400; round++) {
        json_t *o = json_object();
        size_t n = 1 + (size_t)round % 60;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            char key[32];
            snprintf(key, sizeof key, "%s%u", pool[(seed >> 16) % np], (seed >> 8) % 7);
            json_object_set_new(o, key, json_integer((json_int_t)i));
        }
        char *c = canon_of(o);
        assert_non_null(c);
        /* Parse it back and check the order of the keys as written. */
        json_error_t e;
        json_t *back = json_loads(c, JSON_PRESERVE_ORDER, &e);
        assert_non_null(back);
        assert_true(json_equal(back, o));
        const char *prev = NULL;
        size_t prev_len = 0;
        const char *k;
        json_t *v;
        json_object_foreach(back, k, v)
        {
            (void)v;
            size_t kl = strlen(k);
            if (prev)
                assert_true(audit_canon_keycmp(prev, prev_len, k, kl) < 0);
            prev = k;
            prev_len = kl;
        }
        json_decref(back);
        json_decref(o);
        free(c);
    }
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

/* The payload as the JSON tree it was once built from gives it; NULL where that fails. */
static char *payload_reference(const char *instance, uint64_t seq, const char *head,
                               const char *tns)
{
    json_t *o = json_pack("{s:s, s:I, s:s, s:s}", "head_hash", head, "head_seq", (json_int_t)seq,
                          "instance", instance, "time_ns", tns);
    char *c = o ? canon_of(o) : NULL;
    json_decref(o);
    return c;
}

static void test_checkpoint_payload_direct(void **state)
{
    (void)state;
    const char *instances[] = {"gw-1",       "a\"b\\c", "tab\there\nnl", "\x01\x1f ctl",
                               "zürich-€-😀", "",        "\xef\xbf\xbf"};
    const uint64_t seqs[] = {
        0, 1, (1ull << 40) - 1, 1ull << 53, (1ull << 53) + 1, UINT64_MAX / 2 + 7, UINT64_MAX};
    const char *heads[] = {AUDIT_GENESIS_HASH,
                           "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                           "not\"hex"};
    const char *times[] = {"1733270400123456789", "", "9\u00e9"};
    for (size_t i = 0; i < sizeof instances / sizeof *instances; i++)
        for (size_t j = 0; j < sizeof seqs / sizeof *seqs; j++)
            for (size_t h = 0; h < sizeof heads / sizeof *heads; h++)
                for (size_t t = 0; t < sizeof times / sizeof *times; t++) {
                    char *want = payload_reference(instances[i], seqs[j], heads[h], times[t]);
                    assert_non_null(want);
                    struct gw_buf got = {0};
                    assert_int_equal(gw_buf_append(&got, "x", 1), 0);
                    assert_int_equal(
                        audit_checkpoint_payload(&got, instances[i], seqs[j], heads[h], times[t]),
                        0);
                    assert_int_equal(got.len, strlen(want) + 1);
                    assert_memory_equal(got.data + 1, want, got.len - 1);
                    gw_buf_free(&got);
                    free(want);
                }
    /* Invalid UTF-8 and a missing string are refused, and the buffer is left as it was. */
    const char *bad[] = {"\xc3", "\xed\xa0\x80", "\xff", "a\xc0\xafz"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_null(payload_reference(bad[i], 1, AUDIT_GENESIS_HASH, "1"));
        struct gw_buf got = {0};
        assert_int_equal(gw_buf_append(&got, "keep", 4), 0);
        assert_int_equal(audit_checkpoint_payload(&got, bad[i], 1, AUDIT_GENESIS_HASH, "1"), -1);
        assert_int_equal(audit_checkpoint_payload(&got, "gw", 1, bad[i], "1"), -1);
        assert_int_equal(audit_checkpoint_payload(&got, "gw", 1, AUDIT_GENESIS_HASH, bad[i]), -1);
        assert_int_equal(got.len, 4);
        gw_buf_free(&got);
    }
    struct gw_buf got = {0};
    assert_int_equal(audit_checkpoint_payload(&got, NULL, 1, AUDIT_GENESIS_HASH, "1"), -1);
    assert_int_equal(audit_checkpoint_payload(&got, "gw", 1, AUDIT_GENESIS_HASH, NULL), -1);
    gw_buf_free(&got);
}

static char *members_text(const struct audit_members *ms)
{
    struct gw_buf b = {0};
    assert_int_equal(audit_members_write(&b, ms, NULL), 0);
    assert_int_equal(gw_buf_append(&b, "", 1), 0);
    return b.data;
}

/* The checkpoint's members equal those audit_members_from_object makes of it as JSON. */
static void test_checkpoint_members_direct(void **state)
{
    (void)state;
    static const char *const chain_keys[] = {"seq",       "instance", "time_ns", "time",
                                             "prev_hash", "hash",     NULL};
    struct audit_members got = {0};
    const uint64_t nums[] = {0, 1, 999, (1ull << 53) + 3};
    for (int closing = 0; closing < 2; closing++)
        for (size_t i = 0; i < sizeof nums / sizeof *nums; i++) {
            const struct audit_checkpoint_fields f = {
                .head_seq = nums[i],
                .records = nums[(i + 1) % 4],
                .head_hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                .signed_time_ns = "1733270400123456789",
                .key_id = "ab\"cd",
                .signature = "00ff",
                .closing = closing,
            };
            json_t *rec = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:I}", "kind", "checkpoint",
                                    "head_seq", (json_int_t)f.head_seq, "head_hash", f.head_hash,
                                    "signed_time_ns", f.signed_time_ns, "key_id", f.key_id,
                                    "signature", f.signature, "records", (json_int_t)f.records);
            assert_non_null(rec);
            if (closing)
                json_object_set_new(rec, "closing", json_true());
            struct audit_members want = {0};
            assert_int_equal(audit_members_from_object(&want, rec, chain_keys), 0);
            /* Twice into the same members: the second call starts from empty. */
            assert_int_equal(audit_checkpoint_members(&got, &f), 0);
            assert_int_equal(audit_checkpoint_members(&got, &f), 0);
            char *a = members_text(&want), *b = members_text(&got);
            assert_string_equal(b, a);
            assert_int_equal(got.n, want.n);
            free(a);
            free(b);
            audit_members_free(&want);
            json_decref(rec);
        }
    const struct audit_checkpoint_fields bad = {
        .head_hash = "\xc3", .signed_time_ns = "1", .key_id = "k", .signature = "s"};
    assert_int_equal(audit_checkpoint_members(&got, &bad), -1);
    audit_members_free(&got);
}

/* The cached date and time of day give what gw_time_rfc3339 writes, across seconds. */
static void test_time_text(void **state)
{
    (void)state;
    struct audit_time_text c = {0};
    /* 1970, a second before 2024-12-04, 2000-02-28 23:59:59 (a leap day next), 2099-12-31. */
    const int64_t base[] = {0, 1733270399999999999ll, 951782399000000000ll, 4102444799000000000ll};
    for (size_t b = 0; b < sizeof base / sizeof *base; b++)
        for (int64_t d = 0; d < 3000000000ll; d += 99999989) {
            int64_t ns = base[b] + d;
            char want[64], got[48];
            want[0] = '"';
            gw_time_rfc3339((uint64_t)ns, want + 1, sizeof want - 2);
            strcat(want, "\"");
            int n = audit_time_text(&c, ns, got, sizeof got);
            assert_int_equal(n, (int)strlen(want));
            assert_string_equal(got, want);
        }
    char small[16];
    assert_int_equal(audit_time_text(&c, 1, small, sizeof small), -1);
    char out[48];
    assert_int_equal(audit_time_text(&c, -1, out, sizeof out), -1);
}

/*
 * The writer's signer (libsodium) makes the bytes OpenSSL makes and verifies, for messages of
 * every length a checkpoint can have and more, and the RFC 8032 vectors.
 */
static void test_signer(void **state)
{
    (void)state;
    char err[256];
    EVP_PKEY *key = audit_key_load_private("tests/keys/test-ed25519.pem", err, sizeof err);
    assert_non_null(key);
    struct audit_signer s;
    assert_int_equal(audit_signer_init(&s, key), 0);
    char msg[2048];
    for (size_t n = 0; n <= sizeof msg; n += n < 80 ? 1 : 97) {
        for (size_t i = 0; i < n; i++)
            msg[i] = (char)('a' + (i * 7 + n) % 26);
        char a[129], b[129];
        assert_int_equal(audit_sign_with(&s, msg, n, a), 0);
        assert_int_equal(audit_sign(key, msg, n, b), 0);
        assert_string_equal(a, b); /* Ed25519 is deterministic */
        assert_int_equal(audit_sig_ok(key, msg, n, a, 128), 1);
        if (n) {
            msg[n / 2] ^= 1;
            assert_int_equal(audit_sig_ok(key, msg, n, a, 128), 0);
        }
    }
    audit_signer_free(&s);
    char c[129];
    assert_int_equal(audit_sign_with(&s, "abc", 3, c), -1); /* freed: refuses */
    for (size_t i = 0; i < sizeof s.sk; i++)
        assert_int_equal(s.sk[i], 0); /* and its copy of the secret is gone */
    EVP_PKEY_free(key);

    /* RFC 8032, section 7.1, tests 1 and 2. */
    static const struct {
        const char *sk, *msg, *sig;
    } v[] = {
        {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "",
         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
         "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
        {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", "\x72",
         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
         "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
    };
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        unsigned char seed[32];
        for (size_t i = 0; i < 32; i++) {
            unsigned int byte;
            assert_int_equal(sscanf(v[k].sk + 2 * i, "%2x", &byte), 1);
            seed[i] = (unsigned char)byte;
        }
        EVP_PKEY *rk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof seed);
        assert_non_null(rk);
        assert_int_equal(audit_signer_init(&s, rk), 0);
        char got[129];
        assert_int_equal(audit_sign_with(&s, v[k].msg, strlen(v[k].msg), got), 0);
        assert_string_equal(got, v[k].sig);
        audit_signer_free(&s);
        EVP_PKEY_free(rk);
    }

    /* Keys it cannot sign with are refused, and leave a signer that refuses to sign. */
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(ec);
    assert_int_equal(audit_signer_init(&s, ec), -1);
    assert_int_equal(audit_sign_with(&s, "abc", 3, c), -1);
    audit_signer_free(&s);
    EVP_PKEY_free(ec);
    /* A public key alone has no secret to sign with. */
    key = audit_key_load_private("tests/keys/test-ed25519.pem", err, sizeof err);
    assert_non_null(key);
    unsigned char raw[32];
    size_t raw_len = sizeof raw;
    assert_int_equal(EVP_PKEY_get_raw_public_key(key, raw, &raw_len), 1);
    EVP_PKEY *pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, raw_len);
    assert_non_null(pub);
    assert_int_equal(audit_signer_init(&s, pub), -1);
    assert_int_equal(audit_sign_with(&s, "abc", 3, c), -1);
    audit_signer_free(&s);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(key);
    assert_int_equal(audit_signer_init(&s, NULL), -1);
    audit_signer_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8785_numbers),
        cmocka_unit_test(test_numbers_round_trip),
        cmocka_unit_test(test_rfc8785_example),
        cmocka_unit_test(test_rfc8785_sorting),
        cmocka_unit_test(test_members_sort_orders),
        cmocka_unit_test(test_escapes_and_integers),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_strings_both_paths),
        cmocka_unit_test(test_string_slice_boundary),
        cmocka_unit_test(test_object_sort_both_paths),
        cmocka_unit_test(test_members_merge),
        cmocka_unit_test(test_redact_copy),
        cmocka_unit_test(test_checkpoint_payload_direct),
        cmocka_unit_test(test_checkpoint_members_direct),
        cmocka_unit_test(test_time_text),
        cmocka_unit_test(test_signer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
