/*
 * module: what a part of toolgate registers with the core, as nginx's modules do. A module
 * owns a top-level configuration key (and optionally keys under each route), may run
 * threads or files of its own between start and stop, may be a stage of the request
 * pipeline (a governance layer), may serve well-known documents and may add commands to the
 * command line.
 *
 * The list of modules is defined once, outside the core (src/layers/modules.c): the core,
 * the configuration loader and main.c iterate it and name no module. A module's index in
 * the list is its stage in the pipeline and the slot of its configuration in a generation.
 */
#ifndef GW_MODULE_H
#define GW_MODULE_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "core/request.h"
#include "lib/buf.h"
#include "lib/cfg.h"

struct gw_config;
struct gw_route;
struct gw_backend;
struct gw_metrics_out; /* lib/metrics.h */

/* What a module does on the request path (its stage of the pipeline). */
struct gw_layer_ops {
    /* Request path. Fills `out` on deny. Returns GW_PASS, GW_DENY or GW_ASYNC. */
    int (*check)(struct gw_request *req, struct gw_decision *out);
    /*
     * Response path, optional: one decoded JSON-RPC message from upstream (the JSON body, or
     * the data of one SSE event). The layer may change `msg` in place and set *modified.
     * Returns GW_PASS, GW_DENY to replace the message with an error for the client, or
     * GW_DROP when the message (a notification) must not reach the client at all.
     */
    int (*on_response)(struct gw_request *req, json_t *msg, int *modified, struct gw_decision *out);
    /* Optional: the response has ended (or failed); settle, complete records. */
    void (*on_complete)(struct gw_request *req);
};

/* A subcommand of the command line: `toolgate <name> ...`. argv[0] is the name. */
struct gw_command {
    const char *name;
    const char *usage; /* one line for `toolgate --help`, after the name */
    int (*main)(int argc, char **argv);
};

/* Module flags. */
#define GW_MODULE_SEES_ALL 0x01 /* its stage runs even after an earlier stage denied (audit) */
#define GW_MODULE_FIRST_UP 0x02 /* started before the others and stopped after them (audit) */

struct gw_module {
    const char *name; /* "identity": names the stage in audit, logs and `toolgate bench` */
    unsigned flags;

    /*
     * Configuration. `config_key` is the top-level key the module owns (NULL: none). parse
     * gets its node, or NULL when the file does not have the key (set the defaults then, or
     * leave *out NULL when the module reads NULL as "deny everything"). Returns 0, or -1 with
     * err filled through cfg_errorf. free releases what parse stored (also a partial one).
     */
    const char *config_key;
    int (*parse)(const struct cfg_doc *doc, const struct cfg_node *node, void **out,
                 struct cfg_error *err);
    void (*free)(void *conf);
    /*
     * Keys the module owns in each route's map (NULL-terminated; NULL: none), parsed by
     * parse_route from the route's map (`path` names it in errors: "routes[0]"). *out is the
     * module's slot of that route; free_route releases it.
     */
    const char *const *route_keys;
    int (*parse_route)(const struct cfg_doc *doc, const struct cfg_node *route, const char *path,
                       void **out, struct cfg_error *err);
    void (*free_route)(void *conf);
    /*
     * Keys the module owns in each backend's map (NULL-terminated; NULL: none). parse_backend
     * returns 1 when the module serves this backend itself (a local backend: it must set
     * b->url, b->local_socket and *out, and the backend may have no `url` or `endpoints`), 0
     * when the map has none of its keys, -1 with err filled. free_backend releases *out.
     */
    const char *const *backend_keys;
    int (*parse_backend)(const struct cfg_doc *doc, const struct cfg_node *backend,
                         const char *path, struct gw_backend *b, void **out, struct cfg_error *err);
    void (*free_backend)(void *conf);
    /*
     * Called by `toolgate check` on a loaded file: runs what the module can verify beyond
     * parsing (policy tests). Returns 0, or 1 after saying on stderr what failed. May append
     * ", <what was checked>" to summary for the success line.
     */
    int (*check)(const struct gw_config *cfg, const char *config_path, struct gw_buf *summary);

    /* Runtime: started in list order before the workers, stopped in reverse after them. */
    int (*start)(const struct gw_config *cfg);
    void (*stop)(void);

    /* The pipeline stage; NULL for a module that is not a layer. */
    const struct gw_layer_ops *layer;

    /*
     * Well-known documents (GET /.well-known/...). `path` is the request path. Returns 1 and
     * appends a JSON document to out when it serves this path, 0 when the path is not the
     * module's, -1 when it is but the document is unavailable now (503), -2 when it is the
     * module's prefix but names nothing (404).
     */
    int (*well_known)(const struct gw_config *cfg, struct gw_slice path, struct gw_buf *out);

    /*
     * Operations. `reason_codes`: every stable reason code the module's decisions carry
     * (NULL-terminated), the label values of toolgate_requests_total{reason}; a code not
     * listed is counted as "other". `ready` (optional) adds its readiness checks to `checks`
     * as "name": {"state": "ok" | "failing", "detail": "..."}; it runs on a worker thread for
     * GET /readyz, so it reads state the runtime keeps and waits at most a short, bounded
     * time. `metrics` (optional) writes the module's own families (lib/metrics.h) for GET
     * /metrics; no user ids as labels.
     */
    const char *const *reason_codes;
    void (*ready)(const struct gw_config *cfg, json_t *checks);
    void (*metrics)(const struct gw_config *cfg, struct gw_metrics_out *out);

    const struct gw_command *commands; /* NULL-terminated by a NULL name; may be NULL */
    /* `toolgate bench <name> ...`: the module's micro-benchmarks; NULL when it has none. */
    int (*bench)(int argc, char **argv);
};

/* The modules, in pipeline order (src/layers/modules.c). */
extern const struct gw_module *const gw_modules[];
extern const size_t gw_n_modules;

/* The module named `name`, or NULL. */
const struct gw_module *gw_module_find(const char *name);

#endif
