/* safety-int.h: the compiled configuration, shared by the safety layer's own files only. */
#ifndef GW_SAFETY_INT_H
#define GW_SAFETY_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <hs.h>
#include <pcre2.h>

#include "layers/safety/safety.h"

/* Built-in detector ids, in the order the table in safety_rules.c lists them. */
enum safety_builtin {
    SB_PRIVATE_KEY = 0,
    SB_AWS_ACCESS_KEY,
    SB_AWS_SECRET_KEY,
    SB_GITHUB_TOKEN,
    SB_GITLAB_TOKEN,
    SB_SLACK_TOKEN,
    SB_STRIPE_KEY,
    SB_GOOGLE_API_KEY,
    SB_JWT,
    SB_GENERIC_SECRET,
    SB_SSN,
    SB_ITIN,
    SB_CREDIT_CARD,
    SB_IBAN,
    SB_EMAIL,
    SB_PHONE,
    SB_IP_ADDRESS,
    SB_NPI,
    SB_DEA,
    SB_DOB,
    SB_PASSPORT,
    SB_DRIVERS_LICENSE,
    SB_MRN,
    SB_COUNT
};

/* How a confirmed pattern hit is validated (and, for cards and keys, where its span ends). */
enum safety_check {
    SC_NONE = 0,
    SC_SSN,
    SC_ITIN,
    SC_CARD, /* a run of digit groups: the card is found among group-aligned windows */
    SC_IBAN,
    SC_EMAIL,
    SC_PHONE,
    SC_IPV4,
    SC_IPV6,
    SC_NPI,
    SC_DEA,
    SC_DATE,
    SC_JWT,
    SC_PEM,    /* extends the BEGIN line to the matching END line */
    SC_SECRET, /* entropy threshold and character mix */
    SC_LUHN,   /* custom: Luhn over the digits */
    SC_MOD97,  /* custom: ISO 7064 mod 97-10 over the letters and digits */
};

struct safety_detector {
    char name[32];
    char label[32]; /* placeholder label: "SSN", "CREDIT_CARD" */
    int builtin;    /* enum safety_builtin, or -1 for a custom detector */
    int secret;
    enum safety_action action[2]; /* per enum gw_direction */
    enum safety_style style;
    int keep_last4; /* mask keeps the last four letters/digits */
    char **context; /* lower-case context words (NULL-terminated) */
    size_t n_context;
};

struct safety_rule {
    int detector;
    pcre2_code *re;
    char *hs_expr; /* vectorscan expression; NULL: PCRE2 runs on every string */
    unsigned hs_flags;
    int group;          /* capture group that is the span (0: the whole match) */
    int need_context;   /* reported only with a context word near it or in the member name */
    int keyword_filter; /* the expression finds a context word, not the value: scan from 0 */
    unsigned max_width; /* of the vectorscan expression; 0 when unbounded */
    /* The anchor: every match holds anchor_digits digits in a row (or, with anchor_byte,
     * that byte) starting at most anchor_lead bytes after the match's start, so a search
     * begins anchor_lead bytes before the next one, tries the starts up to the end of its
     * run (PCRE2_USE_OFFSET_LIMIT), and stops where none is left. Both 0: none (custom
     * rules). */
    unsigned char anchor_digits;
    char anchor_byte;
    unsigned char anchor_lead;
    int disabled; /* its detector is off in both directions: never run */
    enum safety_check check;
};

/* `safety.tools`: other actions for the tools whose names match one of the globs. */
struct safety_tool_override {
    char **globs; /* NULL-terminated; '*' matches any run of characters */
    size_t n_globs;
    enum safety_action (*actions)[2]; /* n_detectors entries */
};

