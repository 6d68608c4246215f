/*
 * Approval: the sealed requestState (policy_seal.c), policy.approvals, and the layer's
 * decisions in revision 2026-07-28 (input_required, the retry held to its state) and in the
 * session era without a client to ask.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../fixtures.h"
#include "layers/policy/policy_approval.h"
#include "layers/policy/policy_seal.h"

static const uint8_t key_a[32] = {1, 2, 3};
static const uint8_t key_b[32] = {9, 9, 9};

static struct policy_sealed sample(void)
{
    struct policy_sealed st = {.expires_ms = 1893456000000ull};
    memset(st.user, 0x11, 32);
    memset(st.call, 0x22, 32);
    memset(st.once, 0x33, 16);
    snprintf(st.rule, sizeof st.rule, "risky-needs-user");
    return st;
}

static void test_seal_round_trip(void **state)
{
    (void)state;
    struct policy_sealed st = sample(), back;
    char text[POLICY_SEAL_MAX + 1], other[POLICY_SEAL_MAX + 1];
    const char *why = NULL;
    assert_int_equal(policy_seal(key_a, &st, text), 0);
    assert_memory_equal(text, POLICY_SEAL_PREFIX, 5);
    assert_int_equal(policy_unseal(key_a, text, strlen(text), &back, &why), 0);
    assert_memory_equal(back.user, st.user, 32);
    assert_memory_equal(back.call, st.call, 32);
    assert_memory_equal(back.once, st.once, 16);
    assert_true(back.expires_ms == st.expires_ms);
    assert_string_equal(back.rule, st.rule);
    /* A fresh nonce each time: the same content never seals to the same text. */
    assert_int_equal(policy_seal(key_a, &st, other), 0);
    assert_string_not_equal(text, other);
    /* The longest rule id fits the bound. */
    memset(st.rule, 'r', 64);
    st.rule[64] = '\0';
    assert_int_equal(policy_seal(key_a, &st, text), 0);
    assert_true(strlen(text) <= POLICY_SEAL_MAX);
    assert_int_equal(policy_unseal(key_a, text, strlen(text), &back, &why), 0);
    assert_string_equal(back.rule, st.rule);
}

static void expect_refused(const uint8_t *key, const char *text, size_t len, const char *needle)
{
    struct policy_sealed back;
    const char *why = NULL;
    assert_int_equal(policy_unseal(key, text, len, &back, &why), -1);
    assert_non_null(why);
    if (!strstr(why, needle))
        fail_msg("\"%s\" lacks \"%s\"", why, needle);
}

static void test_seal_refusals(void **state)
{
    (void)state;
    struct policy_sealed st = sample();
    char text[POLICY_SEAL_MAX + 1];
    assert_int_equal(policy_seal(key_a, &st, text), 0);
    size_t n = strlen(text);
    expect_refused(key_b, text, n, "another key");
    for (size_t i = 5; i < n; i += 7) {
        char flip[POLICY_SEAL_MAX + 1];
        memcpy(flip, text, n + 1);
        flip[i] = flip[i] == 'A' ? 'B' : 'A';
        struct policy_sealed back;
        const char *why = NULL;
        assert_int_equal(policy_unseal(key_a, flip, n, &back, &why), -1);
    }
    expect_refused(key_a, text, n - 4, "");
    expect_refused(key_a, text, 5, "malformed");
    expect_refused(key_a, "tgs2.abc", 8, "not one toolgate issued");
    expect_refused(key_a, "", 0, "not one toolgate issued");
    expect_refused(key_a, "tgs1.!!!!", 9, "malformed");
    char big[POLICY_SEAL_MAX + 10];
    memset(big, 'A', sizeof big);
    memcpy(big, POLICY_SEAL_PREFIX, 5);
    expect_refused(key_a, big, sizeof big, "malformed");
}

