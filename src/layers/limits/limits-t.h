/* limits-t.h: what the limits layer decided about a request (types only; audit reads it). */
#ifndef GW_LIMITS_T_H
#define GW_LIMITS_T_H

#include <stdint.h>

/* Loop-detector flags (gw_limits_state.loop_flags). */
#define GW_LOOP_IDENTICAL 0x01   /* the same call repeated within the window */
#define GW_LOOP_NO_PROGRESS 0x02 /* the same call got the same result again and again */
#define GW_LOOP_CYCLE 0x04       /* calls repeat with a period (A,B,A,B...) */
#define GW_LOOP_SESSION_CAP 0x08 /* the session (or user, without one) made too many calls */
#define GW_LOOP_COOLDOWN 0x10    /* the user+tool is cooling down after a loop denial */

/*
 * Per request, filled by the limits layer (req->limits). Money is in micro-units (1 unit =
 * 1,000,000). Everything is 0 when the layer did not look at the request.
 */
struct gw_limits_state {
    int governed;             /* 1 when the layer evaluated tool calls of this request */
    int64_t cost_estimated;   /* sum of the estimates of the request's tool calls */
    int64_t cost_reserved;    /* what was reserved against the budgets (0 when no budget) */
    int64_t cost_settled;     /* actual cost after the response (estimate, reported, or 0) */
    int cost_reported;        /* 1 when the backend reported the actual cost */
    int settled;              /* 1 once the reservation was settled or refunded */
    int refunded;             /* 1 when the reservation was given back (call failed) */
    int64_t budget_remaining; /* tightest budget's remaining after reservation; -1 when none */
    char budget_name[48];     /* the tightest (or the denying) budget */
    int64_t rate_remaining;   /* tightest rate limit's remaining after this call; -1 none */
    char rate_name[48];       /* the tightest (or the denying) rate limit */
    uint64_t retry_after_ms;  /* when denied by a rate limit, budget period or cool-down */
    unsigned loop_flags;      /* GW_LOOP_* raised for this call */
    int loop_action;          /* 0 none, 1 warned, 2 denied */
    int store_fallback;       /* 1 when Redis was unavailable and local limits decided */
    char store[8];            /* "memory" or "redis" */
};

#endif
