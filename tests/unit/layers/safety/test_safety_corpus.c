/*
 * safety accuracy: a labelled corpus generated here (valid instances of every type in many
 * formats and places inside JSON tool arguments, and hard negatives: order numbers,
 * timestamps, UUIDs, phone-like ids, cards failing Luhn, SSNs in invalid ranges, ...). Prints
 * recall per type and the false-positive rate per kind of negative; fails when a type's recall
 * is below 0.995 or negatives are reported more often than 0.5%.
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

#define PER_TYPE 420
#define PER_NEGATIVE 300

static uint64_t rs = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

static int in(int lo, int hi)
{
    return lo + (int)(rnd() % (uint64_t)(hi - lo + 1));
}

static char pickc(const char *set)
{
    return set[rnd() % strlen(set)];
}

static const char *pick(const char *const *v, size_t n)
{
    return v[rnd() % n];
}

#define PICK(v) pick(v, sizeof v / sizeof v[0])

static void fill(char *out, const char *set, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = pickc(set);
    out[n] = '\0';
}

static const char DIG[] = "0123456789";
static const char UP[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
static const char ALNUM[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static char luhn_digit(const char *body, size_t n)
{
    unsigned sum = 0;
    int dbl = 1;
    for (size_t i = n; i > 0; i--) {
        unsigned d = (unsigned)(body[i - 1] - '0');
        if (dbl) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
        dbl = !dbl;
    }
    return (char)('0' + (10 - sum % 10) % 10);
}

/* ---- value generators: write a valid instance into out ---------------------------------- */

static void gen_ssn_digits(char d[10])
{
    for (;;) {
        int area = in(1, 899), group = in(1, 99), serial = in(1, 9999);
        if (area == 666)
            continue;
        snprintf(d, 10, "%03d%02d%04d", area, group, serial);
        if (safety_ssn_ok(d, 9))
            return;
    }
}

static void gen_itin_digits(char d[10])
{
    static const int groups[][2] = {{50, 65}, {70, 88}, {90, 92}, {94, 99}};
    const int *g = groups[rnd() % 4];
    snprintf(d, 10, "9%02d%02d%04d", in(0, 99), in(g[0], g[1]), in(1, 9999));
}

static void nine(char *out, const char *d, int style)
{
    if (style == 0)
        sprintf(out, "%.3s-%.2s-%.4s", d, d + 3, d + 5);
    else if (style == 1)
        sprintf(out, "%.3s %.2s %.4s", d, d + 3, d + 5);
    else
        sprintf(out, "%.9s", d);
}

struct card_prefix {
    const char *prefix;
    int len;
};

static void gen_card(char *out)
{
    static const struct card_prefix p[] = {
        {"4", 16},    {"4", 19},    {"51", 16},     {"55", 16},    {"2221", 16}, {"2720", 16},
        {"34", 15},   {"37", 15},   {"6011", 16},   {"65", 16},    {"3528", 16}, {"3589", 19},
        {"36", 14},   {"300", 14},  {"62", 16},     {"62", 19},    {"2200", 16}, {"6759", 16},
        {"5018", 12}, {"6304", 19}, {"636368", 16}, {"606282", 16}};
    char d[24];
    for (;;) {
        const struct card_prefix *c = &p[rnd() % (sizeof p / sizeof p[0])];
        size_t pl = strlen(c->prefix);
        memcpy(d, c->prefix, pl);
        for (int i = (int)pl; i < c->len - 1; i++)
            d[i] = pickc(DIG);
        d[c->len - 1] = luhn_digit(d, (size_t)c->len - 1);
        d[c->len] = '\0';
        if (safety_card_ok(d, (size_t)c->len, NULL))
            break;
    }
    size_t n = strlen(d);
    int style = in(0, 3);
    if (style == 0 || n % 4 != 0) {
        strcpy(out, d);
        if (n == 15 && style > 0) /* amex 4-6-5 */
            sprintf(out, "%.4s %.6s %.5s", d, d + 4, d + 10);
        return;
    }
    char sep = style == 1 ? ' ' : style == 2 ? '-' : ' ';
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && i % 4 == 0)
            out[k++] = sep;
        out[k++] = d[i];
    }
    out[k] = '\0';
}

