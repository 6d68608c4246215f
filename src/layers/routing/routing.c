/*
 * routing layer: the pipeline slot. For each request that policy and limits allowed:
 *
 *   1. the backend the route kind chose (req->backend): its endpoint, when it has several;
 *   2. URL-valued tool arguments of the tools egress.url_tools names: each URL is parsed
 *      strictly and its host, and every address the host resolves to now, must be allowed
 *      (denied as a tool result naming the argument and at most the host);
 *   3. the backend's address: a literal is vetted as written; a name is resolved (once, then
 *      from a short-lived cache), every address vetted, and the vetted addresses pinned in
 *      req->upstream_pin so the upstream client connects to nothing else;
 *   4. identity injection (routes[].inject).
 *
 * Lookups run on the worker's libuv loop (uv_getaddrinfo); check() then returns GW_ASYNC and
 * the verdict comes through gw_pipeline_resume. A lookup slower than egress.resolve_timeout
 * denies.
 */
#include "layers/routing/affinity.h"
#include "layers/routing/routing-int.h"
#include "lib/digest.h"
#include "lib/log.h"
#include "core/upstream.h"
#include "lib/timeutil.h"
#include "layers/layer.h"
#include "layers/routing/endpoints.h"
#include "layers/routing/inject.h"
#include "layers/routing/tokex.h"
#include "core/generation.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

static const struct egress_config default_egress = {
    .url_args = 1,
    .max_url_args = 32,
    .resolve_timeout_ms = 2000,
    .resolve_cache_ttl_ms = 30000,
    .resolve_cache_entries = 1024,
};

/* Test hooks (routing.h). */
static routing_resolve_fn *hook_resolve;
static void *hook_ctx;
static uv_loop_t *test_loop;

void routing_set_resolver(routing_resolve_fn *fn, void *ctx)
{
    hook_resolve = fn;
    hook_ctx = ctx;
}

void routing_set_test_loop(struct uv_loop_s *loop)
{
    test_loop = loop;
}

/* ---- the backend resolution cache ------------------------------------------------------ */

#define RCACHE_PROBE 8

struct rcache_entry {
    char host[GW_URL_MAX_HOST + 1]; /* "" when empty */
    struct gw_addr addrs[ROUTING_MAX_ADDRS];
    size_t n;
    uint64_t expires_ms; /* monotonic */
};

struct rcache {
    pthread_mutex_t mu;
    struct rcache_entry *e;
    size_t cap;
    uint64_t ttl_ms;
};

/* How long a replaced signing key stays published: an injected token's longest life, and some. */
#define PREVIOUS_KEY_MS (65 * 1000)

/* One generation's runtime (routing.h: egress_config.rt). */
struct routing_runtime {
    struct endpoint_table *endpoints;
    struct inject_signer *signer; /* NULL when no route injects a JWT and no key is set */
    /*
     * The key signing before the last reload that changed it: still published in the JWKS
     * until previous_until_ms (monotonic), since tokens it signed live up to 60s and may be
     * on their way to backends; later reloads that keep the key carry it on. NULL otherwise.
     */
    struct inject_signer *previous_signer;
    uint64_t previous_until_ms;
    int new_key; /* the signer is not the previous generation's (logged when it serves) */
    struct rcache rc;
};

