/*
 * Revision 2026-07-28 on a federated route. There are no sessions: no backend is initialized
 * and the client gets no session of toolgate's. Each request goes where it would go in the
 * session era (a list page to the backend its cursor names, an action to the backend its
 * prefix names, without the prefix), carrying the client's envelope (_meta) as it came and the
 * mirrored headers made anew for what the backend receives: Mcp-Name is the backend's own name
 * or URI. server/discover is toolgate's own answer, made from every backend's (fed_merge.c);
 * subscriptions/listen is fanned out (fed_listen.c).
 */
#include "lib/log.h"
#include "mcp/jsonrpc.h"
#include "mcp/modern.h"
#include "routes/federation/fed-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A backend's discover answer is read up to this size; beyond it the backend is left out. */
#define FED_MAX_DISCOVER_ANSWER (64 * 1024)

static void discover_next(struct exchange *x);

static void discover_head(void *arg, int status, const struct gw_header *h, size_t n)
{
    struct exchange *x = arg;
    (void)h;
    (void)n;
    state(x)->status = status;
}

static int discover_data(void *arg, const char *data, size_t len)
{
    struct exchange *x = arg;
    struct fed_state *s = state(x);
    if (s->init_answer_over)
        return 0;
    if (s->init_answer.len + len > FED_MAX_DISCOVER_ANSWER ||
        gw_buf_append(&s->init_answer, data, len) != 0)
        s->init_answer_over = 1;
    return 0;
}

static void discover_done(void *arg, int err, const char *detail)
{
    struct exchange *x = arg;
    struct fed_state *s = state(x);
    const struct gw_backend *be = &x->req->route->backends[s->index];
    x->up = NULL;
    json_t *result =
        err == UPSTREAM_OK && s->status >= 200 && s->status < 300 && !s->init_answer_over
            ? sse_answer_result(s->init_answer.data, s->init_answer.len, FED_MAX_DISCOVER_ANSWER)
            : NULL;
    if (!result || fed_discover_add(&s->discover, result, be->prefix) != 0)
        gw_log(GW_LOG_WARN, "federation_discover_failed", x->req->id, NULL,
               "backend %s did not answer server/discover with a result (%s, HTTP %d); it is "
               "left out of the merged answer",
               be->name, err != UPSTREAM_OK && detail ? detail : "no usable result", s->status);
    json_decref(result);
    gw_buf_reset(&s->init_answer);
    s->init_answer_over = 0;
    s->status = 0;
    s->index++;
    discover_next(x);
}

static void discover_next(struct exchange *x)
{
    struct fed_state *s = state(x);
    const struct gw_route *route = x->req->route;
    if (s->index < route->n_backends) {
        static const struct upstream_callbacks cbs = {discover_head, discover_data, discover_done};
        fed_start(x, s->body, 0, &cbs);
        return;
    }
    if (s->discover.instructions_dropped)
        gw_log(GW_LOG_INFO, "federation_instructions_dropped", x->req->id, NULL,
               "the instructions of %zu backends were left out of the discover answer: "
               "together they exceed %d bytes",
               s->discover.instructions_dropped, FED_MAX_INSTRUCTIONS);
    json_t *result = fed_discover_result(&s->discover, TOOLGATE_VERSION);
    if (!result) {
        answer_error(x, 502, JSONRPC_INTERNAL_ERROR,
                     "No backend of this endpoint answered server/discover", "federation.discover");
        return;
    }
    answer_result(x, result, NULL, 0);
}

/*
 * server/discover: every backend is asked in turn with the client's own request (its
 * envelope as sent), and toolgate answers with the results merged (federation.h).
 */
static void discover(struct exchange *x, const struct mcp_message *m)
{
    struct fed_state *s = state(x);
    fed_discover_init(&s->discover);
    s->discovering = 1;
    s->index = 0;
    if (!(s->body = json_dumps(m->json, JSON_COMPACT))) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    discover_next(x);
}

/* A list page's request for its backend: the client's, with that backend's own cursor. */
static json_t *page_for_backend(const struct mcp_message *m, const char *cursor)
{
    json_t *out = json_deep_copy(m->json);
    json_t *params = json_object_get(out, "params");
    if (!out || !json_is_object(params)) {
        json_decref(out);
        return NULL;
    }
    if (cursor)
        json_object_set_new(params, "cursor", json_string(cursor));
    else
        json_object_del(params, "cursor");
    return out;
}

void fed_modern_forward(struct exchange *x, const struct mcp_message *m)
{
    struct gw_request *req = x->req;
    struct fed_state *s = state(x);
    if (!m || m->kind != MCP_REQUEST) {
        answer_empty(x, 202); /* nothing of the client's is a backend's to hear */
        return;
    }
    s->up_method = m->method;
    if (strcmp(m->method, "server/discover") == 0) {
        discover(x, m);
        return;
    }
    if (strcmp(m->method, "subscriptions/listen") == 0) {
        fed_listen(x, m);
        return;
    }
    json_t *out = NULL;
    if (s->list != FED_LIST_NONE) {
        out = page_for_backend(m, s->cursor);
    } else if (m->spec && m->spec->cls == MCP_CLASS_ACTION) {
        const char *rest = NULL;
        if (!fed_action_backend(req->route, m, &rest)) {
            fed_answer_unknown(x, m);
            return;
        }
        out = fed_action_for_backend(m, rest);
        /* Mcp-Name says what the body says: the backend's own name or URI. */
        int named = mcp_method_has_name(m->method);
        if (named && mcp_header_value_encode(rest, strlen(rest), &s->up_name) != 0) {
            json_decref(out);
            out = NULL;
        }
        s->up_params = strcmp(m->method, "tools/call") == 0;
    } else {
        answer_error(x, 404, JSONRPC_METHOD_NOT_FOUND,
                     "Method not found: a federated endpoint offers tools, prompts, resources, "
                     "completions, server/discover and subscriptions/listen",
                     "federation.method");
        return;
    }
    s->body = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    if (!s->body) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    fed_call(x);
}
