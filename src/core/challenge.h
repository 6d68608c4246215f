/*
 * challenge: the OAuth 2.0 bearer challenge (RFC 6750 §3) toolgate answers with, pointing
 * MCP clients at the protected resource metadata (RFC 9728 §5.1).
 */
#ifndef GW_CORE_CHALLENGE_H
#define GW_CORE_CHALLENGE_H

#include <stddef.h>

#include "core/request.h"

/*
 * Writes the value of a WWW-Authenticate header into out (NUL-terminated, truncated safely):
 *   Bearer resource_metadata="<public_url>/.well-known/oauth-protected-resource<route path>"
 * followed by `, error="<error>"` and `, error_description="<description>"` when those are
 * non-NULL, and `, scope="<scope>"` when scope is non-NULL and non-empty. `error` is one of
 * "invalid_request", "invalid_token", "insufficient_scope". The description must be text
 * written by toolgate (it is not escaped beyond dropping quotes and backslashes).
 */
void gw_challenge(const struct gw_request *req, const char *error, const char *description,
                  const char *scope, char *out, size_t outlen);

/*
 * Fills d as a 403 insufficient_scope denial naming the scopes that would allow the call
 * (space-separated). Any layer that decides on scopes may use it; returns GW_DENY.
 */
int gw_deny_insufficient_scope(struct gw_request *req, struct gw_decision *d, const char *scopes,
                               const char *rule_id);

#endif
