/*
 * limits_ledger: spend per (budget, key, period) in SQLite, so that a restart, even after
 * kill -9, loses no recorded spend.
 *
 * Every reservation, settlement and refund is one small UPSERT committed before the layer
 * goes on (WAL, synchronous=NORMAL: a commit survives the death of the process; surviving a
 * power cut needs synchronous=FULL, which costs an fsync per call). A reservation that was
 * never settled because the process died stays counted: the ledger errs on the side of the
 * cap. Rows of finished periods are kept for a year for inspection.
 */
#include "layers/limits/limits-int.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct limits_ledger {
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *add;
};

static const char schema[] = "CREATE TABLE IF NOT EXISTS limits_spend("
                             " budget TEXT NOT NULL, key TEXT NOT NULL, period INTEGER NOT NULL,"
                             " expires INTEGER NOT NULL, amount INTEGER NOT NULL,"
                             " PRIMARY KEY(budget, key, period)) WITHOUT ROWID;";

void limits_ledger_close(struct limits_ledger *l)
{
    if (!l)
        return;
    sqlite3_finalize(l->add);
    sqlite3_close(l->db);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

struct limits_ledger *limits_ledger_open(const char *spec, char *why, size_t why_len)
{
    if (strncmp(spec, "sqlite:", 7) != 0 || !spec[7]) {
        snprintf(why, why_len, "the ledger \"%s\" is not \"sqlite:PATH\"", spec);
        return NULL;
    }
    const char *path = spec + 7;
    struct limits_ledger *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    int rc = sqlite3_open_v2(
        path, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(l->db, 5000);
    if ((rc = sqlite3_exec(l->db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL)) != SQLITE_OK ||
        (rc = sqlite3_exec(l->db, "PRAGMA synchronous=NORMAL;", NULL, NULL, NULL)) != SQLITE_OK ||
        (rc = sqlite3_exec(l->db, schema, NULL, NULL, NULL)) != SQLITE_OK)
        goto fail;
    rc = sqlite3_prepare_v2(
        l->db,
        "INSERT INTO limits_spend(budget, key, period, expires, amount) VALUES(?1, ?2, ?3, ?4, "
        "max(0, ?5)) ON CONFLICT(budget, key, period) DO UPDATE SET amount = max(0, amount + ?5),"
        " expires = max(expires, ?4);",
        -1, &l->add, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    return l;
fail:
    snprintf(why, why_len, "cannot open the ledger %s: %s", path,
             l->db ? sqlite3_errmsg(l->db) : sqlite3_errstr(rc));
    limits_ledger_close(l);
    return NULL;
}

int limits_ledger_add(struct limits_ledger *l, const char *budget, const char *key, int64_t period,
                      int64_t expires, int64_t delta)
{
    pthread_mutex_lock(&l->mu);
    sqlite3_reset(l->add);
    sqlite3_bind_text(l->add, 1, budget, -1, SQLITE_STATIC);
    sqlite3_bind_text(l->add, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(l->add, 3, period);
    sqlite3_bind_int64(l->add, 4, expires);
    sqlite3_bind_int64(l->add, 5, delta);
    int rc = sqlite3_step(l->add);
    sqlite3_reset(l->add);
    sqlite3_clear_bindings(l->add);
    pthread_mutex_unlock(&l->mu);
    return rc == SQLITE_DONE ? 0 : -1;
}

int limits_ledger_load(struct limits_ledger *l, int64_t now,
                       void (*fn)(void *arg, const char *budget, const char *key, int64_t period,
                                  int64_t expires, int64_t amount),
                       void *arg)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    pthread_mutex_lock(&l->mu);
    /* Finished periods older than a year go; the rest of the history stays readable. */
    sqlite3_stmt *del = NULL;
    if (sqlite3_prepare_v2(l->db, "DELETE FROM limits_spend WHERE expires < ?1;", -1, &del, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(del, 1, now - 366LL * 86400);
        sqlite3_step(del);
    }
    sqlite3_finalize(del);
    if (sqlite3_prepare_v2(l->db,
                           "SELECT budget, key, period, expires, amount FROM limits_spend "
                           "WHERE expires > ?1;",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, now);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *b = (const char *)sqlite3_column_text(st, 0);
        const char *k = (const char *)sqlite3_column_text(st, 1);
        if (b && k)
            fn(arg, b, k, sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3),
               sqlite3_column_int64(st, 4));
    }
    rc = s == SQLITE_DONE ? 0 : -1;
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&l->mu);
    return rc;
}
