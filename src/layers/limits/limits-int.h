/*
 * limits-int.h: the compiled `limits` configuration and the parts of the layer (GCRA, the
 * sharded memory store, periods and time zones, the SQLite ledger, the loop detector, the
 * Redis client). Shared by the files of src/layers/limits only.
 */
#ifndef GW_LIMITS_INT_H
#define GW_LIMITS_INT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/request.h"
#include "layers/limits/limits.h"

#define MICRO 1000000LL /* micro-units per money unit */

/* Bounds on the configuration (far above real use). */
#define LIMITS_MAX_RATES 32
#define LIMITS_MAX_BUDGETS 16
#define LIMITS_MAX_COSTS 4096
#define LIMITS_MAX_NAME 40
#define LIMITS_MAX_TOOLS 256
/* A request (batch) governs at most this many tool calls; more are denied. */
#define LIMITS_MAX_CALLS 100
/* Volatile argument members (limits.loops.volatile): tool patterns, keys per pattern, key length.
 */
#define LIMITS_MAX_VOLATILE_TOOLS 256
#define LIMITS_MAX_VOLATILE_KEYS 64
#define LIMITS_MAX_VOLATILE_KEY 255
/* Largest money amount anywhere (caps, costs, reported costs): 10^12 units. */
#define LIMITS_MAX_MONEY (1000000000000LL * MICRO)

enum limits_per {
    LIMITS_PER_USER = 0,
    LIMITS_PER_TENANT,
    LIMITS_PER_TOOL,
    LIMITS_PER_USER_TOOL,
    LIMITS_PER_CLIENT,
    LIMITS_PER_TENANT_TOOL,
    LIMITS_PER_COUNT
};

enum limits_period { LIMITS_PERIOD_DAY = 0, LIMITS_PERIOD_WEEK, LIMITS_PERIOD_MONTH };

enum limits_fail { LIMITS_FAIL_CLOSED = 0, LIMITS_FAIL_LOCAL };

struct limits_rate {
    char *name; /* `name`, default "rate<index>" */
    enum limits_per per;
    char **tools; /* globs; NULL: every tool */
    size_t n_tools;
    uint64_t limit; /* calls per window */
    uint64_t window_ms;
    uint64_t burst;        /* calls admitted at once (default: limit) */
    uint64_t interval_ns;  /* GCRA emission interval: window / limit */
    uint64_t tolerance_ns; /* burst * interval */
};

struct limits_cost {
    char *tool;             /* exact name or glob */
    int64_t fixed;          /* micro-units */
    int64_t per_item;       /* micro-units per item */
    char *items;            /* JSON Pointer into the arguments; NULL when fixed only */
    uint64_t default_items; /* when the argument is absent */
    uint64_t max_items;     /* items counted at most */
};

struct limits_budget {
    char *name;
    enum limits_per per; /* user, tenant, client */
    int64_t cap;         /* micro-units */
    enum limits_period period;
    char **tools; /* globs; NULL: every tool */
    size_t n_tools;
};

struct limits_loops {
    int enabled;
    uint64_t window_ms;      /* how far back calls count (60s) */
    uint32_t identical;      /* identical calls within the window that flag (5; 0 off) */
    uint32_t no_progress;    /* same call with the same result, this many times (3; 0 off) */
    uint32_t max_cycle;      /* longest cycle period looked for (4; 0 or 1 off) */
    uint32_t cycle_repeats;  /* full repetitions of the cycle that flag (3) */
    uint32_t max_calls;      /* calls per session (per user without one) per window (0 off) */
    uint32_t warnings;       /* flagged calls warned before denials start (1) */
    uint64_t cooldown_ms;    /* after a denial the user+tool waits this long (0 off) */
    uint32_t history;        /* calls remembered per user/session (64) */
    uint32_t near_identical; /* calls equal up to their numbers, all answered alike (5; 0 off) */
    uint64_t max_tracked;    /* users and sessions with a history at once (100000) */
};

/* limits.loops.volatile: argument members left out of a tool's fingerprint. */
struct limits_volatile {
    char *tool;  /* exact name or glob */
    char **keys; /* a top-level member name, or a JSON Pointer ("/options/request_id") */
    size_t n_keys;
};

