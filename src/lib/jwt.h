/*
 * jwt: JWS compact serialisation (RFC 7515) for access tokens (RFC 7519, RFC 9068), verified
 * with OpenSSL 3 EVP.
 *
 * The algorithm is never taken on trust from the token: the caller passes the set of
 * algorithms the issuer allows, the key it selected says which algorithms it can verify,
 * and the token's "alg" must be in both. "none" and the HMAC family are not algorithms this
 * module knows at all, so no configuration can enable them.
 *
 * Parsing is strict: exactly three parts, canonical unpadded base64url, header and payload
 * JSON objects without duplicate keys, a bounded size.
 */
#ifndef GW_JWT_H
#define GW_JWT_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* Tokens longer than this are refused before any decoding. */
#define JWT_MAX_TOKEN 8192

enum jwt_alg {
    JWT_RS256 = 0,
    JWT_RS384,
    JWT_RS512,
    JWT_PS256,
    JWT_PS384,
    JWT_PS512,
    JWT_ES256,
    JWT_ES384,
    JWT_EDDSA,
    JWT_ALG_COUNT
};
#define JWT_ALG_BIT(a) (1u << (unsigned)(a))
#define JWT_ALGS_RSA                                                                               \
    (JWT_ALG_BIT(JWT_RS256) | JWT_ALG_BIT(JWT_RS384) | JWT_ALG_BIT(JWT_RS512) |                    \
     JWT_ALG_BIT(JWT_PS256) | JWT_ALG_BIT(JWT_PS384) | JWT_ALG_BIT(JWT_PS512))

/*
 * Verification failures. Each maps to a stable audit reason code (jwt_error_code); what the
 * client sees is the same for all of them.
 */
enum jwt_error {
    JWT_OK = 0,
    JWT_E_TOO_LARGE = -1,   /* identity.token_too_large */
    JWT_E_MALFORMED = -2,   /* identity.malformed: parts, base64url, JSON, duplicate keys */
    JWT_E_ALG = -3,         /* identity.bad_alg: unknown, none, HMAC, not allowed, not the key's */
    JWT_E_CRIT = -4,        /* identity.crit: a critical header extension we do not implement */
    JWT_E_TYP = -5,         /* identity.bad_typ */
    JWT_E_UNKNOWN_KID = -6, /* identity.unknown_kid */
    JWT_E_SIGNATURE = -7,   /* identity.bad_signature */
    JWT_E_ISSUER = -8,      /* identity.bad_issuer: iss missing or not a configured issuer */
    JWT_E_AUDIENCE = -9,    /* identity.bad_audience */
    JWT_E_NO_EXP = -10,     /* identity.missing_exp */
    JWT_E_EXPIRED = -11,    /* identity.expired */
    JWT_E_NOT_YET = -12,    /* identity.not_yet_valid: nbf in the future */
    JWT_E_IAT = -13,        /* identity.bad_iat: issued in the future, or not a number */
    JWT_E_CLAIMS = -14,     /* identity.bad_claims: a registered claim of the wrong type */
    JWT_E_NO_KEYS = -15,    /* identity.no_keys: the issuer's key set is not available */
    JWT_E_INTERNAL = -16,   /* identity.internal */
};

/* "RS256" -> JWT_RS256; -1 for anything else (including "none" and "HS256"). */
int jwt_alg_from_name(const char *name, size_t len);
const char *jwt_alg_name(enum jwt_alg alg);
const char *jwt_error_code(int err);

/*
 * Strict base64url (RFC 4648 §5, as JWS uses it): no padding, no '+' or '/', no whitespace,
 * unused trailing bits must be zero (so each value has one encoding). Decodes into out
 * (capacity outcap). Returns the decoded length, or -1.
 */
long jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t outcap);
/* Appends the unpadded base64url encoding of in to out. Returns 0 or -1 (memory). */
int jwt_b64url_encode(const unsigned char *in, size_t len, struct gw_buf *out);

/*
 * A decoded token. header and payload are owned (json_decref via jwt_parsed_free); the
 * signing input is a slice of the caller's token, which must outlive this struct.
 */
struct jwt_parsed {
    json_t *header;
    json_t *payload;
    struct gw_slice signing_input; /* "<b64 header>.<b64 payload>" */
    unsigned char sig[512];
    size_t sig_len;
    enum jwt_alg alg;
    const char *kid; /* borrowed from header; NULL when absent */
    size_t kid_len;
};

/*
 * Splits and decodes a compact JWS and checks its header: alg known (never none/HMAC),
 * no "crit" (we implement no extension), typ absent or a JWT access-token type. Does not
 * verify the signature or claims. The header fields jku, x5u, jwk and x5c are ignored: keys
 * come only from configuration. Returns JWT_OK or a negative jwt_error; on error out is
 * freed already.
 */
int jwt_parse(const char *token, size_t len, struct jwt_parsed *out);
void jwt_parsed_free(struct jwt_parsed *p);

/*
 * Verifies the signature with key for p->alg. The caller has checked that the key may be
 * used with p->alg. Returns JWT_OK, JWT_E_SIGNATURE or JWT_E_INTERNAL. Leaves no OpenSSL
 * error queued.
 */
int jwt_verify_signature(const struct jwt_parsed *p, EVP_PKEY *key);

/* What the claims of a token are checked against (one configured issuer). */
struct jwt_claim_rules {
    const char *issuer;
    char *const *audiences; /* NULL-terminated; the token's aud must contain one */
    int64_t leeway_s;
    int64_t now_s;
};

/*
 * Checks iss (exact), aud (string or array containing a configured audience), exp
 * (required), nbf and iat (when present), each with leeway. Stores exp in *exp_out.
 */
int jwt_check_claims(const json_t *payload, const struct jwt_claim_rules *rules, int64_t *exp_out);

/*
 * Signs: appends b64url(header_json) "." b64url(payload_json) "." b64url(signature) to out.
 * The header and payload texts are taken as given (so tests can craft hostile tokens).
 * ES256/ES384 signatures are written as raw r||s. Returns 0 or -1.
 */
int jwt_sign_compact(EVP_PKEY *key, enum jwt_alg alg, const char *header_json, size_t header_len,
                     const char *payload_json, size_t payload_len, struct gw_buf *out);

/* Which algorithms a key type can serve (RSA: RS*, PS*; P-256: ES256; P-384: ES384; Ed25519). */
unsigned jwt_algs_for_key(EVP_PKEY *key);

#endif
