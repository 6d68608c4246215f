/*
 * The federation route kind: an MCP route with several backends. toolgate owns the client's
 * session (it answers initialize, ping, notifications and DELETE itself, opening a session
 * with every backend when the client initializes, so that its capabilities are the backends'
 * merged), and sends the lists and the governed actions (tools, prompts, resources,
 * completions) to the backend they concern, opening that backend's session first when it is
 * not open yet (initialize, then notifications/initialized). See federation.h for prefixes,
 * URI prefixes and cursors.
 */
#include "core/exchange.h"
#include "lib/jwt.h"
#include "lib/log.h"
#include "lib/timeutil.h"
#include "mcp/jsonrpc.h"
#include "mcp/session.h"
#include "routes/federation/federation.h"
#include "routes/federation/fed_route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The protocol revision toolgate speaks with the backends of a federated route. */
#define FED_BACKEND_PROTOCOL "2025-06-18"

enum { FED_INIT = 1, FED_INITIALIZED, FED_CALL };

/* A backend's initialize answer is read up to this size (its capabilities); beyond: none. */
#define FED_MAX_INIT_ANSWER (64 * 1024)
/* The client's capabilities passed on to the backends are at most this long (JSON). */
#define FED_MAX_CLIENT_CAPS (16 * 1024)

struct fed_state {
    enum fed_list list; /* the answer is a backend's page of this list, to rewrite */
    size_t index;       /* the backend this exchange talks to now */
    char *cursor;       /* that backend's cursor for the list */
    char *body;         /* the request as the backend gets it */
    char *backend_sid;  /* the backend's session id */
    int step;           /* FED_INIT, FED_INITIALIZED, FED_CALL */
    int status;         /* status of an initialisation step */
    struct gw_buf scratch;

    /* The client's initialize: every backend's session opened in turn, capabilities merged. */
    int opening_all;
    const char *version; /* the revision answered to the client */
    char *client_caps;   /* what the client offers the backends (roots, sampling, elicitation) */
    struct gw_buf init_answer;
    int init_answer_over; /* the answer exceeded FED_MAX_INIT_ANSWER */
    json_t *caps;         /* merged capabilities */
    char *sids[MCP_SESSION_MAX_BACKENDS];

    /* logging/setLevel: sent to every open backend session in turn. */
    int broadcasting;

    /* A GET: one server stream per backend, merged into the client's. */
    struct fed_stream *streams;
    size_t n_streams;
    size_t live_streams;
    int head_written;
};

/* One backend's server stream of a client's GET. */
struct fed_stream {
    struct exchange *x;
    size_t index;
    struct upstream_call *call;
    struct sse_parser sse;
    int status;
    int is_sse;
    int paused;
};

static void state_free(void *p)
{
    struct fed_state *s = p;
    free(s->cursor);
    free(s->body);
    free(s->backend_sid);
    free(s->client_caps);
    gw_buf_free(&s->scratch);
    gw_buf_free(&s->init_answer);
    json_decref(s->caps);
    for (size_t i = 0; i < MCP_SESSION_MAX_BACKENDS; i++)
        free(s->sids[i]);
    for (size_t i = 0; i < s->n_streams; i++) {
        upstream_cancel(s->streams[i].call);
        sse_parser_free(&s->streams[i].sse);
    }
    free(s->streams);
    free(s);
}

static struct fed_state *state(struct exchange *x)
{
    return x->kind_state;
}

