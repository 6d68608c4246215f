/*
 * exporter: the thread that sends encoded spans to the collector. Workers hand it one
 * request's spans at a time (exporter_enqueue: a lock, a copy of a pointer, never a wait);
 * it sends them in batches over OTLP/HTTP with a timeout per attempt and bounded retries with
 * backoff. When the queue is full the new spans are dropped and counted; a slow or dead
 * collector therefore costs the request path nothing. exporter_stop flushes what is queued
 * within the configured bound and drops (and counts) the rest.
 */
#ifndef GW_EXPORTER_H
#define GW_EXPORTER_H

#include <stddef.h>
#include <stdint.h>

#include "telemetry/telemetry.h"

struct exporter;

struct exporter_counts {
    uint64_t exported;      /* spans the collector accepted */
    uint64_t dropped;       /* spans never sent: the queue was full, or shutdown ran out */
    uint64_t failed;        /* spans sent but not accepted after every retry */
    uint64_t requests;      /* export requests made (attempts) */
    uint64_t queued;        /* spans waiting now */
    uint64_t queue_entries; /* requests' span sets waiting now */
    uint64_t capacity;      /* requests' span sets the queue holds at most */
};

/* Starts the thread with a copy of what it needs from tc. Returns NULL on failure. */
struct exporter *exporter_start(const struct telemetry_config *tc, const char *version);
/*
 * Hands over `data` (malloc'd ScopeSpans.spans fields, n_spans of them): the exporter owns it
 * from now on, also when it drops it.
 */
void exporter_enqueue(struct exporter *e, char *data, size_t len, unsigned n_spans);
/* Counts a request's spans that were not even encoded (memory). */
void exporter_count_dropped(struct exporter *e, unsigned n_spans);
void exporter_counts(struct exporter *e, struct exporter_counts *out);
/* Flushes within tc->shutdown_ms, stops the thread and frees everything. */
void exporter_stop(struct exporter *e);

#endif
