/* Tests for cfg.c: the YAML node tree, its bounds, and the typed getters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/cfg.h"

static void parse_ok(const char *text, struct cfg_doc *doc)
{
    struct cfg_error err = {{0}};
    if (cfg_load_string(text, strlen(text), "t.yaml", doc, &err) != 0)
        fail_msg("unexpected error: %s", err.msg);
}

/* Parsing must fail with a message that starts with `prefix`. */
static void parse_fails(const char *text, size_t len, const char *prefix)
{
    struct cfg_doc doc;
    struct cfg_error err = {{0}};
    if (cfg_load_string(text, len, "t.yaml", &doc, &err) == 0) {
        cfg_doc_free(&doc);
        fail_msg("expected an error for:\n%s", text);
    }
    if (strncmp(err.msg, prefix, strlen(prefix)) != 0)
        fail_msg("error\n  %s\ndoes not start with\n  %s", err.msg, prefix);
    assert_null(doc.root);
}

static void test_tree_nesting_and_positions(void **state)
{
    (void)state;
    struct cfg_doc doc;
    parse_ok("server:\n"
             "  listen: [\"a\", 'b']\n"
             "  limits:\n"
             "    max_body: 1MiB\n"
             "routes:\n"
             "  - name: x\n"
             "    flag: ~\n"
             "    text: \"null\"\n",
             &doc);
    const struct cfg_node *root = doc.root;
    assert_int_equal(root->kind, CFG_MAP);
    assert_int_equal(root->n, 2);
    assert_string_equal(root->keys[0], "server");
    assert_string_equal(root->keys[1], "routes");
    assert_int_equal(root->key_marks[1].line, 5);
    assert_int_equal(root->key_marks[1].column, 1);

    const struct cfg_node *server = cfg_map_get(root, "server");
    assert_non_null(server);
    assert_int_equal(server->kind, CFG_MAP);
    assert_int_equal(server->line, 2);
    assert_int_equal(server->column, 3);
    const struct cfg_node *listen = cfg_map_get(server, "listen");
    assert_int_equal(listen->kind, CFG_SEQ);
    assert_int_equal(listen->n, 2);
    assert_int_equal(listen->line, 2);
    assert_int_equal(listen->column, 11);
    assert_string_equal(listen->items[0]->scalar, "a");
    assert_int_equal(listen->items[0]->quoted, 1);
    assert_int_equal(listen->items[1]->column, 17);
    const struct cfg_node *mb = cfg_map_get(cfg_map_get(server, "limits"), "max_body");
    assert_string_equal(mb->scalar, "1MiB");
    assert_int_equal(mb->quoted, 0);
    assert_int_equal(mb->line, 4);
    assert_int_equal(mb->column, 15);

    const struct cfg_node *routes = cfg_map_get(root, "routes");
    assert_int_equal(routes->kind, CFG_SEQ);
    const struct cfg_node *r0 = routes->items[0];
    assert_int_equal(r0->kind, CFG_MAP);
    assert_int_equal(r0->line, 6);
    assert_int_equal(r0->column, 5);
    assert_true(cfg_is_null(cfg_map_get(r0, "flag")));
    /* A quoted "null" is a string, not null. */
    assert_false(cfg_is_null(cfg_map_get(r0, "text")));
    assert_null(cfg_map_get(r0, "absent"));
    assert_null(cfg_map_get(NULL, "x"));
    assert_null(cfg_map_get(routes, "x")); /* not a map */
    cfg_doc_free(&doc);
    cfg_doc_free(&doc); /* idempotent */
}

static void test_empty_inputs(void **state)
{
    (void)state;
    const char *empty[] = {"", "\n\n", "# comment only\n", "---\n", "--- ~\n"};
    for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
        struct cfg_doc doc;
        parse_ok(empty[i], &doc);
        assert_int_equal(doc.root->kind, CFG_MAP);
        assert_int_equal(doc.root->n, 0);
        cfg_doc_free(&doc);
    }
    parse_fails("- a\n", 4, "t.yaml:1:1: the top level must be a map of sections");
    parse_fails("just text\n", 10, "t.yaml:1:1: the top level must be a map");
}

static void test_duplicates_rejected(void **state)
{
    (void)state;
    const char top[] = "a: 1\nb: 2\na: 3\n";
    parse_fails(top, sizeof top - 1, "t.yaml:3:1: duplicate key \"a\"");
    const char nested[] = "a:\n  x: 1\n  y: 2\n  x: 3\n";
    parse_fails(nested, sizeof nested - 1, "t.yaml:4:3: duplicate key \"x\"");
    const char flow[] = "a: {x: 1, x: 2}\n";
    parse_fails(flow, sizeof flow - 1, "t.yaml:1:11: duplicate key \"x\"");
    /* The same key in two different maps is fine. */
    struct cfg_doc doc;
    parse_ok("a: {x: 1}\nb: {x: 2}\n", &doc);
    cfg_doc_free(&doc);
}

