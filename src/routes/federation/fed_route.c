/*
 * The federation route kind: an MCP route with several backends. toolgate owns the client's
 * session (it answers initialize, ping, notifications and DELETE itself) and sends tools/list
 * and tools/call to the backend they concern, opening that backend's session first when
 * needed (initialize, then notifications/initialized). See federation.h for prefixes,
 * cursors and the session table.
 */
#include "core/exchange.h"
#include "lib/log.h"
#include "mcp/jsonrpc.h"
#include "mcp/session.h"
#include "routes/federation/federation.h"
#include "routes/federation/fed_route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The protocol revision toolgate speaks with the backends of a federated route. */
#define FED_BACKEND_PROTOCOL "2025-06-18"

enum { FED_INIT = 1, FED_INITIALIZED, FED_CALL };

struct fed_state {
    int list;          /* the answer is a backend's tools/list page to rewrite */
    size_t index;      /* the backend this exchange talks to (req->backend's index) */
    char *cursor;      /* that backend's cursor for tools/list */
    char *body;        /* the request as the backend gets it */
    char *backend_sid; /* the backend's session id */
    int step;          /* FED_INIT, FED_INITIALIZED, FED_CALL */
    int status;        /* status of an initialisation step */
    struct gw_buf scratch;
};

static void state_free(void *p)
{
    struct fed_state *s = p;
    free(s->cursor);
    free(s->body);
    free(s->backend_sid);
    gw_buf_free(&s->scratch);
    free(s);
}

static struct fed_state *state(struct exchange *x)
{
    return x->kind_state;
}

static int fed_claims(const char *name, size_t n_backends)
{
    return strcmp(name, "mcp") == 0 && n_backends > 1;
}

/*
 * Clients see each backend's tools under its prefix, so every backend needs one, and no
 * prefix may hide another's tools.
 */
static int fed_check_route(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                           const struct gw_route *r, struct cfg_error *err)
{
    const struct cfg_node *backends = cfg_map_get(node, "backends");
    char p[256];
    cfg_path_key(p, sizeof p, path, "backends");
    for (size_t i = 0; i < r->n_backends; i++) {
        char bp[300];
        cfg_path_index(bp, sizeof bp, p, i);
        const char *pi = r->backends[i].prefix;
        if (!pi)
            return cfg_errorf(err, doc, backends->items[i], bp,
                              "a route with several backends presents each backend's tools "
                              "under a prefix: give this backend one, e.g. prefix: \"%s.\"",
                              r->backends[i].name);
        for (size_t j = 0; j < i; j++) {
            const char *pj = r->backends[j].prefix;
            if (strncmp(pi, pj, strlen(pi)) == 0 || strncmp(pi, pj, strlen(pj)) == 0)
                return cfg_errorf(err, doc, cfg_map_get(backends->items[i], "prefix"), bp,
                                  "prefix \"%s\" overlaps \"%s\" of %s[%zu]; one must not "
                                  "start the other",
                                  pi, pj, p, j);
        }
    }
    return 0;
}

/*
 * Before the layers: which backend the request concerns (so routing vets and pins that one
 * and injects the identity for it), and what cannot be federated.
 */
