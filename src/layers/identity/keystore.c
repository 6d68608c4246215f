#include "layers/identity/keystore.h"
#include "lib/digest.h"
#include "lib/discovery.h"
#include "lib/log.h"
#include "lib/timeutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct waiter_node {
    void (*cb)(void *arg);
    void *arg;
    struct waiter_node *next;
};

struct issuer_state {
    const struct identity_issuer_config *ic;
    struct jwk_set *keys;
    uint64_t next_fetch_ms; /* monotonic */
    uint64_t last_attempt_ms;
    int attempted; /* the first fetch has ended */
    int fetching;
    int wanted; /* an early refetch was asked for */
    uint64_t fetches, failures, last_ttl_ms;
    uint64_t keys_at_ms; /* monotonic: when the current set was fetched or loaded */
    struct waiter_node *waiters;
    /* Discovery (ic->discover): the metadata's URLs, owned; replaced only under the lock. */
    struct discovery_meta meta;
    uint64_t meta_next_ms; /* monotonic: read the metadata again from here on */
    uint64_t discovery_failures;
    uint8_t file_digest[GW_SHA256_LEN]; /* jwks_file: the bytes the set was parsed from */
    char last_error[512]; /* why the last fetch (metadata or keys) failed; "" after a good one */
};

/* One generation's keys: built by keystore_build, refreshed once it is the active one. */
struct keystore {
    int refs; /* under ks.lock */
    struct issuer_state *issuers;
    size_t n;
};

/*
 * The process's fetch thread and the store it refreshes. Mutable state shared by workers, the
 * reload thread and the fetch thread, so all of it (and every store's issuer states and
 * reference counts) is under `lock`; the lock is never held across a fetch or a signature
 * check.
 */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* fetch thread: work or stop */
    int conds_ready;
    int stop;
    int have_thread;
    pthread_t thread;
    struct keystore *active; /* holds a reference; NULL: nothing to refresh */
} ks = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct issuer_state *find_in(const struct keystore *k, const char *issuer)
{
    for (size_t i = 0; k && i < k->n; i++)
        if (strcmp(k->issuers[i].ic->issuer, issuer) == 0)
            return &k->issuers[i];
    return NULL;
}

/* The store a caller means: its own, or the active one for NULL. Under the lock. */
static struct keystore *store_locked(struct keystore *k)
{
    return k ? k : ks.active;
}

int keystore_cache_control_ttl(const char *value, size_t len, uint64_t min_ms, uint64_t *ttl_ms)
{
    /* Directives are comma-separated tokens; names are case-insensitive (RFC 9111 §5.2). */
    size_t i = 0;
    int found = 0;
    while (i < len) {
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        const char *d = value + start;
        size_t dlen = i - start;
        while (dlen && (d[dlen - 1] == ' ' || d[dlen - 1] == '\t' || d[dlen - 1] == '\r' ||
                        d[dlen - 1] == '\n'))
            dlen--;
        if ((dlen == 8 && strncasecmp(d, "no-store", 8) == 0) ||
            (dlen == 8 && strncasecmp(d, "no-cache", 8) == 0)) {
            *ttl_ms = min_ms;
            return 1;
        }
        if (dlen > 8 && strncasecmp(d, "max-age=", 8) == 0) {
            uint64_t secs = 0;
            size_t k = 8;
            if (k < dlen && d[k] == '"')
                k++;
            size_t digits = 0;
            for (; k < dlen && d[k] >= '0' && d[k] <= '9'; k++, digits++)
                if (secs < KEYSTORE_MAX_TTL_MS / 1000 + 1)
                    secs = secs * 10 + (uint64_t)(d[k] - '0');
            if (digits == 0)
                continue;
            uint64_t ms = secs * 1000;
            if (ms < min_ms)
                ms = min_ms;
            if (ms > KEYSTORE_MAX_TTL_MS)
                ms = KEYSTORE_MAX_TTL_MS;
            *ttl_ms = ms;
            found = 1;
        }
    }
    return found;
}

/* ---- one fetch ------------------------------------------------------------------------ */

