/*
 * DNS rebinding against the real resolver path (getaddrinfo, synchronous and on a libuv
 * loop), with a test DNS server that answers a public address and loopback in turn.
 *
 * The machine's resolver configuration is never touched: the test creates a network
 * namespace and a resolv.conf for it under /etc/netns/<ns>/ (which `ip netns exec` mounts
 * over /etc/resolv.conf for the process it starts), re-runs itself inside the namespace, and
 * removes both afterwards. Without root or the `ip` tool the test is skipped.
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
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "core/config.h"
#include "core/request.h"
#include "lib/timeutil.h"
#include "layers/layer.h"
#include "layers/routing/routing.h"

/* ---- the parent: namespace setup and cleanup ---------------------------------------------- */

static char self_path[4096];

static int run_quiet(const char *cmd)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s >/dev/null 2>&1", cmd);
    int rc = system(buf);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_rebinding_in_netns(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        print_message("skipped: the rebinding test needs root to create a network namespace\n");
        skip();
    }
    if (run_quiet("ip netns list") != 0) {
        print_message("skipped: `ip netns` is not available\n");
        skip();
    }
    char ns[32], dir[64], conf[96], cmd[160];
    snprintf(ns, sizeof ns, "tgrebind%d", (int)getpid());
    snprintf(dir, sizeof dir, "/etc/netns/%s", ns);
    snprintf(conf, sizeof conf, "%s/resolv.conf", dir);
    int made_parent = mkdir("/etc/netns", 0755) == 0;
    assert_int_equal(mkdir(dir, 0755), 0);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fputs("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "ip netns add %s", ns);
    int added = run_quiet(cmd) == 0;
    int status = -1;
    if (added) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            execlp("ip", "ip", "netns", "exec", ns, self_path, "--in-netns", (char *)NULL);
            _exit(127);
        }
        /* Bounded: the child's tests take a few seconds; kill it after 60. */
        for (int i = 0; i < 600; i++) {
            pid_t w = waitpid(pid, &status, WNOHANG);
            if (w == pid)
                break;
            if (i == 599) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                status = -1;
            }
            usleep(100000);
        }
        snprintf(cmd, sizeof cmd, "ip netns del %s", ns);
        run_quiet(cmd);
    }
    unlink(conf);
    rmdir(dir);
    if (made_parent)
        rmdir("/etc/netns");
    assert_true(added);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- the child: a DNS server on loopback -------------------------------------------------- */

static atomic_int a_queries; /* A queries for rebind.test answered so far */
static atomic_int stop_server;
static int dns_fd = -1;

