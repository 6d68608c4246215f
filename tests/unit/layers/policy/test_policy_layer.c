/*
 * The policy layer in the pipeline slot: request decisions (single messages and batches),
 * list filtering on the response path, and the test-file runner and CLI.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "layers/layer.h"
#include "layers/policy/policy.h"
#include "fixtures.h"

static const char *const demo_yaml =
    "policy:\n  rules:\n"
    "    - id: read\n      effect: permit\n      tools: [get_patient, \"search_*\"]\n"
    "      roles_any: [doctor]\n      when: [{arg: /patient_id, matches: 'P[0-9]+'}]\n"
    "    - id: note\n      effect: permit\n      tools: [update_note]\n      roles_any: [doctor]\n"
    "      required_scopes: [patients.write]\n"
    "    - id: cap\n      effect: forbid\n      tools: [get_patient]\n"
    "      when: [{arg: /patient_id, eq: P666}]\n"
    "    - {id: no-delete, effect: forbid, tools: [delete_patient]}\n"
    "    - {id: del, effect: permit, tools: [delete_patient]}\n"
    "    - {id: files, effect: permit, resources: ['file:///shared/*'], roles_any: [doctor]}\n"
    "    - {id: prompt, effect: permit, prompts: [summary], roles_any: [doctor]}\n"
    "    - {id: wipe, effect: permit, tools: [wipe_chart], roles_any: [doctor],\n"
    "       approval: {by: \"role:chief\"}}\n"
    "    - {id: wipe-mine, effect: permit, tools: [wipe_chart], subjects: [alice]}\n"
    "    - {id: peek-ro, effect: permit, tools: [peek], annotations: {readOnlyHint: true}}\n";

struct fixture {
    struct gw_config cfg;
    struct gw_route route;
    struct gw_request *req;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct cfg_doc doc;
    struct cfg_error err = {{0}};
    assert_int_equal(cfg_load_string(demo_yaml, strlen(demo_yaml), "t.yaml", &doc, &err), 0);
    assert_int_equal(policy_config_parse(&doc, cfg_map_get(doc.root, "policy"),
                                         (struct policy_config **)&f->cfg.modules[GW_STAGE_POLICY],
                                         &err),
                     0);
    cfg_doc_free(&doc);
    f->cfg.server.public_url = "http://127.0.0.1:8080";
    f->route.path = "/mcp";
    f->req = gw_request_new(&f->cfg);
    f->req->route = &f->route;
    struct gw_identity *id = &f->req->identity;
    id->verified = 1;
    id->subject = strdup("alice");
    id->tenant = strdup("t1");
    id->roles = fx_strv("doctor", NULL);
    id->n_roles = 1;
    id->scopes = fx_strv("tools.read", NULL);
    id->n_scopes = 1;
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
static int run_check(struct fixture *f)
{
    memset(&f->req->decision[GW_STAGE_POLICY], 0, sizeof f->req->decision[GW_STAGE_POLICY]);
    return policy_layer.check(f->req, &f->req->decision[GW_STAGE_POLICY]);
}

#define CALL(name, args)                                                                           \
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"" name         \
    "\",\"arguments\":" args "}}"

static void test_allow(void **state)
{
    struct fixture *f = *state;
    fx_req_add_message(f->req, CALL("get_patient", "{\"patient_id\":\"P12\"}"));
    assert_int_equal(run_check(f), GW_PASS);
    struct gw_decision *d = &f->req->decision[GW_STAGE_POLICY];
    assert_string_equal(d->reason_code, "policy.permit");
    assert_string_equal(d->rule_id, "read");
}

static void test_forbidden_is_tool_error(void **state)
{
    struct fixture *f = *state;
    fx_req_add_message(f->req, CALL("get_patient", "{\"patient_id\":\"P666\"}"));
    assert_int_equal(run_check(f), GW_DENY);
    struct gw_decision *d = &f->req->decision[GW_STAGE_POLICY];
    assert_int_equal(d->verdict, GW_DENY);
    assert_int_equal(d->http_status, 200);
    assert_int_equal(d->jsonrpc_code, 0);
    assert_string_equal(d->reason_code, "policy.forbidden");
    assert_string_equal(d->rule_id, "cap");
}

/*
 * A permit that asks for approval fails closed while nobody can be asked: a second, plain
 * permit for the same call does not lift the approval (approval only narrows).
 */
