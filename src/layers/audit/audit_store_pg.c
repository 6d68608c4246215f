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
#include "layers/audit/audit_store.h"

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

static int pg_compact_setup(struct pg_store *s, int create);

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
        if (pg_compact_setup(s, existing < 0) != 0)
            goto fail;
        return &s->base;
    }
    if (create && pg_cmd(s, pg_schema))
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
    "CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subj) WHERE kind = 1;"
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
    return pg_cmd(s, "BEGIN");
}

static void pgc_rollback(struct audit_store *st)
{
    struct pg_store *s = (struct pg_store *)st;
    PQclear(PQexec(s->conn, "ROLLBACK"));
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
    unsigned char hash[32], req[160];
    uint32_t inst = pgc_name_id(s, r->instance);
    if (!inst || r->seq == 0 || r->seq > AUDIT_SEQ_MAX || strlen(r->hash) != 64 ||
        audit_unhex(r->hash, 32, hash) != 0) {
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
    char ids[8][24];
    const char *v[11];
    int lens[11] = {0}, fmts[11] = {0};
    snprintf(ids[0], sizeof ids[0], "%llu", (unsigned long long)id);
    snprintf(ids[1], sizeof ids[1], "%lld", (long long)r->time_ns);
    snprintf(ids[2], sizeof ids[2], "%u", kind);
    v[0] = ids[0];
    v[1] = ids[1];
    v[2] = ids[2];
    for (int i = 0; i < 5; i++) {
        snprintf(ids[3 + i], sizeof ids[3 + i], "%u", names[i]);
        v[3 + i] = shares ? NULL : ids[3 + i];
    }
    v[8] = (const char *)hash;
    lens[8] = 32;
    fmts[8] = 1;
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
    v[9] = (const char *)req;
    lens[9] = (int)n;
    fmts[9] = 1;
    v[10] = s->blob.data;
    lens[10] = (int)s->blob.len;
    fmts[10] = 1;
    PGresult *res = PQexecParams(s->conn,
                                 "INSERT INTO audit_log (id, t, kind, subj, tenant, tool, decision,"
                                 " layer, hash, req, rec) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,"
                                 "$11)",
                                 11, NULL, v, lens, fmts, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return pg_fail(s, "insert", res);
    PQclear(res);
    s->last_id = id;
    memcpy(s->last_hash, r->hash, 65);
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
        audit_hex(w->hash, 32, s->hashhex);
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
            audit_hex((const unsigned char *)PQgetvalue(res, 0, 0), 32, prevbuf);
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
    if (gw_buf_printf(&sql, "SELECT %s%s FROM audit_log WHERE true",
                      with_record ? PG_ROW_COLS
                                  : "id, t, kind, NULL, subj, tenant, tool, decision, layer,"
                                    " NULL, NULL",
                      with_record && (filtered || f->from_seq)
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
    if ((f->since_ns && gw_buf_printf(&sql, " AND t >= %lld", (long long)f->since_ns)) ||
        (f->until_ns && gw_buf_printf(&sql, " AND t < %lld", (long long)f->until_ns)) ||
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
            if (with_record && (filtered || f->from_seq) && !PQgetisnull(res, 0, 11) &&
                PQgetlength(res, 0, 11) == 32) {
                audit_hex((const unsigned char *)PQgetvalue(res, 0, 11), 32, given);
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
                    if (!r.problem && w.kind == AUDIT_NAME_DECISION)
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
    PGresult *res = PQexec(s->conn, "SELECT pg_total_relation_size('audit_log') +"
                                    " pg_total_relation_size('audit_names') +"
                                    " pg_total_relation_size('audit_dicts') +"
                                    " pg_total_relation_size('audit_meta')");
    uint64_t n = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
                     ? strtoull(PQgetvalue(res, 0, 0), NULL, 10)
                     : 0;
    PQclear(res);
    return n;
}

static const struct audit_store_ops pgc_ops = {
    .set_sync = pg_set_sync,
    .begin = pgc_begin,
    .append = pgc_append,
    .commit = pg_commit,
    .rollback = pgc_rollback,
    .head = pgc_head,
    .scan = pgc_scan,
    .size = pgc_size,
    .close = pg_close,
};

/* zstd level of the records: as in SQLite (the level is not part of the format). */
#define PG_ZSTD_LEVEL 1

static int pg_compact_setup(struct pg_store *s, int create)
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
        if (rc != 0 || pg_cmd(s, sql.data) != 0) {
            if (rc != 0)
                snprintf(s->base.err, sizeof s->base.err, "out of memory opening the audit store");
            gw_buf_free(&sql);
            PQclear(PQexec(s->conn, "ROLLBACK"));
            return -1;
        }
        gw_buf_free(&sql);
    }
    return pgc_load(s);
}