static uint64_t now_ms(void)
{
    return gw_mono_ns() / 1000000ull;
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
static const struct gw_backend *action_backend(const struct gw_route *route,
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
        const struct gw_backend *be = action_backend(route, m, NULL);
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
    if (s->opening_all)
        return 0; /* toolgate's own initialize result */
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
                       : fed_empty_page(msg, route, s->index, s->list) == 0)
                *modified = 1;
            else if (result)
                return -1; /* a page that cannot be federated is not passed on unfiltered */
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

/* Headers of a backend call of a federated route. */
static size_t fed_headers(struct exchange *x, struct gw_header *hdrs, int with_session)
{
    struct fed_state *s = state(x);
    size_t n = 0;
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

/*
 * Whether an identity header the layers injected for the backend routing vetted may go to
 * backend `be` too. A token minted for the vetted backend's own URL (inject: jwt without an
 * audience) is that backend's alone: another backend could replay it there, so it is not
 * sent elsewhere (that backend is then reached without an identity, and is opened by a
 * request of its own, for which routing mints its token). Headers, and tokens of a
 * route-wide audience, go to every backend. A token that cannot be read is not sent.
 */
static int injected_for(const struct gw_request *req, const struct gw_backend *be,
                        const struct gw_header *h)
{
    if (be == req->backend || !gw_slice_casecmp_eq(h->name, "Authorization"))
        return 1;
    const char *v = h->value.ptr;
    size_t n = h->value.len;
    if (n < 7 || strncasecmp(v, "Bearer ", 7) != 0)
        return 0;
    const char *dot1 = memchr(v + 7, '.', n - 7);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t)(v + n - dot1 - 1)) : NULL;
    unsigned char payload[4096];
    long len =
        dot2 ? jwt_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), payload, sizeof payload) : -1;
    json_t *claims = len > 0 ? json_loadb((const char *)payload, (size_t)len, 0, NULL) : NULL;
    json_t *aud = json_object_get(claims, "aud");
    const char *own[] = {req->backend->url, req->upstream_url};
    int ok = json_is_string(aud) || json_is_array(aud);
    for (size_t k = 0; ok && k < 2; k++) {
        if (!own[k])
            continue;
        size_t i;
        json_t *a;
        if (json_is_string(aud) && strcmp(json_string_value(aud), own[k]) == 0)
            ok = 0;
        json_array_foreach(json_is_array(aud) ? aud : NULL, i,
                           a) if (json_is_string(a) && strcmp(json_string_value(a), own[k]) == 0)
            ok = 0;
    }
    json_decref(claims);
    return ok;
}

/*
 * Starts a call to a backend other than the one routing vetted (resolved afresh, with only
 * the injected identity that may go there): the headers given, X-Request-Id, the identity.
 * `arg` is the exchange (the call becomes x->up, under the backend's first-byte timeout) or
 * the caller's own (it keeps the call). NULL when it cannot start.
 */
static struct upstream_call *start_other(struct exchange *x, const struct gw_backend *be,
                                         enum gw_http_method method, const char *body,
                                         const struct gw_header *extra, size_t n_extra,
                                         const struct upstream_callbacks *cbs, void *arg)
{
    struct gw_request *req = x->req;
    struct gw_header hdrs[8 + GW_MAX_UPSTREAM_HEADERS];
    size_t k = 0;
    for (size_t i = 0; i < n_extra && k < 8; i++)
        hdrs[k++] = extra[i];
    hdrs[k++] = (struct gw_header){GW_SLICE_LIT("X-Request-Id"), {req->id, strlen(req->id)}};
    for (size_t i = 0; i < req->n_upstream_headers; i++)
        if (injected_for(req, be, &req->upstream_headers[i]))
            hdrs[k++] = req->upstream_headers[i];
    int vetted = be == req->backend;
    struct upstream_request ur = {
        .url = vetted && req->upstream_url ? req->upstream_url : be->url,
        .method = method,
        .body = {body ? body : "", body ? strlen(body) : 0},
        .headers = hdrs,
        .n_headers = k,
        .connect_timeout_ms = be->timeouts.connect_ms,
        .pin = vetted ? req->upstream_pin : NULL,
    };
    struct upstream_call *call = upstream_start(gw_worker_upstream(x->w), &ur, cbs, arg);
    if (call && arg == x) {
        x->up = call;
        exchange_arm_timer(x, be->timeouts.first_byte_ms);
    }
    return call;
}

/*
 * Starts a call to the backend the exchange talks to now (s->index); `body` must stay valid
 * until the call has ended. The backend routing vetted goes through the core's builder
 * (pinned to the vetted address); another is resolved afresh (start_other).
 */
