/*
 * limits_bench: what one check costs. In process: the store's GCRA step for one key, and the
 * whole layer check of a tool call under a rate limit and a budget (ledger off: the ledger's
 * commit is a disk write, measured by the audit benchmark's kind of numbers, not here). With
 * Redis: the layer check against a redis-server started here on a loopback port, one call at
 * a time (a round trip per check).
 */
#include "layers/layer.h"
#include "layers/limits/limits-int.h"
#include "layers/limits/limits_request.h"
#include "lib/timeutil.h"
#include "mcp/session.h"

#include <arpa/inet.h>
#include <malloc.h>
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

/* This process's resident memory now, in KiB (VmRSS), or 0 when /proc cannot say. */
static long bench_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/*
 * State for many distinct users: `users` principals each make one tool call through the whole
 * layer check (a rate limit, a daily budget and, with loops, agent-loop detection), then each
 * gets an MCP session in the memory session table sized for all of them. Prints what the
 * process holds for it (RSS growth, which counts allocator overhead and the tables' unused
 * slots) beside what the stores say they hold.
 */
static int bench_memory(unsigned long users, int loops)
{
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "limits:\n  ledger: none\n  max_keys: %lu\n"
             "  rate: [{per: user, limit: 1000, window: 1m}]\n"
             "  costs: {default: 0.01}\n"
             "  budgets: [{per: user, cap: 100, period: day}]\n%s",
             users < 1000 ? 1000 : users, loops ? "  loops: {}\n" : "");
    struct cfg_error err = {{0}};
    struct gw_config *cfg = gw_config_load_string(yaml, "bench", &err);
    struct gw_request *req = NULL;
    int rc = 1, started = 0;
    if (!cfg || limits_start(cfg) != 0) {
        fprintf(stderr, "limits bench: %s\n", err.msg);
        goto out;
    }
    started = 1;
    req = bench_request(cfg, "u");
    if (!req)
        goto out;
    malloc_trim(0);
    long rss0 = bench_rss_kib();
    uint64_t t0 = gw_mono_ns();
    for (unsigned long i = 0; i < users; i++) {
        char sub[32];
        snprintf(sub, sizeof sub, "user%08lu", i);
        free(req->identity.subject);
        req->identity.subject = strdup(sub);
        bench_reset(req);
        if (!req->identity.subject ||
            limits_layer.check(req, &req->decision[GW_STAGE_LIMITS]) != GW_PASS) {
            fprintf(stderr, "limits bench: user %lu was not admitted\n", i);
            goto out;
        }
    }
    uint64_t t1 = gw_mono_ns();
    long rss1 = bench_rss_kib();
    size_t keys = lstore_count(limits_rt->rates) + lstore_count(limits_rt->budgets);
    size_t tables = lstore_memory(limits_rt->rates) + lstore_memory(limits_rt->budgets);
    size_t loop_nodes = limits_rt->loops ? lloop_count(limits_rt->loops) : 0;

    if (mcp_session_configure(users, 3600 * 1000) != 0)
        goto out;
    for (unsigned long i = 0; i < users; i++) {
        char sub[32], id[MCP_SESSION_ID_LEN + 1];
        snprintf(sub, sizeof sub, "user%08lu", i);
        if (mcp_session_create("https://idp.bench.invalid/", sub, "default", 1,
                               "0123456789abcdef0123456789abcdef", id, NULL) != 0) {
            fprintf(stderr, "limits bench: session %lu could not be created\n", i);
            goto out;
        }
    }
    uint64_t t2 = gw_mono_ns();
    long rss3 = bench_rss_kib();
    size_t sessions = mcp_session_count();
    printf("limits: %lu distinct users, one call each (rate + budget%s): %.1f MiB RSS growth, "
           "%zu keys in tables of %.1f MiB; %.0f ns/user\n",
           users, loops ? " + loops" : "", (double)(rss1 - rss0) / 1024, keys,
           (double)tables / 1048576, (double)(t1 - t0) / (double)users);
    if (loops)
        printf("limits: loop detection tracks %zu users\n", loop_nodes);
    printf("sessions: %zu sessions (memory table bounded at %lu): %.1f MiB RSS growth "
           "(the table grown to %.1f MiB, the sessions' packed values the rest)\n",
           sessions, users, (double)(rss3 - rss1) / 1024,
           (double)mcp_session_table_bytes() / 1048576);
    printf("total: %.1f MiB of limiter and session state for %lu users\n",
           (double)(rss3 - rss0) / 1024, users);
    printf("sessions: %zu of %lu held (%.2f%% evicted early by a full set); %.0f ns/session\n",
           sessions, users, 100.0 * (double)(users - sessions) / (double)users,
           (double)(t2 - t1) / (double)users);
    /* The table holds what it is sized for, up to the 1% its two-choice sets lose. */
    rc = sessions + users / 100 >= users ? 0 : 1;
out:
    gw_request_free(req);
    mcp_session_shutdown();
    if (started)
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
    if (argc > 1 && strcmp(argv[1], "memory") == 0) {
        unsigned long users = 1000000;
        int loops = 0;
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--users") == 0 && i + 1 < argc) {
                char *end;
                users = strtoul(argv[++i], &end, 10);
                if (*end || users == 0 || users > 100000000) {
                    fprintf(stderr, "limits bench: --users is 1 to 100000000\n");
                    return 2;
                }
            } else if (strcmp(argv[i], "--loops") == 0) {
                loops = 1;
            } else {
                fprintf(stderr, "usage: toolgate bench limits memory [--users N] [--loops]\n");
                return 2;
            }
        }
        return bench_memory(users, loops);
    }
    if (argc > 1) {
        int help = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0;
        fprintf(help ? stdout : stderr,
                "usage: toolgate bench limits\n"
                "  the in-process store and layer checks, and Redis when redis-server is "
                "installed\n"
                "       toolgate bench limits memory [--users N] [--loops]\n"
                "  the limiter's and the session table's memory for N distinct users "
                "(1000000)\n");
        return help ? 0 : 2;
    }
    if (bench_store() || bench_layer())
        return 1;
    return bench_redis();
}
