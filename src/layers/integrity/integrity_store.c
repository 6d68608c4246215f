/*
 * The pin store: one row per backend, kind and name (what was approved, what was seen last,
 * and the state between them), one per backend and kind for the whole set, and the events
 * that wait for a running toolgate to put them on its audit chain. Every change runs in one
 * transaction (SQLite BEGIN IMMEDIATE, or a PostgreSQL advisory lock), so the first list of
 * a backend is pinned by exactly one writer among every worker and instance sharing the
 * store, and a pin never changes without its event.
 *
 * States: `approved` (the definition seen last is the approved one, or nothing was seen yet
 * of a name pinned by a manifest), `pending` (it differs: quarantined until an operator
 * decides), `rejected` (the operator refused what was seen; it stays hidden).
 */
#include "layers/integrity/integrity.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct integrity_store {
    struct idb *db;
    pthread_mutex_t mu;
};

struct integrity_store *integrity_store_open(const char *url, char *err, size_t errlen)
{
    struct idb *db = idb_open(url, err, errlen);
    if (!db)
        return NULL;
    struct integrity_store *s = calloc(1, sizeof *s);
    if (!s) {
        idb_close(db);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->db = db;
    pthread_mutex_init(&s->mu, NULL);
    return s;
}

void integrity_store_close(struct integrity_store *s)
{
    if (!s)
        return;
    idb_close(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const char *integrity_store_error(const struct integrity_store *s)
{
    return idb_error(s->db);
}

static void num(char out[24], int64_t v)
{
    snprintf(out, 24, "%lld", (long long)v);
}

/* Queues one event record in the store (inside the caller's transaction). */
static int add_event(struct integrity_store *s, const char *event, const char *backend,
                     const char *kind, const char *name, const char *hash, const char *previous,
                     const char *detail, const char *by, int64_t now_ms)
{
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kind", "integrity", "event",
                            event, "backend", backend, "list", kind, "name", name, "by",
                            by ? by : "toolgate", "detail", detail ? detail : "");
    if (!rec)
        return -1;
    if (hash)
        json_object_set_new(rec, "hash", json_string(hash));
    if (previous)
        json_object_set_new(rec, "previous_hash", json_string(previous));
    char *text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(rec);
    if (!text)
        return -1;
    char at[24];
    num(at, now_ms);
    const char *v[] = {at, text};
    int rc = idb_exec(s->db, "INSERT INTO integrity_events (at, record) VALUES (?1, ?2)", v, 2);
    free(text);
    return rc < 0 ? -1 : 0;
}

/* ---- reading one pin ---- */

static int copy_pin(void *arg, int n, const char *const *c)
{
    struct integrity_pin *p = arg;
    if (n < 5)
        return 1;
    snprintf(p->state, sizeof p->state, "%s", c[0] ? c[0] : "");
    snprintf(p->reason, sizeof p->reason, "%s", c[1] ? c[1] : "");
    snprintf(p->approved_hash, sizeof p->approved_hash, "%s", c[2] ? c[2] : "");
    snprintf(p->seen_hash, sizeof p->seen_hash, "%s", c[3] ? c[3] : "");
    snprintf(p->approved_body, sizeof p->approved_body, "%s", c[4] ? c[4] : "");
    return 1;
}

static int get_locked(struct integrity_store *s, const char *backend, const char *kind,
                      const char *name, struct integrity_pin *out)
{
    memset(out, 0, sizeof *out);
    const char *v[] = {backend, kind, name};
    return idb_query(s->db,
                     "SELECT state, reason, approved_hash, seen_hash, approved_body FROM "
                     "integrity_pins WHERE backend=?1 AND kind=?2 AND name=?3",
                     v, 3, copy_pin, out);
}

int integrity_store_get(struct integrity_store *s, const char *backend, const char *kind,
                        const char *name, struct integrity_pin *out)
{
    pthread_mutex_lock(&s->mu);
    int rc = get_locked(s, backend, kind, name, out);
    pthread_mutex_unlock(&s->mu);
    return rc < 0 ? -1 : rc > 0;
}

int integrity_store_has_set(struct integrity_store *s, const char *backend, const char *kind)
{
    const char *v[] = {backend, kind};
    pthread_mutex_lock(&s->mu);
    int rc = idb_query(s->db, "SELECT 1 FROM integrity_sets WHERE backend=?1 AND kind=?2", v, 2,
                       NULL, NULL);
    pthread_mutex_unlock(&s->mu);
    return rc < 0 ? -1 : rc > 0;
}

/* ---- comparing a list ---- */

struct set_row {
    int found;
    char set_hash[65];
    char body_set_hash[65];
    int64_t first_until;
    int complete;
};

static int copy_set(void *arg, int n, const char *const *c)
{
    struct set_row *r = arg;
    if (n < 4)
        return 1;
    r->found = 1;
    snprintf(r->set_hash, sizeof r->set_hash, "%s", c[0] ? c[0] : "");
    snprintf(r->body_set_hash, sizeof r->body_set_hash, "%s", c[1] ? c[1] : "");
    r->first_until = c[2] ? strtoll(c[2], NULL, 10) : 0;
    r->complete = c[3] ? atoi(c[3]) : 1;
    return 1;
}

struct rename_search {
    const struct integrity_seen *seen;
    size_t n;
    char *out;
    size_t outlen;
    int found;
};

static int rename_row(void *arg, int n, const char *const *c)
{
    struct rename_search *r = arg;
    if (n < 1 || !c[0])
        return 0;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->seen[i].name, c[0]) == 0)
            return 0; /* still listed: not what this entry was renamed from */
    snprintf(r->out, r->outlen, "%s", c[0]);
    r->found = 1;
    return 1;
}

