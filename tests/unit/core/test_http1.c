/* Tests of the HTTP/1.1 request parser wrapper (src/core/http1.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/http1.h"

#define KB 1024

static size_t feed_all(struct http1_parser *p, const char *s)
{
    return http1_feed(p, s, strlen(s));
}

static void test_simple_get(void **state)
{
    (void)state;
    struct http1_parser p;
    http1_init(&p, 16 * KB, 1024 * KB);
    const char *req = "GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\nX-Thing:  v a l  \r\n\r\n";
    size_t n = feed_all(&p, req);
    assert_int_equal(n, strlen(req));
    assert_int_equal(p.state, HTTP1_DONE);
    assert_int_equal(p.method, GW_HTTP_GET);
    assert_true(gw_slice_eq(p.path, "/healthz"));
    assert_true(gw_slice_eq(p.query, "x=1"));
    assert_true(gw_slice_eq(http1_header(&p, "x-thing"), "v a l"));
    assert_true(p.keep_alive);
    http1_free(&p);
}

static void test_pipelined_stops_after_each(void **state)
{
    (void)state;
    struct http1_parser p;
    http1_init(&p, 16 * KB, 1024 * KB);
    const char *two = "POST /mcp HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                      "GET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t n = feed_all(&p, two);
    assert_int_equal(p.state, HTTP1_DONE);
    assert_int_equal(p.body.len, 3);
    assert_memory_equal(p.body.data, "abc", 3);
    const char *rest = two + n;
    assert_true(strncmp(rest, "GET /b", 6) == 0);
    http1_reset(&p);
    size_t m = feed_all(&p, rest);
    assert_int_equal(m, strlen(rest));
    assert_int_equal(p.state, HTTP1_DONE);
    assert_true(gw_slice_eq(p.path, "/b"));
    http1_free(&p);
}

static void test_byte_at_a_time(void **state)
{
    (void)state;
    struct http1_parser p;
    http1_init(&p, 16 * KB, 1024 * KB);
    const char *req = "POST /mcp HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                      "Content-Type: application/json\r\n\r\n"
                      "4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
    size_t len = strlen(req);
    for (size_t i = 0; i < len; i++) {
        size_t n = http1_feed(&p, req + i, 1);
        assert_int_equal(n, 1);
        if (i + 1 < len)
            assert_int_not_equal(p.state, HTTP1_ERROR);
    }
    assert_int_equal(p.state, HTTP1_DONE);
    assert_true(p.chunked);
    assert_int_equal(p.body.len, 7);
    assert_memory_equal(p.body.data, "{\"a\":1}", 7);
    assert_true(gw_slice_eq(http1_header(&p, "content-type"), "application/json"));
    http1_free(&p);
}

static void expect_error(const char *req, uint64_t max_header, uint64_t max_body, int status)
{
    struct http1_parser p;
    http1_init(&p, max_header, max_body);
    http_parser_set_max_header_size(80 * KB);
    feed_all(&p, req);
    assert_int_equal(p.state, HTTP1_ERROR);
    assert_int_equal(p.error_status, status);
    assert_non_null(p.error_msg);
    http1_free(&p);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("BLAH\r\n\r\n", 16 * KB, KB, 400);
    expect_error("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 16 * KB, KB, 505);
    expect_error("GET / HTTP/1.1\r\n\r\n", 16 * KB, KB, 400);                       /* no Host */
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 16 * KB, KB, 400); /* two */
    expect_error("GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n", 16 * KB, KB, 400);
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n", 16 * KB, KB, 413);
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                 16 * KB, KB, 400);
    expect_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 "Content-Length: 3\r\n\r\n",
                 16 * KB, KB, 400);
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 16 * KB, KB, 417);
    /* The grammar, checked on the bytes as received (RFC 9112 §3, §5). */
    expect_error("GET /mcp HTTQ/1.1\r\nHost: a\r\n\r\n", 16 * KB, KB, 400);
    expect_error("GET  /mcp HTTP/1.1\r\nHost: a\r\n\r\n", 16 * KB, KB, 400);
    expect_error("GET /mcp HTTP/1.1 x\r\nHost: a\r\n\r\n", 16 * KB, KB, 400);
    expect_error("GET /mcp HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 16 * KB, KB, 400);
    expect_error("GET /mcp HTTP/1.1\r\nHost: a\r\nX-A: b\r\n  c\r\n\r\n", 16 * KB, KB, 400);
    expect_error("POST /mcp HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                 "0\r\n\r\n",
                 16 * KB, KB, 501);

    /* Header bytes over the configured bound. */
    char big[4096];
    int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: a\r\nX: %0*d\r\n\r\n", 2000, 0);
    assert_true(n > 0);
    expect_error(big, 1 * KB, KB, 431);

    /* Too many header fields. */
    char many[8192] = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 0; i < HTTP1_MAX_HEADERS + 5; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "H%d: v\r\n", i);
    strcat(many, "\r\n");
    expect_error(many, 64 * KB, KB, 431);
}

