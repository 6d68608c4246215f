/*
 * jsonrpc: decoding of client JSON-RPC 2.0 messages (MCP) into the request context, and the
 * encoding of error answers.
 *
 * Decoding is strict: jansson with JSON_REJECT_DUPLICATES (a duplicate key is a parser
 * differential between gateway and backend), invalid UTF-8 and NUL in strings rejected, the
 * nesting depth and the size bounded before the parser runs. The original bytes are what
 * gets forwarded; the decoded tree is for the layers to inspect.
 */
#ifndef GW_JSONRPC_H
#define GW_JSONRPC_H

#include <jansson.h>
#include <stddef.h>

#include "lib/buf.h"
#include "mcp/methods.h"

#define JSONRPC_PARSE_ERROR -32700
#define JSONRPC_INVALID_REQUEST -32600
#define JSONRPC_METHOD_NOT_FOUND -32601
#define JSONRPC_INVALID_PARAMS -32602
#define JSONRPC_INTERNAL_ERROR -32603
/* 2026-07-28: headers and body disagree; a revision toolgate does not serve. */
#define MCP_HEADER_MISMATCH -32020
#define MCP_MISSING_CAPABILITY -32021
#define MCP_UNSUPPORTED_VERSION -32022
/* Resources one subscriptions/listen may name. */
#define MCP_MAX_LISTEN_URIS 256

enum mcp_kind { MCP_REQUEST, MCP_NOTIFICATION, MCP_RESPONSE, MCP_ERROR_RESPONSE };

struct mcp_message {
    enum mcp_kind kind;
    json_t *json;       /* the whole message; owned (one reference) */
    const char *method; /* borrowed from json; NULL for responses */
    json_t *id;         /* borrowed; NULL for notifications; string or integer */
    /* The method's entry in the table of its revision; NULL for responses and for methods
     * the operator let through (routes[].allow_methods). */
    const struct mcp_method *spec;
    /*
     * A governed action's target: the tool or prompt name, or the resource URI in canonical
     * form (lib/uri), borrowed from json; target_kind says which (a completion names a prompt
     * or a resource).
     */
    const char *target;
    enum mcp_target target_kind;
    json_t *arguments; /* borrowed params.arguments when it is an object, else NULL */
    int rewritten;     /* the decoder rewrote json (a URI made canonical): re-encode it */
};

struct mcp_batch {
    struct mcp_message *msgs;
    size_t n;
    int is_batch; /* the body was a JSON array */
};

/* A zero field means the default (1 MiB, 64 levels, 100 messages), never "unbounded". */
struct mcp_limits {
    size_t max_bytes; /* body size bound (the server enforces it too) */
    size_t max_depth; /* nesting of arrays/objects */
    size_t max_batch; /* messages in one batch */
    /* Methods the operator lets through besides the table (NULL-terminated; may be NULL). */
    char *const *allow_methods;
};

struct mcp_decode_error {
    /* JSONRPC_PARSE_ERROR, JSONRPC_INVALID_REQUEST, JSONRPC_INVALID_PARAMS (a governed
     * method's params malformed) or JSONRPC_INTERNAL_ERROR (out of memory). */
    int code;
    char message[160]; /* safe to send to the client: no input echoed */
    json_t *id;        /* the id when it could be recovered (owned reference), else NULL */
};

/*
 * Decodes a POST body. `protocol_version` is the client's MCP-Protocol-Version header (NULL
 * when absent); batches (JSON arrays) are accepted only for "2025-03-26". On success returns 0
 * and fills out (free with mcp_batch_free). On failure returns -1 and fills err (free err->id
 * with json_decref); out is left empty.
 *
 * Rules: size and depth are checked before the parser runs (too large -> -32600, too deep or
 * not JSON -> -32700). Each message is an object with "jsonrpc":"2.0"; "method" (non-empty
 * string) with an "id" (string or integer) is a request, without one a notification; "result"
 * or "error" (object with integer code and string message) with an id and no method is a
 * response. "params", when present, is an object.
 *
 * Closed world: the protocol version must be one toolgate knows (-32600 otherwise), and every
 * request and notification's method must be in the method table of that revision for the
 * client's direction (mcp/methods.h) or listed in lim->allow_methods, else -32601. Governed
 * actions must be requests with their target: tools/call and prompts/get a name of the
 * permitted characters (and params.arguments, when present, an object), resources/read,
 * subscribe and unsubscribe a URI, made canonical in place (`rewritten`), completion/complete
 * a ref naming a prompt or a resource. A batch is refused as a whole when any element is
 * invalid (err->id is then NULL), when two elements share an id, when it is empty, longer
 * than max_batch, or holds an initialize request.
 */
int mcp_decode(const char *buf, size_t len, const struct mcp_limits *lim,
               const char *protocol_version, struct mcp_batch *out, struct mcp_decode_error *err);
void mcp_batch_free(struct mcp_batch *batch);

/*
 * Parses one message from upstream (a JSON body, or the data of one SSE event) with the same
 * strictness as mcp_decode: depth checked first (max_depth 0 means 64), duplicate keys,
 * invalid UTF-8 and NUL escapes rejected. Only an object or an array is accepted; the
 * JSON-RPC shape is not checked. The caller bounds the length. Returns 0 and a new reference
 * in *out (json_decref it), or -1 with *out NULL.
 */
int mcp_parse_message(const char *buf, size_t len, size_t max_depth, json_t **out);

/*
 * Checks nesting depth of JSON text without parsing it: returns 0 when no array/object
 * nests deeper than max_depth, -1 otherwise. Strings are skipped correctly.
 */
int json_depth_ok(const char *buf, size_t len, size_t max_depth);

/*
 * Appends a JSON-RPC error response: {"jsonrpc":"2.0","id":<id|null>,"error":{code,message,
 * data?}}, compact. `id` and `data` are borrowed and may be NULL; `message` is text of ours
 * (UTF-8). Returns 0, or -1 with the buffer unchanged.
 */
int jsonrpc_error_body(struct gw_buf *out, const json_t *id, int code, const char *message,
                       const json_t *data);

/* Appends a JSON-RPC result response {"jsonrpc":"2.0","id":id,"result":result}, compact; id
 * (borrowed) NULL writes null. Returns 0, or -1 with the buffer unchanged. */
int jsonrpc_result_body(struct gw_buf *out, const json_t *id, const json_t *result);

#endif
