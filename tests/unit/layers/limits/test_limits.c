/*
 * The limits layer: configuration, money and costs, periods, GCRA (properties over random
 * arrivals, retry-after to the millisecond), the sharded store (all-or-nothing over several
 * limits, budgets under concurrency, memory for a million users), the loop detector (each
 * rule, escalation, cool-down, a benign corpus that must raise nothing), the canonical form
 * calls are compared in (evasions by spelling caught, distinct calls kept apart, volatile
 * members, near-identical calls), the pipeline slot (decisions, headers, settlement: a call
 * sent is charged whatever became of its answer, one that never left is refunded) and the
 * ledger surviving kill -9.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "fixtures.h"
#include "lib/timeutil.h"
#include "layers/layer.h"
#include "layers/limits/limits-int.h"
#include "lib/metrics.h"
#include "layers/audit/audit_record.h"

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    fx_mkdtemp(tmpdir, sizeof tmpdir);
    return 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    fx_rmtree(tmpdir);
    return 0;
}

/* ---- configuration ---- */

static void test_config_full(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok(
        "limits:\n"
        "  store: memory\n"
        "  ledger: \"sqlite:/tmp/x.db\"\n"
        "  rate: [{per: user, limit: 60, window: 1m, burst: 10},\n"
        "         {per: user+tool, tools: [\"search_*\"], limit: 5, window: 1s, name: search}]\n"
        "  costs: {default: 0.001, \"billing.charge_card\": 0.05,\n"
        "          search_patients: {fixed: 0.01, per_item: 0.002, items: /limit, default_items: "
        "10}}\n"
        "  budgets: [{per: user, cap: 5.00, period: day}, {per: tenant, cap: 500, period: month}]\n"
        "  loops: {identical: 5, window: 60s, no_progress: 3, max_cycle: 4}\n"
        "  timezone: Europe/Berlin\n");
    const struct limits_config *lc = limits_config_of(cfg);
    assert_non_null(lc);
    assert_int_equal(lc->n_rates, 2);
    assert_string_equal(lc->rates[0].name, "rate0");
    assert_int_equal(lc->rates[0].burst, 10);
    assert_int_equal(lc->rates[0].interval_ns, 1000000000ULL);
    assert_int_equal(lc->rates[0].tolerance_ns, 10000000000ULL);
    assert_int_equal(lc->rates[1].per, LIMITS_PER_USER_TOOL);
    assert_int_equal(lc->rates[1].burst, 5);
    assert_int_equal(lc->default_cost, 1000);
    assert_int_equal(lc->n_costs, 2);
    assert_int_equal(lc->n_budgets, 2);
    assert_int_equal(lc->budgets[0].cap, 5000000);
    assert_int_equal(lc->budgets[1].cap, 500000000);
    assert_int_equal(lc->budgets[1].period, LIMITS_PERIOD_MONTH);
    assert_true(lc->loops.enabled);
    assert_int_equal(lc->loops.identical, 5);
    assert_int_equal(lc->loops.cycle_repeats, 3);
    assert_true(lc->tz.n > 0);
    gw_config_free(cfg);

    cfg = fx_load_ok("server: {workers: 1}\n");
    assert_null(limits_config_of(cfg)); /* no section, no limits */
    gw_config_free(cfg);
    cfg = fx_load_ok("limits: {}\n");
    assert_non_null(limits_config_of(cfg));
    assert_string_equal(limits_config_of(cfg)->store, "memory");
    assert_string_equal(limits_config_of(cfg)->ledger, "sqlite:toolgate.db");
    assert_false(limits_config_of(cfg)->loops.enabled);
    gw_config_free(cfg);
    cfg = fx_load_ok("limits: {store: \"redis://127.0.0.1:6390\", fail: local}\n");
    assert_string_equal(limits_config_of(cfg)->redis_host, "127.0.0.1");
    assert_int_equal(limits_config_of(cfg)->redis_port, 6390);
    assert_int_equal(limits_config_of(cfg)->fail, LIMITS_FAIL_LOCAL);
    gw_config_free(cfg);
}

static void test_config_errors(void **state)
{
    (void)state;
    fx_expect_error("limits: {bogus: 1}\n", NULL, NULL, "bogus");
    fx_expect_error("limits: {store: postgres://x}\n", NULL, NULL, "not a store");
    fx_expect_error("limits: {store: \"redis://u:p@h:1\"}\n", NULL, NULL, "credentials");
    fx_expect_error("limits: {store: \"redis://h:99999\"}\n", NULL, NULL, "port");
    fx_expect_error("limits: {ledger: \"mysql:x\"}\n", NULL, NULL, "not a ledger");
    fx_expect_error("limits: {fail: open}\n", NULL, NULL, "not a mode");
    fx_expect_error("limits: {rate: [{per: user, limit: 5}]}\n", NULL, NULL, "window");
    /* Found by fuzzing: a null limit once reached a division by zero. */
    fx_expect_error("limits: {rate: [{per: user, limit: ~, window: 1s}]}\n", NULL, NULL,
                    "required");
    fx_expect_error("limits: {rate: [{per: user, limit: 5, window: null}]}\n", NULL, NULL,
                    "required");
    fx_expect_error("limits: {rate: [{per: group, limit: 5, window: 1s}]}\n", NULL, NULL,
                    "not a key");
    fx_expect_error("limits: {rate: [{per: user, limit: 0, window: 1s}]}\n", NULL, NULL,
                    "limits.rate[0].limit");
    fx_expect_error("limits: {rate: [{per: user, limit: 5, window: 0s}]}\n", NULL, NULL, "window");
    fx_expect_error("limits: {rate: [{per: user, limit: 5, window: 1s, name: \"a b\"}]}\n", NULL,
                    NULL, "name");
    fx_expect_error("limits: {rate: [{per: user, limit: 5, window: 1s, name: a},"
                    " {per: tool, limit: 5, window: 1s, name: a}]}\n",
                    NULL, NULL, "twice");
    fx_expect_error("limits: {rate: [{per: user, limit: 5, window: 1s, tools: []}]}\n", NULL, NULL,
                    "empty");
    fx_expect_error("limits: {costs: {default: -1}}\n", NULL, NULL, "not an amount");
    fx_expect_error("limits: {costs: {default: 0.0000001}}\n", NULL, NULL, "not an amount");
    fx_expect_error("limits: {costs: {t: {per_item: 0.1}}}\n", NULL, NULL, "items");
    fx_expect_error("limits: {costs: {t: {per_item: 0.1, items: limit}}}\n", NULL, NULL,
                    "JSON Pointer");
    fx_expect_error("limits: {budgets: [{per: tool, cap: 1}]}\n", NULL, NULL, "not a budget key");
    fx_expect_error("limits: {budgets: [{per: user}]}\n", NULL, NULL, "cap");
    fx_expect_error("limits: {budgets: [{per: user, cap: 1, period: year}]}\n", NULL, NULL,
                    "not a period");
    fx_expect_error("limits: {timezone: Mars/Olympus}\n", NULL, NULL, "not known");
    fx_expect_error("limits: {timezone: \"../etc/passwd\"}\n", NULL, NULL, "not a time zone");
    fx_expect_error("limits: {timezone: \"+25:00\"}\n", NULL, NULL, "offset");
    fx_expect_error("limits: {loops: {window: 0s}}\n", NULL, NULL, "window");
    fx_expect_error("limits: {loops: {identical: 100, history: 64}}\n", NULL, NULL, "history");
    fx_expect_error("limits: {loops: {cycle_repeats: 1}}\n", NULL, NULL, "repetitions");
    fx_expect_error("limits: {redis_prefix: \"a{b\"}\n", NULL, NULL, "braces");
}

/* ---- money, globs, costs ---- */

