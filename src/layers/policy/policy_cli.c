/*
 * policy_cli: policy test files and the `toolgate policy test|explain` commands.
 *
 * A test file is YAML with one key, `tests`, a list of cases:
 *   - name: alice reads a patient
 *     principal: {sub: alice, roles: [doctor], scopes: [patients.read], tenant: t1, client: c}
 *     tool: get_patient              # or resource: <uri>, or prompt: <name>
 *     action: tools/call             # optional; implied by tool/resource/prompt
 *     arguments: {patient_id: P1}    # or arguments_json: '{"patient_id": "P1"}'
 *     expect: allow                  # allow | deny
 *     rule: doctors-read             # optional: must be among the determining rules
 *     code: policy.permit            # optional: the exact reason code
 */
#include "layers/policy/policy-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- YAML values to JSON ---- */

static json_t *scalar_to_json(const struct cfg_node *n)
{
    const char *s = n->scalar;
    if (n->quoted)
        return json_string(s);
    if (cfg_is_null(n))
        return json_null();
    if (strcmp(s, "true") == 0)
        return json_true();
    if (strcmp(s, "false") == 0)
        return json_false();
    /* Only JSON-style numbers: "0x10", "inf" and "nan" stay strings. */
    if (strspn(s, "0123456789+-.eE") != strlen(s) || strpbrk(s, "0123456789") == NULL)
        return json_string(s);
    char *end = NULL;
    errno = 0;
    long long iv = strtoll(s, &end, 10);
    if (*s && errno == 0 && *end == '\0')
        return json_integer(iv);
    errno = 0;
    double d = strtod(s, &end);
    if (*s && errno == 0 && *end == '\0' && d == d && d - d == 0)
        return json_real(d);
    return json_string(s);
}

