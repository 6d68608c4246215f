/*
 * limits_cost: money as integer micro-units, tool globs, cost estimates from arguments, and
 * the hashes the layer keys its state by.
 */
#include "layers/limits/limits-int.h"
#include "lib/timeutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- money ---- */

int limits_money_parse(const char *s, int64_t *out)
{
    int64_t units = 0, frac = 0;
    int digits = 0, fdigits = 0;
    const char *p = s;
    if (!s || !*s)
        return -1;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (units > LIMITS_MAX_MONEY / MICRO)
            return -1;
        units = units * 10 + (*p - '0');
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, fdigits++) {
            if (fdigits >= 6)
                return -1; /* finer than a micro-unit: refuse rather than round */
            frac = frac * 10 + (*p - '0');
        }
        if (fdigits == 0)
            return -1;
    }
    if (*p || digits == 0)
        return -1;
    for (int i = fdigits; i < 6; i++)
        frac *= 10;
    int64_t v = units * MICRO + frac;
    if (v > LIMITS_MAX_MONEY)
        return -1;
    *out = v;
    return 0;
}

int limits_money_from_json(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || i > LIMITS_MAX_MONEY / MICRO)
            return -1;
        *out = (int64_t)i * MICRO;
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d < 0 || d > (double)(LIMITS_MAX_MONEY / MICRO))
            return -1;
        *out = (int64_t)llround(d * (double)MICRO);
        return 0;
    }
    if (json_is_string(v) && json_string_length(v) < 32 &&
        strlen(json_string_value(v)) == json_string_length(v))
        return limits_money_parse(json_string_value(v), out);
    return -1;
}

void limits_money_format(int64_t micro, char *out, size_t outlen)
{
    const char *sign = "";
    uint64_t m = (uint64_t)micro;
    if (micro < 0) {
        sign = "-";
        m = (uint64_t)(-(micro + 1)) + 1;
    }
    uint64_t units = m / MICRO, frac = m % MICRO;
    if (frac == 0) {
        snprintf(out, outlen, "%s%llu", sign, (unsigned long long)units);
        return;
    }
    char f[8];
    snprintf(f, sizeof f, "%06llu", (unsigned long long)frac);
    for (int i = 5; i > 0 && f[i] == '0'; i--)
        f[i] = '\0';
    snprintf(out, outlen, "%s%llu.%s", sign, (unsigned long long)units, f);
}

/* ---- globs ---- */

