/*
 * identity layer: verifies the bearer token of every request and fills req->identity.
 *
 * Hot path: the token's SHA-256 is looked up in the verified-token cache (no allocation;
 * the copy into the request allocates). On a miss the token is parsed, its issuer looked
 * up, the key chosen by kid among that issuer's keys, the signature checked with the
 * algorithm the key and the issuer allow, then the claims, then the claim mapping. A kid
 * the keys lack may trigger one early key refetch: check() returns GW_ASYNC and the request
 * is resumed on its own thread when the fetch has ended.
 *
 * Every failure is a denial with one client-facing text; the precise cause goes to
 * d->reason_code for audit.
 */
#include "layers/identity/identity.h"
#include "lib/log.h"
#include "lib/timeutil.h"
#include "core/challenge.h"
#include "layers/identity/claims.h"
#include "lib/jwt.h"
#include "layers/identity/keystore.h"
#include "lib/digest.h"
#include "layers/identity/token_cache.h"
#include "layers/layer.h"
#include "mcp/session.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What the client reads for every token problem: nothing that tells an attacker which check
 * failed. */
#define INVALID_TOKEN_TEXT "The access token is missing, invalid or expired."

/*
 * What one generation verifies with. Attached to its section before the generation serves and
 * never changed afterwards, so workers read it without a lock; the key store and the cache
 * are shared with other generations only through their own reference counts.
 */
struct identity_runtime {
    struct keystore *keys;
    struct token_cache *cache; /* NULL: no caching (token_cache_entries: 0) */
};

static struct identity_runtime *runtime_of(const struct identity_config *ic)
{
    return ic ? ic->runtime : NULL;
}

/* ---- denials -------------------------------------------------------------------------- */

static void scope_list(const struct identity_config *ic, char *out, size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (char **s = ic ? ic->scopes_supported : NULL; s && *s; s++) {
        size_t n = strlen(*s);
        if (used + n + 2 > outlen)
            break;
        if (used)
            out[used++] = ' ';
        memcpy(out + used, *s, n);
        used += n;
        out[used] = '\0';
    }
}

/* No credentials (or not Bearer ones): a bare challenge telling the client where to start. */
static int deny_missing(struct gw_request *req, struct gw_decision *d, const char *reason_code)
{
    char scope[256];
    gw_decision_deny(d, 401, IDENTITY_JSONRPC_UNAUTHORIZED, reason_code,
                     "This resource needs an OAuth access token.");
    scope_list(identity_config_of(req->cfg), scope, sizeof scope);
    gw_challenge(req, NULL, NULL, scope, req->www_authenticate, sizeof req->www_authenticate);
    return GW_DENY;
}

static int deny_bad_request(struct gw_request *req, struct gw_decision *d, const char *reason_code,
                            const char *text)
{
    gw_decision_deny(d, 400, IDENTITY_JSONRPC_UNAUTHORIZED, reason_code, text);
    gw_challenge(req, "invalid_request", text, NULL, req->www_authenticate,
                 sizeof req->www_authenticate);
    return GW_DENY;
}

static int deny_token(struct gw_request *req, struct gw_decision *d, int err)
{
    if (err == JWT_E_NO_KEYS) {
        /* Our problem, not the token's: a 401 would only send the client to log in again. */
        return gw_decision_deny(d, 503, JSONRPC_INTERNAL_ERROR, jwt_error_code(err),
                                "The identity provider's keys are not available; retry later.");
    }
    gw_decision_deny(d, 401, IDENTITY_JSONRPC_UNAUTHORIZED, jwt_error_code(err),
                     INVALID_TOKEN_TEXT);
    gw_challenge(req, "invalid_token", INVALID_TOKEN_TEXT, NULL, req->www_authenticate,
                 sizeof req->www_authenticate);
    return GW_DENY;
}

/* ---- the request ---------------------------------------------------------------------- */

