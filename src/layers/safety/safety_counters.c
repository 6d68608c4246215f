/*
 * safety_counters: process-wide counters for metrics. They are the one piece of mutable
 * state outside a configuration generation: a reload must not reset what metrics report as
 * monotonic counters. Relaxed atomics: each counter is independent.
 */
#include "layers/safety/safety-int.h"
#include "lib/metrics.h"

#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

static atomic_uint_fast64_t c_messages, c_bytes, c_findings, c_redactions, c_blocks, c_oversize,
    c_errors;
static atomic_uint_fast64_t c_type[SB_COUNT + 1]; /* the last one: custom detectors */
/* Findings by type (as c_type), action (log, redact, block) and direction (request, response). */
static atomic_uint_fast64_t c_found[SB_COUNT + 1][3][2];

#define ADD(c, n) atomic_fetch_add_explicit(&(c), (n), memory_order_relaxed)
#define GET(c) atomic_load_explicit(&(c), memory_order_relaxed)

void safety_count_message(size_t bytes)
{
    ADD(c_messages, 1);
    ADD(c_bytes, bytes);
}

void safety_count_finding(const struct safety_config *sc, int detector, enum safety_action action,
                          int response)
{
    int b = sc->detectors[detector].builtin;
    int t = b >= 0 && b < SB_COUNT ? b : SB_COUNT;
    ADD(c_findings, 1);
    ADD(c_type[t], 1);
    if (action >= SAFETY_LOG && action <= SAFETY_BLOCK)
        ADD(c_found[t][action - SAFETY_LOG][response ? 1 : 0], 1);
}

void safety_metrics(const struct gw_config *cfg, struct gw_metrics_out *out)
{
    (void)cfg;
    static const char *const actions[] = {"log", "redact", "block"};
    static const char *const directions[] = {"request", "response"};
    metrics_family(out, "toolgate_pii_findings_total", "counter",
                   "PII and secrets found, by detector type (custom detectors as \"custom\"), "
                   "the action taken and the direction of the message.");
    for (int t = 0; t <= SB_COUNT; t++)
        for (int a = 0; a < 3; a++)
            for (int d = 0; d < 2; d++) {
                uint64_t v = GET(c_found[t][a][d]);
                if (!v)
                    continue;
                struct metrics_label l[] = {
                    {"type", t < SB_COUNT ? safety_builtin_names[t] : "custom"},
                    {"action", actions[a]},
                    {"direction", directions[d]}};
                metrics_sample_u64(out, "toolgate_pii_findings_total", l, 3, v);
            }
    struct safety_counters c;
    safety_counters_get(&c);
    static const struct {
        const char *name, *help;
        size_t offset;
    } totals[] = {
        {"toolgate_safety_messages_scanned_total", "Messages the safety layer scanned.",
         offsetof(struct safety_counters, messages)},
        {"toolgate_safety_bytes_scanned_total", "Bytes of strings the safety layer scanned.",
         offsetof(struct safety_counters, bytes)},
        {"toolgate_safety_redactions_total", "Spans the safety layer replaced.",
         offsetof(struct safety_counters, redactions)},
        {"toolgate_safety_blocks_total", "Messages denied for a finding.",
         offsetof(struct safety_counters, blocks)},
        {"toolgate_safety_oversize_total", "Messages over a scan bound.",
         offsetof(struct safety_counters, oversize)},
        {"toolgate_safety_errors_total", "Scan errors (the message was refused).",
         offsetof(struct safety_counters, errors)},
    };
    for (size_t i = 0; i < sizeof totals / sizeof totals[0]; i++) {
        metrics_family(out, totals[i].name, "counter", totals[i].help);
        metrics_sample_u64(out, totals[i].name, NULL, 0,
                           *(const uint64_t *)((const char *)&c + totals[i].offset));
    }
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
