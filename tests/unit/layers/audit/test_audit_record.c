/*
 * The records of a call, shape by shape: every branch of the decision and completion records
 * (arguments in each mode, batches, denials, protocol errors, findings, limits, approval,
 * upstream failures, escapes and UTF-8), each compared byte for byte with its canonical text
 * in record_shapes.txt, and each checked to be canonical JSON (RFC 8785) with no key twice.
 *
 * TOOLGATE_RECORD_SHAPES_WRITE=PATH writes the texts the code gives instead (to review a
 * change of the record format with `diff`, never to make a failing test pass unread).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "layers/audit/audit_canon.h"
#include "layers/audit/audit_fixtures.h"
#include "layers/audit/audit_item.h"
#include "layers/audit/audit_record.h"
#include "layers/layer.h"

#define SHAPES_FILE "tests/unit/layers/audit/record_shapes.txt"

static struct gw_request *base_request(json_t **msg_out)
{
    static const char *const roles[] = {"doctor", "on-call", NULL};
    json_t *msg =
        json_pack("{s:s, s:i, s:s, s:{s:s, s:{s:s, s:s, s:i, s:[b, n, f, {s:s}]}}}", "jsonrpc",
                  "2.0", "id", 7, "method", "tools/call", "params", "name", "ehr.get_patient",
                  "arguments", "patient_id", "P0012345", "note", "SSN 123-45-6789 call me", "limit",
                  5, "flags", 1, 2.5, "z", "[REDACTED:ssn]");
    struct gw_request *req = fx_audit_request(msg, roles);
    snprintf(req->id, sizeof req->id, "%s", "01890a5d-ac96-774b-bcce-b302099a8057");
    req->inject_mode = "jwt";
    req->timing.start_ns = 1000;
    req->timing.stage_ns[0] = 1500;
    req->timing.stage_ns[2] = 250;
    *msg_out = msg;
    return req;
}

static void add_finding(struct gw_request *req, const char *type, const char *path,
                        enum gw_pii_action action, enum gw_direction dir, unsigned count)
{
    struct gw_finding *fd = gw_findings_push(&req->findings);
    snprintf(fd->type, sizeof fd->type, "%s", type);
    snprintf(fd->path, sizeof fd->path, "%s", path);
    fd->count = count;
    fd->action = action;
    fd->direction = dir;
}

static void shape_plain(struct gw_request *req, struct audit_config *ac)
{
    (void)req;
    ac->arguments = AUDIT_ARGS_REDACTED;
}

static void shape_hash(struct gw_request *req, struct audit_config *ac)
{
    ac->arguments = AUDIT_ARGS_HASH;
    add_finding(req, "ssn", "/params/arguments/note", GW_PII_LOG, GW_DIR_REQUEST, 1);
    add_finding(req, "mrn", "/result/content/0/text", GW_PII_REDACT, GW_DIR_RESPONSE, 3);
    req->findings.redactions = 3;
}

static void shape_none_unauthenticated(struct gw_request *req, struct audit_config *ac)
{
    ac->arguments = AUDIT_ARGS_NONE;
    gw_identity_clear(&req->identity);
    free(req->session_id);
    req->session_id = NULL;
    req->route = NULL;
    req->backend = NULL;
    req->inject_mode = NULL;
}

static void shape_too_large(struct gw_request *req, struct audit_config *ac)
{
    ac->arguments = AUDIT_ARGS_REDACTED;
    json_t *big = json_array();
    for (int i = 0; i < 20000; i++)
        json_array_append_new(big, json_integer(i));
    json_object_set_new(json_object_get(req->rpc.msgs[0].json, "params"), "arguments", big);
    req->rpc.msgs[0].arguments = big;
}

static void shape_policy_deny(struct gw_request *req, struct audit_config *ac)
{
    ac->arguments = AUDIT_ARGS_REDACTED;
    req->deciding_stage = GW_STAGE_POLICY;
    gw_decision_deny(&req->decision[GW_STAGE_POLICY], 403, -32003, "policy.forbid", "no");
    snprintf(req->decision[GW_STAGE_POLICY].rule_id, 128, "r1,,r2,");
}

static void shape_error_no_code(struct gw_request *req, struct audit_config *ac)
{
    ac->arguments = AUDIT_ARGS_NONE;
    req->deciding_stage = GW_STAGE_POLICY;
    gw_decision_deny(&req->decision[GW_STAGE_POLICY], 500, 0, "internal.layer_error", "x");
}

static void shape_protocol_error(struct gw_request *req, struct audit_config *ac)
{
    ac->arguments = AUDIT_ARGS_REDACTED;
    req->protocol_error = 1;
    gw_decision_deny(&req->protocol_decision, 400, -32600, "protocol.invalid_request", "bad");
    for (size_t i = 0; i < req->rpc.n; i++)
        json_decref(req->rpc.msgs[i].json);
    req->rpc.n = 0;
}

static void shape_permits(struct gw_request *req, struct audit_config *ac)
{
    ac->arguments = AUDIT_ARGS_REDACTED;
    snprintf(req->decision[GW_STAGE_POLICY].rule_id, 128, "permit-doctors");
    snprintf(req->decision[0].rule_id, 128, "a,b");
    snprintf(req->trace_id, sizeof req->trace_id, "%s", "4bf92f3577b34da6a3ce929d0e0e4736");
    snprintf(req->span_id, sizeof req->span_id, "%s", "00f067aa0ba902b7");
}

static void shape_target_finding(struct gw_request *req, struct audit_config *ac)
{
    ac->arguments = AUDIT_ARGS_REDACTED;
    req->rpc.msgs[0].method = "resources/read";
    req->rpc.msgs[0].target = "ehr://patients/123-45-6789";
    req->rpc.msgs[0].arguments = NULL;
    add_finding(req, "ssn", "/params/uri", GW_PII_BLOCK, GW_DIR_REQUEST, 1);
    req->findings.dropped = 2;
}

static void shape_batch(struct gw_request *req, struct audit_config *ac)
{
    ac->arguments = AUDIT_ARGS_REDACTED;
    req->rpc.n = 2;
    req->rpc.msgs[1].json = json_pack("{s:s, s:s}", "jsonrpc", "2.0", "method", "ping");
    req->rpc.msgs[1].kind = MCP_NOTIFICATION;
    req->rpc.msgs[1].method = "notifications/progress";
}

static void shape_limits_approval(struct gw_request *req, struct audit_config *ac)
{
    ac->arguments = AUDIT_ARGS_HASH;
    struct gw_limits_state *l = &req->limits;
    l->governed = 1;
    l->cost_estimated = 1200;
    l->cost_reserved = 1200;
    l->settled = 1;
    l->cost_settled = 900;
    l->cost_reported = 1;
    l->refunded = 0;
    snprintf(l->budget_name, sizeof l->budget_name, "%s", "per-user-day");
    l->budget_remaining = -1;
    snprintf(l->rate_name, sizeof l->rate_name, "%s", "burst");
    l->rate_remaining = 9007199254740993ll; /* beyond 2^53: printed as a double */
    l->retry_after_ms = 1500;
    l->loop_flags = 1u | 4u | 32u;
    l->loop_action = 1;
    snprintf(l->store, sizeof l->store, "%s", "redis");
    l->store_fallback = 1;
    struct gw_approval_record *a = &req->approval;
    a->asked = 1;
    snprintf(a->by, sizeof a->by, "%s", "role:attending");
    snprintf(a->rule_id, sizeof a->rule_id, "%s", "needs-approval");
    snprintf(a->via, sizeof a->via, "%s", "admin");
    snprintf(a->approver, sizeof a->approver, "%s", "user:bob@https://idp.example.com/");
    a->decided_at_ms = 1764950400123ll;
    snprintf(a->reference, sizeof a->reference, "%s", "APR-7");
    snprintf(a->digest, sizeof a->digest, "%s", "sha256:0123456789ab");
}

