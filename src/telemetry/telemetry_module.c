/*
 * The telemetry module: trace context in, trace context out, spans to the exporter. See
 * telemetry.h for what it promises; the parsers are trace_context.c, the encoding otlp.c.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/reload.h"
#include "core/module.h"
#include "core/request.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/timeutil.h"
#include "lib/url.h"
#include "telemetry/exporter.h"
#include "telemetry/otlp.h"
#include "telemetry/telemetry.h"
#include "telemetry/trace_context.h"

/* The module's slot, found in the module list (a loop over a handful of pointers). */
#define SLOT gw_module_slot(&telemetry_module)

/* Where a request's trace context came from. */
enum carrier { FROM_NONE = 0, FROM_HEADER, FROM_META };

struct trace_state {
    uint8_t trace_id[16];
    uint8_t parent_id[8]; /* the caller's span, when it sent one */
    uint8_t server_id[8]; /* toolgate's span for the request */
    uint8_t client_id[8]; /* toolgate's span for the upstream call: the backend's parent */
    enum carrier from;
    int sampled;
    int meta_carrier; /* the client put trace context in params._meta: answer in kind */
    /*
     * tracestate / baggage came from _meta (which the safety layer scanned): only then do
     * they go back into _meta. Header values go upstream as headers only, never into a body.
     */
    int tracestate_from_meta;
    int baggage_from_meta;
    int forwarded;
    char tracestate[TC_MAX_TRACESTATE + 1];
    char baggage[TC_MAX_BAGGAGE_OUT + 1];
};

/* The runtime: one exporter between start and stop (NULL in `check` and unit tests). */
static struct exporter *exporter;

static const struct telemetry_config *conf_of(const struct gw_request *req)
{
    return req->cfg ? req->cfg->modules[SLOT] : NULL;
}

static void random_id(uint8_t *out, size_t n)
{
    static const uint8_t zero[16];
    do
        gw_random_id_bytes(out, n);
    while (memcmp(out, zero, n) == 0);
}

/* params._meta of the request's first message, when it is an object. */
static json_t *first_meta(const struct gw_request *req)
{
    for (size_t i = 0; i < req->rpc.n; i++) {
        const struct mcp_message *m = &req->rpc.msgs[i];
        if (m->kind != MCP_REQUEST && m->kind != MCP_NOTIFICATION)
            continue;
        json_t *meta = json_object_get(json_object_get(m->json, "params"), "_meta");
        return json_is_object(meta) ? meta : NULL;
    }
    return NULL;
}

static struct gw_slice meta_string(json_t *meta, const char *key)
{
    json_t *v = json_object_get(meta, key);
    if (!json_is_string(v))
        return (struct gw_slice){NULL, 0};
    return (struct gw_slice){json_string_value(v), json_string_length(v)};
}

/* The one header `name`, or a NULL slice when absent or sent more than once. */
static struct gw_slice single_header(const struct gw_request *req, const char *name)
{
    if (gw_request_header_count(req, name) != 1)
        return (struct gw_slice){NULL, 0};
    return gw_request_header(req, name);
}

static void keep_tracestate(struct trace_state *st, struct gw_slice ts)
{
    if (ts.ptr && ts.len <= TC_MAX_TRACESTATE && tc_tracestate_check(ts.ptr, ts.len) > 0) {
        memcpy(st->tracestate, ts.ptr, ts.len);
        st->tracestate[ts.len] = '\0';
    }
}

/*
 * Continues the caller's trace: params._meta first (it is the message's own context, which
 * the MCP conventions carry; an HTTP header covers the HTTP request), then the traceparent
 * header; neither valid starts a new trace. tracestate comes with the traceparent it was
 * sent beside. Baggage is read from the same carrier, or the header when _meta has none.
 */
