/*
 * limits: rate limits (GCRA), spend budgets with pre-flight reservation, and agent-loop
 * detection for tool calls.
 *
 * The layer sits after policy: it never decides who may call what, only how often and for
 * how much. No `limits` section in the configuration means no limits at all. Stores: an
 * in-process sharded memory store (default) with an SQLite ledger that persists spend, or
 * Redis shared by several instances (scripts evaluated atomically with the server's clock).
 * docs/limits.md describes every key.
 */
#ifndef GW_LIMITS_H
#define GW_LIMITS_H

#include "lib/cfg.h"
#include "core/config.h"
#include "layers/modules.h"

struct gw_config;
struct limits_config;

/*
 * Parses the `limits:` section (section may be NULL: *out stays NULL, meaning no limits).
 * Returns 0 and sets *out (free with limits_config_free), or -1 with err naming file:line:col
 * and the key path.
 */
int limits_config_parse(const struct cfg_doc *doc, const struct cfg_node *section,
                        struct limits_config **out, struct cfg_error *err);
void limits_config_free(struct limits_config *lc);

/*
 * Runtime for cfg->limits: creates the memory store, opens the ledger and loads the spend of
 * current periods from it. Without a limits section it does nothing. Returns 0, or a negative
 * errno-style code after logging what failed. One runtime per process; limits_stop releases
 * it (idempotent). Redis connections are opened lazily by each worker thread.
 */
int limits_start(const struct gw_config *cfg);
void limits_stop(void);

/*
 * `toolgate bench limits`: prints one line per measurement: the in-process check cost
 * (ns per check) and, when a redis-server binary can be started on a loopback port, the
 * Redis-backed check cost. Returns 0, or 1 on failure.
 */
int limits_bench_main(int argc, char **argv);

/* GET /readyz: with a Redis store, whether it answers (limits_ops.c). */
void limits_ready(const struct gw_config *cfg, json_t *checks);
/* GET /metrics: events, loops and spend (limits_ops.c); counted when a request completes. */
void limits_metrics(const struct gw_config *cfg, struct gw_metrics_out *out);
void limits_count_complete(const struct gw_request *req);
/*
 * The admin API's topic "spend" and the per-tenant spend metric (limits_admin.c);
 * limits_admin_note remembers who settled a cost (called from limits_count_complete).
 */
int limits_admin_api(const struct gw_config *cfg, const char *topic, const json_t *params,
                     json_t **out);
void limits_admin_note(const struct gw_request *req);
void limits_admin_metrics(struct gw_metrics_out *out);
void limits_admin_reset(void); /* tests */

/* The limits layer's section in a generation (NULL: see limits_config_parse). */
static inline const struct limits_config *limits_config_of(const struct gw_config *cfg)
{
    return cfg ? cfg->modules[GW_STAGE_LIMITS] : NULL;
}

/* The layer's pipeline stage (its struct gw_module is limits_module, layers/modules.h). */
extern const struct gw_layer_ops limits_layer;

#endif
