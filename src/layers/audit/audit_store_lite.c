/*
 * The compact SQLite format. One row per record in audit_log, keyed by
 * id = instance name id << 40 | seq (so the table's own order is (instance, seq) and no
 * separate unique index is needed); the indexed fields are ids of audit_names; the record
 * is stored by audit_codec (cut, compressed against a dictionary of audit_dicts) and the
 * hash as 32 bytes. Partial indexes cover only decision records, which is what queries and
 * stats read (one per call).
 */
#include "layers/audit/audit_compact.h"
#include "layers/audit/audit_rollup.h"
#include "layers/audit/audit_store.h"
#include "layers/audit/audit_prefetch.h"
#include "layers/audit/audit_wal.h"
#include "lib/digest.h"
#include "lib/log.h"

#include <fnmatch.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Decoded decision texts by row id, direct-mapped: completions refer to them. */
#define PREFIX_SLOTS 4096
struct prefix_slot {
    uint64_t id; /* 0: empty */
    char reqid[48];
    struct gw_buf text;
};

struct lite_store {
    struct audit_store base;
    struct prefix_slot readers[PREFIX_SLOTS]; /* decoded, by row id */
    struct prefix_slot writers[PREFIX_SLOTS]; /* appended, by request id */
    sqlite3_stmt *by_id;
    sqlite3 *db;
    char *path;
    sqlite3_stmt *insert, *insert_name, *prev_hash;
    struct audit_names names;
    struct audit_codec *codec;
    int loaded;
    /* Writer side: the row appended last, and samples for the first dictionary. */
    uint64_t last_id;
    char last_hash[65];
    struct audit_dict_trainer trainer;
    struct gw_buf blob, cutbuf, text;
    char reqid[160];
    char hashhex[65];
    /* Writer side: the day counters of stats (audit_rollup.h), kept when `rollups`. */
    int rollups;
    struct audit_rollup_pending pending;
    struct rollup_head *heads; /* the last row appended per instance in this transaction */
    size_t n_heads, cap_heads;
    sqlite3_stmt *rollup_add, *rollup_head;
    /* BEGIN IMMEDIATE and COMMIT, prepared once instead of parsed again every transaction. */
    sqlite3_stmt *tx_begin, *tx_commit;
    /* Writer side: folds the write-ahead log from its own thread (audit_wal.h). */
    struct audit_wal_folder *folder;
};

struct rollup_head {
    uint32_t inst;
    uint64_t last_id;
};

static const char lite_schema[] =
    "CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit_names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
    "CREATE TABLE IF NOT EXISTS audit_dicts (id INTEGER PRIMARY KEY, bytes BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS audit_log (id INTEGER PRIMARY KEY, t INTEGER NOT NULL,"
    " kind INTEGER NOT NULL, req BLOB, subj INTEGER, tenant INTEGER, tool INTEGER,"
    " decision INTEGER, layer INTEGER, rec BLOB NOT NULL, hash BLOB NOT NULL);"
    "CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subj, t) WHERE kind = 1;"
    /* kind is in the columns too: SQLite counts only those as covered, not the WHERE. */
    "CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log (t, decision, layer, tool, subj,"
    " tenant, kind) WHERE kind = 1;"
    /* For reading with the sqlite3 shell: the rows with their names (records stay packed). */
    "CREATE VIEW IF NOT EXISTS audit_records AS SELECT i.name AS instance,"
    " l.id & 1099511627775 AS seq, l.t AS time_ns, k.name AS kind,"
    " CASE WHEN length(l.req) = 16 THEN lower(substr(hex(l.req),1,8)||'-'||"
    "substr(hex(l.req),9,4)||'-'||substr(hex(l.req),13,4)||'-'||substr(hex(l.req),17,4)||'-'||"
    "substr(hex(l.req),21,12)) ELSE substr(l.req, 2) END AS request_id,"
    " s.name AS subject, te.name AS tenant, tl.name AS tool, d.name AS decision,"
    " la.name AS layer, lower(hex(l.hash)) AS hash FROM audit_log l"
    " LEFT JOIN audit_names i ON i.id = l.id >> 40 LEFT JOIN audit_names k ON k.id = l.kind"
    " LEFT JOIN audit_names s ON s.id = l.subj LEFT JOIN audit_names te ON te.id = l.tenant"
    " LEFT JOIN audit_names tl ON tl.id = l.tool LEFT JOIN audit_names d ON d.id = l.decision"
    " LEFT JOIN audit_names la ON la.id = l.layer;";

/*
 * The day counters of stats (audit_rollup.h): n decision records of that day had that name
 * in that dimension; the last row id of each instance they account for; audit_meta's
 * rollup_from: the first day (ns) from which they count every record.
 */
static const char rollup_schema[] =
    "CREATE TABLE IF NOT EXISTS audit_rollup (day INTEGER NOT NULL, dim INTEGER NOT NULL,"
    " name INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (day, dim, name)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS audit_rollup_heads (inst INTEGER PRIMARY KEY,"
    " last_id INTEGER NOT NULL);";

static int lite_fail(struct lite_store *s, const char *what)
{
    /* `what` may be a whole statement: its start is enough to say which one. */
    snprintf(s->base.err, sizeof s->base.err, "audit store %s: %.60s failed: %s", s->path, what,
             sqlite3_errmsg(s->db));
    return -1;
}

static int lite_exec(struct lite_store *s, const char *sql)
{
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : lite_fail(s, sql);
}

/* Runs one statement that returns no rows, prepared on first use and kept in *q. */
static int lite_run(struct lite_store *s, sqlite3_stmt **q, const char *sql)
{
    if (!*q && sqlite3_prepare_v2(s->db, sql, -1, q, NULL) != SQLITE_OK)
        return lite_fail(s, sql);
    int rc = sqlite3_step(*q);
    if (rc != SQLITE_DONE)
        lite_fail(s, sql);
    sqlite3_reset(*q);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* (Re)reads the names and dictionaries: at open, after a rollback, on an unknown id. */
static int lite_load(struct lite_store *s)
{
    sqlite3_stmt *q = NULL;
    int rc = -1;
    audit_names_free(&s->names);
    audit_codec_clear(s->codec);
    if (sqlite3_prepare_v2(s->db, "SELECT id, name FROM audit_names", -1, &q, NULL) != SQLITE_OK)
        return lite_fail(s, "reading names");
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 1);
        if (!name || audit_names_put(&s->names, (uint32_t)sqlite3_column_int64(q, 0), name)) {
            snprintf(s->base.err, sizeof s->base.err,
                     "audit store %s: the name dictionary is damaged", s->path);
            goto out;
        }
    }
    sqlite3_finalize(q);
    if (sqlite3_prepare_v2(s->db, "SELECT id, bytes FROM audit_dicts ORDER BY id", -1, &q, NULL) !=
        SQLITE_OK)
        return lite_fail(s, "reading dictionaries");
    uint32_t last = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        last = (uint32_t)sqlite3_column_int64(q, 0);
        if (audit_codec_add_dict(s->codec, last, sqlite3_column_blob(q, 1),
                                 (size_t)sqlite3_column_bytes(q, 1)) != 0) {
            snprintf(s->base.err, sizeof s->base.err,
                     "audit store %s: a compression dictionary is damaged", s->path);
            goto out;
        }
    }
    audit_codec_use_dict(s->codec, last);
    s->loaded = 1;
    rc = 0;
