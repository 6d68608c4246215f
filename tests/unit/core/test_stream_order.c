/*
 * stream_order: a session's GET noted on its way upstream makes that session's POSTs wait,
 * bounded in time, and nobody else's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/stream_order.h"

#define MS 1000000ull

static uint64_t key(const char *sid, const char *auth)
{
    return stream_order_key(sid, strlen(sid), auth, strlen(auth));
}

static void test_get_makes_its_session_wait(void **state)
{
    (void)state;
    uint64_t k = key("session-a", "Bearer one");
    uint64_t t0 = 1000 * MS;
    assert_int_equal(stream_order_pending(k, t0, NULL), 0);
    /* No GET noted: a POST needs no key made at all. */
    assert_int_equal(stream_order_any(), 0);
    uint64_t h = stream_order_get_started(k, t0);
    assert_true(h != 0);
    assert_int_equal(stream_order_any(), 1);
    uint64_t until = 0;
    assert_int_equal(stream_order_pending(k, t0 + 5 * MS, &until), 1);
    assert_true(until == t0 + (uint64_t)STREAM_ORDER_MAX_WAIT_MS * MS);
    stream_order_done(h);
    assert_int_equal(stream_order_pending(k, t0 + 6 * MS, NULL), 0);
    assert_int_equal(stream_order_any(), 0);
    stream_order_done(h); /* idempotent */
    stream_order_done(0);
    assert_int_equal(stream_order_pending(k, t0 + 7 * MS, NULL), 0);
}

static void test_other_sessions_and_credentials_do_not_wait(void **state)
{
    (void)state;
    uint64_t t0 = 2000 * MS;
    uint64_t h = stream_order_get_started(key("session-a", "Bearer one"), t0);
    assert_int_equal(stream_order_pending(key("session-b", "Bearer one"), t0, NULL), 0);
    /* Knowing the session id without the owner's credentials delays nothing. */
    assert_int_equal(stream_order_pending(key("session-a", "Bearer two"), t0, NULL), 0);
    /* The separator keeps (id, credentials) pairs apart. */
    assert_true(key("ab", "c") != key("a", "bc"));
    stream_order_done(h);
}

static void test_wait_is_bounded(void **state)
{
    (void)state;
    uint64_t k = key("session-slow", "Bearer one");
    uint64_t t0 = 3000 * MS;
    uint64_t h = stream_order_get_started(k, t0);
    uint64_t bound = (uint64_t)STREAM_ORDER_MAX_WAIT_MS * MS;
    assert_int_equal(stream_order_pending(k, t0 + bound - 1, NULL), 1);
    assert_int_equal(stream_order_pending(k, t0 + bound, NULL), 0);
    assert_int_equal(stream_order_pending(k, t0 + 10 * bound, NULL), 0);
    stream_order_done(h);
}

static void test_full_table_notes_nothing_and_stale_slots_are_reused(void **state)
{
    (void)state;
    static uint64_t handles[STREAM_ORDER_SLOTS];
    uint64_t t0 = 10000 * MS;
    for (size_t i = 0; i < STREAM_ORDER_SLOTS; i++) {
        char sid[32];
        snprintf(sid, sizeof sid, "s-%zu", i);
        handles[i] = stream_order_get_started(key(sid, ""), t0);
        assert_true(handles[i] != 0);
    }
    /* Full: a further GET is not noted, and its session's POSTs do not wait. */
    assert_int_equal(stream_order_get_started(key("one-more", ""), t0 + MS), 0);
    assert_int_equal(stream_order_pending(key("one-more", ""), t0 + MS, NULL), 0);
    /* Past the bound every slot is stale and may be taken again. */
    uint64_t later = t0 + (uint64_t)STREAM_ORDER_MAX_WAIT_MS * MS + MS;
    uint64_t h = stream_order_get_started(key("one-more", ""), later);
    assert_true(h != 0);
    assert_int_equal(stream_order_pending(key("one-more", ""), later, NULL), 1);
    stream_order_done(h);
    for (size_t i = 0; i < STREAM_ORDER_SLOTS; i++)
        stream_order_done(handles[i]);
    /* Everything released: POSTs pay nothing. */
    assert_int_equal(stream_order_pending(key("s-1", ""), t0 + MS, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_makes_its_session_wait),
        cmocka_unit_test(test_other_sessions_and_credentials_do_not_wait),
        cmocka_unit_test(test_wait_is_bounded),
        cmocka_unit_test(test_full_table_notes_nothing_and_stale_slots_are_reused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
