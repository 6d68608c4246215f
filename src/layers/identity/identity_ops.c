/*
 * identity_ops: what the identity layer tells operators: readiness (every issuer whose keys
 * are fetched, from a jwks_uri or through discovery, has keys; the detail says why not) and
 * metrics (per issuer: keys held, their age, fetches and failures, metadata failures).
 * Issuers come from the configuration (at most IDENTITY_MAX_ISSUERS), so the label is bounded.
 */
#include "layers/identity/identity.h"
#include "layers/identity/keystore.h"
#include "lib/metrics.h"

#include <stdio.h>

void identity_ready(const struct gw_config *cfg, json_t *checks)
{
    const struct identity_config *ic = identity_config_of(cfg);
    if (!ic || ic->mode == IDENTITY_MODE_OFF)
        return;
    int fetched = 1;
    char detail[600] = "";
    for (size_t i = 0; i < ic->n_issuers; i++) {
        struct keystore_stats st;
        if (ic->issuers[i].jwks_file)
            continue;
        if (keystore_stats(identity_keys_of(ic), ic->issuers[i].issuer, &st) != 0 || !st.has_keys) {
            if (fetched)
                snprintf(detail, sizeof detail, "no keys fetched yet for issuer %.200s%s%.300s",
                         ic->issuers[i].issuer, st.last_error[0] ? ": " : "", st.last_error);
            fetched = 0;
        }
    }
    json_t *c = json_pack("{s:s}", "state", fetched ? "ok" : "failing");
    if (c && !fetched)
        json_object_set_new(c, "detail", json_string(detail));
    json_object_set_new(checks, "identity_jwks", c);
}

void identity_metrics(const struct gw_config *cfg, struct gw_metrics_out *out)
{
    const struct identity_config *ic = identity_config_of(cfg);
    if (!ic || ic->mode == IDENTITY_MODE_OFF || ic->n_issuers == 0)
        return;
    struct keystore_stats st[IDENTITY_MAX_ISSUERS];
    size_t n = ic->n_issuers < IDENTITY_MAX_ISSUERS ? ic->n_issuers : IDENTITY_MAX_ISSUERS;
    for (size_t i = 0; i < n; i++)
        keystore_stats(identity_keys_of(ic), ic->issuers[i].issuer, &st[i]);
    static const struct {
        const char *name, *type, *help;
    } families[] = {
        {"toolgate_jwks_keys", "gauge", "Verification keys held per issuer."},
        {"toolgate_jwks_key_age_seconds", "gauge",
         "Seconds since the issuer's key set was fetched (or loaded from its file)."},
        {"toolgate_jwks_fetches_total", "counter", "JWKS fetch attempts per issuer."},
        {"toolgate_jwks_fetch_failures", "gauge",
         "Failed JWKS fetches in a row per issuer (0 after a good one)."},
        {"toolgate_idp_discovery_failures", "gauge",
         "Failed issuer metadata reads in a row per discovered issuer (0 after a good one)."},
    };
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        metrics_family(out, families[f].name, families[f].type, families[f].help);
        for (size_t i = 0; i < n; i++) {
            struct metrics_label l[] = {{"issuer", ic->issuers[i].issuer}};
            double v = f == 0   ? (double)st[i].n_keys
                       : f == 1 ? (double)st[i].age_ms / 1000.0
                       : f == 2 ? (double)st[i].fetches
                       : f == 3 ? (double)st[i].failures
                                : (double)st[i].discovery_failures;
            metrics_sample(out, families[f].name, l, 1, v);
        }
    }
}
