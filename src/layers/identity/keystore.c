#include "layers/identity/keystore.h"
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
    char last_error[512]; /* why the last fetch (metadata or keys) failed; "" after a good one */
};

/*
 * The process's keystore. Mutable state shared by workers and the fetch thread, so all of it
 * is under `lock`; the lock is never held across a fetch or a signature check.
 */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* fetch thread: work or stop */
    pthread_cond_t done; /* keystore_start: a fetch ended */
    int conds_ready;
    int stop;
    int have_thread;
    pthread_t thread;
    struct issuer_state *issuers;
    size_t n;
} ks = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct issuer_state *find_locked(const char *issuer)
{
    for (size_t i = 0; i < ks.n; i++)
        if (strcmp(ks.issuers[i].ic->issuer, issuer) == 0)
            return &ks.issuers[i];
    return NULL;
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

static void deadline_in(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void run_waiters(struct waiter_node *w)
{
    while (w) {
        struct waiter_node *next = w->next;
        w->cb(w->arg);
        free(w);
        w = next;
    }
}

static void *fetch_thread(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&ks.lock);
    while (!ks.stop) {
        uint64_t now = gw_mono_ms();
        struct issuer_state *due = NULL;
        uint64_t wait_ms = 60 * 1000;
        for (size_t i = 0; i < ks.n; i++) {
            struct issuer_state *s = &ks.issuers[i];
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
            struct timespec ts;
            deadline_in(&ts, wait_ms);
            pthread_cond_timedwait(&ks.wake, &ks.lock, &ts);
            continue;
        }
        due->fetching = 1;
        due->wanted = 0;
        due->last_attempt_ms = now;
        due->fetches++;
        const struct identity_issuer_config *ic = due->ic;
        /* Only this thread writes meta, so reading it here without the lock is safe. */
        int want_meta = ic->discover && (!due->meta.jwks_uri || now >= due->meta_next_ms);
        pthread_mutex_unlock(&ks.lock);

        char why[512] = "";
        uint64_t ttl = 0;
        struct jwk_set *set = NULL;
        struct discovery_meta fresh = {0};
        int meta_failed = 0;
        if (want_meta && discover(ic, &fresh, why, sizeof why) != 0)
            meta_failed = 1;
        const char *url =
            ic->discover ? (fresh.jwks_uri ? fresh.jwks_uri : due->meta.jwks_uri) : ic->jwks_uri;
        if (url)
            set = fetch_keys(ic, url, &ttl, why, sizeof why);

        pthread_mutex_lock(&ks.lock);
        struct jwk_set *old = NULL;
        struct discovery_meta old_meta = {0};
        now = gw_mono_ms();
        if (fresh.jwks_uri) {
            if (due->meta.jwks_uri && strcmp(due->meta.jwks_uri, fresh.jwks_uri) != 0)
                gw_log_info("idp_metadata_changed", "issuer %s: jwks_uri is now %s", ic->issuer,
                            fresh.jwks_uri);
            old_meta = due->meta;
            due->meta = fresh;
            due->meta_next_ms = now + ic->discovery_ttl_ms;
            due->discovery_failures = 0;
        } else if (meta_failed) {
            /* Keep the last good metadata; ask again no sooner than the key backoff. */
            due->discovery_failures++;
        }
        if (set && !meta_failed)
            due->last_error[0] = '\0';
        else
            snprintf(due->last_error, sizeof due->last_error, "%s", why);
        if (set) {
            old = due->keys;
            due->keys = set;
            due->keys_at_ms = now;
            due->failures = 0;
            due->last_ttl_ms = ttl;
            due->next_fetch_ms = now + ttl;
        } else {
            /* Keep the last good set; back off, but come back well before it goes stale. */
            due->failures++;
            unsigned shift = due->failures < 8 ? (unsigned)due->failures - 1 : 7;
            uint64_t backoff = ic->jwks_refetch_interval_ms << shift;
            if (backoff > ic->jwks_ttl_ms)
                backoff = ic->jwks_ttl_ms;
            due->next_fetch_ms = now + backoff;
        }
        due->fetching = 0;
        due->attempted = 1;
        struct waiter_node *waiters = due->waiters;
        due->waiters = NULL;
        pthread_cond_broadcast(&ks.done);
        pthread_mutex_unlock(&ks.lock);

        if (!set || meta_failed)
            gw_log_warn("jwks_fetch_failed", "issuer %s: %s (keeping the last good %s)", ic->issuer,
                        why, set ? "metadata" : "keys");
        discovery_meta_clear(&old_meta);
        jwks_unref(old);
        run_waiters(waiters);
        pthread_mutex_lock(&ks.lock);
    }
    pthread_mutex_unlock(&ks.lock);
    return NULL;
}

/* ---- public --------------------------------------------------------------------------- */

static int load_file(const struct identity_issuer_config *ic, struct jwk_set **out, char *why,
                     size_t whylen)
{
    char detail[200];
    int rc = -1;
    FILE *f = fopen(ic->jwks_file, "rb");
    char *buf = malloc(JWKS_MAX_BYTES + 1);
    if (!f || !buf) {
        snprintf(why, whylen, "issuer %s: cannot read jwks_file %s: %s", ic->issuer, ic->jwks_file,
                 f ? "out of memory" : strerror(errno));
        goto out;
    }
    size_t n = fread(buf, 1, JWKS_MAX_BYTES + 1, f);
    size_t skipped = 0;
    if (jwks_parse(buf, n, out, &skipped, detail, sizeof detail) != 0) {
        snprintf(why, whylen, "issuer %s: jwks_file %s: %s", ic->issuer, ic->jwks_file, detail);
        goto out;
    }
    if (skipped)
        gw_log_warn("jwks_keys_skipped", "issuer %s: %zu unusable keys in %s ignored", ic->issuer,
                    skipped, ic->jwks_file);
    rc = 0;
out:
    free(buf);
    if (f)
        fclose(f);
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
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&ks.wake, &attr);
    pthread_cond_init(&ks.done, &attr);
    pthread_condattr_destroy(&attr);
    ks.conds_ready = 1;
}

