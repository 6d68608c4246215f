/*
 * limits_ops: readiness of the limits layer: with a Redis store, whether Redis answers a
 * PING within redis_timeout (a connection of its own, at most one probe a second).
 */
#include "layers/limits/limits-int.h"
#include "lib/probe.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>

#define PROBE_INTERVAL_MS 1000

static struct gw_probe redis_probe = GW_PROBE_INIT;

static int ping_redis(void *arg, char *detail, size_t len)
{
    const struct limits_config *lc = arg;
    struct timeval tv = {(time_t)(lc->redis_timeout_ms / 1000),
                         (suseconds_t)(lc->redis_timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(lc->redis_host, lc->redis_port, tv);
    int ok = 0;
    if (!c || c->err) {
        snprintf(detail, len, "cannot connect to Redis at %s:%d%s%s", lc->redis_host,
                 lc->redis_port, c ? ": " : "", c ? c->errstr : "");
        goto out;
    }
    redisSetTimeout(c, tv);
    redisReply *r = redisCommand(c, "PING");
    ok = r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) &&
         strcmp(r->str, "PONG") == 0;
    if (!ok)
        snprintf(detail, len, "Redis at %s:%d did not answer PING", lc->redis_host, lc->redis_port);
    if (r)
        freeReplyObject(r);
out:
    if (c)
        redisFree(c);
    return ok;
}

void limits_ready(const struct gw_config *cfg, json_t *checks)
{
    const struct limits_config *lc = limits_config_of(cfg);
    if (!lc || !lc->redis_host)
        return;
    char detail[160];
    int ok = gw_probe_run(&redis_probe, PROBE_INTERVAL_MS, ping_redis, (void *)lc, detail,
                          sizeof detail);
    json_t *c = json_pack("{s:s}", "state", ok ? "ok" : "failing");
    if (c && !ok)
        json_object_set_new(c, "detail", json_string(detail));
    json_object_set_new(checks, "limits_redis", c);
}
