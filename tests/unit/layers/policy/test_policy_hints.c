/* Rule keys `annotations` (tool hints as conditions) and `approval`: parsing and evaluation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "layers/policy/policy-int.h"

static const char *last_error(const char *yaml, struct policy_config **out)
{
    static struct cfg_error err;
    struct cfg_doc doc;
    memset(&err, 0, sizeof err);
    *out = NULL;
    if (cfg_load_string(yaml, strlen(yaml), "t.yaml", &doc, &err) != 0)
        return err.msg;
    int rc = policy_config_parse(&doc, cfg_map_get(doc.root, "policy"), out, &err);
    cfg_doc_free(&doc);
    return rc == 0 ? NULL : err.msg;
}

static struct policy_config *load(const char *yaml)
{
    struct policy_config *pc;
    const char *e = last_error(yaml, &pc);
    if (e)
        fail_msg("unexpected error: %s", e);
    return pc;
}

static void expect_err(const char *yaml, const char *needle)
{
    struct policy_config *pc;
    const char *e = last_error(yaml, &pc);
    if (!e) {
        policy_config_free(pc);
        fail_msg("expected an error containing \"%s\"", needle);
    }
    if (!strstr(e, needle))
        fail_msg("error \"%s\" lacks \"%s\"", e, needle);
}

static enum policy_outcome decide(const struct policy_config *pc, const char *tool,
                                  const struct policy_annotations *a, struct policy_result *res)
{
    static const char *const roles[] = {"staff", NULL};
    struct policy_principal p = {.subject = "ann", .roles = roles, .n_roles = 1};
    struct policy_query q = {POLICY_ACTION_TOOL, tool, strlen(tool), NULL, &p, a};
    return policy_decide(pc, &q, res, NULL);
}

static struct policy_annotations hints(int ro, int destructive, int idem, int open)
{
    struct policy_annotations a = {
        .known = 1,
        .hint = {(signed char)ro, (signed char)destructive, (signed char)idem, (signed char)open}};
    return a;
}

static void test_parse_errors(void **state)
{
    (void)state;
    expect_err("policy: {rules: [{id: a, effect: forbid, tools: x, approval: {by: user}}]}",
               "approval belongs on permit rules");
    expect_err("policy: {rules: [{id: a, effect: permit, tools: x, approval: {by: boss}}]}",
               "\"boss\" is not an approver");
    expect_err("policy: {rules: [{id: a, effect: permit, tools: x, approval: {}}]}",
               "approval.by is user");
    expect_err("policy: {rules: [{id: a, effect: permit, tools: x, approval: {by: \"role:\"}}]}",
               "the role after");
    expect_err(
        "policy: {rules: [{id: a, effect: permit, tools: x, approval: {by: user, ttl: 0s}}]}",
        "ttl is between 1s and 1d");
    expect_err(
        "policy: {rules: [{id: a, effect: permit, tools: x, approval: {by: user, ttl: 2d}}]}",
        "ttl is between 1s and 1d");
    expect_err("policy: {rules: [{id: a, effect: permit, tools: x, approval: {by: user, why: 1}}]}",
               "why");
    expect_err("policy: {rules: [{id: a, effect: permit, tools: x, approval: user}]}",
               "policy.rules[0].approval");
    expect_err("policy: {rules: [{id: a, effect: permit, tools: x, annotations: {scary: true}}]}",
               "unknown annotation");
    expect_err("policy: {rules: [{id: a, effect: permit, tools: x, "
               "annotations: {destructiveHint: \"true\"}}]}",
               "expected true or false");
    expect_err("policy: {rules: [{id: a, effect: permit, tools: x, "
               "annotations: {destructiveHint: yes}}]}",
               "expected true or false");
    expect_err("policy: {rules: [{id: a, effect: permit, prompts: x, "
               "annotations: {destructiveHint: true}}]}",
               "annotations are conditions on tools only");
}

static void test_parse_values(void **state)
{
    (void)state;
    struct policy_config *pc =
        load("policy: {rules: [{id: a, effect: permit, tools: x, approval: {by: user}},\n"
             "  {id: b, effect: permit, tools: y, approval: {by: \"role:ops\", ttl: 90s}}]}\n");
    assert_int_equal(pc->rules[0].approval.by, POLICY_APPROVAL_USER);
    assert_int_equal(pc->rules[0].approval.ttl_ms, 600000);
    assert_string_equal(pc->rules[0].approval.rule_id, "a");
    assert_int_equal(pc->rules[1].approval.by, POLICY_APPROVAL_ROLE);
    assert_string_equal(pc->rules[1].approval.role, "ops");
    assert_int_equal(pc->rules[1].approval.ttl_ms, 90000);
    policy_config_free(pc);
}

/* Hints read as the protocol's defaults when not given, and for a tool not learned at all. */
static void test_hint_values(void **state)
{
    (void)state;
    assert_int_equal(policy_hint_value(NULL, POLICY_HINT_READ_ONLY), 0);
    assert_int_equal(policy_hint_value(NULL, POLICY_HINT_DESTRUCTIVE), 1);
    assert_int_equal(policy_hint_value(NULL, POLICY_HINT_IDEMPOTENT), 0);
    assert_int_equal(policy_hint_value(NULL, POLICY_HINT_OPEN_WORLD), 1);
    struct policy_annotations a;
    json_t *j = json_pack("{s:b, s:s, s:b}", "readOnlyHint", 1, "destructiveHint", "no",
                          "openWorldHint", 0);
    policy_annotations_from_json(j, &a);
    json_decref(j);
    assert_int_equal(policy_hint_value(&a, POLICY_HINT_READ_ONLY), 1);
    assert_int_equal(policy_hint_value(&a, POLICY_HINT_DESTRUCTIVE), 1); /* a string: default */
    assert_int_equal(policy_hint_value(&a, POLICY_HINT_OPEN_WORLD), 0);
    policy_annotations_from_json(NULL, &a);
    assert_int_equal(policy_hint_value(&a, POLICY_HINT_DESTRUCTIVE), 1);
}

