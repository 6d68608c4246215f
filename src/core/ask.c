/*
 * ask: toolgate's own requests to a session-era client on a call's answer stream (core/ask.h).
 *
 * The table is shared by every worker: the answer may arrive on another worker than the call
 * that waits. The answering side marks the entry answered and posts to the waiting worker
 * while it holds the lock and the entry is still listed (so that worker is still serving the
 * call and its loop runs); the waiting side takes the entry out on its own thread, whatever
 * ends the wait, before the exchange can be freed.
 */
#include "core/ask.h"
#include "core/exchange.h"
#include "lib/digest.h"
#include "lib/log.h"
#include "lib/timeutil.h"
#include "mcp/jsonrpc.h"
#include "mcp/sse.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ASK_ID_LEN (sizeof GW_ASK_ID_PREFIX - 1 + 32)
/* A client's answer is kept at most this long (an elicitation result is small). */
#define ASK_MAX_ANSWER (64 * 1024)

struct ask_entry {
    uint8_t session[GW_SHA256_LEN];
    char id[ASK_ID_LEN + 1];
    uint64_t token;
    struct gw_worker *w;
    struct exchange *x; /* touched on w's thread only */
    char *answer;       /* the client's message, set once by the answering side */
    int answered;
    struct ask_entry *next;
};

