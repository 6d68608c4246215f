/* The routing layer as a module: `egress`, routes[].inject, runtime, stage and its JWKS. */
#include "layers/layer.h"
#include "layers/routing/endpoints.h"
#include "layers/routing/routing.h"
#include "layers/routing/tokex.h"

#include <stdio.h>
#include <stdlib.h>

/* No `egress` section gives the defaults: no private destination is allowed. */
static int parse(const struct cfg_doc *doc, const struct cfg_node *node, void **out,
                 struct cfg_error *err)
{
    struct egress_config *ec = NULL;
    int rc = egress_config_parse(doc, node, &ec, err);
    *out = ec;
    return rc;
}

static void conf_free(void *conf)
{
    egress_config_free(conf);
}

static const char *const route_keys[] = {"inject", NULL};

static int parse_route(const struct cfg_doc *doc, const struct cfg_node *route, const char *path,
                       void **out, struct cfg_error *err)
{
    struct gw_route_inject *ri = calloc(1, sizeof *ri);
    if (!ri)
        return cfg_errorf(err, doc, route, path, "out of memory");
    *out = ri;
    return routing_inject_parse(doc, route, path, ri, err);
}

static void free_route(void *conf)
{
    routing_inject_free(conf);
    free(conf);
}

/* The public keys backends use to verify the identity toolgate injects. */
static int well_known(const struct gw_config *cfg, struct gw_slice path, struct gw_buf *out)
{
    if (!gw_slice_eq(path, "/.well-known/jwks.json"))
        return 0;
    return routing_jwks_json(cfg, out) == 0 ? 1 : -1;
}

static const char *const reasons[] = {
    "routing.bad_backend_url",
    "routing.egress_denied",
    "routing.identity_too_large",
    "routing.inject_failed",
    "routing.internal",
    "routing.no_backend",
    "routing.no_healthy_endpoint",
    "routing.no_identity",
    "routing.no_signing_key",
    "routing.resolve_failed",
    "routing.resolve_timeout",
    "routing.ssrf",
    "routing.token_exchange_failed",
    NULL,
};

/*
 * One check per route of the generation being served, "route:<name>", with how many of each
 * backend's endpoints are usable now. Informational: always "ok", since one route whose
 * backends are down must not take the gateway out of a load balancer for every other route.
 */
static void routing_ready(const struct gw_config *cfg, json_t *checks)
{
    const struct endpoint_table *t = routing_endpoints_of(cfg);
    for (size_t r = 0; r < cfg->n_routes; r++) {
        const struct gw_route *route = &cfg->routes[r];
        struct gw_buf detail = {0};
        for (size_t b = 0; b < route->n_backends; b++) {
            const struct gw_backend *be = &route->backends[b];
            size_t usable = 0;
            for (size_t e = 0; e < be->n_endpoints; e++) {
                struct endpoint_status st;
                usable += endpoints_status(t, be, (int)e, &st) != 0 || (st.up && !st.ejected);
            }
            gw_buf_printf(&detail, "%s%s: %zu of %zu endpoints usable", b ? ", " : "", be->name,
                          usable, be->n_endpoints);
        }
        char name[96];
        snprintf(name, sizeof name, "route:%s", route->name);
        json_object_set_new(checks, name,
                            json_pack("{s:s, s:s}", "state", "ok", "detail",
                                      detail.data ? detail.data : "no backends"));
        gw_buf_free(&detail);
    }
}

/* The token exchanges' counters (the other routing state has no families of its own yet). */
static void routing_metrics(const struct gw_config *cfg, struct gw_metrics_out *out)
{
    (void)cfg;
    tokex_metrics(out);
}

const struct gw_module routing_module = {
    .name = "routing",
    .config_key = "egress",
    .parse = parse,
    .free = conf_free,
    .route_keys = route_keys,
    .parse_route = parse_route,
    .free_route = free_route,
    .start = routing_start,
    .stop = routing_stop,
    .prepare = routing_prepare,
    .commit = routing_commit,
    .reason_codes = reasons,
    .ready = routing_ready,
    .metrics = routing_metrics,
    .layer = &routing_layer,
    .well_known = well_known,
    .bench = routing_bench_main,
};
