/*
 * limits_ledger: spend per (budget, key, period) in SQLite, so that a restart, even after
 * kill -9, loses no recorded spend.
 *
 * Reservations, settlements and refunds are UPSERTs that add to a row (WAL,
 * synchronous=NORMAL: a commit survives the death of the process; surviving a power cut needs
 * synchronous=FULL, which costs an fsync per commit). A reservation that was never settled
 * because the process died stays counted: the ledger errs on the side of the cap. Rows of
 * finished periods are kept for a year for inspection.
 *
 * On a worker, the changes made during one turn of its event loop are gathered into one
 * batch (limits_ledger_queue) and written at the start of the next turn as one transaction,
 * changes to the same row added together: a commit costs about as much as one call's UPSERT,
 * so one commit per turn instead of two per call. A reservation's call waits (GW_ASYNC) until
 * its batch is durable; a settlement does not wait. Without a loop (the CLI, tests) each
 * change is committed before the caller goes on.
 */
#include "layers/limits/limits-int.h"

#include "lib/buf.h"
#include "lib/log.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct lbatch;

struct limits_ledger {
    pthread_mutex_t mu; /* the connection, the statements and the open batches */
    sqlite3 *db;
    sqlite3_stmt *add, *begin, *commit, *rollback;
    struct lbatch *open; /* batches queued on a loop and not yet written */
};

/* A change of a batch: its names are offsets into the batch's text. */
struct lbatch_op {
    size_t budget, key;
    int64_t period, expires, delta;
};

struct lbatch_wait {
    void (*done)(void *arg, int ok);
    void *arg;
};

/*
 * What one thread's loop queued in one turn. Written by its idle handle's callback at the next
 * turn (the handle keeps the loop turning until then), or by limits_ledger_close, whichever
 * comes first; freed when the handle is closed.
 */
struct lbatch {
    uv_idle_t idle;
    /* NULL once written by limits_ledger_close; atomic, since the batch's thread reads it
     * without the ledger's lock to know whether the batch is still this ledger's */
    _Atomic(struct limits_ledger *) l;
    uv_loop_t *loop;
    struct lbatch_op *ops;
    size_t n_ops, cap_ops;
    struct lbatch_wait *waits;
    size_t n_waits, cap_waits;
    size_t n_unwaited; /* changes nobody waits for (settlements) */
    struct gw_buf text;
    int written_rc; /* what limits_ledger_close's write returned */
    struct lbatch *next;
};

static __thread struct lbatch *tl_batch;

static const char schema[] = "CREATE TABLE IF NOT EXISTS limits_spend("
                             " budget TEXT NOT NULL, key TEXT NOT NULL, period INTEGER NOT NULL,"
                             " expires INTEGER NOT NULL, amount INTEGER NOT NULL,"
                             " PRIMARY KEY(budget, key, period)) WITHOUT ROWID;";

static int write_ops(struct limits_ledger *l, const struct limits_ledger_op *ops, size_t n);
static int write_batch(struct limits_ledger *l, struct lbatch *b);

void limits_ledger_close(struct limits_ledger *l)
{
    if (!l)
        return;
    /* Batches whose loop has not turned again are written now; their callbacks still run. */
    pthread_mutex_lock(&l->mu);
    for (struct lbatch *b = l->open; b; b = b->next) {
        b->written_rc = write_batch(l, b);
        atomic_store(&b->l, NULL);
    }
    l->open = NULL;
    pthread_mutex_unlock(&l->mu);
    sqlite3_finalize(l->add);
    sqlite3_finalize(l->begin);
    sqlite3_finalize(l->commit);
    sqlite3_finalize(l->rollback);
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
    if (rc != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(l->db, "BEGIN IMMEDIATE;", -1, &l->begin, NULL)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(l->db, "COMMIT;", -1, &l->commit, NULL)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(l->db, "ROLLBACK;", -1, &l->rollback, NULL)) != SQLITE_OK)
        goto fail;
    return l;
