#include "mcp/session.h"
#include "lib/digest.h"
#include "lib/jwt.h"
#include "lib/timeutil.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_WAYS 8
/* The table's bound before mcp_session_configure: 100,000 entries and an eighth more slots. */
#define DEFAULT_SETS ((100000 + 100000 / 8 + SESSION_WAYS - 1) / SESSION_WAYS)
/* The table starts at most this small (4,096 entries, 180 KiB) and doubles up to its bound. */
#define INITIAL_SETS 512
#define KEY_PREFIX "tg:s:"
#define KEY_LEN (sizeof KEY_PREFIX - 1 + 64)

/* ---- the encoding ---- */

void mcp_session_clear(struct mcp_session *s)
{
    for (size_t i = 0; i < s->n_backends && i < MCP_SESSION_MAX_BACKENDS; i++)
        free(s->backends[i]);
    memset(s, 0, sizeof *s);
}

void mcp_session_owner(const char *issuer, const char *subject, uint8_t out[32])
{
    struct gw_sha256_ctx c;
    gw_sha256_init(&c);
    gw_sha256_update(&c, issuer ? issuer : "", strlen(issuer ? issuer : "") + 1); /* NUL: sep */
    gw_sha256_update(&c, subject ? subject : "", strlen(subject ? subject : ""));
    gw_sha256_final(&c, out);
}

int mcp_session_encode(const struct mcp_session *s, char **out, size_t *len)
{
    char owner[65];
    gw_hex(s->owner, sizeof s->owner, owner);
    json_t *b = json_array();
    for (size_t i = 0; b && i < s->n_backends; i++)
        if (json_array_append_new(b, s->backends[i] ? json_string(s->backends[i]) : json_null()))
            goto fail;
    json_t *o = b ? json_pack("{s:s, s:s, s:o}", "o", owner, "r", s->route, "b", b) : NULL;
    if (!o)
        return -1;
    if (s->client_caps && json_object_set_new(o, "c", json_integer(s->client_caps)) != 0) {
        json_decref(o);
        return -1;
    }
    *out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!*out)
        return -1;
    *len = strlen(*out);
    return 0;
fail:
    json_decref(b);
    return -1;
}

/* A stored value is ours, but a shared store (Redis) is outside input too: checked whole. */
int mcp_session_decode(const char *value, size_t len, struct mcp_session *s)
{
    memset(s, 0, sizeof *s);
    json_t *o = json_loadb(value, len, JSON_REJECT_DUPLICATES, NULL);
    const char *owner = json_string_value(json_object_get(o, "o"));
    const char *route = json_string_value(json_object_get(o, "r"));
    json_t *b = json_object_get(o, "b");
    json_t *caps = json_object_get(o, "c");
    int rc = -1;
    if (!owner || strlen(owner) != 64 || !route || strlen(route) >= sizeof s->route ||
        !json_is_array(b) || json_array_size(b) > MCP_SESSION_MAX_BACKENDS ||
        (caps && (!json_is_integer(caps) || json_integer_value(caps) < 0 ||
                  json_integer_value(caps) > 0xff)))
        goto out;
    s->client_caps = caps ? (unsigned)json_integer_value(caps) : 0;
    if (gw_unhex(owner, 32, s->owner, 0) != 0)
        goto out;
    snprintf(s->route, sizeof s->route, "%s", route);
    for (size_t i = 0; i < json_array_size(b); i++) {
        json_t *e = json_array_get(b, i);
        s->n_backends = i + 1;
        if (json_is_null(e))
            continue;
        if (!json_is_string(e) || json_string_length(e) > MCP_SESSION_MAX_BACKEND_ID ||
            !(s->backends[i] = strdup(json_string_value(e))))
            goto out;
    }
    rc = 0;
out:
    json_decref(o);
    if (rc != 0)
        mcp_session_clear(s);
    return rc;
}

/* ---- the memory store ---- */

