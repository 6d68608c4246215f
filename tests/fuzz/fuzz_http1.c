/*
 * Fuzz driver for the HTTP/1.1 request parser: arbitrary bytes, fed in pieces whose sizes
 * come from the first input byte, through several pipelined messages, must never crash,
 * overrun, or leave the parser in an impossible state.
 */
#include <stddef.h>
#include <stdint.h>

#include "core/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t step = (size_t)(data[0] % 17) + 1;
    data++;
    size--;
    struct http1_parser p;
    http1_init(&p, 2048, 4096);
    size_t off = 0;
    int messages = 0;
    while (off < size && messages < 16) {
        size_t n = size - off < step ? size - off : step;
        size_t used = http1_feed(&p, (const char *)data + off, n);
        if (used > n)
            __builtin_trap();
        off += used;
        if (p.state == HTTP1_ERROR)
            break;
        if (p.state == HTTP1_DONE) {
            /* Touch what a handler reads. */
            volatile size_t sink = p.path.len + p.query.len + p.body.len + p.n_headers;
            (void)sink;
            (void)http1_header(&p, "content-type");
            http1_reset(&p);
            messages++;
            continue;
        }
        if (used < n)
            break;
    }
    http1_free(&p);
    return 0;
}