static void begin(struct gw_request *req)
{
    const struct telemetry_config *tc = conf_of(req);
    if (!tc || req->layer_state[SLOT])
        return;
    struct trace_state *st = calloc(1, sizeof *st);
    if (!st)
        return;
    req->layer_state[SLOT] = st;
    req->layer_state_free[SLOT] = free;

    json_t *meta = first_meta(req);
    st->meta_carrier =
        meta && (json_object_get(meta, "traceparent") || json_object_get(meta, "tracestate") ||
                 json_object_get(meta, "baggage"));
    struct tc_parent parent;
    struct gw_slice tp = meta_string(meta, "traceparent");
    if (tp.ptr && tc_traceparent_parse(tp.ptr, tp.len, &parent) == 0) {
        st->from = FROM_META;
        keep_tracestate(st, meta_string(meta, "tracestate"));
        st->tracestate_from_meta = 1;
    } else {
        tp = single_header(req, "traceparent");
        if (tp.ptr && tc_traceparent_parse(tp.ptr, tp.len, &parent) == 0) {
            st->from = FROM_HEADER;
            keep_tracestate(st, single_header(req, "tracestate"));
        }
    }
    if (st->from != FROM_NONE) {
        memcpy(st->trace_id, parent.trace_id, 16);
        memcpy(st->parent_id, parent.span_id, 8);
        st->sampled = (parent.flags & TC_FLAG_SAMPLED) != 0;
    } else {
        random_id(st->trace_id, 16);
        st->sampled = tc_ratio_keeps(st->trace_id, tc->sample);
    }
    random_id(st->server_id, 8);
    random_id(st->client_id, 8);
    for (int i = 0; i < 16; i++) {
        req->trace_id[2 * i] = "0123456789abcdef"[st->trace_id[i] >> 4];
        req->trace_id[2 * i + 1] = "0123456789abcdef"[st->trace_id[i] & 15];
    }
    req->trace_id[32] = '\0';
    for (int i = 0; i < 8; i++) {
        req->span_id[2 * i] = "0123456789abcdef"[st->server_id[i] >> 4];
        req->span_id[2 * i + 1] = "0123456789abcdef"[st->server_id[i] & 15];
    }
    req->span_id[16] = '\0';

    struct gw_slice bg = meta_string(meta, "baggage");
    st->baggage_from_meta = bg.ptr != NULL;
    if (!bg.ptr)
        bg = single_header(req, "baggage");
    if (bg.ptr && tc->n_baggage > 0)
        tc_baggage_filter(bg.ptr, bg.len, (const char *const *)tc->baggage, tc->n_baggage,
                          st->baggage, sizeof st->baggage);
}

/* Replaces the trace keys of every message's _meta that carried any with toolgate's own. */
static int rewrite_meta(struct gw_request *req, const struct trace_state *st, const char *tp)
{
    int changed = 0;
    for (size_t i = 0; i < req->rpc.n; i++) {
        json_t *meta = json_object_get(json_object_get(req->rpc.msgs[i].json, "params"), "_meta");
        if (!json_is_object(meta) ||
            !(json_object_get(meta, "traceparent") || json_object_get(meta, "tracestate") ||
              json_object_get(meta, "baggage")))
            continue;
        json_object_set_new(meta, "traceparent", json_string(tp));
        if (st->tracestate[0] && st->tracestate_from_meta)
            json_object_set_new(meta, "tracestate", json_string(st->tracestate));
        else
            json_object_del(meta, "tracestate");
        if (st->baggage[0] && st->baggage_from_meta)
            json_object_set_new(meta, "baggage", json_string(st->baggage));
        else
            json_object_del(meta, "baggage");
        changed = 1;
    }
    return changed;
}

/*
 * The backend continues toolgate's trace: traceparent names the upstream call's span.
 * Headers always (an HTTP backend reads them), _meta too when the client used it. A table
 * that is full or memory that runs out loses the context, never the call.
 */
