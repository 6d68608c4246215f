/*
 * server_tls: the TLS contexts of the listeners, one per listener (NULL for plain ones),
 * shared by every worker. A reload builds new contexts from the new generation's certificate
 * and key files off the event loop and swaps them in; new handshakes take the new context,
 * established connections keep theirs (OpenSSL counts the context's references from each
 * connection). A replaced context is retired, not freed, since a worker may have loaded the
 * pointer an instant before the swap; retired ones go when the server stops (one set per
 * reload that changed nothing but memory).
 */
#include "core/server-int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static const struct gw_server_listener *specs;
static size_t n_specs;
static _Atomic(struct gw_tls_ctx *) *contexts;
/* Serializes a reload's prepare and commit with the server's open and close (the reload
 * thread may still run while the server tears down). Never taken on the request path. */
static pthread_mutex_t retired_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gw_tls_ctx **retired;
static size_t n_retired, cap_retired;

void server_tls_name(size_t i, char *out, size_t outlen)
{
    size_t main_index = 0;
    for (size_t j = 0; j < i; j++)
        main_index += specs[j].role == NULL;
    if (specs[i].role)
        snprintf(out, outlen, "%s.listen", specs[i].role);
    else
        snprintf(out, outlen, "server.listen[%zu]", main_index);
}

/* The listen entry of listener i in `cfg` (the gateway's by position, the admin's). */
static const struct gw_listen *listen_of(const struct gw_config *cfg, size_t i)
{
    size_t main_index = 0;
    for (size_t j = 0; j < i; j++)
        main_index += specs[j].role == NULL;
    if (specs[i].role)
        return &cfg->admin.listen;
    return main_index < cfg->server.n_listen ? &cfg->server.listen[main_index] : NULL;
}

/* What a reload prepared: one context per listener (NULL for plain ones). */
struct tls_set {
    size_t n;
    struct gw_tls_ctx *ctx[];
};

static void free_set(struct tls_set *set)
{
    for (size_t i = 0; set && i < set->n; i++)
        gw_tls_ctx_free(set->ctx[i]);
    free(set);
}

int server_tls_open(const struct gw_server_listener *ls, size_t n, char *err, size_t errlen)
{
    specs = ls;
    n_specs = n;
    contexts = calloc(n ? n : 1, sizeof *contexts);
    if (!contexts) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const struct gw_listen *l = ls[i].listen;
        if (!l->tls_cert)
            continue;
        char why[400] = "", name[64];
        struct gw_tls_ctx *ctx = gw_tls_ctx_new(l->tls_cert, l->tls_key, why, sizeof why);
        if (!ctx) {
            server_tls_name(i, name, sizeof name);
            snprintf(err, errlen, "%s: %s", name, why);
            return -1;
        }
        atomic_store(&contexts[i], ctx);
    }
    return 0;
}

struct gw_tls_ctx *server_tls_get(size_t i)
{
    return contexts && i < n_specs ? atomic_load(&contexts[i]) : NULL;
}

void server_tls_close(void)
{
    pthread_mutex_lock(&retired_lock);
    for (size_t i = 0; contexts && i < n_specs; i++)
        gw_tls_ctx_free(atomic_load(&contexts[i]));
    free((void *)contexts);
    contexts = NULL;
    for (size_t i = 0; i < n_retired; i++)
        gw_tls_ctx_free(retired[i]);
    free(retired);
    retired = NULL;
    n_retired = cap_retired = 0;
    pthread_mutex_unlock(&retired_lock);
    specs = NULL;
    n_specs = 0;
}

int gw_server_tls_prepare(const struct gw_config *next, void **out, char *err, size_t errlen)
{
    *out = NULL;
    pthread_mutex_lock(&retired_lock);
    if (!contexts) {
        pthread_mutex_unlock(&retired_lock);
        return 0;
    }
    struct tls_set *set = calloc(1, sizeof *set + n_specs * sizeof set->ctx[0]);
    if (!set) {
        pthread_mutex_unlock(&retired_lock);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    set->n = n_specs;
    for (size_t i = 0; i < n_specs; i++) {
        const struct gw_listen *l = listen_of(next, i);
        if (!l || !l->tls_cert)
            continue;
        char why[400] = "", name[64];
        set->ctx[i] = gw_tls_ctx_new(l->tls_cert, l->tls_key, why, sizeof why);
        if (!set->ctx[i]) {
            server_tls_name(i, name, sizeof name);
            snprintf(err, errlen, "%s.tls: %s", name, why);
            free_set(set);
            pthread_mutex_unlock(&retired_lock);
            return -1;
        }
    }
    pthread_mutex_unlock(&retired_lock);
    *out = set;
    return 0;
}

void gw_server_tls_commit(void *prepared)
{
    struct tls_set *set = prepared;
    if (!set)
        return;
    pthread_mutex_lock(&retired_lock);
    if (!contexts || set->n != n_specs) {
        /* The server has stopped since prepare: nothing serves any more. */
        pthread_mutex_unlock(&retired_lock);
        gw_server_tls_abort(set);
        return;
    }
    for (size_t i = 0; i < n_specs; i++) {
        if (!set->ctx[i])
            continue;
        /* Room to retire the old one first: a context a worker may be using is never freed. */
        if (n_retired == cap_retired) {
            size_t cap = cap_retired ? cap_retired * 2 : 8;
            struct gw_tls_ctx **grown = realloc(retired, cap * sizeof *grown);
            if (!grown) {
                gw_tls_ctx_free(set->ctx[i]);
                continue;
            }
            retired = grown;
            cap_retired = cap;
        }
        struct gw_tls_ctx *old = atomic_exchange(&contexts[i], set->ctx[i]);
        if (!old)
            continue;
        retired[n_retired++] = old;
    }
    pthread_mutex_unlock(&retired_lock);
    free(set);
}

void gw_server_tls_abort(void *prepared)
{
    free_set(prepared);
}
