/*
 * digest: SHA-256 and HMAC-SHA-256 through OpenSSL's one-shot functions, hex encoding, and a
 * constant-time comparison.
 *
 * The request path hashes every bearer token, session id and cache key. OpenSSL's EVP API
 * allocates a context per call; its one-shot SHA256() and HMAC() do not, and use the
 * processor's SHA extensions. Hashes built from several parts gather them in a small buffer
 * on the caller's stack and hash them in one call; only parts that overflow it fall back to
 * an EVP context.
 */
#ifndef GW_DIGEST_H
#define GW_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define GW_SHA256_LEN 32
#define GW_SHA256_HEX_LEN 64

/* out = SHA-256(data). */
void gw_sha256(const void *data, size_t len, uint8_t out[GW_SHA256_LEN]);
/* The SHA-256 implementation (an EVP_MD), fetched from the provider once per process. */
const struct evp_md_st *gw_sha256_md(void);
/* Writes the 64 lowercase hex digits of SHA-256(data) and a NUL into hex. */
void gw_sha256_hex(const void *data, size_t len, char hex[GW_SHA256_HEX_LEN + 1]);

/*
 * An incremental SHA-256 of a few parts. Parts are buffered (no allocation) until `buf` is
 * full; beyond it an EVP context takes over. Every _init must be matched by _final, which
 * releases what was allocated.
 */
struct gw_sha256_ctx {
    unsigned char buf[1024];
    size_t len;
    void *evp; /* EVP_MD_CTX once buf overflowed, else NULL */
    int failed;
};

void gw_sha256_init(struct gw_sha256_ctx *c);
void gw_sha256_update(struct gw_sha256_ctx *c, const void *data, size_t len);
/* Writes the digest. Returns 0, or -1 when OpenSSL failed (out is zeroed then). */
int gw_sha256_final(struct gw_sha256_ctx *c, uint8_t out[GW_SHA256_LEN]);

/* out = HMAC-SHA-256(key, data). Returns 0 or -1. */
int gw_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                   uint8_t out[GW_SHA256_LEN]);

/* Writes 2n lowercase hex digits and a NUL into hex (2n + 1 bytes). */
void gw_hex(const uint8_t *bytes, size_t n, char *hex);

/* The value (0 to 15) of the hex digit c, or -1 when c is not one; with lower_only, the
 * uppercase digits A-F are not one either (our own encodings write lowercase only). */
static inline int gw_hex_digit(char c, int lower_only)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (!lower_only && c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads the 2n hex digits at hex into n bytes, digit by digit (no sign, space or prefix
 * passes); lower_only as for gw_hex_digit. Returns 0, or -1 at the first non-digit. */
int gw_unhex(const char *hex, size_t n, uint8_t *out, int lower_only);

/* 1 when a and b (n bytes each) are equal, in time that depends only on n. */
int gw_equal_ct(const void *a, const void *b, size_t n);

#endif