static void forward(struct gw_request *req)
{
    struct trace_state *st = req->layer_state[SLOT];
    if (!st || !conf_of(req))
        return;
    char tp[TC_TRACEPARENT_LEN + 1];
    tc_traceparent_format(st->trace_id, st->client_id, st->sampled ? TC_FLAG_SAMPLED : 0, tp);
    st->forwarded = 1;
    gw_request_add_upstream_header(req, "traceparent", tp);
    if (st->tracestate[0])
        gw_request_add_upstream_header(req, "tracestate", st->tracestate);
    if (st->baggage[0])
        gw_request_add_upstream_header(req, "baggage", st->baggage);
    if (st->meta_carrier && rewrite_meta(req, st, tp) && gw_request_reserialize(req) != 0)
        gw_log(GW_LOG_WARN, "trace_meta_lost", req->id, NULL,
               "could not re-encode the request with its trace context; the backend gets the "
               "client's _meta");
}

/* ---- spans ---- */

static uint64_t unix_ns(uint64_t mono, int64_t offset)
{
    return (uint64_t)((int64_t)mono + offset);
}

static const char *span_target(const struct mcp_message *m)
{
    if (!m || !m->method || !m->target)
        return NULL;
    if (strcmp(m->method, "tools/call") == 0 || strcmp(m->method, "prompts/get") == 0)
        return m->target; /* resource URIs may name people: never in a span name */
    return NULL;
}

static const struct mcp_message *first_call(const struct gw_request *req)
{
    for (size_t i = 0; i < req->rpc.n; i++)
        if (req->rpc.msgs[i].method)
            return &req->rpc.msgs[i];
    return NULL;
}

/* Attributes the server span and the client span share: what the call was. */
static int call_attrs(struct gw_buf *b, const struct gw_request *req, const struct mcp_message *m)
{
    int rc = 0;
    if (!m)
        return 0;
    rc |= otlp_attr_cstr(b, "mcp.method.name", m->method);
    if (m->method && m->target && strcmp(m->method, "tools/call") == 0) {
        rc |= otlp_attr_cstr(b, "gen_ai.tool.name", m->target);
        rc |= otlp_attr_cstr(b, "gen_ai.operation.name", "execute_tool");
    } else if (m->method && m->target && strcmp(m->method, "prompts/get") == 0) {
        rc |= otlp_attr_cstr(b, "gen_ai.prompt.name", m->target);
    }
    if (json_is_string(m->id)) {
        size_t n = json_string_length(m->id);
        const char *id = json_string_value(m->id);
        rc |= otlp_attr_str(b, "jsonrpc.request.id", id, otlp_utf8_prefix(id, n, 64));
    } else if (json_is_integer(m->id)) {
        char id[24];
        snprintf(id, sizeof id, "%lld", (long long)json_integer_value(m->id));
        rc |= otlp_attr_cstr(b, "jsonrpc.request.id", id);
    }
    return rc;
}

/* The request's error.type, or NULL: the denial's reason, the upstream failure, a 5xx. */
static const char *error_type(const struct gw_request *req, char *buf, size_t cap)
{
    const struct gw_decision *d = gw_request_denial(req);
    if (d)
        return d->reason_code[0] ? d->reason_code : "denied";
    if (req->upstream_error[0])
        return req->upstream_error;
    if (req->response_status >= 500) {
        snprintf(buf, cap, "%d", req->response_status);
        return buf;
    }
    return NULL;
}

