/*
 * inject: minted identity tokens and identity headers for the backend. See inject.h.
 */
#include "layers/routing/inject.h"
#include "lib/log.h"
#include "lib/timeutil.h"
#include "lib/jwk.h"
#include "lib/jwt.h"
#include "lib/digest.h"
#include "layers/routing/routing.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_WAYS 8
/* Longest identity value sent in a header; a longer one denies rather than truncates. */
#define INJECT_MAX_HEADER_VALUE 4096

struct mint_entry {
    uint8_t key[GW_SHA256_LEN];
    char *token;       /* owned; NULL when the slot is empty */
    int64_t exp;       /* the token's exp */
    int64_t use_until; /* handed out only before this (exp minus half the lifetime) */
    uint64_t stamp;    /* for least-recently-used replacement within the set */
};

struct mint_set {
    pthread_mutex_t mu;
    uint64_t clock;
    struct mint_entry e[CACHE_WAYS];
};

/* A key and its token cache: immutable once open but for the cache (under its locks). */
struct inject_signer {
    atomic_int refs;
    EVP_PKEY *key;
    enum jwt_alg alg;
    char kid[64];
    struct mint_set *sets;
    size_t n_sets;
};

/* The process's signer of inject_start (tests, the benchmark). */
static struct inject_signer *process_signer;

/* ---- the key ------------------------------------------------------------------------------ */

static void ossl_why(char *why, size_t whylen, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char buf[160] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    snprintf(why, whylen, "%s %s%s%s", what, path, buf[0] ? ": " : "", buf);
}

