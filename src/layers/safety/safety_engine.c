/*
 * safety_engine: the detectors and their compiled patterns (the scan itself is in
 * safety_scan.c).
 *
 * A scan is one vectorscan pass over the (normalized) string with every rule's prefilter
 * expression (HS_FLAG_SINGLEMATCH: each rule reports its first hit once). Only rules that hit
 * run their PCRE2 confirmer, from a little before the first hit to the end of the string; the
 * confirmer's matches go through the rule's validator and, for weak patterns, the context
 * check. Every PCRE2 pattern is written so that a match can only start where a run of its
 * leading characters starts (a negative lookbehind on that class) and repeats are possessive,
 * so the confirmers stay linear in the string's length; the match limit bounds them anyway.
 */
#include "layers/safety/safety-int.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const safety_builtin_names[SB_COUNT] = {
    [SB_PRIVATE_KEY] = "private_key",
    [SB_AWS_ACCESS_KEY] = "aws_access_key",
    [SB_AWS_SECRET_KEY] = "aws_secret_key",
    [SB_GITHUB_TOKEN] = "github_token",
    [SB_GITLAB_TOKEN] = "gitlab_token",
    [SB_SLACK_TOKEN] = "slack_token",
    [SB_STRIPE_KEY] = "stripe_key",
    [SB_GOOGLE_API_KEY] = "google_api_key",
    [SB_JWT] = "jwt",
    [SB_GENERIC_SECRET] = "generic_secret",
    [SB_SSN] = "ssn",
    [SB_ITIN] = "itin",
    [SB_CREDIT_CARD] = "credit_card",
    [SB_IBAN] = "iban",
    [SB_EMAIL] = "email",
    [SB_PHONE] = "phone",
    [SB_IP_ADDRESS] = "ip_address",
    [SB_NPI] = "npi",
    [SB_DEA] = "dea",
    [SB_DOB] = "dob",
    [SB_PASSPORT] = "passport",
    [SB_DRIVERS_LICENSE] = "drivers_license",
    [SB_MRN] = "mrn",
};

/* Default request actions (docs/safety.md, "Defaults"). */
static enum safety_action builtin_default(int b)
{
    if (b <= SB_GENERIC_SECRET || b == SB_SSN || b == SB_ITIN)
        return SAFETY_BLOCK;
    switch (b) {
    case SB_EMAIL:
    case SB_PHONE:
    case SB_IP_ADDRESS:
    case SB_NPI:
        return SAFETY_LOG;
    default:
        return SAFETY_REDACT;
    }
}

static int builtin_last4(int b)
{
    return b == SB_SSN || b == SB_ITIN || b == SB_CREDIT_CARD || b == SB_IBAN || b == SB_PHONE ||
           b == SB_NPI || b == SB_PASSPORT || b == SB_DRIVERS_LICENSE || b == SB_MRN;
}

/* Context words per built-in detector (lower case). */
static const char *const ctx_ssn[] = {"ssn", "social security", "soc sec", "ss#", "ss no", NULL};
static const char *const ctx_itin[] = {"itin", "taxpayer", "tax id", "tin", NULL};
static const char *const ctx_card[] = {"card",       "credit", "debit", "visa",
                                       "mastercard", "amex",   NULL};
static const char *const ctx_iban[] = {"iban", "account", "bank", NULL};
static const char *const ctx_phone[] = {"phone", "tel",     "telephone", "mobile", "cell",
                                        "fax",   "contact", "call",      "sms",    NULL};
static const char *const ctx_dea[] = {"dea", "registration", "prescriber", "controlled substance",
                                      NULL};
static const char *const ctx_npi[] = {"npi", "national provider", "provider", "prescriber", NULL};
static const char *const ctx_dob[] = {"dob",  "d.o.b",    "date of birth", "birth",
                                      "born", "birthday", "birthdate",     NULL};
static const char *const ctx_passport[] = {"passport", NULL};
static const char *const ctx_dl[] = {"driver",  "drivers", "driving", "licence",
                                     "license", "dl",      "dln",     NULL};
static const char *const ctx_mrn[] = {
    "mrn", "medical record", "record number", "chart", "patient number", "patient id", NULL};
static const char *const ctx_aws[] = {"aws", "secret", "secret access key", "secretaccesskey",
                                      NULL};
