/*
 * Fuzz driver: what the limits layer reads from outside. The first byte picks the input:
 *   0: a YAML `limits` section (parser, cost table, budgets, loops, time zone names);
 *   1: a backend's JSON-RPC answer: the reported cost (_meta["toolgate/cost"]), the result
 *      hash the loop detector keeps, and the message's params as tool arguments for cost
 *      estimates (JSON Pointers into hostile trees) and fingerprints;
 *   3: the canonical form calls are compared in, over hostile arguments: the canonical
 *      string is idempotent, trimmed and without runs of spaces, bounded; a fingerprint
 *      does not change when the members are reordered or every string gains whitespace, and
 *      volatile members (JSON Pointers included) leave out only what they name.
 * (2 is read as 0: a byte's low bit picks YAML or JSON as it always did.)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layers/limits/limits-int.h"
#include "mcp/jsonrpc.h"

static const char costs_yaml[] =
    "limits:\n  costs: {default: 0.001, t: {fixed: 0.5, per_item: 0.01, items: /a/0/~1b,"
    " max_items: 1000}, \"s*\": {per_item: 1, items: /n}}\n";

static const char volatile_yaml[] =
    "limits:\n  loops:\n    volatile: {\"t*\": [nonce, /a/0/~1b, /options/ts], x: [\"/\"]}\n";

struct sbuf {
    char *p;
    size_t n, cap;
};

static void sbuf_emit(void *arg, const char *p, size_t len)
{
    struct sbuf *b = arg;
    if (b->n + len > b->cap)
        __builtin_trap(); /* the canonical form is at most three times as long */
    memcpy(b->p + b->n, p, len);
    b->n += len;
}

static void check_canon_string(const char *s, size_t n)
{
    struct sbuf a = {malloc(3 * n + 1), 0, 3 * n}, b = {malloc(3 * n + 1), 0, 3 * n};
    if (!a.p || !b.p)
        goto out;
    limits_canon_string(s, n, sbuf_emit, &a);
    if (a.n && (a.p[0] == ' ' || a.p[a.n - 1] == ' '))
        __builtin_trap();
    for (size_t i = 1; i < a.n; i++)
        if (a.p[i] == ' ' && a.p[i - 1] == ' ')
            __builtin_trap();
    limits_canon_string(a.p, a.n, sbuf_emit, &b);
    if (a.n != b.n || memcmp(a.p, b.p, a.n) != 0)
        __builtin_trap(); /* idempotent */
out:
    free(a.p);
    free(b.p);
}

/* The same tree with every string padded by whitespace and members in reverse order. */
static json_t *respell(const json_t *v, int depth)
{
    if (depth > 64)
        return json_deep_copy(v);
    if (json_is_string(v)) {
        size_t n = json_string_length(v);
        char *s = malloc(n + 8);
        if (!s)
            return NULL;
        memcpy(s, " \t", 2);
        memcpy(s + 2, json_string_value(v), n);
        memcpy(s + 2 + n, "\xc2\xa0\xe2\x80\x8b", 5);
        json_t *out = json_stringn(s, n + 7);
        free(s);
        return out;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < json_array_size(v); i++)
            json_array_append_new(a, respell(json_array_get(v, i), depth + 1));
        return a;
    }
    if (json_is_object(v)) {
        size_t n = json_object_size(v), i = 0;
        const char **keys = calloc(n ? n : 1, sizeof *keys);
        json_t *o = json_object();
        const char *k;
        json_t *item;
        json_object_foreach((json_t *)v, k, item) keys[i++] = k;
        while (o && keys && i > 0) {
            i--;
            json_object_set_new(o, keys[i], respell(json_object_get(v, keys[i]), depth + 1));
        }
        free(keys);
        return o;
    }
    return json_deep_copy(v);
}

static void check_canon(const char *text, size_t len)
{
    static struct limits_config *lc;
    if (!lc) {
        struct cfg_doc doc;
        struct cfg_error err;
        if (cfg_load_string(volatile_yaml, sizeof volatile_yaml - 1, "fuzz", &doc, &err) != 0)
            __builtin_trap();
        if (limits_config_parse(&doc, cfg_map_get(doc.root, "limits"), &lc, &err) != 0 || !lc)
            __builtin_trap();
        cfg_doc_free(&doc);
    }
    check_canon_string(text, len);
    json_t *args = NULL;
    if (mcp_parse_message(text, len, 64, &args) != 0)
        return;
    json_t *again = respell(args, 0);
    uint64_t e1, n1, e2, n2;
    limits_fingerprints(lc, "tool", 4, args, &e1, &n1);
    limits_fingerprints(lc, "tool", 4, again, &e2, &n2);
    /* Keys are not respelled, so only strings' whitespace and member order changed. */
    if (again && (e1 != e2 || n1 != n2))
        __builtin_trap();
    /* A tool no pattern names keeps every member. */
    uint64_t e3, n3;
    limits_fingerprints(lc, "other", 5, args, &e3, &n3);
    if (e3 != limits_fingerprint("other", 5, args))
        __builtin_trap();
    limits_json_hash(args);
    json_decref(again);
    json_decref(args);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] % 4 == 3) {
        check_canon(text, len);
        return 0;
    }
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
