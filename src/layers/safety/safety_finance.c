/*
 * safety_finance: validators of payment cards and IBANs. Card brands and IBAN structures are
 * the published tables (card issuer identification ranges; the SWIFT IBAN registry with
 * national check digits); docs/safety.md says which and how they are cross-checked against
 * independent implementations.
 */
#include "layers/safety/safety-int.h"

#include <string.h>

/* ---- payment cards ------------------------------------------------------------------------ */

/*
 * One issuer identification range: the number's first `digits` digits as an integer within
 * [lo, hi]. A brand's ranges are tried in order and the first that matches gives the brand's
 * strength (its number of digits); the brand with the strongest match wins, the earlier brand
 * on a tie. Lengths are the card number lengths the brand issues.
 */
struct card_range {
    uint32_t lo, hi;
    uint8_t digits;
};

struct card_brand {
    const char *name;
    const struct card_range *ranges;
    size_t n_ranges;
    uint32_t lengths; /* bit n set: n digits */
};

#define R1(v)                                                                                      \
    {                                                                                              \
        v, v, 0                                                                                    \
    }
#define RR(a, b)                                                                                   \
    {                                                                                              \
        a, b, 0                                                                                    \
    }
#define LEN(n) (1u << (n))

static const struct card_range visa_r[] = {R1(4)};
static const struct card_range mastercard_r[] = {RR(51, 55), RR(2221, 2229), RR(223, 229),
                                                 RR(23, 26), RR(270, 271),   R1(2720)};
static const struct card_range amex_r[] = {R1(34), R1(37)};
static const struct card_range diners_r[] = {RR(300, 305), R1(36), R1(38), R1(39)};
static const struct card_range troy_r[] = {
    R1(9792),
    R1(650052),
    RR(650082, 650083),
    R1(650092),
    R1(650161),
    R1(650170),
    R1(650173),
    R1(650175),
    R1(650268),
    R1(650271),
    RR(650273, 650274),
    RR(650456, 650457),
    R1(650836),
    RR(650846, 650850),
    R1(650923),
    R1(650987),
    R1(650990),
    R1(654997),
    R1(657366),
    R1(657998),
    R1(658758),
    RR(658767, 658768),
    RR(65083700, 65083704),
    RR(65085800, 65085804),
    RR(65085900, 65085901),
    R1(65086000),
    RR(65086100, 65086105),
    RR(65086200, 65086203),
    RR(65875000, 65875003),
    R1(65875009),
    RR(65875101, 65875104),
    R1(65875200),
    R1(65875501),
    R1(65875601),
    R1(65875900),
    RR(65876000, 65876002),
    RR(65876100, 65876103),
    R1(65876110),
    RR(65876115, 65876116),
    RR(65876200, 65876201),
    R1(65876500),
    RR(65876504, 65876505),
    RR(65876600, 65876602),
    RR(65877100, 65877101),
    RR(65877600, 65877602),
    R1(65877700),
    RR(65877801, 65877802),
    RR(65878200, 65878202),
    RR(65878300, 65878311),
    RR(65878400, 65878405),
    RR(65878500, 65878505),
    RR(65878600, 65878601),
    R1(65879800),
    R1(65880800),
    R1(65880900),
};
static const struct card_range discover_r[] = {R1(6011), RR(644, 649), R1(65)};
static const struct card_range jcb_r[] = {R1(2131), R1(1800), RR(3528, 3589)};
static const struct card_range unionpay_r[] = {
    R1(620),
    RR(62100, 62182),
    RR(62184, 62187),
    RR(62185, 62197),
    RR(62200, 62205),
    RR(622010, 622999),
    R1(622018),
    RR(62207, 62209),
    RR(623, 626),
    R1(6270),
    R1(6272),
    R1(6276),
    RR(627700, 627779),
    RR(627781, 627799),
    RR(6282, 6289),
    R1(6291),
    R1(6292),
    R1(810),
    RR(8110, 8131),
    RR(8132, 8151),
    RR(8152, 8163),
    RR(8164, 8171),
};
static const struct card_range naranja_r[] = {R1(589562), R1(402918), R1(527572)};
static const struct card_range verve_r[] = {
    RR(506099, 506127), R1(506129),         RR(506133, 506150), RR(506158, 506163), R1(506166),
    R1(506168),         R1(506170),         R1(506173),         RR(506176, 506180), R1(506184),
    RR(506187, 506188), R1(506191),         R1(506195),         R1(506197),         R1(507865),
    R1(507866),         RR(507868, 507877), RR(507880, 507888), R1(507900),         R1(507941),
};
static const struct card_range maestro_r[] = {
    R1(493698),
    RR(500000, 504174),
    RR(504176, 506698),
    RR(506779, 508999),
    RR(56, 59),
    R1(63),
    R1(67),
    R1(6),
};
static const struct card_range elo_r[] = {
    R1(401178),         R1(401179),         R1(438935),         R1(457631),
    R1(457632),         R1(431274),         R1(451416),         R1(457393),
    R1(504175),         RR(506699, 506778), RR(509000, 509999), R1(627780),
    R1(636297),         R1(636368),         RR(650031, 650033), RR(650035, 650051),
    RR(650405, 650439), RR(650485, 650538), RR(650541, 650598), RR(650700, 650718),
    RR(650720, 650727), RR(650901, 650978), RR(651652, 651679), RR(655000, 655019),
    RR(655021, 655058),
};
static const struct card_range mir_r[] = {RR(2200, 2204)};
static const struct card_range hiper_r[] = {R1(637095), R1(63737423), R1(63743358), R1(637568),
                                            R1(637599), R1(637609),   R1(637612)};
