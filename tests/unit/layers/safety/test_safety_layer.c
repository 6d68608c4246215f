/*
 * The safety layer in the pipeline slot: each action in each direction through the layer ops
 * on request contexts built in memory, the rewritten body, response scanning (content,
 * structuredContent, resources, notifications, errors), redaction styles, bounds, config
 * wiring.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "layers/layer.h"
#include "layers/safety/safety-int.h"
#include "lib/metrics.h"

static struct gw_config *load(const char *yaml)
{
    struct cfg_error err = {{0}};
    struct gw_config *cfg = gw_config_load_string(yaml, "t.yaml", &err);
    if (!cfg)
        fail_msg("config: %s", err.msg);
    assert_non_null(safety_config_of(cfg));
    return cfg;
}

static struct gw_request *request(const struct gw_config *cfg, const char *body,
                                  const char *version)
{
    struct gw_request *req = gw_request_new(cfg);
    struct mcp_decode_error err;
    memset(&err, 0, sizeof err);
    if (mcp_decode(body, strlen(body), NULL, version, &req->rpc, &err) != 0)
        fail_msg("decode: %s", err.message);
    req->body = (struct gw_slice){body, strlen(body)};
    return req;
}

static const struct gw_finding *finding(const struct gw_request *req, const char *type,
                                        enum gw_direction dir)
{
    for (size_t i = 0; i < req->findings.n; i++)
        if (strcmp(req->findings.items[i].type, type) == 0 &&
            req->findings.items[i].direction == dir)
            return &req->findings.items[i];
    return NULL;
}

static const char call_ssn[] =
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"ehr.note\","
    "\"arguments\":{\"patient\":\"P1\",\"note\":\"his SSN is 134-67-7626, see chart\"}}}";

static void test_clean_request(void **state)
{
    (void)state;
    struct gw_config *cfg = load("server: {}\n");
    struct gw_request *req = request(
        cfg,
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\","
        "\"arguments\":{\"q\":\"mild pain after walking\",\"n\":3}}}",
        NULL);
    struct gw_decision d = {0};
    assert_int_equal(safety_layer.check(req, &d), GW_PASS);
    assert_string_equal(d.reason_code, "safety.clean");
    assert_null(req->rewritten_body);
    assert_int_equal(req->findings.n, 0);
    struct gw_slice up = gw_request_upstream_body(req);
    assert_ptr_equal(up.ptr, req->body.ptr);
    gw_request_free(req);
    gw_config_free(cfg);
}

static void test_block_request(void **state)
{
    (void)state;
    struct gw_config *cfg = load("server: {}\n"); /* defaults: ssn blocks */
    struct gw_request *req = request(cfg, call_ssn, NULL);
    struct gw_decision d = {0};
    assert_int_equal(safety_layer.check(req, &d), GW_DENY);
    assert_int_equal(d.http_status, 200);
    assert_int_equal(d.jsonrpc_code, 0); /* a tool result the model can read */
    assert_string_equal(d.reason_code, "pii.ssn");
    assert_non_null(strstr(d.reason, "/params/arguments/note"));
    assert_non_null(strstr(d.reason, "Social Security"));
    assert_null(strstr(d.reason, "7626"));
    const struct gw_finding *f = finding(req, "ssn", GW_DIR_REQUEST);
    assert_non_null(f);
    assert_string_equal(f->path, "/params/arguments/note");
    assert_int_equal(f->action, GW_PII_BLOCK);
    assert_int_equal(f->count, 1);
    assert_null(req->rewritten_body);
    gw_request_free(req);
    gw_config_free(cfg);
}

