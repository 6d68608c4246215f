/*
 * endpoints: a backend with several endpoints (backends[].endpoints). Picks the endpoint for
 * a request (round-robin over the usable ones), ejects an endpoint after consecutive failed
 * requests (passive: base * 2^(ejections-1), capped), and marks endpoints down and up with
 * active health checks (GET <origin><health.path>) from one background thread.
 *
 * The state lives in a table per configuration generation (which is itself immutable), built
 * off the event loop when the generation is (endpoint_table_build), read and updated with
 * atomics by every worker (no lock on the request path) and by the health thread, which
 * checks the current generation's table. A reload's new table shares the state of every
 * endpoint whose route name and URL it keeps.
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

struct endpoint_table;
struct ssrf_allow;

/*
 * Builds the endpoint table of cfg's backends, off the event loop (routing_start, or a
 * reload's prepare). An endpoint of `previous` (the running generation's table; may be NULL)
 * with the same route name and URL keeps its health and ejection state: the two tables share
 * it, so what requests still running on the previous generation report counts for the new one
 * too. When the endpoint's backend gains or loses health checks, the state is copied instead
 * and the endpoint starts up. `allow` is the egress allow list the health checks vet addresses
 * against (the generation's own; NULL: nothing private). Returns NULL when out of memory.
 *
 * The table belongs to the generation it was built for (it points into its backends): it is
 * freed with that generation, by whichever thread drops the generation's last reference.
 */
struct endpoint_table *endpoint_table_build(const struct gw_config *cfg,
                                            const struct ssrf_allow *allow,
                                            const struct endpoint_table *previous);
void endpoint_table_free(struct endpoint_table *t);
/* 1 when some backend of the table has `health` (the health thread must run). */
int endpoint_table_has_health(const struct endpoint_table *t);

/*
 * The health thread: each pass, `acquire` gives the table to check (the current generation's)
 * with a hold on what keeps it alive in *hold, and `release` drops that hold after the pass;
 * both run on the health thread. endpoints_health_start is idempotent (0, or -1 logged);
 * endpoints_health_stop joins the thread (after the workers have ended).
 */
int endpoints_health_start(const struct endpoint_table *(*acquire)(void **hold),
                           void (*release)(void *hold));
void endpoints_health_stop(void);

/*
 * The endpoint for a request to be: round-robin over the usable endpoints of be. Returns its
 * index (into be->endpoints), or -1 when none is usable. A backend the table does not hold
 * (NULL table: unit tests without start) always gets 0.
 */
int endpoints_pick(const struct endpoint_table *t, const struct gw_backend *be);

/* Which endpoint a URL chosen by endpoints_pick is (pointer comparison); 0 for NULL. */
int endpoints_index_of(const struct gw_backend *be, const char *url);

/* Records a request's outcome on endpoint `index` of be (ejection bookkeeping). */
void endpoints_report(const struct endpoint_table *t, const struct gw_backend *be, int index,
                      enum endpoint_outcome outcome);

/* Reads one endpoint's state. Returns 0, or -1 when unknown. */
int endpoints_status(const struct endpoint_table *t, const struct gw_backend *be, int index,
                     struct endpoint_status *out);

/* Tests: replaces the monotonic clock (milliseconds); NULL restores it. */
void endpoints_set_clock(uint64_t (*now_ms)(void));

#endif