/*
 * An entry is 48 bytes and its value a packed session (mem_pack), about 80 bytes for a
 * session of one backend, so a million sessions take some 130 MiB. The first 16 bytes of the
 * key's SHA-256 identify it: the key hashes 256 random bits, and a lookup that matched a
 * wrong entry would still be refused by the owner and route check.
 */
#define MEM_KEY_BYTES 16

struct mem_entry {
    uint8_t key_hash[MEM_KEY_BYTES];
    uint8_t *value;       /* mem_pack's bytes */
    uint64_t last_use_ms; /* monotonic; 0 = free */
    uint32_t ttl_ms;      /* mcp_session_configure bounds the idle time to fit */
    uint32_t len;
};

struct mem_set {
    pthread_mutex_t lock;
    struct mem_entry ways[SESSION_WAYS];
};

/*
 * The memory store keeps sessions packed, not as the JSON encoding the shared stores keep:
 * owner (32 bytes), client capabilities (1), route length (1) and bytes, the number of
 * backends (1), then each backend id as a 2-byte length (0xffff: none yet) and its bytes.
 * put packs what mcp_session_encode wrote; get hands the encoding back to the caller.
 */
#define MEM_NO_BACKEND 0xffff

static int mem_pack(const char *value, size_t len, uint8_t **out, uint32_t *out_len)
{
    struct mcp_session s;
    if (mcp_session_decode(value, len, &s) != 0)
        return -1;
    size_t route_len = strlen(s.route), n = 32 + 1 + 1 + route_len + 1;
    for (size_t i = 0; i < s.n_backends; i++)
        n += 2 + (s.backends[i] ? strlen(s.backends[i]) : 0);
    uint8_t *p = malloc(n);
    int rc = -1;
    if (!p)
        goto out;
    size_t at = 0;
    memcpy(p, s.owner, 32);
    at = 32;
    p[at++] = (uint8_t)s.client_caps;
    p[at++] = (uint8_t)route_len;
    memcpy(p + at, s.route, route_len);
    at += route_len;
    p[at++] = (uint8_t)s.n_backends;
    for (size_t i = 0; i < s.n_backends; i++) {
        size_t b = s.backends[i] ? strlen(s.backends[i]) : 0;
        uint16_t l = s.backends[i] ? (uint16_t)b : MEM_NO_BACKEND;
        p[at++] = (uint8_t)(l >> 8);
        p[at++] = (uint8_t)l;
        memcpy(p + at, s.backends[i] ? s.backends[i] : "", b);
        at += b;
    }
    *out = p;
    *out_len = (uint32_t)at;
    rc = 0;
out:
    mcp_session_clear(&s);
    return rc;
}

/* A packed session into s (zeroed first; cleared again on failure). 0, or -1. */
static int mem_unpack_session(const uint8_t *p, size_t n, struct mcp_session *s)
{
    size_t at = 34;
    memset(s, 0, sizeof *s);
    if (n < 35 || p[33] >= sizeof s->route || at + p[33] + 1 > n)
        return -1;
    memcpy(s->owner, p, 32);
    s->client_caps = p[32];
    memcpy(s->route, p + at, p[33]);
    at += p[33];
    s->n_backends = p[at++];
    if (s->n_backends > MCP_SESSION_MAX_BACKENDS)
        goto fail;
    for (size_t i = 0; i < s->n_backends; i++) {
        if (at + 2 > n)
            goto fail;
        uint16_t l = (uint16_t)(p[at] << 8 | p[at + 1]);
        at += 2;
        if (l == MEM_NO_BACKEND)
            continue;
        if (l > MCP_SESSION_MAX_BACKEND_ID || at + l > n || !(s->backends[i] = malloc(l + 1u)))
            goto fail;
        memcpy(s->backends[i], p + at, l);
        s->backends[i][l] = '\0';
        at += l;
    }
    if (at == n)
        return 0;
fail:
    mcp_session_clear(s);
    return -1;
}

