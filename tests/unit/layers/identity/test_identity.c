/* identity layer: configuration, the check() slot end to end, caching, sessions, metadata, CLI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "fixtures.h"
#include "layers/identity/claims.h"
#include "layers/identity/keystore.h"
#include "lib/digest.h"
#include "layers/identity/token_cache.h"
#include "layers/layer.h"
#include "mcp/session.h"

static char *keys_path;

static const char *file_config_yaml(void)
{
    static char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "identity:\n"
             "  issuers:\n"
             "    - issuer: \"%s\"\n"
             "      audiences: [\"%s\"]\n"
             "      jwks_file: \"%s\"\n"
             "      algorithms: [RS256, PS256, ES256, ES384, EdDSA]\n"
             "  scopes_supported: [tools.read, tools.write]\n"
             "  authorization_servers: [\"https://idp.test/\"]\n",
             FX_ISSUER, FX_AUD, keys_path);
    return yaml;
}

static struct fx_config *start_file_config(void)
{
    struct cfg_error err;
    struct fx_config *fx = fx_config_yaml(file_config_yaml(), &err);
    if (!fx)
        fail_msg("config: %s", err.msg);
    assert_int_equal(identity_start(identity_config_of(&fx->cfg)), 0);
    return fx;
}

static int run_check(struct fx_request *r)
{
    return identity_layer.check(r->req, &r->req->decision[GW_STAGE_IDENTITY]);
}

static struct gw_decision *decision(struct fx_request *r)
{
    return &r->req->decision[GW_STAGE_IDENTITY];
}

static char *bearer(const char *token)
{
    size_t n = strlen(token) + 8;
    char *h = malloc(n);
    snprintf(h, n, "Bearer %s", token);
    return h;
}

/* ---- configuration ------------------------------------------------------------------------ */

static void test_config_defaults(void **state)
{
    (void)state;
    struct cfg_error err;
    struct fx_config *fx = fx_config_yaml("identity:\n  issuers:\n    - issuer: https://a/\n"
                                          "      audiences: [x]\n"
                                          "      jwks_uri: https://a/jwks\n",
                                          &err);
    assert_non_null(fx);
    const struct identity_config *ic = identity_config_of(&fx->cfg);
    assert_int_equal(ic->mode, IDENTITY_MODE_ON);
    assert_int_equal(ic->n_issuers, 1);
    const struct identity_issuer_config *is = &ic->issuers[0];
    assert_int_equal(is->algorithms,
                     JWT_ALG_BIT(JWT_RS256) | JWT_ALG_BIT(JWT_ES256) | JWT_ALG_BIT(JWT_EDDSA));
    assert_int_equal(is->leeway_ms, 60000);
    assert_int_equal(is->jwks_ttl_ms, 600000);
    assert_int_equal(is->jwks_refetch_interval_ms, 30000);
    assert_int_equal(is->jwks_timeout_ms, 5000);
    assert_string_equal(ic->claims.subject[0], "sub");
    assert_string_equal(ic->claims.tenant[0], "org_id");
    assert_string_equal(ic->claims.roles[1], "realm_access.roles");
    assert_string_equal(ic->claims.scopes[1], "scp");
    assert_string_equal(ic->claims.client[1], "client_id");
    assert_string_equal(ic->authorization_servers[0], "https://a/");
    assert_null(ic->scopes_supported[0]);
    assert_int_equal(ic->token_cache_entries, 10000);
    fx_config_free(fx);

    /* No identity section: no config at all (the layer then denies). */
    fx = fx_config_yaml("server: {}\n", &err);
    assert_non_null(fx);
    assert_null(identity_config_of(&fx->cfg));
    fx_config_free(fx);
    /* mode: off needs no issuers. */
    fx = fx_config_yaml("identity: {mode: off}\n", &err);
    assert_non_null(fx);
    assert_int_equal(identity_config_of(&fx->cfg)->mode, IDENTITY_MODE_OFF);
    fx_config_free(fx);
}