static void test_approval_fails_closed(void **state)
{
    struct fixture *f = *state;
    fx_req_add_message(f->req, CALL("wipe_chart", "{}"));
    assert_int_equal(run_check(f), GW_DENY);
    struct gw_decision *d = &f->req->decision[GW_STAGE_POLICY];
    assert_int_equal(d->http_status, 200);
    assert_int_equal(d->jsonrpc_code, 0);
    /* No loop to wait on (a unit test): denied at once, with the reference to quote. */
    assert_string_equal(d->reason_code, "policy.approval_pending");
    assert_string_equal(d->rule_id, "wipe");
    assert_non_null(strstr(d->reason, "role chief"));
    assert_non_null(strstr(d->reason, "reference apr-"));
    assert_int_equal(f->req->approval.asked, 1);
    assert_string_equal(f->req->approval.by, "role:chief");
    assert_string_equal(f->req->approval.decision, "pending");
}

static void test_no_match_is_tool_error(void **state)
{
    struct fixture *f = *state;
    fx_req_add_message(f->req, CALL("get_patient", "{\"patient_id\":\"x\"}"));
    assert_int_equal(run_check(f), GW_DENY);
    struct gw_decision *d = &f->req->decision[GW_STAGE_POLICY];
    assert_int_equal(d->http_status, 200);
    assert_int_equal(d->jsonrpc_code, 0);
    assert_string_equal(d->reason_code, "policy.no_match");
}

static void test_hidden_is_unknown_tool(void **state)
{
    struct fixture *f = *state;
    fx_req_add_message(f->req, CALL("delete_patient", "{\"patient_id\":\"P1\"}"));
    assert_int_equal(run_check(f), GW_DENY);
    struct gw_decision *d = &f->req->decision[GW_STAGE_POLICY];
    assert_int_equal(d->jsonrpc_code, -32602);
    assert_string_equal(d->reason, "Unknown tool: delete_patient");
    assert_string_equal(d->reason_code, "policy.hidden");
    assert_string_equal(d->rule_id, "no-delete");
    /* A tool no rule names answers the same way. */
    gw_request_free(f->req);
    f->req = gw_request_new(&f->cfg);
    fx_req_add_message(f->req, CALL("no_such_tool", "{}"));
    assert_int_equal(run_check(f), GW_DENY);
    assert_int_equal(f->req->decision[GW_STAGE_POLICY].jsonrpc_code, -32602);
    assert_string_equal(f->req->decision[GW_STAGE_POLICY].reason, "Unknown tool: no_such_tool");
    /* A long name is cut whole characters at a time: the reason stays valid UTF-8. */
    gw_request_free(f->req);
    f->req = gw_request_new(&f->cfg);
    char call[1024] =
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"x";
    for (int i = 0; i < 150; i++)
        strcat(call, "\u00e9");
    strcat(call, "\"}}");
    /* The decoder refuses such a name; the layer must still cope with one. */
    fx_req_add_raw_message(f->req, call);
    assert_int_equal(run_check(f), GW_DENY);
    const char *reason = f->req->decision[GW_STAGE_POLICY].reason;
    json_t *js = json_string(reason); /* NULL when not valid UTF-8 */
    assert_non_null(js);
    json_decref(js);
    assert_true(strlen(reason) < 220);
}

