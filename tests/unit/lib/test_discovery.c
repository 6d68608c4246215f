/* discovery: the metadata URLs of an issuer, in order, and the checks on a metadata document. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/discovery.h"

static size_t urls_of(const char *issuer, char urls[DISCOVERY_MAX_URLS][DISCOVERY_MAX_URL])
{
    size_t n = 0;
    char why[200];
    if (discovery_urls(issuer, urls, &n, why, sizeof why) != 0)
        fail_msg("discovery_urls(%s): %s", issuer, why);
    return n;
}

static void test_urls_without_path(void **state)
{
    (void)state;
    char u[DISCOVERY_MAX_URLS][DISCOVERY_MAX_URL];
    assert_int_equal(urls_of("https://idp.example", u), 2);
    assert_string_equal(u[0], "https://idp.example/.well-known/oauth-authorization-server");
    assert_string_equal(u[1], "https://idp.example/.well-known/openid-configuration");
    /* A lone terminating slash is no path: the same two URLs. */
    assert_int_equal(urls_of("https://idp.example/", u), 2);
    assert_string_equal(u[0], "https://idp.example/.well-known/oauth-authorization-server");
    assert_string_equal(u[1], "https://idp.example/.well-known/openid-configuration");
    assert_int_equal(urls_of("http://127.0.0.1:8443", u), 2);
    assert_string_equal(u[1], "http://127.0.0.1:8443/.well-known/openid-configuration");
}

static void test_urls_with_path(void **state)
{
    (void)state;
    char u[DISCOVERY_MAX_URLS][DISCOVERY_MAX_URL];
    /* RFC 8414 §3.1 insertion first, OIDC path insertion, then OIDC §4 appending. */
    assert_int_equal(urls_of("https://idp.example/tenant1", u), 3);
    assert_string_equal(u[0], "https://idp.example/.well-known/oauth-authorization-server/tenant1");
    assert_string_equal(u[1], "https://idp.example/.well-known/openid-configuration/tenant1");
    assert_string_equal(u[2], "https://idp.example/tenant1/.well-known/openid-configuration");
    /* Keycloak's shape, with a terminating slash removed before the suffix is placed. */
    assert_int_equal(urls_of("https://kc.example:8443/realms/acme/", u), 3);
    assert_string_equal(
        u[0], "https://kc.example:8443/.well-known/oauth-authorization-server/realms/acme");
    assert_string_equal(u[1],
                        "https://kc.example:8443/.well-known/openid-configuration/realms/acme");
    assert_string_equal(u[2],
                        "https://kc.example:8443/realms/acme/.well-known/openid-configuration");
}

static void test_urls_refused(void **state)
{
    (void)state;
    char u[DISCOVERY_MAX_URLS][DISCOVERY_MAX_URL];
    char why[200];
    size_t n = 9;
    static const char *const bad[] = {
        "http://idp.example",          /* plain http off loopback */
        "ftp://idp.example",           /* not http(s) */
        "https://",                    /* no host */
        "https:///path",               /* no host */
        "https://idp.example/?a=b",    /* query (RFC 8414 §2) */
        "https://idp.example/#frag",   /* fragment */
        "https://idp.example/a b",     /* space */
        "http://127.0.0.1.evil.test/", /* loopback look-alike */
        "idp.example",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = 9;
        assert_int_equal(discovery_urls(bad[i], u, &n, why, sizeof why), -1);
        assert_int_equal(n, 0);
        assert_true(why[0] != '\0');
    }
    char *longer = malloc(DISCOVERY_MAX_ISSUER + 32);
    snprintf(longer, DISCOVERY_MAX_ISSUER + 32, "https://idp.example/");
    memset(longer + strlen(longer), 'a', DISCOVERY_MAX_ISSUER);
    longer[DISCOVERY_MAX_ISSUER + 31] = '\0';
    assert_int_equal(discovery_urls(longer, u, &n, why, sizeof why), -1);
    free(longer);
}

static int parse(const char *doc, const char *issuer, struct discovery_meta *m, char *why)
{
    return discovery_parse(doc, strlen(doc), issuer, m, why, 200);
}

