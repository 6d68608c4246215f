/*
 * token_cache: verified tokens, so a token seen before costs a hash and a lookup instead of a
 * signature check.
 *
 * Keyed by the SHA-256 of the token (the token itself is never kept). Set-associative: the
 * key picks a set of TOKEN_CACHE_WAYS entries, each set under its own mutex, least recently
 * used entry replaced within the set; the whole cache is allocated once, so a lookup never
 * allocates (the copy of the identity into the request does). An entry is never returned at
 * or after the token's exp. Safe to use from any number of threads.
 */
#ifndef GW_TOKEN_CACHE_H
#define GW_TOKEN_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core/request-t.h"
#include "lib/digest.h"

#define TOKEN_CACHE_WAYS 8

struct token_cache;

/*
 * Room for at least `entries` tokens (rounded up to whole sets). NULL when entries is 0.
 * The cache is reference-counted so that configuration generations whose verification rules
 * are the same can share it: token_cache_hold adds a reference (and returns c), and
 * token_cache_free drops one; the last frees the cache. NULL is ignored by both.
 */
struct token_cache *token_cache_new(size_t entries);
struct token_cache *token_cache_hold(struct token_cache *c);
void token_cache_free(struct token_cache *c);

/*
 * Looks key up. On a live hit copies the identity into *out (which must be empty; free with
 * gw_identity_clear) and returns 1; returns 0 on a miss or an expired entry, -1 when the copy
 * ran out of memory (out left empty).
 */
int token_cache_get(struct token_cache *c, const uint8_t key[GW_SHA256_LEN], int64_t now_s,
                    struct gw_identity *out);
/* Stores a copy of id under key, valid until id->expires_at. Returns 0 or -1 (memory). */
int token_cache_put(struct token_cache *c, const uint8_t key[GW_SHA256_LEN],
                    const struct gw_identity *id);
/* Entries currently stored (live or not yet evicted); for tests and metrics. */
size_t token_cache_count(struct token_cache *c);

/* Deep copy of an identity: 0, or -1 with dst left empty. */
int identity_copy(struct gw_identity *dst, const struct gw_identity *src);

#endif