static size_t rcache_slot(const struct rcache *rc, const char *host)
{
    uint64_t h = 1469598103934665603u;
    for (const char *p = host; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211u;
    return (size_t)(h % rc->cap);
}

static int rcache_get(struct routing_runtime *rt, const char *host, struct gw_addr *out, size_t *n)
{
    if (!rt)
        return 0;
    struct rcache *rc = &rt->rc;
    int hit = 0;
    pthread_mutex_lock(&rc->mu);
    if (rc->cap) {
        uint64_t now = gw_mono_ms();
        size_t s = rcache_slot(rc, host);
        for (size_t i = 0; i < RCACHE_PROBE && i < rc->cap; i++) {
            struct rcache_entry *e = &rc->e[(s + i) % rc->cap];
            if (strcmp(e->host, host) != 0)
                continue;
            if (now < e->expires_ms) {
                memcpy(out, e->addrs, e->n * sizeof *out);
                *n = e->n;
                hit = 1;
            }
            break;
        }
    }
    pthread_mutex_unlock(&rc->mu);
    return hit;
}

static void rcache_put(struct routing_runtime *rt, const char *host, const struct gw_addr *addrs,
                       size_t n)
{
    if (!rt)
        return;
    struct rcache *rc = &rt->rc;
    pthread_mutex_lock(&rc->mu);
    if (rc->cap && rc->ttl_ms) {
        uint64_t now = gw_mono_ms();
        size_t s = rcache_slot(rc, host);
        struct rcache_entry *slot = NULL;
        for (size_t i = 0; i < RCACHE_PROBE && i < rc->cap && !slot; i++) {
            struct rcache_entry *e = &rc->e[(s + i) % rc->cap];
            if (strcmp(e->host, host) == 0 || !e->host[0] || e->expires_ms <= now)
                slot = e;
        }
        /* All probed slots live: replace the one closest to expiry. */
        for (size_t i = 0; i < RCACHE_PROBE && i < rc->cap && !slot; i++) {
            struct rcache_entry *e = &rc->e[(s + i) % rc->cap];
            if (!slot || e->expires_ms < slot->expires_ms)
                slot = e;
        }
        if (slot) {
            snprintf(slot->host, sizeof slot->host, "%s", host);
            memcpy(slot->addrs, addrs, n * sizeof *addrs);
            slot->n = n;
            slot->expires_ms = now + rc->ttl_ms;
        }
    }
    pthread_mutex_unlock(&rc->mu);
}

static void rcache_flush(struct rcache *rc)
{
    pthread_mutex_lock(&rc->mu);
    if (rc->e)
        memset(rc->e, 0, rc->cap * sizeof *rc->e);
    pthread_mutex_unlock(&rc->mu);
}

/*
 * The module's own state (beside each generation's runtime): the generation the health
 * checks follow when there is no current generation yet (between routing_start and the first
 * swap, and in unit tests, which have none), under `mu`.
 */
static struct {
    pthread_mutex_t mu;
    const struct gw_config *followed;
} M = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct routing_runtime *rt_of(const struct gw_config *cfg)
{
    const struct egress_config *ec = egress_config_of(cfg);
    return ec ? ec->rt : NULL;
}

void routing_flush_caches(void)
{
    pthread_mutex_lock(&M.mu);
    struct routing_runtime *rt = rt_of(M.followed);
    if (rt) {
        rcache_flush(&rt->rc);
        inject_signer_flush(rt->signer);
    }
    pthread_mutex_unlock(&M.mu);
    inject_cache_flush();
    tokex_cache_flush();
}

/* ---- start / stop / JWKS ------------------------------------------------------------------- */

static const struct egress_config *egress_of(const struct gw_config *cfg)
{
    return egress_config_of(cfg) ? egress_config_of(cfg) : &default_egress;
}

/* Literal private backends that egress.allow does not list: every request to them fails. */
static void warn_unlisted_backends(const struct gw_config *cfg)
{
    const struct egress_config *ec = egress_of(cfg);
    for (size_t r = 0; r < cfg->n_routes; r++) {
        for (size_t b = 0; b < cfg->routes[r].n_backends; b++) {
            const struct gw_backend *be = &cfg->routes[r].backends[b];
            for (size_t e = 0; e < (be->n_endpoints ? be->n_endpoints : 1); e++) {
                const char *url = be->n_endpoints ? be->endpoints[e] : be->url;
                struct gw_url u;
                enum ssrf_class cls = SSRF_PUBLIC;
                if (gw_url_parse(url, strlen(url), 0, &u) != GW_URL_OK)
                    continue;
                int allowed = 1;
                if (u.host_is_ip)
                    allowed = ssrf_addr_allowed(&ec->allow, u.host, u.port, &u.ip, &cls);
                if (!allowed)
                    gw_log_warn("egress_backend_denied",
                                "routes[%zu] (%s): backend %s is at a %s address (%s:%d) that "
                                "egress.allow does not list: requests to it will be denied; add "
                                "\"%s%s%s:%d\" to egress.allow if it is meant to be reached",
                                r, cfg->routes[r].name, be->name, ssrf_class_name(cls), u.host,
                                u.port, u.ip.family == AF_INET6 ? "[" : "", u.host,
                                u.ip.family == AF_INET6 ? "]" : "", u.port);
            }
        }
    }
}

void routing_runtime_free(struct routing_runtime *rt)
{
    if (!rt)
        return;
    endpoint_table_free(rt->endpoints);
    inject_signer_release(rt->signer);
    inject_signer_release(rt->previous_signer);
    free(rt->rc.e);
    pthread_mutex_destroy(&rt->rc.mu);
    free(rt);
}

/* What a generation about to serve says about itself in the log. */
static void log_serving(const struct gw_config *cfg)
{
    const struct routing_runtime *rt = rt_of(cfg);
    const struct egress_config *ec = egress_of(cfg);
    if (rt && rt->new_key)
        gw_log_info("egress_key", "identity tokens for backends are signed with %s (%s, kid %s)",
                    ec->signing_key ? ec->signing_key : ROUTING_DEFAULT_KEY_PATH,
                    inject_signer_alg(rt->signer), inject_signer_kid(rt->signer));
    warn_unlisted_backends(cfg);
}

/*
 * Builds cfg's runtime, off the event loop; `previous` is the running generation's (NULL at
 * start). Returns NULL with a sentence in why.
 */
static struct routing_runtime *runtime_build(const struct gw_config *cfg,
                                             const struct routing_runtime *previous, char *why,
                                             size_t whylen)
{
    const struct egress_config *ec = egress_of(cfg);
    struct routing_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        snprintf(why, whylen, "out of memory for the routing layer");
        return NULL;
    }
    pthread_mutex_init(&rt->rc.mu, NULL);
    int need_key = ec->signing_key != NULL;
    for (size_t r = 0; r < cfg->n_routes; r++)
        need_key |= routing_inject_of(&cfg->routes[r])->mode == GW_INJECT_JWT;
    if (need_key) {
        char reason[400];
        rt->signer = inject_signer_open(ec->signing_key, reason, sizeof reason);
        if (!rt->signer) {
            snprintf(why, whylen, "egress.signing_key: %s", reason);
            goto fail;
        }
        const struct inject_signer *was = previous ? previous->signer : NULL;
        if (was && strcmp(inject_signer_kid(was), inject_signer_kid(rt->signer)) == 0) {
            /* The same key: keep the running signer and its cached tokens. */
            inject_signer_release(rt->signer);
            rt->signer = (struct inject_signer *)was;
            inject_signer_hold(rt->signer);
            if (previous->previous_signer && gw_mono_ms() < previous->previous_until_ms) {
                rt->previous_signer = previous->previous_signer;
                rt->previous_until_ms = previous->previous_until_ms;
                inject_signer_hold(rt->previous_signer);
            }
        } else {
            rt->new_key = 1;
            if (was) {
                rt->previous_signer = (struct inject_signer *)was;
                rt->previous_until_ms = gw_mono_ms() + PREVIOUS_KEY_MS;
                inject_signer_hold(rt->previous_signer);
            }
        }
    }
    size_t cap = ec->resolve_cache_ttl_ms ? (size_t)ec->resolve_cache_entries : 0;
    if (cap && !(rt->rc.e = calloc(cap, sizeof *rt->rc.e))) {
        snprintf(why, whylen, "out of memory for the resolve cache");
        goto fail;
    }
    rt->rc.cap = cap;
    rt->rc.ttl_ms = ec->resolve_cache_ttl_ms;
    rt->endpoints = endpoint_table_build(cfg, &ec->allow, previous ? previous->endpoints : NULL);
    if (!rt->endpoints) {
        snprintf(why, whylen, "out of memory for the backends' endpoint state");
        goto fail;
    }
    return rt;
fail:
    routing_runtime_free(rt);
    return NULL;
}

