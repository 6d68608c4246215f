/* admin: the admin listener's handler (admin.h). */
#include "admin/admin.h"
#include "admin/admin_api.h"
#include "core/module.h"
#include "core/reload.h"
#include "core/stats.h"
#include "lib/digest.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/timeutil.h"
#include "core/route_kind.h"
#include "mcp/methods.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* When the admin handler was first asked for (the process's start, near enough). */
static uint64_t started_ns;

int admin_peer_is_loopback(const struct sockaddr_storage *peer)
{
    if (peer->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)peer;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (peer->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)peer;
        if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) && a->sin6_addr.s6_addr[12] == 127;
    }
    return 0;
}

int admin_authorize(const struct gw_admin_config *ac, const struct sockaddr_storage *peer,
                    struct gw_slice authorization, size_t n_authorization)
{
    static const char scheme[] = "Bearer ";
    if (!ac->has_token)
        return admin_peer_is_loopback(peer) ? 0 : 403;
    if (n_authorization != 1 || !authorization.ptr || authorization.len <= sizeof scheme - 1 ||
        strncasecmp(authorization.ptr, scheme, sizeof scheme - 1) != 0)
        return 401;
    struct gw_slice token = {authorization.ptr + sizeof scheme - 1,
                             authorization.len - (sizeof scheme - 1)};
    while (token.len && token.ptr[0] == ' ') {
        token.ptr++;
        token.len--;
    }
    while (token.len && (token.ptr[token.len - 1] == ' ' || token.ptr[token.len - 1] == '\t'))
        token.len--;
    if (token.len == 0)
        return 401;
    /* Digests have one length whatever was sent, so the comparison reveals nothing. */
    uint8_t got[32];
    gw_sha256(token.ptr, token.len, got);
    return CRYPTO_memcmp(got, ac->token_sha256, sizeof got) == 0 ? 0 : 403;
}

/* ---- answers ---- */

static void respond(struct gw_conn *c, int status, const char *content_type, const char *body,
                    size_t len, const struct gw_header *extra, size_t n_extra)
{
    static const struct gw_header nostore = {GW_SLICE_LIT("Cache-Control"),
                                             GW_SLICE_LIT("no-store")};
    struct gw_header hdrs[4];
    size_t n = 0;
    hdrs[n++] = nostore;
    for (size_t i = 0; i < n_extra && n < 4; i++)
        hdrs[n++] = extra[i];
    gw_conn_respond(c, status, content_type, body, len, hdrs, n);
    gw_conn_end(c, 0);
}

static void respond_json(struct gw_conn *c, int status, const char *body,
                         const struct gw_header *extra, size_t n_extra)
{
    respond(c, status, "application/json", body, strlen(body), extra, n_extra);
}