static void test_key_from_file_is_shared(void **state)
{
    (void)state;
    char *key = fx_write_file("seal.key", "0123456789abcdef0123456789abcdef-shared\n");
    char yaml[512];
    snprintf(yaml, sizeof yaml, "policy:\n  approvals: {state_key: \"%s\", state_ttl: 2m}\n", key);
    free(key);
    struct cfg_doc doc;
    struct cfg_error err = {{0}};
    struct policy_config *one = NULL, *two = NULL;
    assert_int_equal(cfg_load_string(yaml, strlen(yaml), "t.yaml", &doc, &err), 0);
    assert_int_equal(policy_config_parse(&doc, cfg_map_get(doc.root, "policy"), &one, &err), 0);
    assert_int_equal(policy_config_parse(&doc, cfg_map_get(doc.root, "policy"), &two, &err), 0);
    cfg_doc_free(&doc);
    assert_true(one->approvals.state_ttl_ms == 120000);
    assert_memory_equal(one->approvals.state_key, two->approvals.state_key, 32);
    struct policy_sealed st = sample(), back;
    char text[POLICY_SEAL_MAX + 1];
    const char *why;
    assert_int_equal(policy_seal(one->approvals.state_key, &st, text), 0);
    assert_int_equal(policy_unseal(two->approvals.state_key, text, strlen(text), &back, &why), 0);
    policy_config_free(one);
    policy_config_free(two);
    /* Without a file each process has its own random key. */
    const char *plain = "policy: {approvals: {}}\n";
    assert_int_equal(cfg_load_string(plain, strlen(plain), "t.yaml", &doc, &err), 0);
    assert_int_equal(policy_config_parse(&doc, cfg_map_get(doc.root, "policy"), &one, &err), 0);
    assert_int_equal(policy_config_parse(&doc, cfg_map_get(doc.root, "policy"), &two, &err), 0);
    cfg_doc_free(&doc);
    assert_memory_not_equal(one->approvals.state_key, two->approvals.state_key, 32);
    assert_true(one->approvals.prompt_timeout_ms == 60000);
    assert_true(one->approvals.role_timeout_ms == 30000);
    policy_config_free(one);
    policy_config_free(two);
}

static void expect_config_error(const char *yaml, const char *needle)
{
    struct cfg_doc doc;
    struct cfg_error err = {{0}};
    struct policy_config *pc = NULL;
    assert_int_equal(cfg_load_string(yaml, strlen(yaml), "t.yaml", &doc, &err), 0);
    int rc = policy_config_parse(&doc, cfg_map_get(doc.root, "policy"), &pc, &err);
    cfg_doc_free(&doc);
    policy_config_free(pc);
    assert_int_equal(rc, -1);
    if (!strstr(err.msg, needle))
        fail_msg("\"%s\" lacks \"%s\"", err.msg, needle);
}

static void test_approvals_config_errors(void **state)
{
    (void)state;
    expect_config_error("policy: {approvals: {prompt_timeout: 0s}}\n", "between 1s and 10m");
    expect_config_error("policy: {approvals: {role_timeout: 11m}}\n", "at most 10m");
    expect_config_error("policy: {approvals: {reference_ttl: 10s}}\n", "between 1m and 7d");
    expect_config_error("policy: {approvals: {state_ttl: 2h}}\n", "between 10s and 1h");
    expect_config_error("policy: {approvals: {wait: 1s}}\n", "wait");
    expect_config_error("policy: {approvals: {approvers: chief}}\n", "admin (the admin credential");
    expect_config_error("policy: {approvals: {state_key: /nonexistent/key}}\n",
                        "cannot read the sealing key file");
    char *shortkey = fx_write_file("short.key", "too short");
    char yaml[512];
    snprintf(yaml, sizeof yaml, "policy: {approvals: {state_key: \"%s\"}}\n", shortkey);
    free(shortkey);
    expect_config_error(yaml, "fewer than 32 bytes");
}

/* ---- the layer in 2026-07-28 ---- */