/* The encoding of a packed session (malloc'd, NUL-terminated), or NULL. */
static char *mem_unpack(const uint8_t *p, size_t n, size_t *len)
{
    struct mcp_session s;
    char *value = NULL;
    if (mem_unpack_session(p, n, &s) != 0)
        return NULL;
    if (mcp_session_encode(&s, &value, len) != 0)
        value = NULL;
    mcp_session_clear(&s);
    return value;
}

/*
 * The table is replaced by mcp_session_configure/shutdown and when it grows; `map_lock`
 * guards the pointer (every operation holds it shared, a replacement exclusively), each set's
 * lock its entries.
 *
 * It starts at INITIAL_SETS or fewer and doubles, up to `max_sets` (the configured bound
 * rounded up to the start size times a power of two, under 0.4% more), when three quarters of
 * its entries are taken or when a new session finds both its sets full: a table sized for the
 * bound from the start would be touched all over by a few thousand sessions (their keys are
 * random), 5 MiB of memory for the default 100,000 whatever the load. No session is dropped
 * to make room before the table has reached its bound.
 */
static pthread_rwlock_t map_lock = PTHREAD_RWLOCK_INITIALIZER;
/* Live sessions dropped to make room for a new one (both its sets full). */
static atomic_uint_fast64_t session_evictions;
static struct mem_set *sets;
static size_t n_sets, max_sets = DEFAULT_SETS;
static atomic_size_t n_used; /* entries holding a session (live or expired, not yet reused) */
static uint64_t idle_ms = 3600 * 1000;

static void free_sets(struct mem_set *s, size_t n)
{
    if (!s)
        return; /* the table another thread (or this one) installed first */
    for (size_t i = 0; i < n; i++) {
        for (int w = 0; w < SESSION_WAYS; w++)
            free(s[i].ways[w].value);
        pthread_mutex_destroy(&s[i].lock);
    }
    free(s);
}

/* Where a default mutex is all zero bytes (glibc), zeroed sets are ready as they are. */
static void init_locks(struct mem_set *s, size_t n)
{
    static const pthread_mutex_t initializer = PTHREAD_MUTEX_INITIALIZER;
    static const pthread_mutex_t zero;
    if (memcmp(&initializer, &zero, sizeof zero) != 0)
        for (size_t i = 0; i < n; i++)
            pthread_mutex_init(&s[i].lock, NULL);
}

/* calloc'd memory stays unbacked until used, as long as nothing writes to it. */
static struct mem_set *alloc_sets(size_t n)
{
    struct mem_set *s = calloc(n, sizeof *s);
    if (s)
        init_locks(s, n);
    return s;
}

/* The start size for a bound of `bound` sets; *max gets the bound used (the start × 2^k). */
static size_t first_size(size_t bound, size_t *max)
{
    size_t first = bound, shift = 0;
    while (first > INITIAL_SETS) {
        shift++;
        first = (bound + ((size_t)1 << shift) - 1) >> shift;
    }
    *max = first << shift;
    return first;
}

/* Takes the read lock and makes sure a table exists (defaults on first use). */
static int map_acquire(void)
{
    for (;;) {
        pthread_rwlock_rdlock(&map_lock);
        if (sets)
            return 0;
        pthread_rwlock_unlock(&map_lock);
        size_t bound, n = first_size(DEFAULT_SETS, &bound);
        struct mem_set *fresh = alloc_sets(n);
        if (!fresh)
            return -1;
        pthread_rwlock_wrlock(&map_lock);
        if (!sets) {
            sets = fresh;
            n_sets = n;
            max_sets = bound;
            atomic_store(&n_used, 0);
            fresh = NULL;
        }
        pthread_rwlock_unlock(&map_lock);
        free_sets(fresh, n);
    }
}

