/*
 * Property test: random rule sets, written as YAML and compiled by the real parser, decide
 * random queries exactly like a plain reference evaluator written here from the documented
 * semantics (a linear scan of every rule, no index). Reproducible: fixed seeds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "layers/policy/policy.h"

#define SETS 3000
#define QUERIES 30

static uint64_t rng;
static uint32_t rnd(uint32_t n)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33) % n;
}

/* ---- the model ---- */

static const char *const names[] = {"a", "b", "ab", "a.b", "a.c", "b.a", "abc"};
static const char *const patterns[] = {"a*", "*b", "a.*", "*", "*.*", "a*c", "ab*"};
static const char *const subjects[] = {"u1", "u2"};
static const char *const roles[] = {"r1", "r2", "r3"};
static const char *const scopes[] = {"s1", "s2", "s3"};
static const char *const tenants[] = {"t1", "t2"};
static const char *const clients[] = {"c1", "c2"};
#define N(a) (sizeof(a) / sizeof((a)[0]))

enum op {
    OP_EQ_STR,
    OP_EQ_INT,
    OP_EQ_QSTR,
    OP_EQ_BOOL,
    OP_IN,
    OP_PREFIX,
    OP_RANGE,
    OP_EXISTS,
    OP_MAXLEN,
    OP_CLAIM_TENANT,
    OP_CLAIM_SUB,
    OP_MATCHES,
    OP_COUNT
};

struct pred {
    enum op op;
    int arg; /* 0 /x, 1 /y, 2 /z/0 */
    int v;   /* operator parameter */
    int lo, hi;
};

/* A set as a bitmask over the corresponding name table; 0 = condition absent. */
struct rule {
    int forbid;
    int resource;
    int targets[3]; /* index into names (>=0) or -1-index into patterns */
    int n_targets;
    unsigned subj, rany, rall, sall, sany, ten, cli, req;
    struct pred when[2];
    int n_when;
};

struct principal {
    int sub, ten, cli; /* index, or -1 for none */
    unsigned roles, scopes;
};

static const char *const arg_ptr[] = {"/x", "/y", "/z/0"};
/* Values an argument slot can take, as JSON text; NULL = absent. */
static const char *const arg_vals[] = {NULL,     "\"v1\"", "\"v2\"", "\"vv\"", "1",
                                       "2",      "5",      "true",   "null",   "[1]",
                                       "\"t1\"", "\"u1\"", "\"1\"",  "\"v12\""};

/* ---- YAML for a rule set ---- */

static void set_yaml(struct gw_buf *y, const char *key, unsigned mask, const char *const *tab,
                     size_t n)
{
    if (!mask)
        return;
    gw_buf_printf(y, "      %s: [", key);
    int first = 1;
    for (size_t i = 0; i < n; i++)
        if (mask & (1u << i)) {
            gw_buf_printf(y, "%s%s", first ? "" : ", ", tab[i]);
            first = 0;
        }
    gw_buf_append_str(y, "]\n");
}

static void pred_yaml(struct gw_buf *y, const struct pred *p)
{
    gw_buf_printf(y, "        - {arg: '%s', ", arg_ptr[p->arg]);
    switch (p->op) {
    case OP_EQ_STR:
        gw_buf_printf(y, "eq: v%d}\n", p->v);
        break;
    case OP_EQ_INT:
        gw_buf_printf(y, "eq: %d}\n", p->v);
        break;
    case OP_EQ_QSTR:
        gw_buf_printf(y, "eq: '%d'}\n", p->v);
        break;
    case OP_EQ_BOOL:
        gw_buf_printf(y, "eq: %s}\n", p->v ? "true" : "false");
        break;
    case OP_IN:
        gw_buf_printf(y, "in: [v%d, %d]}\n", p->v, p->v);
        break;
    case OP_PREFIX:
        gw_buf_printf(y, "prefix: v%d}\n", p->v);
        break;
    case OP_RANGE:
        if (p->lo >= 0 && p->hi >= 0)
            gw_buf_printf(y, "range: {min: %d, max: %d}}\n", p->lo, p->hi);
        else if (p->lo >= 0)
            gw_buf_printf(y, "range: {min: %d}}\n", p->lo);
        else
            gw_buf_printf(y, "range: {max: %d}}\n", p->hi);
        break;
    case OP_EXISTS:
        gw_buf_printf(y, "exists: %s}\n", p->v ? "true" : "false");
        break;
    case OP_MAXLEN:
        gw_buf_printf(y, "max_len: %d}\n", p->v);
        break;
    case OP_CLAIM_TENANT:
        gw_buf_append_str(y, "eq_claim: tenant}\n");
        break;
    case OP_CLAIM_SUB:
        gw_buf_append_str(y, "eq_claim: subject}\n");
        break;
    case OP_MATCHES:
        gw_buf_append_str(y, "matches: 'v[0-9]'}\n");
        break;
    default:
        break;
    }
}

