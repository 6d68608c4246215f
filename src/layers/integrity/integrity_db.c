/*
 * The pin store's two databases behind one small interface (integrity.h, "database"): SQLite
 * for one machine, PostgreSQL for pins shared by several instances. Statements are written
 * once with ?N parameters (SQLite's) and rewritten to $N for PostgreSQL; every value goes in
 * and comes out as text. The caller serialises use of one handle.
 */
#include "layers/integrity/integrity.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

struct idb {
    sqlite3 *lite;
    PGconn *pg;
    char error[256];
};

/* One transaction at a time across every instance sharing a PostgreSQL store. */
#define PG_LOCK_KEY "7318241500115"

static const char lite_schema[] =
    "CREATE TABLE IF NOT EXISTS integrity_pins ("
    " backend TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,"
    " reason TEXT NOT NULL, approved_hash TEXT, approved_body TEXT, approved_def TEXT,"
    " seen_hash TEXT, seen_body TEXT, seen_def TEXT, updated BIGINT NOT NULL,"
    " PRIMARY KEY (backend, kind, name));"
    "CREATE TABLE IF NOT EXISTS integrity_sets ("
    " backend TEXT NOT NULL, kind TEXT NOT NULL, set_hash TEXT NOT NULL,"
    " body_set_hash TEXT NOT NULL, first_until BIGINT NOT NULL, complete INTEGER NOT NULL,"
    " updated BIGINT NOT NULL, PRIMARY KEY (backend, kind));"
    "CREATE TABLE IF NOT EXISTS integrity_events ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, at BIGINT NOT NULL, record TEXT NOT NULL,"
    " audited INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS integrity_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);";

static const char pg_schema[] =
    "SELECT pg_advisory_lock(" PG_LOCK_KEY ");"
    "CREATE TABLE IF NOT EXISTS integrity_pins ("
    " backend TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,"
    " reason TEXT NOT NULL, approved_hash TEXT, approved_body TEXT, approved_def TEXT,"
    " seen_hash TEXT, seen_body TEXT, seen_def TEXT, updated BIGINT NOT NULL,"
    " PRIMARY KEY (backend, kind, name));"
    "CREATE TABLE IF NOT EXISTS integrity_sets ("
    " backend TEXT NOT NULL, kind TEXT NOT NULL, set_hash TEXT NOT NULL,"
    " body_set_hash TEXT NOT NULL, first_until BIGINT NOT NULL, complete INTEGER NOT NULL,"
    " updated BIGINT NOT NULL, PRIMARY KEY (backend, kind));"
    "CREATE TABLE IF NOT EXISTS integrity_events ("
    " id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, record TEXT NOT NULL,"
    " audited INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS integrity_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "SELECT pg_advisory_unlock(" PG_LOCK_KEY ");";

int idb_is_postgres_url(const char *url)
{
    return strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0;
}

static void set_error(struct idb *db, const char *what)
{
    snprintf(db->error, sizeof db->error, "%s", what ? what : "unknown error");
    /* PostgreSQL's messages end in a newline. */
    size_t n = strlen(db->error);
    while (n && (db->error[n - 1] == '\n' || db->error[n - 1] == ' '))
        db->error[--n] = 0;
}

static int pg_simple(struct idb *db, const char *sql)
{
    PGresult *r = PQexec(db->pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc)
        set_error(db, PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

struct idb *idb_open(const char *url, char *err, size_t errlen)
{
    struct idb *db = calloc(1, sizeof *db);
    if (!db) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (idb_is_postgres_url(url)) {
        db->pg = PQconnectdb(url);
        if (!db->pg || PQstatus(db->pg) != CONNECTION_OK) {
            /* The message names the host, never the password. */
            snprintf(err, errlen, "pin store (PostgreSQL): %s",
                     db->pg ? PQerrorMessage(db->pg) : "out of memory");
            idb_close(db);
            return NULL;
        }
        if (pg_simple(db, "SET statement_timeout = 5000") != 0 ||
            pg_simple(db, "SET client_min_messages = warning") != 0 ||
            pg_simple(db, pg_schema) != 0) {
            snprintf(err, errlen, "pin store (PostgreSQL): %s", db->error);
            idb_close(db);
            return NULL;
        }
        return db;
    }
    const char *path = strncmp(url, "sqlite:", 7) == 0 ? url + 7 : url;
    if (sqlite3_open_v2(path, &db->lite,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(db->lite, 5000) != SQLITE_OK ||
        sqlite3_exec(db->lite, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db->lite, lite_schema, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "pin store %s: %s", path,
                 db->lite ? sqlite3_errmsg(db->lite) : "cannot open");
        idb_close(db);
        return NULL;
    }
    return db;
}

void idb_close(struct idb *db)
{
    if (!db)
        return;
    if (db->lite)
        sqlite3_close(db->lite);
    if (db->pg)
        PQfinish(db->pg);
    free(db);
}

const char *idb_error(const struct idb *db)
{
    return db->error;
}

/* ?N becomes $N; nothing else in our statements contains a question mark. */
static char *pg_text(const char *sql)
{
    char *out = strdup(sql);
    for (char *p = out; p && *p; p++)
        if (*p == '?')
            *p = '$';
    return out;
}

/* A lost connection is tried once more (the server restarted, a proxy cut it). */
static PGresult *pg_run(struct idb *db, const char *sql, const char *const *params, int n)
{
    char *text = pg_text(sql);
    if (!text) {
        set_error(db, "out of memory");
        return NULL;
    }
    PGresult *r = PQexecParams(db->pg, text, n, NULL, params, NULL, NULL, 0);
    if (PQstatus(db->pg) != CONNECTION_OK && PQtransactionStatus(db->pg) != PQTRANS_INTRANS) {
        PQclear(r);
        PQreset(db->pg);
        r = PQstatus(db->pg) == CONNECTION_OK && pg_simple(db, "SET statement_timeout = 5000") == 0
                ? PQexecParams(db->pg, text, n, NULL, params, NULL, NULL, 0)
                : NULL;
    }
    free(text);
    return r;
}

static sqlite3_stmt *lite_prepare(struct idb *db, const char *sql, const char *const *params, int n)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->lite, sql, -1, &st, NULL) != SQLITE_OK) {
        set_error(db, sqlite3_errmsg(db->lite));
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (params[i])
            sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_TRANSIENT);
    return st;
}