static void test_anchors_and_aliases_rejected(void **state)
{
    (void)state;
    const char alias[] = "a: &x 1\nb: *x\n";
    parse_fails(alias, sizeof alias - 1, "t.yaml:1:4: YAML anchors are not supported");
    const char map_anchor[] = "a: &m {x: 1}\n";
    parse_fails(map_anchor, sizeof map_anchor - 1, "t.yaml:1:4: YAML anchors are not supported");
    const char seq_anchor[] = "a: &s [1]\n";
    parse_fails(seq_anchor, sizeof seq_anchor - 1, "t.yaml:1:4: YAML anchors");
    /* An alias to an undefined anchor is refused too (libyaml reports the alias event). */
    const char bare_alias[] = "a: *nothing\n";
    parse_fails(bare_alias, sizeof bare_alias - 1, "t.yaml:1:4: YAML aliases are not supported");
    /* The "billion laughs" shape: refused at the first anchor, nothing expands. */
    const char laughs[] = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n";
    parse_fails(laughs, sizeof laughs - 1, "t.yaml:1:4: YAML anchors");
}

static void nested(char *buf, size_t depth)
{
    size_t o = 0;
    memcpy(buf, "a: ", 3);
    o = 3;
    for (size_t i = 0; i < depth; i++)
        buf[o++] = '[';
    for (size_t i = 0; i < depth; i++)
        buf[o++] = ']';
    buf[o++] = '\n';
    buf[o] = '\0';
}

static void test_depth_bound(void **state)
{
    (void)state;
    char buf[512];
    struct cfg_doc doc;
    /* The root map is one level: 63 more are allowed, the 65th level is refused. */
    nested(buf, 63);
    parse_ok(buf, &doc);
    cfg_doc_free(&doc);
    nested(buf, 64);
    parse_fails(buf, strlen(buf), "t.yaml:1:67: nesting deeper than 64 levels");
    nested(buf, 200);
    parse_fails(buf, strlen(buf), "t.yaml:1:67: nesting deeper than 64 levels");
}

static void test_syntax_and_structure_errors(void **state)
{
    (void)state;
    const char unclosed[] = "a: [1, 2\nb: 3\n";
    parse_fails(unclosed, sizeof unclosed - 1, "t.yaml:");
    struct cfg_doc doc;
    struct cfg_error err = {{0}};
    assert_int_equal(cfg_load_string(unclosed, sizeof unclosed - 1, "t.yaml", &doc, &err), -1);
    assert_non_null(strstr(err.msg, "YAML syntax error"));

    const char two_docs[] = "a: 1\n---\nb: 2\n";
    parse_fails(two_docs, sizeof two_docs - 1, "t.yaml:3:1: only one YAML document is allowed");
    const char complex_key[] = "? [a]\n: b\n";
    parse_fails(complex_key, sizeof complex_key - 1, "t.yaml:1:3: map keys must be plain strings");
    /* A NUL inside a quoted value would silently cut the C string short. */
    const char nul_escape[] = "a: \"/mcp\\0x\"\n";
    parse_fails(nul_escape, sizeof nul_escape - 1, "t.yaml:1:4: NUL characters are not allowed");
    const char nul_key[] = "\"a\\0b\": 1\n";
    parse_fails(nul_key, sizeof nul_key - 1, "t.yaml:1:1: NUL characters are not allowed");
    /* A raw NUL byte in the input is a syntax error. */
    const char raw_nul[] = "a: x\0y\n";
    parse_fails(raw_nul, sizeof raw_nul - 1, "t.yaml:");
    const char tab[] = "a:\n\tb: 1\n";
    parse_fails(tab, sizeof tab - 1, "t.yaml:2:");
}

