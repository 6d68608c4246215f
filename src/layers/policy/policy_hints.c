/*
 * policy_hints: two rule keys beside the principal and argument conditions.
 *
 *   annotations: {destructiveHint: true, openWorldHint: false, ...}
 *       the tool's MCP annotations must read so. A hint the backend did not give, and every
 *       hint of a tool whose annotations are unknown, reads as the protocol's default, which
 *       is the riskiest reading (closed world: an unknown tool is never taken for a safe one).
 *   approval: {by: user | "role:<r>", ttl: 10m}
 *       (permit rules only) the call the rule allows still needs someone's approval.
 */
#include "layers/policy/policy-int.h"

#include <stdio.h>
#include <string.h>

static const char *const hint_names[POLICY_HINT_COUNT] = {
    "readOnlyHint",
    "destructiveHint",
    "idempotentHint",
    "openWorldHint",
};
/* The protocol's defaults: the value a hint has when it is not given. */
static const int hint_defaults[POLICY_HINT_COUNT] = {0, 1, 0, 1};

/* Longest and shortest approval ttl. */
#define POLICY_MIN_TTL_MS 1000ULL
#define POLICY_MAX_TTL_MS (24ULL * 3600 * 1000)

const char *policy_hint_name(enum policy_hint h)
{
    return (unsigned)h < POLICY_HINT_COUNT ? hint_names[h] : "?";
}

int policy_hint_value(const struct policy_annotations *a, enum policy_hint h)
{
    if ((unsigned)h >= POLICY_HINT_COUNT)
        return 0;
    if (a && a->known && (a->hint[h] == 0 || a->hint[h] == 1))
        return a->hint[h];
    return hint_defaults[h];
}

void policy_annotations_from_json(const json_t *annotations, struct policy_annotations *out)
{
    out->known = 1;
    for (int h = 0; h < POLICY_HINT_COUNT; h++) {
        const json_t *v =
            json_is_object(annotations) ? json_object_get(annotations, hint_names[h]) : NULL;
        /* A hint that is not a boolean is as good as not given: it reads as the default. */
        out->hint[h] = json_is_boolean(v) ? (signed char)json_is_true(v) : -1;
    }
}

int policy_hints_match(const struct policy_rule *r, const struct policy_annotations *a)
{
    for (int h = 0; h < POLICY_HINT_COUNT; h++)
        if (r->hints[h] && policy_hint_value(a, (enum policy_hint)h) != (r->hints[h] == 2))
            return 0;
    return 1;
}

static int parse_annotations(const struct cfg_doc *doc, const struct cfg_node *an, const char *p,
                             struct policy_rule *r, struct cfg_error *err)
{
    if (cfg_expect_map(doc, an, p, err) != 0)
        return -1;
    if (r->action != POLICY_ACTION_TOOL)
        return cfg_errorf(err, doc, an, p, "annotations are conditions on tools only");
    for (size_t i = 0; i < an->n; i++) {
        int h = -1;
        for (int k = 0; k < POLICY_HINT_COUNT; k++)
            if (strcmp(an->keys[i], hint_names[k]) == 0)
                h = k;
        char kp[400];
        snprintf(kp, sizeof kp, "%s.%s", p, an->keys[i]);
        if (h < 0)
            return cfg_errorf(err, doc, an->items[i], kp,
                              "unknown annotation: use readOnlyHint, destructiveHint, "
                              "idempotentHint or openWorldHint");
        const struct cfg_node *v = an->items[i];
        if (v->kind != CFG_SCALAR || v->quoted ||
            (strcmp(v->scalar, "true") != 0 && strcmp(v->scalar, "false") != 0))
            return cfg_errorf(err, doc, v, kp, "expected true or false");
        r->hints[h] = strcmp(v->scalar, "true") == 0 ? 2 : 1;
        r->n_hints++;
    }
    return 0;
}

static int parse_approval(const struct cfg_doc *doc, const struct cfg_node *ap, const char *p,
                          struct policy_rule *r, struct cfg_error *err)
{
    static const char *const keys[] = {"by", "ttl", NULL};
    if (cfg_expect_map(doc, ap, p, err) != 0 || cfg_check_keys(doc, ap, p, keys, err) != 0)
        return -1;
    if (r->effect != POLICY_PERMIT)
        return cfg_errorf(err, doc, ap, p,
                          "approval belongs on permit rules (a forbid denies; nothing to approve)");
    char bp[400];
    snprintf(bp, sizeof bp, "%s.by", p);
    const struct cfg_node *by = cfg_map_get(ap, "by");
    if (!by || by->kind != CFG_SCALAR || cfg_is_null(by))
        return cfg_errorf(err, doc, by ? by : ap, bp, "approval.by is user or \"role:<role>\"");
    if (strcmp(by->scalar, "user") == 0) {
        r->approval.by = POLICY_APPROVAL_USER;
    } else if (strncmp(by->scalar, "role:", 5) == 0) {
        const char *role = by->scalar + 5;
        size_t n = strlen(role);
        if (n == 0 || n > POLICY_MAX_ROLE)
            return cfg_errorf(err, doc, by, bp, "the role after \"role:\" is 1-%d characters",
                              POLICY_MAX_ROLE);
        for (const char *c = role; *c; c++)
            if ((unsigned char)*c <= 0x20 || *c == 0x7f)
                return cfg_errorf(err, doc, by, bp, "the role has a space or control character");
        r->approval.by = POLICY_APPROVAL_ROLE;
        memcpy(r->approval.role, role, n + 1);
    } else {
        return cfg_errorf(err, doc, by, bp,
                          "\"%s\" is not an approver: use user or \"role:<role>\"", by->scalar);
    }
    r->approval.ttl_ms = 10ULL * 60 * 1000;
    if (cfg_map_get(ap, "ttl")) {
        if (cfg_get_duration_ms(doc, ap, p, "ttl", &r->approval.ttl_ms, err) != 0)
            return -1;
        snprintf(bp, sizeof bp, "%s.ttl", p);
        if (r->approval.ttl_ms < POLICY_MIN_TTL_MS || r->approval.ttl_ms > POLICY_MAX_TTL_MS)
            return cfg_errorf(err, doc, cfg_map_get(ap, "ttl"), bp, "ttl is between 1s and 1d");
    }
    snprintf(r->approval.rule_id, sizeof r->approval.rule_id, "%s", r->id);
    return 0;
}

int policy_parse_hints(const struct cfg_doc *doc, const struct cfg_node *rule, const char *path,
                       struct policy_rule *r, struct cfg_error *err)
{
    char p[360];
    const struct cfg_node *an = cfg_map_get(rule, "annotations");
    if (an && !cfg_is_null(an)) {
        snprintf(p, sizeof p, "%s.annotations", path);
        if (parse_annotations(doc, an, p, r, err) != 0)
            return -1;
    }
    const struct cfg_node *ap = cfg_map_get(rule, "approval");
    if (ap && !cfg_is_null(ap)) {
        snprintf(p, sizeof p, "%s.approval", path);
        if (parse_approval(doc, ap, p, r, err) != 0)
            return -1;
    }
    return 0;
}
