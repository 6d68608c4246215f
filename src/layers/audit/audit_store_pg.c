/*
 * PostgreSQL back end: tables shared by every instance; each instance appends its own chain
 * (rows keyed by instance and seq), so instances never contend on a sequence.
 *
 * Two formats. The first, "audit_records", one text row per record, is still read and
 * appended to where it exists. New databases get the compact one (below): the indexed fields as ids
 * of a shared name dictionary, the record packed by audit_codec (version 2: cut values marked in
 * the text, compressed against a dictionary in the database, or a completion against its own
 * decision, whose columns it then shares).
 */
#include "layers/audit/audit_compact.h"
#include "layers/audit/audit_rollup.h"
#include "layers/audit/audit_store.h"
#include "lib/digest.h"
#include "lib/log.h"

#include <arpa/inet.h>
#include <fnmatch.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Decoded decision texts (reading) or appended ones (writing), direct-mapped. */
#define PG_PREFIX_SLOTS 4096
struct pg_prefix_slot {
    uint64_t id; /* 0: empty */
    char reqid[48];
    uint32_t names[5]; /* subj, tenant, tool, decision, layer ids (0: none) */
    struct gw_buf text;
};

struct pg_store {
    struct audit_store base;
    PGconn *conn;
    /* The compact format only. */
    int compact;
    PGconn *side; /* names and dictionaries, each committed at once (never held in a batch) */
    char *conninfo;
    struct audit_names names;
    struct audit_codec *codec;
    int loaded;
    uint64_t last_id;
    char last_hash[65];
    struct audit_dict_trainer trainer;
    struct gw_buf blob, cutbuf, text;
    char reqid[160];
    char hashhex[65];
    struct pg_prefix_slot *readers, *writers;
    /*
     * Writer side: the day counters of stats (audit_rollup.h), kept when `rollups`: those of
     * the open transaction's rows of instance pending_inst, whose last row is pending_last
     * (0: none yet). A row of another instance writes them first.
     */
    int rollups;
    struct audit_rollup_pending pending;
    uint32_t pending_inst;
    uint64_t pending_last;
    struct gw_buf rollup_sql;
    /*
     * Writer side: the open transaction's rows not yet sent, as the body of a binary COPY
     * (rows_n of them); sent in one round trip before the commit, or sooner when large.
     */
    struct gw_buf rows;
    size_t rows_n;
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
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char clean[160];
    snprintf(clean, sizeof clean, "%s", msg && *msg ? msg : "unknown error");
    clean[strcspn(clean, "\n")] = '\0';
    /* insufficient_privilege: say where the privileges a role needs are listed. */
    snprintf(s->base.err, sizeof s->base.err, "audit store (postgres): %s failed: %s", what, clean);
    if (state && strcmp(state, "42501") == 0) {
        static const char hint[] =
            " (the role lacks a privilege: docs/audit.md lists those a writer needs)";
        size_t len = strlen(s->base.err), room = sizeof s->base.err - 1 - len;
        size_t k = sizeof hint - 1 < room ? sizeof hint - 1 : room;
        memcpy(s->base.err + len, hint, k);
        s->base.err[len + k] = '\0';
    }
    if (res)
        PQclear(res);
    return -1;
}

/* Runs sql; a failure is reported as `what` failed (the statement itself when NULL). */
static int pg_cmd_as(struct pg_store *s, const char *sql, const char *what)
{
    PGresult *res = PQexec(s->conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(s, what ? what : sql, res);
    PQclear(res);
    return 0;
}

static int pg_cmd(struct pg_store *s, const char *sql)
{
    return pg_cmd_as(s, sql, NULL);
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
    if (s->side)
        PQfinish(s->side);
    if (s->conninfo) {
        /* It may hold a password. */
        memset(s->conninfo, 0, strlen(s->conninfo));
        free(s->conninfo);
    }
    for (size_t i = 0; s->readers && i < PG_PREFIX_SLOTS; i++)
        gw_buf_free(&s->readers[i].text);
    for (size_t i = 0; s->writers && i < PG_PREFIX_SLOTS; i++)
        gw_buf_free(&s->writers[i].text);
    free(s->readers);
    free(s->writers);
    audit_names_free(&s->names);
    audit_codec_free(s->codec);
    audit_dict_trainer_free(&s->trainer);
    gw_buf_free(&s->blob);
    gw_buf_free(&s->cutbuf);
    gw_buf_free(&s->text);
    audit_rollup_free(&s->pending);
    gw_buf_free(&s->rollup_sql);
    gw_buf_free(&s->rows);
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
    return audit_pg_open_format(conninfo, create, AUDIT_FORMAT_COMPACT, err, errlen);
}

/* Which format the database holds: 1 the first (audit_records), 0 compact, -1 neither. */
static int pg_format_of(struct pg_store *s)
{
    PGresult *res = PQexec(s->conn, "SELECT to_regclass('audit_log') IS NOT NULL,"
                                    " to_regclass('audit_records') IS NOT NULL");
    int found = -2;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        found = PQgetvalue(res, 0, 0)[0] == 't'   ? AUDIT_FORMAT_COMPACT
                : PQgetvalue(res, 0, 1)[0] == 't' ? AUDIT_FORMAT_LEGACY
                                                  : -1;
    if (found == -2) {
        pg_fail(s, "reading the schema", res);
        return -2;
    }
    PQclear(res);
    return found;
}

static int pg_compact_setup(struct pg_store *s, int create, int writer);

/* Pages a reader's bitmap scans ask for ahead (effective_io_concurrency). */
#define PG_READ_PREFETCH "64"

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
    /*
     * A reader's filtered scans take rows from all over the table (a user's calls of a month
     * lie one to a page): with prefetching the server asks for many of those pages at once
     * instead of one after another. At 10 million calls with the operating system's cache
     * dropped, a user's month went from 0.71-0.82 s to 0.35 s (16: 0.40 s, 256: 0.34 s). A
     * server that cannot prefetch (no posix_fadvise) refuses the setting: it reads as before.
     */
    if (!create)
        PQclear(PQexec(s->conn, "SET effective_io_concurrency = " PG_READ_PREFETCH));
    int existing = pg_format_of(s);
    if (existing == -2)
        goto fail;
    if (existing < 0 && !create) {
        snprintf(s->base.err, sizeof s->base.err,
                 "audit store (postgres): the database holds no audit records (not a toolgate "
                 "audit store, or another database?)");
        goto fail;
    }
    if (existing == AUDIT_FORMAT_COMPACT || (existing < 0 && format == AUDIT_FORMAT_COMPACT)) {
        if (!(s->conninfo = strdup(conninfo))) {
            snprintf(s->base.err, sizeof s->base.err, "out of memory opening the audit store");
            goto fail;
        }
        if (pg_compact_setup(s, existing < 0, create) != 0)
            goto fail;
        return &s->base;
    }
    if (create && pg_cmd_as(s, pg_schema, "creating the store's tables"))
        goto fail;
    return &s->base;
fail:
    /* The connection string may hold a password: the message names only what failed. */
    snprintf(err, errlen, "%s", s->base.err);
    pg_close(&s->base);
    return NULL;
}

/* ---- The compact format ---- */

/*
 * audit_log: one row per record, id = instance name id << 40 | seq; t = time_ns; the
 * indexed fields as ids of audit_names (0: none); req the request id as audit_reqid_pack
 * gives it ('' none); hash 32 bytes; rec the record by audit_codec, version 2. A completion
 * compressed against its own decision record whose fields it repeats keeps NULL in subj,
 * tenant, tool, decision, layer and req: they are the decision's (its rec names how many rows
 * back that is). Partial indexes on decision records only (one per call): time, and the user.
 */
/* A UTC day in ns as SQL text (AUDIT_ROLLUP_DAY_NS): the day of the user index's key. */
#define PG_DAY_NS_SQL "86400000000000"
_Static_assert(AUDIT_ROLLUP_DAY_NS == 86400000000000ll, "the user index's day");

