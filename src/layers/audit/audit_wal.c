#include "layers/audit/audit_wal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/log.h"

struct audit_wal_folder {
    sqlite3 *writer; /* the writer's connection: only its own thread touches it */
    sqlite3 *own;    /* the folder's connection: only the folder's thread touches it */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int want, running, stop;
    int caught_up;       /* the folder's last fold succeeded: the writer folds the rest */
    uint64_t last_pages; /* pages of log after the last commit */
    uint64_t next_at;    /* pages of log at which the folder is asked next */
    struct audit_wal_stats stats;
};

/* Over every folder of the process, for metrics (read from any thread). */
static _Atomic uint64_t total_folds, total_inline, total_failures, now_pages;

/* Busy or locked: another checkpoint (the other side, a command-line tool) holds the log. */
static int is_busy(int rc)
{
    return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
}

static void note_failure(struct audit_wal_folder *f, int rc, const char *who)
{
    f->stats.failures++;
    atomic_fetch_add(&total_failures, 1);
    gw_log(GW_LOG_WARN, "audit_wal_fold_failed", NULL, NULL,
           "folding the audit store's write-ahead log back into the file failed (%s): %s; "
           "the log grows until a fold succeeds",
           who, sqlite3_errstr(rc));
}

/*
 * The folder copied and synced the log as it was when it began: what is left is what was
 * committed since, a few pages. Folding those on the writer's connection, between two
 * commits (the folder cannot start meanwhile: it takes the lock to), lets the next commit
 * start the log over. Under f->mu, on the writer's thread.
 */
