/* Tests of what a federated route merges (src/routes/federation/fed_merge.c): capabilities,
 * the server/discover result (2026-07-28), list pages for 2026-07-28 clients, and the
 * fan-out of subscriptions/listen (each backend's filter, the combined acknowledgement). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "routes/federation/federation.h"

static struct gw_backend backends[] = {
    {.name = "ehr", .url = "http://127.0.0.1:1/mcp", .prefix = "ehr."},
    {.name = "billing", .url = "http://127.0.0.1:2/mcp", .prefix = "Bill_ing."},
};
static struct gw_route route = {
    .name = "all", .path = "/mcp", .backends = backends, .n_backends = 2};

static json_t *parse(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, 0, &e);
    if (!j)
        fail_msg("bad test JSON: %s", e.text);
    return j;
}

/* j equals the JSON text `want` (compared as values); j is released. */
static void assert_json(json_t *j, const char *want)
{
    json_t *w = parse(want);
    if (!json_equal(j, w)) {
        char *got = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("got %s, want %s", got ? got : "(null)", want);
    }
    json_decref(w);
    json_decref(j);
}

static void test_capabilities(void **state)
{
    (void)state;
    json_t *merged = parse("{\"tools\":{}}");
    json_t *a = parse("{\"tools\":{\"listChanged\":true},\"resources\":{\"subscribe\":true},"
                      "\"experimental\":{\"x\":{}},\"extensions\":{\"io.x/y\":{}}}");
    json_t *b = parse("{\"prompts\":{},\"resources\":{\"listChanged\":false},\"logging\":{}}");
    fed_merge_capabilities(merged, a);
    fed_merge_capabilities(merged, b);
    assert_json(merged, "{\"tools\":{\"listChanged\":true},"
                        "\"resources\":{\"subscribe\":true,\"listChanged\":false},"
                        "\"prompts\":{\"listChanged\":false},\"logging\":{}}");
    json_decref(a);
    json_decref(b);
}

static void test_discover_merge(void **state)
{
    (void)state;
    struct fed_discover d;
    fed_discover_init(&d);
    assert_null(fed_discover_result(&d, "1.0"));
    json_t *a = parse("{\"resultType\":\"complete\",\"supportedVersions\":[\"2026-07-28\","
                      "\"2025-11-25\"],\"capabilities\":{\"tools\":{\"listChanged\":true},"
                      "\"resources\":{\"subscribe\":true},\"extensions\":{\"io.x/y\":{}}},"
                      "\"instructions\":\"Ask for patients by id.\",\"ttlMs\":60000,"
                      "\"cacheScope\":\"public\",\"_meta\":{\"io.modelcontextprotocol/"
                      "serverInfo\":{\"name\":\"ehr\",\"version\":\"9\"}}}");
    json_t *b = parse("{\"supportedVersions\":[\"2026-07-28\"],\"capabilities\":{\"prompts\":{}},"
                      "\"ttlMs\":5000,\"cacheScope\":\"public\"}");
    json_t *bad = parse("{\"capabilities\":{\"completions\":{}}}");
    assert_int_equal(fed_discover_add(&d, a, "ehr."), 0);
    assert_int_equal(fed_discover_add(&d, bad, "x."), -1);
    assert_int_equal(fed_discover_add(&d, b, "Bill_ing."), 0);
    assert_json(fed_discover_result(&d, "1.0"),
                "{\"resultType\":\"complete\",\"supportedVersions\":[\"2026-07-28\"],"
                "\"capabilities\":{\"tools\":{\"listChanged\":true},"
                "\"resources\":{\"subscribe\":true,\"listChanged\":false},"
                "\"prompts\":{\"listChanged\":false}},"
                "\"instructions\":\"" FED_INSTRUCTIONS "\\n\\n[ehr.] Ask for patients by id.\","
                "\"_meta\":{\"io.modelcontextprotocol/serverInfo\":{\"name\":\"toolgate\","
                "\"version\":\"1.0\"}},\"ttlMs\":5000,\"cacheScope\":\"public\"}");
    /* One private answer (or one without a scope) makes the whole private; no ttl counts 0. */
    json_t *c = parse("{\"supportedVersions\":[\"2026-07-28\"],\"instructions\":\"Bills.\"}");
    assert_int_equal(fed_discover_add(&d, c, "billing."), 0);
    json_t *r = fed_discover_result(&d, "1.0");
    assert_string_equal(json_string_value(json_object_get(r, "cacheScope")), "private");
    assert_int_equal(json_integer_value(json_object_get(r, "ttlMs")), 0);
    assert_string_equal(json_string_value(json_object_get(r, "instructions")),
                        FED_INSTRUCTIONS "\n\n[ehr.] Ask for patients by id.\n\n[billing.] Bills.");
    json_decref(r);
    /* A backend that does not list the stateless revision leaves none in common. */
    json_t *old = parse("{\"supportedVersions\":[\"2025-11-25\"],\"cacheScope\":\"public\"}");
    assert_int_equal(fed_discover_add(&d, old, "old."), 0);
    r = fed_discover_result(&d, "1.0");
    assert_int_equal(json_array_size(json_object_get(r, "supportedVersions")), 0);
    json_decref(r);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(old);
    json_decref(bad);
    fed_discover_free(&d);
}

