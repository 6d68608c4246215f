/*
 * tokex: the token-exchange runtime (see tokex.h). Three parts:
 *
 *   - the cache of issued tokens, keyed by SHA-256 over the user's token hash and every
 *     setting that shapes the exchange, set-associative (8 ways) and bounded;
 *   - the exchange threads: a queue of jobs, each a self-contained copy of what the round trip
 *     needs (no pointer into the request or the configuration is followed off its thread);
 *   - the request side: tokex_apply queues a job and returns GW_ASYNC; the thread posts the
 *     job back to the request's thread, where it adds the header or fills the denial and
 *     resumes the pipeline. A request stays alive while a layer is deciding, so the job may
 *     hold its pointer; the job never touches it on the exchange thread.
 */
#include "layers/routing/tokex.h"
#include "core/pipeline.h"
#include "layers/routing/routing.h"
#include "lib/digest.h"
#include "lib/discovery.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/timeutil.h"

#include <curl/curl.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CACHE_WAYS 8
#define MAX_ISSUERS 32

/* ---- counters ------------------------------------------------------------------------------ */

enum fail_kind { F_REFUSED, F_MALFORMED, F_UNAVAILABLE, F_TIMEOUT, F_BUSY, F_INTERNAL, F_COUNT };
static const char *const fail_names[F_COUNT] = {"refused", "malformed", "unavailable",
                                                "timeout", "busy",      "internal"};
static atomic_uint_fast64_t n_requests, n_issued, n_hits, n_fail[F_COUNT];

/* ---- the cache ----------------------------------------------------------------------------- */

struct entry {
    uint8_t key[GW_SHA256_LEN];
    char *token; /* owned; NULL when empty */
    int64_t use_until;
    uint64_t stamp;
};

struct set {
    pthread_mutex_t mu;
    uint64_t clock;
    struct entry e[CACHE_WAYS];
};

static struct set sets[TOKEX_CACHE_ENTRIES / CACHE_WAYS];
static pthread_once_t sets_once = PTHREAD_ONCE_INIT;

static void sets_init(void)
{
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        pthread_mutex_init(&sets[i].mu, NULL);
}

static void entry_drop(struct entry *e)
{
    if (e->token) {
        memset(e->token, 0, strlen(e->token));
        free(e->token);
    }
    memset(e, 0, sizeof *e);
}

static struct set *set_for(const uint8_t key[GW_SHA256_LEN])
{
    uint64_t h;
    memcpy(&h, key, sizeof h);
    pthread_once(&sets_once, sets_init);
    return &sets[h % (sizeof sets / sizeof sets[0])];
}

