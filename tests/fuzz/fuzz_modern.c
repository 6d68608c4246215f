/*
 * Fuzz driver for the 2026-07-28 header values and envelope check. Decoding arbitrary bytes
 * never crashes; what decodes is UTF-8 and encodes to a value that decodes to the same bytes;
 * any value's encoding decodes back to it. The input's remainder, as a request body, is
 * checked against headers taken from its first line: the check never crashes and refuses
 * with a 400 and a code of its own.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/jsonrpc.h"
#include "mcp/modern.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct gw_buf d = {0}, e = {0}, d2 = {0};
    if (mcp_header_value_decode(s, size, &d) == 0) {
        if (mcp_header_value_encode(d.data ? d.data : "", d.len, &e) != 0 ||
            mcp_header_value_decode(e.data, e.len, &d2) != 0 || d2.len != d.len ||
            (d.len && memcmp(d.data, d2.data, d.len) != 0))
            abort();
    }
    gw_buf_reset(&e);
    gw_buf_reset(&d2);
    if (size <= 4096) {
        if (mcp_header_value_encode(s, size, &e) != 0)
            abort();
        /* Any bytes encode; only UTF-8 decodes back (the form carries text). */
        if (mcp_header_value_decode(e.data, e.len, &d2) == 0 &&
            (d2.len != size || (size && memcmp(d2.data, s, size) != 0)))
            abort();
    }
    gw_buf_free(&d);
    gw_buf_free(&e);
    gw_buf_free(&d2);

    const char *nl = memchr(s, '\n', size);
    if (!nl)
        return 0;
    struct mcp_modern_headers h = {0};
    h.method = s;
    h.method_len = (size_t)(nl - s);
    h.method_count = 1;
    const char *sp = memchr(s, ' ', h.method_len);
    if (sp) {
        h.method_len = (size_t)(sp - s);
        h.name = sp + 1;
        h.name_len = (size_t)(nl - sp - 1);
        h.name_count = 1;
        h.params[0] = (struct mcp_header_view){"Mcp-Param-X", 11, h.name, h.name_len};
        h.n_params = 1;
    }
    struct mcp_batch b;
    struct mcp_decode_error err;
    struct mcp_limits lim = {0};
    const char *body = nl + 1;
    size_t blen = size - (size_t)(body - s);
    if (mcp_decode(body, blen, &lim, "2026-07-28", &b, &err) == 0) {
        for (size_t i = 0; i < b.n; i++) {
            if (b.msgs[i].kind != MCP_REQUEST)
                continue;
            struct mcp_modern_error me;
            if (mcp_modern_check(&b.msgs[i], "2026-07-28", &h, &me) != 0 &&
                (me.http_status != 400 || !me.message[0] ||
                 (me.code != MCP_HEADER_MISMATCH && me.code != JSONRPC_INVALID_PARAMS)))
                abort();
        }
        mcp_batch_free(&b);
    } else {
        json_decref(err.id);
    }
    return 0;
}