struct safety_config {
    int enabled;
    struct safety_tool_override *tools;
    size_t n_tools;
    int responses_enabled;
    struct safety_detector *detectors;
    size_t n_detectors;
    struct safety_rule *rules;
    size_t n_rules;
    hs_database_t *db; /* NULL when no rule is prefiltered */
    /* The same expressions without HS_FLAG_SINGLEMATCH, for one pass over all the strings of
     * a message joined by SAFETY_JOIN_SEP (safety_prescan_run); NULL when some expression is
     * not proven unable to match across the separator (safety_expr_joinable). */
    hs_database_t *db_joined;
    hs_scratch_t *scratch; /* prototype, sized for both databases; each thread clones it */
    /* With at most 64 rules and 64 detectors a scan picks the rules to confirm from bit
     * masks: rules without a prefilter, and prefiltered rules that a context word in the
     * member name runs without a hit (none of them disabled). */
    int rule_masks;
    uint64_t rules_always, rules_keyctx;
    /* Per detector: the rules of rules_keyctx that are its own. */
    uint64_t keyctx_rules_of[64];
    uint64_t generation; /* tells thread-local scratch which database it was sized for */
    pcre2_match_context *match_ctx;
    size_t max_scan_bytes;
    size_t max_depth;
    enum safety_oversize on_oversize;
    uint32_t match_limit;
    size_t context_window;
    double entropy_threshold;
    unsigned char hash_key[32];
    int hash_key_set;    /* from redaction.hash_key_file; else the per-process key */
    char *compile_cache; /* safety.compile_cache: the directory, or NULL (no cache) */
    int db_from_cache;   /* the database came from the cache, not a compile */
};

/* Custom detectors a configuration may name (safety.custom). */
#define SAFETY_MAX_CUSTOM 256

/*
 * Context from a member's siblings (docs/safety.md, "Siblings' labels"): a member whose name
 * holds a value of a type named beside it ("value", "id", "number"...: safety_scan.c,
 * holder_name) takes as context the labels among the other members of its object. A label
 * is a string value of at most SAFETY_LABEL_MAX bytes once normalized (and
 * SAFETY_LABEL_MAX_RAW as written): letters in at most SAFETY_LABEL_WORDS words, split as a
 * member name is, with no digit and no other punctuation than `_ - . ' #` (or an http(s) URL
 * whose last path segment is one: a FHIR identifier's system); its context words
 * are read as a member name's are. An object's labels are read at most once per scan, when a
 * member first needs them (safety_scan.c asks only when a weak shape could be there), and
 * before any of its members is rewritten; a redaction's text ("[REDACTED:SSN]") is not a
 * label either, in this message or when it comes back in the next.
 */
#define SAFETY_LABEL_MAX 64
#define SAFETY_LABEL_MAX_RAW 256
#define SAFETY_LABEL_WORDS 4
/* Bits for every detector a configuration can have: the built-in ones and the custom ones. */
#define SAFETY_SIBLING_WORDS ((SB_COUNT + SAFETY_MAX_CUSTOM + 63) / 64)

struct safety_siblings {
    const json_t *object; /* borrowed */
    int state;            /* 0: not read yet; 1: read; -1: out of memory while reading */
    /* Per detector: some label gives it context; two labels or more do (so that a member's
     * own value, when it is a label, can be left out without reading the others again). */
    uint64_t any[SAFETY_SIBLING_WORDS], multi[SAFETY_SIBLING_WORDS];
};

/* What a member's scan passes down: the set of its object and its own value. Items of an
 * array take the array's (as they take its member name); members of a nested object do not. */
struct safety_sibling_ref {
    struct safety_siblings *set;
    const json_t *self; /* its own value: not its own sibling */
};

/* Whether a string could be a label (a cheap test, true for some that are not): a value that
 * cannot be one may be rewritten before its object's labels are read. */
int safety_label_shaped(const char *s, size_t len);

/* Reads the labels of set->object unless they were read. Returns 0, or -1 when out of memory
 * (the scan fails closed). */
int safety_siblings_read(const struct safety_config *sc, struct safety_siblings *set);

/* Compiles every rule's PCRE2 code and the vectorscan database. Returns 0 or -1 with why. */
int safety_compile(struct safety_config *sc, char *why, size_t why_len);

/*
 * hs_compile_multi through the cache file dir/name (dir NULL: no cache; safety_dbcache.c):
 * the database of exactly these patterns from the file when it is there and sound, else compiled
 * (and written there). *from_cache says which. 0, or -1 with why (the patterns do not compile).
 */
int safety_dbcache_compile(const char *dir, const char *name, const char *const *exprs,
                           const unsigned *flags, const unsigned *ids, unsigned n,
                           hs_database_t **db, int *from_cache, char *why, size_t why_len);
/* Adds the built-in detectors and their rules with default actions. Returns 0 or -1. */
int safety_add_builtins(struct safety_config *sc);
struct safety_rule_spec {
    int detector;
    const char *re; /* PCRE2 confirmer */
    uint32_t re_flags;
    int group;
    int need_context;
    const char *hs; /* vectorscan prefilter; NULL: none */
    unsigned hs_flags;
    int keyword_filter;
    enum safety_check check;
    unsigned char anchor_digits, anchor_lead; /* struct safety_rule's anchor */
    char anchor_byte;
};