/* True when the query has a parameter named access_token (percent-decoding the name). */
static int query_has_access_token(struct gw_slice q)
{
    static const char want[] = "access_token";
    size_t i = 0;
    while (i < q.len) {
        size_t start = i;
        while (i < q.len && q.ptr[i] != '&' && q.ptr[i] != ';')
            i++;
        size_t end = i++;
        char name[sizeof want];
        size_t n = 0;
        int ok = 1;
        for (size_t k = start; k < end && q.ptr[k] != '='; k++) {
            char c = q.ptr[k];
            uint8_t decoded;
            if (c == '%' && k + 2 < end && gw_unhex(q.ptr + k + 1, 1, &decoded, 0) == 0) {
                c = (char)decoded;
                k += 2;
            }
            if (n >= sizeof want - 1) {
                ok = 0;
                break;
            }
            name[n++] = c;
        }
        if (ok && n == sizeof want - 1 && memcmp(name, want, n) == 0)
            return 1;
    }
    return 0;
}

enum extract { EXTRACT_OK, EXTRACT_NONE, EXTRACT_NOT_BEARER, EXTRACT_EMPTY };

/* Splits "Bearer <token>" (scheme case-insensitive, RFC 7235 §2.1). */
static enum extract extract_bearer(struct gw_slice v, struct gw_slice *token)
{
    const char *p = v.ptr, *end = v.ptr + v.len;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (p == end)
        return EXTRACT_NONE;
    const char *scheme_end = p;
    while (scheme_end < end && *scheme_end != ' ' && *scheme_end != '\t')
        scheme_end++;
    if (scheme_end - p != 6 || strncasecmp(p, "bearer", 6) != 0)
        return EXTRACT_NOT_BEARER;
    p = scheme_end;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p == end)
        return EXTRACT_EMPTY;
    *token = (struct gw_slice){p, (size_t)(end - p)};
    return EXTRACT_OK;
}

static const struct identity_issuer_config *issuer_for(const struct identity_config *ic,
                                                       const json_t *payload)
{
    const json_t *iss = json_object_get(payload, "iss");
    if (!json_is_string(iss))
        return NULL;
    for (size_t i = 0; i < ic->n_issuers; i++)
        if (strcmp(ic->issuers[i].issuer, json_string_value(iss)) == 0)
            return &ic->issuers[i];
    return NULL;
}

/*
 * Waiting for a key refetch. Shared by the request (layer_state, released by its free hook)
 * and the fetch callback; `req` is cleared when the request goes away first.
 */
struct refetch_wait {
    pthread_mutex_t lock;
    int refs;
    struct gw_request *req;
};

static void wait_unref(struct refetch_wait *w)
{
    pthread_mutex_lock(&w->lock);
    int last = --w->refs == 0;
    pthread_mutex_unlock(&w->lock);
    if (last) {
        pthread_mutex_destroy(&w->lock);
        free(w);
    }
}

static void wait_release_from_request(void *state)
{
    struct refetch_wait *w = state;
    pthread_mutex_lock(&w->lock);
    w->req = NULL;
    pthread_mutex_unlock(&w->lock);
    wait_unref(w);
}

static void refetch_resumed(void *arg);

/* On the fetch thread: hand the wait back to the request's thread. */
static void refetch_done(void *arg)
{
    struct refetch_wait *w = arg;
    pthread_mutex_lock(&w->lock);
    struct gw_request *req = w->req;
    struct gw_request_host host = req ? req->host : (struct gw_request_host){0};
    pthread_mutex_unlock(&w->lock);
    if (!req) {
        wait_unref(w);
        return;
    }
    /* Without a host (unit tests) the resume runs here. */
    if (gw_host_post(&host, refetch_resumed, w) != 0)
        wait_unref(w); /* the worker is gone; its requests die with it */
}

/*
 * What is left of a verification once the issuer is known and its key found: the signature,
 * the registered claims, the claim mapping. Returns JWT_OK with *id filled, or the error (*id
 * left empty).
 */
