/*
 * stdio_mux: the local servers' processes and the MCP sessions toolgate opens on them.
 *
 * A stdio server speaks to one client. Several sessions (every user of a shared instance, or
 * one user's several sessions of a per-user one) are multiplexed onto it: the process is
 * initialized once (with the first session's initialize, replayed after a restart), each
 * request gets an id of the process's own and its answer goes back to the session and id it
 * came with, progress tokens are renamed the same way, and cancellations follow. What the
 * server sends unasked goes to the session it concerns: a progress notice to its request's
 * stream; a request of its own (sampling, elicitation, roots) to the one session with a
 * request in flight, refused when that is not clear-cut; other notifications to every
 * session's GET stream.
 */
#include "stdio/stdio-int.h"
#include "stdio/stdio_mux.h"
#include "lib/log.h"
#include "lib/timeutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct stdio_runtime stdio_rt;

static void inst_died(struct stdio_instance *in, const char *why);

static void jsonrpc_error_text(json_t *id, int code, const char *msg, char **out)
{
    json_t *e = json_pack("{s:s, s:O?, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id, "error", "code",
                          code, "message", msg);
    *out = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
}

void reply_error(struct stdio_conn *c, int status, json_t *id, int code, const char *msg)
{
    char *t = NULL;
    jsonrpc_error_text(id, code, msg, &t);
    stdio_conn_reply(c, status, "application/json", NULL, t ? t : "", t ? strlen(t) : 0);
    free(t);
}

/* ---- writing to the process ---- */

static void on_stdin_written(uv_write_t *w, int status)
{
    free(w);
}

int send_line(struct stdio_instance *in, const char *line)
{
    if (!in->alive || !in->pipes_open)
        return -1;
    if (uv_stream_get_write_queue_size((uv_stream_t *)&in->in) > MAX_STDIN_QUEUE)
        return -1;
    size_t n = strlen(line);
    uv_write_t *w = malloc(sizeof *w + n + 1);
    if (!w)
        return -1;
    char *p = (char *)(w + 1);
    memcpy(p, line, n);
    p[n] = '\n';
    uv_buf_t b = uv_buf_init(p, (unsigned)n + 1);
    if (uv_write(w, (uv_stream_t *)&in->in, &b, 1, on_stdin_written) != 0) {
        free(w);
        return -1;
    }
    return 0;
}

int send_json(struct stdio_instance *in, json_t *msg)
{
    char *t = json_dumps(msg, JSON_COMPACT);
    int rc = t ? send_line(in, t) : -1;
    free(t);
    return rc;
}

/* ---- pendings ---- */

void pending_free(struct pending *p)
{
    json_decref(p->client_id);
    json_decref(p->progress);
    free(p->line);
    free(p);
}

static struct pending *pending_take(struct stdio_instance *in, uint64_t id)
{
    for (struct pending **pp = &in->pending; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id) {
            struct pending *p = *pp;
            *pp = p->next;
            in->n_pending--;
            return p;
        }
    return NULL;
}

/* Sends msg (with the session's own id put back) to the pending's stream and ends it. */
void pending_answer(struct pending *p, json_t *msg)
{
    if (!p->conn)
        return;
    json_object_set(msg, "id", p->client_id);
    char *t = json_dumps(msg, JSON_COMPACT);
    if (p->is_init) {
        stdio_conn_reply(p->conn, 200, "application/json", p->session ? p->session->id : NULL,
                         t ? t : "", t ? strlen(t) : 0);
    } else {
        if (t)
            stdio_conn_sse_event(p->conn, t, strlen(t));
        stdio_conn_sse_end(p->conn);
    }
    free(t);
    p->conn = NULL;
}

static void fail_pendings(struct stdio_instance *in, const char *why)
{
    struct pending *p = in->pending;
    in->pending = NULL;
    in->n_pending = 0;
    while (p) {
        struct pending *next = p->next;
        json_t *e = json_pack("{s:s, s:{s:i, s:s}}", "jsonrpc", "2.0", "error", "code", -32603,
                              "message", why);
        if (e)
            pending_answer(p, e);
        else if (p->conn)
            stdio_conn_sse_end(p->conn);
        json_decref(e);
        pending_free(p);
        p = next;
    }
}