/*
 * Two choices: a key may live in either of two sets (from two parts of its hash), and a new
 * key goes to the one with room, else the less recently used entry of the two goes. With one
 * set a key, a table sized for N sessions evicts some 14% of them early (sets of 8 fill
 * unevenly); with two, under 5% at N live sessions, under 1% at 0.9 N. Both sets are locked
 * (in index order, once when they are the same) for every operation on the key.
 */
struct mem_pair {
    struct mem_set *a, *b; /* a <= b; b == a when both choices are one set */
};

/* The two sets of a key in a table of n sets (from the first 16 bytes of its hash). */
static void key_sets(const uint8_t *h, size_t n, size_t *i, size_t *j)
{
    uint64_t v1, v2;
    memcpy(&v1, h, sizeof v1);
    memcpy(&v2, h + 8, sizeof v2);
    *i = (size_t)(v1 % n);
    *j = (size_t)(v2 % n);
}

static struct mem_pair pair_lock(const uint8_t *h)
{
    size_t i, j;
    key_sets(h, n_sets, &i, &j);
    struct mem_set *x = &sets[i], *y = &sets[j];
    struct mem_pair p = {x < y ? x : y, x < y ? y : x};
    pthread_mutex_lock(&p.a->lock);
    if (p.b != p.a)
        pthread_mutex_lock(&p.b->lock);
    return p;
}

static void pair_unlock(struct mem_pair p)
{
    if (p.b != p.a)
        pthread_mutex_unlock(&p.b->lock);
    pthread_mutex_unlock(&p.a->lock);
}

static void entry_clear(struct mem_entry *e)
{
    if (e->last_use_ms)
        atomic_fetch_sub_explicit(&n_used, 1, memory_order_relaxed);
    free(e->value);
    memset(e, 0, sizeof *e);
}

/*
 * Whether an entry last used at `last` has been idle for `ttl` at `now`. Each caller reads
 * `now` before it takes the set's lock, so another worker may have recorded a later use
 * while it waited: that entry is fresh, not idle (now - last would wrap around).
 */
static int entry_idle(uint64_t last, uint32_t ttl, uint64_t now)
{
    return now > last && now - last >= ttl;
}

static int entry_live(const struct mem_entry *e, uint64_t now)
{
    return e->last_use_ms && !entry_idle(e->last_use_ms, e->ttl_ms, now);
}

/* Records a use at `now`, never moving the last use back. */
static void entry_touch(struct mem_entry *e, uint64_t now)
{
    if (now > e->last_use_ms)
        e->last_use_ms = now;
}

/* Finds the key in s, expiring it when idle too long. Caller holds s->lock. */
static struct mem_entry *mem_find(struct mem_set *s, const uint8_t *h, uint64_t now)
{
    for (int w = 0; w < SESSION_WAYS; w++) {
        struct mem_entry *e = &s->ways[w];
        if (!e->last_use_ms || memcmp(e->key_hash, h, MEM_KEY_BYTES) != 0)
            continue;
        if (entry_idle(e->last_use_ms, e->ttl_ms, now)) {
            entry_clear(e);
            return NULL;
        }
        return e;
    }
    return NULL;
}

/* Finds the key in either set of its pair. */
static struct mem_entry *pair_find(struct mem_pair p, const uint8_t *h, uint64_t now)
{
    struct mem_entry *e = mem_find(p.a, h, now);
    return e || p.b == p.a ? e : mem_find(p.b, h, now);
}

/* Live entries of a set now. */
static int set_live(const struct mem_set *s, uint64_t now)
{
    int n = 0;
    for (int w = 0; w < SESSION_WAYS; w++)
        n += entry_live(&s->ways[w], now);
    return n;
}

/* A free (or expired) way of s, or NULL. */
static struct mem_entry *set_room(struct mem_set *s, uint64_t now)
{
    for (int w = 0; w < SESSION_WAYS; w++)
        if (!entry_live(&s->ways[w], now))
            return &s->ways[w];
    return NULL;
}

