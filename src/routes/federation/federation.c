#include "routes/federation/federation.h"
#include "lib/timeutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fed_route_is_federated(const struct gw_route *route)
{
    return route && route->n_backends > 1;
}

const struct gw_backend *fed_backend_for_tool(const struct gw_route *route, const char *tool,
                                              const char **rest)
{
    const struct gw_backend *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; route && tool && i < route->n_backends; i++) {
        const char *p = route->backends[i].prefix;
        size_t l = p ? strlen(p) : 0;
        if (l > 0 && l > best_len && strncmp(tool, p, l) == 0 && tool[l] != '\0') {
            best = &route->backends[i];
            best_len = l;
        }
    }
    if (best && rest)
        *rest = tool + best_len;
    return best;
}

int fed_backend_index(const struct gw_route *route, const struct gw_backend *b)
{
    if (!route || !b || b < route->backends || b >= route->backends + route->n_backends)
        return -1;
    return (int)(b - route->backends);
}

/* ---- cursors ---- */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Bound on a backend cursor we carry inside ours. */
#define FED_MAX_CURSOR 4096

char *fed_cursor_encode(size_t backend_index, const char *backend_cursor)
{
    struct gw_buf raw = {0}, out = {0};
    if (gw_buf_printf(&raw, "%zu:%s", backend_index, backend_cursor ? backend_cursor : "") != 0)
        goto fail;
    const unsigned char *s = (const unsigned char *)raw.data;
    size_t n = raw.len;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) |
                     (i + 2 < n ? s[i + 2] : 0);
        char q[4] = {b64url[(v >> 18) & 63], b64url[(v >> 12) & 63], b64url[(v >> 6) & 63],
                     b64url[v & 63]};
        size_t k = i + 2 < n ? 4 : i + 1 < n ? 3 : 2;
        if (gw_buf_append(&out, q, k) != 0)
            goto fail;
    }
    gw_buf_free(&raw);
    return gw_buf_steal(&out, NULL);
fail:
    gw_buf_free(&raw);
    gw_buf_free(&out);
    return NULL;
}

static int b64val(char c)
{
    const char *p = c ? strchr(b64url, c) : NULL;
    return p ? (int)(p - b64url) : -1;
}

int fed_cursor_decode(const char *cursor, size_t n_backends, size_t *backend_index,
                      char **backend_cursor)
{
    *backend_cursor = NULL;
    size_t n = cursor ? strlen(cursor) : 0;
    if (n == 0 || n > FED_MAX_CURSOR * 2 || n % 4 == 1)
        return -1;
    char *raw = malloc(n);
    if (!raw)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4] = {0, 0, 0, 0};
        size_t k = n - i < 4 ? n - i : 4;
        for (size_t j = 0; j < k; j++)
            if ((v[j] = b64val(cursor[i + j])) < 0)
                goto fail;
        unsigned w =
            (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
        raw[o++] = (char)(w >> 16);
        if (k > 2)
            raw[o++] = (char)(w >> 8);
        if (k > 3)
            raw[o++] = (char)w;
    }
    /* "<index>:<backend cursor>", the index in decimal, the rest printable. */
    size_t i = 0, idx = 0;
    while (i < o && raw[i] >= '0' && raw[i] <= '9' && i < 6)
        idx = idx * 10 + (size_t)(raw[i++] - '0');
    if (i == 0 || i >= o || raw[i] != ':' || idx >= n_backends)
        goto fail;
    for (size_t j = i + 1; j < o; j++)
        if ((unsigned char)raw[j] < 0x20 || raw[j] == 0x7f)
            goto fail;
    if (o - i - 1 > 0) {
        *backend_cursor = strndup(raw + i + 1, o - i - 1);
        if (!*backend_cursor)
            goto fail;
    }
    *backend_index = idx;
    free(raw);
    return 0;
fail:
    free(raw);
    return -1;
}

int fed_rewrite_tools_list(json_t *msg, const struct gw_route *route, size_t backend_index)
{
    json_t *result = json_object_get(msg, "result");
    json_t *tools = json_object_get(result, "tools");
    if (!json_is_object(result) || !json_is_array(tools) || backend_index >= route->n_backends)
        return -1;
    const char *prefix = route->backends[backend_index].prefix;
    size_t i;
    json_t *tool;
    json_array_foreach(tools, i, tool)
    {
        const char *name = json_string_value(json_object_get(tool, "name"));
        if (!name)
            continue;
        struct gw_buf n = {0};
        if (gw_buf_printf(&n, "%s%s", prefix ? prefix : "", name) != 0) {
            gw_buf_free(&n);
            return -1;
        }
        json_object_set_new(tool, "name", json_stringn(n.data, n.len));
        gw_buf_free(&n);
    }
    const char *next = json_string_value(json_object_get(result, "nextCursor"));
    char *ours = NULL;
    if (next && strlen(next) <= FED_MAX_CURSOR)
        ours = fed_cursor_encode(backend_index, next);
    else if (backend_index + 1 < route->n_backends)
        ours = fed_cursor_encode(backend_index + 1, NULL);
    if (ours)
        json_object_set_new(result, "nextCursor", json_string(ours));
    else
        json_object_del(result, "nextCursor");
    free(ours);
    return 0;
}
