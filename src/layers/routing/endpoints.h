/*
 * endpoints: a backend with several endpoints (backends[].endpoints). Picks the endpoint for
 * a request (round-robin over the usable ones), ejects an endpoint after consecutive failed
 * requests (passive: base * 2^(ejections-1), capped), and marks endpoints down and up with
 * active health checks (GET <origin><health.path>) from one background thread.
 *
 * The state lives here, not in the configuration generation (which is immutable): one table
 * per process built by endpoints_start from the generation, read and updated with atomics
 * by every worker (no lock on the request path), and by the health thread.
 *
 * An endpoint is usable when it is up (no active checks, or the last checks said so) and not
 * ejected. There are no retries: a request that failed on one endpoint is not sent to
 * another (a tools/call may have had effects).
 */
#ifndef GW_ROUTING_ENDPOINTS_H
#define GW_ROUTING_ENDPOINTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

struct egress_config;

/* Outcome of one request on an endpoint, for passive ejection. */
enum endpoint_outcome {
    ENDPOINT_NONE = 0, /* the request never reached the endpoint (denied, no answer needed) */
    ENDPOINT_OK,       /* the endpoint answered */
    ENDPOINT_FAILED,   /* unreachable, timed out, cut off, or a 502/503/504 */
};

/* What a test or the admin side may read about one endpoint. */
struct endpoint_status {
    int up;                    /* the health checks' view (1 without checks) */
    int ejected;               /* ejected now */
    unsigned failures;         /* consecutive failed requests */
    unsigned ejections;        /* consecutive ejections (reset by a success after one) */
    uint64_t ejected_until_ms; /* monotonic; 0 when never ejected */
};

/*
 * Builds the endpoint table for cfg and, when some backend has `health`, starts the health
 * thread (its checks vet the endpoint's address against egress as requests do). Call before
 * the workers start; endpoints_stop after they end. Returns 0, or -1 (logged).
 */
int endpoints_start(const struct gw_config *cfg, const struct egress_config *egress);
void endpoints_stop(void);

/*
 * The endpoint for a request to be: round-robin over the usable endpoints of be. Returns its
 * index (into be->endpoints), or -1 when none is usable. A backend endpoints_start has not
 * seen (unit tests without start) always gets 0.
 */
int endpoints_pick(const struct gw_backend *be);

/* Which endpoint a URL chosen by endpoints_pick is (pointer comparison); 0 for NULL. */
int endpoints_index_of(const struct gw_backend *be, const char *url);

/* Records a request's outcome on endpoint `index` of be (ejection bookkeeping). */
void endpoints_report(const struct gw_backend *be, int index, enum endpoint_outcome outcome);

/* Reads one endpoint's state. Returns 0, or -1 when unknown. */
int endpoints_status(const struct gw_backend *be, int index, struct endpoint_status *out);

/* Tests: replaces the monotonic clock (milliseconds); NULL restores it. */
void endpoints_set_clock(uint64_t (*now_ms)(void));

#endif
