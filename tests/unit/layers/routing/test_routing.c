/*
 * The routing layer in its pipeline slot, with a configuration loaded from YAML: egress and
 * inject parsing, backend vetting and pinning, the resolution cache, URL-valued tool
 * arguments, the asynchronous lookup path on a libuv loop, and injection through check().
 * Names are resolved by a fake resolver, except in the async test (the hosts file).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "core/config.h"
#include "core/request.h"
#include "lib/timeutil.h"
#include "layers/layer.h"
#include "layers/routing/routing.h"

/* ---- a fake resolver ---------------------------------------------------------------------- */

struct fake_name {
    const char *host;
    const char *addrs[3];
};

static const struct fake_name fake_names[] = {
    {"public.example", {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"}},
    {"mixed.example", {"93.184.216.34", "10.0.0.7"}},
    {"internal.example", {"10.1.2.3"}},
    {"metadata.example", {"::ffff:169.254.169.254"}},
    {"backend.internal", {"10.9.9.9"}},
};

static int fake_calls;

static int fake_resolve(void *ctx, const char *host, struct gw_addr *out, size_t max, size_t *n)
{
    (void)ctx;
    fake_calls++;
    *n = 0;
    for (size_t i = 0; i < sizeof fake_names / sizeof fake_names[0]; i++) {
        if (strcmp(fake_names[i].host, host) != 0)
            continue;
        for (size_t j = 0; j < 3 && fake_names[i].addrs[j] && *n < max; j++) {
            struct gw_addr a = {0};
            if (inet_pton(AF_INET, fake_names[i].addrs[j], a.bytes) == 1)
                a.family = AF_INET;
            else if (inet_pton(AF_INET6, fake_names[i].addrs[j], a.bytes) == 1)
                a.family = AF_INET6;
            out[(*n)++] = a;
        }
        return 0;
    }
    return -1;
}

/* ---- configuration and requests ------------------------------------------------------------ */

static const char *const base_yaml =
    "server: {public_url: \"http://127.0.0.1:8080\"}\n"
    "routes:\n"
    "  - name: ehr\n"
    "    path: /mcp\n"
    "    backends: [{name: ehr, url: \"http://127.0.0.1:9001/mcp\"}]\n"
    "    inject: none\n"
    "  - name: private\n"
    "    path: /private\n"
    "    backends: [{name: p, url: \"http://10.0.0.5:8080/mcp\"}]\n"
    "    inject: {mode: headers, headers: {subject: X-User}}\n"
    "  - name: named\n"
    "    path: /named\n"
    "    backends: [{name: n, url: \"http://public.example:8080/mcp\"}]\n"
    "    inject: none\n"
    "  - name: internal\n"
    "    path: /internal\n"
    "    backends: [{name: i, url: \"http://backend.internal:8443/mcp\"}]\n"
    "    inject: none\n"
    "  - name: leaky\n"
    "    path: /leaky\n"
    "    backends: [{name: l, url: \"http://internal.example/mcp\"}]\n"
    "    inject: none\n"
    "  - name: signed\n"
    "    path: /signed\n"
    "    backends: [{name: s, url: \"http://127.0.0.1:9001/mcp\"}]\n"
    "    inject: {mode: jwt, audience: ehr-backend, ttl: 30s}\n"
    "egress:\n"
    "  allow: [\"127.0.0.1:9001\", \"backend.internal:8443\"]\n"
    "  signing_key: \"%s\"\n"
    "  url_tools:\n"
    "    - {tools: [fetch_url], args: [/url, /more]}\n"
    "    - {tools: [\"web.*\"]}\n"
    "    - {tools: [wiki_fetch], args: [/url], allow: [\"10.1.0.0/16\"]}\n"
    "  url_exempt: [\"summar*\"]\n"
    "  max_url_args: 4\n"
    "  resolve_timeout: 500ms\n"
    "  resolve_cache: {ttl: 30s, entries: 16}\n";

static struct gw_config *cfg;
static char keypath[256];

static int group_setup(void **state)
{
    (void)state;
    char yaml[4096];
    snprintf(keypath, sizeof keypath, "/tmp/toolgate-routing-%d.pem", (int)getpid());
    unlink(keypath);
    /* A configured key must exist: make one with the generator, then point the config at it. */
    {
        char dir[256], cwd[1024];
        snprintf(dir, sizeof dir, "/tmp/toolgate-routing-%d", (int)getpid());
        assert_int_equal(mkdir(dir, 0700), 0);
        assert_non_null(getcwd(cwd, sizeof cwd));
        assert_int_equal(chdir(dir), 0);
        struct gw_config empty = {0};
        struct egress_config ec = {0};
        empty.modules[GW_STAGE_ROUTING] = &ec;
        ec.signing_key = NULL;
        struct gw_route r = {0};
        struct gw_route_inject ri = {.mode = GW_INJECT_JWT};
        r.modules[GW_STAGE_ROUTING] = &ri;
        empty.routes = &r;
        empty.n_routes = 1;
        assert_int_equal(routing_start(&empty), 0);
        routing_stop();
        routing_runtime_free(ec.rt);
        assert_int_equal(rename(ROUTING_DEFAULT_KEY_PATH, keypath), 0);
        assert_int_equal(chdir(cwd), 0);
        rmdir(dir);
    }
    snprintf(yaml, sizeof yaml, base_yaml, keypath);
    struct cfg_error err = {{0}};
    cfg = gw_config_load_string(yaml, "routing.yaml", &err);
    if (!cfg)
        fail_msg("%s", err.msg);
    assert_int_equal(routing_start(cfg), 0);
    routing_set_resolver(fake_resolve, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    routing_set_resolver(NULL, NULL);
    routing_stop();
    gw_config_free(cfg);
    unlink(keypath);
    return 0;
}

static const struct gw_route *route(const char *path)
{
    const struct gw_route *r = gw_config_route_for(cfg, path, strlen(path));
    assert_non_null(r);
    return r;
}

static struct gw_request *make_req(const char *path, const char *body)
{
    struct gw_request *req = gw_request_new(cfg);
    req->route = route(path);
    req->backend = &req->route->backends[0]; /* as the route kind chooses */
    req->identity.verified = 1;
    req->identity.subject = strdup("dr-alice");
    req->identity.roles = calloc(1, sizeof(char *));
    req->identity.scopes = calloc(1, sizeof(char *));
    req->identity.expires_at = (int64_t)(gw_now_ns() / 1000000000u) + 600;
    if (body) {
        struct mcp_limits lim = {0};
        struct mcp_decode_error derr = {0};
        if (mcp_decode(body, strlen(body), &lim, NULL, &req->rpc, &derr) != 0)
            fail_msg("decode: %s", derr.message);
    }
    req->next_stage = GW_STAGE_ROUTING;
    return req;
}

static int check(struct gw_request *req)
{
    return routing_layer.check(req, &req->decision[GW_STAGE_ROUTING]);
}

static const char *call(const char *tool, const char *args_json)
{
    static char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
             "\"%s\",\"arguments\":%s}}",
             tool, args_json);
    return buf;
}

/* ---- config -------------------------------------------------------------------------------- */

static void test_config_parsed(void **state)
{
    (void)state;
    const struct egress_config *ec = egress_config_of(cfg);
    assert_non_null(ec);
    assert_int_equal(ec->allow.n, 2);
    assert_int_equal(ec->allow.entries[1].kind, SSRF_ALLOW_NAME_PORT);
    assert_int_equal(ec->n_url_tools, 3);
    assert_string_equal(ec->url_tools[0].args[1], "/more");
    assert_null(ec->url_tools[1].args);
    assert_int_equal(ec->url_tools[2].allow.n, 1);
    assert_int_equal(ec->max_url_args, 4);
    assert_int_equal(ec->resolve_timeout_ms, 500);
    assert_int_equal(ec->resolve_cache_entries, 16);
    assert_int_equal(routing_inject_of(route("/mcp"))->mode, GW_INJECT_NONE);
    assert_int_equal(routing_inject_of(route("/private"))->mode, GW_INJECT_HEADERS);
    assert_string_equal(routing_inject_of(route("/private"))->headers[GW_INJECT_H_SUBJECT],
                        "X-User");
    assert_string_equal(routing_inject_of(route("/private"))->headers[GW_INJECT_H_TENANT],
                        "X-Toolgate-Tenant");
    assert_int_equal(routing_inject_of(route("/signed"))->ttl_ms, 30000);
    assert_string_equal(routing_inject_of(route("/signed"))->audience, "ehr-backend");

    /* Defaults: no egress section, no inject key. */
    struct cfg_error err = {{0}};
    struct gw_config *d = gw_config_load_string(
        "routes: [{name: a, path: /a, backends: [{name: a, url: \"http://h:1/\"}]}]\n", "d", &err);
    assert_non_null(d);
    assert_non_null(egress_config_of(d));
    assert_int_equal(egress_config_of(d)->allow.n, 0);
    assert_int_equal(egress_config_of(d)->url_args, 1);
    assert_int_equal(egress_config_of(d)->resolve_cache_ttl_ms, 30000);
    assert_null(egress_config_of(d)->signing_key);
    assert_int_equal(routing_inject_of(&d->routes[0])->mode, GW_INJECT_JWT);
    assert_int_equal(routing_inject_of(&d->routes[0])->ttl_ms, 60000);
    assert_null(routing_inject_of(&d->routes[0])->audience);
    gw_config_free(d);
}

static void test_config_errors(void **state)
{
    (void)state;
    static const struct {
        const char *yaml;
        const char *needle;
    } bad[] = {
        {"egress: {allow: [\"10.0.0.1/8\"]}\n", "egress.allow[0]"},
        {"egress: {allow: [\"localhost\"]}\n", "needs a port"},
        {"egress: {allowed: []}\n", "allowed"},
        {"egress: {url_args: maybe}\n", "check (the default) or off"},
        {"egress: {url_exempt: [\"a*b\"]}\n", "prefix ending in '*'"},
        {"egress: {url_tools: [{args: [/url]}]}\n", "`tools` is required"},
        {"egress: {url_tools: [{tools: [a], args: [url]}]}\n", "JSON pointer"},
        {"egress: {url_tools: [{tools: [a], args: []}]}\n", "the list is empty"},
        {"egress: {url_tools: [{tools: [\"a*b\"]}]}\n", "may only end in '*'"},
        {"egress: {url_tools: [{tools: [a], allow: [\"x\"]}]}\n", "url_tools[0].allow[0]"},
        {"egress: {resolve_timeout: 5m}\n", "out of range"},
        {"egress: {resolve_cache: {ttl: 1h}}\n", "out of range"},
        {"egress: {max_url_args: 0}\n", "max_url_args"},
        {"egress: [1]\n", "expected a map"},
        {"routes: [{name: a, path: /a, backends: [{name: a, url: \"http://h:1/\"}], "
         "inject: {mode: token}}]\n",
         "not an injection mode"},
        {"routes: [{name: a, path: /a, backends: [{name: a, url: \"http://h:1/\"}], "
         "inject: {mode: jwt, ttl: 5m}}]\n",
         "from 1s to 60s"},
        {"routes: [{name: a, path: /a, backends: [{name: a, url: \"http://h:1/\"}], "
         "inject: {mode: headers, headers: {subject: Authorization}}}]\n",
         "HTTP or toolgate itself sets"},
        {"routes: [{name: a, path: /a, backends: [{name: a, url: \"http://h:1/\"}], "
         "inject: {mode: headers, headers: {subject: X-A, tenant: x-a}}}]\n",
         "already the header"},
        {"routes: [{name: a, path: /a, backends: [{name: a, url: \"http://h:1/\"}], "
         "inject: {mode: headers, headers: {roles: \"X A\"}}}]\n",
         "not a header name"},
        {"routes: [{name: a, path: /a, backends: [{name: a, url: \"http://h:1/\"}], "
         "inject: {mode: jwt, extra: 1}}]\n",
         "extra"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cfg_error err = {{0}};
        struct gw_config *c = gw_config_load_string(bad[i].yaml, "bad.yaml", &err);
        if (c) {
            gw_config_free(c);
            fail_msg("accepted: %s", bad[i].yaml);
        }
        if (!strstr(err.msg, bad[i].needle))
            fail_msg("error for %s: \"%s\" lacks \"%s\"", bad[i].yaml, err.msg, bad[i].needle);
    }
}

/* ---- backends ------------------------------------------------------------------------------ */

/*
 * A local backend (`command`) is reached on its module's unix socket only: it passes the
 * SSRF guard without vetting and gets the user pseudonym header. A network backend with the
 * very same URL is vetted as always (loopback is not listed here: denied).
 */
static void test_local_backend_passes_only_when_local(void **state)
{
    (void)state;
    struct cfg_error err = {{0}};
    struct gw_config *c = gw_config_load_string(
        "identity: {mode: off}\n"
        "routes:\n"
        "  - {name: l, path: /l, backends: [{name: fs, command: [node, s.js]}]}\n"
        "  - {name: n, path: /n, backends: [{name: fs, url: \"http://localhost/stdio/"
        "routes-0-backends-0\"}]}\n",
        "local.yaml", &err);
    if (!c)
        fail_msg("%s", err.msg);
    assert_int_equal(routing_prepare(cfg, c, &err), 0);
    for (int i = 0; i < 2; i++) {
        const char *p = i == 0 ? "/l" : "/n";
        struct gw_request *req = gw_request_new(c);
        req->route = gw_config_route_for(c, p, 2);
        req->backend = &req->route->backends[0];
        req->identity.verified = 1;
        req->identity.subject = strdup("alice");
        req->next_stage = GW_STAGE_ROUTING;
        if (i == 0) {
            assert_non_null(req->backend->local_socket);
            assert_int_equal(check(req), GW_PASS);
            assert_string_equal(req->upstream_pin, "");
            int has = 0;
            for (size_t h = 0; h < req->n_upstream_headers; h++)
                has |= gw_slice_casecmp_eq(req->upstream_headers[h].name,
                                           "X-Toolgate-Local-Principal");
            assert_true(has);
        } else {
            assert_null(req->backend->local_socket);
            assert_int_equal(check(req), GW_DENY);
            assert_string_equal(req->decision[GW_STAGE_ROUTING].reason_code,
                                "routing.egress_denied");
        }
        gw_request_free(req);
    }
    gw_config_free(c);
}

static void test_backend_literal(void **state)
{
    (void)state;
    struct gw_request *req = make_req("/mcp", NULL);
    assert_int_equal(check(req), GW_PASS);
    assert_ptr_equal(req->backend, &route("/mcp")->backends[0]);
    assert_string_equal(req->upstream_pin, ""); /* a literal needs no pin */
    assert_int_equal(req->n_upstream_headers, 0);
    gw_request_free(req);

    /* 10.0.0.5 is not listed: denied, and the reason does not name the address. */
    req = make_req("/private", NULL);
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_ROUTING].reason_code, "routing.egress_denied");
    assert_int_equal(req->decision[GW_STAGE_ROUTING].http_status, 502);
    assert_null(strstr(req->decision[GW_STAGE_ROUTING].reason, "10.0.0.5"));
    gw_request_free(req);
}

static void test_backend_named(void **state)
{
    (void)state;
    routing_flush_caches();
    fake_calls = 0;
    struct gw_request *req = make_req("/named", NULL);
    assert_int_equal(check(req), GW_PASS);
    assert_string_equal(req->upstream_pin,
                        "public.example:8080:93.184.216.34,[2606:2800:220:1:248:1893:25c8:1946]");
    gw_request_free(req);
    assert_int_equal(fake_calls, 1);
    /* From the cache now: no second lookup, the same pin. */
    req = make_req("/named", NULL);
    assert_int_equal(check(req), GW_PASS);
    assert_int_equal(fake_calls, 1);
    assert_non_null(strstr(req->upstream_pin, "93.184.216.34"));
    gw_request_free(req);

    /* A name entry in egress.allow lets that name reach private addresses on that port. */
    req = make_req("/internal", NULL);
    assert_int_equal(check(req), GW_PASS);
    assert_string_equal(req->upstream_pin, "backend.internal:8443:10.9.9.9");
    gw_request_free(req);

    /* A name that resolves to a private address is denied, whatever the name says. */
    req = make_req("/leaky", NULL);
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_ROUTING].reason_code, "routing.egress_denied");
    assert_string_equal(req->upstream_pin, "");
    gw_request_free(req);

    /* Another part chose the backend: routing keeps that choice. */
    req = make_req("/leaky", NULL);
    req->backend = &route("/named")->backends[0];
    assert_int_equal(check(req), GW_PASS);
    assert_ptr_equal(req->backend, &route("/named")->backends[0]);
    gw_request_free(req);
}

