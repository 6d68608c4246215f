/*
 * answers: what toolgate says itself. Denials become JSON-RPC errors, or tool results with
 * isError when a layer wants the model to read why; upstream failures become JSON-RPC errors
 * that carry the request's id (one per request of a batch); route kinds with a shape of
 * their own (REST) give their own error bodies.
 */
#include "core/exchange.h"
#include "lib/log.h"
#include "lib/timeutil.h"
#include "mcp/json_write.h"
#include "mcp/jsonrpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *decision_meta(const struct gw_request *req, const struct gw_decision *d)
{
    json_t *m = json_object();
    json_object_set_new(m, "layer", json_string(gw_request_denial_layer(req)));
    json_object_set_new(m, "reason", json_string(d->reason_code));
    if (d->rule_id[0])
        json_object_set_new(m, "rule", json_string(d->rule_id));
    if (d->retry_after_ms)
        json_object_set_new(m, "retry_after_ms", json_integer((json_int_t)d->retry_after_ms));
    json_object_set_new(m, "request_id", json_string(req->id));
    return m;
}

/*
 * Denials that must look exactly like "there is no such thing": a hidden tool answers as a
 * nonexistent one, a session owned by someone else as an unknown session, a tool the backend
 * never listed as what it is. Their answers carry no decision detail (the audit record has it).
 */
static int opaque_denial(const struct gw_decision *d)
{
    return strcmp(d->reason_code, "policy.hidden") == 0 ||
           strcmp(d->reason_code, "integrity.unlisted") == 0 ||
           strcmp(d->reason_code, "identity.unknown_session") == 0;
}

/*
 * The answer to one JSON-RPC request that was denied. A tools/call denied by a layer that
 * wants the model to see why (http 200, no JSON-RPC code) becomes a tool result with
 * isError; everything else a JSON-RPC error.
 */
static json_t *denial_for(const struct gw_request *req, const struct mcp_message *m,
                          const struct gw_decision *d)
{
    json_t *id = m && m->id ? json_incref(m->id) : json_null();
    json_t *out;
    if (m && m->method && strcmp(m->method, "tools/call") == 0 && d->http_status == 200 &&
        d->jsonrpc_code == 0 && req->denial_result && !req->rpc.is_batch) {
        /* The layer's own result (input_required): the call is not made, the client asked. */
        json_t *result = json_deep_copy(req->denial_result);
        json_t *meta = json_object();
        json_object_set_new(meta, "toolgate/decision", decision_meta(req, d));
        if (result)
            json_object_set_new(result, "_meta", meta);
        else
            json_decref(meta);
        out = json_pack("{s:s, s:o, s:o}", "jsonrpc", "2.0", "id", id, "result",
                        result ? result : json_object());
    } else if (m && m->method && strcmp(m->method, "tools/call") == 0 && d->http_status == 200 &&
               d->jsonrpc_code == 0) {
        json_t *meta = json_object();
        json_object_set_new(meta, "toolgate/decision", decision_meta(req, d));
        out = json_pack("{s:s, s:o, s:{s:[{s:s, s:s}], s:b, s:o}}", "jsonrpc", "2.0", "id", id,
                        "result", "content", "type", "text", "text", d->reason, "isError", 1,
                        "_meta", meta);
        /* 2026-07-28 results say what they are. */
        if (out && req->modern)
            json_object_set_new(json_object_get(out, "result"), "resultType",
                                json_string("complete"));
    } else if (opaque_denial(d)) {
        out = json_pack("{s:s, s:o, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id, "error", "code",
                        d->jsonrpc_code ? d->jsonrpc_code : -32003, "message",
                        d->reason[0] ? d->reason : "Not found");
        /* 2026-07-28: a resource not found names the URI asked for (the client's own). */
        if (out && req->modern && m && m->target && m->target_kind == MCP_TARGET_RESOURCE)
            json_object_set_new(json_object_get(out, "error"), "data",
                                json_pack("{s:s}", "uri", m->target));
    } else {
        int code = d->jsonrpc_code ? d->jsonrpc_code : -32003;
        json_t *data = json_object();
        if (req->protocol_error && d == &req->protocol_decision && req->protocol_error_data)
            json_object_update(data, req->protocol_error_data);
        json_object_set_new(data, "toolgate/decision", decision_meta(req, d));
        out = json_pack("{s:s, s:o, s:{s:i, s:s, s:o}}", "jsonrpc", "2.0", "id", id, "error",
                        "code", code, "message", d->reason[0] ? d->reason : "Denied", "data", data);
    }
    return out;
}

/* A JSON body answering every request of the batch (or the single request) with `one`. */
static char *denial_body(const struct gw_request *req, const struct gw_decision *d, size_t *len)
{
    json_t *body;
    if (req->rpc.is_batch) {
        body = json_array();
        for (size_t i = 0; i < req->rpc.n; i++)
            if (req->rpc.msgs[i].kind == MCP_REQUEST)
                json_array_append_new(body, denial_for(req, &req->rpc.msgs[i], d));
        if (json_array_size(body) == 0) {
            json_decref(body);
            body = denial_for(req, NULL, d);
        }
    } else {
        body = denial_for(req, req->rpc.n ? &req->rpc.msgs[0] : NULL, d);
    }
    char *s = mcp_json_dumps(body, 0);
    json_decref(body);
    *len = s ? strlen(s) : 0;
    return s;
}

