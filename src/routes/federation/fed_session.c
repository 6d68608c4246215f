/*
 * Backend sessions of a federated route: the client's initialize opens one with every
 * backend in turn and merges their capabilities; a request for a backend whose session is not
 * open yet opens it first (initialize, then notifications/initialized); DELETE closes them.
 */
#include "lib/log.h"
#include "mcp/jsonrpc.h"
#include "routes/federation/fed-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A backend's initialize answer is read up to this size (its capabilities); beyond: none. */
#define FED_MAX_INIT_ANSWER (64 * 1024)
/* The client's capabilities passed on to the backends are at most this long (JSON). */
#define FED_MAX_CLIENT_CAPS (16 * 1024)

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

/* The backend's initialize result, or NULL. */
static json_t *init_result(struct fed_state *s)
{
    if (s->init_answer_over)
        return NULL;
    return sse_answer_result(s->init_answer.data, s->init_answer.len, FED_MAX_INIT_ANSWER);
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
            fed_merge_capabilities(s->caps, json_object_get(result, "capabilities"));
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

int fed_start_backend_init(struct exchange *x)
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

void fed_call(struct exchange *x)
{
    struct fed_state *s = state(x);
    s->step = FED_CALL;
    fed_start(x, s->body, 1, NULL);
}

void fed_close_backends(struct exchange *x, char **sids, size_t n)
{
    const struct gw_route *route = x->req->route;
    static const struct upstream_callbacks cbs = {fed_ignore_head, fed_ignore_data,
                                                  fed_ignore_done};
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
            fed_start_other(x, be, GW_HTTP_DELETE, NULL, &h, 1, &cbs, NULL);
        }
    }
}

/* The protocol revisions a federated route speaks with its clients, newest first. */
static const char *const fed_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26", NULL};

void fed_initialize(struct exchange *x, const struct mcp_message *m)
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
        fed_start_backend_init(x);
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
    const struct mcp_message *init = req->rpc.n == 1 ? &req->rpc.msgs[0] : NULL;
    unsigned caps = init ? mcp_client_caps_of(json_object_get(json_object_get(init->json, "params"),
                                                              "capabilities"))
                         : 0;
    if (!req->identity.subject ||
        mcp_session_create_caps(issuer, req->identity.subject, req->route->name, n, s->sids[0],
                                caps, sid, loop) != 0) {
        fed_close_backends(x, s->sids, n);
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "The session could not be recorded",
                     "internal.session");
        return;
    }
    struct mcp_session rec = {.n_backends = n, .client_caps = caps};
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
    json_t *result = json_pack("{s:s, s:O, s:{s:s, s:s}, s:s}", "protocolVersion", s->version,
                               "capabilities", s->caps, "serverInfo", "name", "toolgate", "version",
                               TOOLGATE_VERSION, "instructions", FED_INSTRUCTIONS);
    s->opening_all = 0;
    s->list = FED_LIST_NONE;
    /* The header value must outlive answer_result: it is copied into the held answer there. */
    struct gw_header h = {GW_SLICE_LIT("Mcp-Session-Id"), {sid, strlen(sid)}};
    answer_result(x, result, &h, 1);
}