static void rules_yaml(struct gw_buf *y, const struct rule *rs, int n)
{
    gw_buf_append_str(y, "policy:\n  rules:\n");
    for (int i = 0; i < n; i++) {
        const struct rule *r = &rs[i];
        gw_buf_printf(y, "    - id: r%d\n      effect: %s\n", i, r->forbid ? "forbid" : "permit");
        if (r->n_targets) {
            gw_buf_printf(y, "      %s: [", r->resource ? "resources" : "tools");
            for (int t = 0; t < r->n_targets; t++)
                gw_buf_printf(y, "%s'%s'", t ? ", " : "",
                              r->targets[t] >= 0 ? names[r->targets[t]]
                                                 : patterns[-1 - r->targets[t]]);
            gw_buf_append_str(y, "]\n");
        } else if (r->resource) {
            gw_buf_append_str(y, "      action: resources/read\n");
        }
        set_yaml(y, "subjects", r->subj, subjects, N(subjects));
        set_yaml(y, "roles_any", r->rany, roles, N(roles));
        set_yaml(y, "roles_all", r->rall, roles, N(roles));
        set_yaml(y, "scopes_all", r->sall, scopes, N(scopes));
        set_yaml(y, "scopes_any", r->sany, scopes, N(scopes));
        set_yaml(y, "tenants", r->ten, tenants, N(tenants));
        set_yaml(y, "clients", r->cli, clients, N(clients));
        set_yaml(y, "required_scopes", r->req, scopes, N(scopes));
        if (r->n_when) {
            gw_buf_append_str(y, "      when:\n");
            for (int w = 0; w < r->n_when; w++)
                pred_yaml(y, &r->when[w]);
        }
    }
}

/* ---- the reference evaluator ---- */

static int ref_glob(const char *p, const char *s)
{
    if (*p == '\0')
        return *s == '\0';
    if (*p == '*')
        return ref_glob(p + 1, s) || (*s && ref_glob(p, s + 1));
    return *s == *p && ref_glob(p + 1, s + 1);
}

static int ref_targets(const struct rule *r, int resource, const char *target)
{
    if (r->resource != resource)
        return 0;
    if (r->n_targets == 0)
        return 1;
    for (int t = 0; t < r->n_targets; t++) {
        const char *pat = r->targets[t] >= 0 ? names[r->targets[t]] : patterns[-1 - r->targets[t]];
        if (ref_glob(pat, target))
            return 1;
    }
    return 0;
}

static int ref_principal(const struct rule *r, const struct principal *p)
{
    if (r->subj && (p->sub < 0 || !(r->subj & (1u << p->sub))))
        return 0;
    if (r->ten && (p->ten < 0 || !(r->ten & (1u << p->ten))))
        return 0;
    if (r->cli && (p->cli < 0 || !(r->cli & (1u << p->cli))))
        return 0;
    if (r->rany && !(r->rany & p->roles))
        return 0;
    if (r->rall && (r->rall & p->roles) != r->rall)
        return 0;
    if (r->sany && !(r->sany & p->scopes))
        return 0;
    if (r->sall && (r->sall & p->scopes) != r->sall)
        return 0;
    return 1;
}

enum { F = 0, T = 1, U = 2 };