/*
 * The table the health thread checks on this pass: the current generation's (held for the
 * pass), or before there is one the generation routing_start or the last commit made.
 */
static const struct endpoint_table *health_acquire(void **hold)
{
    struct gw_config *cfg = gw_generation_acquire();
    if (cfg) {
        *hold = cfg;
        return rt_of(cfg) ? rt_of(cfg)->endpoints : NULL;
    }
    *hold = NULL;
    pthread_mutex_lock(&M.mu);
    const struct endpoint_table *t = rt_of(M.followed) ? rt_of(M.followed)->endpoints : NULL;
    pthread_mutex_unlock(&M.mu);
    return t;
}

static void health_release(void *hold)
{
    gw_generation_release(hold);
}

/* Sets cfg's runtime: the module owns its slot of the generation, filled before it serves. */
static void attach(const struct gw_config *cfg, struct routing_runtime *rt)
{
    struct egress_config *ec = (struct egress_config *)egress_config_of(cfg);
    routing_runtime_free(ec->rt);
    ec->rt = rt;
}

int routing_start(const struct gw_config *cfg)
{
    char why[512];
    if (!egress_config_of(cfg)) {
        gw_log_error("routing_start", "the configuration has no egress settings");
        return -1;
    }
    struct routing_runtime *rt = runtime_build(cfg, NULL, why, sizeof why);
    if (!rt) {
        gw_log_error("egress_key", "%s", why);
        return -1;
    }
    attach(cfg, rt);
    log_serving(cfg);
    pthread_mutex_lock(&M.mu);
    M.followed = cfg;
    pthread_mutex_unlock(&M.mu);
    if (endpoint_table_has_health(rt->endpoints) &&
        endpoints_health_start(health_acquire, health_release) != 0) {
        gw_log_error("routing_start", "cannot set up the backends' health checks");
        return -1;
    }
    return 0;
}

