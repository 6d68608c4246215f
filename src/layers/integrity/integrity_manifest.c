/*
 * Signed manifests: pins an operator decides in advance. `toolgate tools pin` writes every
 * approved pin of the store, signed with an Ed25519 private key; a configuration names the
 * manifest and the public key, and toolgate refuses to start when the signature does not
 * verify. The signature covers the canonical JSON (integrity_canonical) of the manifest
 * without its `signature` member, so spacing and member order do not matter.
 */
#include "layers/integrity/integrity.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MANIFEST_FORMAT "toolgate-pins/1"

static EVP_PKEY *read_key(const char *path, int private_key)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    EVP_PKEY *k = private_key ? PEM_read_PrivateKey(f, NULL, NULL, NULL)
                              : PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (k && EVP_PKEY_id(k) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    ERR_clear_error();
    return k;
}

static int unhex(const char *s, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[2 * i + k];
            unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                         : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                                : 16;
            if (d == 16)
                return -1;
            v = v << 4 | d;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

static int is_hash(const json_t *v)
{
    const char *h = json_string_value(v);
    if (!h || json_string_length(v) != GW_SHA256_HEX_LEN)
        return 0;
    for (const char *p = h; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

static int bounded_name(const json_t *v, size_t max)
{
    const char *s = json_string_value(v);
    /* A NUL inside would name something else in the store than in the manifest. */
    return s && json_string_length(v) > 0 && json_string_length(v) <= max &&
           strlen(s) == json_string_length(v);
}

static int known_kind(const char *k)
{
    for (size_t i = 0; k && i < INTEGRITY_N_KINDS; i++)
        if (strcmp(k, integrity_kinds[i].kind) == 0)
            return 1;
    return 0;
}

/* The shape: exactly the members it should have, each of the type and size it should be. */
static int shape_ok(const json_t *m, char *err, size_t errlen)
{
    const json_t *pins = json_object_get(m, "pins");
    const char *fmt = json_string_value(json_object_get(m, "format"));
    if (!fmt || strcmp(fmt, MANIFEST_FORMAT) != 0 || !json_is_array(pins) ||
        json_object_size(m) != 3 || !json_is_string(json_object_get(m, "signature"))) {
        snprintf(err, errlen,
                 "not a toolgate pin manifest: it must have exactly format \"" MANIFEST_FORMAT
                 "\", pins and signature");
        return 0;
    }
    if (json_array_size(pins) > INTEGRITY_MANIFEST_MAX_PINS) {
        snprintf(err, errlen, "more than %d pins", INTEGRITY_MANIFEST_MAX_PINS);
        return 0;
    }
    for (size_t i = 0; i < json_array_size(pins); i++) {
        const json_t *p = json_array_get(pins, i);
        if (!json_is_object(p) || json_object_size(p) != 4 ||
            !bounded_name(json_object_get(p, "backend"), 300) ||
            !bounded_name(json_object_get(p, "name"), 1024) ||
            !known_kind(json_string_value(json_object_get(p, "kind"))) ||
            !is_hash(json_object_get(p, "hash"))) {
            snprintf(err, errlen,
                     "pin %zu is malformed: it must have exactly backend, kind (tool, prompt, "
                     "resource, resource_template), name and hash (64 hex digits)",
                     i);
            return 0;
        }
    }
    return 1;
}

json_t *integrity_manifest_parse(const char *text, size_t len, struct evp_pkey_st *key,
                                 char digest[GW_SHA256_HEX_LEN + 1], char *err, size_t errlen)
{
    json_error_t je;
    json_t *m = NULL, *body = NULL;
    struct gw_buf canon = {0};
    EVP_MD_CTX *md = NULL;
    unsigned char sig[64];
    int ok = 0;
    if (len > INTEGRITY_MANIFEST_MAX) {
        snprintf(err, errlen, "larger than %u bytes", INTEGRITY_MANIFEST_MAX);
        goto end;
    }
    m = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!m || !json_is_object(m)) {
        snprintf(err, errlen, "not a JSON object: %s", m ? "another type" : je.text);
        goto end;
    }
    if (!shape_ok(m, err, errlen))
        goto end;
    const json_t *sv = json_object_get(m, "signature");
    if (json_string_length(sv) != 128 || unhex(json_string_value(sv), 64, sig) != 0) {
        snprintf(err, errlen, "the signature is not 128 lower-case hex digits");
        goto end;
    }
    body = json_deep_copy(m);
    if (!body || json_object_del(body, "signature") != 0 ||
        integrity_canonical(body, &canon, 8) != 0) {
        snprintf(err, errlen, "cannot be made canonical");
        goto end;
    }
    if (!key) {
        snprintf(err, errlen, "no Ed25519 public key to verify it with");
        goto end;
    }
    md = EVP_MD_CTX_new();
    ok = md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, (EVP_PKEY *)key) == 1 &&
         EVP_DigestVerify(md, sig, sizeof sig, (const unsigned char *)canon.data, canon.len) == 1;
    if (!ok)
        snprintf(err, errlen, "the signature does not verify with the configured public key");
    else
        gw_sha256_hex(canon.data, canon.len, digest);
end:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    gw_buf_free(&canon);
    json_decref(body);
    if (!ok) {
        json_decref(m);
        return NULL;
    }
    return m;
}

json_t *integrity_manifest_load(const char *path, const char *pubkey_pem,
                                char digest[GW_SHA256_HEX_LEN + 1], char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    struct cfg_error ce = {{0}};
    if (cfg_read_file(path, INTEGRITY_MANIFEST_MAX, &text, &len, &ce) != 0) {
        snprintf(err, errlen, "%s", ce.msg);
        return NULL;
    }
    EVP_PKEY *key = pubkey_pem ? read_key(pubkey_pem, 0) : NULL;
    json_t *m = NULL;
    char why[300];
    if (!key)
        snprintf(err, errlen, "%s: the public key %s cannot be read as an Ed25519 PEM key", path,
                 pubkey_pem ? pubkey_pem : "(none)");
    else if (!(m = integrity_manifest_parse(text, len, key, digest, why, sizeof why)))
        snprintf(err, errlen, "%s: %s", path, why);
    EVP_PKEY_free(key);
    free(text);
    return m;
}

struct collect {
    json_t *pins;
    int failed;
};

static void add_pin(void *arg, const struct integrity_row *r)
{
    struct collect *c = arg;
    if (!r->approved_hash)
        return;
    json_t *p = json_pack("{s:s, s:s, s:s, s:s}", "backend", r->backend, "kind", r->kind, "name",
                          r->name, "hash", r->approved_hash);
    if (!p || json_array_append_new(c->pins, p) != 0)
        c->failed = 1;
}

int integrity_manifest_write(struct integrity_store *s, const char *backend,
                             const char *privkey_pem, const char *out_path, char *err,
                             size_t errlen)
{
    struct collect c = {json_array(), 0};
    json_t *m = NULL;
    struct gw_buf canon = {0};
    EVP_PKEY *key = read_key(privkey_pem, 1);
    EVP_MD_CTX *md = NULL;
    unsigned char sig[64];
    size_t siglen = sizeof sig;
    int rc = -1;
    if (!key) {
        snprintf(err, errlen, "the private key %s cannot be read as an Ed25519 PEM key",
                 privkey_pem);
        goto end;
    }
    /* Approved pins only: what awaits a decision is not vouched for. */
    if (!c.pins || integrity_store_rows(s, backend, "approved", add_pin, &c) != 0 || c.failed) {
        snprintf(err, errlen, "cannot read the pins: %s", integrity_store_error(s));
        goto end;
    }
    m = json_pack("{s:s, s:O}", "format", MANIFEST_FORMAT, "pins", c.pins);
    md = EVP_MD_CTX_new();
    if (!m || integrity_canonical(m, &canon, 8) != 0 || !md ||
        EVP_DigestSignInit(md, NULL, NULL, NULL, key) != 1 ||
        EVP_DigestSign(md, sig, &siglen, (const unsigned char *)canon.data, canon.len) != 1) {
        snprintf(err, errlen, "cannot sign the manifest");
        goto end;
    }
    char hex[129];
    gw_hex(sig, 64, hex);
    json_object_set_new(m, "signature", json_string(hex));
    if (json_dump_file(m, out_path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0) {
        snprintf(err, errlen, "cannot write %s", out_path);
        goto end;
    }
    rc = (int)json_array_size(c.pins);
end:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);
    gw_buf_free(&canon);
    json_decref(m);
    json_decref(c.pins);
    return rc;
}