static const struct card_range hipercard_r[] = {R1(606282)};

#define BRAND(n, r, l)                                                                             \
    {                                                                                              \
        n, r, sizeof r / sizeof r[0], l                                                            \
    }

static const struct card_brand card_brands[] = {
    BRAND("visa", visa_r, LEN(16) | LEN(18) | LEN(19)),
    BRAND("mastercard", mastercard_r, LEN(16)),
    BRAND("amex", amex_r, LEN(15)),
    BRAND("diners", diners_r, LEN(14) | LEN(16) | LEN(19)),
    BRAND("discover", discover_r, LEN(16) | LEN(19)),
    BRAND("troy", troy_r, LEN(16)),
    BRAND("jcb", jcb_r, LEN(16) | LEN(17) | LEN(18) | LEN(19)),
    BRAND("unionpay", unionpay_r, LEN(14) | LEN(15) | LEN(16) | LEN(17) | LEN(18) | LEN(19)),
    BRAND("naranja", naranja_r, LEN(16)),
    BRAND("verve", verve_r, LEN(16) | LEN(18) | LEN(19)),
    BRAND("maestro", maestro_r,
          LEN(12) | LEN(13) | LEN(14) | LEN(15) | LEN(16) | LEN(17) | LEN(18) | LEN(19)),
    BRAND("elo", elo_r, LEN(16)),
    BRAND("mir", mir_r, LEN(16) | LEN(17) | LEN(18) | LEN(19)),
    BRAND("hiper", hiper_r, LEN(16)),
    BRAND("hipercard", hipercard_r, LEN(16)),
};

