/*
 * safety_scan: the scan of one string with the compiled detectors (safety_engine.c builds
 * them): per-thread scratch, context words, confirmation and validators (the text it reads
 * is made by safety_normalize.c).
 *
 * A scan is one vectorscan pass over the (normalized) string with every rule's prefilter
 * expression (HS_FLAG_SINGLEMATCH: each rule reports its first hit once). Only rules that hit
 * run their PCRE2 confirmer, from a little before the first hit to the end of the string; the
 * confirmer's matches go through the rule's validator and, for weak patterns, the context
 * check.
 */
#include "layers/safety/safety-int.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- per-thread state ----------------------------------------------------------------------- */

struct key_cache_entry;

struct cand {
    int detector;
    int rule;
    int context;       /* confirmed by a context word */
    int action;        /* enum safety_action of its detector in this scan's direction */
    size_t start, end; /* normalized offsets */
};

#define MAX_CANDS 4096

struct tls_state {
    hs_scratch_t *scratch;
    uint64_t generation;
    pcre2_match_data *md;
    /* A copy of the configuration's match context (its limits), for the offset limit each
     * anchored search sets; mc_generation: the configuration it was copied from. */
    pcre2_match_context *mc;
    uint64_t mc_generation;
    size_t *first_end;
    size_t first_cap;
    struct cand *cands;
    size_t n_cands, cand_cap;
    /* The strictest candidate that did not fit (MAX_CANDS): a string with thousands of weak
     * findings must not hide a strict one behind them. */
    struct cand spill;
    int has_spill;
    struct key_cache_entry *key_cache;
};

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_key_ok;
static _Thread_local struct tls_state *tls;

static void tls_destroy(void *p)
{
    struct tls_state *t = p;
    if (!t)
        return;
    if (t->scratch)
        hs_free_scratch(t->scratch);
    if (t->md)
        pcre2_match_data_free(t->md);
    pcre2_match_context_free(t->mc);
    free(t->first_end);
    free(t->cands);
    free(t->key_cache);
    free(t);
}

static void tls_init_key(void)
{
    tls_key_ok = pthread_key_create(&tls_key, tls_destroy) == 0;
}

static struct tls_state *tls_get(const struct safety_config *sc)
{
    if (!tls) {
        pthread_once(&tls_once, tls_init_key);
        tls = calloc(1, sizeof *tls);
        if (!tls)
            return NULL;
        if (tls_key_ok)
            pthread_setspecific(tls_key, tls);
        tls->md = pcre2_match_data_create(16, NULL);
        if (!tls->md) {
            tls_destroy(tls);
            tls = NULL;
            return NULL;
        }
    }
    if (sc->db && tls->generation != sc->generation) {
        hs_error_t e = tls->scratch ? hs_alloc_scratch(sc->db, &tls->scratch)
                                    : hs_clone_scratch(sc->scratch, &tls->scratch);
        if (e == HS_SUCCESS && sc->db_joined)
            e = hs_alloc_scratch(sc->db_joined, &tls->scratch);
        if (e != HS_SUCCESS)
            return NULL;
        tls->generation = sc->generation;
    }
    if (tls->mc_generation != sc->generation || !tls->mc) {
        pcre2_match_context *mc = pcre2_match_context_copy(sc->match_ctx);
        if (!mc)
            return NULL;
        pcre2_match_context_free(tls->mc);
        tls->mc = mc;
        tls->mc_generation = sc->generation;
    }
    if (tls->first_cap < 2 * sc->n_rules) {
        size_t *f = realloc(tls->first_end, 2 * sc->n_rules * sizeof *f);
        if (!f)
            return NULL;
        tls->first_end = f;
        tls->first_cap = 2 * sc->n_rules;
    }
    tls->n_cands = 0;
    tls->has_spill = 0;
    return tls;
}

hs_scratch_t *safety_thread_scratch(const struct safety_config *sc)
{
    struct tls_state *ts = tls_get(sc);
    return ts ? ts->scratch : NULL;
}

/* Frees this thread's scanning state (threads that end call it through the key destructor;
 * the main thread may call it before exiting so leak checkers stay quiet). */
void safety_thread_cleanup(void)
{
    if (tls) {
        if (tls_key_ok)
            pthread_setspecific(tls_key, NULL);
        tls_destroy(tls);
        tls = NULL;
    }
}

