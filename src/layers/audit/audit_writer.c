#include "layers/audit/audit_writer.h"
#include "layers/audit/audit_item.h"
#include "layers/audit/audit_canon.h"
#include "layers/audit/audit_chain.h"
#include "layers/audit/audit_store.h"
#include "layers/audit/audit_rotate.h"
#include "layers/audit/audit_sink.h"

#include "lib/log.h"
#include "lib/timeutil.h"

#include <errno.h>
#include <dirent.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define WRITER_BATCH 4096
/* Fewer queued records than this wait audit.commit_delay for company before a commit. */
#define WRITER_GATHER_BELOW 64
/*
 * When no queued record holds an answer (durability: queued, the usual records of denials
 * and of events), nobody waits for the commit: gather for up to this long or this many
 * records, so each commit's fixed cost (the checkpoint's signature, the transaction, the
 * WAL write) is shared by many records.
 */
#define WRITER_QUEUED_GATHER_MS 2
#define WRITER_QUEUED_GATHER_RECORDS 512
/* Bytes of prepared records queued at most, whatever `audit.queue` allows in records. */
#define WRITER_QUEUE_MAX_BYTES (256ull << 20)

struct writer {
    pthread_mutex_t mu;
    pthread_cond_t work; /* records queued or stop asked */
    pthread_cond_t done; /* a batch committed */
    struct audit_item **ring;
    size_t cap, head, count;
    uint64_t queued_bytes;
    size_t waited;   /* queued records whose submitter waits for their commit (notify) */
    int gathering;   /* the writer waits for more records before committing (GATHER_*) */
    size_t flushers; /* callers of audit_flush waiting: nothing is gathered for them */
    int running, stopping, failed, inject_failure, hold;
    uint64_t finished; /* records taken from the queue whose notice has been delivered */
    struct audit_writer_stats stats;
    struct audit_writer_stats last_stats; /* of the last run, after audit_stop */
    pthread_t thread;

    /* Owned by the writer thread once started. */
    struct audit_config ac; /* strings owned (copied) */
    char *config_hash;
    struct audit_store *store;
    EVP_PKEY *key;
    struct audit_signer signer;       /* one signing context for every checkpoint */
    struct audit_chain_hasher hasher; /* one digest context for every record */
    char key_id[65];
    FILE *mirror;
    uint64_t seq; /* last seq written */
    char prev[65];
    int64_t last_time;
    uint64_t since_checkpoint;     /* records appended since the last checkpoint */
    uint64_t last_checkpoint_mono; /* when the open transaction began or last signed */
    uint64_t tx_checkpoints;       /* checkpoints in the open transaction */
    uint64_t file_records;
    struct gw_buf canon;
    struct audit_members chain;       /* the chain fields of the record being written */
    struct gw_buf instance;           /* audit.instance_id as a canonical string, made once */
    struct audit_time_text time_text; /* the date and time of day of the last second */
    struct audit_item checkpoint;     /* the checkpoint being written, its buffers kept */
    char checkpoint_kind[11];         /* its one column: "checkpoint" */
    struct gw_buf mirror_buf;         /* lines of the open transaction, written after commit */
    /* Where each line of mirror_buf is, for the sinks (audit_sink.h); built when they run. */
    struct writer_line {
        size_t off, len;
        int decision;
    } * lines;
    size_t n_lines, cap_lines;
    int sinks; /* audit.sinks run: lines are built for them too */
};

/* What the writer is gathering for; a flush or a stop ends either at once. */
enum {
    GATHER_NONE,
    GATHER_QUEUED, /* nobody waits: a waited record or enough of them end it too */
    GATHER_DELAY,  /* audit.commit_delay before a small commit */
};

static struct writer W = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
};

/* Commits: 100us to 10s. Updated by the writer thread alone, read by GET /metrics. */
static const uint64_t commit_bounds_ns[] = {100000,    250000,     500000,     1000000,  2500000,
                                            5000000,   10000000,   25000000,   50000000, 100000000,
                                            250000000, 1000000000, 10000000000};
static struct metrics_histogram commit_latency;

const struct metrics_histogram *audit_writer_commit_histogram(void)
{
    return &commit_latency;
}
static pthread_once_t conds_once = PTHREAD_ONCE_INIT;

static void init_conds(void)
{
    gw_cond_init_monotonic(&W.work);
    gw_cond_init_monotonic(&W.done);
}

static int64_t (*clock_fn)(void); /* audit_writer_set_clock: generated stores */

void audit_writer_set_clock(int64_t (*now_ns)(void))
{
    clock_fn = now_ns;
}

