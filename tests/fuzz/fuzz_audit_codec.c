/*
 * Fuzzes what the compact store reads back from a file someone else may have written:
 *   byte 0 even: the input (after it) is a stored record blob, decoded with cut values taken
 *                from a fixed row, with and without a dictionary and a decision to refer to;
 *                it must be refused or rebuilt, never crash or read out of bounds (either
 *                version: 1 as SQLite files hold, 2 as PostgreSQL's compact tables do);
 *   byte 0 odd:  the input is a record for the quick verification path, which must never call
 *                canonical what the full path (jansson + audit_canon) does not.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layers/audit/audit_canon.h"
#include "layers/audit/audit_codec.h"
#include "layers/audit/audit_fastcheck.h"

static void fuzz_decode(const uint8_t *data, size_t size)
{
    static struct audit_codec *c, *marked;
    static const char dict[] =
        "{\"kind\":\"decision\",\"subject\":\"dr.alice\",\"tool\":\"ehr.get\"}"
        "{\"kind\":\"completion\",\"response_status\":200}";
    static const char decision[] = "{\"kind\":\"decision\",\"seq\":1}";
    if (!c) {
        c = audit_codec_new(3);
        if (!c || audit_codec_add_dict(c, 1, dict, sizeof dict - 1) != 0)
            abort();
        marked = audit_codec_new(3);
        if (!marked || audit_codec_use_markers(marked) != 0 ||
            audit_codec_add_dict(marked, 1, dict, sizeof dict - 1) != 0 ||
            audit_codec_use_dict(marked, 1) != 0)
            abort();
    }
    struct gw_buf cut = {0}, out = {0};
    struct audit_cut_values cv;
    char err[160];
    int needs;
    const char prev[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    if (audit_cut_values_fill(&cv, &cut, prev, 1700000000000000000ll, 7,
                              "01a23cd2-ea16-7e76-b86d-9d3a03e3a74f", "dr.alice", "clinic-7",
                              "ehr.get") != 0)
        abort();
    audit_codec_decode(c, data, size, &cv, &out, &needs, err, sizeof err);
    cv.prefix = decision;
    cv.prefix_len = sizeof decision - 1;
    int64_t delta = audit_codec_blob_prefix(data, size);
    cv.prefix_delta = delta > 0 ? (uint64_t)delta : 1;
    audit_codec_decode(c, data, size, &cv, &out, &needs, err, sizeof err);
    audit_codec_blob_dict(data, size);
    /* What encodes must decode to itself, in either version, read by either codec. */
    for (int v = 0; v < 2 && size < 4096; v++) {
        struct gw_buf blob = {0};
        if (audit_codec_encode(v ? marked : c, (const char *)data, size, &cv, &blob) == 0) {
            if (audit_codec_decode(v ? c : marked, blob.data, blob.len, &cv, &out, &needs, err,
                                   sizeof err) != 0 ||
                needs || out.len != size || (size && memcmp(out.data, data, size) != 0))
                abort();
        }
        gw_buf_free(&blob);
    }
    gw_buf_free(&cut);
    gw_buf_free(&out);
}

static void fuzz_fastcheck(const uint8_t *data, size_t size)
{
    struct audit_fields fs;
    if (!audit_fastcheck((const char *)data, size, &fs))
        return;
    json_t *v = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    struct gw_buf b = {0};
    if (!json_is_object(v) || audit_canon_append(&b, v) != 0 || b.len != size ||
        memcmp(b.data, data, size) != 0)
        abort(); /* the quick path accepted what the full path refuses */
    gw_buf_free(&b);
    json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        fuzz_fastcheck(data + 1, size - 1);
    else
        fuzz_decode(data + 1, size - 1);
    return 0;
}
