/*
 * policy_approval: a permit rule's `approval`, asked for and kept (approval.md).
 *
 * A call is named for approval by who makes it and a digest of the call itself (route,
 * method, tool, canonical arguments, the rule), never by argument values. An approval is kept
 * for the rule's ttl in a bounded table of this process, so the same call by the same user
 * goes through again without a prompt.
 *
 *   by: user, session era   toolgate prompts the user with elicitation/create on the call's
 *                           own stream (core/ask.h), when the client declared elicitation;
 *   by: user, 2026-07-28    the call is answered with an input_required result carrying the
 *                           prompt and a sealed requestState (policy_seal.h); the retry with
 *                           the state and the user's answer goes through, once;
 *   by: role:<r>            an approver decides through the admin API
 *                           (policy_approval_role.c).
 */
#include "layers/policy/policy_approval.h"
#include "core/ask.h"
#include "core/pipeline.h"
#include "layers/policy/policy_replay.h"
#include "layers/policy/policy_seal.h"
#include "lib/digest.h"
#include "lib/log.h"
#include "lib/timeutil.h"
#include "mcp/session.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The key of an answer a 2026-07-28 client gives toolgate's question (inputResponses). */
#define INPUT_KEY "toolgate.approval"

/* ---- configuration ---- */

/* replay_store: memory, or "redis://HOST:PORT" (no credentials, path or query). */
static int parse_replay_store(const struct cfg_doc *doc, const struct cfg_node *node,
                              const char *store, struct policy_approvals *a, struct cfg_error *err)
{
    static const char key[] = "policy.approvals.replay_store";
    const struct cfg_node *n = cfg_map_get(node, "replay_store");
    if (strcmp(store, "memory") == 0)
        return 0;
    if (strncmp(store, "redis://", 8) != 0)
        return cfg_errorf(err, doc, n, key,
                          "\"%s\" is not a replay store: write memory or \"redis://HOST:PORT\"",
                          strchr(store, '@') ? "the value" : store);
    const char *h = store + 8;
    if (strchr(h, '@') || strchr(h, '/') || strchr(h, '?'))
        return cfg_errorf(err, doc, n, key,
                          "write redis://HOST:PORT without credentials, path or query");
    const char *colon = strrchr(h, ':');
    size_t hl = colon ? (size_t)(colon - h) : strlen(h);
    long port = 6379;
    if (colon) {
        char *end = NULL;
        errno = 0;
        port = strtol(colon + 1, &end, 10);
        if (errno || !colon[1] || *end || port < 1 || port > 65535)
            return cfg_errorf(err, doc, n, key, "the port is not a number from 1 to 65535");
    }
    if (hl == 0 || hl > 253)
        return cfg_errorf(err, doc, n, key, "the Redis host is missing");
    a->replay_host = strndup(h, hl);
    a->replay_port = (int)port;
    return a->replay_host ? 0 : cfg_errorf(err, doc, n, key, "out of memory");
}