static void fed_prepare(struct exchange *x)
{
    struct gw_request *req = x->req;
    const struct gw_route *route = req->route;
    struct fed_state *s = calloc(1, sizeof *s);
    req->backend = &route->backends[0];
    if (!s) {
        answer_protocol_error(req, 503, JSONRPC_INTERNAL_ERROR, "internal.memory", "Out of memory");
        return;
    }
    x->kind_state = s;
    relay_decode_mcp(x);
    if (req->protocol_error)
        return;
    if (req->method == GW_HTTP_GET) {
        answer_protocol_error(req, 405, JSONRPC_INVALID_REQUEST, "protocol.no_server_stream",
                              "This endpoint offers no server stream (GET); use POST");
        return;
    }
    if (req->rpc.is_batch) {
        answer_protocol_error(req, 400, JSONRPC_INVALID_REQUEST, "protocol.batch",
                              "Batches are not supported on an endpoint that federates several "
                              "services");
        return;
    }
    const struct mcp_message *m = req->rpc.n ? &req->rpc.msgs[0] : NULL;
    if (m && m->method && strcmp(m->method, "tools/call") == 0) {
        const struct gw_backend *be = fed_backend_for_tool(route, m->target, NULL);
        if (be)
            req->backend = be;
    } else if (m && m->method && strcmp(m->method, "tools/list") == 0) {
        const char *cursor =
            json_string_value(json_object_get(json_object_get(m->json, "params"), "cursor"));
        size_t idx = 0;
        if (cursor && fed_cursor_decode(cursor, route->n_backends, &idx, &s->cursor) != 0) {
            answer_protocol_error(req, 200, JSONRPC_INVALID_PARAMS, "protocol.bad_cursor",
                                  "Invalid cursor");
            return;
        }
        req->backend = &route->backends[idx];
    }
    s->index = (size_t)fed_backend_index(route, req->backend);
}

/* A backend's tools/list page becomes the client's: prefixed names, toolgate's cursor. */
static int fed_on_message(struct exchange *x, json_t *msg, int *modified)
{
    struct fed_state *s = state(x);
    if (s->list && json_object_get(msg, "id") && !json_object_get(msg, "method") &&
        json_object_get(msg, "result") && fed_rewrite_tools_list(msg, x->req->route, s->index) == 0)
        *modified = 1;
    return 0;
}

/* Headers of a backend call of a federated route. */
static size_t fed_headers(struct exchange *x, struct gw_header *hdrs, int with_session)
{
    struct fed_state *s = state(x);
    size_t n = 0;
    (void)x;
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("application/json")};
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("Accept"),
                                   GW_SLICE_LIT("application/json, text/event-stream")};
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("MCP-Protocol-Version"),
                                   GW_SLICE_LIT(FED_BACKEND_PROTOCOL)};
    if (with_session && s->backend_sid)
        hdrs[n++] = (struct gw_header){GW_SLICE_LIT("Mcp-Session-Id"),
                                       {s->backend_sid, strlen(s->backend_sid)}};
    return n;
}

/* Starts a call to the exchange's backend; `body` must stay valid until the call has ended. */
static int fed_start(struct exchange *x, const char *body, int with_session,
                     const struct upstream_callbacks *cbs)
{
    struct gw_header hdrs[4];
    struct relay_request r = {
        .method = GW_HTTP_POST,
        .body = {body, strlen(body)},
        .extra = hdrs,
        .n_extra = fed_headers(x, hdrs, with_session),
        .cbs = cbs,
    };
    return relay_start(x, &r);
}

static void fed_call(struct exchange *x);

/* The steps that open a backend session: initialize, then notifications/initialized. */
static void fed_init_head(void *arg, int status, const struct gw_header *headers, size_t n)
{
    struct exchange *x = arg;
    struct fed_state *s = state(x);
    s->status = status;
    for (size_t i = 0; s->step == FED_INIT && i < n; i++) {
        if (!gw_slice_casecmp_eq(headers[i].name, "Mcp-Session-Id"))
            continue;
        if (headers[i].value.len > 0 && headers[i].value.len <= EXCHANGE_MAX_SESSION_ID) {
            free(s->backend_sid);
            s->backend_sid = gw_slice_dup(headers[i].value);
        }
        break;
    }
}

static int fed_init_data(void *arg, const char *data, size_t len)
{
    (void)arg;
    (void)data;
    (void)len;
    return 0; /* the initialize result itself is not needed */
}

