/*
 * identity: the first governance layer. Verifies the bearer token on every request
 * (JWS on OpenSSL EVP, keys from configured JWKS files or URIs, or from the jwks_uri of the
 * issuer's discovered metadata), maps its claims to req->identity, binds MCP sessions to the
 * verified user, and describes the protected resource to OAuth clients (RFC 9728).
 *
 * Configuration: the `identity:` section (identity_config_parse). Runtime: identity_start
 * loads key files and starts the one key-fetch thread of the process (which also reads the
 * metadata of discovered issuers); identity_stop ends it.
 * Without an `identity` section every request is denied, unless `identity: {mode: off}` is
 * written explicitly.
 */
#ifndef GW_IDENTITY_H
#define GW_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/cfg.h"
#include "core/config.h"
#include "core/config.h"
#include "layers/modules.h"

/* JSON-RPC error code toolgate uses for authentication and session-ownership denials. */
#define IDENTITY_JSONRPC_UNAUTHORIZED -32001

#define IDENTITY_MAX_ISSUERS 16
#define IDENTITY_MAX_LIST 64 /* audiences, algorithms, claim paths, scopes... */

enum identity_mode { IDENTITY_MODE_ON = 0, IDENTITY_MODE_OFF };

struct identity_issuer_config {
    char *issuer;     /* exact "iss" */
    char **audiences; /* NULL-terminated, at least one */
    char *jwks_uri;   /* at most one of jwks_uri, jwks_file; */
    char *jwks_file;  /* neither: discover = 1 (lib/discovery.h) */
    int discover;
    unsigned algorithms;               /* JWT_ALG_BIT set; default RS256, ES256, EdDSA */
    uint64_t leeway_ms;                /* 60s */
    uint64_t jwks_ttl_ms;              /* 10m; Cache-Control max-age wins within bounds */
    uint64_t jwks_refetch_interval_ms; /* 30s; also the lower bound of a fetched TTL */
    uint64_t jwks_timeout_ms;          /* 5s; also each metadata fetch */
    uint64_t discovery_ttl_ms;         /* 1h: metadata is read again after this */
};

struct identity_claims_config {
    /* Claim paths, NULL-terminated; "a.b" walks nested objects when no top-level claim has
     * that literal name. The first path that yields a value wins (roles/scopes: union). */
    char **subject; /* [sub] */
    char **tenant;  /* [org_id] */
    char **roles;   /* [roles, realm_access.roles] */
    char **scopes;  /* [scope, scp] */
    char **client;  /* [azp, client_id] */
};

struct identity_config {
    enum identity_mode mode;
    struct identity_issuer_config *issuers;
    size_t n_issuers;
    struct identity_claims_config claims;
    char **authorization_servers; /* NULL-terminated; default: each issuer */
    char **scopes_supported;      /* NULL-terminated; may be empty */
    uint64_t token_cache_entries; /* 10000; 0 disables the cache */
    uint64_t session_entries;     /* sessions.entries: 100000 */
    uint64_t session_idle_ms;     /* sessions.idle_timeout: 1h */
    /*
     * What this generation verifies with (its key store and token cache), attached by
     * identity_start or identity_reload_prepare before the generation serves, and released
     * with the section (identity_config_free). Not parsed; NULL until then.
     */
    struct identity_runtime *runtime;
};

/*
 * Parses the `identity:` section (section may be NULL: then *out stays NULL, which means
 * "deny everything"). On success *out is a new config (free with identity_config_free).
 * Returns 0, or -1 with err filled (file:line: path: what is wrong).
 */
int identity_config_parse(const struct cfg_doc *doc, const struct cfg_node *section,
                          struct identity_config **out, struct cfg_error *err);
void identity_config_free(struct identity_config *cfg);

/*
 * Starts the runtime for cfg: loads jwks_file sets (an unreadable or empty file is an error),
 * fetches every issuer's keys once (a failed first fetch is logged; that issuer's tokens are
 * refused until a fetch succeeds), starts the key-fetch thread, and attaches the key store
 * and token cache to cfg (cfg->runtime). Configures the session map. cfg may be NULL (deny
 * everything). Returns 0 or -1 (logged).
 */
