/* The identity layer as a module: its section, runtime, stage, metadata and commands. */
#include "layers/identity/identity.h"
#include "lib/jwt.h"
#include "layers/layer.h"

#include <string.h>

static int parse(const struct cfg_doc *doc, const struct cfg_node *node, void **out,
                 struct cfg_error *err)
{
    struct identity_config *ic = NULL;
    int rc = identity_config_parse(doc, node, &ic, err);
    *out = ic;
    return rc;
}

static void conf_free(void *conf)
{
    identity_config_free(conf);
}

static int start(const struct gw_config *cfg)
{
    return identity_start(identity_config_of(cfg));
}

/*
 * RFC 9728 protected resource metadata: the root document describes public_url itself, the
 * path-suffixed one each route's resource (any kind of route, by its exact path).
 */
static int well_known(const struct gw_config *cfg, struct gw_slice path, struct gw_buf *out)
{
    static const char prm[] = "/.well-known/oauth-protected-resource";
    const size_t plen = sizeof prm - 1;
    if (path.len < plen || memcmp(path.ptr, prm, plen) != 0)
        return 0;
    const char *route_path = NULL;
    if (path.len > plen) {
        struct gw_slice rest = {path.ptr + plen, path.len - plen};
        for (size_t i = 0; i < cfg->n_routes && !route_path; i++)
            if (gw_slice_eq(rest, cfg->routes[i].path))
                route_path = cfg->routes[i].path;
        if (!route_path)
            return -2;
    }
    if (!identity_config_of(cfg))
        return -2;
    return identity_metadata_json(cfg, route_path, out) == 0 ? 1 : -1;
}

static const struct gw_command commands[] = {
    {"keys", "generate ...       make a signing key pair and its JWKS (development tool)",
     identity_cli_keys},
    {"token", "...               mint a signed test JWT (development tool)", identity_cli_token},
    {NULL, NULL, NULL},
};

static const char *const reasons[] = {
    "identity.bad_alg",
    "identity.bad_audience",
    "identity.bad_claims",
    "identity.bad_iat",
    "identity.bad_issuer",
    "identity.bad_scheme",
    "identity.bad_signature",
    "identity.bad_typ",
    "identity.crit",
    "identity.expired",
    "identity.internal",
    "identity.invalid_token",
    "identity.malformed",
    "identity.missing_exp",
    "identity.missing_token",
    "identity.multiple_authorization",
    "identity.no_keys",
    "identity.not_configured",
    "identity.not_yet_valid",
    "identity.session_store",
    "identity.token_in_query",
    "identity.token_too_large",
    "identity.unknown_kid",
    "identity.unknown_session",
    NULL,
};

/*
 * A reload builds the next generation's key store and token cache beside the running ones
 * (identity.h); requests keep verifying with the generation they started on.
 */
static int prepare(const struct gw_config *running, const struct gw_config *next,
                   struct cfg_error *err)
{
    return identity_reload_prepare(identity_config_of(running), identity_config_of(next), err);
}

static void commit(const struct gw_config *next)
{
    identity_reload_commit(identity_config_of(next));
}

static void abort_reload(const struct gw_config *next)
{
    identity_reload_abort(identity_config_of(next));
}

/* An approver's token for the admin API (identity_verify_person): refused or unavailable. */
static int verify_person(const struct gw_config *cfg, struct gw_slice token,
                         struct gw_identity *out)
{
    int err = identity_verify_person(identity_config_of(cfg), token, out);
    return err == JWT_OK ? 0 : err == JWT_E_NO_KEYS ? -2 : -1;
}

static int verifies_people(const struct gw_config *cfg)
{
    const struct identity_config *ic = identity_config_of(cfg);
    return ic && ic->mode == IDENTITY_MODE_ON && ic->n_issuers > 0;
}

const struct gw_module identity_module = {
    .name = "identity",
    .config_key = "identity",
    .parse = parse,
    .free = conf_free,
    .start = start,
    .stop = identity_stop,
    .prepare = prepare,
    .commit = commit,
    .abort = abort_reload,
    .layer = &identity_layer,
    .well_known = well_known,
    .reason_codes = reasons,
    .ready = identity_ready,
    .metrics = identity_metrics,
    .commands = commands,
    .bench = identity_bench_main,
    .verify_person = verify_person,
    .verifies_people = verifies_people,
};
