#include "mcp/session.h"
#include "lib/timeutil.h"
#include "lib/digest.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_WAYS 8

struct session_entry {
    uint8_t id_hash[GW_SHA256_LEN];
    uint8_t owner_hash[GW_SHA256_LEN];
    uint64_t last_use_ms; /* monotonic; 0 = free */
};

struct session_set {
    pthread_mutex_t lock;
    struct session_entry ways[SESSION_WAYS];
};

/*
 * The map is replaced only by mcp_session_configure/shutdown (at start and stop, not while
 * requests run); `map_lock` guards the pointer, each set's lock its entries.
 */
static pthread_rwlock_t map_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct session_set *sets;
static size_t n_sets;
static uint64_t idle_ms = 3600 * 1000;

static void free_sets(struct session_set *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pthread_mutex_destroy(&s[i].lock);
    free(s);
}

/*
 * The table is large (100,000 sessions by default) and mostly untouched: calloc'd memory stays
 * unbacked until used, as long as nothing writes to it. Where a default mutex is all zero
 * bytes (glibc), the zeroed sets are ready as they are; elsewhere each lock is initialised.
 */
static struct session_set *alloc_sets(size_t n)
{
    struct session_set *s = calloc(n, sizeof *s);
    if (!s)
        return NULL;
    static const pthread_mutex_t initializer = PTHREAD_MUTEX_INITIALIZER;
    static const pthread_mutex_t zero;
    if (memcmp(&initializer, &zero, sizeof zero) != 0)
        for (size_t i = 0; i < n; i++)
            pthread_mutex_init(&s[i].lock, NULL);
    return s;
}

int mcp_session_configure(size_t max_entries, uint64_t idle)
{
    size_t n = (max_entries + SESSION_WAYS - 1) / SESSION_WAYS;
    if (n == 0)
        n = 1;
    struct session_set *fresh = alloc_sets(n);
    if (!fresh)
        return -1;
    pthread_rwlock_wrlock(&map_lock);
    struct session_set *old = sets;
    size_t old_n = n_sets;
    sets = fresh;
    n_sets = n;
    idle_ms = idle ? idle : 1;
    pthread_rwlock_unlock(&map_lock);
    free_sets(old, old_n);
    return 0;
}

void mcp_session_shutdown(void)
{
    pthread_rwlock_wrlock(&map_lock);
    struct session_set *old = sets;
    size_t old_n = n_sets;
    sets = NULL;
    n_sets = 0;
    pthread_rwlock_unlock(&map_lock);
    free_sets(old, old_n);
}

/* Takes the read lock and makes sure a map exists (defaults on first use). */
static int map_acquire(void)
{
    for (;;) {
        pthread_rwlock_rdlock(&map_lock);
        if (sets)
            return 0;
        pthread_rwlock_unlock(&map_lock);
        struct session_set *fresh = alloc_sets(100000 / SESSION_WAYS);
        if (!fresh)
            return -1;
        pthread_rwlock_wrlock(&map_lock);
        if (!sets) {
            sets = fresh;
            n_sets = 100000 / SESSION_WAYS;
            fresh = NULL;
        }
        pthread_rwlock_unlock(&map_lock);
        free_sets(fresh, 100000 / SESSION_WAYS);
    }
}

static int id_ok(const char *id, size_t *len)
{
    if (!id)
        return 0;
    *len = strnlen(id, MCP_SESSION_MAX_ID + 1);
    return *len > 0 && *len <= MCP_SESSION_MAX_ID;
}

static void owner_hash(const char *issuer, const char *sub, uint8_t out[GW_SHA256_LEN])
{
    struct gw_sha256_ctx c;
    gw_sha256_init(&c);
    gw_sha256_update(&c, issuer, strlen(issuer) + 1); /* the NUL separates the two */
    gw_sha256_update(&c, sub, strlen(sub));
    gw_sha256_final(&c, out);
}

static struct session_set *set_for(const uint8_t *id_hash)
{
    uint64_t h;
    memcpy(&h, id_hash, sizeof h);
    return &sets[h % n_sets];
}

