/*
 * libFuzzer driver for mcp_json_parse, differential: every input must be refused by both it
 * and jansson (json_loadb with JSON_REJECT_DUPLICATES behind json_depth_ok) or read by both
 * as the same tree (types, bits of reals, key order). The first byte picks the depth bound
 * and whether a scalar may stand at the top. The one allowed difference: a NUL byte jansson
 * skips after a number or a literal is refused here (tests/json_same.h).
 */
#include <stdint.h>
#include <stdlib.h>

#include "../json_same.h"
#include "mcp/json_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t bounds[] = {0, 1, 2, 3, 8, 64, 2047, 4096};
    if (size < 1)
        return 0;
    size_t max_depth = bounds[data[0] & 7];
    int any = (data[0] >> 3) & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    json_t *ref = json_reference_parse(text, len, max_depth, any);
    json_t *got = mcp_json_parse(text, len, max_depth, any ? MCP_JSON_ANY : 0);
    if (!json_same(ref, got) && !(ref && !got && json_nul_quirk(text, len)))
        abort();
    json_decref(ref);
    json_decref(got);
    return 0;
}