static void test_discover_instructions_bounded(void **state)
{
    (void)state;
    struct fed_discover d;
    fed_discover_init(&d);
    char *big = malloc(FED_MAX_INSTRUCTIONS);
    memset(big, 'x', FED_MAX_INSTRUCTIONS - 1);
    big[FED_MAX_INSTRUCTIONS - 1] = '\0';
    json_t *huge =
        json_pack("{s:[s], s:s}", "supportedVersions", "2026-07-28", "instructions", big);
    json_t *small = parse("{\"supportedVersions\":[\"2026-07-28\"],\"instructions\":\"Short.\"}");
    assert_int_equal(fed_discover_add(&d, small, "a."), 0);
    assert_int_equal(fed_discover_add(&d, huge, "b."), 0);
    assert_int_equal(d.instructions_dropped, 1);
    json_t *r = fed_discover_result(&d, "1.0");
    assert_string_equal(json_string_value(json_object_get(r, "instructions")),
                        FED_INSTRUCTIONS "\n\n[a.] Short.");
    json_decref(r);
    json_decref(huge);
    json_decref(small);
    free(big);
    fed_discover_free(&d);
}

static void test_modern_page(void **state)
{
    (void)state;
    json_t *page = parse("{\"tools\":[],\"ttlMs\":30000,\"cacheScope\":\"public\"}");
    assert_int_equal(fed_mark_modern_page(page), 0);
    assert_json(page, "{\"tools\":[],\"ttlMs\":30000,\"cacheScope\":\"private\","
                      "\"resultType\":\"complete\"}");
    page = parse("{\"prompts\":[],\"resultType\":\"complete\"}");
    assert_int_equal(fed_mark_modern_page(page), 0);
    assert_json(page, "{\"prompts\":[],\"ttlMs\":0,\"cacheScope\":\"private\","
                      "\"resultType\":\"complete\"}");
    assert_int_equal(fed_mark_modern_page(NULL), -1);
}

static void test_listen_filters(void **state)
{
    (void)state;
    json_t *filter = parse("{\"toolsListChanged\":true,\"promptsListChanged\":false,"
                           "\"resourceSubscriptions\":[\"ehr.file:///a\",\"bill-ing.x://b\","
                           "\"nope://c\",\"ehr.file:///d\"]}");
    assert_json(fed_listen_filter_for(filter, &route, 0),
                "{\"toolsListChanged\":true,\"resourceSubscriptions\":[\"file:///a\","
                "\"file:///d\"]}");
    assert_json(fed_listen_filter_for(filter, &route, 1),
                "{\"toolsListChanged\":true,\"resourceSubscriptions\":[\"x://b\"]}");
    assert_null(fed_listen_filter_for(filter, &route, 2));
    json_decref(filter);
    /* A backend none of whose resources are asked for, and no list changes: nothing to ask. */
    filter = parse("{\"resourceSubscriptions\":[\"ehr.file:///a\"]}");
    assert_null(fed_listen_filter_for(filter, &route, 1));
    json_t *f0 = fed_listen_filter_for(filter, &route, 0);
    assert_non_null(f0);
    json_decref(f0);
    json_decref(filter);
}

static void test_listen_ack(void **state)
{
    (void)state;
    json_t *combined = json_object();
    json_t *a = parse("{\"resourceSubscriptions\":[\"file:///a\"]}");
    json_t *b = parse("{\"toolsListChanged\":true,\"resourceSubscriptions\":[\"x://b\"]}");
    assert_int_equal(fed_listen_ack_add(combined, a, &route, 0), 0);
    assert_int_equal(fed_listen_ack_add(combined, b, &route, 1), 0);
    assert_int_equal(fed_listen_ack_add(combined, NULL, &route, 1), -1);
    assert_json(combined, "{\"toolsListChanged\":true,\"resourceSubscriptions\":"
                          "[\"ehr.file:///a\",\"bill-ing.x://b\"]}");
    json_decref(a);
    json_decref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capabilities),
        cmocka_unit_test(test_discover_merge),
        cmocka_unit_test(test_discover_instructions_bounded),
        cmocka_unit_test(test_modern_page),
        cmocka_unit_test(test_listen_filters),
        cmocka_unit_test(test_listen_ack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