static int fed_start(struct exchange *x, const char *body, int with_session,
                     const struct upstream_callbacks *cbs)
{
    struct fed_state *s = state(x);
    struct gw_header hdrs[4];
    const struct gw_backend *be = &x->req->route->backends[s->index];
    size_t n = fed_headers(x, hdrs, with_session);
    if (be != x->req->backend && cbs) {
        if (start_other(x, be, GW_HTTP_POST, body, hdrs, n, cbs, x))
            return 0;
        answer_error(x, 502, JSONRPC_INTERNAL_ERROR, "Cannot start the backend request",
                     "upstream.start");
        return -1;
    }
    struct relay_request r = {
        .method = GW_HTTP_POST,
        .body = {body, strlen(body)},
        .extra = hdrs,
        .n_extra = n,
        .backend = be,
        .cbs = cbs,
    };
    return relay_start(x, &r);
}

static void fed_call(struct exchange *x);
static void open_next(struct exchange *x);
static void finish_initialize(struct exchange *x);

/* The steps that open a backend session: initialize, then notifications/initialized. */
static void fed_init_head(void *arg, int status, const struct gw_header *headers, size_t n)
{
    struct exchange *x = arg;
    struct fed_state *s = state(x);
    s->status = status;
    for (size_t i = 0; s->step == FED_INIT && i < n; i++) {
        if (!gw_slice_casecmp_eq(headers[i].name, "Mcp-Session-Id"))
            continue;
        if (headers[i].value.len > 0 && headers[i].value.len <= MCP_SESSION_MAX_BACKEND_ID) {
            free(s->backend_sid);
            s->backend_sid = gw_slice_dup(headers[i].value);
        }
        break;
    }
}

/* The initialize answer is kept (bounded) for the backend's capabilities. */
static int fed_init_data(void *arg, const char *data, size_t len)
{
    struct exchange *x = arg;
    struct fed_state *s = state(x);
    if (s->step != FED_INIT || !s->opening_all || s->init_answer_over)
        return 0;
    if (s->init_answer.len + len > FED_MAX_INIT_ANSWER ||
        gw_buf_append(&s->init_answer, data, len) != 0)
        s->init_answer_over = 1;
    return 0;
}

static int ignore_data(void *arg, const char *data, size_t len)
{
    (void)arg;
    (void)data;
    (void)len;
    return 0;
}

/* The first SSE event of an answer whose data is a response: its message. */
static int first_response(void *arg, const struct sse_event *ev)
{
    json_t **out = arg;
    json_t *msg = NULL;
    if (!ev->has_data || mcp_parse_message(ev->data.ptr, ev->data.len, 64, &msg) != 0)
        return 0;
    if (json_object_get(msg, "result") && !json_object_get(msg, "method")) {
        *out = msg;
        return 1;
    }
    json_decref(msg);
    return 0;
}

/* The backend's initialize result (JSON or one SSE event), or NULL. */
static json_t *init_result(struct fed_state *s)
{
    const char *p = s->init_answer.data;
    size_t n = s->init_answer.len;
    json_t *msg = NULL;
    if (s->init_answer_over || n == 0)
        return NULL;
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    if (i < n && p[i] == '{') {
        if (mcp_parse_message(p, n, 64, &msg) != 0)
            return NULL;
    } else {
        struct sse_parser sp;
        sse_parser_init(&sp, FED_MAX_INIT_ANSWER);
        sse_feed(&sp, p, n, first_response, &msg);
        sse_parser_free(&sp);
    }
    json_t *result = json_incref(json_object_get(msg, "result"));
    json_decref(msg);
    return result;
}

static void merge_flag(json_t *into, const json_t *from, const char *flag)
{
    if (json_is_true(json_object_get(from, flag)))
        json_object_set_new(into, flag, json_true());
    else if (!json_object_get(into, flag))
        json_object_set_new(into, flag, json_false());
}

/*
 * Adds a backend's capabilities to the merged ones: a capability any backend offers is
 * offered, and a flag of it (listChanged, subscribe) is true when any backend's is. Only
 * what toolgate federates is merged (tools, resources, prompts, completions, logging);
 * anything else a backend declares is left out.
 */