static int server_span(struct gw_buf *b, const struct gw_request *req, const struct trace_state *st,
                       const char *name, int64_t offset)
{
    const struct telemetry_config *tc = conf_of(req);
    const struct mcp_message *m = first_call(req);
    struct otlp_span sp = {
        .trace_id = st->trace_id,
        .span_id = st->server_id,
        .parent_span_id = st->from != FROM_NONE ? st->parent_id : NULL,
        .parent_remote = 1,
        .trace_state = st->tracestate,
        .name = name,
        .kind = OTLP_KIND_SERVER,
        .trace_flags = TC_FLAG_SAMPLED,
        .start_unix_ns = unix_ns(req->timing.start_ns, offset),
        .end_unix_ns = unix_ns(req->timing.end_ns, offset),
    };
    size_t mark;
    char buf[16];
    int rc = otlp_span_begin(b, &sp, &mark);
    rc |= call_attrs(b, req, m);
    if (m)
        rc |= otlp_attr_cstr(b, "jsonrpc.protocol.version", "2.0");
    rc |= otlp_attr_cstr(b, "mcp.protocol.version", req->protocol_version);
    if (req->session_valid)
        rc |= otlp_attr_cstr(b, "mcp.session.id", req->session_id);
    if (req->rpc.is_batch)
        rc |= otlp_attr_int(b, "toolgate.batch.size", (int64_t)req->rpc.n);
    rc |= otlp_attr_str(b, "http.request.method", req->method_name.ptr, req->method_name.len);
    if (req->route)
        rc |= otlp_attr_cstr(b, "http.route", req->route->path);
    if (req->response_status)
        rc |= otlp_attr_int(b, "http.response.status_code", req->response_status);
    rc |= otlp_attr_cstr(b, "network.protocol.name", "http");
    rc |= otlp_attr_cstr(b, "network.protocol.version", "1.1");
    rc |= otlp_attr_cstr(b, "network.transport", "tcp");
    rc |= otlp_attr_cstr(b, "toolgate.request.id", req->id);
    if (req->route)
        rc |= otlp_attr_cstr(b, "toolgate.route", req->route->name);
    if (tc->enduser_id && req->identity.verified)
        rc |= otlp_attr_cstr(b, "enduser.id", req->identity.subject);
    const struct gw_decision *d = gw_request_denial(req);
    rc |= otlp_attr_cstr(b, "toolgate.decision", d ? "deny" : "allow");
    if (d) {
        rc |= otlp_attr_cstr(b, "toolgate.deciding_layer", gw_request_denial_layer(req));
        if (d->rule_id[0])
            rc |= otlp_attr_cstr(b, "toolgate.rule_id", d->rule_id);
        if (d->jsonrpc_code) {
            snprintf(buf, sizeof buf, "%d", d->jsonrpc_code);
            rc |= otlp_attr_cstr(b, "rpc.response.status_code", buf);
        }
    }
    const char *err = error_type(req, buf, sizeof buf);
    if (err) {
        rc |= otlp_attr_cstr(b, "error.type", err);
        rc |= otlp_status(b, OTLP_STATUS_ERROR, err);
    }
    return rc | otlp_span_end(b, mark);
}

/* One span per layer that ran, child of the server span, with its verdict and why. */
static int layer_span(struct gw_buf *b, const struct gw_request *req, const struct trace_state *st,
                      int s, int64_t offset)
{
    uint8_t id[8];
    char name[48];
    random_id(id, 8);
    snprintf(name, sizeof name, "toolgate.%s", gw_modules[s]->name);
    uint64_t end = req->timing.stage_end_ns[s] ? req->timing.stage_end_ns[s] : req->timing.end_ns;
    struct otlp_span sp = {
        .trace_id = st->trace_id,
        .span_id = id,
        .parent_span_id = st->server_id,
        .name = name,
        .kind = OTLP_KIND_INTERNAL,
        .trace_flags = TC_FLAG_SAMPLED,
        .start_unix_ns = unix_ns(req->timing.stage_begin_ns[s], offset),
        .end_unix_ns = unix_ns(end, offset),
    };
    const struct gw_decision *d = &req->decision[s];
    int deny = d->verdict == GW_DENY;
    size_t mark;
    int rc = otlp_span_begin(b, &sp, &mark);
    rc |= otlp_attr_cstr(b, "toolgate.layer", gw_modules[s]->name);
    rc |= otlp_attr_cstr(b, "toolgate.decision", deny ? "deny" : "pass");
    if (d->reason_code[0])
        rc |= otlp_attr_cstr(b, "toolgate.reason_code", d->reason_code);
    if (d->rule_id[0])
        rc |= otlp_attr_cstr(b, "toolgate.rule_id", d->rule_id);
    if (deny) {
        rc |= otlp_attr_cstr(b, "error.type", d->reason_code[0] ? d->reason_code : "denied");
        rc |= otlp_status(b, OTLP_STATUS_ERROR, d->reason_code);
    }
    return rc | otlp_span_end(b, mark);
}