fail:
    snprintf(why, why_len, "cannot open the ledger %s: %s", path,
             l->db ? sqlite3_errmsg(l->db) : sqlite3_errstr(rc));
    limits_ledger_close(l);
    return NULL;
}

static int step_add(struct limits_ledger *l, const struct limits_ledger_op *op)
{
    sqlite3_reset(l->add);
    sqlite3_bind_text(l->add, 1, op->budget, -1, SQLITE_STATIC);
    sqlite3_bind_text(l->add, 2, op->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(l->add, 3, op->period);
    sqlite3_bind_int64(l->add, 4, op->expires);
    sqlite3_bind_int64(l->add, 5, op->delta);
    int rc = sqlite3_step(l->add);
    sqlite3_reset(l->add);
    sqlite3_clear_bindings(l->add);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int step_one(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static uint64_t op_hash(const struct limits_ledger_op *op)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = op->budget; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (const char *p = op->key; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return (h ^ (uint64_t)op->period) * 1099511628211ULL;
}

static int same_row(const struct limits_ledger_op *a, const struct limits_ledger_op *b)
{
    return a->period == b->period && strcmp(a->budget, b->budget) == 0 &&
           strcmp(a->key, b->key) == 0;
}

/*
 * Changes to the same row added together, in the order rows first appear (merged[] has room
 * for n). Returns how many rows, or 0 when out of memory (the caller writes ops as they are).
 */
static size_t merge_ops(const struct limits_ledger_op *ops, size_t n,
                        struct limits_ledger_op *merged)
{
    size_t slots = 16;
    while (slots < 2 * n)
        slots *= 2;
    size_t *slot = malloc(slots * sizeof *slot); /* index in merged + 1; 0 = empty */
    if (!slot)
        return 0;
    memset(slot, 0, slots * sizeof *slot);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = (size_t)op_hash(&ops[i]) & (slots - 1);
        while (slot[j] && !same_row(&merged[slot[j] - 1], &ops[i]))
            j = (j + 1) & (slots - 1);
        if (!slot[j]) {
            merged[m] = ops[i];
            slot[j] = ++m;
            continue;
        }
        struct limits_ledger_op *o = &merged[slot[j] - 1];
        o->delta += ops[i].delta;
        if (ops[i].expires > o->expires)
            o->expires = ops[i].expires;
    }
    free(slot);
    return m;
}

/* Called with l->mu held. */
static int write_ops(struct limits_ledger *l, const struct limits_ledger_op *ops, size_t n)
{
    if (n == 0)
        return 0;
    if (n == 1)
        return step_add(l, &ops[0]); /* autocommit: one row, one commit */
    struct limits_ledger_op *merged = malloc(n * sizeof *merged);
    size_t m = merged ? merge_ops(ops, n, merged) : 0;
    const struct limits_ledger_op *w = m ? merged : ops;
    size_t wn = m ? m : n;
    int rc = step_one(l->begin);
    for (size_t i = 0; rc == 0 && i < wn; i++)
        if (w[i].delta != 0) /* a reservation and its refund in one batch leave nothing */
            rc = step_add(l, &w[i]);
    if (rc == 0)
        rc = step_one(l->commit);
    if (rc != 0 && !sqlite3_get_autocommit(l->db))
        step_one(l->rollback);
    free(merged);
    return rc;
}

int limits_ledger_add_all(struct limits_ledger *l, const struct limits_ledger_op *ops, size_t n)
{
    pthread_mutex_lock(&l->mu);
    int rc = write_ops(l, ops, n);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

/* ---- batches: one transaction per turn of a worker's loop ---- */

/* Called with l->mu held. */
static int write_batch(struct limits_ledger *l, struct lbatch *b)
{
    if (b->n_ops == 0)
        return 0;
    struct limits_ledger_op *ops = malloc(b->n_ops * sizeof *ops);
    if (!ops)
        return -1;
    const char *text = (const char *)b->text.data;
    for (size_t i = 0; i < b->n_ops; i++)
        ops[i] = (struct limits_ledger_op){text + b->ops[i].budget, text + b->ops[i].key,
                                           b->ops[i].period, b->ops[i].expires, b->ops[i].delta};
    int rc = write_ops(l, ops, b->n_ops);
    free(ops);
    return rc;
}

static void batch_closed(uv_handle_t *h)
{
    struct lbatch *b = (struct lbatch *)h;
    free(b->ops);
    free(b->waits);
    gw_buf_free(&b->text);
    free(b);
}

static void batch_run(uv_idle_t *h)
{
    struct lbatch *b = (struct lbatch *)h;
    uv_idle_stop(h);
    if (tl_batch == b)
        tl_batch = NULL; /* what the callbacks below queue goes into the next batch */
    int rc = b->written_rc;
    struct limits_ledger *l = atomic_load(&b->l);
    if (l) {
        pthread_mutex_lock(&l->mu);
        rc = write_batch(l, b);
        struct lbatch **pp = &l->open;
        while (*pp && *pp != b)
            pp = &(*pp)->next;
        if (*pp)
            *pp = b->next;
        pthread_mutex_unlock(&l->mu);
    }
    if (rc != 0)
        gw_log(GW_LOG_ERROR, "limits_ledger", NULL, NULL,
               "a batch of %zu ledger changes could not be written: %zu waiting call(s) are "
               "refused, and %zu settlement change(s) are not recorded",
               b->n_ops, b->n_waits, b->n_unwaited);
    for (size_t i = 0; i < b->n_waits; i++)
        b->waits[i].done(b->waits[i].arg, rc == 0);
    uv_close((uv_handle_t *)h, batch_closed);
}

static struct lbatch *batch_for(struct limits_ledger *l, uv_loop_t *loop)
{
    struct lbatch *b = tl_batch;
    if (b && b->loop == loop && atomic_load(&b->l) == l)
        return b;
    if (!(b = calloc(1, sizeof *b)))
        return NULL;
    if (uv_idle_init(loop, &b->idle) != 0) {
        free(b);
        return NULL;
    }
    atomic_store(&b->l, l);
    b->loop = loop;
    uv_idle_start(&b->idle, batch_run);
    pthread_mutex_lock(&l->mu);
    b->next = l->open;
    l->open = b;
    pthread_mutex_unlock(&l->mu);
    tl_batch = b;
    return b;
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 16;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * size);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

int limits_ledger_queue(struct limits_ledger *l, void *loop, const struct limits_ledger_op *ops,
                        size_t n, void (*done)(void *arg, int ok), void *arg)
{
    if (!loop)
        return -1;
    struct lbatch *b = batch_for(l, loop);
    if (!b)
        return -1;
    pthread_mutex_lock(&l->mu);
    int rc = -1;
    if (!atomic_load(&b->l) ||
        grow((void **)&b->ops, &b->cap_ops, b->n_ops + n, sizeof *b->ops) != 0 ||
        (done && grow((void **)&b->waits, &b->cap_waits, b->n_waits + 1, sizeof *b->waits) != 0))
        goto out;
    size_t n_ops = b->n_ops, text_len = b->text.len;
    for (size_t i = 0; i < n; i++) {
        struct lbatch_op *o = &b->ops[n_ops + i];
        *o = (struct lbatch_op){
            .period = ops[i].period, .expires = ops[i].expires, .delta = ops[i].delta};
        o->budget = b->text.len;
        if (gw_buf_append(&b->text, ops[i].budget, strlen(ops[i].budget) + 1) != 0)
            goto undo;
        o->key = b->text.len;
        if (gw_buf_append(&b->text, ops[i].key, strlen(ops[i].key) + 1) != 0)
            goto undo;
    }
    b->n_ops += n;
    if (done)
        b->waits[b->n_waits++] = (struct lbatch_wait){done, arg};
    else
        b->n_unwaited += n;
    rc = 0;
    goto out;
undo:
    b->text.len = text_len;
out:
    pthread_mutex_unlock(&l->mu);
    return rc;
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
