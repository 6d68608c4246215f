/* The process's memory allocator. With TOOLGATE_MIMALLOC the binary is linked against
 * mimalloc, which replaces malloc and free for every library in the process; this file says
 * which allocator is serving malloc (for --version and the build-info metric) and asks it to
 * give free memory back: a collection for a quiet thread, lean mode for start-up. */
#include "lib/alloc.h"

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef TOOLGATE_MIMALLOC
#include <mimalloc.h>
#endif

static pthread_once_t alloc_once = PTHREAD_ONCE_INIT;
#ifdef __SANITIZE_ADDRESS__
static char alloc_name[64] = "sanitizer"; /* ASan's allocator serves malloc */
#else
static char alloc_name[64] = "libc";
#endif

bool gw_allocator_owns(const void *p)
{
#ifdef TOOLGATE_MIMALLOC
    return p != NULL && mi_is_in_heap_region(p);
#else
    (void)p;
    return false;
#endif
}

static void alloc_probe(void)
{
#ifdef TOOLGATE_MIMALLOC
    void *p = calloc(1, 64);
    bool ours = gw_allocator_owns(p);
    free(p);
    if (ours) {
        int v = mi_version(); /* major * 100 + minor * 10 + patch */
        snprintf(alloc_name, sizeof alloc_name, "mimalloc %d.%d.%d", v / 100, v / 10 % 10, v % 10);
    } else {
        snprintf(alloc_name, sizeof alloc_name, "libc (mimalloc linked, not in use)");
    }
#endif
}

const char *gw_allocator(void)
{
    pthread_once(&alloc_once, alloc_probe);
    return alloc_name;
}

void gw_allocator_collect(void)
{
#ifdef TOOLGATE_MIMALLOC
    if (gw_allocator()[0] == 'm') {
        mi_collect(true);
        return;
    }
#endif
    malloc_trim(0);
}

void gw_allocator_lean(bool lean)
{
#ifdef TOOLGATE_MIMALLOC
    static long kept = -1;
    if (lean) {
        if (kept < 0)
            kept = mi_option_get(mi_option_decommit_delay);
        mi_option_set(mi_option_decommit_delay, 0);
    } else if (kept >= 0) {
        mi_option_set(mi_option_decommit_delay, kept);
    }
#else
    (void)lean;
#endif
}
