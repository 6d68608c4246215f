/*
 * libFuzzer driver for the response parser of bench/loadgen.c (what a server under load sends
 * back is outside input to the load generator).
 *
 * Input: one byte that seeds the split points, then the bytes of a response stream. The
 * stream is fed once whole and once in pieces (sizes from the seed, many of them one byte);
 * both runs must agree on where the first response ends (or that it is malformed, or still
 * incomplete), on its status and on its body size. A complete response has a status from 200
 * to 599 and never more than the bounded body.
 */
#define LOADGEN_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function" /* the generator's own code, not driven here */
#include "../../bench/loadgen.c"

struct outcome {
    int result; /* 1 complete, 0 incomplete, -1 malformed */
    size_t used;
    int status;
    uint64_t body_seen;
};

static struct conn conn_whole, conn_split;

static void reset(struct conn *c)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->resp = RESP_HEAD;
}

static struct outcome run_pieces(struct conn *c, const char *data, size_t len, unsigned seed)
{
    struct outcome o = {0, 0, 0, 0};
    reset(c);
    size_t at = 0;
    while (at < len) {
        size_t piece = len - at;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            size_t want = (seed >> 16) % 7 == 0 ? 1 + (seed >> 8) % 97 : 1;
            if (want < piece)
                piece = want;
        }
        int done = 0;
        ssize_t n = feed(c, data + at, piece, &done);
        if (n < 0) {
            o.result = -1;
            o.used = at;
            return o;
        }
        if ((size_t)n > piece)
            abort();
        at += (size_t)n;
        if (done) {
            o.result = 1;
            o.used = at;
            o.status = c->status;
            o.body_seen = c->body_seen;
            return o;
        }
        if ((size_t)n != piece)
            abort(); /* only a complete response leaves bytes unconsumed */
    }
    o.used = at;
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned seed = data[0] | 1u;
    const char *stream = (const char *)data + 1;
    size_t len = size - 1;
    struct outcome whole = run_pieces(&conn_whole, stream, len, 0);
    struct outcome split = run_pieces(&conn_split, stream, len, seed);
    if (whole.result != split.result)
        abort();
    if (whole.result == 1) {
        if (whole.used != split.used || whole.status != split.status ||
            whole.body_seen != split.body_seen)
            abort();
        if (whole.status < 200 || whole.status > 599 || whole.body_seen > LG_MAX_BODY)
            abort();
    }
    return 0;
}