/* Appends "Bearer <token>" for a live entry. 1 hit, 0 miss, -1 memory. */
static int cache_get(const uint8_t key[GW_SHA256_LEN], int64_t now_s, struct gw_buf *out)
{
    struct set *s = set_for(key);
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    for (int w = 0; w < CACHE_WAYS; w++) {
        struct entry *e = &s->e[w];
        if (!e->token || memcmp(e->key, key, GW_SHA256_LEN) != 0)
            continue;
        if (now_s < e->use_until) {
            e->stamp = ++s->clock;
            rc = gw_buf_printf(out, "Bearer %s", e->token) == 0 ? 1 : -1;
        } else {
            entry_drop(e);
        }
        break;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void cache_put(const uint8_t key[GW_SHA256_LEN], const char *token, int64_t use_until,
                      int64_t now_s)
{
    char *copy = strdup(token);
    if (!copy)
        return; /* not cached is only slower */
    struct set *s = set_for(key);
    pthread_mutex_lock(&s->mu);
    struct entry *slot = NULL;
    for (int w = 0; w < CACHE_WAYS && !slot; w++)
        if (s->e[w].token && memcmp(s->e[w].key, key, GW_SHA256_LEN) == 0)
            slot = &s->e[w];
    for (int w = 0; w < CACHE_WAYS && !slot; w++)
        if (!s->e[w].token || s->e[w].use_until <= now_s)
            slot = &s->e[w];
    if (!slot) {
        slot = &s->e[0];
        for (int w = 1; w < CACHE_WAYS; w++)
            if (s->e[w].stamp < slot->stamp)
                slot = &s->e[w];
    }
    entry_drop(slot);
    memcpy(slot->key, key, GW_SHA256_LEN);
    slot->token = copy;
    slot->use_until = use_until;
    slot->stamp = ++s->clock;
    pthread_mutex_unlock(&s->mu);
}

void tokex_cache_flush(void)
{
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        struct set *s = &sets[i];
        pthread_once(&sets_once, sets_init);
        pthread_mutex_lock(&s->mu);
        for (int w = 0; w < CACHE_WAYS; w++)
            entry_drop(&s->e[w]);
        pthread_mutex_unlock(&s->mu);
    }
}

static void hash_field(struct gw_sha256_ctx *c, const char *s)
{
    /* Length-prefixed, so ("ab","c") and ("a","bc") differ; NULL differs from "". */
    uint64_t len = s ? (uint64_t)strlen(s) : UINT64_MAX;
    gw_sha256_update(c, &len, sizeof len);
    if (s)
        gw_sha256_update(c, s, strlen(s));
}

/* ---- jobs ---------------------------------------------------------------------------------- */

struct job {
    struct job *next;
    /* The request side: touched only on the request's thread. */
    struct gw_request *req;
    struct gw_decision *out;
    struct gw_request_host host;
    /* What the round trip needs: copies. */
    uint8_t key[GW_SHA256_LEN];
    struct gw_buf form; /* the urlencoded body: holds the subject token (wiped) */
    char *endpoint;     /* NULL: discover from issuer */
    char *issuer;
    char *client_id, *client_secret; /* form-urlencoded, for Basic (RFC 6749 §2.3.1) */
    int basic;
    char *want_type;
    uint64_t timeout_ms, discovery_ttl_ms, refresh_before_ms;
    int64_t user_exp;
    /* The outcome. */
    int result;
    enum fail_kind kind;
    struct tokex_answer answer;
    char why[320];
};

static void wipe_free(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

static void job_free(struct job *j)
{
    if (!j)
        return;
    if (j->form.data)
        memset(j->form.data, 0, j->form.len);
    gw_buf_free(&j->form);
    free(j->endpoint);
    free(j->issuer);
    wipe_free(j->client_id);
    wipe_free(j->client_secret);
    free(j->want_type);
    tokex_answer_clear(&j->answer);
    free(j);
}

/* application/x-www-form-urlencoded (RFC 6749 Appendix B): unreserved kept, the rest %XX. */
static int form_escape(struct gw_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                   (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~';
        char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
        if (keep ? gw_buf_append(b, p, 1) != 0 : gw_buf_append(b, esc, 3) != 0)
            return -1;
    }
    return 0;
}

static char *escaped_copy(const char *s)
{
    struct gw_buf b = {0};
    if (gw_buf_append(&b, "", 0) != 0 || form_escape(&b, s) != 0) {
        gw_buf_free(&b);
        return NULL;
    }
    return b.data;
}

static int form_field(struct gw_buf *b, const char *name, const char *value)
{
    if (!value)
        return 0;
    if ((b->len && gw_buf_append(b, "&", 1) != 0) || gw_buf_append_str(b, name) != 0 ||
        gw_buf_append(b, "=", 1) != 0)
        return -1;
    return form_escape(b, value);
}

/* ---- the exchange threads ------------------------------------------------------------------ */

struct issuer_meta {
    char *issuer;
    char *token_endpoint;
    uint64_t fetched_ms;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    int started, stopping;
    pthread_t threads[TOKEX_THREADS];
    size_t n_threads;
    struct job *head, *tail;
    size_t queued;
    struct issuer_meta meta[MAX_ISSUERS]; /* under mu */
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

struct body {
    struct gw_buf buf;
    int over;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct body *b = arg;
    size_t len = size * n;
    if (b->buf.len + len > TOKEX_MAX_RESPONSE) {
        b->over = 1;
        return 0; /* curl stops with a write error */
    }
    return gw_buf_append(&b->buf, p, len) == 0 ? len : 0;
}

/*
 * One HTTP round trip on this thread's handle (reset each time; its connection cache kept).
 * form NULL: a GET. Returns 0 with *status and the body, or a tokex_result with why.
 */
static int http_round_trip(CURL *curl, const char *url, const struct gw_buf *form,
                           const struct job *j, long *status, struct body *body, char *why,
                           size_t whylen, enum fail_kind *kind)
{
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)j->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)j->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "toolgate/" TOOLGATE_VERSION);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");
    if (form) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/x-www-form-urlencoded");
        hdrs = curl_slist_append(hdrs, "Expect:");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, form->data);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)form->len);
        if (j->basic) {
            curl_easy_setopt(curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
            curl_easy_setopt(curl, CURLOPT_USERNAME, j->client_id);
            curl_easy_setopt(curl, CURLOPT_PASSWORD, j->client_secret);
        }
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    CURLcode res = curl_easy_perform(curl);
    curl_slist_free_all(hdrs);
    *status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    /* The handle keeps the credentials and body pointer until reset: reset now. */
    curl_easy_reset(curl);
    if (res == CURLE_OK)
        return 0;
    if (body->over) {
        snprintf(why, whylen, "%s answered more than %u bytes", url, TOKEX_MAX_RESPONSE);
        *kind = F_MALFORMED;
        return TOKEX_E_MALFORMED;
    }
    *kind = res == CURLE_OPERATION_TIMEDOUT ? F_TIMEOUT : F_UNAVAILABLE;
    snprintf(why, whylen, "%s: %s", url, curl_easy_strerror(res));
    return TOKEX_E_UNAVAILABLE;
}

