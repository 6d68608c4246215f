/*
 * stdio_spawn: starts a local server's process, hardened: its own process group, a clean
 * environment, no inherited descriptors beyond its three pipes, resource limits, a seccomp
 * deny list applied before exec (by bubblewrap after it has built the sandbox, when
 * `sandbox: bwrap`), and death with toolgate (PR_SET_PDEATHSIG).
 */
#ifndef GW_STDIO_SPAWN_H
#define GW_STDIO_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

#include "stdio/stdio_spec.h"

struct stdio_child {
    pid_t pid;                 /* also its process group id */
    int in_fd, out_fd, err_fd; /* toolgate's ends, non-blocking, close-on-exec */
};

/*
 * Builds the seccomp filter once (libseccomp, exported as BPF). Returns 0 or -1 with why.
 * The program lives until stdio_seccomp_free.
 */
int stdio_seccomp_build(char *why, size_t cap);
void stdio_seccomp_free(void);
/* The syscalls the filter refuses (NULL-terminated; for docs and tests). */
extern const char *const stdio_seccomp_denied[];

/*
 * Builds bubblewrap's argument list for spec running `program` (resolved): NULL-terminated,
 * malloc'd (free with cfg_strv_free). `seccomp_fd` is the descriptor number the filter is
 * read from in the child. NULL when out of memory.
 */
char **stdio_bwrap_argv(const struct stdio_spec *s, const char *program, int seccomp_fd);

/* Starts the process. Returns 0, or -1 with why filled (a sentence for the log). */
int stdio_spawn(const struct stdio_spec *s, struct stdio_child *out, char *why, size_t cap);
/* Signals the whole process group (SIGTERM, then SIGKILL from the caller's timer). */
void stdio_kill_group(pid_t pgid, int sig);

#endif
