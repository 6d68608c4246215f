#include "lib/jwt.h"
#include "lib/base64.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/rsa.h>
#include <string.h>
#include <strings.h>

static const char *const alg_names[JWT_ALG_COUNT] = {
    [JWT_RS256] = "RS256", [JWT_RS384] = "RS384", [JWT_RS512] = "RS512",
    [JWT_PS256] = "PS256", [JWT_PS384] = "PS384", [JWT_PS512] = "PS512",
    [JWT_ES256] = "ES256", [JWT_ES384] = "ES384", [JWT_EDDSA] = "EdDSA",
};

int jwt_alg_from_name(const char *name, size_t len)
{
    for (int a = 0; a < JWT_ALG_COUNT; a++)
        if (strlen(alg_names[a]) == len && memcmp(alg_names[a], name, len) == 0)
            return a;
    return -1;
}

const char *jwt_alg_name(enum jwt_alg alg)
{
    return (unsigned)alg < JWT_ALG_COUNT ? alg_names[alg] : "?";
}

const char *jwt_error_code(int err)
{
    switch (err) {
    case JWT_OK:
        return "identity.ok";
    case JWT_E_TOO_LARGE:
        return "identity.token_too_large";
    case JWT_E_MALFORMED:
        return "identity.malformed";
    case JWT_E_ALG:
        return "identity.bad_alg";
    case JWT_E_CRIT:
        return "identity.crit";
    case JWT_E_TYP:
        return "identity.bad_typ";
    case JWT_E_UNKNOWN_KID:
        return "identity.unknown_kid";
    case JWT_E_SIGNATURE:
        return "identity.bad_signature";
    case JWT_E_ISSUER:
        return "identity.bad_issuer";
    case JWT_E_AUDIENCE:
        return "identity.bad_audience";
    case JWT_E_NO_EXP:
        return "identity.missing_exp";
    case JWT_E_EXPIRED:
        return "identity.expired";
    case JWT_E_NOT_YET:
        return "identity.not_yet_valid";
    case JWT_E_IAT:
        return "identity.bad_iat";
    case JWT_E_CLAIMS:
        return "identity.bad_claims";
    case JWT_E_NO_KEYS:
        return "identity.no_keys";
    default:
        return "identity.internal";
    }
}

/* ---- base64url ---------------------------------------------------------------------- */

static int b64_value(unsigned char c)
{
    return c == '-' ? 62 : c == '_' ? 63 : gw_b64_alnum(c);
}

long jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t outcap)
{
    /* A lone trailing character carries 6 bits, less than a byte: never valid. */
    if (len % 4 == 1)
        return -1;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > outcap)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Leftover bits must be zero, or two strings would decode to the same bytes. */
    if (acc != 0)
        return -1;
    return (long)o;
}

int jwt_b64url_encode(const unsigned char *in, size_t len, struct gw_buf *out)
{
    static const char alphabet[] = GW_B64_URL_DIGITS;
    if (gw_buf_reserve(out, len / 3 * 4 + 4) != 0)
        return -1;
    size_t i = 0;
    char *p = out->data + out->len;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *p++ = alphabet[v >> 18];
        *p++ = alphabet[(v >> 12) & 63];
        *p++ = alphabet[(v >> 6) & 63];
        *p++ = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *p++ = alphabet[v >> 18];
        *p++ = alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *p++ = alphabet[v >> 18];
        *p++ = alphabet[(v >> 12) & 63];
        *p++ = alphabet[(v >> 6) & 63];
    }
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
    return 0;
}

/* ---- parsing -------------------------------------------------------------------------- */

