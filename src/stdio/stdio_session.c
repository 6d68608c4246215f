/*
 * stdio_session: what toolgate's relay sends to a local backend's private endpoint: the
 * session-era MCP Streamable HTTP requests (POST, GET stream, DELETE), turned into lines
 * on the process's stdin and answers routed back (see stdio_mux.c).
 */
#include "stdio/stdio_mux.h"
#include "lib/timeutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- requests from toolgate's relay ---- */

static struct stdio_backend_rt *backend_for_path(const char *path)
{
    static const char prefix[] = "/stdio/";
    if (strncmp(path, prefix, sizeof prefix - 1) != 0)
        return NULL;
    const char *id = path + sizeof prefix - 1;
    size_t n = strcspn(id, "?");
    for (size_t b = 0; b < stdio_rt.n_backends; b++)
        if (strlen(stdio_rt.backends[b].spec->id) == n &&
            strncmp(stdio_rt.backends[b].spec->id, id, n) == 0)
            return &stdio_rt.backends[b];
    return NULL;
}

/* The instance a new session of principal goes to; evicts the idlest when at the bound. */
static struct stdio_instance *instance_for(struct stdio_backend_rt *be, const char *principal)
{
    const char *key = be->spec->per_user ? (principal ? principal : "") : "";
    for (struct stdio_instance *in = be->instances; in; in = in->next)
        if (strcmp(in->principal, key) == 0)
            return in;
    if (be->n_instances >= be->spec->max_instances) {
        struct stdio_instance *victim = NULL;
        for (struct stdio_instance *in = be->instances; in; in = in->next)
            if (in->n_sessions == 0 && in->n_pending == 0 &&
                (!victim || in->idle_since < victim->idle_since))
                victim = in;
        if (!victim)
            return NULL;
        inst_free(victim);
    }
    return inst_new(be, key);
}

static void handle_initialize(struct stdio_conn *c, struct stdio_backend_rt *be,
                              const struct stdio_request *r, json_t *msg)
{
    json_t *id = json_object_get(msg, "id");
    if (be->spec->per_user && !r->principal) {
        reply_error(c, 200, id, -32600,
                    "This local backend runs one process per user and the request has no "
                    "verified user");
        return;
    }
    struct stdio_instance *in = instance_for(be, r->principal);
    if (!in || in->n_sessions >= MAX_SESSIONS_PER_INSTANCE || in->n_pending >= MAX_PENDING) {
        reply_error(c, 503, id, -32603, "Every local server process is busy; try again later");
        return;
    }
    if (in->state == I_FAILED) {
        reply_error(c, 503, id, -32603, "The local server keeps failing; toolgate gave up on it");
        return;
    }
    struct stdio_session *s = calloc(1, sizeof *s);
    struct pending *p = calloc(1, sizeof *p);
    if (!s || !p || random_hex(s->id, 16) != 0) {
        free(s);
        free(p);
        reply_error(c, 503, id, -32603, "Out of resources");
        return;
    }
    s->inst = in;
    s->next = in->sessions;
    in->sessions = s;
    in->n_sessions++;
    if (!in->init_params)
        in->init_params = json_incref(json_object_get(msg, "params"));
    p->client_id = json_incref(id);
    p->session = s;
    p->is_init = 1;
    p->conn = c;
    if (in->state == I_READY) {
        json_t *res = json_pack("{s:s, s:O}", "jsonrpc", "2.0", "result", in->init_result);
        if (res)
            pending_answer(p, res);
        json_decref(res);
        pending_free(p);
        return;
    }
    p->id = 0;
    p->next = in->pending;
    in->pending = p;
    in->n_pending++;
    stdio_conn_set_owner(c, p);
    if (in->state == I_DOWN)
        inst_start(in);
}

static void rename_progress(struct pending *p, json_t *msg)
{
    json_t *meta = json_object_get(json_object_get(msg, "params"), "_meta");
    json_t *tok = json_object_get(meta, "progressToken");
    if (!tok)
        return;
    p->progress = json_incref(tok);
    char name[32];
    snprintf(name, sizeof name, "tg-%llu", (unsigned long long)p->id);
    json_object_set_new(meta, "progressToken", json_string(name));
}