static int ref_pred(const struct pred *pd, const json_t *args, const struct principal *p)
{
    const json_t *v = json_object_get(args, pd->arg == 0 ? "x" : pd->arg == 1 ? "y" : "z");
    if (pd->arg == 2)
        v = json_is_array(v)    ? json_array_get(v, 0)
            : json_is_object(v) ? json_object_get(v, "0")
                                : NULL;
    if (pd->op == OP_EXISTS)
        return (v != NULL) == (pd->v != 0) ? T : F;
    if (!v)
        return U;
    const char *s = json_string_value(v);
    char buf[16];
    switch (pd->op) {
    case OP_EQ_STR:
    case OP_IN:
        snprintf(buf, sizeof buf, "v%d", pd->v);
        if (s)
            return strcmp(s, buf) == 0 ||
                           (pd->op == OP_IN && (snprintf(buf, sizeof buf, "%d", pd->v), 1) &&
                            strcmp(s, buf) == 0)
                       ? T
                       : F;
        if (json_is_integer(v))
            return pd->op == OP_IN && json_integer_value(v) == pd->v ? T : F;
        if (json_is_boolean(v) || json_is_real(v))
            return F;
        return U;
    case OP_EQ_INT:
        /* A configured number compares by value; a numeric string reads as its number. */
        snprintf(buf, sizeof buf, "%d", pd->v);
        if (s)
            return strcmp(s, buf) == 0 ? T : F; /* the generator's strings: "1", "v1", ... */
        if (json_is_integer(v))
            return json_integer_value(v) == pd->v ? T : F;
        if (json_is_boolean(v))
            return F;
        return U;
    case OP_EQ_QSTR:
        snprintf(buf, sizeof buf, "%d", pd->v);
        if (s)
            return strcmp(s, buf) == 0 ? T : F;
        if (json_is_boolean(v) || json_is_integer(v))
            return F;
        return U;
    case OP_EQ_BOOL:
        if (s)
            return strcmp(s, pd->v ? "true" : "false") == 0 ? T : F;
        if (json_is_boolean(v))
            return json_is_true(v) == (pd->v != 0) ? T : F;
        if (json_is_number(v))
            return F;
        return U;
    case OP_PREFIX:
        snprintf(buf, sizeof buf, "v%d", pd->v);
        return !s ? U : strncmp(s, buf, strlen(buf)) == 0 ? T : F;
    case OP_RANGE: {
        long n;
        if (json_is_integer(v))
            n = (long)json_integer_value(v);
        else if (s && s[0] >= '0' && s[0] <= '9' && strspn(s, "0123456789") == strlen(s))
            n = strtol(s, NULL, 10); /* a numeric string is judged as its number */
        else if (s && s[0] == 'v')
            return U; /* "v1" and friends: text, which range cannot judge */
        else
            return U;
        if (pd->lo >= 0 && n < pd->lo)
            return F;
        if (pd->hi >= 0 && n > pd->hi)
            return F;
        return T;
    }
    case OP_MAXLEN:
        if (s)
            return (int)strlen(s) <= pd->v ? T : F;
        if (json_is_array(v))
            return (int)json_array_size(v) <= pd->v ? T : F;
        return U;
    case OP_CLAIM_TENANT:
        if (!s || p->ten < 0)
            return U;
        return strcmp(s, tenants[p->ten]) == 0 ? T : F;
    case OP_CLAIM_SUB:
        if (!s || p->sub < 0)
            return U;
        return strcmp(s, subjects[p->sub]) == 0 ? T : F;
    case OP_MATCHES:
        if (!s)
            return U;
        return strlen(s) == 2 && s[0] == 'v' && s[1] >= '0' && s[1] <= '9' ? T : F;
    default:
        return U;
    }
}

struct ref_result {
    enum policy_outcome outcome;
    int visible;
    char ids[128];
};

static void add_id(char *ids, int i)
{
    size_t used = strlen(ids);
    snprintf(ids + used, 128 - used, "%sr%d", used ? "," : "", i);
}

