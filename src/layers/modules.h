/*
 * modules: the one list of the build's modules, in pipeline order (stdio and telemetry, last,
 * have no layer: stdio runs local backends, telemetry has only observer hooks). Adding a layer
 * is its folder plus one line here: X(name, NAME) declares `name_module` (struct gw_module,
 * defined in the layer's folder) and its stage GW_STAGE_NAME.
 */
#ifndef GW_LAYERS_MODULES_H
#define GW_LAYERS_MODULES_H

#include "core/module.h"

#define GW_MODULE_LIST(X)                                                                          \
    X(identity, IDENTITY)                                                                          \
    X(safety, SAFETY)                                                                              \
    X(policy, POLICY)                                                                              \
    X(limits, LIMITS)                                                                              \
    X(routing, ROUTING)                                                                            \
    X(audit, AUDIT)                                                                                \
    X(stdio, STDIO)                                                                                \
    X(telemetry, TELEMETRY)

#define GW_MODULE_STAGE_(name, NAME) GW_STAGE_##NAME,
enum gw_stage { GW_MODULE_LIST(GW_MODULE_STAGE_) GW_STAGE_COUNT };
#undef GW_MODULE_STAGE_

#define GW_MODULE_DECLARE_(name, NAME) extern const struct gw_module name##_module;
GW_MODULE_LIST(GW_MODULE_DECLARE_)
#undef GW_MODULE_DECLARE_

#endif
