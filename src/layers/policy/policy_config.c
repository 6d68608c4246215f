/*
 * policy_config: parsing the `policy` section and compiling it (regexes, CIDRs, JSON
 * Pointers, the target index). Every error names the file, line, column and key path.
 */
#include "layers/policy/policy-int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

/* More rules than this is refused (the index stays fast well beyond, memory does not). */
#define POLICY_MAX_RULES 1000000
#define POLICY_MAX_WHEN 64
#define POLICY_MAX_PATTERN 4096

static const char *const rule_keys[] = {
    "id",          "effect",          "action",      "tools",     "resources",
    "prompts",     "subjects",        "roles_any",   "roles_all", "scopes_all",
    "scopes_any",  "tenants",         "clients",     "when",      "message",
    "description", "required_scopes", "annotations", "approval",  NULL,
};

static const char *const op_keys[POLICY_OP_COUNT] = {
    "eq", "in", "prefix", "matches", "range", "exists", "max_len", "cidr", "host_in", "eq_claim",
};

static void strs_free(struct policy_strs *s)
{
    cfg_strv_free(s->v);
    s->v = NULL;
    s->n = 0;
}

static void scalar_free(struct policy_scalar *s)
{
    free(s->text);
}

static void pred_free(struct policy_pred *pd)
{
    free(pd->arg);
    for (size_t i = 0; i < pd->n_tokens; i++)
        free(pd->tokens[i]);
    free(pd->tokens);
    for (size_t i = 0; i < pd->n_values; i++)
        scalar_free(&pd->values[i]);
    free(pd->values);
    free(pd->text);
    if (pd->re)
        pcre2_code_free(pd->re);
    free(pd->cidrs);
    cfg_strv_free(pd->hosts);
}

static void rule_free(struct policy_rule *r)
{
    free(r->id);
    strs_free(&r->targets);
    strs_free(&r->subjects);
    strs_free(&r->roles_any);
    strs_free(&r->roles_all);
    strs_free(&r->scopes_all);
    strs_free(&r->scopes_any);
    strs_free(&r->tenants);
    strs_free(&r->clients);
    strs_free(&r->required_scopes);
    for (size_t i = 0; i < r->n_when; i++)
        pred_free(&r->when[i]);
    free(r->when);
    free(r->message);
    free(r->description);
}

void policy_config_free(struct policy_config *pc)
{
    if (!pc)
        return;
    for (int a = 0; a < POLICY_ACTION_COUNT; a++) {
        policy_index_free(&pc->index[a]);
        policy_index_free(&pc->folded[a]);
    }
    for (size_t i = 0; i < pc->n_folded_names; i++)
        free(pc->folded_names[i]);
    free(pc->folded_names);
    for (size_t i = 0; i < pc->n_rules; i++)
        rule_free(&pc->rules[i]);
    free(pc->rules);
    cfg_strv_free(pc->tests);
    free(pc->approvals.state_key_file);
    free(pc->approvals.replay_host);
    free(pc->approvals.replay_prefix);
    OPENSSL_cleanse(pc->approvals.state_key, sizeof pc->approvals.state_key);
    policy_implies_free(pc);
    policy_annot_cache_free(pc->annotations);
    if (pc->match_ctx)
        pcre2_match_context_free(pc->match_ctx);
    free(pc);
}

size_t policy_config_rule_count(const struct policy_config *pc)
{
    return pc ? pc->n_rules : 0;
}

size_t policy_config_test_count(const struct policy_config *pc)
{
    return pc ? pc->n_tests : 0;
}

const char *policy_config_test_path(const struct policy_config *pc, size_t i)
{
    return pc && i < pc->n_tests ? pc->tests[i] : NULL;
}

/* A list of non-empty strings (a single string is a list of one). */
static int get_strs(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                    const char *key, struct policy_strs *out, struct cfg_error *err)
{
    if (cfg_get_string_list(doc, map, path, key, &out->v, &out->n, err) != 0)
        return -1;
    const struct cfg_node *n = cfg_map_get(map, key);
    for (size_t i = 0; i < out->n; i++) {
        if (out->v[i][0] == '\0') {
            char p[300];
            cfg_path_key(p, sizeof p, path, key);
            return cfg_errorf(err, doc, n && n->kind == CFG_SEQ ? n->items[i] : n, p,
                              "empty string in the list");
        }
    }
    if (n && !cfg_is_null(n) && out->n == 0) {
        char p[300];
        cfg_path_key(p, sizeof p, path, key);
        return cfg_errorf(err, doc, n, p,
                          "empty list: leave the key out instead (an empty list would match "
                          "nothing, which is rarely what was meant)");
    }
    return 0;
}

