/* Tests for config.c: the server and routes sections, defaults, every validation error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "mcp/methods.h"
#include "fixtures.h"

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

static void write_file(const char *path, const char *content, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}
/* ---- a complete valid file ---------------------------------------------------------------- */

static void test_full_config(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server:\n"
                                       "  listen: [\"127.0.0.1:8080\", \"[::1]:8081\", \":8082\"]\n"
                                       "  public_url: \"https://tools.example.com:8443/\"\n"
                                       "  workers: 4\n"
                                       "  log_level: debug\n"
                                       "  limits:\n"
                                       "    max_body: 2MiB\n"
                                       "    max_header: 32KiB\n"
                                       "    header_timeout: 5s\n"
                                       "    body_timeout: 1m\n"
                                       "    idle_timeout: 2m\n"
                                       "    max_connections: 500\n"
                                       "    shutdown_timeout: 0\n"
                                       "    max_json_depth: 32\n"
                                       "    max_response: 8MiB\n"
                                       "    max_sse_event: 64KiB\n"
                                       "    write_buffer: 256KiB\n"
                                       "routes:\n"
                                       "  - name: ehr\n"
                                       "    path: /mcp\n"
                                       "    backends:\n"
                                       "      - {name: ehr, url: \"http://127.0.0.1:9001/mcp\", "
                                       "prefix: \"ehr.\"}\n"
                                       "      - name: billing\n"
                                       "        url: https://billing.internal:8443/v1/mcp\n"
                                       "        prefix: billing.\n"
                                       "    timeouts: {connect: 500ms, first_byte: 10s, idle: 1h}\n"
                                       "  - name: search_2\n"
                                       "    path: /search/mcp\n"
                                       "    backends: [{name: s, url: \"http://[::1]/\"}]\n");
    const struct gw_server_config *s = &cfg->server;
    assert_int_equal(s->n_listen, 3);
    assert_string_equal(s->listen[0].address, "127.0.0.1:8080");
    assert_string_equal(s->listen[0].host, "127.0.0.1");
    assert_int_equal(s->listen[0].port, 8080);
    assert_null(s->listen[0].tls_cert);
    assert_string_equal(s->listen[1].address, "[::1]:8081");
    assert_string_equal(s->listen[1].host, "::1");
    assert_int_equal(s->listen[1].port, 8081);
    assert_string_equal(s->listen[2].host, "0.0.0.0");
    assert_int_equal(s->listen[2].port, 8082);
    assert_string_equal(s->public_url, "https://tools.example.com:8443");
    assert_int_equal(s->workers, 4);
    assert_string_equal(s->log_level, "debug");
    assert_int_equal(s->limits.max_body, 2 * 1024 * 1024);
    assert_int_equal(s->limits.max_header, 32 * 1024);
    assert_int_equal(s->limits.header_timeout_ms, 5000);
    assert_int_equal(s->limits.body_timeout_ms, 60000);
    assert_int_equal(s->limits.idle_timeout_ms, 120000);
    assert_int_equal(s->limits.max_connections, 500);
    assert_int_equal(s->limits.shutdown_timeout_ms, 0);
    assert_int_equal(s->limits.max_json_depth, 32);
    assert_int_equal(s->limits.max_response, 8 * 1024 * 1024);
    assert_int_equal(s->limits.max_sse_event, 64 * 1024);
    assert_int_equal(s->limits.write_buffer, 256 * 1024);

    assert_int_equal(cfg->n_routes, 2);
    const struct gw_route *r = &cfg->routes[0];
    assert_string_equal(r->name, "ehr");
    assert_string_equal(r->path, "/mcp");
    assert_int_equal(r->n_backends, 2);
    assert_string_equal(r->backends[0].name, "ehr");
    assert_string_equal(r->backends[0].url, "http://127.0.0.1:9001/mcp");
    assert_string_equal(r->backends[0].prefix, "ehr.");
    assert_string_equal(r->backends[1].name, "billing");
    assert_string_equal(r->backends[1].url, "https://billing.internal:8443/v1/mcp");
    assert_string_equal(r->backends[1].prefix, "billing.");
    assert_int_equal(r->timeouts.connect_ms, 500);
    assert_int_equal(r->timeouts.first_byte_ms, 10000);
    assert_int_equal(r->timeouts.idle_ms, 3600000);
    assert_string_equal(cfg->routes[1].name, "search_2");
    assert_string_equal(cfg->routes[1].backends[0].url, "http://[::1]/");
    assert_null(cfg->path);
    assert_int_equal(strlen(cfg->config_hash), 64);
    struct cfg_error err = {{0}};
    assert_int_equal(gw_config_check_serve(cfg, &err), 0);
    gw_config_free(cfg);
}

/* ---- defaults ----------------------------------------------------------------------------- */

static void test_defaults_empty_file(void **state)
{
    (void)state;
    const char *variants[] = {"", "# only a comment\n", "---\n", "server:\nroutes:\n",
                              "server: {}\nroutes: []\n"};
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        struct gw_config *cfg = fx_load_ok(variants[i]);
        const struct gw_server_config *s = &cfg->server;
        assert_int_equal(s->n_listen, 1);
        assert_string_equal(s->listen[0].address, "127.0.0.1:8080");
        assert_string_equal(s->listen[0].host, "127.0.0.1");
        assert_int_equal(s->listen[0].port, 8080);
        assert_string_equal(s->public_url, "http://127.0.0.1:8080");
        assert_int_equal(s->workers, 0);
        assert_string_equal(s->log_level, "info");
        assert_int_equal(s->limits.max_body, 1024 * 1024);
        assert_int_equal(s->limits.max_header, 16 * 1024);
        assert_int_equal(s->limits.header_timeout_ms, 10000);
        assert_int_equal(s->limits.body_timeout_ms, 30000);
        assert_int_equal(s->limits.idle_timeout_ms, 60000);
        assert_int_equal(s->limits.max_connections, 10000);
        assert_int_equal(s->limits.shutdown_timeout_ms, 10000);
        assert_int_equal(s->limits.max_json_depth, 64);
        assert_int_equal(s->limits.max_response, 16 * 1024 * 1024);
        assert_int_equal(s->limits.max_sse_event, 4 * 1024 * 1024);
        assert_int_equal(s->limits.write_buffer, 1024 * 1024);
        assert_int_equal(cfg->n_routes, 0);
        /* Valid for `check`, refused by `serve`. */
        struct cfg_error err = {{0}};
        assert_int_equal(gw_config_check_serve(cfg, &err), -1);
        assert_non_null(strstr(err.msg, "routes: no routes are configured"));
        gw_config_free(cfg);
    }
}

