#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mcp/jsonrpc.h"

/*
 * The shape tests use short made-up method names ("x", "p"), let through as an operator
 * would list them; the closed-world tests below use limits without them.
 */
static char *const extra_methods[] = {"x", "y", "p", "pi", "notifications/x", NULL};
static const struct mcp_limits test_limits = {
    .max_bytes = 1 << 20, .max_depth = 64, .max_batch = 10, .allow_methods = extra_methods};

/* Decodes a NUL-terminated text with the test limits. */
static int decode(const char *text, const char *version, struct mcp_batch *out,
                  struct mcp_decode_error *err)
{
    return mcp_decode(text, strlen(text), &test_limits, version, out, err);
}

/* Expects the text to fail with `code`; returns the recovered id's integer or -1/-2. */
static void expect_fail(const char *text, const char *version, int code)
{
    struct mcp_batch b;
    struct mcp_decode_error err;
    int rc = decode(text, version, &b, &err);
    if (rc == 0)
        fail_msg("accepted: %s", text);
    if (err.code != code)
        fail_msg("code %d, want %d for: %s (%s)", err.code, code, text, err.message);
    assert_null(b.msgs);
    assert_int_equal(b.n, 0);
    assert_true(strlen(err.message) > 0);
    json_decref(err.id);
}

static char *repeat(const char *open, size_t n, const char *close)
{
    size_t lo = strlen(open), lc = strlen(close);
    char *s = malloc(n * (lo + lc) + 1);
    assert_non_null(s);
    char *p = s;
    for (size_t i = 0; i < n; i++, p += lo)
        memcpy(p, open, lo);
    for (size_t i = 0; i < n; i++, p += lc)
        memcpy(p, close, lc);
    *p = '\0';
    return s;
}

static void test_depth_scan(void **state)
{
    (void)state;
    assert_int_equal(json_depth_ok("{}", 2, 1), 0);
    assert_int_equal(json_depth_ok("[[]]", 4, 1), -1);
    assert_int_equal(json_depth_ok("[[]]", 4, 2), 0);
    assert_int_equal(json_depth_ok("[],[],[]", 8, 1), 0);
    /* Brackets inside strings do not count, including after escaped quotes. */
    const char *s1 = "[\"[[[[\\\"[[[[\"]";
    assert_int_equal(json_depth_ok(s1, strlen(s1), 1), 0);
    /* An escaped backslash ends the escape: the next quote closes the string. */
    const char *s2 = "[\"\\\\\",[[]]]";
    assert_int_equal(json_depth_ok(s2, strlen(s2), 2), -1);
    assert_int_equal(json_depth_ok(s2, strlen(s2), 3), 0);
    /* A quote escaped at the very end must not read past the buffer. */
    assert_int_equal(json_depth_ok("\"\\", 2, 0), 0);
    /* Unbalanced closers never make depth wrap into a huge value. */
    assert_int_equal(json_depth_ok("]]]]{", 5, 1), 0);
    assert_int_equal(json_depth_ok("]]]][[", 6, 1), -1);
    /* The length is the truth: bytes after len are not read. */
    assert_int_equal(json_depth_ok("[[[[", 1, 1), 0);
    char *deep = repeat("[", 10000, "]");
    assert_int_equal(json_depth_ok(deep, strlen(deep), 64), -1);
    assert_int_equal(json_depth_ok(deep, strlen(deep), 10000), 0);
    free(deep);
}

static void test_request_tools_call(void **state)
{
    (void)state;
    struct mcp_batch b;
    struct mcp_decode_error err;
    const char *t =
        "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\","
        "\"params\":{\"name\":\"ehr.get_patient\",\"arguments\":{\"patient_id\":\"P1\"}}}";
    assert_int_equal(decode(t, "2025-06-18", &b, &err), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.is_batch, 0);
    struct mcp_message *m = &b.msgs[0];
    assert_int_equal(m->kind, MCP_REQUEST);
    assert_string_equal(m->method, "tools/call");
    assert_true(json_is_integer(m->id));
    assert_int_equal(json_integer_value(m->id), 7);
    assert_string_equal(m->target, "ehr.get_patient");
    assert_non_null(m->arguments);
    assert_string_equal(json_string_value(json_object_get(m->arguments, "patient_id")), "P1");
    assert_true(json_is_object(m->json));
    mcp_batch_free(&b);
    assert_null(b.msgs);
    mcp_batch_free(&b); /* twice is harmless */
}

