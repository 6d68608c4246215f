/*
 * Audit writer: every commit ends at a signed checkpoint, so whatever has been acknowledged is
 * covered by a signature at every moment, also when the process is killed. Checked from a
 * second connection at the instant each record is acknowledged, on the store a SIGKILL left,
 * and for the bounds (`checkpoint.every`, `checkpoint.interval`) that add checkpoints inside
 * one commit.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>
#include <stdatomic.h>

#include "layers/audit/audit_fixtures.h"
#include "lib/log.h"

struct fixture {
    char dir[64];
    char db[128];
    char pub[192];
    struct audit_config *ac;
};

/* Checkpoints only at commits: bounds far beyond anything these tests write. */
#define NO_BOUND_EVERY 100000000ull
#define NO_BOUND_INTERVAL_MS 3600000ull

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    fx_mkdtemp(f->dir, sizeof f->dir);
    snprintf(f->db, sizeof f->db, "%s/audit.db", f->dir);
    snprintf(f->pub, sizeof f->pub, "%s/audit.db.ed25519.pem.pub", f->dir);
    f->ac = make_test_config(f->dir, "audit.db", NO_BOUND_EVERY, NO_BOUND_INTERVAL_MS, 4096);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    audit_stop();
    fx_rmtree(f->dir);
    audit_config_free(f->ac);
    free(f);
    return 0;
}

/* A decision record whose request_id names its number: "r-<n>". */
static json_t *numbered_record(long n)
{
    char rid[32];
    snprintf(rid, sizeof rid, "r-%08ld", n);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "kind", "decision", "request_id", rid,
                     "subject", "alice", "tool", "ehr.get_patient", "decision", "allow", "n",
                     (json_int_t)n);
}

static int verify_db(const struct fixture *f, int flags, char *problem, size_t len)
{
    const char *paths[1] = {f->db};
    return verify_paths(f->pub, paths, 1, flags, problem, len);
}

/* seq of the record "r-<n>" (0: absent), of the last row and of the last checkpoint. */
struct placement {
    int64_t record_seq, last_seq, last_checkpoint_seq;
    char last_kind[16];
};