static void test_parse_good(void **state)
{
    (void)state;
    struct discovery_meta m;
    char why[200];
    assert_int_equal(parse("{\"issuer\":\"https://idp.example\","
                           "\"jwks_uri\":\"https://idp.example/keys\","
                           "\"token_endpoint\":\"https://idp.example/token\",\"x\":[1,{}]}",
                           "https://idp.example", &m, why),
                     0);
    assert_string_equal(m.jwks_uri, "https://idp.example/keys");
    assert_string_equal(m.token_endpoint, "https://idp.example/token");
    discovery_meta_clear(&m);
    assert_null(m.jwks_uri);
    /* token_endpoint is optional. */
    assert_int_equal(parse("{\"issuer\":\"http://127.0.0.1:9\",\"jwks_uri\":\"http://127.0.0.1:9/"
                           "jwks\"}",
                           "http://127.0.0.1:9", &m, why),
                     0);
    assert_null(m.token_endpoint);
    discovery_meta_clear(&m);
}

static void test_parse_issuer_pinned(void **state)
{
    (void)state;
    struct discovery_meta m;
    char why[200];
    static const char *const other[] = {
        "https://idp.example/", /* trailing slash */
        "https://IDP.example",  /* case */
        "https://idp.example.", /* trailing dot */
        "https://evil.example", /* another issuer */
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        char doc[300];
        snprintf(doc, sizeof doc, "{\"issuer\":\"%s\",\"jwks_uri\":\"https://idp.example/keys\"}",
                 other[i]);
        assert_int_equal(parse(doc, "https://idp.example", &m, why), -2);
        assert_non_null(strstr(why, "not the configured"));
        assert_null(m.jwks_uri);
    }
    /* An embedded NUL cannot make a longer issuer compare equal to a prefix: refused. */
    assert_true(parse("{\"issuer\":\"https://idp.example\\u0000x\",\"jwks_uri\":\"https://"
                      "idp.example/keys\"}",
                      "https://idp.example", &m, why) < 0);
    assert_null(m.jwks_uri);
}

static void test_parse_refused(void **state)
{
    (void)state;
    struct discovery_meta m;
    char why[200];
    static const char *const bad[] = {
        "",
        "[]",
        "null",
        "{\"issuer\":1,\"jwks_uri\":\"https://i/k\"}",
        "{\"jwks_uri\":\"https://i/k\"}",
        "{\"issuer\":\"https://i\"}",
        "{\"issuer\":\"https://i\",\"jwks_uri\":\"http://i/k\"}",
        "{\"issuer\":\"https://i\",\"jwks_uri\":\"file:///etc/passwd\"}",
        "{\"issuer\":\"https://i\",\"jwks_uri\":7}",
        "{\"issuer\":\"https://i\",\"jwks_uri\":\"https://i/k\",\"token_endpoint\":\"http://x/t\"}",
        "{\"issuer\":\"https://i\",\"jwks_uri\":\"https://i/k\",\"jwks_uri\":\"https://e/k\"}",
        "{\"issuer\":\"https://i\",\"jwks_uri\":\"https://i/k\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(bad[i], "https://i", &m, why), -1);
        assert_null(m.jwks_uri);
        assert_null(m.token_endpoint);
        assert_true(why[0] != '\0');
    }
    /* Over the size bound: refused before parsing. */
    size_t big = DISCOVERY_MAX_BYTES + 1;
    char *doc = malloc(big);
    memset(doc, ' ', big);
    assert_int_equal(discovery_parse(doc, big, "https://i", &m, why, sizeof why), -1);
    free(doc);
}

static void test_url_rule(void **state)
{
    (void)state;
    assert_true(discovery_url_ok("https://idp.example/keys"));
    assert_true(discovery_url_ok("http://localhost:8080/keys"));
    assert_true(discovery_url_ok("http://[::1]:8080/keys"));
    assert_false(discovery_url_ok("http://localhost.evil.test/keys"));
    assert_false(discovery_url_ok("https://idp.example/k\r\nX: y"));
    assert_false(discovery_url_ok(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls_without_path),
        cmocka_unit_test(test_urls_with_path),
        cmocka_unit_test(test_urls_refused),
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_issuer_pinned),
        cmocka_unit_test(test_parse_refused),
        cmocka_unit_test(test_url_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
