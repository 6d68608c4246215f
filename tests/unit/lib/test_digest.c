/* lib/digest: SHA-256 (whole and in parts, below and beyond the stack buffer), HMAC, hex. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/digest.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>

static void hex_of(const uint8_t *md, char *out)
{
    gw_hex(md, GW_SHA256_LEN, out);
}

static void test_known_vectors(void **state)
{
    (void)state;
    char hex[65];
    gw_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    gw_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* FIPS 180-4 example: the 448-bit message. */
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    gw_sha256_hex(m, strlen(m), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

/* Parts of odd sizes give the digest of their concatenation, whether or not they spill. */
static void test_parts_equal_whole(void **state)
{
    (void)state;
    size_t total = 5000;
    unsigned char *data = malloc(total);
    assert_non_null(data);
    for (size_t i = 0; i < total; i++)
        data[i] = (unsigned char)(i * 7 + 3);
    size_t sizes[] = {0, 1, 37, 1023, 1024, 1025, 2048, 5000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        uint8_t whole[GW_SHA256_LEN], parts[GW_SHA256_LEN];
        gw_sha256(data, n, whole);
        struct gw_sha256_ctx c;
        gw_sha256_init(&c);
        for (size_t off = 0; off < n; off += 37)
            gw_sha256_update(&c, data + off, off + 37 <= n ? 37 : n - off);
        assert_int_equal(gw_sha256_final(&c, parts), 0);
        assert_memory_equal(whole, parts, GW_SHA256_LEN);
        /* One large part after a small one takes the overflow path at once. */
        gw_sha256_init(&c);
        if (n > 0) {
            gw_sha256_update(&c, data, 1);
            gw_sha256_update(&c, data + 1, n - 1);
        }
        assert_int_equal(gw_sha256_final(&c, parts), 0);
        assert_memory_equal(whole, parts, GW_SHA256_LEN);
    }
    free(data);
}

/* RFC 4231 test cases 1 and 2. */
static void test_hmac_rfc4231(void **state)
{
    (void)state;
    uint8_t key[20], md[GW_SHA256_LEN];
    char hex[65];
    memset(key, 0x0b, sizeof key);
    assert_int_equal(gw_hmac_sha256(key, sizeof key, "Hi There", 8, md), 0);
    hex_of(md, hex);
    assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    assert_int_equal(gw_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, md), 0);
    hex_of(md, hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void test_equal_ct(void **state)
{
    (void)state;
    assert_true(gw_equal_ct("abcdef", "abcdef", 6));
    assert_false(gw_equal_ct("abcdef", "abcdeg", 6));
    assert_false(gw_equal_ct("xbcdef", "abcdef", 6));
    assert_true(gw_equal_ct("", "", 0));
}

/* Every byte value both ways; each case, and every non-digit, at each position of a pair. */
static void test_unhex(void **state)
{
    (void)state;
    uint8_t all[256], back[256];
    char hex[513];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    gw_hex(all, sizeof all, hex);
    assert_int_equal(gw_unhex(hex, sizeof all, back, 1), 0);
    assert_memory_equal(back, all, sizeof all);

    uint8_t b[2];
    assert_int_equal(gw_unhex("aBcD", 2, b, 0), 0);
    assert_int_equal(b[0], 0xab);
    assert_int_equal(b[1], 0xcd);
    assert_int_equal(gw_unhex("aBcD", 2, b, 1), -1);
    assert_int_equal(gw_unhex("abcd", 2, b, 1), 0);
    for (int c = 0; c < 256; c++) {
        int digit = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        char first[3] = {(char)c, '0', 0}, second[3] = {'0', (char)c, 0};
        assert_int_equal(gw_unhex(first, 1, b, 0) == 0, digit);
        assert_int_equal(gw_unhex(second, 1, b, 0) == 0, digit);
        assert_int_equal(gw_hex_digit((char)c, 1) >= 0, digit && !(c >= 'A' && c <= 'F'));
        assert_int_equal(gw_unhex(first, 1, b, 1) == 0, digit && !(c >= 'A' && c <= 'F'));
        assert_int_equal(gw_unhex(second, 1, b, 1) == 0, digit && !(c >= 'A' && c <= 'F'));
        if (digit)
            assert_int_equal(b[0], gw_hex_digit((char)c, 0));
    }
    /* Upper case reads as lower case does, byte for byte. */
    for (int i = 0; i < 512; i++)
        hex[i] = (char)(hex[i] >= 'a' ? hex[i] - 'a' + 'A' : hex[i]);
    assert_int_equal(gw_unhex(hex, sizeof all, back, 1), -1);
    assert_int_equal(gw_unhex(hex, sizeof all, back, 0), 0);
    assert_memory_equal(back, all, sizeof all);
    /* What a number reader lets through is not hex here. */
    assert_int_equal(gw_unhex("+1", 1, b, 0), -1);
    assert_int_equal(gw_unhex(" 1", 1, b, 0), -1);
    assert_int_equal(gw_unhex("0x", 1, b, 0), -1);
    /* The first pair is read before a bad second one is refused. */
    assert_int_equal(gw_unhex("7fzz", 2, b, 0), -1);
}

/* Each thread keeps a digest context of its own: threads hashing at once get their own sums. */
struct hasher {
    int index;
    int wrong;
};

static void *hash_thread(void *arg)
{
    struct hasher *h = arg;
    char text[96];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(text, sizeof text, "thread %d message %d %.*s", h->index, i, i % 40,
                         "0123456789012345678901234567890123456789");
        uint8_t got[GW_SHA256_LEN], want[GW_SHA256_LEN];
        unsigned int len = 0;
        gw_sha256(text, (size_t)n, got);
        EVP_Digest(text, (size_t)n, want, &len, EVP_sha256(), NULL);
        h->wrong += len != GW_SHA256_LEN || memcmp(got, want, sizeof got) != 0;
    }
    return NULL;
}

static void test_threads_hash_apart(void **state)
{
    (void)state;
    pthread_t t[4];
    struct hasher h[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (struct hasher){.index = i};
        assert_int_equal(pthread_create(&t[i], NULL, hash_thread, &h[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(h[i].wrong, 0);
    }
    /* Empty input, and the context reused after it. */
    uint8_t a[GW_SHA256_LEN], b[GW_SHA256_LEN];
    char hex[GW_SHA256_HEX_LEN + 1];
    gw_sha256("", 0, a);
    gw_hex(a, sizeof a, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    gw_sha256("abc", 3, b);
    gw_hex(b, sizeof b, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors), cmocka_unit_test(test_parts_equal_whole),
        cmocka_unit_test(test_hmac_rfc4231),  cmocka_unit_test(test_equal_ct),
        cmocka_unit_test(test_unhex),         cmocka_unit_test(test_threads_hash_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
