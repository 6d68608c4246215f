/* The process's memory allocator, as built and as found running. */
#ifndef GW_ALLOC_H
#define GW_ALLOC_H

#include <stdbool.h>

/* "mimalloc 2.0.9" when mimalloc serves malloc in this process, "libc" for glibc's,
 * "sanitizer" in an ASan build. A build linked with mimalloc in which malloc still reaches
 * libc (a preloaded allocator) says "libc (mimalloc linked, not in use)". The text is
 * static. */
const char *gw_allocator(void);

/* Whether P, from malloc, was allocated by mimalloc (false in a build without it). */
bool gw_allocator_owns(const void *p);

/* Gives the memory this thread's allocator holds free back to the system (mimalloc's
 * mi_collect; glibc's malloc_trim). For a thread that has gone idle: it costs a pass over the
 * thread's pages (mimalloc) or every arena (glibc). mimalloc keeps what was freed within its
 * decommit delay (25 ms) for reuse even so. */
void gw_allocator_collect(void);

/* While LEAN is set, memory freed is returned to the system at once instead of kept for reuse
 * (mimalloc's decommit delay at 0; nothing with glibc's allocator). For start-up, whose
 * threads free what they set up and then wait. Every free costs a system call meanwhile.
 * Process-wide; set and cleared from one thread (the main one). */
void gw_allocator_lean(bool lean);

#endif
