/*
 * stdio-int: what the parts of the local-backend runtime share. Everything here lives on the
 * runtime's own thread and loop (stdio_module.c starts it); nothing is locked but the
 * counters that /readyz and /metrics read.
 */
#ifndef GW_STDIO_INT_H
#define GW_STDIO_INT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "stdio/stdio_frame.h"
#include "stdio/stdio_spawn.h"
#include "stdio/stdio_spec.h"

/* Same name as core/upstream.h GW_LOCAL_PRINCIPAL_HEADER. */
#define GW_STDIO_PRINCIPAL_HEADER "X-Toolgate-Local-Principal"

struct stdio_conn;
struct stdio_session;
struct stdio_instance;

/* One local backend of the running configuration. */
struct stdio_backend_rt {
    const struct stdio_spec *spec;
    struct stdio_instance *instances;
    unsigned n_instances;
    atomic_uint running; /* processes alive */
    atomic_uint failed;  /* instances given up on (restart.attempts exhausted) */
    atomic_uint backoff; /* instances waiting to restart */
    atomic_uint_fast64_t restarts, crashes, overflows, stderr_suppressed;
};

struct stdio_runtime {
    uv_loop_t *loop;
    struct stdio_backend_rt *backends;
    size_t n_backends;
    int stopping;
};
extern struct stdio_runtime stdio_rt;

/* ---- stdio_http.c: the private endpoint's connections ---- */
enum stdio_method { STDIO_POST, STDIO_GET, STDIO_DELETE, STDIO_OTHER };
struct stdio_request {
    enum stdio_method method;
    const char *path;
    const char *session_id; /* Mcp-Session-Id or NULL */
    const char *principal;  /* the routing layer's user pseudonym, or NULL */
    const char *body;
    size_t body_len;
};
/* A complete answer (Content-Length). ctype NULL: no body. sid: Mcp-Session-Id to set. */
void stdio_conn_reply(struct stdio_conn *c, int status, const char *ctype, const char *sid,
                      const char *body, size_t len);
void stdio_conn_sse_start(struct stdio_conn *c, const char *sid);
void stdio_conn_sse_event(struct stdio_conn *c, const char *data, size_t len);
void stdio_conn_sse_end(struct stdio_conn *c); /* and ready for the next request */
int stdio_conn_streaming(const struct stdio_conn *c);
/* What the mux keeps on a connection it answers later; told when the connection closes. */
void stdio_conn_set_owner(struct stdio_conn *c, void *owner);
void *stdio_conn_owner(const struct stdio_conn *c);
int stdio_http_listen(uv_loop_t *loop, const char *socket_path, char *why, size_t cap);
void stdio_http_close_all(void);

/* ---- stdio_mux.c: instances, sessions, messages ---- */
void stdio_mux_request(struct stdio_conn *c, const struct stdio_request *r);
void stdio_mux_conn_closed(struct stdio_conn *c, void *owner);
/* Starts the shared instances of every backend. */
void stdio_mux_start(void);
/* Stops every process (SIGTERM to each group, then SIGKILL) and frees the instances. */
void stdio_mux_stop_all(void);

struct gw_module;
extern const struct gw_module stdio_module;

#endif
