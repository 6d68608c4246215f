/*
 * mcp: the streamable HTTP transport of MCP (revision 2025-06-18; 2025-03-26 and 2025-11-25
 * accepted) on top of server.c, and the JSON-RPC methods the clinic serves.
 *
 * POST carries JSON-RPC messages; the answer is application/json, or text/event-stream with
 * one `event: message` per JSON-RPC message when --mode sse is on and the client listed
 * text/event-stream explicitly. GET opens a server stream that only carries keep-alive
 * comments (the server never sends requests of its own). DELETE ends a session.
 */
#include "ehr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const supported_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26"};
#define LATEST_VERSION "2025-11-25"
#define BATCH_VERSION "2025-03-26"

#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

static int version_supported(const char *v, size_t n)
{
    for (size_t i = 0; i < sizeof supported_versions / sizeof supported_versions[0]; i++) {
        if (strlen(supported_versions[i]) == n && memcmp(supported_versions[i], v, n) == 0)
            return 1;
    }
    return 0;
}

/* ---- header checks ---- */

static struct gw_slice trim(struct gw_slice s)
{
    while (s.len && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) {
        s.ptr++;
        s.len--;
    }
    while (s.len && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
        s.len--;
    return s;
}

struct accept_info {
    int json;         /* application/json acceptable (explicitly or by a wildcard) */
    int sse;          /* text/event-stream acceptable */
    int sse_explicit; /* text/event-stream listed by name */
};

/* Reads an Accept header: media ranges, ';'-parameters, q=0 meaning "not this one". */
static void parse_accept(struct gw_slice h, struct accept_info *out)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    while (i < h.len) {
        size_t start = i;
        while (i < h.len && h.ptr[i] != ',')
            i++;
        struct gw_slice item = {h.ptr + start, i - start};
        i++;
        const char *semi = memchr(item.ptr, ';', item.len);
        struct gw_slice range =
            trim((struct gw_slice){item.ptr, semi ? (size_t)(semi - item.ptr) : item.len});
        int zero = 0;
        while (semi) {
            size_t off = (size_t)(semi - item.ptr) + 1;
            const char *next = memchr(item.ptr + off, ';', item.len - off);
            struct gw_slice param = trim((struct gw_slice){
                item.ptr + off, (next ? (size_t)(next - item.ptr) : item.len) - off});
            if (param.len >= 2 && (param.ptr[0] == 'q' || param.ptr[0] == 'Q') &&
                param.ptr[1] == '=') {
                zero = 1;
                for (size_t k = 2; k < param.len; k++) {
                    if (param.ptr[k] != '0' && param.ptr[k] != '.')
                        zero = 0;
                }
            }
            semi = next;
        }
        if (zero)
            continue;
        if (gw_slice_casecmp_eq(range, "*/*")) {
            out->json = out->sse = 1;
        } else if (gw_slice_casecmp_eq(range, "application/*") ||
                   gw_slice_casecmp_eq(range, "application/json")) {
            out->json = 1;
        } else if (gw_slice_casecmp_eq(range, "text/*")) {
            out->sse = 1;
        } else if (gw_slice_casecmp_eq(range, "text/event-stream")) {
            out->sse = out->sse_explicit = 1;
        }
    }
}

static int content_type_json(struct gw_slice h)
{
    if (!h.ptr)
        return 0;
    const char *semi = memchr(h.ptr, ';', h.len);
    struct gw_slice t = trim((struct gw_slice){h.ptr, semi ? (size_t)(semi - h.ptr) : h.len});
    return gw_slice_casecmp_eq(t, "application/json");
}

/*
 * The spec asks servers to validate Origin against DNS rebinding. This server listens on
 * loopback for the demo, so browsers may only come from loopback pages.
 */
static int origin_allowed(struct gw_slice o)
{
    if (!o.ptr)
        return 1;
    const char *sep = o.len > 3 ? memmem(o.ptr, o.len, "://", 3) : NULL;
    if (!sep)
        return 0;
    struct gw_slice host = {sep + 3, o.len - (size_t)(sep + 3 - o.ptr)};
    if (host.len > 0 && host.ptr[0] == '[') {
        const char *end = memchr(host.ptr, ']', host.len);
        if (!end)
            return 0;
        host.len = (size_t)(end - host.ptr) + 1;
    } else {
        const char *colon = memchr(host.ptr, ':', host.len);
        if (colon)
            host.len = (size_t)(colon - host.ptr);
    }
    return gw_slice_casecmp_eq(host, "localhost") || gw_slice_eq(host, "127.0.0.1") ||
           gw_slice_eq(host, "[::1]");
}