static json_t *decode_json_part(const char *in, size_t len)
{
    unsigned char buf[JWT_MAX_TOKEN];
    long n = jwt_b64url_decode(in, len, buf, sizeof buf);
    if (n <= 0)
        return NULL;
    json_error_t jerr;
    /* Duplicate keys would let two readers of the same token see different claims. */
    json_t *j = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int typ_acceptable(const char *typ)
{
    return strcasecmp(typ, "JWT") == 0 || strcasecmp(typ, "at+jwt") == 0 ||
           strcasecmp(typ, "application/at+jwt") == 0;
}

void jwt_parsed_free(struct jwt_parsed *p)
{
    json_decref(p->header);
    json_decref(p->payload);
    memset(p, 0, sizeof *p);
}

int jwt_parse(const char *token, size_t len, struct jwt_parsed *out)
{
    memset(out, 0, sizeof *out);
    if (len > JWT_MAX_TOKEN)
        return JWT_E_TOO_LARGE;
    const char *dot1 = memchr(token, '.', len);
    if (!dot1)
        return JWT_E_MALFORMED;
    const char *dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return JWT_E_MALFORMED; /* not three parts (a JWE has five) */
    size_t hlen = (size_t)(dot1 - token);
    size_t plen = (size_t)(dot2 - dot1 - 1);
    size_t slen = len - (size_t)(dot2 + 1 - token);
    if (hlen == 0 || plen == 0 || slen == 0)
        return JWT_E_MALFORMED;

    int rc = JWT_E_MALFORMED;
    out->header = decode_json_part(token, hlen);
    if (!out->header)
        goto fail;
    json_t *alg = json_object_get(out->header, "alg");
    if (!json_is_string(alg)) {
        rc = JWT_E_ALG;
        goto fail;
    }
    int a = jwt_alg_from_name(json_string_value(alg), json_string_length(alg));
    if (a < 0) {
        rc = JWT_E_ALG;
        goto fail;
    }
    out->alg = (enum jwt_alg)a;
    /* We implement no JWS extension, so any "crit" names one we do not understand. */
    if (json_object_get(out->header, "crit")) {
        rc = JWT_E_CRIT;
        goto fail;
    }
    json_t *typ = json_object_get(out->header, "typ");
    if (typ && (!json_is_string(typ) || !typ_acceptable(json_string_value(typ)))) {
        rc = JWT_E_TYP;
        goto fail;
    }
    json_t *kid = json_object_get(out->header, "kid");
    if (kid) {
        if (!json_is_string(kid) || json_string_length(kid) == 0 || json_string_length(kid) > 256) {
            rc = JWT_E_MALFORMED;
            goto fail;
        }
        out->kid = json_string_value(kid);
        out->kid_len = json_string_length(kid);
    }
    out->payload = decode_json_part(dot1 + 1, plen);
    if (!out->payload)
        goto fail;
    long n = jwt_b64url_decode(dot2 + 1, slen, out->sig, sizeof out->sig);
    if (n <= 0)
        goto fail;
    out->sig_len = (size_t)n;
    out->signing_input = (struct gw_slice){token, (size_t)(dot2 - token)};
    return JWT_OK;
fail:
    jwt_parsed_free(out);
    return rc;
}

/* ---- keys and signatures -------------------------------------------------------------- */

static int ec_curve_nid(EVP_PKEY *key)
{
    char name[64];
    size_t nlen = 0;
    if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &nlen))
        return NID_undef;
    return OBJ_txt2nid(name);
}

unsigned jwt_algs_for_key(EVP_PKEY *key)
{
    unsigned algs = 0;
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
        if (EVP_PKEY_get_bits(key) >= 2048)
            algs = JWT_ALGS_RSA;
        break;
    case EVP_PKEY_EC: {
        int nid = ec_curve_nid(key);
        if (nid == NID_X9_62_prime256v1)
            algs = JWT_ALG_BIT(JWT_ES256);
        else if (nid == NID_secp384r1)
            algs = JWT_ALG_BIT(JWT_ES384);
        break;
    }
    case EVP_PKEY_ED25519:
        algs = JWT_ALG_BIT(JWT_EDDSA);
        break;
    default:
        break;
    }
    ERR_clear_error();
    return algs;
}

static const EVP_MD *alg_digest(enum jwt_alg alg)
{
    switch (alg) {
    case JWT_RS256:
    case JWT_PS256:
    case JWT_ES256:
        return EVP_sha256();
    case JWT_RS384:
    case JWT_PS384:
    case JWT_ES384:
        return EVP_sha384();
    case JWT_RS512:
    case JWT_PS512:
        return EVP_sha512();
    default:
        return NULL;
    }
}

static int alg_is_pss(enum jwt_alg alg)
{
    return alg == JWT_PS256 || alg == JWT_PS384 || alg == JWT_PS512;
}

static size_t ec_coordinate_len(enum jwt_alg alg)
{
    return alg == JWT_ES256 ? 32 : alg == JWT_ES384 ? 48 : 0;
}

static int setup_pss(EVP_PKEY_CTX *pctx, const EVP_MD *md)
{
    /* RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output. */
    return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) > 0;
}

