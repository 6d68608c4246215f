/*
 * Tests for the telemetry module: its configuration, and its observer hooks on a request
 * context built in memory (which context wins, what goes upstream, what _meta becomes).
 */
#include "fixtures.h"

#include "layers/modules.h"
#include "telemetry/telemetry.h"

#define T1 "4bf92f3577b34da6a3ce929d0e0e4736"
#define P1 "00f067aa0ba902b7"
#define T2 "0af7651916cd43dd8448eb211c80319c"
#define P2 "b7ad6b7169203331"

static const char *const base_yaml =
    "routes: [{name: r, path: /mcp, backends: [{name: b, url: \"http://127.0.0.1:9/mcp\"}]}]\n"
    "telemetry:\n"
    "  traces:\n"
    "    endpoint: \"http://127.0.0.1:4318\"\n"
    "    baggage: [tenant.tier]\n";

static void test_config_defaults(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok(base_yaml);
    const struct telemetry_config *tc = cfg->modules[GW_STAGE_TELEMETRY];
    assert_non_null(tc);
    assert_string_equal(tc->endpoint, "http://127.0.0.1:4318/v1/traces");
    assert_string_equal(tc->service_name, "toolgate");
    assert_true(tc->sample == 1.0);
    assert_int_equal(tc->queue, 2048);
    assert_int_equal(tc->batch, 256);
    assert_int_equal(tc->timeout_ms, 5000);
    assert_int_equal(tc->n_baggage, 1);
    assert_false(tc->enduser_id);
    gw_config_free(cfg);

    cfg = fx_load_ok("telemetry:\n");
    assert_null(cfg->modules[GW_STAGE_TELEMETRY]);
    gw_config_free(cfg);
    cfg = fx_load_ok("telemetry: {traces: {endpoint: \"https://c.example/otlp/v1/traces\", "
                     "protocol: http/protobuf, service_name: gw, sample: 0.25, queue: 10, "
                     "batch: 50, interval: 200ms, timeout: 2s, retries: 0, shutdown: 1s, "
                     "headers: {x-api-key: k}, resource: {deployment.environment.name: prod}, "
                     "enduser_id: true}}\n");
    tc = cfg->modules[GW_STAGE_TELEMETRY];
    assert_string_equal(tc->endpoint, "https://c.example/otlp/v1/traces");
    assert_int_equal(tc->batch, 10); /* never more than the queue */
    assert_int_equal(tc->n_headers, 1);
    assert_string_equal(tc->header_names[0], "x-api-key");
    assert_int_equal(tc->n_resource, 1);
    assert_true(tc->enduser_id);
    gw_config_free(cfg);
}

static void test_config_errors(void **state)
{
    (void)state;
    fx_expect_error("telemetry: {traces: {}}\n", NULL, "telemetry.traces", "endpoint");
    fx_expect_error("telemetry: {metrics: {}}\n", NULL, "telemetry", "metrics");
    fx_expect_error("telemetry: {traces: {endpoint: \"ftp://x\"}}\n", NULL,
                    "telemetry.traces.endpoint", "http:// or https://");
    fx_expect_error("telemetry: {traces: {endpoint: \"http://x\", protocol: grpc}}\n", NULL,
                    "telemetry.traces.protocol", "http/protobuf");
    fx_expect_error("telemetry: {traces: {endpoint: \"http://x\", sample: 1.5}}\n", NULL,
                    "telemetry.traces.sample", "between 0 and 1");
    fx_expect_error("telemetry: {traces: {endpoint: \"http://x\", queue: 0}}\n", NULL,
                    "telemetry.traces.queue", "");
    fx_expect_error("telemetry: {traces: {endpoint: \"http://x\", headers: {\"a b\": c}}}\n", NULL,
                    "telemetry.traces.headers", "character HTTP does not allow");
    fx_expect_error("telemetry: {traces: {endpoint: \"http://x\", baggage: [\"a=b\"]}}\n", NULL,
                    "telemetry.traces.baggage", "not a baggage key");
    fx_expect_error(
        "telemetry: {traces: {endpoint: \"http://x\", resource: {service.name: other}}}\n", NULL,
        "telemetry.traces.resource.service.name", "service_name");
    fx_expect_error("telemetry: {traces: {endpoint: \"http://x\", colour: red}}\n", NULL,
                    "telemetry.traces", "colour");
}

