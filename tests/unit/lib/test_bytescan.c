/*
 * lib/bytescan: the word-at-a-time tests name the same first byte as a byte-by-byte look,
 * including where borrows flag later bytes falsely (a match followed by near misses).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/bytescan.h"

/* The first byte of b[0..8) a byte-by-byte test picks; 8 when none does. */
static unsigned naive_first(const unsigned char *b, int (*pick)(unsigned char))
{
    unsigned i = 0;
    while (i < 8 && !pick(b[i]))
        i++;
    return i;
}

static int pick_control(unsigned char c)
{
    return c < 0x20;
}

static int pick_json(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\' || c >= 0x7f;
}

static uint64_t mask_control(uint64_t w)
{
    return gw_word_below(w, 0x20);
}

static uint64_t mask_json(uint64_t w)
{
    return gw_word_below(w, 0x20) | gw_word_eq(w, '"') | gw_word_eq(w, '\\') | gw_word_eq(w, 0x7f) |
           gw_word_high(w);
}

static unsigned word_first(const unsigned char *b, uint64_t (*mask)(uint64_t))
{
    uint64_t m = mask(gw_word_load(b));
    return m ? gw_word_first(m) : 8;
}

/* Bytes drawn mostly from around the edges of what is picked, where borrows go wrong. */
static unsigned char edge_byte(unsigned r)
{
    static const unsigned char near[] = {0x00, 0x01, 0x1f, 0x20, 0x21, '!',  '"',  '#',  '[',
                                         '\\', ']',  0x7e, 0x7f, 0x80, 0x81, 0xfe, 0xff, 'a'};
    return r % 3 ? near[(r / 3) % sizeof near] : (unsigned char)(r >> 8);
}

static void test_matches_naive(void **state)
{
    (void)state;
    unsigned seed = 12345;
    for (int n = 0; n < 200000; n++) {
        unsigned char b[8];
        for (int i = 0; i < 8; i++) {
            seed = seed * 1103515245u + 12345u;
            b[i] = edge_byte(seed >> 8);
        }
        assert_int_equal(word_first(b, mask_control), naive_first(b, pick_control));
        assert_int_equal(word_first(b, mask_json), naive_first(b, pick_json));
    }
}

/* Every byte value at every offset among plain bytes, and a match followed by each value. */
static void test_every_byte_every_offset(void **state)
{
    (void)state;
    for (int pos = 0; pos < 8; pos++)
        for (int v = 0; v < 256; v++) {
            unsigned char b[8];
            memset(b, 'a', sizeof b);
            b[pos] = (unsigned char)v;
            assert_int_equal(word_first(b, mask_control), naive_first(b, pick_control));
            assert_int_equal(word_first(b, mask_json), naive_first(b, pick_json));
            if (pos < 7) {
                memset(b, 'a', sizeof b);
                b[pos] = 0x00; /* a match whose borrow runs into the next byte */
                b[pos + 1] = (unsigned char)v;
                assert_int_equal(word_first(b, mask_control), (unsigned)pos);
                assert_int_equal(word_first(b, mask_json), (unsigned)pos);
            }
        }
}

/* The load reads memory order whatever the alignment. */
static void test_load_unaligned(void **state)
{
    (void)state;
    unsigned char buf[24];
    for (int i = 0; i < 24; i++)
        buf[i] = (unsigned char)(0x30 + i);
    for (int off = 0; off < 16; off++) {
        uint64_t w = gw_word_load(buf + off);
        for (int i = 0; i < 8; i++)
            assert_int_equal((unsigned)((w >> (8 * i)) & 0xff), buf[off + i]);
    }
}

typedef size_t (*scan_fn)(const unsigned char *s, size_t i, size_t n);

/*
 * A word-at-a-time scan stops where its byte-at-a-time reference stops: every byte value at
 * every position of every length, from every start, beside a borrow's neighbour (a borrow
 * from a stop byte must never hide it) and after `before`; then random mixes of plain text
 * with the bytes of `mix`.
 */
static void check_scan(scan_fn fast, scan_fn naive, unsigned char before, const unsigned char *mix,
                       size_t n_mix)
{
    unsigned char buf[40];
    for (int c = 0; c < 256; c++)
        for (size_t n = 0; n <= 24; n++)
            for (size_t at = 0; at < n; at++) {
                memset(buf, 'a', sizeof buf);
                buf[at] = (unsigned char)c;
                if (at + 1 < n)
                    buf[at + 1] = (unsigned char)(c ^ 0x80);
                if (at > 0)
                    buf[at - 1] = before;
                for (size_t from = 0; from <= n; from++)
                    assert_int_equal(fast(buf, from, n), naive(buf, from, n));
            }
    unsigned seed = 12345;
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(round % 37);
        for (size_t k = 0; k < n; k++) {
            seed = seed * 1103515245u + 12345u;
            /* Mostly printable, as real text is. */
            buf[k] = (seed >> 16) % 7 ? (unsigned char)(' ' + (seed >> 20) % 95)
                                      : mix[(seed >> 8) % n_mix];
        }
        for (size_t from = 0; from <= n; from++)
            assert_int_equal(fast(buf, from, n), naive(buf, from, n));
    }
}

static size_t plain_end_naive(const unsigned char *s, size_t i, size_t n)
{
    while (i < n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
        i++;
    return i;
}

static void test_json_plain_end(void **state)
{
    (void)state;
    static const unsigned char mix[] = {'a',  'Z', ' ', '~', 0x7f, '"',  '\\', 0x1f, 0x00, 0x80,
                                        0xff, '!', '#', '[', ']',  0x20, 0x21, 0x5b, 0x5d, 0xc3};
    check_scan(gw_json_plain_end, plain_end_naive, 'a', mix, sizeof mix);
}

static size_t field_value_end_naive(const unsigned char *s, size_t i, size_t n)
{
    while (i < n && !((s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f))
        i++;
    return i;
}

/* The field-value scan also beside a tab, which it lets through. */
static void test_field_value_end(void **state)
{
    (void)state;
    static const unsigned char mix[] = {'a',  '\t', '\t', ' ',  '~',  0x7f, 0x7e, 0x80, 0x1f,
                                        0x00, 0x0a, 0x0d, 0x08, 0x09, 0xff, 0x20, 0x21, 0xfe};
    check_scan(gw_field_value_end, field_value_end_naive, '\t', mix, sizeof mix);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_naive),   cmocka_unit_test(test_every_byte_every_offset),
        cmocka_unit_test(test_load_unaligned),  cmocka_unit_test(test_json_plain_end),
        cmocka_unit_test(test_field_value_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