/* Reads the question name into out as dotted text; returns the offset after it, or -1. */
static int read_qname(const uint8_t *m, size_t len, size_t off, char *out, size_t cap)
{
    size_t n = 0;
    while (off < len && m[off]) {
        size_t l = m[off++];
        if (l > 63 || off + l > len || n + l + 2 > cap)
            return -1;
        if (n)
            out[n++] = '.';
        for (size_t i = 0; i < l; i++) {
            char c = (char)m[off + i];
            out[n++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        off += l;
    }
    out[n] = '\0';
    return off < len ? (int)off + 1 : -1;
}

static void *dns_server(void *arg)
{
    (void)arg;
    uint8_t q[512], r[600];
    while (!atomic_load(&stop_server)) {
        struct pollfd p = {.fd = dns_fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(dns_fd, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
        if (n < 12)
            continue;
        char name[256];
        int end = read_qname(q, (size_t)n, 12, name, sizeof name);
        if (end < 0 || (size_t)end + 4 > (size_t)n)
            continue;
        int qtype = q[end] << 8 | q[end + 1];
        if (strcmp(name, "slow.test") == 0)
            continue; /* never answered: the lookup must time out */
        size_t qlen = (size_t)end + 4;
        memcpy(r, q, qlen);
        r[2] = 0x81; /* QR, RD */
        r[3] = 0x80; /* RA, NOERROR */
        r[6] = r[7] = r[8] = r[9] = r[10] = r[11] = 0;
        size_t rl = qlen;
        if (strcmp(name, "rebind.test") != 0) {
            r[3] = 0x83; /* NXDOMAIN */
        } else if (qtype == 1) {
            int k = atomic_fetch_add(&a_queries, 1);
            static const uint8_t pub[4] = {93, 184, 216, 34}, lo[4] = {127, 0, 0, 1};
            const uint8_t *a = k % 2 == 0 ? pub : lo;
            static const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4};
            memcpy(r + rl, rr, sizeof rr);
            rl += sizeof rr;
            memcpy(r + rl, a, 4);
            rl += 4;
            r[7] = 1;
        }
        sendto(dns_fd, r, rl, 0, (struct sockaddr *)&from, fl);
    }
    return NULL;
}

static pthread_t server_thread;
static struct gw_config *cfg;

static const char *const child_yaml =
    "routes:\n"
    "  - {name: lit, path: /lit, backends: [{name: lit, url: \"http://8.8.8.8/\"}], inject: none}\n"
    "  - {name: dns, path: /dns, backends: [{name: dns, url: \"http://rebind.test:8080/\"}], "
    "inject: none}\n"
    "egress:\n"
    "  url_tools: [{tools: [fetch_url], args: [/url]}]\n"
    "  resolve_timeout: 300ms\n";

static int child_setup(void **state)
{
    (void)state;
    if (run_quiet("ip link set lo up") != 0)
        return -1;
    dns_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(53)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (dns_fd < 0 || bind(dns_fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return -1;
    if (pthread_create(&server_thread, NULL, dns_server, NULL) != 0)
        return -1;
    struct cfg_error err = {{0}};
    cfg = gw_config_load_string(child_yaml, "rebind.yaml", &err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return routing_start(cfg);
}

static int child_teardown(void **state)
{
    (void)state;
    routing_stop();
    gw_config_free(cfg);
    atomic_store(&stop_server, 1);
    pthread_join(server_thread, NULL);
    close(dns_fd);
    return 0;
}

static struct gw_request *fetch_req(const char *url)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
             "\"fetch_url\",\"arguments\":{\"url\":\"%s\"}}}",
             url);
    struct gw_request *req = gw_request_new(cfg);
    req->route = gw_config_route_for(cfg, "/lit", 4);
    req->backend = &req->route->backends[0]; /* as the route kind chooses */
    struct mcp_limits lim = {0};
    struct mcp_decode_error derr = {0};
    assert_int_equal(mcp_decode(body, strlen(body), &lim, NULL, &req->rpc, &derr), 0);
    req->next_stage = GW_STAGE_ROUTING;
    return req;
}

static int check(struct gw_request *req)
{
    return routing_layer.check(req, &req->decision[GW_STAGE_ROUTING]);
}

static void on_done(struct gw_request *req, int verdict)
{
    (void)req;
    (void)verdict;
}

/* Runs check() on a loop and returns the routing stage's own verdict. */
static int check_async(struct gw_request *req, uv_loop_t *loop)
{
    req->pipeline_done = on_done;
    int v = check(req);
    if (v != GW_ASYNC)
        return v;
    uv_run(loop, UV_RUN_DEFAULT);
    return req->decision[GW_STAGE_ROUTING].verdict;
}

/* Each vetting resolves now: a name that turns to loopback is refused on its next use. */
static void test_argument_rebinding_sync(void **state)
{
    (void)state;
    atomic_store(&a_queries, 0);
    struct gw_request *req = fetch_req("http://rebind.test/");
    assert_int_equal(check(req), GW_PASS);
    gw_request_free(req);
    req = fetch_req("http://rebind.test/");
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_ROUTING].reason_code, "routing.ssrf");
    assert_non_null(strstr(req->decision[GW_STAGE_ROUTING].reason, "loopback"));
    gw_request_free(req);
    assert_int_equal(atomic_load(&a_queries), 2);
}

static void test_argument_rebinding_async(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    routing_set_test_loop(&loop);
    atomic_store(&a_queries, 0);
    struct gw_request *req = fetch_req("http://rebind.test/");
    assert_int_equal(check_async(req, &loop), GW_PASS);
    gw_request_free(req);
    req = fetch_req("http://rebind.test/");
    assert_int_equal(check_async(req, &loop), GW_DENY);
    assert_non_null(strstr(req->decision[GW_STAGE_ROUTING].reason, "loopback"));
    gw_request_free(req);
    /* A name that never answers is refused after egress.resolve_timeout. */
    req = fetch_req("http://slow.test/");
    uint64_t t0 = gw_mono_ms();
    assert_int_equal(check_async(req, &loop), GW_DENY);
    assert_true(gw_mono_ms() - t0 >= 250);
    assert_non_null(strstr(req->decision[GW_STAGE_ROUTING].reason, "in time"));
    gw_request_free(req);
    routing_set_test_loop(NULL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/*
 * The backend's connection is pinned to the vetted address: within the cache TTL the name is
 * not asked again, so a rebinding answer never reaches a connection; once asked again, the
 * loopback answer is refused.
 */
static void test_backend_pin(void **state)
{
    (void)state;
    routing_flush_caches();
    atomic_store(&a_queries, 0);
    const struct gw_route *r = gw_config_route_for(cfg, "/dns", 4);
    struct gw_request *req = gw_request_new(cfg);
    req->route = r;
    req->backend = &req->route->backends[0]; /* as the route kind chooses */
    assert_int_equal(check(req), GW_PASS);
    assert_string_equal(req->upstream_pin, "rebind.test:8080:93.184.216.34");
    gw_request_free(req);
    req = gw_request_new(cfg);
    req->route = r;
    req->backend = &req->route->backends[0]; /* as the route kind chooses */
    assert_int_equal(check(req), GW_PASS);
    assert_string_equal(req->upstream_pin, "rebind.test:8080:93.184.216.34");
    gw_request_free(req);
    assert_int_equal(atomic_load(&a_queries), 1);
    routing_flush_caches();
    req = gw_request_new(cfg);
    req->route = r;
    req->backend = &req->route->backends[0]; /* as the route kind chooses */
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_ROUTING].reason_code, "routing.egress_denied");
    assert_string_equal(req->upstream_pin, "");
    gw_request_free(req);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--in-netns") == 0) {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_argument_rebinding_sync),
            cmocka_unit_test(test_argument_rebinding_async),
            cmocka_unit_test(test_backend_pin),
        };
        return cmocka_run_group_tests_name("rebinding (in the namespace)", tests, child_setup,
                                           child_teardown);
    }
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0)
        return 1;
    self_path[n] = '\0';
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rebinding_in_netns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
