/*
 * audit_codec: how the compact stores keep a record's canonical bytes.
 *
 * A stored record is the canonical JSON with the values that the row already holds cut out
 * (prev_hash, time_ns, time, seq, request_id, subject, tenant, tool, and a checkpoint's
 * head_hash and signed_time_ns: each only when its bytes are exactly what the row gives back), then
 * compressed with zstd against a dictionary kept in the store. Decoding puts the values back at
 * their places, so the result is the canonical text byte for byte and the chain hash is computed
 * over it as before; a damaged or edited stored record decodes to other bytes (or fails) and
 * verification says so.
 *
 *   blob   = version(1) flags(1) n_cut(1) { code(1) varint(offset delta) }* varint(dict id)
 *            payload
 *   flags  bit 0: payload is a zstd frame (else the reduced text itself)
 *          bit 1: a varint follows the dictionary id: how many rows back the record lies
 *                 whose canonical text the frame was compressed against (no dictionary)
 *
 * Offsets are positions in the reduced text, non-decreasing, where the value is inserted.
 *
 * Version 2 (the compact PostgreSQL tables; SQLite files keep version 1) leaves the offsets
 * out: each cut value is replaced in the reduced text by one byte, its code (1..10), which
 * canonical JSON never holds raw (it escapes every byte below 0x20), and the frame is zstd's
 * without its 4-byte magic number:
 *
 *   blob   = version(1)=2 flags(1) varint(dict id) [varint(rows back), flags bit 1] payload
 *
 * A record with a raw byte below 0x20 (never one toolgate writes) is kept in version 1.
 */
#ifndef AUDIT_CODEC_H
#define AUDIT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* The values a row gives back; the codec cuts and restores them. */
enum {
    AUDIT_CUT_PREV_HASH = 1, /* "hex64" of the previous row's hash */
    AUDIT_CUT_TIME_NS,       /* "decimal" of the row's time */
    AUDIT_CUT_TIME,          /* "RFC 3339" of the row's time */
    AUDIT_CUT_REQUEST_ID,
    AUDIT_CUT_SUBJECT,
    AUDIT_CUT_TENANT,
    AUDIT_CUT_TOOL,
    AUDIT_CUT_SEQ,         /* decimal of the row's seq */
    AUDIT_CUT_HEAD_HASH,   /* checkpoints: the head they sign is the previous row's hash */
    AUDIT_CUT_SIGNED_TIME, /* checkpoints: the time signed is the row's time */
    AUDIT_CUT_MAX
};

/* The canonical JSON string (quotes included) of each value; NULL when the row has none. */
struct audit_cut_values {
    const char *v[AUDIT_CUT_MAX];
    size_t len[AUDIT_CUT_MAX];
    /*
     * A completion is compressed against the canonical text of its own decision record,
     * which holds most of what it repeats: prefix is that text, prefix_delta how many rows
     * back the decision is (encode: when set; decode: the caller supplies it when asked).
     */
    const char *prefix;
    size_t prefix_len;
    uint64_t prefix_delta;
};

/* Builds the values from the row's fields (prev_hex may be NULL). Uses buf for storage. */
int audit_cut_values_fill(struct audit_cut_values *cv, struct gw_buf *buf, const char *prev_hex,
                          int64_t time_ns, uint64_t seq, const char *request_id,
                          const char *subject, const char *tenant, const char *tool);

#define AUDIT_CODEC_MAX_DICTS 64
#define AUDIT_CODEC_MAX_DICT_BYTES (128u << 10)
#define AUDIT_CODEC_MAX_RECORD (4u << 20)

struct audit_codec;

struct audit_codec *audit_codec_new(int level);
/* Encodes in version 2 from now on (decoding reads both versions in any codec). 0 or -1. */
int audit_codec_use_markers(struct audit_codec *c);
void audit_codec_free(struct audit_codec *c);
/* Adds a dictionary the store holds (id >= 1). Returns 0, or -1 (bad, too many, OOM). */
int audit_codec_add_dict(struct audit_codec *c, uint32_t id, const void *bytes, size_t len);
/* The dictionary new records use (0: none). Returns 0 or -1 when the id is unknown. */
int audit_codec_use_dict(struct audit_codec *c, uint32_t id);
uint32_t audit_codec_dict_in_use(const struct audit_codec *c);
int audit_codec_has_dict(const struct audit_codec *c, uint32_t id);
/* The reduced text (values cut out) of the last record encoded: what dictionaries learn. */
const struct gw_buf *audit_codec_last_reduced(const struct audit_codec *c);
/* Trains a dictionary of at most cap bytes from n samples back to back. Its size, or 0. */
size_t audit_codec_train(const void *samples, const size_t *sizes, unsigned n, void *dict,
                         size_t cap);
/* Forgets every dictionary (the store is reloaded after a rollback). */
void audit_codec_clear(struct audit_codec *c);

/* Encodes canonical text into out (reset first). Returns 0 or -1. */
int audit_codec_encode(struct audit_codec *c, const char *canon, size_t len,
                       const struct audit_cut_values *cv, struct gw_buf *out);
/*
 * Decodes a stored blob into out (reset first). `needs` is set (and nothing decoded) when
 * the blob needs what cv lacks: AUDIT_NEED_PREV the previous row's hash, AUDIT_NEED_PREFIX
 * the text of the record audit_codec_blob_prefix() names; the caller finds it and calls
 * again. Returns 0, or -1 with a sentence in err when the blob is damaged.
 */
#define AUDIT_NEED_PREV 1
#define AUDIT_NEED_PREFIX 2
int audit_codec_decode(struct audit_codec *c, const void *blob, size_t len,
                       const struct audit_cut_values *cv, struct gw_buf *out, int *needs, char *err,
                       size_t errlen);
/* Rows back to the record a blob was compressed against; 0 none, -1 damaged. */
int64_t audit_codec_blob_prefix(const void *blob, size_t len);
/* The dictionary a blob names (0 none), or -1 when it is damaged. */
int64_t audit_codec_blob_dict(const void *blob, size_t len);

/* Request ids as the row keeps them: 16 bytes for a lower-case UUID, else 0x00 + the text. */
size_t audit_reqid_pack(const char *id, unsigned char *out, size_t outlen);
/* Back to text (out >= 40 bytes, or the text length + 1). Returns 0 or -1. */
int audit_reqid_unpack(const unsigned char *in, size_t len, char *out, size_t outlen);

#endif