static void mem_get(void *ctx, const char *key, uint64_t ttl, void *loop, mcp_session_get_cb *cb,
                    void *arg)
{
    (void)ctx;
    (void)ttl; /* each entry keeps the lifetime it was stored with */
    (void)loop;
    uint8_t h[GW_SHA256_LEN];
    gw_sha256(key, strlen(key), h);
    if (map_acquire() != 0) {
        cb(arg, -1, NULL, 0);
        return;
    }
    uint64_t now = gw_mono_ms() + 1; /* never 0: 0 marks a free entry */
    char *copy = NULL;
    size_t len = 0;
    int rc = 1;
    struct mem_pair p = pair_lock(h);
    struct mem_entry *e = pair_find(p, h, now);
    if (e) {
        entry_touch(e, now);
        copy = mem_unpack(e->value, e->len, &len);
        rc = copy ? 0 : -1;
    }
    pair_unlock(p);
    pthread_rwlock_unlock(&map_lock);
    cb(arg, rc, copy, len);
    free(copy);
}

/*
 * mem_get without the encoding: the memory store's session unpacked straight into s, for
 * mcp_session_lookup (the store's own bytes, so no JSON between them). rc as mem_get's.
 */
static int mem_get_session(const char *key, struct mcp_session *s)
{
    uint8_t h[GW_SHA256_LEN];
    gw_sha256(key, strlen(key), h);
    memset(s, 0, sizeof *s);
    if (map_acquire() != 0)
        return -1;
    uint64_t now = gw_mono_ms() + 1; /* never 0: 0 marks a free entry */
    int rc = 1;
    struct mem_pair p = pair_lock(h);
    struct mem_entry *e = pair_find(p, h, now);
    if (e) {
        entry_touch(e, now);
        rc = mem_unpack_session(e->value, e->len, s) == 0 ? 0 : -1;
    }
    pair_unlock(p);
    pthread_rwlock_unlock(&map_lock);
    return rc;
}

/*
 * Doubles the table (up to max_sets) if it still has `seen` sets. A set index is the key's
 * hash modulo the number of sets, so with twice the sets an entry of set k belongs in set k or
 * k + n of the new table, by the same hash that placed it: each old set splits into two new
 * ones, never more than 8 entries into either, in one sequential pass. Expired entries are
 * dropped on the way.
 */
static void map_grow(size_t seen)
{
    size_t n = seen * 2;
    if (n > max_sets)
        return;
    /*
     * The new table is written through before the lock is taken: its first touch (a page
     * fault per 4 KiB, some microseconds each) would otherwise be paid with every session
     * operation of every worker waiting. Held, the move takes about 20 ns a session (2 ms at
     * 100,000); the operation that grows the table also pays for the faults (20 ms at 50,000
     * sessions on a machine whose faults cost 14 µs).
     */
    struct mem_set *fresh = malloc(n * sizeof *fresh);
    if (!fresh)
        return;
    explicit_bzero(fresh, n * sizeof *fresh); /* memset may be turned into calloc, untouched */
    init_locks(fresh, n);
    pthread_rwlock_wrlock(&map_lock);
    if (!sets || n_sets != seen || n > max_sets) {
        pthread_rwlock_unlock(&map_lock);
        free(fresh); /* another thread grew it, or it was replaced */
        return;
    }
    uint64_t now = gw_mono_ms() + 1;
    size_t used = 0;
    for (size_t k = 0; k < n_sets; k++) {
        int fill[2] = {0, 0};
        for (int w = 0; w < SESSION_WAYS; w++) {
            struct mem_entry *e = &sets[k].ways[w];
            if (!entry_live(e, now)) {
                free(e->value);
                continue;
            }
            uint64_t v;
            memcpy(&v, e->key_hash, sizeof v);
            if (v % n_sets != k)
                memcpy(&v, e->key_hash + 8, sizeof v); /* its second choice placed it */
            int half = v % n != k;
            fresh[k + (half ? n_sets : 0)].ways[fill[half]++] = *e;
            used++;
        }
        pthread_mutex_destroy(&sets[k].lock);
    }
    free(sets);
    sets = fresh;
    n_sets = n;
    atomic_store(&n_used, used);
    pthread_rwlock_unlock(&map_lock);
}