static void test_insufficient_scope_403(void **state)
{
    struct fixture *f = *state;
    fx_req_add_message(f->req, CALL("update_note", "{\"note\":\"x\"}"));
    assert_int_equal(run_check(f), GW_DENY);
    struct gw_decision *d = &f->req->decision[GW_STAGE_POLICY];
    assert_int_equal(d->http_status, 403);
    assert_string_equal(d->reason_code, "policy.insufficient_scope");
    assert_string_equal(d->rule_id, "note");
    assert_non_null(strstr(f->req->www_authenticate, "error=\"insufficient_scope\""));
    assert_non_null(strstr(f->req->www_authenticate, "scope=\"patients.write\""));
    assert_non_null(strstr(f->req->www_authenticate,
                           "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp"));
}

static void test_batch(void **state)
{
    struct fixture *f = *state;
    fx_req_add_message(f->req, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"tools/list\"}");
    fx_req_add_message(f->req, CALL("get_patient", "{\"patient_id\":\"P1\"}"));
    fx_req_add_message(f->req, CALL("search_all", "{\"patient_id\":\"P2\"}"));
    assert_int_equal(run_check(f), GW_PASS);
    assert_string_equal(f->req->decision[GW_STAGE_POLICY].rule_id, "read,read");
    /* One denied element denies the batch with its decision. */
    fx_req_add_message(f->req, CALL("get_patient", "{\"patient_id\":\"P666\"}"));
    fx_req_add_message(f->req, CALL("delete_patient", "{}"));
    assert_int_equal(run_check(f), GW_DENY);
    assert_string_equal(f->req->decision[GW_STAGE_POLICY].reason_code, "policy.forbidden");
}

static void test_ungoverned_and_notifications(void **state)
{
    struct fixture *f = *state;
    fx_req_add_message(f->req,
                       "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{}}");
    fx_req_add_message(f->req, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    fx_req_add_message(f->req, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}");
    fx_req_add_message(f->req, "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}");
    assert_int_equal(run_check(f), GW_PASS);
    assert_string_equal(f->req->decision[GW_STAGE_POLICY].reason_code, "policy.not_governed");
    /* A tools/call sent as a notification is still governed. */
    fx_req_add_raw_message(f->req, "{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\","
                                   "\"params\":{\"name\":\"delete_patient\"}}");
    assert_int_equal(run_check(f), GW_DENY);
    /* So is one without a name. */
    gw_request_free(f->req);
    f->req = gw_request_new(&f->cfg);
    fx_req_add_raw_message(
        f->req, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{}}");
    assert_int_equal(run_check(f), GW_DENY);
    assert_string_equal(f->req->decision[GW_STAGE_POLICY].reason_code, "policy.invalid_request");
}

static void test_resources_and_prompts(void **state)
{
    struct fixture *f = *state;
    fx_req_add_message(f->req, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/read\","
                               "\"params\":{\"uri\":\"file:///shared/a.txt\"}}");
    fx_req_add_message(f->req, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"prompts/get\","
                               "\"params\":{\"name\":\"summary\"}}");
    assert_int_equal(run_check(f), GW_PASS);
    fx_req_add_message(f->req, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"resources/read\","
                               "\"params\":{\"uri\":\"file:///etc/shadow\"}}");
    assert_int_equal(run_check(f), GW_DENY);
    assert_int_equal(f->req->decision[GW_STAGE_POLICY].jsonrpc_code, -32002);
    gw_request_free(f->req);
    f->req = gw_request_new(&f->cfg);
    fx_req_add_message(f->req, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"prompts/get\","
                               "\"params\":{\"name\":\"secret\"}}");
    assert_int_equal(run_check(f), GW_DENY);
    assert_string_equal(f->req->decision[GW_STAGE_POLICY].reason, "Unknown prompt: secret");
}

static void test_no_policy_denies(void **state)
{
    struct fixture *f = *state;
    struct gw_config bare = {0};
    struct gw_request *req = gw_request_new(&bare);
    fx_req_add_message(req, CALL("get_patient", "{\"patient_id\":\"P12\"}"));
    assert_int_equal(policy_layer.check(req, &req->decision[GW_STAGE_POLICY]), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_POLICY].reason_code, "policy.hidden");
    gw_request_free(req);
    (void)f;
}

