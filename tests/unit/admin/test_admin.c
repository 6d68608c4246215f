/*
 * Tests for the admin listener: the `admin` section, who may ask (admin_authorize), and the
 * handler served by the real server beside a gateway listener with a handler of its own.
 */
#include "fixtures.h"

#include <stdatomic.h>
#include <sys/time.h>

#include "admin/admin.h"
#include "core/server.h"
#include "lib/digest.h"
#include "lib/log.h"

/* ---- configuration ---- */

static void test_config_absent_is_off(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("server: {listen: [\"127.0.0.1:8080\"]}\n");
    assert_false(cfg->admin.enabled);
    gw_config_free(cfg);
    cfg = fx_load_ok("admin:\n");
    assert_false(cfg->admin.enabled);
    gw_config_free(cfg);
}

static void test_config_defaults(void **state)
{
    (void)state;
    struct gw_config *cfg = fx_load_ok("admin: {}\n");
    assert_true(cfg->admin.enabled);
    assert_string_equal(cfg->admin.listen.address, "127.0.0.1:9090");
    assert_int_equal(cfg->admin.listen.port, 9090);
    assert_false(cfg->admin.has_token);
    gw_config_free(cfg);
    cfg = fx_load_ok("admin: {listen: \"[::1]:9191\"}\n");
    assert_string_equal(cfg->admin.listen.host, "::1");
    gw_config_free(cfg);
}

static void test_config_errors(void **state)
{
    (void)state;
    fx_expect_error("admin: {listen: \"0.0.0.0:9090\"}\n", "1:17", "admin.listen",
                    "not a loopback address and admin.token_file is not set");
    fx_expect_error("admin: {listen: \":9090\"}\n", NULL, "admin.listen", "not a loopback");
    fx_expect_error("admin: {listen: \"localhost:9090\"}\n", NULL, "admin.listen",
                    "names are not resolved");
    fx_expect_error("admin: {port: 9090}\n", NULL, "admin", "port");
    fx_expect_error("admin: [a]\n", NULL, "admin", "expected a map");
    fx_expect_error("server: {listen: [\"0.0.0.0:9090\"]}\nadmin: {}\n", NULL, "admin.listen",
                    "shares its port with server.listen[0]");
    fx_expect_error("server: {listen: [\"127.0.0.1:9090\"]}\nadmin: {}\n", NULL, "admin.listen",
                    "shares its port");
    fx_expect_error("admin: {token_file: /nonexistent/token}\n", NULL, "admin.token_file",
                    "cannot read");
    char *shortf = fx_write_file("short-token", "abc\n");
    char yaml[700];
    snprintf(yaml, sizeof yaml, "admin: {token_file: \"%s\"}\n", shortf);
    fx_expect_error(yaml, NULL, "admin.token_file", "shorter than 16");
    char *spaced = fx_write_file("spaced-token", "0123456789 abcdefghij\n");
    snprintf(yaml, sizeof yaml, "admin: {token_file: \"%s\"}\n", spaced);
    fx_expect_error(yaml, NULL, "admin.token_file", "not printable ASCII");
    free(shortf);
    free(spaced);
}

static void test_config_token_trimmed(void **state)
{
    (void)state;
    char *file = fx_write_file("token", "  \tsecret-token-0123456789\r\n\n");
    char yaml[700];
    snprintf(yaml, sizeof yaml, "admin: {listen: \"0.0.0.0:9090\", token_file: \"%s\"}\n", file);
    struct gw_config *cfg = fx_load_ok(yaml);
    assert_true(cfg->admin.has_token);
    uint8_t want[32];
    gw_sha256("secret-token-0123456789", 23, want);
    assert_memory_equal(cfg->admin.token_sha256, want, 32);
    gw_config_free(cfg);
    free(file);
}

/* ---- who may ask ---- */

static struct sockaddr_storage peer4(const char *ip)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a->sin_addr);
    return ss;
}

static struct sockaddr_storage peer6(const char *ip)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &a->sin6_addr);
    return ss;
}

static struct gw_slice sl(const char *s)
{
    return s ? (struct gw_slice){s, strlen(s)} : GW_SLICE_NULL;
}

