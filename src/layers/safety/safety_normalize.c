/*
 * safety_normalize: the text detectors read. Every Unicode decimal digit (Nd) becomes its
 * ASCII digit, default-ignorable code points go, dashes and the minus sign become '-', space
 * separators ' ', and the small full stop and one-dot leader '.'; a map leads each byte of the
 * result back to the original, so findings are redacted where they were written.
 */
#include "layers/safety/safety-int.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Decodes one UTF-8 sequence at s[i]; returns its length (1 for an invalid byte). */
static size_t utf8_next(const unsigned char *s, size_t len, size_t i, uint32_t *cp)
{
    unsigned char c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 0 || i + n > len) {
        *cp = 0xfffd;
        return 1;
    }
    uint32_t v = c & (0x7f >> n);
    for (size_t k = 1; k < n; k++) {
        if ((s[i + k] & 0xc0) != 0x80) {
            *cp = 0xfffd;
            return 1;
        }
        v = (v << 6) | (s[i + k] & 0x3f);
    }
    *cp = v;
    return n;
}

/*
 * Unicode decimal digits (general category Nd, Unicode 17): the code point of digit zero of
 * every run of ten, ASCII excepted. Every Nd digit is one of these plus 0..9.
 */
static const uint32_t nd_zero[] = {
    0x0660,  0x06f0,  0x07c0,  0x0966,  0x09e6,  0x0a66,  0x0ae6,  0x0b66,  0x0be6,  0x0c66,
    0x0ce6,  0x0d66,  0x0de6,  0x0e50,  0x0ed0,  0x0f20,  0x1040,  0x1090,  0x17e0,  0x1810,
    0x1946,  0x19d0,  0x1a80,  0x1a90,  0x1b50,  0x1bb0,  0x1c40,  0x1c50,  0xa620,  0xa8d0,
    0xa900,  0xa9d0,  0xa9f0,  0xaa50,  0xabf0,  0xff10,  0x104a0, 0x10d30, 0x10d40, 0x11066,
    0x110f0, 0x11136, 0x111d0, 0x112f0, 0x11450, 0x114d0, 0x11650, 0x116c0, 0x116d0, 0x116da,
    0x11730, 0x118e0, 0x11950, 0x11bf0, 0x11c50, 0x11d50, 0x11da0, 0x11de0, 0x11f50, 0x16130,
    0x16a60, 0x16ac0, 0x16b50, 0x16d70, 0x1ccf0, 0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6,
    0x1e140, 0x1e2f0, 0x1e4f0, 0x1e5f1, 0x1e950, 0x1fbf0,
};

/*
 * Dropped before matching: the Default_Ignorable_Code_Point set (Unicode 17; soft hyphen,
 * combining grapheme joiner, zero-width and bidirectional controls, variation selectors,
 * fillers, tags), and the combining marks of the general combining blocks (a keycap "4" is
 * 4, U+FE0F, U+20E3). Ranges, sorted.
 */
