/*
 * bridge: 2026-07-28 clients in front of a session-era backend (routes[].backends[].protocol
 * names a 2025 revision).
 *
 * toolgate owns the client-facing side, as federation does: for each user and route it holds a
 * backend session of its own, opened on the user's first request (initialize with the
 * client's capabilities and info from _meta, then notifications/initialized) and reused after;
 * each stateless request goes in that session, in the backend's revision, with the envelope's
 * io.modelcontextprotocol/... keys taken out. Answers come back through the response hooks like
 * any other, with resultType added and the retired resource-not-found code (-32002) mapped to
 * -32602. server/discover is answered from the session's initialize result. A backend that
 * forgot the session (404) gets a new one and the request once more.
 *
 * What the revisions cannot say to each other is refused with an error naming them: a
 * backend's request to the client on a call's stream (elicitation, sampling, roots: the call
 * ends, relay.c), and subscriptions/listen (no stream to carry it).
 *
 * The table of backend sessions is the process's own (BRIDGE_MAX_SESSIONS, least recently
 * used evicted); several instances each open their own.
 */
#ifndef GW_CORE_BRIDGE_H
#define GW_CORE_BRIDGE_H

#include <jansson.h>

#include "core/exchange.h"

#define BRIDGE_MAX_SESSIONS 4096
/* An answer the bridge reads itself (initialize, server/discover) is read up to this size. */
#define BRIDGE_MAX_ANSWER (64 * 1024)

/* Whether the request is bridged: 2026-07-28 to a backend that serves a session-era revision. */
int bridge_applies(const struct gw_request *req);
/* Sends a bridged request (after the layers allowed it), opening the session first if need be. */
void bridge_forward(struct exchange *x, void **state);
/* A message of a bridged answer, before the response hooks (resultType, error codes). */
int bridge_on_message(struct exchange *x, json_t *msg, int *modified);
void bridge_state_free(void *state);
/* Forgets every bridged session (shutdown, tests). */
void bridge_reset(void);

/*
 * The other way (core/bridge_legacy.c): session-era clients in front of a backend that
 * serves 2026-07-28 only (protocol: 2026-07-28). toolgate answers initialize from the
 * backend's server/discover and issues the session; each request then goes statelessly with
 * the client's capabilities in its envelope and the mirrored headers.
 */
int bridge_legacy_applies(const struct gw_request *req);
void bridge_legacy_forward(struct exchange *x, void **state);
int bridge_legacy_on_message(struct exchange *x, json_t *msg, int *modified);
void bridge_legacy_state_free(void *state);

#endif
