/*
 * safety_dbcache: the compiled vectorscan database of a pattern set, kept in a file so that
 * a start (or a reload) with the same patterns deserializes it instead of compiling again.
 * Compiling every built-in detector takes most of toolgate's start-up CPU; deserializing the
 * same database takes a small fraction of it.
 *
 * The file is `safety.hsdb` in the configured directory (safety.compile_cache), and
 * `safety-joined.hsdb` for the database of the joined pass (the same patterns without
 * single-match). Each holds
 *
 *   "TGHSDB1\n" | key (32 bytes) | length (8 bytes, little-endian) | database | check (32)
 *
 * where key is the SHA-256 of the vectorscan version and of every pattern with its id and
 * flags, in order, and check is the SHA-256 of everything before it. A file whose key is not
 * this pattern set's (the patterns changed), whose check fails (truncated, corrupted) or that
 * vectorscan refuses is ignored and replaced after a fresh compile.
 *
 * What the file holds decides what the safety layer detects, so it is trusted no more than
 * the configuration: the directory must belong to toolgate's user and be writable by it alone
 * (no group or other write), and the file must be a regular file of that user, readable by it
 * alone; otherwise the cache is not read (nor written) and a warning says why. Every failure
 * of the cache falls back to compiling: the cache can make a start faster, never let a
 * different pattern set through.
 */
#include "layers/safety/safety-int.h"
#include "lib/digest.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DBCACHE_MAGIC "TGHSDB1\n"
#define DBCACHE_MAGIC_LEN 8
#define DBCACHE_HEAD (DBCACHE_MAGIC_LEN + GW_SHA256_LEN + 8)
#define DBCACHE_MAX (256u << 20) /* a serialized database larger than this is not cached */

static void dbcache_key(const char *const *exprs, const unsigned *flags, const unsigned *ids,
                        unsigned n, uint8_t key[GW_SHA256_LEN])
{
    struct gw_sha256_ctx c;
    gw_sha256_init(&c);
    const char *version = hs_version();
    gw_sha256_update(&c, version, strlen(version) + 1);
    for (unsigned i = 0; i < n; i++) {
        uint8_t meta[8];
        for (int b = 0; b < 4; b++) {
            meta[b] = (uint8_t)(ids[i] >> (8 * b));
            meta[4 + b] = (uint8_t)(flags[i] >> (8 * b));
        }
        gw_sha256_update(&c, meta, sizeof meta);
        gw_sha256_update(&c, exprs[i], strlen(exprs[i]) + 1);
    }
    gw_sha256_final(&c, key);
}

/* The directory is this user's and only it may write there. 0, or -1 with why. */
static int dbcache_dir_ok(const char *dir, char *why, size_t why_len)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        snprintf(why, why_len, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
        snprintf(why, why_len,
                 "%s must be a directory owned by toolgate's user and writable by it alone", dir);
        return -1;
    }
    return 0;
}

/* Reads the cached database for key; NULL when there is none usable (why says what). */
static hs_database_t *dbcache_read(const char *path, const uint8_t key[GW_SHA256_LEN], char *why,
                                   size_t why_len)
{
    hs_database_t *db = NULL;
    uint8_t *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0) {
        snprintf(why, why_len, "%s", errno == ENOENT ? "" : strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & (S_IRWXG | S_IRWXO))) {
        snprintf(why, why_len, "%s must be a file of toolgate's user, for it alone", path);
        goto out;
    }
    if (st.st_size < (off_t)(DBCACHE_HEAD + GW_SHA256_LEN) ||
        st.st_size > (off_t)(DBCACHE_HEAD + DBCACHE_MAX + GW_SHA256_LEN)) {
        snprintf(why, why_len, "%s has the wrong size", path);
        goto out;
    }
    size_t size = (size_t)st.st_size;
    buf = malloc(size);
    if (!buf) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    for (size_t got = 0; got < size;) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r <= 0) {
            snprintf(why, why_len, "%s could not be read", path);
            goto out;
        }
        got += (size_t)r;
    }
    uint64_t len = 0;
    for (int b = 0; b < 8; b++)
        len |= (uint64_t)buf[DBCACHE_MAGIC_LEN + GW_SHA256_LEN + b] << (8 * b);
    uint8_t check[GW_SHA256_LEN];
    if (memcmp(buf, DBCACHE_MAGIC, DBCACHE_MAGIC_LEN) != 0 ||
        len != size - DBCACHE_HEAD - GW_SHA256_LEN) {
        snprintf(why, why_len, "%s is not a cached database", path);
        goto out;
    }
    gw_sha256(buf, size - GW_SHA256_LEN, check);
    if (memcmp(check, buf + size - GW_SHA256_LEN, GW_SHA256_LEN) != 0) {
        snprintf(why, why_len, "%s is corrupted (its check does not match)", path);
        goto out;
    }
    if (memcmp(buf + DBCACHE_MAGIC_LEN, key, GW_SHA256_LEN) != 0) {
        why[0] = '\0'; /* another pattern set: replaced, nothing to warn about */
        goto out;
    }
    if (hs_deserialize_database((const char *)buf + DBCACHE_HEAD, (size_t)len, &db) != HS_SUCCESS) {
        db = NULL;
        snprintf(why, why_len, "vectorscan refused %s", path);
    }