/* An approved name absent from the list whose definition, name aside, is this one's. */
static int renamed_from(struct integrity_store *s, const struct integrity_list *l,
                        const struct integrity_seen *seen, size_t n, size_t self, char *out,
                        size_t outlen)
{
    struct rename_search r = {seen, n, out, outlen, 0};
    const char *v[] = {l->backend, l->kind, seen[self].body};
    if (idb_query(s->db,
                  "SELECT name FROM integrity_pins WHERE backend=?1 AND kind=?2 AND "
                  "approved_body=?3 AND state='approved' ORDER BY name",
                  v, 3, rename_row, &r) < 0)
        return -1;
    return r.found;
}

static int compare_one(struct integrity_store *s, const struct integrity_list *l,
                       struct integrity_seen *seen, size_t n, size_t i, int first, const char *now)
{
    struct integrity_seen *e = &seen[i];
    struct integrity_pin pin;
    int found = get_locked(s, l->backend, l->kind, e->name, &pin);
    if (found < 0)
        return -1;
    e->visible = 0;
    e->event[0] = e->detail[0] = e->previous[0] = 0;
    if (!found) {
        const char *state = "pending";
        if (e->finding[0]) {
            snprintf(e->event, sizeof e->event, "poison");
            snprintf(e->detail, sizeof e->detail, "%s", e->finding);
        } else if (first) {
            state = "approved";
            e->visible = 1;
            snprintf(e->event, sizeof e->event, "pinned");
        } else if (!l->paged && renamed_from(s, l, seen, n, i, e->detail, sizeof e->detail) > 0) {
            snprintf(e->event, sizeof e->event, "rename");
        } else {
            snprintf(e->event, sizeof e->event, "new");
        }
        char reason[200];
        snprintf(reason, sizeof reason, "%s%s%s", e->event, e->detail[0] ? ":" : "", e->detail);
        int ok = strcmp(state, "approved") == 0;
        const char *v[] = {l->backend,
                           l->kind,
                           e->name,
                           state,
                           reason,
                           ok ? e->hash : NULL,
                           ok ? e->body : NULL,
                           ok ? e->def : NULL,
                           e->hash,
                           e->body,
                           e->def,
                           now};
        return idb_exec(s->db,
                        "INSERT INTO integrity_pins (backend, kind, name, state, reason, "
                        "approved_hash, approved_body, approved_def, seen_hash, seen_body, "
                        "seen_def, updated) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
                        v, 12) < 0
                   ? -1
                   : 0;
    }
    snprintf(e->previous, sizeof e->previous, "%s", pin.approved_hash);
    if (pin.approved_hash[0] && strcmp(pin.approved_hash, e->hash) == 0) {
        e->visible = 1;
        if (strcmp(pin.state, "approved") == 0 && strcmp(pin.seen_hash, e->hash) == 0)
            return 0;
        /* First sight of a manifest pin, or back to the approved definition after a drift. */
        snprintf(e->event, sizeof e->event, "%s", pin.seen_hash[0] ? "reverted" : "matched");
        const char *v[] = {l->backend, l->kind, e->name, e->body, e->def, now};
        return idb_exec(s->db,
                        "UPDATE integrity_pins SET state='approved', reason=CASE WHEN "
                        "seen_hash IS NULL THEN reason ELSE 'reverted' END, approved_body=?4, "
                        "approved_def=?5, seen_hash=approved_hash, seen_body=?4, seen_def=?5, "
                        "updated=?6 WHERE backend=?1 AND kind=?2 AND name=?3",
                        v, 6) < 0
                   ? -1
                   : 0;
    }
    if (strcmp(pin.seen_hash, e->hash) == 0)
        return 0; /* still the definition awaiting (or refused) a decision */
    snprintf(e->event, sizeof e->event, "%s", pin.approved_hash[0] ? "drift" : "new");
    if (e->finding[0])
        snprintf(e->detail, sizeof e->detail, "poison:%s", e->finding);
    char reason[200];
    snprintf(reason, sizeof reason, "%s%s%s", e->event, e->detail[0] ? ":" : "", e->detail);
    const char *v[] = {l->backend, l->kind, e->name, e->hash, e->body, e->def, reason, now};
    return idb_exec(s->db,
                    "UPDATE integrity_pins SET state='pending', seen_hash=?4, seen_body=?5, "
                    "seen_def=?6, reason=?7, updated=?8 WHERE backend=?1 AND kind=?2 AND name=?3",
                    v, 8) < 0
               ? -1
               : 0;
}

