/* Tests of federation's pure parts (src/routes/federation/federation.c): prefixes, URI
 * prefixes, cursors, list and result rewriting, and the table of backends' requests to the
 * client. The proxying itself is covered end to end (federation.test.mjs). */
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
    {.name = "ehr2", .url = "http://127.0.0.1:2/mcp", .prefix = "ehr.v2."},
    {.name = "billing", .url = "http://127.0.0.1:3/mcp", .prefix = "billing."},
};
static struct gw_route route = {
    .name = "all", .path = "/mcp", .backends = backends, .n_backends = 3};

static void test_prefixes(void **state)
{
    (void)state;
    const char *rest = NULL;
    assert_true(fed_route_is_federated(&route));
    assert_ptr_equal(fed_backend_for_tool(&route, "ehr.get_patient", &rest), &backends[0]);
    assert_string_equal(rest, "get_patient");
    /* The longest prefix wins. */
    assert_ptr_equal(fed_backend_for_tool(&route, "ehr.v2.get_patient", &rest), &backends[1]);
    assert_string_equal(rest, "get_patient");
    assert_ptr_equal(fed_backend_for_tool(&route, "billing.charge", &rest), &backends[2]);
    /* A bare prefix names no tool; unknown prefixes find nothing. */
    assert_null(fed_backend_for_tool(&route, "ehr.", &rest));
    assert_null(fed_backend_for_tool(&route, "other.tool", &rest));
    assert_null(fed_backend_for_tool(&route, NULL, &rest));
    assert_int_equal(fed_backend_index(&route, &backends[2]), 2);
    assert_int_equal(fed_backend_index(&route, NULL), -1);
}

static void test_cursors(void **state)
{
    (void)state;
    char *c = fed_cursor_encode(1, "page:7");
    size_t idx = 99;
    char *inner = NULL;
    assert_int_equal(fed_cursor_decode(c, 3, &idx, &inner), 0);
    assert_int_equal(idx, 1);
    assert_string_equal(inner, "page:7");
    free(inner);
    free(c);
    c = fed_cursor_encode(2, NULL);
    assert_int_equal(fed_cursor_decode(c, 3, &idx, &inner), 0);
    assert_int_equal(idx, 2);
    assert_null(inner);
    /* The same cursor is out of range for a route with fewer backends. */
    assert_int_equal(fed_cursor_decode(c, 2, &idx, &inner), -1);
    free(c);
    /* Hostile cursors are refused, never trusted. */
    const char *bad[] = {"", "!!!!", "a", "MTpw\x01", "eDox", "OTk5OTk5OTp4", "Og", NULL};
    for (const char **b = bad; *b; b++) {
        inner = NULL;
        assert_int_equal(fed_cursor_decode(*b, 3, &idx, &inner), -1);
        assert_null(inner);
    }
    assert_int_equal(fed_cursor_decode(NULL, 3, &idx, &inner), -1);
    /* Every byte value round-trips through the encoding. */
    char all[256];
    for (int i = 1; i < 256; i++)
        all[i - 1] = (char)(i < 0x20 || i == 0x7f ? 'x' : i);
    all[255] = '\0';
    c = fed_cursor_encode(0, all);
    assert_int_equal(fed_cursor_decode(c, 1, &idx, &inner), 0);
    assert_string_equal(inner, all);
    free(inner);
    free(c);
}

static void test_rewrite(void **state)
{
    (void)state;
    json_t *msg = json_pack("{s:s, s:i, s:{s:[{s:s},{s:s},{s:i}], s:s}}", "jsonrpc", "2.0", "id", 4,
                            "result", "tools", "name", "get_patient", "name", "search", "name", 5,
                            "nextCursor", "page:2");
    assert_int_equal(fed_rewrite_tools_list(msg, &route, 0), 0);
    json_t *tools = json_object_get(json_object_get(msg, "result"), "tools");
    assert_string_equal(json_string_value(json_object_get(json_array_get(tools, 0), "name")),
                        "ehr.get_patient");
    assert_string_equal(json_string_value(json_object_get(json_array_get(tools, 1), "name")),
                        "ehr.search");
    /* The backend's next page, inside toolgate's cursor. */
    const char *next =
        json_string_value(json_object_get(json_object_get(msg, "result"), "nextCursor"));
    size_t idx;
    char *inner = NULL;
    assert_int_equal(fed_cursor_decode(next, 3, &idx, &inner), 0);
    assert_int_equal(idx, 0);
    assert_string_equal(inner, "page:2");
    free(inner);
    json_decref(msg);

    /* The last page of a backend leads to the next backend; of the last one, to nothing. */
    msg = json_pack("{s:{s:[]}}", "result", "tools");
    assert_int_equal(fed_rewrite_tools_list(msg, &route, 1), 0);
    next = json_string_value(json_object_get(json_object_get(msg, "result"), "nextCursor"));
    assert_int_equal(fed_cursor_decode(next, 3, &idx, &inner), 0);
    assert_int_equal(idx, 2);
    assert_null(inner);
    json_decref(msg);
    msg = json_pack("{s:{s:[], s:s}}", "result", "tools", "nextCursor", "");
    json_object_del(json_object_get(msg, "result"), "nextCursor");
    assert_int_equal(fed_rewrite_tools_list(msg, &route, 2), 0);
    assert_null(json_object_get(json_object_get(msg, "result"), "nextCursor"));
    json_decref(msg);
    /* Not a list result: refused. */
    msg = json_pack("{s:{s:i}}", "error", "code", -32000);
    assert_int_equal(fed_rewrite_tools_list(msg, &route, 0), -1);
    json_decref(msg);
}

