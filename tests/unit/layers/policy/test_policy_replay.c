/*
 * The shared replay store of sealed approval states (policy.approvals.replay_store): its
 * configuration, claims against a real redis-server on a loopback port started and stopped
 * by the test (first use, replay, expiry, the key's prefix and lifetime), and the layer's
 * 2026-07-28 retry through it: a state redeemed through one configuration is refused through
 * another that shares the key file and Redis; Redis stopped or silent denies the call.
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
#include <unistd.h>
#include <uv.h>

#include "../../fixtures.h"
#include "../../redis_fixture.h"
#include "layers/policy/policy_approval.h"
#include "layers/policy/policy_replay.h"
#include "lib/timeutil.h"

static uv_loop_t loop;

static int group_setup(void **state)
{
    (void)state;
    port = free_port();
    return port > 0 ? redis_setup("replay", &loop) : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    policy_replay_thread_close();
    fx_rm_tmpdir();
    return redis_teardown(&loop);
}

static struct policy_config *parse(const char *yaml, struct cfg_error *err)
{
    struct cfg_doc doc;
    struct policy_config *pc = NULL;
    assert_int_equal(cfg_load_string(yaml, strlen(yaml), "t.yaml", &doc, err), 0);
    int rc = policy_config_parse(&doc, cfg_map_get(doc.root, "policy"), &pc, err);
    cfg_doc_free(&doc);
    if (rc != 0) {
        policy_config_free(pc);
        return NULL;
    }
    return pc;
}

static void expect_error(const char *yaml, const char *needle)
{
    struct cfg_error err = {{0}};
    assert_null(parse(yaml, &err));
    if (!strstr(err.msg, needle))
        fail_msg("\"%s\" lacks \"%s\"", err.msg, needle);
}

static void test_config(void **state)
{
    (void)state;
    struct cfg_error err = {{0}};
    struct policy_config *pc = parse("policy: {approvals: {}}\n", &err);
    assert_non_null(pc);
    assert_null(pc->approvals.replay_host); /* memory: today's behaviour */
    assert_true(pc->approvals.replay_timeout_ms == 250);
    assert_string_equal(pc->approvals.replay_prefix, "toolgate:");
    policy_config_free(pc);
    pc = parse("policy: {approvals: {replay_store: memory}}\n", &err);
    assert_non_null(pc);
    assert_null(pc->approvals.replay_host);
    policy_config_free(pc);
    pc = parse("policy: {approvals: {replay_store: \"redis://10.0.0.7:6390\", replay_timeout: 1s, "
               "replay_prefix: \"tg-a:\"}}\n",
               &err);
    assert_non_null(pc);
    assert_string_equal(pc->approvals.replay_host, "10.0.0.7");
    assert_int_equal(pc->approvals.replay_port, 6390);
    assert_true(pc->approvals.replay_timeout_ms == 1000);
    assert_string_equal(pc->approvals.replay_prefix, "tg-a:");
    policy_config_free(pc);
    pc = parse("policy: {approvals: {replay_store: \"redis://cache.internal\"}}\n", &err);
    assert_non_null(pc);
    assert_int_equal(pc->approvals.replay_port, 6379);
    policy_config_free(pc);

    expect_error("policy: {approvals: {replay_store: redis}}\n", "not a replay store");
    expect_error("policy: {approvals: {replay_store: \"redis://u:secret@h:1\"}}\n",
                 "without credentials");
    /* The value is not echoed when it may hold a credential. */
    struct cfg_error e2 = {{0}};
    assert_null(parse("policy: {approvals: {replay_store: \"rediss://u:secret@h\"}}\n", &e2));
    assert_null(strstr(e2.msg, "secret"));
    expect_error("policy: {approvals: {replay_store: \"redis://h:99999\"}}\n", "port");
    expect_error("policy: {approvals: {replay_store: \"redis://h:\"}}\n", "port");
    expect_error("policy: {approvals: {replay_store: \"redis://:6379\"}}\n", "host is missing");
    expect_error("policy: {approvals: {replay_store: \"redis://h/0\"}}\n", "path");
    expect_error("policy: {approvals: {replay_timeout: 0s}}\n", "replay_timeout");
    expect_error("policy: {approvals: {replay_timeout: 11s}}\n", "replay_timeout");
    expect_error("policy: {approvals: {replay_prefix: \"a{b\"}}\n", "braces");
    expect_error("policy: {approvals: {replay_prefix: "
                 "\"0123456789012345678901234567890123456789012345678901234567890123456789\"}}\n",
                 "64 bytes");
}

