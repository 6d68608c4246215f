/*
 * jwk: JSON Web Keys (RFC 7517/7518/8037) as verification keys, and immutable, refcounted
 * key sets shared by every worker thread.
 *
 * Only public signature keys are accepted: RSA (2048 to 4096 bits), EC P-256 and P-384,
 * OKP Ed25519. A key states which algorithms it verifies (its "alg" member when present,
 * else what its type allows); a token's "alg" must be one of them.
 */
#ifndef GW_JWK_H
#define GW_JWK_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stddef.h>

#include "lib/buf.h"

/* A JWKS document larger than this, or with more keys, is refused. */
#define JWKS_MAX_BYTES (256u * 1024)
#define JWKS_MAX_KEYS 64

struct jwk {
    char *kid;      /* owned; NULL when the key has none */
    EVP_PKEY *pkey; /* owned */
    unsigned algs;  /* JWT_ALG_BIT set this key may verify */
};

struct jwk_set {
    atomic_int refs;
    size_t n;
    struct jwk *keys;
};

/*
 * Builds one key from a JWK object. Returns 0, or -1 with a sentence in why (no key material
 * in it). out is left empty on failure.
 */
int jwk_from_json(const json_t *obj, struct jwk *out, char *why, size_t whylen);
void jwk_clear(struct jwk *k);

/*
 * Parses a JWKS document {"keys":[...]}. Keys that cannot be used (encryption keys,
 * unsupported types, weak or malformed keys) are skipped and counted in *skipped; a set with
 * no usable key is an error. On success *out holds a set with one reference (release with
 * jwks_unref). Returns 0 or -1 with a sentence in why.
 */
int jwks_parse(const char *buf, size_t len, struct jwk_set **out, size_t *skipped, char *why,
               size_t whylen);
struct jwk_set *jwks_ref(struct jwk_set *set);
void jwks_unref(struct jwk_set *set);

/*
 * Finds the key for a token: with a kid, the first key with that kid that may verify alg;
 * without one, the only key that may verify alg (NULL when there are several: guessing
 * would let one token cost many signature checks). Borrowed from set.
 */
const struct jwk *jwks_find(const struct jwk_set *set, const char *kid, size_t kid_len,
                            unsigned alg);

/* Public JWK of key (kty, crv/n/e/x/y, kid, alg, use:"sig"). New reference or NULL. */
json_t *jwk_public_json(EVP_PKEY *key, const char *kid, const char *alg);
/* RFC 7638 SHA-256 thumbprint, base64url (43 characters + NUL). Returns 0 or -1. */
int jwk_thumbprint(EVP_PKEY *key, char out[44]);

#endif
