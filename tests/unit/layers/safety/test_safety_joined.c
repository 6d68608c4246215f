/*
 * safety joined pass: one vectorscan pass over all the strings of a message must find what a
 * pass per string finds. The prefilter's hits of the joined pass are compared with a pass over
 * each text alone, rule by rule; and every document is scanned twice, with the joined
 * database and the rule masks and with both taken away (every string on its own and every
 * rule looked at in turn, the path they replaced), and the two outcomes must be equal: the result
 * (block, type and path, counts, error), the findings and the redacted document. The documents are
 * generated: PII split across two neighbouring values at every offset (a match must not span them),
 * separators inside values, huge values, many tiny ones, nested arrays, numbers, member names as
 * context, full-width and other-script digits, invisible characters, base64 of text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "layers/safety/safety-int.h"

static struct safety_config *dflt, *custom;

static struct safety_config *parse(const char *yaml)
{
    struct cfg_doc doc;
    struct cfg_error err;
    struct safety_config *sc = NULL;
    if (cfg_load_string(yaml, strlen(yaml), "t.yaml", &doc, &err) != 0)
        return NULL;
    if (safety_config_parse(&doc, cfg_map_get(doc.root, "safety"), &sc, &err) != 0)
        sc = NULL;
    cfg_doc_free(&doc);
    return sc;
}

static const char custom_yaml[] = "safety:\n"
                                  "  custom:\n"
                                  "    - name: employee_id\n"
                                  "      pattern: 'EMP-[0-9]{6}'\n"
                                  "    - name: badge\n"
                                  "      pattern: '(?i)badge[ :#]{1,3}[0-9]{5}'\n"
                                  "      context: [badge, access]\n"
                                  "      action: {request: redact, response: redact}\n";

static int group_setup(void **state)
{
    (void)state;
    dflt = safety_config_default();
    custom = parse(custom_yaml);
    return dflt && custom ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    safety_config_free(dflt);
    safety_config_free(custom);
    safety_thread_cleanup();
    return 0;
}

/* ---- the two paths ------------------------------------------------------------------------ */

struct outcome {
    struct safety_result res;
    struct gw_findings f;
    char *doc; /* the document after redaction (sorted keys) */
};

static void scan_once(struct safety_config *sc, const json_t *in, enum gw_direction dir, int joined,
                      struct outcome *o)
{
    hs_database_t *saved = sc->db_joined;
    int masks = sc->rule_masks;
    json_t *copy = json_deep_copy(in);
    size_t budget = sc->max_scan_bytes;
    struct safety_scan_opts opts = {.direction = dir, .redact = 1, .budget = &budget};
    assert_non_null(copy);
    memset(o, 0, sizeof *o);
    /* Without the joined database and the rule masks a scan takes the path they replaced:
     * a vectorscan pass per string and every rule looked at in turn. */
    if (!joined) {
        sc->db_joined = NULL;
        sc->rule_masks = 0;
    }
    safety_scan_json(sc, copy, "", &opts, &o->f, &o->res);
    sc->db_joined = saved;
    sc->rule_masks = masks;
    o->doc = json_dumps(copy, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(copy);
}

static unsigned compared, with_findings;

static int same_result(const struct safety_result *a, const struct safety_result *b)
{
    return a->block == b->block && strcmp(a->block_type, b->block_type) == 0 &&
           strcmp(a->block_path, b->block_path) == 0 && a->redactions == b->redactions &&
           a->findings == b->findings && a->scanned == b->scanned && a->error == b->error &&
           strcmp(a->error_code, b->error_code) == 0 && a->flagged == b->flagged &&
           a->id_finding == b->id_finding;
}

static int same_findings(const struct gw_findings *a, const struct gw_findings *b)
{
    if (a->n != b->n || a->dropped != b->dropped || a->redactions != b->redactions)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const struct gw_finding *x = &a->items[i], *y = &b->items[i];
        if (strcmp(x->type, y->type) != 0 || strcmp(x->path, y->path) != 0 ||
            x->count != y->count || x->action != y->action || x->direction != y->direction)
            return 0;
    }
    return 1;
}