static int64_t next_time(void)
{
    /* The chain's time never runs backwards, even when the wall clock is stepped back. */
    int64_t now = clock_fn ? clock_fn() : (int64_t)gw_now_ns();
    if (now < W.last_time)
        now = W.last_time;
    W.last_time = now;
    return now;
}

/* Remembers a line of mirror_buf for the sinks; a line not noted is one they miss (memory). */
static void note_line(size_t off, size_t len, const char *kind)
{
    if (W.n_lines == W.cap_lines) {
        size_t cap = W.cap_lines ? W.cap_lines * 2 : 256;
        struct writer_line *l = realloc(W.lines, cap * sizeof *l);
        if (!l)
            return;
        W.lines = l;
        W.cap_lines = cap;
    }
    /* `decision` marks the records of a call (decision, completion): those with an OCSF event. */
    int call = kind && (strcmp(kind, "decision") == 0 || strcmp(kind, "completion") == 0);
    W.lines[W.n_lines++] = (struct writer_line){off, len, call};
}

/*
 * Adds the chain fields to a prepared record, hashes it and appends it to the store (inside
 * the open transaction). On success the chain head advances; the caller rolls back on failure.
 */
static int append_item(const struct audit_item *it, int64_t at)
{
    char tns[24], t3339[48], seqs[24], prev[67], hash[65];
    int rc = -1;
    int64_t now = at ? at : next_time();
    uint64_t seq = W.seq + 1;
    int tl = snprintf(tns, sizeof tns, "\"%lld\"", (long long)now);
    int rl = audit_time_text(&W.time_text, now, t3339, sizeof t3339);
    int sl = snprintf(seqs, sizeof seqs, "%llu", (unsigned long long)seq);
    /* The chain's strings need no escaping: hex, digits, the time, the instance made once. */
    prev[0] = prev[65] = '"';
    memcpy(prev + 1, W.prev, 64);
    prev[66] = '\0';
    audit_members_reset(&W.chain);
    if (rl < 0 ||
        audit_members_add_raw(&W.chain, "instance", W.instance.data, W.instance.len) != 0 ||
        audit_members_add_raw(&W.chain, "prev_hash", prev, 66) != 0 ||
        audit_members_add_raw(&W.chain, "seq", seqs, (size_t)sl) != 0 ||
        audit_members_add_raw(&W.chain, "time", t3339, (size_t)rl) != 0 ||
        audit_members_add_raw(&W.chain, "time_ns", tns, (size_t)tl) != 0)
        goto out;
    audit_members_sort(&W.chain);
    gw_buf_reset(&W.canon);
    if (audit_members_write(&W.canon, &it->body, &W.chain) != 0 ||
        audit_chain_hash_with(&W.hasher, W.prev, W.canon.data, W.canon.len, hash) != 0)
        goto out;
    struct audit_row row = {
        .instance = W.ac.instance_id,
        .seq = seq,
        .time_ns = now,
        .kind = audit_item_col(it, COL_KIND),
        .request_id = audit_item_col(it, COL_REQUEST_ID),
        .subject = audit_item_col(it, COL_SUBJECT),
        .tenant = audit_item_col(it, COL_TENANT),
        .tool = audit_item_col(it, COL_TOOL),
        .decision = audit_item_col(it, COL_DECISION),
        .layer = audit_item_col(it, COL_LAYER),
        .record = W.canon.data,
        .record_len = W.canon.len,
        .hash = hash,
    };
    if (W.store->ops->append(W.store, &row) != 0)
        goto out;
    if (W.mirror || W.sinks) {
        /* The mirror and the sinks carry the whole record, hash included, one line each. */
        char qhash[67] = {'"'};
        memcpy(qhash + 1, hash, 64);
        qhash[65] = '"';
        size_t mark = W.mirror_buf.len;
        if (audit_members_add_raw(&W.chain, "hash", qhash, 66) != 0)
            goto out;
        audit_members_sort(&W.chain);
        if (audit_members_write(&W.mirror_buf, &it->body, &W.chain) != 0 ||
            gw_buf_append(&W.mirror_buf, "\n", 1) != 0)
            W.mirror_buf.len = mark;
        else if (W.sinks)
            note_line(mark, W.mirror_buf.len - mark - 1, audit_item_col(it, COL_KIND));
    }
    W.seq = seq;
    memcpy(W.prev, hash, sizeof W.prev);
    W.file_records++;
    rc = 0;
out:
    return rc;
}