/*
 * Numbers are written the JSON way: strtod alone would also take "0x10", "inf" and "nan",
 * which no JSON argument can equal and which are surely typos in a policy.
 */
static int plain_number(const char *s)
{
    int digits = 0;
    for (const char *c = s; *c; c++) {
        if (*c >= '0' && *c <= '9')
            digits = 1;
        else if (*c != '-' && *c != '+' && *c != '.' && *c != 'e' && *c != 'E')
            return 0;
    }
    return digits;
}

static int scalar_parse(const struct cfg_doc *doc, const struct cfg_node *n, const char *path,
                        struct policy_scalar *out, struct cfg_error *err)
{
    memset(out, 0, sizeof *out);
    if (!n || n->kind != CFG_SCALAR)
        return cfg_errorf(err, doc, n, path, "expected a single value (string, number or bool)");
    out->text = strdup(n->scalar);
    if (!out->text)
        return cfg_errorf(err, doc, n, path, "out of memory");
    out->len = strlen(out->text);
    out->quoted = n->quoted;
    if (n->quoted || out->len == 0)
        return 0;
    if (!plain_number(out->text))
        goto not_number;
    char *end = NULL;
    errno = 0;
    long long iv = strtoll(out->text, &end, 10);
    if (errno == 0 && *end == '\0') {
        out->is_int = 1;
        out->ival = iv;
        out->is_real = 1;
        out->dval = (double)iv;
        return 0;
    }
    errno = 0;
    double dv = strtod(out->text, &end);
    if (errno == 0 && *end == '\0' && dv == dv) {
        out->is_real = 1;
        out->dval = dv;
        return 0;
    }
not_number:
    if (strcmp(out->text, "true") == 0 || strcmp(out->text, "false") == 0) {
        out->is_bool = 1;
        out->bval = out->text[0] == 't';
    }
    return 0;
}

static int number_of(const struct cfg_doc *doc, const struct cfg_node *n, const char *path,
                     double *out, struct cfg_error *err)
{
    if (!n || n->kind != CFG_SCALAR || n->quoted || !plain_number(n->scalar))
        return cfg_errorf(err, doc, n, path, "\"%s\" is not a number",
                          n && n->kind == CFG_SCALAR ? n->scalar : "");
    char *end = NULL;
    errno = 0;
    double d = strtod(n->scalar, &end);
    if (errno || end == n->scalar || *end || d != d)
        return cfg_errorf(err, doc, n, path, "\"%s\" is not a number", n->scalar);
    *out = d;
    return 0;
}

static int compile_regex(const struct cfg_doc *doc, const struct cfg_node *n, const char *path,
                         struct policy_pred *pd, struct cfg_error *err)
{
    if (!n || n->kind != CFG_SCALAR)
        return cfg_errorf(err, doc, n, path, "expected a regular expression (a string)");
    size_t len = strlen(n->scalar);
    if (len > POLICY_MAX_PATTERN)
        return cfg_errorf(err, doc, n, path, "regular expression longer than %d bytes",
                          POLICY_MAX_PATTERN);
    int ecode = 0;
    PCRE2_SIZE eoff = 0;
    /*
     * Anchored at both ends: `matches` is a whole-value match, so '^P[0-9]+$' and 'P[0-9]+'
     * mean the same and a forgotten anchor cannot let "P1; DROP" through. UTF mode: argument
     * strings are valid UTF-8 (the JSON decoder checked).
     */
    pd->re = pcre2_compile((PCRE2_SPTR)n->scalar, len,
                           PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF | PCRE2_NEVER_BACKSLASH_C,
                           &ecode, &eoff, NULL);
    if (!pd->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ecode, msg, sizeof msg);
        return cfg_errorf(err, doc, n, path, "bad regular expression at offset %zu: %s",
                          (size_t)eoff, (const char *)msg);
    }
    /* JIT is an optimisation: where it is unavailable the interpreter runs the same pattern. */
    (void)pcre2_jit_compile(pd->re, PCRE2_JIT_COMPLETE);
    pd->text = strdup(n->scalar);
    if (!pd->text)
        return cfg_errorf(err, doc, n, path, "out of memory");
    pd->text_len = len;
    return 0;
}

