#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../json_write_ref.h"
#include "mcp/json_write.h"

/*
 * mcp_json_write must write every tree exactly as jansson's json_dumps does with
 * JSON_COMPACT | JSON_ENCODE_ANY (and the same real precision), and refuse what it refuses.
 * Each case is compared against jansson itself: known forms (every control byte, escapes,
 * UTF-8 of each length, the ill-formed UTF-8 jansson refuses, integer and real edges), then
 * generated trees that mix them.
 */

static int compared, refused;

static void check_same(const json_t *v, int precision)
{
    char *want = json_write_reference(v, precision);
    struct gw_buf b = {0};
    gw_buf_append(&b, "prefix", 6);
    int rc = mcp_json_write(&b, v, precision);
    if (!want) {
        if (rc != -1)
            print_error("jansson refuses, ours wrote: %s\n", b.data + 6);
        assert_int_equal(rc, -1);
        /* A refusal leaves what was there. */
        assert_int_equal(b.len, 6);
        assert_string_equal(b.data, "prefix");
        refused++;
    } else {
        if (rc != 0 || b.len - 6 != strlen(want) || memcmp(b.data + 6, want, b.len - 6) != 0)
            print_error("differ:\n jansson: %s\n ours:    %s\n", want,
                        rc == 0 ? b.data + 6 : "(refused)");
        assert_int_equal(rc, 0);
        assert_int_equal(b.len - 6, strlen(want));
        assert_memory_equal(b.data + 6, want, b.len - 6);
        assert_int_equal(b.data[b.len], '\0');
        char *s = mcp_json_dumps(v, precision);
        assert_non_null(s);
        assert_string_equal(s, want);
        free(s);
        compared++;
    }
    free(want);
    gw_buf_free(&b);
}

static void check_string(const char *s, size_t n)
{
    json_t *v = json_stringn_nocheck(s, n);
    assert_non_null(v);
    check_same(v, 0);
    /* The same bytes as an object's key. */
    json_t *o = json_object();
    assert_int_equal(json_object_setn_new_nocheck(o, s, n, json_true()), 0);
    check_same(o, 0);
    json_decref(o);
    json_decref(v);
}

