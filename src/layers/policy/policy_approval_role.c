/*
 * policy_approval_role: approval by someone holding a role (`by: "role:<r>"`), given through
 * the admin API (GET /admin/api/approvals, POST /admin/api/approvals/<id>).
 *
 * A call that needs it files a request in a bounded table of this process, named by a
 * reference ("apr-" and 16 hex digits) the user can quote, and waits at most
 * policy.approvals.role_timeout on its own thread (a timer on its loop). An approver's
 * decision reaches the waiting call through the request's host (posted to its thread while
 * the table's lock is held and the waiter still listed). A call that stops waiting is denied
 * with the reference; the request stays open to approvers for reference_ttl, and once
 * approved the same call goes through on its next try (the approval is kept for the rule's
 * ttl). The same call filed again finds its open request rather than filing another.
 *
 * Who approves is policy.approvals.approvers. With `admin` (the default) the holder of the
 * admin credential decides: the admin API has one credential, so it stands for every role and
 * the role only says whom to ask. With `token` the decision also carries the approver's own
 * OAuth token (X-Approver-Token), verified by the identity layer of the generation the admin
 * API answers from; the verified person must hold the request's role and must not be the user
 * who asked, and is the approver recorded.
 */
#include "layers/policy/policy_approval.h"
#include "core/pipeline.h"
#include "lib/digest.h"
#include "lib/timeutil.h"
#include "mcp/session.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

enum pending_state { PENDING_OPEN = 0, PENDING_APPROVED, PENDING_DENIED };

struct waiter {
    struct gw_request *req;
    struct gw_request_host host;
    uv_timer_t timer;
    uint64_t token;
    struct policy_approval ap;
    struct approval_call call;
    int done;
};