static void test_request_kinds(void **state)
{
    (void)state;
    struct mcp_batch b;
    struct mcp_decode_error err;

    assert_int_equal(
        decode("{\"jsonrpc\":\"2.0\",\"id\":\"a-1\",\"method\":\"tools/list\"}", NULL, &b, &err),
        0);
    assert_int_equal(b.msgs[0].kind, MCP_REQUEST);
    assert_string_equal(json_string_value(b.msgs[0].id), "a-1");
    assert_null(b.msgs[0].target);
    assert_null(b.msgs[0].arguments);
    mcp_batch_free(&b);

    assert_int_equal(
        decode("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", NULL, &b, &err),
        0);
    assert_int_equal(b.msgs[0].kind, MCP_NOTIFICATION);
    assert_null(b.msgs[0].id);
    mcp_batch_free(&b);

    assert_int_equal(
        decode("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[]}}", NULL, &b, &err), 0);
    assert_int_equal(b.msgs[0].kind, MCP_RESPONSE);
    assert_null(b.msgs[0].method);
    assert_int_equal(json_integer_value(b.msgs[0].id), 3);
    mcp_batch_free(&b);

    /* A null result is still a result. */
    assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":null}", NULL, &b, &err), 0);
    assert_int_equal(b.msgs[0].kind, MCP_RESPONSE);
    mcp_batch_free(&b);

    assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"error\":{\"code\":-1,"
                            "\"message\":\"user declined\"}}",
                            NULL, &b, &err),
                     0);
    assert_int_equal(b.msgs[0].kind, MCP_ERROR_RESPONSE);
    mcp_batch_free(&b);

    /* prompts/get and resources/read fill target. */
    assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"prompts/get\","
                            "\"params\":{\"name\":\"p\",\"arguments\":{\"a\":\"b\"}}}",
                            NULL, &b, &err),
                     0);
    assert_string_equal(b.msgs[0].target, "p");
    assert_non_null(b.msgs[0].arguments);
    mcp_batch_free(&b);
    assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\","
                            "\"params\":{\"uri\":\"file:///x\"}}",
                            NULL, &b, &err),
                     0);
    assert_string_equal(b.msgs[0].target, "file:///x");
    assert_null(b.msgs[0].arguments);
    mcp_batch_free(&b);

    /* tools/call without arguments is fine; unknown top-level members are tolerated. */
    assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
                            "\"params\":{\"name\":\"t\",\"_meta\":{}},\"x-extra\":1}",
                            NULL, &b, &err),
                     0);
    assert_null(b.msgs[0].arguments);
    mcp_batch_free(&b);
}

static void test_id_types(void **state)
{
    (void)state;
    struct mcp_batch b;
    struct mcp_decode_error err;
    const char *good[] = {"0", "-5", "9223372036854775807", "\"\"", "\"x\\u00e9\""};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char t[256];
        snprintf(t, sizeof t, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"ping\"}", good[i]);
        if (decode(t, NULL, &b, &err) != 0)
            fail_msg("rejected id %s: %s", good[i], err.message);
        assert_int_equal(b.msgs[0].kind, MCP_REQUEST);
        mcp_batch_free(&b);
    }
    const char *bad[] = {"null", "1.0", "1.5", "1e2", "true", "false", "{}", "[]", "[1]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char t[256];
        snprintf(t, sizeof t, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"ping\"}", bad[i]);
        assert_int_equal(decode(t, NULL, &b, &err), -1);
        assert_int_equal(err.code, JSONRPC_INVALID_REQUEST);
        assert_null(err.id); /* an invalid id is never handed back */
        /* The same ids on responses. */
        snprintf(t, sizeof t, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{}}", bad[i]);
        assert_int_equal(decode(t, NULL, &b, &err), -1);
        assert_int_equal(err.code, JSONRPC_INVALID_REQUEST);
        assert_null(err.id);
    }
    /* Integers beyond 64 bits are not valid JSON for this decoder. */
    expect_fail("{\"jsonrpc\":\"2.0\",\"id\":99999999999999999999999,\"method\":\"ping\"}", NULL,
                JSONRPC_PARSE_ERROR);
}

