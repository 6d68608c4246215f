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

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct sse_event {
    struct gw_slice event; /* "event:" field, empty when absent (means "message") */
    struct gw_slice data;  /* "data:" lines joined with '\n' */
    struct gw_slice id;    /* "id:" field */
    int has_id;
    int has_data;
    int64_t retry; /* -1 when absent */
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
};

void sse_parser_init(struct sse_parser *p, size_t max_event);
void sse_parser_free(struct sse_parser *p);
/* Feeds bytes. Returns 0, SSE_TOO_LARGE when an event exceeds max_event, or the callback's
 * non-zero value. */
#define SSE_TOO_LARGE (-2)
int sse_feed(struct sse_parser *p, const char *buf, size_t len, sse_event_cb cb, void *userdata);

/* Appends an event encoded as text/event-stream (id/event lines when set, data split on '\n'). */
int sse_encode(struct gw_buf *out, struct gw_slice event, struct gw_slice id, int has_id,
               struct gw_slice data);

#endif
