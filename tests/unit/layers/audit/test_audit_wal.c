/*
 * The write-ahead log's folder (audit_wal.h) on real SQLite files: the log is folded from the
 * folder's thread and starts over, stays bounded while a writer keeps committing, loses no
 * row; a reader holding an old snapshot makes the log grow without a failure and without the
 * folder spinning, and once it is done the log starts over again; a folder that cannot start
 * says why.
 */
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fixtures.h"
#include "layers/audit/audit_wal.h"

/* Rows of this many bytes take two overflow pages and a leaf: three frames a commit. */
#define ROW_BYTES 6000

static char dir[64];

static int setup(void **state)
{
    (void)state;
    fx_mkdtemp(dir, sizeof dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fx_rmtree(dir);
    return 0;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err ? err : "?");
}

static sqlite3 *open_wal(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec_ok(db, "PRAGMA journal_mode=WAL");
    exec_ok(db, "PRAGMA synchronous=NORMAL");
    exec_ok(db, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)");
    return db;
}

/* The folder's counts now, printed under a label. */
static void folder_stats(struct audit_wal_folder *f, const char *label, struct audit_wal_stats *st)
{
    audit_wal_folder_stats(f, st);
    print_message("%s: folds %llu by the folder, %llu by the writer; log %llu pages (at most "
                  "%llu)\n",
                  label, (unsigned long long)st->folds, (unsigned long long)st->inline_folds,
                  (unsigned long long)st->pages, (unsigned long long)st->pages_max);
}

/*
 * One transaction per row, as the audit writer's group commits at low load; like the writer,
 * hands the folder its time between two commits after each (f may be NULL: no folder).
 */
static void commit_rows(sqlite3 *db, struct audit_wal_folder *f, int n, int pause_us)
{
    sqlite3_stmt *q = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT INTO t (v) VALUES (randomblob(?1))", -1, &q, NULL),
        SQLITE_OK);
    for (int i = 0; i < n; i++) {
        sqlite3_bind_int(q, 1, ROW_BYTES);
        if (sqlite3_step(q) != SQLITE_DONE)
            fail_msg("commit %d: %s", i, sqlite3_errmsg(db));
        sqlite3_reset(q);
        audit_wal_folder_idle(f);
        if (pause_us)
            usleep((useconds_t)pause_us);
    }
    sqlite3_finalize(q);
}

static int64_t count_rows(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "ok");
    sqlite3_finalize(q);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

static long long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

static void test_log_folded_and_started_over(void **state)
{
    (void)state;
    char path[128], wal[140], err[300];
    snprintf(path, sizeof path, "%s/fold.db", dir);
    snprintf(wal, sizeof wal, "%s-wal", path);
    sqlite3 *db = open_wal(path);
    struct audit_wal_stats before;
    audit_wal_totals(&before);
    struct audit_wal_folder *f = audit_wal_folder_start(db, path, err, sizeof err);
    if (!f)
        fail_msg("folder: %s", err);
    /* About 12,000 frames in all: without folds the log would hold every one of them. */
    commit_rows(db, f, 4000, 100);
    struct audit_wal_stats st;
    folder_stats(f, "after 4000 commits", &st);
    assert_true(st.folds >= 2);
    assert_true(st.inline_folds >= 2);
    assert_int_equal(st.failures, 0);
    /*
     * The log started over each time: it held a few folds' worth at most, not the 12,000
     * frames of all the commits. How many depends on how far the writer gets while the
     * folder copies: about 1.1 folds' worth on a quiet machine, up to 3.5 seen under ASan with
     * the machine busy; 6 (half of all the frames) still tells a log that starts over from one
     * that only grows.
     */
    assert_true(st.pages_max >= AUDIT_WAL_FOLD_PAGES);
    assert_true(st.pages_max < 6 * AUDIT_WAL_FOLD_PAGES);
    assert_true(file_size(wal) < 6LL * AUDIT_WAL_FOLD_PAGES * 4200);
    /* The process-wide totals (metrics) count this folder's work, and show its log now. */
    struct audit_wal_stats total;
    audit_wal_totals(&total);
    assert_int_equal(total.folds - before.folds, st.folds);
    assert_int_equal(total.inline_folds - before.inline_folds, st.inline_folds);
    assert_int_equal(total.failures, before.failures);
    assert_int_equal(total.pages, st.pages);
    audit_wal_folder_stop(f);
    audit_wal_totals(&total);
    assert_int_equal(total.pages, 0);
    sqlite3_close(db);
    /* The last connection closed folds the rest and removes the log. */
    assert_int_equal(file_size(wal), -1);
    assert_int_equal(count_rows(path), 4000);
}

