/*
 * server: the process (listeners, worker threads, signals, graceful shutdown) and the client
 * connections of each worker (HTTP/1.1 framing, bounds, timeouts, writes with backpressure).
 *
 * One worker thread per core, each with its own libuv loop, its own SO_REUSEPORT listening
 * sockets and its own upstream client; a connection lives and dies on one worker, so nothing
 * on the request path is shared between threads except the read-only config generation and
 * the layers' own thread-safe stores.
 */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "core/config.h"
#include "core/http1.h"
#include "core/request.h"

struct gw_worker;
struct gw_conn;
struct upstream_multi;

/*
 * What the server calls for each complete request, on the worker's thread that read it. The
 * handler answers through the gw_conn_* calls below and finally gw_conn_end, at once or later
 * (from the same thread). The parser's slices stay valid until gw_conn_end.
 */
struct gw_handler {
    void (*handle)(void *ctx, struct gw_conn *c, struct http1_parser *p);
    void *ctx;
};

/*
 * One listening address and the handler of the requests it receives. Listeners of one
 * server may carry different handlers (the gateway's, the admin's); `role` only labels a
 * listener in the startup log and in errors ("admin"; NULL for the gateway's own).
 */
struct gw_server_listener {
    const struct gw_listen *listen; /* borrowed from the generation */
    const char *role;
    struct gw_handler handler;
};

/*
 * Runs the server until SIGTERM/SIGINT (or gw_server_stop) and a graceful drain, with the
 * `n` listeners given (every worker binds each). Returns the exit code. Signals stay caught
 * (a second one is harmless) until gw_server_release_signals(), which the caller calls once
 * its own teardown is done.
 */
int gw_server_run_listeners(const struct gw_config *cfg, const struct gw_server_listener *ls,
                            size_t n);
/* The same with `handler` on every server.listen address. */
int gw_server_run(const struct gw_config *cfg, const struct gw_handler *handler);
/* Client connections open in the process, on every listener. */
long gw_server_open_connections(void);
void gw_server_release_signals(void);
/*
 * Begins the graceful drain as SIGTERM does (now = 0), or closes everything at once as a
 * second signal does (now = 1). Callable from any thread, also before gw_server_run has
 * started its workers (the stop then happens as soon as they exist).
 */
void gw_server_stop(int now);

/*
 * Reload of the listeners' TLS certificates (core/reload.c): prepare loads every TLS
 * listener's certificate and key as `next` names them into *prepared (off the event loop;
 * returns 0, or -1 with a sentence in err); commit makes them serve new handshakes; abort
 * frees them unused. Without running listeners prepare leaves *prepared NULL.
 */
int gw_server_tls_prepare(const struct gw_config *next, void **prepared, char *err, size_t errlen);
void gw_server_tls_commit(void *prepared);
void gw_server_tls_abort(void *prepared);
/*
 * Runs fn(worker) on every worker that has not finished, each on its own thread (reload
 * notifications). Callable from any thread; a worker that is closing is skipped.
 */
void gw_server_post_each(void (*fn)(void *worker));
/* Called on SIGHUP, on the main thread (set before gw_server_run*; NULL: ignored). */
void gw_server_on_hangup(void (*fn)(void));

/* ---- what handlers (the proxy) may do with a connection ---- */

/* The worker's loop and upstream client. */
uv_loop_t *gw_worker_loop(struct gw_worker *w);
struct upstream_multi *gw_worker_upstream(struct gw_worker *w);
const struct gw_config *gw_worker_config(struct gw_worker *w);
/*
 * Work owed to the worker outside any connection (an answer waiting for its audit record
 * after the client left): the worker does not finish its shutdown while references remain.
 * Both on the worker's own thread.
 */
void gw_worker_ref(struct gw_worker *w);
void gw_worker_unref(struct gw_worker *w);
/* Runs fn(arg) on the worker's loop thread; callable from any thread. Returns 0 or -1. */
int gw_worker_post(void *worker, void (*fn)(void *arg), void *arg);
/* The worker as a request's host (its loop, posting, whether it stops) for the layers. */
struct gw_request_host gw_worker_host(struct gw_worker *w);

/*
 * Starts the response. content_length >= 0 sends a fixed-length body; -1 streams it (chunked
 * for HTTP/1.1 clients, close-delimited for HTTP/1.0). `headers` are extra header lines
 * (Content-Type among them); Date, Content-Length/Transfer-Encoding and Connection are added
 * here. Returns 0, or -1 when the connection is gone.
 */
int gw_conn_write_head(struct gw_conn *c, int status, const struct gw_header *headers,
                       size_t n_headers, int64_t content_length);
/* Writes body bytes (chunk-framed when streaming). Returns 0 or -1. */
int gw_conn_write_body(struct gw_conn *c, const char *data, size_t len);
/*
 * Ends the response (the terminating chunk when streaming). The connection goes on to the
 * next request, or closes when keep-alive is off or `abandon` is set (a stream cut short).
 * The handler must not touch the connection afterwards.
 */
void gw_conn_end(struct gw_conn *c, int abandon);
/* A whole response in one call: status, content type, body. */
int gw_conn_respond(struct gw_conn *c, int status, const char *content_type, const char *body,
                    size_t len, const struct gw_header *extra, size_t n_extra);
/* Bytes written but not yet taken by the kernel. */
size_t gw_conn_queued(const struct gw_conn *c);
/* Called once when queued bytes fall below half of server.limits.write_buffer. */
void gw_conn_on_drain(struct gw_conn *c, void (*cb)(void *arg), void *arg);
int gw_conn_http_minor(const struct gw_conn *c);
/* The client's address. Returns 0, or -1 when it cannot be read. */
int gw_conn_peer(const struct gw_conn *c, struct sockaddr_storage *out);
struct gw_worker *gw_conn_worker(const struct gw_conn *c);

/*
 * If the client goes away before the handler has ended its answer, the server calls
 * `abort_cb` (the connection must not be used afterwards). When the server begins a graceful
 * shutdown, it calls `shutdown_cb` for requests in flight: a handler relaying an open-ended
 * stream ends it there.
 */
void gw_conn_set_hooks(struct gw_conn *c, void (*abort_cb)(void *arg),
                       void (*shutdown_cb)(void *arg), void *arg);
/* True once the worker has begun its graceful shutdown. */
int gw_worker_stopping(const struct gw_worker *w);

#endif