static int verify_with_key(const struct identity_config *ic,
                           const struct identity_issuer_config *iss, const struct jwt_parsed *p,
                           const struct jwk *key, struct gw_identity *id)
{
    int err = jwt_verify_signature(p, key->pkey);
    if (err != JWT_OK)
        return err;
    struct jwt_claim_rules rules = {
        .issuer = iss->issuer,
        .audiences = iss->audiences,
        .leeway_s = (int64_t)(iss->leeway_ms / 1000),
        .now_s = (int64_t)(gw_now_ns() / 1000000000ull),
    };
    int64_t exp = 0;
    if ((err = jwt_check_claims(p->payload, &rules, &exp)) != JWT_OK)
        return err;
    return claims_map(&ic->claims, p->payload, iss->issuer, exp, id);
}

/*
 * Verifies a token that missed the cache. Returns GW_PASS (identity filled), GW_DENY
 * (decision filled) or GW_ASYNC (a refetch will resume the request).
 */
static int verify_token(struct gw_request *req, struct gw_decision *d, struct gw_slice token,
                        const uint8_t hash[GW_SHA256_LEN], int allow_refetch)
{
    const struct identity_config *ic = identity_config_of(req->cfg);
    struct jwt_parsed p;
    struct jwk_set *keys = NULL;
    struct gw_identity id = {0};
    int err = jwt_parse(token.ptr, token.len, &p);
    int verdict = GW_DENY;
    if (err != JWT_OK)
        return deny_token(req, d, err);

    const struct identity_issuer_config *iss = issuer_for(ic, p.payload);
    if (!iss) {
        err = JWT_E_ISSUER;
        goto out;
    }
    if (!(iss->algorithms & JWT_ALG_BIT(p.alg))) {
        err = JWT_E_ALG;
        goto out;
    }
    struct identity_runtime *rt = runtime_of(ic);
    if (!rt) {
        err = JWT_E_INTERNAL;
        goto out;
    }
    keys = keystore_get(rt->keys, iss->issuer);
    const struct jwk *key = jwks_find(keys, p.kid, p.kid_len, p.alg);
    if (!key) {
        err = keys ? JWT_E_UNKNOWN_KID : JWT_E_NO_KEYS;
        if (allow_refetch) {
            struct refetch_wait *w = calloc(1, sizeof *w);
            if (w) {
                pthread_mutex_init(&w->lock, NULL);
                w->refs = 2; /* the request's and the callback's */
                w->req = req;
                if (keystore_refetch(rt->keys, iss->issuer, refetch_done, w)) {
                    req->layer_state[GW_STAGE_IDENTITY] = w;
                    req->layer_state_free[GW_STAGE_IDENTITY] = wait_release_from_request;
                    verdict = GW_ASYNC;
                    goto out;
                }
                pthread_mutex_destroy(&w->lock);
                free(w);
            }
        }
        goto out;
    }
    if ((err = verify_with_key(ic, iss, &p, key, &id)) != JWT_OK)
        goto out;
    gw_hex(hash, GW_SHA256_LEN, id.token_hash);
    if (rt->cache && token_cache_put(rt->cache, hash, &id) != 0)
        gw_log_warn("token_cache", "out of memory while caching a verified token");
    gw_identity_clear(&req->identity);
    req->identity = id;
    memset(&id, 0, sizeof id);
    verdict = GW_PASS;
out:
    if (verdict == GW_DENY)
        deny_token(req, d, err);
    gw_identity_clear(&id);
    jwks_unref(keys);
    jwt_parsed_free(&p);
    return verdict;
}

/* Returns the bearer token or fills a denial. */
static int request_token(struct gw_request *req, struct gw_decision *d, struct gw_slice *token)
{
    if (query_has_access_token(req->query))
        return deny_bad_request(req, d, "identity.token_in_query",
                                "Send the access token in the Authorization header, not in "
                                "the URL.");
    size_t n = gw_request_header_count(req, "authorization");
    if (n == 0)
        return deny_missing(req, d, "identity.missing_token");
    if (n > 1)
        return deny_bad_request(req, d, "identity.multiple_authorization",
                                "Send exactly one Authorization header.");
    switch (extract_bearer(gw_request_header(req, "authorization"), token)) {
    case EXTRACT_OK:
        break;
    case EXTRACT_NONE:
        return deny_missing(req, d, "identity.missing_token");
    case EXTRACT_NOT_BEARER:
        return deny_missing(req, d, "identity.bad_scheme");
    case EXTRACT_EMPTY:
        return deny_token(req, d, JWT_E_MALFORMED);
    }
    if (token->len > JWT_MAX_TOKEN)
        return deny_token(req, d, JWT_E_TOO_LARGE);
    return GW_PASS;
}

