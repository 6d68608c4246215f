/*
 * Backends with several endpoints: round-robin selection, passive ejection and its doubling
 * and cap on a fake clock, the outcomes routing's on_complete counts, the 503 when nothing is
 * usable, and active health checks against a small HTTP server on loopback in this process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/config.h"
#include "core/request.h"
#include "lib/timeutil.h"
#include "layers/layer.h"
#include "layers/routing/endpoints.h"
#include "layers/routing/routing.h"

/* The started configuration's endpoint table. */
static const struct endpoint_table *table;

static uint64_t fake_now = 1000000;
static uint64_t fake_clock(void)
{
    return fake_now;
}

static struct gw_config *load(const char *yaml)
{
    struct cfg_error err = {{0}};
    struct gw_config *cfg = gw_config_load_string(yaml, "endpoints.yaml", &err);
    if (!cfg)
        fail_msg("%s", err.msg);
    return cfg;
}

static const char *const yaml_three =
    "routes:\n"
    "  - name: r\n"
    "    path: /mcp\n"
    "    inject: none\n"
    "    backends:\n"
    "      - name: b\n"
    "        endpoints: [\"http://127.0.0.1:9101/mcp\", \"http://127.0.0.1:9102/mcp\",\n"
    "                    \"http://127.0.0.1:9103/mcp\"]\n"
    "        eject: {failures: 3, base: 1s, max: 3s}\n"
    "egress: {allow: [\"127.0.0.0/8\"]}\n";

static int count_picks(const struct gw_backend *be, int rounds, int *hits, size_t n)
{
    memset(hits, 0, n * sizeof *hits);
    int none = 0;
    for (int i = 0; i < rounds; i++) {
        int k = endpoints_pick(table, be);
        if (k < 0)
            none++;
        else
            hits[k]++;
    }
    return none;
}

