/*
 * policy_index: the rule index by target name, built once per config generation.
 *
 * Exact names go into a hash map (name -> rule indexes). Globs are bucketed by their literal
 * prefix (the text before the first `*`) in a second map, and the distinct prefix lengths are
 * kept: a lookup probes the prefix map only at those lengths, then glob-matches the few
 * patterns found. A rule without a target list is the glob "*" (prefix length 0).
 */
#include "layers/policy/policy-int.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static struct policy_map_entry *map_find(const struct policy_map *m, const char *key, size_t len,
                                         uint64_t h)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        struct policy_map_entry *e = &m->slots[i];
        if (!e->key)
            return NULL;
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
            return e;
    }
}

static int map_grow(struct policy_map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    struct policy_map_entry *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        struct policy_map_entry *e = &m->slots[i];
        if (!e->key)
            continue;
        size_t j = (size_t)e->hash & (ncap - 1);
        while (ns[j].key)
            j = (j + 1) & (ncap - 1);
        ns[j] = *e;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

/* Appends val under key (borrowed). Values arrive in ascending order; repeats are dropped. */
static int map_add(struct policy_map *m, const char *key, size_t len, uint32_t val)
{
    uint64_t h = hash_bytes(key, len);
    struct policy_map_entry *e = map_find(m, key, len, h);
    if (!e) {
        if ((m->used + 1) * 2 > m->cap && map_grow(m) != 0)
            return -1;
        size_t j = (size_t)h & (m->cap - 1);
        while (m->slots[j].key)
            j = (j + 1) & (m->cap - 1);
        e = &m->slots[j];
        e->key = key;
        e->len = len;
        e->hash = h;
        m->used++;
    }
    if (e->n > 0 && e->vals[e->n - 1] == val)
        return 0;
    if (e->n == e->cap) {
        size_t ncap = e->cap ? e->cap * 2 : 2;
        uint32_t *nv = realloc(e->vals, ncap * sizeof *nv);
        if (!nv)
            return -1;
        e->vals = nv;
        e->cap = ncap;
    }
    e->vals[e->n++] = val;
    return 0;
}

static void map_free(struct policy_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].vals);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

void policy_index_free(struct policy_index *ix)
{
    map_free(&ix->exact);
    map_free(&ix->prefixes);
    free(ix->globs);
    free(ix->prefix_lens);
    memset(ix, 0, sizeof *ix);
}

