/*
 * routing: the fifth governance layer. Picks the backend (the route's first unless another
 * part chose), keeps toolgate from being used to reach places it must not (SSRF guard on the
 * backend address and on URL-valued tool arguments), pins the vetted backend address for the
 * upstream client, and injects the verified identity for the backend (a short-lived JWT
 * signed by toolgate, or headers); the user's own token never leaves toolgate.
 *
 * Configuration: routes[].inject (routing_inject_parse) and the top-level `egress:` section
 * (egress_config_parse). Runtime: one per configuration generation (struct routing_runtime:
 * endpoint table, signing key, resolve cache), made by routing_start for the first and by
 * routing_prepare on a reload, freed with its generation; routing_stop ends the health
 * thread. See docs/routing.md.
 */
#ifndef GW_ROUTING_H
#define GW_ROUTING_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/cfg.h"
#include "core/config.h"
#include "layers/modules.h"
#include "layers/routing/ssrf.h"

/* How the verified identity reaches the backend (routes[].inject; layers/routing). */
enum gw_inject_mode {
    GW_INJECT_JWT = 0, /* a short-lived JWT signed by toolgate, in Authorization (default) */
    GW_INJECT_HEADERS, /* X-Toolgate-Subject etc.: only for backends on a private network */
    GW_INJECT_NONE,
    GW_INJECT_TOKEN_EXCHANGE, /* RFC 8693: a token the IdP issued for the backend (tokex.h) */
};

enum gw_inject_header {
    GW_INJECT_H_SUBJECT = 0,
    GW_INJECT_H_TENANT,
    GW_INJECT_H_ROLES,
    GW_INJECT_H_SCOPES,
    GW_INJECT_H_CLIENT,
    GW_INJECT_H_REQUEST_ID,
    GW_INJECT_H_COUNT
};

struct tokex_config;

struct gw_route_inject {
    enum gw_inject_mode mode;
    /*
     * jwt: the aud claim; NULL = the URL of the backend called. token_exchange: the audience
     * asked for (RFC 8693 §2.1); with neither it nor exchange->resource, the resource asked
     * for is the backend's URL.
     */
    char *audience;
    uint64_t ttl_ms; /* jwt: token lifetime (60s, at most 60s) */
    /* headers: names, never NULL once parsed (defaults X-Toolgate-Subject, ...) */
    char *headers[GW_INJECT_H_COUNT];
    struct tokex_config *exchange; /* token_exchange: its settings (owned); else NULL */
};

/* Bounds on what the egress section may hold (far above real use). */
#define EGRESS_MAX_ALLOW 1024
#define EGRESS_MAX_URL_TOOLS 256
#define EGRESS_MAX_LIST 64

/* Tools whose arguments name URLs the backend will fetch (egress.url_tools[]). */
struct egress_url_tool {
    char **tools; /* NULL-terminated tool names; a trailing '*' matches a prefix */
    char **args;  /* NULL-terminated JSON pointers; NULL: every string that looks like a URL */
    struct ssrf_allow allow; /* private destinations these arguments may name (default none) */
};

struct routing_runtime;

struct egress_config {
    struct ssrf_allow allow; /* private backend destinations (default none) */
    char *signing_key;       /* PEM private key for injected JWTs; NULL: generated */
    int url_args;            /* url_args: check (1, the default) | off (0) */
    struct egress_url_tool *url_tools;
    size_t n_url_tools;
    /*
     * Tools whose arguments are not vetted at all (url_exempt; NULL-terminated names, a
     * trailing '*' a prefix). Every other tool's URL-looking strings are vetted.
     */
    char **url_exempt;
    uint64_t max_url_args;          /* URL strings vetted per request at most (32) */
    uint64_t resolve_timeout_ms;    /* a lookup slower than this denies (2s) */
    uint64_t resolve_cache_ttl_ms;  /* backend name lookups kept this long (30s; 0 = off) */
    uint64_t resolve_cache_entries; /* at most this many names (1024) */
    /*
     * What the layer runs with for this generation (endpoint table, signing key, resolve
     * cache): built off the event loop by routing_start for the first generation and by the
     * module's prepare for a reloaded one, before the generation serves; owned, and freed
     * with the generation (egress_config_free), by whichever thread drops its last
     * reference. NULL for a generation the layer has not started (unit tests).
     */
    struct routing_runtime *rt;
};

