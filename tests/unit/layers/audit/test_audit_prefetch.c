/*
 * audit_prefetch: a SQLite scan for one user's records has its rows read ahead on other
 * connections, and answers exactly what a scan of every row filtered by hand answers; the
 * prefetchers stay within their window of the scan, stop when it stops early, and come to
 * no harm on a store they cannot open.
 */
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "layers/audit/audit_fixtures.h"
#include "layers/audit/audit_gen.h"
#include "layers/audit/audit_prefetch.h"
#include "lib/buf.h"

static char dir[64], db[128], url[160];

static int setup(void **state)
{
    (void)state;
    char err[256];
    fx_mkdtemp(dir, sizeof dir);
    snprintf(db, sizeof db, "%s/a.db", dir);
    snprintf(url, sizeof url, "sqlite:%s", db);
    /* Few users, so that each has hundreds of calls (more than the prefetcher's minimum). */
    struct audit_gen_opts o = {.store = url, .calls = 4000, .days = 3, .users = 4, .tenants = 2};
    if (audit_gen_run(&o, err, sizeof err) != 0) {
        fprintf(stderr, "audit gen: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fx_rmtree(dir);
    return 0;
}

struct rows {
    struct gw_buf out; /* each row's hash and record, as read */
    size_t n;
    size_t stop_after; /* 0: never */
    const char *subject;
    char subjects[8][96];
    size_t n_subjects;
};

static int keep_row(const struct audit_row *r, void *arg)
{
    struct rows *c = arg;
    if (c->subject &&
        (strcmp(r->kind, "decision") != 0 || !r->subject || strcmp(r->subject, c->subject) != 0))
        return 0;
    if (!c->subject && r->subject && strcmp(r->kind, "decision") == 0) {
        size_t i = 0;
        while (i < c->n_subjects && strcmp(c->subjects[i], r->subject) != 0)
            i++;
        if (i == c->n_subjects && i < 8)
            snprintf(c->subjects[c->n_subjects++], sizeof c->subjects[0], "%s", r->subject);
    }
    assert_int_equal(gw_buf_append(&c->out, r->hash, 64), 0);
    assert_int_equal(gw_buf_append(&c->out, r->record, r->record_len), 0);
    c->n++;
    return c->stop_after && c->n == c->stop_after ? 7 : 0;
}

/* The store, with every row read into *all (and its users named). */
static struct audit_store *open_all(struct rows *all)
{
    char err[256];
    struct audit_store *st = audit_sqlite_open(db, 0, err, sizeof err);
    assert_non_null(st);
    assert_int_equal(st->ops->scan(st, NULL, keep_row, all), 0);
    assert_true(all->n_subjects >= 2);
    return st;
}

/* Every user: the indexed scan (read ahead) gives the brute-force answer, row for row. */
static void test_user_scans_read_ahead(void **state)
{
    (void)state;
    struct rows all = {0};
    struct audit_store *st = open_all(&all);
    size_t helped = 0;
    for (size_t u = 0; u < all.n_subjects; u++) {
        struct rows brute = {.subject = all.subjects[u]}, indexed = {0};
        assert_int_equal(st->ops->scan(st, NULL, keep_row, &brute), 0);
        struct audit_filter f = {.kind = "decision", .subject = all.subjects[u]};
        uint64_t runs = audit_prefetch_runs(), before = audit_prefetch_rows();
        assert_int_equal(st->ops->scan(st, &f, keep_row, &indexed), 0);
        uint64_t touched = audit_prefetch_rows() - before;
        assert_int_equal(indexed.n, brute.n);
        assert_int_equal(indexed.out.len, brute.out.len);
        assert_memory_equal(indexed.out.data, brute.out.data, brute.out.len);
        /* Read ahead when there are enough rows: what the scan's end left them (a warm store
         * is read faster than they start), never more than the rows. */
        if (brute.n >= AUDIT_PREFETCH_MIN_ROWS) {
            assert_int_equal(audit_prefetch_runs(), runs + 1);
            assert_true(touched <= brute.n);
            helped++;
        } else {
            assert_int_equal(audit_prefetch_runs(), runs);
            assert_int_equal(touched, 0);
        }
        gw_buf_free(&brute.out);
        gw_buf_free(&indexed.out);
    }
    assert_true(helped >= 1);
    gw_buf_free(&all.out);
    st->ops->close(st);
}

/* A scan stopped by its reader stops the prefetchers too, and says the reader's word. */
static void test_stopped_scan_stops_them(void **state)
{
    (void)state;
    struct rows all = {0};
    struct audit_store *st = open_all(&all);
    for (size_t u = 0; u < all.n_subjects; u++) {
        struct rows first = {.stop_after = 10};
        struct audit_filter f = {.kind = "decision", .subject = all.subjects[u]};
        assert_int_equal(st->ops->scan(st, &f, keep_row, &first), 7);
        assert_int_equal(first.n, 10);
        gw_buf_free(&first.out);
    }
    gw_buf_free(&all.out);
    st->ops->close(st);
}

/* The ids of the store's first rows, cycled to n entries. */
static int64_t *some_ids(size_t n)
{
    int64_t *ids = malloc(n * sizeof *ids);
    assert_non_null(ids);
    sqlite3 *h;
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(h, "SELECT id FROM audit_log ORDER BY id LIMIT 1000", -1, &q, NULL),
        SQLITE_OK);
    size_t got = 0;
    while (got < n && sqlite3_step(q) == SQLITE_ROW)
        ids[got++] = sqlite3_column_int64(q, 0);
    assert_true(got > 0);
    for (size_t i = got; i < n; i++)
        ids[i] = ids[i % got];
    sqlite3_finalize(q);
    sqlite3_close(h);
    return ids;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* No further ahead of the scan than the window, however long the list; all of it once the
 * scan has read it. */
static void test_window_bounds_them(void **state)
{
    (void)state;
    size_t n = 3 * AUDIT_PREFETCH_WINDOW;
    uint64_t before = audit_prefetch_rows();
    struct audit_prefetch *p = audit_prefetch_start(db, some_ids(n), n);
    assert_non_null(p);
    sleep_ms(300); /* time to run far past the window, were they let */
    audit_prefetch_progress(p, AUDIT_PREFETCH_WINDOW);
    sleep_ms(300);
    audit_prefetch_progress(p, n);
    /* Rows are counted as each thread ends, which it does once its share is read: wait for
     * all of them (bounded), then stop. */
    for (int waited = 0; audit_prefetch_rows() - before < n && waited < 20000; waited += 10)
        sleep_ms(10);
    audit_prefetch_stop(p);
    assert_int_equal(audit_prefetch_rows() - before, n);

    /* Stopped with the scan still at 0: what they touched stays within the window. */
    before = audit_prefetch_rows();
    p = audit_prefetch_start(db, some_ids(n), n);
    assert_non_null(p);
    sleep_ms(300);
    audit_prefetch_stop(p);
    uint64_t touched = audit_prefetch_rows() - before;
    assert_true(touched <= AUDIT_PREFETCH_WINDOW);
}

/* Too few rows: no threads (the list is freed); a store that cannot be opened: nothing read. */
static void test_declines_quietly(void **state)
{
    (void)state;
    size_t few = AUDIT_PREFETCH_MIN_ROWS - 1;
    assert_null(audit_prefetch_start(db, some_ids(few), few));
    assert_null(audit_prefetch_start(db, NULL, 1000));
    char missing[160];
    snprintf(missing, sizeof missing, "%s/none.db", dir);
    uint64_t before = audit_prefetch_rows();
    size_t n = 2 * AUDIT_PREFETCH_MIN_ROWS;
    struct audit_prefetch *p = audit_prefetch_start(missing, some_ids(n), n);
    assert_non_null(p);
    audit_prefetch_progress(p, n);
    audit_prefetch_stop(p);
    assert_int_equal(audit_prefetch_rows(), before);
    audit_prefetch_stop(NULL);
    audit_prefetch_progress(NULL, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_scans_read_ahead),
        cmocka_unit_test(test_stopped_scan_stops_them),
        cmocka_unit_test(test_window_bounds_them),
        cmocka_unit_test(test_declines_quietly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
