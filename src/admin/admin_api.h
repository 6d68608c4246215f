/*
 * admin_api: the admin listener's JSON API (GET /admin/api/...), its live feed of decisions
 * (GET /admin/api/events, server-sent events) and the dashboard (GET /ui), all on the admin
 * listener only. docs/operations.md ("Admin API", "Dashboard") lists every endpoint.
 *
 * Answers that read a store (the audit log, the configuration file) are computed on libuv's
 * thread pool and sent from the worker's loop; the loop never waits on a disk. Modules answer
 * the topics they own through their admin_api hook (core/module.h); this file names none.
 */
#ifndef GW_ADMIN_API_H
#define GW_ADMIN_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/http1.h"
#include "core/request.h"
#include "core/server.h"

/* Bounds on a query string: parameters, and the length of a name and of a value. */
#define ADMIN_API_MAX_PARAMS 16
#define ADMIN_API_MAX_NAME 32
#define ADMIN_API_MAX_VALUE 256

/*
 * Serves the request when its path is the API's (/admin/api/...) and returns 1; returns 0
 * for any other path. Call after the request was authorized.
 */
int admin_api_serve(struct gw_conn *c, struct http1_parser *p, const struct gw_config *cfg);

/*
 * Serves /ui and its assets (static, compiled into the binary; no data, so the page loads
 * before the token is known and asks for it). Returns 1 when the path is the dashboard's.
 */
int admin_ui_serve(struct gw_conn *c, struct http1_parser *p, const struct gw_config *cfg);

/* The dashboard's files, compiled in from src/admin/ui/ (generated at build time). */
struct admin_ui_asset {
    const char *name; /* "index.html" */
    const unsigned char *data;
    size_t len;
};
extern const struct admin_ui_asset admin_ui_assets[]; /* ends with a NULL name */

/*
 * Parses a query string ("a=1&b=x%20y") into an object of strings. Returns 0, or -1 with a
 * sentence in err (a malformed escape, a name not [a-z_], a name twice, beyond the bounds).
 */
int admin_api_parse_query(struct gw_slice query, json_t **out, char *err, size_t errlen);

/*
 * The configuration file of a generation as JSON with every secret elided (admin_elide.c).
 * A map member is elided, whatever its value, when its name says it holds a secret or names
 * a file holding one: it contains (case-insensitively) "token", "secret", "passw", "key",
 * "credential", "auth", "cookie", "private", "hmac", "salt" or "signature"; so is every value
 * under a "headers" or "inject" map. In any other string, a URL's user information and the
 * value of a "password=" pair are elided. What is elided reads "[elided]".
 */
json_t *admin_elide_node(const struct cfg_node *node);
int admin_elide_key_is_secret(const char *key);
/* A string with URL passwords and password= values elided (malloc'd), or NULL on memory. */
char *admin_elide_string(const char *s);

/* ---- the feed of decisions (admin_feed.c) ---- */

#define ADMIN_FEED_CAPACITY 1024 /* events the ring keeps */
#define ADMIN_FEED_MAX_SUBSCRIBERS 16
/* A subscriber with more than this queued and not taken by its socket skips ahead. */
#define ADMIN_FEED_MAX_QUEUED (256u * 1024)

/*
 * One completed request, as the feed shows it: who, what, the outcome and its cost. No
 * argument values, no PII values (a tool name the safety layer found PII in is
 * "[redacted]"), no tokens.
 */
struct admin_feed_event {
    uint64_t seq; /* 1, 2, ...: the ring's own numbering, process-wide */
    int64_t time_ms;
    char route[64];
    char method[32];
    char tool[96];
    char user[96];
    char tenant[64];
    char decision[8]; /* allow | deny | error */
    char layer[16];
    char reason[64];
    char rule[128];
    int64_t cost_micro;
    uint64_t latency_us;
    unsigned pii_findings;
    int status;
};

/* Adds an event (copied); callable from any thread, never blocks for long. */
void admin_feed_push(const struct admin_feed_event *ev);
/* Builds the event of a completed request and pushes it (exchange.c, when a request ends). */
void admin_feed_request_done(const struct gw_request *req);
/*
 * Copies up to max events with seq > after, oldest first, into out. Returns how many;
 * *skipped is set to how many with seq > after the ring no longer holds (a slow reader).
 */
size_t admin_feed_read(uint64_t after, struct admin_feed_event *out, size_t max, uint64_t *skipped);
/* The seq of the newest event (0 when none). */
uint64_t admin_feed_last_seq(void);
/* An event as a JSON object. */
json_t *admin_feed_event_json(const struct admin_feed_event *ev);
/* Tests: forgets every event. */
void admin_feed_reset(void);

/* GET /admin/api/events: starts a server-sent event stream of the feed on this connection. */
void admin_feed_serve(struct gw_conn *c, const json_t *params);
/* Subscribers connected now. */
int admin_feed_subscribers(void);

#endif
