/* fed_route: the route kind of an MCP route with several backends (federation.h). */
#ifndef GW_ROUTES_FED_ROUTE_H
#define GW_ROUTES_FED_ROUTE_H

#include "core/route_kind.h"

extern const struct gw_route_kind fed_route_kind;

#endif
