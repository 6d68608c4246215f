/*
 * The core's per-route and per-backend series across configuration generations
 * (src/core/stats.c): kept by name, so a route a reload keeps keeps its counts, a new one
 * gets series, a removed one keeps its last; and bounded, with what does not fit counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/request.h"
#include "core/stats.h"
#include "lib/buf.h"
#include "lib/metrics.h"

static struct gw_config *load(const char *yaml)
{
    struct cfg_error err = {{0}};
    struct gw_config *cfg = gw_config_load_string(yaml, "stats.yaml", &err);
    if (!cfg)
        fail_msg("%s", err.msg);
    return cfg;
}

/* One request that ended on route `name` of cfg (its first backend). */
static void request_on(struct gw_config *cfg, const char *name)
{
    const struct gw_route *route = NULL;
    for (size_t r = 0; r < cfg->n_routes && !route; r++)
        if (strcmp(cfg->routes[r].name, name) == 0)
            route = &cfg->routes[r];
    assert_non_null(route);
    struct gw_request *req = gw_request_new(cfg);
    assert_non_null(req);
    req->route = route;
    req->backend = &route->backends[0];
    req->deciding_stage = GW_STAGE_NONE;
    snprintf(req->upstream_error, sizeof req->upstream_error, "upstream.connect");
    gw_stats_request_done(req);
    gw_request_free(req);
}

/* The value of the exposition's line that starts with `series`, or -1 when there is none. */
static long value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtol(p + n + 1, NULL, 10);
    return -1;
}

static char *exposition(const struct gw_config *cfg)
{
    struct gw_metrics_out out = {{0}};
    gw_stats_write(cfg, &out);
    assert_non_null(out.buf.data);
    return out.buf.data; /* the caller frees */
}

#define ROUTE(n)                                                                                   \
    "  - {name: " n ", path: /" n ", backends: [{name: b, url: \"http://127.0.0.1:9/mcp\"}]}\n"

static void test_series_follow_a_reload_by_name(void **state)
{
    (void)state;
    struct gw_config *a = load("routes:\n" ROUTE("one") ROUTE("two"));
    assert_int_equal(gw_stats_start(a), 0);
    assert_int_not_equal(a->routes[0].stats_id, 0);
    request_on(a, "one");
    request_on(a, "two");
    /* The reload drops `one`, keeps `two` (now first) and adds `three`. */
    struct gw_config *b = load("routes:\n" ROUTE("two") ROUTE("three"));
    gw_stats_follow(b);
    assert_int_equal(b->routes[0].stats_id, a->routes[1].stats_id);
    request_on(b, "two");
    request_on(b, "three");
    request_on(a, "one"); /* a request that started before the reload ends after it */
    char *text = exposition(b);
    assert_int_equal(value_of(text, "toolgate_request_duration_seconds_count{route=\"one\"}"), 2);
    assert_int_equal(value_of(text, "toolgate_request_duration_seconds_count{route=\"two\"}"), 2);
    assert_int_equal(value_of(text, "toolgate_request_duration_seconds_count{route=\"three\"}"), 1);
    assert_int_equal(
        value_of(text,
                 "toolgate_upstream_errors_total{route=\"two\",backend=\"b\",kind=\"connect\"}"),
        2);
    assert_int_equal(value_of(text, "toolgate_metrics_route_series_dropped_total"), 0);
    free(text);
    gw_config_free(b);
    gw_config_free(a);
    gw_stats_stop();
}

/* Route names past the bound get no series; their requests are counted as dropped. */
static void test_series_are_bounded(void **state)
{
    (void)state;
    struct gw_buf yaml = {0};
    assert_int_equal(gw_buf_printf(&yaml, "routes:\n"), 0);
    for (int i = 0; i < 300; i++)
        assert_int_equal(gw_buf_printf(&yaml,
                                       "  - {name: r%d, path: /r%d, backends: [{name: b, url: "
                                       "\"http://127.0.0.1:9/mcp\"}]}\n",
                                       i, i),
                         0);
    struct gw_config *a = load("routes:\n" ROUTE("first"));
    assert_int_equal(gw_stats_start(a), 0);
    struct gw_config *b = load(yaml.data);
    gw_stats_follow(b);
    assert_int_not_equal(b->routes[254].stats_id, 0); /* 255 names with `first` */
    assert_int_equal(b->routes[255].stats_id, 0);
    assert_int_equal(b->routes[299].stats_id, 0);
    request_on(b, "r254");
    request_on(b, "r299");
    char *text = exposition(b);
    assert_int_equal(value_of(text, "toolgate_request_duration_seconds_count{route=\"r254\"}"), 1);
    assert_int_equal(value_of(text, "toolgate_request_duration_seconds_count{route=\"r299\"}"), -1);
    assert_int_equal(value_of(text, "toolgate_metrics_route_series_dropped_total"), 1);
    free(text);
    gw_config_free(b);
    gw_config_free(a);
    gw_buf_free(&yaml);
    gw_stats_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_series_follow_a_reload_by_name),
        cmocka_unit_test(test_series_are_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