static void test_config_errors(void **state)
{
    (void)state;
    const char *bad[] = {
        "identity: {}\n",
        "identity: {mode: maybe, issuers: []}\n",
        "identity: {bogus: 1}\n",
        "identity:\n  issuers:\n    - {issuer: https://a/, audiences: [x], jwks_uri: "
        "https://a/j, algorithms: [HS256]}\n",
        "identity:\n  issuers:\n    - {issuer: https://a/, audiences: [x], jwks_uri: "
        "https://a/j, algorithms: [none]}\n",
        /* Neither jwks_uri nor jwks_file: discovery, which needs an https issuer. */
        "identity:\n  issuers:\n    - {issuer: http://a/, audiences: [x]}\n",
        "identity:\n  issuers:\n    - {issuer: \"https://a/?tenant=1\", audiences: [x]}\n",
        "identity:\n  issuers:\n    - {issuer: not-a-url, audiences: [x]}\n",
        "identity:\n  issuers:\n    - {issuer: https://a/, audiences: [x], discovery_ttl: 1s}\n",
        "identity:\n  issuers:\n    - {issuer: https://a/, audiences: [x], jwks_uri: "
        "https://a/j, jwks_file: /k}\n",
        "identity:\n  issuers:\n    - {issuer: https://a/, jwks_uri: https://a/j}\n",
        "identity:\n  issuers:\n    - {issuer: https://a/, audiences: [], jwks_uri: "
        "https://a/j}\n",
        "identity:\n  issuers:\n    - {issuer: https://a/, audiences: [x], jwks_uri: "
        "http://idp.example.com/j}\n",
        "identity:\n  issuers:\n    - {issuer: https://a/, audiences: [x], jwks_uri: "
        "https://a/j, leeway: 1h}\n",
        "identity:\n  issuers:\n    - {issuer: https://a/, audiences: [x], jwks_uri: "
        "https://a/j, color: red}\n",
        "identity:\n  issuers:\n    - {issuer: https://a/, audiences: [x], jwks_uri: https://a/j}\n"
        "    - {issuer: https://a/, audiences: [y], jwks_uri: https://a/k}\n",
        "identity:\n  issuers:\n    - {issuer: https://a/, audiences: [x], jwks_uri: https://a/j}\n"
        "  claims: {subject: sub, groups: g}\n",
        "identity:\n  issuers:\n    - {issuer: https://a/, audiences: [x], jwks_uri: https://a/j}\n"
        "  token_cache: {entries: -1}\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cfg_error err = {{0}};
        struct fx_config *fx = fx_config_yaml(bad[i], &err);
        if (fx)
            fail_msg("config %zu accepted:\n%s", i, bad[i]);
        assert_non_null(strstr(err.msg, "test.yaml:"));
    }
    /* Only the issuer: its keys are discovered, and jwks_uri/jwks_file stay unset. */
    struct cfg_error err;
    struct fx_config *disc = fx_config_yaml(
        "identity:\n  issuers:\n    - {issuer: https://a/realm, audiences: [x]}\n", &err);
    if (!disc)
        fail_msg("discovery config refused: %s", err.msg);
    const struct identity_issuer_config *dic = &identity_config_of(&disc->cfg)->issuers[0];
    assert_int_equal(dic->discover, 1);
    assert_null(dic->jwks_uri);
    assert_null(dic->jwks_file);
    assert_int_equal(dic->discovery_ttl_ms, 3600 * 1000);
    fx_config_free(disc);
    /* Unknown key errors name the path. */
    assert_null(fx_config_yaml("identity:\n  issuers:\n    - {issuer: https://a/, audiences: [x], "
                               "jwks_uri: https://a/j, color: red}\n",
                               &err));
    assert_non_null(strstr(err.msg, "identity.issuers[0].color"));
}

/* ---- the check --------------------------------------------------------------------------- */

static void test_fail_closed_without_config(void **state)
{
    (void)state;
    struct cfg_error err;
    struct fx_config *fx = fx_config_yaml("server: {}\n", &err);
    char *tok = fx_token(FX_RSA, NULL);
    char *h = bearer(tok);
    struct fx_request *r = fx_request(fx, NULL, "Authorization", h, NULL);
    assert_int_equal(run_check(r), GW_DENY);
    assert_int_equal(decision(r)->http_status, 500);
    assert_string_equal(decision(r)->reason_code, "identity.not_configured");
    assert_false(r->req->identity.verified);
    fx_request_free(r);
    free(h);
    free(tok);
    fx_config_free(fx);

    fx = fx_config_yaml("identity: {mode: off}\n", &err);
    r = fx_request(fx, NULL, NULL);
    assert_int_equal(run_check(r), GW_PASS);
    assert_false(r->req->identity.verified);
    assert_string_equal(r->req->identity.subject, "anonymous");
    fx_request_free(r);
    fx_config_free(fx);
}

static void test_missing_token_challenge(void **state)
{
    (void)state;
    struct fx_config *fx = start_file_config();
    struct fx_request *r = fx_request(fx, NULL, "Accept", "application/json", NULL);
    assert_int_equal(run_check(r), GW_DENY);
    struct gw_decision *d = decision(r);
    assert_int_equal(d->http_status, 401);
    assert_int_equal(d->jsonrpc_code, IDENTITY_JSONRPC_UNAUTHORIZED);
    assert_string_equal(d->reason_code, "identity.missing_token");
    assert_string_equal(r->req->www_authenticate,
                        "Bearer resource_metadata=\"http://127.0.0.1:8080/.well-known/"
                        "oauth-protected-resource/mcp\", scope=\"tools.read tools.write\"");
    assert_null(strstr(r->req->www_authenticate, "error="));
    fx_request_free(r);

    /* Another scheme counts as no bearer token: same bare challenge. */
    r = fx_request(fx, NULL, "Authorization", "Basic YWxpY2U6c2VjcmV0", NULL);
    assert_int_equal(run_check(r), GW_DENY);
    assert_int_equal(decision(r)->http_status, 401);
    assert_string_equal(decision(r)->reason_code, "identity.bad_scheme");
    assert_null(strstr(r->req->www_authenticate, "error="));
    fx_request_free(r);
    r = fx_request(fx, NULL, "Authorization", "Bearer", NULL);
    assert_int_equal(run_check(r), GW_DENY);
    assert_non_null(strstr(r->req->www_authenticate, "error=\"invalid_token\""));
    fx_request_free(r);
    identity_stop();
    fx_config_free(fx);
}

static void test_valid_tokens_every_key_type(void **state)
{
    (void)state;
    struct fx_config *fx = start_file_config();
    enum fx_key keys[] = {FX_RSA, FX_P256, FX_P384, FX_ED25519};
    for (size_t i = 0; i < 4; i++) {
        char *tok = fx_token(keys[i], NULL);
        char *h = bearer(tok);
        struct fx_request *r = fx_request(fx, NULL, "Authorization", h, NULL);
        if (run_check(r) != GW_PASS)
            fail_msg("key %zu: %s", i, decision(r)->reason_code);
        struct gw_identity *id = &r->req->identity;
        assert_true(id->verified);
        assert_string_equal(id->subject, "alice");
        assert_string_equal(id->issuer, FX_ISSUER);
        assert_true(id->expires_at > fx_now());
        /* The token hash is recorded; the token itself appears nowhere in the identity. */
        uint8_t hash[32];
        char hex[65];
        gw_sha256(tok, strlen(tok), hash);
        gw_hex(hash, 32, hex);
        assert_string_equal(id->token_hash, hex);
        fx_request_free(r);
        free(h);
        free(tok);
    }
    /* PS256 allowed by this issuer; RS384 is not in its algorithms list. */
    char *ps = fx_token_ex(FX_RSA, JWT_PS256, "rsa-1", NULL);
    char *rs384 = fx_token_ex(FX_RSA, JWT_RS384, "rsa-1", NULL);
    char *h1 = bearer(ps), *h2 = bearer(rs384);
    struct fx_request *r = fx_request(fx, NULL, "authorization", h1, NULL);
    assert_int_equal(run_check(r), GW_PASS);
    fx_request_free(r);
    r = fx_request(fx, NULL, "authorization", h2, NULL);
    assert_int_equal(run_check(r), GW_DENY);
    assert_string_equal(decision(r)->reason_code, "identity.bad_alg");
    fx_request_free(r);
    free(h1);
    free(h2);
    free(ps);
    free(rs384);
    identity_stop();
    fx_config_free(fx);
}

