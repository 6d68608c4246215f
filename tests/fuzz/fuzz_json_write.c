/*
 * libFuzzer driver for mcp_json_write, differential: every tree must be written byte for byte
 * as jansson's json_dumps writes it, or refused by both (tests/json_write_ref.h). The first byte
 * picks the real precision; the rest is read by jansson as a tree (any value, NUL allowed in
 * strings), and also taken as raw bytes for a string and an object key, UTF-8 or not.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../json_write_ref.h"
#include "mcp/json_write.h"

static void same(const json_t *v, int precision)
{
    char *want = json_write_reference(v, precision);
    char *got = mcp_json_dumps(v, precision);
    if ((want == NULL) != (got == NULL) || (want && strcmp(want, got) != 0))
        abort();
    free(want);
    free(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int precision = data[0] & 31;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    json_t *tree = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (tree) {
        same(tree, precision);
        json_decref(tree);
    }
    json_t *s = json_stringn_nocheck(text, len);
    json_t *o = json_object();
    if (s && o && json_object_setn_new_nocheck(o, text, len, json_incref(s)) == 0) {
        same(s, precision);
        same(o, precision);
    }
    json_decref(s);
    json_decref(o);
    return 0;
}
