/*
 * limits_redis: the Redis store. One connection per worker thread (thread-local), driven by
 * the worker's libuv loop through hiredis's async API.
 *
 * A call's rate limits and budget reservations are one script run (EVALSHA, EVAL when the
 * server answers NOSCRIPT): Redis runs it atomically, so every limit admits and every budget
 * has room before anything changes, and the clock is the server's (TIME), the same for every
 * gateway instance. Keys carry TTLs (a GCRA key lives until its theoretical arrival time, a
 * budget key a day past its period). A Lua script may only touch keys of one cluster slot,
 * so every key shares the hash tag {limits}: a Redis Cluster gives availability, one slot
 * holds the limiter. Lua numbers are doubles: amounts stay exact below 2^53 micro-units.
 *
 * A round trip that errs or exceeds redis_timeout reports "unavailable" (the layer fails
 * closed or falls back to local limits); the connection is then dropped and not retried for
 * half a second, so a dead Redis costs each call no more than a failed connect.
 */
#include "core/redis_conn.h"
#include "layers/limits/limits-int.h"
#include "lib/log.h"
#include "lib/timeutil.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static const char check_script[] =
    "local nr = tonumber(ARGV[1])\n"
    "local nb = tonumber(ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local out = {1, 0, 0}\n"
    "local tats = {}\n"
    "for i = 1, nr do\n"
    "  local b = 2 + (i - 1) * 3\n"
    "  local T = tonumber(ARGV[b + 1])\n"
    "  local tau = tonumber(ARGV[b + 2])\n"
    "  local n = tonumber(ARGV[b + 3])\n"
    "  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0\n"
    "  if tat < now then tat = now end\n"
    "  local new = tat + T * n\n"
    "  local ahead = new - now\n"
    "  if ahead <= tau then\n"
    "    tats[i] = new\n"
    "    out[#out + 1] = 1; out[#out + 1] = 0; out[#out + 1] = ahead\n"
    "    out[#out + 1] = math.floor((tau - ahead) / T)\n"
    "  else\n"
    "    if out[1] == 1 then out[1] = 0; out[2] = 1; out[3] = i end\n"
    "    local cur = tat - now\n"
    "    local rem = 0\n"
    "    if cur < tau then rem = math.floor((tau - cur) / T) end\n"
    "    out[#out + 1] = 0; out[#out + 1] = ahead - tau; out[#out + 1] = cur\n"
    "    out[#out + 1] = rem\n"
    "  end\n"
    "end\n"
    "local spent = {}\n"
    "for j = 1, nb do\n"
    "  local b = 2 + nr * 3 + (j - 1) * 3\n"
    "  local s = tonumber(redis.call('GET', KEYS[nr + j]) or '0') or 0\n"
    "  spent[j] = s\n"
    "  if out[1] == 1 and s + tonumber(ARGV[b + 2]) > tonumber(ARGV[b + 1]) then\n"
    "    out[1] = 0; out[2] = 2; out[3] = j\n"
    "  end\n"
    "end\n"
    "if out[1] == 1 then\n"
    "  for i = 1, nr do\n"
    "    redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX',\n"
    "               math.floor((tats[i] - now) / 1000) + 1)\n"
    "  end\n"
    "  for j = 1, nb do\n"
    "    local b = 2 + nr * 3 + (j - 1) * 3\n"
    "    spent[j] = redis.call('INCRBY', KEYS[nr + j], ARGV[b + 2])\n"
    "    redis.call('EXPIRE', KEYS[nr + j], ARGV[b + 3])\n"
    "  end\n"
    "end\n"
    "for j = 1, nb do out[#out + 1] = spent[j] end\n"
    "return out\n";

static __thread struct gw_redis_conn tls_conn;
static __thread struct gw_request_host tls_host;

void lredis_set_host(const struct gw_request_host *host)
{
    tls_host = *host;
}
static char script_sha[41];
static uv_once_t sha_once = UV_ONCE_INIT;

static void sha_init(void)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    static const char hex[] = "0123456789abcdef";
    if (EVP_Digest(check_script, sizeof check_script - 1, md, &len, EVP_sha1(), NULL) != 1 ||
        len != 20)
        return;
    for (unsigned i = 0; i < 20; i++) {
        script_sha[2 * i] = hex[md[i] >> 4];
        script_sha[2 * i + 1] = hex[md[i] & 15];
    }
    script_sha[40] = '\0';
}

void lredis_thread_close(void)
{
    gw_redis_conn_close(&tls_conn);
}

redisAsyncContext *lredis_conn(const struct limits_config *lc, uv_loop_t *loop)
{
    return gw_redis_conn_get(&tls_conn, lc->redis_host, lc->redis_port, loop, &tls_host);
}