/* Appends a record built on the writer thread (checkpoint, start, rotation). */
static int append_record(json_t *rec, int64_t at)
{
    struct audit_item *it = audit_item_prepare(rec);
    int rc = it ? append_item(it, at) : -1;
    audit_item_free(it);
    return rc;
}

static int append_checkpoint(int closing)
{
    char tns[24], sig[129];
    struct gw_buf payload = {0};
    int rc = -1;
    /* The checkpoint's own time is the one signed; it is also the record's time. */
    int64_t now = next_time();
    snprintf(tns, sizeof tns, "%lld", (long long)now);
    if (audit_checkpoint_payload(&payload, W.ac.instance_id, W.seq, W.prev, tns) != 0 ||
        audit_sign_with(&W.signer, payload.data, payload.len, sig) != 0)
        goto out;
    /* Built as its members directly: the record a JSON object of these fields would give. */
    const struct audit_checkpoint_fields f = {
        .head_seq = W.seq,
        .records = W.since_checkpoint,
        .head_hash = W.prev,
        .signed_time_ns = tns,
        .key_id = W.key_id,
        .signature = sig,
        .closing = closing,
    };
    if (audit_checkpoint_members(&W.checkpoint.body, &f) != 0)
        goto out;
    rc = append_item(&W.checkpoint, now);
    if (rc == 0) {
        W.since_checkpoint = 0;
        W.last_checkpoint_mono = gw_mono_ns();
        W.tx_checkpoints++;
    }
out:
    gw_buf_free(&payload);
    return rc;
}

/* Called after a commit: the mirror only ever shows committed records. */
static void mirror_flush(void)
{
    if (W.mirror && W.mirror_buf.len) {
        /* The mirror is a convenience copy: a failed write is logged, never fatal. */
        if (fwrite(W.mirror_buf.data, 1, W.mirror_buf.len, W.mirror) != W.mirror_buf.len ||
            fflush(W.mirror) != 0)
            gw_log_warn("audit_mirror", "writing the audit mirror failed: %s", strerror(errno));
    }
    /* The sinks only ever get committed records, after the mirror, never waiting on them. */
    for (size_t i = 0; i < W.n_lines; i++)
        audit_sinks_offer(W.mirror_buf.data + W.lines[i].off, W.lines[i].len, W.lines[i].decision);
    W.n_lines = 0;
    gw_buf_reset(&W.mirror_buf);
}

/* Opens a transaction: what it appends is counted from here. */
static int tx_begin(void)
{
    W.tx_checkpoints = 0;
    W.last_checkpoint_mono = gw_mono_ns();
    return W.store->ops->begin(W.store);
}

/*
 * Ends the open transaction at a signed checkpoint (a closing one when asked) and commits
 * it. Every transaction ends this way, so whatever a commit acknowledges is already covered
 * by a signature, also in the store a crash leaves. The stats count the checkpoints only
 * once they are committed.
 */
static int tx_seal_commit(int closing)
{
    if ((closing || W.since_checkpoint) && append_checkpoint(closing) != 0)
        return -1;
    pthread_mutex_lock(&W.mu);
    int inject = W.inject_failure;
    W.inject_failure = 0;
    pthread_mutex_unlock(&W.mu);
    if (inject) {
        snprintf(W.store->err, sizeof W.store->err, "injected failure");
        return -1;
    }
    uint64_t t0 = gw_mono_ns();
    if (W.store->ops->commit(W.store) != 0)
        return -1;
    metrics_histogram_observe(&commit_latency, gw_mono_ns() - t0);
    pthread_mutex_lock(&W.mu);
    W.stats.checkpoints += W.tx_checkpoints;
    if (W.tx_checkpoints)
        W.stats.last_checkpoint_seq = W.seq;
    pthread_mutex_unlock(&W.mu);
    W.tx_checkpoints = 0;
    return 0;
}

/* One record built here (start, rotation) in a transaction of its own, sealed. */
static int write_alone(json_t *rec)
{
    if (tx_begin() != 0 || append_record(rec, 0) != 0)
        return -1;
    W.since_checkpoint = 1;
    return tx_seal_commit(0);
}

static void mark_failed(const char *why, uint64_t lost)
{
    pthread_mutex_lock(&W.mu);
    W.failed = 1;
    W.stats.failed = 1;
    W.stats.lost += lost;
    pthread_cond_broadcast(&W.done);
    pthread_mutex_unlock(&W.mu);
    gw_log_error("audit_store_failed",
                 "audit store failed (%s); %llu queued records were not stored; every request "
                 "is now refused with 503 until the gateway is restarted",
                 why, (unsigned long long)lost);
}