/* The group orders n of P-256 and P-384 (SEC 2), big-endian. */
static const unsigned char p256_order[32] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51};
static const unsigned char p384_order[48] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73};

/* A DER INTEGER for a non-negative big-endian value; returns the bytes written. */
static size_t der_integer(unsigned char *out, const unsigned char *v, size_t len)
{
    while (len > 1 && v[0] == 0) {
        v++;
        len--;
    }
    size_t pad = (v[0] & 0x80) ? 1 : 0;
    out[0] = 0x02;
    out[1] = (unsigned char)(len + pad);
    if (pad)
        out[2] = 0;
    memcpy(out + 2 + pad, v, len);
    return 2 + pad + len;
}

/*
 * JWS carries ECDSA signatures as fixed-width r||s (RFC 7518 §3.4); OpenSSL wants DER.
 * r and s must lie in [1, n-1]: a zero or oversized value is refused here rather than
 * trusting every library version to catch it. Written by hand into the caller's buffer
 * (at most 2 + 2 * (3 + 48) bytes): this runs for every uncached ES token.
 */
static int ec_raw_to_der(const unsigned char *sig, size_t len, enum jwt_alg alg, unsigned char *der,
                         size_t *der_len)
{
    size_t half = ec_coordinate_len(alg);
    if (half == 0 || len != 2 * half)
        return -1;
    const unsigned char *order = half == 32 ? p256_order : p384_order;
    for (int k = 0; k < 2; k++) {
        const unsigned char *v = sig + k * half;
        size_t nz = 0;
        while (nz < half && v[nz] == 0)
            nz++;
        if (nz == half || memcmp(v, order, half) >= 0)
            return -1;
    }
    size_t body = der_integer(der + 2, sig, half);
    body += der_integer(der + 2 + body, sig + half, half);
    der[0] = 0x30;
    der[1] = (unsigned char)body; /* < 128: short form */
    *der_len = 2 + body;
    return 0;
}

int jwt_verify_signature(const struct jwt_parsed *p, EVP_PKEY *key)
{
    int rc = JWT_E_SIGNATURE;
    EVP_MD_CTX *ctx = NULL;
    unsigned char der[2 + 2 * (3 + 48)];
    const unsigned char *sig = p->sig;
    size_t sig_len = p->sig_len;

    if (!(jwt_algs_for_key(key) & JWT_ALG_BIT(p->alg)))
        return JWT_E_ALG;
    if (p->alg == JWT_ES256 || p->alg == JWT_ES384) {
        size_t der_len = 0;
        if (ec_raw_to_der(p->sig, p->sig_len, p->alg, der, &der_len) != 0)
            goto out;
        sig = der;
        sig_len = der_len;
    } else if (p->alg == JWT_EDDSA && p->sig_len != 64) {
        goto out;
    }
    ctx = EVP_MD_CTX_new();
    if (!ctx) {
        rc = JWT_E_INTERNAL;
        goto out;
    }
    EVP_PKEY_CTX *pctx = NULL;
    const EVP_MD *md = alg_digest(p->alg);
    if (EVP_DigestVerifyInit(ctx, &pctx, md, NULL, key) != 1) {
        rc = JWT_E_INTERNAL;
        goto out;
    }
    if (alg_is_pss(p->alg) && !setup_pss(pctx, md)) {
        rc = JWT_E_INTERNAL;
        goto out;
    }
    if (EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)p->signing_input.ptr,
                         p->signing_input.len) == 1)
        rc = JWT_OK;
out:
    EVP_MD_CTX_free(ctx);
    /* A failed verify leaves errors queued; they must not leak into the next caller. */
    ERR_clear_error();
    return rc;
}

/* ---- claims --------------------------------------------------------------------------- */

/* NumericDate (RFC 7519 §2): a JSON number of seconds; fractions are allowed. */
static int numeric_date(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d > -9.0e15 && d < 9.0e15))
            return -1;
        *out = (int64_t)d;
        return 0;
    }
    return -1;
}

static int audience_matches(const char *aud, char *const *audiences)
{
    for (char *const *a = audiences; a && *a; a++)
        if (strcmp(aud, *a) == 0)
            return 1;
    return 0;
}