static void gen_iban(char *out)
{
    static const struct {
        const char *cc;
        const char *fmt; /* n digits, a upper, c alnum */
    } c[] = {{"DE", "18n"},      {"GB", "4a14n"}, {"NL", "4a10n"}, {"FR", "10n11c2n"},
             {"IT", "1a10n12c"}, {"ES", "20n"},   {"CH", "5n12c"}, {"AT", "16n"},
             {"BE", "12n"},      {"PL", "24n"},   {"SE", "20n"},   {"DK", "14n"},
             {"NO", "11n"},      {"IE", "4c14n"}, {"PT", "21n"},   {"CZ", "20n"}};
    for (;;) {
        int k = (int)(rnd() % (sizeof c / sizeof c[0]));
        char bban[40];
        size_t bl = 0;
        for (const char *f = c[k].fmt; *f;) {
            int cnt = 0;
            while (*f >= '0' && *f <= '9')
                cnt = cnt * 10 + (*f++ - '0');
            char kind = *f++;
            for (int i = 0; i < cnt; i++)
                bban[bl++] = pickc(kind == 'n' ? DIG : kind == 'a' ? UP : "ABCDEFGHIJ0123456789");
        }
        bban[bl] = '\0';
        /* check digits: 98 - (bban + cc + "00") mod 97 */
        unsigned r = 0;
        char tail[8];
        sprintf(tail, "%s00", c[k].cc);
        for (size_t i = 0; i < bl + 4; i++) {
            char ch = i < bl ? bban[i] : tail[i - bl];
            if (ch >= 'A' && ch <= 'Z')
                r = (r * 100 + (unsigned)(ch - 'A' + 10)) % 97;
            else
                r = (r * 10 + (unsigned)(ch - '0')) % 97;
        }
        char iban[48];
        sprintf(iban, "%s%02u%s", c[k].cc, 98 - r, bban);
        if (!safety_iban_ok(iban, strlen(iban)))
            continue; /* a national check digit did not come out right: try again */
        if (rnd() % 2) {
            strcpy(out, iban);
        } else {
            size_t n = strlen(iban), o = 0;
            for (size_t i = 0; i < n; i++) {
                if (i && i % 4 == 0)
                    out[o++] = ' ';
                out[o++] = iban[i];
            }
            out[o] = '\0';
        }
        return;
    }
}

static void gen_email(char *out)
{
    static const char *const first[] = {"jane", "john",    "a.smith", "m_lee", "dr.who",
                                        "x",    "sam+tag", "o-brien", "k9"};
    static const char *const dom[] = {
        "example.com", "mail.example.org", "clinic.co.uk", "hospital-group.net", "e.io", "uni.edu"};
    sprintf(out, "%s%d@%s", PICK(first), in(0, 999), PICK(dom));
}

static void gen_nanp(char d[11])
{
    sprintf(d, "%d%d%d%d%d%d%04d", in(2, 9), in(0, 8), in(0, 9), in(2, 9), in(0, 9), in(0, 9),
            in(0, 9999));
    if ((d[1] == '1' && d[2] == '1') || (d[4] == '1' && d[5] == '1'))
        d[2] = '2', d[5] = '2';
}

