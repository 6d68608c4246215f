/*
 * What a federated route makes of several backends' answers that it merges into one of its
 * own: capabilities (initialize in the session era, server/discover in 2026-07-28), the whole
 * discover result, a list page's cache fields, and the acknowledgement of a listen stream.
 * Pure: no request, no I/O (federation.h).
 */
#include "mcp/methods.h"
#include "routes/federation/federation.h"

#include <stdlib.h>
#include <string.h>

static void merge_flag(json_t *into, const json_t *from, const char *flag)
{
    if (json_is_true(json_object_get(from, flag)))
        json_object_set_new(into, flag, json_true());
    else if (!json_object_get(into, flag))
        json_object_set_new(into, flag, json_false());
}

void fed_merge_capabilities(json_t *merged, const json_t *caps)
{
    static const struct {
        const char *name;
        const char *flags[2];
    } known[] = {
        {"tools", {"listChanged", NULL}},   {"resources", {"subscribe", "listChanged"}},
        {"prompts", {"listChanged", NULL}}, {"completions", {NULL, NULL}},
        {"logging", {NULL, NULL}},
    };
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        const json_t *c = json_object_get(caps, known[k].name);
        if (!json_is_object(c))
            continue;
        json_t *m = json_object_get(merged, known[k].name);
        if (!m) {
            m = json_object();
            json_object_set_new(merged, known[k].name, m);
        }
        for (size_t f = 0; m && f < 2 && known[k].flags[f]; f++)
            merge_flag(m, c, known[k].flags[f]);
    }
}

/* ---- server/discover ---- */

void fed_discover_init(struct fed_discover *d)
{
    memset(d, 0, sizeof *d);
    d->ttl_ms = -1;
}

void fed_discover_free(struct fed_discover *d)
{
    json_decref(d->versions);
    json_decref(d->caps);
    gw_buf_free(&d->instructions);
    memset(d, 0, sizeof *d);
}

/* Whether the array holds the string s. */
static int has_string(const json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i,
                       v) if (json_is_string(v) && strcmp(json_string_value(v), s) == 0) return 1;
    return 0;
}

int fed_discover_add(struct fed_discover *d, const json_t *result, const char *prefix)
{
    const json_t *versions = json_object_get(result, "supportedVersions");
    if (!json_is_object(result) || !json_is_array(versions))
        return -1;
    if (!d->caps && !(d->caps = json_pack("{s:{}}", "tools")))
        return -1;
    if (!d->versions) {
        /* Toolgate's stateless revisions, then narrowed by every backend's list. */
        if (!(d->versions = json_array()))
            return -1;
        for (const char *const *v = mcp_version_names(); *v; v++)
            if (mcp_version_bit(*v) == MCP_V_2026_07_28)
                json_array_append_new(d->versions, json_string(*v));
    }
    size_t i = 0;
    while (i < json_array_size(d->versions)) {
        if (has_string(versions, json_string_value(json_array_get(d->versions, i))))
            i++;
        else
            json_array_remove(d->versions, i);
    }
    fed_merge_capabilities(d->caps, json_object_get(result, "capabilities"));
    const json_t *ttl = json_object_get(result, "ttlMs");
    long long t =
        json_is_integer(ttl) && json_integer_value(ttl) >= 0 ? json_integer_value(ttl) : 0;
    if (d->ttl_ms < 0 || t < d->ttl_ms)
        d->ttl_ms = t;
    const char *scope = json_string_value(json_object_get(result, "cacheScope"));
    if (!scope || strcmp(scope, "public") != 0)
        d->private_scope = 1;
    const json_t *text = json_object_get(result, "instructions");
    size_t len = json_is_string(text) ? json_string_length(text) : 0;
    size_t plen = prefix ? strlen(prefix) : 0;
    if (len > 0 && d->instructions.len + len + plen + 8 <= FED_MAX_INSTRUCTIONS) {
        /* Each backend's own paragraph, introduced by the prefix its names carry. */
        if (gw_buf_printf(&d->instructions, "%s[%s] ", d->instructions.len ? "\n\n" : "",
                          prefix ? prefix : "") != 0 ||
            gw_buf_append(&d->instructions, json_string_value(text), len) != 0)
            return -1;
    } else if (len > 0) {
        d->instructions_dropped++;
    }
    d->n++;
    return 0;
}

