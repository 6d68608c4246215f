/*
 * The calls a federated exchange makes to its backends: their headers, the identity the
 * layers injected (and which backend it may go to), the vetted backend through the core's
 * builder and any other resolved afresh, and the callbacks of calls whose answer nobody reads.
 */
#include "lib/jwt.h"
#include "lib/log.h"
#include "mcp/modern.h"
#include "routes/federation/fed-int.h"

#include <string.h>
#include <strings.h>

/* The most headers a federated call's own list holds (fed_headers). */
#define FED_MAX_CALL_HEADERS (6 + MCP_MAX_PARAM_HEADERS)

size_t fed_modern_headers(struct exchange *x, struct gw_header *hdrs, size_t max)
{
    struct gw_request *req = x->req;
    struct fed_state *s = state(x);
    const struct mcp_message *m = req->rpc.n == 1 ? &req->rpc.msgs[0] : NULL;
    size_t n = 0;
    if (!s->up_method || max < 2)
        return 0;
    hdrs[n++] =
        (struct gw_header){GW_SLICE_LIT("Mcp-Method"), {s->up_method, strlen(s->up_method)}};
    if (s->up_name.len > 0)
        hdrs[n++] = (struct gw_header){GW_SLICE_LIT("Mcp-Name"), {s->up_name.data, s->up_name.len}};
    for (size_t i = 0; s->up_params && m && i < req->n_headers && n < max; i++) {
        const struct gw_header *h = &req->headers[i];
        if (h->name.len <= 10 || strncasecmp(h->name.ptr, "Mcp-Param-", 10) != 0)
            continue;
        if (!mcp_param_still_mirrors(m, h->value.ptr, h->value.len)) {
            /* The layers rewrote what it mirrors (a redaction): the original stays here. */
            gw_log(GW_LOG_WARN, "param_header_dropped", req->id, NULL,
                   "an Mcp-Param header no longer matches the arguments the layers let "
                   "through; it is not forwarded");
            continue;
        }
        hdrs[n++] = *h;
    }
    return n;
}

/* Headers of a backend call of a federated route. */
static size_t fed_headers(struct exchange *x, struct gw_header *hdrs, int with_session)
{
    struct fed_state *s = state(x);
    size_t n = 0;
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("application/json")};
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("Accept"),
                                   GW_SLICE_LIT("application/json, text/event-stream")};
    if (x->req->modern) {
        /* Stateless: the client's revision, no session, the body mirrored in headers. */
        hdrs[n++] =
            (struct gw_header){GW_SLICE_LIT("MCP-Protocol-Version"), GW_SLICE_LIT("2026-07-28")};
        return n + fed_modern_headers(x, hdrs + n, FED_MAX_CALL_HEADERS - n);
    }
    hdrs[n++] = (struct gw_header){GW_SLICE_LIT("MCP-Protocol-Version"),
                                   GW_SLICE_LIT(FED_BACKEND_PROTOCOL)};
    if (with_session && s->backend_sid)
        hdrs[n++] = (struct gw_header){GW_SLICE_LIT("Mcp-Session-Id"),
                                       {s->backend_sid, strlen(s->backend_sid)}};
    return n;
}

/*
 * Whether an identity header the layers injected for the backend routing vetted may go to
 * backend `be` too. A token minted for the vetted backend's own URL (inject: jwt without an
 * audience) is that backend's alone: another backend could replay it there, so it is not
 * sent elsewhere (that backend is then reached without an identity, and is opened by a
 * request of its own, for which routing mints its token). Headers, and tokens of a
 * route-wide audience, go to every backend. A token that cannot be read is not sent.
 */
