/* The limits layer as a module: its section, runtime and stage. */
#include "core/reload.h"
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

/* What the runtime was started with cannot follow a changed section (core/reload.h). */
static int limits_prepare(const struct gw_config *running, const struct gw_config *next,
                          struct cfg_error *err)
{
    return gw_reload_require_same(
        running, next, "limits",
        "the limits layer's counters, stores and ledger are built from it at start", err);
}

const struct gw_module limits_module = {
    .name = "limits",
    .config_key = "limits",
    .parse = parse,
    .free = conf_free,
    .start = limits_start,
    .stop = limits_stop,
    .prepare = limits_prepare,
    .reason_codes = reasons,
    .ready = limits_ready,
    .metrics = limits_metrics,
    .admin_api = limits_admin_api,
    .layer = &limits_layer,
    .bench = limits_bench_main,
};
