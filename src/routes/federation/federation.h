/*
 * federation: one client-facing MCP endpoint in front of several backends.
 *
 * A route with more than one backend is federated: toolgate owns the client's session
 * (answers initialize, ping and notifications itself), opens a session with each backend
 * lazily, per client session, and presents the backends' tools under their prefixes
 * ("ehr." + "get_patient"), their prompts the same way and their resources under URI prefixes
 * (fed_uri_prefix). The lists (tools, prompts, resources, resource templates) page through
 * the backends in configuration order; the cursor toolgate hands out names the backend and
 * that backend's own cursor. tools/call, prompts/get, resources/read, subscribe, unsubscribe
 * and completion/complete go to the backend their name or URI names, with the prefix taken
 * off.
 *
 * The client's session is one of toolgate's (mcp/session.h), standing for one backend
 * session per backend, opened lazily; the identity layer finds it for each request.
 *
 * In revision 2026-07-28 there are no sessions: each request is routed the same way on its
 * own, server/discover is answered from every backend's (merged) and subscriptions/listen is
 * fanned out to the backends (fed_merge.c for what is merged).
 */
#ifndef GW_FEDERATION_H
#define GW_FEDERATION_H

#include <jansson.h>
#include <stddef.h>

#include "lib/buf.h"
#include "core/config.h"

/* True when the route federates its backends. */
int fed_route_is_federated(const struct gw_route *route);

/*
 * The backend whose prefix starts `tool` (the longest match), and the backend's own name for
 * the tool in *rest. NULL when no prefix matches. Prompts are named the same way.
 */
const struct gw_backend *fed_backend_for_tool(const struct gw_route *route, const char *tool,
                                              const char **rest);

/* Index of a backend in its route, or -1. */
int fed_backend_index(const struct gw_route *route, const struct gw_backend *b);

/*
 * Cursors: toolgate's cursor for tools/list is "<backend index>:<backend cursor>" encoded as
 * base64url, so clients treat it as opaque. Decoding fails (-1) on anything else; *backend_cursor
 * is malloc'd (NULL when the backend's first page is meant).
 */
char *fed_cursor_encode(size_t backend_index, const char *backend_cursor);
int fed_cursor_decode(const char *cursor, size_t n_backends, size_t *backend_index,
                      char **backend_cursor);

/* The lists a federated route merges, and the method that asks for each. */
enum fed_list {
    FED_LIST_NONE = 0,
    FED_LIST_TOOLS,     /* tools/list: "tools", each by "name" */
    FED_LIST_PROMPTS,   /* prompts/list: "prompts", each by "name" */
    FED_LIST_RESOURCES, /* resources/list: "resources", each by "uri" */
    FED_LIST_TEMPLATES, /* resources/templates/list: "resourceTemplates", by "uriTemplate" */
};

/* The list a method asks for (FED_LIST_NONE when it is not one of them). */
enum fed_list fed_list_of(const char *method);

/*
 * Rewrites a backend's list result in place for the client: every entry's name gets the
 * backend's prefix (tools, prompts) or its URI the backend's URI prefix (resources,
 * templates; fed_uri_prefix); entries without a string name or URI are dropped; nextCursor
 * becomes toolgate's (this backend's next page, else the next backend's first page, else
 * none). Returns 0, or -1 when the message is not a usable result.
 */
int fed_rewrite_list(json_t *msg, const struct gw_route *route, size_t backend_index,
                     enum fed_list list);
int fed_rewrite_tools_list(json_t *msg, const struct gw_route *route, size_t backend_index);

/*
 * A backend that does not offer a list (it answered -32601) gives an empty page, so paging
 * goes on with the next backend: the error answer becomes a result with an empty list and
 * toolgate's cursor to the next backend. Returns 0 when it rewrote msg, -1 when msg is not
 * such an answer (it is left alone).
 */
int fed_empty_page(json_t *msg, const struct gw_route *route, size_t backend_index,
                   enum fed_list list);

/*
 * Resource URIs. A backend's resource URI reaches the client with the backend's URI prefix
 * put before its scheme: the backend's prefix in lower case with '_' written '-' (so that
 * "ehr." + "file:///a" is "ehr.file:///a", a URI whose scheme is "ehr.file"). The rule is
 * reversible (the prefix is taken off again on the way to the backend) and needs no state;
 * policy sees and rules name the prefixed URI, as they name prefixed tools. The route's check
 * makes sure every prefix can start a scheme (a letter first) and that the URI prefixes do
 * not overlap.
 *
 * fed_uri_prefix writes the URI prefix of `prefix` into out (size bytes); returns its length
 * or -1 when it cannot start a URI scheme or does not fit.
 */
#define FED_URI_PREFIX_MAX 128
int fed_uri_prefix(const char *prefix, char *out, size_t size);

/*
 * The backend whose URI prefix starts `uri` (a canonical URI, whose scheme is in lower case),
 * and the backend's own URI in *rest (non-empty). NULL when none does.
 */
const struct gw_backend *fed_backend_for_uri(const struct gw_route *route, const char *uri,
                                             const char **rest);

/* The client's form of a backend's URI (malloc'd), or NULL (memory, or no URI prefix). */
char *fed_uri_wrap(const struct gw_route *route, size_t backend_index, const char *uri);

/*
 * Gives every resource URI a backend's result carries the backend's URI prefix: the contents
 * of resources/read (contents[].uri), resource links and embedded resources in the content
 * of a tool's result (content[]) and of a prompt's messages (messages[].content). Returns how
 * many it rewrote, or -1 (memory).
 */
