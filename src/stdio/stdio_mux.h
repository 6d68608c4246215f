/*
 * stdio_mux: the processes of local backends and the sessions multiplexed onto them, shared
 * by stdio_mux.c (processes, messages from them) and stdio_session.c (requests from toolgate).
 */
#ifndef GW_STDIO_MUX_H
#define GW_STDIO_MUX_H

#include "stdio/stdio-int.h"

#define MAX_SESSIONS_PER_INSTANCE 256
#define MAX_PENDING 1024
#define MAX_STDIN_QUEUE (16u * 1024 * 1024)
#define SERVER_REQUESTS 64

enum inst_state { I_DOWN, I_STARTING, I_READY, I_BACKOFF, I_FAILED };

struct pending {
    struct pending *next;
    uint64_t id;       /* the process's id for it */
    json_t *client_id; /* the session's id */
    json_t *progress;  /* the session's progress token, or NULL */
    struct stdio_session *session;
    struct stdio_conn *conn; /* its SSE answer; NULL once the client went */
    char *line;              /* not yet written (the process is starting) */
    int is_init;             /* an initialize answered from the cache */
};

struct stdio_session {
    struct stdio_session *next;
    char id[33];
    struct stdio_instance *inst;
    struct stdio_conn *get; /* its GET stream */
    uint64_t last_request;
};

struct server_request {
    json_t *id;
    struct stdio_session *session;
};

struct stdio_instance {
    struct stdio_instance *next;
    struct stdio_backend_rt *be;
    char principal[80];
    enum inst_state state;
    struct stdio_child ch;
    int alive;
    uv_pipe_t in, out, err;
    int pipes_open;
    uv_timer_t timer;
    struct stdio_framer fout, ferr;
    json_t *init_params;
    json_t *init_result;
    uint64_t init_id, next_id;
    struct pending *pending;
    size_t n_pending;
    struct stdio_session *sessions;
    size_t n_sessions;
    struct server_request sreq[SERVER_REQUESTS];
    unsigned failures;
    uint64_t ready_at, idle_since;
    uint64_t stderr_window, stderr_count;
    int closing;
    int handles; /* open libuv handles (timer, pipes) */
};

void reply_error(struct stdio_conn *c, int status, json_t *id, int code, const char *msg);
int send_line(struct stdio_instance *in, const char *line);
int send_json(struct stdio_instance *in, json_t *msg);
void pending_answer(struct pending *p, json_t *msg);
void pending_free(struct pending *p);
struct stdio_session *session_find(const char *sid, struct stdio_backend_rt **be_out);
void session_free(struct stdio_session *s);
int random_hex(char *out, size_t bytes);
void inst_start(struct stdio_instance *in);
struct stdio_instance *inst_new(struct stdio_backend_rt *be, const char *principal);
void inst_free(struct stdio_instance *in);

#endif