/* ---- one check ---- */

struct rop {
    lredis_cb cb;
    void *arg;
    int done;          /* the callback has been called */
    int reply_pending; /* hiredis still holds this op as privdata */
    int timer_open;
    uv_timer_t timer;
    size_t nr, nb;
    int argc;
    const char **argv;
    size_t *argvlen;
    struct gw_buf storage; /* numbers and key names the argv points into */
    size_t *offsets;
};

static void rop_maybe_free(struct rop *op)
{
    if (op->reply_pending || op->timer_open)
        return;
    gw_buf_free(&op->storage);
    free(op->argv);
    free(op->argvlen);
    free(op->offsets);
    free(op);
}

static void timer_closed(uv_handle_t *h)
{
    struct rop *op = h->data;
    op->timer_open = 0;
    rop_maybe_free(op);
}

static void finish(struct rop *op, const struct lredis_result *res)
{
    if (op->done)
        return;
    op->done = 1;
    if (op->timer_open && !uv_is_closing((uv_handle_t *)&op->timer))
        uv_close((uv_handle_t *)&op->timer, timer_closed);
    op->cb(op->arg, res);
}

static void fail(struct rop *op)
{
    struct lredis_result res;
    memset(&res, 0, sizeof res);
    finish(op, &res);
}

static int64_t elem_int(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

static void parse(struct rop *op, const redisReply *r)
{
    struct lredis_result res;
    memset(&res, 0, sizeof res);
    size_t want = 3 + op->nr * 4 + op->nb;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != want) {
        fail(op);
        return;
    }
    res.ok = 1;
    res.allowed = elem_int(r->element[0]) == 1;
    res.deny_kind = (int)elem_int(r->element[1]);
    int64_t idx = elem_int(r->element[2]);
    res.deny_index = idx > 0 ? (size_t)(idx - 1) : 0;
    for (size_t i = 0; i < op->nr; i++) {
        const redisReply *const *e = (const redisReply *const *)r->element + 3 + i * 4;
        res.rate[i].allowed = elem_int(e[0]) == 1;
        int64_t retry = elem_int(e[1]), reset = elem_int(e[2]);
        res.rate[i].retry_ns = retry > 0 ? (uint64_t)retry * 1000 : 0;
        res.rate[i].reset_ns = reset > 0 ? (uint64_t)reset * 1000 : 0;
        res.rate[i].remaining = elem_int(e[3]);
    }
    for (size_t j = 0; j < op->nb; j++)
        res.spent[j] = elem_int(r->element[3 + op->nr * 4 + j]);
    finish(op, &res);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct rop *op = privdata;
    redisReply *r = reply;
    op->reply_pending = 0;
    if (op->done || !r) {
        fail(op);
        rop_maybe_free(op);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* First use on this server (or after SCRIPT FLUSH): send the script itself. */
        op->argv[0] = "EVAL";
        op->argvlen[0] = 4;
        op->argv[1] = check_script;
        op->argvlen[1] = sizeof check_script - 1;
        if (redisAsyncCommandArgv(ac, on_reply, op, op->argc, op->argv, op->argvlen) == REDIS_OK) {
            op->reply_pending = 1;
            return;
        }
        fail(op);
        rop_maybe_free(op);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        gw_log(GW_LOG_WARN, "limits_redis_error", NULL, NULL,
               "Redis refused the limits script: %.200s", r->str);
        fail(op);
    } else {
        parse(op, r);
    }
    rop_maybe_free(op);
}

static void on_timeout(uv_timer_t *t)
{
    struct rop *op = t->data;
    gw_log(GW_LOG_WARN, "limits_redis_timeout", NULL, NULL,
           "Redis did not answer within limits.redis_timeout; dropping the connection");
    fail(op);
    /* The late reply must not be matched to a later command: start a new connection. */
    gw_redis_conn_drop(&tls_conn);
}

void lredis_drop(void)
{
    gw_redis_conn_drop(&tls_conn);
}

/* Appends a NUL-terminated argument; offsets are resolved to pointers once storage is final. */
static int arg_add(struct rop *op, const char *s, size_t len)
{
    op->offsets[op->argc] = op->storage.len;
    op->argvlen[op->argc] = len;
    op->argc++;
    return gw_buf_append(&op->storage, s, len) == 0 && gw_buf_append(&op->storage, "", 1) == 0 ? 0
                                                                                               : -1;
}

static int arg_num(struct rop *op, int64_t v)
{
    char b[32];
    int n = snprintf(b, sizeof b, "%lld", (long long)v);
    return arg_add(op, b, (size_t)n);
}

