/*
 * admin_feed: the live feed of decisions (admin_api.h). A fixed ring of the last
 * ADMIN_FEED_CAPACITY completed requests, filled by the workers as requests end, and the
 * server-sent event streams that read it.
 *
 * A stream never makes a worker wait: each subscriber reads the ring from its own worker's
 * loop on a short timer, and writes only while its socket keeps up. One that falls behind
 * (more than ADMIN_FEED_MAX_QUEUED unsent) stops being written to; when the ring has moved
 * past what it last read, it skips ahead and is told how many events it missed.
 */
#include "admin/admin_api.h"
#include "lib/buf.h"
#include "lib/timeutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define POLL_MS 200
#define HEARTBEAT_MS 15000
#define READ_BATCH 64

static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static struct admin_feed_event ring[ADMIN_FEED_CAPACITY];
static uint64_t ring_last; /* seq of the newest event */
static atomic_int subscribers;

void admin_feed_push(const struct admin_feed_event *ev)
{
    pthread_mutex_lock(&ring_lock);
    uint64_t seq = ++ring_last;
    struct admin_feed_event *slot = &ring[(seq - 1) % ADMIN_FEED_CAPACITY];
    *slot = *ev;
    slot->seq = seq;
    pthread_mutex_unlock(&ring_lock);
}

size_t admin_feed_read(uint64_t after, struct admin_feed_event *out, size_t max, uint64_t *skipped)
{
    size_t n = 0;
    pthread_mutex_lock(&ring_lock);
    uint64_t oldest = ring_last > ADMIN_FEED_CAPACITY ? ring_last - ADMIN_FEED_CAPACITY + 1 : 1;
    uint64_t from = after + 1;
    *skipped = 0;
    if (after > ring_last)
        from = ring_last + 1; /* a seq from before a reset, or invented: start at the end */
    if (from < oldest) {
        *skipped = oldest - from;
        from = oldest;
    }
    for (uint64_t s = from; s <= ring_last && n < max; s++)
        out[n++] = ring[(s - 1) % ADMIN_FEED_CAPACITY];
    pthread_mutex_unlock(&ring_lock);
    return n;
}

uint64_t admin_feed_last_seq(void)
{
    pthread_mutex_lock(&ring_lock);
    uint64_t last = ring_last;
    pthread_mutex_unlock(&ring_lock);
    return last;
}

void admin_feed_reset(void)
{
    pthread_mutex_lock(&ring_lock);
    ring_last = 0;
    memset(ring, 0, sizeof ring);
    pthread_mutex_unlock(&ring_lock);
}

int admin_feed_subscribers(void)
{
    return atomic_load(&subscribers);
}

/* Copies at most cap-1 bytes of s; NULL copies as "". */
static void put(char *dst, size_t cap, const char *s)
{
    gw_strlcpy(dst, s ? s : "", cap);
}

/* The same rule as the audit record: a target the safety layer found PII in is not shown. */
void admin_feed_request_done(const struct gw_request *req)
{
    if (!req->route)
        return;
    struct admin_feed_event ev;
    memset(&ev, 0, sizeof ev);
    ev.time_ms = (int64_t)(gw_now_ns() / 1000000u);
    put(ev.route, sizeof ev.route, req->route->name);
    if (req->rpc.n >= 1) {
        const struct mcp_message *m = &req->rpc.msgs[0];
        put(ev.method, sizeof ev.method, m->method);
        if (m->target)
            put(ev.tool, sizeof ev.tool,
                gw_request_target_has_finding(req) ? "[redacted]" : m->target);
    }
    if (req->identity.verified) {
        put(ev.user, sizeof ev.user, req->identity.subject);
        put(ev.tenant, sizeof ev.tenant, req->identity.tenant);
    }
    const struct gw_decision *d = gw_request_denial(req);
    if (d) {
        put(ev.decision, sizeof ev.decision, "deny");
        put(ev.layer, sizeof ev.layer, gw_request_denial_layer(req));
        put(ev.reason, sizeof ev.reason, d->reason_code);
        put(ev.rule, sizeof ev.rule, d->rule_id);
    } else {
        int failed = req->upstream_error[0] || req->response_status >= 500;
        put(ev.decision, sizeof ev.decision, failed ? "error" : "allow");
    }
    ev.cost_micro = req->limits.settled ? req->limits.cost_settled : req->limits.cost_estimated;
    uint64_t end = req->timing.end_ns ? req->timing.end_ns : gw_mono_ns();
    ev.latency_us = end > req->timing.start_ns ? (end - req->timing.start_ns) / 1000u : 0;
    for (size_t i = 0; i < req->findings.n && i < GW_MAX_FINDINGS; i++)
        ev.pii_findings += req->findings.items[i].count;
    ev.status = req->response_status;
    admin_feed_push(&ev);
}