static void merge_capabilities(json_t *merged, const json_t *caps)
{
    static const struct {
        const char *name;
        const char *flags[2];
    } known[] = {
        {"tools", {"listChanged", NULL}},   {"resources", {"subscribe", "listChanged"}},
        {"prompts", {"listChanged", NULL}}, {"completions", {NULL, NULL}},
        {"logging", {NULL, NULL}},
    };
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        const json_t *c = json_object_get(caps, known[k].name);
        if (!json_is_object(c))
            continue;
        json_t *m = json_object_get(merged, known[k].name);
        if (!m) {
            m = json_object();
            json_object_set_new(merged, known[k].name, m);
        }
        for (size_t f = 0; m && f < 2 && known[k].flags[f]; f++)
            merge_flag(m, c, known[k].flags[f]);
    }
}

static void fed_init_done(void *arg, int err, const char *detail)
{
    struct exchange *x = arg;
    struct fed_state *s = state(x);
    struct gw_request *req = x->req;
    const struct gw_backend *be = &req->route->backends[s->index];
    x->up = NULL;
    if (err != UPSTREAM_OK || s->status < 200 || s->status >= 300) {
        gw_log(GW_LOG_WARN, "federation_init_failed", req->id, NULL,
               "opening a session with backend %s failed: %s (HTTP %d)", be->name,
               err ? detail : "refused", s->status);
        if (s->opening_all) {
            /* Left out for now; the first request that needs it opens it. */
            free(s->backend_sid);
            s->backend_sid = NULL;
            s->index++;
            open_next(x);
            return;
        }
        answer_error(x, 502, JSONRPC_INTERNAL_ERROR, "The backend is unavailable",
                     "upstream.session");
        return;
    }
    static const struct upstream_callbacks cbs = {fed_init_head, fed_init_data, fed_init_done};
    if (s->step == FED_INIT) {
        if (s->opening_all) {
            json_t *result = init_result(s);
            merge_capabilities(s->caps, json_object_get(result, "capabilities"));
            json_decref(result);
            gw_buf_reset(&s->init_answer);
            s->init_answer_over = 0;
            if (s->backend_sid && !(s->sids[s->index] = strdup(s->backend_sid)))
                gw_log(GW_LOG_WARN, "federation_init_failed", req->id, NULL,
                       "out of memory recording the session of backend %s", be->name);
        } else if (s->backend_sid && req->session_valid && s->index < req->session.n_backends) {
            free(req->session.backends[s->index]);
            req->session.backends[s->index] = strdup(s->backend_sid);
            mcp_session_update(req->session_id, &req->session, gw_request_loop(req));
        }
        s->step = FED_INITIALIZED;
        fed_start(x, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", 1, &cbs);
        return;
    }
    if (s->opening_all) {
        free(s->backend_sid);
        s->backend_sid = NULL;
        s->index++;
        open_next(x);
        return;
    }
    fed_call(x);
}

/* The initialize request toolgate sends a backend (kept in s->scratch while it is sent). */
static int start_backend_init(struct exchange *x)
{
    struct fed_state *s = state(x);
    s->step = FED_INIT;
    gw_buf_reset(&s->scratch);
    if (gw_buf_printf(&s->scratch,
                      "{\"jsonrpc\":\"2.0\",\"id\":\"toolgate-init\",\"method\":\"initialize\","
                      "\"params\":{\"protocolVersion\":\"%s\",\"capabilities\":%s,"
                      "\"clientInfo\":{\"name\":\"toolgate\",\"version\":\"%s\"}}}",
                      FED_BACKEND_PROTOCOL, s->client_caps ? s->client_caps : "{}",
                      TOOLGATE_VERSION) != 0) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return -1;
    }
    static const struct upstream_callbacks cbs = {fed_init_head, fed_init_data, fed_init_done};
    return fed_start(x, s->scratch.data, 0, &cbs);
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
    static const struct upstream_callbacks cbs = {ignore_head, ignore_data, ignore_done};
    for (size_t i = 0; i < n && i < route->n_backends; i++) {
        if (!sids[i])
            continue;
        struct gw_header h = {GW_SLICE_LIT("Mcp-Session-Id"), {sids[i], strlen(sids[i])}};
        const struct gw_backend *be = &route->backends[i];
        /* Never the vetted address: a detached call may outlive what routing chose. */
        if (be == x->req->backend) {
            struct relay_request r = {
                .method = GW_HTTP_DELETE,
                .backend = be,
                .no_pin = 1,
                .extra = &h,
                .n_extra = 1,
                .cbs = &cbs,
                .detached = 1,
            };
            relay_start(x, &r);
        } else {
            start_other(x, be, GW_HTTP_DELETE, NULL, &h, 1, &cbs, NULL);
        }
    }
}

