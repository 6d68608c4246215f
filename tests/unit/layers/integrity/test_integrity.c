/* Tool integrity: canonical form, hashes, the poisoning scan and its corpus. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "layers/integrity/integrity.h"

static char *canon_of(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    assert_non_null(v);
    struct gw_buf b = {0};
    assert_int_equal(integrity_canonical(v, &b, 64), 0);
    gw_buf_append(&b, "", 1);
    json_decref(v);
    return b.data;
}

static void test_canonical(void **state)
{
    (void)state;
    char *c =
        canon_of("{ \"b\": [1, 2.50, true, null], \"a\": {\"z\":\"x\\u0001\\n\", \"y\": 1.0} }");
    assert_string_equal(c, "{\"a\":{\"y\":1,\"z\":\"x\\u0001\\n\"},\"b\":[1,2.5,true,null]}");
    free(c);
    /* UTF-16 order: U+10000 (surrogates D800..) sorts before U+E000, unlike UTF-8 bytes. */
    c = canon_of("{\"\\ue000\": 1, \"\\ud800\\udc00\": 2}");
    assert_string_equal(c, "{\"\xf0\x90\x80\x80\":2,\"\xee\x80\x80\":1}");
    free(c);
    c = canon_of("\"\\u00e9/\\\"\"");
    assert_string_equal(c, "\"\xc3\xa9/\\\"\"");
    free(c);
    c = canon_of("[0.1, 1e-7, -0.0, 100000000000000000000.0]");
    assert_string_equal(c, "[0.1,1e-07,0,1e+20]");
    free(c);
    /* Integral reals past 2^53 keep an exponent, so the canonical text parses back. */
    c = canon_of("[9007199254740992.0, -0.021e21, 3.0]");
    assert_string_equal(c, "[9007199254740992,-2.1e+19,3]");
    json_t *back = json_loads(c, 0, NULL);
    assert_non_null(back);
    json_decref(back);
    free(c);
}

static void hash_of(const char *text, const char *field, char hash[65], char body[65])
{
    json_t *v = json_loads(text, 0, NULL);
    assert_non_null(v);
    assert_int_equal(integrity_hash_def(v, field, hash, body), 0);
    json_decref(v);
}

static void test_hashes(void **state)
{
    (void)state;
    char h1[65], b1[65], h2[65], b2[65], h3[65], b3[65];
    hash_of("{\"name\":\"a\",\"description\":\"d\",\"inputSchema\":{\"type\":\"object\"}}", "name",
            h1, b1);
    hash_of("{ \"inputSchema\" : {\"type\":\"object\"}, \"description\":\"d\", \"name\":\"a\" }",
            "name", h2, b2);
    assert_string_equal(h1, h2); /* order and spacing do not matter */
    hash_of("{\"name\":\"b\",\"description\":\"d\",\"inputSchema\":{\"type\":\"object\"}}", "name",
            h3, b3);
    assert_string_not_equal(h1, h3);
    assert_string_equal(b1, b3); /* same body under another name: a rename */
    hash_of("{\"name\":\"a\",\"description\":\"d \",\"inputSchema\":{\"type\":\"object\"}}", "name",
            h3, b3);
    assert_string_not_equal(h1, h3);
    assert_string_not_equal(b1, b3);
    json_t *deep = json_array();
    json_t *cur = deep;
    for (int i = 0; i < 80; i++) {
        json_t *n = json_array();
        json_array_append_new(cur, n);
        cur = n;
    }
    json_t *obj = json_pack("{s:s, s:o}", "name", "x", "deep", deep);
    assert_int_equal(integrity_hash_def(obj, "name", h1, b1), -1);
    json_decref(obj);
    json_t *str = json_string("x");
    assert_int_equal(integrity_hash_def(str, "name", h1, b1), -1);
    json_decref(str);
}

/* ---- scan ---- */

static struct integrity_rules *builtin(void)
{
    struct integrity_rules *r = NULL;
    char err[256];
    assert_int_equal(integrity_rules_add(&r, integrity_builtin_rules, "built-in", err, sizeof err),
                     0);
    return r;
}

static json_t *corpus(const char *rel)
{
    const char *root = getenv("TOOLGATE_SRC");
    char path[512];
    snprintf(path, sizeof path, "%s/tests/integrity/corpus/%s", root ? root : ".", rel);
    json_error_t e;
    json_t *v = json_load_file(path, 0, &e);
    if (!v)
        fprintf(stderr, "%s: %s\n", path, e.text);
    assert_non_null(v);
    return v;
}

static void test_scan_poisoned(void **state)
{
    (void)state;
    struct integrity_rules *r = builtin();
    json_t *cases = corpus("poisoned/cases.json");
    size_t i, caught = 0;
    json_t *c;
    json_array_foreach(cases, i, c)
    {
        char rule[64];
        int n = integrity_scan(r, json_object_get(c, "definition"), 4096, rule, sizeof rule);
        if (n == 0)
            fprintf(stderr, "missed: %s\n", json_string_value(json_object_get(c, "technique")));
        else
            caught++;
    }
    printf("integrity corpus: %zu/%zu poisoned definitions caught\n", caught,
           json_array_size(cases));
    assert_int_equal(caught, json_array_size(cases));
    json_decref(cases);
    integrity_rules_free(r);
}