static int parse_pred(const struct cfg_doc *doc, const struct cfg_node *item, const char *path,
                      struct policy_pred *pd, struct cfg_error *err)
{
    static const char *const keys[] = {"arg",    "eq",      "in",   "prefix",  "matches",  "range",
                                       "exists", "max_len", "cidr", "host_in", "eq_claim", NULL};
    char p[300], why[200];
    if (cfg_check_keys(doc, item, path, keys, err) != 0)
        return -1;
    pd->line = item->line;
    int op = -1;
    for (int i = 0; i < POLICY_OP_COUNT; i++) {
        if (!cfg_map_get(item, op_keys[i]))
            continue;
        if (op >= 0)
            return cfg_errorf(err, doc, item, path,
                              "one operator per condition (found %s and %s); write two "
                              "conditions, all must hold",
                              op_keys[op], op_keys[i]);
        op = i;
    }
    if (op < 0)
        return cfg_errorf(err, doc, item, path,
                          "no operator: use one of eq, in, prefix, matches, range, exists, "
                          "max_len, cidr, host_in, eq_claim");
    pd->op = (enum policy_op)op;
    if (cfg_get_string(doc, item, path, "arg", 1, &pd->arg, err) != 0)
        return -1;
    cfg_path_key(p, sizeof p, path, "arg");
    if (policy_pointer_parse(pd->arg, &pd->tokens, &pd->n_tokens, why, sizeof why) != 0)
        return cfg_errorf(err, doc, cfg_map_get(item, "arg"), p, "%s", why);