struct fetch {
    struct gw_buf body;
    size_t max_bytes;
    int too_big;
    uint64_t min_ms;
    uint64_t ttl_ms;
    int ttl_set;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct fetch *f = ud;
    size_t total = size * n;
    if (f->body.len + total > f->max_bytes) {
        f->too_big = 1;
        return 0; /* makes curl stop with a write error */
    }
    return gw_buf_append(&f->body, p, total) == 0 ? total : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct fetch *f = ud;
    size_t total = size * n;
    static const char name[] = "cache-control:";
    if (total >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        f->ttl_set = 0; /* a new response (after 100 Continue): forget earlier headers */
    } else if (total > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
        uint64_t ttl;
        if (keystore_cache_control_ttl(p + sizeof name - 1, total - (sizeof name - 1), f->min_ms,
                                       &ttl)) {
            f->ttl_ms = ttl;
            f->ttl_set = 1;
        }
    }
    return total;
}

/*
 * GETs url into f->body (at most f->max_bytes). Returns 0 on a 200 answer, -1 with why.
 * Redirects are not followed: a metadata or key URL is exactly what was configured or pinned.
 */
static int http_get(const char *url, uint64_t timeout_ms, struct fetch *f, char *why, size_t whylen)
{
    CURL *curl = curl_easy_init();
    if (!curl) {
        snprintf(why, whylen, "cannot create an HTTP client");
        return -1;
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)f->max_bytes);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "toolgate/" TOOLGATE_VERSION);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    CURLcode res = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    int rc = -1;
    if (f->too_big)
        snprintf(why, whylen, "answer larger than %zu bytes", f->max_bytes);
    else if (res != CURLE_OK)
        snprintf(why, whylen, "%s", curl_easy_strerror(res));
    else if (status != 200)
        snprintf(why, whylen, "HTTP status %ld", status);
    else
        rc = 0;
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(curl);
    return rc;
}

/* Fetches and parses one issuer's JWKS from url. Runs on the fetch thread without the lock. */
static struct jwk_set *fetch_keys(const struct identity_issuer_config *ic, const char *url,
                                  uint64_t *ttl_ms, char *why, size_t whylen)
{
    struct fetch f = {.min_ms = ic->jwks_refetch_interval_ms, .max_bytes = JWKS_MAX_BYTES};
    struct jwk_set *set = NULL;
    char detail[200];
    if (http_get(url, ic->jwks_timeout_ms, &f, detail, sizeof detail) != 0) {
        snprintf(why, whylen, "keys from %.300s: %.190s", url, detail);
    } else {
        size_t skipped = 0;
        if (jwks_parse(f.body.data ? f.body.data : "", f.body.len, &set, &skipped, detail,
                       sizeof detail) == 0) {
            *ttl_ms = f.ttl_set ? f.ttl_ms : ic->jwks_ttl_ms;
            if (skipped)
                gw_log_info("jwks_keys_skipped", "issuer %s: %zu unusable keys ignored", ic->issuer,
                            skipped);
        } else {
            snprintf(why, whylen, "keys from %.300s: %.190s", url, detail);
        }
    }
    gw_buf_free(&f.body);
    return set;
}

/*
 * Reads the issuer's metadata from the first of its well-known URLs that answers with a
 * document for this issuer (discovery.h gives the order). An answer naming another issuer is
 * never used, and its reason wins over "not found" elsewhere so the operator learns of it.
 */
static int discover(const struct identity_issuer_config *ic, struct discovery_meta *meta, char *why,
                    size_t whylen)
{
    char urls[DISCOVERY_MAX_URLS][DISCOVERY_MAX_URL];
    size_t n = 0;
    int mismatch = 0;
    if (discovery_urls(ic->issuer, urls, &n, why, whylen) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct fetch f = {.min_ms = 0, .max_bytes = DISCOVERY_MAX_BYTES};
        char detail[200];
        int rc = http_get(urls[i], ic->jwks_timeout_ms, &f, detail, sizeof detail);
        if (rc == 0)
            rc = discovery_parse(f.body.data ? f.body.data : "", f.body.len, ic->issuer, meta,
                                 detail, sizeof detail);
        gw_buf_free(&f.body);
        if (rc == 0)
            return 0;
        if (!mismatch || rc == -2)
            snprintf(why, whylen, "metadata from %.300s: %.190s", urls[i], detail);
        if (rc == -2) {
            mismatch = 1;
            gw_log_warn("idp_issuer_mismatch", "issuer %s: refusing metadata from %s: %s",
                        ic->issuer, urls[i], detail);
        }
    }
    return -1;
}

