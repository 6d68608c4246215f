/*
 * federation: one client-facing MCP endpoint in front of several backends.
 *
 * A route with more than one backend is federated: toolgate owns the client's session
 * (answers initialize, ping and notifications itself), opens a session with each backend
 * lazily, per client session, and presents the backends' tools under their prefixes
 * ("ehr." + "get_patient"). tools/list pages through the backends in configuration order; the
 * cursor toolgate hands out names the backend and that backend's own cursor. tools/call goes
 * to the backend its prefix names, with the prefix taken off.
 *
 * The client's session is one of toolgate's (mcp/session.h), standing for one backend
 * session per backend, opened lazily; the identity layer finds it for each request.
 */
#ifndef GW_FEDERATION_H
#define GW_FEDERATION_H

#include <jansson.h>
#include <stddef.h>

#include "lib/buf.h"
#include "core/config.h"

/* True when the route federates its backends. */
int fed_route_is_federated(const struct gw_route *route);

/*
 * The backend whose prefix starts `tool` (the longest match), and the backend's own name for
 * the tool in *rest. NULL when no prefix matches.
 */
const struct gw_backend *fed_backend_for_tool(const struct gw_route *route, const char *tool,
                                              const char **rest);

/* Index of a backend in its route, or -1. */
int fed_backend_index(const struct gw_route *route, const struct gw_backend *b);

/*
 * Cursors: toolgate's cursor for tools/list is "<backend index>:<backend cursor>" encoded as
 * base64url, so clients treat it as opaque. Decoding fails (-1) on anything else; *backend_cursor
 * is malloc'd (NULL when the backend's first page is meant).
 */
char *fed_cursor_encode(size_t backend_index, const char *backend_cursor);
int fed_cursor_decode(const char *cursor, size_t n_backends, size_t *backend_index,
                      char **backend_cursor);

/*
 * Rewrites a backend's tools/list result in place for the client: every tool's name gets the
 * backend's prefix; nextCursor becomes toolgate's (this backend's next page, else the next
 * backend's first page, else none). Returns 0, or -1 when the message is not a usable result.
 */
int fed_rewrite_tools_list(json_t *msg, const struct gw_route *route, size_t backend_index);

#endif