/* ---- context ------------------------------------------------------------------------------ */

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int alnum(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Case-insensitive search of word in t[from, to) at word boundaries. */
static int window_has(const char *t, size_t tlen, size_t from, size_t to, const char *word)
{
    size_t wl = strlen(word);
    if (to > tlen)
        to = tlen;
    for (size_t i = from; i + wl <= to; i++) {
        if (lower((unsigned char)t[i]) != word[0])
            continue;
        size_t k = 1;
        while (k < wl && lower((unsigned char)t[i + k]) == word[k])
            k++;
        if (k < wl)
            continue;
        if (i > 0 && alnum((unsigned char)t[i - 1]) && alnum((unsigned char)word[0]))
            continue;
        if (i + wl < tlen && alnum((unsigned char)t[i + wl]) && alnum((unsigned char)word[wl - 1]))
            continue;
        return 1;
    }
    return 0;
}

/*
 * The member name as context: split into lower-case tokens at non-alphanumerics and at
 * lower-to-upper changes ("dateOfBirth" -> date of birth). A short word (under 4 letters:
 * "dl", "tin") must equal a token; a longer one, spaces removed, must occur in the name with
 * separators removed ("social security" in "socialSecurityNumber").
 */
struct key_view {
    char joined[128];
    size_t jl;
    char tokens[16][32];
    size_t nt;
    uint64_t starts[2], ends[2]; /* offsets in joined where a token starts, ends */
};

static void mark(uint64_t *bits, size_t at)
{
    bits[at / 64 % 2] |= UINT64_C(1) << (at % 64);
}

static int marked(const uint64_t *bits, size_t at)
{
    return at < 128 && ((bits[at / 64] >> (at % 64)) & 1);
}

static void key_view_init(struct key_view *kv, const char *key, size_t key_len)
{
    kv->jl = 0;
    kv->nt = 0;
    memset(kv->starts, 0, sizeof kv->starts);
    memset(kv->ends, 0, sizeof kv->ends);
    size_t tl = 0;
    for (size_t i = 0; i < key_len && i < 256; i++) {
        int c = (unsigned char)key[i];
        int boundary =
            !alnum(c) || (i > 0 && c >= 'A' && c <= 'Z' && key[i - 1] >= 'a' && key[i - 1] <= 'z');
        if (boundary && tl > 0) {
            kv->tokens[kv->nt][tl] = '\0';
            if (kv->nt < 15)
                kv->nt++;
            tl = 0;
            mark(kv->ends, kv->jl);
        }
        if (!alnum(c))
            continue;
        if (tl == 0)
            mark(kv->starts, kv->jl);
        if (kv->jl < sizeof kv->joined - 1)
            kv->joined[kv->jl++] = (char)lower(c);
        if (tl < 31)
            kv->tokens[kv->nt][tl++] = (char)lower(c);
    }
    if (tl > 0) {
        kv->tokens[kv->nt][tl] = '\0';
        kv->nt++;
        mark(kv->ends, kv->jl);
    }
    kv->joined[kv->jl] = '\0';
    /* Initials ("D.O.B.", "S_S_N"): a run of two or more one-letter tokens is also a token of
     * the word they spell, so that a short context word ("dob", "ssn") finds it. */
    size_t nt = kv->nt;
    for (size_t i = 0; i < nt;) {
        size_t j = i;
        while (j < nt && kv->tokens[j][0] && !kv->tokens[j][1])
            j++;
        if (j - i >= 2 && kv->nt < 16) {
            size_t n = 0;
            for (size_t k = i; k < j && n < 31; k++)
                kv->tokens[kv->nt][n++] = kv->tokens[k][0];
            kv->tokens[kv->nt][n] = '\0';
            kv->nt++;
        }
        i = j > i ? j : i + 1;
    }
}

/* A context word with what is not a letter or a digit left out ("social security" ->
 * "socialsecurity"), into w; its length. */
static size_t word_joined(const char *word, char w[64])
{
    size_t n = 0;
    for (const char *p = word; *p && n < 63; p++)
        if (alnum((unsigned char)*p))
            w[n++] = *p;
    w[n] = '\0';
    return n;
}

static int key_has(struct key_view *kv, const char *word)
{
    char w[64];
    size_t n = word_joined(word, w);
    if (n == 0)
        return 0;
    if (n < 4) {
        for (size_t i = 0; i < kv->nt; i++)
            if (strcmp(kv->tokens[i], w) == 0)
                return 1;
        return 0;
    }
    return strstr(kv->joined, w) != NULL;
}

/* As key_has, for a sibling's label: a longer word must be a run of whole tokens ("social
 * security" in "Social Security Number", "born" not in "newborns"): a label is text, where a
 * word inside another word is another word. */
static int label_has(struct key_view *kv, const char *word)
{
    char w[64];
    size_t n = word_joined(word, w);
    if (n < 4)
        return key_has(kv, word);
    for (const char *p = kv->joined; (p = strstr(p, w)) != NULL; p++) {
        size_t at = (size_t)(p - kv->joined);
        if (marked(kv->starts, at) && marked(kv->ends, at + n))
            return 1;
    }
    return 0;
}

struct scan_ctx {
    const struct safety_config *sc;
    enum gw_direction dir;
    const enum safety_action (*actions)[2]; /* a tool's table, or NULL: the detectors' own */
    const char *t;
    size_t tlen;
    struct key_view *kv;  /* NULL: no member name; built on first use */
    signed char *key_ctx; /* per detector: -1 unknown, 0/1 (when key_mask_known is not set) */
    int key_ctx_filled;
    int key_mask_known; /* key_mask holds every detector's answer (at most 64 of them) */
    uint64_t key_mask;
    const char *key;
    size_t key_len;
    unsigned *flags;
    struct tls_state *ts;
    uint64_t hit;                         /* rules the prefilter hit (with sc->rule_masks) */
    const struct safety_sibling_ref *sib; /* NULL: no siblings (not a member, or a name) */
    int self_known;                       /* self_bits holds the member's own label */
    uint64_t self_bits[SAFETY_SIBLING_WORDS];
    int digit;                      /* -1 unknown; whether the text holds a digit */
    struct safety_digit_runs *runs; /* for the rules' anchors (read on first use) */
    int failed;                     /* out of memory while reading the siblings: the scan fails */
};

/*
 * Member names repeat (the same tool schemas, call after call), and matching every context
 * word against a name costs more than scanning a short value: each thread remembers the
 * answers for recent names, per configuration generation.
 */
#define KEY_CACHE 512
#define KEY_CACHE_LEN 48

struct key_cache_entry {
    uint64_t generation;
    uint64_t mask;
    uint8_t len;
    uint8_t label; /* read as a sibling's label (label_has), not as a member name */
    char key[KEY_CACHE_LEN];
};

static uint32_t key_hash(const char *k, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 16777619u;
    return h;
}

/* Whether the name (or, with label, the sibling's label) key[0, n), its view kv built on
 * first use, gives detector det context. */
static int name_gives(const struct safety_config *sc, struct key_view *kv, const char *key,
                      size_t n, int det, int label)
{
    if (kv->nt == SIZE_MAX)
        key_view_init(kv, key, n);
    const struct safety_detector *d = &sc->detectors[det];
    for (size_t i = 0; i < d->n_context; i++)
        if (label ? label_has(kv, d->context[i]) : key_has(kv, d->context[i]))
            return 1;
    return 0;
}

static int key_context_compute(struct scan_ctx *x, int det)
{
    return name_gives(x->sc, x->kv, x->key, x->key_len, det, 0);
}

/* The detectors the name key[0, n) gives context to, from this thread's cache (or computed
 * and cached) in *out: 0, or -1 when it is not cached (too long, out of memory). */
static int name_mask_cached(const struct safety_config *sc, struct tls_state *ts,
                            struct key_view *kv, const char *key, size_t n, int label,
                            uint64_t *out)
{
    if (sc->n_detectors > 64 || n >= KEY_CACHE_LEN)
        return -1;
    if (!ts->key_cache && !(ts->key_cache = calloc(KEY_CACHE, sizeof *ts->key_cache)))
        return -1;
    /* Two places per name (two hashes' worth of bits): two names of one message that share
     * a place would otherwise evict each other on every call. A miss takes a place that is
     * free or stale, else the second one. */
    uint32_t h = key_hash(key, n) ^ (label ? 0x9e3779b9u : 0);
    struct key_cache_entry *e = &ts->key_cache[h % KEY_CACHE],
                           *alt = &ts->key_cache[(h >> 16) % KEY_CACHE];
    int hit = e->generation == sc->generation && e->len == n && e->label == label &&
              memcmp(e->key, key, n) == 0;
    if (!hit && alt->generation == sc->generation && alt->len == n && alt->label == label &&
        memcmp(alt->key, key, n) == 0) {
        e = alt;
        hit = 1;
    }
    if (!hit && e->generation == sc->generation)
        e = alt;
    if (!hit) {
        uint64_t mask = 0;
        for (size_t d = 0; d < sc->n_detectors; d++)
            if (sc->detectors[d].n_context && name_gives(sc, kv, key, n, (int)d, label))
                mask |= UINT64_C(1) << d;
        e->generation = sc->generation;
        e->len = (uint8_t)n;
        e->label = (uint8_t)label;
        memcpy(e->key, key, n);
        e->mask = mask;
    }
    *out = e->mask;
    return 0;
}

/* Sets key_mask for every detector from the cache (or computes and caches it) and returns 0
 * with the mask; -1 when the name is not cached (too long, out of memory). */
static int key_context_all(struct scan_ctx *x, uint64_t *out)
{
    if (name_mask_cached(x->sc, x->ts, x->kv, x->key, x->key_len, 0, out) != 0)
        return -1;
    x->key_mask = *out;
    x->key_mask_known = 1;
    return 0;
}

static int key_context(struct scan_ctx *x, int det)
{
    if (!x->kv)
        return 0;
    if (x->key_ctx[det] < 0 && !x->key_ctx_filled) {
        uint64_t mask;
        x->key_ctx_filled = 1;
        (void)key_context_all(x, &mask);
    }
    if (x->key_mask_known)
        return (int)((x->key_mask >> det) & 1);
    if (x->key_ctx[det] < 0)
        x->key_ctx[det] = (signed char)key_context_compute(x, det);
    return x->key_ctx[det];
}

/* ---- siblings' labels as context ---------------------------------------------------------- */

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_letter(int c)
{
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

/*
 * Whether the normalized text t is a label (safety-int.h): short; letters (and what is not
 * ASCII) in at most SAFETY_LABEL_WORDS words, split as a member name is (at white space, at
 * `_ - . ' #` and at camelCase); nothing else. A digit makes it data (MRN-17876879); a
 * bracket, a colon or a slash makes it something other than a name of a type: a redaction
 * echoed back ("[REDACTED:SSN]"), a method ("tools/call"), a URL, a sentence's punctuation.
 */
static int is_label(const char *t, size_t n)
{
    size_t words = 0;
    int letter = 0, in_word = 0, prev = 0;
    if (n == 0 || n > SAFETY_LABEL_MAX)
        return 0;
    for (size_t i = 0; i < n; prev = (unsigned char)t[i], i++) {
        int c = (unsigned char)t[i];
        if (is_space(c) || c == '_' || c == '-' || c == '.' || c == '\'' || c == '#') {
            in_word = 0;
            continue;
        }
        if (c < 0x80 && !is_letter(c))
            return 0;
        if (in_word && c >= 'A' && c <= 'Z' && prev >= 'a' && prev <= 'z')
            in_word = 0;
        if (!in_word && ++words > SAFETY_LABEL_WORDS)
            return 0;
        in_word = 1;
        letter |= c < 0x80;
    }
    return letter;
}

/*
 * Whether a member's name is one that holds a value whose type a sibling names ({"type":
 * "ssn", "value": ...}, {"kind": "mrn", "id": ...}, {"question": "Date of birth", "answer":
 * ...}): only such members take their siblings' labels as context. Any other name is a type
 * of its own ("minimum", "zip", "updated", "employee_id"), which a label beside it does not
 * change: in a tool's input schema {"description": "Driver ID", "minimum": 100000} the
 * minimum is not a licence number.
 */
static int holder_name(const char *key, size_t len)
{
    static const struct {
        char s[12];
        unsigned char n;
    } names[] = {{"value", 5},  {"values", 6},  {"val", 3},         {"v", 1},
                 {"id", 2},     {"ids", 3},     {"identifier", 10}, {"identifiers", 11},
                 {"number", 6}, {"numbers", 7}, {"num", 3},         {"no", 2},
                 {"nr", 2},     {"answer", 6}};
    /* Most names are none of these: told by their first byte or their length at once. */
    int c0 = len ? lower((unsigned char)key[0]) : 0;
    if (len == 0 || len >= 16 || (alnum(c0) && c0 != 'v' && c0 != 'i' && c0 != 'n' && c0 != 'a'))
        return 0;
    char w[12];
    size_t wl = 0;
    for (size_t k = 0; k < len; k++) {
        int c = (unsigned char)key[k];
        if (!alnum(c))
            continue;
        if (wl == sizeof w)
            return 0;
        w[wl++] = (char)lower(c);
    }
    for (size_t i = 0; wl && i < sizeof names / sizeof names[0]; i++)
        if (names[i].n == wl && names[i].s[0] == w[0] && memcmp(names[i].s, w, wl) == 0)
            return 1;
    return 0;
}

/*
 * Where the label in s[0, *len) is: a URL (http, https) names what it identifies in the last
 * segment of its path, so a FHIR identifier's system "http://hl7.org/fhir/sid/us-ssn" is the
 * label "us-ssn" (a trailing slash aside; the query and the fragment are not read). Returns
 * where it starts and sets *len to where it ends: s itself for text that is not such a URL,
 * nothing (start == *len) for a URL without a path.
 */
static size_t label_span(const char *s, size_t *len)
{
    size_t n = *len;
    size_t scheme = n > 7 && strncasecmp(s, "http://", 7) == 0    ? 7
                    : n > 8 && strncasecmp(s, "https://", 8) == 0 ? 8
                                                                  : 0;
    if (!scheme)
        return 0;
    size_t path_end = scheme;
    while (path_end < n && s[path_end] != '?' && s[path_end] != '#')
        path_end++;
    while (path_end > scheme && s[path_end - 1] == '/')
        path_end--;
    size_t i = path_end;
    while (i > scheme && s[i - 1] != '/')
        i--;
    *len = i > scheme ? path_end : 0;
    return i > scheme ? i : 0;
}

/*
 * The part of s[0, *len) that could be a label, by the cheap tests: the URL's last segment
 * (label_span), of two bytes or more, at most SAFETY_LABEL_MAX_RAW as written, without a
 * digit (digits stay digits when normalized: most values stop here). Moves *s and *len to it
 * and returns 1, with *ascii set when it is pure ASCII (no normalizing needed); 0 when it
 * cannot be a label.
 */
static int label_candidate(const char **s, size_t *len, int *ascii)
{
    if (*len > SAFETY_LABEL_MAX_RAW)
        return 0;
    size_t from = label_span(*s, len);
    *s += from;
    *len -= from;
    if (*len < 2)
        return 0;
    *ascii = 1;
    for (size_t i = 0; i < *len; i++) {
        unsigned char c = (unsigned char)(*s)[i];
        if (c >= '0' && c <= '9')
            return 0;
        *ascii &= c < 0x80;
    }
    return 1;
}

int safety_label_shaped(const char *s, size_t len)
{
    int ascii;
    /* Text that is not ASCII may normalize to a label: counted as one. */
    return label_candidate(&s, &len, &ascii) && (!ascii || is_label(s, len));
}

/*
 * The detectors a string gives context to as a label, into bits (zero when it is not one):
 * read as a member name (same normalization, tokens and cache), so "Social Security Number"
 * gives what "socialSecurityNumber" gives, except that a longer context word must be whole
 * words (label_has). Returns 0, or -1 when out of memory.
 */
static int label_bits(const struct safety_config *sc, struct tls_state *ts, const char *s,
                      size_t len, uint64_t *bits)
{
    char *t = NULL;
    size_t tlen = 0;
    uint32_t *map = NULL;
    int ascii;
    memset(bits, 0, SAFETY_SIBLING_WORDS * sizeof *bits);
    if (sc->n_detectors > 64 * SAFETY_SIBLING_WORDS || !label_candidate(&s, &len, &ascii))
        return 0;
    if (ascii) {
        t = (char *)s;
        tlen = len;
    } else if (safety_normalize(s, len, &t, &tlen, &map) != 0) {
        return -1;
    }
    free(map);
    if (is_label(t, tlen)) {
        struct key_view kv;
        uint64_t mask;
        kv.nt = SIZE_MAX;
        if (name_mask_cached(sc, ts, &kv, t, tlen, 1, &mask) == 0) {
            bits[0] = mask;
        } else {
            for (size_t d = 0; d < sc->n_detectors; d++)
                if (sc->detectors[d].n_context && name_gives(sc, &kv, t, tlen, (int)d, 1))
                    bits[d / 64] |= UINT64_C(1) << (d % 64);
        }
    }
    if (t != s)
        free(t);
    return 0;
}

static int siblings_read(const struct safety_config *sc, struct tls_state *ts,
                         struct safety_siblings *set)
{
    const char *k;
    json_t *v;
    uint64_t bits[SAFETY_SIBLING_WORDS];
    if (set->state != 0)
        return set->state < 0 ? -1 : 0;
    memset(set->any, 0, sizeof set->any);
    memset(set->multi, 0, sizeof set->multi);
    /* Every member once: the cost is linear in the object, however many members it has. */
    json_object_foreach((json_t *)set->object, k, v)
    {
        (void)k;
        if (!json_is_string(v))
            continue;
        if (label_bits(sc, ts, json_string_value(v), json_string_length(v), bits) != 0) {
            set->state = -1;
            return -1;
        }
        for (size_t i = 0; i < SAFETY_SIBLING_WORDS; i++) {
            set->multi[i] |= set->any[i] & bits[i];
            set->any[i] |= bits[i];
        }
    }
    set->state = 1;
    return 0;
}

int safety_siblings_read(const struct safety_config *sc, struct safety_siblings *set)
{
    if (set->state != 0)
        return set->state < 0 ? -1 : 0;
    struct tls_state *ts = tls_get(sc);
    return ts ? siblings_read(sc, ts, set) : -1;
}

/* Word w of the detectors the member's siblings give context to: those two labels give, and
 * those one label gives unless it is the member's own value. */
static uint64_t sibling_word(struct scan_ctx *x, size_t w)
{
    struct safety_siblings *set = x->sib->set;
    uint64_t one = set->any[w] & ~set->multi[w];
    if (one && !x->self_known) {
        const json_t *self = x->sib->self;
        if (self && json_is_string(self) &&
            label_bits(x->sc, x->ts, json_string_value(self), json_string_length(self),
                       x->self_bits) != 0) {
            x->failed = 1;
            return 0;
        }
        if (!self || !json_is_string(self))
            memset(x->self_bits, 0, sizeof x->self_bits);
        x->self_known = 1;
    }
    return set->multi[w] | (one & ~x->self_bits[w]);
}

/* Reads the siblings' labels when they were not read; 0 when there are none to read. */
static int siblings_ready(struct scan_ctx *x)
{
    if (!x->sib || x->failed)
        return 0;
    if (siblings_read(x->sc, x->ts, x->sib->set) != 0) {
        x->failed = 1;
        return 0;
    }
    return 1;
}

static int sibling_context(struct scan_ctx *x, int det)
{
    if (!siblings_ready(x))
        return 0;
    return (int)((sibling_word(x, (size_t)det / 64) >> (det % 64)) & 1);
}

/*
 * Whether the text holds a digit. Every built-in weak shape does (bare numbers, dates,
 * licences, secrets with their required digits); a rule whose prefilter found no context
 * word runs for the siblings' sake only then (a custom rule's prefilter is its own shape, so
 * it runs only when that hit anyway, and its context is asked for when it matched).
 */
static int text_has_digit(struct scan_ctx *x)
{
    if (x->digit < 0) {
        x->digit = 0;
        for (size_t i = 0; i < x->tlen; i++)
            if (x->t[i] >= '0' && x->t[i] <= '9') {
                x->digit = 1;
                break;
            }
    }
    return x->digit;
}

static int has_context(struct scan_ctx *x, int det, size_t start, size_t end)
{
    if (key_context(x, det))
        return 1;
    const struct safety_detector *d = &x->sc->detectors[det];
    size_t w = x->sc->context_window;
    size_t from = start > w ? start - w : 0;
    for (size_t i = 0; i < d->n_context; i++) {
        if (window_has(x->t, x->tlen, from, start, d->context[i]) ||
            window_has(x->t, x->tlen, end, end + w, d->context[i]))
            return 1;
    }
    /* Last, as it may read the object: a label among the member's siblings. */
    return sibling_context(x, det);
}

/* ---- confirmation ------------------------------------------------------------------------- */

/*
 * Words that, right before a number, say it is something else: "order 275-85-1877",
 * "ref #275-85-1877", "invoice no. 275-85-1877". They count only when no context word for
 * the type is near.
 */
static const char *const anti_words[] = {"order",    "invoice",      "ref",  "reference", "ticket",
                                         "tracking", "case",         "po",   "sku",       "part",
                                         "serial",   "confirmation", "item", "booking",   NULL};

/* The alphanumeric word ending right before `end` after skipping " #:.-"; its start. */
static size_t word_before(const char *t, size_t end, size_t *wstart)
{
    while (end > 0 && strchr(" #:.-", t[end - 1]))
        end--;
    size_t b = end;
    while (b > 0 && alnum((unsigned char)t[b - 1]))
        b--;
    *wstart = b;
    return end - b;
}

static int word_is(const char *t, size_t start, size_t len, const char *w)
{
    if (strlen(w) != len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (lower((unsigned char)t[start + i]) != w[i])
            return 0;
    return 1;
}

static int anti_context(struct scan_ctx *x, size_t start)
{
    size_t ws, wl = word_before(x->t, start, &ws);
    if (wl && (word_is(x->t, ws, wl, "no") || word_is(x->t, ws, wl, "number") ||
               word_is(x->t, ws, wl, "nr") || word_is(x->t, ws, wl, "id")))
        wl = word_before(x->t, ws, &ws);
    for (size_t i = 0; wl && anti_words[i]; i++)
        if (word_is(x->t, ws, wl, anti_words[i]))
            return 1;
    return 0;
}

static int action_of(const struct scan_ctx *x, int detector)
{
    return (int)(x->actions ? x->actions[detector][x->dir]
                            : x->sc->detectors[detector].action[x->dir]);
}

static void emit(struct scan_ctx *x, const struct safety_rule *r, int rule, size_t s, size_t e)
{
    int action = action_of(x, r->detector);
    /* A detector that is off in this direction finds nothing: it must not take part in
     * the overlap resolution either, where it could hide what another one found. */
    if (action == SAFETY_OFF)
        return;
    if (r->need_context && !has_context(x, r->detector, s, e))
        return;
    if (!r->need_context && (r->detector == SB_SSN || r->detector == SB_ITIN) &&
        anti_context(x, s) && !has_context(x, r->detector, s, e))
        return;
    struct tls_state *ts = x->ts;
    struct cand c = {r->detector, rule, r->need_context, action, s, e};
    if (ts->n_cands == ts->cand_cap && ts->cand_cap < MAX_CANDS) {
        size_t cap = ts->cand_cap ? ts->cand_cap * 2 : 64;
        struct cand *v = realloc(ts->cands, cap * sizeof *v);
        if (v) {
            ts->cands = v;
            ts->cand_cap = cap;
        }
    }
    if (ts->n_cands == ts->cand_cap) {
        *x->flags |= SAFETY_SCAN_OVERFLOW;
        if (!ts->has_spill || c.action > ts->spill.action) {
            ts->spill = c;
            ts->has_spill = 1;
        }
        return;
    }
    ts->cands[ts->n_cands++] = c;
}

/*
 * Printed card numbers come in groups of four (the last one shorter), or 4-6-5 and 4-6-4
 * (American Express, Diners): other groupings are ids, phone numbers, references.
 */
static int card_grouping_ok(const size_t *gs, const size_t *ge, size_t a, size_t b)
{
    size_t n = b - a + 1;
    if (n == 1)
        return 1;
    if (n == 3 && ge[a] - gs[a] == 4 && ge[a + 1] - gs[a + 1] == 6 &&
        (ge[b] - gs[b] == 5 || ge[b] - gs[b] == 4))
        return 1;
    for (size_t g = a; g < b; g++)
        if (ge[g] - gs[g] != 4)
            return 0;
    return ge[b] - gs[b] >= 1 && ge[b] - gs[b] <= 4;
}

static int card_group_ok(const char *t, const size_t *gs, const size_t *ge, size_t a, size_t b)
{
    char d[20];
    size_t n = 0;
    if (!card_grouping_ok(gs, ge, a, b))
        return 0;
    for (size_t g = a; g <= b; g++)
        for (size_t i = gs[g]; i < ge[g]; i++) {
            if (n == 19)
                return 0;
            d[n++] = t[i];
        }
    return n >= 12 && safety_card_ok(d, n, NULL);
}

/*
 * A run of digits with single ' ' or '-' (or, from the dotted rule, '.') between groups. The
 * whole run is tried first; then, from each group on, the longest group-aligned window of
 * 12..19 digits that validates (a card followed by an expiry or preceded by a reference
 * number).
 */
static void confirm_card(struct scan_ctx *x, const struct safety_rule *r, int rule, size_t s,
                         size_t e)
{
    enum { MAXG = 64 };
    size_t gs[MAXG], ge[MAXG], ng = 0, digits = 0;
    const char *t = x->t;
    for (size_t i = s; i < e;) {
        if (t[i] == ' ' || t[i] == '-' || t[i] == '.') {
            i++;
            continue;
        }
        if (ng == MAXG)
            return;
        gs[ng] = i;
        while (i < e && t[i] >= '0' && t[i] <= '9')
            i++;
        ge[ng] = i;
        digits += ge[ng] - gs[ng];
        ng++;
    }
    /* Digits right after "<digit>." are a fraction (0.5555555555554444, 12.50 4111 ...):
     * never the start of a card. */
    size_t first = s >= 2 && t[s - 1] == '.' && t[s - 2] >= '0' && t[s - 2] <= '9';
    if (!first && digits >= 12 && digits <= 19) {
        if (card_group_ok(t, gs, ge, 0, ng - 1))
            emit(x, r, rule, s, e);
        return;
    }
    if (ng < 2 && !first)
        return;
    for (size_t a = first; a < ng; a++) {
        size_t total = 0, best = SIZE_MAX;
        for (size_t b = a; b < ng; b++) {
            total += ge[b] - gs[b];
            if (total > 19)
                break;
            if (total >= 12 && card_group_ok(t, gs, ge, a, b))
                best = b;
        }
        if (best != SIZE_MAX) {
            emit(x, r, rule, gs[a], ge[best]);
            a = best;
        }
    }
}

static int secret_ok(const struct safety_config *sc, const char *s, size_t n, int strict)
{
    int up = 0, lo = 0, dg = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        up |= c >= 'A' && c <= 'Z';
        lo |= c >= 'a' && c <= 'z';
        dg |= c >= '0' && c <= '9';
    }
    if (strict && !(up && lo && dg))
        return 0;
    if (!dg || !(up || lo))
        return 0;
    /* Short strings cannot reach a high entropy: the bar is at most 80% of the maximum. */
    double bar = sc->entropy_threshold, max = log2((double)n);
    if (bar > 0.8 * max)
        bar = 0.8 * max;
    return safety_entropy(s, n) >= bar;
}

static int mod97_generic(const char *s, size_t n)
{
    unsigned r = 0;
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c >= '0' && c <= '9') {
            r = (r * 10 + (unsigned)(c - '0')) % 97;
            any = 1;
        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') {
            r = (r * 100 + (unsigned)((c | 0x20) - 'a' + 10)) % 97;
            any = 1;
        }
    }
    return any && r == 1;
}

