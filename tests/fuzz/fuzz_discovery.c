/*
 * libFuzzer driver for an issuer's metadata document (RFC 8414 / OpenID Connect Discovery):
 * the parser and its checks against a pinned issuer, and the URL rule on what it yields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/discovery.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct discovery_meta m;
    char why[256];
    if (discovery_parse((const char *)data, size, "https://idp.example", &m, why, sizeof why) ==
        0) {
        if (!discovery_url_ok(m.jwks_uri) ||
            (m.token_endpoint && !discovery_url_ok(m.token_endpoint)))
            abort(); /* the parser let through a URL the fetch rule refuses */
        discovery_meta_clear(&m);
    }
    /* The bytes as an issuer: URL construction never overflows or accepts what it should not. */
    if (size < DISCOVERY_MAX_ISSUER + 64) {
        char *issuer = malloc(size + 1);
        memcpy(issuer, data, size);
        issuer[size] = '\0';
        char urls[DISCOVERY_MAX_URLS][DISCOVERY_MAX_URL];
        size_t n = 0;
        if (discovery_urls(issuer, urls, &n, why, sizeof why) == 0)
            for (size_t i = 0; i < n; i++)
                if (!discovery_url_ok(urls[i]))
                    abort();
        free(issuer);
    }
    return 0;
}
