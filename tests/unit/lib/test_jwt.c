/* jwt: strict parsing, every algorithm, and every refusal the verifier promises. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/ec.h>
#include <openssl/pem.h>

#include "fixtures.h"
#include "lib/digest.h"

static char *const audiences[] = {FX_AUD, "other-resource", NULL};

/* Parses, verifies with key and checks claims; returns the first error. */
static int verify_with(const char *token, EVP_PKEY *key)
{
    struct jwt_parsed p;
    int rc = jwt_parse(token, strlen(token), &p);
    if (rc != JWT_OK)
        return rc;
    rc = jwt_verify_signature(&p, key);
    if (rc == JWT_OK) {
        struct jwt_claim_rules rules = {
            .issuer = FX_ISSUER, .audiences = audiences, .leeway_s = 60, .now_s = fx_now()};
        int64_t exp = 0;
        rc = jwt_check_claims(p.payload, &rules, &exp);
    }
    jwt_parsed_free(&p);
    return rc;
}

static char *b64(const char *s, size_t n)
{
    struct gw_buf b = {0};
    jwt_b64url_encode((const unsigned char *)s, n, &b);
    return b.data;
}

/* header.payload.signature from texts and a raw signature. */
static char *assemble(const char *header, const char *payload, const unsigned char *sig,
                      size_t sig_len)
{
    struct gw_buf b = {0};
    jwt_b64url_encode((const unsigned char *)header, strlen(header), &b);
    gw_buf_append(&b, ".", 1);
    jwt_b64url_encode((const unsigned char *)payload, strlen(payload), &b);
    gw_buf_append(&b, ".", 1);
    jwt_b64url_encode(sig, sig_len, &b);
    return b.data;
}

static char *good_payload(void)
{
    char *p = malloc(256);
    snprintf(p, 256, "{\"iss\":\"%s\",\"sub\":\"alice\",\"aud\":\"%s\",\"exp\":%lld}", FX_ISSUER,
             FX_AUD, (long long)fx_now() + 300);
    return p;
}

static void test_b64url_strict(void **state)
{
    (void)state;
    unsigned char out[64];
    assert_int_equal(jwt_b64url_decode("YWJj", 4, out, sizeof out), 3);
    assert_memory_equal(out, "abc", 3);
    assert_int_equal(jwt_b64url_decode("YWI", 3, out, sizeof out), 2);
    assert_int_equal(jwt_b64url_decode("", 0, out, sizeof out), 0);
    /* Padding, the standard alphabet's + and /, whitespace: all refused. */
    assert_int_equal(jwt_b64url_decode("YWI=", 4, out, sizeof out), -1);
    assert_int_equal(jwt_b64url_decode("ab+c", 4, out, sizeof out), -1);
    assert_int_equal(jwt_b64url_decode("ab/c", 4, out, sizeof out), -1);
    assert_int_equal(jwt_b64url_decode("ab c", 4, out, sizeof out), -1);
    /* A lone final character, and non-zero unused bits (a second spelling of "ab"). */
    assert_int_equal(jwt_b64url_decode("YWJjZ", 5, out, sizeof out), -1);
    assert_int_equal(jwt_b64url_decode("YWJ", 3, out, sizeof out), -1);
    /* Output bound. */
    assert_int_equal(jwt_b64url_decode("YWJj", 4, out, 2), -1);
    /* Round trip of every length. */
    unsigned char in[40];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (unsigned char)(0xf0 ^ i * 13);
    for (size_t n = 0; n <= sizeof in; n++) {
        struct gw_buf b = {0};
        assert_int_equal(jwt_b64url_encode(in, n, &b), 0);
        assert_int_equal(jwt_b64url_decode(b.data ? b.data : "", b.len, out, sizeof out), (long)n);
        assert_memory_equal(out, in, n);
        gw_buf_free(&b);
    }
}

static void test_every_algorithm_verifies(void **state)
{
    (void)state;
    struct {
        enum fx_key key;
        enum jwt_alg alg;
    } cases[] = {
        {FX_RSA, JWT_RS256},  {FX_RSA, JWT_RS384},  {FX_RSA, JWT_RS512},
        {FX_RSA, JWT_PS256},  {FX_RSA, JWT_PS384},  {FX_RSA, JWT_PS512},
        {FX_P256, JWT_ES256}, {FX_P384, JWT_ES384}, {FX_ED25519, JWT_EDDSA},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *tok = fx_token_ex(cases[i].key, cases[i].alg, "k", NULL);
        assert_non_null(tok);
        assert_int_equal(verify_with(tok, fx_key(cases[i].key)), JWT_OK);
        /* The same token under another key of the same type fails. */
        if (cases[i].key == FX_RSA)
            assert_int_equal(verify_with(tok, fx_key(FX_RSA_B)), JWT_E_SIGNATURE);
        /* And under a key of another type the algorithm does not fit the key. */
        EVP_PKEY *other = fx_key(cases[i].key == FX_ED25519 ? FX_P256 : FX_ED25519);
        assert_int_equal(verify_with(tok, other), JWT_E_ALG);
        free(tok);
    }
}

