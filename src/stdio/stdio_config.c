/*
 * stdio_config: parses a local backend's keys under routes[].backends[] (see
 * docs/configuration.md#local-backends-command).
 */
#include "stdio/stdio_spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC 1000ull
#define MIB (1024ull * 1024ull)

void stdio_spec_free(struct stdio_spec *s)
{
    if (!s)
        return;
    free(s->backend);
    cfg_strv_free(s->argv);
    cfg_strv_free(s->env);
    cfg_strv_free(s->bind_ro);
    cfg_strv_free(s->bind_rw);
    free(s->cwd);
    free(s);
}

static int parse_env(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                     struct stdio_spec *s, struct cfg_error *err)
{
    char p[256];
    cfg_path_key(p, sizeof p, path, "env");
    const struct cfg_node *env = cfg_map_get(node, "env");
    char *names[STDIO_MAX_ENV + 1] = {0}, *values[STDIO_MAX_ENV + 1] = {0};
    size_t n = 0;
    int rc = -1;
    if (env && !cfg_is_null(env)) {
        if (cfg_expect_map(doc, env, p, err) != 0)
            return -1;
        if (env->n > STDIO_MAX_ENV)
            return cfg_errorf(err, doc, env, p, "lists more than %d variables", STDIO_MAX_ENV);
        for (n = 0; n < env->n; n++) {
            char ip[256];
            cfg_path_key(ip, sizeof ip, p, env->keys[n]);
            names[n] = env->keys[n];
            if (cfg_scalar_string(doc, env->items[n], ip, &values[n], err) != 0)
                goto out;
            const char *why = stdio_vet_env(names[n], values[n]);
            if (why) {
                cfg_errorf(err, doc, env->items[n], ip, "%s", why);
                goto out;
            }
        }
    }
    const char *why = NULL;
    s->env = stdio_build_env(names, values, n, &why);
    if (!s->env) {
        cfg_errorf(err, doc, env ? env : node, p, "%s", why ? why : "out of memory");
        goto out;
    }
    rc = 0;
out:
    for (size_t i = 0; i <= STDIO_MAX_ENV; i++)
        free(values[i]); /* the zeroed rest too: a failed entry's value is freed as well */
    return rc;
}

static int parse_binds(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                       const char *key, char ***out, struct cfg_error *err)
{
    size_t n = 0;
    if (cfg_get_string_list(doc, node, path, key, out, &n, err) != 0)
        return -1;
    char p[256];
    cfg_path_key(p, sizeof p, path, key);
    if (n > STDIO_MAX_BINDS)
        return cfg_errorf(err, doc, cfg_map_get(node, key), p, "lists more than %d paths",
                          STDIO_MAX_BINDS);
    for (size_t i = 0; i < n; i++)
        if ((*out)[i][0] != '/' || strstr((*out)[i], "/../") || strstr((*out)[i], "/..\0") ||
            strchr((*out)[i], '\n'))
            return cfg_errorf(err, doc, cfg_map_get(node, key), p,
                              "\"%s\" is not an absolute path without \"..\"", (*out)[i]);
    return 0;
}

static int parse_rlimits(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                         struct stdio_spec *s, struct cfg_error *err)
{
    static const char *const keys[] = {"address_space", "cpu", "files", "processes", NULL};
    char p[256];
    cfg_path_key(p, sizeof p, path, "rlimits");
    const struct cfg_node *rl = cfg_map_get(node, "rlimits");
    if (!rl || cfg_is_null(rl))
        return 0;
    if (cfg_expect_map(doc, rl, p, err) != 0 || cfg_check_keys(doc, rl, p, keys, err) != 0)
        return -1;
    uint64_t cpu_ms = s->rl_cpu_s * SEC;
    int64_t files = (int64_t)s->rl_files, procs = (int64_t)s->rl_procs;
    if (cfg_get_size(doc, rl, p, "address_space", &s->rl_as, err) != 0 ||
        cfg_get_duration_ms(doc, rl, p, "cpu", &cpu_ms, err) != 0 ||
        cfg_get_int(doc, rl, p, "files", 0, 1 << 20, &files, err) != 0 ||
        cfg_get_int(doc, rl, p, "processes", 0, 1 << 20, &procs, err) != 0)
        return -1;
    s->rl_cpu_s = (cpu_ms + SEC - 1) / SEC;
    s->rl_files = (uint64_t)files;
    s->rl_procs = (uint64_t)procs;
    return 0;
}

