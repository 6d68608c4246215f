/* The stdio line framer: lines split at "\n", CR stripped, every line bounded. */
#include "fixtures.h"
#include "stdio/stdio_frame.h"

struct lines {
    char got[16][64];
    size_t n;
};

static void collect(void *arg, const char *line, size_t len)
{
    struct lines *l = arg;
    if (l->n < 16)
        snprintf(l->got[l->n++], sizeof l->got[0], "%.*s", (int)len, line);
}

static void test_lines_across_reads(void **state)
{
    struct stdio_framer f;
    struct lines l = {0};
    stdio_framer_init(&f, 64, 0);
    assert_int_equal(stdio_framer_feed(&f, "{\"a\":1}\n{\"b\"", 12, collect, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(stdio_framer_pending(&f), 4);
    assert_int_equal(stdio_framer_feed(&f, ":2}\r\n\n", 6, collect, &l), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.got[0], "{\"a\":1}");
    assert_string_equal(l.got[1], "{\"b\":2}");
    assert_string_equal(l.got[2], "");
    stdio_framer_free(&f);
}

static void test_overlong_line_kills_in_stdout_mode(void **state)
{
    struct stdio_framer f;
    struct lines l = {0};
    stdio_framer_init(&f, 8, 0);
    assert_int_equal(stdio_framer_feed(&f, "12345678\n", 9, collect, &l), 0); /* exactly max */
    assert_int_equal(stdio_framer_feed(&f, "1234", 4, collect, &l), 0);
    assert_int_equal(stdio_framer_feed(&f, "56789", 5, collect, &l), STDIO_FRAME_TOO_LONG);
    /* Dead from then on, even for a short line. */
    assert_int_equal(stdio_framer_feed(&f, "\nok\n", 4, collect, &l), STDIO_FRAME_TOO_LONG);
    assert_int_equal(l.n, 1);
    stdio_framer_free(&f);
}

static void test_overlong_line_cut_in_stderr_mode(void **state)
{
    struct stdio_framer f;
    struct lines l = {0};
    stdio_framer_init(&f, 4, 1);
    assert_int_equal(stdio_framer_feed(&f, "abcdefgh", 8, collect, &l), 0);
    assert_int_equal(stdio_framer_feed(&f, "ijk\nxy\n", 7, collect, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.got[0], "abcd");
    assert_string_equal(l.got[1], "xy");
    assert_int_equal(f.cut, 1);
    stdio_framer_free(&f);
}

static void test_huge_input_memory_bounded(void **state)
{
    struct stdio_framer f;
    struct lines l = {0};
    stdio_framer_init(&f, 1024, 1);
    char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(stdio_framer_feed(&f, chunk, sizeof chunk, collect, &l), 0);
    assert_true(f.cap <= 1024);
    assert_int_equal(l.n, 1);
    stdio_framer_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_across_reads),
        cmocka_unit_test(test_overlong_line_kills_in_stdout_mode),
        cmocka_unit_test(test_overlong_line_cut_in_stderr_mode),
        cmocka_unit_test(test_huge_input_memory_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