static void test_alg_none_and_hmac_refused(void **state)
{
    (void)state;
    char *payload = good_payload();
    const char *headers[] = {"{\"alg\":\"none\"}",
                             "{\"alg\":\"HS256\"}",
                             "{\"alg\":\"NONE\"}",
                             "{\"alg\":\"rs256\"}",
                             "{}",
                             "{\"alg\":256}"};
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *tok = assemble(headers[i], payload, (const unsigned char *)"x", 1);
        struct jwt_parsed p;
        assert_int_equal(jwt_parse(tok, strlen(tok), &p), JWT_E_ALG);
        free(tok);
    }
    /* alg none with an empty signature part is not even three non-empty parts. */
    char *h = b64("{\"alg\":\"none\"}", 14);
    char *pl = b64(payload, strlen(payload));
    char tok[1024];
    snprintf(tok, sizeof tok, "%s.%s.", h, pl);
    struct jwt_parsed p;
    assert_int_not_equal(jwt_parse(tok, strlen(tok), &p), JWT_OK);
    free(h);
    free(pl);

    /* HS256 "signed" with the RSA public key (PEM) as the HMAC secret: the classic confusion. */
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, fx_key(FX_RSA));
    char *pem = NULL;
    long pem_len = BIO_get_mem_data(bio, &pem);
    const char *hs_header = "{\"alg\":\"HS256\",\"kid\":\"rsa-1\"}";
    struct gw_buf input = {0};
    jwt_b64url_encode((const unsigned char *)hs_header, strlen(hs_header), &input);
    gw_buf_append(&input, ".", 1);
    jwt_b64url_encode((const unsigned char *)payload, strlen(payload), &input);
    unsigned char mac[32];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), pem, (int)pem_len, (const unsigned char *)input.data, input.len, mac,
         &mac_len);
    char *hs = assemble(hs_header, payload, mac, mac_len);
    assert_int_equal(jwt_parse(hs, strlen(hs), &p), JWT_E_ALG);
    assert_int_not_equal(verify_with(hs, fx_key(FX_RSA)), JWT_OK);
    free(hs);
    gw_buf_free(&input);
    BIO_free(bio);
    free(payload);
}

static void test_malformed_tokens(void **state)
{
    (void)state;
    char *good = fx_token(FX_RSA, NULL);
    assert_int_equal(verify_with(good, fx_key(FX_RSA)), JWT_OK);
    size_t len = strlen(good);
    struct jwt_parsed p;
    const char *bad[] = {"", "a", "a.b", "a.b.c.d", "a.b.c.d.e", "..", ".a.b", "a..b", "a.b."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_not_equal(jwt_parse(bad[i], strlen(bad[i]), &p), JWT_OK);

    /* Padding appended to the signature, '+' or '/' in a part, whitespace. */
    char *t = malloc(len + 8);
    snprintf(t, len + 8, "%s=", good);
    assert_int_equal(jwt_parse(t, strlen(t), &p), JWT_E_MALFORMED);
    memcpy(t, good, len + 1);
    char *dot = strchr(t, '.');
    dot[1] = '+';
    assert_int_equal(jwt_parse(t, len, &p), JWT_E_MALFORMED);
    dot[1] = '/';
    assert_int_equal(jwt_parse(t, len, &p), JWT_E_MALFORMED);
    memcpy(t, good, len + 1);
    t[len - 1] = ' ';
    assert_int_equal(jwt_parse(t, len, &p), JWT_E_MALFORMED);
    free(t);

    /* Header or payload that is not JSON, not an object, or has duplicate keys. */
    char *payload = good_payload();
    const char *headers[] = {"not json", "[\"alg\"]", "{\"alg\":\"RS256\",\"alg\":\"none\"}",
                             "{\"alg\":\"RS256\"} trailing"};
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *tok = fx_sign_raw(fx_key(FX_RSA), JWT_RS256, headers[i], payload);
        assert_int_not_equal(jwt_parse(tok, strlen(tok), &p), JWT_OK);
        free(tok);
    }
    const char *payloads[] = {"not json", "\"a string\"",
                              "{\"sub\":\"alice\",\"sub\":\"admin\",\"exp\":99999999999}"};
    for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
        char *tok = fx_sign_raw(fx_key(FX_RSA), JWT_RS256, "{\"alg\":\"RS256\"}", payloads[i]);
        assert_int_equal(jwt_parse(tok, strlen(tok), &p), JWT_E_MALFORMED);
        free(tok);
    }
    free(payload);
    free(good);
}