static void test_invalid_requests_recover_id(void **state)
{
    (void)state;
    struct mcp_batch b;
    struct mcp_decode_error err;
    assert_int_equal(decode("{\"jsonrpc\":\"1.0\",\"id\":42,\"method\":\"ping\"}", NULL, &b, &err),
                     -1);
    assert_int_equal(err.code, JSONRPC_INVALID_REQUEST);
    assert_non_null(err.id);
    assert_int_equal(json_integer_value(err.id), 42);
    json_decref(err.id);

    assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"id\":\"r\",\"method\":\"x\",\"params\":[1]}",
                            NULL, &b, &err),
                     -1);
    assert_int_equal(err.code, JSONRPC_INVALID_REQUEST);
    assert_string_equal(json_string_value(err.id), "r");
    json_decref(err.id);

    const char *bad[] = {
        "{\"id\":1,\"method\":\"ping\"}",
        "{\"jsonrpc\":2.0,\"id\":1,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0 \",\"id\":1,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":5}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":null}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":\"x\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":null}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"result\":{}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"error\":{\"code\":1,\"message\":\"m\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":\"boom\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1.5,\"message\":\"m\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(decode(bad[i], NULL, &b, &err), -1);
        if (err.code != JSONRPC_INVALID_REQUEST)
            fail_msg("code %d for %s", err.code, bad[i]);
        assert_int_equal(strncmp(err.message, "Invalid Request", 15), 0);
        json_decref(err.id);
    }
    /* A response needs an id. */
    expect_fail("{\"jsonrpc\":\"2.0\",\"result\":{}}", NULL, JSONRPC_INVALID_REQUEST);
    /* Valid JSON that is not an object. */
    expect_fail("42", NULL, JSONRPC_INVALID_REQUEST);
    expect_fail("\"tools/call\"", NULL, JSONRPC_INVALID_REQUEST);
    expect_fail("null", NULL, JSONRPC_INVALID_REQUEST);
}

static void test_invalid_params(void **state)
{
    (void)state;
    struct mcp_batch b;
    struct mcp_decode_error err;
    const char *bad[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{}}",
        "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":7}}",
        ("{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"t\","
         "\"arguments\":[1]}}"),
        ("{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"t\","
         "\"arguments\":null}}"),
        "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"prompts/get\",\"params\":{\"arguments\":{}}}",
        ("{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"prompts/get\",\"params\":{\"name\":\"p\","
         "\"arguments\":\"a=b\"}}"),
        "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"resources/read\",\"params\":{}}",
        "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"resources/read\",\"params\":{\"uri\":1}}",
        "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"resources/read\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(decode(bad[i], NULL, &b, &err), -1);
        if (err.code != JSONRPC_INVALID_PARAMS)
            fail_msg("code %d for %s", err.code, bad[i]);
        assert_non_null(err.id);
        assert_int_equal(json_integer_value(err.id), 9);
        json_decref(err.id);
    }
}

