/*
 * The limits layer on Redis: a real redis-server on a loopback port in a temp dir, started
 * and stopped by the test. Rate limits and budgets through the script (with the NOSCRIPT
 * fallback), settlement (a call sent is charged even when the client hangs up), spend kept by
 * Redis across a restart of the layer, a dead Redis (fail closed, fail local) and a silent one
 * (timeout).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "core/config.h"
#include "lib/timeutil.h"
#include "layers/layer.h"
#include "layers/limits/limits-int.h"
#include "../../redis_fixture.h"

static uv_loop_t loop;

static int setup(void **state)
{
    (void)state;
    port = 0; /* a port of its own for each test's server */
    if (redis_setup("limits-redis", &loop) != 0)
        return -1;
    limits_set_thread_loop(&loop);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    lredis_thread_close();
    return redis_teardown(&loop);
}

/* A test that failed half way has not stopped the layer: the next one must start it anew. */
static int test_teardown(void **state)
{
    (void)state;
    limits_stop();
    return 0;
}

static struct gw_config *load(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static struct gw_config *load(const char *fmt, ...)
{
    char yaml[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(yaml, sizeof yaml, fmt, ap);
    va_end(ap);
    struct cfg_error err = {{0}};
    struct gw_config *cfg = gw_config_load_string(yaml, "t.yaml", &err);
    if (!cfg)
        fail_msg("config: %s", err.msg);
    return cfg;
}

static struct gw_request *call(const struct gw_config *cfg, const char *sub, const char *tool)
{
    struct gw_request *req = gw_request_new(cfg);
    req->identity.verified = 1;
    req->identity.subject = strdup(sub);
    req->identity.tenant = strdup("t1");
    char json[256];
    snprintf(json, sizeof json,
             "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"%s\","
             "\"arguments\":{}}}",
             tool);
    json_t *j = json_loads(json, 0, NULL);
    req->rpc.msgs = calloc(1, sizeof *req->rpc.msgs);
    req->rpc.n = 1;
    struct mcp_message *m = &req->rpc.msgs[0];
    m->json = j;
    m->kind = MCP_REQUEST;
    m->method = "tools/call";
    m->id = json_object_get(j, "id");
    m->target = json_string_value(json_object_get(json_object_get(j, "params"), "name"));
    m->arguments = json_object_get(json_object_get(j, "params"), "arguments");
    return req;
}

/* Runs the check; an asynchronous verdict is awaited on the loop (bounded to 3 s). */
static int check(struct gw_request *req)
{
    req->pipeline_running = 1; /* resume records the verdict instead of running on */
    req->pipeline_early_verdict = -1;
    req->next_stage = GW_STAGE_LIMITS;
    int v = limits_layer.check(req, &req->decision[GW_STAGE_LIMITS]);
    if (v == GW_ASYNC) {
        uint64_t end = gw_mono_ms() + 3000;
        while (req->pipeline_early_verdict < 0 && gw_mono_ms() < end)
            uv_run(&loop, UV_RUN_ONCE);
        assert_true(req->pipeline_early_verdict >= 0);
        v = req->pipeline_early_verdict;
    }
    if (v == GW_DENY)
        req->deciding_stage = GW_STAGE_LIMITS;
    return v;
}

static void drained(uv_timer_t *t)
{
    (void)t;
}

/*
 * Gives queued fire-and-forget commands (settlements, session writes) time to reach Redis.
 * The Redis connection does not keep a loop alive on its own (a worker's listeners do), so a
 * timer holds this one open while they go out.
 */
static void drain(void)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, drained, 200, 0);
    uint64_t end = gw_mono_ms() + 1000;
    while (uv_is_active((uv_handle_t *)&t) && gw_mono_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static void test_redis_rate(void **state)
{
    (void)state;
    struct gw_config *cfg = load("limits:\n  store: \"redis://127.0.0.1:%d\"\n"
                                 "  rate: [{name: u, per: user, limit: 3, window: 10s}]\n",
                                 port);
    assert_int_equal(limits_start(cfg), 0);
    for (int i = 0; i < 3; i++) {
        struct gw_request *req = call(cfg, "alice", "t");
        assert_int_equal(check(req), GW_PASS);
        assert_string_equal(req->limits.store, "redis");
        assert_int_equal(req->limits.rate_remaining, 2 - i);
        gw_request_free(req);
    }
    struct gw_request *req = call(cfg, "alice", "t");
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_LIMITS].reason_code, "limits.rate");
    uint64_t retry = req->decision[GW_STAGE_LIMITS].retry_after_ms;
    assert_true(retry > 2000 && retry <= 3334);
    gw_request_free(req);
    req = call(cfg, "bob", "t");
    assert_int_equal(check(req), GW_PASS);
    gw_request_free(req);

    /* The script vanished from the server (restart, SCRIPT FLUSH): EVAL takes over. */
    redisContext *c = sync_conn();
    assert_non_null(c);
    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    req = call(cfg, "carol", "t");
    assert_int_equal(check(req), GW_PASS);
    gw_request_free(req);
    /* Keys are prefixed, hash-tagged, carry a TTL and no principal in clear. */
    redisReply *r = redisCommand(c, "KEYS *");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    for (size_t i = 0; i < r->elements; i++) {
        assert_non_null(strstr(r->element[i]->str, "toolgate:{limits}:r:u:"));
        assert_null(strstr(r->element[i]->str, "alice"));
        redisReply *ttl = redisCommand(c, "PTTL %s", r->element[i]->str);
        assert_true(ttl->integer > 0 && ttl->integer <= 10001);
        freeReplyObject(ttl);
    }
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    redisFree(c);
    limits_stop();
    gw_config_free(cfg);
}