/* Records the set: the first list creates it, a later complete list updates its hashes. */
static int compare_set(struct integrity_store *s, const struct integrity_list *l, int *first,
                       const char *now)
{
    struct set_row row = {0};
    const char *k[] = {l->backend, l->kind};
    if (idb_query(s->db,
                  "SELECT set_hash, body_set_hash, first_until, complete FROM integrity_sets "
                  "WHERE backend=?1 AND kind=?2",
                  k, 2, copy_set, &row) < 0)
        return -1;
    char until[24], complete[2] = {l->more ? '0' : '1', 0};
    num(until, l->now_ms + (int64_t)l->first_window_ms);
    if (!row.found) {
        *first = 1;
        const char *v[] = {l->backend, l->kind,  l->set_hash, l->body_set_hash,
                           until,      complete, now};
        return idb_exec(s->db,
                        "INSERT INTO integrity_sets (backend, kind, set_hash, body_set_hash, "
                        "first_until, complete, updated) VALUES (?1,?2,?3,?4,?5,?6,?7)",
                        v, 7) < 0
                   ? -1
                   : 0;
    }
    /* A later page of the first listing, within its window, is still the first listing. */
    *first = !row.complete && l->paged && l->now_ms < row.first_until;
    if (*first && !l->more) {
        const char *v[] = {l->backend, l->kind, now};
        if (idb_exec(s->db,
                     "UPDATE integrity_sets SET complete=1, updated=?3 WHERE backend=?1 AND "
                     "kind=?2",
                     v, 3) < 0)
            return -1;
    }
    if (l->paged || l->more || strcmp(row.set_hash, l->set_hash) == 0)
        return 0;
    /* The whole set changed: one event, saying when nothing but names did (renames). */
    int names_only = strcmp(row.body_set_hash, l->body_set_hash) == 0;
    if (add_event(s, "set", l->backend, l->kind, "", l->set_hash, row.set_hash,
                  names_only ? "renamed only: the same definitions under other names"
                             : "definitions changed, added or removed",
                  NULL, l->now_ms) != 0)
        return -1;
    const char *v[] = {l->backend, l->kind, l->set_hash, l->body_set_hash, now};
    return idb_exec(s->db,
                    "UPDATE integrity_sets SET set_hash=?3, body_set_hash=?4, complete=1, "
                    "updated=?5 WHERE backend=?1 AND kind=?2",
                    v, 5) < 0
               ? -1
               : 0;
}

