/*
 * REST tool routes (routes[].kind: rest): POST <path>/<tool> with a JSON object of arguments.
 * The call becomes the tools/call it stands for, so every layer governs it exactly like an
 * MCP call, and goes to the backend as POST <backend url>/<tool> with the arguments as the
 * layers left them. Answers are in plain HTTP terms.
 */
#include "routes/rest/rest.h"
#include "core/exchange.h"
#include "mcp/jsonrpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct rest_state {
    char *url;  /* <backend url>/<tool> */
    char *body; /* the arguments as the backend gets them */
};

static void state_free(void *p)
{
    struct rest_state *s = p;
    free(s->url);
    free(s->body);
    free(s);
}

static int rest_claims(const char *name, size_t n_backends)
{
    (void)n_backends;
    return strcmp(name, "rest") == 0;
}

static int rest_check_route(const struct cfg_doc *doc, const struct cfg_node *node,
                            const char *path, const struct gw_route *route, struct cfg_error *err)
{
    if (route->n_backends == 1)
        return 0;
    char p[256];
    cfg_path_key(p, sizeof p, path, "backends");
    return cfg_errorf(err, doc, cfg_map_get(node, "backends"), p,
                      "a REST route forwards to one backend (POST <url>/<tool>); list one");
}

/* "<path>/<tool>": one segment after the route's path. */
static int rest_matches(const struct gw_route *r, const char *path, size_t len)
{
    size_t rlen = strlen(r->path);
    return len > rlen + 1 && memcmp(r->path, path, rlen) == 0 && path[rlen] == '/' &&
           !memchr(path + rlen + 1, '/', len - rlen - 1);
}

static void rest_prepare(struct exchange *x)
{
    struct gw_request *req = x->req;
    const struct gw_route *route = req->route;
    req->backend = &route->backends[0];
    if (req->method != GW_HTTP_POST) {
        answer_protocol_error(req, 405, JSONRPC_INVALID_REQUEST, "protocol.method",
                              "Call a tool with POST <path>/<tool>");
        return;
    }
    size_t plen = strlen(route->path);
    struct gw_slice tool = {req->path.ptr + plen + 1, req->path.len - plen - 1};
    int ok = tool.len > 0 && tool.len <= 128;
    for (size_t i = 0; ok && i < tool.len; i++) {
        char ch = tool.ptr[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '_' || ch == '-' || ch == '.';
    }
    if (!ok) {
        answer_protocol_error(req, 404, JSONRPC_INVALID_PARAMS, "protocol.bad_tool",
                              "No such tool: tool names are 1 to 128 letters, digits, '_', '-', "
                              "'.'");
        return;
    }
    struct gw_slice ct = gw_request_header(req, "Content-Type");
    if (req->body.len > 0 &&
        (!ct.ptr || ct.len < 16 || strncasecmp(ct.ptr, "application/json", 16) != 0)) {
        answer_protocol_error(req, 415, JSONRPC_INVALID_REQUEST, "protocol.content_type",
                              "The arguments must be a JSON object (application/json)");
        return;
    }
    json_t *args = NULL;
    if (req->body.len == 0) {
        args = json_object();
    } else if (mcp_parse_message(req->body.ptr, req->body.len,
                                 req->cfg->server.limits.max_json_depth, &args) != 0 ||
               !json_is_object(args)) {
        json_decref(args);
        answer_protocol_error(req, 400, JSONRPC_PARSE_ERROR, "protocol.parse_error",
                              "The body must be a JSON object of arguments (UTF-8, no duplicate "
                              "keys)");
        return;
    }
    json_t *msg =
        json_pack("{s:s, s:s, s:s, s:{s:s%, s:o}}", "jsonrpc", "2.0", "id", req->id, "method",
                  "tools/call", "params", "name", tool.ptr, tool.len, "arguments", args);
    req->rpc.msgs = msg ? calloc(1, sizeof *req->rpc.msgs) : NULL;
    if (!req->rpc.msgs) {
        json_decref(msg);
        answer_protocol_error(req, 503, JSONRPC_INTERNAL_ERROR, "internal.memory", "Out of memory");
        return;
    }
    json_t *params = json_object_get(msg, "params");
    req->rpc.n = 1;
    req->rpc.msgs[0] = (struct mcp_message){
        .kind = MCP_REQUEST,
        .json = msg,
        .method = json_string_value(json_object_get(msg, "method")),
        .id = json_object_get(msg, "id"),
        .target = json_string_value(json_object_get(params, "name")),
        .arguments = json_object_get(params, "arguments"),
    };
}

/* POST <backend url>/<tool> with the arguments as the layers left them (redactions too). */
static void rest_forward(struct exchange *x)
{
    struct gw_request *req = x->req;
    const char *base = req->upstream_url ? req->upstream_url : req->backend->url;
    size_t bl = strlen(base);
    struct rest_state *s = calloc(1, sizeof *s);
    struct gw_buf url = {0};
    if (s && gw_buf_printf(&url, "%.*s/%s", (int)(bl && base[bl - 1] == '/' ? bl - 1 : bl), base,
                           req->rpc.msgs[0].target) == 0)
        s->url = gw_buf_steal(&url, NULL);
    gw_buf_free(&url);
    if (s)
        x->kind_state = s;
    if (s && s->url)
        s->body = json_dumps(req->rpc.msgs[0].arguments, JSON_COMPACT);
    if (!s || !s->body) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    static const struct gw_header hdrs[] = {
        {GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("application/json")},
        {GW_SLICE_LIT("Accept"), GW_SLICE_LIT("application/json")},
    };
    struct relay_request r = {
        .method = GW_HTTP_POST,
        .url = s->url,
        .body = {s->body, strlen(s->body)},
        .extra = hdrs,
        .n_extra = 2,
    };
    relay_start(x, &r);
}

/*
 * The backend's answer goes through the response hooks as the tools/call result it stands
 * for (structuredContent when it is a JSON object, else text), and back out in its own shape.
 */
static void rest_finish(struct exchange *x)
{
    struct gw_request *req = x->req;
    int status = req->upstream_status;
    json_t *doc = NULL;
    int is_object = x->resp.len > 0 &&
                    mcp_parse_message(x->resp.data, x->resp.len,
                                      req->cfg->server.limits.max_json_depth, &doc) == 0 &&
                    json_is_object(doc);
    json_t *result = is_object ? json_pack("{s:[], s:O}", "content", "structuredContent", doc)
                               : json_pack("{s:[{s:s, s:s%}]}", "content", "type", "text", "text",
                                           x->resp.data ? x->resp.data : "", x->resp.len);
    json_decref(doc);
    json_t *msg =
        result ? json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "id", req->id, "result", result)
               : NULL;
    if (!msg) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    int modified = 0;
    struct gw_decision d = {0};
    msg = relay_hooks(x, msg, &modified, &d);
    if (!msg && d.verdict != GW_DENY)
        gw_decision_deny(&d, 502, JSONRPC_INTERNAL_ERROR, "upstream.not_understood",
                         "The backend's answer could not be read");
    if (d.verdict == GW_DENY) {
        json_decref(msg);
        size_t len = 0;
        char *b = rest_error_body(req, &d, NULL, &len);
        answer_json(x, 502, b ? b : "", b ? len : 0, NULL, 0);
        free(b);
        exchange_finish(x, 0);
        return;
    }
    char *out = NULL;
    if (modified) {
        json_t *r = json_object_get(msg, "result");
        json_t *sc = json_object_get(r, "structuredContent");
        json_t *text = json_object_get(json_array_get(json_object_get(r, "content"), 0), "text");
        out = sc ? json_dumps(sc, JSON_COMPACT) : text ? strdup(json_string_value(text)) : NULL;
    }
    json_decref(msg);
    const char *body = out ? out : x->resp.data ? x->resp.data : "";
    size_t len = out ? strlen(out) : x->resp.len;
    req->response_status = status;
    req->response_bytes += len;
    exchange_hold_whole(x, status, x->out_headers, x->n_out, body, len);
    free(out);
    exchange_finish(x, 0);
}

