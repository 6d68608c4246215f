/*
 * affinity: which endpoint of a backend holds an MCP session.
 *
 * A backend with several endpoints (replicas) that keeps sessions in memory only knows the
 * sessions it issued: once an endpoint has answered an initialize with a session id, every
 * later request of that session must go to the same endpoint. The table maps a hash of the
 * backend's session id to the endpoint; it is process-wide, thread-safe and bounded (the oldest
 * entry of a probe window makes room), so it never grows with the number of sessions seen.
 */
#ifndef GW_AFFINITY_H
#define GW_AFFINITY_H

#include "core/config.h"

/* The endpoint index remembered for (backend, session id), or -1. */
int affinity_lookup(const struct gw_backend *be, const char *session_id);
/* Remembers that the backend's session lives on endpoint `index`. */
void affinity_remember(const struct gw_backend *be, const char *session_id, int index);
/* Forgets a session (it was deleted). */
void affinity_forget(const struct gw_backend *be, const char *session_id);
/* Drops everything (shutdown, tests). */
void affinity_clear(void);

#endif
