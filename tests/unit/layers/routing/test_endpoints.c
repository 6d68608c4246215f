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
#include "core/generation.h"
#include "core/module.h"
#include "core/request.h"
#include "lib/timeutil.h"
#include "layers/layer.h"
#include "layers/routing/affinity.h"
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

/* ---- a reload's table ------------------------------------------------------------------- */

static const char *const yaml_reloaded =
    "routes:\n"
    "  - name: r\n"
    "    path: /mcp\n"
    "    inject: none\n"
    "    backends:\n"
    "      - name: b\n"
    "        endpoints: [\"http://127.0.0.1:9103/mcp\", \"http://127.0.0.1:9102/mcp\",\n"
    "                    \"http://127.0.0.1:9104/mcp\"]\n"
    "        eject: {failures: 3, base: 1s, max: 3s}\n"
    "  - name: added\n"
    "    path: /added\n"
    "    inject: none\n"
    "    backends:\n"
    "      - name: b\n"
    "        endpoints: [\"http://127.0.0.1:9102/mcp\", \"http://127.0.0.1:9105/mcp\"]\n"
    "egress: {allow: [\"127.0.0.0/8\"]}\n";

static void eject(const struct endpoint_table *t, const struct gw_backend *be, int idx)
{
    for (int i = 0; i < 3; i++)
        endpoints_report(t, be, idx, ENDPOINT_FAILED);
}

/*
 * A reload's generation gets its own table: endpoints kept (same route name and URL, in any
 * position) share their state with the running table both ways, a new URL and a new route
 * start afresh, and the running generation's table can go first without the new one noticing.
 */
static void test_reload_carries_state(void **state)
{
    (void)state;
    endpoints_set_clock(fake_clock);
    struct gw_config *a = load(yaml_three);
    assert_int_equal(routing_start(a), 0);
    const struct endpoint_table *ta = routing_endpoints_of(a);
    const struct gw_backend *ba = &a->routes[0].backends[0];
    eject(ta, ba, 2);                             /* :9103, ejected for 1s */
    endpoints_report(ta, ba, 1, ENDPOINT_FAILED); /* :9102, one failure */

    struct gw_config *b = load(yaml_reloaded);
    struct cfg_error err = {{0}};
    assert_int_equal(routing_prepare(a, b, &err), 0);
    const struct endpoint_table *tb = routing_endpoints_of(b);
    assert_non_null(tb);
    assert_ptr_not_equal(ta, tb);
    const struct gw_backend *bb = &b->routes[0].backends[0];
    const struct gw_backend *added = &b->routes[1].backends[0];
    struct endpoint_status st;
    /* :9103 is now first and still ejected; :9102 keeps its failure; :9104 is new. */
    assert_int_equal(endpoints_status(tb, bb, 0, &st), 0);
    assert_true(st.ejected);
    assert_int_equal(st.ejections, 1);
    assert_int_equal(endpoints_status(tb, bb, 1, &st), 0);
    assert_int_equal(st.failures, 1);
    assert_int_equal(endpoints_status(tb, bb, 2, &st), 0);
    assert_false(st.ejected);
    assert_int_equal(st.failures, 0);
    /* The same URL on another route is another endpoint. */
    assert_int_equal(endpoints_status(tb, added, 0, &st), 0);
    assert_int_equal(st.failures, 0);
    /* A request still on the running generation reports into the shared state. */
    endpoints_report(ta, ba, 1, ENDPOINT_FAILED);
    endpoints_report(ta, ba, 1, ENDPOINT_FAILED);
    assert_int_equal(endpoints_status(tb, bb, 1, &st), 0);
    assert_true(st.ejected);
    /* Nothing usable in b's first route but :9104; the new route's two are. */
    for (int i = 0; i < 6; i++)
        assert_int_equal(endpoints_pick(tb, bb), 2);
    assert_int_not_equal(endpoints_pick(tb, added), -1);
    /* The running generation goes first (its last request ended): b's table lives on. */
    routing_commit(b);
    routing_stop();
    gw_config_free(a);
    fake_now += 1001;
    assert_int_equal(endpoints_status(tb, bb, 0, &st), 0);
    assert_false(st.ejected);
    endpoints_report(tb, bb, 0, ENDPOINT_OK);
    assert_int_equal(endpoints_status(tb, bb, 0, &st), 0);
    assert_int_equal(st.ejections, 0);
    gw_config_free(b);
    fake_now += 10000;
    endpoints_set_clock(NULL);
}

