/*
 * libFuzzer driver for the configuration loader: arbitrary bytes as a YAML file. The raw bytes
 * go to the YAML tree builder (which must cope with NULs and any encoding); a NUL-terminated
 * copy goes through gw_config_load_string, which validates server and routes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cfg.h"
#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Real files are bounded at 16 MiB; far smaller inputs reach every branch. */
    if (size > 64 * 1024)
        return 0;

    struct cfg_error err;
    struct cfg_doc doc;
    if (cfg_load_string((const char *)data, size, "fuzz.yaml", &doc, &err) == 0)
        cfg_doc_free(&doc);

    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct gw_config *cfg = gw_config_load_string(text, "fuzz.yaml", &err);
    if (cfg) {
        /* A loaded generation must be internally consistent. */
        if (cfg->server.n_listen == 0 || !cfg->server.public_url || !cfg->server.log_level)
            abort();
        for (size_t i = 0; i < cfg->n_routes; i++) {
            const struct gw_route *r = &cfg->routes[i];
            if (r->n_backends == 0 || gw_config_route_for(cfg, r->path, strlen(r->path)) != r)
                abort();
        }
    } else if (memchr(err.msg, '\0', sizeof err.msg) == NULL) {
        abort(); /* the message must always be terminated */
    }
    gw_config_free(cfg);
    free(text);
    return 0;
}
