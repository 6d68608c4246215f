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

#include "core/buf.h"

#define JSONRPC_PARSE_ERROR -32700
#define JSONRPC_INVALID_REQUEST -32600
#define JSONRPC_METHOD_NOT_FOUND -32601
#define JSONRPC_INVALID_PARAMS -32602
#define JSONRPC_INTERNAL_ERROR -32603

enum mcp_kind { MCP_REQUEST, MCP_NOTIFICATION, MCP_RESPONSE, MCP_ERROR_RESPONSE };

struct mcp_message {
    enum mcp_kind kind;
    json_t *json;       /* the whole message; owned (one reference) */
    const char *method; /* borrowed from json; NULL for responses */
    json_t *id;         /* borrowed; NULL for notifications; string or integer */
    /* For tools/call and prompts/get: params.name; for resources/read: params.uri. */
    const char *target;
    json_t *arguments; /* borrowed params.arguments when it is an object, else NULL */
};

struct mcp_batch {
    struct mcp_message *msgs;
    size_t n;
    int is_batch; /* the body was a JSON array */
};

struct mcp_limits {
    size_t max_bytes; /* body size bound (the server enforces it too) */
    size_t max_depth; /* nesting of arrays/objects */
    size_t max_batch; /* messages in one batch */
};

struct mcp_decode_error {
    int code;          /* JSONRPC_PARSE_ERROR or JSONRPC_INVALID_REQUEST */
    char message[160]; /* safe to send to the client: no input echoed */
    json_t *id;        /* the id when it could be recovered (owned reference), else NULL */
};

/*
 * Decodes a POST body. `protocol_version` is the client's MCP-Protocol-Version header (NULL
 * when absent); batches (JSON arrays) are accepted only for "2025-03-26". On success returns 0
 * and fills out (free with mcp_batch_free). On failure returns -1 and fills err (free err->id
 * with json_decref).
 */
int mcp_decode(const char *buf, size_t len, const struct mcp_limits *lim,
               const char *protocol_version, struct mcp_batch *out, struct mcp_decode_error *err);
void mcp_batch_free(struct mcp_batch *batch);

/*
 * Checks nesting depth of JSON text without parsing it: returns 0 when no array/object
 * nests deeper than max_depth, -1 otherwise. Strings are skipped correctly.
 */
int json_depth_ok(const char *buf, size_t len, size_t max_depth);

/*
 * Appends a JSON-RPC error response: {"jsonrpc":"2.0","id":<id|null>,"error":{code,message,
 * data?}}. `data` may be NULL (not stolen).
 */
int jsonrpc_error_body(struct gw_buf *out, const json_t *id, int code, const char *message,
                       const json_t *data);

/* Appends a JSON-RPC result response {"jsonrpc":"2.0","id":id,"result":result}. */
int jsonrpc_result_body(struct gw_buf *out, const json_t *id, const json_t *result);

#endif
