/*
 * policy_bench: decision latency at several policy sizes.
 *
 * Each policy is generated as YAML and goes through the real parser and compiler. Rule mix
 * per size N: two rules per exact tool name (a permit on roles and scopes, every tenth rule a
 * forbid), a third with a regex or range condition, and min(N/100, 100) glob rules "nsK.*".
 * Queries pick a random existing tool (one in ten a glob-covered one) and realistic arguments;
 * every decision is timed alone and the percentiles come from the sorted samples.
 */
#include "layers/policy/policy-int.h"
#include "lib/timeutil.h"

#include <stdlib.h>
#include <string.h>

#define BENCH_DECISIONS 20000
#define BENCH_WARMUP 2000

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: reproducible runs, no global state. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static int gen_policy(size_t n, struct gw_buf *y)
{
    size_t globs = n / 100 > 100 ? 100 : n / 100;
    if (gw_buf_append_str(y, "policy:\n  rules:\n") != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int rc;
        if (i < globs)
            rc = gw_buf_printf(y,
                               "    - {id: g%zu, effect: permit, tools: [\"ns%zu.*\"], "
                               "roles_any: [role%zu]}\n",
                               i, i, i % 20);
        else if (i % 10 == 9)
            rc = gw_buf_printf(y,
                               "    - id: r%zu\n      effect: forbid\n      tools: [t%zu]\n"
                               "      when: [{arg: /amount, range: {min: 10000}}]\n",
                               i, i / 2);
        else if (i % 3 == 1)
            rc = gw_buf_printf(y,
                               "    - id: r%zu\n      effect: permit\n      tools: [t%zu]\n"
                               "      roles_any: [role%zu, admin]\n      scopes_all: [s%zu]\n"
                               "      when: [{arg: /id, matches: 'P[0-9]+'}]\n",
                               i, i / 2, i % 20, i % 5);
        else
            rc = gw_buf_printf(y,
                               "    - id: r%zu\n      effect: permit\n      tools: [t%zu]\n"
                               "      roles_any: [role%zu]\n      scopes_any: [s%zu, s%zu]\n",
                               i, i / 2, i % 20, i % 5, (i + 1) % 5);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int bench_one(size_t n, FILE *out)
{
    struct gw_buf yaml = {0};
    struct cfg_doc doc = {0};
    struct cfg_error err = {{0}};
    struct policy_config *pc = NULL;
    uint64_t *samples = NULL;
    json_t *args = NULL;
    int rc = 1;
    if (gen_policy(n, &yaml) != 0)
        goto out;
    uint64_t t0 = gw_mono_ns();
    if (cfg_load_string(yaml.data, yaml.len, "bench", &doc, &err) != 0 ||
        policy_config_parse(&doc, cfg_map_get(doc.root, "policy"), &pc, &err) != 0) {
        fprintf(out, "policy bench: %s\n", err.msg);
        goto out;
    }
    uint64_t load_ms = (gw_mono_ns() - t0) / 1000000;
    samples = malloc(BENCH_DECISIONS * sizeof *samples);
    args = json_pack("{s:s, s:i, s:s}", "id", "P12345", "amount", 120, "note", "routine");
    if (!samples || !args)
        goto out;
    static const char *const scopes[] = {"s0", "s1", "s2", "s3", "s4"};
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ n;
    size_t globs = n / 100 > 100 ? 100 : n / 100;
    size_t tools = n / 2 > 0 ? n / 2 : 1;
    size_t allowed = 0;
    for (size_t k = 0; k < BENCH_WARMUP + BENCH_DECISIONS; k++) {
        char target[64], role[16];
        uint64_t r = rng_next(&seed);
        if (globs > 0 && r % 10 == 0)
            snprintf(target, sizeof target, "ns%zu.op%u", (size_t)(r >> 8) % globs,
                     (unsigned)(r >> 40) % 7);
        else
            snprintf(target, sizeof target, "t%zu", (size_t)(r >> 8) % tools);
        snprintf(role, sizeof role, "role%u", (unsigned)(r >> 32) % 20);
        const char *roles[] = {role, "staff"};
        struct policy_principal pr = {
            .subject = "bench-user",
            .tenant = "t1",
            .roles = roles,
            .n_roles = 2,
            .scopes = scopes,
            .n_scopes = 5,
        };
        struct policy_query q = {
            .action = POLICY_ACTION_TOOL,
            .target = target,
            .target_len = strlen(target),
            .arguments = args,
            .principal = &pr,
        };
        struct policy_result res;
        uint64_t s = gw_mono_ns();
        enum policy_outcome o = policy_decide(pc, &q, &res, NULL);
        uint64_t e = gw_mono_ns();
        if (k >= BENCH_WARMUP) {
            samples[k - BENCH_WARMUP] = e - s;
            allowed += o == POLICY_ALLOW;
        }
    }
    qsort(samples, BENCH_DECISIONS, sizeof *samples, cmp_u64);
    fprintf(out, "  %8zu %10d %8llu %8llu %8zu %10llu\n", n, BENCH_DECISIONS,
            (unsigned long long)samples[BENCH_DECISIONS / 2],
            (unsigned long long)samples[(size_t)BENCH_DECISIONS * 99 / 100], allowed,
            (unsigned long long)load_ms);
    rc = 0;
out:
    json_decref(args);
    free(samples);
    policy_config_free(pc);
    cfg_doc_free(&doc);
    gw_buf_free(&yaml);
    return rc;
}

int policy_bench_main(int argc, char **argv)
{
    size_t sizes[16] = {10, 1000, 100000};
    size_t count = 3;
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: toolgate bench policy [RULES...]\n"
               "  decision latency over policies of RULES rules each (default 10 1000 100000)\n");
        return 0;
    }
    if (argc > 1) {
        count = 0;
        for (int i = 1; i < argc && count < 16; i++) {
            char *end = NULL;
            unsigned long long v = strtoull(argv[i], &end, 10);
            if (!end || *end || v == 0 || v > 1000000) {
                fprintf(stderr,
                        "toolgate bench policy: rule counts are 1..1000000, not \"%s\"\n"
                        "usage: toolgate bench policy [RULES...]\n",
                        argv[i]);
                return 2;
            }
            sizes[count++] = (size_t)v;
        }
    }
    printf("policy decision latency (ns per decision)\n");
    printf("  %8s %10s %8s %8s %8s %10s\n", "rules", "decisions", "p50", "p99", "allowed",
           "load_ms");
    for (size_t i = 0; i < count; i++)
        if (bench_one(sizes[i], stdout) != 0)
            return 1;
    return 0;
}
