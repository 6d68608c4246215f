/*
 * Token exchange (RFC 8693): what the token endpoint answers, read as hostile input (every
 * field held to its rule, errors told apart from garbage), the configuration of the mode
 * (every key, the secret file, what other modes refuse), and the request side's refusal to
 * exchange without a verified identity. The round trip itself runs against oidc-provider in
 * tests/e2e/token_exchange.test.mjs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/request.h"
#include "layers/routing/routing.h"
#include "layers/routing/tokex.h"
#include "fixtures.h"

#define AT TOKEX_TYPE_ACCESS_TOKEN

static int parse(long status, const char *body, struct tokex_answer *a)
{
    char why[320];
    return tokex_response_parse(status, body, strlen(body), AT, a, why, sizeof why);
}

static void test_answer_ok(void **state)
{
    (void)state;
    struct tokex_answer a;
    assert_int_equal(parse(200,
                           "{\"access_token\":\"eyJ.a-b_c~d+e/f==\",\"issued_token_type\":\"" AT
                           "\",\"token_type\":\"Bearer\",\"expires_in\":300,\"scope\":\"x\"}",
                           &a),
                     TOKEX_OK);
    assert_string_equal(a.access_token, "eyJ.a-b_c~d+e/f==");
    assert_int_equal(a.expires_in, 300);
    tokex_answer_clear(&a);
    /* token_type in any case; expires_in as digits in a string; no expires_in at all. */
    assert_int_equal(parse(200,
                           "{\"access_token\":\"t\",\"issued_token_type\":\"" AT
                           "\",\"token_type\":\"bearer\",\"expires_in\":\"60\"}",
                           &a),
                     TOKEX_OK);
    assert_int_equal(a.expires_in, 60);
    tokex_answer_clear(&a);
    assert_int_equal(parse(200,
                           "{\"access_token\":\"t\",\"issued_token_type\":\"" AT
                           "\",\"token_type\":\"BEARER\"}",
                           &a),
                     TOKEX_OK);
    assert_int_equal(a.expires_in, 0);
    tokex_answer_clear(&a);
}

static void test_answer_refused(void **state)
{
    (void)state;
    struct tokex_answer a;
    assert_int_equal(parse(400, "{\"error\":\"invalid_grant\",\"error_description\":\"no\"}", &a),
                     TOKEX_E_REFUSED);
    assert_string_equal(a.error, "invalid_grant");
    assert_null(a.access_token);
    assert_int_equal(parse(401, "{\"error\":\"invalid_client\"}", &a), TOKEX_E_REFUSED);
    assert_string_equal(a.error, "invalid_client");
    /* An error code outside RFC 6749's alphabet, too long, or missing is not an answer. */
    assert_int_equal(parse(400, "{\"error\":\"bad\\\"quote\"}", &a), TOKEX_E_MALFORMED);
    assert_int_equal(parse(400, "{\"error\":\"line\\nbreak\"}", &a), TOKEX_E_MALFORMED);
    char longer[200];
    snprintf(longer, sizeof longer, "{\"error\":\"%0*d\"}", TOKEX_MAX_ERROR + 1, 0);
    assert_int_equal(parse(400, longer, &a), TOKEX_E_MALFORMED);
    assert_int_equal(parse(400, "{\"error_description\":\"x\"}", &a), TOKEX_E_MALFORMED);
    assert_int_equal(parse(403, "[]", &a), TOKEX_E_MALFORMED);
    assert_int_equal(parse(400, "<html>", &a), TOKEX_E_MALFORMED);
    /* 5xx is the provider being down; any other status is not a token endpoint's answer. */
    assert_int_equal(parse(503, "", &a), TOKEX_E_UNAVAILABLE);
    assert_int_equal(parse(500, "{\"error\":\"server_error\"}", &a), TOKEX_E_UNAVAILABLE);
    assert_int_equal(parse(302, "", &a), TOKEX_E_MALFORMED);
    assert_int_equal(parse(204, "", &a), TOKEX_E_MALFORMED);
}

