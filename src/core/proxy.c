/*
 * proxy: the handler the server runs on the gateway's listeners. The gateway's own paths
 * (/healthz, well-known documents) are answered here; a request on a route becomes an
 * exchange: its route kind prepares it (decodes, chooses the backend), the pipeline of layers
 * decides, and the kind forwards it or the decision is answered.
 */
#include "core/proxy.h"
#include "core/param_marks.h"
#include "core/exchange.h"
#include "core/module.h"
#include "core/pipeline.h"
#include "mcp/jsonrpc.h"
#include "mcp/methods.h"
#include "mcp/modern.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void simple(struct gw_conn *c, int status, const char *body, const struct gw_header *extra,
                   size_t n_extra)
{
    answer_simple(c, status, body, strlen(body), extra, n_extra);
}

/* ---- decoding an MCP request ---- */

static int dup_header(struct gw_request *req, const char *name, size_t max, char **out)
{
    if (gw_request_header_count(req, name) > 1)
        return -1;
    struct gw_slice v = gw_request_header(req, name);
    if (!v.ptr)
        return 0;
    if (v.len == 0 || v.len > max)
        return -1;
    for (size_t i = 0; i < v.len; i++)
        if ((unsigned char)v.ptr[i] < 0x21 || (unsigned char)v.ptr[i] > 0x7e)
            return -1;
    *out = gw_slice_dup(v);
    return *out ? 0 : -1;
}

/*
 * The id of a request refused before its body was decoded, when the body is a JSON-RPC
 * request whose id can be read (an error must answer the request it refuses).
 */
static void recover_id(struct gw_request *req)
{
    json_t *j = NULL;
    if (req->method != GW_HTTP_POST || req->body.len == 0 ||
        mcp_parse_message(req->body.ptr, req->body.len, req->cfg->server.limits.max_json_depth,
                          &j) != 0)
        return;
    json_t *id = json_is_object(j) ? json_object_get(j, "id") : NULL;
    if ((json_is_string(id) || json_is_integer(id)) && !req->rpc.msgs &&
        (req->rpc.msgs = calloc(1, sizeof *req->rpc.msgs)) != NULL) {
        req->rpc.n = 1;
        req->rpc.msgs[0].kind = MCP_REQUEST;
        req->rpc.msgs[0].json = json_pack("{s:O}", "id", id);
        req->rpc.msgs[0].id = json_object_get(req->rpc.msgs[0].json, "id");
    }
    json_decref(j);
}

/*
 * -32022, naming the revision asked for and the ones to use instead: on a route of the
 * session era only, its revisions; for a request in the stateless envelope (its body claims a
 * revision in _meta), the stateless revisions (the session era is reached with initialize,
 * not with the envelope); otherwise every revision toolgate serves.
 */
enum version_list { VERSIONS_ALL, VERSIONS_2025, VERSIONS_MODERN };

static void unsupported_version(struct gw_request *req, const char *requested,
                                enum version_list list, const char *message)
{
    answer_protocol_error(req, 400, MCP_UNSUPPORTED_VERSION, "protocol.unsupported_version",
                          message);
    recover_id(req);
    json_t *supported = json_array();
    for (const char *const *v = mcp_version_names(); *v; v++) {
        int modern = mcp_version_bit(*v) == MCP_V_2026_07_28;
        if (list == VERSIONS_ALL || (list == VERSIONS_2025 && !modern) ||
            (list == VERSIONS_MODERN && modern))
            json_array_append_new(supported, json_string(*v));
    }
    req->protocol_error_data =
        json_pack("{s:o, s:s?}", "supported", supported, "requested", requested);
}

static int claims_envelope(const struct gw_request *req)
{
    static const char key[] = "io.modelcontextprotocol/protocolVersion";
    return req->body.len >= sizeof key - 1 &&
           memmem(req->body.ptr, req->body.len, key, sizeof key - 1) != NULL;
}