struct limits_tz {
    char *name;      /* "UTC", "+05:30", or an IANA zone name */
    int32_t fixed;   /* offset in seconds when n == 0 */
    int64_t *at;     /* transition times (UTC seconds), ascending */
    int32_t *offset; /* offset in force from at[i] */
    int32_t first;   /* offset before the first transition */
    size_t n;
};

struct limits_config {
    char *store;      /* "memory" or "redis://host:port" */
    char *redis_host; /* parsed from store when Redis */
    int redis_port;
    char *redis_prefix;        /* key prefix ("toolgate:") */
    uint64_t redis_timeout_ms; /* one round trip (250ms) */
    enum limits_fail fail;
    char *ledger;      /* "sqlite:PATH" or "none" */
    uint64_t max_keys; /* memory store bound (keys per table) */
    struct limits_rate *rates;
    size_t n_rates;
    int64_t default_cost; /* micro-units */
    struct limits_cost *costs;
    size_t n_costs;
    struct limits_budget *budgets;
    size_t n_budgets;
    struct limits_loops loops;
    struct limits_volatile *volatiles; /* limits.loops.volatile, in file order */
    size_t n_volatiles;
    struct limits_tz tz;
};

/* ---- glob and cost ---- */

/* Shell-style glob with `*` and `?` over a (ptr,len) name. */
int limits_glob(const char *pattern, const char *s, size_t len);
/* True when tools is NULL or a glob of it matches the tool. */
int limits_tools_match(char **tools, size_t n, const char *tool, size_t len);
/* Estimated cost of one call, micro-units (never negative). */
int64_t limits_cost_estimate(const struct limits_config *lc, const char *tool, size_t len,
                             const json_t *arguments);
/* Parses a decimal money amount ("0.05", "5", "1e-3" refused) into micro-units. 0 or -1. */
int limits_money_parse(const char *s, int64_t *out);
/* Converts a reported JSON cost (number, or decimal string) to micro-units. 0 or -1. */
int limits_money_from_json(const json_t *v, int64_t *out);
/* Formats micro-units as decimal units without trailing zeros ("0.05"). */
void limits_money_format(int64_t micro, char *out, size_t outlen);

/* ---- GCRA ---- */

struct gcra_result {
    int allowed;
    uint64_t retry_ns; /* when denied: wait this long */
    uint64_t reset_ns; /* time until the limit is fully available again */
    int64_t remaining; /* calls still admissible right now (after this one when allowed) */
};

/*
 * One GCRA step for n calls at `now` on theoretical arrival time *tat (0 = fresh). Updates
 * *tat only when allowed.
 */
void gcra_step(int64_t *tat, int64_t now, uint64_t interval_ns, uint64_t tolerance_ns, uint32_t n,
               struct gcra_result *r);

/* ---- keys and the memory store ---- */

struct limits_key {
    uint64_t h1, h2; /* 128-bit keyed hash; h1 is never 0 */
};

/* Hashes parts (NUL-separated) into a key with the process's random seed. */
void limits_key_make(struct limits_key *k, const char *kind, unsigned index, const char *a,
                     const char *b, int64_t extra);

struct lstore;
/* A sharded hash table of (key -> value, expiry). max_keys bounds entries; 0 = 4,000,000. */
struct lstore *lstore_new(uint64_t max_keys);
void lstore_free(struct lstore *s);
size_t lstore_count(struct lstore *s);
size_t lstore_memory(struct lstore *s); /* bytes held by the tables */
/* Expired entries swept so far; new keys refused because the store was full of live ones. */
uint64_t lstore_evicted(struct lstore *s);
uint64_t lstore_refused(struct lstore *s);

struct lrate_op {
    struct limits_key key;
    uint64_t interval_ns, tolerance_ns;
    uint32_t n;
    struct gcra_result r; /* out */
};
/*
 * All-or-nothing GCRA over ops (each a distinct key): either every op admits and every TAT
 * moves, or nothing changes. now is monotonic ns. Returns 1 admitted, 0 denied (the ops' r say
 * which), -ENOSPC when the store is full of live keys.
 */
