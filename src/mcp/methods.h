/*
 * methods: every MCP method toolgate understands, per protocol revision and direction, and
 * what it is: a governed action on a target (policy decides it), a list (filtered per user),
 * or plumbing (protocol machinery, allowed with a valid identity). A method that is not in
 * the table for the request's revision and direction is not understood, and what toolgate
 * does not understand it does not let through: a client's is refused with -32601, a
 * backend's does not reach the client. Names are compared byte for byte ("Tools/Call" is not
 * tools/call).
 *
 * The revisions are the published ones (2025-03-26, 2025-06-18, 2025-11-25, 2026-07-28); a
 * request without MCP-Protocol-Version is 2025-03-26, as the specification says.
 */
#ifndef GW_MCP_METHODS_H
#define GW_MCP_METHODS_H

#include <stddef.h>

/* Protocol revisions, as bits. */
#define MCP_V_2025_03_26 0x01u
#define MCP_V_2025_06_18 0x02u
#define MCP_V_2025_11_25 0x04u
#define MCP_V_ALL_2025 (MCP_V_2025_03_26 | MCP_V_2025_06_18 | MCP_V_2025_11_25)
/*
 * The stateless revision: no sessions, no initialize, POST only, every request carrying its
 * revision and the client's capabilities in params._meta and mirrored in headers
 * (mcp/modern.h).
 */
#define MCP_V_2026_07_28 0x08u

/* Directions, as bits. */
#define MCP_DIR_CLIENT_REQUEST 0x01u      /* client -> server, with an id */
#define MCP_DIR_CLIENT_NOTIFICATION 0x02u /* client -> server, no id */
#define MCP_DIR_SERVER_REQUEST 0x04u      /* server -> client (on a stream), with an id */
#define MCP_DIR_SERVER_NOTIFICATION 0x08u /* server -> client, no id */

enum mcp_method_class {
    MCP_CLASS_PLUMBING = 0, /* initialize, ping, notifications, logging level, tasks... */
    MCP_CLASS_ACTION,       /* acts on a target policy decides */
    MCP_CLASS_LIST,         /* a list filtered per user */
};

/* What identifies the target of an action, and where it is in params. */
enum mcp_target {
    MCP_TARGET_NONE = 0,
    MCP_TARGET_TOOL,     /* params.name */
    MCP_TARGET_PROMPT,   /* params.name */
    MCP_TARGET_RESOURCE, /* params.uri */
    MCP_TARGET_REF,      /* params.ref: {type: ref/prompt, name} or {type: ref/resource, uri} */
};

struct mcp_method {
    const char *name;
    unsigned versions;   /* MCP_V_* where it exists */
    unsigned directions; /* MCP_DIR_* it may travel in */
    enum mcp_method_class cls;
    enum mcp_target target; /* ACTION: what it acts on; server notifications: what they name */
    const char *list_key;   /* LIST: the result's array ("tools", "resourceTemplates", ...) */
    const char *item_key;   /* LIST: each entry's identifying field ("name", "uri", ...) */
};

/* The revision's bit for an MCP-Protocol-Version value (NULL: 2025-03-26); 0 when unknown. */
unsigned mcp_version_bit(const char *version);
/*
 * The newest revision of the session era toolgate understands ("2025-11-25", what initialize
 * negotiates to), and all revisions, comma-separated.
 */
const char *mcp_version_latest(void);
const char *mcp_versions_supported(void);
/* Every revision's name, newest first, NULL-terminated. */
const char *const *mcp_version_names(void);

/* The method `name` in revision `version` travelling in `direction`, or NULL. */
const struct mcp_method *mcp_method_lookup(const char *name, unsigned version, unsigned direction);

/* The table itself (for documentation and tests). */
const struct mcp_method *mcp_method_table(size_t *n);

/*
 * Tool and prompt names as toolgate accepts them: 1 to 128 of ASCII letters, digits, '_',
 * '-', '.' and '/' (the MCP specification's set, with '/' that some servers use). Anything
 * else (spaces, controls, other scripts, an empty name) is refused rather than compared.
 */
int mcp_name_ok(const char *name, size_t len);

#endif
