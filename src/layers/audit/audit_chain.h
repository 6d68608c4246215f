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

/* Bytes a checkpoint signs (appended to out). Returns 0 or -1. */
int audit_checkpoint_payload(struct gw_buf *out, const char *instance, uint64_t head_seq,
                             const char *head_hash, const char *time_ns);

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
/* Returns 1 when sig_hex is a valid signature of data under key, else 0. */
int audit_sig_ok(EVP_PKEY *key, const void *data, size_t len, const char *sig_hex, size_t sig_len);

#endif