static void test_token_size_bound(void **state)
{
    (void)state;
    char pad[9000];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    char extra[9100];
    snprintf(extra, sizeof extra, "{\"pad\":\"%s\"}", pad);
    char *tok = fx_token(FX_ED25519, extra);
    assert_true(strlen(tok) > JWT_MAX_TOKEN);
    struct jwt_parsed p;
    assert_int_equal(jwt_parse(tok, strlen(tok), &p), JWT_E_TOO_LARGE);
    free(tok);
}

static void test_signature_over_other_payload(void **state)
{
    (void)state;
    char *a = fx_token(FX_P256, NULL);
    char *b = fx_token(FX_P256, "{\"sub\":\"admin\"}");
    /* a's header and payload with b's signature. */
    char *sig_b = strrchr(b, '.');
    char *dot_a = strrchr(a, '.');
    char spliced[4096];
    snprintf(spliced, sizeof spliced, "%.*s%s", (int)(dot_a - a), a, sig_b);
    assert_int_equal(verify_with(spliced, fx_key(FX_P256)), JWT_E_SIGNATURE);
    /* One flipped payload byte. */
    char *flip = strdup(a);
    char *mid = strchr(flip, '.') + 3;
    *mid = *mid == 'A' ? 'B' : 'A';
    assert_int_not_equal(verify_with(flip, fx_key(FX_P256)), JWT_OK);
    free(flip);
    free(a);
    free(b);
}

static void test_es256_signature_forms(void **state)
{
    (void)state;
    char *payload = good_payload();
    const char *header = "{\"alg\":\"ES256\"}";
    char *tok = fx_sign_raw(fx_key(FX_P256), JWT_ES256, header, payload);
    assert_int_equal(verify_with(tok, fx_key(FX_P256)), JWT_OK);
    struct jwt_parsed p;
    assert_int_equal(jwt_parse(tok, strlen(tok), &p), JWT_OK);
    assert_int_equal(p.sig_len, 64);

    /* The same signature in DER form, as OpenSSL would produce it. */
    ECDSA_SIG *es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(p.sig, 32, NULL), BN_bin2bn(p.sig + 32, 32, NULL));
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(es, &der);
    char *der_tok = assemble(header, payload, der, (size_t)der_len);
    assert_int_equal(verify_with(der_tok, fx_key(FX_P256)), JWT_E_SIGNATURE);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    free(der_tok);

    /* r = s = 0. */
    unsigned char zero[64] = {0};
    char *z = assemble(header, payload, zero, 64);
    assert_int_equal(verify_with(z, fx_key(FX_P256)), JWT_E_SIGNATURE);
    free(z);
    /* r >= n (all ones is above the P-256 order), and s >= n. */
    unsigned char big[64];
    memcpy(big, p.sig, 64);
    memset(big, 0xff, 32);
    char *rb = assemble(header, payload, big, 64);
    assert_int_equal(verify_with(rb, fx_key(FX_P256)), JWT_E_SIGNATURE);
    free(rb);
    memcpy(big, p.sig, 64);
    memset(big + 32, 0xff, 32);
    char *sb = assemble(header, payload, big, 64);
    assert_int_equal(verify_with(sb, fx_key(FX_P256)), JWT_E_SIGNATURE);
    free(sb);
    /* s replaced by n - s (the other valid-looking signature) must still verify mathematically
     * only if the library accepts it; we require a fixed-width 64-byte form, nothing else. */
    unsigned char short_sig[63];
    memcpy(short_sig, p.sig, 63);
    char *ss = assemble(header, payload, short_sig, 63);
    assert_int_equal(verify_with(ss, fx_key(FX_P256)), JWT_E_SIGNATURE);
    free(ss);
    jwt_parsed_free(&p);
    free(tok);
    free(payload);
}

static void test_header_rules(void **state)
{
    (void)state;
    char *payload = good_payload();
    struct jwt_parsed p;
    /* crit names an extension we do not implement. */
    char *t = fx_sign_raw(fx_key(FX_RSA), JWT_RS256,
                          "{\"alg\":\"RS256\",\"crit\":[\"exp\"],\"exp\":1}", payload);
    assert_int_equal(jwt_parse(t, strlen(t), &p), JWT_E_CRIT);
    free(t);
    t = fx_sign_raw(fx_key(FX_RSA), JWT_RS256, "{\"alg\":\"RS256\",\"typ\":\"dpop+jwt\"}", payload);
    assert_int_equal(jwt_parse(t, strlen(t), &p), JWT_E_TYP);
    free(t);
    t = fx_sign_raw(fx_key(FX_RSA), JWT_RS256, "{\"alg\":\"RS256\",\"typ\":\"at+JWT\"}", payload);
    assert_int_equal(verify_with(t, fx_key(FX_RSA)), JWT_OK);
    free(t);
    t = fx_sign_raw(fx_key(FX_RSA), JWT_RS256, "{\"alg\":\"RS256\",\"kid\":7}", payload);
    assert_int_equal(jwt_parse(t, strlen(t), &p), JWT_E_MALFORMED);
    free(t);
    free(payload);
}