static void test_answer_malformed(void **state)
{
    (void)state;
    struct tokex_answer a;
    static const char *const bad[] = {
        /* not an object, duplicate keys, truncated */
        "[1]",
        "{\"access_token\":\"t\",\"access_token\":\"u\",\"issued_token_type\":\"" AT
        "\",\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"t\"",
        /* no token, empty token, not a string, characters that could split a header */
        "{\"issued_token_type\":\"" AT "\",\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"\",\"issued_token_type\":\"" AT "\",\"token_type\":\"Bearer\"}",
        "{\"access_token\":5,\"issued_token_type\":\"" AT "\",\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"a\\r\\nX-Evil: 1\",\"issued_token_type\":\"" AT
        "\",\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"a b\",\"issued_token_type\":\"" AT "\",\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"a=b\",\"issued_token_type\":\"" AT "\",\"token_type\":\"Bearer\"}",
        /* token_type other than Bearer (N_A is what RFC 8693 uses for non-access tokens) */
        "{\"access_token\":\"t\",\"issued_token_type\":\"" AT "\",\"token_type\":\"N_A\"}",
        "{\"access_token\":\"t\",\"issued_token_type\":\"" AT "\",\"token_type\":\"DPoP\"}",
        "{\"access_token\":\"t\",\"issued_token_type\":\"" AT "\"}",
        "{\"access_token\":\"t\",\"issued_token_type\":\"" AT "\",\"token_type\":\"Bearerx\"}",
        /* another issued_token_type than asked for, or none */
        "{\"access_token\":\"t\",\"issued_token_type\":\"urn:ietf:params:oauth:token-type:"
        "refresh_token\",\"token_type\":\"Bearer\"}",
        "{\"access_token\":\"t\",\"token_type\":\"Bearer\"}",
        /* expires_in not a positive whole number of seconds within a year */
        "{\"access_token\":\"t\",\"issued_token_type\":\"" AT
        "\",\"token_type\":\"Bearer\",\"expires_in\":0}",
        "{\"access_token\":\"t\",\"issued_token_type\":\"" AT
        "\",\"token_type\":\"Bearer\",\"expires_in\":-5}",
        "{\"access_token\":\"t\",\"issued_token_type\":\"" AT
        "\",\"token_type\":\"Bearer\",\"expires_in\":1.5}",
        "{\"access_token\":\"t\",\"issued_token_type\":\"" AT
        "\",\"token_type\":\"Bearer\",\"expires_in\":99999999999}",
        "{\"access_token\":\"t\",\"issued_token_type\":\"" AT
        "\",\"token_type\":\"Bearer\",\"expires_in\":\"12s\"}",
        "{\"access_token\":\"t\",\"issued_token_type\":\"" AT
        "\",\"token_type\":\"Bearer\",\"expires_in\":null}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse(200, bad[i], &a);
        if (rc != TOKEX_E_MALFORMED)
            fail_msg("answer %zu was not refused as malformed (%d): %s", i, rc, bad[i]);
        assert_null(a.access_token);
    }
    /* An access token longer than the bound, and a body longer than its bound. */
    size_t n = TOKEX_MAX_TOKEN + 1;
    char *big = malloc(n + 200);
    int len = snprintf(big, n + 200,
                       "{\"access_token\":\"%0*d\",\"issued_token_type\":\"" AT
                       "\",\"token_type\":\"Bearer\"}",
                       (int)n, 0);
    assert_int_equal(parse(200, big, &a), TOKEX_E_MALFORMED);
    free(big);
    char why[320];
    char *huge = calloc(1, TOKEX_MAX_RESPONSE + 2);
    memset(huge, ' ', TOKEX_MAX_RESPONSE + 1);
    assert_int_equal(
        tokex_response_parse(200, huge, TOKEX_MAX_RESPONSE + 1, AT, &a, why, sizeof why),
        TOKEX_E_MALFORMED);
    assert_non_null(strstr(why, "larger"));
    free(huge);
    (void)len;
    /* The requested type is what is held to: a JWT asked for must come back as one. */
    const char *jwt = "{\"access_token\":\"t\",\"issued_token_type\":\"" TOKEX_TYPE_JWT
                      "\",\"token_type\":\"Bearer\"}";
    assert_int_equal(tokex_response_parse(200, jwt, strlen(jwt), AT, &a, why, sizeof why),
                     TOKEX_E_MALFORMED);
    assert_int_equal(
        tokex_response_parse(200, jwt, strlen(jwt), TOKEX_TYPE_JWT, &a, why, sizeof why), TOKEX_OK);
    tokex_answer_clear(&a);
}

