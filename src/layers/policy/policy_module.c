/* The policy layer as a module: its section, stage, `check` of its tests and commands. */
#include "layers/layer.h"
#include "layers/policy/policy-int.h"
#include "layers/policy/policy.h"
#include "layers/policy/policy_approval.h"
#include "layers/policy/policy_replay.h"
#include "lib/metrics.h"

#include <stdio.h>
#include <stdlib.h>

/* No `policy` section leaves the slot NULL, which the policy layer reads as deny-all. */
static int parse(const struct cfg_doc *doc, const struct cfg_node *node, void **out,
                 struct cfg_error *err)
{
    if (!node)
        return 0;
    struct policy_config *pc = NULL;
    int rc = policy_config_parse(doc, node, &pc, err);
    *out = pc;
    return rc;
}

static void conf_free(void *conf)
{
    policy_config_free(conf);
}

/* approvers: token needs a section that verifies people's tokens; without one no decision
 * could ever be taken, so the file is refused rather than every decision at run time. */
static int validate(const struct gw_config *cfg, const struct cfg_doc *doc, struct cfg_error *err)
{
    const struct policy_config *pc = policy_config_of(cfg);
    if (!pc || pc->approvals.approvers != POLICY_APPROVERS_TOKEN)
        return 0;
    for (size_t m = 0; m < gw_n_modules; m++)
        if (gw_modules[m]->verifies_people && gw_modules[m]->verifies_people(cfg))
            return 0;
    const struct cfg_node *n =
        cfg_map_get(cfg_map_get(cfg_map_get(doc->root, "policy"), "approvals"), "approvers");
    return cfg_errorf(err, doc, n, "policy.approvals.approvers",
                      "approvers: token has approvers decide with their own access token, but "
                      "no issuer verifies tokens here (identity is off or has no issuers); "
                      "configure identity.issuers, or use approvers: admin");
}

/* Runs the policy test files the configuration names; the table only when one mismatches. */
static int check(const struct gw_config *cfg, const char *config_path, struct gw_buf *summary)
{
    const struct policy_config *pc = policy_config_of(cfg);
    size_t n_tests = pc ? policy_config_test_count(pc) : 0;
    size_t n_rules = pc ? policy_config_rule_count(pc) : 0;
    int failures = 0;
    for (size_t i = 0; i < n_tests; i++) {
        const char *file = policy_config_test_path(pc, i);
        char *table = NULL;
        size_t table_len = 0;
        FILE *mem = open_memstream(&table, &table_len);
        int r = policy_run_tests(pc, file, mem ? mem : stdout);
        if (mem)
            fclose(mem);
        if (r != 0 && table)
            fwrite(table, 1, table_len, stdout);
        free(table);
        if (r != 0) {
            fprintf(stderr, "%s: policy tests in %s: %s\n", config_path, file,
                    r < 0 ? "cannot be read or parsed" : "mismatches (see the table above)");
            failures++;
        }
    }
    gw_buf_printf(summary, ", %zu policy rule%s, %zu policy test file%s passed", n_rules,
                  n_rules == 1 ? "" : "s", n_tests, n_tests == 1 ? "" : "s");
    return failures ? 1 : 0;
}

static const struct gw_command commands[] = {
    {"policy", "test|explain     run policy test files; explain one decision", policy_cli_main},
    {NULL, NULL, NULL},
};

static const char *const reasons[] = {
    "policy.approval_declined", "policy.approval_invalid", "policy.approval_pending",
    "policy.approval_required", "policy.approval_timeout", "policy.approval_unavailable",
    "policy.forbidden",         "policy.hidden",           "policy.insufficient_scope",
    "policy.invalid_request",   "policy.no_match",         NULL,
};

/* The shared replay store of sealed approval states (policy.approvals.replay_store). */
static void metrics(const struct gw_config *cfg, struct gw_metrics_out *out)
{
    (void)cfg;
    uint64_t claims, replays, errors;
    policy_replay_counts(&claims, &replays, &errors);
    metrics_family(out, "toolgate_approval_replay_claims_total", "counter",
                   "Sealed approval states claimed in the shared replay store (Redis), by outcome: "
                   "first (claimed now), replay (used before, here or on another instance), "
                   "unavailable (no answer or an error: the call was denied).");
    static const char *const names[] = {"first", "replay", "unavailable"};
    const uint64_t values[] = {claims, replays, errors};
    for (size_t i = 0; i < 3; i++) {
        struct metrics_label l = {"outcome", names[i]};
        metrics_sample_u64(out, "toolgate_approval_replay_claims_total", &l, 1, values[i]);
    }
}

/* With replay_store on Redis: whether it answers (a retry is denied while it does not). */
static void ready(const struct gw_config *cfg, json_t *checks)
{
    const struct policy_config *pc = policy_config_of(cfg);
    if (!pc || !pc->approvals.replay_host)
        return;
    char detail[160];
    int ok = policy_replay_ready(&pc->approvals, detail, sizeof detail);
    json_t *c = json_pack("{s:s}", "state", ok ? "ok" : "failing");
    if (c && !ok)
        json_object_set_new(c, "detail", json_string(detail));
    json_object_set_new(checks, "approval_replay_redis", c);
}

const struct gw_module policy_module = {
    .name = "policy",
    .config_key = "policy",
    .parse = parse,
    .validate = validate,
    .free = conf_free,
    .check = check,
    .reason_codes = reasons,
    .ready = ready,
    .metrics = metrics,
    .layer = &policy_layer,
    .admin_api = policy_admin_api,
    .admin_action = policy_admin_action,
    .commands = commands,
    .bench = policy_bench_main,
};
