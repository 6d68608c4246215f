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

    /* 2026-07-28: the mirrored headers of what goes to the backend (the backend's own name). */
    const char *up_method; /* Mcp-Method */
    struct gw_buf up_name; /* Mcp-Name, encoded; empty when the method has none */
    int up_params;         /* the client's Mcp-Param-* go on (tools/call) */

    /* server/discover: every backend's asked in turn, the results merged. */
    int discovering;
    struct fed_discover discover;

    /* subscriptions/listen: one listen per backend, merged into the client's one stream. */
    int listening;
    json_t *listen_ack;        /* the backends' acknowledgements, combined */
    size_t acks_pending;       /* listens not yet acknowledged (nor ended) */
    int client_acked;          /* the client's acknowledgement is written */
    struct gw_buf listen_held; /* events that came before it, bounded */

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

    /* A GET (or a 2026-07-28 listen): one stream per backend, merged into the client's. */
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
    /* subscriptions/listen */
    char *body;   /* the listen request this backend got */
    int acked;    /* its acknowledgement came */
    int answered; /* it answered the listen request (ended it, or refused it) */
};

static inline struct fed_state *state(struct exchange *x)
{
    return x->kind_state;
}

static inline uint64_t now_ms(void)
{
    return gw_mono_ns() / 1000000ull;
}

/* ---- fed_route.c: the kind ---- */

/*
 * The backend a governed action names (a tool or prompt by its prefix, a resource or a
 * completion's resource template by its URI prefix), and the backend's own name or URI in
 * *rest; NULL when none does.
 */
const struct gw_backend *fed_action_backend(const struct gw_route *route,
                                            const struct mcp_message *m, const char **rest);
/*
 * The client's governed action as the layers left it, for the backend (a new reference): the
 * prefix taken off the name or the URI prefix off the URI, nothing else changed. NULL: memory.
 */
json_t *fed_action_for_backend(const struct mcp_message *m, const char *rest);
/* Answers a target no backend's prefix names as one that does not exist. */
void fed_answer_unknown(struct exchange *x, const struct mcp_message *m);

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
/*
 * The headers of a 2026-07-28 call (after Content-Type, Accept and MCP-Protocol-Version):
 * Mcp-Method, Mcp-Name (s->up_name) and the client's Mcp-Param-* that still mirror the
 * arguments (s->up_params). Writes at most `max`; returns how many.
 */
size_t fed_modern_headers(struct exchange *x, struct gw_header *hdrs, size_t max);
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
/* The head of the client's merged stream, once (fed_stream.c, fed_listen.c). 0, or -1. */
int fed_write_stream_head(struct exchange *x);
/* The exchange ends: every backend's stream with it. */
void fed_on_finish(struct exchange *x);

/* ---- fed_modern.c, fed_listen.c: revision 2026-07-28 ---- */

/*
 * A 2026-07-28 request on a federated route, once the layers allowed it: no session, each
 * request routed as in the session era (lists paged through the backends, actions by prefix)
 * with the client's envelope and the mirrored headers made for the backend; server/discover
 * answered from every backend's, merged; subscriptions/listen fanned out (fed_listen).
 */
void fed_modern_forward(struct exchange *x, const struct mcp_message *m);
/*
 * subscriptions/listen: one listen per backend that can tell something of what the client
 * asked, their streams merged into the client's one: one acknowledgement (the backends',
 * combined) once every backend has acknowledged or ended, then their notifications under the
 * client's subscription id, each through the kind's rewriting and the response hooks.
 */
void fed_listen(struct exchange *x, const struct mcp_message *m);

/* ---- fed_answer.c: the client's answers to backends' requests ---- */

/*
 * A client's answer (result or error) to a request a backend sent it: it goes to the backend
 * that asked, in that backend's session, with the backend's own id. An answer under an id
 * toolgate did not issue in this session (or already answered) is dropped: the client gets
 * 202 all the same, and no backend sees it.
 */
void fed_answer_backend(struct exchange *x, const struct mcp_message *m);

#endif
