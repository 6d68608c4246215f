/* events: the sink other modules put audit records through (events.h). */
#include "lib/events.h"

#include <errno.h>
#include <stdatomic.h>

static _Atomic(gw_event_sink_fn) sink;

void gw_event_sink_set(gw_event_sink_fn fn)
{
    atomic_store(&sink, fn);
}

int gw_event_submit(json_t *rec)
{
    gw_event_sink_fn fn = atomic_load(&sink);
    if (!fn) {
        json_decref(rec);
        return -ENOTCONN;
    }
    return fn(rec);
}