static void fed_init_done(void *arg, int err, const char *detail)
{
    struct exchange *x = arg;
    struct fed_state *s = state(x);
    struct gw_request *req = x->req;
    x->up = NULL;
    if (err != UPSTREAM_OK || s->status < 200 || s->status >= 300) {
        gw_log(GW_LOG_WARN, "federation_init_failed", req->id, NULL,
               "opening a session with backend %s failed: %s (HTTP %d)", req->backend->name,
               err ? detail : "refused", s->status);
        answer_error(x, 502, JSONRPC_INTERNAL_ERROR, "The backend is unavailable",
                     "upstream.session");
        return;
    }
    static const struct upstream_callbacks cbs = {fed_init_head, fed_init_data, fed_init_done};
    if (s->step == FED_INIT) {
        if (s->backend_sid && req->session_valid && s->index < req->session.n_backends) {
            free(req->session.backends[s->index]);
            req->session.backends[s->index] = strdup(s->backend_sid);
            mcp_session_update(req->session_id, &req->session, gw_request_loop(req));
        }
        s->step = FED_INITIALIZED;
        fed_start(x, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", 1, &cbs);
        return;
    }
    fed_call(x);
}

/* The call itself, on the backend's session; its answer is relayed like any other. */
static void fed_call(struct exchange *x)
{
    struct fed_state *s = state(x);
    s->step = FED_CALL;
    fed_start(x, s->body, 1, NULL);
}

static void ignore_head(void *arg, int status, const struct gw_header *h, size_t n)
{
    (void)arg;
    (void)status;
    (void)h;
    (void)n;
}

static void ignore_done(void *arg, int err, const char *detail)
{
    (void)arg;
    (void)err;
    (void)detail;
}

/* Closes the backend sessions of a client session (best effort; nobody waits for them). */
static void fed_close_backends(struct exchange *x, char **sids, size_t n)
{
    const struct gw_route *route = x->req->route;
    static const struct upstream_callbacks cbs = {ignore_head, fed_init_data, ignore_done};
    for (size_t i = 0; i < n && i < route->n_backends; i++) {
        if (!sids[i])
            continue;
        struct gw_header h = {GW_SLICE_LIT("Mcp-Session-Id"), {sids[i], strlen(sids[i])}};
        struct relay_request r = {
            .method = GW_HTTP_DELETE,
            .backend = &route->backends[i],
            .no_pin = 1,
            .extra = &h,
            .n_extra = 1,
            .cbs = &cbs,
            .detached = 1,
        };
        relay_start(x, &r);
    }
}

/* The protocol revisions a federated route speaks with its clients, newest first. */
static const char *const fed_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26", NULL};

static void fed_initialize(struct exchange *x, const struct mcp_message *m)
{
    struct gw_request *req = x->req;
    const char *asked =
        json_string_value(json_object_get(json_object_get(m->json, "params"), "protocolVersion"));
    const char *version = fed_versions[0];
    for (const char *const *v = fed_versions; asked && *v; v++)
        if (strcmp(asked, *v) == 0)
            version = *v;
    char sid[MCP_SESSION_ID_LEN + 1];
    if (!req->identity.subject ||
        mcp_session_create(req->identity.verified ? req->identity.issuer : "",
                           req->identity.subject, req->route->name, req->route->n_backends, NULL,
                           sid, gw_request_loop(req)) != 0) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "The session could not be recorded",
                     "internal.session");
        return;
    }
    json_t *result = json_pack(
        "{s:s, s:{s:{s:b}}, s:{s:s, s:s}, s:s}", "protocolVersion", version, "capabilities",
        "tools", "listChanged", 0, "serverInfo", "name", "toolgate", "version", TOOLGATE_VERSION,
        "instructions",
        "Tools of several services, each named with its service's prefix (service.tool).");
    /* The header value must outlive answer_result: it is copied into the held answer there. */
    struct gw_header h = {GW_SLICE_LIT("Mcp-Session-Id"), {sid, strlen(sid)}};
    answer_result(x, result, &h, 1);
}

/*
 * After the layers allowed it: toolgate answers what is its own (initialize, ping,
 * notifications, DELETE) and sends tools/list and tools/call to the backend they concern.
 */