/* A session lookup in flight: answered during the call (memory) or later (Redis). */
struct session_wait {
    struct gw_request *req;
    int in_call;
    int done;
    int verdict;
};

static void session_found(void *arg, int rc, struct mcp_session *s)
{
    struct session_wait *w = arg;
    struct gw_request *req = w->req;
    struct gw_decision *d = &req->decision[GW_STAGE_IDENTITY];
    int v = GW_PASS;
    if (rc == 0) {
        req->session = *s;
        memset(s->backends, 0, sizeof s->backends); /* the ids now belong to the request */
        req->session_valid = 1;
    } else if (rc == 1) {
        gw_identity_clear(&req->identity);
        v = gw_decision_deny(d, 404, IDENTITY_JSONRPC_UNAUTHORIZED, "identity.unknown_session",
                             "Session not found.");
    } else {
        v = gw_decision_deny(d, 503, JSONRPC_INTERNAL_ERROR, "identity.session_store",
                             "Sessions cannot be checked right now; try again.");
    }
    if (w->in_call) {
        w->done = 1;
        w->verdict = v;
        return;
    }
    free(w);
    d->verdict = (enum gw_verdict)v;
    gw_pipeline_resume(req, v);
}

/*
 * The session the request names must be one toolgate issued, live, and bound to this user and
 * this route; anything else is unknown (404), whoever it belongs to. Returns the verdict, or
 * GW_ASYNC when the store answers later (Redis): the verdict then comes through
 * gw_pipeline_resume.
 */
static int check_session(struct gw_request *req, struct gw_decision *d)
{
    if (!req->session_id)
        return GW_PASS;
    struct session_wait *w = calloc(1, sizeof *w);
    if (!w)
        return gw_decision_deny(d, 503, JSONRPC_INTERNAL_ERROR, "identity.session_store",
                                "Sessions cannot be checked right now; try again.");
    w->req = req;
    w->in_call = 1;
    uint8_t owner[32];
    mcp_session_owner(req->identity.verified ? req->identity.issuer : "", req->identity.subject,
                      owner);
    mcp_session_lookup(req->session_id, owner, req->route ? req->route->name : "",
                       gw_request_loop(req), session_found, w);
    w->in_call = 0;
    if (!w->done)
        return GW_ASYNC;
    int v = w->verdict;
    free(w);
    return v;
}

/* After a refetch, on the request's thread: verify again (no further refetch) and resume. */
static void refetch_resumed(void *arg)
{
    struct refetch_wait *w = arg;
    pthread_mutex_lock(&w->lock);
    struct gw_request *req = w->req;
    pthread_mutex_unlock(&w->lock);
    if (req) {
        struct gw_decision *d = &req->decision[GW_STAGE_IDENTITY];
        struct gw_slice token = GW_SLICE_NULL;
        int v = request_token(req, d, &token);
        if (v == GW_PASS) {
            uint8_t hash[GW_SHA256_LEN];
            gw_sha256(token.ptr, token.len, hash);
            v = verify_token(req, d, token, hash, 0);
        }
        if (v == GW_PASS)
            v = check_session(req, d);
        /* A session lookup resumes the pipeline itself (req may be gone by now). */
        if (v != GW_ASYNC) {
            if (v != GW_PASS && v != GW_DENY)
                v = deny_token(req, d, JWT_E_INTERNAL);
            d->verdict = (enum gw_verdict)v;
            gw_pipeline_resume(req, v);
        }
    }
    wait_unref(w);
}

