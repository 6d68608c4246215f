/*
 * endpoints: selection, passive ejection and active health checks for backends with several
 * endpoints (see endpoints.h).
 *
 * Request path: endpoints_pick and endpoints_report touch only atomics of one backend's
 * state in the request's generation's table, found through a pointer-keyed hash built with
 * the table; workers never wait on each other, on the health thread or on a reload. The health
 * thread alone writes each endpoint's check streaks and its `up` flag; ejection is claimed with a
 * compare-and-swap on the failure counter, so of several workers seeing the threshold at once
 * exactly one ejects.
 */
#include "layers/routing/endpoints.h"
#include "lib/log.h"
#include "lib/timeutil.h"
#include "layers/routing/routing.h"
#include "layers/routing/ssrf.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* Doubling stops here (base << 20 is far past any sane cap). */
#define EJECT_MAX_SHIFT 20
/* The health thread wakes at least this often to look for due checks. */
#define HEALTH_MAX_SLEEP_MS 1000
/* An endpoint URL (at most 2048 characters) cut to its origin, plus the health path. */
#define CHECK_URL_MAX 2600

/*
 * One endpoint's state. Shared by the tables of every generation that keeps the endpoint
 * (same route name and URL), so it is reference-counted; the last table freed frees it.
 */
struct ep_state {
    atomic_int refs;
    atomic_int up;
    atomic_uint failures;
    atomic_uint ejections;
    _Atomic uint64_t ejected_until_ms;
    /* Health thread only. */
    unsigned ok_streak, fail_streak;
    uint64_t next_check_ms;
};

struct be_state {
    const struct gw_backend *be; /* the generation's */
    const char *route;
    struct ep_state **eps; /* be->n_endpoints of them */
    atomic_uint rr;
};

struct endpoint_table {
    struct be_state *bes;
    size_t n;
    size_t *slots; /* open addressing over bes, keyed by backend pointer; index + 1, 0 empty */
    size_t cap;
    const struct ssrf_allow *allow;
    int has_health;
};

/* The health thread. */
static struct {
    pthread_t thread;
    int thread_on;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int stopping;
    const struct endpoint_table *(*acquire)(void **hold);
    void (*release)(void *hold);
} E = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static uint64_t (*clock_fn)(void) = gw_mono_ms;

void endpoints_set_clock(uint64_t (*now_ms)(void))
{
    clock_fn = now_ms ? now_ms : gw_mono_ms;
}

static size_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    return (size_t)x;
}

/*
 * A backend of another generation than the table's (a request asking with a struct the
 * table was not built from): the table's backend with the same name and endpoints.
 */
static struct be_state *find_same(const struct endpoint_table *t, const struct gw_backend *be)
{
    for (size_t b = 0; b < t->n; b++) {
        const struct gw_backend *s = t->bes[b].be;
        if (s->n_endpoints != be->n_endpoints || strcmp(s->name, be->name) != 0 ||
            strcmp(s->url, be->url) != 0)
            continue;
        size_t i = 0;
        while (i < be->n_endpoints && strcmp(s->endpoints[i], be->endpoints[i]) == 0)
            i++;
        if (i == be->n_endpoints)
            return &t->bes[b];
    }
    return NULL;
}

static struct be_state *find(const struct endpoint_table *t, const struct gw_backend *be)
{
    if (!t || !t->cap || !be)
        return NULL;
    for (size_t i = ptr_hash(be) & (t->cap - 1), probes = 0; probes < t->cap;
         i = (i + 1) & (t->cap - 1), probes++) {
        size_t v = t->slots[i];
        if (!v)
            break;
        if (t->bes[v - 1].be == be)
            return &t->bes[v - 1];
    }
    return find_same(t, be);
}

static int usable(struct ep_state *ep, uint64_t now)
{
    return atomic_load_explicit(&ep->up, memory_order_relaxed) &&
           atomic_load_explicit(&ep->ejected_until_ms, memory_order_relaxed) <= now;
}

