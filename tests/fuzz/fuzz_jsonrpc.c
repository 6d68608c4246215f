/*
 * libFuzzer driver for mcp_decode, mcp_parse_message and the JSON-RPC body builders.
 *
 * Input: one selector byte, then the body. The selector picks the MCP-Protocol-Version
 * header (absent, 2025-03-26, 2025-06-18, 2025-11-25) and small or default limits, so batch
 * rules and depth bounds are reached. Beyond memory safety it checks the decoder's promises:
 * kinds agree with the fields set, recovered ids are strings or integers, and every error or
 * result body it leads to is valid JSON. Methods outside the revision's table are refused with
 * -32601, so that code is one of the decoder's answers too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/jsonrpc.h"
#include "mcp/methods.h"

static void check_body_parses(struct gw_buf *b)
{
    /* jansson directly: the envelope adds a level beyond the decoder's depth bound. */
    json_error_t jerr;
    json_t *j = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        abort();
    json_decref(j);
    gw_buf_reset(b);
}

static int id_ok(const json_t *id)
{
    return json_is_string(id) || json_is_integer(id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const versions[] = {NULL, "2025-03-26", "2025-06-18", "2025-11-25"};
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    const char *version = versions[sel & 3];
    struct mcp_limits lim = {
        .max_bytes = (sel & 0x40) ? 256 : 65536,
        .max_depth = (sel & 4) ? 4 : 64,
        .max_batch = (sel & 8) ? 2 : 100,
    };
    struct mcp_batch batch;
    struct mcp_decode_error err;
    struct gw_buf out = {0};

    int rc = mcp_decode(body, len, &lim, version, &batch, &err);
    if (rc == 0) {
        if (batch.n == 0 || !batch.msgs)
            abort();
        if (batch.is_batch && !(version == NULL || strcmp(version, "2025-03-26") == 0))
            abort();
        if (len > lim.max_bytes || json_depth_ok(body, len, lim.max_depth) != 0)
            abort();
        for (size_t i = 0; i < batch.n; i++) {
            const struct mcp_message *m = &batch.msgs[i];
            if (!json_is_object(m->json))
                abort();
            switch (m->kind) {
            case MCP_REQUEST:
                if (!m->method || !id_ok(m->id) ||
                    !mcp_method_lookup(m->method, mcp_version_bit(version), MCP_DIR_CLIENT_REQUEST))
                    abort();
                break;
            case MCP_NOTIFICATION:
                if (!m->method || m->id ||
                    !mcp_method_lookup(m->method, mcp_version_bit(version),
                                       MCP_DIR_CLIENT_NOTIFICATION))
                    abort();
                break;
            case MCP_RESPONSE:
            case MCP_ERROR_RESPONSE:
                if (m->method || !id_ok(m->id))
                    abort();
                break;
            default:
                abort();
            }
            if (m->method &&
                (strcmp(m->method, "tools/call") == 0 ||
                 strcmp(m->method, "resources/read") == 0) &&
                (!m->target || !m->target[0]))
                abort();
            if (m->arguments && !json_is_object(m->arguments))
                abort();
            if (jsonrpc_result_body(&out, m->id, m->json) != 0)
                abort();
            check_body_parses(&out);
        }
        mcp_batch_free(&batch);
    } else {
        if (batch.msgs || batch.n)
            abort();
        if (err.code != JSONRPC_PARSE_ERROR && err.code != JSONRPC_INVALID_REQUEST &&
            err.code != JSONRPC_METHOD_NOT_FOUND && err.code != JSONRPC_INVALID_PARAMS &&
            err.code != JSONRPC_INTERNAL_ERROR)
            abort();
        if (err.message[0] == '\0' || !memchr(err.message, '\0', sizeof err.message))
            abort();
        if (err.id && !id_ok(err.id))
            abort();
        if (jsonrpc_error_body(&out, err.id, err.code, err.message, err.id) != 0)
            abort();
        check_body_parses(&out);
        json_decref(err.id);
    }

    json_t *j = NULL;
    if (mcp_parse_message(body, len, lim.max_depth, &j) == 0) {
        if (!json_is_object(j) && !json_is_array(j))
            abort();
        json_decref(j);
    }
    gw_buf_free(&out);
    return 0;
}
