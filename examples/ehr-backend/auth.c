/*
 * auth: verifies the JWT toolgate injects (see auth.h). The keys are toolgate's published
 * JWKS; everything else is toolgate's own verifier, so the demo backend checks tokens exactly
 * as strictly as the gateway checks its users' tokens.
 */
#include "auth.h"

#include "lib/timeutil.h"
#include "lib/jwk.h"
#include "lib/jwt.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- key loading ---------------------------------------------------------------------- */

struct fetch_sink {
    struct gw_buf *out;
    int too_large;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct fetch_sink *s = arg;
    size_t n = size * nmemb;
    if (s->out->len + n > JWKS_MAX_BYTES) {
        s->too_large = 1;
        return 0;
    }
    return gw_buf_append(s->out, ptr, n) == 0 ? n : 0;
}

/* GET url with bounded time and size, no redirects. 0 on a 200 answer, else -1. */
static int fetch_url(const char *url, struct gw_buf *out)
{
    int rc = -1;
    struct fetch_sink sink = {.out = out};
    CURL *h = curl_easy_init();
    if (!h)
        return -1;
    long status = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)EHR_AUTH_FETCH_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)EHR_AUTH_FETCH_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    if (curl_easy_perform(h) == CURLE_OK &&
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 200)
        rc = 0;
    curl_easy_cleanup(h);
    return rc;
}

static int read_file(const char *path, struct gw_buf *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char chunk[4096];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + n > JWKS_MAX_BYTES || gw_buf_append(out, chunk, n) != 0) {
            rc = -1;
            break;
        }
    }
    if (ferror(f))
        rc = -1;
    fclose(f);
    return rc;
}