static uint64_t interval_ns(void)
{
    return W.ac.checkpoint_interval_ms * 1000000ull;
}

static int rotate_if_due(void);

/*
 * Writes one batch in one transaction (group commit) that ends at a signed checkpoint.
 * `checkpoint.every` and `checkpoint.interval` only add checkpoints inside a big or slow
 * commit, so a reader never finds more than that many records, or that much writing time,
 * between two signatures. Returns 0, or -1 after marking the writer failed.
 */
static int write_batch(struct audit_item **batch, size_t n, int closing)
{
    uint64_t seq0 = W.seq, since0 = W.since_checkpoint, files0 = W.file_records;
    int64_t time0 = W.last_time;
    char prev0[65];
    memcpy(prev0, W.prev, sizeof prev0);
    if (tx_begin() != 0)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if (append_item(batch[i], 0) != 0)
            goto fail_tx;
        W.since_checkpoint++;
        if (i + 1 == n)
            break; /* the seal below signs the last ones */
        if (((W.ac.checkpoint_every && W.since_checkpoint >= W.ac.checkpoint_every) ||
             gw_mono_ns() - W.last_checkpoint_mono >= interval_ns()) &&
            append_checkpoint(0) != 0)
            goto fail_tx;
    }
    if (tx_seal_commit(closing) != 0)
        goto fail_tx;
    mirror_flush();
    return 0;
fail_tx:
    W.store->ops->rollback(W.store);
fail:
    gw_buf_reset(&W.mirror_buf);
    W.n_lines = 0;
    W.seq = seq0;
    W.since_checkpoint = since0;
    W.file_records = files0;
    W.last_time = time0;
    memcpy(W.prev, prev0, sizeof prev0);
    mark_failed(W.store->err[0] ? W.store->err : "record could not be encoded", n);
    return -1;
}

static void *writer_main(void *arg)
{
    struct audit_item **batch = malloc(WRITER_BATCH * sizeof *batch);
    for (;;) {
        pthread_mutex_lock(&W.mu);
        /* No timer: every commit ends signed, so no tail is ever left waiting for one. */
        while (!W.stopping && (W.count == 0 || W.hold))
            pthread_cond_wait(&W.work, &W.mu);
        /*
         * Group commit: a commit costs about the same for one record as for hundreds, and
         * answers wait for it, so when only a few records are queued, let more arrive for a
         * moment (bounded, far below a request's own latency) before committing.
         */
        if (!W.stopping && !W.hold && W.count > 0 && W.waited == 0 && W.flushers == 0 &&
            W.count < WRITER_QUEUED_GATHER_RECORDS) {
            /* Nobody waits: gather longer, until a waiting record, enough records or stop. */
            uint64_t until = gw_mono_ms() + WRITER_QUEUED_GATHER_MS;
            W.gathering = GATHER_QUEUED;
            while (!W.stopping && !W.hold && W.waited == 0 && W.flushers == 0 &&
                   W.count < WRITER_QUEUED_GATHER_RECORDS && gw_mono_ms() < until)
                gw_cond_wait_until_ms(&W.work, &W.mu, until);
            W.gathering = GATHER_NONE;
        }
        if (!W.stopping && W.count > 0 && W.count < WRITER_GATHER_BELOW && W.flushers == 0 &&
            W.ac.commit_delay_ns) {
            /* Records arriving meanwhile do not wake the writer: the delay is the point. */
            uint64_t until = gw_mono_ns() + W.ac.commit_delay_ns;
            W.gathering = GATHER_DELAY;
            while (!W.stopping && W.flushers == 0 && gw_mono_ns() < until)
                gw_cond_wait_until_ns(&W.work, &W.mu, until);
            W.gathering = GATHER_NONE;
        }
        size_t n = 0;
        while (batch && W.count && n < WRITER_BATCH && (!W.hold || W.stopping)) {
            batch[n] = W.ring[W.head];
            W.queued_bytes -= batch[n]->body.text.len;
            if (batch[n]->notify)
                W.waited--;
            n++;
            W.head = (W.head + 1) % W.cap;
            W.count--;
        }
        int stopping = W.stopping && W.count == 0;
        int failed = W.failed;
        pthread_mutex_unlock(&W.mu);

        int ok = 0;
        if (!failed && (n || stopping))
            ok = write_batch(batch, n, stopping) == 0;
        for (size_t i = 0; i < n; i++) {
            if (batch[i]->notify)
                batch[i]->notify(batch[i]->notify_arg, ok);
            audit_item_free(batch[i]);
        }
        pthread_mutex_lock(&W.mu);
        W.finished += n;
        if (ok) {
            W.stats.committed += n;
            W.stats.batches++;
        } else if (failed)
            W.stats.lost += n;
        pthread_cond_broadcast(&W.done);
        pthread_mutex_unlock(&W.mu);
        /* Upkeep that would hold answers (a fold's syncs), now that this commit's are out. */
        if (ok && !stopping && W.store->ops->idle)
            W.store->ops->idle(W.store);
        if (ok && !stopping)
            rotate_if_due();
        if (stopping || !batch)
            break;
    }
    free(batch);
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) == 0) {
        pthread_mutex_lock(&W.mu);
        W.stats.writer_cpu_ns =
            ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
            ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
        pthread_mutex_unlock(&W.mu);
    }
    return NULL;
}