/* ---- claims ---- */

struct outcome {
    int got, value;
};

static void on_outcome(void *arg, int v)
{
    struct outcome *o = arg;
    o->got = 1;
    o->value = v;
}

/* One claim, awaited on the loop (bounded to 3 s); returns the outcome and the time taken. */
static int claim(const struct policy_approvals *a, const uint8_t once[16], uint64_t ttl_ms,
                 uint64_t *took_ms)
{
    struct outcome o = {0, -9};
    uint64_t t0 = gw_mono_ms(), end = t0 + 3000;
    policy_replay_claim(a, &loop, NULL, once, ttl_ms, on_outcome, &o);
    while (!o.got && gw_mono_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
    assert_true(o.got);
    if (took_ms)
        *took_ms = gw_mono_ms() - t0;
    return o.value;
}

static struct policy_approvals redis_approvals(void)
{
    struct policy_approvals a = {.replay_port = port, .replay_timeout_ms = 300};
    a.replay_host = "127.0.0.1";
    a.replay_prefix = "tg-test:";
    return a;
}

static void test_claims(void **state)
{
    (void)state;
    struct policy_approvals a = redis_approvals();
    uint8_t one[16], two[16];
    memset(one, 0x41, sizeof one);
    memset(two, 0x42, sizeof two);
    uint64_t claims0, replays0, errors0, claims, replays, errors;
    policy_replay_counts(&claims0, &replays0, &errors0);
    assert_int_equal(claim(&a, one, 5000, NULL), POLICY_REPLAY_FIRST);
    assert_int_equal(claim(&a, one, 5000, NULL), POLICY_REPLAY_USED);
    assert_int_equal(claim(&a, one, 5000, NULL), POLICY_REPLAY_USED);
    assert_int_equal(claim(&a, two, 5000, NULL), POLICY_REPLAY_FIRST);
    policy_replay_counts(&claims, &replays, &errors);
    assert_true(claims - claims0 == 2 && replays - replays0 == 2 && errors == errors0);

    /* The key: the prefix and a digest of the id (never the id), living until the expiry. */
    char key[POLICY_REPLAY_KEY_MAX];
    policy_replay_key(a.replay_prefix, one, key, sizeof key);
    assert_memory_equal(key, "tg-test:approval:once:", 22);
    assert_int_equal(strlen(key), 22 + 64);
    redisContext *c = sync_conn();
    assert_non_null(c);
    redisReply *r = redisCommand(c, "PTTL %s", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer > 3000 && r->integer <= 5000);
    freeReplyObject(r);
    r = redisCommand(c, "KEYS *");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    for (size_t i = 0; i < r->elements; i++)
        assert_null(strstr(r->element[i]->str, "AAAA")); /* 0x41 bytes would read as such */
    freeReplyObject(r);

    /* Past its expiry the key is gone (the state is refused as expired before that). */
    uint8_t brief[16];
    memset(brief, 0x43, sizeof brief);
    assert_int_equal(claim(&a, brief, 50, NULL), POLICY_REPLAY_FIRST);
    usleep(150000);
    r = redisCommand(c, "EXISTS %s",
                     (policy_replay_key(a.replay_prefix, brief, key, sizeof key), key));
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    /* Another prefix is another namespace. */
    a.replay_prefix = "tg-other:";
    assert_int_equal(claim(&a, one, 5000, NULL), POLICY_REPLAY_FIRST);
    redisFree(c);

    /* What a claim costs a retry on loopback: 200 in a row, each well within the timeout. */
    uint64_t worst = 0, t0 = gw_mono_ns();
    for (int i = 0; i < 200; i++) {
        uint8_t id[16] = {0x60, (uint8_t)i, (uint8_t)(i >> 8)};
        uint64_t s0 = gw_mono_ns();
        assert_int_equal(claim(&a, id, 5000, NULL), POLICY_REPLAY_FIRST);
        uint64_t d = gw_mono_ns() - s0;
        worst = d > worst ? d : worst;
    }
    printf("replay claims on loopback Redis: %.1f us each on average, %.1f us the slowest\n",
           (double)(gw_mono_ns() - t0) / 200 / 1000, (double)worst / 1000);
    assert_true(worst < 250ull * 1000000);
}

/* Redis silent (stopped with SIGSTOP): denied within the timeout; dead: denied at once. */
static void test_unavailable(void **state)
{
    (void)state;
    struct policy_approvals a = redis_approvals();
    uint8_t id[16];
    memset(id, 0x51, sizeof id);
    uint64_t took = 0, errors0, errors, x, y;
    policy_replay_counts(&x, &y, &errors0);
    kill(redis_pid, SIGSTOP);
    assert_int_equal(claim(&a, id, 5000, &took), POLICY_REPLAY_UNAVAILABLE);
    assert_true(took >= 250 && took < 1500);
    kill(redis_pid, SIGCONT);
    /* The timed-out connection was dropped: the next claim waits out the half second. */
    assert_int_equal(claim(&a, id, 5000, &took), POLICY_REPLAY_UNAVAILABLE);
    assert_true(took < 100);
    usleep(600000);
    /*
     * The claim that timed out was sent: Redis may apply it once it runs again, which only
     * makes that state unusable (fail closed). A fresh id is claimed as usual.
     */
    int late = claim(&a, id, 5000, NULL);
    assert_true(late == POLICY_REPLAY_USED || late == POLICY_REPLAY_FIRST);
    memset(id, 0x53, sizeof id);
    assert_int_equal(claim(&a, id, 5000, NULL), POLICY_REPLAY_FIRST);

    redis_stop();
    memset(id, 0x52, sizeof id);
    assert_int_equal(claim(&a, id, 5000, &took), POLICY_REPLAY_UNAVAILABLE);
    assert_true(took < 1000);
    usleep(600000);
    assert_int_equal(claim(&a, id, 5000, &took), POLICY_REPLAY_UNAVAILABLE);
    policy_replay_counts(&x, &y, &errors);
    assert_true(errors - errors0 >= 4);
    /* No server at all on a port: the same. */
    a.replay_port = free_port();
    assert_int_equal(claim(&a, id, 5000, NULL), POLICY_REPLAY_UNAVAILABLE);
    assert_int_equal(redis_start(), 0);
}

/* ---- the layer: two configurations as two instances ---- */

#define META                                                                                       \
    "\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","                       \
    "\"io.modelcontextprotocol/clientCapabilities\":{\"elicitation\":{}}}"
#define YES                                                                                        \
    ",\"inputResponses\":{\"toolgate.approval\":{\"action\":\"accept\",\"content\":{\"approve\":"  \
    "true}}}"

struct instance {
    struct gw_config cfg;
    struct gw_route route;
};

static void instance_init(struct instance *in, const char *store, const char *keyfile)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "policy:\n  approvals: {state_key: \"%s\", replay_store: %s, replay_timeout: 300ms}\n"
             "  rules:\n"
             "    - {id: ask, effect: permit, tools: [wipe], approval: {by: user, ttl: 1m}}\n",
             keyfile, store);
    struct cfg_error err = {{0}};
    memset(in, 0, sizeof *in);
    struct policy_config *pc = parse(yaml, &err);
    if (!pc)
        fail_msg("config: %s", err.msg);
    in->cfg.modules[GW_STAGE_POLICY] = pc;
    in->route.path = "/mcp";
    in->route.name = "mcp";
}

