/*
 * session: the MCP session table, shared by every worker behind one mutex.
 *
 * A connection is pinned to one worker but a client's next request may land on another, so
 * sessions cannot be per worker. Lookups are short (hash, compare 32 bytes), so one lock
 * costs little next to the syscalls around each request. The table is bounded: when full,
 * the least recently used session goes; sessions idle longer than idle_ms are gone too.
 */
#include "ehr.h"

#include "lib/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t session_hash(const char *id, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a; ids are random, so anything uniform will do */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)id[i]) * 16777619u;
    return h;
}

int ehr_sessions_init(struct ehr_sessions *s, unsigned max, uint64_t idle_ms)
{
    memset(s, 0, sizeof *s);
    s->nbuckets = 1024;
    while (s->nbuckets < max && s->nbuckets < (1u << 20))
        s->nbuckets <<= 1;
    s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
    if (!s->buckets)
        return -1;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s->buckets);
        s->buckets = NULL;
        return -1;
    }
    s->max = max ? max : 1;
    s->idle_ms = idle_ms;
    return 0;
}

void ehr_sessions_free(struct ehr_sessions *s)
{
    if (!s->buckets)
        return;
    for (unsigned i = 0; i < s->nbuckets; i++) {
        struct ehr_session *e = s->buckets[i];
        while (e) {
            struct ehr_session *next = e->next;
            free(e);
            e = next;
        }
    }
    free(s->buckets);
    pthread_mutex_destroy(&s->lock);
    memset(s, 0, sizeof *s);
}

/* Unlinks and frees the least recently used session. Called with the lock held. */
static void evict_oldest(struct ehr_sessions *s)
{
    struct ehr_session **victim = NULL;
    for (unsigned i = 0; i < s->nbuckets; i++) {
        for (struct ehr_session **pp = &s->buckets[i]; *pp; pp = &(*pp)->next) {
            if (!victim || (*pp)->last_ms < (*victim)->last_ms)
                victim = pp;
        }
    }
    if (victim) {
        struct ehr_session *e = *victim;
        *victim = e->next;
        free(e);
        s->count--;
    }
}

int ehr_sessions_create(struct ehr_sessions *s, const char *version, char *id_out)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[EHR_SESSION_ID_LEN / 2];
    if (gw_random_bytes(raw, sizeof raw) != 0)
        return -1;
    struct ehr_session *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    for (size_t i = 0; i < sizeof raw; i++) {
        e->id[2 * i] = hex[raw[i] >> 4];
        e->id[2 * i + 1] = hex[raw[i] & 15];
    }
    snprintf(e->version, sizeof e->version, "%s", version);
    e->last_ms = gw_mono_ms();
    memcpy(id_out, e->id, EHR_SESSION_ID_LEN + 1);

    uint32_t b = session_hash(e->id, EHR_SESSION_ID_LEN) & (s->nbuckets - 1);
    pthread_mutex_lock(&s->lock);
    if (s->count >= s->max)
        evict_oldest(s);
    e->next = s->buckets[b];
    s->buckets[b] = e;
    s->count++;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Finds the link pointing at the session, or NULL; drops it when idle too long. Locked. */
static struct ehr_session **find(struct ehr_sessions *s, struct gw_slice id)
{
    if (id.len != EHR_SESSION_ID_LEN)
        return NULL;
    uint32_t b = session_hash(id.ptr, id.len) & (s->nbuckets - 1);
    for (struct ehr_session **pp = &s->buckets[b]; *pp; pp = &(*pp)->next) {
        if (memcmp((*pp)->id, id.ptr, EHR_SESSION_ID_LEN) != 0)
            continue;
        if (s->idle_ms && gw_mono_ms() - (*pp)->last_ms > s->idle_ms) {
            struct ehr_session *e = *pp;
            *pp = e->next;
            free(e);
            s->count--;
            return NULL;
        }
        return pp;
    }
    return NULL;
}

int ehr_sessions_lookup(struct ehr_sessions *s, struct gw_slice id, char *version_out)
{
    int rc = -1;
    pthread_mutex_lock(&s->lock);
    struct ehr_session **pp = find(s, id);
    if (pp) {
        (*pp)->last_ms = gw_mono_ms();
        if (version_out)
            memcpy(version_out, (*pp)->version, EHR_VERSION_LEN + 1);
        rc = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int ehr_sessions_delete(struct ehr_sessions *s, struct gw_slice id)
{
    int rc = -1;
    pthread_mutex_lock(&s->lock);
    struct ehr_session **pp = find(s, id);
    if (pp) {
        struct ehr_session *e = *pp;
        *pp = e->next;
        free(e);
        s->count--;
        rc = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}
