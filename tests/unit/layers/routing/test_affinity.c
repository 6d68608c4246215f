/* Tests of the session-affinity table (src/layers/routing/affinity.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "layers/routing/affinity.h"

static char *eps[] = {"http://127.0.0.1:9001/mcp", "http://127.0.0.1:9002/mcp"};
static struct gw_backend
    a = {.name = "a", .url = "http://127.0.0.1:9001/mcp", .endpoints = eps, .n_endpoints = 2},
    b = {.name = "b", .url = "http://127.0.0.1:9001/mcp", .endpoints = eps, .n_endpoints = 2};

static void test_remember_lookup_forget(void **state)
{
    (void)state;
    affinity_clear();
    assert_int_equal(affinity_lookup(&a, "s1"), -1);
    affinity_remember(&a, "s1", 1);
    affinity_remember(&a, "s2", 0);
    assert_int_equal(affinity_lookup(&a, "s1"), 1);
    assert_int_equal(affinity_lookup(&a, "s2"), 0);
    /* The same session id at another backend is another session. */
    assert_int_equal(affinity_lookup(&b, "s1"), -1);
    affinity_remember(&b, "s1", 0);
    assert_int_equal(affinity_lookup(&b, "s1"), 0);
    assert_int_equal(affinity_lookup(&a, "s1"), 1);
    /* Remembering again moves it. */
    affinity_remember(&a, "s1", 0);
    assert_int_equal(affinity_lookup(&a, "s1"), 0);
    affinity_forget(&a, "s1");
    assert_int_equal(affinity_lookup(&a, "s1"), -1);
    assert_int_equal(affinity_lookup(&b, "s1"), 0);
    /* Bad input is ignored. */
    affinity_remember(NULL, "x", 1);
    affinity_remember(&a, NULL, 1);
    affinity_remember(&a, "x", -1);
    assert_int_equal(affinity_lookup(&a, "x"), -1);
    assert_int_equal(affinity_lookup(&a, NULL), -1);
}

static void test_bounded(void **state)
{
    (void)state;
    affinity_clear();
    /* Far more sessions than slots: the table stays bounded, recent ones are found. */
    char id[32];
    for (int i = 0; i < 200000; i++) {
        snprintf(id, sizeof id, "session-%d", i);
        affinity_remember(&a, id, i % 2);
    }
    int found = 0;
    for (int i = 199000; i < 200000; i++) {
        snprintf(id, sizeof id, "session-%d", i);
        found += affinity_lookup(&a, id) == i % 2;
    }
    assert_true(found > 990);
    affinity_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_remember_lookup_forget),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