static const char *str_at(json_t *msg, const char *list, size_t i, const char *field)
{
    json_t *arr = json_object_get(json_object_get(msg, "result"), list);
    return json_string_value(json_object_get(json_array_get(arr, i), field));
}

/* Prompts, resources and templates page and merge like tools; entries without a name go. */
static void test_lists(void **state)
{
    (void)state;
    assert_int_equal(fed_list_of("tools/list"), FED_LIST_TOOLS);
    assert_int_equal(fed_list_of("prompts/list"), FED_LIST_PROMPTS);
    assert_int_equal(fed_list_of("resources/list"), FED_LIST_RESOURCES);
    assert_int_equal(fed_list_of("resources/templates/list"), FED_LIST_TEMPLATES);
    assert_int_equal(fed_list_of("resources/read"), FED_LIST_NONE);
    assert_int_equal(fed_list_of(NULL), FED_LIST_NONE);

    json_t *msg = json_pack("{s:{s:[{s:s},{s:i},s]}}", "result", "prompts", "name", "summary",
                            "name", 3, "junk");
    assert_int_equal(fed_rewrite_list(msg, &route, 2, FED_LIST_PROMPTS), 0);
    assert_string_equal(str_at(msg, "prompts", 0, "name"), "billing.summary");
    assert_int_equal(json_array_size(json_object_get(json_object_get(msg, "result"), "prompts")),
                     1);
    assert_null(json_object_get(json_object_get(msg, "result"), "nextCursor"));
    json_decref(msg);

    msg = json_pack("{s:{s:[{s:s, s:s}], s:s}}", "result", "resources", "uri", "file:///a/b",
                    "name", "b", "nextCursor", "r2");
    assert_int_equal(fed_rewrite_list(msg, &route, 0, FED_LIST_RESOURCES), 0);
    assert_string_equal(str_at(msg, "resources", 0, "uri"), "ehr.file:///a/b");
    assert_string_equal(str_at(msg, "resources", 0, "name"), "b");
    size_t idx;
    char *inner = NULL;
    const char *next =
        json_string_value(json_object_get(json_object_get(msg, "result"), "nextCursor"));
    assert_int_equal(fed_cursor_decode(next, 3, &idx, &inner), 0);
    assert_int_equal(idx, 0);
    assert_string_equal(inner, "r2");
    free(inner);
    json_decref(msg);

    msg = json_pack("{s:{s:[{s:s}]}}", "result", "resourceTemplates", "uriTemplate",
                    "file:///{path}");
    assert_int_equal(fed_rewrite_list(msg, &route, 1, FED_LIST_TEMPLATES), 0);
    assert_string_equal(str_at(msg, "resourceTemplates", 0, "uriTemplate"),
                        "ehr.v2.file:///{path}");
    json_decref(msg);

    /* The wrong list, or none: refused. */
    msg = json_pack("{s:{s:[]}}", "result", "tools");
    assert_int_equal(fed_rewrite_list(msg, &route, 0, FED_LIST_PROMPTS), -1);
    assert_int_equal(fed_rewrite_list(msg, &route, 0, FED_LIST_NONE), -1);
    assert_int_equal(fed_rewrite_list(msg, &route, 3, FED_LIST_TOOLS), -1);
    json_decref(msg);
}

