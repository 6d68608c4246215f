/* Policy semantics, every predicate, the index and config errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "layers/policy/policy-int.h"

static struct policy_config *load(const char *yaml)
{
    struct cfg_doc doc;
    struct cfg_error err = {{0}};
    struct policy_config *pc = NULL;
    if (cfg_load_string(yaml, strlen(yaml), "t.yaml", &doc, &err) != 0) {
        fprintf(stderr, "yaml: %s\n", err.msg);
        return NULL;
    }
    if (policy_config_parse(&doc, cfg_map_get(doc.root, "policy"), &pc, &err) != 0)
        fprintf(stderr, "policy: %s\n", err.msg);
    cfg_doc_free(&doc);
    return pc;
}

/* Parses yaml expecting an error; returns the message in a static buffer. */
static const char *load_err(const char *yaml)
{
    static struct cfg_error err;
    struct cfg_doc doc;
    struct policy_config *pc = NULL;
    memset(&err, 0, sizeof err);
    if (cfg_load_string(yaml, strlen(yaml), "t.yaml", &doc, &err) != 0)
        return err.msg;
    int rc = policy_config_parse(&doc, cfg_map_get(doc.root, "policy"), &pc, &err);
    cfg_doc_free(&doc);
    if (rc == 0) {
        policy_config_free(pc);
        return NULL;
    }
    assert_null(pc);
    return err.msg;
}

static void expect_err(const char *yaml, const char *needle)
{
    const char *msg = load_err(yaml);
    if (!msg)
        fail_msg("expected an error containing \"%s\"", needle);
    if (!strstr(msg, needle))
        fail_msg("error \"%s\" lacks \"%s\"", msg, needle);
}

struct who {
    const char *sub, *tenant, *client;
    const char *roles[4];
    const char *scopes[6];
};

static size_t count(const char *const *v, size_t max)
{
    size_t n = 0;
    while (n < max && v[n])
        n++;
    return n;
}

static enum policy_outcome decide_full(const struct policy_config *pc, enum policy_action action,
                                       const char *target, const char *args_json,
                                       const struct who *w, struct policy_result *res)
{
    struct policy_principal p = {0};
    if (w) {
        p.subject = w->sub;
        p.tenant = w->tenant;
        p.client_id = w->client;
        p.roles = w->roles;
        p.n_roles = count(w->roles, 4);
        p.scopes = w->scopes;
        p.n_scopes = count(w->scopes, 6);
        p.scope_model = pc; /* as the layer reads scopes: with the configured hierarchy */
    }
    json_t *args = NULL;
    if (args_json) {
        json_error_t je;
        args = json_loads(args_json, JSON_REJECT_DUPLICATES, &je);
        if (!args)
            fail_msg("bad test JSON: %s", je.text);
    }
    struct policy_query q = {action, target, target ? strlen(target) : 0, args, &p, NULL};
    struct gw_buf explain = {0};
    enum policy_outcome o = policy_decide(pc, &q, res, &explain);
    /* The explained run must decide exactly like the fast one. */
    struct policy_result res2;
    assert_int_equal(policy_decide(pc, &q, &res2, NULL), o);
    assert_string_equal(res->rule_id, res2.rule_id);
    gw_buf_free(&explain);
    json_decref(args);
    return o;
}

static enum policy_outcome decide(const struct policy_config *pc, const char *tool,
                                  const char *args_json, const struct who *w)
{
    struct policy_result res;
    return decide_full(pc, POLICY_ACTION_TOOL, tool, args_json, w, &res);
}

static const struct who doctor = {"alice", "t1", "cursor", {"doctor"}, {"patients.read"}};
static const struct who nobody = {"mallory", "t2", "x", {"guest"}, {"tools.read"}};

/* ---- semantics ---- */

static void test_default_deny(void **state)
{
    (void)state;
    struct policy_config *pc = load("policy:\n  rules: []\n");
    assert_non_null(pc);
    assert_int_equal(decide(pc, "anything", NULL, &doctor), POLICY_DENY_HIDDEN);
    policy_config_free(pc);
    /* No policy section at all: every governed action is denied. */
    assert_int_equal(decide(NULL, "anything", NULL, &doctor), POLICY_DENY_HIDDEN);
    assert_false(policy_visible(NULL, POLICY_ACTION_TOOL, "anything", 8, NULL));
}

static void test_forbid_wins(void **state)
{
    (void)state;
    struct policy_config *pc =
        load("policy:\n  rules:\n"
             "    - {id: p1, effect: permit, tools: [del], roles_any: [doctor]}\n"
             "    - id: f1\n      effect: forbid\n      tools: [del]\n"
             "      when: [{arg: /hard, eq: true}]\n"
             "    - {id: f2, effect: forbid, tools: [gone]}\n"
             "    - {id: p2, effect: permit, tools: [gone]}\n");
    assert_non_null(pc);
    struct policy_result res;
    assert_int_equal(decide_full(pc, POLICY_ACTION_TOOL, "del", "{\"hard\": false}", &doctor, &res),
                     POLICY_ALLOW);
    assert_string_equal(res.rule_id, "p1");
    assert_int_equal(decide_full(pc, POLICY_ACTION_TOOL, "del", "{\"hard\": true}", &doctor, &res),
                     POLICY_DENY_FORBIDDEN);
    assert_string_equal(res.rule_id, "f1");
    assert_true(res.visible);
    /* Missing argument: the forbid cannot be evaluated and fails closed (matches). */
    assert_int_equal(decide(pc, "del", "{}", &doctor), POLICY_DENY_FORBIDDEN);
    assert_int_equal(decide(pc, "del", NULL, &doctor), POLICY_DENY_FORBIDDEN);
    /* Wrong type as well. */
    assert_int_equal(decide(pc, "del", "{\"hard\": [true]}", &doctor), POLICY_DENY_FORBIDDEN);
    /* An unconditional forbid hides the tool entirely. */
    assert_int_equal(decide_full(pc, POLICY_ACTION_TOOL, "gone", NULL, &doctor, &res),
                     POLICY_DENY_HIDDEN);
    assert_string_equal(res.rule_id, "f2");
    assert_false(policy_visible(pc, POLICY_ACTION_TOOL, "gone", 4, NULL));
    /* A principal no permit names cannot see del at all. */
    assert_int_equal(decide(pc, "del", "{\"hard\": false}", &nobody), POLICY_DENY_HIDDEN);
    policy_config_free(pc);
}

