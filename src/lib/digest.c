#include "lib/digest.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <string.h>

void gw_sha256(const void *data, size_t len, uint8_t out[GW_SHA256_LEN])
{
    SHA256(data, len, out);
}

void gw_sha256_hex(const void *data, size_t len, char hex[GW_SHA256_HEX_LEN + 1])
{
    uint8_t md[GW_SHA256_LEN];
    gw_sha256(data, len, md);
    gw_hex(md, sizeof md, hex);
}

void gw_sha256_init(struct gw_sha256_ctx *c)
{
    c->len = 0;
    c->evp = NULL;
    c->failed = 0;
}

/* Moves the buffered parts into an EVP context, which takes every later part directly. */
static int spill(struct gw_sha256_ctx *c)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, c->buf, c->len) != 1) {
        EVP_MD_CTX_free(ctx);
        return -1;
    }
    c->evp = ctx;
    c->len = 0;
    return 0;
}

void gw_sha256_update(struct gw_sha256_ctx *c, const void *data, size_t len)
{
    if (c->failed || len == 0)
        return;
    if (!c->evp && c->len + len <= sizeof c->buf) {
        memcpy(c->buf + c->len, data, len);
        c->len += len;
        return;
    }
    if (!c->evp && spill(c) != 0) {
        c->failed = 1;
        return;
    }
    if (EVP_DigestUpdate(c->evp, data, len) != 1)
        c->failed = 1;
}

int gw_sha256_final(struct gw_sha256_ctx *c, uint8_t out[GW_SHA256_LEN])
{
    int rc = c->failed ? -1 : 0;
    if (rc == 0 && !c->evp) {
        SHA256(c->buf, c->len, out);
    } else if (rc == 0) {
        unsigned int n = 0;
        if (EVP_DigestFinal_ex(c->evp, out, &n) != 1 || n != GW_SHA256_LEN)
            rc = -1;
    }
    EVP_MD_CTX_free(c->evp);
    OPENSSL_cleanse(c->buf, c->len);
    c->evp = NULL;
    c->len = 0;
    if (rc != 0)
        memset(out, 0, GW_SHA256_LEN);
    return rc;
}

int gw_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                   uint8_t out[GW_SHA256_LEN])
{
    unsigned int n = 0;
    if (key_len > INT32_MAX)
        return -1;
    if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n) || n != GW_SHA256_LEN)
        return -1;
    return 0;
}

int gw_unhex(const char *hex, size_t n, uint8_t *out, int lower_only)
{
    for (size_t i = 0; i < n; i++) {
        int hi = gw_hex_digit(hex[2 * i], lower_only);
        int lo = hi < 0 ? -1 : gw_hex_digit(hex[2 * i + 1], lower_only);
        if (lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void gw_hex(const uint8_t *bytes, size_t n, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[bytes[i] >> 4];
        hex[2 * i + 1] = digits[bytes[i] & 15];
    }
    hex[2 * n] = '\0';
}

int gw_equal_ct(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}
