/*
 * config_local: backends that a module serves itself instead of a URL (a local command
 * spoken to over stdio). The core knows only that such a backend exists and which unix
 * socket its private endpoint listens on; the module owns every key of its definition.
 */
#include "core/config-int.h"
#include "core/module.h"

#include <stdlib.h>
#include <string.h>

#define MAX_BACKEND_KEYS 64

int config_local_backend(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                         const char *const *core_keys, struct gw_backend *b, struct cfg_error *err)
{
    const char *keys[MAX_BACKEND_KEYS + 1];
    size_t n = 0;
    for (const char *const *k = core_keys; *k && n < MAX_BACKEND_KEYS; k++)
        keys[n++] = *k;
    for (size_t m = 0; m < gw_n_modules; m++)
        for (const char *const *k = gw_modules[m]->backend_keys; k && *k && n < MAX_BACKEND_KEYS;
             k++)
            keys[n++] = *k;
    keys[n] = NULL;
    if (cfg_check_keys(doc, node, path, keys, err) != 0)
        return -1;
    for (size_t m = 0; m < gw_n_modules; m++) {
        const struct gw_module *mod = gw_modules[m];
        if (!mod->parse_backend)
            continue;
        int rc = mod->parse_backend(doc, node, path, b, &b->local, err);
        if (rc < 0 && b->local)
            b->local_owner = mod; /* so what it parsed is freed with the route */
        if (rc < 0)
            return -1;
        if (rc == 0)
            continue;
        b->local_owner = mod;
        static const char *const network_only[] = {"url", "endpoints", "tls", "health"};
        for (size_t i = 0; i < sizeof network_only / sizeof *network_only; i++)
            if (cfg_map_get(node, network_only[i]))
                return cfg_errorf(err, doc, config_at_key(node, network_only[i]), path,
                                  "has both `%s` and `%s`; a backend is either a URL or a local "
                                  "command, and `%s` belongs to a URL",
                                  network_only[i], mod->backend_keys[0], network_only[i]);
        if (!b->url || !b->local_socket)
            return cfg_errorf(err, doc, node, path, "out of memory");
        b->endpoints = calloc(2, sizeof *b->endpoints);
        if (!b->endpoints || !(b->endpoints[0] = strdup(b->url)))
            return cfg_errorf(err, doc, node, path, "out of memory");
        b->n_endpoints = 1;
        return 1;
    }
    return 0;
}