static void test_money_and_costs(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(limits_money_parse("5", &v), 0);
    assert_int_equal(v, 5000000);
    assert_int_equal(limits_money_parse("0.05", &v), 0);
    assert_int_equal(v, 50000);
    assert_int_equal(limits_money_parse("12.345678", &v), 0);
    assert_int_equal(v, 12345678);
    assert_int_equal(limits_money_parse("1.2345678", &v), -1);
    assert_int_equal(limits_money_parse("1e3", &v), -1);
    assert_int_equal(limits_money_parse("-1", &v), -1);
    assert_int_equal(limits_money_parse(".5", &v), -1);
    assert_int_equal(limits_money_parse("5.", &v), -1);
    assert_int_equal(limits_money_parse("99999999999999999999", &v), -1);
    char buf[32];
    limits_money_format(50000, buf, sizeof buf);
    assert_string_equal(buf, "0.05");
    limits_money_format(5000000, buf, sizeof buf);
    assert_string_equal(buf, "5");
    json_t *j = json_real(0.015);
    assert_int_equal(limits_money_from_json(j, &v), 0);
    assert_int_equal(v, 15000);
    json_decref(j);
    j = json_real(-1);
    assert_int_equal(limits_money_from_json(j, &v), -1);
    json_decref(j);
    j = json_string("0.25");
    assert_int_equal(limits_money_from_json(j, &v), 0);
    assert_int_equal(v, 250000);
    json_decref(j);

    assert_true(limits_glob("search_*", "search_patients", 15));
    assert_false(limits_glob("search_*", "get_patient", 11));
    assert_true(limits_glob("*", "", 0));
    assert_true(limits_glob("a?c*", "abcdef", 6));
    assert_false(
        limits_glob("a*b*c*d", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", 60));

    struct gw_config *cfg =
        fx_load_ok("limits:\n  costs: {default: 0.001, charge_card: 0.05, \"billing.*\": 1,\n"
                   "    search: {fixed: 0.01, per_item: 0.002, items: /limit, default_items: 10, "
                   "max_items: 50},\n"
                   "    batch: {per_item: 0.5, items: /ids}}\n");
    const struct limits_config *lc = limits_config_of(cfg);
    json_t *args = json_pack("{s:i}", "limit", 20);
    assert_int_equal(limits_cost_estimate(lc, "search", 6, args), 10000 + 20 * 2000);
    json_decref(args);
    args = json_pack("{s:i}", "limit", 100000);
    assert_int_equal(limits_cost_estimate(lc, "search", 6, args), 10000 + 50 * 2000);
    json_decref(args);
    assert_int_equal(limits_cost_estimate(lc, "search", 6, NULL), 10000 + 10 * 2000);
    args = json_pack("{s:[i,i,i]}", "ids", 1, 2, 3);
    assert_int_equal(limits_cost_estimate(lc, "batch", 5, args), 1500000);
    json_decref(args);
    assert_int_equal(limits_cost_estimate(lc, "charge_card", 11, NULL), 50000);
    assert_int_equal(limits_cost_estimate(lc, "billing.refund", 14, NULL), 1000000);
    assert_int_equal(limits_cost_estimate(lc, "other", 5, NULL), 1000);
    gw_config_free(cfg);
}

/* ---- periods ---- */

static void test_periods(void **state)
{
    (void)state;
    struct limits_tz utc, berlin, plus;
    char why[160];
    assert_int_equal(limits_tz_load(&utc, "UTC", why, sizeof why), 0);
    assert_int_equal(limits_tz_load(&berlin, "Europe/Berlin", why, sizeof why), 0);
    assert_int_equal(limits_tz_load(&plus, "+05:30", why, sizeof why), 0);
    int64_t id, end;
    /* 2026-03-15T12:00:00Z, a Sunday. */
    int64_t t = 1773576000;
    limits_period_of(&utc, LIMITS_PERIOD_DAY, t, &id, &end);
    assert_int_equal(end, 1773619200); /* 2026-03-16T00:00Z */
    limits_period_of(&utc, LIMITS_PERIOD_WEEK, t, &id, &end);
    assert_int_equal(end, 1773619200); /* Monday */
    limits_period_of(&utc, LIMITS_PERIOD_MONTH, t, &id, &end);
    assert_int_equal(id, 2026 * 12 + 2);
    assert_int_equal(end, 1775001600); /* 2026-04-01T00:00Z */
    /* Berlin switches to summer time on 2026-03-29; April starts at 22:00Z on March 31. */
    limits_period_of(&berlin, LIMITS_PERIOD_MONTH, t, &id, &end);
    assert_int_equal(end, 1775001600 - 7200);
    /* 23:30Z on March 15 is already March 16 in Berlin (UTC+1 then). */
    limits_period_of(&berlin, LIMITS_PERIOD_DAY, 1773617400, &id, &end);
    assert_int_equal(end, 1773619200 + 86400 - 3600);
    assert_int_equal(limits_tz_offset(&berlin, 1773576000), 3600);
    assert_int_equal(limits_tz_offset(&berlin, 1775001600), 7200);
    limits_period_of(&plus, LIMITS_PERIOD_DAY, t, &id, &end);
    assert_int_equal(end, 1773619200 - 19800);
    /* December rolls into the next year. */
    limits_period_of(&utc, LIMITS_PERIOD_MONTH, 1796083200 /* 2026-12-01 */, &id, &end);
    assert_int_equal(end, 1798761600); /* 2027-01-01 */
    limits_tz_free(&utc);
    limits_tz_free(&berlin);
    limits_tz_free(&plus);
}

/* ---- GCRA ---- */

static uint64_t rng_state = 0x1234567;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/*
 * Over random saturating arrivals (gaps below the emission interval), GCRA admits exactly
 * burst + elapsed/interval calls, within one; over any arrivals it never admits more.
 */
static void test_gcra_properties(void **state)
{
    (void)state;
    for (int trial = 0; trial < 300; trial++) {
        uint64_t limit = 1 + rnd() % 100, window = 1000000ULL * (1 + rnd() % 60000);
        uint64_t burst = 1 + rnd() % (limit * 2);
        uint64_t T = window / limit, tau = burst * T;
        /* Saturating means no arrival comes later than the tolerance can absorb. */
        int saturating = trial % 2 == 0 && burst >= 2;
        int64_t tat = 0, t0 = 1000000000LL + (int64_t)(rnd() % 1000000000ULL), t = t0;
        uint64_t admitted = 0;
        for (int i = 0; i < 3000; i++) {
            t += (int64_t)(saturating ? rnd() % (T / 2 + 1) : rnd() % (3 * T + 1));
            struct gcra_result r;
            gcra_step(&tat, t, T, tau, 1, &r);
            admitted += r.allowed;
            if (!r.allowed) {
                /* Retry-after is exact: one nanosecond earlier is still too early. */
                int64_t probe = tat;
                struct gcra_result r2;
                gcra_step(&probe, t + (int64_t)r.retry_ns, T, tau, 1, &r2);
                assert_true(r2.allowed);
                probe = tat;
                gcra_step(&probe, t + (int64_t)r.retry_ns - 1, T, tau, 1, &r2);
                assert_false(r2.allowed);
            }
        }
        uint64_t bound = burst + (uint64_t)(t - t0) / T;
        if (admitted > bound + 1 || (saturating && admitted + 1 < bound))
            fail_msg("admitted %llu, bound %llu (limit %llu burst %llu T %llu)",
                     (unsigned long long)admitted, (unsigned long long)bound,
                     (unsigned long long)limit, (unsigned long long)burst, (unsigned long long)T);
    }
}

/* Retry-after through the store, to the millisecond as clients see it. */
static void test_store_retry_after_ms(void **state)
{
    (void)state;
    struct lstore *s = lstore_new(0);
    struct lrate_op op = {.interval_ns = 200000000ULL, .tolerance_ns = 600000000ULL, .n = 1};
    limits_key_make(&op.key, "r", 0, "alice", NULL, 0);
    int64_t now = 5000000000LL;
    for (int i = 0; i < 3; i++)
        assert_int_equal(lstore_rate(s, &op, 1, now), 1);
    assert_int_equal(lstore_rate(s, &op, 1, now + 1000000), 0);
    uint64_t ms = (op.r.retry_ns + 999999) / 1000000;
    assert_int_equal(ms, 199);
    assert_int_equal(lstore_rate(s, &op, 1, now + 1000000 + (int64_t)(ms - 1) * 1000000), 0);
    assert_int_equal(lstore_rate(s, &op, 1, now + 1000000 + (int64_t)ms * 1000000), 1);
    assert_int_equal(op.r.remaining, 0);
    lstore_free(s);
}

/* Several limits: a denial by one consumes nothing of the others. */
static void test_store_all_or_nothing(void **state)
{
    (void)state;
    struct lstore *s = lstore_new(0);
    struct lrate_op ops[2] = {
        {.interval_ns = 1000000ULL, .tolerance_ns = 100000000ULL, .n = 1},     /* roomy */
        {.interval_ns = 1000000000ULL, .tolerance_ns = 2000000000ULL, .n = 1}, /* 2 at once */
    };
    limits_key_make(&ops[0].key, "r", 0, "alice", NULL, 0);
    limits_key_make(&ops[1].key, "r", 1, "alice", "search", 0);
    int64_t now = 10000000000LL;
    assert_int_equal(lstore_rate(s, ops, 2, now), 1);
    assert_int_equal(lstore_rate(s, ops, 2, now), 1);
    int64_t remaining_before = ops[0].r.remaining;
    for (int i = 0; i < 50; i++)
        assert_int_equal(lstore_rate(s, ops, 2, now), 0);
    assert_true(ops[0].r.allowed);
    assert_false(ops[1].r.allowed);
    /* The roomy limit alone still has all of its capacity. */
    assert_int_equal(lstore_rate(s, ops, 1, now), 1);
    assert_int_equal(ops[0].r.remaining, remaining_before - 1);
    lstore_free(s);
}

struct spend_arg {
    struct lstore *s;
    struct limits_key key;
    int64_t cap;
    int64_t admitted_sum;
    unsigned seed;
};

static void *spender(void *p)
{
    struct spend_arg *a = p;
    for (int i = 0; i < 20000; i++) {
        struct lbudget_op op = {.key = a->key, .cap = a->cap, .expires = INT64_MAX};
        a->seed = a->seed * 1103515245 + 12345;
        op.amount = 1 + (a->seed >> 8) % 5000;
        int rc = lstore_budget_reserve(a->s, &op, 1, 100);
        assert_true(rc >= 0);
        if (rc == 1) {
            a->admitted_sum += op.amount;
            /* Half of the calls settle for less than reserved, some are refunded. */
            if (i % 2) {
                lstore_budget_add(a->s, &op.key, -op.amount / 2, INT64_MAX, 100);
                a->admitted_sum -= op.amount / 2;
            }
        }
    }
    return NULL;
}

/* Parallel reservations at the edge of a cap never overspend it. */
static void test_budget_concurrency(void **state)
{
    (void)state;
    struct lstore *s = lstore_new(0);
    struct spend_arg args[8];
    pthread_t th[8];
    struct limits_key k;
    limits_key_make(&k, "b", 0, "alice", "daily", 1);
    for (int i = 0; i < 8; i++) {
        args[i] = (struct spend_arg){.s = s, .key = k, .cap = 3000000, .seed = (unsigned)i + 1};
        pthread_create(&th[i], NULL, spender, &args[i]);
    }
    int64_t total = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        total += args[i].admitted_sum;
    }
    int64_t spent = lstore_budget_get(s, &k, 100);
    assert_int_equal(spent, total);
    assert_true(spent <= 3000000);
    assert_true(spent > 3000000 - 5000); /* the cap was reached, not avoided */
    lstore_free(s);
}

/* A million distinct users' rate-limit state fits in 256 MiB; expired keys are evicted. */
static void test_store_memory_bound(void **state)
{
    (void)state;
    struct lstore *s = lstore_new(4000000);
    struct lrate_op op = {.interval_ns = 1000000000ULL, .tolerance_ns = 10000000000ULL, .n = 1};
    int64_t now = 1000000000000LL;
    char user[32];
    for (int i = 0; i < 1000000; i++) {
        snprintf(user, sizeof user, "user-%d", i);
        limits_key_make(&op.key, "r", 0, user, NULL, 0);
        assert_int_equal(lstore_rate(s, &op, 1, now), 1);
    }
    assert_int_equal(lstore_count(s), 1000000);
    size_t bytes = lstore_memory(s);
    print_message("      1,000,000 users: %zu MiB of rate-limit state\n", bytes >> 20);
    assert_true(bytes <= 256u << 20);
    /* Later, when every key has expired, new keys reuse the space instead of growing. */
    now += 20000000000LL;
    for (int i = 0; i < 1000000; i++) {
        snprintf(user, sizeof user, "later-%d", i);
        limits_key_make(&op.key, "r", 0, user, NULL, 0);
        assert_int_equal(lstore_rate(s, &op, 1, now), 1);
    }
    assert_true(lstore_memory(s) <= bytes);
    assert_true(lstore_count(s) <= 1500000);
    lstore_free(s);

    /* A store full of live keys refuses new ones (the layer then fails closed). */
    s = lstore_new(1000);
    int full = 0;
    for (int i = 0; i < 5000 && !full; i++) {
        snprintf(user, sizeof user, "u%d", i);
        limits_key_make(&op.key, "r", 0, user, NULL, 0);
        full = lstore_rate(s, &op, 1, now) < 0;
    }
    assert_true(full);
    lstore_free(s);
}

/*
 * One operation over an expired key and a new one of the same shard, the store full: the
 * sweep that looks for room for the new key must not remove the expired one the operation
 * holds (it did, and the operation then read a NULL entry and crashed).
 */
static void test_store_sweep_spares_the_operations_keys(void **state)
{
    (void)state;
    enum { MAX = 64 };
    struct lstore *s = lstore_new(MAX);
    struct lrate_op op = {.interval_ns = 1000000000ULL, .tolerance_ns = 1000000000ULL, .n = 1};
    int64_t now = 1000000000000LL;
    /* Keys of one shard (the top 6 bits of h2) and of others, made by hand. */
    struct limits_key mine[2];
    for (int i = 0; i < 2; i++)
        mine[i] = (struct limits_key){.h1 = 0x1000u + (uint64_t)i, .h2 = 5ULL << 58 | (uint64_t)i};
    op.key = mine[0];
    assert_int_equal(lstore_rate(s, &op, 1, now), 1); /* lives until now + 1 s */
    for (int i = 0; i < MAX - 1; i++) {
        op.key = (struct limits_key){.h1 = 0x9000u + (uint64_t)i,
                                     .h2 = (uint64_t)(6 + i % 50) << 58 | (uint64_t)i};
        assert_int_equal(lstore_rate(s, &op, 1, now + 10000000000LL), 1); /* live long */
    }
    assert_int_equal(lstore_count(s), MAX);
    /* 2 s on: mine[0] has expired, the store is full; one call over it and a new key. The
     * new key has no room (the live keys stay): refused, and the expired key, not written,
     * is gone, which is what it meant. */
    struct lrate_op two[2] = {op, op};
    two[0].key = mine[0];
    two[1].key = mine[1];
    assert_int_equal(lstore_rate(s, two, 2, now + 2000000000LL), -ENOSPC);
    assert_int_equal(lstore_count(s), MAX - 1);
    /* Now there is room for one: mine[1] alone is admitted, then limited. */
    assert_int_equal(lstore_rate(s, &two[1], 1, now + 2000000000LL), 1);
    assert_int_equal(lstore_rate(s, &two[1], 1, now + 2000000001LL), 0);
    assert_int_equal(lstore_count(s), MAX);
    lstore_free(s);
}

/*
 * max_keys bounds the whole store, exactly: as many distinct keys as it says fit however they
 * spread over the shards, and the next is refused. Room is made only from expired keys: a
 * user inside its window keeps its state however many new principals arrive, so a flood of
 * new names cannot buy anyone a fresh allowance; it is refused (the layer answers 503).
 */
static void test_store_bound_never_evicts_live(void **state)
{
    (void)state;
    enum { MAX = 1000 };
    struct lstore *s = lstore_new(MAX);
    /* Everyone: 2 calls at once, then one a second; a key lives until its TAT (1 s here). */
    struct lrate_op op = {.interval_ns = 1000000000ULL, .tolerance_ns = 2000000000ULL, .n = 1};
    /* alice: a burst of 10; after 10 calls her TAT is 10 s ahead. */
    struct lrate_op alice = {.interval_ns = 1000000000ULL, .tolerance_ns = 10000000000ULL, .n = 1};
    limits_key_make(&alice.key, "r", 0, "alice", NULL, 0);
    int64_t now = 1000000000000LL;
    char user[32];
    for (int i = 0; i < 10; i++)
        assert_int_equal(lstore_rate(s, &alice, 1, now), 1);
    assert_int_equal(lstore_rate(s, &alice, 1, now), 0);
    for (int i = 1; i < MAX; i++) {
        snprintf(user, sizeof user, "user-%d", i);
        limits_key_make(&op.key, "r", 0, user, NULL, 0);
        assert_int_equal(lstore_rate(s, &op, 1, now), 1);
    }
    assert_int_equal(lstore_count(s), MAX);
    /* A flood of new principals while every key is live: all refused, none admitted. */
    for (int i = 0; i < 5000; i++) {
        snprintf(user, sizeof user, "flood-%d", i);
        limits_key_make(&op.key, "r", 0, user, NULL, 0);
        assert_int_equal(lstore_rate(s, &op, 1, now + i), -ENOSPC);
    }
    assert_int_equal(lstore_refused(s), 5000);
    assert_int_equal(lstore_evicted(s), 0);
    assert_int_equal(lstore_count(s), MAX);
    /* alice is still held to her limit: the flood evicted nothing. */
    assert_int_equal(lstore_rate(s, &alice, 1, now + 100000000LL), 0);
    /*
     * 5 s later the others' windows are over and they make room; alice's is not (her TAT is
     * 10 s ahead), so her state stays: her next call leaves 4 calls of burst, not the 9 a
     * forgotten key would.
     */
    int64_t later = now + 5000000000LL;
    for (int i = 0; i < MAX / 2; i++) {
        snprintf(user, sizeof user, "later-%d", i);
        limits_key_make(&op.key, "r", 0, user, NULL, 0);
        assert_int_equal(lstore_rate(s, &op, 1, later), 1);
    }
    assert_true(lstore_evicted(s) >= MAX / 2);
    assert_true(lstore_count(s) <= MAX);
    assert_int_equal(lstore_rate(s, &alice, 1, later), 1);
    assert_int_equal(alice.r.remaining, 4);
    lstore_free(s);

    /* Budgets the same: a principal at its cap stays at it through a flood of new ones. */
    struct lstore *b = lstore_new(MAX);
    struct lbudget_op bop = {.cap = 100, .amount = 100, .expires = 5000};
    for (int i = 0; i < MAX; i++) {
        snprintf(user, sizeof user, "spender-%d", i);
        limits_key_make(&bop.key, "b", 0, user, "day", 1);
        assert_int_equal(lstore_budget_reserve(b, &bop, 1, 1000), 1);
    }
    limits_key_make(&bop.key, "b", 0, "spender-3", "day", 1);
    assert_int_equal(lstore_budget_reserve(b, &bop, 1, 1000), 0);
    for (int i = 0; i < 2000; i++) {
        snprintf(user, sizeof user, "newcomer-%d", i);
        limits_key_make(&bop.key, "b", 0, user, "day", 1);
        assert_int_equal(lstore_budget_reserve(b, &bop, 1, 1000 + i % 100), -ENOSPC);
        assert_int_equal(lstore_budget_add(b, &bop.key, 1, 5000, 1000), -ENOSPC);
    }
    limits_key_make(&bop.key, "b", 0, "spender-3", "day", 1);
    assert_int_equal(lstore_budget_reserve(b, &bop, 1, 1999), 0);
    assert_int_equal(lstore_budget_get(b, &bop.key, 1999), 100);
    /* The period is over: the newcomer gets in, spender-3 starts its new period afresh. */
    limits_key_make(&bop.key, "b", 0, "newcomer-0", "day", 1);
    bop.expires = 9000;
    assert_int_equal(lstore_budget_reserve(b, &bop, 1, 5000), 1);
    assert_true(lstore_evicted(b) > 0);
    lstore_free(b);
}

/* ---- loop detector ---- */

/*
 * limits.loops.max_tracked bounds the histories held at once: a flood of new users (or of
 * sessions of one user) stays under it while their histories are live, and once they fall
 * silent past the window new ones are tracked again.
 */
static void test_loop_tracked_bound(void **state)
{
    (void)state;
    struct cfg_error err = {{0}};
    struct gw_config *cfg =
        gw_config_load_string("limits:\n  ledger: none\n  loops: {max_tracked: 1000}\n", "t", &err);
    assert_non_null(cfg);
    const struct limits_config *lc = limits_config_of(cfg);
    assert_int_equal(lc->loops.max_tracked, 1000);
    struct lloop *l = lloop_new(&lc->loops, lc->loops.max_tracked);
    assert_non_null(l);
    int64_t now = 1000000000000LL;
    char user[32];
    struct lloop_verdict v;
    int untracked = 0, tracked = 0;
    for (int i = 0; i < 20000; i++) {
        struct limits_key u, s, ut;
        snprintf(user, sizeof user, "flood-%d", i);
        limits_key_make(&u, "lu", 0, "one-user", NULL, 0);
        limits_key_make(&s, "ls", 0, "one-user", user, 0);
        limits_key_make(&ut, "lt", 0, "one-user", "search", 0);
        lloop_call(l, &u, &s, &ut, 42, 43, now + i, &v);
        untracked += v.action == 3;
        tracked += v.action != 3;
    }
    /* Each shard holds its share (1000 / 64 + 1): never more than that in all. Sessions past
     * it cannot be watched, so their calls are refused (action 3), never passed unwatched. */
    assert_true(lloop_count(l) <= 1000 + 64);
    assert_true(tracked > 0 && tracked <= 1000 / 64 + 1);
    assert_int_equal(untracked, 20000 - tracked);
    /* Past the window the old histories mean nothing: new sessions are tracked again. */
    now += (int64_t)(lc->loops.window_ms + 1000) * 1000000;
    for (int i = 0; i < 500; i++) {
        struct limits_key u, s, ut;
        snprintf(user, sizeof user, "later-%d", i);
        limits_key_make(&u, "lu", 0, user, NULL, 0);
        limits_key_make(&s, "ls", 0, user, "s1", 0);
        limits_key_make(&ut, "lt", 0, user, "search", 0);
        lloop_call(l, &u, &s, &ut, 42, 43, now + i, &v);
    }
    assert_true(lloop_count(l) <= 1000 + 64);
    assert_true(lloop_count(l) >= 500);
    lloop_free(l);
    gw_config_free(cfg);
    /* Out of bounds. */
    assert_null(gw_config_load_string("limits:\n  loops: {max_tracked: 10}\n", "t", &err));
}

static struct limits_loops loops_cfg(void)
{
    return (struct limits_loops){.enabled = 1,
                                 .window_ms = 60000,
                                 .identical = 5,
                                 .no_progress = 3,
                                 .max_cycle = 4,
                                 .cycle_repeats = 3,
                                 .warnings = 1,
                                 .history = 64,
                                 .near_identical = 5};
}

struct loop_fx {
    struct lloop *l;
    struct limits_key user, session, ut;
    int64_t now;
    const struct limits_config *lc; /* volatile members, when a test declares some */
};

static void loop_user(struct loop_fx *f, const char *user, const char *tool)
{
    limits_key_make(&f->user, "lu", 0, user, NULL, 0);
    limits_key_make(&f->session, "ls", 0, user, "s1", 0);
    limits_key_make(&f->ut, "lt", 0, user, tool, 0);
}

static struct lloop_verdict loop_call(struct loop_fx *f, const char *tool, const char *args,
                                      const char *result)
{
    json_t *a = json_loads(args, 0, NULL);
    assert_non_null(a);
    uint64_t fp, near;
    limits_fingerprints(f->lc, tool, strlen(tool), a, &fp, &near);
    json_decref(a);
    struct lloop_verdict v;
    limits_key_make(&f->ut, "lt", 0, "u", tool, 0);
    f->now += 1000000000LL; /* a second apart */
    lloop_call(f->l, &f->user, &f->session, &f->ut, fp, near, f->now, &v);
    if (result) {
        json_t *r = json_string(result);
        lloop_result(f->l, &f->user, &f->session, fp, limits_json_hash(r));
        json_decref(r);
    }
    return v;
}

static void test_loop_identical_and_escalation(void **state)
{
    (void)state;
    struct limits_loops c = loops_cfg();
    c.no_progress = 0;
    c.cooldown_ms = 30000;
    struct loop_fx f = {.l = lloop_new(&c, 0), .now = 1000000000000LL};
    loop_user(&f, "u", "get");
    /* Canonical arguments: key order does not change the fingerprint. */
    json_t *j1 = json_loads("{\"a\":1,\"b\":[1,2]}", 0, NULL);
    json_t *j2 = json_loads("{\"b\":[1,2],\"a\":1}", 0, NULL);
    json_t *j3 = json_loads("{\"b\":[2,1],\"a\":1}", 0, NULL);
    assert_int_equal(limits_fingerprint("t", 1, j1), limits_fingerprint("t", 1, j2));
    assert_int_not_equal(limits_fingerprint("t", 1, j1), limits_fingerprint("t", 1, j3));
    assert_int_not_equal(limits_fingerprint("t", 1, j1), limits_fingerprint("u", 1, j1));
    json_decref(j1);
    json_decref(j2);
    json_decref(j3);
    for (int i = 0; i < 4; i++)
        assert_int_equal(loop_call(&f, "get", "{\"id\":1}", "r").flags, 0);
    struct lloop_verdict v = loop_call(&f, "get", "{\"id\":1}", "r");
    assert_true(v.flags & GW_LOOP_IDENTICAL);
    assert_int_equal(v.action, 1); /* warned first */
    v = loop_call(&f, "get", "{\"id\":1}", "r");
    assert_int_equal(v.action, 2); /* then denied */
    assert_int_equal(v.retry_ms, 30000);
    /* Cool-down: even a different call to the same tool waits. */
    v = loop_call(&f, "get", "{\"id\":2}", "r");
    assert_int_equal(v.action, 2);
    assert_true(v.flags & GW_LOOP_COOLDOWN);
    assert_true(v.retry_ms > 0 && v.retry_ms <= 29000);
    /* Another tool is not cooling down. */
    assert_int_equal(loop_call(&f, "other", "{}", "x").action, 0);
    /* After the window and the cool-down, the slate is clean. */
    f.now += 120000000000LL;
    assert_int_equal(loop_call(&f, "get", "{\"id\":1}", "r").action, 0);
    lloop_free(f.l);
}

static void test_loop_no_progress_and_cycles(void **state)
{
    (void)state;
    struct limits_loops c = loops_cfg();
    c.identical = 0;
    struct loop_fx f = {.l = lloop_new(&c, 0), .now = 1000000000000LL};
    loop_user(&f, "u", "poll");
    for (int i = 0; i < 3; i++)
        assert_int_equal(loop_call(&f, "poll", "{}", "same").flags, 0);
    assert_true(loop_call(&f, "poll", "{}", "same").flags & GW_LOOP_NO_PROGRESS);
    lloop_free(f.l);

    /* Same call, changing results: progress, no flag. */
    f.l = lloop_new(&c, 0);
    char res[16];
    for (int i = 0; i < 20; i++) {
        snprintf(res, sizeof res, "r%d", i);
        assert_int_equal(loop_call(&f, "poll", "{}", res).flags, 0);
    }
    lloop_free(f.l);

    /* A,B,A,B,A,B and A,B,C x3 are cycles. */
    c.no_progress = 0;
    f.l = lloop_new(&c, 0);
    unsigned flags = 0;
    for (int i = 0; i < 6; i++)
        flags |= loop_call(&f, i % 2 ? "b" : "a", "{}", NULL).flags;
    assert_true(flags & GW_LOOP_CYCLE);
    lloop_free(f.l);
    f.l = lloop_new(&c, 0);
    flags = 0;
    for (int i = 0; i < 8; i++)
        flags |= loop_call(&f, (const char *[]){"a", "b", "c"}[i % 3], "{}", NULL).flags;
    assert_int_equal(flags, 0);
    flags |= loop_call(&f, "c", "{}", NULL).flags;
    assert_true(flags & GW_LOOP_CYCLE);
    lloop_free(f.l);

    /* Calls per session. */
    c = loops_cfg();
    c.identical = c.no_progress = c.max_cycle = 0;
    c.max_calls = 10;
    f.l = lloop_new(&c, 0);
    for (int i = 0; i < 10; i++) {
        char args[32];
        snprintf(args, sizeof args, "{\"i\":%d}", i);
        assert_int_equal(loop_call(&f, "t", args, NULL).flags, 0);
    }
    assert_true(loop_call(&f, "t", "{\"i\":99}", NULL).flags & GW_LOOP_SESSION_CAP);
    lloop_free(f.l);
}

/*
 * A benign corpus: many sessions of an assistant working through varied tasks (looking up
 * records one after another, searching with refined queries, paging, occasionally refreshing
 * the same record once or twice, interleaving two tools over different items) raise no flag.
 */
static void test_loop_benign_corpus(void **state)
{
    (void)state;
    struct limits_loops c = loops_cfg();
    c.max_calls = 200;
    struct lloop *l = lloop_new(&c, 0);
    static const char *const tools[] = {"get_patient", "search_patients", "update_note",
                                        "list_appointments", "whoami"};
    int64_t now = 1000000000000LL;
    unsigned flagged = 0;
    rng_state = 0xbe9191;
    for (int session = 0; session < 300; session++) {
        struct loop_fx f = {.l = l, .now = now};
        char user[32], sid[32];
        snprintf(user, sizeof user, "user%d", session % 40);
        snprintf(sid, sizeof sid, "s%d", session);
        limits_key_make(&f.user, "lu", 0, user, NULL, 0);
        limits_key_make(&f.session, "ls", 0, user, sid, 0);
        int calls = 10 + (int)(rnd() % 60);
        int patient = (int)(rnd() % 1000), page = 0;
        for (int i = 0; i < calls; i++) {
            /* whoami once at the start of a session, then the work. */
            int kind = i == 0 ? 9 : (int)(rnd() % 9);
            const char *tool;
            char args[96], result[64];
            if (kind < 4) {
                tool = tools[0];
                /* Mostly the next record; sometimes the same one again (a refresh). */
                if (rnd() % 16)
                    patient++;
                snprintf(args, sizeof args, "{\"patient_id\":\"P%d\"}", patient);
                snprintf(result, sizeof result, "record %d v%d", patient, i / 7);
            } else if (kind < 6) {
                tool = tools[1];
                snprintf(args, sizeof args, "{\"query\":\"q%d-%d\",\"page\":%d}", session, i,
                         page++);
                snprintf(result, sizeof result, "hits %d %d", session, i);
            } else if (kind < 8) {
                tool = tools[2];
                snprintf(args, sizeof args, "{\"patient_id\":\"P%d\",\"note\":\"n%d\"}", patient,
                         i);
                snprintf(result, sizeof result, "ok %d", i);
            } else if (kind < 9) {
                tool = tools[3];
                snprintf(args, sizeof args, "{\"day\":%d}", i);
                snprintf(result, sizeof result, "appts %d", i);
            } else {
                tool = tools[4];
                snprintf(args, sizeof args, "{}");
                snprintf(result, sizeof result, "me");
            }
            json_t *a = json_loads(args, 0, NULL);
            uint64_t fp, near;
            limits_fingerprints(NULL, tool, strlen(tool), a, &fp, &near);
            json_decref(a);
            limits_key_make(&f.ut, "lt", 0, user, tool, 0);
            /* Human-paced: a few seconds between calls. */
            f.now += (int64_t)(1 + rnd() % 5) * 1000000000LL;
            struct lloop_verdict v;
            lloop_call(l, &f.user, &f.session, &f.ut, fp, near, f.now, &v);
            if (v.flags) {
                flagged++;
                print_message("      flagged %s %s: flags %x\n", tool, args, v.flags);
            }
            json_t *r = json_string(result);
            lloop_result(l, &f.user, &f.session, fp, limits_json_hash(r));
            json_decref(r);
        }
        now = f.now + 3600000000000LL; /* the next session an hour later */
    }
    assert_int_equal(flagged, 0);
    lloop_free(l);
}

/* ---- the canonical form (class: loop detection evaded by spelling a call differently) ---- */

static void collect(void *arg, const char *p, size_t len)
{
    strncat(arg, p, len);
}

static const char *canon(const char *s, char *buf)
{
    buf[0] = '\0';
    limits_canon_string(s, strlen(s), collect, buf);
    return buf;
}

static uint64_t fp_of(const struct limits_config *lc, const char *tool, const char *args,
                      uint64_t *near)
{
    json_t *a = json_loads(args, JSON_DECODE_ANY, NULL);
    assert_non_null(a);
    uint64_t exact, nr;
    limits_fingerprints(lc, tool, strlen(tool), a, &exact, &nr);
    json_decref(a);
    if (near)
        *near = nr;
    return exact;
}

static void test_canon_strings(void **state)
{
    (void)state;
    char b[128];
    assert_string_equal(canon("  a \t b  ", b), "a b");
    assert_string_equal(canon("a\r\n\r\nb", b), "a b");
    assert_string_equal(canon("\xc2\xa0"
                              "a\xe3\x80\x80"
                              "b\xe2\x80\xa8",
                              b),
                        "a b"); /* NBSP, U+3000, U+2028 */
    assert_string_equal(canon("a\xe2\x80\x83\xe2\x80\xaf"
                              "b",
                              b),
                        "a b"); /* em space, U+202F */
    assert_string_equal(canon("P\xe2\x80\x8b"
                              "1\xef\xbb\xbf",
                              b),
                        "P1");                                /* ZWSP, BOM dropped */
    assert_string_equal(canon("a \xe2\x81\xa0 b", b), "a b"); /* word joiner */
    assert_string_equal(canon("", b), "");
    assert_string_equal(canon(" \t\n", b), "");
    /* What is not whitespace stays, byte for byte. */
    assert_string_equal(canon("caf\xc3\xa9 A_b", b), "caf\xc3\xa9 A_b");
    assert_string_equal(canon("\xe2\x80\x90", b), "\xe2\x80\x90"); /* a hyphen, U+2010 */
    /* A byte that starts no sequence is U+FFFD, never whitespace, and never joins the bytes
     * around a dropped character into a new one (found by fuzzing). */
    assert_string_equal(canon("a\xc2 b", b), "a\xef\xbf\xbd b");
    assert_string_equal(canon("\xe2\x80\xe2\x80\x8b\x8b $y", b),
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd $y");
    char again[128];
    assert_string_equal(canon(b, again), b);
}

static void test_canon_fingerprints(void **state)
{
    (void)state;
    /* Evasions: the same call spelled differently fingerprints the same. */
    static const char *const same[][2] = {
        {"{\"id\":\"P1\"}", "{\"id\":\"P1 \"}"},
        {"{\"id\":\"P1\"}", "{\"id\":\"  P1\\t\\n\"}"},
        {"{\"q\":\"heart rate\"}", "{\"q\":\"heart   rate\"}"},
        {"{\"q\":\"heart rate\"}", "{\"q\":\"heart\\u00a0rate\"}"},
        {"{\"q\":\"heart rate\"}", "{\"q\":\"heart\\u200b \\u3000rate\\ufeff\"}"},
        {"{\"a\":1,\"b\":{\"c\":2,\"d\":3}}", "{\"b\":{\"d\":3,\"c\":2},\"a\":1}"},
        {"{\"n\":1}", "{\"n\":1.0}"},
        {"{\"n\":1}", "{\"n\":1e0}"},
        {"{\"n\":100}", "{\"n\":1.0e2}"},
        {"{\"n\":0}", "{\"n\":-0.0}"},
        {"{\"n\":[1,2.0]}", "{\"n\":[1.0,2]}"},
        {"{\"n\":0.5}", "{\"n\":5e-1}"},
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        if (fp_of(NULL, "t", same[i][0], NULL) != fp_of(NULL, "t", same[i][1], NULL))
            fail_msg("%s and %s should fingerprint the same", same[i][0], same[i][1]);
    /* Distinct calls stay distinct. */
    static const char *const differ[][2] = {
        {"{\"id\":\"P1\"}", "{\"id\":\"P2\"}"},
        {"{\"q\":\"heart rate\"}", "{\"q\":\"heartrate\"}"}, /* a space between words counts */
        {"{\"q\":\"Heart\"}", "{\"q\":\"heart\"}"},
        {"{\"n\":1}", "{\"n\":2}"},
        {"{\"n\":1}", "{\"n\":\"1\"}"},
        {"{\"n\":1}", "{\"n\":true}"},
        {"{\"n\":9007199254740992}", "{\"n\":9007199254740993}"},
        {"{\"n\":0.1}", "{\"n\":0.10000000000000002}"},
        {"{\"n\":[1,2]}", "{\"n\":[2,1]}"},
        {"{\"n\":[1]}", "{\"n\":[1,1]}"},
        {"{\"a\":null}", "{}"},
        {"{\"a\":1}", "{\"b\":1}"},
        {"{\"a\":{}}", "{\"a\":[]}"},
        {"{\"a\":\"\"}", "{\"a\":null}"},
    };
    for (size_t i = 0; i < sizeof differ / sizeof differ[0]; i++)
        if (fp_of(NULL, "t", differ[i][0], NULL) == fp_of(NULL, "t", differ[i][1], NULL))
            fail_msg("%s and %s should fingerprint apart", differ[i][0], differ[i][1]);
    /* The near fingerprint: equal up to numbers, nothing else. */
    uint64_t n1, n2;
    assert_int_not_equal(fp_of(NULL, "t", "{\"id\":\"P1\",\"n\":1}", &n1),
                         fp_of(NULL, "t", "{\"id\":\"P1\",\"n\":2}", &n2));
    assert_int_equal(n1, n2);
    fp_of(NULL, "t", "{\"id\":\"P1\",\"n\":1.5,\"ts\":1764800000123}", &n2);
    assert_int_equal(n1 != n2, 1); /* another member: not near */
    fp_of(NULL, "t", "{\"id\":\"P2\",\"n\":1}", &n2);
    assert_int_not_equal(n1, n2);
    fp_of(NULL, "t", "{\"id\":\"P1\",\"n\":\"1\"}", &n2);
    assert_int_not_equal(n1, n2);
    fp_of(NULL, "u", "{\"id\":\"P1\",\"n\":1}", &n2);
    assert_int_not_equal(n1, n2);

    /* Volatile members: a name at the top, or a JSON Pointer; only for the tools listed. */
    struct gw_config *cfg = fx_load_ok("limits:\n  loops:\n    volatile:\n"
                                       "      \"get_*\": [nonce, /options/request_id, \"/a~1b\"]\n"
                                       "      search: request_id\n");
    const struct limits_config *lc = limits_config_of(cfg);
    assert_int_equal(lc->n_volatiles, 2);
    uint64_t base = fp_of(lc, "get_patient", "{\"id\":\"P1\",\"options\":{\"x\":1}}", NULL);
    assert_int_equal(
        base, fp_of(lc, "get_patient", "{\"id\":\"P1\",\"nonce\":1,\"options\":{\"x\":1}}", NULL));
    assert_int_equal(base, fp_of(lc, "get_patient",
                                 "{\"nonce\":\"x7\",\"id\":\"P1 \",\"options\":{\"x\":1.0,"
                                 "\"request_id\":\"r-99\"},\"a/b\":3}",
                                 NULL));
    /* A volatile name only goes at the top; the rest of the call still counts. */
    assert_int_not_equal(
        base, fp_of(lc, "get_patient", "{\"id\":\"P1\",\"options\":{\"x\":1,\"nonce\":2}}", NULL));
    assert_int_not_equal(
        base, fp_of(lc, "get_patient", "{\"id\":\"P2\",\"nonce\":1,\"options\":{\"x\":1}}", NULL));
    /* Another tool keeps its members. */
    assert_int_not_equal(fp_of(lc, "list", "{\"nonce\":1}", NULL),
                         fp_of(lc, "list", "{\"nonce\":2}", NULL));
    assert_int_equal(fp_of(lc, "search", "{\"q\":\"x\",\"request_id\":1}", NULL),
                     fp_of(lc, "search", "{\"q\":\"x\",\"request_id\":2}", NULL));
    /* Arguments that are not an object, or lack the member, are taken as they are. */
    assert_int_equal(fp_of(lc, "get_x", "[1]", NULL), fp_of(NULL, "get_x", "[1]", NULL));
    assert_int_equal(fp_of(lc, "get_x", "{\"options\":3}", NULL),
                     fp_of(NULL, "get_x", "{\"options\":3}", NULL));
    gw_config_free(cfg);

    fx_expect_error("limits: {loops: {volatile: [a]}}\n", NULL, NULL, "limits.loops.volatile");
    fx_expect_error("limits: {loops: {volatile: {t: []}}}\n", NULL, NULL, "argument members");
    fx_expect_error("limits: {loops: {volatile: {t: \"/a~2\"}}}\n", NULL, NULL,
                    "not an argument member");
    fx_expect_error("limits: {loops: {volatile: {t: [{a: 1}]}}}\n", NULL, NULL, "string");
    fx_expect_error("limits: {loops: {volatile: {\"\": [a]}}}\n", NULL, NULL, "empty");
    fx_expect_error("limits: {loops: {near_identical: 100, history: 64}}\n", NULL, NULL, "history");
}

/* The detector over spelled-differently calls: every evasion is caught, as identical. */
static void test_loop_evasions_caught(void **state)
{
    (void)state;
    struct gw_config *cfg =
        fx_load_ok("limits:\n  loops: {volatile: {get_patient: [nonce, /meta/ts]}}\n");
    static const char *const variants[][5] = {
        /* trailing and inner whitespace, Unicode spaces */
        {"{\"id\":\"P1\"}", "{\"id\":\"P1 \"}", "{\"id\":\" P1\"}", "{\"id\":\"P1\\u00a0\"}",
         "{\"id\":\"P1\\u200b\"}"},
        /* key order */
        {"{\"id\":\"P1\",\"f\":\"a\"}", "{\"f\":\"a\",\"id\":\"P1\"}",
         "{\"id\":\"P1\",\"f\":\"a\"}", "{\"f\":\"a \",\"id\":\"P1\"}",
         "{\"f\":\"a\",\"id\":\"P1\"}"},
        /* numbers by value */
        {"{\"id\":1}", "{\"id\":1.0}", "{\"id\":1e0}", "{\"id\":10e-1}", "{\"id\":1.00}"},
        /* a dummy counter and a timestamp, declared volatile */
        {"{\"id\":\"P1\",\"nonce\":1,\"meta\":{\"ts\":1}}",
         "{\"id\":\"P1\",\"nonce\":2,\"meta\":{\"ts\":2}}",
         "{\"id\":\"P1\",\"nonce\":\"three\",\"meta\":{\"ts\":3}}",
         "{\"meta\":{\"ts\":\"4\"},\"id\":\"P1\"}",
         "{\"id\":\"P1\",\"nonce\":5,\"meta\":{\"ts\":5}}"},
    };
    for (size_t k = 0; k < sizeof variants / sizeof variants[0]; k++) {
        struct limits_loops c = loops_cfg();
        c.no_progress = 0;
        c.near_identical = 0;
        struct loop_fx f = {
            .l = lloop_new(&c, 0), .now = 1000000000000LL, .lc = limits_config_of(cfg)};
        loop_user(&f, "u", "get_patient");
        /* Distinct results: only the identical rule can see these. */
        char res[16];
        for (int i = 0; i < 4; i++) {
            snprintf(res, sizeof res, "r%d", i);
            assert_int_equal(loop_call(&f, "get_patient", variants[k][i], res).flags, 0);
        }
        struct lloop_verdict v = loop_call(&f, "get_patient", variants[k][4], "r4");
        if (!(v.flags & GW_LOOP_IDENTICAL))
            fail_msg("variant set %zu was not seen as one call", k);
        lloop_free(f.l);
    }
    gw_config_free(cfg);

    /* A counter nobody declared: near-identical calls that keep getting the same answer. */
    struct limits_loops c = loops_cfg();
    c.no_progress = 0;
    struct loop_fx f = {.l = lloop_new(&c, 0), .now = 1000000000000LL};
    loop_user(&f, "u", "get_patient");
    char args[64];
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "{\"id\":\"P1\",\"attempt\":%d}", i);
        assert_int_equal(loop_call(&f, "get_patient", args, "same").flags, 0);
    }
    struct lloop_verdict v = loop_call(&f, "get_patient", "{\"id\":\"P1\",\"attempt\":4}", "same");
    assert_true(v.flags & GW_LOOP_NEAR_IDENTICAL);
    assert_int_equal(v.action, 1);
    /* ... and even with other calls in between. */
    lloop_free(f.l);
    f.l = lloop_new(&c, 0);
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "{\"id\":\"P1\",\"ts\":%d}", 1000 + i * 7);
        assert_int_equal(loop_call(&f, "get_patient", args, "same").flags, 0);
        snprintf(args, sizeof args, "{\"note\":\"n%d\"}", i);
        assert_int_equal(loop_call(&f, "add_note", args, "ok").flags, 0);
    }
    assert_true(loop_call(&f, "get_patient", "{\"id\":\"P1\",\"ts\":2000}", "same").flags &
                GW_LOOP_NEAR_IDENTICAL);
    lloop_free(f.l);
}