/* File the signing key is generated at when egress.signing_key is not set. */
#define ROUTING_DEFAULT_KEY_PATH "toolgate-egress-ed25519.pem"

/*
 * Parses the `egress:` section (section may be NULL: the defaults). On success *out is a new
 * config (free with egress_config_free). Returns 0, or -1 with err (file:line: path: what).
 */
int egress_config_parse(const struct cfg_doc *doc, const struct cfg_node *section,
                        struct egress_config **out, struct cfg_error *err);
void egress_config_free(struct egress_config *ec);

/*
 * Parses routes[i].inject from the route's map (absent: mode jwt, ttl 60s). `route_path`
 * names the route in errors ("routes[0]"). Returns 0, or -1 with err. Free with
 * routing_inject_free (also after a failed parse).
 */
int routing_inject_parse(const struct cfg_doc *doc, const struct cfg_node *route,
                         const char *route_path, struct gw_route_inject *out,
                         struct cfg_error *err);
void routing_inject_free(struct gw_route_inject *ri);

/* The routing layer's configuration in a generation, and a route's injection settings. */
static inline const struct egress_config *egress_config_of(const struct gw_config *cfg)
{
    return cfg ? cfg->modules[GW_STAGE_ROUTING] : NULL;
}
static inline const struct gw_route_inject *routing_inject_of(const struct gw_route *route)
{
    return route->modules[GW_STAGE_ROUTING];
}

/*
 * Starts the runtime for cfg: when a route injects JWTs (or egress.signing_key is set),
 * loads the signing key, or generates an Ed25519 key at ROUTING_DEFAULT_KEY_PATH when no key
 * is configured and that file does not exist (logged with its path); makes the token and
 * resolution caches; logs a warning for every backend at a literal private address that
 * egress.allow does not list (requests to it will be denied). Returns 0, or -1 (logged).
 * Call before the workers start; routing_stop after they have ended.
 */
int routing_start(const struct gw_config *cfg);
void routing_stop(void);

/*
 * A reload (core/module.h): routing_prepare builds next's runtime on the reload thread (its
 * endpoints share the state of the running ones they keep; its signing key is read again);
 * 0, or -1 with a sentence in err. routing_commit makes it the one the health checks follow.
 */
int routing_prepare(const struct gw_config *running, const struct gw_config *next,
                    struct cfg_error *err);
void routing_commit(const struct gw_config *next);
/* Frees a runtime (egress_config_free; tests that built a configuration by hand). */
void routing_runtime_free(struct routing_runtime *rt);
/* The endpoint table of cfg's runtime, or NULL (endpoints.h). */
struct endpoint_table;
const struct endpoint_table *routing_endpoints_of(const struct gw_config *cfg);
/* The kid cfg's identity tokens are signed with ("" when none). */
const char *routing_signing_kid(const struct gw_config *cfg);

/*
 * The public keys injected JWTs are signed with, as a JWKS ({"keys":[...]}; empty when no
 * key is loaded). Served by the core at /.well-known/jwks.json. Appends to out; 0 or -1.
 */
int routing_jwks_json(const struct gw_config *cfg, struct gw_buf *out);

/* `toolgate bench routing`: mint cost uncached and cached, URL vet cost; lines on stdout. */
int routing_bench_main(int argc, char **argv);

/* ---- for tests ---------------------------------------------------------------------------- */

#define ROUTING_MAX_ADDRS 16

/*
 * A name lookup: fills out[0..*n) (at most max addresses) for host. Returns 0, or a negative
 * value when the name does not resolve.
 */
typedef int routing_resolve_fn(void *ctx, const char *host, struct gw_addr *out, size_t max,
                               size_t *n);
/*
 * Replaces the system resolver (NULL restores it). With a replacement, lookups run
 * synchronously inside check(). Not thread-safe: set before requests run.
 */
void routing_set_resolver(routing_resolve_fn *fn, void *ctx);
/*
 * The loop asynchronous lookups run on for requests without a worker (unit tests); NULL
 * (the default) resolves synchronously with getaddrinfo in that case.
 */
struct uv_loop_s;
void routing_set_test_loop(struct uv_loop_s *loop);
/* Drops every cached backend lookup and minted token. */
void routing_flush_caches(void);

/* The layer's pipeline stage (its struct gw_module is routing_module, layers/modules.h). */
extern const struct gw_layer_ops routing_layer;

#endif