static void test_redis_budget(void **state)
{
    (void)state;
    struct gw_config *cfg =
        load("limits:\n  store: \"redis://127.0.0.1:%d\"\n  costs: {default: 0.40}\n"
             "  budgets: [{name: d, per: user, cap: 1.00, period: day}]\n",
             port);
    assert_int_equal(limits_start(cfg), 0);
    struct gw_request *req = call(cfg, "dana", "t");
    assert_int_equal(check(req), GW_PASS);
    assert_int_equal(req->limits.budget_remaining, 600000);
    /* Reported 0.10 instead of 0.40. */
    json_t *msg = json_loads("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[],"
                             "\"_meta\":{\"toolgate/cost\":0.1}}}",
                             0, NULL);
    int mod = 0;
    struct gw_decision d = {0};
    limits_layer.on_response(req, msg, &mod, &d);
    json_decref(msg);
    req->upstream_sent = 1;
    req->upstream_status = 200;
    limits_layer.on_complete(req);
    assert_int_equal(req->limits.cost_settled, 100000);
    gw_request_free(req);
    drain();
    /* The layer restarts; the spend is in Redis: 0.10 + 0.40 + 0.40 fits, then no more. */
    limits_stop();
    assert_int_equal(limits_start(cfg), 0);
    for (int i = 0; i < 2; i++) {
        req = call(cfg, "dana", "t");
        assert_int_equal(check(req), GW_PASS);
        gw_request_free(req);
    }
    req = call(cfg, "dana", "t");
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_LIMITS].reason_code, "limits.budget");
    assert_int_equal(req->limits.budget_remaining, 100000);
    gw_request_free(req);
    limits_stop();
    gw_config_free(cfg);
}

/*
 * Spend refunded by hanging up, with the spend in Redis: a call sent and then hung up on is
 * charged its estimate, a 5xx after sending too unless the backend reports less, a call
 * whose connection never opened is not.
 */
