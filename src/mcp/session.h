/*
 * session: which verified user owns each MCP session (Mcp-Session-Id), so a session id that
 * leaks cannot be used by someone else: the identity layer answers 404 to another user.
 *
 * Process-wide, thread-safe and bounded. Only hashes are stored: SHA-256 of the session id
 * and SHA-256 of (issuer, NUL, subject); a memory dump yields neither ids nor user names.
 * Set-associative like the token cache: an id picks a set of entries under one mutex; idle
 * entries expire, and a full set drops its least recently used entry (the backend still
 * decides whether that session exists).
 */
#ifndef GW_MCP_SESSION_H
#define GW_MCP_SESSION_H

#include <stddef.h>
#include <stdint.h>

/* Longer ids are refused (they are not ids any MCP server issues). */
#define MCP_SESSION_MAX_ID 256

/*
 * Sizes the map (at least max_entries) and sets the idle expiry; drops every binding.
 * Called by identity_start; defaults (100000 entries, 1h) apply until then.
 * Returns 0 or -1 (memory).
 */
int mcp_session_configure(size_t max_entries, uint64_t idle_ms);
/* Frees the map (bindings are lost). */
void mcp_session_shutdown(void);

/*
 * Binds id to (issuer, sub), replacing an earlier binding of the same id. Called by the
 * proxy when an upstream answer carries Mcp-Session-Id. Returns 0, or -1 (bad id, memory).
 */
int mcp_session_bind(const char *id, const char *issuer, const char *sub);
/*
 * 0: id is bound to this user (its idle timer restarts); 1: id unknown or expired (let the
 * backend decide); -1: bound to another user, or an id that cannot be valid.
 */
int mcp_session_check(const char *id, const char *issuer, const char *sub);
/* Forgets id (DELETE of the session, or the backend said 404). */
void mcp_session_forget(const char *id);
/* Bindings currently held (for tests and metrics). */
size_t mcp_session_count(void);

#endif