static void test_defaults_partial_limits_and_timeouts(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server:\n"
                                       "  limits: {max_body: 4KiB}\n"
                                       "routes:\n"
                                       "  - name: a\n"
                                       "    path: /a\n"
                                       "    backends: [{name: a, url: \"http://10.0.0.1:81\"}]\n"
                                       "    timeouts: {idle: 30s}\n");
    assert_int_equal(cfg->server.limits.max_body, 4096);
    assert_int_equal(cfg->server.limits.max_header, 16 * 1024); /* the others keep defaults */
    assert_int_equal(cfg->server.limits.write_buffer, 1024 * 1024);
    assert_int_equal(cfg->routes[0].timeouts.connect_ms, 2000);
    assert_int_equal(cfg->routes[0].timeouts.first_byte_ms, 30000);
    assert_int_equal(cfg->routes[0].timeouts.idle_ms, 30000);
    gw_config_free(cfg);

    cfg = fx_load_ok("routes:\n"
                     "  - name: a\n"
                     "    path: /a\n"
                     "    backends: [{name: a, url: \"http://h\"}]\n");
    assert_int_equal(cfg->routes[0].timeouts.connect_ms, 2000);
    assert_int_equal(cfg->routes[0].timeouts.first_byte_ms, 30000);
    assert_int_equal(cfg->routes[0].timeouts.idle_ms, 300000);
    gw_config_free(cfg);
}