static const char pg_compact_schema[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(7302916);"
    "CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit_names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
    "CREATE SEQUENCE IF NOT EXISTS audit_names_id START WITH 15;"
    "CREATE TABLE IF NOT EXISTS audit_dicts (id INTEGER PRIMARY KEY, bytes BYTEA NOT NULL);"
    /* Appended in id order within an instance: index pages can be filled. */
    "CREATE TABLE IF NOT EXISTS audit_log (id BIGINT NOT NULL, t BIGINT NOT NULL,"
    " kind INTEGER NOT NULL, subj INTEGER, tenant INTEGER, tool INTEGER, decision INTEGER,"
    " layer INTEGER, hash BYTEA NOT NULL, req BYTEA, rec BYTEA NOT NULL,"
    " PRIMARY KEY (id) WITH (fillfactor = 100));"
    "CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log (t) WITH (fillfactor = 100)"
    " WHERE kind = 1;"
    /*
     * A user's month among their calls of every month: keyed by the UTC day as well, only
     * that month's rows are read, and the calls of one user on one day are one deduplicated
     * entry (no larger than an index on subj alone, which stores made before it have).
     */
    "CREATE INDEX IF NOT EXISTS audit_log_subject_day ON audit_log"
    " (subj, (t / " PG_DAY_NS_SQL ")) WHERE kind = 1;"
    "INSERT INTO audit_meta VALUES ('format', 'compact-1') ON CONFLICT DO NOTHING;";

/* Columns of every row query, in this order (a 12th, prev, for filtered scans). */
#define PG_ROW_COLS "id, t, kind, req, subj, tenant, tool, decision, layer, rec, hash"
enum { C_ID, C_T, C_KIND, C_REQ, C_SUBJ, C_TENANT, C_TOOL, C_DECISION, C_LAYER, C_REC, C_HASH };

static int64_t be64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | (unsigned char)p[i];
    return (int64_t)v;
}

static uint32_t be32(const char *p)
{
    return (uint32_t)(unsigned char)p[0] << 24 | (uint32_t)(unsigned char)p[1] << 16 |
           (uint32_t)(unsigned char)p[2] << 8 | (uint32_t)(unsigned char)p[3];
}

/* A binary int8/int4 column (0 when NULL or not of that size). */
static int64_t col_int(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return 0;
    int len = PQgetlength(res, row, col);
    const char *v = PQgetvalue(res, row, col);
    return len == 8 ? be64(v) : len == 4 ? (int64_t)be32(v) : 0;
}

static PGconn *side_conn(struct pg_store *s)
{
    if (s->side && PQstatus(s->side) == CONNECTION_OK)
        return s->side;
    if (s->side)
        PQfinish(s->side);
    s->side = PQconnectdb(s->conninfo);
    if (PQstatus(s->side) != CONNECTION_OK) {
        PQfinish(s->side);
        s->side = NULL;
        snprintf(s->base.err, sizeof s->base.err,
                 "audit store (postgres): cannot open a second connection for names");
        return NULL;
    }
    PQsetNoticeProcessor(s->side, pg_quiet, NULL);
    return s->side;
}

/*
 * (Re)reads the names and dictionaries: at open, after a rollback, on an unknown id. On the
 * second connection, so that it can run while a scan is being read from the first; what
 * other instances added is committed there at once, so it sees every name a row can hold.
 */
static int pgc_load(struct pg_store *s)
{
    audit_names_free(&s->names);
    audit_codec_clear(s->codec);
    s->loaded = 0;
    PGconn *c = side_conn(s);
    if (!c)
        return -1;
    PGresult *res =
        PQexecParams(c, "SELECT id, name FROM audit_names", 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(s, "reading names", res);
    for (int i = 0; i < PQntuples(res); i++) {
        char name[1024];
        int len = PQgetlength(res, i, 1);
        if (len <= 0 || (size_t)len >= sizeof name ||
            memchr(PQgetvalue(res, i, 1), 0, (size_t)len)) {
            PQclear(res);
            snprintf(s->base.err, sizeof s->base.err,
                     "audit store (postgres): the name dictionary is damaged");
            return -1;
        }
        memcpy(name, PQgetvalue(res, i, 1), (size_t)len);
        name[len] = '\0';
        if (audit_names_put(&s->names, (uint32_t)col_int(res, i, 0), name) != 0) {
            PQclear(res);
            snprintf(s->base.err, sizeof s->base.err,
                     "audit store (postgres): the name dictionary is damaged");
            return -1;
        }
    }
    PQclear(res);
    res = PQexecParams(c, "SELECT id, bytes FROM audit_dicts ORDER BY id", 0, NULL, NULL, NULL,
                       NULL, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(s, "reading dictionaries", res);
    uint32_t last = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        last = (uint32_t)col_int(res, i, 0);
        if (audit_codec_add_dict(s->codec, last, PQgetvalue(res, i, 1),
                                 (size_t)PQgetlength(res, i, 1)) != 0) {
            PQclear(res);
            snprintf(s->base.err, sizeof s->base.err,
                     "audit store (postgres): a compression dictionary is damaged");
            return -1;
        }
    }
    PQclear(res);
    audit_codec_use_dict(s->codec, last);
    s->loaded = 1;
    return 0;
}

static int pgc_begin(struct audit_store *st)
{
    struct pg_store *s = (struct pg_store *)st;
    if (!s->loaded && pgc_load(s) != 0)
        return -1;
    audit_rollup_clear(&s->pending); /* a failed commit's, when no rollback followed it */
    s->pending_last = 0;
    gw_buf_reset(&s->rows);
    s->rows_n = 0;
    return pg_cmd(s, "BEGIN");
}

static void pgc_rollback(struct audit_store *st)
{
    struct pg_store *s = (struct pg_store *)st;
    PQclear(PQexec(s->conn, "ROLLBACK"));
    audit_rollup_clear(&s->pending);
    s->pending_last = 0;
    gw_buf_reset(&s->rows);
    s->rows_n = 0;
    s->last_id = 0;
    for (size_t i = 0; i < PG_PREFIX_SLOTS; i++)
        s->writers[i].id = s->readers[i].id = 0;
}

/*
 * The id of a name, adding it when new. Names are added on the second connection and
 * committed at once, so a batch never holds a lock on one that another instance waits for.
 * 0 on error.
 */
static uint32_t pgc_name_id(struct pg_store *s, const char *name)
{
    uint32_t id = audit_names_id(&s->names, name);
    if (id || !name)
        return id;
    PGconn *c = side_conn(s);
    if (!c)
        return 0;
    const char *v[1] = {name};
    for (int attempt = 0; attempt < 2 && !id; attempt++) {
        PGresult *res = PQexecParams(
            c,
            attempt == 0
                ? "SELECT id FROM audit_names WHERE name = $1"
                : "INSERT INTO audit_names (id, name) VALUES (nextval('audit_names_id'), $1)"
                  " ON CONFLICT (name) DO NOTHING RETURNING id",
            1, NULL, v, NULL, NULL, 1);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            snprintf(s->base.err, sizeof s->base.err,
                     "audit store (postgres): adding a name failed");
            PQclear(res);
            return 0;
        }
        if (PQntuples(res) == 1)
            id = (uint32_t)col_int(res, 0, 0);
        PQclear(res);
        if (!id && attempt == 1) {
            /* Another instance added it between the two statements. */
            res = PQexecParams(c, "SELECT id FROM audit_names WHERE name = $1", 1, NULL, v, NULL,
                               NULL, 1);
            if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
                id = (uint32_t)col_int(res, 0, 0);
            PQclear(res);
        }
    }
    if (!id || audit_names_put(&s->names, id, name) != 0) {
        snprintf(s->base.err, sizeof s->base.err, "audit store (postgres): adding a name failed");
        return 0;
    }
    return id;
}

/*
 * Once the first records give enough text, a dictionary trained on them serves the rest: the
 * first instance to store one (id 1) sets it for every instance; one that finds it taken
 * uses that one.
 */
static int pgc_maybe_train(struct pg_store *s)
{
    if (audit_codec_dict_in_use(s->codec) || s->trainer.done)
        return 0;
    struct gw_buf dict = {0};
    int ready = audit_dict_trainer_add(&s->trainer, audit_codec_last_reduced(s->codec), &dict);
    if (ready <= 0) {
        gw_buf_free(&dict);
        return ready;
    }
    PGconn *c = side_conn(s);
    int rc = -1;
    if (c) {
        const char *v[1] = {dict.data};
        int lens[1] = {(int)dict.len}, fmts[1] = {1};
        PGresult *res = PQexecParams(c,
                                     "INSERT INTO audit_dicts (id, bytes) VALUES (1, $1)"
                                     " ON CONFLICT (id) DO NOTHING",
                                     1, NULL, v, lens, fmts, 1);
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            /* Ours or another instance's: read back what the database holds. */
            PQclear(res);
            res = PQexecParams(c, "SELECT bytes FROM audit_dicts WHERE id = 1", 0, NULL, NULL, NULL,
                               NULL, 1);
            if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                (audit_codec_has_dict(s->codec, 1) ||
                 audit_codec_add_dict(s->codec, 1, PQgetvalue(res, 0, 0),
                                      (size_t)PQgetlength(res, 0, 0)) == 0) &&
                audit_codec_use_dict(s->codec, 1) == 0)
                rc = 0;
        }
        PQclear(res);
    }
    if (rc != 0 && !s->base.err[0])
        snprintf(s->base.err, sizeof s->base.err,
                 "audit store (postgres): adding a dictionary failed");
    gw_buf_free(&dict);
    return rc;
}

static int pgc_rollup_count(struct pg_store *s, uint32_t inst, uint64_t id, int64_t t,
                            uint32_t kind, const uint32_t *names);

