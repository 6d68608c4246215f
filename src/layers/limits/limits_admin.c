/*
 * limits_admin: spend against budgets for the admin API (topic "spend", core/module.h) and
 * spend per tenant for /metrics.
 *
 * Budgets are kept under hashed keys, so the layer cannot list who spent: this file remembers
 * the users and tenants it has seen settle a cost (at most LIMITS_ADMIN_MAX_NAMES of each; later
 * ones are counted under "other" and not listed) and reads each one's spend of the current
 * period from the memory store. With a Redis store the spend lives in Redis and is not read
 * here; the answer says so.
 *
 * The tenant metric is bounded: the LIMITS_ADMIN_TOP_TENANTS tenants with the most spend are
 * labelled by name, every other tenant is summed under tenant="other". No user is a label.
 */
#include "layers/limits/limits-int.h"
#include "layers/limits/limits_request.h"
#include "lib/metrics.h"
#include "lib/timeutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIMITS_ADMIN_MAX_NAMES 1024
#define LIMITS_ADMIN_TOP_TENANTS 10
#define SPEND_DEFAULT_LIMIT 20
#define SPEND_MAX_LIMIT 100

enum { WHO_USER = 0, WHO_TENANT, WHO_CLIENT, WHO_KINDS };

struct spender {
    char name[128];
    int64_t settled; /* micro-units settled by this process since it started */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct spender *spenders[WHO_KINDS];
static size_t n_spenders[WHO_KINDS];
static int64_t unlisted[WHO_KINDS]; /* settled by names beyond the bound */

static void note(int kind, const char *name, int64_t amount)
{
    if (!name || !*name)
        name = "(none)";
    for (size_t i = 0; i < n_spenders[kind]; i++)
        if (strcmp(spenders[kind][i].name, name) == 0) {
            spenders[kind][i].settled += amount;
            return;
        }
    if (!spenders[kind])
        spenders[kind] = calloc(LIMITS_ADMIN_MAX_NAMES, sizeof *spenders[kind]);
    if (!spenders[kind] || n_spenders[kind] >= LIMITS_ADMIN_MAX_NAMES ||
        strlen(name) >= sizeof spenders[kind][0].name) {
        unlisted[kind] += amount;
        return;
    }
    struct spender *s = &spenders[kind][n_spenders[kind]++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->settled = amount;
}

void limits_admin_note(const struct gw_request *req)
{
    const struct gw_limits_state *st = &req->limits;
    if (!st->governed || !st->settled)
        return;
    int64_t amount = st->cost_settled > 0 ? st->cost_settled : 0;
    pthread_mutex_lock(&lock);
    note(WHO_USER, req->identity.subject, amount);
    note(WHO_TENANT, req->identity.tenant, amount);
    note(WHO_CLIENT, req->identity.client_id, amount);
    pthread_mutex_unlock(&lock);
}

static int kind_of(enum limits_per per)
{
    return per == LIMITS_PER_TENANT ? WHO_TENANT : per == LIMITS_PER_CLIENT ? WHO_CLIENT : WHO_USER;
}

static const char *per_name(enum limits_per per)
{
    return per == LIMITS_PER_TENANT ? "tenant" : per == LIMITS_PER_CLIENT ? "client" : "user";
}

static const char *period_name(enum limits_period p)
{
    return p == LIMITS_PERIOD_WEEK ? "week" : p == LIMITS_PERIOD_MONTH ? "month" : "day";
}

struct row {
    char name[128];
    int64_t spent;
};

static int by_spent(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    if (x->spent != y->spent)
        return x->spent < y->spent ? 1 : -1;
    return strcmp(x->name, y->name);
}

static double units(int64_t micro)
{
    return (double)micro / (double)MICRO;
}

static json_t *budget_json(const struct limits_config *lc, size_t b, const char *only, size_t limit)
{
    const struct limits_budget *bg = &lc->budgets[b];
    int kind = kind_of(bg->per);
    int64_t now = (int64_t)(gw_now_ns() / 1000000000ull), period = 0, end = 0;
    limits_period_of(&lc->tz, bg->period, now, &period, &end);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:f, s:I, s:I}", "name", bg->name, "per", per_name(bg->per),
                  "period", period_name(bg->period), "cap", units(bg->cap), "cap_micro",
                  (json_int_t)bg->cap, "period_ends_ms", (json_int_t)end * 1000);
    if (!o)
        return NULL;
    if (lc->redis_host || !limits_rt || !limits_rt->budgets) {
        json_object_set_new(o, "spenders", json_array());
        json_object_set_new(o, "note",
                            json_string(lc->redis_host ? "spend is kept in Redis and not read "
                                                         "by the admin API"
                                                       : "the limits runtime is not running"));
        return o;
    }
    pthread_mutex_lock(&lock);
    size_t n = n_spenders[kind];
    struct row *rows = calloc(n ? n : 1, sizeof *rows);
    for (size_t i = 0; rows && i < n; i++)
        snprintf(rows[i].name, sizeof rows[i].name, "%s", spenders[kind][i].name);
    int truncated = unlisted[kind] > 0;
    pthread_mutex_unlock(&lock);
    if (!rows) {
        json_decref(o);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (only && strcmp(only, rows[i].name) != 0)
            continue;
        struct limits_key key;
        limits_key_make(&key, "b", (unsigned)b, rows[i].name, bg->name, period);
        rows[k] = rows[i];
        rows[k].spent = lstore_budget_get(limits_rt->budgets, &key, now);
        k++;
    }
    qsort(rows, k, sizeof *rows, by_spent);
    json_t *list = json_array();
    for (size_t i = 0; list && i < k && i < limit; i++) {
        double share = bg->cap > 0 ? (double)rows[i].spent / (double)bg->cap : 0;
        json_array_append_new(list, json_pack("{s:s, s:f, s:I, s:f}", "name", rows[i].name, "spent",
                                              units(rows[i].spent), "spent_micro",
                                              (json_int_t)rows[i].spent, "used", share));
    }
    free(rows);
    json_object_set_new(o, "spenders", list ? list : json_array());
    json_object_set_new(o, "listed_of", json_integer((json_int_t)k));
    if (truncated)
        json_object_set_new(o, "truncated", json_true());
    return o;
}