static void test_permit_fail_closed(void **state)
{
    (void)state;
    struct policy_config *pc = load("policy:\n  rules:\n"
                                    "    - id: read\n      effect: permit\n      tools: [get]\n"
                                    "      roles_any: [doctor]\n"
                                    "      when:\n        - {arg: /id, matches: 'P[0-9]+'}\n"
                                    "        - {arg: /n, range: {min: 1, max: 10}}\n");
    assert_non_null(pc);
    assert_int_equal(decide(pc, "get", "{\"id\": \"P1\", \"n\": 3}", &doctor), POLICY_ALLOW);
    assert_int_equal(decide(pc, "get", "{\"id\": \"P1\", \"n\": 11}", &doctor),
                     POLICY_DENY_NO_MATCH);
    assert_int_equal(decide(pc, "get", "{\"id\": \"P1\"}", &doctor), POLICY_DENY_NO_MATCH);
    assert_int_equal(decide(pc, "get", "{\"id\": 1, \"n\": 3}", &doctor), POLICY_DENY_NO_MATCH);
    /* A numeric string is judged as the number a backend reads it as. */
    assert_int_equal(decide(pc, "get", "{\"id\": \"P1\", \"n\": \"3\"}", &doctor), POLICY_ALLOW);
    assert_int_equal(decide(pc, "get", "{\"id\": \"P1\", \"n\": \"30\"}", &doctor),
                     POLICY_DENY_NO_MATCH);
    /* One that some readings take for a number and others do not: no permit. */
    assert_int_equal(decide(pc, "get", "{\"id\": \"P1\", \"n\": \"3_0\"}", &doctor),
                     POLICY_DENY_NO_MATCH);
    assert_int_equal(decide(pc, "get", NULL, &doctor), POLICY_DENY_NO_MATCH);
    /* Visible (arguments ignored) to the doctor, hidden from others. */
    assert_true(policy_visible(pc, POLICY_ACTION_TOOL, "get", 3,
                               &(struct policy_principal){.roles = doctor.roles, .n_roles = 1}));
    assert_int_equal(decide(pc, "get", "{\"id\": \"P1\", \"n\": 3}", &nobody), POLICY_DENY_HIDDEN);
    assert_int_equal(decide(pc, "get", "{\"id\": \"P1\", \"n\": 3}", NULL), POLICY_DENY_HIDDEN);
    policy_config_free(pc);
}

static void test_globs_and_index(void **state)
{
    (void)state;
    struct policy_config *pc =
        load("policy:\n  rules:\n"
             "    - {id: search, effect: permit, tools: [\"ehr.search_*\"]}\n"
             "    - {id: mid, effect: permit, tools: [\"a*b*c\", abc]}\n"
             "    - {id: all, effect: permit, subjects: [root]}\n"
             "    - {id: exact, effect: permit, tools: [ehr.search_x]}\n");
    assert_non_null(pc);
    struct policy_result res;
    assert_int_equal(decide(pc, "ehr.search_patients", NULL, &doctor), POLICY_ALLOW);
    assert_int_equal(decide(pc, "ehr.search_", NULL, &doctor), POLICY_ALLOW);
    assert_int_equal(decide(pc, "ehr.searc", NULL, &doctor), POLICY_DENY_HIDDEN);
    assert_int_equal(decide(pc, "xehr.search_a", NULL, &doctor), POLICY_DENY_HIDDEN);
    assert_int_equal(decide_full(pc, POLICY_ACTION_TOOL, "ehr.search_x", NULL, &doctor, &res),
                     POLICY_ALLOW);
    assert_string_equal(res.rule_id, "search,exact");
    assert_int_equal(decide_full(pc, POLICY_ACTION_TOOL, "abc", NULL, &doctor, &res), POLICY_ALLOW);
    assert_string_equal(res.rule_id, "mid"); /* listed twice, reported once */
    assert_int_equal(decide(pc, "aXbYc", NULL, &doctor), POLICY_ALLOW);
    assert_int_equal(decide(pc, "aXbYcd", NULL, &doctor), POLICY_DENY_HIDDEN);
    /* A rule without a target list covers every tool, but not resources. */
    struct who root = {"root", NULL, NULL, {NULL}, {NULL}};
    assert_int_equal(decide(pc, "whatever", NULL, &root), POLICY_ALLOW);
    assert_int_equal(decide_full(pc, POLICY_ACTION_RESOURCE, "file:///x", NULL, &root, &res),
                     POLICY_DENY_HIDDEN);
    /* Oversized and empty targets are refused before any lookup. */
    char *big = malloc(POLICY_MAX_TARGET + 2);
    memset(big, 'a', POLICY_MAX_TARGET + 1);
    big[POLICY_MAX_TARGET + 1] = '\0';
    assert_int_equal(decide(pc, big, NULL, &root), POLICY_DENY_INVALID);
    free(big);
    assert_int_equal(decide(pc, "", NULL, &root), POLICY_DENY_INVALID);
    assert_int_equal(decide(pc, NULL, NULL, &root), POLICY_DENY_INVALID);
    policy_config_free(pc);

    assert_true(policy_glob_match("*", 1, "", 0));
    assert_true(policy_glob_match("**a", 3, "a", 1));
    assert_false(policy_glob_match("a*", 2, "", 0));
    assert_true(policy_glob_match("*.*.*", 5, "x.y.z", 5));
    assert_false(policy_glob_match("*.*.*", 5, "x.y", 3));
}