char *rest_error_body(const struct gw_request *req, const struct gw_decision *d, const char *layer,
                      size_t *len)
{
    json_t *e = json_pack("{s:s, s:s, s:s}", "code", d->reason_code, "message",
                          d->reason[0] ? d->reason : "Denied", "request_id", req->id);
    if (e && layer)
        json_object_set_new(e, "layer", json_string(layer));
    if (e && d->rule_id[0] && strcmp(d->reason_code, "policy.hidden") != 0)
        json_object_set_new(e, "rule", json_string(d->rule_id));
    if (e && d->retry_after_ms)
        json_object_set_new(e, "retry_after_ms", json_integer((json_int_t)d->retry_after_ms));
    json_t *body = e ? json_pack("{s:o}", "error", e) : NULL;
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    *len = s ? strlen(s) : 0;
    return s;
}

/*
 * A REST route answers in plain HTTP terms: a tool error the model could read on MCP is 403
 * here, a hidden or unknown tool 404. Errors of toolgate's own (no layer) keep their status,
 * except that a JSON-RPC-level error (200) is a bad request.
 */
static char *rest_kind_error_body(const struct gw_request *req, const struct gw_decision *d,
                                  const char *layer, int *status, size_t *len)
{
    if (!layer)
        *status = *status == 200 ? 400 : *status;
    else if (d->jsonrpc_code == JSONRPC_INVALID_PARAMS &&
             strncmp(d->reason_code, "policy.", 7) == 0)
        *status = 404;
    else if (d->http_status == 200)
        *status = d->jsonrpc_code == JSONRPC_INVALID_PARAMS ? 400 : 403;
    else
        *status = d->http_status ? d->http_status : 403;
    return rest_error_body(req, d, layer, len);
}

const struct gw_route_kind rest_route_kind = {
    .name = "rest",
    .claims = rest_claims,
    .check_route = rest_check_route,
    .matches = rest_matches,
    .prepare = rest_prepare,
    .forward = rest_forward,
    .finish = rest_finish,
    .error_body = rest_kind_error_body,
    .streams = 0,
    .free_state = state_free,
};
