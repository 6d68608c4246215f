/*
 * tokex: RFC 8693 token exchange, the `token_exchange` injection mode. For a route that
 * injects this way toolgate posts the user's verified access token (subject_token) to the
 * identity provider's token endpoint, authenticated as its own OAuth client (the actor), and
 * sends the backend the token the provider issued for the backend's audience or resource.
 * The user's own token never reaches the backend.
 *
 * The exchange never runs on a worker's event loop: a small pool of threads of its own does
 * the HTTP round trip (libcurl easy, bounded in time and size), and the verdict is posted
 * back to the request's thread. Issued tokens are cached per (user token, exchange
 * settings) until shortly before they expire, in a bounded set-associative cache.
 *
 * Configuration: routes[].inject {mode: token_exchange, ...} (tokex_config_parse). What the
 * provider answers is hostile input, read by tokex_response_parse (tokex_response.c), a pure
 * function with a fuzz driver. See docs/identity.md and docs/routing.md.
 */
#ifndef GW_ROUTING_TOKEX_H
#define GW_ROUTING_TOKEX_H

#include <stddef.h>
#include <stdint.h>

#include "core/request.h"
#include "lib/cfg.h"

struct gw_route_inject;
struct gw_backend;
struct gw_metrics_out;

/* Bounds on what is sent and read. */
#define TOKEX_MAX_RESPONSE (64u * 1024) /* the token endpoint's answer */
#define TOKEX_MAX_TOKEN 8192            /* an issued access token */
#define TOKEX_MAX_SECRET 4096           /* client_secret_file */
#define TOKEX_MAX_ERROR 64              /* the provider's error code kept for the reason */
#define TOKEX_THREADS 4                 /* exchanges in flight at once */
#define TOKEX_MAX_QUEUED 1024           /* waiting for a thread; more are denied at once */
#define TOKEX_CACHE_ENTRIES 4096        /* issued tokens cached at most (8 ways) */

#define TOKEX_TYPE_ACCESS_TOKEN "urn:ietf:params:oauth:token-type:access_token"
#define TOKEX_TYPE_JWT "urn:ietf:params:oauth:token-type:jwt"
#define TOKEX_GRANT "urn:ietf:params:oauth:grant-type:token-exchange"

/* How toolgate authenticates to the token endpoint as its client (RFC 6749 §2.3.1). */
enum tokex_auth {
    TOKEX_AUTH_BASIC = 0, /* client_secret_basic (the default) */
    TOKEX_AUTH_POST,      /* client_secret_post */
};

/* routes[].inject when mode is token_exchange. Strings malloc'd; free with tokex_config_free. */
struct tokex_config {
    char *token_endpoint; /* NULL: discovered from `issuer` */
    char *issuer;         /* where token_endpoint is discovered; NULL when it is given */
    char *client_id;
    char *client_secret_file;
    char *client_secret; /* the file's content, trimmed; never logged */
    enum tokex_auth auth_method;
    char *resource;             /* RFC 8707 resource; NULL (and no audience): the backend's URL */
    char *scope;                /* space-separated; NULL: none asked for */
    char *requested_token_type; /* default TOKEX_TYPE_ACCESS_TOKEN */
    uint64_t timeout_ms;        /* the whole round trip (5s; 100ms to 30s) */
    uint64_t refresh_before_ms; /* a cached token is replaced this long before it expires (30s) */
    uint64_t discovery_ttl_ms;  /* discovered token_endpoint kept this long (1h) */
};

/*
 * Parses the token-exchange keys of routes[i].inject (node: the inject map; path:
 * "routes[0].inject"). `audience` is parsed by the caller (shared with mode jwt). Returns 0
 * with *out set, or -1 with err. Reads client_secret_file.
 */
int tokex_config_parse(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                       struct tokex_config **out, struct cfg_error *err);
void tokex_config_free(struct tokex_config *tc);
/* The keys only this mode takes (NULL-terminated), so other modes can refuse them. */
extern const char *const tokex_keys[];

/*
 * The injection for one request (routing layer, on the request's thread): a cached token is
 * added as Authorization: Bearer at once (GW_PASS); otherwise an exchange is queued and
 * GW_ASYNC returned: its verdict comes through gw_pipeline_resume, with the header added or
 * `out` filled. Any failure is a denial (out filled, reason routing.token_exchange_failed or
 * routing.no_identity), never a pass without the header.
 */
int tokex_apply(struct gw_request *req, const struct gw_route_inject *ri,
                const struct gw_backend *be, struct gw_decision *out);

/* Stops the threads (started on first use) and drops the cache; after the workers ended. */
void tokex_stop(void);
void tokex_cache_flush(void);
/* toolgate_token_exchange_* families for GET /metrics. */
void tokex_metrics(struct gw_metrics_out *out);

/* ---- the provider's answer (tokex_response.c) ------------------------------------------- */

enum tokex_result {
    TOKEX_OK = 0,
    TOKEX_E_REFUSED = -1,     /* an OAuth error answer (invalid_grant, ...) */
    TOKEX_E_MALFORMED = -2,   /* not an answer toolgate can use: shape, type, size */
    TOKEX_E_UNAVAILABLE = -3, /* 5xx, connection failure, timeout, discovery failure */
    TOKEX_E_BUSY = -4,        /* too many exchanges queued */
    TOKEX_E_INTERNAL = -5,
};

struct tokex_answer {
    char *access_token;              /* malloc'd; NULL unless TOKEX_OK */
    int64_t expires_in;              /* seconds; 0 when the answer did not say */
    char error[TOKEX_MAX_ERROR + 1]; /* the OAuth error code on TOKEX_E_REFUSED */
};

/*
 * Reads the token endpoint's answer (HTTP status, body of len bytes, not NUL-terminated).
 * A 200 must be a JSON object (duplicate keys refused) with an access_token of at most
 * TOKEX_MAX_TOKEN characters of the RFC 6750 b64token alphabet, token_type Bearer (any case),
 * issued_token_type equal to want_type, and expires_in absent or a positive integer of at
 * most a year (a string of digits is taken too). A 400/401/403 with an RFC 6749 error code is
 * TOKEX_E_REFUSED (the code copied); a 5xx is TOKEX_E_UNAVAILABLE; anything else, or a body
 * over TOKEX_MAX_RESPONSE, is TOKEX_E_MALFORMED. why gets a sentence naming no token.
 */
int tokex_response_parse(long status, const char *body, size_t len, const char *want_type,
                         struct tokex_answer *out, char *why, size_t whylen);
void tokex_answer_clear(struct tokex_answer *a);

#endif
