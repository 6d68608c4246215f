#include "layers/routing/affinity.h"
#include "lib/timeutil.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define AFFINITY_SLOTS 65536 /* power of two */
#define AFFINITY_WINDOW 8    /* slots probed per key */

struct slot {
    uint64_t key; /* 0 = empty */
    const struct gw_backend *be;
    int index;
    uint64_t used;
};

static struct slot slots[AFFINITY_SLOTS];
static uint64_t uses;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

/* FNV-1a over the backend's address and the id; 0 is reserved for empty slots. */
static uint64_t key_of(const struct gw_backend *be, const char *id)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)be;
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
        if (s->key == k && s->be == be) {
            s->used = ++uses;
            found = s->index;
            break;
        }
    }
    pthread_mutex_unlock(&mu);
    return found;
}

void affinity_remember(const struct gw_backend *be, const char *session_id, int index)
{
    if (!be || !session_id || index < 0)
        return;
    uint64_t k = key_of(be, session_id);
    pthread_mutex_lock(&mu);
    struct slot *victim = NULL;
    for (size_t i = 0; i < AFFINITY_WINDOW; i++) {
        struct slot *s = &slots[(k + i) & (AFFINITY_SLOTS - 1)];
        if (s->key == k && s->be == be) {
            victim = s;
            break;
        }
        if (!victim || s->key == 0 || (victim->key != 0 && s->used < victim->used))
            victim = s;
    }
    victim->key = k;
    victim->be = be;
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
        if (s->key == k && s->be == be)
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