int identity_start(const struct identity_config *cfg);
/* Stops the fetch thread and resumes waiting requests (denied). A generation's keys and
 * cache are freed with its section. */
void identity_stop(void);

/*
 * Reload (the module's prepare/commit/abort, core/module.h). prepare builds next's runtime
 * beside the running one, off the event loop: keys of issuers whose source is unchanged carry
 * over, a new issuer is fetched now and one that cannot be fetched refuses the reload (the
 * sentence names it); the token cache is shared only when nothing that decides a
 * verification changed (identity_verification_same), else next starts with an empty one. The
 * session map cannot change size or idle time without a restart. commit hands the fetch
 * thread next's store; abort frees what prepare built. Returns 0, or -1 with err filled.
 */
int identity_reload_prepare(const struct identity_config *running,
                            const struct identity_config *next, struct cfg_error *err);
void identity_reload_commit(const struct identity_config *next);
void identity_reload_abort(const struct identity_config *next);
/*
 * 1 when a token verified under `a` verifies the same way under `b`, key sets aside: the same
 * issuers in the same order with the same audiences, algorithms, leeway and key sources, the
 * same claim mapping, and the same token cache size. 0 otherwise (either may be NULL).
 */
int identity_verification_same(const struct identity_config *a, const struct identity_config *b);
/*
 * Verifies a person's bearer token synchronously, outside any request (the admin API's
 * approvers): ic's issuers, audiences, algorithms, leeway and claim mapping, with the keys its
 * store holds now (no fetch, no token cache). Returns JWT_OK with *out filled (the caller
 * clears it with gw_identity_clear), JWT_E_NO_KEYS when the issuer's keys are not available,
 * JWT_E_INTERNAL when ic verifies nothing (absent, mode off, no runtime), or another negative
 * jwt_error for a refused token; *out is empty on error. The token is not kept.
 */
int identity_verify_person(const struct identity_config *ic, struct gw_slice token,
                           struct gw_identity *out);
/* The generation's key store (keystore.h), or NULL before its runtime is attached. */
struct keystore;
struct keystore *identity_keys_of(const struct identity_config *ic);
/* The generation's token cache (token_cache.h), or NULL: for tests and the benchmark. */
struct token_cache;
struct token_cache *identity_cache_of(const struct identity_config *ic);
/* Releases a runtime (identity_config_free does it). */
void identity_runtime_free(struct identity_runtime *rt);

/*
 * RFC 9728 protected resource metadata for a route (route_path NULL: the root resource):
 * {"resource": public_url + route_path, "authorization_servers": [...],
 *  "scopes_supported": [...], "bearer_methods_supported": ["header"]}.
 * Appends JSON to out. Returns 0, or -1 (no identity config, or memory).
 */
int identity_metadata_json(const struct gw_config *cfg, const char *route_path, struct gw_buf *out);

/* Development tools (see docs/identity.md). argv[0] is the subcommand name. Exit status. */
int identity_cli_keys(int argc, char **argv);
int identity_cli_token(int argc, char **argv);
/* `toolgate bench identity [ITERATIONS]`: verification and cache-hit costs. */
int identity_bench_main(int argc, char **argv);

/* The identity layer's section in a generation (NULL: see identity_config_parse). */
static inline const struct identity_config *identity_config_of(const struct gw_config *cfg)
{
    return cfg ? cfg->modules[GW_STAGE_IDENTITY] : NULL;
}

/* The layer's pipeline stage (its struct gw_module is identity_module, layers/modules.h). */
extern const struct gw_layer_ops identity_layer;

/* GET /readyz and /metrics (identity_ops.c). */
void identity_ready(const struct gw_config *cfg, json_t *checks);
void identity_metrics(const struct gw_config *cfg, struct gw_metrics_out *out);

#endif
