/*
 * server-int: what the two halves of the server share: the worker (server.c: threads, loops,
 * listeners, shutdown) and the connection (conn.c: HTTP/1.1 framing, bounds, writes).
 * Nothing outside src/core/server.c and src/core/conn.c includes this.
 */
#ifndef GW_SERVER_INT_H
#define GW_SERVER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "core/server.h"
#include "core/tls.h"

/* Bytes of pipelined input held while a request is being answered; reading pauses beyond. */
#define CONN_MAX_PENDING_INPUT (64u * 1024)
#define WORKER_READ_BUF (64u * 1024)
#define MAX_WORKERS 256

enum conn_state {
    C_IDLE,     /* between requests (or before the first) */
    C_HEAD,     /* receiving a request head */
    C_BODY,     /* receiving a request body */
    C_HANDLING, /* the request is with the handler */
    C_CLOSING,
};

struct post_item {
    void (*fn)(void *);
    void *arg;
    struct post_item *next;
};

struct gw_listener {
    uv_tcp_t tcp; /* first member: the handle's address is the listener's */
    struct gw_worker *w;
    size_t spec_index; /* its TLS context (server_tls.c) is found by the listener's index */
    struct gw_handler handler;
};

struct gw_worker {
    int index;
    uv_loop_t loop;
    uv_thread_t thread;
    /*
     * The generation new requests start on: a reference of the worker's own when generations
     * are in use (owns_cfg), refreshed before each request once the current number moved.
     */
    const struct gw_config *cfg;
    uint64_t cfg_number;
    int owns_cfg;
    int async_closed; /* under the server's post_each lock: no more posts from outside */
    struct gw_listener *listeners;
    int *listen_fds;
    size_t n_listeners;
    uv_async_t async;
    pthread_mutex_t post_lock;
    struct post_item *post_head, *post_tail;
    atomic_int stop_requested; /* 1 = drain, 2 = drain now */
    int stopping;
    int stop_done;
    atomic_int finished; /* the worker's loop has returned */
    int loop_ok;
    uv_timer_t stop_timer;
    /*
     * Once a second: when no request was dispatched for a whole second, the memory this
     * thread's allocator holds free goes back to the system, once per quiet spell.
     */
    uv_timer_t collect_timer;
    uint64_t dispatched, dispatched_seen;
    int collected;
    struct upstream_multi *upstream;
    struct gw_conn *conns; /* doubly linked list of open connections */
    size_t n_conns;
    size_t holds; /* work still owed to this worker outside any connection (gw_worker_ref) */
    char readbuf[WORKER_READ_BUF];
    int readbuf_busy;
    void (*on_stopped)(struct gw_worker *w);
};

struct gw_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct gw_worker *w;
    struct gw_handler handler; /* the listener's, copied */
    struct gw_tls_conn *tls;   /* NULL for plain HTTP */
    struct gw_conn *prev, *next;
    /*
     * Parser state exists only while a request is being read or served (it is several
     * KiB); an idle keep-alive connection holds none.
     */
    struct http1_parser *parser;
    struct gw_buf inbuf;
    enum conn_state state;
    int handles_open;
    int in_process;
    int reading;
    int keep_alive; /* for the response being written */
    int streaming;  /* the response body is chunked or close-delimited */
    int chunked;
    int head_sent;
    int body_started; /* the body phase of the current request began */
    int close_after;  /* close once the queued bytes are written */
    int head_pending; /* a fixed-length head waits in head_buf to leave with the body */
    struct gw_buf head_buf;
    int shutting; /* uv_shutdown issued: no more writes */
    int closed;   /* uv_close issued: the handles are going away */
    int first_request;
    size_t queued;
    uint64_t requests;
    void (*abort_cb)(void *);
    void (*shutdown_cb)(void *);
    void *hook_arg;
    void (*drain_cb)(void *);
    void *drain_arg;
};

/* conn.c */
void conn_on_connection(uv_stream_t *server, int status);
void conn_close(struct gw_conn *c);

/* conn_write.c */
/* Queues bytes (encrypted on a TLS connection); raw: bytes already as they go on the wire. */
int conn_write(struct gw_conn *c, const char *data, size_t len);
int conn_write_raw(struct gw_conn *c, const char *data, size_t len);
/* Writes a fixed-length head still waiting for its body. */
int conn_flush_head(struct gw_conn *c);
/* Closes gracefully once everything queued has reached the kernel. */
void conn_finish_close(struct gw_conn *c);
/* The number of client connections open in the process. */
long conn_open_count(void);

/* server.c */
void worker_maybe_finish(struct gw_worker *w);
/* Moves the worker to the current generation when it changed (worker's thread). */
void worker_refresh_config(struct gw_worker *w);

/* server_tls.c: the listeners' TLS contexts (NULL for plain ones), swapped by a reload. */
int server_tls_open(const struct gw_server_listener *ls, size_t n, char *err, size_t errlen);
struct gw_tls_ctx *server_tls_get(size_t i);
void server_tls_close(void);
/* "server.listen[i]" or "<role>.listen" for listener i, for errors. */
void server_tls_name(size_t i, char *out, size_t outlen);

#endif