static void confirm(struct scan_ctx *x, int rule, size_t s, size_t e)
{
    const struct safety_rule *r = &x->sc->rules[rule];
    const char *t = x->t;
    size_t n = e - s;
    char buf[64];
    switch (r->check) {
    case SC_NONE:
        break;
    case SC_SSN:
        if (!safety_ssn_ok(t + s, n))
            return;
        break;
    case SC_ITIN:
        if (!safety_itin_ok(t + s, n))
            return;
        break;
    case SC_CARD:
        confirm_card(x, r, rule, s, e);
        return;
    case SC_IBAN: {
        size_t k = 0;
        for (size_t i = s; i < e && k < sizeof buf; i++)
            if (t[i] != ' ')
                buf[k++] = t[i];
        if (k >= sizeof buf || !safety_iban_ok(buf, k))
            return;
        break;
    }
    case SC_EMAIL:
        while (e > s && (t[e - 1] == '.' || t[e - 1] == '-'))
            e--;
        if (!safety_email_ok(t + s, e - s))
            return;
        break;
    case SC_PHONE:
        if (!safety_phone_ok(t + s, n))
            return;
        break;
    case SC_IPV4:
        if (!safety_ipv4_ok(t + s, n))
            return;
        break;
    case SC_IPV6:
        if (!safety_ipv6_ok(t + s, n))
            return;
        break;
    case SC_NPI:
        if (!safety_npi_ok(t + s, n))
            return;
        break;
    case SC_DEA:
        if (!safety_dea_ok(t + s, n))
            return;
        break;
    case SC_DATE:
        if (!safety_date_ok(t + s, n))
            return;
        break;
    case SC_JWT:
        if (!safety_jwt_ok(t + s, n))
            return;
        break;
    case SC_PEM: {
        /* Everything up to the END line is key material; without one, the rest of the text. */
        const char *end = NULL;
        if (e < x->tlen)
            end = memmem(t + e, x->tlen - e, "-----END ", 9);
        if (end) {
            const char *close = memmem(end + 9, x->tlen - (size_t)(end + 9 - t), "-----", 5);
            e = close ? (size_t)(close - t) + 5 : x->tlen;
        } else {
            e = x->tlen;
        }
        break;
    }
    case SC_SECRET:
        if (!secret_ok(x->sc, t + s, n, r->detector == SB_AWS_SECRET_KEY))
            return;
        break;
    case SC_LUHN: {
        size_t k = 0;
        for (size_t i = s; i < e && k < sizeof buf; i++)
            if (t[i] >= '0' && t[i] <= '9')
                buf[k++] = t[i];
        if (k < 2 || k >= sizeof buf || !safety_luhn_ok(buf, k))
            return;
        break;
    }
    case SC_MOD97:
        if (!mod97_generic(t + s, n))
            return;
        break;
    }
    emit(x, r, rule, s, e);
}