int integrity_store_compare(struct integrity_store *s, const struct integrity_list *l,
                            struct integrity_seen *seen, size_t n)
{
    char now[24];
    num(now, l->now_ms);
    pthread_mutex_lock(&s->mu);
    int rc = idb_begin(s->db), first = 0;
    if (rc == 0)
        rc = compare_set(s, l, &first, now);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = compare_one(s, l, seen, n, i, first, now);
        struct integrity_seen *e = &seen[i];
        if (rc == 0 && e->event[0])
            rc = add_event(s, e->event, l->backend, l->kind, e->name, e->hash,
                           e->previous[0] ? e->previous : NULL, e->detail, NULL, l->now_ms);
    }
    if (rc == 0)
        rc = idb_commit(s->db);
    else
        idb_rollback(s->db);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- operator decisions ---- */

struct decide_row {
    int found;
    char state[16];
    char seen_hash[65];
    char approved_hash[65];
};

static int copy_decide(void *arg, int n, const char *const *c)
{
    struct decide_row *r = arg;
    if (n < 3)
        return 1;
    r->found = 1;
    snprintf(r->state, sizeof r->state, "%s", c[0] ? c[0] : "");
    snprintf(r->seen_hash, sizeof r->seen_hash, "%s", c[1] ? c[1] : "");
    snprintf(r->approved_hash, sizeof r->approved_hash, "%s", c[2] ? c[2] : "");
    return 1;
}

int integrity_store_decide(struct integrity_store *s, const char *backend, const char *kind,
                           const char *name, const char *hash_prefix, int approve, const char *by,
                           int64_t now_ms)
{
    char now[24];
    num(now, now_ms);
    struct decide_row row = {0};
    const char *k[] = {backend, kind, name};
    pthread_mutex_lock(&s->mu);
    int rc = idb_begin(s->db);
    if (rc == 0 && idb_query(s->db,
                             "SELECT state, seen_hash, approved_hash FROM integrity_pins WHERE "
                             "backend=?1 AND kind=?2 AND name=?3",
                             k, 3, copy_decide, &row) < 0)
        rc = -1;
    int outcome = rc;
    if (rc == 0) {
        int awaiting =
            strcmp(row.state, "pending") == 0 || (approve && strcmp(row.state, "rejected") == 0);
        if (!row.found || !awaiting || !row.seen_hash[0])
            outcome = INTEGRITY_DECIDE_NOTHING;
        else if (hash_prefix && (strlen(hash_prefix) < 8 ||
                                 strncmp(row.seen_hash, hash_prefix, strlen(hash_prefix)) != 0))
            outcome = INTEGRITY_DECIDE_STALE;
        else
            outcome = INTEGRITY_DECIDE_DONE;
    }
    if (outcome == INTEGRITY_DECIDE_DONE) {
        const char *v[] = {backend, kind, name, now};
        rc = idb_exec(s->db,
                      approve ? "UPDATE integrity_pins SET state='approved', reason='approved', "
                                "approved_hash=seen_hash, approved_body=seen_body, "
                                "approved_def=seen_def, updated=?4 WHERE backend=?1 AND kind=?2 "
                                "AND name=?3"
                              : "UPDATE integrity_pins SET state='rejected', reason='rejected', "
                                "updated=?4 WHERE backend=?1 AND kind=?2 AND name=?3",
                      v, 4) == 1
                 ? 0
                 : -1;
        if (rc == 0)
            rc = add_event(s, approve ? "approve" : "reject", backend, kind, name, row.seen_hash,
                           row.approved_hash[0] ? row.approved_hash : NULL, "", by, now_ms);
        outcome = rc == 0 ? INTEGRITY_DECIDE_DONE : -1;
    }
    if (outcome >= 0 && rc == 0)
        rc = idb_commit(s->db);
    else
        idb_rollback(s->db);
    pthread_mutex_unlock(&s->mu);
    return rc != 0 ? -1 : outcome;
}