/*
 * The rows of a transaction go to the server as one binary COPY (two round trips a commit,
 * not one a row): a header, per row its field count and fields (a length, -1 for NULL, then
 * the value in network order), a trailer.
 */
#define PG_COPY_FIELDS 11
#define PG_COPY_FLUSH_BYTES (4u << 20)
static const char pg_copy_sql[] = "COPY audit_log (id, t, kind, subj, tenant, tool, decision,"
                                  " layer, hash, req, rec) FROM STDIN (FORMAT binary)";
static const unsigned char pg_copy_header[19] = {
    'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0, 0, 0, 0, 0, 0, 0, 0, 0};
static const unsigned char pg_copy_trailer[2] = {0xff, 0xff};

static int copy_be(struct gw_buf *b, uint64_t v, int bytes)
{
    unsigned char o[8];
    for (int i = 0; i < bytes; i++)
        o[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    return gw_buf_append(b, o, (size_t)bytes);
}

static int copy_u16(struct gw_buf *b, unsigned v)
{
    return copy_be(b, v, 2);
}

static int copy_i64(struct gw_buf *b, int64_t v)
{
    return copy_be(b, 8, 4) || copy_be(b, (uint64_t)v, 8);
}

static int copy_i32(struct gw_buf *b, uint32_t v)
{
    return copy_be(b, 4, 4) || copy_be(b, v, 4);
}

static int copy_null(struct gw_buf *b)
{
    return copy_be(b, 0xffffffffu, 4);
}

static int copy_bytes(struct gw_buf *b, const void *p, size_t len)
{
    return len > INT32_MAX || copy_be(b, len, 4) || gw_buf_append(b, p, len);
}

/* Sends the rows not yet sent; 0, or -1 with err (the transaction then fails as a whole). */
static int pgc_send_rows(struct pg_store *s)
{
    if (!s->rows_n)
        return 0;
    PGresult *res = PQexec(s->conn, pg_copy_sql);
    if (PQresultStatus(res) != PGRES_COPY_IN)
        return pg_fail(s, "insert", res);
    PQclear(res);
    int ok = PQputCopyData(s->conn, (const char *)pg_copy_header, sizeof pg_copy_header) == 1 &&
             PQputCopyData(s->conn, s->rows.data, (int)s->rows.len) == 1 &&
             PQputCopyData(s->conn, (const char *)pg_copy_trailer, sizeof pg_copy_trailer) == 1;
    /* Ended either way: an error ends the COPY as failed, and the server drops its rows. */
    if (PQputCopyEnd(s->conn, ok ? NULL : "the audit writer could not send its rows") != 1)
        ok = 0;
    int failed = 0;
    while ((res = PQgetResult(s->conn)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st != PGRES_COMMAND_OK && !failed) {
            failed = 1;
            pg_fail(s, "insert", res);
        } else
            PQclear(res);
        /* Still copying (the end could not be sent): no further result comes. */
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT)
            break;
    }
    gw_buf_reset(&s->rows);
    s->rows_n = 0;
    if (!ok && !failed)
        return pg_fail(s, "insert", NULL);
    return failed || !ok ? -1 : 0;
}

static uint64_t slot_hash(const char *v)
{
    uint64_t h = 1469598103934665603ull;
    for (; *v; v++)
        h = (h ^ (unsigned char)*v) * 1099511628211ull;
    return h;
}

static int pgc_append(struct audit_store *st, const struct audit_row *r)
{
    struct pg_store *s = (struct pg_store *)st;
    unsigned char hash[32];
    uint32_t inst = pgc_name_id(s, r->instance);
    if (!inst || r->seq == 0 || r->seq > AUDIT_SEQ_MAX || strlen(r->hash) != 64 ||
        gw_unhex(r->hash, 32, hash, 1) != 0) {
        if (!s->base.err[0])
            snprintf(s->base.err, sizeof s->base.err,
                     "audit store (postgres): row cannot be stored");
        return -1;
    }
    uint64_t id = (uint64_t)inst << AUDIT_SEQ_BITS | r->seq;
    uint32_t names[5];
    const char *vals[5] = {r->subject, r->tenant, r->tool, r->decision, r->layer};
    for (int i = 0; i < 5; i++)
        if (!(names[i] = pgc_name_id(s, vals[i])) && vals[i])
            return -1;
    uint32_t kind = pgc_name_id(s, r->kind);
    if (!kind)
        return -1;
    const char *prev = s->last_id && s->last_id + 1 == id ? s->last_hash : NULL;
    int is_decision = r->request_id && strcmp(r->kind, "decision") == 0;
    struct pg_prefix_slot *slot =
        r->request_id ? &s->writers[slot_hash(r->request_id) % PG_PREFIX_SLOTS] : NULL;
    struct audit_cut_values cv;
    if (audit_compact_cut_values(&cv, &s->cutbuf, r, prev) != 0)
        goto bad;
    /*
     * A completion whose request fields are its decision's is compressed against that
     * decision's text and shares its columns.
     */
    int shares = 0;
    if (slot && !is_decision && strcmp(r->kind, "completion") == 0 && slot->id && slot->id < id &&
        strcmp(slot->reqid, r->request_id) == 0) {
        cv.prefix = slot->text.data;
        cv.prefix_len = slot->text.len;
        cv.prefix_delta = id - slot->id;
        shares = memcmp(slot->names, names, sizeof names) == 0;
    }
    if (audit_codec_encode(s->codec, r->record, r->record_len, &cv, &s->blob) != 0)
        goto bad;
    /* The row in COPY's binary form: the field count, then each field's length and bytes. */
    unsigned char req[160];
    size_t n = 0;
    if (shares) {
        /* 0x01 (which no packed request id starts with) and how many rows back it is. */
        uint64_t delta = id - slot->id;
        req[n++] = 1;
        do {
            req[n++] = (unsigned char)((delta & 0x7f) | (delta > 0x7f ? 0x80 : 0));
            delta >>= 7;
        } while (delta);
    } else if (r->request_id && !(n = audit_reqid_pack(r->request_id, req, sizeof req)))
        goto bad;
    size_t mark = s->rows.len;
    int rc = copy_u16(&s->rows, PG_COPY_FIELDS) || copy_i64(&s->rows, (int64_t)id) ||
             copy_i64(&s->rows, r->time_ns) || copy_i32(&s->rows, kind);
    for (int i = 0; i < 5 && rc == 0; i++)
        rc = shares ? copy_null(&s->rows) : copy_i32(&s->rows, names[i]);
    if (rc == 0)
        rc = copy_bytes(&s->rows, hash, 32) || copy_bytes(&s->rows, req, n) ||
             copy_bytes(&s->rows, s->blob.data, s->blob.len);
    if (rc != 0) {
        s->rows.len = mark;
        snprintf(s->base.err, sizeof s->base.err, "audit store (postgres): out of memory");
        return -1;
    }
    s->rows_n++;
    if (s->rows.len >= PG_COPY_FLUSH_BYTES && pgc_send_rows(s) != 0)
        return -1;
    s->last_id = id;
    memcpy(s->last_hash, r->hash, 65);
    if (s->rollups && pgc_rollup_count(s, inst, id, r->time_ns, kind, names) != 0)
        return -1;
    if (is_decision && strlen(r->request_id) < sizeof slot->reqid) {
        gw_buf_reset(&slot->text);
        slot->id = gw_buf_append(&slot->text, r->record, r->record_len) == 0 ? id : 0;
        snprintf(slot->reqid, sizeof slot->reqid, "%s", r->request_id);
        memcpy(slot->names, names, sizeof names);
    }
    return pgc_maybe_train(s);
bad:
    snprintf(s->base.err, sizeof s->base.err, "audit store (postgres): record cannot be encoded");
    return -1;
}

/* A name of an id column; "\x01unknown name" for an id the dictionary lacks. */
static const char *pgc_name(struct pg_store *s, uint32_t id)
{
    if (!id)
        return NULL;
    const char *n = audit_names_name(&s->names, id);
    return n ? n : "\x01unknown name";
}

/* A row read back: its ids, and where its record and hash lie in the result. */
struct pgc_row {
    uint64_t id;
    int64_t t;
    uint32_t kind, names[5];
    uint64_t shares; /* rows back to the decision whose columns these are (0: its own) */
    const unsigned char *req;
    size_t req_len;
    int has_req;
    const void *rec;
    size_t rec_len;
    const unsigned char *hash;
    size_t hash_len;
};

static void pgc_parse(const PGresult *res, int i, struct pgc_row *w)
{
    memset(w, 0, sizeof *w);
    w->id = (uint64_t)col_int(res, i, C_ID);
    w->t = col_int(res, i, C_T);
    w->kind = (uint32_t)col_int(res, i, C_KIND);
    for (int k = 0; k < 5; k++)
        w->names[k] = (uint32_t)col_int(res, i, C_SUBJ + k);
    w->has_req = !PQgetisnull(res, i, C_REQ);
    w->req = (const unsigned char *)PQgetvalue(res, i, C_REQ);
    w->req_len = (size_t)PQgetlength(res, i, C_REQ);
    if (w->has_req && w->req_len >= 2 && w->req[0] == 1 && PQgetisnull(res, i, C_SUBJ) &&
        PQgetisnull(res, i, C_DECISION)) {
        uint64_t v = 0;
        size_t k = 1;
        for (int shift = 0; k < w->req_len && shift < 63; shift += 7) {
            unsigned char b = w->req[k++];
            v |= (uint64_t)(b & 0x7f) << shift;
            if (!(b & 0x80))
                break;
        }
        /* Damaged (an unended varint, bytes after it, nothing back): no row it can name. */
        w->shares = k == w->req_len && !(w->req[k - 1] & 0x80) && v ? v : UINT64_MAX;
    }
    w->rec = PQgetvalue(res, i, C_REC);
    w->rec_len = (size_t)PQgetlength(res, i, C_REC);
    w->hash = (const unsigned char *)PQgetvalue(res, i, C_HASH);
    w->hash_len = (size_t)PQgetlength(res, i, C_HASH);
}

/* Names or a dictionary added since they were loaded: load again, once a row. */
static void pgc_reload_if_unknown(struct pg_store *s, const struct pgc_row *w, int with_record)
{
    int unknown = !audit_names_name(&s->names, (uint32_t)(w->id >> AUDIT_SEQ_BITS)) ||
                  !audit_names_name(&s->names, w->kind);
    for (int k = 0; k < 5; k++)
        unknown |= w->names[k] && !audit_names_name(&s->names, w->names[k]);
    if (with_record) {
        int64_t d = audit_codec_blob_dict(w->rec, w->rec_len);
        unknown |= d > 0 && !audit_codec_has_dict(s->codec, (uint32_t)d);
    }
    if (unknown)
        pgc_load(s);
}

static void pgc_columns(struct pg_store *s, const struct pgc_row *w, const uint32_t *names,
                        struct audit_row *r)
{
    memset(r, 0, sizeof *r);
    r->seq = w->id & AUDIT_SEQ_MAX;
    r->time_ns = w->t;
    r->instance = audit_names_name(&s->names, (uint32_t)(w->id >> AUDIT_SEQ_BITS));
    if (!r->instance)
        r->instance = "\x01unknown instance";
    r->kind = pgc_name(s, w->kind);
    if (!r->kind)
        r->kind = "";
    r->subject = pgc_name(s, names[0]);
    r->tenant = pgc_name(s, names[1]);
    r->tool = pgc_name(s, names[2]);
    r->decision = pgc_name(s, names[3]);
    r->layer = pgc_name(s, names[4]);
}

static const struct pg_prefix_slot *pgc_prefix(struct pg_store *s, uint64_t id);

/*
 * Fills r from a row: the columns (a sharing completion's from its decision), and with_record
 * the record rebuilt (prev: the hash of the row before when known). r->problem is set when
 * the row cannot be rebuilt. depth > 0: reading a decision for a completion.
 */
static int pgc_row_fill(struct pg_store *s, const struct pgc_row *w, const char *prev,
                        int with_record, struct audit_row *r, char *reqid, size_t reqid_len,
                        struct gw_buf *cutbuf, struct gw_buf *text, int depth)
{
    pgc_reload_if_unknown(s, w, with_record);
    const struct pg_prefix_slot *dec = NULL, *owner = NULL;
    int64_t delta = with_record ? audit_codec_blob_prefix(w->rec, w->rec_len) : 0;
    if (w->shares && depth == 0 && w->shares < w->id)
        owner = pgc_prefix(s, w->id - w->shares);
    if (delta > 0 && depth == 0 && (uint64_t)delta < w->id)
        dec = (uint64_t)delta == w->shares ? owner : pgc_prefix(s, w->id - (uint64_t)delta);
    if (w->shares && !owner) {
        pgc_columns(s, w, w->names, r);
        r->problem = "it shares the columns of a decision record that is missing or damaged";
        return 0;
    }
    if (owner && owner->id != w->id - w->shares) {
        /* Its decision's slot was taken by the record it names as compressed against. */
        pgc_columns(s, w, w->names, r);
        r->problem = "it shares the columns of a decision record that is missing or damaged";
        return 0;
    }
    pgc_columns(s, w, w->shares ? owner->names : w->names, r);
    if (w->shares)
        r->request_id = owner->reqid;
    else if (w->has_req && w->req_len) {
        if (audit_reqid_unpack(w->req, w->req_len, reqid, reqid_len) == 0)
            r->request_id = reqid;
        else
            r->problem = "its request id column is damaged";
    }
    if (!with_record || r->problem)
        return 0;
    if (w->hash_len == 32)
        gw_hex(w->hash, 32, s->hashhex);
    else
        snprintf(s->hashhex, sizeof s->hashhex, "damaged");
    r->hash = s->hashhex;
    r->record = "";
    char prevbuf[65], err[160];
    int needs = 0;
    for (int pass = 0; pass < 2; pass++) {
        struct audit_cut_values cv;
        if (audit_compact_cut_values(&cv, cutbuf, r, prev) != 0)
            return -1;
        if (dec) {
            cv.prefix = dec->text.data;
            cv.prefix_len = dec->text.len;
            cv.prefix_delta = (uint64_t)delta;
        }
        if (audit_codec_decode(s->codec, w->rec, w->rec_len, &cv, text, &needs, err, sizeof err) !=
            0) {
            r->problem = "its stored record is damaged (edited)";
            return 0;
        }
        if (needs != AUDIT_NEED_PREV || prev)
            break;
        /* The hash of the row before (a row read on its own). */
        char idtext[24];
        snprintf(idtext, sizeof idtext, "%llu", (unsigned long long)(w->id - 1));
        const char *v[1] = {idtext};
        PGconn *c = side_conn(s); /* the first may be reading a scan */
        PGresult *res = c ? PQexecParams(c, "SELECT hash FROM audit_log WHERE id = $1", 1, NULL, v,
                                         NULL, NULL, 1)
                          : NULL;
        int ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                 PQgetlength(res, 0, 0) == 32;
        if (ok)
            gw_hex((const unsigned char *)PQgetvalue(res, 0, 0), 32, prevbuf);
        PQclear(res);
        if (!ok)
            break;
        prev = prevbuf;
    }
    if (needs) {
        r->problem = needs == AUDIT_NEED_PREV
                         ? "its stored record needs the hash of a row that is missing"
                         : "its stored record was compressed against a decision record that is "
                           "missing or damaged";
        return 0;
    }
    r->record = text->data ? text->data : "";
    r->record_len = text->len;
    return 0;
}

static void pgc_remember(struct pg_store *s, uint64_t id, const struct audit_row *r,
                         const uint32_t *names)
{
    struct pg_prefix_slot *slot = &s->readers[id % PG_PREFIX_SLOTS];
    gw_buf_reset(&slot->text);
    slot->id = 0;
    if (!r->request_id || strlen(r->request_id) >= sizeof slot->reqid ||
        gw_buf_append(&slot->text, r->record, r->record_len) != 0)
        return;
    snprintf(slot->reqid, sizeof slot->reqid, "%s", r->request_id);
    memcpy(slot->names, names, sizeof slot->names);
    slot->id = id;
}

/* The decision at id, decoded (from the cache, else read on its own), or NULL. */
static const struct pg_prefix_slot *pgc_prefix(struct pg_store *s, uint64_t id)
{
    struct pg_prefix_slot *slot = &s->readers[id % PG_PREFIX_SLOTS];
    if (slot->id == id)
        return slot;
    char idtext[24], reqid[160];
    snprintf(idtext, sizeof idtext, "%llu", (unsigned long long)id);
    const char *v[1] = {idtext};
    PGconn *c = side_conn(s); /* the first may be reading a scan */
    PGresult *res = c ? PQexecParams(c, "SELECT " PG_ROW_COLS " FROM audit_log WHERE id = $1", 1,
                                     NULL, v, NULL, NULL, 1)
                      : NULL;
    const struct pg_prefix_slot *ret = NULL;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        struct pgc_row w;
        struct audit_row r;
        struct gw_buf cutbuf = {0}, text = {0};
        char keep[65];
        pgc_parse(res, 0, &w);
        memcpy(keep, s->hashhex, sizeof keep);
        if (!w.shares &&
            pgc_row_fill(s, &w, NULL, 1, &r, reqid, sizeof reqid, &cutbuf, &text, 1) == 0 &&
            !r.problem && strcmp(r.kind, "decision") == 0) {
            pgc_remember(s, id, &r, w.names);
            ret = slot->id == id ? slot : NULL;
        }
        memcpy(s->hashhex, keep, sizeof keep);
        gw_buf_free(&cutbuf);
        gw_buf_free(&text);
    }
    PQclear(res);
    return ret;
}

