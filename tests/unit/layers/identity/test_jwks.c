/* jwk / keystore: key parsing (good and bad keys) and jwks_uri fetching from a loopback IdP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fixtures.h"
#include "layers/identity/keystore.h"

static struct jwk_set *parse_ok(const char *text, size_t *skipped)
{
    struct jwk_set *set = NULL;
    char why[256];
    if (jwks_parse(text, strlen(text), &set, skipped, why, sizeof why) != 0)
        fail_msg("jwks_parse failed: %s", why);
    return set;
}

static int key_ok(const char *jwk_text)
{
    json_t *j = json_loads(jwk_text, 0, NULL);
    assert_non_null(j);
    struct jwk k;
    char why[256];
    int rc = jwk_from_json(j, &k, why, sizeof why);
    jwk_clear(&k);
    json_decref(j);
    return rc;
}

static char *public_jwk_text(enum fx_key k, const char *drop, const char *set_name,
                             const char *set_value)
{
    json_t *j = jwk_public_json(fx_key(k), fx_kid(k), NULL);
    if (drop)
        json_object_del(j, drop);
    if (set_name)
        json_object_set_new(j, set_name, json_string(set_value));
    char *t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return t;
}

static void test_parse_every_key_type(void **state)
{
    (void)state;
    int all[] = {FX_RSA, FX_P256, FX_P384, FX_ED25519, -1};
    char *text = fx_jwks(all);
    size_t skipped = 9;
    struct jwk_set *set = parse_ok(text, &skipped);
    assert_int_equal(skipped, 0);
    assert_int_equal(set->n, 4);
    const struct jwk *k = jwks_find(set, "rsa-1", 5, JWT_PS384);
    assert_non_null(k);
    assert_true(EVP_PKEY_eq(k->pkey, fx_key(FX_RSA)) == 1);
    k = jwks_find(set, "p256-1", 6, JWT_ES256);
    assert_non_null(k);
    assert_true(EVP_PKEY_eq(k->pkey, fx_key(FX_P256)) == 1);
    k = jwks_find(set, "p384-1", 6, JWT_ES384);
    assert_non_null(k);
    assert_true(EVP_PKEY_eq(k->pkey, fx_key(FX_P384)) == 1);
    k = jwks_find(set, "ed-1", 4, JWT_EDDSA);
    assert_non_null(k);
    assert_true(EVP_PKEY_eq(k->pkey, fx_key(FX_ED25519)) == 1);
    /* A kid with the wrong algorithm for its key is not found. */
    assert_null(jwks_find(set, "p256-1", 6, JWT_ES384));
    assert_null(jwks_find(set, "ed-1", 4, JWT_RS256));
    assert_null(jwks_find(set, "nope", 4, JWT_RS256));
    /* Without a kid: only when exactly one key fits the algorithm. */
    assert_non_null(jwks_find(set, NULL, 0, JWT_EDDSA));
    jwks_unref(set);
    free(text);

    int two_rsa[] = {FX_RSA, FX_RSA_B, -1};
    text = fx_jwks(two_rsa);
    set = parse_ok(text, NULL);
    assert_null(jwks_find(set, NULL, 0, JWT_RS256));
    assert_non_null(jwks_find(set, "rsa-2", 5, JWT_RS256));
    /* The set outlives a reader's reference correctly. */
    struct jwk_set *ref = jwks_ref(set);
    jwks_unref(set);
    assert_int_equal(ref->n, 2);
    jwks_unref(ref);
    free(text);
}

static void test_alg_member_restricts_key(void **state)
{
    (void)state;
    char *t = public_jwk_text(FX_RSA, NULL, "alg", "PS256");
    char doc[4096];
    snprintf(doc, sizeof doc, "{\"keys\":[%s]}", t);
    struct jwk_set *set = parse_ok(doc, NULL);
    assert_non_null(jwks_find(set, "rsa-1", 5, JWT_PS256));
    assert_null(jwks_find(set, "rsa-1", 5, JWT_RS256));
    jwks_unref(set);
    free(t);
    /* An alg that does not fit the key type, or HS256, is a bad key. */
    t = public_jwk_text(FX_RSA, NULL, "alg", "ES256");
    assert_int_equal(key_ok(t), -1);
    free(t);
    t = public_jwk_text(FX_P256, NULL, "alg", "HS256");
    assert_int_equal(key_ok(t), -1);
    free(t);
}