out:
    sqlite3_finalize(q);
    return rc;
}

static int lite_begin(struct audit_store *st)
{
    struct lite_store *s = (struct lite_store *)st;
    if (!s->loaded && lite_load(s) != 0)
        return -1;
    return lite_run(s, &s->tx_begin, "BEGIN IMMEDIATE");
}

/* Writes the counters and heads of the open transaction into it (before its COMMIT). */
static int rollup_flush(struct lite_store *s)
{
    for (size_t i = 0; i < s->pending.cap && s->pending.used; i++) {
        const struct audit_rollup_entry *e = &s->pending.slots[i];
        if (e->dim == AUDIT_ROLLUP_DIMS)
            continue;
        sqlite3_stmt *q = s->rollup_add;
        sqlite3_reset(q);
        sqlite3_bind_int64(q, 1, e->day);
        sqlite3_bind_int64(q, 2, e->dim);
        sqlite3_bind_int64(q, 3, e->name);
        sqlite3_bind_int64(q, 4, (sqlite3_int64)e->n);
        if (sqlite3_step(q) != SQLITE_DONE)
            return lite_fail(s, "adding to the stats counters");
    }
    for (size_t i = 0; i < s->n_heads; i++) {
        sqlite3_stmt *q = s->rollup_head;
        sqlite3_reset(q);
        sqlite3_bind_int64(q, 1, s->heads[i].inst);
        sqlite3_bind_int64(q, 2, (sqlite3_int64)s->heads[i].last_id);
        if (sqlite3_step(q) != SQLITE_DONE)
            return lite_fail(s, "updating the stats counters' heads");
    }
    audit_rollup_clear(&s->pending);
    s->n_heads = 0;
    return 0;
}

static int lite_commit(struct audit_store *st)
{
    struct lite_store *s = (struct lite_store *)st;
    if (s->rollups && rollup_flush(s) != 0)
        return -1;
    return lite_run(s, &s->tx_commit, "COMMIT");
}

static void lite_rollback(struct audit_store *st)
{
    struct lite_store *s = (struct lite_store *)st;
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    audit_rollup_clear(&s->pending);
    s->n_heads = 0;
    s->loaded = 0; /* names and dictionaries of the transaction are gone */
    s->last_id = 0;
    for (size_t i = 0; i < PREFIX_SLOTS; i++)
        s->writers[i].id = s->readers[i].id = 0;
}

static uint64_t name_hash_of(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The id of a name, adding it (inside the open transaction) when new. 0 on error. */
static uint32_t name_id(struct lite_store *s, const char *name)
{
    uint32_t id = audit_names_id(&s->names, name);
    if (id || !name)
        return id;
    id = s->names.max_id + 1;
    sqlite3_stmt *q = s->insert_name;
    sqlite3_reset(q);
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_text(q, 2, name, -1, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE || audit_names_put(&s->names, id, name) != 0) {
        lite_fail(s, "adding a name");
        return 0;
    }
    return id;
}

static int bind_name(struct lite_store *s, sqlite3_stmt *q, int i, const char *name)
{
    if (!name)
        return sqlite3_bind_null(q, i) == SQLITE_OK ? 0 : -1;
    uint32_t id = name_id(s, name);
    return id ? (sqlite3_bind_int64(q, i, id) == SQLITE_OK ? 0 : -1) : -1;
}

/* Once the first records give enough text, a dictionary trained on them serves the rest. */
static int maybe_train(struct lite_store *s)
{
    if (audit_codec_dict_in_use(s->codec) || s->trainer.done)
        return 0;
    struct gw_buf dict = {0};
    int ready = audit_dict_trainer_add(&s->trainer, audit_codec_last_reduced(s->codec), &dict);
    if (ready <= 0) {
        gw_buf_free(&dict);
        return ready;
    }
    sqlite3_stmt *q = NULL;
    int rc = -1;
    uint32_t id = 1;
    if (sqlite3_prepare_v2(s->db, "INSERT INTO audit_dicts (id, bytes) VALUES (?1, ?2)", -1, &q,
                           NULL) != SQLITE_OK) {
        gw_buf_free(&dict);
        return lite_fail(s, "adding a dictionary");
    }
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_blob(q, 2, dict.data, (int)dict.len, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE)
        lite_fail(s, "adding a dictionary");
    else if (audit_codec_add_dict(s->codec, id, dict.data, dict.len) == 0 &&
             audit_codec_use_dict(s->codec, id) == 0)
        rc = 0;
    sqlite3_finalize(q);
    gw_buf_free(&dict);
    return rc;
}

/* Counts an appended row for the day counters (decisions) and its instance's head. */
static int rollup_count(struct lite_store *s, const struct audit_row *r, uint32_t inst, uint64_t id)
{
    size_t i = 0;
    while (i < s->n_heads && s->heads[i].inst != inst)
        i++;
    if (i == s->n_heads) {
        if (s->n_heads == s->cap_heads) {
            size_t cap = s->cap_heads ? s->cap_heads * 2 : 4;
            struct rollup_head *n = realloc(s->heads, cap * sizeof *n);
            if (!n)
                return -1;
            s->heads = n;
            s->cap_heads = cap;
        }
        s->heads[s->n_heads++].inst = inst;
    }
    s->heads[i].last_id = id;
    if (audit_names_id(&s->names, r->kind) != AUDIT_NAME_DECISION)
        return 0;
    /* The ids bind_name gave the row's columns (0 for none, as the time index reads). */
    const char *names[AUDIT_ROLLUP_DIMS] = {r->decision, r->layer, r->tool, r->subject};
    int64_t day = r->time_ns / AUDIT_ROLLUP_DAY_NS;
    for (uint32_t d = 0; d < AUDIT_ROLLUP_DIMS; d++)
        if (audit_rollup_add(&s->pending, day, d,
                             names[d] ? audit_names_id(&s->names, names[d]) : 0, 1) != 0)
            return -1;
    return 0;
}

static int lite_append(struct audit_store *st, const struct audit_row *r)
{
    struct lite_store *s = (struct lite_store *)st;
    sqlite3_stmt *q = s->insert;
    unsigned char hash[32], req[160];
    uint32_t inst = name_id(s, r->instance);
    if (!inst || r->seq == 0 || r->seq > AUDIT_SEQ_MAX || strlen(r->hash) != 64 ||
        gw_unhex(r->hash, 32, hash, 1) != 0) {
        snprintf(s->base.err, sizeof s->base.err, "audit store %s: row cannot be stored", s->path);
        return -1;
    }
    uint64_t id = (uint64_t)inst << AUDIT_SEQ_BITS | r->seq;
    struct audit_cut_values cv;
    const char *prev = s->last_id && s->last_id + 1 == id ? s->last_hash : NULL;
    int is_decision = r->request_id && strcmp(r->kind, "decision") == 0;
    struct prefix_slot *slot =
        r->request_id ? &s->writers[name_hash_of(r->request_id) % PREFIX_SLOTS] : NULL;
    int rc0 = audit_compact_cut_values(&cv, &s->cutbuf, r, prev);
    if (rc0 == 0 && slot && !is_decision && strcmp(r->kind, "completion") == 0 && slot->id &&
        slot->id < id && strcmp(slot->reqid, r->request_id) == 0) {
        cv.prefix = slot->text.data;
        cv.prefix_len = slot->text.len;
        cv.prefix_delta = id - slot->id;
    }
    if (rc0 != 0 || audit_codec_encode(s->codec, r->record, r->record_len, &cv, &s->blob) != 0) {
        snprintf(s->base.err, sizeof s->base.err, "audit store %s: record cannot be encoded",
                 s->path);
        return -1;
    }
    sqlite3_reset(q);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)id);
    sqlite3_bind_int64(q, 2, r->time_ns);
    if (bind_name(s, q, 3, r->kind) || bind_name(s, q, 5, r->subject) ||
        bind_name(s, q, 6, r->tenant) || bind_name(s, q, 7, r->tool) ||
        bind_name(s, q, 8, r->decision) || bind_name(s, q, 9, r->layer))
        goto fail;
    if (r->request_id) {
        size_t n = audit_reqid_pack(r->request_id, req, sizeof req);
        if (!n)
            goto fail;
        sqlite3_bind_blob(q, 4, req, (int)n, SQLITE_TRANSIENT);
    } else
        sqlite3_bind_null(q, 4);
    sqlite3_bind_blob(q, 10, s->blob.data, (int)s->blob.len, SQLITE_STATIC);
    sqlite3_bind_blob(q, 11, hash, 32, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_clear_bindings(q);
    if (rc != SQLITE_DONE)
        return lite_fail(s, "insert");
    s->last_id = id;
    memcpy(s->last_hash, r->hash, 65);
    if (s->rollups && rollup_count(s, r, inst, id) != 0) {
        snprintf(s->base.err, sizeof s->base.err,
                 "audit store %s: out of memory counting for stats", s->path);
        return -1;
    }
    if (is_decision && strlen(r->request_id) < sizeof slot->reqid) {
        gw_buf_reset(&slot->text);
        slot->id = gw_buf_append(&slot->text, r->record, r->record_len) == 0 ? id : 0;
        snprintf(slot->reqid, sizeof slot->reqid, "%s", r->request_id);
    }
    return maybe_train(s);
fail:
    sqlite3_clear_bindings(q);
    if (!s->base.err[0])
        snprintf(s->base.err, sizeof s->base.err, "audit store %s: row cannot be stored", s->path);
    return -1;
}

