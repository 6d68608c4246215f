#include "layers/audit/audit_store.h"

#include <errno.h>
#include <fnmatch.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *audit_store_sqlite_path(const char *url)
{
    if (url && strncmp(url, "sqlite:", 7) == 0 && url[7])
        return url + 7;
    return NULL;
}

struct audit_store *audit_store_open(const char *url, int create, char *err, size_t errlen)
{
    return audit_store_open_format(url, create, AUDIT_FORMAT_COMPACT, err, errlen);
}

struct audit_store *audit_store_open_format(const char *url, int create,
                                            enum audit_store_format format, char *err,
                                            size_t errlen)
{
    const char *path = audit_store_sqlite_path(url);
    if (path)
        return audit_sqlite_open_format(path, create, format, err, errlen);
    if (url && (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0))
        return audit_pg_open_format(url, create, format, err, errlen);
    snprintf(err, errlen,
             "audit store \"%s\" is not understood: write \"sqlite:PATH\" or \"postgres://...\"",
             url ? url : "");
    return NULL;
}

/* SQLite back end. */

struct sqlite_store {
    struct audit_store base;
    sqlite3 *db;
    sqlite3_stmt *insert;
    char *path;
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS audit_records ("
    " instance TEXT NOT NULL, seq INTEGER NOT NULL, time_ns INTEGER NOT NULL,"
    " kind TEXT NOT NULL, request_id TEXT, subject TEXT, tenant TEXT, tool TEXT,"
    " decision TEXT, layer TEXT, record TEXT NOT NULL, hash TEXT NOT NULL,"
    " UNIQUE (instance, seq));"
    "CREATE INDEX IF NOT EXISTS audit_by_time ON audit_records (time_ns);"
    "CREATE INDEX IF NOT EXISTS audit_by_subject ON audit_records (subject, time_ns);"
    "CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit_records (tenant, time_ns);"
    "CREATE INDEX IF NOT EXISTS audit_by_request ON audit_records (request_id);";

static int sq_fail(struct sqlite_store *s, const char *what)
{
    snprintf(s->base.err, sizeof s->base.err, "audit store %s: %s failed: %s", s->path, what,
             sqlite3_errmsg(s->db));
    return -1;
}

static int sq_exec(struct sqlite_store *s, const char *sql)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return sq_fail(s, sql);
    return 0;
}

static int sq_begin(struct audit_store *st)
{
    return sq_exec((struct sqlite_store *)st, "BEGIN IMMEDIATE");
}

static int sq_commit(struct audit_store *st)
{
    return sq_exec((struct sqlite_store *)st, "COMMIT");
}

static void sq_rollback(struct audit_store *st)
{
    struct sqlite_store *s = (struct sqlite_store *)st;
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static void bind_text(sqlite3_stmt *stmt, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(stmt, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, i);
}

static int sq_append(struct audit_store *st, const struct audit_row *r)
{
    struct sqlite_store *s = (struct sqlite_store *)st;
    sqlite3_stmt *q = s->insert;
    sqlite3_reset(q);
    bind_text(q, 1, r->instance);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)r->seq);
    sqlite3_bind_int64(q, 3, r->time_ns);
    bind_text(q, 4, r->kind);
    bind_text(q, 5, r->request_id);
    bind_text(q, 6, r->subject);
    bind_text(q, 7, r->tenant);
    bind_text(q, 8, r->tool);
    bind_text(q, 9, r->decision);
    bind_text(q, 10, r->layer);
    sqlite3_bind_text(q, 11, r->record, (int)r->record_len, SQLITE_STATIC);
    bind_text(q, 12, r->hash);
    int rc = sqlite3_step(q);
    sqlite3_clear_bindings(q);
    if (rc != SQLITE_DONE)
        return sq_fail(s, "insert");
    return 0;
}

static int sq_head(struct audit_store *st, const char *instance, struct audit_head *h)
{
    struct sqlite_store *s = (struct sqlite_store *)st;
    sqlite3_stmt *q = NULL;
    int ret = -1;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT seq, time_ns, hash, kind, record FROM audit_records"
                           " WHERE instance = ?1 ORDER BY seq DESC LIMIT 1",
                           -1, &q, NULL) != SQLITE_OK) {
        sq_fail(s, "head query");
        goto out;
    }
    sqlite3_bind_text(q, 1, instance, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        ret = 0;
        goto out;
    }
    if (rc != SQLITE_ROW) {
        sq_fail(s, "head query");
        goto out;
    }
    memset(h, 0, sizeof *h);
    h->seq = (uint64_t)sqlite3_column_int64(q, 0);
    h->time_ns = sqlite3_column_int64(q, 1);
    snprintf(h->hash, sizeof h->hash, "%s", (const char *)sqlite3_column_text(q, 2));
    snprintf(h->kind, sizeof h->kind, "%s", (const char *)sqlite3_column_text(q, 3));
    const char *rec = (const char *)sqlite3_column_text(q, 4);
    h->closing = strcmp(h->kind, "checkpoint") == 0 && rec && strstr(rec, "\"closing\":true");
    ret = 1;