static void test_round_robin(void **state)
{
    (void)state;
    struct gw_config *cfg = load(yaml_three);
    assert_int_equal(routing_start(cfg), 0);
    table = routing_endpoints_of(cfg);
    const struct gw_backend *be = &cfg->routes[0].backends[0];
    int hits[3];
    assert_int_equal(count_picks(be, 300, hits, 3), 0);
    assert_int_equal(hits[0], 100);
    assert_int_equal(hits[1], 100);
    assert_int_equal(hits[2], 100);
    /* The layer sets the endpoint URL (the configuration's own string) for the proxy. */
    int seen[3] = {0};
    for (int i = 0; i < 3; i++) {
        struct gw_request *req = gw_request_new(cfg);
        req->route = &cfg->routes[0];
        req->backend = &req->route->backends[0]; /* as the route kind chooses */
        struct gw_decision d = {0};
        assert_int_equal(routing_layer.check(req, &d), GW_PASS);
        int idx = endpoints_index_of(be, req->upstream_url);
        assert_ptr_equal(req->upstream_url, be->endpoints[idx]);
        seen[idx]++;
        gw_request_free(req);
    }
    assert_int_equal(seen[0] + seen[1] + seen[2], 3);
    assert_true(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
    /* A backend the table does not know (never started) gets its first endpoint. */
    struct gw_backend stranger = *be;
    assert_int_equal(endpoints_pick(table, &stranger), 0);
    routing_stop();
    gw_config_free(cfg);
}

static void test_ejection_doubles_caps_and_recovers(void **state)
{
    (void)state;
    struct gw_config *cfg = load(yaml_three);
    endpoints_set_clock(fake_clock);
    assert_int_equal(routing_start(cfg), 0);
    table = routing_endpoints_of(cfg);
    const struct gw_backend *be = &cfg->routes[0].backends[0];
    struct endpoint_status st;
    int hits[3];

    /* Two failures and a success: the count starts over. */
    endpoints_report(table, be, 1, ENDPOINT_FAILED);
    endpoints_report(table, be, 1, ENDPOINT_FAILED);
    endpoints_report(table, be, 1, ENDPOINT_OK);
    endpoints_report(table, be, 1, ENDPOINT_FAILED);
    endpoints_report(table, be, 1, ENDPOINT_FAILED);
    endpoints_report(table, be, 1, ENDPOINT_NONE);
    assert_int_equal(endpoints_status(table, be, 1, &st), 0);
    assert_int_equal(st.failures, 2);
    assert_false(st.ejected);

    /* The third in a row ejects for base (1 s). */
    endpoints_report(table, be, 1, ENDPOINT_FAILED);
    assert_int_equal(endpoints_status(table, be, 1, &st), 0);
    assert_true(st.ejected);
    assert_int_equal(st.ejections, 1);
    assert_int_equal(st.ejected_until_ms, fake_now + 1000);
    assert_int_equal(count_picks(be, 100, hits, 3), 0);
    assert_int_equal(hits[1], 0);
    assert_int_equal(hits[0], 50);

    /* Back after base; failing again doubles (2 s), then the cap holds (3 s, not 4 s). */
    fake_now += 1000;
    assert_int_equal(count_picks(be, 30, hits, 3), 0);
    assert_int_equal(hits[1], 10);
    for (int i = 0; i < 3; i++)
        endpoints_report(table, be, 1, ENDPOINT_FAILED);
    assert_int_equal(endpoints_status(table, be, 1, &st), 0);
    assert_int_equal(st.ejected_until_ms, fake_now + 2000);
    fake_now += 2000;
    for (int i = 0; i < 3; i++)
        endpoints_report(table, be, 1, ENDPOINT_FAILED);
    assert_int_equal(endpoints_status(table, be, 1, &st), 0);
    assert_int_equal(st.ejections, 3);
    assert_int_equal(st.ejected_until_ms, fake_now + 3000);

    /* A success while still ejected (a request in flight) does not reset the doubling ... */
    endpoints_report(table, be, 1, ENDPOINT_OK);
    assert_int_equal(endpoints_status(table, be, 1, &st), 0);
    assert_int_equal(st.ejections, 3);
    /* ... one after the ejection ended does. */
    fake_now += 3000;
    endpoints_report(table, be, 1, ENDPOINT_OK);
    assert_int_equal(endpoints_status(table, be, 1, &st), 0);
    assert_int_equal(st.ejections, 0);
    assert_false(st.ejected);

    /* Every endpoint ejected: nothing to pick, and the layer answers 503. */
    for (int e = 0; e < 3; e++)
        for (int i = 0; i < 3; i++)
            endpoints_report(table, be, e, ENDPOINT_FAILED);
    assert_int_equal(endpoints_pick(table, be), -1);
    struct gw_request *req = gw_request_new(cfg);
    req->route = &cfg->routes[0];
    req->backend = &req->route->backends[0]; /* as the route kind chooses */
    struct gw_decision d = {0};
    assert_int_equal(routing_layer.check(req, &d), GW_DENY);
    assert_int_equal(d.http_status, 503);
    assert_int_equal(d.jsonrpc_code, -32603);
    assert_string_equal(d.reason_code, "routing.no_healthy_endpoint");
    gw_request_free(req);
    fake_now += 1000;
    assert_int_not_equal(endpoints_pick(table, be), -1);

    routing_stop();
    endpoints_set_clock(NULL);
    gw_config_free(cfg);
}

/* What on_complete counts: broken exchanges and 502/503/504 fail; answers succeed. */
static void complete(struct gw_config *cfg, int idx, int status, const char *error, int stage)
{
    const struct gw_backend *be = &cfg->routes[0].backends[0];
    struct gw_request *req = gw_request_new(cfg);
    req->route = &cfg->routes[0];
    req->backend = be;
    req->upstream_url = be->endpoints[idx];
    req->upstream_status = status;
    snprintf(req->upstream_error, sizeof req->upstream_error, "%s", error);
    req->deciding_stage = stage;
    routing_layer.on_complete(req);
    gw_request_free(req);
}

static void test_on_complete_outcomes(void **state)
{
    (void)state;
    struct gw_config *cfg = load(yaml_three);
    endpoints_set_clock(fake_clock);
    assert_int_equal(routing_start(cfg), 0);
    table = routing_endpoints_of(cfg);
    const struct gw_backend *be = &cfg->routes[0].backends[0];
    struct endpoint_status st;
    static const struct {
        int status;
        const char *error;
        int stage;
        unsigned failures_after; /* starting from 1 failure */
    } cases[] = {
        {0, "upstream.connect", GW_STAGE_NONE, 2},
        {504, "upstream.timeout", GW_STAGE_NONE, 2},
        {0, "upstream.timeout", GW_STAGE_NONE, 2},
        {200, "upstream.protocol", GW_STAGE_NONE, 2},
        {200, "upstream.lost", GW_STAGE_NONE, 2},
        {502, "", GW_STAGE_NONE, 2},
        {503, "", GW_STAGE_NONE, 2},
        {200, "", GW_STAGE_NONE, 0},
        {404, "", GW_STAGE_NONE, 0},
        {500, "", GW_STAGE_NONE, 0},
        {200, "upstream.too_large", GW_STAGE_NONE, 0},
        {200, "upstream.idle", GW_STAGE_NONE, 0},
        {0, "", GW_STAGE_NONE, 1},                   /* never answered: counts for nothing */
        {0, "upstream.connect", GW_STAGE_POLICY, 1}, /* denied before: not the endpoint's */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        complete(cfg, 2, 200, "", GW_STAGE_NONE); /* reset */
        complete(cfg, 2, 0, "upstream.connect", GW_STAGE_NONE);
        complete(cfg, 2, cases[i].status, cases[i].error, cases[i].stage);
        assert_int_equal(endpoints_status(table, be, 2, &st), 0);
        if (st.failures != cases[i].failures_after)
            fail_msg("case %zu (%d, %s): %u failures, expected %u", i, cases[i].status,
                     cases[i].error, st.failures, cases[i].failures_after);
    }
    /* Through on_complete, three failures in a row eject. */
    complete(cfg, 2, 200, "", GW_STAGE_NONE);
    for (int i = 0; i < 3; i++)
        complete(cfg, 2, 0, "upstream.connect", GW_STAGE_NONE);
    assert_int_equal(endpoints_status(table, be, 2, &st), 0);
    assert_true(st.ejected);
    routing_stop();
    endpoints_set_clock(NULL);
    gw_config_free(cfg);
}

/* ---- a tiny HTTP server for the health checks ------------------------------------------- */

static struct {
    int fd;
    int port;
    atomic_int status; /* what /healthz answers */
    atomic_int stop;
    atomic_int hits;
    pthread_t thread;
} srv;

static void *srv_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&srv.stop)) {
        struct pollfd p = {.fd = srv.fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int c = accept(srv.fd, NULL, NULL);
        if (c < 0)
            continue;
        char buf[2048];
        struct pollfd pc = {.fd = c, .events = POLLIN};
        if (poll(&pc, 1, 1000) > 0 && read(c, buf, sizeof buf) > 0) {
            atomic_fetch_add(&srv.hits, 1);
            char resp[128];
            int st = atomic_load(&srv.status);
            int n =
                snprintf(resp, sizeof resp,
                         "HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", st);
            if (write(c, resp, (size_t)n) < 0) {
                /* the checker gave up; nothing to do */
            }
        }
        close(c);
    }
    return NULL;
}

