/*
 * safety_prescan: one vectorscan pass over all the strings of a message instead of one per
 * string.
 *
 * A vectorscan call costs about as much to set up as to scan a few hundred bytes, and a
 * message is mostly short strings (member names, ids, dates, names): per string, the set-up
 * is most of the prefilter's cost. Here the normalized strings are joined with
 * SAFETY_JOIN_SEP between them and scanned once with the database compiled without
 * HS_FLAG_SINGLEMATCH (db_joined); each hit is mapped back to its string by its end offset,
 * and the smallest end per rule and string is what a pass over that string alone would have
 * given the confirmers. db_joined exists only when every expression is proven unable to
 * match the separator (safety_expr_joinable), so no hit spans two strings.
 *
 * The confirmers, validators and context rules then run per string exactly as before, on
 * the same normalized text (taken from the joined buffer, bounded by the string's length so
 * no lookbehind or context window sees a neighbour).
 */
#include "layers/safety/safety-int.h"

#include <stdlib.h>
#include <string.h>

/* Hits kept before the joined pass gives up (long digit runs hit at every byte; each
 * string's hits collapse to one per rule, but only while they arrive in order). */
#define PRESCAN_MAX_RAW_HITS 65536

void safety_prescan_init(struct safety_prescan *p, const struct safety_config *sc, size_t budget)
{
    memset(p, 0, sizeof *p);
    p->sc = sc;
    p->budget = budget;
    if (!sc || !sc->db_joined)
        p->failed = 1;
}

static int joined_reserve(struct safety_prescan *p, size_t more)
{
    if (more > SIZE_MAX / 2 - p->jlen)
        return -1;
    if (p->jlen + more <= p->jcap)
        return 0;
    size_t cap = p->jcap ? p->jcap : 1024;
    while (cap < p->jlen + more)
        cap *= 2;
    char *j = realloc(p->joined, cap);
    if (!j)
        return -1;
    p->joined = j;
    p->jcap = cap;
    return 0;
}

void safety_prescan_add(struct safety_prescan *p, const char *s, size_t len, const void *number)
{
    char *t = NULL;
    size_t tlen = 0;
    uint32_t *map = NULL;
    if (p->failed || p->ready || len == 0)
        return;
    /* Past the budget the ordinary path runs (and reports the bound). */
    if (len > p->budget) {
        p->budget = 0;
        return;
    }
    if (len > SAFETY_JOIN_MAX_TEXT) {
        p->budget -= len; /* the walk counts it too */
        return;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct safety_prescan_entry *v = realloc(p->entries, cap * sizeof *v);
        if (!v)
            goto fail;
        p->entries = v;
        p->cap = cap;
    }
    if (safety_normalize(s, len, &t, &tlen, &map) != 0)
        goto fail;
    /* A copied text (a number's decimal form, in a buffer of the caller's) is kept as its
     * normalized text, which must then be the text itself. */
    if (number && t != s) {
        free(t);
        free(map);
        return; /* left to the ordinary path */
    }
    if (joined_reserve(p, tlen + 1) != 0)
        goto fail;
    struct safety_prescan_entry *e = &p->entries[p->n];
    e->off = p->jlen;
    e->tlen = tlen;
    e->len = len;
    e->map = map;
    e->hit_first = 0;
    e->n_hits = 0;
    /* While the buffer may still move, a copy is found by its offset (orig is set by run). */
    e->orig = number ? NULL : s;
    e->node = number;
    memcpy(p->joined + p->jlen, t, tlen);
    p->jlen += tlen;
    p->joined[p->jlen++] = SAFETY_JOIN_SEP;
    if (t != s)
        free(t);
    p->budget -= len;
    p->n++;
    return;
fail:
    if (t != s)
        free(t);
    free(map);
    p->failed = 1;
}

struct run_ctx {
    struct safety_prescan *p;
    size_t at;    /* the entry the last hit fell in */
    size_t *last; /* per rule: index in hits of its last hit, SIZE_MAX none */
};

/* The entry whose normalized text ends at or after `to` (the first such), searched from the
 * one the last hit fell in: hits mostly arrive in order. */