static void test_reader_holds_the_log(void **state)
{
    (void)state;
    char path[128], err[300];
    snprintf(path, sizeof path, "%s/reader.db", dir);
    sqlite3 *db = open_wal(path);
    commit_rows(db, NULL, 10, 0);
    struct audit_wal_folder *f = audit_wal_folder_start(db, path, err, sizeof err);
    if (!f)
        fail_msg("folder: %s", err);
    /* A reader keeps the snapshot of the first ten rows: no later frame can be copied. */
    sqlite3 *reader = NULL;
    assert_int_equal(sqlite3_open(path, &reader), SQLITE_OK);
    exec_ok(reader, "BEGIN");
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(reader, "SELECT count(*) FROM t", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(q, 0), 10);
    sqlite3_finalize(q);

    commit_rows(db, f, 1500, 0);
    struct audit_wal_stats held;
    folder_stats(f, "held", &held);
    /* Every commit went through; the log only grew, and the folder did not spin on it. */
    assert_int_equal(held.failures, 0);
    assert_true(held.pages >= 4000);
    assert_int_equal(held.pages, held.pages_max);
    assert_true(held.folds <= AUDIT_WAL_ROUNDS * (held.pages / AUDIT_WAL_FOLD_PAGES + 1));

    exec_ok(reader, "COMMIT");
    sqlite3_close(reader);
    commit_rows(db, f, 1500, 100);
    struct audit_wal_stats after;
    folder_stats(f, "after", &after);
    assert_true(after.folds > held.folds);
    assert_true(after.pages < held.pages);
    assert_true(after.pages < 3 * AUDIT_WAL_FOLD_PAGES);
    assert_int_equal(after.failures, 0);
    audit_wal_folder_stop(f);
    sqlite3_close(db);
    assert_int_equal(count_rows(path), 3010);
}

/*
 * A commit never folds on its own: the rest after the folder's fold (two syncs) would hold
 * the answers waiting for that commit. The writer folds it between commits, once they are
 * out, and the next commit starts the log over.
 */
static void test_commit_does_not_fold(void **state)
{
    (void)state;
    char path[128], err[300];
    snprintf(path, sizeof path, "%s/idle.db", dir);
    sqlite3 *db = open_wal(path);
    struct audit_wal_folder *f = audit_wal_folder_start(db, path, err, sizeof err);
    if (!f)
        fail_msg("folder: %s", err);
    /* Past the mark (three frames a commit), then on until the folder has folded once. */
    int64_t rows = AUDIT_WAL_FOLD_PAGES / 3 + 10;
    commit_rows(db, NULL, (int)rows, 0);
    struct audit_wal_stats st = {0};
    for (int i = 0; i < 20000 && st.folds == 0; i++, rows++) {
        commit_rows(db, NULL, 1, 100);
        audit_wal_folder_stats(f, &st);
    }
    assert_true(st.folds >= 1);
    /* More commits, with no time between them given to the folder: nothing folded inline. */
    commit_rows(db, NULL, 50, 0);
    rows += 50;
    folder_stats(f, "commits alone", &st);
    assert_int_equal(st.inline_folds, 0);
    uint64_t grown = st.pages;
    assert_true(grown >= AUDIT_WAL_FOLD_PAGES);
    /* Once the writer is idle it folds the rest, and the next commit starts the log over. */
    for (int i = 0; i < 5000 && st.inline_folds == 0; i++) {
        audit_wal_folder_idle(f);
        audit_wal_folder_stats(f, &st);
        if (!st.inline_folds)
            usleep(1000); /* the folder may still be on another round */
    }
    assert_int_equal(st.inline_folds, 1);
    commit_rows(db, NULL, 1, 0);
    rows++;
    folder_stats(f, "after the idle fold", &st);
    assert_true(st.pages < grown);
    assert_true(st.pages < 16); /* one commit: three frames, a few more when a page splits */
    assert_int_equal(st.failures, 0);
    /*
     * A connection whose owner never gives the folder that time (no idle calls) still has its
     * log start over: after a fold's worth more, the commit folds the rest itself.
     */
    commit_rows(db, NULL, 4 * AUDIT_WAL_FOLD_PAGES / 3, 100);
    rows += 4 * AUDIT_WAL_FOLD_PAGES / 3;
    folder_stats(f, "commits without idle", &st);
    assert_true(st.inline_folds >= 2);
    assert_true(st.pages < 3 * AUDIT_WAL_FOLD_PAGES);
    assert_int_equal(st.failures, 0);
    audit_wal_folder_stop(f);
    sqlite3_close(db);
    assert_int_equal(count_rows(path), rows);
}

static void test_cannot_start(void **state)
{
    (void)state;
    char path[128], missing[160], err[300] = "";
    snprintf(path, sizeof path, "%s/start.db", dir);
    snprintf(missing, sizeof missing, "%s/no-such-dir/start.db", dir);
    sqlite3 *db = open_wal(path);
    assert_null(audit_wal_folder_start(db, missing, err, sizeof err));
    assert_non_null(strstr(err, "cannot open a second connection"));
    assert_non_null(strstr(err, missing));
    /* The connection keeps SQLite's own checkpoint: commits go on and stay bounded. */
    commit_rows(db, NULL, 1500, 0);
    sqlite3_close(db);
    assert_int_equal(count_rows(path), 1500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_log_folded_and_started_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reader_holds_the_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_does_not_fold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cannot_start, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