/* The token endpoint of j->issuer: from the metadata cache, else read now. Caller frees. */
static char *discover(CURL *curl, struct job *j)
{
    uint64_t now = gw_mono_ms();
    char *found = NULL;
    pthread_mutex_lock(&P.mu);
    for (size_t i = 0; i < MAX_ISSUERS && !found; i++)
        if (P.meta[i].issuer && strcmp(P.meta[i].issuer, j->issuer) == 0 &&
            now - P.meta[i].fetched_ms < j->discovery_ttl_ms)
            found = strdup(P.meta[i].token_endpoint);
    pthread_mutex_unlock(&P.mu);
    if (found)
        return found;
    char urls[DISCOVERY_MAX_URLS][DISCOVERY_MAX_URL];
    size_t n = 0;
    if (discovery_urls(j->issuer, urls, &n, j->why, sizeof j->why) != 0)
        return NULL;
    for (size_t u = 0; u < n && !found; u++) {
        struct body b = {0};
        long status = 0;
        enum fail_kind kind;
        int rc = http_round_trip(curl, urls[u], NULL, j, &status, &b, j->why, sizeof j->why, &kind);
        if (rc == 0 && status == 200) {
            struct discovery_meta m;
            char why[256];
            int prc = discovery_parse(b.buf.data ? b.buf.data : "", b.buf.len, j->issuer, &m, why,
                                      sizeof why);
            if (prc == 0 && m.token_endpoint) {
                found = m.token_endpoint;
                m.token_endpoint = NULL;
            } else {
                snprintf(j->why, sizeof j->why, "the metadata of %.150s: %.150s", j->issuer,
                         prc == 0 ? "has no token_endpoint" : why);
            }
            if (prc == 0)
                discovery_meta_clear(&m);
            if (prc == -2 || prc == 0) {
                gw_buf_free(&b.buf);
                break; /* a document for another issuer, or none usable: no further URL */
            }
        } else if (rc == 0) {
            snprintf(j->why, sizeof j->why, "%s answered HTTP %ld", urls[u], status);
        }
        gw_buf_free(&b.buf);
    }
    if (!found)
        return NULL;
    pthread_mutex_lock(&P.mu);
    struct issuer_meta *slot = NULL;
    for (size_t i = 0; i < MAX_ISSUERS && !slot; i++)
        if (!P.meta[i].issuer || strcmp(P.meta[i].issuer, j->issuer) == 0)
            slot = &P.meta[i];
    if (!slot)
        slot = &P.meta[0];
    char *iss = strdup(j->issuer), *te = strdup(found);
    if (iss && te) {
        free(slot->issuer);
        free(slot->token_endpoint);
        slot->issuer = iss;
        slot->token_endpoint = te;
        slot->fetched_ms = gw_mono_ms();
    } else {
        free(iss);
        free(te);
    }
    pthread_mutex_unlock(&P.mu);
    return found;
}