int policy_parse_approvals(const struct cfg_doc *doc, const struct cfg_node *node,
                           struct policy_config *pc, struct cfg_error *err)
{
    static const char *const keys[] = {
        "prompt_timeout", "role_timeout",   "reference_ttl", "state_ttl", "state_key",
        "replay_store",   "replay_timeout", "replay_prefix", "approvers", NULL};
    static const char path[] = "policy.approvals";
    struct policy_approvals *a = &pc->approvals;
    a->prompt_timeout_ms = 60000;
    a->role_timeout_ms = 30000;
    a->reference_ttl_ms = 3600000;
    a->state_ttl_ms = 600000;
    a->replay_timeout_ms = 250;
    if (!(a->replay_prefix = strdup("toolgate:")))
        return cfg_errorf(err, doc, node, path, "out of memory");
    if (node && !cfg_is_null(node)) {
        char *store = NULL;
        if (cfg_expect_map(doc, node, path, err) != 0 ||
            cfg_check_keys(doc, node, path, keys, err) != 0 ||
            cfg_get_duration_ms(doc, node, path, "prompt_timeout", &a->prompt_timeout_ms, err) ||
            cfg_get_duration_ms(doc, node, path, "role_timeout", &a->role_timeout_ms, err) ||
            cfg_get_duration_ms(doc, node, path, "reference_ttl", &a->reference_ttl_ms, err) ||
            cfg_get_duration_ms(doc, node, path, "state_ttl", &a->state_ttl_ms, err) ||
            cfg_get_string(doc, node, path, "state_key", 0, &a->state_key_file, err) ||
            cfg_get_duration_ms(doc, node, path, "replay_timeout", &a->replay_timeout_ms, err) ||
            cfg_get_string(doc, node, path, "replay_prefix", 0, &a->replay_prefix, err) ||
            cfg_get_string(doc, node, path, "replay_store", 0, &store, err))
            return -1;
        int bad = store && parse_replay_store(doc, node, store, a, err) != 0;
        free(store);
        if (bad)
            return -1;
        char *approvers = NULL;
        if (cfg_get_string(doc, node, path, "approvers", 0, &approvers, err))
            return -1;
        bad = approvers && strcmp(approvers, "admin") != 0 && strcmp(approvers, "token") != 0;
        if (approvers && strcmp(approvers, "token") == 0)
            a->approvers = POLICY_APPROVERS_TOKEN;
        free(approvers);
        if (bad)
            return cfg_errorf(err, doc, cfg_map_get(node, "approvers"),
                              "policy.approvals.approvers",
                              "approvers is admin (the admin credential approves for every "
                              "role) or token (an approver's own token with the role)");
        if (a->replay_timeout_ms == 0 || a->replay_timeout_ms > 10000)
            return cfg_errorf(err, doc, cfg_map_get(node, "replay_timeout"),
                              "policy.approvals.replay_timeout",
                              "replay_timeout is more than 0 and at most 10s");
        if (!a->replay_prefix || strlen(a->replay_prefix) > 64 ||
            strpbrk(a->replay_prefix, "{} \t\r\n"))
            return cfg_errorf(err, doc, cfg_map_get(node, "replay_prefix"),
                              "policy.approvals.replay_prefix",
                              "replay_prefix is at most 64 bytes, without braces or whitespace");
        if (a->prompt_timeout_ms < 1000 || a->prompt_timeout_ms > 600000)
            return cfg_errorf(err, doc, node, "policy.approvals.prompt_timeout",
                              "prompt_timeout is between 1s and 10m");
        if (a->role_timeout_ms > 600000)
            return cfg_errorf(err, doc, node, "policy.approvals.role_timeout",
                              "role_timeout is at most 10m (0: the call does not wait)");
        if (a->reference_ttl_ms < 60000 || a->reference_ttl_ms > 7 * 86400000ull)
            return cfg_errorf(err, doc, node, "policy.approvals.reference_ttl",
                              "reference_ttl is between 1m and 7d");
        if (a->state_ttl_ms < 10000 || a->state_ttl_ms > 3600000)
            return cfg_errorf(err, doc, node, "policy.approvals.state_ttl",
                              "state_ttl is between 10s and 1h");
    }
    if (!a->state_key_file)
        return gw_random_bytes(a->state_key, sizeof a->state_key) == 0
                   ? 0
                   : cfg_errorf(err, doc, node, path, "no randomness for the sealing key");
    char *resolved = cfg_resolve_path(doc ? doc->name : NULL, a->state_key_file);
    char *text = NULL;
    size_t len = 0;
    struct cfg_error ferr = {0};
    int rc = 0;
    if (!resolved || cfg_read_file(resolved, 4096, &text, &len, &ferr) != 0)
        rc = cfg_errorf(err, doc, cfg_map_get(node, "state_key"), "policy.approvals.state_key",
                        "cannot read the sealing key file \"%s\"", a->state_key_file);
    else if (policy_seal_key_derive((const uint8_t *)text, len, a->state_key) != 0)
        rc = cfg_errorf(err, doc, cfg_map_get(node, "state_key"), "policy.approvals.state_key",
                        "the sealing key file \"%s\" holds fewer than 32 bytes; write 32 or more "
                        "random bytes (openssl rand -base64 48)",
                        a->state_key_file);
    if (text)
        OPENSSL_cleanse(text, len);
    free(text);
    free(resolved);
    return rc;
}

/* ---- naming a call ---- */

uint64_t approval_now_ms(void)
{
    return gw_now_ns() / 1000000ull;
}

void approval_digest_text(const uint8_t d[32], char out[20])
{
    memcpy(out, "sha256:", 7);
    gw_hex(d, 6, out + 7);
}