static int pgc_head(struct audit_store *st, const char *instance, struct audit_head *h)
{
    struct pg_store *s = (struct pg_store *)st;
    if (!s->loaded && pgc_load(s) != 0)
        return -1;
    if (pgc_send_rows(s) != 0) /* the open transaction's rows are part of the head */
        return -1;
    uint32_t inst = audit_names_id(&s->names, instance);
    if (!inst)
        return 0;
    char lo[24], hi[24];
    snprintf(lo, sizeof lo, "%llu", (unsigned long long)((uint64_t)inst << AUDIT_SEQ_BITS));
    snprintf(hi, sizeof hi, "%llu",
             (unsigned long long)((uint64_t)inst << AUDIT_SEQ_BITS | AUDIT_SEQ_MAX));
    const char *v[2] = {lo, hi};
    PGresult *res = PQexecParams(s->conn,
                                 "SELECT " PG_ROW_COLS " FROM audit_log WHERE id >= $1 AND id <= $2"
                                 " ORDER BY id DESC LIMIT 1",
                                 2, NULL, v, NULL, NULL, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(s, "head query", res);
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 0;
    }
    struct pgc_row w;
    struct audit_row r;
    pgc_parse(res, 0, &w);
    if (pgc_row_fill(s, &w, NULL, 1, &r, s->reqid, sizeof s->reqid, &s->cutbuf, &s->text, 0) != 0) {
        PQclear(res);
        snprintf(s->base.err, sizeof s->base.err, "audit store (postgres): out of memory");
        return -1;
    }
    memset(h, 0, sizeof *h);
    h->seq = r.seq;
    h->time_ns = r.time_ns;
    snprintf(h->hash, sizeof h->hash, "%s", s->hashhex);
    snprintf(h->kind, sizeof h->kind, "%s", r.kind);
    h->closing = strcmp(h->kind, "checkpoint") == 0 && !r.problem &&
                 strstr(r.record, "\"closing\":true") != NULL;
    s->last_id = w.id;
    memcpy(s->last_hash, h->hash, 65);
    PQclear(res);
    return 1;
}