static void test_principal_conditions(void **state)
{
    (void)state;
    struct policy_config *pc =
        load("policy:\n  rules:\n"
             "    - {id: s, effect: permit, tools: [s], subjects: [alice]}\n"
             "    - {id: ra, effect: permit, tools: [ra], roles_all: [a, b]}\n"
             "    - {id: sa, effect: permit, tools: [sa], scopes_all: [x, y]}\n"
             "    - {id: sy, effect: permit, tools: [sy], scopes_any: [x, y]}\n"
             "    - {id: t, effect: permit, tools: [t], tenants: [t1]}\n"
             "    - {id: c, effect: permit, tools: [c], clients: cursor}\n");
    assert_non_null(pc);
    struct who ab = {"bob", NULL, NULL, {"a", "b"}, {"x"}};
    struct who a = {"alice", "t1", "cursor", {"a"}, {"x", "y"}};
    assert_int_equal(decide(pc, "s", NULL, &a), POLICY_ALLOW);
    assert_int_equal(decide(pc, "s", NULL, &ab), POLICY_DENY_HIDDEN);
    assert_int_equal(decide(pc, "ra", NULL, &ab), POLICY_ALLOW);
    assert_int_equal(decide(pc, "ra", NULL, &a), POLICY_DENY_HIDDEN);
    assert_int_equal(decide(pc, "sa", NULL, &a), POLICY_ALLOW);
    assert_int_equal(decide(pc, "sa", NULL, &ab), POLICY_DENY_HIDDEN);
    assert_int_equal(decide(pc, "sy", NULL, &ab), POLICY_ALLOW);
    assert_int_equal(decide(pc, "t", NULL, &a), POLICY_ALLOW);
    assert_int_equal(decide(pc, "t", NULL, &ab), POLICY_DENY_HIDDEN); /* no tenant claim */
    assert_int_equal(decide(pc, "c", NULL, &a), POLICY_ALLOW);
    assert_int_equal(decide(pc, "c", NULL, &ab), POLICY_DENY_HIDDEN);
    policy_config_free(pc);
}

static void test_claims(void **state)
{
    (void)state;
    struct policy_config *pc =
        load("policy:\n  rules:\n"
             "    - id: own-tenant\n      effect: permit\n      tools: [get]\n"
             "      when: [{arg: /tenant_id, eq_claim: tenant}]\n"
             "    - id: self\n      effect: permit\n      tools: [me]\n"
             "      when: [{arg: /user, eq_claim: subject}, {arg: /via, eq_claim: client}]\n"
             "    - id: no-cross\n      effect: forbid\n      tools: [wipe]\n"
             "      when: [{arg: /tenant_id, eq_claim: tenant}]\n"
             "    - {id: wipe-ok, effect: permit, tools: [wipe]}\n");
    assert_non_null(pc);
    assert_int_equal(decide(pc, "get", "{\"tenant_id\": \"t1\"}", &doctor), POLICY_ALLOW);
    assert_int_equal(decide(pc, "get", "{\"tenant_id\": \"t2\"}", &doctor), POLICY_DENY_NO_MATCH);
    assert_int_equal(decide(pc, "get", "{\"tenant_id\": \"t1x\"}", &doctor), POLICY_DENY_NO_MATCH);
    struct who notenant = {"alice", NULL, "cursor", {"doctor"}, {NULL}};
    assert_int_equal(decide(pc, "get", "{\"tenant_id\": \"t1\"}", &notenant), POLICY_DENY_NO_MATCH);
    assert_int_equal(decide(pc, "me", "{\"user\": \"alice\", \"via\": \"cursor\"}", &doctor),
                     POLICY_ALLOW);
    assert_int_equal(decide(pc, "me", "{\"user\": \"alice\", \"via\": \"other\"}", &doctor),
                     POLICY_DENY_NO_MATCH);
    /* A forbid on a claim the principal lacks fails closed. */
    assert_int_equal(decide(pc, "wipe", "{\"tenant_id\": \"t9\"}", &doctor), POLICY_ALLOW);
    assert_int_equal(decide(pc, "wipe", "{\"tenant_id\": \"t1\"}", &doctor), POLICY_DENY_FORBIDDEN);
    assert_int_equal(decide(pc, "wipe", "{\"tenant_id\": \"t9\"}", &notenant),
                     POLICY_DENY_FORBIDDEN);
    assert_int_equal(decide(pc, "wipe", "{\"tenant_id\": 5}", &doctor), POLICY_DENY_FORBIDDEN);
    policy_config_free(pc);
}

/* One permit rule with one predicate; runs args through it. */
static struct policy_config *one_pred(const char *pred)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "policy:\n  rules:\n    - id: r\n      effect: permit\n      tools: [t]\n"
             "      when: [%s]\n",
             pred);
    struct policy_config *pc = load(yaml);
    assert_non_null(pc);
    return pc;
}

static int allows(const struct policy_config *pc, const char *args)
{
    return decide(pc, "t", args, &doctor) == POLICY_ALLOW;
}