/* ---- list filtering ---- */

/* Subscriptions and completions are governed by the resource or prompt they name. */
static void test_subscribe_and_complete_governed(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *msg;
        int verdict;
    } cases[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/subscribe\",\"params\":{\"uri\":"
         "\"file:///shared/a\"}}",
         GW_PASS},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/subscribe\",\"params\":{\"uri\":"
         "\"file:///etc/passwd\"}}",
         GW_DENY},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/unsubscribe\",\"params\":{\"uri\":"
         "\"file:///shared/../etc/passwd\"}}",
         GW_DENY},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"completion/complete\",\"params\":{\"ref\":"
         "{\"type\":\"ref/prompt\",\"name\":\"summary\"},\"argument\":{\"name\":\"a\","
         "\"value\":\"b\"}}}",
         GW_PASS},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"completion/complete\",\"params\":{\"ref\":"
         "{\"type\":\"ref/prompt\",\"name\":\"other\"},\"argument\":{\"name\":\"a\","
         "\"value\":\"b\"}}}",
         GW_DENY},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"completion/complete\",\"params\":{\"ref\":"
         "{\"type\":\"ref/resource\",\"uri\":\"file:///etc/{x}\"},\"argument\":{\"name\":\"x\","
         "\"value\":\"p\"}}}",
         GW_DENY},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/templates/list\"}", GW_PASS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gw_request_free(f->req);
        f->req = gw_request_new(&f->cfg);
        fx_identity(&f->req->identity, "dr-alice", fx_strv("doctor", NULL), NULL, 0);
        fx_req_add_message(f->req, cases[i].msg);
        if (run_check(f) != cases[i].verdict)
            fail_msg("case %zu: %s", i, f->req->decision[GW_STAGE_POLICY].reason_code);
    }
}

static json_t *respond(struct fixture *f, const char *json, int *modified)
{
    json_error_t je;
    json_t *msg = json_loads(json, 0, &je);
    assert_non_null(msg);
    struct gw_decision d = {0};
    *modified = 0;
    assert_int_equal(policy_layer.on_response(f->req, msg, modified, &d), GW_PASS);
    return msg;
}

static void test_filter_tools_list(void **state)
{
    struct fixture *f = *state;
    fx_req_add_message(f->req, "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"tools/list\"}");
    int modified;
    json_t *msg = respond(
        f,
        "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"tools\":["
        "{\"name\":\"get_patient\"},{\"name\":\"delete_patient\"},{\"name\":\"search_x\"},"
        "{\"name\":\"update_note\"},{\"name\":\"secret\"},{\"title\":\"no name\"},{\"name\":7}],"
        "\"nextCursor\":\"c2\"}}",
        &modified);
    assert_true(modified);
    json_t *tools = json_object_get(json_object_get(msg, "result"), "tools");
    assert_int_equal(json_array_size(tools), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(tools, 0), "name")),
                        "get_patient");
    assert_string_equal(json_string_value(json_object_get(json_array_get(tools, 1), "name")),
                        "search_x");
    /* Step-up tools stay listed: the call is what asks for the scope. */
    assert_string_equal(json_string_value(json_object_get(json_array_get(tools, 2), "name")),
                        "update_note");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(msg, "result"), "nextCursor")), "c2");
    json_decref(msg);

    /*
     * An answer that claims to answer another request (a ping's id, say) is filtered by what
     * it is all the same: a tools list is a tools list.
     */
    msg = respond(f, "{\"jsonrpc\":\"2.0\",\"id\":\"b\",\"result\":{\"tools\":[{\"name\":\"x\"}]}}",
                  &modified);
    assert_true(modified);
    assert_int_equal(json_array_size(json_object_get(json_object_get(msg, "result"), "tools")), 0);
    json_decref(msg);

    /* A malformed tools member is replaced by an empty list, never passed unfiltered. */
    msg = respond(f, "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"tools\":{\"name\":\"x\"}}}",
                  &modified);
    assert_true(modified);
    assert_int_equal(json_array_size(json_object_get(json_object_get(msg, "result"), "tools")), 0);
    json_decref(msg);

    /* Nothing to remove: not modified. */
    msg = respond(
        f, "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"tools\":[{\"name\":\"get_patient\"}]}}",
        &modified);
    assert_false(modified);
    json_decref(msg);
}

