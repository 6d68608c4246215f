/*
 * safety anchors: a built-in rule's search starts a little before the next place its anchor
 * (a run of digits, or a byte) occurs, tries the starts up to the end of that anchor's run,
 * and goes on from the next anchor when none matched. That is only exact when every match of
 * the rule's pattern holds its anchor within anchor_lead bytes of its start, a number counted
 * by hand from each pattern. These tests check it against PCRE2 itself: over generated texts
 * full of near-misses and of the longest ways into every alternative, the matches of a search
 * with the anchor (the text's digit runs read once, or read again for each anchor) must be
 * those of a search without it, from every starting offset tried; and every match found must
 * hold its anchor where the table says. A lead one byte too short fails here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "layers/safety/safety-int.h"

#define MAX_SPANS 512

struct spans {
    size_t n;
    size_t s[MAX_SPANS], e[MAX_SPANS];
};

static int collect(void *arg, const PCRE2_SIZE *ov)
{
    struct spans *sp = arg;
    assert_true(sp->n < MAX_SPANS);
    sp->s[sp->n] = ov[0];
    sp->e[sp->n] = ov[1];
    sp->n++;
    return 0;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* The longest ways into the rules' alternatives, and their near-misses. */
static const char *const pieces[] = {
    "September 12th, 2020",
    "12th September., 2020",
    "sep 1 1999",
    "Dec. 3, 2001",
    "12/31/1999",
    "1.2.2000",
    "2000-1-2",
    "3rd jan 1970",
    "1 (503) 555-0195",
    "1-503-555-0195",
    "(503)555-0195",
    "+1 (503) 555 0195",
    "+44 20 7946 0958",
    "427-45-0619",
    "427 45 0619",
    "427450619",
    "912-34-5678",
    "987.65.4321",
    "923-45-6789",
    "955 12 3456",
    "900-70-0001",
    "912 34 5678",
    "912345678",
    "4111 1111 1111 1111",
    "4111.1111.1111.1111",
    "3782.822463.10005",
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "first.last+tag@example.com",
    "a@b.co",
    "@example.org",
    "192.168.0.1",
    "10.0.0.255",
    "fe80::1",
    "ffff:ffff::ffff",
    "2001:db8:85a3::8a2e:370:7334",
    "::",
    "1234567893",
    "2123456789",
    "AB1234563",
    "A91234567",
    "C12345678",
    "123456789",
    "D123-456-78-901-2",
    "AB-123456-12",
    "X1234567",
    "MRN-17876879",
    "MRN:# 1234567",
    "MRN 123456",
    "ABC1234567",
    "12345678901",
    "15035550195",
    "5035550195",
    "0",
    "12",
    "123",
    "1234",
    "12345",
    "123456",
    "-",
    ".",
    "/",
    ":",
    "+",
    "@",
    "(",
    ")",
    ",",
    " ",
    "  ",
    "th",
    "st",
    "nd",
    "rd",
    "jan",
    "Feb",
    "MAR",
    "tember",
    "a",
    "Z",
    "_",
    "x9",
    "9x",
    "99",
    "1-",
    "-1",
    ".5",
    "5.",
    "1 ",
    " 1",
    "e",
    "E",
    "f",
    ":f",
};

static size_t make_text(char *out, size_t cap)
{
    size_t n = 0, parts = 1 + next_rand() % 24;
    for (size_t i = 0; i < parts; i++) {
        const char *p;
        char digits[24];
        if (next_rand() % 4 == 0) {
            size_t len = 1 + next_rand() % 14;
            for (size_t k = 0; k < len; k++)
                digits[k] = (char)('0' + next_rand() % 10);
            digits[len] = '\0';
            p = digits;
        } else {
            p = pieces[next_rand() % (sizeof pieces / sizeof pieces[0])];
        }
        size_t len = strlen(p);
        if (n + len + 1 >= cap)
            break;
        memcpy(out + n, p, len);
        n += len;
        if (next_rand() % 3 == 0)
            out[n++] = " ,;-./:\"x"[next_rand() % 9];
    }
    /* A long local part before an '@' (64 bytes is the most the email rule takes). */
    if (next_rand() % 16 == 0 && n + 80 < cap) {
        size_t len = 60 + next_rand() % 8;
        for (size_t k = 0; k < len; k++)
            out[n++] = (char)('a' + next_rand() % 26);
        memcpy(out + n, "@example.com", 12);
        n += 12;
    }
    out[n] = '\0';
    return n;
}