json_t *fed_discover_result(const struct fed_discover *d, const char *server_version)
{
    if (d->n == 0)
        return NULL;
    struct gw_buf text = {0};
    json_t *out = NULL;
    if (gw_buf_printf(&text, "%s", FED_INSTRUCTIONS) != 0 ||
        (d->instructions.len > 0 &&
         (gw_buf_printf(&text, "\n\n") != 0 ||
          gw_buf_append(&text, d->instructions.data, d->instructions.len) != 0)))
        goto out;
    out = json_pack("{s:s, s:O, s:O, s:s%, s:{s:{s:s, s:s}}, s:I, s:s}", "resultType", "complete",
                    "supportedVersions", d->versions, "capabilities", d->caps, "instructions",
                    text.data, text.len, "_meta", "io.modelcontextprotocol/serverInfo", "name",
                    "toolgate", "version", server_version ? server_version : "", "ttlMs",
                    (json_int_t)(d->ttl_ms < 0 ? 0 : d->ttl_ms), "cacheScope",
                    d->private_scope ? "private" : "public");
out:
    gw_buf_free(&text);
    return out;
}

/* ---- lists ---- */

int fed_mark_modern_page(json_t *result)
{
    if (!json_is_object(result))
        return -1;
    if (!json_is_string(json_object_get(result, "resultType")))
        json_object_set_new(result, "resultType", json_string("complete"));
    const json_t *ttl = json_object_get(result, "ttlMs");
    if (!json_is_integer(ttl) || json_integer_value(ttl) < 0)
        json_object_set_new(result, "ttlMs", json_integer(0));
    /* A page of toolgate's merged list, filtered per user: never for a shared cache. */
    json_object_set_new(result, "cacheScope", json_string("private"));
    return 0;
}

/* ---- subscriptions/listen ---- */

static const char *const list_flags[] = {"toolsListChanged", "promptsListChanged",
                                         "resourcesListChanged"};

json_t *fed_listen_filter_for(const json_t *filter, const struct gw_route *route,
                              size_t backend_index)
{
    json_t *out = json_object();
    int wanted = 0;
    if (!out || backend_index >= route->n_backends)
        goto fail;
    for (size_t k = 0; k < sizeof list_flags / sizeof list_flags[0]; k++)
        if (json_is_true(json_object_get(filter, list_flags[k]))) {
            json_object_set_new(out, list_flags[k], json_true());
            wanted = 1;
        }
    const json_t *uris = json_object_get(filter, "resourceSubscriptions");
    json_t *mine = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(uris, i, v)
    {
        const char *rest = NULL;
        const struct gw_backend *be = fed_backend_for_uri(route, json_string_value(v), &rest);
        if (be != &route->backends[backend_index])
            continue;
        if (!mine && (!(mine = json_array()) ||
                      json_object_set_new(out, "resourceSubscriptions", mine) != 0))
            goto fail;
        json_array_append_new(mine, json_string(rest));
        wanted = 1;
    }
    if (!wanted)
        goto fail; /* nothing for this backend to tell */
    return out;
fail:
    json_decref(out);
    return NULL;
}

int fed_listen_ack_add(json_t *combined, const json_t *acked, const struct gw_route *route,
                       size_t backend_index)
{
    if (!json_is_object(combined) || !json_is_object(acked))
        return -1;
    for (size_t k = 0; k < sizeof list_flags / sizeof list_flags[0]; k++)
        if (json_is_true(json_object_get(acked, list_flags[k])))
            json_object_set_new(combined, list_flags[k], json_true());
    const json_t *uris = json_object_get(acked, "resourceSubscriptions");
    size_t i;
    json_t *v;
    json_array_foreach(uris, i, v)
    {
        char *w =
            json_is_string(v) ? fed_uri_wrap(route, backend_index, json_string_value(v)) : NULL;
        if (!w)
            continue;
        json_t *all = json_object_get(combined, "resourceSubscriptions");
        if (!all) {
            all = json_array();
            json_object_set_new(combined, "resourceSubscriptions", all);
        }
        json_array_append_new(all, json_string(w));
        free(w);
    }
    return 0;
}