/* Scans doc both ways in both directions; fails on the first difference. */
static void compare(struct safety_config *sc, const json_t *doc)
{
    for (int dir = GW_DIR_REQUEST; dir <= GW_DIR_RESPONSE; dir++) {
        struct outcome a, b;
        scan_once(sc, doc, (enum gw_direction)dir, 1, &a);
        scan_once(sc, doc, (enum gw_direction)dir, 0, &b);
        int same = same_result(&a.res, &b.res) && same_findings(&a.f, &b.f) && a.doc && b.doc &&
                   strcmp(a.doc, b.doc) == 0;
        if (!same) {
            char *in = json_dumps(doc, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
            fprintf(stderr,
                    "joined and per-string scans differ (%s):\n  in:      %.2000s\n  joined:  "
                    "%.2000s (findings %u, block %d %s %s, error %s)\n  single:  %.2000s "
                    "(findings %u, block %d %s %s, error %s)\n",
                    dir == GW_DIR_REQUEST ? "request" : "response", in ? in : "?",
                    a.doc ? a.doc : "?", a.res.findings, a.res.block, a.res.block_type,
                    a.res.block_path, a.res.error_code, b.doc ? b.doc : "?", b.res.findings,
                    b.res.block, b.res.block_type, b.res.block_path, b.res.error_code);
            free(in);
        }
        compared++;
        with_findings += a.res.findings > 0;
        free(a.doc);
        free(b.doc);
        gw_findings_free(&a.f);
        gw_findings_free(&b.f);
        assert_true(same);
    }
}

/* ---- generated documents ------------------------------------------------------------------ */

static uint64_t rs = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

static size_t below(size_t n)
{
    return (size_t)(rnd() % n);
}

/* Instances of every built-in type (and the custom ones), some needing context. */
static const char *const samples[] = {
    "134-67-7626",
    "SSN 134 67 7626",
    "ssn: 134677626",
    "912-70-1234",
    "ITIN 912 78 1234",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111111111111111",
    "3782.822463.10005",
    "5555 5555 5555 4444 exp 12/29",
    "DE89370400440532013000",
    "GB82 WEST 1234 5698 7654 32",
    "jane.doe@example.com",
    "+1 415 555 2671",
    "(415) 555-2671",
    "415.555.2671",
    "phone 4155552671",
    "10.20.30.40",
    "2001:db8:85a3::8a2e:370:7334",
    "NPI 1234567893",
    "DEA AB1234563",
    "DOB 03/05/1984",
    "born March 5, 1984",
    "date of birth 1984-03-05",
    "passport C03005988",
    "driver license D1234567",
    "MRN 00123456",
    "patient id 00123456",
    "AKIAIOSFODNN7EXAMPLE",
    "aws secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    "glpat-abcdefghij0123456789",
    "xoxb-1234567890-abcdefghij",
    "https://hooks.slack.com/services/T0000/B0000/XXXXXXXX",
    "sk_live_abcdefghijklmnop1234",
    "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
    "api_key=Zx9Qw3Er7Ty1Ui5Op2As",
    "password: hunter2Hunter2xyz",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----",
    "EMP-123456",
    "badge #12345",
    /* Normalization: full-width, Arabic-Indic digits, a zero-width space, a soft hyphen. */
    "\xef\xbc\x91\xef\xbc\x93\xef\xbc\x94-67-7626",
    "\xd9\xa1\xd9\xa3\xd9\xa4-\xd9\xa6\xd9\xa7-\xd9\xa7\xd9\xa6\xd9\xa2\xd9\xa6",
    "134-6\xe2\x80\x8b"
    "7-7626",
    "4111\xc2\xad 1111 1111 1111",
};

static const char *const fillers[] = {
    "",         "a",          "1",      "-",    " ",
    "\n",       "x\ny",       "ok",     "12",   "123",
    "order",    "ssn",        "phone",  "dob",  "card",
    "passport", "provider",   "secret", "MRN",  "the patient reported mild pain",
    "Layla",    "2024-01-05", "P42",    "\n\n", "\t\n",
    "@",        "a@b.co",     "+1",     "(",    "415",
    "555-2671", "4111",       "ssn\n",
};

static const char *const keys[] = {
    "note",    "ssn",       "phone",  "dob",      "patient_id",  "mrn",         "value",
    "text",    "card",      "iban",   "email",    "npi",         "dea",         "passport",
    "license", "apiKey",    "secret", "contact",  "dateOfBirth", "socialSecNo", "x",
    "items",   "a\nb",      "tel",    "provider", "badge",       "access",      "notes",
    "ssn\n",   "Telephone", "id",     "name",     "chart"};

static void rand_piece(char *out, size_t cap)
{
    const char *s = below(3) ? samples[below(sizeof samples / sizeof samples[0])]
                             : fillers[below(sizeof fillers / sizeof fillers[0])];
    snprintf(out, cap, "%s", s);
}

/* A string of a few pieces joined by spaces, newlines or nothing. */
static json_t *rand_string(void)
{
    char buf[2048];
    size_t n = 0, pieces = 1 + below(4);
    buf[0] = '\0';
    for (size_t i = 0; i < pieces && n < sizeof buf - 300; i++) {
        static const char *const seps[] = {"", " ", "\n", ", ", ": "};
        char piece[256];
        rand_piece(piece, sizeof piece);
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", i ? seps[below(5)] : "", piece);
    }
    if (below(12) == 0) {
        /* Base64 of the text: scanned decoded too. */
        struct gw_buf e = {0};
        struct safety_b64 form = {.url = (int)below(2), .padded = 1};
        assert_int_equal(safety_base64_encode(&e, &form, buf, n), 0);
        json_t *j = json_stringn(e.data ? e.data : "", e.len);
        gw_buf_free(&e);
        return j;
    }
    return json_stringn(buf, n);
}

static json_t *rand_value(int depth);

static json_t *rand_container(int depth)
{
    size_t n = below(6);
    if (below(2)) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, rand_value(depth + 1));
        return a;
    }
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++) {
        char k[300];
        const char *base = below(6) ? keys[below(sizeof keys / sizeof keys[0])]
                                    : samples[below(sizeof samples / sizeof samples[0])];
        snprintf(k, sizeof k, "%s%s", base, below(4) ? "" : "_2");
        json_object_set_new(o, k, rand_value(depth + 1));
    }
    return o;
}