void routing_stop(void)
{
    endpoints_health_stop();
    tokex_stop();
    inject_stop();
    pthread_mutex_lock(&M.mu);
    M.followed = NULL;
    pthread_mutex_unlock(&M.mu);
}

int routing_prepare(const struct gw_config *running, const struct gw_config *next,
                    struct cfg_error *err)
{
    if (!egress_config_of(next)) {
        snprintf(err->msg, sizeof err->msg, "the new configuration has no egress settings");
        return -1;
    }
    struct routing_runtime *rt = runtime_build(next, rt_of(running), err->msg, sizeof err->msg);
    if (!rt)
        return -1;
    /* Started now when the new routes are the first with health checks; it follows the
     * current generation, so it checks them once next is swapped in. */
    if (endpoint_table_has_health(rt->endpoints) &&
        endpoints_health_start(health_acquire, health_release) != 0) {
        routing_runtime_free(rt);
        snprintf(err->msg, sizeof err->msg, "cannot start the health-check thread");
        return -1;
    }
    attach(next, rt); /* freed with next if the reload is abandoned */
    return 0;
}

void routing_commit(const struct gw_config *next)
{
    log_serving(next);
    pthread_mutex_lock(&M.mu);
    M.followed = next;
    pthread_mutex_unlock(&M.mu);
}

const struct endpoint_table *routing_endpoints_of(const struct gw_config *cfg)
{
    return rt_of(cfg) ? rt_of(cfg)->endpoints : NULL;
}

const char *routing_signing_kid(const struct gw_config *cfg)
{
    return rt_of(cfg) ? inject_signer_kid(rt_of(cfg)->signer) : "";
}

int routing_jwks_json(const struct gw_config *cfg, struct gw_buf *out)
{
    const struct routing_runtime *rt = rt_of(cfg);
    int previous = rt && rt->previous_signer && gw_mono_ms() < rt->previous_until_ms;
    const struct inject_signer *keys[2] = {rt ? rt->signer : NULL,
                                           previous ? rt->previous_signer : NULL};
    return inject_signers_jwks_json(keys, 2, out);
}

/* ---- one request's lookups --------------------------------------------------------------- */

static int deny_backend(struct gw_decision *out, int status, const char *code, const char *reason)
{
    return gw_decision_deny(out, status, JSONRPC_INTERNAL_ERROR, code, reason);
}

/* Vets every address of one lookup. Returns 1 allowed; 0 denied (*cls set). */
static int lookup_allowed(const struct lookup *lk, enum ssrf_class *cls)
{
    if (lk->denied_extra) {
        *cls = lk->extra_class;
        return 0;
    }
    for (size_t i = 0; i < lk->n_addrs; i++)
        if (!ssrf_addr_allowed(lk->allow, lk->host, lk->port, &lk->addrs[i], cls))
            return 0;
    return 1;
}

/* "host:port:a1,a2" in curl's CURLOPT_RESOLVE form, as many addresses as fit. */
static void set_pin(struct gw_request *req, const char *host, int port, const struct gw_addr *addrs,
                    size_t n)
{
    char *p = req->upstream_pin;
    size_t cap = sizeof req->upstream_pin;
    int len = snprintf(p, cap, "%s:%d:", host, port);
    if (len < 0 || (size_t)len >= cap) {
        p[0] = '\0';
        return;
    }
    size_t used = (size_t)len, written = 0;
    for (size_t i = 0; i < n; i++) {
        char a[INET6_ADDRSTRLEN], item[INET6_ADDRSTRLEN + 4];
        gw_addr_format(&addrs[i], a, sizeof a);
        int il = snprintf(item, sizeof item, "%s%s%s%s", written ? "," : "",
                          addrs[i].family == AF_INET6 ? "[" : "", a,
                          addrs[i].family == AF_INET6 ? "]" : "");
        if (il < 0 || used + (size_t)il >= cap)
            break;
        memcpy(p + used, item, (size_t)il + 1);
        used += (size_t)il;
        written++;
    }
    if (!written)
        p[0] = '\0';
}