/* The headers a 2026-07-28 request mirrors its body in. */
static void modern_headers(const struct gw_request *req, struct mcp_modern_headers *h)
{
    memset(h, 0, sizeof *h);
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct gw_header *hd = &req->headers[i];
        if (gw_slice_casecmp_eq(hd->name, "Mcp-Method")) {
            h->method = hd->value.ptr;
            h->method_len = hd->value.len;
            h->method_count++;
        } else if (gw_slice_casecmp_eq(hd->name, "Mcp-Name")) {
            h->name = hd->value.ptr;
            h->name_len = hd->value.len;
            h->name_count++;
        } else if (hd->name.len > 10 && strncasecmp(hd->name.ptr, "Mcp-Param-", 10) == 0) {
            if (h->n_params == MCP_MAX_PARAM_HEADERS) {
                h->too_many_params = 1;
                continue;
            }
            h->params[h->n_params++] =
                (struct mcp_header_view){hd->name.ptr, hd->name.len, hd->value.ptr, hd->value.len};
        }
    }
}

/*
 * A tools/call whose tool's marks are known (core/param_marks.h): every Mcp-Param header names
 * a marked argument and carries its value, and every marked argument with a value comes with
 * its header, as a server that processes the body checks. Returns 0, or -1 after refusing.
 */
/* The mark an Mcp-Param header (its name after the prefix) stands for, or NULL. */
static const struct mark *mark_named(const struct tool_marks *tm, const struct mcp_header_view *h)
{
    const char *name = h->name + 10;
    size_t len = h->name_len - 10;
    for (size_t k = 0; k < tm->n; k++)
        if (strlen(tm->marks[k].header) == len && strncasecmp(tm->marks[k].header, name, len) == 0)
            return &tm->marks[k];
    return NULL;
}

static int check_param_marks(struct gw_request *req, const struct mcp_message *m,
                             const struct mcp_modern_headers *h)
{
    struct tool_marks tm;
    if (strcmp(m->method, "tools/call") != 0 || !m->target ||
        !param_marks_of(req->route->name, m->target, &tm))
        return 0;
    const char *why = NULL;
    int sent[MARKS_PER_TOOL] = {0};
    for (size_t i = 0; i < h->n_params && !why; i++) {
        const struct mark *mk = mark_named(&tm, &h->params[i]);
        if (!mk)
            why = "an Mcp-Param header names no argument the tool mirrors";
        else if (!mcp_param_value_matches(param_marks_value(m->arguments, mk->pointer),
                                          h->params[i].value, h->params[i].value_len))
            why = "an Mcp-Param header does not match the argument it mirrors";
        else
            sent[mk - tm.marks] = 1;
    }
    for (size_t k = 0; k < tm.n && !why; k++) {
        const json_t *v = param_marks_value(m->arguments, tm.marks[k].pointer);
        if (!sent[k] && (json_is_string(v) || json_is_integer(v) || json_is_boolean(v)))
            why = "a mirrored argument came without its Mcp-Param header";
    }
    if (!why)
        return 0;
    char msg[160];
    snprintf(msg, sizeof msg, "Header mismatch: %s", why);
    answer_protocol_error(req, 400, MCP_HEADER_MISMATCH, "protocol.header_mismatch", msg);
    return -1;
}

/*
 * After decoding: a 2026-07-28 request is held to its envelope and headers (mcp/modern.h);
 * a request of the session era must not claim another revision in its body. Returns 0, or
 * -1 after refusing it.
 */
static int check_envelope(struct gw_request *req)
{
    for (size_t i = 0; i < req->rpc.n; i++) {
        const struct mcp_message *m = &req->rpc.msgs[i];
        if (m->kind != MCP_REQUEST && m->kind != MCP_NOTIFICATION)
            continue;
        if (!req->modern) {
            const char *claim = mcp_meta_version(m);
            if (claim &&
                strcmp(claim, req->protocol_version ? req->protocol_version : "2025-03-26") != 0) {
                answer_protocol_error(req, 400, MCP_HEADER_MISMATCH, "protocol.header_mismatch",
                                      "Header mismatch: the body's _meta names a protocol "
                                      "revision the MCP-Protocol-Version header does not");
                return -1;
            }
            continue;
        }
        struct mcp_modern_headers h;
        struct mcp_modern_error e;
        modern_headers(req, &h);
        if (mcp_modern_check(m, req->protocol_version, &h, &e) != 0) {
            answer_protocol_error(req, e.http_status, e.code,
                                  e.code == MCP_HEADER_MISMATCH ? "protocol.header_mismatch"
                                                                : "protocol.invalid_params",
                                  e.message);
            return -1;
        }
        if (check_param_marks(req, m, &h) != 0)
            return -1;
    }
    return 0;
}

