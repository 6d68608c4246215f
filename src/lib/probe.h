/*
 * probe: a readiness probe of an outside store (Redis, PostgreSQL), run at most once per
 * interval whatever the number of callers: GET /readyz may be asked often and by several
 * balancers, and each probe waits (boundedly) on the network.
 */
#ifndef GW_PROBE_H
#define GW_PROBE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct gw_probe {
    pthread_mutex_t mu;
    uint64_t checked_ms; /* monotonic; 0 = never */
    int ok;
    char detail[160];
};

#define GW_PROBE_INIT                                                                              \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, 0, 0, ""                                                        \
    }

/*
 * The probe's result, running fn (which returns 1 when the store answered, 0 with a
 * sentence in detail when not) when the last result is older than interval_ms. Callers that
 * arrive while it runs wait for it. Copies the detail into out. Thread-safe.
 */
int gw_probe_run(struct gw_probe *p, uint64_t interval_ms,
                 int (*fn)(void *arg, char *detail, size_t detail_len), void *arg, char *out,
                 size_t out_len);

#endif
