/*
 * The SIEM side of audit: RFC 5424 messages and RFC 6587 frames, the OCSF mapping, the
 * `audit.sinks` configuration, the bulk answer reader, and a sink's queue against a real
 * loopback socket.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "layers/audit/audit.h"
#include "layers/audit/audit_ocsf.h"
#include "layers/audit/audit_sink.h"
#include "layers/audit/audit_syslog.h"
#include "lib/timeutil.h"

/* A committed decision record as the writer would hand it over (chain fields and hash). */
static const char *DECISION =
    "{\"authenticated\":true,\"backend\":\"ehr\",\"client_id\":\"agent-7\",\"decision\":\"deny\","
    "\"deny_status\":200,\"hash\":\"" /* 64 hex */
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"inject\":\"jwt\","
    "\"instance\":\"gw-1\",\"issuer\":\"https://idp.example/\",\"kind\":\"decision\","
    "\"layer\":\"policy\",\"limits\":{\"cost_estimated\":1000},\"method\":\"tools/call\","
    "\"pii\":[{\"action\":\"redact\",\"count\":1,\"path\":\"/q\",\"type\":\"email\"},"
    "{\"action\":\"redact\",\"count\":2,\"path\":\"/r\",\"type\":\"email\"},"
    "{\"action\":\"block\",\"count\":1,\"path\":\"/s\",\"type\":\"ssn\"}],"
    "\"prev_hash\":\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\","
    "\"reason_code\":\"policy.forbidden\",\"request_id\":\"0190-req\",\"roles\":[\"doctor\","
    "\"nurse\"],\"route\":\"ehr\",\"rule_ids\":[\"no-delete\"],\"seq\":42,"
    "\"session_sha256\":\"cccc\",\"span_id\":\"00f067aa0ba902b7\",\"subject\":\"alice\","
    "\"tenant\":\"clinic-7\",\"time\":\"2026-12-04T17:00:00.123456789Z\","
    "\"time_ns\":\"1796403600123456789\",\"tool\":\"delete_patient\","
    "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"protocol_version\":\"2025-06-18\"}";

static json_t *load(const char *s)
{
    json_t *v = json_loads(s, 0, NULL);
    assert_non_null(v);
    return v;
}

static const struct audit_syslog_params PARAMS = {.facility = 13,
                                                  .hostname = "gw-1",
                                                  .app_name = "toolgate",
                                                  .procid = "4242",
                                                  .sd_id = "toolgate@32473",
                                                  .max_length = 8192};

/* ---- RFC 5424 ---- */

static void test_syslog_header(void **state)
{
    (void)state;
    json_t *rec = load(DECISION);
    struct gw_buf b = {0};
    assert_int_equal(audit_syslog_format(&b, &PARAMS, rec, "{\"x\":1}", 7), 0);
    gw_buf_append(&b, "", 1);
    /* deny: severity 4 (warning); facility 13 (log audit): 13 * 8 + 4 = 108. */
    const char *want = "<108>1 2026-12-04T17:00:00.123456Z gw-1 toolgate 4242 decision "
                       "[toolgate@32473 kind=\"decision\" seq=\"42\" instance=\"gw-1\" "
                       "request_id=\"0190-req\" decision=\"deny\" layer=\"policy\" "
                       "reason_code=\"policy.forbidden\" method=\"tools/call\" "
                       "tool=\"delete_patient\" subject=\"alice\" tenant=\"clinic-7\" "
                       "client_id=\"agent-7\" backend=\"ehr\" "
                       "trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"] \xEF\xBB\xBF{\"x\":1}";
    assert_string_equal(b.data, want);
    gw_buf_free(&b);

    /* allow: 6; error: 3; records without a decision (start, checkpoint): 6. */
    json_object_set_new(rec, "decision", json_string("allow"));
    assert_int_equal(audit_syslog_format(&b, &PARAMS, rec, NULL, 0), 0);
    assert_memory_equal(b.data, "<110>1 ", 7);
    gw_buf_reset(&b);
    json_object_set_new(rec, "decision", json_string("error"));
    struct audit_syslog_params local7 = PARAMS;
    local7.facility = 23;
    assert_int_equal(audit_syslog_format(&b, &local7, rec, NULL, 0), 0);
    assert_memory_equal(b.data, "<187>1 ", 7);
    gw_buf_reset(&b);
    json_t *cp = load("{\"kind\":\"checkpoint\",\"seq\":7}");
    assert_int_equal(audit_syslog_format(&b, &PARAMS, cp, NULL, 0), 0);
    gw_buf_append(&b, "", 1);
    /* No time: the NILVALUE; no payload: no MSG at all. */
    assert_string_equal(b.data, "<110>1 - gw-1 toolgate 4242 checkpoint "
                                "[toolgate@32473 kind=\"checkpoint\" seq=\"7\"]");
    json_decref(cp);
    gw_buf_free(&b);
    json_decref(rec);
}

