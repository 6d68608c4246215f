#include "core/stream_order.h"

#include <pthread.h>
#include <stdatomic.h>

struct slot {
    uint64_t handle; /* 0: free */
    uint64_t key;
    uint64_t started_ns;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot slots[STREAM_ORDER_SLOTS];
static uint64_t next_handle = 1;
/* Slots in use; read without the lock so POSTs pay nothing when no GET is on its way. */
static _Atomic unsigned in_use;

#define MAX_WAIT_NS ((uint64_t)STREAM_ORDER_MAX_WAIT_MS * 1000000u)

/* FNV-1a, 64 bits, over the session id, a separator and the credentials. */
uint64_t stream_order_key(const char *session_id, size_t sid_len, const char *authorization,
                          size_t auth_len)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < sid_len; i++)
        h = (h ^ (unsigned char)session_id[i]) * 0x100000001b3u;
    h = (h ^ 0xffu) * 0x100000001b3u;
    for (size_t i = 0; i < auth_len; i++)
        h = (h ^ (unsigned char)authorization[i]) * 0x100000001b3u;
    return h ? h : 1;
}

static int stale(const struct slot *s, uint64_t now_ns)
{
    return now_ns > s->started_ns && now_ns - s->started_ns >= MAX_WAIT_NS;
}

uint64_t stream_order_get_started(uint64_t key, uint64_t now_ns)
{
    uint64_t handle = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < STREAM_ORDER_SLOTS; i++) {
        struct slot *s = &slots[i];
        if (s->handle && !stale(s, now_ns))
            continue;
        if (!s->handle)
            atomic_fetch_add(&in_use, 1);
        handle = next_handle++;
        *s = (struct slot){handle, key, now_ns};
        break;
    }
    pthread_mutex_unlock(&lock);
    return handle;
}

void stream_order_done(uint64_t handle)
{
    if (!handle)
        return;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < STREAM_ORDER_SLOTS; i++) {
        if (slots[i].handle == handle) {
            slots[i].handle = 0;
            atomic_fetch_sub(&in_use, 1);
            break;
        }
    }
    pthread_mutex_unlock(&lock);
}

int stream_order_any(void)
{
    return atomic_load(&in_use) != 0;
}

int stream_order_pending(uint64_t key, uint64_t now_ns, uint64_t *until_ns)
{
    if (atomic_load(&in_use) == 0)
        return 0;
    int pending = 0;
    uint64_t until = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < STREAM_ORDER_SLOTS; i++) {
        const struct slot *s = &slots[i];
        if (!s->handle || s->key != key || stale(s, now_ns))
            continue;
        pending = 1;
        if (s->started_ns + MAX_WAIT_NS > until)
            until = s->started_ns + MAX_WAIT_NS;
    }
    pthread_mutex_unlock(&lock);
    if (until_ns)
        *until_ns = until;
    return pending;
}