static void test_pred_eq_in_prefix(void **state)
{
    (void)state;
    struct policy_config *pc = one_pred("{arg: /v, eq: 500}");
    assert_true(allows(pc, "{\"v\": 500}"));
    assert_true(allows(pc, "{\"v\": 500.0}"));
    assert_true(allows(pc, "{\"v\": \"500\"}"));
    assert_false(allows(pc, "{\"v\": 501}"));
    assert_false(allows(pc, "{\"v\": null}"));
    assert_false(allows(pc, "{\"v\": [500]}"));
    policy_config_free(pc);
    pc = one_pred("{arg: /v, eq: '500'}"); /* quoted: only the string */
    assert_true(allows(pc, "{\"v\": \"500\"}"));
    assert_false(allows(pc, "{\"v\": 500}"));
    policy_config_free(pc);
    pc = one_pred("{arg: /v, eq: 0x10}"); /* not a number: compared as text only */
    assert_true(allows(pc, "{\"v\": \"0x10\"}"));
    assert_false(allows(pc, "{\"v\": 16}"));
    policy_config_free(pc);
    pc = one_pred("{arg: /v, eq: true}");
    assert_true(allows(pc, "{\"v\": true}"));
    assert_false(allows(pc, "{\"v\": false}"));
    assert_false(allows(pc, "{\"v\": 1}"));
    policy_config_free(pc);
    pc = one_pred("{arg: /v, in: [a, 2, 'x y']}");
    assert_true(allows(pc, "{\"v\": \"a\"}"));
    assert_true(allows(pc, "{\"v\": 2}"));
    assert_true(allows(pc, "{\"v\": \"x y\"}"));
    assert_false(allows(pc, "{\"v\": \"b\"}"));
    assert_false(allows(pc, "{\"v\": {}}"));
    policy_config_free(pc);
    pc = one_pred("{arg: /v, prefix: 'reports/'}");
    assert_true(allows(pc, "{\"v\": \"reports/q1\"}"));
    assert_true(allows(pc, "{\"v\": \"reports/\"}"));
    assert_false(allows(pc, "{\"v\": \"report\"}"));
    assert_false(allows(pc, "{\"v\": 5}"));
    policy_config_free(pc);
}

static void test_pred_matches(void **state)
{
    (void)state;
    struct policy_config *pc = one_pred("{arg: /id, matches: 'P[0-9]+'}");
    assert_true(allows(pc, "{\"id\": \"P123\"}"));
    /* Anchored at both ends, whatever the pattern says. */
    assert_false(allows(pc, "{\"id\": \"P123; drop\"}"));
    assert_false(allows(pc, "{\"id\": \"xP123\"}"));
    assert_false(allows(pc, "{\"id\": 123}"));
    policy_config_free(pc);
    pc = one_pred("{arg: /id, matches: '^(a|aa)+$'}");
    assert_true(allows(pc, "{\"id\": \"aaaa\"}"));
    /* Catastrophic backtracking hits the match limit: cannot evaluate, so no permit. */
    assert_false(allows(pc, "{\"id\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\"}"));
    policy_config_free(pc);
    pc = one_pred("{arg: /id, matches: 'é+'}");
    assert_true(allows(pc, "{\"id\": \"ééé\"}"));
    policy_config_free(pc);
    /* A forbid whose regex hits the limit matches (fails closed). */
    pc = load("policy:\n  rules:\n    - {id: p, effect: permit, tools: [t]}\n"
              "    - id: f\n      effect: forbid\n      tools: [t]\n"
              "      when: [{arg: /q, matches: '(a|aa)+'}]\n");
    assert_non_null(pc);
    assert_int_equal(decide(pc, "t", "{\"q\": \"b\"}", &doctor), POLICY_ALLOW);
    assert_int_equal(decide(pc, "t", "{\"q\": \"aa\"}", &doctor), POLICY_DENY_FORBIDDEN);
    assert_int_equal(
        decide(pc, "t", "{\"q\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\"}", &doctor),
        POLICY_DENY_FORBIDDEN);
    policy_config_free(pc);
}

static void test_pred_range_exists_maxlen(void **state)
{
    (void)state;
    struct policy_config *pc = one_pred("{arg: /amount, range: {max: 500}}");
    assert_true(allows(pc, "{\"amount\": 500}"));
    assert_true(allows(pc, "{\"amount\": -3.5}"));
    assert_false(allows(pc, "{\"amount\": 500.01}"));
    assert_true(allows(pc, "{\"amount\": \"100\"}"));
    assert_false(allows(pc, "{\"amount\": \"600\"}"));
    assert_false(allows(pc, "{\"amount\": \"1e3\"}"));
    assert_false(allows(pc, "{\"amount\": \"Infinity\"}"));
    assert_false(allows(pc, "{\"amount\": true}"));
    policy_config_free(pc);
    pc = one_pred("{arg: /amount, range: {min: 0.5, max: 1}}");
    assert_true(allows(pc, "{\"amount\": 0.5}"));
    assert_false(allows(pc, "{\"amount\": 0}"));
    policy_config_free(pc);
    pc = one_pred("{arg: /dry_run, exists: false}");
    assert_true(allows(pc, "{}"));
    assert_true(allows(pc, NULL));
    assert_false(allows(pc, "{\"dry_run\": null}"));
    policy_config_free(pc);
    pc = one_pred("{arg: /dry_run, exists: true}");
    assert_true(allows(pc, "{\"dry_run\": null}"));
    assert_false(allows(pc, "{}"));
    policy_config_free(pc);
    pc = one_pred("{arg: /note, max_len: 3}");
    assert_true(allows(pc, "{\"note\": \"abc\"}"));
    assert_true(allows(pc, "{\"note\": \"\u00e9\u00e9\u00e9\"}")); /* characters, not bytes */
    assert_false(allows(pc, "{\"note\": \"abcd\"}"));
    assert_true(allows(pc, "{\"note\": [1, 2, 3]}"));
    assert_false(allows(pc, "{\"note\": [1, 2, 3, 4]}"));
    assert_false(allows(pc, "{\"note\": 12}"));
    policy_config_free(pc);
}

