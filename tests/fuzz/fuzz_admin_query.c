/*
 * Fuzz driver for the admin API's query string parser and the elision of strings. Invariants:
 * an accepted query yields at most ADMIN_API_MAX_PARAMS parameters, each a string within the
 * bounds without control characters; elision keeps within its bound (under twice the input
 * and two markers: every "password=" may gain one).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *out = NULL;
    char err[256];
    if (admin_api_parse_query((struct gw_slice){(const char *)data, size}, &out, err, sizeof err) ==
        0) {
        if (json_object_size(out) > ADMIN_API_MAX_PARAMS)
            abort();
        const char *key;
        json_t *v;
        json_object_foreach(out, key, v)
        {
            const char *s = json_string_value(v);
            if (!s || strlen(key) > ADMIN_API_MAX_NAME || strlen(s) > ADMIN_API_MAX_VALUE)
                abort();
            for (const char *p = s; *p; p++)
                if ((unsigned char)*p < 0x20)
                    abort();
            char *clean = admin_elide_string(s);
            if (!clean || strlen(clean) > 2 * strlen(s) + 64)
                abort();
            free(clean);
        }
        json_decref(out);
    }
    return 0;
}
