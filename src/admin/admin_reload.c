/*
 * POST /admin/reload: asks for a reload (core/reload.h) and answers when it has ended, with
 * what happened: 200 and the new generation, 409 when a restart is needed or a reload is
 * already running, 422 when the file is invalid (with the line it points at). The reload
 * runs on its own thread; its end is posted back to the worker that holds the connection,
 * and the worker does not finish a shutdown while that answer is owed.
 */
#include "admin/admin.h"
#include "core/reload.h"
#include "lib/log.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct pending {
    struct gw_conn *conn; /* NULL once the client has gone */
    struct gw_worker *w;
    int status;
    json_t *body;
};

static void answer(struct gw_conn *c, int status, json_t *body)
{
    static const struct gw_header nostore = {GW_SLICE_LIT("Cache-Control"),
                                             GW_SLICE_LIT("no-store")};
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!text) {
        status = 503;
        text = strdup("{\"error\":\"out of memory\"}");
    }
    gw_conn_respond(c, status, "application/json", text ? text : "", text ? strlen(text) : 0,
                    &nostore, 1);
    gw_conn_end(c, 0);
    free(text);
}

static json_t *outcome_json(const struct gw_reload_outcome *o)
{
    json_t *j = json_pack("{s:b, s:s, s:s, s:I, s:I}", "ok", o->ok, "outcome", o->code, "message",
                          o->message ? o->message : "", "generation", (json_int_t)o->generation,
                          "duration_ms", (json_int_t)o->duration_ms);
    if (j && o->line)
        json_object_set_new(j, "line", json_integer(o->line));
    return j;
}

static void client_gone(void *arg)
{
    struct pending *p = arg;
    p->conn = NULL;
}

/* A shutdown does not cut the answer short: it is owed and comes within the reload's time. */
static void server_shutdown(void *arg)
{
    (void)arg;
}

/* On the worker's thread. */
static void deliver(void *arg)
{
    struct pending *p = arg;
    if (p->conn) {
        gw_conn_set_hooks(p->conn, NULL, NULL, NULL);
        answer(p->conn, p->status, p->body);
    }
    json_decref(p->body);
    gw_worker_unref(p->w);
    free(p);
}

/* On the reload thread. */
static void reload_done(void *arg, const struct gw_reload_outcome *o)
{
    struct pending *p = arg;
    p->status = o->status;
    p->body = outcome_json(o);
    if (gw_worker_post(p->w, deliver, p) != 0)
        gw_log_error("reload", "cannot hand the reload's answer back to its worker");
}

void admin_reload_post(struct gw_conn *c, const struct http1_parser *hp)
{
    if (hp->method != GW_HTTP_POST) {
        static const struct gw_header allow[] = {{GW_SLICE_LIT("Allow"), GW_SLICE_LIT("POST")}};
        gw_conn_respond(c, 405, "application/json", "{\"error\":\"method not allowed\"}",
                        sizeof "{\"error\":\"method not allowed\"}" - 1, allow, 1);
        gw_conn_end(c, 0);
        return;
    }
    struct pending *p = calloc(1, sizeof *p);
    if (!p) {
        answer(c, 503, NULL);
        return;
    }
    p->conn = c;
    p->w = gw_conn_worker(c);
    gw_worker_ref(p->w);
    gw_conn_set_hooks(c, client_gone, server_shutdown, p);
    int rc = gw_reload_request("admin", reload_done, p);
    if (rc == GW_RELOAD_STARTED)
        return;
    struct gw_reload_outcome o = {
        .status = rc == GW_RELOAD_BUSY ? 409 : 503,
        .code = rc == GW_RELOAD_BUSY ? "busy" : "stopping",
        .message = rc == GW_RELOAD_BUSY
                       ? "a reload is already running; ask again once it has ended"
                       : "toolgate is shutting down (or serves no file): not reloading",
    };
    json_t *body = outcome_json(&o);
    gw_conn_set_hooks(c, NULL, NULL, NULL);
    answer(c, o.status, body);
    json_decref(body);
    gw_worker_unref(p->w);
    free(p);
}
