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
 * period is over), so a shard that would grow first sweeps its expired entries, and a store
 * at max_keys sweeps before it takes a new key. Only expired entries are ever evicted: a key
 * still inside its window or period is never dropped to make room (that would hand its user
 * a fresh allowance). A store full of live keys refuses new keys instead, and the layer fails
 * closed (503) for a principal it has no room for. An entry is 32 bytes; tables stay at most
 * 3/4 full, so a million keys take 32 to 64 MiB.
 */
#include "layers/limits/limits-int.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
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

/*
 * The expiry of a key inserted by an operation that has not written it yet: it reads as
 * absent, but no sweep removes it (the operation holds a pointer's worth of intent on it, and
 * finds it again after its other keys are inserted). Every operation drops the fresh keys it
 * did not write before it unlocks (drop_fresh), so no fresh key outlives its operation.
 */
#define FRESH INT64_MIN

struct shard {
    pthread_mutex_t mu;
    struct entry *tab;
    size_t cap; /* power of two */
    size_t count;
    char pad[64];
};

/*
 * The bound is on the whole store, not per shard: keys do not spread evenly over the shards,
 * and a per-shard share of max_keys would refuse new keys in one shard while the store as a
 * whole is below its bound. `total` is changed only under the lock of the shard the key is in.
 */
struct lstore {
    struct shard shards[SHARDS];
    size_t max_keys;
    atomic_size_t total;                 /* live and expired-but-unswept keys, all shards */
    atomic_int_fast64_t last_wide_sweep; /* `now` of the last sweep over other shards */
    atomic_uint_fast64_t evicted;        /* expired entries swept */
    atomic_uint_fast64_t refused;        /* new keys refused: the store full of live keys */
};

