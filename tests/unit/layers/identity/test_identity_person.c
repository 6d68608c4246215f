/*
 * identity_verify_person: a person's token verified outside a request (the admin API's
 * approvers), with the test keys under tests/keys and their public set as the issuer's
 * jwks_file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <openssl/pem.h>

#include "fixtures.h"
#include "layers/identity/token_cache.h"
#include "mcp/session.h"

#define PERSON_AUD "https://toolgate.test/admin"

/* The repository root, from this file's path as the compiler saw it ("tests/unit/..."). */
static void repo_path(char *out, size_t outlen, const char *rel)
{
    const char *self = __FILE__;
    const char *tail = strstr(self, "tests/unit/layers/identity/test_identity_person.c");
    int root_len = tail ? (int)(tail - self) : 0;
    snprintf(out, outlen, "%.*s%s", root_len, self, rel);
}

static EVP_PKEY *load_key(const char *rel)
{
    char path[512];
    repo_path(path, sizeof path, rel);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!k)
        fail_msg("cannot read the key in %s", path);
    return k;
}

static EVP_PKEY *ed_key, *rsa_key, *idp_key;

static struct fx_config *start_config(const char *mode_line)
{
    char jwks[512], yaml[2048];
    repo_path(jwks, sizeof jwks, "tests/keys/test-jwks.json");
    snprintf(yaml, sizeof yaml,
             "identity:\n"
             "%s"
             "  issuers:\n"
             "    - issuer: \"%s\"\n"
             "      audiences: [\"%s\"]\n"
             "      jwks_file: \"%s\"\n",
             mode_line, FX_ISSUER, PERSON_AUD, jwks);
    struct cfg_error err;
    struct fx_config *fx = fx_config_yaml(yaml, &err);
    if (!fx)
        fail_msg("config: %s", err.msg);
    assert_int_equal(identity_start(identity_config_of(&fx->cfg)), 0);
    return fx;
}

/* A token for sub with the given roles (a JSON array text) and claims around it. */
static char *person_token(EVP_PKEY *key, enum jwt_alg alg, const char *kid, const char *iss,
                          const char *aud, const char *sub, const char *roles, int64_t exp)
{
    char header[128], payload[1024];
    snprintf(header, sizeof header, "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JWT\"}",
             jwt_alg_name(alg), kid);
    snprintf(payload, sizeof payload,
             "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"%s\",\"roles\":%s,\"iat\":%lld,"
             "\"exp\":%lld}",
             iss, aud, sub, roles, (long long)fx_now() - 10, (long long)exp);
    char *tok = fx_sign_raw(key, alg, header, payload);
    assert_non_null(tok);
    return tok;
}

static int verify(const struct fx_config *fx, const char *token, struct gw_identity *out)
{
    struct gw_slice t = {token, strlen(token)};
    return identity_verify_person(identity_config_of(&fx->cfg), t, out);
}

static int has_role(const struct gw_identity *id, const char *role)
{
    for (char **r = id->roles; r && *r; r++)
        if (strcmp(*r, role) == 0)
            return 1;
    return 0;
}

static void test_good_token_with_and_without_role(void **state)
{
    (void)state;
    struct fx_config *fx = start_config("");
    int64_t exp = fx_now() + 300;
    struct gw_identity id;
    char *tok = person_token(ed_key, JWT_EDDSA, "test-ed25519", FX_ISSUER, PERSON_AUD, "carol",
                             "[\"chief\",\"staff\"]", exp);
    assert_int_equal(verify(fx, tok, &id), JWT_OK);
    assert_true(id.verified);
    assert_string_equal(id.subject, "carol");
    assert_string_equal(id.issuer, FX_ISSUER);
    assert_true(has_role(&id, "chief"));
    assert_int_equal(id.expires_at, exp);
    gw_identity_clear(&id);
    free(tok);
    /* A valid token without the role verifies: holding the role is the caller's check. */
    tok = person_token(rsa_key, JWT_RS256, "test-rsa", FX_ISSUER, PERSON_AUD, "dave", "[\"staff\"]",
                       exp);
    assert_int_equal(verify(fx, tok, &id), JWT_OK);
    assert_string_equal(id.subject, "dave");
    assert_false(has_role(&id, "chief"));
    assert_true(has_role(&id, "staff"));
    gw_identity_clear(&id);
    free(tok);
    /* Nothing of it was put in the generation's token cache. */
    assert_int_equal(token_cache_count(identity_cache_of(identity_config_of(&fx->cfg))), 0);
    identity_stop();
    fx_config_free(fx);
}

