/*
 * `toolgate tools list|diff|approve|reject --config FILE [--backend KEY] [--kind KIND] [NAME]`:
 * the operator's side of the quarantine. KEY is what names a pinned list ("route/backend",
 * or the route of a federated one, as `list` prints it); KIND is tool (the default), prompt,
 * resource or resource_template.
 */
#include "layers/integrity/integrity.h"

#include <stdlib.h>
#include <string.h>

static int usage(void)
{
    fprintf(stderr, "usage: toolgate tools list [--pending] --config FILE\n"
                    "       toolgate tools diff|approve|reject --config FILE --backend KEY "
                    "[--kind KIND] NAME\n");
    return 2;
}

int integrity_cli_main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *verb = argv[1], *config = NULL, *backend = NULL, *kind = "tool", *name = NULL;
    int pending = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[++i];
        else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc)
            backend = argv[++i];
        else if (strcmp(argv[i], "--kind") == 0 && i + 1 < argc)
            kind = argv[++i];
        else if (strcmp(argv[i], "--pending") == 0)
            pending = 1;
        else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else
            return usage();
    }
    int is_list = strcmp(verb, "list") == 0;
    if (!config || (!is_list && (!backend || !name)) ||
        (!is_list && strcmp(verb, "diff") && strcmp(verb, "approve") && strcmp(verb, "reject")))
        return usage();
    struct cfg_error err = {{0}};
    struct gw_config *cfg = gw_config_load(config, &err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const struct integrity_config *ic = integrity_config_of(cfg);
    if (!ic || !ic->store_path) {
        fprintf(stderr, "%s: integrity.store names no pin file (pins live in memory only)\n",
                config);
        gw_config_free(cfg);
        return 1;
    }
    char msg[256];
    struct integrity_store *s = integrity_store_open(ic->store_path, msg, sizeof msg);
    gw_config_free(cfg);
    if (!s) {
        fprintf(stderr, "%s\n", msg);
        return 1;
    }
    int rc = 0;
    if (is_list) {
        rc = integrity_store_list(s, stdout, pending) == 0 ? 0 : 1;
    } else if (strcmp(verb, "diff") == 0) {
        rc = integrity_store_diff(s, stdout, backend, kind, name) == 0 ? 0 : 1;
        if (rc)
            fprintf(stderr, "no pin for %s %s on %s\n", kind, name, backend);
    } else {
        int approve = strcmp(verb, "approve") == 0;
        int r = integrity_store_decide(s, backend, kind, name, approve);
        if (r > 0)
            printf("%s %s on %s: %s\n", kind, name, backend, approve ? "approved" : "rejected");
        else
            fprintf(stderr, "%s %s on %s: %s\n", kind, name, backend,
                    r < 0 ? "the pin store failed" : "nothing awaits a decision by that name");
        rc = r > 0 ? 0 : 1;
    }
    integrity_store_close(s);
    return rc;
}