static int client_span(struct gw_buf *b, const struct gw_request *req, const struct trace_state *st,
                       const char *name, int64_t offset)
{
    struct otlp_span sp = {
        .trace_id = st->trace_id,
        .span_id = st->client_id,
        .parent_span_id = st->server_id,
        .name = name,
        .kind = OTLP_KIND_CLIENT,
        .trace_flags = TC_FLAG_SAMPLED,
        .start_unix_ns = unix_ns(req->timing.upstream_start_ns, offset),
        .end_unix_ns = unix_ns(req->timing.end_ns, offset),
    };
    size_t mark;
    int rc = otlp_span_begin(b, &sp, &mark);
    rc |= call_attrs(b, req, first_call(req));
    if (req->backend) {
        rc |= otlp_attr_cstr(b, "toolgate.backend", req->backend->name);
        /* The endpoint as configured (routing may have chosen another of the backend's). */
        const char *url = req->upstream_url ? req->upstream_url : req->backend->url;
        struct gw_url u;
        if (url && gw_url_parse(url, strlen(url), 0, &u) == 0) {
            rc |= otlp_attr_cstr(b, "server.address", u.host);
            rc |= otlp_attr_int(b, "server.port", u.port);
        }
    }
    if (req->upstream_status)
        rc |= otlp_attr_int(b, "http.response.status_code", req->upstream_status);
    if (req->upstream_error[0]) {
        rc |= otlp_attr_cstr(b, "error.type", req->upstream_error);
        rc |= otlp_status(b, OTLP_STATUS_ERROR, req->upstream_error);
    } else if (req->upstream_status >= 500) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", req->upstream_status);
        rc |= otlp_attr_cstr(b, "error.type", buf);
        rc |= otlp_status(b, OTLP_STATUS_ERROR, buf);
    }
    return rc | otlp_span_end(b, mark);
}

/* "{mcp.method.name} {target}", or "{HTTP method} {route}" for a request without a message. */
static void name_append(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    n = otlp_utf8_prefix(s, n, cap - 1 - *len);
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
}

static void span_name(const struct gw_request *req, char *out, size_t cap)
{
    const struct mcp_message *m = first_call(req);
    const char *target = span_target(m);
    size_t len = 0;
    out[0] = '\0';
    if (m) {
        /* Method names are the client's text (allow_methods): bounded like any other. */
        name_append(out, cap, &len, m->method, otlp_utf8_prefix(m->method, strlen(m->method), 64));
        if (target) {
            name_append(out, cap, &len, " ", 1);
            name_append(out, cap, &len, target, strlen(target));
        }
        return;
    }
    if (req->method_name.ptr)
        name_append(out, cap, &len, req->method_name.ptr,
                    req->method_name.len > 16 ? 16 : req->method_name.len);
    if (req->route) {
        name_append(out, cap, &len, " ", 1);
        name_append(out, cap, &len, req->route->path, strlen(req->route->path));
    }
}

int telemetry_spans_encode(struct gw_request *req, struct gw_buf *b, unsigned *n_spans)
{
    struct trace_state *st = req->layer_state[SLOT];
    *n_spans = 0;
    if (!st || !st->sampled || !conf_of(req))
        return 0;
    char name[192];
    span_name(req, name, sizeof name);
    int64_t offset = (int64_t)gw_now_ns() - (int64_t)gw_mono_ns();
    if (!req->timing.end_ns)
        req->timing.end_ns = gw_mono_ns();
    unsigned n = 1;
    int rc = gw_buf_reserve(b, 4096); /* a tools/call's spans fit: no growing on the way */
    rc |= server_span(b, req, st, name, offset);
    for (int s = 0; s < (int)gw_n_modules; s++)
        if (gw_modules[s]->layer && req->timing.stage_begin_ns[s]) {
            rc |= layer_span(b, req, st, s, offset);
            n++;
        }
    if (st->forwarded && req->upstream_sent && req->timing.upstream_start_ns) {
        rc |= client_span(b, req, st, name, offset);
        n++;
    }
    *n_spans = n;
    return rc ? -1 : 0;
}

