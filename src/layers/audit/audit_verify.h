/*
 * audit_verify: checks stored chains end to end. For every instance: seq starts at 1 (or at
 * a rotation record continuing an earlier file) and has no gaps, each record is canonical
 * JSON whose hash chains onto the one before, the indexed columns match the record, time
 * never runs backwards, each checkpoint's Ed25519 signature is valid for the given public
 * key and names the head before it, and the chain ends at a signed checkpoint (the writer
 * seals every commit with one). `closed` also requires that checkpoint to be the closing one
 * of a clean stop. `live` accepts an unsigned tail after the last checkpoint, which only
 * stores written by earlier versions can have, and reports it.
 */
#ifndef AUDIT_VERIFY_H
#define AUDIT_VERIFY_H

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>

#include "layers/audit/audit_chain.h"
#include "layers/audit/audit_store.h"

#define AUDIT_VERIFY_MAX_RECORD (4u << 20)
#define AUDIT_VERIFY_MAX_INSTANCES 4096

struct audit_verify_instance {
    char name[136];
    uint64_t first_seq, seq; /* first and last seen */
    char prev[65];
    int64_t last_time;
    char last_kind[16];
    int closing;
    uint64_t last_checkpoint_seq;
    uint64_t records, checkpoints;
    uint64_t unclean_starts; /* start records after an unclean stop (crash, kill, power) */
    uint64_t last_unclean_seq;
    char first_prev[65];    /* prev_hash of the first record read */
    uint64_t retention_seq; /* the last retention record: where, and what it drops */
    uint64_t retention_through;
    char retention_hash[65];
    /* The canonical text of the last checkpoint (for --since-checkpoint's state). */
    char last_cp[2048];
    size_t last_cp_len;
    /* The last checkpoint, its signature checked at the end (unless all_signatures). */
    uint64_t last_sig_seq, last_sig_head_seq;
    char last_sig_head[65], last_sig_time[32], last_sig[129];
};

struct audit_verifier {
    EVP_PKEY *pub; /* borrowed */
    char key_id[65];
    struct audit_chain_hasher hasher; /* one digest context for every record */
    int live;           /* an unsigned tail is reported, not refused (stores of earlier versions) */
    int closed;         /* set after init: the chain must end at a closing checkpoint */
    int all_signatures; /* check every checkpoint's signature as it is read */
    const char *instance; /* verify only this instance's chain; NULL: every instance */
    /* Called every 65536 records (progress on a terminal); NULL: none. */
    void (*progress)(const struct audit_verifier *v, void *arg);
    void *progress_arg;
    /*
     * Incremental verification (audit_verifier_trust): the chain of `instance` is read from
     * this checkpoint on, which must still be in the store as it was.
     */
    struct {
        char instance[136];
        uint64_t seq;
        int64_t time_ns;
        char hash[65];
        char *record;
        size_t len;
        int closing;
    } trusted;
    /* Results. */
    int bad; /* 1 once a problem was found */
    char bad_instance[136];
    uint64_t bad_seq;
    char problem[384];
    struct audit_verify_instance *inst;
    size_t n_inst;
    uint64_t rows;
};

/* Prepares a verifier for key pub (borrowed). Returns 0 or -1. */
int audit_verifier_init(struct audit_verifier *v, EVP_PKEY *pub, int live);
/*
 * Feeds one store (files of a rotated chain in order, one call each). Returns 0 when no
 * problem so far, 1 when a problem was found (v->problem), -1 when the store cannot be read.
 */
int audit_verifier_feed(struct audit_verifier *v, struct audit_store *st);
/* Ends the run (checks how each chain ends). Returns 0 when intact, 1 otherwise. */
int audit_verifier_finish(struct audit_verifier *v);
/*
 * Trusts a checkpoint verified before (its canonical text, as the state file keeps it) once
 * its signature is valid under v's key: the next feed reads `instance` from its seq on.
 * Returns 0, or -1 with a sentence in err (not a checkpoint, not signed by the key).
 */
int audit_verifier_trust(struct audit_verifier *v, const char *instance, const char *record,
                         size_t len, char *err, size_t errlen);
/* Writes a summary (or the problem) to out. */
void audit_verifier_report(const struct audit_verifier *v, FILE *out);
void audit_verifier_free(struct audit_verifier *v);

#endif
