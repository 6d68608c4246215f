/*
 * Fuzzes what the audit code reads back from a store someone else may have written:
 *   mode 0: canonical JSON of arbitrary JSON is stable (canon(parse(canon(x))) == canon(x))
 *           and preserves the value;
 *   mode 1: the verifier over rows taken from the input, one record per line, hashed into a
 *           correct chain so the checks past the hash (fields, checkpoints) are reached.
 * The verifier must never crash, and must reject every one of these chains (none is
 * signed by the key it is given).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layers/audit/audit_canon.h"
#include "layers/audit/audit_chain.h"
#include "layers/audit/audit_verify.h"

static void fuzz_canon(const uint8_t *data, size_t size)
{
    json_error_t e;
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);
    if (!v)
        return;
    struct gw_buf a = {0}, b = {0};
    if (audit_canon_append(&a, v) == 0) {
        /* Numbers re-read as doubles: JSON numbers are doubles to RFC 8785 (and jansson
         * cannot hold integers past int64, which ES6 notation prints up to 1e21). */
        json_t *w = json_loadb(a.data, a.len,
                               JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &e);
        if (!w)
            abort(); /* canonical output must parse */
        if (audit_canon_append(&b, w) != 0 || a.len != b.len || memcmp(a.data, b.data, a.len))
            abort(); /* and be a fixed point */
        json_decref(w);
    }
    gw_buf_free(&a);
    gw_buf_free(&b);
    json_decref(v);
}

struct fake_store {
    struct audit_store base;
    const char *data;
    size_t size;
};

static int fake_scan(struct audit_store *st, const struct audit_filter *f, audit_row_cb cb,
                     void *arg)
{
    struct fake_store *fs = (struct fake_store *)st;
    char prev[65] = AUDIT_GENESIS_HASH, hash[65];
    size_t off = 0;
    uint64_t seq = 1;
    while (off < fs->size) {
        const char *line = fs->data + off;
        const char *nl = memchr(line, '\n', fs->size - off);
        size_t len = nl ? (size_t)(nl - line) : fs->size - off;
        off += len + (nl ? 1 : 0);
        audit_chain_hash(prev, line, len, hash);
        struct audit_row r = {.instance = "f",
                              .seq = seq++,
                              .time_ns = 1,
                              .kind = "decision",
                              .record = line,
                              .record_len = len,
                              .hash = hash};
        int rc = cb(&r, arg);
        if (rc)
            return rc;
        memcpy(prev, hash, sizeof prev);
    }
    return 0;
}

static EVP_PKEY *fuzz_key(void)
{
    static EVP_PKEY *key;
    if (!key) {
        unsigned char seed[32] = {7};
        key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof seed);
    }
    return key;
}

static void fuzz_verify(const uint8_t *data, size_t size)
{
    static const struct audit_store_ops ops = {.scan = fake_scan};
    struct fake_store fs = {.base = {.ops = &ops}, .data = (const char *)data, .size = size};
    struct audit_verifier v;
    if (audit_verifier_init(&v, fuzz_key(), 0) != 0)
        return;
    audit_verifier_feed(&v, &fs.base);
    if (audit_verifier_finish(&v) == 0)
        abort(); /* nothing here carries a valid signature: it cannot be intact */
    audit_verifier_free(&v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16)
        return 0;
    if (data[0] & 1)
        fuzz_verify(data + 1, size - 1);
    else
        fuzz_canon(data + 1, size - 1);
    return 0;
}