int fed_rewrite_result_uris(json_t *result, const struct gw_route *route, size_t backend_index);

/*
 * Merging backends' answers into toolgate's own (fed_merge.c).
 *
 * Capabilities: a capability any backend offers is offered, and a flag of it (listChanged,
 * subscribe) is true when any backend's is; `tools` always. Only what toolgate federates is
 * merged (tools, resources, prompts, completions, logging); anything else a backend declares
 * (experimental, tasks, extensions) is left out. fed_merge_capabilities adds `caps` to
 * `merged`.
 */
void fed_merge_capabilities(json_t *merged, const json_t *caps);

/* What toolgate says of itself to clients of a federated route (initialize, discover). */
#define FED_INSTRUCTIONS                                                                           \
    "Tools, prompts and resources of several services, each named with its service's "             \
    "prefix (service.tool; resource URIs start with the prefix before their scheme)."
/* The backends' instructions joined into a discover result are at most this long. */
#define FED_MAX_INSTRUCTIONS (16 * 1024)

/*
 * server/discover (2026-07-28), answered by toolgate from every backend's discover result:
 *   supportedVersions  toolgate's stateless revisions that every backend lists;
 *   capabilities       merged as above;
 *   instructions       toolgate's own sentence, then each backend's, introduced by its prefix
 *                      ("[ehr.] ..."), in configuration order; a backend's that would take the
 *                      whole past FED_MAX_INSTRUCTIONS is left out;
 *   _meta              toolgate's own serverInfo;
 *   ttlMs              the smallest of the backends' (one without counts as 0);
 *   cacheScope         "private" when any backend's is (or says none), else "public";
 *   resultType         "complete".
 * A result without a supportedVersions list is not added (-1); the caller leaves that backend
 * out. fed_discover_result gives the merged result (a new reference), NULL when no backend
 * was added.
 */
struct fed_discover {
    json_t *versions;
    json_t *caps;
    struct gw_buf instructions;
    size_t instructions_dropped;
    long long ttl_ms; /* -1: none yet */
    int private_scope;
    size_t n; /* backends added */
};
void fed_discover_init(struct fed_discover *d);
int fed_discover_add(struct fed_discover *d, const json_t *result, const char *prefix);
json_t *fed_discover_result(const struct fed_discover *d, const char *server_version);
void fed_discover_free(struct fed_discover *d);

/*
 * A list page for a 2026-07-28 client: resultType "complete" when the backend gave none,
 * ttlMs 0 when it gave none, and cacheScope "private" (the page is filtered per user).
 * 0, or -1 when result is not an object.
 */
int fed_mark_modern_page(json_t *result);

/*
 * subscriptions/listen (2026-07-28) fanned out: each backend is asked for the list changes
 * the client asked for (toolsListChanged, promptsListChanged, resourcesListChanged) and for
 * its own share of resourceSubscriptions (the client's canonical URIs whose URI prefix is the
 * backend's, with the prefix taken off). fed_listen_filter_for gives that backend's filter
 * (a new reference), or NULL when there is nothing it could tell (or memory).
 *
 * The client gets one acknowledgement: a list flag any backend acknowledged, and every URI a
 * backend acknowledged, with its URI prefix. fed_listen_ack_add adds one backend's
 * acknowledged filter to `combined`; 0, or -1 when they are not objects.
 */
json_t *fed_listen_filter_for(const json_t *filter, const struct gw_route *route,
                              size_t backend_index);
int fed_listen_ack_add(json_t *combined, const json_t *acked, const struct gw_route *route,
                       size_t backend_index);

/*
 * Requests a backend sends the client (sampling, elicitation, roots, ping) travel under an id
 * of toolgate's, so that two backends' ids cannot collide and a client's answer goes back to
 * the backend that asked, with the backend's own id. The table is process-wide and bounded:
 * FED_PENDING_MAX requests in all, FED_PENDING_PER_SESSION per client session, each kept
 * FED_PENDING_TTL_MS at most; an answer takes its entry (a second answer finds nothing).
 * Entries are keyed by a hash of the client's session id, so a session answers only what
 * was asked in it. An id toolgate did not issue, or one of another session, finds nothing.
 */
#define FED_PENDING_MAX 4096
#define FED_PENDING_PER_SESSION 32
#define FED_PENDING_TTL_MS (10ull * 60 * 1000)
/* "toolgate-" and 32 hex digits. */
#define FED_PENDING_ID_LEN 41

/*
 * Records a backend's request: writes toolgate's id for it into id_out. backend_id (a string
 * or an integer, at most 256 bytes as a string) is copied. 0, or -1 (full, or not an id).
 */
int fed_pending_add(const char *client_session, size_t backend_index, const json_t *backend_id,
                    uint64_t now_ms, char id_out[FED_PENDING_ID_LEN + 1]);
/* Which backend asked the request `id` of this session (the entry stays). 0, or -1. */
int fed_pending_peek(const char *client_session, const char *id, uint64_t now_ms,
                     size_t *backend_index);
/*
 * Takes the entry of `id` for an answer: the backend that asked and its own id (a new
 * reference). 0, or -1 when toolgate did not issue it in this session (or it expired).
 */
int fed_pending_take(const char *client_session, const char *id, uint64_t now_ms,
                     size_t *backend_index, json_t **backend_id);
/* Empties the table (tests). */
void fed_pending_reset(void);

#endif