/* A JSON Pointer token for key (RFC 6901 escapes) into out; 0, or -1 when it does not fit. */
static int pointer_token(const char *key, char *out, size_t size)
{
    size_t n = 0;
    for (const char *c = key; *c; c++) {
        const char *e = *c == '~' ? "~0" : *c == '/' ? "~1" : NULL;
        size_t el = e ? 2 : 1;
        if (n + el + 1 > size)
            return -1;
        memcpy(out + n, e ? e : c, el);
        n += el;
    }
    out[n] = '\0';
    return 0;
}

/* Whether the safety layer found something at or under /params/arguments/<key>. */
static int key_has_finding(const struct gw_request *req, const char *key)
{
    static const char base[] = "/params/arguments";
    char tok[200];
    if (req->findings.dropped || pointer_token(key, tok, sizeof tok) != 0)
        return 1;
    for (size_t i = 0; i < req->findings.n && i < GW_MAX_FINDINGS; i++) {
        const struct gw_finding *f = &req->findings.items[i];
        if (f->direction != GW_DIR_REQUEST)
            continue;
        const char *p = f->path;
        size_t bl = sizeof base - 1, tl = strlen(tok);
        if (strncmp(p, base, bl) != 0 || (p[bl] != '/' && p[bl] != '\0'))
            continue;
        if (p[bl] == '\0' || (strncmp(p + bl + 1, tok, tl) == 0 &&
                              (p[bl + 1 + tl] == '/' || p[bl + 1 + tl] == '\0')))
            return 1;
    }
    return 0;
}

/* Appends at most max bytes of s, not splitting a UTF-8 sequence. */
static void append_cut(struct gw_buf *b, const char *s, size_t len, size_t max)
{
    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
            len--;
        gw_buf_append(b, s, len);
        gw_buf_append(b, "...", 3);
        return;
    }
    gw_buf_append(b, s, len);
}

/* The arguments for people: each as key=value, cut short, a value with PII masked. */
static void summarize(const struct gw_request *req, const json_t *args, char *out, size_t size)
{
    struct gw_buf b = {0};
    const char *key;
    const json_t *v;
    size_t shown = 0;
    if (!json_is_object(args) || json_object_size(args) == 0)
        gw_buf_append(&b, "(none)", 6);
    json_object_foreach((json_t *)args, key, v)
    {
        if (shown == 8) {
            gw_buf_printf(&b, ", and %zu more", json_object_size(args) - shown);
            break;
        }
        if (shown++)
            gw_buf_append(&b, ", ", 2);
        append_cut(&b, key, strlen(key), 40);
        gw_buf_append(&b, "=", 1);
        if (key_has_finding(req, key)) {
            gw_buf_append(&b, "[withheld: sensitive]", 21);
        } else if (json_is_object(v) || json_is_array(v)) {
            gw_buf_append(&b, json_is_object(v) ? "{...}" : "[...]", 5);
        } else {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            if (s)
                append_cut(&b, s, strlen(s), 60);
            free(s);
        }
    }
    size_t n = b.len < size - 1 ? b.len : size - 1;
    while (n > 0 && n < b.len && ((unsigned char)b.data[n] & 0xc0) == 0x80)
        n--;
    memcpy(out, b.data ? b.data : "", n);
    out[n] = '\0';
    gw_buf_free(&b);
}

int approval_call_of(const struct gw_request *req, const struct mcp_message *m,
                     const struct policy_approval *ap, struct approval_call *c)
{
    memset(c, 0, sizeof *c);
    mcp_session_owner(req->identity.verified ? req->identity.issuer : "", req->identity.subject,
                      c->user);
    char *args = m->arguments ? json_dumps(m->arguments,
                                           JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17))
                              : strdup("{}");
    if (!args)
        return -1;
    struct gw_sha256_ctx h;
    const char *parts[] = {"toolgate approval v1",
                           req->route && req->route->name ? req->route->name : "",
                           m->method ? m->method : "",
                           m->target ? m->target : "",
                           args,
                           ap->rule_id};
    gw_sha256_init(&h);
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        gw_sha256_update(&h, parts[i], strlen(parts[i]) + 1);
    gw_sha256_final(&h, c->digest);
    free(args);
    if (!gw_request_target_has_finding(req) && m->target)
        snprintf(c->tool, sizeof c->tool, "%.128s", m->target);
    summarize(req, m->arguments, c->summary, sizeof c->summary);
    return 0;
}

