/* session: MCP session ids bound to verified users. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mcp/session.h"

#define ISS "https://idp.test/"

static void test_bind_check_forget(void **state)
{
    (void)state;
    assert_int_equal(mcp_session_configure(1000, 60000), 0);
    assert_int_equal(mcp_session_check("s1", ISS, "alice"), 1); /* unknown */
    assert_int_equal(mcp_session_bind("s1", ISS, "alice"), 0);
    assert_int_equal(mcp_session_check("s1", ISS, "alice"), 0);
    assert_int_equal(mcp_session_check("s1", ISS, "bob"), -1);
    /* Same subject at another issuer is another user. */
    assert_int_equal(mcp_session_check("s1", "https://other/", "alice"), -1);
    /* The separator cannot be forged by moving characters between issuer and subject. */
    assert_int_equal(mcp_session_bind("s2", "ab", "c"), 0);
    assert_int_equal(mcp_session_check("s2", "a", "bc"), -1);
    /* Rebinding replaces the owner. */
    assert_int_equal(mcp_session_bind("s1", ISS, "bob"), 0);
    assert_int_equal(mcp_session_check("s1", ISS, "bob"), 0);
    assert_int_equal(mcp_session_check("s1", ISS, "alice"), -1);
    mcp_session_forget("s1");
    assert_int_equal(mcp_session_check("s1", ISS, "alice"), 1);
    mcp_session_forget("never-bound");
    assert_int_equal(mcp_session_count(), 1);
}

static void test_bad_ids(void **state)
{
    (void)state;
    assert_int_equal(mcp_session_configure(100, 60000), 0);
    char long_id[MCP_SESSION_MAX_ID + 2];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    assert_int_equal(mcp_session_bind(long_id, ISS, "a"), -1);
    assert_int_equal(mcp_session_check(long_id, ISS, "a"), -1);
    assert_int_equal(mcp_session_bind("", ISS, "a"), -1);
    assert_int_equal(mcp_session_bind(NULL, ISS, "a"), -1);
    assert_int_equal(mcp_session_check("ok", NULL, "a"), -1);
    long_id[MCP_SESSION_MAX_ID] = '\0'; /* exactly the maximum is fine */
    assert_int_equal(mcp_session_bind(long_id, ISS, "a"), 0);
    assert_int_equal(mcp_session_check(long_id, ISS, "a"), 0);
}

static void test_idle_expiry(void **state)
{
    (void)state;
    assert_int_equal(mcp_session_configure(100, 150), 0);
    assert_int_equal(mcp_session_bind("idle", ISS, "alice"), 0);
    assert_int_equal(mcp_session_bind("busy", ISS, "alice"), 0);
    for (int i = 0; i < 4; i++) {
        usleep(60 * 1000);
        assert_int_equal(mcp_session_check("busy", ISS, "alice"), 0); /* use keeps it alive */
    }
    assert_int_equal(mcp_session_check("idle", ISS, "bob"), 1); /* expired: unknown now */
    assert_int_equal(mcp_session_check("busy", ISS, "bob"), -1);
}

static void test_bounded(void **state)
{
    (void)state;
    assert_int_equal(mcp_session_configure(64, 60000), 0);
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "sess-%d", i);
        assert_int_equal(mcp_session_bind(id, ISS, "u"), 0);
    }
    assert_true(mcp_session_count() <= 64);
    assert_true(mcp_session_count() >= 32);
    /* The most recent binding survives. */
    assert_int_equal(mcp_session_check("sess-4999", ISS, "u"), 0);
}

struct worker {
    int base;
    int errors;
};

static void *session_thread(void *arg)
{
    struct worker *w = arg;
    char id[32], sub[32];
    for (int i = 0; i < 3000; i++) {
        int n = w->base + i % 50;
        snprintf(id, sizeof id, "t-%d", n);
        snprintf(sub, sizeof sub, "user-%d", n);
        if (mcp_session_bind(id, ISS, sub) != 0)
            w->errors++;
        int rc = mcp_session_check(id, ISS, sub);
        if (rc == -1) /* only the owner ever binds this id */
            w->errors++;
        if (mcp_session_check(id, ISS, "intruder") == 0)
            w->errors++;
        if (i % 7 == 0)
            mcp_session_forget(id);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    assert_int_equal(mcp_session_configure(4096, 60000), 0);
    pthread_t t[8];
    struct worker w[8];
    for (int i = 0; i < 8; i++) {
        w[i] = (struct worker){.base = i * 1000};
        pthread_create(&t[i], NULL, session_thread, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].errors, 0);
    }
    assert_true(mcp_session_count() <= 8 * 50);
}

static int teardown(void **state)
{
    (void)state;
    mcp_session_shutdown();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bind_check_forget), cmocka_unit_test(test_bad_ids),
        cmocka_unit_test(test_idle_expiry),       cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
