/*
 * stdio_frame: newline-delimited framing of a local server's output, as the MCP stdio
 * transport specifies (one JSON-RPC message per line, no embedded newlines). Every line is
 * bounded: on stdout a longer line is an error (the server is stopped), on stderr it is cut.
 */
#ifndef GW_STDIO_FRAME_H
#define GW_STDIO_FRAME_H

#include <stddef.h>

enum stdio_frame_status {
    STDIO_FRAME_OK = 0,
    STDIO_FRAME_TOO_LONG = -1, /* a line went past max (stdout mode): the framer is dead */
    STDIO_FRAME_NOMEM = -2,
};

/* Called with each complete line, without its "\n" (and without a "\r" before it). */
typedef void stdio_line_fn(void *arg, const char *line, size_t len);

struct stdio_framer {
    char *buf;
    size_t len, cap;
    size_t max;   /* bytes per line, at least 1 */
    int truncate; /* 1: cut an overlong line at max and skip to its end (stderr); 0: fail */
    int skipping; /* in truncate mode: the rest of a line already emitted */
    int dead;     /* a line went past max in fail mode */
    size_t cut;   /* lines cut so far (truncate mode) */
};

/* Sets up an empty framer (no allocation until bytes arrive). */
void stdio_framer_init(struct stdio_framer *f, size_t max, int truncate);
void stdio_framer_free(struct stdio_framer *f);
/*
 * Feeds bytes; calls on_line for each line they complete. Returns STDIO_FRAME_OK, or an error
 * after which every later call fails the same way. Lines are emitted before the error.
 */
int stdio_framer_feed(struct stdio_framer *f, const char *data, size_t len, stdio_line_fn *on_line,
                      void *arg);
/* The bytes of an unfinished line waiting for its newline. */
size_t stdio_framer_pending(const struct stdio_framer *f);

#endif
