/*
 * `toolgate bench identity`: what verifying a token costs.
 *
 * For RS256 (RSA-2048), ES256 (P-256) and EdDSA (Ed25519): the full uncached path (parse the
 * compact JWS, verify the signature, check the claims) next to OpenSSL's bare signature
 * verification of the same bytes with the same key (what `openssl speed` measures), and
 * their ratio; then a verified-token cache hit (hash the token, find and copy the identity).
 */
#include "layers/identity/identity.h"
#include "lib/jwt.h"
#include "lib/digest.h"
#include "layers/identity/token_cache.h"

#include "core/request.h"
#include "lib/timeutil.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static EVP_PKEY *make_key(enum jwt_alg alg)
{
    switch (alg) {
    case JWT_RS256:
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    case JWT_ES256:
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    default:
        return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    }
}

/* The bare OpenSSL verification of the token's signature (no parsing, no claims). */
static int raw_verify(EVP_PKEY *key, enum jwt_alg alg, const struct jwt_parsed *p,
                      const unsigned char *der, size_t der_len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok =
        EVP_DigestVerifyInit(md, NULL, alg == JWT_EDDSA ? NULL : EVP_sha256(), NULL, key) == 1 &&
        EVP_DigestVerify(md, alg == JWT_ES256 ? der : p->sig,
                         alg == JWT_ES256 ? der_len : p->sig_len,
                         (const unsigned char *)p->signing_input.ptr, p->signing_input.len) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

/* ES256 signatures are raw r||s in a JWS; OpenSSL verifies DER. */
static size_t es256_der(const unsigned char *sig, unsigned char *out, size_t cap)
{
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
    ECDSA_SIG_set0(s, r, ss);
    int n = i2d_ECDSA_SIG(s, NULL);
    size_t len = 0;
    if (n > 0 && (size_t)n <= cap) {
        unsigned char *p = out;
        len = (size_t)i2d_ECDSA_SIG(s, &p);
    }
    ECDSA_SIG_free(s);
    return len;
}

static double per_op_ns(uint64_t t0, uint64_t t1, int n)
{
    return (double)(t1 - t0) / n;
}

int identity_bench_main(int argc, char **argv)
{
    int iterations = 2000;
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: toolgate bench identity [ITERATIONS]\n"
               "  JWS verification per algorithm against OpenSSL alone (default 2000)\n");
        return 0;
    }
    if (argc > 1)
        iterations = atoi(argv[1]) > 0 ? atoi(argv[1]) : iterations;
    static const enum jwt_alg algs[] = {JWT_RS256, JWT_ES256, JWT_EDDSA};
    int64_t now = (int64_t)time(NULL);
    char payload[512];
    snprintf(payload, sizeof payload,
             "{\"iss\":\"https://idp.example.com/\",\"aud\":\"https://gw.example.com/mcp\","
             "\"sub\":\"alice\",\"exp\":%lld,\"iat\":%lld,\"roles\":[\"doctor\"],"
             "\"scope\":\"tools.read patients.read\",\"azp\":\"claude\"}",
             (long long)(now + 3600), (long long)now);
    char *const audiences[] = {"https://gw.example.com/mcp", NULL};
    struct jwt_claim_rules rules = {
        .issuer = "https://idp.example.com/", .audiences = audiences, .leeway_s = 60, .now_s = now};
    printf("%-8s %14s %14s %8s\n", "alg", "toolgate ns", "openssl ns", "ratio");
    for (size_t a = 0; a < sizeof algs / sizeof algs[0]; a++) {
        enum jwt_alg alg = algs[a];
        EVP_PKEY *key = make_key(alg);
        if (!key) {
            fprintf(stderr, "bench identity: cannot make a %s key\n", jwt_alg_name(alg));
            return 1;
        }
        char header[64];
        int hl =
            snprintf(header, sizeof header, "{\"alg\":\"%s\",\"kid\":\"k\"}", jwt_alg_name(alg));
        struct gw_buf tok = {0};
        if (jwt_sign_compact(key, alg, header, (size_t)hl, payload, strlen(payload), &tok) != 0) {
            fprintf(stderr, "bench identity: cannot sign\n");
            return 1;
        }
        struct jwt_parsed p;
        if (jwt_parse(tok.data, tok.len, &p) != JWT_OK) {
            fprintf(stderr, "bench identity: cannot parse the token\n");
            return 1;
        }
        unsigned char der[80];
        size_t der_len = alg == JWT_ES256 ? es256_der(p.sig, der, sizeof der) : 0;
        int n = alg == JWT_RS256 ? iterations : iterations * 2;
        int failures = 0;
        /* The bare verification first (warms the key's precomputation for both). */
        uint64_t t0 = gw_mono_ns();
        for (int i = 0; i < n; i++)
            failures += !raw_verify(key, alg, &p, der, der_len);
        uint64_t t1 = gw_mono_ns();
        jwt_parsed_free(&p);
        uint64_t t2 = gw_mono_ns();
        for (int i = 0; i < n; i++) {
            struct jwt_parsed q;
            int64_t exp;
            if (jwt_parse(tok.data, tok.len, &q) != JWT_OK) {
                failures++;
                continue;
            }
            failures += jwt_verify_signature(&q, key) != JWT_OK;
            failures += jwt_check_claims(q.payload, &rules, &exp) != JWT_OK;
            jwt_parsed_free(&q);
        }
        uint64_t t3 = gw_mono_ns();
        double raw = per_op_ns(t0, t1, n), full = per_op_ns(t2, t3, n);
        printf("%-8s %14.0f %14.0f %7.2fx%s\n", jwt_alg_name(alg), full, raw, full / raw,
               failures ? "  (verification failures!)" : "");
        gw_buf_free(&tok);
        EVP_PKEY_free(key);
    }

    /* A cache hit: SHA-256 of the token, then the set-associative lookup and the copy. */
    struct token_cache *cache = token_cache_new(10000);
    struct gw_identity id = {.verified = 1, .expires_at = now + 3600};
    id.subject = strdup("alice");
    id.issuer = strdup("https://idp.example.com/");
    id.client_id = strdup("claude");
    id.roles = calloc(2, sizeof *id.roles);
    id.roles[0] = strdup("doctor");
    id.n_roles = 1;
    id.scopes = calloc(3, sizeof *id.scopes);
    id.scopes[0] = strdup("tools.read");
    id.scopes[1] = strdup("patients.read");
    id.n_scopes = 2;
    const char *token = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsifQ.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
                        "c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl";
    uint8_t h[GW_SHA256_LEN];
    gw_sha256(token, strlen(token), h);
    token_cache_put(cache, h, &id);
    int n = 200000, hits = 0;
    uint64_t t0 = gw_mono_ns();
    for (int i = 0; i < n; i++) {
        gw_sha256(token, strlen(token), h);
        struct gw_identity out = {0};
        hits += token_cache_get(cache, h, now, &out) == 1;
        gw_identity_clear(&out);
    }
    uint64_t t1 = gw_mono_ns();
    uint64_t t2 = gw_mono_ns();
    for (int i = 0; i < n; i++) {
        gw_sha256(token, strlen(token), h);
    }
    uint64_t t3 = gw_mono_ns();
    printf("cache hit (hash + lookup + copy into the request): %.0f ns (of which hashing %.0f ns)"
           "%s\n",
           per_op_ns(t0, t1, n), per_op_ns(t2, t3, n), hits == n ? "" : "  (misses!)");
    gw_identity_clear(&id);
    token_cache_free(cache);
    return 0;
}