/* A backend that gains health checks copies the ejection but starts up, unshared. */
static void test_reload_health_change_copies(void **state)
{
    (void)state;
    endpoints_set_clock(fake_clock);
    struct gw_config *a = load(yaml_three);
    assert_int_equal(routing_start(a), 0);
    const struct gw_backend *ba = &a->routes[0].backends[0];
    eject(routing_endpoints_of(a), ba, 0);
    char yaml[1024];
    snprintf(yaml, sizeof yaml, "%s",
             "routes:\n"
             "  - name: r\n"
             "    path: /mcp\n"
             "    inject: none\n"
             "    backends:\n"
             "      - name: b\n"
             "        endpoints: [\"http://127.0.0.1:9101/mcp\"]\n"
             "        eject: {failures: 3, base: 1s, max: 3s}\n"
             "        health: {path: /health, interval: 1h}\n"
             "egress: {allow: [\"127.0.0.0/8\"]}\n");
    struct gw_config *b = load(yaml);
    struct cfg_error err = {{0}};
    assert_int_equal(routing_prepare(a, b, &err), 0);
    const struct gw_backend *bb = &b->routes[0].backends[0];
    struct endpoint_status st;
    assert_int_equal(endpoints_status(routing_endpoints_of(b), bb, 0, &st), 0);
    assert_true(st.ejected);
    assert_int_equal(st.up, 1);
    /* Unshared: a success on b's copy leaves a's state alone. */
    fake_now += 1001;
    endpoints_report(routing_endpoints_of(b), bb, 0, ENDPOINT_OK);
    assert_int_equal(endpoints_status(routing_endpoints_of(a), ba, 0, &st), 0);
    assert_int_equal(st.ejections, 1);
    routing_stop();
    gw_config_free(b);
    gw_config_free(a);
    fake_now += 10000;
    endpoints_set_clock(NULL);
}

/* A session's endpoint is found through the reloaded backend while its URL is kept. */
static void test_reload_keeps_affinity(void **state)
{
    (void)state;
    affinity_clear();
    struct gw_config *a = load(yaml_three);
    struct gw_config *b = load(yaml_reloaded);
    const struct gw_backend *ba = &a->routes[0].backends[0];
    affinity_remember(ba, "sess-1", 1); /* :9102 */
    affinity_remember(ba, "sess-2", 2); /* :9103 */
    /* b's backend has another first URL: another backend, its sessions are not a's. */
    assert_int_equal(affinity_lookup(&b->routes[0].backends[0], "sess-1"), -1);
    struct gw_config *c = load(yaml_three);
    assert_int_equal(affinity_lookup(&c->routes[0].backends[0], "sess-1"), 1);
    assert_int_equal(affinity_lookup(&c->routes[0].backends[0], "sess-2"), 2);
    /* The same first URL but the list changed under the remembered index: not trusted. */
    gw_config_free(c);
    c = load("routes:\n"
             "  - name: r\n"
             "    path: /mcp\n"
             "    inject: none\n"
             "    backends:\n"
             "      - name: b\n"
             "        endpoints: [\"http://127.0.0.1:9101/mcp\", \"http://127.0.0.1:9103/mcp\",\n"
             "                    \"http://127.0.0.1:9102/mcp\"]\n"
             "egress: {allow: [\"127.0.0.0/8\"]}\n");
    assert_int_equal(affinity_lookup(&c->routes[0].backends[0], "sess-1"), -1);
    gw_config_free(c);
    gw_config_free(b);
    gw_config_free(a);
    affinity_clear();
}