/* ---- answers outside the exchange ---- */

static void respond_error(struct ehr_conn *c, int status, json_t *id, int code, const char *message,
                          const char *extra)
{
    struct gw_buf *b = &c->ex.body;
    gw_buf_reset(b);
    gw_buf_append_str(b, "{\"jsonrpc\":\"2.0\",\"id\":");
    if (id) {
        char *s = json_dumps(id, DUMP_FLAGS | JSON_ENCODE_ANY);
        gw_buf_append_str(b, s ? s : "null");
        free(s);
    } else {
        gw_buf_append_str(b, "null");
    }
    gw_buf_printf(b, ",\"error\":{\"code\":%d,\"message\":\"", code);
    gw_buf_append_json_escaped(b, message, strlen(message));
    gw_buf_append_str(b, "\"}}");
    if (!b->data) {
        ehr_respond(c, 500, NULL, NULL, "", 0);
        return;
    }
    ehr_respond(c, status, "application/json", extra, b->data, b->len);
}

/*
 * Checks Mcp-Session-Id: missing is 400, unknown or expired is 404 (the client then starts
 * over with initialize). On success the negotiated version is copied out.
 */
static int session_check(struct ehr_conn *c, const struct ehr_request *req, char *version)
{
    struct gw_slice sid = req->hdr[EHR_H_SESSION];
    if (c->w->app->opt.stateless) {
        /* No sessions: the version is the header's (checked already), else the default. */
        struct gw_slice v = req->hdr[EHR_H_PROTOCOL];
        if (v.ptr && v.len <= EHR_VERSION_LEN) {
            memcpy(version, v.ptr, v.len);
            version[v.len] = '\0';
        } else {
            snprintf(version, EHR_VERSION_LEN + 1, "%s", "2025-06-18");
        }
        return 0;
    }
    if (!sid.ptr) {
        respond_error(c, 400, NULL, -32000, "Bad Request: Mcp-Session-Id header is required", NULL);
        return -1;
    }
    if (ehr_sessions_lookup(&c->w->app->sessions, sid, version) != 0) {
        respond_error(c, 404, NULL, -32001, "Session not found", NULL);
        return -1;
    }
    return 0;
}

static int protocol_header_check(struct ehr_conn *c, const struct ehr_request *req)
{
    struct gw_slice v = req->hdr[EHR_H_PROTOCOL];
    if (v.ptr && !version_supported(v.ptr, v.len)) {
        respond_error(c, 400, NULL, -32000, "Bad Request: unsupported MCP-Protocol-Version", NULL);
        return -1;
    }
    return 0;
}

/* ---- the exchange: messages of one POST answer ---- */

static int dump_to_buf(const char *s, size_t n, void *data)
{
    return gw_buf_append(data, s, n);
}

static void dump_json(struct gw_buf *b, json_t *j)
{
    if (!j || json_dump_callback(j, dump_to_buf, b, DUMP_FLAGS | JSON_ENCODE_ANY) != 0)
        gw_buf_append_str(b, "null");
}

static void sse_extra(struct ehr_conn *c, char *out, size_t outlen)
{
    snprintf(out, outlen, "Cache-Control: no-cache\r\n%s", c->ex.session_header);
}

static void msg_begin(struct ehr_conn *c)
{
    struct ehr_exchange *ex = &c->ex;
    if (ex->sse)
        gw_buf_append_str(&ex->body, "event: message\ndata: ");
    else if (ex->nmsgs > 0)
        gw_buf_append(&ex->body, ",", 1);
}

static void msg_end(struct ehr_conn *c)
{
    struct ehr_exchange *ex = &c->ex;
    if (ex->sse)
        gw_buf_append(&ex->body, "\n\n", 2);
    ex->nmsgs++;
    if (ex->streaming) {
        ehr_stream_write(c, ex->body.data, ex->body.len);
        gw_buf_reset(&ex->body);
    }
}