/* ---- the scan ------------------------------------------------------------------------------- */

static int on_hs_match(unsigned id, unsigned long long from, unsigned long long to, unsigned fl,
                       void *arg)
{
    (void)from;
    (void)fl;
    struct scan_ctx *x = arg;
    if (x->sc->rule_masks) {
        if (!((x->hit >> id) & 1)) {
            x->hit |= UINT64_C(1) << id;
            x->ts->first_end[id] = (size_t)to;
        }
    } else if (x->ts->first_end[id] == SIZE_MAX) {
        x->ts->first_end[id] = (size_t)to;
    }
    return 0;
}

/* Where the next window of n digits in a row starts, at off or after (SIZE_MAX: none); *last:
 * where the last window of its run starts. */
static size_t next_digits(const char *t, size_t tlen, size_t off, unsigned n, size_t *last)
{
    unsigned run = 0;
    for (size_t i = off; i < tlen; i++) {
        if (t[i] < '0' || t[i] > '9') {
            run = 0;
        } else if (++run == n) {
            size_t e = i + 1;
            while (e < tlen && t[e] >= '0' && t[e] <= '9')
                e++;
            *last = e - n;
            return i + 1 - n;
        }
    }
    return SIZE_MAX;
}

static void digit_runs_fill(struct safety_digit_runs *d, const char *t, size_t tlen)
{
    d->ready = 1;
    d->n = 0;
    size_t i = 0;
    while (i < tlen) {
        if (t[i] < '0' || t[i] > '9') {
            i++;
            continue;
        }
        if (d->n == SAFETY_DIGIT_RUNS || i > UINT32_MAX) {
            d->covered = i;
            return;
        }
        size_t s = i;
        while (i < tlen && t[i] >= '0' && t[i] <= '9')
            i++;
        if (i - s > UINT32_MAX) {
            d->covered = s;
            return;
        }
        d->run[d->n].start = (uint32_t)s;
        d->run[d->n].len = (uint32_t)(i - s);
        d->n++;
    }
    d->covered = tlen;
}