/* Whether the match [s, e) holds the rule's anchor starting within its lead of s. */
static int anchor_held(const struct safety_rule *r, const char *t, size_t s, size_t e)
{
    size_t last = s + r->anchor_lead;
    for (size_t q = s; q <= last && q < e; q++) {
        if (r->anchor_byte) {
            if (t[q] == r->anchor_byte)
                return 1;
            continue;
        }
        size_t k = 0;
        while (k < r->anchor_digits && q + k < e && t[q + k] >= '0' && t[q + k] <= '9')
            k++;
        if (k == r->anchor_digits)
            return 1;
    }
    return 0;
}

static void search(const struct safety_config *sc, const struct safety_rule *r,
                   pcre2_match_data *md, const char *t, size_t n, size_t from, int anchored,
                   int with_runs, struct spans *out)
{
    struct safety_digit_runs runs;
    memset(&runs, 0, sizeof runs);
    out->n = 0;
    /* Without the anchor: the same rule (the same compiled pattern) with it cleared. */
    struct safety_rule plain = *r;
    if (!anchored) {
        plain.anchor_digits = 0;
        plain.anchor_byte = 0;
    }
    pcre2_match_context *mc = pcre2_match_context_copy(sc->match_ctx);
    assert_non_null(mc);
    assert_int_equal(
        safety_rule_each(&plain, t, n, from, with_runs ? &runs : NULL, md, mc, collect, out), 0);
    pcre2_match_context_free(mc);
}

static void assert_same(const struct spans *a, const struct spans *b, const char *rule,
                        const char *t, size_t from)
{
    if (a->n == b->n && memcmp(a->s, b->s, a->n * sizeof a->s[0]) == 0 &&
        memcmp(a->e, b->e, a->n * sizeof a->e[0]) == 0)
        return;
    fail_msg("rule %s from %zu: %zu matches without the anchor, %zu with it, in \"%s\"", rule, from,
             a->n, b->n, t);
}

/* Every anchored built-in rule, over generated texts, from several offsets. */
static void test_anchored_equals_unanchored(void **state)
{
    (void)state;
    struct safety_config *sc = safety_config_default();
    assert_non_null(sc);
    static char text[4096];
    size_t anchored_rules = 0;
    for (size_t i = 0; i < sc->n_rules; i++) {
        const struct safety_rule *r = &sc->rules[i];
        if (!r->anchor_digits && !r->anchor_byte)
            continue;
        anchored_rules++;
        const char *name = sc->detectors[r->detector].name;
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->re, NULL);
        assert_non_null(md);
        size_t matches = 0;
        for (int round = 0; round < 3000; round++) {
            size_t n = make_text(text, sizeof text);
            size_t froms[5] = {0, n ? next_rand() % n : 0, n / 2, n, n + 2};
            for (int f = 0; f < 5; f++) {
                struct spans plain, fast, reread;
                search(sc, r, md, text, n, froms[f], 0, 0, &plain);
                search(sc, r, md, text, n, froms[f], 1, 1, &fast);
                search(sc, r, md, text, n, froms[f], 1, 0, &reread);
                assert_same(&plain, &fast, name, text, froms[f]);
                assert_same(&plain, &reread, name, text, froms[f]);
                for (size_t k = 0; k < plain.n; k++)
                    if (!anchor_held(r, text, plain.s[k], plain.e[k]))
                        fail_msg("rule %zu (%s): the match \"%.*s\" has no anchor within %u bytes "
                                 "of its start",
                                 i, name, (int)(plain.e[k] - plain.s[k]), text + plain.s[k],
                                 r->anchor_lead);
                matches += plain.n;
            }
        }
        /* The texts must reach every rule, or this test proves nothing about it. */
        if (matches < 100)
            fail_msg("rule %zu (%s): only %zu matches in the generated texts", i, name, matches);
        pcre2_match_data_free(md);
    }
    assert_int_equal(anchored_rules, 20);
    safety_config_free(sc);
}