int audit_submit(json_t *rec)
{
    return audit_submit_notify(rec, NULL, NULL);
}

int audit_submit_notify(json_t *rec, void (*notify)(void *arg, int ok), void *arg)
{
    if (!rec)
        return -ENOMEM;
    /* Canonicalization happens here, on the caller's thread, outside the lock. */
    struct audit_item *it = audit_item_prepare(rec);
    json_decref(rec);
    if (!it)
        return -EINVAL;
    return audit_submit_item(it, notify, arg);
}

int audit_submit_item(struct audit_item *it, void (*notify)(void *arg, int ok), void *arg)
{
    int rc = 0;
    if (!it)
        return -ENOMEM;
    it->notify = notify;
    it->notify_arg = arg;
    pthread_mutex_lock(&W.mu);
    if (!W.running || W.stopping)
        rc = -ENOTCONN;
    else if (W.failed)
        rc = -EIO;
    else if (W.count >= W.cap || W.queued_bytes + it->body.text.len > WRITER_QUEUE_MAX_BYTES)
        rc = -EAGAIN;
    if (rc == 0) {
        W.ring[(W.head + W.count) % W.cap] = it;
        W.count++;
        W.queued_bytes += it->body.text.len;
        W.stats.submitted++;
        if (notify)
            W.waited++;
        if (W.count == 1 ||
            (W.gathering == GATHER_QUEUED && (notify || W.count == WRITER_QUEUED_GATHER_RECORDS)))
            pthread_cond_signal(&W.work);
    } else {
        W.stats.rejected++;
    }
    pthread_mutex_unlock(&W.mu);
    if (rc != 0)
        audit_item_free(it);
    return rc;
}

int audit_flush(void)
{
    pthread_mutex_lock(&W.mu);
    /*
     * Waits until every record submitted so far has been handed back (committed or lost, and
     * its notice delivered), also after a failure: a caller that flushes may rely on every
     * notice having run.
     */
    uint64_t target = W.stats.submitted;
    /* Someone now waits for what is queued: the writer stops gathering and commits it. */
    W.flushers++;
    if (W.gathering)
        pthread_cond_signal(&W.work);
    while (W.running && W.finished < target)
        pthread_cond_wait(&W.done, &W.mu);
    W.flushers--;
    int rc = W.failed ? -EIO : 0;
    pthread_mutex_unlock(&W.mu);
    return rc;
}

void audit_writer_stats(struct audit_writer_stats *out)
{
    pthread_mutex_lock(&W.mu);
    *out = W.running ? W.stats : W.last_stats;
    out->running = W.running && !W.stopping;
    out->queued = W.count;
    out->capacity = W.cap;
    pthread_mutex_unlock(&W.mu);
}

void audit_writer_hold(int on)
{
    pthread_mutex_lock(&W.mu);
    W.hold = on;
    pthread_cond_broadcast(&W.work);
    pthread_mutex_unlock(&W.mu);
}

void audit_writer_inject_failure(void)
{
    pthread_mutex_lock(&W.mu);
    W.inject_failure = 1;
    pthread_mutex_unlock(&W.mu);
}

char *audit_default_key_path(const char *store_url, const char *instance)
{
    const char *path = audit_store_sqlite_path(store_url);
    char buf[4200];
    if (path)
        snprintf(buf, sizeof buf, "%s.ed25519.pem", path);
    else
        snprintf(buf, sizeof buf, "toolgate-audit-%s.ed25519.pem", instance);
    return strdup(buf);
}

static void free_config_copy(struct audit_config *ac)
{
    free(ac->store);
    free(ac->mirror);
    free(ac->signing_key);
    free(ac->instance_id);
    memset(ac, 0, sizeof *ac);
}