static void test_syslog_fields_and_escaping(void **state)
{
    (void)state;
    char out[64];
    audit_syslog_header_field(out, sizeof out, "host name\x01\xC3\xA9", 255);
    assert_string_equal(out, "host_name___"); /* SP, a control and both bytes of é */
    audit_syslog_header_field(out, sizeof out, NULL, 48);
    assert_string_equal(out, "-");
    audit_syslog_header_field(out, sizeof out, "", 48);
    assert_string_equal(out, "-");
    audit_syslog_header_field(out, sizeof out, "abcdefghij", 4);
    assert_string_equal(out, "abcd");

    struct gw_buf b = {0};
    const char *v = "a\"b\\c]d=e f";
    assert_int_equal(audit_syslog_param_escape(&b, v, strlen(v), 256), 0);
    gw_buf_append(&b, "", 1);
    assert_string_equal(b.data, "a\\\"b\\\\c\\]d=e f");
    gw_buf_reset(&b);
    /* Cut to the bound at a UTF-8 boundary: "é" is two bytes and is not split. */
    assert_int_equal(audit_syslog_param_escape(&b, "ab\xC3\xA9", 4, 3), 0);
    assert_int_equal(b.len, 2);
    gw_buf_free(&b);

    /* A hostile tool name in the structured data cannot close the element. */
    json_t *rec = load("{\"kind\":\"decision\",\"tool\":\"x\\\"] [evil@1 a=\\\"b\"}");
    assert_int_equal(audit_syslog_format(&b, &PARAMS, rec, NULL, 0), 0);
    gw_buf_append(&b, "", 1);
    assert_non_null(strstr(b.data, "tool=\"x\\\"\\] [evil@1 a=\\\"b\"]"));
    json_decref(rec);
    gw_buf_free(&b);
}

static void test_syslog_max_length(void **state)
{
    (void)state;
    json_t *rec = load(DECISION);
    struct audit_syslog_params p = PARAMS;
    p.max_length = 600;
    /* A payload of two-byte characters, far longer than the bound. */
    size_t n = 4000;
    char *payload = malloc(n);
    for (size_t i = 0; i < n; i += 2) {
        payload[i] = (char)0xC3;
        payload[i + 1] = (char)0xA9;
    }
    struct gw_buf b = {0};
    assert_int_equal(audit_syslog_format(&b, &p, rec, payload, n), 1);
    assert_true(b.len <= 600);
    assert_true(b.len >= 599); /* cut at the last whole character */
    const char *bom = memmem(b.data, b.len, "\xEF\xBB\xBF", 3);
    assert_non_null(bom);
    size_t body = b.len - (size_t)(bom + 3 - b.data);
    assert_int_equal(body % 2, 0);
    gw_buf_reset(&b);

    /* Structured data that leaves no room gives way to "-"; the bound holds. */
    json_t *big = load("{\"kind\":\"decision\"}");
    char *longv = malloc(300);
    memset(longv, 'x', 299);
    longv[299] = '\0';
    const char *keys[] = {"request_id", "layer", "reason_code", "method", "tool", "subject"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        json_object_set_new(big, keys[i], json_string(longv));
    p.max_length = AUDIT_SYSLOG_MIN_LENGTH;
    assert_int_equal(audit_syslog_format(&b, &p, big, "{}", 2), 0);
    assert_true(b.len <= AUDIT_SYSLOG_MIN_LENGTH);
    gw_buf_append(&b, "", 1);
    assert_non_null(strstr(b.data, " decision - \xEF\xBB\xBF{}"));
    /* Every value is bounded to AUDIT_SYSLOG_PARAM_MAX bytes. */
    gw_buf_reset(&b);
    p.max_length = 8192;
    assert_int_equal(audit_syslog_format(&b, &p, big, NULL, 0), 0);
    assert_true(b.len < 80 + 6 * (AUDIT_SYSLOG_PARAM_MAX + 20));
    free(longv);
    json_decref(big);
    free(payload);
    gw_buf_free(&b);
    json_decref(rec);
}

static void test_framing(void **state)
{
    (void)state;
    struct gw_buf b = {0};
    assert_int_equal(audit_syslog_frame(&b, "<110>1 - - - - - -", 18), 0);
    assert_int_equal(audit_syslog_frame(&b, "second", 6), 0);
    gw_buf_append(&b, "", 1);
    assert_string_equal(b.data, "18 <110>1 - - - - - -6 second");
    const char *msg;
    size_t len;
    long used = audit_syslog_unframe(b.data, b.len - 1, 1024, &msg, &len);
    assert_int_equal(used, 21);
    assert_int_equal(len, 18);
    assert_memory_equal(msg, "<110>1", 6);
    used = audit_syslog_unframe(b.data + 21, b.len - 22, 1024, &msg, &len);
    assert_int_equal(used, 8);
    assert_memory_equal(msg, "second", 6);
    /* Incomplete: more bytes needed. */
    assert_int_equal(audit_syslog_unframe("18 <110>", 8, 1024, &msg, &len), 0);
    assert_int_equal(audit_syslog_unframe("18", 2, 1024, &msg, &len), 0);
    /* Not a frame: a leading zero, no digits, no space, too long. */
    assert_int_equal(audit_syslog_unframe("018 x", 5, 1024, &msg, &len), -1);
    assert_int_equal(audit_syslog_unframe(" 1 x", 4, 1024, &msg, &len), -1);
    assert_int_equal(audit_syslog_unframe("12x", 3, 1024, &msg, &len), -1);
    assert_int_equal(audit_syslog_unframe("99999 x", 7, 1024, &msg, &len), -1);
    gw_buf_free(&b);
}

/* ---- OCSF ---- */

static const char *at(const json_t *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *v = o;
    for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, "."))
        v = json_object_get(v, tok);
    return json_string_value(v);
}