static json_t *rand_value(int depth)
{
    size_t r = below(10);
    if (depth < 6 && r < 3)
        return rand_container(depth);
    if (r == 3) {
        static const json_int_t ints[] = {0,          42,         4155552671,  1346777626,
                                          1234567893, 4111111111, 134677626,   19840305,
                                          -17,        9007199254, 12345678901, 1};
        return json_integer(ints[below(sizeof ints / sizeof ints[0])]);
    }
    if (r == 4)
        return json_real(below(2) ? 0.5555555555554444 : 4155552671.5);
    return rand_string();
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_builtins_joinable(void **state)
{
    (void)state;
    /* The built-in set and the custom patterns above are proven separator-safe: the joined
     * pass runs for them. */
    assert_non_null(dflt->db_joined);
    assert_non_null(custom->db_joined);
    for (size_t i = 0; i < dflt->n_rules; i++)
        if (dflt->rules[i].hs_expr)
            assert_true(safety_expr_joinable(dflt->rules[i].hs_expr, dflt->rules[i].hs_flags));
}

static void test_expr_joinable(void **state)
{
    (void)state;
    static const char *const yes[] = {
        "abc",         "[0-9]{3}[\\-.][0-9]{2}",
        "\\bnpi\\b",   "a.?b",
        "(?:x|y)z",    "(?i)ssn",
        "(?i:ssn) no", "[]a]b",
        "@[A-Za-z]+",  "\\.\\+\\-",
        "[\\w.%+-]+",  "\\d{4}",
        "caf\xc3\xa9", "x{2,}",
        "(ab)+c",      "[a-z ]*",
        "foo|bar",     "a\\|b",
        "\\[x\\]",     "[ -~]",
    };
    static const char *const no[] = {
        "a\\sb",  "[^a]",    "a$",   "^a",  "(?s)a.b", "a\nb",   "\\x0a", "[\\s]",  "[[:alpha:]]",
        "(?=a)b", "(?<!a)b", "\\W",  "\\D", "(?m)a",   "a\\nb",  "\\S",   "[a\\n]", "\\N",
        "\\R",    "\\Qa\\E", "[a-z", "\\",  "(?x)a b", "\\Aa",   "a\\z",  "a\\Z",   "[\\b]",
        "(?#c)a", "a\tb",    "\\t",  "\\h", "\\v",     "\\p{L}", "\\1",   "a\x7f",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!safety_expr_joinable(yes[i], 0))
            fprintf(stderr, "refused: %s\n", yes[i]);
        assert_true(safety_expr_joinable(yes[i], 0));
        assert_true(safety_expr_joinable(yes[i], HS_FLAG_CASELESS | HS_FLAG_PREFILTER));
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        if (safety_expr_joinable(no[i], 0))
            fprintf(stderr, "accepted: %s\n", no[i]);
        assert_false(safety_expr_joinable(no[i], 0));
    }
    /* Flags that change what '.', '^' or '$' match, or what is reported. */
    assert_false(safety_expr_joinable("a.b", HS_FLAG_DOTALL));
    assert_false(safety_expr_joinable("a", HS_FLAG_MULTILINE));
    assert_false(safety_expr_joinable("a", HS_FLAG_SOM_LEFTMOST));
    assert_false(safety_expr_joinable(NULL, 0));
}

