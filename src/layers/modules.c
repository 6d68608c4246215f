#include "layers/modules.h"

#define GW_MODULE_ENTRY_(name, NAME) [GW_STAGE_##NAME] = &name##_module,
const struct gw_module *const gw_modules[] = {GW_MODULE_LIST(GW_MODULE_ENTRY_)};
#undef GW_MODULE_ENTRY_

const size_t gw_n_modules = GW_STAGE_COUNT;

_Static_assert(GW_STAGE_COUNT <= GW_MAX_STAGES, "more modules than GW_MAX_STAGES");