static void exchange(CURL *curl, struct job *j)
{
    char *endpoint = j->endpoint ? strdup(j->endpoint) : discover(curl, j);
    if (!endpoint) {
        j->result = TOKEX_E_UNAVAILABLE;
        j->kind = F_UNAVAILABLE;
        if (!j->why[0])
            snprintf(j->why, sizeof j->why, "the token endpoint could not be discovered");
        return;
    }
    struct body b = {0};
    long status = 0;
    atomic_fetch_add_explicit(&n_requests, 1, memory_order_relaxed);
    j->result =
        http_round_trip(curl, endpoint, &j->form, j, &status, &b, j->why, sizeof j->why, &j->kind);
    if (j->result == 0) {
        j->result = tokex_response_parse(status, b.buf.data, b.buf.len, j->want_type, &j->answer,
                                         j->why, sizeof j->why);
        j->kind = j->result == TOKEX_E_REFUSED       ? F_REFUSED
                  : j->result == TOKEX_E_UNAVAILABLE ? F_UNAVAILABLE
                  : j->result == TOKEX_E_INTERNAL    ? F_INTERNAL
                                                     : F_MALFORMED;
    }
    if (b.buf.data)
        memset(b.buf.data, 0, b.buf.len); /* it held the issued token */
    gw_buf_free(&b.buf);
    free(endpoint);
}

static void job_done(void *arg);

static void *exchange_thread(void *unused)
{
    (void)unused;
    CURL *curl = curl_easy_init();
    pthread_mutex_lock(&P.mu);
    for (;;) {
        while (!P.head && !P.stopping)
            pthread_cond_wait(&P.wake, &P.mu);
        if (P.stopping)
            break;
        struct job *j = P.head;
        P.head = j->next;
        if (!P.head)
            P.tail = NULL;
        P.queued--;
        pthread_mutex_unlock(&P.mu);
        if (curl) {
            exchange(curl, j);
        } else {
            j->result = TOKEX_E_INTERNAL;
            j->kind = F_INTERNAL;
            snprintf(j->why, sizeof j->why, "cannot make an HTTP client handle");
        }
        struct gw_request_host host = j->host;
        if (gw_host_post(&host, job_done, j) != 0)
            job_free(j); /* the worker is gone; its requests die with it */
        pthread_mutex_lock(&P.mu);
    }
    pthread_mutex_unlock(&P.mu);
    curl_easy_cleanup(curl);
    return NULL;
}

/* Starts the threads on first use (under P.mu). 0, or -1 when none could start. */
static int ensure_started(void)
{
    if (P.started)
        return P.n_threads ? 0 : -1;
    P.started = 1;
    for (size_t i = 0; i < TOKEX_THREADS; i++) {
        if (pthread_create(&P.threads[P.n_threads], NULL, exchange_thread, NULL) != 0)
            break;
        pthread_setname_np(P.threads[P.n_threads], "tg-tokex");
        P.n_threads++;
    }
    return P.n_threads ? 0 : -1;
}

void tokex_stop(void)
{
    pthread_mutex_lock(&P.mu);
    P.stopping = 1;
    pthread_cond_broadcast(&P.wake);
    size_t n = P.n_threads;
    pthread_mutex_unlock(&P.mu);
    for (size_t i = 0; i < n; i++)
        pthread_join(P.threads[i], NULL);
    pthread_mutex_lock(&P.mu);
    /* Jobs still queued belong to requests of workers that have ended. */
    while (P.head) {
        struct job *j = P.head;
        P.head = j->next;
        job_free(j);
    }
    P.tail = NULL;
    P.queued = 0;
    for (size_t i = 0; i < MAX_ISSUERS; i++) {
        free(P.meta[i].issuer);
        free(P.meta[i].token_endpoint);
        memset(&P.meta[i], 0, sizeof P.meta[i]);
    }
    P.n_threads = 0;
    P.started = 0;
    P.stopping = 0;
    pthread_mutex_unlock(&P.mu);
    tokex_cache_flush();
}

/* ---- the request side ---------------------------------------------------------------------- */

static int deny(struct gw_decision *out, enum fail_kind kind, const char *idp_error)
{
    static const int status[F_COUNT] = {403, 502, 503, 504, 503, 500};
    static const char *const text[F_COUNT] = {
        "The identity provider refused to issue a token for this backend",
        "The identity provider's answer to the token exchange was not usable.",
        "The identity provider could not be reached to exchange the token; try again later.",
        "The identity provider did not answer the token exchange in time; try again later.",
        "Too many token exchanges are waiting; try again later.",
        "An internal error stopped this request.",
    };
    char reason[200];
    if (kind == F_REFUSED)
        snprintf(reason, sizeof reason, "%s (%s).", text[kind], idp_error[0] ? idp_error : "?");
    else
        snprintf(reason, sizeof reason, "%s", text[kind]);
    atomic_fetch_add_explicit(&n_fail[kind], 1, memory_order_relaxed);
    return gw_decision_deny(out, status[kind], JSONRPC_INTERNAL_ERROR,
                            "routing.token_exchange_failed", reason);
}

