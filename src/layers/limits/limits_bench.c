/*
 * limits_bench: what one check costs. In process: the store's GCRA step for one key, and the
 * whole layer check of a tool call under a rate limit and a budget (ledger off: the ledger's
 * commit is a disk write, measured by the audit benchmark's kind of numbers, not here). With
 * Redis: the layer check against a redis-server started here on a loopback port, one call at
 * a time (a round trip per check).
 */
#include "layers/layer.h"
#include "layers/limits/limits-int.h"
#include "lib/timeutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

static struct gw_request *bench_request(const struct gw_config *cfg, const char *sub)
{
    struct gw_request *req = gw_request_new(cfg);
    if (!req)
        return NULL;
    req->identity.verified = 1;
    req->identity.subject = strdup(sub);
    json_t *j = json_pack("{s:s, s:i, s:s, s:{s:s, s:{s:s}}}", "jsonrpc", "2.0", "id", 1, "method",
                          "tools/call", "params", "name", "search", "arguments", "q", "x");
    req->rpc.msgs = calloc(1, sizeof *req->rpc.msgs);
    if (!j || !req->rpc.msgs || !req->identity.subject) {
        json_decref(j);
        gw_request_free(req);
        return NULL;
    }
    req->rpc.n = 1;
    struct mcp_message *m = &req->rpc.msgs[0];
    m->json = j;
    m->kind = MCP_REQUEST;
    m->method = "tools/call";
    m->id = json_object_get(j, "id");
    json_t *params = json_object_get(j, "params");
    m->target = json_string_value(json_object_get(params, "name"));
    m->arguments = json_object_get(params, "arguments");
    return req;
}

/* Clears what one check left in the request so the next check starts fresh. */
static void bench_reset(struct gw_request *req)
{
    if (req->layer_state[GW_STAGE_LIMITS])
        req->layer_state_free[GW_STAGE_LIMITS](req->layer_state[GW_STAGE_LIMITS]);
    req->layer_state[GW_STAGE_LIMITS] = NULL;
    memset(&req->limits, 0, sizeof req->limits);
    memset(&req->decision[GW_STAGE_LIMITS], 0, sizeof req->decision[GW_STAGE_LIMITS]);
    req->n_response_headers = 0;
    gw_buf_reset(&req->response_header_storage);
    req->deciding_stage = GW_STAGE_NONE;
    req->pipeline_running = 1;
    req->pipeline_early_verdict = -1;
    req->next_stage = GW_STAGE_LIMITS;
}

static int bench_store(void)
{
    struct lstore *s = lstore_new(0);
    if (!s)
        return 1;
    enum { USERS = 1024, N = 2000000 };
    struct lrate_op *ops = calloc(USERS, sizeof *ops);
    if (!ops) {
        lstore_free(s);
        return 1;
    }
    for (int i = 0; i < USERS; i++) {
        char u[32];
        snprintf(u, sizeof u, "user%d", i);
        limits_key_make(&ops[i].key, "r", 0, u, NULL, 0);
        ops[i].interval_ns = 1000;
        ops[i].tolerance_ns = 1000000000ULL;
        ops[i].n = 1;
    }
    uint64_t t0 = gw_mono_ns();
    for (int i = 0; i < N; i++)
        lstore_rate(s, &ops[i % USERS], 1, (int64_t)gw_mono_ns());
    uint64_t dt = gw_mono_ns() - t0;
    printf("limits: in-process GCRA check (store, 1 key, clock read included): %.0f ns/check\n",
           (double)dt / N);
    free(ops);
    lstore_free(s);
    return 0;
}

