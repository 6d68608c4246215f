/*
 * audit_record: turns a request context into the two records of a call.
 *
 * Each record is built by a list of parts, one function per source of data (the request,
 * the identity, the deciding layer, the safety findings, ...). A layer that starts carrying
 * data worth recording (cost, budget, rate-limit state) adds one part function to the list
 * in audit_record.c; nothing else changes. Parts never copy a secret or a PII value: the
 * session id is hashed, arguments follow `audit.arguments`, findings carry type/path/count.
 *
 * Chain fields (seq, time, time_ns, instance, prev_hash, hash) are added by the writer.
 */
#ifndef AUDIT_RECORD_H
#define AUDIT_RECORD_H

#include <jansson.h>

#include "core/request.h"
#include "layers/audit/audit.h"

/* Per-request audit state (req->layer_state[GW_STAGE_AUDIT]). */
struct audit_req_state {
    void *result_md;   /* EVP_MD_CTX over the canonical messages sent back; NULL until one */
    unsigned messages; /* response messages hashed */
    int decision_queued;
};

/* The decision record: who asked for what, and what the layers decided. NULL on OOM. */
json_t *audit_record_decision(const struct gw_request *req, const struct audit_config *ac);
/* The completion record: what came back, how long each stage took. NULL on OOM. */
json_t *audit_record_completion(const struct gw_request *req, const struct audit_config *ac,
                                const char *result_hash);

/* "allow", "deny" or "error" for the request as decided so far. */
const char *audit_decision_name(const struct gw_request *req);

/*
 * Copy of a JSON value with every string replaced by "[REDACTED]", keeping strings that are
 * already a redaction placeholder ("[REDACTED]" or "[REDACTED:type]"). NULL on OOM, beyond
 * the canonical depth bound, or past 16384 values plus key bytes (too large to record).
 */
json_t *audit_redact_copy(const json_t *v);

#endif