static void test_parse_errors(void **state)
{
    (void)state;
    const char *bad[] = {
        "{",
        "{\"jsonrpc\":\"2.0\",}",
        "{\"jsonrpc\":\"2.0\"} trailing",
        "{\"jsonrpc\":\"2.0\"}{}",
        /* Duplicate keys, at the top and nested. */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}",
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\","
         "\"name\":\"b\"}}"),
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\","
         "\"arguments\":{\"k\":1,\"k\":2}}}"),
        /* NUL escapes. */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"pi\\u0000ng\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":\"a\\u0000\",\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"k\\u0000\":1}}",
        /* Invalid UTF-8: a lone continuation byte, an overlong encoding, a surrogate, a
         * truncated sequence, in values and in keys. */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\x80\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xc0\xaf\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xed\xa0\x80\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xe2\x82\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"\xff\":1}}",
        /* A lone surrogate escape. */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\\ud800\"}",
        /* Huge numbers overflow jansson's integer and double. */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"n\":1e400}}",
        ("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"n\":"
         "123456789012345678901234567890}}"),
        /* Not JSON at all. */
        "NaN",
        "{'jsonrpc':'2.0'}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_fail(bad[i], NULL, JSONRPC_PARSE_ERROR);

    struct mcp_batch b;
    struct mcp_decode_error err;
    assert_int_equal(mcp_decode("", 0, &test_limits, NULL, &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_PARSE_ERROR);
    assert_int_equal(mcp_decode(NULL, 0, &test_limits, NULL, &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_PARSE_ERROR);

    /* A raw NUL byte inside the body (length says it is there). */
    const char nul[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\0\"}";
    assert_int_equal(mcp_decode(nul, sizeof nul - 1, &test_limits, NULL, &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_PARSE_ERROR);
    /* Bytes after len are not read: a prefix that is complete JSON decodes. */
    const char *longer = "{\"jsonrpc\":\"2.0\",\"method\":\"x\"}GARBAGE";
    assert_int_equal(mcp_decode(longer, strlen(longer) - 7, &test_limits, NULL, &b, &err), 0);
    mcp_batch_free(&b);
}

static void test_error_never_echoes_input(void **state)
{
    (void)state;
    const char *inputs[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":SECRET_TOKEN_abc}",
        "SECRET_TOKEN_abc",
        "{\"SECRET_TOKEN_abc\":1,\"SECRET_TOKEN_abc\":2}",
        "{\"jsonrpc\":\"SECRET_TOKEN_abc\",\"id\":1,\"method\":\"ping\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"SECRET_TOKEN_abc\",\"params\":1}",
        ("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
         "\"SECRET_TOKEN_abc\",\"arguments\":1}}]"),
    };
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        struct mcp_batch b;
        struct mcp_decode_error err;
        assert_int_equal(decode(inputs[i], NULL, &b, &err), -1);
        assert_null(strstr(err.message, "SECRET"));
        json_decref(err.id);
    }
    /* The protocol version header is only repeated when it looks like a revision date. */
    struct mcp_batch b;
    struct mcp_decode_error err;
    assert_int_equal(decode("[{\"jsonrpc\":\"2.0\",\"method\":\"x\"}]", "SECRET<script>", &b, &err),
                     -1);
    assert_null(strstr(err.message, "SECRET"));
    assert_non_null(strstr(err.message, "unsupported MCP-Protocol-Version"));
}

static void test_deep_nesting(void **state)
{
    (void)state;
    struct mcp_batch b;
    struct mcp_decode_error err;
    char *deep = repeat("[", 10000, "]");
    assert_int_equal(decode(deep, NULL, &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_PARSE_ERROR);
    free(deep);
    deep = repeat("{\"a\":", 10000, "}");
    assert_int_equal(decode(deep, NULL, &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_PARSE_ERROR);
    free(deep);

    /* Exactly the bound is accepted; one more is not. The message itself is depth 1, params
     * 2, and the arguments object with everything nested in it the `extra` levels. */
    for (size_t extra = 62; extra <= 63; extra++) {
        char *inner = repeat("{\"a\":", extra, "}");
        char *t = malloc(strlen(inner) + 200);
        assert_non_null(inner);
        assert_non_null(t);
        /* repeat() leaves "{\"a\":{\"a\":}}": put a value in the middle. */
        size_t half = extra * 5;
        sprintf(t,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
                "\"t\",\"arguments\":%.*s1%s}}",
                (int)half, inner, inner + half);
        int rc = decode(t, NULL, &b, &err);
        if (extra == 62) {
            assert_int_equal(rc, 0);
            mcp_batch_free(&b);
        } else {
            assert_int_equal(rc, -1);
            assert_int_equal(err.code, JSONRPC_PARSE_ERROR);
        }
        free(inner);
        free(t);
    }

    /* Brackets inside strings are not nesting. */
    char *brackets = repeat("[", 5000, "]");
    char *t = malloc(strlen(brackets) + 100);
    assert_non_null(t);
    sprintf(t, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"s\":\"%s\"}}",
            brackets);
    assert_int_equal(decode(t, NULL, &b, &err), 0);
    mcp_batch_free(&b);
    free(brackets);
    free(t);

    /* Zero limits fall back to the defaults (depth 64), never to "unbounded". */
    struct mcp_limits zero = {0};
    deep = repeat("[", 65, "]");
    assert_int_equal(mcp_decode(deep, strlen(deep), &zero, NULL, &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_PARSE_ERROR);
    free(deep);
}

static void test_max_bytes(void **state)
{
    (void)state;
    struct mcp_limits lim = {.max_bytes = 50, .max_depth = 8, .max_batch = 4};
    struct mcp_batch b;
    struct mcp_decode_error err;
    const char *t = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}"; /* 40 bytes */
    assert_int_equal(mcp_decode(t, strlen(t), &lim, NULL, &b, &err), 0);
    mcp_batch_free(&b);
    lim.max_bytes = strlen(t);
    assert_int_equal(mcp_decode(t, strlen(t), &lim, NULL, &b, &err), 0);
    mcp_batch_free(&b);
    lim.max_bytes = strlen(t) - 1;
    assert_int_equal(mcp_decode(t, strlen(t), &lim, NULL, &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_INVALID_REQUEST);
}

static void test_batches_by_version(void **state)
{
    (void)state;
    struct mcp_batch b;
    struct mcp_decode_error err;
    const char *batch = "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                        "{\"name\":\"a\"}},{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"},"
                        "{\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"result\":{}}]";
    const char *ok_versions[] = {NULL, "2025-03-26"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(decode(batch, ok_versions[i], &b, &err), 0);
        assert_int_equal(b.is_batch, 1);
        assert_int_equal(b.n, 3);
        assert_int_equal(b.msgs[0].kind, MCP_REQUEST);
        assert_string_equal(b.msgs[0].target, "a");
        assert_int_equal(b.msgs[1].kind, MCP_NOTIFICATION);
        assert_int_equal(b.msgs[2].kind, MCP_RESPONSE);
        mcp_batch_free(&b);
    }
    const char *no_versions[] = {"2025-06-18", "2025-11-25", "2024-11-05x", ""};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(decode(batch, no_versions[i], &b, &err), -1);
        assert_int_equal(err.code, JSONRPC_INVALID_REQUEST);
        assert_null(err.id);
        /* A revision toolgate does not know is refused before anything else. */
        assert_non_null(strstr(err.message, i < 2 ? "batching is not supported"
                                                  : "unsupported MCP-Protocol-Version"));
    }
    assert_int_equal(decode(batch, "2025-06-18", &b, &err), -1);
    assert_non_null(strstr(err.message, "2025-06-18"));

    /* A one-element array is still a batch. */
    assert_int_equal(decode("[{\"jsonrpc\":\"2.0\",\"method\":\"x\"}]", NULL, &b, &err), 0);
    assert_int_equal(b.is_batch, 1);
    assert_int_equal(b.n, 1);
    mcp_batch_free(&b);

    expect_fail("[]", NULL, JSONRPC_INVALID_REQUEST);
    expect_fail("[]", "2025-03-26", JSONRPC_INVALID_REQUEST);
}

static void test_batch_rules(void **state)
{
    (void)state;
    struct mcp_batch b;
    struct mcp_decode_error err;
    /* More than max_batch (10) messages. */
    char t[4096] = "[";
    for (int i = 0; i < 11; i++)
        strcat(t, i ? ",{\"jsonrpc\":\"2.0\",\"method\":\"x\"}"
                    : "{\"jsonrpc\":\"2.0\",\"method\":\"x\"}");
    strcat(t, "]");
    expect_fail(t, NULL, JSONRPC_INVALID_REQUEST);
    /* Exactly max_batch is fine. */
    strcpy(t, "[");
    for (int i = 0; i < 10; i++)
        strcat(t, i ? ",{\"jsonrpc\":\"2.0\",\"method\":\"x\"}"
                    : "{\"jsonrpc\":\"2.0\",\"method\":\"x\"}");
    strcat(t, "]");
    assert_int_equal(decode(t, NULL, &b, &err), 0);
    assert_int_equal(b.n, 10);
    mcp_batch_free(&b);

    /* initialize must not be batched, as request or otherwise. */
    expect_fail("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}]", NULL,
                JSONRPC_INVALID_REQUEST);
    /* ...but alone it is fine. */
    assert_int_equal(
        decode("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}", NULL, &b,
               &err),
        0);
    mcp_batch_free(&b);

    /* One bad element refuses the whole batch; the answer carries no id. */
    const char *bad[] = {
        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"},1]",
        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"},[]]",
        ("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"},{\"jsonrpc\":\"2.0\",\"id\":2,"
         "\"method\":\"tools/call\",\"params\":{}}]"),
        ("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"},{\"jsonrpc\":\"2.0\",\"id\":true,"
         "\"method\":\"y\"}]"),
        "[[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"}]]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(decode(bad[i], NULL, &b, &err), -1);
        assert_null(err.id);
        assert_null(b.msgs);
        assert_non_null(strstr(err.message, "batch element"));
    }
    assert_int_equal(decode(bad[2], NULL, &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_INVALID_PARAMS);
    assert_non_null(strstr(err.message, "batch element 1"));
}

static void test_error_and_result_bodies(void **state)
{
    (void)state;
    struct gw_buf out = {0};
    assert_int_equal(jsonrpc_error_body(&out, NULL, JSONRPC_PARSE_ERROR, "Parse error", NULL), 0);
    assert_string_equal(out.data, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,"
                                  "\"message\":\"Parse error\"}}");
    gw_buf_reset(&out);

    json_t *id = json_string("a\"b");
    json_t *data = json_pack("{s:s,s:i}", "reason", "x", "n", 1);
    assert_int_equal(jsonrpc_error_body(&out, id, -32602, "bad \"name\"\n", data), 0);
    assert_string_equal(
        out.data, "{\"jsonrpc\":\"2.0\",\"id\":\"a\\\"b\",\"error\":{\"code\":-32602,"
                  "\"message\":\"bad \\\"name\\\"\\n\",\"data\":{\"reason\":\"x\",\"n\":1}}}");
    /* The output is valid JSON that round-trips. */
    json_error_t jerr;
    json_t *parsed = json_loadb(out.data, out.len, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(parsed);
    assert_string_equal(json_string_value(json_object_get(parsed, "id")), "a\"b");
    json_decref(parsed);
    json_decref(data);
    json_decref(id);
    gw_buf_reset(&out);

    /* Appends after what is there. */
    assert_int_equal(gw_buf_append_str(&out, "X"), 0);
    id = json_integer(-12);
    json_t *result = json_pack("{s:[]}", "tools");
    assert_int_equal(jsonrpc_result_body(&out, id, result), 0);
    assert_string_equal(out.data, "X{\"jsonrpc\":\"2.0\",\"id\":-12,\"result\":{\"tools\":[]}}");
    gw_buf_reset(&out);
    assert_int_equal(jsonrpc_result_body(&out, NULL, NULL), 0);
    assert_string_equal(out.data, "{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":null}");
    json_decref(result);
    json_decref(id);
    gw_buf_free(&out);
}

static void test_decode_error_body_roundtrip(void **state)
{
    (void)state;
    /* The decoder's error feeds the body builder directly. */
    struct mcp_batch b;
    struct mcp_decode_error err;
    assert_int_equal(
        decode("{\"jsonrpc\":\"2.0\",\"id\":\"q\",\"method\":\"tools/call\"}", NULL, &b, &err), -1);
    struct gw_buf out = {0};
    assert_int_equal(jsonrpc_error_body(&out, err.id, err.code, err.message, NULL), 0);
    json_error_t jerr;
    json_t *parsed = json_loadb(out.data, out.len, 0, &jerr);
    assert_non_null(parsed);
    assert_string_equal(json_string_value(json_object_get(parsed, "id")), "q");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(parsed, "error"), "code")),
                     JSONRPC_INVALID_PARAMS);
    json_decref(parsed);
    json_decref(err.id);
    gw_buf_free(&out);
}