int idb_exec(struct idb *db, const char *sql, const char *const *params, int n)
{
    if (db->pg) {
        PGresult *r = pg_run(db, sql, params, n);
        int rc = -1;
        if (r && PQresultStatus(r) == PGRES_COMMAND_OK)
            rc = atoi(PQcmdTuples(r));
        else
            set_error(db, r ? PQresultErrorMessage(r) : PQerrorMessage(db->pg));
        PQclear(r);
        return rc;
    }
    sqlite3_stmt *st = lite_prepare(db, sql, params, n);
    if (!st)
        return -1;
    int rc = sqlite3_step(st) == SQLITE_DONE ? sqlite3_changes(db->lite) : -1;
    if (rc < 0)
        set_error(db, sqlite3_errmsg(db->lite));
    sqlite3_finalize(st);
    return rc;
}

int idb_query(struct idb *db, const char *sql, const char *const *params, int n, idb_row_fn fn,
              void *arg)
{
    enum { MAX_COLS = 16 };
    const char *cols[MAX_COLS];
    int rows = 0;
    if (db->pg) {
        PGresult *r = pg_run(db, sql, params, n);
        if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
            set_error(db, r ? PQresultErrorMessage(r) : PQerrorMessage(db->pg));
            PQclear(r);
            return -1;
        }
        int nc = PQnfields(r) < MAX_COLS ? PQnfields(r) : MAX_COLS;
        for (int i = 0; i < PQntuples(r); i++) {
            for (int c = 0; c < nc; c++)
                cols[c] = PQgetisnull(r, i, c) ? NULL : PQgetvalue(r, i, c);
            rows++;
            if (fn && fn(arg, nc, cols) != 0)
                break;
        }
        PQclear(r);
        return rows;
    }
    sqlite3_stmt *st = lite_prepare(db, sql, params, n);
    if (!st)
        return -1;
    int nc = sqlite3_column_count(st) < MAX_COLS ? sqlite3_column_count(st) : MAX_COLS;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 0; c < nc; c++)
            cols[c] = (const char *)sqlite3_column_text(st, c);
        rows++;
        if (fn && fn(arg, nc, cols) != 0) {
            step = SQLITE_DONE;
            break;
        }
    }
    if (step != SQLITE_DONE) {
        set_error(db, sqlite3_errmsg(db->lite));
        rows = -1;
    }
    sqlite3_finalize(st);
    return rows;
}

int idb_begin(struct idb *db)
{
    if (db->pg) {
        if (pg_simple(db, "BEGIN") != 0)
            return -1;
        if (pg_simple(db, "SELECT pg_advisory_xact_lock(" PG_LOCK_KEY ")") != 0) {
            pg_simple(db, "ROLLBACK");
            return -1;
        }
        return 0;
    }
    if (sqlite3_exec(db->lite, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        set_error(db, sqlite3_errmsg(db->lite));
        return -1;
    }
    return 0;
}

int idb_commit(struct idb *db)
{
    int rc = db->pg ? pg_simple(db, "COMMIT")
                    : (sqlite3_exec(db->lite, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1);
    if (rc != 0) {
        if (db->lite)
            set_error(db, sqlite3_errmsg(db->lite));
        idb_rollback(db);
    }
    return rc;
}

void idb_rollback(struct idb *db)
{
    if (db->pg)
        PQclear(PQexec(db->pg, "ROLLBACK"));
    else
        sqlite3_exec(db->lite, "ROLLBACK", NULL, NULL, NULL);
}
