/*
 * request: the request context. One per client request that reached a route; every layer
 * reads it and records into it what it saw and decided; audit turns it into the record.
 *
 * Owned by the connection that received the request and freed with gw_request_free when the
 * response has ended. Layers own the fields they fill (freed by gw_request_free through the
 * layers' own free hooks).
 */
#ifndef GW_REQUEST_H
#define GW_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "core/request-t.h"
#include "lib/buf.h"
#include "core/config.h"
#include "mcp/jsonrpc.h"
#include "mcp/session.h"

/*
 * Stages of the pipeline are the modules of the build (core/module.h), in list order; a
 * stage's index is its module's index. GW_STAGE_NONE in deciding_stage: nothing denied.
 */
#define GW_MAX_STAGES 10
#define GW_STAGE_NONE (-1)

#define GW_MAX_RESPONSE_HEADERS 8
#define GW_MAX_UPSTREAM_HEADERS 12

struct gw_timing {
    uint64_t start_ns; /* monotonic */
    uint64_t stage_ns[GW_MAX_STAGES];
    /* When each stage began and gave its verdict (an asynchronous wait included); 0: never. */
    uint64_t stage_begin_ns[GW_MAX_STAGES];
    uint64_t stage_end_ns[GW_MAX_STAGES];
    uint64_t upstream_start_ns; /* the request's own message was handed to the upstream client */
    uint64_t upstream_first_byte_ns;
    uint64_t end_ns;
};

/*
 * What a layer may use of the thread that serves a request: its event loop (for asynchronous
 * lookups and round trips), a way to run work there from other threads, and whether it is
 * shutting down. Filled by the core from its worker; all NULL in unit tests, where work
 * posted runs at once and layers fall back to their own loop.
 */
struct gw_request_host {
    struct uv_loop_s *loop;
    void *ctx; /* the serving thread, opaque; passed back to post and stopping */
    int (*post)(void *ctx, void (*fn)(void *arg), void *arg);
    int (*stopping)(const void *ctx);
};

/* True when the host (a copy kept by a layer) has begun its graceful shutdown. */
int gw_host_stopping(const struct gw_request_host *host);
/* Runs fn(arg) on the host's thread, or at once when it has none. Returns 0 or -1. */
int gw_host_post(const struct gw_request_host *host, void (*fn)(void *arg), void *arg);

struct gw_request {
    char id[37]; /* UUIDv7 */
    const struct gw_config *cfg;
    const struct gw_route *route;
    struct gw_request_host host; /* the thread serving it; zeroed in unit tests */
    void *exchange;              /* the handler's state for it (the proxy's exchange) */

    /* HTTP, as received. Slices point into the connection's header storage. */
    enum gw_http_method method;
    struct gw_slice method_name;
    struct gw_slice path; /* without the query */
    struct gw_slice query;
    struct gw_header *headers;
    size_t n_headers;
    struct gw_slice body; /* the original bytes, forwarded unchanged unless rewritten */
    char *rewritten_body; /* malloc'd when a layer rewrote the message (request redaction) */
    size_t rewritten_len;

    /* MCP. */
    char *protocol_version; /* MCP-Protocol-Version header, or NULL */
    char *session_id;       /* Mcp-Session-Id header (toolgate's own id), or NULL */
    /*
     * The session it names, once the identity layer has found it bound to this user and
     * route (session_valid); what the backends' own session ids are.
     */
    struct mcp_session session;
    int session_valid;
    struct mcp_batch rpc; /* decoded POST body (empty for GET/DELETE) */

    /*
     * A request that could not be decoded (bad JSON, bad JSON-RPC, bad MCP headers) is
     * refused before the layers run; audit still records it, with this decision.
     */
    int protocol_error;
    struct gw_decision protocol_decision;
    json_t *protocol_error_data; /* members added to that error's data (owned), or NULL */
    /* Revision 2026-07-28: stateless, its headers held to its body (mcp/modern.h). */
    int modern;

    /* What the layers found and decided. */
    struct gw_identity identity;
    struct gw_findings findings;
    struct gw_limits_state limits;      /* cost, budget and rate-limit state (limits layer) */
    struct gw_approval_record approval; /* human approval of the call (policy layer) */
    /*
     * A result a denying layer gives a tools/call instead of the isError result (2026-07-28:
     * input_required, asking the user); owned, freed with the request.
     */
    json_t *denial_result;
    struct gw_decision decision[GW_MAX_STAGES];
    /* The WWW-Authenticate challenge of a 401/403 denial, written by the stage that denies
     * (identity, or policy for a missing scope); empty otherwise. */
    char www_authenticate[512];
    int deciding_stage; /* the stage that denied; GW_STAGE_NONE when allowed */
    void *layer_state[GW_MAX_STAGES];
    void (*layer_state_free[GW_MAX_STAGES])(void *);

    /*
     * Headers layers add to the client's answer (RateLimit, warnings), whatever it is:
     * a relayed answer or a denial. Name and value storage is owned by the request.
     */
    struct gw_header response_headers[GW_MAX_RESPONSE_HEADERS];
    size_t n_response_headers;
    struct gw_buf response_header_storage;

