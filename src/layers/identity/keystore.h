/*
 * keystore: the verification keys of every configured issuer, kept fresh by one background
 * fetch thread per process.
 *
 * A store belongs to one configuration generation: its issuers are those of that generation's
 * `identity` section, and requests verify with the store of the generation they started on.
 * Each issuer has an immutable, refcounted key set swapped under a short lock; readers take a
 * reference and verify without holding any lock. The fetch thread refreshes the active store
 * (the current generation's): it uses libcurl easy with tight timeouts and a size bound, never
 * holding the lock while it fetches. A fetched set lives for Cache-Control max-age (bounded
 * below by jwks_refetch_interval and above by 24h) or jwks_ttl; a failed fetch keeps the last
 * good set and retries with backoff. A token naming an unknown kid may trigger one early
 * refetch per jwks_refetch_interval.
 *
 * An issuer with neither jwks_uri nor jwks_file is discovered: before its keys the thread
 * reads the issuer's metadata (discovery.h) and fetches keys from its jwks_uri; the metadata
 * is read again after discovery_ttl, and a failed read keeps the last good metadata.
 *
 * A reload builds the next store beside the running one (keystore_build): an issuer whose key
 * source is unchanged carries its keys, metadata and schedule over; a new one is fetched at
 * once. keystore_activate then hands the fetch thread the new store.
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

struct keystore;

/*
 * Builds a store for cfg's issuers (cfg is copied: the store may outlive it). `carry` (may be
 * NULL) is the running store: an issuer of the same name whose keys come from the same place
 * (the same jwks_uri, both discovered, or the same jwks_file with the same bytes) takes its
 * keys, metadata, schedule and counters over. Every jwks_file is read again (an unreadable or
 * invalid one fails). Every other issuer is fetched now, on the calling thread, bounded by its
 * jwks_timeout per request (discovery reads up to DISCOVERY_MAX_URLS documents first); when
 * that fails, `strict` fails the build with a sentence naming the issuer, else the failure is
 * logged and the issuer's tokens are refused until the fetch thread succeeds. Starts the fetch
 * thread when an issuer needs it. *carried_all (may be NULL) is set to 1 when every issuer's
 * key set is the one `carry` held (so tokens verified under carry verify the same way).
 * Returns the store (one reference: keystore_release it), or NULL with why.
 */
struct keystore *keystore_build(const struct identity_config *cfg, struct keystore *carry,
                                int strict, int *carried_all, char *why, size_t whylen);
/*
 * Makes k (may be NULL) the store the fetch thread refreshes; it takes a reference of its
 * own and drops the previous store's. Refetch waiters of the previous store whose fetch is
 * not running are answered at once (their requests verify again with the keys they have).
 */
void keystore_activate(struct keystore *k);
/* Drops a reference; the last frees the store. NULL is ignored. */
void keystore_release(struct keystore *k);

/*
 * For tests and tools: builds a store for cfg (not strict) and makes it active, replacing any
 * active one. Returns 0 or -1 with why.
 */
int keystore_start(const struct identity_config *cfg, char *why, size_t whylen);
/* Stops the thread, answers pending refetch waiters (they find no new keys) and releases
 * the active store. */
void keystore_stop(void);

/*
 * In the calls below, k is a generation's store, or NULL for the active one (tests, tools).
 */

/* A new reference to the issuer's current key set in k (jwks_unref it), or NULL. */
struct jwk_set *keystore_get(struct keystore *k, const char *issuer);

/*
 * The token named a key the current set lacks. When k is the active store and an early
 * refetch is allowed (none attempted within jwks_refetch_interval, or one is running now),
 * registers cb(arg) to be called once from the fetch thread when that fetch has ended (or
 * when another store becomes active first), and returns 1. Returns 0 when no refetch is
 * allowed now (the caller denies at once).
 */
int keystore_refetch(struct keystore *k, const char *issuer, void (*cb)(void *arg), void *arg);

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
/* Copies the issuer's counters in k; returns 0, or -1 when the issuer is not known there. */
int keystore_stats(struct keystore *k, const char *issuer, struct keystore_stats *out);

/*
 * Parses a Cache-Control header value for the JWKS TTL: max-age in ms clamped to
 * [min_ms, KEYSTORE_MAX_TTL_MS]; no-store / no-cache -> min_ms. Returns 1 when the header
 * set a TTL, 0 when it says nothing about it. (Exposed for tests.)
 */
int keystore_cache_control_ttl(const char *value, size_t len, uint64_t min_ms, uint64_t *ttl_ms);

#endif