int jwt_check_claims(const json_t *payload, const struct jwt_claim_rules *rules, int64_t *exp_out)
{
    const json_t *iss = json_object_get(payload, "iss");
    if (!json_is_string(iss) || strcmp(json_string_value(iss), rules->issuer) != 0)
        return JWT_E_ISSUER;

    const json_t *aud = json_object_get(payload, "aud");
    int aud_ok = 0;
    if (json_is_string(aud)) {
        aud_ok = audience_matches(json_string_value(aud), rules->audiences);
    } else if (json_is_array(aud)) {
        size_t i;
        const json_t *v;
        if (json_array_size(aud) > 64)
            return JWT_E_AUDIENCE;
        json_array_foreach(aud, i, v)
        {
            if (!json_is_string(v))
                return JWT_E_CLAIMS;
            if (audience_matches(json_string_value(v), rules->audiences))
                aud_ok = 1;
        }
    }
    if (!aud_ok)
        return JWT_E_AUDIENCE;

    int64_t exp, nbf, iat;
    const json_t *v = json_object_get(payload, "exp");
    if (!v)
        return JWT_E_NO_EXP;
    if (numeric_date(v, &exp) != 0)
        return JWT_E_CLAIMS;
    if (rules->now_s >= exp + rules->leeway_s)
        return JWT_E_EXPIRED;
    v = json_object_get(payload, "nbf");
    if (v) {
        if (numeric_date(v, &nbf) != 0)
            return JWT_E_CLAIMS;
        if (rules->now_s + rules->leeway_s < nbf)
            return JWT_E_NOT_YET;
    }
    v = json_object_get(payload, "iat");
    if (v) {
        if (numeric_date(v, &iat) != 0)
            return JWT_E_IAT;
        if (iat > rules->now_s + rules->leeway_s)
            return JWT_E_IAT;
    }
    if (exp_out)
        *exp_out = exp;
    return JWT_OK;
}

/* ---- signing (development tools and tests) ------------------------------------------ */

/* DER ECDSA signature -> fixed-width r||s. */
static int ec_der_to_raw(const unsigned char *der, size_t der_len, size_t half, unsigned char *out)
{
    const unsigned char *p = der;
    ECDSA_SIG *esig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (!esig)
        return -1;
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(esig, &r, &s);
    int rc = BN_bn2binpad(r, out, (int)half) == (int)half &&
                     BN_bn2binpad(s, out + half, (int)half) == (int)half
                 ? 0
                 : -1;
    ECDSA_SIG_free(esig);
    return rc;
}

int jwt_sign_compact(EVP_PKEY *key, enum jwt_alg alg, const char *header_json, size_t header_len,
                     const char *payload_json, size_t payload_len, struct gw_buf *out)
{
    int rc = -1;
    EVP_MD_CTX *ctx = NULL;
    unsigned char *sig = NULL;
    size_t start = out->len;
    if (jwt_b64url_encode((const unsigned char *)header_json, header_len, out) != 0 ||
        gw_buf_append(out, ".", 1) != 0 ||
        jwt_b64url_encode((const unsigned char *)payload_json, payload_len, out) != 0)
        goto out;
    size_t input_len = out->len - start;
    ctx = EVP_MD_CTX_new();
    if (!ctx)
        goto out;
    EVP_PKEY_CTX *pctx = NULL;
    const EVP_MD *md = alg == JWT_EDDSA ? NULL : alg_digest(alg);
    if (EVP_DigestSignInit(ctx, &pctx, md, NULL, key) != 1)
        goto out;
    if (alg_is_pss(alg) && !setup_pss(pctx, md))
        goto out;
    size_t sig_len = 0;
    const unsigned char *tbs = (const unsigned char *)out->data + start;
    if (EVP_DigestSign(ctx, NULL, &sig_len, tbs, input_len) != 1)
        goto out;
    sig = OPENSSL_malloc(sig_len);
    if (!sig || EVP_DigestSign(ctx, sig, &sig_len, tbs, input_len) != 1)
        goto out;
    unsigned char raw[96];
    const unsigned char *final_sig = sig;
    size_t final_len = sig_len;
    if (alg == JWT_ES256 || alg == JWT_ES384) {
        size_t half = ec_coordinate_len(alg);
        if (ec_der_to_raw(sig, sig_len, half, raw) != 0)
            goto out;
        final_sig = raw;
        final_len = 2 * half;
    }
    if (gw_buf_append(out, ".", 1) != 0 || jwt_b64url_encode(final_sig, final_len, out) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0 && out->data) {
        out->len = start;
        out->data[start] = '\0';
    }
    OPENSSL_free(sig);
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}
