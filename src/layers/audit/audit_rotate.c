/* Rotated SQLite files: finding the newest, and the retention sweep (audit_rotate.h). */
#include "layers/audit/audit_rotate.h"
#include "layers/audit/audit_store.h"

#include "lib/log.h"

#include <dirent.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Finds the newest rotated sibling of path (largest suffix). Returns 1 found, 0 none. */
int audit_newest_rotated(const char *path, char *out, size_t outlen)
{
    char dirbuf[4096], basebuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
    snprintf(basebuf, sizeof basebuf, "%s", path);
    const char *dir = dirname(dirbuf), *base = basename(basebuf);
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char best[64] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *s = e->d_name;
        if (strncmp(s, base, blen) != 0 || s[blen] != '.' || strlen(s + blen + 1) != 20 ||
            strspn(s + blen + 1, "0123456789") != 20)
            continue;
        if (strcmp(s + blen + 1, best) > 0)
            snprintf(best, sizeof best, "%s", s + blen + 1);
    }
    closedir(d);
    if (!best[0])
        return 0;
    snprintf(out, outlen, "%s/%s", dir, base);
    size_t l = strlen(out);
    snprintf(out + l, outlen - l, ".%s", best);
    return 1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * audit.retention: deletes the oldest rotated files (names sort by their last seq) whose
 * modification time is past the retention, oldest first, stopping at the first one still
 * kept, and appends a `retention` record saying what went: the seq range, the hash of its
 * last record (what the oldest kept record chains onto), how many files, by which policy.
 * The record is chained and signed like any other, so verify can tell a dropped range from
 * records that went missing.
 */
json_t *audit_retention_sweep(const char *path, const char *instance, uint64_t retention_ms)
{
    if (!retention_ms)
        return NULL;
    char dirbuf[4096], basebuf[4096], full[8400], err[256];
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
    snprintf(basebuf, sizeof basebuf, "%s", path);
    const char *dir = dirname(dirbuf), *base = basename(basebuf);
    size_t blen = strlen(base), n = 0, cap = 0;
    char **names = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *s = e->d_name;
        if (strncmp(s, base, blen) != 0 || s[blen] != '.' || strlen(s + blen + 1) != 20 ||
            strspn(s + blen + 1, "0123456789") != 20)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **x = realloc(names, cap * sizeof *x);
            if (!x)
                break;
            names = x;
        }
        if (!(names[n] = strdup(s)))
            break;
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_names);
    time_t cutoff = time(NULL) - (time_t)(retention_ms / 1000);
    uint64_t through = 0, files = 0;
    char last_hash[65] = "";
    for (size_t i = 0; i < n; i++) {
        snprintf(full, sizeof full, "%s/%s", dir, names[i]);
        struct stat sb;
        if (stat(full, &sb) != 0 || sb.st_mtime >= cutoff)
            break;
        char url[8500];
        snprintf(url, sizeof url, "sqlite:%s", full);
        struct audit_store *st = audit_store_open(url, 0, err, sizeof err);
        struct audit_head h;
        int have = st && st->ops->head(st, instance, &h) == 1;
        if (st)
            st->ops->close(st);
        if (!have || unlink(full) != 0)
            break;
        gw_log_info("audit_retention", "deleted rotated audit file %s (older than retention)",
                    full);
        through = h.seq;
        memcpy(last_hash, h.hash, sizeof last_hash);
        files++;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (!files)
        return NULL;
    return json_pack("{s:s, s:I, s:s, s:I, s:s, s:I}", "kind", "retention", "through_seq",
                     (json_int_t)through, "last_hash", last_hash, "files", (json_int_t)files, "by",
                     "audit.retention", "retention_ms", (json_int_t)retention_ms);
}