static json_int_t at_int(const json_t *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *v = o;
    for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, "."))
        v = json_object_get(v, tok);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static void test_ocsf_mapping(void **state)
{
    (void)state;
    json_t *rec = load(DECISION);
    json_t *ev = audit_ocsf_event(rec);
    assert_non_null(ev);
    assert_int_equal(at_int(ev, "class_uid"), 6003);
    assert_int_equal(at_int(ev, "category_uid"), 6);
    assert_int_equal(at_int(ev, "activity_id"), 99);
    assert_int_equal(at_int(ev, "type_uid"), 600399);
    assert_string_equal(at(ev, "activity_name"), "tools/call");
    assert_int_equal(at_int(ev, "time"), 1796403600123);
    assert_int_equal(at_int(ev, "status_id"), 2);
    assert_int_equal(at_int(ev, "action_id"), 2);
    assert_int_equal(at_int(ev, "disposition_id"), 2);
    assert_int_equal(at_int(ev, "severity_id"), 3);
    assert_string_equal(at(ev, "status_code"), "policy.forbidden");
    assert_string_equal(at(ev, "status_detail"), "denied by the policy layer");
    assert_string_equal(at(ev, "actor.user.uid"), "alice");
    assert_string_equal(at(ev, "actor.user.org.uid"), "clinic-7");
    assert_string_equal(at(ev, "actor.app_name"), "agent-7");
    assert_string_equal(at(ev, "actor.idp.name"), "https://idp.example/");
    assert_string_equal(at(ev, "actor.session.uid"), "cccc");
    json_t *groups =
        json_object_get(json_object_get(json_object_get(ev, "actor"), "user"), "groups");
    assert_int_equal(json_array_size(groups), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(groups, 1), "name")),
                        "nurse");
    json_t *auth =
        json_array_get(json_object_get(json_object_get(ev, "actor"), "authorizations"), 0);
    assert_string_equal(at(auth, "decision"), "denied");
    assert_string_equal(at(auth, "policy.uid"), "no-delete");
    assert_string_equal(at(ev, "api.operation"), "tools/call");
    assert_string_equal(at(ev, "api.request.uid"), "0190-req");
    assert_string_equal(at(ev, "api.service.name"), "ehr");
    assert_string_equal(at(ev, "api.version"), "2025-06-18");
    assert_string_equal(at(ev, "api.response.error"), "policy.forbidden");
    json_t *res = json_array_get(json_object_get(ev, "resources"), 0);
    assert_string_equal(at(res, "name"), "delete_patient");
    assert_string_equal(at(res, "type"), "tool");
    assert_true(json_is_object(json_object_get(ev, "src_endpoint")));
    assert_string_equal(at(ev, "dst_endpoint.name"), "ehr");
    assert_string_equal(at(ev, "metadata.version"), AUDIT_OCSF_VERSION);
    assert_string_equal(at(ev, "metadata.uid"),
                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_string_equal(at(ev, "metadata.correlation_uid"), "0190-req");
    assert_string_equal(at(ev, "metadata.tenant_uid"), "clinic-7");
    assert_int_equal(at_int(ev, "metadata.sequence"), 42);
    assert_string_equal(at(ev, "metadata.product.name"), "toolgate");
    assert_string_equal(at(ev, "unmapped.trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(at(ev, "unmapped.span_id"), "00f067aa0ba902b7");
    assert_int_equal(at_int(ev, "unmapped.limits.cost_estimated"), 1000);
    /* PII finding types once each, never a value (the record holds none to copy). */
    json_t *types = json_object_get(json_object_get(ev, "unmapped"), "pii_types");
    assert_int_equal(json_array_size(types), 2);
    assert_string_equal(json_string_value(json_array_get(types, 0)), "email");
    assert_string_equal(json_string_value(json_array_get(types, 1)), "ssn");
    /* The delegation path: user -> client -> gateway -> backend (with the identity mode). */
    json_t *path = json_object_get(json_object_get(ev, "unmapped"), "delegation");
    assert_int_equal(json_array_size(path), 4);
    assert_string_equal(at(json_array_get(path, 0), "uid"), "alice");
    assert_string_equal(at(json_array_get(path, 1), "role"), "client");
    assert_string_equal(at(json_array_get(path, 2), "uid"), "gw-1");
    assert_string_equal(at(json_array_get(path, 3), "identity"), "jwt");
    json_decref(ev);

    /* Allowed read: activity 2 (Read), success, allowed, informational; no status_code. */
    json_object_set_new(rec, "decision", json_string("allow"));
    json_object_set_new(rec, "method", json_string("resources/read"));
    json_object_del(rec, "deny_status");
    ev = audit_ocsf_event(rec);
    assert_int_equal(at_int(ev, "activity_id"), 2);
    assert_int_equal(at_int(ev, "type_uid"), 600302);
    assert_int_equal(at_int(ev, "status_id"), 1);
    assert_int_equal(at_int(ev, "action_id"), 1);
    assert_int_equal(at_int(ev, "severity_id"), 1);
    assert_null(json_object_get(ev, "status_code"));
    assert_null(json_object_get(json_object_get(ev, "api"), "response"));
    assert_string_equal(at(json_array_get(json_object_get(ev, "resources"), 0), "type"),
                        "resource");
    json_decref(ev);

    /* Only the records of a call are events; an anonymous one has no user and no delegation
     * uid. */
    static const char *const none[] = {"checkpoint", "start", "rotation", "retention", "other"};
    for (size_t i = 0; i < sizeof none / sizeof *none; i++) {
        char text[96];
        snprintf(text, sizeof text, "{\"kind\":\"%s\",\"seq\":3}", none[i]);
        json_t *cp = load(text);
        assert_null(audit_ocsf_event(cp));
        json_decref(cp);
    }
    json_t *nokind = load("{\"decision\":\"allow\",\"seq\":3}");
    assert_null(audit_ocsf_event(nokind));
    json_decref(nokind);
    json_t *anon = load("{\"kind\":\"decision\",\"decision\":\"error\",\"layer\":\"identity\"}");
    ev = audit_ocsf_event(anon);
    assert_non_null(ev);
    assert_int_equal(at_int(ev, "severity_id"), 4);
    assert_string_equal(at(ev, "status_detail"), "failed by the identity layer");
    assert_null(json_object_get(json_object_get(json_object_get(ev, "actor"), "user"), "uid"));
    json_decref(ev);
    json_decref(anon);
    json_decref(rec);
}

/* A completion: the call's outcome, correlated with its decision by the request id. */
static void test_ocsf_completion(void **state)
{
    (void)state;
    json_t *rec = load(DECISION);
    json_object_set_new(rec, "kind", json_string("completion"));
    json_object_set_new(rec, "decision", json_string("allow"));
    json_object_del(rec, "deny_status");
    json_object_del(rec, "layer");
    json_object_del(rec, "reason_code");
    json_object_set_new(rec, "upstream_status", json_integer(200));
    json_object_set_new(rec, "response_status", json_integer(200));
    json_object_set_new(rec, "response_bytes", json_integer(1452));
    json_object_set_new(rec, "redactions_total", json_integer(3));
    json_object_set_new(rec, "result_sha256", json_string("dddd"));
    json_object_set_new(rec, "latency_ns",
                        json_pack("{s:I, s:I}", "total", (json_int_t)9547903, "upstream_first_byte",
                                  (json_int_t)5123763));
    json_object_set_new(rec, "pii",
                        json_pack("[{s:s, s:i, s:s, s:s}]", "action", "redact", "count", 1, "path",
                                  "/result/content/0/text", "type", "mrn"));
    json_t *ev = audit_ocsf_event(rec);
    assert_non_null(ev);
    assert_int_equal(at_int(ev, "class_uid"), 6003);
    assert_string_equal(at(ev, "metadata.event_code"), "completion");
    assert_string_equal(at(ev, "metadata.correlation_uid"), "0190-req");
    assert_string_equal(at(ev, "api.request.uid"), "0190-req");
    assert_int_equal(at_int(ev, "status_id"), 1);
    assert_int_equal(at_int(ev, "action_id"), 1);
    assert_int_equal(at_int(ev, "severity_id"), 1);
    assert_null(json_object_get(ev, "status_code"));
    assert_int_equal(at_int(ev, "api.response.code"), 200);
    assert_null(json_object_get(json_object_get(json_object_get(ev, "api"), "response"), "error"));
    /* 9.5 ms, ending at the record's time. */
    assert_int_equal(at_int(ev, "duration"), 9);
    assert_int_equal(at_int(ev, "end_time"), 1796403600123);
    assert_int_equal(at_int(ev, "start_time"), 1796403600114);
    assert_int_equal(at_int(ev, "unmapped.response_bytes"), 1452);
    assert_int_equal(at_int(ev, "unmapped.upstream_status"), 200);
    assert_int_equal(at_int(ev, "unmapped.latency_ns.upstream_first_byte"), 5123763);
    assert_string_equal(at(ev, "unmapped.result_sha256"), "dddd");
    /* What the result held, by type only. */
    json_t *types = json_object_get(json_object_get(ev, "unmapped"), "pii_types");
    assert_int_equal(json_array_size(types), 1);
    assert_string_equal(json_string_value(json_array_get(types, 0)), "mrn");
    json_decref(ev);

    /* Allowed, but the backend failed: still Allowed, yet a Failure (Low), saying why. */
    json_object_set_new(rec, "upstream_status", json_integer(502));
    json_object_set_new(rec, "response_status", json_integer(502));
    ev = audit_ocsf_event(rec);
    assert_int_equal(at_int(ev, "status_id"), 2);
    assert_int_equal(at_int(ev, "action_id"), 1);
    assert_int_equal(at_int(ev, "disposition_id"), 1);
    assert_int_equal(at_int(ev, "severity_id"), 2);
    assert_string_equal(at(ev, "status_detail"), "the backend answered HTTP 502");
    assert_int_equal(at_int(ev, "api.response.code"), 502);
    json_decref(ev);
    json_object_del(rec, "upstream_status");
    json_object_set_new(rec, "upstream_error", json_string("timeout"));
    json_object_set_new(rec, "response_status", json_integer(504));
    ev = audit_ocsf_event(rec);
    assert_int_equal(at_int(ev, "status_id"), 2);
    assert_string_equal(at(ev, "status_code"), "timeout");
    assert_string_equal(at(ev, "status_detail"), "the backend call failed (timeout)");
    assert_string_equal(at(ev, "api.response.error"), "timeout");
    json_decref(ev);
    /* The backend was fine, but the client got an error (a response blocked, say). */
    json_object_del(rec, "upstream_error");
    json_object_set_new(rec, "upstream_status", json_integer(200));
    json_object_set_new(rec, "response_status", json_integer(403));
    ev = audit_ocsf_event(rec);
    assert_int_equal(at_int(ev, "status_id"), 2);
    assert_string_equal(at(ev, "status_detail"), "the client was answered HTTP 403");
    json_decref(ev);

    /* A denied call's completion says the denial, as its decision does. */
    json_object_set_new(rec, "decision", json_string("deny"));
    json_object_set_new(rec, "layer", json_string("limits"));
    json_object_set_new(rec, "reason_code", json_string("limits.rate"));
    json_object_set_new(rec, "deny_status", json_integer(429));
    json_object_del(rec, "upstream_status");
    json_object_set_new(rec, "response_status", json_integer(429));
    ev = audit_ocsf_event(rec);
    assert_int_equal(at_int(ev, "status_id"), 2);
    assert_int_equal(at_int(ev, "action_id"), 2);
    assert_int_equal(at_int(ev, "severity_id"), 3);
    assert_string_equal(at(ev, "status_code"), "limits.rate");
    assert_string_equal(at(ev, "status_detail"), "denied by the limits layer");
    assert_int_equal(at_int(ev, "api.response.code"), 429);
    assert_string_equal(at(ev, "api.response.error"), "limits.rate");
    json_decref(ev);
    /* A hostile latency is not a duration. */
    json_object_set_new(rec, "latency_ns", json_pack("{s:s}", "total", "soon"));
    ev = audit_ocsf_event(rec);
    assert_null(json_object_get(ev, "duration"));
    json_decref(ev);
    json_decref(rec);
}

/* ---- configuration ---- */

static int parse_yaml(const char *yaml, struct audit_config **out, struct cfg_error *err)
{
    struct cfg_doc doc = {0};
    if (cfg_load_string(yaml, strlen(yaml), "test.yaml", &doc, err) != 0)
        return -2;
    int rc = audit_config_parse(&doc, cfg_map_get(doc.root, "audit"), out, err);
    cfg_doc_free(&doc);
    return rc;
}

static void test_config(void **state)
{
    (void)state;
    struct audit_config *ac = NULL;
    struct cfg_error err = {{0}};
    const char *ok =
        "audit:\n"
        "  sinks:\n"
        "    - {name: siem, type: syslog, address: \"10.0.0.5:6514\", transport: tls,\n"
        "       facility: local4, tls: {ca: ca.pem, cert: c.pem, key: c.key},\n"
        "       batch: {max_records: 10, max_wait: 200ms}, retry: {initial: 1s, "
        "max: 1m},\n"
        "       timeout: 3s, queue: 500}\n"
        "    - {name: udp, type: syslog, address: \"[::1]:514\", transport: udp}\n"
        "    - {name: splunk, type: http, format: hec, url: "
        "\"https://splunk:8088/services/collector/event\",\n"
        "       token_file: hec.token, payload: jsonl, sourcetype: tg}\n"
        "    - {name: es, type: http, format: bulk, url: \"https://es:9200/_bulk\", "
        "index: toolgate}\n";
    assert_int_equal(parse_yaml(ok, &ac, &err), 0);
    assert_int_equal(ac->n_sinks, 4);
    struct audit_sink_config *s = ac->sinks;
    assert_string_equal(s[0].host, "10.0.0.5");
    assert_string_equal(s[0].port, "6514");
    assert_int_equal(s[0].transport, AUDIT_SINK_TLS);
    assert_int_equal(s[0].facility, 20);
    assert_int_equal(s[0].batch_max, 10);
    assert_int_equal(s[0].batch_wait_ms, 200);
    assert_int_equal(s[0].retry_initial_ms, 1000);
    assert_int_equal(s[0].retry_max_ms, 60000);
    assert_int_equal(s[0].timeout_ms, 3000);
    assert_int_equal(s[0].queue, 500);
    assert_int_equal(s[0].max_length, 8192);
    assert_int_equal(s[0].payload, AUDIT_SINK_OCSF);
    assert_string_equal(s[1].host, "::1");
    assert_int_equal(s[1].max_length, 8192);
    assert_int_equal(s[1].facility, 13);
    assert_int_equal(s[1].queue, 10000);
    assert_int_equal(s[1].batch_max, 100);
    assert_int_equal(s[2].format, AUDIT_SINK_HEC);
    assert_int_equal(s[2].payload, AUDIT_SINK_JSONL);
    assert_string_equal(s[3].index, "toolgate");
    audit_config_free(ac);

    static const struct {
        const char *sink, *says;
    } bad[] = {
        {"{name: a, type: syslog, address: \"h:1\", colour: red}", "colour"},
        {"{name: a, type: kafka}", "\"kafka\" is not one of syslog, http"},
        {"{type: syslog, address: \"h:1\"}", "name"},
        {"{name: A b, type: syslog, address: \"h:1\"}", "lower-case"},
        {"{name: a, address: \"h:1\"}", "required: syslog or http"},
        {"{name: a, type: syslog}", "address"},
        {"{name: a, type: syslog, address: \"h\"}", "not host:port"},
        {"{name: a, type: syslog, address: \"h:99999\"}", "not host:port"},
        {"{name: a, type: syslog, address: \"h h:1\"}", "not host:port"},
        {"{name: a, type: syslog, address: \"h:1\", url: \"http://x/\"}", "applies to http sinks"},
        {"{name: a, type: syslog, address: \"h:1\", facility: 24}", "not a facility"},
        {"{name: a, type: syslog, address: \"h:1\", facility: mailx}", "not a facility"},
        {"{name: a, type: syslog, address: \"h:1\", transport: sctp}", "tcp, tls, udp"},
        {"{name: a, type: syslog, address: \"h:1\", tls: {ca: x}}", "transport: tls only"},
        {"{name: a, type: syslog, address: \"h:1\", transport: tls, tls: {cert: c}}",
         "both cert and key"},
        {"{name: a, type: syslog, address: \"h:1\", sd_id: \"toolgate\"}", "enterprise number"},
        {"{name: a, type: syslog, address: \"h:1\", app_name: \"a b\"}", "letters, digits"},
        {"{name: a, type: syslog, address: \"h:1\", transport: udp, max_length: 70000}",
         "max_length"},
        {"{name: a, type: syslog, address: \"h:1\", max_length: 100}", "max_length"},
        {"{name: a, type: syslog, address: \"h:1\", queue: 20, batch: {max_records: 50}}",
         "exceeds queue"},
        {"{name: a, type: syslog, address: \"h:1\", retry: {initial: 1ms}}", "initial"},
        {"{name: a, type: syslog, address: \"h:1\", retry: {initial: 2s, max: 1s}}", "max must"},
        {"{name: a, type: syslog, address: \"h:1\", timeout: 10m}", "timeout"},
        {"{name: a, type: syslog, address: \"h:1\", batch: {max_wait: 2m}}", "max_wait"},
        {"{name: a, type: http, url: \"http://x/\"}", "required: hec, bulk, json or ndjson"},
        {"{name: a, type: http, format: hec, url: \"http://x/\"}", "token in a file"},
        {"{name: a, type: http, format: bulk, url: \"http://x/\"}", "index"},
        {"{name: a, type: http, format: bulk, url: \"http://x/\", index: \"Bad Index\"}",
         "lower-case"},
        {"{name: a, type: http, format: json, url: \"ftp://x/\"}", "http:// or https://"},
        {"{name: a, type: http, format: json, url: \"https://u:p@x/\"}", "no credentials"},
        {"{name: a, type: http, format: json, url: \"http://x/\", facility: 3}",
         "applies to syslog sinks"},
        {"{name: a, type: http, format: json, url: \"http://x/\", index: i}", "hec or bulk"},
        {"{name: a, type: http, format: json, url: \"http://x/\", sourcetype: s}",
         "format: hec only"},
        {"{name: a, type: http, format: json, url: \"http://x/\", tls: {server_name: x}}",
         "URL's host"},
        {"{name: a, type: http, format: json, url: \"http://x/\", payload: xml}", "ocsf, jsonl"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char yaml[512];
        snprintf(yaml, sizeof yaml, "audit:\n  sinks:\n    - %s\n", bad[i].sink);
        memset(&err, 0, sizeof err);
        ac = NULL;
        int rc = parse_yaml(yaml, &ac, &err);
        if (rc != -1 || !strstr(err.msg, bad[i].says))
            fail_msg("case %zu (%s): rc %d, error \"%s\", want \"%s\"", i, bad[i].sink, rc, err.msg,
                     bad[i].says);
        assert_null(ac);
    }
    /* Two sinks of one name; more than the bound; not a list. */
    assert_int_equal(parse_yaml("audit:\n  sinks:\n"
                                "    - {name: a, type: syslog, address: \"h:1\"}\n"
                                "    - {name: a, type: syslog, address: \"h:2\"}\n",
                                &ac, &err),
                     -1);
    assert_non_null(strstr(err.msg, "a second sink named \"a\""));
    char many[2048] = "audit:\n  sinks:\n";
    for (int i = 0; i <= AUDIT_SINKS_MAX; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many),
                 "    - {name: s%d, type: syslog, address: \"h:1\"}\n", i);
    assert_int_equal(parse_yaml(many, &ac, &err), -1);
    assert_non_null(strstr(err.msg, "at most 8 sinks"));
    assert_int_equal(parse_yaml("audit:\n  sinks: {name: a}\n", &ac, &err), -1);
}

/* ---- the bulk answer ---- */

static void test_bulk_result(void **state)
{
    (void)state;
    int st[3];
    const char *ok = "{\"took\":3,\"errors\":true,\"items\":[{\"create\":{\"status\":201}},"
                     "{\"create\":{\"status\":409}},{\"index\":{\"status\":429}}]}";
    assert_int_equal(audit_sink_bulk_result(ok, strlen(ok), 3, st), 0);
    assert_int_equal(st[0], 201);
    assert_int_equal(st[1], 409);
    assert_int_equal(st[2], 429);
    assert_int_equal(audit_sink_bulk_result(ok, strlen(ok), 2, st), -1); /* count differs */
    static const char *const bad[] = {
        "",
        "[]",
        "{\"items\":{}}",
        "{\"items\":[1,2,3]}",
        "{\"items\":[{\"create\":{\"status\":\"201\"}},{},{}]}",
        "{\"items\":[{\"create\":{\"status\":20100}},{\"a\":{}},{\"a\":{}}]}",
        "{\"items\":[{\"a\":{\"status\":201},\"b\":{\"status\":201}},{},{}]}",
        "{\"items\":[], \"items\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(audit_sink_bulk_result(bad[i], strlen(bad[i]), 3, st), -1);
    assert_int_equal(audit_sink_bulk_result(NULL, 0, 0, st), -1);
}

/* ---- a sink against a loopback socket ---- */

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static struct audit_sink_config syslog_sink(const char *name, int port)
{
    char p[8];
    snprintf(p, sizeof p, "%d", port);
    struct audit_sink_config c = {0};
    c.name = strdup(name);
    c.kind = AUDIT_SINK_SYSLOG;
    c.payload = AUDIT_SINK_JSONL;
    c.transport = AUDIT_SINK_TCP;
    c.host = strdup("127.0.0.1");
    c.port = strdup(p);
    c.facility = 13;
    c.max_length = 8192;
    c.queue = 16;
    c.batch_max = 4;
    c.batch_wait_ms = 5;
    c.retry_initial_ms = 20;
    c.retry_max_ms = 50;
    c.timeout_ms = 300;
    return c;
}

static void test_sink_delivers_frames(void **state)
{
    (void)state;
    int port, lfd = listen_loopback(&port);
    struct audit_sink_config c = syslog_sink("t", port);
    assert_int_equal(audit_sinks_start(&c, 1, "gw-unit"), 0);
    assert_true(audit_sinks_active());
    char line[128];
    for (int i = 1; i <= 10; i++) {
        int n =
            snprintf(line, sizeof line,
                     "{\"kind\":\"decision\",\"seq\":%d,\"time_ns\":\"1796403600000000000\"}", i);
        audit_sinks_offer(line, (size_t)n, 1);
    }
    int cfd = accept(lfd, NULL, NULL);
    assert_true(cfd >= 0);
    char buf[16384];
    size_t have = 0;
    int frames = 0;
    uint64_t until = gw_mono_ns() + 5000000000ull;
    while (frames < 10 && gw_mono_ns() < until) {
        struct pollfd p = {.fd = cfd, .events = POLLIN};
        if (poll(&p, 1, 100) != 1)
            continue;
        ssize_t r = read(cfd, buf + have, sizeof buf - have);
        assert_true(r > 0);
        have += (size_t)r;
        const char *msg;
        size_t len;
        long used;
        while ((used = audit_syslog_unframe(buf, have, 65536, &msg, &len)) > 0) {
            frames++;
            char want[32];
            snprintf(want, sizeof want, " seq=\"%d\"", frames);
            assert_non_null(memmem(msg, len, want, strlen(want)));
            memmove(buf, buf + used, have - (size_t)used);
            have -= (size_t)used;
        }
        assert_true(used == 0);
    }
    assert_int_equal(frames, 10);
    /* The counter moves once the write returned: the frames can be read a moment before. */
    struct audit_sink_stats st;
    until = gw_mono_ns() + 2000000000ull;
    do
        assert_int_equal(audit_sinks_stats(&st, 1), 1);
    while (st.sent < 10 && gw_mono_ns() < until && usleep(1000) == 0);
    assert_int_equal(st.sent, 10);
    assert_int_equal(st.dropped, 0);
    assert_string_equal(st.name, "t");
    audit_sinks_stop();
    assert_false(audit_sinks_active());
    close(cfd);
    close(lfd);
    free(c.name);
    free(c.host);
    free(c.port);
}

static void test_sink_queue_bound(void **state)
{
    (void)state;
    /* A port nobody listens on: every attempt fails, the queue fills, the rest is dropped. */
    int port, lfd = listen_loopback(&port);
    close(lfd);
    struct audit_sink_config c = syslog_sink("down", port);
    /* A long backoff: the stop below must not wait for it. */
    c.retry_initial_ms = c.retry_max_ms = 10000;
    assert_int_equal(audit_sinks_start(&c, 1, "gw-unit"), 0);
    for (int i = 0; i < 100; i++)
        audit_sinks_offer("{\"kind\":\"decision\"}", 19, 1);
    /* OCSF sinks skip non-decision records; this one takes jsonl, so every record counts. */
    audit_sinks_offer("{\"kind\":\"checkpoint\"}", 21, 0);
    struct audit_sink_stats st;
    audit_sinks_stats(&st, 1);
    assert_true(st.queued <= 16);
    assert_true(st.dropped >= 101 - 16 - 4);
    assert_int_equal(st.sent, 0);
    /* Let the first attempt fail, so the thread is in its backoff when the stop comes. */
    uint64_t until = gw_mono_ns() + 2000000000ull;
    while (audit_sinks_stats(&st, 1) && st.retries == 0 && gw_mono_ns() < until)
        usleep(1000);
    assert_int_equal(st.retries, 1);
    uint64_t t0 = gw_mono_ns();
    audit_sinks_stop();
    /* Bounded: the timeout plus one batch wait, and a little scheduling. */
    assert_true(gw_mono_ns() - t0 < 2000000000ull);
    free(c.name);
    free(c.host);
    free(c.port);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syslog_header),
        cmocka_unit_test(test_syslog_fields_and_escaping),
        cmocka_unit_test(test_syslog_max_length),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_ocsf_mapping),
        cmocka_unit_test(test_ocsf_completion),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_bulk_result),
        cmocka_unit_test(test_sink_delivers_frames),
        cmocka_unit_test(test_sink_queue_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
