/*
 * libFuzzer driver for key sets from an identity provider: the JWKS parser (every key type),
 * the RFC 7638 thumbprint of what it accepts, and the Cache-Control parser for its TTL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/jwk.h"
#include "lib/jwt.h"
#include "layers/identity/keystore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t ttl = 0;
    keystore_cache_control_ttl((const char *)data, size, 1000, &ttl);

    struct jwk_set *set = NULL;
    size_t skipped = 0;
    char why[256];
    if (jwks_parse((const char *)data, size, &set, &skipped, why, sizeof why) != 0)
        return 0;
    for (size_t i = 0; i < set->n; i++) {
        char tp[44];
        jwk_thumbprint(set->keys[i].pkey, tp);
        jwks_find(set, set->keys[i].kid, set->keys[i].kid ? strlen(set->keys[i].kid) : 0,
                  JWT_RS256);
    }
    jwks_unref(set);
    return 0;
}
