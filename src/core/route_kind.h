/*
 * route_kind: what a route does with a request, besides running the layers. The core's own
 * kind relays an MCP endpoint to its backend (core/relay_kind.c); other kinds live under
 * src/routes/ (REST tool routes, federation of several backends) and are listed once in
 * src/routes/kinds.c, as modules are in src/layers/modules.c.
 *
 * The proxy calls, for every request on a route of the kind:
 *   prepare  before the layers: decode the request into req->rpc (or refuse it as a protocol
 *            error) and choose req->backend; this is the only place a backend is chosen;
 *   forward  once the layers allowed it: send it upstream (relay_start) or answer it;
 *   then, for each JSON-RPC message of the backend's answer, on_message (optional) before
 *   the layers' response hooks, and finish (optional) instead of the generic end of a
 *   buffered answer.
 */
#ifndef GW_ROUTE_KIND_H
#define GW_ROUTE_KIND_H

#include <jansson.h>
#include <stddef.h>

#include "core/config.h"
#include "core/request.h"
#include "lib/cfg.h"

struct exchange;

struct gw_route_kind {
    const char *name; /* as written in routes[].kind ("mcp", "rest") */
    /* Stable reason codes of the kind's own refusals (NULL-terminated; NULL: none). */
    const char *const *reason_codes;
    /*
     * Whether the kind serves a route written with kind `name` and n_backends backends
     * (federation is "mcp" with several). The first kind in the list that claims a route
     * serves it.
     */
    int (*claims)(const char *name, size_t n_backends);
    /* Checks the parsed route further (e.g. prefixes); 0, or -1 with err. Optional. */
    int (*check_route)(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                       const struct gw_route *route, struct cfg_error *err);
    /* Whether a request path belongs to the route (NULL: exactly route->path). */
    int (*matches)(const struct gw_route *route, const char *path, size_t len);

    void (*prepare)(struct exchange *x);
    void (*forward)(struct exchange *x);
    /*
     * A message of the backend's answer, before the response hooks: the kind may rewrite it
     * (set *modified). Returns 0, or -1 to replace it with an error.
     */
    int (*on_message)(struct exchange *x, json_t *msg, int *modified);
    /* The backend's answer head (the session it names, say). Optional. */
    void (*on_head)(struct exchange *x, int status, const struct gw_header *headers, size_t n);
    /* A whole buffered answer, instead of the JSON-RPC default (REST). Optional. */
    void (*finish)(struct exchange *x);
    /*
     * The body of a denial or an error in the kind's own shape (REST: plain HTTP terms),
     * malloc'd, with the status to answer. NULL: JSON-RPC errors for each request.
     */
    char *(*error_body)(const struct gw_request *req, const struct gw_decision *d,
                        const char *layer, int *status, size_t *len);
    /* Whether the backend's answer may be relayed as an event stream (REST: never). */
    int streams;
    /* Whether the client's MCP session is toolgate's own (the backends' ids stay inside). */
    int owns_session;
    /* Whether the kind serves revision 2026-07-28 (stateless); others answer it -32022. */
    int modern;
    /*
     * The exchange is ending (answered, the client gone, the server draining, a timeout):
     * the kind stops the backend calls of its own besides x->up. Optional.
     */
    void (*on_finish)(struct exchange *x);
    /* Frees the kind's per-exchange state (x->kind_state). Optional. */
    void (*free_state)(void *state);
};

/* The core's kind: an MCP endpoint relayed to its one backend. */
extern const struct gw_route_kind gw_relay_kind;

/* The kinds, in the order they are asked to claim a route (src/routes/kinds.c). */
extern const struct gw_route_kind *const gw_route_kinds[];
extern const size_t gw_n_route_kinds;

/* The kind that claims a route written with `name` and n backends, or NULL. */
const struct gw_route_kind *gw_route_kind_for(const char *name, size_t n_backends);

#endif
