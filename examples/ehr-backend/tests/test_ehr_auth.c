/*
 * Tests of the demo backend's check of the JWT toolgate injects. The backend is a separate
 * program, so its auth module is compiled into this test directly. Keys are generated here;
 * tokens are signed with toolgate's own signer, including hostile ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../auth.c"

#include <openssl/ec.h>
#include <unistd.h>

#define ISS "http://127.0.0.1:8080"
#define AUD "ehr-backend"

static EVP_PKEY *keygen(const char *type)
{
    EVP_PKEY *k =
        strcmp(type, "EC") == 0 ? EVP_EC_gen("P-256") : EVP_PKEY_Q_keygen(NULL, NULL, type);
    assert_non_null(k);
    return k;
}

/* {"keys":[...]} for the given keys, each with its thumbprint kid and alg. */
static char *jwks_of(EVP_PKEY **keys, const char **algs, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        char kid[44];
        assert_int_equal(jwk_thumbprint(keys[i], kid), 0);
        json_array_append_new(arr, jwk_public_json(keys[i], kid, algs[i]));
    }
    json_t *doc = json_pack("{s:o}", "keys", arr);
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return s;
}

static char *sign(EVP_PKEY *key, enum jwt_alg alg, const char *header_alg, const char *payload)
{
    char kid[44], header[160];
    assert_int_equal(jwk_thumbprint(key, kid), 0);
    snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", header_alg,
             kid);
    struct gw_buf out = {0};
    assert_int_equal(
        jwt_sign_compact(key, alg, header, strlen(header), payload, strlen(payload), &out), 0);
    gw_buf_append(&out, "", 1);
    return out.data;
}

static char *claims(const char *iss, const char *aud, int64_t exp)
{
    char *s = NULL;
    assert_true(asprintf(&s,
                         "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"alice\",\"tenant\":\"clinic-1\","
                         "\"roles\":[\"doctor\"],\"scopes\":[\"patients.read\"],"
                         "\"act\":{\"sub\":\"claude\"},\"jti\":\"j1\",\"iat\":%lld,\"exp\":%lld}",
                         iss, aud, (long long)(exp - 60), (long long)exp) > 0);
    return s;
}

