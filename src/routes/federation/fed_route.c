/*
 * The federation route kind: an MCP route with several backends. toolgate owns the client's
 * session (it answers initialize, ping, notifications and DELETE itself, opening a session
 * with every backend when the client initializes, so that its capabilities are the backends'
 * merged), and sends the lists and the governed actions (tools, prompts, resources,
 * completions) to the backend they concern, opening that backend's session first when it is
 * not open yet (initialize, then notifications/initialized). See federation.h for prefixes,
 * URI prefixes and cursors.
 *
 * This file is the kind itself: which routes it claims, their checks, which backend a request
 * concerns (prepare), how a backend's message becomes the client's (on_message) and where each
 * request goes (forward). The calls to backends are in fed_upstream.c, the opening and closing
 * of backend sessions in fed_session.c, the server stream (GET) in fed_stream.c, the
 * client's answers to backends' requests in fed_answer.c, revision 2026-07-28 (stateless: no
 * sessions) in fed_modern.c and fed_listen.c, and what is merged from several backends'
 * answers in fed_merge.c; fed-int.h is what they share.
 */
#include "lib/log.h"
#include "mcp/jsonrpc.h"
#include "routes/federation/fed-int.h"
#include "routes/federation/fed_route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void state_free(void *p)
{
    struct fed_state *s = p;
    free(s->cursor);
    free(s->body);
    free(s->backend_sid);
    free(s->client_caps);
    gw_buf_free(&s->scratch);
    gw_buf_free(&s->init_answer);
    gw_buf_free(&s->up_name);
    fed_discover_free(&s->discover);
    json_decref(s->listen_ack);
    gw_buf_free(&s->listen_held);
    json_decref(s->caps);
    for (size_t i = 0; i < MCP_SESSION_MAX_BACKENDS; i++)
        free(s->sids[i]);
    for (size_t i = 0; i < s->n_streams; i++) {
        upstream_cancel(s->streams[i].call);
        sse_parser_free(&s->streams[i].sse);
        free(s->streams[i].body);
    }
    free(s->streams);
    free(s);
}

static int fed_claims(const char *name, size_t n_backends)
{
    return strcmp(name, "mcp") == 0 && n_backends > 1;
}

/*
 * Clients see each backend's tools and prompts under its prefix and its resources under its
 * URI prefix, so every backend needs a prefix that can start a URI scheme, and no prefix may
 * hide another's names or URIs.
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
        char ui[FED_URI_PREFIX_MAX], uj[FED_URI_PREFIX_MAX];
        if (fed_uri_prefix(pi, ui, sizeof ui) < 0)
            return cfg_errorf(err, doc, cfg_map_get(backends->items[i], "prefix"), bp,
                              "prefix \"%s\" must start with a letter: on a route with several "
                              "backends it also starts the backend's resource URIs (before "
                              "their scheme)",
                              pi);
        for (size_t j = 0; j < i; j++) {
            const char *pj = r->backends[j].prefix;
            int uri_overlap =
                fed_uri_prefix(pj, uj, sizeof uj) >= 0 &&
                (strncmp(ui, uj, strlen(ui)) == 0 || strncmp(ui, uj, strlen(uj)) == 0);
            if (strncmp(pi, pj, strlen(pi)) == 0 || strncmp(pi, pj, strlen(pj)) == 0 || uri_overlap)
                return cfg_errorf(err, doc, cfg_map_get(backends->items[i], "prefix"), bp,
                                  "prefix \"%s\" overlaps \"%s\" of %s[%zu]; one must not "
                                  "start the other (letters compared in any case, '_' as '-')",
                                  pi, pj, p, j);
        }
    }
    return 0;
}

/*
 * The backend a governed action names (a tool or prompt by its prefix, a resource or a
 * completion's resource template by its URI prefix), and the backend's own name or URI in
 * *rest; NULL when none does.
 */