static const char *const ctx_generic[] = {
    "api key", "apikey",     "api_key",    "secret", "token",  "password", "passwd",
    "pwd",     "access key", "credential", "auth",   "bearer", NULL};
static const char *const ctx_none[] = {NULL};

static const char *const *builtin_context(int b)
{
    switch (b) {
    case SB_SSN:
        return ctx_ssn;
    case SB_ITIN:
        return ctx_itin;
    case SB_CREDIT_CARD:
        return ctx_card;
    case SB_IBAN:
        return ctx_iban;
    case SB_PHONE:
        return ctx_phone;
    case SB_NPI:
        return ctx_npi;
    case SB_DEA:
        return ctx_dea;
    case SB_DOB:
        return ctx_dob;
    case SB_PASSPORT:
        return ctx_passport;
    case SB_DRIVERS_LICENSE:
        return ctx_dl;
    case SB_MRN:
        return ctx_mrn;
    case SB_AWS_SECRET_KEY:
        return ctx_aws;
    case SB_GENERIC_SECRET:
        return ctx_generic;
    default:
        return ctx_none;
    }
}

/* Boundaries: no letter or digit (or the pattern's own run characters) right before/after. */
#define NB "(?<![A-Za-z0-9_-])"
#define NA "(?![A-Za-z0-9_]|-[0-9]|\\.[0-9])"
#define CI HS_FLAG_CASELESS

struct builtin_rule {
    int b;
    const char *re;
    int group;
    int need_context;
    const char *hs;
    unsigned hs_flags;
    int keyword_filter;
    enum safety_check check;
    unsigned char anchor_digits; /* struct safety_rule's anchor (ANCHOR_DIGITS, ANCHOR_BYTE) */
    char anchor_byte;
    unsigned char anchor_lead;
};

/* Every match holds n digits in a row (or the byte c) starting at most lead bytes after the
 * match's start: the longest way into each of the pattern's alternatives, counted by hand and
 * checked against every match of generated texts (test_safety_anchors.c). */
#define ANCHOR_DIGITS(n, lead) n, 0, lead
#define ANCHOR_BYTE(c, lead) 0, c, lead
#define NO_ANCHOR 0, 0, 0

