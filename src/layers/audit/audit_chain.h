/*
 * audit_chain: the hash chain and the signed checkpoints.
 *
 *   hash(record n) = SHA-256( prev_hash_hex || canonical JSON of record n without "hash" )
 *
 * where prev_hash_hex is the 64 lower-case hex characters of record n-1's hash (64 zeros for
 * the first record of a chain). A checkpoint signs, with Ed25519, the canonical JSON of
 * {"head_hash","head_seq","instance","time_ns"}: the chain head it vouches for.
 */
#ifndef AUDIT_CHAIN_H
#define AUDIT_CHAIN_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#include "layers/audit/audit_canon.h"
#include "lib/buf.h"

#define AUDIT_GENESIS_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* The chain step above. Returns 0, or -1 when OpenSSL fails. */
int audit_chain_hash(const char *prev_hex, const char *canon, size_t len, char out[65]);

/*
 * The same step for a reader of many records (verify): one digest context, fetched and
 * allocated once and reset per record, instead of a context set up for every record.
 */
struct audit_chain_hasher {
    EVP_MD *md;
    EVP_MD_CTX *ctx;
};
/* Returns 0, or -1 when OpenSSL fails. Free with audit_chain_hasher_free either way. */
int audit_chain_hasher_init(struct audit_chain_hasher *h);
void audit_chain_hasher_free(struct audit_chain_hasher *h);
/* The chain step with h: 0, or -1 when OpenSSL fails. */
int audit_chain_hash_with(struct audit_chain_hasher *h, const char *prev_hex, const char *canon,
                          size_t len, char out[65]);

/* Bytes a checkpoint signs (appended to out). Returns 0 or -1 (out then as it was). */
int audit_checkpoint_payload(struct gw_buf *out, const char *instance, uint64_t head_seq,
                             const char *head_hash, const char *time_ns);

/* What a checkpoint record holds besides the chain fields (audit_writer.c). */
struct audit_checkpoint_fields {
    uint64_t head_seq, records;
    const char *head_hash, *signed_time_ns, *key_id, *signature;
    int closing;
};
/*
 * The members of a checkpoint record, canonical and sorted, into out (reset first): the same
 * members audit_members_from_object makes of the record as a JSON object, built without one.
 * Returns 0 or -1.
 */
int audit_checkpoint_members(struct audit_members *out, const struct audit_checkpoint_fields *f);

/*
 * Loads an Ed25519 private key from a PEM file. Returns the key (caller frees with
 * EVP_PKEY_free) or NULL with a sentence in err.
 */
EVP_PKEY *audit_key_load_private(const char *path, char *err, size_t errlen);
/* Loads an Ed25519 public key (or a private key, whose public half is used) from PEM. */
EVP_PKEY *audit_key_load_public(const char *path, char *err, size_t errlen);
/*
 * Generates a key, writes the private PEM to path (mode 0600, refusing to overwrite) and the
 * public PEM to path with ".pub" appended. Returns the key or NULL with err.
 */
EVP_PKEY *audit_key_generate(const char *path, char *err, size_t errlen);
/* Key id: hex SHA-256 of the raw 32-byte public key. Returns 0 or -1. */
int audit_key_id(EVP_PKEY *key, char out[65]);

/* Signs data; writes the 64-byte signature as 128 hex chars + NUL into sig_hex. 0 or -1. */
int audit_sign(EVP_PKEY *key, const void *data, size_t len, char sig_hex[129]);
/*
 * A record's "time" member value: gw_time_rfc3339 of ns as a canonical string, quotes
 * included. The date and time of day are formatted once per second and kept in c (zeroed
 * before the first call), the nanoseconds every time. out needs 48 bytes. Returns the
 * length, or -1 (ns negative, out too small).
 */
struct audit_time_text {
    int64_t secs;
    char day[32]; /* "YYYY-MM-DDTHH:MM:SS" of secs; empty: none yet */
};
int audit_time_text(struct audit_time_text *c, int64_t ns, char *out, size_t outlen);

/*
 * Signing many times with one key (the writer: a checkpoint every commit). The key's seed is
 * taken out of OpenSSL once and each signature is made with libsodium's Ed25519, which signs
 * in about 40% of OpenSSL 3's time here. Ed25519 signatures are deterministic (RFC 8032), so
 * they are the bytes OpenSSL would make, and every reader verifies them with OpenSSL as
 * before; init checks that on one signature and refuses the key otherwise. The signer
 * keeps its own copy of the key's secret half, zeroed by audit_signer_free.
 */
struct audit_signer {
    unsigned char sk[64]; /* libsodium's secret key: the seed, then the public key */
    int ready;
};
/* Returns 0, or -1 when the key cannot be used. Free with audit_signer_free either way. */
int audit_signer_init(struct audit_signer *s, EVP_PKEY *key);
void audit_signer_free(struct audit_signer *s);
/* As audit_sign, with s. 0 or -1. */
int audit_sign_with(struct audit_signer *s, const void *data, size_t len, char sig_hex[129]);
/* Returns 1 when sig_hex is a valid signature of data under key, else 0. */
int audit_sig_ok(EVP_PKEY *key, const void *data, size_t len, const char *sig_hex, size_t sig_len);

#endif