static int mem_put(void *ctx, const char *key, const char *value, size_t len, uint64_t ttl,
                   void *loop)
{
    (void)ctx;
    (void)loop;
    uint8_t h[GW_SHA256_LEN];
    gw_sha256(key, strlen(key), h);
    uint8_t *copy = NULL;
    uint32_t packed_len = 0;
    if (mem_pack(value, len, &copy, &packed_len) != 0) {
        free(copy);
        return -1;
    }
    int grew = 0;
retry:
    if (map_acquire() != 0) {
        free(copy);
        return -1;
    }
    uint64_t now = gw_mono_ms() + 1;
    struct mem_pair p = pair_lock(h);
    struct mem_entry *e = pair_find(p, h, now);
    if (!e) {
        /* A new key: the set of the two with fewer live sessions. */
        struct mem_set *first = p.a, *second = p.b;
        if (p.b != p.a && set_live(p.b, now) < set_live(p.a, now)) {
            first = p.b;
            second = p.a;
        }
        e = set_room(first, now);
        if (!e && second != first)
            e = set_room(second, now);
    }
    if (!e && !grew && n_sets < max_sets) {
        /* Both full while the table may grow: it grows, and nobody is dropped. */
        size_t seen = n_sets;
        pair_unlock(p);
        pthread_rwlock_unlock(&map_lock);
        map_grow(seen);
        grew = 1;
        goto retry;
    }
    if (!e) {
        /* Both full: the least recently used session of the two goes (it will get 404). */
        e = &p.a->ways[0];
        for (int w = 0; w < SESSION_WAYS; w++) {
            if (p.a->ways[w].last_use_ms < e->last_use_ms)
                e = &p.a->ways[w];
            if (p.b->ways[w].last_use_ms < e->last_use_ms)
                e = &p.b->ways[w];
        }
        atomic_fetch_add_explicit(&session_evictions, 1, memory_order_relaxed);
    }
    entry_clear(e);
    memcpy(e->key_hash, h, MEM_KEY_BYTES);
    e->value = copy;
    e->len = packed_len;
    e->ttl_ms = ttl == 0 ? 1 : ttl > UINT32_MAX ? UINT32_MAX : (uint32_t)ttl;
    entry_touch(e, now);
    size_t used = atomic_fetch_add_explicit(&n_used, 1, memory_order_relaxed) + 1;
    size_t seen = n_sets;
    int crowded = n_sets < max_sets && used * 4 > n_sets * SESSION_WAYS * 3;
    pair_unlock(p);
    pthread_rwlock_unlock(&map_lock);
    if (crowded)
        map_grow(seen);
    return 0;
}

static void mem_del(void *ctx, const char *key, void *loop)
{
    (void)ctx;
    (void)loop;
    uint8_t h[GW_SHA256_LEN];
    gw_sha256(key, strlen(key), h);
    if (map_acquire() != 0)
        return;
    struct mem_pair p = pair_lock(h);
    struct mem_entry *e = pair_find(p, h, gw_mono_ms() + 1);
    if (e)
        entry_clear(e);
    pair_unlock(p);
    pthread_rwlock_unlock(&map_lock);
}

static const struct mcp_session_store memory_store = {"memory", mem_get, mem_put, mem_del, NULL};
static const struct mcp_session_store *store = &memory_store;

void mcp_sessions_use(const struct mcp_session_store *s)
{
    store = s ? s : &memory_store;
}

