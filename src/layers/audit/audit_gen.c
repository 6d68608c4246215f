/*
 * audit_gen: realistic audit stores for benchmarks and tests.
 *
 *   toolgate bench audit gen --calls N --out STORE [--days D] [--users U] [--tenants T]
 *                            [--tools K] [--calls-per-commit C] [--format compact|legacy]
 *                            [--key PEM] [--seed S]
 *
 * Every call is a request context turned into its decision and completion records by the
 * real record builders, queued to the real writer, which sequences, hashes, compresses and
 * signs them exactly as in service (a checkpoint after every C calls, as commits that are
 * waited for come). The calls' times are spread evenly over the last D days (the writer's
 * clock is replaced for the run). Users, tenants and tools follow skewed popularity; about
 * one call in twelve is denied (identity, policy, limits or safety), one in seven carries
 * PII findings. Deterministic for a seed.
 */
#include "layers/audit/audit.h"
#include "layers/audit/audit_gen.h"
#include "layers/audit/audit_record.h"
#include "layers/audit/audit_store.h"
#include "layers/audit/audit_writer.h"

#include "lib/log.h"
#include "lib/timeutil.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Atomic int64_t gen_time;
static int64_t gen_step;

static int64_t gen_clock(void)
{
    return atomic_fetch_add(&gen_time, gen_step);
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Skewed pick in [0, n): small indices are far more common (a power of a uniform). */
static unsigned pick(uint64_t *s, unsigned n)
{
    double u = (double)(rnd(s) >> 11) / 9007199254740992.0;
    unsigned i = (unsigned)(u * u * u * n);
    return i < n ? i : n - 1;
}

static const char *const namespaces[] = {"ehr", "billing",  "crm",   "docs",
                                         "lab", "pharmacy", "sched", "files"};
static const char *const verbs[] = {"get_patient", "get_labs",     "get_meds",   "search",
                                    "get_notes",   "update_notes", "list",       "get_invoice",
                                    "create",      "delete",       "get_orders", "summarize",
                                    "get_history", "export",       "get_vitals"};

static void tool_name(unsigned i, char *out, size_t len)
{
    size_t nv = sizeof verbs / sizeof verbs[0], nn = sizeof namespaces / sizeof namespaces[0];
    snprintf(out, len, "%s.%s%s", namespaces[(i / nv) % nn], verbs[i % nv],
             i >= nv * nn ? "_v2" : "");
}

int audit_gen_run(const struct audit_gen_opts *o, char *err, size_t errlen)
{
    struct audit_config ac;
    static struct gw_config cfg;
    static struct gw_route route = {.name = "mcp", .path = "/mcp"};
    static struct gw_backend backends[3] = {{.name = "ehr"}, {.name = "billing"}, {.name = "crm"}};
    static const struct audit_config rc = {.arguments = AUDIT_ARGS_REDACTED};
    int ret = -1;
    if (audit_config_defaults(&ac) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(ac.store);
    free(ac.instance_id);
    ac.store = strdup(o->store);
    ac.instance_id = strdup(o->instance ? o->instance : "gen-1");
    ac.signing_key = o->key ? strdup(o->key) : NULL;
    ac.store_format = o->format;
    snprintf(cfg.config_hash, sizeof cfg.config_hash, "%s",
             "4f2a9c0d7e51b3a8c6d2e9f0a1b4c7d3e6f9a2b5c8d1e4f7a0b3c6d9e2f5a8b1");
    uint64_t seed = o->seed ? o->seed : 0x9e3779b97f4a7c15ull;
    uint64_t calls_per_commit = o->calls_per_commit ? o->calls_per_commit : 10;
    int64_t span = (int64_t)(o->days ? o->days : 60) * 86400ll * 1000000000ll;
    int64_t now = (int64_t)gw_now_ns();
    /* About 2.1 records a call (two, plus a checkpoint every few calls). */
    uint64_t est = o->calls * 2 + o->calls / calls_per_commit + 8;
    gen_step = span / (int64_t)(est ? est : 1);
    if (gen_step < 1)
        gen_step = 1;
    atomic_store(&gen_time, now - span);
    audit_writer_set_clock(gen_clock);
    gw_log_setup(GW_LOG_ERROR, 2);
    if (!ac.store || !ac.instance_id || audit_writer_start(&ac, NULL) != 0) {
        snprintf(err, errlen, "cannot start the audit writer on %s", o->store);
        goto out;
    }
    char *roles_doc[] = {"doctor", "staff", NULL}, *roles_adm[] = {"admin", NULL};
    char *scopes[] = {"patients.read", "patients.write", NULL};
    char user[64], tenant[64], tool[96], session[64], client[32];
    unsigned users = o->users ? o->users : 5000, tenants = o->tenants ? o->tenants : 60;
    unsigned tools = o->tools ? o->tools : 150;
    for (uint64_t i = 0; i < o->calls; i++) {
        struct gw_request req;
        struct mcp_message msg;
        memset(&req, 0, sizeof req);
        memset(&msg, 0, sizeof msg);
        gw_uuid7(req.id);
        unsigned u = pick(&seed, users), t = u % tenants, k = pick(&seed, tools);
        snprintf(user, sizeof user, "user%05u@clinic-%u.example", u, t);
        snprintf(tenant, sizeof tenant, "clinic-%u", t);
        tool_name(k, tool, sizeof tool);
        snprintf(session, sizeof session, "sess-%u-%llu", u, (unsigned long long)(i / 20));
        snprintf(client, sizeof client, "%s", u % 3 ? "claude-desktop" : "cursor");
        req.cfg = &cfg;
        req.route = &route;
        req.backend = &backends[k % 3];
        req.method_name = GW_SLICE_LIT("POST");
        req.protocol_version = "2025-06-18";
        req.session_id = session;
        unsigned roll = (unsigned)(rnd(&seed) % 1000);
        req.identity.verified = roll >= 10;
        req.identity.subject = user;
        req.identity.issuer = "https://idp.example.com/";
        req.identity.tenant = tenant;
        req.identity.client_id = client;
        req.identity.roles = u % 50 ? roles_doc : roles_adm;
        req.identity.n_roles = u % 50 ? 2 : 1;
        req.identity.scopes = scopes;
        req.identity.n_scopes = 1 + (u & 1);
        json_t *args = json_pack("{s:s, s:i, s:s}", "patient_id", "[REDACTED]", "limit",
                                 (int)(rnd(&seed) % 100), "note",
                                 roll % 7 == 0 ? "[REDACTED:ssn]" : "[REDACTED]");
        msg.method = "tools/call";
        msg.target = tool;
        msg.arguments = args;
        req.rpc.msgs = &msg;
        req.rpc.n = 1;
        req.deciding_stage = GW_STAGE_NONE;
        int stage = -1;
        const char *reason = NULL, *rule = "";
        int status = 403;
        if (roll < 10)
            stage = GW_STAGE_IDENTITY, reason = "identity.invalid_token", status = 401;
        else if (roll < 60)
            stage = GW_STAGE_POLICY, reason = "policy.no_match", rule = "";
        else if (roll < 72)
            stage = GW_STAGE_POLICY, reason = "policy.denied", rule = "deny-delete";
        else if (roll < 80)
            stage = GW_STAGE_LIMITS, reason = "limits.rate", rule = "per-user", status = 429;
        else if (roll < 84)
            stage = GW_STAGE_SAFETY, reason = "safety.pii_blocked", rule = "ssn";
        if (stage >= 0) {
            req.deciding_stage = stage;
            gw_decision_deny(&req.decision[stage], status, -32001, reason, "denied");
            snprintf(req.decision[stage].rule_id, sizeof req.decision[stage].rule_id, "%s", rule);
        }
        struct gw_finding found[2];
        if (roll % 7 == 0) {
            /* The request is on the stack and never freed: the findings are too. */
            memset(found, 0, sizeof found);
            req.findings.items = found;
            req.findings.n = req.findings.cap = 1 + roll % 2;
            for (size_t f = 0; f < req.findings.n; f++) {
                snprintf(found[f].type, sizeof found[f].type, "%s", f ? "phone" : "ssn");
                snprintf(found[f].path, sizeof found[f].path, "/params/arguments/note");
                found[f].count = 1;
                found[f].action = GW_PII_REDACT;
            }
            req.findings.redactions = (int)req.findings.n;
        }
        for (int s = 0; s < GW_STAGE_AUDIT; s++)
            req.timing.stage_ns[s] = 800 + rnd(&seed) % 20000;
        /* A refused item is freed: each try builds the record afresh from the request. */
        int r;
        while ((r = audit_submit_item(audit_record_decision_item(&req, &rc), NULL, NULL)) ==
               -EAGAIN)
            sched_yield();
        if (stage < 0) {
            req.upstream_status = 200;
            req.response_status = 200;
            req.response_bytes = 200 + rnd(&seed) % 8000;
        } else {
            req.response_status = status;
            req.response_bytes = 180;
        }
        req.timing.start_ns = 1000;
        req.timing.upstream_first_byte_ns = stage < 0 ? 1000 + 500000 + rnd(&seed) % 5000000 : 0;
        req.timing.end_ns = 1000 + 600000 + rnd(&seed) % 9000000;
        char result[65];
        snprintf(result, sizeof result, "%016llx%016llx%016llx%016llx",
                 (unsigned long long)rnd(&seed), (unsigned long long)rnd(&seed),
                 (unsigned long long)rnd(&seed), (unsigned long long)rnd(&seed));
        while (r == 0 && (r = audit_submit_item(
                              audit_record_completion_item(&req, &rc, stage < 0 ? result : NULL),
                              NULL, NULL)) == -EAGAIN)
            sched_yield();
        json_decref(args);
        if (r == -ENOMEM) {
            snprintf(err, errlen, "out of memory building records");
            goto stop;
        }
        if (r != 0) {
            snprintf(err, errlen, "the writer refused a record (%d)", r);
            goto stop;
        }
        if ((i + 1) % calls_per_commit == 0 && audit_flush() != 0) {
            snprintf(err, errlen, "the writer failed");
            goto stop;
        }
    }
    if (audit_flush() != 0) {
        snprintf(err, errlen, "the writer failed");
        goto stop;
    }
    ret = 0;
stop:
    audit_stop();
out:
    audit_writer_set_clock(NULL);
    free(ac.store);
    free(ac.instance_id);
    free(ac.signing_key);
    return ret;
}

int audit_gen_main(int argc, char **argv)
{
    struct audit_gen_opts o = {0};
    char err[512];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v || strncmp(a, "--", 2) != 0) {
            int help = strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
            fprintf(help ? stdout : stderr,
                    "usage: toolgate bench audit gen --calls N --out STORE [--days D] "
                    "[--users U] [--tenants T] [--tools K] [--calls-per-commit C] "
                    "[--format compact|legacy] [--key PEM] [--instance I] [--seed S]\n");
            return help ? 0 : 2;
        }
        i++;
        if (strcmp(a, "--calls") == 0)
            o.calls = strtoull(v, NULL, 10);
        else if (strcmp(a, "--out") == 0)
            o.store = v;
        else if (strcmp(a, "--days") == 0)
            o.days = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--users") == 0)
            o.users = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--tenants") == 0)
            o.tenants = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--tools") == 0)
            o.tools = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--calls-per-commit") == 0)
            o.calls_per_commit = strtoull(v, NULL, 10);
        else if (strcmp(a, "--seed") == 0)
            o.seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--key") == 0)
            o.key = v;
        else if (strcmp(a, "--instance") == 0)
            o.instance = v;
        else if (strcmp(a, "--format") == 0 && (!strcmp(v, "compact") || !strcmp(v, "legacy")))
            o.format = strcmp(v, "legacy") == 0 ? AUDIT_FORMAT_LEGACY : AUDIT_FORMAT_COMPACT;
        else {
            fprintf(stderr, "toolgate bench audit gen: unknown option %s %s\n", a, v);
            return 2;
        }
    }
    if (!o.calls || !o.store) {
        fprintf(stderr, "toolgate bench audit gen: --calls N and --out STORE are required\n");
        return 2;
    }
    char url[4200];
    if (strncmp(o.store, "sqlite:", 7) && strncmp(o.store, "postgres", 8)) {
        snprintf(url, sizeof url, "sqlite:%s", o.store);
        o.store = url;
    }
    uint64_t t0 = gw_mono_ns();
    if (audit_gen_run(&o, err, sizeof err) != 0) {
        fprintf(stderr, "toolgate bench audit gen: %s\n", err);
        return 1;
    }
    printf("generated %llu calls into %s in %.1f s\n", (unsigned long long)o.calls, o.store,
           (double)(gw_mono_ns() - t0) / 1e9);
    return 0;
}