static void test_bad_keys_rejected(void **state)
{
    (void)state;
    /* RSA 1024 bits. */
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    json_t *j = jwk_public_json(small, "small", NULL);
    /* jwk_public_json refuses keys we would not verify with; build the JWK by hand. */
    assert_null(j);
    BIGNUM *n = NULL, *e = NULL;
    EVP_PKEY_get_bn_param(small, "n", &n);
    EVP_PKEY_get_bn_param(small, "e", &e);
    unsigned char nb[128], eb[8];
    int nl = BN_bn2bin(n, nb), el = BN_bn2bin(e, eb);
    struct gw_buf nbuf = {0}, ebuf = {0};
    jwt_b64url_encode(nb, (size_t)nl, &nbuf);
    jwt_b64url_encode(eb, (size_t)el, &ebuf);
    char text[1024];
    snprintf(text, sizeof text, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}", nbuf.data,
             ebuf.data);
    assert_int_equal(key_ok(text), -1);
    gw_buf_free(&nbuf);
    gw_buf_free(&ebuf);
    BN_free(n);
    BN_free(e);
    EVP_PKEY_free(small);

    const struct {
        enum fx_key key;
        const char *drop, *name, *value;
    } bad[] = {
        {FX_RSA, "n", NULL, NULL},           {FX_RSA, "e", NULL, NULL},
        {FX_RSA, "kty", NULL, NULL},         {FX_P256, "x", NULL, NULL},
        {FX_P256, "y", NULL, NULL},          {FX_P256, "crv", NULL, NULL},
        {FX_P256, NULL, "crv", "P-521"},     {FX_P256, NULL, "crv", "secp256k1"},
        {FX_P256, NULL, "crv", "P-384"},     {FX_ED25519, NULL, "crv", "Ed448"},
        {FX_ED25519, NULL, "crv", "X25519"}, {FX_ED25519, "x", NULL, NULL},
        {FX_RSA, NULL, "use", "enc"},        {FX_P256, NULL, "kty", "oct"},
        {FX_P256, NULL, "d", "AAAA"},        {FX_ED25519, NULL, "x", "AAAA"},
        {FX_RSA, NULL, "n", "AA+/"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *t = public_jwk_text(bad[i].key, bad[i].drop, bad[i].name, bad[i].value);
        if (key_ok(t) != -1)
            fail_msg("bad key %zu accepted: %s", i, t);
        free(t);
    }
    /* An EC point that is not on the curve. */
    char *t = public_jwk_text(FX_P256, NULL, NULL, NULL);
    json_t *jj = json_loads(t, 0, NULL);
    unsigned char y[32];
    const char *ys = json_string_value(json_object_get(jj, "y"));
    jwt_b64url_decode(ys, strlen(ys), y, sizeof y);
    y[31] ^= 1;
    struct gw_buf yb = {0};
    jwt_b64url_encode(y, 32, &yb);
    json_object_set_new(jj, "y", json_string(yb.data));
    char *off = json_dumps(jj, JSON_COMPACT);
    assert_int_equal(key_ok(off), -1);
    free(off);
    gw_buf_free(&yb);
    json_decref(jj);
    free(t);
    /* key_ops without verify. */
    assert_int_equal(key_ok("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\","
                            "\"key_ops\":[\"encrypt\"]}"),
                     -1);
}

static void test_set_level_rules(void **state)
{
    (void)state;
    struct jwk_set *set = NULL;
    char why[256];
    size_t skipped = 0;
    const char *bad_docs[] = {"",
                              "[]",
                              "{}",
                              "{\"keys\":{}}",
                              "{\"keys\":[]}",
                              "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"}]}",
                              "{\"keys\":[],\"keys\":[]}"};
    for (size_t i = 0; i < sizeof bad_docs / sizeof bad_docs[0]; i++) {
        assert_int_equal(
            jwks_parse(bad_docs[i], strlen(bad_docs[i]), &set, &skipped, why, sizeof why), -1);
        assert_null(set);
    }
    /* A good key next to unusable ones: the good one is kept, the others counted. */
    char *good = public_jwk_text(FX_ED25519, NULL, NULL, NULL);
    char doc[2048];
    snprintf(doc, sizeof doc,
             "{\"keys\":[{\"kty\":\"RSA\",\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\"},%s,"
             "{\"kty\":\"EC\",\"crv\":\"P-521\"}]}",
             good);
    set = parse_ok(doc, &skipped);
    assert_int_equal(set->n, 1);
    assert_int_equal(skipped, 2);
    jwks_unref(set);
    free(good);
    /* Bounds: more than JWKS_MAX_KEYS keys, or more than JWKS_MAX_BYTES. */
    struct gw_buf big = {0};
    gw_buf_append_str(&big, "{\"keys\":[");
    for (int i = 0; i <= JWKS_MAX_KEYS; i++)
        gw_buf_printf(&big, "%s{\"kty\":\"OKP\"}", i ? "," : "");
    gw_buf_append_str(&big, "]}");
    assert_int_equal(jwks_parse(big.data, big.len, &set, NULL, why, sizeof why), -1);
    gw_buf_reset(&big);
    gw_buf_append_str(&big, "{\"keys\":[],\"pad\":\"");
    while (big.len <= JWKS_MAX_BYTES)
        gw_buf_append_str(&big, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    gw_buf_append_str(&big, "\"}");
    assert_int_equal(jwks_parse(big.data, big.len, &set, NULL, why, sizeof why), -1);
    gw_buf_free(&big);
}

