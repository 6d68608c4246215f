/*
 * policy_replay: the shared store of the single-use ids of sealed approval states
 * (policy.approvals.replay_store: "redis://HOST:PORT"). A retry claims its state's id with
 * SET <prefix>approval:once:<hex SHA-256 of the id> 1 NX PX <ms until the state expires>:
 * the first claim on any instance sharing the Redis server succeeds, every later one finds
 * the key and is a replay.
 *
 * One connection per worker thread (thread-local), driven by the worker's libuv loop through
 * hiredis's async API, as the limits layer's store is. A claim that errs, finds no
 * connection, or is not answered within replay_timeout is "unavailable": the caller denies
 * the call (fail closed). A connection that timed out is dropped (a late reply must not be
 * taken for a later claim's) and not retried for half a second, so a dead Redis costs each
 * call no more than a failed connect.
 */
#include "layers/policy/policy_replay.h"
#include "core/redis_conn.h"
#include "lib/digest.h"
#include "lib/log.h"
#include "lib/probe.h"
#include "lib/timeutil.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static __thread struct gw_redis_conn tls_conn;

static atomic_uint_fast64_t n_claims, n_replays, n_errors;

void policy_replay_counts(uint64_t *claims, uint64_t *replays, uint64_t *errors)
{
    *claims = atomic_load(&n_claims);
    *replays = atomic_load(&n_replays);
    *errors = atomic_load(&n_errors);
}

void policy_replay_thread_close(void)
{
    gw_redis_conn_close(&tls_conn);
}

static redisAsyncContext *conn(const struct policy_approvals *a, uv_loop_t *loop,
                               const struct gw_request_host *host)
{
    return gw_redis_conn_get(&tls_conn, a->replay_host, a->replay_port, loop, host);
}

/* ---- one claim ---- */

struct claim {
    policy_replay_cb cb;
    void *arg;
    int done;          /* the callback has been called */
    int reply_pending; /* hiredis still holds this claim as privdata */
    int timer_open;
    uv_timer_t timer;
};

static void claim_maybe_free(struct claim *cl)
{
    if (!cl->reply_pending && !cl->timer_open)
        free(cl);
}

static void timer_closed(uv_handle_t *h)
{
    struct claim *cl = h->data;
    cl->timer_open = 0;
    claim_maybe_free(cl);
}

static void finish(struct claim *cl, int outcome)
{
    if (cl->done)
        return;
    cl->done = 1;
    if (cl->timer_open && !uv_is_closing((uv_handle_t *)&cl->timer))
        uv_close((uv_handle_t *)&cl->timer, timer_closed);
    atomic_fetch_add(outcome == POLICY_REPLAY_FIRST  ? &n_claims
                     : outcome == POLICY_REPLAY_USED ? &n_replays
                                                     : &n_errors,
                     1);
    cl->cb(cl->arg, outcome);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct claim *cl = privdata;
    redisReply *r = reply;
    cl->reply_pending = 0;
    if (cl->done) {
        claim_maybe_free(cl);
        return;
    }
    if (!r) {
        gw_log(GW_LOG_WARN, "approval_replay_store", NULL, NULL,
               "the connection to the replay store (Redis) failed; the call is denied");
        finish(cl, POLICY_REPLAY_UNAVAILABLE);
    } else if (r->type == REDIS_REPLY_STATUS && r->len == 2 && memcmp(r->str, "OK", 2) == 0) {
        finish(cl, POLICY_REPLAY_FIRST);
    } else if (r->type == REDIS_REPLY_NIL) {
        finish(cl, POLICY_REPLAY_USED);
    } else {
        gw_log(GW_LOG_WARN, "approval_replay_store", NULL, NULL,
               "the replay store (Redis) refused a claim%s%.200s; the call is denied",
               r->type == REDIS_REPLY_ERROR ? ": " : "",
               r->type == REDIS_REPLY_ERROR ? r->str : "");
        finish(cl, POLICY_REPLAY_UNAVAILABLE);
    }
    claim_maybe_free(cl);
}

static void on_timeout(uv_timer_t *t)
{
    struct claim *cl = t->data;
    gw_log(GW_LOG_WARN, "approval_replay_timeout", NULL, NULL,
           "the replay store (Redis) did not answer within policy.approvals.replay_timeout; the "
           "call is denied and the connection dropped");
    finish(cl, POLICY_REPLAY_UNAVAILABLE);
    /* The late reply must not be matched to a later claim: start a new connection. */
    gw_redis_conn_drop(&tls_conn);
}

void policy_replay_key(const char *prefix, const uint8_t once[16], char *out, size_t size)
{
    uint8_t h[GW_SHA256_LEN];
    char hex[GW_SHA256_HEX_LEN + 1];
    gw_sha256(once, 16, h);
    gw_hex(h, sizeof h, hex);
    snprintf(out, size, "%sapproval:once:%s", prefix ? prefix : "", hex);
}

void policy_replay_claim(const struct policy_approvals *a, struct uv_loop_s *loop,
                         const struct gw_request_host *host, const uint8_t once[16],
                         uint64_t ttl_ms, policy_replay_cb cb, void *arg)
{
    struct claim *cl = calloc(1, sizeof *cl);
    if (!cl) {
        atomic_fetch_add(&n_errors, 1);
        cb(arg, POLICY_REPLAY_UNAVAILABLE);
        return;
    }
    cl->cb = cb;
    cl->arg = arg;
    char key[POLICY_REPLAY_KEY_MAX], px[24];
    policy_replay_key(a->replay_prefix, once, key, sizeof key);
    snprintf(px, sizeof px, "%llu", (unsigned long long)(ttl_ms ? ttl_ms : 1));
    const char *argv[] = {"SET", key, "1", "NX", "PX", px};
    size_t argvlen[] = {3, strlen(key), 1, 2, 2, strlen(px)};
    redisAsyncContext *ac = loop && a->replay_host ? conn(a, loop, host) : NULL;
    if (!ac || redisAsyncCommandArgv(ac, on_reply, cl, 6, argv, argvlen) != REDIS_OK) {
        gw_log(GW_LOG_WARN, "approval_replay_store", NULL, NULL,
               "the replay store (Redis at %s:%d) is unreachable; the call is denied",
               a->replay_host ? a->replay_host : "?", a->replay_port);
        finish(cl, POLICY_REPLAY_UNAVAILABLE);
        claim_maybe_free(cl);
        return;
    }
    cl->reply_pending = 1;
    uv_timer_init(loop, &cl->timer);
    cl->timer.data = cl;
    cl->timer_open = 1;
    /* The loop's cached time may be old (see limits_redis.c): one clock read. */
    uv_update_time(loop);
    uv_timer_start(&cl->timer, on_timeout, a->replay_timeout_ms, 0);
}

/* ---- readiness ---- */

static struct gw_probe ready_probe = GW_PROBE_INIT;

static int ping(void *arg, char *detail, size_t len)
{
    const struct policy_approvals *a = arg;
    return gw_redis_ping(a->replay_host, a->replay_port, (int64_t)a->replay_timeout_ms, detail,
                         len);
}

int policy_replay_ready(const struct policy_approvals *a, char *detail, size_t len)
{
    return gw_probe_run(&ready_probe, 1000, ping, (void *)a, detail, len);
}