/* Legitimate work that looks alike is not a loop. */
static void test_loop_distinct_not_flagged(void **state)
{
    (void)state;
    struct limits_loops c = loops_cfg();
    struct loop_fx f = {.l = lloop_new(&c, 0), .now = 1000000000000LL};
    loop_user(&f, "u", "search");
    char args[96], res[32];
    /* Paging through one query: the numbers change, and so do the answers. */
    for (int page = 0; page < 40; page++) {
        snprintf(args, sizeof args, "{\"q\":\"cardiology\",\"page\":%d,\"size\":20}", page);
        snprintf(res, sizeof res, "hits page %d", page);
        assert_int_equal(loop_call(&f, "search", args, res).flags, 0);
    }
    /* Numeric record ids one after the other. */
    for (int id = 0; id < 40; id++) {
        snprintf(args, sizeof args, "{\"patient\":%d}", 1000 + id);
        snprintf(res, sizeof res, "record %d", 1000 + id);
        assert_int_equal(loop_call(&f, "get_patient", args, res).flags, 0);
    }
    /* Words that differ only where whitespace is not: distinct queries. */
    static const char *const q[] = {"heart rate",  "heartrate",    "Heart rate", "heart-rate",
                                    "heart rates", "heart  ratex", "hear trate", "heart rat e"};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        snprintf(args, sizeof args, "{\"q\":\"%s\"}", q[i]);
        assert_int_equal(loop_call(&f, "lookup", args, "same answer").flags, 0);
    }
    /* The same record read four times, each answer new: under every threshold. */
    for (int i = 0; i < 4; i++) {
        snprintf(res, sizeof res, "v%d", i);
        assert_int_equal(loop_call(&f, "get_lab", "{\"id\":\"L1\"}", res).flags, 0);
    }
    /* Near-identical calls whose answers change are progress. */
    for (int i = 0; i < 30; i++) {
        snprintf(args, sizeof args, "{\"job\":\"j1\",\"poll\":%d}", i);
        snprintf(res, sizeof res, "progress %d%%", i * 3);
        assert_int_equal(loop_call(&f, "job_status", args, res).flags, 0);
    }
    lloop_free(f.l);
}

