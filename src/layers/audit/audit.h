/*
 * audit: the tamper-evident record of every call that reached a route.
 *
 * Each request leaves two records linked by request id: a decision record queued by the
 * audit stage's check() before anything is forwarded, and a completion record queued by
 * on_complete when the response has ended. A dedicated writer thread gives each record the
 * next sequence number of this instance's chain, hashes it onto the chain
 * (hash = SHA-256(prev_hash || canonical JSON without "hash")), appends it to the store with
 * group commit, and ends every commit with a checkpoint that signs the chain head with
 * Ed25519, so whatever is committed (and acknowledged) is signed, also after a crash.
 * `checkpoint.every` records and `checkpoint.interval` of writing only add checkpoints inside
 * one big or slow commit. See docs/audit.md.
 *
 * The writer is one per process (audit_start / audit_stop); the event loop only ever takes
 * a mutex for a queue push and never waits on disk.
 */
#ifndef AUDIT_H
#define AUDIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/cfg.h"
#include "core/config.h"
#include "layers/modules.h"

struct gw_config;
struct audit_sink_config;

enum audit_args_mode {
    AUDIT_ARGS_NONE = 0, /* arguments are not recorded */
    AUDIT_ARGS_HASH,     /* SHA-256 of the canonical JSON of the arguments */
    AUDIT_ARGS_REDACTED, /* structure kept, every string value replaced (the default) */
};

enum audit_durability { AUDIT_DURABLE_COMMIT = 0, AUDIT_DURABLE_QUEUED };

/* audit.commit_delay: the default and the largest allowed. */
#define AUDIT_COMMIT_DELAY_DEFAULT_NS 200000ull
#define AUDIT_COMMIT_DELAY_MAX_NS 100000000ull

struct audit_config {
    char *store;       /* "sqlite:PATH" or "postgres://..." */
    char *mirror;      /* NULL, "stdout" or "jsonl:PATH" */
    char *signing_key; /* Ed25519 PEM; NULL: generated next to the store */
    char *instance_id; /* default: the host name */
    /*
     * Every commit ends with a signed checkpoint. These bounds add checkpoints inside one
     * commit: after `every` records in it (1000), or when writing it has taken longer than
     * `interval` (1s; a slow disk or PostgreSQL).
     */
    uint64_t checkpoint_every;
    uint64_t checkpoint_interval_ms;
    /*
     * How long a small commit (fewer than 64 records) whose records are waited for lets more
     * records arrive before it is written (200us; 0 to 100ms): longer shares each commit's
     * fixed cost (the signature, the transaction) among more calls at the price of that much
     * latency on the answers that wait for it.
     */
    uint64_t commit_delay_ns;
    enum audit_args_mode arguments;
    /*
     * commit (default): an answer reaches the client only after its completion record is
     * committed; queued: answers go as soon as their records are queued (faster, but a
     * crash can lose the records of answers already sent).
     */
    enum audit_durability durability;
    /*
     * sync: full: a commit is on stable storage before it counts (survives power loss, one
     * fsync per group commit); normal (default): written to the operating system (survives
     * any crash of toolgate itself, including kill -9, not of the machine).
     */
    int sync_full;
    uint64_t queue;              /* records queued for the writer at most (65536) */
    uint64_t rotate_max_records; /* SQLite: start a new file after this many; 0 = never */
    uint64_t rotate_max_bytes;   /* SQLite: start a new file past this size; 0 = never */
    uint64_t retention_ms;       /* delete rotated files older than this; 0 = keep all */
    /* A store created by the writer: compact (default) or the first format (tests). */
    int store_format; /* enum audit_store_format */
    /* audit.sinks: streaming copies to a SIEM (audit_sink.h). */
    struct audit_sink_config *sinks;
    size_t n_sinks;
};

/* Fills a config with the defaults (instance id from the host name). Returns 0 or -1. */
int audit_config_defaults(struct audit_config *ac);

/*
 * Parses the `audit:` section (section may be NULL: defaults). On success *out is a new
 * config (free with audit_config_free) and 0 is returned; on error err says where and -1.
 */
int audit_config_parse(const struct cfg_doc *doc, const struct cfg_node *section,
                       struct audit_config **out, struct cfg_error *err);
void audit_config_free(struct audit_config *ac);

/*
 * Starts the writer for cfg->audit (defaults when NULL): opens the store, recovers the
 * chain head, loads or creates the signing key, appends a start record. Returns 0, or a
 * negative errno-style code after logging what failed. One writer per process.
 */
int audit_start(const struct gw_config *cfg);
/* Flushes every queued record, writes a closing checkpoint, stops the writer. Idempotent. */
void audit_stop(void);

/*
 * Queues one record (steals the reference; the caller must not touch rec afterwards). The
 * writer adds kind-independent chain fields (seq, time, prev_hash, hash, instance).
 * The record is canonicalized here, on the caller's thread. Returns 0; -EAGAIN when the queue
 * is full; -EIO when the store has failed; -ENOTCONN when no writer runs; -EINVAL when the
 * record has no "kind" or cannot be canonicalized. Callable from any thread; never blocks on
 * disk.
 */
int audit_submit(json_t *rec);

/*
 * Like audit_submit, and once the record is committed (ok = 1) or lost to a store failure
 * (ok = 0), calls notify(arg, ok) on the writer thread (so it must only hand the news to its
 * own thread). Not called when this returns non-zero.
 */
int audit_submit_notify(json_t *rec, void (*notify)(void *arg, int ok), void *arg);

/*
 * audit_submit_notify for a record already prepared as an item (audit_item.h; taken whatever
 * this returns; notify may be NULL): what the layer submits, built straight from the request.
 */
struct audit_item;
int audit_submit_item(struct audit_item *it, void (*notify)(void *arg, int ok), void *arg);

/* Blocks until every record queued so far is committed (tests, benchmarks, shutdown). */
int audit_flush(void);

/* `toolgate audit ...`: verify, query, stats, export (argv[0] = "audit"). */
int audit_cli_main(int argc, char **argv);
/* `toolgate bench audit`: sustained records/s into SQLite with checkpoints; one line out. */
int audit_bench_main(int argc, char **argv);

/* GET /readyz and /metrics (audit_ops.c). */
void audit_ready(const struct gw_config *cfg, json_t *checks);
void audit_metrics(const struct gw_config *cfg, struct gw_metrics_out *out);
/* The admin API's topics decisions, summary and audit (audit_admin.c; core/module.h). */
int audit_admin_api(const struct gw_config *cfg, const char *topic, const json_t *params,
                    json_t **out);

/* The audit layer's section in a generation (NULL: see audit_config_parse). */
static inline const struct audit_config *audit_config_of(const struct gw_config *cfg)
{
    return cfg ? cfg->modules[GW_STAGE_AUDIT] : NULL;
}

/* The layer's pipeline stage (its struct gw_module is audit_module, layers/modules.h). */
extern const struct gw_layer_ops audit_layer;

#endif
