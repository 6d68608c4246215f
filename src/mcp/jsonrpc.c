#include "mcp/jsonrpc.h"
#include "mcp/json_parse.h"
#include "mcp/json_write.h"
#include "lib/uri.h"
#include "mcp/methods.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Bounds used when the caller leaves a limit at zero. A zero must not mean "unbounded": the
 * decoder sees hostile input, so a forgotten limit falls back to the configuration defaults.
 */
#define MCP_DEFAULT_MAX_BYTES ((size_t)1 << 20)
#define MCP_DEFAULT_MAX_DEPTH ((size_t)64)
#define MCP_DEFAULT_MAX_BATCH ((size_t)100)

/*
 * Every message is read by mcp_json_parse (json_parse.h): duplicate keys are rejected (two
 * parsers picking different values is a policy bypass), so are "\u0000", invalid UTF-8 and
 * trailing bytes after the value.
 */

int json_depth_ok(const char *buf, size_t len, size_t max_depth)
{
    size_t depth = 0;
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_string) {
            /* A backslash escapes the next byte whatever it is, so "\\" and "\"" both end
             * the escape after one byte and a quote after an even run is the real end. */
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        switch (c) {
        case '"':
            in_string = 1;
            break;
        case '[':
        case '{':
            if (++depth > max_depth)
                return -1;
            break;
        case ']':
        case '}':
            /* Unbalanced closers are the parser's business; never let depth wrap. */
            if (depth > 0)
                depth--;
            break;
        default:
            break;
        }
    }
    return 0;
}

/* Fills err. The message is always text of ours: nothing from the input is echoed. */
static void set_error(struct mcp_decode_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(struct mcp_decode_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

static int id_is_valid(const json_t *id)
{
    /* MCP request ids are strings or integers; null is explicitly forbidden, and jansson
     * parses any number with a fraction or exponent ("1.0", "1e2") as a real. */
    return id && (json_is_string(id) || json_is_integer(id));
}

static int batch_allowed(const char *protocol_version)
{
    /* A missing MCP-Protocol-Version header means 2025-03-26, the only revision with
     * JSON-RPC batching; later revisions removed it. */
    return protocol_version == NULL || strcmp(protocol_version, "2025-03-26") == 0;
}

/* Returns the version when it looks like a revision date (safe to repeat), else NULL. */
static const char *printable_version(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > 10)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || v[i] == '-'))
            return NULL;
    return v;
}

/* Decode context: the request's revision and what the operator lets through besides. */
struct decode_ctx {
    unsigned version;
    char *const *allow_methods;
};

static int operator_allowed(const struct decode_ctx *ctx, const char *method)
{
    for (char *const *m = ctx->allow_methods; m && *m; m++)
        if (strcmp(*m, method) == 0)
            return 1;
    return 0;
}