static void expect_invalid(struct fx_config *fx, const char *header_value, const char *code)
{
    struct fx_request *r = fx_request(fx, NULL, "Authorization", header_value, NULL);
    assert_int_equal(run_check(r), GW_DENY);
    struct gw_decision *d = decision(r);
    if (strcmp(d->reason_code, code) != 0)
        fail_msg("want %s, got %s", code, d->reason_code);
    assert_int_equal(d->http_status, 401);
    assert_int_equal(d->jsonrpc_code, IDENTITY_JSONRPC_UNAUTHORIZED);
    /* The client sees one text whatever failed. */
    assert_string_equal(d->reason, "The access token is missing, invalid or expired.");
    assert_non_null(strstr(r->req->www_authenticate, "error=\"invalid_token\""));
    assert_non_null(strstr(r->req->www_authenticate, "error_description=\"The access token is "
                                                     "missing, invalid or expired.\""));
    assert_false(r->req->identity.verified);
    assert_null(r->req->identity.subject);
    fx_request_free(r);
}

static void expect_token_invalid(struct fx_config *fx, const char *token, const char *code)
{
    char *h = bearer(token);
    expect_invalid(fx, h, code);
    free(h);
}

static void test_refusals(void **state)
{
    (void)state;
    struct fx_config *fx = start_file_config();
    char extra[128];
    struct {
        const char *extra;
        const char *code;
    } claims[] = {
        {"{\"exp\":1000}", "identity.expired"},
        {"{\"nbf\":99999999999}", "identity.not_yet_valid"},
        {"{\"iss\":\"https://evil.test/\"}", "identity.bad_issuer"},
        {"{\"aud\":\"http://127.0.0.1:8080/other\"}", "identity.bad_audience"},
        {"{\"aud\":null}", "identity.bad_audience"},
        {"{\"exp\":null}", "identity.missing_exp"},
        {"{\"sub\":null}", "identity.bad_claims"},
        {"{\"sub\":\"a\\u0001b\"}", "identity.bad_claims"},
    };
    for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
        char *tok = fx_token(FX_ED25519, claims[i].extra);
        expect_token_invalid(fx, tok, claims[i].code);
        free(tok);
    }
    /* Unknown kid (a jwks_file issuer never refetches). */
    char *tok = fx_token_ex(FX_RSA_B, JWT_RS256, "rsa-9", NULL);
    expect_token_invalid(fx, tok, "identity.unknown_kid");
    free(tok);
    /* A known kid, signed by another key. */
    tok = fx_token_ex(FX_RSA_B, JWT_RS256, "rsa-1", NULL);
    expect_token_invalid(fx, tok, "identity.bad_signature");
    free(tok);
    /* jku / x5u / jwk pointing at the attacker's key are never followed. */
    json_t *attacker_jwk = jwk_public_json(fx_key(FX_RSA_B), "evil", NULL);
    char *jwk_text = json_dumps(attacker_jwk, JSON_COMPACT);
    char header[4096];
    snprintf(extra, sizeof extra,
             "{\"exp\":%lld,\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"mallory\"}",
             (long long)fx_now() + 300, FX_ISSUER, FX_AUD);
    const char *kids[] = {"rsa-1", "evil"};
    const char *codes[] = {"identity.bad_signature", "identity.unknown_kid"};
    for (int k = 0; k < 2; k++) {
        snprintf(header, sizeof header,
                 "{\"alg\":\"RS256\",\"kid\":\"%s\",\"jku\":\"https://evil.test/jwks\","
                 "\"x5u\":\"https://evil.test/cert\",\"jwk\":%s}",
                 kids[k], jwk_text);
        tok = fx_sign_raw(fx_key(FX_RSA_B), JWT_RS256, header, extra);
        expect_token_invalid(fx, tok, codes[k]);
        free(tok);
    }
    free(jwk_text);
    json_decref(attacker_jwk);
    /* Malformed: padding, '+', not three parts, over 8 KiB. */
    tok = fx_token(FX_ED25519, NULL);
    size_t len = strlen(tok);
    char *mod = malloc(len + 3);
    snprintf(mod, len + 3, "%s==", tok);
    expect_token_invalid(fx, mod, "identity.malformed");
    memcpy(mod, tok, len + 1);
    strchr(mod, '.')[2] = '+';
    expect_token_invalid(fx, mod, "identity.malformed");
    free(mod);
    free(tok);
    expect_token_invalid(fx, "abc.def", "identity.malformed");
    char *huge = malloc(JWT_MAX_TOKEN + 100);
    memset(huge, 'A', JWT_MAX_TOKEN + 99);
    huge[JWT_MAX_TOKEN + 99] = '\0';
    expect_token_invalid(fx, huge, "identity.token_too_large");
    free(huge);
    identity_stop();
    fx_config_free(fx);
}