static void test_redis_charge_once_sent(void **state)
{
    (void)state;
    struct gw_config *cfg =
        load("limits:\n  store: \"redis://127.0.0.1:%d\"\n  costs: {default: 0.40}\n"
             "  budgets: [{name: d, per: user, cap: 1.50, period: day}]\n",
             port);
    assert_int_equal(limits_start(cfg), 0);
    /* Hung up on after it was sent: 0.40. */
    struct gw_request *req = call(cfg, "hank", "t");
    assert_int_equal(check(req), GW_PASS);
    req->upstream_sent = 1;
    req->response_status = 499;
    limits_layer.on_complete(req);
    assert_int_equal(req->limits.cost_settled, 400000);
    assert_false(req->limits.refunded);
    gw_request_free(req);
    /* The connection never opened: refunded. */
    req = call(cfg, "hank", "t");
    assert_int_equal(check(req), GW_PASS);
    req->upstream_sent = 0;
    snprintf(req->upstream_error, sizeof req->upstream_error, "upstream.connect");
    limits_layer.on_complete(req);
    assert_int_equal(req->limits.cost_settled, 0);
    assert_true(req->limits.refunded);
    gw_request_free(req);
    /* A 502 after sending, the backend reporting 0.10 for the failed work: 0.10. */
    req = call(cfg, "hank", "t");
    assert_int_equal(check(req), GW_PASS);
    json_t *msg = json_loads("{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32603,\"message\":"
                             "\"x\",\"data\":{\"_meta\":{\"toolgate/cost\":0.1}}}}",
                             0, NULL);
    int mod = 0;
    struct gw_decision d = {0};
    limits_layer.on_response(req, msg, &mod, &d);
    json_decref(msg);
    req->upstream_sent = 1;
    req->upstream_status = 502;
    limits_layer.on_complete(req);
    assert_int_equal(req->limits.cost_settled, 100000);
    gw_request_free(req);
    /* A timeout after sending, no report: 0.40. */
    req = call(cfg, "hank", "t");
    assert_int_equal(check(req), GW_PASS);
    req->upstream_sent = 1;
    snprintf(req->upstream_error, sizeof req->upstream_error, "upstream.timeout");
    limits_layer.on_complete(req);
    assert_int_equal(req->limits.cost_settled, 400000);
    gw_request_free(req);
    drain();
    /* Redis holds 0.90 of 1.50 across a restart of the layer: one more 0.40 fits, no more. */
    limits_stop();
    assert_int_equal(limits_start(cfg), 0);
    req = call(cfg, "hank", "t");
    assert_int_equal(check(req), GW_PASS);
    assert_int_equal(req->limits.budget_remaining, 200000);
    gw_request_free(req);
    req = call(cfg, "hank", "t");
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_LIMITS].reason_code, "limits.budget");
    gw_request_free(req);
    redisContext *c = sync_conn();
    assert_non_null(c);
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    redisFree(c);
    limits_stop();
    gw_config_free(cfg);
}

/* Fifty checks in flight at once at the edge of a cap: exactly the ones that fit pass. */
static void test_redis_budget_concurrent(void **state)
{
    (void)state;
    struct gw_config *cfg =
        load("limits:\n  store: \"redis://127.0.0.1:%d\"\n  costs: {default: 0.10}\n"
             "  budgets: [{name: d, per: user, cap: 1.00, period: day}]\n",
             port);
    assert_int_equal(limits_start(cfg), 0);
    struct gw_request *reqs[50];
    for (int i = 0; i < 50; i++) {
        reqs[i] = call(cfg, "gus", "t");
        reqs[i]->pipeline_running = 1;
        reqs[i]->pipeline_early_verdict = -1;
        reqs[i]->next_stage = GW_STAGE_LIMITS;
        assert_int_equal(limits_layer.check(reqs[i], &reqs[i]->decision[GW_STAGE_LIMITS]),
                         GW_ASYNC);
    }
    uint64_t end = gw_mono_ms() + 3000;
    int pending = 50;
    while (pending && gw_mono_ms() < end) {
        uv_run(&loop, UV_RUN_ONCE);
        pending = 0;
        for (int i = 0; i < 50; i++)
            pending += reqs[i]->pipeline_early_verdict < 0;
    }
    assert_int_equal(pending, 0);
    int passed = 0;
    for (int i = 0; i < 50; i++) {
        passed += reqs[i]->pipeline_early_verdict == GW_PASS;
        gw_request_free(reqs[i]);
    }
    assert_int_equal(passed, 10);
    limits_stop();
    gw_config_free(cfg);
}

/*
 * A check issued late in a long loop iteration gets its whole redis_timeout: the loop's cached
 * time is made older than the timeout (as by slow callbacks, or a slow start before the loop
 * first runs), and the round trip must still be awaited rather than timed out at once.
 */
