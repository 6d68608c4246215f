/*
 * modern: a 2026-07-28 request's headers are held to its body before anything judges it, and
 * the header values decode only from their two forms.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mcp/jsonrpc.h"
#include "mcp/modern.h"

static const char *decode(const char *v)
{
    static struct gw_buf b;
    gw_buf_reset(&b);
    if (mcp_header_value_decode(v, strlen(v), &b) != 0)
        return NULL;
    gw_buf_append(&b, "", 0);
    return b.data ? b.data : "";
}

static void test_header_values(void **state)
{
    (void)state;
    assert_string_equal(decode("echo"), "echo");
    assert_string_equal(decode("a b\tc"), "a b\tc");
    assert_string_equal(decode("=?base64?SGVsbG8sIOS4lueVjA==?="),
                        "Hello, \xe4\xb8\x96\xe7\x95\x8c");
    assert_string_equal(decode("=?base64?IHBhZGRlZCA=?="), " padded ");
    assert_string_equal(decode("=?base64?bGluZTEKbGluZTI=?="), "line1\nline2");
    /* Malformed: bad base64 (length, characters, padding, pad bits), not UTF-8, controls,
     * leading or trailing whitespace in the plain form. */
    assert_null(decode("=?base64?ZWNobw?="));
    assert_null(decode("=?base64?ZW*obw==?="));
    assert_null(decode("=?base64?ZW=obw==?="));
    assert_null(decode("=?base64?ZWNobx==?="));
    assert_null(decode("=?base64?/w==?="));
    assert_null(decode(" echo"));
    assert_null(decode("echo "));
    assert_null(decode("ec\x01ho"));
    assert_null(decode("\xc3\xa9"));
    /* Upper-case markers are not the form: taken literally. */
    assert_string_equal(decode("=?BASE64?ZWNobw==?="), "=?BASE64?ZWNobw==?=");
}

static void test_encode_round_trip(void **state)
{
    (void)state;
    const char *cases[] = {
        "echo", "",   " padded ", "Z\xc3\xbcrich ", "line1\nline2", "=?base64?literal?=",
        "a",    "ab", "abc"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct gw_buf e = {0}, d = {0};
        assert_int_equal(mcp_header_value_encode(cases[i], strlen(cases[i]), &e), 0);
        assert_int_equal(mcp_header_value_decode(e.data, e.len, &d), 0);
        assert_int_equal(d.len, strlen(cases[i]));
        assert_memory_equal(d.data ? d.data : "", cases[i], d.len);
        gw_buf_free(&e);
        gw_buf_free(&d);
    }
    struct gw_buf e = {0};
    mcp_header_value_encode("=?base64?literal?=", 18, &e);
    assert_true(e.len > 9 && memcmp(e.data, "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=", e.len) == 0);
    gw_buf_free(&e);
}

/* Decodes body as a 2026-07-28 request and checks it against the headers given. */
static int check(const char *body, const char *method, const char *name, const char *const *params,
                 struct mcp_modern_error *err)
{
    struct mcp_batch b;
    struct mcp_decode_error derr;
    struct mcp_limits lim = {0};
    assert_int_equal(mcp_decode(body, strlen(body), &lim, "2026-07-28", &b, &derr), 0);
    struct mcp_modern_headers h = {0};
    if (method) {
        h.method = method;
        h.method_len = strlen(method);
        h.method_count = 1;
    }
    if (name) {
        h.name = name;
        h.name_len = strlen(name);
        h.name_count = 1;
    }
    for (size_t i = 0; params && params[i]; i += 2) {
        h.params[h.n_params++] = (struct mcp_header_view){params[i], strlen(params[i]),
                                                          params[i + 1], strlen(params[i + 1])};
    }
    int rc = mcp_modern_check(&b.msgs[0], "2026-07-28", &h, err);
    mcp_batch_free(&b);
    return rc;
}

#define META                                                                                       \
    "\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","                       \
    "\"io.modelcontextprotocol/clientCapabilities\":{}}"

static void test_envelope(void **state)
{
    (void)state;
    struct mcp_modern_error e;
    assert_int_equal(
        check("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{" META "}}",
              "tools/list", NULL, NULL, &e),
        0);
    /* No _meta, no capabilities, another revision. */
    assert_int_equal(check("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}", "tools/list",
                           NULL, NULL, &e),
                     -1);
    assert_int_equal(e.code, JSONRPC_INVALID_PARAMS);
    assert_int_equal(
        check("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"_meta\":{"
              "\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}}}",
              "tools/list", NULL, NULL, &e),
        -1);
    assert_int_equal(e.code, JSONRPC_INVALID_PARAMS);
    assert_int_equal(
        check("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"_meta\":{"
              "\"io.modelcontextprotocol/protocolVersion\":\"2025-11-25\","
              "\"io.modelcontextprotocol/clientCapabilities\":{}}}}",
              "tools/list", NULL, NULL, &e),
        -1);
    assert_int_equal(e.code, MCP_HEADER_MISMATCH);
    assert_int_equal(e.http_status, 400);
}

