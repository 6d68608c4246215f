/*
 * bridge_legacy: session-era clients in front of a 2026-07-28 backend
 * (routes[].backends[].protocol: 2026-07-28). The other half of core/bridge.c.
 *
 * toolgate owns the client-facing session: initialize is answered from the backend's
 * server/discover (asked with the client's capabilities and info), and the session toolgate
 * issues remembers the client's capabilities, which every request then carries to the
 * backend in the stateless envelope (params._meta), with the headers the revision mirrors:
 * Mcp-Method, Mcp-Name, and Mcp-Param-* for the arguments the tool's schema marks with
 * x-mcp-header (learnt from the tools/list answers that pass). Plumbing that has no stateless
 * counterpart is answered here (ping, logging/setLevel, the client's notifications); what
 * cannot be carried is refused naming the revisions: a backend's multi-round request
 * (InputRequiredResult: elicitation, sampling, roots), subscriptions, tasks, and the GET
 * stream (405, which the session era allows).
 */
#include "core/bridge.h"
#include "core/param_marks.h"
#include "lib/log.h"
#include "mcp/jsonrpc.h"
#include "mcp/methods.h"
#include "mcp/modern.h"
#include "mcp/session.h"
#include "mcp/sse.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The client's capabilities are kept in the session when they fit (backend id field). */
#define CAPS_PREFIX "caps:"

/* ---- one bridged exchange ---- */

struct lstate {
    struct gw_buf body;    /* what is sent (must outlive the call) */
    struct gw_buf answer;  /* the server/discover answer, bounded */
    struct gw_buf headers; /* storage of the mirrored header values */
    char *caps;            /* the client's capabilities (JSON) */
};

void bridge_legacy_state_free(void *state)
{
    struct lstate *st = state;
    if (!st)
        return;
    gw_buf_free(&st->body);
    gw_buf_free(&st->answer);
    gw_buf_free(&st->headers);
    free(st->caps);
    free(st);
}

int bridge_legacy_applies(const struct gw_request *req)
{
    return !req->modern && req->backend && req->backend->protocol == MCP_V_2026_07_28;
}

static const char *client_revision(const struct gw_request *req)
{
    return req->protocol_version ? req->protocol_version : "2025-03-26";
}

/* The stateless envelope for a message: params._meta with the revision and capabilities. */
static json_t *with_envelope(const json_t *msg, const char *caps_json, const json_t *info)
{
    json_t *copy = json_deep_copy(msg);
    json_t *params = json_object_get(copy, "params");
    if (copy && !json_is_object(params)) {
        params = json_object();
        json_object_set_new(copy, "params", params);
    }
    json_t *meta = json_object_get(params, "_meta");
    if (params && !json_is_object(meta)) {
        meta = json_object();
        json_object_set_new(params, "_meta", meta);
    }
    json_t *caps = caps_json ? json_loads(caps_json, 0, NULL) : NULL;
    if (!meta || json_object_set_new(meta, MCP_META_VERSION, json_string("2026-07-28")) ||
        json_object_set_new(meta, MCP_META_CAPABILITIES,
                            json_is_object(caps) ? caps : (json_decref(caps), json_object())) ||
        (info && json_object_set(meta, "io.modelcontextprotocol/clientInfo", (json_t *)info))) {
        json_decref(copy);
        return NULL;
    }
    return copy;
}