static void test_several_issuers(void **state)
{
    (void)state;
    /* Two issuers, each with its own keys, audiences and algorithms. */
    int a_keys[] = {FX_ED25519, -1}, b_keys[] = {FX_RSA, -1};
    char *a_text = fx_jwks(a_keys), *b_text = fx_jwks(b_keys);
    char *a_path = fx_write_file("a.json", a_text), *b_path = fx_write_file("b.json", b_text);
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "identity:\n  issuers:\n"
             "    - {issuer: \"%s\", audiences: [\"%s\"], jwks_file: \"%s\", algorithms: [EdDSA]}\n"
             "    - {issuer: \"https://corp.test/\", audiences: [\"urn:corp\"], jwks_file: \"%s\","
             " algorithms: [RS256]}\n",
             FX_ISSUER, FX_AUD, a_path, b_path);
    struct cfg_error err;
    struct fx_config *fx = fx_config_yaml(yaml, &err);
    if (!fx)
        fail_msg("%s", err.msg);
    assert_int_equal(identity_start(identity_config_of(&fx->cfg)), 0);
    struct {
        enum fx_key key;
        const char *extra;
        const char *code; /* NULL: pass */
    } cases[] = {
        {FX_ED25519, NULL, NULL},
        {FX_RSA, "{\"iss\":\"https://corp.test/\",\"aud\":\"urn:corp\"}", NULL},
        /* Right issuer, the other issuer's audience. */
        {FX_RSA, "{\"iss\":\"https://corp.test/\"}", "identity.bad_audience"},
        /* A key of one issuer does not vouch for the other. */
        {FX_RSA, NULL, "identity.bad_alg"},
        {FX_ED25519, "{\"iss\":\"https://corp.test/\",\"aud\":\"urn:corp\"}", "identity.bad_alg"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *tok = fx_token(cases[i].key, cases[i].extra);
        char *h = bearer(tok);
        struct fx_request *r = fx_request(fx, NULL, "Authorization", h, NULL);
        int v = run_check(r);
        if (!cases[i].code) {
            if (v != GW_PASS)
                fail_msg("case %zu refused: %s", i, decision(r)->reason_code);
        } else {
            assert_int_equal(v, GW_DENY);
            if (strcmp(decision(r)->reason_code, cases[i].code) != 0)
                fail_msg("case %zu: got %s want %s", i, decision(r)->reason_code, cases[i].code);
        }
        fx_request_free(r);
        free(h);
        free(tok);
    }
    identity_stop();
    fx_config_free(fx);
    free(a_text);
    free(b_text);
    free(a_path);
    free(b_path);
}

static void test_request_level_refusals(void **state)
{
    (void)state;
    struct fx_config *fx = start_file_config();
    char *tok = fx_token(FX_RSA, NULL);
    char *h = bearer(tok);
    /* Token in the query string: refused even with a good header (RFC 6750 §2.3). */
    char query[9000];
    snprintf(query, sizeof query, "x=1&access_token=%s", tok);
    const char *queries[] = {query, "access_token=abc", "a=b;access%5Ftoken=abc",
                             "%61ccess_token=1"};
    for (size_t i = 0; i < 4; i++) {
        struct fx_request *r = fx_request(fx, queries[i], "Authorization", h, NULL);
        assert_int_equal(run_check(r), GW_DENY);
        assert_int_equal(decision(r)->http_status, 400);
        assert_string_equal(decision(r)->reason_code, "identity.token_in_query");
        assert_non_null(strstr(r->req->www_authenticate, "error=\"invalid_request\""));
        fx_request_free(r);
    }
    /* Harmless look-alikes pass. */
    struct fx_request *r = fx_request(fx, "access_tokens=1&my_access_token=2&x=access_token",
                                      "Authorization", h, NULL);
    assert_int_equal(run_check(r), GW_PASS);
    fx_request_free(r);
    /* Two Authorization headers. */
    r = fx_request(fx, NULL, "Authorization", h, "AUTHORIZATION", h, NULL);
    assert_int_equal(run_check(r), GW_DENY);
    assert_int_equal(decision(r)->http_status, 400);
    assert_string_equal(decision(r)->reason_code, "identity.multiple_authorization");
    fx_request_free(r);
    /* Scheme is case-insensitive; extra spaces are tolerated. */
    char lower[9000];
    snprintf(lower, sizeof lower, "bearer   %s  ", tok);
    r = fx_request(fx, NULL, "Authorization", lower, NULL);
    assert_int_equal(run_check(r), GW_PASS);
    fx_request_free(r);
    snprintf(lower, sizeof lower, "BEARER %s", tok);
    r = fx_request(fx, NULL, "Authorization", lower, NULL);
    assert_int_equal(run_check(r), GW_PASS);
    fx_request_free(r);
    free(h);
    free(tok);
    identity_stop();
    fx_config_free(fx);
}