static void test_public_url_default_follows_first_listener(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server: {listen: [\"[::1]:9443\", \"127.0.0.1:1\"]}\n");
    assert_string_equal(cfg->server.public_url, "http://[::1]:9443");
    gw_config_free(cfg);
    cfg = fx_load_ok("server: {listen: \":7000\"}\n"); /* one address without the list */
    assert_int_equal(cfg->server.n_listen, 1);
    assert_string_equal(cfg->server.public_url, "http://0.0.0.0:7000");
    gw_config_free(cfg);
}

static void test_listen_tls(void **state)
{
    (void)state;
    char cert[128], key[128], yaml[512];
    snprintf(cert, sizeof cert, "%s/cert.pem", tmpdir);
    snprintf(key, sizeof key, "%s/key.pem", tmpdir);
    write_file(cert, "cert\n", 5);
    write_file(key, "key\n", 4);
    snprintf(yaml, sizeof yaml,
             "server:\n"
             "  listen:\n"
             "    - address: \"0.0.0.0:8443\"\n"
             "      tls: {cert: \"%s\", key: \"%s\"}\n"
             "    - \"127.0.0.1:8080\"\n",
             cert, key);
    struct gw_config *cfg = fx_load_ok(yaml);
    assert_int_equal(cfg->server.n_listen, 2);
    assert_string_equal(cfg->server.listen[0].tls_cert, cert);
    assert_string_equal(cfg->server.listen[0].tls_key, key);
    assert_int_equal(cfg->server.listen[0].port, 8443);
    assert_null(cfg->server.listen[1].tls_cert);
    assert_string_equal(cfg->server.public_url, "https://0.0.0.0:8443");
    gw_config_free(cfg);

    snprintf(yaml, sizeof yaml,
             "server:\n"
             "  listen:\n"
             "    - address: \"0.0.0.0:8443\"\n"
             "      tls:\n"
             "        cert: \"%s\"\n"
             "        key: \"%s/missing.pem\"\n",
             cert, tmpdir);
    fx_expect_error(yaml, "6:14", "server.listen[0].tls.key", "No such file or directory");
    snprintf(yaml, sizeof yaml,
             "server:\n"
             "  listen:\n"
             "    - address: \"0.0.0.0:8443\"\n"
             "      tls: {cert: \"%s\"}\n",
             cert);
    fx_expect_error(yaml, "4:12", "server.listen[0].tls", "`key` is required");
    snprintf(yaml, sizeof yaml,
             "server:\n"
             "  listen:\n"
             "    - address: \"0.0.0.0:8443\"\n"
             "      tls:\n"
             "        cert: \"%s\"\n"
             "        key: \"%s\"\n",
             tmpdir, key);
    fx_expect_error(yaml, "5:15", "server.listen[0].tls.cert", "is not a regular file");
    fx_expect_error("server:\n  listen:\n    - address: \":1\"\n      tls: {crt: a, key: b}\n",
                    "4:13", "server.listen[0].tls.crt", "unknown key (known here: cert, key)");
}

/* ---- server errors ------------------------------------------------------------------------ */

static void test_listen_errors(void **state)
{
    (void)state;
    fx_expect_error("server:\n  listen: [\"localhost:8080\"]\n", "2:12", "server.listen[0]",
                    "write 127.0.0.1:8080 instead");
    fx_expect_error("server:\n  listen: [\"example.com:80\"]\n", "2:12", "server.listen[0]",
                    "is not a numeric IPv4 address");
    fx_expect_error("server:\n  listen: [\"127.0.0.1\"]\n", "2:12", "server.listen[0]",
                    "has no port");
    fx_expect_error("server:\n  listen: [\"127.0.0.1:0\"]\n", "2:12", "server.listen[0]",
                    "from 1 to 65535");
    fx_expect_error("server:\n  listen: [\"127.0.0.1:65536\"]\n", "2:12", "server.listen[0]",
                    "from 1 to 65535");
    fx_expect_error("server:\n  listen: [\"127.0.0.1:80a\"]\n", "2:12", "server.listen[0]",
                    "from 1 to 65535");
    fx_expect_error("server:\n  listen: [\"127.0.0.1:\"]\n", "2:12", "server.listen[0]",
                    "from 1 to 65535");
    fx_expect_error("server:\n  listen: [\"::1:8080\"]\n", "2:12", "server.listen[0]",
                    "write IPv6 addresses in brackets");
    fx_expect_error("server:\n  listen: [\"[::1]\"]\n", "2:12", "server.listen[0]",
                    "needs a port after the IPv6 address");
    fx_expect_error("server:\n  listen: [\"[fe80::1%eth0]:80\"]\n", "2:12", "server.listen[0]",
                    "zone ids are not supported");
    fx_expect_error("server:\n  listen: [\"[::g]:80\"]\n", "2:12", "server.listen[0]",
                    "is not an IPv6 address");
    fx_expect_error("server:\n  listen: [\"256.1.1.1:80\"]\n", "2:12", "server.listen[0]",
                    "is not a numeric IPv4 address");
    fx_expect_error("server:\n  listen: [\"127.0.0.1 :80\"]\n", "2:12", "server.listen[0]",
                    "whitespace");
    fx_expect_error("server:\n  listen: []\n", "2:11", "server.listen", "the list is empty");
    fx_expect_error("server:\n  listen: [\":8080\", \"0.0.0.0:8080\"]\n", "2:21",
                    "server.listen[1]", "is listed twice (also server.listen[0])");
    fx_expect_error("server:\n  listen: [[\":8080\"]]\n", "2:12", "server.listen[0]",
                    "expected \"host:port\"");
    fx_expect_error("server:\n  listen:\n    - {addr: \":1\"}\n", "3:8", "server.listen[0].addr",
                    "unknown key (known here: address, tls)");
    fx_expect_error("server:\n  listen:\n    - {tls: ~}\n", "3:7", "server.listen[0]",
                    "`address` is required");
}

static void test_public_url_errors(void **state)
{
    (void)state;
    fx_expect_error("server:\n  public_url: ftp://x\n", "2:15", "server.public_url",
                    "does not start with http:// or https://");
    fx_expect_error("server:\n  public_url: \"http://x/?a=1\"\n", "2:15", "server.public_url",
                    "has a query");
    fx_expect_error("server:\n  public_url: \"http://x/#top\"\n", "2:15", "server.public_url",
                    "has a fragment");
    fx_expect_error("server:\n  public_url: \"https://x.example/gw\"\n", "2:15",
                    "server.public_url", "has a path; write the origin only");
    fx_expect_error("server:\n  public_url: \"https://x.example//\"\n", "2:15", "server.public_url",
                    "has a path");
    fx_expect_error("server:\n  public_url: \"http:///x\"\n", "2:15", "server.public_url",
                    "has no host");
    fx_expect_error("server:\n  public_url: \"HTTP://x\"\n", "2:15", "server.public_url",
                    "upper-case scheme");
    /* Credentials are refused and not repeated in the message. */
    struct cfg_error err = {{0}};
    assert_null(
        gw_config_load_string("server:\n  public_url: \"http://u:hunter2@x\"\n", "t.yaml", &err));
    assert_non_null(strstr(err.msg, "contains credentials"));
    assert_null(strstr(err.msg, "hunter2"));
    fx_expect_error("server:\n  public_url: [a]\n", "2:15", "server.public_url",
                    "expected a single value");
}

static void test_workers_and_log_level_errors(void **state)
{
    (void)state;
    fx_expect_error("server:\n  workers: 257\n", "2:12", "server.workers", "from 0 to 256");
    fx_expect_error("server:\n  workers: -1\n", "2:12", "server.workers", "from 0 to 256");
    fx_expect_error("server:\n  workers: many\n", "2:12", "server.workers", "not a whole number");
    fx_expect_error("server:\n  log_level: verbose\n", "2:14", "server.log_level",
                    "write one of debug, info, warn, error");
    struct gw_config *cfg = fx_load_ok("server: {workers: 256, log_level: error}\n");
    assert_int_equal(cfg->server.workers, 256);
    assert_string_equal(cfg->server.log_level, "error");
    gw_config_free(cfg);
}

static void test_limits_errors(void **state)
{
    (void)state;
    fx_expect_error("server:\n  limits:\n    max_body: 2GiB\n", "3:15", "server.limits.max_body",
                    "2GiB is too large; write a value from 1KiB to 1GiB (default 1MiB)");
    fx_expect_error("server:\n  limits:\n    max_body: 0\n", "3:15", "server.limits.max_body",
                    "is too small");
    fx_expect_error("server:\n  limits:\n    max_body: 1 parsec\n", "3:15",
                    "server.limits.max_body", "is not a size");
    fx_expect_error("server:\n  limits:\n    max_header: 2MiB\n", "3:17",
                    "server.limits.max_header", "too large");
    fx_expect_error("server:\n  limits:\n    header_timeout: 0\n", "3:21",
                    "server.limits.header_timeout", "0ms is too small");
    fx_expect_error("server:\n  limits:\n    header_timeout: 30\n", "3:21",
                    "server.limits.header_timeout", "is not a duration");
    fx_expect_error("server:\n  limits:\n    body_timeout: 2h\n", "3:19",
                    "server.limits.body_timeout",
                    "2h is too large; write a value from 100ms to 1h");
    fx_expect_error("server:\n  limits:\n    idle_timeout: 2d\n", "3:19",
                    "server.limits.idle_timeout", "too large");
    fx_expect_error("server:\n  limits:\n    max_connections: 0\n", "3:22",
                    "server.limits.max_connections", "too small");
    fx_expect_error("server:\n  limits:\n    max_connections: -5\n", "3:22",
                    "server.limits.max_connections", "is negative");
    fx_expect_error("server:\n  limits:\n    shutdown_timeout: 1d\n", "3:23",
                    "server.limits.shutdown_timeout", "too large");
    fx_expect_error("server:\n  limits:\n    max_json_depth: 1000\n", "3:21",
                    "server.limits.max_json_depth", "from 2 to 256");
    fx_expect_error("server:\n  limits:\n    max_response: 512\n", "3:19",
                    "server.limits.max_response", "too small");
    fx_expect_error("server:\n  limits:\n    max_sse_event: 1GiB\n", "3:20",
                    "server.limits.max_sse_event", "too large");
    fx_expect_error("server:\n  limits:\n    write_buffer: 1KiB\n", "3:19",
                    "server.limits.write_buffer", "too small");
    fx_expect_error("server:\n  limits:\n    max_bodies: 1MiB\n", "3:5", "server.limits.max_bodies",
                    "unknown key (known here: max_body, max_header, header_timeout");
    fx_expect_error("server:\n  limits: 5\n", "2:11", "server.limits", "expected a map");
    /* At the bounds exactly: accepted. */
    struct gw_config *cfg = fx_load_ok(
        "server:\n  limits: {max_body: 1GiB, max_header: 1KiB, max_connections: 1000000}\n");
    assert_int_equal(cfg->server.limits.max_body, 1024ull * 1024 * 1024);
    assert_int_equal(cfg->server.limits.max_header, 1024);
    assert_int_equal(cfg->server.limits.max_connections, 1000000);
    gw_config_free(cfg);
}

static void test_backend_timeouts(void **state)
{
    (void)state;
    struct gw_config *cfg =
        fx_load_ok("routes:\n  - name: a\n    path: /mcp\n"
                   "    timeouts: {connect: 3s, first_byte: 20s}\n    backends:\n"
                   "      - {name: x, url: \"http://127.0.0.1:1/\", prefix: x.}\n"
                   "      - {name: y, url: \"http://127.0.0.1:2/\", prefix: y., "
                   "timeouts: {first_byte: 2m}}\n");
    const struct gw_route *r = &cfg->routes[0];
    /* x takes the route's; y overrides one key and inherits the others. */
    assert_int_equal(r->backends[0].timeouts.first_byte_ms, 20000);
    assert_int_equal(r->backends[1].timeouts.first_byte_ms, 120000);
    assert_int_equal(r->backends[1].timeouts.connect_ms, 3000);
    assert_int_equal(r->backends[1].timeouts.idle_ms, r->timeouts.idle_ms);
    gw_config_free(cfg);
    fx_expect_error("routes:\n  - name: a\n    path: /mcp\n    backends:\n"
                    "      - {name: x, url: \"http://127.0.0.1:1/\", timeouts: {first_byte: 0s}}\n",
                    "5:70", "routes[0].backends[0].timeouts.first_byte", "not a usable timeout");
}

static void test_federation_prefixes(void **state)
{
    (void)state;
    fx_expect_error("routes:\n  - name: a\n    path: /mcp\n    backends:\n"
                    "      - {name: x, url: \"http://127.0.0.1:1/\", prefix: x.}\n"
                    "      - {name: y, url: \"http://127.0.0.1:2/\"}\n",
                    "6:9", "routes[0].backends[1]", "give this backend one");
    fx_expect_error("routes:\n  - name: a\n    path: /mcp\n    backends:\n"
                    "      - {name: x, url: \"http://127.0.0.1:1/\", prefix: ehr.}\n"
                    "      - {name: y, url: \"http://127.0.0.1:2/\", prefix: ehr.v2.}\n",
                    "6:55", "routes[0].backends[1]", "overlaps");
    /* A prefix also starts resource URIs (before their scheme): a letter first, and the URI
     * forms (lower case, '_' as '-') must not overlap either. */
    fx_expect_error("routes:\n  - name: a\n    path: /mcp\n    backends:\n"
                    "      - {name: x, url: \"http://127.0.0.1:1/\", prefix: x.}\n"
                    "      - {name: y, url: \"http://127.0.0.1:2/\", prefix: 2fa.}\n",
                    "6:55", "routes[0].backends[1]", "must start with a letter");
    fx_expect_error("routes:\n  - name: a\n    path: /mcp\n    backends:\n"
                    "      - {name: x, url: \"http://127.0.0.1:1/\", prefix: a_b.}\n"
                    "      - {name: y, url: \"http://127.0.0.1:2/\", prefix: A-b.}\n",
                    "6:55", "routes[0].backends[1]", "overlaps");
}

static void test_top_level_errors(void **state)
{
    (void)state;
    fx_expect_error("server: {}\nidentty: {}\n", "2:1", "identty",
                    "unknown key (known here: server, routes");
    fx_expect_error("server:\n  listen: [\":1\"]\n  bogus: 1\n", "3:3", "server.bogus",
                    "unknown key (known here: listen, public_url, workers, log_level, limits, "
                    "allowed_origins, allowed_hosts)");
    fx_expect_error("server: [1]\n", "1:9", "server", "expected a map");
    struct cfg_error err = {{0}};
    assert_null(gw_config_load_string("- a\n- b\n", "t.yaml", &err));
    assert_string_equal(err.msg, "t.yaml:1:1: the top level must be a map of sections");
    assert_null(gw_config_load_string("server: {listen: [\":1\"}\n", "t.yaml", &err));
    assert_non_null(strstr(err.msg, "t.yaml:1:"));
    assert_non_null(strstr(err.msg, "YAML syntax error"));
    assert_null(gw_config_load_string("server: {}\nserver: {}\n", "t.yaml", &err));
    assert_non_null(strstr(err.msg, "t.yaml:2:1: duplicate key \"server\""));
}

/* ---- routes ------------------------------------------------------------------------------- */

/* Builds a one-route file with the route's fields in `body` (lines indented by 4). */
static void expect_route_error(const char *body, const char *where, const char *path,
                               const char *what)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml, "routes:\n  - name: r\n%s", body);
    fx_expect_error(yaml, where, path, what);
}