static void ref_decide(const struct rule *rs, int n, int resource, const char *target,
                       const json_t *args, const struct principal *p, struct ref_result *out)
{
    int any_permit_visible = 0, unconditional_forbid = 0, near = -1;
    char forbids[128] = "", permits[128] = "";
    for (int i = 0; i < n; i++) {
        const struct rule *r = &rs[i];
        if (!ref_targets(r, resource, target) || !ref_principal(r, p))
            continue;
        int all_true = 1, any_false = 0;
        for (int w = 0; w < r->n_when; w++) {
            int t = ref_pred(&r->when[w], args, p);
            all_true &= t == T;
            any_false |= t == F;
        }
        if (r->forbid) {
            if (r->n_when == 0)
                unconditional_forbid = 1;
            if (!any_false)
                add_id(forbids, i);
            continue;
        }
        any_permit_visible = 1;
        if (!all_true)
            continue;
        if ((r->req & p->scopes) != r->req) {
            if (near < 0)
                near = i;
            continue;
        }
        add_id(permits, i);
    }
    out->visible = any_permit_visible && !unconditional_forbid;
    out->ids[0] = '\0';
    if (!out->visible) {
        out->outcome = POLICY_DENY_HIDDEN;
        snprintf(out->ids, sizeof out->ids, "%s", forbids);
    } else if (forbids[0]) {
        out->outcome = POLICY_DENY_FORBIDDEN;
        snprintf(out->ids, sizeof out->ids, "%s", forbids);
    } else if (permits[0]) {
        out->outcome = POLICY_ALLOW;
        snprintf(out->ids, sizeof out->ids, "%s", permits);
    } else if (near >= 0) {
        out->outcome = POLICY_DENY_SCOPE;
        add_id(out->ids, near);
    } else {
        out->outcome = POLICY_DENY_NO_MATCH;
    }
}

/* ---- generators ---- */

static unsigned maybe_set(int nbits, int pct)
{
    if ((int)rnd(100) >= pct)
        return 0;
    unsigned m = 0;
    while (!m)
        m = rnd(1u << nbits);
    return m;
}

static void gen_rule(struct rule *r)
{
    memset(r, 0, sizeof *r);
    r->forbid = rnd(10) < 4;
    r->resource = rnd(10) == 0;
    r->n_targets = (int)rnd(4) == 0 ? 0 : 1 + (int)rnd(3);
    for (int t = 0; t < r->n_targets; t++)
        r->targets[t] = rnd(2) ? (int)rnd(N(names)) : -1 - (int)rnd(N(patterns));
    r->subj = maybe_set(2, 15);
    r->rany = maybe_set(3, 30);
    r->rall = maybe_set(3, 15);
    r->sall = maybe_set(3, 20);
    r->sany = maybe_set(3, 15);
    r->ten = maybe_set(2, 15);
    r->cli = maybe_set(2, 10);
    if (!r->forbid)
        r->req = maybe_set(3, 25);
    r->n_when = (int)rnd(3);
    for (int w = 0; w < r->n_when; w++) {
        struct pred *p = &r->when[w];
        p->op = (enum op)rnd(OP_COUNT);
        p->arg = (int)rnd(3);
        p->v = 1 + (int)rnd(2);
        if (p->op == OP_EQ_BOOL || p->op == OP_EXISTS)
            p->v = (int)rnd(2);
        if (p->op == OP_MAXLEN)
            p->v = (int)rnd(4);
        p->lo = rnd(3) ? (int)rnd(4) : -1;
        p->hi = rnd(3) || p->lo < 0 ? p->lo + (int)rnd(4) : -1;
        if (p->lo < 0 && p->hi < 0)
            p->hi = 2;
    }
}

static json_t *gen_args(void)
{
    if (rnd(15) == 0)
        return NULL;
    json_t *o = json_object();
    const char *keys[] = {"x", "y"};
    for (int k = 0; k < 2; k++) {
        const char *v = arg_vals[rnd(N(arg_vals))];
        if (v)
            json_object_set_new(o, keys[k], json_loads(v, JSON_DECODE_ANY, NULL));
    }
    switch (rnd(4)) {
    case 0:
        break;
    case 1: {
        const char *v = arg_vals[1 + rnd(N(arg_vals) - 1)];
        json_t *a = json_array();
        json_array_append_new(a, json_loads(v, JSON_DECODE_ANY, NULL));
        json_object_set_new(o, "z", a);
        break;
    }
    case 2:
        json_object_set_new(o, "z", json_pack("{s:s}", "0", "v1"));
        break;
    default:
        json_object_set_new(o, "z", json_string("v1"));
        break;
    }
    return o;
}

