/*
 * Signed pin manifests: what `toolgate tools pin` writes verifies and loads; a changed pin, a
 * signature by another key, a malformed signature and every malformed shape are refused with
 * a sentence. Keys are made for the test (Ed25519, in a temp dir).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "fixtures.h"
#include "layers/integrity/integrity.h"

static char dir[64], priv_path[128], pub_path[128], other_pub[128];

static void write_key(EVP_PKEY *k, const char *path, int private_key)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    if (private_key)
        assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    else
        assert_int_equal(PEM_write_PUBKEY(f, k), 1);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    fx_mkdtemp(dir, sizeof dir);
    snprintf(priv_path, sizeof priv_path, "%s/priv.pem", dir);
    snprintf(pub_path, sizeof pub_path, "%s/pub.pem", dir);
    snprintf(other_pub, sizeof other_pub, "%s/other.pem", dir);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *o = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(k);
    assert_non_null(o);
    write_key(k, priv_path, 1);
    write_key(k, pub_path, 0);
    write_key(o, other_pub, 0);
    EVP_PKEY_free(k);
    EVP_PKEY_free(o);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fx_rmtree(dir);
    return 0;
}

/* A store with two approved pins and one pending, and the manifest written from it. */
static void write_manifest(const char *out)
{
    char err[256];
    struct integrity_store *s = integrity_store_open(":memory:", err, sizeof err);
    assert_non_null(s);
    struct integrity_seen e[3];
    memset(e, 0, sizeof e);
    const char *defs[] = {"{\"name\":\"a\",\"description\":\"A.\"}",
                          "{\"name\":\"b\",\"description\":\"B.\"}",
                          "{\"name\":\"c\",\"description\":\"<IMPORTANT>\"}"};
    const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        json_t *v = json_loads(defs[i], 0, NULL);
        assert_int_equal(integrity_hash_def(v, "name", e[i].hash, e[i].body), 0);
        e[i].name = names[i];
        e[i].def = (char *)defs[i];
        json_decref(v);
    }
    snprintf(e[2].finding, sizeof e[2].finding, "hidden_tag");
    struct integrity_list l = {"r/b", "tool", 0, 0, 1000, 60000, "s", "t"};
    assert_int_equal(integrity_store_compare(s, &l, e, 3), 0);
    assert_int_equal(integrity_manifest_write(s, NULL, priv_path, out, err, sizeof err), 2);
    assert_int_equal(integrity_manifest_write(s, NULL, pub_path, out, err, sizeof err), -1);
    assert_non_null(strstr(err, "private key"));
    integrity_store_close(s);
}

static char *slurp(const char *path, size_t *len)
{
    char *text = NULL;
    struct cfg_error ce = {{0}};
    assert_int_equal(cfg_read_file(path, 1 << 20, &text, len, &ce), 0);
    return text;
}

static void test_round_trip(void **state)
{
    (void)state;
    char out[160], digest[65], err[300];
    snprintf(out, sizeof out, "%s/m.json", dir);
    write_manifest(out);
    json_t *m = integrity_manifest_load(out, pub_path, digest, err, sizeof err);
    if (!m)
        fprintf(stderr, "%s\n", err);
    assert_non_null(m);
    assert_int_equal(json_array_size(json_object_get(m, "pins")), 2); /* the pending one: no */
    assert_int_equal(strlen(digest), 64);
    json_decref(m);

    /* Another key's public half does not verify it. */
    assert_null(integrity_manifest_load(out, other_pub, digest, err, sizeof err));
    assert_non_null(strstr(err, "signature does not verify"));
    /* No key, an unreadable key file. */
    assert_null(integrity_manifest_load(out, "/nonexistent.pem", digest, err, sizeof err));
    assert_non_null(strstr(err, "public key"));
    assert_null(integrity_manifest_load("/nonexistent.json", pub_path, digest, err, sizeof err));
}

static json_t *parse_text(const char *text, char *err, size_t errlen)
{
    FILE *f = fopen(pub_path, "r");
    EVP_PKEY *k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    char digest[65];
    json_t *m = integrity_manifest_parse(text, strlen(text), k, digest, err, errlen);
    EVP_PKEY_free(k);
    return m;
}