/* Columns of every row query, in this order. */
#define ROW_COLS "id, t, kind, req, subj, tenant, tool, decision, layer, rec, hash"

static const char *lite_name(struct lite_store *s, sqlite3_stmt *q, int col)
{
    if (sqlite3_column_type(q, col) == SQLITE_NULL)
        return NULL;
    const char *n = audit_names_name(&s->names, (uint32_t)sqlite3_column_int64(q, col));
    return n ? n : "\x01unknown name";
}

/* Names or a dictionary written since this reader loaded them: load again, once a row. */
static void reload_if_unknown(struct lite_store *s, sqlite3_stmt *q, int with_record)
{
    static const int cols[] = {2, 4, 5, 6, 7, 8};
    int unknown = 0;
    uint64_t id = (uint64_t)sqlite3_column_int64(q, 0);
    unknown |= !audit_names_name(&s->names, (uint32_t)(id >> AUDIT_SEQ_BITS));
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++)
        unknown |= sqlite3_column_type(q, cols[i]) != SQLITE_NULL &&
                   !audit_names_name(&s->names, (uint32_t)sqlite3_column_int64(q, cols[i]));
    if (with_record) {
        int64_t d =
            audit_codec_blob_dict(sqlite3_column_blob(q, 9), (size_t)sqlite3_column_bytes(q, 9));
        unknown |= d > 0 && !audit_codec_has_dict(s->codec, (uint32_t)d);
    }
    if (unknown)
        lite_load(s);
}

static int lookup_prev(struct lite_store *s, uint64_t id, char out[65])
{
    sqlite3_stmt *q = s->prev_hash;
    sqlite3_reset(q);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)(id - 1));
    int ok = sqlite3_step(q) == SQLITE_ROW && sqlite3_column_bytes(q, 0) == 32;
    if (ok)
        gw_hex(sqlite3_column_blob(q, 0), 32, out);
    sqlite3_reset(q);
    return ok ? 0 : -1;
}

/* Fills the row's columns (not the record) from a row of ROW_COLS; reqid holds its id. */
static void lite_columns(struct lite_store *s, sqlite3_stmt *q, int with_record,
                         struct audit_row *r, char *reqid, size_t reqid_len)
{
    uint64_t id = (uint64_t)sqlite3_column_int64(q, 0);
    reload_if_unknown(s, q, with_record);
    memset(r, 0, sizeof *r);
    r->seq = id & AUDIT_SEQ_MAX;
    r->time_ns = sqlite3_column_int64(q, 1);
    r->kind = lite_name(s, q, 2);
    r->instance = audit_names_name(&s->names, (uint32_t)(id >> AUDIT_SEQ_BITS));
    r->subject = lite_name(s, q, 4);
    r->tenant = lite_name(s, q, 5);
    r->tool = lite_name(s, q, 6);
    r->decision = lite_name(s, q, 7);
    r->layer = lite_name(s, q, 8);
    if (!r->instance)
        r->instance = "\x01unknown instance";
    if (!r->kind)
        r->kind = "";
    if (sqlite3_column_type(q, 3) != SQLITE_NULL) {
        if (audit_reqid_unpack(sqlite3_column_blob(q, 3), (size_t)sqlite3_column_bytes(q, 3), reqid,
                               reqid_len) == 0)
            r->request_id = reqid;
        else
            r->problem = "its request id column is damaged";
    }
}

static int decode_record(struct lite_store *s, sqlite3_stmt *q, struct audit_row *r,
                         const char *prev, struct gw_buf *cutbuf, struct gw_buf *text, int depth);