static void test_redact_request_rewrites_body(void **state)
{
    (void)state;
    struct gw_config *cfg = load("server: {}\n");
    const char *body =
        "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"tools/call\",\"params\":{\"name\":\"pay\","
        "\"arguments\":{\"amount\":12.5,\"ok\":true,\"none\":null,\"card\":{\"number\":\"4111 "
        "1111 1111 1111\",\"note\":\"caf\\u00e9 \\u2603 card 5555555555554444 exp 12/27\"},"
        "\"tags\":[\"a/b\",\"x\\\"y\"],\"email\":\"jane@example.com\"}},\"_x\":1}";
    struct gw_request *req = request(cfg, body, NULL);
    struct gw_decision d = {0};
    assert_int_equal(safety_layer.check(req, &d), GW_PASS);
    assert_string_equal(d.reason_code, "safety.redacted");
    assert_non_null(req->rewritten_body);
    assert_int_equal(req->rewritten_len, strlen(req->rewritten_body));
    struct gw_slice up = gw_request_upstream_body(req);
    assert_ptr_equal(up.ptr, req->rewritten_body);
    /* Valid JSON equal to the original with exactly the two card spans replaced. */
    json_error_t jerr;
    json_t *got = json_loadb(up.ptr, up.len, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(got);
    json_t *want = json_loads(body, 0, &jerr);
    json_t *card =
        json_object_get(json_object_get(json_object_get(want, "params"), "arguments"), "card");
    json_object_set_new(card, "number", json_string("[REDACTED:CREDIT_CARD]"));
    json_object_set_new(
        card, "note",
        json_string("caf\xc3\xa9 \xe2\x98\x83 card [REDACTED:CREDIT_CARD] exp 12/27"));
    assert_true(json_equal(got, want));
    /* The e-mail was only logged. */
    const struct gw_finding *f = finding(req, "email", GW_DIR_REQUEST);
    assert_non_null(f);
    assert_int_equal(f->action, GW_PII_LOG);
    f = finding(req, "credit_card", GW_DIR_REQUEST);
    assert_non_null(f);
    assert_int_equal(f->action, GW_PII_REDACT);
    assert_int_equal(req->findings.redactions, 2);
    /* The decoded arguments (what later layers and audit see) are redacted too. */
    const char *num = json_string_value(
        json_object_get(json_object_get(req->rpc.msgs[0].arguments, "card"), "number"));
    assert_string_equal(num, "[REDACTED:CREDIT_CARD]");
    json_decref(got);
    json_decref(want);
    gw_request_free(req);
    gw_config_free(cfg);
}

static void test_keys_and_batches(void **state)
{
    (void)state;
    struct gw_config *cfg = load("safety: {detectors: {email: redact}}\n");
    const char *body = "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                       "{\"name\":\"a\",\"arguments\":{\"jane@example.com\":\"role\"}}},"
                       "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":"
                       "{\"name\":\"b\",\"arguments\":{\"list\":[\"ok\",\"ssn 134-67-7626\"]}}}]";
    struct gw_request *req = request(cfg, body, "2025-03-26");
    struct gw_decision d = {0};
    assert_int_equal(safety_layer.check(req, &d), GW_DENY);
    assert_string_equal(d.reason_code, "pii.ssn");
    assert_non_null(strstr(d.reason, "/1/params/arguments/list/1"));
    /* The member name was renamed in the first element before the second one blocked. */
    assert_non_null(json_object_get(req->rpc.msgs[0].arguments, "[REDACTED:EMAIL]"));
    assert_null(json_object_get(req->rpc.msgs[0].arguments, "jane@example.com"));
    const struct gw_finding *f = finding(req, "email", GW_DIR_REQUEST);
    assert_non_null(f);
    assert_string_equal(f->path, "/0/params/arguments/jane@example.com");
    gw_request_free(req);
    gw_config_free(cfg);
}

static char *redacted_note(const struct gw_config *cfg, const char *note, const char *tenant)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\","
             "\"arguments\":{\"note\":\"%s\"}}}",
             note);
    struct gw_request *req = request(cfg, body, NULL);
    if (tenant)
        req->identity.tenant = strdup(tenant);
    struct gw_decision d = {0};
    assert_int_equal(safety_layer.check(req, &d), GW_PASS);
    char *out = strdup(json_string_value(json_object_get(req->rpc.msgs[0].arguments, "note")));
    gw_request_free(req);
    return out;
}

static void test_styles(void **state)
{
    (void)state;
    struct gw_config *cfg = load("safety: {redaction: {style: mask}, detectors: {ssn: redact,"
                                 " email: redact}}\n");
    char *s = redacted_note(cfg, "card 4111-1111-1111-1111 ok", NULL);
    assert_string_equal(s, "card ****-****-****-1111 ok");
    free(s);
    s = redacted_note(cfg, "ssn 134-67-7626", NULL);
    assert_string_equal(s, "ssn ***-**-7626");
    free(s);
    s = redacted_note(cfg, "to jane@example.com", NULL);
    assert_string_equal(s, "to j***@example.com");
    free(s);
    gw_config_free(cfg);

    char path[] = "/tmp/safety-hk-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "0123456789abcdef0123456789abcdef!", 33), 33);
    close(fd);
    char yaml[256];
    snprintf(yaml, sizeof yaml,
             "safety: {redaction: {style: hash, hash_key_file: %s}, detectors: {ssn: redact}}\n",
             path);
    struct gw_config *a = load(yaml), *b = load(yaml);
    char *x1 = redacted_note(a, "ssn 134-67-7626", "t1");
    char *x2 = redacted_note(b, "ssn 134 67 7626", "t1"); /* other format, other generation */
    char *x3 = redacted_note(a, "ssn 134-67-7626", "t2");
    char *x4 = redacted_note(a, "ssn 134-67-7627", "t1");
    assert_int_equal(strncmp(x1, "ssn [SSN:", 9), 0);
    assert_int_equal(strlen(x1), strlen("ssn [SSN:0123456789abcdef]"));
    assert_string_equal(x1, x2); /* joinable per tenant */
    assert_string_not_equal(x1, x3);
    assert_string_not_equal(x1, x4);
    free(x1);
    free(x2);
    free(x3);
    free(x4);
    gw_config_free(a);
    gw_config_free(b);
    unlink(path);
    /* Without a key file the per-process key still gives stable tokens within the process. */
    struct gw_config *c = load("safety: {redaction: {style: hash}, detectors: {ssn: redact}}\n");
    x1 = redacted_note(c, "134-67-7626", "t1");
    x2 = redacted_note(c, "134-67-7626", "t1");
    assert_string_equal(x1, x2);
    free(x1);
    free(x2);
    gw_config_free(c);
}

