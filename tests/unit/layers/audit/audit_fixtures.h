/* Fixtures of the audit tests beyond the shared ones (fixtures.h): stores, verification. */
#ifndef AUDIT_FIXTURES_H
#define AUDIT_FIXTURES_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

#include "fixtures.h"
#include "layers/audit/audit.h"
#include "layers/audit/audit_chain.h"
#include "layers/audit/audit_store.h"
#include "layers/audit/audit_verify.h"
#include "layers/audit/audit_writer.h"

/* A config for a SQLite store at DIR/NAME; strings owned by the config. */
static inline struct audit_config *make_test_config(const char *dir, const char *name,
                                                    uint64_t every, uint64_t interval_ms,
                                                    uint64_t queue)
{
    struct audit_config *ac = calloc(1, sizeof *ac);
    char buf[512];
    if (!ac || audit_config_defaults(ac) != 0)
        abort();
    free(ac->store);
    snprintf(buf, sizeof buf, "sqlite:%s/%s", dir, name);
    ac->store = strdup(buf);
    free(ac->instance_id);
    ac->instance_id = strdup("test-1");
    ac->checkpoint_every = every;
    ac->checkpoint_interval_ms = interval_ms;
    ac->queue = queue;
    /*
     * These tests edit the rows with SQL to show what verify catches, so their stores are in
     * the first format, one text row per record; test_audit_compact.c covers the compact one.
     */
    ac->store_format = AUDIT_FORMAT_LEGACY;
    return ac;
}

/* How verify_paths checks the chain's end: as plain `verify`, or with --live / --closed. */
#define FX_VERIFY_LIVE 1
#define FX_VERIFY_CLOSED 2

/* Verifies the given files (paths) with the default key of the first; fills problem. */
static inline int verify_paths(const char *pub_path, const char *const *paths, size_t n, int flags,
                               char *problem, size_t problem_len)
{
    char err[512];
    EVP_PKEY *pub = audit_key_load_public(pub_path, err, sizeof err);
    if (!pub) {
        snprintf(problem, problem_len, "%.300s", err);
        return -1;
    }
    struct audit_verifier v;
    int rc = -1;
    if (audit_verifier_init(&v, pub, (flags & FX_VERIFY_LIVE) != 0) != 0)
        goto out;
    v.closed = (flags & FX_VERIFY_CLOSED) != 0;
    for (size_t i = 0; i < n; i++) {
        struct audit_store *st = audit_sqlite_open(paths[i], 0, err, sizeof err);
        if (!st) {
            snprintf(problem, problem_len, "%.300s", err);
            goto out_v;
        }
        int f = audit_verifier_feed(&v, st);
        st->ops->close(st);
        if (f < 0)
            goto out_v;
    }
    rc = audit_verifier_finish(&v);
    snprintf(problem, problem_len, "%s", v.bad ? v.problem : "");
out_v:
    audit_verifier_free(&v);
out:
    EVP_PKEY_free(pub);
    return rc;
}

/*
 * A request as the audit layer sees it once the layers ran: one tools/call of ehr.get_patient
 * carrying msg (owned by the request), on route "ehr" to "ehr-backend", by dr.alice of clinic-7
 * through claude-desktop with the given roles (NULL-terminated) and scope patients.read, with
 * secrets that must never reach a record (session id, token hash). Room for a second message.
 */
static inline struct gw_request *fx_audit_request(json_t *msg, const char *const *roles)
{
    static struct gw_route route = {.name = "ehr", .path = "/mcp"};
    static struct gw_backend backend = {.name = "ehr-backend"};
    struct gw_request *req = gw_request_new(NULL);
    if (!req || !msg)
        abort();
    req->route = &route;
    req->backend = &backend;
    req->method_name = GW_SLICE_LIT("POST");
    req->protocol_version = strdup("2025-06-18");
    req->session_id = strdup("session-secret-0123456789");
    req->rpc.msgs = calloc(2, sizeof *req->rpc.msgs);
    req->rpc.n = 1;
    req->rpc.msgs[0].json = msg;
    req->rpc.msgs[0].kind = MCP_REQUEST;
    req->rpc.msgs[0].method = "tools/call";
    req->rpc.msgs[0].target = "ehr.get_patient";
    req->rpc.msgs[0].arguments = json_object_get(json_object_get(msg, "params"), "arguments");
    struct gw_identity *id = &req->identity;
    id->verified = 1;
    id->subject = strdup("dr.alice");
    id->issuer = strdup("https://idp.example.com/");
    id->tenant = strdup("clinic-7");
    id->client_id = strdup("claude-desktop");
    size_t n = 0;
    while (roles[n])
        n++;
    id->roles = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        id->roles[i] = strdup(roles[i]);
    id->n_roles = n;
    id->scopes = calloc(2, sizeof(char *));
    id->scopes[0] = strdup("patients.read");
    id->n_scopes = 1;
    snprintf(id->token_hash, sizeof id->token_hash, "%s", "tokenhash-must-not-appear");
    return req;
}

#endif
