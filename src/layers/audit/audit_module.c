/* The audit layer as a module: its section, writer, stage and commands. */
#include "layers/audit/audit.h"
#include "core/reload.h"
#include "layers/layer.h"

/* No `audit` section gives the defaults (an SQLite store in the working directory). */
static int parse(const struct cfg_doc *doc, const struct cfg_node *node, void **out,
                 struct cfg_error *err)
{
    struct audit_config *ac = NULL;
    int rc = audit_config_parse(doc, node, &ac, err);
    *out = ac;
    return rc;
}

static void conf_free(void *conf)
{
    audit_config_free(conf);
}

static const struct gw_command commands[] = {
    {"audit",
     "verify|query|stats|export STORE ...\n"
     "                          check the audit log's integrity; answer questions from it",
     audit_cli_main},
    {NULL, NULL, NULL},
};

static const char *const reasons[] = {"audit.unavailable", NULL};

/*
 * Audit sees every request that reached a route (its stage runs after any denial), and its
 * writer is up before the other runtimes and down after them, so it records what they did.
 */
/* What the runtime was started with cannot follow a changed section (core/reload.h). */
static int audit_prepare(const struct gw_config *running, const struct gw_config *next,
                         struct cfg_error *err)
{
    return gw_reload_require_same(
        running, next, "audit",
        "the audit writer's store, mirror and signing key are opened at start", err);
}

const struct gw_module audit_module = {
    .name = "audit",
    .flags = GW_MODULE_SEES_ALL | GW_MODULE_FIRST_UP,
    .config_key = "audit",
    .parse = parse,
    .free = conf_free,
    .start = audit_start,
    .stop = audit_stop,
    .prepare = audit_prepare,
    .layer = &audit_layer,
    .reason_codes = reasons,
    .ready = audit_ready,
    .metrics = audit_metrics,
    .admin_api = audit_admin_api,
    .commands = commands,
    .bench = audit_bench_main,
};
