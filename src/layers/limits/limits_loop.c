/*
 * limits_loop: agent-loop detection.
 *
 * Each user (and each MCP session) has a short history of its recent tool calls: the call's
 * fingerprints (hashes of tool and canonical arguments, exact and with every number alike,
 * limits_canon.c), when it was made, and the hash of the result it got. A new call is flagged
 * when, within the window,
 *   - the same call was made `identical` times (this one included),
 *   - the same call, made back to back, already got the same result `no_progress` times,
 *   - `near_identical` calls (this one included) were the same up to their numbers and the
 *     earlier ones all got one same result: a counter or a timestamp argument that changes
 *     while nothing else does,
 *   - the calls end in a cycle of period 2..max_cycle repeated `cycle_repeats` times,
 *   - the session (or user, without a session) made more than `max_calls` calls.
 * Flags escalate per user+tool: the first `warnings` flagged calls pass with a warning, later
 * ones are denied, and a denial can start a cool-down for that user+tool.
 *
 * All state of one user (its history, its sessions' histories, its per-tool strikes) lives in
 * the user's shard, so one lock covers a call. State not touched for a window (plus the
 * cool-down) is evicted; when the table is full of live users, new users are not tracked
 * (the detector is a heuristic on top of rate limits and budgets, which do fail closed).
 */
#include "layers/limits/limits-int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define LOOP_SHARDS 64

enum node_kind { NODE_HISTORY = 0, NODE_STRIKES };

struct lcall {
    uint64_t fp;
    uint64_t near;
    uint64_t result;
    int64_t at;
    int has_result;
};

struct node {
    struct node *next;
    struct limits_key key;
    enum node_kind kind;
    int64_t last; /* monotonic ns of the last use */
    /* NODE_STRIKES */
    uint32_t strikes;
    int64_t strike_at;
    int64_t cooldown_until;
    /* NODE_HISTORY */
    uint32_t count_calls; /* calls in the current max_calls window */
    int64_t count_start;
    uint32_t head, n; /* ring: next write position, entries held */
    struct lcall ring[];
};

struct lshard {
    pthread_mutex_t mu;
    struct node **buckets;
    size_t n_buckets; /* power of two */
    size_t count;
    uint32_t ops;
};

struct lloop {
    struct limits_loops cfg;
    size_t shard_max;
    struct lshard shards[LOOP_SHARDS];
};

struct lloop *lloop_new(const struct limits_loops *cfg, uint64_t max_keys)
{
    struct lloop *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->cfg = *cfg;
    l->shard_max = (size_t)(max_keys ? max_keys : 1000000) / LOOP_SHARDS + 1;
    for (int i = 0; i < LOOP_SHARDS; i++) {
        pthread_mutex_init(&l->shards[i].mu, NULL);
        l->shards[i].n_buckets = 64;
        l->shards[i].buckets = calloc(64, sizeof(struct node *));
        if (!l->shards[i].buckets) {
            lloop_free(l);
            return NULL;
        }
    }
    return l;
}

void lloop_free(struct lloop *l)
{
    if (!l)
        return;
    for (int i = 0; i < LOOP_SHARDS; i++) {
        struct lshard *sh = &l->shards[i];
        for (size_t b = 0; sh->buckets && b < sh->n_buckets; b++) {
            struct node *n = sh->buckets[b];
            while (n) {
                struct node *next = n->next;
                free(n);
                n = next;
            }
        }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->mu);
    }
    free(l);
}

size_t lloop_count(struct lloop *l)
{
    size_t n = 0;
    for (int i = 0; i < LOOP_SHARDS; i++) {
        pthread_mutex_lock(&l->shards[i].mu);
        n += l->shards[i].count;
        pthread_mutex_unlock(&l->shards[i].mu);
    }
    return n;
}

static struct lshard *shard_for(struct lloop *l, const struct limits_key *user)
{
    return &l->shards[(user->h2 >> 40) & (LOOP_SHARDS - 1)];
}

static int64_t ttl_ns(const struct lloop *l)
{
    return (int64_t)(l->cfg.window_ms + l->cfg.cooldown_ms) * 1000000;
}

static void sweep(struct lloop *l, struct lshard *sh, int64_t now)
{
    for (size_t b = 0; b < sh->n_buckets; b++) {
        struct node **pp = &sh->buckets[b];
        while (*pp) {
            struct node *n = *pp;
            if (n->last + ttl_ns(l) < now) {
                *pp = n->next;
                free(n);
                sh->count--;
            } else {
                pp = &n->next;
            }
        }
    }
}