/* Everything looked up: vet, pin, inject. Returns GW_PASS or GW_DENY (out filled). */
static int conclude(struct job *job)
{
    struct gw_request *req = job->req;
    struct gw_decision *out = job->out;
    for (size_t i = 0; i < job->n; i++) {
        struct lookup *lk = &job->lk[i];
        enum ssrf_class cls = SSRF_PUBLIC;
        if (lk->status < 0 || lk->n_addrs == 0) {
            if (lk->backend)
                return deny_backend(out, 502, "routing.resolve_failed",
                                    "The backend's host name could not be resolved.");
            char what[224];
            snprintf(what, sizeof what, "the host %.120s could not be resolved.", lk->host);
            return routing_deny_arg(out, lk->arg, what);
        }
        if (!lookup_allowed(lk, &cls)) {
            if (lk->backend) {
                char fields[160];
                snprintf(fields, sizeof fields, "\"backend\":\"%s\",\"class\":\"%s\"",
                         job->be->name, ssrf_class_name(cls));
                gw_log(GW_LOG_WARN, "egress_denied", req->id, fields,
                       "the backend's name resolved to an address egress.allow does not list");
                return deny_backend(out, 502, "routing.egress_denied",
                                    "The backend's address is not allowed by the egress policy.");
            }
            return routing_deny_arg_host(out, lk->arg, lk->host, cls);
        }
        if (lk->backend) {
            rcache_put(job->rt, lk->host, lk->addrs, lk->n_addrs);
            set_pin(req, job->be_host_raw, job->be_url.port, lk->addrs, lk->n_addrs);
        }
    }
    const struct gw_route_inject *ri = routing_inject_of(req->route);
    req->inject_mode = ri->mode == GW_INJECT_TOKEN_EXCHANGE ? "token_exchange"
                       : ri->mode == GW_INJECT_HEADERS      ? "headers"
                       : ri->mode == GW_INJECT_NONE         ? "none"
                                                            : "jwt";
    if (ri->mode == GW_INJECT_TOKEN_EXCHANGE)
        return tokex_apply(req, ri, job->be, job->out); /* GW_ASYNC while it exchanges */
    int rc = inject_apply(req, ri, job->be, job->rt ? job->rt->signer : NULL);
    switch (rc) {
    case INJECT_OK:
        return GW_PASS;
    case INJECT_E_NO_KEY:
        gw_log(GW_LOG_ERROR, "inject_no_key", req->id, NULL,
               "the route injects a JWT but no signing key is loaded (routing_start not run?)");
        return deny_backend(out, 500, "routing.no_signing_key",
                            "An internal error stopped this request.");
    case INJECT_E_IDENTITY:
        return deny_backend(out, 500, "routing.no_identity",
                            "No verified identity to pass to the backend.");
    case INJECT_E_VALUE:
        return deny_backend(out, 500, "routing.identity_too_large",
                            "The identity is too large to pass to the backend.");
    default:
        return deny_backend(out, 500, "routing.inject_failed",
                            "An internal error stopped this request.");
    }
}

static void add_result(struct lookup *lk, const struct gw_addr *a)
{
    for (size_t i = 0; i < lk->n_addrs; i++)
        if (lk->addrs[i].family == a->family && memcmp(lk->addrs[i].bytes, a->bytes, 16) == 0)
            return;
    if (lk->n_addrs < ROUTING_MAX_ADDRS) {
        lk->addrs[lk->n_addrs++] = *a;
        return;
    }
    enum ssrf_class cls;
    if (!lk->denied_extra && !ssrf_addr_allowed(lk->allow, lk->host, lk->port, a, &cls)) {
        lk->denied_extra = 1;
        lk->extra_class = cls;
    }
}

static void take_addrinfo(struct lookup *lk, const struct addrinfo *res)
{
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        struct gw_addr a = {0};
        if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
            a.family = AF_INET;
            memcpy(a.bytes, &((const struct sockaddr_in *)ai->ai_addr)->sin_addr, 4);
        } else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(struct sockaddr_in6)) {
            a.family = AF_INET6;
            memcpy(a.bytes, &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, 16);
        } else {
            continue;
        }
        add_result(lk, &a);
    }
}

