/*
 * policy_replay: single-use ids of sealed approval states claimed in Redis, shared by every
 * instance (policy_replay.c). Not for other modules.
 */
#ifndef GW_POLICY_REPLAY_H
#define GW_POLICY_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "core/request.h"
#include "layers/policy/policy-int.h"

#define POLICY_REPLAY_FIRST 0        /* claimed now: the state's first use */
#define POLICY_REPLAY_USED 1         /* claimed before, here or on another instance */
#define POLICY_REPLAY_UNAVAILABLE -1 /* no answer, an error, a timeout: deny */

/* The longest key: prefix (64), "approval:once:", 64 hex digits. */
#define POLICY_REPLAY_KEY_MAX 160

typedef void (*policy_replay_cb)(void *arg, int outcome);

/* The key a state's id is claimed under (no raw id in Redis: a digest of it). */
void policy_replay_key(const char *prefix, const uint8_t once[16], char *out, size_t size);
/*
 * Claims once for ttl_ms on the calling worker's loop. cb runs exactly once, on that loop
 * (or before the call returns when nothing could be sent), with POLICY_REPLAY_*; never later
 * than replay_timeout. host (may be NULL) lets a worker's shutdown close the connection.
 */
void policy_replay_claim(const struct policy_approvals *a, struct uv_loop_s *loop,
                         const struct gw_request_host *host, const uint8_t once[16],
                         uint64_t ttl_ms, policy_replay_cb cb, void *arg);
/* Closes this thread's connection (tests). */
void policy_replay_thread_close(void);
/*
 * Readiness: 1 when Redis answers PING within replay_timeout on a connection of its own, else
 * 0 with a sentence in detail. At most one probe a second (lib/probe.h); blocks that long.
 */
int policy_replay_ready(const struct policy_approvals *a, char *detail, size_t len);
/* Claims that succeeded, replays refused, claims that failed (the store unavailable). */
void policy_replay_counts(uint64_t *claims, uint64_t *replays, uint64_t *errors);

#endif
