/*
 * safety_validate: the validators that turn a pattern hit into a finding. Each one checks
 * what the issuer defines (check digits, number ranges, structure) so that look-alikes (order
 * numbers, ids, numbers failing a checksum) are not reported.
 *
 * Cards and IBANs are in safety_finance.c.
 */
#include "layers/safety/safety-int.h"

#include <arpa/inet.h>
#include <math.h>
#include <string.h>

int safety_digits_of(const char *s, size_t len, const char *skip, char *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (safety_is_digit(s[i])) {
            if (n == max)
                return -1;
            out[n++] = s[i];
        } else if (!s[i] || !strchr(skip, s[i])) {
            return -1;
        }
    }
    return (int)n;
}

int safety_luhn_ok(const char *digits, size_t len)
{
    unsigned sum = 0;
    int dbl = 0;
    if (len == 0)
        return 0;
    for (size_t i = len; i > 0; i--) {
        char c = digits[i - 1];
        if (!safety_is_digit(c))
            return 0;
        unsigned d = (unsigned)(c - '0');
        if (dbl) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
        dbl = !dbl;
    }
    return sum % 10 == 0;
}

/* ---- US identifiers ----------------------------------------------------------------------- */

/* Splits "AAA-GG-SSSS", "AAA.GG.SSSS", "AAA GG SSSS" or "AAAGGSSSS" (one delimiter kind)
 * into 9 digits. */
static int nine_digits(const char *s, size_t len, char d[9])
{
    if (len == 9) {
        for (int i = 0; i < 9; i++)
            if (!safety_is_digit(s[i]))
                return -1;
        memcpy(d, s, 9);
        return 0;
    }
    if (len != 11 || (s[3] != '-' && s[3] != ' ' && s[3] != '.') || s[6] != s[3])
        return -1;
    const int pos[9] = {0, 1, 2, 4, 5, 7, 8, 9, 10};
    for (int i = 0; i < 9; i++) {
        if (!safety_is_digit(s[pos[i]]))
            return -1;
        d[i] = s[pos[i]];
    }
    return 0;
}

int safety_ssn_ok(const char *s, size_t len)
{
    char d[9];
    if (nine_digits(s, len, d) != 0)
        return 0;
    int area =
        safety_digit_value(d[0]) * 100 + safety_digit_value(d[1]) * 10 + safety_digit_value(d[2]);
    int group = safety_digit_value(d[3]) * 10 + safety_digit_value(d[4]);
    int serial = safety_digit_value(d[5]) * 1000 + safety_digit_value(d[6]) * 100 +
                 safety_digit_value(d[7]) * 10 + safety_digit_value(d[8]);
    if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0)
        return 0;
    /* Numbers printed in advertising and on sample cards, and the all-same-digit ones. */
    static const char *const samples[] = {"078051120", "219099999", "123456789", "457555462"};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++)
        if (memcmp(d, samples[i], 9) == 0)
            return 0;
    int same = 1;
    for (int i = 1; i < 9; i++)
        same &= d[i] == d[0];
    return !same;
}

int safety_itin_ok(const char *s, size_t len)
{
    char d[9];
    if (nine_digits(s, len, d) != 0 || d[0] != '9')
        return 0;
    int group = safety_digit_value(d[3]) * 10 + safety_digit_value(d[4]);
    int serial = safety_digit_value(d[5]) * 1000 + safety_digit_value(d[6]) * 100 +
                 safety_digit_value(d[7]) * 10 + safety_digit_value(d[8]);
    int group_ok = (group >= 50 && group <= 65) || (group >= 70 && group <= 88) ||
                   (group >= 90 && group <= 92) || (group >= 94 && group <= 99);
    return group_ok && serial != 0;
}

int safety_npi_ok(const char *s, size_t len)
{
    char d[15];
    if (len != 10 || (s[0] != '1' && s[0] != '2'))
        return 0;
    memcpy(d, "80840", 5);
    for (size_t i = 0; i < 10; i++) {
        if (!safety_is_digit(s[i]))
            return 0;
        d[5 + i] = s[i];
    }
    return safety_luhn_ok(d, 15);
}

