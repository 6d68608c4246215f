/*
 * limits_canon: the canonical form the loop detector compares calls and results in, kept as
 * hashes (nothing of the arguments is stored).
 *
 *   - strings: leading and trailing whitespace dropped, every run of whitespace inside one
 *     space; Unicode whitespace counts (no-break space, the U+2000 spaces, ideographic space,
 *     line and paragraph separators), and invisible format characters (zero-width space and
 *     joiners, word joiner, byte order mark, Mongolian vowel separator) are dropped;
 *   - numbers by value: 1, 1.0 and 1e0 are one number, -0.0 is 0; integers exactly;
 *   - objects by their members, in any order; arrays in order;
 *   - argument members the configuration declares volatile for the tool
 *     (limits.loops.volatile) are left out.
 *
 * Each call has two fingerprints: the exact one, and a near one in which every number is
 * the same placeholder (calls that differ only in counters, timestamps or pages share it).
 * Each fingerprint is one pass over the tree (depth bounded), with no allocation unless
 * volatile members must be taken out (a copy of the arguments without them).
 */
#include "layers/limits/limits-int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CANON_MAX_DEPTH 128

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* A streaming hash: bytes fed one by one, in blocks of eight. Fixed seeds: stable everywhere. */
struct chash {
    uint64_t h;
    uint64_t block;
    unsigned fill;
    uint64_t len;
};

static void ch_init(struct chash *c, uint64_t seed)
{
    c->h = seed ^ 0x9e3779b97f4a7c15ULL;
    c->block = 0;
    c->fill = 0;
    c->len = 0;
}

static void ch_byte(struct chash *c, unsigned char b)
{
    c->block |= (uint64_t)b << (8 * c->fill);
    c->len++;
    if (++c->fill == 8) {
        c->h = (c->h ^ mix64(c->block)) * 0x9e3779b97f4a7c15ULL;
        c->h = (c->h << 29) | (c->h >> 35);
        c->block = 0;
        c->fill = 0;
    }
}

static void ch_bytes(struct chash *c, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        ch_byte(c, s[i]);
}

static uint64_t ch_final(struct chash *c)
{
    return mix64(c->h ^ mix64(c->block ^ ((uint64_t)c->fill << 56) ^ c->len));
}

static uint64_t hash_of(const void *p, size_t n, uint64_t seed)
{
    struct chash c;
    ch_init(&c, seed);
    ch_bytes(&c, p, n);
    return ch_final(&c);
}

/* ---- strings ---- */

enum cp_class { CP_KEEP = 0, CP_SPACE, CP_DROP };

static enum cp_class classify(uint32_t cp)
{
    if ((cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
        (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
        cp == 0x205f || cp == 0x3000)
        return CP_SPACE;
    if (cp == 0x180e || (cp >= 0x200b && cp <= 0x200d) || cp == 0x2060 || cp == 0xfeff)
        return CP_DROP;
    return CP_KEEP;
}

#define CP_INVALID 0x110000u /* not a code point: a byte that starts no sequence */

/*
 * Decodes one UTF-8 sequence at s (n > 0 bytes left); returns its length. A byte that does
 * not start a well-formed sequence is one CP_INVALID (jansson only hands over valid UTF-8,
 * but the hash must not depend on that).
 */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char b = s[0];
    size_t len = b < 0x80             ? 1
                 : (b & 0xe0) == 0xc0 ? 2
                 : (b & 0xf0) == 0xe0 ? 3
                 : (b & 0xf8) == 0xf0 ? 4
                                      : 0;
    *cp = CP_INVALID;
    if (len == 0 || len > n)
        return 1;
    uint32_t v = len == 1 ? b : len == 2 ? b & 0x1f : len == 3 ? b & 0x0f : b & 0x07;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 1;
        v = (v << 6) | (s[i] & 0x3f);
    }
    *cp = v;
    return len;
}

/*
 * A byte that starts no sequence becomes U+FFFD: the canonical form is valid UTF-8, and
 * taking characters out can never join the bytes around them into a new character.
 */
void limits_canon_string(const char *str, size_t n,
                         void (*emit)(void *arg, const char *p, size_t len), void *arg)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    int started = 0, pending = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = utf8_next(s + i, n - i, &cp);
        enum cp_class k = classify(cp);
        if (k == CP_SPACE) {
            pending = started;
        } else if (k == CP_KEEP) {
            if (pending)
                emit(arg, " ", 1);
            pending = 0;
            started = 1;
            if (cp == CP_INVALID)
                emit(arg, "\xef\xbf\xbd", 3);
            else
                emit(arg, str + i, len);
        }
        i += len;
    }
}

static void emit_hash(void *arg, const char *p, size_t len)
{
    ch_bytes(arg, p, len);
}

static uint64_t string_hash(const char *s, size_t n)
{
    struct chash c;
    ch_init(&c, 0x737472);
    limits_canon_string(s, n, emit_hash, &c);
    return ch_final(&c);
}

/* ---- numbers ---- */

static uint64_t int_hash(int64_t i)
{
    return hash_of(&i, sizeof i, 0x696e74);
}

