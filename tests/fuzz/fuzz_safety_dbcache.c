/*
 * Fuzz driver for the compiled pattern database cache (safety_dbcache.c): the input is the
 * cache file, written for toolgate's user alone in a directory of its own, and one pattern
 * set is compiled through it. Invariants: the call succeeds whatever the file holds, and the
 * database it yields, loaded or compiled, finds exactly what the patterns find (a file cannot
 * make the set find less).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layers/safety/safety-int.h"

static char dir[64];
static char path[128];

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                    void *ctx)
{
    (void)from;
    (void)to;
    (void)flags;
    *(unsigned *)ctx |= 1u << id;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const exprs[] = {"EMP-[0-9]{6}", "[0-9]{3}-[0-9]{2}-[0-9]{4}"};
    static const unsigned flags[] = {HS_FLAG_SINGLEMATCH, HS_FLAG_SINGLEMATCH};
    static const unsigned ids[] = {0, 1};
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/toolgate-fuzz-dbcache-%ld", (long)getpid());
        if (mkdir(dir, 0700) != 0)
            abort();
        snprintf(path, sizeof path, "%s/safety.hsdb", dir);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size) || close(fd) != 0)
        abort();
    hs_database_t *db = NULL;
    hs_scratch_t *scratch = NULL;
    int from_cache = 0;
    char why[256];
    if (safety_dbcache_compile(dir, "safety.hsdb", exprs, flags, ids, 2, &db, &from_cache, why,
                               sizeof why) != 0)
        abort();
    if (hs_alloc_scratch(db, &scratch) != HS_SUCCESS)
        abort();
    static const char text[] = "badge EMP-123456, number 134-67-7626";
    unsigned seen = 0;
    if (hs_scan(db, text, sizeof text - 1, 0, scratch, on_match, &seen) != HS_SUCCESS || seen != 3)
        abort();
    seen = 0;
    if (hs_scan(db, "nothing here", 12, 0, scratch, on_match, &seen) != HS_SUCCESS || seen != 0)
        abort();
    hs_free_scratch(scratch);
    hs_free_database(db);
    return 0;
}