/* ---- what is kept: approvals, and state ids used once ---- */

struct kept {
    uint8_t key[32];
    uint64_t until_ms;
    struct gw_approval_record rec;
};

static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kept approvals[POLICY_APPROVAL_CACHE];
static struct kept used_states[POLICY_APPROVAL_CACHE];

static void kept_key(const struct approval_call *c, uint8_t key[32])
{
    uint8_t both[64];
    memcpy(both, c->user, 32);
    memcpy(both + 32, c->digest, 32);
    gw_sha256(both, sizeof both, key);
}

/* The slot of key, else a free or expired one, else the one expiring first. Locked. */
static struct kept *kept_slot(struct kept *t, const uint8_t key[32], uint64_t now, int *found)
{
    struct kept *spare = NULL;
    *found = 0;
    for (size_t i = 0; i < POLICY_APPROVAL_CACHE; i++) {
        if (t[i].until_ms > now && memcmp(t[i].key, key, 32) == 0) {
            *found = 1;
            return &t[i];
        }
        if (!spare || t[i].until_ms < spare->until_ms)
            spare = &t[i];
    }
    return spare;
}

int approval_cache_find(const struct approval_call *c, uint64_t now_ms,
                        struct gw_approval_record *rec)
{
    uint8_t key[32];
    int found;
    kept_key(c, key);
    pthread_mutex_lock(&kept_lock);
    struct kept *k = kept_slot(approvals, key, now_ms, &found);
    if (found)
        *rec = k->rec;
    pthread_mutex_unlock(&kept_lock);
    return found;
}

void approval_cache_put(const struct approval_call *c, uint64_t until_ms,
                        const struct gw_approval_record *rec)
{
    uint8_t key[32];
    int found;
    kept_key(c, key);
    pthread_mutex_lock(&kept_lock);
    struct kept *k = kept_slot(approvals, key, approval_now_ms(), &found);
    memcpy(k->key, key, 32);
    k->until_ms = until_ms;
    k->rec = *rec;
    pthread_mutex_unlock(&kept_lock);
}

/* Remembers a state's single-use id until it expires; 1 when it was used already. */
static int state_used(const uint8_t once[16], uint64_t until_ms)
{
    uint8_t key[32];
    int found;
    gw_sha256(once, 16, key);
    pthread_mutex_lock(&kept_lock);
    struct kept *k = kept_slot(used_states, key, approval_now_ms(), &found);
    if (!found) {
        memcpy(k->key, key, 32);
        k->until_ms = until_ms;
    }
    pthread_mutex_unlock(&kept_lock);
    return found;
}

void policy_approval_reset(void)
{
    pthread_mutex_lock(&kept_lock);
    memset(approvals, 0, sizeof approvals);
    memset(used_states, 0, sizeof used_states);
    pthread_mutex_unlock(&kept_lock);
    approval_role_reset();
}

/* ---- deciding ---- */

static void record(struct gw_request *req, const char *decision, const char *via,
                   const char *approver)
{
    struct gw_approval_record *r = &req->approval;
    snprintf(r->decision, sizeof r->decision, "%s", decision);
    snprintf(r->via, sizeof r->via, "%s", via ? via : "");
    snprintf(r->approver, sizeof r->approver, "%s", approver ? approver : "");
    r->decided_at_ms = (int64_t)approval_now_ms();
}

/* Denies with a reason made from fmt; every caller passes (detail, rule id). */
__attribute__((format(printf, 4, 5))) static int deny(struct gw_decision *out,
                                                      const struct policy_approval *ap,
                                                      const char *code, const char *fmt, ...)
{
    char reason[sizeof out->reason];
    va_list va;
    va_start(va, fmt);
    vsnprintf(reason, sizeof reason, fmt, va);
    va_end(va);
    gw_decision_deny(out, 200, 0, code, reason);
    snprintf(out->rule_id, sizeof out->rule_id, "%s", ap->rule_id);
    return GW_DENY;
}

