/*
 * audit_prefetch: threads that touch the rows a SQLite scan will read next (see the header).
 *
 * Thread k of T takes the ids k, k + T, k + 2T, ... of the list, so the threads move along it
 * together, in the scan's order, and none goes more than AUDIT_PREFETCH_WINDOW rows past
 * what the scan has read: the pages they bring in are still in the cache when the scan
 * reaches them, however long the list. Each has its own read-only connection; a row is
 * touched by reading one column of it, which loads the table page that holds it.
 */
#include "layers/audit/audit_prefetch.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* The scan wakes waiting prefetchers once per this many rows read. */
#define PREFETCH_WAKE_EVERY 256

struct audit_prefetch {
    char *path;
    int64_t *ids;
    size_t n;
    size_t threads; /* started */
    pthread_t th[AUDIT_PREFETCH_THREADS];
    struct pf_arg {
        struct audit_prefetch *p;
        size_t first;
    } args[AUDIT_PREFETCH_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t moved; /* the scan read more rows, or stop */
    atomic_size_t done;
    atomic_int stop;
};

static atomic_uint_fast64_t runs_started, rows_touched;

uint64_t audit_prefetch_runs(void)
{
    return atomic_load(&runs_started);
}

uint64_t audit_prefetch_rows(void)
{
    return atomic_load(&rows_touched);
}

/* Waits until row i is within the window ahead of the scan; 0 when told to stop. */
static int wait_for_room(struct audit_prefetch *p, size_t i)
{
    if (i < atomic_load(&p->done) + AUDIT_PREFETCH_WINDOW)
        return !atomic_load(&p->stop);
    pthread_mutex_lock(&p->mu);
    while (!atomic_load(&p->stop) && i >= atomic_load(&p->done) + AUDIT_PREFETCH_WINDOW)
        pthread_cond_wait(&p->moved, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return !atomic_load(&p->stop);
}

static void *prefetch_main(void *arg)
{
    struct pf_arg *a = arg;
    struct audit_prefetch *p = a->p;
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    if (sqlite3_open_v2(p->path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK)
        goto out; /* the scan reads its pages itself */
    /* Connections opening together may find the log's index being read by another. */
    sqlite3_busy_timeout(db, 1000);
    if (sqlite3_prepare_v2(db, "SELECT kind FROM audit_log WHERE id = ?1", -1, &q, NULL) !=
        SQLITE_OK)
        goto out;
    uint64_t touched = 0;
    for (size_t i = a->first; i < p->n; i += AUDIT_PREFETCH_THREADS) {
        if (!wait_for_room(p, i))
            break;
        sqlite3_bind_int64(q, 1, p->ids[i]);
        int rc = sqlite3_step(q);
        sqlite3_reset(q);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            break;
        touched++;
    }
    atomic_fetch_add(&rows_touched, touched);
out:
    sqlite3_finalize(q);
    sqlite3_close(db);
    return NULL;
}

struct audit_prefetch *audit_prefetch_start(const char *path, int64_t *ids, size_t n)
{
    struct audit_prefetch *p = NULL;
    if (!path || !ids || n < AUDIT_PREFETCH_MIN_ROWS || !(p = calloc(1, sizeof *p)) ||
        !(p->path = strdup(path))) {
        free(p);
        free(ids);
        return NULL;
    }
    p->ids = ids;
    p->n = n;
    atomic_init(&p->done, 0);
    atomic_init(&p->stop, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->moved, NULL);
    for (size_t k = 0; k < AUDIT_PREFETCH_THREADS; k++) {
        p->args[k] = (struct pf_arg){p, k};
        if (pthread_create(&p->th[k], NULL, prefetch_main, &p->args[k]) != 0)
            break;
        pthread_setname_np(p->th[k], "tg-audit-read"); /* shows in top -H, perf, gdb */
        p->threads++;
    }
    if (p->threads == 0) {
        audit_prefetch_stop(p);
        return NULL;
    }
    atomic_fetch_add(&runs_started, 1);
    return p;
}

void audit_prefetch_progress(struct audit_prefetch *p, size_t done)
{
    if (!p)
        return;
    atomic_store(&p->done, done);
    if (done % PREFETCH_WAKE_EVERY == 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->moved);
        pthread_mutex_unlock(&p->mu);
    }
}

void audit_prefetch_stop(struct audit_prefetch *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->moved);
    pthread_mutex_unlock(&p->mu);
    for (size_t k = 0; k < p->threads; k++)
        pthread_join(p->th[k], NULL);
    pthread_cond_destroy(&p->moved);
    pthread_mutex_destroy(&p->mu);
    free(p->ids);
    free(p->path);
    free(p);
}
