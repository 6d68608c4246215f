/* The safety layer as a module: its section, stage and commands. */
#include "layers/layer.h"
#include "layers/safety/safety.h"

/* No `safety` section gives the built-in detectors with their default actions. */
static int parse(const struct cfg_doc *doc, const struct cfg_node *node, void **out,
                 struct cfg_error *err)
{
    struct safety_config *sc = NULL;
    int rc = safety_config_parse(doc, node, &sc, err);
    *out = sc;
    return rc;
}

static void conf_free(void *conf)
{
    safety_config_free(conf);
}

static const struct gw_command commands[] = {
    {"safety",
     "scan|validate|redact ...\n"
     "                          find PII and secrets in JSON; check single values",
     safety_cli_main},
    {NULL, NULL, NULL},
};

static const char *const reasons[] = {
    "safety.error",
    "safety.scan_limit",
    "safety.too_deep",
    "safety.too_large",
    "pii.private_key",
    "pii.aws_access_key",
    "pii.aws_secret_key",
    "pii.github_token",
    "pii.gitlab_token",
    "pii.slack_token",
    "pii.stripe_key",
    "pii.google_api_key",
    "pii.jwt",
    "pii.generic_secret",
    "pii.ssn",
    "pii.itin",
    "pii.credit_card",
    "pii.iban",
    "pii.email",
    "pii.phone",
    "pii.ip_address",
    "pii.npi",
    "pii.dea",
    "pii.dob",
    "pii.passport",
    "pii.drivers_license",
    "pii.mrn",
    NULL,
};

const struct gw_module safety_module = {
    .name = "safety",
    .config_key = "safety",
    .parse = parse,
    .free = conf_free,
    .reason_codes = reasons,
    .metrics = safety_metrics,
    .layer = &safety_layer,
    .commands = commands,
    .bench = safety_bench_main,
};