static void test_load_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/toolgate-test-cfg-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/c.yaml", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("a:\n  b: 1\n", f);
    fclose(f);
    struct cfg_doc doc;
    struct cfg_error err = {{0}};
    assert_int_equal(cfg_load_file(path, &doc, &err), 0);
    assert_string_equal(doc.name, path);
    assert_int_equal(cfg_map_get(doc.root, "a")->line, 2);
    cfg_doc_free(&doc);

    f = fopen(path, "wb");
    fputs("a:\n  b: [\n", f);
    fclose(f);
    assert_int_equal(cfg_load_file(path, &doc, &err), -1);
    assert_memory_equal(err.msg, path, strlen(path));
    assert_int_equal(unlink(path), 0);

    assert_int_equal(cfg_load_file(path, &doc, &err), -1);
    assert_non_null(strstr(err.msg, "cannot open"));
    assert_int_equal(cfg_load_file(dir, &doc, &err), -1); /* a directory */
    assert_int_equal(rmdir(dir), 0);
}

/* ---- typed getters ------------------------------------------------------------------------ */

static struct cfg_doc getter_doc;

static int setup_getters(void **state)
{
    (void)state;
    static const char text[] = "m:\n"
                               "  s: hello\n"
                               "  q: \"null\"\n"
                               "  n: ~\n"
                               "  list: [a, b]\n"
                               "  map: {x: 1}\n"
                               "  t: true\n"
                               "  f: off\n"
                               "  b: maybe\n"
                               "  i: -42\n"
                               "  big: 99999999999999999999\n"
                               "  word: twelve\n"
                               "  frac: 1.5\n"
                               "  d: 0.25\n"
                               "  nan: nan\n"
                               "  inf: inf\n"
                               "  hex: 0x10\n"
                               "  dur: 250ms\n"
                               "  bare: 30\n"
                               "  size: 16KiB\n"
                               "  badsize: 16 parsecs\n"
                               "  nested: [a, [b]]\n"
                               "  empty: []\n";
    struct cfg_error err = {{0}};
    return cfg_load_string(text, sizeof text - 1, "g.yaml", &getter_doc, &err);
}

static int teardown_getters(void **state)
{
    (void)state;
    cfg_doc_free(&getter_doc);
    return 0;
}

#define M (cfg_map_get(getter_doc.root, "m"))

static void expect_msg(const struct cfg_error *err, const char *want)
{
    if (strncmp(err->msg, want, strlen(want)) != 0)
        fail_msg("error\n  %s\ndoes not start with\n  %s", err->msg, want);
}

static void test_get_string(void **state)
{
    (void)state;
    struct cfg_error err = {{0}};
    char *s = NULL;
    assert_int_equal(cfg_get_string(&getter_doc, M, "m", "s", 1, &s, &err), 0);
    assert_string_equal(s, "hello");
    assert_int_equal(cfg_get_string(&getter_doc, M, "m", "q", 0, &s, &err), 0);
    assert_string_equal(s, "null"); /* the previous value was freed (ASan checks) */
    /* Absent and null keep the default. */
    assert_int_equal(cfg_get_string(&getter_doc, M, "m", "absent", 0, &s, &err), 0);
    assert_int_equal(cfg_get_string(&getter_doc, M, "m", "n", 0, &s, &err), 0);
    assert_string_equal(s, "null");
    assert_int_equal(cfg_get_string(&getter_doc, M, "m", "absent", 1, &s, &err), -1);
    expect_msg(&err, "g.yaml:2:3: m.absent: required key is missing");
    assert_int_equal(cfg_get_string(&getter_doc, M, "m", "list", 0, &s, &err), -1);
    expect_msg(&err, "g.yaml:5:9: m.list: expected a single value, not a list");
    assert_int_equal(cfg_get_string(&getter_doc, M, "m", "map", 0, &s, &err), -1);
    expect_msg(&err, "g.yaml:6:8: m.map: expected a single value, not a map");
    free(s);

    char *t = NULL;
    const struct cfg_node *list = cfg_map_get(M, "list");
    assert_int_equal(cfg_scalar_string(&getter_doc, list->items[1], "m.list[1]", &t, &err), 0);
    assert_string_equal(t, "b");
    free(t);
    assert_int_equal(cfg_scalar_string(&getter_doc, list, "m.list", &t, &err), -1);
}

static void test_get_bool(void **state)
{
    (void)state;
    struct cfg_error err = {{0}};
    int v = 7;
    assert_int_equal(cfg_get_bool(&getter_doc, M, "m", "t", &v, &err), 0);
    assert_int_equal(v, 1);
    assert_int_equal(cfg_get_bool(&getter_doc, M, "m", "f", &v, &err), 0);
    assert_int_equal(v, 0);
    v = 7;
    assert_int_equal(cfg_get_bool(&getter_doc, M, "m", "absent", &v, &err), 0);
    assert_int_equal(v, 7);
    assert_int_equal(cfg_get_bool(&getter_doc, M, "m", "b", &v, &err), -1);
    expect_msg(&err, "g.yaml:9:6: m.b: \"maybe\" is not true or false");
}

