/*
 * The call path's view of the pin store, kept for a short time. Every governed call asks
 * whether its tool, prompt or resource is approved and whether its backend's list was ever
 * seen; asking the store each time costs two queries under the store's lock, and with
 * PostgreSQL a round trip on the worker's loop. The answers are kept per name for `ttl`:
 *
 *   - whatever this process changes (a list compared, a decision taken) starts a new epoch,
 *     and an answer of an older epoch is not used, so a drift this process found is refused
 *     on the very next call;
 *   - a decision another process takes (the CLI, another instance) reaches calls within ttl;
 *     lists always read the store.
 *
 * The table is direct-mapped (a slot per hash, the full key compared), bounded, and locked by
 * stripes. A store error is never kept.
 */
#include "layers/integrity/integrity.h"
#include "lib/timeutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 8192
#define STRIPES 64

struct slot {
    uint64_t hash;
    char *key; /* "backend\x1fkind\x1fname", owned */
    uint64_t epoch;
    uint64_t expires_ms;
    const struct integrity_store *store;
    struct integrity_call_view view;
};

static struct slot slots[SLOTS];
static pthread_mutex_t stripes[STRIPES];
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;
static atomic_uint_fast64_t epoch = 1;
static atomic_ullong n_hits, n_misses;

static void stripes_init(void)
{
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_init(&stripes[i], NULL);
}

/* FNV-1a over the three parts with a separator no name holds (names are bounded text). */
static uint64_t hash_key(const char *backend, const char *kind, const char *name, char *key,
                         size_t keylen, size_t *used)
{
    const char *parts[] = {backend, kind, name};
    uint64_t h = 1469598103934665603ull;
    size_t n = 0;
    for (size_t p = 0; p < 3; p++) {
        for (const char *c = parts[p]; *c; c++) {
            h = (h ^ (unsigned char)*c) * 1099511628211ull;
            if (n + 1 < keylen)
                key[n] = *c;
            n++;
        }
        h = (h ^ 0x1f) * 1099511628211ull;
        if (n + 1 < keylen)
            key[n] = p < 2 ? '\x1f' : 0;
        n++;
    }
    *used = n;
    return h;
}

static int view_from_store(struct integrity_store *s, const char *backend, const char *kind,
                           const char *name, struct integrity_call_view *v)
{
    struct integrity_pin pin;
    memset(v, 0, sizeof *v);
    int found = integrity_store_get(s, backend, kind, name, &pin);
    if (found < 0)
        return -1;
    v->found = found;
    if (found)
        snprintf(v->state, sizeof v->state, "%s", pin.state);
    /* Resources from templates are never listed one by one: only tools and prompts ask. */
    if (!found && strcmp(kind, "resource") != 0) {
        int listed = integrity_store_has_set(s, backend, kind);
        if (listed < 0)
            return -1;
        v->listed = listed;
    }
    return 0;
}

int integrity_cache_lookup(struct integrity_store *s, const char *backend, const char *kind,
                           const char *name, uint64_t ttl_ms, struct integrity_call_view *out)
{
    if (ttl_ms == 0)
        return view_from_store(s, backend, kind, name, out);
    pthread_once(&stripes_once, stripes_init);
    char key[1400];
    size_t len;
    uint64_t h = hash_key(backend, kind, name, key, sizeof key, &len);
    if (len >= sizeof key) /* longer than any pinned name: not kept */
        return view_from_store(s, backend, kind, name, out);
    struct slot *sl = &slots[h % SLOTS];
    pthread_mutex_t *mu = &stripes[(h % SLOTS) % STRIPES];
    uint64_t now = gw_mono_ms();
    uint64_t e = atomic_load(&epoch);
    pthread_mutex_lock(mu);
    int hit = sl->key && sl->hash == h && sl->store == s && sl->epoch == e &&
              now < sl->expires_ms && strcmp(sl->key, key) == 0;
    if (hit)
        *out = sl->view;
    pthread_mutex_unlock(mu);
    if (hit) {
        atomic_fetch_add(&n_hits, 1);
        return 0;
    }
    atomic_fetch_add(&n_misses, 1);
    /* The epoch was read before the store: a change committed meanwhile makes this one stale. */
    if (view_from_store(s, backend, kind, name, out) != 0)
        return -1;
    char *copy = strdup(key);
    if (!copy)
        return 0; /* answered, just not kept */
    pthread_mutex_lock(mu);
    char *old = sl->key;
    sl->key = copy;
    sl->hash = h;
    sl->store = s;
    sl->epoch = e;
    sl->expires_ms = now + ttl_ms;
    sl->view = *out;
    pthread_mutex_unlock(mu);
    free(old);
    return 0;
}

void integrity_cache_invalidate(void)
{
    atomic_fetch_add(&epoch, 1);
}

void integrity_cache_counts(uint64_t *hits, uint64_t *misses)
{
    *hits = atomic_load(&n_hits);
    *misses = atomic_load(&n_misses);
}

void integrity_cache_clear(void)
{
    pthread_once(&stripes_once, stripes_init);
    integrity_cache_invalidate();
    for (size_t i = 0; i < SLOTS; i++) {
        pthread_mutex_t *mu = &stripes[i % STRIPES];
        pthread_mutex_lock(mu);
        free(slots[i].key);
        memset(&slots[i], 0, sizeof slots[i]);
        pthread_mutex_unlock(mu);
    }
}