/* ---- URL arguments --------------------------------------------------------------------------- */

struct arg_case {
    const char *tool;
    const char *args;
    int verdict;
    const char *reason_has; /* on deny */
};

static void test_url_arguments(void **state)
{
    (void)state;
    static const struct arg_case cases[] = {
        {"fetch_url", "{\"url\":\"https://public.example/page\"}", GW_PASS, NULL},
        {"fetch_url", "{\"url\":\"http://169.254.169.254/latest\"}", GW_DENY,
         "Argument /url: URLs to 169.254.169.254 are not allowed (link-local address)."},
        {"fetch_url", "{\"url\":\"http://2130706433/\"}", GW_DENY, "127.0.0.1"},
        {"fetch_url", "{\"url\":\"http://[::ffff:10.0.0.1]/\"}", GW_DENY, "private"},
        {"fetch_url", "{\"url\":\"http://internal.example/\"}", GW_DENY,
         "URLs to internal.example are not allowed (private address)"},
        {"fetch_url", "{\"url\":\"http://mixed.example/\"}", GW_DENY, "mixed.example"},
        {"fetch_url", "{\"url\":\"http://metadata.example/\"}", GW_DENY, "link-local"},
        {"fetch_url", "{\"url\":\"http://nxdomain.example/\"}", GW_DENY, "could not be resolved"},
        {"fetch_url", "{\"url\":\"http://localhost:8080/\"}", GW_DENY, "loopback"},
        {"fetch_url", "{\"url\":\"http://secret:hunter2@public.example/\"}", GW_DENY, "userinfo"},
        {"fetch_url", "{\"url\":\"file:///etc/passwd\"}", GW_DENY, "does not use http or https"},
        {"fetch_url", "{\"url\":\"public.example/page\"}", GW_DENY, "not a well-formed URL"},
        {"fetch_url", "{\"url\":42}", GW_DENY, "expected a URL"},
        {"fetch_url", "{\"url\":null}", GW_PASS, NULL},
        /* Beyond the listed pointers, every URL-looking string is vetted too. */
        {"fetch_url", "{\"other\":\"http://127.0.0.1/\"}", GW_DENY, "Argument /other:"},
        {"fetch_url", "{\"other\":\"http:127.0.0.1\"}", GW_DENY, "Argument /other:"},
        {"fetch_url", "{\"more\":[\"https://public.example/\",\"http://10.1.1.1/\"]}", GW_DENY,
         "Argument /more/1:"},
        {"fetch_url", "{\"more\":{\"a\":{\"b\":\"http://127.1/\"},\"c\":\"GET\"}}", GW_DENY,
         "Argument /more/a/b:"},
        {"fetch_url",
         "{\"more\":[\"http://a.example/\",\"http://b.example/\",\"http://c.example/\","
         "\"http://d.example/\",\"http://e.example/\"]}",
         GW_DENY, "too many URLs"},
        {"web.fetch", "{\"q\":\"see http://127.0.0.1/ and more\"}", GW_PASS, NULL},
        {"web.fetch", "{\"deep\":{\"list\":[\"text\",\"gopher://127.0.0.1:6379/_\"]}}", GW_DENY,
         "Argument /deep/list/1:"},
        {"web.fetch", "{\"u\":\"  http://10.0.0.1/\"}", GW_DENY, "Argument /u:"},
        {"web.fetch", "{\"we ird\\n\":\"http://10.0.0.1/\"}", GW_DENY, "Argument /we?ird?:"},
        {"web.search", "{\"u\":\"https://public.example/\"}", GW_PASS, NULL},
        /* On for every tool by default: one nobody listed is vetted all the same. */
        {"webfetch", "{\"u\":\"http://10.0.0.1/\"}", GW_DENY, "Argument /u:"},
        {"anything", "{\"a\":[{\"b\":\"HTTP://[::1]:22/\"}]}", GW_DENY, "Argument /a/0/b:"},
        {"anything", "{\"a\":\"https://public.example/\"}", GW_PASS, NULL},
        /* ...unless the operator opted it out (egress.url_exempt). */
        {"summarize", "{\"url\":\"http://169.254.169.254/\"}", GW_PASS, NULL},
        {"wiki_fetch", "{\"url\":\"http://10.1.2.3/wiki\"}", GW_PASS, NULL},
        {"wiki_fetch", "{\"url\":\"http://internal.example/wiki\"}", GW_PASS, NULL},
        {"wiki_fetch", "{\"url\":\"http://10.2.0.1/wiki\"}", GW_DENY, "private"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct gw_request *req = make_req("/mcp", call(cases[i].tool, cases[i].args));
        int v = check(req);
        const struct gw_decision *d = &req->decision[GW_STAGE_ROUTING];
        if (v != cases[i].verdict)
            fail_msg("case %zu %s %s: verdict %d (%s)", i, cases[i].tool, cases[i].args, v,
                     d->reason);
        if (v == GW_DENY) {
            assert_string_equal(d->reason_code, "routing.ssrf");
            assert_int_equal(d->http_status, 200);
            assert_int_equal(d->jsonrpc_code, 0);
            if (!strstr(d->reason, cases[i].reason_has))
                fail_msg("case %zu: reason \"%s\" lacks \"%s\"", i, d->reason, cases[i].reason_has);
            /* Never more than the host: no path, no credentials. */
            assert_null(strstr(d->reason, "hunter2"));
            assert_null(strstr(d->reason, "/latest"));
        }
        gw_request_free(req);
    }

    /* In a batch every call is vetted. */
    char body[1024];
    snprintf(body, sizeof body,
             "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":"
             "\"fetch_url\",\"arguments\":{\"url\":\"https://public.example/\"}}},"
             "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":"
             "\"fetch_url\",\"arguments\":{\"url\":\"http://10.0.0.1/\"}}}]");
    struct gw_request *req = gw_request_new(cfg);
    req->route = route("/mcp");
    req->backend = &req->route->backends[0]; /* as the route kind chooses */
    struct mcp_limits lim = {0};
    struct mcp_decode_error derr = {0};
    assert_int_equal(mcp_decode(body, strlen(body), &lim, "2025-03-26", &req->rpc, &derr), 0);
    assert_int_equal(check(req), GW_DENY);
    gw_request_free(req);
}

static void test_url_args_off(void **state)
{
    (void)state;
    struct cfg_error err = {{0}};
    struct gw_config *c = gw_config_load_string(
        "routes: [{name: a, path: /a, backends: [{name: a, url: \"http://8.8.8.8/\"}], inject: "
        "none}]\negress: {url_args: off, url_tools: [{tools: [fetch_url]}]}\n",
        "off.yaml", &err);
    assert_non_null(c);
    struct gw_request *req = gw_request_new(c);
    req->route = &c->routes[0];
    req->backend = &req->route->backends[0]; /* as the route kind chooses */
    const char *body = call("fetch_url", "{\"url\":\"http://127.0.0.1/\"}");
    struct mcp_limits lim = {0};
    struct mcp_decode_error derr = {0};
    assert_int_equal(mcp_decode(body, strlen(body), &lim, NULL, &req->rpc, &derr), 0);
    assert_int_equal(check(req), GW_PASS);
    gw_request_free(req);
    gw_config_free(c);
}

/* ---- injection through check() --------------------------------------------------------------- */

static void test_inject_through_check(void **state)
{
    (void)state;
    struct gw_request *req = make_req("/signed", NULL);
    assert_int_equal(check(req), GW_PASS);
    assert_int_equal(req->n_upstream_headers, 1);
    assert_true(gw_slice_casecmp_eq(req->upstream_headers[0].name, "Authorization"));
    gw_request_free(req);

    /* No verified subject: nothing to pass on, so the call does not go out. */
    req = make_req("/signed", NULL);
    free(req->identity.subject);
    req->identity.subject = NULL;
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_ROUTING].reason_code, "routing.no_identity");
    gw_request_free(req);

    struct gw_buf jwks = {0};
    assert_int_equal(routing_jwks_json(cfg, &jwks), 0);
    assert_non_null(strstr(jwks.data, "\"kty\":\"OKP\""));
    gw_buf_free(&jwks);
}