/* What the waiting exchange keeps (x->ask). */
struct ask_wait {
    uint64_t token;
    gw_ask_cb cb;
    void *arg;
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ask_entry *table;
static size_t table_count;
static uint64_t next_token = 1;

/* Takes the entry with this token out of the table (the caller holds the lock). */
static struct ask_entry *unlink_token(uint64_t token)
{
    for (struct ask_entry **p = &table; *p; p = &(*p)->next)
        if ((*p)->token == token) {
            struct ask_entry *e = *p;
            *p = e->next;
            table_count--;
            return e;
        }
    return NULL;
}

static void entry_free(struct ask_entry *e)
{
    if (!e)
        return;
    free(e->answer);
    free(e);
}

static int accepts_stream(const struct gw_request *req)
{
    struct gw_slice a = gw_request_header(req, "Accept");
    static const char want[] = "text/event-stream";
    for (size_t i = 0; a.ptr && i + sizeof want - 1 <= a.len; i++)
        if (strncasecmp(a.ptr + i, want, sizeof want - 1) == 0)
            return 1;
    return 0;
}

int gw_request_can_ask(const struct gw_request *req, const char **why)
{
    const struct exchange *x = req->exchange;
    const char *w = NULL;
    if (req->modern)
        w = "this protocol revision has no requests from the gateway to the client";
    else if (!x || !x->kind || !x->kind->streams || !x->conn)
        w = "this endpoint cannot carry a prompt to the client";
    else if (req->method != GW_HTTP_POST || req->rpc.n != 1 || req->rpc.is_batch)
        w = "only a single call can wait for a prompt";
    else if (!req->session_valid || !req->session_id)
        w = "the call is not in a session, so the client cannot be asked anything";
    else if (!accepts_stream(req))
        w = "the client does not accept an event stream for this call";
    else if (x->mode != RELAY_NONE || x->ask)
        w = "the call's answer has already begun";
    if (why)
        *why = w;
    return w == NULL;
}

static void finish_wait(struct exchange *x, enum gw_ask_outcome outcome, const json_t *answer)
{
    struct ask_wait *wt = x->ask;
    if (!wt)
        return;
    x->ask = NULL;
    uv_timer_stop(&x->timer);
    pthread_mutex_lock(&table_lock);
    entry_free(unlink_token(wt->token));
    pthread_mutex_unlock(&table_lock);
    gw_ask_cb cb = wt->cb;
    void *arg = wt->arg;
    free(wt);
    cb(x->req, arg, outcome, answer);
}

static void on_ask_timeout(uv_timer_t *t)
{
    struct exchange *x = t->data;
    finish_wait(x, GW_ASK_TIMEOUT, NULL);
}

/* Starts the client's answer as an event stream, once (the head goes now, the rest later). */
static int start_stream(struct exchange *x)
{
    struct gw_request *req = x->req;
    if (x->client_streaming)
        return 0;
    struct gw_header h[3 + GW_MAX_RESPONSE_HEADERS];
    size_t n = 0;
    h[n++] = (struct gw_header){GW_SLICE_LIT("Content-Type"), GW_SLICE_LIT("text/event-stream")};
    h[n++] = (struct gw_header){GW_SLICE_LIT("Cache-Control"), GW_SLICE_LIT("no-cache")};
    h[n++] = (struct gw_header){GW_SLICE_LIT("X-Request-Id"), {req->id, strlen(req->id)}};
    for (size_t i = 0; i < req->n_response_headers; i++)
        h[n++] = req->response_headers[i];
    if (gw_conn_write_head(x->conn, 200, h, n, -1) != 0)
        return -1;
    x->client_streaming = 1;
    req->response_status = 200;
    return 0;
}

int gw_request_ask(struct gw_request *req, const char *method, json_t *params, uint64_t timeout_ms,
                   gw_ask_cb cb, void *arg)
{
    struct exchange *x = req->exchange;
    struct ask_entry *e = NULL;
    struct ask_wait *wt = NULL;
    struct gw_buf ev = {0};
    char *body = NULL;
    int rc = -1;
    uint8_t raw[16];
    if (!params || !gw_request_can_ask(req, NULL) || gw_random_bytes(raw, sizeof raw) != 0)
        goto out;
    e = calloc(1, sizeof *e);
    wt = calloc(1, sizeof *wt);
    if (!e || !wt)
        goto out;
    memcpy(e->id, GW_ASK_ID_PREFIX, sizeof GW_ASK_ID_PREFIX - 1);
    gw_hex(raw, sizeof raw, e->id + sizeof GW_ASK_ID_PREFIX - 1);
    gw_sha256(req->session_id, strlen(req->session_id), e->session);
    e->w = x->w;
    e->x = x;
    json_t *msg = json_pack("{s:s, s:s, s:s, s:O}", "jsonrpc", "2.0", "id", e->id, "method", method,
                            "params", params);
    body = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (!body || sse_encode(&ev, GW_SLICE_LIT(""), GW_SLICE_NULL, 0, -1,
                            (struct gw_slice){body, strlen(body)}) != 0)
        goto out;
    pthread_mutex_lock(&table_lock);
    int full = table_count >= GW_ASK_MAX_PENDING;
    if (!full) {
        e->token = next_token++;
        e->next = table;
        table = e;
        table_count++;
    }
    pthread_mutex_unlock(&table_lock);
    if (full) {
        gw_log(GW_LOG_WARN, "ask_table_full", req->id, NULL,
               "%d prompts are waiting for clients already; this one is not sent",
               GW_ASK_MAX_PENDING);
        goto out;
    }
    wt->token = e->token;
    wt->cb = cb;
    wt->arg = arg;
    if (start_stream(x) != 0 || gw_conn_write_body(x->conn, ev.data, ev.len) != 0) {
        pthread_mutex_lock(&table_lock);
        unlink_token(e->token);
        pthread_mutex_unlock(&table_lock);
        goto out;
    }
    req->response_bytes += ev.len;
    e = NULL; /* listed: the table owns it */
    x->ask = wt;
    wt = NULL;
    uv_update_time(x->timer.loop);
    uv_timer_start(&x->timer, on_ask_timeout, timeout_ms ? timeout_ms : 1, 0);
    rc = 0;
out:
    json_decref(params);
    entry_free(e);
    free(wt);
    free(body);
    gw_buf_free(&ev);
    return rc;
}

/* On the waiting worker: the answer has come. */
static void on_answer(void *arg)
{
    uint64_t token = *(uint64_t *)arg;
    free(arg);
    pthread_mutex_lock(&table_lock);
    struct ask_entry *e = unlink_token(token);
    pthread_mutex_unlock(&table_lock);
    if (!e)
        return; /* the wait ended before (timeout, the client left) */
    struct exchange *x = e->x;
    json_t *answer = e->answer ? json_loads(e->answer, JSON_REJECT_DUPLICATES, NULL) : NULL;
    entry_free(e);
    struct ask_wait *wt = x->ask;
    if (wt && wt->token == token) {
        x->ask = NULL;
        uv_timer_stop(&x->timer);
        gw_ask_cb cb = wt->cb;
        void *cb_arg = wt->arg;
        free(wt);
        cb(x->req, cb_arg, answer ? GW_ASK_ANSWERED : GW_ASK_GONE, answer);
    }
    json_decref(answer);
}

int ask_take_answer(struct exchange *x)
{
    struct gw_request *req = x->req;
    const struct mcp_message *m = req->rpc.n == 1 ? &req->rpc.msgs[0] : NULL;
    const char *id = m ? json_string_value(m->id) : NULL;
    if (req->modern || !m || (m->kind != MCP_RESPONSE && m->kind != MCP_ERROR_RESPONSE) || !id ||
        strncmp(id, GW_ASK_ID_PREFIX, sizeof GW_ASK_ID_PREFIX - 1) != 0)
        return 0;
    /* toolgate's id: never the backend's business, answered or not. */
    uint8_t session[GW_SHA256_LEN];
    char *copy = NULL;
    if (req->session_valid && req->session_id) {
        gw_sha256(req->session_id, strlen(req->session_id), session);
        copy = json_dumps(m->json, JSON_COMPACT);
        if (copy && strlen(copy) > ASK_MAX_ANSWER) {
            free(copy);
            copy = NULL;
        }
    }
    int taken = 0;
    pthread_mutex_lock(&table_lock);
    for (struct ask_entry *e = table; copy && e; e = e->next) {
        if (e->answered || strcmp(e->id, id) != 0 ||
            !gw_equal_ct(e->session, session, sizeof session))
            continue;
        uint64_t *tok = malloc(sizeof *tok);
        if (!tok)
            break;
        *tok = e->token;
        e->answered = 1;
        e->answer = copy;
        copy = NULL;
        if (gw_worker_post(e->w, on_answer, tok) != 0)
            free(tok);
        taken = 1;
        break;
    }
    pthread_mutex_unlock(&table_lock);
    free(copy);
    if (!taken)
        gw_log(GW_LOG_INFO, "ask_answer_dropped", req->id, NULL,
               "an answer to a prompt of toolgate's that no call waits for (or of another "
               "session) was dropped");
    answer_empty(x, 202);
    return 1;
}

int ask_client_gone(struct exchange *x)
{
    if (!x->ask)
        return 0;
    finish_wait(x, GW_ASK_GONE, NULL);
    return 1;
}

void ask_forget(struct exchange *x)
{
    struct ask_wait *wt = x->ask;
    if (!wt)
        return;
    x->ask = NULL;
    pthread_mutex_lock(&table_lock);
    entry_free(unlink_token(wt->token));
    pthread_mutex_unlock(&table_lock);
    free(wt);
}