static size_t entry_of(const struct safety_prescan *p, size_t at, size_t to)
{
    const struct safety_prescan_entry *e = p->entries;
    if (to > e[at].off + e[at].tlen) {
        while (at + 1 < p->n && to > e[at].off + e[at].tlen)
            at++;
        return at;
    }
    size_t lo = 0, hi = at;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (e[mid].off + e[mid].tlen < to)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int on_joined_match(unsigned id, unsigned long long from, unsigned long long to, unsigned fl,
                           void *arg)
{
    (void)from;
    (void)fl;
    struct run_ctx *x = arg;
    struct safety_prescan *p = x->p;
    size_t at = entry_of(p, x->at, (size_t)to);
    const struct safety_prescan_entry *e = &p->entries[at];
    x->at = at;
    /* No hit can end past a text (it cannot hold the separator): guard anyway. */
    if (to <= e->off || to > e->off + e->tlen) {
        p->failed = 1;
        return 1;
    }
    size_t end = (size_t)to - e->off;
    size_t l = x->last[id];
    if (l != SIZE_MAX && p->hits[l].entry == at) {
        if (end < p->hits[l].end)
            p->hits[l].end = end;
        return 0;
    }
    if (p->n_hits == p->hit_cap) {
        size_t cap = p->hit_cap ? p->hit_cap * 2 : 256;
        struct safety_prescan_hit *v =
            cap > PRESCAN_MAX_RAW_HITS ? NULL : realloc(p->hits, cap * sizeof *v);
        if (!v) {
            p->failed = 1;
            return 1;
        }
        p->hits = v;
        p->hit_cap = cap;
    }
    p->hits[p->n_hits] = (struct safety_prescan_hit){id, (unsigned)at, end};
    x->last[id] = p->n_hits++;
    return 0;
}

static int hit_cmp(const void *a, const void *b)
{
    const struct safety_prescan_hit *x = a, *y = b;
    if (x->entry != y->entry)
        return x->entry < y->entry ? -1 : 1;
    if (x->rule != y->rule)
        return x->rule < y->rule ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

void safety_prescan_run(struct safety_prescan *p)
{
    size_t *last = NULL;
    if (p->failed || p->ready)
        return;
    /* One string gains nothing from a joined pass. */
    if (p->n < 2 || p->jlen > UINT32_MAX || p->n > UINT32_MAX)
        goto fail;
    hs_scratch_t *scratch = safety_thread_scratch(p->sc);
    last = malloc(p->sc->n_rules * sizeof *last);
    if (!scratch || !last)
        goto fail;
    for (size_t i = 0; i < p->sc->n_rules; i++)
        last[i] = SIZE_MAX;
    struct run_ctx x = {.p = p, .at = 0, .last = last};
    hs_error_t rc =
        hs_scan(p->sc->db_joined, p->joined, (unsigned)p->jlen, 0, scratch, on_joined_match, &x);
    if (rc != HS_SUCCESS || p->failed)
        goto fail;
    /* Hits out of order leave more than one per rule and string: sort, keep the smallest. */
    int sorted = 1;
    for (size_t i = 1; i < p->n_hits && sorted; i++)
        sorted = hit_cmp(&p->hits[i - 1], &p->hits[i]) < 0;
    if (!sorted) {
        qsort(p->hits, p->n_hits, sizeof *p->hits, hit_cmp);
        size_t k = 0;
        for (size_t i = 0; i < p->n_hits; i++)
            if (k == 0 || p->hits[k - 1].entry != p->hits[i].entry ||
                p->hits[k - 1].rule != p->hits[i].rule)
                p->hits[k++] = p->hits[i];
        p->n_hits = k;
    }
    for (size_t i = 0; i < p->n_hits;) {
        struct safety_prescan_entry *e = &p->entries[p->hits[i].entry];
        e->hit_first = i;
        while (i < p->n_hits && &p->entries[p->hits[i].entry] == e)
            i++;
        e->n_hits = i - e->hit_first;
    }
    for (size_t i = 0; i < p->n; i++)
        if (!p->entries[i].orig)
            p->entries[i].orig = p->joined + p->entries[i].off;
    free(last);
    p->ready = 1;
    return;
fail:
    free(last);
    p->failed = 1;
}

const struct safety_prescan_entry *safety_prescan_take(struct safety_prescan *p, const char *s,
                                                       size_t len)
{
    if (!p || !p->ready || p->cursor >= p->n)
        return NULL;
    const struct safety_prescan_entry *e = &p->entries[p->cursor];
    /* The hits belong to the bytes: a text that is not the next one added takes the ordinary
     * path (and the prescan stays where it was). */
    if (e->len != len || (e->orig != s && memcmp(e->orig, s, len) != 0))
        return NULL;
    p->cursor++;
    return e;
}

const struct safety_prescan_entry *safety_prescan_peek_number(const struct safety_prescan *p,
                                                              const void *number)
{
    if (!p || !p->ready || p->cursor >= p->n || p->entries[p->cursor].node != number)
        return NULL;
    return &p->entries[p->cursor];
}

void safety_prescan_free(struct safety_prescan *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->entries[i].map);
    free(p->entries);
    free(p->joined);
    free(p->hits);
    memset(p, 0, sizeof *p);
}