/* Remembers a decoded decision: completions are compressed against it. */
static void remember(struct prefix_slot *cache, uint64_t id, const struct gw_buf *text)
{
    struct prefix_slot *slot = &cache[id % PREFIX_SLOTS];
    gw_buf_reset(&slot->text);
    if (gw_buf_append(&slot->text, text->data, text->len) == 0)
        slot->id = id;
    else
        slot->id = 0;
}

/* The decoded text of the decision at id (from the cache, else read and decoded). */
static const struct gw_buf *prefix_text(struct lite_store *s, uint64_t id)
{
    struct prefix_slot *slot = &s->readers[id % PREFIX_SLOTS];
    if (slot->id == id)
        return &slot->text;
    sqlite3_stmt *q = s->by_id;
    const struct gw_buf *ret = NULL;
    struct gw_buf cutbuf = {0}, text = {0};
    char reqid[160];
    sqlite3_reset(q);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)id);
    if (sqlite3_step(q) == SQLITE_ROW) {
        struct audit_row r;
        lite_columns(s, q, 1, &r, reqid, sizeof reqid);
        if (!r.problem && strcmp(r.kind, "decision") == 0 &&
            decode_record(s, q, &r, NULL, &cutbuf, &text, 1) == 0 && !r.problem) {
            remember(s->readers, id, &text);
            ret = slot->id == id ? &slot->text : NULL;
        }
    }
    sqlite3_reset(q);
    gw_buf_free(&cutbuf);
    gw_buf_free(&text);
    return ret;
}

/*
 * Rebuilds the record of a row of ROW_COLS into text. `prev` is the hash of the row before
 * when the caller knows it (a scan in order), else NULL and it is looked up when needed. A
 * record that cannot be rebuilt sets r->problem. Returns 0, or -1 when out of memory.
 */
static int decode_record(struct lite_store *s, sqlite3_stmt *q, struct audit_row *r,
                         const char *prev, struct gw_buf *cutbuf, struct gw_buf *text, int depth)
{
    uint64_t id = (uint64_t)sqlite3_column_int64(q, 0);
    struct audit_cut_values cv;
    char prevbuf[65], err[160];
    int needs = 0;
    const void *blob = sqlite3_column_blob(q, 9);
    size_t blen = (size_t)sqlite3_column_bytes(q, 9);
    const struct gw_buf *prefix = NULL;
    uint64_t delta = 0;
    for (int pass = 0; pass < 3; pass++) {
        if (audit_compact_cut_values(&cv, cutbuf, r, prev) != 0)
            return -1;
        if (prefix) {
            cv.prefix = prefix->data;
            cv.prefix_len = prefix->len;
            cv.prefix_delta = delta;
        }
        if (audit_codec_decode(s->codec, blob, blen, &cv, text, &needs, err, sizeof err) != 0) {
            r->problem = "its stored record is damaged (edited)";
            return 0;
        }
        if (!needs)
            return 0;
        if (needs == AUDIT_NEED_PREV) {
            if (prev || lookup_prev(s, id, prevbuf) != 0)
                break;
            prev = prevbuf;
            continue;
        }
        int64_t d = audit_codec_blob_prefix(blob, blen);
        if (prefix || depth > 0 || d <= 0 || (uint64_t)d >= id)
            break;
        delta = (uint64_t)d;
        if (!(prefix = prefix_text(s, id - delta)))
            break;
        /* prefix_text may have stepped another statement: take this row's blob again. */
        blob = sqlite3_column_blob(q, 9);
        blen = (size_t)sqlite3_column_bytes(q, 9);
    }
    r->problem = needs == AUDIT_NEED_PREV
                     ? "its stored record needs the hash of a row that is missing"
                     : "its stored record was compressed against a decision record that is "
                       "missing or damaged";
    return 0;
}

/*
 * Fills r from a row of ROW_COLS: the columns, and with_record the record rebuilt.
 * Returns 0 (r->problem set when the record cannot be rebuilt), or -1 when out of memory.
 */
static int lite_row(struct lite_store *s, sqlite3_stmt *q, const char *prev, int with_record,
                    struct audit_row *r)
{
    lite_columns(s, q, with_record, r, s->reqid, sizeof s->reqid);
    if (!with_record)
        return 0;
    if (sqlite3_column_bytes(q, 10) == 32)
        gw_hex(sqlite3_column_blob(q, 10), 32, s->hashhex);
    else
        snprintf(s->hashhex, sizeof s->hashhex, "damaged");
    r->hash = s->hashhex;
    r->record = "";
    if (decode_record(s, q, r, prev, &s->cutbuf, &s->text, 0) != 0)
        return -1;
    if (r->problem)
        return 0;
    if (strcmp(r->kind, "decision") == 0)
        remember(s->readers, (uint64_t)sqlite3_column_int64(q, 0), &s->text);
    r->record = s->text.data ? s->text.data : "";
    r->record_len = s->text.len;
    return 0;
}

static int lite_head(struct audit_store *st, const char *instance, struct audit_head *h)
{
    struct lite_store *s = (struct lite_store *)st;
    sqlite3_stmt *q = NULL;
    int ret = -1;
    if (!s->loaded && lite_load(s) != 0)
        return -1;
    uint32_t inst = audit_names_id(&s->names, instance);
    if (!inst)
        return 0;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT " ROW_COLS " FROM audit_log WHERE id >= ?1 AND id <= ?2"
                           " ORDER BY id DESC LIMIT 1",
                           -1, &q, NULL) != SQLITE_OK)
        return lite_fail(s, "head query");
    sqlite3_bind_int64(q, 1, (sqlite3_int64)((uint64_t)inst << AUDIT_SEQ_BITS));
    sqlite3_bind_int64(q, 2, (sqlite3_int64)((uint64_t)inst << AUDIT_SEQ_BITS | AUDIT_SEQ_MAX));
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        ret = 0;
        goto out;
    }
    struct audit_row r;
    if (rc != SQLITE_ROW || lite_row(s, q, NULL, 1, &r) != 0) {
        lite_fail(s, "head query");
        goto out;
    }
    memset(h, 0, sizeof *h);
    h->seq = r.seq;
    h->time_ns = r.time_ns;
    snprintf(h->hash, sizeof h->hash, "%s", r.hash);
    snprintf(h->kind, sizeof h->kind, "%s", r.kind);
    h->closing = strcmp(h->kind, "checkpoint") == 0 && !r.problem &&
                 strstr(r.record, "\"closing\":true") != NULL;
    s->last_id = (uint64_t)sqlite3_column_int64(q, 0);
    memcpy(s->last_hash, h->hash, 65);
    ret = 1;
out:
    sqlite3_finalize(q);
    return ret;
}

/* Appends " AND col = id" for a name filter; 0 when the name is unknown (no row matches). */
static int add_name_cond(struct lite_store *s, char *sql, size_t len, const char *col,
                         const char *name)
{
    if (!name)
        return 1;
    uint32_t id = audit_names_id(&s->names, name);
    if (!id)
        return 0;
    size_t used = strlen(sql);
    snprintf(sql + used, len - used, " AND %s = %u", col, id);
    return 1;
}

