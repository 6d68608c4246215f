/*
 * safety layer: the pipeline slot. Scans every message whole in both directions (the
 * client's requests, notifications and answers on the way in; every message of the backend's
 * answer on the way out), records findings (type, JSON Pointer, count, action, direction;
 * never values), redacts in place, and blocks when a detector says so.
 *
 * Request redaction rewrites the decoded message and re-serializes the whole body into
 * req->rewritten_body, which the core forwards instead of the original bytes. A request that
 * needs no redaction goes upstream byte for byte as it came.
 */
#include "layers/safety/safety-int.h"
#include "layers/layer.h"
#include "lib/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct safety_config *config_of(const struct gw_request *req)
{
    return safety_config_of(req->cfg);
}

/* What the model reads: a phrase per built-in type (custom ones are named as configured). */
static const char *type_phrase(const char *type)
{
    static const struct {
        const char *type, *phrase;
    } phrases[] = {
        {"ssn", "a US Social Security number"},
        {"itin", "a US taxpayer identification number"},
        {"credit_card", "a payment card number"},
        {"iban", "a bank account number (IBAN)"},
        {"email", "an e-mail address"},
        {"phone", "a phone number"},
        {"ip_address", "an IP address"},
        {"npi", "a provider identifier (NPI)"},
        {"dea", "a DEA registration number"},
        {"dob", "a date of birth"},
        {"passport", "a passport number"},
        {"drivers_license", "a driver's licence number"},
        {"mrn", "a medical record number"},
        {"private_key", "a private key"},
        {"aws_access_key", "an AWS access key id"},
        {"aws_secret_key", "an AWS secret key"},
        {"github_token", "a GitHub token"},
        {"gitlab_token", "a GitLab token"},
        {"slack_token", "a Slack token"},
        {"stripe_key", "a Stripe key"},
        {"google_api_key", "a Google API key"},
        {"jwt", "a JSON Web Token"},
        {"generic_secret", "a secret (key, token or password)"},
    };
    for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++)
        if (strcmp(phrases[i].type, type) == 0)
            return phrases[i].phrase;
    return NULL;
}