static void test_parse_message(void **state)
{
    (void)state;
    json_t *j = NULL;
    const char *ok = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}";
    assert_int_equal(mcp_parse_message(ok, strlen(ok), 64, &j), 0);
    assert_true(json_is_object(j));
    json_decref(j);
    assert_int_equal(mcp_parse_message("[{},{}]", 7, 64, &j), 0);
    assert_true(json_is_array(j));
    json_decref(j);

    const char *bad[] = {
        "1",
        "\"s\"",
        "null",
        "{\"a\":1,\"a\":2}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":\"\xc3\"}",
        "{} {}",
        "{\"a\":1e999}",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        j = (json_t *)1;
        assert_int_equal(mcp_parse_message(bad[i], strlen(bad[i]), 64, &j), -1);
        assert_null(j);
    }
    char *deep = repeat("[", 10000, "]");
    assert_int_equal(mcp_parse_message(deep, strlen(deep), 64, &j), -1);
    /* max_depth 0 means the default bound. */
    assert_int_equal(mcp_parse_message(deep, strlen(deep), 0, &j), -1);
    free(deep);
    deep = repeat("[", 10, "]");
    assert_int_equal(mcp_parse_message(deep, strlen(deep), 10, &j), 0);
    json_decref(j);
    assert_int_equal(mcp_parse_message(deep, strlen(deep), 9, &j), -1);
    free(deep);
}