static void test_tampering(void **state)
{
    (void)state;
    char out[160], err[300];
    snprintf(out, sizeof out, "%s/m2.json", dir);
    write_manifest(out);
    size_t len;
    char *text = slurp(out, &len);
    json_t *m = json_loadb(text, len, 0, NULL);
    free(text);
    assert_non_null(m);

    /* Member order and spacing do not matter: the canonical form is signed. */
    char *compact = json_dumps(m, JSON_COMPACT);
    json_t *ok = parse_text(compact, err, sizeof err);
    if (!ok)
        fprintf(stderr, "%s\n", err);
    assert_non_null(ok);
    json_decref(ok);
    free(compact);

    /* A pin changed (another hash), added or removed: the signature no longer verifies. */
    json_t *t = json_deep_copy(m);
    json_t *pin = json_array_get(json_object_get(t, "pins"), 0);
    json_object_set_new(pin, "hash",
                        json_string("0000000000000000000000000000000000000000000000"
                                    "000000000000000000"));
    char *s = json_dumps(t, 0);
    assert_null(parse_text(s, err, sizeof err));
    assert_non_null(strstr(err, "does not verify"));
    free(s);
    json_decref(t);
    t = json_deep_copy(m);
    json_array_remove(json_object_get(t, "pins"), 1);
    s = json_dumps(t, 0);
    assert_null(parse_text(s, err, sizeof err));
    free(s);
    json_decref(t);

    /* A signature that is not one: wrong length, upper case, not hex. */
    const char *bad_sigs[] = {"abcd", "ZZ", ""};
    for (size_t i = 0; i < 3; i++) {
        t = json_deep_copy(m);
        json_object_set_new(t, "signature", json_string(bad_sigs[i]));
        s = json_dumps(t, 0);
        assert_null(parse_text(s, err, sizeof err));
        assert_non_null(strstr(err, "signature"));
        free(s);
        json_decref(t);
    }
    json_decref(m);
}

/* The template with @H (a hash) and @S (a signature member) filled in. */
static void fill(char *out, size_t len, const char *tpl, const char *h, const char *sig)
{
    size_t n = 0;
    for (const char *p = tpl; *p && n + 1 < len; p++) {
        const char *with = p[0] == '@' && p[1] == 'H' ? h : p[0] == '@' && p[1] == 'S' ? sig : NULL;
        if (with) {
            n += (size_t)snprintf(out + n, len - n, "%s", with);
            p++;
        } else {
            out[n++] = *p;
        }
    }
    out[n < len ? n : len - 1] = 0;
}

static void test_shapes(void **state)
{
    (void)state;
    char err[300];
    const char *sig = "\"signature\":\"" /* 128 hex digits */
                      "00000000000000000000000000000000000000000000000000000000000000000000000000"
                      "000000000000000000000000000000000000000000000000000000\"";
    char h[] = "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"";
    char text[1024];
    const char *cases[] = {
        "[]",
        "{\"format\":\"toolgate-pins/2\",\"pins\":[],@S}",
        "{\"format\":\"toolgate-pins/1\",\"pins\":{},@S}",
        "{\"format\":\"toolgate-pins/1\",\"pins\":[],\"extra\":1,@S}",
        "{\"format\":\"toolgate-pins/1\",\"pins\":[1],@S}",
        "{\"format\":\"toolgate-pins/1\",\"pins\":[{\"backend\":\"r/b\",\"kind\":\"widget\","
        "\"name\":\"a\",\"hash\":@H}],@S}",
        "{\"format\":\"toolgate-pins/1\",\"pins\":[{\"backend\":\"r/b\",\"kind\":\"tool\","
        "\"name\":\"\",\"hash\":@H}],@S}",
        "{\"format\":\"toolgate-pins/1\",\"pins\":[{\"backend\":\"r/b\",\"kind\":\"tool\","
        "\"name\":\"a\\u0000b\",\"hash\":@H}],@S}",
        "{\"format\":\"toolgate-pins/1\",\"pins\":[{\"backend\":\"r/b\",\"kind\":\"tool\","
        "\"name\":\"a\",\"hash\":\"ABC\"}],@S}",
        "{\"format\":\"toolgate-pins/1\",\"format\":\"toolgate-pins/1\",\"pins\":[],@S}",
        "{\"format\":\"toolgate-pins/1\",\"pins\":[],@S",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fill(text, sizeof text, cases[i], h, sig);
        err[0] = 0;
        json_t *m = parse_text(text, err, sizeof err);
        if (m)
            fprintf(stderr, "accepted case %zu: %s\n", i, text);
        assert_null(m);
        assert_true(err[0] != 0);
    }
    /* A well-formed manifest with an all-zero signature: refused by the signature check. */
    fill(text, sizeof text, "{\"format\":\"toolgate-pins/1\",\"pins\":[],@S}", h, sig);
    assert_null(parse_text(text, err, sizeof err));
    assert_non_null(strstr(err, "does not verify"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_shapes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