static void instance_free(struct instance *in)
{
    policy_config_free(in->cfg.modules[GW_STAGE_POLICY]);
}

static struct gw_request *new_req(struct instance *in, const char *sub, const char *params)
{
    struct gw_request *req = gw_request_new(&in->cfg);
    req->route = &in->route;
    req->identity.verified = 1;
    req->identity.issuer = strdup("https://idp.test/");
    req->identity.subject = strdup(sub);
    req->modern = 1;
    req->host.loop = &loop;
    char json[2048];
    snprintf(json, sizeof json,
             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{%s}}", params);
    fx_req_add_message(req, json);
    return req;
}

/* Runs the stage; an asynchronous verdict is awaited on the loop (bounded to 3 s). */
static int run_check(struct gw_request *req)
{
    req->pipeline_running = 1; /* resume records the verdict instead of running on */
    req->pipeline_early_verdict = -1;
    req->next_stage = GW_STAGE_POLICY;
    int v = policy_layer.check(req, &req->decision[GW_STAGE_POLICY]);
    if (v == GW_ASYNC) {
        uint64_t end = gw_mono_ms() + 3000;
        while (req->pipeline_early_verdict < 0 && gw_mono_ms() < end)
            uv_run(&loop, UV_RUN_ONCE);
        assert_true(req->pipeline_early_verdict >= 0);
        v = req->pipeline_early_verdict;
    }
    return v;
}

static char *ask(struct instance *in, const char *args)
{
    char params[512];
    snprintf(params, sizeof params, "\"name\":\"wipe\",\"arguments\":%s," META, args);
    struct gw_request *req = new_req(in, "ann", params);
    assert_int_equal(run_check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_POLICY].reason_code, "policy.approval_required");
    char *st = strdup(json_string_value(json_object_get(req->denial_result, "requestState")));
    gw_request_free(req);
    return st;
}