/* ---- the fetch thread ----------------------------------------------------------------- */

static void run_waiters(struct waiter_node *w)
{
    while (w) {
        struct waiter_node *next = w->next;
        w->cb(w->arg);
        free(w);
        w = next;
    }
}

/* What one fetch of an issuer's metadata and keys brought, before it is applied. */
struct fetch_result {
    struct jwk_set *set;
    uint64_t ttl;
    struct discovery_meta fresh;
    int meta_failed;
    char why[512];
};

/*
 * Reads the metadata (when want_meta) and the keys of one issuer; known_jwks_uri is the
 * jwks_uri of the metadata read before (discovery). Runs without the lock.
 */
static void fetch_issuer(const struct identity_issuer_config *ic, const char *known_jwks_uri,
                         int want_meta, struct fetch_result *r)
{
    memset(r, 0, sizeof *r);
    if (want_meta && discover(ic, &r->fresh, r->why, sizeof r->why) != 0)
        r->meta_failed = 1;
    const char *url =
        ic->discover ? (r->fresh.jwks_uri ? r->fresh.jwks_uri : known_jwks_uri) : ic->jwks_uri;
    if (url)
        r->set = fetch_keys(ic, url, &r->ttl, r->why, sizeof r->why);
    else if (!r->why[0])
        snprintf(r->why, sizeof r->why, "no jwks_uri is known for this issuer");
}

/*
 * Applies a fetch's result to s (under the lock when s belongs to a shared store). What it
 * replaces is handed back in *old and *old_meta, to be freed without the lock.
 */
static void apply_fetch(struct issuer_state *s, struct fetch_result *r, struct jwk_set **old,
                        struct discovery_meta *old_meta)
{
    const struct identity_issuer_config *ic = s->ic;
    uint64_t now = gw_mono_ms();
    memset(old_meta, 0, sizeof *old_meta);
    *old = NULL;
    if (r->fresh.jwks_uri) {
        if (s->meta.jwks_uri && strcmp(s->meta.jwks_uri, r->fresh.jwks_uri) != 0)
            gw_log_info("idp_metadata_changed", "issuer %s: jwks_uri is now %s", ic->issuer,
                        r->fresh.jwks_uri);
        *old_meta = s->meta;
        s->meta = r->fresh;
        memset(&r->fresh, 0, sizeof r->fresh);
        s->meta_next_ms = now + ic->discovery_ttl_ms;
        s->discovery_failures = 0;
    } else if (r->meta_failed) {
        /* Keep the last good metadata; ask again no sooner than the key backoff. */
        s->discovery_failures++;
    }
    if (r->set && !r->meta_failed)
        s->last_error[0] = '\0';
    else
        snprintf(s->last_error, sizeof s->last_error, "%s", r->why);
    if (r->set) {
        *old = s->keys;
        s->keys = r->set;
        r->set = NULL;
        s->keys_at_ms = now;
        s->failures = 0;
        s->last_ttl_ms = r->ttl;
        s->next_fetch_ms = now + r->ttl;
    } else {
        /* Keep the last good set; back off, but come back well before it goes stale. */
        s->failures++;
        unsigned shift = s->failures < 8 ? (unsigned)s->failures - 1 : 7;
        uint64_t backoff = ic->jwks_refetch_interval_ms << shift;
        if (backoff > ic->jwks_ttl_ms)
            backoff = ic->jwks_ttl_ms;
        s->next_fetch_ms = now + backoff;
    }
    s->attempted = 1;
}

static void free_store(struct keystore *k)
{
    for (size_t i = 0; i < k->n; i++) {
        struct issuer_state *s = &k->issuers[i];
        run_waiters(s->waiters);
        jwks_unref(s->keys);
        discovery_meta_clear(&s->meta);
        if (s->ic) {
            free(s->ic->issuer);
            free(s->ic->jwks_uri);
            free(s->ic->jwks_file);
            free((void *)s->ic);
        }
    }
    free(k->issuers);
    free(k);
}

