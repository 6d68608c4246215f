#include "core/bridge.h"
#include "lib/log.h"
#include "lib/timeutil.h"
#include "mcp/jsonrpc.h"
#include "mcp/methods.h"
#include "mcp/modern.h"
#include "mcp/session.h"
#include "mcp/sse.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The client's capabilities and info passed on to the backend are at most this long. */
#define BRIDGE_MAX_CLIENT_META (16 * 1024)

/* ---- the table of backend sessions, by user and route ---- */

struct bsession {
    uint8_t owner[32];
    char route[72];
    char *sid;         /* the backend's Mcp-Session-Id */
    char *init_result; /* its initialize result (JSON), for server/discover */
    uint64_t used_ns;
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bsession table[BRIDGE_MAX_SESSIONS];

static struct bsession *find(const uint8_t owner[32], const char *route)
{
    for (size_t i = 0; i < BRIDGE_MAX_SESSIONS; i++)
        if (table[i].sid && memcmp(table[i].owner, owner, 32) == 0 &&
            strcmp(table[i].route, route) == 0)
            return &table[i];
    return NULL;
}

static void clear(struct bsession *b)
{
    free(b->sid);
    free(b->init_result);
    memset(b, 0, sizeof *b);
}

/* Copies of the session's id and initialize result; 0, or -1 when there is none. */
static int lookup(const uint8_t owner[32], const char *route, char **sid, char **init)
{
    int rc = -1;
    pthread_mutex_lock(&table_lock);
    struct bsession *b = find(owner, route);
    if (b) {
        b->used_ns = gw_mono_ns();
        *sid = strdup(b->sid);
        *init = b->init_result ? strdup(b->init_result) : NULL;
        rc = *sid ? 0 : -1;
    }
    pthread_mutex_unlock(&table_lock);
    return rc;
}

static void store(const uint8_t owner[32], const char *route, const char *sid, const char *init)
{
    pthread_mutex_lock(&table_lock);
    struct bsession *b = find(owner, route);
    if (!b) {
        /* A free slot, else the least recently used. */
        struct bsession *oldest = &table[0];
        for (size_t i = 0; i < BRIDGE_MAX_SESSIONS && !b; i++) {
            if (!table[i].sid)
                b = &table[i];
            else if (table[i].used_ns < oldest->used_ns)
                oldest = &table[i];
        }
        if (!b)
            b = oldest;
    }
    clear(b);
    memcpy(b->owner, owner, 32);
    snprintf(b->route, sizeof b->route, "%s", route);
    b->sid = strdup(sid);
    b->init_result = init ? strdup(init) : NULL;
    b->used_ns = gw_mono_ns();
    if (!b->sid)
        clear(b);
    pthread_mutex_unlock(&table_lock);
}

static void forget(const uint8_t owner[32], const char *route, const char *sid)
{
    pthread_mutex_lock(&table_lock);
    struct bsession *b = find(owner, route);
    if (b && sid && strcmp(b->sid, sid) == 0)
        clear(b);
    pthread_mutex_unlock(&table_lock);
}

void bridge_reset(void)
{
    pthread_mutex_lock(&table_lock);
    for (size_t i = 0; i < BRIDGE_MAX_SESSIONS; i++)
        clear(&table[i]);
    pthread_mutex_unlock(&table_lock);
}

/* ---- one bridged exchange ---- */

enum step { STEP_INIT, STEP_INITIALIZED, STEP_CALL };

struct bstate {
    uint8_t owner[32];
    enum step step;
    int status;
    char *sid;
    char *init_result;
    struct gw_buf answer; /* the initialize answer, bounded */
    int answer_over;
    struct gw_buf body; /* what is sent now (must outlive the call) */
    int retried;        /* the backend forgot its session once already */
    int retry_pending;  /* ... and the answer to this call says so (404) */
};

void bridge_state_free(void *state)
{
    struct bstate *st = state;
    if (!st)
        return;
    free(st->sid);
    free(st->init_result);
    gw_buf_free(&st->answer);
    gw_buf_free(&st->body);
    free(st);
}

int bridge_applies(const struct gw_request *req)
{
    return req->modern && req->backend && req->backend->protocol &&
           req->backend->protocol != MCP_V_2026_07_28;
}

static const char *backend_revision(const struct gw_request *req)
{
    for (const char *const *v = mcp_version_names(); *v; v++)
        if (mcp_version_bit(*v) == req->backend->protocol)
            return *v;
    return "2025-11-25";
}

static const json_t *meta_of(const struct gw_request *req)
{
    const struct mcp_message *m = req->rpc.n ? &req->rpc.msgs[0] : NULL;
    return m ? json_object_get(json_object_get(m->json, "params"), "_meta") : NULL;
}

/* The bridge's state: the first member of the relay kind's state (core/relay_kind.c). */
static struct bstate *bstate_of(struct exchange *x)
{
    return *(struct bstate **)x->kind_state;
}

static void start_call(struct exchange *x, struct bstate *st);
static void open_session(struct exchange *x, struct bstate *st);

/* An upstream call of the bridge's, in the backend's revision and session. */
static int send_up(struct exchange *x, struct bstate *st, const struct upstream_callbacks *cbs)
{
    struct gw_header h[4];
    size_t n = 0;
    const char *rev = backend_revision(x->req);
    h[n++] = (struct gw_header){GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("application/json")};
    h[n++] = (struct gw_header){GW_SLICE_LIT("Accept"),
                                GW_SLICE_LIT("application/json, text/event-stream")};
    if (st->step != STEP_INIT) {
        h[n++] = (struct gw_header){GW_SLICE_LIT("MCP-Protocol-Version"), {rev, strlen(rev)}};
        h[n++] = (struct gw_header){GW_SLICE_LIT("Mcp-Session-Id"), {st->sid, strlen(st->sid)}};
    }
    struct relay_request r = {
        .method = GW_HTTP_POST,
        .body = {st->body.data ? st->body.data : "", st->body.len},
        .extra = h,
        .n_extra = n,
        .cbs = cbs,
        .carries_request = st->step == STEP_CALL,
    };
    return relay_start(x, &r);
}

/* ---- opening the backend session: initialize, then notifications/initialized ---- */

static void init_head(void *arg, int status, const struct gw_header *headers, size_t n)
{
    struct exchange *x = arg;
    struct bstate *st = bstate_of(x);
    st->status = status;
    for (size_t i = 0; st->step == STEP_INIT && i < n; i++)
        if (gw_slice_casecmp_eq(headers[i].name, "Mcp-Session-Id") && headers[i].value.len > 0 &&
            headers[i].value.len <= MCP_SESSION_MAX_BACKEND_ID) {
            free(st->sid);
            st->sid = gw_slice_dup(headers[i].value);
        }
}

static int init_data(void *arg, const char *data, size_t len)
{
    struct exchange *x = arg;
    struct bstate *st = bstate_of(x);
    exchange_arm_timer(x, exchange_timeouts(x)->idle_ms);
    if (st->step != STEP_INIT || st->answer_over)
        return 0;
    if (st->answer.len + len > BRIDGE_MAX_ANSWER || gw_buf_append(&st->answer, data, len))
        st->answer_over = 1;
    return 0;
}

static void fail_open(struct exchange *x, const char *why)
{
    gw_log(GW_LOG_WARN, "bridge_open_failed", x->req->id, NULL,
           "could not open a session with the backend for a 2026-07-28 client: %s", why);
    answer_error(x, 502, JSONRPC_INTERNAL_ERROR,
                 "The backend's session (protocol revision 2025) could not be opened",
                 "upstream.bridge");
}

static void initialized_done(void *arg, int err, const char *detail)
{
    (void)detail;
    struct exchange *x = arg;
    struct bstate *st = bstate_of(x);
    x->up = NULL;
    if (err != UPSTREAM_OK || st->status < 200 || st->status >= 300) {
        fail_open(x, "notifications/initialized was refused");
        return;
    }
    store(st->owner, x->req->route->name, st->sid, st->init_result);
    start_call(x, st);
}

static int ignore_data(void *arg, const char *data, size_t len)
{
    (void)arg;
    (void)data;
    (void)len;
    return 0;
}

static void init_done(void *arg, int err, const char *detail)
{
    (void)detail;
    struct exchange *x = arg;
    struct bstate *st = bstate_of(x);
    x->up = NULL;
    json_t *result = err == UPSTREAM_OK && st->status == 200 && !st->answer_over
                         ? sse_answer_result(st->answer.data, st->answer.len, BRIDGE_MAX_ANSWER)
                         : NULL;
    if (!result || !st->sid) {
        json_decref(result);
        fail_open(x, !result ? "initialize was refused" : "the backend issued no session");
        return;
    }
    free(st->init_result);
    st->init_result = json_dumps(result, JSON_COMPACT);
    json_decref(result);
    st->step = STEP_INITIALIZED;
    st->status = 0;
    gw_buf_reset(&st->body);
    static const char note[] = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";
    static const struct upstream_callbacks cbs = {init_head, ignore_data, initialized_done};
    if (gw_buf_append(&st->body, note, sizeof note - 1) != 0) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    send_up(x, st, &cbs);
}

static void open_session(struct exchange *x, struct bstate *st)
{
    const struct gw_request *req = x->req;
    const json_t *meta = meta_of(req);
    const json_t *caps = json_object_get(meta, MCP_META_CAPABILITIES);
    const json_t *info = json_object_get(meta, "io.modelcontextprotocol/clientInfo");
    /* References of ours ("o" takes them), whether borrowed from the request or made here. */
    json_t *params = json_pack(
        "{s:s, s:o, s:o}", "protocolVersion", backend_revision(req), "capabilities",
        json_is_object(caps) ? json_incref((json_t *)caps) : json_object(), "clientInfo",
        json_is_object(info) ? json_incref((json_t *)info)
                             : json_pack("{s:s, s:s}", "name", "toolgate", "version", "bridge"));
    json_t *msg = params ? json_pack("{s:s, s:s, s:s, s:o}", "jsonrpc", "2.0", "id",
                                     "toolgate-bridge", "method", "initialize", "params", params)
                         : NULL;
    char *s = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    st->step = STEP_INIT;
    st->status = 0;
    free(st->sid);
    st->sid = NULL;
    gw_buf_reset(&st->answer);
    st->answer_over = 0;
    gw_buf_reset(&st->body);
    if (!s || strlen(s) > BRIDGE_MAX_CLIENT_META || gw_buf_append(&st->body, s, strlen(s)) != 0) {
        free(s);
        answer_error(x, 400, JSONRPC_INVALID_PARAMS,
                     "The client's capabilities cannot be passed on to the backend",
                     "protocol.bridge");
        return;
    }
    free(s);
    static const struct upstream_callbacks cbs = {init_head, init_data, init_done};
    send_up(x, st, &cbs);
}

/* ---- the request itself ---- */

/* The answer to server/discover, from the session's initialize result. */
static void answer_discover(struct exchange *x, struct bstate *st)
{
    json_t *init = st->init_result ? json_loads(st->init_result, 0, NULL) : NULL;
    json_t *caps = json_deep_copy(json_object_get(init, "capabilities"));
    if (!json_is_object(caps)) {
        json_decref(caps);
        caps = json_object();
    }
    /* Nothing a listen stream would carry: subscriptions/listen is not bridged. */
    json_object_del(json_object_get(caps, "resources"), "subscribe");
    const char *kinds[] = {"tools", "resources", "prompts"};
    for (size_t i = 0; i < 3; i++)
        json_object_del(json_object_get(caps, kinds[i]), "listChanged");
    json_t *result =
        json_pack("{s:s, s:[s], s:o, s:i, s:s}", "resultType", "complete", "supportedVersions",
                  "2026-07-28", "capabilities", caps, "ttlMs", 0, "cacheScope", "private");
    const json_t *info = json_object_get(init, "serverInfo");
    if (result && json_is_object(info))
        json_object_set_new(result, "_meta",
                            json_pack("{s:O}", "io.modelcontextprotocol/serverInfo", info));
    const json_t *instr = json_object_get(init, "instructions");
    if (result && json_is_string(instr))
        json_object_set(result, "instructions", (json_t *)instr);
    json_decref(init);
    if (!result) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    answer_result(x, result, NULL, 0);
}

/* The request's message as the backend's revision has it: the envelope's keys taken out. */
static int session_era_body(const struct gw_request *req, struct gw_buf *out)
{
    const struct mcp_message *m = req->rpc.n == 1 ? &req->rpc.msgs[0] : NULL;
    json_t *copy = m ? json_deep_copy(m->json) : NULL;
    json_t *meta = json_object_get(json_object_get(copy, "params"), "_meta");
    const char *key;
    json_t *v, *tmp;
    json_object_foreach_safe(meta, tmp, key, v)
    {
        (void)v;
        if (strncmp(key, "io.modelcontextprotocol/", 24) == 0)
            json_object_del(meta, key);
    }
    if (meta && json_object_size(meta) == 0)
        json_object_del(json_object_get(copy, "params"), "_meta");
    char *s = copy ? json_dumps(copy, JSON_COMPACT) : NULL;
    json_decref(copy);
    int rc = s ? gw_buf_append(out, s, strlen(s)) : -1;
    free(s);
    return rc;
}

static void call_head(void *arg, int status, const struct gw_header *h, size_t n)
{
    struct exchange *x = arg;
    struct bstate *st = bstate_of(x);
    if (status == 404 && !st->retried) {
        /* The backend no longer knows the session: a new one, and the request once more. */
        st->retry_pending = 1;
        forget(st->owner, x->req->route->name, st->sid);
        return;
    }
    relay_callbacks()->on_head(arg, status, h, n);
}

static int call_data(void *arg, const char *data, size_t len)
{
    struct exchange *x = arg;
    struct bstate *st = bstate_of(x);
    return st->retry_pending ? 0 : relay_callbacks()->on_data(arg, data, len);
}

static void call_done(void *arg, int err, const char *detail)
{
    struct exchange *x = arg;
    struct bstate *st = bstate_of(x);
    if (st->retry_pending) {
        x->up = NULL;
        st->retry_pending = 0;
        st->retried = 1;
        open_session(x, st);
        return;
    }
    relay_callbacks()->on_done(arg, err, detail);
}

static void start_call(struct exchange *x, struct bstate *st)
{
    const char *method = x->req->rpc.n ? x->req->rpc.msgs[0].method : NULL;
    if (method && strcmp(method, "server/discover") == 0) {
        answer_discover(x, st);
        return;
    }
    st->step = STEP_CALL;
    gw_buf_reset(&st->body);
    if (session_era_body(x->req, &st->body) != 0) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    static const struct upstream_callbacks cbs = {call_head, call_data, call_done};
    send_up(x, st, &cbs);
}

void bridge_forward(struct exchange *x, void **state)
{
    struct gw_request *req = x->req;
    const char *method = req->rpc.n ? req->rpc.msgs[0].method : NULL;
    if (method && strcmp(method, "subscriptions/listen") == 0) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "subscriptions/listen cannot be bridged to this backend (protocol revision %s)",
                 backend_revision(req));
        answer_error(x, 404, JSONRPC_METHOD_NOT_FOUND, msg, "protocol.bridge");
        return;
    }
    struct bstate *st = calloc(1, sizeof *st);
    if (!st) {
        answer_error(x, 503, JSONRPC_INTERNAL_ERROR, "Out of memory", "internal.memory");
        return;
    }
    *state = st;
    mcp_session_owner(req->identity.verified ? req->identity.issuer : "",
                      req->identity.subject ? req->identity.subject : "", st->owner);
    if (lookup(st->owner, req->route->name, &st->sid, &st->init_result) == 0)
        start_call(x, st);
    else
        open_session(x, st);
}

