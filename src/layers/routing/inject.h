/*
 * inject: the verified identity, as the backend receives it. Either a short-lived JWT signed
 * with toolgate's own key (never the user's token), cached per user and backend until near
 * its expiry, or plain headers for backends on a private network.
 *
 * A signer (a key and its token cache) belongs to a configuration generation's routing
 * runtime (routing.c): opened off the event loop when the generation is built, released with
 * it; minting and the cache are safe from any number of threads. inject_start/inject_stop
 * keep one signer for the process (unit tests, the benchmark).
 */
#ifndef GW_ROUTING_INJECT_H
#define GW_ROUTING_INJECT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "lib/buf.h"
#include "core/config.h"
#include "core/request.h"
#include "layers/routing/routing.h"

/* Minted tokens cached at most (set-associative, 8 ways). */
#define INJECT_CACHE_ENTRIES 4096

struct inject_signer;

/*
 * Opens a signer: loads the signing key from key_path, or, when key_path is NULL, from
 * ROUTING_DEFAULT_KEY_PATH, generating an Ed25519 key there when the file does not exist
 * (logged with the path), and makes its token cache. Returns the signer (one reference: the
 * caller's), or NULL with a sentence in why (no key material).
 */
struct inject_signer *inject_signer_open(const char *key_path, char *why, size_t whylen);
/* One more reference; the last release frees the key and the cache. NULL is ignored. */
void inject_signer_hold(struct inject_signer *s);
void inject_signer_release(struct inject_signer *s);
/* The key's kid and JWS algorithm name ("" for NULL). */
const char *inject_signer_kid(const struct inject_signer *s);
const char *inject_signer_alg(const struct inject_signer *s);
/* The public JWK (new reference), NULL for NULL or out of memory. */
json_t *inject_signer_jwk(const struct inject_signer *s);
/* Drops every cached token of s. */
void inject_signer_flush(struct inject_signer *s);
/* Appends {"keys":[...]} with the public keys of the non-NULL signers. 0 or -1. */
int inject_signers_jwks_json(const struct inject_signer *const *signers, size_t n,
                             struct gw_buf *out);
/*
 * inject_token with signer s (NULL: INJECT_E_NO_KEY).
 */
int inject_signer_token(struct inject_signer *s, const struct gw_identity *id, const char *issuer,
                        const char *audience, uint64_t ttl_ms, int64_t now_s, struct gw_buf *out,
                        int *from_cache);

/*
 * The process's signer: loads the signing key from key_path, or, when key_path is NULL, from
 * ROUTING_DEFAULT_KEY_PATH, generating an Ed25519 key there when the file does not exist
 * (logged with the path). RSA (>= 2048 bits) signs RS256, Ed25519 EdDSA, P-256 ES256.
 * Makes the token cache. Returns 0, or -1 with a sentence in why (no key material).
 */
int inject_start(const char *key_path, char *why, size_t whylen);
void inject_stop(void);
int inject_has_key(void);
/* The process's signer (NULL before inject_start), borrowed. */
struct inject_signer *inject_process_signer(void);
/* The kid of the loaded key ("" when none). */
const char *inject_kid(void);
/* Appends {"keys":[<public JWK>]} ({"keys":[]} without a key). Returns 0 or -1. */
int inject_jwks_json(struct gw_buf *out);
void inject_cache_flush(void);

enum inject_result {
    INJECT_OK = 0,
    INJECT_E_NO_KEY = -1,   /* not started, or no key */
    INJECT_E_IDENTITY = -2, /* no subject, or the user's token has expired */
    INJECT_E_INTERNAL = -3, /* memory, signing */
    INJECT_E_VALUE = -4,    /* headers: a value too long to send */
};

/*
 * The token for id calling `audience`, valid until min(now + ttl, id->expires_at): from the
 * cache when a token for the same identity, audience and issuer is there and has at least
 * half its lifetime left, else freshly minted (and cached). Appends the compact JWS to out;
 * *from_cache (may be NULL) says which. now_s is the wall clock in seconds (tests pass their
 * own). Returns an inject_result.
 */
int inject_token(const struct gw_identity *id, const char *issuer, const char *audience,
                 uint64_t ttl_ms, int64_t now_s, struct gw_buf *out, int *from_cache);

/*
 * Adds the route's injection to the upstream request: Authorization: Bearer <token> (jwt,
 * audience = ri->audience or the backend's URL, signed by `signer`, the request's
 * generation's) or the identity headers (headers). Returns an inject_result.
 */
int inject_apply(struct gw_request *req, const struct gw_route_inject *ri,
                 const struct gw_backend *be, struct inject_signer *signer);

#endif