/* Iterative glob with one backtrack point: linear in practice, no recursion on hostile names. */
int limits_glob(const char *pat, const char *s, size_t len)
{
    size_t si = 0;
    const char *star = NULL;
    size_t star_si = 0;
    while (si < len) {
        if (*pat == '*') {
            star = pat++;
            star_si = si;
        } else if (*pat && (*pat == '?' || *pat == s[si])) {
            pat++;
            si++;
        } else if (star) {
            pat = star + 1;
            si = ++star_si;
        } else {
            return 0;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

int limits_tools_match(char **tools, size_t n, const char *tool, size_t len)
{
    if (!tools)
        return 1;
    for (size_t i = 0; i < n; i++)
        if (limits_glob(tools[i], tool, len))
            return 1;
    return 0;
}

/* ---- cost estimates ---- */

/* Resolves an RFC 6901 JSON Pointer; NULL when any step is missing. */
static const json_t *pointer_get(const json_t *root, const char *ptr)
{
    const json_t *cur = root;
    char tok[256];
    while (cur && *ptr == '/') {
        ptr++;
        size_t n = 0;
        while (*ptr && *ptr != '/') {
            char c = *ptr++;
            if (c == '~') {
                if (*ptr == '0')
                    c = '~';
                else if (*ptr == '1')
                    c = '/';
                else
                    return NULL;
                ptr++;
            }
            if (n + 1 >= sizeof tok)
                return NULL;
            tok[n++] = c;
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, tok, n);
        } else if (json_is_array(cur)) {
            char *end = NULL;
            if (n == 0 || (n > 1 && tok[0] == '0'))
                return NULL;
            unsigned long idx = strtoul(tok, &end, 10);
            if (*end)
                return NULL;
            cur = json_array_get(cur, idx);
        } else {
            return NULL;
        }
    }
    return *ptr ? NULL : cur;
}

static const struct limits_cost *cost_for(const struct limits_config *lc, const char *tool,
                                          size_t len)
{
    for (size_t i = 0; i < lc->n_costs; i++)
        if (strlen(lc->costs[i].tool) == len && memcmp(lc->costs[i].tool, tool, len) == 0)
            return &lc->costs[i];
    for (size_t i = 0; i < lc->n_costs; i++)
        if (strpbrk(lc->costs[i].tool, "*?") && limits_glob(lc->costs[i].tool, tool, len))
            return &lc->costs[i];
    return NULL;
}

int64_t limits_cost_estimate(const struct limits_config *lc, const char *tool, size_t len,
                             const json_t *arguments)
{
    const struct limits_cost *c = cost_for(lc, tool, len);
    if (!c)
        return lc->default_cost;
    if (!c->items || !c->per_item)
        return c->fixed;
    uint64_t items = c->default_items;
    const json_t *v = arguments ? pointer_get(arguments, c->items) : NULL;
    if (json_is_integer(v))
        items = json_integer_value(v) < 0 ? 0 : (uint64_t)json_integer_value(v);
    else if (json_is_real(v))
        items = json_real_value(v) > 0 && isfinite(json_real_value(v))
                    ? (json_real_value(v) > 1e15 ? UINT64_MAX : (uint64_t)ceil(json_real_value(v)))
                    : 0;
    else if (json_is_array(v))
        items = json_array_size(v);
    if (items > c->max_items)
        items = c->max_items;
    return c->fixed + (int64_t)items * c->per_item;
}

/* ---- hashes ---- */

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = seed ^ mix64(n + 0x9e3779b97f4a7c15ULL);
    while (n >= 8) {
        uint64_t k;
        memcpy(&k, s, 8);
        h = (h ^ mix64(k)) * 0x9e3779b97f4a7c15ULL;
        h = (h << 29) | (h >> 35);
        s += 8;
        n -= 8;
    }
    uint64_t k = 0;
    memcpy(&k, s, n);
    h ^= mix64(k ^ (uint64_t)n);
    return mix64(h);
}

static uint64_t seed1, seed2;
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;

/* Keys are hashed with a per-process secret so that nobody can aim names at one slot. */
static void seed_init(void)
{
    uint64_t s[2] = {0, 0};
    if (gw_random_bytes(s, sizeof s) != 0) {
        s[0] = gw_now_ns();
        s[1] = gw_mono_ns() * 0x9e3779b97f4a7c15ULL;
    }
    seed1 = s[0];
    seed2 = s[1] | 1;
}

void limits_key_make(struct limits_key *k, const char *kind, unsigned index, const char *a,
                     const char *b, int64_t extra)
{
    pthread_once(&seed_once, seed_init);
    /* Fixed-size head (kind, index, extra), then each part with its length: unambiguous. */
    uint64_t head[3] = {0, index, (uint64_t)extra};
    size_t kl = strlen(kind);
    memcpy(head, kind, kl < 8 ? kl : 8);
    uint64_t h1 = hash_bytes(head, sizeof head, seed1), h2 = hash_bytes(head, sizeof head, seed2);
    const char *parts[2] = {a ? a : "", b ? b : ""};
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(parts[i]);
        h1 = hash_bytes(parts[i], n, h1 ^ (uint64_t)(i + 1));
        h2 = hash_bytes(parts[i], n, h2 + (uint64_t)(i + 1));
    }
    k->h1 = h1 | 1;
    k->h2 = h2;
}