out:
    sqlite3_finalize(q);
    return ret;
}

static const char *col_text(sqlite3_stmt *q, int i)
{
    return (const char *)sqlite3_column_text(q, i);
}

static int sq_scan(struct audit_store *st, const struct audit_filter *f, audit_row_cb cb, void *arg)
{
    struct sqlite_store *s = (struct sqlite_store *)st;
    sqlite3_stmt *q = NULL;
    int ret = -1;
    /*
     * Only the filters given become conditions, so SQLite can use the index that fits (a
     * fixed "(? IS NULL OR col = ?)" statement would defeat the planner).
     */
    char sql[1024] = "SELECT instance, seq, time_ns, kind, request_id, subject, tenant, tool,"
                     " decision, layer, record, hash FROM audit_records WHERE 1";
    static const char *const conds[] = {" AND instance = ?", " AND kind = ?", " AND subject = ?",
                                        " AND tenant = ?", " AND decision = ?"};
    const char *vals[5] = {f ? f->instance : NULL, f ? f->kind : NULL, f ? f->subject : NULL,
                           f ? f->tenant : NULL, f ? f->decision : NULL};
    for (int i = 0; i < 5; i++)
        if (vals[i])
            strcat(sql, conds[i]);
    if (f && f->from_seq)
        strcat(sql, " AND seq >= ?");
    if (f && f->since_ns)
        strcat(sql, " AND time_ns >= ?");
    if (f && f->until_ns)
        strcat(sql, " AND time_ns < ?");
    strcat(sql, " ORDER BY instance, seq");
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) {
        sq_fail(s, "scan");
        goto out;
    }
    int n = 1;
    for (int i = 0; i < 5; i++)
        if (vals[i])
            sqlite3_bind_text(q, n++, vals[i], -1, SQLITE_STATIC);
    if (f && f->from_seq)
        sqlite3_bind_int64(q, n++, (sqlite3_int64)f->from_seq);
    if (f && f->since_ns)
        sqlite3_bind_int64(q, n++, f->since_ns);
    if (f && f->until_ns)
        sqlite3_bind_int64(q, n++, f->until_ns);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct audit_row r = {
            .instance = col_text(q, 0),
            .seq = (uint64_t)sqlite3_column_int64(q, 1),
            .time_ns = sqlite3_column_int64(q, 2),
            .kind = col_text(q, 3),
            .request_id = col_text(q, 4),
            .subject = col_text(q, 5),
            .tenant = col_text(q, 6),
            .tool = col_text(q, 7),
            .decision = col_text(q, 8),
            .layer = col_text(q, 9),
            .record = col_text(q, 10),
            .record_len = (size_t)sqlite3_column_bytes(q, 10),
            .hash = col_text(q, 11),
        };
        if (!r.instance || !r.kind || !r.record || !r.hash) {
            /* NOT NULL columns can still be typed oddly by someone editing the file. */
            r.instance = r.instance ? r.instance : "";
            r.kind = r.kind ? r.kind : "";
            r.record = r.record ? r.record : "";
            r.hash = r.hash ? r.hash : "";
        }
        if (f && f->tool_glob && (!r.tool || fnmatch(f->tool_glob, r.tool, 0) != 0))
            continue;
        int c = cb(&r, arg);
        if (c) {
            ret = c;
            goto out;
        }
    }
    if (rc != SQLITE_DONE) {
        sq_fail(s, "scan");
        goto out;
    }
    ret = 0;
out:
    sqlite3_finalize(q);
    return ret;
}

static uint64_t sq_size(struct audit_store *st)
{
    struct sqlite_store *s = (struct sqlite_store *)st;
    char wal[4200];
    struct stat sb;
    uint64_t total = 0;
    if (stat(s->path, &sb) == 0)
        total += (uint64_t)sb.st_size;
    snprintf(wal, sizeof wal, "%s-wal", s->path);
    if (stat(wal, &sb) == 0)
        total += (uint64_t)sb.st_size;
    return total;
}

