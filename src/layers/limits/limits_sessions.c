/*
 * limits_sessions: toolgate's MCP sessions (mcp/session.h) in Redis, beside the shared rate
 * limits and budgets, when limits.store is Redis. Every instance behind one load balancer then
 * knows every session, and sessions survive a restart. Keys are "tg:s:<hex SHA-256 of the
 * id>", values the session's encoding, with the idle timeout as their lifetime (renewed by
 * GETEX on every lookup). A lookup that Redis does not answer within limits.redis_timeout is
 * an error: the request is refused (503), never let through on a guess.
 */
#include "layers/limits/limits-int.h"
#include "lib/log.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static const struct limits_config *session_lc;

/* The configured key prefix ("toolgate:") before the session's key. */
static void full_key(const char *key, char *out, size_t len)
{
    snprintf(out, len, "%s%s",
             session_lc && session_lc->redis_prefix ? session_lc->redis_prefix : "", key);
}

struct sop {
    mcp_session_get_cb *cb;
    void *arg;
    int done;
    int reply_pending;
    int timer_open;
    uv_timer_t timer;
};

static void sop_maybe_free(struct sop *op)
{
    if (!op->reply_pending && !op->timer_open)
        free(op);
}

static void sop_timer_closed(uv_handle_t *h)
{
    struct sop *op = h->data;
    op->timer_open = 0;
    sop_maybe_free(op);
}

static void sop_finish(struct sop *op, int rc, const char *value, size_t len)
{
    if (op->done)
        return;
    op->done = 1;
    if (op->timer_open && !uv_is_closing((uv_handle_t *)&op->timer))
        uv_close((uv_handle_t *)&op->timer, sop_timer_closed);
    op->cb(op->arg, rc, value, len);
}

static void on_get_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct sop *op = privdata;
    redisReply *r = reply;
    op->reply_pending = 0;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        if (r)
            gw_log(GW_LOG_WARN, "session_store_error", NULL, NULL,
                   "Redis refused a session lookup: %.200s", r->str);
        sop_finish(op, -1, NULL, 0);
    } else if (r->type == REDIS_REPLY_NIL) {
        sop_finish(op, 1, NULL, 0);
    } else if (r->type == REDIS_REPLY_STRING) {
        sop_finish(op, 0, r->str, r->len);
    } else {
        sop_finish(op, -1, NULL, 0);
    }
    sop_maybe_free(op);
}

static void on_get_timeout(uv_timer_t *t)
{
    struct sop *op = t->data;
    gw_log(GW_LOG_WARN, "session_store_timeout", NULL, NULL,
           "Redis did not answer a session lookup within limits.redis_timeout");
    sop_finish(op, -1, NULL, 0);
    lredis_drop();
}

static void rs_get(void *ctx, const char *key, uint64_t ttl_ms, void *loop, mcp_session_get_cb *cb,
                   void *arg)
{
    (void)ctx;
    const struct limits_config *lc = session_lc;
    redisAsyncContext *ac = lc && loop ? lredis_conn(lc, loop) : NULL;
    struct sop *op = ac ? calloc(1, sizeof *op) : NULL;
    if (!op) {
        cb(arg, -1, NULL, 0);
        return;
    }
    op->cb = cb;
    op->arg = arg;
    char ttl[32], k[256];
    full_key(key, k, sizeof k);
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)(ttl_ms ? ttl_ms : 1));
    const char *argv[] = {"GETEX", k, "PX", ttl};
    size_t lens[] = {5, strlen(k), 2, strlen(ttl)};
    if (redisAsyncCommandArgv(ac, on_get_reply, op, 4, argv, lens) != REDIS_OK) {
        free(op);
        cb(arg, -1, NULL, 0);
        return;
    }
    op->reply_pending = 1;
    uv_timer_init(loop, &op->timer);
    op->timer.data = op;
    op->timer_open = 1;
    uv_update_time(loop);
    uv_timer_start(&op->timer, on_get_timeout, lc->redis_timeout_ms, 0);
}

static void on_write_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    (void)privdata;
    redisReply *r = reply;
    if (!r || r->type == REDIS_REPLY_ERROR)
        gw_log(GW_LOG_WARN, "session_store_write", NULL, NULL,
               "a session write did not reach Redis%s%.200s", r ? ": " : "", r ? r->str : "");
}

/*
 * Writes go out on the thread's connection ahead of the answer that names the session, so
 * the next request of the session (on any instance) finds it unless Redis itself is behind;
 * then that request meets an unknown session (404) and the client initializes again: the
 * failure is closed, never a session that passes unchecked.
 */
static int rs_put(void *ctx, const char *key, const char *value, size_t len, uint64_t ttl_ms,
                  void *loop)
{
    (void)ctx;
    redisAsyncContext *ac = session_lc && loop ? lredis_conn(session_lc, loop) : NULL;
    if (!ac)
        return -1;
    char ttl[32], k[256];
    full_key(key, k, sizeof k);
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)(ttl_ms ? ttl_ms : 1));
    const char *argv[] = {"SET", k, value, "PX", ttl};
    size_t lens[] = {3, strlen(k), len, 2, strlen(ttl)};
    return redisAsyncCommandArgv(ac, on_write_reply, NULL, 5, argv, lens) == REDIS_OK ? 0 : -1;
}

static void rs_del(void *ctx, const char *key, void *loop)
{
    (void)ctx;
    redisAsyncContext *ac = session_lc && loop ? lredis_conn(session_lc, loop) : NULL;
    if (!ac) {
        gw_log(GW_LOG_WARN, "session_store_write", NULL, NULL,
               "Redis is unavailable: an ended session stays until its idle timeout");
        return;
    }
    char k[256];
    full_key(key, k, sizeof k);
    const char *argv[] = {"DEL", k};
    size_t lens[] = {3, strlen(k)};
    redisAsyncCommandArgv(ac, on_write_reply, NULL, 2, argv, lens);
}

static const struct mcp_session_store redis_store = {"redis", rs_get, rs_put, rs_del, NULL};

void limits_sessions_use_redis(const struct limits_config *lc)
{
    session_lc = lc;
    mcp_sessions_use(&redis_store);
}

void limits_sessions_stop(void)
{
    if (session_lc)
        mcp_sessions_use(NULL);
    session_lc = NULL;
}