static void test_get_int(void **state)
{
    (void)state;
    struct cfg_error err = {{0}};
    int64_t v = 5;
    assert_int_equal(cfg_get_int(&getter_doc, M, "m", "i", -100, 100, &v, &err), 0);
    assert_int_equal(v, -42);
    v = 5;
    assert_int_equal(cfg_get_int(&getter_doc, M, "m", "i", 0, 100, &v, &err), -1);
    expect_msg(&err, "g.yaml:10:6: m.i: -42 is out of range [0, 100]");
    assert_int_equal(v, 5); /* unchanged on error */
    assert_int_equal(cfg_get_int(&getter_doc, M, "m", "big", INT64_MIN, INT64_MAX, &v, &err), -1);
    expect_msg(&err, "g.yaml:11:8: m.big: \"99999999999999999999\" is not a whole number");
    assert_int_equal(cfg_get_int(&getter_doc, M, "m", "word", 0, 100, &v, &err), -1);
    expect_msg(&err, "g.yaml:12:9: m.word: \"twelve\" is not a whole number");
    assert_int_equal(cfg_get_int(&getter_doc, M, "m", "frac", 0, 100, &v, &err), -1);
    assert_int_equal(cfg_get_int(&getter_doc, M, "m", "hex", 0, 100, &v, &err), -1);
    assert_int_equal(cfg_get_int(&getter_doc, M, "m", "absent", 0, 100, &v, &err), 0);
    assert_int_equal(v, 5);
}

static void test_get_double(void **state)
{
    (void)state;
    struct cfg_error err = {{0}};
    double v = 9;
    assert_int_equal(cfg_get_double(&getter_doc, M, "m", "d", &v, &err), 0);
    assert_true(v == 0.25);
    assert_int_equal(cfg_get_double(&getter_doc, M, "m", "i", &v, &err), 0);
    assert_true(v == -42.0);
    assert_int_equal(cfg_get_double(&getter_doc, M, "m", "nan", &v, &err), -1);
    expect_msg(&err, "g.yaml:15:8: m.nan: \"nan\" is not a number");
    assert_int_equal(cfg_get_double(&getter_doc, M, "m", "inf", &v, &err), -1);
    assert_int_equal(cfg_get_double(&getter_doc, M, "m", "hex", &v, &err), -1);
    assert_int_equal(cfg_get_double(&getter_doc, M, "m", "word", &v, &err), -1);
    assert_true(v == -42.0);
}

static void test_get_duration_and_size(void **state)
{
    (void)state;
    struct cfg_error err = {{0}};
    uint64_t v = 1;
    assert_int_equal(cfg_get_duration_ms(&getter_doc, M, "m", "dur", &v, &err), 0);
    assert_int_equal(v, 250);
    assert_int_equal(cfg_get_duration_ms(&getter_doc, M, "m", "bare", &v, &err), -1);
    expect_msg(&err, "g.yaml:19:9: m.bare: \"30\" is not a duration (write it like 250ms");
    assert_int_equal(cfg_get_duration_ms(&getter_doc, M, "m", "list", &v, &err), -1);
    assert_int_equal(v, 250);
    assert_int_equal(cfg_get_size(&getter_doc, M, "m", "size", &v, &err), 0);
    assert_int_equal(v, 16384);
    assert_int_equal(cfg_get_size(&getter_doc, M, "m", "badsize", &v, &err), -1);
    expect_msg(&err, "g.yaml:21:12: m.badsize: \"16 parsecs\" is not a size");
    assert_int_equal(cfg_get_size(&getter_doc, M, "m", "i", &v, &err), -1); /* negative */
    assert_int_equal(cfg_get_size(&getter_doc, M, "m", "absent", &v, &err), 0);
    assert_int_equal(v, 16384);
}