/* ---- the pipeline slot ---- */

static struct gw_request *mkreq(const struct gw_config *cfg, const char *sub, const char *tenant,
                                const char *session)
{
    struct gw_request *req = gw_request_new(cfg);
    req->identity.verified = 1;
    req->identity.subject = strdup(sub);
    req->identity.tenant = tenant ? strdup(tenant) : NULL;
    req->identity.client_id = strdup("runtime");
    req->session_id = session ? strdup(session) : NULL;
    return req;
}

static struct gw_request *call(const struct gw_config *cfg, const char *sub, const char *tool,
                               const char *args)
{
    struct gw_request *req = mkreq(cfg, sub, "t1", NULL);
    char json[512];
    snprintf(json, sizeof json,
             "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"%s\","
             "\"arguments\":%s}}",
             tool, args);
    fx_req_add_message(req, json);
    return req;
}

static int check(struct gw_request *req)
{
    int v = limits_layer.check(req, &req->decision[GW_STAGE_LIMITS]);
    if (v == GW_DENY)
        req->deciding_stage = GW_STAGE_LIMITS;
    return v;
}

static const char *header(const struct gw_request *req, const char *name, char *buf, size_t n)
{
    for (size_t i = 0; i < req->n_response_headers; i++)
        if (gw_slice_casecmp_eq(req->response_headers[i].name, name)) {
            snprintf(buf, n, "%.*s", (int)req->response_headers[i].value.len,
                     req->response_headers[i].value.ptr);
            return buf;
        }
    return NULL;
}