/* next_digits from the text's runs (read once). */
static size_t next_digits_in(struct safety_digit_runs *d, const char *t, size_t tlen, size_t off,
                             unsigned n, size_t *last)
{
    if (!d->ready)
        digit_runs_fill(d, t, tlen);
    /* The first run that ends past off (the runs are in order). */
    unsigned lo = 0, hi = d->n;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if ((size_t)d->run[mid].start + d->run[mid].len <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (unsigned i = lo; i < d->n; i++) {
        size_t s = d->run[i].start, e = s + d->run[i].len;
        size_t q = s > off ? s : off;
        if (e - q >= n) {
            *last = e - n;
            return q;
        }
    }
    if (d->covered >= tlen)
        return SIZE_MAX;
    return next_digits(t, tlen, d->covered > off ? d->covered : off, n, last);
}

int safety_rule_each(const struct safety_rule *r, const char *t, size_t tlen, size_t from,
                     struct safety_digit_runs *runs, pcre2_match_data *md, pcre2_match_context *mc,
                     int (*fn)(void *arg, const PCRE2_SIZE *ov), void *arg)
{
    int anchored = r->anchor_digits || r->anchor_byte;
    /* An anchored search sets its own limit below; without, one left set would be refused. */
    if (!anchored && pcre2_set_offset_limit(mc, PCRE2_UNSET) != 0)
        return -1;
    size_t off = from;
    while (off <= tlen) {
        size_t start = off, last = SIZE_MAX;
        if (anchored) {
            /*
             * A match starting at off or after holds an anchor at a >= off, and starts at
             * a - anchor_lead or after: the positions before cannot start one. One search
             * tries the starts up to the last window of a's run (the byte itself); past
             * them a match needs a later anchor, found by the next turn.
             */
            size_t a;
            if (r->anchor_byte) {
                const char *p = off < tlen ? memchr(t + off, r->anchor_byte, tlen - off) : NULL;
                a = last = p ? (size_t)(p - t) : SIZE_MAX;
            } else {
                a = runs ? next_digits_in(runs, t, tlen, off, r->anchor_digits, &last)
                         : next_digits(t, tlen, off, r->anchor_digits, &last);
            }
            if (a == SIZE_MAX)
                return 0;
            if (a - off > r->anchor_lead)
                start = a - r->anchor_lead;
            if (pcre2_set_offset_limit(mc, last) != 0)
                return -1;
        }
        int rc = pcre2_match(r->re, (PCRE2_SPTR)t, tlen, start, 0, md, mc);
        if (rc == PCRE2_ERROR_NOMATCH) {
            if (!anchored)
                return 0;
            off = last >= off ? last + 1 : off + 1; /* last >= a >= off: always the first */
            continue;
        }
        if (rc < 0)
            return -1;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (fn(arg, ov))
            return 0;
        size_t next = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
        off = next > off ? next : off + 1;
    }
    return 0;
}

struct rule_run {
    struct scan_ctx *x;
    int rule;
};

static int rule_matched(void *arg, const PCRE2_SIZE *ov)
{
    struct rule_run *rr = arg;
    const struct safety_rule *r = &rr->x->sc->rules[rr->rule];
    size_t s = ov[2 * r->group], e = ov[2 * r->group + 1];
    if (s != PCRE2_UNSET && e > s)
        confirm(rr->x, rr->rule, s, e);
    return 0;
}

static void run_rule(struct scan_ctx *x, int rule, size_t from)
{
    struct rule_run rr = {.x = x, .rule = rule};
    if (safety_rule_each(&x->sc->rules[rule], x->t, x->tlen, from, x->runs, x->ts->md, x->ts->mc,
                         rule_matched, &rr) != 0)
        *x->flags |= SAFETY_SCAN_LIMIT;
}

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    size_t lx = x->end - x->start, ly = y->end - y->start;
    if (lx != ly)
        return lx > ly ? -1 : 1;
    /* The same span read two ways: the reading its context words confirm wins. */
    if (x->context != y->context)
        return x->context ? -1 : 1;
    return x->rule < y->rule ? -1 : x->rule > y->rule;
}