static void test_redis_stale_loop_time(void **state)
{
    (void)state;
    struct gw_config *cfg = load("limits:\n  store: \"redis://127.0.0.1:%d\"\n"
                                 "  redis_timeout: 150ms\n"
                                 "  rate: [{name: s, per: user, limit: 5, window: 10s}]\n",
                                 port);
    assert_int_equal(limits_start(cfg), 0);
    /* Connected, and the script is on the server: the next check is one round trip. */
    struct gw_request *req = call(cfg, "hana", "t");
    assert_int_equal(check(req), GW_PASS);
    gw_request_free(req);
    uv_run(&loop, UV_RUN_NOWAIT); /* the cached time is now */
    usleep(300000);               /* and then twice the timeout old */
    req = call(cfg, "hana", "t");
    assert_int_equal(check(req), GW_PASS);
    assert_string_equal(req->limits.store, "redis");
    assert_int_equal(req->limits.rate_remaining, 3);
    gw_request_free(req);
    limits_stop();
    gw_config_free(cfg);
}

/* Nothing listens: fail closed denies with 503, fail local decides in process. */
static void test_redis_down(void **state)
{
    (void)state;
    int dead = free_port();
    struct gw_config *cfg = load("limits:\n  store: \"redis://127.0.0.1:%d\"\n"
                                 "  rate: [{per: user, limit: 1, window: 1m}]\n",
                                 dead);
    assert_int_equal(limits_start(cfg), 0);
    struct gw_request *req = call(cfg, "eve", "t");
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_LIMITS].reason_code, "limits.unavailable");
    assert_int_equal(req->decision[GW_STAGE_LIMITS].http_status, 503);
    gw_request_free(req);
    limits_stop();
    gw_config_free(cfg);
    lredis_thread_close();

    cfg = load("limits:\n  store: \"redis://127.0.0.1:%d\"\n  fail: local\n"
               "  rate: [{per: user, limit: 1, window: 1m}]\n",
               dead);
    assert_int_equal(limits_start(cfg), 0);
    req = call(cfg, "eve", "t");
    assert_int_equal(check(req), GW_PASS);
    assert_true(req->limits.store_fallback);
    gw_request_free(req);
    req = call(cfg, "eve", "t");
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_LIMITS].reason_code, "limits.rate");
    assert_true(req->limits.store_fallback);
    gw_request_free(req);
    limits_stop();
    gw_config_free(cfg);
    lredis_thread_close();
}

/* A server that accepts and never answers: the round trip times out, fail closed. */
static void test_redis_silent(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    struct gw_config *cfg = load("limits:\n  store: \"redis://127.0.0.1:%d\"\n"
                                 "  redis_timeout: 100ms\n"
                                 "  rate: [{per: user, limit: 1, window: 1m}]\n",
                                 ntohs(a.sin_port));
    assert_int_equal(limits_start(cfg), 0);
    uint64_t t0 = gw_mono_ms();
    struct gw_request *req = call(cfg, "finn", "t");
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_LIMITS].reason_code, "limits.unavailable");
    uint64_t took = gw_mono_ms() - t0;
    /* Given up on within a bound (the 100 ms timer may have started at connect, in start). */
    if (took >= 1000)
        fail_msg("the silent server was given up on after %llu ms (want about 100)",
                 (unsigned long long)took);
    gw_request_free(req);
    limits_stop();
    gw_config_free(cfg);
    lredis_thread_close();
    close(fd);
}

/* ---- sessions in Redis ---- */

struct looked {
    int rc;
    int calls;
    char backend0[64];
};

static void on_looked(void *arg, int rc, struct mcp_session *sess)
{
    struct looked *l = arg;
    l->rc = rc;
    l->calls++;
    snprintf(l->backend0, sizeof l->backend0, "%s",
             rc == 0 && sess->backends[0] ? sess->backends[0] : "");
}