static void respond_tree(struct gw_conn *c, int status, json_t *tree)
{
    char *text = tree ? json_dumps(tree, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (text)
        respond_json(c, status, text, NULL, 0);
    else
        respond_json(c, 503, "{\"error\":\"out of memory\"}", NULL, 0);
    free(text);
}

static int check_failing(json_t *check)
{
    const char *state = json_string_value(json_object_get(check, "state"));
    return !state || strcmp(state, "ok") != 0;
}

/* Every readiness check and its state; *failing set when one is not "ok". NULL: memory. */
static json_t *ready_checks(const struct gw_config *cfg, int draining, int *failing)
{
    json_t *checks = json_object();
    if (!checks)
        return NULL;
    json_object_set_new(checks, "config", json_pack("{s:s}", "state", "ok"));
    json_object_set_new(checks, "server",
                        draining ? json_pack("{s:s, s:s}", "state", "failing", "detail",
                                             "draining: the gateway is shutting down")
                                 : json_pack("{s:s}", "state", "ok"));
    for (size_t m = 0; m < gw_n_modules; m++)
        if (gw_modules[m]->ready)
            gw_modules[m]->ready(cfg, checks);
    *failing = 0;
    const char *name;
    json_t *check;
    json_object_foreach(checks, name, check) *failing |= check_failing(check);
    return checks;
}

/*
 * Ready when the configuration is loaded, the server is not draining, and every module's
 * checks are "ok". The body names each check and its state either way.
 */
static void serve_readyz(struct gw_conn *c, const struct gw_config *cfg, int draining)
{
    int failing = 0;
    json_t *checks = ready_checks(cfg, draining, &failing);
    json_t *body = checks ? json_pack("{s:s, s:o}", "status", failing ? "not_ready" : "ready",
                                      "checks", checks)
                          : NULL;
    if (!body) {
        respond_json(c, 503, "{\"error\":\"out of memory\"}", NULL, 0);
        return;
    }
    respond_tree(c, failing ? 503 : 200, body);
    json_decref(body);
}

/*
 * What `toolgate status` shows: the build, how long the process has run, the configuration
 * generation (its file and hash, and each route's kind and backends; no secret of it), and
 * the readiness checks. Always 200: the state is in the body.
 */
static void serve_status(struct gw_conn *c, const struct gw_config *cfg, int draining)
{
    int failing = 0;
    json_t *checks = ready_checks(cfg, draining, &failing);
    json_t *routes = json_array();
    for (size_t i = 0; routes && i < cfg->n_routes; i++) {
        const struct gw_route *r = &cfg->routes[i];
        json_t *bes = json_array();
        for (size_t b = 0; bes && b < r->n_backends; b++) {
            const struct gw_backend *be = &r->backends[b];
            const char *protocol = "auto";
            for (const char *const *v = mcp_version_names(); *v; v++)
                if (be->protocol && mcp_version_bit(*v) == be->protocol)
                    protocol = *v;
            json_array_append_new(bes, json_pack("{s:s, s:i, s:s}", "name", be->name, "endpoints",
                                                 (int)be->n_endpoints, "protocol", protocol));
        }
        json_array_append_new(routes,
                              json_pack("{s:s, s:s, s:s, s:o}", "name", r->name, "path", r->path,
                                        "kind", r->kind_ops ? r->kind_ops->name : "mcp", "backends",
                                        bes ? bes : json_array()));
    }
    uint64_t now = gw_mono_ns();
    json_t *body =
        checks && routes
            ? json_pack("{s:s, s:s, s:s, s:I, s:{s:s?, s:s, s:o}, s:s, s:o}", "version",
                        TOOLGATE_VERSION, "revision", TOOLGATE_REV, "status",
                        draining  ? "draining"
                        : failing ? "not_ready"
                                  : "ready",
                        "uptime_s", (json_int_t)((now - started_ns) / 1000000000u), "config",
                        "path", cfg->path, "sha256", cfg->config_hash, "routes", routes, "ready",
                        failing ? "no" : "yes", "checks", checks)
            : NULL;
    if (body)
        json_object_set_new(body, "reload", gw_reload_status_json());
    if (!body) {
        respond_json(c, 503, "{\"error\":\"out of memory\"}", NULL, 0);
        return;
    }
    respond_tree(c, 200, body);
    json_decref(body);
}

static void serve_metrics(struct gw_conn *c, const struct gw_config *cfg)
{
    struct gw_metrics_out out = {{0}};
    gw_stats_write(cfg, &out);
    for (size_t m = 0; m < gw_n_modules; m++)
        if (gw_modules[m]->metrics)
            gw_modules[m]->metrics(cfg, &out);
    respond(c, 200, METRICS_CONTENT_TYPE, out.buf.data ? out.buf.data : "", out.buf.len, NULL, 0);
    gw_buf_free(&out.buf);
}

static struct gw_slice find_header(const struct http1_parser *p, const char *name, size_t *count)
{
    struct gw_slice v = GW_SLICE_NULL;
    *count = 0;
    for (size_t i = 0; i < p->n_headers; i++)
        if (gw_slice_casecmp_eq(p->headers[i].name, name)) {
            if (!v.ptr)
                v = p->headers[i].value;
            (*count)++;
        }
    return v;
}

static void handle_admin(void *ctx, struct gw_conn *c, struct http1_parser *p)
{
    (void)ctx;
    struct gw_worker *w = gw_conn_worker(c);
    const struct gw_config *cfg = gw_worker_config(w);
    if (admin_ui_serve(c, p, cfg))
        return;
    struct sockaddr_storage peer;
    size_t n_auth = 0;
    struct gw_slice auth = find_header(p, "Authorization", &n_auth);
    int verdict =
        gw_conn_peer(c, &peer) == 0 ? admin_authorize(&cfg->admin, &peer, auth, n_auth) : 403;
    if (verdict == 401) {
        static const struct gw_header challenge = {GW_SLICE_LIT("WWW-Authenticate"),
                                                   GW_SLICE_LIT("Bearer realm=\"toolgate-admin\"")};
        respond_json(c, 401, "{\"error\":\"unauthorized: send Authorization: Bearer <token>\"}",
                     &challenge, 1);
        return;
    }
    if (verdict != 0) {
        gw_log(GW_LOG_WARN, "admin_refused", NULL, NULL, "admin request refused (%s)",
               cfg->admin.has_token ? "wrong token" : "peer is not loopback");
        respond_json(c, 403, "{\"error\":\"forbidden\"}", NULL, 0);
        return;
    }
    if (gw_slice_eq(p->path, "/admin/reload")) {
        admin_reload_post(c, p);
        return;
    }
    if (admin_api_serve(c, p, cfg))
        return;
    int known = gw_slice_eq(p->path, "/healthz") || gw_slice_eq(p->path, "/readyz") ||
                gw_slice_eq(p->path, "/metrics") || gw_slice_eq(p->path, "/admin/status");
    if (!known) {
        respond_json(c, 404, "{\"error\":\"not found\"}", NULL, 0);
        return;
    }
    if (p->method != GW_HTTP_GET) {
        static const struct gw_header allow = {GW_SLICE_LIT("Allow"), GW_SLICE_LIT("GET")};
        respond_json(c, 405, "{\"error\":\"method not allowed\"}", &allow, 1);
        return;
    }
    int draining = gw_worker_stopping(w);
    if (gw_slice_eq(p->path, "/healthz"))
        respond_json(c, 200, draining ? "{\"status\":\"draining\"}" : "{\"status\":\"ok\"}", NULL,
                     0);
    else if (gw_slice_eq(p->path, "/readyz"))
        serve_readyz(c, cfg, draining);
    else if (gw_slice_eq(p->path, "/admin/status"))
        serve_status(c, cfg, draining);
    else
        serve_metrics(c, cfg);
}

const struct gw_handler *admin_handler(void)
{
    static const struct gw_handler h = {handle_admin, NULL};
    if (!started_ns)
        started_ns = gw_mono_ns();
    return &h;
}