/*
 * Annotations are learned from the tools/list answers relayed on the route: before any, the
 * tool is unknown and a condition on a safe reading does not hold; a backend that later says
 * otherwise is believed again (the hints are the backend's word, see docs/policy.md).
 */
static void test_annotations_learned(void **state)
{
    struct fixture *f = *state;
    fx_req_add_message(f->req, CALL("peek", "{}"));
    assert_int_equal(run_check(f), GW_DENY);
    assert_string_equal(f->req->decision[GW_STAGE_POLICY].reason_code, "policy.no_match");
    int modified = 0;
    json_decref(respond(f,
                        "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":"
                        "\"peek\",\"annotations\":{\"readOnlyHint\":true}}]}}",
                        &modified));
    assert_int_equal(run_check(f), GW_PASS);
    json_decref(respond(f,
                        "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":"
                        "\"peek\",\"annotations\":{\"readOnlyHint\":\"yes\"}}]}}",
                        &modified));
    assert_int_equal(run_check(f), GW_DENY);
    /* Another route's list says nothing about this route's tool. */
    struct gw_route other = {.path = "/other"};
    f->req->route = &other;
    json_decref(respond(f,
                        "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"tools\":[{\"name\":"
                        "\"peek\",\"annotations\":{\"readOnlyHint\":true}}]}}",
                        &modified));
    f->req->route = &f->route;
    assert_int_equal(run_check(f), GW_DENY);
}

static void test_filter_other_lists(void **state)
{
    struct fixture *f = *state;
    fx_req_add_message(f->req, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/list\"}");
    fx_req_add_message(f->req, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"prompts/list\"}");
    int modified;
    json_t *msg = respond(f,
                          "[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"resources\":["
                          "{\"uri\":\"file:///shared/a\",\"name\":\"a\"},"
                          "{\"uri\":\"file:///etc/passwd\",\"name\":\"summary\"}]}},"
                          "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"prompts\":["
                          "{\"name\":\"summary\"},{\"name\":\"other\"}]}}]",
                          &modified);
    assert_true(modified);
    json_t *res = json_object_get(json_object_get(json_array_get(msg, 0), "result"), "resources");
    assert_int_equal(json_array_size(res), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "uri")),
                        "file:///shared/a");
    json_t *pr = json_object_get(json_object_get(json_array_get(msg, 1), "result"), "prompts");
    assert_int_equal(json_array_size(pr), 1);
    json_decref(msg);

    /* Resource templates are filtered like resources, by their uriTemplate. */
    msg = respond(f,
                  "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"resourceTemplates\":["
                  "{\"uriTemplate\":\"file:///shared/{name}\",\"name\":\"s\"},"
                  "{\"uriTemplate\":\"file:///etc/{name}\",\"name\":\"e\"},{\"name\":\"n\"}]}}",
                  &modified);
    assert_true(modified);
    json_t *tpl = json_object_get(json_object_get(msg, "result"), "resourceTemplates");
    assert_int_equal(json_array_size(tpl), 1);
    json_decref(msg);

    /* A resource notification reaches only those who may see the resource. */
    int dropped = policy_layer.on_response(
        f->req,
        (msg = json_loads("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\","
                          "\"params\":{\"uri\":\"file:///etc/passwd\"}}",
                          0, NULL)),
        &modified, &f->req->decision[GW_STAGE_POLICY]);
    assert_int_equal(dropped, GW_DROP);
    json_decref(msg);
    msg = json_loads("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\","
                     "\"params\":{\"uri\":\"file:///shared/x/../a\"}}",
                     0, NULL);
    assert_int_equal(
        policy_layer.on_response(f->req, msg, &modified, &f->req->decision[GW_STAGE_POLICY]),
        GW_PASS);
    json_decref(msg);
    msg = json_loads("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\","
                     "\"params\":{\"uri\":\"file:///shared/../etc/passwd\"}}",
                     0, NULL);
    assert_int_equal(
        policy_layer.on_response(f->req, msg, &modified, &f->req->decision[GW_STAGE_POLICY]),
        GW_DROP);
    json_decref(msg);

    /* A principal without the doctor role sees none of them. */
    gw_identity_clear(&f->req->identity);
    msg = respond(
        f, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"prompts\":[{\"name\":\"summary\"}]}}",
        &modified);
    assert_true(modified);
    assert_int_equal(json_array_size(json_object_get(json_object_get(msg, "result"), "prompts")),
                     0);
    json_decref(msg);
}

