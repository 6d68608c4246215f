/*
 * trace_context: W3C Trace Context (traceparent, tracestate) and W3C Baggage, as they arrive
 * in HTTP headers or in an MCP message's params._meta. Pure functions over (pointer, length)
 * input; nothing here allocates. Anything that does not parse is reported as invalid and the
 * caller starts a new trace: a bad header never fails a call.
 */
#ifndef GW_TRACE_CONTEXT_H
#define GW_TRACE_CONTEXT_H

#include <stddef.h>
#include <stdint.h>

/* Bounds on what toolgate reads and forwards. */
#define TC_MAX_TRACEPARENT 256 /* longer values (a future version's) are not read */
#define TC_TRACEPARENT_LEN 55  /* version 00: "00-" 32 hex "-" 16 hex "-" 2 hex */
#define TC_MAX_TRACESTATE 512  /* bytes; W3C asks to propagate at least this much */
#define TC_MAX_TRACESTATE_MEMBERS 32
#define TC_MAX_BAGGAGE_IN 8192    /* bytes read; a longer baggage is dropped whole */
#define TC_MAX_BAGGAGE_MEMBERS 64 /* members read; more and the baggage is dropped whole */
#define TC_MAX_BAGGAGE_OUT 1024   /* bytes forwarded; allowed members past it are dropped */

#define TC_FLAG_SAMPLED 0x01

struct tc_parent {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags;
};

/*
 * Parses a traceparent value (s, n). Version 00 must be exactly 55 characters; a higher
 * version (not ff) is read by its first four fields when the next character is '-'. Hex is
 * lower case only; an all-zero trace id or parent id is invalid. Returns 0 or -1.
 */
int tc_traceparent_parse(const char *s, size_t n, struct tc_parent *out);

/* Writes "00-<trace>-<span>-<flags>" and a NUL into out (TC_TRACEPARENT_LEN + 1 bytes). */
void tc_traceparent_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags,
                           char out[TC_TRACEPARENT_LEN + 1]);

/*
 * Checks a tracestate value: comma-separated list members "key=value" (optional spaces and
 * tabs around them, empty members allowed), keys as W3C defines them (simple or
 * tenant@system), values of printable ASCII without ',' and '=', at most 32 members, no key
 * twice, at most TC_MAX_TRACESTATE bytes. Returns the number of members, or -1 (invalid: the
 * caller drops it, keeping the traceparent).
 */
int tc_tracestate_check(const char *s, size_t n);

/*
 * Filters a baggage value to the keys in `allow` (n_allow exact, case-sensitive names):
 * writes "key=value,key=value" (properties dropped) and a NUL into out (cap bytes, at least
 * 1). A baggage that is too long, has too many members or any malformed member is dropped
 * whole (out is ""). Returns the number of members kept, or -1 when the input was dropped.
 */
int tc_baggage_filter(const char *s, size_t n, const char *const *allow, size_t n_allow, char *out,
                      size_t cap);

/* True when the 16 bytes are the trace id a ratio `sample` (0..1) keeps (TraceIdRatioBased). */
int tc_ratio_keeps(const uint8_t trace_id[16], double sample);

#endif
