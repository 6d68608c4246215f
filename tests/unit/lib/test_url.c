/*
 * lib/url, the one URL parser: fields, IPv4 in every form, what looks like a URL, other
 * schemes on request, the parts after the authority, and the phrases errors carry. The
 * hostile-spelling corpus runs in tests/unit/layers/routing/test_ssrf.c, where it is judged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/url.h"

/* Every byte string the parser accepts yields a clean host and a port in range. */
static void test_parsed_fields(void **state)
{
    (void)state;
    struct gw_url u;
    assert_int_equal(gw_url_parse("https://Example.COM", 19, 0, &u), GW_URL_OK);
    assert_int_equal(u.https, 1);
    assert_int_equal(u.port, 443);
    assert_string_equal(u.host, "example.com");
    assert_int_equal(gw_url_parse("http://x.y:8080/p", 17, 0, &u), GW_URL_OK);
    assert_int_equal(u.port, 8080);
    assert_int_equal(u.https, 0);
    /* The length bounds the read: a URL cut inside its host is read as that shorter URL. */
    assert_int_equal(gw_url_parse("http://127.0.0.1", 10, 0, &u), GW_URL_OK);
    assert_string_equal(u.host, "0.0.0.127"); /* "127" alone is one part: 0.0.0.127 */
    char big[GW_URL_MAX + 16];
    memset(big, 'a', sizeof big);
    memcpy(big, "http://a.com/", 13);
    assert_int_equal(gw_url_parse(big, sizeof big, 0, &u), GW_URL_E_TOO_LONG);
    assert_int_equal(gw_url_parse("http://u@h/", 11, 0, &u), GW_URL_E_USERINFO);
    assert_int_equal(gw_url_parse("ftp://h/", 8, 0, &u), GW_URL_E_SCHEME);
    assert_int_equal(gw_url_parse("http://h:0/", 11, 0, &u), GW_URL_E_PORT);
    assert_int_equal(gw_url_parse("http://%31/", 11, 0, &u), GW_URL_E_ENCODED);
    assert_int_equal(gw_url_parse("http://xn--abc/", 15, 0, &u), GW_URL_E_IDNA);
    assert_int_equal(gw_url_parse("http://[fe80::1%25x]/", 21, 0, &u), GW_URL_E_ZONE);
    for (int e = GW_URL_E_ZONE; e <= 0; e++)
        assert_true(strlen(gw_url_error_text(e)) > 0);
}

static void test_ipv4_forms(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint32_t v;
        int ok;
    } cases[] = {
        {"127.0.0.1", 0x7f000001, 1},
        {"127.1", 0x7f000001, 1},
        {"2130706433", 0x7f000001, 1},
        {"0x7f000001", 0x7f000001, 1},
        {"0177.0.0.1", 0x7f000001, 1},
        {"0x7f.1", 0x7f000001, 1},
        {"1.2.3", 0x01020003, 1},
        {"1.65535", 0x0100ffff, 1},
        {"1.16777215", 0x01ffffff, 1},
        {"1.16777216", 0, 0},
        {"1.2.65536", 0, 0},
        {"0", 0, 1},
        {"", 0, 0},
        {"1.", 0, 0},
        {"1..1", 0, 0},
        {"09", 0, 0},
        {"0x", 0, 0},
        {"4294967295", 0xffffffff, 1},
        {"4294967296", 0, 0},
        {"1.2.3.4.5", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t v = 0;
        int rc = gw_ipv4_parse(cases[i].s, strlen(cases[i].s), &v);
        assert_int_equal(rc == 0, cases[i].ok);
        if (cases[i].ok)
            assert_int_equal(v, cases[i].v);
    }
}

static void test_looks_like_url(void **state)
{
    (void)state;
    assert_true(gw_url_looks_like("http://x", 8));
    assert_true(gw_url_looks_like("HTTPS://x", 9));
    assert_true(gw_url_looks_like("file:///etc/passwd", 18));
    assert_true(gw_url_looks_like("gopher://x", 10));
    assert_true(gw_url_looks_like("  http://x", 10));
    assert_true(gw_url_looks_like("//127.0.0.1/", 12));
    assert_true(gw_url_looks_like("http:\\\\x", 8));
    assert_false(gw_url_looks_like("hello world", 11));
    assert_false(gw_url_looks_like("P12345", 6));
    assert_false(gw_url_looks_like("mailto:a@b.c", 12));
    assert_false(gw_url_looks_like("urn:isbn:123", 12));
    assert_false(gw_url_looks_like("", 0));
    assert_true(gw_url_looks_like("http:", 5));
    assert_true(gw_url_looks_like("http:169.254.169.254", 20));
    assert_true(gw_url_looks_like("HTTPS:evil", 10));
    assert_false(gw_url_looks_like("note:hello", 10));
}

