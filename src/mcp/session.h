/*
 * session: toolgate's own MCP sessions. A client never sees a backend's Mcp-Session-Id:
 * toolgate issues its own (256 random bits), maps it to the backend session(s) it stands for,
 * and binds it to the verified user and the route it was made on. An id toolgate did not
 * issue, or one that expired, was evicted or deleted, or belongs to another user or route, is
 * unknown: 404, as the specification says for a session the server does not know.
 *
 * Only hashes identify sessions in the store: SHA-256 of the id is the key, SHA-256 of
 * (issuer, NUL, subject) the owner; a dump of the store yields neither ids nor user names.
 *
 * The store is the memory table of this process by default (bounded, idle sessions expire,
 * the least recently used goes when a set is full). A module may provide another
 * (mcp_sessions_use): the limits layer does with Redis, so that sessions survive a restart
 * and every instance behind one load balancer knows them.
 */
#ifndef GW_MCP_SESSION_H
#define GW_MCP_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* The ids toolgate issues: 32 random bytes, base64url without padding. */
#define MCP_SESSION_ID_LEN 43
/* Longer ids are refused before any lookup (they are not ids any server issues). */
#define MCP_SESSION_MAX_ID 256
/* Backend sessions one client session stands for (a federated route's backends). */
#define MCP_SESSION_MAX_BACKENDS 64
/* A backend's session id is copied at most this long. */
#define MCP_SESSION_MAX_BACKEND_ID 256

/* What the client declared it can do at initialize (mcp_session.client_caps). */
#define MCP_CLIENT_ELICIT_FORM 0x01 /* elicitation (form mode): toolgate may prompt the user */
#define MCP_CLIENT_ELICIT_URL 0x02  /* elicitation in URL mode (2025-11-25) */

struct mcp_session {
    uint8_t owner[32];    /* SHA-256 of issuer NUL subject */
    unsigned client_caps; /* MCP_CLIENT_*: from the initialize that opened the session */
    char route[72];       /* the route's name */
    size_t n_backends;
    char *backends[MCP_SESSION_MAX_BACKENDS]; /* the backends' session ids; NULL: none yet */
};

/* Frees the backend ids and zeroes s. */
void mcp_session_clear(struct mcp_session *s);
/* The owner hash of a user (issuer may be "" for an unverified, anonymous caller). */
void mcp_session_owner(const char *issuer, const char *subject, uint8_t out[32]);

/* ---- the store a module may provide ---- */

/*
 * A lookup's answer: rc 0 with the encoded session (value, len: valid during the call), 1
 * when the key is unknown, -1 when the store cannot answer (fail closed). Called on the loop
 * thread the request runs on, possibly before get returns.
 */
typedef void mcp_session_get_cb(void *arg, int rc, const char *value, size_t len);

struct mcp_session_store {
    const char *name; /* "memory", "redis" */
    /* Finds the value and renews its lifetime to ttl_ms (idle expiry). */
    void (*get)(void *ctx, const char *key, uint64_t ttl_ms, void *loop, mcp_session_get_cb *cb,
                void *arg);
    /* Stores or replaces, with this lifetime (refreshed by every get). 0, or -1 (fails). */
    int (*put)(void *ctx, const char *key, const char *value, size_t len, uint64_t ttl_ms,
               void *loop);
    void (*del)(void *ctx, const char *key, void *loop);
    void *ctx;
};

/* Makes `store` the session store (NULL: the memory store again). Before requests run. */
void mcp_sessions_use(const struct mcp_session_store *store);
/* The store in use ("memory", "redis"). */
const char *mcp_sessions_store_name(void);

/*
 * Sizes the memory store (at least max_entries) and sets the idle expiry of sessions in any
 * store; drops every session of the memory store. Defaults (100000 entries, 1h) apply until
 * then. Returns 0 or -1 (memory).
 */
int mcp_session_configure(size_t max_entries, uint64_t idle_ms);
void mcp_session_shutdown(void);

/* ---- sessions ---- */

/*
 * A new session for a user on a route, standing for n_backends backend sessions (backend0,
 * may be NULL, the first's id). Writes its id (MCP_SESSION_ID_LEN + 1 bytes) into id_out.
 * `loop` is the caller's event loop (a store may send commands on it). Returns 0 or -1.
 */
int mcp_session_create(const char *issuer, const char *subject, const char *route,
                       size_t n_backends, const char *backend0, char *id_out, void *loop);
/* The same, remembering what the client declared it can do (MCP_CLIENT_*). */
int mcp_session_create_caps(const char *issuer, const char *subject, const char *route,
                            size_t n_backends, const char *backend0, unsigned client_caps,
                            char *id_out, void *loop);
/* The MCP_CLIENT_* flags of an initialize request's params.capabilities (NULL: none). */
unsigned mcp_client_caps_of(const json_t *capabilities);

/*
 * Looks a client's session id up. cb gets rc 0 and the session (valid during the call) when
 * the id is known, bound to this owner and this route; 1 when it is not (unknown, expired,
 * evicted, deleted, another user's or another route's: one answer for all, so a guess learns
 * nothing); -1 when the store cannot answer. The lookup refreshes the idle timer. The callee
 * may take the backend ids out of s (setting them NULL); the rest is freed after the call.
 */
typedef void mcp_session_lookup_cb(void *arg, int rc, struct mcp_session *s);
void mcp_session_lookup(const char *id, const uint8_t owner[32], const char *route, void *loop,
                        mcp_session_lookup_cb *cb, void *arg);

/* Replaces what id stands for (a backend's session opened or renewed). 0 or -1. */
int mcp_session_update(const char *id, const struct mcp_session *s, void *loop);
/* Ends a session (DELETE, or the backend no longer knows it). */
void mcp_session_delete(const char *id, void *loop);

/* Sessions the memory store holds now (tests, metrics). */
size_t mcp_session_count(void);
/* Live sessions the memory store dropped to make room for new ones (the table was full). */
uint64_t mcp_session_evictions(void);
/* The bytes of the memory store's table as it has grown so far (its sets, not the values). */
size_t mcp_session_table_bytes(void);

/* The encoding the stores keep (exposed for tests): JSON. Returns 0 or -1. */
int mcp_session_encode(const struct mcp_session *s, char **out, size_t *len);
int mcp_session_decode(const char *value, size_t len, struct mcp_session *s);

#endif