void relay_decode_mcp(struct exchange *x)
{
    struct gw_request *req = x->req;
    const struct gw_config *cfg = req->cfg;
    if (dup_header(req, "MCP-Protocol-Version", EXCHANGE_MAX_PROTOCOL_VERSION,
                   &req->protocol_version) != 0) {
        answer_protocol_error(req, 400, JSONRPC_INVALID_REQUEST, "protocol.bad_header",
                              "Bad MCP-Protocol-Version header");
        return;
    }
    if (req->protocol_version && mcp_version_bit(req->protocol_version) == 0) {
        unsupported_version(req, req->protocol_version,
                            claims_envelope(req) ? VERSIONS_MODERN : VERSIONS_ALL,
                            "Unsupported protocol version (toolgate serves 2026-07-28, "
                            "2025-11-25, 2025-06-18 and 2025-03-26)");
        return;
    }
    req->modern =
        req->protocol_version && mcp_version_bit(req->protocol_version) == MCP_V_2026_07_28;
    if (req->modern) {
        /* Stateless: POST only, no session (an Mcp-Session-Id is ignored, never forwarded). */
        if (!x->kind->modern) {
            unsupported_version(req, req->protocol_version, VERSIONS_2025,
                                "This route serves the 2025 protocol revisions only");
            return;
        }
        if (req->method != GW_HTTP_POST) {
            gw_request_add_response_header(req, "Allow", "POST");
            answer_protocol_error(req, 405, JSONRPC_INVALID_REQUEST, "protocol.method",
                                  "Method not allowed: revision 2026-07-28 is POST only");
            return;
        }
    } else if (dup_header(req, "Mcp-Session-Id", EXCHANGE_MAX_SESSION_ID, &req->session_id) != 0) {
        answer_protocol_error(req, 400, JSONRPC_INVALID_REQUEST, "protocol.bad_header",
                              "Bad Mcp-Session-Id header");
        return;
    }
    if (req->method != GW_HTTP_POST)
        return;
    struct gw_slice ct = gw_request_header(req, "Content-Type");
    if (!ct.ptr || ct.len < 16 || strncasecmp(ct.ptr, "application/json", 16) != 0 ||
        (ct.len > 16 && ct.ptr[16] != ';' && ct.ptr[16] != ' ')) {
        answer_protocol_error(req, 415, JSONRPC_INVALID_REQUEST, "protocol.content_type",
                              "POST bodies must be application/json");
        return;
    }
    struct mcp_limits lim = {.max_bytes = cfg->server.limits.max_body,
                             .max_depth = cfg->server.limits.max_json_depth,
                             .max_batch = 100,
                             .allow_methods = req->route->allow_methods};
    struct mcp_decode_error derr = {0};
    if (mcp_decode(req->body.ptr, req->body.len, &lim, req->protocol_version, &req->rpc, &derr) ==
        0) {
        if (check_envelope(req) != 0)
            return;
        /* A URI made canonical goes to the backend as the layers will judge it. */
        for (size_t i = 0; i < req->rpc.n; i++)
            if (req->rpc.msgs[i].rewritten && gw_request_reserialize(req) != 0) {
                answer_protocol_error(req, 503, JSONRPC_INTERNAL_ERROR, "internal.memory",
                                      "Out of memory");
                break;
            }
        return;
    }
    /* In-band in the session era; 2026-07-28 answers an unknown method 404, bad params 400. */
    int st = req->modern ? (derr.code == JSONRPC_METHOD_NOT_FOUND ? 404 : 400)
             : derr.code == JSONRPC_INVALID_PARAMS || derr.code == JSONRPC_METHOD_NOT_FOUND ? 200
                                                                                            : 400;
    answer_protocol_error(req, st, derr.code,
                          derr.code == JSONRPC_PARSE_ERROR        ? "protocol.parse_error"
                          : derr.code == JSONRPC_INVALID_PARAMS   ? "protocol.invalid_params"
                          : derr.code == JSONRPC_METHOD_NOT_FOUND ? "protocol.unknown_method"
                                                                  : "protocol.invalid_request",
                          derr.message);
    /* Keep the recovered id so the error answers the right request. */
    if (derr.id) {
        req->rpc.msgs = calloc(1, sizeof *req->rpc.msgs);
        if (req->rpc.msgs) {
            req->rpc.n = 1;
            req->rpc.msgs[0].kind = MCP_REQUEST;
            req->rpc.msgs[0].json = json_pack("{s:O}", "id", derr.id);
            req->rpc.msgs[0].id = json_object_get(req->rpc.msgs[0].json, "id");
        }
        json_decref(derr.id);
    }
}

