/*
 * policy_seal: the sealed `requestState` of a call waiting for its user's approval in revision
 * 2026-07-28 (stateless: toolgate keeps nothing between the call and its retry, so the state
 * carries what the retry is held to).
 *
 * The state is "tgs1." and base64url (no padding) of nonce (12) || AES-256-GCM ciphertext ||
 * tag (16); the plaintext is version (1) | user hash (32) | call digest (32) | expiry, Unix ms,
 * big-endian (8) | single-use id (16) | rule id length (1) | rule id. The key comes from
 * policy.approvals.state_key (a file; the same on every instance) or is random per process.
 * Pure: no clock, no table; the layer checks expiry, user, call and single use.
 */
#ifndef GW_POLICY_SEAL_H
#define GW_POLICY_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define POLICY_SEAL_PREFIX "tgs1."
#define POLICY_SEAL_KEY_LEN 32
/* Longest state toolgate issues or reads (a longer one is refused before decoding). */
#define POLICY_SEAL_MAX 256

struct policy_sealed {
    uint8_t user[32];    /* SHA-256 of issuer NUL subject */
    uint8_t call[32];    /* the call's digest (route, method, tool, canonical arguments, rule) */
    uint64_t expires_ms; /* Unix time */
    uint8_t once[16];    /* single-use id */
    char rule[65];
};

/* Seals st into out (POLICY_SEAL_MAX + 1 bytes). Returns 0, or -1 (crypto failure). */
int policy_seal(const uint8_t key[POLICY_SEAL_KEY_LEN], const struct policy_sealed *st,
                char out[POLICY_SEAL_MAX + 1]);
/*
 * Opens a state (len bytes, not NUL-terminated). Returns 0 and fills *st, or -1 with *why a
 * sentence for the client: not toolgate's, malformed, or not sealed with this key (altered).
 */
int policy_unseal(const uint8_t key[POLICY_SEAL_KEY_LEN], const char *text, size_t len,
                  struct policy_sealed *st, const char **why);
/* The key from a file's bytes (at least 32 of them). Returns 0, or -1 when too short. */
int policy_seal_key_derive(const uint8_t *secret, size_t len, uint8_t key[POLICY_SEAL_KEY_LEN]);

#endif
