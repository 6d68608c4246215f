/*
 * ehr-backend: a fictional clinic's MCP server (streamable HTTP transport).
 *
 * It is the backend toolgate fronts in the demo, the end-to-end tests and the benchmarks.
 * Modules: main.c (CLI, workers, signals), server.c (HTTP/1.1 on libuv + http_parser),
 * mcp.c (JSON-RPC and MCP methods, sessions, SSE framing), tools.c (the tools), data.c (the
 * generated records). This header holds the types they share, HAProxy -t.h style, plus the
 * few functions that cross module lines.
 *
 * Threading: N workers, each with its own loop and its own SO_REUSEPORT listener. A
 * connection lives and dies on one worker. What workers share is read-only (options,
 * patients, pre-serialized tools/list pages) or locked (sessions, notes).
 */
#ifndef EHR_H
#define EHR_H

#include <http_parser.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "auth.h"
#include "lib/buf.h"
#include "data.h"

#define EHR_MAX_BODY (1u << 20)                      /* request body bound; more is 413 */
#define EHR_MAX_URL 8192u                            /* request target bound; more is 414 */
#define EHR_MAX_HEADER_VALUES (16u << 10)            /* bytes of headers we keep; more is 431 */
#define EHR_MAX_PENDING (EHR_MAX_BODY + (64u << 10)) /* bytes held while a request is busy */
#define EHR_MAX_OUT (4u << 20) /* unsent response bytes before reading pauses */
#define EHR_SESSION_ID_LEN 32
#define EHR_VERSION_LEN 10 /* "2025-06-18" */

/* Request headers the server keeps; everything else is skipped while parsing. */
enum ehr_hdr {
    EHR_H_ACCEPT,
    EHR_H_CONTENT_TYPE,
    EHR_H_SESSION,
    EHR_H_PROTOCOL,
    EHR_H_AUTHORIZATION,
    EHR_H_ORIGIN,
    EHR_H_EXPECT,
    EHR_H_TG_SUBJECT,
    EHR_H_TG_TENANT,
    EHR_H_TG_ROLES,
    EHR_H_TG_SCOPES,
    EHR_H_TG_CLIENT,
    EHR_H_TG_REQUEST_ID,
    EHR_H_COUNT
};

struct ehr_options {
    char host[256];
    char port[8];
    char path[256];
    int sse_mode;          /* --mode sse */
    unsigned workers;      /* --workers, 1..64 */
    int quiet;             /* --quiet: no per-request log lines */
    unsigned page_size;    /* --page-size, 0 = tools/list is one page */
    uint64_t seed;         /* --seed */
    unsigned patients;     /* --patients */
    unsigned ping_ms;      /* --sse-ping-ms, GET stream keep-alive comment interval */
    unsigned max_sessions; /* --max-sessions */
    unsigned idle_ms;      /* --idle-timeout-ms, 0 = none */
    int stateless;         /* --stateless: no sessions (replicas behind one backend) */
    const char *jwks_url;  /* --jwks-url (argv); with --jwks-file, --issuer, --audience: */
    const char *jwks_file; /* every MCP request must carry a valid toolgate-signed JWT */
    const char *issuer;
    const char *audience;
};

struct ehr_session {
    struct ehr_session *next; /* hash chain */
    char id[EHR_SESSION_ID_LEN + 1];
    char version[EHR_VERSION_LEN + 1];
    uint64_t last_ms;
};

struct ehr_sessions {
    pthread_mutex_t lock;
    struct ehr_session **buckets;
    unsigned nbuckets;
    unsigned count;
    unsigned max;
    uint64_t idle_ms;
};

/* Shared by every worker; built before the workers start and read-only while they run. */
struct ehr_app {
    struct ehr_options opt;
    struct ehr_data data;
    struct ehr_sessions sessions;
    char **tool_pages; /* tools/list results (JSON text), one per page */
    size_t *tool_page_lens;
    unsigned n_tool_pages;
    int auth_on;          /* verify injected JWTs (auth.h) */
    struct ehr_auth auth; /* keys and rules when auth_on */
};

struct ehr_job;
struct ehr_conn;

/*
 * One POST's answer being assembled. Messages accumulate in `body` (JSON: comma-separated,
 * SSE: events); once a progress notification must go out before the end, the response turns
 * into a chunked SSE stream and each message is sent as it is made.
 */
struct ehr_exchange {
    int sse;                 /* answer as text/event-stream */
    int batch;               /* answer is a JSON array */
    int streaming;           /* SSE head sent, messages go out as chunks */
    unsigned pending;        /* jobs still running */
    unsigned nmsgs;          /* messages written */
    struct gw_buf body;      /* reused across requests */
    char session_header[64]; /* "Mcp-Session-Id: ...\r\n" after initialize, else "" */
    struct ehr_job *jobs;
};

/* The current HTTP request as the handlers see it; slices point into the connection. */
struct ehr_request {
    enum http_method method;
    struct gw_slice path;             /* without the query */
    struct gw_slice hdr[EHR_H_COUNT]; /* ptr NULL when absent */
    struct gw_slice body;
};

struct ehr_worker {
    struct ehr_app *app;
    unsigned index;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_os_sock_t listen_fd;
    int loop_ready;
    uv_async_t stop;
    uv_timer_t sweep; /* closes idle connections */
    pthread_t thread;
    struct ehr_conn *conns;          /* open connections, for shutdown */
    char date[64];                   /* cached "Date: ...\r\n" */
    struct gw_buf scratch, scratch2; /* reused by tools on this loop */
    int64_t date_sec;
    char readbuf[64 << 10]; /* every read on this loop lands here, then is parsed at once */
};

