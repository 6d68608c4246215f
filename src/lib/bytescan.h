#ifndef TOOLGATE_LIB_BYTESCAN_H
#define TOOLGATE_LIB_BYTESCAN_H

/*
 * Eight bytes at a time: tests on a word loaded from memory that flag the bytes matching,
 * for scanners that look for the few bytes that need a look among many that do not.
 *
 * A flag is the high bit of its byte. Borrows run from a flagged byte towards the later
 * ones, so a byte after a true match may be flagged falsely, never one before it: the
 * first flag (gw_word_first) is always exact, and only the first may be trusted.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define GW_WORD_ONES UINT64_C(0x0101010101010101)
#define GW_WORD_HIGHS UINT64_C(0x8080808080808080)

/* Eight bytes from p, the first in the lowest bits whatever the machine's byte order. */
static inline uint64_t gw_word_load(const void *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* Flags the bytes below n (1 <= n <= 128). */
static inline uint64_t gw_word_below(uint64_t w, unsigned n)
{
    return (w - GW_WORD_ONES * n) & ~w & GW_WORD_HIGHS;
}

/* Flags the bytes equal to c. */
static inline uint64_t gw_word_eq(uint64_t w, unsigned char c)
{
    return gw_word_below(w ^ (GW_WORD_ONES * c), 1);
}

/* Flags the bytes of 0x80 and above. */
static inline uint64_t gw_word_high(uint64_t w)
{
    return w & GW_WORD_HIGHS;
}

/* The offset of the first flagged byte; m must not be 0. */
static inline unsigned gw_word_first(uint64_t m)
{
    return (unsigned)__builtin_ctzll(m) >> 3;
}

/*
 * The offset of the first byte from i on in s[0..n) that JSON string text cannot carry as it
 * is: a control byte, '"', '\\', or 0x80 and above (the start of a sequence to check); n when
 * there is none. Writers copy the run before it whole; readers skip it.
 */
static inline size_t gw_json_plain_end(const unsigned char *s, size_t i, size_t n)
{
    while (n - i >= 8) {
        uint64_t w = gw_word_load(s + i);
        uint64_t m =
            gw_word_below(w, 0x20) | gw_word_high(w) | gw_word_eq(w, '"') | gw_word_eq(w, '\\');
        if (m)
            return i + gw_word_first(m);
        i += 8;
    }
    while (i < n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
        i++;
    return i;
}

/*
 * The offset of the first byte from i on in s[0..n) that an HTTP field value may not hold
 * (RFC 9110 §5.5: a control byte other than HTAB, or DEL); n when there is none.
 */
static inline size_t gw_field_value_end(const unsigned char *s, size_t i, size_t n)
{
    while (n - i >= 8) {
        uint64_t w = gw_word_load(s + i);
        if (gw_word_below(w, 0x20) | gw_word_eq(w, 0x7f)) {
            /* A tab (or the false flags after a true one): this word a byte at a time. */
            for (size_t e = i + 8; i < e; i++)
                if ((s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
                    return i;
            continue;
        }
        i += 8;
    }
    while (i < n && !((s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f))
        i++;
    return i;
}

#endif