static const char *const risky_policy =
    "policy:\n"
    "  rules:\n"
    "    - {id: safe-reads, effect: permit, tools: '*', roles_any: [staff],\n"
    "       annotations: {readOnlyHint: true}}\n"
    "    - {id: risky-needs-ok, effect: permit, tools: '*', roles_any: [staff],\n"
    "       annotations: {destructiveHint: true}, approval: {by: user, ttl: 5m}}\n"
    "    - {id: no-open-world, effect: forbid, tools: 'net_*', annotations: {openWorldHint: "
    "true}}\n";

/* Both directions: a safe reading never comes from a missing hint; a risky one always does. */
static void test_closed_world(void **state)
{
    (void)state;
    struct policy_config *pc = load(risky_policy);
    struct policy_result res;
    /* Read-only, non-destructive: allowed without approval. */
    struct policy_annotations ro = hints(1, 0, -1, 0);
    assert_int_equal(decide(pc, "get", &ro, &res), POLICY_ALLOW);
    assert_int_equal(res.approval.by, POLICY_APPROVAL_NONE);
    /* Unknown tool: not read-only, destructive: the approval rule applies. */
    assert_int_equal(decide(pc, "get", NULL, &res), POLICY_ALLOW);
    assert_int_equal(res.approval.by, POLICY_APPROVAL_USER);
    assert_string_equal(res.approval.rule_id, "risky-needs-ok");
    assert_int_equal(res.approval.ttl_ms, 300000);
    /* Known, but destructiveHint not given: destructive by default. */
    struct policy_annotations bare = hints(-1, -1, -1, -1);
    assert_int_equal(decide(pc, "write", &bare, &res), POLICY_ALLOW);
    assert_int_equal(res.approval.by, POLICY_APPROVAL_USER);
    /* Read-only and (by default) destructive: a plain permit also matches; approval narrows. */
    struct policy_annotations ro_only = hints(1, -1, -1, 0);
    assert_int_equal(decide(pc, "get", &ro_only, &res), POLICY_ALLOW);
    assert_int_equal(res.approval.by, POLICY_APPROVAL_USER);
    /* Declared non-destructive but not read-only: no permit matches. */
    struct policy_annotations write_safe = hints(0, 0, 1, 0);
    assert_int_equal(decide(pc, "put", &write_safe, &res), POLICY_DENY_NO_MATCH);
    /* Forbid beats the approval permit; an unknown net_ tool is open-world. */
    assert_int_equal(decide(pc, "net_fetch", NULL, &res), POLICY_DENY_FORBIDDEN);
    struct policy_annotations closed = hints(1, 0, -1, 0);
    assert_int_equal(decide(pc, "net_fetch", &closed, &res), POLICY_ALLOW);
    assert_int_equal(res.approval.by, POLICY_APPROVAL_NONE);
    /* A forbid with annotation conditions is not unconditional: the tool stays visible. */
    static const char *const roles[] = {"staff", NULL};
    struct policy_principal p = {.subject = "ann", .roles = roles, .n_roles = 1};
    assert_true(policy_visible(pc, POLICY_ACTION_TOOL, "net_fetch", 9, &p));
    policy_config_free(pc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_hint_values),
        cmocka_unit_test(test_closed_world),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
