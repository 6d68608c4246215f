/*
 * relay_kind: the core's own route kind, an MCP endpoint relayed to its one backend. The
 * client's session is toolgate's (a backend's session id stays inside), and a session's GET
 * stream is connected upstream before the POSTs that follow it (core/stream_order.h).
 */
#include "core/bridge.h"
#include "core/exchange.h"
#include "core/param_marks.h"
#include "core/stream_order.h"
#include "lib/log.h"
#include "lib/timeutil.h"
#include "mcp/session.h"

#include <stdlib.h>
#include <string.h>

static int relay_claims(const char *name, size_t n_backends)
{
    return strcmp(name, "mcp") == 0 && n_backends == 1;
}

/*
 * The relay's own state of an exchange: a bridged request's state (first: core/bridge.c and
 * core/bridge_legacy.c read it there), its place in the session's stream order.
 */
struct relay_state {
    void *bridge; /* either way round (core/bridge.h), freed with bridge_free */
    void (*bridge_free)(void *state);
    uint64_t order_key;  /* the session's (0: not made yet; a POST's only when needed) */
    uint64_t get_handle; /* a GET on its way upstream (stream_order) */
    uint64_t wait_until_ns;
};

static void relay_free_state(void *state)
{
    struct relay_state *st = state;
    stream_order_done(st->get_handle);
    if (st->bridge_free)
        st->bridge_free(st->bridge);
    free(st);
}

/* The key of the request's place in its session's stream order: its session id and its
 * credentials as the client sent them (the layers add upstream headers, never change these). */
static uint64_t order_key_of(struct gw_request *req)
{
    struct gw_slice sid = gw_request_header(req, "Mcp-Session-Id");
    struct gw_slice auth = gw_request_header(req, "Authorization");
    return stream_order_key(sid.ptr ? sid.ptr : "", sid.len, auth.ptr ? auth.ptr : "", auth.len);
}

/* The request's key, made on first use. */
static uint64_t order_key(struct relay_state *st, struct gw_request *req)
{
    if (!st->order_key)
        st->order_key = order_key_of(req);
    return st->order_key;
}

static void relay_prepare(struct exchange *x)
{
    struct gw_request *req = x->req;
    req->backend = &req->route->backends[0];
    relay_decode_mcp(x);
    struct gw_slice sid = gw_request_header(req, "Mcp-Session-Id");
    if (req->modern || !sid.ptr || sid.len == 0 ||
        (req->method != GW_HTTP_GET && req->method != GW_HTTP_POST))
        return;
    struct relay_state *st = calloc(1, sizeof *st);
    if (!st)
        return;
    /* A POST's key is made only when some GET is on its way (relay_forward): most never wait. */
    if (req->method == GW_HTTP_GET) {
        st->get_handle = stream_order_get_started(order_key(st, req), gw_mono_ns());
    }
    x->kind_state = st;
}

static void relay_send(struct exchange *x);

/* A POST waiting for its session's GET stream to be connected upstream: polled, bounded. */
static void on_order_poll(uv_timer_t *t)
{
    struct exchange *x = t->data;
    struct relay_state *st = x->kind_state;
    uint64_t now = gw_mono_ns();
    if (x->finished)
        return;
    if (now < st->wait_until_ns && stream_order_pending(st->order_key, now, NULL))
        return;
    uv_timer_stop(&x->timer);
    relay_send(x);
}

static void relay_forward(struct exchange *x)
{
    struct relay_state *st = x->kind_state;
    int legacy = bridge_legacy_applies(x->req);
    if (legacy || bridge_applies(x->req)) {
        if (!st && !(st = x->kind_state = calloc(1, sizeof *st))) {
            answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
            return;
        }
        st->bridge_free = legacy ? bridge_legacy_state_free : bridge_state_free;
        if (legacy)
            bridge_legacy_forward(x, &st->bridge);
        else
            bridge_forward(x, &st->bridge);
        return;
    }
    uint64_t until = 0;
    if (st && x->req->method == GW_HTTP_POST && x->req->session_valid && stream_order_any() &&
        stream_order_pending(order_key(st, x->req), gw_mono_ns(), &until)) {
        st->wait_until_ns = until;
        uv_update_time(x->timer.loop);
        uv_timer_start(&x->timer, on_order_poll, 2, 2);
        return;
    }
    relay_send(x);
}

