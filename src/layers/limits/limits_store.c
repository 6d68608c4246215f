/*
 * limits_store: GCRA, and the in-process store: a sharded open-addressing hash table of
 * 128-bit keys to (value, expiry), safe across worker threads.
 *
 * Each shard has its own mutex; an operation over several keys (all the rate limits of one
 * call, all its budgets) locks the shards it touches in ascending order, decides, and either
 * applies every change or none, so a denial by one limit never consumes another's capacity
 * and parallel calls at the edge of a cap cannot both pass.
 *
 * Memory stays bounded: an entry whose expiry has passed means the same as no entry (a GCRA
 * key whose theoretical arrival time is in the past is a fresh key; a budget of a finished
 * period is over), so a shard that would grow first sweeps its expired entries, and a shard
 * that is full of live entries refuses new keys (the layer then fails closed). An entry is
 * 32 bytes; tables stay at most 3/4 full, so a million keys take 32 to 64 MiB.
 */
#include "layers/limits/limits-int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS 64
#define MIN_CAP 64

void gcra_step(int64_t *tat, int64_t now, uint64_t interval_ns, uint64_t tolerance_ns, uint32_t n,
               struct gcra_result *r)
{
    int64_t base = *tat > now ? *tat : now;
    int64_t new_tat = base + (int64_t)(interval_ns * n);
    int64_t ahead = new_tat - now; /* how far the new TAT runs ahead of now */
    if (ahead <= (int64_t)tolerance_ns) {
        r->allowed = 1;
        r->retry_ns = 0;
        r->reset_ns = (uint64_t)ahead;
        r->remaining = (int64_t)((tolerance_ns - (uint64_t)ahead) / interval_ns);
        *tat = new_tat;
        return;
    }
    r->allowed = 0;
    r->retry_ns = (uint64_t)(ahead - (int64_t)tolerance_ns);
    r->reset_ns = (uint64_t)(base - now);
    int64_t cur = base - now;
    r->remaining =
        cur >= (int64_t)tolerance_ns ? 0 : (int64_t)((tolerance_ns - (uint64_t)cur) / interval_ns);
}

struct entry {
    uint64_t h1, h2; /* h1 == 0: empty slot */
    int64_t value;
    int64_t expires;
};

struct shard {
    pthread_mutex_t mu;
    struct entry *tab;
    size_t cap; /* power of two */
    size_t count;
    char pad[64];
};

struct lstore {
    struct shard shards[SHARDS];
    size_t shard_max; /* live keys per shard at most */
};

struct lstore *lstore_new(uint64_t max_keys)
{
    struct lstore *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (max_keys == 0)
        max_keys = 4000000;
    s->shard_max = (size_t)(max_keys / SHARDS) + 1;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&s->shards[i].mu, NULL);
        s->shards[i].cap = MIN_CAP;
        s->shards[i].tab = calloc(MIN_CAP, sizeof(struct entry));
        if (!s->shards[i].tab) {
            lstore_free(s);
            return NULL;
        }
    }
    return s;
}

void lstore_free(struct lstore *s)
{
    if (!s)
        return;
    for (int i = 0; i < SHARDS; i++) {
        free(s->shards[i].tab);
        pthread_mutex_destroy(&s->shards[i].mu);
    }
    free(s);
}

size_t lstore_count(struct lstore *s)
{
    size_t n = 0;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&s->shards[i].mu);
        n += s->shards[i].count;
        pthread_mutex_unlock(&s->shards[i].mu);
    }
    return n;
}

size_t lstore_memory(struct lstore *s)
{
    size_t n = sizeof *s;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&s->shards[i].mu);
        n += s->shards[i].cap * sizeof(struct entry);
        pthread_mutex_unlock(&s->shards[i].mu);
    }
    return n;
}

static unsigned shard_of(const struct limits_key *k)
{
    return (unsigned)(k->h2 >> 58) & (SHARDS - 1);
}

static struct entry *find(struct shard *sh, const struct limits_key *k)
{
    size_t mask = sh->cap - 1;
    for (size_t i = (size_t)k->h1 & mask;; i = (i + 1) & mask) {
        struct entry *e = &sh->tab[i];
        if (e->h1 == 0)
            return NULL;
        if (e->h1 == k->h1 && e->h2 == k->h2)
            return e;
    }
}

/* Removes slot i, shifting later members of its probe run back (no tombstones). */
static void remove_at(struct shard *sh, size_t i)
{
    size_t mask = sh->cap - 1;
    size_t j = i;
    for (;;) {
        sh->tab[i].h1 = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (sh->tab[j].h1 == 0) {
                sh->count--;
                return;
            }
            size_t home = (size_t)sh->tab[j].h1 & mask;
            /* j may move to i when its home is not cyclically within (i, j]. */
            if (i <= j ? (home <= i || home > j) : (home <= i && home > j))
                break;
        }
        sh->tab[i] = sh->tab[j];
        i = j;
    }
}

static void sweep(struct shard *sh, int64_t now)
{
    size_t i = 0;
    while (i < sh->cap) {
        struct entry *e = &sh->tab[i];
        if (e->h1 != 0 && e->expires <= now) {
            remove_at(sh, i);
            continue; /* another entry may have moved into slot i */
        }
        i++;
    }
}

static int grow(struct shard *sh)
{
    size_t ncap = sh->cap * 2;
    struct entry *nt = calloc(ncap, sizeof *nt);
    if (!nt)
        return -ENOMEM;
    for (size_t i = 0; i < sh->cap; i++) {
        struct entry *e = &sh->tab[i];
        if (!e->h1)
            continue;
        size_t j = (size_t)e->h1 & (ncap - 1);
        while (nt[j].h1)
            j = (j + 1) & (ncap - 1);
        nt[j] = *e;
    }
    free(sh->tab);
    sh->tab = nt;
    sh->cap = ncap;
    return 0;
}