void ehr_ex_result(struct ehr_conn *c, json_t *id, json_t *result)
{
    struct gw_buf *b = &c->ex.body;
    msg_begin(c);
    gw_buf_append_str(b, "{\"jsonrpc\":\"2.0\",\"id\":");
    dump_json(b, id);
    gw_buf_append_str(b, ",\"result\":");
    dump_json(b, result);
    gw_buf_append(b, "}", 1);
    msg_end(c);
    json_decref(result);
}

void ehr_ex_result_raw(struct ehr_conn *c, json_t *id, const char *raw, size_t len)
{
    struct gw_buf *b = &c->ex.body;
    msg_begin(c);
    gw_buf_append_str(b, "{\"jsonrpc\":\"2.0\",\"id\":");
    dump_json(b, id);
    gw_buf_append_str(b, ",\"result\":");
    gw_buf_append(b, raw, len);
    gw_buf_append(b, "}", 1);
    msg_end(c);
}

void ehr_ex_error(struct ehr_conn *c, json_t *id, int code, const char *message)
{
    struct gw_buf *b = &c->ex.body;
    msg_begin(c);
    gw_buf_append_str(b, "{\"jsonrpc\":\"2.0\",\"id\":");
    dump_json(b, id);
    gw_buf_printf(b, ",\"error\":{\"code\":%d,\"message\":\"", code);
    gw_buf_append_json_escaped(b, message, strlen(message));
    gw_buf_append_str(b, "\"}}");
    msg_end(c);
}

void ehr_ex_notify(struct ehr_conn *c, json_t *note)
{
    struct ehr_exchange *ex = &c->ex;
    if (!ex->sse || c->closing || !c->in_request) {
        json_decref(note);
        return;
    }
    if (!ex->streaming) {
        /* The first message before the end turns the answer into a stream; anything
         * already finished (other batch members) goes out first. */
        char extra[160];
        sse_extra(c, extra, sizeof extra);
        ehr_stream_begin(c, 200, "text/event-stream", extra);
        ex->streaming = 1;
        if (ex->body.len > 0) {
            ehr_stream_write(c, ex->body.data, ex->body.len);
            gw_buf_reset(&ex->body);
        }
    }
    gw_buf_append_str(&ex->body, "event: message\ndata: ");
    dump_json(&ex->body, note);
    gw_buf_append(&ex->body, "\n\n", 2);
    ehr_stream_write(c, ex->body.data, ex->body.len);
    gw_buf_reset(&ex->body);
    json_decref(note);
}

static void ex_finish(struct ehr_conn *c)
{
    struct ehr_exchange *ex = &c->ex;
    if (!c->in_request)
        return;
    if (ex->streaming) {
        ehr_stream_end(c);
        return;
    }
    if (ex->nmsgs == 0) {
        ehr_respond(c, 202, NULL, ex->session_header, "", 0);
        return;
    }
    if (ex->sse) {
        char extra[160];
        sse_extra(c, extra, sizeof extra);
        ehr_respond(c, 200, "text/event-stream", extra, ex->body.data, ex->body.len);
        return;
    }
    if (ex->batch)
        gw_buf_append(&ex->body, "]", 1);
    if (!ex->body.data) {
        ehr_respond(c, 500, NULL, NULL, "", 0);
        return;
    }
    ehr_respond(c, 200, "application/json", ex->session_header, ex->body.data, ex->body.len);
}

void ehr_ex_job_done(struct ehr_conn *c)
{
    if (c->ex.pending > 0 && --c->ex.pending == 0)
        ex_finish(c);
}

void ehr_mcp_abort(struct ehr_conn *c)
{
    ehr_tools_cancel(c);
    c->ex.pending = 0;
}

/* ---- JSON-RPC messages ---- */

enum msg_kind { MSG_INVALID, MSG_REQUEST, MSG_NOTIFICATION, MSG_RESPONSE };

static enum msg_kind classify(json_t *m, json_t **id_out, const char **method_out)
{
    *id_out = NULL;
    *method_out = NULL;
    if (!json_is_object(m))
        return MSG_INVALID;
    json_t *v = json_object_get(m, "jsonrpc");
    json_t *id = json_object_get(m, "id");
    json_t *method = json_object_get(m, "method");
    json_t *params = json_object_get(m, "params");
    /* MCP ids are strings or integers, never null. */
    int id_ok = id && (json_is_string(id) || json_is_integer(id));
    if (id_ok)
        *id_out = id;
    if (!json_is_string(v) || strcmp(json_string_value(v), "2.0") != 0)
        return MSG_INVALID;
    if (method) {
        if (!json_is_string(method) ||
            (params && !json_is_object(params) && !json_is_array(params)))
            return MSG_INVALID;
        *method_out = json_string_value(method);
        if (!id)
            return MSG_NOTIFICATION;
        return id_ok ? MSG_REQUEST : MSG_INVALID;
    }
    if (id && (json_object_get(m, "result") || json_object_get(m, "error")))
        return MSG_RESPONSE;
    return MSG_INVALID;
}