/* ---- sessions ---- */

struct stdio_session *session_find(const char *sid, struct stdio_backend_rt **be_out)
{
    for (size_t b = 0; b < stdio_rt.n_backends; b++)
        for (struct stdio_instance *in = stdio_rt.backends[b].instances; in; in = in->next)
            for (struct stdio_session *s = in->sessions; s; s = s->next)
                if (strcmp(s->id, sid) == 0) {
                    if (be_out)
                        *be_out = &stdio_rt.backends[b];
                    return s;
                }
    return NULL;
}

void session_free(struct stdio_session *s)
{
    struct stdio_instance *in = s->inst;
    for (struct stdio_session **pp = &in->sessions; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            in->n_sessions--;
            break;
        }
    for (struct pending *p = in->pending; p; p = p->next)
        if (p->session == s)
            p->session = NULL;
    for (size_t i = 0; i < SERVER_REQUESTS; i++)
        if (in->sreq[i].session == s)
            in->sreq[i].session = NULL;
    if (s->get) {
        stdio_conn_set_owner(s->get, NULL);
        stdio_conn_sse_end(s->get);
    }
    if (in->n_sessions == 0)
        in->idle_since = gw_mono_ns();
    free(s);
}

int random_hex(char *out, size_t bytes)
{
    unsigned char r[32];
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || bytes > sizeof r || fread(r, 1, bytes, f) != bytes) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
    return 0;
}

/* ---- messages from the process ---- */

static struct stdio_session *target_for_server_request(struct stdio_instance *in,
                                                       struct stdio_conn **conn)
{
    struct stdio_session *only = NULL;
    struct pending *newest = NULL;
    int several = 0;
    for (struct pending *p = in->pending; p; p = p->next) {
        if (!p->session || !p->conn || p->is_init)
            continue;
        if (only && only != p->session)
            several = 1;
        only = p->session;
        newest = p;
    }
    if (several)
        return NULL;
    if (only) {
        *conn = newest->conn;
        return only;
    }
    /* Nothing in flight: a per-user instance's one user may be asked on a GET stream. */
    if (in->be->spec->per_user || in->n_sessions == 1)
        for (struct stdio_session *s = in->sessions; s; s = s->next)
            if (s->get) {
                *conn = s->get;
                return s;
            }
    return NULL;
}

static void on_server_request(struct stdio_instance *in, json_t *msg, const char *line, size_t len)
{
    json_t *id = json_object_get(msg, "id");
    const char *method = json_string_value(json_object_get(msg, "method"));
    if (method && strcmp(method, "ping") == 0) {
        json_t *r = json_pack("{s:s, s:O, s:{}}", "jsonrpc", "2.0", "id", id, "result");
        if (r)
            send_json(in, r);
        json_decref(r);
        return;
    }
    struct stdio_conn *conn = NULL;
    struct stdio_session *s = target_for_server_request(in, &conn);
    size_t slot = SERVER_REQUESTS;
    for (size_t i = 0; s && i < SERVER_REQUESTS && slot == SERVER_REQUESTS; i++)
        if (!in->sreq[i].id)
            slot = i;
    if (!s || slot == SERVER_REQUESTS) {
        json_t *e =
            json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id, "error", "code",
                      -32603, "message", "toolgate cannot tell which client this request is for");
        if (e)
            send_json(in, e);
        json_decref(e);
        return;
    }
    in->sreq[slot].id = json_incref(id);
    in->sreq[slot].session = s;
    stdio_conn_sse_event(conn, line, len);
}

static void broadcast(struct stdio_instance *in, const char *line, size_t len)
{
    for (struct stdio_session *s = in->sessions; s; s = s->next)
        if (s->get)
            stdio_conn_sse_event(s->get, line, len);
}