/* The backend answered 200 with this message; the exchange ends. */
static void respond(struct gw_request *req, const char *json)
{
    json_t *msg = json_loads(json, 0, NULL);
    assert_non_null(msg);
    int modified = 0;
    struct gw_decision d = {0};
    req->upstream_sent = 1;
    req->upstream_status = 200;
    req->response_status = 200;
    assert_int_equal(limits_layer.on_response(req, msg, &modified, &d), GW_PASS);
    json_decref(msg);
    limits_layer.on_complete(req);
}

/* toolgate_limits_events_total{event="rate_denied"} as GET /metrics would show it. */
static uint64_t rate_denied_metric(const struct gw_config *cfg)
{
    struct gw_metrics_out out = {{0}};
    limits_metrics(cfg, &out);
    static const char series[] = "\ntoolgate_limits_events_total{event=\"rate_denied\"} ";
    const char *at = out.buf.data ? strstr(out.buf.data, series) : NULL;
    assert_non_null(at);
    uint64_t v = strtoull(at + sizeof series - 1, NULL, 10);
    assert_null(strstr(out.buf.data, "alice"));
    gw_buf_free(&out.buf);
    return v;
}

static void test_layer_rate(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("limits:\n  ledger: none\n  rate:\n"
                                       "    - {name: per-user, per: user, limit: 100, window: 1m}\n"
                                       "    - {name: search, per: user+tool, tools: [\"search_*\"],"
                                       " limit: 2, window: 10s}\n");
    assert_int_equal(limits_start(cfg), 0);
    char buf[512];
    for (int i = 0; i < 2; i++) {
        struct gw_request *req = call(cfg, "alice", "search_patients", "{\"query\":\"x\"}");
        assert_int_equal(check(req), GW_PASS);
        assert_string_equal(req->decision[GW_STAGE_LIMITS].reason_code, "limits.pass");
        assert_non_null(header(req, "RateLimit-Policy", buf, sizeof buf));
        assert_string_equal(buf, "\"per-user\";q=100;w=60, \"search\";q=2;w=10");
        assert_non_null(header(req, "RateLimit", buf, sizeof buf));
        assert_non_null(strstr(buf, i == 0 ? "\"search\";r=1;" : "\"search\";r=0;"));
        assert_int_equal(req->limits.rate_remaining, i == 0 ? 1 : 0);
        gw_request_free(req);
    }
    struct gw_request *req = call(cfg, "alice", "search_patients", "{\"query\":\"y\"}");
    assert_int_equal(check(req), GW_DENY);
    const struct gw_decision *d = &req->decision[GW_STAGE_LIMITS];
    assert_string_equal(d->reason_code, "limits.rate");
    assert_int_equal(d->http_status, 200);
    assert_int_equal(d->jsonrpc_code, 0);
    assert_string_equal(d->rule_id, "search");
    assert_true(d->retry_after_ms > 4000 && d->retry_after_ms <= 5000);
    assert_non_null(header(req, "RateLimit", buf, sizeof buf));
    assert_non_null(strstr(buf, "\"search\";r=0;t=5"));
    /* Counted for metrics when the request completes, under a label that names no one. */
    uint64_t denied = rate_denied_metric(cfg);
    req->deciding_stage = GW_STAGE_LIMITS;
    limits_layer.on_complete(req);
    assert_int_equal(rate_denied_metric(cfg), denied + 1);
    gw_request_free(req);
    /* Bob, and Alice's other tools, are not affected. */
    req = call(cfg, "bob", "search_patients", "{}");
    assert_int_equal(check(req), GW_PASS);
    gw_request_free(req);
    req = call(cfg, "alice", "get_patient", "{}");
    assert_int_equal(check(req), GW_PASS);
    gw_request_free(req);
    /* Not a tool call: not governed. */
    req = mkreq(cfg, "alice", NULL, NULL);
    fx_req_add_message(req, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}");
    assert_int_equal(check(req), GW_PASS);
    assert_string_equal(req->decision[GW_STAGE_LIMITS].reason_code, "limits.not_governed");
    gw_request_free(req);
    limits_stop();
    gw_config_free(cfg);
}