static void sq_close(struct audit_store *st)
{
    struct sqlite_store *s = (struct sqlite_store *)st;
    if (!s)
        return;
    sqlite3_finalize(s->insert);
    sqlite3_close(s->db);
    free(s->path);
    free(s);
}

static int sq_set_sync(struct audit_store *st, int full)
{
    struct sqlite_store *s = (struct sqlite_store *)st;
    return sq_exec(s, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
}

static const struct audit_store_ops sqlite_ops = {
    .set_sync = sq_set_sync,
    .begin = sq_begin,
    .append = sq_append,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .head = sq_head,
    .scan = sq_scan,
    .size = sq_size,
    .close = sq_close,
};

struct audit_store *audit_lite_adopt(sqlite3 *db, const char *path, int create, int writer,
                                     char *err, size_t errlen);

/* Which format an opened file holds: 1 the first (audit_records), 0 compact, -1 neither. */
static int sqlite_format_of(sqlite3 *db)
{
    sqlite3_stmt *q = NULL;
    int found = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN"
                           " ('audit_records', 'audit_log')",
                           -1, &q, NULL) != SQLITE_OK)
        return -1;
    while (sqlite3_step(q) == SQLITE_ROW)
        found = strcmp((const char *)sqlite3_column_text(q, 0), "audit_records") == 0
                    ? AUDIT_FORMAT_LEGACY
                    : AUDIT_FORMAT_COMPACT;
    sqlite3_finalize(q);
    return found;
}

struct audit_store *audit_sqlite_open(const char *path, int create, char *err, size_t errlen)
{
    return audit_sqlite_open_format(path, create, AUDIT_FORMAT_COMPACT, err, errlen);
}

struct audit_store *audit_sqlite_open_format(const char *path, int create,
                                             enum audit_store_format format, char *err,
                                             size_t errlen)
{
    struct sqlite_store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        snprintf(err, errlen, "out of memory opening the audit store");
        return NULL;
    }
    s->base.ops = &sqlite_ops;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open audit store %s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    /*
     * WAL with synchronous=FULL until the writer says otherwise (audit.sync): every group
     * commit fsyncs the log, so a committed batch survives power loss, and the cost is paid
     * once per batch rather than per record. NORMAL still survives a crash of the process.
     */
    /*
     * A whole batch (up to 4096 records) fits the page cache, so pages are written once at
     * commit instead of spilling mid-transaction. The WAL is folded back into the file every
     * 1000 pages; the compact format's writer does that from a thread of its own
     * (audit_wal.h), since a fold inside a commit stalls every answer waiting for it.
     */
    if (sq_exec(s, "PRAGMA journal_mode=WAL") || sq_exec(s, "PRAGMA synchronous=FULL") ||
        sq_exec(s, "PRAGMA cache_size=-65536") || sq_exec(s, "PRAGMA wal_autocheckpoint=1000") ||
        /* Reads map the file instead of copying each page (verify and export read it all). */
        sq_exec(s, "PRAGMA mmap_size=17179869184"))
        goto fail_msg;
    /* An existing file keeps its format; a new one gets the one asked for. */
    int existing = sqlite_format_of(s->db);
    if (existing == AUDIT_FORMAT_COMPACT || (existing < 0 && format == AUDIT_FORMAT_COMPACT)) {
        if (existing < 0 && !create) {
            snprintf(err, errlen,
                     "audit store %s holds no audit records (not a toolgate audit "
                     "store?)",
                     path);
            goto fail;
        }
        sqlite3 *db = s->db;
        s->db = NULL;
        sq_close(&s->base);
        return audit_lite_adopt(db, path, existing < 0, create, err, errlen);
    }
    s->base.format = AUDIT_FORMAT_LEGACY;
    if (create && sq_exec(s, schema_sql))
        goto fail_msg;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO audit_records (instance, seq, time_ns, kind, request_id,"
                           " subject, tenant, tool, decision, layer, record, hash)"
                           " VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                           -1, &s->insert, NULL) != SQLITE_OK) {
        sq_fail(s, "prepare (is this a toolgate audit store?)");
        goto fail_msg;
    }
    return &s->base;
fail_msg:
    snprintf(err, errlen, "%s", s->base.err);
fail:
    sq_close(&s->base);
    return NULL;
}
