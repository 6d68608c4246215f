/*
 * reload_notify: after a reload, tell clients whose visible tools, resources or prompts may
 * have changed. What a session is shown is decided by the policy section (routes, and with
 * them allow_methods, cannot change without a restart), so every client server stream (GET)
 * toolgate relays gets notifications/tools/list_changed, resources/list_changed and
 * prompts/list_changed when the policy section of the worker's new generation differs from
 * the one the stream last saw. This is per route and generation, not per session: a session
 * whose lists happen to be the same under the new policy is told too, and asks again.
 *
 * Each worker keeps its own list of open streams (thread-local: an exchange never leaves its
 * worker); the reload posts a pass over it to every worker.
 */
#include "core/exchange.h"
#include "core/generation.h"
#include "core/reload.h"
#include "core/server-int.h"
#include "mcp/sse.h"

#include <string.h>

static _Thread_local struct exchange *streams;

static const uint8_t *policy_digest(const struct gw_config *cfg)
{
    static const uint8_t none[32];
    for (size_t i = 0; cfg && i < cfg->n_sections; i++)
        if (strcmp(cfg->sections[i].key, "policy") == 0)
            return cfg->sections[i].digest;
    return none;
}

void reload_notify_stream_open(struct exchange *x)
{
    if (x->stream_listed)
        return;
    memcpy(x->lists_seen, policy_digest(x->cfg), sizeof x->lists_seen);
    x->stream_listed = 1;
    x->stream_prev = NULL;
    x->stream_next = streams;
    if (streams)
        streams->stream_prev = x;
    streams = x;
}

void reload_notify_stream_close(struct exchange *x)
{
    if (!x->stream_listed)
        return;
    if (x->stream_prev)
        x->stream_prev->stream_next = x->stream_next;
    else
        streams = x->stream_next;
    if (x->stream_next)
        x->stream_next->stream_prev = x->stream_prev;
    x->stream_listed = 0;
}

static void notify_one(struct exchange *x)
{
    static const char *const methods[] = {"notifications/tools/list_changed",
                                          "notifications/resources/list_changed",
                                          "notifications/prompts/list_changed"};
    struct gw_buf out = {0};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        char data[96];
        int n = snprintf(data, sizeof data, "{\"jsonrpc\":\"2.0\",\"method\":\"%s\"}", methods[i]);
        sse_encode(&out, GW_SLICE_NULL, GW_SLICE_NULL, 0, -1, (struct gw_slice){data, (size_t)n});
    }
    if (out.len && x->conn && !x->finished && !x->holding_stream)
        gw_conn_write_body(x->conn, out.data, out.len);
    gw_buf_free(&out);
}

/* On a worker's thread, posted by the reload once the new generation is current. */
static void notify_pass(void *arg)
{
    struct gw_worker *w = arg;
    worker_refresh_config(w);
    const uint8_t *now = policy_digest(gw_worker_config(w));
    for (struct exchange *x = streams; x; x = x->stream_next) {
        if (memcmp(x->lists_seen, now, sizeof x->lists_seen) == 0)
            continue;
        memcpy(x->lists_seen, now, sizeof x->lists_seen);
        notify_one(x);
    }
}

void reload_notify_all(void)
{
    gw_server_post_each(notify_pass);
}
