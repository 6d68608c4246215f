/*
 * Fuzz driver for the stdio line framer (a local server's stdout and stderr): arbitrary bytes
 * in arbitrary read sizes must never crash, never emit a line over the bound or with a
 * newline in it, and must emit the same lines however the input is split.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stdio/stdio_frame.h"

struct sink {
    size_t max, lines, bytes;
    uint64_t hash;
};

static void on_line(void *arg, const char *line, size_t len)
{
    struct sink *s = arg;
    if (len > s->max || memchr(line, '\n', len))
        __builtin_trap();
    s->lines++;
    s->bytes += len;
    for (size_t i = 0; i < len; i++)
        s->hash = (s->hash ^ (unsigned char)line[i]) * 1099511628211ull;
    s->hash = (s->hash ^ 0x100) * 1099511628211ull;
}

static int run(const uint8_t *data, size_t size, size_t max, int truncate, size_t step,
               struct sink *s)
{
    struct stdio_framer f;
    stdio_framer_init(&f, max, truncate);
    s->max = max;
    int rc = 0;
    for (size_t off = 0; off < size && rc == 0; off += step) {
        size_t n = size - off < step ? size - off : step;
        rc = stdio_framer_feed(&f, (const char *)data + off, n, on_line, s);
    }
    stdio_framer_free(&f);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max = 1 + data[0] % 64;
    size_t step = 1 + data[1] % 17;
    data += 2;
    size -= 2;
    for (int truncate = 0; truncate < 2; truncate++) {
        struct sink whole = {0}, split = {0};
        int a = run(data, size, max, truncate, size ? size : 1, &whole);
        int b = run(data, size, max, truncate, step, &split);
        if (a != b || whole.lines != split.lines || whole.hash != split.hash)
            __builtin_trap();
        if (truncate && a != 0)
            __builtin_trap();
    }
    return 0;
}
