#include "layers/policy/policy_seal.h"
#include "lib/buf.h"
#include "lib/digest.h"
#include "lib/jwt.h"
#include "lib/timeutil.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <string.h>

#define SEAL_VERSION 1
#define NONCE_LEN 12
#define TAG_LEN 16
#define FIXED_LEN (1 + 32 + 32 + 8 + 16 + 1)
#define MAX_PLAIN (FIXED_LEN + 64)
#define MAX_RAW (NONCE_LEN + MAX_PLAIN + TAG_LEN)
static const unsigned char aad[] = "toolgate requestState v1";

/* AES-256-GCM one way or the other; 0, or -1 (for open: not sealed with this key). */
static int gcm(int enc, const uint8_t *key, const uint8_t *nonce, const uint8_t *in, size_t n,
               uint8_t *out, uint8_t *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int ok = c != NULL, len = 0;
    ok = ok && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) == 1;
    ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1;
    ok = ok && EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) == 1;
    ok = ok && EVP_CipherUpdate(c, NULL, &len, aad, (int)sizeof aad - 1) == 1;
    ok = ok && EVP_CipherUpdate(c, out, &len, in, (int)n) == 1;
    if (ok && !enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1;
    ok = ok && EVP_CipherFinal_ex(c, out + len, &len) == 1;
    if (ok && enc)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok)
        ERR_clear_error();
    return ok ? 0 : -1;
}

int policy_seal(const uint8_t key[POLICY_SEAL_KEY_LEN], const struct policy_sealed *st,
                char out[POLICY_SEAL_MAX + 1])
{
    uint8_t plain[MAX_PLAIN], raw[MAX_RAW];
    size_t rl = strnlen(st->rule, 64);
    size_t n = 0;
    plain[n++] = SEAL_VERSION;
    memcpy(plain + n, st->user, 32);
    n += 32;
    memcpy(plain + n, st->call, 32);
    n += 32;
    for (int i = 7; i >= 0; i--)
        plain[n++] = (uint8_t)(st->expires_ms >> (8 * i));
    memcpy(plain + n, st->once, 16);
    n += 16;
    plain[n++] = (uint8_t)rl;
    memcpy(plain + n, st->rule, rl);
    n += rl;
    if (gw_random_bytes(raw, NONCE_LEN) != 0 ||
        gcm(1, key, raw, plain, n, raw + NONCE_LEN, raw + NONCE_LEN + n) != 0)
        return -1;
    struct gw_buf b = {0};
    int rc = -1;
    if (jwt_b64url_encode(raw, NONCE_LEN + n + TAG_LEN, &b) == 0 &&
        b.len + sizeof POLICY_SEAL_PREFIX - 1 <= POLICY_SEAL_MAX) {
        memcpy(out, POLICY_SEAL_PREFIX, sizeof POLICY_SEAL_PREFIX - 1);
        memcpy(out + sizeof POLICY_SEAL_PREFIX - 1, b.data, b.len);
        out[sizeof POLICY_SEAL_PREFIX - 1 + b.len] = '\0';
        rc = 0;
    }
    gw_buf_free(&b);
    return rc;
}

int policy_unseal(const uint8_t key[POLICY_SEAL_KEY_LEN], const char *text, size_t len,
                  struct policy_sealed *st, const char **why)
{
    static const size_t pl = sizeof POLICY_SEAL_PREFIX - 1;
    uint8_t raw[MAX_RAW + 3], plain[MAX_PLAIN];
    memset(st, 0, sizeof *st);
    if (len < pl || memcmp(text, POLICY_SEAL_PREFIX, pl) != 0) {
        *why = "the requestState is not one toolgate issued";
        return -1;
    }
    long n = len > POLICY_SEAL_MAX ? -1 : jwt_b64url_decode(text + pl, len - pl, raw, sizeof raw);
    if (n < (long)(NONCE_LEN + FIXED_LEN + TAG_LEN) || n > (long)MAX_RAW) {
        *why = "the requestState is malformed";
        return -1;
    }
    size_t cl = (size_t)n - NONCE_LEN - TAG_LEN;
    if (gcm(0, key, raw, raw + NONCE_LEN, cl, plain, raw + NONCE_LEN + cl) != 0) {
        *why = "the requestState was altered or sealed with another key";
        return -1;
    }
    size_t rl = plain[FIXED_LEN - 1];
    if (plain[0] != SEAL_VERSION || rl > 64 || FIXED_LEN + rl != cl) {
        *why = "the requestState is malformed";
        return -1;
    }
    size_t off = 1;
    memcpy(st->user, plain + off, 32);
    off += 32;
    memcpy(st->call, plain + off, 32);
    off += 32;
    for (int i = 0; i < 8; i++)
        st->expires_ms = (st->expires_ms << 8) | plain[off++];
    memcpy(st->once, plain + off, 16);
    off += 17;
    memcpy(st->rule, plain + off, rl);
    st->rule[rl] = '\0';
    if (memchr(st->rule, '\0', rl)) {
        *why = "the requestState is malformed";
        return -1;
    }
    return 0;
}

int policy_seal_key_derive(const uint8_t *secret, size_t len, uint8_t key[POLICY_SEAL_KEY_LEN])
{
    if (len < 32)
        return -1;
    static const char label[] = "toolgate requestState key";
    return gw_hmac_sha256(label, sizeof label - 1, secret, len, key) == 0 ? 0 : -1;
}