static void test_claim_mapping(void **state)
{
    (void)state;
    struct cfg_error err;
    struct fx_config *fx = fx_config_yaml(file_config_yaml(), &err);
    const struct identity_claims_config *cc = &identity_config_of(&fx->cfg)->claims;
    json_t *p = json_loads("{\"sub\":\"alice\",\"org_id\":\"acme\",\"azp\":\"claude\","
                           "\"roles\":[\"doctor\"],\"realm_access\":{\"roles\":[\"nurse\","
                           "\"doctor\"]},\"scope\":\"  tools.read  patients.read \","
                           "\"scp\":[\"tools.write\",\"tools.read\"]}",
                           0, NULL);
    struct gw_identity id;
    assert_int_equal(claims_map(cc, p, FX_ISSUER, 42, &id), 0);
    assert_string_equal(id.subject, "alice");
    assert_string_equal(id.tenant, "acme");
    assert_string_equal(id.client_id, "claude");
    assert_int_equal(id.n_roles, 2);
    assert_string_equal(id.roles[0], "doctor");
    assert_string_equal(id.roles[1], "nurse");
    assert_null(id.roles[2]);
    assert_int_equal(id.n_scopes, 3);
    assert_string_equal(id.scopes[0], "tools.read");
    assert_string_equal(id.scopes[1], "patients.read");
    assert_string_equal(id.scopes[2], "tools.write");
    assert_int_equal(id.expires_at, 42);
    gw_identity_clear(&id);
    json_decref(p);

    /* client_id when azp is absent; numeric subject; empty lists are still arrays. */
    p = json_loads("{\"sub\":12345,\"client_id\":\"cursor\"}", 0, NULL);
    assert_int_equal(claims_map(cc, p, FX_ISSUER, 1, &id), 0);
    assert_string_equal(id.subject, "12345");
    assert_string_equal(id.client_id, "cursor");
    assert_null(id.tenant);
    assert_non_null(id.roles);
    assert_null(id.roles[0]);
    assert_int_equal(id.n_scopes, 0);
    gw_identity_clear(&id);
    json_decref(p);

    /* Refused: wrong types, too many roles, control characters. */
    const char *bad[] = {"{\"sub\":\"a\",\"roles\":\"doctor\",\"scp\":5}", "{\"sub\":[\"a\"]}",
                         "{\"sub\":\"a\",\"roles\":[1]}", "{\"sub\":\"a\",\"azp\":7}",
                         "{\"sub\":\"a\\nb\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = json_loads(bad[i], 0, NULL);
        assert_non_null(p);
        if (claims_map(cc, p, FX_ISSUER, 1, &id) == 0)
            fail_msg("accepted %s", bad[i]);
        assert_null(id.subject);
        json_decref(p);
    }
    json_t *many = json_array();
    for (int i = 0; i <= CLAIMS_MAX_VALUES; i++) {
        char r[16];
        snprintf(r, sizeof r, "r%d", i);
        json_array_append_new(many, json_string(r));
    }
    p = json_pack("{s:s,s:o}", "sub", "a", "roles", many);
    assert_int_not_equal(claims_map(cc, p, FX_ISSUER, 1, &id), 0);
    json_decref(p);
    fx_config_free(fx);

    /* Configured paths, including a namespaced claim whose name contains dots. */
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "identity:\n  issuers:\n    - {issuer: \"%s\", audiences: [a], jwks_file: /x}\n"
             "  claims:\n    subject: [email, sub]\n    tenant: tenant.id\n"
             "    roles: [\"https://example.com/roles\"]\n    scopes: []\n    client: []\n",
             FX_ISSUER);
    fx = fx_config_yaml(yaml, &err);
    if (!fx)
        fail_msg("%s", err.msg);
    cc = &identity_config_of(&fx->cfg)->claims;
    p = json_loads("{\"sub\":\"s\",\"email\":\"a@example.com\",\"tenant\":{\"id\":\"t1\"},"
                   "\"https://example.com/roles\":[\"admin\"],\"scope\":\"x\",\"azp\":\"c\"}",
                   0, NULL);
    assert_int_equal(claims_map(cc, p, FX_ISSUER, 1, &id), 0);
    assert_string_equal(id.subject, "a@example.com");
    assert_string_equal(id.tenant, "t1");
    assert_string_equal(id.roles[0], "admin");
    assert_int_equal(id.n_scopes, 0);
    assert_null(id.client_id);
    gw_identity_clear(&id);
    json_decref(p);
    fx_config_free(fx);
}

/* ---- the token cache ---------------------------------------------------------------------- */

static void make_identity(struct gw_identity *id, const char *sub, int64_t exp)
{
    memset(id, 0, sizeof *id);
    id->verified = 1;
    id->subject = strdup(sub);
    id->issuer = strdup(FX_ISSUER);
    id->roles = calloc(2, sizeof(char *));
    id->roles[0] = strdup("doctor");
    id->n_roles = 1;
    id->scopes = calloc(1, sizeof(char *));
    id->expires_at = exp;
}

static void key_for(int i, uint8_t key[32])
{
    char s[32];
    snprintf(s, sizeof s, "token-%d", i);
    gw_sha256(s, strlen(s), key);
}

static void test_cache_hit_expiry_eviction(void **state)
{
    (void)state;
    struct token_cache *c = token_cache_new(TOKEN_CACHE_WAYS); /* one set */
    uint8_t k[32];
    struct gw_identity id, out;
    key_for(0, k);
    make_identity(&id, "alice", 1000);
    assert_int_equal(token_cache_put(c, k, &id), 0);
    gw_identity_clear(&id);
    assert_int_equal(token_cache_get(c, k, 999, &out), 1);
    assert_string_equal(out.subject, "alice");
    assert_string_equal(out.roles[0], "doctor");
    assert_int_equal(out.n_roles, 1);
    gw_identity_clear(&out);
    /* Never served at or after exp; the expired entry is dropped. */
    assert_int_equal(token_cache_get(c, k, 1000, &out), 0);
    assert_int_equal(token_cache_count(c), 0);
    assert_int_equal(token_cache_get(c, k, 10, &out), 0);

    /* Eviction: one set of 8 ways holds 8; the least recently used goes first. */
    for (int i = 0; i < TOKEN_CACHE_WAYS; i++) {
        key_for(i, k);
        make_identity(&id, "u", 5000);
        token_cache_put(c, k, &id);
        gw_identity_clear(&id);
    }
    key_for(0, k);
    assert_int_equal(token_cache_get(c, k, 1, &out), 1); /* 0 is now recently used */
    gw_identity_clear(&out);
    key_for(100, k);
    make_identity(&id, "new", 5000);
    token_cache_put(c, k, &id);
    gw_identity_clear(&id);
    assert_int_equal(token_cache_count(c), TOKEN_CACHE_WAYS);
    key_for(1, k);
    assert_int_equal(token_cache_get(c, k, 1, &out), 0); /* 1 was the LRU */
    key_for(0, k);
    assert_int_equal(token_cache_get(c, k, 1, &out), 1);
    gw_identity_clear(&out);
    key_for(100, k);
    assert_int_equal(token_cache_get(c, k, 1, &out), 1);
    assert_string_equal(out.subject, "new");
    gw_identity_clear(&out);
    token_cache_free(c);
    assert_null(token_cache_new(0));
}