static void test_unjoinable_config_scans_alone(void **state)
{
    (void)state;
    /* A custom pattern with \s may match the separator: no joined database, and the scan
     * still finds what it finds per string. */
    struct safety_config *sc = parse("safety:\n"
                                     "  custom:\n"
                                     "    - name: ticket\n"
                                     "      pattern: 'TCK\\s[0-9]{4}'\n");
    assert_non_null(sc);
    assert_null(sc->db_joined);
    json_t *doc = json_pack("{s:s, s:[s, s]}", "a", "TCK", "b", "1234", "TCK 1234");
    size_t budget = sc->max_scan_bytes;
    struct safety_scan_opts opts = {.direction = GW_DIR_REQUEST, .redact = 1, .budget = &budget};
    struct safety_result res = {0};
    struct gw_findings f = {0};
    safety_scan_json(sc, doc, "", &opts, &f, &res);
    assert_int_equal(res.findings, 1);
    assert_int_equal(res.block, 1);
    assert_string_equal(res.block_path, "/b/1");
    gw_findings_free(&f);
    json_decref(doc);
    safety_config_free(sc);
}

static void test_prescan_entries(void **state)
{
    (void)state;
    struct safety_prescan p;
    static const char a[] = "call 415-555-2671", b[] = "nothing here", c[] = "134-67-7626";
    safety_prescan_init(&p, dflt, 1 << 20);
    safety_prescan_add(&p, a, strlen(a), NULL);
    safety_prescan_add(&p, b, strlen(b), NULL);
    safety_prescan_add(&p, c, strlen(c), c);
    safety_prescan_run(&p);
    assert_true(p.ready);
    assert_false(p.failed);
    assert_int_equal(p.n, 3);
    /* Only the next text, by its bytes, is handed out. */
    assert_null(safety_prescan_take(&p, b, strlen(b)));
    assert_non_null(safety_prescan_take(&p, a, strlen(a)));
    const struct safety_prescan_entry *e = safety_prescan_take(&p, b, strlen(b));
    assert_non_null(e);
    assert_int_equal(e->n_hits, 0);
    /* A number's text is found by the number and kept by the prescan. */
    assert_null(safety_prescan_peek_number(&p, a));
    e = safety_prescan_peek_number(&p, c);
    assert_non_null(e);
    assert_true(e->orig != c);
    assert_memory_equal(e->orig, c, strlen(c));
    char copy[sizeof c];
    memcpy(copy, c, sizeof c);
    e = safety_prescan_take(&p, copy, strlen(copy));
    assert_non_null(e);
    assert_true(e->n_hits > 0);
    assert_null(safety_prescan_take(&p, c, strlen(c)));
    safety_prescan_free(&p);

    /* Over the budget: that text and those after it are left out. */
    safety_prescan_init(&p, dflt, 20);
    safety_prescan_add(&p, a, strlen(a), NULL);
    safety_prescan_add(&p, c, strlen(c), NULL);
    safety_prescan_add(&p, "ab", 2, NULL);
    assert_int_equal(p.n, 1);
    safety_prescan_free(&p);
}

