#include "stdio/stdio_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * Refused with EPERM: what lets a process reach beyond itself (other processes' memory,
 * the kernel's keyrings, modules, BPF, mounts, namespaces, clocks, reboot). clone3 answers
 * ENOSYS so that the C library falls back to clone, whose namespace flags can be checked.
 */
const char *const stdio_seccomp_denied[] = {"ptrace",
                                            "process_vm_readv",
                                            "process_vm_writev",
                                            "mount",
                                            "umount2",
                                            "pivot_root",
                                            "chroot",
                                            "move_mount",
                                            "open_tree",
                                            "fsopen",
                                            "fsmount",
                                            "fsconfig",
                                            "kexec_load",
                                            "kexec_file_load",
                                            "bpf",
                                            "keyctl",
                                            "add_key",
                                            "request_key",
                                            "init_module",
                                            "finit_module",
                                            "delete_module",
                                            "reboot",
                                            "swapon",
                                            "swapoff",
                                            "perf_event_open",
                                            "userfaultfd",
                                            "unshare",
                                            "setns",
                                            "open_by_handle_at",
                                            "name_to_handle_at",
                                            "iopl",
                                            "ioperm",
                                            "acct",
                                            "settimeofday",
                                            "clock_settime",
                                            "clock_adjtime",
                                            "adjtimex",
                                            "syslog",
                                            "quotactl",
                                            "lookup_dcookie",
                                            "vhangup",
                                            "io_uring_setup",
                                            "io_uring_enter",
                                            "io_uring_register",
                                            "fanotify_init",
                                            "personality",
                                            NULL};

static struct sock_fprog filter;
static void *filter_mem;

void stdio_seccomp_free(void)
{
    free(filter_mem);
    filter_mem = NULL;
    filter.filter = NULL;
    filter.len = 0;
}

int stdio_seccomp_build(char *why, size_t cap)
{
    if (filter.len)
        return 0;
    int rc = -1, fd = -1;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) {
        snprintf(why, cap, "cannot set up the seccomp filter");
        return -1;
    }
    for (const char *const *n = stdio_seccomp_denied; *n; n++) {
        int nr = seccomp_syscall_resolve_name(*n);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this architecture */
        if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0) != 0) {
            snprintf(why, cap, "seccomp: cannot refuse %s", *n);
            goto out;
        }
    }
    int clone3 = seccomp_syscall_resolve_name("clone3");
    if (clone3 != __NR_SCMP_ERROR && seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), clone3, 0))
        goto out;
    /* clone with any namespace flag: a new user namespace is the usual way out. */
    unsigned long ns = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC |
                       CLONE_NEWUTS | CLONE_NEWCGROUP;
    if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, ns, CLONE_NEWUSER)) != 0 ||
        seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWNS, CLONE_NEWNS)) != 0) {
        snprintf(why, cap, "seccomp: cannot restrict clone");
        goto out;
    }
    fd = memfd_create("toolgate-seccomp", MFD_CLOEXEC);
    if (fd < 0 || seccomp_export_bpf(ctx, fd) != 0) {
        snprintf(why, cap, "seccomp: cannot export the filter");
        goto out;
    }
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % (off_t)sizeof(struct sock_filter) != 0 || size > 65536 ||
        !(filter_mem = malloc((size_t)size)) || pread(fd, filter_mem, (size_t)size, 0) != size) {
        snprintf(why, cap, "seccomp: cannot read the exported filter");
        goto out;
    }
    filter.filter = filter_mem;
    filter.len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
    rc = 0;
out:
    if (rc != 0)
        stdio_seccomp_free();
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    return rc;
}

static int push(char **v, size_t *n, size_t cap, const char *s)
{
    if (*n + 1 >= cap || !(v[*n] = strdup(s)))
        return -1;
    (*n)++;
    return 0;
}

