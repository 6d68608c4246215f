/*
 * kinds: the one list of route kinds, in the order they are asked to claim a route. Adding a
 * kind is its folder under src/routes/ plus one line here.
 */
#include "core/route_kind.h"
#include "routes/federation/fed_route.h"
#include "routes/rest/rest.h"

#include <stddef.h>

const struct gw_route_kind *const gw_route_kinds[] = {
    &gw_relay_kind,
    &fed_route_kind,
    &rest_route_kind,
};

const size_t gw_n_route_kinds = sizeof gw_route_kinds / sizeof gw_route_kinds[0];