/* ---- closed world: the method table, names, URIs, ids ---- */

static const struct mcp_limits strict = {.max_bytes = 1 << 20, .max_depth = 64, .max_batch = 10};

static int decode_strict(const char *text, const char *version, struct mcp_batch *b,
                         struct mcp_decode_error *err)
{
    int rc = mcp_decode(text, strlen(text), &strict, version, b, err);
    if (rc != 0)
        json_decref(err->id);
    return rc;
}

static void test_unknown_methods_refused(void **state)
{
    (void)state;
    struct mcp_batch b;
    struct mcp_decode_error err;
    static const char *const refused[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"Tools/Call\",\"params\":{\"name\":\"a\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call \",\"params\":{\"name\":\"a\"}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/delete\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"}",
        /* Known, but in the other direction: a client does not send server requests. */
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sampling/createMessage\",\"params\":{}}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}",
        /* A governed action as a notification. */
        "{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{\"name\":\"t\"}}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        assert_int_equal(decode_strict(refused[i], NULL, &b, &err), -1);
        if (err.code != JSONRPC_METHOD_NOT_FOUND)
            fail_msg("code %d for %s", err.code, refused[i]);
    }
    /* Not in this revision: elicitation came in 2025-06-18, tasks in 2025-11-25. */
    const char *tasks = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tasks/list\"}";
    assert_int_equal(decode_strict(tasks, "2025-06-18", &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_METHOD_NOT_FOUND);
    assert_int_equal(decode_strict(tasks, "2025-11-25", &b, &err), 0);
    assert_ptr_not_equal(b.msgs[0].spec, NULL);
    mcp_batch_free(&b);
    /* An operator may list a method of its own; it is then plumbing, with no spec. */
    char *const extra[] = {"vendor/hello", NULL};
    struct mcp_limits lim = strict;
    lim.allow_methods = extra;
    const char *hello = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"vendor/hello\"}";
    assert_int_equal(mcp_decode(hello, strlen(hello), &lim, NULL, &b, &err), 0);
    assert_null(b.msgs[0].spec);
    mcp_batch_free(&b);
    assert_int_equal(decode_strict(hello, NULL, &b, &err), -1);
    /* Unknown revisions are refused whatever the method. */
    const char *ping = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}";
    assert_int_equal(decode_strict(ping, "2099-01-01", &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_INVALID_REQUEST);
    assert_int_equal(decode_strict(ping, "2025-11-25", &b, &err), 0);
    mcp_batch_free(&b);
}