static const char *negotiate(json_t *params)
{
    json_t *v = json_object_get(params, "protocolVersion");
    const char *s = json_string_value(v);
    if (s && version_supported(s, strlen(s))) {
        for (size_t i = 0; i < sizeof supported_versions / sizeof supported_versions[0]; i++) {
            if (strcmp(s, supported_versions[i]) == 0)
                return supported_versions[i];
        }
    }
    return LATEST_VERSION;
}

static void do_initialize(struct ehr_conn *c, json_t *id, json_t *params)
{
    if (!json_is_object(params) || !json_is_string(json_object_get(params, "protocolVersion"))) {
        ehr_ex_error(c, id, -32602, "Invalid params: initialize needs params.protocolVersion");
        return;
    }
    const char *version = negotiate(params);
    char sid[EHR_SESSION_ID_LEN + 1];
    if (c->w->app->opt.stateless) {
        sid[0] = '\0'; /* no session: any replica answers any later request */
    } else if (ehr_sessions_create(&c->w->app->sessions, version, sid) != 0) {
        ehr_ex_error(c, id, -32603, "Internal error: cannot create a session");
        return;
    }
    if (sid[0])
        snprintf(c->ex.session_header, sizeof c->ex.session_header, "Mcp-Session-Id: %s\r\n", sid);
    json_t *result = json_pack(
        "{s:s, s:{s:{s:b}}, s:{s:s, s:s, s:s}, s:s}", "protocolVersion", version, "capabilities",
        "tools", "listChanged", 0, "serverInfo", "name", "ehr-backend", "title",
        "Fictional clinic EHR", "version", TOOLGATE_VERSION, "instructions",
        "Records of a fictional clinic. Patient ids look like P123. All data is generated.");
    ehr_ex_result(c, id, result);
}

static void do_tools_list(struct ehr_conn *c, json_t *id, json_t *params)
{
    struct ehr_app *app = c->w->app;
    unsigned page = 0;
    json_t *cursor = json_is_object(params) ? json_object_get(params, "cursor") : NULL;
    if (cursor && !json_is_null(cursor)) {
        const char *s = json_string_value(cursor);
        char *end = NULL;
        unsigned long n = 0;
        if (s && strncmp(s, "page:", 5) == 0 && s[5] >= '1' && s[5] <= '9')
            n = strtoul(s + 5, &end, 10);
        if (!end || *end != '\0' || n >= app->n_tool_pages) {
            ehr_ex_error(c, id, -32602, "Invalid params: unknown cursor");
            return;
        }
        page = (unsigned)n;
    }
    ehr_ex_result_raw(c, id, app->tool_pages[page], app->tool_page_lens[page]);
}

static void do_tools_call(struct ehr_conn *c, const struct ehr_request *req, json_t *id,
                          json_t *params)
{
    json_t *name = json_is_object(params) ? json_object_get(params, "name") : NULL;
    if (!json_is_string(name)) {
        ehr_ex_error(c, id, -32602, "Invalid params: tools/call needs params.name");
        return;
    }
    json_t *args = json_object_get(params, "arguments");
    json_t *empty = NULL;
    if (!args || json_is_null(args)) {
        args = empty = json_object();
    } else if (!json_is_object(args)) {
        ehr_ex_error(c, id, -32602, "Invalid params: arguments must be an object");
        return;
    }
    json_t *token = json_object_get(json_object_get(params, "_meta"), "progressToken");
    if (token && !json_is_string(token) && !json_is_integer(token))
        token = NULL;
    if (ehr_tools_call(c, req, id, json_string_value(name), args, token) != 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "Unknown tool: %.64s", json_string_value(name));
        ehr_ex_error(c, id, -32602, msg);
    }
    json_decref(empty);
}

