#include "routes/federation/federation.h"
#include "lib/base64.h"
#include "lib/digest.h"
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

static const char b64url[] = GW_B64_URL_DIGITS;

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

/* ---- lists ---- */

static const struct {
    const char *method;
    const char *key;   /* the result's array */
    const char *field; /* each entry's name or URI */
    int is_uri;
} list_specs[] = {
    [FED_LIST_NONE] = {NULL, NULL, NULL, 0},
    [FED_LIST_TOOLS] = {"tools/list", "tools", "name", 0},
    [FED_LIST_PROMPTS] = {"prompts/list", "prompts", "name", 0},
    [FED_LIST_RESOURCES] = {"resources/list", "resources", "uri", 1},
    [FED_LIST_TEMPLATES] = {"resources/templates/list", "resourceTemplates", "uriTemplate", 1},
};

enum fed_list fed_list_of(const char *method)
{
    for (size_t k = FED_LIST_TOOLS; method && k < sizeof list_specs / sizeof list_specs[0]; k++)
        if (strcmp(method, list_specs[k].method) == 0)
            return (enum fed_list)k;
    return FED_LIST_NONE;
}

/* nextCursor of a page of backend `backend_index`: its next page, or the next backend's. */
static int set_next_cursor(json_t *result, const struct gw_route *route, size_t backend_index,
                           const char *next)
{
    char *ours = NULL;
    if (next && strlen(next) <= FED_MAX_CURSOR)
        ours = fed_cursor_encode(backend_index, next);
    else if (backend_index + 1 < route->n_backends)
        ours = fed_cursor_encode(backend_index + 1, NULL);
    else
        return json_object_del(result, "nextCursor"), 0;
    if (!ours)
        return -1;
    json_object_set_new(result, "nextCursor", json_string(ours));
    free(ours);
    return 0;
}

/* prefix + s as a new JSON string, or NULL (memory). */
static json_t *prefixed(const char *prefix, const char *s)
{
    struct gw_buf n = {0};
    json_t *out = NULL;
    if (gw_buf_printf(&n, "%s%s", prefix, s) == 0)
        out = json_stringn(n.data, n.len);
    gw_buf_free(&n);
    return out;
}

int fed_rewrite_list(json_t *msg, const struct gw_route *route, size_t backend_index,
                     enum fed_list list)
{
    if (list == FED_LIST_NONE || list >= sizeof list_specs / sizeof list_specs[0] ||
        backend_index >= route->n_backends)
        return -1;
    json_t *result = json_object_get(msg, "result");
    json_t *items = json_object_get(result, list_specs[list].key);
    if (!json_is_object(result) || !json_is_array(items))
        return -1;
    const char *field = list_specs[list].field;
    char uri_prefix[FED_URI_PREFIX_MAX];
    const char *prefix = route->backends[backend_index].prefix;
    if (list_specs[list].is_uri) {
        if (fed_uri_prefix(prefix, uri_prefix, sizeof uri_prefix) < 0)
            return -1;
        prefix = uri_prefix;
    }
    size_t i = 0;
    while (i < json_array_size(items)) {
        json_t *item = json_array_get(items, i);
        const char *name = json_string_value(json_object_get(item, field));
        json_t *n = name ? prefixed(prefix ? prefix : "", name) : NULL;
        if (!json_is_object(item) || !n) {
            /* Without a name the client could never address it: not passed on. */
            json_decref(n);
            json_array_remove(items, i);
            continue;
        }
        json_object_set_new(item, field, n);
        i++;
    }
    return set_next_cursor(result, route, backend_index,
                           json_string_value(json_object_get(result, "nextCursor")));
}

int fed_rewrite_tools_list(json_t *msg, const struct gw_route *route, size_t backend_index)
{
    return fed_rewrite_list(msg, route, backend_index, FED_LIST_TOOLS);
}

int fed_empty_page(json_t *msg, const struct gw_route *route, size_t backend_index,
                   enum fed_list list)
{
    json_t *error = json_object_get(msg, "error");
    if (list == FED_LIST_NONE || list >= sizeof list_specs / sizeof list_specs[0] ||
        backend_index >= route->n_backends || !json_is_object(error) ||
        json_integer_value(json_object_get(error, "code")) != -32601 ||
        json_object_get(msg, "result"))
        return -1;
    json_t *result = json_pack("{s:[]}", list_specs[list].key);
    if (!result || set_next_cursor(result, route, backend_index, NULL) != 0) {
        json_decref(result);
        return -1;
    }
    json_object_del(msg, "error");
    json_object_set_new(msg, "result", result);
    return 0;
}