/* Appends " AND col = id" for a name filter; 0 when the name is unknown (no row matches). */
static int pgc_name_cond(struct pg_store *s, struct gw_buf *sql, const char *col, const char *name)
{
    if (!name)
        return 1;
    uint32_t id = audit_names_id(&s->names, name);
    if (!id)
        return 0;
    return gw_buf_printf(sql, " AND %s = %u", col, id) == 0 ? 1 : -1;
}

/* A row's names match the filter's (checked here for completions sharing their decision's). */
static int pgc_matches(const struct audit_filter *f, const struct audit_row *r)
{
    const char *want[3] = {f->subject, f->tenant, f->decision};
    const char *have[3] = {r->subject, r->tenant, r->decision};
    for (int i = 0; i < 3; i++)
        if (want[i] && (!have[i] || strcmp(want[i], have[i]) != 0))
            return 0;
    return !f->tool_glob || (r->tool && fnmatch(f->tool_glob, r->tool, 0) == 0);
}

/*
 * A scan the caller stopped (a query's --limit reached, an error) asks the server to cancel
 * the statement, instead of receiving every remaining row of the range only to drop it: with
 * months of records, a first page would otherwise cost as much as the whole answer. PQcancel
 * returns once the server has the request, so it cannot reach a later statement.
 */
static void pgc_cancel(struct pg_store *s)
{
    PGcancel *c = PQgetCancel(s->conn);
    if (!c)
        return;
    char err[256];
    (void)PQcancel(c, err, sizeof err); /* best effort: the rows are drained either way */
    PQfreeCancel(c);
}

static int pgc_scan(struct audit_store *st, const struct audit_filter *f, audit_row_cb cb,
                    void *arg)
{
    struct pg_store *s = (struct pg_store *)st;
    static const struct audit_filter none = {0};
    struct gw_buf sql = {0};
    uint32_t *tools = NULL;
    int ret = -1;
    if (!f)
        f = &none;
    if (!s->loaded && pgc_load(s) != 0)
        return -1;
    if (f->from_seq && !f->instance) {
        snprintf(s->base.err, sizeof s->base.err,
                 "audit store (postgres): a scan from a seq needs an instance");
        return -1;
    }
    int with_record = !(f->flags & AUDIT_SCAN_NO_RECORD);
    int decisions = f->kind && audit_names_id(&s->names, f->kind) == AUDIT_NAME_DECISION;
    int filtered = f->kind || f->subject || f->tenant || f->decision || f->since_ns ||
                   f->until_ns || f->tool_glob;
    /*
     * Completions that share their decision's columns hold NULL there: name filters over
     * every kind (or over completions) keep them and are decided per row below.
     */
    int names_in_sql = f->kind && strcmp(f->kind, "completion") != 0;
    /* A filtered scan's rows rarely follow each other: their predecessors' hashes cost a
     * lookup a row, which a reader that shows no chain links is spared. */
    int no_chain = (f->flags & AUDIT_SCAN_NO_CHAIN) && with_record && filtered;
    static const char zero_hash[65] =
        "0000000000000000000000000000000000000000000000000000000000000000";
    if (gw_buf_printf(&sql, "SELECT %s%s FROM audit_log WHERE true",
                      with_record ? PG_ROW_COLS
                                  : "id, t, kind, NULL, subj, tenant, tool, decision, layer,"
                                    " NULL, NULL",
                      with_record && (filtered || f->from_seq) && !no_chain
                          ? ", (SELECT p.hash FROM audit_log p WHERE p.id = audit_log.id - 1)"
                          : "") != 0)
        goto out;
    int any = pgc_name_cond(s, &sql, "kind", f->kind);
    if (any > 0 && names_in_sql)
        any = pgc_name_cond(s, &sql, "subj", f->subject) > 0 &&
              pgc_name_cond(s, &sql, "tenant", f->tenant) > 0 &&
              pgc_name_cond(s, &sql, "decision", f->decision) > 0;
    else if (any > 0)
        any = (!f->subject || audit_names_id(&s->names, f->subject)) &&
              (!f->tenant || audit_names_id(&s->names, f->tenant)) &&
              (!f->decision || audit_names_id(&s->names, f->decision));
    if (any > 0 && f->instance) {
        uint32_t inst = audit_names_id(&s->names, f->instance);
        any = inst != 0;
        if (gw_buf_printf(
                &sql, " AND id >= %llu AND id <= %llu",
                (unsigned long long)((uint64_t)inst << AUDIT_SEQ_BITS |
                                     (f->from_seq <= AUDIT_SEQ_MAX ? f->from_seq : AUDIT_SEQ_MAX)),
                (unsigned long long)((uint64_t)inst << AUDIT_SEQ_BITS | AUDIT_SEQ_MAX)))
            goto out;
    }
    if (any > 0 && f->tool_glob) {
        long n = audit_names_glob(&s->names, f->tool_glob, &tools);
        if (n < 0)
            goto out;
        any = n > 0;
        if (n > 0 && n <= 500 && names_in_sql) {
            if (gw_buf_printf(&sql, " AND tool IN (") != 0)
                goto out;
            for (long i = 0; i < n; i++)
                if (gw_buf_printf(&sql, "%s%u", i ? "," : "", tools[i]) != 0)
                    goto out;
            if (gw_buf_printf(&sql, ")") != 0)
                goto out;
        }
    }
    if (any <= 0) {
        ret = any < 0 ? -1 : 0;
        goto out;
    }
    /* A user's days too, as audit_log_subject_day is keyed (a filter only on older stores). */
    int user_days = f->subject && names_in_sql;
    if ((f->since_ns && gw_buf_printf(&sql, " AND t >= %lld", (long long)f->since_ns)) ||
        (f->until_ns && gw_buf_printf(&sql, " AND t < %lld", (long long)f->until_ns)) ||
        (user_days && f->since_ns > 0 &&
         gw_buf_printf(&sql, " AND t / " PG_DAY_NS_SQL " >= %lld",
                       (long long)(f->since_ns / AUDIT_ROLLUP_DAY_NS))) ||
        (user_days && f->until_ns > 0 &&
         gw_buf_printf(&sql, " AND t / " PG_DAY_NS_SQL " <= %lld",
                       (long long)(f->until_ns / AUDIT_ROLLUP_DAY_NS))) ||
        gw_buf_printf(&sql, "%s",
                      !(f->flags & AUDIT_SCAN_ANY_ORDER) ? " ORDER BY id"
                      : decisions                        ? " ORDER BY t, id"
                                                         : ""))
        goto out;
    if (!PQsendQueryParams(s->conn, sql.data, 0, NULL, NULL, NULL, NULL, 1) ||
        !PQsetSingleRowMode(s->conn)) {
        pg_fail(s, "scan", NULL);
        goto out;
    }
    ret = 0;
    uint64_t prev_id = 0;
    char prev_hash[65] = "";
    PGresult *res;
    while ((res = PQgetResult(s->conn)) != NULL) {
        ExecStatusType status = PQresultStatus(res);
        if (status == PGRES_SINGLE_TUPLE && ret == 0) {
            struct pgc_row w;
            struct audit_row r;
            pgc_parse(res, 0, &w);
            const char *known = !filtered && prev_id && prev_id + 1 == w.id ? prev_hash : NULL;
            char given[65];
            if (no_chain)
                known = zero_hash;
            else if (with_record && (filtered || f->from_seq) && !PQgetisnull(res, 0, 11) &&
                     PQgetlength(res, 0, 11) == 32) {
                gw_hex((const unsigned char *)PQgetvalue(res, 0, 11), 32, given);
                known = given;
            }
            if (pgc_row_fill(s, &w, known, with_record, &r, s->reqid, sizeof s->reqid, &s->cutbuf,
                             &s->text, 0) != 0) {
                snprintf(s->base.err, sizeof s->base.err, "audit store (postgres): out of memory");
                ret = -1;
            } else {
                if (with_record) {
                    prev_id = w.id;
                    memcpy(prev_hash, s->hashhex, 65);
                    /* A text rebuilt without its prev_hash is no prefix for others. */
                    if (!r.problem && w.kind == AUDIT_NAME_DECISION && !no_chain)
                        pgc_remember(s, w.id, &r, w.names);
                }
                if (pgc_matches(f, &r))
                    ret = cb(&r, arg);
            }
            if (ret != 0)
                pgc_cancel(s);
        } else if (status != PGRES_SINGLE_TUPLE && status != PGRES_TUPLES_OK && ret == 0) {
            pg_fail(s, "scan", NULL);
            ret = -1;
        }
        /* Drain every result so the connection stays usable (after a cancel: the rows already
         * on their way and the cancellation's error, which is ours and not reported). */
        PQclear(res);
    }
out:
    gw_buf_free(&sql);
    free(tools);
    return ret;
}

