/*
 * limits_request: the limits layer's state for one request and the process runtime, shared
 * by the request path (limits.c) and the response path and runtime (limits_settle.c).
 */
#ifndef GW_LIMITS_REQUEST_H
#define GW_LIMITS_REQUEST_H

#include <uv.h>

#include "layers/limits/limits-int.h"

struct limits_runtime {
    struct lstore *rates;
    struct lstore *budgets;
    struct lloop *loops;
    struct limits_ledger *ledger;
    const struct limits_config *lc;
};

/* One tool call of the request. */
struct lcall_state {
    const struct mcp_message *m;
    const char *tool;
    size_t tool_len;
    uint64_t fingerprint;
    uint64_t near; /* fingerprint with every number alike */
    int64_t estimate;
    int64_t settled; /* reported cost, when reported */
    int reported;
    int answered; /* a result came back */
    int failed;   /* an error came back */
    int warned;
    unsigned loop_flags;
};

/* One budget reservation of the request. */
struct lreservation {
    size_t budget; /* index in lc->budgets */
    struct limits_key key;
    char *ledger_key; /* the principal value; NULL when no ledger */
    char *redis_key;  /* Redis mode */
    int64_t period, expires;
    int64_t amount; /* reserved */
};

struct lreq {
    struct lcall_state *calls; /* one per tools/call of the request */
    size_t n_calls;
    struct lreservation res[LIMITS_MAX_BUDGETS];
    size_t n_res;
    int reserved; /* reservations are in place (to settle) */
    int redis;    /* reservations live in Redis */
    struct limits_key user, session;
    int have_session;
    struct lredis_req *rr;        /* Redis mode only */
    struct ladmission *admission; /* waiting for the ledger (limits.c) */
    struct gw_request *req;
};

/* Redis: what the check asked, to interpret the answer. */
struct lredis_req {
    struct lredis_rate rrates[LIMITS_MAX_RATES];
    char *rkeys[LIMITS_MAX_RATES];
    size_t rrate_index[LIMITS_MAX_RATES];
    size_t n_rrates;
    struct lredis_budget rbudgets[LIMITS_MAX_BUDGETS];
};

/* Set by limits_start, cleared by limits_stop; read-only while requests run. */
extern struct limits_runtime *limits_rt;

/* The loop Redis round trips of req run on: its worker's, else this thread's (tests). */
uv_loop_t *limits_loop_for(const struct gw_request *req);

/* "identical,cycle": the names of GW_LOOP_* flags into buf (limits.c). */
const char *limits_loop_flag_names(unsigned f, char *buf, size_t n);

/* The response path (limits_settle.c). */
int limits_on_response(struct gw_request *req, json_t *msg, int *modified, struct gw_decision *out);
void limits_on_complete(struct gw_request *req);

#endif
