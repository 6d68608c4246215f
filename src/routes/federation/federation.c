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

/* ---- sessions ---- */

struct fed_entry {
    char id[FED_SESSION_ID_LEN + 1];
    char **sids;
    size_t n;
    uint64_t last_ms;  /* for idle expiry */
    uint64_t last_use; /* recency order (a counter: several uses share a millisecond) */
    int used;
};

static struct {
    pthread_mutex_t mu;
    struct fed_entry *slots;
    size_t cap; /* power of two, twice the entries allowed */
    size_t count;
    size_t max;
    uint64_t idle_ms;
    uint64_t uses;
} T = {.mu = PTHREAD_MUTEX_INITIALIZER, .max = 100000, .idle_ms = 3600000};

void fed_sessions_configure(size_t max_entries, uint64_t idle_ms)
{
    pthread_mutex_lock(&T.mu);
    if (!T.slots) {
        T.max = max_entries ? max_entries : 100000;
        T.idle_ms = idle_ms ? idle_ms : 3600000;
    }
    pthread_mutex_unlock(&T.mu);
}

static uint64_t hash_id(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ull;
    return h;
}

static void entry_clear(struct fed_entry *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->sids[i]);
    free(e->sids);
    memset(e, 0, sizeof *e);
}

/* Linear probing; called with the lock held. Returns the slot holding id, or NULL. */
static struct fed_entry *find(const char *id)
{
    if (!T.slots)
        return NULL;
    size_t mask = T.cap - 1;
    for (size_t i = hash_id(id) & mask, k = 0; k < T.cap; i = (i + 1) & mask, k++) {
        struct fed_entry *e = &T.slots[i];
        if (!e->used)
            return NULL;
        if (strcmp(e->id, id) == 0)
            return e;
    }
    return NULL;
}

/* Removes a slot and re-inserts the rest of its probe run (linear-probing deletion). */
static void remove_slot(struct fed_entry *e)
{
    size_t mask = T.cap - 1;
    size_t i = (size_t)(e - T.slots);
    entry_clear(e);
    T.count--;
    for (size_t j = (i + 1) & mask; T.slots[j].used; j = (j + 1) & mask) {
        struct fed_entry moved = T.slots[j];
        memset(&T.slots[j], 0, sizeof T.slots[j]);
        size_t k = hash_id(moved.id) & mask;
        while (T.slots[k].used)
            k = (k + 1) & mask;
        T.slots[k] = moved;
    }
}

/* Drops expired sessions, or the least recently used of a sample when still full. */
static void make_room(uint64_t now)
{
    for (size_t i = 0; i < T.cap && T.count >= T.max; i++)
        if (T.slots[i].used && now - T.slots[i].last_ms > T.idle_ms)
            remove_slot(&T.slots[i]);
    while (T.count >= T.max) {
        struct fed_entry *oldest = NULL;
        for (size_t i = 0; i < T.cap; i++)
            if (T.slots[i].used && (!oldest || T.slots[i].last_use < oldest->last_use))
                oldest = &T.slots[i];
        if (!oldest)
            break;
        remove_slot(oldest);
    }
}

int fed_session_create(const struct gw_route *route, char *id_out)
{
    unsigned char r[FED_SESSION_ID_LEN / 2];
    if (gw_random_bytes(r, sizeof r) != 0)
        return -1;
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(id_out + 2 * i, 3, "%02x", r[i]);
    int rc = -1;
    pthread_mutex_lock(&T.mu);
    if (!T.slots) {
        size_t cap = 16;
        while (cap < T.max * 2)
            cap *= 2;
        T.slots = calloc(cap, sizeof *T.slots);
        if (!T.slots)
            goto out;
        T.cap = cap;
    }
    uint64_t now = gw_mono_ms();
    make_room(now);
    size_t mask = T.cap - 1;
    size_t i = hash_id(id_out) & mask;
    while (T.slots[i].used)
        i = (i + 1) & mask;
    struct fed_entry *e = &T.slots[i];
    e->sids = calloc(route->n_backends, sizeof *e->sids);
    if (!e->sids)
        goto out;
    memcpy(e->id, id_out, FED_SESSION_ID_LEN + 1);
    e->n = route->n_backends;
    e->last_ms = now;
    e->last_use = ++T.uses;
    e->used = 1;
    T.count++;
    rc = 0;
out:
    pthread_mutex_unlock(&T.mu);
    return rc;
}

static struct fed_entry *live(const char *id)
{
    struct fed_entry *e = find(id);
    uint64_t now = gw_mono_ms();
    if (e && now - e->last_ms > T.idle_ms) {
        remove_slot(e);
        return NULL;
    }
    if (e) {
        e->last_ms = now;
        e->last_use = ++T.uses;
    }
    return e;
}

int fed_session_exists(const char *id)
{
    pthread_mutex_lock(&T.mu);
    int ok = live(id) != NULL;
    pthread_mutex_unlock(&T.mu);
    return ok;
}

int fed_session_backend(const char *id, size_t backend_index, char **out)
{
    *out = NULL;
    int rc = -1;
    pthread_mutex_lock(&T.mu);
    struct fed_entry *e = live(id);
    if (e && backend_index < e->n) {
        rc = 0;
        if (e->sids[backend_index] && !(*out = strdup(e->sids[backend_index])))
            rc = -1;
    }
    pthread_mutex_unlock(&T.mu);
    return rc;
}

int fed_session_set_backend(const char *id, size_t backend_index, const char *backend_sid)
{
    int rc = -1;
    pthread_mutex_lock(&T.mu);
    struct fed_entry *e = live(id);
    if (e && backend_index < e->n) {
        char *copy = strdup(backend_sid);
        if (copy) {
            free(e->sids[backend_index]);
            e->sids[backend_index] = copy;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&T.mu);
    return rc;
}

int fed_session_drop(const char *id, char ***sids, size_t *n)
{
    *sids = NULL;
    *n = 0;
    int rc = -1;
    pthread_mutex_lock(&T.mu);
    struct fed_entry *e = find(id);
    if (e) {
        *sids = e->sids;
        *n = e->n;
        e->sids = NULL;
        e->n = 0;
        remove_slot(e);
        rc = 0;
    }
    pthread_mutex_unlock(&T.mu);
    return rc;
}

void fed_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void fed_sessions_shutdown(void)
{
    pthread_mutex_lock(&T.mu);
    for (size_t i = 0; i < T.cap; i++)
        if (T.slots[i].used)
            entry_clear(&T.slots[i]);
    free(T.slots);
    T.slots = NULL;
    T.cap = T.count = 0;
    pthread_mutex_unlock(&T.mu);
}