static uint64_t pgc_size(struct audit_store *st)
{
    struct pg_store *s = (struct pg_store *)st;
    PGresult *res =
        PQexec(s->conn, "SELECT pg_total_relation_size('audit_log') +"
                        " pg_total_relation_size('audit_names') +"
                        " pg_total_relation_size('audit_dicts') +"
                        " pg_total_relation_size('audit_meta') +"
                        " coalesce(pg_total_relation_size(to_regclass('audit_rollup')), 0) +"
                        " coalesce(pg_total_relation_size(to_regclass('audit_rollup_heads')), 0)");
    uint64_t n = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
                     ? strtoull(PQgetvalue(res, 0, 0), NULL, 10)
                     : 0;
    PQclear(res);
    return n;
}

/* ---- The day counters of stats (audit_rollup.h) ---- */

/*
 * n decision records of instance inst on that day had that name (id in audit_names, 0 for none)
 * in that dimension; the last row id of each instance they account for; audit_meta's rollup_from:
 * the first day (ns) from which they count every record. Kept per instance, as the chains are, so
 * that the writers of several instances never wait for each other's counters. Created by the
 * first writer that opens the store (a store of an earlier version has none).
 */
static const char pgc_rollup_schema[] =
    "CREATE TABLE IF NOT EXISTS audit_rollup (day BIGINT NOT NULL, inst INTEGER NOT NULL,"
    " dim INTEGER NOT NULL, name INTEGER NOT NULL, n BIGINT NOT NULL,"
    " PRIMARY KEY (day, inst, dim, name));"
    "CREATE TABLE IF NOT EXISTS audit_rollup_heads (inst INTEGER PRIMARY KEY,"
    " last_id BIGINT NOT NULL);";

_Static_assert(AUDIT_SEQ_BITS == 40, "the statements below shift ids by 40");
_Static_assert(AUDIT_ROLLUP_DAY_NS == 86400000000000ll, "the statements below divide by a day");

/* The last row id of each instance (NULL ends it): one index lookup per instance, not a scan. */
#define PGC_TOP_IDS                                                                                \
    "WITH RECURSIVE top(id) AS (SELECT max(id) FROM audit_log UNION ALL"                           \
    " SELECT (SELECT max(l.id) FROM audit_log l WHERE l.id < (top.id >> 40) << 40) FROM top"       \
    " WHERE top.id IS NOT NULL)"

/* How many instances the counters' heads and the table disagree on (either way). */
static const char pgc_heads_stale[] = PGC_TOP_IDS
    " SELECT count(*) FROM (SELECT id >> 40 AS inst, id FROM top WHERE id IS NOT NULL) t"
    " FULL JOIN (SELECT inst::bigint AS inst, last_id FROM audit_rollup_heads) h"
    " USING (inst) WHERE t.id IS DISTINCT FROM h.last_id";

/* One integer of a one-row result; `none` when NULL or not a whole number. */
static int64_t pgc_int_value(const PGresult *res, int col, int64_t none)
{
    if (PQgetisnull(res, 0, col))
        return none;
    const char *v = PQgetvalue(res, 0, col);
    char *end;
    long long n = strtoll(v, &end, 10);
    return end != v && *end == '\0' ? (int64_t)n : none;
}

/*
 * The state of the day counters, inside the caller's transaction: *from is rollup_from (-1 when
 * the store keeps none: a store of an earlier version), *max_name the largest name id. With
 * `heads`, whether they account for every row: the last row of each instance in the table is
 * the one they last counted, and no instance is missing either way. 1 yes, 0 no (or not asked),
 * -1 on error.
 */
static int pgc_rollup_state(struct pg_store *s, int heads, int64_t *from, int64_t *max_name)
{
    PGresult *res = PQexec(s->conn, "SELECT to_regclass('audit_rollup') IS NOT NULL AND"
                                    " to_regclass('audit_rollup_heads') IS NOT NULL,"
                                    " (SELECT value FROM audit_meta WHERE key = 'rollup_from'),"
                                    " (SELECT max(id) FROM audit_names)");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return pg_fail(s, "reading the stats counters", res);
    int kept = PQgetvalue(res, 0, 0)[0] == 't';
    *from = kept ? pgc_int_value(res, 1, -1) : -1;
    if (*from < 0)
        *from = -1;
    if (max_name)
        *max_name = pgc_int_value(res, 2, 0);
    PQclear(res);
    if (!heads || *from < 0)
        return 0;
    res = PQexec(s->conn, pgc_heads_stale);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return pg_fail(s, "reading the stats counters' heads", res);
    int current = pgc_int_value(res, 0, -1) == 0;
    PQclear(res);
    return current;
}

/*
 * Writer, at open: starts the day counters in a store without them (from the day after its last
 * decision, when it has any), or restarts them there when rows were appended that they did not
 * count (a version without counters wrote to the store). In one transaction that holds the
 * counters' tables: a writer of another instance finishing a commit is waited for, and one that
 * commits after it counts its rows into what it started.
 */
static int pgc_rollup_start(struct pg_store *s)
{
    char sql[512];
    int64_t from;
    if (pg_cmd(s, "BEGIN") != 0)
        return -1;
    if (pg_cmd(s, "SELECT pg_advisory_xact_lock(7302916)") != 0)
        goto fail;
    /* Created only when missing: a writer's role may append without CREATE on the schema. */
    PGresult *have = PQexec(s->conn, "SELECT to_regclass('audit_rollup') IS NOT NULL AND"
                                     " to_regclass('audit_rollup_heads') IS NOT NULL");
    int exist = PQresultStatus(have) == PGRES_TUPLES_OK && PQntuples(have) == 1 &&
                PQgetvalue(have, 0, 0)[0] == 't';
    PQclear(have);
    if ((!exist && pg_cmd_as(s, pgc_rollup_schema, "creating the stats counters' tables") != 0) ||
        pg_cmd_as(s, "LOCK TABLE audit_rollup, audit_rollup_heads IN EXCLUSIVE MODE",
                  "locking the stats counters") != 0)
        goto fail;
    int current = pgc_rollup_state(s, 1, &from, NULL);
    if (current < 0)
        goto fail;
    if (!current) {
        PGresult *res = PQexec(s->conn, "SELECT max(t) FROM audit_log WHERE kind = 1");
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            pg_fail(s, "starting the stats counters", res);
            goto fail;
        }
        int64_t last = pgc_int_value(res, 0, -1);
        PQclear(res);
        from = last < 0 ? 0 : (last / AUDIT_ROLLUP_DAY_NS + 1) * AUDIT_ROLLUP_DAY_NS;
        snprintf(sql, sizeof sql,
                 "DELETE FROM audit_rollup; DELETE FROM audit_rollup_heads;"
                 " INSERT INTO audit_meta VALUES ('rollup_from', '%lld')"
                 " ON CONFLICT (key) DO UPDATE SET value = excluded.value;" PGC_TOP_IDS
                 " INSERT INTO audit_rollup_heads (inst, last_id)"
                 " SELECT id >> 40, id FROM top WHERE id IS NOT NULL",
                 (long long)from);
        if (pg_cmd(s, sql) != 0)
            goto fail;
    }
    if (pg_cmd(s, "COMMIT") != 0)
        goto fail;
    s->rollups = 1;
    return 0;
