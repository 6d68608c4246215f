/*
 * sha256: SHA-256 (FIPS 180-4) without heap allocation.
 *
 * The identity layer hashes every bearer token and every session id on the hot path; the
 * OpenSSL EVP digest API allocates a context per call, so the cache lookup would allocate.
 * This small implementation runs on the caller's stack. Tests check it against OpenSSL.
 */
#ifndef GW_IDENTITY_SHA256_H
#define GW_IDENTITY_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define IDENTITY_SHA256_LEN 32

struct identity_sha256_ctx {
    uint32_t state[8];
    uint64_t total; /* bytes hashed so far */
    uint8_t block[64];
    size_t used; /* bytes waiting in block */
};

void identity_sha256_init(struct identity_sha256_ctx *c);
void identity_sha256_update(struct identity_sha256_ctx *c, const void *data, size_t len);
void identity_sha256_final(struct identity_sha256_ctx *c, uint8_t out[IDENTITY_SHA256_LEN]);
/* One call: out = SHA-256(data). */
void identity_sha256(const void *data, size_t len, uint8_t out[IDENTITY_SHA256_LEN]);
/* Writes 64 lowercase hex digits and a NUL into hex. */
void identity_hex(const uint8_t *bytes, size_t n, char *hex);

#endif
