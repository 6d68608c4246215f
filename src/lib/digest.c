#include "lib/digest.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <string.h>

/*
 * SHA256() and EVP_sha256() look the algorithm up in the provider each time they are used
 * (OpenSSL 3: a fetch by name, a dozen allocations, about 0.4 µs); it is fetched once here.
 */
static EVP_MD *sha256_fetched;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const struct evp_md_st *gw_sha256_md(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_fetched ? sha256_fetched : EVP_sha256();
}

/* A digest context per thread, kept between hashes (EVP_Digest allocates one each time). */
static pthread_key_t sha256_key;
static int sha256_key_ok;

static void sha256_ctx_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static void sha256_key_make(void)
{
    sha256_key_ok = pthread_key_create(&sha256_key, sha256_ctx_free) == 0;
}

static pthread_once_t sha256_key_once = PTHREAD_ONCE_INIT;

static EVP_MD_CTX *sha256_ctx(void)
{
    pthread_once(&sha256_key_once, sha256_key_make);
    if (!sha256_key_ok)
        return NULL;
    EVP_MD_CTX *c = pthread_getspecific(sha256_key);
    if (!c && (c = EVP_MD_CTX_new()) && pthread_setspecific(sha256_key, c) != 0) {
        EVP_MD_CTX_free(c);
        c = NULL;
    }
    return c;
}

void gw_sha256(const void *data, size_t len, uint8_t out[GW_SHA256_LEN])
{
    EVP_MD_CTX *c = sha256_ctx();
    unsigned int n = 0;
    if (!c || EVP_DigestInit_ex(c, gw_sha256_md(), NULL) != 1 ||
        EVP_DigestUpdate(c, data, len) != 1 || EVP_DigestFinal_ex(c, out, &n) != 1 ||
        n != GW_SHA256_LEN)
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
    if (!ctx || EVP_DigestInit_ex(ctx, gw_sha256_md(), NULL) != 1 ||
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
        gw_sha256(c->buf, c->len, out);
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

/*
 * Each byte's digit value plus one (0: not a digit); upper-case letters plus 16 more, so that
 * lower_only can refuse them. A table, not gw_hex_digit's comparisons: hashes are random
 * digits and letters, and the comparisons' branches were mispredicted half the time.
 */
static const uint8_t hex_values[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 27, ['B'] = 28, ['C'] = 29, ['D'] = 30, ['E'] = 31, ['F'] = 32,
};

int gw_unhex(const char *hex, size_t n, uint8_t *out, int lower_only)
{
    unsigned limit = lower_only ? 16 : 32;
    for (size_t i = 0; i < n; i++) {
        unsigned hi = hex_values[(unsigned char)hex[2 * i]];
        unsigned lo = hex_values[(unsigned char)hex[2 * i + 1]];
        if (!hi || !lo || hi > limit || lo > limit)
            return -1;
        out[i] = (uint8_t)(((hi - 1) & 15) << 4 | ((lo - 1) & 15));
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
