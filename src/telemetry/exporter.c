#include "telemetry/exporter.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/timeutil.h"
#include "telemetry/otlp.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000
#define MAX_RESPONSE 65536 /* what is kept of a collector's answer: nothing; read at most */

struct entry {
    char *data;
    size_t len;
    unsigned n_spans;
};

struct exporter {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct entry *ring;
    size_t cap, head, count;
    size_t queued_spans;
    atomic_int stopping;

    char *url;
    struct curl_slist *headers;
    char **resource_keys;
    char **resource_values;
    size_t n_resource;
    char *version;
    size_t batch;
    uint64_t interval_ms, timeout_ms, shutdown_ms;
    unsigned retries;
    /* Set by stop: the monotonic ms the flush must end by (an attempt in flight included). */
    atomic_uint_fast64_t shutdown_deadline_ms;

    atomic_uint_fast64_t exported, dropped, failed, requests;
    int warned; /* one log line per run of failures */
};

static char *dup_or_null(const char *s, int *fail)
{
    char *d = strdup(s);
    if (!d)
        *fail = 1;
    return d;
}

static void exporter_free(struct exporter *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->count; i++)
        free(e->ring[(e->head + i) % e->cap].data);
    free(e->ring);
    free(e->url);
    curl_slist_free_all(e->headers);
    for (size_t i = 0; i < e->n_resource; i++) {
        free(e->resource_keys ? e->resource_keys[i] : NULL);
        free(e->resource_values ? e->resource_values[i] : NULL);
    }
    free(e->resource_keys);
    free(e->resource_values);
    free(e->version);
    free(e);
}

static uint64_t deadline_in(uint64_t ms)
{
    return gw_mono_ms() + ms;
}

/* Waits on the condition until the monotonic ms `until` (or a signal). Lock held. */
static void wait_until(struct exporter *e, uint64_t until)
{
    gw_cond_wait_until_ms(&e->cv, &e->mu, until);
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *arg)
{
    size_t *seen = arg;
    *seen += size * nmemb;
    return *seen > MAX_RESPONSE ? 0 : size * nmemb;
}

/* Ends an attempt still running when the shutdown bound has passed. */
static int progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                    curl_off_t ulnow)
{
    struct exporter *e = arg;
    return atomic_load(&e->stopping) && gw_mono_ms() >= atomic_load(&e->shutdown_deadline_ms);
}

/* One POST. Returns the HTTP status, or 0 when the collector could not be reached in time. */
static long post(struct exporter *e, CURL *h, const struct gw_buf *body, uint64_t timeout_ms)
{
    size_t seen = 0;
    curl_easy_setopt(h, CURLOPT_URL, e->url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->data);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, e->headers);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &seen);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, e);
    atomic_fetch_add_explicit(&e->requests, 1, memory_order_relaxed);
    if (curl_easy_perform(h) != CURLE_OK)
        return 0;
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

/* OTLP/HTTP: 429, 502, 503 and 504 are retryable, as is a collector that did not answer. */
static int retryable(long status)
{
    return status == 0 || status == 429 || status == 502 || status == 503 || status == 504;
}

/*
 * Sends one batch: attempts until accepted, refused for good, out of retries, or (when
 * stopping) out of the shutdown bound. Called without the lock.
 */
