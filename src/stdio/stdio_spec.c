#include "stdio/stdio_spec.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)

const char *const stdio_backend_keys[] = {
    "command", "env",     "cwd",          "instances", "max_instances", "idle_timeout",
    "sandbox", "bind",    "bind_rw",      "network",   "rlimits",       "max_line",
    "stderr",  "restart", "init_timeout", NULL};

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

const char *stdio_vet_argv(char *const *argv, size_t argc)
{
    static const char *const shells[] = {"sh",   "bash", "dash", "zsh",     "ksh", "csh",
                                         "tcsh", "fish", "ash",  "busybox", NULL};
    if (argc == 0 || !argv || !argv[0])
        return "is empty; write the program and its arguments as a list, like [node, server.js]";
    if (argc > STDIO_MAX_ARGS)
        return "has more than 64 arguments";
    for (size_t i = 0; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (i == 0 && n == 0)
            return "names an empty program";
        if (n > STDIO_MAX_ARG_LEN)
            return "has an argument over 4096 bytes";
        if (has_control(argv[i]))
            return "has a control character in an argument";
    }
    const char *p = argv[0];
    if (p[0] != '/' && strchr(p, '/'))
        return "names its program by a relative path; write an absolute path or a bare name "
               "found in PATH";
    for (const char *const *s = shells; *s; s++)
        if (strcmp(base_name(p), *s) == 0)
            for (size_t i = 1; i < argc; i++)
                if (argv[i][0] == '-' && argv[i][1] != '-' && strchr(argv[i], 'c'))
                    return "runs a shell on a command string (-c); name the server's program "
                           "itself, toolgate never runs commands through a shell";
    return NULL;
}

const char *stdio_vet_env(const char *name, const char *value)
{
    static const char *const refused[] = {"NODE_OPTIONS",  "NODE_PATH",  "PYTHONSTARTUP",
                                          "PYTHONPATH",    "PYTHONHOME", "BASH_ENV",
                                          "ENV",           "PERL5OPT",   "PERL5LIB",
                                          "RUBYOPT",       "RUBYLIB",    "JAVA_TOOL_OPTIONS",
                                          "_JAVA_OPTIONS", "GCONV_PATH", "HOSTALIASES",
                                          "IFS",           NULL};
    size_t n = strlen(name);
    if (n == 0 || n > 128 || !(isalpha((unsigned char)name[0]) || name[0] == '_'))
        return "is not a variable name ([A-Za-z_][A-Za-z0-9_]*)";
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)name[i]) || name[i] == '_'))
            return "is not a variable name ([A-Za-z_][A-Za-z0-9_]*)";
    if (strncmp(name, "LD_", 3) == 0 || strncmp(name, "DYLD_", 5) == 0)
        return "is a dynamic loader variable, which would load code into the server; it is "
               "refused";
    for (const char *const *r = refused; *r; r++)
        if (strcmp(name, *r) == 0)
            return "makes an interpreter load code or change how it parses commands; it is "
                   "refused";
    if (strlen(value) > STDIO_MAX_ENV_LEN)
        return "has a value over 8192 bytes";
    return NULL;
}

char **stdio_build_env(char *const *names, char *const *values, size_t n, const char **why)
{
    *why = NULL;
    if (n > STDIO_MAX_ENV) {
        *why = "lists more than 64 variables";
        return NULL;
    }
    char **env = calloc(n + 2, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    int has_path = 0;
    for (size_t i = 0; i < n; i++)
        has_path |= strcmp(names[i], "PATH") == 0;
    if (!has_path && !(env[k++] = strdup("PATH=" STDIO_DEFAULT_PATH)))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if ((*why = stdio_vet_env(names[i], values[i])) != NULL)
            goto fail;
        for (size_t j = 0; j < i; j++)
            if (strcmp(names[j], names[i]) == 0) {
                *why = "lists a variable twice";
                goto fail;
            }
        size_t len = strlen(names[i]) + strlen(values[i]) + 2;
        if (!(env[k] = malloc(len)))
            goto fail;
        snprintf(env[k++], len, "%s=%s", names[i], values[i]);
    }
    return env;
fail:
    cfg_strv_free(env);
    return NULL;
}

int stdio_resolve_program(const char *argv0, char *const *env, char *out, size_t cap)
{
    if (argv0[0] == '/') {
        if (strlen(argv0) >= cap || access(argv0, X_OK) != 0)
            return -1;
        snprintf(out, cap, "%s", argv0);
        return 0;
    }
    const char *path = STDIO_DEFAULT_PATH;
    for (char *const *e = env; e && *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            path = *e + 5;
    while (*path) {
        size_t n = strcspn(path, ":");
        /* Only absolute directories: an empty or relative entry would search the cwd. */
        if (n > 0 && path[0] == '/' && n + 1 + strlen(argv0) < cap) {
            snprintf(out, cap, "%.*s/%s", (int)n, path, argv0);
            if (access(out, X_OK) == 0)
                return 0;
        }
        path += n;
        if (*path == ':')
            path++;
    }
    return -1;
}
