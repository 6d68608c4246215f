/*
 * stdio_spec: the definition of a local backend (`command` and the keys beside it under
 * routes[].backends[]), its vetting, and the environment its process starts with. Pure: no
 * process is started here, so all of it is unit-tested.
 */
#ifndef GW_STDIO_SPEC_H
#define GW_STDIO_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "lib/cfg.h"

#define STDIO_MAX_ARGS 64
#define STDIO_MAX_ARG_LEN 4096
#define STDIO_MAX_ENV 64
#define STDIO_MAX_ENV_LEN 8192
#define STDIO_MAX_BINDS 32
/* The PATH every local server gets unless its `env` names another. */
#define STDIO_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

struct stdio_spec {
    char id[96];   /* "routes-0-backends-1": names it in URLs, logs, metrics */
    char *backend; /* its name (borrowed copy) */
    char **argv;   /* NULL-terminated, argc >= 1 */
    size_t argc;
    char **env;             /* "NAME=value", NULL-terminated: PATH first, then `env` in order */
    char *cwd;              /* `cwd`, or NULL: "/" */
    int per_user;           /* instances: per_user */
    unsigned max_instances; /* per_user: processes at most (16); the idlest is evicted */
    uint64_t idle_ms;       /* per_user: an instance without sessions for this long stops (10m) */
    int bwrap;              /* sandbox: bwrap */
    char **bind_ro, **bind_rw;                    /* absolute paths bound into the sandbox */
    int network;                                  /* sandbox: keep the network (false: none) */
    uint64_t rl_as, rl_cpu_s, rl_files, rl_procs; /* rlimits; 0 = leave as inherited */
    uint64_t max_line;                            /* stdout line bound (4MiB) */
    uint64_t stderr_max_line;                     /* stderr lines are cut here (2KiB) */
    unsigned stderr_rate;      /* stderr lines logged per second per process (20) */
    uint64_t restart_base_ms;  /* first restart delay (500ms), doubling */
    uint64_t restart_max_ms;   /* at most (30s) */
    unsigned restart_attempts; /* consecutive failed starts before giving up (10) */
    uint64_t init_timeout_ms;  /* initialize must be answered within (30s) */
    /* SHA-256 of the backend's map as written: a reload keeps the process only when the
     * definition is the same (stdio_module.c). */
    uint8_t digest[32];
};

/*
 * Vets a command line: 1..STDIO_MAX_ARGS arguments of 1..STDIO_MAX_ARG_LEN bytes, no control
 * characters, argv[0] an absolute path or a bare program name (looked up in PATH by toolgate,
 * never by a shell), and no shell asked to run a string (`sh -c`, `bash -c`, ...). Returns NULL,
 * or a sentence saying what is wrong.
 */
const char *stdio_vet_argv(char *const *argv, size_t argc);
/*
 * Vets one `env` entry: a name of [A-Za-z_][A-Za-z0-9_]* (at most 128), not one of the
 * loader's (LD_*) nor one that makes an interpreter load code (NODE_OPTIONS, PYTHONSTARTUP,
 * BASH_ENV, ...), and a value without NUL of at most STDIO_MAX_ENV_LEN bytes.
 */
const char *stdio_vet_env(const char *name, const char *value);
/*
 * Builds the environment: "PATH=" STDIO_DEFAULT_PATH unless names has PATH, then each
 * name=value. NULL-terminated, malloc'd (free with cfg_strv_free). NULL on a vetting error
 * (why filled) or out of memory.
 */
char **stdio_build_env(char *const *names, char *const *values, size_t n, const char **why);
/*
 * Finds argv0 in the environment's PATH (or takes it as written when absolute). Writes the
 * executable's path to out. Returns 0, or -1 when nothing executable is found.
 */
int stdio_resolve_program(const char *argv0, char *const *env, char *out, size_t cap);

/* `backends[i]` keys this module owns (the first, `command`, claims the backend). */
extern const char *const stdio_backend_keys[];
/* Parses the definition; returns 1 (a local backend, *out set), 0 (no `command`), -1. */
int stdio_spec_parse(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                     const char *name, struct stdio_spec **out, struct cfg_error *err);
void stdio_spec_free(struct stdio_spec *s);

#endif