static void test_thumbprint(void **state)
{
    (void)state;
    /* RFC 7638 §3.1 example key and thumbprint. */
    const char *rfc =
        "{\"kty\":\"RSA\",\"n\":\"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86"
        "zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_"
        "RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91"
        "CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-"
        "kEgU8awapJzKnqDKgw\",\"e\":\"AQAB\",\"alg\":\"RS256\",\"kid\":\"2011-04-29\"}";
    json_t *j = json_loads(rfc, 0, NULL);
    struct jwk k;
    char why[256];
    assert_int_equal(jwk_from_json(j, &k, why, sizeof why), 0);
    char tp[44];
    assert_int_equal(jwk_thumbprint(k.pkey, tp), 0);
    assert_string_equal(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    jwk_clear(&k);
    json_decref(j);
}

static void test_cache_control_parsing(void **state)
{
    (void)state;
    uint64_t ttl = 0;
    const char *v = " public, max-age=300\r\n";
    assert_int_equal(keystore_cache_control_ttl(v, strlen(v), 1000, &ttl), 1);
    assert_int_equal(ttl, 300000);
    v = "max-age=1";
    assert_int_equal(keystore_cache_control_ttl(v, strlen(v), 5000, &ttl), 1);
    assert_int_equal(ttl, 5000); /* never below the refetch interval */
    v = "MAX-AGE=99999999999999999999";
    assert_int_equal(keystore_cache_control_ttl(v, strlen(v), 1000, &ttl), 1);
    assert_int_equal(ttl, KEYSTORE_MAX_TTL_MS);
    v = "no-store";
    assert_int_equal(keystore_cache_control_ttl(v, strlen(v), 1234, &ttl), 1);
    assert_int_equal(ttl, 1234);
    v = "public, must-revalidate";
    assert_int_equal(keystore_cache_control_ttl(v, strlen(v), 1000, &ttl), 0);
    v = "max-age=";
    assert_int_equal(keystore_cache_control_ttl(v, strlen(v), 1000, &ttl), 0);
}

/* ---- fetching ----------------------------------------------------------------------------- */

static struct fx_config *uri_config(int port, const char *refetch, const char *ttl)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "identity:\n"
             "  issuers:\n"
             "    - issuer: \"%s\"\n"
             "      audiences: [\"%s\"]\n"
             "      jwks_uri: \"http://127.0.0.1:%d/jwks\"\n"
             "      jwks_refetch_interval: %s\n"
             "      jwks_ttl: %s\n"
             "      jwks_timeout: 1s\n",
             FX_ISSUER, FX_AUD, port, refetch, ttl);
    struct cfg_error err;
    struct fx_config *fx = fx_config_yaml(yaml, &err);
    if (!fx)
        fail_msg("config: %s", err.msg);
    return fx;
}

static int has_kid(const char *kid)
{
    struct jwk_set *set = keystore_get(NULL, FX_ISSUER);
    int found = set && jwks_find(set, kid, strlen(kid), JWT_RS256) != NULL;
    found |= set && jwks_find(set, kid, strlen(kid), JWT_EDDSA) != NULL;
    jwks_unref(set);
    return found;
}

static int wait_until(int (*cond)(void *), void *arg, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        if (cond(arg))
            return 1;
        usleep(10000);
    }
    return cond(arg);
}

static int kid_present(void *kid)
{
    return has_kid(kid);
}

