/*
 * Tests for the admin API's pure parts: the feed ring (order, wrap-around, skipping ahead),
 * the event a completed request leaves in it (no argument values, a tool name with PII in it
 * redacted), the elision of secrets from the configuration, and the query string parser.
 */
#include "fixtures.h"

#include "admin/admin_api.h"
#include "lib/cfg.h"

#include <string.h>

/* ---- the feed ring ---- */

static struct admin_feed_event event(const char *tool)
{
    struct admin_feed_event ev;
    memset(&ev, 0, sizeof ev);
    snprintf(ev.tool, sizeof ev.tool, "%s", tool);
    snprintf(ev.decision, sizeof ev.decision, "allow");
    return ev;
}

static void test_ring_order_and_after(void **state)
{
    (void)state;
    admin_feed_reset();
    struct admin_feed_event out[8];
    uint64_t skipped = 99;
    assert_int_equal(admin_feed_read(0, out, 8, &skipped), 0);
    assert_int_equal(skipped, 0);
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", i);
        struct admin_feed_event ev = event(name);
        admin_feed_push(&ev);
    }
    assert_int_equal(admin_feed_last_seq(), 5);
    assert_int_equal(admin_feed_read(0, out, 8, &skipped), 5);
    assert_int_equal(skipped, 0);
    assert_int_equal(out[0].seq, 1);
    assert_string_equal(out[0].tool, "t0");
    assert_int_equal(out[4].seq, 5);
    /* After a seq: only later ones; `max` bounds the copy. */
    assert_int_equal(admin_feed_read(3, out, 8, &skipped), 2);
    assert_string_equal(out[0].tool, "t3");
    assert_int_equal(admin_feed_read(0, out, 2, &skipped), 2);
    assert_int_equal(out[1].seq, 2);
    /* A seq from the future (before a restart) starts at the end, not at the beginning. */
    assert_int_equal(admin_feed_read(1000, out, 8, &skipped), 0);
    assert_int_equal(skipped, 0);
}

static void test_ring_wraps_and_skips_ahead(void **state)
{
    (void)state;
    admin_feed_reset();
    const int total = ADMIN_FEED_CAPACITY + 100;
    for (int i = 0; i < total; i++) {
        struct admin_feed_event ev = event("x");
        ev.latency_us = (uint64_t)i;
        admin_feed_push(&ev);
    }
    static struct admin_feed_event out[ADMIN_FEED_CAPACITY];
    uint64_t skipped = 0;
    /* A reader at 10 lost everything the ring overwrote since: it is told how many. */
    size_t n = admin_feed_read(10, out, ADMIN_FEED_CAPACITY, &skipped);
    assert_int_equal(n, ADMIN_FEED_CAPACITY);
    assert_int_equal(skipped, 100 - 10);
    assert_int_equal(out[0].seq, 101);
    assert_int_equal(out[0].latency_us, 100);
    assert_int_equal(out[n - 1].seq, (uint64_t)total);
    admin_feed_reset();
}

/* ---- the event of a request ---- */

static const char *CFG = "routes: [{name: r, path: /mcp, backends: [{name: b, url: "
                         "\"http://127.0.0.1:1\"}]}]\n";

static void test_request_event_has_no_values(void **state)
{
    (void)state;
    admin_feed_reset();
    struct gw_config *cfg = fx_load_ok(CFG);
    struct gw_request *req = fx_req_on(cfg, "/mcp");
    fx_req_add_message(req, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":"
                            "{\"name\":\"get_patient\",\"arguments\":{\"ssn\":\"123-45-6789\"}}}");
    admin_feed_request_done(req);
    struct admin_feed_event out[2];
    uint64_t skipped;
    assert_int_equal(admin_feed_read(0, out, 2, &skipped), 1);
    assert_string_equal(out[0].tool, "get_patient");
    assert_string_equal(out[0].route, "r");
    assert_string_equal(out[0].method, "tools/call");
    assert_string_equal(out[0].decision, "allow");
    json_t *j = admin_feed_event_json(&out[0]);
    char *text = json_dumps(j, 0);
    assert_null(strstr(text, "123-45-6789"));
    assert_null(strstr(text, "arguments"));
    free(text);
    json_decref(j);

    /* PII found in the tool's name: the name is not shown. */
    struct gw_finding *f = gw_findings_push(&req->findings);
    snprintf(f->type, sizeof f->type, "ssn");
    snprintf(f->path, sizeof f->path, "/params/name");
    f->count = 1;
    admin_feed_request_done(req);
    assert_int_equal(admin_feed_read(1, out, 2, &skipped), 1);
    assert_string_equal(out[0].tool, "[redacted]");
    assert_int_equal(out[0].pii_findings, 1);
    gw_request_free(req);
    gw_config_free(cfg);
    admin_feed_reset();
}