struct pending {
    int used;
    char ref[24];
    struct approval_call call;
    char subject[129];
    char role[POLICY_MAX_ROLE + 1];
    char rule[65];
    uint64_t ttl_ms;
    uint64_t created_ms, expires_ms;
    enum pending_state state;
    char approver[GW_APPROVER_MAX];
    uint64_t decided_ms;
    struct waiter *waiter; /* the call waiting now, or NULL */
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pending table[POLICY_APPROVAL_PENDING];
static uint64_t next_token = 1;

/* The open or decided request for this call, else a free or expired slot, else NULL. Locked. */
static struct pending *find_slot(const struct approval_call *c, uint64_t now, int *found)
{
    struct pending *spare = NULL;
    *found = 0;
    for (size_t i = 0; i < POLICY_APPROVAL_PENDING; i++) {
        struct pending *p = &table[i];
        if (p->used && p->expires_ms <= now && !p->waiter)
            p->used = 0;
        if (p->used && memcmp(p->call.user, c->user, 32) == 0 &&
            memcmp(p->call.digest, c->digest, 32) == 0) {
            *found = 1;
            return p;
        }
        if (!p->used && !spare)
            spare = p;
    }
    return spare;
}

static struct pending *find_ref(const char *ref, uint64_t now)
{
    for (size_t i = 0; i < POLICY_APPROVAL_PENDING; i++)
        if (table[i].used && table[i].expires_ms > now && strcmp(table[i].ref, ref) == 0)
            return &table[i];
    return NULL;
}

static void fill_decision(struct gw_request *req, const struct pending *p,
                          const struct policy_approval *ap, const char *decision,
                          struct gw_decision *out, int *verdict)
{
    struct gw_approval_record *r = &req->approval;
    snprintf(r->decision, sizeof r->decision, "%s", decision);
    snprintf(r->via, sizeof r->via, "admin");
    snprintf(r->reference, sizeof r->reference, "%s", p->ref);
    snprintf(r->approver, sizeof r->approver, "%s", p->approver);
    r->decided_at_ms = (int64_t)(p->decided_ms ? p->decided_ms : approval_now_ms());
    char reason[2 * sizeof out->reason];
    if (strcmp(decision, "approved") == 0) {
        out->verdict = GW_PASS;
        snprintf(out->reason_code, sizeof out->reason_code, "policy.permit");
        snprintf(out->rule_id, sizeof out->rule_id, "%s", ap->rule_id);
        snprintf(out->reason, sizeof out->reason, "Allowed by policy, approved by %.60s.",
                 p->approver);
        *verdict = GW_PASS;
        return;
    }
    if (strcmp(decision, "declined") == 0) {
        snprintf(reason, sizeof reason,
                 "An approver with the role %.64s denied this call (reference %s, rule %.64s). "
                 "Do not retry it.",
                 ap->role, p->ref, ap->rule_id);
        gw_decision_deny(out, 200, 0, "policy.approval_declined", reason);
    } else {
        snprintf(reason, sizeof reason,
                 "This call needs the approval of someone with the role %.64s (rule %.64s); none "
                 "has been given yet. Ask an approver to approve reference %s, then call the "
                 "tool again with the same arguments.",
                 ap->role, ap->rule_id, p->ref);
        gw_decision_deny(out, 200, 0, "policy.approval_pending", reason);
    }
    snprintf(out->rule_id, sizeof out->rule_id, "%s", ap->rule_id);
    *verdict = GW_DENY;
}

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

/* On the request's thread: the wait ends (a decision, or the bound). */
static void end_wait(struct waiter *w, int timed_out)
{
    if (w->done)
        return;
    w->done = 1;
    uv_timer_stop(&w->timer);
    struct gw_request *req = w->req;
    struct gw_decision *out = &req->decision[GW_STAGE_POLICY];
    int verdict = GW_DENY;
    pthread_mutex_lock(&table_lock);
    struct pending *p = NULL;
    for (size_t i = 0; i < POLICY_APPROVAL_PENDING && !p; i++)
        if (table[i].used && table[i].waiter == w)
            p = &table[i];
    if (p) {
        p->waiter = NULL;
        const char *d = p->state == PENDING_APPROVED ? "approved"
                        : p->state == PENDING_DENIED ? "declined"
                                                     : "pending";
        fill_decision(req, p, &w->ap, d, out, &verdict);
        if (timed_out && p->state == PENDING_OPEN)
            snprintf(req->approval.decision, sizeof req->approval.decision, "timeout");
    } else {
        gw_decision_deny(out, 200, 0, "policy.approval_unavailable",
                         "The approval request of this call was lost: it is denied.");
    }
    pthread_mutex_unlock(&table_lock);
    uv_close((uv_handle_t *)&w->timer, timer_closed);
    gw_pipeline_resume(req, verdict);
}

static void on_timeout(uv_timer_t *t)
{
    end_wait(t->data, 1);
}

/* Posted by the admin thread: the token says which wait it is for. */
struct decided_note {
    struct waiter *w;
    uint64_t token;
};

static void on_decided(void *arg)
{
    struct decided_note *n = arg;
    struct waiter *w = n->w;
    int ok = 0;
    pthread_mutex_lock(&table_lock);
    for (size_t i = 0; i < POLICY_APPROVAL_PENDING && !ok; i++)
        ok = table[i].used && table[i].waiter == w && w->token == n->token;
    pthread_mutex_unlock(&table_lock);
    free(n);
    if (ok)
        end_wait(w, 0);
}

int approval_role_check(struct gw_request *req, const struct approval_call *c,
                        const struct policy_approval *ap, struct gw_decision *out)
{
    const struct policy_config *pc = policy_config_of(req->cfg);
    uint64_t now = approval_now_ms();
    int found = 0, verdict = GW_DENY;
    struct waiter *w = NULL;
    uv_loop_t *loop = gw_request_loop(req);
    pthread_mutex_lock(&table_lock);
    struct pending *p = find_slot(c, now, &found);
    if (!p) {
        pthread_mutex_unlock(&table_lock);
        snprintf(req->approval.decision, sizeof req->approval.decision, "unavailable");
        gw_decision_deny(out, 200, 0, "policy.approval_unavailable",
                         "Too many calls are waiting for approval now; this one is denied.");
        snprintf(out->rule_id, sizeof out->rule_id, "%s", ap->rule_id);
        return GW_DENY;
    }
    if (!found) {
        uint8_t raw[8];
        memset(p, 0, sizeof *p);
        if (gw_random_bytes(raw, sizeof raw) != 0)
            memcpy(raw, &now, sizeof raw);
        memcpy(p->ref, "apr-", 4);
        gw_hex(raw, sizeof raw, p->ref + 4);
        p->used = 1;
        p->call = *c;
        snprintf(p->subject, sizeof p->subject, "%s",
                 req->identity.subject ? req->identity.subject : "");
        snprintf(p->role, sizeof p->role, "%s", ap->role);
        snprintf(p->rule, sizeof p->rule, "%s", ap->rule_id);
        p->ttl_ms = ap->ttl_ms;
        p->created_ms = now;
        p->expires_ms = now + pc->approvals.reference_ttl_ms;
    }
    if (p->state != PENDING_OPEN || p->waiter || pc->approvals.role_timeout_ms == 0 || !loop ||
        !(w = calloc(1, sizeof *w))) {
        /* Decided already (denied; an approval would have been found kept), or no wait. */
        fill_decision(req, p, ap, p->state == PENDING_DENIED ? "declined" : "pending", out,
                      &verdict);
        pthread_mutex_unlock(&table_lock);
        return verdict;
    }
    w->req = req;
    w->host = req->host;
    w->ap = *ap;
    w->call = *c;
    w->token = next_token++;
    p->waiter = w;
    snprintf(req->approval.reference, sizeof req->approval.reference, "%s", p->ref);
    pthread_mutex_unlock(&table_lock);
    /* Filled now for a pass; whatever ends the wait overwrites it. */
    out->verdict = GW_PASS;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_timeout, pc->approvals.role_timeout_ms, 0);
    return GW_ASYNC;
}