static void test_method_and_name(void **state)
{
    (void)state;
    struct mcp_modern_error e;
    const char *call = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{"
                       "\"name\":\"echo\",\"arguments\":{\"region\":\"eu\",\"n\":42,"
                       "\"deep\":{\"flag\":true},\"list\":[\"hidden\"]}," META "}}";
    assert_int_equal(check(call, "tools/call", "echo", NULL, &e), 0);
    assert_int_equal(check(call, "tools/call", "=?base64?ZWNobw==?=", NULL, &e), 0);
    /* Case of the value counts; a missing header, another name, a missing method. */
    assert_int_equal(check(call, "Tools/Call", "echo", NULL, &e), -1);
    assert_int_equal(e.code, MCP_HEADER_MISMATCH);
    assert_int_equal(check(call, "tools/call", "Echo", NULL, &e), -1);
    assert_int_equal(check(call, "tools/call", NULL, NULL, &e), -1);
    assert_int_equal(check(call, NULL, "echo", NULL, &e), -1);
    assert_int_equal(check(call, "tools/call", "echo ", NULL, &e), -1);
    /* A name where none belongs. */
    assert_int_equal(
        check("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{" META "}}",
              "tools/list", "echo", NULL, &e),
        -1);
    /* resources/read: the header's URI compared in canonical form. */
    const char *read = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\",\"params\":{"
                       "\"uri\":\"file:///pub/%7Ea\"," META "}}";
    assert_int_equal(check(read, "resources/read", "file:///pub/%7Ea", NULL, &e), 0);
    assert_int_equal(check(read, "resources/read", "file:///pub/~a", NULL, &e), 0);
    assert_int_equal(check(read, "resources/read", "file:///pub/../secret", NULL, &e), -1);
    assert_int_equal(check(read, "resources/read", "file:///pub/b", NULL, &e), -1);
}

static void test_params(void **state)
{
    (void)state;
    struct mcp_modern_error e;
    const char *call = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{"
                       "\"name\":\"echo\",\"arguments\":{\"region\":\"eu\",\"n\":42,\"r\":7.0,"
                       "\"deep\":{\"flag\":true},\"list\":[\"hidden\"]}," META "}}";
    const char *ok1[] = {"Mcp-Param-Region", "eu", NULL};
    const char *ok2[] = {"Mcp-Param-N", "42", "mcp-param-flag", "true", "Mcp-Param-R", "7", NULL};
    assert_int_equal(check(call, "tools/call", "echo", ok1, &e), 0);
    assert_int_equal(check(call, "tools/call", "echo", ok2, &e), 0);
    /* Values no argument holds: another string, a number by spelling, an array member, a
     * bad name, a value in base64 that decodes to something else. */
    const char *bad[][3] = {
        {"Mcp-Param-Region", "us", NULL},
        {"Mcp-Param-N", "42.0", NULL},
        {"Mcp-Param-N", "042x", NULL},
        {"Mcp-Param-List", "hidden", NULL},
        {"Mcp-Param-Re(gion", "eu", NULL},
        {"Mcp-Param-", "eu", NULL},
        {"Mcp-Param-Region", "=?base64?dXM=?=", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(check(call, "tools/call", "echo", bad[i], &e), -1);
        assert_int_equal(e.code, MCP_HEADER_MISMATCH);
    }
    /* Only tools/call mirrors arguments. */
    const char *p[] = {"Mcp-Param-X", "1", NULL};
    assert_int_equal(
        check("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{" META "}}",
              "tools/list", NULL, p, &e),
        -1);
}

static void test_decoder_in_2026(void **state)
{
    (void)state;
    struct mcp_batch b;
    struct mcp_decode_error err;
    struct mcp_limits lim = {0};
    /* Removed methods and client responses are not understood; batches are not allowed. */
    const char *refused[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"logging/setLevel\",\"params\":{}}",
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/subscribe\",\"params\":{\"uri\":"
         "\"file:///a\"}}"),
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}",
        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}]",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        assert_int_equal(mcp_decode(refused[i], strlen(refused[i]), &lim, "2026-07-28", &b, &err),
                         -1);
        json_decref(err.id);
    }
    /* subscriptions/listen: its URIs made canonical, bad ones refused. */
    const char *listen = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscriptions/listen\","
                         "\"params\":{\"notifications\":{\"resourceSubscriptions\":"
                         "[\"FILE:///a/./b\"]}}}";
    assert_int_equal(mcp_decode(listen, strlen(listen), &lim, "2026-07-28", &b, &err), 0);
    const json_t *u = json_array_get(
        json_object_get(json_object_get(json_object_get(b.msgs[0].json, "params"), "notifications"),
                        "resourceSubscriptions"),
        0);
    assert_string_equal(json_string_value(u), "file:///a/b");
    assert_true(b.msgs[0].rewritten);
    mcp_batch_free(&b);
    const char *bad = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscriptions/listen\","
                      "\"params\":{\"notifications\":{\"resourceSubscriptions\":"
                      "[\"file:///a/..%2fsecret\"]}}}";
    assert_int_equal(mcp_decode(bad, strlen(bad), &lim, "2026-07-28", &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_INVALID_PARAMS);
    json_decref(err.id);
    /* The listen method does not exist in the session era. */
    assert_int_equal(mcp_decode(listen, strlen(listen), &lim, "2025-11-25", &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_METHOD_NOT_FOUND);
    json_decref(err.id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_values), cmocka_unit_test(test_encode_round_trip),
        cmocka_unit_test(test_envelope),      cmocka_unit_test(test_method_and_name),
        cmocka_unit_test(test_params),        cmocka_unit_test(test_decoder_in_2026),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