int safety_dea_ok(const char *s, size_t len)
{
    if (len != 9 || !strchr("ABCDEFGHJKLMPRSTUX", s[0]) || !s[0])
        return 0;
    if (!safety_is_upper(s[1]) && s[1] != '9')
        return 0;
    for (int i = 2; i < 9; i++)
        if (!safety_is_digit(s[i]))
            return 0;
    const char *d = s + 2;
    int sum = safety_digit_value(d[0]) + safety_digit_value(d[2]) + safety_digit_value(d[4]) +
              2 * (safety_digit_value(d[1]) + safety_digit_value(d[3]) + safety_digit_value(d[5]));
    return sum % 10 == safety_digit_value(d[6]);
}

/* ---- network identifiers ------------------------------------------------------------------ */

int safety_ipv4_ok(const char *s, size_t len)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= len || s[i] != '.')
                return 0;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < len && safety_is_digit(s[i]) && i - start < 3)
            v = v * 10 + (unsigned)safety_digit_value(s[i++]);
        size_t n = i - start;
        if (n == 0 || v > 255 || (n > 1 && s[start] == '0'))
            return 0;
    }
    return i == len;
}

int safety_ipv6_ok(const char *s, size_t len)
{
    char buf[64];
    struct in6_addr a;
    if (len < 3 || len >= sizeof buf)
        return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET6, buf, &a) != 1)
        return 0;
    /* Two or more groups written out: "::" and "::1" alone say nothing about anyone. */
    int groups = 0, in_group = 0;
    for (size_t i = 0; i < len; i++) {
        int hex =
            safety_is_digit(s[i]) || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F');
        if (hex && !in_group)
            groups++;
        in_group = hex;
    }
    return groups >= 2;
}

static int is_alnum(char c)
{
    return safety_is_digit(c) || safety_is_upper(c) || (c >= 'a' && c <= 'z');
}

int safety_email_ok(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);
    if (!at)
        return 0;
    size_t local = (size_t)(at - s), dom = len - local - 1;
    if (local == 0 || local > 64 || dom < 4 || dom > 253)
        return 0;
    if (s[0] == '.' || s[local - 1] == '.')
        return 0;
    for (size_t i = 0; i < local; i++) {
        char c = s[i];
        if (!is_alnum(c) && !strchr("._%+-", c))
            return 0;
        if (c == '.' && i + 1 < local && s[i + 1] == '.')
            return 0;
    }
    const char *d = at + 1;
    size_t label = 0, labels = 0, last = 0;
    for (size_t i = 0; i <= dom; i++) {
        if (i == dom || d[i] == '.') {
            if (label == 0 || label > 63 || d[i - label] == '-' || d[i - 1] == '-')
                return 0;
            labels++;
            last = i - label;
            label = 0;
            continue;
        }
        if (!is_alnum(d[i]) && d[i] != '-')
            return 0;
        label++;
    }
    if (labels < 2)
        return 0;
    size_t tld = dom - last;
    if (tld < 2 || tld > 24)
        return 0;
    for (size_t i = last; i < dom; i++)
        if (safety_is_digit(d[i]) || d[i] == '-')
            return 0;
    return 1;
}

/* NANP: area and exchange start 2-9 and are not N11; area's middle digit is not 9. */
static int nanp_ok(const char *d)
{
    if (d[0] < '2' || d[3] < '2')
        return 0;
    if (d[1] == '1' && d[2] == '1')
        return 0;
    if (d[4] == '1' && d[5] == '1')
        return 0;
    return d[1] != '9';
}

int safety_phone_ok(const char *s, size_t len)
{
    char d[16];
    int plus = len > 0 && s[0] == '+';
    int n = safety_digits_of(s + plus, len - (size_t)plus, " -.()", d, 15);
    if (n < 0)
        return 0;
    if (plus) {
        if (n < 8 || n > 15 || d[0] == '0')
            return 0;
        if (d[0] == '1')
            return n == 11 && nanp_ok(d + 1);
        return 1;
    }
    if (n == 11 && d[0] == '1')
        return nanp_ok(d + 1);
    return n == 10 && nanp_ok(d);
}