static void test_every_2025_method_classified(void **state)
{
    (void)state;
    size_t n;
    const struct mcp_method *t = mcp_method_table(&n);
    assert_true(n >= 30);
    for (size_t i = 0; i < n; i++) {
        if (t[i].cls == MCP_CLASS_ACTION)
            assert_int_not_equal(t[i].target, MCP_TARGET_NONE);
        if (t[i].cls == MCP_CLASS_LIST)
            assert_true(t[i].list_key && t[i].item_key);
    }
    const struct mcp_method *m =
        mcp_method_lookup("resources/templates/list", MCP_V_2025_03_26, MCP_DIR_CLIENT_REQUEST);
    assert_non_null(m);
    assert_int_equal(m->cls, MCP_CLASS_LIST);
    assert_string_equal(m->list_key, "resourceTemplates");
    m = mcp_method_lookup("completion/complete", MCP_V_2025_06_18, MCP_DIR_CLIENT_REQUEST);
    assert_int_equal(m->cls, MCP_CLASS_ACTION);
    m = mcp_method_lookup("resources/subscribe", MCP_V_2025_11_25, MCP_DIR_CLIENT_REQUEST);
    assert_int_equal(m->target, MCP_TARGET_RESOURCE);
    assert_null(mcp_method_lookup("elicitation/create", MCP_V_2025_03_26, MCP_DIR_SERVER_REQUEST));
    assert_non_null(
        mcp_method_lookup("elicitation/create", MCP_V_2025_06_18, MCP_DIR_SERVER_REQUEST));
}