static void shape_limits_plain(struct gw_request *req, struct audit_config *ac)
{
    ac->arguments = AUDIT_ARGS_NONE;
    req->limits.governed = 1;
    req->limits.cost_estimated = -5;
    req->approval.asked = 1;
    snprintf(req->approval.by, sizeof req->approval.by, "%s", "user");
    snprintf(req->approval.rule_id, sizeof req->approval.rule_id, "%s", "r");
}

static void shape_upstream(struct gw_request *req, struct audit_config *ac)
{
    ac->arguments = AUDIT_ARGS_REDACTED;
    req->upstream_status = 502;
    snprintf(req->upstream_error, sizeof req->upstream_error, "%s", "connect: refused \"x\"");
    req->response_status = 502;
    req->response_bytes = 18446744073709551615ull;
    req->timing.upstream_first_byte_ns = 4000;
    req->timing.end_ns = 9000;
    memset(req->timing.stage_ns, 0, sizeof req->timing.stage_ns);
}

static void shape_escapes(struct gw_request *req, struct audit_config *ac)
{
    ac->arguments = AUDIT_ARGS_REDACTED;
    free(req->identity.subject);
    req->identity.subject = strdup("dr. \"\xc3\xbc\" \\ \n\t\x01 \xf0\x9f\x98\x80 \xee\x80\x80");
    free(req->identity.tenant);
    req->identity.tenant = strdup("\x7f/</script>");
    req->rpc.msgs[0].target = "t\xc3\xa9st\x1f";
    json_t *args =
        json_pack("{s:s, s:s, s:i}", "\xf0\x9f\x98\x80", "x", "\xee\x80\x80", "y", "a\"b", 1);
    json_object_set_new(json_object_get(req->rpc.msgs[0].json, "params"), "arguments", args);
    req->rpc.msgs[0].arguments = args;
}

