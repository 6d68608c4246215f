/*
 * sse: an incremental parser for text/event-stream (WHATWG HTML, "Server-sent events").
 *
 * Bytes are fed as they arrive from upstream; each complete event (ended by a blank line) is
 * handed to a callback with its fields and the raw bytes it came from, so a relay can forward
 * the event unchanged or re-encode it when a layer changed it. Lines may end in CRLF, LF or
 * CR. One event is bounded (max_event bytes); beyond it the stream is in error.
 */
#ifndef GW_SSE_H
#define GW_SSE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct sse_event {
    struct gw_slice event; /* "event:" field, empty when absent (means "message") */
    struct gw_slice data;  /* "data:" lines joined with '\n' */
    struct gw_slice id;    /* "id:" field */
    int has_id;
    int has_data;
    int64_t retry;       /* -1 when absent */
    struct gw_slice raw; /* the event's bytes as received, through its blank line */
};

/* Returns 0 to go on, non-zero to stop (sse_feed returns that value). */
typedef int (*sse_event_cb)(void *userdata, const struct sse_event *ev);

struct sse_parser {
    size_t max_event;
    struct gw_buf raw;   /* bytes of the event being received */
    struct gw_buf data;  /* joined data of the event being received */
    struct gw_buf event; /* event name */
    struct gw_buf id;
    int has_id;
    int has_data;
    int64_t retry;
    size_t line_start; /* offset in raw of the line being received */
    int last_was_cr;   /* the previous byte was CR (a following LF belongs to it) */
    int bom_checked;
    int failed; /* an event exceeded max_event: every later feed returns SSE_TOO_LARGE */
};

/* max_event 0 means the default bound of 4 MiB, never "unbounded". */
void sse_parser_init(struct sse_parser *p, size_t max_event);
void sse_parser_free(struct sse_parser *p);

/*
 * Feeds bytes. Returns 0, SSE_TOO_LARGE when an event exceeds max_event, or the callback's
 * non-zero value (the rest of this feed is then not consumed; feed no more).
 *
 * Interpretation follows WHATWG: a leading UTF-8 BOM is skipped; "name:value" with one
 * optional space after the colon removed; a line without a colon is a field with an empty
 * value; lines starting with ':' are comments; data lines are joined with '\n'; an id
 * containing NUL is ignored; retry must be ASCII digits; unknown fields are ignored.
 *
 * Every block ended by a blank line is delivered, not only those WHATWG dispatches: a block
 * of comments (keep-alives), or of only id/retry, arrives with has_data 0 so a relay can pass
 * it on; the consumer decides. A blank line with no block before it delivers nothing. The
 * fields (event, id, retry) are those of this block only. ev->raw holds the block's bytes
 * from the end of the previous block through its blank line; when that blank line ends in CR
 * the event is delivered at the CR (waiting for a possible LF could hold it back forever), so
 * raw ends in CR and the LF that follows is dropped. The slices in ev live until the callback
 * returns. Feeding in any split gives the same events.
 */
#define SSE_TOO_LARGE (-2)
int sse_feed(struct sse_parser *p, const char *buf, size_t len, sse_event_cb cb, void *userdata);

/*
 * Appends an event encoded as text/event-stream: "id: .." when has_id, "event: .." when event
 * is non-empty, "retry: N" when retry >= 0, one "data: " line per line of data ("data: "
 * alone for empty data), then the blank line. Data lines split on LF, CRLF and CR alike, since no
 * SSE line can carry a CR. An id or event holding CR or LF (or an id holding NUL) cannot be
 * encoded: returns -1 with the buffer unchanged. Returns 0 on success.
 */
int sse_encode(struct gw_buf *out, struct gw_slice event, struct gw_slice id, int has_id,
               int64_t retry, struct gw_slice data);

/*
 * The result of an answer toolgate reads itself (a backend's initialize, server/discover):
 * one JSON-RPC message, or an event stream whose first response carries it, events bounded by
 * max. A new reference, or NULL when there is none.
 */
json_t *sse_answer_result(const char *data, size_t len, size_t max);

#endif