static void test_route_errors(void **state)
{
    (void)state;
    static const char be[] = "    backends: [{name: b, url: \"http://127.0.0.1:9001/mcp\"}]\n";
    char body[512];

    fx_expect_error("routes: {name: r}\n", "1:9", "routes", "expected a list of routes");
    fx_expect_error("routes:\n  - path: /x\n", "2:5", "routes[0]", "`name` is required");
    fx_expect_error("routes:\n  - name: Bad Name\n", "2:11", "routes[0].name",
                    "is not a valid name");
    fx_expect_error("routes:\n  - name: \"\"\n", "2:11", "routes[0].name", "is not a valid name");
    expect_route_error(
        "    bogus: 1\n", "3:5", "routes[0].bogus",
        "unknown key (known here: name, path, kind, backends, timeouts, allow_methods, inject)");
    expect_route_error("    path: mcp\n", "3:11", "routes[0].path", "does not start with '/'");
    expect_route_error("    path: \"/mcp?x=1\"\n", "3:11", "routes[0].path", "has a query");
    expect_route_error("    path: \"/mcp#x\"\n", "3:11", "routes[0].path", "has a fragment");
    expect_route_error("    path: /a//b\n", "3:11", "routes[0].path", "empty segment");
    expect_route_error("    path: /a/../b\n", "3:11", "routes[0].path", "\"..\" segment");
    expect_route_error("    path: /a/./b\n", "3:11", "routes[0].path", "\".\" or \"..\" segment");
    expect_route_error("    path: /m%63p\n", "3:11", "routes[0].path", "percent-encoding");
    expect_route_error("    path: \"/m p\"\n", "3:11", "routes[0].path", "not allowed in a path");
    expect_route_error("    path: /healthz\n", "3:11", "routes[0].path",
                       "is one of toolgate's own paths");
    expect_route_error("    path: /metrics\n", "3:11", "routes[0].path", "toolgate's own paths");
    expect_route_error("    path: /.well-known/oauth-protected-resource\n", "3:11",
                       "routes[0].path", "toolgate's own paths");
    expect_route_error("    backends: []\n", "2:5", "routes[0]", "`path` is required");
    expect_route_error("    path: /x\n", "2:5", "routes[0]", "`backends` is required");
    expect_route_error("    path: /x\n    backends: []\n", "4:15", "routes[0].backends",
                       "the list is empty");
    expect_route_error("    path: /x\n    backends: {name: b}\n", "4:15", "routes[0].backends",
                       "expected a list");

    /* Backends. */
    static const struct {
        const char *url, *what;
    } bad_urls[] = {
        {"127.0.0.1:9001/mcp", "does not start with http:// or https://"},
        {"Http://h/", "upper-case scheme"},
        {"http://h/a b", "whitespace"},
        {"http://h/\\u00e9", "non-ASCII"},
        {"http://h/mcp#frag", "has a fragment"},
        {"http://h/mcp?key=1", "has a query"},
        {"http://h:0/", "from 1 to 65535"},
        {"http://h:99999/", "from 1 to 65535"},
        {"http://h:/", "from 1 to 65535"},
        {"http://:80/", "has no host"},
        {"http://[::1/", "unterminated IPv6"},
        {"http://[::1]x/", "not a port"},
        {"http://[zz]/", "invalid IPv6"},
        {"http://127.1/", "not written as a dotted quad"},
        {"http://0x7f.0.0.1/", "not written as a dotted quad"},
        {"http://1.2.3.4.5/", "ends in a number but is not an IPv4 address"},
        {"http://a..b/", "empty label"},
        {"http://-a.b/", "starts or ends with '-'"},
        {"http://a!b/", "not allowed in a host name"},
        {"http://h/%zz", "two hex digits"},
        {"http://h/a\\\\b", "must be percent-encoded"},
        {"http://h\\\\x/", "backslash"},
    };
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        snprintf(body, sizeof body,
                 "    path: /x\n    backends:\n      - name: b\n        url: \"%s\"\n",
                 bad_urls[i].url);
        expect_route_error(body, "6:14", "routes[0].backends[0].url", bad_urls[i].what);
    }
    expect_route_error("    path: /x\n    backends:\n      - {name: b}\n", "5:9",
                       "routes[0].backends[0]", "`url` is required");
    expect_route_error("    path: /x\n    backends:\n      - {url: \"http://h\"}\n", "5:9",
                       "routes[0].backends[0]", "`name` is required");
    expect_route_error("    path: /x\n    backends:\n      - {name: b, url: \"http://h\", x: 1}\n",
                       "5:36", "routes[0].backends[0].x",
                       "unknown key (known here: name, url, endpoints, prefix, health, eject, "
                       "timeouts, protocol, tls, command, env");
    expect_route_error("    path: /x\n    backends:\n      - {name: B!, url: \"http://h\"}\n",
                       "5:16", "routes[0].backends[0].name", "is not a valid name");
    expect_route_error("    path: /x\n    backends:\n"
                       "      - {name: b, url: \"http://h\"}\n"
                       "      - {name: b, url: \"http://g\"}\n",
                       "6:16", "routes[0].backends[1].name",
                       "\"b\" is already the name of routes[0].backends[0]");
    expect_route_error("    path: /x\n    backends:\n"
                       "      - {name: b, url: \"http://h\", prefix: \"a b\"}\n",
                       "5:44", "routes[0].backends[0].prefix", "not a valid tool name prefix");
    expect_route_error("    path: /x\n    backends:\n"
                       "      - {name: b, url: \"http://h\", prefix: \"\"}\n",
                       "5:44", "routes[0].backends[0].prefix", "not a valid tool name prefix");

    /* Timeouts. */
    snprintf(body, sizeof body, "    path: /x\n%s    timeouts: {connect: 0}\n", be);
    expect_route_error(body, "5:25", "routes[0].timeouts.connect", "not a usable timeout");
    snprintf(body, sizeof body, "    path: /x\n%s    timeouts: {connect: 10m}\n", be);
    expect_route_error(body, "5:25", "routes[0].timeouts.connect",
                       "10m is too large; write a duration from 1ms to 5m (default 2s)");
    snprintf(body, sizeof body, "    path: /x\n%s    timeouts: {first_byte: 2h}\n", be);
    expect_route_error(body, "5:28", "routes[0].timeouts.first_byte", "too large");
    snprintf(body, sizeof body, "    path: /x\n%s    timeouts: {idle: 2d}\n", be);
    expect_route_error(body, "5:22", "routes[0].timeouts.idle", "too large");
    snprintf(body, sizeof body, "    path: /x\n%s    timeouts: {idle: soon}\n", be);
    expect_route_error(body, "5:22", "routes[0].timeouts.idle", "is not a duration");
    snprintf(body, sizeof body, "    path: /x\n%s    timeouts: {read: 1s}\n", be);
    expect_route_error(body, "5:16", "routes[0].timeouts.read",
                       "unknown key (known here: connect, first_byte, idle)");
}

