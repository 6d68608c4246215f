/* rest: the REST tool route kind (routes[].kind: rest). */
#ifndef GW_ROUTES_REST_H
#define GW_ROUTES_REST_H

#include <stddef.h>

#include "core/request.h"
#include "core/route_kind.h"

extern const struct gw_route_kind rest_route_kind;

/*
 * {"error": {code, message, layer, rule, retry_after_ms, request_id}}: a denial or an error
 * in plain HTTP terms (layer NULL: toolgate's own). malloc'd; *len its length.
 */
char *rest_error_body(const struct gw_request *req, const struct gw_decision *d, const char *layer,
                      size_t *len);

#endif
