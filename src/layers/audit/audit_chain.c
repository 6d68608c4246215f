#include "layers/audit/audit_chain.h"
#include "layers/audit/audit_canon.h"
#include "lib/digest.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int audit_chain_hash(const char *prev_hex, const char *canon, size_t len, char out[65])
{
    uint8_t md[GW_SHA256_LEN];
    struct gw_sha256_ctx ctx;
    gw_sha256_init(&ctx);
    gw_sha256_update(&ctx, prev_hex, 64);
    gw_sha256_update(&ctx, canon, len);
    if (gw_sha256_final(&ctx, md) != 0)
        return -1;
    gw_hex(md, sizeof md, out);
    return 0;
}

int audit_chain_hasher_init(struct audit_chain_hasher *h)
{
    h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    h->ctx = EVP_MD_CTX_new();
    return h->md && h->ctx ? 0 : -1;
}

void audit_chain_hasher_free(struct audit_chain_hasher *h)
{
    EVP_MD_CTX_free(h->ctx);
    EVP_MD_free(h->md);
    h->ctx = NULL;
    h->md = NULL;
}

int audit_chain_hash_with(struct audit_chain_hasher *h, const char *prev_hex, const char *canon,
                          size_t len, char out[65])
{
    uint8_t md[GW_SHA256_LEN];
    unsigned int n = 0;
    if (!h->ctx || EVP_DigestInit_ex2(h->ctx, h->md, NULL) != 1 ||
        EVP_DigestUpdate(h->ctx, prev_hex, 64) != 1 || EVP_DigestUpdate(h->ctx, canon, len) != 1 ||
        EVP_DigestFinal_ex(h->ctx, md, &n) != 1 || n != GW_SHA256_LEN)
        return -1;
    gw_hex(md, sizeof md, out);
    return 0;
}

int audit_checkpoint_payload(struct gw_buf *out, const char *instance, uint64_t head_seq,
                             const char *head_hash, const char *time_ns)
{
    json_t *o = json_pack("{s:s, s:I, s:s, s:s}", "head_hash", head_hash, "head_seq",
                          (json_int_t)head_seq, "instance", instance, "time_ns", time_ns);
    if (!o)
        return -1;
    int rc = audit_canon_append(out, o);
    json_decref(o);
    return rc;
}

static void ossl_err(char *err, size_t errlen, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char buf[160] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    snprintf(err, errlen, "%s %s%s%s", what, path, buf[0] ? ": " : "", buf);
}

static EVP_PKEY *load_pem(const char *path, int private, char *err, size_t errlen)
{
    EVP_PKEY *key = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open key file %s: %s", path, strerror(errno));
        return NULL;
    }
    if (private) {
        key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    } else {
        key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
        if (!key) {
            ERR_clear_error();
            rewind(f);
            key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        }
    }
    fclose(f);
    if (!key) {
        ossl_err(err, errlen, "cannot read a PEM key from", path);
        return NULL;
    }
    if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
        snprintf(err, errlen, "key in %s is not an Ed25519 key", path);
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

EVP_PKEY *audit_key_load_private(const char *path, char *err, size_t errlen)
{
    return load_pem(path, 1, err, errlen);
}

EVP_PKEY *audit_key_load_public(const char *path, char *err, size_t errlen)
{
    return load_pem(path, 0, err, errlen);
}

static int write_pem(const char *path, EVP_PKEY *key, int private, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, private ? 0600 : 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create key file %s: %s", path, strerror(errno));
        return -1;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        snprintf(err, errlen, "cannot write key file %s", path);
        return -1;
    }
    int ok = private ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
                     : PEM_write_PUBKEY(f, key);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        ok = 0;
    if (fclose(f) != 0)
        ok = 0;
    if (ok != 1) {
        ossl_err(err, errlen, "cannot write key file", path);
        return -1;
    }
    return 0;
}

EVP_PKEY *audit_key_generate(const char *path, char *err, size_t errlen)
{
    EVP_PKEY *key = NULL;
    char pub[4096];
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    if (!ctx || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &key) != 1) {
        ossl_err(err, errlen, "cannot generate an Ed25519 key for", path);
        goto out;
    }
    if ((size_t)snprintf(pub, sizeof pub, "%s.pub", path) >= sizeof pub) {
        snprintf(err, errlen, "key path too long");
        goto fail;
    }
    if (write_pem(path, key, 1, err, errlen) != 0)
        goto fail;
    if (write_pem(pub, key, 0, err, errlen) != 0)
        goto fail;
    goto out;
fail:
    EVP_PKEY_free(key);
    key = NULL;
out:
    EVP_PKEY_CTX_free(ctx);
    return key;
}

int audit_key_id(EVP_PKEY *key, char out[65])
{
    unsigned char raw[32];
    size_t len = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 || len != 32) {
        ERR_clear_error();
        return -1;
    }
    gw_sha256_hex(raw, len, out);
    return 0;
}

int audit_sign(EVP_PKEY *key, const void *data, size_t len, char sig_hex[129])
{
    unsigned char sig[64];
    size_t siglen = sizeof sig;
    int rc = -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
        EVP_DigestSign(ctx, sig, &siglen, data, len) == 1 && siglen == 64) {
        gw_hex(sig, 64, sig_hex);
        rc = 0;
    } else {
        ERR_clear_error();
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

static int unhex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int audit_sig_ok(EVP_PKEY *key, const void *data, size_t len, const char *sig_hex, size_t sig_len)
{
    unsigned char sig[64];
    if (sig_len != 128)
        return 0;
    for (size_t i = 0; i < 64; i++) {
        int h = unhex(sig_hex[2 * i]), l = unhex(sig_hex[2 * i + 1]);
        if (h < 0 || l < 0)
            return 0;
        sig[i] = (unsigned char)(h << 4 | l);
    }
    int ok = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
        EVP_DigestVerify(ctx, sig, 64, data, len) == 1)
        ok = 1;
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    return ok;
}