/* ---- the admin API ---- */

static const char *state_name(enum pending_state s)
{
    return s == PENDING_APPROVED ? "approved" : s == PENDING_DENIED ? "denied" : "pending";
}

static json_t *describe(const struct pending *p)
{
    char digest[20];
    approval_digest_text(p->call.digest, digest);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:b}", "id", p->ref,
                          "state", state_name(p->state), "user", p->subject, "tool", p->call.tool,
                          "arguments", p->call.summary, "role", p->role, "rule", p->rule,
                          "created_ms", (json_int_t)p->created_ms, "expires_ms",
                          (json_int_t)p->expires_ms, "waiting", p->waiter != NULL);
    if (o)
        json_object_set_new(o, "digest", json_string(digest));
    if (o && p->state != PENDING_OPEN) {
        json_object_set_new(o, "approver", json_string(p->approver));
        json_object_set_new(o, "decided_ms", json_integer((json_int_t)p->decided_ms));
    }
    return o;
}

int policy_admin_api(const struct gw_config *cfg, const char *topic, const json_t *params,
                     json_t **out)
{
    if (strcmp(topic, "approvals") != 0)
        return 0;
    const char *state = json_string_value(json_object_get(params, "state"));
    const char *role = json_string_value(json_object_get(params, "role"));
    if (state && strcmp(state, "pending") && strcmp(state, "approved") && strcmp(state, "denied") &&
        strcmp(state, "all")) {
        *out = json_pack("{s:s}", "error", "state is pending, approved, denied or all");
        return 400;
    }
    json_t *list = json_array();
    uint64_t now = approval_now_ms();
    pthread_mutex_lock(&table_lock);
    for (size_t i = 0; list && i < POLICY_APPROVAL_PENDING; i++) {
        const struct pending *p = &table[i];
        if (!p->used || p->expires_ms <= now)
            continue;
        if ((!state && p->state != PENDING_OPEN) ||
            (state && strcmp(state, "all") != 0 && strcmp(state, state_name(p->state)) != 0))
            continue;
        if (role && strcmp(role, p->role) != 0)
            continue;
        json_array_append_new(list, describe(p));
    }
    pthread_mutex_unlock(&table_lock);
    const struct policy_config *pc = policy_config_of(cfg);
    const char *approvers =
        pc && pc->approvals.approvers == POLICY_APPROVERS_TOKEN ? "token" : "admin";
    *out = list ? json_pack("{s:o, s:s}", "approvals", list, "approvers", approvers) : NULL;
    return *out ? 200 : 503;
}

static int holds_role(const struct gw_identity *id, const char *role)
{
    for (char **r = id->roles; r && *r; r++)
        if (strcmp(*r, role) == 0)
            return 1;
    return 0;
}

/*
 * With approvers: token, the person behind the decision: a verified token is required (401
 * otherwise, with why). Fills name with "user:<sub>@<iss>" and owner with the hash the calls
 * of that user are filed under. Returns 0, or the status with *out set.
 */