int endpoints_pick(const struct endpoint_table *t, const struct gw_backend *be)
{
    struct be_state *bs = find(t, be);
    if (!bs)
        return 0;
    size_t n = be->n_endpoints;
    uint64_t now = clock_fn();
    /* Each try takes the next turn, so the turns of an unusable endpoint spread evenly over
     * the others rather than all falling to its successor. */
    for (size_t i = 0; i < n; i++) {
        size_t k = atomic_fetch_add_explicit(&bs->rr, 1, memory_order_relaxed) % n;
        if (usable(bs->eps[k], now))
            return (int)k;
    }
    return -1;
}

int endpoints_index_of(const struct gw_backend *be, const char *url)
{
    for (size_t i = 0; url && i < be->n_endpoints; i++)
        if (be->endpoints[i] == url)
            return (int)i;
    return 0;
}

void endpoints_report(const struct endpoint_table *t, const struct gw_backend *be, int index,
                      enum endpoint_outcome outcome)
{
    struct be_state *bs = find(t, be);
    if (!bs || index < 0 || (size_t)index >= be->n_endpoints || outcome == ENDPOINT_NONE)
        return;
    struct ep_state *ep = bs->eps[index];
    uint64_t now = clock_fn();
    if (outcome == ENDPOINT_OK) {
        atomic_store_explicit(&ep->failures, 0, memory_order_relaxed);
        /* A success after an ejection ended: the next ejection starts from base again. */
        if (atomic_load_explicit(&ep->ejected_until_ms, memory_order_relaxed) <= now)
            atomic_store_explicit(&ep->ejections, 0, memory_order_relaxed);
        return;
    }
    unsigned threshold = be->eject.failures;
    if (threshold == 0)
        return;
    unsigned f = atomic_fetch_add_explicit(&ep->failures, 1, memory_order_relaxed) + 1;
    if (f < threshold)
        return;
    /* Exactly one of the workers that saw the threshold ejects (and resets the count). */
    if (!atomic_compare_exchange_strong(&ep->failures, &f, 0))
        return;
    unsigned k = atomic_fetch_add_explicit(&ep->ejections, 1, memory_order_relaxed) + 1;
    unsigned shift = k - 1 > EJECT_MAX_SHIFT ? EJECT_MAX_SHIFT : k - 1;
    uint64_t dur = be->eject.base_ms << shift;
    if (dur > be->eject.max_ms)
        dur = be->eject.max_ms;
    atomic_store_explicit(&ep->ejected_until_ms, now + dur, memory_order_relaxed);
    char fields[256];
    snprintf(fields, sizeof fields, "\"route\":\"%s\",\"backend\":\"%s\",\"endpoint\":%d",
             bs->route, be->name, index);
    gw_log(GW_LOG_WARN, "endpoint_ejected", NULL, fields,
           "endpoint %d of backend %s failed %u requests in a row: ejected for %llu ms "
           "(ejection %u)",
           index, be->name, threshold, (unsigned long long)dur, k);
}

int endpoints_status(const struct endpoint_table *t, const struct gw_backend *be, int index,
                     struct endpoint_status *out)
{
    struct be_state *bs = find(t, be);
    if (!bs || index < 0 || (size_t)index >= be->n_endpoints)
        return -1;
    struct ep_state *ep = bs->eps[index];
    out->up = atomic_load(&ep->up);
    out->ejected_until_ms = atomic_load(&ep->ejected_until_ms);
    out->ejected = out->ejected_until_ms > clock_fn();
    out->failures = atomic_load(&ep->failures);
    out->ejections = atomic_load(&ep->ejections);
    return 0;
}

/* ---- health checks ------------------------------------------------------------------------ */

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    (void)ptr;
    (void)arg;
    return size * nmemb; /* only the status matters; curl's timeout bounds the time */
}

/*
 * The check URL (endpoint origin + path) and, for a host name, a CURLOPT_RESOLVE pin to the
 * vetted addresses. Returns 0, or -1 when the endpoint's address is not allowed or the name
 * does not resolve (the check then counts as failed).
 */
