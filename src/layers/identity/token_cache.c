#include "layers/identity/token_cache.h"
#include "core/request.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct cache_entry {
    uint8_t key[GW_SHA256_LEN];
    int used;
    uint64_t last_use; /* the set's tick at the last hit or store */
    struct gw_identity id;
};

struct cache_set {
    pthread_mutex_t lock;
    uint64_t tick;
    struct cache_entry ways[TOKEN_CACHE_WAYS];
};

struct token_cache {
    atomic_long refs; /* generations sharing it (token_cache_hold) */
    size_t n_sets;
    struct cache_set *sets;
};

struct token_cache *token_cache_new(size_t entries)
{
    if (entries == 0)
        return NULL;
    struct token_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    atomic_init(&c->refs, 1);
    c->n_sets = (entries + TOKEN_CACHE_WAYS - 1) / TOKEN_CACHE_WAYS;
    c->sets = calloc(c->n_sets, sizeof *c->sets);
    if (!c->sets) {
        free(c);
        return NULL;
    }
    for (size_t i = 0; i < c->n_sets; i++)
        pthread_mutex_init(&c->sets[i].lock, NULL);
    return c;
}

struct token_cache *token_cache_hold(struct token_cache *c)
{
    if (c)
        atomic_fetch_add(&c->refs, 1);
    return c;
}

void token_cache_free(struct token_cache *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    for (size_t i = 0; i < c->n_sets; i++) {
        for (int w = 0; w < TOKEN_CACHE_WAYS; w++)
            gw_identity_clear(&c->sets[i].ways[w].id);
        pthread_mutex_destroy(&c->sets[i].lock);
    }
    free(c->sets);
    free(c);
}

static struct cache_set *set_for(struct token_cache *c, const uint8_t *key)
{
    uint64_t h;
    memcpy(&h, key, sizeof h); /* the key is a hash already: any 8 bytes are uniform */
    return &c->sets[h % c->n_sets];
}

static char *dup_or_null(const char *s, int *fail)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *fail = 1;
    return d;
}

static char **strv_dup(char *const *v, size_t n, int *fail)
{
    if (!v)
        return NULL;
    char **d = calloc(n + 1, sizeof *d);
    if (!d) {
        *fail = 1;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        d[i] = dup_or_null(v[i], fail);
    return d;
}

int identity_copy(struct gw_identity *dst, const struct gw_identity *src)
{
    int fail = 0;
    memset(dst, 0, sizeof *dst);
    dst->verified = src->verified;
    dst->expires_at = src->expires_at;
    memcpy(dst->token_hash, src->token_hash, sizeof dst->token_hash);
    dst->subject = dup_or_null(src->subject, &fail);
    dst->issuer = dup_or_null(src->issuer, &fail);
    dst->tenant = dup_or_null(src->tenant, &fail);
    dst->client_id = dup_or_null(src->client_id, &fail);
    dst->roles = strv_dup(src->roles, src->n_roles, &fail);
    dst->n_roles = src->n_roles;
    dst->scopes = strv_dup(src->scopes, src->n_scopes, &fail);
    dst->n_scopes = src->n_scopes;
    if (fail) {
        gw_identity_clear(dst);
        return -1;
    }
    return 0;
}

int token_cache_get(struct token_cache *c, const uint8_t key[GW_SHA256_LEN], int64_t now_s,
                    struct gw_identity *out)
{
    if (!c)
        return 0;
    struct cache_set *s = set_for(c, key);
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    for (int w = 0; w < TOKEN_CACHE_WAYS; w++) {
        struct cache_entry *e = &s->ways[w];
        if (!e->used || memcmp(e->key, key, GW_SHA256_LEN) != 0)
            continue;
        if (now_s >= e->id.expires_at) {
            /* Expired: drop it now so it cannot be served even by a clock step back. */
            gw_identity_clear(&e->id);
            e->used = 0;
            break;
        }
        e->last_use = ++s->tick;
        rc = identity_copy(out, &e->id) == 0 ? 1 : -1;
        break;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int token_cache_put(struct token_cache *c, const uint8_t key[GW_SHA256_LEN],
                    const struct gw_identity *id)
{
    if (!c)
        return 0;
    struct gw_identity copy;
    if (identity_copy(&copy, id) != 0)
        return -1;
    struct cache_set *s = set_for(c, key);
    pthread_mutex_lock(&s->lock);
    struct cache_entry *victim = NULL;
    for (int w = 0; w < TOKEN_CACHE_WAYS && !victim; w++)
        if (s->ways[w].used && memcmp(s->ways[w].key, key, GW_SHA256_LEN) == 0)
            victim = &s->ways[w]; /* replace an older copy of the same token */
    for (int w = 0; w < TOKEN_CACHE_WAYS && !victim; w++)
        if (!s->ways[w].used)
            victim = &s->ways[w];
    if (!victim) {
        victim = &s->ways[0];
        for (int w = 1; w < TOKEN_CACHE_WAYS; w++)
            if (s->ways[w].last_use < victim->last_use)
                victim = &s->ways[w];
    }
    struct gw_identity old = victim->id;
    victim->id = copy;
    memcpy(victim->key, key, GW_SHA256_LEN);
    victim->used = 1;
    victim->last_use = ++s->tick;
    pthread_mutex_unlock(&s->lock);
    gw_identity_clear(&old); /* free outside the lock */
    return 0;
}

size_t token_cache_count(struct token_cache *c)
{
    size_t n = 0;
    if (!c)
        return 0;
    for (size_t i = 0; i < c->n_sets; i++) {
        pthread_mutex_lock(&c->sets[i].lock);
        for (int w = 0; w < TOKEN_CACHE_WAYS; w++)
            n += c->sets[i].ways[w].used != 0;
        pthread_mutex_unlock(&c->sets[i].lock);
    }
    return n;
}