/* Converts a YAML subtree to JSON (unquoted scalars take their natural JSON type). */
static json_t *node_to_json(const struct cfg_node *n)
{
    if (!n)
        return NULL;
    if (n->kind == CFG_SCALAR)
        return scalar_to_json(n);
    json_t *out = n->kind == CFG_MAP ? json_object() : json_array();
    if (!out)
        return NULL;
    for (size_t i = 0; i < n->n; i++) {
        json_t *v = node_to_json(n->items[i]);
        int rc = !v                   ? -1
                 : n->kind == CFG_MAP ? json_object_set_new(out, n->keys[i], v)
                                      : json_array_append_new(out, v);
        if (rc != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* ---- principals ---- */

struct owned_principal {
    struct policy_principal p;
    char *subject, *tenant, *client;
    char **roles, **scopes;
};

static void owned_principal_free(struct owned_principal *op)
{
    free(op->subject);
    free(op->tenant);
    free(op->client);
    cfg_strv_free(op->roles);
    cfg_strv_free(op->scopes);
    memset(op, 0, sizeof *op);
}

/* Splits on spaces and commas into a NULL-terminated malloc'd vector. */
static char **split_words(const char *s, size_t *count)
{
    size_t cap = 1;
    for (const char *c = s; *c; c++)
        if (*c == ' ' || *c == ',')
            cap++;
    char **v = calloc(cap + 1, sizeof *v);
    if (!v)
        return NULL;
    size_t n = 0;
    const char *c = s;
    while (*c) {
        while (*c == ' ' || *c == ',')
            c++;
        const char *st = c;
        while (*c && *c != ' ' && *c != ',')
            c++;
        if (c > st) {
            v[n] = strndup(st, (size_t)(c - st));
            if (!v[n]) {
                cfg_strv_free(v);
                return NULL;
            }
            n++;
        }
    }
    *count = n;
    return v;
}

/* A list of strings, or one string of space/comma-separated words. */
static int words_of(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                    const char *key, char ***out, size_t *n, struct cfg_error *err)
{
    const struct cfg_node *node = cfg_map_get(map, key);
    if (node && node->kind == CFG_SCALAR && !cfg_is_null(node)) {
        char **v = split_words(node->scalar, n);
        if (!v)
            return cfg_errorf(err, doc, node, path, "out of memory");
        cfg_strv_free(*out);
        *out = v;
        return 0;
    }
    return cfg_get_string_list(doc, map, path, key, out, n, err);
}

static int principal_parse(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                           struct owned_principal *op, struct cfg_error *err)
{
    static const char *const keys[] = {"sub", "roles", "scopes", "tenant", "client", NULL};
    if (cfg_check_keys(doc, node, path, keys, err) != 0 ||
        cfg_get_string(doc, node, path, "sub", 0, &op->subject, err) != 0 ||
        cfg_get_string(doc, node, path, "tenant", 0, &op->tenant, err) != 0 ||
        cfg_get_string(doc, node, path, "client", 0, &op->client, err) != 0 ||
        words_of(doc, node, path, "roles", &op->roles, &op->p.n_roles, err) != 0 ||
        words_of(doc, node, path, "scopes", &op->scopes, &op->p.n_scopes, err) != 0)
        return -1;
    op->p.subject = op->subject;
    op->p.tenant = op->tenant;
    op->p.client_id = op->client;
    op->p.roles = (const char *const *)op->roles;
    op->p.scopes = (const char *const *)op->scopes;
    return 0;
}

/* ---- test files ---- */

struct test_case {
    char *name;
    struct owned_principal principal;
    enum policy_action action;
    char *target;
    json_t *arguments;
    int expect_allow;
    char *rule;
    char *code;
};

static void test_case_free(struct test_case *tc)
{
    free(tc->name);
    owned_principal_free(&tc->principal);
    free(tc->target);
    json_decref(tc->arguments);
    free(tc->rule);
    free(tc->code);
    memset(tc, 0, sizeof *tc);
}

static int test_case_parse(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                           struct test_case *tc, struct cfg_error *err)
{
    static const char *const keys[] = {"name",     "principal", "action",    "tool",
                                       "resource", "prompt",    "arguments", "arguments_json",
                                       "expect",   "rule",      "code",      NULL};
    static const char *const target_keys[POLICY_ACTION_COUNT] = {"tool", "resource", "prompt"};
    char p[300];
    if (cfg_check_keys(doc, node, path, keys, err) != 0 ||
        cfg_get_string(doc, node, path, "name", 0, &tc->name, err) != 0 ||
        cfg_get_string(doc, node, path, "rule", 0, &tc->rule, err) != 0 ||
        cfg_get_string(doc, node, path, "code", 0, &tc->code, err) != 0)
        return -1;
    const struct cfg_node *pn = cfg_map_get(node, "principal");
    cfg_path_key(p, sizeof p, path, "principal");
    if (pn && principal_parse(doc, pn, p, &tc->principal, err) != 0)
        return -1;
    int by_key = -1;
    for (int a = 0; a < POLICY_ACTION_COUNT; a++) {
        if (!cfg_map_get(node, target_keys[a]))
            continue;
        if (by_key >= 0)
            return cfg_errorf(err, doc, node, path, "give one of tool, resource, prompt");
        by_key = a;
    }
    if (by_key < 0)
        return cfg_errorf(err, doc, node, path, "missing tool, resource or prompt");
    tc->action = (enum policy_action)by_key;
    if (cfg_get_string(doc, node, path, target_keys[by_key], 1, &tc->target, err) != 0)
        return -1;
    const struct cfg_node *an = cfg_map_get(node, "action");
    cfg_path_key(p, sizeof p, path, "action");
    if (an && (an->kind != CFG_SCALAR || policy_action_for_method(an->scalar) != by_key))
        return cfg_errorf(err, doc, an, p, "action must be %s for a `%s` case",
                          policy_action_name((enum policy_action)by_key), target_keys[by_key]);

    const struct cfg_node *args = cfg_map_get(node, "arguments");
    const struct cfg_node *aj = cfg_map_get(node, "arguments_json");
    if (args && aj)
        return cfg_errorf(err, doc, aj, path, "give arguments or arguments_json, not both");
    if (args && !cfg_is_null(args)) {
        cfg_path_key(p, sizeof p, path, "arguments");
        if (args->kind != CFG_MAP)
            return cfg_errorf(err, doc, args, p, "arguments is a map");
        tc->arguments = node_to_json(args);
        if (!tc->arguments)
            return cfg_errorf(err, doc, args, p, "out of memory");
    } else if (aj) {
        cfg_path_key(p, sizeof p, path, "arguments_json");
        if (aj->kind != CFG_SCALAR)
            return cfg_errorf(err, doc, aj, p, "arguments_json is a string of JSON");
        json_error_t je;
        tc->arguments = json_loads(aj->scalar, JSON_REJECT_DUPLICATES, &je);
        if (!tc->arguments)
            return cfg_errorf(err, doc, aj, p, "bad JSON at offset %d: %s", je.position, je.text);
    }

    char *expect = NULL;
    if (cfg_get_string(doc, node, path, "expect", 1, &expect, err) != 0)
        return -1;
    int ok = strcmp(expect, "allow") == 0 || strcmp(expect, "deny") == 0;
    tc->expect_allow = strcmp(expect, "allow") == 0;
    free(expect);
    cfg_path_key(p, sizeof p, path, "expect");
    if (!ok)
        return cfg_errorf(err, doc, cfg_map_get(node, "expect"), p, "expect is allow or deny");
    return 0;
}

static int id_in_list(const char *list, const char *id)
{
    size_t il = strlen(id);
    const char *c = list;
    while (*c) {
        const char *e = strchr(c, ',');
        size_t l = e ? (size_t)(e - c) : strlen(c);
        if (l == il && memcmp(c, id, il) == 0)
            return 1;
        c += l + (e ? 1 : 0);
    }
    return 0;
}

int policy_run_tests(const struct policy_config *pc, const char *file, FILE *out)
{
    struct cfg_doc doc;
    struct cfg_error err = {{0}};
    int failures = 0;
    size_t passed = 0;
    if (cfg_load_file(file, &doc, &err) != 0) {
        fprintf(out, "%s\n", err.msg);
        return -1;
    }
    static const char *const keys[] = {"tests", NULL};
    const struct cfg_node *tests = cfg_map_get(doc.root, "tests");
    if (cfg_check_keys(&doc, doc.root, "", keys, &err) != 0 ||
        cfg_expect_seq(&doc, tests, "tests", &err) != 0) {
        fprintf(out, "%s\n", err.msg);
        failures = -1;
        goto out;
    }
    fprintf(out, "%s\n", file);
    fprintf(out, "  %-4s %-6s %-6s %-6s %-27s %-24s %s\n", "#", "result", "expect", "got", "code",
            "rule(s)", "name");
    for (size_t i = 0; i < tests->n; i++) {
        struct test_case tc;
        char p[64];
        memset(&tc, 0, sizeof tc);
        cfg_path_index(p, sizeof p, "tests", i);
        if (test_case_parse(&doc, tests->items[i], p, &tc, &err) != 0) {
            fprintf(out, "%s\n", err.msg);
            test_case_free(&tc);
            failures = -1;
            goto out;
        }
        tc.principal.p.scope_model = pc;
        struct policy_query q = {
            .action = tc.action,
            .target = tc.target,
            .target_len = strlen(tc.target),
            .arguments = tc.arguments,
            .principal = &tc.principal.p,
        };
        struct policy_result res;
        enum policy_outcome o = policy_decide(pc, &q, &res, NULL);
        /* Statically: a call that needs approval does not go through until someone approves it. */
        int needs_approval = o == POLICY_ALLOW && res.approval.by != POLICY_APPROVAL_NONE;
        int allowed = o == POLICY_ALLOW && !needs_approval;
        const char *code = needs_approval ? "policy.approval_required" : policy_outcome_code(o);
        int ok = allowed == tc.expect_allow;
        if (ok && tc.rule && !id_in_list(res.rule_id, tc.rule))
            ok = 0;
        if (ok && tc.code && strcmp(tc.code, code) != 0)
            ok = 0;
        fprintf(out, "  %-4zu %-6s %-6s %-6s %-27s %-24s %s\n", i + 1, ok ? "ok" : "FAIL",
                tc.expect_allow ? "allow" : "deny", allowed ? "allow" : "deny", code,
                res.rule_id[0] ? res.rule_id : "-", tc.name ? tc.name : tc.target);
        if (!ok && (tc.rule || tc.code))
            fprintf(out, "       expected%s%s%s%s\n", tc.code ? " code " : "",
                    tc.code ? tc.code : "", tc.rule ? " rule " : "", tc.rule ? tc.rule : "");
        if (ok)
            passed++;
        else
            failures++;
        test_case_free(&tc);
    }
    fprintf(out, "  %zu policy case(s) passed, %d failed\n", passed, failures);
out:
    cfg_doc_free(&doc);
    return failures;
}

/* ---- the command ---- */

static void cli_usage(FILE *out)
{
    fprintf(out,
            "usage: toolgate policy test --config FILE [TESTFILE...]\n"
            "       toolgate policy explain --config FILE [--sub S] [--roles R] [--scopes S]\n"
            "               [--tenant T] [--client C] (--tool N | --resource URI | --prompt N)\n"
            "               [--args JSON] [--annotations JSON]\n"
            "  test     runs policy test files (default: the config's policy.tests); exit 1 on\n"
            "           any mismatch\n"
            "  explain  prints the decision for one call and why; exit 0 allow, 1 deny\n"
            "  roles and scopes are space- or comma-separated lists\n");
}

/* Loads the config file's `policy` section alone (other sections are not looked at). */
static int load_policy(const char *path, struct policy_config **pc)
{
    struct cfg_doc doc;
    struct cfg_error err = {{0}};
    *pc = NULL;
    if (cfg_load_file(path, &doc, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    int rc = 0;
    const struct cfg_node *section = cfg_map_get(doc.root, "policy");
    if (!section)
        fprintf(stderr, "%s: no `policy` section: every governed action is denied\n", path);
    else if (policy_config_parse(&doc, section, pc, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        rc = -1;
    }
    cfg_doc_free(&doc);
    return rc;
}

static int cli_test(int argc, char **argv)
{
    const char *config = NULL;
    int first_file = argc;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (argv[i][0] == '-') {
            cli_usage(stderr);
            return 2;
        } else {
            first_file = i;
            break;
        }
    }
    if (!config) {
        cli_usage(stderr);
        return 2;
    }
    struct policy_config *pc = NULL;
    if (load_policy(config, &pc) != 0)
        return 2;
    int bad = 0;
    size_t files = 0;
    if (first_file < argc) {
        for (int i = first_file; i < argc; i++, files++)
            if (policy_run_tests(pc, argv[i], stdout) != 0)
                bad = 1;
    } else {
        for (size_t i = 0; i < policy_config_test_count(pc); i++, files++)
            if (policy_run_tests(pc, policy_config_test_path(pc, i), stdout) != 0)
                bad = 1;
    }
    if (files == 0) {
        fprintf(stderr, "%s: no test files given and policy.tests is empty\n", config);
        bad = 1;
    }
    policy_config_free(pc);
    return bad ? 1 : 0;
}

static int cli_explain(int argc, char **argv)
{
    const char *config = NULL, *sub = NULL, *roles = "", *scopes = "", *tenant = NULL,
               *client = NULL, *args = NULL, *target = NULL, *annotations = NULL;
    int action = -1;
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (i + 1 >= argc) {
            cli_usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(o, "--config") == 0)
            config = v;
        else if (strcmp(o, "--sub") == 0)
            sub = v;
        else if (strcmp(o, "--roles") == 0)
            roles = v;
        else if (strcmp(o, "--scopes") == 0)
            scopes = v;
        else if (strcmp(o, "--tenant") == 0)
            tenant = v;
        else if (strcmp(o, "--client") == 0)
            client = v;
        else if (strcmp(o, "--args") == 0)
            args = v;
        else if (strcmp(o, "--annotations") == 0)
            annotations = v;
        else if (strcmp(o, "--tool") == 0 || strcmp(o, "--resource") == 0 ||
                 strcmp(o, "--prompt") == 0) {
            if (target) {
                cli_usage(stderr);
                return 2;
            }
            target = v;
            action = o[2] == 't'   ? POLICY_ACTION_TOOL
                     : o[2] == 'r' ? POLICY_ACTION_RESOURCE
                                   : POLICY_ACTION_PROMPT;
        } else {
            cli_usage(stderr);
            return 2;
        }
    }
    if (!config || !target) {
        cli_usage(stderr);
        return 2;
    }
    int rc = 2;
    struct policy_config *pc = NULL;
    json_t *arguments = NULL;
    char **rolev = NULL, **scopev = NULL;
    struct gw_buf why = {0};
    struct policy_principal pr = {.subject = sub, .tenant = tenant, .client_id = client};
    if (args) {
        json_error_t je;
        arguments = json_loads(args, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(arguments)) {
            fprintf(stderr, "--args: expected a JSON object (%s)\n",
                    arguments ? "got another type" : je.text);
            goto out;
        }
    }
    rolev = split_words(roles, &pr.n_roles);
    scopev = split_words(scopes, &pr.n_scopes);
    if (!rolev || !scopev)
        goto out;
    pr.roles = (const char *const *)rolev;
    pr.scopes = (const char *const *)scopev;
    struct policy_annotations hints;
    if (annotations) {
        json_error_t je;
        json_t *aj = json_loads(annotations, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(aj)) {
            fprintf(stderr, "--annotations: expected a JSON object (%s)\n",
                    aj ? "got another type" : je.text);
            json_decref(aj);
            goto out;
        }
        policy_annotations_from_json(aj, &hints);
        json_decref(aj);
    }
    if (load_policy(config, &pc) != 0)
        goto out;
    pr.scope_model = pc;
    struct policy_query q = {.action = (enum policy_action)action,
                             .target = target,
                             .target_len = strlen(target),
                             .arguments = arguments,
                             .principal = &pr,
                             .annotations = annotations ? &hints : NULL};
    struct policy_result res;
    enum policy_outcome o = policy_decide(pc, &q, &res, &why);
    /* A call that needs approval is denied until it is approved (explain cannot ask). */
    int needs_approval = o == POLICY_ALLOW && res.approval.by != POLICY_APPROVAL_NONE;
    if (needs_approval)
        printf("decision: deny (policy.approval_required)\n");
    else
        printf("decision: %s (%s)\n", o == POLICY_ALLOW ? "allow" : "deny", policy_outcome_code(o));
    printf("action:   %s %s\n", policy_action_name(q.action), target);
    printf("rules:    %s\n", res.rule_id[0] ? res.rule_id : "-");
    printf("visible:  %s\n", res.visible ? "yes" : "no (answered as if it did not exist)");
    if (o == POLICY_DENY_SCOPE)
        printf("step-up:  403 insufficient_scope, scope=\"%s\"\n", res.scopes);
    if (res.message[0])
        printf("message:  %s\n", res.message);
    if (needs_approval)
        printf("approval: needed from %s%s (rule %s, ttl %llus)\n",
               res.approval.by == POLICY_APPROVAL_USER ? "the user" : "role ", res.approval.role,
               res.approval.rule_id, (unsigned long long)(res.approval.ttl_ms / 1000));
    printf("rules considered:\n%s", why.data ? why.data : "  (none)\n");
    rc = o == POLICY_ALLOW && !needs_approval ? 0 : 1;
out:
    gw_buf_free(&why);
    cfg_strv_free(rolev);
    cfg_strv_free(scopev);
    json_decref(arguments);
    policy_config_free(pc);
    return rc;
}

int policy_cli_main(int argc, char **argv)
{
    /* argv[0] is "policy"; tolerate being handed the program name first as well. */
    if (argc > 1 && strcmp(argv[1], "policy") == 0) {
        argc--;
        argv++;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        cli_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cli_usage(stdout);
            return 0;
        }
    if (strcmp(argv[1], "test") == 0)
        return cli_test(argc - 2, argv + 2);
    if (strcmp(argv[1], "explain") == 0)
        return cli_explain(argc - 2, argv + 2);
    cli_usage(stderr);
    return 2;
}
