/*
 * auth: the demo backend verifies the identity toolgate injects (routes[].inject mode jwt):
 * `Authorization: Bearer <JWT>` signed with toolgate's key, whose public keys toolgate serves
 * at <public_url>/.well-known/jwks.json.
 *
 * Verification uses toolgate's own JWS verifier (src/lib/jwt.h, jwk.h): the
 * algorithm is the one the selected JWK allows (never "none" or HMAC, which the verifier does
 * not know), `iss` and `aud` must equal the configured values exactly, `exp` is required and
 * checked with EHR_AUTH_LEEWAY_S of leeway, `sub` must be a string.
 *
 * Keys come from --jwks-file (read once) or --jwks-url (fetched at start, retried for a few
 * seconds so toolgate may start second, and fetched again when a token names an unknown kid,
 * at most once every EHR_AUTH_REFETCH_MS). The key set is shared by every worker behind a
 * mutex; a re-fetch blocks the worker that asked for it for at most EHR_AUTH_FETCH_TIMEOUT_MS.
 */
#ifndef EHR_AUTH_H
#define EHR_AUTH_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define EHR_AUTH_LEEWAY_S 5
#define EHR_AUTH_REFETCH_MS 10000
#define EHR_AUTH_FETCH_TIMEOUT_MS 2000
#define EHR_AUTH_START_RETRY_MS 10000

struct jwk_set;

struct ehr_auth {
    char *jwks_url;  /* owned; NULL when keys come from a file */
    char *jwks_file; /* owned */
    char *issuer;    /* owned */
    char *audience;  /* owned */
    pthread_mutex_t lock;
    struct jwk_set *keys;   /* current set (one reference held here); NULL before a load */
    uint64_t last_fetch_ms; /* monotonic time of the last fetch attempt */
    /* Test hook: when set, used instead of libcurl to fetch jwks_url (0 or -1, fills out). */
    int (*fetch)(const char *url, struct gw_buf *out);
};

/* What a verified token says. Strings owned; free with ehr_principal_clear. */
struct ehr_principal {
    char *subject;
    char *tenant;   /* NULL when the token has none */
    char *client;   /* act.sub; NULL when absent */
    json_t *roles;  /* array of strings (empty when absent) */
    json_t *scopes; /* array of strings (empty when absent) */
    int64_t exp;
};

/*
 * Sets the configuration (copies the strings; either url or file, issuer and audience are
 * required) and loads the keys: the file once, or the URL, retried every 200 ms for up to
 * retry_ms while it fails. Returns 0, or -1 with a sentence in why.
 */
int ehr_auth_init(struct ehr_auth *a, const char *jwks_url, const char *jwks_file,
                  const char *issuer, const char *audience, uint64_t retry_ms, char *why,
                  size_t whylen);
void ehr_auth_free(struct ehr_auth *a);

/*
 * Verifies the value of an Authorization header (a slice off the wire; NULL ptr = absent)
 * at time now_s. Returns 0 and fills *out, or -1 with a short reason in why (never the token).
 */
int ehr_auth_verify(struct ehr_auth *a, struct gw_slice authorization, int64_t now_s,
                    struct ehr_principal *out, char *why, size_t whylen);
void ehr_principal_clear(struct ehr_principal *p);

#endif