/* ---- DNS rebinding ---- */

static int host_allowed(const struct gw_config *cfg, struct gw_slice host)
{
    if (!host.ptr || host.len == 0)
        return 1; /* HTTP/1.0 without Host: no name to have been rebound */
    if (host.ptr[0] == '[')
        return 1; /* an IPv6 literal: no DNS name involved */
    size_t hl = host.len;
    for (size_t i = host.len; i > 0; i--)
        if (host.ptr[i - 1] == ':') {
            hl = i - 1;
            break;
        }
    char name[256];
    if (hl == 0 || hl >= sizeof name)
        return 0;
    for (size_t i = 0; i < hl; i++)
        name[i] = (char)tolower((unsigned char)host.ptr[i]);
    name[hl] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, name, &a4) == 1)
        return 1; /* an IPv4 literal */
    for (char **h = cfg->server.allowed_hosts; h && *h; h++)
        if (strcmp(*h, name) == 0)
            return 1;
    return 0;
}

static int origin_allowed(const struct gw_config *cfg, struct gw_slice origin)
{
    if (!origin.ptr)
        return 1; /* not a browser, or a same-origin request that sent none */
    for (char **o = cfg->server.allowed_origins; o && *o; o++)
        if (strlen(*o) == origin.len && strncasecmp(*o, origin.ptr, origin.len) == 0)
            return 1;
    return 0;
}

/*
 * A page the user visits must not reach toolgate through a browser: an Origin that is not
 * listed, or a Host naming a DNS name toolgate does not answer to (a rebound name), is 403
 * before anything else. Returns 1 when the request may go on.
 */
static int rebinding_check(struct gw_request *req)
{
    const struct gw_config *cfg = req->cfg;
    if (gw_request_header_count(req, "Origin") > 1 ||
        !origin_allowed(cfg, gw_request_header(req, "Origin"))) {
        answer_protocol_error(req, 403, JSONRPC_INVALID_REQUEST, "protocol.origin",
                              "Forbidden: this Origin is not allowed (server.allowed_origins)");
        return 0;
    }
    if (!host_allowed(cfg, gw_request_header(req, "Host"))) {
        answer_protocol_error(req, 403, JSONRPC_INVALID_REQUEST, "protocol.host",
                              "Forbidden: this Host is not one the gateway answers to "
                              "(server.allowed_hosts)");
        return 0;
    }
    return 1;
}

/* ---- the request's way ---- */

static void on_decided(struct gw_request *req, int verdict)
{
    struct exchange *x = req->exchange;
    if (!x->conn) {
        /* The client left while a layer was deciding. */
        exchange_finish(x, 1);
        return;
    }
    if (verdict == GW_PASS && ask_take_answer(x))
        return; /* a client's answer to a prompt of toolgate's (core/ask.h) */
    if (verdict == GW_PASS)
        x->kind->forward(x);
    else
        answer_denied(x);
}