static void test_loopback_peers(void **state)
{
    (void)state;
    struct sockaddr_storage p;
    p = peer4("127.0.0.1");
    assert_true(admin_peer_is_loopback(&p));
    p = peer4("127.8.9.10");
    assert_true(admin_peer_is_loopback(&p));
    p = peer4("10.0.0.1");
    assert_false(admin_peer_is_loopback(&p));
    p = peer6("::1");
    assert_true(admin_peer_is_loopback(&p));
    p = peer6("::ffff:127.0.0.1");
    assert_true(admin_peer_is_loopback(&p));
    p = peer6("::ffff:10.0.0.1");
    assert_false(admin_peer_is_loopback(&p));
    p = peer6("fe80::1");
    assert_false(admin_peer_is_loopback(&p));
}

static void test_authorize_without_token(void **state)
{
    (void)state;
    struct gw_admin_config ac = {.enabled = 1};
    struct sockaddr_storage lo = peer4("127.0.0.1"), far = peer4("192.0.2.7");
    assert_int_equal(admin_authorize(&ac, &lo, GW_SLICE_NULL, 0), 0);
    assert_int_equal(admin_authorize(&ac, &far, GW_SLICE_NULL, 0), 403);
    /* A token sent anyway changes nothing. */
    assert_int_equal(admin_authorize(&ac, &far, sl("Bearer whatever-it-is"), 1), 403);
}

static void test_authorize_with_token(void **state)
{
    (void)state;
    struct gw_admin_config ac = {.enabled = 1, .has_token = 1};
    gw_sha256("secret-token-0123456789", 23, ac.token_sha256);
    struct sockaddr_storage lo = peer4("127.0.0.1"), far = peer6("2001:db8::5");
    assert_int_equal(admin_authorize(&ac, &far, sl("Bearer secret-token-0123456789"), 1), 0);
    assert_int_equal(admin_authorize(&ac, &lo, sl("bearer secret-token-0123456789"), 1), 0);
    assert_int_equal(admin_authorize(&ac, &far, sl("Bearer  secret-token-0123456789 "), 1), 0);
    /* Loopback does not stand in for the token once one is configured. */
    assert_int_equal(admin_authorize(&ac, &lo, GW_SLICE_NULL, 0), 401);
    assert_int_equal(admin_authorize(&ac, &far, sl("Basic c2VjcmV0"), 1), 401);
    assert_int_equal(admin_authorize(&ac, &far, sl("Bearer "), 1), 401);
    assert_int_equal(admin_authorize(&ac, &far, sl("Bearer"), 1), 401);
    assert_int_equal(admin_authorize(&ac, &far, sl("Bearer secret-token-0123456789"), 2), 401);
    assert_int_equal(admin_authorize(&ac, &far, sl("Bearer secret-token-012345678"), 1), 403);
    assert_int_equal(admin_authorize(&ac, &far, sl("Bearer secret-token-01234567890"), 1), 403);
    assert_int_equal(admin_authorize(&ac, &far, sl("Bearer SECRET-TOKEN-0123456789"), 1), 403);
    /* The slice's length is the truth: bytes after it are not part of the token. */
    struct gw_slice cut = {"Bearer secret-token-0123456789XYZ", 30};
    assert_int_equal(admin_authorize(&ac, &far, cut, 1), 0);
}

/* ---- served by the server, beside a gateway listener ---- */

static void main_handle(void *ctx, struct gw_conn *c, struct http1_parser *p)
{
    (void)ctx;
    (void)p;
    gw_conn_respond(c, 200, "text/plain", "main", 4, NULL, 0);
    gw_conn_end(c, 0);
}

struct running {
    struct gw_config *cfg;
    pthread_t thread;
    int main_port, admin_port;
    char *token_file;
};

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* One request on a fresh connection; returns the status and copies the whole answer. */
static int ask(int port, const char *request, char *answer, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    size_t len = strlen(request);
    if (write(fd, request, len) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    size_t got = 0;
    ssize_t n;
    while (got + 1 < cap && (n = read(fd, answer + got, cap - 1 - got)) > 0)
        got += (size_t)n;
    answer[got] = '\0';
    close(fd);
    return got > 12 ? atoi(answer + 9) : -1;
}

static int get(int port, const char *path, const char *auth, char *answer, size_t cap)
{
    char req[512];
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%sConnection: close\r\n\r\n", path,
             auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "");
    return ask(port, req, answer, cap);
}

static void *server_thread(void *arg)
{
    struct running *r = arg;
    struct gw_server_listener ls[] = {
        {&r->cfg->server.listen[0], NULL, {main_handle, NULL}},
        {&r->cfg->admin.listen, "admin", *admin_handler()},
    };
    gw_server_run_listeners(r->cfg, ls, 2);
    gw_server_release_signals();
    return NULL;
}