static void test_claims(void **state)
{
    (void)state;
    struct {
        const char *extra;
        int want;
    } cases[] = {
        {NULL, JWT_OK},
        {"{\"exp\":null}", JWT_E_NO_EXP},
        {"{\"exp\":\"soon\"}", JWT_E_CLAIMS},
        {"{\"exp\":1000}", JWT_E_EXPIRED},
        {"{\"nbf\":99999999999}", JWT_E_NOT_YET},
        {"{\"iat\":99999999999}", JWT_E_IAT},
        {"{\"iss\":\"https://evil.test/\"}", JWT_E_ISSUER},
        {"{\"iss\":\"https://idp.test\"}", JWT_E_ISSUER},
        {"{\"iss\":null}", JWT_E_ISSUER},
        {"{\"aud\":\"http://127.0.0.1:8080/other\"}", JWT_E_AUDIENCE},
        {"{\"aud\":null}", JWT_E_AUDIENCE},
        {"{\"aud\":[]}", JWT_E_AUDIENCE},
        {"{\"aud\":[\"x\",\"other-resource\"]}", JWT_OK},
        {"{\"aud\":[\"x\",5]}", JWT_E_CLAIMS},
        {"{\"aud\":5}", JWT_E_AUDIENCE},
        {"{\"exp\":1.5e9}", JWT_E_EXPIRED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *tok = fx_token(FX_ED25519, cases[i].extra);
        int got = verify_with(tok, fx_key(FX_ED25519));
        if (got != cases[i].want)
            fail_msg("case %zu (%s): got %s, want %s", i, cases[i].extra ? cases[i].extra : "-",
                     jwt_error_code(got), jwt_error_code(cases[i].want));
        free(tok);
    }
    /* Leeway: expired 30 s ago passes with 60 s leeway, fails with none. */
    char extra[64];
    snprintf(extra, sizeof extra, "{\"exp\":%lld}", (long long)fx_now() - 30);
    char *tok = fx_token(FX_ED25519, extra);
    assert_int_equal(verify_with(tok, fx_key(FX_ED25519)), JWT_OK);
    struct jwt_parsed p;
    assert_int_equal(jwt_parse(tok, strlen(tok), &p), JWT_OK);
    struct jwt_claim_rules strict = {
        .issuer = FX_ISSUER, .audiences = audiences, .leeway_s = 0, .now_s = fx_now()};
    assert_int_equal(jwt_check_claims(p.payload, &strict, NULL), JWT_E_EXPIRED);
    jwt_parsed_free(&p);
    free(tok);
}

static void test_error_codes_distinct(void **state)
{
    (void)state;
    assert_string_equal(jwt_error_code(JWT_E_EXPIRED), "identity.expired");
    assert_string_equal(jwt_error_code(JWT_E_SIGNATURE), "identity.bad_signature");
    assert_string_equal(jwt_error_code(JWT_E_UNKNOWN_KID), "identity.unknown_kid");
    for (int a = JWT_E_TOO_LARGE; a > JWT_E_INTERNAL; a--)
        for (int b = a - 1; b >= JWT_E_INTERNAL; b--)
            assert_string_not_equal(jwt_error_code(a), jwt_error_code(b));
    assert_int_equal(jwt_alg_from_name("EdDSA", 5), JWT_EDDSA);
    assert_int_equal(jwt_alg_from_name("HS256", 5), -1);
    assert_int_equal(jwt_alg_from_name("none", 4), -1);
}

static int teardown(void **state)
{
    (void)state;
    fx_free_keys();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url_strict),
        cmocka_unit_test(test_every_algorithm_verifies),
        cmocka_unit_test(test_alg_none_and_hmac_refused),
        cmocka_unit_test(test_malformed_tokens),
        cmocka_unit_test(test_token_size_bound),
        cmocka_unit_test(test_signature_over_other_payload),
        cmocka_unit_test(test_es256_signature_forms),
        cmocka_unit_test(test_header_rules),
        cmocka_unit_test(test_claims),
        cmocka_unit_test(test_error_codes_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