/* Whether candidate a, not b, names the span they share: the stricter action, then the longer
 * span; on a tie the one cand_cmp put first (b) stays. */
static int names_cluster(const struct cand *a, const struct cand *b)
{
    if (a->action != b->action)
        return a->action > b->action;
    return a->end - a->start > b->end - b->start;
}

int safety_scan_text_pre(const struct safety_config *sc, const struct safety_prescan *p,
                         const struct safety_prescan_entry *pe, const char *s, size_t len,
                         const char *key, size_t key_len, const struct safety_sibling_ref *sib,
                         enum gw_direction dir, const enum safety_action (*actions)[2],
                         struct safety_match *out, size_t max, unsigned *flags)
{
    char *t = NULL, *nkey = NULL;
    size_t tlen = 0, nkey_len = 0;
    uint32_t *map = NULL, *key_map = NULL;
    signed char key_ctx_buf[64];
    signed char *key_ctx = key_ctx_buf;
    struct key_view kv;
    int result = -1;

    if (!sc || len == 0 || sc->n_rules == 0)
        return 0;
    struct tls_state *ts = tls_get(sc);
    if (!ts)
        return -1;
    if (pe && p && p->ready && pe->len == len) {
        /* The joined pass normalized it already (the buffer and map stay with the prescan). */
        t = p->joined + pe->off;
        tlen = pe->tlen;
        map = pe->map;
    } else {
        pe = NULL;
        if (safety_normalize(s, len, &t, &tlen, &map) != 0)
            return -1;
    }
    /* The member name is context in its normalized form too ("ｓｓｎ", "s\u200bsn"). */
    if (key && key_len && safety_normalize(key, key_len, &nkey, &nkey_len, &key_map) != 0)
        goto out;
    free(key_map);
    if (sc->n_detectors > sizeof key_ctx_buf) {
        key_ctx = malloc(sc->n_detectors);
        if (!key_ctx)
            goto out;
    }
    memset(key_ctx, -1, sc->n_detectors);
    kv.nt = SIZE_MAX; /* built on first use */
    struct safety_digit_runs runs;
    runs.ready = 0;
    struct scan_ctx x = {.sc = sc,
                         .runs = &runs,
                         .dir = dir,
                         .actions = actions,
                         .t = t,
                         .tlen = tlen,
                         .kv = nkey && nkey_len ? &kv : NULL,
                         .key_ctx = key_ctx,
                         .key = nkey,
                         .key_len = nkey_len,
                         .flags = flags,
                         .ts = ts,
                         .sib = sib && sib->set && holder_name(nkey, nkey_len) ? sib : NULL,
                         .digit = -1};
    /* With rule masks, first_end[i] is read only for the rules in x.hit. */
    if (!sc->rule_masks)
        for (size_t i = 0; i < 2 * sc->n_rules; i++)
            ts->first_end[i] = SIZE_MAX;
    if (pe) {
        for (size_t i = 0; i < pe->n_hits; i++) {
            const struct safety_prescan_hit *h = &p->hits[pe->hit_first + i];
            ts->first_end[h->rule] = h->end;
            if (sc->rule_masks)
                x.hit |= UINT64_C(1) << h->rule;
        }
    } else if (sc->db && tlen > 0) {
        if (hs_scan(sc->db, t, (unsigned)(tlen > UINT32_MAX ? UINT32_MAX : tlen), 0, ts->scratch,
                    on_hs_match, &x) != HS_SUCCESS)
            goto out;
    }
    /* Every rule runs even when the candidates overflowed: a strict finding must not hide
     * behind many weak ones (each rule is linear in the string). In the order of the rules,
     * as the loop below: the rules hit, those without a prefilter, and those the member
     * name's context words run. */
    if (sc->rule_masks) {
        uint64_t todo = x.hit | sc->rules_always, pending = sc->rules_keyctx & ~x.hit, mask = 0;
        if (pending && x.kv) {
            int cached = !x.key_ctx_filled && key_context_all(&x, &mask) == 0;
            x.key_ctx_filled = 1;
            if (cached) {
                /* The detectors the name gives context to (mostly none), their rules. */
                for (; mask; mask &= mask - 1)
                    todo |= sc->keyctx_rules_of[__builtin_ctzll(mask)] & pending;
            } else {
                for (; pending; pending &= pending - 1) {
                    int i = __builtin_ctzll(pending);
                    if (key_context(&x, sc->rules[i].detector))
                        todo |= UINT64_C(1) << i;
                }
            }
        }
        /* The rules still waiting for a context word: the labels beside the member may give
         * it, when the text could hold a weak shape at all (most texts of a message do not
         * get this far: no member, no digit, or a name that gave the context already). */
        pending = sc->rules_keyctx & ~x.hit & ~todo;
        if (pending && x.sib && text_has_digit(&x) && siblings_ready(&x)) {
            for (uint64_t sm = sibling_word(&x, 0); sm; sm &= sm - 1)
                todo |= sc->keyctx_rules_of[__builtin_ctzll(sm)] & pending;
        }
        for (; todo; todo &= todo - 1) {
            int i = __builtin_ctzll(todo);
            const struct safety_rule *r = &sc->rules[i];
            size_t from = 0;
            if (((x.hit >> i) & 1) && !r->keyword_filter && r->max_width) {
                size_t fe = ts->first_end[i];
                from = fe > r->max_width + 8 ? fe - r->max_width - 8 : 0;
            }
            run_rule(&x, i, from);
        }
        goto resolve;
    }
    for (size_t i = 0; i < sc->n_rules; i++) {
        const struct safety_rule *r = &sc->rules[i];
        size_t from = 0;
        if (r->disabled)
            continue;
        if (!r->hs_expr) {
            from = 0;
        } else if (ts->first_end[i] != SIZE_MAX) {
            size_t fe = ts->first_end[i];
            if (!r->keyword_filter && r->max_width)
                from = fe > r->max_width + 8 ? fe - r->max_width - 8 : 0;
        } else if (r->need_context && r->keyword_filter &&
                   ((x.kv && key_context(&x, r->detector)) ||
                    (x.sib && text_has_digit(&x) && sibling_context(&x, r->detector)))) {
            from = 0;
        } else {
            continue;
        }
        run_rule(&x, (int)i, from);
    }
resolve:
    if (x.failed)
        goto out;
    /*
     * Overlapping candidates become one span, the union of theirs (a redaction covers all
     * that any detector found there), named by the strictest of them (block over redact over
     * log), then the longest, then the reading its context confirms, then the rule listed
     * first. A weaker detector never wins over a stricter one.
     */
    if (ts->n_cands > 1)
        qsort(ts->cands, ts->n_cands, sizeof *ts->cands, cand_cmp);
    size_t kept = 0;
    for (size_t i = 0; i < ts->n_cands;) {
        struct cand win = ts->cands[i];
        size_t start = win.start, end = win.end, j = i + 1;
        for (; j < ts->n_cands && ts->cands[j].start < end; j++) {
            if (names_cluster(&ts->cands[j], &win))
                win = ts->cands[j];
            if (ts->cands[j].end > end)
                end = ts->cands[j].end;
        }
        win.start = start;
        win.end = end;
        ts->cands[kept++] = win;
        i = j;
    }
    /* What did not fit still counts: the strictest spilled candidate names the weakest
     * span kept (the string is replaced as a whole anyway, SAFETY_SCAN_OVERFLOW). */
    if (ts->has_spill && kept > 0) {
        size_t weakest = 0;
        for (size_t i = 1; i < kept; i++)
            if (ts->cands[i].action < ts->cands[weakest].action)
                weakest = i;
        if (ts->spill.action > ts->cands[weakest].action) {
            ts->cands[weakest].detector = ts->spill.detector;
            ts->cands[weakest].rule = ts->spill.rule;
            ts->cands[weakest].action = ts->spill.action;
        }
    }
    /* More spans than fit in out: the strictest are reported, in order of their start. */
    int level = SAFETY_OFF;
    size_t level_quota = kept;
    if (kept > max) {
        *flags |= SAFETY_SCAN_OVERFLOW;
        size_t at_least[SAFETY_BLOCK + 2] = {0};
        for (size_t i = 0; i < kept; i++)
            at_least[ts->cands[i].action]++;
        size_t above = 0;
        for (level = SAFETY_BLOCK; level > SAFETY_OFF && above + at_least[level] < max; level--)
            above += at_least[level];
        level_quota = max - above;
    }
    size_t n = 0;
    for (size_t i = 0; i < kept && n < max; i++) {
        const struct cand *c = &ts->cands[i];
        if (c->action < level)
            continue;
        if (c->action == level) {
            if (level_quota == 0)
                continue;
            level_quota--;
        }
        out[n].detector = c->detector;
        out[n].start = map ? map[c->start] : c->start;
        out[n].end = map ? map[c->end] : c->end;
        n++;
    }
    result = (int)n;
out:
    if (key_ctx != key_ctx_buf)
        free(key_ctx);
    if (!pe) {
        if (t != s)
            free(t);
        free(map);
    }
    if (nkey != key)
        free(nkey);
    return result;
}

int safety_scan_text_as(const struct safety_config *sc, const char *s, size_t len, const char *key,
                        size_t key_len, enum gw_direction dir,
                        const enum safety_action (*actions)[2], struct safety_match *out,
                        size_t max, unsigned *flags)
{
    return safety_scan_text_pre(sc, NULL, NULL, s, len, key, key_len, NULL, dir, actions, out, max,
                                flags);
}

int safety_scan_text(const struct safety_config *sc, const char *s, size_t len, const char *key,
                     size_t key_len, struct safety_match *out, size_t max, unsigned *flags)
{
    return safety_scan_text_as(sc, s, len, key, key_len, GW_DIR_REQUEST, NULL, out, max, flags);
}