static int check_target(const struct ssrf_allow *allow, const char *url, const char *hpath,
                        char *out, size_t cap, char *pin, size_t pincap)
{
    struct gw_url u;
    if (gw_url_parse(url, strlen(url), 0, &u) != GW_URL_OK)
        return -1;
    const char *auth = strstr(url, "://");
    if (!auth)
        return -1;
    auth += 3;
    size_t origin_len = (size_t)(auth - url) + strcspn(auth, "/?#");
    if ((size_t)snprintf(out, cap, "%.*s%s", (int)origin_len, url, hpath) >= cap)
        return -1;
    pin[0] = '\0';
    static const struct ssrf_allow none = {0};
    if (!allow)
        allow = &none;
    enum ssrf_class cls;
    if (u.host_is_ip)
        return ssrf_addr_allowed(allow, u.host, u.port, &u.ip, &cls) ? 0 : -1;
    if (ssrf_name_is_localhost(u.host)) {
        struct gw_addr v4 = {.family = AF_INET, .bytes = {127, 0, 0, 1}};
        return ssrf_addr_allowed(allow, u.host, u.port, &v4, &cls) ? 0 : -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(u.host, NULL, &hints, &res) != 0 || !res)
        return -1;
    int rc = 0;
    size_t used =
        (size_t)snprintf(pin, pincap, "%.*s:%d:", (int)strcspn(auth, ":/?#"), auth, u.port);
    size_t written = 0;
    for (const struct addrinfo *ai = res; ai && rc == 0; ai = ai->ai_next) {
        struct gw_addr a = {0};
        if (ai->ai_family == AF_INET) {
            a.family = AF_INET;
            memcpy(a.bytes, &((const struct sockaddr_in *)ai->ai_addr)->sin_addr, 4);
        } else if (ai->ai_family == AF_INET6) {
            a.family = AF_INET6;
            memcpy(a.bytes, &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, 16);
        } else {
            continue;
        }
        if (!ssrf_addr_allowed(allow, u.host, u.port, &a, &cls)) {
            rc = -1;
            break;
        }
        char text[INET6_ADDRSTRLEN];
        gw_addr_format(&a, text, sizeof text);
        int n = snprintf(pin + used, pincap - used, "%s%s%s%s", written ? "," : "",
                         a.family == AF_INET6 ? "[" : "", text, a.family == AF_INET6 ? "]" : "");
        if (n > 0 && used + (size_t)n < pincap) {
            used += (size_t)n;
            written++;
        } else {
            pin[used] = '\0';
        }
    }
    freeaddrinfo(res);
    if (rc == 0 && written == 0)
        rc = -1;
    return rc;
}

/* One check: 1 when the endpoint answered 2xx within the timeout, else 0. */
static int check_once(const struct ssrf_allow *allow, const struct gw_backend *be, const char *url)
{
    char target[CHECK_URL_MAX], pin[512];
    if (check_target(allow, url, be->health.path, target, sizeof target, pin, sizeof pin) != 0)
        return 0;
    CURL *h = curl_easy_init();
    if (!h)
        return 0;
    struct curl_slist *resolve = pin[0] ? curl_slist_append(NULL, pin) : NULL;
    long status = 0;
    curl_easy_setopt(h, CURLOPT_URL, target);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)be->health.timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)be->health.timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "toolgate-health");
    if (be->tls_ca)
        curl_easy_setopt(h, CURLOPT_CAINFO, be->tls_ca);
    if (be->tls_cert && be->tls_key) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, be->tls_cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, be->tls_key);
    }
    if (resolve)
        curl_easy_setopt(h, CURLOPT_RESOLVE, resolve);
    int ok = curl_easy_perform(h) == CURLE_OK &&
             curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status >= 200 &&
             status < 300;
    curl_easy_cleanup(h);
    curl_slist_free_all(resolve);
    return ok;
}