static int session_lookup(const char *id, const char *sub, const char *route, struct looked *l)
{
    uint8_t owner[32];
    mcp_session_owner("https://idp.test/", sub, owner);
    memset(l, 0, sizeof *l);
    mcp_session_lookup(id, owner, route, &loop, on_looked, l);
    uint64_t end = gw_mono_ms() + 3000;
    while (!l->calls && gw_mono_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(l->calls, 1);
    return l->rc;
}

/*
 * With limits.store on Redis, sessions live there: another instance (here: the memory table
 * emptied and the layer restarted) still knows them, only for their owner and route, and an
 * ended one is gone for everyone. Nothing in Redis names the id itself.
 */
static void test_redis_sessions(void **state)
{
    (void)state;
    struct gw_config *cfg =
        load("limits:\n  store: \"redis://127.0.0.1:%d\"\n  redis_timeout: 500ms\n", port);
    assert_int_equal(limits_start(cfg), 0);
    assert_string_equal(mcp_sessions_store_name(), "redis");
    char id[MCP_SESSION_ID_LEN + 1];
    assert_int_equal(
        mcp_session_create("https://idp.test/", "alice", "ehr", 1, "backend-7", id, &loop), 0);
    drain();
    struct looked l;
    assert_int_equal(session_lookup(id, "alice", "ehr", &l), 0);
    assert_string_equal(l.backend0, "backend-7");
    /* A restart: the process's own table is empty, Redis still has the session. */
    limits_stop();
    mcp_session_configure(1000, 3600000);
    assert_int_equal(limits_start(cfg), 0);
    assert_int_equal(session_lookup(id, "alice", "ehr", &l), 0);
    assert_int_equal(session_lookup(id, "bob", "ehr", &l), 1);
    assert_int_equal(session_lookup(id, "alice", "billing", &l), 1);
    redisContext *rc = sync_conn();
    redisReply *keys = redisCommand(rc, "KEYS *");
    assert_non_null(keys);
    int found_key = 0;
    for (size_t i = 0; i < keys->elements; i++) {
        assert_null(strstr(keys->element[i]->str, id));
        found_key |= strstr(keys->element[i]->str, "tg:s:") != NULL;
    }
    assert_true(found_key);
    freeReplyObject(keys);
    mcp_session_delete(id, &loop);
    drain();
    assert_int_equal(session_lookup(id, "alice", "ehr", &l), 1);
    /* A value that is not a session (someone wrote to the key) is an error, not a pass. */
    char id2[MCP_SESSION_ID_LEN + 1];
    assert_int_equal(mcp_session_create("https://idp.test/", "alice", "ehr", 1, NULL, id2, &loop),
                     0);
    drain();
    /* The write is on its way (fire and forget): wait for it, bounded. */
    redisReply *k2 = NULL;
    for (uint64_t end = gw_mono_ms() + 3000; gw_mono_ms() < end;) {
        freeReplyObject(k2);
        k2 = redisCommand(rc, "KEYS *tg:s:*");
        if (k2->elements == 1)
            break;

        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    assert_int_equal(k2->elements, 1);
    redisReply *set = redisCommand(rc, "SET %s garbage", k2->element[0]->str);
    freeReplyObject(set);
    freeReplyObject(k2);
    assert_int_equal(session_lookup(id2, "alice", "ehr", &l), -1);
    redisFree(rc);
    limits_stop();
    /* Redis unreachable: lookups fail closed. */
    struct gw_config *dead = load("limits:\n  store: \"redis://127.0.0.1:%d\"\n"
                                  "  redis_timeout: 200ms\n",
                                  free_port());
    assert_int_equal(limits_start(dead), 0);
    assert_int_equal(session_lookup(id2, "alice", "ehr", &l), -1);
    limits_stop();
    lredis_thread_close();
    gw_config_free(dead);
    /* Leave the server as the other tests expect it: empty. */
    rc = sync_conn();
    freeReplyObject(redisCommand(rc, "FLUSHALL"));
    redisFree(rc);
    assert_string_equal(mcp_sessions_store_name(), "memory");
    gw_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_redis_sessions, test_teardown),
        cmocka_unit_test_teardown(test_redis_rate, test_teardown),
        cmocka_unit_test_teardown(test_redis_budget, test_teardown),
        cmocka_unit_test_teardown(test_redis_charge_once_sent, test_teardown),
        cmocka_unit_test_teardown(test_redis_budget_concurrent, test_teardown),
        cmocka_unit_test_teardown(test_redis_stale_loop_time, test_teardown),
        cmocka_unit_test_teardown(test_redis_down, test_teardown),
        cmocka_unit_test_teardown(test_redis_silent, test_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
