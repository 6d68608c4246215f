/*
 * audit_wal: folds the write-ahead log of the writer's SQLite store back into the file from
 * a thread of its own, so a checkpoint never runs inside a commit that answers wait for.
 *
 * SQLite's automatic checkpoint runs on the committing connection: every 1000 pages of log
 * the commit that crossed the mark copied them into the file and synced both, a stall of
 * several milliseconds that every answer held for that commit waited out (it was most of the
 * p99 at a fixed rate). Here the writer's connection only counts its log after each commit;
 * past AUDIT_WAL_FOLD_PAGES a second connection, on the folder's thread, checkpoints
 * (PASSIVE: it never blocks the writer or a reader, and copies what no reader still needs).
 *
 * SQLite starts the log over from its beginning only when a write begins while everything
 * in it has been copied, which a folder running beside a busy writer rarely sees. So the
 * folder folds again while more than a few pages were committed during its last fold, and
 * then the writer folds those few itself, between two commits (audit_wal_folder_idle, once the
 * answers held for the last commit are released: that fold syncs the log and the file), and the
 * next commit starts the log over: the log stays near AUDIT_WAL_FOLD_PAGES, and the writer's own
 * folds are short (the folder copied and synced the rest). A reader that keeps an old snapshot open
 * holds the log from starting over, as it does with SQLite's own checkpoint; the folder then runs
 * once every AUDIT_WAL_FOLD_PAGES.
 */
#ifndef AUDIT_WAL_H
#define AUDIT_WAL_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* Pages of log (4 KiB each) after which the folder runs, and again each as many after. */
#define AUDIT_WAL_FOLD_PAGES 1000
/* The folder folds again (up to AUDIT_WAL_ROUNDS in a row) while more than this is left. */
#define AUDIT_WAL_REST_PAGES 32
#define AUDIT_WAL_ROUNDS 4

struct audit_wal_folder;

struct audit_wal_stats {
    uint64_t folds;        /* checkpoints run by the folder's thread */
    uint64_t inline_folds; /* checkpoints the writer ran itself (the rest after a fold) */
    uint64_t failures;     /* checkpoints that failed other than busy (logged once each) */
    uint64_t pages_max;    /* the most pages of log seen after a commit */
    uint64_t pages;        /* pages of log after the last commit */
};

/*
 * Starts folding the log of `db` (the writer's connection, in WAL mode) of the file at path,
 * from a second connection of the folder's own. Takes the connection's WAL hook (and with it
 * SQLite's automatic checkpoint). NULL with a sentence in err when it cannot start; the
 * caller then keeps the automatic checkpoint.
 */
struct audit_wal_folder *audit_wal_folder_start(sqlite3 *db, const char *path, char *err,
                                                size_t errlen);
/*
 * The writer, between two commits, after releasing what waited for the last one: folds the
 * few pages committed during the folder's last fold, when it has just finished one, so the
 * next commit starts the log over. Cheap when there is nothing to fold. NULL: nothing.
 */
void audit_wal_folder_idle(struct audit_wal_folder *f);
/* Stops the thread and closes its connection; `db`'s automatic checkpoint is put back. */
void audit_wal_folder_stop(struct audit_wal_folder *f);
void audit_wal_folder_stats(struct audit_wal_folder *f, struct audit_wal_stats *out);
/*
 * The same counted over every folder of the process (stores rotate; each file has its own),
 * for metrics; `pages` is the running folder's log now (0 when none); `pages_max` stays 0.
 */
void audit_wal_totals(struct audit_wal_stats *out);

#endif
