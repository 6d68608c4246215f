#include "stdio/stdio_frame.h"

#include <stdlib.h>
#include <string.h>

void stdio_framer_init(struct stdio_framer *f, size_t max, int truncate)
{
    memset(f, 0, sizeof *f);
    f->max = max ? max : 1;
    f->truncate = truncate;
}

void stdio_framer_free(struct stdio_framer *f)
{
    free(f->buf);
    f->buf = NULL;
    f->len = f->cap = 0;
}

size_t stdio_framer_pending(const struct stdio_framer *f)
{
    return f->len;
}

static int append(struct stdio_framer *f, const char *p, size_t n)
{
    if (f->len + n > f->cap) {
        size_t cap = f->cap ? f->cap : 256;
        while (cap < f->len + n)
            cap *= 2;
        if (cap > f->max)
            cap = f->max; /* the line never holds more than max bytes */
        char *b = realloc(f->buf, cap);
        if (!b)
            return -1;
        f->buf = b;
        f->cap = cap;
    }
    memcpy(f->buf + f->len, p, n);
    f->len += n;
    return 0;
}

static void emit(struct stdio_framer *f, stdio_line_fn *on_line, void *arg)
{
    size_t n = f->len;
    if (n > 0 && f->buf[n - 1] == '\r')
        n--;
    on_line(arg, f->buf ? f->buf : "", n);
    f->len = 0;
}

int stdio_framer_feed(struct stdio_framer *f, const char *data, size_t len, stdio_line_fn *on_line,
                      void *arg)
{
    if (f->dead)
        return STDIO_FRAME_TOO_LONG;
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        if (f->skipping) {
            /* The rest of a line already cut: nothing of it is kept. */
        } else if (f->len + take <= f->max) {
            if (take && append(f, data, take) != 0)
                return STDIO_FRAME_NOMEM;
        } else if (f->truncate) {
            size_t room = f->max - f->len;
            if (room && append(f, data, room) != 0)
                return STDIO_FRAME_NOMEM;
            emit(f, on_line, arg);
            f->cut++;
            f->skipping = 1;
        } else {
            f->dead = 1;
            f->len = 0;
            return STDIO_FRAME_TOO_LONG;
        }
        if (!nl)
            break;
        if (f->skipping)
            f->skipping = 0;
        else
            emit(f, on_line, arg);
        data = nl + 1;
        len -= take + 1;
    }
    return STDIO_FRAME_OK;
}