struct shape {
    const char *name;
    void (*apply)(struct gw_request *req, struct audit_config *ac);
    const char *result_hash;
};

static const struct shape shapes[] = {
    {"plain", shape_plain, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
    {"hash", shape_hash, NULL},
    {"none_unauthenticated", shape_none_unauthenticated, NULL},
    {"too_large", shape_too_large, NULL},
    {"policy_deny", shape_policy_deny, NULL},
    {"error_no_code", shape_error_no_code, NULL},
    {"protocol_error", shape_protocol_error, NULL},
    {"permits", shape_permits, NULL},
    {"target_finding", shape_target_finding, NULL},
    {"batch", shape_batch, NULL},
    {"limits_approval", shape_limits_approval, NULL},
    {"limits_plain", shape_limits_plain, NULL},
    {"upstream", shape_upstream, "00"},
    {"escapes", shape_escapes, NULL},
};

#define N_SHAPES (sizeof shapes / sizeof shapes[0])

/* The canonical text of a record (taken; checked: canonical, no key twice). */
static char *canonical_text(json_t *rec)
{
    struct gw_buf b = {0};
    assert_non_null(rec);
    assert_int_equal(audit_canon_append(&b, rec), 0);
    json_error_t err;
    json_t *again = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &err);
    assert_non_null(again);
    json_decref(again);
    char *s = strndup(b.data, b.len);
    gw_buf_free(&b);
    json_decref(rec);
    return s;
}

/* The item's text: its members written as the writer writes them, without chain fields. */
static char *item_text(struct audit_item *it)
{
    struct gw_buf b = {0};
    assert_non_null(it);
    assert_int_equal(audit_members_write(&b, &it->body, NULL), 0);
    char *s = strndup(b.data, b.len);
    gw_buf_free(&b);
    return s;
}

/* Every column of an item is the record's top-level string of that name. */
static void check_columns(struct audit_item *it, const char *text)
{
    static const char *const names[COL_COUNT] = {"kind", "request_id", "subject", "tenant",
                                                 "tool", "decision",   "layer"};
    json_t *rec = json_loads(text, 0, NULL);
    assert_non_null(rec);
    for (int c = 0; c < COL_COUNT; c++) {
        const json_t *v = json_object_get(rec, names[c]);
        if (json_is_string(v))
            assert_string_equal(audit_item_col(it, c), json_string_value(v));
        else
            assert_null(audit_item_col(it, c));
    }
    json_decref(rec);
}

static void free_request(struct gw_request *req)
{
    gw_request_free(req); /* the messages too */
}

