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
 *
 * The parts write canonical text (RFC 8785) straight into the item the writer takes, member by
 * member, with no JSON tree between the request and the record; the JSON forms below are that
 * text parsed back, for the tools and the tests that read a record as an object.
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

struct audit_item;

/*
 * The decision record as the item audit_submit_item takes (canonical members, the indexed
 * columns): who asked for what, and what the layers decided. NULL on OOM or on a value that
 * is not UTF-8 (nothing is recorded broken).
 */
struct audit_item *audit_record_decision_item(const struct gw_request *req,
                                              const struct audit_config *ac);
/* The completion record as an item: what came back, how long each stage took. */
struct audit_item *audit_record_completion_item(const struct gw_request *req,
                                                const struct audit_config *ac,
                                                const char *result_hash);

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