/* The protocol revisions a federated route speaks with its clients, newest first. */
static const char *const fed_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26", NULL};

/*
 * The client's initialize: toolgate opens a session with every backend in turn (so that it
 * can answer with their capabilities merged), then records the client's session, standing
 * for them, and answers. A backend that cannot be reached now is left out of the
 * capabilities and opened later by the first request that needs it.
 */
static void fed_initialize(struct exchange *x, const struct mcp_message *m)
{
    struct fed_state *s = state(x);
    const char *asked =
        json_string_value(json_object_get(json_object_get(m->json, "params"), "protocolVersion"));
    s->version = fed_versions[0];
    for (const char *const *v = fed_versions; asked && *v; v++)
        if (strcmp(asked, *v) == 0)
            s->version = *v;
    /*
     * What the client offers servers, the backends are offered in turn (their requests reach
     * it through toolgate): roots, sampling and elicitation, as the client declared them.
     */
    const json_t *offered = json_object_get(json_object_get(m->json, "params"), "capabilities");
    json_t *caps = json_object();
    static const char *const passed[] = {"roots", "sampling", "elicitation"};
    for (size_t i = 0; caps && i < sizeof passed / sizeof passed[0]; i++) {
        const json_t *c = json_object_get(offered, passed[i]);
        if (json_is_object(c))
            json_object_set_new(caps, passed[i], json_deep_copy(c));
    }
    s->client_caps = caps ? json_dumps(caps, JSON_COMPACT) : NULL;
    json_decref(caps);
    if (s->client_caps && strlen(s->client_caps) > FED_MAX_CLIENT_CAPS) {
        free(s->client_caps); /* more than any client declares: offered nothing */
        s->client_caps = strdup("{}");
    }
    s->caps = json_pack("{s:{}}", "tools");
    if (!s->caps || !s->client_caps) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    s->opening_all = 1;
    s->index = 0;
    open_next(x);
}

static void open_next(struct exchange *x)
{
    struct fed_state *s = state(x);
    if (s->index < x->req->route->n_backends && s->index < MCP_SESSION_MAX_BACKENDS) {
        start_backend_init(x);
        return;
    }
    finish_initialize(x);
}

static void finish_initialize(struct exchange *x)
{
    struct gw_request *req = x->req;
    struct fed_state *s = state(x);
    size_t n = req->route->n_backends;
    char sid[MCP_SESSION_ID_LEN + 1];
    const char *issuer = req->identity.verified ? req->identity.issuer : "";
    void *loop = gw_request_loop(req);
    if (!req->identity.subject ||
        mcp_session_create(issuer, req->identity.subject, req->route->name, n, s->sids[0], sid,
                           loop) != 0) {
        fed_close_backends(x, s->sids, n);
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "The session could not be recorded",
                     "internal.session");
        return;
    }
    struct mcp_session rec = {.n_backends = n};
    int others = 0;
    mcp_session_owner(issuer, req->identity.subject, rec.owner);
    snprintf(rec.route, sizeof rec.route, "%s", req->route->name);
    for (size_t i = 0; i < n && i < MCP_SESSION_MAX_BACKENDS; i++) {
        rec.backends[i] = s->sids[i]; /* borrowed: the record is encoded, not kept */
        others |= i > 0 && s->sids[i];
    }
    if (others && mcp_session_update(sid, &rec, loop) != 0)
        gw_log(GW_LOG_WARN, "federation_session_update_failed", req->id, NULL,
               "could not record the backends' sessions; they are opened again when needed");
    json_t *result = json_pack(
        "{s:s, s:O, s:{s:s, s:s}, s:s}", "protocolVersion", s->version, "capabilities", s->caps,
        "serverInfo", "name", "toolgate", "version", TOOLGATE_VERSION, "instructions",
        "Tools, prompts and resources of several services, each named with its service's "
        "prefix (service.tool; resource URIs start with the prefix before their scheme).");
    s->opening_all = 0;
    s->list = FED_LIST_NONE;
    /* The header value must outlive answer_result: it is copied into the held answer there. */
    struct gw_header h = {GW_SLICE_LIT("Mcp-Session-Id"), {sid, strlen(sid)}};
    answer_result(x, result, &h, 1);
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
    static const struct upstream_callbacks cbs = {ignore_head, ignore_data, broadcast_done};
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