static void gen_phone(char *out, int *needs_context)
{
    char d[12];
    gen_nanp(d);
    *needs_context = 0;
    switch (in(0, 6)) {
    case 0:
        sprintf(out, "(%.3s) %.3s-%.4s", d, d + 3, d + 6);
        break;
    case 1:
        sprintf(out, "%.3s-%.3s-%.4s", d, d + 3, d + 6);
        break;
    case 2:
        sprintf(out, "%.3s.%.3s.%.4s", d, d + 3, d + 6);
        break;
    case 3:
        sprintf(out, "+1 %.3s %.3s %.4s", d, d + 3, d + 6);
        break;
    case 4:
        sprintf(out, "+1%.10s", d);
        break;
    case 5:
        sprintf(out, "+%d %d %04d %04d", in(30, 49), in(10, 99), in(0, 9999), in(0, 9999));
        break;
    default:
        sprintf(out, "%.10s", d);
        *needs_context = 1;
        break;
    }
}

static void gen_ip(char *out)
{
    if (rnd() % 2) {
        sprintf(out, "%d.%d.%d.%d", in(1, 223), in(0, 255), in(0, 255), in(1, 254));
    } else if (rnd() % 2) {
        sprintf(out, "2001:db8:%x:%x:%x:%x:%x:%x", in(0, 65535), in(0, 65535), in(0, 65535),
                in(0, 65535), in(1, 65535), in(1, 65535));
    } else {
        sprintf(out, "fe80::%x:%x", in(1, 65535), in(1, 65535));
    }
}

static void gen_npi(char *out)
{
    char d[16] = "80840";
    d[5] = (char)('1' + in(0, 1));
    for (int i = 6; i < 14; i++)
        d[i] = pickc(DIG);
    d[14] = luhn_digit(d, 14);
    d[15] = '\0';
    strcpy(out, d + 5);
}

static void gen_dea(char *out)
{
    char d[8];
    fill(d, DIG, 6);
    int sum = (d[0] - '0') + (d[2] - '0') + (d[4] - '0') +
              2 * ((d[1] - '0') + (d[3] - '0') + (d[5] - '0'));
    sprintf(out, "%c%c%s%d", pickc("ABCDFGMPRX"), pickc(UP), d, sum % 10);
}

static void gen_date(char *out)
{
    static const char *const months[] = {"January",   "February", "March",    "April",
                                         "May",       "June",     "July",     "August",
                                         "September", "October",  "November", "December"};
    int y = in(1925, 2015), m = in(1, 12), d = in(1, 28);
    switch (in(0, 4)) {
    case 0:
        sprintf(out, "%04d-%02d-%02d", y, m, d);
        break;
    case 1:
        sprintf(out, "%02d/%02d/%04d", m, d, y);
        break;
    case 2:
        sprintf(out, "%d/%d/%04d", m, d, y);
        break;
    case 3:
        sprintf(out, "%s %d, %04d", months[m - 1], d, y);
        break;
    default:
        sprintf(out, "%d %s %04d", d, months[m - 1], y);
        break;
    }
}

static void gen_token(char *out, const char *prefix, const char *set, int n)
{
    size_t pl = strlen(prefix);
    memcpy(out, prefix, pl);
    fill(out + pl, set, n);
    /* random draws may miss a class the detectors look for; secrets have all of them */
    out[pl] = 'Q';
    out[pl + 1] = 'x';
    out[pl + 2] = '7';
}