struct ehr_conn {
    uv_tcp_t tcp;
    uv_timer_t ping;
    uv_shutdown_t shutdown_req;
    uv_write_t write_req;
    struct ehr_worker *w;
    struct ehr_conn *prev, *next;
    http_parser parser;
    unsigned refs; /* tcp handle, ping timer, each running job */
    unsigned closing : 1;
    unsigned in_request : 1; /* a request is complete and its answer is not finished */
    unsigned busy : 1;       /* ...and the parser is paused for it */
    unsigned in_feed : 1;    /* parsing a read; flush happens once at the end */
    unsigned writing : 1;
    unsigned reading : 1;
    unsigned keep_alive : 1;
    unsigned chunked : 1; /* the streaming response uses chunked framing */
    unsigned close_after_flush : 1;
    unsigned shutting : 1;
    unsigned ping_active : 1;
    unsigned in_value : 1;
    unsigned hname_overflow : 1;
    int cur_hdr;     /* header being read, or -1 */
    int fail_status; /* set by a parser callback that rejects the request */

    /* The request being parsed; buffers are reused across requests. */
    struct gw_buf url, hvals, body;
    char hname[32];
    size_t hname_len;
    uint32_t hoff[EHR_H_COUNT], hlen[EHR_H_COUNT];
    uint32_t hpresent;
    uint64_t start_ns;
    uint64_t last_read_ms; /* loop time of the last read, for the idle sweep */

    /* Output: `out` collects, `inflight` is what uv_write is sending. */
    struct gw_buf out, inflight;
    struct gw_buf pending; /* bytes read while busy, parsed when the answer ends */

    struct ehr_exchange ex;
    char stream_session[EHR_SESSION_ID_LEN + 1]; /* the session a GET stream belongs to */
    int status;                                  /* for the log line */
    const char *log_rpc;                         /* static string, for the log line */
    const char *log_tool;
    /* The verified caller of the current request (auth_on), cleared when the next begins. */
    struct ehr_principal principal;
    int authenticated;
};

/* ---- server.c: answering on a connection ---- */

/*
 * Writes a whole response. `extra` is NULL or header lines each ending in "\r\n". Ends the
 * current request: parsing of later pipelined requests resumes.
 */
void ehr_respond(struct ehr_conn *c, int status, const char *ctype, const char *extra,
                 const char *body, size_t len);
/* Starts a streamed (chunked) response; then ehr_stream_write ... ehr_stream_end. */
void ehr_stream_begin(struct ehr_conn *c, int status, const char *ctype, const char *extra);
void ehr_stream_write(struct ehr_conn *c, const char *data, size_t len);
void ehr_stream_end(struct ehr_conn *c);
/* Reference counting: a job that outlives a callback holds the connection. */
void ehr_conn_hold(struct ehr_conn *c);
void ehr_conn_release(struct ehr_conn *c);
/* Starts the worker's listener on its loop; 0 or a negative libuv error. */
int ehr_server_start(struct ehr_worker *w);
/* Closes the listener and every connection (jobs are cancelled). */
void ehr_server_stop(struct ehr_worker *w);

/* ---- mcp.c ---- */

/* Handles one complete HTTP request. The answer may finish later (jobs). */
void ehr_mcp_handle(struct ehr_conn *c, const struct ehr_request *req);
/* The connection is closing: cancel what its exchange still runs. */
void ehr_mcp_abort(struct ehr_conn *c);

/* Exchange output, for tools.c. `id` is borrowed. `result` is stolen. */
void ehr_ex_result(struct ehr_conn *c, json_t *id, json_t *result);
/* Same, with the result already serialized (len bytes of JSON text, borrowed). */
void ehr_ex_result_raw(struct ehr_conn *c, json_t *id, const char *raw, size_t len);
void ehr_ex_error(struct ehr_conn *c, json_t *id, int code, const char *message);
/* Sends a notification now when the answer is SSE; drops it otherwise. Steals `note`. */
void ehr_ex_notify(struct ehr_conn *c, json_t *note);
/* A job finished its message: when it was the last, the answer ends. */
void ehr_ex_job_done(struct ehr_conn *c);

int ehr_sessions_init(struct ehr_sessions *s, unsigned max, uint64_t idle_ms);
void ehr_sessions_free(struct ehr_sessions *s);
/* Creates a session; writes its id (EHR_SESSION_ID_LEN chars + NUL). Returns 0 or -1. */
int ehr_sessions_create(struct ehr_sessions *s, const char *version, char *id_out);
/* Finds a live session and copies its version; 0 when found, -1 when unknown or expired. */
int ehr_sessions_lookup(struct ehr_sessions *s, struct gw_slice id, char *version_out);
/* 0 when the session existed and is gone, -1 when unknown. */
int ehr_sessions_delete(struct ehr_sessions *s, struct gw_slice id);

/* ---- tools.c ---- */

/* Pre-serializes the tools/list pages into app. Returns 0 or -1. */
int ehr_tools_init(struct ehr_app *app);
void ehr_tools_free(struct ehr_app *app);

/*
 * Runs tools/call `name` with `args` (an object, borrowed) for request `id` (borrowed). Either
 * writes the result now, or starts a job that writes it later (ex.pending counts it).
 * `progress_token` (borrowed, may be NULL) is used by slow_report. Returns 0, or -1 when the
 * tool does not exist (the caller answers -32602).
 */
int ehr_tools_call(struct ehr_conn *c, const struct ehr_request *req, json_t *id, const char *name,
                   json_t *args, json_t *progress_token);
/* Cancels every job of the connection's exchange (it is closing). */
void ehr_tools_cancel(struct ehr_conn *c);

/* Appends `s` as valid UTF-8 (bad sequences become U+FFFD) to out; 0 or -1. */
int ehr_utf8_sanitize(struct gw_buf *out, const char *s, size_t n);

#endif