static const char *const yaml =
    "policy:\n  rules:\n"
    "    - {id: ask, effect: permit, tools: [wipe], approval: {by: user, ttl: 1m}}\n"
    "    - {id: chief, effect: permit, tools: [purge], approval: {by: \"role:chief\"}}\n";

struct fixture {
    struct gw_config cfg;
    struct gw_route route;
    struct gw_request *req;
};

static struct gw_request *new_req(struct fixture *f, const char *sub)
{
    struct gw_request *req = gw_request_new(&f->cfg);
    req->route = &f->route;
    req->identity.verified = 1;
    req->identity.issuer = strdup("https://idp.test/");
    req->identity.subject = strdup(sub);
    req->modern = 1;
    return req;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct cfg_doc doc;
    struct cfg_error err = {{0}};
    assert_int_equal(cfg_load_string(yaml, strlen(yaml), "t.yaml", &doc, &err), 0);
    assert_int_equal(policy_config_parse(&doc, cfg_map_get(doc.root, "policy"),
                                         (struct policy_config **)&f->cfg.modules[GW_STAGE_POLICY],
                                         &err),
                     0);
    cfg_doc_free(&doc);
    f->route.path = "/mcp";
    f->route.name = "mcp";
    policy_approval_reset();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    gw_request_free(f->req);
    policy_config_free(f->cfg.modules[GW_STAGE_POLICY]);
    free(f);
    return 0;
}

#define META                                                                                       \
    "\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","                       \
    "\"io.modelcontextprotocol/clientCapabilities\":{\"elicitation\":{}}}"
#define YES                                                                                        \
    ",\"inputResponses\":{\"toolgate.approval\":{\"action\":\"accept\",\"content\":{\"approve\":"  \
    "true}}}"

static int check(struct gw_request *req, const char *params)
{
    char json[2048];
    snprintf(json, sizeof json,
             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{%s}}", params);
    fx_req_add_message(req, json);
    memset(&req->decision[GW_STAGE_POLICY], 0, sizeof req->decision[GW_STAGE_POLICY]);
    return policy_layer.check(req, &req->decision[GW_STAGE_POLICY]);
}

/* Asks as sub for wipe(args); returns the sealed state of the input_required answer. */
static char *ask(struct fixture *f, const char *sub, const char *args)
{
    char params[1024];
    struct gw_request *req = new_req(f, sub);
    snprintf(params, sizeof params, "\"name\":\"wipe\",\"arguments\":%s," META, args);
    assert_int_equal(check(req, params), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_POLICY].reason_code, "policy.approval_required");
    assert_non_null(req->denial_result);
    assert_string_equal(json_string_value(json_object_get(req->denial_result, "resultType")),
                        "input_required");
    const json_t *ir =
        json_object_get(json_object_get(req->denial_result, "inputRequests"), "toolgate.approval");
    assert_string_equal(json_string_value(json_object_get(ir, "method")), "elicitation/create");
    char *st = strdup(json_string_value(json_object_get(req->denial_result, "requestState")));
    assert_string_equal(req->approval.decision, "pending");
    gw_request_free(req);
    return st;
}

static const char *retry(struct fixture *f, const char *sub, const char *args, const char *st,
                         const char *answer, int expect)
{
    char params[2048];
    gw_request_free(f->req);
    f->req = new_req(f, sub);
    snprintf(params, sizeof params,
             "\"name\":\"wipe\",\"arguments\":%s,\"requestState\":\"%s\"%s," META, args, st,
             answer);
    assert_int_equal(check(f->req, params), expect);
    return f->req->decision[GW_STAGE_POLICY].reason;
}

