/*
 * Development tools: `toolgate keys generate` and `toolgate token`. They make a signing key
 * and tokens for local testing against a jwks_file issuer; a real deployment gets its
 * tokens from its identity provider.
 */
#include "layers/identity/identity.h"
#include "lib/timeutil.h"
#include "lib/jwk.h"
#include "lib/jwt.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void keys_usage(FILE *out)
{
    fprintf(out, "usage: toolgate keys generate --alg RS256|ES256|EdDSA --out DIR [--kid K]\n"
                 "\n"
                 "Development tool: creates a signing key for local tests.\n"
                 "Writes DIR/private.pem (mode 0600) and DIR/jwks.json (the public key set, for\n"
                 "an issuer's jwks_file). The kid defaults to the key's RFC 7638 thumbprint.\n"
                 "Existing files are never overwritten.\n");
}

static void token_usage(FILE *out)
{
    fprintf(out,
            "usage: toolgate token --key F --iss ISSUER --aud AUDIENCE --sub SUBJECT\n"
            "                      [--roles r1,r2] [--scopes \"a b\"] [--tenant T] [--client C]\n"
            "                      [--ttl 5m] [--kid K] [--alg ALG] [--claim name=value]...\n"
            "\n"
            "Development tool: prints a signed access token (JWT) for local tests.\n"
            "F is a private key PEM (from `toolgate keys generate`). The algorithm follows the\n"
            "key (RSA: RS256, P-256: ES256, P-384: ES384, Ed25519: EdDSA) unless --alg names\n"
            "another the key supports. --claim values are JSON when they parse as JSON, else\n"
            "strings; --aud may be repeated.\n");
}

/* Opens path for writing, failing if it exists, with the given mode. */
static FILE *create_exclusive(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "w");
    if (!f)
        close(fd);
    return f;
}

int identity_cli_keys(int argc, char **argv)
{
    const char *alg = NULL, *dir = NULL, *kid_arg = NULL;
    int rc = 1, have_generate = 0;
    EVP_PKEY *key = NULL;
    json_t *set = NULL;
    FILE *f = NULL;
    char priv_path[4096], pub_path[4096], kid[64];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            keys_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "generate") == 0) {
            have_generate = 1;
        } else if (strcmp(argv[i], "--alg") == 0 && i + 1 < argc) {
            alg = argv[++i];
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--kid") == 0 && i + 1 < argc) {
            kid_arg = argv[++i];
        } else {
            fprintf(stderr, "toolgate keys: unknown argument \"%s\"\n", argv[i]);
            keys_usage(stderr);
            return 2;
        }
    }
    if (!have_generate || !alg || !dir) {
        keys_usage(stderr);
        return 2;
    }
    if (strcmp(alg, "RS256") == 0)
        key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    else if (strcmp(alg, "ES256") == 0)
        key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    else if (strcmp(alg, "EdDSA") == 0)
        key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    else {
        fprintf(stderr, "toolgate keys: --alg must be RS256, ES256 or EdDSA\n");
        return 2;
    }
    if (!key) {
        fprintf(stderr, "toolgate keys: key generation failed\n");
        goto out;
    }
    if (kid_arg) {
        snprintf(kid, sizeof kid, "%s", kid_arg);
    } else if (jwk_thumbprint(key, kid) != 0) {
        fprintf(stderr, "toolgate keys: cannot compute the key's thumbprint\n");
        goto out;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "toolgate keys: cannot create %s: %s\n", dir, strerror(errno));
        goto out;
    }
    snprintf(priv_path, sizeof priv_path, "%s/private.pem", dir);
    snprintf(pub_path, sizeof pub_path, "%s/jwks.json", dir);
    f = create_exclusive(priv_path, 0600);
    if (!f) {
        fprintf(stderr, "toolgate keys: cannot create %s: %s (remove it first to replace it)\n",
                priv_path, strerror(errno));
        goto out;
    }
    if (!PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) || fclose(f) != 0) {
        f = NULL;
        fprintf(stderr, "toolgate keys: cannot write %s\n", priv_path);
        goto out;
    }
    f = NULL;
    json_t *jwk = jwk_public_json(key, kid, alg);
    set = json_pack("{s:[o]}", "keys", jwk);
    f = create_exclusive(pub_path, 0644);
    if (!set || !f || json_dumpf(set, f, JSON_INDENT(2)) != 0 || fputc('\n', f) == EOF) {
        fprintf(stderr, "toolgate keys: cannot write %s\n", pub_path);
        goto out;
    }
    printf("kid: %s\nprivate key: %s\npublic key set: %s\n", kid, priv_path, pub_path);
    printf("(development tool: keep private.pem out of version control)\n");
    rc = 0;
out:
    if (f)
        fclose(f);
    json_decref(set);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

static int default_alg(EVP_PKEY *key)
{
    unsigned algs = jwt_algs_for_key(key);
    if (algs & JWT_ALG_BIT(JWT_RS256))
        return JWT_RS256;
    for (int a = 0; a < JWT_ALG_COUNT; a++)
        if (algs & JWT_ALG_BIT(a))
            return a;
    return -1;
}

/* Adds --claim name=value: JSON when the value parses as JSON, else a string. */
static int add_claim(json_t *payload, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return -1;
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
    json_error_t jerr;
    json_t *v = json_loads(eq + 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!v)
        v = json_string(eq + 1);
    return v ? json_object_set_new(payload, name, v) : -1;
}

