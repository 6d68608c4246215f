/*
 * redis_conn: a hiredis async connection per worker thread, driven by the worker's libuv loop,
 * shared by the layers that keep state in Redis (the limits store, the approval replay store).
 * Each user keeps its own thread-local struct gw_redis_conn, so their connections and
 * timeouts stay apart.
 *
 * A connection that fails, or that its user drops (a round trip that timed out: a late reply
 * must not be taken for a later command's), is not retried for half a second, so a dead Redis
 * costs each call no more than a failed connect. An idle connection never keeps the loop
 * alive, and a worker that begins its shutdown closes it while its loop still runs.
 */
#ifndef TOOLGATE_CORE_REDIS_CONN_H
#define TOOLGATE_CORE_REDIS_CONN_H

#include "core/request.h"

#include <stdint.h>
#include <uv.h>

struct redisAsyncContext;

struct gw_redis_conn {
    struct redisAsyncContext *ac;
    uv_loop_t *loop;
    char host[256]; /* where ac is connected (a reload may name another server) */
    int port;
    struct gw_request_host worker; /* its shutdown closes the connection */
    uv_check_t check;
    int check_open;
    int64_t retry_at_ms; /* no reconnect before (monotonic ms) */
};

/*
 * The connection to host:port on loop, connecting when there is none (or it is to another
 * server or loop). worker, when it has a stopping hook, closes the connection at its
 * shutdown. NULL when there is no connection now (the caller treats Redis as unavailable).
 */
struct redisAsyncContext *gw_redis_conn_get(struct gw_redis_conn *c, const char *host, int port,
                                            uv_loop_t *loop, const struct gw_request_host *worker);
/* Drops the connection after a failed or timed-out round trip; no reconnect for 500 ms. */
void gw_redis_conn_drop(struct gw_redis_conn *c);
/* Closes the connection (a thread that ends, a test); the next get connects at once. */
void gw_redis_conn_close(struct gw_redis_conn *c);

/*
 * Readiness: a connection of its own to host:port that must answer PING within timeout_ms.
 * Returns 1 when it did, else 0 with a sentence in detail.
 */
int gw_redis_ping(const char *host, int port, int64_t timeout_ms, char *detail, size_t len);

#endif
