/*
 * libFuzzer driver for a token endpoint's answer to a token exchange (RFC 8693 §2.2): the
 * first two bytes pick the HTTP status, the rest is the body. Whatever comes back as usable
 * must hold to the rules toolgate sends it under (a header-safe token of bounded length).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layers/routing/tokex.h"

static const long statuses[] = {200, 400, 401, 403, 500, 503, 302, 0};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    long status = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
    const char *want = data[1] & 1 ? TOKEX_TYPE_JWT : TOKEX_TYPE_ACCESS_TOKEN;
    struct tokex_answer a;
    char why[320];
    int rc =
        tokex_response_parse(status, (const char *)data + 2, size - 2, want, &a, why, sizeof why);
    if (rc == TOKEX_OK) {
        size_t n = strlen(a.access_token);
        if (n == 0 || n > TOKEX_MAX_TOKEN || strpbrk(a.access_token, " \t\r\n\",;\\") ||
            a.expires_in < 0)
            abort(); /* let through what cannot go into an Authorization header */
    } else if (a.access_token) {
        abort(); /* a token kept from a refused answer */
    }
    if (rc == TOKEX_E_REFUSED && (a.error[0] == '\0' || strpbrk(a.error, "\"\\\r\n")))
        abort();
    tokex_answer_clear(&a);
    return 0;
}
