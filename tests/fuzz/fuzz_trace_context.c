/*
 * Fuzz driver for the trace context parsers (traceparent, tracestate, baggage). Beyond memory
 * safety it checks their promises: an accepted version-00 traceparent formats back to the
 * same bytes and has non-zero ids; an accepted tracestate has at most 32 members and fits
 * the bound; filtered baggage holds only allowed keys, fits its buffer, and parses again to
 * itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry/trace_context.h"

static const char *const allow[] = {"tenant.tier", "a", "session.kind", "k0"};

static void check_baggage(const char *s, size_t n)
{
    char out[TC_MAX_BAGGAGE_OUT + 1];
    int kept = tc_baggage_filter(s, n, allow, 4, out, sizeof out);
    size_t len = strlen(out);
    if (kept < 0) {
        if (len != 0)
            abort();
        return;
    }
    if (len > TC_MAX_BAGGAGE_OUT)
        abort();
    /* Every member's key is allowed. */
    int members = 0;
    for (const char *p = out; *p;) {
        const char *eq = strchr(p, '=');
        if (!eq)
            abort();
        int ok = 0;
        for (size_t i = 0; i < 4; i++)
            ok |=
                strlen(allow[i]) == (size_t)(eq - p) && memcmp(allow[i], p, (size_t)(eq - p)) == 0;
        if (!ok)
            abort();
        members++;
        const char *comma = strchr(eq, ',');
        p = comma ? comma + 1 : eq + strlen(eq);
    }
    if (members != kept)
        abort();
    char again[TC_MAX_BAGGAGE_OUT + 1];
    if (len && (tc_baggage_filter(out, len, allow, 4, again, sizeof again) != kept ||
                strcmp(again, out) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct tc_parent p;
    if (tc_traceparent_parse(s, size, &p) == 0) {
        static const uint8_t zero[16];
        if (memcmp(p.trace_id, zero, 16) == 0 || memcmp(p.span_id, zero, 8) == 0)
            abort();
        if (size == TC_TRACEPARENT_LEN && s[0] == '0' && s[1] == '0') {
            char out[TC_TRACEPARENT_LEN + 1];
            tc_traceparent_format(p.trace_id, p.span_id, p.flags, out);
            if (memcmp(out, s, TC_TRACEPARENT_LEN) != 0)
                abort();
        }
    }
    int members = tc_tracestate_check(s, size);
    if (members > TC_MAX_TRACESTATE_MEMBERS || (members >= 0 && size > TC_MAX_TRACESTATE))
        abort();
    check_baggage(s, size);
    (void)tc_ratio_keeps(size >= 16 ? data : (const uint8_t *)"0123456789abcdef", 0.5);
    return 0;
}