static struct gw_header hdrs[4];

static struct gw_request *request(const struct gw_config *cfg, const char *msg,
                                  const char *traceparent, const char *baggage)
{
    struct gw_request *req = fx_req_on(cfg, "/mcp");
    size_t n = 0;
    if (traceparent)
        hdrs[n++] =
            (struct gw_header){GW_SLICE_LIT("traceparent"), {traceparent, strlen(traceparent)}};
    if (baggage)
        hdrs[n++] = (struct gw_header){GW_SLICE_LIT("baggage"), {baggage, strlen(baggage)}};
    req->headers = hdrs;
    req->n_headers = n;
    fx_req_add_message(req, msg);
    return req;
}

static const char *upstream(const struct gw_request *req, const char *name)
{
    static char v[1200];
    const struct gw_header *h =
        gw_header_find(req->upstream_headers, req->n_upstream_headers, name);
    if (!h)
        return NULL;
    snprintf(v, sizeof v, "%.*s", (int)h->value.len, h->value.ptr);
    return v;
}

static void observe(struct gw_request *req)
{
    telemetry_module.observer->begin(req);
    telemetry_module.observer->forward(req);
}

static void test_header_continued(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok(base_yaml);
    struct gw_request *req = request(
        cfg, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\"}}",
        "00-" T1 "-" P1 "-01", "tenant.tier=gold,user.email=a%40b");
    observe(req);
    const char *tp = upstream(req, "traceparent");
    assert_non_null(tp);
    assert_int_equal(strlen(tp), 55);
    assert_memory_equal(tp, "00-" T1 "-", 36);
    assert_string_not_equal(tp + 36, P1 "-01"); /* toolgate's span is the backend's parent */
    assert_string_equal(tp + 52, "-01");
    assert_string_equal(upstream(req, "baggage"), "tenant.tier=gold");
    assert_null(req->rewritten_body); /* no _meta: the body goes as it came */
    gw_request_free(req);
    gw_config_free(cfg);
}

static void test_meta_first(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok(base_yaml);
    struct gw_request *req = request(
        cfg,
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\","
        "\"_meta\":{\"traceparent\":\"00-" T2 "-" P2 "-01\",\"baggage\":\"x=1\",\"k\":\"v\"}}}",
        "00-" T1 "-" P1 "-01", NULL);
    observe(req);
    char tp[1200];
    snprintf(tp, sizeof tp, "%s", upstream(req, "traceparent"));
    assert_memory_equal(tp, "00-" T2 "-", 36);
    assert_null(upstream(req, "baggage"));
    assert_non_null(req->rewritten_body);
    json_t *body = json_loads(req->rewritten_body, 0, NULL);
    json_t *meta = json_object_get(json_object_get(body, "params"), "_meta");
    assert_string_equal(json_string_value(json_object_get(meta, "traceparent")), tp);
    assert_null(json_object_get(meta, "baggage")); /* x is not allowed */
    assert_string_equal(json_string_value(json_object_get(meta, "k")), "v");
    json_decref(body);
    gw_request_free(req);

    /* An invalid _meta traceparent falls back to the header; _meta gets toolgate's. */
    req = request(cfg,
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
                  "\"t\",\"_meta\":{\"traceparent\":\"00-" T2 "-0000000000000000-01\"}}}",
                  "00-" T1 "-" P1 "-01", NULL);
    observe(req);
    snprintf(tp, sizeof tp, "%s", upstream(req, "traceparent"));
    assert_memory_equal(tp, "00-" T1 "-", 36);
    assert_non_null(strstr(req->rewritten_body, tp));
    gw_request_free(req);
    gw_config_free(cfg);
}