/* ---- listing ---- */

struct rows_ctx {
    integrity_row_fn fn;
    void *arg;
};

static int each_row(void *arg, int n, const char *const *c)
{
    struct rows_ctx *rc = arg;
    if (n < 9)
        return 1;
    struct integrity_row r = {
        c[0] ? c[0] : "",
        c[1] ? c[1] : "",
        c[2] ? c[2] : "",
        c[3] ? c[3] : "",
        c[4] ? c[4] : "",
        c[5],
        c[6],
        c[7],
        c[8],
    };
    rc->fn(rc->arg, &r);
    return 0;
}

int integrity_store_rows(struct integrity_store *s, const char *backend, const char *state,
                         integrity_row_fn fn, void *arg)
{
    struct rows_ctx ctx = {fn, arg};
    const char *v[] = {backend ? backend : "", state ? state : ""};
    pthread_mutex_lock(&s->mu);
    int rc = idb_query(s->db,
                       "SELECT backend, kind, name, state, reason, approved_hash, seen_hash, "
                       "approved_def, seen_def FROM integrity_pins WHERE (?1='' OR backend=?1) "
                       "AND (?2='' OR state=?2) ORDER BY backend, kind, name",
                       v, 2, each_row, &ctx);
    pthread_mutex_unlock(&s->mu);
    return rc < 0 ? -1 : 0;
}

/* ---- events for the audit chain ---- */

struct drain_ctx {
    int64_t ids[256];
    json_t *recs[256];
    size_t n;
};

static int take_event(void *arg, int n, const char *const *c)
{
    struct drain_ctx *d = arg;
    if (n < 2 || !c[0] || !c[1] || d->n >= 256)
        return 1;
    json_t *rec = json_loads(c[1], 0, NULL);
    d->ids[d->n] = strtoll(c[0], NULL, 10);
    d->recs[d->n++] = rec; /* NULL: unreadable, marked so it does not block the rest */
    return 0;
}

int integrity_store_drain(struct integrity_store *s, int (*submit)(json_t *rec))
{
    struct drain_ctx d = {.n = 0};
    pthread_mutex_lock(&s->mu);
    int rc = idb_begin(s->db), taken = 0;
    if (rc == 0 && idb_query(s->db,
                             "SELECT id, record FROM integrity_events WHERE audited=0 ORDER BY "
                             "id LIMIT 256",
                             NULL, 0, take_event, &d) < 0)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < d.n; i++) {
        /* A queue that is full now takes the rest on the next round. */
        if (d.recs[i] && submit(json_incref(d.recs[i])) != 0)
            break;
        char id[24];
        num(id, d.ids[i]);
        const char *v[] = {id};
        if (idb_exec(s->db, "UPDATE integrity_events SET audited=1 WHERE id=?1", v, 1) < 0)
            rc = -1;
        else
            taken++;
    }
    for (size_t i = 0; i < d.n; i++)
        json_decref(d.recs[i]);
    if (rc == 0)
        rc = idb_commit(s->db);
    else
        idb_rollback(s->db);
    pthread_mutex_unlock(&s->mu);
    return rc == 0 ? taken : -1;
}

