/*
 * The client's answers to backends' requests: a backend's request reached the client under an
 * id of toolgate's (fed_on_message, fed_pending_add); the answer goes back to the backend that
 * asked, under the backend's own id.
 */
#include "lib/log.h"
#include "mcp/jsonrpc.h"
#include "routes/federation/fed-int.h"

#include <stdlib.h>
#include <string.h>

static void answered_done(void *arg, int err, const char *detail)
{
    struct exchange *x = arg;
    x->up = NULL;
    if (err != UPSTREAM_OK)
        gw_log(GW_LOG_WARN, "federation_answer_lost", x->req->id, NULL,
               "the client's answer did not reach backend %s: %s", x->req->backend->name,
               detail ? detail : "");
    answer_empty(x, 202);
}

void fed_answer_backend(struct exchange *x, const struct mcp_message *m)
{
    struct gw_request *req = x->req;
    struct fed_state *s = state(x);
    size_t idx = 0;
    json_t *backend_id = NULL;
    if (!req->session_valid ||
        fed_pending_take(req->session_id, json_string_value(m->id), now_ms(), &idx, &backend_id) !=
            0 ||
        idx >= req->route->n_backends || idx >= req->session.n_backends ||
        !req->session.backends[idx]) {
        json_decref(backend_id);
        gw_log(GW_LOG_WARN, "federation_unknown_answer", req->id, NULL,
               "dropped a client's answer to a request toolgate did not send it in this session");
        answer_empty(x, 202);
        return;
    }
    json_t *out = json_deep_copy(m->json);
    if (out)
        json_object_set_new(out, "id", backend_id);
    else
        json_decref(backend_id);
    s->index = idx;
    s->body = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    s->backend_sid = s->body ? strdup(req->session.backends[idx]) : NULL;
    if (!s->backend_sid) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    static const struct upstream_callbacks cbs = {fed_ignore_head, fed_ignore_data, answered_done};
    fed_start(x, s->body, 1, &cbs);
}