static const struct builtin_rule builtin_rules[] = {
    {SB_PRIVATE_KEY, "-----BEGIN (?:[A-Z0-9]{1,20} ){0,4}PRIVATE KEY(?: BLOCK)?-----", 0, 0,
     "-----BEGIN [A-Z0-9 ]*PRIVATE KEY", 0, 1, SC_PEM, NO_ANCHOR},
    {SB_AWS_ACCESS_KEY,
     "(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])", 0, 0,
     "(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}", 0, 0, SC_NONE, NO_ANCHOR},
    {SB_AWS_SECRET_KEY, "(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])", 0, 1,
     "aws|secret.?access", CI, 1, SC_SECRET, NO_ANCHOR},
    {SB_GITHUB_TOKEN,
     "(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}+|github_pat_[A-Za-z0-9_]{22,255}+)(?![A-Za-"
     "z0-9_])",
     0, 0, "gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22}", 0, 0, SC_NONE, NO_ANCHOR},
    {SB_GITLAB_TOKEN, "(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20,255}+", 0, 0,
     "glpat-[A-Za-z0-9_\\-]{20}", 0, 0, SC_NONE, NO_ANCHOR},
    {SB_SLACK_TOKEN, "(?<![A-Za-z0-9_-])xox[abposr]-[A-Za-z0-9-]{10,250}+", 0, 0,
     "xox[abposr]-[A-Za-z0-9\\-]{10}", 0, 0, SC_NONE, NO_ANCHOR},
    {SB_SLACK_TOKEN,
     "https://hooks\\.slack\\.com/services/T[A-Za-z0-9_]{1,40}+/B[A-Za-z0-9_]{1,40}+/"
     "[A-Za-z0-9_]{1,80}+",
     0, 0, "hooks\\.slack\\.com/services/T", 0, 1, SC_NONE, NO_ANCHOR},
    {SB_STRIPE_KEY, "(?<![A-Za-z0-9_])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}+", 0, 0,
     "(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16}", 0, 0, SC_NONE, NO_ANCHOR},
    {SB_GOOGLE_API_KEY, "(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])", 0, 0,
     "AIza[0-9A-Za-z_\\-]{35}", 0, 0, SC_NONE, NO_ANCHOR},
    {SB_JWT, "(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{2,}+\\.eyJ[A-Za-z0-9_-]{2,}+\\.[A-Za-z0-9_-]*+", 0,
     0, "eyJ[A-Za-z0-9_\\-]{2}[A-Za-z0-9_\\-]*\\.eyJ", 0, 1, SC_JWT, NO_ANCHOR},
    {SB_GENERIC_SECRET,
     "(?i)(?:api[_-]?key|secret|token|passw(?:or)?d|pwd|access[_-]?key|credential|auth)[a-z_-]{0,"
     "20}+"
     "[\"']?\\s{0,3}+[:=]\\s{0,3}+[\"']?(?-i)([A-Za-z0-9+/=_.~-]{12,256}+)",
     1, 0, "api[_\\-]?key|secret|token|passw(or)?d|pwd|access[_\\-]?key|credential|auth", CI, 1,
     SC_SECRET, NO_ANCHOR},
    {SB_GENERIC_SECRET, "^\\s*+([A-Za-z0-9+/=_.~-]{12,256}+)\\s*+$", 1, 1,
     "api[_\\-]?key|secret|token|passw(or)?d|pwd|access[_\\-]?key|credential|auth|bearer", CI, 1,
     SC_SECRET, NO_ANCHOR},
    /* Dashes or dots (536.22.8411) need no context; one kind in a number. */
    {SB_SSN, NB "(?<![0-9]\\.)[0-9]{3}([-.])[0-9]{2}\\1[0-9]{4}" NA, 0, 0,
     "[0-9]{3}[\\-.][0-9]{2}[\\-.][0-9]{4}", 0, 0, SC_SSN, ANCHOR_DIGITS(4, 7)},
    {SB_SSN, NB "(?:[0-9]{3} [0-9]{2} [0-9]{4}|[0-9]{9})" NA, 0, 1,
     "ssn|social.?security|soc\\.? ?sec|ss ?#|ss ?no", CI, 1, SC_SSN, ANCHOR_DIGITS(4, 7)},
    {SB_ITIN, NB "(?<![0-9]\\.)9[0-9]{2}([-.])[0-9]{2}\\1[0-9]{4}" NA, 0, 0,
     "9[0-9]{2}[\\-.][0-9]{2}[\\-.][0-9]{4}", 0, 0, SC_ITIN, ANCHOR_DIGITS(4, 7)},
    {SB_ITIN, NB "9(?:[0-9]{2} [0-9]{2} [0-9]{4}|[0-9]{8})" NA, 0, 1,
     "itin|taxpayer|tax id|\\btin\\b", CI, 1, SC_ITIN, ANCHOR_DIGITS(4, 7)},
    {SB_CREDIT_CARD, "(?<![A-Za-z0-9_])(?<![0-9][ -])[0-9](?:[ -]?[0-9])*+(?![A-Za-z_])", 0, 0,
     "[0-9](?:[ \\-]?[0-9]){11}", 0, 0, SC_CARD, ANCHOR_DIGITS(1, 0)},
    /* Dotted groups (4111.1111.1111.1111, 3782.822463.10005): a rule of its own, so that the
     * digits after a decimal point never start a card. */
    {SB_CREDIT_CARD,
     "(?<![A-Za-z0-9_.])[0-9]{4}\\.(?:[0-9]{4}\\.[0-9]{4}\\.[0-9]{1,4}(?:\\.[0-9]{1,3})?|[0-9]{6}"
     "\\.[0-9]{4,5})(?![A-Za-z0-9_]|\\.[0-9])",
     0, 0, "[0-9]{4}\\.[0-9]{4,6}\\.[0-9]{4}", 0, 0, SC_CARD, ANCHOR_DIGITS(4, 0)},
    {SB_IBAN,
     "(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])", 0,
     0, "[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}", 0, 0, SC_IBAN, ANCHOR_DIGITS(2, 2)},
    {SB_EMAIL, "(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}+", 0, 0,
     "@[A-Za-z0-9\\-]+\\.[A-Za-z0-9.\\-]*[A-Za-z]{2}", 0, 1, SC_EMAIL, ANCHOR_BYTE('@', 64)},
    {SB_PHONE, "(?<![A-Za-z0-9+])\\+[1-9](?:[ .-]?\\(?[0-9]\\)?){7,14}+(?![A-Za-z0-9])", 0, 0,
     "\\+[1-9](?:[ .\\-]?\\(?[0-9]\\)?){7}", 0, 0, SC_PHONE, ANCHOR_BYTE('+', 0)},
    {SB_PHONE,
     "(?<![A-Za-z0-9+(.-])(?:1[ .-]?)?(?:\\([0-9]{3}\\)[ .-]?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}"
     "(?![A-Za-z0-9]|[.-][0-9])",
     0, 0, "(?:[0-9]{3}[ .\\-]|\\([0-9]{3}\\)[ .\\-]?)[0-9]{3}[ .\\-][0-9]{4}", 0, 0, SC_PHONE,
     ANCHOR_DIGITS(3, 3)},
    {SB_IP_ADDRESS, "(?<![0-9.])(?:[0-9]{1,3}\\.){3}[0-9]{1,3}(?![0-9]|\\.[0-9])", 0, 0,
     "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}", 0, 0, SC_IPV4, ANCHOR_DIGITS(1, 0)},
    {SB_IP_ADDRESS,
     "(?<![A-Za-z0-9:.])(?:[0-9A-Fa-f]{0,4}:){2,7}+(?:(?:[0-9]{1,3}\\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,"
     "4})?"
     "(?![A-Za-z0-9:])",
     0, 0, "[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}", 0, 0, SC_IPV6,
     ANCHOR_BYTE(':', 4)},
    {SB_NPI, "(?<![A-Za-z0-9])[12][0-9]{9}(?![A-Za-z0-9])", 0, 1,
     "\\bnpi\\b|national provider|provider|prescriber", CI, 1, SC_NPI, ANCHOR_DIGITS(10, 0)},
    {SB_DEA, "(?<![A-Za-z0-9])[ABCDEFGHJKLMPRSTUX][A-Z9][0-9]{7}(?![A-Za-z0-9])", 0, 1,
     "\\bdea\\b|registration|prescriber|controlled substance", CI, 1, SC_DEA, ANCHOR_DIGITS(7, 2)},
    {SB_DOB,
     "(?<![A-Za-z0-9])(?:[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}|[0-9]{1,2}([/.-])[0-9]{1,2}\\1[0-9]{4}"
     "|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]{0,6}+\\.? "
     "[0-9]{1,2}(?:st|nd|rd|th)?,? [0-9]{4}"
     "|[0-9]{1,2}(?:st|nd|rd|th)? "
     "(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]{0,6}+\\.?,? [0-9]{4})"
     "(?![A-Za-z0-9])",
     0, 1, "\\bdob\\b|d\\.o\\.b|birth|\\bborn\\b", CI, 1, SC_DATE, ANCHOR_DIGITS(4, 17)},
    {SB_PASSPORT, "(?<![A-Za-z0-9])(?:[A-Z][0-9]{8}|[0-9]{9})(?![A-Za-z0-9])", 0, 1, "passport", CI,
     1, SC_NONE, ANCHOR_DIGITS(8, 1)},
    {SB_DRIVERS_LICENSE,
     "(?<![A-Za-z0-9-])(?:[A-Z]{1,2}[0-9]{4,14}|[0-9]{5,13}|[A-Z][0-9]{3}-[0-9]{3}-[0-9]{2}-[0-9]{"
     "3}-[0-9]"
     "|[A-Z]{1,2}-[0-9]{3,8}(?:-[0-9]{2,6}){0,3})(?![A-Za-z0-9]|-[0-9])",
     0, 1, "driv|licen[cs]e|\\bdln?\\b", CI, 1, SC_NONE, ANCHOR_DIGITS(3, 3)},
    {SB_MRN, "(?<![A-Za-z0-9])MRN[-:# ]{0,3}+[0-9]{6,10}(?![A-Za-z0-9])", 0, 0,
     "MRN[\\-:# ]{0,3}[0-9]{6}", 0, 0, SC_NONE, ANCHOR_DIGITS(6, 6)},
    {SB_MRN, "(?<![A-Za-z0-9-])[A-Z]{0,3}[0-9]{6,10}(?![A-Za-z0-9]|-[0-9])", 0, 1,
     "\\bmrn\\b|medical record|record (number|no)|\\bchart\\b|patient (number|no|id)", CI, 1,
     SC_NONE, ANCHOR_DIGITS(6, 3)},
    /* Last: on equal spans a more specific type wins over a bare ten-digit number. */
    {SB_PHONE, "(?<![A-Za-z0-9])1?[0-9]{10}(?![A-Za-z0-9])", 0, 1,
     "phone|\\btel\\b|telephone|mobile|\\bcell|\\bfax\\b|contact|\\bcall|\\bsms\\b", CI, 1,
     SC_PHONE, ANCHOR_DIGITS(10, 0)},
};