/* Most ids a scan hands the prefetcher (32 MiB); the rows after them are read unhelped. */
#define LITE_PREFETCH_MAX_IDS (4u << 20)

/*
 * A scan for one user's records reads rows from all over the table: their ids, from the
 * index alone (the same conditions as the scan's sql, in its order), go to the prefetcher.
 * NULL when there are too few or the store is not a plain file.
 */
static struct audit_prefetch *lite_prefetch(struct lite_store *s, const char *sql)
{
    struct stat sb;
    const char *where = strstr(sql, " WHERE 1");
    if (!where || stat(s->path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return NULL;
    size_t len = strlen("SELECT id FROM audit_log") + strlen(where) + 1;
    char *idsql = malloc(len);
    sqlite3_stmt *q = NULL;
    int64_t *ids = NULL;
    size_t n = 0, cap = 0;
    if (!idsql)
        return NULL;
    snprintf(idsql, len, "SELECT id FROM audit_log%s", where);
    if (sqlite3_prepare_v2(s->db, idsql, -1, &q, NULL) == SQLITE_OK) {
        while (n < LITE_PREFETCH_MAX_IDS && sqlite3_step(q) == SQLITE_ROW) {
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 1024;
                int64_t *v = realloc(ids, nc * sizeof *v);
                if (!v)
                    break;
                ids = v;
                cap = nc;
            }
            ids[n++] = sqlite3_column_int64(q, 0);
        }
    }
    sqlite3_finalize(q);
    free(idsql);
    return audit_prefetch_start(s->path, ids, n); /* takes ids, NULL or not */
}

static int lite_scan(struct audit_store *st, const struct audit_filter *f, audit_row_cb cb,
                     void *arg)
{
    struct lite_store *s = (struct lite_store *)st;
    static const struct audit_filter none = {0};
    sqlite3_stmt *q = NULL;
    struct audit_prefetch *pf = NULL;
    uint32_t *tools = NULL;
    int ret = -1;
    if (!f)
        f = &none;
    if (!s->loaded && lite_load(s) != 0)
        return -1;
    /* Names become integer literals, so SQLite can match the partial indexes (kind = 1). */
    size_t cap = 8192;
    char *sql = malloc(cap);
    if (!sql)
        return -1;
    int filtered = f->kind || f->subject || f->tenant || f->decision || f->since_ns ||
                   f->until_ns || f->tool_glob;
    if (f->from_seq && !f->instance) {
        snprintf(s->base.err, sizeof s->base.err,
                 "audit store %s: a scan from a seq needs an instance", s->path);
        goto out;
    }
    int with_record = !(f->flags & AUDIT_SCAN_NO_RECORD);
    /* Stats read only what the time index holds, so it answers without the table. */
    snprintf(sql, cap, "SELECT %s FROM audit_log WHERE 1",
             with_record ? ROW_COLS
                         : "id, t, kind, NULL, subj, tenant, tool, decision, layer, NULL, NULL");
    int any = add_name_cond(s, sql, cap, "kind", f->kind) &&
              add_name_cond(s, sql, cap, "subj", f->subject) &&
              add_name_cond(s, sql, cap, "tenant", f->tenant) &&
              add_name_cond(s, sql, cap, "decision", f->decision);
    if (any && f->instance) {
        uint32_t inst = audit_names_id(&s->names, f->instance);
        size_t used = strlen(sql);
        any = inst != 0;
        snprintf(sql + used, cap - used, " AND id >= %llu AND id <= %llu",
                 (unsigned long long)((uint64_t)inst << AUDIT_SEQ_BITS |
                                      (f->from_seq <= AUDIT_SEQ_MAX ? f->from_seq : AUDIT_SEQ_MAX)),
                 (unsigned long long)((uint64_t)inst << AUDIT_SEQ_BITS | AUDIT_SEQ_MAX));
    }
    if (any && f->tool_glob) {
        long n = audit_names_glob(&s->names, f->tool_glob, &tools);
        if (n < 0)
            goto out;
        any = n > 0;
        /* Up to a few hundred names go to the index as a list; more are filtered below. */
        if (n > 0 && n <= 500) {
            size_t used = strlen(sql);
            used += (size_t)snprintf(sql + used, cap - used, " AND tool IN (");
            for (long i = 0; i < n && used + 16 < cap; i++)
                used += (size_t)snprintf(sql + used, cap - used, "%s%u", i ? "," : "", tools[i]);
            snprintf(sql + used, cap - used, ")");
        }
    }
    if (!any) {
        ret = 0;
        goto out;
    }
    size_t used = strlen(sql);
    if (f->since_ns)
        used += (size_t)snprintf(sql + used, cap - used, " AND t >= %lld", (long long)f->since_ns);
    if (f->until_ns)
        used += (size_t)snprintf(sql + used, cap - used, " AND t < %lld", (long long)f->until_ns);
    /*
     * In (instance, seq) order, or else in time order, which the decision indexes give
     * without sorting (and which is the same order within one instance).
     */
    snprintf(sql + used, cap - used, "%s",
             !(f->flags & AUDIT_SCAN_ANY_ORDER)                                     ? " ORDER BY id"
             : f->kind && audit_names_id(&s->names, f->kind) == AUDIT_NAME_DECISION ? " ORDER BY t"
                                                                                    : "");
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK) {
        lite_fail(s, "scan");
        goto out;
    }
    /* A user's decisions: the ids come from the user index alone (kind = 1 is its part). */
    if (with_record && f->subject && f->kind &&
        audit_names_id(&s->names, f->kind) == AUDIT_NAME_DECISION)
        pf = lite_prefetch(s, sql);
    int rc;
    uint64_t prev_id = 0;
    char prev_hash[65] = "";
    size_t rows = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        uint64_t id = (uint64_t)sqlite3_column_int64(q, 0);
        audit_prefetch_progress(pf, ++rows);
        struct audit_row r;
        const char *known = !filtered && prev_id && prev_id + 1 == id ? prev_hash : NULL;
        if (lite_row(s, q, known, with_record, &r) != 0) {
            lite_fail(s, "scan");
            goto out;
        }
        if (with_record) {
            prev_id = id;
            memcpy(prev_hash, s->hashhex, 65);
        }
        if (f->tool_glob && (!r.tool || fnmatch(f->tool_glob, r.tool, 0) != 0))
            continue;
        int c = cb(&r, arg);
        if (c) {
            ret = c;
            goto out;
        }
    }
    if (rc != SQLITE_DONE) {
        lite_fail(s, "scan");
        goto out;
    }
    ret = 0;
out:
    audit_prefetch_stop(pf);
    sqlite3_finalize(q);
    free(tools);
    free(sql);
    return ret;
}

