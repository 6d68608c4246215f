#include "lib/jwk.h"
#include "lib/jwt.h"
#include "lib/digest.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RSA_MIN_BYTES 256 /* 2048 bits */
#define RSA_MAX_BYTES 512 /* 4096 bits: the largest signature jwt_parsed holds */

void jwk_clear(struct jwk *k)
{
    free(k->kid);
    EVP_PKEY_free(k->pkey);
    memset(k, 0, sizeof *k);
}

/* Decodes a base64url member into buf; returns the length or -1 when absent or bad. */
static long member_bytes(const json_t *obj, const char *name, unsigned char *buf, size_t cap)
{
    const json_t *v = json_object_get(obj, name);
    if (!json_is_string(v))
        return -1;
    return jwt_b64url_decode(json_string_value(v), json_string_length(v), buf, cap);
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1)
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *rsa_from_json(const json_t *obj, char *why, size_t whylen)
{
    unsigned char n[RSA_MAX_BYTES + 1], e[8];
    long nlen = member_bytes(obj, "n", n, sizeof n);
    long elen = member_bytes(obj, "e", e, sizeof e);
    EVP_PKEY *pkey = NULL;
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    if (nlen <= 0 || elen <= 0) {
        snprintf(why, whylen, "RSA key without valid \"n\" and \"e\" (or larger than 4096 bits)");
        return NULL;
    }
    bn_n = BN_bin2bn(n, (int)nlen, NULL);
    bn_e = BN_bin2bn(e, (int)elen, NULL);
    if (!bn_n || !bn_e)
        goto out;
    if (BN_num_bytes(bn_n) < RSA_MIN_BYTES || BN_num_bytes(bn_n) > RSA_MAX_BYTES) {
        snprintf(why, whylen, "RSA key of %d bits (2048 to 4096 are accepted)", BN_num_bits(bn_n));
        goto out;
    }
    if (!BN_is_odd(bn_e) || BN_is_one(bn_e) || !BN_is_odd(bn_n)) {
        snprintf(why, whylen, "RSA key with an invalid modulus or exponent");
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
        goto out;
    pkey = pkey_fromdata("RSA", bld);
    if (!pkey)
        snprintf(why, whylen, "RSA key rejected by OpenSSL");
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    return pkey;
}

static EVP_PKEY *ec_from_json(const json_t *obj, char *why, size_t whylen)
{
    const char *crv = json_string_value(json_object_get(obj, "crv"));
    size_t half;
    const char *group;
    if (crv && strcmp(crv, "P-256") == 0) {
        half = 32;
        group = "prime256v1";
    } else if (crv && strcmp(crv, "P-384") == 0) {
        half = 48;
        group = "secp384r1";
    } else {
        snprintf(why, whylen, "EC key on an unsupported curve (P-256 and P-384 are accepted)");
        return NULL;
    }
    unsigned char point[1 + 2 * 48];
    point[0] = 0x04; /* uncompressed point: x || y */
    long xl = member_bytes(obj, "x", point + 1, 48);
    long yl = member_bytes(obj, "y", point + 1 + half, 48);
    if (xl != (long)half || yl != (long)half) {
        snprintf(why, whylen, "EC key without \"x\" and \"y\" of the curve's size");
        return NULL;
    }
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *check = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * half))
        goto out;
    pkey = pkey_fromdata("EC", bld);
    if (!pkey) {
        snprintf(why, whylen, "EC key is not a point on its curve");
        goto out;
    }
    /* A point off the curve (invalid-curve attacks) must never become a key. */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (!check || EVP_PKEY_public_check(check) != 1) {
        snprintf(why, whylen, "EC key is not a valid point on its curve");
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
out:
    EVP_PKEY_CTX_free(check);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

static EVP_PKEY *okp_from_json(const json_t *obj, char *why, size_t whylen)
{
    const char *crv = json_string_value(json_object_get(obj, "crv"));
    if (!crv || strcmp(crv, "Ed25519") != 0) {
        snprintf(why, whylen, "OKP key on an unsupported curve (Ed25519 is accepted)");
        return NULL;
    }
    unsigned char x[32];
    if (member_bytes(obj, "x", x, sizeof x) != 32) {
        snprintf(why, whylen, "Ed25519 key without a 32-byte \"x\"");
        return NULL;
    }
    EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, sizeof x);
    if (!pkey)
        snprintf(why, whylen, "Ed25519 key rejected by OpenSSL");
    return pkey;
}

static int key_ops_allow_verify(const json_t *ops)
{
    size_t i;
    const json_t *v;
    json_array_foreach(ops, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), "verify") == 0)
            return 1;
    }
    return 0;
}