static int add_glob(struct policy_index *ix, const char *pat, size_t len, uint32_t rule,
                    size_t *cap)
{
    if (ix->n_globs == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct policy_glob *ng = realloc(ix->globs, ncap * sizeof *ng);
        if (!ng)
            return -1;
        ix->globs = ng;
        *cap = ncap;
    }
    ix->globs[ix->n_globs++] = (struct policy_glob){pat, len, rule};
    return 0;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static int add_target(struct policy_index *ix, const char *name, size_t len, uint32_t r,
                      size_t *gcap)
{
    return memchr(name, '*', len) ? add_glob(ix, name, len, r, gcap)
                                  : map_add(&ix->exact, name, len, r);
}

/* Buckets an index's globs by literal prefix once all are added. */
static int finish_globs(struct policy_index *ix)
{
    if (ix->n_globs == 0)
        return 0;
    ix->prefix_lens = calloc(ix->n_globs, sizeof *ix->prefix_lens);
    if (!ix->prefix_lens)
        return -1;
    for (size_t g = 0; g < ix->n_globs; g++) {
        const struct policy_glob *gl = &ix->globs[g];
        size_t plen = (size_t)((const char *)memchr(gl->pattern, '*', gl->len) - gl->pattern);
        if (map_add(&ix->prefixes, gl->pattern, plen, (uint32_t)g) != 0)
            return -1;
        ix->prefix_lens[g] = plen;
    }
    qsort(ix->prefix_lens, ix->n_globs, sizeof *ix->prefix_lens, cmp_size);
    size_t k = 0;
    for (size_t g = 0; g < ix->n_globs; g++)
        if (k == 0 || ix->prefix_lens[k - 1] != ix->prefix_lens[g])
            ix->prefix_lens[k++] = ix->prefix_lens[g];
    ix->n_prefix_lens = k;
    return 0;
}

static char *fold(const char *s, size_t len)
{
    char *f = malloc(len + 1);
    for (size_t i = 0; f && i < len; i++)
        f[i] = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
    if (f)
        f[len] = '\0';
    return f;
}

int policy_index_build(struct policy_config *pc)
{
    static const char star[] = "*";
    size_t gcap[POLICY_ACTION_COUNT] = {0}, fcap[POLICY_ACTION_COUNT] = {0};
    size_t names_cap = 0;
    for (size_t r = 0; r < pc->n_rules; r++) {
        const struct policy_rule *rule = &pc->rules[r];
        struct policy_index *ix = &pc->index[rule->action];
        int folds = rule->effect == POLICY_FORBID && rule->action != POLICY_ACTION_RESOURCE;
        if (rule->targets.n == 0) {
            if (add_glob(ix, star, 1, (uint32_t)r, &gcap[rule->action]) != 0)
                return -1;
            continue; /* "*" matches any case already */
        }
        for (size_t t = 0; t < rule->targets.n; t++) {
            const char *name = rule->targets.v[t];
            size_t len = strlen(name);
            if (add_target(ix, name, len, (uint32_t)r, &gcap[rule->action]) != 0)
                return -1;
            if (!folds)
                continue;
            if (pc->n_folded_names == names_cap) {
                size_t nc = names_cap ? names_cap * 2 : 16;
                char **nv = realloc(pc->folded_names, nc * sizeof *nv);
                if (!nv)
                    return -1;
                pc->folded_names = nv;
                names_cap = nc;
            }
            char *f = fold(name, len);
            if (!f)
                return -1;
            pc->folded_names[pc->n_folded_names++] = f;
            if (add_target(&pc->folded[rule->action], f, len, (uint32_t)r, &fcap[rule->action]) !=
                0)
                return -1;
        }
    }
    for (int a = 0; a < POLICY_ACTION_COUNT; a++)
        if (finish_globs(&pc->index[a]) != 0 || finish_globs(&pc->folded[a]) != 0)
            return -1;
    return 0;
}

/*
 * `*` matches any run of bytes (none included); every other byte is literal. The classic
 * backtrack-to-last-star walk: linear in practice, bounded by len(s) * len(pattern).
 */
int policy_glob_match(const char *pat, size_t plen, const char *s, size_t slen)
{
    size_t p = 0, i = 0;
    size_t star_p = (size_t)-1, star_i = 0;
    while (i < slen) {
        if (p < plen && pat[p] == '*') {
            star_p = p++;
            star_i = i;
        } else if (p < plen && pat[p] == s[i]) {
            p++;
            i++;
        } else if (star_p != (size_t)-1) {
            p = star_p + 1;
            i = ++star_i;
        } else {
            return 0;
        }
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}

static int push(uint32_t **out, size_t *cap, size_t n, uint32_t v)
{
    if (n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 32;
        uint32_t *nv = realloc(*out, ncap * sizeof *nv);
        if (!nv)
            return -1;
        *out = nv;
        *cap = ncap;
    }
    (*out)[n] = v;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

long policy_index_lookup(const struct policy_config *pc, enum policy_action action,
                         const char *target, size_t len, uint32_t **out, size_t *cap)
{
    return policy_index_lookup_in(&pc->index[action], target, len, out, cap);
}

long policy_index_lookup_in(const struct policy_index *ix, const char *target, size_t len,
                            uint32_t **out, size_t *cap)
{
    size_t n = 0;
    const struct policy_map_entry *e = map_find(&ix->exact, target, len, hash_bytes(target, len));
    if (e)
        for (size_t i = 0; i < e->n; i++)
            if (push(out, cap, n++, e->vals[i]) != 0)
                return -1;
    size_t from_globs = n;
    for (size_t k = 0; k < ix->n_prefix_lens && ix->prefix_lens[k] <= len; k++) {
        size_t plen = ix->prefix_lens[k];
        const struct policy_map_entry *pe =
            map_find(&ix->prefixes, target, plen, hash_bytes(target, plen));
        if (!pe)
            continue;
        for (size_t i = 0; i < pe->n; i++) {
            const struct policy_glob *g = &ix->globs[pe->vals[i]];
            if (policy_glob_match(g->pattern, g->len, target, len))
                if (push(out, cap, n++, g->rule) != 0)
                    return -1;
        }
    }
    /* Exact hits are already ascending; glob hits may interleave with them. */
    if (n > from_globs && n > 1) {
        qsort(*out, n, sizeof **out, cmp_u32);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (k == 0 || (*out)[k - 1] != (*out)[i])
                (*out)[k++] = (*out)[i];
        n = k;
    }
    return (long)n;
}