/* ---- elision ---- */

static void test_secret_key_names(void **state)
{
    (void)state;
    const char *secret[] = {"token_file", "signing_key",      "key",     "client_secret",
                            "password",   "hmac_key",         "api_key", "Authorization",
                            "cookie",     "private_key_file", "salt",    "credentials",
                            "TOKEN"};
    const char *plain[] = {"listen", "url", "name", "path", "store", "cert", "tools", "roles"};
    for (size_t i = 0; i < sizeof secret / sizeof *secret; i++)
        assert_true(admin_elide_key_is_secret(secret[i]));
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++)
        assert_false(admin_elide_key_is_secret(plain[i]));
}

static void expect_elided(const char *in, const char *want)
{
    char *got = admin_elide_string(in);
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fail_msg("elide(\"%s\") = \"%s\", want \"%s\"", in, got, want);
    free(got);
}

static void test_secret_strings(void **state)
{
    (void)state;
    expect_elided("postgres://audit:s3cret@db:5432/toolgate",
                  "postgres://[elided]@db:5432/toolgate");
    expect_elided("redis://:pw@127.0.0.1:6379", "redis://[elided]@127.0.0.1:6379");
    expect_elided("http://a@b@host/x@y", "http://[elided]@host/x@y");
    expect_elided("host=db password=s3cret dbname=x", "host=db password=[elided] dbname=x");
    expect_elided("https://h/p?user=a&password=s3cret&x=1",
                  "https://h/p?user=a&password=[elided]&x=1");
    expect_elided("http://127.0.0.1:8080/mcp", "http://127.0.0.1:8080/mcp");
    expect_elided("sqlite:audit.db", "sqlite:audit.db");
    expect_elided("", "");
    /* Every "password=" grows by the marker: the output must have room for all of them. */
    char many[64 * 10 + 1] = "", want[64 * 18 + 1] = "";
    for (int i = 0; i < 64; i++) {
        strcat(many, i ? "&password=" : "password=");
        strcat(want, i ? "&password=[elided]" : "password=[elided]");
    }
    expect_elided(many, want);
}

static void test_elide_document(void **state)
{
    (void)state;
    static const char yaml[] =
        "admin: {listen: \"127.0.0.1:9090\", token_file: /run/secrets/admin, tls: {cert: c.pem, "
        "key: k.pem}}\n"
        "audit: {store: \"postgres://u:hunter2@db/x\", signing_key: /k.pem}\n"
        "routes:\n"
        "  - name: r\n"
        "    backends: [{name: b, url: \"http://u:hunter3@h/\", headers: {X-Api: hunter4}}]\n"
        "identity: {issuers: [{client_secret: hunter5, nested: {deep: [1, {password: "
        "hunter6}]}}]}\n";
    struct cfg_doc doc = {0};
    struct cfg_error err = {{0}};
    assert_int_equal(cfg_load_string(yaml, sizeof yaml - 1, "t.yaml", &doc, &err), 0);
    json_t *j = admin_elide_node(doc.root);
    char *text = json_dumps(j, JSON_SORT_KEYS);
    for (int i = 2; i <= 6; i++) {
        char secret[32];
        snprintf(secret, sizeof secret, "hunter%d", i);
        if (strstr(text, secret))
            fail_msg("%s survived: %s", secret, text);
    }
    assert_null(strstr(text, "/run/secrets/admin"));
    assert_null(strstr(text, "k.pem"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "admin"), "listen")),
                        "127.0.0.1:9090");
    json_t *tls = json_object_get(json_object_get(j, "admin"), "tls");
    assert_string_equal(json_string_value(json_object_get(tls, "cert")), "c.pem");
    assert_string_equal(json_string_value(json_object_get(tls, "key")), "[elided]");
    json_t *headers = json_object_get(
        json_array_get(json_object_get(json_array_get(json_object_get(j, "routes"), 0), "backends"),
                       0),
        "headers");
    assert_string_equal(json_string_value(json_object_get(headers, "X-Api")), "[elided]");
    free(text);
    json_decref(j);
    cfg_doc_free(&doc);
}

