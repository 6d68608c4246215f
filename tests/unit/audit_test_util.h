/* Helpers shared by the audit tests: temp dirs, stores, verification, stdout capture. */
#ifndef AUDIT_TEST_UTIL_H
#define AUDIT_TEST_UTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

#include "layers/audit/audit.h"
#include "layers/audit/audit_chain.h"
#include "layers/audit/audit_store.h"
#include "layers/audit/audit_verify.h"
#include "layers/audit/audit_writer.h"

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void tmp_make(char *dir, size_t len)
{
    snprintf(dir, len, "/tmp/toolgate-audit-test-XXXXXX");
    if (!mkdtemp(dir))
        abort();
}

static inline void tmp_remove(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A config for a SQLite store at DIR/NAME; strings owned by the config. */
static inline struct audit_config *make_test_config(const char *dir, const char *name,
                                                    uint64_t every, uint64_t interval_ms,
                                                    uint64_t queue)
{
    struct audit_config *ac = calloc(1, sizeof *ac);
    char buf[512];
    if (!ac || audit_config_defaults(ac) != 0)
        abort();
    free(ac->store);
    snprintf(buf, sizeof buf, "sqlite:%s/%s", dir, name);
    ac->store = strdup(buf);
    free(ac->instance_id);
    ac->instance_id = strdup("test-1");
    ac->checkpoint_every = every;
    ac->checkpoint_interval_ms = interval_ms;
    ac->queue = queue;
    return ac;
}

/* Verifies the given files (paths) with the default key of the first; fills problem. */
static inline int verify_paths(const char *pub_path, const char *const *paths, size_t n, int live,
                               char *problem, size_t problem_len)
{
    char err[512];
    EVP_PKEY *pub = audit_key_load_public(pub_path, err, sizeof err);
    if (!pub) {
        snprintf(problem, problem_len, "%.300s", err);
        return -1;
    }
    struct audit_verifier v;
    int rc = -1;
    if (audit_verifier_init(&v, pub, live) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        struct audit_store *st = audit_sqlite_open(paths[i], 0, err, sizeof err);
        if (!st) {
            snprintf(problem, problem_len, "%.300s", err);
            goto out_v;
        }
        int f = audit_verifier_feed(&v, st);
        st->ops->close(st);
        if (f < 0)
            goto out_v;
    }
    rc = audit_verifier_finish(&v);
    snprintf(problem, problem_len, "%s", v.bad ? v.problem : "");
out_v:
    audit_verifier_free(&v);
out:
    EVP_PKEY_free(pub);
    return rc;
}

/* Runs fn with stdout going to a file; returns the malloc'd output. */
static inline char *capture_stdout(int (*fn)(int, char **), int argc, char **argv, int *rc)
{
    char path[] = "/tmp/toolgate-audit-out-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    *rc = fn(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    char *out = calloc(1, (size_t)len + 1);
    if (pread(fd, out, (size_t)len, 0) != len)
        abort();
    close(fd);
    unlink(path);
    return out;
}

static inline size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static inline size_t count_substr(const char *s, const char *sub)
{
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, sub)) != NULL; p += strlen(sub))
        n++;
    return n;
}

#endif