/* ---- resource URIs ---- */

int fed_uri_prefix(const char *prefix, char *out, size_t size)
{
    size_t n = prefix ? strlen(prefix) : 0;
    if (n == 0 || n + 1 > size ||
        !((prefix[0] >= 'a' && prefix[0] <= 'z') || (prefix[0] >= 'A' && prefix[0] <= 'Z')))
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = prefix[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (c == '_')
            c = '-';
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return -1;
        out[i] = c;
    }
    out[n] = '\0';
    return (int)n;
}

const struct gw_backend *fed_backend_for_uri(const struct gw_route *route, const char *uri,
                                             const char **rest)
{
    const struct gw_backend *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; route && uri && i < route->n_backends; i++) {
        char p[FED_URI_PREFIX_MAX];
        int l = fed_uri_prefix(route->backends[i].prefix, p, sizeof p);
        if (l > 0 && (size_t)l > best_len && strncmp(uri, p, (size_t)l) == 0 && uri[l] != '\0') {
            best = &route->backends[i];
            best_len = (size_t)l;
        }
    }
    if (best && rest)
        *rest = uri + best_len;
    return best;
}

char *fed_uri_wrap(const struct gw_route *route, size_t backend_index, const char *uri)
{
    char p[FED_URI_PREFIX_MAX];
    struct gw_buf n = {0};
    if (!uri || backend_index >= route->n_backends ||
        fed_uri_prefix(route->backends[backend_index].prefix, p, sizeof p) < 0 ||
        gw_buf_printf(&n, "%s%s", p, uri) != 0) {
        gw_buf_free(&n);
        return NULL;
    }
    return gw_buf_steal(&n, NULL);
}

/* obj.key, when it is a string, gets the URI prefix: 1, 0 when there is none, -1 (memory). */
static int wrap_member(json_t *obj, const char *key, const struct gw_route *route, size_t idx)
{
    const char *uri = json_string_value(json_object_get(obj, key));
    if (!uri)
        return 0;
    char *w = fed_uri_wrap(route, idx, uri);
    if (!w)
        return -1;
    int rc = json_object_set_new(obj, key, json_string(w));
    free(w);
    return rc == 0 ? 1 : -1;
}

/* One content block: a resource link names a URI, an embedded resource carries one. */
static int wrap_content(json_t *block, const struct gw_route *route, size_t idx)
{
    const char *type = json_string_value(json_object_get(block, "type"));
    if (!type)
        return 0;
    if (strcmp(type, "resource_link") == 0)
        return wrap_member(block, "uri", route, idx);
    if (strcmp(type, "resource") == 0)
        return wrap_member(json_object_get(block, "resource"), "uri", route, idx);
    return 0;
}

int fed_rewrite_result_uris(json_t *result, const struct gw_route *route, size_t backend_index)
{
    if (!json_is_object(result) || backend_index >= route->n_backends)
        return 0;
    size_t i;
    json_t *v;
    int n = 0, failed = 0, rc;
#define COUNT(expr) (rc = (expr), failed |= rc<0, n += rc> 0)
    json_array_foreach(json_object_get(result, "contents"), i, v)
        COUNT(wrap_member(v, "uri", route, backend_index));
    json_array_foreach(json_object_get(result, "content"), i, v)
        COUNT(wrap_content(v, route, backend_index));
    json_array_foreach(json_object_get(result, "messages"), i, v)
        COUNT(wrap_content(json_object_get(v, "content"), route, backend_index));
#undef COUNT
    return failed ? -1 : n;
}

/* ---- requests a backend sent the client ---- */

struct pending {
    int used;
    uint8_t session[GW_SHA256_LEN];
    char id[FED_PENDING_ID_LEN + 1];
    size_t backend_index;
    json_t *backend_id;
    uint64_t at_ms;
};

static struct pending pending[FED_PENDING_MAX];
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;