/* ---- secrets ------------------------------------------------------------------------------ */

double safety_entropy(const char *s, size_t len)
{
    unsigned counts[256] = {0};
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        counts[(unsigned char)s[i]]++;
    double h = 0;
    for (int i = 0; i < 256; i++) {
        if (!counts[i])
            continue;
        double p = (double)counts[i] / (double)len;
        h -= p * log2(p);
    }
    return h;
}

static int b64url_val(char c)
{
    if (safety_is_upper(c))
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (safety_is_digit(c))
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int safety_jwt_ok(const char *s, size_t len)
{
    const char *dot = memchr(s, '.', len);
    if (!dot)
        return 0;
    size_t hl = (size_t)(dot - s);
    const char *dot2 = memchr(dot + 1, '.', len - hl - 1);
    if (!dot2 || hl < 4 || hl > 2048)
        return 0;
    unsigned char out[1600];
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < hl; i++) {
        int v = b64url_val(s[i]);
        if (v < 0)
            return 0;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    json_error_t jerr;
    json_t *h = json_loadb((const char *)out, o, JSON_REJECT_DUPLICATES, &jerr);
    int ok = json_is_object(h) && json_is_string(json_object_get(h, "alg"));
    json_decref(h);
    return ok;
}

/* ---- dates -------------------------------------------------------------------------------- */

static int days_in(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
        return 29;
    return days[month - 1];
}

static int month_name(const char *s, size_t len)
{
    static const char *const names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                        "jul", "aug", "sep", "oct", "nov", "dec"};
    if (len < 3)
        return 0;
    for (int m = 0; m < 12; m++) {
        int ok = 1;
        for (int i = 0; i < 3; i++)
            ok &= (s[i] | 0x20) == names[m][i];
        if (ok)
            return m + 1;
    }
    return 0;
}

/* Reads the numbers and at most one month name of a date, in order of appearance. */
int safety_date_ok(const char *s, size_t len)
{
    int nums[3], widths[3], n = 0, month_word = 0;
    size_t i = 0;
    while (i < len) {
        if (safety_is_digit(s[i])) {
            int v = 0, w = 0;
            while (i < len && safety_is_digit(s[i]) && w < 5) {
                v = v * 10 + safety_digit_value(s[i++]);
                w++;
            }
            if (n == 3 || w > 4)
                return 0;
            widths[n] = w;
            nums[n++] = v;
        } else if ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z') {
            size_t st = i;
            while (i < len && (s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z')
                i++;
            size_t wl = i - st;
            /* Ordinal suffixes ("5th") are part of the day. */
            if (wl == 2 && n > 0 && strchr("snrt", s[st] | 0x20) && strchr("tdh", s[st + 1] | 0x20))
                continue;
            int m = month_name(s + st, wl);
            if (!m || month_word)
                return 0;
            month_word = m;
        } else {
            i++;
        }
    }
    int y, m, d;
    if (month_word) {
        if (n != 2)
            return 0;
        m = month_word;
        /* "March 5, 1984" (word first) or "5 March 1984" (day first): the year is last. */
        d = nums[0];
        y = nums[1];
        if (widths[1] != 4)
            return 0;
    } else {
        if (n != 3)
            return 0;
        if (widths[0] == 4) { /* y-m-d */
            y = nums[0];
            m = nums[1];
            d = nums[2];
        } else if (widths[2] == 4) { /* m/d/y, or d.m.y when the first cannot be a month */
            y = nums[2];
            m = nums[0];
            d = nums[1];
            if (m > 12) {
                m = nums[1];
                d = nums[0];
            }
        } else {
            return 0;
        }
    }
    if (y < 1900 || y > 2099 || m < 1 || m > 12 || d < 1)
        return 0;
    return d <= days_in(y, m);
}
