/*
 * audit_ops: what the audit layer tells operators: readiness (the writer is up and its store
 * accepts commits; a PostgreSQL store answers) and metrics (queue depth, commit latency, the
 * last checkpoint's seq, records committed and refused).
 */
#include "layers/audit/audit.h"
#include "layers/audit/audit_sink.h"
#include "layers/audit/audit_wal.h"
#include "layers/audit/audit_writer.h"
#include "lib/metrics.h"
#include "lib/probe.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

/* PostgreSQL probes wait at most this long, and run at most once a second. */
#define PG_PROBE_TIMEOUT "2"
#define PROBE_INTERVAL_MS 1000

static struct gw_probe pg_probe = GW_PROBE_INIT;

static int ping_pg(void *arg, char *detail, size_t len)
{
    const char *const keys[] = {"dbname", "connect_timeout", NULL};
    const char *const values[] = {arg, PG_PROBE_TIMEOUT, NULL};
    PGPing r = PQpingParams(keys, values, 1);
    if (r == PQPING_OK)
        return 1;
    snprintf(detail, len, "%s",
             r == PQPING_REJECT        ? "the PostgreSQL server refuses connections now"
             : r == PQPING_NO_RESPONSE ? "the PostgreSQL server does not answer"
                                       : "the audit store's connection string is not usable");
    return 0;
}

static void add(json_t *checks, const char *name, int ok, const char *detail)
{
    json_t *c = json_pack("{s:s}", "state", ok ? "ok" : "failing");
    if (c && !ok && detail && detail[0])
        json_object_set_new(c, "detail", json_string(detail));
    json_object_set_new(checks, name, c);
}

void audit_ready(const struct gw_config *cfg, json_t *checks)
{
    struct audit_writer_stats st;
    audit_writer_stats(&st);
    const char *why = !st.running ? "the audit writer is not running"
                      : st.failed ? "the audit store failed; requests are refused until restart"
                      : st.queued >= st.capacity ? "the audit queue is full"
                                                 : NULL;
    add(checks, "audit_store", why == NULL, why);
    const struct audit_config *ac = audit_config_of(cfg);
    if (ac && ac->store && strncmp(ac->store, "postgres", 8) == 0) {
        char detail[160];
        int ok =
            gw_probe_run(&pg_probe, PROBE_INTERVAL_MS, ping_pg, ac->store, detail, sizeof detail);
        add(checks, "audit_postgres", ok, detail);
    }
}

void audit_metrics(const struct gw_config *cfg, struct gw_metrics_out *out)
{
    (void)cfg;
    struct audit_writer_stats st;
    audit_writer_stats(&st);
    metrics_single_u64(out, "toolgate_audit_queue_depth", "gauge",
                       "Audit records waiting for the writer.", st.queued);
    metrics_single_u64(out, "toolgate_audit_queue_capacity", "gauge",
                       "Audit records the queue holds (audit.queue); full refuses requests.",
                       st.capacity);
    metrics_single_u64(out, "toolgate_audit_last_checkpoint_seq", "gauge",
                       "Sequence number of the last signed checkpoint committed.",
                       st.last_checkpoint_seq);
    metrics_single_u64(out, "toolgate_audit_records_committed_total", "counter",
                       "Audit records committed to the store (checkpoints not counted).",
                       st.committed);
    metrics_single_u64(out, "toolgate_audit_records_rejected_total", "counter",
                       "Audit records refused (queue full, store failed or stopping).",
                       st.rejected);
    metrics_single_u64(out, "toolgate_audit_store_failed", "gauge",
                       "1 once the audit store has failed (every request is refused).",
                       st.failed ? 1 : 0);
    metrics_family(out, "toolgate_audit_commit_duration_seconds", "histogram",
                   "Time one group commit of the audit writer took.");
    metrics_histogram_write(out, "toolgate_audit_commit_duration_seconds", NULL, 0,
                            audit_writer_commit_histogram());
    struct audit_wal_stats wal;
    audit_wal_totals(&wal);
    metrics_single_u64(out, "toolgate_audit_wal_folds_total", "counter",
                       "Folds of the SQLite audit store's write-ahead log by its own thread.",
                       wal.folds);
    metrics_single_u64(out, "toolgate_audit_wal_writer_folds_total", "counter",
                       "Folds of the few pages left after one, by the writer between commits.",
                       wal.inline_folds);
    metrics_single_u64(out, "toolgate_audit_wal_fold_failures_total", "counter",
                       "Folds of the write-ahead log that failed other than busy (logged).",
                       wal.failures);
    metrics_single_u64(out, "toolgate_audit_wal_pages", "gauge",
                       "Pages (4 KiB) in the SQLite audit store's write-ahead log after the last "
                       "commit; 0 without an SQLite store.",
                       wal.pages);
    audit_sinks_metrics(out);
}
