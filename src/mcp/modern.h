/*
 * modern: what revision 2026-07-28 (stateless) asks of a request before anything may judge it.
 *
 * Every request is self-describing: params._meta names its revision
 * ("io.modelcontextprotocol/protocolVersion", equal to the MCP-Protocol-Version header) and
 * the client's capabilities ("io.modelcontextprotocol/clientCapabilities", an object), and
 * headers mirror the body so that intermediaries can route without parsing it: Mcp-Method
 * (the method), Mcp-Name (params.name of tools/call and prompts/get, params.uri of
 * resources/read) and Mcp-Param-<Name> (tool arguments the tool's schema marks with
 * x-mcp-header). toolgate parses the body anyway, so it holds the headers to the body, after
 * decoding them, before identity, policy or routing run: a header that disagrees with the
 * body, or one that is missing, is refused (HTTP 400, -32020), so no layer and no backend can
 * be told two different things. Policy decides from the body; the headers go upstream only
 * once they are known to say the same.
 *
 * Values in these headers are plain (visible ASCII, spaces and tabs inside) or, for anything
 * else, "=?base64?<standard base64 of the UTF-8 bytes>?=".
 *
 * Clients' info and capabilities in _meta are the client's own claims: nothing here or in
 * any layer uses them to authorize.
 */
#ifndef GW_MCP_MODERN_H
#define GW_MCP_MODERN_H

#include <stddef.h>

#include "lib/buf.h"
#include "mcp/jsonrpc.h"

#define MCP_META_VERSION "io.modelcontextprotocol/protocolVersion"
#define MCP_META_CAPABILITIES "io.modelcontextprotocol/clientCapabilities"

/* Bounds on the mirrored headers. */
#define MCP_MAX_PARAM_HEADERS 32
#define MCP_MAX_HEADER_VALUE 8192

struct mcp_header_view {
    const char *name; /* as sent; compared without case */
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* The mirrored headers of one request, as the client sent them (borrowed). */
struct mcp_modern_headers {
    const char *method; /* Mcp-Method, NULL when absent */
    size_t method_len;
    const char *name; /* Mcp-Name, NULL when absent */
    size_t name_len;
    int method_count, name_count;                         /* how many times each was sent */
    struct mcp_header_view params[MCP_MAX_PARAM_HEADERS]; /* Mcp-Param-* */
    size_t n_params;
    int too_many_params;
};

struct mcp_modern_error {
    int http_status;   /* 400 */
    int code;          /* MCP_HEADER_MISMATCH or JSONRPC_INVALID_PARAMS */
    char message[200]; /* safe to send: names headers and fields, never echoes values */
};

/*
 * Decodes a mirrored header value: plain, or the base64 form. Appends the bytes to out and
 * returns 0; -1 when it is malformed (control characters, leading or trailing whitespace in
 * the plain form, bad base64, or bytes that are not UTF-8).
 */
int mcp_header_value_decode(const char *v, size_t len, struct gw_buf *out);
/* Encodes s for a mirrored header (plain when it may be, the base64 form otherwise). */
int mcp_header_value_encode(const char *s, size_t len, struct gw_buf *out);

/*
 * Whether the message claims a revision in params._meta, and which (borrowed; NULL when it
 * claims none).
 */
const char *mcp_meta_version(const struct mcp_message *m);

/*
 * Checks a decoded request of revision 2026-07-28 against its envelope and headers: _meta
 * present with the revision equal to `version` and the capabilities an object (-32602
 * otherwise), Mcp-Method sent once and equal to the method, Mcp-Name sent once and equal to
 * the target for tools/call, prompts/get and resources/read (a URI compared in canonical
 * form) and absent elsewhere, Mcp-Param-* only on tools/call, each a token name and a value
 * equal to an argument of the call (a string, an integer by value, or a boolean). Returns 0,
 * or -1 with err filled.
 */
int mcp_modern_check(const struct mcp_message *m, const char *version,
                     const struct mcp_modern_headers *h, struct mcp_modern_error *err);

/*
 * Whether an Mcp-Param value (as sent) still stands for an argument of m as it goes upstream:
 * a value the safety layer redacted in the body no longer does, and its header must not
 * carry the original on.
 */
int mcp_param_still_mirrors(const struct mcp_message *m, const char *value, size_t len);

/* Whether a header value (as sent, either form) stands for the argument v (NULL: none). */
int mcp_param_value_matches(const json_t *v, const char *value, size_t len);

/* Whether a method's requests carry Mcp-Name: tools/call, prompts/get, resources/read. */
int mcp_method_has_name(const char *method);

/* Whether an x-mcp-header name is one a header can carry (an RFC 9110 token, 1..64 bytes). */
int mcp_header_name_ok(const char *name);

#endif