static void on_init_answer(struct stdio_instance *in, json_t *msg)
{
    json_t *result = json_object_get(msg, "result");
    if (!json_is_object(result)) {
        inst_died(in, "the local server refused initialize");
        return;
    }
    json_decref(in->init_result);
    in->init_result = json_incref(result);
    json_t *n = json_pack("{s:s, s:s}", "jsonrpc", "2.0", "method", "notifications/initialized");
    if (n)
        send_json(in, n);
    json_decref(n);
    uv_timer_stop(&in->timer);
    in->state = I_READY;
    in->ready_at = gw_mono_ns();
    /* Initializes waiting for this, then requests queued while it started. */
    struct pending **pp = &in->pending;
    while (*pp) {
        struct pending *p = *pp;
        if (p->is_init) {
            *pp = p->next;
            in->n_pending--;
            json_t *r = json_pack("{s:s, s:O}", "jsonrpc", "2.0", "result", in->init_result);
            if (r)
                pending_answer(p, r);
            json_decref(r);
            pending_free(p);
            continue;
        }
        if (p->line) {
            send_line(in, p->line);
            free(p->line);
            p->line = NULL;
        }
        pp = &p->next;
    }
}

static void on_stdout_line(void *arg, const char *line, size_t len)
{
    struct stdio_instance *in = arg;
    if (!in->alive || len == 0)
        return;
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(msg)) {
        json_decref(msg);
        inst_died(in, "the local server wrote something that is not a JSON-RPC message; it was "
                      "stopped and will be restarted");
        return;
    }
    json_t *id = json_object_get(msg, "id");
    const char *method = json_string_value(json_object_get(msg, "method"));
    if (!method && id) {
        if (json_is_integer(id) && in->init_id && (uint64_t)json_integer_value(id) == in->init_id) {
            in->init_id = 0;
            on_init_answer(in, msg);
        } else if (json_is_integer(id)) {
            struct pending *p = pending_take(in, (uint64_t)json_integer_value(id));
            if (p) {
                pending_answer(p, msg);
                pending_free(p);
            }
        }
    } else if (method && id) {
        on_server_request(in, msg, line, len);
    } else if (method) {
        json_t *params = json_object_get(msg, "params");
        const char *tok = json_string_value(json_object_get(params, "progressToken"));
        if (strcmp(method, "notifications/progress") == 0) {
            unsigned long long n;
            if (tok && sscanf(tok, "tg-%llu", &n) == 1)
                for (struct pending *p = in->pending; p; p = p->next)
                    if (p->id == n && p->conn && p->progress) {
                        json_object_set(params, "progressToken", p->progress);
                        char *t = json_dumps(msg, JSON_COMPACT);
                        if (t)
                            stdio_conn_sse_event(p->conn, t, strlen(t));
                        free(t);
                    }
        } else {
            broadcast(in, line, len);
        }
    }
    json_decref(msg);
}

/* ---- the process ---- */

/* Every handle of an instance closes through here; the last one frees a stopped instance. */
static void on_handle_closed(uv_handle_t *h)
{
    struct stdio_instance *in = h->data;
    if (--in->handles == 0 && in->closing == 2)
        free(in);
}

static void close_pipes(struct stdio_instance *in)
{
    if (!in->pipes_open)
        return;
    in->pipes_open = 0;
    uv_close((uv_handle_t *)&in->in, on_handle_closed);
    uv_close((uv_handle_t *)&in->out, on_handle_closed);
    uv_close((uv_handle_t *)&in->err, on_handle_closed);
}

static void reap(struct stdio_instance *in)
{
    if (in->ch.pid <= 0)
        return;
    stdio_kill_group(in->ch.pid, SIGKILL);
    int st;
    for (int i = 0; i < 200; i++) {
        pid_t r = waitpid(in->ch.pid, &st, WNOHANG);
        if (r == in->ch.pid || (r < 0 && errno == ECHILD))
            break;
        usleep(5000);
    }
    in->ch.pid = 0;
}

static void on_timer(uv_timer_t *t)
{
    struct stdio_instance *in = t->data;
    if (in->state == I_BACKOFF) {
        atomic_fetch_sub(&in->be->backoff, 1);
        atomic_fetch_add(&in->be->restarts, 1);
        inst_start(in);
    } else if (in->state == I_STARTING) {
        inst_died(in, "the local server did not answer initialize in time");
    }
}

