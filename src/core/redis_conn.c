/* redis_conn: see redis_conn.h. */
#include "core/redis_conn.h"
#include "lib/timeutil.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#define RETRY_AFTER_MS 500

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct gw_redis_conn *c = ac->data;
    if (c && c->ac == ac) {
        c->ac = NULL;
        if (status != REDIS_OK)
            c->retry_at_ms = (int64_t)gw_mono_ms() + RETRY_AFTER_MS;
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct gw_redis_conn *c = ac->data;
    if (status != REDIS_OK && c && c->ac == ac) {
        /* hiredis frees the context after this callback; pending replies get NULL. */
        c->ac = NULL;
        c->retry_at_ms = (int64_t)gw_mono_ms() + RETRY_AFTER_MS;
    }
}

void gw_redis_conn_drop(struct gw_redis_conn *c)
{
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->retry_at_ms = (int64_t)gw_mono_ms() + RETRY_AFTER_MS;
        /* Free rather than disconnect: a hung server would never let a disconnect finish. */
        redisAsyncFree(ac);
    }
}

static void check_closed(uv_handle_t *h)
{
    struct gw_redis_conn *c = h->data;
    c->check_open = 0;
}

/*
 * Runs once per loop iteration of a worker that has a connection: when the worker begins its
 * shutdown, the connection is closed while the loop still runs, so that nothing of it
 * outlives the loop (the loop then ends once in-flight commands have answered or timed out).
 */
static void on_check(uv_check_t *h)
{
    struct gw_redis_conn *c = h->data;
    if (!gw_host_stopping(&c->worker))
        return;
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->retry_at_ms = INT64_MAX; /* no new connection on a stopping worker */
        redisAsyncFree(ac);
    }
    uv_check_stop(h);
    uv_close((uv_handle_t *)h, check_closed);
}

void gw_redis_conn_close(struct gw_redis_conn *c)
{
    if (c->ac) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        redisAsyncFree(ac);
    }
    c->loop = NULL;
    c->retry_at_ms = 0;
}

redisAsyncContext *gw_redis_conn_get(struct gw_redis_conn *c, const char *host, int port,
                                     uv_loop_t *loop, const struct gw_request_host *worker)
{
    if (c->ac && (c->loop != loop || c->port != port || strcmp(c->host, host) != 0))
        gw_redis_conn_close(c);
    if (c->ac)
        return c->ac;
    if ((int64_t)gw_mono_ms() < c->retry_at_ms)
        return NULL;
    redisAsyncContext *ac = redisAsyncConnect(host, port);
    if (!ac)
        return NULL;
    if (ac->err) {
        redisAsyncFree(ac);
        c->retry_at_ms = (int64_t)gw_mono_ms() + RETRY_AFTER_MS;
        return NULL;
    }
    if (redisLibuvAttach(ac, loop) != REDIS_OK) {
        redisAsyncFree(ac);
        return NULL;
    }
    /*
     * An idle connection must not keep the worker's loop alive at shutdown: only commands in
     * flight do (through their timers).
     */
    uv_unref((uv_handle_t *)&((redisLibuvEvents *)ac->ev.data)->handle);
    if (worker && worker->stopping && !c->check_open && uv_check_init(loop, &c->check) == 0) {
        c->worker = *worker;
        c->check.data = c;
        c->check_open = 1;
        uv_unref((uv_handle_t *)&c->check);
        uv_check_start(&c->check, on_check);
    }
    ac->data = c;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->loop = loop;
    snprintf(c->host, sizeof c->host, "%s", host);
    c->port = port;
    return ac;
}

int gw_redis_ping(const char *host, int port, int64_t timeout_ms, char *detail, size_t len)
{
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    int ok = 0;
    if (!c || c->err) {
        snprintf(detail, len, "cannot connect to Redis at %s:%d%s%s", host, port, c ? ": " : "",
                 c ? c->errstr : "");
        goto out;
    }
    redisSetTimeout(c, tv);
    redisReply *r = redisCommand(c, "PING");
    ok = r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) &&
         strcmp(r->str, "PONG") == 0;
    if (!ok)
        snprintf(detail, len, "Redis at %s:%d did not answer PING", host, port);
    if (r)
        freeReplyObject(r);
out:
    if (c)
        redisFree(c);
    return ok;
}