static void srv_start(void)
{
    srv.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(srv.fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(srv.fd, (struct sockaddr *)&a, &len);
    srv.port = ntohs(a.sin_port);
    assert_int_equal(listen(srv.fd, 16), 0);
    atomic_store(&srv.status, 200);
    atomic_store(&srv.stop, 0);
    assert_int_equal(pthread_create(&srv.thread, NULL, srv_main, NULL), 0);
}

static void srv_stop(void)
{
    atomic_store(&srv.stop, 1);
    pthread_join(srv.thread, NULL);
    close(srv.fd);
}

/* A port nothing listens on: bound, never listened, closed. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static int wait_for(const struct gw_backend *be, int idx, int up, int ms)
{
    struct endpoint_status st;
    for (int waited = 0; waited < ms; waited += 20) {
        if (endpoints_status(table, be, idx, &st) == 0 && st.up == up)
            return 1;
        usleep(20 * 1000);
    }
    return 0;
}

static void test_health_checks(void **state)
{
    (void)state;
    srv_start();
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "routes:\n"
             "  - name: r\n"
             "    path: /mcp\n"
             "    inject: none\n"
             "    backends:\n"
             "      - name: b\n"
             "        endpoints: [\"http://127.0.0.1:%d/mcp\", \"http://127.0.0.1:%d/mcp\"]\n"
             "        health: {path: /healthz, interval: 100ms, timeout: 300ms, unhealthy: 2, "
             "healthy: 1}\n"
             "  - name: q\n"
             "    path: /q\n"
             "    inject: none\n"
             "    backends:\n"
             "      - name: private\n"
             "        endpoints: [\"http://10.255.255.1:%d/mcp\"]\n"
             "        health: {interval: 100ms, timeout: 300ms, unhealthy: 1}\n"
             "egress: {allow: [\"127.0.0.0/8\"]}\n",
             srv.port, dead_port(), srv.port);
    struct gw_config *cfg = load(yaml);
    assert_int_equal(routing_start(cfg), 0);
    table = routing_endpoints_of(cfg);
    const struct gw_backend *be = &cfg->routes[0].backends[0];
    const struct gw_backend *priv = &cfg->routes[1].backends[0];

    /* The dead endpoint goes down after two failed checks; the live one stays up. */
    assert_true(wait_for(be, 1, 0, 3000));
    assert_true(wait_for(be, 0, 1, 100));
    int hits[2];
    assert_int_equal(count_picks(be, 10, hits, 2), 0);
    assert_int_equal(hits[0], 10);
    assert_true(atomic_load(&srv.hits) >= 1);
    /* An endpoint egress does not allow is never contacted and counts as down. */
    assert_true(wait_for(priv, 0, 0, 3000));

    /* The live one starts failing its checks: down; nothing usable. */
    atomic_store(&srv.status, 503);
    assert_true(wait_for(be, 0, 0, 3000));
    assert_int_equal(endpoints_pick(table, be), -1);
    /* It recovers after one good check, and an ejection from before ends with it. */
    endpoints_report(table, be, 0, ENDPOINT_FAILED);
    endpoints_report(table, be, 0, ENDPOINT_FAILED);
    endpoints_report(table, be, 0, ENDPOINT_FAILED);
    atomic_store(&srv.status, 200);
    assert_true(wait_for(be, 0, 1, 3000));
    struct endpoint_status st;
    assert_int_equal(endpoints_status(table, be, 0, &st), 0);
    assert_false(st.ejected);
    assert_int_equal(endpoints_pick(table, be), 0);

    /* Stopping joins the thread promptly. */
    uint64_t t0 = gw_mono_ms();
    routing_stop();
    assert_true(gw_mono_ms() - t0 < 2000);
    gw_config_free(cfg);
    srv_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_ejection_doubles_caps_and_recovers),
        cmocka_unit_test(test_on_complete_outcomes),
        cmocka_unit_test(test_health_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