char **stdio_bwrap_argv(const struct stdio_spec *s, const char *program, int seccomp_fd)
{
    size_t cap = 64 + 3 * (STDIO_MAX_BINDS * 2) + STDIO_MAX_ARGS, n = 0;
    char **v = calloc(cap, sizeof *v);
    if (!v)
        return NULL;
    char fdbuf[16];
    snprintf(fdbuf, sizeof fdbuf, "%d", seccomp_fd);
    /* The system's programs and libraries, read-only; merged-/usr links stay links. */
    static const char *const sys[] = {"/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32"};
    static const char *const etc[] = {"/etc/ld.so.cache", "/etc/ssl",    "/etc/ca-certificates",
                                      "/etc/resolv.conf", "/etc/hosts",  "/etc/nsswitch.conf",
                                      "/etc/localtime",   "/etc/passwd", "/etc/group"};
    int bad = push(v, &n, cap, "bwrap") || push(v, &n, cap, "--die-with-parent") ||
              push(v, &n, cap, "--unshare-all") ||
              (s->network && push(v, &n, cap, "--share-net")) || push(v, &n, cap, "--cap-drop") ||
              push(v, &n, cap, "ALL");
    for (size_t i = 0; !bad && i < sizeof sys / sizeof *sys; i++) {
        struct stat st;
        char target[256];
        if (lstat(sys[i], &st) != 0)
            continue;
        ssize_t len = S_ISLNK(st.st_mode) ? readlink(sys[i], target, sizeof target - 1) : -1;
        if (len > 0) {
            target[len] = '\0';
            bad = push(v, &n, cap, "--symlink") || push(v, &n, cap, target) ||
                  push(v, &n, cap, sys[i]);
        } else {
            bad = push(v, &n, cap, "--ro-bind") || push(v, &n, cap, sys[i]) ||
                  push(v, &n, cap, sys[i]);
        }
    }
    for (size_t i = 0; !bad && i < sizeof etc / sizeof *etc; i++)
        bad = push(v, &n, cap, "--ro-bind-try") || push(v, &n, cap, etc[i]) ||
              push(v, &n, cap, etc[i]);
    bad = bad || push(v, &n, cap, "--proc") || push(v, &n, cap, "/proc") ||
          push(v, &n, cap, "--dev") || push(v, &n, cap, "/dev") || push(v, &n, cap, "--tmpfs") ||
          push(v, &n, cap, "/tmp");
    for (char **b = s->bind_ro; !bad && b && *b; b++)
        bad = push(v, &n, cap, "--ro-bind") || push(v, &n, cap, *b) || push(v, &n, cap, *b);
    for (char **b = s->bind_rw; !bad && b && *b; b++)
        bad = push(v, &n, cap, "--bind") || push(v, &n, cap, *b) || push(v, &n, cap, *b);
    bad = bad || push(v, &n, cap, "--chdir") || push(v, &n, cap, s->cwd ? s->cwd : "/") ||
          push(v, &n, cap, "--seccomp") || push(v, &n, cap, fdbuf) || push(v, &n, cap, "--") ||
          push(v, &n, cap, program);
    for (size_t i = 1; !bad && i < s->argc; i++)
        bad = push(v, &n, cap, s->argv[i]);
    if (bad) {
        cfg_strv_free(v);
        return NULL;
    }
    return v;
}

void stdio_kill_group(pid_t pgid, int sig)
{
    if (pgid > 1)
        kill(-pgid, sig);
}

/* A limit that cannot be set stops the launch (never a process without its limits). */
static int set_limit(int res, uint64_t v, int always)
{
    if (!v && !always)
        return 0;
    struct rlimit rl = {(rlim_t)v, (rlim_t)v};
    return setrlimit(res, &rl);
}