out:
    free(buf);
    if (fd >= 0)
        close(fd);
    return db;
}

/* Writes db for key (a temporary file renamed over the old one). 0, or -1 with why. */
static int dbcache_write(const char *dir, const char *name, const char *path,
                         const uint8_t key[GW_SHA256_LEN], const hs_database_t *db, char *why,
                         size_t why_len)
{
    char *bytes = NULL, tmp[4200];
    size_t len = 0;
    uint8_t *buf = NULL;
    int fd = -1, rc = -1;
    if (hs_serialize_database(db, &bytes, &len) != HS_SUCCESS || len > DBCACHE_MAX) {
        snprintf(why, why_len, "the database could not be serialized");
        goto out;
    }
    size_t size = DBCACHE_HEAD + len + GW_SHA256_LEN;
    buf = malloc(size);
    if (!buf) {
        snprintf(why, why_len, "out of memory");
        goto out;
    }
    memcpy(buf, DBCACHE_MAGIC, DBCACHE_MAGIC_LEN);
    memcpy(buf + DBCACHE_MAGIC_LEN, key, GW_SHA256_LEN);
    for (int b = 0; b < 8; b++)
        buf[DBCACHE_MAGIC_LEN + GW_SHA256_LEN + b] = (uint8_t)((uint64_t)len >> (8 * b));
    memcpy(buf + DBCACHE_HEAD, bytes, len);
    gw_sha256(buf, size - GW_SHA256_LEN, buf + size - GW_SHA256_LEN);
    if (snprintf(tmp, sizeof tmp, "%s/.%s.%ld", dir, name, (long)getpid()) >= (int)sizeof tmp) {
        snprintf(why, why_len, "the directory name is too long");
        goto out;
    }
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(why, why_len, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    for (size_t put = 0; put < size;) {
        ssize_t w = write(fd, buf + put, size - put);
        if (w <= 0) {
            snprintf(why, why_len, "%s could not be written", tmp);
            goto out;
        }
        put += (size_t)w;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(why, why_len, "%s could not be written", tmp);
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(why, why_len, "%s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        unlink(tmp);
    free(buf);
    free(bytes); /* hs_serialize_database allocates with the misc allocator: malloc here */
    return rc;
}

int safety_dbcache_compile(const char *dir, const char *name, const char *const *exprs,
                           const unsigned *flags, const unsigned *ids, unsigned n,
                           hs_database_t **db, int *from_cache, char *why, size_t why_len)
{
    char path[4200], warn[4400] = "";
    uint8_t key[GW_SHA256_LEN];
    int usable = 0;
    *from_cache = 0;
    if (dir) {
        usable = dbcache_dir_ok(dir, warn, sizeof warn) == 0 &&
                 snprintf(path, sizeof path, "%s/%s", dir, name) < (int)sizeof path;
        if (usable) {
            dbcache_key(exprs, flags, ids, n, key);
            *db = dbcache_read(path, key, warn, sizeof warn);
            if (*db) {
                *from_cache = 1;
                return 0;
            }
        }
        if (warn[0])
            gw_log(GW_LOG_WARN, "safety_compile_cache", NULL, NULL,
                   "the compiled pattern cache is not used: %s; compiling", warn);
    }
    hs_compile_error_t *cerr = NULL;
    if (hs_compile_multi(exprs, flags, ids, n, HS_MODE_BLOCK, NULL, db, &cerr) != HS_SUCCESS) {
        snprintf(why, why_len, "vectorscan cannot compile the pattern set: %s",
                 cerr ? cerr->message : "unknown error");
        hs_free_compile_error(cerr);
        *db = NULL;
        return -1;
    }
    if (usable && dbcache_write(dir, name, path, key, *db, warn, sizeof warn) != 0)
        gw_log(GW_LOG_WARN, "safety_compile_cache", NULL, NULL,
               "the compiled pattern cache could not be written: %s", warn);
    return 0;
}