static const struct addrinfo lookup_hints = {
    .ai_family = AF_UNSPEC,
    .ai_socktype = SOCK_STREAM,
};

static void resolve_sync(struct lookup *lk)
{
    if (hook_resolve) {
        struct gw_addr tmp[ROUTING_MAX_ADDRS * 2];
        size_t n = 0;
        lk->status = hook_resolve(hook_ctx, lk->host, tmp, ROUTING_MAX_ADDRS * 2, &n);
        for (size_t i = 0; lk->status == 0 && i < n && i < ROUTING_MAX_ADDRS * 2; i++)
            add_result(lk, &tmp[i]);
        return;
    }
    struct addrinfo *res = NULL;
    lk->status = getaddrinfo(lk->host, NULL, &lookup_hints, &res) == 0 ? 0 : -1;
    if (res) {
        take_addrinfo(lk, res);
        freeaddrinfo(res);
    }
}

static void job_maybe_free(struct job *job)
{
    if (job->outstanding == 0 && !job->timer_live)
        free(job);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct job *job = h->data;
    job->timer_live = 0;
    job_maybe_free(job);
}

static void finish_async(struct job *job, int verdict)
{
    struct gw_request *req = job->req;
    job->finished = 1;
    job->req = NULL;
    if (job->timer_live && !uv_is_closing((uv_handle_t *)&job->timer))
        uv_close((uv_handle_t *)&job->timer, on_timer_closed);
    if (verdict != GW_ASYNC) /* a token exchange resumes the request itself */
        gw_pipeline_resume(req, verdict);
}

static void on_gai(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    struct lookup *lk = g->data;
    struct job *job = lk->job;
    lk->status = status == 0 ? 0 : -1;
    lk->done = 1;
    if (res) {
        take_addrinfo(lk, res);
        uv_freeaddrinfo(res);
    }
    job->outstanding--;
    if (job->outstanding == 0 && !job->finished)
        finish_async(job, conclude(job));
    job_maybe_free(job);
}

static void on_timeout(uv_timer_t *t)
{
    struct job *job = t->data;
    if (job->finished)
        return;
    for (size_t i = 0; i < job->n; i++)
        uv_cancel((uv_req_t *)&job->lk[i].gai);
    const struct lookup *slow = NULL;
    for (size_t i = 0; i < job->n && !slow; i++)
        if (!job->lk[i].done)
            slow = &job->lk[i];
    if (slow && !slow->backend) {
        char what[224];
        snprintf(what, sizeof what, "the host %.120s could not be resolved in time.", slow->host);
        routing_deny_arg(job->out, slow->arg, what);
    } else {
        deny_backend(job->out, 504, "routing.resolve_timeout",
                     "The backend's host name could not be resolved in time.");
    }
    finish_async(job, GW_DENY);
}

int routing_add_lookup(struct job *job, const struct gw_url *u, int backend,
                       const struct ssrf_allow *allow, const char *arg)
{
    for (size_t i = 0; i < job->n; i++) {
        struct lookup *lk = &job->lk[i];
        if (lk->backend == backend && lk->allow == allow && lk->port == u->port &&
            strcmp(lk->host, u->host) == 0)
            return 0;
    }
    if (job->n >= ROUTING_MAX_NAMES)
        return -1;
    struct lookup *lk = &job->lk[job->n++];
    memcpy(lk->host, u->host, sizeof lk->host);
    lk->port = u->port;
    lk->backend = backend;
    lk->allow = allow;
    lk->job = job;
    snprintf(lk->arg, sizeof lk->arg, "%s", arg ? arg : "");
    return 0;
}

/* Vets one URL string. Returns GW_PASS (perhaps with a lookup queued) or GW_DENY. */
/* ---- the backend -------------------------------------------------------------------------- */

