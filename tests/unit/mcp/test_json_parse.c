#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../json_same.h"
#include "mcp/json_parse.h"

/*
 * mcp_json_parse must read every message exactly as jansson does (json_loadb with
 * JSON_REJECT_DUPLICATES behind json_depth_ok): the same texts refused, the same trees built.
 * Each case is compared against that reference; the generated ones mix valid JSON with the
 * forms parsers disagree on (escapes, surrogates, overlong and truncated UTF-8, numbers at the
 * edges of int64 and double, duplicate keys spelt differently, stray bytes).
 */

static int accepted, refused;

static void check_same(const char *text, size_t len, size_t max_depth, int any)
{
    json_t *ref = json_reference_parse(text, len, max_depth, any);
    json_t *got = mcp_json_parse(text, len, max_depth, any ? MCP_JSON_ANY : 0);
    if (ref && !got && json_nul_quirk(text, len)) {
        /* jansson skips a NUL byte right after a number or a literal; refusing it is right. */
        json_decref(ref);
        refused++;
        return;
    }
    if (!json_same(ref, got)) {
        char *a = ref ? json_dumps(ref, JSON_ENCODE_ANY) : NULL;
        char *b = got ? json_dumps(got, JSON_ENCODE_ANY) : NULL;
        for (size_t k = 0; k < len && k < 64; k++)
            print_error("%02x ", (unsigned char)text[k]);
        print_error("differ on %zu bytes (max_depth %zu, any %d): \"%.*s\"\n jansson: %s\n ours: "
                    "%s\n",
                    len, max_depth, any, (int)(len > 300 ? 300 : len), text, a ? a : "(refused)",
                    b ? b : "(refused)");
        free(a);
        free(b);
        fail();
    }
    if (ref)
        accepted++;
    else
        refused++;
    json_decref(ref);
    json_decref(got);
}

static void both_ways(const char *text)
{
    check_same(text, strlen(text), 64, 0);
    check_same(text, strlen(text), 64, 1);
}

/* Hand-picked texts whose outcome is known, in both directions. */
static void expect(const char *text, int ok_any)
{
    json_t *got = mcp_json_parse(text, strlen(text), 64, MCP_JSON_ANY);
    if ((got != NULL) != ok_any)
        print_error("\"%s\": expected %s\n", text, ok_any ? "accepted" : "refused");
    assert_int_equal(got != NULL, ok_any);
    json_decref(got);
    both_ways(text);
}

static void test_known_texts(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "{}",
        "[]",
        " \t\r\n{ } \n",
        "{\"a\":1}",
        "[1,2,3]",
        "\"x\"",
        "0",
        "-0",
        "1.5",
        "-0.0",
        "1e10",
        "1E+2",
        "1e-2",
        "true",
        "false",
        "null",
        "9223372036854775807",
        "-9223372036854775808",
        "123456789012345678",
        "1234567890123456789",
        "1e-400",
        "4.9e-324",
        "\"\\u00e9\\u20ac\\ud83d\\ude00\"",
        "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",
        "\"\x7f\"",
        "{\"\":0}",
        "{\"a\":{\"a\":{\"a\":[]}}}",
        "[\"\\u0041\",\"A\"]",
        "{\"a\\u0062\":1,\"ba\":2}",
    };
    static const char *const bad[] = {
        "",
        " ",
        "{",
        "[",
        "}",
        "]",
        "{,}",
        "[,]",
        "[1,]",
        "{\"a\":1,}",
        "{\"a\"}",
        "{\"a\" 1}",
        "{1:2}",
        "[1 2]",
        "01",
        "-",
        "1.",
        ".5",
        "+1",
        "1e",
        "1e+",
        "0x10",
        "NaN",
        "Infinity",
        "tru",
        "truex",
        "nul",
        "nullnull",
        "[true1]",
        "9223372036854775808",
        "-9223372036854775809",
        "1e400",
        "-1e400",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"\\ud800x\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12g4\"",
        "\"abc",
        "\"\x01\"",
        "\"\t\"",
        "\"\xc0\x80\"",
        "\"\xc1\xbf\"",
        "\"\xe0\x80\x80\"",
        "\"\xed\xa0\x80\"",
        "\"\xf0\x80\x80\x80\"",
        "\"\xf4\x90\x80\x80\"",
        "\"\xf5\x80\x80\x80\"",
        "\"\xff\"",
        "\"\xc3\"",
        "\"\xe2\x82\"",
        "\xef\xbb\xbf{}",
        "{} x",
        "{}{}",
        "[] ]",
        "{\"a\":1,\"a\":2}",
        "{\"a\\u0062\":1,\"ab\":2}",
        "{\"\\u00e9\":1,\"\xc3\xa9\":2}",
        "{\"ab\\u0000x\":2}",
        "\f{}",
        "\v[]",
        "{\"a\":1}\f",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        expect(ok[i], 1);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect(bad[i], 0);
    /* Only objects and arrays without MCP_JSON_ANY. */
    json_t *v = mcp_json_parse("\"x\"", 3, 64, 0);
    assert_null(v);
    v = mcp_json_parse(" [1] ", 5, 64, 0);
    assert_non_null(v);
    json_decref(v);
    /* A NUL byte ends nothing: the length given is the text, and a NUL byte is refused
     * wherever it is, also right after a number or a literal, where jansson skips it. */
    check_same("{}\0", 3, 64, 0);
    check_same("[\"a\0b\"]", 7, 64, 0);
    assert_null(mcp_json_parse("[1\0]", 4, 64, 0));
    assert_null(mcp_json_parse("[null\0]", 6, 64, 0));
    assert_null(mcp_json_parse("{\"a\":true\0}", 11, 64, 0));
    json_t *quirk = json_loadb("[1\0]", 4, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(quirk); /* the quirk the exception above is about */
    json_decref(quirk);
    assert_null(mcp_json_parse(NULL, 0, 64, MCP_JSON_ANY));
}

/* n containers nested in each other (objects and arrays in turn) around the leaf. */
static void nested(char *buf, size_t n, const char *leaf)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 2) {
            buf[o++] = '[';
        } else {
            memcpy(buf + o, "{\"k\":", 5);
            o += 5;
        }
    }
    o += (size_t)sprintf(buf + o, "%s", leaf);
    for (size_t i = n; i-- > 0;)
        buf[o++] = i % 2 ? ']' : '}';
    buf[o] = '\0';
}

