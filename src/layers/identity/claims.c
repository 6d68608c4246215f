#include "layers/identity/claims.h"
#include "core/request.h"
#include "lib/jwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PATH_DEPTH 8

const json_t *claims_lookup(const json_t *payload, const char *path)
{
    const json_t *v = json_object_get(payload, path);
    if (v || !strchr(path, '.'))
        return v;
    const json_t *cur = payload;
    const char *seg = path;
    for (int depth = 0; depth < MAX_PATH_DEPTH; depth++) {
        const char *dot = strchr(seg, '.');
        size_t len = dot ? (size_t)(dot - seg) : strlen(seg);
        if (!json_is_object(cur) || len == 0)
            return NULL;
        cur = json_object_getn(cur, seg, len);
        if (!cur || !dot)
            return cur;
        seg = dot + 1;
    }
    return NULL;
}

/* A value fit to carry: bounded, no control characters (they would reach logs and headers). */
static int value_ok(const char *s, size_t len)
{
    if (len == 0 || len > CLAIMS_MAX_VALUE_LEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

struct strv {
    char **v;
    size_t n;
};

/* Adds a copy of s unless present. Returns 0, or JWT_E_CLAIMS (too many, bad, memory). */
static int strv_add(struct strv *sv, const char *s, size_t len)
{
    if (!value_ok(s, len))
        return JWT_E_CLAIMS;
    for (size_t i = 0; i < sv->n; i++)
        if (strlen(sv->v[i]) == len && memcmp(sv->v[i], s, len) == 0)
            return 0;
    if (sv->n >= CLAIMS_MAX_VALUES)
        return JWT_E_CLAIMS;
    if (!sv->v && !(sv->v = calloc(CLAIMS_MAX_VALUES + 1, sizeof *sv->v)))
        return JWT_E_CLAIMS;
    if (!(sv->v[sv->n] = strndup(s, len)))
        return JWT_E_CLAIMS;
    sv->n++;
    return 0;
}

/* Roles and scopes: a string (split on spaces when split_spaces) or an array of strings. */
static int collect(const json_t *v, int split_spaces, struct strv *sv)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (!split_spaces)
            return strv_add(sv, s, len);
        size_t i = 0;
        while (i < len) {
            while (i < len && s[i] == ' ')
                i++;
            size_t start = i;
            while (i < len && s[i] != ' ')
                i++;
            if (i > start && strv_add(sv, s + start, i - start) != 0)
                return JWT_E_CLAIMS;
        }
        return 0;
    }
    if (json_is_array(v)) {
        size_t i;
        const json_t *item;
        if (json_array_size(v) > CLAIMS_MAX_VALUES)
            return JWT_E_CLAIMS;
        json_array_foreach(v, i, item)
        {
            if (!json_is_string(item) ||
                strv_add(sv, json_string_value(item), json_string_length(item)) != 0)
                return JWT_E_CLAIMS;
        }
        return 0;
    }
    return JWT_E_CLAIMS;
}

/* First path whose value is a usable string; *out stays NULL when none is present. */
static int first_string(char *const *paths, const json_t *payload, int allow_integer, char **out)
{
    for (char *const *p = paths; p && *p; p++) {
        const json_t *v = claims_lookup(payload, *p);
        if (!v || json_is_null(v))
            continue;
        char num[32];
        const char *s;
        size_t len;
        if (json_is_string(v)) {
            s = json_string_value(v);
            len = json_string_length(v);
        } else if (allow_integer && json_is_integer(v)) {
            snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
            s = num;
            len = strlen(num);
        } else {
            return JWT_E_CLAIMS;
        }
        if (!value_ok(s, len))
            return JWT_E_CLAIMS;
        *out = strndup(s, len);
        return *out ? 0 : JWT_E_CLAIMS;
    }
    return 0;
}

int claims_map(const struct identity_claims_config *cc, const json_t *payload, const char *issuer,
               int64_t exp, struct gw_identity *out)
{
    struct strv roles = {0}, scopes = {0};
    int rc = JWT_E_CLAIMS;
    memset(out, 0, sizeof *out);
    if (first_string(cc->subject, payload, 1, &out->subject) != 0 || !out->subject)
        goto out;
    if (first_string(cc->tenant, payload, 1, &out->tenant) != 0 ||
        first_string(cc->client, payload, 0, &out->client_id) != 0)
        goto out;
    for (char *const *p = cc->roles; p && *p; p++) {
        const json_t *v = claims_lookup(payload, *p);
        if (v && !json_is_null(v) && collect(v, 0, &roles) != 0)
            goto out;
    }
    for (char *const *p = cc->scopes; p && *p; p++) {
        const json_t *v = claims_lookup(payload, *p);
        if (v && !json_is_null(v) && collect(v, 1, &scopes) != 0)
            goto out;
    }
    if (!(out->issuer = strdup(issuer)))
        goto out;
    /* Empty lists are still NULL-terminated arrays, so readers need not test for NULL. */
    if ((!roles.v && !(roles.v = calloc(1, sizeof *roles.v))) ||
        (!scopes.v && !(scopes.v = calloc(1, sizeof *scopes.v))))
        goto out;
    out->roles = roles.v;
    out->n_roles = roles.n;
    out->scopes = scopes.v;
    out->n_scopes = scopes.n;
    roles.v = scopes.v = NULL;
    out->expires_at = exp;
    out->verified = 1;
    rc = 0;
out:
    for (size_t i = 0; i < roles.n && roles.v; i++)
        free(roles.v[i]);
    free(roles.v);
    for (size_t i = 0; i < scopes.n && scopes.v; i++)
        free(scopes.v[i]);
    free(scopes.v);
    if (rc != 0)
        gw_identity_clear(out);
    return rc;
}
