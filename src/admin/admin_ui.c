/*
 * admin_ui: the dashboard's files (GET /ui, /ui/<file>). They are static and hold no data:
 * the page fetches everything from the admin API with the operator's token, so they are
 * served before a token is asked for (still to loopback peers only when there is none).
 *
 * The Content-Security-Policy allows nothing but the admin listener's own origin: no inline
 * script or style, no other host, no framing.
 */
#include "admin/admin.h"
#include "admin/admin_api.h"

#include <string.h>

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot && strcmp(dot, ".html") == 0)
        return "text/html; charset=utf-8";
    if (dot && strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    if (dot && strcmp(dot, ".js") == 0)
        return "text/javascript; charset=utf-8";
    if (dot && strcmp(dot, ".svg") == 0)
        return "image/svg+xml";
    return "application/octet-stream";
}

static void answer(struct gw_conn *c, int status, const char *type, const void *body, size_t len)
{
    static const struct gw_header hdrs[] = {
        {GW_SLICE_LIT("Content-Security-Policy"),
         GW_SLICE_LIT("default-src 'self'; base-uri 'none'; form-action 'self'; "
                      "frame-ancestors 'none'")},
        {GW_SLICE_LIT("X-Content-Type-Options"), GW_SLICE_LIT("nosniff")},
        {GW_SLICE_LIT("Referrer-Policy"), GW_SLICE_LIT("no-referrer")},
        {GW_SLICE_LIT("Cache-Control"), GW_SLICE_LIT("no-store")},
    };
    gw_conn_respond(c, status, type, body, len, hdrs, sizeof hdrs / sizeof hdrs[0]);
    gw_conn_end(c, 0);
}

int admin_ui_serve(struct gw_conn *c, struct http1_parser *p, const struct gw_config *cfg)
{
    struct gw_slice path = p->path;
    if (!(gw_slice_eq(path, "/ui") || (path.len >= 4 && memcmp(path.ptr, "/ui/", 4) == 0)))
        return 0;
    struct sockaddr_storage peer;
    if (!cfg->admin.has_token && (gw_conn_peer(c, &peer) != 0 || !admin_peer_is_loopback(&peer))) {
        static const char forbidden[] = "{\"error\":\"forbidden\"}";
        answer(c, 403, "application/json", forbidden, sizeof forbidden - 1);
        return 1;
    }
    if (p->method != GW_HTTP_GET) {
        static const char body[] = "{\"error\":\"method not allowed\"}";
        answer(c, 405, "application/json", body, sizeof body - 1);
        return 1;
    }
    struct gw_slice name = gw_slice_eq(path, "/ui") || gw_slice_eq(path, "/ui/")
                               ? GW_SLICE_LIT("index.html")
                               : (struct gw_slice){path.ptr + 4, path.len - 4};
    for (const struct admin_ui_asset *a = admin_ui_assets; a->name; a++)
        if (gw_slice_eq(name, a->name)) {
            answer(c, 200, content_type(a->name), a->data, a->len);
            return 1;
        }
    static const char missing[] = "not found\n";
    answer(c, 404, "text/plain; charset=utf-8", missing, sizeof missing - 1);
    return 1;
}