static int64_t query_int(sqlite3 *h, const char *sql, const char *arg)
{
    sqlite3_stmt *q;
    int64_t v = -1;
    if (sqlite3_prepare_v2(h, sql, -1, &q, NULL) != SQLITE_OK)
        return -1;
    if (arg)
        sqlite3_bind_text(q, 1, arg, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

static int place(sqlite3 *h, long n, struct placement *p)
{
    char rid[32];
    snprintf(rid, sizeof rid, "r-%08ld", n);
    memset(p, 0, sizeof *p);
    p->record_seq = query_int(h,
                              "SELECT coalesce(max(seq), 0) FROM audit_records WHERE "
                              "request_id = ?1",
                              rid);
    p->last_seq = query_int(h, "SELECT coalesce(max(seq), 0) FROM audit_records", NULL);
    p->last_checkpoint_seq = query_int(
        h, "SELECT coalesce(max(seq), 0) FROM audit_records WHERE kind = 'checkpoint'", NULL);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(h, "SELECT kind FROM audit_records ORDER BY seq DESC LIMIT 1", -1, &q,
                           NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(q) == SQLITE_ROW)
        snprintf(p->last_kind, sizeof p->last_kind, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    return 0;
}

/* ---- every acknowledged record is signed at the moment it is acknowledged ---- */

/*
 * The notices run on the writer thread between its commit and its next batch, so the store
 * they look at is exactly what the acknowledgement vouches for. Findings are kept for the
 * test thread (cmocka must not fail from another thread).
 */
struct ack_watch {
    const struct fixture *f;
    sqlite3 *reader; /* a second connection, open while a commit's notices arrive */
    long commit_size, seen_in_commit;
    long acked, failures;
    char first_failure[512];
};

struct ack_arg {
    struct ack_watch *w;
    long n;
};

static void ack_fail(struct ack_watch *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void ack_fail(struct ack_watch *w, const char *fmt, ...)
{
    if (w->failures++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->first_failure, sizeof w->first_failure, fmt, ap);
        va_end(ap);
    }
}

static void on_ack(void *arg, int ok)
{
    struct ack_arg *a = arg;
    struct ack_watch *w = a->w;
    if (!ok) {
        ack_fail(w, "record %ld was lost", a->n);
        return;
    }
    w->acked++;
    if (w->seen_in_commit++ == 0) {
        /* The first notice of a commit: verify the whole store as a reader would, no --live. */
        char problem[512];
        int rc = verify_db(w->f, 0, problem, sizeof problem);
        if (rc != 0)
            ack_fail(w, "commit of %ld: verify without --live at the acknowledgement: %s",
                     w->commit_size, problem);
        if (sqlite3_open_v2(w->f->db, &w->reader, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
            ack_fail(w, "cannot open a second connection");
    }
    struct placement p;
    if (!w->reader || place(w->reader, a->n, &p) != 0)
        ack_fail(w, "record %ld: cannot query the store", a->n);
    else if (p.record_seq == 0)
        ack_fail(w, "record %ld acknowledged but not in the store", a->n);
    else if (p.record_seq >= p.last_checkpoint_seq)
        ack_fail(w, "commit of %ld: record %ld (seq %lld) lies after the last checkpoint (%lld)",
                 w->commit_size, a->n, (long long)p.record_seq, (long long)p.last_checkpoint_seq);
    else if (strcmp(p.last_kind, "checkpoint") != 0 || p.last_seq != p.last_checkpoint_seq)
        ack_fail(w, "commit of %ld: the last row (seq %lld) is a %s, not a checkpoint",
                 w->commit_size, (long long)p.last_seq, p.last_kind);
    if (w->seen_in_commit == w->commit_size && w->reader) {
        sqlite3_close(w->reader);
        w->reader = NULL;
    }
}

static void test_every_commit_signed_when_acknowledged(void **state)
{
    struct fixture *f = *state;
    static const long sizes[] = {1,   2,   3,   4,   5,   7,   10,  16,  31,  32,  33,  63,
                                 64,  65,  99,  100, 127, 128, 200, 255, 256, 257, 300, 400,
                                 511, 512, 513, 600, 650, 699, 700, 1,   700, 1};
    assert_int_equal(audit_writer_start(f->ac, NULL), 0);
    struct ack_watch w = {.f = f};
    struct ack_arg *args = calloc(700, sizeof *args);
    long n = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        struct audit_writer_stats before, after;
        audit_writer_stats(&before);
        /* Held, so the writer takes all of them as one commit. */
        audit_writer_hold(1);
        w.commit_size = sizes[s];
        w.seen_in_commit = 0;
        for (long i = 0; i < sizes[s]; i++) {
            args[i] = (struct ack_arg){&w, n++};
            assert_int_equal(audit_submit_notify(numbered_record(args[i].n), on_ack, &args[i]), 0);
        }
        audit_writer_hold(0);
        assert_int_equal(audit_flush(), 0);
        audit_writer_stats(&after);
        assert_int_equal(after.batches - before.batches, 1);
        assert_int_equal(w.seen_in_commit, sizes[s]);
        if (w.failures)
            fail_msg("%ld failures; first: %s", w.failures, w.first_failure);
    }
    assert_int_equal(w.acked, n);
    free(args);
    /* While the writer runs the chain is not closed: --closed says so. */
    char problem[512];
    assert_int_equal(verify_db(f, FX_VERIFY_CLOSED, problem, sizeof problem), 1);
    assert_non_null(strstr(problem, "not a closing"));
    audit_stop();
    if (verify_db(f, FX_VERIFY_CLOSED, problem, sizeof problem) != 0)
        fail_msg("after a clean stop: %s", problem);
}

/* ---- kill -9: the store as the crash left it ---- */

#define CRASH_FIRST 300
#define CRASH_LOADERS 4

static int ack_fd = -1;
static atomic_long next_n;

static void on_child_ack(void *arg, int ok)
{
    int32_t n = (int32_t)(intptr_t)arg;
    if (ok && write(ack_fd, &n, sizeof n) != (ssize_t)sizeof n)
        _exit(4);
}

static int child_submit(long n)
{
    int rc;
    while ((rc = audit_submit_notify(numbered_record(n), on_child_ack, (void *)(intptr_t)n)) ==
           -EAGAIN)
        sched_yield();
    return rc;
}

static void *child_load(void *unused)
{
    (void)unused;
    for (;;)
        if (child_submit(atomic_fetch_add(&next_n, 1)) != 0)
            _exit(5);
    return NULL;
}

/* The child: acknowledges CRASH_FIRST records, then writes as fast as it can until killed. */
static void crash_child(const struct audit_config *ac, int fd)
{
    ack_fd = fd;
    if (audit_writer_start(ac, NULL) != 0)
        _exit(3);
    for (long i = 0; i < CRASH_FIRST; i++)
        if (child_submit(i) != 0)
            _exit(5);
    if (audit_flush() != 0)
        _exit(6);
    atomic_store(&next_n, CRASH_FIRST);
    pthread_t t[CRASH_LOADERS];
    for (int i = 0; i < CRASH_LOADERS; i++)
        pthread_create(&t[i], NULL, child_load, NULL);
    for (;;)
        pause();
}

/* Reads acknowledgements until count reach `until` (or, with until < 0, the pipe's end). */
static void read_acks(int fd, unsigned char *acked, long max, long *count, long until,
                      int timeout_ms)
{
    int32_t buf[1024];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (until < 0 || *count < until) {
        int r = poll(&p, 1, timeout_ms);
        if (r <= 0)
            fail_msg("no acknowledgement from the writer within %d ms (%ld so far)", timeout_ms,
                     *count);
        ssize_t got = read(fd, buf, sizeof buf);
        if (got == 0)
            return;
        assert_true(got > 0 && got % (ssize_t)sizeof(int32_t) == 0);
        for (ssize_t i = 0; i < got / (ssize_t)sizeof(int32_t); i++) {
            assert_true(buf[i] >= 0 && buf[i] < max);
            if (!acked[buf[i]]) {
                acked[buf[i]] = 1;
                (*count)++;
            }
        }
    }
}

static void test_crash_leaves_store_signed(void **state)
{
    struct fixture *f = *state;
    const long max = 1L << 24;
    unsigned char *acked = calloc((size_t)max, 1);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        crash_child(f->ac, fds[1]);
        _exit(0);
    }
    close(fds[1]);
    long count = 0;
    read_acks(fds[0], acked, max, &count, CRASH_FIRST, 20000);
    /* Under load: keep reading acknowledgements for a moment, then kill in mid-flight. */
    long before_load = count;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        read_acks(fds[0], acked, max, &count, count + 1, 5000);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 60);
    fx_kill9(pid);
    read_acks(fds[0], acked, max, &count, -1, 5000);
    close(fds[0]);
    assert_true(count > before_load); /* records were flowing when it died */

    /* The store as the crash left it verifies with no --live, and is not closed. */
    char problem[512];
    if (verify_db(f, 0, problem, sizeof problem) != 0)
        fail_msg("after SIGKILL (%ld acknowledged): %s", count, problem);
    assert_int_equal(verify_db(f, FX_VERIFY_CLOSED, problem, sizeof problem), 1);
    assert_non_null(strstr(problem, "not a closing"));

    /* Every acknowledged record is in the store, before its last checkpoint. */
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(f->db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    int64_t last_cp =
        query_int(h, "SELECT max(seq) FROM audit_records WHERE kind = 'checkpoint'", NULL);
    assert_int_equal(query_int(h, "SELECT max(seq) FROM audit_records", NULL), last_cp);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT request_id, seq FROM audit_records WHERE kind = "
                                        "'decision'",
                                        -1, &q, NULL),
                     SQLITE_OK);
    long found = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        long n = strtol((const char *)sqlite3_column_text(q, 0) + 2, NULL, 10);
        assert_true(n >= 0 && n < max);
        assert_true(sqlite3_column_int64(q, 1) < last_cp);
        if (acked[n] == 1) {
            acked[n] = 2;
            found++;
        }
    }
    sqlite3_finalize(q);
    sqlite3_close(h);
    if (found != count)
        fail_msg("%ld of %ld acknowledged records are missing", count - found, count);
    free(acked);

    /* A restart records the unclean stop; after a clean stop the chain is closed. */
    assert_int_equal(audit_writer_start(f->ac, NULL), 0);
    assert_int_equal(audit_submit(numbered_record(max - 1)), 0);
    audit_stop();
    assert_int_equal(sqlite3_open_v2(f->db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(query_int(h,
                               "SELECT count(*) FROM audit_records WHERE kind = 'start' AND "
                               "record LIKE '%\"previous_shutdown\":\"unclean\"%'",
                               NULL),
                     1);
    sqlite3_close(h);
    if (verify_db(f, FX_VERIFY_CLOSED, problem, sizeof problem) != 0)
        fail_msg("after the restart: %s", problem);
}

/* ---- the bounds add checkpoints inside one commit ---- */

struct row {
    int64_t seq;
    char kind[16];
    int64_t records; /* a checkpoint's "records" */
};

/* Rows with seq > after, in order (at most cap). */
static size_t rows_after(const char *db, int64_t after, struct row *out, size_t cap)
{
    sqlite3 *h;
    sqlite3_stmt *q;
    size_t n = 0;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT seq, kind, coalesce(json_extract(record, "
                                        "'$.records'), -1) FROM audit_records WHERE seq > ?1 "
                                        "ORDER BY seq",
                                        -1, &q, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(q, 1, after);
    while (n < cap && sqlite3_step(q) == SQLITE_ROW) {
        out[n].seq = sqlite3_column_int64(q, 0);
        snprintf(out[n].kind, sizeof out[n].kind, "%s", (const char *)sqlite3_column_text(q, 1));
        out[n].records = sqlite3_column_int64(q, 2);
        n++;
    }
    sqlite3_finalize(q);
    sqlite3_close(h);
    return n;
}

static int64_t last_seq(const char *db)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    int64_t v = query_int(h, "SELECT coalesce(max(seq), 0) FROM audit_records", NULL);
    sqlite3_close(h);
    return v;
}

/* Submits n records while the writer is held, so that they are written as one commit. */
static void held_commit(long first, long n)
{
    struct audit_writer_stats before, after;
    audit_writer_stats(&before);
    audit_writer_hold(1);
    for (long i = 0; i < n; i++)
        assert_int_equal(audit_submit(numbered_record(first + i)), 0);
    audit_writer_hold(0);
    assert_int_equal(audit_flush(), 0);
    audit_writer_stats(&after);
    assert_int_equal(after.batches - before.batches, 1);
}

static void test_bounds_add_checkpoints(void **state)
{
    struct fixture *f = *state;
    struct row *rows = calloc(8192, sizeof *rows);
    char problem[512];

    /* every = 50: a commit of 120 records is signed after 50, 100 and 120. */
    f->ac->checkpoint_every = 50;
    assert_int_equal(audit_writer_start(f->ac, NULL), 0);
    int64_t mark = last_seq(f->db);
    held_commit(0, 120);
    size_t n = rows_after(f->db, mark, rows, 8192);
    assert_int_equal(n, 123);
    static const int64_t expect_at[] = {51, 102, 123};
    static const int64_t expect_records[] = {50, 50, 20};
    size_t cps = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].kind, "checkpoint") != 0) {
            assert_string_equal(rows[i].kind, "decision");
            continue;
        }
        assert_true(cps < 3);
        assert_int_equal((int64_t)i + 1, expect_at[cps]);
        assert_int_equal(rows[i].records, expect_records[cps]);
        cps++;
    }
    assert_int_equal(cps, 3);
    audit_stop();

    /* interval = 1ms: a commit that takes longer to write is signed partway through too. */
    f->ac->checkpoint_every = NO_BOUND_EVERY;
    f->ac->checkpoint_interval_ms = 1;
    assert_int_equal(audit_writer_start(f->ac, NULL), 0);
    mark = last_seq(f->db);
    held_commit(1000, 4000);
    n = rows_after(f->db, mark, rows, 8192);
    int64_t last_decision = 0, first_checkpoint = 0, decisions = 0;
    cps = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].kind, "decision") == 0) {
            last_decision = rows[i].seq;
            decisions++;
        } else if (strcmp(rows[i].kind, "checkpoint") == 0) {
            if (!cps++)
                first_checkpoint = rows[i].seq;
        }
    }
    assert_int_equal(decisions, 4000);
    assert_true(cps >= 2);
    assert_true(first_checkpoint < last_decision);
    assert_string_equal(rows[n - 1].kind, "checkpoint");
    audit_stop();
    if (verify_db(f, FX_VERIFY_CLOSED, problem, sizeof problem) != 0)
        fail_msg("%s", problem);
    free(rows);
}

int main(void)
{
    gw_log_setup(GW_LOG_ERROR + 1, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_commit_signed_when_acknowledged, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_crash_leaves_store_signed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounds_add_checkpoints, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
