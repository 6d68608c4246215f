/*
 * libFuzzer driver for an approver's token (the admin API's X-Approver-Token, verified by
 * identity_verify_person outside any request). The input is the token; the configuration has
 * one issuer whose key set is a fixed Ed25519 key (RFC 8032's first test key) in a file.
 * Invariants: a refusal leaves the identity empty; a verified identity has a subject and the
 * configured issuer, and its roles and scopes are NULL-terminated lists of the counted length.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/request.h"
#include "layers/identity/identity.h"
#include "lib/cfg.h"
#include "lib/jwt.h"

#define ISSUER "https://idp.test/"

static struct identity_config *config(void)
{
    static struct identity_config *ic;
    static int tried;
    if (tried)
        return ic;
    tried = 1;
    char path[] = "/tmp/toolgate-fuzz-approver-XXXXXX";
    int fd = mkstemp(path);
    static const char jwks[] = "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"fz\","
                               "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}]}";
    if (fd < 0 || write(fd, jwks, sizeof jwks - 1) != (ssize_t)(sizeof jwks - 1))
        abort();
    close(fd);
    char yaml[512];
    snprintf(
        yaml, sizeof yaml,
        "identity:\n  issuers:\n    - {issuer: \"%s\", audiences: [\"http://127.0.0.1:8080/mcp\"],"
        " jwks_file: \"%s\", algorithms: [EdDSA]}\n",
        ISSUER, path);
    struct cfg_doc doc = {0};
    struct cfg_error err = {{0}};
    if (cfg_load_string(yaml, strlen(yaml), "fuzz.yaml", &doc, &err) != 0 ||
        identity_config_parse(&doc, cfg_map_get(doc.root, "identity"), &ic, &err) != 0 ||
        identity_start(ic) != 0)
        abort();
    cfg_doc_free(&doc);
    unlink(path);
    return ic;
}

static void check_list(char **v, size_t n)
{
    if (!v)
        abort();
    for (size_t i = 0; i < n; i++)
        if (!v[i])
            abort();
    if (v[n])
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct identity_config *ic = config();
    struct gw_identity id;
    struct gw_slice token = {(const char *)data, size};
    int err = identity_verify_person(ic, token, &id);
    if (err != JWT_OK) {
        if (id.verified || id.subject || id.issuer || id.tenant || id.client_id || id.roles ||
            id.scopes || id.n_roles || id.n_scopes)
            abort();
        return 0;
    }
    if (!id.verified || !id.subject || !id.subject[0] || !id.issuer ||
        strcmp(id.issuer, ISSUER) != 0)
        abort();
    check_list(id.roles, id.n_roles);
    check_list(id.scopes, id.n_scopes);
    gw_identity_clear(&id);
    return 0;
}