static uint64_t number_hash(const json_t *v)
{
    if (json_is_integer(v))
        return int_hash((int64_t)json_integer_value(v));
    double d = json_real_value(v);
    /* An integral value within int64 is that integer: 1.0 == 1, -0.0 == 0. */
    if (isfinite(d) && d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
        return int_hash((int64_t)d);
    return hash_of(&d, sizeof d, 0x6e756d);
}

/* ---- trees ---- */

static uint64_t canon_hash(const json_t *v, int depth, int near)
{
    if (!v || depth > CANON_MAX_DEPTH)
        return 0x5bd1e995;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        /* A sum of member hashes: the members' order does not matter. */
        uint64_t sum = 0x6f626a;
        const char *key;
        size_t klen;
        json_t *item;
        json_object_keylen_foreach((json_t *)v, key, klen, item)
        {
            uint64_t kh = hash_of(key, klen, 0x6b6579);
            sum += mix64(kh ^ (canon_hash(item, depth + 1, near) * 31));
        }
        return mix64(sum ^ json_object_size(v));
    }
    case JSON_ARRAY: {
        uint64_t h = 0x617272;
        for (size_t i = 0; i < json_array_size(v); i++)
            h = mix64(h * 31 + canon_hash(json_array_get(v, i), depth + 1, near));
        return mix64(h ^ json_array_size(v));
    }
    case JSON_STRING:
        return string_hash(json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
    case JSON_REAL:
        return near ? 0x6e6561726e756dULL : number_hash(v);
    case JSON_TRUE:
        return 0x74727565;
    case JSON_FALSE:
        return 0x66616c73;
    default:
        return 0x6e756c6c;
    }
}

uint64_t limits_json_hash(const json_t *v)
{
    return canon_hash(v, 0, 0);
}

/* ---- volatile members ---- */

/*
 * Reads the next reference token of a JSON Pointer at *p (just after a '/') into tok,
 * unescaping ~0 and ~1. Returns its length, or -1 when malformed or too long.
 */
static int pointer_token(const char **p, char *tok, size_t cap)
{
    size_t n = 0;
    const char *s = *p;
    while (*s && *s != '/') {
        char c = *s++;
        if (c == '~') {
            if (*s != '0' && *s != '1')
                return -1;
            c = *s++ == '0' ? '~' : '/';
        }
        if (n + 1 >= cap)
            return -1;
        tok[n++] = c;
    }
    tok[n] = '\0';
    *p = s;
    return (int)n;
}

int limits_volatile_key_ok(const char *key)
{
    size_t len = strlen(key);
    if (len == 0 || len > LIMITS_MAX_VOLATILE_KEY)
        return 0;
    if (key[0] != '/')
        return 1;
    char tok[LIMITS_MAX_VOLATILE_KEY + 1];
    const char *p = key;
    while (*p == '/') {
        p++;
        if (pointer_token(&p, tok, sizeof tok) < 0)
            return 0;
    }
    return *p == '\0';
}

/* Takes the member a volatile key names out of args: a top-level name, or a JSON Pointer. */
static void drop_member(json_t *args, const char *key)
{
    if (key[0] != '/') {
        json_object_del(args, key);
        return;
    }
    char tok[LIMITS_MAX_VOLATILE_KEY + 1];
    const char *p = key;
    json_t *cur = args;
    while (cur && *p == '/') {
        p++;
        int n = pointer_token(&p, tok, sizeof tok);
        if (n < 0)
            return;
        if (*p == '\0') {
            if (json_is_object(cur))
                json_object_deln(cur, tok, (size_t)n);
            return;
        }
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, tok, (size_t)n);
        } else if (json_is_array(cur)) {
            char *end = NULL;
            if (n == 0 || (n > 1 && tok[0] == '0') || tok[0] < '0' || tok[0] > '9')
                return;
            unsigned long idx = strtoul(tok, &end, 10);
            if (*end)
                return;
            cur = json_array_get(cur, idx);
        } else {
            return;
        }
    }
}

static uint64_t with_tool(const char *tool, size_t len, uint64_t args_hash)
{
    return mix64(hash_of(tool, len, 0x746f6f6c) ^ args_hash);
}

void limits_fingerprints(const struct limits_config *lc, const char *tool, size_t len,
                         const json_t *arguments, uint64_t *exact, uint64_t *near)
{
    json_t *copy = NULL;
    for (size_t i = 0; lc && json_is_object(arguments) && i < lc->n_volatiles; i++) {
        const struct limits_volatile *vol = &lc->volatiles[i];
        if (!limits_glob(vol->tool, tool, len))
            continue;
        /*
         * Without memory for the copy the members stay in: the detector is a heuristic on
         * top of limits that do fail closed.
         */
        if (!copy && !(copy = json_deep_copy(arguments)))
            break;
        for (size_t k = 0; k < vol->n_keys; k++)
            drop_member(copy, vol->keys[k]);
    }
    const json_t *a = copy ? copy : arguments;
    *exact = with_tool(tool, len, canon_hash(a, 0, 0));
    *near = with_tool(tool, len, canon_hash(a, 0, 1) ^ 0x6e656172ULL);
    json_decref(copy);
}

uint64_t limits_fingerprint(const char *tool, size_t len, const json_t *arguments)
{
    uint64_t exact, near;
    limits_fingerprints(NULL, tool, len, arguments, &exact, &near);
    return exact;
}