/* ---- configuration ------------------------------------------------------------------------- */

static char *secret_path;

static char *config(const char *inject)
{
    char *y = malloc(4096);
    snprintf(y, 4096,
             "server: {public_url: \"http://127.0.0.1:8080\"}\n"
             "identity: {mode: off}\n"
             "routes:\n"
             "  - name: ehr\n"
             "    path: /mcp\n"
             "    backends: [{name: ehr, url: \"http://127.0.0.1:9001/mcp\"}]\n"
             "    inject: %s\n",
             inject);
    return y;
}

static void test_config_ok(void **state)
{
    (void)state;
    char inject[1024];
    snprintf(inject, sizeof inject,
             "{mode: token_exchange, issuer: \"https://idp.example/realms/a\", client_id: gw, "
             "client_secret_file: \"%s\", audience: ehr-api, scope: \"patients.read x\", "
             "timeout: 2s, refresh_before: 1m, discovery_ttl: 10m}",
             secret_path);
    char *y = config(inject);
    struct gw_config *cfg = fx_load_ok(y);
    const struct gw_route_inject *ri = routing_inject_of(&cfg->routes[0]);
    assert_int_equal(ri->mode, GW_INJECT_TOKEN_EXCHANGE);
    const struct tokex_config *tc = ri->exchange;
    assert_non_null(tc);
    assert_string_equal(tc->issuer, "https://idp.example/realms/a");
    assert_null(tc->token_endpoint);
    assert_string_equal(tc->client_id, "gw");
    assert_string_equal(tc->client_secret, "s3cret value"); /* the newline trimmed */
    assert_int_equal(tc->auth_method, TOKEX_AUTH_BASIC);
    assert_string_equal(ri->audience, "ehr-api");
    assert_string_equal(tc->scope, "patients.read x");
    assert_string_equal(tc->requested_token_type, TOKEX_TYPE_ACCESS_TOKEN);
    assert_int_equal(tc->timeout_ms, 2000);
    assert_int_equal(tc->refresh_before_ms, 60000);
    assert_int_equal(tc->discovery_ttl_ms, 600000);
    gw_config_free(cfg);
    free(y);

    snprintf(inject, sizeof inject,
             "{mode: token_exchange, token_endpoint: \"http://127.0.0.1:7000/token\", "
             "client_id: gw, client_secret_file: \"%s\", auth_method: client_secret_post, "
             "resource: \"https://ehr.example/mcp\", requested_token_type: "
             "\"urn:ietf:params:oauth:token-type:jwt\"}",
             secret_path);
    y = config(inject);
    cfg = fx_load_ok(y);
    tc = routing_inject_of(&cfg->routes[0])->exchange;
    assert_string_equal(tc->token_endpoint, "http://127.0.0.1:7000/token");
    assert_int_equal(tc->auth_method, TOKEX_AUTH_POST);
    assert_string_equal(tc->resource, "https://ehr.example/mcp");
    assert_int_equal(tc->timeout_ms, 5000);
    assert_int_equal(tc->refresh_before_ms, 30000);
    gw_config_free(cfg);
    free(y);
}

static void expect(const char *body, const char *path, const char *what)
{
    char inject[1024];
    snprintf(inject, sizeof inject, "{mode: token_exchange, %s}", body);
    char *y = config(inject);
    fx_expect_error(y, NULL, path, what);
    free(y);
}