    /*
     * Headers layers add to the request sent upstream (identity injection). Any header the
     * client sent with one of these names is not forwarded. Storage owned by the request.
     */
    struct gw_header upstream_headers[GW_MAX_UPSTREAM_HEADERS];
    size_t n_upstream_headers;
    struct gw_buf upstream_header_storage;

    /* Upstream. */
    const struct gw_backend *backend; /* set by routing; the route's first when left NULL */
    /*
     * The endpoint URL to use for this backend, set by routing when a backend has several
     * endpoints (points into the config generation); NULL: backend->url.
     */
    const char *upstream_url;
    /* The session id the backend's answer carried (malloc'd), or NULL. */
    char *upstream_session_id;
    /*
     * "host:port:address" pinning the backend's name to the address the routing layer
     * vetted (curl's CURLOPT_RESOLVE format); empty when not pinned.
     */
    char upstream_pin[320];
    int upstream_status; /* HTTP status from upstream; 0 when none */
    /*
     * 1 once the request's own message may have reached the backend: it was handed to the
     * upstream client and the connection to the backend did not fail to open. It stays 1
     * whatever happens next (the client hangs up, the backend times out or fails), so a layer
     * can tell work the backend may have done from a call that never left.
     */
    int upstream_sent;
    char upstream_error[64];
    /*
     * Recorded for audit by the modules that know them: the W3C trace and toolgate's span for
     * this request as lower-case hex (telemetry; "" when not traced), and how the identity
     * reached the backend ("jwt", "headers", "token_exchange", "none"; routing; NULL before).
     */
    char trace_id[33];
    char span_id[17];
    const char *inject_mode;
    int response_status; /* what the client got */
    uint64_t response_bytes;

    struct gw_timing timing;

    /*
     * Durable completion. The core sets completion_durable before gw_pipeline_complete; a
     * layer that records the completion durably (audit) calls it back (from any thread) once
     * the record is committed (ok = 1) or lost (ok = 0), and sets completion_pending so the
     * core holds the answer until then. completion_lost: the record could not even be queued.
     */
    void (*completion_durable)(void *arg, int ok);
    void *completion_arg;
    int completion_pending;
    int completion_lost;

    /* Pipeline state (core/pipeline.c). */
    int next_stage; /* the stage to run next; the number of stages once all have run */
    void (*pipeline_done)(struct gw_request *req, int verdict);
    int pipeline_running;
    int pipeline_early_verdict; /* a resume that came before check() returned GW_ASYNC; -1 none */
};

/* Allocates a request context with a fresh id. Returns NULL when out of memory. */
struct gw_request *gw_request_new(const struct gw_config *cfg);
void gw_request_free(struct gw_request *req);

/* The first header named `name` (any case) of h[0..n), or NULL. */
const struct gw_header *gw_header_find(const struct gw_header *h, size_t n, const char *name);
/* Returns the first header with this name (case-insensitive), or a NULL slice. */
struct gw_slice gw_request_header(const struct gw_request *req, const char *name);
/* Counts headers with this name. */
size_t gw_request_header_count(const struct gw_request *req, const char *name);

/*
 * Re-encodes the decoded messages (as layers or the decoder changed them) into the body that
 * goes upstream instead of the original bytes. Returns 0 or -1 (memory).
 */
int gw_request_reserialize(struct gw_request *req);

/* The bytes to forward upstream: the rewritten body when there is one, else the original. */
struct gw_slice gw_request_upstream_body(const struct gw_request *req);

/*
 * Adds a header to the client's answer / to the upstream request (copies name and value).
 * Returns 0, or -1 when the table is full or memory is out (callers that must not proceed
 * without the header deny the request).
 */
int gw_request_add_response_header(struct gw_request *req, const char *name, const char *value);
int gw_request_add_upstream_header(struct gw_request *req, const char *name, const char *value);

/*
 * Runs fn(arg) on the request's own thread, from any thread (a key-fetch thread handing back
 * its result); at once in unit tests. Returns 0, or -1 when it cannot.
 */
int gw_request_post(struct gw_request *req, void (*fn)(void *arg), void *arg);
/* The event loop of the request's thread; NULL when it has none (unit tests). */
struct uv_loop_s *gw_request_loop(const struct gw_request *req);

/* The decision that denied the request (a protocol error or a stage), or NULL if allowed. */
const struct gw_decision *gw_request_denial(const struct gw_request *req);

/*
 * 1 when the safety layer found something in the call's target (tool or prompt name, resource
 * URI) or may have (more findings than it itemised): then neither the audit record nor the
 * admin feed keeps the target.
 */
int gw_request_target_has_finding(const struct gw_request *req);
/* Who denied it: "protocol", "identity", "safety", ... or NULL when it was allowed. */
const char *gw_request_denial_layer(const struct gw_request *req);
/* The stage's module name ("identity" ... "audit"); "protocol" for any other index. */
const char *gw_stage_name(int stage);
/* True when no stage denied and the request was not a protocol error. */
int gw_request_allowed(const struct gw_request *req);

/* Fills a deny decision; returns GW_DENY. */
int gw_decision_deny(struct gw_decision *d, int http_status, int jsonrpc_code,
                     const char *reason_code, const char *reason);

void gw_identity_clear(struct gw_identity *id);

#endif
