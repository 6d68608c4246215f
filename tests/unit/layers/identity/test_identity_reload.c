/* identity reload: prepare/commit/abort, keys carried over or fetched, token cache flushed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fixtures.h"
#include "layers/identity/keystore.h"
#include "layers/identity/token_cache.h"
#include "layers/layer.h"
#include "mcp/session.h"

#define ISSUER2 "https://idp2.test/"

static char *rsa_path, *p256_path;

/* One or two file issuers: FX_ISSUER (keys at path1) and, when path2, ISSUER2. */
static struct fx_config *file_config_of(const char *issuer1, const char *path1, const char *aud1,
                                        const char *path2, const char *extra)
{
    char yaml[4096];
    int n = snprintf(yaml, sizeof yaml,
                     "identity:\n"
                     "  issuers:\n"
                     "    - issuer: \"%s\"\n"
                     "      audiences: [\"%s\"]\n"
                     "      jwks_file: \"%s\"\n",
                     issuer1, aud1, path1);
    if (path2)
        n += snprintf(yaml + n, sizeof yaml - (size_t)n,
                      "    - issuer: \"%s\"\n"
                      "      audiences: [\"%s\"]\n"
                      "      jwks_file: \"%s\"\n",
                      ISSUER2, FX_AUD, path2);
    snprintf(yaml + n, sizeof yaml - (size_t)n, "%s", extra ? extra : "");
    struct cfg_error err;
    struct fx_config *fx = fx_config_yaml(yaml, &err);
    if (!fx)
        fail_msg("config: %s", err.msg);
    return fx;
}

static struct fx_config *file_config(const char *path1, const char *aud1, const char *path2,
                                     const char *extra)
{
    return file_config_of(FX_ISSUER, path1, aud1, path2, extra);
}

static struct identity_config *ic_of(struct fx_config *fx)
{
    return (struct identity_config *)identity_config_of(&fx->cfg);
}

/* Runs the layer on fx with the token; returns the verdict and copies the reason code. */
static int check_token(struct fx_config *fx, const char *tok, char *reason, size_t len)
{
    char h[4096];
    snprintf(h, sizeof h, "Bearer %s", tok);
    struct fx_request *r = fx_request(fx, NULL, "Authorization", h, NULL);
    struct gw_decision *d = &r->req->decision[GW_STAGE_IDENTITY];
    int v = identity_layer.check(r->req, d);
    if (reason)
        snprintf(reason, len, "%s", v == GW_DENY ? d->reason_code : "");
    if (v == GW_DENY && d->http_status == 401)
        assert_non_null(strstr(r->req->www_authenticate, "Bearer "));
    fx_request_free(r);
    return v;
}

static int prepare(struct fx_config *running, struct fx_config *next, struct cfg_error *err)
{
    memset(err, 0, sizeof *err);
    return identity_reload_prepare(ic_of(running), ic_of(next), err);
}

static void test_new_issuer_and_removed_issuer(void **state)
{
    (void)state;
    struct fx_config *a = file_config(rsa_path, FX_AUD, NULL, NULL);
    assert_int_equal(identity_start(ic_of(a)), 0);
    char *t1 = fx_token(FX_RSA, NULL);
    char *t2 = fx_token(FX_P256, "{\"iss\": \"" ISSUER2 "\"}");
    char reason[64];
    assert_int_equal(check_token(a, t1, NULL, 0), GW_PASS);
    assert_int_equal(check_token(a, t2, reason, sizeof reason), GW_DENY);
    assert_string_equal(reason, "identity.bad_issuer");

    /* The next generation adds ISSUER2: its token passes there, the running one still refuses. */
    struct fx_config *b = file_config(rsa_path, FX_AUD, p256_path, NULL);
    struct cfg_error err;
    assert_int_equal(prepare(a, b, &err), 0);
    assert_int_equal(check_token(b, t2, NULL, 0), GW_PASS);
    assert_int_equal(check_token(b, t1, NULL, 0), GW_PASS);
    assert_int_equal(check_token(a, t2, reason, sizeof reason), GW_DENY);
    identity_reload_commit(ic_of(b));
    /* The key sets of both generations stay readable while both are alive. */
    struct jwk_set *ka = keystore_get(identity_keys_of(ic_of(a)), FX_ISSUER);
    struct jwk_set *kb = keystore_get(identity_keys_of(ic_of(b)), FX_ISSUER);
    assert_non_null(ka);
    assert_ptr_equal(ka, kb); /* the same file, the same bytes: carried over */
    jwks_unref(ka);
    jwks_unref(kb);
    assert_null(keystore_get(identity_keys_of(ic_of(a)), ISSUER2));
    fx_config_free(a); /* the last request of the old generation ended */

    /* Then FX_ISSUER goes: its token was cached under b, and c must not take it from there. */
    struct fx_config *c = file_config_of(ISSUER2, p256_path, FX_AUD, NULL, NULL);
    assert_int_equal(prepare(b, c, &err), 0);
    assert_ptr_not_equal(identity_cache_of(ic_of(c)), identity_cache_of(ic_of(b)));
    identity_reload_commit(ic_of(c));
    assert_int_equal(check_token(c, t1, reason, sizeof reason), GW_DENY);
    assert_string_equal(reason, "identity.bad_issuer");
    assert_int_equal(check_token(c, t2, NULL, 0), GW_PASS);
    assert_int_equal(check_token(b, t1, NULL, 0), GW_PASS); /* b's requests still finish */
    identity_stop();
    fx_config_free(b);
    fx_config_free(c);
    free(t1);
    free(t2);
}