const struct gw_backend *fed_action_backend(const struct gw_route *route,
                                            const struct mcp_message *m, const char **rest)
{
    if (!m->target)
        return NULL;
    if (m->target_kind == MCP_TARGET_RESOURCE)
        return fed_backend_for_uri(route, m->target, rest);
    return fed_backend_for_tool(route, m->target, rest);
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
    if (req->rpc.is_batch) {
        answer_protocol_error(req, 400, JSONRPC_INVALID_REQUEST, "protocol.batch",
                              "Batches are not supported on an endpoint that federates several "
                              "services");
        return;
    }
    const struct mcp_message *m = req->rpc.n ? &req->rpc.msgs[0] : NULL;
    size_t asked = 0;
    if (m && (m->kind == MCP_RESPONSE || m->kind == MCP_ERROR_RESPONSE) &&
        fed_pending_peek(req->session_id, json_string_value(m->id), now_ms(), &asked) == 0 &&
        asked < route->n_backends) {
        /* An answer to a backend's request goes to that backend. */
        req->backend = &route->backends[asked];
        s->index = asked;
        return;
    }
    if (!m || !m->method || m->kind != MCP_REQUEST) {
        s->index = 0;
        return;
    }
    s->list = fed_list_of(m->method);
    if (m->spec && m->spec->cls == MCP_CLASS_ACTION) {
        const struct gw_backend *be = fed_action_backend(route, m, NULL);
        if (be)
            req->backend = be;
    } else if (s->list != FED_LIST_NONE) {
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

/*
 * A message of a backend's answer becomes the client's: a list page gets prefixed names or
 * URIs and toolgate's cursor (a backend without the list gives an empty page), resource URIs
 * in a result and in resources/updated get the backend's URI prefix. The layers' response
 * hooks run after this, so policy filters what the client will see.
 */
static int fed_on_message(struct exchange *x, json_t *msg, int *modified)
{
    struct fed_state *s = state(x);
    const struct gw_route *route = x->req->route;
    const char *method = json_string_value(json_object_get(msg, "method"));
    if (s->opening_all || s->discovering)
        return 0; /* toolgate's own initialize or discover result */
    if (method && json_object_get(msg, "id")) {
        /* A backend's request to the client: under an id of toolgate's. */
        char id[FED_PENDING_ID_LEN + 1];
        if (fed_pending_add(x->req->session_id, s->index, json_object_get(msg, "id"), now_ms(),
                            id) != 0) {
            gw_log(GW_LOG_WARN, "federation_request_dropped", x->req->id, NULL,
                   "a backend's request to the client was not passed on: too many are pending "
                   "for this session, or its id is not one");
            json_object_set_new(msg, "id", json_null());
            return -1;
        }
        json_object_set_new(msg, "id", json_string(id));
        *modified = 1;
        return 0;
    }
    if (!method && json_object_get(msg, "id")) {
        json_t *result = json_object_get(msg, "result");
        if (s->list != FED_LIST_NONE) {
            if (result ? fed_rewrite_list(msg, route, s->index, s->list) == 0
                       : fed_empty_page(msg, route, s->index, s->list) == 0) {
                *modified = 1;
                if (x->req->modern) {
                    /* A page of toolgate's list; an empty one stands for a 404 -32601. */
                    fed_mark_modern_page(json_object_get(msg, "result"));
                    if (!result)
                        x->answer_status = 200;
                }
            } else if (result) {
                return -1; /* a page that cannot be federated is not passed on unfiltered */
            }
            return 0;
        }
        int n = fed_rewrite_result_uris(result, route, s->index);
        if (n < 0)
            return -1;
        if (n > 0)
            *modified = 1;
        return 0;
    }
    if (method && strcmp(method, "notifications/resources/updated") == 0) {
        json_t *params = json_object_get(msg, "params");
        const char *uri = json_string_value(json_object_get(params, "uri"));
        char *w = uri ? fed_uri_wrap(route, s->index, uri) : NULL;
        if (!w)
            return -1;
        json_object_set_new(params, "uri", json_string(w));
        free(w);
        *modified = 1;
    }
    return 0;
}

/*
 * logging/setLevel and notifications/roots/list_changed: sent to every backend whose session
 * is open, in turn (their answers are not needed), then toolgate answers (202 for the
 * notification).
 */
static void broadcast_next(struct exchange *x);

static void broadcast_done(void *arg, int err, const char *detail)
{
    struct exchange *x = arg;
    struct fed_state *s = state(x);
    (void)err;
    (void)detail;
    x->up = NULL;
    s->index++;
    broadcast_next(x);
}

static void broadcast_next(struct exchange *x)
{
    struct gw_request *req = x->req;
    struct fed_state *s = state(x);
    static const struct upstream_callbacks cbs = {fed_ignore_head, fed_ignore_data, broadcast_done};
    while (s->index < req->session.n_backends && s->index < req->route->n_backends &&
           !req->session.backends[s->index])
        s->index++;
    if (s->index >= req->session.n_backends || s->index >= req->route->n_backends) {
        const struct mcp_message *m = &req->rpc.msgs[0];
        if (m->kind == MCP_NOTIFICATION)
            answer_empty(x, 202);
        else
            answer_result(x, json_object(), NULL, 0);
        return;
    }
    free(s->backend_sid);
    s->backend_sid = strdup(req->session.backends[s->index]);
    if (!s->backend_sid) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    fed_start(x, s->body, 1, &cbs);
}

void fed_answer_unknown(struct exchange *x, const struct mcp_message *m)
{
    char msg[180];
    const char *t = m->target ? m->target : "";
    if (m->target_kind == MCP_TARGET_RESOURCE) {
        snprintf(msg, sizeof msg, "Resource not found: %.120s", t);
        /* -32002 until 2026-07-28 retired it for -32602. */
        answer_error(x, 200, x->req->modern ? JSONRPC_INVALID_PARAMS : -32002, msg,
                     "federation.unknown_resource");
    } else if (m->target_kind == MCP_TARGET_PROMPT) {
        snprintf(msg, sizeof msg, "Unknown prompt: %.120s", t);
        answer_error(x, 200, JSONRPC_INVALID_PARAMS, msg, "federation.unknown_prompt");
    } else {
        snprintf(msg, sizeof msg, "Unknown tool: %.120s", t);
        answer_error(x, 200, JSONRPC_INVALID_PARAMS, msg, "federation.unknown_tool");
    }
}

/*
 * The client's governed action as the layers left it, for the backend: the prefix taken off
 * the name (tools/call, prompts/get, a completion's ref/prompt) or the URI prefix off the
 * URI (resources/read, subscribe, unsubscribe, a completion's ref/resource). NULL: memory.
 */
json_t *fed_action_for_backend(const struct mcp_message *m, const char *rest)
{
    json_t *out = json_deep_copy(m->json);
    json_t *holder = json_object_get(out, "params");
    if (m->spec->target == MCP_TARGET_REF)
        holder = json_object_get(holder, "ref");
    const char *key = m->target_kind == MCP_TARGET_RESOURCE ? "uri" : "name";
    if (!out || !json_is_object(holder) || json_object_set_new(holder, key, json_string(rest))) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/*
 * After the layers allowed it: toolgate answers what is its own (initialize, ping,
 * notifications, DELETE) and sends the lists and the governed actions to the backend they
 * concern.
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
    if (req->method == GW_HTTP_GET) {
        fed_open_streams(x);
        return;
    }
    const struct mcp_message *m = req->rpc.n ? &req->rpc.msgs[0] : NULL;
    if (req->modern) {
        fed_modern_forward(x, m);
        return;
    }
    if (m && (m->kind == MCP_RESPONSE || m->kind == MCP_ERROR_RESPONSE)) {
        fed_answer_backend(x, m);
        return;
    }
    if (m && m->kind == MCP_NOTIFICATION && req->session_valid &&
        strcmp(m->method, "notifications/roots/list_changed") == 0) {
        /* The client's roots concern every backend that may ask for them. */
        if (!(s->body = json_dumps(m->json, JSON_COMPACT))) {
            answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
            return;
        }
        s->broadcasting = 1;
        s->index = 0;
        broadcast_next(x);
        return;
    }
    if (!m || m->kind != MCP_REQUEST) {
        answer_empty(x, 202); /* other notifications are toolgate's own */
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
    int broadcast = 0;
    if (s->list != FED_LIST_NONE) {
        out = json_pack("{s:s, s:O, s:s}", "jsonrpc", "2.0", "id", m->id, "method", m->method);
        if (out && s->cursor)
            json_object_set_new(out, "params", json_pack("{s:s}", "cursor", s->cursor));
    } else if (m->spec && m->spec->cls == MCP_CLASS_ACTION) {
        const char *rest = NULL;
        if (!fed_action_backend(req->route, m, &rest)) {
            fed_answer_unknown(x, m);
            return;
        }
        out = fed_action_for_backend(m, rest);
    } else if (strcmp(m->method, "logging/setLevel") == 0) {
        out = json_deep_copy(m->json);
        broadcast = 1;
    } else {
        answer_error(x, 200, JSONRPC_METHOD_NOT_FOUND,
                     "Method not found: a federated endpoint offers tools, prompts, resources, "
                     "completions, logging and ping",
                     "federation.method");
        return;
    }
    s->body = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    if (!s->body) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    if (broadcast) {
        s->broadcasting = 1;
        s->index = 0;
        broadcast_next(x);
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
    fed_start_backend_init(x);
}

static const char *const fed_reasons[] = {
    "federation.method",           "federation.no_server_stream",
    "federation.no_session",       "federation.unknown_prompt",
    "federation.unknown_resource", "federation.unknown_session",
    "federation.unknown_tool",     NULL,
};

const struct gw_route_kind fed_route_kind = {
    .name = "mcp",
    .reason_codes = fed_reasons,
    .claims = fed_claims,
    .check_route = fed_check_route,
    .prepare = fed_prepare,
    .forward = fed_forward,
    .on_message = fed_on_message,
    .streams = 1,
    .owns_session = 1,
    .modern = 1,
    .on_finish = fed_on_finish,
    .free_state = state_free,
};
