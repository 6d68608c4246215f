/* Tests of federation's pure parts (src/core/federation.c): prefixes, cursors, list rewriting
 * and the session table. The proxying itself is covered end to end (federation.test.mjs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_cursors),
        cmocka_unit_test(test_rewrite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