static int start(void **state, int with_token)
{
    struct running *r = calloc(1, sizeof *r);
    r->main_port = free_port();
    r->admin_port = free_port();
    char yaml[1024], token[600] = "";
    if (with_token) {
        r->token_file = fx_write_file("served-token", "served-token-0123456789\n");
        snprintf(token, sizeof token, ", token_file: \"%s\"", r->token_file);
    }
    snprintf(yaml, sizeof yaml,
             "server: {listen: [\"127.0.0.1:%d\"], workers: 1, limits: {shutdown_timeout: 1s}}\n"
             "admin: {listen: \"127.0.0.1:%d\"%s}\n",
             r->main_port, r->admin_port, token);
    r->cfg = fx_load_ok(yaml);
    pthread_create(&r->thread, NULL, server_thread, r);
    char buf[4096];
    for (int i = 0; i < 200; i++) {
        if (get(r->admin_port, "/healthz", NULL, buf, sizeof buf) > 0) {
            *state = r;
            return 0;
        }
        usleep(10000);
    }
    return -1;
}

static int setup_plain(void **state)
{
    return start(state, 0);
}

static int setup_token(void **state)
{
    return start(state, 1);
}

static int teardown(void **state)
{
    struct running *r = *state;
    gw_server_stop(1);
    pthread_join(r->thread, NULL);
    gw_config_free(r->cfg);
    free(r->token_file);
    free(r);
    return 0;
}

static void test_served_each_listener_its_handler(void **state)
{
    struct running *r = *state;
    char buf[65536];
    assert_int_equal(get(r->main_port, "/healthz", NULL, buf, sizeof buf), 200);
    assert_non_null(strstr(buf, "\r\n\r\nmain"));
    assert_int_equal(get(r->admin_port, "/healthz", NULL, buf, sizeof buf), 200);
    assert_non_null(strstr(buf, "{\"status\":\"ok\"}"));
    assert_int_equal(get(r->admin_port, "/mcp", NULL, buf, sizeof buf), 404);
    assert_int_equal(get(r->admin_port, "/.well-known/jwks.json", NULL, buf, sizeof buf), 404);
    assert_int_equal(
        ask(r->admin_port,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            buf, sizeof buf),
        405);
    assert_int_equal(get(r->admin_port, "/metrics", NULL, buf, sizeof buf), 200);
    assert_non_null(strstr(buf, "Content-Type: text/plain; version=0.0.4"));
    assert_non_null(strstr(buf, "\ntoolgate_build_info{version=\""));
    assert_non_null(strstr(buf, "\ntoolgate_open_connections "));
    /* No module runtime was started here: the audit writer is down, so not ready. */
    assert_int_equal(get(r->admin_port, "/readyz", NULL, buf, sizeof buf), 503);
    assert_non_null(strstr(buf, "\"config\":{\"state\":\"ok\"}"));
    assert_non_null(strstr(buf, "\"audit_store\":{\"detail\":\"the audit writer is not running\","
                                "\"state\":\"failing\"}"));
    assert_non_null(strstr(buf, "\"status\":\"not_ready\""));
}

static void test_served_token(void **state)
{
    struct running *r = *state;
    char buf[65536];
    assert_int_equal(get(r->admin_port, "/healthz", NULL, buf, sizeof buf), 401);
    assert_non_null(strstr(buf, "WWW-Authenticate: Bearer realm=\"toolgate-admin\""));
    assert_int_equal(get(r->admin_port, "/metrics", "Bearer nope-nope-nope-nope", buf, sizeof buf),
                     403);
    assert_int_equal(
        get(r->admin_port, "/healthz", "Bearer served-token-0123456789", buf, sizeof buf), 200);
    assert_int_equal(
        get(r->admin_port, "/nothing", "Bearer served-token-0123456789", buf, sizeof buf), 404);
    /* Unauthenticated requests learn nothing, not even which paths exist. */
    assert_int_equal(get(r->admin_port, "/nothing", NULL, buf, sizeof buf), 401);
}

int main(void)
{
    gw_log_setup(GW_LOG_ERROR, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_absent_is_off),
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_token_trimmed),
        cmocka_unit_test(test_loopback_peers),
        cmocka_unit_test(test_authorize_without_token),
        cmocka_unit_test(test_authorize_with_token),
        cmocka_unit_test_setup_teardown(test_served_each_listener_its_handler, setup_plain,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_served_token, setup_token, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fx_rm_tmpdir();
    return rc;
}