static void test_pred_cidr(void **state)
{
    (void)state;
    struct policy_config *pc = one_pred("{arg: /ip, cidr: ['10.0.0.0/8', '2001:db8::/32', "
                                        "'192.168.1.7']}");
    assert_true(allows(pc, "{\"ip\": \"10.1.2.3\"}"));
    assert_true(allows(pc, "{\"ip\": \"::ffff:10.9.9.9\"}"));
    assert_true(allows(pc, "{\"ip\": \"2001:db8:1::5\"}"));
    assert_true(allows(pc, "{\"ip\": \"192.168.1.7\"}"));
    assert_false(allows(pc, "{\"ip\": \"192.168.1.8\"}"));
    assert_false(allows(pc, "{\"ip\": \"11.0.0.1\"}"));
    assert_false(allows(pc, "{\"ip\": \"2001:db9::1\"}"));
    assert_false(allows(pc, "{\"ip\": \"10.0.0.1/8\"}"));
    assert_false(allows(pc, "{\"ip\": \"fe80::1%eth0\"}"));
    assert_false(allows(pc, "{\"ip\": 167772161}"));
    policy_config_free(pc);
    pc = one_pred("{arg: /ip, cidr: '0.0.0.0/0'}");
    assert_true(allows(pc, "{\"ip\": \"8.8.8.8\"}"));
    assert_false(allows(pc, "{\"ip\": \"::1\"}"));
    policy_config_free(pc);
    pc = one_pred("{arg: /ip, cidr: '10.128.0.0/9'}");
    assert_true(allows(pc, "{\"ip\": \"10.200.0.1\"}"));
    assert_false(allows(pc, "{\"ip\": \"10.127.0.1\"}"));
    policy_config_free(pc);
}