static void test_cache_shared_only_when_verification_is_the_same(void **state)
{
    (void)state;
    struct fx_config *a = file_config(rsa_path, FX_AUD, NULL, NULL);
    assert_int_equal(identity_start(ic_of(a)), 0);
    char *t1 = fx_token(FX_RSA, NULL);
    assert_int_equal(check_token(a, t1, NULL, 0), GW_PASS);
    struct cfg_error err;

    /* Only the metadata changes: the cache (and its verified tokens) is shared. */
    struct fx_config *same = file_config(rsa_path, FX_AUD, NULL, "  scopes_supported: [x]\n");
    assert_int_equal(prepare(a, same, &err), 0);
    assert_non_null(identity_cache_of(ic_of(same)));
    assert_ptr_equal(identity_cache_of(ic_of(same)), identity_cache_of(ic_of(a)));
    identity_reload_abort(ic_of(same));
    assert_null(identity_cache_of(ic_of(same)));
    assert_null(identity_keys_of(ic_of(same)));
    fx_config_free(same);
    assert_int_equal(check_token(a, t1, NULL, 0), GW_PASS); /* the running one is untouched */

    /* Another audience: a token cached under a must be checked again, and fail. */
    struct fx_config *aud = file_config(rsa_path, "https://other.test/mcp", NULL, NULL);
    assert_int_equal(prepare(a, aud, &err), 0);
    assert_ptr_not_equal(identity_cache_of(ic_of(aud)), identity_cache_of(ic_of(a)));
    char reason[64];
    assert_int_equal(check_token(aud, t1, reason, sizeof reason), GW_DENY);
    assert_string_equal(reason, "identity.bad_audience");
    char *t_other = fx_token(FX_RSA, "{\"aud\": \"https://other.test/mcp\"}");
    assert_int_equal(check_token(aud, t_other, NULL, 0), GW_PASS);
    assert_int_equal(check_token(a, t_other, NULL, 0), GW_DENY);
    fx_config_free(aud); /* abandoned after prepare: freeing the section frees its runtime */

    /* A claim mapping changes what the identity is: not shared either. */
    struct fx_config *claims =
        file_config(rsa_path, FX_AUD, NULL, "  claims: {subject: [email, sub]}\n");
    assert_int_equal(prepare(a, claims, &err), 0);
    assert_ptr_not_equal(identity_cache_of(ic_of(claims)), identity_cache_of(ic_of(a)));
    fx_config_free(claims);

    /* The same path with other bytes (a key removed): new keys, so an empty cache. */
    int rsa_only[] = {FX_RSA, -1}, p256_only[] = {FX_P256, -1};
    char *text = fx_jwks(rsa_only);
    char *moved = fx_write_file("rotating.json", text);
    free(text);
    struct fx_config *r1 = file_config(moved, FX_AUD, NULL, NULL);
    assert_int_equal(prepare(a, r1, &err), 0);
    identity_reload_commit(ic_of(r1));
    assert_int_equal(check_token(r1, t1, NULL, 0), GW_PASS);
    text = fx_jwks(p256_only);
    free(fx_write_file("rotating.json", text));
    free(text);
    struct fx_config *r2 = file_config(moved, FX_AUD, NULL, NULL);
    assert_int_equal(prepare(r1, r2, &err), 0);
    assert_ptr_not_equal(identity_cache_of(ic_of(r2)), identity_cache_of(ic_of(r1)));
    identity_reload_commit(ic_of(r2));
    assert_int_equal(check_token(r2, t1, reason, sizeof reason), GW_DENY);
    assert_string_equal(reason, "identity.unknown_kid");
    assert_int_equal(check_token(r1, t1, NULL, 0), GW_PASS);
    identity_stop();
    fx_config_free(a);
    fx_config_free(r1);
    fx_config_free(r2);
    free(moved);
    free(t1);
    free(t_other);
}

