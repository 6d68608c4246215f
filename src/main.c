/*
 * toolgate: command-line entry point. Each subcommand lives in its module; this file only
 * dispatches and prints the overall help.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "lib/log.h"
#include "core/proxy.h"
#include "core/server.h"
#include "layers/audit/audit.h"
#include "layers/identity/identity.h"
#include "layers/limits/limits.h"
#include "layers/policy/policy.h"
#include "layers/routing/routing.h"
#include "layers/safety/safety.h"

#include <curl/curl.h>

static void usage(FILE *out)
{
    fprintf(
        out,
        "toolgate %s - a control plane for LLM tool calls (MCP)\n"
        "\n"
        "usage: toolgate <command> [options]\n"
        "\n"
        "commands:\n"
        "  serve --config FILE     run the gateway (stops gracefully on SIGTERM/SIGINT)\n"
        "  check --config FILE     validate a configuration file (and run its policy tests)\n"
        "  policy test|explain     run policy test files; explain one decision\n"
        "  audit verify|query|stats|export STORE ...\n"
        "                          check the audit log's integrity; answer questions from it\n"
        "  safety scan|validate|redact ...\n"
        "                          find PII and secrets in JSON; check single values\n"
        "  keys generate ...       make a signing key pair and its JWKS (development tool)\n"
        "  token ...               mint a signed test JWT (development tool)\n"
        "  bench LAYER             micro-benchmarks of a layer (identity, policy, limits, ...)\n"
        "  --version               print the version\n"
        "  --help                  this text; `toolgate <command> --help` for a command\n",
        TOOLGATE_VERSION);
}

/* Parses `--config FILE` (or `-c FILE`); returns the path or NULL after printing why. */
static const char *config_arg(int argc, char **argv, const char *cmd)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            path = optarg;
            break;
        case 'h':
            printf("usage: toolgate %s --config FILE\n", cmd);
            exit(0);
        default:
            fprintf(stderr, "usage: toolgate %s --config FILE\n", cmd);
            return NULL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "toolgate %s: unexpected argument \"%s\"\n", cmd, argv[optind]);
        return NULL;
    }
    if (!path)
        fprintf(stderr, "toolgate %s: --config FILE is required\n", cmd);
    return path;
}

/* `--config FILE` read and loaded: 0, 2 (usage) or 1 (the file is wrong; said on stderr). */
static int load_config(int argc, char **argv, const char *cmd, const char **path,
                       struct gw_config **cfg)
{
    *path = config_arg(argc, argv, cmd);
    if (!*path)
        return 2;
    struct cfg_error err = {{0}};
    *cfg = gw_config_load(*path, &err);
    if (!*cfg) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    return 0;
}

static int cmd_check(int argc, char **argv)
{
    const char *path;
    struct gw_config *cfg;
    int rc = load_config(argc, argv, "check", &path, &cfg);
    if (rc != 0)
        return rc;
    int failures = 0;
    size_t n_tests = cfg->policy ? policy_config_test_count(cfg->policy) : 0;
    for (size_t i = 0; i < n_tests; i++) {
        const char *file = policy_config_test_path(cfg->policy, i);
        /* The table is printed only when something does not match. */
        char *table = NULL;
        size_t table_len = 0;
        FILE *mem = open_memstream(&table, &table_len);
        int r = policy_run_tests(cfg->policy, file, mem ? mem : stdout);
        if (mem)
            fclose(mem);
        if (r != 0 && table)
            fwrite(table, 1, table_len, stdout);
        free(table);
        if (r != 0) {
            fprintf(stderr, "%s: policy tests in %s: %s\n", path, file,
                    r < 0 ? "cannot be read or parsed" : "mismatches (see the table above)");
            failures++;
        }
    }
    if (failures) {
        gw_config_free(cfg);
        return 1;
    }
    printf("%s: ok (%zu route%s, %zu policy rule%s, %zu policy test file%s passed)\n", path,
           cfg->n_routes, cfg->n_routes == 1 ? "" : "s",
           cfg->policy ? policy_config_rule_count(cfg->policy) : 0,
           cfg->policy && policy_config_rule_count(cfg->policy) == 1 ? "" : "s", n_tests,
           n_tests == 1 ? "" : "s");
    gw_config_free(cfg);
    return 0;
}