static int copy_config(struct audit_config *dst, const struct audit_config *src)
{
    *dst = *src;
    dst->sinks = NULL; /* the sinks keep their own copy (audit_sinks_start) */
    dst->n_sinks = 0;
    dst->store = src->store ? strdup(src->store) : NULL;
    dst->mirror = src->mirror ? strdup(src->mirror) : NULL;
    dst->signing_key = src->signing_key ? strdup(src->signing_key) : NULL;
    dst->instance_id = src->instance_id ? strdup(src->instance_id) : NULL;
    if (!dst->store || !dst->instance_id || (src->mirror && !dst->mirror) ||
        (src->signing_key && !dst->signing_key))
        return -1;
    return 0;
}

static int load_key(void)
{
    char err[512];
    if (W.ac.signing_key) {
        /* A configured key must exist: a missing file is a mistake to report, not paper over. */
        W.key = audit_key_load_private(W.ac.signing_key, err, sizeof err);
        if (!W.key) {
            gw_log_error("audit_key", "audit.signing_key: %s", err);
            return -1;
        }
    } else {
        char *path = audit_default_key_path(W.ac.store, W.ac.instance_id);
        if (!path)
            return -1;
        if (access(path, F_OK) == 0) {
            W.key = audit_key_load_private(path, err, sizeof err);
        } else {
            W.key = audit_key_generate(path, err, sizeof err);
            if (W.key)
                gw_log_warn("audit_key_generated",
                            "no audit.signing_key configured: generated an Ed25519 key at %s "
                            "(public key %s.pub; verify with toolgate audit verify --pubkey)",
                            path, path);
        }
        if (!W.key)
            gw_log_error("audit_key", "audit signing key: %s", err);
        free(path);
        if (!W.key)
            return -1;
    }
    if (audit_signer_init(&W.signer, W.key) != 0 || audit_chain_hasher_init(&W.hasher) != 0) {
        gw_log_error("audit_key",
                     "cannot set up signing and hashing for the audit chain (an Ed25519 "
                     "private key is needed, and its signatures must match OpenSSL's)");
        return -1;
    }
    return audit_key_id(W.key, W.key_id);
}

static int open_mirror(void)
{
    if (!W.ac.mirror)
        return 0;
    if (strcmp(W.ac.mirror, "stdout") == 0) {
        W.mirror = stdout;
        return 0;
    }
    if (strncmp(W.ac.mirror, "jsonl:", 6) == 0) {
        W.mirror = fopen(W.ac.mirror + 6, "ae");
        if (W.mirror)
            return 0;
        gw_log_error("audit_mirror", "cannot open audit mirror %s: %s", W.ac.mirror + 6,
                     strerror(errno));
        return -1;
    }
    gw_log_error("audit_mirror", "audit.mirror \"%s\" is not understood", W.ac.mirror);
    return -1;
}

static void close_all(void)
{
    if (W.store)
        W.store->ops->close(W.store);
    W.store = NULL;
    audit_signer_free(&W.signer);
    audit_chain_hasher_free(&W.hasher);
    EVP_PKEY_free(W.key);
    W.key = NULL;
    if (W.mirror && W.mirror != stdout)
        fclose(W.mirror);
    else if (W.mirror)
        fflush(W.mirror);
    W.mirror = NULL;
    gw_buf_free(&W.canon);
    audit_members_free(&W.chain);
    audit_members_free(&W.checkpoint.body);
    gw_buf_free(&W.instance);
    W.time_text.day[0] = '\0';
    gw_buf_free(&W.mirror_buf);
    free(W.lines);
    W.lines = NULL;
    W.n_lines = W.cap_lines = 0;
    free(W.ring);
    W.ring = NULL;
    free(W.config_hash);
    W.config_hash = NULL;
    free_config_copy(&W.ac);
}

/* Name of the rotated file that ends at seq: PATH.<seq, 20 digits> sorts by position. */
static void rotated_name(char *out, size_t outlen, const char *path, uint64_t seq)
{
    snprintf(out, outlen, "%s.%020llu", path, (unsigned long long)seq);
}

/* audit.retention: drops old rotated files and records what went (audit_rotate.c). */
static void apply_retention(const char *path)
{
    json_t *rec = audit_retention_sweep(path, W.ac.instance_id, W.ac.retention_ms);
    if (!rec)
        return;
    if (write_alone(rec) != 0) {
        W.store->ops->rollback(W.store);
        mark_failed(W.store->err, 0);
    } else
        mirror_flush();
    gw_buf_reset(&W.mirror_buf);
    W.n_lines = 0;
    json_decref(rec);
}