/* Finds id in s, expiring it when idle too long. Caller holds s->lock. */
static struct session_entry *find(struct session_set *s, const uint8_t *id_hash, uint64_t now)
{
    for (int w = 0; w < SESSION_WAYS; w++) {
        struct session_entry *e = &s->ways[w];
        if (!e->last_use_ms || memcmp(e->id_hash, id_hash, GW_SHA256_LEN) != 0)
            continue;
        if (now - e->last_use_ms >= idle_ms) {
            memset(e, 0, sizeof *e);
            return NULL;
        }
        return e;
    }
    return NULL;
}

int mcp_session_bind(const char *id, const char *issuer, const char *sub)
{
    size_t len;
    if (!id_ok(id, &len) || !issuer || !sub)
        return -1;
    uint8_t idh[GW_SHA256_LEN], owner[GW_SHA256_LEN];
    gw_sha256(id, len, idh);
    owner_hash(issuer, sub, owner);
    if (map_acquire() != 0)
        return -1;
    struct session_set *s = set_for(idh);
    uint64_t now = gw_mono_ms() + 1; /* never 0: 0 marks a free entry */
    pthread_mutex_lock(&s->lock);
    struct session_entry *e = find(s, idh, now);
    for (int w = 0; w < SESSION_WAYS && !e; w++)
        if (!s->ways[w].last_use_ms || now - s->ways[w].last_use_ms >= idle_ms)
            e = &s->ways[w];
    if (!e) {
        e = &s->ways[0];
        for (int w = 1; w < SESSION_WAYS; w++)
            if (s->ways[w].last_use_ms < e->last_use_ms)
                e = &s->ways[w];
    }
    memcpy(e->id_hash, idh, sizeof idh);
    memcpy(e->owner_hash, owner, sizeof owner);
    e->last_use_ms = now;
    pthread_mutex_unlock(&s->lock);
    pthread_rwlock_unlock(&map_lock);
    return 0;
}

int mcp_session_check(const char *id, const char *issuer, const char *sub)
{
    size_t len;
    if (!id_ok(id, &len) || !issuer || !sub)
        return -1;
    uint8_t idh[GW_SHA256_LEN], owner[GW_SHA256_LEN];
    gw_sha256(id, len, idh);
    owner_hash(issuer, sub, owner);
    if (map_acquire() != 0)
        return -1;
    struct session_set *s = set_for(idh);
    uint64_t now = gw_mono_ms() + 1;
    int rc = 1;
    pthread_mutex_lock(&s->lock);
    struct session_entry *e = find(s, idh, now);
    if (e) {
        if (memcmp(e->owner_hash, owner, sizeof owner) == 0) {
            e->last_use_ms = now;
            rc = 0;
        } else {
            rc = -1;
        }
    }
    pthread_mutex_unlock(&s->lock);
    pthread_rwlock_unlock(&map_lock);
    return rc;
}

void mcp_session_forget(const char *id)
{
    size_t len;
    if (!id_ok(id, &len))
        return;
    uint8_t idh[GW_SHA256_LEN];
    gw_sha256(id, len, idh);
    if (map_acquire() != 0)
        return;
    struct session_set *s = set_for(idh);
    pthread_mutex_lock(&s->lock);
    struct session_entry *e = find(s, idh, gw_mono_ms() + 1);
    if (e)
        memset(e, 0, sizeof *e);
    pthread_mutex_unlock(&s->lock);
    pthread_rwlock_unlock(&map_lock);
}

size_t mcp_session_count(void)
{
    size_t n = 0;
    if (map_acquire() != 0)
        return 0;
    uint64_t now = gw_mono_ms() + 1;
    for (size_t i = 0; i < n_sets; i++) {
        pthread_mutex_lock(&sets[i].lock);
        for (int w = 0; w < SESSION_WAYS; w++)
            n += sets[i].ways[w].last_use_ms && now - sets[i].ways[w].last_use_ms < idle_ms;
        pthread_mutex_unlock(&sets[i].lock);
    }
    pthread_rwlock_unlock(&map_lock);
    return n;
}
