/*
 * Fuzz driver: the `policy` section parser and compiler (YAML text in). A config that compiles
 * is then asked a few decisions, so compiled structures are exercised too.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "layers/policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    struct cfg_doc doc;
    struct cfg_error err;
    struct policy_config *pc = NULL;
    if (cfg_load_string((const char *)data, size, "fuzz", &doc, &err) != 0)
        return 0;
    const struct cfg_node *section = cfg_map_get(doc.root, "policy");
    if (section && policy_config_parse(&doc, section, &pc, &err) == 0) {
        static const char *const targets[] = {"a", "ehr.get_patient", "file:///x", "*"};
        const char *roles[] = {"doctor", "admin"};
        const char *scopes[] = {"tools.read"};
        struct policy_principal pr = {"alice", "t1", "c1", roles, 2, scopes, 1, pc};
        json_t *args = json_pack("{s:s, s:i, s:[s], s:{s:b}}", "patient_id", "P1", "amount", 10,
                                 "list", "x", "o", "k", 1);
        for (int a = 0; a < POLICY_ACTION_COUNT; a++) {
            for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
                struct policy_query q = {(enum policy_action)a, targets[t], strlen(targets[t]),
                                         args, &pr};
                struct policy_result res;
                policy_decide(pc, &q, &res, NULL);
            }
        }
        json_decref(args);
        policy_config_free(pc);
    }
    cfg_doc_free(&doc);
    return 0;
}
