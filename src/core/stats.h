/*
 * stats: what the core counts for GET /metrics: requests by route, MCP method and decision,
 * end-to-end and per-stage durations, backend durations and failures, open connections,
 * sessions, the build and the configuration generation.
 *
 * The counters are process-wide (they outlive configuration generations) and updated with
 * relaxed atomic additions when a request ends: no lock and no allocation on the request
 * path. Every label comes from a bounded set: routes and backends by name from the
 * configurations loaded since start (at most 256 and 1024), methods from the method table,
 * reasons from the list the core and the modules declare ("other" for anything else).
 */
#ifndef GW_STATS_H
#define GW_STATS_H

#include "core/config.h"
#include "core/request.h"
#include "lib/metrics.h"

/* Before the workers start; makes the counters and follows cfg (below). 0 or -1. */
int gw_stats_start(const struct gw_config *cfg);
/*
 * Gives cfg's routes and backends their series (by name: a name seen before keeps its
 * counts), setting their stats_id. For a generation that does not serve yet (a reload's,
 * once it is certain); one thread at a time.
 */
void gw_stats_follow(const struct gw_config *cfg);
/* After the workers have stopped. */
void gw_stats_stop(void);
/* A request on a route has ended (its answer sent or abandoned); on its worker's thread. */
void gw_stats_request_done(const struct gw_request *req);
/* Appends the core's families to out. */
void gw_stats_write(const struct gw_config *cfg, struct gw_metrics_out *out);

/* The label value a reason code is counted under ("" when allowed, "other" when unknown). */
const char *gw_stats_reason_label(const char *reason_code);

#endif