static void test_pred_host_in(void **state)
{
    (void)state;
    struct policy_config *pc = one_pred("{arg: /url, host_in: [Example.org, '*.cdn.net']}");
    assert_true(allows(pc, "{\"url\": \"https://example.org/a?b#c\"}"));
    assert_true(allows(pc, "{\"url\": \"http://EXAMPLE.org:8080\"}"));
    assert_true(allows(pc, "{\"url\": \"https://example.org./x\"}"));
    /* Userinfo is refused by the one URL parser (the egress guard refuses it too). */
    assert_false(allows(pc, "{\"url\": \"https://user:pw@example.org/\"}"));
    assert_true(allows(pc, "{\"url\": \"https://a.b.cdn.net/\"}"));
    assert_false(allows(pc, "{\"url\": \"https://cdn.net/\"}"));
    assert_false(allows(pc, "{\"url\": \"https://evilcdn.net/\"}"));
    assert_false(allows(pc, "{\"url\": \"https://example.org@evil.com/\"}"));
    assert_false(allows(pc, "{\"url\": \"https://evil.com\\\\@example.org/\"}"));
    assert_false(allows(pc, "{\"url\": \"https://evil.com#@example.org/\"}"));
    assert_false(allows(pc, "{\"url\": \"https://example.org.evil.com/\"}"));
    assert_false(allows(pc, "{\"url\": \"https://exa%6Dple.org/\"}"));
    assert_false(allows(pc, "{\"url\": \"example.org\"}"));
    assert_false(allows(pc, "{\"url\": \"https://example.org:80x/\"}"));
    assert_false(allows(pc, "{\"url\": 1}"));
    policy_config_free(pc);

    char host[64];
    assert_int_equal(policy_url_host("http://[::1]:8080/x", 19, host, sizeof host), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(policy_url_host("http://[::1]x/", 14, host, sizeof host), -1);
    assert_int_equal(policy_url_host("http:///x", 9, host, sizeof host), -1);
    assert_int_equal(policy_url_host("", 0, host, sizeof host), -1);
}

static void test_pointer(void **state)
{
    (void)state;
    struct policy_config *pc = one_pred("{arg: '/a~1b/m~0n/1', eq: x}");
    assert_true(allows(pc, "{\"a/b\": {\"m~n\": [\"w\", \"x\"]}}"));
    assert_false(allows(pc, "{\"a/b\": {\"m~n\": [\"x\"]}}"));
    assert_false(allows(pc, "{\"a/b\": {\"m~n\": {\"1\": \"y\"}}}"));
    policy_config_free(pc);
    pc = one_pred("{arg: '/a/01', eq: x}"); /* a leading zero is not an index */
    assert_false(allows(pc, "{\"a\": [\"w\", \"x\"]}"));
    assert_true(allows(pc, "{\"a\": {\"01\": \"x\"}}"));
    policy_config_free(pc);
    pc = one_pred("{arg: '/a/-', exists: true}");
    assert_false(allows(pc, "{\"a\": [1]}"));
    policy_config_free(pc);
    pc = one_pred("{arg: '/', eq: x}"); /* the member named "" */
    assert_true(allows(pc, "{\"\": \"x\"}"));
    policy_config_free(pc);
}

static void test_insufficient_scope(void **state)
{
    (void)state;
    struct policy_config *pc = load("policy:\n  rules:\n"
                                    "    - id: write\n      effect: permit\n      tools: [note]\n"
                                    "      roles_any: [doctor]\n"
                                    "      required_scopes: [patients.write, tools.write]\n"
                                    "      when: [{arg: /text, max_len: 10}]\n"
                                    "    - id: nolong\n      effect: forbid\n      tools: [note]\n"
                                    "      when: [{arg: /text, max_len: 0}]\n");
    assert_non_null(pc);
    struct policy_result res;
    assert_int_equal(
        decide_full(pc, POLICY_ACTION_TOOL, "note", "{\"text\": \"hi\"}", &doctor, &res),
        POLICY_DENY_SCOPE);
    assert_string_equal(res.scopes, "patients.write tools.write");
    assert_string_equal(res.rule_id, "write");
    assert_true(res.visible);
    /* Arguments failing too: not a scope problem. */
    assert_int_equal(decide(pc, "note", "{\"text\": \"far too long text\"}", &doctor),
                     POLICY_DENY_NO_MATCH);
    /* A matching forbid wins over the step-up. */
    assert_int_equal(decide(pc, "note", "{\"text\": \"\"}", &doctor), POLICY_DENY_FORBIDDEN);
    struct who full = {"alice", "t1", NULL, {"doctor"}, {"patients.write", "tools.write"}};
    assert_int_equal(decide(pc, "note", "{\"text\": \"hi\"}", &full), POLICY_ALLOW);
    /* Someone who could never match sees nothing. */
    assert_int_equal(decide(pc, "note", "{\"text\": \"hi\"}", &nobody), POLICY_DENY_HIDDEN);
    policy_config_free(pc);
}

static void test_scope_hierarchy(void **state)
{
    (void)state;
    struct policy_config *pc =
        load("policy:\n  scope_implies:\n"
             "    patients.admin: [patients.write]\n"
             "    patients.write: [patients.read]\n"
             "    all: ['*']\n"
             "    records: ['records.*']\n"
             "  rules:\n"
             "    - {id: read, effect: permit, tools: [get], scopes_all: [patients.read]}\n"
             "    - {id: rec, effect: permit, tools: [rec], scopes_any: [records.view]}\n"
             "    - id: write\n      effect: permit\n      tools: [note]\n"
             "      scopes_all: [patients.read]\n      required_scopes: [patients.write]\n");
    assert_non_null(pc);
    /* A broader scope implies the narrower ones, through the chain. */
    struct who admin = {"a", "t1", NULL, {NULL}, {"patients.admin"}};
    struct who writer = {"w", "t1", NULL, {NULL}, {"patients.write"}};
    struct who reader = {"r", "t1", NULL, {NULL}, {"patients.read"}};
    struct who rec = {"x", "t1", NULL, {NULL}, {"records"}};
    struct who root = {"z", "t1", NULL, {NULL}, {"all"}};
    struct who other = {"o", "t1", NULL, {NULL}, {"patients"}};
    assert_int_equal(decide(pc, "get", "{}", &admin), POLICY_ALLOW);
    assert_int_equal(decide(pc, "get", "{}", &writer), POLICY_ALLOW);
    assert_int_equal(decide(pc, "get", "{}", &reader), POLICY_ALLOW);
    assert_int_equal(decide(pc, "note", "{}", &admin), POLICY_ALLOW);
    assert_int_equal(decide(pc, "rec", "{}", &rec), POLICY_ALLOW);
    assert_int_equal(decide(pc, "rec", "{}", &root), POLICY_ALLOW);
    /* Never upwards, and a name that only looks broader implies nothing. */
    assert_int_equal(decide(pc, "note", "{}", &reader), POLICY_DENY_SCOPE);
    assert_int_equal(decide(pc, "get", "{}", &other), POLICY_DENY_HIDDEN);
    assert_int_equal(decide(pc, "rec", "{}", &reader), POLICY_DENY_HIDDEN);
    /* The step-up names every scope the call needs, held ones included. */
    struct policy_result res;
    assert_int_equal(decide_full(pc, POLICY_ACTION_TOOL, "note", "{}", &reader, &res),
                     POLICY_DENY_SCOPE);
    assert_string_equal(res.scopes, "patients.read patients.write");
    policy_config_free(pc);
    /* Bounds and shapes. */
    expect_err("policy:\n  scope_implies: [a]\n", "scope_implies");
    expect_err("policy:\n  scope_implies: {a: ['']}\n", "empty scope");
}

static void test_actions(void **state)
{
    (void)state;
    struct policy_config *pc =
        load("policy:\n  rules:\n"
             "    - id: files\n      effect: permit\n"
             "      resources: ['file:///shared/*']\n"
             "      when: [{arg: /uri, max_len: 100}]\n"
             "    - {id: pr, effect: permit, action: prompts/get, prompts: [summary]}\n"
             "    - {id: tl, effect: permit, action: tools/call, tools: [summary]}\n");
    assert_non_null(pc);
    struct policy_result res;
    assert_int_equal(decide_full(pc, POLICY_ACTION_RESOURCE, "file:///shared/a.txt",
                                 "{\"uri\": \"file:///shared/a.txt\"}", &doctor, &res),
                     POLICY_ALLOW);
    assert_int_equal(decide_full(pc, POLICY_ACTION_RESOURCE, "file:///etc/passwd",
                                 "{\"uri\": \"file:///etc/passwd\"}", &doctor, &res),
                     POLICY_DENY_HIDDEN);
    assert_int_equal(decide_full(pc, POLICY_ACTION_PROMPT, "summary", NULL, &doctor, &res),
                     POLICY_ALLOW);
    assert_string_equal(res.rule_id, "pr");
    assert_int_equal(decide_full(pc, POLICY_ACTION_PROMPT, "other", NULL, &doctor, &res),
                     POLICY_DENY_HIDDEN);
    assert_int_equal(decide_full(pc, POLICY_ACTION_TOOL, "summary", NULL, &doctor, &res),
                     POLICY_ALLOW);
    assert_string_equal(res.rule_id, "tl");
    assert_int_equal(policy_action_for_method("tools/call"), POLICY_ACTION_TOOL);
    assert_int_equal(policy_action_for_method("tools/list"), -1);
    assert_int_equal(policy_action_for_method(NULL), -1);
    policy_config_free(pc);
}

static void test_message_and_explain(void **state)
{
    (void)state;
    struct policy_config *pc =
        load("policy:\n  rules:\n"
             "    - {id: p, effect: permit, tools: [pay], roles_any: [billing]}\n"
             "    - id: cap\n      effect: forbid\n      tools: [pay]\n"
             "      message: Charges above 500 need a second approver.\n"
             "      when: [{arg: /amount, range: {min: 500.01}}]\n");
    assert_non_null(pc);
    struct who bob = {"bob", NULL, NULL, {"billing"}, {NULL}};
    struct policy_principal p = {.subject = "bob", .roles = bob.roles, .n_roles = 1};
    json_t *args = json_pack("{s:i}", "amount", 900);
    struct policy_query q = {POLICY_ACTION_TOOL, "pay", 3, args, &p, NULL};
    struct policy_result res;
    struct gw_buf why = {0};
    assert_int_equal(policy_decide(pc, &q, &res, &why), POLICY_DENY_FORBIDDEN);
    assert_string_equal(res.message, "Charges above 500 need a second approver.");
    assert_non_null(strstr(why.data, "permit p (line 3): MATCH"));
    assert_non_null(strstr(why.data, "forbid cap (line 4): MATCH"));
    gw_buf_reset(&why);
    p.n_roles = 0;
    assert_int_equal(policy_decide(pc, &q, &res, &why), POLICY_DENY_HIDDEN);
    assert_non_null(strstr(why.data, "roles_any does not hold"));
    gw_buf_free(&why);
    json_decref(args);
    policy_config_free(pc);
}

/* ---- config errors ---- */

static void test_config_errors(void **state)
{
    (void)state;
    expect_err("policy:\n  rulez: []\n", "t.yaml:2:3: policy.rulez: unknown key");
    expect_err("policy:\n  rules:\n    - {id: a, effect: permit, tool: [x]}\n",
               "policy.rules[0].tool: unknown key");
    expect_err("policy:\n  rules:\n    - {effect: permit}\n", "policy.rules[0].id: required");
    expect_err("policy:\n  rules:\n    - {id: 'a b', effect: permit}\n", "rule ids are");
    expect_err("policy:\n  rules:\n    - {id: a, effect: allow}\n", "effect is permit or forbid");
    expect_err("policy:\n  rules:\n    - {id: a, effect: permit}\n    - {id: b, effect: permit}\n"
               "    - {id: a, effect: forbid}\n",
               "t.yaml:5:1: policy.rules: duplicate rule id \"a\" (first defined at line 3)");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: /x, matches: 'P[0-9'}]\n",
               "t.yaml:5:33: policy.rules[0].when[0].matches: bad regular expression at offset 5");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: /x, cidr: ['10.0.0.0/8', '10.0.0.1/8']}]\n",
               "policy.rules[0].when[0].cidr[1]: \"10.0.0.1/8\" has host bits set");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: /x, cidr: '300.0.0.0/8'}]\n",
               "is not an IPv4 or IPv6 address");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: /x, cidr: '::/129'}]\n",
               "prefix length");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: '/x~2', eq: 1}]\n",
               "policy.rules[0].when[0].arg: \"~\" must be followed by 0 or 1");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: x, eq: 1}]\n",
               "starts with \"/\"");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: /x}]\n",
               "no operator");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: /x, eq: 1, prefix: a}]\n",
               "one operator per condition");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: /x, range: {min: 5, max: 1}}]\n",
               "min is greater than max");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: /x, range: {}}]\n",
               "give min, max or both");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: /x, range: {max: big}}]\n",
               "\"big\" is not a number");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: /x, range: {max: inf}}]\n",
               "\"inf\" is not a number");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: /x, host_in: ['https://a.org']}]\n",
               "is not a host name");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: /x, eq_claim: email}]\n",
               "is not a claim");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: /x, max_len: -1}]\n",
               "out of range");
    expect_err("policy:\n  rules:\n    - id: a\n      effect: permit\n"
               "      when: [{arg: /x, in: []}]\n",
               "empty list");
    expect_err("policy:\n  rules:\n    - {id: a, effect: permit, tools: [x], resources: [y]}\n",
               "a rule governs one action");
    expect_err(
        "policy:\n  rules:\n    - {id: a, effect: permit, action: prompts/get, tools: [x]}\n",
        "does not go with the key `tools`");
    expect_err("policy:\n  rules:\n    - {id: a, effect: permit, action: tools/list}\n",
               "action is tools/call, resources/read or prompts/get");
    expect_err("policy:\n  rules:\n    - {id: a, effect: forbid, required_scopes: [x]}\n",
               "required_scopes belongs on permit rules");
    expect_err("policy:\n  rules:\n    - {id: a, effect: permit, roles_any: []}\n", "empty list");
    expect_err("policy:\n  rules:\n    - {id: a, effect: permit, roles_any: ['']}\n",
               "empty string");
    expect_err("policy:\n  rules: {a: 1}\n", "policy.rules: expected a list");
    expect_err("policy: [1]\n", "expected a map");
}

