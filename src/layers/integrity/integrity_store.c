/*
 * The pin store: SQLite, one row per backend, kind and name, and one per backend and kind
 * for the set. Every list is compared in one IMMEDIATE transaction, so the first list of a
 * backend is pinned by exactly one writer among every worker and process sharing the file.
 */
#include "layers/integrity/integrity.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct integrity_store {
    sqlite3 *db;
    pthread_mutex_t mu;
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS pins ("
    " backend TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,"
    " state TEXT NOT NULL, hash TEXT NOT NULL, body TEXT NOT NULL, def TEXT NOT NULL,"
    " reason TEXT NOT NULL DEFAULT '', approved_hash TEXT, approved_def TEXT,"
    " updated INTEGER NOT NULL, PRIMARY KEY (backend, kind, name));"
    "CREATE TABLE IF NOT EXISTS sets ("
    " backend TEXT NOT NULL, kind TEXT NOT NULL, hash TEXT NOT NULL, updated INTEGER NOT NULL,"
    " PRIMARY KEY (backend, kind));";

struct integrity_store *integrity_store_open(const char *path, char *err, size_t errlen)
{
    struct integrity_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(s->db, 5000) != SQLITE_OK ||
        sqlite3_exec(s->db, "PRAGMA journal_mode=WAL;", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, schema, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "pin store %s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "cannot open");
        integrity_store_close(s);
        return NULL;
    }
    return s;
}

void integrity_store_close(struct integrity_store *s)
{
    if (!s)
        return;
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static int exec(struct integrity_store *s, const char *sql)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static sqlite3_stmt *prep(struct integrity_store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return NULL;
    return st;
}

static void bind_texts(sqlite3_stmt *st, const char *const *v, int n)
{
    for (int i = 0; i < n; i++)
        sqlite3_bind_text(st, i + 1, v[i], -1, SQLITE_STATIC);
}

/* Runs a statement that returns no row. */
static int run(struct integrity_store *s, const char *sql, const char *const *v, int n)
{
    sqlite3_stmt *st = prep(s, sql);
    if (!st)
        return -1;
    bind_texts(st, v, n);
    int rc = sqlite3_step(st) == SQLITE_DONE ? sqlite3_changes(s->db) : -1;
    sqlite3_finalize(st);
    return rc;
}

static int get_locked(struct integrity_store *s, const char *backend, const char *kind,
                      const char *name, struct integrity_pin *out)
{
    sqlite3_stmt *st =
        prep(s, "SELECT state, hash, reason FROM pins WHERE backend=?1 AND kind=?2 AND name=?3");
    if (!st)
        return -1;
    const char *v[] = {backend, kind, name};
    bind_texts(st, v, 3);
    int rc = sqlite3_step(st);
    int found = 0;
    if (rc == SQLITE_ROW) {
        snprintf(out->state, sizeof out->state, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(out->hash, sizeof out->hash, "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(out->reason, sizeof out->reason, "%s", (const char *)sqlite3_column_text(st, 2));
        found = 1;
    } else if (rc != SQLITE_DONE) {
        found = -1;
    }
    sqlite3_finalize(st);
    return found;
}

int integrity_store_get(struct integrity_store *s, const char *backend, const char *kind,
                        const char *name, struct integrity_pin *out)
{
    pthread_mutex_lock(&s->mu);
    int rc = get_locked(s, backend, kind, name, out);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* A pinned name, not in this list, whose body is this body: what a rename came from. */
static int renamed_from(struct integrity_store *s, const char *backend, const char *kind,
                        const struct integrity_seen *seen, size_t n, size_t self, char *out,
                        size_t outlen)
{
    sqlite3_stmt *st = prep(s, "SELECT name FROM pins WHERE backend=?1 AND kind=?2 AND body=?3 "
                               "AND state='approved'");
    if (!st)
        return -1;
    const char *v[] = {backend, kind, seen[self].body};
    bind_texts(st, v, 3);
    int found = 0;
    while (!found && sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        int listed = 0;
        for (size_t i = 0; i < n && !listed; i++)
            listed = strcmp(seen[i].name, name) == 0;
        if (!listed) {
            snprintf(out, outlen, "%s", name);
            found = 1;
        }
    }
    sqlite3_finalize(st);
    return found;
}

static int compare_one(struct integrity_store *s, const char *backend, const char *kind,
                       struct integrity_seen *seen, size_t n, size_t i, int first, const char *now)
{
    struct integrity_seen *e = &seen[i];
    struct integrity_pin pin;
    int found = get_locked(s, backend, kind, e->name, &pin);
    if (found < 0)
        return -1;
    e->visible = 0;
    e->event[0] = 0;
    e->detail[0] = 0;
    if (!found) {
        const char *state = "pending";
        if (e->finding[0]) {
            snprintf(e->event, sizeof e->event, "poison");
            snprintf(e->detail, sizeof e->detail, "%s", e->finding);
        } else if (first) {
            state = "approved";
            e->visible = 1;
            snprintf(e->event, sizeof e->event, "pinned");
        } else if (renamed_from(s, backend, kind, seen, n, i, e->detail, sizeof e->detail) > 0) {
            snprintf(e->event, sizeof e->event, "rename");
        } else {
            snprintf(e->event, sizeof e->event, "new");
        }
        char reason[200];
        snprintf(reason, sizeof reason, "%s%s%s", e->event, e->detail[0] ? ":" : "", e->detail);
        const char *v[] = {backend, kind, e->name, state, e->hash, e->body, e->def, reason, now};
        return run(s,
                   "INSERT INTO pins (backend, kind, name, state, hash, body, def, reason, "
                   "updated) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                   v, 9) < 0
                   ? -1
                   : 0;
    }
    if (strcmp(pin.hash, e->hash) == 0) {
        e->visible = strcmp(pin.state, "approved") == 0;
        return 0;
    }
    /* Changed: an approved definition keeps what was approved (for the diff). */
    snprintf(e->event, sizeof e->event, "drift");
    if (e->finding[0])
        snprintf(e->detail, sizeof e->detail, "poison:%s", e->finding);
    char reason[200];
    snprintf(reason, sizeof reason, "drift%s%s", e->detail[0] ? ":" : "", e->detail);
    const char *v[] = {backend, kind, e->name, e->hash, e->body, e->def, reason, now};
    return run(s,
               "UPDATE pins SET approved_hash = CASE WHEN state='approved' THEN hash ELSE "
               "approved_hash END, approved_def = CASE WHEN state='approved' THEN def ELSE "
               "approved_def END, state='pending', hash=?4, body=?5, def=?6, reason=?7, "
               "updated=?8 WHERE backend=?1 AND kind=?2 AND name=?3",
               v, 8) < 0
               ? -1
               : 0;
}

int integrity_store_compare(struct integrity_store *s, const char *backend, const char *kind,
                            struct integrity_seen *seen, size_t n, char set_hash[65])
{
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    pthread_mutex_lock(&s->mu);
    int rc = exec(s, "BEGIN IMMEDIATE");
    int first = 0;
    if (rc == 0) {
        const char *v[] = {backend, kind, set_hash, now};
        int ins = run(s,
                      "INSERT OR IGNORE INTO sets (backend, kind, hash, updated) VALUES "
                      "(?1,?2,?3,?4)",
                      v, 4);
        first = ins > 0;
        rc = ins < 0 ? -1 : 0;
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = compare_one(s, backend, kind, seen, n, i, first, now);
    if (rc == 0 && !first) {
        const char *v[] = {backend, kind, set_hash, now};
        rc = run(s, "UPDATE sets SET hash=?3, updated=?4 WHERE backend=?1 AND kind=?2 AND hash<>?3",
                 v, 4) < 0
                 ? -1
                 : 0;
    }
    if (rc == 0)
        rc = exec(s, "COMMIT");
    if (rc != 0)
        exec(s, "ROLLBACK");
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int integrity_store_decide(struct integrity_store *s, const char *backend, const char *kind,
                           const char *name, int approve)
{
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    const char *v[] = {backend, kind, name, now};
    pthread_mutex_lock(&s->mu);
    int rc = run(s,
                 approve ? "UPDATE pins SET state='approved', reason='approved', "
                           "approved_hash=hash, approved_def=def, updated=?4 WHERE backend=?1 "
                           "AND kind=?2 AND name=?3 AND state IN ('pending','rejected')"
                         : "UPDATE pins SET state='rejected', updated=?4 WHERE backend=?1 AND "
                           "kind=?2 AND name=?3 AND state='pending'",
                 v, 4);
    pthread_mutex_unlock(&s->mu);
    return rc < 0 ? -1 : rc > 0 ? 1 : 0;
}

int integrity_store_list(struct integrity_store *s, FILE *f, int pending_only)
{
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = prep(s, pending_only ? "SELECT backend, kind, name, state, hash, reason "
                                              "FROM pins WHERE state<>'approved' ORDER BY 1,2,3"
                                            : "SELECT backend, kind, name, state, hash, reason "
                                              "FROM pins ORDER BY 1,2,3");
    int rc = st ? 0 : -1;
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        json_t *row =
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "backend", sqlite3_column_text(st, 0),
                      "kind", sqlite3_column_text(st, 1), "name", sqlite3_column_text(st, 2),
                      "state", sqlite3_column_text(st, 3), "hash", sqlite3_column_text(st, 4),
                      "reason", sqlite3_column_text(st, 5));
        char *line = row ? json_dumps(row, JSON_COMPACT) : NULL;
        if (line)
            fprintf(f, "%s\n", line);
        free(line);
        json_decref(row);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Prints the members of two canonical objects that differ, one line each. */
static void diff_defs(FILE *f, const char *old_text, const char *new_text)
{
    json_t *a = old_text ? json_loads(old_text, 0, NULL) : json_object();
    json_t *b = json_loads(new_text, 0, NULL);
    const char *k;
    json_t *v;
    json_object_foreach(a, k, v)
    {
        json_t *w = json_object_get(b, k);
        char *x = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        char *y = w ? json_dumps(w, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        if (!w)
            fprintf(f, "- %s: %s\n", k, x ? x : "?");
        else if (!json_equal(v, w))
            fprintf(f, "- %s: %s\n+ %s: %s\n", k, x ? x : "?", k, y ? y : "?");
        free(x);
        free(y);
    }
    json_object_foreach(b, k, v)
    {
        if (json_object_get(a, k))
            continue;
        char *y = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fprintf(f, "+ %s: %s\n", k, y ? y : "?");
        free(y);
    }
    json_decref(a);
    json_decref(b);
}

int integrity_store_diff(struct integrity_store *s, FILE *f, const char *backend, const char *kind,
                         const char *name)
{
    pthread_mutex_lock(&s->mu);
    sqlite3_stmt *st = prep(s, "SELECT approved_def, def, state, reason FROM pins WHERE "
                               "backend=?1 AND kind=?2 AND name=?3");
    int rc = -1;
    if (st) {
        const char *v[] = {backend, kind, name};
        bind_texts(st, v, 3);
        if (sqlite3_step(st) == SQLITE_ROW) {
            fprintf(f, "%s %s %s: %s (%s)\n", backend, kind, name,
                    (const char *)sqlite3_column_text(st, 2),
                    (const char *)sqlite3_column_text(st, 3));
            diff_defs(f, (const char *)sqlite3_column_text(st, 0),
                      (const char *)sqlite3_column_text(st, 1));
            rc = 0;
        }
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    return rc;
}