/* A backend without the list gives an empty page that leads on to the next backend. */
static void test_empty_page(void **state)
{
    (void)state;
    json_t *msg = json_pack("{s:s, s:i, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", 7, "error", "code",
                            -32601, "message", "Method not found");
    assert_int_equal(fed_empty_page(msg, &route, 0, FED_LIST_PROMPTS), 0);
    assert_null(json_object_get(msg, "error"));
    json_t *result = json_object_get(msg, "result");
    assert_int_equal(json_array_size(json_object_get(result, "prompts")), 0);
    size_t idx;
    char *inner = NULL;
    assert_int_equal(fed_cursor_decode(json_string_value(json_object_get(result, "nextCursor")), 3,
                                       &idx, &inner),
                     0);
    assert_int_equal(idx, 1);
    assert_null(inner);
    json_decref(msg);
    /* Of the last backend: an empty last page. */
    msg = json_pack("{s:i, s:{s:i, s:s}}", "id", 7, "error", "code", -32601, "message", "x");
    assert_int_equal(fed_empty_page(msg, &route, 2, FED_LIST_RESOURCES), 0);
    assert_null(json_object_get(json_object_get(msg, "result"), "nextCursor"));
    json_decref(msg);
    /* Other errors reach the client as they are. */
    msg = json_pack("{s:i, s:{s:i, s:s}}", "id", 7, "error", "code", -32603, "message", "x");
    assert_int_equal(fed_empty_page(msg, &route, 0, FED_LIST_RESOURCES), -1);
    assert_non_null(json_object_get(msg, "error"));
    json_decref(msg);
}

/* Resource URIs: the prefix before the scheme, taken off again on the way back. */
static void test_uris(void **state)
{
    (void)state;
    char p[FED_URI_PREFIX_MAX];
    assert_int_equal(fed_uri_prefix("ehr.", p, sizeof p), 4);
    assert_string_equal(p, "ehr.");
    assert_int_equal(fed_uri_prefix("My_Svc-2.", p, sizeof p), 9);
    assert_string_equal(p, "my-svc-2.");
    assert_int_equal(fed_uri_prefix("2fa.", p, sizeof p), -1);
    assert_int_equal(fed_uri_prefix("", p, sizeof p), -1);
    assert_int_equal(fed_uri_prefix(NULL, p, sizeof p), -1);
    assert_int_equal(fed_uri_prefix("abcdef", p, 4), -1);

    const char *rest = NULL;
    assert_ptr_equal(fed_backend_for_uri(&route, "ehr.file:///a", &rest), &backends[0]);
    assert_string_equal(rest, "file:///a");
    assert_ptr_equal(fed_backend_for_uri(&route, "ehr.v2.https://x/y", &rest), &backends[1]);
    assert_string_equal(rest, "https://x/y");
    assert_ptr_equal(fed_backend_for_uri(&route, "billing.db://t", &rest), &backends[2]);
    /* A bare URI prefix, the backend's own URI, another scheme: no backend. */
    assert_null(fed_backend_for_uri(&route, "ehr.", &rest));
    assert_null(fed_backend_for_uri(&route, "file:///a", &rest));
    assert_null(fed_backend_for_uri(&route, "ehrfile:///a", &rest));
    assert_null(fed_backend_for_uri(&route, NULL, &rest));

    char *w = fed_uri_wrap(&route, 2, "db://t/1");
    assert_string_equal(w, "billing.db://t/1");
    assert_ptr_equal(fed_backend_for_uri(&route, w, &rest), &backends[2]);
    assert_string_equal(rest, "db://t/1");
    free(w);
    assert_null(fed_uri_wrap(&route, 3, "db://t"));
    assert_null(fed_uri_wrap(&route, 0, NULL));
}

/* URIs in results: read contents, resource links and embedded resources. */
static void test_result_uris(void **state)
{
    (void)state;
    json_t *r = json_pack("{s:[{s:s, s:s}, {s:s}]}", "contents", "uri", "file:///a", "text", "A",
                          "text", "no uri");
    assert_int_equal(fed_rewrite_result_uris(r, &route, 0), 1);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(r, "contents"), 0), "uri")),
                        "ehr.file:///a");
    json_decref(r);
    r = json_pack("{s:[{s:s, s:s}, {s:s, s:{s:s}}, {s:s, s:s}]}", "content", "type",
                  "resource_link", "uri", "file:///l", "type", "resource", "resource", "uri",
                  "file:///e", "type", "text", "text", "t");
    assert_int_equal(fed_rewrite_result_uris(r, &route, 2), 2);
    json_t *c = json_object_get(r, "content");
    assert_string_equal(json_string_value(json_object_get(json_array_get(c, 0), "uri")),
                        "billing.file:///l");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(c, 1), "resource"), "uri")),
                        "billing.file:///e");
    json_decref(r);
    r = json_pack("{s:[{s:s, s:{s:s, s:{s:s}}}]}", "messages", "role", "user", "content", "type",
                  "resource", "resource", "uri", "file:///m");
    assert_int_equal(fed_rewrite_result_uris(r, &route, 1), 1);
    json_decref(r);
    assert_int_equal(fed_rewrite_result_uris(NULL, &route, 0), 0);
}