static void ttl_text(uint64_t ms, char *out, size_t size)
{
    if (ms % 3600000 == 0)
        snprintf(out, size, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms % 60000 == 0)
        snprintf(out, size, "%llum", (unsigned long long)(ms / 60000));
    else
        snprintf(out, size, "%llus", (unsigned long long)(ms / 1000));
}

/* The prompt: elicitation/create params asking the user to approve the call. */
static json_t *prompt_params(const struct approval_call *c, const struct policy_approval *ap)
{
    char msg[1024], digest[20], ttl[24];
    approval_digest_text(c->digest, digest);
    ttl_text(ap->ttl_ms, ttl, sizeof ttl);
    snprintf(msg, sizeof msg,
             "Approve this call? The assistant wants to run the tool \"%s\" (policy rule %s).\n"
             "Arguments: %s\nCall digest: %s\nApproving lets this same call through for %s.",
             c->tool[0] ? c->tool : "(name withheld)", ap->rule_id, c->summary, digest, ttl);
    return json_pack("{s:s, s:{s:s, s:{s:{s:s, s:s, s:s}}, s:[s]}}", "message", msg,
                     "requestedSchema", "type", "object", "properties", "approve", "type",
                     "boolean", "title", "Approve this call", "description",
                     "Yes lets the call run; no denies it.", "required", "approve");
}

/* What an elicitation result says: 1 approved, 0 declined, -1 cancelled, -2 not understood. */
static int elicit_verdict(const json_t *result)
{
    const char *action = json_string_value(json_object_get(result, "action"));
    if (!action)
        return -2;
    if (strcmp(action, "accept") == 0)
        return json_is_true(json_object_get(json_object_get(result, "content"), "approve")) ? 1 : 0;
    if (strcmp(action, "decline") == 0)
        return 0;
    if (strcmp(action, "cancel") == 0)
        return -1;
    return -2;
}

/* The pass decision an approval gives (nothing is kept). */
static int pass_decision(const struct policy_approval *ap, struct gw_decision *out)
{
    out->verdict = GW_PASS;
    snprintf(out->reason_code, sizeof out->reason_code, "policy.permit");
    snprintf(out->rule_id, sizeof out->rule_id, "%s", ap->rule_id);
    snprintf(out->reason, sizeof out->reason, "Allowed by policy, approved by the user.");
    return GW_PASS;
}

/* Approved: kept for the rule's ttl, and the call goes on. */
static int approved(struct gw_request *req, const struct approval_call *c,
                    const struct policy_approval *ap, const char *via, struct gw_decision *out)
{
    record(req, "approved", via, "user");
    approval_cache_put(c, approval_now_ms() + ap->ttl_ms, &req->approval);
    return pass_decision(ap, out);
}

/* An elicitation result (or none) into the decision: GW_PASS or GW_DENY. */
static int decide_answer(struct gw_request *req, const struct approval_call *c,
                         const struct policy_approval *ap, int verdict, const char *via,
                         struct gw_decision *out)
{
    if (verdict == 1)
        return approved(req, c, ap, via, out);
    if (verdict == 0 || verdict == -1) {
        record(req, verdict == 0 ? "declined" : "cancelled", via, "user");
        return deny(out, ap, "policy.approval_declined",
                    "You %sdid not approve this call (rule %s), so it was not made. Do not "
                    "retry it unless the user asks for it again.",
                    verdict == 0 ? "" : "dismissed the prompt and ", ap->rule_id);
    }
    record(req, "unavailable", via, NULL);
    return deny(out, ap, "policy.approval_unavailable",
                "This call needs your approval (rule %2$s), and your client did not give a usable "
                "answer to the prompt%1$s: it is denied.",
                "", ap->rule_id);
}

struct prompt_wait {
    struct approval_call call;
    struct policy_approval ap;
};

static void on_prompt(struct gw_request *req, void *arg, enum gw_ask_outcome o,
                      const json_t *answer)
{
    struct prompt_wait *w = arg;
    struct gw_decision *out = &req->decision[GW_STAGE_POLICY];
    int v;
    if (o == GW_ASK_ANSWERED) {
        const json_t *result = json_object_get(answer, "result");
        v = decide_answer(req, &w->call, &w->ap, result ? elicit_verdict(result) : -2,
                          "elicitation", out);
    } else if (o == GW_ASK_TIMEOUT) {
        record(req, "timeout", "elicitation", NULL);
        v = deny(out, &w->ap, "policy.approval_timeout",
                 "This call needs your approval (rule %2$s) and no answer came in time%1$s: it is "
                 "denied. Call it again to be asked again.",
                 "", w->ap.rule_id);
    } else {
        record(req, "cancelled", "elicitation", NULL);
        v = deny(out, &w->ap, "policy.approval_declined",
                 "The prompt for your approval (rule %2$s) ended without an answer%1$s: the call "
                 "is denied.",
                 "", w->ap.rule_id);
    }
    free(w);
    gw_pipeline_resume(req, v);
}