fail:
    PQclear(PQexec(s->conn, "ROLLBACK"));
    return -1;
}

/* Appends one of the pending counters' columns as an array literal (numbers only). */
static int pgc_rollup_array(struct pg_store *s, int col, const char *type)
{
    struct gw_buf *b = &s->rollup_sql;
    int rc = gw_buf_append_str(b, col ? ", '{" : "'{");
    size_t k = 0;
    for (size_t i = 0; rc == 0 && i < s->pending.cap; i++) {
        const struct audit_rollup_entry *e = &s->pending.slots[i];
        if (e->dim == AUDIT_ROLLUP_DIMS)
            continue;
        unsigned long long v = col == 0   ? (unsigned long long)e->day
                               : col == 1 ? e->dim
                               : col == 2 ? e->name
                                          : (unsigned long long)e->n;
        rc = col == 0 ? gw_buf_printf(b, "%s%lld", k ? "," : "", (long long)e->day)
                      : gw_buf_printf(b, "%s%llu", k ? "," : "", v);
        k++;
    }
    return rc == 0 ? gw_buf_printf(b, "}'::%s[]", type) : -1;
}

/*
 * Writes the pending counters and their instance's head into the open transaction, in one
 * statement (the counters as arrays), and with `commit` the COMMIT in the same round trip.
 */
static int pgc_rollup_flush(struct pg_store *s, int commit)
{
    struct gw_buf *b = &s->rollup_sql;
    if (!s->pending_last)
        return commit ? pg_cmd(s, "COMMIT") : 0;
    gw_buf_reset(b);
    int rc =
        gw_buf_printf(b,
                      "WITH h AS (INSERT INTO audit_rollup_heads (inst, last_id) VALUES"
                      " (%u, %llu) ON CONFLICT (inst) DO UPDATE SET last_id = excluded.last_id)"
                      " INSERT INTO audit_rollup (day, inst, dim, name, n) SELECT d, %u, m, k, c"
                      " FROM unnest(",
                      s->pending_inst, (unsigned long long)s->pending_last, s->pending_inst);
    if (rc == 0)
        rc = pgc_rollup_array(s, 0, "bigint") || pgc_rollup_array(s, 1, "int") ||
             pgc_rollup_array(s, 2, "int") || pgc_rollup_array(s, 3, "bigint");
    if (rc == 0)
        rc = gw_buf_printf(b,
                           ") AS u(d, m, k, c) ON CONFLICT (day, inst, dim, name) DO UPDATE"
                           " SET n = audit_rollup.n + excluded.n%s",
                           commit ? "; COMMIT" : "");
    if (rc != 0) {
        snprintf(s->base.err, sizeof s->base.err,
                 "audit store (postgres): out of memory writing the stats counters");
        return -1;
    }
    PGresult *res = PQexec(s->conn, b->data);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return pg_fail(
            s, commit ? "adding to the stats counters and COMMIT" : "adding to the stats counters",
            res);
    PQclear(res);
    audit_rollup_clear(&s->pending);
    s->pending_last = 0;
    return 0;
}

/* Counts an appended row for the day counters (decisions) and its instance's head. */
static int pgc_rollup_count(struct pg_store *s, uint32_t inst, uint64_t id, int64_t t,
                            uint32_t kind, const uint32_t *names)
{
    if (s->pending_last && s->pending_inst != inst && pgc_rollup_flush(s, 0) != 0)
        return -1;
    s->pending_inst = inst;
    s->pending_last = id;
    if (kind != AUDIT_NAME_DECISION)
        return 0;
    /* names are subj, tenant, tool, decision, layer; the dimensions decision, layer, tool, user. */
    const uint32_t dims[AUDIT_ROLLUP_DIMS] = {names[3], names[4], names[2], names[0]};
    for (uint32_t d = 0; d < AUDIT_ROLLUP_DIMS; d++)
        if (audit_rollup_add(&s->pending, t / AUDIT_ROLLUP_DAY_NS, d, dims[d], 1) != 0) {
            snprintf(s->base.err, sizeof s->base.err,
                     "audit store (postgres): out of memory counting for stats");
            return -1;
        }
    return 0;
}

static int pgc_commit(struct audit_store *st)
{
    struct pg_store *s = (struct pg_store *)st;
    if (pgc_send_rows(s) != 0)
        return -1;
    return s->rollups ? pgc_rollup_flush(s, 1) : pg_cmd(s, "COMMIT");
}

/*
 * The dimension a row of a GROUPING SETS ((decision), (layer), (tool), (subj)) count is of, from
 * GROUPING(decision, layer, tool, subj): the bits of the columns not grouped by. -1: none.
 */
static int pgc_grouping_dim(const char *g)
{
    int v = atoi(g);
    return v == 7 ? 0 : v == 11 ? 1 : v == 13 ? 2 : v == 14 ? 3 : -1;
}

/* The decisions' columns, none as 0 (as the writer stores them and the scan reads NULL). */
#define PGC_DIM_COLS                                                                               \
    "coalesce(decision, 0) AS decision, coalesce(layer, 0) AS layer, coalesce(tool, 0) AS tool,"   \
    " coalesce(subj, 0) AS subj"

/*
 * Adds c to counts of (dim, id): n slots a dimension, the last for an id the names do not have
 * (reported as an unknown name, as a scan reads it).
 */
static void pgc_count_add(uint64_t *counts, size_t n, int dim, long long id, uint64_t c)
{
    size_t slot = id >= 0 && (unsigned long long)id < n - 1 ? (size_t)id : n - 1;
    counts[(size_t)dim * n + slot] += c;
}

/*
 * Counts the decisions of [lo, hi) (INT64_MIN, INT64_MAX: open) into counts, on the server:
 * one pass over the range grouped four ways, a few hundred rows back instead of every decision.
 */