/* A retry with the state; returns the verdict and copies the reason code and reason. */
static int retry(struct instance *in, const char *args, const char *st, char *code, char *reason)
{
    char params[2048];
    snprintf(params, sizeof params,
             "\"name\":\"wipe\",\"arguments\":%s,\"requestState\":\"%s\"%s," META, args, st, YES);
    struct gw_request *req = new_req(in, "ann", params);
    int v = run_check(req);
    strcpy(code, req->decision[GW_STAGE_POLICY].reason_code);
    strcpy(reason, req->decision[GW_STAGE_POLICY].reason);
    gw_request_free(req);
    return v;
}

static void test_two_instances(void **state)
{
    (void)state;
    char *keyfile = fx_write_file("seal.key", "0123456789abcdef0123456789abcdef-shared-by-both\n");
    char store[64], code[64], reason[512];
    snprintf(store, sizeof store, "\"redis://127.0.0.1:%d\"", port);
    struct instance a, b, mem_a, mem_b;
    instance_init(&a, store, keyfile);
    instance_init(&b, store, keyfile);
    instance_init(&mem_a, "memory", keyfile);
    instance_init(&mem_b, "memory", keyfile);
    policy_approval_reset();
    usleep(600000); /* past a reconnect pause an earlier test may have left */

    /* Redeemed on A; the same state on B is a replay, and on A again too. */
    char *st = ask(&a, "{\"n\":1}");
    assert_int_equal(retry(&a, "{\"n\":1}", st, code, reason), GW_PASS);
    assert_int_equal(retry(&b, "{\"n\":1}", st, code, reason), GW_DENY);
    assert_string_equal(code, "policy.approval_invalid");
    assert_non_null(strstr(reason, "used already"));
    assert_int_equal(retry(&a, "{\"n\":1}", st, code, reason), GW_DENY);
    assert_non_null(strstr(reason, "used already"));
    free(st);
    /* Issued by B, redeemed on A first: B refuses it. The state is still held to its call. */
    st = ask(&b, "{\"n\":2}");
    assert_int_equal(retry(&a, "{\"n\":3}", st, code, reason), GW_DENY);
    assert_non_null(strstr(reason, "another call"));
    assert_int_equal(retry(&a, "{\"n\":2}", st, code, reason), GW_PASS);
    assert_int_equal(retry(&b, "{\"n\":2}", st, code, reason), GW_DENY);
    assert_non_null(strstr(reason, "used already"));
    free(st);

    /* Memory mode: today's behaviour, a replay is refused only where it was redeemed. */
    st = ask(&mem_a, "{\"n\":4}");
    assert_int_equal(retry(&mem_a, "{\"n\":4}", st, code, reason), GW_PASS);
    assert_int_equal(retry(&mem_a, "{\"n\":4}", st, code, reason), GW_DENY);
    assert_non_null(strstr(reason, "used already"));
    free(st);

    /* Redis stopped: the retry is denied, never allowed, and says why. */
    st = ask(&a, "{\"n\":5}");
    redis_stop();
    assert_int_equal(retry(&a, "{\"n\":5}", st, code, reason), GW_DENY);
    assert_string_equal(code, "policy.approval_unavailable");
    assert_non_null(strstr(reason, "did not answer"));
    assert_int_equal(redis_start(), 0);
    usleep(600000); /* past the reconnect pause */
    /* Once it is back, the unredeemed state goes through (it was never claimed). */
    assert_int_equal(retry(&b, "{\"n\":5}", st, code, reason), GW_PASS);
    free(st);

    /* A request without a loop to wait on (no worker) is denied, not passed. */
    st = ask(&a, "{\"n\":6}");
    char params[2048];
    snprintf(params, sizeof params,
             "\"name\":\"wipe\",\"arguments\":{\"n\":6},\"requestState\":\"%s\"%s," META, st, YES);
    struct gw_request *req = new_req(&a, "ann", params);
    req->host.loop = NULL;
    assert_int_equal(run_check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_POLICY].reason_code, "policy.approval_unavailable");
    gw_request_free(req);
    free(st);

    instance_free(&a);
    instance_free(&b);
    instance_free(&mem_a);
    instance_free(&mem_b);
    free(keyfile);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_claims),
        cmocka_unit_test(test_unavailable),
        cmocka_unit_test(test_two_instances),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