/* ---- test files and CLI ---- */

static char tmpdir[64];

static void write_file(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_run_tests_file(void **state)
{
    struct fixture *f = *state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tg-policy-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    write_file("good.yaml",
               "tests:\n"
               "  - name: doctor reads\n"
               "    principal: {sub: alice, roles: doctor, scopes: [tools.read]}\n"
               "    tool: get_patient\n    arguments: {patient_id: P1}\n"
               "    expect: allow\n    rule: read\n    code: policy.permit\n"
               "  - principal: {sub: alice, roles: doctor}\n"
               "    tool: get_patient\n    arguments_json: '{\"patient_id\": \"P666\"}'\n"
               "    expect: deny\n    rule: cap\n"
               "  - principal: {sub: alice, roles: [doctor], scopes: 'a b'}\n"
               "    tool: update_note\n    expect: deny\n    code: policy.insufficient_scope\n"
               "  - {resource: 'file:///shared/x', principal: {roles: [doctor]}, expect: allow}\n"
               "  - {prompt: summary, expect: deny, code: policy.hidden}\n");
    write_file("bad.yaml", "tests:\n"
                           "  - {tool: get_patient, arguments: {patient_id: P1}, expect: allow}\n"
                           "  - principal: {roles: [doctor]}\n    tool: get_patient\n"
                           "    arguments: {patient_id: P1}\n    expect: allow\n    rule: cap\n"
                           "  - principal: {roles: [doctor]}\n    tool: get_patient\n"
                           "    arguments: {patient_id: P1}\n    expect: allow\n");
    write_file("broken.yaml", "tests:\n  - {tool: x, expect: maybe}\n");
    write_file("unknown.yaml", "tests:\n  - {tool: x, expect: deny, colour: red}\n");
    char path[128];
    FILE *out = fopen("/dev/null", "w");
    snprintf(path, sizeof path, "%s/good.yaml", tmpdir);
    assert_int_equal(policy_run_tests(policy_config_of(&f->cfg), path, out), 0);
    snprintf(path, sizeof path, "%s/bad.yaml", tmpdir);
    assert_int_equal(policy_run_tests(policy_config_of(&f->cfg), path, out), 2);
    snprintf(path, sizeof path, "%s/broken.yaml", tmpdir);
    assert_int_equal(policy_run_tests(policy_config_of(&f->cfg), path, out), -1);
    snprintf(path, sizeof path, "%s/unknown.yaml", tmpdir);
    assert_int_equal(policy_run_tests(policy_config_of(&f->cfg), path, out), -1);
    snprintf(path, sizeof path, "%s/missing.yaml", tmpdir);
    assert_int_equal(policy_run_tests(policy_config_of(&f->cfg), path, out), -1);
    fclose(out);

    /* The CLI loads the config's policy section alone and runs its tests. */
    char cfgtext[2048];
    snprintf(cfgtext, sizeof cfgtext, "server: {whatever: 1}\n%s  tests: [good.yaml]\n", demo_yaml);
    write_file("config.yaml", cfgtext);
    char cfgpath[128], bad[128];
    snprintf(cfgpath, sizeof cfgpath, "%s/config.yaml", tmpdir);
    snprintf(bad, sizeof bad, "%s/bad.yaml", tmpdir);
    fflush(stdout);
    fflush(stderr);
    int saved = dup(1), saved_err = dup(2);
    int devnull = open("/dev/null", O_WRONLY);
    assert_true(devnull >= 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    close(devnull);
    char *a1[] = {"policy", "test", "--config", cfgpath, NULL};
    int rc1 = policy_cli_main(4, a1);
    char *a2[] = {"policy", "test", "--config", cfgpath, bad, NULL};
    int rc2 = policy_cli_main(5, a2);
    char *a3[] = {"policy", "explain",     "--config", cfgpath,
                  "--sub",  "alice",       "--roles",  "doctor",
                  "--tool", "get_patient", "--args",   "{\"patient_id\":\"P1\"}",
                  NULL};
    int rc3 = policy_cli_main(12, a3);
    char *a4[] = {"policy", "explain", "--config",    cfgpath,  "--roles",
                  "doctor", "--tool",  "get_patient", "--args", "{\"patient_id\":\"P666\"}",
                  NULL};
    int rc4 = policy_cli_main(10, a4);
    char *a5[] = {"policy", "explain", "--config", cfgpath, "--tool", "x", "--args", "[", NULL};
    int rc5 = policy_cli_main(8, a5);
    char *a6[] = {"policy", "frobnicate", NULL};
    int rc6 = policy_cli_main(2, a6);
    fflush(stdout);
    fflush(stderr);
    dup2(saved, 1);
    dup2(saved_err, 2);
    close(saved);
    close(saved_err);
    assert_int_equal(rc1, 0);
    assert_int_equal(rc2, 1);
    assert_int_equal(rc3, 0);
    assert_int_equal(rc4, 1);
    assert_int_equal(rc5, 2);
    assert_int_equal(rc6, 2);

    const char *files[] = {"good.yaml", "bad.yaml", "broken.yaml", "unknown.yaml", "config.yaml"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    rmdir(tmpdir);
}

/* The demo policy shipped in examples/ passes its own tests. */
static void test_demo_policy(void **state)
{
    (void)state;
    if (access("examples/demo/toolgate.yaml", R_OK) != 0)
        fail_msg("run from the repository root: examples/demo/toolgate.yaml not found");
    struct cfg_doc doc;
    struct cfg_error err = {{0}};
    struct policy_config *pc = NULL;
    assert_int_equal(cfg_load_file("examples/demo/toolgate.yaml", &doc, &err), 0);
    assert_int_equal(policy_config_parse(&doc, cfg_map_get(doc.root, "policy"), &pc, &err), 0);
    cfg_doc_free(&doc);
    assert_int_equal(policy_config_test_count(pc), 1);
    assert_string_equal(policy_config_test_path(pc, 0), "examples/demo/ehr.tests.yaml");
    FILE *out = fopen("/dev/null", "w");
    assert_int_equal(policy_run_tests(pc, policy_config_test_path(pc, 0), out), 0);
    fclose(out);
    policy_config_free(pc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_allow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forbidden_is_tool_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approval_fails_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_annotations_learned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_match_is_tool_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hidden_is_unknown_tool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insufficient_scope_403, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ungoverned_and_notifications, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resources_and_prompts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_policy_denies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_and_complete_governed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filter_tools_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filter_other_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_tests_file, setup, teardown),
        cmocka_unit_test(test_demo_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
