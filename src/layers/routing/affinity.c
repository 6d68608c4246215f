#include "layers/routing/affinity.h"
#include "lib/timeutil.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define AFFINITY_SLOTS 65536 /* power of two */
#define AFFINITY_WINDOW 8    /* slots probed per key */

struct slot {
    uint64_t key;    /* 0 = empty */
    uint64_t be_key; /* backend_key(): the same for a backend in every generation */
    uint64_t ep_key; /* url_key() of the endpoint: a reload may reorder the endpoints */
    int index;
    uint64_t used;
};

static struct slot slots[AFFINITY_SLOTS];
static uint64_t uses;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t url_key(const char *url)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = url; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

/*
 * FNV-1a over the backend's name and URL: a backend keeps its sessions' endpoints across a
 * configuration reload (core/reload.c), where the backend's struct is a new one.
 */
static uint64_t backend_key(const struct gw_backend *be)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = be->name; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (const char *p = be->url; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

/* FNV-1a over the backend's key and the id; 0 is reserved for empty slots. */
static uint64_t key_of(const struct gw_backend *be, const char *id)
{
    uint64_t h = 1469598103934665603ull ^ backend_key(be);
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ull;
    return h ? h : 1;
}

int affinity_lookup(const struct gw_backend *be, const char *session_id)
{
    if (!be || !session_id)
        return -1;
    uint64_t k = key_of(be, session_id);
    int found = -1;
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < AFFINITY_WINDOW; i++) {
        struct slot *s = &slots[(k + i) & (AFFINITY_SLOTS - 1)];
        if (s->key == k && s->be_key == backend_key(be)) {
            /* The endpoint must still be the one at that index (a reload kept the backend's
             * name and first URL but may have changed its list). */
            if (s->index >= 0 && (size_t)s->index < be->n_endpoints &&
                url_key(be->endpoints[s->index]) == s->ep_key) {
                s->used = ++uses;
                found = s->index;
            }
            break;
        }
    }
    pthread_mutex_unlock(&mu);
    return found;
}

void affinity_remember(const struct gw_backend *be, const char *session_id, int index)
{
    if (!be || !session_id || index < 0 || (size_t)index >= be->n_endpoints)
        return;
    uint64_t k = key_of(be, session_id);
    pthread_mutex_lock(&mu);
    struct slot *victim = NULL;
    for (size_t i = 0; i < AFFINITY_WINDOW; i++) {
        struct slot *s = &slots[(k + i) & (AFFINITY_SLOTS - 1)];
        if (s->key == k && s->be_key == backend_key(be)) {
            victim = s;
            break;
        }
        if (!victim || s->key == 0 || (victim->key != 0 && s->used < victim->used))
            victim = s;
    }
    victim->key = k;
    victim->be_key = backend_key(be);
    victim->ep_key = url_key(be->endpoints[index]);
    victim->index = index;
    victim->used = ++uses;
    pthread_mutex_unlock(&mu);
}

void affinity_forget(const struct gw_backend *be, const char *session_id)
{
    if (!be || !session_id)
        return;
    uint64_t k = key_of(be, session_id);
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < AFFINITY_WINDOW; i++) {
        struct slot *s = &slots[(k + i) & (AFFINITY_SLOTS - 1)];
        if (s->key == k && s->be_key == backend_key(be))
            memset(s, 0, sizeof *s);
    }
    pthread_mutex_unlock(&mu);
}

void affinity_clear(void)
{
    pthread_mutex_lock(&mu);
    memset(slots, 0, sizeof slots);
    uses = 0;
    pthread_mutex_unlock(&mu);
}
