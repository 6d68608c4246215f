/*
 * events: how a module that is not on a request's path puts a record on the audit chain
 * (tool pins, drifts, approvals). The audit module registers its queue here while its writer
 * runs; others submit through it and never include the audit layer.
 */
#ifndef GW_LIB_EVENTS_H
#define GW_LIB_EVENTS_H

#include <jansson.h>

/* Queues one record (steals rec; it must carry "kind"). Returns 0 or a negative errno. */
typedef int (*gw_event_sink_fn)(json_t *rec);

/* Registers the sink (NULL: none). Called by the audit module at start and stop. */
void gw_event_sink_set(gw_event_sink_fn fn);

/* Submits rec to the sink (steals it). -ENOTCONN when no sink is registered. */
int gw_event_submit(json_t *rec);

#endif