static int identity_check(struct gw_request *req, struct gw_decision *d)
{
    const struct identity_config *ic = identity_config_of(req->cfg);
    if (!ic)
        return gw_decision_deny(d, 500, JSONRPC_INTERNAL_ERROR, "identity.not_configured",
                                "Authentication is not configured on this gateway.");
    if (ic->mode == IDENTITY_MODE_OFF) {
        /* Explicitly unauthenticated: an unverified, anonymous caller. */
        gw_identity_clear(&req->identity);
        req->identity.subject = strdup("anonymous");
        req->identity.roles = calloc(1, sizeof(char *));
        req->identity.scopes = calloc(1, sizeof(char *));
        if (!req->identity.subject || !req->identity.roles || !req->identity.scopes)
            return gw_decision_deny(d, 500, JSONRPC_INTERNAL_ERROR, "identity.internal",
                                    "An internal error stopped this request.");
        /* Sessions are still toolgate's own: an id it did not issue is unknown. */
        return check_session(req, d);
    }
    struct gw_slice token = GW_SLICE_NULL;
    if (request_token(req, d, &token) != GW_PASS)
        return GW_DENY;
    uint8_t hash[GW_SHA256_LEN];
    gw_sha256(token.ptr, token.len, hash);
    gw_identity_clear(&req->identity);
    int64_t now = (int64_t)(gw_now_ns() / 1000000000ull);
    struct identity_runtime *rt = runtime_of(ic);
    int hit = rt && rt->cache ? token_cache_get(rt->cache, hash, now, &req->identity) : 0;
    int v;
    if (hit == 1) {
        /* A cached identity is valid only for an issuer this configuration still trusts. */
        v = GW_PASS;
        int trusted = 0;
        for (size_t i = 0; i < ic->n_issuers; i++)
            trusted |= strcmp(ic->issuers[i].issuer, req->identity.issuer) == 0;
        if (!trusted) {
            gw_identity_clear(&req->identity);
            v = verify_token(req, d, token, hash, 1);
        }
    } else {
        v = verify_token(req, d, token, hash, 1);
    }
    if (v == GW_PASS)
        v = check_session(req, d);
    return v;
}

const struct gw_layer_ops identity_layer = {
    .check = identity_check,
};

/*
 * A person's token outside a request (the admin API's approvers): the same issuers,
 * audiences, algorithms and claim mapping as a call, with the keys the store holds now. It
 * neither fetches keys nor reads or fills the token cache, so it never waits on the network.
 */
int identity_verify_person(const struct identity_config *ic, struct gw_slice token,
                           struct gw_identity *out)
{
    struct jwt_parsed p;
    struct jwk_set *keys = NULL;
    memset(out, 0, sizeof *out);
    if (!ic || ic->mode != IDENTITY_MODE_ON || !runtime_of(ic))
        return JWT_E_INTERNAL;
    if (!token.ptr || token.len == 0)
        return JWT_E_MALFORMED;
    if (token.len > JWT_MAX_TOKEN)
        return JWT_E_TOO_LARGE;
    int err = jwt_parse(token.ptr, token.len, &p);
    if (err != JWT_OK)
        return err;
    const struct identity_issuer_config *iss = issuer_for(ic, p.payload);
    if (!iss) {
        err = JWT_E_ISSUER;
        goto out;
    }
    if (!(iss->algorithms & JWT_ALG_BIT(p.alg))) {
        err = JWT_E_ALG;
        goto out;
    }
    keys = keystore_get(runtime_of(ic)->keys, iss->issuer);
    const struct jwk *key = jwks_find(keys, p.kid, p.kid_len, p.alg);
    if (!key) {
        err = keys ? JWT_E_UNKNOWN_KID : JWT_E_NO_KEYS;
        goto out;
    }
    if ((err = verify_with_key(ic, iss, &p, key, out)) != JWT_OK)
        goto out;
    uint8_t hash[GW_SHA256_LEN];
    gw_sha256(token.ptr, token.len, hash);
    gw_hex(hash, GW_SHA256_LEN, out->token_hash);
out:
    if (err != JWT_OK)
        gw_identity_clear(out);
    jwks_unref(keys);
    jwt_parsed_free(&p);
    return err;
}