/* Both records of shape i: "decision NAME\tTEXT" and "completion NAME\tTEXT" lines. */
static void shape_lines(size_t i, char **decision, char **completion)
{
    json_t *msg;
    struct gw_request *req = base_request(&msg);
    struct audit_config ac = {0};
    shapes[i].apply(req, &ac);
    char *d = canonical_text(audit_record_decision(req, &ac));
    char *c = canonical_text(audit_record_completion(req, &ac, shapes[i].result_hash));

    /* The item the layer submits holds the same text, and its columns. */
    struct audit_item *it = audit_record_decision_item(req, &ac);
    char *t = item_text(it);
    assert_string_equal(t, d);
    check_columns(it, t);
    free(t);
    audit_item_free(it);
    it = audit_record_completion_item(req, &ac, shapes[i].result_hash);
    t = item_text(it);
    assert_string_equal(t, c);
    check_columns(it, t);
    free(t);
    audit_item_free(it);

    assert_int_not_equal(asprintf(decision, "decision %s\t%s", shapes[i].name, d), -1);
    assert_int_not_equal(asprintf(completion, "completion %s\t%s", shapes[i].name, c), -1);
    free(d);
    free(c);
    free_request(req);
}

static void test_shapes_match_file(void **state)
{
    (void)state;
    const char *write_to = getenv("TOOLGATE_RECORD_SHAPES_WRITE");
    if (write_to && *write_to) {
        FILE *w = fopen(write_to, "w");
        assert_non_null(w);
        for (size_t i = 0; i < N_SHAPES; i++) {
            char *d, *c;
            shape_lines(i, &d, &c);
            fprintf(w, "%s\n%s\n", d, c);
            free(d);
            free(c);
        }
        fclose(w);
        return;
    }
    FILE *f = fopen(SHAPES_FILE, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < N_SHAPES; i++) {
        char *want[2];
        shape_lines(i, &want[0], &want[1]);
        for (int k = 0; k < 2; k++) {
            ssize_t n = getline(&line, &cap, f);
            assert_true(n > 0);
            if (line[n - 1] == '\n')
                line[n - 1] = '\0';
            if (strcmp(line, want[k]) != 0)
                fail_msg("%s: the record differs from " SHAPES_FILE "\n got: %s\nwant: %s",
                         shapes[i].name, want[k], line);
            free(want[k]);
        }
    }
    assert_int_equal(getline(&line, &cap, f), -1); /* no shape left unchecked */
    free(line);
    fclose(f);
}

/* Nothing of a secret reaches a record: the session id, the token, argument values. */
static void test_shapes_carry_no_secret(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_SHAPES; i++) {
        char *d, *c;
        shape_lines(i, &d, &c);
        assert_null(strstr(d, "session-secret"));
        assert_null(strstr(c, "session-secret"));
        assert_null(strstr(d, "123-45-6789"));
        assert_null(strstr(c, "123-45-6789"));
        assert_null(strstr(d, "P0012345"));
        assert_null(strstr(d, "tokenhash-must-not-appear"));
        assert_null(strstr(c, "tokenhash-must-not-appear"));
        free(d);
        free(c);
    }
}

/* A value that is not UTF-8 cannot be recorded: the record is refused, never written broken. */
/* Each column's member name is found, and nothing else is taken for one. */
static void test_col_of(void **state)
{
    (void)state;
    for (int c = 0; c < COL_COUNT; c++)
        assert_int_equal(audit_col_of(audit_col_keys[c]), c);
    static const char *const others[] = {
        "",     "k",         "kinds",  "kin",      "request", "request_id_", "r",       "subjects",
        "s",    "session",   "t",      "te",       "tenant2", "tool_",       "tools",   "to",
        "time", "decision_", "d",      "detail",   "layers",  "l",           "latency", "Kind",
        "TOOL", "xkind",     "status", "identity", "tenant\n"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        assert_int_equal(audit_col_of(others[i]), -1);
}

static void test_invalid_utf8_refused(void **state)
{
    (void)state;
    json_t *msg;
    struct gw_request *req = base_request(&msg);
    struct audit_config ac = {.arguments = AUDIT_ARGS_NONE};
    free(req->identity.subject);
    req->identity.subject = strdup("bad\xc3(");
    assert_null(audit_record_decision(req, &ac));

    assert_null(audit_record_decision_item(req, &ac));
    assert_null(audit_record_completion_item(req, &ac, NULL));

    free_request(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes_match_file),
        cmocka_unit_test(test_shapes_carry_no_secret),
        cmocka_unit_test(test_invalid_utf8_refused),
        cmocka_unit_test(test_col_of),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