static int parse_small_maps(const struct cfg_doc *doc, const struct cfg_node *node,
                            const char *path, struct stdio_spec *s, struct cfg_error *err)
{
    static const char *const stderr_keys[] = {"max_line", "rate", NULL};
    static const char *const restart_keys[] = {"base", "max", "attempts", NULL};
    char p[256];
    const struct cfg_node *m = cfg_map_get(node, "stderr");
    cfg_path_key(p, sizeof p, path, "stderr");
    if (m && !cfg_is_null(m)) {
        int64_t rate = s->stderr_rate;
        if (cfg_expect_map(doc, m, p, err) != 0 || cfg_check_keys(doc, m, p, stderr_keys, err) ||
            cfg_get_size(doc, m, p, "max_line", &s->stderr_max_line, err) != 0 ||
            cfg_get_int(doc, m, p, "rate", 0, 10000, &rate, err) != 0)
            return -1;
        if (s->stderr_max_line < 64 || s->stderr_max_line > 64 * 1024)
            return cfg_errorf(err, doc, m, p, "max_line must be from 64B to 64KiB");
        s->stderr_rate = (unsigned)rate;
    }
    m = cfg_map_get(node, "restart");
    cfg_path_key(p, sizeof p, path, "restart");
    if (m && !cfg_is_null(m)) {
        int64_t attempts = s->restart_attempts;
        if (cfg_expect_map(doc, m, p, err) != 0 || cfg_check_keys(doc, m, p, restart_keys, err) ||
            cfg_get_duration_ms(doc, m, p, "base", &s->restart_base_ms, err) != 0 ||
            cfg_get_duration_ms(doc, m, p, "max", &s->restart_max_ms, err) != 0 ||
            cfg_get_int(doc, m, p, "attempts", 1, 1000, &attempts, err) != 0)
            return -1;
        if (s->restart_base_ms < 10 || s->restart_max_ms < s->restart_base_ms ||
            s->restart_max_ms > 3600 * SEC)
            return cfg_errorf(err, doc, m, p, "write base from 10ms and max from base to 1h");
        s->restart_attempts = (unsigned)attempts;
    }
    return 0;
}