static void test_scan_benign(void **state)
{
    (void)state;
    struct integrity_rules *r = builtin();
    const char *files[] = {"server-everything.json", "server-filesystem.json",
                           "server-memory.json"};
    size_t total = 0, flagged = 0;
    for (size_t f = 0; f < 3; f++) {
        char rel[128];
        snprintf(rel, sizeof rel, "benign/%s", files[f]);
        json_t *doc = corpus(rel);
        for (size_t k = 0; k < 4; k++) {
            json_t *arr = json_object_get(doc, integrity_kinds[k].list);
            size_t i;
            json_t *d;
            json_array_foreach(arr, i, d)
            {
                char rule[64];
                total++;
                if (integrity_scan(r, d, 4096, rule, sizeof rule) > 0) {
                    flagged++;
                    fprintf(stderr, "false positive: %s %s: %s\n", files[f],
                            json_string_value(json_object_get(d, integrity_kinds[k].field)), rule);
                }
            }
        }
        json_decref(doc);
    }
    printf("integrity corpus: %zu/%zu benign definitions flagged (false positives)\n", flagged,
           total);
    assert_true(total > 30);
    assert_int_equal(flagged, 0);
    integrity_rules_free(r);
}

static void test_rules_errors(void **state)
{
    (void)state;
    struct integrity_rules *r = NULL;
    char err[256];
    assert_int_equal(integrity_rules_add(&r, "# c\nok  a+b\n", "x", err, sizeof err), 0);
    assert_int_equal(integrity_rules_add(&r, "bad (unclosed\n", "x", err, sizeof err), -1);
    assert_non_null(strstr(err, "x:1: rule bad"));
    assert_int_equal(integrity_rules_add(&r, "lonely\n", "x", err, sizeof err), -1);
    json_t *d = json_pack("{s:s}", "description", "zzz aab zzz");
    char rule[64];
    assert_int_equal(integrity_scan(r, d, 0, rule, sizeof rule), 1);
    assert_string_equal(rule, "ok");
    json_decref(d);
    integrity_rules_free(r);
}

/* The section's keys: defaults, each value, and clear errors for what is wrong. */
static void test_config(void **state)
{
    (void)state;
    struct cfg_error err;
    static const char routes[] = "routes:\n  - {name: r, path: /mcp, backends: [{name: b, url: "
                                 "\"http://127.0.0.1:9\"}]}\n";
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "%s", routes);
    struct gw_config *cfg = gw_config_load_string(yaml, "t.yaml", &err);
    assert_non_null(cfg);
    const struct integrity_config *ic = integrity_config_of(cfg);
    assert_non_null(ic);
    assert_int_equal(ic->mode, INTEGRITY_ENFORCE);
    assert_string_equal(ic->store_url, "sqlite:toolgate-pins.db");
    assert_int_equal(ic->cache_ttl_ms, 1000);
    assert_int_equal(ic->first_window_ms, 60000);
    assert_int_equal(ic->max_description, 4096);
    gw_config_free(cfg);

    snprintf(yaml, sizeof yaml,
             "%sintegrity: {mode: warn, store: memory, scan: log, cache_ttl: 0s, "
             "max_description: 100, backends: {r/b: {mode: enforce}}}\n",
             routes);
    cfg = gw_config_load_string(yaml, "t.yaml", &err);
    assert_non_null(cfg);
    ic = integrity_config_of(cfg);
    assert_int_equal(ic->mode, INTEGRITY_WARN);
    assert_null(ic->store_url);
    assert_int_equal(ic->scan, SCAN_LOG);
    assert_int_equal(ic->cache_ttl_ms, 0);
    assert_int_equal(integrity_mode_for(ic, "r", "b"), INTEGRITY_ENFORCE);
    assert_int_equal(integrity_mode_for(ic, "other", "c"), INTEGRITY_WARN);
    gw_config_free(cfg);

    static const struct {
        const char *section, *says;
    } bad[] = {
        {"{cache_ttl: 2m}", "integrity.cache_ttl"},
        {"{mode: strict}", "enforce, warn or off"},
        {"{store: redis://x}", "integrity.store"},
        {"{scan: maybe}", "quarantine, log or off"},
        {"{manifest: pins.json}", "go together"},
        {"{colour: red}", "colour"},
        {"{backends: {nobody: {mode: warn}}}", "nobody"},
        {"{rules: [{id: 'two words', pattern: x}]}", "one word"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(yaml, sizeof yaml, "%sintegrity: %s\n", routes, bad[i].section);
        cfg = gw_config_load_string(yaml, "t.yaml", &err);
        if (cfg) {
            /* A key naming no backend is a load-time check of the module, not of the parse. */
            assert_string_equal(bad[i].says, "nobody");
            gw_config_free(cfg);
            continue;
        }
        if (!strstr(err.msg, bad[i].says))
            fail_msg("%s: %s", bad[i].section, err.msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical),     cmocka_unit_test(test_hashes),
        cmocka_unit_test(test_scan_poisoned), cmocka_unit_test(test_scan_benign),
        cmocka_unit_test(test_rules_errors),  cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
