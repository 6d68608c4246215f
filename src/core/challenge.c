#include "core/challenge.h"

#include <stdio.h>
#include <string.h>

/* Appends s to out without the two characters that could end a quoted-string early. */
static void append_quoted_safe(char *out, size_t outlen, size_t *used, const char *s)
{
    for (; *s && *used + 1 < outlen; s++) {
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
            continue;
        out[(*used)++] = *s;
    }
    out[*used] = '\0';
}

static void append_raw(char *out, size_t outlen, size_t *used, const char *s)
{
    int w = snprintf(out + *used, outlen - *used, "%s", s);
    if (w > 0)
        *used += (size_t)w < outlen - *used ? (size_t)w : outlen - *used - 1;
}

void gw_challenge(const struct gw_request *req, const char *error, const char *description,
                  const char *scope, char *out, size_t outlen)
{
    size_t used = 0;
    if (outlen == 0)
        return;
    out[0] = '\0';
    const char *base = req->cfg && req->cfg->server.public_url ? req->cfg->server.public_url : "";
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    append_raw(out, outlen, &used, "Bearer resource_metadata=\"");
    char basecopy[512];
    snprintf(basecopy, sizeof basecopy, "%.*s", (int)blen, base);
    append_quoted_safe(out, outlen, &used, basecopy);
    append_raw(out, outlen, &used, "/.well-known/oauth-protected-resource");
    if (req->route && req->route->path && strcmp(req->route->path, "/") != 0)
        append_quoted_safe(out, outlen, &used, req->route->path);
    append_raw(out, outlen, &used, "\"");
    if (error) {
        append_raw(out, outlen, &used, ", error=\"");
        append_quoted_safe(out, outlen, &used, error);
        append_raw(out, outlen, &used, "\"");
    }
    if (description) {
        append_raw(out, outlen, &used, ", error_description=\"");
        append_quoted_safe(out, outlen, &used, description);
        append_raw(out, outlen, &used, "\"");
    }
    if (scope && *scope) {
        append_raw(out, outlen, &used, ", scope=\"");
        append_quoted_safe(out, outlen, &used, scope);
        append_raw(out, outlen, &used, "\"");
    }
}

int gw_deny_insufficient_scope(struct gw_request *req, struct gw_decision *d, const char *scopes,
                               const char *rule_id)
{
    gw_decision_deny(d, 403, 0, "policy.insufficient_scope",
                     "This call needs a token with more scopes.");
    if (rule_id)
        snprintf(d->rule_id, sizeof d->rule_id, "%s", rule_id);
    gw_challenge(req, "insufficient_scope", "The token lacks a scope this call needs.", scopes,
                 req->www_authenticate, sizeof req->www_authenticate);
    return GW_DENY;
}