static uint64_t lite_size(struct audit_store *st)
{
    struct lite_store *s = (struct lite_store *)st;
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

static int lite_set_sync(struct audit_store *st, int full)
{
    return lite_exec((struct lite_store *)st,
                     full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
}

static void lite_close(struct audit_store *st)
{
    struct lite_store *s = (struct lite_store *)st;
    if (!s)
        return;
    /* First: the last connection to close (this one) folds what is left and removes the log. */
    audit_wal_folder_stop(s->folder);
    sqlite3_finalize(s->insert);
    sqlite3_finalize(s->insert_name);
    sqlite3_finalize(s->prev_hash);
    sqlite3_finalize(s->by_id);
    sqlite3_finalize(s->rollup_add);
    sqlite3_finalize(s->rollup_head);
    sqlite3_finalize(s->tx_begin);
    sqlite3_finalize(s->tx_commit);
    audit_rollup_free(&s->pending);
    free(s->heads);
    for (size_t i = 0; i < PREFIX_SLOTS; i++) {
        gw_buf_free(&s->readers[i].text);
        gw_buf_free(&s->writers[i].text);
    }
    sqlite3_close(s->db);
    audit_names_free(&s->names);
    audit_codec_free(s->codec);
    audit_dict_trainer_free(&s->trainer);
    gw_buf_free(&s->blob);
    gw_buf_free(&s->cutbuf);
    gw_buf_free(&s->text);
    free(s->path);
    free(s);
}

/* One integer a query gives (its first column), or `none` when it gives no row or NULL. */
static int64_t query_int64(struct lite_store *s, const char *sql, int64_t none)
{
    sqlite3_stmt *q = NULL;
    int64_t v = none;
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

/*
 * Calls cb with the last row id of each instance in the table, stepping down the ids (one
 * index lookup per instance, not a scan). 0, cb's non-zero value, or -1 on error.
 */
static int each_instance_head(struct lite_store *s,
                              int (*cb)(struct lite_store *s, uint64_t last, void *arg), void *arg)
{
    sqlite3_stmt *down = NULL;
    int ret = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT max(id) FROM audit_log WHERE id < ?1", -1, &down, NULL) !=
        SQLITE_OK)
        return lite_fail(s, "finding the instances");
    int64_t below = INT64_MAX;
    while (below > 0) {
        sqlite3_reset(down);
        sqlite3_bind_int64(down, 1, below);
        if (sqlite3_step(down) != SQLITE_ROW) {
            ret = lite_fail(s, "finding the instances");
            break;
        }
        if (sqlite3_column_type(down, 0) == SQLITE_NULL)
            break;
        uint64_t last = (uint64_t)sqlite3_column_int64(down, 0);
        if ((ret = cb(s, last, arg)) != 0)
            break;
        below = (int64_t)((last >> AUDIT_SEQ_BITS) << AUDIT_SEQ_BITS);
    }
    sqlite3_finalize(down);
    return ret;
}

struct heads_check {
    sqlite3_stmt *q;
    int64_t seen;
};

static int head_matches(struct lite_store *s, uint64_t last, void *arg)
{
    struct heads_check *c = arg;
    c->seen++;
    sqlite3_reset(c->q);
    sqlite3_bind_int64(c->q, 1, (sqlite3_int64)(last >> AUDIT_SEQ_BITS));
    int ok = sqlite3_step(c->q) == SQLITE_ROW && (uint64_t)sqlite3_column_int64(c->q, 0) == last;
    return ok ? 0 : 1;
}

static int head_insert(struct lite_store *s, uint64_t last, void *arg)
{
    sqlite3_stmt *q = arg;
    sqlite3_reset(q);
    sqlite3_bind_int64(q, 1, (sqlite3_int64)(last >> AUDIT_SEQ_BITS));
    sqlite3_bind_int64(q, 2, (sqlite3_int64)last);
    return sqlite3_step(q) == SQLITE_DONE ? 0 : lite_fail(s, "starting the stats counters");
}

/*
 * Whether the day counters account for every row: the last row of each instance in the
 * table (found by stepping down the ids, one lookup per instance) is the one the counters
 * last counted, and no instance is missing either way. 1 yes, 0 no, -1 on error.
 */
static int rollup_heads_current(struct lite_store *s)
{
    struct heads_check c = {0};
    int64_t kept = query_int64(s, "SELECT count(*) FROM audit_rollup_heads", -1);
    if (kept < 0)
        return 0; /* no counters (a store of an earlier version) */
    if (sqlite3_prepare_v2(s->db, "SELECT last_id FROM audit_rollup_heads WHERE inst = ?1", -1,
                           &c.q, NULL) != SQLITE_OK)
        return lite_fail(s, "reading the stats counters' heads");
    int rc = each_instance_head(s, head_matches, &c);
    sqlite3_finalize(c.q);
    if (rc < 0)
        return -1;
    return rc == 0 && c.seen == kept;
}

/*
 * Writer, at open: starts the day counters in a store without them (from the day after its
 * last decision, when it has any), or restarts them there when rows were appended that they
 * did not count (a version without counters wrote to the store). In one transaction.
 */
static int rollup_start(struct lite_store *s)
{
    char sql[256];
    if (lite_exec(s, "BEGIN IMMEDIATE"))
        return -1;
    int64_t from = query_int64(s, "SELECT value FROM audit_meta WHERE key = 'rollup_from'", -1);
    int current = from >= 0 ? rollup_heads_current(s) : 0;
    if (current < 0)
        goto fail;
    if (!current) {
        int64_t last = query_int64(s, "SELECT max(t) FROM audit_log WHERE kind = 1", -1);
        from = last < 0 ? 0 : (last / AUDIT_ROLLUP_DAY_NS + 1) * AUDIT_ROLLUP_DAY_NS;
        snprintf(sql, sizeof sql,
                 "DELETE FROM audit_rollup; DELETE FROM audit_rollup_heads;"
                 " INSERT OR REPLACE INTO audit_meta VALUES ('rollup_from', '%lld');",
                 (long long)from);
        if (lite_exec(s, rollup_schema) || lite_exec(s, sql))
            goto fail;
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO audit_rollup_heads (inst, last_id) VALUES (?1, ?2)", -1,
                               &q, NULL) != SQLITE_OK) {
            lite_fail(s, "starting the stats counters");
            goto fail;
        }
        int rc = each_instance_head(s, head_insert, q);
        sqlite3_finalize(q);
        if (rc != 0)
            goto fail;
    }
    if (lite_exec(s, "COMMIT"))
        goto fail;
    s->rollups = 1;
    return 0;
fail:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* Counts the decisions of [lo, hi) from the covering time index into counts. */
static int tally_rows(struct lite_store *s, int64_t lo, int64_t hi, uint64_t *counts, size_t n)
{
    char sql[256];
    sqlite3_stmt *q = NULL;
    if (lo >= hi)
        return 0;
    snprintf(sql, sizeof sql,
             "SELECT decision, layer, tool, subj FROM audit_log WHERE kind = %d AND t >= %lld"
             " AND t < %lld",
             AUDIT_NAME_DECISION, (long long)lo, (long long)hi);
    if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
        return lite_fail(s, "stats");
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        for (int d = 0; d < 4; d++) {
            sqlite3_int64 id = sqlite3_column_int64(q, d); /* NULL reads as 0: "-" */
            counts[(size_t)d * n + ((uint64_t)id < n ? (size_t)id : 0)]++;
        }
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? 0 : lite_fail(s, "stats");
}

/* Adds the day counters of days [first, end) into counts. */
static int tally_days(struct lite_store *s, int64_t first, int64_t end, uint64_t *counts, size_t n)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT dim, name, n FROM audit_rollup WHERE day >= ?1 AND day < ?2", -1,
                           &q, NULL) != SQLITE_OK)
        return lite_fail(s, "stats counters");
    sqlite3_bind_int64(q, 1, first);
    sqlite3_bind_int64(q, 2, end);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        sqlite3_int64 d = sqlite3_column_int64(q, 0), id = sqlite3_column_int64(q, 1);
        sqlite3_int64 c = sqlite3_column_int64(q, 2);
        if (d < 0 || d >= AUDIT_ROLLUP_DIMS || c < 0)
            continue; /* not a counter toolgate writes; the totals then differ from a scan */
        counts[(size_t)d * n + ((uint64_t)id < n ? (size_t)id : 0)] += (uint64_t)c;
    }
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? 0 : lite_fail(s, "stats counters");
}

