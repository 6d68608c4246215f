/*
 * generation: the life of configuration generations. A generation (struct gw_config) is
 * immutable and reference-counted: the current pointer holds one reference, each worker holds
 * the one it serves new requests with, and every request in flight (an exchange, an open
 * stream) holds the one it started with. The last holder frees it, on whatever thread that
 * is. A reload (core/reload.c) makes a new generation current; what is already running keeps
 * its own to the end.
 */
#ifndef GW_GENERATION_H
#define GW_GENERATION_H

#include <stdint.h>

#include "core/config.h"

/*
 * Makes `boot` (as loaded, one reference: the caller's) the current generation; the current
 * pointer takes a reference of its own. Called once before the workers start.
 */
void gw_generation_init(struct gw_config *boot);
/* The current generation with a reference for the caller (release it), or NULL before init. */
struct gw_config *gw_generation_acquire(void);
/* One more reference on a generation the caller already holds. */
void gw_generation_hold(const struct gw_config *cfg);
/* Drops one reference; the last one frees the generation. NULL is ignored. */
void gw_generation_release(const struct gw_config *cfg);
/*
 * Makes `next` current (numbering it), taking over the caller's reference to it, and drops
 * the current pointer's reference to the previous one. Any thread.
 */
void gw_generation_swap(struct gw_config *next);
/* The number of the current generation (0 before init); cheap, for workers to poll. */
uint64_t gw_generation_current_number(void);
/* Generations alive (current, draining ones): for tests and the status page. */
long gw_generation_alive(void);
/* Drops the current pointer's reference (after the workers have stopped). */
void gw_generation_shutdown(void);

#endif
