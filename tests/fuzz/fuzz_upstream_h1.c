/*
 * Fuzz driver for the upstream client's response reader: arbitrary bytes from a backend, fed
 * in pieces whose sizes come from the first input byte, then the end of the connection, must
 * never crash or overrun, must report at most one final head, deliver body bytes only after
 * it, and end in a state that says what happened. The callbacks stop the reader on a byte of
 * the input's choosing, as a caller that cancels would.
 */
#include <stddef.h>
#include <stdint.h>

#include "core/upstream_h1.h"

struct seen {
    int heads;
    size_t body;
    size_t stop_at; /* body bytes after which on_body asks to stop (0: never) */
};

static int on_head(void *arg, int status, const struct gw_header *h, size_t n)
{
    struct seen *s = arg;
    if (s->heads++ || status < 200 || status > 999 || n > UPSTREAM_H1_MAX_HEADERS)
        __builtin_trap();
    for (size_t i = 0; i < n; i++) {
        volatile char sink = 0;
        if (h[i].name.len)
            sink ^= h[i].name.ptr[h[i].name.len - 1];
        if (h[i].value.len)
            sink ^= h[i].value.ptr[h[i].value.len - 1];
        (void)sink;
    }
    return 0;
}

static int on_body(void *arg, const char *data, size_t len)
{
    struct seen *s = arg;
    if (s->heads != 1 || len == 0)
        __builtin_trap();
    volatile char sink = data[len - 1];
    (void)sink;
    s->body += len;
    return s->stop_at && s->body >= s->stop_at;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t step = (size_t)(data[0] % 31) + 1;
    struct seen s = {0, 0, data[1] & 1 ? (size_t)(data[1] >> 1) : 0};
    data += 2;
    size -= 2;
    static const struct upstream_h1_reader_callbacks cb = {on_head, on_body};
    struct upstream_h1_reader r;
    upstream_h1_reader_init(&r, &cb, &s);
    size_t off = 0;
    while (off < size && r.state < UPSTREAM_H1_DONE) {
        size_t n = size - off < step ? size - off : step;
        size_t used = upstream_h1_reader_feed(&r, (const char *)data + off, n);
        if (used > n)
            __builtin_trap();
        off += used;
        if (used < n && r.state < UPSTREAM_H1_DONE)
            __builtin_trap(); /* the reader takes everything until it is done */
    }
    upstream_h1_reader_eof(&r);
    if (r.state == UPSTREAM_H1_HEAD || r.state == UPSTREAM_H1_BODY)
        __builtin_trap(); /* the end of the connection always settles it */
    if (r.state == UPSTREAM_H1_ERROR && !r.error)
        __builtin_trap();
    if (r.state == UPSTREAM_H1_DONE && s.heads != 1)
        __builtin_trap();
    (void)upstream_h1_reader_keep_alive(&r);
    upstream_h1_reader_free(&r);
    return 0;
}