static int pending_live(const struct pending *p, uint64_t now_ms)
{
    return p->used && now_ms - p->at_ms < FED_PENDING_TTL_MS;
}

static void pending_clear(struct pending *p)
{
    json_decref(p->backend_id);
    memset(p, 0, sizeof *p);
}

static struct pending *pending_find(const uint8_t session[GW_SHA256_LEN], const char *id,
                                    uint64_t now_ms)
{
    if (!id || strlen(id) != FED_PENDING_ID_LEN)
        return NULL;
    for (size_t i = 0; i < FED_PENDING_MAX; i++)
        if (pending_live(&pending[i], now_ms) && strcmp(pending[i].id, id) == 0 &&
            memcmp(pending[i].session, session, GW_SHA256_LEN) == 0)
            return &pending[i];
    return NULL;
}

static int id_ok(const json_t *id)
{
    if (json_is_integer(id))
        return 1;
    return json_is_string(id) && json_string_length(id) <= 256;
}

int fed_pending_add(const char *client_session, size_t backend_index, const json_t *backend_id,
                    uint64_t now_ms, char id_out[FED_PENDING_ID_LEN + 1])
{
    uint8_t raw[16], key[GW_SHA256_LEN];
    if (!client_session || !id_ok(backend_id) || gw_random_bytes(raw, sizeof raw) != 0)
        return -1;
    gw_sha256(client_session, strlen(client_session), key);
    int rc = -1;
    pthread_mutex_lock(&pending_lock);
    struct pending *slot = NULL;
    size_t mine = 0;
    for (size_t i = 0; i < FED_PENDING_MAX; i++) {
        struct pending *p = &pending[i];
        if (p->used && !pending_live(p, now_ms))
            pending_clear(p);
        if (!p->used) {
            if (!slot)
                slot = p;
            continue;
        }
        mine += memcmp(p->session, key, GW_SHA256_LEN) == 0;
    }
    if (slot && mine < FED_PENDING_PER_SESSION && (slot->backend_id = json_deep_copy(backend_id))) {
        static const char hex[] = "0123456789abcdef";
        memcpy(slot->id, "toolgate-", 9);
        for (size_t i = 0; i < sizeof raw; i++) {
            slot->id[9 + 2 * i] = hex[raw[i] >> 4];
            slot->id[10 + 2 * i] = hex[raw[i] & 15];
        }
        slot->id[FED_PENDING_ID_LEN] = '\0';
        memcpy(slot->session, key, sizeof key);
        slot->backend_index = backend_index;
        slot->at_ms = now_ms;
        slot->used = 1;
        memcpy(id_out, slot->id, FED_PENDING_ID_LEN + 1);
        rc = 0;
    }
    pthread_mutex_unlock(&pending_lock);
    return rc;
}

int fed_pending_peek(const char *client_session, const char *id, uint64_t now_ms,
                     size_t *backend_index)
{
    uint8_t key[GW_SHA256_LEN];
    if (!client_session)
        return -1;
    gw_sha256(client_session, strlen(client_session), key);
    pthread_mutex_lock(&pending_lock);
    struct pending *p = pending_find(key, id, now_ms);
    if (p)
        *backend_index = p->backend_index;
    pthread_mutex_unlock(&pending_lock);
    return p ? 0 : -1;
}

int fed_pending_take(const char *client_session, const char *id, uint64_t now_ms,
                     size_t *backend_index, json_t **backend_id)
{
    uint8_t key[GW_SHA256_LEN];
    if (!client_session)
        return -1;
    gw_sha256(client_session, strlen(client_session), key);
    pthread_mutex_lock(&pending_lock);
    struct pending *p = pending_find(key, id, now_ms);
    if (p) {
        *backend_index = p->backend_index;
        *backend_id = p->backend_id;
        p->backend_id = NULL;
        pending_clear(p);
    }
    pthread_mutex_unlock(&pending_lock);
    return p ? 0 : -1;
}

void fed_pending_reset(void)
{
    pthread_mutex_lock(&pending_lock);
    for (size_t i = 0; i < FED_PENDING_MAX; i++)
        if (pending[i].used)
            pending_clear(&pending[i]);
    pthread_mutex_unlock(&pending_lock);
}