    const struct cfg_node *v = cfg_map_get(item, op_keys[op]);
    cfg_path_key(p, sizeof p, path, op_keys[op]);
    switch (pd->op) {
    case POLICY_OP_EQ:
        pd->values = calloc(1, sizeof *pd->values);
        if (!pd->values)
            return cfg_errorf(err, doc, v, p, "out of memory");
        pd->n_values = 1;
        return scalar_parse(doc, v, p, &pd->values[0], err);
    case POLICY_OP_IN:
        if (cfg_expect_seq(doc, v, p, err) != 0)
            return -1;
        if (v->n == 0)
            return cfg_errorf(err, doc, v, p, "empty list: nothing could match");
        pd->values = calloc(v->n, sizeof *pd->values);
        if (!pd->values)
            return cfg_errorf(err, doc, v, p, "out of memory");
        for (size_t i = 0; i < v->n; i++) {
            char ip[320];
            cfg_path_index(ip, sizeof ip, p, i);
            pd->n_values = i + 1;
            if (scalar_parse(doc, v->items[i], ip, &pd->values[i], err) != 0)
                return -1;
        }
        return 0;
    case POLICY_OP_PREFIX:
        if (cfg_scalar_string(doc, v, p, &pd->text, err) != 0)
            return -1;
        pd->text_len = strlen(pd->text);
        return 0;
    case POLICY_OP_MATCHES:
        return compile_regex(doc, v, p, pd, err);
    case POLICY_OP_RANGE: {
        static const char *const rk[] = {"min", "max", NULL};
        if (cfg_check_keys(doc, v, p, rk, err) != 0)
            return -1;
        const struct cfg_node *mn = cfg_map_get(v, "min"), *mx = cfg_map_get(v, "max");
        char kp[320];
        if (!mn && !mx)
            return cfg_errorf(err, doc, v, p, "give min, max or both");
        cfg_path_key(kp, sizeof kp, p, "min");
        if (mn && number_of(doc, mn, kp, &pd->min, err) != 0)
            return -1;
        cfg_path_key(kp, sizeof kp, p, "max");
        if (mx && number_of(doc, mx, kp, &pd->max, err) != 0)
            return -1;
        pd->has_min = mn != NULL;
        pd->has_max = mx != NULL;
        if (mn && mx && pd->min > pd->max)
            return cfg_errorf(err, doc, v, p, "min is greater than max: nothing could match");
        return 0;
    }
    case POLICY_OP_EXISTS:
        return cfg_get_bool(doc, item, path, "exists", &pd->exists, err);
    case POLICY_OP_MAX_LEN: {
        int64_t ml = -1;
        if (cfg_get_int(doc, item, path, "max_len", 0, INT32_MAX, &ml, err) != 0)
            return -1;
        if (ml < 0)
            return cfg_errorf(err, doc, v, p, "expected a whole number");
        pd->max_len = ml;
        return 0;
    }
    case POLICY_OP_CIDR: {
        char **list = NULL;
        size_t n = 0;
        if (cfg_get_string_list(doc, item, path, "cidr", &list, &n, err) != 0)
            return -1;
        if (n == 0) {
            cfg_strv_free(list);
            return cfg_errorf(err, doc, v, p, "empty list: nothing could match");
        }
        pd->cidrs = calloc(n, sizeof *pd->cidrs);
        if (!pd->cidrs) {
            cfg_strv_free(list);
            return cfg_errorf(err, doc, v, p, "out of memory");
        }
        int rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (policy_cidr_parse(list[i], &pd->cidrs[i], why, sizeof why) != 0) {
                char ip[320];
                cfg_path_index(ip, sizeof ip, p, i);
                rc = cfg_errorf(err, doc, v->kind == CFG_SEQ ? v->items[i] : v, ip, "%s", why);
            }
        }
        pd->n_cidrs = n;
        cfg_strv_free(list);
        return rc;
    }
    case POLICY_OP_HOST_IN:
        if (cfg_get_string_list(doc, item, path, "host_in", &pd->hosts, &pd->n_hosts, err) != 0)
            return -1;
        if (pd->n_hosts == 0)
            return cfg_errorf(err, doc, v, p, "empty list: nothing could match");
        for (size_t i = 0; i < pd->n_hosts; i++) {
            char *h = pd->hosts[i];
            const char *body = strncmp(h, "*.", 2) == 0 ? h + 2 : h;
            int ok = *body != '\0';
            for (char *c = h; *c; c++)
                *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
            for (const char *c = body; *c && ok; c++)
                ok = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' ||
                     *c == '.' || *c == '_' || *c == ':';
            if (!ok) {
                char ip[320];
                cfg_path_index(ip, sizeof ip, p, i);
                return cfg_errorf(err, doc, v->kind == CFG_SEQ ? v->items[i] : v, ip,
                                  "\"%s\" is not a host name (write example.org or "
                                  "*.example.org; no scheme, port or path)",
                                  h);
            }
        }
        return 0;
    case POLICY_OP_EQ_CLAIM:
        if (!v || v->kind != CFG_SCALAR)
            return cfg_errorf(err, doc, v, p, "expected tenant, subject or client");
        if (strcmp(v->scalar, "tenant") == 0)
            pd->claim = POLICY_CLAIM_TENANT;
        else if (strcmp(v->scalar, "subject") == 0 || strcmp(v->scalar, "sub") == 0)
            pd->claim = POLICY_CLAIM_SUBJECT;
        else if (strcmp(v->scalar, "client") == 0)
            pd->claim = POLICY_CLAIM_CLIENT;
        else
            return cfg_errorf(err, doc, v, p,
                              "\"%s\" is not a claim: use tenant, subject or client", v->scalar);
        return 0;
    default:
        return cfg_errorf(err, doc, v, p, "unknown operator");
    }
}

static int valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > POLICY_MAX_ID)
        return 0;
    for (const char *c = id; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_' || *c == '.' || *c == ':' || *c == '/'))
            return 0;
    return 1;
}