static void fold_rest(struct audit_wal_folder *f)
{
    f->caught_up = 0;
    int rc = sqlite3_wal_checkpoint_v2(f->writer, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    if (rc == SQLITE_OK) {
        f->stats.inline_folds++;
        atomic_fetch_add(&total_inline, 1);
    } else if (!is_busy(rc))
        note_failure(f, rc, "by the writer");
}

/* Runs after every commit on the writer's connection, on the writer's thread. */
static int on_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    (void)db;
    (void)name;
    struct audit_wal_folder *f = arg;
    pthread_mutex_lock(&f->mu);
    uint64_t n = pages > 0 ? (uint64_t)pages : 0;
    if (n > f->stats.pages_max)
        f->stats.pages_max = n;
    atomic_store(&now_pages, n);
    if (n < f->last_pages)
        f->next_at = AUDIT_WAL_FOLD_PAGES; /* the log started over */
    f->last_pages = n;
    /*
     * The rest after the folder's fold is not folded here: this runs inside the commit, and
     * the answers held for it would wait for that fold's two syncs. audit_wal_folder_idle
     * folds it once they are released. Only for a connection whose owner does not call that
     * (a fold's worth of log committed since the folder caught up) is it folded here, so
     * that log still starts over.
     */
    if (f->caught_up && !f->running && !f->stop && n >= f->next_at)
        fold_rest(f);
    else if (!f->running && !f->stop && !f->caught_up && n >= f->next_at && !f->want) {
        f->next_at = n + AUDIT_WAL_FOLD_PAGES;
        f->want = 1;
        pthread_cond_signal(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    return SQLITE_OK;
}

void audit_wal_folder_idle(struct audit_wal_folder *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    if (f->caught_up && !f->running && !f->stop)
        fold_rest(f);
    pthread_mutex_unlock(&f->mu);
}

static void *fold_main(void *arg)
{
    struct audit_wal_folder *f = arg;
    int rounds = 0;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->want && !f->stop)
            pthread_cond_wait(&f->cv, &f->mu);
        if (f->stop)
            break;
        f->want = 0;
        f->running = 1;
        pthread_mutex_unlock(&f->mu);
        int copied = 0;
        int rc =
            sqlite3_wal_checkpoint_v2(f->own, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, &copied);
        pthread_mutex_lock(&f->mu);
        f->running = 0;
        if (rc != SQLITE_OK) {
            if (!is_busy(rc))
                note_failure(f, rc, "by the folder");
            rounds = 0;
            continue;
        }
        f->stats.folds++;
        atomic_fetch_add(&total_folds, 1);
        /*
         * What was committed while this fold ran is left. Fold again while that is more than
         * the writer should copy and sync inside its loop; then hand it the rest.
         */
        uint64_t left =
            copied >= 0 && f->last_pages > (uint64_t)copied ? f->last_pages - (uint64_t)copied : 0;
        if (left > AUDIT_WAL_REST_PAGES && ++rounds < AUDIT_WAL_ROUNDS) {
            f->want = 1;
        } else {
            f->caught_up = 1;
            rounds = 0;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

struct audit_wal_folder *audit_wal_folder_start(sqlite3 *db, const char *path, char *err,
                                                size_t errlen)
{
    struct audit_wal_folder *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(err, errlen, "out of memory starting the audit log's folder");
        return NULL;
    }
    f->writer = db;
    f->next_at = AUDIT_WAL_FOLD_PAGES;
    if (sqlite3_open_v2(path, &f->own, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, errlen, "cannot open a second connection to %s: %s", path,
                 f->own ? sqlite3_errmsg(f->own) : "out of memory");
        goto fail;
    }
    /*
     * A checkpoint syncs the log before copying it and the file after, at NORMAL as at FULL:
     * the log is never started over on top of pages that are not yet in the file.
     */
    char *msg = NULL;
    if (sqlite3_exec(f->own, "PRAGMA synchronous=NORMAL", NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "setting up the audit log's folder: %s", msg ? msg : "failed");
        sqlite3_free(msg);
        goto fail;
    }
    if (pthread_mutex_init(&f->mu, NULL) != 0) {
        snprintf(err, errlen, "cannot start the audit log's folder");
        goto fail;
    }
    if (pthread_cond_init(&f->cv, NULL) != 0) {
        pthread_mutex_destroy(&f->mu);
        snprintf(err, errlen, "cannot start the audit log's folder");
        goto fail;
    }
    if (pthread_create(&f->thread, NULL, fold_main, f) != 0) {
        pthread_cond_destroy(&f->cv);
        pthread_mutex_destroy(&f->mu);
        snprintf(err, errlen, "cannot start the audit log's folder thread");
        goto fail;
    }
    pthread_setname_np(f->thread, "tg-audit-wal"); /* shows in top -H, perf, gdb */
    /* Replaces SQLite's automatic checkpoint, which is a WAL hook of its own. */
    sqlite3_wal_hook(db, on_commit, f);
    return f;
fail:
    sqlite3_close(f->own);
    free(f);
    return NULL;
}

void audit_wal_folder_stop(struct audit_wal_folder *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    gw_log(GW_LOG_DEBUG, "audit_wal_folder", NULL, NULL,
           "write-ahead log folds: %llu by the folder, %llu by the writer, %llu failed; "
           "%llu pages of log at most",
           (unsigned long long)f->stats.folds, (unsigned long long)f->stats.inline_folds,
           (unsigned long long)f->stats.failures, (unsigned long long)f->stats.pages_max);
    sqlite3_wal_autocheckpoint(f->writer, AUDIT_WAL_FOLD_PAGES);
    atomic_store(&now_pages, 0);
    sqlite3_close(f->own);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void audit_wal_folder_stats(struct audit_wal_folder *f, struct audit_wal_stats *out)
{
    pthread_mutex_lock(&f->mu);
    *out = f->stats;
    out->pages = f->last_pages;
    pthread_mutex_unlock(&f->mu);
}

void audit_wal_totals(struct audit_wal_stats *out)
{
    out->folds = atomic_load(&total_folds);
    out->inline_folds = atomic_load(&total_inline);
    out->failures = atomic_load(&total_failures);
    out->pages = atomic_load(&now_pages);
    out->pages_max = 0; /* per folder only */
}