static atomic_uint_fast64_t generation_counter;

static char *dup_lower(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        d[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
    return d;
}

int safety_add_detector(struct safety_config *sc, const char *name, int builtin)
{
    struct safety_detector *d = realloc(sc->detectors, (sc->n_detectors + 1) * sizeof *d);
    if (!d)
        return -1;
    sc->detectors = d;
    d = &sc->detectors[sc->n_detectors];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    for (size_t i = 0; i < sizeof d->label - 1 && name[i]; i++)
        d->label[i] = (char)((name[i] >= 'a' && name[i] <= 'z') ? name[i] - 32 : name[i]);
    d->builtin = builtin;
    d->context = calloc(1, sizeof *d->context);
    if (!d->context)
        return -1;
    return (int)sc->n_detectors++;
}

int safety_add_rule(struct safety_config *sc, const struct safety_rule_spec *spec, char *why,
                    size_t why_len)
{
    int errcode;
    PCRE2_SIZE erroff;
    /* An anchored search limits where a match may start (pcre2_set_offset_limit). */
    uint32_t flags = spec->re_flags;
    if (spec->anchor_digits || spec->anchor_byte)
        flags |= PCRE2_USE_OFFSET_LIMIT;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)spec->re, PCRE2_ZERO_TERMINATED, flags, &errcode, &erroff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        snprintf(why, why_len, "%s at offset %zu", (const char *)msg, (size_t)erroff);
        return -1;
    }
    uint32_t groups = 0;
    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups);
    if ((uint32_t)spec->group > groups) {
        pcre2_code_free(re);
        snprintf(why, why_len, "the pattern has no capture group %d", spec->group);
        return -1;
    }
    /* JIT is an optimisation: without it (unsupported platform) the interpreter runs. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    struct safety_rule *r = realloc(sc->rules, (sc->n_rules + 1) * sizeof *r);
    if (!r) {
        pcre2_code_free(re);
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    sc->rules = r;
    r = &sc->rules[sc->n_rules];
    memset(r, 0, sizeof *r);
    r->detector = spec->detector;
    r->re = re;
    r->group = spec->group;
    r->need_context = spec->need_context;
    r->keyword_filter = spec->keyword_filter;
    r->check = spec->check;
    r->hs_flags = spec->hs_flags;
    r->anchor_digits = spec->anchor_digits;
    r->anchor_byte = spec->anchor_byte;
    r->anchor_lead = spec->anchor_lead;
    if (spec->hs) {
        hs_expr_info_t *info = NULL;
        hs_compile_error_t *cerr = NULL;
        if (hs_expression_info(spec->hs, spec->hs_flags, &info, &cerr) == HS_SUCCESS) {
            r->hs_expr = strdup(spec->hs);
            r->max_width = info->max_width == UINT_MAX ? 0 : info->max_width;
            free(info);
            if (!r->hs_expr) {
                pcre2_code_free(re);
                snprintf(why, why_len, "out of memory");
                return -1;
            }
        } else {
            hs_free_compile_error(cerr);
        }
    }
    sc->n_rules++;
    return 0;
}

static int add_context_words(struct safety_detector *d, const char *const *words)
{
    size_t n = 0;
    while (words[n])
        n++;
    char **v = realloc(d->context, (d->n_context + n + 1) * sizeof *v);
    if (!v)
        return -1;
    d->context = v;
    for (size_t i = 0; i < n; i++) {
        v[d->n_context] = dup_lower(words[i]);
        if (!v[d->n_context])
            return -1;
        v[++d->n_context] = NULL;
    }
    return 0;
}

int safety_add_builtins(struct safety_config *sc)
{
    char why[200];
    for (int b = 0; b < SB_COUNT; b++) {
        int di = safety_add_detector(sc, safety_builtin_names[b], b);
        if (di != b)
            return -1;
        struct safety_detector *d = &sc->detectors[di];
        d->secret = b <= SB_GENERIC_SECRET;
        d->action[GW_DIR_REQUEST] = builtin_default(b);
        d->action[GW_DIR_RESPONSE] =
            builtin_default(b) == SAFETY_BLOCK ? SAFETY_REDACT : builtin_default(b);
        d->keep_last4 = builtin_last4(b);
        if (add_context_words(d, builtin_context(b)) != 0)
            return -1;
    }
    for (size_t i = 0; i < sizeof builtin_rules / sizeof builtin_rules[0]; i++) {
        const struct builtin_rule *br = &builtin_rules[i];
        struct safety_rule_spec spec = {
            .detector = br->b,
            .re = br->re,
            .re_flags = 0,
            .group = br->group,
            .need_context = br->need_context,
            .hs = br->hs,
            .hs_flags = br->hs_flags,
            .keyword_filter = br->keyword_filter,
            .check = br->check,
            .anchor_digits = br->anchor_digits,
            .anchor_lead = br->anchor_lead,
            .anchor_byte = br->anchor_byte,
        };
        if (safety_add_rule(sc, &spec, why, sizeof why) != 0) {
            fprintf(stderr, "safety: built-in rule %zu (%s): %s\n", i, safety_builtin_names[br->b],
                    why);
            return -1;
        }
    }
    return 0;
}

int safety_detector_add_context(struct safety_config *sc, int detector, char **words)
{
    return add_context_words(&sc->detectors[detector], (const char *const *)words);
}

/* An escaped character: an assertion or class that cannot match the separator, or a literal
 * punctuation character. */