/*
 * A ledger holding the spend of more principals than the budget table has room for does not
 * start: the rows that did not fit would be fresh budgets.
 */
static void test_ledger_larger_than_max_keys(void **state)
{
    (void)state;
    char path[128], yaml[512];
    snprintf(path, sizeof path, "%s/big-ledger.db", tmpdir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE limits_spend(budget TEXT NOT NULL, key TEXT NOT "
                                  "NULL, period INTEGER NOT NULL, expires INTEGER NOT NULL, "
                                  "amount INTEGER NOT NULL, PRIMARY KEY(budget, key, period)) "
                                  "WITHOUT ROWID;"
                                  "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                                  "WHERE i < 1500) INSERT INTO limits_spend SELECT 'daily', "
                                  "'user:u' || i, 1, 4102444800, 500000 FROM n;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    for (int big = 0; big < 2; big++) {
        snprintf(yaml, sizeof yaml,
                 "limits:\n  ledger: \"sqlite:%s\"\n  max_keys: %d\n"
                 "  costs: {default: 0.10}\n"
                 "  budgets: [{name: daily, per: user, cap: 2.00, period: day}]\n",
                 path, big ? 4000 : 1000);
        struct gw_config *cfg = fx_load_ok(yaml);
        assert_int_equal(limits_start(cfg), big ? 0 : -ENOSPC);
        if (big)
            limits_stop();
        gw_config_free(cfg);
    }
}

