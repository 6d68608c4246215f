/*
 * limits_config: the `limits:` section. Every error names the file, line, column and key
 * path, and says what to write instead.
 */
#include "layers/limits/limits-int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P_LEN 200

static const char *const per_names[LIMITS_PER_COUNT] = {
    "user", "tenant", "tool", "user+tool", "client", "tenant+tool",
};

static void strv_free(char **v, size_t n)
{
    (void)n;
    cfg_strv_free(v);
}

void limits_config_free(struct limits_config *lc)
{
    if (!lc)
        return;
    free(lc->store);
    free(lc->redis_host);
    free(lc->redis_prefix);
    free(lc->ledger);
    for (size_t i = 0; i < lc->n_rates; i++) {
        free(lc->rates[i].name);
        strv_free(lc->rates[i].tools, lc->rates[i].n_tools);
    }
    free(lc->rates);
    for (size_t i = 0; i < lc->n_costs; i++) {
        free(lc->costs[i].tool);
        free(lc->costs[i].items);
    }
    free(lc->costs);
    for (size_t i = 0; i < lc->n_budgets; i++) {
        free(lc->budgets[i].name);
        strv_free(lc->budgets[i].tools, lc->budgets[i].n_tools);
    }
    free(lc->budgets);
    for (size_t i = 0; i < lc->n_volatiles; i++) {
        free(lc->volatiles[i].tool);
        strv_free(lc->volatiles[i].keys, lc->volatiles[i].n_keys);
    }
    free(lc->volatiles);
    limits_tz_free(&lc->tz);
    free(lc);
}

