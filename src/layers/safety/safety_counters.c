/*
 * safety_counters: process-wide counters for metrics. They are the one piece of mutable
 * state outside a configuration generation: a reload must not reset what metrics report as
 * monotonic counters. Relaxed atomics: each counter is independent.
 */
#include "layers/safety/safety-int.h"

#include <stdatomic.h>
#include <string.h>

static atomic_uint_fast64_t c_messages, c_bytes, c_findings, c_redactions, c_blocks, c_oversize,
    c_errors;
static atomic_uint_fast64_t c_type[SB_COUNT + 1]; /* the last one: custom detectors */

#define ADD(c, n) atomic_fetch_add_explicit(&(c), (n), memory_order_relaxed)
#define GET(c) atomic_load_explicit(&(c), memory_order_relaxed)

void safety_count_message(size_t bytes)
{
    ADD(c_messages, 1);
    ADD(c_bytes, bytes);
}

void safety_count_finding(const struct safety_config *sc, int detector)
{
    int b = sc->detectors[detector].builtin;
    ADD(c_findings, 1);
    ADD(c_type[b >= 0 && b < SB_COUNT ? b : SB_COUNT], 1);
}

void safety_count_redactions(unsigned n)
{
    ADD(c_redactions, n);
}

void safety_count_block(void)
{
    ADD(c_blocks, 1);
}

void safety_count_oversize(void)
{
    ADD(c_oversize, 1);
}

void safety_count_error(void)
{
    ADD(c_errors, 1);
}

void safety_counters_get(struct safety_counters *out)
{
    out->messages = GET(c_messages);
    out->bytes = GET(c_bytes);
    out->findings = GET(c_findings);
    out->redactions = GET(c_redactions);
    out->blocks = GET(c_blocks);
    out->oversize = GET(c_oversize);
    out->errors = GET(c_errors);
}

uint64_t safety_counter_type(const char *type)
{
    if (strcmp(type, "custom") == 0)
        return GET(c_type[SB_COUNT]);
    for (int b = 0; b < SB_COUNT; b++)
        if (strcmp(safety_builtin_names[b], type) == 0)
            return GET(c_type[b]);
    return 0;
}
