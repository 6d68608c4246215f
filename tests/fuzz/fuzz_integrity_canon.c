/*
 * Fuzz driver for the canonical form of definitions (integrity_canon.c) and the scan over
 * them. Beyond memory safety it checks the promises pinning rests on: the canonical text parses
 * back (with duplicate keys rejected) to a value equal to the input, canonicalising that value
 * gives the same bytes again, and the definition hashes are stable across the round trip; the
 * scan always ends and names a rule when it reports findings.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layers/integrity/integrity.h"

static struct integrity_rules *rules;

/*
 * The same JSON value, numbers by what they mean: the canonical form writes 1.0 as 1 (it
 * parses back as an integer), as RFC 8785 numbers do.
 */
static int same_value(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    if (json_typeof(a) != json_typeof(b))
        return 0;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same_value(json_array_get(a, i), json_array_get(b, i)))
                return 0;
        return 1;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b))
            return 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v)
        {
            const json_t *w = json_object_get(b, k);
            if (!w || !same_value(v, w))
                return 0;
        }
        return 1;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!rules) {
        char err[256];
        if (integrity_rules_add(&rules, integrity_builtin_rules, "built-in", err, sizeof err) != 0)
            abort();
    }
    json_t *v =
        json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    if (!v)
        return 0;
    struct gw_buf a = {0}, b = {0};
    if (integrity_canonical(v, &a, 64) == 0) {
        json_t *w = json_loadb(a.data, a.len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
        if (!w)
            abort();
        /* Numbers may be written otherwise; what they mean must not change. */
        if (!same_value(v, w))
            abort();
        if (integrity_canonical(w, &b, 64) != 0 || a.len != b.len || memcmp(a.data, b.data, a.len))
            abort();
        char h1[65], b1[65], h2[65], b2[65];
        int r1 = integrity_hash_def(v, "name", h1, b1);
        int r2 = integrity_hash_def(w, "name", h2, b2);
        if (r1 != r2 || (r1 == 0 && (strcmp(h1, h2) != 0 || strcmp(b1, b2) != 0)))
            abort();
        json_decref(w);
    }
    char rule[64];
    int n = integrity_scan(rules, v, 4096, rule, sizeof rule);
    if (n < 0 || (n > 0 && rule[0] == 0))
        abort();
    gw_buf_free(&a);
    gw_buf_free(&b);
    json_decref(v);
    return 0;
}