/*
 * Stats over a time range, counted by id into arrays (no names looked up per row): the
 * whole days from the day counters when they are current, the rest (or everything, in a
 * store without them) from the covering time index. In one read transaction, so the parts
 * see the same rows. Other filters go through scan.
 */
static int lite_tally(struct audit_store *st, const struct audit_filter *f,
                      void (*cb)(void *arg, int dim, const char *name, uint64_t n), void *arg)
{
    struct lite_store *s = (struct lite_store *)st;
    if (!f || !f->kind || strcmp(f->kind, "decision") != 0 || f->instance || f->subject ||
        f->tenant || f->decision || f->tool_glob || f->from_seq)
        return 1;
    if (!s->loaded && lite_load(s) != 0)
        return -1;
    if (lite_exec(s, "BEGIN"))
        return -1;
    /* Names added since they were loaded: load them again inside this snapshot. */
    int ret = -1;
    uint64_t *counts = NULL;
    if (query_int64(s, "SELECT max(id) FROM audit_names", 0) > (int64_t)s->names.max_id &&
        lite_load(s) != 0)
        goto out;
    size_t n = (size_t)s->names.max_id + 1;
    if (!(counts = calloc(4 * n, sizeof *counts)))
        goto out;
    int64_t lo = f->since_ns, hi = f->until_ns ? f->until_ns : INT64_MAX, first = 0, end = 0;
    int64_t from =
        f->flags & AUDIT_SCAN_ROWS_ONLY
            ? -1
            : query_int64(s, "SELECT value FROM audit_meta WHERE key = 'rollup_from'", -1);
    int usable = from >= 0 ? rollup_heads_current(s) : 0;
    if (usable < 0)
        goto out;
    if (usable && audit_rollup_split(lo, f->until_ns, from, &first, &end)) {
        if (tally_rows(s, lo, first * AUDIT_ROLLUP_DAY_NS, counts, n) != 0 ||
            tally_days(s, first, end, counts, n) != 0 ||
            tally_rows(s, end * AUDIT_ROLLUP_DAY_NS, hi, counts, n) != 0)
            goto out;
    } else if (tally_rows(s, lo, hi, counts, n) != 0)
        goto out;
    for (int d = 0; d < 4; d++)
        for (size_t id = 0; id < n; id++) {
            uint64_t c = counts[(size_t)d * n + id];
            const char *name = id ? audit_names_name(&s->names, (uint32_t)id) : "-";
            if (c)
                cb(arg, d, name ? name : "\x01unknown name", c);
        }
    ret = 0;
out:
    sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    free(counts);
    return ret;
}

static const char *const dim_names[AUDIT_ROLLUP_DIMS] = {"decision", "layer", "tool", "user"};

/*
 * Compares one day's counters with what its rows gave: counted[dim * n + id], `used` of them
 * non-zero. Adds the counters compared to *compared.
 */
static int check_day(struct lite_store *s, sqlite3_stmt *q, int64_t day, const uint64_t *counted,
                     size_t n, size_t used, int64_t *compared, char *problem, size_t len)
{
    size_t rows = 0;
    int rc;
    sqlite3_reset(q);
    sqlite3_bind_int64(q, 1, day);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        sqlite3_int64 d = sqlite3_column_int64(q, 0), id = sqlite3_column_int64(q, 1);
        sqlite3_int64 c = sqlite3_column_int64(q, 2);
        int known = d >= 0 && d < AUDIT_ROLLUP_DIMS && id >= 0 && (uint64_t)id < n;
        if (!known || c <= 0 || counted[(size_t)d * n + (size_t)id] != (uint64_t)c) {
            snprintf(problem, len,
                     "the stats counter of day %lld (%s, name id %lld) does not match the "
                     "records (edited)",
                     (long long)day, d >= 0 && d < AUDIT_ROLLUP_DIMS ? dim_names[d] : "?",
                     (long long)id);
            return 1;
        }
        rows++;
    }
    if (rc != SQLITE_DONE)
        return lite_fail(s, "reading the stats counters");
    if (rows != used) {
        snprintf(problem, len,
                 "day %lld: the records give %zu stats counters, the store keeps %zu (edited)",
                 (long long)day, used, rows);
        return 1;
    }
    *compared += (int64_t)rows;
    return 0;
}

/*
 * verify: counts the decisions from rollup_from on again, day by day in time order (the
 * covering time index, into arrays by name id), and compares each day with its counters;
 * then that no counter is left for a day without records. Counters that are not current
 * are not used by stats and are not judged.
 */