static void test_modern_flow(void **state)
{
    struct fixture *f = *state;
    char *st = ask(f, "ann", "{\"n\":1}");
    retry(f, "ann", "{\"n\":1}", st, YES, GW_PASS);
    /* The state and toolgate's answer do not go on to the backend. */
    assert_non_null(f->req->rewritten_body);
    assert_null(strstr(f->req->rewritten_body, "requestState"));
    assert_null(strstr(f->req->rewritten_body, "toolgate.approval"));
    assert_string_equal(f->req->approval.decision, "approved");
    assert_string_equal(f->req->approval.via, "request_state");
    /* Once only. */
    assert_non_null(strstr(retry(f, "ann", "{\"n\":1}", st, YES, GW_DENY), "used already"));
    assert_string_equal(f->req->approval.decision, "refused");
    free(st);
    /* Another user's, other arguments, no answer, a no. */
    st = ask(f, "ann", "{\"n\":2}");
    assert_non_null(strstr(retry(f, "bob", "{\"n\":2}", st, YES, GW_DENY), "another user"));
    assert_non_null(strstr(retry(f, "ann", "{\"n\":3}", st, YES, GW_DENY), "another call"));
    retry(f, "ann", "{\"n\":2}", st, "", GW_DENY);
    free(st);
    st = ask(f, "ann", "{\"n\":4}");
    retry(f, "ann", "{\"n\":4}", st,
          ",\"inputResponses\":{\"toolgate.approval\":{\"action\":\"decline\"}}", GW_DENY);
    assert_string_equal(f->req->decision[GW_STAGE_POLICY].reason_code, "policy.approval_declined");
    free(st);
}

static void test_modern_expired_state(void **state)
{
    struct fixture *f = *state;
    const struct policy_config *pc = f->cfg.modules[GW_STAGE_POLICY];
    /* A state sealed for exactly this call, but already past its expiry. */
    f->req = new_req(f, "ann");
    fx_req_add_message(f->req, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\","
                               "\"params\":{\"name\":\"wipe\",\"arguments\":{\"n\":5}}}");
    struct policy_approval ap = {.by = POLICY_APPROVAL_USER, .ttl_ms = 60000};
    snprintf(ap.rule_id, sizeof ap.rule_id, "ask");
    struct approval_call c;
    assert_int_equal(approval_call_of(f->req, &f->req->rpc.msgs[0], &ap, &c), 0);
    struct policy_sealed st = {.expires_ms = approval_now_ms() - 1};
    memcpy(st.user, c.user, 32);
    memcpy(st.call, c.digest, 32);
    snprintf(st.rule, sizeof st.rule, "ask");
    char text[POLICY_SEAL_MAX + 1];
    assert_int_equal(policy_seal(pc->approvals.state_key, &st, text), 0);
    assert_non_null(strstr(retry(f, "ann", "{\"n\":5}", text, YES, GW_DENY), "expired"));
    assert_string_equal(f->req->decision[GW_STAGE_POLICY].reason_code, "policy.approval_invalid");
    /* The same with a fresh expiry goes through: only the expiry was wrong. */
    st.expires_ms = approval_now_ms() + 60000;
    assert_int_equal(policy_seal(pc->approvals.state_key, &st, text), 0);
    retry(f, "ann", "{\"n\":5}", text, YES, GW_PASS);
}

static void test_modern_without_capability(void **state)
{
    struct fixture *f = *state;
    f->req = new_req(f, "ann");
    assert_int_equal(check(f->req, "\"name\":\"wipe\",\"arguments\":{},\"_meta\":{}"), GW_DENY);
    assert_string_equal(f->req->decision[GW_STAGE_POLICY].reason_code,
                        "policy.approval_unavailable");
    assert_non_null(strstr(f->req->decision[GW_STAGE_POLICY].reason, "cannot show prompts"));
    assert_null(f->req->denial_result);
}

static void test_session_era_cannot_ask_without_a_session(void **state)
{
    struct fixture *f = *state;
    f->req = new_req(f, "ann");
    f->req->modern = 0;
    assert_int_equal(check(f->req, "\"name\":\"wipe\",\"arguments\":{}"), GW_DENY);
    assert_string_equal(f->req->decision[GW_STAGE_POLICY].reason_code,
                        "policy.approval_unavailable");
    assert_string_equal(f->req->approval.by, "user");
    assert_string_equal(f->req->approval.decision, "unavailable");
}