struct cache_worker {
    struct token_cache *c;
    int base;
    int errors;
};

static void *cache_thread(void *arg)
{
    struct cache_worker *w = arg;
    for (int round = 0; round < 2000; round++) {
        int i = (round * 7 + w->base) % 300;
        uint8_t k[32];
        key_for(i, k);
        char sub[32];
        snprintf(sub, sizeof sub, "user-%d", i);
        struct gw_identity out;
        int hit = token_cache_get(w->c, k, 1, &out);
        if (hit == 1) {
            if (strcmp(out.subject, sub) != 0)
                w->errors++;
            gw_identity_clear(&out);
        } else {
            struct gw_identity id;
            make_identity(&id, sub, 100);
            token_cache_put(w->c, k, &id);
            gw_identity_clear(&id);
        }
    }
    return NULL;
}

static void test_cache_concurrent(void **state)
{
    (void)state;
    struct token_cache *c = token_cache_new(128);
    pthread_t t[8];
    struct cache_worker w[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (struct cache_worker){.c = c, .base = i * 37};
        pthread_create(&t[i], NULL, cache_thread, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].errors, 0);
    }
    assert_true(token_cache_count(c) <= 128);
    assert_true(token_cache_count(c) > 0);
    token_cache_free(c);
}

static void test_layer_uses_cache(void **state)
{
    (void)state;
    struct fx_config *fx = start_file_config();
    char *tok = fx_token(FX_RSA, NULL);
    char *h = bearer(tok);
    struct fx_request *r = fx_request(fx, NULL, "Authorization", h, NULL);
    assert_int_equal(run_check(r), GW_PASS);
    assert_string_equal(r->req->identity.subject, "alice");
    /* Replace the cached identity: a second check that answers with it did not verify again. */
    struct token_cache *c = identity_cache_of(identity_config_of(&fx->cfg));
    assert_non_null(c);
    uint8_t k[GW_SHA256_LEN];
    gw_sha256(tok, strlen(tok), k);
    free(r->req->identity.subject);
    r->req->identity.subject = strdup("from-the-cache");
    assert_int_equal(token_cache_put(c, k, &r->req->identity), 0);
    fx_request_free(r);
    r = fx_request(fx, NULL, "Authorization", h, NULL);
    assert_int_equal(run_check(r), GW_PASS);
    assert_string_equal(r->req->identity.subject, "from-the-cache");
    fx_request_free(r);
    free(h);
    free(tok);
    identity_stop();
    fx_config_free(fx);
}

/* ---- sessions ----------------------------------------------------------------------------- */

static void test_session_owner(void **state)
{
    (void)state;
    struct fx_config *fx = start_file_config();
    char bob[MCP_SESSION_ID_LEN + 1], alice[MCP_SESSION_ID_LEN + 1], other[MCP_SESSION_ID_LEN + 1];
    assert_int_equal(mcp_session_create(FX_ISSUER, "bob", "mcp", 1, "b-1", bob, NULL), 0);
    assert_int_equal(mcp_session_create(FX_ISSUER, "alice", "mcp", 1, "b-2", alice, NULL), 0);
    assert_int_equal(mcp_session_create(FX_ISSUER, "alice", "other", 1, "b-3", other, NULL), 0);
    char *tok = fx_token(FX_ED25519, NULL); /* alice */
    char *h = bearer(tok);
    /* Bob's session, a session of another route, one toolgate never issued, one deleted: all
     * the same unknown session, whatever the reason. */
    char deleted[MCP_SESSION_ID_LEN + 1];
    assert_int_equal(mcp_session_create(FX_ISSUER, "alice", "mcp", 1, NULL, deleted, NULL), 0);
    mcp_session_delete(deleted, NULL);
    const char *unknown[] = {bob, other, "sess-never-issued", deleted,
                             "0123456789012345678901234567890123456789012"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        for (int pass = 0; pass < 2; pass++) { /* the second from the token cache */
            struct fx_request *r = fx_request(fx, NULL, "Authorization", h, NULL);
            r->req->route = &fx->route;
            r->req->session_id = strdup(unknown[i]);
            assert_int_equal(run_check(r), GW_DENY);
            assert_int_equal(decision(r)->http_status, 404);
            assert_int_equal(decision(r)->jsonrpc_code, IDENTITY_JSONRPC_UNAUTHORIZED);
            assert_string_equal(decision(r)->reason_code, "identity.unknown_session");
            assert_false(r->req->identity.verified);
            assert_false(r->req->session_valid);
            fx_request_free(r);
        }
    }
    /* Her own session on this route: found, with the backend's id it stands for. */
    struct fx_request *r = fx_request(fx, NULL, "Authorization", h, NULL);
    r->req->route = &fx->route;
    r->req->session_id = strdup(alice);
    assert_int_equal(run_check(r), GW_PASS);
    assert_true(r->req->session_valid);
    assert_string_equal(r->req->session.backends[0], "b-2");
    fx_request_free(r);
    /* No session id at all: nothing to check (initialize, stateless backends). */
    r = fx_request(fx, NULL, "Authorization", h, NULL);
    assert_int_equal(run_check(r), GW_PASS);
    assert_false(r->req->session_valid);
    fx_request_free(r);
    free(h);
    free(tok);
    identity_stop();
    fx_config_free(fx);
}