/* At most max bytes of s, cut at a UTF-8 boundary: reasons end up in JSON strings. */
static void utf8_cut(char *dst, size_t max, const char *s)
{
    size_t n = strlen(s);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static int deny_block(struct gw_decision *out, const struct safety_result *res, int response)
{
    char code[64], reason[512];
    const char *phrase = type_phrase(res->block_type);
    char custom[64];
    if (!phrase) {
        snprintf(custom, sizeof custom, "sensitive data (%.31s)", res->block_type);
        phrase = custom;
    }
    char where[128];
    utf8_cut(where, 100, res->block_path);
    snprintf(code, sizeof code, "pii.%.40s", res->block_type);
    if (response)
        snprintf(reason, sizeof reason, "The tool's answer was withheld: it contains %s at %s.",
                 phrase, where);
    else
        snprintf(reason, sizeof reason,
                 "This call was blocked: its arguments contain %s at %s. Remove it and try "
                 "again.",
                 phrase, where);
    gw_decision_deny(out, 200, response ? -32003 : 0, code, reason);
    snprintf(out->rule_id, sizeof out->rule_id, "%.100s", res->block_type);
    return GW_DENY;
}

static int deny_error(struct gw_decision *out, const struct safety_result *res, int response)
{
    const char *what =
        strcmp(res->error_code, "safety.too_large") == 0
            ? "is larger than the safety layer inspects (safety.limits.max_scan_bytes)"
        : strcmp(res->error_code, "safety.too_deep") == 0
            ? "is nested deeper than the safety layer inspects (safety.limits.max_depth)"
            : "could not be inspected";
    char reason[512];
    snprintf(reason, sizeof reason, "%s %s, so it was %s.",
             response ? "The tool's answer" : "This call's input", what,
             response ? "withheld" : "not forwarded");
    safety_count_error();
    return gw_decision_deny(out, 200, response ? -32003 : 0, res->error_code, reason);
}

/*
 * Values a decoded request borrows (mcp_message.target): the governed action's name or URI.
 * Rewriting them would change what policy and routing judge behind their back; a finding
 * there that would be redacted blocks instead.
 */
static const char *const target_pointers[] = {"/params/name", "/params/uri", "/params/ref/name",
                                              "/params/ref/uri", NULL};

/* Scans a whole message (every member name, string and number); fills res. */
static void scan_message(struct gw_request *req, const struct safety_config *sc, json_t *msg,
                         const char *path, enum gw_direction dir,
                         const enum safety_action (*actions)[2], int pinned_targets,
                         struct safety_result *res)
{
    size_t budget = sc->max_scan_bytes;
    struct safety_scan_opts opts = {
        .direction = dir,
        .tenant = req->identity.tenant,
        .redact = 1,
        .budget = &budget,
        .actions = actions,
        .envelope = 1,
        .pinned = pinned_targets ? target_pointers : NULL,
    };
    safety_scan_json(sc, msg, path, &opts, &req->findings, res);
}

static int finish_message(struct gw_request *req, const struct safety_result *res, size_t scanned,
                          int response, struct gw_decision *out)
{
    safety_count_message(scanned);
    if (res->flagged)
        safety_count_oversize();
    if (res->error) {
        if (strcmp(res->error_code, "safety.too_large") == 0 ||
            strcmp(res->error_code, "safety.too_deep") == 0)
            safety_count_oversize();
        return deny_error(out, res, response);
    }
    if (res->block) {
        safety_count_block();
        return deny_block(out, res, response);
    }
    safety_count_redactions(res->redactions);
    (void)req;
    return GW_PASS;
}

/*
 * The closed world on the way in: every message of the body, whole (envelope, params with
 * _meta, initialize, notifications, the client's answers to server requests), is scanned.
 */
static int safety_check(struct gw_request *req, struct gw_decision *out)
{
    const struct safety_config *sc = config_of(req);
    unsigned redactions = 0;
    if (!sc || !sc->enabled) {
        out->verdict = GW_PASS;
        gw_strlcpy(out->reason_code, "safety.off", sizeof out->reason_code);
        return GW_PASS;
    }
    for (size_t i = 0; i < req->rpc.n; i++) {
        struct mcp_message *m = &req->rpc.msgs[i];
        char prefix[32] = "";
        if (req->rpc.is_batch)
            snprintf(prefix, sizeof prefix, "/%zu", i);
        struct safety_result res = {0};
        if (!m->json) {
            /* Nothing decoded to look at: not inspected, so not let through. */
            res.error = 1;
            snprintf(res.error_code, sizeof res.error_code, "safety.error");
            finish_message(req, &res, 0, 0, out);
            return GW_DENY;
        }
        const enum safety_action(*actions)[2] = m->method && strcmp(m->method, "tools/call") == 0
                                                    ? safety_tool_actions(sc, m->target)
                                                    : NULL;
        scan_message(req, sc, m->json, prefix, GW_DIR_REQUEST, actions, m->target != NULL, &res);
        if (finish_message(req, &res, res.scanned, 0, out) != GW_PASS)
            return GW_DENY;
        redactions += res.redactions;
    }
    if (redactions && gw_request_reserialize(req) != 0) {
        safety_count_error();
        return gw_decision_deny(out, 500, JSONRPC_INTERNAL_ERROR, "safety.error",
                                "An internal error stopped this request.");
    }
    out->verdict = GW_PASS;
    gw_strlcpy(out->reason_code,
               redactions        ? "safety.redacted"
               : req->findings.n ? "safety.logged"
                                 : "safety.clean",
               sizeof out->reason_code);
    return GW_PASS;
}

/* The answer to a tools/call gets the same per-tool actions as the call (matched by id). */
static const enum safety_action (*response_actions(const struct gw_request *req,
                                                   const struct safety_config *sc,
                                                   const json_t *msg))[2]
{
    const json_t *id = json_object_get(msg, "id");
    if (!sc->n_tools || !id)
        return NULL;
    for (size_t i = 0; i < req->rpc.n; i++) {
        const struct mcp_message *m = &req->rpc.msgs[i];
        if (m->kind == MCP_REQUEST && m->id && m->method && strcmp(m->method, "tools/call") == 0 &&
            json_equal(m->id, id))
            return safety_tool_actions(sc, m->target);
    }
    return NULL;
}

static int safety_on_response(struct gw_request *req, json_t *msg, int *modified,
                              struct gw_decision *out)
{
    const struct safety_config *sc = config_of(req);
    if (!sc || !sc->enabled || !sc->responses_enabled || !json_is_object(msg))
        return GW_PASS;
    struct safety_result res = {0};
    scan_message(req, sc, msg, "", GW_DIR_RESPONSE, response_actions(req, sc, msg), 0, &res);
    if (finish_message(req, &res, res.scanned, 1, out) != GW_PASS) {
        /* The error that replaces the message echoes its id: not one that holds a finding. */
        if (res.id_finding && json_object_set_new(msg, "id", json_null()) == 0)
            *modified = 1;
        return GW_DENY;
    }
    if (res.redactions)
        *modified = 1;
    return GW_PASS;
}

const struct gw_layer_ops safety_layer = {
    .check = safety_check,
    .on_response = safety_on_response,
};