/*
 * SQLite rotation: the current file is closed with a closing checkpoint, renamed to
 * PATH.<last seq>, and a fresh PATH starts with a rotation record whose prev_hash is the old
 * file's head, so the chain runs on across files.
 */
static int rotate_if_due(void)
{
    const char *path = audit_store_sqlite_path(W.ac.store);
    if (!path || (!W.ac.rotate_max_records && !W.ac.rotate_max_bytes))
        return 0;
    if (!((W.ac.rotate_max_records && W.file_records >= W.ac.rotate_max_records) ||
          (W.ac.rotate_max_bytes && W.store->ops->size(W.store) >= W.ac.rotate_max_bytes)))
        return 0;
    char err[512], rotated[4200];
    if (write_batch(NULL, 0, 1) != 0)
        return -1;
    W.store->ops->close(W.store);
    W.store = NULL;
    rotated_name(rotated, sizeof rotated, path, W.seq);
    if (rename(path, rotated) != 0) {
        gw_log_error("audit_rotate", "cannot rename %s to %s: %s", path, rotated, strerror(errno));
        /* The old file is intact and closed; carry on appending to it. */
    }
    W.store = audit_store_open_format(W.ac.store, 1, W.ac.store_format, err, sizeof err);
    if (W.store && W.store->ops->set_sync(W.store, W.ac.sync_full) != 0) {
        W.store->ops->close(W.store);
        W.store = NULL;
    }
    if (!W.store) {
        W.store = NULL;
        pthread_mutex_lock(&W.mu);
        W.failed = 1;
        W.stats.failed = 1;
        pthread_mutex_unlock(&W.mu);
        gw_log_error("audit_rotate", "cannot open a new audit file after rotation: %s", err);
        return -1;
    }
    W.file_records = 0;
    json_t *rec = json_pack("{s:s, s:s}", "kind", "rotation", "previous_file", rotated);
    if (!rec)
        return -1;
    /* The new file's first commit is sealed like any other. */
    int rc = write_alone(rec);
    json_decref(rec);
    if (rc != 0) {
        W.store->ops->rollback(W.store);
        mark_failed(W.store->err, 0);
    }
    if (rc == 0)
        mirror_flush();
    gw_buf_reset(&W.mirror_buf);
    W.n_lines = 0;
    apply_retention(path);
    return rc;
}

/*
 * Recovers the chain head: from the store, or (after a crash between rotation steps) from
 * the newest rotated file. Returns the previous shutdown state for the start record.
 */
static const char *recover_head(void)
{
    struct audit_head h;
    int rc = W.store->ops->head(W.store, W.ac.instance_id, &h);
    if (rc < 0)
        return NULL;
    if (rc == 0) {
        const char *path = audit_store_sqlite_path(W.ac.store);
        char rotated[8400], err[256];
        if (path && audit_newest_rotated(path, rotated, sizeof rotated)) {
            struct audit_store *old = audit_sqlite_open(rotated, 0, err, sizeof err);
            if (old && old->ops->head(old, W.ac.instance_id, &h) == 1) {
                old->ops->close(old);
                W.seq = h.seq;
                memcpy(W.prev, h.hash, sizeof W.prev);
                W.last_time = h.time_ns;
                return "rotated";
            }
            if (old)
                old->ops->close(old);
        }
        W.seq = 0;
        memcpy(W.prev, AUDIT_GENESIS_HASH, sizeof W.prev);
        return "none";
    }
    W.seq = h.seq;
    memcpy(W.prev, h.hash, sizeof W.prev);
    W.last_time = h.time_ns;
    return h.closing ? "clean" : "unclean";
}