static void test_new_trace(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok(base_yaml);
    struct gw_request *req =
        request(cfg, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", "garbage", "bad,,");
    observe(req);
    const char *tp = upstream(req, "traceparent");
    assert_non_null(tp);
    assert_memory_not_equal(tp + 3, T1, 32);
    assert_null(upstream(req, "baggage"));
    gw_request_free(req);
    gw_config_free(cfg);

    /* Traces off: nothing is touched. */
    cfg = fx_load_ok("routes: [{name: r, path: /mcp, backends: [{name: b, url: "
                     "\"http://127.0.0.1:9/mcp\"}]}]\n");
    req = request(cfg,
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
                  "\"t\",\"_meta\":{\"traceparent\":\"00-" T2 "-" P2 "-01\"}}}",
                  "00-" T1 "-" P1 "-01", NULL);
    observe(req);
    assert_int_equal(req->n_upstream_headers, 0);
    assert_null(req->rewritten_body);
    gw_request_free(req);
    gw_config_free(cfg);
}

static int has(const struct gw_buf *b, const char *s)
{
    return b->len && memmem(b->data, b->len, s, strlen(s)) != NULL;
}

/* What the spans hold: no user id unless enabled, no argument values, the deciding layer. */
static void test_span_contents(void **state)
{
    (void)state;
    static const char *const yamls[] = {
        "routes: [{name: r, path: /mcp, backends: [{name: b, url: \"http://127.0.0.1:9/mcp\"}]}]\n"
        "telemetry: {traces: {endpoint: \"http://127.0.0.1:4318\"}}\n",
        "routes: [{name: r, path: /mcp, backends: [{name: b, url: \"http://127.0.0.1:9/mcp\"}]}]\n"
        "telemetry: {traces: {endpoint: \"http://127.0.0.1:4318\", enduser_id: true}}\n",
    };
    for (int enabled = 0; enabled < 2; enabled++) {
        struct gw_config *cfg = fx_load_ok(yamls[enabled]);
        struct gw_request *req = request(cfg,
                                         "{\"jsonrpc\":\"2.0\",\"id\":\"req-9\",\"method\":\"tools/"
                                         "call\",\"params\":{\"name\":\"ehr.get\",\"arguments\":"
                                         "{\"ssn\":\"078-05-1120\"}}}",
                                         NULL, NULL);
        fx_identity(&req->identity, "dr-alice@example.com", NULL, NULL, fx_now() + 60);
        telemetry_module.observer->begin(req);
        /* Identity and safety passed; policy denied; audit recorded it. */
        uint64_t t = gw_mono_ns();
        int stages[] = {GW_STAGE_IDENTITY, GW_STAGE_SAFETY, GW_STAGE_POLICY, GW_STAGE_AUDIT};
        for (size_t i = 0; i < 4; i++) {
            req->timing.stage_begin_ns[stages[i]] = t + i * 10;
            req->timing.stage_end_ns[stages[i]] = t + i * 10 + 5;
        }
        gw_decision_deny(&req->decision[GW_STAGE_POLICY], 200, 0, "policy.no_match",
                         "No rule permits this call.");
        snprintf(req->decision[GW_STAGE_POLICY].rule_id, 128, "doctors-read");
        req->deciding_stage = GW_STAGE_POLICY;
        req->response_status = 200;
        req->timing.end_ns = t + 100;
        struct gw_buf b = {0};
        unsigned n = 0;
        assert_int_equal(telemetry_spans_encode(req, &b, &n), 0);
        assert_int_equal(n, 5); /* server + the four layers that ran; no upstream span */
        assert_true(has(&b, "tools/call ehr.get"));
        assert_true(has(&b, "toolgate.deciding_layer"));
        assert_true(has(&b, "policy.no_match"));
        assert_true(has(&b, "doctors-read"));
        assert_true(has(&b, "req-9"));
        assert_false(has(&b, "078-05-1120"));
        assert_false(has(&b, "No rule permits")); /* reasons for the model stay out */
        assert_int_equal(has(&b, "enduser.id"), enabled);
        assert_int_equal(has(&b, "dr-alice@example.com"), enabled);
        gw_buf_free(&b);
        gw_request_free(req);
        gw_config_free(cfg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),  cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_header_continued), cmocka_unit_test(test_meta_first),
        cmocka_unit_test(test_new_trace),        cmocka_unit_test(test_span_contents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