/* Loads the keys once (file or URL) and swaps them in. Caller holds a->lock. */
static int load_keys_locked(struct ehr_auth *a, char *why, size_t whylen)
{
    struct gw_buf doc = {0};
    struct jwk_set *set = NULL;
    size_t skipped = 0;
    int rc = -1;
    a->last_fetch_ms = gw_mono_ms();
    if (a->jwks_file) {
        if (read_file(a->jwks_file, &doc) != 0) {
            snprintf(why, whylen,
                     "cannot read the key set %s (missing, unreadable or over %u bytes)",
                     a->jwks_file, JWKS_MAX_BYTES);
            goto out;
        }
    } else {
        int fr = a->fetch ? a->fetch(a->jwks_url, &doc) : fetch_url(a->jwks_url, &doc);
        if (fr != 0) {
            snprintf(why, whylen, "cannot fetch the key set from %s", a->jwks_url);
            goto out;
        }
    }
    char perr[160];
    if (jwks_parse(doc.data ? doc.data : "", doc.len, &set, &skipped, perr, sizeof perr) != 0) {
        snprintf(why, whylen, "the key set is not usable: %s", perr);
        goto out;
    }
    jwks_unref(a->keys);
    a->keys = set;
    rc = 0;
out:
    gw_buf_free(&doc);
    return rc;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int ehr_auth_init(struct ehr_auth *a, const char *jwks_url, const char *jwks_file,
                  const char *issuer, const char *audience, uint64_t retry_ms, char *why,
                  size_t whylen)
{
    int fetch_hook_kept = a->fetch != NULL;
    int (*hook)(const char *, struct gw_buf *) = a->fetch;
    memset(a, 0, sizeof *a);
    if (fetch_hook_kept)
        a->fetch = hook;
    pthread_mutex_init(&a->lock, NULL);
    if ((!jwks_url) == (!jwks_file) || !issuer || !audience || !*issuer || !*audience) {
        snprintf(why, whylen,
                 "token verification needs one of --jwks-url or --jwks-file, and "
                 "--issuer and --audience");
        return -1;
    }
    a->jwks_url = dup_or_null(jwks_url);
    a->jwks_file = dup_or_null(jwks_file);
    a->issuer = strdup(issuer);
    a->audience = strdup(audience);
    if ((jwks_url && !a->jwks_url) || (jwks_file && !a->jwks_file) || !a->issuer || !a->audience) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    uint64_t deadline = gw_mono_ms() + retry_ms;
    for (;;) {
        pthread_mutex_lock(&a->lock);
        int rc = load_keys_locked(a, why, whylen);
        pthread_mutex_unlock(&a->lock);
        if (rc == 0)
            return 0;
        /* Only a URL is worth retrying: toolgate may still be starting. */
        if (a->jwks_file || gw_mono_ms() >= deadline)
            return -1;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void ehr_auth_free(struct ehr_auth *a)
{
    jwks_unref(a->keys);
    free(a->jwks_url);
    free(a->jwks_file);
    free(a->issuer);
    free(a->audience);
    pthread_mutex_destroy(&a->lock);
    memset(a, 0, sizeof *a);
}

/*
 * The key for (kid, alg): from the current set, else — with a URL, a kid the set does not
 * name, and the last fetch at least EHR_AUTH_REFETCH_MS ago — after fetching the set again
 * (toolgate rotated its key). Returns a new reference to the set holding the key, or NULL.
 */
static struct jwk_set *keys_for(struct ehr_auth *a, const char *kid, size_t kid_len, unsigned alg,
                                const struct jwk **key)
{
    struct jwk_set *set = NULL;
    pthread_mutex_lock(&a->lock);
    *key = a->keys ? jwks_find(a->keys, kid, kid_len, alg) : NULL;
    if (!*key && a->jwks_url && gw_mono_ms() - a->last_fetch_ms >= EHR_AUTH_REFETCH_MS) {
        char why[256];
        if (load_keys_locked(a, why, sizeof why) == 0)
            *key = jwks_find(a->keys, kid, kid_len, alg);
    }
    if (*key)
        set = jwks_ref(a->keys);
    pthread_mutex_unlock(&a->lock);
    return set;
}

/* ---- claims --------------------------------------------------------------------------- */

static char *string_claim(const json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 1024)
        return NULL;
    return strndup(json_string_value(v), json_string_length(v));
}

/* An array of strings, or a space-separated string (the OAuth `scope` form). */
static json_t *string_list(const json_t *v)
{
    json_t *out = json_array();
    if (!out || !v)
        return out;
    if (json_is_array(v)) {
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            if (json_is_string(item) && i < 256)
                json_array_append_new(
                    out, json_stringn(json_string_value(item), json_string_length(item)));
        }
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        while (*s) {
            size_t skip = strspn(s, " ");
            s += skip;
            size_t n = strcspn(s, " ");
            if (n)
                json_array_append_new(out, json_stringn(s, n));
            s += n;
        }
    }
    return out;
}

void ehr_principal_clear(struct ehr_principal *p)
{
    free(p->subject);
    free(p->tenant);
    free(p->client);
    json_decref(p->roles);
    json_decref(p->scopes);
    memset(p, 0, sizeof *p);
}

int ehr_auth_verify(struct ehr_auth *a, struct gw_slice authorization, int64_t now_s,
                    struct ehr_principal *out, char *why, size_t whylen)
{
    struct jwt_parsed parsed = {0};
    struct jwk_set *set = NULL;
    int parsed_ok = 0, rc = -1;
    memset(out, 0, sizeof *out);
    if (!authorization.ptr) {
        snprintf(why, whylen, "no bearer token");
        goto out;
    }
    if (authorization.len < 7 || strncasecmp(authorization.ptr, "Bearer ", 7) != 0) {
        snprintf(why, whylen, "the Authorization header is not a bearer token");
        goto out;
    }
    const char *tok = authorization.ptr + 7;
    size_t tlen = authorization.len - 7;
    while (tlen && *tok == ' ') {
        tok++;
        tlen--;
    }
    int jr = jwt_parse(tok, tlen, &parsed);
    if (jr != JWT_OK) {
        snprintf(why, whylen, "%s", jwt_error_code(jr));
        goto out;
    }
    parsed_ok = 1;
    const struct jwk *key = NULL;
    set = keys_for(a, parsed.kid, parsed.kid_len, parsed.alg, &key);
    if (!set) {
        snprintf(why, whylen, "%s", jwt_error_code(JWT_E_UNKNOWN_KID));
        goto out;
    }
    jr = jwt_verify_signature(&parsed, key->pkey);
    if (jr != JWT_OK) {
        snprintf(why, whylen, "%s", jwt_error_code(jr));
        goto out;
    }
    char *audiences[] = {a->audience, NULL};
    struct jwt_claim_rules rules = {
        .issuer = a->issuer,
        .audiences = audiences,
        .leeway_s = EHR_AUTH_LEEWAY_S,
        .now_s = now_s,
    };
    jr = jwt_check_claims(parsed.payload, &rules, &out->exp);
    if (jr != JWT_OK) {
        snprintf(why, whylen, "%s", jwt_error_code(jr));
        goto out;
    }
    /* The audience must be exactly ours, not one of several. */
    if (!json_is_string(json_object_get(parsed.payload, "aud"))) {
        snprintf(why, whylen, "%s", jwt_error_code(JWT_E_AUDIENCE));
        goto out;
    }
    out->subject = string_claim(json_object_get(parsed.payload, "sub"));
    if (!out->subject) {
        snprintf(why, whylen, "the token names no subject");
        goto out;
    }
    const json_t *tenant = json_object_get(parsed.payload, "tenant");
    out->tenant = string_claim(tenant);
    const json_t *act = json_object_get(parsed.payload, "act");
    out->client = json_is_object(act) ? string_claim(json_object_get(act, "sub")) : NULL;
    out->roles = string_list(json_object_get(parsed.payload, "roles"));
    out->scopes = string_list(json_object_get(parsed.payload, "scopes"));
    if (!out->roles || !out->scopes || (tenant && !json_is_null(tenant) && !out->tenant)) {
        snprintf(why, whylen, "%s", jwt_error_code(JWT_E_CLAIMS));
        goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        ehr_principal_clear(out);
    if (parsed_ok)
        jwt_parsed_free(&parsed);
    jwks_unref(set);
    return rc;
}