static int parse_rule(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                      struct policy_rule *r, struct cfg_error *err)
{
    char p[300];
    if (cfg_check_keys(doc, node, path, rule_keys, err) != 0)
        return -1;
    r->line = node->line;
    if (cfg_get_string(doc, node, path, "id", 1, &r->id, err) != 0)
        return -1;
    cfg_path_key(p, sizeof p, path, "id");
    if (!valid_id(r->id))
        return cfg_errorf(err, doc, cfg_map_get(node, "id"), p,
                          "rule ids are 1-%d characters of letters, digits and - _ . : /",
                          POLICY_MAX_ID);

    char *effect = NULL;
    if (cfg_get_string(doc, node, path, "effect", 1, &effect, err) != 0)
        return -1;
    int eok = 1;
    if (strcmp(effect, "permit") == 0)
        r->effect = POLICY_PERMIT;
    else if (strcmp(effect, "forbid") == 0)
        r->effect = POLICY_FORBID;
    else
        eok = 0;
    free(effect);
    cfg_path_key(p, sizeof p, path, "effect");
    if (!eok)
        return cfg_errorf(err, doc, cfg_map_get(node, "effect"), p, "effect is permit or forbid");

    /* The target key names the action; `action` may say it too, and must then agree. */
    static const char *const target_keys[POLICY_ACTION_COUNT] = {"tools", "resources", "prompts"};
    int by_key = -1;
    for (int a = 0; a < POLICY_ACTION_COUNT; a++) {
        if (!cfg_map_get(node, target_keys[a]))
            continue;
        if (by_key >= 0)
            return cfg_errorf(err, doc, cfg_map_get(node, target_keys[a]), path,
                              "a rule governs one action: %s and %s cannot be combined (write "
                              "two rules)",
                              target_keys[by_key], target_keys[a]);
        by_key = a;
    }
    int action = by_key >= 0 ? by_key : POLICY_ACTION_TOOL;
    const struct cfg_node *an = cfg_map_get(node, "action");
    if (an) {
        cfg_path_key(p, sizeof p, path, "action");
        if (an->kind != CFG_SCALAR || policy_action_for_method(an->scalar) < 0)
            return cfg_errorf(err, doc, an, p,
                              "action is tools/call, resources/read or prompts/get");
        int declared = policy_action_for_method(an->scalar);
        if (by_key >= 0 && declared != by_key)
            return cfg_errorf(err, doc, an, p, "action %s does not go with the key `%s`",
                              an->scalar, target_keys[by_key]);
        action = declared;
    }
    r->action = (enum policy_action)action;
    if (by_key >= 0 && get_strs(doc, node, path, target_keys[by_key], &r->targets, err) != 0)
        return -1;
    for (size_t i = 0; i < r->targets.n; i++) {
        if (strlen(r->targets.v[i]) > POLICY_MAX_TARGET) {
            cfg_path_key(p, sizeof p, path, target_keys[by_key]);
            return cfg_errorf(err, doc, cfg_map_get(node, target_keys[by_key]), p,
                              "name longer than %d bytes", POLICY_MAX_TARGET);
        }
    }

    if (get_strs(doc, node, path, "subjects", &r->subjects, err) != 0 ||
        get_strs(doc, node, path, "roles_any", &r->roles_any, err) != 0 ||
        get_strs(doc, node, path, "roles_all", &r->roles_all, err) != 0 ||
        get_strs(doc, node, path, "scopes_all", &r->scopes_all, err) != 0 ||
        get_strs(doc, node, path, "scopes_any", &r->scopes_any, err) != 0 ||
        get_strs(doc, node, path, "tenants", &r->tenants, err) != 0 ||
        get_strs(doc, node, path, "clients", &r->clients, err) != 0 ||
        get_strs(doc, node, path, "required_scopes", &r->required_scopes, err) != 0)
        return -1;
    if (r->effect == POLICY_FORBID && r->required_scopes.n) {
        cfg_path_key(p, sizeof p, path, "required_scopes");
        return cfg_errorf(err, doc, cfg_map_get(node, "required_scopes"), p,
                          "required_scopes belongs on permit rules (use scopes_all on a forbid)");
    }
    if (cfg_get_string(doc, node, path, "message", 0, &r->message, err) != 0 ||
        cfg_get_string(doc, node, path, "description", 0, &r->description, err) != 0)
        return -1;

    if (policy_parse_hints(doc, node, path, r, err) != 0)
        return -1;

    const struct cfg_node *when = cfg_map_get(node, "when");
    if (when && !cfg_is_null(when)) {
        cfg_path_key(p, sizeof p, path, "when");
        if (cfg_expect_seq(doc, when, p, err) != 0)
            return -1;
        if (when->n > POLICY_MAX_WHEN)
            return cfg_errorf(err, doc, when, p, "more than %d conditions", POLICY_MAX_WHEN);
        r->when = calloc(when->n ? when->n : 1, sizeof *r->when);
        if (!r->when)
            return cfg_errorf(err, doc, when, p, "out of memory");
        for (size_t i = 0; i < when->n; i++) {
            char ip[320];
            cfg_path_index(ip, sizeof ip, p, i);
            r->n_when = i + 1;
            if (parse_pred(doc, when->items[i], ip, &r->when[i], err) != 0)
                return -1;
        }
    }
    return 0;
}