static void test_get_string_list(void **state)
{
    (void)state;
    struct cfg_error err = {{0}};
    char **v = NULL;
    size_t n = 99;
    assert_int_equal(cfg_get_string_list(&getter_doc, M, "m", "list", &v, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0], "a");
    assert_string_equal(v[1], "b");
    assert_null(v[2]);
    /* A single string is a one-item list; the previous list is freed. */
    assert_int_equal(cfg_get_string_list(&getter_doc, M, "m", "s", &v, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0], "hello");
    assert_null(v[1]);
    assert_int_equal(cfg_get_string_list(&getter_doc, M, "m", "empty", &v, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_null(v[0]);
    assert_int_equal(cfg_get_string_list(&getter_doc, M, "m", "map", &v, &n, &err), -1);
    expect_msg(&err, "g.yaml:6:8: m.map: expected a string or a list of strings");
    assert_int_equal(cfg_get_string_list(&getter_doc, M, "m", "nested", &v, &n, &err), -1);
    expect_msg(&err, "g.yaml:22:15: m.nested[1]: expected a string");
    assert_int_equal(n, 0); /* unchanged on error */
    assert_int_equal(cfg_get_string_list(&getter_doc, M, "m", "absent", &v, &n, &err), 0);
    assert_non_null(v);
    cfg_strv_free(v);
    cfg_strv_free(NULL);
}

static void test_check_keys_and_shapes(void **state)
{
    (void)state;
    struct cfg_error err = {{0}};
    static const char *const all[] = {"s",    "q",       "n",      "list",  "map",  "t",
                                      "f",    "b",       "i",      "big",   "word", "frac",
                                      "d",    "nan",     "inf",    "hex",   "dur",  "bare",
                                      "size", "badsize", "nested", "empty", NULL};
    assert_int_equal(cfg_check_keys(&getter_doc, M, "m", all, &err), 0);
    static const char *const few[] = {"s", "q", "n", NULL};
    assert_int_equal(cfg_check_keys(&getter_doc, M, "m", few, &err), -1);
    /* Points at the key itself, names the path and what is allowed. */
    expect_msg(&err, "g.yaml:5:3: m.list: unknown key (known here: s, q, n)");
    assert_int_equal(cfg_check_keys(&getter_doc, cfg_map_get(M, "list"), "m.list", few, &err), -1);
    expect_msg(&err, "g.yaml:5:9: m.list: expected a map of keys");
    assert_int_equal(cfg_expect_seq(&getter_doc, cfg_map_get(M, "list"), "m.list", &err), 0);
    assert_int_equal(cfg_expect_seq(&getter_doc, cfg_map_get(M, "map"), "m.map", &err), -1);
    expect_msg(&err, "g.yaml:6:8: m.map: expected a list");
    assert_int_equal(cfg_expect_map(&getter_doc, NULL, "m.x", &err), -1);
    expect_msg(&err, "g.yaml: m.x: expected a map of keys");
}

static void test_paths_and_errorf(void **state)
{
    (void)state;
    char p[32];
    cfg_path_key(p, sizeof p, "server", "limits");
    assert_string_equal(p, "server.limits");
    cfg_path_key(p, sizeof p, "", "server");
    assert_string_equal(p, "server");
    cfg_path_key(p, sizeof p, NULL, "server");
    assert_string_equal(p, "server");
    cfg_path_index(p, sizeof p, "routes", 2);
    assert_string_equal(p, "routes[2]");
    cfg_path_key(p, 8, "a-long-parent", "key"); /* truncated, still terminated */
    assert_int_equal(strlen(p), 7);

    struct cfg_error err;
    struct cfg_node at = {.line = 3, .column = 7};
    assert_int_equal(cfg_errorf(&err, &getter_doc, &at, "a.b", "bad %d", 5), -1);
    assert_string_equal(err.msg, "g.yaml:3:7: a.b: bad 5");
    assert_int_equal(cfg_errorf(&err, NULL, NULL, "", "plain"), -1);
    assert_string_equal(err.msg, "config: plain");
    assert_int_equal(cfg_errorf(NULL, NULL, NULL, "", "ignored"), -1);
    /* A very long message is truncated, not overflowed. */
    char longtext[2000];
    memset(longtext, 'x', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';
    assert_int_equal(cfg_errorf(&err, &getter_doc, &at, "a", "%s", longtext), -1);
    assert_true(strlen(err.msg) < sizeof err.msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_nesting_and_positions),
        cmocka_unit_test(test_empty_inputs),
        cmocka_unit_test(test_duplicates_rejected),
        cmocka_unit_test(test_anchors_and_aliases_rejected),
        cmocka_unit_test(test_depth_bound),
        cmocka_unit_test(test_syntax_and_structure_errors),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_get_string),
        cmocka_unit_test(test_get_bool),
        cmocka_unit_test(test_get_int),
        cmocka_unit_test(test_get_double),
        cmocka_unit_test(test_get_duration_and_size),
        cmocka_unit_test(test_get_string_list),
        cmocka_unit_test(test_check_keys_and_shapes),
        cmocka_unit_test(test_paths_and_errorf),
    };
    /* One group (the test runner counts the last summary line): the getter document is
     * parsed once for all. */
    return cmocka_run_group_tests(tests, setup_getters, teardown_getters);
}