static void test_role_reference_and_admin_decision(void **state)
{
    struct fixture *f = *state;
    f->req = new_req(f, "ann");
    f->req->modern = 0;
    assert_int_equal(check(f->req, "\"name\":\"purge\",\"arguments\":{\"db\":\"x\"}"), GW_DENY);
    assert_string_equal(f->req->decision[GW_STAGE_POLICY].reason_code, "policy.approval_pending");
    char ref[40];
    snprintf(ref, sizeof ref, "%s", f->req->approval.reference);
    assert_memory_equal(ref, "apr-", 4);
    json_t *out = NULL;
    assert_int_equal(policy_admin_api(&f->cfg, "approvals", NULL, &out), 200);
    json_t *first = json_array_get(json_object_get(out, "approvals"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "id")), ref);
    assert_string_equal(json_string_value(json_object_get(first, "role")), "chief");
    assert_string_equal(json_string_value(json_object_get(first, "arguments")), "db=\"x\"");
    json_decref(out);
    /* A bad body, an unknown id, then the approval; a second decision conflicts. */
    json_t *yes = json_pack("{s:s}", "decision", "approve");
    json_t *bad = json_pack("{s:s}", "decision", "maybe");
    const struct gw_admin_actor admin = {.credential = "admin-token:x"};
    const struct gw_admin_actor other = {.credential = "t"};
    assert_int_equal(policy_admin_action(&f->cfg, "approvals", ref, bad, &admin, &out), 400);
    json_decref(out);
    assert_int_equal(
        policy_admin_action(&f->cfg, "approvals", "apr-0000000000000000", yes, &other, &out), 404);
    json_decref(out);
    assert_int_equal(policy_admin_action(&f->cfg, "approvals", ref, yes, &admin, &out), 200);
    json_decref(out);
    assert_int_equal(policy_admin_action(&f->cfg, "approvals", ref, yes, &admin, &out), 409);
    json_decref(out);
    json_decref(yes);
    json_decref(bad);
    /* The same call now goes through; the record names the approver and the reference. */
    gw_request_free(f->req);
    f->req = new_req(f, "ann");
    f->req->modern = 0;
    assert_int_equal(check(f->req, "\"name\":\"purge\",\"arguments\":{\"db\":\"x\"}"), GW_PASS);
    assert_string_equal(f->req->approval.approver, "admin-token:x");
    assert_string_equal(f->req->approval.reference, ref);
    assert_string_equal(f->req->approval.via, "cached");
    /* Another user's same call is not approved by it. */
    gw_request_free(f->req);
    f->req = new_req(f, "bob");
    f->req->modern = 0;
    assert_int_equal(check(f->req, "\"name\":\"purge\",\"arguments\":{\"db\":\"x\"}"), GW_DENY);
    assert_string_not_equal(f->req->approval.reference, ref);
}

/* A verified person as the admin API hands one to the action (identity_verify_person). */
static struct gw_identity person(const char *sub, char **roles)
{
    struct gw_identity id = {.verified = 1, .roles = roles};
    id.subject = (char *)sub;
    id.issuer = (char *)"https://idp.test/";
    return id;
}

static void expect_decision_refused(struct fixture *f, const char *ref, const json_t *body,
                                    const struct gw_admin_actor *actor, int status,
                                    const char *text)
{
    json_t *out = NULL;
    assert_int_equal(policy_admin_action(&f->cfg, "approvals", ref, body, actor, &out), status);
    const char *error = json_string_value(json_object_get(out, "error"));
    assert_non_null(error);
    if (!strstr(error, text))
        fail_msg("want \"%s\" in \"%s\"", text, error);
    json_decref(out);
}

