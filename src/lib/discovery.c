#include "lib/discovery.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int discovery_url_ok(const char *url)
{
    if (!url || strlen(url) >= DISCOVERY_MAX_URL)
        return 0;
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
            return 0; /* no spaces, controls or raw non-ASCII: curl would reject or mangle */
    if (strncasecmp(url, "https://", 8) == 0)
        return url[8] != '\0' && url[8] != '/';
    if (strncasecmp(url, "http://", 7) != 0)
        return 0;
    const char *host = url + 7;
    static const char *const loopback[] = {"127.0.0.1", "localhost", "[::1]", NULL};
    for (const char *const *l = loopback; *l; l++) {
        size_t n = strlen(*l);
        if (strncasecmp(host, *l, n) == 0 && (host[n] == ':' || host[n] == '/' || !host[n]))
            return 1;
    }
    return 0;
}

int discovery_urls(const char *issuer, char urls[DISCOVERY_MAX_URLS][DISCOVERY_MAX_URL], size_t *n,
                   char *why, size_t whylen)
{
    static const char oauth[] = "/.well-known/oauth-authorization-server";
    static const char oidc[] = "/.well-known/openid-configuration";
    *n = 0;
    size_t len = strlen(issuer);
    if (len > DISCOVERY_MAX_ISSUER || !discovery_url_ok(issuer)) {
        snprintf(why, whylen,
                 "the issuer must be an https:// URL (http:// only to loopback) of at most %u "
                 "bytes to be discovered",
                 DISCOVERY_MAX_ISSUER);
        return -1;
    }
    if (strpbrk(issuer, "?#")) {
        snprintf(why, whylen, "an issuer with a query or fragment cannot be discovered");
        return -1;
    }
    const char *host = strstr(issuer, "://") + 3;
    const char *path = strchr(host, '/');
    size_t origin_len = path ? (size_t)(path - issuer) : len;
    size_t path_len = path ? len - origin_len : 0;
    while (path_len && issuer[origin_len + path_len - 1] == '/')
        path_len--; /* RFC 8414 §3.1: a terminating "/" goes before the suffix is placed */
    int o = (int)origin_len, p = (int)path_len;
    const char *pp = issuer + origin_len;
    snprintf(urls[(*n)++], DISCOVERY_MAX_URL, "%.*s%s%.*s", o, issuer, oauth, p, pp);
    snprintf(urls[(*n)++], DISCOVERY_MAX_URL, "%.*s%s%.*s", o, issuer, oidc, p, pp);
    if (path_len)
        snprintf(urls[(*n)++], DISCOVERY_MAX_URL, "%.*s%.*s%s", o, issuer, p, pp, oidc);
    return 0;
}

void discovery_meta_clear(struct discovery_meta *m)
{
    free(m->jwks_uri);
    free(m->token_endpoint);
    m->jwks_uri = m->token_endpoint = NULL;
}

/* A URL member: absent is 0 (out stays NULL), present must be an allowed URL string. */
static int url_member(json_t *doc, const char *name, char **out, char *why, size_t whylen)
{
    json_t *v = json_object_get(doc, name);
    if (!v)
        return 0;
    if (!json_is_string(v) || !discovery_url_ok(json_string_value(v))) {
        snprintf(why, whylen,
                 "metadata member %s must be an https:// URL (http:// only to loopback)", name);
        return -1;
    }
    if (!(*out = strdup(json_string_value(v)))) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

int discovery_parse(const char *body, size_t len, const char *issuer, struct discovery_meta *out,
                    char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (len > DISCOVERY_MAX_BYTES) {
        snprintf(why, whylen, "metadata larger than %u bytes", DISCOVERY_MAX_BYTES);
        return -1;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    int rc = -1;
    if (!doc || !json_is_object(doc)) {
        snprintf(why, whylen, "metadata is not a JSON object");
        goto out;
    }
    json_t *iss = json_object_get(doc, "issuer");
    if (!json_is_string(iss)) {
        snprintf(why, whylen, "metadata has no issuer string");
        goto out;
    }
    /* Byte-for-byte: a document for another issuer (or a look-alike) is never used. */
    if (json_string_length(iss) != strlen(issuer) ||
        memcmp(json_string_value(iss), issuer, json_string_length(iss)) != 0) {
        snprintf(why, whylen, "metadata names issuer \"%.200s\", not the configured \"%.200s\"",
                 json_string_value(iss), issuer);
        rc = -2;
        goto out;
    }
    if (url_member(doc, "jwks_uri", &out->jwks_uri, why, whylen) != 0 ||
        url_member(doc, "token_endpoint", &out->token_endpoint, why, whylen) != 0)
        goto out;
    if (!out->jwks_uri) {
        snprintf(why, whylen, "metadata has no jwks_uri");
        goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        discovery_meta_clear(out);
    json_decref(doc);
    return rc;
}
