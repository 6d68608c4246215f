#include "mcp/methods.h"

#include <string.h>

#define V03 MCP_V_2025_03_26
#define V06 MCP_V_2025_06_18
#define V11 MCP_V_2025_11_25
#define VALL MCP_V_ALL_2025
#define V26 MCP_V_2026_07_28
#define CREQ MCP_DIR_CLIENT_REQUEST
#define CNOT MCP_DIR_CLIENT_NOTIFICATION
#define SREQ MCP_DIR_SERVER_REQUEST
#define SNOT MCP_DIR_SERVER_NOTIFICATION

/*
 * From the schema of each revision (ClientRequest, ClientNotification, ServerRequest,
 * ServerNotification). docs/security.md has this table in prose.
 */
static const struct mcp_method table[] = {
    /* Client requests. */
    {"initialize", VALL, CREQ, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    {"ping", VALL, CREQ | SREQ, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    {"tools/list", VALL | V26, CREQ, MCP_CLASS_LIST, MCP_TARGET_TOOL, "tools", "name"},
    {"tools/call", VALL | V26, CREQ, MCP_CLASS_ACTION, MCP_TARGET_TOOL, NULL, NULL},
    {"prompts/list", VALL | V26, CREQ, MCP_CLASS_LIST, MCP_TARGET_PROMPT, "prompts", "name"},
    {"prompts/get", VALL | V26, CREQ, MCP_CLASS_ACTION, MCP_TARGET_PROMPT, NULL, NULL},
    {"resources/list", VALL | V26, CREQ, MCP_CLASS_LIST, MCP_TARGET_RESOURCE, "resources", "uri"},
    {"resources/templates/list", VALL | V26, CREQ, MCP_CLASS_LIST, MCP_TARGET_RESOURCE,
     "resourceTemplates", "uriTemplate"},
    {"resources/read", VALL | V26, CREQ, MCP_CLASS_ACTION, MCP_TARGET_RESOURCE, NULL, NULL},
    {"resources/subscribe", VALL, CREQ, MCP_CLASS_ACTION, MCP_TARGET_RESOURCE, NULL, NULL},
    {"resources/unsubscribe", VALL, CREQ, MCP_CLASS_ACTION, MCP_TARGET_RESOURCE, NULL, NULL},
    {"completion/complete", VALL | V26, CREQ, MCP_CLASS_ACTION, MCP_TARGET_REF, NULL, NULL},
    {"logging/setLevel", VALL, CREQ, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    /* Tasks (2025-11-25): in both directions, about a task a governed call started. */
    {"tasks/get", V11, CREQ | SREQ, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    {"tasks/result", V11, CREQ | SREQ, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    {"tasks/list", V11, CREQ | SREQ, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    {"tasks/cancel", V11, CREQ | SREQ, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    /* Server requests (on a stream; the client answers them with a POST). */
    {"sampling/createMessage", VALL, SREQ, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    {"roots/list", VALL, SREQ, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    {"elicitation/create", V06 | V11, SREQ, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    /* Notifications. */
    {"notifications/initialized", VALL, CNOT, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    {"notifications/cancelled", VALL, CNOT | SNOT, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    {"notifications/progress", VALL, CNOT | SNOT, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    {"notifications/roots/list_changed", VALL, CNOT, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL,
     NULL},
    {"notifications/message", VALL | V26, SNOT, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    /* Names a resource: it reaches only users who may see that resource. */
    {"notifications/resources/updated", VALL | V26, SNOT, MCP_CLASS_PLUMBING, MCP_TARGET_RESOURCE,
     NULL, NULL},
    {"notifications/resources/list_changed", VALL | V26, SNOT, MCP_CLASS_PLUMBING, MCP_TARGET_NONE,
     NULL, NULL},
    {"notifications/tools/list_changed", VALL | V26, SNOT, MCP_CLASS_PLUMBING, MCP_TARGET_NONE,
     NULL, NULL},
    {"notifications/prompts/list_changed", VALL | V26, SNOT, MCP_CLASS_PLUMBING, MCP_TARGET_NONE,
     NULL, NULL},
    {"notifications/elicitation/complete", V11, SNOT, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL,
     NULL},
    {"notifications/tasks/status", V11, CNOT | SNOT, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL,
     NULL},
    /*
     * 2026-07-28: discovery instead of initialize; one stream of list and resource changes
     * (its resourceSubscriptions are governed like reads of those resources); progress and
     * cancellation from the server only (a client cancels by closing its stream). No server
     * requests remain: elicitation, sampling and roots travel inside results.
     */
    {"server/discover", V26, CREQ, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    {"subscriptions/listen", V26, CREQ, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    {"notifications/subscriptions/acknowledged", V26, SNOT, MCP_CLASS_PLUMBING, MCP_TARGET_NONE,
     NULL, NULL},
    {"notifications/progress", V26, SNOT, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
    {"notifications/cancelled", V26, SNOT, MCP_CLASS_PLUMBING, MCP_TARGET_NONE, NULL, NULL},
};

static const struct {
    const char *name;
    unsigned bit;
} versions[] = {
    {"2025-03-26", MCP_V_2025_03_26},
    {"2025-06-18", MCP_V_2025_06_18},
    {"2025-11-25", MCP_V_2025_11_25},
    {"2026-07-28", MCP_V_2026_07_28},
};

unsigned mcp_version_bit(const char *version)
{
    if (!version)
        return MCP_V_2025_03_26;
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++)
        if (strcmp(version, versions[i].name) == 0)
            return versions[i].bit;
    return 0;
}

const char *mcp_version_latest(void)
{
    return "2025-11-25";
}

const char *mcp_versions_supported(void)
{
    return "2026-07-28, 2025-11-25, 2025-06-18, 2025-03-26";
}

const char *const *mcp_version_names(void)
{
    static const char *const names[] = {"2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26",
                                        NULL};
    return names;
}

const struct mcp_method *mcp_method_lookup(const char *name, unsigned version, unsigned direction)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if ((table[i].versions & version) && (table[i].directions & direction) &&
            strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

const struct mcp_method *mcp_method_table(size_t *n)
{
    *n = sizeof table / sizeof table[0];
    return table;
}

int mcp_name_ok(const char *name, size_t len)
{
    if (!name || len == 0 || len > 128)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-' || c == '.' || c == '/';
        if (!ok)
            return 0;
    }
    return 1;
}