static struct gw_slice bearer(const char *token, char *buf, size_t cap)
{
    snprintf(buf, cap, "Bearer %s", token);
    return (struct gw_slice){.ptr = buf, .len = strlen(buf)};
}

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ehr-auth-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *write_jwks(const char *doc)
{
    char *path = NULL;
    assert_true(asprintf(&path, "%s/jwks.json", tmpdir) > 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(doc, f);
    fclose(f);
    return path;
}

static int verify(struct ehr_auth *a, const char *token, int64_t now, char *why, size_t whylen)
{
    char hdr[4096];
    struct ehr_principal p;
    int rc = ehr_auth_verify(a, bearer(token, hdr, sizeof hdr), now, &p, why, whylen);
    ehr_principal_clear(&p);
    return rc;
}

static void test_valid_token_and_claims(void **state)
{
    (void)state;
    EVP_PKEY *ed = keygen("ED25519");
    const char *algs[] = {"EdDSA"};
    char *doc = jwks_of(&ed, algs, 1);
    char *path = write_jwks(doc);
    struct ehr_auth a = {0};
    char why[256];
    assert_int_equal(ehr_auth_init(&a, NULL, path, ISS, AUD, 0, why, sizeof why), 0);
    int64_t now = time(NULL);
    char *c = claims(ISS, AUD, now + 60);
    char *tok = sign(ed, JWT_EDDSA, "EdDSA", c);
    char hdr[4096];
    struct ehr_principal p;
    assert_int_equal(ehr_auth_verify(&a, bearer(tok, hdr, sizeof hdr), now, &p, why, sizeof why),
                     0);
    assert_string_equal(p.subject, "alice");
    assert_string_equal(p.tenant, "clinic-1");
    assert_string_equal(p.client, "claude");
    assert_string_equal(json_string_value(json_array_get(p.roles, 0)), "doctor");
    assert_string_equal(json_string_value(json_array_get(p.scopes, 0)), "patients.read");
    ehr_principal_clear(&p);
    /* The scheme is case-insensitive. */
    char lower[4096];
    snprintf(lower, sizeof lower, "bearer %s", tok);
    assert_int_equal(
        ehr_auth_verify(&a, (struct gw_slice){lower, strlen(lower)}, now, &p, why, sizeof why), 0);
    ehr_principal_clear(&p);
    free(tok);
    free(c);
    ehr_auth_free(&a);
    free(path);
    free(doc);
    EVP_PKEY_free(ed);
}

static void test_bad_tokens_are_refused(void **state)
{
    (void)state;
    EVP_PKEY *ed = keygen("ED25519"), *rogue = keygen("ED25519"), *ec = keygen("EC");
    EVP_PKEY *keys[] = {ed, ec};
    const char *algs[] = {"EdDSA", "ES256"};
    char *doc = jwks_of(keys, algs, 2);
    char *path = write_jwks(doc);
    struct ehr_auth a = {0};
    char why[256];
    assert_int_equal(ehr_auth_init(&a, NULL, path, ISS, AUD, 0, why, sizeof why), 0);
    int64_t now = time(NULL);
    char hdr[64];
    struct ehr_principal p;

    /* Absent, not a bearer token, garbage. */
    assert_int_equal(ehr_auth_verify(&a, (struct gw_slice){0}, now, &p, why, sizeof why), -1);
    assert_string_equal(why, "no bearer token");
    snprintf(hdr, sizeof hdr, "Basic YWxpY2U6cHc=");
    assert_int_equal(
        ehr_auth_verify(&a, (struct gw_slice){hdr, strlen(hdr)}, now, &p, why, sizeof why), -1);
    assert_int_equal(verify(&a, "a.b.c", now, why, sizeof why), -1);

    char *good = claims(ISS, AUD, now + 60);
    /* Wrong signer (kid unknown), and a known kid with another key's signature. */
    char *t = sign(rogue, JWT_EDDSA, "EdDSA", good);
    assert_int_equal(verify(&a, t, now, why, sizeof why), -1);
    assert_string_equal(why, "identity.unknown_kid");
    free(t);
    {
        char kid[44], header[160];
        jwk_thumbprint(ed, kid);
        snprintf(header, sizeof header, "{\"alg\":\"EdDSA\",\"kid\":\"%s\"}", kid);
        struct gw_buf out = {0};
        jwt_sign_compact(rogue, JWT_EDDSA, header, strlen(header), good, strlen(good), &out);
        gw_buf_append(&out, "", 1);
        assert_int_equal(verify(&a, out.data, now, why, sizeof why), -1);
        assert_string_equal(why, "identity.bad_signature");
        gw_buf_free(&out);
    }
    /* The algorithm is the key's: an ES256 header on the Ed25519 key's kid finds no key. */
    {
        char kid[44], header[160];
        jwk_thumbprint(ed, kid);
        snprintf(header, sizeof header, "{\"alg\":\"ES256\",\"kid\":\"%s\"}", kid);
        struct gw_buf out = {0};
        jwt_sign_compact(ec, JWT_ES256, header, strlen(header), good, strlen(good), &out);
        gw_buf_append(&out, "", 1);
        assert_int_equal(verify(&a, out.data, now, why, sizeof why), -1);
        gw_buf_free(&out);
    }
    /* alg none and HMAC are not algorithms at all. */
    {
        char *h = NULL, *tok = NULL;
        struct gw_buf hb = {0}, pb = {0};
        jwt_b64url_encode((const unsigned char *)"{\"alg\":\"none\"}", 14, &hb);
        jwt_b64url_encode((const unsigned char *)good, strlen(good), &pb);
        assert_true(asprintf(&tok, "%.*s.%.*s.c2ln", (int)hb.len, hb.data, (int)pb.len, pb.data) >
                    0);
        assert_int_equal(verify(&a, tok, now, why, sizeof why), -1);
        assert_string_equal(why, "identity.bad_alg");
        free(tok);
        gw_buf_reset(&hb);
        jwt_b64url_encode((const unsigned char *)"{\"alg\":\"HS256\"}", 15, &hb);
        assert_true(asprintf(&tok, "%.*s.%.*s.c2ln", (int)hb.len, hb.data, (int)pb.len, pb.data) >
                    0);
        assert_int_equal(verify(&a, tok, now, why, sizeof why), -1);
        assert_string_equal(why, "identity.bad_alg");
        free(tok);
        free(h);
        gw_buf_free(&hb);
        gw_buf_free(&pb);
    }
    /* Claims: issuer, audience, expiry (with leeway), audience lists, no subject. */
    struct {
        char *payload;
        const char *code;
    } cases[] = {
        {claims("http://evil", AUD, now + 60), "identity.bad_issuer"},
        {claims(ISS, "other-backend", now + 60), "identity.bad_audience"},
        {claims(ISS, AUD, now - EHR_AUTH_LEEWAY_S - 1), "identity.expired"},
        {strdup("{\"iss\":\"" ISS "\",\"aud\":[\"" AUD
                "\",\"x\"],\"sub\":\"a\",\"exp\":9999999999}"),
         "identity.bad_audience"},
        {strdup("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":9999999999}"),
         "the token names no subject"},
        {strdup("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"a\"}"), "identity.missing_exp"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        t = sign(ed, JWT_EDDSA, "EdDSA", cases[i].payload);
        assert_int_equal(verify(&a, t, now, why, sizeof why), -1);
        assert_string_equal(why, cases[i].code);
        free(t);
        free(cases[i].payload);
    }
    /* Inside the leeway still passes; ES256 with its own key passes. */
    char *edge = claims(ISS, AUD, now - EHR_AUTH_LEEWAY_S + 1);
    t = sign(ed, JWT_EDDSA, "EdDSA", edge);
    assert_int_equal(verify(&a, t, now, why, sizeof why), 0);
    free(t);
    free(edge);
    t = sign(ec, JWT_ES256, "ES256", good);
    assert_int_equal(verify(&a, t, now, why, sizeof why), 0);
    free(t);

    free(good);
    ehr_auth_free(&a);
    free(path);
    free(doc);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(rogue);
    EVP_PKEY_free(ec);
}

/* A fake JWKS URL: serves `current_doc` and counts fetches. */
static char *current_doc;
static int fetches;

static int fake_fetch(const char *url, struct gw_buf *out)
{
    (void)url;
    fetches++;
    if (!current_doc)
        return -1;
    return gw_buf_append_str(out, current_doc);
}

static void test_url_refetch_on_unknown_kid_is_rate_limited(void **state)
{
    (void)state;
    EVP_PKEY *old = keygen("ED25519"), *new = keygen("ED25519");
    const char *algs[] = {"EdDSA"};
    char *old_doc = jwks_of(&old, algs, 1);
    char *new_doc = jwks_of(&new, algs, 1);
    struct ehr_auth a = {.fetch = fake_fetch};
    char why[256];
    fetches = 0;
    current_doc = NULL;
    /* Unreachable at start: fails after the retry window, not at once. */
    uint64_t t0 = gw_mono_ms();
    assert_int_equal(
        ehr_auth_init(&a, "http://127.0.0.1:1/jwks", NULL, ISS, AUD, 500, why, sizeof why), -1);
    assert_true(gw_mono_ms() - t0 >= 400);
    assert_true(fetches >= 2);
    ehr_auth_free(&a);

    current_doc = old_doc;
    fetches = 0;
    a.fetch = fake_fetch;
    assert_int_equal(
        ehr_auth_init(&a, "http://127.0.0.1:1/jwks", NULL, ISS, AUD, 500, why, sizeof why), 0);
    assert_int_equal(fetches, 1);
    int64_t now = time(NULL);
    char *c = claims(ISS, AUD, now + 60);
    char *t_new = sign(new, JWT_EDDSA, "EdDSA", c);
    /* The key rotated: an unknown kid right after a fetch does not fetch again. */
    current_doc = new_doc;
    assert_int_equal(verify(&a, t_new, now, why, sizeof why), -1);
    assert_int_equal(fetches, 1);
    /* Once the interval has passed, one fetch brings the new key. */
    a.last_fetch_ms -= EHR_AUTH_REFETCH_MS;
    assert_int_equal(verify(&a, t_new, now, why, sizeof why), 0);
    assert_int_equal(fetches, 2);
    /* Tokens of the old key are now unknown, and do not trigger a fetch within the interval. */
    char *t_old = sign(old, JWT_EDDSA, "EdDSA", c);
    assert_int_equal(verify(&a, t_old, now, why, sizeof why), -1);
    assert_int_equal(fetches, 2);
    /* A failed re-fetch keeps the keys there were. */
    current_doc = NULL;
    a.last_fetch_ms -= EHR_AUTH_REFETCH_MS;
    assert_int_equal(verify(&a, t_old, now, why, sizeof why), -1);
    assert_int_equal(fetches, 3);
    assert_int_equal(verify(&a, t_new, now, why, sizeof why), 0);
    free(t_new);
    free(t_old);
    free(c);
    ehr_auth_free(&a);
    free(old_doc);
    free(new_doc);
    EVP_PKEY_free(old);
    EVP_PKEY_free(new);
}

static void test_bad_configuration(void **state)
{
    (void)state;
    struct ehr_auth a = {0};
    char why[256];
    assert_int_equal(ehr_auth_init(&a, NULL, NULL, ISS, AUD, 0, why, sizeof why), -1);
    ehr_auth_free(&a);
    assert_int_equal(
        ehr_auth_init(&a, NULL, "/nonexistent/jwks.json", ISS, AUD, 0, why, sizeof why), -1);
    assert_non_null(strstr(why, "cannot read"));
    ehr_auth_free(&a);
    char *path = write_jwks("{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}");
    assert_int_equal(ehr_auth_init(&a, NULL, path, ISS, AUD, 0, why, sizeof why), -1);
    assert_non_null(strstr(why, "not usable"));
    ehr_auth_free(&a);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_token_and_claims),
        cmocka_unit_test(test_bad_tokens_are_refused),
        cmocka_unit_test(test_url_refetch_on_unknown_kid_is_rate_limited),
        cmocka_unit_test(test_bad_configuration),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
