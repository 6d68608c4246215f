#include "core/module.h"

#include <string.h>

const struct gw_module *gw_module_find(const char *name)
{
    for (size_t i = 0; i < gw_n_modules; i++)
        if (strcmp(gw_modules[i]->name, name) == 0)
            return gw_modules[i];
    return NULL;
}
