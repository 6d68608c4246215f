/*
 * audit_prefetch: reads ahead, on threads of its own, the table pages of the rows a filtered
 * scan of a SQLite store is about to read.
 *
 * A user's calls of a month lie one to a page all over the table, and SQLite reads each page
 * when the scan reaches its row, one after another: with the operating system's cache cold
 * that is one disk read at a time. The prefetcher is given the rows' ids in the scan's order
 * (from the index alone) and touches them from several connections at once, a bounded window
 * ahead of the scan, so that the scan finds its pages in the cache. It changes no answer:
 * whatever it fails to do, the scan reads the page itself.
 */
#ifndef GW_AUDIT_PREFETCH_H
#define GW_AUDIT_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

/* Fewer rows than this are read without help. */
#define AUDIT_PREFETCH_MIN_ROWS 256
/* Threads (each with its own read-only connection) and how far ahead of the scan they go. */
#define AUDIT_PREFETCH_THREADS 8
#define AUDIT_PREFETCH_WINDOW 4096

struct audit_prefetch;

/*
 * Starts reading ahead the rows ids[0..n) (taken: freed by audit_prefetch_stop) of the SQLite
 * database at path. NULL when it does not start (too few rows, a thread or connection that
 * cannot be had): the scan goes on alone.
 */
struct audit_prefetch *audit_prefetch_start(const char *path, int64_t *ids, size_t n);
/* The scan has read `done` rows of the list (it only grows). */
void audit_prefetch_progress(struct audit_prefetch *p, size_t done);
/* Stops the threads and frees everything (p may be NULL). */
void audit_prefetch_stop(struct audit_prefetch *p);
/* Prefetches started and rows touched by them in this process so far (for tests). */
uint64_t audit_prefetch_runs(void);
uint64_t audit_prefetch_rows(void);

#endif
