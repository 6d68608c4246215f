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
 * The session table is process-wide (any worker may serve the next request of a session),
 * bounded, and keyed by the session id toolgate issued; which user a session belongs to is
 * enforced by the identity layer's session binding (mcp/session.h).
 */
#ifndef GW_FEDERATION_H
#define GW_FEDERATION_H

#include <jansson.h>
#include <stddef.h>

#include "lib/buf.h"
#include "core/config.h"

#define FED_SESSION_ID_LEN 32

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

/* ---- the session table ---- */

/* Sets the bounds (entries, idle expiry); call before serving. */
void fed_sessions_configure(size_t max_entries, uint64_t idle_ms);
/* A new client session for a route; writes its id (FED_SESSION_ID_LEN + 1 bytes). 0 or -1. */
int fed_session_create(const struct gw_route *route, char *id_out);
/* 1 when the session exists (and refreshes it), 0 otherwise. */
int fed_session_exists(const char *id);
/*
 * The backend session id for backend_index (malloc'd copy into *out, NULL when none yet).
 * Returns 0, or -1 when the client session is unknown.
 */
int fed_session_backend(const char *id, size_t backend_index, char **out);
/* Records the backend's session id (copied). Returns 0 or -1 (unknown session, memory). */
int fed_session_set_backend(const char *id, size_t backend_index, const char *backend_sid);
/*
 * Removes the session; returns the backend session ids it had (malloc'd array of
 * n_backends entries, entries may be NULL; free with fed_strv_free) in *sids. 0 or -1.
 */
int fed_session_drop(const char *id, char ***sids, size_t *n);
void fed_strv_free(char **v, size_t n);
void fed_sessions_shutdown(void);

#endif