/* ---- runtime -------------------------------------------------------------------------- */

struct keystore *identity_keys_of(const struct identity_config *ic)
{
    return ic && ic->runtime ? ic->runtime->keys : NULL;
}

struct token_cache *identity_cache_of(const struct identity_config *ic)
{
    return ic && ic->runtime ? ic->runtime->cache : NULL;
}

void identity_runtime_free(struct identity_runtime *rt)
{
    if (!rt)
        return;
    keystore_release(rt->keys);
    token_cache_free(rt->cache);
    free(rt);
}

static int strv_same(char *const *a, char *const *b)
{
    for (; a && b && *a && *b; a++, b++)
        if (strcmp(*a, *b) != 0)
            return 0;
    return (!a || !*a) && (!b || !*b);
}

static int str_same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

int identity_verification_same(const struct identity_config *a, const struct identity_config *b)
{
    if (!a || !b || a->mode != b->mode || a->n_issuers != b->n_issuers ||
        a->token_cache_entries != b->token_cache_entries)
        return 0;
    for (size_t i = 0; i < a->n_issuers; i++) {
        const struct identity_issuer_config *x = &a->issuers[i], *y = &b->issuers[i];
        if (strcmp(x->issuer, y->issuer) != 0 || !strv_same(x->audiences, y->audiences) ||
            x->algorithms != y->algorithms || x->leeway_ms != y->leeway_ms ||
            x->discover != y->discover || !str_same(x->jwks_uri, y->jwks_uri) ||
            !str_same(x->jwks_file, y->jwks_file))
            return 0;
    }
    const struct identity_claims_config *p = &a->claims, *q = &b->claims;
    return strv_same(p->subject, q->subject) && strv_same(p->tenant, q->tenant) &&
           strv_same(p->roles, q->roles) && strv_same(p->scopes, q->scopes) &&
           strv_same(p->client, q->client);
}

/*
 * Builds cfg's runtime. `running` (may be NULL) is the section being served: its keys carry
 * over where their source is unchanged, and its token cache is shared when verification
 * cannot come out differently (identity_verification_same and every key set carried).
 */
static struct identity_runtime *runtime_build(const struct identity_config *cfg,
                                              const struct identity_config *running, int strict,
                                              char *why, size_t whylen)
{
    struct identity_runtime *rt = calloc(1, sizeof *rt);
    struct identity_runtime *was = runtime_of(running);
    int carried_all = 0;
    if (!rt) {
        snprintf(why, whylen, "out of memory for the identity layer");
        return NULL;
    }
    rt->keys = keystore_build(cfg, was ? was->keys : NULL, strict, &carried_all, why, whylen);
    if (!rt->keys)
        goto fail;
    if (was && was->cache && carried_all && identity_verification_same(running, cfg)) {
        rt->cache = token_cache_hold(was->cache);
    } else if (cfg->token_cache_entries) {
        rt->cache = token_cache_new((size_t)cfg->token_cache_entries);
        if (!rt->cache) {
            snprintf(why, whylen, "out of memory for the token cache");
            goto fail;
        }
    }
    return rt;
fail:
    identity_runtime_free(rt);
    return NULL;
}

/* The runtime belongs to the section of its generation, the one field set after parsing. */
static void runtime_attach(const struct identity_config *cfg, struct identity_runtime *rt)
{
    struct identity_config *mut = (struct identity_config *)cfg;
    identity_runtime_free(mut->runtime);
    mut->runtime = rt;
}

int identity_start(const struct identity_config *cfg)
{
    char why[512] = "";
    identity_stop();
    if (!cfg) {
        gw_log_warn("identity_unconfigured", "no identity section: every request is denied");
        return 0;
    }
    if (cfg->mode == IDENTITY_MODE_OFF) {
        gw_log_warn("identity_off",
                    "identity is OFF (identity.mode: off): requests are NOT authenticated and "
                    "run as the anonymous user. Never use this outside local experiments.");
    }
    if (mcp_session_configure((size_t)cfg->session_entries, cfg->session_idle_ms) != 0) {
        gw_log_error("identity_start", "out of memory for the session map");
        return -1;
    }
    struct identity_runtime *rt = runtime_build(cfg, NULL, 0, why, sizeof why);
    if (!rt) {
        gw_log_error("identity_start", "%s", why);
        identity_stop();
        return -1;
    }
    runtime_attach(cfg, rt);
    keystore_activate(rt->keys);
    return 0;
}