/* Methods whose 2026-07-28 results carry caching hints (ttlMs, cacheScope). */
static int cacheable(const char *method)
{
    static const char *const m[] = {"tools/list",     "prompts/list",
                                    "resources/list", "resources/templates/list",
                                    "resources/read", NULL};
    for (size_t i = 0; method && m[i]; i++)
        if (strcmp(m[i], method) == 0)
            return 1;
    return 0;
}

int bridge_on_message(struct exchange *x, json_t *msg, int *modified)
{
    json_t *result = json_object_get(msg, "result");
    if (json_is_object(result) && !json_object_get(result, "resultType")) {
        json_object_set_new(result, "resultType", json_string("complete"));
        *modified = 1;
    }
    /* A session-era answer says nothing of caching: not to be kept, and never shared. */
    const char *method = x->req->rpc.n ? x->req->rpc.msgs[0].method : NULL;
    if (json_is_object(result) && json_object_get(msg, "id") && cacheable(method)) {
        if (!json_object_get(result, "ttlMs"))
            json_object_set_new(result, "ttlMs", json_integer(0));
        if (!json_object_get(result, "cacheScope"))
            json_object_set_new(result, "cacheScope", json_string("private"));
        *modified = 1;
    }
    json_t *error = json_object_get(msg, "error");
    json_int_t code = json_integer_value(json_object_get(error, "code"));
    if (json_is_object(error) && code == -32002) {
        /* Resource not found: -32002 was retired for -32602 in 2026-07-28. */
        json_object_set_new(error, "code", json_integer(JSONRPC_INVALID_PARAMS));
        *modified = 1;
    } else if (json_is_object(error) && code <= -32020 && code >= -32099) {
        /*
         * The range 2026-07-28 reserves for its own codes: a session-era backend's code there
         * (-32042, URL elicitation, say) means something else, or nothing, to this client.
         */
        json_object_set_new(error, "code", json_integer(JSONRPC_INTERNAL_ERROR));
        *modified = 1;
    }
    return 0;
}
