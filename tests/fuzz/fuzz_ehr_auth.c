/*
 * libFuzzer driver for the demo backend's check of the injected identity: the Authorization
 * header value (scheme, JWS parsing, key selection by kid and alg, claims, and the reading of
 * tenant, roles, scopes and act.sub) against a fixed Ed25519 key set.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../examples/ehr-backend/auth.c"

/* RFC 8037's example Ed25519 public key, with a kid and alg as toolgate publishes them. */
static const char fixed_jwks[] =
    "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"alg\":\"EdDSA\",\"kid\":\"k1\","
    "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}]}";

static int fixed_fetch(const char *url, struct gw_buf *out)
{
    (void)url;
    return gw_buf_append_str(out, fixed_jwks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ehr_auth auth;
    static int ready;
    if (!ready) {
        char why[256];
        auth.fetch = fixed_fetch;
        if (ehr_auth_init(&auth, "http://127.0.0.1:1/jwks", NULL, "http://127.0.0.1:8080",
                          "ehr-backend", 0, why, sizeof why) != 0)
            abort();
        ready = 1;
    }
    /* Never re-fetch: the interval is measured from the last fetch, kept in the future. */
    auth.last_fetch_ms = UINT64_MAX / 2;
    struct ehr_principal p;
    char why[128];
    if (ehr_auth_verify(&auth, (struct gw_slice){(const char *)data, size}, 1700000000, &p, why,
                        sizeof why) == 0)
        ehr_principal_clear(&p);
    return 0;
}