static void send_batch(struct exporter *e, CURL *h, struct entry *batch, size_t n)
{
    struct gw_slice *chunks = calloc(n ? n : 1, sizeof *chunks);
    unsigned spans = 0;
    for (size_t i = 0; chunks && i < n; i++)
        chunks[i] = (struct gw_slice){batch[i].data, batch[i].len};
    for (size_t i = 0; i < n; i++)
        spans += batch[i].n_spans;
    struct gw_buf body = {0};
    if (!chunks || otlp_request(&body, (const char *const *)e->resource_keys,
                                (const char *const *)e->resource_values, e->n_resource, e->version,
                                chunks, n) != 0) {
        atomic_fetch_add_explicit(&e->dropped, spans, memory_order_relaxed);
        gw_buf_free(&body);
        free(chunks);
        return;
    }
    free(chunks);
    long status = 0;
    uint64_t backoff = BACKOFF_FIRST_MS;
    for (unsigned attempt = 0;; attempt++) {
        uint64_t timeout = e->timeout_ms;
        if (atomic_load(&e->stopping)) {
            uint64_t deadline = atomic_load(&e->shutdown_deadline_ms);
            uint64_t now = gw_mono_ms();
            if (now >= deadline || attempt > 0)
                break; /* at shutdown: one attempt per batch, within the bound */
            timeout = deadline - now < timeout ? deadline - now : timeout;
        }
        status = post(e, h, &body, timeout);
        if (status >= 200 && status < 300)
            break;
        if (!retryable(status) || attempt >= e->retries)
            break;
        /* The whole backoff, whatever wakes the thread before it, unless stopping. */
        pthread_mutex_lock(&e->mu);
        uint64_t until = gw_mono_ms() + backoff;
        while (!atomic_load(&e->stopping) && gw_mono_ms() < until)
            wait_until(e, until);
        pthread_mutex_unlock(&e->mu);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    if (status >= 200 && status < 300) {
        atomic_fetch_add_explicit(&e->exported, spans, memory_order_relaxed);
        e->warned = 0;
    } else {
        atomic_fetch_add_explicit(&e->failed, spans, memory_order_relaxed);
        if (!e->warned) {
            char fields[64];
            snprintf(fields, sizeof fields, "\"status\":%ld", status);
            gw_log(GW_LOG_WARN, "trace_export_failed", NULL, fields,
                   "the trace collector did not accept spans; they are counted in "
                   "toolgate_trace_spans_failed_total (check telemetry.traces.endpoint)");
            e->warned = 1;
        }
    }
    gw_buf_free(&body);
}

static void *run(void *arg)
{
    struct exporter *e = arg;
    CURL *h = curl_easy_init();
    struct entry *batch = calloc(e->batch, sizeof *batch);
    uint64_t next_flush = deadline_in(e->interval_ms);
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->stopping && e->count < e->batch && gw_mono_ms() < next_flush)
            wait_until(e, next_flush);
        if (e->stopping && (e->count == 0 || gw_mono_ms() >= atomic_load(&e->shutdown_deadline_ms)))
            break;
        size_t n = 0;
        while (n < e->batch && e->count > 0) {
            batch[n++] = e->ring[e->head];
            e->queued_spans -= e->ring[e->head].n_spans;
            e->head = (e->head + 1) % e->cap;
            e->count--;
        }
        pthread_mutex_unlock(&e->mu);
        if (n > 0 && h && batch)
            send_batch(e, h, batch, n);
        else if (n > 0)
            for (size_t i = 0; i < n; i++)
                atomic_fetch_add_explicit(&e->dropped, batch[i].n_spans, memory_order_relaxed);
        for (size_t i = 0; i < n; i++)
            free(batch[i].data);
        pthread_mutex_lock(&e->mu);
        if (e->count < e->batch)
            next_flush = deadline_in(e->interval_ms);
    }
    /* Whatever is left when the bound ran out is dropped, and counted. */
    for (size_t i = 0; i < e->count; i++) {
        struct entry *en = &e->ring[(e->head + i) % e->cap];
        atomic_fetch_add_explicit(&e->dropped, en->n_spans, memory_order_relaxed);
        free(en->data);
    }
    e->count = 0;
    e->queued_spans = 0;
    pthread_mutex_unlock(&e->mu);
    free(batch);
    if (h)
        curl_easy_cleanup(h);
    return NULL;
}