/* The anchor found past the digit runs the text's first reading kept (more runs than it
 * lists), and in a text with no anchor at all. */
static void test_many_runs_and_none(void **state)
{
    (void)state;
    struct safety_config *sc = safety_config_default();
    assert_non_null(sc);
    static char text[8192];
    size_t n = 0;
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%d x ", i % 10);
    n += (size_t)snprintf(text + n, sizeof text - n, "born September 12th, 2020 ssn 427-45-0619");
    const char *date = strstr(text, "September"), *ssn = strstr(text, "427-45-0619");
    int date_found = 0, ssn_found = 0;
    for (size_t i = 0; i < sc->n_rules; i++) {
        const struct safety_rule *r = &sc->rules[i];
        if (!r->anchor_digits)
            continue;
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->re, NULL);
        struct spans plain, fast;
        search(sc, r, md, text, n, 0, 0, 0, &plain);
        search(sc, r, md, text, n, 0, 1, 1, &fast);
        assert_same(&plain, &fast, sc->detectors[r->detector].name, "(many runs)", 0);
        for (size_t k = 0; k < fast.n; k++) {
            const char *m = text + fast.s[k];
            size_t len = fast.e[k] - fast.s[k];
            date_found |= r->detector == SB_DOB && m == date && len == 20;
            ssn_found |= r->detector == SB_SSN && m == ssn && len == 11;
        }
        /* No digit at all: the anchored search stops before PCRE2 runs. */
        search(sc, r, md, "no digits here at all", 21, 0, 1, 1, &fast);
        assert_int_equal(fast.n, 0);
        pcre2_match_data_free(md);
    }
    /* Both lie past the 48 runs the first reading lists. */
    assert_true(date_found);
    assert_true(ssn_found);
    safety_config_free(sc);
}

/* The whole scan still finds the longest ways in, behind other digits. */
static void test_scan_finds_longest_leads(void **state)
{
    (void)state;
    struct safety_config *sc = safety_config_default();
    assert_non_null(sc);
    /* Each with the exact span the longest way in must give: a start a byte too late finds a
     * shorter span, or another rule's, or nothing. */
    static const struct {
        const char *text, *type, *span;
    } cases[] = {
        {"1 2 3 date of birth: 12th September., 2020", "dob", "12th September., 2020"},
        {"11 22 born September 12th, 2020", "dob", "September 12th, 2020"},
        {"44 55 mrn ABC1234567", "mrn", "ABC1234567"},
        {"77 record MRN:# 1234567", "mrn", "MRN:# 1234567"},
        {"00 99 call 1 (503) 555-0195", "phone", "1 (503) 555-0195"},
        {"12 34 mail abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd@example.com",
         "email", "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd@example.com"},
        {"8 9 dea AB1234563 prescriber", "dea", "AB1234563"},
        {"55 driver's licence AB-123456-12", "drivers_license", "AB-123456-12"},
        {"5 6 host ffff:ffff::ffff", "ip_address", "ffff:ffff::ffff"},
        {"7 8 ssn 427-45-0619", "ssn", "427-45-0619"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct safety_match m[8];
        unsigned flags = 0;
        const char *text = cases[i].text;
        int n = safety_scan_text_pre(sc, NULL, NULL, text, strlen(text), NULL, 0, NULL,
                                     GW_DIR_RESPONSE, NULL, m, 8, &flags);
        size_t want = (size_t)(strstr(text, cases[i].span) - text);
        int seen = 0;
        for (int k = 0; k < n; k++)
            seen |= strcmp(sc->detectors[m[k].detector].name, cases[i].type) == 0 &&
                    m[k].start == want && m[k].end == want + strlen(cases[i].span);
        if (!seen)
            fail_msg("no %s at \"%s\" in \"%s\" (%d findings)", cases[i].type, cases[i].span, text,
                     n);
    }
    safety_config_free(sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anchored_equals_unanchored),
        cmocka_unit_test(test_many_runs_and_none),
        cmocka_unit_test(test_scan_finds_longest_leads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
