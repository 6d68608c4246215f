/*
 * policy_approval: what the approval files of the policy layer share (policy_approval.c asks
 * users and keeps approvals; policy_approval_role.c keeps the approvers' queue). Not for other
 * modules.
 */
#ifndef GW_POLICY_APPROVAL_H
#define GW_POLICY_APPROVAL_H

#include <jansson.h>
#include <stdint.h>

#include "core/module.h"
#include "core/request.h"
#include "layers/policy/policy-int.h"

/* Approvals kept (user, call) and single-use state ids remembered, each at most. */
#define POLICY_APPROVAL_CACHE 8192
#define POLICY_APPROVAL_PENDING 1024
/* The text shown for a call's arguments is at most this long. */
#define POLICY_APPROVAL_SUMMARY 480

/* What identifies one call for approval: who, and the call's digest. */
struct approval_call {
    uint8_t user[32];   /* SHA-256 of issuer NUL subject */
    uint8_t digest[32]; /* route, method, tool, canonical arguments, rule */
    char tool[129];     /* for people; "" when the safety layer found something in it */
    char summary[POLICY_APPROVAL_SUMMARY + 1]; /* the arguments, PII masked */
};

/* Fills c for the request's call (m) under rule ap. Returns 0, or -1 (memory). */
int approval_call_of(const struct gw_request *req, const struct mcp_message *m,
                     const struct policy_approval *ap, struct approval_call *c);

/* The approvals kept: 1 and *rec filled (via, approver, time) when (user, digest) is approved. */
int approval_cache_find(const struct approval_call *c, uint64_t now_ms,
                        struct gw_approval_record *rec);
void approval_cache_put(const struct approval_call *c, uint64_t until_ms,
                        const struct gw_approval_record *rec);
/* Forgets every approval, pending request and remembered state id (tests). */
void policy_approval_reset(void);
void approval_role_reset(void);

uint64_t approval_now_ms(void);
/* Writes "sha256:" and 12 hex digits of d into out (20 bytes). */
void approval_digest_text(const uint8_t d[32], char out[20]);

/* by: role:<r> (policy_approval_role.c). */
int approval_role_check(struct gw_request *req, const struct approval_call *c,
                        const struct policy_approval *ap, struct gw_decision *out);
/* The admin API's topic "approvals" (GET) and its decisions (POST .../<id>). */
int policy_admin_api(const struct gw_config *cfg, const char *topic, const json_t *params,
                     json_t **out);
int policy_admin_action(const struct gw_config *cfg, const char *topic, const char *id,
                        const json_t *body, const struct gw_admin_actor *actor, json_t **out);

#endif