/* ---- the asynchronous path ---------------------------------------------------------------------
 */

static int done_verdict = -1;

static void on_done(struct gw_request *req, int verdict)
{
    (void)req;
    done_verdict = verdict;
}

/* A name from the hosts file (no DNS traffic), or NULL. */
static int hosts_name(char *out, size_t cap)
{
    FILE *f = fopen("/etc/hosts", "r");
    char line[512];
    int found = 0;
    while (f && !found && fgets(line, sizeof line, f)) {
        char addr[64], name[256];
        if (line[0] == '#' || sscanf(line, "%63s %255s", addr, name) != 2)
            continue;
        if (strchr(addr, ':') || strcmp(name, "localhost") == 0 || strchr(name, '.'))
            continue;
        snprintf(out, cap, "%s", name);
        found = 1;
    }
    if (f)
        fclose(f);
    return found;
}

static void test_async_lookup(void **state)
{
    (void)state;
    char name[256], yaml[1024];
    if (!hosts_name(name, sizeof name))
        skip();
    snprintf(yaml, sizeof yaml,
             "routes: [{name: a, path: /a, backends: [{name: a, url: \"http://%s:9001/\"}], "
             "inject: none}]\negress: {allow: [\"%s:9001\"]}\n",
             name, name);
    struct cfg_error err = {{0}};
    struct gw_config *c = gw_config_load_string(yaml, "async.yaml", &err);
    assert_non_null(c);
    /* Its runtime (resolve cache) as a reload builds it beside the running one. */
    assert_int_equal(routing_prepare(cfg, c, &err), 0);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    routing_set_resolver(NULL, NULL);
    routing_set_test_loop(&loop);
    routing_flush_caches();

    struct gw_request *req = gw_request_new(c);
    req->route = &c->routes[0];
    req->backend = &req->route->backends[0]; /* as the route kind chooses */
    req->next_stage = GW_STAGE_ROUTING;
    req->pipeline_done = on_done;
    done_verdict = -1;
    assert_int_equal(check(req), GW_ASYNC);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_not_equal(done_verdict, -1);
    assert_int_equal(req->decision[GW_STAGE_ROUTING].verdict, GW_PASS);
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s:9001:", name);
    assert_int_equal(strncmp(req->upstream_pin, prefix, strlen(prefix)), 0);
    gw_request_free(req);

    /* The same name is now cached: decided at once. */
    req = gw_request_new(c);
    req->route = &c->routes[0];
    req->backend = &req->route->backends[0]; /* as the route kind chooses */
    assert_int_equal(check(req), GW_PASS);
    gw_request_free(req);

    routing_set_test_loop(NULL);
    routing_set_resolver(fake_resolve, NULL);
    assert_int_equal(uv_loop_close(&loop), 0);
    gw_config_free(c);
}

/* The backend is the route kind's choice; a request that reached routing without one is denied. */
static void test_no_backend_chosen_fails_closed(void **state)
{
    (void)state;
    struct gw_request *req = make_req("/mcp", NULL);
    req->backend = NULL;
    assert_int_equal(check(req), GW_DENY);
    assert_string_equal(req->decision[GW_STAGE_ROUTING].reason_code, "routing.no_backend");
    assert_int_equal(req->n_upstream_headers, 0);
    gw_request_free(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_parsed),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_no_backend_chosen_fails_closed),
        cmocka_unit_test(test_backend_literal),
        cmocka_unit_test(test_backend_named),
        cmocka_unit_test(test_url_arguments),
        cmocka_unit_test(test_url_args_off),
        cmocka_unit_test(test_inject_through_check),
        cmocka_unit_test(test_async_lookup),
        cmocka_unit_test(test_local_backend_passes_only_when_local),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