void answer_json(struct exchange *x, int status, const char *body, size_t len,
                 const struct gw_header *extra, size_t n_extra)
{
    struct gw_request *req = x->req;
    req->response_status = status;
    req->response_bytes += len;
    struct gw_header all[5 + 4 + GW_MAX_RESPONSE_HEADERS];
    size_t n = 0;
    all[n++] = (struct gw_header){GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("application/json")};
    all[n++] = (struct gw_header){GW_SLICE_LIT("X-Request-Id"), {req->id, strlen(req->id)}};
    for (size_t i = 0; i < n_extra && i < 4; i++)
        all[n++] = extra[i];
    for (size_t i = 0; i < req->n_response_headers; i++)
        all[n++] = req->response_headers[i];
    exchange_hold_whole(x, status, all, n, body, len);
}

void answer_error(struct exchange *x, int status, int code, const char *message,
                  const char *reason_code)
{
    struct gw_decision d = {0};
    gw_decision_deny(&d, status, code, reason_code, message);
    struct gw_request *req = x->req;
    snprintf(req->upstream_error, sizeof req->upstream_error, "%s", reason_code);
    size_t len = 0;
    if (x->kind && x->kind->error_body) {
        int st = status;
        char *b = x->kind->error_body(req, &d, NULL, &st, &len);
        answer_json(x, st, b ? b : "", b ? len : 0, NULL, 0);
        free(b);
        exchange_finish(x, 0);
        return;
    }
    /* Built like a denial, but the deciding party is the upstream, not a governance layer. */
    json_t *body;
    json_t *data = json_pack("{s:{s:s, s:s, s:s}}", "toolgate/error", "reason", reason_code,
                             "message", message, "request_id", req->id);
    if (req->rpc.is_batch) {
        body = json_array();
        for (size_t i = 0; i < req->rpc.n; i++)
            if (req->rpc.msgs[i].kind == MCP_REQUEST)
                json_array_append_new(body,
                                      json_pack("{s:s, s:O, s:{s:i, s:s, s:O}}", "jsonrpc", "2.0",
                                                "id", req->rpc.msgs[i].id, "error", "code", code,
                                                "message", message, "data", data));
    } else {
        json_t *id = req->rpc.n && req->rpc.msgs[0].id ? req->rpc.msgs[0].id : json_null();
        body = json_pack("{s:s, s:O, s:{s:i, s:s, s:O}}", "jsonrpc", "2.0", "id", id, "error",
                         "code", code, "message", message, "data", data);
    }
    json_decref(data);
    char *s = body ? mcp_json_dumps(body, 0) : NULL;
    json_decref(body);
    len = s ? strlen(s) : 0;
    answer_json(x, status, s ? s : "", len, NULL, 0);
    free(s);
    exchange_finish(x, 0);
}

void answer_denied(struct exchange *x)
{
    struct gw_request *req = x->req;
    const struct gw_decision *d = gw_request_denial(req);
    size_t len = 0;
    int status = d->http_status ? d->http_status : 403;
    char *body = x->kind && x->kind->error_body
                     ? x->kind->error_body(req, d, gw_request_denial_layer(req), &status, &len)
                     : denial_body(req, d, &len);
    struct gw_header extra[2];
    size_t n = 0;
    char retry[32];
    if (req->www_authenticate[0])
        extra[n++] = (struct gw_header){GW_SLICE_LIT("WWW-Authenticate"),
                                        {req->www_authenticate, strlen(req->www_authenticate)}};
    if (d->retry_after_ms) {
        snprintf(retry, sizeof retry, "%llu",
                 (unsigned long long)((d->retry_after_ms + 999) / 1000));
        extra[n++] = (struct gw_header){GW_SLICE_LIT("Retry-After"), {retry, strlen(retry)}};
    }
    answer_json(x, status, body ? body : "", body ? len : 0, extra, n);
    free(body);
    exchange_finish(x, 0);
}

void answer_result(struct exchange *x, json_t *result, const struct gw_header *extra,
                   size_t n_extra)
{
    struct gw_request *req = x->req;
    const json_t *id = req->rpc.n ? req->rpc.msgs[0].id : NULL;
    json_t *msg = json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                            "result", result);
    if (!msg) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    /* The hooks see it like any answer (policy, safety, audit's result hash). */
    int modified = 0;
    struct gw_decision d = {0};
    msg = relay_hooks(x, msg, &modified, &d);
    char *out = msg ? mcp_json_dumps(msg, 0) : NULL;
    json_decref(msg);
    if (!out) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    answer_json(x, 200, out, strlen(out), extra, n_extra);
    free(out);
    exchange_finish(x, 0);
}

void answer_empty(struct exchange *x, int status)
{
    answer_json(x, status, "", 0, NULL, 0);
    exchange_finish(x, 0);
}

void answer_protocol_error(struct gw_request *req, int http_status, int code,
                           const char *reason_code, const char *message)
{
    req->protocol_error = 1;
    gw_decision_deny(&req->protocol_decision, http_status, code, reason_code, message);
}

void answer_simple(struct gw_conn *c, int status, const char *body, size_t len,
                   const struct gw_header *extra, size_t n_extra)
{
    char id[37];
    gw_uuid7(id);
    struct gw_header hdrs[4];
    size_t n = 0;
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("X-Request-Id"), {id, 36}};
    for (size_t i = 0; i < n_extra && n < 4; i++)
        hdrs[n++] = extra[i];
    gw_conn_respond(c, status, "application/json", body, len, hdrs, n);
    char fields[160];
    snprintf(fields, sizeof fields, "\"status\":%d,\"route\":\"\",\"bytes\":%zu", status, len);
    gw_log(GW_LOG_INFO, "request", id, fields, "%s", "answered by the gateway");
    gw_conn_end(c, 0);
}
