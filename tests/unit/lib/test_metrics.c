/* Tests for metrics.c: the Prometheus text format, histograms and the keyed counter table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/metrics.h"

static void test_family_and_samples(void **state)
{
    (void)state;
    struct gw_metrics_out o = {{0}};
    metrics_family(&o, "t_total", "counter", "Things \\ counted\nhere.");
    struct metrics_label l[] = {{"route", "ehr"}, {"method", "tools/call"}};
    metrics_sample_u64(&o, "t_total", l, 2, 18446744073709551615ull);
    metrics_sample(&o, "t_gauge", NULL, 0, 0.25);
    metrics_sample(&o, "t_gauge", NULL, 0, 3);
    assert_string_equal(o.buf.data,
                        "# HELP t_total Things \\\\ counted\\nhere.\n"
                        "# TYPE t_total counter\n"
                        "t_total{route=\"ehr\",method=\"tools/call\"} 18446744073709551615\n"
                        "t_gauge 0.25\n"
                        "t_gauge 3\n");
    gw_buf_free(&o.buf);
}

static void test_label_escaping(void **state)
{
    (void)state;
    struct gw_metrics_out o = {{0}};
    struct metrics_label l[] = {{"issuer", "a\"b\\c\nd"}, {"empty", ""}, {"null", NULL}};
    metrics_sample_u64(&o, "x", l, 3, 1);
    assert_string_equal(o.buf.data, "x{issuer=\"a\\\"b\\\\c\\nd\",empty=\"\",null=\"\"} 1\n");
    gw_buf_free(&o.buf);
    /* UTF-8 passes through unchanged. */
    struct gw_buf b = {0};
    metrics_escape_label(&b, "caf\xc3\xa9");
    assert_string_equal(b.data, "caf\xc3\xa9");
    gw_buf_free(&b);
}

static void test_histogram_cumulative(void **state)
{
    (void)state;
    static const uint64_t bounds[] = {1000, 5000, 10000}; /* ns: 1us, 5us, 10us */
    struct metrics_histogram h;
    metrics_histogram_init(&h, bounds, 3, 1e-9);
    metrics_histogram_observe(&h, 500);   /* <= 1us */
    metrics_histogram_observe(&h, 1000);  /* le is inclusive: still <= 1us */
    metrics_histogram_observe(&h, 4000);  /* <= 5us */
    metrics_histogram_observe(&h, 20000); /* beyond every bound: +Inf only */
    struct gw_metrics_out o = {{0}};
    struct metrics_label l[] = {{"stage", "policy"}};
    metrics_histogram_write(&o, "d_seconds", l, 1, &h);
    assert_string_equal(o.buf.data, "d_seconds_bucket{stage=\"policy\",le=\"1e-06\"} 2\n"
                                    "d_seconds_bucket{stage=\"policy\",le=\"5e-06\"} 3\n"
                                    "d_seconds_bucket{stage=\"policy\",le=\"1e-05\"} 3\n"
                                    "d_seconds_bucket{stage=\"policy\",le=\"+Inf\"} 4\n"
                                    "d_seconds_sum{stage=\"policy\"} 2.55e-05\n"
                                    "d_seconds_count{stage=\"policy\"} 4\n");
    gw_buf_free(&o.buf);
}

static void test_histogram_without_labels(void **state)
{
    (void)state;
    static const uint64_t bounds[] = {1, 2};
    struct metrics_histogram h;
    metrics_histogram_init(&h, bounds, 2, 1.0);
    struct gw_metrics_out o = {{0}};
    metrics_histogram_write(&o, "h", NULL, 0, &h);
    assert_string_equal(o.buf.data, "h_bucket{le=\"1\"} 0\n"
                                    "h_bucket{le=\"2\"} 0\n"
                                    "h_bucket{le=\"+Inf\"} 0\n"
                                    "h_sum 0\n"
                                    "h_count 0\n");
    gw_buf_free(&o.buf);
}

struct seen {
    uint64_t keys[64];
    uint64_t counts[64];
    size_t n;
};

static void collect(void *arg, uint64_t key, uint64_t count)
{
    struct seen *s = arg;
    s->keys[s->n] = key;
    s->counts[s->n++] = count;
}

static uint64_t count_of(const struct seen *s, uint64_t key)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->keys[i] == key)
            return s->counts[i];
    return 0;
}

static void test_table_counts_and_bound(void **state)
{
    (void)state;
    struct metrics_table t;
    assert_int_equal(metrics_table_init(&t, 8), 0);
    metrics_table_add(&t, 0, 1); /* 0 is a key like any other */
    metrics_table_add(&t, 7, 2);
    metrics_table_add(&t, 7, 3);
    metrics_table_add(&t, UINT64_MAX, 1); /* reserved: ignored */
    struct seen s = {0};
    metrics_table_each(&t, collect, &s);
    assert_int_equal(s.n, 2);
    assert_int_equal(count_of(&s, 0), 1);
    assert_int_equal(count_of(&s, 7), 5);
    /* Past its capacity, new keys are counted as dropped, known ones still counted. */
    for (uint64_t k = 100; k < 200; k++)
        metrics_table_add(&t, k, 1);
    metrics_table_add(&t, 7, 1);
    memset(&s, 0, sizeof s);
    metrics_table_each(&t, collect, &s);
    assert_int_equal(s.n, t.cap);
    assert_int_equal(count_of(&s, 7), 6);
    assert_int_equal(atomic_load(&t.dropped), 100 - (t.cap - 2));
    metrics_table_free(&t);
}

static struct metrics_table shared;

static void *adder(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++)
        metrics_table_add(&shared, (uint64_t)(i % 10), 1);
    return NULL;
}

static void test_table_threads(void **state)
{
    (void)state;
    assert_int_equal(metrics_table_init(&shared, 16), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, adder, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    struct seen s = {0};
    metrics_table_each(&shared, collect, &s);
    assert_int_equal(s.n, 10); /* each key claimed exactly once */
    for (uint64_t k = 0; k < 10; k++)
        assert_int_equal(count_of(&s, k), 40000);
    metrics_table_free(&shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_and_samples),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_histogram_cumulative),
        cmocka_unit_test(test_histogram_without_labels),
        cmocka_unit_test(test_table_counts_and_bound),
        cmocka_unit_test(test_table_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