static void health_result(struct be_state *bs, int index, int ok)
{
    const struct gw_backend *be = bs->be;
    struct ep_state *ep = bs->eps[index];
    char fields[256];
    snprintf(fields, sizeof fields, "\"route\":\"%s\",\"backend\":\"%s\",\"endpoint\":%d",
             bs->route, be->name, index);
    if (ok) {
        ep->fail_streak = 0;
        ep->ok_streak++;
        if (!atomic_load(&ep->up) && ep->ok_streak >= be->health.healthy) {
            /* Seen healthy again: an ejection from before ends too. */
            atomic_store(&ep->ejected_until_ms, 0);
            atomic_store(&ep->failures, 0);
            atomic_store(&ep->up, 1);
            gw_log(GW_LOG_INFO, "endpoint_up", NULL, fields,
                   "endpoint %d of backend %s passes its health check again", index, be->name);
        }
    } else {
        ep->ok_streak = 0;
        ep->fail_streak++;
        if (atomic_load(&ep->up) && ep->fail_streak >= be->health.unhealthy) {
            atomic_store(&ep->up, 0);
            gw_log(GW_LOG_WARN, "endpoint_down", NULL, fields,
                   "endpoint %d of backend %s failed %u health checks in a row: marked down", index,
                   be->name, ep->fail_streak);
        }
    }
}

/* One pass over the table: runs the checks that are due; returns when the next one is. */
static uint64_t health_pass(const struct endpoint_table *t, uint64_t now)
{
    uint64_t next = now + HEALTH_MAX_SLEEP_MS;
    for (size_t b = 0; t && b < t->n && !E.stopping; b++) {
        struct be_state *bs = &t->bes[b];
        if (!bs->be->health.path)
            continue;
        for (size_t i = 0; i < bs->be->n_endpoints && !E.stopping; i++) {
            struct ep_state *ep = bs->eps[i];
            if (ep->next_check_ms <= now) {
                health_result(bs, (int)i, check_once(t->allow, bs->be, bs->be->endpoints[i]));
                now = clock_fn();
                ep->next_check_ms = now + bs->be->health.interval_ms;
            }
            if (ep->next_check_ms < next)
                next = ep->next_check_ms;
        }
    }
    return next;
}

static void *health_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&E.mu);
    while (!E.stopping) {
        pthread_mutex_unlock(&E.mu);
        void *hold = NULL;
        const struct endpoint_table *t = E.acquire(&hold);
        uint64_t next = health_pass(t, clock_fn());
        E.release(hold);
        pthread_mutex_lock(&E.mu);
        if (E.stopping)
            break;
        uint64_t now = clock_fn();
        if (next > now) {
            /* Sleep on the wall clock the condition variable uses; a jump of it only makes
             * one sleep shorter or longer than asked, bounded by HEALTH_MAX_SLEEP_MS. (The
             * test clock only decides what is due.) */
            uint64_t wait_ms = next - now;
            if (wait_ms > HEALTH_MAX_SLEEP_MS)
                wait_ms = HEALTH_MAX_SLEEP_MS;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += (time_t)(wait_ms / 1000);
            ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&E.cv, &E.mu, &ts);
        }
    }
    pthread_mutex_unlock(&E.mu);
    return NULL;
}

int endpoints_health_start(const struct endpoint_table *(*acquire)(void **hold),
                           void (*release)(void *hold))
{
    if (E.thread_on)
        return 0;
    E.acquire = acquire;
    E.release = release;
    E.stopping = 0;
    if (pthread_create(&E.thread, NULL, health_main, NULL) != 0) {
        gw_log_error("health_thread", "cannot start the health-check thread");
        return -1;
    }
    pthread_setname_np(E.thread, "tg-health");
    E.thread_on = 1;
    return 0;
}

void endpoints_health_stop(void)
{
    if (!E.thread_on)
        return;
    pthread_mutex_lock(&E.mu);
    E.stopping = 1;
    pthread_cond_signal(&E.cv);
    pthread_mutex_unlock(&E.mu);
    pthread_join(E.thread, NULL);
    E.thread_on = 0;
}

/* ---- tables ------------------------------------------------------------------------------- */

static void ep_release(struct ep_state *ep)
{
    if (ep && atomic_fetch_sub(&ep->refs, 1) == 1)
        free(ep);
}

