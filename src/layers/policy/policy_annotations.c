/*
 * policy_annotations: what toolgate has learned of each tool's annotations, from the tools/list
 * answers it relayed, for rule conditions on them (policy_hints.c).
 *
 * One table per configuration generation, keyed by the route's path and the tool's name as the
 * client sees it (on a federated route, the prefixed name, which names its backend). It is the
 * one mutable part of a compiled policy and has its own lock. It is bounded: once
 * POLICY_ANNOTATION_CACHE entries are held, tools not yet in it stay unknown (their hints read
 * as the riskiest defaults) while the entries held keep being updated. A reload starts an empty
 * table: until the next tools/list answer, every tool reads as unknown, which fails closed.
 */
#include "layers/policy/policy-int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct annot_entry {
    char *key; /* "route path\0tool name", key_len bytes; NULL = empty slot */
    size_t key_len;
    uint64_t hash;
    struct policy_annotations a;
};

struct policy_annot_cache {
    pthread_mutex_t lock;
    struct annot_entry *slots; /* open addressing, 2 * POLICY_ANNOTATION_CACHE slots */
    size_t cap, used;
};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

struct policy_annot_cache *policy_annot_cache_new(void)
{
    struct policy_annot_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cap = 2 * POLICY_ANNOTATION_CACHE;
    c->slots = calloc(c->cap, sizeof *c->slots);
    if (!c->slots || pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c->slots);
        free(c);
        return NULL;
    }
    return c;
}

void policy_annot_cache_free(struct policy_annot_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->cap; i++)
        free(c->slots[i].key);
    free(c->slots);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Builds the key in buf (size bytes); returns its length, or 0 when it does not fit. */
static size_t make_key(char *buf, size_t size, const char *route, const char *tool, size_t tlen)
{
    size_t rl = route ? strlen(route) : 0;
    if (rl + 1 + tlen > size || tlen == 0)
        return 0;
    if (rl)
        memcpy(buf, route, rl);
    buf[rl] = '\0';
    memcpy(buf + rl + 1, tool, tlen);
    return rl + 1 + tlen;
}

/* The slot holding key, or the empty slot where it would go. Called with the lock held. */
static struct annot_entry *slot_for(struct policy_annot_cache *c, const char *key, size_t len,
                                    uint64_t h)
{
    size_t i = (size_t)h & (c->cap - 1);
    for (;;) {
        struct annot_entry *e = &c->slots[i];
        if (!e->key || (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0))
            return e;
        i = (i + 1) & (c->cap - 1);
    }
}

void policy_annot_learn(struct policy_annot_cache *c, const char *route, const char *tool,
                        size_t tool_len, const struct policy_annotations *a)
{
    char key[POLICY_MAX_TARGET + 512];
    size_t len = c ? make_key(key, sizeof key, route, tool, tool_len) : 0;
    if (!len)
        return;
    uint64_t h = fnv1a(key, len);
    pthread_mutex_lock(&c->lock);
    struct annot_entry *e = slot_for(c, key, len, h);
    if (!e->key && c->used < POLICY_ANNOTATION_CACHE) {
        e->key = malloc(len);
        if (e->key) {
            memcpy(e->key, key, len);
            e->key_len = len;
            e->hash = h;
            c->used++;
        }
    }
    if (e->key)
        e->a = *a;
    pthread_mutex_unlock(&c->lock);
}

int policy_annot_lookup(struct policy_annot_cache *c, const char *route, const char *tool,
                        size_t tool_len, struct policy_annotations *out)
{
    char key[POLICY_MAX_TARGET + 512];
    size_t len = c ? make_key(key, sizeof key, route, tool, tool_len) : 0;
    memset(out, 0, sizeof *out);
    if (!len)
        return 0;
    uint64_t h = fnv1a(key, len);
    pthread_mutex_lock(&c->lock);
    struct annot_entry *e = slot_for(c, key, len, h);
    if (e->key)
        *out = e->a;
    pthread_mutex_unlock(&c->lock);
    return out->known;
}