int stdio_spec_parse(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                     const char *name, struct stdio_spec **out, struct cfg_error *err)
{
    (void)name;
    const struct cfg_node *cmd = cfg_map_get(node, "command");
    if (!cmd) {
        for (const char *const *k = stdio_backend_keys + 1; *k; k++)
            if (cfg_map_get(node, *k)) {
                char p[256];
                cfg_path_key(p, sizeof p, path, *k);
                return cfg_errorf(err, doc, cfg_map_get(node, *k), p,
                                  "belongs to a local backend, which needs `command`");
            }
        return 0;
    }
    struct stdio_spec *s = calloc(1, sizeof *s);
    if (!s)
        return cfg_errorf(err, doc, cmd, path, "out of memory");
    *out = s;
    s->max_instances = 16;
    s->idle_ms = 600 * SEC;
    s->rl_as = 4096 * MIB;
    s->rl_cpu_s = 0;
    s->rl_files = 1024;
    s->rl_procs = 256;
    s->max_line = 4 * MIB;
    s->stderr_max_line = 2048;
    s->stderr_rate = 20;
    s->restart_base_ms = 500;
    s->restart_max_ms = 30 * SEC;
    s->restart_attempts = 10;
    s->init_timeout_ms = 30 * SEC;
    size_t i = 0;
    for (const char *c = path; *c && i + 1 < sizeof s->id; c++)
        if ((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9'))
            s->id[i++] = *c;
        else if (i && s->id[i - 1] != '-')
            s->id[i++] = '-';
    while (i && s->id[i - 1] == '-')
        i--;
    s->id[i] = '\0';
    char p[256];
    cfg_path_key(p, sizeof p, path, "command");
    if (cmd->kind != CFG_SEQ)
        return cfg_errorf(err, doc, cmd, p,
                          "must be a list (program, then arguments), like [node, server.js]; "
                          "it is never run through a shell");
    if (cfg_get_string(doc, node, path, "name", 0, &s->backend, err) != 0 ||
        cfg_get_string_list(doc, node, path, "command", &s->argv, &s->argc, err) != 0)
        return -1;
    const char *why = stdio_vet_argv(s->argv, s->argc);
    if (why)
        return cfg_errorf(err, doc, cmd, p, "%s", why);
    if (parse_env(doc, node, path, s, err) != 0)
        return -1;
    if (cfg_get_string(doc, node, path, "cwd", 0, &s->cwd, err) != 0)
        return -1;
    if (s->cwd && s->cwd[0] != '/')
        return cfg_errorf(err, doc, cfg_map_get(node, "cwd"), path, "cwd must be absolute");
    char *inst = NULL, *sandbox = NULL;
    int bad = cfg_get_string(doc, node, path, "instances", 0, &inst, err) != 0 ||
              cfg_get_string(doc, node, path, "sandbox", 0, &sandbox, err) != 0;
    if (!bad && inst && strcmp(inst, "per_user") == 0)
        s->per_user = 1;
    else if (!bad && inst && strcmp(inst, "shared") != 0)
        bad = cfg_errorf(err, doc, cfg_map_get(node, "instances"), path,
                         "instances must be shared or per_user, not \"%s\"", inst);
    if (!bad && sandbox && strcmp(sandbox, "bwrap") == 0)
        s->bwrap = 1;
    else if (!bad && sandbox && strcmp(sandbox, "none") != 0)
        bad = cfg_errorf(err, doc, cfg_map_get(node, "sandbox"), path,
                         "sandbox must be none or bwrap, not \"%s\"", sandbox);
    free(inst);
    free(sandbox);
    if (bad)
        return -1;
    int64_t maxi = s->max_instances;
    if (cfg_get_int(doc, node, path, "max_instances", 1, 1024, &maxi, err) != 0 ||
        cfg_get_duration_ms(doc, node, path, "idle_timeout", &s->idle_ms, err) != 0 ||
        cfg_get_duration_ms(doc, node, path, "init_timeout", &s->init_timeout_ms, err) != 0 ||
        cfg_get_size(doc, node, path, "max_line", &s->max_line, err) != 0 ||
        cfg_get_bool(doc, node, path, "network", &s->network, err) != 0 ||
        parse_binds(doc, node, path, "bind", &s->bind_ro, err) != 0 ||
        parse_binds(doc, node, path, "bind_rw", &s->bind_rw, err) != 0 ||
        parse_rlimits(doc, node, path, s, err) != 0 || parse_small_maps(doc, node, path, s, err))
        return -1;
    s->max_instances = (unsigned)maxi;
    if (s->max_line < 1024 || s->max_line > 64 * MIB)
        return cfg_errorf(err, doc, cfg_map_get(node, "max_line"), path,
                          "max_line must be from 1KiB to 64MiB");
    if (!s->bwrap && (s->bind_ro || s->bind_rw || cfg_map_get(node, "network")))
        return cfg_errorf(err, doc, node, path,
                          "bind, bind_rw and network configure the sandbox; add sandbox: bwrap");
    return 1;
}
