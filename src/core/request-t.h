/*
 * request-t: the contract types of the request context (types only). Every layer records what
 * it saw and decided in these, and audit and the answers read them; no layer reads another
 * layer's own structures. The core fills none of them itself.
 */
#ifndef GW_REQUEST_T_H
#define GW_REQUEST_T_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* ---- verdicts, decisions, headers ---- */
enum gw_verdict {
    GW_PASS = 0,  /* go on to the next layer */
    GW_DENY = 1,  /* stop; answer with the decision */
    GW_ASYNC = 2, /* the layer will call gw_pipeline_resume() later */
    /*
     * Response path only: this message (a notification the user may not see) does not reach
     * the client at all; the rest of the answer does.
     */
    GW_DROP = 3,
};

enum gw_http_method { GW_HTTP_OTHER = 0, GW_HTTP_GET, GW_HTTP_POST, GW_HTTP_DELETE };

/*
 * A layer's decision. On deny, `http_status` and `jsonrpc_code` say how to answer:
 *   - jsonrpc_code == 0 and http_status == 200: a tool result with isError: true (policy,
 *     limits denials the model can act on);
 *   - jsonrpc_code != 0: a JSON-RPC error with that code (e.g. -32602 for a hidden tool);
 *   - http_status 401/403: an OAuth challenge (the request's www_authenticate is set; one
 *     per request, since only the stage that denies writes it).
 */
struct gw_decision {
    enum gw_verdict verdict;
    int http_status;
    int jsonrpc_code;
    char reason_code[64];    /* stable machine code: "identity.invalid_token", "policy.no_match" */
    char reason[256];        /* short sentence for the client/model; never echoes secrets */
    char rule_id[128];       /* determining rule(s), comma-separated; empty when none */
    uint64_t retry_after_ms; /* limits: when the client may retry; 0 when not applicable */
};

struct gw_header {
    struct gw_slice name;
    struct gw_slice value;
};

/* ---- who the request acts for (filled by the identity layer) ---- */
/*
 * Who a request acts for, as verified from the bearer token. Owned by the request context
 * (freed with it). The raw token is never stored here.
 */
struct gw_identity {
    int verified;    /* 1 once the identity layer has verified a token */
    char *subject;   /* sub */
    char *issuer;    /* iss */
    char *tenant;    /* from the configured tenant claim; may be NULL */
    char *client_id; /* azp / client_id: which LLM runtime presented the token */
    char **roles;    /* NULL-terminated */
    size_t n_roles;
    char **scopes; /* NULL-terminated */
    size_t n_scopes;
    int64_t expires_at;  /* exp, seconds since epoch */
    char token_hash[65]; /* hex SHA-256 of the token: cache key, never logged */
};

/* ---- what was found in the messages (filled by the safety layer; values never kept) ---- */
enum gw_pii_action { GW_PII_LOG = 0, GW_PII_REDACT, GW_PII_BLOCK };
enum gw_direction { GW_DIR_REQUEST = 0, GW_DIR_RESPONSE };

struct gw_finding {
    char type[32];  /* "ssn", "credit_card", "aws_key", custom detector name ... */
    char path[160]; /* JSON Pointer into the message: "/params/arguments/note" */
    unsigned count;
    enum gw_pii_action action;
    enum gw_direction direction;
};

#define GW_MAX_FINDINGS 64

/*
 * A message's findings. The items are allocated as they come (most calls have none, and a
 * request in flight should not carry 13 KiB of empty ones): n items at items, room for cap.
 * All zero is the empty set; gw_findings_free releases the items.
 */
struct gw_findings {
    struct gw_finding *items;
    size_t n, cap;
    size_t dropped; /* findings beyond GW_MAX_FINDINGS (or memory), counted but not itemised */
    unsigned redactions;
};

/* Room for one more item (n grows by one, the item zeroed); NULL, with dropped counted, when
 * GW_MAX_FINDINGS are held or memory ran out. */
struct gw_finding *gw_findings_push(struct gw_findings *f);
/* Releases the items; the set is empty again. */
void gw_findings_free(struct gw_findings *f);

/* ---- cost, budget and rate-limit accounting (filled by the limits layer) ---- */
/* Loop-detector flags (gw_limits_state.loop_flags). */
#define GW_LOOP_IDENTICAL 0x01      /* the same call repeated within the window */
#define GW_LOOP_NO_PROGRESS 0x02    /* the same call got the same result again and again */
#define GW_LOOP_CYCLE 0x04          /* calls repeat with a period (A,B,A,B...) */
#define GW_LOOP_SESSION_CAP 0x08    /* the session (or user, without one) made too many calls */
#define GW_LOOP_COOLDOWN 0x10       /* the user+tool is cooling down after a loop denial */
#define GW_LOOP_NEAR_IDENTICAL 0x20 /* calls the same up to their numbers got one same result */

/*
 * Per request, filled by the limits layer (req->limits). Money is in micro-units (1 unit =
 * 1,000,000). Everything is 0 when the layer did not look at the request.
 */
struct gw_limits_state {
    int governed;             /* 1 when the layer evaluated tool calls of this request */
    int64_t cost_estimated;   /* sum of the estimates of the request's tool calls */
    int64_t cost_reserved;    /* what was reserved against the budgets (0 when no budget) */
    int64_t cost_settled;     /* actual cost after the response (estimate, reported, or 0) */
    int cost_reported;        /* 1 when the backend reported the actual cost */
    int settled;              /* 1 once the reservation was settled or refunded */
    int refunded;             /* 1 when the reservation was given back (call failed) */
    int64_t budget_remaining; /* tightest budget's remaining after reservation; -1 when none */
    char budget_name[48];     /* the tightest (or the denying) budget */
    int64_t rate_remaining;   /* tightest rate limit's remaining after this call; -1 none */
    char rate_name[48];       /* the tightest (or the denying) rate limit */
    uint64_t retry_after_ms;  /* when denied by a rate limit, budget period or cool-down */
    unsigned loop_flags;      /* GW_LOOP_* raised for this call */
    int loop_action;          /* 0 none, 1 warned, 2 denied */
    int store_fallback;       /* 1 when Redis was unavailable and local limits decided */
    char store[8];            /* "memory" or "redis" */
};

/* ---- human approval of a call (filled by the policy layer; audit records it) ---- */
/*
 * A permit rule asked for approval (approval.md). Everything is empty when none was asked.
 * Never an argument value: the call is named by its tool and a digest of its arguments.
 */
/* Room for an approver's name, "user:" + subject + "@" + issuer, with its NUL. */
#define GW_APPROVER_MAX 400

struct gw_approval_record {
    int asked;         /* 1 when a rule asked for approval of this call */
    char by[72];       /* "user" or "role:<role>" */
    char rule_id[65];  /* the rule that asked */
    char decision[16]; /* approved, declined, cancelled, timeout, unavailable, refused, pending */
    char via[16];      /* elicitation, request_state, admin, cached (an earlier approval) */
    /* "user" (the user the call acts for), the admin token's name, or "user:<sub>@<iss>" */
    char approver[GW_APPROVER_MAX];
    int64_t decided_at_ms; /* Unix time of the decision in ms (the earlier one, when cached) */
    char reference[40];    /* the id an approver or the user quotes (role approvals) */
    char digest[20];       /* "sha256:" and 12 hex digits of the call's digest */
};

#endif