static void inst_died(struct stdio_instance *in, const char *why)
{
    if (!in->alive)
        return;
    in->alive = 0;
    atomic_fetch_sub(&in->be->running, 1);
    atomic_fetch_add(&in->be->crashes, 1);
    char fields[200];
    snprintf(fields, sizeof fields, "\"backend\":\"%s\",\"pid\":%d", in->be->spec->id,
             (int)in->ch.pid);
    gw_log(GW_LOG_WARN, "stdio_exit", NULL, fields, "%s", why);
    reap(in);
    close_pipes(in);
    in->init_id = 0;
    fail_pendings(in, why);
    const struct stdio_spec *s = in->be->spec;
    if (in->ready_at && gw_mono_ns() - in->ready_at > 60ull * 1000000000ull)
        in->failures = 0; /* it ran well for a while: start the backoff over */
    in->ready_at = 0;
    in->failures++;
    if (stdio_rt.stopping || in->closing) {
        in->state = I_DOWN;
        return;
    }
    if (in->failures > s->restart_attempts) {
        in->state = I_FAILED;
        atomic_fetch_add(&in->be->failed, 1);
        gw_log(GW_LOG_ERROR, "stdio_failed", NULL, fields,
               "the local server failed %u times in a row; toolgate stops restarting it",
               in->failures - 1);
        return;
    }
    uint64_t delay = s->restart_base_ms;
    for (unsigned i = 1; i < in->failures && delay < s->restart_max_ms; i++)
        delay *= 2;
    if (delay > s->restart_max_ms)
        delay = s->restart_max_ms;
    in->state = I_BACKOFF;
    atomic_fetch_add(&in->be->backoff, 1);
    uv_timer_start(&in->timer, on_timer, delay, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char slab[65536];
    *buf = uv_buf_init(slab, sizeof slab);
}

static void on_stdout(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct stdio_instance *in = st->data;
    if (n < 0) {
        inst_died(in, "the local server exited");
        return;
    }
    if (stdio_framer_feed(&in->fout, buf->base, (size_t)n, on_stdout_line, in) != 0 && in->alive) {
        atomic_fetch_add(&in->be->overflows, 1);
        inst_died(in, "the local server wrote a message over max_line bytes; it was stopped and "
                      "will be restarted");
    }
}

static void on_stderr_line(void *arg, const char *line, size_t len)
{
    struct stdio_instance *in = arg;
    uint64_t sec = gw_mono_ns() / 1000000000ull;
    if (sec != in->stderr_window) {
        if (in->stderr_count > in->be->spec->stderr_rate)
            gw_log(GW_LOG_WARN, "stdio_stderr_suppressed", NULL, NULL,
                   "%s: %llu stderr lines over the rate were not logged", in->be->spec->id,
                   (unsigned long long)(in->stderr_count - in->be->spec->stderr_rate));
        in->stderr_window = sec;
        in->stderr_count = 0;
    }
    if (++in->stderr_count > in->be->spec->stderr_rate) {
        atomic_fetch_add(&in->be->stderr_suppressed, 1);
        return;
    }
    json_t *f = json_pack("{s:s, s:i, s:s%}", "backend", in->be->spec->id, "pid", (int)in->ch.pid,
                          "line", line, len);
    char *t = f ? json_dumps(f, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    if (t && strlen(t) > 2) {
        t[strlen(t) - 1] = '\0';
        gw_log(GW_LOG_INFO, "stdio_stderr", NULL, t + 1, "the local server wrote to stderr");
    }
    free(t);
    json_decref(f);
}

static void on_stderr(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct stdio_instance *in = st->data;
    if (n < 0) {
        uv_read_stop(st);
        return;
    }
    stdio_framer_feed(&in->ferr, buf->base, (size_t)n, on_stderr_line, in);
}

void inst_start(struct stdio_instance *in)
{
    const struct stdio_spec *s = in->be->spec;
    char why[300];
    char fields[200];
    snprintf(fields, sizeof fields, "\"backend\":\"%s\"", s->id);
    memset(&in->ch, 0, sizeof in->ch);
    if (stdio_spawn(s, &in->ch, why, sizeof why) != 0) {
        gw_log(GW_LOG_ERROR, "stdio_spawn", NULL, fields, "%s", why);
        reap(in);
        in->alive = 1; /* counted as a death below, with its backoff */
        atomic_fetch_add(&in->be->running, 1);
        inst_died(in, "the local server could not be started");
        return;
    }
    stdio_framer_free(&in->fout);
    stdio_framer_free(&in->ferr);
    stdio_framer_init(&in->fout, s->max_line, 0);
    stdio_framer_init(&in->ferr, s->stderr_max_line, 1);
    uv_pipe_init(stdio_rt.loop, &in->in, 0);
    uv_pipe_init(stdio_rt.loop, &in->out, 0);
    uv_pipe_init(stdio_rt.loop, &in->err, 0);
    in->in.data = in->out.data = in->err.data = in;
    uv_pipe_open(&in->in, in->ch.in_fd);
    uv_pipe_open(&in->out, in->ch.out_fd);
    uv_pipe_open(&in->err, in->ch.err_fd);
    in->pipes_open = 1;
    in->handles += 3;
    in->alive = 1;
    atomic_fetch_add(&in->be->running, 1);
    snprintf(fields, sizeof fields, "\"backend\":\"%s\",\"pid\":%d", s->id, (int)in->ch.pid);
    gw_log(GW_LOG_INFO, "stdio_start", NULL, fields, "started the local server");
    uv_read_start((uv_stream_t *)&in->out, on_alloc, on_stdout);
    uv_read_start((uv_stream_t *)&in->err, on_alloc, on_stderr);
    in->state = I_STARTING;
    /*
     * A shared process starts before any client, so it is told what toolgate can relay (a
     * client without the capability answers such a request with an error); a per-user one
     * is initialized with its first session's own initialize.
     */
    if (!in->init_params)
        in->init_params =
            json_pack("{s:s, s:{s:{}, s:{}, s:{s:b}}, s:{s:s, s:s}}", "protocolVersion",
                      "2025-06-18", "capabilities", "sampling", "elicitation", "roots",
                      "listChanged", 0, "clientInfo", "name", "toolgate", "version", "1");
    in->init_id = ++in->next_id;
    json_t *req = json_pack("{s:s, s:I, s:s, s:O}", "jsonrpc", "2.0", "id", (json_int_t)in->init_id,
                            "method", "initialize", "params", in->init_params);
    if (!req || send_json(in, req) != 0) {
        json_decref(req);
        inst_died(in, "the local server could not be sent initialize");
        return;
    }
    json_decref(req);
    uv_timer_start(&in->timer, on_timer, s->init_timeout_ms, 0);
}

struct stdio_instance *inst_new(struct stdio_backend_rt *be, const char *principal)
{
    struct stdio_instance *in = calloc(1, sizeof *in);
    if (!in)
        return NULL;
    in->be = be;
    snprintf(in->principal, sizeof in->principal, "%s", principal ? principal : "");
    uv_timer_init(stdio_rt.loop, &in->timer);
    in->timer.data = in;
    in->handles = 1;
    in->state = I_DOWN;
    in->idle_since = gw_mono_ns();
    in->next = be->instances;
    be->instances = in;
    be->n_instances++;
    return in;
}

/* Stops the process (its whole group) and frees the instance and its sessions. */
void inst_free(struct stdio_instance *in)
{
    struct stdio_backend_rt *be = in->be;
    for (struct stdio_instance **pp = &be->instances; *pp; pp = &(*pp)->next)
        if (*pp == in) {
            *pp = in->next;
            be->n_instances--;
            break;
        }
    in->closing = 1;
    if (in->alive) {
        stdio_kill_group(in->ch.pid, SIGTERM);
        for (int i = 0; i < 40 && waitpid(in->ch.pid, NULL, WNOHANG) == 0; i++)
            usleep(25000);
        inst_died(in, "toolgate stopped the local server");
    }
    if (in->state == I_BACKOFF)
        atomic_fetch_sub(&be->backoff, 1);
    if (in->state == I_FAILED)
        atomic_fetch_sub(&be->failed, 1);
    fail_pendings(in, "toolgate stopped the local server");
    while (in->sessions)
        session_free(in->sessions);
    for (size_t i = 0; i < SERVER_REQUESTS; i++)
        json_decref(in->sreq[i].id);
    json_decref(in->init_params);
    json_decref(in->init_result);
    stdio_framer_free(&in->fout);
    stdio_framer_free(&in->ferr);
    uv_timer_stop(&in->timer);
    /* The handles close on the loop; the memory goes with the last of them. */
    in->closing = 2;
    uv_close((uv_handle_t *)&in->timer, on_handle_closed);
}