static void test_depth(void **state)
{
    (void)state;
    char *buf = malloc(20000);
    assert_non_null(buf);
    static const size_t bounds[] = {1, 2, 63, 64, 65, 0, 4096};
    static const size_t depths[] = {1, 2, 3, 63, 64, 65, 100, 2046, 2047, 2048, 2049, 2100};
    for (size_t b = 0; b < sizeof bounds / sizeof *bounds; b++)
        for (size_t d = 0; d < sizeof depths / sizeof *depths; d++) {
            nested(buf, depths[d], "1");
            check_same(buf, strlen(buf), bounds[b], 0);
            nested(buf, depths[d], "[]");
            check_same(buf, strlen(buf), bounds[b], 0);
            nested(buf, depths[d], "");
            check_same(buf, strlen(buf), bounds[b], 1);
        }
    /* The bound in both directions: 64 containers pass a bound of 64, 65 do not. */
    nested(buf, 63, "[]");
    json_t *v = mcp_json_parse(buf, strlen(buf), 64, 0);
    assert_non_null(v);
    json_decref(v);
    nested(buf, 64, "[]");
    assert_null(mcp_json_parse(buf, strlen(buf), 64, 0));
    free(buf);
}

/* ---- generated texts ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static unsigned pick(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

struct text {
    char buf[8192];
    size_t len;
};

static void put(struct text *t, const char *s)
{
    size_t n = strlen(s);
    if (t->len + n < sizeof t->buf)
        memcpy(t->buf + t->len, s, n), t->len += n;
}

static const char *const spaces[] = {"", "", "", " ", "\n", "\t", "\r\n", "  ", "\f", "\v"};
static const char *const string_parts[] = {"a",
                                           "abc",
                                           "hello world",
                                           "\\\"",
                                           "\\\\",
                                           "\\/",
                                           "\\b",
                                           "\\f",
                                           "\\n",
                                           "\\r",
                                           "\\t",
                                           "\\u0041",
                                           "\\u00e9",
                                           "\\u20AC",
                                           "\\ud83d\\ude00",
                                           "\\uD83D\\uDE00",
                                           "\\ud800",
                                           "\\udc00",
                                           "\\u0000",
                                           "\\u001f",
                                           "\\x",
                                           "\\u12",
                                           "\xc3\xa9",
                                           "\xe2\x82\xac",
                                           "\xf0\x9f\x98\x80",
                                           "\xc0\x80",
                                           "\xed\xa0\x80",
                                           "\xf4\x90\x80\x80",
                                           "\xff",
                                           "\xc3",
                                           "\x01",
                                           "\x7f",
                                           "\t",
                                           "'",
                                           "P42",
                                           "4111 1111 1111 1111",
                                           "{}[],:",
                                           "\\ud800\\u0041"};
static const char *const numbers[] = {"0",
                                      "-0",
                                      "1",
                                      "-1",
                                      "42",
                                      "1.5",
                                      "-0.0",
                                      "1e10",
                                      "1E+2",
                                      "1e-2",
                                      "01",
                                      "1.",
                                      "-",
                                      "+1",
                                      "9223372036854775807",
                                      "9223372036854775808",
                                      "-9223372036854775808",
                                      "-9223372036854775809",
                                      "123456789012345678",
                                      "999999999999999999",
                                      "1234567890123456789",
                                      "1e400",
                                      "-1e400",
                                      "1e-400",
                                      "4.9e-324",
                                      "2.2250738585072014e-308",
                                      "0.1",
                                      "1e",
                                      "1e+",
                                      "00",
                                      "-01",
                                      "3.14159265358979323846264338327950288",
                                      "100000000000000000000000"};
static const char *const keys[] = {
    "\"a\"",       "\"b\"",       "\"ab\"",   "\"a\\u0062\"",       "\"\"", "\"\xc3\xa9\"",
    "\"\\u00e9\"", "\"\\u0000\"", "\"k\\n\"", "\"\\ud83d\\ude00\"", "a",    "1"};
static const char *const literals[] = {"true", "false", "null", "tru", "nul", "truex", "nulll"};

static void gen_value(struct text *t, int depth);

static void gen_string(struct text *t)
{
    put(t, "\"");
    for (unsigned i = pick(5); i > 0; i--)
        put(t, string_parts[pick(sizeof string_parts / sizeof *string_parts)]);
    put(t, "\"");
}

static void gen_value(struct text *t, int depth)
{
    put(t, spaces[pick(sizeof spaces / sizeof *spaces)]);
    unsigned kind = depth > 5 ? 2 + pick(4) : pick(6);
    switch (kind) {
    case 0: {
        put(t, "{");
        unsigned n = pick(5);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                put(t, ",");
            put(t, spaces[pick(sizeof spaces / sizeof *spaces)]);
            put(t, keys[pick(sizeof keys / sizeof *keys)]);
            put(t, spaces[pick(sizeof spaces / sizeof *spaces)]);
            put(t, ":");
            gen_value(t, depth + 1);
        }
        put(t, "}");
        break;
    }
    case 1: {
        put(t, "[");
        unsigned n = pick(5);
        for (unsigned i = 0; i < n; i++) {
            if (i)
                put(t, ",");
            gen_value(t, depth + 1);
        }
        put(t, "]");
        break;
    }
    case 2:
    case 3:
        gen_string(t);
        break;
    case 4:
        put(t, numbers[pick(sizeof numbers / sizeof *numbers)]);
        break;
    default:
        put(t, literals[pick(sizeof literals / sizeof *literals)]);
        break;
    }
    put(t, spaces[pick(sizeof spaces / sizeof *spaces)]);
}

static void mutate(struct text *t)
{
    static const char bytes[] = {'"',        '\\', ',', ':', '[', ']', '{', '}', '\0',
                                 (char)0x80, 'x',  ' ', '0', '-', 'e', '.', 'u', (char)0xc3};
    if (t->len == 0)
        return;
    size_t at = pick((unsigned)t->len);
    switch (pick(4)) {
    case 0:
        t->buf[at] = bytes[pick(sizeof bytes)];
        break;
    case 1:
        memmove(t->buf + at, t->buf + at + 1, t->len - at - 1);
        t->len--;
        break;
    case 2:
        t->len = at;
        break;
    default:
        if (t->len + 1 < sizeof t->buf) {
            memmove(t->buf + at + 1, t->buf + at, t->len - at);
            t->buf[at] = bytes[pick(sizeof bytes)];
            t->len++;
        }
        break;
    }
}

static void test_generated(void **state)
{
    (void)state;
    static const size_t bounds[] = {0, 2, 3, 64};
    static struct text t;
    accepted = refused = 0;
    for (int i = 0; i < 200000; i++) {
        t.len = 0;
        if (pick(4) == 0)
            gen_value(&t, 0);
        else {
            /* Mostly containers at the top, as messages are. */
            put(&t, pick(2) ? "{\"jsonrpc\":\"2.0\",\"result\":" : "[");
            gen_value(&t, 1);
            put(&t, t.buf[0] == '[' ? "]" : "}");
        }
        for (unsigned m = pick(3) == 0 ? 1 + pick(3) : 0; m > 0; m--)
            mutate(&t);
        check_same(t.buf, t.len, bounds[pick(4)], (int)pick(2));
    }
    /* Both outcomes are exercised, not only one. */
    print_message("generated: %d accepted, %d refused\n", accepted, refused);
    assert_true(accepted > 20000);
    assert_true(refused > 20000);
}

/* Long strings take the fast path and the escape path at every offset of the input. */
static void test_long_strings(void **state)
{
    (void)state;
    static char buf[70000];
    for (size_t n = 0; n < 65536; n = n * 2 + 1) {
        size_t o = 0;
        buf[o++] = '[';
        buf[o++] = '"';
        for (size_t i = 0; i < n; i++)
            buf[o++] = (char)('a' + i % 26);
        memcpy(buf + o, "\\n\xc3\xa9\"]", 7);
        o += 7;
        check_same(buf, o, 64, 0);
        check_same(buf, o - 1, 64, 0); /* truncated */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_texts),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_generated),
        cmocka_unit_test(test_long_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
