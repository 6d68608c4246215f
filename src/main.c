/*
 * toolgate: command-line entry point. `serve` and `check` are the core's; every other
 * command belongs to a module (core/module.h) and is found by iterating the module list, so
 * this file names no module.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "core/config.h"
#include "core/generation.h"
#include "core/module.h"
#include "core/proxy.h"
#include "core/reload.h"
#include "core/server.h"
#include "core/stats.h"
#include "lib/alloc.h"
#include "lib/log.h"

#include <curl/curl.h>

static void usage(FILE *out)
{
    fprintf(out,
            "toolgate %s - a control plane for LLM tool calls (MCP)\n"
            "\n"
            "usage: toolgate <command> [options]\n"
            "\n"
            "commands:\n"
            "  serve --config FILE     run the gateway (stops gracefully on SIGTERM/SIGINT)\n"
            "  check --config FILE     validate a configuration file (and run its policy tests)\n"
            "  status --admin URL      what a running gateway is doing (its admin listener)\n",
            TOOLGATE_VERSION);
    for (size_t m = 0; m < gw_n_modules; m++)
        for (const struct gw_command *c = gw_modules[m]->commands; c && c->name; c++)
            fprintf(out, "  %s %s\n", c->name, c->usage);
    fprintf(out, "  bench LAYER             micro-benchmarks of a layer (");
    const char *sep = "";
    for (size_t m = 0; m < gw_n_modules; m++)
        if (gw_modules[m]->bench) {
            fprintf(out, "%s%s", sep, gw_modules[m]->name);
            sep = ", ";
        }
    fprintf(out,
            ")\n"
            "  --version               print the version\n"
            "  --help                  this text; `toolgate <command> --help` for a command\n");
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

/* Validates the file, then lets every module check what it can (policy runs its tests). */
static int cmd_check(int argc, char **argv)
{
    const char *path;
    struct gw_config *cfg;
    int rc = load_config(argc, argv, "check", &path, &cfg);
    if (rc != 0)
        return rc;
    struct gw_buf summary = {0};
    gw_buf_printf(&summary, "%zu route%s", cfg->n_routes, cfg->n_routes == 1 ? "" : "s");
    int failed = 0;
    for (size_t m = 0; m < gw_n_modules; m++)
        if (gw_modules[m]->check && gw_modules[m]->check(cfg, path, &summary) != 0)
            failed = 1;
    if (!failed)
        printf("%s: ok (%s)\n", path, summary.data ? summary.data : "");
    gw_buf_free(&summary);
    gw_config_free(cfg);
    return failed;
}

/* `toolgate bench NAME ...`: the modules' micro-benchmarks (make bench runs them). */
static int cmd_bench(int argc, char **argv)
{
    const struct gw_module *mod = argc >= 2 ? gw_module_find(argv[1]) : NULL;
    if (mod && mod->bench)
        return mod->bench(argc - 1, argv + 1);
    int help = argc >= 2 && strcmp(argv[1], "--help") == 0;
    FILE *out = help ? stdout : stderr;
    fprintf(out, "usage: toolgate bench ");
    const char *sep = "";
    for (size_t m = 0; m < gw_n_modules; m++)
        if (gw_modules[m]->bench) {
            fprintf(out, "%s%s", sep, gw_modules[m]->name);
            sep = "|";
        }
    fprintf(out, " [options]\n"
                 "Micro-benchmarks of the layers; `make bench` runs them with the peers.\n");
    return help ? 0 : 2;
}

/*
 * The modules' runtimes: the one flagged to come up first (audit, which records what the
 * others do) starts before the rest and stops after them; the rest in list order, stopped in
 * reverse.
 */
static size_t runtime_order(const struct gw_module **out)
{
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t m = 0; m < gw_n_modules; m++) {
            const struct gw_module *mod = gw_modules[m];
            int first = (mod->flags & GW_MODULE_FIRST_UP) != 0;
            if (mod->start && first == (pass == 0))
                out[n++] = mod;
        }
    return n;
}

/*
 * The gateway's handler on every server.listen address, the admin handler on admin.listen
 * when the file has an admin section.
 */
static int serve_listeners(const struct gw_config *cfg)
{
    size_t n = cfg->server.n_listen + (cfg->admin.enabled ? 1 : 0);
    struct gw_server_listener *ls = calloc(n ? n : 1, sizeof *ls);
    if (!ls || gw_stats_start(cfg) != 0) {
        free(ls);
        fprintf(stderr, "toolgate: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < cfg->server.n_listen; i++)
        ls[i] = (struct gw_server_listener){&cfg->server.listen[i], NULL, *proxy_handler()};
    if (cfg->admin.enabled)
        ls[cfg->server.n_listen] =
            (struct gw_server_listener){&cfg->admin.listen, "admin", *admin_handler()};
    int rc = gw_server_run_listeners(cfg, ls, n);
    gw_stats_stop();
    free(ls);
    return rc;
}

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
    /*
     * The modules start lean (stores opened, their threads started, key sets read): what they
     * free goes back to the system at once, up to the server's listening. Loading the
     * configuration above does not: lean mode slows the pattern compile's many frees (every
     * detector: 250 ms to ready became 440 ms), and what it leaves is little.
     */
    gw_allocator_lean(true);
    const struct gw_module *order[GW_MAX_MODULES];
    size_t n = runtime_order(order);
    size_t started = 0;
    for (; started < n; started++) {
        if (order[started]->start(cfg) != 0) {
            fprintf(stderr, "%s: the %s layer could not start (see the log above)\n", path,
                    order[started]->name);
            break;
        }
    }
    rc = 1;
    /*
     * The first generation stays alive to the end (this function's reference): the listeners
     * and the modules' runtimes started from it point into it. Reloads make later ones
     * current (SIGHUP, POST /admin/reload).
     */
    gw_generation_init(cfg);
    gw_reload_setup(path);
    gw_server_on_hangup(gw_reload_on_signal);
    if (started == n)
        rc = serve_listeners(cfg);
    gw_reload_shutdown();
    /* Every request has completed by now, so the audit log flushes last. */
    while (started > 0) {
        const struct gw_module *mod = order[--started];
        if (mod->stop)
            mod->stop();
    }
    gw_server_release_signals();
    gw_generation_shutdown();
    gw_generation_release(cfg);
    return rc;
}

/* A module's command, or NULL. */
static const struct gw_command *find_command(const char *name)
{
    for (size_t m = 0; m < gw_n_modules; m++)
        for (const struct gw_command *c = gw_modules[m]->commands; c && c->name; c++)
            if (strcmp(c->name, name) == 0)
                return c;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("toolgate %s (%s, %s)\n", TOOLGATE_VERSION, TOOLGATE_REV, gw_allocator());
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    const struct gw_command *mc;
    if (strcmp(cmd, "serve") == 0)
        rc = cmd_serve(argc - 1, argv + 1);
    else if (strcmp(cmd, "check") == 0)
        rc = cmd_check(argc - 1, argv + 1);
    else if (strcmp(cmd, "bench") == 0)
        rc = cmd_bench(argc - 1, argv + 1);
    else if (strcmp(cmd, "status") == 0)
        rc = admin_status_main(argc - 1, argv + 1);
    else if ((mc = find_command(cmd)))
        rc = mc->main(argc - 1, argv + 1);
    else {
        fprintf(stderr, "toolgate: unknown command \"%s\"\n\n", cmd);
        usage(stderr);
        rc = 2;
    }
    curl_global_cleanup();
    return rc;
}