static int cmp_rule_id(const void *a, const void *b)
{
    const struct policy_rule *x = *(const struct policy_rule *const *)a;
    const struct policy_rule *y = *(const struct policy_rule *const *)b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

int policy_config_parse(const struct cfg_doc *doc, const struct cfg_node *section,
                        struct policy_config **out, struct cfg_error *err)
{
    static const char *const keys[] = {"rules", "tests", "scope_implies", "approvals", NULL};
    struct policy_config *pc = NULL;
    const struct policy_rule **sorted = NULL;
    int rc = -1;
    *out = NULL;
    if (cfg_check_keys(doc, section, "policy", keys, err) != 0)
        goto out;
    pc = calloc(1, sizeof *pc);
    if (!pc) {
        cfg_errorf(err, doc, section, "policy", "out of memory");
        goto out;
    }
    pc->match_ctx = pcre2_match_context_create(NULL);
    if (!pc->match_ctx) {
        cfg_errorf(err, doc, section, "policy", "out of memory");
        goto out;
    }
    pcre2_set_match_limit(pc->match_ctx, POLICY_REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(pc->match_ctx, POLICY_REGEX_DEPTH_LIMIT);

    const struct cfg_node *rules = cfg_map_get(section, "rules");
    if (rules && !cfg_is_null(rules)) {
        if (cfg_expect_seq(doc, rules, "policy.rules", err) != 0)
            goto out;
        if (rules->n > POLICY_MAX_RULES) {
            cfg_errorf(err, doc, rules, "policy.rules", "more than %d rules", POLICY_MAX_RULES);
            goto out;
        }
        pc->rules = calloc(rules->n ? rules->n : 1, sizeof *pc->rules);
        if (!pc->rules) {
            cfg_errorf(err, doc, rules, "policy.rules", "out of memory");
            goto out;
        }
        for (size_t i = 0; i < rules->n; i++) {
            char p[64];
            const struct cfg_node *item = rules->items[i];
            /* Name the rule by its id in the path once known: easier to find than an index. */
            cfg_path_index(p, sizeof p, "policy.rules", i);
            pc->n_rules = i + 1;
            if (parse_rule(doc, item, p, &pc->rules[i], err) != 0)
                goto out;
        }
    }
    if (pc->n_rules > 1) {
        sorted = malloc(pc->n_rules * sizeof *sorted);
        if (!sorted) {
            cfg_errorf(err, doc, section, "policy", "out of memory");
            goto out;
        }
        for (size_t i = 0; i < pc->n_rules; i++)
            sorted[i] = &pc->rules[i];
        qsort(sorted, pc->n_rules, sizeof *sorted, cmp_rule_id);
        for (size_t i = 1; i < pc->n_rules; i++) {
            if (strcmp(sorted[i - 1]->id, sorted[i]->id) == 0) {
                struct cfg_node at = {.line = sorted[i]->line, .column = 1};
                cfg_errorf(err, doc, &at, "policy.rules",
                           "duplicate rule id \"%s\" (first defined at line %d)", sorted[i]->id,
                           sorted[i - 1]->line);
                goto out;
            }
        }
    }
    if (policy_parse_implies(doc, cfg_map_get(section, "scope_implies"), pc, err) != 0)
        goto out;
    if (policy_parse_approvals(doc, cfg_map_get(section, "approvals"), pc, err) != 0)
        goto out;
    if (cfg_get_string_list(doc, section, "policy", "tests", &pc->tests, &pc->n_tests, err) != 0)
        goto out;
    for (size_t i = 0; i < pc->n_tests; i++) {
        char *abs = cfg_resolve_path(doc ? doc->name : NULL, pc->tests[i]);
        if (!abs) {
            cfg_errorf(err, doc, section, "policy.tests", "out of memory");
            goto out;
        }
        free(pc->tests[i]);
        pc->tests[i] = abs;
    }
    pc->annotations = policy_annot_cache_new();
    if (!pc->annotations || policy_index_build(pc) != 0) {
        cfg_errorf(err, doc, section, "policy", "out of memory while indexing rules");
        goto out;
    }
    *out = pc;
    pc = NULL;
    rc = 0;
out:
    free(sorted);
    policy_config_free(pc);
    return rc;
}