const char *mcp_sessions_store_name(void)
{
    return store->name;
}

int mcp_session_configure(size_t max_entries, uint64_t idle)
{
    /* An eighth more slots than entries: at `max_entries` live sessions, under 1% go early. */
    size_t slots = max_entries + max_entries / 8;
    size_t bound = (slots + SESSION_WAYS - 1) / SESSION_WAYS;
    if (bound == 0)
        bound = 1;
    size_t n = first_size(bound, &bound);
    struct mem_set *fresh = alloc_sets(n);
    if (!fresh)
        return -1;
    pthread_rwlock_wrlock(&map_lock);
    struct mem_set *old = sets;
    size_t old_n = n_sets;
    sets = fresh;
    n_sets = n;
    max_sets = bound;
    atomic_store(&n_used, 0);
    idle_ms = idle ? idle : 1;
    pthread_rwlock_unlock(&map_lock);
    free_sets(old, old_n);
    return 0;
}

void mcp_session_shutdown(void)
{
    pthread_rwlock_wrlock(&map_lock);
    struct mem_set *old = sets;
    size_t old_n = n_sets;
    sets = NULL;
    n_sets = 0;
    pthread_rwlock_unlock(&map_lock);
    free_sets(old, old_n);
}

size_t mcp_session_table_bytes(void)
{
    pthread_rwlock_rdlock(&map_lock);
    size_t n = n_sets * sizeof(struct mem_set);
    pthread_rwlock_unlock(&map_lock);
    return n;
}

uint64_t mcp_session_evictions(void)
{
    return atomic_load_explicit(&session_evictions, memory_order_relaxed);
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
            n += entry_live(&sets[i].ways[w], now);
        pthread_mutex_unlock(&sets[i].lock);
    }
    pthread_rwlock_unlock(&map_lock);
    return n;
}

/* ---- sessions ---- */

/* The store key of a client id: "tg:s:" and the hex SHA-256 of the id (never the id). */
static int key_of(const char *id, char key[KEY_LEN + 1])
{
    size_t len = id ? strnlen(id, MCP_SESSION_MAX_ID + 1) : 0;
    if (len == 0 || len > MCP_SESSION_MAX_ID)
        return -1;
    char hex[65];
    gw_sha256_hex(id, len, hex);
    snprintf(key, KEY_LEN + 1, "%s%s", KEY_PREFIX, hex);
    return 0;
}

unsigned mcp_client_caps_of(const json_t *capabilities)
{
    const json_t *e = json_object_get(capabilities, "elicitation");
    if (!json_is_object(e))
        return 0;
    /* 2025-06-18 declares {} (form); 2025-11-25 may name the modes, {} still meaning form. */
    const json_t *form = json_object_get(e, "form"), *url = json_object_get(e, "url");
    unsigned caps = 0;
    if (json_object_size(e) == 0 || json_is_object(form) || (!form && !url))
        caps |= MCP_CLIENT_ELICIT_FORM;
    if (json_is_object(url))
        caps |= MCP_CLIENT_ELICIT_URL;
    return caps;
}

int mcp_session_create(const char *issuer, const char *subject, const char *route,
                       size_t n_backends, const char *backend0, char *id_out, void *loop)
{
    return mcp_session_create_caps(issuer, subject, route, n_backends, backend0, 0, id_out, loop);
}