/* Adds a rule (patterns copied, PCRE2 compiled and JIT-compiled). Returns 0, or -1 with why
 * (the PCRE2 message and offset). A vectorscan expression that vectorscan cannot compile is
 * dropped: the rule then runs PCRE2 on every string. */
int safety_add_rule(struct safety_config *sc, const struct safety_rule_spec *spec, char *why,
                    size_t why_len);
/* Adds a detector; returns its index or -1 when out of memory. */
int safety_add_detector(struct safety_config *sc, const char *name, int builtin);
/* Appends context words (copied, lower-cased) to a detector. Returns 0 or -1. */
int safety_detector_add_context(struct safety_config *sc, int detector, char **words);
/*
 * The byte between two strings in a joined pass. No expression that safety_expr_joinable
 * accepts can match it (nor a text containing it), and to \b it is a non-word byte like the
 * ends of a buffer, so a match in the joined buffer lies within one string and every string's
 * matches are those of a pass over it alone.
 */
#define SAFETY_JOIN_SEP '\n'

/* Whether the vectorscan expression (compiled with flags) provably cannot match a text that
 * holds SAFETY_JOIN_SEP and has no anchor that depends on where the buffer starts or ends:
 * a conservative reading of its syntax (anything it does not know makes it say no). */
int safety_expr_joinable(const char *expr, unsigned flags);

/*
 * One vectorscan pass over many strings (a message's strings, member names and numbers):
 * safety_prescan_add each text in the order the scan will ask for them, safety_prescan_run
 * once, then safety_scan_text_pre with the entry safety_prescan_take returns for a text (the
 * prefilter hits come from the joined pass instead of a pass of their own; the findings are
 * the same). Texts not added, or any failure of the joined pass, take the ordinary path.
 */
/*
 * Longer texts are scanned on their own: the set-up cost of a pass is small beside theirs,
 * and without HS_FLAG_SINGLEMATCH a long text costs more per byte (every hit is reported,
 * and the database cannot drop a pattern after its first hit).
 */
#define SAFETY_JOIN_MAX_TEXT 256

struct safety_prescan_hit {
    unsigned rule;
    unsigned entry;
    size_t end; /* the first (smallest) end offset of the rule's hits, relative to the entry */
};

struct safety_prescan_entry {
    const char *orig; /* the text as added (borrowed; or, for a number, in the buffer) */
    const void *node; /* the number it is the decimal text of; NULL for other texts */
    size_t len;
    size_t off;    /* of its normalized text in the joined buffer */
    size_t tlen;   /* normalized length */
    uint32_t *map; /* normalized -> original offsets; NULL when the text did not change */
    size_t hit_first, n_hits;
};

struct safety_prescan {
    const struct safety_config *sc;
    struct safety_prescan_entry *entries;
    size_t n, cap;
    size_t cursor; /* the next entry safety_prescan_take may hand out */
    char *joined;
    size_t jlen, jcap;
    struct safety_prescan_hit *hits;
    size_t n_hits, hit_cap;
    size_t budget; /* bytes of original text it still takes */
    int ready;     /* the joined pass ran and its hits are sorted per entry */
    int failed;    /* out of memory, too many hits, or a vectorscan error: no entries */
};

/* Starts a prescan of at most budget bytes of text; safety_prescan_free releases it. */
void safety_prescan_init(struct safety_prescan *p, const struct safety_config *sc, size_t budget);
/* Adds a text (borrowed until safety_prescan_free; with number, the JSON number whose
 * decimal text s is, copied). A text over the budget, and every one after it, is left to the
 * ordinary path. */
void safety_prescan_add(struct safety_prescan *p, const char *s, size_t len, const void *number);
/* The next entry when it is the text of that JSON number (its text need not be made again:
 * entry->orig), else NULL. Does not hand it out (safety_prescan_take does). */
const struct safety_prescan_entry *safety_prescan_peek_number(const struct safety_prescan *p,
                                                              const void *number);
/* Runs the joined pass. On any failure p->failed is set (every text takes the ordinary path). */
void safety_prescan_run(struct safety_prescan *p);
/* The entry for the text s[0, len) when it is the next one added (same bytes), else NULL. */
const struct safety_prescan_entry *safety_prescan_take(struct safety_prescan *p, const char *s,
                                                       size_t len);