static void test_names_and_uris_canonical(void **state)
{
    (void)state;
    struct mcp_batch b;
    struct mcp_decode_error err;
    static const char *const bad_names[] = {"delete_patient ", " a", "a\\tb",
                                            "caf\\u00e9",      "",   "a;b"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        char t[256];
        snprintf(t, sizeof t,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
                 "\"%s\"}}",
                 bad_names[i]);
        assert_int_equal(decode_strict(t, NULL, &b, &err), -1);
        assert_int_equal(err.code, JSONRPC_INVALID_PARAMS);
    }
    /* A URI is judged and forwarded in canonical form. */
    const char *read = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\",\"params\":"
                       "{\"uri\":\"file:///public/%2e%2e/secret\"}}";
    assert_int_equal(decode_strict(read, NULL, &b, &err), 0);
    assert_string_equal(b.msgs[0].target, "file:///secret");
    assert_true(b.msgs[0].rewritten);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(b.msgs[0].json, "params"), "uri")),
        "file:///secret");
    mcp_batch_free(&b);
    const char *sub = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/subscribe\",\"params\":"
                      "{\"uri\":\"file:///public/..%2fsecret\"}}";
    assert_int_equal(decode_strict(sub, NULL, &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_INVALID_PARAMS);
    /* A completion names a prompt or a resource template. */
    const char *comp =
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"completion/complete\",\"params\":"
        "{\"ref\":{\"type\":\"ref/prompt\",\"name\":\"summarise\"},\"argument\":"
        "{\"name\":\"a\",\"value\":\"b\"}}}";
    assert_int_equal(decode_strict(comp, NULL, &b, &err), 0);
    assert_int_equal(b.msgs[0].target_kind, MCP_TARGET_PROMPT);
    assert_string_equal(b.msgs[0].target, "summarise");
    mcp_batch_free(&b);
    const char *comp2 = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"completion/complete\","
                        "\"params\":{\"ref\":{\"type\":\"ref/resource\",\"uri\":"
                        "\"FILE:///docs/{name}\"}}}";
    assert_int_equal(decode_strict(comp2, NULL, &b, &err), 0);
    assert_int_equal(b.msgs[0].target_kind, MCP_TARGET_RESOURCE);
    assert_string_equal(b.msgs[0].target, "file:///docs/{name}");
    mcp_batch_free(&b);
    const char *comp3 = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"completion/complete\","
                        "\"params\":{\"ref\":{\"type\":\"ref/tool\",\"name\":\"x\"}}}";
    assert_int_equal(decode_strict(comp3, NULL, &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_INVALID_PARAMS);
}

static void test_batch_duplicate_ids_refused(void **state)
{
    (void)state;
    struct mcp_batch b;
    struct mcp_decode_error err;
    const char *dup = "[{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"},"
                      "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\"}]";
    assert_int_equal(decode_strict(dup, NULL, &b, &err), -1);
    assert_int_equal(err.code, JSONRPC_INVALID_REQUEST);
    assert_non_null(strstr(err.message, "twice"));
    /* "7" and 7 are different ids. */
    const char *two = "[{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"},"
                      "{\"jsonrpc\":\"2.0\",\"id\":\"7\",\"method\":\"tools/list\"}]";
    assert_int_equal(decode_strict(two, NULL, &b, &err), 0);
    mcp_batch_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_methods_refused),
        cmocka_unit_test(test_every_2025_method_classified),
        cmocka_unit_test(test_names_and_uris_canonical),
        cmocka_unit_test(test_batch_duplicate_ids_refused),
        cmocka_unit_test(test_depth_scan),
        cmocka_unit_test(test_request_tools_call),
        cmocka_unit_test(test_request_kinds),
        cmocka_unit_test(test_id_types),
        cmocka_unit_test(test_invalid_requests_recover_id),
        cmocka_unit_test(test_invalid_params),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_error_never_echoes_input),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_max_bytes),
        cmocka_unit_test(test_batches_by_version),
        cmocka_unit_test(test_batch_rules),
        cmocka_unit_test(test_error_and_result_bodies),
        cmocka_unit_test(test_decode_error_body_roundtrip),
        cmocka_unit_test(test_parse_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