static void b64url(const char *in_s, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(in_s), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)(unsigned char)in_s[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)(unsigned char)in_s[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in_s[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = t[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = t[v & 63];
    }
    out[o] = '\0';
}

/* ---- the corpus ------------------------------------------------------------------------- */

enum ctype {
    T_SSN,
    T_ITIN,
    T_CARD,
    T_IBAN,
    T_EMAIL,
    T_PHONE,
    T_IP,
    T_NPI,
    T_DEA,
    T_DOB,
    T_PASSPORT,
    T_DL,
    T_MRN,
    T_AWS_ID,
    T_AWS_SECRET,
    T_GITHUB,
    T_GITLAB,
    T_SLACK,
    T_STRIPE,
    T_GOOGLE,
    T_PEM,
    T_JWT,
    T_GENERIC,
    T_COUNT
};

static const char *const tname[T_COUNT] = {"ssn",
                                           "itin",
                                           "credit_card",
                                           "iban",
                                           "email",
                                           "phone",
                                           "ip_address",
                                           "npi",
                                           "dea",
                                           "dob",
                                           "passport",
                                           "drivers_license",
                                           "mrn",
                                           "aws_access_key",
                                           "aws_secret_key",
                                           "github_token",
                                           "gitlab_token",
                                           "slack_token",
                                           "stripe_key",
                                           "google_api_key",
                                           "private_key",
                                           "jwt",
                                           "generic_secret"};

/* A value and the context it needs (a phrase for the text, a member name), if any. */
struct sample {
    char value[700];
    const char *phrase; /* NULL: none needed */
    const char *key;    /* a member name that gives the context */
};

static void make(enum ctype t, struct sample *s)
{
    char d[32];
    int need = 0;
    s->phrase = NULL;
    s->key = NULL;
    switch (t) {
    case T_SSN: {
        static const char *const ph[] = {"SSN", "social security number", "SSN#", "soc sec no"};
        static const char *const k[] = {"ssn", "social_security_number", "patientSSN"};
        gen_ssn_digits(d);
        int st = in(0, 2);
        nine(s->value, d, st);
        if (st)
            s->phrase = PICK(ph), s->key = PICK(k);
        break;
    }
    case T_ITIN: {
        static const char *const ph[] = {"ITIN", "taxpayer id", "tax id"};
        gen_itin_digits(d);
        int st = in(0, 2);
        nine(s->value, d, st);
        if (st)
            s->phrase = PICK(ph), s->key = "itin";
        break;
    }
    case T_CARD:
        gen_card(s->value);
        break;
    case T_IBAN:
        gen_iban(s->value);
        break;
    case T_EMAIL:
        gen_email(s->value);
        break;
    case T_PHONE:
        gen_phone(s->value, &need);
        if (need)
            s->phrase = "phone", s->key = "mobile_phone";
        break;
    case T_IP:
        gen_ip(s->value);
        break;
    case T_NPI: {
        static const char *const ph[] = {"NPI", "national provider id", "prescriber"};
        gen_npi(s->value);
        s->phrase = PICK(ph);
        s->key = "npi";
        break;
    }
    case T_DEA: {
        static const char *const ph[] = {"DEA", "DEA registration", "prescriber DEA #"};
        gen_dea(s->value);
        s->phrase = PICK(ph);
        s->key = "dea_number";
        break;
    }
    case T_DOB: {
        static const char *const ph[] = {"DOB:", "date of birth", "born", "birth date"};
        static const char *const k[] = {"dob", "date_of_birth", "birthDate"};
        gen_date(s->value);
        s->phrase = PICK(ph);
        s->key = PICK(k);
        break;
    }
    case T_PASSPORT:
        if (rnd() % 2)
            sprintf(s->value, "%c%08d", pickc(UP), in(0, 99999999));
        else
            sprintf(s->value, "%09d", in(100000000, 999999999));
        s->phrase = "passport number";
        s->key = "passport_no";
        break;
    case T_DL: {
        static const char *const ph[] = {"driver's license", "drivers licence no.", "DL#", "DLN"};
        switch (in(0, 2)) {
        case 0:
            sprintf(s->value, "%c%07d", pickc(UP), in(0, 9999999));
            break;
        case 1:
            sprintf(s->value, "%d", in(10000000, 999999999));
            break;
        default:
            sprintf(s->value, "%c%03d-%03d-%02d-%03d-%d", pickc(UP), in(0, 999), in(0, 999),
                    in(0, 99), in(0, 999), in(0, 9));
            break;
        }
        s->phrase = PICK(ph);
        s->key = "driver_license";
        break;
    }
    case T_MRN:
        if (rnd() % 2) {
            sprintf(s->value, "MRN-%08d", in(10000000, 99999999));
        } else {
            static const char *const ph[] = {"medical record number", "MRN", "chart"};
            sprintf(s->value, "%07d", in(1000000, 9999999));
            s->phrase = PICK(ph);
            s->key = "mrn";
        }
        break;
    case T_AWS_ID:
        gen_token(s->value, "AKIA", "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16);
        s->value[4] = 'Q', s->value[5] = 'X', s->value[6] = '7';
        break;
    case T_AWS_SECRET:
        gen_token(s->value, "", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/+",
                  40);
        s->phrase = "aws_secret_access_key =";
        s->key = "aws_secret_access_key";
        break;
    case T_GITHUB:
        gen_token(s->value, "ghp_", ALNUM, 36);
        break;
    case T_GITLAB:
        gen_token(s->value, "glpat-", ALNUM, 20);
        break;
    case T_SLACK:
        sprintf(s->value, "xoxb-%d-%d-", in(100000000, 999999999), in(100000000, 999999999));
        gen_token(s->value + strlen(s->value), "", ALNUM, 24);
        break;
    case T_STRIPE:
        gen_token(s->value, rnd() % 2 ? "sk_live_" : "rk_test_", ALNUM, 24);
        break;
    case T_GOOGLE:
        gen_token(s->value, "AIza", ALNUM, 35);
        break;
    case T_PEM: {
        char body[400];
        fill(body, ALNUM, 300);
        sprintf(s->value,
                "-----BEGIN %sPRIVATE KEY-----\n%.64s\n%.64s\n-----END %sPRIVATE KEY-----",
                rnd() % 2 ? "RSA " : "", body, body + 64, "");
        break;
    }
    case T_JWT: {
        char h[128], p[256], sig[64];
        b64url(rnd() % 2 ? "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
                         : "{\"alg\":\"RS256\",\"kid\":\"k1\"}",
               h);
        char payload[128];
        sprintf(payload, "{\"sub\":\"user%d\",\"exp\":%d}", in(1, 99999),
                in(1700000000, 1800000000));
        b64url(payload, p);
        fill(sig, ALNUM, 43);
        sprintf(s->value, "%s.%s.%s", h, p, sig);
        break;
    }
    case T_GENERIC: {
        static const char *const ph[] = {"api_key=", "password: ", "client_secret = ", "token:"};
        gen_token(s->value, "", ALNUM, in(16, 40));
        s->phrase = PICK(ph);
        s->key = "api_key";
        break;
    }
    case T_COUNT:
        break;
    }
}

static const char *const filler[] = {
    "please update the record",
    "as discussed on the call yesterday",
    "the patient reported mild pain",
    "see attached",
    "thanks",
    "follow up in two weeks",
    "order status: pending",
    "note from the front desk",
};

/* Places a sample into a JSON arguments object in one of several ways. */
static json_t *place(const struct sample *s)
{
    char text[1200];
    const char *key = "note";
    int way = in(0, 3);
    if (s->phrase && s->key && rnd() % 3 == 0) {
        /* the member name alone gives the context */
        key = s->key;
        snprintf(text, sizeof text, "%s", s->value);
    } else if (s->phrase) {
        snprintf(text, sizeof text, "%s %s %s", PICK(filler), s->phrase, s->value);
    } else if (way == 0) {
        snprintf(text, sizeof text, "%s", s->value);
        key = "value";
    } else {
        snprintf(text, sizeof text, "%s %s, %s", PICK(filler), s->value, PICK(filler));
    }
    json_t *v = json_string(text);
    assert_non_null(v);
    switch (way) {
    case 1:
        return json_pack("{s:s, s:{s:o}}", "id", "P123", "details", key, v);
    case 2:
        return json_pack("{s:[s, o], s:i}", key, "first", v, "n", 2);
    default:
        return json_pack("{s:o, s:b}", key, v, "urgent", 0);
    }
}

/* ---- negatives -------------------------------------------------------------------------- */

enum ntype {
    N_ORDER,
    N_TIMESTAMP,
    N_UUID,
    N_PHONELIKE,
    N_CARD_LUHN,
    N_SSN_RANGE,
    N_IBAN_CHECK,
    N_VERSION,
    N_HASH,
    N_NUMBERS,
    N_DATE_NOCTX,
    N_PROSE,
    N_WEAK,
    N_LABELLED,
    N_BESIDE,
    N_COUNT
};

static const char *const nname[N_COUNT] = {"order numbers",
                                           "timestamps",
                                           "UUIDs",
                                           "phone-like ids",
                                           "cards failing Luhn",
                                           "SSNs in invalid ranges",
                                           "IBANs failing mod-97",
                                           "versions",
                                           "hashes",
                                           "plain numbers",
                                           "dates without context",
                                           "prose",
                                           "weak shapes without context",
                                           "weak shapes beside other labels",
                                           "weak shapes that a label does not hold"};

/* Shapes that are PII only with a context word: bare 9 and 10 digit numbers (SSN, NPI,
 * phone), a letter and 8 digits (passport), DEA-shaped codes with a valid checksum, 7-digit
 * numbers (MRN, licence), a valid date. */
static void weak_shape(char *v)
{
    switch (in(0, 5)) {
    case 0:
        gen_ssn_digits(v);
        break;
    case 1:
        gen_npi(v);
        break;
    case 2:
        sprintf(v, "%c%08d", pickc(UP), in(0, 99999999));
        break;
    case 3:
        gen_dea(v);
        break;
    case 4:
        sprintf(v, "%07d", in(1000000, 9999999));
        break;
    default:
        gen_date(v);
        break;
    }
}

/* Sibling labels that name no type (or hold a context word only inside another word), and
 * free text too long to be a label. */
static const char *const other_labels[] = {"order",
                                           "invoice number",
                                           "ticket",
                                           "tracking",
                                           "confirmation code",
                                           "customer",
                                           "SKU",
                                           "lessn",
                                           "ssnx",
                                           "mrna",
                                           "adobe",
                                           "newborns",
                                           "created",
                                           "updated at",
                                           "quantity",
                                           "zip",
                                           "call me about my ssn tomorrow",
                                           "reference",
                                           "Order Number",
                                           "itinerary"};

/* Labels that do name a type, beside a member whose name is a type of its own (a schema's
 * limits, a record's other fields): the label says what another member is, not this one. */
static const char *const type_labels[] = {
    "driver",        "chart", "passport", "Birthday party", "auth", "ssn",
    "Date of birth", "phone", "SSN",      "medical record", "dob",  "npi",
    "mobile",        "token"};
static const char *const other_names[] = {
    "minimum", "maximum", "zip",     "updated",    "employee_id", "count",    "page",
    "total",   "ticket",  "default", "request_id", "quantity",    "order_id", "version"};

static void make_negative(enum ntype t, char *out)
{
    char d[64];
    switch (t) {
    case N_ORDER:
        switch (in(0, 3)) {
        case 0:
            sprintf(out, "ORD-%d-%06d", in(2015, 2030), in(0, 999999));
            break;
        case 1:
            sprintf(out, "INV-%06d", in(0, 999999));
            break;
        case 2:
            sprintf(out, "order #%d-%d-%d", in(100, 999), in(10, 99), in(1000, 9999));
            break;
        default:
            sprintf(out, "SKU %c%c-%05d-%02d", pickc(UP), pickc(UP), in(0, 99999), in(0, 99));
            break;
        }
        break;
    case N_TIMESTAMP:
        switch (in(0, 3)) {
        case 0:
            sprintf(out, "%04d-%02d-%02dT%02d:%02d:%02dZ", in(2015, 2030), in(1, 12), in(1, 28),
                    in(0, 23), in(0, 59), in(0, 59));
            break;
        case 1:
            sprintf(out, "%lld", 1600000000000LL + (long long)(rnd() % 200000000000LL));
            break;
        case 2:
            sprintf(out, "at %02d:%02d:%02d.%03d", in(0, 23), in(0, 59), in(0, 59), in(0, 999));
            break;
        default:
            sprintf(out, "%d", in(1600000000, 1900000000));
            break;
        }
        break;
    case N_UUID:
        sprintf(out, "%08x-%04x-4%03x-%04x-%08x%04x", (unsigned)rnd(), in(0, 65535), in(0, 4095),
                in(32768, 49151), (unsigned)rnd(), in(0, 65535));
        break;
    case N_PHONELIKE:
        switch (in(0, 3)) {
        case 0:
            sprintf(out, "ID-%03d-%03d-%04d", in(200, 999), in(200, 999), in(0, 9999));
            break;
        case 1:
            sprintf(out, "ticket %d", in(1000000000, 1999999999));
            break;
        case 2:
            sprintf(out, "ref %03d-%03d-%04d-%02d", in(200, 999), in(200, 999), in(0, 9999),
                    in(0, 99));
            break;
        default:
            sprintf(out, "%03d-%03d-%04d", in(100, 199), in(200, 999), in(0, 9999));
            break;
        }
        break;
    case N_CARD_LUHN:
        for (;;) {
            gen_card(out);
            size_t n = strlen(out);
            char last = out[n - 1];
            out[n - 1] = (char)('0' + (last - '0' + in(1, 9)) % 10);
            if (!safety_card_ok(out, n, NULL))
                break;
        }
        break;
    case N_SSN_RANGE: {
        int kind = in(0, 5);
        int area = in(1, 899), group = in(1, 99), serial = in(1, 9999);
        if (area == 666)
            area = 667;
        if (kind == 0)
            area = 0;
        else if (kind == 1)
            area = 666;
        else if (kind == 2) {
            area = in(900, 999);
            group = in(0, 1) ? in(0, 49) : in(66, 69); /* not an ITIN group either */
        } else if (kind == 3)
            group = 0;
        else if (kind == 4)
            serial = 0;
        if (kind == 5)
            strcpy(out, rnd() % 2 ? "078-05-1120" : "219-09-9999");
        else
            sprintf(out, "%03d-%02d-%04d", area, group, serial);
        break;
    }
    case N_IBAN_CHECK:
        for (;;) {
            char ib[64];
            gen_iban(ib);
            size_t k = 0;
            for (size_t i = 0; ib[i]; i++)
                if (ib[i] != ' ')
                    d[k++] = ib[i];
            d[k] = '\0';
            d[2] = (char)('0' + (d[2] - '0' + in(1, 8)) % 10);
            if (!safety_iban_ok(d, k))
                break;
        }
        strcpy(out, d);
        break;
    case N_VERSION:
        sprintf(out, "v%d.%d.%d-rc%d", in(0, 20), in(0, 99), in(0, 999), in(1, 9));
        break;
    case N_HASH:
        fill(d, "0123456789abcdef", 40);
        sprintf(out, "commit %s", d);
        break;
    case N_NUMBERS:
        sprintf(out, "qty %d, total $%d.%02d, page %d of %d", in(1, 99), in(1, 99999), in(0, 99),
                in(1, 50), in(50, 99));
        break;
    case N_DATE_NOCTX:
        gen_date(d);
        sprintf(out, "appointment scheduled %s", d);
        break;
    case N_PROSE:
        sprintf(out, "%s; %s", PICK(filler), PICK(filler));
        break;
    case N_WEAK: {
        char v[32];
        weak_shape(v);
        sprintf(out, "%s %s", PICK(filler), v);
        break;
    }
    case N_LABELLED:
    case N_BESIDE:
        /* The bare shape; its sibling label is added where it is placed. */
        weak_shape(out);
        break;
    case N_COUNT:
        break;
    }
}

static int scan_types(const struct safety_config *sc, json_t *args, int want)
{
    struct gw_findings f;
    memset(&f, 0, sizeof f);
    size_t budget = sc->max_scan_bytes;
    struct safety_scan_opts o = {.direction = GW_DIR_REQUEST, .redact = 0, .budget = &budget};
    struct safety_result res;
    memset(&res, 0, sizeof res);
    safety_scan_json(sc, args, "/params/arguments", &o, &f, &res);
    assert_false(res.error);
    int r = 0;
    if (want < 0)
        r = (int)f.n;
    for (size_t i = 0; want >= 0 && !r && i < f.n; i++)
        if (strcmp(f.items[i].type, tname[want]) == 0)
            r = 1;
    gw_findings_free(&f);
    return r;
}

static void test_corpus(void **state)
{
    (void)state;
    struct safety_config *sc = safety_config_default();
    assert_non_null(sc);
    int found[T_COUNT] = {0}, cases = 0, failures = 0;
    char example_missed[T_COUNT][160];
    memset(example_missed, 0, sizeof example_missed);
    for (int t = 0; t < T_COUNT; t++) {
        for (int i = 0; i < PER_TYPE; i++) {
            struct sample s;
            make((enum ctype)t, &s);
            json_t *args = place(&s);
            int ok = scan_types(sc, args, t);
            found[t] += ok;
            if (!ok && !example_missed[t][0]) {
                char *dump = json_dumps(args, JSON_COMPACT);
                snprintf(example_missed[t], sizeof example_missed[t], "%s", dump);
                free(dump);
            }
            json_decref(args);
            cases++;
        }
    }
    int fp[N_COUNT] = {0}, neg = 0, fp_total = 0;
    char example_fp[N_COUNT][160];
    memset(example_fp, 0, sizeof example_fp);
    for (int t = 0; t < N_COUNT; t++) {
        for (int i = 0; i < PER_NEGATIVE; i++) {
            char text[256];
            make_negative((enum ntype)t, text);
            json_t *args =
                t == N_LABELLED ? json_pack("{s:s, s:s, s:s}", "type", PICK(other_labels), "value",
                                            text, "id", "P123")
                : t == N_BESIDE
                    ? json_pack("{s:s, s:s, s:s}", "type", PICK(type_labels), PICK(other_names),
                                text, "id", "P123")
                    : json_pack("{s:s, s:s}", rnd() % 2 ? "note" : "reference", text, "id", "P123");
            int n = scan_types(sc, args, -1);
            if (n) {
                fp[t]++;
                if (!example_fp[t][0])
                    snprintf(example_fp[t], sizeof example_fp[t], "%.150s", text);
            }
            json_decref(args);
            neg++;
        }
        fp_total += fp[t];
    }
    printf("\n%-18s %7s %7s %8s\n", "type", "cases", "found", "recall");
    for (int t = 0; t < T_COUNT; t++) {
        double recall = (double)found[t] / PER_TYPE;
        printf("%-18s %7d %7d %8.4f%s\n", tname[t], PER_TYPE, found[t], recall,
               recall < 0.995 ? "  BELOW GOAL" : "");
        if (found[t] < PER_TYPE)
            printf("    missed e.g. %s\n", example_missed[t]);
        if (recall < 0.995)
            failures++;
    }
    printf("\n%-24s %7s %7s %8s\n", "hard negatives", "cases", "flagged", "rate");
    for (int t = 0; t < N_COUNT; t++) {
        printf("%-24s %7d %7d %8.4f\n", nname[t], PER_NEGATIVE, fp[t],
               (double)fp[t] / PER_NEGATIVE);
        if (fp[t])
            printf("    e.g. %s\n", example_fp[t]);
    }
    double rate = (double)fp_total / neg;
    printf("%-24s %7d %7d %8.4f%s\n", "all negatives", neg, fp_total, rate,
           rate > 0.005 ? "  ABOVE GOAL" : "");
    printf("total cases: %d\n", cases + neg);
    assert_true(cases + neg >= 10000);
    safety_config_free(sc);
    safety_thread_cleanup();
    assert_int_equal(failures, 0);
    assert_true(rate <= 0.005);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