static void test_fetch_and_cache_control(void **state)
{
    (void)state;
    struct fx_server *srv = fx_server_start();
    int first[] = {FX_RSA, -1};
    char *body = fx_jwks(first);
    fx_server_set(srv, 200, body, "public, max-age=1");
    free(body);
    struct fx_config *fx = uri_config(srv->port, "200ms", "10m");
    char why[256];
    assert_int_equal(keystore_start(identity_config_of(&fx->cfg), why, sizeof why), 0);
    /* keystore_start returned only after the first fetch. */
    assert_true(has_kid("rsa-1"));
    struct keystore_stats st;
    assert_int_equal(keystore_stats(NULL, FX_ISSUER, &st), 0);
    assert_int_equal(st.fetches, 1);
    assert_int_equal(st.last_ttl_ms, 1000); /* max-age won over the 10m jwks_ttl */

    /* The IdP rotates; after max-age the background refresh picks the new set up. */
    int second[] = {FX_ED25519, -1};
    body = fx_jwks(second);
    fx_server_set(srv, 200, body, "max-age=600");
    free(body);
    assert_true(wait_until(kid_present, "ed-1", 3000));
    assert_false(has_kid("rsa-1"));
    assert_int_equal(keystore_stats(NULL, FX_ISSUER, &st), 0);
    assert_int_equal(st.last_ttl_ms, 600000);
    int requests = fx_server_requests(srv);
    usleep(300 * 1000);
    assert_int_equal(fx_server_requests(srv), requests); /* no refresh before the TTL */
    keystore_stop();
    fx_config_free(fx);
    fx_server_stop(srv);
}

static int cb_count;
static pthread_mutex_t cb_lock = PTHREAD_MUTEX_INITIALIZER;
static void count_cb(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&cb_lock);
    cb_count++;
    pthread_mutex_unlock(&cb_lock);
}
static int cb_reached(void *want)
{
    pthread_mutex_lock(&cb_lock);
    int n = cb_count;
    pthread_mutex_unlock(&cb_lock);
    return n >= *(int *)want;
}

