#include "core/module.h"

#include <string.h>

size_t gw_module_slot(const struct gw_module *m)
{
    size_t i = 0;
    while (i < gw_n_modules && gw_modules[i] != m)
        i++;
    return i;
}

const struct gw_module *gw_module_find(const char *name)
{
    for (size_t i = 0; i < gw_n_modules; i++)
        if (strcmp(gw_modules[i]->name, name) == 0)
            return gw_modules[i];
    return NULL;
}