static void handle_request(void *ctx, struct gw_conn *c, struct http1_parser *p)
{
    (void)ctx;
    struct gw_worker *w = gw_conn_worker(c);
    const struct gw_config *cfg = gw_worker_config(w);

    if (gw_slice_eq(p->path, "/healthz")) {
        if (p->method != GW_HTTP_GET) {
            static const struct gw_header allow = {GW_SLICE_LIT("Allow"), GW_SLICE_LIT("GET")};
            simple(c, 405, "{\"error\":\"method not allowed\"}", &allow, 1);
            return;
        }
        simple(c, 200, gw_worker_stopping(w) ? "{\"status\":\"draining\"}" : "{\"status\":\"ok\"}",
               NULL, 0);
        return;
    }
    if (proxy_handle_well_known(c, p))
        return;

    const struct gw_route *route = gw_config_route_for(cfg, p->path.ptr, p->path.len);
    if (!route) {
        simple(c, 404,
               "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32601,\"message\":\"No "
               "route for this path\"}}",
               NULL, 0);
        return;
    }
    if (p->method == GW_HTTP_OTHER) {
        static const struct gw_header allow = {GW_SLICE_LIT("Allow"),
                                               GW_SLICE_LIT("GET, POST, DELETE")};
        simple(c, 405,
               "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,\"message\":\"Method "
               "not allowed: use POST, GET or DELETE\"}}",
               &allow, 1);
        return;
    }

    struct exchange *x = exchange_new(c, route);
    if (!x) {
        simple(c, 503, "{\"error\":\"out of memory\"}", NULL, 0);
        return;
    }
    struct gw_request *req = x->req;
    req->method = p->method;
    req->method_name = p->method_name;
    req->path = p->path;
    req->query = p->query;
    req->headers = p->headers;
    req->n_headers = p->n_headers;
    req->body = (struct gw_slice){p->body.data ? p->body.data : "", p->body.len};
    if (rebinding_check(req))
        x->kind->prepare(x);
    gw_pipeline_start(req, on_decided);
}

/*
 * Documents under /.well-known/ come from the modules that serve them (OAuth protected
 * resource metadata, the injected tokens' JWKS). Browser-based MCP clients fetch these across
 * origins, hence the CORS header. Any other path under the prefix is 404.
 */
int proxy_handle_well_known(struct gw_conn *c, struct http1_parser *p)
{
    static const char prefix[] = "/.well-known/";
    if (p->path.len < sizeof prefix - 1 || memcmp(p->path.ptr, prefix, sizeof prefix - 1) != 0)
        return 0;
    const struct gw_config *cfg = gw_worker_config(gw_conn_worker(c));
    static const struct gw_header extra[] = {
        {GW_SLICE_LIT("Cache-Control"), GW_SLICE_LIT("max-age=300")},
        {GW_SLICE_LIT("Access-Control-Allow-Origin"), GW_SLICE_LIT("*")},
    };
    struct gw_buf body = {0};
    int rc = 0;
    for (size_t m = 0; m < gw_n_modules && rc == 0; m++) {
        if (!gw_modules[m]->well_known)
            continue;
        gw_buf_reset(&body);
        rc = gw_modules[m]->well_known(cfg, p->path, &body);
    }
    if (rc == 1 && p->method != GW_HTTP_GET) {
        static const struct gw_header allow = {GW_SLICE_LIT("Allow"), GW_SLICE_LIT("GET")};
        simple(c, 405, "{\"error\":\"method not allowed\"}", &allow, 1);
    } else if (rc == 1) {
        answer_simple(c, 200, body.data ? body.data : "", body.len, extra, 2);
    } else if (rc == -1) {
        simple(c, 503, "{\"error\":\"unavailable\"}", NULL, 0);
    } else {
        simple(c, 404, "{\"error\":\"not found\"}", NULL, 0);
    }
    gw_buf_free(&body);
    return 1;
}

const struct gw_handler *proxy_handler(void)
{
    static const struct gw_handler h = {handle_request, NULL};
    return &h;
}