struct lstore *lstore_new(uint64_t max_keys)
{
    struct lstore *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (max_keys == 0)
        max_keys = 4000000;
    s->max_keys = (size_t)max_keys;
    atomic_init(&s->total, 0);
    atomic_init(&s->last_wide_sweep, 0);
    atomic_init(&s->evicted, 0);
    atomic_init(&s->refused, 0);
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

uint64_t lstore_evicted(struct lstore *s)
{
    return atomic_load_explicit(&s->evicted, memory_order_relaxed);
}

uint64_t lstore_refused(struct lstore *s)
{
    return atomic_load_explicit(&s->refused, memory_order_relaxed);
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
static void remove_at(struct lstore *s, struct shard *sh, size_t i)
{
    size_t mask = sh->cap - 1;
    size_t j = i;
    for (;;) {
        sh->tab[i].h1 = 0;
        for (;;) {
            j = (j + 1) & mask;
            if (sh->tab[j].h1 == 0) {
                sh->count--;
                atomic_fetch_sub_explicit(&s->total, 1, memory_order_relaxed);
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

/* Drops the shard's expired entries (each means the same as no entry); returns how many. */
static size_t sweep(struct lstore *s, struct shard *sh, int64_t now)
{
    size_t swept = 0;
    size_t i = 0;
    while (i < sh->cap) {
        struct entry *e = &sh->tab[i];
        if (e->h1 != 0 && e->expires <= now && e->expires != FRESH) {
            remove_at(s, sh, i);
            swept++;
            continue; /* another entry may have moved into slot i */
        }
        i++;
    }
    if (swept)
        atomic_fetch_add_explicit(&s->evicted, swept, memory_order_relaxed);
    return swept;
}

/*
 * The store is at max_keys and the key's own shard had nothing expired: the other shards may.
 * They are swept when their lock is free (try-lock: the caller holds the shards in `held`, and
 * waiting on others out of order could deadlock); held shards are left alone, since they hold
 * this operation's freshly inserted keys, which look expired until the operation writes them.
 * A full pass over the store costs time in proportion to max_keys, so it runs at most once
 * per `gap` of the store's clock: a stream of new principals against a store full of live
 * keys is refused without a pass each.
 */
static void sweep_wide(struct lstore *s, uint64_t held, int64_t now, int64_t gap)
{
    int64_t last = atomic_load_explicit(&s->last_wide_sweep, memory_order_relaxed);
    if (last != 0 && now - last < gap && now >= last)
        return;
    if (!atomic_compare_exchange_strong(&s->last_wide_sweep, &last, now))
        return; /* another thread sweeps now */
    for (int i = 0; i < SHARDS; i++) {
        if (held & (1ULL << i))
            continue;
        if (pthread_mutex_trylock(&s->shards[i].mu) != 0)
            continue;
        sweep(s, &s->shards[i], now);
        pthread_mutex_unlock(&s->shards[i].mu);
    }
}

/* Room for one more key in the whole store (sweeping what has expired when there is none). */
static int room(struct lstore *s, struct shard *sh, uint64_t held, int64_t now, int64_t gap)
{
    if (atomic_load_explicit(&s->total, memory_order_relaxed) < s->max_keys)
        return 1;
    sweep(s, sh, now);
    if (atomic_load_explicit(&s->total, memory_order_relaxed) < s->max_keys)
        return 1;
    sweep_wide(s, held, now, gap);
    return atomic_load_explicit(&s->total, memory_order_relaxed) < s->max_keys;
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
static int ensure(struct lstore *s, struct shard *sh, const struct limits_key *k, uint64_t held,
                  int64_t now, int64_t gap)
{
    struct entry *found = find(sh, k);
    if (found) {
        /* An expired entry means no entry: it becomes one this operation inserted, so that
         * a sweep made room for the operation's next key cannot remove it under the
         * operation (which finds it again), and it goes at the end unless written. */
        if (found->expires <= now && found->expires != FRESH) {
            found->value = 0;
            found->expires = FRESH;
        }
        return 0;
    }
    if (!room(s, sh, held, now, gap)) {
        atomic_fetch_add_explicit(&s->refused, 1, memory_order_relaxed);
        return -ENOSPC;
    }
    if ((sh->count + 1) * 4 > sh->cap * 3) {
        sweep(s, sh, now);
        if ((sh->count + 1) * 4 > sh->cap * 3 && grow(sh) != 0)
            return -ENOMEM;
    }
    size_t mask = sh->cap - 1;
    size_t i = (size_t)k->h1 & mask;
    while (sh->tab[i].h1)
        i = (i + 1) & mask;
    sh->tab[i] = (struct entry){k->h1, k->h2, 0, FRESH};
    sh->count++;
    atomic_fetch_add_explicit(&s->total, 1, memory_order_relaxed);
    return 0;
}

/* Removes k when the operation that inserted it did not write it (denied, or failed). */
static void drop_fresh(struct lstore *s, const struct limits_key *k)
{
    struct shard *sh = &s->shards[shard_of(k)];
    struct entry *e = find(sh, k);
    if (e && e->expires == FRESH)
        remove_at(s, sh, (size_t)(e - sh->tab));
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
        int e = ensure(s, &s->shards[shard_of(&ops[i].key)], &ops[i].key, mask, now, 1000000000LL);
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
    for (size_t i = 0; i < n; i++)
        drop_fresh(s, &ops[i].key);
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
        int e = ensure(s, &s->shards[shard_of(&ops[i].key)], &ops[i].key, mask, now, 1);
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
    for (size_t i = 0; i < n; i++)
        drop_fresh(s, &ops[i].key);
    unlock_mask(s, locked);
    return rc;
}

int lstore_budget_add(struct lstore *s, const struct limits_key *k, int64_t delta, int64_t expires,
                      int64_t now)
{
    struct shard *sh = &s->shards[shard_of(k)];
    pthread_mutex_lock(&sh->mu);
    int rc = ensure(s, sh, k, 1ULL << shard_of(k), now, 1);
    if (rc == 0) {
        struct entry *e = find(sh, k);
        int64_t v = (e->expires <= now ? 0 : e->value) + delta;
        e->value = v < 0 ? 0 : v;
        if (e->expires < expires)
            e->expires = expires;
    }
    drop_fresh(s, k);
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