void identity_stop(void)
{
    keystore_stop();
}

/* The session map's defaults (mcp/session.c uses them until identity_start configures it). */
#define SESSION_DEFAULT_ENTRIES 100000
#define SESSION_DEFAULT_IDLE_MS (3600ull * 1000)

int identity_reload_prepare(const struct identity_config *running,
                            const struct identity_config *next, struct cfg_error *err)
{
    if (!next)
        return 0; /* no section: every request is denied, nothing to build */
    uint64_t entries = running ? running->session_entries : SESSION_DEFAULT_ENTRIES;
    uint64_t idle = running ? running->session_idle_ms : SESSION_DEFAULT_IDLE_MS;
    if (next->session_entries != entries || next->session_idle_ms != idle) {
        snprintf(err->msg, sizeof err->msg,
                 "identity.sessions changed: the session map is sized and timed when toolgate "
                 "starts and keeps the sessions of every user, so a restart is needed to change "
                 "it (the running configuration keeps serving)");
        return -1;
    }
    if (next->mode == IDENTITY_MODE_OFF && (!running || running->mode != IDENTITY_MODE_OFF))
        gw_log_warn("identity_off", "the reloaded configuration turns identity OFF: requests "
                                    "are NOT authenticated and run as the anonymous user");
    char why[sizeof err->msg] = "";
    struct identity_runtime *rt = runtime_build(next, running, 1, why, sizeof why);
    if (!rt) {
        snprintf(err->msg, sizeof err->msg, "%s", why);
        return -1;
    }
    runtime_attach(next, rt);
    return 0;
}

void identity_reload_commit(const struct identity_config *next)
{
    struct identity_runtime *rt = runtime_of(next);
    keystore_activate(rt ? rt->keys : NULL);
}

void identity_reload_abort(const struct identity_config *next)
{
    if (next)
        runtime_attach(next, NULL);
}

/* ---- RFC 9728 metadata ---------------------------------------------------------------- */

static json_t *string_array(char *const *v)
{
    json_t *a = json_array();
    for (char *const *s = v; a && s && *s; s++) {
        if (json_array_append_new(a, json_string(*s)) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

int identity_metadata_json(const struct gw_config *cfg, const char *route_path, struct gw_buf *out)
{
    if (!cfg || !identity_config_of(cfg))
        return -1;
    const struct identity_config *ic = identity_config_of(cfg);
    const char *base = cfg->server.public_url ? cfg->server.public_url : "";
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    struct gw_buf resource = {0};
    json_t *doc = NULL;
    char *text = NULL;
    int rc = -1;
    if (gw_buf_append(&resource, base, blen) != 0)
        goto out;
    if (route_path && *route_path && strcmp(route_path, "/") != 0 &&
        gw_buf_append_str(&resource, route_path) != 0)
        goto out;
    if (!resource.data && gw_buf_append(&resource, "", 0) != 0)
        goto out;
    doc = json_object();
    if (!doc || json_object_set_new(doc, "resource", json_string(resource.data)) != 0 ||
        json_object_set_new(doc, "authorization_servers",
                            string_array(ic->authorization_servers)) != 0 ||
        json_object_set_new(doc, "scopes_supported", string_array(ic->scopes_supported)) != 0 ||
        json_object_set_new(doc, "bearer_methods_supported", json_pack("[s]", "header")) != 0)
        goto out;
    text = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text || gw_buf_append_str(out, text) != 0)
        goto out;
    rc = 0;
out:
    free(text);
    json_decref(doc);
    gw_buf_free(&resource);
    return rc;
}