int jwk_from_json(const json_t *obj, struct jwk *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    snprintf(why, whylen, "unusable key");
    if (!json_is_object(obj)) {
        snprintf(why, whylen, "a key is not a JSON object");
        return -1;
    }
    const char *kty = json_string_value(json_object_get(obj, "kty"));
    const json_t *use = json_object_get(obj, "use");
    const json_t *ops = json_object_get(obj, "key_ops");
    const json_t *alg = json_object_get(obj, "alg");
    const json_t *kid = json_object_get(obj, "kid");
    if (!kty) {
        snprintf(why, whylen, "key without \"kty\"");
        return -1;
    }
    if (use && (!json_is_string(use) || strcmp(json_string_value(use), "sig") != 0)) {
        snprintf(why, whylen, "key not meant for signatures (\"use\" is not \"sig\")");
        return -1;
    }
    if (ops && (!json_is_array(ops) || !key_ops_allow_verify(ops))) {
        snprintf(why, whylen, "key whose \"key_ops\" do not include \"verify\"");
        return -1;
    }
    if (kid &&
        (!json_is_string(kid) || json_string_length(kid) == 0 || json_string_length(kid) > 256)) {
        snprintf(why, whylen, "key with a \"kid\" that is not a short string");
        return -1;
    }
    /* Private members in a published set mean someone leaked a key; do not trust it. */
    if (json_object_get(obj, "d") || json_object_get(obj, "p") || json_object_get(obj, "k")) {
        snprintf(why, whylen, "key set contains private or symmetric key material");
        return -1;
    }
    EVP_PKEY *pkey = NULL;
    if (strcmp(kty, "RSA") == 0)
        pkey = rsa_from_json(obj, why, whylen);
    else if (strcmp(kty, "EC") == 0)
        pkey = ec_from_json(obj, why, whylen);
    else if (strcmp(kty, "OKP") == 0)
        pkey = okp_from_json(obj, why, whylen);
    else
        snprintf(why, whylen, "key type \"%.16s\" is not supported", kty);
    ERR_clear_error();
    if (!pkey)
        return -1;
    unsigned algs = jwt_algs_for_key(pkey);
    if (alg) {
        int a = json_is_string(alg)
                    ? jwt_alg_from_name(json_string_value(alg), json_string_length(alg))
                    : -1;
        if (a < 0 || !(algs & JWT_ALG_BIT(a))) {
            snprintf(why, whylen, "key whose \"alg\" is unsupported or does not fit its type");
            EVP_PKEY_free(pkey);
            return -1;
        }
        algs = JWT_ALG_BIT(a);
    }
    if (!algs) {
        EVP_PKEY_free(pkey);
        return -1;
    }
    if (kid) {
        out->kid = strdup(json_string_value(kid));
        if (!out->kid) {
            snprintf(why, whylen, "out of memory");
            EVP_PKEY_free(pkey);
            return -1;
        }
    }
    out->pkey = pkey;
    out->algs = algs;
    return 0;
}

static void set_free(struct jwk_set *set)
{
    for (size_t i = 0; i < set->n; i++)
        jwk_clear(&set->keys[i]);
    free(set->keys);
    free(set);
}

struct jwk_set *jwks_ref(struct jwk_set *set)
{
    if (set)
        atomic_fetch_add_explicit(&set->refs, 1, memory_order_relaxed);
    return set;
}

void jwks_unref(struct jwk_set *set)
{
    if (set && atomic_fetch_sub_explicit(&set->refs, 1, memory_order_acq_rel) == 1)
        set_free(set);
}

int jwks_parse(const char *buf, size_t len, struct jwk_set **out, size_t *skipped, char *why,
               size_t whylen)
{
    int rc = -1;
    json_t *doc = NULL;
    struct jwk_set *set = NULL;
    *out = NULL;
    if (skipped)
        *skipped = 0;
    if (len > JWKS_MAX_BYTES) {
        snprintf(why, whylen, "key set larger than %u bytes", JWKS_MAX_BYTES);
        goto out;
    }
    json_error_t jerr;
    doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    const json_t *keys = json_object_get(doc, "keys");
    if (!json_is_object(doc) || !json_is_array(keys)) {
        snprintf(why, whylen, "not a JSON Web Key Set (an object with a \"keys\" list)");
        goto out;
    }
    size_t n = json_array_size(keys);
    if (n > JWKS_MAX_KEYS) {
        snprintf(why, whylen, "key set with more than %d keys", JWKS_MAX_KEYS);
        goto out;
    }
    set = calloc(1, sizeof *set);
    if (!set || (n && !(set->keys = calloc(n, sizeof *set->keys)))) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    atomic_init(&set->refs, 1);
    char last_why[160] = "no keys";
    for (size_t i = 0; i < n; i++) {
        if (jwk_from_json(json_array_get(keys, i), &set->keys[set->n], last_why, sizeof last_why) ==
            0)
            set->n++;
        else if (skipped)
            (*skipped)++;
    }
    if (set->n == 0) {
        snprintf(why, whylen, "key set has no usable signature key (last problem: %s)", last_why);
        goto out;
    }
    *out = set;
    set = NULL;
    rc = 0;
out:
    if (set)
        set_free(set);
    json_decref(doc);
    return rc;
}