static int approver_person(const struct gw_admin_actor *actor, char *name, size_t size,
                           uint8_t owner[32], json_t **out)
{
    const char *why = NULL;
    int status = 401;
    switch (actor ? actor->person : GW_PERSON_NONE) {
    case GW_PERSON_VERIFIED:
        break;
    case GW_PERSON_NONE:
        why = "approvers decide with their own OAuth access token: send it in the header "
              "X-Approver-Token";
        break;
    case GW_PERSON_MALFORMED:
        why = "send exactly one X-Approver-Token header with the approver's access token "
              "(at most 8 KiB)";
        break;
    case GW_PERSON_UNAVAILABLE:
        why = "the identity provider's keys are not available to verify the approver's token; "
              "retry later";
        status = 503;
        break;
    case GW_PERSON_REFUSED:
    default:
        why = "the approver's access token is invalid or expired";
        break;
    }
    const struct gw_identity *id = actor ? actor->identity : NULL;
    if (!why && (!id || !id->subject || !id->issuer))
        why = "the approver's access token is invalid or expired";
    if (why) {
        *out = json_pack("{s:s}", "error", why);
        return status;
    }
    int n = snprintf(name, size, "user:%s@%s", id->subject, id->issuer);
    if (n < 0 || (size_t)n >= size) {
        *out = json_pack("{s:s}", "error",
                         "the approver's subject and issuer are too long to be recorded");
        return 403;
    }
    mcp_session_owner(id->issuer, id->subject, owner);
    return 0;
}

int policy_admin_action(const struct gw_config *cfg, const char *topic, const char *id,
                        const json_t *body, const struct gw_admin_actor *actor, json_t **out)
{
    if (strcmp(topic, "approvals") != 0)
        return 0;
    const struct policy_config *pc = policy_config_of(cfg);
    const char *decision = json_string_value(json_object_get(body, "decision"));
    if (!decision || (strcmp(decision, "approve") != 0 && strcmp(decision, "deny") != 0)) {
        *out = json_pack("{s:s}", "error", "the body is {\"decision\": \"approve\" | \"deny\"}");
        return 400;
    }
    if (!pc) {
        *out = json_pack("{s:s}", "error", "no policy section: nothing awaits approval");
        return 404;
    }
    char approver[GW_APPROVER_MAX];
    uint8_t owner[32] = {0};
    int by_person = pc->approvals.approvers == POLICY_APPROVERS_TOKEN;
    if (by_person) {
        int rc = approver_person(actor, approver, sizeof approver, owner, out);
        if (rc != 0)
            return *out ? rc : 503;
    } else {
        snprintf(approver, sizeof approver, "%s",
                 actor && actor->credential ? actor->credential : "admin");
    }
    uint64_t now = approval_now_ms();
    int status = 200;
    pthread_mutex_lock(&table_lock);
    struct pending *p = find_ref(id, now);
    if (!p) {
        status = 404;
        *out = json_pack("{s:s}", "error",
                         "no open approval request has this id (it may have "
                         "expired)");
    } else if (p->state != PENDING_OPEN) {
        status = 409;
        *out = json_pack("{s:s, s:o}", "error", "this request was decided already", "approval",
                         describe(p));
    } else if (by_person && !holds_role(actor->identity, p->role)) {
        status = 403;
        *out = json_pack("{s:s, s:s}", "error",
                         "the approver does not hold the role this request needs", "role", p->role);
    } else if (by_person && memcmp(owner, p->call.user, sizeof owner) == 0) {
        status = 403;
        *out = json_pack("{s:s}", "error", "the user who made the call cannot decide its approval");
    } else {
        p->state = strcmp(decision, "approve") == 0 ? PENDING_APPROVED : PENDING_DENIED;
        snprintf(p->approver, sizeof p->approver, "%s", approver);
        p->decided_ms = now;
        if (p->state == PENDING_APPROVED) {
            struct gw_approval_record rec = {.asked = 1, .decided_at_ms = (int64_t)now};
            snprintf(rec.decision, sizeof rec.decision, "approved");
            snprintf(rec.via, sizeof rec.via, "admin");
            snprintf(rec.approver, sizeof rec.approver, "%s", p->approver);
            snprintf(rec.reference, sizeof rec.reference, "%s", p->ref);
            approval_cache_put(&p->call, now + p->ttl_ms, &rec);
        }
        struct decided_note *n = p->waiter ? malloc(sizeof *n) : NULL;
        if (n) {
            n->w = p->waiter;
            n->token = p->waiter->token;
            if (gw_host_post(&p->waiter->host, on_decided, n) != 0)
                free(n);
        }
        *out = json_pack("{s:o}", "approval", describe(p));
    }
    pthread_mutex_unlock(&table_lock);
    return *out ? status : 503;
}

void approval_role_reset(void)
{
    pthread_mutex_lock(&table_lock);
    for (size_t i = 0; i < POLICY_APPROVAL_PENDING; i++)
        if (!table[i].waiter)
            memset(&table[i], 0, sizeof table[i]);
    pthread_mutex_unlock(&table_lock);
}