static int respond(struct gw_request *req, const char *msg_text, char **out, struct gw_decision *d)
{
    json_error_t jerr;
    json_t *msg = json_loads(msg_text, 0, &jerr);
    assert_non_null(msg);
    int modified = 0;
    int v = safety_layer.on_response(req, msg, &modified, d);
    *out = modified ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    return v;
}

static void test_response_redaction(void **state)
{
    (void)state;
    struct gw_config *cfg = load("server: {}\n");
    struct gw_request *req = request(cfg,
                                     "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
                                     "\"params\":{\"name\":\"t\"}}",
                                     NULL);
    struct gw_decision d = {0};
    char *out = NULL;
    /* content[].text and structuredContent; SSN blocks requests but is redacted in answers. */
    assert_int_equal(
        respond(req,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\","
                "\"text\":\"SSN 134-67-7626\"}],\"structuredContent\":{\"patient\":{\"ssn\":"
                "\"134677626\",\"phone\":\"415-555-2671\"}},\"isError\":false}}",
                &out, &d),
        GW_PASS);
    assert_non_null(out);
    assert_non_null(strstr(out, "\"text\":\"SSN [REDACTED:SSN]\""));
    assert_non_null(strstr(out, "\"ssn\":\"[REDACTED:SSN]\""));
    assert_non_null(strstr(out, "415-555-2671")); /* phone: log only */
    assert_null(strstr(out, "7626"));
    free(out);
    const struct gw_finding *f = finding(req, "ssn", GW_DIR_RESPONSE);
    assert_non_null(f);
    assert_string_equal(f->path, "/result/content/0/text");
    assert_int_equal(f->action, GW_PII_REDACT);
    /* resources/read contents, prompt messages, progress notifications, errors. */
    assert_int_equal(respond(req,
                             "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"contents\":[{\"uri\":"
                             "\"file:///a\",\"text\":\"card 4111111111111111\"}]}}",
                             &out, &d),
                     GW_PASS);
    assert_non_null(strstr(out, "card [REDACTED:CREDIT_CARD]"));
    free(out);
    assert_int_equal(
        respond(req,
                "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":"
                "{\"progressToken\":\"4111111111111111\",\"progress\":1,"
                "\"message\":\"charging 4111111111111111\"}}",
                &out, &d),
        GW_PASS);
    /* The whole message is scanned: the progress token too. */
    assert_non_null(strstr(out, "\"progressToken\":\"[REDACTED:CREDIT_CARD]\""));
    assert_non_null(strstr(out, "charging [REDACTED:CREDIT_CARD]"));
    free(out);
    assert_int_equal(respond(req,
                             "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-1,\"message\":"
                             "\"bad card 4111111111111111\"}}",
                             &out, &d),
                     GW_PASS);
    assert_non_null(strstr(out, "bad card [REDACTED:CREDIT_CARD]"));
    free(out);
    /* Untouched answers are not rewritten. */
    assert_int_equal(
        respond(req, "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"content\":[]}}", &out, &d),
        GW_PASS);
    assert_null(out);
    gw_request_free(req);
    gw_config_free(cfg);
}