int audit_writer_start(const struct audit_config *ac, const char *config_hash)
{
    char err[512];
    int rc = -EINVAL;
    pthread_once(&conds_once, init_conds);
    pthread_mutex_lock(&W.mu);
    int running = W.running;
    pthread_mutex_unlock(&W.mu);
    if (running) {
        gw_log_error("audit_start", "the audit writer is already running");
        return -EALREADY;
    }
    memset(&W.stats, 0, sizeof W.stats);
    metrics_histogram_init(&commit_latency, commit_bounds_ns,
                           sizeof commit_bounds_ns / sizeof commit_bounds_ns[0], 1e-9);
    W.finished = 0;
    W.failed = W.stopping = W.inject_failure = W.hold = 0;
    W.since_checkpoint = W.file_records = 0;
    W.last_time = 0;
    if (copy_config(&W.ac, ac) != 0) {
        rc = -ENOMEM;
        goto fail;
    }
    if (audit_canon_string(&W.instance, W.ac.instance_id, strlen(W.ac.instance_id)) != 0) {
        gw_log_error("audit_start", "audit.instance_id cannot be written into a record");
        goto fail;
    }
    snprintf(W.checkpoint_kind, sizeof W.checkpoint_kind, "checkpoint");
    W.checkpoint.cols = W.checkpoint_kind;
    for (int c = 0; c < COL_COUNT; c++)
        W.checkpoint.col_off[c] = c == COL_KIND ? 0 : -1;
    W.config_hash = config_hash ? strdup(config_hash) : NULL;
    W.cap = ac->queue ? ac->queue : 65536;
    W.head = W.count = 0;
    W.queued_bytes = 0;
    W.waited = 0;
    W.ring = calloc(W.cap, sizeof *W.ring);
    if (!W.ring) {
        rc = -ENOMEM;
        goto fail;
    }
    /* The store first: a start that cannot reach it leaves no generated key behind. */
    W.store = audit_store_open_format(W.ac.store, 1, W.ac.store_format, err, sizeof err);
    if (W.store && W.store->ops->set_sync(W.store, W.ac.sync_full) != 0) {
        snprintf(err, sizeof err, "cannot set the audit store's durability (audit.sync)");
        W.store->ops->close(W.store);
        W.store = NULL;
    }
    if (!W.store) {
        gw_log_error("audit_start", "%s", err);
        rc = -EIO;
        goto fail;
    }
    if (load_key() != 0)
        goto fail;
    const char *previous = recover_head();
    if (!previous) {
        gw_log_error("audit_start", "%s", W.store->err);
        rc = -EIO;
        goto fail;
    }
    if (open_mirror() != 0)
        goto fail;
    W.sinks = audit_sinks_active();
    json_t *start = json_pack("{s:s, s:s, s:s, s:s}", "kind", "start", "version", TOOLGATE_VERSION,
                              "previous_shutdown", previous, "key_id", W.key_id);
    if (!start) {
        rc = -ENOMEM;
        goto fail;
    }
    if (W.config_hash)
        json_object_set_new(start, "config_sha256", json_string(W.config_hash));
    if (strcmp(previous, "rotated") == 0)
        json_object_set_new(start, "kind", json_string("rotation"));
    /* The start record is signed in its own commit, like every record after it. */
    int ok = write_alone(start) == 0;
    json_decref(start);
    if (ok)
        mirror_flush();
    gw_buf_reset(&W.mirror_buf);
    W.n_lines = 0;
    if (!ok) {
        W.store->ops->rollback(W.store);
        gw_log_error("audit_start", "cannot write the start record: %s", W.store->err);
        rc = -EIO;
        goto fail;
    }
    pthread_mutex_lock(&W.mu);
    W.running = 1;
    pthread_mutex_unlock(&W.mu);
    if (pthread_create(&W.thread, NULL, writer_main, NULL) == 0)
        pthread_setname_np(W.thread, "tg-audit"); /* shows in top -H, perf, gdb */
    else {
        pthread_mutex_lock(&W.mu);
        W.running = 0;
        pthread_mutex_unlock(&W.mu);
        rc = -EAGAIN;
        goto fail;
    }
    gw_log_info("audit_start", "audit writer started: instance %s, chain at seq %llu",
                W.ac.instance_id, (unsigned long long)W.seq);
    return 0;
fail:
    close_all();
    return rc;
}

void audit_stop(void)
{
    pthread_mutex_lock(&W.mu);
    if (!W.running) {
        pthread_mutex_unlock(&W.mu);
        audit_sinks_stop();
        return;
    }
    W.stopping = 1;
    pthread_cond_broadcast(&W.work);
    pthread_mutex_unlock(&W.mu);
    pthread_join(W.thread, NULL);
    pthread_mutex_lock(&W.mu);
    W.last_stats = W.stats;
    /* Anything left (only when the store had failed) is dropped and counted. */
    while (W.count) {
        W.queued_bytes -= W.ring[W.head]->body.text.len;
        if (W.ring[W.head]->notify)
            W.waited--;
        audit_item_free(W.ring[W.head]);
        W.head = (W.head + 1) % W.cap;
        W.count--;
        W.stats.lost++;
    }
    W.running = 0;
    pthread_cond_broadcast(&W.done);
    pthread_mutex_unlock(&W.mu);
    close_all();
    /* After the writer: the closing records reach the sinks before they flush and stop. */
    audit_sinks_stop();
}
