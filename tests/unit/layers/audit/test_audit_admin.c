/*
 * Tests for the audit module's admin API topics (audit_admin.c) against a real SQLite store
 * written by the real writer: decisions filtered and paged newest first, the summary's
 * counts, the chain status with a verification, and 400 for every bad parameter before the
 * store is touched.
 */
#include "audit_fixtures.h"

#include "layers/modules.h"

#include <sqlite3.h>

struct fx {
    char dir[256];
    struct audit_config *ac;
    struct gw_config cfg;
};

static json_t *record(const char *subject, const char *tool, const char *decision)
{
    json_t *r =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:[{s:s, s:i, s:s, s:s}]}", "kind", "decision",
                  "subject", subject, "tool", tool, "decision", decision, "tenant", "clinic-7",
                  "pii", "type", "ssn", "count", 2, "path", "/params/arguments/x", "action", "log");
    char rid[37];
    gw_uuid7(rid);
    json_object_set_new(r, "request_id", json_string(rid));
    json_object_set_new(r, "arguments", json_pack("{s:s}", "x", "secret-argument-value"));
    if (strcmp(decision, "deny") == 0) {
        json_object_set_new(r, "layer", json_string("limits"));
        json_object_set_new(r, "reason_code", json_string("limits.rate"));
    }
    return r;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    fx_mkdtemp(f->dir, sizeof f->dir);
    f->ac = make_test_config(f->dir, "a.db", 1000, 1000, 1024);
    f->cfg.modules[GW_STAGE_AUDIT] = f->ac;
    assert_int_equal(audit_writer_start(f->ac, NULL), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(audit_submit(record("alice", "get_patient", "allow")), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(audit_submit(record("bob", "delete_patient", "deny")), 0);
    assert_int_equal(audit_flush(), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    audit_stop();
    audit_config_free(f->ac);
    fx_rmtree(f->dir);
    free(f);
    return 0;
}

static json_t *params(const char *k1, const char *v1, const char *k2, const char *v2)
{
    json_t *p = json_object();
    if (k1)
        json_object_set_new(p, k1, json_string(v1));
    if (k2)
        json_object_set_new(p, k2, json_string(v2));
    return p;
}

static json_t *ask(struct fx *f, const char *topic, json_t *p, int want)
{
    json_t *out = NULL;
    int got = audit_admin_api(&f->cfg, topic, p, &out);
    json_decref(p);
    if (got != want) {
        char *t = out ? json_dumps(out, 0) : NULL;
        fail_msg("%s: %d, want %d (%s)", topic, got, want, t ? t : "");
    }
    return out;
}

static void test_decisions_filtered_and_paged(void **state)
{
    struct fx *f = *state;
    json_t *out = ask(f, "decisions", params("decision", "deny", NULL, NULL), 200);
    json_t *list = json_object_get(out, "decisions");
    assert_int_equal(json_array_size(list), 3);
    json_t *d = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(d, "tool")), "delete_patient");
    assert_string_equal(json_string_value(json_object_get(d, "reason")), "limits.rate");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "pii"), "ssn")), 2);
    char *text = json_dumps(out, 0);
    assert_null(strstr(text, "secret-argument-value"));
    assert_null(strstr(text, "/params/arguments"));
    free(text);
    json_decref(out);

    out = ask(f, "decisions", params("user", "alice", "tool", "get_*"), 200);
    assert_int_equal(json_array_size(json_object_get(out, "decisions")), 5);
    json_decref(out);

    out = ask(f, "decisions", params("limit", "3", NULL, NULL), 200);
    list = json_object_get(out, "decisions");
    assert_int_equal(json_array_size(list), 3);
    json_int_t s0 = json_integer_value(json_object_get(json_array_get(list, 0), "seq"));
    json_int_t s2 = json_integer_value(json_object_get(json_array_get(list, 2), "seq"));
    assert_true(s0 > s2);
    json_int_t next = json_integer_value(json_object_get(out, "next_before"));
    assert_int_equal(next, s2);
    json_decref(out);
    char before[32];
    snprintf(before, sizeof before, "%lld", (long long)next);
    out = ask(f, "decisions", params("limit", "100", "before", before), 200);
    assert_int_equal(json_array_size(json_object_get(out, "decisions")), 5);
    assert_null(json_object_get(out, "next_before"));
    json_decref(out);
}

static void test_summary_counts(void **state)
{
    struct fx *f = *state;
    json_t *out = ask(f, "summary", params("since", "1h", NULL, NULL), 200);
    json_t *totals = json_object_get(out, "totals");
    assert_int_equal(json_integer_value(json_object_get(totals, "calls")), 8);
    assert_int_equal(json_integer_value(json_object_get(totals, "denied")), 3);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(out, "denials_by_layer"), "limits")), 3);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(out, "limits_events"), "rate_limited")),
        3);
    json_t *pii = json_array_get(json_object_get(out, "pii_by_type"), 0);
    assert_string_equal(json_string_value(json_object_get(pii, "type")), "ssn");
    assert_int_equal(json_integer_value(json_object_get(pii, "count")), 16);
    json_t *top = json_array_get(json_object_get(out, "top_tools"), 0);
    assert_string_equal(json_string_value(json_object_get(top, "tool")), "get_patient");
    json_t *series = json_object_get(json_object_get(out, "series"), "points");
    json_int_t allowed = 0;
    size_t i;
    json_t *p;
    json_array_foreach(series, i, p) allowed += json_integer_value(json_object_get(p, "allowed"));
    assert_int_equal(allowed, 5);
    json_decref(out);
}