int mcp_session_create_caps(const char *issuer, const char *subject, const char *route,
                            size_t n_backends, const char *backend0, unsigned client_caps,
                            char *id_out, void *loop)
{
    uint8_t raw[32];
    struct gw_buf b64 = {0};
    char key[KEY_LEN + 1];
    struct mcp_session s = {0};
    char *value = NULL;
    size_t len = 0;
    int rc = -1;
    if (n_backends == 0 || n_backends > MCP_SESSION_MAX_BACKENDS || !route ||
        strlen(route) >= sizeof s.route ||
        (backend0 && strlen(backend0) > MCP_SESSION_MAX_BACKEND_ID))
        return -1;
    if (gw_random_bytes(raw, sizeof raw) != 0 || jwt_b64url_encode(raw, sizeof raw, &b64) != 0 ||
        b64.len != MCP_SESSION_ID_LEN)
        goto out;
    mcp_session_owner(issuer, subject, s.owner);
    snprintf(s.route, sizeof s.route, "%s", route);
    s.n_backends = n_backends;
    s.client_caps = client_caps;
    if (backend0 && !(s.backends[0] = strdup(backend0)))
        goto out;
    if (mcp_session_encode(&s, &value, &len) != 0 || key_of(b64.data, key) != 0 ||
        store->put(store->ctx, key, value, len, idle_ms, loop) != 0)
        goto out;
    memcpy(id_out, b64.data, MCP_SESSION_ID_LEN + 1);
    rc = 0;
out:
    free(value);
    mcp_session_clear(&s);
    gw_buf_free(&b64);
    return rc;
}

struct lookup {
    uint8_t owner[32];
    char route[72];
    mcp_session_lookup_cb *cb;
    void *arg;
};

/* The answer of a lookup that found s (rc 0): refused (1) unless its owner and route match. */
static int lookup_check(int rc, const struct mcp_session *s, const uint8_t owner[32],
                        const char *route)
{
    if (rc == 0 && (!gw_equal_ct(s->owner, owner, sizeof s->owner) || strcmp(s->route, route)))
        return 1;
    return rc;
}

static void on_get(void *arg, int rc, const char *value, size_t len)
{
    struct lookup *lk = arg;
    struct mcp_session s = {0};
    if (rc == 0 && mcp_session_decode(value, len, &s) != 0)
        rc = -1; /* not what toolgate stores: the store cannot be trusted to answer */
    rc = lookup_check(rc, &s, lk->owner, lk->route);
    lk->cb(lk->arg, rc, rc == 0 ? &s : NULL);
    mcp_session_clear(&s);
    free(lk);
}

void mcp_session_lookup(const char *id, const uint8_t owner[32], const char *route, void *loop,
                        mcp_session_lookup_cb *cb, void *arg)
{
    char key[KEY_LEN + 1];
    /* An id of another shape than the ones toolgate issues was not issued by it. */
    if (!id || strlen(id) != MCP_SESSION_ID_LEN || key_of(id, key) != 0 || !route ||
        strlen(route) >= sizeof((struct lookup *)0)->route) {
        cb(arg, 1, NULL);
        return;
    }
    if (store == &memory_store) {
        /* In process: no encoding to go through, and the answer is given here, as mem_get's. */
        struct mcp_session s;
        int rc = lookup_check(mem_get_session(key, &s), &s, owner, route);
        cb(arg, rc, rc == 0 ? &s : NULL);
        mcp_session_clear(&s);
        return;
    }
    struct lookup *lk = malloc(sizeof *lk);
    if (!lk) {
        cb(arg, -1, NULL);
        return;
    }
    memcpy(lk->owner, owner, sizeof lk->owner);
    snprintf(lk->route, sizeof lk->route, "%s", route);
    lk->cb = cb;
    lk->arg = arg;
    store->get(store->ctx, key, idle_ms, loop, on_get, lk);
}

int mcp_session_update(const char *id, const struct mcp_session *s, void *loop)
{
    char key[KEY_LEN + 1];
    char *value = NULL;
    size_t len = 0;
    int rc = -1;
    if (key_of(id, key) == 0 && mcp_session_encode(s, &value, &len) == 0)
        rc = store->put(store->ctx, key, value, len, idle_ms, loop);
    free(value);
    return rc;
}

void mcp_session_delete(const char *id, void *loop)
{
    char key[KEY_LEN + 1];
    if (key_of(id, key) == 0)
        store->del(store->ctx, key, loop);
}