int lstore_rate(struct lstore *s, struct lrate_op *ops, size_t n, int64_t now);

struct lbudget_op {
    struct limits_key key;
    int64_t cap;     /* micro-units */
    int64_t amount;  /* to reserve */
    int64_t expires; /* wall-clock seconds when the period ends */
    int64_t spent;   /* out: spent including this reservation when admitted, else before */
    int allowed;     /* out */
};
/* All-or-nothing reservation; returns 1 admitted, 0 denied, -ENOSPC. now: wall seconds. */
int lstore_budget_reserve(struct lstore *s, struct lbudget_op *ops, size_t n, int64_t now);
/* Adds delta (may be negative; the total never goes below 0). */
int lstore_budget_add(struct lstore *s, const struct limits_key *k, int64_t delta, int64_t expires,
                      int64_t now);
int64_t lstore_budget_get(struct lstore *s, const struct limits_key *k, int64_t now);

/* ---- periods ---- */

/* Loads a zone: "UTC", "+HH:MM"/"-HH:MM", or an IANA name from /usr/share/zoneinfo. */
int limits_tz_load(struct limits_tz *tz, const char *name, char *why, size_t why_len);
void limits_tz_free(struct limits_tz *tz);
int32_t limits_tz_offset(const struct limits_tz *tz, int64_t utc);
/* The calendar period holding `now` (UTC seconds): an id and its end (UTC seconds). */
void limits_period_of(const struct limits_tz *tz, enum limits_period p, int64_t now, int64_t *id,
                      int64_t *end);

/* ---- ledger ---- */

struct limits_ledger;
/* Opens "sqlite:PATH" (WAL). Returns NULL with why filled. */
struct limits_ledger *limits_ledger_open(const char *spec, char *why, size_t why_len);
void limits_ledger_close(struct limits_ledger *l);
/* A change to one row: delta added to (budget, key, period), expires raised to at least this. */
struct limits_ledger_op {
    const char *budget, *key;
    int64_t period, expires, delta;
};
/* Writes ops in one transaction, changes to one row added together: all durable, or none. */
int limits_ledger_add_all(struct limits_ledger *l, const struct limits_ledger_op *ops, size_t n);
/*
 * Queues ops (copied) on this thread's batch for loop, written as one transaction when the
 * loop next turns; then done(arg, ok) runs on the loop, ok = 1 when they are durable (done may
 * be NULL: nobody waits). Returns 0, or -1 when nothing was queued (no loop, out of memory):
 * the caller writes them itself.
 */
int limits_ledger_queue(struct limits_ledger *l, void *loop, const struct limits_ledger_op *ops,
                        size_t n, void (*done)(void *arg, int ok), void *arg);
/* Calls fn for each row whose period has not ended at `now`. */
int limits_ledger_load(struct limits_ledger *l, int64_t now,
                       void (*fn)(void *arg, const char *budget, const char *key, int64_t period,
                                  int64_t expires, int64_t amount),
                       void *arg);

/* ---- loop detector ---- */

struct lloop;
struct lloop *lloop_new(const struct limits_loops *cfg, uint64_t max_keys);
void lloop_free(struct lloop *l);
struct lloop_verdict {
    unsigned flags;    /* GW_LOOP_* */
    int action;        /* 0 pass, 1 warn, 2 deny, 3 untracked (the tracker is full: deny) */
    uint64_t retry_ms; /* cool-down left when denied by one */
};
/*
 * Records one call (its exact and near fingerprints, limits_fingerprints) for the user (and
 * session, when not NULL) at now (monotonic ns) and says whether it looks like a loop. `slot`
 * returns where the result hash is to be recorded (lloop_result).
 */
void lloop_call(struct lloop *l, const struct limits_key *user, const struct limits_key *session,
                const struct limits_key *user_tool, uint64_t fingerprint, uint64_t near,
                int64_t now, struct lloop_verdict *v);
