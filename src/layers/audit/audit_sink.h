/*
 * audit_sink: streaming copies of committed audit records to a SIEM (`audit.sinks`).
 *
 * Each sink has its own thread and bounded queue. The writer hands every record to the sinks
 * once its transaction is committed (audit_sinks_offer: a lock and a pointer per sink, never a
 * wait, never a failure the writer sees), so a sink is never on a request's path and never
 * holds up the store. A sink sends batches (max records / max wait), retries what failed with
 * capped exponential backoff, and when its queue is full refuses the newest record and counts
 * it as dropped. Delivery is at least once: a batch whose answer was lost is sent again (the
 * Elastic bulk format names each document `<instance>-<seq>` so a resent one is not doubled).
 *
 * Transports: syslog (RFC 5424) over TCP with octet counting (RFC 6587), over TLS (RFC 5425;
 * the receiver verified with a CA file, optional client certificate) and over UDP (RFC 5426);
 * HTTP(S) as Splunk HEC, Elastic _bulk, or generic JSON (an array or NDJSON). Payload: the OCSF
 * event of each decision and completion record (audit_ocsf.h, the default) or every record as
 * its jsonl line.
 */
#ifndef AUDIT_SINK_H
#define AUDIT_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "lib/cfg.h"
#include "lib/metrics.h"

#define AUDIT_SINKS_MAX 8

enum audit_sink_kind { AUDIT_SINK_SYSLOG = 0, AUDIT_SINK_HTTP };
enum audit_sink_transport { AUDIT_SINK_TCP = 0, AUDIT_SINK_TLS, AUDIT_SINK_UDP };
enum audit_sink_format { AUDIT_SINK_HEC = 0, AUDIT_SINK_BULK, AUDIT_SINK_JSON, AUDIT_SINK_NDJSON };
enum audit_sink_payload { AUDIT_SINK_OCSF = 0, AUDIT_SINK_JSONL };

/* One entry of `audit.sinks`, as parsed (strings owned). */
struct audit_sink_config {
    char *name;
    enum audit_sink_kind kind;
    enum audit_sink_payload payload;
    /* syslog */
    enum audit_sink_transport transport;
    char *host, *port; /* from `address` */
    int facility;
    char *app_name;
    char *sd_id;
    uint64_t max_length;
    /* http */
    char *url;
    enum audit_sink_format format;
    char *token_file; /* HEC: "Splunk <token>"; bulk: "ApiKey <token>"; json: "Bearer <token>" */
    char *index;      /* bulk: required; HEC: optional */
    char *sourcetype; /* HEC */
    /* TLS (syslog over TLS, https): CA bundle (default: the system's), client cert and key */
    char *tls_ca, *tls_cert, *tls_key, *server_name;
    /* delivery */
    uint64_t queue;                          /* records waiting at most (10000) */
    uint64_t batch_max;                      /* records per batch at most (100) */
    uint64_t batch_wait_ms;                  /* a batch waits this long for company (1s) */
    uint64_t retry_initial_ms, retry_max_ms; /* backoff 250ms doubling up to 30s */
    uint64_t timeout_ms;                     /* connect and each send (5s) */
};

/*
 * Parses `audit.sinks` (node may be NULL: none) into a new array (*out, *n; free with
 * audit_sinks_config_free). Returns 0, or -1 with err saying where.
 */
int audit_sinks_config_parse(const struct cfg_doc *doc, const struct cfg_node *node,
                             struct audit_sink_config **out, size_t *n, struct cfg_error *err);
void audit_sinks_config_free(struct audit_sink_config *s, size_t n);

/*
 * Starts one thread per sink with a copy of the configs (the caller keeps its own).
 * `instance` names this toolgate in the messages. Returns 0, or -1 after logging why (a token
 * file that cannot be read, a TLS file that does not load); then no sink runs.
 */
int audit_sinks_start(const struct audit_sink_config *s, size_t n, const char *instance);
/*
 * Flushes what is queued, each sink for at most its timeout plus one batch wait, drops (and
 * counts) the rest and stops the threads. Idempotent.
 */
void audit_sinks_stop(void);

/*
 * A committed record, its whole line (canonical JSON with "hash", no newline) and whether it
 * is a record of a call (decision or completion, which have OCSF events): queued for every
 * sink that takes it. Copies the bytes once; never
 * blocks on a sink, never fails visibly (a full queue or no memory is a counted drop).
 */
void audit_sinks_offer(const char *line, size_t len, int call);

/* Whether any sink runs (the writer builds the lines only then). */
int audit_sinks_active(void);

/* Per-sink counters for metrics and tests. */
struct audit_sink_stats {
    char name[64];
    uint64_t sent;      /* records the receiver took */
    uint64_t dropped;   /* records never sent: queue full, memory, or shutdown */
    uint64_t failed;    /* records the receiver refused for good (HTTP 4xx, bulk item errors) */
    uint64_t retries;   /* attempts that failed and were retried */
    uint64_t truncated; /* syslog messages cut to max_length */
    uint64_t queued;    /* waiting now */
    uint64_t capacity;
    int up; /* the last attempt succeeded */
};
/* Fills up to max entries; returns how many sinks run. */
size_t audit_sinks_stats(struct audit_sink_stats *out, size_t max);
void audit_sinks_metrics(struct gw_metrics_out *out);

/*
 * Reads an Elastic _bulk answer for n documents: status[i] gets each item's HTTP status.
 * Returns 0, or -1 when the answer is not a bulk answer for n items (then treat all as failed
 * for a retry). A parser of outside input: fuzzed (tests/fuzz/fuzz_audit_bulk.c).
 */
int audit_sink_bulk_result(const char *body, size_t len, size_t n, int *status);

#endif