void endpoint_table_free(struct endpoint_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        for (size_t e = 0; t->bes[i].eps && e < t->bes[i].be->n_endpoints; e++)
            ep_release(t->bes[i].eps[e]);
        free(t->bes[i].eps);
    }
    free(t->bes);
    free(t->slots);
    free(t);
}

int endpoint_table_has_health(const struct endpoint_table *t)
{
    return t && t->has_health;
}

/* The previous table's state of endpoint `url` of backend `name` on route `route`, or NULL. */
static const struct ep_state *previous_state(const struct endpoint_table *prev, const char *route,
                                             const char *name, const char *url, int *had_health)
{
    for (size_t b = 0; prev && b < prev->n; b++) {
        const struct be_state *bs = &prev->bes[b];
        if (strcmp(bs->route, route) != 0 || strcmp(bs->be->name, name) != 0)
            continue;
        for (size_t e = 0; e < bs->be->n_endpoints; e++)
            if (strcmp(bs->be->endpoints[e], url) == 0) {
                *had_health = bs->be->health.path != NULL;
                return bs->eps[e];
            }
    }
    return NULL;
}

/* The state of one endpoint of a new table: shared with the previous one, copied, or new. */
static struct ep_state *ep_for(const struct endpoint_table *prev, const char *route,
                               const struct gw_backend *be, const char *url)
{
    int had_health = 0;
    const struct ep_state *old = previous_state(prev, route, be->name, url, &had_health);
    if (old && had_health == (be->health.path != NULL)) {
        struct ep_state *shared = (struct ep_state *)old;
        atomic_fetch_add(&shared->refs, 1);
        return shared;
    }
    struct ep_state *ep = calloc(1, sizeof *ep);
    if (!ep)
        return NULL;
    atomic_init(&ep->refs, 1);
    atomic_init(&ep->up, 1);
    if (old) {
        /* Health checks came or went: the ejection carries over, the health view starts
         * afresh (up, checked at once when there are checks now). */
        atomic_init(&ep->failures, atomic_load(&old->failures));
        atomic_init(&ep->ejections, atomic_load(&old->ejections));
        atomic_init(&ep->ejected_until_ms, atomic_load(&old->ejected_until_ms));
    }
    return ep;
}

struct endpoint_table *endpoint_table_build(const struct gw_config *cfg,
                                            const struct ssrf_allow *allow,
                                            const struct endpoint_table *previous)
{
    struct endpoint_table *t = calloc(1, sizeof *t);
    size_t total = 0;
    if (!t)
        return NULL;
    t->allow = allow;
    for (size_t r = 0; r < cfg->n_routes; r++)
        total += cfg->routes[r].n_backends;
    if (total == 0)
        return t;
    t->bes = calloc(total, sizeof *t->bes);
    t->cap = 1;
    while (t->cap < total * 2)
        t->cap <<= 1;
    t->slots = calloc(t->cap, sizeof *t->slots);
    if (!t->bes || !t->slots)
        goto fail;
    for (size_t r = 0; r < cfg->n_routes; r++) {
        for (size_t b = 0; b < cfg->routes[r].n_backends; b++) {
            const struct gw_backend *be = &cfg->routes[r].backends[b];
            struct be_state *bs = &t->bes[t->n];
            bs->be = be;
            bs->route = cfg->routes[r].name;
            bs->eps = calloc(be->n_endpoints ? be->n_endpoints : 1, sizeof *bs->eps);
            if (!bs->eps)
                goto fail;
            t->n++;
            for (size_t i = 0; i < be->n_endpoints; i++)
                if (!(bs->eps[i] = ep_for(previous, bs->route, be, be->endpoints[i])))
                    goto fail;
            t->has_health |= be->health.path != NULL;
            size_t s = ptr_hash(be) & (t->cap - 1);
            while (t->slots[s])
                s = (s + 1) & (t->cap - 1);
            t->slots[s] = t->n;
        }
    }
    return t;
fail:
    endpoint_table_free(t);
    return NULL;
}