void keystore_release(struct keystore *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&ks.lock);
    int last = --k->refs == 0;
    pthread_mutex_unlock(&ks.lock);
    if (last)
        free_store(k);
}

/*
 * Refreshes the active store's issuers when their keys are due (or asked for early). The store
 * it works on is held for the length of a fetch, so a reload that makes another store active
 * meanwhile frees the previous one only once that fetch has ended; what it fetched for a store
 * no longer active is applied there (requests of its generation still read it) and its
 * waiters are run.
 */
static void *fetch_thread(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&ks.lock);
    while (!ks.stop) {
        struct keystore *k = ks.active;
        uint64_t now = gw_mono_ms();
        struct issuer_state *due = NULL;
        uint64_t wait_ms = 60 * 1000;
        for (size_t i = 0; k && i < k->n; i++) {
            struct issuer_state *s = &k->issuers[i];
            if ((!s->ic->jwks_uri && !s->ic->discover) || s->fetching)
                continue;
            if (s->wanted || now >= s->next_fetch_ms) {
                due = s;
                break;
            }
            if (s->next_fetch_ms - now < wait_ms)
                wait_ms = s->next_fetch_ms - now;
        }
        if (!due) {
            gw_cond_wait_until_ms(&ks.wake, &ks.lock, gw_mono_ms() + wait_ms);
            continue;
        }
        due->fetching = 1;
        due->wanted = 0;
        due->last_attempt_ms = now;
        due->fetches++;
        k->refs++;
        const struct identity_issuer_config *ic = due->ic;
        /* Only this thread replaces an active store's metadata, so the pointer stays valid. */
        const char *known = due->meta.jwks_uri;
        int want_meta = ic->discover && (!known || now >= due->meta_next_ms);
        pthread_mutex_unlock(&ks.lock);

        struct fetch_result r;
        fetch_issuer(ic, known, want_meta, &r);

        struct jwk_set *old = NULL;
        struct discovery_meta old_meta;
        pthread_mutex_lock(&ks.lock);
        int got_keys = r.set != NULL, meta_failed = r.meta_failed;
        apply_fetch(due, &r, &old, &old_meta);
        due->fetching = 0;
        struct waiter_node *waiters = due->waiters;
        due->waiters = NULL;
        pthread_mutex_unlock(&ks.lock);

        if (!got_keys || meta_failed)
            gw_log_warn("jwks_fetch_failed", "issuer %s: %s (keeping the last good %s)", ic->issuer,
                        r.why, got_keys ? "metadata" : "keys");
        discovery_meta_clear(&old_meta);
        discovery_meta_clear(&r.fresh);
        jwks_unref(old);
        run_waiters(waiters);
        keystore_release(k);
        pthread_mutex_lock(&ks.lock);
    }
    pthread_mutex_unlock(&ks.lock);
    return NULL;
}

/* ---- building a store ----------------------------------------------------------------- */

/* Reads a JWKS file (at most JWKS_MAX_BYTES + 1 bytes, so that a larger one fails to parse). */
static int read_file(const struct identity_issuer_config *ic, char **buf, size_t *n, char *why,
                     size_t whylen)
{
    FILE *f = fopen(ic->jwks_file, "rb");
    *buf = malloc(JWKS_MAX_BYTES + 1);
    if (!f || !*buf) {
        snprintf(why, whylen, "issuer %s: cannot read jwks_file %s: %s", ic->issuer, ic->jwks_file,
                 f ? "out of memory" : strerror(errno));
        free(*buf);
        *buf = NULL;
        if (f)
            fclose(f);
        return -1;
    }
    *n = fread(*buf, 1, JWKS_MAX_BYTES + 1, f);
    fclose(f);
    return 0;
}

