/*
 * policy_scope: the scope hierarchy (policy.scope_implies). A broader scope implies the
 * narrower ones the configuration names, exactly or by pattern; chains of exact names are
 * closed over when the configuration loads, so a check is a lookup.
 */
#include "layers/policy/policy-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_implied(struct policy_implies *im, const char *pat)
{
    for (size_t i = 0; i < im->n; i++)
        if (strcmp(im->implied[i], pat) == 0)
            return 0;
    if (im->n == POLICY_MAX_IMPLIED)
        return -1;
    char **v = realloc(im->implied, (im->n + 2) * sizeof *v);
    if (!v)
        return -1;
    im->implied = v;
    if (!(v[im->n] = strdup(pat)))
        return -1;
    v[++im->n] = NULL;
    return 0;
}

/*
 * policy.scope_implies: {broader: [narrower, ...]}, a narrower one written exactly or as a
 * pattern with '*' ("patients.*"). Closed over: what a narrower scope implies, its broader one
 * implies too (patterns are not followed further).
 */
int policy_parse_implies(const struct cfg_doc *doc, const struct cfg_node *node,
                         struct policy_config *pc, struct cfg_error *err)
{
    const char *P = "policy.scope_implies";
    if (!node || cfg_is_null(node))
        return 0;
    if (node->kind != CFG_MAP) {
        cfg_errorf(err, doc, node, P, "must be a map of a scope to the scopes it implies");
        return -1;
    }
    if (node->n > POLICY_MAX_IMPLIES) {
        cfg_errorf(err, doc, node, P, "more than %d scopes", POLICY_MAX_IMPLIES);
        return -1;
    }
    pc->implies = calloc(node->n ? node->n : 1, sizeof *pc->implies);
    if (!pc->implies) {
        cfg_errorf(err, doc, node, P, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < node->n; i++) {
        struct policy_implies *im = &pc->implies[i];
        pc->n_implies = i + 1;
        if (!(im->scope = strdup(node->keys[i]))) {
            cfg_errorf(err, doc, node, P, "out of memory");
            return -1;
        }
        char path[160];
        snprintf(path, sizeof path, "%s.%s", P, node->keys[i]);
        char **list = NULL;
        size_t n = 0;
        if (cfg_get_string_list(doc, node, P, node->keys[i], &list, &n, err) != 0)
            return -1;
        for (size_t k = 0; k < n; k++) {
            if (!list[k][0] || add_implied(im, list[k]) != 0) {
                cfg_errorf(err, doc, node->items[i], path,
                           "an empty scope, or more than %d implied scopes", POLICY_MAX_IMPLIED);
                cfg_strv_free(list);
                return -1;
            }
        }
        cfg_strv_free(list);
    }
    /* The closure: a few rounds reach any chain a hand-written hierarchy has. */
    for (int round = 0; round < 8; round++) {
        int grew = 0;
        for (size_t i = 0; i < pc->n_implies; i++) {
            struct policy_implies *im = &pc->implies[i];
            for (size_t j = 0; j < im->n; j++) {
                if (strchr(im->implied[j], '*'))
                    continue;
                for (size_t k = 0; k < pc->n_implies; k++) {
                    if (k == i || strcmp(pc->implies[k].scope, im->implied[j]) != 0)
                        continue;
                    for (size_t m = 0; m < pc->implies[k].n; m++) {
                        size_t before = im->n;
                        if (add_implied(im, pc->implies[k].implied[m]) != 0) {
                            cfg_errorf(err, doc, node, P, "\"%s\" implies more than %d scopes",
                                       im->scope, POLICY_MAX_IMPLIED);
                            return -1;
                        }
                        grew |= im->n != before;
                    }
                }
            }
        }
        if (!grew)
            break;
    }
    return 0;
}

void policy_implies_free(struct policy_config *pc)
{
    for (size_t i = 0; i < pc->n_implies; i++) {
        free(pc->implies[i].scope);
        cfg_strv_free(pc->implies[i].implied);
    }
    free(pc->implies);
    pc->implies = NULL;
    pc->n_implies = 0;
}

/*
 * Whether the principal holds scope s: itself, or a broader scope that implies it in the
 * configured hierarchy (policy.scope_implies, closed over at load).
 */
int policy_has_scope(const struct policy_principal *p, const char *s)
{
    if (!s)
        return 0;
    for (size_t i = 0; i < p->n_scopes; i++)
        if (p->scopes[i] && strcmp(p->scopes[i], s) == 0)
            return 1;
    const struct policy_config *pc = p->scope_model;
    if (!pc || pc->n_implies == 0)
        return 0;
    size_t sl = strlen(s);
    for (size_t i = 0; i < p->n_scopes; i++) {
        if (!p->scopes[i])
            continue;
        for (size_t k = 0; k < pc->n_implies; k++) {
            const struct policy_implies *im = &pc->implies[k];
            if (strcmp(im->scope, p->scopes[i]) != 0)
                continue;
            for (size_t j = 0; j < im->n; j++)
                if (policy_glob_match(im->implied[j], strlen(im->implied[j]), s, sl))
                    return 1;
        }
    }
    return 0;
}

int policy_any_scope(const struct policy_strs *want, const struct policy_principal *p)
{
    for (size_t i = 0; i < want->n; i++)
        if (policy_has_scope(p, want->v[i]))
            return 1;
    return 0;
}

int policy_all_scopes(const struct policy_strs *want, const struct policy_principal *p)
{
    for (size_t i = 0; i < want->n; i++)
        if (!policy_has_scope(p, want->v[i]))
            return 0;
    return 1;
}