static int injected_for(const struct gw_request *req, const struct gw_backend *be,
                        const struct gw_header *h)
{
    if (be == req->backend || !gw_slice_casecmp_eq(h->name, "Authorization"))
        return 1;
    const char *v = h->value.ptr;
    size_t n = h->value.len;
    if (n < 7 || strncasecmp(v, "Bearer ", 7) != 0)
        return 0;
    const char *dot1 = memchr(v + 7, '.', n - 7);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t)(v + n - dot1 - 1)) : NULL;
    unsigned char payload[4096];
    long len =
        dot2 ? jwt_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), payload, sizeof payload) : -1;
    json_t *claims = len > 0 ? json_loadb((const char *)payload, (size_t)len, 0, NULL) : NULL;
    json_t *aud = json_object_get(claims, "aud");
    const char *own[] = {req->backend->url, req->upstream_url};
    int ok = json_is_string(aud) || json_is_array(aud);
    for (size_t k = 0; ok && k < 2; k++) {
        if (!own[k])
            continue;
        size_t i;
        json_t *a;
        if (json_is_string(aud) && strcmp(json_string_value(aud), own[k]) == 0)
            ok = 0;
        json_array_foreach(json_is_array(aud) ? aud : NULL, i,
                           a) if (json_is_string(a) && strcmp(json_string_value(a), own[k]) == 0)
            ok = 0;
    }
    json_decref(claims);
    return ok;
}

struct upstream_call *fed_start_other(struct exchange *x, const struct gw_backend *be,
                                      enum gw_http_method method, const char *body,
                                      const struct gw_header *extra, size_t n_extra,
                                      const struct upstream_callbacks *cbs, void *arg)
{
    struct gw_request *req = x->req;
    struct gw_header hdrs[FED_MAX_CALL_HEADERS + 1 + GW_MAX_UPSTREAM_HEADERS];
    size_t k = 0;
    for (size_t i = 0; i < n_extra && k < FED_MAX_CALL_HEADERS; i++)
        hdrs[k++] = extra[i];
    hdrs[k++] = (struct gw_header){GW_SLICE_LIT("X-Request-Id"), {req->id, strlen(req->id)}};
    for (size_t i = 0; i < req->n_upstream_headers; i++)
        if (injected_for(req, be, &req->upstream_headers[i]))
            hdrs[k++] = req->upstream_headers[i];
    int vetted = be == req->backend;
    struct upstream_request ur = {
        .url = vetted && req->upstream_url ? req->upstream_url : be->url,
        .method = method,
        .body = {body ? body : "", body ? strlen(body) : 0},
        .headers = hdrs,
        .n_headers = k,
        .connect_timeout_ms = be->timeouts.connect_ms,
        .pin = vetted ? req->upstream_pin : NULL,
        .ca_file = be->tls_ca,
        .cert_file = be->tls_cert,
        .key_file = be->tls_key,
        .unix_socket = be->local_socket,
    };
    struct upstream_call *call = upstream_start(gw_worker_upstream(x->w), &ur, cbs, arg);
    if (call && arg == x) {
        x->up = call;
        exchange_arm_timer(x, be->timeouts.first_byte_ms);
    }
    return call;
}

int fed_start(struct exchange *x, const char *body, int with_session,
              const struct upstream_callbacks *cbs)
{
    struct fed_state *s = state(x);
    struct gw_header hdrs[FED_MAX_CALL_HEADERS];
    const struct gw_backend *be = &x->req->route->backends[s->index];
    size_t n = fed_headers(x, hdrs, with_session);
    if (be != x->req->backend && cbs) {
        if (fed_start_other(x, be, GW_HTTP_POST, body, hdrs, n, cbs, x))
            return 0;
        answer_error(x, 502, JSONRPC_INTERNAL_ERROR, "Cannot start the backend request",
                     "upstream.start");
        return -1;
    }
    struct relay_request r = {
        .method = GW_HTTP_POST,
        .body = {body, strlen(body)},
        .extra = hdrs,
        .n_extra = n,
        .backend = be,
        .cbs = cbs,
    };
    return relay_start(x, &r);
}

int fed_ignore_data(void *arg, const char *data, size_t len)
{
    (void)arg;
    (void)data;
    (void)len;
    return 0;
}

void fed_ignore_head(void *arg, int status, const struct gw_header *h, size_t n)
{
    (void)arg;
    (void)status;
    (void)h;
    (void)n;
}

void fed_ignore_done(void *arg, int err, const char *detail)
{
    (void)arg;
    (void)err;
    (void)detail;
}
