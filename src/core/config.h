/*
 * config: the typed configuration (one "generation"), loaded from YAML by gw_config_load.
 *
 * A generation is immutable once loaded and shared read-only by every worker thread. Each
 * section is parsed by its owner: `server` (config_server.c) and `routes` (config_routes.c)
 * by the core, every other key by the module that registered it (core/module.h). Unknown
 * keys are errors.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/cfg.h"

/* Slots for the modules' own configuration in a generation and in each route. */
#define GW_MAX_MODULES 16

struct gw_listen {
    char *address; /* as written: "127.0.0.1:8080", "[::1]:8080", ":8080" */
    char *host;    /* numeric address to bind ("0.0.0.0" for ":8080") */
    int port;
    char *tls_cert; /* both set when the listener has `tls`, both NULL for plain HTTP; files */
    char *tls_key;  /* were readable at load (serving TLS is added by a later change) */
};

struct gw_server_limits {
    uint64_t max_body;            /* bytes; 413 beyond it (default 1MiB) */
    uint64_t max_header;          /* bytes of request line + headers; 431 beyond (16KiB) */
    uint64_t header_timeout_ms;   /* whole header must arrive within; 408 (10s) */
    uint64_t body_timeout_ms;     /* whole body must arrive within; 408 (30s) */
    uint64_t idle_timeout_ms;     /* keep-alive connection idle; closed (60s) */
    uint64_t max_connections;     /* per process; 503 beyond (10000) */
    uint64_t shutdown_timeout_ms; /* in-flight requests may finish within (10s) */
    uint64_t max_json_depth;      /* JSON-RPC nesting bound (64) */
    uint64_t max_response;        /* bytes of a buffered (non-SSE) upstream answer (16MiB) */
    uint64_t max_sse_event;       /* bytes of one SSE event from upstream (4MiB) */
    uint64_t write_buffer;        /* bytes queued to a slow client before upstream pauses (1MiB) */
};

struct gw_server_config {
    struct gw_listen *listen;
    size_t n_listen;
    char *public_url; /* an origin, no path or trailing '/'; default http(s)://<listen[0]> */
    int workers;      /* 0 = one per core */
    struct gw_server_limits limits;
    char *log_level; /* debug | info | warn | error */
    /*
     * DNS rebinding: Origin values accepted on routes (lower-case "scheme://host[:port]";
     * default: public_url's origin), and Host names accepted besides IP literals (default:
     * public_url's host; "localhost" too when a listener is on loopback). NULL-terminated.
     */
    char **allowed_origins;
    char **allowed_hosts;
};

/*
 * The admin listener (health, readiness, metrics): off unless the file has an `admin`
 * section. Without a token it is reachable from loopback only (a non-loopback listen address
 * is refused at load, a non-loopback peer is answered 403); with one, every request must
 * carry it as a bearer token.
 */
struct gw_admin_config {
    int enabled;
    struct gw_listen listen; /* default 127.0.0.1:9090; TLS when admin.tls is set */
    char *token_file;        /* as written, or NULL */
    int has_token;
    uint8_t token_sha256[32]; /* of the trimmed token; the token itself is not kept */
};

/* Active health checks of a backend's endpoints (backends[].health; routing layer). */
struct gw_backend_health {
    char *path;           /* GET <endpoint origin><path>; NULL: no active checks (absent key) */
    uint64_t interval_ms; /* between checks of one endpoint (5s) */
    uint64_t timeout_ms;  /* one check, connect included (1s) */
    unsigned unhealthy;   /* consecutive failed checks that mark an endpoint down (2) */
    unsigned healthy;     /* consecutive good checks that mark it up again (1) */
};

/* Passive ejection on failed requests (backends[].eject; routing layer). */
struct gw_backend_eject {
    unsigned failures; /* consecutive failed requests that eject an endpoint; 0 = never */
    uint64_t base_ms;  /* first ejection lasts this long, doubling each time (30s) */
    uint64_t max_ms;   /* ejections last at most this long (5m) */
};

struct gw_route_timeouts {
    uint64_t connect_ms;    /* 2s */
    uint64_t first_byte_ms; /* 30s: response headers must start within */
    uint64_t idle_ms;       /* 5m: silence on an open (SSE) stream */
};

