/*
 * claims: maps a verified token's payload to the request's identity through the configured
 * claim paths (subject, tenant, roles, scopes, client id).
 */
#ifndef GW_CLAIMS_H
#define GW_CLAIMS_H

#include <jansson.h>
#include <stdint.h>

#include "core/request-t.h"
#include "layers/identity/identity.h"

/* Bounds on what a token may carry into the request. Beyond them the token is refused
 * (dropping roles could silently skip a forbid rule keyed on one). */
#define CLAIMS_MAX_VALUES 64
#define CLAIMS_MAX_VALUE_LEN 256

/*
 * Looks a claim up: first as a literal top-level name (namespaced claims contain dots),
 * then by walking "a.b.c" through nested objects. Borrowed; NULL when absent.
 */
const json_t *claims_lookup(const json_t *payload, const char *path);

/*
 * Fills out (which must be empty) from payload: subject (required, a string, or an integer
 * written in decimal), tenant and client id (first string found), roles (union of strings
 * and string arrays), scopes (space-separated strings and string arrays), issuer and exp.
 * Returns 0 or JWT_E_CLAIMS (out left empty).
 */
int claims_map(const struct identity_claims_config *cc, const json_t *payload, const char *issuer,
               int64_t exp, struct gw_identity *out);

#endif