/* The host as the URL writes it (names only): what curl will look up and match the pin to. */
static void raw_host(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = strcspn(p, ":/?#");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

/*
 * A route with local backends (a command toolgate runs): each is reached only on the unix
 * socket its module created, never through the URL's host, so there is no address to vet.
 * A per-user instance is keyed on the user: a pseudonym (SHA-256 of issuer and subject) goes
 * in a header the upstream client sends to local endpoints only. No verified user: none.
 */
static int add_local_principal(struct gw_request *req)
{
    int any = 0;
    for (size_t i = 0; i < req->route->n_backends; i++)
        any |= req->route->backends[i].local_socket != NULL;
    if (!any || !req->identity.subject)
        return 0;
    struct gw_sha256_ctx c;
    uint8_t d[GW_SHA256_LEN];
    char hex[GW_SHA256_HEX_LEN + 1];
    const char *iss = req->identity.issuer ? req->identity.issuer : "";
    gw_sha256_init(&c);
    gw_sha256_update(&c, iss, strlen(iss) + 1);
    gw_sha256_update(&c, req->identity.subject, strlen(req->identity.subject));
    if (gw_sha256_final(&c, d) != 0)
        return -1;
    gw_hex(d, sizeof d, hex);
    return gw_request_add_upstream_header(req, GW_LOCAL_PRINCIPAL_HEADER, hex);
}

static int vet_backend(struct job *job, struct gw_request *req, struct gw_decision *out)
{
    const struct gw_backend *be = job->be;
    struct gw_url *u = &job->be_url;
    enum ssrf_class cls = SSRF_PUBLIC;
    if (add_local_principal(req) != 0)
        return deny_backend(out, 500, "routing.internal",
                            "An internal error stopped this request.");
    if (be->local_socket)
        return GW_PASS; /* the module's own endpoint: the unix socket, nothing else */
    if (gw_url_parse(job->url, strlen(job->url), 0, u) != GW_URL_OK)
        return deny_backend(out, 502, "routing.bad_backend_url",
                            "The backend's URL is not usable.");
    struct gw_addr addrs[ROUTING_MAX_ADDRS];
    size_t n = 0;
    if (u->host_is_ip) {
        addrs[0] = u->ip;
        n = 1;
    } else if (ssrf_name_is_localhost(u->host)) {
        addrs[0] = (struct gw_addr){.family = AF_INET, .bytes = {127, 0, 0, 1}};
        addrs[1] = (struct gw_addr){.family = AF_INET6, .bytes = {[15] = 1}};
        n = 2;
    } else if (!rcache_get(job->rt, u->host, addrs, &n)) {
        raw_host(job->url, job->be_host_raw, sizeof job->be_host_raw);
        return routing_add_lookup(job, u, 1, &job->ec->allow, NULL) == 0
                   ? GW_PASS
                   : deny_backend(out, 500, "routing.internal",
                                  "An internal error stopped this request.");
    }
    for (size_t i = 0; i < n; i++)
        if (!ssrf_addr_allowed(&job->ec->allow, u->host, u->port, &addrs[i], &cls)) {
            char fields[160];
            snprintf(fields, sizeof fields, "\"backend\":\"%s\",\"class\":\"%s\"", be->name,
                     ssrf_class_name(cls));
            gw_log(GW_LOG_WARN, "egress_denied", req->id, fields,
                   "the backend's address is not listed in egress.allow");
            return deny_backend(out, 502, "routing.egress_denied",
                                "The backend's address is not allowed by the egress policy.");
        }
    if (!u->host_is_ip) {
        raw_host(job->url, job->be_host_raw, sizeof job->be_host_raw);
        set_pin(req, job->be_host_raw, u->port, addrs, n);
    }
    return GW_PASS;
}

/* ---- the layer ---------------------------------------------------------------------------- */

static uv_loop_t *loop_of(const struct gw_request *req)
{
    if (gw_request_loop(req))
        return gw_request_loop(req);
    return test_loop;
}

static int start_async(struct job *job, uv_loop_t *loop)
{
    if (uv_timer_init(loop, &job->timer) != 0)
        return -1;
    job->timer.data = job;
    job->timer_live = 1;
    for (size_t i = 0; i < job->n; i++) {
        struct lookup *lk = &job->lk[i];
        lk->gai.data = lk;
        job->outstanding++;
        if (uv_getaddrinfo(loop, &lk->gai, on_gai, lk->host, NULL, &lookup_hints) != 0) {
            job->outstanding--;
            lk->status = -1;
        }
    }
    if (job->outstanding == 0) {
        /* Nothing could start: decide now, close the timer, report through resume. */
        return -1;
    }
    uv_timer_start(&job->timer, on_timeout, job->ec->resolve_timeout_ms, 0);
    return 0;
}

static int routing_check(struct gw_request *req, struct gw_decision *out)
{
    const struct gw_route *route = req->route;
    /* The route kind chose the backend before the layers ran; none chosen fails closed. */
    if (!route || route->n_backends == 0 || !req->backend)
        return deny_backend(out, 500, "routing.no_backend", "No backend serves this route.");
    req->upstream_pin[0] = '\0';
    req->upstream_url = NULL;
    /* The request's own generation's runtime: a reload since it started changes nothing. */
    struct routing_runtime *rt = rt_of(req->cfg);
    const struct endpoint_table *table = rt ? rt->endpoints : NULL;
    if (req->backend->n_endpoints > 0) {
        /* A session lives on the endpoint that issued it; other requests go round-robin. */
        int idx = req->backend->n_endpoints > 1
                      ? affinity_lookup(req->backend,
                                        req->session_valid ? req->session.backends[0] : NULL)
                      : -1;
        struct endpoint_status st;
        if (idx >= 0 &&
            (endpoints_status(table, req->backend, idx, &st) != 0 || !st.up || st.ejected))
            idx = -1; /* gone: the backend will say the session is unknown */
        if (idx < 0)
            idx = endpoints_pick(table, req->backend);
        if (idx < 0)
            return deny_backend(out, 503, "routing.no_healthy_endpoint",
                                "No endpoint of the backend is available; try again later.");
        req->upstream_url = req->backend->endpoints[idx];
    }
    struct job *job = calloc(1, sizeof *job);
    if (!job)
        return deny_backend(out, 500, "routing.internal",
                            "An internal error stopped this request.");
    job->req = req;
    job->out = out;
    job->rt = rt;
    job->ec = egress_of(req->cfg);
    job->be = req->backend;
    job->url = req->upstream_url ? req->upstream_url : req->backend->url;
    int rc = routing_vet_arguments(job, req, out);
    if (rc == GW_PASS)
        rc = vet_backend(job, req, out);
    if (rc != GW_PASS || job->n == 0) {
        if (rc == GW_PASS)
            rc = conclude(job);
        free(job);
        return rc;
    }
    uv_loop_t *loop = hook_resolve ? NULL : loop_of(req);
    if (!loop) {
        for (size_t i = 0; i < job->n; i++)
            resolve_sync(&job->lk[i]);
        rc = conclude(job);
        free(job);
        return rc;
    }
    if (start_async(job, loop) != 0) {
        rc = conclude(job);
        if (job->timer_live) {
            uv_close((uv_handle_t *)&job->timer, on_timer_closed);
            return rc; /* freed by on_timer_closed */
        }
        free(job);
        return rc;
    }
    return GW_ASYNC;
}

/* Failures that say the endpoint itself is in trouble (the proxy's reason codes). */
static const char *const endpoint_failures[] = {"upstream.connect", "upstream.timeout",
                                                "upstream.protocol", "upstream.lost", NULL};

/*
 * Passive ejection bookkeeping: what became of a request the routing layer sent to an
 * endpoint. Requests denied on the way (by routing or audit) never reached it and count for
 * nothing; an answer of 502/503/504 or a broken exchange is a failure; any other answer is a
 * success.
 */
static void routing_complete(struct gw_request *req)
{
    const struct gw_backend *be = req->backend;
    if (!be || be->n_endpoints == 0 || req->deciding_stage != GW_STAGE_NONE)
        return;
    enum endpoint_outcome outcome = ENDPOINT_NONE;
    for (const char *const *c = endpoint_failures; *c && outcome == ENDPOINT_NONE; c++)
        if (strcmp(req->upstream_error, *c) == 0)
            outcome = ENDPOINT_FAILED;
    if (outcome == ENDPOINT_NONE && req->upstream_status > 0) {
        int st = req->upstream_status;
        outcome = st == 502 || st == 503 || st == 504 ? ENDPOINT_FAILED : ENDPOINT_OK;
    }
    int index = endpoints_index_of(be, req->upstream_url);
    endpoints_report(routing_endpoints_of(req->cfg), be, index, outcome);
    if (be->n_endpoints > 1 && outcome == ENDPOINT_OK) {
        /* Keyed by the backend's session id: the client's is toolgate's own. */
        const char *known = req->session_valid ? req->session.backends[0] : NULL;
        if (req->method == GW_HTTP_DELETE && known)
            affinity_forget(be, known);
        else if (req->upstream_session_id && (!known || strcmp(known, req->upstream_session_id)))
            affinity_remember(be, req->upstream_session_id, index);
    }
}

const struct gw_layer_ops routing_layer = {
    .check = routing_check,
    .on_complete = routing_complete,
};
