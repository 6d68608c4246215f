/*
 * Fuzz driver: what the limits layer reads from outside. The first byte picks the input:
 *   0: a YAML `limits` section (parser, cost table, budgets, loops, time zone names);
 *   1: a backend's JSON-RPC answer: the reported cost (_meta["toolgate/cost"]), the result
 *      hash the loop detector keeps, and the message's params as tool arguments for cost
 *      estimates (JSON Pointers into hostile trees) and fingerprints.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "layers/limits/limits-int.h"
#include "mcp/jsonrpc.h"

static const char costs_yaml[] =
    "limits:\n  costs: {default: 0.001, t: {fixed: 0.5, per_item: 0.01, items: /a/0/~1b,"
    " max_items: 1000}, \"s*\": {per_item: 1, items: /n}}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] % 2 == 0) {
        struct cfg_doc doc;
        struct cfg_error err;
        struct limits_config *lc = NULL;
        if (cfg_load_string(text, len, "fuzz", &doc, &err) != 0)
            return 0;
        const struct cfg_node *section = cfg_map_get(doc.root, "limits");
        if (section && limits_config_parse(&doc, section, &lc, &err) == 0 && lc) {
            json_t *args = json_pack("{s:[{s:i}], s:i}", "a", "/b", 3, "n", 7);
            limits_cost_estimate(lc, "t", 1, args);
            limits_cost_estimate(lc, "search", 6, args);
            int64_t id, end;
            limits_period_of(&lc->tz, LIMITS_PERIOD_MONTH, 1773576000, &id, &end);
            json_decref(args);
            limits_config_free(lc);
        }
        cfg_doc_free(&doc);
        return 0;
    }
    json_t *msg = NULL;
    if (mcp_parse_message(text, len, 64, &msg) != 0)
        return 0;
    static struct limits_config *lc;
    if (!lc) {
        struct cfg_doc doc;
        struct cfg_error err;
        if (cfg_load_string(costs_yaml, sizeof costs_yaml - 1, "fuzz", &doc, &err) != 0)
            return 0;
        limits_config_parse(&doc, cfg_map_get(doc.root, "limits"), &lc, &err);
        cfg_doc_free(&doc);
    }
    json_t *result = json_object_get(msg, "result");
    json_t *meta = json_object_get(result, "_meta");
    int64_t cost;
    if (json_is_object(meta) &&
        limits_money_from_json(json_object_get(meta, "toolgate/cost"), &cost) == 0 &&
        (cost < 0 || cost > LIMITS_MAX_MONEY))
        __builtin_trap();
    limits_json_hash(result);
    json_t *params = json_object_get(msg, "params");
    if (lc && json_is_object(params)) {
        if (limits_cost_estimate(lc, "t", 1, params) < 0 ||
            limits_cost_estimate(lc, "sx", 2, params) < 0)
            __builtin_trap();
        limits_fingerprint("t", 1, params);
    }
    json_decref(msg);
    return 0;
}