static void test_refused_changes(void **state)
{
    (void)state;
    struct fx_config *a = file_config(rsa_path, FX_AUD, NULL, NULL);
    assert_int_equal(identity_start(ic_of(a)), 0);
    struct cfg_error err;
    struct fx_config *s = file_config(rsa_path, FX_AUD, NULL, "  sessions: {entries: 50}\n");
    assert_int_equal(prepare(a, s, &err), -1);
    assert_non_null(strstr(err.msg, "identity.sessions"));
    assert_non_null(strstr(err.msg, "restart"));
    assert_null(identity_cache_of(ic_of(s)));
    fx_config_free(s);
    /* An unreadable key file names the issuer and is no restart matter. */
    struct fx_config *bad = file_config("/nonexistent/keys.json", FX_AUD, NULL, NULL);
    assert_int_equal(prepare(a, bad, &err), -1);
    assert_non_null(strstr(err.msg, FX_ISSUER));
    assert_null(strstr(err.msg, "restart"));
    fx_config_free(bad);
    /* No section: nothing to build (every request is denied). */
    assert_int_equal(identity_reload_prepare(ic_of(a), NULL, &err), 0);
    identity_stop();
    fx_config_free(a);
}

/* ---- fetched keys ------------------------------------------------------------------------ */

static struct fx_config *uri_config(int port, const char *issuer2_url)
{
    char yaml[2048];
    int n = snprintf(yaml, sizeof yaml,
                     "identity:\n"
                     "  issuers:\n"
                     "    - issuer: \"%s\"\n"
                     "      audiences: [\"%s\"]\n"
                     "      jwks_uri: \"http://127.0.0.1:%d/jwks\"\n"
                     "      jwks_timeout: 1s\n",
                     FX_ISSUER, FX_AUD, port);
    if (issuer2_url)
        snprintf(yaml + n, sizeof yaml - (size_t)n,
                 "    - issuer: \"%s\"\n"
                 "      audiences: [\"%s\"]\n"
                 "      jwks_uri: \"%s\"\n"
                 "      jwks_timeout: 500ms\n"
                 "      jwks_refetch_interval: 100ms\n",
                 ISSUER2, FX_AUD, issuer2_url);
    struct cfg_error err;
    struct fx_config *fx = fx_config_yaml(yaml, &err);
    if (!fx)
        fail_msg("config: %s", err.msg);
    return fx;
}

static int cb_calls;
static void count_cb(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&cb_calls, 1, __ATOMIC_SEQ_CST);
}