static void test_config_tests_paths(void **state)
{
    (void)state;
    struct cfg_doc doc;
    struct cfg_error err = {{0}};
    struct policy_config *pc = NULL;
    const char *y = "policy:\n  tests: [a.tests.yaml, /abs/b.yaml]\n";
    assert_int_equal(cfg_load_string(y, strlen(y), "/etc/tg/config.yaml", &doc, &err), 0);
    assert_int_equal(policy_config_parse(&doc, cfg_map_get(doc.root, "policy"), &pc, &err), 0);
    assert_int_equal(policy_config_test_count(pc), 2);
    assert_string_equal(policy_config_test_path(pc, 0), "/etc/tg/a.tests.yaml");
    assert_string_equal(policy_config_test_path(pc, 1), "/abs/b.yaml");
    assert_null(policy_config_test_path(pc, 2));
    assert_int_equal(policy_config_rule_count(pc), 0);
    policy_config_free(pc);
    cfg_doc_free(&doc);
}

/* Many rules: the index must find exactly the rules of the target. */
static void test_index_many(void **state)
{
    (void)state;
    struct gw_buf y = {0};
    gw_buf_append_str(&y, "policy:\n  rules:\n");
    for (int i = 0; i < 3000; i++)
        gw_buf_printf(&y, "    - {id: r%d, effect: permit, tools: [tool%d, \"g%d.*\"]}\n", i, i,
                      i % 7);
    struct policy_config *pc = load(y.data);
    gw_buf_free(&y);
    assert_non_null(pc);
    uint32_t *c = NULL;
    size_t cap = 0;
    long n = policy_index_lookup(pc, POLICY_ACTION_TOOL, "tool1234", 8, &c, &cap);
    assert_int_equal(n, 1);
    assert_int_equal(c[0], 1234);
    n = policy_index_lookup(pc, POLICY_ACTION_TOOL, "g3.x", 4, &c, &cap);
    assert_int_equal(n, 3000 / 7 + (3 < 3000 % 7));
    for (long i = 1; i < n; i++)
        assert_true(c[i - 1] < c[i]);
    n = policy_index_lookup(pc, POLICY_ACTION_TOOL, "nothing", 7, &c, &cap);
    assert_int_equal(n, 0);
    free(c);
    policy_config_free(pc);
}

