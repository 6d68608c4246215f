/*
 * libFuzzer driver for the bearer-token path: strict base64url, JWS compact parsing, claim
 * checks, claim mapping, and signature verification against a fixed Ed25519 key.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/request.h"
#include "layers/identity/claims.h"
#include "lib/jwt.h"

static EVP_PKEY *fixed_key(void)
{
    static EVP_PKEY *key;
    static const unsigned char pub[32] = {0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7,
                                          0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
                                          0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25,
                                          0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a};
    if (!key)
        key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, sizeof pub);
    return key;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char *subject[] = {"sub", NULL};
    static char *tenant[] = {"org_id", "tenant.id", NULL};
    static char *roles[] = {"roles", "realm_access.roles", NULL};
    static char *scopes[] = {"scope", "scp", NULL};
    static char *client[] = {"azp", "client_id", NULL};
    static const struct identity_claims_config cc = {subject, tenant, roles, scopes, client};
    static char *audiences[] = {"http://127.0.0.1:8080/mcp", NULL};

    unsigned char out[JWT_MAX_TOKEN];
    jwt_b64url_decode((const char *)data, size, out, sizeof out);

    struct jwt_parsed p;
    if (jwt_parse((const char *)data, size, &p) != JWT_OK)
        return 0;
    if (p.alg == JWT_EDDSA)
        jwt_verify_signature(&p, fixed_key());
    struct jwt_claim_rules rules = {
        .issuer = "https://idp.test/", .audiences = audiences, .leeway_s = 60, .now_s = 1700000000};
    int64_t exp = 0;
    jwt_check_claims(p.payload, &rules, &exp);
    struct gw_identity id;
    if (claims_map(&cc, p.payload, "https://idp.test/", exp, &id) == 0)
        gw_identity_clear(&id);
    jwt_parsed_free(&p);
    return 0;
}