static void test_chunked_body_limit(void **state)
{
    (void)state;
    struct http1_parser p;
    http1_init(&p, 16 * KB, 8);
    feed_all(&p, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n");
    assert_int_equal(p.state, HTTP1_ERROR);
    assert_int_equal(p.error_status, 413);
    http1_free(&p);
}

static void test_expect_continue_and_http10(void **state)
{
    (void)state;
    struct http1_parser p;
    http1_init(&p, 16 * KB, KB);
    feed_all(&p,
             "POST /mcp HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
    assert_int_equal(p.state, HTTP1_BODY);
    assert_true(p.expect_continue);
    feed_all(&p, "{}");
    assert_int_equal(p.state, HTTP1_DONE);
    http1_reset(&p);
    feed_all(&p, "GET /x HTTP/1.0\r\n\r\n");
    assert_int_equal(p.state, HTTP1_DONE);
    assert_int_equal(p.http_minor, 0);
    assert_false(p.keep_alive);
    http1_reset(&p);
    feed_all(&p, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_false(p.keep_alive);
    http1_free(&p);
}

static void test_upgrade_is_ignored_and_closes(void **state)
{
    (void)state;
    struct http1_parser p;
    http1_init(&p, 16 * KB, KB);
    feed_all(&p, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    assert_int_equal(p.state, HTTP1_DONE);
    assert_false(p.keep_alive);
    http1_free(&p);
}

static void test_control_chars_in_value(void **state)
{
    (void)state;
    struct http1_parser p;
    http1_init(&p, 16 * KB, KB);
    static const char req[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01"
                              "b\r\n\r\n";
    http1_feed(&p, req, sizeof req - 1);
    assert_int_equal(p.state, HTTP1_ERROR);
    assert_int_equal(p.error_status, 400);
    http1_free(&p);
}

/* Every byte value in a header's name: accepted exactly when RFC 9110 makes it a tchar. */
static void test_header_name_bytes(void **state)
{
    (void)state;
    static const char punct[] = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; c++) {
        /* ':' ends the name: "X:Y: v" is X with the value "Y: v". */
        int tchar = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c && strchr(punct, c) != NULL) || c == ':';
        char req[128];
        int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: a\r\nX%cY: v\r\n\r\n", 'Q');
        assert_true(n > 0 && (size_t)n < sizeof req);
        req[strchr(req, 'Q') - req] = (char)c;
        struct http1_parser p;
        http1_init(&p, 16 * KB, KB);
        http1_feed(&p, req, (size_t)n);
        if (tchar != (p.state == HTTP1_DONE))
            fail_msg("byte 0x%02x in a header name: %s", c, tchar ? "refused" : "accepted");
        if (!tchar && c != '\r' && c != '\n')
            assert_int_equal(p.error_status, 400);
        http1_free(&p);
    }
}

static void test_reason_phrases(void **state)
{
    (void)state;
    assert_string_equal(http1_reason(431), "Request Header Fields Too Large");
    assert_string_equal(http1_reason(504), "Gateway Timeout");
    assert_string_equal(http1_reason(299), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_pipelined_stops_after_each),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_chunked_body_limit),
        cmocka_unit_test(test_expect_continue_and_http10),
        cmocka_unit_test(test_upgrade_is_ignored_and_closes),
        cmocka_unit_test(test_control_chars_in_value),
        cmocka_unit_test(test_header_name_bytes),
        cmocka_unit_test(test_reason_phrases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