static EVP_PKEY *load_key(const char *path, char *why, size_t whylen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(why, whylen, "cannot open the signing key %s: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!key)
        ossl_why(why, whylen, "cannot read a PEM private key from", path);
    return key;
}

static int choose_alg(EVP_PKEY *key, enum jwt_alg *alg)
{
    unsigned algs = jwt_algs_for_key(key);
    if (algs & JWT_ALG_BIT(JWT_EDDSA))
        *alg = JWT_EDDSA;
    else if ((algs & JWT_ALG_BIT(JWT_RS256)) && EVP_PKEY_get_bits(key) >= 2048)
        *alg = JWT_RS256;
    else if (algs & JWT_ALG_BIT(JWT_ES256))
        *alg = JWT_ES256;
    else
        return -1;
    return 0;
}

static EVP_PKEY *generate_key(const char *path, char *why, size_t whylen)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    FILE *f = NULL;
    if (!key) {
        ossl_why(why, whylen, "cannot generate an Ed25519 key for", path);
        return NULL;
    }
    /* O_EXCL: never overwrite a key another process has just written. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(why, whylen, "cannot create the signing key %s: %s", path, strerror(errno));
        goto fail;
    }
    f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        snprintf(why, whylen, "cannot write the signing key %s", path);
        goto fail;
    }
    int ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        ok = 0;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok) {
        ossl_why(why, whylen, "cannot write the signing key", path);
        unlink(path);
        goto fail;
    }
    return key;
fail:
    EVP_PKEY_free(key);
    return NULL;
}

static void signer_destroy(struct inject_signer *S)
{
    for (size_t i = 0; i < S->n_sets; i++) {
        for (int w = 0; w < CACHE_WAYS; w++)
            free(S->sets[i].e[w].token);
        pthread_mutex_destroy(&S->sets[i].mu);
    }
    free(S->sets);
    EVP_PKEY_free(S->key);
    free(S);
}

struct inject_signer *inject_signer_open(const char *key_path, char *why, size_t whylen)
{
    struct inject_signer *S = calloc(1, sizeof *S);
    if (!S) {
        snprintf(why, whylen, "out of memory for the signing key");
        return NULL;
    }
    atomic_init(&S->refs, 1);
    const char *path = key_path ? key_path : ROUTING_DEFAULT_KEY_PATH;
    int generated = 0;
    if (key_path || access(path, F_OK) == 0) {
        S->key = load_key(path, why, whylen);
    } else {
        S->key = generate_key(path, why, whylen);
        generated = S->key != NULL;
    }
    if (!S->key)
        goto fail;
    if (choose_alg(S->key, &S->alg) != 0) {
        snprintf(why, whylen,
                 "the signing key %s is not Ed25519, RSA of 2048 bits or more, or EC P-256", path);
        goto fail;
    }
    if (jwk_thumbprint(S->key, S->kid) != 0) {
        snprintf(why, whylen, "cannot compute the thumbprint of the signing key %s", path);
        goto fail;
    }
    S->n_sets = INJECT_CACHE_ENTRIES / CACHE_WAYS;
    S->sets = calloc(S->n_sets, sizeof *S->sets);
    if (!S->sets) {
        S->n_sets = 0;
        snprintf(why, whylen, "out of memory for the token cache");
        goto fail;
    }
    for (size_t i = 0; i < S->n_sets; i++)
        pthread_mutex_init(&S->sets[i].mu, NULL);
    if (generated)
        gw_log_warn("egress_key_generated",
                    "no egress.signing_key configured: generated an Ed25519 key at %s (kid %s) "
                    "for the identity tokens toolgate injects; backends verify them with "
                    "/.well-known/jwks.json. Configure egress.signing_key to keep one key "
                    "across instances.",
                    path, S->kid);
    return S;
fail:
    signer_destroy(S);
    return NULL;
}

void inject_signer_hold(struct inject_signer *s)
{
    if (s)
        atomic_fetch_add(&s->refs, 1);
}

void inject_signer_release(struct inject_signer *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1)
        signer_destroy(s);
}

const char *inject_signer_kid(const struct inject_signer *s)
{
    return s ? s->kid : "";
}

const char *inject_signer_alg(const struct inject_signer *s)
{
    return s ? jwt_alg_name(s->alg) : "";
}

json_t *inject_signer_jwk(const struct inject_signer *s)
{
    return s ? jwk_public_json(s->key, s->kid, jwt_alg_name(s->alg)) : NULL;
}

int inject_start(const char *key_path, char *why, size_t whylen)
{
    inject_stop();
    process_signer = inject_signer_open(key_path, why, whylen);
    return process_signer ? 0 : -1;
}

void inject_stop(void)
{
    inject_signer_release(process_signer);
    process_signer = NULL;
}

struct inject_signer *inject_process_signer(void)
{
    return process_signer;
}

int inject_has_key(void)
{
    return process_signer != NULL;
}

const char *inject_kid(void)
{
    return inject_signer_kid(process_signer);
}

int inject_jwks_json(struct gw_buf *out)
{
    const struct inject_signer *one[1] = {process_signer};
    return inject_signers_jwks_json(one, 1, out);
}

int inject_signers_jwks_json(const struct inject_signer *const *signers, size_t n,
                             struct gw_buf *out)
{
    json_t *set = json_pack("{s:[]}", "keys");
    int rc = -1;
    if (!set)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!signers[i])
            continue;
        json_t *jwk = inject_signer_jwk(signers[i]);
        if (!jwk || json_array_append_new(json_object_get(set, "keys"), jwk) != 0)
            goto out;
    }
    char *text = json_dumps(set, JSON_COMPACT);
    if (!text)
        goto out;
    rc = gw_buf_append_str(out, text);
    free(text);
out:
    json_decref(set);
    return rc;
}

void inject_signer_flush(struct inject_signer *S)
{
    for (size_t i = 0; S && i < S->n_sets; i++) {
        pthread_mutex_lock(&S->sets[i].mu);
        for (int w = 0; w < CACHE_WAYS; w++) {
            free(S->sets[i].e[w].token);
            memset(&S->sets[i].e[w], 0, sizeof S->sets[i].e[w]);
        }
        pthread_mutex_unlock(&S->sets[i].mu);
    }
}

void inject_cache_flush(void)
{
    inject_signer_flush(process_signer);
}

/* ---- the token cache ---------------------------------------------------------------------- */

static void hash_field(struct gw_sha256_ctx *c, const char *s)
{
    /* Length-prefixed, so ("ab","c") and ("a","bc") hash differently; NULL differs from "". */
    uint64_t len = s ? (uint64_t)strlen(s) : UINT64_MAX;
    gw_sha256_update(c, &len, sizeof len);
    if (s)
        gw_sha256_update(c, s, strlen(s));
}

static void cache_key(const struct inject_signer *S, const struct gw_identity *id,
                      const char *issuer, const char *audience, uint64_t ttl_ms,
                      uint8_t out[GW_SHA256_LEN])
{
    struct gw_sha256_ctx c;
    gw_sha256_init(&c);
    hash_field(&c, S->kid);
    hash_field(&c, issuer);
    hash_field(&c, audience);
    gw_sha256_update(&c, &ttl_ms, sizeof ttl_ms);
    hash_field(&c, id->issuer);
    hash_field(&c, id->subject);
    hash_field(&c, id->tenant);
    hash_field(&c, id->client_id);
    for (size_t i = 0; id->roles && id->roles[i]; i++)
        hash_field(&c, id->roles[i]);
    hash_field(&c, NULL);
    for (size_t i = 0; id->scopes && id->scopes[i]; i++)
        hash_field(&c, id->scopes[i]);
    gw_sha256_final(&c, out);
}

static struct mint_set *set_for(struct inject_signer *S, const uint8_t key[GW_SHA256_LEN])
{
    uint64_t h;
    memcpy(&h, key, sizeof h);
    return &S->sets[h % S->n_sets];
}

/* Copies a live token into out. Returns 1 on a hit, 0 on a miss, -1 on memory. */
static int cache_get(struct inject_signer *S, const uint8_t key[GW_SHA256_LEN], int64_t now_s,
                     int64_t max_exp, struct gw_buf *out)
{
    if (!S->n_sets)
        return 0;
    struct mint_set *set = set_for(S, key);
    int rc = 0;
    pthread_mutex_lock(&set->mu);
    for (int w = 0; w < CACHE_WAYS; w++) {
        struct mint_entry *e = &set->e[w];
        if (!e->token || memcmp(e->key, key, GW_SHA256_LEN) != 0)
            continue;
        /* Never past its use-by time, and never outliving the user's own token. */
        if (now_s < e->use_until && (max_exp <= 0 || e->exp <= max_exp)) {
            e->stamp = ++set->clock;
            rc = gw_buf_append_str(out, e->token) == 0 ? 1 : -1;
        }
        break;
    }
    pthread_mutex_unlock(&set->mu);
    return rc;
}

static void cache_put(struct inject_signer *S, const uint8_t key[GW_SHA256_LEN], const char *token,
                      int64_t exp, int64_t use_until, int64_t now_s)
{
    if (!S->n_sets)
        return;
    char *copy = strdup(token);
    if (!copy)
        return; /* a token not cached is only slower */
    struct mint_set *set = set_for(S, key);
    pthread_mutex_lock(&set->mu);
    struct mint_entry *slot = NULL;
    for (int w = 0; w < CACHE_WAYS && !slot; w++)
        if (set->e[w].token && memcmp(set->e[w].key, key, GW_SHA256_LEN) == 0)
            slot = &set->e[w];
    for (int w = 0; w < CACHE_WAYS && !slot; w++)
        if (!set->e[w].token || set->e[w].use_until <= now_s)
            slot = &set->e[w];
    if (!slot) {
        slot = &set->e[0];
        for (int w = 1; w < CACHE_WAYS; w++)
            if (set->e[w].stamp < slot->stamp)
                slot = &set->e[w];
    }
    free(slot->token);
    memcpy(slot->key, key, GW_SHA256_LEN);
    slot->token = copy;
    slot->exp = exp;
    slot->use_until = use_until;
    slot->stamp = ++set->clock;
    pthread_mutex_unlock(&set->mu);
}

/* ---- minting ------------------------------------------------------------------------------ */

static json_t *strv_json(char **v)
{
    json_t *a = json_array();
    for (size_t i = 0; a && v && v[i]; i++)
        if (json_array_append_new(a, json_string(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static int mint(const struct inject_signer *S, const struct gw_identity *id, const char *issuer,
                const char *audience, int64_t now_s, int64_t exp, struct gw_buf *out)
{
    int rc = INJECT_E_INTERNAL;
    char jti[37];
    char *htext = NULL, *ptext = NULL;
    json_t *header = NULL, *payload = NULL;
    gw_uuid7(jti);
    header = json_pack("{s:s, s:s, s:s}", "alg", jwt_alg_name(S->alg), "typ", "JWT", "kid", S->kid);
    payload = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "iss", issuer, "aud", audience, "sub",
                        id->subject, "jti", jti, "iat", (json_int_t)now_s, "exp", (json_int_t)exp);
    if (!header || !payload)
        goto out;
    json_t *roles = strv_json(id->roles), *scopes = strv_json(id->scopes);
    if (json_object_set_new(payload, "roles", roles) != 0 ||
        json_object_set_new(payload, "scopes", scopes) != 0)
        goto out;
    if (id->tenant && json_object_set_new(payload, "tenant", json_string(id->tenant)) != 0)
        goto out;
    /* RFC 8693 "act": the party acting for the subject is the client (the LLM runtime). */
    if (id->client_id &&
        json_object_set_new(payload, "act", json_pack("{s:s}", "sub", id->client_id)) != 0)
        goto out;
    htext = json_dumps(header, JSON_COMPACT);
    ptext = json_dumps(payload, JSON_COMPACT);
    if (!htext || !ptext)
        goto out;
    if (jwt_sign_compact(S->key, S->alg, htext, strlen(htext), ptext, strlen(ptext), out) != 0)
        goto out;
    rc = INJECT_OK;
out:
    ERR_clear_error();
    free(htext);
    free(ptext);
    json_decref(header);
    json_decref(payload);
    return rc;
}

int inject_token(const struct gw_identity *id, const char *issuer, const char *audience,
                 uint64_t ttl_ms, int64_t now_s, struct gw_buf *out, int *from_cache)
{
    return inject_signer_token(process_signer, id, issuer, audience, ttl_ms, now_s, out,
                               from_cache);
}

int inject_signer_token(struct inject_signer *S, const struct gw_identity *id, const char *issuer,
                        const char *audience, uint64_t ttl_ms, int64_t now_s, struct gw_buf *out,
                        int *from_cache)
{
    if (from_cache)
        *from_cache = 0;
    if (!S)
        return INJECT_E_NO_KEY;
    if (!id || !id->subject || !issuer || !audience)
        return INJECT_E_IDENTITY;
    int64_t ttl_s = (int64_t)(ttl_ms / 1000);
    if (ttl_s < 1)
        ttl_s = 1;
    int64_t exp = now_s + ttl_s;
    /* A backend token never outlives the token the user presented. */
    if (id->expires_at > 0 && exp > id->expires_at)
        exp = id->expires_at;
    if (exp <= now_s)
        return INJECT_E_IDENTITY;
    uint8_t key[GW_SHA256_LEN];
    cache_key(S, id, issuer, audience, ttl_ms, key);
    size_t start = out->len;
    int hit = cache_get(S, key, now_s, id->expires_at, out);
    if (hit < 0)
        return INJECT_E_INTERNAL;
    if (hit) {
        if (from_cache)
            *from_cache = 1;
        return INJECT_OK;
    }
    int rc = mint(S, id, issuer, audience, now_s, exp, out);
    if (rc != INJECT_OK) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return rc;
    }
    /*
     * Handed out until half its lifetime is left, so a backend always receives a token with
     * at least that long to live; a token whose lifetime was cut short by the user's own
     * expiry is not cached at all.
     */
    int64_t use_until = exp - (ttl_s + 1) / 2;
    if (use_until > now_s)
        cache_put(S, key, out->data + start, exp, use_until, now_s);
    return INJECT_OK;
}

/* ---- headers ------------------------------------------------------------------------------ */

/*
 * Identity values come from token claims and may hold anything: bytes outside visible ASCII,
 * '%' and ',' (the list separator) are percent-encoded, so no value can split a header or a
 * list.
 */
static int append_encoded(struct gw_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x21 || *p > 0x7e || *p == '%' || *p == ',') {
            char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            if (gw_buf_append(b, esc, 3) != 0)
                return -1;
        } else if (gw_buf_append(b, p, 1) != 0) {
            return -1;
        }
    }
    return 0;
}

static int add_value(struct gw_request *req, const char *name, struct gw_buf *b)
{
    if (b->len > INJECT_MAX_HEADER_VALUE)
        return INJECT_E_VALUE;
    return gw_request_add_upstream_header(req, name, b->data ? b->data : "") == 0
               ? INJECT_OK
               : INJECT_E_INTERNAL;
}

static int inject_headers(struct gw_request *req, const struct gw_route_inject *ri)
{
    const struct gw_identity *id = &req->identity;
    struct gw_buf b = {0};
    int rc = INJECT_E_INTERNAL;
    if (!id->subject) {
        rc = INJECT_E_IDENTITY;
        goto out;
    }
    const char *single[GW_INJECT_H_COUNT] = {
        [GW_INJECT_H_SUBJECT] = id->subject,
        [GW_INJECT_H_TENANT] = id->tenant,
        [GW_INJECT_H_CLIENT] = id->client_id,
        [GW_INJECT_H_REQUEST_ID] = req->id,
    };
    for (int h = 0; h < GW_INJECT_H_COUNT; h++) {
        gw_buf_reset(&b);
        if (gw_buf_append(&b, "", 0) != 0)
            goto out;
        if (h == GW_INJECT_H_ROLES || h == GW_INJECT_H_SCOPES) {
            char **v = h == GW_INJECT_H_ROLES ? id->roles : id->scopes;
            for (size_t i = 0; v && v[i]; i++)
                if ((i && gw_buf_append(&b, ",", 1) != 0) || append_encoded(&b, v[i]) != 0)
                    goto out;
        } else if (!single[h]) {
            continue; /* no tenant or client: the header is left out, never sent empty */
        } else if (append_encoded(&b, single[h]) != 0) {
            goto out;
        }
        rc = add_value(req, ri->headers[h], &b);
        if (rc != INJECT_OK)
            goto out;
        rc = INJECT_E_INTERNAL;
    }
    rc = INJECT_OK;
out:
    gw_buf_free(&b);
    return rc;
}

int inject_apply(struct gw_request *req, const struct gw_route_inject *ri,
                 const struct gw_backend *be, struct inject_signer *signer)
{
    if (ri->mode == GW_INJECT_NONE)
        return INJECT_OK;
    if (ri->mode == GW_INJECT_HEADERS)
        return inject_headers(req, ri);
    const char *issuer = req->cfg ? req->cfg->server.public_url : NULL;
    const char *audience = ri->audience ? ri->audience : be->url;
    struct gw_buf b = {0};
    int rc = gw_buf_append_str(&b, "Bearer ") == 0 ? INJECT_OK : INJECT_E_INTERNAL;
    if (rc == INJECT_OK)
        rc = inject_signer_token(signer, &req->identity, issuer, audience, ri->ttl_ms,
                                 (int64_t)(gw_now_ns() / 1000000000u), &b, NULL);
    if (rc == INJECT_OK && gw_request_add_upstream_header(req, "Authorization", b.data) != 0)
        rc = INJECT_E_INTERNAL;
    gw_buf_free(&b);
    return rc;
}
