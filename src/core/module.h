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

/*
 * What a module that watches requests without deciding anything does (telemetry). None of
 * these can fail or hold up the request. `begin` runs once the request is decoded (also when
 * it was refused as a protocol error), before the first stage; `forward` once the pipeline
 * allowed it, before the upstream request is built: it may add upstream headers and change
 * the decoded messages (then it re-encodes the body); `end` once the response has ended,
 * after the layers' on_complete hooks.
 */
struct gw_observer_ops {
    void (*begin)(struct gw_request *req);
    void (*forward)(struct gw_request *req);
    void (*end)(struct gw_request *req);
};

/* A subcommand of the command line: `toolgate <name> ...`. argv[0] is the name. */
struct gw_command {
    const char *name;
    const char *usage; /* one line for `toolgate --help`, after the name */
    int (*main)(int argc, char **argv);
};

/*
 * Who acts through an admin API action. `credential` names the admin credential that asked
 * ("admin-token:<12 hex>" of its hash, or "admin:loopback" without a token). A person's own
 * token may come with it (the header X-Approver-Token): `person` says whether it was sent and
 * how its verification ended, and `identity` is the verified person (GW_PERSON_VERIFIED only).
 */
enum gw_person_state {
    GW_PERSON_NONE = 0,    /* no X-Approver-Token */
    GW_PERSON_VERIFIED,    /* verified: identity is set */
    GW_PERSON_REFUSED,     /* invalid, expired, or not this configuration's */
    GW_PERSON_UNAVAILABLE, /* cannot be verified now (keys unavailable) */
    GW_PERSON_MALFORMED,   /* sent twice, empty, or too long */
};

struct gw_admin_actor {
    const char *credential;
    enum gw_person_state person;
    const struct gw_identity *identity;
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
    /*
     * Called once every section is parsed (optional), for what one section needs of another:
     * returns 0, or -1 with err set (cfg_errorf on doc, pointing at the module's own key).
     */
    int (*validate)(const struct gw_config *cfg, const struct cfg_doc *doc, struct cfg_error *err);

    /* Runtime: started in list order before the workers, stopped in reverse after them. */
    int (*start)(const struct gw_config *cfg);
    void (*stop)(void);
    /*
     * Reload (optional; core/reload.c). prepare runs on the reload thread, never on a worker,
     * once the next generation has loaded: it builds what the module's runtime needs for
     * `next` without touching what requests in flight use, or says why `next` cannot be
     * served: returns 0, or -1 with a sentence in err (a key the runtime cannot follow
     * without a restart names the key and says a restart is needed). Any failure abandons
     * the reload, and abort is called for every module whose prepare succeeded. commit runs
     * when the reload is certain, just before `next` becomes current for new requests; it
     * cannot fail. A module without prepare follows a new generation through req->cfg.
     */
    int (*prepare)(const struct gw_config *running, const struct gw_config *next,
                   struct cfg_error *err);
    void (*commit)(const struct gw_config *next);
    void (*abort)(const struct gw_config *next);

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
    /*
     * Admin API (optional): answers GET /admin/api/<topic> for the topics the module serves
     * (src/admin/admin_api.c asks each module in list order). `params` is an object of the
     * query's parameters, each a string (bounded in count and length). It runs on a thread of
     * libuv's pool, never on a worker's loop, so it may read its store, within a bounded time;
     * several may run at once. Returns 0 when the topic is not the module's; else an HTTP
     * status with *out set: 200 and the answer, 400 and {"error": "..."} for a bad parameter
     * (a sentence that names it), 503 and {"error": "..."} when the answer is unavailable now.
     * No secret, token or argument value in an answer.
     */
    int (*admin_api)(const struct gw_config *cfg, const char *topic, const json_t *params,
                     json_t **out);
    /*
     * Admin API actions (optional): POST /admin/api/<topic>/<id> with a JSON object body.
     * `actor` says who asked (struct gw_admin_actor, above). Runs on a thread of libuv's
     * pool, as admin_api does, so it may write its store within a bounded time; several may
     * run at once. Returns 0 when the topic is not the module's, else an HTTP status with *out
     * set (as admin_api: 200, 400, 401, 403, 404, 409 or 503 with {"error": "..."}).
     */
    int (*admin_action)(const struct gw_config *cfg, const char *topic, const char *id,
                        const json_t *body, const struct gw_admin_actor *actor, json_t **out);
    /*
     * Verifies a person's bearer token outside any request (optional; the identity module):
     * the admin API calls it on a pool thread for an action's X-Approver-Token. It must not
     * wait on the network. Returns 0 with *out filled (the caller clears it), -1 when the
     * token is refused (missing, malformed, expired, not this configuration's), -2 when it
     * cannot be verified now (the issuer's keys are unavailable).
     */
    int (*verify_person)(const struct gw_config *cfg, struct gw_slice token,
                         struct gw_identity *out);
    /* Whether verify_person can accept anyone under cfg (mode on, an issuer configured). */
    int (*verifies_people)(const struct gw_config *cfg);

    const struct gw_command *commands; /* NULL-terminated by a NULL name; may be NULL */
    /* `toolgate bench <name> ...`: the module's micro-benchmarks; NULL when it has none. */
    int (*bench)(int argc, char **argv);

    /* Watches every request without being a stage (above); NULL for most modules. */
    const struct gw_observer_ops *observer;
};

/* The modules, in pipeline order (src/layers/modules.c). */
extern const struct gw_module *const gw_modules[];
extern const size_t gw_n_modules;

/*
 * The index of `m` in the list: its stage and the slot of its configuration and request state
 * (gw_n_modules when it is not listed). For modules outside the layers' folder, which do not
 * include the list's stage numbers.
 */
size_t gw_module_slot(const struct gw_module *m);

/* The module named `name`, or NULL. */
const struct gw_module *gw_module_find(const char *name);

#endif