/* Sends msg (with its envelope) to the backend with the mirrored headers. */
static void send_modern(struct exchange *x, struct lstate *st, const json_t *msg,
                        const struct upstream_callbacks *cbs)
{
    struct gw_request *req = x->req;
    const struct mcp_message *m = &req->rpc.msgs[0];
    char *s = json_dumps(msg, JSON_COMPACT);
    gw_buf_reset(&st->body);
    gw_buf_reset(&st->headers);
    if (!s || gw_buf_append(&st->body, s, strlen(s)) != 0) {
        free(s);
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    free(s);
    const char *method = json_string_value(json_object_get(msg, "method"));
    struct gw_header h[5 + MARKS_PER_TOOL];
    size_t n = 0;
    /* Values live in st->headers; offsets first, slices after (the buffer may move). */
    size_t off[MARKS_PER_TOOL + 1], len[MARKS_PER_TOOL + 1];
    char names[MARKS_PER_TOOL][96];
    size_t n_params = 0, name_off = 0, name_len = 0;
    int has_name = 0;
    if (m->target && mcp_method_has_name(method)) {
        name_off = st->headers.len;
        has_name = mcp_header_value_encode(m->target, strlen(m->target), &st->headers) == 0;
        name_len = st->headers.len - name_off;
    }
    struct tool_marks tm;
    if (!strcmp(method, "tools/call") && m->target && m->arguments &&
        param_marks_of(req->route->name, m->target, &tm)) {
        for (size_t i = 0; i < tm.n; i++) {
            const json_t *v = param_marks_value(m->arguments, tm.marks[i].pointer);
            char text[64];
            const char *val = NULL;
            size_t vlen = 0;
            if (json_is_string(v)) {
                val = json_string_value(v);
                vlen = json_string_length(v);
            } else if (json_is_integer(v)) {
                snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
                val = text;
                vlen = strlen(text);
            } else if (json_is_boolean(v)) {
                val = json_is_true(v) ? "true" : "false";
                vlen = strlen(val);
            }
            if (!val)
                continue; /* absent or null: no header */
            off[n_params] = st->headers.len;
            if (mcp_header_value_encode(val, vlen, &st->headers) != 0)
                continue;
            len[n_params] = st->headers.len - off[n_params];
            snprintf(names[n_params], sizeof names[0], "Mcp-Param-%s", tm.marks[i].header);
            n_params++;
        }
    }
    h[n++] = (struct gw_header){GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("application/json")};
    h[n++] = (struct gw_header){GW_SLICE_LIT("Accept"),
                                GW_SLICE_LIT("application/json, text/event-stream")};
    h[n++] = (struct gw_header){GW_SLICE_LIT("MCP-Protocol-Version"), GW_SLICE_LIT("2026-07-28")};
    h[n++] = (struct gw_header){GW_SLICE_LIT("Mcp-Method"), {method, strlen(method)}};
    if (has_name)
        h[n++] =
            (struct gw_header){GW_SLICE_LIT("Mcp-Name"), {st->headers.data + name_off, name_len}};
    for (size_t i = 0; i < n_params; i++)
        h[n++] =
            (struct gw_header){{names[i], strlen(names[i])}, {st->headers.data + off[i], len[i]}};
    struct relay_request r = {
        .method = GW_HTTP_POST,
        .body = {st->body.data, st->body.len},
        .extra = h,
        .n_extra = n,
        .cbs = cbs,
    };
    relay_start(x, &r);
}

/* ---- initialize, from server/discover ---- */

/* The bridge's state: the first member of the relay kind's state (core/relay_kind.c). */
static struct lstate *lstate_of(struct exchange *x)
{
    return *(struct lstate **)x->kind_state;
}

static void disc_head(void *arg, int status, const struct gw_header *h, size_t n)
{
    (void)h;
    (void)n;
    struct exchange *x = arg;
    x->req->upstream_status = status;
}

static int disc_data(void *arg, const char *data, size_t len)
{
    struct exchange *x = arg;
    struct lstate *st = lstate_of(x);
    exchange_arm_timer(x, exchange_timeouts(x)->idle_ms);
    if (st->answer.len + len <= BRIDGE_MAX_ANSWER)
        gw_buf_append(&st->answer, data, len);
    return 0;
}

static void disc_done(void *arg, int err, const char *detail)
{
    (void)detail;
    struct exchange *x = arg;
    struct gw_request *req = x->req;
    struct lstate *st = lstate_of(x);
    x->up = NULL;
    json_t *result = err == UPSTREAM_OK && req->upstream_status == 200
                         ? sse_answer_result(st->answer.data, st->answer.len, BRIDGE_MAX_ANSWER)
                         : NULL;
    if (!result) {
        gw_log(GW_LOG_WARN, "bridge_open_failed", req->id, NULL,
               "the 2026-07-28 backend did not answer server/discover");
        answer_error(x, 502, JSONRPC_INTERNAL_ERROR,
                     "The backend (protocol revision 2026-07-28) did not answer server/discover",
                     "upstream.bridge");
        return;
    }
    /* The session: the client's capabilities travel with every request from now on. */
    char sid[MCP_SESSION_ID_LEN + 1];
    char backend_id[MCP_SESSION_MAX_BACKEND_ID + 1];
    snprintf(backend_id, sizeof backend_id, CAPS_PREFIX "%s",
             st->caps && strlen(st->caps) + 5 <= MCP_SESSION_MAX_BACKEND_ID ? st->caps : "{}");
    if (!req->identity.subject ||
        mcp_session_create(req->identity.verified ? req->identity.issuer : "",
                           req->identity.subject, req->route->name, 1, backend_id, sid,
                           gw_request_loop(req)) != 0) {
        json_decref(result);
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Sessions cannot be recorded right now",
                     "identity.session_store");
        return;
    }
    gw_request_add_response_header(req, "Mcp-Session-Id", sid);
    const json_t *caps = json_object_get(result, "capabilities");
    json_t *c = json_is_object(caps) ? json_deep_copy(caps) : json_object();
    json_object_del(c, "extensions");
    /* Nothing would carry subscriptions or list changes to a session-era client here. */
    json_object_del(json_object_get(c, "resources"), "subscribe");
    const char *kinds[] = {"tools", "resources", "prompts"};
    for (size_t i = 0; i < 3; i++)
        json_object_del(json_object_get(c, kinds[i]), "listChanged");
    const json_t *info =
        json_object_get(json_object_get(result, "_meta"), "io.modelcontextprotocol/serverInfo");
    const char *asked = json_string_value(
        json_object_get(json_object_get(req->rpc.msgs[0].json, "params"), "protocolVersion"));
    unsigned bit = asked ? mcp_version_bit(asked) : 0;
    const char *version = bit && bit != MCP_V_2026_07_28 ? asked : mcp_version_latest();
    json_t *out = json_pack(
        "{s:s, s:o, s:o}", "protocolVersion", version, "capabilities", c, "serverInfo",
        json_is_object(info) ? json_incref((json_t *)info)
                             : json_pack("{s:s, s:s}", "name", "toolgate", "version", "bridge"));
    const json_t *instr = json_object_get(result, "instructions");
    if (out && json_is_string(instr))
        json_object_set(out, "instructions", (json_t *)instr);
    json_decref(result);
    if (!out) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    answer_result(x, out, NULL, 0);
}