/* ---- the prefilter's hits, text by text ----------------------------------------------------- */

struct single {
    size_t *first; /* per rule: end of the first hit, SIZE_MAX none */
};

static int on_single(unsigned id, unsigned long long from, unsigned long long to, unsigned fl,
                     void *arg)
{
    (void)from;
    (void)fl;
    struct single *x = arg;
    if (x->first[id] == SIZE_MAX)
        x->first[id] = (size_t)to;
    return 0;
}

static unsigned rules_hit[64];

/* The hits of a pass over each text alone (the SINGLEMATCH database, as a scan without the
 * joined pass runs it) must be the joined pass's hits for that text, rule by rule. */
static void compare_hits(struct safety_config *sc, const char *const *texts, const size_t *lens,
                         size_t n)
{
    struct safety_prescan p;
    safety_prescan_init(&p, sc, SIZE_MAX);
    for (size_t i = 0; i < n; i++)
        safety_prescan_add(&p, texts[i], lens[i], NULL);
    safety_prescan_run(&p);
    size_t nonempty = 0;
    for (size_t i = 0; i < n; i++)
        nonempty += lens[i] > 0 && lens[i] <= SAFETY_JOIN_MAX_TEXT;
    if (nonempty < 2) {
        safety_prescan_free(&p);
        return;
    }
    assert_true(p.ready);
    size_t *first = malloc(sc->n_rules * sizeof *first);
    assert_non_null(first);
    for (size_t i = 0; i < n; i++) {
        if (lens[i] == 0 || lens[i] > SAFETY_JOIN_MAX_TEXT)
            continue;
        const struct safety_prescan_entry *e = safety_prescan_take(&p, texts[i], lens[i]);
        assert_non_null(e);
        char *t;
        size_t tlen;
        uint32_t *map;
        assert_int_equal(safety_normalize(texts[i], lens[i], &t, &tlen, &map), 0);
        assert_int_equal(tlen, e->tlen);
        for (size_t r = 0; r < sc->n_rules; r++)
            first[r] = SIZE_MAX;
        struct single x = {first};
        if (tlen > 0)
            assert_int_equal(
                hs_scan(sc->db, t, (unsigned)tlen, 0, safety_thread_scratch(sc), on_single, &x),
                HS_SUCCESS);
        size_t n_single = 0;
        for (size_t r = 0; r < sc->n_rules; r++)
            n_single += first[r] != SIZE_MAX;
        int same = n_single == e->n_hits;
        for (size_t h = 0; h < e->n_hits && same; h++) {
            const struct safety_prescan_hit *hit = &p.hits[e->hit_first + h];
            same = first[hit->rule] == hit->end;
            if (hit->rule < 64)
                rules_hit[hit->rule]++;
        }
        if (!same)
            fprintf(stderr, "prefilter hits differ for text %zu of %zu: \"%.*s\"\n", i, n,
                    (int)lens[i], texts[i]);
        assert_true(same);
        if (t != texts[i])
            free(t);
        free(map);
    }
    free(first);
    safety_prescan_free(&p);
}

