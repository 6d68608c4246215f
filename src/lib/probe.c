/* probe: rate-limited readiness probes (probe.h). */
#include "lib/probe.h"
#include "lib/timeutil.h"

#include <stdio.h>

int gw_probe_run(struct gw_probe *p, uint64_t interval_ms,
                 int (*fn)(void *arg, char *detail, size_t detail_len), void *arg, char *out,
                 size_t out_len)
{
    pthread_mutex_lock(&p->mu);
    uint64_t now = gw_mono_ms();
    if (p->checked_ms == 0 || now - p->checked_ms >= interval_ms) {
        p->detail[0] = '\0';
        p->ok = fn(arg, p->detail, sizeof p->detail) == 1;
        p->checked_ms = gw_mono_ms();
        if (!p->checked_ms)
            p->checked_ms = 1;
    }
    int ok = p->ok;
    snprintf(out, out_len, "%s", p->detail);
    pthread_mutex_unlock(&p->mu);
    return ok;
}