static void open_session(struct exchange *x, struct lstate *st)
{
    const json_t *params = json_object_get(x->req->rpc.msgs[0].json, "params");
    const json_t *caps = json_object_get(params, "capabilities");
    st->caps = json_is_object(caps) ? json_dumps(caps, JSON_COMPACT) : strdup("{}");
    json_t *disc = json_pack("{s:s, s:s, s:s, s:{}}", "jsonrpc", "2.0", "id", "toolgate-bridge",
                             "method", "server/discover", "params");
    json_t *msg =
        disc ? with_envelope(disc, st->caps, json_object_get(params, "clientInfo")) : NULL;
    json_decref(disc);
    if (!msg) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    static const struct upstream_callbacks cbs = {disc_head, disc_data, disc_done};
    send_modern(x, st, msg, &cbs);
    json_decref(msg);
}

static void refuse(struct exchange *x, const char *what)
{
    char msg[200];
    snprintf(msg, sizeof msg,
             "%s cannot be bridged from protocol revision %s to this backend (2026-07-28)", what,
             client_revision(x->req));
    answer_error(x, 200, JSONRPC_METHOD_NOT_FOUND, msg, "protocol.bridge");
}

void bridge_legacy_forward(struct exchange *x, void **state)
{
    struct gw_request *req = x->req;
    if (req->method == GW_HTTP_GET) {
        gw_request_add_response_header(req, "Allow", "POST, DELETE");
        answer_error(x, 405, JSONRPC_INVALID_REQUEST,
                     "This route offers no server stream (its backend serves 2026-07-28)",
                     "protocol.bridge");
        return;
    }
    if (req->method == GW_HTTP_DELETE) {
        if (req->session_valid)
            mcp_session_delete(req->session_id, gw_request_loop(req));
        answer_empty(x, 200);
        return;
    }
    if (req->rpc.is_batch) {
        answer_error(x, 400, JSONRPC_INVALID_REQUEST,
                     "Batches cannot be bridged to this backend (protocol revision 2026-07-28)",
                     "protocol.bridge");
        return;
    }
    const struct mcp_message *m = &req->rpc.msgs[0];
    if (m->kind != MCP_REQUEST) {
        answer_empty(x, 202); /* notifications and answers: nothing stateless to carry them */
        return;
    }
    struct lstate *st = calloc(1, sizeof *st);
    if (!st) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    *state = st;
    const char *method = m->method;
    if (!strcmp(method, "initialize")) {
        open_session(x, st);
        return;
    }
    if (!strcmp(method, "ping") || !strcmp(method, "logging/setLevel")) {
        answer_result(x, json_object(), NULL, 0);
        return;
    }
    if (!strncmp(method, "resources/subscribe", 19) || !strncmp(method, "resources/unsub", 15) ||
        !strncmp(method, "tasks/", 6)) {
        refuse(x, method);
        return;
    }
    if (!req->session_valid) {
        /* The session era starts with initialize: no session, nothing to carry for. */
        answer_error(x, 400, JSONRPC_INVALID_REQUEST,
                     "Bad Request: no session; initialize first (Mcp-Session-Id)",
                     "protocol.bridge");
        return;
    }
    const char *bid = req->session.backends[0];
    st->caps = strdup(bid && !strncmp(bid, CAPS_PREFIX, 5) ? bid + 5 : "{}");
    json_t *msg = st->caps ? with_envelope(m->json, st->caps, NULL) : NULL;
    if (!msg) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    send_modern(x, st, msg, NULL);
    json_decref(msg);
}

int bridge_legacy_on_message(struct exchange *x, json_t *msg, int *modified)
{
    json_t *result = json_object_get(msg, "result");
    if (!json_is_object(result))
        return 0;
    const char *type = json_string_value(json_object_get(result, "resultType"));
    if (type && strcmp(type, "complete") != 0) {
        /* A multi-round request (or a task): the session era has no way to carry it here. */
        char text[200];
        snprintf(text, sizeof text,
                 "The backend asked for more (%s: elicitation, sampling or roots in protocol "
                 "revision 2026-07-28), which revision %s cannot carry through this bridge",
                 strcmp(type, "input_required") == 0 ? "input_required" : "a task",
                 client_revision(x->req));
        json_object_del(msg, "result");
        json_object_set_new(
            msg, "error", json_pack("{s:i, s:s}", "code", JSONRPC_INTERNAL_ERROR, "message", text));
        *modified = 1;
        return 0;
    }
    const char *method = x->req->rpc.n ? x->req->rpc.msgs[0].method : NULL;
    if (method && !strcmp(method, "tools/list") &&
        param_marks_learn(x->req->route->name, json_object_get(result, "tools")) > 0)
        *modified = 1;
    return 0;
}
