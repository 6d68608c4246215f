/*
 * PostgreSQL back end: one table shared by every instance; each instance appends its own
 * chain (primary key instance + seq), so instances never contend on a sequence.
 */
#include "layers/audit/audit_store.h"

#include <fnmatch.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pg_store {
    struct audit_store base;
    PGconn *conn;
};

static const char pg_schema[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(7302916);" /* instances starting together */
    "CREATE TABLE IF NOT EXISTS audit_records ("
    " instance TEXT NOT NULL, seq BIGINT NOT NULL, time_ns BIGINT NOT NULL,"
    " kind TEXT NOT NULL, request_id TEXT, subject TEXT, tenant TEXT, tool TEXT,"
    " decision TEXT, layer TEXT, record TEXT NOT NULL, hash TEXT NOT NULL,"
    " PRIMARY KEY (instance, seq));"
    "CREATE INDEX IF NOT EXISTS audit_by_time ON audit_records (time_ns);"
    "CREATE INDEX IF NOT EXISTS audit_by_subject ON audit_records (subject, time_ns);"
    "CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit_records (tenant, time_ns);"
    "CREATE INDEX IF NOT EXISTS audit_by_request ON audit_records (request_id);"
    "COMMIT;";

/* Server notices ("relation already exists, skipping") are not errors; keep them quiet. */
static void pg_quiet(void *arg, const char *message) {}

static int pg_fail(struct pg_store *s, const char *what, PGresult *res)
{
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn);
    char clean[200];
    snprintf(clean, sizeof clean, "%s", msg && *msg ? msg : "unknown error");
    clean[strcspn(clean, "\n")] = '\0';
    snprintf(s->base.err, sizeof s->base.err, "audit store (postgres): %s failed: %s", what, clean);
    if (res)
        PQclear(res);
    return -1;
}