/* Finds or inserts (value 0, already expired: equivalent to absent). */
static int ensure(struct lstore *s, struct shard *sh, const struct limits_key *k, int64_t now)
{
    if (find(sh, k))
        return 0;
    if ((sh->count + 1) * 4 > sh->cap * 3) {
        sweep(sh, now);
        if ((sh->count + 1) * 4 > sh->cap * 3) {
            if (sh->count + 1 > s->shard_max)
                return -ENOSPC;
            if (grow(sh) != 0)
                return -ENOMEM;
        }
    } else if (sh->count + 1 > s->shard_max) {
        sweep(sh, now);
        if (sh->count + 1 > s->shard_max)
            return -ENOSPC;
    }
    size_t mask = sh->cap - 1;
    size_t i = (size_t)k->h1 & mask;
    while (sh->tab[i].h1)
        i = (i + 1) & mask;
    sh->tab[i] = (struct entry){k->h1, k->h2, 0, INT64_MIN};
    sh->count++;
    return 0;
}

/* Locks the shards in mask in ascending order (the same order everywhere: no deadlock). */
static uint64_t lock_mask(struct lstore *s, uint64_t mask)
{
    for (int i = 0; i < SHARDS; i++)
        if (mask & (1ULL << i))
            pthread_mutex_lock(&s->shards[i].mu);
    return mask;
}

static void unlock_mask(struct lstore *s, uint64_t mask)
{
    for (int i = SHARDS - 1; i >= 0; i--)
        if (mask & (1ULL << i))
            pthread_mutex_unlock(&s->shards[i].mu);
}

int lstore_rate(struct lstore *s, struct lrate_op *ops, size_t n, int64_t now)
{
    int64_t tats[LIMITS_MAX_RATES * 4];
    if (n > sizeof tats / sizeof tats[0])
        return -E2BIG;
    uint64_t mask = 0;
    for (size_t i = 0; i < n; i++)
        mask |= 1ULL << shard_of(&ops[i].key);
    uint64_t locked = lock_mask(s, mask);
    int rc = 1;
    for (size_t i = 0; i < n; i++) {
        int e = ensure(s, &s->shards[shard_of(&ops[i].key)], &ops[i].key, now);
        if (e != 0) {
            rc = e;
            goto out;
        }
    }
    /* No insertion from here on: entry pointers stay valid. */
    for (size_t i = 0; i < n; i++) {
        struct entry *e = find(&s->shards[shard_of(&ops[i].key)], &ops[i].key);
        tats[i] = e->expires <= now ? 0 : e->value;
        gcra_step(&tats[i], now, ops[i].interval_ns, ops[i].tolerance_ns, ops[i].n, &ops[i].r);
        if (!ops[i].r.allowed)
            rc = 0;
    }
    if (rc == 1) {
        for (size_t i = 0; i < n; i++) {
            struct entry *e = find(&s->shards[shard_of(&ops[i].key)], &ops[i].key);
            e->value = tats[i];
            e->expires = tats[i];
        }
    }
out:
    unlock_mask(s, locked);
    return rc;
}

int lstore_budget_reserve(struct lstore *s, struct lbudget_op *ops, size_t n, int64_t now)
{
    if (n > LIMITS_MAX_BUDGETS)
        return -E2BIG;
    uint64_t mask = 0;
    for (size_t i = 0; i < n; i++)
        mask |= 1ULL << shard_of(&ops[i].key);
    uint64_t locked = lock_mask(s, mask);
    int rc = 1;
    for (size_t i = 0; i < n; i++) {
        int e = ensure(s, &s->shards[shard_of(&ops[i].key)], &ops[i].key, now);
        if (e != 0) {
            rc = e;
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct entry *e = find(&s->shards[shard_of(&ops[i].key)], &ops[i].key);
        int64_t spent = e->expires <= now ? 0 : e->value;
        ops[i].allowed = spent + ops[i].amount <= ops[i].cap;
        ops[i].spent = spent;
        if (!ops[i].allowed)
            rc = 0;
    }
    if (rc == 1) {
        for (size_t i = 0; i < n; i++) {
            struct entry *e = find(&s->shards[shard_of(&ops[i].key)], &ops[i].key);
            ops[i].spent += ops[i].amount;
            e->value = ops[i].spent;
            if (e->expires < ops[i].expires)
                e->expires = ops[i].expires;
        }
    }
out:
    unlock_mask(s, locked);
    return rc;
}

int lstore_budget_add(struct lstore *s, const struct limits_key *k, int64_t delta, int64_t expires,
                      int64_t now)
{
    struct shard *sh = &s->shards[shard_of(k)];
    pthread_mutex_lock(&sh->mu);
    int rc = ensure(s, sh, k, now);
    if (rc == 0) {
        struct entry *e = find(sh, k);
        int64_t v = (e->expires <= now ? 0 : e->value) + delta;
        e->value = v < 0 ? 0 : v;
        if (e->expires < expires)
            e->expires = expires;
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

int64_t lstore_budget_get(struct lstore *s, const struct limits_key *k, int64_t now)
{
    struct shard *sh = &s->shards[shard_of(k)];
    pthread_mutex_lock(&sh->mu);
    struct entry *e = find(sh, k);
    int64_t v = e && e->expires > now ? e->value : 0;
    pthread_mutex_unlock(&sh->mu);
    return v;
}