static void test_chain_status_and_verify(void **state)
{
    struct fx *f = *state;
    json_t *out = ask(f, "audit", params(NULL, NULL, NULL, NULL), 200);
    assert_true(json_is_true(json_object_get(json_object_get(out, "writer"), "running")));
    assert_true(json_integer_value(json_object_get(json_object_get(out, "head"), "seq")) >= 9);
    json_decref(out);
    out = ask(f, "audit", params("verify", "1", NULL, NULL), 200);
    json_t *v = json_object_get(out, "verify");
    assert_string_equal(json_string_value(json_object_get(v, "state")), "intact");
    assert_true(json_object_get(out, "last_checkpoint") != NULL);
    json_decref(out);
}

/* A record edited in the store after the fact: the verification says the chain is broken. */
static void test_verify_finds_tampering(void **state)
{
    struct fx *f = *state;
    audit_stop();
    char db[512];
    snprintf(db, sizeof db, "%s/a.db", f->dir);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h,
                                  "UPDATE audit_records SET record = replace(record, 'bob', "
                                  "'eve') WHERE subject = 'bob'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(h);
    json_t *out = ask(f, "audit", params("verify", "1", NULL, NULL), 200);
    json_t *v = json_object_get(out, "verify");
    assert_string_equal(json_string_value(json_object_get(v, "state")), "not_intact");
    assert_non_null(json_string_value(json_object_get(v, "problem")));
    json_decref(out);
}

/*
 * A compact store keeps stats day counters beside the records; the verification compares
 * them as `toolgate audit verify` does: intact at first, then a counter edited in the store
 * leaves the chain intact and the outcome not intact, naming the counters.
 */
static void test_verify_compares_day_counters(void **state)
{
    struct fx *f = *state;
    audit_stop();
    free(f->ac->store);
    char url[600], db[512];
    snprintf(db, sizeof db, "%s/compact.db", f->dir);
    snprintf(url, sizeof url, "sqlite:%s", db);
    f->ac->store = strdup(url);
    f->ac->store_format = AUDIT_FORMAT_COMPACT;
    assert_int_equal(audit_writer_start(f->ac, NULL), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(
            audit_submit(record(i % 2 ? "alice" : "bob", "get_patient", i % 3 ? "allow" : "deny")),
            0);
    assert_int_equal(audit_flush(), 0);
    json_t *out = ask(f, "audit", params("verify", "1", NULL, NULL), 200);
    json_t *v = json_object_get(out, "verify");
    assert_string_equal(json_string_value(json_object_get(v, "state")), "intact");
    assert_string_equal(json_string_value(json_object_get(v, "chain")), "intact");
    assert_string_equal(json_string_value(json_object_get(v, "counters")), "intact");
    json_decref(out);

    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(h, "UPDATE audit_rollup SET n = n + 1 WHERE dim = 3", NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_changes(h), 2);
    sqlite3_close(h);
    out = ask(f, "audit", params("verify", "1", NULL, NULL), 200);
    v = json_object_get(out, "verify");
    assert_string_equal(json_string_value(json_object_get(v, "state")), "not_intact");
    assert_string_equal(json_string_value(json_object_get(v, "chain")), "intact");
    assert_string_equal(json_string_value(json_object_get(v, "counters")), "not_intact");
    assert_non_null(strstr(json_string_value(json_object_get(v, "problem")), "stats counter"));
    json_decref(out);

    /* A counter the records do not give at all (a day without records) is found too. */
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h,
                                  "UPDATE audit_rollup SET n = n - 1 WHERE dim = 3;"
                                  "INSERT INTO audit_rollup VALUES (3, 0, 6, 1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(h);
    out = ask(f, "audit", params("verify", "1", NULL, NULL), 200);
    v = json_object_get(out, "verify");
    assert_string_equal(json_string_value(json_object_get(v, "state")), "not_intact");
    assert_string_equal(json_string_value(json_object_get(v, "counters")), "not_intact");
    json_decref(out);

    /* The first format keeps no counters: said as such, and the chain alone decides. */
    audit_stop();
    free(f->ac->store);
    snprintf(url, sizeof url, "sqlite:%s/a.db", f->dir);
    f->ac->store = strdup(url);
    f->ac->store_format = AUDIT_FORMAT_LEGACY;
    assert_int_equal(audit_writer_start(f->ac, NULL), 0);
    out = ask(f, "audit", params("verify", "1", NULL, NULL), 200);
    v = json_object_get(out, "verify");
    assert_string_equal(json_string_value(json_object_get(v, "state")), "intact");
    assert_string_equal(json_string_value(json_object_get(v, "counters")), "not_kept");
    json_decref(out);
}

static void test_bad_parameters(void **state)
{
    struct fx *f = *state;
    const char *cases[][4] = {
        {"decisions", "limit", "0", NULL},        {"decisions", "limit", "201", NULL},
        {"decisions", "limit", "-1", NULL},       {"decisions", "limit", "1x", NULL},
        {"decisions", "decision", "maybe", NULL}, {"decisions", "since", "32d", NULL},
        {"decisions", "since", "soon", NULL},     {"decisions", "before", "0", NULL},
        {"decisions", "colour", "red", NULL},     {"summary", "since", "8d", NULL},
        {"summary", "tool", "x", NULL},           {"audit", "verify", "2", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *out = ask(f, cases[i][0], params(cases[i][1], cases[i][2], NULL, NULL), 400);
        assert_non_null(json_string_value(json_object_get(out, "error")));
        json_decref(out);
    }
    json_t *out = NULL;
    json_t *p = json_object();
    assert_int_equal(audit_admin_api(&f->cfg, "spend", p, &out), 0);
    assert_null(out);
    json_decref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_decisions_filtered_and_paged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_summary_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_status_and_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_finds_tampering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_compares_day_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_parameters, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
