/*
 * metrics: a small Prometheus exporter. Counters, gauges and histograms with fixed buckets
 * that the request path updates with relaxed atomic additions (no lock, no allocation), and
 * the text exposition format 0.0.4 that GET /metrics answers with.
 *
 * Labels are never free text from the wire: callers map what they count onto a bounded set
 * of small integers (a route's index, a method's index in the method table, a reason code's
 * index in a fixed list) and turn them back into label values only when writing the text.
 * metrics_table counts such integer keys in a fixed-size lock-free hash table, so the number
 * of series is bounded by its capacity whatever the traffic.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_MAX_BUCKETS 16

/* The exposition being written (owned by whoever answers GET /metrics). */
struct gw_metrics_out {
    struct gw_buf buf;
};

struct metrics_label {
    const char *name;  /* [a-zA-Z_][a-zA-Z0-9_]*, a constant */
    const char *value; /* any UTF-8; escaped when written */
};

/* "# HELP name help" and "# TYPE name type" (type: counter, gauge, histogram). */
void metrics_family(struct gw_metrics_out *o, const char *name, const char *type, const char *help);
/* One sample line: name{labels} value. Integers are written exactly. */
void metrics_sample(struct gw_metrics_out *o, const char *name, const struct metrics_label *labels,
                    size_t n_labels, double value);
void metrics_sample_u64(struct gw_metrics_out *o, const char *name,
                        const struct metrics_label *labels, size_t n_labels, uint64_t value);
/* A family of one unlabelled sample: its HELP and TYPE lines, then name value. */
void metrics_single_u64(struct gw_metrics_out *o, const char *name, const char *type,
                        const char *help, uint64_t value);
/* Appends a label value with \\, \" and \n escaped, as the format asks. */
void metrics_escape_label(struct gw_buf *b, const char *value);

/*
 * A histogram over whole-number observations (nanoseconds, bytes) with fixed upper bounds.
 * Written in `unit` per observation unit (1e-9 turns nanoseconds into seconds).
 */
struct metrics_histogram {
    const uint64_t *bounds; /* ascending upper bounds, borrowed; at most METRICS_MAX_BUCKETS */
    size_t n_bounds;
    double unit;
    /* Per bucket, not cumulative; their total is the count (no third atomic to update). */
    atomic_uint_fast64_t buckets[METRICS_MAX_BUCKETS + 1];
    atomic_uint_fast64_t sum;
};

void metrics_histogram_init(struct metrics_histogram *h, const uint64_t *bounds, size_t n_bounds,
                            double unit);
void metrics_histogram_observe(struct metrics_histogram *h, uint64_t value);
/* name_bucket{labels,le} (cumulative, ending at +Inf), name_sum and name_count. */
void metrics_histogram_write(struct gw_metrics_out *o, const char *name,
                             const struct metrics_label *labels, size_t n_labels,
                             const struct metrics_histogram *h);

/*
 * Counts per integer key (any value but UINT64_MAX) in a fixed-size open-addressing table:
 * adding is a probe and a relaxed atomic add, claiming a new key one compare-and-swap. A key
 * that finds the table full is counted in `dropped` instead.
 */
struct metrics_table {
    size_t cap; /* a power of two */
    atomic_uint_fast64_t *keys;
    atomic_uint_fast64_t *counts;
    atomic_uint_fast64_t dropped;
};

/* Room for at least `cap` keys. Returns 0 or -1 (memory). metrics_table_free releases it. */
int metrics_table_init(struct metrics_table *t, size_t cap);
void metrics_table_free(struct metrics_table *t);
void metrics_table_add(struct metrics_table *t, uint64_t key, uint64_t n);
/* Calls fn for every key counted so far (in table order). */
void metrics_table_each(const struct metrics_table *t,
                        void (*fn)(void *arg, uint64_t key, uint64_t count), void *arg);

#endif
