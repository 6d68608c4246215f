#include "layers/audit/audit_chain.h"
#include "layers/audit/audit_canon.h"
#include "lib/digest.h"
#include "lib/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <sodium.h>
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

/* Appends an integer as audit_canon_append writes a JSON integer of that value. 0 or -1. */
static int canon_integer(struct gw_buf *out, json_int_t i)
{
    char num[40];
    int n;
    if (i >= -(1ll << 53) && i <= (1ll << 53))
        n = snprintf(num, sizeof num, "%lld", (long long)i);
    else
        n = audit_canon_number((double)i, num, sizeof num);
    return n < 0 ? -1 : gw_buf_append(out, num, (size_t)n);
}

/*
 * Written directly in canonical form (the four keys in their sorted order) instead of
 * through a JSON tree: the same bytes, a few thousand instructions fewer on every commit.
 * The strings may come from a stored record (verify), so they are escaped and checked as
 * any canonical string is.
 */
int audit_checkpoint_payload(struct gw_buf *out, const char *instance, uint64_t head_seq,
                             const char *head_hash, const char *time_ns)
{
    if (!instance || !head_hash || !time_ns)
        return -1;
    size_t mark = out->len;
    if (gw_buf_append(out, "{\"head_hash\":", 13) != 0 ||
        audit_canon_string(out, head_hash, strlen(head_hash)) != 0 ||
        gw_buf_append(out, ",\"head_seq\":", 12) != 0 ||
        canon_integer(out, (json_int_t)head_seq) != 0 ||
        gw_buf_append(out, ",\"instance\":", 12) != 0 ||
        audit_canon_string(out, instance, strlen(instance)) != 0 ||
        gw_buf_append(out, ",\"time_ns\":", 11) != 0 ||
        audit_canon_string(out, time_ns, strlen(time_ns)) != 0 || gw_buf_append(out, "}", 1) != 0) {
        out->len = mark;
        return -1;
    }
    return 0;
}

int audit_time_text(struct audit_time_text *c, int64_t ns, char *out, size_t outlen)
{
    if (ns < 0 || outlen < 48) {
        if (outlen)
            out[0] = '\0';
        return -1;
    }
    int64_t secs = ns / 1000000000;
    uint32_t frac = (uint32_t)(ns % 1000000000);
    if (!c->day[0] || secs != c->secs) {
        char full[48];
        gw_time_rfc3339((uint64_t)ns, full, sizeof full);
        const char *dot = strchr(full, '.');
        if (!dot || (size_t)(dot - full) >= sizeof c->day) {
            out[0] = '\0';
            return -1;
        }
        memcpy(c->day, full, (size_t)(dot - full));
        c->day[dot - full] = '\0';
        c->secs = secs;
    }
    size_t dl = strlen(c->day);
    char *p = out;
    *p++ = '"';
    memcpy(p, c->day, dl);
    p += dl;
    *p++ = '.';
    for (int i = 8; i >= 0; i--, frac /= 10)
        p[i] = (char)('0' + frac % 10);
    p += 9;
    *p++ = 'Z';
    *p++ = '"';
    *p = '\0';
    return (int)(p - out);
}

/* Adds one member whose value is a canonical string. */
static int add_string_member(struct audit_members *ms, const char *key, const char *value,
                             struct gw_buf *tmp)
{
    gw_buf_reset(tmp);
    return audit_canon_string(tmp, value, strlen(value)) != 0 ||
                   audit_members_add_raw(ms, key, tmp->data, tmp->len) != 0
               ? -1
               : 0;
}

static int add_integer_member(struct audit_members *ms, const char *key, uint64_t value,
                              struct gw_buf *tmp)
{
    gw_buf_reset(tmp);
    return canon_integer(tmp, (json_int_t)value) != 0 ||
                   audit_members_add_raw(ms, key, tmp->data, tmp->len) != 0
               ? -1
               : 0;
}

int audit_checkpoint_members(struct audit_members *out, const struct audit_checkpoint_fields *f)
{
    struct gw_buf tmp = {0};
    int rc = -1;
    audit_members_reset(out);
    /* Added in their sorted order; the sort below costs nothing then and keeps it so. */
    if ((f->closing && audit_members_add_raw(out, "closing", "true", 4) != 0) ||
        add_string_member(out, "head_hash", f->head_hash, &tmp) != 0 ||
        add_integer_member(out, "head_seq", f->head_seq, &tmp) != 0 ||
        add_string_member(out, "key_id", f->key_id, &tmp) != 0 ||
        audit_members_add_raw(out, "kind", "\"checkpoint\"", 12) != 0 ||
        add_integer_member(out, "records", f->records, &tmp) != 0 ||
        add_string_member(out, "signature", f->signature, &tmp) != 0 ||
        add_string_member(out, "signed_time_ns", f->signed_time_ns, &tmp) != 0)
        goto out;
    audit_members_sort(out);
    rc = 0;
out:
    gw_buf_free(&tmp);
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

int audit_signer_init(struct audit_signer *s, EVP_PKEY *key)
{
    memset(s, 0, sizeof *s);
    unsigned char seed[32], pk[32], want_pk[32];
    size_t seed_len = sizeof seed, pk_len = sizeof want_pk;
    int ok = sodium_init() >= 0 && key && EVP_PKEY_get_id(key) == EVP_PKEY_ED25519 &&
             EVP_PKEY_get_raw_private_key(key, seed, &seed_len) == 1 && seed_len == 32 &&
             EVP_PKEY_get_raw_public_key(key, want_pk, &pk_len) == 1 && pk_len == 32 &&
             crypto_sign_seed_keypair(pk, s->sk, seed) == 0 && memcmp(pk, want_pk, 32) == 0;
    sodium_memzero(seed, sizeof seed);
    ERR_clear_error();
    if (!ok) {
        sodium_memzero(s->sk, sizeof s->sk);
        return -1;
    }
    /* One signature made both ways must be the same bytes, and must verify. */
    static const char probe[] = "toolgate audit signer self-check";
    char mine[129], theirs[129];
    s->ready = 1;
    if (audit_sign_with(s, probe, sizeof probe - 1, mine) != 0 ||
        audit_sign(key, probe, sizeof probe - 1, theirs) != 0 || strcmp(mine, theirs) != 0 ||
        !audit_sig_ok(key, probe, sizeof probe - 1, mine, 128)) {
        s->ready = 0;
        sodium_memzero(s->sk, sizeof s->sk);
        return -1;
    }
    return 0;
}

void audit_signer_free(struct audit_signer *s)
{
    sodium_memzero(s, sizeof *s);
}

int audit_sign_with(struct audit_signer *s, const void *data, size_t len, char sig_hex[129])
{
    unsigned char sig[64];
    unsigned long long siglen = 0;
    if (!s->ready || crypto_sign_detached(sig, &siglen, data, len, s->sk) != 0 || siglen != 64)
        return -1;
    gw_hex(sig, 64, sig_hex);
    return 0;
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