static void handle_request(struct stdio_conn *c, struct stdio_session *s, json_t *msg)
{
    struct stdio_instance *in = s->inst;
    json_t *id = json_object_get(msg, "id");
    if (in->state == I_BACKOFF || in->state == I_FAILED || in->state == I_DOWN) {
        reply_error(c, 200, id, -32603,
                    in->state == I_FAILED ? "The local server keeps failing; toolgate gave up on it"
                                          : "The local server is restarting; try again shortly");
        return;
    }
    if (in->n_pending >= MAX_PENDING) {
        reply_error(c, 503, id, -32603, "Too many requests in flight to the local server");
        return;
    }
    struct pending *p = calloc(1, sizeof *p);
    if (!p) {
        reply_error(c, 503, id, -32603, "Out of resources");
        return;
    }
    p->id = ++in->next_id;
    p->client_id = json_incref(id);
    p->session = s;
    p->conn = c;
    rename_progress(p, msg);
    json_object_set_new(msg, "id", json_integer((json_int_t)p->id));
    char *line = json_dumps(msg, JSON_COMPACT);
    if (!line) {
        pending_free(p);
        reply_error(c, 503, id, -32603, "Out of resources");
        return;
    }
    if (in->state == I_STARTING) {
        p->line = line;
    } else if (send_line(in, line) != 0) {
        free(line);
        pending_free(p);
        reply_error(c, 503, id, -32603, "The local server is not reading its input");
        return;
    } else {
        free(line);
    }
    p->next = in->pending;
    in->pending = p;
    in->n_pending++;
    s->last_request = gw_mono_ns();
    stdio_conn_set_owner(c, p);
    stdio_conn_sse_start(c, NULL);
}

static void handle_notification(struct stdio_conn *c, struct stdio_session *s, json_t *msg,
                                const char *method)
{
    struct stdio_instance *in = s->inst;
    if (strcmp(method, "notifications/initialized") == 0) {
        stdio_conn_reply(c, 202, NULL, NULL, NULL, 0); /* sent once, by toolgate itself */
        return;
    }
    if (strcmp(method, "notifications/cancelled") == 0) {
        json_t *params = json_object_get(msg, "params");
        json_t *rid = json_object_get(params, "requestId");
        struct pending *found = NULL;
        for (struct pending *p = in->pending; p && rid; p = p->next)
            if (p->session == s && !p->is_init && json_equal(p->client_id, rid))
                found = p;
        if (!found) {
            stdio_conn_reply(c, 202, NULL, NULL, NULL, 0);
            return;
        }
        json_object_set_new(params, "requestId", json_integer((json_int_t)found->id));
    }
    if (in->state == I_READY)
        send_json(in, msg);
    stdio_conn_reply(c, 202, NULL, NULL, NULL, 0);
}

static void handle_response(struct stdio_conn *c, struct stdio_session *s, json_t *msg)
{
    struct stdio_instance *in = s->inst;
    json_t *id = json_object_get(msg, "id");
    for (size_t i = 0; i < SERVER_REQUESTS; i++)
        if (in->sreq[i].id && in->sreq[i].session == s && json_equal(in->sreq[i].id, id)) {
            json_decref(in->sreq[i].id);
            in->sreq[i].id = NULL;
            in->sreq[i].session = NULL;
            if (in->state == I_READY)
                send_json(in, msg);
            break;
        }
    stdio_conn_reply(c, 202, NULL, NULL, NULL, 0);
}

