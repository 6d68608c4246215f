/*
 * limits layer: pipeline slot. Until the limits issue fills it, the slot passes every request
 * through unchanged; the slot exists so the pipeline order is fixed in one place.
 */
#include "layers/layer.h"

const struct gw_layer_ops limits_layer = {
    .name = "limits",
    .check = NULL,
};