/* Static names for the log line, so nothing a client wrote reaches it. */
static const char *log_name(const char *method)
{
    static const char *const known[] = {"initialize",
                                        "ping",
                                        "tools/list",
                                        "tools/call",
                                        "notifications/initialized",
                                        "notifications/cancelled"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(method, known[i]) == 0)
            return known[i];
    }
    return "other";
}

/* One request of a POST (single or batch member). */
static void handle_request(struct ehr_conn *c, const struct ehr_request *req, json_t *msg,
                           json_t *id, const char *method, int in_batch)
{
    json_t *params = json_object_get(msg, "params");
    if (!c->log_rpc)
        c->log_rpc = log_name(method);
    if (strcmp(method, "tools/call") == 0)
        do_tools_call(c, req, id, params);
    else if (strcmp(method, "tools/list") == 0)
        do_tools_list(c, id, params);
    else if (strcmp(method, "ping") == 0)
        ehr_ex_result(c, id, json_object());
    else if (strcmp(method, "initialize") == 0 && in_batch)
        ehr_ex_error(c, id, -32600, "Invalid Request: initialize cannot be part of a batch");
    else if (strcmp(method, "initialize") == 0)
        do_initialize(c, id, params);
    else
        ehr_ex_error(c, id, -32601, "Method not found");
}

static void handle_post(struct ehr_conn *c, const struct ehr_request *req)
{
    struct ehr_app *app = c->w->app;
    struct ehr_exchange *ex = &c->ex;
    json_t *root = NULL;
    char version[EHR_VERSION_LEN + 1] = "";

    struct accept_info acc;
    parse_accept(req->hdr[EHR_H_ACCEPT], &acc);
    if (!acc.json || !acc.sse) {
        respond_error(c, 406, NULL, -32000,
                      "Not Acceptable: Accept must list application/json and text/event-stream",
                      NULL);
        goto out;
    }
    if (!content_type_json(req->hdr[EHR_H_CONTENT_TYPE])) {
        respond_error(c, 415, NULL, -32000,
                      "Unsupported Media Type: Content-Type must be application/json", NULL);
        goto out;
    }
    if (protocol_header_check(c, req) != 0)
        goto out;

    json_error_t err;
    root = json_loadb(req->body.ptr, req->body.len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        respond_error(c, 400, NULL, -32700, "Parse error", NULL);
        goto out;
    }
    ex->sse = app->opt.sse_mode && acc.sse_explicit;

    if (json_is_array(root)) {
        size_t n = json_array_size(root);
        if (n == 0) {
            respond_error(c, 400, NULL, -32600, "Invalid Request: empty batch", NULL);
            goto out;
        }
        if (session_check(c, req, version) != 0)
            goto out;
        if (strcmp(version, BATCH_VERSION) != 0) {
            respond_error(c, 400, NULL, -32600,
                          "Invalid Request: batches need protocol version " BATCH_VERSION, NULL);
            goto out;
        }
        c->log_rpc = "batch";
        ex->batch = 1;
        if (!ex->sse)
            gw_buf_append(&ex->body, "[", 1);
        for (size_t i = 0; i < n; i++) {
            json_t *msg = json_array_get(root, i), *id;
            const char *method;
            enum msg_kind kind = classify(msg, &id, &method);
            if (kind == MSG_INVALID)
                ehr_ex_error(c, id, -32600, "Invalid Request");
            else if (kind == MSG_REQUEST)
                handle_request(c, req, msg, id, method, 1);
        }
    } else {
        json_t *id;
        const char *method;
        enum msg_kind kind = classify(root, &id, &method);
        if (kind == MSG_INVALID) {
            respond_error(c, 400, id, -32600, "Invalid Request", NULL);
            goto out;
        }
        if (kind == MSG_REQUEST && strcmp(method, "initialize") == 0) {
            handle_request(c, req, root, id, method, 0);
        } else {
            if (session_check(c, req, version) != 0)
                goto out;
            if (kind == MSG_REQUEST)
                handle_request(c, req, root, id, method, 0);
            else if (!c->log_rpc)
                c->log_rpc = method ? log_name(method) : "response";
        }
    }
    if (ex->pending == 0)
        ex_finish(c);
out:
    json_decref(root);
}

/* ---- GET: the server-to-client stream ---- */

static void on_ping_closed(uv_handle_t *h)
{
    ehr_conn_release(h->data);
}