static int escape_joinable(char c, int in_class)
{
    if (c == 'd' || c == 'w')
        return 1;
    if (!in_class && (c == 'b' || c == 'B'))
        return 1;
    return c > 0x20 && c < 0x7f &&
           !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
}

int safety_expr_joinable(const char *expr, unsigned flags)
{
    const unsigned known =
        HS_FLAG_CASELESS | HS_FLAG_SINGLEMATCH | HS_FLAG_PREFILTER | HS_FLAG_UTF8 | HS_FLAG_UCP;
    if (!expr || (flags & ~known))
        return 0;
    int in_class = 0;
    for (const char *p = expr; *p; p++) {
        unsigned char c = (unsigned char)*p;
        /* A control character is a literal that may be the separator itself. */
        if (c < 0x20 || c == 0x7f)
            return 0;
        if (c == '\\') {
            if (!escape_joinable(p[1], in_class))
                return 0;
            p++;
            continue;
        }
        if (in_class) {
            /* Ranges need no check: both ends are printable (above the separator). */
            if (c == '[' && p[1] == ':')
                return 0;
            if (c == ']')
                in_class = 0;
            continue;
        }
        switch (c) {
        case '[':
            /* A negated class matches the separator. */
            if (p[1] == '^')
                return 0;
            in_class = 1;
            if (p[1] == ']')
                p++; /* a leading ']' is a literal */
            break;
        case '^':
        case '$':
            /* Anchors see the joined buffer's ends, not the string's. */
            return 0;
        case '(':
            if (p[1] != '?')
                break;
            if (p[2] == ':') {
                p += 2;
                break;
            }
            if (p[2] == 'i' && (p[3] == ')' || p[3] == ':')) {
                p += 3;
                break;
            }
            /* Other options (s: dot matches the separator, m, x), lookarounds, comments. */
            return 0;
        default:
            /* '.' without HS_FLAG_DOTALL or (?s) does not match the separator. */
            break;
        }
    }
    return !in_class;
}