static void test_response_block(void **state)
{
    (void)state;
    struct gw_config *cfg = load("safety: {responses: {default: block}}\n");
    struct gw_request *req = request(cfg,
                                     "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
                                     "\"params\":{\"name\":\"t\"}}",
                                     NULL);
    struct gw_decision d = {0};
    char *out = NULL;
    assert_int_equal(respond(req,
                             "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":"
                             "\"text\",\"text\":\"SSN 134-67-7626\"}]}}",
                             &out, &d),
                     GW_DENY);
    assert_string_equal(d.reason_code, "pii.ssn");
    assert_int_equal(d.jsonrpc_code, -32003);
    assert_non_null(strstr(d.reason, "/result/content/0/text"));
    assert_null(strstr(d.reason, "7626"));
    const struct gw_finding *f = finding(req, "ssn", GW_DIR_RESPONSE);
    assert_non_null(f);
    assert_int_equal(f->action, GW_PII_BLOCK);
    free(out);
    gw_request_free(req);
    gw_config_free(cfg);
    /* Responses not scanned at all. */
    cfg = load("safety: {responses: {enabled: false}}\n");
    req = request(cfg, call_ssn, NULL);
    assert_int_equal(respond(req,
                             "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":"
                             "\"text\",\"text\":\"SSN 134-67-7626\"}]}}",
                             &out, &d),
                     GW_PASS);
    assert_null(out);
    assert_int_equal(req->findings.n, 0);
    gw_request_free(req);
    gw_config_free(cfg);
}

static void test_bounds(void **state)
{
    (void)state;
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char body[4000];
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\","
             "\"arguments\":{\"blob\":\"%s\"}}}",
             big);
    struct gw_config *cfg = load("safety: {limits: {max_scan_bytes: 1KiB}}\n");
    struct gw_request *req = request(cfg, body, NULL);
    struct gw_decision d = {0};
    assert_int_equal(safety_layer.check(req, &d), GW_DENY);
    assert_string_equal(d.reason_code, "safety.too_large");
    gw_request_free(req);
    gw_config_free(cfg);
    cfg = load("safety: {limits: {max_scan_bytes: 1KiB, on_oversize: pass}}\n");
    req = request(cfg, body, NULL);
    memset(&d, 0, sizeof d);
    assert_int_equal(safety_layer.check(req, &d), GW_PASS);
    const struct gw_finding *f = finding(req, "too_large", GW_DIR_REQUEST);
    assert_non_null(f); /* passed with a flag, audited */
    assert_int_equal(f->action, GW_PII_LOG);
    gw_request_free(req);
    gw_config_free(cfg);
    cfg = load("safety: {limits: {max_depth: 3}}\n");
    req = request(cfg,
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
                  "\"t\",\"arguments\":{\"a\":{\"b\":{\"c\":{\"d\":\"x\"}}}}}}",
                  NULL);
    memset(&d, 0, sizeof d);
    assert_int_equal(safety_layer.check(req, &d), GW_DENY);
    assert_string_equal(d.reason_code, "safety.too_deep");
    gw_request_free(req);
    gw_config_free(cfg);
}

static void test_off_and_unconfigured(void **state)
{
    (void)state;
    struct gw_config *cfg = load("safety: {enabled: false}\n");
    struct gw_request *req = request(cfg, call_ssn, NULL);
    struct gw_decision d = {0};
    assert_int_equal(safety_layer.check(req, &d), GW_PASS);
    assert_string_equal(d.reason_code, "safety.off");
    gw_request_free(req);
    gw_config_free(cfg);
    /* A hand-built configuration without the section (other modules' tests) passes. */
    struct gw_config bare;
    memset(&bare, 0, sizeof bare);
    req = request(&bare, call_ssn, NULL);
    assert_int_equal(safety_layer.check(req, &d), GW_PASS);
    gw_request_free(req);
}

