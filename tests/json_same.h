/*
 * Test helper (unit tests and fuzz drivers): the reference reading of a message, jansson's,
 * with the same depth bound, and a comparison of two trees that also demands the same types,
 * the same bits of every real and the same order of object keys.
 */
#ifndef TOOLGATE_TESTS_JSON_SAME_H
#define TOOLGATE_TESTS_JSON_SAME_H

#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "mcp/jsonrpc.h"

static inline json_t *json_reference_parse(const char *buf, size_t len, size_t max_depth, int any)
{
    if (json_depth_ok(buf, len, max_depth ? max_depth : SIZE_MAX) != 0)
        return NULL;
    return json_loadb(buf, len, JSON_REJECT_DUPLICATES | (any ? JSON_DECODE_ANY : 0), NULL);
}

/*
 * jansson (2.14) drops a NUL byte that directly follows a number or a literal ("[1\0]" reads
 * as [1]); mcp_json_parse refuses it. Only texts with a NUL byte may differ that way.
 */
static inline int json_nul_quirk(const char *buf, size_t len)
{
    return memchr(buf, '\0', len) != NULL;
}

static inline int json_same(const json_t *a, const json_t *b)
{
    if (!a || !b)
        return a == b;
    if (json_typeof(a) != json_typeof(b))
        return 0;
    switch (json_typeof(a)) {
    case JSON_INTEGER:
        return json_integer_value(a) == json_integer_value(b);
    case JSON_REAL: {
        double x = json_real_value(a), y = json_real_value(b);
        return memcmp(&x, &y, sizeof x) == 0;
    }
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!json_same(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        void *ia = json_object_iter((json_t *)a), *ib = json_object_iter((json_t *)b);
        for (; ia && ib; ia = json_object_iter_next((json_t *)a, ia),
                         ib = json_object_iter_next((json_t *)b, ib)) {
            size_t ka = json_object_iter_key_len(ia), kb = json_object_iter_key_len(ib);
            if (ka != kb || memcmp(json_object_iter_key(ia), json_object_iter_key(ib), ka) != 0 ||
                !json_same(json_object_iter_value(ia), json_object_iter_value(ib)))
                return 0;
        }
        return !ia && !ib;
    }
    default:
        return 1; /* true, false, null: the type says it all */
    }
}

#endif