static const uint32_t dropped[][2] = {
    {0x00ad, 0x00ad},   {0x0300, 0x036f}, {0x061c, 0x061c}, {0x115f, 0x1160},   {0x17b4, 0x17b5},
    {0x180b, 0x180f},   {0x1ab0, 0x1aff}, {0x1dc0, 0x1dff}, {0x200b, 0x200f},   {0x202a, 0x202e},
    {0x2060, 0x206f},   {0x20d0, 0x20ff}, {0x3164, 0x3164}, {0xfe00, 0xfe0f},   {0xfe20, 0xfe2f},
    {0xfeff, 0xfeff},   {0xffa0, 0xffa0}, {0xfff0, 0xfff8}, {0x1bca0, 0x1bca3}, {0x1d173, 0x1d17a},
    {0xe0000, 0xe0fff},
};

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid][0])
            hi = mid;
        else if (cp > r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

/* The value of a decimal digit of any script, or -1. */
static int nd_value(uint32_t cp)
{
    size_t lo = 0, hi = sizeof nd_zero / sizeof nd_zero[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (nd_zero[mid] <= cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return -1;
    uint32_t d = cp - nd_zero[lo - 1];
    return d < 10 ? (int)d : -1;
}

/* What a code point becomes: -1 unchanged, -2 dropped, else the ASCII byte. */
static int fold_slow(uint32_t cp)
{
    if (cp < 0x80)
        return -1;
    /* The letters of most non-ASCII text (Latin, CJK, Hangul) fold to nothing: no lookup. */
    if ((cp >= 0x00c0 && cp < 0x0300) || (cp >= 0x3400 && cp < 0xa620) ||
        (cp >= 0xac00 && cp < 0xd800))
        return -1;
    if (cp >= 0xff01 && cp <= 0xff5e)
        return (int)(cp - 0xfee0);
    if (in_ranges(dropped, sizeof dropped / sizeof dropped[0], cp))
        return -2;
    int d = nd_value(cp);
    if (d >= 0)
        return '0' + d;
    switch (cp) {
    /* Space separators (Zs). */
    case 0x00a0:
    case 0x1680:
    case 0x202f:
    case 0x205f:
    case 0x3000:
        return ' ';
    /* Dash punctuation (Pd) and the minus sign. */
    case 0x058a:
    case 0x05be:
    case 0x1400:
    case 0x1806:
    case 0x2212:
    case 0x2e17:
    case 0x2e1a:
    case 0x2e3a:
    case 0x2e3b:
    case 0x2e40:
    case 0x2e5d:
    case 0x301c:
    case 0x3030:
    case 0x30a0:
    case 0xfe31:
    case 0xfe32:
    case 0xfe58:
    case 0xfe63:
    case 0x10d6e:
    case 0x10ead:
        return '-';
    /* Full stops that compatibility mapping makes '.' (one dot leader, small full stop). */
    case 0x2024:
    case 0xfe52:
        return '.';
    default:
        break;
    }
    if (cp >= 0x2010 && cp <= 0x2015)
        return '-';
    if (cp >= 0x2000 && cp <= 0x200a)
        return ' ';
    return -1;
}

/*
 * fold_slow for the Basic Multilingual Plane, one byte per code point, filled once per process
 * and read-only after: text in other scripts (Arabic, Devanagari letters) costs a load per
 * character instead of two binary searches.
 */
static signed char bmp_fold[0x10000];
static pthread_once_t bmp_once = PTHREAD_ONCE_INIT;

static void bmp_init(void)
{
    for (uint32_t cp = 0; cp < 0x10000; cp++)
        bmp_fold[cp] = (signed char)fold_slow(cp);
}

static int fold(uint32_t cp)
{
    return cp < 0x10000 ? bmp_fold[cp] : fold_slow(cp);
}

int safety_normalize(const char *s, size_t len, char **out, size_t *out_len, uint32_t **map)
{
    const unsigned char *u = (const unsigned char *)s;
    char *o = NULL;
    uint32_t *m = NULL;
    size_t k = 0;
    *out = (char *)s;
    *out_len = len;
    *map = NULL;
    if (len >= UINT32_MAX)
        return 0;
    for (size_t i = 0; i < len;) {
        if (!o) {
            /* Plain ASCII, eight bytes at a time: nothing to fold there. */
            while (i + 8 <= len) {
                uint64_t w;
                memcpy(&w, u + i, 8);
                if (w & UINT64_C(0x8080808080808080))
                    break;
                i += 8;
            }
            while (i < len && u[i] < 0x80)
                i++;
            if (i == len)
                break;
            pthread_once(&bmp_once, bmp_init);
        }
        uint32_t cp;
        size_t n = utf8_next(u, len, i, &cp);
        int f = fold(cp);
        if (!o && f == -1) {
            i += n;
            continue;
        }
        if (!o) {
            o = malloc(len + 1);
            m = malloc((len + 1) * sizeof *m);
            if (!o || !m) {
                free(o);
                free(m);
                return -1;
            }
            for (k = 0; k < i; k++) {
                o[k] = s[k];
                m[k] = (uint32_t)k;
            }
        }
        if (f == -1) {
            for (size_t j = 0; j < n; j++) {
                o[k] = s[i + j];
                m[k++] = (uint32_t)(i + j);
            }
        } else if (f >= 0) {
            o[k] = (char)f;
            m[k++] = (uint32_t)i;
        }
        i += n;
    }
    if (o) {
        o[k] = '\0';
        m[k] = (uint32_t)len;
        *out = o;
        *out_len = k;
        *map = m;
    }
    return 0;
}