static void expect_refused(const struct fx_config *fx, const char *tok, int want)
{
    struct gw_identity id;
    memset(&id, 0x5a, sizeof id);
    int got = verify(fx, tok, &id);
    if (got != want)
        fail_msg("want %s, got %s", jwt_error_code(want), jwt_error_code(got));
    assert_false(id.verified);
    assert_null(id.subject);
    assert_null(id.roles);
}

static void test_refused_tokens(void **state)
{
    (void)state;
    struct fx_config *fx = start_config("");
    int64_t exp = fx_now() + 300;
    char *tok = person_token(ed_key, JWT_EDDSA, "test-ed25519", FX_ISSUER, PERSON_AUD, "carol",
                             "[\"chief\"]", fx_now() - 3600);
    expect_refused(fx, tok, JWT_E_EXPIRED);
    free(tok);
    tok = person_token(ed_key, JWT_EDDSA, "test-ed25519", FX_ISSUER, "https://elsewhere.test/",
                       "carol", "[\"chief\"]", exp);
    expect_refused(fx, tok, JWT_E_AUDIENCE);
    free(tok);
    tok = person_token(ed_key, JWT_EDDSA, "test-ed25519", "https://evil.test/", PERSON_AUD, "carol",
                       "[\"chief\"]", exp);
    expect_refused(fx, tok, JWT_E_ISSUER);
    free(tok);
    /* The right issuer and a kid it publishes, signed by a key it does not. */
    tok = person_token(idp_key, JWT_RS256, "test-rsa", FX_ISSUER, PERSON_AUD, "mallory",
                       "[\"chief\"]", exp);
    expect_refused(fx, tok, JWT_E_SIGNATURE);
    free(tok);
    tok = person_token(idp_key, JWT_RS256, "test-idp-rsa-1", FX_ISSUER, PERSON_AUD, "mallory",
                       "[\"chief\"]", exp);
    expect_refused(fx, tok, JWT_E_UNKNOWN_KID);
    free(tok);
    /* Roles that are not strings: the claim mapping refuses the token. */
    tok = person_token(ed_key, JWT_EDDSA, "test-ed25519", FX_ISSUER, PERSON_AUD, "carol",
                       "[\"chief\",{\"x\":1}]", exp);
    expect_refused(fx, tok, JWT_E_CLAIMS);
    free(tok);
    /* Malformed: not three parts, padding, empty, a header "none", over the size bound. */
    expect_refused(fx, "abc.def", JWT_E_MALFORMED);
    expect_refused(fx, "", JWT_E_MALFORMED);
    tok = person_token(ed_key, JWT_EDDSA, "test-ed25519", FX_ISSUER, PERSON_AUD, "carol",
                       "[\"chief\"]", exp);
    size_t len = strlen(tok);
    char *padded = malloc(len + 3);
    snprintf(padded, len + 3, "%s==", tok);
    expect_refused(fx, padded, JWT_E_MALFORMED);
    free(padded);
    free(tok);
    /* eyJhbGciOiJub25lIn0 is {"alg":"none"}. */
    expect_refused(fx, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJjYXJvbCJ9.AAAA", JWT_E_ALG);
    char *huge = malloc(JWT_MAX_TOKEN + 2);
    memset(huge, 'A', JWT_MAX_TOKEN + 1);
    huge[JWT_MAX_TOKEN + 1] = '\0';
    expect_refused(fx, huge, JWT_E_TOO_LARGE);
    free(huge);
    identity_stop();
    fx_config_free(fx);
}

static void test_nothing_to_verify_with(void **state)
{
    (void)state;
    struct gw_identity id;
    char *tok = person_token(ed_key, JWT_EDDSA, "test-ed25519", FX_ISSUER, PERSON_AUD, "carol",
                             "[\"chief\"]", fx_now() + 300);
    struct gw_slice t = {tok, strlen(tok)};
    /* No section, and a section whose runtime was never started. */
    assert_int_equal(identity_verify_person(NULL, t, &id), JWT_E_INTERNAL);
    assert_null(id.subject);
    char jwks[512], yaml[1024];
    repo_path(jwks, sizeof jwks, "tests/keys/test-jwks.json");
    snprintf(yaml, sizeof yaml,
             "identity:\n  issuers:\n    - {issuer: \"%s\", audiences: [\"%s\"], jwks_file: "
             "\"%s\"}\n",
             FX_ISSUER, PERSON_AUD, jwks);
    struct cfg_error err;
    struct fx_config *fx = fx_config_yaml(yaml, &err);
    assert_non_null(fx);
    expect_refused(fx, tok, JWT_E_INTERNAL);
    fx_config_free(fx);
    /* identity: {mode: off} verifies no one: an anonymous caller is no approver. */
    fx = fx_config_yaml("identity: {mode: off}\n", &err);
    assert_non_null(fx);
    expect_refused(fx, tok, JWT_E_INTERNAL);
    fx_config_free(fx);
    free(tok);
}

/* approvers: token with nothing to verify an approver's token is refused when the file loads. */
static void test_token_approvers_need_an_issuer(void **state)
{
    (void)state;
    char jwks[512], yaml[2048];
    repo_path(jwks, sizeof jwks, "tests/keys/test-jwks.json");
    const char *routes = "routes:\n  - {name: r, path: /mcp, backends: [{name: b, url: "
                         "\"http://127.0.0.1:9/mcp\"}]}\n";
    const char *refused[] = {
        "identity: {mode: \"off\"}\npolicy: {approvals: {approvers: token}}\n",
        "policy: {approvals: {approvers: token}}\n", /* no identity section */
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        snprintf(yaml, sizeof yaml, "%s%s", refused[i], routes);
        struct cfg_error err = {{0}};
        struct gw_config *cfg = gw_config_load_string(yaml, "t.yaml", &err);
        assert_null(cfg);
        assert_non_null(strstr(err.msg, "policy.approvals.approvers"));
        assert_non_null(strstr(err.msg, "no issuer verifies tokens"));
    }
    const char *accepted[] = {
        "identity: {mode: \"off\"}\npolicy: {approvals: {approvers: admin}}\n",
        "identity: {mode: \"off\"}\npolicy: {rules: []}\n", NULL};
    for (size_t i = 0; i < 3; i++) {
        if (accepted[i])
            snprintf(yaml, sizeof yaml, "%s%s", accepted[i], routes);
        else
            snprintf(yaml, sizeof yaml,
                     "identity:\n  issuers:\n    - {issuer: \"%s\", audiences: [\"%s\"], "
                     "jwks_file: \"%s\"}\npolicy: {approvals: {approvers: token}}\n%s",
                     FX_ISSUER, PERSON_AUD, jwks, routes);
        struct cfg_error err = {{0}};
        struct gw_config *cfg = gw_config_load_string(yaml, "t.yaml", &err);
        if (!cfg)
            fail_msg("%s: %s", yaml, err.msg);
        gw_config_free(cfg);
    }
}

static int setup(void **state)
{
    (void)state;
    ed_key = load_key("tests/keys/test-ed25519.pem");
    rsa_key = load_key("tests/keys/test-rsa.pem");
    idp_key = load_key("tests/keys/test-idp-rsa-1.pem");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    identity_stop();
    mcp_session_shutdown();
    EVP_PKEY_free(ed_key);
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(idp_key);
    fx_free_keys();
    fx_rm_tmpdir();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_token_with_and_without_role),
        cmocka_unit_test(test_refused_tokens),
        cmocka_unit_test(test_nothing_to_verify_with),
        cmocka_unit_test(test_token_approvers_need_an_issuer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