static void test_other_methods_and_counters(void **state)
{
    (void)state;
    struct gw_config *cfg = load("safety:\n  custom:\n    - {name: badge, pattern: "
                                 "'BDG-[0-9]{4}', action: redact}\n");
    struct safety_counters before, after;
    safety_counters_get(&before);
    uint64_t custom_before = safety_counter_type("custom");
    /* resources/read scans the URI; prompts/get its arguments; tools/list is not scanned. */
    struct gw_request *req =
        request(cfg,
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\",\"params\":{\"uri\":"
                "\"file:///people/134-67-7626.txt\"}}",
                NULL);
    struct gw_decision d = {0};
    assert_int_equal(safety_layer.check(req, &d), GW_DENY);
    assert_non_null(strstr(d.reason, "/params/uri"));
    gw_request_free(req);
    req = request(cfg,
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"prompts/get\",\"params\":{\"name\":"
                  "\"p\",\"arguments\":{\"who\":\"badge BDG-1234\"}}}",
                  NULL);
    assert_int_equal(safety_layer.check(req, &d), GW_PASS);
    assert_non_null(strstr(req->rewritten_body, "badge [REDACTED:BADGE]"));
    gw_request_free(req);
    req = request(cfg, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{}}",
                  NULL);
    assert_int_equal(safety_layer.check(req, &d), GW_PASS);
    gw_request_free(req);
    safety_counters_get(&after);
    assert_true(after.messages >= before.messages + 2);
    assert_true(after.blocks >= before.blocks + 1);
    assert_true(after.redactions >= before.redactions + 1);
    assert_true(safety_counter_type("custom") >= custom_before + 1);
    assert_true(safety_counter_type("ssn") >= 1);
    /* The same, as metrics: by type, action and direction; custom detectors as "custom". */
    struct gw_metrics_out out = {{0}};
    safety_metrics(cfg, &out);
    assert_non_null(strstr(out.buf.data, "\ntoolgate_pii_findings_total{type=\"ssn\","
                                         "action=\"block\",direction=\"request\"} "));
    assert_non_null(strstr(out.buf.data, "\ntoolgate_pii_findings_total{type=\"custom\","
                                         "action=\"redact\",direction=\"request\"} "));
    assert_null(strstr(out.buf.data, "badge"));
    assert_non_null(strstr(out.buf.data, "\ntoolgate_safety_blocks_total "));
    gw_buf_free(&out.buf);
    gw_config_free(cfg);
}

static void test_tool_overrides(void **state)
{
    (void)state;
    struct gw_config *cfg = load("safety:\n"
                                 "  detectors: {email: off}\n"
                                 "  tools:\n"
                                 "    - tools: [\"billing.*\", refund]\n"
                                 "      detectors: {credit_card: log, ssn: {request: redact},"
                                 " email: redact}\n");
#define TOOL_CALL                                                                                  \
    "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"%s\","         \
    "\"arguments\":{\"card\":\"4111 1111 1111 1111\",\"who\":\"134-67-7626 a@example.com\"}}}"
    char body[512];
    snprintf(body, sizeof body, TOOL_CALL, "billing.charge_card");
    struct gw_request *req = request(cfg, body, NULL);
    struct gw_decision d = {0};
    assert_int_equal(safety_layer.check(req, &d), GW_PASS);
    assert_non_null(req->rewritten_body);
    assert_non_null(strstr(req->rewritten_body, "4111 1111 1111 1111")); /* card: logged */
    assert_non_null(strstr(req->rewritten_body, "[REDACTED:SSN] [REDACTED:EMAIL]"));
    const struct gw_finding *f = finding(req, "credit_card", GW_DIR_REQUEST);
    assert_non_null(f);
    assert_int_equal(f->action, GW_PII_LOG);
    /* The tool's answer (same id) follows the same table: the card stays. */
    char *out = NULL;
    assert_int_equal(respond(req,
                             "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":"
                             "\"text\",\"text\":\"charged 4111 1111 1111 1111\"}]}}",
                             &out, &d),
                     GW_PASS);
    assert_null(out);
    gw_request_free(req);
    /* Another tool: the section's actions (ssn blocks, e-mail off). */
    snprintf(body, sizeof body, TOOL_CALL, "ehr.note");
    req = request(cfg, body, NULL);
    assert_int_equal(safety_layer.check(req, &d), GW_DENY);
    assert_string_equal(d.reason_code, "pii.ssn");
    assert_null(finding(req, "email", GW_DIR_REQUEST));
    gw_request_free(req);
    gw_config_free(cfg);
    struct cfg_error err = {{0}};
    const char *bad[] = {
        "safety: {tools: [{detectors: {ssn: log}}]}\n",
        "safety: {tools: [{tools: [a]}]}\n",
        "safety: {tools: [{tools: [a], detectors: {nope: log}}]}\n",
        "safety: {tools: [{tools: [a], detectors: {ssn: {context: [x]}}}]}\n",
        "safety: {tools: [{tools: [a], detectors: {ssn: log}, extra: 1}]}\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct gw_config *c = gw_config_load_string(bad[i], "t.yaml", &err);
        if (c)
            fail_msg("accepted: %s", bad[i]);
        assert_non_null(strstr(err.msg, "safety.tools"));
    }
}

static int teardown(void **state)
{
    (void)state;
    safety_thread_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_request),
        cmocka_unit_test(test_block_request),
        cmocka_unit_test(test_redact_request_rewrites_body),
        cmocka_unit_test(test_keys_and_batches),
        cmocka_unit_test(test_styles),
        cmocka_unit_test(test_response_redaction),
        cmocka_unit_test(test_response_block),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_off_and_unconfigured),
        cmocka_unit_test(test_other_methods_and_counters),
        cmocka_unit_test(test_tool_overrides),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
