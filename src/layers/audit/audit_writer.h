/*
 * audit_writer: the one thread that sequences, hashes, stores and signs records.
 * audit_start()/audit_stop() in audit.h wrap these for the server.
 */
#ifndef AUDIT_WRITER_H
#define AUDIT_WRITER_H

#include <stdint.h>

#include "layers/audit/audit.h"
#include "lib/metrics.h"

/*
 * Starts the writer with this config (copied; the caller may free ac afterwards).
 * `config_hash` names the configuration generation in the start record (may be NULL).
 * Returns 0, or a negative errno-style code after logging the reason.
 */
int audit_writer_start(const struct audit_config *ac, const char *config_hash);

/* The default signing key path for a store url (caller frees), or NULL. */
char *audit_default_key_path(const char *store_url, const char *instance);

/* Counters for tests and metrics. */
struct audit_writer_stats {
    uint64_t submitted;           /* records accepted by audit_submit */
    uint64_t committed;           /* records committed to the store (checkpoints not counted) */
    uint64_t rejected;            /* audit_submit refusals (queue full, failed, stopped) */
    uint64_t checkpoints;         /* checkpoints written */
    uint64_t batches;             /* transactions committed (group commits) */
    uint64_t writer_cpu_ns;       /* CPU time the writer thread used (known once it stopped) */
    uint64_t lost;                /* accepted records lost when the store failed */
    int failed;                   /* the store has failed: every submit is refused */
    int running;                  /* the writer thread is up */
    uint64_t last_checkpoint_seq; /* seq of the last checkpoint committed; 0 before one */
    uint64_t queued;              /* records waiting for the writer now */
    uint64_t capacity;            /* audit.queue */
};
/* Commit latency of the writer's transactions (nanoseconds), for metrics. */
const struct metrics_histogram *audit_writer_commit_histogram(void);
void audit_writer_stats(struct audit_writer_stats *out);

/* Tests: while held, the writer takes nothing from the queue (to fill it on purpose). */
void audit_writer_hold(int on);

/*
 * Generated stores and tests: the writer takes record times from now_ns instead of the
 * wall clock (NULL: the wall clock again). Set before audit_writer_start.
 */
void audit_writer_set_clock(int64_t (*now_ns)(void));

/* Tests: makes the next commit fail as a store error would (fail-closed path). */
void audit_writer_inject_failure(void);

#endif