static int ask_session_user(struct gw_request *req, const struct approval_call *c,
                            const struct policy_approval *ap, struct gw_decision *out)
{
    const struct policy_config *pc = policy_config_of(req->cfg);
    const char *why = NULL;
    if (!req->session_valid || !(req->session.client_caps & MCP_CLIENT_ELICIT_FORM))
        why = "your client cannot show prompts (it did not declare the elicitation capability "
              "when it connected)";
    else
        gw_request_can_ask(req, &why);
    if (why) {
        record(req, "unavailable", "elicitation", NULL);
        return deny(out, ap, "policy.approval_unavailable",
                    "This call needs your approval (rule %2$s), but %1$s: it is denied.", why,
                    ap->rule_id);
    }
    struct prompt_wait *w = calloc(1, sizeof *w);
    json_t *params = w ? prompt_params(c, ap) : NULL;
    if (!params) {
        free(w);
        record(req, "unavailable", "elicitation", NULL);
        return deny(out, ap, "policy.approval_unavailable",
                    "This call needs your approval (rule %2$s), and the prompt could not be "
                    "made%1$s: it is denied.",
                    "", ap->rule_id);
    }
    w->call = *c;
    w->ap = *ap;
    /* Filled now for the pass that an approval gives; a denial overwrites it. */
    pass_decision(ap, out);
    if (gw_request_ask(req, "elicitation/create", params, pc->approvals.prompt_timeout_ms,
                       on_prompt, w) != 0) {
        free(w);
        record(req, "unavailable", "elicitation", NULL);
        return deny(out, ap, "policy.approval_unavailable",
                    "This call needs your approval (rule %2$s), and the prompt could not be "
                    "sent%1$s: it is denied.",
                    "", ap->rule_id);
    }
    return GW_ASYNC;
}

/* ---- 2026-07-28: input_required and the sealed state ---- */

static unsigned modern_client_caps(const struct mcp_message *m)
{
    const json_t *meta = json_object_get(json_object_get(m->json, "params"), "_meta");
    return mcp_client_caps_of(json_object_get(meta, "io.modelcontextprotocol/clientCapabilities"));
}

static int ask_modern_user(struct gw_request *req, const struct approval_call *c,
                           const struct policy_approval *ap, const struct mcp_message *m,
                           struct gw_decision *out)
{
    const struct policy_config *pc = policy_config_of(req->cfg);
    if (!(modern_client_caps(m) & MCP_CLIENT_ELICIT_FORM)) {
        record(req, "unavailable", "request_state", NULL);
        return deny(out, ap, "policy.approval_unavailable",
                    "This call needs your approval (rule %2$s), but your client cannot show "
                    "prompts (its request does not declare the elicitation capability)%1$s: it "
                    "is denied.",
                    "", ap->rule_id);
    }
    struct policy_sealed st = {0};
    char sealed[POLICY_SEAL_MAX + 1];
    memcpy(st.user, c->user, 32);
    memcpy(st.call, c->digest, 32);
    st.expires_ms = approval_now_ms() + pc->approvals.state_ttl_ms;
    snprintf(st.rule, sizeof st.rule, "%s", ap->rule_id);
    json_t *params = NULL, *result = NULL;
    if (gw_random_bytes(st.once, sizeof st.once) == 0 &&
        policy_seal(pc->approvals.state_key, &st, sealed) == 0 &&
        (params = prompt_params(c, ap)) != NULL)
        result = json_pack("{s:s, s:{s:{s:s, s:o}}, s:s}", "resultType", "input_required",
                           "inputRequests", INPUT_KEY, "method", "elicitation/create", "params",
                           params, "requestState", sealed);
    else
        json_decref(params);
    if (!result) {
        record(req, "unavailable", "request_state", NULL);
        return deny(out, ap, "policy.approval_unavailable",
                    "This call needs your approval (rule %2$s), and the prompt could not be "
                    "made%1$s: it is denied.",
                    "", ap->rule_id);
    }
    json_decref(req->denial_result);
    req->denial_result = result;
    record(req, "pending", "request_state", NULL);
    return deny(out, ap, "policy.approval_required",
                "This call needs your approval (rule %2$s): your client is asked for it%1$s.", "",
                ap->rule_id);
}