static int load_file(struct issuer_state *s, const struct issuer_state *before, int *carried,
                     char *why, size_t whylen)
{
    const struct identity_issuer_config *ic = s->ic;
    char detail[200];
    char *buf = NULL;
    size_t n = 0;
    if (read_file(ic, &buf, &n, why, whylen) != 0)
        return -1;
    gw_sha256(buf, n, s->file_digest);
    int rc = -1;
    if (before && before->keys &&
        memcmp(before->file_digest, s->file_digest, sizeof s->file_digest) == 0) {
        /* The same bytes: the same set, so tokens verified with it stay verified. */
        s->keys = jwks_ref(before->keys);
        s->keys_at_ms = before->keys_at_ms;
        *carried = 1;
        rc = 0;
        goto out;
    }
    size_t skipped = 0;
    if (jwks_parse(buf, n, &s->keys, &skipped, detail, sizeof detail) != 0) {
        snprintf(why, whylen, "issuer %s: jwks_file %s: %s", ic->issuer, ic->jwks_file, detail);
        goto out;
    }
    if (skipped)
        gw_log_warn("jwks_keys_skipped", "issuer %s: %zu unusable keys in %s ignored", ic->issuer,
                    skipped, ic->jwks_file);
    s->keys_at_ms = gw_mono_ms();
    rc = 0;
out:
    free(buf);
    s->attempted = 1;
    return rc;
}

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void init_conds(void)
{
    if (ks.conds_ready)
        return;
    gw_cond_init_monotonic(&ks.wake);
    ks.conds_ready = 1;
}

/* Starts the process's fetch thread unless it runs. Returns 0 or -1 with why. */
static int thread_start(char *why, size_t whylen)
{
    pthread_mutex_lock(&ks.lock);
    init_conds();
    int rc = 0;
    if (!ks.have_thread) {
        ks.stop = 0;
        if (pthread_create(&ks.thread, NULL, fetch_thread, NULL) == 0) {
            pthread_setname_np(ks.thread, "tg-keys");
            ks.have_thread = 1;
        } else {
            snprintf(why, whylen, "cannot start the key fetch thread");
            rc = -1;
        }
    }
    pthread_mutex_unlock(&ks.lock);
    return rc;
}

/* A copy of what the store needs of an issuer's configuration (it may outlive the config). */
static struct identity_issuer_config *issuer_copy(const struct identity_issuer_config *from)
{
    struct identity_issuer_config *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    *c = *from;
    c->audiences = NULL;
    c->issuer = strdup(from->issuer);
    c->jwks_uri = from->jwks_uri ? strdup(from->jwks_uri) : NULL;
    c->jwks_file = from->jwks_file ? strdup(from->jwks_file) : NULL;
    if (!c->issuer || (from->jwks_uri && !c->jwks_uri) || (from->jwks_file && !c->jwks_file)) {
        free(c->issuer);
        free(c->jwks_uri);
        free(c->jwks_file);
        free(c);
        return NULL;
    }
    return c;
}

/* Whether `before` fetched its keys from where `ic` says to. */
static int same_source(const struct identity_issuer_config *a,
                       const struct identity_issuer_config *b)
{
    if (a->discover || b->discover)
        return a->discover && b->discover;
    if (a->jwks_file || b->jwks_file)
        return a->jwks_file && b->jwks_file && strcmp(a->jwks_file, b->jwks_file) == 0;
    return a->jwks_uri && b->jwks_uri && strcmp(a->jwks_uri, b->jwks_uri) == 0;
}

/* Copies a fetched issuer's state (its keys, metadata, schedule and counters). Under the lock. */
static int carry_fetched(struct issuer_state *s, const struct issuer_state *before)
{
    if (before->meta.jwks_uri) {
        s->meta.jwks_uri = strdup(before->meta.jwks_uri);
        s->meta.token_endpoint =
            before->meta.token_endpoint ? strdup(before->meta.token_endpoint) : NULL;
        if (!s->meta.jwks_uri || (before->meta.token_endpoint && !s->meta.token_endpoint)) {
            discovery_meta_clear(&s->meta);
            return -1;
        }
    }
    s->keys = jwks_ref(before->keys);
    s->next_fetch_ms = before->next_fetch_ms;
    s->last_attempt_ms = before->last_attempt_ms;
    s->attempted = before->attempted;
    s->fetches = before->fetches;
    s->failures = before->failures;
    s->last_ttl_ms = before->last_ttl_ms;
    s->keys_at_ms = before->keys_at_ms;
    s->meta_next_ms = before->meta_next_ms;
    s->discovery_failures = before->discovery_failures;
    memcpy(s->last_error, before->last_error, sizeof s->last_error);
    return 0;
}

