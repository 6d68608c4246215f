/*
 * stream_order: a session's GET stream reaches the backend before the POSTs that follow it.
 *
 * A client that opens its standalone GET stream and then POSTs expects what the backend sends
 * on that stream (elicitation, sampling, roots requests, notifications) to arrive. When the
 * GET's way through the layers takes longer than the POST's (another worker, a token not yet
 * cached), the POST can reach the backend first and the backend, finding no stream open, sends
 * nowhere or drops what it had to say. So a GET on its way upstream is noted here, and a POST
 * of the same session (and the same credentials) waits until the GET's answer head has come
 * back from the backend, bounded by STREAM_ORDER_MAX_WAIT_MS from the GET's arrival: a backend
 * that holds back its head until the first event costs each following POST no more than that.
 *
 * Process-wide (a session's GET and POST often land on different workers), under a mutex; a
 * bounded table (STREAM_ORDER_SLOTS): when it is full a GET is not noted and ordering falls
 * back to what the network gives.
 */
#ifndef GW_CORE_STREAM_ORDER_H
#define GW_CORE_STREAM_ORDER_H

#include <stddef.h>
#include <stdint.h>

#define STREAM_ORDER_SLOTS 1024
#define STREAM_ORDER_MAX_WAIT_MS 2000

/*
 * The key of a session's requests: the client's session id and its Authorization value (so
 * one who knows a session id but not its owner's credentials cannot delay the owner's POSTs).
 */
uint64_t stream_order_key(const char *session_id, size_t sid_len, const char *authorization,
                          size_t auth_len);

/* A GET of `key` set off for the backend at now_ns; a handle for stream_order_done (0: not noted).
 */
uint64_t stream_order_get_started(uint64_t key, uint64_t now_ns);
/* The GET's head came back, or it ended without one. Idempotent; 0 is ignored. */
void stream_order_done(uint64_t handle);
/*
 * Whether a POST of `key` should still wait at now_ns: a GET of the key is on its way and was
 * set off less than STREAM_ORDER_MAX_WAIT_MS ago. *until_ns: when the wait ends at the latest.
 */
int stream_order_pending(uint64_t key, uint64_t now_ns, uint64_t *until_ns);
/* Whether any GET is noted: when none is, no POST waits, and a POST's key need not be made
 * (hashing a bearer token of a kilobyte a byte at a time is not free). Without the lock. */
int stream_order_any(void);

#endif