static int pgc_tally_rows(struct pg_store *s, int64_t lo, int64_t hi, uint64_t *counts, size_t n)
{
    char sql[600], range[80] = "";
    if (lo >= hi)
        return 0;
    if (lo != INT64_MIN)
        snprintf(range, sizeof range, " AND t >= %lld", (long long)lo);
    if (hi != INT64_MAX)
        snprintf(range + strlen(range), sizeof range - strlen(range), " AND t < %lld",
                 (long long)hi);
    snprintf(sql, sizeof sql,
             "SELECT GROUPING(decision, layer, tool, subj), decision, layer, tool, subj, count(*)"
             " FROM (SELECT " PGC_DIM_COLS " FROM audit_log WHERE kind = %d%s) x"
             " GROUP BY GROUPING SETS ((decision), (layer), (tool), (subj))",
             AUDIT_NAME_DECISION, range);
    PGresult *res = PQexec(s->conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(s, "stats", res);
    for (int i = 0; i < PQntuples(res); i++) {
        int d = pgc_grouping_dim(PQgetvalue(res, i, 0));
        if (d >= 0)
            pgc_count_add(counts, n, d, strtoll(PQgetvalue(res, i, 1 + d), NULL, 10),
                          strtoull(PQgetvalue(res, i, 5), NULL, 10));
    }
    PQclear(res);
    return 0;
}

/* Adds the day counters of days [first, end) into counts (summed over the instances). */
static int pgc_tally_days(struct pg_store *s, int64_t first, int64_t end, uint64_t *counts,
                          size_t n)
{
    char sql[300];
    /* Counters toolgate does not write (a dimension out of range, no count) are left out: the
     * totals then differ from a scan, which verify reports. */
    snprintf(sql, sizeof sql,
             "SELECT dim, name, sum(n) FROM audit_rollup WHERE day >= %lld AND day < %lld"
             " AND dim >= 0 AND dim < %d AND n > 0 GROUP BY dim, name",
             (long long)first, (long long)end, AUDIT_ROLLUP_DIMS);
    PGresult *res = PQexec(s->conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(s, "stats counters", res);
    for (int i = 0; i < PQntuples(res); i++)
        pgc_count_add(counts, n, atoi(PQgetvalue(res, i, 0)),
                      strtoll(PQgetvalue(res, i, 1), NULL, 10),
                      strtoull(PQgetvalue(res, i, 2), NULL, 10));
    PQclear(res);
    return 0;
}

/*
 * Stats over a time range, counted by id on the server: the whole days from the day counters
 * when they are current, the rest (or everything, in a store without them, or --from-rows) from
 * the rows. In one snapshot, so the parts see the same rows. Other filters go through scan.
 */
static int pgc_tally(struct audit_store *st, const struct audit_filter *f,
                     void (*cb)(void *arg, int dim, const char *name, uint64_t n), void *arg)
{
    struct pg_store *s = (struct pg_store *)st;
    if (!f || !f->kind || strcmp(f->kind, "decision") != 0 || f->instance || f->subject ||
        f->tenant || f->decision || f->tool_glob || f->from_seq)
        return 1;
    if (!s->loaded && pgc_load(s) != 0)
        return -1;
    if (pg_cmd(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") != 0)
        return -1;
    int ret = -1;
    uint64_t *counts = NULL;
    int64_t from, max_name, first = 0, end = 0;
    int usable = pgc_rollup_state(s, !(f->flags & AUDIT_SCAN_ROWS_ONLY), &from, &max_name);
    if (usable < 0)
        goto out;
    /* Names added since they were loaded (every name a row of this snapshot holds was committed
     * before it): load them again. */
    if (max_name > (int64_t)s->names.max_id && pgc_load(s) != 0)
        goto out;
    size_t n = (size_t)s->names.max_id + 2;
    if (!(counts = calloc(AUDIT_ROLLUP_DIMS * n, sizeof *counts))) {
        snprintf(s->base.err, sizeof s->base.err, "audit store (postgres): out of memory");
        goto out;
    }
    int64_t lo = f->since_ns ? f->since_ns : INT64_MIN, hi = f->until_ns ? f->until_ns : INT64_MAX;
    if (usable && audit_rollup_split(f->since_ns, f->until_ns, from, &first, &end)) {
        if (pgc_tally_rows(s, lo, first * AUDIT_ROLLUP_DAY_NS, counts, n) != 0 ||
            pgc_tally_days(s, first, end, counts, n) != 0 ||
            pgc_tally_rows(s, end * AUDIT_ROLLUP_DAY_NS, hi, counts, n) != 0)
            goto out;
    } else if (pgc_tally_rows(s, lo, hi, counts, n) != 0)
        goto out;
    for (int d = 0; d < AUDIT_ROLLUP_DIMS; d++)
        for (size_t id = 0; id < n; id++) {
            uint64_t c = counts[(size_t)d * n + id];
            const char *name = id == 0       ? "-"
                               : id == n - 1 ? NULL
                                             : audit_names_name(&s->names, (uint32_t)id);
            if (c)
                cb(arg, d, name ? name : "\x01unknown name", c);
        }
    ret = 0;
out:
    PQclear(PQexec(s->conn, "COMMIT"));
    free(counts);
    return ret;
}

static const char *const pgc_dim_names[AUDIT_ROLLUP_DIMS] = {"decision", "layer", "tool", "user"};

/*
 * verify: counts the decisions from rollup_from on again on the server (by day, instance and
 * name, the four ways stats reads them) and compares with the counters, every one either way:
 * the first that differs is reported (edited, deleted, or kept for a day without those
 * records). Counters that are not current are not used by stats and are not judged.
 */
static int pgc_check_counters(struct audit_store *st, char *problem, size_t len)
{
    struct pg_store *s = (struct pg_store *)st;
    char sql[2000];
    int ret = -1;
    int64_t from;
    if (pg_cmd(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") != 0)
        return -1;
    int current = pgc_rollup_state(s, 1, &from, NULL);
    if (current <= 0) {
        ret = current < 0 ? -1 : 0;
        goto out;
    }
    snprintf(sql, sizeof sql,
             "WITH counted AS (SELECT day, inst,"
             " CASE GROUPING(decision, layer, tool, subj) WHEN 7 THEN 0 WHEN 11 THEN 1"
             " WHEN 13 THEN 2 ELSE 3 END AS dim,"
             " CASE GROUPING(decision, layer, tool, subj) WHEN 7 THEN decision WHEN 11 THEN layer"
             " WHEN 13 THEN tool ELSE subj END AS name, count(*) AS n"
             " FROM (SELECT t / %lld AS day, id >> 40 AS inst, " PGC_DIM_COLS
             " FROM audit_log WHERE kind = %d AND t >= %lld) x"
             " GROUP BY GROUPING SETS ((day, inst, decision), (day, inst, layer),"
             " (day, inst, tool), (day, inst, subj))),"
             " kept AS (SELECT day, inst::bigint AS inst, dim, name, n FROM audit_rollup"
             " WHERE day >= %lld),"
             " diff AS (SELECT day, inst, dim, name, c.n AS counted, k.n AS kept FROM counted c"
             " FULL JOIN kept k USING (day, inst, dim, name) WHERE c.n IS DISTINCT FROM k.n"
             " ORDER BY day, inst, dim, name LIMIT 1)"
             " SELECT day, inst, dim, name, counted IS NOT NULL, kept IS NOT NULL,"
             " EXISTS (SELECT 1 FROM counted c WHERE c.day = diff.day) FROM diff",
             (long long)AUDIT_ROLLUP_DAY_NS, AUDIT_NAME_DECISION, (long long)from,
             (long long)(from / AUDIT_ROLLUP_DAY_NS));
    PGresult *res = PQexec(s->conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_fail(s, "checking the stats counters", res);
        goto out;
    }
    if (PQntuples(res) == 1) {
        long long day = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        long long inst = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        long long dim = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
        long long name = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
        int counted = PQgetvalue(res, 0, 4)[0] == 't', kept = PQgetvalue(res, 0, 5)[0] == 't';
        int day_has_records = PQgetvalue(res, 0, 6)[0] == 't';
        const char *dim_name = dim >= 0 && dim < AUDIT_ROLLUP_DIMS ? pgc_dim_names[dim] : "?";
        if (!counted && !day_has_records)
            snprintf(problem, len,
                     "the store keeps stats counters for days without those records (edited)");
        else if (!kept)
            snprintf(problem, len,
                     "day %lld: the records give a stats counter (instance id %lld, %s, name id"
                     " %lld) the store does not keep (deleted)",
                     day, inst, dim_name, name);
        else
            snprintf(problem, len,
                     "the stats counter of day %lld (instance id %lld, %s, name id %lld) does not"
                     " match the records (edited)",
                     day, inst, dim_name, name);
        ret = 1;
    } else
        ret = 0;
    PQclear(res);
out:
    PQclear(PQexec(s->conn, "COMMIT"));
    return ret;
}

static const struct audit_store_ops pgc_ops = {
    .check_counters = pgc_check_counters,
    .tally = pgc_tally,
    .set_sync = pg_set_sync,
    .begin = pgc_begin,
    .append = pgc_append,
    .commit = pgc_commit,
    .rollback = pgc_rollback,
    .head = pgc_head,
    .scan = pgc_scan,
    .size = pgc_size,
    .close = pg_close,
};

/* zstd level of the records: as in SQLite (the level is not part of the format). */
#define PG_ZSTD_LEVEL 1

/* `create`: a new database (the schema is written); `writer`: opened to append (counters kept). */
static int pg_compact_setup(struct pg_store *s, int create, int writer)
{
    s->base.ops = &pgc_ops;
    s->base.format = AUDIT_FORMAT_COMPACT;
    s->compact = 1;
    if (!(s->codec = audit_codec_new(PG_ZSTD_LEVEL)) || audit_codec_use_markers(s->codec) != 0 ||
        !(s->readers = calloc(PG_PREFIX_SLOTS, sizeof *s->readers)) ||
        !(s->writers = calloc(PG_PREFIX_SLOTS, sizeof *s->writers))) {
        snprintf(s->base.err, sizeof s->base.err, "out of memory opening the audit store");
        return -1;
    }
    if (create) {
        struct gw_buf sql = {0};
        int rc = gw_buf_append_str(&sql, pg_compact_schema);
        for (uint32_t i = 1; rc == 0 && i <= AUDIT_NAME_FIXED; i++)
            rc = gw_buf_printf(&sql,
                               "INSERT INTO audit_names (id, name) VALUES (%u, '%s')"
                               " ON CONFLICT DO NOTHING;",
                               i, audit_fixed_names[i]);
        if (rc == 0)
            rc = gw_buf_append_str(&sql, "COMMIT;");
        if (rc != 0 || pg_cmd_as(s, sql.data, "creating the store's tables") != 0) {
            if (rc != 0)
                snprintf(s->base.err, sizeof s->base.err, "out of memory opening the audit store");
            gw_buf_free(&sql);
            PQclear(PQexec(s->conn, "ROLLBACK"));
            return -1;
        }
        gw_buf_free(&sql);
    }
    if (pgc_load(s) != 0)
        return -1;
    /*
     * Counters that cannot be started (a role that may append but not create tables) are not
     * kept: the writer goes on, stats counts the rows (the heads no longer match them).
     */
    if (writer && pgc_rollup_start(s) != 0) {
        gw_log_warn("audit_stats_counters", "%s; stats will count the rows", s->base.err);
        s->base.err[0] = '\0';
    }
    return 0;
}
