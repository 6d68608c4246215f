/*
 * layer: what a governance layer includes. The interface itself (struct gw_layer_ops inside
 * struct gw_module) and the pipeline are the core's (core/module.h, core/pipeline.h); the
 * stage numbers come from the one list of modules (layers/modules.h).
 */
#ifndef GW_LAYER_H
#define GW_LAYER_H

#include "core/module.h"
#include "core/pipeline.h"
#include "core/request.h"
#include "layers/modules.h"

#endif