struct gw_backend {
    char *name;
    char *url; /* http(s)://host:port/path: the first endpoint */
    char *prefix;
    /* `url`, or the `endpoints` list: n_endpoints >= 1 URLs, endpoints[0] == url. */
    char **endpoints;
    size_t n_endpoints;
    struct gw_backend_health health;
    struct gw_backend_eject eject;
    struct gw_route_timeouts timeouts; /* the route's, overridden key by key by its own */
    /*
     * The protocol revision the backend serves (`protocol`), as an MCP_V_* bit, or 0 (`auto`):
     * requests go in the revision the client speaks. A session-era revision here bridges
     * 2026-07-28 clients to it (core/bridge.c); 2026-07-28 refuses session-era clients.
     */
    unsigned protocol;
    /* `tls`: CA bundle to verify the backend with, client certificate and key (files). */
    char *tls_ca, *tls_cert, *tls_key;
    /*
     * A local backend (a module's backend_keys claimed it, e.g. `command`): `local_owner` is
     * that module, `local` its definition, and `local_socket` the unix socket of the private
     * endpoint the module serves it on (allocated at parse, filled by the module's start,
     * "" before). The relay reaches it there and nowhere else. All NULL for a network backend.
     */
    const struct gw_module *local_owner;
    void *local;
    char *local_socket;
    /* The core's series of this backend (core/stats.c): slot + 1, 0 for none. */
    unsigned stats_id;
};

struct gw_route_kind; /* core/route_kind.h */
struct gw_module;     /* core/module.h */

struct gw_route {
    char *name;
    char *path; /* client-facing path, e.g. "/mcp" (REST: the prefix of "/tools/<name>") */
    /* What serves it (core/route_kind.h): relay, federation (several backends), rest. */
    const struct gw_route_kind *kind_ops;
    struct gw_backend *backends;
    size_t n_backends;
    struct gw_route_timeouts timeouts;
    /* routes[].allow_methods: methods let through beyond the method table (NULL-terminated
     * or NULL). */
    char **allow_methods;
    /* Each module's own keys of this route (module.h: route_keys), by module index. */
    void *modules[GW_MAX_MODULES];
    /* The core's series of this route (core/stats.c): slot + 1, 0 for none. */
    unsigned stats_id;
};

struct gw_config {
    char *path;           /* the file it came from; NULL when loaded from a string */
    char config_hash[65]; /* hex SHA-256 of the file's bytes: names this generation in audit */
    struct gw_server_config server;
    struct gw_route *routes;
    size_t n_routes;
    struct gw_admin_config admin;
    /*
     * Each module's section, by module index (core/module.h), as its parse function left
     * it; each module says what NULL means for it (identity, policy: deny everything).
     */
    void *modules[GW_MAX_MODULES];
    /*
     * SHA-256 of each top-level section's tree as written (all zero when absent), by the
     * section's key: a reload compares them to tell which sections changed.
     */
    struct gw_config_section_digest {
        const char *key; /* static: the core's section name or a module's config_key */
        uint8_t digest[32];
    } sections[3 + GW_MAX_MODULES];
    size_t n_sections;
    /*
     * The generation's life (core/generation.c): references held by the current pointer, the
     * workers and every request in flight; the last one frees it. `generation` numbers it
     * (1 at start, +1 per successful reload).
     */
    atomic_long refs;
    uint64_t generation;
};

/*
 * Loads, validates and returns a generation (caller frees with gw_config_free); NULL with err
 * filled ("file:line:col: key.path: what is wrong") on any error.
 */
struct gw_config *gw_config_load(const char *path, struct cfg_error *err);
/* Same, from YAML text (tests). `name` labels errors. */
struct gw_config *gw_config_load_string(const char *yaml, const char *name, struct cfg_error *err);
void gw_config_free(struct gw_config *cfg);

/*
 * True when the top-level section `key` is the same in both generations (same tree as
 * written; both absent counts as the same). Relative paths inside are compared as text, so a
 * file they name may still have changed.
 */
int gw_config_section_same(const struct gw_config *a, const struct gw_config *b, const char *key);
/* SHA-256 of a node's tree as written (kinds, scalars, quoting, keys, in order). */
void gw_config_node_digest(const struct cfg_node *node, uint8_t out[32]);

/*
 * What `serve` needs beyond a valid file: at least one route. (`check` accepts a file without
 * routes so that other sections can be validated on their own.) Returns 0, or -1 with err.
 */
int gw_config_check_serve(const struct gw_config *cfg, struct cfg_error *err);

/* Finds the route whose path equals the request path (without query). NULL when none. */
const struct gw_route *gw_config_route_for(const struct gw_config *cfg, const char *path,
                                           size_t len);

#endif