/* Records the result hash of the user's (and session's) latest call with this fingerprint. */
void lloop_result(struct lloop *l, const struct limits_key *user, const struct limits_key *session,
                  uint64_t fingerprint, uint64_t result_hash);
size_t lloop_count(struct lloop *l);

/*
 * The canonical form (limits_canon.c): strings with whitespace trimmed and collapsed (Unicode
 * whitespace included, invisible format characters dropped), numbers by value, object members
 * in any order. Hashes are stable across processes.
 *
 * limits_fingerprints: the call's exact fingerprint (tool and canonical arguments, without the
 * members lc declares volatile for the tool) and its near one (the same with every number
 * alike). lc may be NULL (nothing volatile). limits_fingerprint: the exact one without lc.
 */
void limits_fingerprints(const struct limits_config *lc, const char *tool, size_t len,
                         const json_t *arguments, uint64_t *exact, uint64_t *near);
uint64_t limits_fingerprint(const char *tool, size_t len, const json_t *arguments);
/* Hash of the canonical form of v (results, for the no-progress rule). */
uint64_t limits_json_hash(const json_t *v);
/*
 * The canonical form of one string, handed to emit piece by piece: valid UTF-8 (a byte that
 * starts no sequence becomes U+FFFD), at most three times as long as the string.
 */
void limits_canon_string(const char *s, size_t n,
                         void (*emit)(void *arg, const char *p, size_t len), void *arg);
/* True when key is a member name or a well-formed JSON Pointer within the bounds. */
int limits_volatile_key_ok(const char *key);

/* ---- Redis ---- */

struct limits_redis_call;
/* Keys and arguments of one atomic check for the Redis script. */
struct lredis_rate {
    const char *key;
    uint64_t interval_us, tolerance_us;
    uint32_t n;
    uint64_t ttl_ms;
};
struct lredis_budget {
    const char *key;
    int64_t cap, amount, ttl_s;
};
struct lredis_result {
    int ok;            /* 0: Redis unavailable or failed */
    int allowed;       /* 1 admitted (everything applied), 0 denied */
    int deny_kind;     /* 1 rate, 2 budget */
    size_t deny_index; /* which rate/budget denied */
    struct gcra_result rate[LIMITS_MAX_RATES];
    int64_t spent[LIMITS_MAX_BUDGETS];
};
typedef void (*lredis_cb)(void *arg, const struct lredis_result *res);
/*
 * Runs the check-and-reserve script on this thread's connection (opened on loop when needed).
 * Calls cb exactly once on the loop's thread, possibly before returning (connection down).
 */
void lredis_check(const struct limits_config *lc, void *loop, const struct lredis_rate *rates,
                  size_t n_rates, const struct lredis_budget *budgets, size_t n_budgets,
                  lredis_cb cb, void *arg);
/* Adds delta to budget keys (settlement, refund); fire and forget. */
void lredis_budget_add(const struct limits_config *lc, void *loop, const char *const *keys,
                       size_t n, int64_t delta, int64_t ttl_s);
/* Closes this thread's connection (tests, shutdown). */
void lredis_thread_close(void);

/*
 * This thread's connection to the configured Redis on `loop` (NULL while none can be made),
 * and dropping it (after a timeout, so a late reply is never matched to a later command).
 * The connection type is hiredis's redisAsyncContext.
 */
struct redisAsyncContext;
struct uv_loop_s;
struct redisAsyncContext *lredis_conn(const struct limits_config *lc, struct uv_loop_s *loop);
void lredis_drop(void);

/*
 * The session store in Redis (limits_sessions.c): toolgate's MCP sessions shared by every
 * instance and kept across restarts, used when limits.store is Redis.
 */
void limits_sessions_use_redis(const struct limits_config *lc);
void limits_sessions_stop(void);
/*
 * The loop Redis calls run on for requests without a worker (unit tests, the benchmark):
 * per thread. Requests served by the server use their worker's loop.
 */
void limits_set_thread_loop(void *loop);
/* The worker (struct gw_worker) serving this thread's Redis calls; its shutdown closes them. */
void lredis_set_host(const struct gw_request_host *host);

#endif