static int get_u64(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                   const char *key, int64_t min, int64_t max, uint64_t *out, struct cfg_error *err)
{
    int64_t v = (int64_t)*out;
    if (cfg_get_int(doc, map, path, key, min, max, &v, err) != 0)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int get_u32(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                   const char *key, int64_t max, uint32_t *out, struct cfg_error *err)
{
    uint64_t v = *out;
    if (get_u64(doc, map, path, key, 0, max, &v, err) != 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int money_node(const struct cfg_doc *doc, const struct cfg_node *n, const char *path,
                      int64_t *out, struct cfg_error *err)
{
    if (!n || n->kind != CFG_SCALAR || limits_money_parse(n->scalar, out) != 0)
        return cfg_errorf(err, doc, n, path,
                          "\"%s\" is not an amount of money: write a decimal number of units "
                          "with at most 6 decimals, like 0.05 or 500",
                          n && n->kind == CFG_SCALAR ? n->scalar : "");
    return 0;
}

static int per_parse(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                     int budget, enum limits_per *out, struct cfg_error *err)
{
    const struct cfg_node *n = cfg_map_get(map, "per");
    char p[P_LEN];
    cfg_path_key(p, sizeof p, path, "per");
    if (!n || n->kind != CFG_SCALAR)
        return cfg_errorf(err, doc, n ? n : map, p,
                          budget ? "`per` is required: user, tenant or client"
                                 : "`per` is required: user, tenant, tool, user+tool, "
                                   "tenant+tool or client");
    for (int i = 0; i < LIMITS_PER_COUNT; i++) {
        if (strcmp(n->scalar, per_names[i]) != 0)
            continue;
        if (budget && i != LIMITS_PER_USER && i != LIMITS_PER_TENANT && i != LIMITS_PER_CLIENT)
            break;
        *out = (enum limits_per)i;
        return 0;
    }
    return cfg_errorf(err, doc, n, p,
                      budget ? "\"%s\" is not a budget key: write user, tenant or client"
                             : "\"%s\" is not a key: write user, tenant, tool, user+tool, "
                               "tenant+tool or client",
                      n->scalar);
}

static int name_parse(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                      const char *fallback, size_t index, char **out, struct cfg_error *err)
{
    if (cfg_get_string(doc, map, path, "name", 0, out, err) != 0)
        return -1;
    if (!*out) {
        char buf[32];
        snprintf(buf, sizeof buf, "%s%zu", fallback, index);
        *out = strdup(buf);
        return *out ? 0 : cfg_errorf(err, doc, map, path, "out of memory");
    }
    size_t len = strlen(*out);
    char p[P_LEN];
    cfg_path_key(p, sizeof p, path, "name");
    /* Names appear in headers (as sf-strings), audit and Redis keys: keep them plain. */
    if (len == 0 || len > LIMITS_MAX_NAME ||
        strspn(*out, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != len)
        return cfg_errorf(err, doc, cfg_map_get(map, "name"), p,
                          "a name is 1 to %d letters, digits, '.', '_' or '-'", LIMITS_MAX_NAME);
    return 0;
}

static int tools_parse(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                       char ***tools, size_t *n, struct cfg_error *err)
{
    if (cfg_get_string_list(doc, map, path, "tools", tools, n, err) != 0)
        return -1;
    char p[P_LEN];
    cfg_path_key(p, sizeof p, path, "tools");
    const struct cfg_node *node = cfg_map_get(map, "tools");
    if (node && *n == 0)
        return cfg_errorf(err, doc, node, p, "empty list: leave `tools` out to cover every tool");
    if (*n > LIMITS_MAX_TOOLS)
        return cfg_errorf(err, doc, node, p, "more than %d tool patterns", LIMITS_MAX_TOOLS);
    for (size_t i = 0; i < *n; i++)
        if ((*tools)[i][0] == '\0')
            return cfg_errorf(err, doc, node, p, "empty tool pattern");
    return 0;
}

static int rate_parse(const struct cfg_doc *doc, const struct cfg_node *item, const char *path,
                      size_t index, struct limits_rate *r, struct cfg_error *err)
{
    static const char *const keys[] = {"name", "per", "tools", "limit", "window", "burst", NULL};
    if (cfg_expect_map(doc, item, path, err) || cfg_check_keys(doc, item, path, keys, err))
        return -1;
    if (name_parse(doc, item, path, "rate", index, &r->name, err) ||
        per_parse(doc, item, path, 0, &r->per, err) ||
        tools_parse(doc, item, path, &r->tools, &r->n_tools, err))
        return -1;
    char p[P_LEN];
    /* A key written as null (`limit: ~`) is as good as missing. */
    if (!cfg_map_get(item, "limit") || !cfg_map_get(item, "window") ||
        cfg_is_null(cfg_map_get(item, "limit")) || cfg_is_null(cfg_map_get(item, "window"))) {
        return cfg_errorf(err, doc, item, path,
                          "`limit` and `window` are required (for example limit: 60, window: 1m)");
    }
    if (get_u64(doc, item, path, "limit", 1, 1000000000, &r->limit, err) ||
        cfg_get_duration_ms(doc, item, path, "window", &r->window_ms, err))
        return -1;
    cfg_path_key(p, sizeof p, path, "window");
    if (r->window_ms == 0 || r->window_ms > 366ULL * 86400 * 1000)
        return cfg_errorf(err, doc, cfg_map_get(item, "window"), p, "a window is from 1ms to 366d");
    r->burst = r->limit;
    if (get_u64(doc, item, path, "burst", 1, 1000000000, &r->burst, err))
        return -1;
    r->interval_ns = r->window_ms * 1000000ULL / r->limit;
    if (r->interval_ns == 0) {
        cfg_path_key(p, sizeof p, path, "limit");
        return cfg_errorf(err, doc, cfg_map_get(item, "limit"), p,
                          "more than one call per nanosecond: lower `limit` or widen `window`");
    }
    if (r->burst > UINT64_MAX / 4 / r->interval_ns) {
        cfg_path_key(p, sizeof p, path, "burst");
        return cfg_errorf(err, doc, cfg_map_get(item, "burst"), p, "burst is too large");
    }
    r->tolerance_ns = r->burst * r->interval_ns;
    return 0;
}

static int budget_parse(const struct cfg_doc *doc, const struct cfg_node *item, const char *path,
                        size_t index, struct limits_budget *b, struct cfg_error *err)
{
    static const char *const keys[] = {"name", "per", "cap", "period", "tools", NULL};
    if (cfg_expect_map(doc, item, path, err) || cfg_check_keys(doc, item, path, keys, err))
        return -1;
    if (name_parse(doc, item, path, "budget", index, &b->name, err) ||
        per_parse(doc, item, path, 1, &b->per, err) ||
        tools_parse(doc, item, path, &b->tools, &b->n_tools, err))
        return -1;
    char p[P_LEN];
    cfg_path_key(p, sizeof p, path, "cap");
    const struct cfg_node *cap = cfg_map_get(item, "cap");
    if (!cap)
        return cfg_errorf(err, doc, item, p, "`cap` is required (for example cap: 5.00)");
    if (money_node(doc, cap, p, &b->cap, err))
        return -1;
    const struct cfg_node *per = cfg_map_get(item, "period");
    cfg_path_key(p, sizeof p, path, "period");
    b->period = LIMITS_PERIOD_DAY;
    if (per) {
        if (per->kind != CFG_SCALAR)
            return cfg_errorf(err, doc, per, p, "write day, week or month");
        if (strcmp(per->scalar, "day") == 0)
            b->period = LIMITS_PERIOD_DAY;
        else if (strcmp(per->scalar, "week") == 0)
            b->period = LIMITS_PERIOD_WEEK;
        else if (strcmp(per->scalar, "month") == 0)
            b->period = LIMITS_PERIOD_MONTH;
        else
            return cfg_errorf(err, doc, per, p, "\"%s\" is not a period: write day, week or month",
                              per->scalar);
    }
    return 0;
}

static int cost_parse(const struct cfg_doc *doc, const struct cfg_node *n, const char *path,
                      struct limits_cost *c, struct cfg_error *err)
{
    if (n->kind == CFG_SCALAR)
        return money_node(doc, n, path, &c->fixed, err);
    static const char *const keys[] = {"fixed",         "per_item",  "items",
                                       "default_items", "max_items", NULL};
    if (cfg_expect_map(doc, n, path, err) || cfg_check_keys(doc, n, path, keys, err))
        return -1;
    char p[P_LEN];
    const struct cfg_node *x;
    if ((x = cfg_map_get(n, "fixed"))) {
        cfg_path_key(p, sizeof p, path, "fixed");
        if (money_node(doc, x, p, &c->fixed, err))
            return -1;
    }
    if ((x = cfg_map_get(n, "per_item"))) {
        cfg_path_key(p, sizeof p, path, "per_item");
        if (money_node(doc, x, p, &c->per_item, err))
            return -1;
    }
    if (cfg_get_string(doc, n, path, "items", 0, &c->items, err))
        return -1;
    cfg_path_key(p, sizeof p, path, "items");
    if (c->items && c->items[0] != '/')
        return cfg_errorf(err, doc, cfg_map_get(n, "items"), p,
                          "write a JSON Pointer into the arguments, like /limit");
    if (c->per_item && !c->items)
        return cfg_errorf(err, doc, n, path,
                          "`per_item` needs `items` (for example items: /limit)");
    c->default_items = 1;
    c->max_items = 1000000;
    if (get_u64(doc, n, path, "default_items", 0, 1000000000, &c->default_items, err) ||
        get_u64(doc, n, path, "max_items", 1, 1000000000, &c->max_items, err))
        return -1;
    /* The largest estimate must stay far from overflow. */
    if (c->per_item && (uint64_t)c->per_item > (uint64_t)LIMITS_MAX_MONEY / c->max_items)
        return cfg_errorf(err, doc, n, path, "per_item * max_items is too large");
    return 0;
}

static int costs_parse(const struct cfg_doc *doc, const struct cfg_node *n,
                       struct limits_config *lc, struct cfg_error *err)
{
    if (cfg_expect_map(doc, n, "limits.costs", err))
        return -1;
    if (n->n > LIMITS_MAX_COSTS)
        return cfg_errorf(err, doc, n, "limits.costs", "more than %d entries", LIMITS_MAX_COSTS);
    lc->costs = calloc(n->n ? n->n : 1, sizeof *lc->costs);
    if (!lc->costs)
        return cfg_errorf(err, doc, n, "limits.costs", "out of memory");
    for (size_t i = 0; i < n->n; i++) {
        char p[P_LEN];
        cfg_path_key(p, sizeof p, "limits.costs", n->keys[i]);
        if (strcmp(n->keys[i], "default") == 0) {
            if (money_node(doc, n->items[i], p, &lc->default_cost, err))
                return -1;
            continue;
        }
        if (n->keys[i][0] == '\0')
            return cfg_errorf(err, doc, n->items[i], p, "empty tool name");
        struct limits_cost *c = &lc->costs[lc->n_costs++];
        if (!(c->tool = strdup(n->keys[i])))
            return cfg_errorf(err, doc, n, p, "out of memory");
        if (cost_parse(doc, n->items[i], p, c, err))
            return -1;
    }
    return 0;
}

/* limits.loops.volatile: {tool or glob: [member name or JSON Pointer, ...]} */
static int volatile_parse(const struct cfg_doc *doc, const struct cfg_node *n,
                          struct limits_config *lc, struct cfg_error *err)
{
    const char *P = "limits.loops.volatile";
    if (cfg_expect_map(doc, n, P, err))
        return -1;
    if (n->n > LIMITS_MAX_VOLATILE_TOOLS)
        return cfg_errorf(err, doc, n, P, "more than %d tool patterns", LIMITS_MAX_VOLATILE_TOOLS);
    lc->volatiles = calloc(n->n ? n->n : 1, sizeof *lc->volatiles);
    if (!lc->volatiles)
        return cfg_errorf(err, doc, n, P, "out of memory");
    for (size_t i = 0; i < n->n; i++) {
        char p[P_LEN];
        cfg_path_key(p, sizeof p, P, n->keys[i]);
        if (n->keys[i][0] == '\0')
            return cfg_errorf(err, doc, n->items[i], p, "empty tool pattern");
        struct limits_volatile *v = &lc->volatiles[lc->n_volatiles++];
        if (!(v->tool = strdup(n->keys[i])))
            return cfg_errorf(err, doc, n, p, "out of memory");
        if (cfg_get_string_list(doc, n, P, n->keys[i], &v->keys, &v->n_keys, err) != 0)
            return -1;
        if (v->n_keys == 0 || v->n_keys > LIMITS_MAX_VOLATILE_KEYS)
            return cfg_errorf(err, doc, n->items[i], p,
                              "list 1 to %d argument members (names, or JSON Pointers like "
                              "/options/request_id)",
                              LIMITS_MAX_VOLATILE_KEYS);
        for (size_t k = 0; k < v->n_keys; k++)
            if (!limits_volatile_key_ok(v->keys[k]))
                return cfg_errorf(err, doc, n->items[i], p,
                                  "\"%s\" is not an argument member: write a name (request_id) or "
                                  "a JSON Pointer (/options/request_id), up to %d characters",
                                  v->keys[k], LIMITS_MAX_VOLATILE_KEY);
    }
    return 0;
}

static int loops_parse(const struct cfg_doc *doc, const struct cfg_node *n,
                       struct limits_config *lc, struct cfg_error *err)
{
    static const char *const keys[] = {
        "enabled",        "window",    "identical",   "no_progress", "max_cycle",
        "cycle_repeats",  "max_calls", "warnings",    "cooldown",    "history",
        "near_identical", "volatile",  "max_tracked", NULL};
    const char *P = "limits.loops";
    struct limits_loops *l = &lc->loops;
    if (cfg_expect_map(doc, n, P, err) || cfg_check_keys(doc, n, P, keys, err))
        return -1;
    l->enabled = 1;
    if (cfg_get_bool(doc, n, P, "enabled", &l->enabled, err) ||
        cfg_get_duration_ms(doc, n, P, "window", &l->window_ms, err) ||
        get_u32(doc, n, P, "identical", 100000, &l->identical, err) ||
        get_u32(doc, n, P, "no_progress", 100000, &l->no_progress, err) ||
        get_u32(doc, n, P, "max_cycle", 16, &l->max_cycle, err) ||
        get_u32(doc, n, P, "cycle_repeats", 100, &l->cycle_repeats, err) ||
        get_u32(doc, n, P, "max_calls", 10000000, &l->max_calls, err) ||
        get_u32(doc, n, P, "warnings", 1000, &l->warnings, err) ||
        cfg_get_duration_ms(doc, n, P, "cooldown", &l->cooldown_ms, err) ||
        get_u32(doc, n, P, "history", 1024, &l->history, err) ||
        get_u32(doc, n, P, "near_identical", 100000, &l->near_identical, err) ||
        get_u64(doc, n, P, "max_tracked", 1000, 1000000000, &l->max_tracked, err))
        return -1;
    const struct cfg_node *vol = cfg_map_get(n, "volatile");
    if (vol && !cfg_is_null(vol) && volatile_parse(doc, vol, lc, err))
        return -1;
    if (l->window_ms == 0)
        return cfg_errorf(err, doc, cfg_map_get(n, "window"), "limits.loops.window",
                          "the window must be longer than 0");
    if (l->cycle_repeats < 2)
        return cfg_errorf(err, doc, cfg_map_get(n, "cycle_repeats"), "limits.loops.cycle_repeats",
                          "a cycle is seen after at least 2 repetitions");
    if (l->history < 8)
        return cfg_errorf(err, doc, cfg_map_get(n, "history"), "limits.loops.history",
                          "remember at least 8 calls");
    /* The detectors need the calls they count to be remembered. */
    uint64_t need = l->identical;
    if (l->no_progress + 1 > need)
        need = l->no_progress + 1;
    if (l->near_identical > need)
        need = l->near_identical;
    if ((uint64_t)l->max_cycle * l->cycle_repeats > need)
        need = (uint64_t)l->max_cycle * l->cycle_repeats;
    if (need > l->history)
        return cfg_errorf(err, doc, n, P,
                          "history (%u) is shorter than the calls the rules count (%" PRIu64
                          "): raise history",
                          l->history, need);
    return 0;
}

static int store_parse(const struct cfg_doc *doc, const struct cfg_node *section,
                       struct limits_config *lc, struct cfg_error *err)
{
    const struct cfg_node *n = cfg_map_get(section, "store");
    if (strcmp(lc->store, "memory") == 0)
        return 0;
    if (strncmp(lc->store, "redis://", 8) != 0)
        return cfg_errorf(err, doc, n, "limits.store",
                          "\"%s\" is not a store: write memory or \"redis://HOST:PORT\"",
                          strchr(lc->store, '@') ? "the value" : lc->store);
    const char *h = lc->store + 8;
    if (strchr(h, '@') || strchr(h, '/') || strchr(h, '?'))
        return cfg_errorf(err, doc, n, "limits.store",
                          "write redis://HOST:PORT without credentials, path or query");
    const char *colon = strrchr(h, ':');
    size_t hl = colon ? (size_t)(colon - h) : strlen(h);
    long port = 6379;
    if (colon) {
        char *end = NULL;
        errno = 0;
        port = strtol(colon + 1, &end, 10);
        if (errno || !colon[1] || *end || port < 1 || port > 65535)
            return cfg_errorf(err, doc, n, "limits.store",
                              "the port is not a number from 1 to 65535");
    }
    if (hl == 0 || hl > 253)
        return cfg_errorf(err, doc, n, "limits.store", "the Redis host is missing");
    lc->redis_host = strndup(h, hl);
    lc->redis_port = (int)port;
    return lc->redis_host ? 0 : cfg_errorf(err, doc, n, "limits.store", "out of memory");
}

int limits_config_parse(const struct cfg_doc *doc, const struct cfg_node *section,
                        struct limits_config **out, struct cfg_error *err)
{
    static const char *const keys[] = {"store",         "ledger",   "fail",     "redis_prefix",
                                       "redis_timeout", "timezone", "max_keys", "rate",
                                       "costs",         "budgets",  "loops",    NULL};
    const char *P = "limits";
    char *fail = NULL, *tz = NULL;
    *out = NULL;
    if (!section || cfg_is_null(section))
        return 0;
    struct limits_config *lc = calloc(1, sizeof *lc);
    if (!lc)
        return cfg_errorf(err, doc, section, P, "out of memory");
    if (cfg_expect_map(doc, section, P, err) || cfg_check_keys(doc, section, P, keys, err))
        goto fail;
    lc->store = strdup("memory");
    lc->ledger = strdup("sqlite:toolgate.db");
    lc->redis_prefix = strdup("toolgate:");
    lc->redis_timeout_ms = 250;
    lc->max_keys = 4000000;
    lc->default_cost = 0;
    lc->loops.window_ms = 60000;
    lc->loops.identical = 5;
    lc->loops.no_progress = 3;
    lc->loops.max_cycle = 4;
    lc->loops.cycle_repeats = 3;
    lc->loops.warnings = 1;
    lc->loops.history = 64;
    lc->loops.max_tracked = 100000;
    lc->loops.near_identical = 5;
    if (!lc->store || !lc->ledger || !lc->redis_prefix) {
        cfg_errorf(err, doc, section, P, "out of memory");
        goto fail;
    }
    if (cfg_get_string(doc, section, P, "store", 0, &lc->store, err) ||
        cfg_get_string(doc, section, P, "ledger", 0, &lc->ledger, err) ||
        cfg_get_string(doc, section, P, "fail", 0, &fail, err) ||
        cfg_get_string(doc, section, P, "redis_prefix", 0, &lc->redis_prefix, err) ||
        cfg_get_duration_ms(doc, section, P, "redis_timeout", &lc->redis_timeout_ms, err) ||
        cfg_get_string(doc, section, P, "timezone", 0, &tz, err) ||
        get_u64(doc, section, P, "max_keys", 1000, 1000000000, &lc->max_keys, err))
        goto fail;
    if (store_parse(doc, section, lc, err))
        goto fail;
    if (strcmp(lc->ledger, "none") != 0 &&
        !(strncmp(lc->ledger, "sqlite:", 7) == 0 && lc->ledger[7])) {
        cfg_errorf(err, doc, cfg_map_get(section, "ledger"), "limits.ledger",
                   "\"%s\" is not a ledger: write \"sqlite:PATH\" or none", lc->ledger);
        goto fail;
    }
    if (lc->redis_timeout_ms == 0 || lc->redis_timeout_ms > 60000) {
        cfg_errorf(err, doc, cfg_map_get(section, "redis_timeout"), "limits.redis_timeout",
                   "write a duration from 1ms to 60s");
        goto fail;
    }
    size_t pl = strlen(lc->redis_prefix);
    if (pl > 64 || strpbrk(lc->redis_prefix, "{} \t\r\n")) {
        cfg_errorf(err, doc, cfg_map_get(section, "redis_prefix"), "limits.redis_prefix",
                   "at most 64 characters, without braces or whitespace");
        goto fail;
    }
    if (fail) {
        if (strcmp(fail, "closed") == 0)
            lc->fail = LIMITS_FAIL_CLOSED;
        else if (strcmp(fail, "local") == 0)
            lc->fail = LIMITS_FAIL_LOCAL;
        else {
            cfg_errorf(err, doc, cfg_map_get(section, "fail"), "limits.fail",
                       "\"%s\" is not a mode: write closed (deny while Redis is down) or local",
                       fail);
            goto fail;
        }
    }
    char why[160] = "";
    if (limits_tz_load(&lc->tz, tz ? tz : "UTC", why, sizeof why) != 0) {
        cfg_errorf(err, doc, cfg_map_get(section, "timezone"), "limits.timezone", "%s", why);
        goto fail;
    }
    const struct cfg_node *n;
    if ((n = cfg_map_get(section, "rate")) && !cfg_is_null(n)) {
        if (cfg_expect_seq(doc, n, "limits.rate", err))
            goto fail;
        if (n->n > LIMITS_MAX_RATES) {
            cfg_errorf(err, doc, n, "limits.rate", "more than %d rate limits", LIMITS_MAX_RATES);
            goto fail;
        }
        lc->rates = calloc(n->n ? n->n : 1, sizeof *lc->rates);
        if (!lc->rates) {
            cfg_errorf(err, doc, n, "limits.rate", "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < n->n; i++) {
            char p[P_LEN];
            cfg_path_index(p, sizeof p, "limits.rate", i);
            lc->n_rates++;
            if (rate_parse(doc, n->items[i], p, i, &lc->rates[i], err))
                goto fail;
            for (size_t j = 0; j < i; j++)
                if (strcmp(lc->rates[j].name, lc->rates[i].name) == 0) {
                    cfg_errorf(err, doc, n->items[i], p, "the name \"%s\" is used twice",
                               lc->rates[i].name);
                    goto fail;
                }
        }
    }
    if ((n = cfg_map_get(section, "costs")) && !cfg_is_null(n) && costs_parse(doc, n, lc, err))
        goto fail;
    if ((n = cfg_map_get(section, "budgets")) && !cfg_is_null(n)) {
        if (cfg_expect_seq(doc, n, "limits.budgets", err))
            goto fail;
        if (n->n > LIMITS_MAX_BUDGETS) {
            cfg_errorf(err, doc, n, "limits.budgets", "more than %d budgets", LIMITS_MAX_BUDGETS);
            goto fail;
        }
        lc->budgets = calloc(n->n ? n->n : 1, sizeof *lc->budgets);
        if (!lc->budgets) {
            cfg_errorf(err, doc, n, "limits.budgets", "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < n->n; i++) {
            char p[P_LEN];
            cfg_path_index(p, sizeof p, "limits.budgets", i);
            lc->n_budgets++;
            if (budget_parse(doc, n->items[i], p, i, &lc->budgets[i], err))
                goto fail;
            for (size_t j = 0; j < i; j++)
                if (strcmp(lc->budgets[j].name, lc->budgets[i].name) == 0) {
                    cfg_errorf(err, doc, n->items[i], p, "the name \"%s\" is used twice",
                               lc->budgets[i].name);
                    goto fail;
                }
        }
    }
    if ((n = cfg_map_get(section, "loops")) && !cfg_is_null(n) && loops_parse(doc, n, lc, err))
        goto fail;
    free(fail);
    free(tz);
    *out = lc;
    return 0;
fail:
    free(fail);
    free(tz);
    limits_config_free(lc);
    return -1;
}
