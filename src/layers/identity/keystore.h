/*
 * keystore: the verification keys of every configured issuer, kept fresh by one background
 * fetch thread per process.
 *
 * Each issuer has an immutable, refcounted key set swapped under a short lock; readers take a
 * reference and verify without holding any lock. The fetch thread uses libcurl easy with
 * tight timeouts and a size bound, never holding the lock while it fetches. A fetched set
 * lives for Cache-Control max-age (bounded below by jwks_refetch_interval and above by 24h)
 * or jwks_ttl; a failed fetch keeps the last good set and retries with backoff. A token
 * naming an unknown kid may trigger one early refetch per jwks_refetch_interval.
 *
 * An issuer with neither jwks_uri nor jwks_file is discovered: before its keys the thread
 * reads the issuer's metadata (discovery.h) and fetches keys from its jwks_uri; the metadata
 * is read again after discovery_ttl, and a failed read keeps the last good metadata.
 */
#ifndef GW_KEYSTORE_H
#define GW_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "layers/identity/identity.h"
#include "lib/discovery.h"
#include "lib/jwk.h"

/* Upper bound for a TTL taken from Cache-Control. */
#define KEYSTORE_MAX_TTL_MS (24ull * 3600 * 1000)

/*
 * Starts the keystore for cfg (borrowed; must outlive keystore_stop). Loads jwks_file sets
 * (-1 when one cannot be loaded), starts the fetch thread when any issuer has a jwks_uri and
 * waits until each has been fetched once (or timed out). Returns 0 or -1 with why.
 */
int keystore_start(const struct identity_config *cfg, char *why, size_t whylen);
/* Stops the thread; pending refetch callbacks are called (they will find no new keys). */
void keystore_stop(void);

/* A new reference to the issuer's current key set (jwks_unref it), or NULL. */
struct jwk_set *keystore_get(const char *issuer);

/*
 * The token named a key the current set lacks. When an early refetch is allowed (none
 * attempted within jwks_refetch_interval, or one is running now), registers cb(arg) to be
 * called once from the fetch thread when that fetch has ended, and returns 1. Returns 0
 * when no refetch is allowed now (the caller denies at once).
 */
int keystore_refetch(const char *issuer, void (*cb)(void *arg), void *arg);

struct keystore_stats {
    int has_keys;
    size_t n_keys;
    uint64_t fetches;            /* attempts, successful or not */
    uint64_t failures;           /* consecutive failures so far */
    uint64_t last_ttl_ms;        /* TTL chosen by the last successful fetch */
    uint64_t next_fetch_ms;      /* monotonic time of the next scheduled fetch */
    uint64_t age_ms;             /* since the current set was fetched (or loaded from its file) */
    uint64_t discovery_failures; /* consecutive failed metadata reads (discovery) */
    char last_error[512];        /* why the last fetch failed; "" after a good one */
};
/* Copies the issuer's counters; returns 0, or -1 when the issuer is not known. */
int keystore_stats(const char *issuer, struct keystore_stats *out);

/*
 * Parses a Cache-Control header value for the JWKS TTL: max-age in ms clamped to
 * [min_ms, KEYSTORE_MAX_TTL_MS]; no-store / no-cache -> min_ms. Returns 1 when the header
 * set a TTL, 0 when it says nothing about it. (Exposed for tests.)
 */
int keystore_cache_control_ttl(const char *value, size_t len, uint64_t min_ms, uint64_t *ttl_ms);

#endif