/* A tool or prompt name: present, and of the characters names are made of. */
static int check_name_param(const json_t *obj, const char *method, struct mcp_decode_error *err,
                            const char **out)
{
    const json_t *v = json_object_get(obj, "name");
    if (!json_is_string(v) || !mcp_name_ok(json_string_value(v), json_string_length(v))) {
        set_error(err, JSONRPC_INVALID_PARAMS,
                  "Invalid params: %s needs a name of 1 to 128 letters, digits, '_', '-', '.' or "
                  "'/'",
                  method);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/*
 * A resource URI: present, made canonical (lib/uri) and written back in canonical form, so
 * that the layers judge and the backend receives the same URI. Sets *rewritten when it
 * changed.
 */
static int check_uri_param(json_t *obj, const char *method, struct mcp_decode_error *err,
                           const char **out, int *rewritten)
{
    json_t *v = json_object_get(obj, "uri");
    if (!json_is_string(v) || json_string_length(v) == 0) {
        set_error(err, JSONRPC_INVALID_PARAMS,
                  "Invalid params: %s needs params.uri as a non-empty string", method);
        return -1;
    }
    struct gw_buf c = {0};
    const char *why = NULL;
    if (strlen(json_string_value(v)) != json_string_length(v) ||
        gw_uri_canonical(json_string_value(v), json_string_length(v), &c, &why) != 0) {
        gw_buf_free(&c);
        set_error(err, JSONRPC_INVALID_PARAMS, "Invalid params: the resource URI %s",
                  why ? why : "has a NUL byte");
        return -1;
    }
    if (c.len != json_string_length(v) || memcmp(c.data, json_string_value(v), c.len) != 0) {
        if (json_object_set_new(obj, "uri", json_stringn(c.data, c.len)) != 0) {
            gw_buf_free(&c);
            set_error(err, JSONRPC_INTERNAL_ERROR, "Internal error: out of memory");
            return -1;
        }
        *rewritten = 1;
        v = json_object_get(obj, "uri");
    }
    gw_buf_free(&c);
    *out = json_string_value(v);
    return 0;
}

/*
 * subscriptions/listen (2026-07-28): params.notifications is an object, and the resources it
 * subscribes to (resourceSubscriptions, at most MCP_MAX_LISTEN_URIS) are URIs made canonical
 * like any other, since the policy layer decides each as a read of that resource.
 */
static int check_listen(json_t *params, struct mcp_decode_error *err, int *rewritten)
{
    json_t *n = json_object_get(params, "notifications");
    if (!json_is_object(n)) {
        set_error(err, JSONRPC_INVALID_PARAMS,
                  "Invalid params: subscriptions/listen needs params.notifications as an object");
        return -1;
    }
    json_t *uris = json_object_get(n, "resourceSubscriptions");
    if (!uris)
        return 0;
    if (!json_is_array(uris) || json_array_size(uris) > MCP_MAX_LISTEN_URIS) {
        set_error(err, JSONRPC_INVALID_PARAMS,
                  "Invalid params: resourceSubscriptions must be a list of at most %d URIs",
                  MCP_MAX_LISTEN_URIS);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(uris); i++) {
        json_t *wrap = json_pack("{s:O}", "uri", json_array_get(uris, i));
        const char *canon = NULL;
        int changed = 0;
        if (!wrap || check_uri_param(wrap, "subscriptions/listen", err, &canon, &changed) != 0) {
            if (!wrap)
                set_error(err, JSONRPC_INTERNAL_ERROR, "Internal error: out of memory");
            json_decref(wrap);
            return -1;
        }
        if (changed) {
            json_array_set(uris, i, json_object_get(wrap, "uri"));
            *rewritten = 1;
        }
        json_decref(wrap);
    }
    return 0;
}

/*
 * Classifies a client message by the method table of its revision, and checks the target of
 * a governed action: a tool or prompt name, a canonical resource URI, a completion's ref.
 */
static int check_method(struct mcp_message *msg, json_t *params, const struct decode_ctx *ctx,
                        struct mcp_decode_error *err)
{
    const char *m = msg->method;
    unsigned dir = msg->kind == MCP_REQUEST ? MCP_DIR_CLIENT_REQUEST : MCP_DIR_CLIENT_NOTIFICATION;
    msg->spec = mcp_method_lookup(m, ctx->version, dir);
    if (!msg->spec) {
        if (operator_allowed(ctx, m))
            return 0;
        /* Known in another direction or revision, or not at all: not let through. */
        set_error(err, JSONRPC_METHOD_NOT_FOUND, "Method not found");
        return -1;
    }
    if (strcmp(m, "subscriptions/listen") == 0)
        return check_listen(params, err, &msg->rewritten);
    if (msg->spec->cls != MCP_CLASS_ACTION)
        return 0;
    if (!params) {
        set_error(err, JSONRPC_INVALID_PARAMS, "Invalid params: %s needs params", m);
        return -1;
    }
    msg->target_kind = msg->spec->target;
    switch (msg->spec->target) {
    case MCP_TARGET_TOOL:
    case MCP_TARGET_PROMPT: {
        if (check_name_param(params, m, err, &msg->target) != 0)
            return -1;
        json_t *args = json_object_get(params, "arguments");
        if (args && !json_is_object(args)) {
            set_error(err, JSONRPC_INVALID_PARAMS,
                      "Invalid params: %s params.arguments must be an object", m);
            return -1;
        }
        msg->arguments = args;
        return 0;
    }
    case MCP_TARGET_RESOURCE:
        return check_uri_param(params, m, err, &msg->target, &msg->rewritten);
    case MCP_TARGET_REF: {
        json_t *ref = json_object_get(params, "ref");
        const char *type = json_string_value(json_object_get(ref, "type"));
        if (type && strcmp(type, "ref/prompt") == 0) {
            msg->target_kind = MCP_TARGET_PROMPT;
            return check_name_param(ref, m, err, &msg->target);
        }
        if (type && strcmp(type, "ref/resource") == 0) {
            msg->target_kind = MCP_TARGET_RESOURCE;
            return check_uri_param(ref, m, err, &msg->target, &msg->rewritten);
        }
        set_error(err, JSONRPC_INVALID_PARAMS,
                  "Invalid params: %s needs params.ref of type ref/prompt or ref/resource", m);
        return -1;
    }
    default:
        return 0;
    }
}

static int check_error_member(const json_t *error, struct mcp_decode_error *err)
{
    if (!json_is_object(error) || !json_is_integer(json_object_get(error, "code")) ||
        !json_is_string(json_object_get(error, "message"))) {
        set_error(
            err, JSONRPC_INVALID_REQUEST,
            "Invalid Request: error must be an object with an integer code and a string message");
        return -1;
    }
    return 0;
}

/*
 * Validates one message and fills msg (which borrows from m; the caller sets msg->json).
 * On failure fills err, including the id when it was a valid one so the answer can name it.
 */
static int validate_message(json_t *m, int in_batch, const struct decode_ctx *ctx,
                            struct mcp_message *msg, struct mcp_decode_error *err)
{
    memset(msg, 0, sizeof *msg);
    if (!json_is_object(m)) {
        set_error(err, JSONRPC_INVALID_REQUEST, "Invalid Request: a message must be a JSON object");
        return -1;
    }
    json_t *id = json_object_get(m, "id");
    json_t *version = json_object_get(m, "jsonrpc");
    json_t *method = json_object_get(m, "method");
    json_t *params = json_object_get(m, "params");
    json_t *result = json_object_get(m, "result");
    json_t *error = json_object_get(m, "error");
    int rc = -1;

    if (!json_is_string(version) || strcmp(json_string_value(version), "2.0") != 0) {
        set_error(err, JSONRPC_INVALID_REQUEST, "Invalid Request: jsonrpc must be \"2.0\"");
        goto out;
    }
    if (id && !id_is_valid(id)) {
        set_error(err, JSONRPC_INVALID_REQUEST,
                  "Invalid Request: id must be a string or an integer");
        goto out;
    }
    if (method) {
        if (!json_is_string(method) || json_string_length(method) == 0) {
            set_error(err, JSONRPC_INVALID_REQUEST,
                      "Invalid Request: method must be a non-empty string");
            goto out;
        }
        if (result || error) {
            set_error(err, JSONRPC_INVALID_REQUEST,
                      "Invalid Request: a request cannot carry result or error");
            goto out;
        }
        if (params && !json_is_object(params)) {
            set_error(err, JSONRPC_INVALID_REQUEST,
                      "Invalid Request: params must be an object (MCP uses named parameters)");
            goto out;
        }
        msg->kind = id ? MCP_REQUEST : MCP_NOTIFICATION;
        msg->method = json_string_value(method);
        msg->id = id;
        if (in_batch && strcmp(msg->method, "initialize") == 0) {
            set_error(err, JSONRPC_INVALID_REQUEST,
                      "Invalid Request: initialize must not be part of a batch");
            goto out;
        }
        if (check_method(msg, params, ctx, err) != 0)
            goto out;
        if (msg->spec && msg->spec->cls == MCP_CLASS_ACTION && msg->kind != MCP_REQUEST) {
            /* A governed action sent as a notification would reach the backend with no
             * answer to govern; the table has none, this guards operator additions too. */
            set_error(err, JSONRPC_INVALID_REQUEST,
                      "Invalid Request: %s must be a request with an id", msg->method);
            goto out;
        }
    } else if (result || error) {
        if (result && error) {
            set_error(err, JSONRPC_INVALID_REQUEST,
                      "Invalid Request: a response carries result or error, not both");
            goto out;
        }
        if (!id) {
            set_error(err, JSONRPC_INVALID_REQUEST, "Invalid Request: a response needs an id");
            goto out;
        }
        if (ctx->version == MCP_V_2026_07_28) {
            /* No server asks the client anything in this revision: nothing to answer. */
            set_error(err, JSONRPC_INVALID_REQUEST,
                      "Invalid Request: clients send no responses in revision 2026-07-28");
            goto out;
        }
        if (error && check_error_member(error, err) != 0)
            goto out;
        msg->kind = result ? MCP_RESPONSE : MCP_ERROR_RESPONSE;
        msg->id = id;
    } else {
        set_error(err, JSONRPC_INVALID_REQUEST,
                  "Invalid Request: a message needs a method, a result or an error");
        goto out;
    }
    rc = 0;
out:
    if (rc != 0) {
        json_decref(err->id);
        err->id = id_is_valid(id) ? json_incref(id) : NULL;
        memset(msg, 0, sizeof *msg);
    }
    return rc;
}

/* Two messages of one batch with the same id would make answers match the wrong request. */
static int duplicate_id(const struct mcp_batch *b, const json_t *id)
{
    for (size_t i = 0; id && i < b->n; i++)
        if (b->msgs[i].id && json_equal(b->msgs[i].id, id))
            return 1;
    return 0;
}

static int decode_batch(json_t *root, const char *protocol_version, const struct decode_ctx *ctx,
                        size_t max_batch, struct mcp_batch *out, struct mcp_decode_error *err)
{
    size_t n = json_array_size(root);
    if (!batch_allowed(protocol_version)) {
        const char *v = printable_version(protocol_version);
        if (v)
            set_error(err, JSONRPC_INVALID_REQUEST,
                      "Invalid Request: JSON-RPC batching is not supported in protocol version %s",
                      v);
        else
            set_error(
                err, JSONRPC_INVALID_REQUEST,
                "Invalid Request: JSON-RPC batching is not supported in this protocol version");
        return -1;
    }
    if (n == 0) {
        set_error(err, JSONRPC_INVALID_REQUEST, "Invalid Request: empty batch");
        return -1;
    }
    if (n > max_batch) {
        set_error(err, JSONRPC_INVALID_REQUEST,
                  "Invalid Request: a batch holds at most %zu messages", max_batch);
        return -1;
    }
    out->msgs = calloc(n, sizeof *out->msgs);
    if (!out->msgs) {
        set_error(err, JSONRPC_INTERNAL_ERROR, "Internal error: out of memory");
        return -1;
    }
    out->is_batch = 1;
    for (size_t i = 0; i < n; i++) {
        json_t *elem = json_array_get(root, i);
        int rc = validate_message(elem, 1, ctx, &out->msgs[i], err);
        if (rc == 0 && duplicate_id(out, out->msgs[i].id)) {
            set_error(err, JSONRPC_INVALID_REQUEST, "Invalid Request: the id is used twice");
            rc = -1;
        }
        if (rc != 0) {
            /* The whole batch is refused (fail closed): answering for the valid elements
             * while dropping one would let a client probe the gateway element by element.
             * The answer is for the batch, so it carries no element's id. */
            char detail[sizeof err->message];
            memcpy(detail, err->message, sizeof detail);
            set_error(err, err->code, "%.*s (batch element %zu)", 120, detail, i);
            json_decref(err->id);
            err->id = NULL;
            return -1;
        }
        out->msgs[i].json = json_incref(elem);
        out->n = i + 1;
    }
    return 0;
}

int mcp_decode(const char *buf, size_t len, const struct mcp_limits *lim,
               const char *protocol_version, struct mcp_batch *out, struct mcp_decode_error *err)
{
    size_t max_bytes = lim && lim->max_bytes ? lim->max_bytes : MCP_DEFAULT_MAX_BYTES;
    size_t max_depth = lim && lim->max_depth ? lim->max_depth : MCP_DEFAULT_MAX_DEPTH;
    size_t max_batch = lim && lim->max_batch ? lim->max_batch : MCP_DEFAULT_MAX_BATCH;
    json_t *root = NULL;
    int rc = -1;

    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);

    if (len > max_bytes) {
        set_error(err, JSONRPC_INVALID_REQUEST,
                  "Invalid Request: the message is larger than %zu bytes", max_bytes);
        goto out;
    }
    if (!buf || len == 0) {
        set_error(err, JSONRPC_PARSE_ERROR, "Parse error: empty body");
        goto out;
    }
    root = mcp_json_parse(buf, len, max_depth, MCP_JSON_ANY);
    if (!root && json_depth_ok(buf, len, max_depth) != 0) {
        set_error(err, JSONRPC_PARSE_ERROR, "Parse error: JSON nests deeper than %zu levels",
                  max_depth);
        goto out;
    }
    if (!root) {
        set_error(err, JSONRPC_PARSE_ERROR,
                  "Parse error: not valid JSON (UTF-8 only, no duplicate keys, no NUL escapes)");
        goto out;
    }
    struct decode_ctx ctx = {.version = mcp_version_bit(protocol_version),
                             .allow_methods = lim ? lim->allow_methods : NULL};
    if (!ctx.version) {
        set_error(err, JSONRPC_INVALID_REQUEST,
                  "Invalid Request: unsupported MCP-Protocol-Version (supported: %s)",
                  mcp_versions_supported());
        goto out;
    }
    if (json_is_array(root)) {
        if (decode_batch(root, protocol_version, &ctx, max_batch, out, err) != 0)
            goto out;
    } else {
        out->msgs = calloc(1, sizeof *out->msgs);
        if (!out->msgs) {
            set_error(err, JSONRPC_INTERNAL_ERROR, "Internal error: out of memory");
            goto out;
        }
        if (validate_message(root, 0, &ctx, &out->msgs[0], err) != 0)
            goto out;
        out->msgs[0].json = json_incref(root);
        out->n = 1;
    }
    rc = 0;
out:
    json_decref(root);
    if (rc != 0)
        mcp_batch_free(out);
    return rc;
}

void mcp_batch_free(struct mcp_batch *batch)
{
    if (!batch)
        return;
    for (size_t i = 0; i < batch->n; i++)
        json_decref(batch->msgs[i].json);
    free(batch->msgs);
    batch->msgs = NULL;
    batch->n = 0;
    batch->is_batch = 0;
}

int mcp_parse_message(const char *buf, size_t len, size_t max_depth, json_t **out)
{
    *out = NULL;
    if (!buf || len == 0)
        return -1;
    /* Only an object or an array is accepted: a JSON-RPC message or (2025-03-26) a batch. */
    json_t *root = mcp_json_parse(buf, len, max_depth ? max_depth : MCP_DEFAULT_MAX_DEPTH, 0);
    if (!root)
        return -1;
    *out = root;
    return 0;
}

/* Appends the compact encoding of a value (any type). */
static int append_json(struct gw_buf *out, const json_t *value)
{
    return mcp_json_write(out, value, 0);
}

static int append_envelope(struct gw_buf *out, const json_t *id)
{
    if (gw_buf_append_str(out, "{\"jsonrpc\":\"2.0\",\"id\":") != 0)
        return -1;
    if (!id)
        return gw_buf_append_str(out, "null");
    return append_json(out, id);
}

int jsonrpc_error_body(struct gw_buf *out, const json_t *id, int code, const char *message,
                       const json_t *data)
{
    size_t start = out->len;
    int rc = -1;
    if (append_envelope(out, id) != 0 || gw_buf_printf(out, ",\"error\":{\"code\":%d,", code) != 0)
        goto out;
    if (gw_buf_append_str(out, "\"message\":\"") != 0 ||
        gw_buf_append_json_escaped(out, message ? message : "", message ? strlen(message) : 0) !=
            0 ||
        gw_buf_append_str(out, "\"") != 0)
        goto out;
    if (data && (gw_buf_append_str(out, ",\"data\":") != 0 || append_json(out, data) != 0))
        goto out;
    if (gw_buf_append_str(out, "}}") != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0 && out->data) {
        /* Leave the buffer as it was: half a body must never be sent. */
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}

int jsonrpc_result_body(struct gw_buf *out, const json_t *id, const json_t *result)
{
    size_t start = out->len;
    int rc = -1;
    if (append_envelope(out, id) != 0 || gw_buf_append_str(out, ",\"result\":") != 0)
        goto out;
    if (result ? append_json(out, result) != 0 : gw_buf_append_str(out, "null") != 0)
        goto out;
    if (gw_buf_append_str(out, "}") != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0 && out->data) {
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}