static void test_backend_endpoints(void **state)
{
    (void)state;
    /* url alone: one endpoint, no health checks, no ejection. */
    struct gw_config *cfg =
        fx_load_ok("routes:\n  - name: r\n    path: /x\n    backends:\n"
                   "      - {name: a, url: \"http://127.0.0.1:9001/mcp\", prefix: a.}\n"
                   "      - name: b\n"
                   "        prefix: b.\n"
                   "        endpoints: [\"http://127.0.0.1:9001/mcp\", "
                   "\"http://127.0.0.1:9002/mcp\"]\n"
                   "      - name: c\n"
                   "        prefix: c.\n"
                   "        endpoints: [\"http://10.0.0.1/mcp\", \"http://10.0.0.2/mcp\"]\n"
                   "        health: {path: /ready, interval: 2s, timeout: 500ms, "
                   "unhealthy: 3, healthy: 2}\n"
                   "        eject: {failures: 5, base: 10s, max: 1m}\n"
                   "      - name: d\n"
                   "        prefix: d.\n"
                   "        url: \"http://127.0.0.1:9003/mcp\"\n"
                   "        health: {}\n"
                   "        eject: {}\n");
    const struct gw_backend *a = &cfg->routes[0].backends[0], *b = &cfg->routes[0].backends[1],
                            *c = &cfg->routes[0].backends[2], *d = &cfg->routes[0].backends[3];
    assert_int_equal(a->n_endpoints, 1);
    assert_string_equal(a->endpoints[0], a->url);
    assert_null(a->endpoints[1]);
    assert_null(a->health.path);
    assert_int_equal(a->eject.failures, 0);
    assert_int_equal(b->n_endpoints, 2);
    assert_string_equal(b->url, "http://127.0.0.1:9001/mcp");
    assert_string_equal(b->endpoints[1], "http://127.0.0.1:9002/mcp");
    assert_null(b->health.path);
    assert_int_equal(b->eject.failures, 3);
    assert_int_equal(b->eject.base_ms, 30000);
    assert_int_equal(b->eject.max_ms, 300000);
    assert_string_equal(c->health.path, "/ready");
    assert_int_equal(c->health.interval_ms, 2000);
    assert_int_equal(c->health.timeout_ms, 500);
    assert_int_equal(c->health.unhealthy, 3);
    assert_int_equal(c->health.healthy, 2);
    assert_int_equal(c->eject.failures, 5);
    assert_int_equal(c->eject.base_ms, 10000);
    assert_int_equal(c->eject.max_ms, 60000);
    assert_string_equal(d->health.path, "/healthz");
    assert_int_equal(d->health.interval_ms, 5000);
    assert_int_equal(d->health.timeout_ms, 1000);
    assert_int_equal(d->health.unhealthy, 2);
    assert_int_equal(d->health.healthy, 1);
    assert_int_equal(d->eject.failures, 3); /* written: on even with one endpoint */
    gw_config_free(cfg);

    static const char head[] = "    path: /x\n    backends:\n      - name: b\n";
    char body[512];
#define BAD(more, where, path, what)                                                               \
    do {                                                                                           \
        snprintf(body, sizeof body, "%s%s", head, more);                                           \
        expect_route_error(body, where, path, what);                                               \
    } while (0)
    BAD("        url: \"http://h/\"\n        endpoints: [\"http://g/\"]\n", "7:20",
        "routes[0].backends[0]", "has both `url` and `endpoints`");
    BAD("        endpoints: []\n", "6:20", "routes[0].backends[0].endpoints", "1 to 64 endpoint");
    BAD("        endpoints: [\"http://h/\", \"ftp://g/\"]\n", "6:34",
        "routes[0].backends[0].endpoints[1]", "does not start with http://");
    BAD("        endpoints: [\"http://h/\", \"http://h/\"]\n", "6:34",
        "routes[0].backends[0].endpoints[1]", "is listed twice");
    BAD("        url: \"http://h/\"\n        health: {path: healthz}\n", "7:24",
        "routes[0].backends[0].health.path", "must start with '/'");
    BAD("        url: \"http://h/\"\n        health: {interval: 10ms}\n", "7:28",
        "routes[0].backends[0].health.interval", "out of range");
    BAD("        url: \"http://h/\"\n        health: {unhealthy: 0}\n", "7:29",
        "routes[0].backends[0].health.unhealthy", "out of range");
    BAD("        url: \"http://h/\"\n        health: {bogus: 1}\n", "7:18",
        "routes[0].backends[0].health.bogus", "unknown key");
    BAD("        url: \"http://h/\"\n        eject: {base: 1m, max: 10s}\n", "7:32",
        "routes[0].backends[0].eject.max", "shorter than eject.base");
    BAD("        url: \"http://h/\"\n        eject: {failures: -1}\n", "7:27",
        "routes[0].backends[0].eject.failures", "out of range");
#undef BAD
}