/* Every sample split at every byte into two neighbouring texts, with neighbours that end or
 * start like a match: a hit spanning two texts would show as a hit the text alone lacks (or
 * an earlier end). Every prefiltered rule must be hit by some sample. */
static void test_no_hit_spans_texts(void **state)
{
    (void)state;
    size_t ns = sizeof samples / sizeof samples[0];
    memset(rules_hit, 0, sizeof rules_hit);
    for (size_t s = 0; s < ns; s++) {
        const char *v = samples[s];
        size_t n = strlen(v);
        for (size_t cut = 0; cut <= n; cut++) {
            const char *other = samples[(s + cut) % ns];
            const char *texts[] = {v, v + cut, other, v, "ssn", v + cut, v};
            size_t lens[] = {cut, n - cut, strlen(other), cut, 3, n - cut, n};
            compare_hits(dflt, texts, lens, 7);
            compare_hits(custom, texts, lens, 7);
        }
    }
    for (size_t r = 0; r < dflt->n_rules && r < 64; r++) {
        if (dflt->rules[r].hs_expr && !rules_hit[r])
            fprintf(stderr, "no sample hits rule %zu (%s)\n", r,
                    dflt->detectors[dflt->rules[r].detector].name);
        assert_true(!dflt->rules[r].hs_expr || rules_hit[r] > 0);
    }
}

/* Generated texts: many in one pass, separators and digits at their ends. */
static void test_hits_generated(void **state)
{
    (void)state;
    enum { N = 400 };
    for (int round = 0; round < 40; round++) {
        json_t *keep[N];
        const char *texts[N];
        size_t lens[N];
        for (int i = 0; i < N; i++) {
            keep[i] = rand_string();
            texts[i] = json_string_value(keep[i]);
            lens[i] = json_string_length(keep[i]);
        }
        compare_hits(round % 2 ? dflt : custom, texts, lens, N);
        for (int i = 0; i < N; i++)
            json_decref(keep[i]);
    }
}

/* Every sample split at every byte into two neighbouring values (array items, and a member
 * name followed by its value), with and without a context word around: a match spanning the
 * two would be found by the joined pass only. */
static void test_split_samples(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof samples / sizeof samples[0]; s++) {
        const char *v = samples[s];
        size_t n = strlen(v);
        for (size_t cut = 0; cut <= n; cut++) {
            json_t *doc = json_object();
            json_t *arr = json_array();
            json_array_append_new(arr, json_stringn(v, cut));
            json_array_append_new(arr, json_stringn(v + cut, n - cut));
            json_object_set_new(doc, "items", arr);
            json_t *pair = json_array();
            json_array_append_new(pair, json_stringn(v, cut));
            json_t *o = json_object();
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(n - cut), v + cut);
            json_object_set_new(o, key, json_stringn(v, cut));
            json_array_append_new(pair, o);
            json_object_set_new(doc, "ssn", pair);
            json_object_set_new(doc, "whole", json_string(v));
            compare(dflt, doc);
            compare(custom, doc);
            json_decref(doc);
        }
    }
}

static void test_generated_corpus(void **state)
{
    (void)state;
    for (int i = 0; i < 1500; i++) {
        json_t *doc = rand_container(0);
        compare(i % 3 ? dflt : custom, doc);
        json_decref(doc);
    }
    fprintf(stderr, "joined pass: %u scans compared, %u with findings\n", compared, with_findings);
    assert_true(with_findings > compared / 4);
}