int keystore_start(const struct identity_config *cfg, char *why, size_t whylen)
{
    keystore_stop();
    if (!cfg || cfg->n_issuers == 0)
        return 0;
    struct issuer_state *issuers = calloc(cfg->n_issuers, sizeof *issuers);
    if (!issuers) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    int any_uri = 0;
    uint64_t wait_budget = 1000;
    for (size_t i = 0; i < cfg->n_issuers; i++) {
        issuers[i].ic = &cfg->issuers[i];
        if (cfg->issuers[i].jwks_file) {
            if (load_file(&cfg->issuers[i], &issuers[i].keys, why, whylen) != 0) {
                for (size_t j = 0; j < i; j++)
                    jwks_unref(issuers[j].keys);
                free(issuers);
                return -1;
            }
            issuers[i].attempted = 1;
            issuers[i].keys_at_ms = gw_mono_ms();
        } else {
            any_uri = 1;
            /* Discovery may try every metadata URL before the key fetch. */
            uint64_t fetches = cfg->issuers[i].discover ? DISCOVERY_MAX_URLS + 1 : 1;
            wait_budget += fetches * cfg->issuers[i].jwks_timeout_ms + 500;
        }
    }
    static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
    if (any_uri)
        pthread_once(&curl_once, curl_init_once);
    pthread_mutex_lock(&ks.lock);
    init_conds();
    ks.issuers = issuers;
    ks.n = cfg->n_issuers;
    ks.stop = 0;
    if (any_uri) {
        if (pthread_create(&ks.thread, NULL, fetch_thread, NULL) == 0)
            pthread_setname_np(ks.thread, "tg-keys");
        else {
            pthread_mutex_unlock(&ks.lock);
            snprintf(why, whylen, "cannot start the key fetch thread");
            keystore_stop();
            return -1;
        }
        ks.have_thread = 1;
        /* Serve only once every issuer has had its first chance to deliver keys. */
        struct timespec ts;
        deadline_in(&ts, wait_budget);
        for (;;) {
            int pending = 0;
            for (size_t i = 0; i < ks.n; i++)
                pending |= !ks.issuers[i].attempted;
            if (!pending || pthread_cond_timedwait(&ks.done, &ks.lock, &ts) == ETIMEDOUT)
                break;
        }
        for (size_t i = 0; i < ks.n; i++)
            if (!ks.issuers[i].ic->jwks_file && !ks.issuers[i].keys)
                gw_log_warn("jwks_unavailable",
                            "issuer %s: no keys yet (%s); its tokens are refused until a "
                            "fetch succeeds",
                            ks.issuers[i].ic->issuer,
                            ks.issuers[i].last_error[0] ? ks.issuers[i].last_error
                                                        : "first fetch still running");
    }
    pthread_mutex_unlock(&ks.lock);
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

    pthread_mutex_lock(&ks.lock);
    struct issuer_state *issuers = ks.issuers;
    size_t n = ks.n;
    ks.issuers = NULL;
    ks.n = 0;
    pthread_mutex_unlock(&ks.lock);
    for (size_t i = 0; i < n; i++) {
        run_waiters(issuers[i].waiters);
        jwks_unref(issuers[i].keys);
        discovery_meta_clear(&issuers[i].meta);
    }
    free(issuers);
}

struct jwk_set *keystore_get(const char *issuer)
{
    pthread_mutex_lock(&ks.lock);
    struct issuer_state *s = find_locked(issuer);
    struct jwk_set *set = s ? jwks_ref(s->keys) : NULL;
    pthread_mutex_unlock(&ks.lock);
    return set;
}

int keystore_refetch(const char *issuer, void (*cb)(void *arg), void *arg)
{
    int rc = 0;
    struct waiter_node *w = malloc(sizeof *w);
    if (!w)
        return 0;
    w->cb = cb;
    w->arg = arg;
    pthread_mutex_lock(&ks.lock);
    struct issuer_state *s = find_locked(issuer);
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

int keystore_stats(const char *issuer, struct keystore_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&ks.lock);
    struct issuer_state *s = find_locked(issuer);
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
