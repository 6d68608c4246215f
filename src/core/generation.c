/*
 * generation: reference counts and the current pointer. Taking a reference to the current
 * generation and replacing it must not interleave (the swap could drop the last reference
 * between a reader's load and its increment), so both happen under one mutex; the request
 * path takes it only when a worker sees that the generation number moved.
 */
#include "core/generation.h"

#include <pthread.h>
#include <stdatomic.h>

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gw_config *current;
static atomic_uint_fast64_t current_number;
static atomic_long alive;

void gw_generation_init(struct gw_config *boot)
{
    pthread_mutex_lock(&current_lock);
    atomic_fetch_add(&alive, 1);
    atomic_fetch_add(&boot->refs, 1);
    boot->generation = 1;
    current = boot;
    atomic_store(&current_number, 1);
    pthread_mutex_unlock(&current_lock);
}

struct gw_config *gw_generation_acquire(void)
{
    pthread_mutex_lock(&current_lock);
    struct gw_config *cfg = current;
    if (cfg)
        atomic_fetch_add(&cfg->refs, 1);
    pthread_mutex_unlock(&current_lock);
    return cfg;
}

void gw_generation_hold(const struct gw_config *cfg)
{
    if (cfg)
        atomic_fetch_add(&((struct gw_config *)cfg)->refs, 1);
}

void gw_generation_release(const struct gw_config *cfg)
{
    if (!cfg)
        return;
    struct gw_config *c = (struct gw_config *)cfg;
    if (atomic_fetch_sub(&c->refs, 1) == 1) {
        gw_config_free(c);
        atomic_fetch_sub(&alive, 1);
    }
}

void gw_generation_swap(struct gw_config *next)
{
    pthread_mutex_lock(&current_lock);
    struct gw_config *old = current;
    atomic_fetch_add(&alive, 1);
    next->generation = atomic_load(&current_number) + 1;
    current = next;
    atomic_store(&current_number, next->generation);
    pthread_mutex_unlock(&current_lock);
    gw_generation_release(old);
}

uint64_t gw_generation_current_number(void)
{
    return atomic_load_explicit(&current_number, memory_order_acquire);
}

long gw_generation_alive(void)
{
    return atomic_load(&alive);
}

void gw_generation_shutdown(void)
{
    pthread_mutex_lock(&current_lock);
    struct gw_config *old = current;
    current = NULL;
    atomic_store(&current_number, 0);
    pthread_mutex_unlock(&current_lock);
    gw_generation_release(old);
}