static void log_failure(const struct gw_request *req, const struct job *j)
{
    struct gw_buf f = {0};
    const char *route = req->route ? req->route->name : "";
    if (gw_buf_append_str(&f, "\"route\":\"") == 0 &&
        gw_buf_append_json_escaped(&f, route, strlen(route)) == 0 &&
        gw_buf_printf(&f, "\",\"kind\":\"%s\"", fail_names[j->kind]) == 0)
        gw_log(GW_LOG_WARN, "token_exchange_failed", req->id, f.data, "%s", j->why);
    gw_buf_free(&f);
}

/* On the request's thread: the exchange has ended. */
static void job_done(void *arg)
{
    struct job *j = arg;
    struct gw_request *req = j->req;
    int v = GW_DENY;
    if (j->result == TOKEX_OK) {
        struct gw_buf h = {0};
        int64_t now = (int64_t)(gw_now_ns() / 1000000000u);
        if (gw_buf_printf(&h, "Bearer %s", j->answer.access_token) == 0 &&
            gw_request_add_upstream_header(req, "Authorization", h.data) == 0) {
            v = GW_PASS;
        } else {
            deny(j->out, F_INTERNAL, "");
        }
        if (h.data)
            memset(h.data, 0, h.len);
        gw_buf_free(&h);
        atomic_fetch_add_explicit(&n_issued, 1, memory_order_relaxed);
        /*
         * Handed out until refresh_before ahead of its expiry (at most half its lifetime
         * early), never past the user's own token; without expires_in it is not cached.
         */
        int64_t life = j->answer.expires_in;
        int64_t margin = (int64_t)(j->refresh_before_ms / 1000);
        if (margin > life / 2)
            margin = life / 2;
        int64_t use_until = now + life - margin;
        if (j->user_exp > 0 && use_until > j->user_exp)
            use_until = j->user_exp;
        if (v == GW_PASS && life > 0 && use_until > now)
            cache_put(j->key, j->answer.access_token, use_until, now);
    } else {
        log_failure(req, j);
        deny(j->out, j->kind, j->answer.error);
    }
    job_free(j);
    gw_pipeline_resume(req, v);
}