int safety_compile(struct safety_config *sc, char *why, size_t why_len)
{
    int joinable = 1;
    const char **exprs = calloc(2 * sc->n_rules + 1, sizeof *exprs);
    unsigned *flags = calloc(2 * sc->n_rules + 1, sizeof *flags);
    unsigned *ids = calloc(2 * sc->n_rules + 1, sizeof *ids);
    unsigned n = 0;
    int rc = -1;
    if (!exprs || !flags || !ids) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < sc->n_rules; i++) {
        const struct safety_detector *d = &sc->detectors[sc->rules[i].detector];
        int det = sc->rules[i].detector;
        int on =
            d->action[GW_DIR_REQUEST] != SAFETY_OFF || d->action[GW_DIR_RESPONSE] != SAFETY_OFF;
        for (size_t t = 0; t < sc->n_tools && !on; t++)
            on = sc->tools[t].actions[det][0] != SAFETY_OFF ||
                 sc->tools[t].actions[det][1] != SAFETY_OFF;
        sc->rules[i].disabled = !on;
        if (i < 64 && on && !sc->rules[i].hs_expr)
            sc->rules_always |= UINT64_C(1) << i;
        if (i < 64 && on && sc->rules[i].hs_expr && sc->rules[i].need_context &&
            sc->rules[i].keyword_filter) {
            sc->rules_keyctx |= UINT64_C(1) << i;
            if (det < 64)
                sc->keyctx_rules_of[det] |= UINT64_C(1) << i;
        }
        if (!sc->rules[i].hs_expr || sc->rules[i].disabled)
            continue;
        exprs[n] = sc->rules[i].hs_expr;
        joinable = joinable && safety_expr_joinable(exprs[n], sc->rules[i].hs_flags);
        flags[n] = sc->rules[i].hs_flags | HS_FLAG_SINGLEMATCH;
        ids[n] = (unsigned)i;
        n++;
    }
    sc->rule_masks = sc->n_rules <= 64 && sc->n_detectors <= 64;
    sc->match_ctx = pcre2_match_context_create(NULL);
    if (!sc->match_ctx) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    pcre2_set_match_limit(sc->match_ctx, sc->match_limit);
    pcre2_set_depth_limit(sc->match_ctx, 1000);
    if (n > 0) {
        if (safety_dbcache_compile(sc->compile_cache, "safety.hsdb", exprs, flags, ids, n, &sc->db,
                                   &sc->db_from_cache, why, why_len) != 0)
            goto out;
        if (hs_alloc_scratch(sc->db, &sc->scratch) != HS_SUCCESS) {
            snprintf(why, why_len, "vectorscan cannot allocate scratch space");
            goto out;
        }
        /* The joined pass is an optimisation: without its database every string is scanned
         * on its own. */
        if (joinable) {
            for (unsigned k = 0; k < n; k++)
                flags[k] &= ~(unsigned)HS_FLAG_SINGLEMATCH;
            char jwhy[256];
            int from_cache = 0;
            if (safety_dbcache_compile(sc->compile_cache, "safety-joined.hsdb", exprs, flags, ids,
                                       n, &sc->db_joined, &from_cache, jwhy, sizeof jwhy) != 0) {
                sc->db_joined = NULL;
            } else if (hs_alloc_scratch(sc->db_joined, &sc->scratch) != HS_SUCCESS) {
                snprintf(why, why_len, "vectorscan cannot allocate scratch space");
                goto out;
            }
        }
    }
    sc->generation = atomic_fetch_add(&generation_counter, 1) + 1;
    rc = 0;