static void test_route_duplicates(void **state)
{
    (void)state;
    fx_expect_error("routes:\n"
                    "  - {name: a, path: /a, backends: [{name: b, url: \"http://h\"}]}\n"
                    "  - {name: a, path: /b, backends: [{name: b, url: \"http://h\"}]}\n",
                    "3:12", "routes[1].name", "\"a\" is already the name of routes[0]");
    fx_expect_error("routes:\n"
                    "  - {name: a, path: /a, backends: [{name: b, url: \"http://h\"}]}\n"
                    "  - {name: c, path: /a, backends: [{name: b, url: \"http://h\"}]}\n",
                    "3:21", "routes[1].path", "\"/a\" is already the path of routes[0] (a)");
    /* A later error does not leak the routes parsed before it (ASan checks). */
    fx_expect_error(
        "routes:\n"
        "  - {name: a, path: /a, backends: [{name: b, url: \"http://h\"}]}\n"
        "  - {name: c, path: /c, backends: [{name: b, url: \"http://h\"}, {name: d}]}\n",
        "3:64", "routes[1].backends[1]", "`url` is required");
}

static void test_route_for(void **state)
{
    (void)state;
    struct gw_config *cfg =
        fx_load_ok("routes:\n"
                   "  - {name: a, path: /mcp, backends: [{name: b, url: \"http://h\"}]}\n"
                   "  - {name: c, path: /mcp/, backends: [{name: b, url: \"http://h\"}]}\n"
                   "  - {name: d, path: /, backends: [{name: b, url: \"http://h\"}]}\n");
    const char buf[] = "/mcp/extra";
    assert_ptr_equal(gw_config_route_for(cfg, "/mcp", 4), &cfg->routes[0]);
    assert_ptr_equal(gw_config_route_for(cfg, buf, 4), &cfg->routes[0]); /* a slice */
    assert_ptr_equal(gw_config_route_for(cfg, buf, 5), &cfg->routes[1]);
    assert_null(gw_config_route_for(cfg, buf, sizeof buf - 1));
    assert_ptr_equal(gw_config_route_for(cfg, "/mcp?x=1", 8), &cfg->routes[0]);
    assert_ptr_equal(gw_config_route_for(cfg, "/", 1), &cfg->routes[2]);
    assert_null(gw_config_route_for(cfg, "/MCP", 4));
    assert_null(gw_config_route_for(cfg, "/mc", 3));
    assert_null(gw_config_route_for(cfg, "", 0));
    assert_null(gw_config_route_for(NULL, "/mcp", 4));
    gw_config_free(cfg);
}

