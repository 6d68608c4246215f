/* metrics: counters, histograms and the Prometheus text format (metrics.h). */
#include "lib/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the text format ---- */

void metrics_escape_label(struct gw_buf *b, const char *value)
{
    for (const char *p = value ? value : ""; *p; p++) {
        if (*p == '\\')
            gw_buf_append(b, "\\\\", 2);
        else if (*p == '"')
            gw_buf_append(b, "\\\"", 2);
        else if (*p == '\n')
            gw_buf_append(b, "\\n", 2);
        else
            gw_buf_append(b, p, 1);
    }
}

/* HELP text escapes only backslash and newline. */
static void escape_help(struct gw_buf *b, const char *text)
{
    for (const char *p = text; *p; p++) {
        if (*p == '\\')
            gw_buf_append(b, "\\\\", 2);
        else if (*p == '\n')
            gw_buf_append(b, "\\n", 2);
        else
            gw_buf_append(b, p, 1);
    }
}

void metrics_family(struct gw_metrics_out *o, const char *name, const char *type, const char *help)
{
    gw_buf_printf(&o->buf, "# HELP %s ", name);
    escape_help(&o->buf, help);
    gw_buf_printf(&o->buf, "\n# TYPE %s %s\n", name, type);
}

/* name{a="x",b="y"[,extra_name="extra_value"]} */
static void series(struct gw_buf *b, const char *name, const char *suffix,
                   const struct metrics_label *labels, size_t n, const char *extra_name,
                   const char *extra_value)
{
    gw_buf_printf(b, "%s%s", name, suffix);
    if (n == 0 && !extra_name)
        return;
    gw_buf_append(b, "{", 1);
    for (size_t i = 0; i < n; i++) {
        gw_buf_printf(b, "%s%s=\"", i ? "," : "", labels[i].name);
        metrics_escape_label(b, labels[i].value);
        gw_buf_append(b, "\"", 1);
    }
    if (extra_name) {
        gw_buf_printf(b, "%s%s=\"", n ? "," : "", extra_name);
        metrics_escape_label(b, extra_value);
        gw_buf_append(b, "\"", 1);
    }
    gw_buf_append(b, "}", 1);
}

static void format_double(char *out, size_t outlen, double v)
{
    if (isnan(v))
        snprintf(out, outlen, "NaN");
    else if (isinf(v))
        snprintf(out, outlen, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, outlen, "%.0f", v);
    else
        snprintf(out, outlen, "%.9g", v);
}

void metrics_sample(struct gw_metrics_out *o, const char *name, const struct metrics_label *labels,
                    size_t n_labels, double value)
{
    char v[48];
    format_double(v, sizeof v, value);
    series(&o->buf, name, "", labels, n_labels, NULL, NULL);
    gw_buf_printf(&o->buf, " %s\n", v);
}

void metrics_sample_u64(struct gw_metrics_out *o, const char *name,
                        const struct metrics_label *labels, size_t n_labels, uint64_t value)
{
    series(&o->buf, name, "", labels, n_labels, NULL, NULL);
    gw_buf_printf(&o->buf, " %llu\n", (unsigned long long)value);
}

/* ---- histograms ---- */

void metrics_histogram_init(struct metrics_histogram *h, const uint64_t *bounds, size_t n_bounds,
                            double unit)
{
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->n_bounds = n_bounds > METRICS_MAX_BUCKETS ? METRICS_MAX_BUCKETS : n_bounds;
    h->unit = unit;
}

void metrics_histogram_observe(struct metrics_histogram *h, uint64_t value)
{
    /* Few buckets: a linear scan is as fast as a search and has no branches to mispredict. */
    size_t i = 0;
    while (i < h->n_bounds && value > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, value, memory_order_relaxed);
}

void metrics_histogram_write(struct gw_metrics_out *o, const char *name,
                             const struct metrics_label *labels, size_t n_labels,
                             const struct metrics_histogram *h)
{
    /*
     * Read the buckets once: _count is their total, so the +Inf bucket and _count agree
     * even while requests go on updating the histogram.
     */
    uint64_t cum = 0;
    char le[48];
    for (size_t i = 0; i <= h->n_bounds; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < h->n_bounds)
            format_double(le, sizeof le, (double)h->bounds[i] * h->unit);
        else
            snprintf(le, sizeof le, "+Inf");
        series(&o->buf, name, "_bucket", labels, n_labels, "le", le);
        gw_buf_printf(&o->buf, " %llu\n", (unsigned long long)cum);
    }
    char v[48];
    format_double(v, sizeof v,
                  (double)atomic_load_explicit(&h->sum, memory_order_relaxed) * h->unit);
    series(&o->buf, name, "_sum", labels, n_labels, NULL, NULL);
    gw_buf_printf(&o->buf, " %s\n", v);
    series(&o->buf, name, "_count", labels, n_labels, NULL, NULL);
    gw_buf_printf(&o->buf, " %llu\n", (unsigned long long)cum);
}

/* ---- counters per key ---- */

#define EMPTY_KEY UINT64_MAX

int metrics_table_init(struct metrics_table *t, size_t cap)
{
    size_t c = 16;
    while (c < cap * 2)
        c <<= 1;
    memset(t, 0, sizeof *t);
    t->keys = malloc(c * sizeof *t->keys);
    t->counts = calloc(c, sizeof *t->counts);
    if (!t->keys || !t->counts) {
        metrics_table_free(t);
        return -1;
    }
    for (size_t i = 0; i < c; i++)
        atomic_init(&t->keys[i], EMPTY_KEY);
    t->cap = c;
    return 0;
}

void metrics_table_free(struct metrics_table *t)
{
    free(t->keys);
    free((void *)t->counts);
    t->keys = t->counts = NULL;
    t->cap = 0;
}

static uint64_t mix(uint64_t k)
{
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    return k;
}

void metrics_table_add(struct metrics_table *t, uint64_t key, uint64_t n)
{
    if (!t->cap || key == EMPTY_KEY)
        return;
    size_t mask = t->cap - 1;
    size_t i = (size_t)mix(key) & mask;
    for (size_t probes = 0; probes < t->cap; probes++, i = (i + 1) & mask) {
        uint_fast64_t k = atomic_load_explicit(&t->keys[i], memory_order_acquire);
        if (k == EMPTY_KEY) {
            uint_fast64_t expected = EMPTY_KEY;
            if (atomic_compare_exchange_strong_explicit(&t->keys[i], &expected, key,
                                                        memory_order_acq_rel, memory_order_acquire))
                k = key;
            else
                k = expected; /* another thread claimed the slot first */
        }
        if (k == key) {
            atomic_fetch_add_explicit(&t->counts[i], n, memory_order_relaxed);
            return;
        }
    }
    atomic_fetch_add_explicit(&t->dropped, n, memory_order_relaxed);
}

void metrics_table_each(const struct metrics_table *t,
                        void (*fn)(void *arg, uint64_t key, uint64_t count), void *arg)
{
    for (size_t i = 0; i < t->cap; i++) {
        uint64_t k = atomic_load_explicit(&t->keys[i], memory_order_acquire);
        if (k != EMPTY_KEY)
            fn(arg, k, atomic_load_explicit(&t->counts[i], memory_order_relaxed));
    }
}

void metrics_single_u64(struct gw_metrics_out *o, const char *name, const char *type,
                        const char *help, uint64_t value)
{
    metrics_family(o, name, type, help);
    metrics_sample_u64(o, name, NULL, 0, value);
}