static void end(struct gw_request *req)
{
    if (!exporter)
        return;
    struct gw_buf b = {0};
    unsigned n;
    int rc = telemetry_spans_encode(req, &b, &n);
    if (rc != 0 || n == 0) {
        gw_buf_free(&b);
        if (rc != 0)
            exporter_count_dropped(exporter, n);
        return;
    }
    size_t len;
    char *data = gw_buf_steal(&b, &len);
    exporter_enqueue(exporter, data, len, n);
}

/* ---- the module ---- */

static int parse(const struct cfg_doc *doc, const struct cfg_node *node, void **out,
                 struct cfg_error *err)
{
    struct telemetry_config *tc = NULL;
    int rc = telemetry_config_parse(doc, node, &tc, err);
    *out = tc;
    return rc;
}

static void conf_free(void *conf)
{
    telemetry_config_free(conf);
}

static int start(const struct gw_config *cfg)
{
    const struct telemetry_config *tc = cfg->modules[SLOT];
    if (!tc)
        return 0;
    exporter = exporter_start(tc, TOOLGATE_VERSION);
    if (!exporter) {
        gw_log(GW_LOG_ERROR, "trace_exporter_failed", NULL, NULL,
               "could not start the trace exporter thread (out of memory or threads)");
        return -1;
    }
    return 0;
}

static void stop(void)
{
    exporter_stop(exporter);
    exporter = NULL;
}

static void metrics(const struct gw_config *cfg, struct gw_metrics_out *out)
{
    if (!exporter)
        return;
    struct exporter_counts c;
    exporter_counts(exporter, &c);
    metrics_single_u64(out, "toolgate_trace_spans_exported_total", "counter",
                       "Spans the trace collector accepted.", c.exported);
    metrics_single_u64(out, "toolgate_trace_spans_dropped_total", "counter",
                       "Spans never sent: the export queue was full (a slow or unreachable "
                       "collector) or shutdown ran out of time.",
                       c.dropped);
    metrics_single_u64(out, "toolgate_trace_spans_failed_total", "counter",
                       "Spans sent but not accepted by the collector after every retry.", c.failed);
    metrics_single_u64(out, "toolgate_trace_export_requests_total", "counter",
                       "Export attempts made to the trace collector.", c.requests);
    metrics_single_u64(out, "toolgate_trace_queue_spans", "gauge",
                       "Spans waiting in the export queue.", c.queued);
    metrics_single_u64(out, "toolgate_trace_queue_requests", "gauge",
                       "Requests whose spans wait in the export queue.", c.queue_entries);
    metrics_single_u64(out, "toolgate_trace_queue_capacity", "gauge",
                       "Requests' span sets the export queue holds at most "
                       "(telemetry.traces.queue).",
                       c.capacity);
}

static const struct gw_observer_ops observer = {begin, forward, end};

int telemetry_bench_main(int argc, char **argv); /* telemetry_bench.c */

/* The exporter is started from the section (core/reload.h). */
static int telemetry_prepare(const struct gw_config *running, const struct gw_config *next,
                             struct cfg_error *err)
{
    return gw_reload_require_same(running, next, "telemetry",
                                  "the trace exporter and its queue are started from it", err);
}

const struct gw_module telemetry_module = {
    .name = "telemetry",
    .config_key = "telemetry",
    .parse = parse,
    .free = conf_free,
    .start = start,
    .stop = stop,
    .prepare = telemetry_prepare,
    .metrics = metrics,
    .observer = &observer,
    .bench = telemetry_bench_main,
};