/* ---- metadata ----------------------------------------------------------------------------- */

static void test_metadata(void **state)
{
    (void)state;
    struct cfg_error err;
    struct fx_config *fx = fx_config_yaml(file_config_yaml(), &err);
    struct gw_buf out = {0};
    assert_int_equal(identity_metadata_json(&fx->cfg, "/mcp", &out), 0);
    assert_string_equal(out.data, "{\"resource\":\"http://127.0.0.1:8080/mcp\","
                                  "\"authorization_servers\":[\"https://idp.test/\"],"
                                  "\"scopes_supported\":[\"tools.read\",\"tools.write\"],"
                                  "\"bearer_methods_supported\":[\"header\"]}");
    gw_buf_reset(&out);
    free(fx->cfg.server.public_url);
    fx->cfg.server.public_url = strdup("https://gw.example.com/");
    assert_int_equal(identity_metadata_json(&fx->cfg, NULL, &out), 0);
    json_t *j = json_loads(out.data, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "resource")),
                        "https://gw.example.com");
    json_decref(j);
    gw_buf_free(&out);
    identity_config_free(fx->cfg.modules[GW_STAGE_IDENTITY]);
    fx->cfg.modules[GW_STAGE_IDENTITY] = NULL;
    assert_int_equal(identity_metadata_json(&fx->cfg, "/mcp", &out), -1);
    gw_buf_free(&out);
    fx_config_free(fx);
}

/* ---- asynchronous refetch through the pipeline -------------------------------------------- */

struct posted {
    void (*fn)(void *);
    void *arg;
};
static struct posted queue[4];
static int queued;
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;

/* The test thread plays the worker: posts are queued and run by run_posted(). */
static int test_post(void *worker, void (*fn)(void *), void *arg)
{
    (void)worker;
    pthread_mutex_lock(&queue_lock);
    queue[queued++] = (struct posted){fn, arg};
    pthread_mutex_unlock(&queue_lock);
    return 0;
}

static int run_posted(int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 5) {
        pthread_mutex_lock(&queue_lock);
        int n = queued;
        struct posted p = queue[0];
        if (n) {
            memmove(queue, queue + 1, (size_t)(n - 1) * sizeof *queue);
            queued--;
        }
        pthread_mutex_unlock(&queue_lock);
        if (n) {
            p.fn(p.arg);
            return 1;
        }
        usleep(5000);
    }
    return 0;
}

static int done_verdict;
static int done_calls;
static void on_done(struct gw_request *req, int verdict)
{
    (void)req;
    done_verdict = verdict;
    done_calls++;
}

static void test_unknown_kid_async_refetch(void **state)
{
    (void)state;
    struct fx_server *srv = fx_server_start();
    int first[] = {FX_RSA, -1};
    char *body = fx_jwks(first);
    fx_server_set(srv, 200, body, NULL);
    free(body);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "identity:\n  issuers:\n    - issuer: \"%s\"\n      audiences: [\"%s\"]\n"
             "      jwks_uri: \"http://127.0.0.1:%d/jwks\"\n      jwks_refetch_interval: 100ms\n"
             "      jwks_timeout: 1s\n",
             FX_ISSUER, FX_AUD, srv->port);
    struct cfg_error err;
    struct fx_config *fx = fx_config_yaml(yaml, &err);
    assert_non_null(fx);
    assert_int_equal(identity_start(identity_config_of(&fx->cfg)), 0);
    usleep(150 * 1000);
    /* The IdP rotated in a new key; the first token with its kid waits for a refetch. */
    int both[] = {FX_RSA, FX_RSA_B, -1};
    body = fx_jwks(both);
    fx_server_set(srv, 200, body, NULL);
    free(body);
    char *tok = fx_token(FX_RSA_B, NULL);
    char *h = bearer(tok);
    struct fx_request *r = fx_request(fx, NULL, "Authorization", h, NULL);
    r->req->host.post = test_post;
    done_calls = 0;
    gw_pipeline_start(r->req, on_done);
    assert_int_equal(done_calls, 0); /* waiting */
    assert_true(run_posted(3000));
    assert_int_equal(done_calls, 1);
    /* The identity stage passed (later stages may still deny: no audit writer runs here). */
    assert_int_equal(r->req->decision[GW_STAGE_IDENTITY].verdict, GW_PASS);
    assert_int_not_equal(r->req->deciding_stage, GW_STAGE_IDENTITY);
    assert_true(r->req->identity.verified);
    assert_string_equal(r->req->identity.subject, "alice");
    fx_request_free(r);

    /* A kid that is still unknown after the refetch is refused, and within the interval no
     * further fetch happens: the next unknown kid is refused at once. */
    usleep(150 * 1000);
    char *unk = fx_token_ex(FX_RSA_B, JWT_RS256, "never", NULL);
    char *hu = bearer(unk);
    r = fx_request(fx, NULL, "Authorization", hu, NULL);
    r->req->host.post = test_post;
    done_calls = 0;
    gw_pipeline_start(r->req, on_done);
    assert_true(run_posted(3000));
    assert_int_equal(done_calls, 1);
    assert_int_equal(done_verdict, GW_DENY);
    assert_string_equal(decision(r)->reason_code, "identity.unknown_kid");
    fx_request_free(r);
    int fetched = fx_server_requests(srv);
    r = fx_request(fx, NULL, "Authorization", hu, NULL);
    r->req->host.post = test_post;
    done_calls = 0;
    gw_pipeline_start(r->req, on_done);
    assert_int_equal(done_calls, 1); /* decided synchronously */
    assert_int_equal(done_verdict, GW_DENY);
    assert_int_equal(fx_server_requests(srv), fetched);
    fx_request_free(r);

    /* The request goes away while it waits: the late callback must not touch it. */
    usleep(150 * 1000);
    fx_server_delay(srv, 200);
    r = fx_request(fx, NULL, "Authorization", hu, NULL);
    r->req->host.post = test_post;
    done_calls = 0;
    gw_pipeline_start(r->req, on_done);
    assert_int_equal(done_calls, 0);
    fx_request_free(r);
    usleep(400 * 1000);
    while (run_posted(0))
        ;
    assert_int_equal(done_calls, 0);
    fx_server_delay(srv, 0);
    free(hu);
    free(unk);
    free(h);
    free(tok);
    identity_stop();
    fx_config_free(fx);
    fx_server_stop(srv);
}