/* ---- manifests ---- */

struct meta_ctx {
    char value[80];
    int found;
};

static int copy_meta(void *arg, int n, const char *const *c)
{
    struct meta_ctx *m = arg;
    if (n >= 1 && c[0]) {
        snprintf(m->value, sizeof m->value, "%s", c[0]);
        m->found = 1;
    }
    return 1;
}

int integrity_store_apply_manifest(struct integrity_store *s, const json_t *manifest,
                                   const char *digest, int64_t now_ms)
{
    char now[24], until[24];
    num(now, now_ms);
    num(until, now_ms);
    struct meta_ctx meta = {{0}, 0};
    pthread_mutex_lock(&s->mu);
    int rc = idb_begin(s->db), applied = 0;
    const char *mk[] = {"manifest"};
    if (rc == 0 && idb_query(s->db, "SELECT value FROM integrity_meta WHERE key=?1", mk, 1,
                             copy_meta, &meta) < 0)
        rc = -1;
    /* The same manifest again (a restart) leaves the decisions taken since then alone. */
    int same = rc == 0 && meta.found && strcmp(meta.value, digest) == 0;
    const json_t *pins = json_object_get(manifest, "pins");
    for (size_t i = 0; rc == 0 && !same && i < json_array_size(pins); i++) {
        const json_t *p = json_array_get(pins, i);
        const char *backend = json_string_value(json_object_get(p, "backend"));
        const char *kind = json_string_value(json_object_get(p, "kind"));
        const char *name = json_string_value(json_object_get(p, "name"));
        const char *hash = json_string_value(json_object_get(p, "hash"));
        /* The manifest is the whole truth for the backends it names: every list is pinned. */
        for (size_t k = 0; rc == 0 && k < INTEGRITY_N_KINDS; k++) {
            const char *sv[] = {backend, integrity_kinds[k].kind, until};
            rc = idb_exec(s->db,
                          "INSERT INTO integrity_sets (backend, kind, set_hash, body_set_hash, "
                          "first_until, complete, updated) VALUES (?1,?2,'','',?3,1,?3) ON "
                          "CONFLICT (backend, kind) DO UPDATE SET complete=1, first_until=?3",
                          sv, 3) < 0
                     ? -1
                     : 0;
        }
        const char *v[] = {backend, kind, name, hash, now};
        if (rc == 0)
            rc = idb_exec(s->db,
                          "INSERT INTO integrity_pins (backend, kind, name, state, reason, "
                          "approved_hash, updated) VALUES (?1,?2,?3,'approved','manifest',?4,?5) "
                          "ON CONFLICT (backend, kind, name) DO UPDATE SET approved_hash=?4, "
                          "approved_body=NULL, approved_def=NULL, reason='manifest', "
                          "state=CASE WHEN integrity_pins.seen_hash IS NULL OR "
                          "integrity_pins.seen_hash=?4 THEN 'approved' ELSE 'pending' END, "
                          "updated=?5",
                          v, 5) < 0
                     ? -1
                     : 0;
        if (rc == 0)
            rc = add_event(s, "manifest", backend, kind, name, hash, NULL, "", "manifest", now_ms);
        applied++;
    }
    const char *mv[] = {"manifest", digest};
    if (rc == 0 && !same &&
        idb_exec(s->db,
                 "INSERT INTO integrity_meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO "
                 "UPDATE SET value=?2",
                 mv, 2) < 0)
        rc = -1;
    if (rc == 0)
        rc = idb_commit(s->db);
    else
        idb_rollback(s->db);
    pthread_mutex_unlock(&s->mu);
    return rc == 0 ? applied : -1;
}