/* Local backends: kept as they run, or the reload is refused naming the one that changed. */
static void test_reload_local_backends(void **state)
{
    (void)state;
    const char *run = "identity: {mode: off}\n"
                      "routes:\n"
                      "  - {name: fs, path: /fs, inject: none, backends: [{name: files, command: "
                      "[node, s.js]}]}\n";
    const char *moved = "identity: {mode: off}\n"
                        "routes:\n"
                        "  - {name: web, path: /web, inject: none, backends: [{name: w, url: "
                        "\"http://127.0.0.1:9101/mcp\"}]}\n"
                        "  - {name: fs, path: /fs, inject: none, backends: [{name: files, command: "
                        "[node, s.js]}]}\n"
                        "egress: {allow: [\"127.0.0.0/8\"]}\n";
    const char *changed = "identity: {mode: off}\n"
                          "routes:\n"
                          "  - {name: fs, path: /fs, inject: none, backends: [{name: files, "
                          "command: [node, t.js]}]}\n";
    const char *added =
        "identity: {mode: off}\n"
        "routes:\n"
        "  - {name: fs, path: /fs, inject: none, backends: [{name: files, command: [node, "
        "s.js]}]}\n"
        "  - {name: more, path: /more, inject: none, backends: [{name: m, command: [node, "
        "m.js]}]}\n";
    const char *removed = "identity: {mode: off}\n"
                          "routes:\n"
                          "  - {name: web, path: /web, inject: none, backends: [{name: w, url: "
                          "\"http://127.0.0.1:9101/mcp\"}]}\n"
                          "egress: {allow: [\"127.0.0.0/8\"]}\n";
    const struct gw_module *stdio = gw_module_find("stdio");
    assert_non_null(stdio);
    assert_non_null(stdio->prepare);
    struct gw_config *a = load(run);
    struct gw_backend *local = &a->routes[0].backends[0];
    snprintf(local->local_socket, 32, "/tmp/toolgate-stdio-x/s"); /* as start fills it */
    struct gw_config *b = load(moved);
    struct cfg_error err = {{0}};
    assert_int_equal(stdio->prepare(a, b, &err), 0);
    const struct gw_backend *kept = &b->routes[1].backends[0];
    assert_string_equal(kept->local_socket, "/tmp/toolgate-stdio-x/s");
    assert_string_equal(kept->url, local->url); /* the running process's id, not its new place */
    assert_string_equal(kept->endpoints[0], local->url);
    gw_config_free(b);
    const char *refused[][2] = {
        {changed, "routes[0] (fs): the local backend files has a changed definition"},
        {added, "routes[1] (more): the local backend m is new"},
        {removed, "routes[0] (fs): the local backend files was removed"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        b = load(refused[i][0]);
        memset(&err, 0, sizeof err);
        assert_int_equal(stdio->prepare(a, b, &err), -1);
        if (!strstr(err.msg, refused[i][1]) || !strstr(err.msg, "restart"))
            fail_msg("%zu: %s", i, err.msg);
        gw_config_free(b);
    }
    gw_config_free(a);
}

/*
 * The health thread follows the current generation: a reload that brings the first health
 * checks starts it, it checks the new table once the generation is swapped in, and an old
 * generation held by a request in flight keeps its table until that request lets go.
 */
static void test_reload_health_follows_generation(void **state)
{
    (void)state;
    srv_start();
    int dead = dead_port();
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "routes:\n"
             "  - name: r\n"
             "    path: /mcp\n"
             "    inject: none\n"
             "    backends:\n"
             "      - name: b\n"
             "        endpoints: [\"http://127.0.0.1:%d/mcp\", \"http://127.0.0.1:%d/mcp\"]\n"
             "egress: {allow: [\"127.0.0.0/8\"]}\n",
             srv.port, dead);
    struct gw_config *a = load(yaml);
    assert_int_equal(routing_start(a), 0);
    gw_generation_init(a); /* a: the loader's reference (this test's) and the current one */
    snprintf(yaml, sizeof yaml,
             "routes:\n"
             "  - name: r\n"
             "    path: /mcp\n"
             "    inject: none\n"
             "    backends:\n"
             "      - name: b\n"
             "        endpoints: [\"http://127.0.0.1:%d/mcp\", \"http://127.0.0.1:%d/mcp\"]\n"
             "        health: {path: /healthz, interval: 100ms, timeout: 300ms, unhealthy: 1, "
             "healthy: 1}\n"
             "egress: {allow: [\"127.0.0.0/8\"]}\n",
             srv.port, dead);
    struct gw_config *b = load(yaml);
    struct cfg_error err = {{0}};
    /* A request that started on a holds it across the swap. */
    struct gw_config *held = gw_generation_acquire();
    assert_ptr_equal(held, a);
    gw_generation_release(a); /* the loader's reference: the current pointer and `held` remain */
    assert_int_equal(routing_prepare(a, b, &err), 0);
    routing_commit(b);
    gw_generation_swap(b); /* the current pointer takes over the loader's reference to b */
    table = routing_endpoints_of(b);
    const struct gw_backend *bb = &b->routes[0].backends[0];
    assert_true(wait_for(bb, 1, 0, 3000));
    assert_true(wait_for(bb, 0, 1, 100));
    assert_true(atomic_load(&srv.hits) >= 1);
    /* a's table saw the same state (shared) until its last holder lets go, freeing it. */
    struct endpoint_status st;
    assert_int_equal(
        endpoints_status(routing_endpoints_of(held), &held->routes[0].backends[0], 1, &st), 0);
    assert_int_equal(st.up, 1); /* a has no health checks: its endpoints are not shared */
    long alive = gw_generation_alive();
    gw_generation_release(held);
    assert_int_equal(gw_generation_alive(), alive - 1);
    assert_true(wait_for(bb, 1, 0, 100));
    routing_stop();
    gw_generation_shutdown();
    srv_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_ejection_doubles_caps_and_recovers),
        cmocka_unit_test(test_on_complete_outcomes),
        cmocka_unit_test(test_health_checks),
        cmocka_unit_test(test_reload_carries_state),
        cmocka_unit_test(test_reload_health_change_copies),
        cmocka_unit_test(test_reload_keeps_affinity),
        cmocka_unit_test(test_reload_local_backends),
        cmocka_unit_test(test_reload_health_follows_generation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