/* Takes toolgate's state and answer out of the retried call before it goes on. */
static int strip_retry(struct gw_request *req, json_t *params)
{
    json_t *responses = json_object_get(params, "inputResponses");
    json_object_del(params, "requestState");
    if (json_is_object(responses)) {
        json_object_del(responses, INPUT_KEY);
        if (json_object_size(responses) == 0)
            json_object_del(params, "inputResponses");
    }
    return gw_request_reserialize(req);
}

static int refuse_state(struct gw_request *req, const struct policy_approval *ap, const char *why,
                        struct gw_decision *out)
{
    record(req, "refused", "request_state", NULL);
    return deny(out, ap, "policy.approval_invalid",
                "The approval state of this call was refused: %s (rule %s). Call the tool "
                "again, without it, to be asked anew.",
                why, ap->rule_id);
}

static int claim_shared(struct gw_request *req, const struct approval_call *c,
                        const struct policy_approval *ap, struct mcp_message *m,
                        const struct policy_sealed *st, struct gw_decision *out);
static int redeem(struct gw_request *req, const struct approval_call *c,
                  const struct policy_approval *ap, struct mcp_message *m, struct gw_decision *out);

static int check_modern_retry(struct gw_request *req, const struct approval_call *c,
                              const struct policy_approval *ap, struct mcp_message *m,
                              const json_t *state, struct gw_decision *out)
{
    const struct policy_config *pc = policy_config_of(req->cfg);
    struct policy_sealed st;
    const char *why = NULL;
    uint64_t now = approval_now_ms();
    if (policy_unseal(pc->approvals.state_key, json_string_value(state), json_string_length(state),
                      &st, &why) != 0) {
        /* why says what is wrong with it */
    } else if (st.expires_ms <= now)
        why = "it has expired";
    else if (!gw_equal_ct(st.user, c->user, 32))
        why = "it was issued to another user";
    else if (!gw_equal_ct(st.call, c->digest, 32) || strcmp(st.rule, ap->rule_id) != 0)
        why = "it was issued for another call (the tool or its arguments differ)";
    else if (!pc->approvals.replay_host && state_used(st.once, st.expires_ms))
        why = "it was used already (a state is good for one retry)";
    if (why)
        return refuse_state(req, ap, why, out);
    if (pc->approvals.replay_host)
        return claim_shared(req, c, ap, m, &st, out);
    return redeem(req, c, ap, m, out);
}

/*
 * replay_store: Redis. The id is claimed there, shared by every instance; the call waits for
 * the answer (bounded by replay_timeout) and is denied when none comes.
 */
struct replay_wait {
    struct gw_request *req;
    struct approval_call call;
    struct policy_approval ap;
    size_t msg;
};

static void on_claimed(void *arg, int outcome)
{
    struct replay_wait *w = arg;
    struct gw_request *req = w->req;
    struct gw_decision *out = &req->decision[GW_STAGE_POLICY];
    int v;
    if (outcome == POLICY_REPLAY_USED) {
        v = refuse_state(req, &w->ap, "it was used already (a state is good for one retry)", out);
    } else if (outcome != POLICY_REPLAY_FIRST) {
        gw_log(GW_LOG_WARN, "approval_replay_unavailable", req->id, NULL,
               "the replay store did not confirm a sealed state's first use; the call is denied");
        record(req, "unavailable", "request_state", NULL);
        v = deny(out, &w->ap, "policy.approval_unavailable",
                 "The approval of this call cannot be checked now: the store of used approval "
                 "states did not answer%s, and a state that might be a replay is not accepted "
                 "(rule %s). Try again shortly.",
                 "", w->ap.rule_id);
    } else {
        v = redeem(req, &w->call, &w->ap, &req->rpc.msgs[w->msg], out);
    }
    free(w);
    gw_pipeline_resume(req, v);
}