static void test_strings(void **state)
{
    (void)state;
    /* Every single byte, alone and inside ASCII: controls escaped, 0x7f and '/' as they are,
     * bytes above 0x7f alone are not UTF-8 (refused). */
    for (int c = 0; c < 256; c++) {
        char one[1] = {(char)c};
        check_string(one, 1);
        char mid[5] = {'a', 'b', (char)c, 'c', 'd'};
        check_string(mid, sizeof mid);
    }
    static const char *const texts[] = {
        "",
        "plain text",
        "quote \" backslash \\ slash / tab \t newline \n cr \r bs \b ff \f",
        "caf\xc3\xa9",                                    /* 2 bytes */
        "\xe2\x82\xac euro, \xe2\x80\xa8 line separator", /* 3 bytes */
        "\xf0\x9f\x98\x80 emoji",                         /* 4 bytes */
        "\xef\xbf\xbf \xf4\x8f\xbf\xbf edges",            /* U+FFFF, U+10FFFF */
        "\xc0\x80",                                       /* overlong NUL */
        "\xc1\xbf",                                       /* overlong */
        "\xe0\x80\x80",                                   /* overlong 3 */
        "\xe0\x9f\xbf",                                   /* overlong 3, edge */
        "\xf0\x80\x80\x80",                               /* overlong 4 */
        "\xf0\x8f\xbf\xbf",                               /* overlong 4, edge */
        "\xed\xa0\x80",                                   /* a surrogate */
        "\xed\xbf\xbf",                                   /* a surrogate */
        "\xed\x9f\xbf",                                   /* U+D7FF: fine */
        "\xf4\x90\x80\x80",                               /* above U+10FFFF */
        "\xf5\x80\x80\x80",                               /* no such lead */
        "\xc3",                                           /* cut short */
        "ab\xe2\x82",                                     /* cut short */
        "\xe2\x28\xa1",                                   /* a bad continuation */
        "\x80 lone continuation",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        check_string(texts[i], strlen(texts[i]));
    /* NUL inside a string and a key (built with lengths): \u0000. */
    check_string("a\0b", 3);
    check_string("\0", 1);
    /* A long string with escapes spread through it: runs are copied across buffer growth. */
    char big[20000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = i % 97 == 0 ? '\n' : i % 89 == 0 ? '"' : (char)('a' + i % 26);
    check_string(big, sizeof big);
}

static void test_scalars(void **state)
{
    (void)state;
    static const json_int_t ints[] = {
        0,   1,         -1,         9,         10,        -10,           99,
        100, 123456789, -987654321, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        json_t *v = json_integer(ints[i]);
        check_same(v, 0);
        json_decref(v);
    }
    static const double reals[] = {0.0,
                                   -0.0,
                                   1.0,
                                   -1.0,
                                   0.1,
                                   0.5,
                                   1e17,
                                   1e16,
                                   1e-4,
                                   1e-5,
                                   123456789012345678.0,
                                   3.141592653589793,
                                   1e300,
                                   -1e-300,
                                   5e-324,
                                   1.7976931348623157e308,
                                   2.5,
                                   100.0,
                                   1e21};
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) {
        json_t *v = json_real(reals[i]);
        for (int p = 0; p <= 31; p += (p < 3 ? 1 : 7))
            check_same(v, p);
        json_decref(v);
    }
    json_t *lits[] = {json_null(), json_true(), json_false()};
    for (size_t i = 0; i < 3; i++)
        check_same(lits[i], 0);
    /* Precision out of jansson's range is refused. */
    struct gw_buf b = {0};
    assert_int_equal(mcp_json_write(&b, lits[0], 32), -1);
    assert_int_equal(mcp_json_write(&b, lits[0], -1), -1);
    assert_int_equal(mcp_json_write(&b, NULL, 0), -1);
    gw_buf_free(&b);
}

static void test_containers(void **state)
{
    (void)state;
    json_t *v = json_loads("{\"empty_array\":[],\"empty_object\":{},\"mixed\":[1,2.5,\"x\",null,"
                           "true,false,[[]],{\"k\":{}}],\"nested\":{\"b\":\"text\",\"a\":7}}",
                           0, NULL);
    assert_non_null(v);
    check_same(v, 0);
    check_same(v, 17);
    json_decref(v);
    /* Members in the object's own order, not sorted. */
    json_t *o = json_object();
    json_object_set_new(o, "zeta", json_integer(1));
    json_object_set_new(o, "alpha", json_integer(2));
    json_object_set_new(o, "mid", json_integer(3));
    check_same(o, 0);
    char *s = mcp_json_dumps(o, 0);
    assert_string_equal(s, "{\"zeta\":1,\"alpha\":2,\"mid\":3}");
    free(s);
    /* An ill-formed string deep inside refuses the whole tree, and the buffer is as it was. */
    json_t *arr = json_array();
    json_array_append_new(arr, json_string("fine"));
    json_object_set_new(o, "bad", json_pack("[[{s:o}]]", "deep", json_stringn_nocheck("\xff", 1)));
    json_array_append(arr, o);
    check_same(arr, 0);
    json_decref(arr);
    json_decref(o);
}

static json_t *nest(int depth)
{
    json_t *root = json_array(), *at = root;
    for (int i = 1; i < depth; i++) {
        json_t *in = i % 2 ? json_object() : json_array();
        if (json_is_array(at))
            json_array_append_new(at, in);
        else
            json_object_set_new(at, "k", in);
        at = in;
    }
    return root;
}

static void test_depth(void **state)
{
    (void)state;
    json_t *ok = nest(MCP_JSON_WRITE_MAX_DEPTH);
    check_same(ok, 0);
    json_decref(ok);
    /* One more container than the bound: refused (jansson would write it). */
    json_t *deep = nest(MCP_JSON_WRITE_MAX_DEPTH + 1);
    struct gw_buf b = {0};
    assert_int_equal(mcp_json_write(&b, deep, 0), -1);
    assert_int_equal(b.len, 0);
    json_decref(deep);
    /* A tree that holds itself is refused, not followed forever; jansson refuses it too. */
    json_t *a = json_array(), *c = json_array();
    json_array_append(a, c);
    json_array_append(c, a);
    check_same(a, 0);
    json_array_clear(c);
    json_decref(c);
    json_decref(a);
    gw_buf_free(&b);
}

/* ---- generated trees ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static void gen_bytes(char *out, size_t *n)
{
    static const char *const pieces[] = {"a",
                                         "Z",
                                         " ",
                                         "\"",
                                         "\\",
                                         "/",
                                         "\n",
                                         "\t",
                                         "\x01",
                                         "\x1f",
                                         "\x7f",
                                         "\0",
                                         "\xc3\xa9",
                                         "\xe2\x80\xa8",
                                         "\xf0\x9f\x98\x80",
                                         "\xed\xa0\x80",
                                         "\xc0\x80",
                                         "\xff",
                                         "\xe2\x82",
                                         "\x80",
                                         "0123456789",
                                         "text run "};
    size_t len = 0, parts = next() % 12;
    for (size_t i = 0; i < parts; i++) {
        const char *p = pieces[next() % (sizeof pieces / sizeof pieces[0])];
        size_t pl = p[0] ? strlen(p) : 1;
        /* Mostly well-formed: ill-formed pieces only now and then, so most trees are written. */
        if (((unsigned char)p[0] >= 0x80 && p[0] != '\xc3' && p[0] != '\xe2' && p[0] != '\xf0') ||
            (p[0] == '\xe2' && pl == 2))
            if (next() % 8)
                continue;
        memcpy(out + len, p, pl);
        len += pl;
    }
    *n = len;
}

static json_t *gen(int depth)
{
    char s[256];
    size_t n;
    switch (next() % (depth > 4 ? 6 : 9)) {
    case 0:
        return json_integer((json_int_t)(((uint64_t)next() << 32) | next()) >> (next() % 64));
    case 1: {
        double d;
        uint64_t bits = ((uint64_t)next() << 32) | next();
        memcpy(&d, &bits, sizeof d);
        if (d != d || d - d != 0)
            d = (double)(int32_t)next() / 1024.0;
        return json_real(d);
    }
    case 2:
        gen_bytes(s, &n);
        return json_stringn_nocheck(s, n);
    case 3:
        return json_null();
    case 4:
        return json_true();
    case 5:
        return json_false();
    case 6:
    case 7: {
        json_t *a = json_array();
        for (uint32_t i = next() % 5; i > 0; i--)
            json_array_append_new(a, gen(depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (uint32_t i = next() % 5; i > 0; i--) {
            gen_bytes(s, &n);
            json_object_setn_new_nocheck(o, s, n, gen(depth + 1));
        }
        return o;
    }
    }
}

static void test_generated(void **state)
{
    (void)state;
    compared = refused = 0;
    for (int i = 0; i < 20000; i++) {
        json_t *v = gen(0);
        check_same(v, i % 3 == 0 ? 0 : (int)(next() % 32));
        json_decref(v);
    }
    /* Both kinds were exercised. */
    assert_true(compared > 10000);
    assert_true(refused > 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),    cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_containers), cmocka_unit_test(test_depth),
        cmocka_unit_test(test_generated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