static void grow(struct lshard *sh)
{
    size_t nb = sh->n_buckets * 2;
    struct node **t = calloc(nb, sizeof *t);
    if (!t)
        return; /* longer chains, still correct */
    for (size_t b = 0; b < sh->n_buckets; b++) {
        struct node *n = sh->buckets[b];
        while (n) {
            struct node *next = n->next;
            size_t i = (size_t)n->key.h1 & (nb - 1);
            n->next = t[i];
            t[i] = n;
            n = next;
        }
    }
    free(sh->buckets);
    sh->buckets = t;
    sh->n_buckets = nb;
}

/* Finds or creates the node; NULL when the shard is full of live state or memory is out. */
static struct node *get(struct lloop *l, struct lshard *sh, const struct limits_key *k,
                        enum node_kind kind, int64_t now)
{
    size_t keep = kind == NODE_HISTORY ? l->cfg.history : 0;
    size_t i = (size_t)k->h1 & (sh->n_buckets - 1);
    for (struct node *n = sh->buckets[i]; n; n = n->next)
        if (n->key.h1 == k->h1 && n->key.h2 == k->h2 && n->kind == kind) {
            if (n->last + ttl_ns(l) < now) {
                /* Stale state means nothing: start over. */
                n->strikes = 0;
                n->strike_at = 0;
                n->cooldown_until = 0;
                n->count_calls = 0;
                n->count_start = 0;
                n->head = n->n = 0;
            }
            n->last = now;
            return n;
        }
    if (++sh->ops % 4096 == 0 || sh->count >= l->shard_max)
        sweep(l, sh, now);
    if (sh->count >= l->shard_max)
        return NULL;
    struct node *n = calloc(1, sizeof *n + keep * sizeof(struct lcall));
    if (!n)
        return NULL;
    n->key = *k;
    n->kind = kind;
    n->last = now;
    if (sh->count + 1 > sh->n_buckets)
        grow(sh);
    i = (size_t)k->h1 & (sh->n_buckets - 1);
    n->next = sh->buckets[i];
    sh->buckets[i] = n;
    sh->count++;
    return n;
}

/* The j-th newest call of the history (0 = newest), or NULL past the window or the ring. */
static struct lcall *nth_newest(struct lloop *l, struct node *h, uint32_t j, int64_t since)
{
    if (j >= h->n)
        return NULL;
    uint32_t cap = l->cfg.history;
    struct lcall *c = &h->ring[(h->head + cap - 1 - j) % cap];
    return c->at >= since ? c : NULL;
}

/*
 * Near-identical calls: walking back through the window, the calls with this near
 * fingerprint, as long as each has a result and it is the one the newest of them got.
 */
static uint32_t near_streak(struct lloop *l, struct node *h, uint64_t near, int64_t since)
{
    uint32_t n = 1;
    int have = 0;
    uint64_t result = 0;
    struct lcall *c;
    for (uint32_t j = 0; (c = nth_newest(l, h, j, since)); j++) {
        if (c->near != near)
            continue;
        if (!c->has_result || (have && c->result != result))
            break;
        result = c->result;
        have = 1;
        n++;
    }
    return n;
}

static unsigned detect(struct lloop *l, struct node *h, uint64_t fp, uint64_t near, int64_t now)
{
    const struct limits_loops *cfg = &l->cfg;
    int64_t since = now - (int64_t)cfg->window_ms * 1000000;
    unsigned flags = 0;
    uint32_t identical = 1, same_result = 0;
    int run = 1; /* still in the run of this same call back to back */
    uint64_t last_result = 0;
    struct lcall *c;
    for (uint32_t j = 0; (c = nth_newest(l, h, j, since)); j++) {
        if (c->fp != fp) {
            run = 0;
            continue;
        }
        identical++;
        if (!run)
            continue;
        if (!c->has_result || (same_result && c->result != last_result)) {
            run = 0;
            continue;
        }
        last_result = c->result;
        same_result++;
    }
    if (cfg->identical && identical >= cfg->identical)
        flags |= GW_LOOP_IDENTICAL;
    if (cfg->no_progress && same_result >= cfg->no_progress)
        flags |= GW_LOOP_NO_PROGRESS;
    if (cfg->near_identical && near_streak(l, h, near, since) >= cfg->near_identical)
        flags |= GW_LOOP_NEAR_IDENTICAL;
    /* Cycles: the sequence (history + this call) ends in `repeats` copies of a period p. */
    for (uint32_t p = 2; cfg->max_cycle >= 2 && p <= cfg->max_cycle; p++) {
        uint32_t len = p * cfg->cycle_repeats;
        if (len > h->n + 1)
            break;
        uint64_t seq[16 * 100 + 1];
        if (len > sizeof seq / sizeof seq[0])
            break;
        /* seq[0] is this call, seq[j] the j-th previous one. */
        seq[0] = fp;
        uint32_t got = 1;
        for (uint32_t j = 0; got < len && (c = nth_newest(l, h, j, since)); j++)
            seq[got++] = c->fp;
        if (got < len)
            continue;
        int cyc = 1, distinct = 0;
        for (uint32_t j = p; j < len && cyc; j++)
            cyc = seq[j] == seq[j - p];
        for (uint32_t j = 1; j < p; j++)
            distinct |= seq[j] != seq[0];
        if (cyc && distinct) {
            flags |= GW_LOOP_CYCLE;
            break;
        }
    }
    return flags;
}