/* ---- query strings ---- */

static void expect_query_error(const char *q)
{
    json_t *out = NULL;
    char err[256] = "";
    if (admin_api_parse_query((struct gw_slice){q, strlen(q)}, &out, err, sizeof err) == 0) {
        json_decref(out);
        fail_msg("\"%s\" was accepted", q);
    }
    assert_true(err[0] != '\0');
}

static void test_query_strings(void **state)
{
    (void)state;
    json_t *out = NULL;
    char err[256];
    const char *q = "decision=deny&tool=get%5Fpatient&user=a+b&&empty=&flag";
    assert_int_equal(admin_api_parse_query((struct gw_slice){q, strlen(q)}, &out, err, sizeof err),
                     0);
    assert_string_equal(json_string_value(json_object_get(out, "decision")), "deny");
    assert_string_equal(json_string_value(json_object_get(out, "tool")), "get_patient");
    assert_string_equal(json_string_value(json_object_get(out, "user")), "a b");
    assert_string_equal(json_string_value(json_object_get(out, "empty")), "");
    assert_string_equal(json_string_value(json_object_get(out, "flag")), "");
    json_decref(out);
    assert_int_equal(admin_api_parse_query(GW_SLICE_NULL, &out, err, sizeof err), 0);
    assert_int_equal(json_object_size(out), 0);
    json_decref(out);

    expect_query_error("a=%zz");
    expect_query_error("a=%4");
    expect_query_error("a=%00");
    expect_query_error("a=%0a");
    expect_query_error("a=%ff"); /* not UTF-8 */
    expect_query_error("A=1");   /* names are lower case */
    expect_query_error("=1");
    expect_query_error("a=1&a=2");
    char big[600];
    memset(big, 'v', sizeof big);
    memcpy(big, "a=", 2);
    big[sizeof big - 1] = '\0';
    expect_query_error(big);
    char many[400] = "";
    for (int i = 0; i <= ADMIN_API_MAX_PARAMS; i++) {
        char part[32];
        snprintf(part, sizeof part, "%sp%c=1", i ? "&" : "", 'a' + i);
        strcat(many, part);
    }
    expect_query_error(many);
}

/* ---- admin.tls ---- */

static void test_admin_tls_config(void **state)
{
    (void)state;
    char dir[256], yaml[1024], cert[300], key[300];
    fx_mkdtemp(dir, sizeof dir);
    snprintf(cert, sizeof cert, "%s/c.pem", dir);
    snprintf(key, sizeof key, "%s/k.pem", dir);
    FILE *fp = fopen(cert, "w");
    fputs("test certificate placeholder\n", fp);
    fclose(fp);
    fp = fopen(key, "w");
    fputs("test key placeholder\n", fp);
    fclose(fp);
    snprintf(yaml, sizeof yaml, "admin: {tls: {cert: \"%s\", key: \"%s\"}}\n", cert, key);
    struct gw_config *cfg = fx_load_ok(yaml);
    assert_string_equal(cfg->admin.listen.tls_cert, cert);
    assert_string_equal(cfg->admin.listen.tls_key, key);
    gw_config_free(cfg);
    cfg = fx_load_ok("admin: {}\n");
    assert_null(cfg->admin.listen.tls_cert);
    gw_config_free(cfg);
    snprintf(yaml, sizeof yaml, "admin: {tls: {cert: \"%s\"}}\n", cert);
    fx_expect_error(yaml, NULL, NULL, "admin.tls");
    snprintf(yaml, sizeof yaml, "admin: {tls: {cert: \"%s\", key: \"%s/missing\"}}\n", cert, dir);
    fx_expect_error(yaml, NULL, NULL, "admin.tls.key");
    fx_expect_error("admin: {tls: {cert: a, key: b, extra: c}}\n", NULL, NULL, "extra");
    fx_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_order_and_after),
        cmocka_unit_test(test_ring_wraps_and_skips_ahead),
        cmocka_unit_test(test_request_event_has_no_values),
        cmocka_unit_test(test_secret_key_names),
        cmocka_unit_test(test_secret_strings),
        cmocka_unit_test(test_elide_document),
        cmocka_unit_test(test_query_strings),
        cmocka_unit_test(test_admin_tls_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