out:
    free(exprs);
    free(flags);
    free(ids);
    return rc;
}

void safety_engine_free(struct safety_config *sc)
{
    for (size_t i = 0; i < sc->n_rules; i++) {
        pcre2_code_free(sc->rules[i].re);
        free(sc->rules[i].hs_expr);
    }
    free(sc->rules);
    for (size_t i = 0; i < sc->n_detectors; i++)
        cfg_strv_free(sc->detectors[i].context);
    free(sc->detectors);
    if (sc->scratch)
        hs_free_scratch(sc->scratch);
    if (sc->db)
        hs_free_database(sc->db);
    if (sc->db_joined)
        hs_free_database(sc->db_joined);
    if (sc->match_ctx)
        pcre2_match_context_free(sc->match_ctx);
}

/* ---- metadata ----------------------------------------------------------------------------- */

size_t safety_detector_count(const struct safety_config *sc)
{
    return sc ? sc->n_detectors : 0;
}

const char *safety_detector_name(const struct safety_config *sc, int detector)
{
    if (!sc || detector < 0 || (size_t)detector >= sc->n_detectors)
        return NULL;
    return sc->detectors[detector].name;
}

int safety_detector_find(const struct safety_config *sc, const char *name)
{
    for (size_t i = 0; sc && i < sc->n_detectors; i++)
        if (strcmp(sc->detectors[i].name, name) == 0)
            return (int)i;
    return -1;
}

enum safety_action safety_detector_action(const struct safety_config *sc, int detector,
                                          enum gw_direction dir)
{
    if (!sc || detector < 0 || (size_t)detector >= sc->n_detectors)
        return SAFETY_OFF;
    return sc->detectors[detector].action[dir == GW_DIR_RESPONSE];
}