void stdio_mux_request(struct stdio_conn *c, const struct stdio_request *r)
{
    struct stdio_backend_rt *be = backend_for_path(r->path), *sbe = NULL;
    if (!be) {
        stdio_conn_reply(c, 404, NULL, NULL, NULL, 0);
        return;
    }
    struct stdio_session *s = r->session_id ? session_find(r->session_id, &sbe) : NULL;
    if (s && (sbe != be || (be->spec->per_user &&
                            strcmp(s->inst->principal, r->principal ? r->principal : "") != 0)))
        s = NULL; /* another backend's or another user's: as unknown */
    if (r->method == STDIO_GET || r->method == STDIO_DELETE) {
        if (!s) {
            stdio_conn_reply(c, r->session_id ? 404 : 400, NULL, NULL, NULL, 0);
        } else if (r->method == STDIO_DELETE) {
            session_free(s);
            stdio_conn_reply(c, 200, NULL, NULL, NULL, 0);
        } else if (s->get) {
            stdio_conn_reply(c, 409, NULL, NULL, NULL, 0);
        } else {
            s->get = c;
            stdio_conn_set_owner(c, s);
            stdio_conn_sse_start(c, NULL);
        }
        return;
    }
    if (r->method != STDIO_POST) {
        stdio_conn_reply(c, 405, NULL, NULL, NULL, 0);
        return;
    }
    json_error_t jerr;
    json_t *msg = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &jerr);
    const char *method = json_string_value(json_object_get(msg, "method"));
    json_t *id = json_object_get(msg, "id");
    if (!json_is_object(msg)) {
        reply_error(c, 400, NULL, -32600,
                    json_is_array(msg) ? "Batches are not served by local backends"
                                       : "The body is not a JSON-RPC message");
    } else if (method && strcmp(method, "initialize") == 0 && id) {
        handle_initialize(c, be, r, msg);
    } else if (!s) {
        reply_error(c, r->session_id ? 404 : 400, id, -32600,
                    r->session_id ? "Unknown session" : "Mcp-Session-Id is required");
    } else if (method && id) {
        handle_request(c, s, msg);
    } else if (method) {
        handle_notification(c, s, msg, method);
    } else if (id) {
        handle_response(c, s, msg);
    } else {
        reply_error(c, 400, NULL, -32600, "The body is not a JSON-RPC message");
    }
    json_decref(msg);
}

void stdio_mux_conn_closed(struct stdio_conn *c, void *owner)
{
    /* The owner is a pending (a POST's answer) or a session (its GET stream). */
    for (size_t b = 0; b < stdio_rt.n_backends; b++)
        for (struct stdio_instance *in = stdio_rt.backends[b].instances; in; in = in->next) {
            for (struct stdio_session *s = in->sessions; s; s = s->next)
                if (s == owner && s->get == c)
                    s->get = NULL;
            for (struct pending *p = in->pending; p; p = p->next)
                if (p == owner && p->conn == c) {
                    p->conn = NULL;
                    if (!p->is_init && in->state == I_READY) {
                        /* The client went: tell the server it need not finish. */
                        json_t *n =
                            json_pack("{s:s, s:s, s:{s:I, s:s}}", "jsonrpc", "2.0", "method",
                                      "notifications/cancelled", "params", "requestId",
                                      (json_int_t)p->id, "reason", "the client went away");
                        if (n)
                            send_json(in, n);
                        json_decref(n);
                    }
                }
        }
}

static void on_idle_sweep(uv_timer_t *t)
{
    uint64_t now = gw_mono_ns();
    for (size_t b = 0; b < stdio_rt.n_backends; b++) {
        struct stdio_backend_rt *be = &stdio_rt.backends[b];
        if (!be->spec->per_user)
            continue;
        struct stdio_instance *in = be->instances;
        while (in) {
            struct stdio_instance *next = in->next;
            if (in->n_sessions == 0 && in->n_pending == 0 &&
                now - in->idle_since > be->spec->idle_ms * 1000000ull)
                inst_free(in);
            in = next;
        }
    }
}

static uv_timer_t sweep;

void stdio_mux_start(void)
{
    for (size_t b = 0; b < stdio_rt.n_backends; b++)
        if (!stdio_rt.backends[b].spec->per_user) {
            struct stdio_instance *in = inst_new(&stdio_rt.backends[b], "");
            if (in)
                inst_start(in);
        }
    uv_timer_init(stdio_rt.loop, &sweep);
    uv_timer_start(&sweep, on_idle_sweep, 1000, 1000);
}

void stdio_mux_stop_all(void)
{
    stdio_rt.stopping = 1;
    /* Every group is asked first, so that they wind down together, not one after another. */
    for (size_t b = 0; b < stdio_rt.n_backends; b++)
        for (struct stdio_instance *in = stdio_rt.backends[b].instances; in; in = in->next)
            if (in->alive)
                stdio_kill_group(in->ch.pid, SIGTERM);
    for (size_t b = 0; b < stdio_rt.n_backends; b++)
        while (stdio_rt.backends[b].instances)
            inst_free(stdio_rt.backends[b].instances);
    if (!uv_is_closing((uv_handle_t *)&sweep))
        uv_close((uv_handle_t *)&sweep, NULL);
}
