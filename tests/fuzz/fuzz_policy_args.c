/*
 * Fuzz driver: tool-call arguments (client input) evaluated against a policy that uses every
 * predicate, plus the URL host and CIDR parsers on raw bytes. The first input byte picks the
 * tool and principal; the rest is the arguments' JSON text.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layers/policy/policy-int.h"

static const char policy_yaml[] =
    "policy:\n  rules:\n"
    "    - id: p1\n      effect: permit\n      tools: [t1, \"t*\"]\n"
    "      when:\n"
    "        - {arg: /id, matches: 'P[0-9]+(-[a-z]+)*'}\n"
    "        - {arg: /n, range: {min: -5, max: 500.5}}\n"
    "        - {arg: /a~1b/0, in: [x, 1, true]}\n"
    "    - id: p2\n      effect: permit\n      tools: [t2]\n"
    "      when:\n"
    "        - {arg: /url, host_in: [example.org, '*.example.net']}\n"
    "        - {arg: /ip, cidr: ['10.0.0.0/8', 'fd00::/8']}\n"
    "        - {arg: /s, prefix: abc}\n"
    "        - {arg: /s, max_len: 10}\n"
    "    - id: f1\n      effect: forbid\n      tools: [\"*\"]\n"
    "      when: [{arg: /tenant, eq_claim: tenant}, {arg: /x, exists: true}]\n"
    "    - id: p3\n      effect: permit\n      required_scopes: [s9]\n"
    "      when: [{arg: '', max_len: 3}, {arg: /e, eq: 'v'}]\n";

static struct policy_config *pc;

static void setup(void)
{
    struct cfg_doc doc;
    struct cfg_error err;
    if (cfg_load_string(policy_yaml, sizeof policy_yaml - 1, "fuzz", &doc, &err) != 0 ||
        policy_config_parse(&doc, cfg_map_get(doc.root, "policy"), &pc, &err) != 0)
        abort();
    cfg_doc_free(&doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!pc)
        setup();
    if (size < 1 || size > 65536)
        return 0;
    static const char *const tools[] = {"t1", "t2", "t3", "tx", "other", "t"};
    const char *roles[] = {"r1"};
    const char *scopes[] = {"s1", "s9"};
    struct policy_principal pr = {.subject = "u1",
                                  .tenant = (data[0] & 8) ? "t1" : NULL,
                                  .client_id = "c",
                                  .roles = roles,
                                  .n_roles = 1,
                                  .scopes = scopes,
                                  .n_scopes = (data[0] & 16) ? 2 : 1};
    const char *tool = tools[data[0] % 6];
    json_t *args = json_loadb((const char *)data + 1, size - 1,
                              JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
    struct policy_query q = {POLICY_ACTION_TOOL, tool, strlen(tool), args, &pr, NULL};
    struct policy_result res;
    struct gw_buf why = {0};
    enum policy_outcome a = policy_decide(pc, &q, &res, NULL);
    enum policy_outcome b = policy_decide(pc, &q, &res, &why);
    if (a != b)
        abort();
    (void)policy_visible(pc, POLICY_ACTION_TOOL, tool, strlen(tool), &pr);
    gw_buf_free(&why);
    json_decref(args);

    char host[256];
    (void)policy_url_host((const char *)data + 1, size - 1, host, sizeof host);
    char *text = strndup((const char *)data + 1, size - 1 < 80 ? size - 1 : 80);
    if (text) {
        struct policy_cidr c;
        char msg[200];
        (void)policy_cidr_parse(text, &c, msg, sizeof msg);
        char **tokens = NULL;
        size_t n = 0;
        if (policy_pointer_parse(text, &tokens, &n, msg, sizeof msg) == 0) {
            for (size_t i = 0; i < n; i++)
                free(tokens[i]);
            free(tokens);
        }
        free(text);
    }
    return 0;
}