static int bench_layer(void)
{
    static const char yaml[] = "limits:\n  ledger: none\n"
                               "  rate: [{per: user, limit: 1000000000, window: 1s}]\n"
                               "  costs: {default: 0.000001}\n"
                               "  budgets: [{per: user, cap: 1000000000, period: day}]\n";
    struct cfg_error err = {{0}};
    struct gw_config *cfg = gw_config_load_string(yaml, "bench", &err);
    if (!cfg || limits_start(cfg) != 0) {
        fprintf(stderr, "limits bench: %s\n", err.msg);
        gw_config_free(cfg);
        return 1;
    }
    struct gw_request *req = bench_request(cfg, "alice");
    int rc = 1;
    if (!req)
        goto out;
    enum { N = 500000 };
    uint64_t t0 = gw_mono_ns();
    for (int i = 0; i < N; i++) {
        bench_reset(req);
        if (limits_layer.check(req, &req->decision[GW_STAGE_LIMITS]) != GW_PASS)
            goto out;
    }
    uint64_t dt = gw_mono_ns() - t0;
    printf("limits: in-process layer check (1 rate limit + 1 budget, headers): %.0f ns/check\n",
           (double)dt / N);
    rc = 0;
out:
    gw_request_free(req);
    limits_stop();
    gw_config_free(cfg);
    return rc;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int bench_redis(void)
{
    char dir[] = "/tmp/toolgate-bench-redis-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    int port = free_port();
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *devnull = freopen("/dev/null", "w", stdout);
        (void)devnull;
        execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--dir",
               dir, "--save", "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    int rc = 1;
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "limits:\n  store: \"redis://127.0.0.1:%d\"\n  redis_timeout: 2s\n"
             "  rate: [{per: user, limit: 1000000000, window: 1s}]\n",
             port);
    struct cfg_error err = {{0}};
    struct gw_config *cfg = gw_config_load_string(yaml, "bench", &err);
    uv_loop_t loop;
    uv_loop_init(&loop);
    limits_set_thread_loop(&loop);
    struct gw_request *req = NULL;
    if (pid < 0 || !cfg || limits_start(cfg) != 0)
        goto out;
    req = bench_request(cfg, "alice");
    if (!req)
        goto out;
    /* Wait (bounded) until the server answers a check. */
    int up = 0;
    for (int i = 0; i < 50 && !up; i++) {
        bench_reset(req);
        if (limits_layer.check(req, &req->decision[GW_STAGE_LIMITS]) == GW_ASYNC)
            while (req->pipeline_early_verdict < 0)
                uv_run(&loop, UV_RUN_ONCE);
        up = req->pipeline_early_verdict == GW_PASS;
        if (!up)
            usleep(100000);
    }
    if (!up) {
        printf("limits: redis-backed check: skipped (redis-server did not start)\n");
        rc = 0;
        goto out;
    }
    enum { N = 20000 };
    uint64_t t0 = gw_mono_ns();
    for (int i = 0; i < N; i++) {
        bench_reset(req);
        if (limits_layer.check(req, &req->decision[GW_STAGE_LIMITS]) != GW_ASYNC)
            goto out;
        while (req->pipeline_early_verdict < 0)
            uv_run(&loop, UV_RUN_ONCE);
        if (req->pipeline_early_verdict != GW_PASS)
            goto out;
    }
    uint64_t dt = gw_mono_ns() - t0;
    printf("limits: redis-backed layer check (1 rate limit, one round trip, sequential): "
           "%.1f us/check\n",
           (double)dt / N / 1000.0);
    rc = 0;
out:
    gw_request_free(req);
    limits_stop();
    lredis_thread_close();
    for (int i = 0; i < 100 && uv_run(&loop, UV_RUN_NOWAIT); i++)
        ;
    uv_loop_close(&loop);
    limits_set_thread_loop(NULL);
    gw_config_free(cfg);
    if (pid > 0) {
        kill(pid, SIGTERM);
        int waited = 0;
        for (int i = 0; i < 100 && !waited; i++) {
            waited = waitpid(pid, NULL, WNOHANG) == pid;
            if (!waited)
                usleep(50000);
        }
        if (!waited) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "limits bench: could not remove %s\n", dir);
    return rc;
}

int limits_bench_main(int argc, char **argv)
{
    if (argc > 1) {
        int help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        fprintf(help ? stdout : stderr,
                "usage: toolgate bench limits\n"
                "  the in-process store and layer checks, and Redis when redis-server is "
                "installed\n");
        return help ? 0 : 2;
    }
    if (bench_store() || bench_layer())
        return 1;
    return bench_redis();
}