/* The user's bearer token, as the identity layer verified it (exactly one header). */
static int subject_token(const struct gw_request *req, struct gw_slice *tok)
{
    if (gw_request_header_count(req, "authorization") != 1)
        return -1;
    struct gw_slice v = gw_request_header(req, "authorization");
    const char *p = v.ptr, *end = v.ptr + v.len;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (end - p < 8 || strncasecmp(p, "bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return -1;
    p += 6;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p == end)
        return -1;
    *tok = (struct gw_slice){p, (size_t)(end - p)};
    return 0;
}

static struct job *make_job(struct gw_request *req, const struct gw_route_inject *ri,
                            const struct tokex_config *tc, const char *resource,
                            struct gw_slice tok)
{
    struct job *j = calloc(1, sizeof *j);
    char *subject = tok.len ? strndup(tok.ptr, tok.len) : NULL;
    int ok = j && subject;
    if (ok) {
        j->req = req;
        j->host = req->host;
        j->basic = tc->auth_method == TOKEX_AUTH_BASIC;
        j->timeout_ms = tc->timeout_ms;
        j->discovery_ttl_ms = tc->discovery_ttl_ms;
        j->refresh_before_ms = tc->refresh_before_ms;
        j->user_exp = req->identity.expires_at;
        ok = gw_buf_append(&j->form, "", 0) == 0 &&
             form_field(&j->form, "grant_type", TOKEX_GRANT) == 0 &&
             form_field(&j->form, "subject_token", subject) == 0 &&
             form_field(&j->form, "subject_token_type", TOKEX_TYPE_ACCESS_TOKEN) == 0 &&
             form_field(&j->form, "requested_token_type", tc->requested_token_type) == 0 &&
             form_field(&j->form, "audience", ri->audience) == 0 &&
             form_field(&j->form, "resource", resource) == 0 &&
             form_field(&j->form, "scope", tc->scope) == 0;
        if (ok && !j->basic)
            ok = form_field(&j->form, "client_id", tc->client_id) == 0 &&
                 form_field(&j->form, "client_secret", tc->client_secret) == 0;
        if (ok && j->basic)
            ok = (j->client_id = escaped_copy(tc->client_id)) &&
                 (j->client_secret = escaped_copy(tc->client_secret));
        ok = ok && (!tc->token_endpoint || (j->endpoint = strdup(tc->token_endpoint))) &&
             (!tc->issuer || (j->issuer = strdup(tc->issuer))) &&
             (j->want_type = strdup(tc->requested_token_type));
    }
    wipe_free(subject);
    if (!ok) {
        job_free(j);
        return NULL;
    }
    return j;
}

int tokex_apply(struct gw_request *req, const struct gw_route_inject *ri,
                const struct gw_backend *be, struct gw_decision *out)
{
    const struct tokex_config *tc = ri->exchange;
    const struct gw_identity *id = &req->identity;
    struct gw_slice tok;
    if (!tc)
        return deny(out, F_INTERNAL, "");
    if (!id->verified || !id->subject || !id->token_hash[0] || subject_token(req, &tok) != 0)
        return gw_decision_deny(out, 500, JSONRPC_INTERNAL_ERROR, "routing.no_identity",
                                "No verified identity to pass to the backend.");
    /* With neither audience nor resource configured, the backend's URL is the resource. */
    const char *resource = tc->resource ? tc->resource : ri->audience ? NULL : be->url;
    uint8_t key[GW_SHA256_LEN];
    struct gw_sha256_ctx c;
    gw_sha256_init(&c);
    hash_field(&c, id->token_hash);
    hash_field(&c, tc->token_endpoint);
    hash_field(&c, tc->issuer);
    hash_field(&c, tc->client_id);
    hash_field(&c, ri->audience);
    hash_field(&c, resource);
    hash_field(&c, tc->scope);
    hash_field(&c, tc->requested_token_type);
    gw_sha256_final(&c, key);

    struct gw_buf h = {0};
    int64_t now = (int64_t)(gw_now_ns() / 1000000000u);
    int hit = cache_get(key, now, &h);
    if (hit > 0) {
        int rc = gw_request_add_upstream_header(req, "Authorization", h.data);
        memset(h.data, 0, h.len);
        gw_buf_free(&h);
        if (rc != 0)
            return deny(out, F_INTERNAL, "");
        atomic_fetch_add_explicit(&n_hits, 1, memory_order_relaxed);
        return GW_PASS;
    }
    gw_buf_free(&h);
    if (hit < 0)
        return deny(out, F_INTERNAL, "");
    struct job *j = make_job(req, ri, tc, resource, tok);
    if (!j)
        return deny(out, F_INTERNAL, "");
    j->out = out;
    memcpy(j->key, key, sizeof key);
    pthread_mutex_lock(&P.mu);
    int rc = P.stopping || ensure_started() != 0 ? -1 : P.queued >= TOKEX_MAX_QUEUED ? -2 : 0;
    if (rc == 0) {
        if (P.tail)
            P.tail->next = j;
        else
            P.head = j;
        P.tail = j;
        P.queued++;
        pthread_cond_signal(&P.wake);
    }
    pthread_mutex_unlock(&P.mu);
    if (rc != 0) {
        job_free(j);
        return deny(out, rc == -2 ? F_BUSY : F_INTERNAL, "");
    }
    return GW_ASYNC;
}

/* ---- metrics ------------------------------------------------------------------------------- */

void tokex_metrics(struct gw_metrics_out *out)
{
    metrics_single_u64(out, "toolgate_token_exchange_requests_total", "counter",
                       "Token exchanges sent to an identity provider's token endpoint.",
                       atomic_load_explicit(&n_requests, memory_order_relaxed));
    metrics_single_u64(out, "toolgate_token_exchange_issued_total", "counter",
                       "Token exchanges that gave the backend a token.",
                       atomic_load_explicit(&n_issued, memory_order_relaxed));
    metrics_single_u64(out, "toolgate_token_exchange_cache_hits_total", "counter",
                       "Requests served a cached exchanged token (no round trip).",
                       atomic_load_explicit(&n_hits, memory_order_relaxed));
    metrics_family(out, "toolgate_token_exchange_failures_total", "counter",
                   "Token exchanges that denied the request, by why.");
    for (int k = 0; k < F_COUNT; k++) {
        struct metrics_label l[] = {{"reason", fail_names[k]}};
        metrics_sample_u64(out, "toolgate_token_exchange_failures_total", l, 1,
                           atomic_load_explicit(&n_fail[k], memory_order_relaxed));
    }
}