/* Backends' requests to the client: toolgate's ids, one answer each, per session, bounded. */
static void test_pending(void **state)
{
    (void)state;
    fed_pending_reset();
    char a[FED_PENDING_ID_LEN + 1], b[FED_PENDING_ID_LEN + 1];
    json_t *five = json_integer(5), *str = json_string("req-1");
    /* Two backends may use the same id; toolgate's differ. */
    assert_int_equal(fed_pending_add("S1", 0, five, 1000, a), 0);
    assert_int_equal(fed_pending_add("S1", 2, five, 1000, b), 0);
    assert_int_equal(strlen(a), FED_PENDING_ID_LEN);
    assert_memory_equal(a, "toolgate-", 9);
    assert_string_not_equal(a, b);
    size_t idx = 99;
    assert_int_equal(fed_pending_peek("S1", b, 1001, &idx), 0);
    assert_int_equal(idx, 2);
    /* Another session, an id toolgate did not issue: nothing. */
    json_t *got = NULL;
    assert_int_equal(fed_pending_take("S2", a, 1001, &idx, &got), -1);
    assert_int_equal(
        fed_pending_take("S1", "toolgate-00000000000000000000000000000000", 1001, &idx, &got), -1);
    assert_int_equal(fed_pending_take("S1", "5", 1001, &idx, &got), -1);
    assert_int_equal(fed_pending_take("S1", NULL, 1001, &idx, &got), -1);
    assert_int_equal(fed_pending_take(NULL, a, 1001, &idx, &got), -1);
    /* The answer takes the entry, once. */
    assert_int_equal(fed_pending_take("S1", a, 1001, &idx, &got), 0);
    assert_int_equal(idx, 0);
    assert_true(json_equal(got, five));
    json_decref(got);
    got = NULL;
    assert_int_equal(fed_pending_take("S1", a, 1001, &idx, &got), -1);
    /* Entries expire. */
    assert_int_equal(fed_pending_take("S1", b, 1000 + FED_PENDING_TTL_MS, &idx, &got), -1);
    /* Ids that are not ids are refused. */
    json_t *obj = json_object();
    assert_int_equal(fed_pending_add("S1", 0, obj, 1000, a), -1);
    assert_int_equal(fed_pending_add("S1", 0, NULL, 1000, a), -1);
    json_decref(obj);
    /* A session holds at most FED_PENDING_PER_SESSION; others are not affected. */
    fed_pending_reset();
    for (int i = 0; i < FED_PENDING_PER_SESSION; i++)
        assert_int_equal(fed_pending_add("S3", 1, str, 5000, a), 0);
    assert_int_equal(fed_pending_add("S3", 1, str, 5000, b), -1);
    assert_int_equal(fed_pending_add("S4", 1, str, 5000, b), 0);
    assert_int_equal(fed_pending_take("S3", a, 5000, &idx, &got), 0);
    assert_string_equal(json_string_value(got), "req-1");
    json_decref(got);
    assert_int_equal(fed_pending_add("S3", 1, str, 5000, b), 0);
    /* The table as a whole is bounded. */
    fed_pending_reset();
    char session[32];
    size_t added = 0;
    for (int i = 0; i < FED_PENDING_MAX / FED_PENDING_PER_SESSION + 2; i++) {
        snprintf(session, sizeof session, "T%d", i);
        for (int j = 0; j < FED_PENDING_PER_SESSION; j++)
            added += fed_pending_add(session, 0, str, 9000, a) == 0;
    }
    assert_int_equal(added, FED_PENDING_MAX);
    fed_pending_reset();
    json_decref(five);
    json_decref(str);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefixes),    cmocka_unit_test(test_cursors),
        cmocka_unit_test(test_rewrite),     cmocka_unit_test(test_lists),
        cmocka_unit_test(test_empty_page),  cmocka_unit_test(test_uris),
        cmocka_unit_test(test_result_uris), cmocka_unit_test(test_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
