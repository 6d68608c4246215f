/* The limits layer as a module: its section, runtime and stage. */
#include "layers/layer.h"
#include "layers/limits/limits.h"

/* No `limits` section leaves the slot NULL: nothing is limited. */
static int parse(const struct cfg_doc *doc, const struct cfg_node *node, void **out,
                 struct cfg_error *err)
{
    struct limits_config *lc = NULL;
    int rc = limits_config_parse(doc, node, &lc, err);
    *out = lc;
    return rc;
}

static void conf_free(void *conf)
{
    limits_config_free(conf);
}

static const char *const reasons[] = {
    "limits.batch", "limits.budget", "limits.loop", "limits.rate", "limits.unavailable", NULL,
};

const struct gw_module limits_module = {
    .name = "limits",
    .config_key = "limits",
    .parse = parse,
    .free = conf_free,
    .start = limits_start,
    .stop = limits_stop,
    .reason_codes = reasons,
    .ready = limits_ready,
    .metrics = limits_metrics,
    .admin_api = limits_admin_api,
    .layer = &limits_layer,
    .bench = limits_bench_main,
};