static void record(struct lloop *l, struct node *h, uint64_t fp, uint64_t near, int64_t now)
{
    uint32_t cap = l->cfg.history;
    h->ring[h->head] = (struct lcall){fp, near, 0, now, 0};
    h->head = (h->head + 1) % cap;
    if (h->n < cap)
        h->n++;
}

static int over_call_cap(struct lloop *l, struct node *h, int64_t now)
{
    if (!l->cfg.max_calls)
        return 0;
    if (h->count_start == 0 || now - h->count_start > (int64_t)l->cfg.window_ms * 1000000) {
        h->count_start = now;
        h->count_calls = 0;
    }
    return ++h->count_calls > l->cfg.max_calls;
}

void lloop_call(struct lloop *l, const struct limits_key *user, const struct limits_key *session,
                const struct limits_key *user_tool, uint64_t fp, uint64_t near, int64_t now,
                struct lloop_verdict *v)
{
    memset(v, 0, sizeof *v);
    struct lshard *sh = shard_for(l, user);
    pthread_mutex_lock(&sh->mu);
    struct node *strikes = get(l, sh, user_tool, NODE_STRIKES, now);
    struct node *uh = get(l, sh, user, NODE_HISTORY, now);
    struct node *shist = session ? get(l, sh, session, NODE_HISTORY, now) : NULL;
    if (!strikes || !uh || (session && !shist)) {
        /* No room to remember this call (max_tracked live, or no memory): a call nobody
         * watches for loops is not let through. */
        v->action = 3;
        goto out;
    }
    if (strikes && strikes->cooldown_until > now) {
        v->flags = GW_LOOP_COOLDOWN;
        v->action = 2;
        v->retry_ms = (uint64_t)(strikes->cooldown_until - now + 999999) / 1000000;
    }
    if (uh) {
        v->flags |= detect(l, uh, fp, near, now);
        if (!session && over_call_cap(l, uh, now))
            v->flags |= GW_LOOP_SESSION_CAP;
        record(l, uh, fp, near, now);
    }
    if (shist) {
        v->flags |= detect(l, shist, fp, near, now);
        if (over_call_cap(l, shist, now))
            v->flags |= GW_LOOP_SESSION_CAP;
        record(l, shist, fp, near, now);
    }
    if (v->action == 2 || !(v->flags & ~GW_LOOP_COOLDOWN) || !strikes)
        goto out;
    if (now - strikes->strike_at > (int64_t)l->cfg.window_ms * 1000000)
        strikes->strikes = 0;
    strikes->strikes++;
    strikes->strike_at = now;
    if (strikes->strikes <= l->cfg.warnings) {
        v->action = 1;
        goto out;
    }
    v->action = 2;
    if (l->cfg.cooldown_ms) {
        strikes->cooldown_until = now + (int64_t)l->cfg.cooldown_ms * 1000000;
        v->retry_ms = l->cfg.cooldown_ms;
    }
out:
    pthread_mutex_unlock(&sh->mu);
}

static void set_result(struct lloop *l, struct node *h, uint64_t fp, uint64_t result)
{
    uint32_t cap = l->cfg.history;
    for (uint32_t j = 0; j < h->n; j++) {
        struct lcall *c = &h->ring[(h->head + cap - 1 - j) % cap];
        if (c->fp == fp && !c->has_result) {
            c->result = result;
            c->has_result = 1;
            return;
        }
    }
}

void lloop_result(struct lloop *l, const struct limits_key *user, const struct limits_key *session,
                  uint64_t fp, uint64_t result_hash)
{
    struct lshard *sh = shard_for(l, user);
    pthread_mutex_lock(&sh->mu);
    size_t i = (size_t)user->h1 & (sh->n_buckets - 1);
    for (int pass = 0; pass < 2; pass++) {
        const struct limits_key *k = pass == 0 ? user : session;
        if (!k)
            continue;
        i = (size_t)k->h1 & (sh->n_buckets - 1);
        for (struct node *n = sh->buckets[i]; n; n = n->next)
            if (n->key.h1 == k->h1 && n->key.h2 == k->h2 && n->kind == NODE_HISTORY)
                set_result(l, n, fp, result_hash);
    }
    pthread_mutex_unlock(&sh->mu);
}