int limits_admin_api(const struct gw_config *cfg, const char *topic, const json_t *params,
                     json_t **out)
{
    if (strcmp(topic, "spend") != 0)
        return 0;
    const char *key, *only = NULL;
    json_t *v;
    uint64_t limit = SPEND_DEFAULT_LIMIT;
    json_object_foreach((json_t *)params, key, v)
    {
        const char *s = json_string_value(v);
        if (strcmp(key, "name") == 0 && s && *s) {
            only = s;
        } else if (strcmp(key, "limit") == 0 && s) {
            char *end = NULL;
            limit = s[0] >= '0' && s[0] <= '9' && strlen(s) < 6 ? strtoull(s, &end, 10) : 0;
            if (!end || *end || limit < 1 || limit > SPEND_MAX_LIMIT) {
                *out = json_pack("{s:s}", "error", "\"limit\" is a whole number from 1 to 100");
                return 400;
            }
        } else {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "/admin/api/spend takes \"name\" (a user, tenant or client) and \"limit\", "
                     "not \"%s\"",
                     key);
            *out = json_pack("{s:s}", "error", msg);
            return 400;
        }
    }
    const struct limits_config *lc = limits_config_of(cfg);
    json_t *budgets = json_array();
    for (size_t b = 0; lc && budgets && b < lc->n_budgets; b++)
        json_array_append_new(budgets, budget_json(lc, b, only, limit));
    *out = json_pack("{s:b, s:o}", "configured", lc != NULL, "budgets",
                     budgets ? budgets : json_array());
    if (*out && !lc)
        json_object_set_new(*out, "note",
                            json_string("there is no limits section: nothing is budgeted"));
    return *out ? 200 : 503;
}

void limits_admin_metrics(struct gw_metrics_out *out)
{
    struct row top[LIMITS_ADMIN_TOP_TENANTS + 1];
    size_t n_top = 0;
    int64_t other = 0;
    pthread_mutex_lock(&lock);
    other = unlisted[WHO_TENANT];
    for (size_t i = 0; i < n_spenders[WHO_TENANT]; i++) {
        const struct spender *s = &spenders[WHO_TENANT][i];
        /* Insertion into a short sorted list; what falls off the end goes to "other". */
        struct row r;
        snprintf(r.name, sizeof r.name, "%s", s->name);
        r.spent = s->settled;
        size_t at = n_top;
        while (at > 0 && by_spent(&top[at - 1], &r) > 0)
            at--;
        if (at >= LIMITS_ADMIN_TOP_TENANTS) {
            other += r.spent;
            continue;
        }
        if (n_top == LIMITS_ADMIN_TOP_TENANTS)
            other += top[--n_top].spent;
        memmove(&top[at + 1], &top[at], (n_top - at) * sizeof *top);
        top[at] = r;
        n_top++;
    }
    pthread_mutex_unlock(&lock);
    metrics_family(out, "toolgate_limits_tenant_spend_total", "counter",
                   "Cost settled per tenant, in the configuration's money units: the 10 tenants "
                   "with the most spend by name, every other tenant summed as \"other\".");
    for (size_t i = 0; i < n_top; i++) {
        struct metrics_label l[] = {{"tenant", top[i].name}};
        metrics_sample(out, "toolgate_limits_tenant_spend_total", l, 1, units(top[i].spent));
    }
    struct metrics_label l[] = {{"tenant", "other"}};
    metrics_sample(out, "toolgate_limits_tenant_spend_total", l, 1, units(other));
}

void limits_admin_reset(void)
{
    pthread_mutex_lock(&lock);
    for (int k = 0; k < WHO_KINDS; k++) {
        free(spenders[k]);
        spenders[k] = NULL;
        n_spenders[k] = 0;
        unlisted[k] = 0;
    }
    pthread_mutex_unlock(&lock);
}