static void test_unknown_kid_refetch_rate_limited(void **state)
{
    (void)state;
    struct fx_server *srv = fx_server_start();
    int first[] = {FX_RSA, -1};
    char *body = fx_jwks(first);
    fx_server_set(srv, 200, body, NULL);
    free(body);
    struct fx_config *fx = uri_config(srv->port, "500ms", "10m");
    char why[256];
    assert_int_equal(keystore_start(identity_config_of(&fx->cfg), why, sizeof why), 0);
    assert_int_equal(fx_server_requests(srv), 1);
    /* Right after the first fetch, an early refetch is not allowed. */
    assert_int_equal(keystore_refetch(NULL, FX_ISSUER, count_cb, NULL), 0);
    usleep(550 * 1000);
    int both[] = {FX_RSA, FX_RSA_B, -1};
    body = fx_jwks(both);
    fx_server_set(srv, 200, body, NULL);
    free(body);
    cb_count = 0;
    /* Now one is; a second caller joins the same fetch instead of starting another (the
     * IdP answers slowly so the fetch is still running when the second caller comes). */
    fx_server_delay(srv, 300);
    assert_int_equal(keystore_refetch(NULL, FX_ISSUER, count_cb, NULL), 1);
    assert_int_equal(keystore_refetch(NULL, FX_ISSUER, count_cb, NULL), 1);
    int two = 2;
    assert_true(wait_until(cb_reached, &two, 3000));
    assert_true(has_kid("rsa-2"));
    assert_int_equal(fx_server_requests(srv), 2);
    /* And the next is refused until the interval has passed again. */
    assert_int_equal(keystore_refetch(NULL, FX_ISSUER, count_cb, NULL), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(keystore_refetch(NULL, FX_ISSUER, count_cb, NULL), 0);
    assert_int_equal(fx_server_requests(srv), 2);
    /* An unknown issuer never fetches. */
    assert_int_equal(keystore_refetch(NULL, "https://nobody/", count_cb, NULL), 0);
    keystore_stop();
    fx_config_free(fx);
    fx_server_stop(srv);
}

static void test_idp_down_keeps_last_good_set(void **state)
{
    (void)state;
    struct fx_server *srv = fx_server_start();
    int first[] = {FX_RSA, -1};
    char *body = fx_jwks(first);
    fx_server_set(srv, 200, body, "max-age=0");
    free(body);
    struct fx_config *fx = uri_config(srv->port, "100ms", "10m");
    char why[256];
    assert_int_equal(keystore_start(identity_config_of(&fx->cfg), why, sizeof why), 0);
    assert_true(has_kid("rsa-1"));
    /* The IdP fails: 500, then a connection closed without answer, then garbage. */
    fx_server_set(srv, 500, "oops", NULL);
    int target = fx_server_requests(srv) + 2;
    for (int i = 0; i < 300 && fx_server_requests(srv) < target; i++)
        usleep(10000);
    assert_true(has_kid("rsa-1"));
    fx_server_set(srv, 0, NULL, NULL);
    target = fx_server_requests(srv) + 1;
    for (int i = 0; i < 300 && fx_server_requests(srv) < target; i++)
        usleep(10000);
    assert_true(has_kid("rsa-1"));
    fx_server_set(srv, 200, "{\"keys\":[{\"kty\":\"oct\"}]}", NULL);
    target = fx_server_requests(srv) + 1;
    for (int i = 0; i < 300 && fx_server_requests(srv) < target; i++)
        usleep(10000);
    struct keystore_stats st;
    for (int i = 0; i < 300; i++) {
        keystore_stats(NULL, FX_ISSUER, &st);
        if (st.failures >= 3)
            break;
        usleep(10000);
    }
    assert_true(has_kid("rsa-1"));
    assert_true(st.failures >= 3);
    assert_true(st.has_keys);
    keystore_stop();
    fx_config_free(fx);
    fx_server_stop(srv);
}

static void test_start_with_idp_down_and_files(void **state)
{
    (void)state;
    /* A server that never answers within the timeout: start still returns, bounded. */
    struct fx_server *srv = fx_server_start();
    fx_server_set(srv, 500, "", NULL);
    struct fx_config *fx = uri_config(srv->port, "1s", "10m");
    char why[256];
    uint64_t t0 = gw_mono_ms();
    assert_int_equal(keystore_start(identity_config_of(&fx->cfg), why, sizeof why), 0);
    assert_true(gw_mono_ms() - t0 < 3000);
    assert_null(keystore_get(NULL, FX_ISSUER));
    keystore_stop();
    fx_config_free(fx);
    fx_server_stop(srv);

    /* jwks_file: loaded at start; a bad file fails the start. */
    int keys[] = {FX_P256, -1};
    char *text = fx_jwks(keys);
    char *path = fx_write_file("keys.json", text);
    char *bad = fx_write_file("bad.json", "{\"keys\":[]}");
    free(text);
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "identity:\n  issuers:\n    - {issuer: \"%s\", audiences: [a], jwks_file: \"%s\"}\n",
             FX_ISSUER, path);
    struct cfg_error err;
    fx = fx_config_yaml(yaml, &err);
    assert_non_null(fx);
    assert_int_equal(keystore_start(identity_config_of(&fx->cfg), why, sizeof why), 0);
    struct jwk_set *set = keystore_get(NULL, FX_ISSUER);
    assert_non_null(set);
    assert_non_null(jwks_find(set, "p256-1", 6, JWT_ES256));
    jwks_unref(set);
    keystore_stop();
    fx_config_free(fx);
    snprintf(yaml, sizeof yaml,
             "identity:\n  issuers:\n    - {issuer: \"%s\", audiences: [a], jwks_file: \"%s\"}\n",
             FX_ISSUER, bad);
    fx = fx_config_yaml(yaml, &err);
    assert_int_equal(keystore_start(identity_config_of(&fx->cfg), why, sizeof why), -1);
    assert_non_null(strstr(why, "no usable"));
    fx_config_free(fx);
    free(path);
    free(bad);
}

static int teardown(void **state)
{
    (void)state;
    fx_free_keys();
    fx_rm_tmpdir();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_every_key_type),
        cmocka_unit_test(test_alg_member_restricts_key),
        cmocka_unit_test(test_bad_keys_rejected),
        cmocka_unit_test(test_set_level_rules),
        cmocka_unit_test(test_thumbprint),
        cmocka_unit_test(test_cache_control_parsing),
        cmocka_unit_test(test_fetch_and_cache_control),
        cmocka_unit_test(test_unknown_kid_refetch_rate_limited),
        cmocka_unit_test(test_idp_down_keeps_last_good_set),
        cmocka_unit_test(test_start_with_idp_down_and_files),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