/*
 * The same value again and again in one string, far apart and close together: a rule's search
 * ends at the last end of its prefilter's hits in the joined pass, and must still find every
 * one (the pass over one string, which knows only the first hit, searches to the end).
 */
static void test_repeats_far_apart(void **state)
{
    (void)state;
    static const size_t gaps[] = {0, 1, 7, 8, 9, 31, 200, 1500};
    unsigned before = compared;
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        for (size_t g = 0; g < sizeof gaps / sizeof gaps[0]; g++) {
            struct gw_buf b = {0};
            size_t times = 2 + (i + g) % 4;
            for (size_t k = 0; k < times; k++) {
                if (k) {
                    assert_int_equal(gw_buf_append(&b, " ", 1), 0);
                    for (size_t n = 0; n < gaps[g]; n++)
                        assert_int_equal(gw_buf_append(&b, n % 5 == 4 ? " " : "w", 1), 0);
                    assert_int_equal(gw_buf_append(&b, " ", 1), 0);
                }
                assert_int_equal(gw_buf_append(&b, samples[i], strlen(samples[i])), 0);
            }
            /* Two strings at least, so the joined pass runs; the repeats in the second and in
             * an object's member. */
            json_t *doc = json_pack("{s:s, s:s#, s:[s, s#]}", "id", "P42", "note", b.data, b.len,
                                    "more", "ok", b.data, b.len);
            assert_non_null(doc);
            compare(i % 3 ? dflt : custom, doc);
            json_decref(doc);
            gw_buf_free(&b);
        }
    }
    assert_true(compared - before == 2 * 8 * sizeof samples / sizeof samples[0]);
}

/* Many tiny values, a huge one between them, and one over the message's byte budget. */
static void test_sizes(void **state)
{
    (void)state;
    json_t *tiny = json_array();
    for (int i = 0; i < 5000; i++) {
        char v[12];
        snprintf(v, sizeof v, "%d", i % 1000);
        json_array_append_new(tiny, json_string(i % 7 ? v : "\n"));
    }
    compare(dflt, tiny);

    size_t big = 300000;
    char *b = malloc(big + 1);
    assert_non_null(b);
    for (size_t i = 0; i < big; i++)
        b[i] = (char)('0' + i % 10);
    memcpy(b + 1000, " 134-67-7626 ", 13);
    memcpy(b + big - 20, " 4111 1111 1111 1111", 20);
    b[big] = '\0';
    json_array_append_new(tiny, json_string(b));
    json_array_append_new(tiny, json_string("SSN 134 67 7626"));
    compare(dflt, tiny);
    /* Digits at every byte: the joined pass hits at every position. */
    memset(b, '7', big);
    json_array_set_new(tiny, 0, json_string(b));
    compare(dflt, tiny);
    json_decref(tiny);

    json_t *over = json_array();
    for (int i = 0; i < 5; i++)
        json_array_append_new(over, json_string(b));
    compare(dflt, over); /* 1.5 MB of strings: over limits.max_scan_bytes */
    json_decref(over);
    free(b);

    /* Deep nesting past limits.max_depth. */
    json_t *deep = json_string("134-67-7626"), *top = NULL;
    for (int i = 0; i < 80; i++) {
        top = json_array();
        json_array_append_new(top, json_string("415-555-2671"));
        json_array_append_new(top, deep);
        deep = top;
    }
    compare(dflt, top);
    json_decref(top);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtins_joinable),
        cmocka_unit_test(test_expr_joinable),
        cmocka_unit_test(test_unjoinable_config_scans_alone),
        cmocka_unit_test(test_prescan_entries),
        cmocka_unit_test(test_no_hit_spans_texts),
        cmocka_unit_test(test_hits_generated),
        cmocka_unit_test(test_split_samples),
        cmocka_unit_test(test_generated_corpus),
        cmocka_unit_test(test_repeats_far_apart),
        cmocka_unit_test(test_sizes),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