static void relay_send(struct exchange *x)
{
    struct gw_request *req = x->req;
    struct gw_header sid;
    struct relay_request r = {
        .method = req->method,
        .body = gw_request_upstream_body(req),
        .client_headers = 1,
    };
    if (req->session_valid && req->session.backends[0]) {
        sid = (struct gw_header){GW_SLICE_LIT("Mcp-Session-Id"),
                                 {req->session.backends[0], strlen(req->session.backends[0])}};
        r.extra = &sid;
        r.n_extra = 1;
    }
    relay_start(x, &r);
}

/*
 * The client's session is toolgate's: a backend's new session id becomes a session of
 * toolgate's, bound to the user and the route, whose id is what the client gets; a session
 * the backend ended (DELETE answered, or 404: it no longer knows it) is ended here too.
 */
static void relay_on_head(struct exchange *x, int status, const struct gw_header *headers, size_t n)
{
    struct gw_request *req = x->req;
    void *loop = gw_request_loop(req);
    struct relay_state *st = x->kind_state;
    if (st && st->get_handle) {
        /* The backend has the GET stream: the session's POSTs may go. */
        stream_order_done(st->get_handle);
        st->get_handle = 0;
    }
    if (req->modern || bridge_legacy_applies(req))
        return; /* stateless upstream: a session id a backend sends anyway is not taken up */
    if (req->session_valid && (status == 404 || (req->method == GW_HTTP_DELETE && status < 300))) {
        mcp_session_delete(req->session_id, loop);
        return;
    }
    const struct gw_header *sid = gw_header_find(headers, n, "Mcp-Session-Id");
    if (status < 200 || status >= 300 || !sid || sid->value.len == 0 ||
        sid->value.len > MCP_SESSION_MAX_BACKEND_ID || !req->identity.subject)
        return;
    char *backend_id = gw_slice_dup(sid->value);
    if (!backend_id)
        return;
    if (req->session_valid) {
        /* The backend renewed its session under the same client session. */
        if (!req->session.backends[0] || strcmp(req->session.backends[0], backend_id) != 0) {
            free(req->session.backends[0]);
            req->session.backends[0] = backend_id;
            backend_id = NULL;
            mcp_session_update(req->session_id, &req->session, loop);
        }
    } else {
        char id[MCP_SESSION_ID_LEN + 1];
        /* What the client can do (prompts toolgate may show it) is kept with the session. */
        const struct mcp_message *init = req->rpc.n == 1 ? &req->rpc.msgs[0] : NULL;
        unsigned caps = init && init->method && strcmp(init->method, "initialize") == 0
                            ? mcp_client_caps_of(json_object_get(
                                  json_object_get(init->json, "params"), "capabilities"))
                            : 0;
        if (mcp_session_create_caps(req->identity.verified ? req->identity.issuer : "",
                                    req->identity.subject, req->route->name, 1, backend_id, caps,
                                    id, loop) == 0)
            gw_request_add_response_header(req, "Mcp-Session-Id", id);
        else
            gw_log(GW_LOG_ERROR, "session_create_failed", req->id, NULL,
                   "could not record a new session; the client gets none and must initialize "
                   "again");
    }
    free(backend_id);
}

static int relay_on_message(struct exchange *x, json_t *msg, int *modified)
{
    struct gw_request *req = x->req;
    if (bridge_legacy_applies(req))
        return bridge_legacy_on_message(x, msg, modified);
    if (bridge_applies(req))
        return bridge_on_message(x, msg, modified);
    /* 2026-07-28: the tools' x-mcp-header marks, so calls' headers are held to them. */
    const char *method = req->rpc.n ? req->rpc.msgs[0].method : NULL;
    if (!req->modern || !method || strcmp(method, "tools/list") != 0)
        return 0;
    json_t *tools = json_object_get(json_object_get(msg, "result"), "tools");
    if (json_is_array(tools) && param_marks_learn(req->route->name, tools) > 0)
        *modified = 1;
    return 0;
}

const struct gw_route_kind gw_relay_kind = {
    .name = "mcp",
    .claims = relay_claims,
    .prepare = relay_prepare,
    .forward = relay_forward,
    .on_head = relay_on_head,
    .on_message = relay_on_message,
    .streams = 1,
    .owns_session = 1,
    .modern = 1,
    .free_state = relay_free_state,
};