json_t *admin_feed_event_json(const struct admin_feed_event *ev)
{
    char time[40];
    gw_time_rfc3339((uint64_t)ev->time_ms * 1000000u, time, sizeof time);
    /* s% with strnlen: the fields are fixed arrays; json_stringn refuses bad UTF-8 (NULL). */
    json_t *o = json_pack(
        "{s:I, s:s, s:I, s:s, s:s, s:s, s:I, s:I, s:i, s:i}", "seq", (json_int_t)ev->seq, "time",
        time, "time_ms", (json_int_t)ev->time_ms, "decision", ev->decision, "layer", ev->layer,
        "reason", ev->reason, "cost_micro", (json_int_t)ev->cost_micro, "latency_us",
        (json_int_t)ev->latency_us, "pii_findings", (int)ev->pii_findings, "status", ev->status);
    if (!o)
        return NULL;
    const struct {
        const char *name, *value;
    } strs[] = {{"route", ev->route}, {"method", ev->method}, {"tool", ev->tool},
                {"user", ev->user},   {"tenant", ev->tenant}, {"rule", ev->rule}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        json_t *v = json_string(strs[i].value);
        json_object_set_new(o, strs[i].name, v ? v : json_string("[not utf-8]"));
    }
    return o;
}

/* ---- subscribers ---- */

struct feed_sub {
    uv_timer_t timer;
    struct gw_conn *conn; /* NULL once ended or gone */
    uint64_t last;        /* seq of the last event sent */
    uint64_t idle_ms;     /* since the last write */
};

static void sub_closed(uv_handle_t *h)
{
    free(h->data);
    atomic_fetch_sub(&subscribers, 1);
}

/* Stops the subscriber; end_stream: 1 ends the response, 2 abandons it (a failed write). */
static void sub_finish(struct feed_sub *s, int end_stream)
{
    struct gw_conn *c = s->conn;
    s->conn = NULL;
    uv_timer_stop(&s->timer);
    if (c && end_stream) {
        gw_conn_set_hooks(c, NULL, NULL, NULL);
        gw_conn_end(c, end_stream == 2);
    }
    uv_close((uv_handle_t *)&s->timer, sub_closed);
}

static void sub_gone(void *arg)
{
    struct feed_sub *s = arg;
    s->conn = NULL;
    sub_finish(s, 0);
}

static void sub_shutdown(void *arg)
{
    sub_finish(arg, 1);
}

static int write_event(struct gw_buf *b, const struct admin_feed_event *ev)
{
    json_t *o = admin_feed_event_json(ev);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!text)
        return -1;
    int rc = gw_buf_printf(b, "id: %llu\nevent: decision\ndata: %s\n\n",
                           (unsigned long long)ev->seq, text);
    free(text);
    return rc;
}