static void fed_forward(struct exchange *x)
{
    struct gw_request *req = x->req;
    struct fed_state *s = state(x);
    if (req->method == GW_HTTP_DELETE) {
        if (!req->session_valid) {
            answer_error(x, 400, JSONRPC_INVALID_REQUEST, "Mcp-Session-Id header is required",
                         "federation.no_session");
            return;
        }
        mcp_session_delete(req->session_id, gw_request_loop(req));
        fed_close_backends(x, req->session.backends, req->session.n_backends);
        answer_empty(x, 200);
        return;
    }
    const struct mcp_message *m = req->rpc.n ? &req->rpc.msgs[0] : NULL;
    if (!m || m->kind != MCP_REQUEST) {
        answer_empty(x, 202); /* notifications and client answers are toolgate's own */
        return;
    }
    if (strcmp(m->method, "initialize") == 0) {
        fed_initialize(x, m);
        return;
    }
    if (!req->session_id) {
        answer_error(x, 400, JSONRPC_INVALID_REQUEST, "Mcp-Session-Id header is required",
                     "federation.no_session");
        return;
    }
    if (!req->session_valid) {
        /* The identity layer answers unknown ids; this is defence in depth. */
        answer_error(x, 404, JSONRPC_INVALID_REQUEST, "Session not found",
                     "federation.unknown_session");
        return;
    }
    if (strcmp(m->method, "ping") == 0) {
        answer_result(x, json_object(), NULL, 0);
        return;
    }
    json_t *out = NULL;
    if (strcmp(m->method, "tools/list") == 0) {
        out = json_pack("{s:s, s:O, s:s}", "jsonrpc", "2.0", "id", m->id, "method", "tools/list");
        if (out && s->cursor)
            json_object_set_new(out, "params", json_pack("{s:s}", "cursor", s->cursor));
        s->list = 1;
    } else if (strcmp(m->method, "tools/call") == 0) {
        const char *rest = NULL;
        const struct gw_backend *be = fed_backend_for_tool(req->route, m->target, &rest);
        if (!be) {
            char msg[160];
            snprintf(msg, sizeof msg, "Unknown tool: %.120s", m->target ? m->target : "");
            answer_error(x, 200, JSONRPC_INVALID_PARAMS, msg, "federation.unknown_tool");
            return;
        }
        /* The client's message as the layers left it, the prefix taken off the name. */
        out = json_deep_copy(m->json);
        json_t *params = json_object_get(out, "params");
        if (params)
            json_object_set_new(params, "name", json_string(rest));
    } else {
        answer_error(x, 200, JSONRPC_METHOD_NOT_FOUND,
                     "Method not found: a federated endpoint offers tools (and ping)",
                     "federation.method");
        return;
    }
    s->body = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    if (!s->body) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    if (s->index >= req->session.n_backends) {
        answer_error(x, 404, JSONRPC_INVALID_REQUEST, "Session not found",
                     "federation.unknown_session");
        return;
    }
    if (req->session.backends[s->index] &&
        !(s->backend_sid = strdup(req->session.backends[s->index]))) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    if (s->backend_sid) {
        fed_call(x);
        return;
    }
    s->step = FED_INIT;
    /* The body must live until the call ends (curl sends it from there). */
    gw_buf_reset(&s->scratch);
    if (gw_buf_printf(&s->scratch,
                      "{\"jsonrpc\":\"2.0\",\"id\":\"toolgate-init\",\"method\":\"initialize\","
                      "\"params\":{\"protocolVersion\":\"%s\",\"capabilities\":{},"
                      "\"clientInfo\":{\"name\":\"toolgate\",\"version\":\"%s\"}}}",
                      FED_BACKEND_PROTOCOL, TOOLGATE_VERSION) != 0) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    static const struct upstream_callbacks cbs = {fed_init_head, fed_init_data, fed_init_done};
    fed_start(x, s->scratch.data, 0, &cbs);
}

const struct gw_route_kind fed_route_kind = {
    .name = "mcp",
    .claims = fed_claims,
    .check_route = fed_check_route,
    .prepare = fed_prepare,
    .forward = fed_forward,
    .on_message = fed_on_message,
    .streams = 1,
    .owns_session = 1,
    .free_state = state_free,
};