static unsigned count_digits(uint32_t v)
{
    unsigned n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* The strength of the brand's first matching range for this number; 0 when none matches. */
static unsigned brand_strength(const struct card_brand *b, const char *d, size_t n)
{
    for (size_t i = 0; i < b->n_ranges; i++) {
        unsigned w = count_digits(b->ranges[i].lo);
        if (w > n)
            continue;
        uint32_t v = 0;
        for (unsigned k = 0; k < w; k++)
            v = v * 10 + (uint32_t)(d[k] - '0');
        if (v >= b->ranges[i].lo && v <= b->ranges[i].hi)
            return w;
    }
    return 0;
}

int safety_card_ok(const char *s, size_t len, const char **brand)
{
    char d[20];
    int n = safety_digits_of(s, len, " -\t\r\n\v\f", d, sizeof d - 1);
    if (brand)
        *brand = NULL;
    if (n < 12 || n > 19)
        return 0;
    const struct card_brand *best = NULL;
    unsigned best_w = 0;
    for (size_t i = 0; i < sizeof card_brands / sizeof card_brands[0]; i++) {
        unsigned w = brand_strength(&card_brands[i], d, (size_t)n);
        if (w > best_w) {
            best_w = w;
            best = &card_brands[i];
        }
    }
    if (!best || !(best->lengths & LEN(n)) || !safety_luhn_ok(d, (size_t)n))
        return 0;
    if (brand)
        *brand = best->name;
    return 1;
}

/* ---- IBAN --------------------------------------------------------------------------------- */

enum iban_check {
    IBAN_CHK_NONE = 0,
    IBAN_CHK_MOD9710, /* BA, ME, MK, PT, RS, SI: the BBAN itself is mod 97-10 == 1 */
    IBAN_CHK_BE,
    IBAN_CHK_CZSK,
    IBAN_CHK_EE,
    IBAN_CHK_ES,
    IBAN_CHK_FR,
    IBAN_CHK_HR,
    IBAN_CHK_HU,
    IBAN_CHK_NO,
    IBAN_CHK_PL,
};

/* Country, IBAN length, BBAN structure in registry notation (n digits, a letters, c both). */
struct iban_country {
    char cc[3];
    uint8_t length;
    const char *bban;
    enum iban_check check;
};

static const struct iban_country iban_countries[] = {
    {"AD", 24, "8n12c", IBAN_CHK_NONE},    {"AE", 23, "3n16n", IBAN_CHK_NONE},
    {"AL", 28, "8n16c", IBAN_CHK_NONE},    {"AO", 25, "21n", IBAN_CHK_NONE},
    {"AT", 20, "16n", IBAN_CHK_NONE},      {"AX", 18, "14n", IBAN_CHK_NONE},
    {"AZ", 28, "4a20c", IBAN_CHK_NONE},    {"BA", 20, "16n", IBAN_CHK_MOD9710},
    {"BE", 16, "12n", IBAN_CHK_BE},        {"BF", 28, "2c22n", IBAN_CHK_NONE},
    {"BG", 22, "4a6n8c", IBAN_CHK_NONE},   {"BH", 22, "4a14c", IBAN_CHK_NONE},
    {"BI", 27, "23n", IBAN_CHK_NONE},      {"BJ", 28, "2c22n", IBAN_CHK_NONE},
    {"BL", 27, "10n11c2n", IBAN_CHK_NONE}, {"BR", 29, "23n1a1c", IBAN_CHK_NONE},
    {"BY", 28, "4a4n16c", IBAN_CHK_NONE},  {"CF", 27, "23n", IBAN_CHK_NONE},
    {"CG", 27, "23n", IBAN_CHK_NONE},      {"CH", 21, "5n12c", IBAN_CHK_NONE},
    {"CI", 28, "1a23n", IBAN_CHK_NONE},    {"CM", 27, "23n", IBAN_CHK_NONE},
    {"CR", 22, "18n", IBAN_CHK_NONE},      {"CV", 25, "21n", IBAN_CHK_NONE},
    {"CY", 28, "8n16c", IBAN_CHK_NONE},    {"CZ", 24, "20n", IBAN_CHK_CZSK},
    {"DE", 22, "18n", IBAN_CHK_NONE},      {"DJ", 27, "23n", IBAN_CHK_NONE},
    {"DK", 18, "14n", IBAN_CHK_NONE},      {"DO", 28, "4a20n", IBAN_CHK_NONE},
    {"DZ", 26, "22n", IBAN_CHK_NONE},      {"EE", 20, "16n", IBAN_CHK_EE},
    {"EG", 29, "25n", IBAN_CHK_NONE},      {"ES", 24, "20n", IBAN_CHK_ES},
    {"FI", 18, "14n", IBAN_CHK_NONE},      {"FK", 18, "2a12n", IBAN_CHK_NONE},
    {"FO", 18, "14n", IBAN_CHK_NONE},      {"FR", 27, "10n11c2n", IBAN_CHK_FR},
    {"GA", 27, "23n", IBAN_CHK_NONE},      {"GB", 22, "4a14n", IBAN_CHK_NONE},
    {"GE", 22, "2c16n", IBAN_CHK_NONE},    {"GF", 27, "10n11c2n", IBAN_CHK_NONE},
    {"GI", 23, "4a15c", IBAN_CHK_NONE},    {"GL", 18, "14n", IBAN_CHK_NONE},
    {"GP", 27, "10n11c2n", IBAN_CHK_NONE}, {"GQ", 27, "23n", IBAN_CHK_NONE},
    {"GR", 27, "7n16c", IBAN_CHK_NONE},    {"GT", 28, "24c", IBAN_CHK_NONE},
    {"GW", 25, "2a19n", IBAN_CHK_NONE},    {"HN", 28, "4a20n", IBAN_CHK_NONE},
    {"HR", 21, "17n", IBAN_CHK_HR},        {"HU", 28, "24n", IBAN_CHK_HU},
    {"IE", 22, "4c14n", IBAN_CHK_NONE},    {"IL", 23, "19n", IBAN_CHK_NONE},
    {"IQ", 23, "4a15n", IBAN_CHK_NONE},    {"IR", 26, "22n", IBAN_CHK_NONE},
    {"IS", 26, "22n", IBAN_CHK_NONE},      {"IT", 27, "1a10n12c", IBAN_CHK_NONE},
    {"JO", 30, "4a4n18c", IBAN_CHK_NONE},  {"KM", 27, "23n", IBAN_CHK_NONE},
    {"KW", 30, "4a22c", IBAN_CHK_NONE},    {"KZ", 20, "3n13c", IBAN_CHK_NONE},
    {"LB", 28, "4n20c", IBAN_CHK_NONE},    {"LC", 32, "4a24c", IBAN_CHK_NONE},
    {"LI", 21, "5n12c", IBAN_CHK_NONE},    {"LT", 20, "16n", IBAN_CHK_NONE},
    {"LU", 20, "3n13c", IBAN_CHK_NONE},    {"LV", 21, "4a13c", IBAN_CHK_NONE},
    {"LY", 25, "21n", IBAN_CHK_NONE},      {"MA", 28, "24n", IBAN_CHK_NONE},
    {"MC", 27, "10n11c2n", IBAN_CHK_FR},   {"MD", 24, "2c18c", IBAN_CHK_NONE},
    {"ME", 22, "18n", IBAN_CHK_MOD9710},   {"MF", 27, "10n11c2n", IBAN_CHK_NONE},
    {"MG", 27, "23n", IBAN_CHK_NONE},      {"MK", 19, "3n10c2n", IBAN_CHK_MOD9710},
    {"ML", 28, "2c22n", IBAN_CHK_NONE},    {"MN", 20, "16n", IBAN_CHK_NONE},
    {"MQ", 27, "10n11c2n", IBAN_CHK_NONE}, {"MR", 27, "23n", IBAN_CHK_NONE},
    {"MT", 31, "4a5n18c", IBAN_CHK_NONE},  {"MU", 30, "4a19n3a", IBAN_CHK_NONE},
    {"MZ", 25, "21n", IBAN_CHK_NONE},      {"NC", 27, "10n11c2n", IBAN_CHK_NONE},
    {"NE", 28, "2a22n", IBAN_CHK_NONE},    {"NI", 28, "4a20n", IBAN_CHK_NONE},
    {"NL", 18, "4a10n", IBAN_CHK_NONE},    {"NO", 15, "11n", IBAN_CHK_NO},
    {"OM", 23, "3n16c", IBAN_CHK_NONE},    {"PF", 27, "10n11c2n", IBAN_CHK_NONE},
    {"PK", 24, "4c16n", IBAN_CHK_NONE},    {"PL", 28, "24n", IBAN_CHK_PL},
    {"PM", 27, "10n11c2n", IBAN_CHK_NONE}, {"PS", 29, "4c21n", IBAN_CHK_NONE},
    {"PT", 25, "21n", IBAN_CHK_MOD9710},   {"QA", 29, "4a21c", IBAN_CHK_NONE},
    {"RE", 27, "10n11c2n", IBAN_CHK_NONE}, {"RO", 24, "4a16c", IBAN_CHK_NONE},
    {"RS", 22, "18n", IBAN_CHK_MOD9710},   {"RU", 33, "14n15c", IBAN_CHK_NONE},
    {"SA", 24, "2n18c", IBAN_CHK_NONE},    {"SC", 31, "4a20n3a", IBAN_CHK_NONE},
    {"SD", 18, "14n", IBAN_CHK_NONE},      {"SE", 24, "20n", IBAN_CHK_NONE},
    {"SI", 19, "15n", IBAN_CHK_MOD9710},   {"SK", 24, "20n", IBAN_CHK_CZSK},
    {"SM", 27, "1a10n12c", IBAN_CHK_NONE}, {"SN", 28, "2a22n", IBAN_CHK_NONE},
    {"SO", 23, "19n", IBAN_CHK_NONE},      {"ST", 25, "21n", IBAN_CHK_NONE},
    {"SV", 28, "4a20n", IBAN_CHK_NONE},    {"TD", 27, "23n", IBAN_CHK_NONE},
    {"TF", 27, "10n11c2n", IBAN_CHK_NONE}, {"TG", 28, "2a22n", IBAN_CHK_NONE},
    {"TL", 23, "19n", IBAN_CHK_NONE},      {"TN", 24, "20n", IBAN_CHK_NONE},
    {"TR", 26, "5n17c", IBAN_CHK_NONE},    {"UA", 29, "6n19c", IBAN_CHK_NONE},
    {"VA", 22, "18n", IBAN_CHK_NONE},      {"VG", 24, "4c16n", IBAN_CHK_NONE},
    {"WF", 27, "10n11c2n", IBAN_CHK_NONE}, {"XK", 20, "16n", IBAN_CHK_NONE},
    {"YE", 30, "4a4n18c", IBAN_CHK_NONE},  {"YT", 27, "10n11c2n", IBAN_CHK_NONE},
};

static const struct iban_country *iban_country_of(const char *cc)
{
    size_t lo = 0, hi = sizeof iban_countries / sizeof iban_countries[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strncmp(iban_countries[mid].cc, cc, 2);
        if (c == 0)
            return &iban_countries[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int bban_structure_ok(const char *b, size_t len, const char *fmt)
{
    size_t pos = 0;
    while (*fmt) {
        unsigned count = 0;
        while (safety_is_digit(*fmt))
            count = count * 10 + (unsigned)(*fmt++ - '0');
        char kind = *fmt++;
        for (unsigned i = 0; i < count; i++, pos++) {
            if (pos >= len)
                return 0;
            char c = b[pos];
            int ok = kind == 'n'   ? safety_is_digit(c)
                     : kind == 'a' ? safety_is_upper(c)
                                   : safety_is_digit(c) || safety_is_upper(c);
            if (!ok)
                return 0;
        }
    }
    return pos == len;
}

/*
 * Mod 97 of a decimal string the way the registry's reference procedure does it: take up to
 * six leading characters, read the leading digits of that piece as a number, replace the
 * piece by the number mod 97, repeat until two characters remain. For all-digit input this
 * is the exact remainder; a piece that starts with a letter makes the result undefined (-1),
 * and letters after digits end the number there, as the reference implementations behave.
 */
static int mod97_pieces(const char *s, size_t len)
{
    char buf[128];
    if (len >= sizeof buf - 8)
        return -1;
    memcpy(buf, s, len);
    size_t n = len;
    while (n > 2) {
        size_t piece = n < 6 ? n : 6;
        size_t k = 0;
        unsigned long v = 0;
        while (k < piece && safety_is_digit(buf[k]))
            v = v * 10 + (unsigned long)(buf[k++] - '0');
        if (k == 0)
            return -1;
        char head[4];
        int hl = 0;
        unsigned long r = v % 97;
        if (r >= 10)
            head[hl++] = (char)('0' + r / 10);
        head[hl++] = (char)('0' + r % 10);
        memmove(buf + hl, buf + piece, n - piece);
        memcpy(buf, head, (size_t)hl);
        n = n - piece + (size_t)hl;
    }
    size_t k = 0;
    unsigned long v = 0;
    while (k < n && safety_is_digit(buf[k]))
        v = v * 10 + (unsigned long)(buf[k++] - '0');
    if (k == 0)
        return -1;
    return (int)(v % 97);
}

/* Weighted sum check: sum(d[i] * w[i]) over n digits; returns the sum. */
static unsigned weighted(const char *d, const unsigned *w, size_t n)
{
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (unsigned)safety_digit_value(d[i]) * w[i];
    return sum;
}

static int mod11_digit(unsigned sum)
{
    unsigned r = sum % 11;
    return r == 0 ? 0 : r == 1 ? 1 : (int)(11 - r);
}

static int mod10_digit(unsigned sum)
{
    unsigned r = sum % 10;
    return r == 0 ? 0 : (int)(10 - r);
}

/* ISO 7064 MOD 11,10 as used for Croatian bank and account numbers. */
static int mod1110_ok(const char *d, size_t n, int control)
{
    int nr = 10;
    for (size_t i = 0; i < n; i++) {
        nr += safety_digit_value(d[i]);
        if (nr % 10 != 0)
            nr %= 10;
        nr = (nr * 2) % 11;
    }
    return control == (11 - nr == 10 ? 0 : 11 - nr);
}

static int national_ok(enum iban_check check, const char *b, size_t n)
{
    switch (check) {
    case IBAN_CHK_NONE:
        return 1;
    case IBAN_CHK_MOD9710:
        return mod97_pieces(b, n) == 1;
    case IBAN_CHK_BE: {
        unsigned long long v = 0;
        for (size_t i = 0; i + 2 < n; i++)
            v = v * 10 + (unsigned long long)safety_digit_value(b[i]);
        unsigned long long r = v % 97 == 0 ? 97 : v % 97;
        return r == (unsigned long long)(safety_digit_value(b[n - 2]) * 10 +
                                         safety_digit_value(b[n - 1]));
    }
    case IBAN_CHK_CZSK: {
        static const unsigned wp[] = {10, 5, 8, 4, 2, 1};
        static const unsigned ws[] = {6, 3, 7, 9, 10, 5, 8, 4, 2, 1};
        /* Prefix digits 4..8 are weighted from the first weight on, as the reference does. */
        if (mod11_digit(weighted(b + 4, wp, 5)) != safety_digit_value(b[9]))
            return 0;
        return mod11_digit(weighted(b + 10, ws, 9)) == safety_digit_value(b[19]);
    }
    case IBAN_CHK_EE: {
        static const unsigned w[] = {7, 1, 3, 7, 1, 3, 7, 1, 3, 7, 1, 3, 7};
        return mod10_digit(weighted(b + 2, w, 13)) == safety_digit_value(b[15]);
    }
    case IBAN_CHK_ES: {
        static const unsigned wb[] = {4, 8, 5, 10, 9, 7, 3, 6};
        static const unsigned wa[] = {1, 2, 4, 8, 5, 10, 9, 7, 3, 6};
        if (mod11_digit(weighted(b, wb, 8)) != safety_digit_value(b[8]))
            return 0;
        return mod11_digit(weighted(b + 10, wa, 10)) == safety_digit_value(b[9]);
    }
    case IBAN_CHK_FR: {
        /* Letters of the account number count as digits: A/J=1, B/K/S=2, ... I/R/Z=9. */
        char d[64];
        if (n >= sizeof d)
            return 0;
        for (size_t i = 0; i < n; i++) {
            char c = b[i];
            if (safety_is_upper(c)) {
                int v = c <= 'I' ? c - 'A' + 1 : c <= 'R' ? c - 'J' + 1 : c - 'S' + 2;
                c = (char)('0' + v);
            }
            d[i] = c;
        }
        return mod97_pieces(d, n) == 0;
    }
    case IBAN_CHK_HR:
        return mod1110_ok(b, 6, safety_digit_value(b[6])) &&
               mod1110_ok(b + 7, 9, safety_digit_value(b[16]));
    case IBAN_CHK_HU: {
        static const unsigned w[] = {9, 7, 3, 1, 9, 7, 3, 1, 9, 7, 3, 1, 9, 7, 3};
        if (mod10_digit(weighted(b, w, 7)) != safety_digit_value(b[7]))
            return 0;
        if (n >= 8 && memcmp(b + n - 8, "00000000", 8) == 0)
            return mod10_digit(weighted(b + 8, w, 7)) == safety_digit_value(b[15]);
        return mod10_digit(weighted(b + 8, w, 15)) == safety_digit_value(b[23]);
    }
    case IBAN_CHK_NO: {
        static const unsigned w[] = {5, 4, 3, 2, 7, 6, 5, 4, 3, 2};
        unsigned r = weighted(b, w, 10) % 11;
        return safety_digit_value(b[10]) == (r == 0 ? 0 : (int)(11 - r));
    }
    case IBAN_CHK_PL: {
        static const unsigned w[] = {3, 9, 7, 1, 3, 9, 7};
        return mod10_digit(weighted(b, w, 7)) == safety_digit_value(b[7]);
    }
    }
    return 0;
}

int safety_iban_ok(const char *s, size_t len)
{
    if (len < 5 || len > 34)
        return 0;
    char cc[3] = {s[0], s[1], 0};
    const struct iban_country *c = iban_country_of(cc);
    if (!c || c->length != len || !safety_is_digit(s[2]) || !safety_is_digit(s[3]))
        return 0;
    const char *b = s + 4;
    size_t bn = len - 4;
    if (!bban_structure_ok(b, bn, c->bban) || !national_ok(c->check, b, bn))
        return 0;
    /* BBAN + country + "00", letters as two digits (A=10 ... Z=35); check = 98 - mod 97. */
    char num[96];
    size_t k = 0;
    for (size_t i = 0; i < bn + 2; i++) {
        char ch = i < bn ? b[i] : s[i - bn];
        if (safety_is_upper(ch)) {
            int v = ch - 'A' + 10;
            num[k++] = (char)('0' + v / 10);
            num[k++] = (char)('0' + v % 10);
        } else {
            num[k++] = ch;
        }
    }
    num[k++] = '0';
    num[k++] = '0';
    int r = mod97_pieces(num, k);
    return r >= 0 && 98 - r == safety_digit_value(s[2]) * 10 + safety_digit_value(s[3]);
}