static void gen_principal(struct principal *p)
{
    p->sub = (int)rnd(3) - 1;
    p->ten = (int)rnd(3) - 1;
    p->cli = (int)rnd(3) - 1;
    p->roles = rnd(8);
    p->scopes = rnd(8);
}

static void test_random_rule_sets(void **state)
{
    (void)state;
    rng = 0x5eed5eed1234ull;
    size_t decisions = 0, outcomes[POLICY_DENY_INVALID + 1] = {0};
    for (int set = 0; set < SETS; set++) {
        struct rule rs[12];
        int n = 1 + (int)rnd(12);
        for (int i = 0; i < n; i++)
            gen_rule(&rs[i]);
        struct gw_buf y = {0};
        rules_yaml(&y, rs, n);
        struct cfg_doc doc;
        struct cfg_error err = {{0}};
        struct policy_config *pc = NULL;
        if (cfg_load_string(y.data, y.len, "prop.yaml", &doc, &err) != 0 ||
            policy_config_parse(&doc, cfg_map_get(doc.root, "policy"), &pc, &err) != 0)
            fail_msg("set %d: %s\n%s", set, err.msg, y.data);
        cfg_doc_free(&doc);
        for (int qn = 0; qn < QUERIES; qn++) {
            struct principal p;
            gen_principal(&p);
            int resource = rnd(8) == 0;
            const char *target = names[rnd(N(names))];
            json_t *args = gen_args();
            const char *rv[4] = {0}, *sv[4] = {0};
            size_t nr = 0, ns = 0;
            for (int b = 0; b < 3; b++) {
                if (p.roles & (1u << b))
                    rv[nr++] = roles[b];
                if (p.scopes & (1u << b))
                    sv[ns++] = scopes[b];
            }
            struct policy_principal pp = {
                .subject = p.sub >= 0 ? subjects[p.sub] : NULL,
                .tenant = p.ten >= 0 ? tenants[p.ten] : NULL,
                .client_id = p.cli >= 0 ? clients[p.cli] : NULL,
                .roles = rv,
                .n_roles = nr,
                .scopes = sv,
                .n_scopes = ns,
            };
            enum policy_action action = resource ? POLICY_ACTION_RESOURCE : POLICY_ACTION_TOOL;
            struct policy_query q = {action, target, strlen(target), args, &pp, NULL};
            struct policy_result res;
            struct ref_result ref;
            policy_decide(pc, &q, &res, NULL);
            ref_decide(rs, n, resource, target, args, &p, &ref);
            int vis = policy_visible(pc, action, target, strlen(target), &pp);
            if (res.outcome != ref.outcome || strcmp(res.rule_id, ref.ids) != 0 ||
                vis != ref.visible || res.visible != ref.visible) {
                char *a = args ? json_dumps(args, JSON_SORT_KEYS) : NULL;
                fail_msg("set %d query %d: %s %s args %s sub %d ten %d cli %d roles %u scopes %u\n"
                         "got %s [%s] visible %d/%d, reference %s [%s] visible %d\n%s",
                         set, qn, resource ? "resource" : "tool", target, a ? a : "(none)", p.sub,
                         p.ten, p.cli, p.roles, p.scopes, policy_outcome_code(res.outcome),
                         res.rule_id, res.visible, vis, policy_outcome_code(ref.outcome), ref.ids,
                         ref.visible, y.data);
            }
            outcomes[res.outcome]++;
            decisions++;
            json_decref(args);
        }
        policy_config_free(pc);
        gw_buf_free(&y);
    }
    /* The generator must exercise every outcome, or the comparison proves little. */
    for (int o = POLICY_ALLOW; o <= POLICY_DENY_HIDDEN; o++) {
        if (outcomes[o] < 100)
            fail_msg("outcome %s seen only %zu times", policy_outcome_code((enum policy_outcome)o),
                     outcomes[o]);
    }
    assert_int_equal(decisions, (size_t)SETS * QUERIES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_rule_sets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
