/*
 * audit_bench: sustained records/s into SQLite with checkpoints on.
 *
 *   toolgate bench audit [--records N] [--threads T] [--wait] [--dir DIR]
 *
 * T producer threads build decision records from a realistic request context (identity,
 * findings, redacted arguments) and queue them; the single writer sequences, hashes,
 * group-commits into a fresh SQLite file and signs a checkpoint at the end of every commit
 * (and every 1000 records within one). Saturated by default: producers queue as fast as
 * they can, so commits are as large as the queue allows. With --wait each producer waits for
 * its record's commit before it builds the next, as an answer waits for its completion
 * record, so commits hold at most T records and the cost of each commit (its signature
 * included) shows; it also reports how long each wait took. Prints one line.
 */
#include "layers/audit/audit.h"
#include "layers/audit/audit_gen.h"
#include "layers/audit/audit_record.h"
#include "layers/audit/audit_writer.h"

#include "lib/log.h"
#include "lib/timeutil.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct bench_producer {
    pthread_t thread;
    uint64_t n;
    int failed;
    /* --wait: told by the writer when the record is committed. */
    int wait;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int acked, ack_ok;
    uint64_t *waits_ns; /* one per record */
};

static void on_commit(void *arg, int ok)
{
    struct bench_producer *p = arg;
    pthread_mutex_lock(&p->mu);
    p->acked = 1;
    p->ack_ok = ok;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

static void fill_request(struct gw_request *req, json_t *msg, char **roles, char **scopes,
                         struct gw_finding *finding)
{
    static struct gw_route route = {.name = "ehr", .path = "/mcp"};
    static struct gw_backend backend = {.name = "ehr", .url = "http://127.0.0.1:9001/mcp"};
    memset(req, 0, sizeof *req);
    gw_uuid7(req->id);
    req->route = &route;
    req->backend = &backend;
    req->method_name = GW_SLICE_LIT("POST");
    req->protocol_version = "2025-06-18";
    req->session_id = "5d0c6c3e-2f54-4f0e-9a77-0b1c2d3e4f50";
    req->identity.verified = 1;
    req->identity.subject = "dr.alice";
    req->identity.issuer = "https://idp.example.com/";
    req->identity.tenant = "clinic-7";
    req->identity.client_id = "claude-desktop";
    req->identity.roles = roles;
    req->identity.n_roles = 2;
    req->identity.scopes = scopes;
    req->identity.n_scopes = 1;
    req->rpc.msgs = calloc(1, sizeof *req->rpc.msgs);
    req->rpc.n = 1;
    req->rpc.msgs[0].json = msg;
    req->rpc.msgs[0].method = "tools/call";
    req->rpc.msgs[0].target = "ehr.get_patient";
    req->rpc.msgs[0].arguments = json_object_get(json_object_get(msg, "params"), "arguments");
    req->deciding_stage = GW_STAGE_NONE;
    /* The finding is the caller's (the request is on its stack and never freed). */
    memset(finding, 0, sizeof *finding);
    snprintf(finding->type, sizeof finding->type, "ssn");
    snprintf(finding->path, sizeof finding->path, "/note");
    finding->count = 1;
    finding->action = GW_PII_REDACT;
    req->findings.items = finding;
    req->findings.n = req->findings.cap = 1;
    for (int s = 0; s < GW_STAGE_AUDIT; s++)
        req->timing.stage_ns[s] = 1500 + (uint64_t)s * 100;
}

static void *produce(void *arg)
{
    struct bench_producer *p = arg;
    static const struct audit_config rc = {.arguments = AUDIT_ARGS_REDACTED};
    char *roles[] = {"doctor", "staff", NULL}, *scopes[] = {"patients.read", NULL};
    json_t *msg =
        json_pack("{s:s, s:i, s:s, s:{s:s, s:{s:s, s:s, s:i}}}", "jsonrpc", "2.0", "id", 1,
                  "method", "tools/call", "params", "name", "ehr.get_patient", "arguments",
                  "patient_id", "P12345", "note", "[REDACTED:ssn]", "limit", 10);
    struct gw_request req;
    struct gw_finding finding;
    for (uint64_t i = 0; i < p->n; i++) {
        fill_request(&req, msg, roles, scopes, &finding);
        /* A refused item is freed: after back-pressure (the benchmark measures the writer)
         * the record is built afresh, as the layer builds it from the request. */
        struct audit_item *it = audit_record_decision_item(&req, &rc);
        int r;
        uint64_t t0 = gw_mono_ns();
        p->acked = 0;
        while ((r = audit_submit_item(it, p->wait ? on_commit : NULL, p)) == -EAGAIN) {
            sched_yield();
            it = audit_record_decision_item(&req, &rc);
        }
        free(req.rpc.msgs);
        if (r != 0) {
            p->failed = 1;
            break;
        }
        if (p->wait) {
            pthread_mutex_lock(&p->mu);
            while (!p->acked)
                pthread_cond_wait(&p->cond, &p->mu);
            pthread_mutex_unlock(&p->mu);
            p->waits_ns[i] = gw_mono_ns() - t0;
            if (!p->ack_ok) {
                p->failed = 1;
                break;
            }
        }
    }
    json_decref(msg);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int audit_bench_main(int argc, char **argv)
{
    uint64_t records = 0;
    int threads = 2, rc = 1, wait = 0;
    const char *dir = NULL, *delay = NULL;
    if (argc >= 2 && strcmp(argv[1], "gen") == 0)
        return audit_gen_main(argc - 1, argv + 1);
    char tmpl[] = "/tmp/toolgate-audit-bench-XXXXXX", store[4200];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--records") == 0 && i + 1 < argc)
            records = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--wait") == 0)
            wait = 1;
        else if (strcmp(argv[i], "--commit-delay") == 0 && i + 1 < argc)
            delay = argv[++i];
        else {
            int help = strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
            fprintf(help ? stdout : stderr,
                    "usage: toolgate bench audit [--records N] [--threads T] [--wait] "
                    "[--commit-delay DURATION] [--dir D]\n");
            return help ? 0 : 2;
        }
    }
    if (!records)
        records = wait ? 20000 : 200000; /* a waiting producer commits a few thousand a second */
    if (threads < 1 || threads > 64 || records == 0)
        return 2;
    if (!dir && !(dir = mkdtemp(tmpl))) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(store, sizeof store, "sqlite:%s/bench-%d.db", dir, (int)getpid());
    struct audit_config ac;
    if (audit_config_defaults(&ac) != 0)
        return 1;
    if (delay && (gw_parse_duration_ns(delay, &ac.commit_delay_ns) != 0 ||
                  ac.commit_delay_ns > AUDIT_COMMIT_DELAY_MAX_NS)) {
        fprintf(stderr, "bench audit: --commit-delay \"%s\": write a duration from 0 to 100ms\n",
                delay);
        return 2;
    }
    free(ac.store);
    ac.store = strdup(store);
    ac.instance_id[0] = ac.instance_id[0] ? ac.instance_id[0] : 'b';
    gw_log_setup(GW_LOG_ERROR, 2);
    /* One wait per record, each producer filling its own share. */
    uint64_t *waits = wait ? calloc(records, sizeof *waits) : NULL;
    if ((wait && !waits) || audit_writer_start(&ac, NULL) != 0)
        goto out;
    struct bench_producer prod[64];
    uint64_t t0 = gw_mono_ns(), given = 0;
    for (int i = 0; i < threads; i++) {
        prod[i] = (struct bench_producer){.wait = wait};
        prod[i].n = records / (uint64_t)threads + (i == 0 ? records % (uint64_t)threads : 0);
        prod[i].waits_ns = waits ? waits + given : NULL;
        given += prod[i].n;
        pthread_mutex_init(&prod[i].mu, NULL);
        pthread_cond_init(&prod[i].cond, NULL);
        pthread_create(&prod[i].thread, NULL, produce, &prod[i]);
    }
    int failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(prod[i].thread, NULL);
        failed |= prod[i].failed;
        pthread_mutex_destroy(&prod[i].mu);
        pthread_cond_destroy(&prod[i].cond);
    }
    int frc = audit_flush();
    uint64_t t1 = gw_mono_ns();
    audit_stop();
    struct audit_writer_stats st;
    audit_writer_stats(&st);
    if (failed || frc != 0) {
        fprintf(stderr, "audit bench: the writer failed\n");
        goto out;
    }
    double secs = (double)(t1 - t0) / 1e9;
    double us = st.committed ? (double)st.writer_cpu_ns / 1e3 / (double)st.committed : 0;
    const char *sync = ac.sync_full ? "FULL" : "NORMAL";
    if (wait) {
        qsort(waits, records, sizeof *waits, cmp_u64);
        double per_commit = st.batches ? (double)st.writer_cpu_ns / 1e3 / (double)st.batches : 0;
        printf("audit --wait: %llu records in %.2f s = %.0f records/s into SQLite "
               "(synchronous=%s, commit_delay %.0f us), %d producer threads each waiting for its "
               "record's commit: %llu group commits (%.1f records each), %llu signed; wait for "
               "the commit p50 %.0f us, p99 %.0f us; writer thread %.1f us CPU/commit, %.1f us "
               "CPU/record)\n",
               (unsigned long long)st.committed, secs, (double)st.committed / secs, sync,
               (double)ac.commit_delay_ns / 1e3, threads, (unsigned long long)st.batches,
               st.batches ? (double)st.committed / (double)st.batches : 0,
               (unsigned long long)st.checkpoints, (double)waits[records / 2] / 1e3,
               (double)waits[records - 1 - records / 100] / 1e3, per_commit, us);
    } else {
        printf("audit: %llu records in %.2f s = %.0f records/s into SQLite (synchronous=%s, "
               "checkpoint every %llu: %llu signed, %llu group commits, %d "
               "producer threads; writer thread %.1f us CPU/record = %.0f records/s per free "
               "core)\n",
               (unsigned long long)st.committed, secs, (double)st.committed / secs, sync,
               (unsigned long long)ac.checkpoint_every, (unsigned long long)st.checkpoints,
               (unsigned long long)st.batches, threads, us, us > 0 ? 1e6 / us : 0);
    }
    rc = 0;
out:
    free(waits);
    free(ac.store);
    free(ac.instance_id);
    if (dir == tmpl) {
        char cmd[4300];
        /* Only the directory this run created (mkdtemp) is removed. */
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
        if (system(cmd) != 0)
            fprintf(stderr, "audit bench: could not remove %s\n", tmpl);
    }
    return rc;
}