struct keystore *keystore_build(const struct identity_config *cfg, struct keystore *carry,
                                int strict, int *carried_all, char *why, size_t whylen)
{
    static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
    struct keystore *k = calloc(1, sizeof *k);
    size_t n = cfg ? cfg->n_issuers : 0;
    int all = 1;
    if (!k || (n && !(k->issuers = calloc(n, sizeof *k->issuers)))) {
        snprintf(why, whylen, "out of memory for the key store");
        free(k);
        return NULL;
    }
    k->refs = 1;
    int fetches = 0;
    for (size_t i = 0; i < n; i++) {
        struct issuer_state *s = &k->issuers[i];
        k->n = i + 1; /* so that free_store sees what was built */
        if (!(s->ic = issuer_copy(&cfg->issuers[i]))) {
            snprintf(why, whylen, "out of memory for the key store");
            goto fail;
        }
        const struct identity_issuer_config *ic = s->ic;
        /* The running store's state for the same issuer and key source, copied under the lock
         * (its fetch thread may be updating it). */
        struct issuer_state before = {0};
        int have_before = 0, copy_failed = 0;
        pthread_mutex_lock(&ks.lock);
        const struct issuer_state *b = find_in(carry, ic->issuer);
        if (b && same_source(b->ic, ic)) {
            have_before = 1;
            if (ic->jwks_file) {
                before.keys = jwks_ref(b->keys);
                before.keys_at_ms = b->keys_at_ms;
                memcpy(before.file_digest, b->file_digest, sizeof before.file_digest);
            } else {
                copy_failed = carry_fetched(s, b) != 0;
            }
        }
        pthread_mutex_unlock(&ks.lock);
        if (copy_failed) {
            snprintf(why, whylen, "out of memory for the key store");
            goto fail;
        }
        if (ic->jwks_file) {
            int carried = 0;
            int rc = load_file(s, have_before ? &before : NULL, &carried, why, whylen);
            jwks_unref(before.keys);
            all &= carried;
            if (rc != 0)
                goto fail;
            continue;
        }
        fetches = 1;
        if (have_before)
            continue;
        /* A new issuer, or one whose keys now come from elsewhere: its first fetch, here. */
        all = 0;
        pthread_once(&curl_once, curl_init_once);
        struct fetch_result r;
        struct jwk_set *old = NULL;
        struct discovery_meta old_meta;
        s->fetches = 1;
        s->last_attempt_ms = gw_mono_ms();
        fetch_issuer(ic, NULL, ic->discover, &r);
        apply_fetch(s, &r, &old, &old_meta);
        discovery_meta_clear(&r.fresh);
        if (!s->keys && strict) {
            snprintf(why, whylen,
                     "identity.issuers: the keys of issuer %.200s cannot be fetched (%.260s); "
                     "the new configuration is not served",
                     ic->issuer, s->last_error);
            goto fail;
        }
        if (!s->keys)
            gw_log_warn("jwks_unavailable",
                        "issuer %s: no keys yet (%s); its tokens are refused until a fetch "
                        "succeeds",
                        ic->issuer, s->last_error);
    }
    if (fetches)
        pthread_once(&curl_once, curl_init_once);
    if (fetches && thread_start(why, whylen) != 0)
        goto fail;
    if (carried_all)
        *carried_all = all && carry != NULL;
    return k;
fail:
    free_store(k);
    return NULL;
}