int identity_cli_token(int argc, char **argv)
{
    const char *key_path = NULL, *iss = NULL, *sub = NULL, *roles = NULL, *scopes = NULL;
    const char *tenant = NULL, *client = NULL, *ttl = "5m", *kid_arg = NULL, *alg_arg = NULL;
    int rc = 1;
    EVP_PKEY *key = NULL;
    json_t *payload = json_object(), *aud = json_array(), *header = NULL;
    char *ptext = NULL, *htext = NULL;
    struct gw_buf out = {0};
    FILE *f = NULL;
    if (!payload || !aud)
        goto out;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            token_usage(stdout);
            rc = 0;
            goto out;
        }
        if (!v || strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "toolgate token: unknown or incomplete argument \"%s\"\n", a);
            token_usage(stderr);
            rc = 2;
            goto out;
        }
        i++;
        if (strcmp(a, "--key") == 0)
            key_path = v;
        else if (strcmp(a, "--iss") == 0)
            iss = v;
        else if (strcmp(a, "--aud") == 0)
            json_array_append_new(aud, json_string(v));
        else if (strcmp(a, "--sub") == 0)
            sub = v;
        else if (strcmp(a, "--roles") == 0)
            roles = v;
        else if (strcmp(a, "--scopes") == 0)
            scopes = v;
        else if (strcmp(a, "--tenant") == 0)
            tenant = v;
        else if (strcmp(a, "--client") == 0)
            client = v;
        else if (strcmp(a, "--ttl") == 0)
            ttl = v;
        else if (strcmp(a, "--kid") == 0)
            kid_arg = v;
        else if (strcmp(a, "--alg") == 0)
            alg_arg = v;
        else if (strcmp(a, "--claim") == 0) {
            if (add_claim(payload, v) != 0) {
                fprintf(stderr, "toolgate token: --claim wants name=value\n");
                rc = 2;
                goto out;
            }
        } else {
            fprintf(stderr, "toolgate token: unknown argument \"%s\"\n", a);
            token_usage(stderr);
            rc = 2;
            goto out;
        }
    }
    if (!key_path || !iss || !sub || json_array_size(aud) == 0) {
        token_usage(stderr);
        rc = 2;
        goto out;
    }
    uint64_t ttl_ms;
    if (gw_parse_duration_ms(ttl, &ttl_ms) != 0 || ttl_ms == 0) {
        fprintf(stderr, "toolgate token: --ttl wants a duration such as 5m or 1h\n");
        rc = 2;
        goto out;
    }
    f = fopen(key_path, "rb");
    if (!f || !(key = PEM_read_PrivateKey(f, NULL, NULL, NULL))) {
        fprintf(stderr, "toolgate token: cannot read a private key from %s\n", key_path);
        goto out;
    }
    int alg = alg_arg ? jwt_alg_from_name(alg_arg, strlen(alg_arg)) : default_alg(key);
    if (alg < 0 || !(jwt_algs_for_key(key) & JWT_ALG_BIT(alg))) {
        fprintf(stderr, "toolgate token: the key cannot sign with %s\n",
                alg_arg ? alg_arg : "any supported algorithm");
        goto out;
    }
    char kid[64];
    if (kid_arg)
        snprintf(kid, sizeof kid, "%s", kid_arg);
    else if (jwk_thumbprint(key, kid) != 0)
        goto out;
    int64_t now = (int64_t)(gw_now_ns() / 1000000000ull);
    json_object_set_new(payload, "iss", json_string(iss));
    json_object_set_new(payload, "sub", json_string(sub));
    json_object_set_new(payload, "aud",
                        json_array_size(aud) == 1 ? json_incref(json_array_get(aud, 0))
                                                  : json_incref(aud));
    /* Times from --claim win, so tests can mint expired or not-yet-valid tokens. */
    if (!json_object_get(payload, "iat"))
        json_object_set_new(payload, "iat", json_integer(now));
    if (!json_object_get(payload, "nbf"))
        json_object_set_new(payload, "nbf", json_integer(now));
    if (!json_object_get(payload, "exp"))
        json_object_set_new(payload, "exp", json_integer(now + (int64_t)(ttl_ms / 1000)));
    if (roles) {
        json_t *r = json_array();
        char *copy = strdup(roles), *save = NULL;
        for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
            json_array_append_new(r, json_string(t));
        free(copy);
        json_object_set_new(payload, "roles", r);
    }
    if (scopes)
        json_object_set_new(payload, "scope", json_string(scopes));
    if (tenant)
        json_object_set_new(payload, "org_id", json_string(tenant));
    if (client) {
        json_object_set_new(payload, "azp", json_string(client));
        json_object_set_new(payload, "client_id", json_string(client));
    }
    header = json_pack("{s:s,s:s,s:s}", "alg", jwt_alg_name((enum jwt_alg)alg), "typ", "at+jwt",
                       "kid", kid);
    htext = header ? json_dumps(header, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    ptext = json_dumps(payload, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!htext || !ptext ||
        jwt_sign_compact(key, (enum jwt_alg)alg, htext, strlen(htext), ptext, strlen(ptext),
                         &out) != 0) {
        fprintf(stderr, "toolgate token: signing failed\n");
        goto out;
    }
    printf("%s\n", out.data);
    rc = 0;
out:
    if (f)
        fclose(f);
    gw_buf_free(&out);
    free(htext);
    free(ptext);
    json_decref(header);
    json_decref(payload);
    json_decref(aud);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}
