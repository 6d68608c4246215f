/*
 * Tests for the limits module's admin API topic "spend" and the per-tenant spend metric
 * (limits_admin.c): who settled a cost is listed under each budget with the spend the store
 * holds for the period, parameters are checked, and the metric names at most ten tenants, the
 * rest summed as "other", never a user.
 */
#include "fixtures.h"

#include "layers/limits/limits.h"
#include "lib/metrics.h"

static const char *CFG =
    "limits:\n"
    "  ledger: none\n"
    "  costs: {default: 0.5}\n"
    "  budgets: [{name: user-daily, per: user, cap: 5, period: day}, {name: tenant-month, per: "
    "tenant, cap: 100, period: month}]\n";

static void settle(const char *user, const char *tenant, int64_t micro)
{
    struct gw_request req;
    memset(&req, 0, sizeof req);
    req.identity.subject = (char *)user;
    req.identity.tenant = (char *)tenant;
    req.limits.governed = 1;
    req.limits.settled = 1;
    req.limits.cost_settled = micro;
    limits_admin_note(&req);
}

static void test_spend_lists_budgets_and_spenders(void **state)
{
    (void)state;
    limits_admin_reset();
    struct gw_config *cfg = fx_load_ok(CFG);
    assert_int_equal(limits_start(cfg), 0);
    settle("alice", "clinic-1", 500000);
    settle("bob", "clinic-1", 250000);
    json_t *p = json_object(), *out = NULL;
    assert_int_equal(limits_admin_api(cfg, "spend", p, &out), 200);
    json_t *budgets = json_object_get(out, "budgets");
    assert_int_equal(json_array_size(budgets), 2);
    json_t *user = json_array_get(budgets, 0);
    assert_string_equal(json_string_value(json_object_get(user, "per")), "user");
    assert_int_equal(json_integer_value(json_object_get(user, "cap_micro")), 5000000);
    assert_int_equal(json_array_size(json_object_get(user, "spenders")), 2);
    json_t *tenant = json_array_get(budgets, 1);
    json_t *t0 = json_array_get(json_object_get(tenant, "spenders"), 0);
    assert_string_equal(json_string_value(json_object_get(t0, "name")), "clinic-1");
    json_decref(out);
    json_object_set_new(p, "name", json_string("alice"));
    assert_int_equal(limits_admin_api(cfg, "spend", p, &out), 200);
    user = json_array_get(json_object_get(out, "budgets"), 0);
    assert_int_equal(json_array_size(json_object_get(user, "spenders")), 1);
    json_decref(out);
    json_decref(p);
    limits_stop();
    gw_config_free(cfg);
}

static void test_spend_parameters(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok(CFG);
    const char *bad[][2] = {{"limit", "0"}, {"limit", "101"}, {"limit", "x"}, {"who", "a"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *p = json_pack("{s:s}", bad[i][0], bad[i][1]), *out = NULL;
        assert_int_equal(limits_admin_api(cfg, "spend", p, &out), 400);
        assert_non_null(json_string_value(json_object_get(out, "error")));
        json_decref(out);
        json_decref(p);
    }
    json_t *p = json_object(), *out = NULL;
    assert_int_equal(limits_admin_api(cfg, "decisions", p, &out), 0);
    gw_config_free(cfg);
    /* No limits section: answered, and it says why nothing is there. */
    cfg = fx_load_ok("server: {workers: 1}\n");
    assert_int_equal(limits_admin_api(cfg, "spend", p, &out), 200);
    assert_true(json_is_false(json_object_get(out, "configured")));
    assert_non_null(json_object_get(out, "note"));
    json_decref(out);
    json_decref(p);
    gw_config_free(cfg);
}

static void test_tenant_metric_is_bounded(void **state)
{
    (void)state;
    limits_admin_reset();
    for (int i = 0; i < 25; i++) {
        char tenant[32];
        snprintf(tenant, sizeof tenant, "t%02d", i);
        settle("user-secret-id", tenant, (int64_t)(i + 1) * 1000000);
    }
    struct gw_metrics_out out = {{0}};
    limits_admin_metrics(&out);
    const char *text = out.buf.data;
    assert_int_equal(fx_count_substr(text, "toolgate_limits_tenant_spend_total{"), 11);
    assert_non_null(strstr(text, "tenant=\"t24\"} 25"));
    assert_non_null(strstr(text, "tenant=\"t15\"} 16"));
    assert_null(strstr(text, "tenant=\"t14\""));
    /* 1 + 2 + ... + 15 = 120 units for the tenants not named. */
    assert_non_null(strstr(text, "tenant=\"other\"} 120"));
    assert_null(strstr(text, "user-secret-id"));
    gw_buf_free(&out.buf);
    limits_admin_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spend_lists_budgets_and_spenders),
        cmocka_unit_test(test_spend_parameters),
        cmocka_unit_test(test_tenant_metric_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