static int pg_cmd(struct pg_store *s, const char *sql)
{
    PGresult *res = PQexec(s->conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(s, sql, res);
    PQclear(res);
    return 0;
}

static int pg_begin(struct audit_store *st)
{
    return pg_cmd((struct pg_store *)st, "BEGIN");
}

static int pg_commit(struct audit_store *st)
{
    return pg_cmd((struct pg_store *)st, "COMMIT");
}

static void pg_rollback(struct audit_store *st)
{
    PQclear(PQexec(((struct pg_store *)st)->conn, "ROLLBACK"));
}

static int pg_append(struct audit_store *st, const struct audit_row *r)
{
    struct pg_store *s = (struct pg_store *)st;
    char seq[24], t[24];
    snprintf(seq, sizeof seq, "%llu", (unsigned long long)r->seq);
    snprintf(t, sizeof t, "%lld", (long long)r->time_ns);
    const char *v[12] = {r->instance, seq,     t,           r->kind,  r->request_id, r->subject,
                         r->tenant,   r->tool, r->decision, r->layer, r->record,     r->hash};
    PGresult *res = PQexecParams(
        s->conn,
        "INSERT INTO audit_records (instance, seq, time_ns, kind, request_id, subject, tenant,"
        " tool, decision, layer, record, hash) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
        12, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return pg_fail(s, "insert", res);
    PQclear(res);
    return 0;
}

static int pg_head(struct audit_store *st, const char *instance, struct audit_head *h)
{
    struct pg_store *s = (struct pg_store *)st;
    const char *v[1] = {instance};
    PGresult *res = PQexecParams(s->conn,
                                 "SELECT seq, time_ns, hash, kind, record FROM audit_records"
                                 " WHERE instance = $1 ORDER BY seq DESC LIMIT 1",
                                 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(s, "head query", res);
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 0;
    }
    memset(h, 0, sizeof *h);
    h->seq = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    h->time_ns = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    snprintf(h->hash, sizeof h->hash, "%s", PQgetvalue(res, 0, 2));
    snprintf(h->kind, sizeof h->kind, "%s", PQgetvalue(res, 0, 3));
    h->closing = strcmp(h->kind, "checkpoint") == 0 &&
                 strstr(PQgetvalue(res, 0, 4), "\"closing\":true") != NULL;
    PQclear(res);
    return 1;
}

static const char *val(PGresult *res, int col)
{
    return PQgetisnull(res, 0, col) ? NULL : PQgetvalue(res, 0, col);
}

static int pg_scan(struct audit_store *st, const struct audit_filter *f, audit_row_cb cb, void *arg)
{
    struct pg_store *s = (struct pg_store *)st;
    char since[24], until[24], from[24];
    snprintf(from, sizeof from, "%llu", (unsigned long long)(f ? f->from_seq : 0));
    snprintf(since, sizeof since, "%lld", (long long)(f ? f->since_ns : 0));
    snprintf(until, sizeof until, "%lld", (long long)(f ? f->until_ns : 0));
    const char *v[8] = {f ? f->instance : NULL,
                        f ? f->kind : NULL,
                        f ? f->subject : NULL,
                        f ? f->tenant : NULL,
                        f ? f->decision : NULL,
                        since,
                        until,
                        from};
    const char *sql =
        "SELECT instance, seq, time_ns, kind, request_id, subject, tenant, tool, decision,"
        " layer, record, hash FROM audit_records WHERE"
        " ($1::text IS NULL OR instance = $1) AND ($2::text IS NULL OR kind = $2) AND"
        " ($3::text IS NULL OR subject = $3) AND ($4::text IS NULL OR tenant = $4) AND"
        " ($5::text IS NULL OR decision = $5) AND ($6::bigint = 0 OR time_ns >= $6) AND"
        " ($7::bigint = 0 OR time_ns < $7) AND ($8::bigint = 0 OR seq >= $8)"
        " ORDER BY instance, seq";
    if (!PQsendQueryParams(s->conn, sql, 8, NULL, v, NULL, NULL, 0) || !PQsetSingleRowMode(s->conn))
        return pg_fail(s, "scan", NULL);
    int ret = 0;
    PGresult *res;
    while ((res = PQgetResult(s->conn)) != NULL) {
        ExecStatusType status = PQresultStatus(res);
        if (status == PGRES_SINGLE_TUPLE && ret == 0) {
            struct audit_row r = {
                .instance = PQgetvalue(res, 0, 0),
                .seq = strtoull(PQgetvalue(res, 0, 1), NULL, 10),
                .time_ns = strtoll(PQgetvalue(res, 0, 2), NULL, 10),
                .kind = PQgetvalue(res, 0, 3),
                .request_id = val(res, 4),
                .subject = val(res, 5),
                .tenant = val(res, 6),
                .tool = val(res, 7),
                .decision = val(res, 8),
                .layer = val(res, 9),
                .record = PQgetvalue(res, 0, 10),
                .record_len = (size_t)PQgetlength(res, 0, 10),
                .hash = PQgetvalue(res, 0, 11),
            };
            if (!f || !f->tool_glob || (r.tool && fnmatch(f->tool_glob, r.tool, 0) == 0))
                ret = cb(&r, arg);
        } else if (status != PGRES_SINGLE_TUPLE && status != PGRES_TUPLES_OK && ret == 0) {
            pg_fail(s, "scan", NULL);
            ret = -1;
        }
        PQclear(res); /* drain every result so the connection stays usable */
    }
    return ret;
}

static uint64_t pg_size(struct audit_store *st)
{
    return 0;
}

static void pg_close(struct audit_store *st)
{
    struct pg_store *s = (struct pg_store *)st;
    if (!s)
        return;
    PQfinish(s->conn);
    free(s);
}

static int pg_set_sync(struct audit_store *st, int full)
{
    struct pg_store *s = (struct pg_store *)st;
    return pg_cmd(s, full ? "SET synchronous_commit = on" : "SET synchronous_commit = off");
}

static const struct audit_store_ops pg_ops = {
    .set_sync = pg_set_sync,
    .begin = pg_begin,
    .append = pg_append,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .head = pg_head,
    .scan = pg_scan,
    .size = pg_size,
    .close = pg_close,
};

struct audit_store *audit_pg_open(const char *conninfo, int create, char *err, size_t errlen)
{
    return audit_pg_open_format(conninfo, create, AUDIT_FORMAT_LEGACY, err, errlen);
}

struct audit_store *audit_pg_open_format(const char *conninfo, int create,
                                         enum audit_store_format format, char *err, size_t errlen)
{
    struct pg_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory opening the audit store");
        return NULL;
    }
    s->base.ops = &pg_ops;
    s->base.format = AUDIT_FORMAT_LEGACY;
    s->conn = PQconnectdb(conninfo);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        pg_fail(s, "connect", NULL);
        goto fail;
    }
    PQsetNoticeProcessor(s->conn, pg_quiet, NULL);
    if (pg_cmd(s, "SET synchronous_commit = on"))
        goto fail;
    if (create && pg_cmd(s, pg_schema))
        goto fail;
    return &s->base;
fail:
    /* The connection string may hold a password: the message names only what failed. */
    snprintf(err, errlen, "%s", s->base.err);
    pg_close(&s->base);
    return NULL;
}