static int claim_shared(struct gw_request *req, const struct approval_call *c,
                        const struct policy_approval *ap, struct mcp_message *m,
                        const struct policy_sealed *st, struct gw_decision *out)
{
    const struct policy_config *pc = policy_config_of(req->cfg);
    struct uv_loop_s *loop = gw_request_loop(req);
    struct replay_wait *w = loop ? calloc(1, sizeof *w) : NULL;
    if (!w) {
        record(req, "unavailable", "request_state", NULL);
        return deny(out, ap, "policy.approval_unavailable",
                    "The approval of this call cannot be checked now%s (rule %s): it is denied.",
                    "", ap->rule_id);
    }
    w->req = req;
    w->call = *c;
    w->ap = *ap;
    w->msg = (size_t)(m - req->rpc.msgs);
    uint64_t now = approval_now_ms();
    /* Filled now for a pass; whatever the claim says overwrites it. */
    pass_decision(ap, out);
    /* The callback may run before this returns (nothing sent): the verdict is then early. */
    policy_replay_claim(&pc->approvals, loop, &req->host, st->once,
                        st->expires_ms > now ? st->expires_ms - now : 1, on_claimed, w);
    return GW_ASYNC;
}

static int redeem(struct gw_request *req, const struct approval_call *c,
                  const struct policy_approval *ap, struct mcp_message *m, struct gw_decision *out)
{
    json_t *params = json_object_get(m->json, "params");
    const json_t *answer = json_object_get(json_object_get(params, "inputResponses"), INPUT_KEY);
    int v = answer ? elicit_verdict(answer) : -2;
    if (v == 1 && strip_retry(req, params) != 0) {
        record(req, "unavailable", "request_state", NULL);
        return deny(out, ap, "policy.approval_unavailable", "Out of memory%s (rule %s).", "",
                    ap->rule_id);
    }
    return decide_answer(req, c, ap, v, "request_state", out);
}

int policy_approval_check(struct gw_request *req, struct mcp_message *m,
                          const struct policy_approval *ap, struct gw_decision *out)
{
    struct approval_call c;
    struct gw_approval_record *r = &req->approval;
    memset(r, 0, sizeof *r);
    r->asked = 1;
    snprintf(r->rule_id, sizeof r->rule_id, "%s", ap->rule_id);
    if (ap->by == POLICY_APPROVAL_ROLE)
        snprintf(r->by, sizeof r->by, "role:%s", ap->role);
    else
        snprintf(r->by, sizeof r->by, "user");
    if (req->rpc.n != 1 || approval_call_of(req, m, ap, &c) != 0) {
        record(req, "unavailable", NULL, NULL);
        return deny(out, ap, "policy.approval_unavailable",
                    "This call needs approval (rule %2$s), which only a single call can wait "
                    "for%1$s: it is denied.",
                    "", ap->rule_id);
    }
    approval_digest_text(c.digest, r->digest);
    struct gw_approval_record kept;
    const json_t *state = json_object_get(json_object_get(m->json, "params"), "requestState");
    int ours = json_is_string(state) && strncmp(json_string_value(state), POLICY_SEAL_PREFIX,
                                                sizeof POLICY_SEAL_PREFIX - 1) == 0;
    if (!ours && approval_cache_find(&c, approval_now_ms(), &kept)) {
        snprintf(r->decision, sizeof r->decision, "approved");
        snprintf(r->via, sizeof r->via, "cached");
        snprintf(r->approver, sizeof r->approver, "%s", kept.approver);
        snprintf(r->reference, sizeof r->reference, "%s", kept.reference);
        r->decided_at_ms = kept.decided_at_ms;
        out->verdict = GW_PASS;
        snprintf(out->reason_code, sizeof out->reason_code, "policy.permit");
        snprintf(out->rule_id, sizeof out->rule_id, "%s", ap->rule_id);
        snprintf(out->reason, sizeof out->reason, "Allowed by policy, approved before.");
        return GW_PASS;
    }
    if (ap->by == POLICY_APPROVAL_ROLE)
        return approval_role_check(req, &c, ap, out);
    if (req->modern)
        return ours ? check_modern_retry(req, &c, ap, m, state, out)
                    : ask_modern_user(req, &c, ap, m, out);
    return ask_session_user(req, &c, ap, out);
}