static int lite_check_counters(struct audit_store *st, char *problem, size_t len)
{
    struct lite_store *s = (struct lite_store *)st;
    sqlite3_stmt *rows = NULL, *day_q = NULL;
    uint64_t *counted = NULL;
    int ret = -1;
    if (!s->loaded && lite_load(s) != 0)
        return -1;
    if (lite_exec(s, "BEGIN"))
        return -1;
    if (query_int64(s, "SELECT max(id) FROM audit_names", 0) > (int64_t)s->names.max_id &&
        lite_load(s) != 0)
        goto out;
    int64_t from = query_int64(s, "SELECT value FROM audit_meta WHERE key = 'rollup_from'", -1);
    int current = from >= 0 ? rollup_heads_current(s) : 0;
    if (current <= 0) {
        ret = current < 0 ? -1 : 0;
        goto out;
    }
    size_t n = (size_t)s->names.max_id + 1, used = 0;
    if (!(counted = calloc(AUDIT_ROLLUP_DIMS * n, sizeof *counted))) {
        snprintf(s->base.err, sizeof s->base.err, "out of memory");
        goto out;
    }
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT t, decision, layer, tool, subj FROM audit_log WHERE kind = %d AND t >= %lld"
             " ORDER BY t",
             AUDIT_NAME_DECISION, (long long)from);
    if (sqlite3_prepare_v2(s->db, sql, -1, &rows, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db, "SELECT dim, name, n FROM audit_rollup WHERE day = ?1", -1,
                           &day_q, NULL) != SQLITE_OK) {
        lite_fail(s, "checking the stats counters");
        goto out;
    }
    int64_t day = -1, compared = 0;
    int rc;
    while ((rc = sqlite3_step(rows)) == SQLITE_ROW) {
        int64_t d = sqlite3_column_int64(rows, 0) / AUDIT_ROLLUP_DAY_NS;
        if (d != day && used) {
            if ((ret = check_day(s, day_q, day, counted, n, used, &compared, problem, len)) != 0)
                goto out;
            ret = -1;
            memset(counted, 0, AUDIT_ROLLUP_DIMS * n * sizeof *counted);
            used = 0;
        }
        day = d;
        for (int k = 0; k < AUDIT_ROLLUP_DIMS; k++) {
            uint64_t id = (uint64_t)sqlite3_column_int64(rows, k + 1); /* NULL: 0, as written */
            uint64_t *c = &counted[(size_t)k * n + (id < n ? (size_t)id : 0)];
            used += *c == 0;
            (*c)++;
        }
    }
    if (rc != SQLITE_DONE) {
        lite_fail(s, "checking the stats counters");
        goto out;
    }
    if (used && (ret = check_day(s, day_q, day, counted, n, used, &compared, problem, len)) != 0)
        goto out;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM audit_rollup WHERE day >= %lld",
             (long long)(from / AUDIT_ROLLUP_DAY_NS));
    if (query_int64(s, sql, -1) != compared) {
        snprintf(problem, len,
                 "the store keeps stats counters for days without those records (edited)");
        ret = 1;
        goto out;
    }
    ret = 0;
out:
    sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    sqlite3_finalize(rows);
    sqlite3_finalize(day_q);
    free(counted);
    return ret;
}

static void lite_idle(struct audit_store *st)
{
    audit_wal_folder_idle(((struct lite_store *)st)->folder);
}

static const struct audit_store_ops lite_ops = {
    .idle = lite_idle,
    .check_counters = lite_check_counters,
    .tally = lite_tally,
    .set_sync = lite_set_sync,
    .begin = lite_begin,
    .append = lite_append,
    .commit = lite_commit,
    .rollback = lite_rollback,
    .head = lite_head,
    .scan = lite_scan,
    .size = lite_size,
    .close = lite_close,
};

/* Takes over db (already opened and set up by audit_sqlite_open_format). */
struct audit_store *audit_lite_adopt(sqlite3 *db, const char *path, int create, int writer,
                                     char *err, size_t errlen);

/*
 * zstd level of the record column. Records are small (a few hundred bytes) and compressed
 * against a trained dictionary, where the level hardly changes the size: on a generated store
 * of 20,000 calls, level 1 wrote 578 bytes a call and level 6 582, while level 6 cost the
 * writer about 18 us more CPU per record. The level is not part of the format: any level
 * reads back the same.
 */
#define LITE_ZSTD_LEVEL 1

/* `create`: a new file (the schema is written); `writer`: opened to append (counters kept). */
struct audit_store *audit_lite_adopt(sqlite3 *db, const char *path, int create, int writer,
                                     char *err, size_t errlen)
{
    struct lite_store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path)) || !(s->codec = audit_codec_new(LITE_ZSTD_LEVEL))) {
        if (s)
            free(s->path);
        free(s);
        sqlite3_close(db);
        snprintf(err, errlen, "out of memory opening the audit store");
        return NULL;
    }
    s->db = db;
    s->base.ops = &lite_ops;
    s->base.format = AUDIT_FORMAT_COMPACT;
    if (create) {
        if (lite_exec(s, "BEGIN IMMEDIATE") || lite_exec(s, lite_schema))
            goto fail;
        for (uint32_t i = 1; i <= AUDIT_NAME_FIXED; i++) {
            char sql[160];
            snprintf(sql, sizeof sql,
                     "INSERT OR IGNORE INTO audit_names (id, name) VALUES (%u, '%s')", i,
                     audit_fixed_names[i]);
            if (lite_exec(s, sql))
                goto fail;
        }
        if (lite_exec(s, "INSERT OR IGNORE INTO audit_meta VALUES ('format', 'compact-1');"
                         "COMMIT"))
            goto fail;
    }
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO audit_log (" ROW_COLS ") VALUES"
                           " (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                           -1, &s->insert, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO audit_names (id, name) VALUES (?1, ?2)", -1,
                           &s->insert_name, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT hash FROM audit_log WHERE id = ?1", -1, &s->prev_hash,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT " ROW_COLS " FROM audit_log WHERE id = ?1", -1, &s->by_id,
                           NULL) != SQLITE_OK) {
        lite_fail(s, "prepare (is this a toolgate audit store?)");
        goto fail;
    }
    if (lite_load(s) != 0)
        goto fail;
    if (writer &&
        (rollup_start(s) != 0 ||
         sqlite3_prepare_v2(db,
                            "INSERT INTO audit_rollup (day, dim, name, n) VALUES (?1, ?2, ?3, ?4)"
                            " ON CONFLICT (day, dim, name) DO UPDATE SET n = n + excluded.n",
                            -1, &s->rollup_add, NULL) != SQLITE_OK ||
         sqlite3_prepare_v2(db,
                            "INSERT INTO audit_rollup_heads (inst, last_id) VALUES (?1, ?2)"
                            " ON CONFLICT (inst) DO UPDATE SET last_id = excluded.last_id",
                            -1, &s->rollup_head, NULL) != SQLITE_OK)) {
        if (!s->base.err[0])
            lite_fail(s, "preparing the stats counters");
        goto fail;
    }
    if (writer) {
        char why[300];
        s->folder = audit_wal_folder_start(db, path, why, sizeof why);
        if (!s->folder)
            gw_log(GW_LOG_WARN, "audit_wal_folder", NULL, NULL,
                   "%s; the write-ahead log is folded back inside commits instead", why);
    }
    return &s->base;
fail:
    snprintf(err, errlen, "%s", s->base.err);
    lite_close(&s->base);
    return NULL;
}