static void sub_tick(uv_timer_t *t)
{
    struct feed_sub *s = t->data;
    if (!s->conn)
        return;
    s->idle_ms += POLL_MS;
    /* A consumer that does not take what was sent gets nothing more until it does. */
    if (gw_conn_queued(s->conn) > ADMIN_FEED_MAX_QUEUED)
        return;
    struct admin_feed_event batch[READ_BATCH];
    uint64_t skipped = 0;
    size_t n = admin_feed_read(s->last, batch, READ_BATCH, &skipped);
    struct gw_buf b = {0};
    int rc = 0;
    if (skipped)
        rc |= gw_buf_printf(&b, "event: skipped\ndata: {\"skipped\":%llu}\n\n",
                            (unsigned long long)skipped);
    for (size_t i = 0; i < n; i++)
        rc |= write_event(&b, &batch[i]);
    if (n)
        s->last = batch[n - 1].seq;
    else if (skipped)
        s->last += skipped;
    if (!b.len && s->idle_ms >= HEARTBEAT_MS)
        rc |= gw_buf_append_str(&b, ": keep-alive\n\n");
    if (rc == 0 && b.len) {
        s->idle_ms = 0;
        if (gw_conn_write_body(s->conn, b.data, b.len) != 0) {
            gw_buf_free(&b);
            sub_finish(s, 2);
            return;
        }
    }
    gw_buf_free(&b);
}

static int parse_after(const json_t *params, uint64_t *after, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    *after = admin_feed_last_seq();
    json_object_foreach((json_t *)params, key, v)
    {
        if (strcmp(key, "after") != 0) {
            snprintf(err, errlen, "/admin/api/events takes only \"after\" (a seq), not \"%s\"",
                     key);
            return -1;
        }
        const char *s = json_string_value(v);
        char *end = NULL;
        if (!s || !*s || strlen(s) > 19 || s[0] < '0' || s[0] > '9' ||
            (*after = strtoull(s, &end, 10), *end != '\0')) {
            snprintf(err, errlen,
                     "\"after\" is a whole number: the seq of the last event seen "
                     "(0: every event the feed still holds)");
            return -1;
        }
    }
    return 0;
}

static void refuse(struct gw_conn *c, int status, const char *message)
{
    json_t *o = json_pack("{s:s}", "error", message);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    const char *body = text ? text : "{\"error\":\"out of memory\"}";
    gw_conn_respond(c, status, "application/json", body, strlen(body), NULL, 0);
    free(text);
    gw_conn_end(c, 0);
}

void admin_feed_serve(struct gw_conn *c, const json_t *params)
{
    char err[160];
    uint64_t after;
    if (parse_after(params, &after, err, sizeof err) != 0) {
        refuse(c, 400, err);
        return;
    }
    if (atomic_fetch_add(&subscribers, 1) >= ADMIN_FEED_MAX_SUBSCRIBERS) {
        atomic_fetch_sub(&subscribers, 1);
        refuse(c, 503, "too many live feed subscribers; close another dashboard and retry");
        return;
    }
    struct feed_sub *s = calloc(1, sizeof *s);
    if (!s) {
        atomic_fetch_sub(&subscribers, 1);
        refuse(c, 503, "out of memory");
        return;
    }
    s->conn = c;
    s->last = after;
    uv_timer_init(gw_worker_loop(gw_conn_worker(c)), &s->timer);
    s->timer.data = s;
    static const struct gw_header hdrs[] = {
        {GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("text/event-stream")},
        {GW_SLICE_LIT("Cache-Control"), GW_SLICE_LIT("no-store")},
        {GW_SLICE_LIT("X-Content-Type-Options"), GW_SLICE_LIT("nosniff")},
    };
    gw_conn_set_hooks(c, sub_gone, sub_shutdown, s);
    if (gw_conn_write_head(c, 200, hdrs, sizeof hdrs / sizeof hdrs[0], -1) != 0 ||
        gw_conn_write_body(c, ": toolgate decision feed\n\n", 26) != 0) {
        sub_finish(s, 2);
        return;
    }
    uv_timer_start(&s->timer, sub_tick, 0, POLL_MS);
}