static void test_fetched_issuers(void **state)
{
    (void)state;
    struct fx_server *idp = fx_server_start(), *idp2 = fx_server_start();
    int rsa_only[] = {FX_RSA, -1}, p256_only[] = {FX_P256, -1};
    char *body = fx_jwks(rsa_only), *body2 = fx_jwks(p256_only);
    fx_server_set(idp, 200, body, "max-age=600");
    fx_server_set(idp2, 200, body2, "max-age=600");
    struct fx_config *a = uri_config(idp->port, NULL);
    assert_int_equal(identity_start(ic_of(a)), 0);
    assert_int_equal(fx_server_requests(idp), 1);
    char *t1 = fx_token(FX_RSA, NULL);
    char *t2 = fx_token(FX_P256, "{\"iss\": \"" ISSUER2 "\"}");
    assert_int_equal(check_token(a, t1, NULL, 0), GW_PASS);

    /* A new issuer whose keys cannot be fetched refuses the reload, naming it. */
    struct cfg_error err;
    struct fx_config *down = uri_config(idp->port, "http://127.0.0.1:9/jwks");
    assert_int_equal(prepare(a, down, &err), -1);
    assert_non_null(strstr(err.msg, ISSUER2));
    assert_non_null(strstr(err.msg, "cannot be fetched"));
    assert_null(strstr(err.msg, "restart"));
    fx_config_free(down);
    assert_int_equal(check_token(a, t1, NULL, 0), GW_PASS);
    /* So does one that answers, but not with keys: hostile or broken, it is not served. */
    char url2[128];
    snprintf(url2, sizeof url2, "http://127.0.0.1:%d/jwks", idp2->port);
    for (int i = 0; i < 2; i++) {
        fx_server_set(idp2, i ? 500 : 200, i ? "{}" : "{\"keys\": \"not a list\"}", NULL);
        struct fx_config *broken = uri_config(idp->port, url2);
        assert_int_equal(prepare(a, broken, &err), -1);
        assert_non_null(strstr(err.msg, ISSUER2));
        fx_config_free(broken);
    }
    fx_server_set(idp2, 200, body2, "max-age=600");
    int before = fx_server_requests(idp2);

    /* A reachable one is fetched in prepare; the unchanged one is not fetched again. */
    struct fx_config *b = uri_config(idp->port, url2);
    assert_int_equal(prepare(a, b, &err), 0);
    assert_int_equal(fx_server_requests(idp2), before + 1);
    assert_int_equal(fx_server_requests(idp), 1);
    struct keystore_stats st;
    assert_int_equal(keystore_stats(identity_keys_of(ic_of(b)), FX_ISSUER, &st), 0);
    assert_int_equal(st.fetches, 1); /* the counters follow the issuer */
    assert_int_equal(keystore_stats(identity_keys_of(ic_of(a)), ISSUER2, &st), -1);
    /* Before commit the running store is the refreshed one; after, the next. */
    assert_int_equal(keystore_refetch(identity_keys_of(ic_of(b)), ISSUER2, count_cb, NULL), 0);
    identity_reload_commit(ic_of(b));
    assert_int_equal(keystore_refetch(identity_keys_of(ic_of(a)), FX_ISSUER, count_cb, NULL), 0);
    assert_int_equal(check_token(b, t2, NULL, 0), GW_PASS);
    assert_int_equal(check_token(b, t1, NULL, 0), GW_PASS);
    assert_int_equal(check_token(a, t1, NULL, 0), GW_PASS);
    fx_config_free(a);
    /* The fetch thread now refreshes b's issuers. */
    cb_calls = 0;
    usleep(150 * 1000); /* past the refetch interval of the fetch prepare made */
    assert_int_equal(keystore_refetch(identity_keys_of(ic_of(b)), ISSUER2, count_cb, NULL), 1);
    for (int i = 0; i < 300 && __atomic_load_n(&cb_calls, __ATOMIC_SEQ_CST) == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(cb_calls, 1);
    assert_int_equal(fx_server_requests(idp2), before + 2);
    identity_stop();
    fx_config_free(b);
    fx_server_stop(idp);
    fx_server_stop(idp2);
    free(body);
    free(body2);
    free(t1);
    free(t2);
}

/* A refetch under way when another store becomes active still answers its waiter. */
static void test_refetch_waiter_across_commit(void **state)
{
    (void)state;
    struct fx_server *idp = fx_server_start();
    int rsa_only[] = {FX_RSA, -1};
    char *body = fx_jwks(rsa_only);
    fx_server_set(idp, 200, body, "max-age=600");
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "identity:\n"
             "  issuers:\n"
             "    - issuer: \"%s\"\n"
             "      audiences: [\"%s\"]\n"
             "      jwks_uri: \"http://127.0.0.1:%d/jwks\"\n"
             "      jwks_refetch_interval: 100ms\n"
             "      jwks_timeout: 2s\n",
             FX_ISSUER, FX_AUD, idp->port);
    struct cfg_error err;
    struct fx_config *a = fx_config_yaml(yaml, &err), *b = fx_config_yaml(yaml, &err);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(identity_start(ic_of(a)), 0);
    usleep(150 * 1000);
    fx_server_delay(idp, 600);
    cb_calls = 0;
    assert_int_equal(keystore_refetch(identity_keys_of(ic_of(a)), FX_ISSUER, count_cb, NULL), 1);
    /* Once the server has the request, the fetch thread is waiting for the slow answer. */
    for (int i = 0; i < 200 && fx_server_requests(idp) < 2; i++)
        usleep(5 * 1000);
    assert_int_equal(prepare(a, b, &err), 0);
    assert_int_equal(fx_server_requests(idp), 2); /* carried over, not fetched again */
    identity_reload_commit(ic_of(b));
    fx_config_free(a); /* the fetch thread still holds a's store */
    for (int i = 0; i < 300 && __atomic_load_n(&cb_calls, __ATOMIC_SEQ_CST) == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(cb_calls, 1);
    struct jwk_set *set = keystore_get(identity_keys_of(ic_of(b)), FX_ISSUER);
    assert_non_null(set);
    jwks_unref(set);
    identity_stop();
    fx_config_free(b);
    fx_server_stop(idp);
    free(body);
}

static int setup(void **state)
{
    (void)state;
    int rsa[] = {FX_RSA, -1}, p256[] = {FX_P256, -1};
    char *text = fx_jwks(rsa);
    rsa_path = fx_write_file("rsa.json", text);
    free(text);
    text = fx_jwks(p256);
    p256_path = fx_write_file("p256.json", text);
    free(text);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    identity_stop();
    mcp_session_shutdown();
    free(rsa_path);
    free(p256_path);
    fx_free_keys();
    fx_rm_tmpdir();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_issuer_and_removed_issuer),
        cmocka_unit_test(test_cache_shared_only_when_verification_is_the_same),
        cmocka_unit_test(test_refused_changes),
        cmocka_unit_test(test_fetched_issuers),
        cmocka_unit_test(test_refetch_waiter_across_commit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
