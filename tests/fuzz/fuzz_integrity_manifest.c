/*
 * Fuzz driver for the signed pin manifest parser (integrity_manifest.c), with a key made at
 * start. Beyond memory safety: nothing the fuzzer writes verifies (it cannot forge Ed25519),
 * every refusal says why, and a manifest this driver signs itself from the input's pins (when
 * the input is a well-formed one) verifies, so the parser is not simply refusing everything.
 */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layers/integrity/integrity.h"

static EVP_PKEY *key;

/* Re-signs the input as `toolgate tools pin` would; NULL when it has no usable shape. */
static char *resign(json_t *m)
{
    json_t *body = json_deep_copy(m);
    struct gw_buf canon = {0};
    char *out = NULL;
    if (!body || json_object_del(body, "signature") != 0 ||
        integrity_canonical(body, &canon, 8) != 0)
        goto end;
    unsigned char sig[64];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestSignInit(md, NULL, NULL, NULL, key) == 1 &&
             EVP_DigestSign(md, sig, &siglen, (const unsigned char *)canon.data, canon.len) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        abort();
    char hex[129];
    gw_hex(sig, 64, hex);
    json_object_set_new(body, "signature", json_string(hex));
    out = json_dumps(body, JSON_COMPACT);
end:
    gw_buf_free(&canon);
    json_decref(body);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!key && !(key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")))
        abort();
    char err[300] = "", digest[65];
    json_t *m = integrity_manifest_parse((const char *)data, size, key, digest, err, sizeof err);
    if (m)
        abort(); /* a forged Ed25519 signature */
    if (err[0] == 0)
        abort();
    /* Inputs shaped like a manifest: signed by us they must verify, and parse to the same pins. */
    json_t *in = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (in && json_is_object(in) && json_is_string(json_object_get(in, "signature"))) {
        char *signed_text = resign(in);
        if (signed_text) {
            err[0] = 0;
            json_t *ok = integrity_manifest_parse(signed_text, strlen(signed_text), key, digest,
                                                  err, sizeof err);
            /* Refused only for its shape, never for its (good) signature. */
            if (!ok && strstr(err, "does not verify"))
                abort();
            if (ok && !json_equal(json_object_get(ok, "pins"), json_object_get(in, "pins")))
                abort();
            json_decref(ok);
            free(signed_text);
        }
    }
    json_decref(in);
    return 0;
}