static void test_role_decided_by_a_person(void **state)
{
    struct fixture *f = *state;
    ((struct policy_config *)f->cfg.modules[GW_STAGE_POLICY])->approvals.approvers =
        POLICY_APPROVERS_TOKEN;
    f->req = new_req(f, "ann");
    f->req->modern = 0;
    assert_int_equal(check(f->req, "\"name\":\"purge\",\"arguments\":{\"db\":\"y\"}"), GW_DENY);
    char ref[40];
    snprintf(ref, sizeof ref, "%s", f->req->approval.reference);
    json_t *out = NULL;
    assert_int_equal(policy_admin_api(&f->cfg, "approvals", NULL, &out), 200);
    assert_string_equal(json_string_value(json_object_get(out, "approvers")), "token");
    json_decref(out);
    json_t *yes = json_pack("{s:s}", "decision", "approve");
    char *chief[] = {"staff", "chief", NULL}, *staff[] = {"staff", NULL}, *none[] = {NULL};
    char *near[] = {"Chief", "chief ", "chiefs", NULL};
    struct gw_identity carol = person("carol", chief), dave = person("dave", staff);
    struct gw_identity ann = person("ann", chief), eve = person("eve", near);
    struct gw_identity nobody = person("nobody", none);
    /* The admin credential alone, and every way a person's token may fail. */
    struct gw_admin_actor a = {.credential = "admin-token:x"};
    expect_decision_refused(f, ref, yes, &a, 401, "X-Approver-Token");
    expect_decision_refused(f, ref, yes, NULL, 401, "X-Approver-Token");
    a.person = GW_PERSON_REFUSED;
    expect_decision_refused(f, ref, yes, &a, 401, "invalid or expired");
    a.person = GW_PERSON_MALFORMED;
    expect_decision_refused(f, ref, yes, &a, 401, "exactly one");
    a.person = GW_PERSON_UNAVAILABLE;
    expect_decision_refused(f, ref, yes, &a, 503, "keys");
    /* Verified, but no identity handed over: refused, never taken for the admin. */
    a.person = GW_PERSON_VERIFIED;
    expect_decision_refused(f, ref, yes, &a, 401, "invalid or expired");
    /* Verified without the role (also one that only looks like it), and the asking user. */
    a.identity = &dave;
    expect_decision_refused(f, ref, yes, &a, 403, "does not hold the role");
    a.identity = &eve;
    expect_decision_refused(f, ref, yes, &a, 403, "does not hold the role");
    a.identity = &nobody;
    expect_decision_refused(f, ref, yes, &a, 403, "does not hold the role");
    a.identity = &ann;
    expect_decision_refused(f, ref, yes, &a, 403, "made the call");
    /* A person's check comes after the id's: an unknown id is still 404. */
    a.identity = &carol;
    assert_int_equal(
        policy_admin_action(&f->cfg, "approvals", "apr-0000000000000000", yes, &a, &out), 404);
    json_decref(out);
    /* Still open; carol holds the role and decides, and is the approver recorded. */
    assert_int_equal(policy_admin_action(&f->cfg, "approvals", ref, yes, &a, &out), 200);
    json_t *ap = json_object_get(out, "approval");
    assert_string_equal(json_string_value(json_object_get(ap, "state")), "approved");
    assert_string_equal(json_string_value(json_object_get(ap, "approver")),
                        "user:carol@https://idp.test/");
    json_decref(out);
    json_decref(yes);
    gw_request_free(f->req);
    f->req = new_req(f, "ann");
    f->req->modern = 0;
    assert_int_equal(check(f->req, "\"name\":\"purge\",\"arguments\":{\"db\":\"y\"}"), GW_PASS);
    assert_string_equal(f->req->approval.approver, "user:carol@https://idp.test/");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_round_trip),
        cmocka_unit_test(test_seal_refusals),
        cmocka_unit_test(test_key_from_file_is_shared),
        cmocka_unit_test(test_approvals_config_errors),
        cmocka_unit_test_setup_teardown(test_modern_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modern_expired_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modern_without_capability, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_era_cannot_ask_without_a_session, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_role_reference_and_admin_decision, setup, teardown),
        cmocka_unit_test_setup_teardown(test_role_decided_by_a_person, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fx_rm_tmpdir();
    return rc;
}