void keystore_activate(struct keystore *k)
{
    struct waiter_node *orphans = NULL;
    pthread_mutex_lock(&ks.lock);
    struct keystore *old = ks.active;
    if (k)
        k->refs++;
    ks.active = k;
    /* Waiters on the store that is no longer refreshed, unless a fetch for them runs now. */
    for (size_t i = 0; old && old != k && i < old->n; i++) {
        struct issuer_state *s = &old->issuers[i];
        if (s->fetching)
            continue;
        struct waiter_node **tail = &s->waiters;
        while (*tail)
            tail = &(*tail)->next;
        *tail = orphans;
        orphans = s->waiters;
        s->waiters = NULL;
        s->wanted = 0;
    }
    if (ks.conds_ready)
        pthread_cond_broadcast(&ks.wake);
    pthread_mutex_unlock(&ks.lock);
    run_waiters(orphans);
    keystore_release(old);
}

/* ---- public --------------------------------------------------------------------------- */

int keystore_start(const struct identity_config *cfg, char *why, size_t whylen)
{
    keystore_stop();
    struct keystore *k = keystore_build(cfg, NULL, 0, NULL, why, whylen);
    if (!k)
        return -1;
    keystore_activate(k);
    keystore_release(k);
    return 0;
}

void keystore_stop(void)
{
    pthread_mutex_lock(&ks.lock);
    int had_thread = ks.have_thread;
    pthread_t thread = ks.thread;
    ks.stop = 1;
    ks.have_thread = 0;
    if (ks.conds_ready)
        pthread_cond_broadcast(&ks.wake);
    pthread_mutex_unlock(&ks.lock);
    if (had_thread)
        pthread_join(thread, NULL);

    /* No fetch runs any more: every waiter of the active store is answered now. */
    struct waiter_node *orphans = NULL;
    pthread_mutex_lock(&ks.lock);
    struct keystore *old = ks.active;
    ks.active = NULL;
    for (size_t i = 0; old && i < old->n; i++) {
        struct issuer_state *s = &old->issuers[i];
        struct waiter_node **tail = &s->waiters;
        while (*tail)
            tail = &(*tail)->next;
        *tail = orphans;
        orphans = s->waiters;
        s->waiters = NULL;
    }
    pthread_mutex_unlock(&ks.lock);
    run_waiters(orphans);
    keystore_release(old);
}

struct jwk_set *keystore_get(struct keystore *k, const char *issuer)
{
    pthread_mutex_lock(&ks.lock);
    struct issuer_state *s = find_in(store_locked(k), issuer);
    struct jwk_set *set = s ? jwks_ref(s->keys) : NULL;
    pthread_mutex_unlock(&ks.lock);
    return set;
}

int keystore_refetch(struct keystore *k, const char *issuer, void (*cb)(void *arg), void *arg)
{
    int rc = 0;
    struct waiter_node *w = malloc(sizeof *w);
    if (!w)
        return 0;
    w->cb = cb;
    w->arg = arg;
    pthread_mutex_lock(&ks.lock);
    struct keystore *store = store_locked(k);
    struct issuer_state *s = store == ks.active ? find_in(store, issuer) : NULL;
    if (s && !s->ic->jwks_file && ks.have_thread && !ks.stop) {
        uint64_t now = gw_mono_ms();
        int allowed =
            s->fetching || s->wanted || now - s->last_attempt_ms >= s->ic->jwks_refetch_interval_ms;
        if (allowed) {
            s->wanted = !s->fetching || s->wanted;
            w->next = s->waiters;
            s->waiters = w;
            w = NULL;
            pthread_cond_signal(&ks.wake);
            rc = 1;
        }
    }
    pthread_mutex_unlock(&ks.lock);
    free(w);
    return rc;
}

int keystore_stats(struct keystore *k, const char *issuer, struct keystore_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&ks.lock);
    struct issuer_state *s = find_in(store_locked(k), issuer);
    if (s) {
        out->has_keys = s->keys != NULL;
        out->n_keys = s->keys ? s->keys->n : 0;
        out->fetches = s->fetches;
        out->failures = s->failures;
        out->last_ttl_ms = s->last_ttl_ms;
        out->next_fetch_ms = s->next_fetch_ms;
        out->age_ms = s->keys ? gw_mono_ms() - s->keys_at_ms : 0;
        out->discovery_failures = s->discovery_failures;
        snprintf(out->last_error, sizeof out->last_error, "%s", s->last_error);
    }
    pthread_mutex_unlock(&ks.lock);
    return s ? 0 : -1;
}