/* ---- development tools -------------------------------------------------------------------- */

static char *capture_stdout(int (*fn)(int, char **), int argc, char **argv, int *rc)
{
    char path[512];
    snprintf(path, sizeof path, "%s/stdout.txt", fx_tmpdir());
    fflush(stdout);
    int saved = dup(1);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 1);
    close(fd);
    *rc = fn(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 16384);
    size_t n = fread(buf, 1, 16383, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_cli_keys_and_token(void **state)
{
    (void)state;
    const char *algs[] = {"RS256", "ES256", "EdDSA"};
    for (int i = 0; i < 3; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/keys-%s", fx_tmpdir(), algs[i]);
        char *kargv[] = {"keys", "generate", "--alg", (char *)algs[i], "--out", dir, NULL};
        int rc;
        char *out = capture_stdout(identity_cli_keys, 6, kargv, &rc);
        assert_int_equal(rc, 0);
        free(out);
        char priv[600], jwks[600];
        snprintf(priv, sizeof priv, "%s/private.pem", dir);
        snprintf(jwks, sizeof jwks, "%s/jwks.json", dir);
        struct stat st;
        assert_int_equal(stat(priv, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        /* Never overwrites. */
        out = capture_stdout(identity_cli_keys, 6, kargv, &rc);
        assert_int_not_equal(rc, 0);
        free(out);

        char *targv[] = {"token",
                         "--key",
                         priv,
                         "--iss",
                         FX_ISSUER,
                         "--aud",
                         FX_AUD,
                         "--sub",
                         "carol",
                         "--roles",
                         "doctor,nurse",
                         "--scopes",
                         "tools.read tools.write",
                         "--tenant",
                         "acme",
                         "--client",
                         "cli",
                         "--ttl",
                         "10m",
                         "--claim",
                         "level=3",
                         NULL};
        char *token = capture_stdout(identity_cli_token, (int)(sizeof targv / sizeof targv[0]) - 1,
                                     targv, &rc);
        assert_int_equal(rc, 0);
        token[strcspn(token, "\n")] = '\0';

        char yaml[1024];
        snprintf(yaml, sizeof yaml,
                 "identity:\n  issuers:\n    - {issuer: \"%s\", audiences: [\"%s\"], "
                 "jwks_file: \"%s\"}\n",
                 FX_ISSUER, FX_AUD, jwks);
        struct cfg_error err;
        struct fx_config *fx = fx_config_yaml(yaml, &err);
        assert_non_null(fx);
        assert_int_equal(identity_start(identity_config_of(&fx->cfg)), 0);
        char *h = bearer(token);
        struct fx_request *r = fx_request(fx, NULL, "Authorization", h, NULL);
        if (run_check(r) != GW_PASS)
            fail_msg("%s token refused: %s", algs[i], decision(r)->reason_code);
        struct gw_identity *id = &r->req->identity;
        assert_string_equal(id->subject, "carol");
        assert_string_equal(id->tenant, "acme");
        assert_string_equal(id->client_id, "cli");
        assert_int_equal(id->n_roles, 2);
        assert_int_equal(id->n_scopes, 2);
        assert_true(id->expires_at > fx_now() + 500);
        fx_request_free(r);
        free(h);
        free(token);
        identity_stop();
        fx_config_free(fx);
    }
    int rc;
    char *help_argv[] = {"token", "--help", NULL};
    char *out = capture_stdout(identity_cli_token, 2, help_argv, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "Development tool"));
    free(out);
    char *khelp[] = {"keys", "--help", NULL};
    out = capture_stdout(identity_cli_keys, 2, khelp, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "Development tool"));
    free(out);
}

static int setup(void **state)
{
    (void)state;
    int all[] = {FX_RSA, FX_P256, FX_P384, FX_ED25519, -1};
    char *text = fx_jwks(all);
    keys_path = fx_write_file("keys.json", text);
    free(text);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    identity_stop();
    mcp_session_shutdown();
    free(keys_path);
    fx_free_keys();
    fx_rm_tmpdir();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_fail_closed_without_config),
        cmocka_unit_test(test_missing_token_challenge),
        cmocka_unit_test(test_valid_tokens_every_key_type),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_several_issuers),
        cmocka_unit_test(test_request_level_refusals),
        cmocka_unit_test(test_claim_mapping),
        cmocka_unit_test(test_cache_hit_expiry_eviction),
        cmocka_unit_test(test_cache_concurrent),
        cmocka_unit_test(test_layer_uses_cache),
        cmocka_unit_test(test_session_owner),
        cmocka_unit_test(test_metadata),
        cmocka_unit_test(test_unknown_kid_async_refetch),
        cmocka_unit_test(test_cli_keys_and_token),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
