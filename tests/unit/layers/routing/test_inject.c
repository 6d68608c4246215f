/*
 * Identity injection: minted JWTs verified with the published JWKS through the identity
 * layer's own verifier, their claims and lifetime, the per user+backend cache (hits, expiry,
 * the user's own expiry), key loading and generation, and headers mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/request.h"
#include "lib/timeutil.h"
#include "lib/jwk.h"
#include "lib/jwt.h"
#include "layers/routing/inject.h"
#include "layers/routing/routing.h"
#include "fixtures.h"

#define ISS "http://127.0.0.1:8080"
#define AUD "ehr-backend"

static char tmpdir[256];
static char oldcwd[1024];

static void make_identity(struct gw_identity *id, const char *sub, int64_t exp)
{
    fx_identity(id, sub, fx_strv("doctor", "admin"), fx_strv("patients.read", NULL), exp);
    id->tenant = strdup("acme");
    id->client_id = strdup("claude-desktop");
}

static int64_t now_s(void)
{
    return (int64_t)(gw_now_ns() / 1000000000u);
}

/* Verifies token with the JWKS toolgate publishes; returns the payload (decref it) or NULL. */
static json_t *verify(const char *token, const char *aud, int64_t at)
{
    struct gw_buf jwks = {0};
    struct jwk_set *set = NULL;
    struct jwt_parsed p = {0};
    json_t *payload = NULL;
    size_t skipped = 0;
    char why[256];
    assert_int_equal(inject_jwks_json(&jwks), 0);
    assert_int_equal(jwks_parse(jwks.data, jwks.len, &set, &skipped, why, sizeof why), 0);
    if (jwt_parse(token, strlen(token), &p) != JWT_OK)
        goto out;
    const struct jwk *k = jwks_find(set, p.kid, p.kid_len, p.alg);
    if (!k || !(k->algs & JWT_ALG_BIT(p.alg)))
        goto out;
    if (jwt_verify_signature(&p, k->pkey) != JWT_OK)
        goto out;
    char *auds[] = {(char *)aud, NULL};
    struct jwt_claim_rules rules = {.issuer = ISS, .audiences = auds, .leeway_s = 0, .now_s = at};
    int64_t exp = 0;
    if (jwt_check_claims(p.payload, &rules, &exp) != JWT_OK)
        goto out;
    payload = json_incref(p.payload);
out:
    jwt_parsed_free(&p);
    jwks_unref(set);
    gw_buf_free(&jwks);
    return payload;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/toolgate-inject-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    assert_non_null(getcwd(oldcwd, sizeof oldcwd));
    assert_int_equal(chdir(tmpdir), 0);
    char why[256];
    /* No key configured: one is generated in the working directory. */
    assert_int_equal(inject_start(NULL, why, sizeof why), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    inject_stop();
    unlink(ROUTING_DEFAULT_KEY_PATH);
    unlink("rsa.pem");
    unlink("p384.pem");
    unlink("junk.pem");
    assert_int_equal(chdir(oldcwd), 0);
    rmdir(tmpdir);
    return 0;
}

static void test_generated_key(void **state)
{
    (void)state;
    struct stat st;
    assert_int_equal(stat(ROUTING_DEFAULT_KEY_PATH, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char kid[64];
    snprintf(kid, sizeof kid, "%s", inject_kid());
    assert_true(strlen(kid) == 43);
    /* A second start loads the same key instead of making another. */
    char why[256];
    assert_int_equal(inject_start(NULL, why, sizeof why), 0);
    assert_string_equal(inject_kid(), kid);
    struct gw_buf jwks = {0};
    assert_int_equal(inject_jwks_json(&jwks), 0);
    json_t *j = json_loads(jwks.data, 0, NULL);
    assert_non_null(j);
    json_t *k = json_array_get(json_object_get(j, "keys"), 0);
    assert_string_equal(json_string_value(json_object_get(k, "kty")), "OKP");
    assert_string_equal(json_string_value(json_object_get(k, "alg")), "EdDSA");
    assert_string_equal(json_string_value(json_object_get(k, "kid")), kid);
    assert_null(json_object_get(k, "d")); /* never the private part */
    json_decref(j);
    gw_buf_free(&jwks);
}

static void test_mint_claims(void **state)
{
    (void)state;
    inject_cache_flush();
    struct gw_identity id;
    int64_t now = now_s();
    make_identity(&id, "dr-alice", now + 3600);
    struct gw_buf tok = {0};
    int cached = -1;
    assert_int_equal(inject_token(&id, ISS, AUD, 60000, now, &tok, &cached), INJECT_OK);
    assert_int_equal(cached, 0);
    json_t *p = verify(tok.data, AUD, now);
    assert_non_null(p);
    assert_string_equal(json_string_value(json_object_get(p, "iss")), ISS);
    assert_string_equal(json_string_value(json_object_get(p, "aud")), AUD);
    assert_string_equal(json_string_value(json_object_get(p, "sub")), "dr-alice");
    assert_string_equal(json_string_value(json_object_get(p, "tenant")), "acme");
    assert_string_equal(json_string_value(json_array_get(json_object_get(p, "roles"), 1)), "admin");
    assert_string_equal(json_string_value(json_array_get(json_object_get(p, "scopes"), 0)),
                        "patients.read");
    assert_string_equal(json_string_value(json_object_get(json_object_get(p, "act"), "sub")),
                        "claude-desktop");
    assert_int_equal(strlen(json_string_value(json_object_get(p, "jti"))), 36);
    int64_t iat = json_integer_value(json_object_get(p, "iat"));
    int64_t exp = json_integer_value(json_object_get(p, "exp"));
    assert_int_equal(iat, now);
    assert_true(exp - iat <= 60 && exp - iat > 0);
    json_decref(p);
    /* Wrong audience, too late: the identity layer's verifier refuses it. */
    assert_null(verify(tok.data, "other-backend", now));
    assert_null(verify(tok.data, AUD, now + 61));
    /* A flipped signature byte fails. */
    tok.data[tok.len - 2] = tok.data[tok.len - 2] == 'A' ? 'B' : 'A';
    assert_null(verify(tok.data, AUD, now));
    gw_buf_free(&tok);
    gw_identity_clear(&id);
}

static void test_cache(void **state)
{
    (void)state;
    inject_cache_flush();
    struct gw_identity id, other;
    int64_t now = now_s();
    make_identity(&id, "dr-alice", now + 3600);
    make_identity(&other, "dr-bob", now + 3600);
    struct gw_buf a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
    int cached = -1;
    assert_int_equal(inject_token(&id, ISS, AUD, 60000, now, &a, &cached), INJECT_OK);
    assert_int_equal(cached, 0);
    assert_int_equal(inject_token(&id, ISS, AUD, 60000, now + 29, &b, &cached), INJECT_OK);
    assert_int_equal(cached, 1);
    assert_string_equal(a.data, b.data);
    /* Another user, another backend: other tokens. */
    assert_int_equal(inject_token(&other, ISS, AUD, 60000, now, &c, &cached), INJECT_OK);
    assert_int_equal(cached, 0);
    assert_string_not_equal(a.data, c.data);
    assert_int_equal(inject_token(&id, ISS, "billing", 60000, now, &d, &cached), INJECT_OK);
    assert_int_equal(cached, 0);
    json_t *pd = verify(d.data, "billing", now);
    assert_non_null(pd);
    json_decref(pd);
    /* With half its lifetime gone, a fresh token is minted (new jti), valid a full minute. */
    assert_int_equal(inject_token(&id, ISS, AUD, 60000, now + 30, &e, &cached), INJECT_OK);
    assert_int_equal(cached, 0);
    assert_string_not_equal(a.data, e.data);
    json_t *pe = verify(e.data, AUD, now + 30);
    assert_non_null(pe);
    assert_int_equal(json_integer_value(json_object_get(pe, "exp")), now + 90);
    json_decref(pe);
    /* A changed role is another identity: no stale roles from the cache. */
    free(id.roles[1]);
    id.roles[1] = strdup("nurse");
    gw_buf_reset(&b);
    assert_int_equal(inject_token(&id, ISS, AUD, 60000, now + 31, &b, &cached), INJECT_OK);
    assert_int_equal(cached, 0);
    gw_buf_free(&a);
    gw_buf_free(&b);
    gw_buf_free(&c);
    gw_buf_free(&d);
    gw_buf_free(&e);
    gw_identity_clear(&id);
    gw_identity_clear(&other);
}

static void test_user_expiry(void **state)
{
    (void)state;
    inject_cache_flush();
    struct gw_identity id;
    int64_t now = now_s();
    /* The user's token ends in 10 s: the minted one ends with it and is not cached. */
    make_identity(&id, "dr-carol", now + 10);
    struct gw_buf a = {0}, b = {0};
    int cached = -1;
    assert_int_equal(inject_token(&id, ISS, AUD, 60000, now, &a, &cached), INJECT_OK);
    json_t *p = verify(a.data, AUD, now);
    assert_non_null(p);
    assert_int_equal(json_integer_value(json_object_get(p, "exp")), now + 10);
    json_decref(p);
    assert_int_equal(inject_token(&id, ISS, AUD, 60000, now + 1, &b, &cached), INJECT_OK);
    assert_int_equal(cached, 0);
    /* A cached token never outlives a later, shorter-lived token of the same user. */
    inject_cache_flush();
    id.expires_at = now + 3600;
    gw_buf_reset(&a);
    assert_int_equal(inject_token(&id, ISS, AUD, 60000, now, &a, &cached), INJECT_OK);
    id.expires_at = now + 20;
    gw_buf_reset(&b);
    assert_int_equal(inject_token(&id, ISS, AUD, 60000, now + 1, &b, &cached), INJECT_OK);
    assert_int_equal(cached, 0);
    p = verify(b.data, AUD, now + 1);
    assert_non_null(p);
    assert_int_equal(json_integer_value(json_object_get(p, "exp")), now + 20);
    json_decref(p);
    /* Expired or missing identity: nothing is minted. */
    id.expires_at = now - 1;
    gw_buf_reset(&b);
    assert_int_equal(inject_token(&id, ISS, AUD, 60000, now, &b, NULL), INJECT_E_IDENTITY);
    assert_int_equal(b.len, 0);
    free(id.subject);
    id.subject = NULL;
    id.expires_at = now + 100;
    assert_int_equal(inject_token(&id, ISS, AUD, 60000, now, &b, NULL), INJECT_E_IDENTITY);
    assert_int_equal(inject_token(NULL, ISS, AUD, 60000, now, &b, NULL), INJECT_E_IDENTITY);
    gw_buf_free(&a);
    gw_buf_free(&b);
    gw_identity_clear(&id);
}

struct thread_arg {
    int index;
    int failures;
};

static void *mint_thread(void *p)
{
    struct thread_arg *ta = p;
    struct gw_identity id;
    char sub[32];
    int64_t now = now_s();
    for (int i = 0; i < 200; i++) {
        snprintf(sub, sizeof sub, "user-%d", (ta->index * 7 + i) % 13);
        make_identity(&id, sub, now + 3600);
        struct gw_buf b = {0};
        if (inject_token(&id, ISS, AUD, 60000, now, &b, NULL) != INJECT_OK)
            ta->failures++;
        else if (!strstr(b.data, "."))
            ta->failures++;
        gw_buf_free(&b);
        gw_identity_clear(&id);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    inject_cache_flush();
    pthread_t t[4];
    struct thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){.index = i};
        assert_int_equal(pthread_create(&t[i], NULL, mint_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
}

static void write_key(const char *path, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

static void test_configured_keys(void **state)
{
    (void)state;
    char why[256];
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    write_key("rsa.pem", rsa);
    write_key("p384.pem", p384);
    FILE *f = fopen("junk.pem", "w");
    fputs("not a key\n", f);
    fclose(f);

    assert_int_equal(inject_start("rsa.pem", why, sizeof why), 0);
    struct gw_identity id;
    int64_t now = now_s();
    make_identity(&id, "dr-alice", now + 3600);
    struct gw_buf tok = {0};
    assert_int_equal(inject_token(&id, ISS, AUD, 60000, now, &tok, NULL), INJECT_OK);
    assert_non_null(strstr(tok.data, "."));
    struct jwt_parsed p = {0};
    assert_int_equal(jwt_parse(tok.data, tok.len, &p), JWT_OK);
    assert_int_equal(p.alg, JWT_RS256);
    jwt_parsed_free(&p);
    json_t *payload = verify(tok.data, AUD, now);
    assert_non_null(payload);
    json_decref(payload);
    gw_buf_free(&tok);

    /* Unusable keys: the start fails and says why, without key material. */
    assert_int_equal(inject_start("p384.pem", why, sizeof why), -1);
    assert_non_null(strstr(why, "p384.pem"));
    assert_int_equal(inject_has_key(), 0);
    assert_int_equal(inject_start("junk.pem", why, sizeof why), -1);
    assert_int_equal(inject_start("missing.pem", why, sizeof why), -1);
    assert_non_null(strstr(why, "missing.pem"));
    /* Without a key nothing is minted, and the JWKS is empty. */
    assert_int_equal(inject_token(&id, ISS, AUD, 60000, now, &tok, NULL), INJECT_E_NO_KEY);
    struct gw_buf jwks = {0};
    assert_int_equal(inject_jwks_json(&jwks), 0);
    assert_string_equal(jwks.data, "{\"keys\":[]}");
    gw_buf_free(&jwks);
    gw_identity_clear(&id);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(p384);
    /* Back to the generated key for the tests after this one. */
    assert_int_equal(inject_start(NULL, why, sizeof why), 0);
}

static struct gw_slice header_of(const struct gw_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_upstream_headers; i++)
        if (gw_slice_casecmp_eq(req->upstream_headers[i].name, name))
            return req->upstream_headers[i].value;
    return GW_SLICE_NULL;
}

static void test_apply_modes(void **state)
{
    (void)state;
    struct gw_config cfg = {0};
    cfg.server.public_url = ISS;
    struct gw_backend be = {.name = "ehr", .url = "http://127.0.0.1:9001/mcp"};
    struct gw_route_inject ri = {.mode = GW_INJECT_JWT, .ttl_ms = 60000};
    static const char *const names[GW_INJECT_H_COUNT] = {
        "X-Toolgate-Subject", "X-Toolgate-Tenant", "X-Toolgate-Roles",
        "X-Toolgate-Scopes",  "X-Toolgate-Client", "X-Toolgate-Request-Id",
    };
    for (int i = 0; i < GW_INJECT_H_COUNT; i++)
        ri.headers[i] = (char *)names[i];

    /* jwt: Authorization with the backend's URL as audience by default. */
    struct gw_request *req = gw_request_new(&cfg);
    make_identity(&req->identity, "dr-alice", now_s() + 3600);
    assert_int_equal(inject_apply(req, &ri, &be, inject_process_signer()), INJECT_OK);
    struct gw_slice auth = header_of(req, "Authorization");
    assert_non_null(auth.ptr);
    assert_true(auth.len > 7 && memcmp(auth.ptr, "Bearer ", 7) == 0);
    char *tok = gw_slice_dup((struct gw_slice){auth.ptr + 7, auth.len - 7});
    json_t *p = verify(tok, be.url, now_s());
    assert_non_null(p);
    json_decref(p);
    free(tok);
    assert_null(header_of(req, "X-Toolgate-Subject").ptr);
    gw_request_free(req);

    /* headers: every value encoded so none can split a header or a list. */
    ri.mode = GW_INJECT_HEADERS;
    req = gw_request_new(&cfg);
    make_identity(&req->identity, "dr alice\r\nX-Evil: 1", now_s() + 3600);
    free(req->identity.roles[0]);
    req->identity.roles[0] = strdup("a,b");
    free(req->identity.tenant);
    req->identity.tenant = NULL;
    assert_int_equal(inject_apply(req, &ri, &be, inject_process_signer()), INJECT_OK);
    char *v = gw_slice_dup(header_of(req, "X-Toolgate-Subject"));
    assert_string_equal(v, "dr%20alice%0D%0AX-Evil:%201");
    free(v);
    v = gw_slice_dup(header_of(req, "X-Toolgate-Roles"));
    assert_string_equal(v, "a%2Cb,admin");
    free(v);
    v = gw_slice_dup(header_of(req, "X-Toolgate-Scopes"));
    assert_string_equal(v, "patients.read");
    free(v);
    v = gw_slice_dup(header_of(req, "X-Toolgate-Client"));
    assert_string_equal(v, "claude-desktop");
    free(v);
    v = gw_slice_dup(header_of(req, "X-Toolgate-Request-Id"));
    assert_string_equal(v, req->id);
    free(v);
    assert_null(header_of(req, "X-Toolgate-Tenant").ptr); /* absent, never empty */
    assert_null(header_of(req, "Authorization").ptr);
    gw_request_free(req);

    /* A value too long to send denies rather than truncating. */
    req = gw_request_new(&cfg);
    make_identity(&req->identity, "x", now_s() + 3600);
    free(req->identity.subject);
    req->identity.subject = malloc(5000);
    memset(req->identity.subject, 'a', 4999);
    req->identity.subject[4999] = '\0';
    assert_int_equal(inject_apply(req, &ri, &be, inject_process_signer()), INJECT_E_VALUE);
    gw_request_free(req);

    /* none: nothing added. */
    ri.mode = GW_INJECT_NONE;
    req = gw_request_new(&cfg);
    make_identity(&req->identity, "dr-alice", now_s() + 3600);
    assert_int_equal(inject_apply(req, &ri, &be, inject_process_signer()), INJECT_OK);
    assert_int_equal(req->n_upstream_headers, 0);
    gw_request_free(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_key), cmocka_unit_test(test_mint_claims),
        cmocka_unit_test(test_cache),         cmocka_unit_test(test_user_expiry),
        cmocka_unit_test(test_threads),       cmocka_unit_test(test_configured_keys),
        cmocka_unit_test(test_apply_modes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