/*
 * Equality by value, not by spelling: a forbid on a number catches every spelling a backend
 * would read as that number, and every spelling some backend might, while text that is no
 * number in any reading stays text.
 */
static void test_numeric_forms(void **state)
{
    (void)state;
    struct policy_config *pc =
        load("policy:\n  rules:\n"
             "    - {id: any, effect: permit, tools: [pay], roles_any: [doctor]}\n"
             "    - {id: big, effect: forbid, tools: [pay], when: [{arg: /n, eq: 500}]}\n");
    static const char *const caught[] = {
        "500",
        "500.0",
        "\"500\"",
        "\"500.0\"",
        "\"0500\"",
        "\" 500\"",
        "\"500 \"",
        "\"5e2\"",
        "\"+500\"",
        "\"0x1f4\"",
        "\"0X1F4\"",
        "\"0o764\"",
        "\"0b111110100\"",
        "5e2",
        "\".5e3\"",
        "\"5000e-1\"",
        /* Readings differ: unknown, so the forbid holds. */
        "\"5_00\"",
        "\"500,0\"",
        "\"\\u0665\\u0660\\u0660\"",
        "\"Infinity\"",
        "\"0x\"",
        "\"500 apples\"",
    };
    for (size_t i = 0; i < sizeof caught / sizeof caught[0]; i++) {
        char args[128];
        snprintf(args, sizeof args, "{\"n\": %s}", caught[i]);
        if (decide(pc, "pay", args, &doctor) != POLICY_DENY_FORBIDDEN)
            fail_msg("%s slipped past the forbid", caught[i]);
    }
    static const char *const passed[] = {"499",  "\"501\"", "\"P500\"",      "\"five hundred\"",
                                         "true", "\"\"",    "\"apples 500\""};
    for (size_t i = 0; i < sizeof passed / sizeof passed[0]; i++) {
        char args[128];
        snprintf(args, sizeof args, "{\"n\": %s}", passed[i]);
        if (decide(pc, "pay", args, &doctor) != POLICY_ALLOW)
            fail_msg("%s was wrongly forbidden", passed[i]);
    }
    policy_config_free(pc);
    double d;
    assert_int_equal(policy_numeric_reading(" 12.5 ", 6, &d), 1);
    assert_true(d == 12.5);
    assert_int_equal(policy_numeric_reading("abc", 3, &d), 0);
    assert_int_equal(policy_numeric_reading("1e999", 5, &d), -1);
}

/* A forbid holds whatever case the name is written in; permits stay exact. */
static void test_forbid_ignores_case(void **state)
{
    (void)state;
    struct policy_config *pc =
        load("policy:\n  rules:\n"
             "    - {id: all, effect: permit, tools: ['*'], roles_any: [doctor]}\n"
             "    - {id: nodel, effect: forbid, tools: [delete_patient, 'Purge_*']}\n"
             "    - {id: exact, effect: permit, tools: [get_patient], roles_any: [nurse]}\n");
    static const char *const forbidden[] = {"delete_patient", "Delete_Patient", "DELETE_PATIENT",
                                            "purge_all",      "PURGE_x",        "Purge_y"};
    for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++)
        if (decide(pc, forbidden[i], "{}", &doctor) != POLICY_DENY_FORBIDDEN &&
            decide(pc, forbidden[i], "{}", &doctor) != POLICY_DENY_HIDDEN)
            fail_msg("%s slipped past the forbid", forbidden[i]);
    assert_int_equal(decide(pc, "delete_patients", "{}", &doctor), POLICY_ALLOW);
    static const struct who nurse = {"nina", "t1", "cursor", {"nurse"}, {"patients.read"}};
    assert_int_equal(decide(pc, "get_patient", "{}", &nurse), POLICY_ALLOW);
    assert_int_not_equal(decide(pc, "Get_Patient", "{}", &nurse), POLICY_ALLOW);
    policy_config_free(pc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numeric_forms),
        cmocka_unit_test(test_forbid_ignores_case),
        cmocka_unit_test(test_default_deny),
        cmocka_unit_test(test_forbid_wins),
        cmocka_unit_test(test_permit_fail_closed),
        cmocka_unit_test(test_globs_and_index),
        cmocka_unit_test(test_principal_conditions),
        cmocka_unit_test(test_claims),
        cmocka_unit_test(test_pred_eq_in_prefix),
        cmocka_unit_test(test_pred_matches),
        cmocka_unit_test(test_pred_range_exists_maxlen),
        cmocka_unit_test(test_pred_cidr),
        cmocka_unit_test(test_pred_host_in),
        cmocka_unit_test(test_pointer),
        cmocka_unit_test(test_insufficient_scope),
        cmocka_unit_test(test_scope_hierarchy),
        cmocka_unit_test(test_actions),
        cmocka_unit_test(test_message_and_explain),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_tests_paths),
        cmocka_unit_test(test_index_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