static void test_other_schemes_on_request(void **state)
{
    (void)state;
    struct gw_url u;
    assert_int_equal(gw_url_parse("ftp://h/", 8, 0, &u), GW_URL_E_SCHEME);
    assert_int_equal(gw_url_parse("FTP://H.example:21/x", 20, GW_URL_ANY_SCHEME, &u), GW_URL_OK);
    assert_string_equal(u.scheme, "ftp");
    assert_false(u.scheme_lower);
    assert_string_equal(u.host, "h.example");
    assert_int_equal(u.port, 21);
    assert_true(u.port_given);
    assert_int_equal(gw_url_parse("wss://h", 7, GW_URL_ANY_SCHEME, &u), GW_URL_OK);
    assert_int_equal(u.port, 0); /* no default known: 0 */
    assert_false(u.port_given);
    /* Other schemes get the same strict authority rules. */
    assert_int_equal(gw_url_parse("ftp://u@h/", 10, GW_URL_ANY_SCHEME, &u), GW_URL_E_USERINFO);
    assert_int_equal(gw_url_parse("ftp:/h", 6, GW_URL_ANY_SCHEME, &u), GW_URL_E_SYNTAX);
}

static void test_path_query_fragment(void **state)
{
    (void)state;
    struct gw_url u;
    const char *s = "https://h.example:8443/a/b%20c?x=1&y=2#frag";
    assert_int_equal(gw_url_parse(s, strlen(s), 0, &u), GW_URL_OK);
    assert_int_equal(u.path_len, 8);
    assert_memory_equal(s + u.path_off, "/a/b%20c", 8);
    assert_true(u.has_query);
    assert_memory_equal(s + u.query_off, "x=1&y=2", u.query_len);
    assert_true(u.has_fragment);
    assert_memory_equal(s + u.fragment_off, "frag", u.fragment_len);
    assert_int_equal(gw_url_parse("http://h", 8, 0, &u), GW_URL_OK);
    assert_int_equal(u.path_len, 0);
    assert_false(u.has_query);
    assert_false(u.has_fragment);
    /* A '?' or '#' right after the host ends the authority. */
    assert_int_equal(gw_url_parse("http://h?q", 10, 0, &u), GW_URL_OK);
    assert_string_equal(u.host, "h");
    assert_true(u.has_query);
}

/* Errors say what is wrong in a phrase a configuration error can show. */
static void test_error_phrases(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        const char *phrase;
    } cases[] = {
        {"http://:80/", "has no host"},
        {"http:///x", "has no host"},
        {"http://[::1/", "unterminated IPv6"},
        {"http://[::1]x/", "not a port"},
        {"http://[zz]/", "invalid IPv6"},
        {"http://a..b/", "empty label"},
        {"http://-a.b/", "starts or ends with '-'"},
        {"http://a!b/", "not allowed in a host name"},
        {"http://h\\x/", "backslash"},
        {"http://1.2.3.4.5/", "ends in a number but is not an IPv4 address"},
        {"http://u@h/", "userinfo"},
        {"http://h:99999/", "from 1 to 65535"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct gw_url u;
        assert_int_not_equal(gw_url_parse(cases[i].url, strlen(cases[i].url), 0, &u), GW_URL_OK);
        if (!u.why || !strstr(u.why, cases[i].phrase))
            fail_msg("%s: \"%s\" lacks \"%s\"", cases[i].url, u.why ? u.why : "(none)",
                     cases[i].phrase);
        assert_int_equal(u.host[0], '\0'); /* nothing half-parsed is left */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parsed_fields),       cmocka_unit_test(test_ipv4_forms),
        cmocka_unit_test(test_looks_like_url),      cmocka_unit_test(test_other_schemes_on_request),
        cmocka_unit_test(test_path_query_fragment), cmocka_unit_test(test_error_phrases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