/* In the child, between fork and exec: async-signal-safe calls only. */
static void child(const struct stdio_spec *s, int in, int out, int err, int sfd, int report,
                  const char *program, char **argv)
{
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL); /* an ignored SIGPIPE would survive exec */
    /* Out of the way first, so that no dup2 below lands on a descriptor still needed. */
    in = fcntl(in, F_DUPFD, 64);
    out = fcntl(out, F_DUPFD, 64);
    err = fcntl(err, F_DUPFD, 64);
    report = fcntl(report, F_DUPFD, 64);
    if (sfd >= 0)
        sfd = fcntl(sfd, F_DUPFD, 64);
    if (in < 0 || out < 0 || err < 0 || report < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
        dup2(err, 2) < 0)
        goto fail;
    if (sfd >= 0) {
        if (dup2(sfd, 3) < 0)
            goto fail;
    }
    if (dup2(report, sfd >= 0 ? 4 : 3) < 0)
        goto fail;
    report = sfd >= 0 ? 4 : 3;
    fcntl(report, F_SETFD, FD_CLOEXEC);
    syscall(SYS_close_range, (unsigned)report + 1, ~0U, 0);
    if (set_limit(RLIMIT_AS, s->rl_as, 0) != 0 || set_limit(RLIMIT_CPU, s->rl_cpu_s, 0) != 0 ||
        set_limit(RLIMIT_NOFILE, s->rl_files, 0) != 0 ||
        set_limit(RLIMIT_NPROC, s->rl_procs, 0) != 0 || set_limit(RLIMIT_CORE, 0, 1) != 0)
        goto fail;
    if (chdir(s->bwrap ? "/" : (s->cwd ? s->cwd : "/")) != 0)
        goto fail;
    if (!s->bwrap) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
            prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter) != 0)
            goto fail;
    }
    execve(program, argv, s->env);
fail:;
    int e = errno;
    ssize_t w = write(report, &e, sizeof e);
    (void)w;
    _exit(127);
}

int stdio_spawn(const struct stdio_spec *s, struct stdio_child *out, char *why, size_t cap)
{
    int in[2] = {-1, -1}, o[2] = {-1, -1}, e[2] = {-1, -1}, rep[2] = {-1, -1}, sfd = -1;
    char **bw = NULL;
    int rc = -1;
    char program[4096], bwrap[4096];
    if (!filter.len && stdio_seccomp_build(why, cap) != 0)
        return -1;
    if (stdio_resolve_program(s->argv[0], s->env, program, sizeof program) != 0) {
        snprintf(why, cap, "the program %.200s is not an executable file in PATH", s->argv[0]);
        return -1;
    }
    char **argv = s->argv;
    const char *exe = program;
    if (s->bwrap) {
        if (stdio_resolve_program("bwrap", NULL, bwrap, sizeof bwrap) != 0) {
            snprintf(why, cap,
                     "sandbox: bwrap, but bwrap is not installed (apt install "
                     "bubblewrap)");
            return -1;
        }
        sfd = memfd_create("toolgate-seccomp", MFD_CLOEXEC);
        size_t len = filter.len * sizeof(struct sock_filter);
        if (sfd < 0 || write(sfd, filter.filter, len) != (ssize_t)len || lseek(sfd, 0, SEEK_SET)) {
            snprintf(why, cap, "cannot hand the seccomp filter to bwrap");
            goto out;
        }
        if (!(bw = stdio_bwrap_argv(s, program, 3))) {
            snprintf(why, cap, "out of memory");
            goto out;
        }
        argv = bw;
        exe = bwrap;
    }
    if (pipe2(in, O_CLOEXEC) || pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC) ||
        pipe2(rep, O_CLOEXEC)) {
        snprintf(why, cap, "cannot make pipes: %s", strerror(errno));
        goto out;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, cap, "cannot fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0)
        child(s, in[0], o[1], e[1], sfd, rep[1], exe, argv);
    setpgid(pid, pid); /* also here, so a kill right after fork reaches the group */
    close(rep[1]);
    rep[1] = -1;
    int child_errno = 0;
    ssize_t got;
    do
        got = read(rep[0], &child_errno, sizeof child_errno);
    while (got < 0 && errno == EINTR);
    if (got == (ssize_t)sizeof child_errno) {
        snprintf(why, cap, "cannot start %.200s: %s", s->argv[0], strerror(child_errno));
        stdio_kill_group(pid, SIGKILL);
        out->pid = pid; /* to be reaped */
        goto out;
    }
    out->pid = pid;
    out->in_fd = in[1];
    out->out_fd = o[0];
    out->err_fd = e[0];
    in[1] = o[0] = e[0] = -1;
    fcntl(out->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(out->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(out->err_fd, F_SETFL, O_NONBLOCK);
    rc = 0;
out:
    for (int *fd = (int[]){in[0], in[1], o[0], o[1], e[0], e[1], rep[0], rep[1], sfd}, k = 0; k < 9;
         k++)
        if (fd[k] >= 0)
            close(fd[k]);
    cfg_strv_free(bw);
    return rc;
}