static void on_ping(uv_timer_t *t)
{
    struct ehr_conn *c = t->data;
    struct gw_slice sid = {c->stream_session, EHR_SESSION_ID_LEN};
    if (ehr_sessions_lookup(&c->w->app->sessions, sid, NULL) != 0) {
        /* The session was deleted or expired: the stream ends with it. */
        c->ping_active = 0;
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, on_ping_closed);
        ehr_stream_end(c);
        return;
    }
    ehr_stream_write(c, ": ping\n\n", 8);
}

static void handle_get(struct ehr_conn *c, const struct ehr_request *req)
{
    struct accept_info acc;
    char version[EHR_VERSION_LEN + 1];
    parse_accept(req->hdr[EHR_H_ACCEPT], &acc);
    if (!acc.sse) {
        respond_error(c, 406, NULL, -32000, "Not Acceptable: Accept must list text/event-stream",
                      NULL);
        return;
    }
    if (protocol_header_check(c, req) != 0 || session_check(c, req, version) != 0)
        return;
    c->log_rpc = "stream";
    memcpy(c->stream_session, req->hdr[EHR_H_SESSION].ptr, EHR_SESSION_ID_LEN);
    c->stream_session[EHR_SESSION_ID_LEN] = '\0';
    ehr_stream_begin(c, 200, "text/event-stream", "Cache-Control: no-cache\r\n");
    ehr_stream_write(c, ": stream open\n\n", 15);
    unsigned ms = c->w->app->opt.ping_ms;
    if (uv_timer_init(&c->w->loop, &c->ping) == 0) {
        ehr_conn_hold(c);
        c->ping_active = 1;
        uv_timer_start(&c->ping, on_ping, ms, ms);
    }
}

/* ---- dispatch ---- */

static void handle_delete(struct ehr_conn *c, const struct ehr_request *req)
{
    struct gw_slice sid = req->hdr[EHR_H_SESSION];
    c->log_rpc = "delete";
    if (!sid.ptr) {
        respond_error(c, 400, NULL, -32000, "Bad Request: Mcp-Session-Id header is required", NULL);
        return;
    }
    if (ehr_sessions_delete(&c->w->app->sessions, sid) != 0) {
        respond_error(c, 404, NULL, -32001, "Session not found", NULL);
        return;
    }
    ehr_respond(c, 200, NULL, NULL, "", 0);
}

void ehr_mcp_handle(struct ehr_conn *c, const struct ehr_request *req)
{
    struct ehr_app *app = c->w->app;
    struct ehr_exchange *ex = &c->ex;
    ex->sse = ex->batch = ex->streaming = 0;
    ex->pending = ex->nmsgs = 0;
    ex->session_header[0] = '\0';
    gw_buf_reset(&ex->body);

    if (gw_slice_eq(req->path, "/healthz") && req->method == HTTP_GET) {
        ehr_respond(c, 200, "text/plain", NULL, "ok\n", 3);
        return;
    }
    if (!gw_slice_eq(req->path, app->opt.path)) {
        respond_error(c, 404, NULL, -32000, "Not Found", NULL);
        return;
    }
    if (!origin_allowed(req->hdr[EHR_H_ORIGIN])) {
        respond_error(c, 403, NULL, -32000, "Forbidden: Origin not allowed", NULL);
        return;
    }
    ehr_principal_clear(&c->principal);
    c->authenticated = 0;
    if (app->auth_on) {
        char why[128];
        if (ehr_auth_verify(&app->auth, req->hdr[EHR_H_AUTHORIZATION], (int64_t)time(NULL),
                            &c->principal, why, sizeof why) != 0) {
            char msg[192];
            snprintf(msg, sizeof msg, "Unauthorized: %s", why);
            respond_error(c, 401, NULL, -32001, msg,
                          "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
            return;
        }
        c->authenticated = 1;
    }
    switch (req->method) {
    case HTTP_POST:
        handle_post(c, req);
        break;
    case HTTP_GET:
    case HTTP_DELETE:
        if (app->opt.stateless) {
            /* Without sessions there is no stream to open or session to end. */
            respond_error(c, 405, NULL, -32000, "Method Not Allowed", "Allow: POST\r\n");
        } else if (req->method == HTTP_GET) {
            handle_get(c, req);
        } else {
            handle_delete(c, req);
        }
        break;
    default:
        respond_error(c, 405, NULL, -32000, "Method Not Allowed", "Allow: GET, POST, DELETE\r\n");
    }
}