/* `toolgate bench NAME ...`: the layers' micro-benchmarks (make bench runs them). */
static int cmd_bench(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } benches[] = {
        {"identity", identity_bench_main}, {"policy", policy_bench_main},
        {"limits", limits_bench_main},     {"routing", routing_bench_main},
        {"audit", audit_bench_main},       {"safety", safety_bench_main},
    };
    if (argc >= 2) {
        for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++)
            if (strcmp(argv[1], benches[i].name) == 0)
                return benches[i].run(argc - 1, argv + 1);
    }
    fprintf(argc >= 2 && strcmp(argv[1], "--help") != 0 ? stderr : stdout,
            "usage: toolgate bench identity|policy|limits|routing|audit|safety [options]\n"
            "Micro-benchmarks of the layers; `make bench` runs them with the peers.\n");
    return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
}

static int start_identity(const struct gw_config *cfg)
{
    return identity_start(cfg->identity);
}

static const struct {
    const char *what;
    int (*start)(const struct gw_config *cfg);
    void (*stop)(void);
} runtimes[] = {
    {"the audit log", audit_start, audit_stop},
    {"the identity layer", start_identity, identity_stop},
    {"the limits layer", limits_start, limits_stop},
    {"the routing layer", routing_start, routing_stop},
};

static int cmd_serve(int argc, char **argv)
{
    const char *path;
    struct gw_config *cfg;
    int rc = load_config(argc, argv, "serve", &path, &cfg);
    if (rc != 0)
        return rc;
    struct cfg_error err = {{0}};
    enum gw_log_level lvl = GW_LOG_INFO;
    if (cfg->server.log_level)
        gw_log_level_parse(cfg->server.log_level, &lvl);
    gw_log_setup(lvl, 2);
    if (gw_config_check_serve(cfg, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        gw_config_free(cfg);
        return 1;
    }
    /* The layers' runtimes, started in order and stopped in reverse (audit last). */
    size_t started = 0;
    for (; started < sizeof runtimes / sizeof runtimes[0]; started++) {
        if (runtimes[started].start(cfg) != 0) {
            fprintf(stderr, "%s: %s could not start (see the log above)\n", path,
                    runtimes[started].what);
            break;
        }
    }
    rc = 1;
    if (started == sizeof runtimes / sizeof runtimes[0])
        rc = gw_server_run(cfg, proxy_handler());
    /* Every request has completed by now, so the audit log flushes last. */
    while (started > 0)
        runtimes[--started].stop();
    gw_server_release_signals();
    gw_config_free(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("toolgate %s (%s)\n", TOOLGATE_VERSION, TOOLGATE_REV);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    if (strcmp(cmd, "serve") == 0)
        rc = cmd_serve(argc - 1, argv + 1);
    else if (strcmp(cmd, "check") == 0)
        rc = cmd_check(argc - 1, argv + 1);
    else if (strcmp(cmd, "policy") == 0)
        rc = policy_cli_main(argc - 1, argv + 1);
    else if (strcmp(cmd, "bench") == 0)
        rc = cmd_bench(argc - 1, argv + 1);
    else if (strcmp(cmd, "audit") == 0)
        rc = audit_cli_main(argc - 1, argv + 1);
    else if (strcmp(cmd, "safety") == 0)
        rc = safety_cli_main(argc - 1, argv + 1);
    else if (strcmp(cmd, "keys") == 0)
        rc = identity_cli_keys(argc - 1, argv + 1);
    else if (strcmp(cmd, "token") == 0)
        rc = identity_cli_token(argc - 1, argv + 1);
    else {
        fprintf(stderr, "toolgate: unknown command \"%s\"\n\n", cmd);
        usage(stderr);
        rc = 2;
    }
    curl_global_cleanup();
    return rc;
}