static void test_layer_budget_settle_refund(void **state)
{
    (void)state;
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "limits:\n  ledger: \"sqlite:%s/ledger.db\"\n"
             "  costs: {default: 0.10, charge_card: 1.00}\n"
             "  budgets: [{name: daily, per: user, cap: 2.00, period: day},\n"
             "            {name: tenant, per: tenant, cap: 100, period: month}]\n",
             tmpdir);
    struct gw_config *cfg = fx_load_ok(yaml);
    assert_int_equal(limits_start(cfg), 0);
    /* A charge reports its actual cost: 0.25 instead of the 1.00 estimate. */
    struct gw_request *req = call(cfg, "carol", "charge_card", "{\"amount\":25}");
    assert_int_equal(check(req), GW_PASS);
    assert_int_equal(req->limits.cost_estimated, 1000000);
    assert_int_equal(req->limits.cost_reserved, 2000000); /* both budgets */
    assert_string_equal(req->limits.budget_name, "daily");
    assert_int_equal(req->limits.budget_remaining, 1000000);
    respond(req, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[],"
                 "\"_meta\":{\"toolgate/cost\":0.25}}}");
    assert_true(req->limits.settled);
    assert_true(req->limits.cost_reported);
    assert_int_equal(req->limits.cost_settled, 250000);
    gw_request_free(req);
    /* The backend could not be reached: nothing was sent, refund. */
    req = call(cfg, "carol", "charge_card", "{\"amount\":25}");
    assert_int_equal(check(req), GW_PASS);
    req->upstream_status = 502;
    limits_layer.on_complete(req);
    assert_true(req->limits.refunded);
    gw_request_free(req);
    /* A JSON-RPC error that reports the work cost nothing is charged nothing. */
    req = call(cfg, "carol", "charge_card", "{\"amount\":25}");
    assert_int_equal(check(req), GW_PASS);
    respond(req, "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32000,\"message\":\"x\","
                 "\"data\":{\"_meta\":{\"toolgate/cost\":0}}}}");
    assert_int_equal(req->limits.cost_settled, 0);
    assert_true(req->limits.cost_reported);
    gw_request_free(req);
    /* A later layer denied it: it never left, refund. */
    req = call(cfg, "carol", "charge_card", "{\"amount\":25}");
    assert_int_equal(check(req), GW_PASS);
    req->deciding_stage = GW_STAGE_ROUTING;
    limits_layer.on_complete(req);
    assert_true(req->limits.refunded);
    gw_request_free(req);
    /* Spent 0.25 of 2.00: one more charge (1.00) fits, a second does not. */
    req = call(cfg, "carol", "charge_card", "{}");
    assert_int_equal(check(req), GW_PASS);
    respond(req, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}");
    assert_int_equal(req->limits.cost_settled, 1000000);
    gw_request_free(req);
    req = call(cfg, "carol", "charge_card", "{}");
    assert_int_equal(check(req), GW_DENY);
    const struct gw_decision *d = &req->decision[GW_STAGE_LIMITS];
    assert_string_equal(d->reason_code, "limits.budget");
    assert_string_equal(d->rule_id, "daily");
    assert_int_equal(d->http_status, 200);
    assert_true(d->retry_after_ms > 0 && d->retry_after_ms <= 86400000);
    assert_non_null(strstr(d->reason, "1.25 of 2 used"));
    assert_int_equal(req->limits.budget_remaining, 750000);
    limits_layer.on_complete(req); /* a denied call has nothing to settle */
    assert_false(req->limits.settled);
    gw_request_free(req);
    /* Cheaper calls still fit. */
    req = call(cfg, "carol", "whoami", "{}");
    assert_int_equal(check(req), GW_PASS);
    gw_request_free(req); /* never completed: the reservation stays counted */
    limits_stop();
    /* Restarting reads the spend back: 1.25 + 0.10 unsettled. */
    assert_int_equal(limits_start(cfg), 0);
    req = call(cfg, "carol", "charge_card", "{}");
    assert_int_equal(check(req), GW_DENY);
    assert_int_equal(req->limits.budget_remaining, 650000);
    gw_request_free(req);
    limits_stop();
    gw_config_free(cfg);
}

/* Ends the exchange without an answer from the backend: what the core knows is all it has. */
static void end_unanswered(struct gw_request *req, int sent, int upstream_status,
                           const char *upstream_error)
{
    req->upstream_sent = sent;
    req->upstream_status = upstream_status;
    snprintf(req->upstream_error, sizeof req->upstream_error, "%s", upstream_error);
    limits_layer.on_complete(req);
}

static int64_t settle_one(const struct gw_config *cfg, const char *sub,
                          void (*end)(struct gw_request *))
{
    struct gw_request *req = call(cfg, sub, "charge_card", "{}");
    assert_int_equal(check(req), GW_PASS);
    end(req);
    assert_true(req->limits.settled);
    int64_t settled = req->limits.cost_settled;
    gw_request_free(req);
    return settled;
}

static void end_client_gone(struct gw_request *req)
{
    req->response_status = 499; /* the client hung up while the backend worked */
    end_unanswered(req, 1, 0, "");
}

static void end_timeout(struct gw_request *req)
{
    end_unanswered(req, 1, 0, "upstream.timeout");
}

static void end_5xx(struct gw_request *req)
{
    end_unanswered(req, 1, 503, "");
}

static void end_5xx_reported(struct gw_request *req)
{
    /* A 500 whose body is a JSON-RPC error telling what the failed work cost. */
    json_t *msg = json_loads("{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32603,\"message\":"
                             "\"boom\",\"data\":{\"_meta\":{\"toolgate/cost\":\"0.05\"}}}}",
                             0, NULL);
    int mod = 0;
    struct gw_decision d = {0};
    limits_layer.on_response(req, msg, &mod, &d);
    json_decref(msg);
    end_unanswered(req, 1, 500, "");
}

static void end_rpc_error(struct gw_request *req)
{
    respond(req, "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32000,\"message\":\"x\"}}");
}

static void end_cut_short(struct gw_request *req)
{
    end_unanswered(req, 1, 200, "upstream.lost");
}

static void end_connect_failed(struct gw_request *req)
{
    end_unanswered(req, 0, 0, "upstream.connect");
}

static void end_connect_timeout(struct gw_request *req)
{
    end_unanswered(req, 0, 0, "upstream.timeout");
}

static void end_denied_later(struct gw_request *req)
{
    req->deciding_stage = GW_STAGE_ROUTING;
    end_unanswered(req, 0, 0, "");
}

static void end_reported_lower(struct gw_request *req)
{
    respond(req, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[],"
                 "\"_meta\":{\"toolgate/cost\":0.25}}}");
}

static void end_reported_other_id(struct gw_request *req)
{
    /* A report for another call is not this call's. */
    respond(req, "{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{\"content\":[],"
                 "\"_meta\":{\"toolgate/cost\":0}}}");
}

static void end_report_malformed(struct gw_request *req)
{
    respond(req, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[],"
                 "\"_meta\":{\"toolgate/cost\":\"-1\"}}}");
}

/*
 * Spend refunded by hanging up: once a call was sent, it is charged its estimate whatever
 * became of the answer, unless the backend reports the cost; a call that never left is not.
 */
static void test_layer_charge_once_sent(void **state)
{
    (void)state;
    char yaml[512];
    snprintf(
        yaml, sizeof yaml,
        "limits:\n  ledger: \"sqlite:%s/sent.db\"\n  costs: {default: 0.01, charge_card: 1.00}\n"
        "  budgets: [{name: daily, per: user, cap: 3.00, period: day}]\n",
        tmpdir);
    struct gw_config *cfg = fx_load_ok(yaml);
    assert_int_equal(limits_start(cfg), 0);
    static const struct {
        void (*end)(struct gw_request *);
        int64_t charged;
    } cases[] = {
        {end_client_gone, 1000000},
        {end_timeout, 1000000},
        {end_5xx, 1000000},
        {end_5xx_reported, 50000},
        {end_rpc_error, 1000000},
        {end_cut_short, 1000000},
        {end_connect_failed, 0},
        {end_connect_timeout, 0},
        {end_denied_later, 0},
        {end_reported_lower, 250000},
        {end_reported_other_id, 1000000},
        {end_report_malformed, 1000000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char user[16];
        snprintf(user, sizeof user, "u%zu", i);
        int64_t got = settle_one(cfg, user, cases[i].end);
        if (got != cases[i].charged)
            fail_msg("case %zu: charged %lld, expected %lld", i, (long long)got,
                     (long long)cases[i].charged);
    }
    /* Three calls hung up on after they were sent exhaust a budget of three: the fourth is
     * refused before it is sent, and the spend survives a restart. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(settle_one(cfg, "mallory", end_client_gone), 1000000);
    struct gw_request *req = call(cfg, "mallory", "charge_card", "{}");
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_LIMITS].reason_code, "limits.budget");
    gw_request_free(req);
    limits_stop();
    assert_int_equal(limits_start(cfg), 0);
    req = call(cfg, "mallory", "charge_card", "{}");
    assert_int_equal(check(req), GW_DENY);
    assert_int_equal(req->limits.budget_remaining, 0);
    gw_request_free(req);
    /* Connection failures do not: a user whose calls never left keeps the budget. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(settle_one(cfg, "oscar", end_connect_failed), 0);
    req = call(cfg, "oscar", "charge_card", "{}");
    assert_int_equal(check(req), GW_PASS);
    assert_int_equal(req->limits.budget_remaining, 2000000);
    gw_request_free(req);

    /* A batch sent and cut off: the call answered with a lower report pays that, the one
     * left without an answer pays its estimate. */
    req = mkreq(cfg, "batchy", NULL, NULL);
    for (int i = 0; i < 2; i++) {
        char j[200];
        snprintf(j, sizeof j,
                 "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{\"name\":"
                 "\"charge_card\",\"arguments\":{}}}",
                 i);
        fx_req_add_message(req, j);
    }
    assert_int_equal(check(req), GW_PASS);
    json_t *msg = json_loads("[{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"content\":[],"
                             "\"_meta\":{\"toolgate/cost\":0.1}}}]",
                             0, NULL);
    int mod = 0;
    struct gw_decision d = {0};
    limits_layer.on_response(req, msg, &mod, &d);
    json_decref(msg);
    end_unanswered(req, 1, 200, "upstream.lost");
    assert_int_equal(req->limits.cost_settled, 1100000);
    gw_request_free(req);
    limits_stop();
    gw_config_free(cfg);
}

/* The layer with volatile members, and a call that keeps failing the same way. */
static void test_layer_loop_volatile_and_errors(void **state)
{
    (void)state;
    struct gw_config *cfg =
        fx_load_ok("limits:\n  loops: {identical: 3, no_progress: 2, near_identical: 0,"
                   " warnings: 0, volatile: {\"get_*\": [request_id]}}\n");
    assert_int_equal(limits_start(cfg), 0);
    static const char *const args[] = {"{\"patient_id\":\"P1\",\"request_id\":\"a\"}",
                                       "{\"request_id\":\"b\",\"patient_id\":\"P1 \"}",
                                       "{\"patient_id\":\"P1\",\"request_id\":3}"};
    for (int i = 0; i < 3; i++) {
        struct gw_request *req = call(cfg, "vic", "get_patient", args[i]);
        int v = check(req);
        if (i < 2) {
            assert_int_equal(v, GW_PASS);
            char res[96];
            snprintf(res, sizeof res,
                     "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"text\","
                     "\"text\":\"r%d\"}]}}",
                     i);
            respond(req, res);
        } else {
            assert_int_equal(v, GW_DENY);
            assert_string_equal(req->decision[GW_STAGE_LIMITS].reason_code, "limits.loop");
            assert_true(req->limits.loop_flags & GW_LOOP_IDENTICAL);
        }
        gw_request_free(req);
    }
    /* The same error back to back is no progress. */
    for (int i = 0; i < 3; i++) {
        struct gw_request *req = call(cfg, "wes", "update", "{\"x\":1}");
        int v = check(req);
        if (i < 2) {
            assert_int_equal(v, GW_PASS);
            respond(req, "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32000,\"message\":"
                         "\"locked\"}}");
        } else {
            assert_int_equal(v, GW_DENY);
            assert_true(req->limits.loop_flags & GW_LOOP_NO_PROGRESS);
        }
        gw_request_free(req);
    }
    limits_stop();
    gw_config_free(cfg);
}

static void test_layer_loop_warn_deny(void **state)
{
    (void)state;
    struct gw_config *cfg =
        fx_load_ok("limits:\n  loops: {identical: 3, no_progress: 0, warnings: 1,"
                   " cooldown: 10s}\n");
    assert_int_equal(limits_start(cfg), 0);
    char buf[256];
    for (int i = 0; i < 2; i++) {
        struct gw_request *req = call(cfg, "dave", "get_patient", "{\"patient_id\":\"P1\"}");
        assert_int_equal(check(req), GW_PASS);
        assert_null(header(req, "Toolgate-Warning", buf, sizeof buf));
        gw_request_free(req);
    }
    struct gw_request *req = call(cfg, "dave", "get_patient", "{\"patient_id\":\"P1\"}");
    assert_int_equal(check(req), GW_PASS);
    assert_non_null(header(req, "Toolgate-Warning", buf, sizeof buf));
    assert_string_equal(buf, "limits.loop; flags=\"identical\"");
    assert_int_equal(req->limits.loop_action, 1);
    /* The warning reaches the model in the result's _meta. */
    json_t *msg = json_loads("{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}", 0, NULL);
    int modified = 0;
    struct gw_decision d = {0};
    limits_layer.on_response(req, msg, &modified, &d);
    assert_true(modified);
    json_t *w = json_object_get(json_object_get(json_object_get(msg, "result"), "_meta"),
                                "toolgate/warning");
    assert_string_equal(json_string_value(json_object_get(w, "reason")), "limits.loop");
    json_decref(msg);
    gw_request_free(req);
    req = call(cfg, "dave", "get_patient", "{\"patient_id\":\"P1\"}");
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_LIMITS].reason_code, "limits.loop");
    assert_int_equal(req->decision[GW_STAGE_LIMITS].retry_after_ms, 10000);
    assert_int_equal(req->limits.loop_action, 2);
    gw_request_free(req);
    limits_stop();
    gw_config_free(cfg);
}