void safety_prescan_free(struct safety_prescan *p);
/* This thread's vectorscan scratch for sc's databases; NULL when out of memory. */
hs_scratch_t *safety_thread_scratch(const struct safety_config *sc);
/* safety_scan_text_as with the prefilter hits and normalized text of a prescan entry (e may
 * be NULL: the ordinary path) and the member's siblings as context (sib may be NULL: none). */
int safety_scan_text_pre(const struct safety_config *sc, const struct safety_prescan *p,
                         const struct safety_prescan_entry *e, const char *s, size_t len,
                         const char *key, size_t key_len, const struct safety_sibling_ref *sib,
                         enum gw_direction dir, const enum safety_action (*actions)[2],
                         struct safety_match *out, size_t max, unsigned *flags);

/* The runs of digits of one text, found once for all its rules' anchors (up to
 * SAFETY_DIGIT_RUNS of them; past covered the text is read again when asked). */
#define SAFETY_DIGIT_RUNS 48
struct safety_digit_runs {
    int ready;
    unsigned n;
    size_t covered; /* every run that starts before it is listed */
    struct {
        uint32_t start, len;
    } run[SAFETY_DIGIT_RUNS];
};

/*
 * Every match of rule r in the normalized text t[0, tlen) that starts at from or after, left to
 * right as the scan takes them (a search resumes where the last match ended): fn(arg, ovector)
 * for each (pairs of offsets: the whole match, then its groups); a non-zero return stops the
 * search. A rule without an anchor is searched as before anchors (the tests compare a rule
 * with its anchor cleared). runs: the text's digit runs, zeroed before the first call for a
 * text and kept for its other rules (NULL: the text is read for each anchor). mc is the
 * caller's own (a copy of the configuration's match context): its offset limit is set for
 * each search. Returns 0, or -1 when PCRE2 failed (its match limit).
 */
int safety_rule_each(const struct safety_rule *r, const char *t, size_t tlen, size_t from,
                     struct safety_digit_runs *runs, pcre2_match_data *md, pcre2_match_context *mc,
                     int (*fn)(void *arg, const PCRE2_SIZE *ov), void *arg);

/* Frees this thread's scanning state (threads that end free it themselves). */
void safety_thread_cleanup(void);
/* Frees rules, detectors and compiled state (used by safety_config_free). */
void safety_engine_free(struct safety_config *sc);

extern const char *const safety_builtin_names[SB_COUNT];

/* The per-process hash key (generated once). */
const unsigned char *safety_process_key(void);

/* Counters (safety_counters.c). */
void safety_count_message(size_t bytes);
void safety_count_finding(const struct safety_config *sc, int detector, enum safety_action action,
                          int response);
void safety_count_redactions(unsigned n);
void safety_count_block(void);
void safety_count_oversize(void);
void safety_count_error(void);

/* ---- decoded forms (safety_decode.c) ---- */

struct gw_buf;

#define SAFETY_B64_MIN_TEXT 6 /* bytes of decoded text worth a second scan */

/* A string that is base64 of text: the text (malloc'd, NUL-terminated; free it) and the form
 * to encode it back in. */
struct safety_b64 {
    char *text;
    size_t len;
    size_t prefix; /* bytes of a "data:...;base64," prefix before the encoded part */
    int url;       /* URL-safe alphabet */
    int padded;    /* '=' padding */
};

/* Returns 1 and fills out when s is base64 (rules in safety_decode.c) of UTF-8 text of at
 * least SAFETY_B64_MIN_TEXT bytes; 0 when it is not; -1 when out of memory. */
int safety_base64_text(const char *s, size_t len, struct safety_b64 *out);
/* Appends the base64 of s[0, len) in the form of `form` (alphabet, padding; no prefix, no
 * line breaks). Returns 0 or -1. */
int safety_base64_encode(struct gw_buf *b, const struct safety_b64 *form, const char *s,
                         size_t len);
/* The decimal text of a JSON number in buf (NUL-terminated); returns its length (0 when n is
 * not a number). cap >= 32 holds every number. */
size_t safety_number_text(const json_t *n, char *buf, size_t cap);

/* ---- validators' shared helpers (safety_validate.c) ---- */

static inline int safety_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline int safety_digit_value(char c)
{
    return c - '0';
}

static inline int safety_is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

/*
 * Copies the digits of s into out (at most max), skipping the separators in `skip`; fails
 * (-1) on any other character or when there are more than max digits.
 */
int safety_digits_of(const char *s, size_t len, const char *skip, char *out, size_t max);

#endif