const struct jwk *jwks_find(const struct jwk_set *set, const char *kid, size_t kid_len,
                            unsigned alg)
{
    const struct jwk *found = NULL;
    if (!set)
        return NULL;
    for (size_t i = 0; i < set->n; i++) {
        const struct jwk *k = &set->keys[i];
        if (!(k->algs & JWT_ALG_BIT(alg)))
            continue;
        if (kid) {
            if (k->kid && strlen(k->kid) == kid_len && memcmp(k->kid, kid, kid_len) == 0)
                return k;
        } else {
            if (found)
                return NULL;
            found = k;
        }
    }
    return found;
}

/* ---- export (development tools) ------------------------------------------------------- */

static int set_b64_member(json_t *obj, const char *name, const unsigned char *p, size_t n)
{
    struct gw_buf b = {0};
    int rc = -1;
    if (jwt_b64url_encode(p, n, &b) == 0 && b.data &&
        json_object_set_new(obj, name, json_string(b.data)) == 0)
        rc = 0;
    gw_buf_free(&b);
    return rc;
}

static int set_bn_member(json_t *obj, const char *name, EVP_PKEY *key, const char *param, int width)
{
    BIGNUM *bn = NULL;
    unsigned char buf[RSA_MAX_BYTES * 2];
    int rc = -1;
    if (!EVP_PKEY_get_bn_param(key, param, &bn))
        goto out;
    int n = width ? BN_bn2binpad(bn, buf, width) : BN_bn2bin(bn, buf);
    if (n <= 0 || n > (int)sizeof buf)
        goto out;
    rc = set_b64_member(obj, name, buf, (size_t)n);
out:
    BN_free(bn);
    return rc;
}

json_t *jwk_public_json(EVP_PKEY *key, const char *kid, const char *alg)
{
    json_t *obj = json_object();
    int ok = obj != NULL;
    unsigned algs = jwt_algs_for_key(key);
    if (ok && (algs & JWT_ALGS_RSA)) {
        ok = json_object_set_new(obj, "kty", json_string("RSA")) == 0 &&
             set_bn_member(obj, "n", key, OSSL_PKEY_PARAM_RSA_N, 0) == 0 &&
             set_bn_member(obj, "e", key, OSSL_PKEY_PARAM_RSA_E, 0) == 0;
    } else if (ok && (algs & (JWT_ALG_BIT(JWT_ES256) | JWT_ALG_BIT(JWT_ES384)))) {
        int p256 = (algs & JWT_ALG_BIT(JWT_ES256)) != 0;
        int w = p256 ? 32 : 48;
        ok = json_object_set_new(obj, "kty", json_string("EC")) == 0 &&
             json_object_set_new(obj, "crv", json_string(p256 ? "P-256" : "P-384")) == 0 &&
             set_bn_member(obj, "x", key, OSSL_PKEY_PARAM_EC_PUB_X, w) == 0 &&
             set_bn_member(obj, "y", key, OSSL_PKEY_PARAM_EC_PUB_Y, w) == 0;
    } else if (ok && (algs & JWT_ALG_BIT(JWT_EDDSA))) {
        unsigned char x[32];
        size_t xl = sizeof x;
        ok = EVP_PKEY_get_raw_public_key(key, x, &xl) == 1 && xl == 32 &&
             json_object_set_new(obj, "kty", json_string("OKP")) == 0 &&
             json_object_set_new(obj, "crv", json_string("Ed25519")) == 0 &&
             set_b64_member(obj, "x", x, 32) == 0;
    } else {
        ok = 0;
    }
    if (ok && kid)
        ok = json_object_set_new(obj, "kid", json_string(kid)) == 0;
    if (ok && alg)
        ok = json_object_set_new(obj, "alg", json_string(alg)) == 0;
    if (ok)
        ok = json_object_set_new(obj, "use", json_string("sig")) == 0;
    ERR_clear_error();
    if (!ok) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

int jwk_thumbprint(EVP_PKEY *key, char out[44])
{
    /* RFC 7638: the required members only, in lexicographic order, no whitespace. */
    json_t *full = jwk_public_json(key, NULL, NULL);
    json_t *req = json_object();
    int rc = -1;
    static const char *const members[] = {"crv", "e", "kty", "n", "x", "y", NULL};
    if (!full || !req)
        goto out;
    for (const char *const *m = members; *m; m++) {
        json_t *v = json_object_get(full, *m);
        if (v && json_object_set(req, *m, v) != 0)
            goto out;
    }
    char *text = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        goto out;
    uint8_t digest[GW_SHA256_LEN];
    gw_sha256(text, strlen(text), digest);
    free(text);
    struct gw_buf b = {0};
    if (jwt_b64url_encode(digest, sizeof digest, &b) == 0 && b.len == 43) {
        memcpy(out, b.data, 44);
        rc = 0;
    }
    gw_buf_free(&b);
out:
    json_decref(full);
    json_decref(req);
    return rc;
}