void lredis_check(const struct limits_config *lc, void *loop, const struct lredis_rate *rates,
                  size_t n_rates, const struct lredis_budget *budgets, size_t n_budgets,
                  lredis_cb cb, void *arg)
{
    uv_once(&sha_once, sha_init);
    struct rop *op = calloc(1, sizeof *op);
    if (!op) {
        struct lredis_result res;
        memset(&res, 0, sizeof res);
        cb(arg, &res);
        return;
    }
    op->cb = cb;
    op->arg = arg;
    op->nr = n_rates;
    op->nb = n_budgets;
    int max = 5 + (int)(n_rates * 4 + n_budgets * 4);
    op->argv = calloc((size_t)max, sizeof *op->argv);
    op->argvlen = calloc((size_t)max, sizeof *op->argvlen);
    op->offsets = calloc((size_t)max, sizeof *op->offsets);
    redisAsyncContext *ac = NULL;
    if (!op->argv || !op->argvlen || !op->offsets || n_rates > LIMITS_MAX_RATES ||
        n_budgets > LIMITS_MAX_BUDGETS)
        goto fail_now;
    int bad = 0;
    bad |= arg_add(op, "EVALSHA", 7);
    bad |= arg_add(op, script_sha, 40);
    bad |= arg_num(op, (int64_t)(n_rates + n_budgets));
    for (size_t i = 0; i < n_rates; i++)
        bad |= arg_add(op, rates[i].key, strlen(rates[i].key));
    for (size_t j = 0; j < n_budgets; j++)
        bad |= arg_add(op, budgets[j].key, strlen(budgets[j].key));
    bad |= arg_num(op, (int64_t)n_rates);
    bad |= arg_num(op, (int64_t)n_budgets);
    for (size_t i = 0; i < n_rates; i++) {
        bad |= arg_num(op, (int64_t)rates[i].interval_us);
        bad |= arg_num(op, (int64_t)rates[i].tolerance_us);
        bad |= arg_num(op, (int64_t)rates[i].n);
    }
    for (size_t j = 0; j < n_budgets; j++) {
        bad |= arg_num(op, budgets[j].cap);
        bad |= arg_num(op, budgets[j].amount);
        bad |= arg_num(op, budgets[j].ttl_s);
    }
    if (bad)
        goto fail_now;
    for (int i = 0; i < op->argc; i++)
        op->argv[i] = op->storage.data + op->offsets[i];
    ac = lredis_conn(lc, loop);
    if (!ac)
        goto fail_now;
    if (redisAsyncCommandArgv(ac, on_reply, op, op->argc, op->argv, op->argvlen) != REDIS_OK)
        goto fail_now;
    op->reply_pending = 1;
    uv_timer_init(loop, &op->timer);
    op->timer.data = op;
    op->timer_open = 1;
    /*
     * libuv measures a timer from the loop's cached time, which it refreshes only when the loop
     * wakes. Whatever ran since (the rest of this iteration's callbacks, or everything since
     * the loop was initialised if it has not run yet) would otherwise come off redis_timeout;
     * past it the timer is already due on the next iteration, which runs timers before it
     * polls for the reply, and a healthy server is reported unavailable. One clock read.
     */
    uv_update_time(loop);
    uv_timer_start(&op->timer, on_timeout, lc->redis_timeout_ms, 0);
    return;
fail_now:
    fail(op);
    rop_maybe_free(op);
}

static void on_ignored(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *r = reply;
    if (!r || r->type == REDIS_REPLY_ERROR)
        gw_log(GW_LOG_WARN, "limits_redis_settle", NULL, NULL,
               "a budget settlement did not reach Redis%s%.200s", r ? ": " : "", r ? r->str : "");
}

void lredis_budget_add(const struct limits_config *lc, void *loop, const char *const *keys,
                       size_t n, int64_t delta, int64_t ttl_s)
{
    redisAsyncContext *ac = lredis_conn(lc, loop);
    if (!ac) {
        gw_log(GW_LOG_WARN, "limits_redis_settle", NULL, NULL,
               "Redis is unavailable: a budget settlement of %lld micro-units was not applied",
               (long long)delta);
        return;
    }
    char d[32], t[32];
    snprintf(d, sizeof d, "%lld", (long long)delta);
    snprintf(t, sizeof t, "%lld", (long long)ttl_s);
    for (size_t i = 0; i < n; i++) {
        const char *a1[] = {"INCRBY", keys[i], d};
        size_t l1[] = {6, strlen(keys[i]), strlen(d)};
        const char *a2[] = {"EXPIRE", keys[i], t};
        size_t l2[] = {6, strlen(keys[i]), strlen(t)};
        redisAsyncCommandArgv(ac, on_ignored, NULL, 3, a1, l1);
        redisAsyncCommandArgv(ac, on_ignored, NULL, 3, a2, l2);
    }
}
