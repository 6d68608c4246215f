/*
 * fed-int: what the files of the federation route kind share (fed_route.c, fed_upstream.c,
 * fed_session.c, fed_stream.c, fed_answer.c): the state of a federated exchange and the steps
 * each file offers the others. Private to src/routes/federation/.
 */
#ifndef GW_ROUTES_FED_INT_H
#define GW_ROUTES_FED_INT_H

#include <stddef.h>
#include <stdint.h>

#include "core/exchange.h"
#include "lib/buf.h"
#include "lib/timeutil.h"
#include "mcp/session.h"
#include "routes/federation/federation.h"

/* The protocol revision toolgate speaks with the backends of a federated route. */
#define FED_BACKEND_PROTOCOL "2025-06-18"

enum { FED_INIT = 1, FED_INITIALIZED, FED_CALL };

struct fed_state {
    enum fed_list list; /* the answer is a backend's page of this list, to rewrite */
    size_t index;       /* the backend this exchange talks to now */
    char *cursor;       /* that backend's cursor for the list */
    char *body;         /* the request as the backend gets it */
    char *backend_sid;  /* the backend's session id */
    int step;           /* FED_INIT, FED_INITIALIZED, FED_CALL */
    int status;         /* status of an initialisation step */
    struct gw_buf scratch;

    /* The client's initialize: every backend's session opened in turn, capabilities merged. */
    int opening_all;
    const char *version; /* the revision answered to the client */
    char *client_caps;   /* what the client offers the backends (roots, sampling, elicitation) */
    struct gw_buf init_answer;
    int init_answer_over; /* the answer exceeded FED_MAX_INIT_ANSWER */
    json_t *caps;         /* merged capabilities */
    char *sids[MCP_SESSION_MAX_BACKENDS];

    /* logging/setLevel: sent to every open backend session in turn. */
    int broadcasting;

    /* A GET: one server stream per backend, merged into the client's. */
    struct fed_stream *streams;
    size_t n_streams;
    size_t live_streams;
    int head_written;
};

/* One backend's server stream of a client's GET. */
struct fed_stream {
    struct exchange *x;
    size_t index;
    struct upstream_call *call;
    struct sse_parser sse;
    int status;
    int is_sse;
    int paused;
};

static inline struct fed_state *state(struct exchange *x)
{
    return x->kind_state;
}

static inline uint64_t now_ms(void)
{
    return gw_mono_ns() / 1000000ull;
}

/* ---- fed_upstream.c: calls to the backends ---- */

/*
 * Starts a call to a backend other than the one routing vetted (resolved afresh, with only
 * the injected identity that may go there): the headers given, X-Request-Id, the identity.
 * `arg` is the exchange (the call becomes x->up, under the backend's first-byte timeout) or
 * the caller's own (it keeps the call). NULL when it cannot start.
 */
struct upstream_call *fed_start_other(struct exchange *x, const struct gw_backend *be,
                                      enum gw_http_method method, const char *body,
                                      const struct gw_header *extra, size_t n_extra,
                                      const struct upstream_callbacks *cbs, void *arg);
/*
 * Starts a call to the backend the exchange talks to now (s->index); `body` must stay valid
 * until the call has ended. The backend routing vetted goes through the core's builder
 * (pinned to the vetted address); another is resolved afresh (fed_start_other).
 */
int fed_start(struct exchange *x, const char *body, int with_session,
              const struct upstream_callbacks *cbs);
/* Callbacks of a call whose answer nobody reads. */
void fed_ignore_head(void *arg, int status, const struct gw_header *h, size_t n);
int fed_ignore_data(void *arg, const char *data, size_t len);
void fed_ignore_done(void *arg, int err, const char *detail);

/* ---- fed_session.c: backend sessions ---- */

/*
 * The client's initialize: toolgate opens a session with every backend in turn (so that it
 * can answer with their capabilities merged), then records the client's session, standing
 * for them, and answers. A backend that cannot be reached now is left out of the
 * capabilities and opened later by the first request that needs it.
 */
void fed_initialize(struct exchange *x, const struct mcp_message *m);
/* The initialize request toolgate sends a backend (kept in s->scratch while it is sent). */
int fed_start_backend_init(struct exchange *x);
/* The call itself, on the backend's session; its answer is relayed like any other. */
void fed_call(struct exchange *x);
/* Closes the backend sessions of a client session (best effort; nobody waits for them). */
void fed_close_backends(struct exchange *x, char **sids, size_t n);

/* ---- fed_stream.c: the server stream ---- */

/*
 * A client's GET: a server stream opened with every backend whose session this client
 * session has (in that session, with the identity the layers injected), their messages
 * merged into the client's one stream. The client's stream opens with the first backend's;
 * it ends when every backend's has, the client leaves, or it stays idle longer than the
 * backends' idle timeout. When no backend offers one, the answer is 405.
 */
void fed_open_streams(struct exchange *x);
/* The exchange ends: every backend's stream with it. */
void fed_on_finish(struct exchange *x);

/* ---- fed_answer.c: the client's answers to backends' requests ---- */

/*
 * A client's answer (result or error) to a request a backend sent it: it goes to the backend
 * that asked, in that backend's session, with the backend's own id. An answer under an id
 * toolgate did not issue in this session (or already answered) is dropped: the client gets
 * 202 all the same, and no backend sees it.
 */
void fed_answer_backend(struct exchange *x, const struct mcp_message *m);

#endif