/* ---- files -------------------------------------------------------------------------------- */

static void test_load_file_hash_and_path(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/toolgate.yaml", tmpdir);
    /* sha256 of these bytes, computed independently with sha256sum. */
    const char text[] = "server:\n  listen: [\"127.0.0.1:8080\"]\n";
    write_file(path, text, sizeof text - 1);
    struct cfg_error err = {{0}};
    struct gw_config *cfg = gw_config_load(path, &err);
    if (!cfg)
        fail_msg("%s", err.msg);
    assert_string_equal(cfg->path, path);
    assert_string_equal(cfg->config_hash,
                        "993f44066dabdc7a7cb8f865982cfce204171efcf1d0c0f5103d7f135a0484e3");
    gw_config_free(cfg);

    /* The same bytes from a string hash the same. */
    cfg = fx_load_ok(text);
    assert_string_equal(cfg->config_hash,
                        "993f44066dabdc7a7cb8f865982cfce204171efcf1d0c0f5103d7f135a0484e3");
    gw_config_free(cfg);

    /* Errors name the file. */
    write_file(path, "server:\n  workers: x\n", 21);
    assert_null(gw_config_load(path, &err));
    char want[256];
    snprintf(want, sizeof want, "%s:2:12: server.workers: ", path);
    assert_memory_equal(err.msg, want, strlen(want));

    snprintf(path, sizeof path, "%s/absent.yaml", tmpdir);
    assert_null(gw_config_load(path, &err));
    assert_non_null(strstr(err.msg, "cannot open"));

    /* Larger than 16 MiB: refused before parsing. */
    snprintf(path, sizeof path, "%s/big.yaml", tmpdir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    static char chunk[1 << 16];
    memset(chunk, '#', sizeof chunk);
    for (int i = 0; i < 257; i++)
        assert_int_equal(fwrite(chunk, 1, sizeof chunk, f), sizeof chunk);
    fclose(f);
    assert_null(gw_config_load(path, &err));
    assert_non_null(strstr(err.msg, "larger than"));
}

/* ---- the shipped example and the reference's examples -------------------------------------- */

/* The repository root, from this file's path as the compiler saw it ("tests/unit/..."). */
static void repo_path(char *out, size_t outlen, const char *rel)
{
    const char *self = __FILE__;
    const char *tail = strstr(self, "tests/unit/core/test_config.c");
    int root_len = tail ? (int)(tail - self) : 0;
    snprintf(out, outlen, "%.*s%s", root_len, self, rel);
}

static void test_demo_config_loads(void **state)
{
    (void)state;
    char path[512];
    repo_path(path, sizeof path, "examples/demo/toolgate.yaml");
    struct cfg_error err = {{0}};
    struct gw_config *cfg = gw_config_load(path, &err);
    if (!cfg)
        fail_msg("%s", err.msg);
    assert_int_equal(cfg->server.n_listen, 1);
    assert_string_equal(cfg->server.listen[0].address, "127.0.0.1:8080");
    assert_int_equal(cfg->n_routes, 1);
    const struct gw_route *r = gw_config_route_for(cfg, "/mcp", 4);
    assert_non_null(r);
    assert_int_equal(r->n_backends, 1);
    assert_string_equal(r->backends[0].name, "ehr");
    assert_string_equal(r->backends[0].url, "http://127.0.0.1:9001/mcp");
    assert_int_equal(gw_config_check_serve(cfg, &err), 0);
    gw_config_free(cfg);
}

/* Every ```yaml block in docs/configuration.md is a configuration that loads. */
static void test_reference_examples_load(void **state)
{
    (void)state;
    char path[512];
    repo_path(path, sizeof path, "docs/configuration.md");
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    static char doc[256 * 1024];
    size_t len = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[len] = '\0';
    int blocks = 0;
    for (char *p = doc; (p = strstr(p, "\n```yaml\n")) != NULL;) {
        char *start = p + strlen("\n```yaml\n");
        char *end = strstr(start, "\n```");
        assert_non_null(end);
        char saved = end[1];
        end[1] = '\0';
        struct cfg_error err = {{0}};
        struct gw_config *cfg = gw_config_load_string(start, "configuration.md", &err);
        if (!cfg)
            fail_msg("example %d does not load: %s\n%s", blocks + 1, err.msg, start);
        gw_config_free(cfg);
        end[1] = saved;
        blocks++;
        p = end + 1;
    }
    assert_true(blocks >= 5);
}

/* DNS rebinding: the Origins and Host names a route answers to, by default and as written. */
static void test_rebinding_defaults(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok(
        "server:\n  listen: [\"127.0.0.1:7100\"]\n  public_url: https://Tools.Example.com\n");
    assert_string_equal(cfg->server.allowed_origins[0], "https://tools.example.com");
    assert_null(cfg->server.allowed_origins[1]);
    assert_string_equal(cfg->server.allowed_hosts[0], "tools.example.com");
    assert_string_equal(cfg->server.allowed_hosts[1], "localhost"); /* a loopback listener */
    assert_null(cfg->server.allowed_hosts[2]);
    gw_config_free(cfg);
    cfg = fx_load_ok("server:\n  listen: [\"0.0.0.0:7100\"]\n  public_url: http://h:7100\n"
                     "  allowed_origins: [\"http://Inspector.local:6274\", \"http://h:7100\"]\n"
                     "  allowed_hosts: [h, gw.internal]\n");
    assert_string_equal(cfg->server.allowed_origins[0], "http://inspector.local:6274");
    assert_string_equal(cfg->server.allowed_hosts[1], "gw.internal");
    assert_null(cfg->server.allowed_hosts[2]);
    gw_config_free(cfg);
    fx_expect_error("server:\n  allowed_origins: [\"http://a/x\"]\n", NULL, NULL, "has a path");
    fx_expect_error("server:\n  allowed_origins: [\"a.example\"]\n", NULL, NULL, "http://");
    fx_expect_error("server:\n  allowed_hosts: [\"a:80\"]\n", NULL, NULL, "not a host name");
    fx_expect_error("server:\n  allowed_hosts: [\"*.a\"]\n", NULL, NULL, "not a host name");
}

static void test_backend_protocol(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok(
        "routes:\n  - name: a\n    path: /a\n    backends:\n"
        "      - {name: old, url: \"http://127.0.0.1:9001/mcp\", protocol: \"2025-11-25\"}\n"
        "  - name: b\n    path: /b\n    backends:\n"
        "      - {name: new, url: \"http://127.0.0.1:9002/mcp\", protocol: \"2026-07-28\"}\n"
        "  - name: c\n    path: /c\n    backends:\n"
        "      - {name: any, url: \"http://127.0.0.1:9003/mcp\", protocol: auto}\n"
        "  - name: d\n    path: /d\n    backends:\n"
        "      - {name: dflt, url: \"http://127.0.0.1:9004/mcp\"}\n");
    assert_int_equal(cfg->routes[0].backends[0].protocol, MCP_V_2025_11_25);
    assert_int_equal(cfg->routes[1].backends[0].protocol, MCP_V_2026_07_28);
    assert_int_equal(cfg->routes[2].backends[0].protocol, 0);
    assert_int_equal(cfg->routes[3].backends[0].protocol, 0);
    gw_config_free(cfg);
    fx_expect_error(
        "routes:\n  - name: a\n    path: /a\n    backends:\n"
        "      - {name: old, url: \"http://127.0.0.1:9001/mcp\", protocol: \"2024-01-01\"}\n",
        "5:65", "routes[0].backends[0].protocol", "not a protocol revision");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rebinding_defaults),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults_empty_file),
        cmocka_unit_test(test_defaults_partial_limits_and_timeouts),
        cmocka_unit_test(test_public_url_default_follows_first_listener),
        cmocka_unit_test(test_listen_tls),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_public_url_errors),
        cmocka_unit_test(test_workers_and_log_level_errors),
        cmocka_unit_test(test_limits_errors),
        cmocka_unit_test(test_top_level_errors),
        cmocka_unit_test(test_federation_prefixes),
        cmocka_unit_test(test_backend_timeouts),
        cmocka_unit_test(test_route_errors),
        cmocka_unit_test(test_route_duplicates),
        cmocka_unit_test(test_backend_endpoints),
        cmocka_unit_test(test_route_for),
        cmocka_unit_test(test_load_file_hash_and_path),
        cmocka_unit_test(test_demo_config_loads),
        cmocka_unit_test(test_reference_examples_load),
        cmocka_unit_test(test_backend_protocol),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