/* Answers a target no backend's prefix names as one that does not exist. */
static void answer_unknown(struct exchange *x, const struct mcp_message *m)
{
    char msg[180];
    const char *t = m->target ? m->target : "";
    if (m->target_kind == MCP_TARGET_RESOURCE) {
        snprintf(msg, sizeof msg, "Resource not found: %.120s", t);
        answer_error(x, 200, -32002, msg, "federation.unknown_resource");
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
static json_t *action_for_backend(const struct mcp_message *m, const char *rest)
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

/* ---- the client's answers to backends' requests ---- */

static void answered_done(void *arg, int err, const char *detail)
{
    struct exchange *x = arg;
    x->up = NULL;
    if (err != UPSTREAM_OK)
        gw_log(GW_LOG_WARN, "federation_answer_lost", x->req->id, NULL,
               "the client's answer did not reach backend %s: %s", x->req->backend->name,
               detail ? detail : "");
    answer_empty(x, 202);
}

/*
 * A client's answer (result or error) to a request a backend sent it: it goes to the backend
 * that asked, in that backend's session, with the backend's own id. An answer under an id
 * toolgate did not issue in this session (or already answered) is dropped: the client gets
 * 202 all the same, and no backend sees it.
 */
static void fed_answer_backend(struct exchange *x, const struct mcp_message *m)
{
    struct gw_request *req = x->req;
    struct fed_state *s = state(x);
    size_t idx = 0;
    json_t *backend_id = NULL;
    if (!req->session_valid ||
        fed_pending_take(req->session_id, json_string_value(m->id), now_ms(), &idx, &backend_id) !=
            0 ||
        idx >= req->route->n_backends || idx >= req->session.n_backends ||
        !req->session.backends[idx]) {
        json_decref(backend_id);
        gw_log(GW_LOG_WARN, "federation_unknown_answer", req->id, NULL,
               "dropped a client's answer to a request toolgate did not send it in this session");
        answer_empty(x, 202);
        return;
    }
    json_t *out = json_deep_copy(m->json);
    if (out)
        json_object_set_new(out, "id", backend_id);
    else
        json_decref(backend_id);
    s->index = idx;
    s->body = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    s->backend_sid = s->body ? strdup(req->session.backends[idx]) : NULL;
    if (!s->backend_sid) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    static const struct upstream_callbacks cbs = {ignore_head, ignore_data, answered_done};
    fed_start(x, s->body, 1, &cbs);
}

/* ---- the server stream: a GET merged from every backend's ---- */

/* The exchange ends: every backend's stream with it. */
static void fed_on_finish(struct exchange *x)
{
    struct fed_state *s = state(x);
    for (size_t i = 0; s && i < s->n_streams; i++) {
        upstream_cancel(s->streams[i].call);
        s->streams[i].call = NULL;
    }
}

static void streams_ended(struct exchange *x)
{
    struct fed_state *s = state(x);
    if (s->live_streams > 0 || x->finished)
        return;
    if (s->head_written) {
        exchange_finish(x, 0);
        return;
    }
    answer_error(x, 405, JSONRPC_INVALID_REQUEST, "No backend offers a server stream (GET)",
                 "federation.no_server_stream");
}

static void stream_end(struct fed_stream *st)
{
    struct fed_state *s = state(st->x);
    if (st->call) {
        upstream_cancel(st->call);
        st->call = NULL;
    }
    if (s->live_streams > 0)
        s->live_streams--;
}

/* The client's stream head, once the first backend's stream is open. */
static int write_client_head(struct exchange *x)
{
    struct gw_request *req = x->req;
    struct fed_state *s = state(x);
    if (s->head_written)
        return 0;
    s->head_written = 1;
    x->n_out = 0;
    x->out_headers[x->n_out++] =
        (struct gw_header){GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("text/event-stream")};
    x->out_headers[x->n_out++] =
        (struct gw_header){GW_SLICE_LIT("Cache-Control"), GW_SLICE_LIT("no-cache")};
    x->out_headers[x->n_out++] =
        (struct gw_header){GW_SLICE_LIT("X-Request-Id"), {req->id, strlen(req->id)}};
    for (size_t i = 0; i < req->n_response_headers && x->n_out < EXCHANGE_MAX_OUT_HEADERS; i++)
        x->out_headers[x->n_out++] = req->response_headers[i];
    x->mode = RELAY_SSE;
    req->response_status = 200;
    req->upstream_status = 200;
    return x->conn ? gw_conn_write_head(x->conn, 200, x->out_headers, x->n_out, -1) : -1;
}

static void stream_head(void *arg, int status, const struct gw_header *headers, size_t n)
{
    struct fed_stream *st = arg;
    struct exchange *x = st->x;
    if (x->finished)
        return;
    st->status = status;
    for (size_t i = 0; i < n; i++)
        if (gw_slice_casecmp_eq(headers[i].name, "Content-Type"))
            st->is_sse = headers[i].value.len >= 17 &&
                         strncasecmp(headers[i].value.ptr, "text/event-stream", 17) == 0;
    if (status == 200 && st->is_sse && write_client_head(x) != 0)
        exchange_finish(x, 1);
    else
        exchange_arm_timer(x, exchange_timeouts(x)->idle_ms);
}

/*
 * One event of a backend's stream. Only messages go on, each a request or a notification
 * (a server stream carries no answers), through the kind's rewriting and the layers' response
 * hooks like any message of the backend's, re-encoded without an event id: the merged stream
 * cannot be resumed (Last-Event-ID names one backend's event), and a client that reconnects
 * gets a new one. Event types other than "message", priming events and comments are dropped.
 */
static int stream_event(void *arg, const struct sse_event *ev)
{
    struct fed_stream *st = arg;
    struct exchange *x = st->x;
    struct fed_state *s = state(x);
    struct gw_request *req = x->req;
    if ((ev->event.len > 0 && !gw_slice_eq(ev->event, "message")) || !ev->has_data ||
        ev->data.len == 0)
        return 0;
    json_t *msg = NULL;
    if (mcp_parse_message(ev->data.ptr, ev->data.len, req->cfg->server.limits.max_json_depth,
                          &msg) != 0 ||
        !json_is_object(msg) || !json_is_string(json_object_get(msg, "method"))) {
        gw_log(GW_LOG_WARN, "upstream_bad_event", req->id, NULL,
               "dropped an event of backend %s's server stream that is not a request or a "
               "notification",
               req->route->backends[st->index].name);
        json_decref(msg);
        return 0;
    }
    int modified = 0;
    s->index = st->index;
    s->list = FED_LIST_NONE;
    msg = relay_hooks(x, msg, &modified, NULL);
    if (!msg || !json_object_get(msg, "method")) {
        json_decref(msg); /* dropped, or denied: nothing for the client */
        return 0;
    }
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    struct gw_buf out = {0};
    int rc = 0;
    if (!text || sse_encode(&out, GW_SLICE_LIT(""), GW_SLICE_LIT(""), 0, -1,
                            (struct gw_slice){text, strlen(text)}) != 0)
        rc = 1;
    else if (!x->conn || gw_conn_write_body(x->conn, out.data, out.len) != 0)
        rc = 1;
    else
        req->response_bytes += out.len;
    free(text);
    gw_buf_free(&out);
    return rc;
}

static void streams_drained(void *arg)
{
    struct exchange *x = arg;
    struct fed_state *s = state(x);
    for (size_t i = 0; i < s->n_streams; i++)
        if (s->streams[i].paused && s->streams[i].call) {
            s->streams[i].paused = 0;
            upstream_resume(s->streams[i].call);
        }
}

static int stream_data(void *arg, const char *data, size_t len)
{
    struct fed_stream *st = arg;
    struct exchange *x = st->x;
    if (x->finished || !x->conn || st->status != 200 || !st->is_sse)
        return 0;
    if (gw_conn_queued(x->conn) > x->req->cfg->server.limits.write_buffer) {
        /* The client is slow: this backend waits until it catches up. */
        st->paused = 1;
        gw_conn_on_drain(x->conn, streams_drained, x);
        return 1;
    }
    exchange_arm_timer(x, exchange_timeouts(x)->idle_ms);
    int rc = sse_feed(&st->sse, data, len, stream_event, st);
    if (rc == SSE_TOO_LARGE) {
        gw_log(GW_LOG_WARN, "upstream_event_too_large", x->req->id, NULL,
               "an event of backend %s's server stream exceeded server.limits.max_sse_event; "
               "that backend's stream ends",
               x->req->route->backends[st->index].name);
        stream_end(st);
        streams_ended(x);
    } else if (rc != 0) {
        exchange_finish(x, 1);
    }
    return 0;
}

static void stream_done(void *arg, int err, const char *detail)
{
    struct fed_stream *st = arg;
    struct exchange *x = st->x;
    st->call = NULL;
    if (x->finished)
        return;
    if (err != UPSTREAM_OK || st->status != 200 || !st->is_sse)
        gw_log(GW_LOG_INFO, "federation_stream_ended", x->req->id, NULL,
               "backend %s's server stream ended or was not offered: %s (HTTP %d)",
               x->req->route->backends[st->index].name, err ? detail : "", st->status);
    stream_end(st);
    streams_ended(x);
}

/*
 * A client's GET: a server stream opened with every backend whose session this client
 * session has (in that session, with the identity the layers injected), their messages
 * merged into the client's one stream. The client's stream opens with the first backend's;
 * it ends when every backend's has, the client leaves, or it stays idle longer than the
 * backends' idle timeout. When no backend offers one, the answer is 405.
 */
static void fed_open_streams(struct exchange *x)
{
    struct gw_request *req = x->req;
    struct fed_state *s = state(x);
    const struct gw_route *route = req->route;
    if (!req->session_valid) {
        answer_error(x, req->session_id ? 404 : 400, JSONRPC_INVALID_REQUEST,
                     req->session_id ? "Session not found" : "Mcp-Session-Id header is required",
                     "federation.no_session");
        return;
    }
    size_t n =
        route->n_backends < req->session.n_backends ? route->n_backends : req->session.n_backends;
    s->streams = calloc(n ? n : 1, sizeof *s->streams);
    if (!s->streams) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    static const struct upstream_callbacks cbs = {stream_head, stream_data, stream_done};
    for (size_t i = 0; i < n; i++) {
        const char *sid = req->session.backends[i];
        if (!sid)
            continue; /* never opened (it was unreachable): nothing to listen to */
        struct fed_stream *st = &s->streams[s->n_streams++];
        const struct gw_backend *be = &route->backends[i];
        st->x = x;
        st->index = i;
        sse_parser_init(&st->sse, req->cfg->server.limits.max_sse_event);
        struct gw_header h[3] = {
            {GW_SLICE_LIT("Accept"), GW_SLICE_LIT("text/event-stream")},
            {GW_SLICE_LIT("MCP-Protocol-Version"), GW_SLICE_LIT(FED_BACKEND_PROTOCOL)},
            {GW_SLICE_LIT("Mcp-Session-Id"), {sid, strlen(sid)}},
        };
        st->call = start_other(x, be, GW_HTTP_GET, NULL, h, 3, &cbs, st);
        if (st->call)
            s->live_streams++;
    }
    if (s->live_streams == 0) {
        answer_error(x, 405, JSONRPC_INVALID_REQUEST, "No backend offers a server stream (GET)",
                     "federation.no_server_stream");
        return;
    }
    exchange_arm_timer(x, exchange_timeouts(x)->first_byte_ms);
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
        if (!action_backend(req->route, m, &rest)) {
            answer_unknown(x, m);
            return;
        }
        out = action_for_backend(m, rest);
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
    start_backend_init(x);
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
    .on_finish = fed_on_finish,
    .free_state = state_free,
};