static void test_config_errors(void **state)
{
    (void)state;
    char base[600], b[900];
    snprintf(base, sizeof base, "client_id: gw, client_secret_file: \"%s\"", secret_path);
#define WITH(extra) (snprintf(b, sizeof b, "%s, %s", base, extra), b)
    expect(base, "", "token_endpoint");
    expect(WITH("issuer: \"https://a.example\", token_endpoint: \"https://a.example/t\""), "",
           "not both");
    expect(WITH("token_endpoint: \"http://idp.example/token\""), "", "https://");
    expect(WITH("token_endpoint: \"ftp://idp.example/token\""), "", "https://");
    expect(WITH("issuer: \"https://a.example/?x=1\""), "", "query");
    expect("issuer: \"https://a.example\", client_secret_file: /dev/null", "", "client_id");
    expect("issuer: \"https://a.example\", client_id: \"a b\", client_secret_file: /dev/null", "",
           "client_id");
    expect("issuer: \"https://a.example\", client_id: gw", "", "client_secret_file");
    expect("issuer: \"https://a.example\", client_id: gw, client_secret_file: /nonexistent/x", "",
           "cannot read");
    expect("issuer: \"https://a.example\", client_id: gw, client_secret_file: /dev/null", "",
           "no secret");
    expect(WITH("issuer: \"https://a.example\", auth_method: private_key_jwt"), "",
           "client_secret_basic");
    expect(WITH("issuer: \"https://a.example\", requested_token_type: "
                "\"urn:ietf:params:oauth:token-type:id_token\""),
           "", "Bearer");
    expect(WITH("issuer: \"https://a.example\", timeout: 50ms"), "", "100ms to 30s");
    expect(WITH("issuer: \"https://a.example\", timeout: 1m"), "", "100ms to 30s");
    expect(WITH("issuer: \"https://a.example\", refresh_before: 1h"), "", "0s to 10m");
    expect(WITH("issuer: \"https://a.example\", resource: \"not a uri\""), "", "absolute URI");
    expect(WITH("issuer: \"https://a.example\", resource: \"https://a.example/#f\""), "",
           "absolute URI");
    expect(WITH("issuer: \"https://a.example\", scope: \"a\\\"b\""), "", "scopes");
    expect(WITH("issuer: \"https://a.example\", unknown_key: 1"), "", "unknown_key");
#undef WITH
    /* The mode's settings on another mode would do nothing: refused. */
    char *y = config("{mode: jwt, client_id: gw}");
    fx_expect_error(y, NULL, "", "setting of mode token_exchange");
    free(y);
    y = config("{mode: headers, issuer: \"https://a.example\"}");
    fx_expect_error(y, NULL, "", "setting of mode token_exchange");
    free(y);
    /* The short form cannot carry the settings the mode needs. */
    y = config("token_exchange");
    fx_expect_error(y, NULL, "", "needs a map");
    free(y);
}

/* ---- the request side ---------------------------------------------------------------------- */

static void test_apply_needs_identity(void **state)
{
    (void)state;
    char inject[1024];
    snprintf(inject, sizeof inject,
             "{mode: token_exchange, token_endpoint: \"http://127.0.0.1:9/token\", client_id: gw, "
             "client_secret_file: \"%s\"}",
             secret_path);
    char *y = config(inject);
    struct gw_config *cfg = fx_load_ok(y);
    struct gw_request *req = fx_req_on(cfg, "/mcp");
    const struct gw_route_inject *ri = routing_inject_of(req->route);
    struct gw_decision d = {0};
    /* Unverified (identity off, anonymous): nothing to exchange, denied. */
    assert_int_equal(tokex_apply(req, ri, req->backend, &d), GW_DENY);
    assert_string_equal(d.reason_code, "routing.no_identity");
    /* Verified but no bearer header to exchange (cannot happen after identity): denied. */
    fx_identity(&req->identity, "alice", NULL, NULL, fx_now() + 300);
    req->identity.verified = 1;
    snprintf(req->identity.token_hash, sizeof req->identity.token_hash, "%064d", 7);
    memset(&d, 0, sizeof d);
    assert_int_equal(tokex_apply(req, ri, req->backend, &d), GW_DENY);
    assert_string_equal(d.reason_code, "routing.no_identity");
    assert_int_equal(req->n_upstream_headers, 0);
    gw_request_free(req);
    gw_config_free(cfg);
    free(y);
}

static int setup(void **state)
{
    (void)state;
    secret_path = fx_write_file("gw-secret", "s3cret value\r\n");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(secret_path);
    tokex_stop();
    fx_rm_tmpdir();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_ok),        cmocka_unit_test(test_answer_refused),
        cmocka_unit_test(test_answer_malformed), cmocka_unit_test(test_config_ok),
        cmocka_unit_test(test_config_errors),    cmocka_unit_test(test_apply_needs_identity),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