static void test_layer_no_section_and_not_started(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server: {workers: 1}\n");
    struct gw_request *req = call(cfg, "erin", "x", "{}");
    assert_int_equal(check(req), GW_PASS);
    assert_string_equal(req->decision[GW_STAGE_LIMITS].reason_code, "limits.none");
    gw_request_free(req);
    gw_config_free(cfg);
    /* A limits section without a running runtime fails closed. */
    cfg = fx_load_ok("limits: {rate: [{per: user, limit: 1, window: 1s}]}\n");
    req = call(cfg, "erin", "x", "{}");
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_LIMITS].reason_code, "limits.unavailable");
    assert_int_equal(req->decision[GW_STAGE_LIMITS].http_status, 503);
    gw_request_free(req);
    gw_config_free(cfg);
}

static void test_layer_batch(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("limits:\n  ledger: none\n"
                                       "  rate: [{name: u, per: user, limit: 3, window: 1m}]\n");
    assert_int_equal(limits_start(cfg), 0);
    struct gw_request *req = mkreq(cfg, "fay", NULL, NULL);
    for (int i = 0; i < 2; i++) {
        char j[200];
        snprintf(j, sizeof j,
                 "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{\"name\":"
                 "\"t%d\",\"arguments\":{}}}",
                 i, i);
        fx_req_add_message(req, j);
    }
    assert_int_equal(check(req), GW_PASS);
    assert_int_equal(req->limits.rate_remaining, 1);
    gw_request_free(req);
    /* A batch of two no longer fits in the one remaining: denied, and nothing consumed. */
    req = mkreq(cfg, "fay", NULL, NULL);
    for (int i = 0; i < 2; i++) {
        char j[200];
        snprintf(j, sizeof j,
                 "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{\"name\":"
                 "\"t\",\"arguments\":{}}}",
                 i);
        fx_req_add_message(req, j);
    }
    assert_int_equal(check(req), GW_DENY);
    gw_request_free(req);
    req = call(cfg, "fay", "t", "{}");
    assert_int_equal(check(req), GW_PASS);
    gw_request_free(req);
    limits_stop();
    gw_config_free(cfg);
}

/* The audit records carry what the layer decided; nothing when it did not look. */
static void test_audit_part(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("limits:\n  ledger: none\n  costs: {default: 0.5}\n"
                                       "  budgets: [{name: d, per: user, cap: 1, period: day}]\n"
                                       "  rate: [{name: r, per: user, limit: 5, window: 1s}]\n");
    assert_int_equal(limits_start(cfg), 0);
    struct audit_config ac;
    assert_int_equal(audit_config_defaults(&ac), 0);
    struct gw_request *req = call(cfg, "hal", "t", "{}");
    assert_int_equal(check(req), GW_PASS);
    respond(req, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[],"
                 "\"_meta\":{\"toolgate/cost\":\"0.2\"}}}");
    json_t *rec = audit_record_completion(req, &ac, NULL);
    json_t *l = json_object_get(rec, "limits");
    assert_non_null(l);
    assert_int_equal(json_integer_value(json_object_get(l, "cost_estimated")), 500000);
    assert_int_equal(json_integer_value(json_object_get(l, "cost_reserved")), 500000);
    assert_int_equal(json_integer_value(json_object_get(l, "cost_settled")), 200000);
    assert_true(json_is_true(json_object_get(l, "cost_reported")));
    assert_string_equal(json_string_value(json_object_get(l, "budget")), "d");
    assert_int_equal(json_integer_value(json_object_get(l, "budget_remaining")), 500000);
    assert_string_equal(json_string_value(json_object_get(l, "rate_limit")), "r");
    assert_int_equal(json_integer_value(json_object_get(l, "rate_remaining")), 4);
    assert_string_equal(json_string_value(json_object_get(l, "store")), "memory");
    json_decref(rec);
    gw_request_free(req);
    req = mkreq(cfg, "hal", NULL, NULL);
    fx_req_add_message(req, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
    assert_int_equal(check(req), GW_PASS);
    rec = audit_record_decision(req, &ac);
    assert_null(json_object_get(rec, "limits"));
    json_decref(rec);
    gw_request_free(req);
    free(ac.store);
    free(ac.instance_id);
    limits_stop();
    gw_config_free(cfg);
}

/*
 * kill -9 loses no recorded spend: a child reserves and settles, tells the parent, and is
 * killed before it can stop cleanly; the parent starts over from the same ledger.
 */
static void test_ledger_survives_kill(void **state)
{
    (void)state;
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "limits:\n  ledger: \"sqlite:%s/kill.db\"\n  costs: {default: 0.30}\n"
             "  budgets: [{name: d, per: user, cap: 1.00, period: day}]\n",
             tmpdir);
    struct gw_config *cfg = fx_load_ok(yaml);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (limits_start(cfg) != 0)
            _exit(2);
        /* One settled call (reported 0.20), one reserved and never settled (0.30). */
        struct gw_request *req = call(cfg, "gil", "t", "{}");
        if (check(req) != GW_PASS)
            _exit(3);
        respond(req, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[],"
                     "\"_meta\":{\"toolgate/cost\":0.2}}}");
        req = call(cfg, "gil", "t", "{}");
        if (check(req) != GW_PASS)
            _exit(4);
        if (write(fds[1], "k", 1) != 1)
            _exit(5);
        for (;;)
            pause();
    }
    close(fds[1]);
    fx_kill9_when_ready(pid, fds[0]);
    assert_int_equal(limits_start(cfg), 0);
    /* 0.50 recorded: one more 0.30 call fits, the next does not. */
    struct gw_request *req = call(cfg, "gil", "t", "{}");
    assert_int_equal(check(req), GW_PASS);
    assert_int_equal(req->limits.budget_remaining, 200000);
    gw_request_free(req);
    req = call(cfg, "gil", "t", "{}");
    assert_int_equal(check(req), GW_DENY);
    gw_request_free(req);
    limits_stop();
    gw_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_full),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_money_and_costs),
        cmocka_unit_test(test_periods),
        cmocka_unit_test(test_gcra_properties),
        cmocka_unit_test(test_store_retry_after_ms),
        cmocka_unit_test(test_store_all_or_nothing),
        cmocka_unit_test(test_store_bound_never_evicts_live),
        cmocka_unit_test(test_store_sweep_spares_the_operations_keys),
        cmocka_unit_test(test_loop_tracked_bound),
        cmocka_unit_test(test_budget_concurrency),
        cmocka_unit_test(test_store_memory_bound),
        cmocka_unit_test(test_loop_identical_and_escalation),
        cmocka_unit_test(test_loop_no_progress_and_cycles),
        cmocka_unit_test(test_loop_benign_corpus),
        cmocka_unit_test(test_canon_strings),
        cmocka_unit_test(test_canon_fingerprints),
        cmocka_unit_test(test_loop_evasions_caught),
        cmocka_unit_test(test_loop_distinct_not_flagged),
        cmocka_unit_test(test_layer_rate),
        cmocka_unit_test(test_layer_budget_settle_refund),
        cmocka_unit_test(test_layer_charge_once_sent),
        cmocka_unit_test(test_layer_loop_warn_deny),
        cmocka_unit_test(test_layer_loop_volatile_and_errors),
        cmocka_unit_test(test_layer_no_section_and_not_started),
        cmocka_unit_test(test_layer_batch),
        cmocka_unit_test(test_audit_part),
        cmocka_unit_test(test_ledger_survives_kill),
        cmocka_unit_test(test_ledger_larger_than_max_keys),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