struct exporter *exporter_start(const struct telemetry_config *tc, const char *version)
{
    struct exporter *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    int fail = 0;
    e->cap = tc->queue;
    e->batch = tc->batch;
    e->interval_ms = tc->interval_ms;
    e->timeout_ms = tc->timeout_ms;
    e->shutdown_ms = tc->shutdown_ms;
    e->retries = (unsigned)tc->retries;
    e->ring = calloc(e->cap, sizeof *e->ring);
    e->url = dup_or_null(tc->endpoint, &fail);
    e->version = dup_or_null(version, &fail);
    int own_version = 1; /* service.version is the build's unless the configuration says */
    for (size_t i = 0; i < tc->n_resource; i++)
        own_version &= strcmp(tc->resource_keys[i], "service.version") != 0;
    e->n_resource = 1 + (size_t)own_version + tc->n_resource;
    e->resource_keys = calloc(e->n_resource, sizeof *e->resource_keys);
    e->resource_values = calloc(e->n_resource, sizeof *e->resource_values);
    if (!e->ring || !e->resource_keys || !e->resource_values || fail) {
        e->n_resource = e->resource_keys && e->resource_values ? e->n_resource : 0;
        exporter_free(e);
        return NULL;
    }
    e->resource_keys[0] = dup_or_null("service.name", &fail);
    e->resource_values[0] = dup_or_null(tc->service_name, &fail);
    size_t k = 1;
    if (own_version) {
        e->resource_keys[k] = dup_or_null("service.version", &fail);
        e->resource_values[k++] = dup_or_null(version, &fail);
    }
    for (size_t i = 0; i < tc->n_resource; i++, k++) {
        e->resource_keys[k] = dup_or_null(tc->resource_keys[i], &fail);
        e->resource_values[k] = dup_or_null(tc->resource_values[i], &fail);
    }
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: " OTLP_CONTENT_TYPE);
    e->headers = hl;
    hl = hl ? curl_slist_append(hl, "Expect:") : NULL; /* no 100-continue round trip */
    for (size_t i = 0; hl && i < tc->n_headers; i++) {
        struct gw_buf line = {0};
        if (gw_buf_printf(&line, "%s: %s", tc->header_names[i], tc->header_values[i]) != 0)
            fail = 1;
        else
            hl = curl_slist_append(hl, line.data);
        gw_buf_free(&line);
    }
    if (!hl || fail) {
        exporter_free(e);
        return NULL;
    }
    atomic_init(&e->exported, 0);
    atomic_init(&e->dropped, 0);
    atomic_init(&e->failed, 0);
    atomic_init(&e->requests, 0);
    atomic_init(&e->stopping, 0);
    atomic_init(&e->shutdown_deadline_ms, 0);
    pthread_mutex_init(&e->mu, NULL);
    gw_cond_init_monotonic(&e->cv);
    if (pthread_create(&e->thread, NULL, run, e) != 0) {
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
        exporter_free(e);
        return NULL;
    }
    pthread_setname_np(e->thread, "tg-traces"); /* shows in top -H, perf, gdb */
    return e;
}

void exporter_enqueue(struct exporter *e, char *data, size_t len, unsigned n_spans)
{
    pthread_mutex_lock(&e->mu);
    if (e->stopping || e->count == e->cap) {
        pthread_mutex_unlock(&e->mu);
        atomic_fetch_add_explicit(&e->dropped, n_spans, memory_order_relaxed);
        free(data);
        return;
    }
    e->ring[(e->head + e->count) % e->cap] = (struct entry){data, len, n_spans};
    e->count++;
    e->queued_spans += n_spans;
    int wake = e->count == e->batch;
    pthread_mutex_unlock(&e->mu);
    if (wake)
        pthread_cond_signal(&e->cv);
}

void exporter_count_dropped(struct exporter *e, unsigned n_spans)
{
    atomic_fetch_add_explicit(&e->dropped, n_spans, memory_order_relaxed);
}

void exporter_counts(struct exporter *e, struct exporter_counts *out)
{
    out->exported = atomic_load_explicit(&e->exported, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&e->dropped, memory_order_relaxed);
    out->failed = atomic_load_explicit(&e->failed, memory_order_relaxed);
    out->requests = atomic_load_explicit(&e->requests, memory_order_relaxed);
    pthread_mutex_lock(&e->mu);
    out->queued = e->queued_spans;
    out->queue_entries = e->count;
    pthread_mutex_unlock(&e->mu);
    out->capacity = e->cap;
}

void exporter_stop(struct exporter *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    atomic_store(&e->shutdown_deadline_ms, deadline_in(e->shutdown_ms));
    atomic_store(&e->stopping, 1);
    pthread_mutex_unlock(&e->mu);
    pthread_cond_broadcast(&e->cv);
    pthread_join(e->thread, NULL);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    exporter_free(e);
}
