#include "lib/timeutil.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

uint64_t gw_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t gw_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t gw_mono_ms(void)
{
    return gw_mono_ns() / 1000000ull;
}

int gw_cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    int rc = pthread_condattr_init(&a);
    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return rc;
}

void gw_cond_wait_until_ns(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t until_ns)
{
    /* The condition variable follows CLOCK_MONOTONIC, gw_mono_ns()'s clock: no conversion. */
    if (until_ns <= gw_mono_ns())
        return;
    struct timespec ts = {.tv_sec = (time_t)(until_ns / 1000000000ull),
                          .tv_nsec = (long)(until_ns % 1000000000ull)};
    pthread_cond_timedwait(cv, mu, &ts);
}

void gw_cond_wait_until_ms(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t until_ms)
{
    gw_cond_wait_until_ns(cv, mu,
                          until_ms > UINT64_MAX / 1000000ull ? UINT64_MAX : until_ms * 1000000ull);
}

void gw_time_rfc3339(uint64_t ns, char *out, size_t outlen)
{
    time_t secs = (time_t)(ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ns % 1000000000ull));
}

static int parse_number_unit(const char *s, uint64_t *num, const char **unit)
{
    if (!s || !*s)
        return -1;
    const char *p = s;
    uint64_t v = 0;
    if (*p < '0' || *p > '9')
        return -1;
    while (*p >= '0' && *p <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    while (*p == ' ')
        p++;
    *num = v;
    *unit = p;
    return 0;
}

int gw_parse_duration_ns(const char *s, uint64_t *out_ns)
{
    uint64_t v;
    const char *u;
    if (parse_number_unit(s, &v, &u) != 0)
        return -1;
    uint64_t mult;
    if (*u == '\0')
        mult = v == 0 ? 1 : 0; /* a bare number is ambiguous unless it is zero */
    else if (strcmp(u, "ns") == 0)
        mult = 1;
    else if (strcmp(u, "us") == 0)
        mult = 1000ull;
    else if (strcmp(u, "ms") == 0)
        mult = 1000000ull;
    else if (strcmp(u, "s") == 0)
        mult = 1000000000ull;
    else if (strcmp(u, "m") == 0)
        mult = 60ull * 1000000000ull;
    else if (strcmp(u, "h") == 0)
        mult = 3600ull * 1000000000ull;
    else if (strcmp(u, "d") == 0)
        mult = 86400ull * 1000000000ull;
    else
        return -1;
    if (mult == 0)
        return -1;
    if (v > UINT64_MAX / mult)
        return -1;
    *out_ns = v * mult;
    return 0;
}

int gw_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    uint64_t ns;
    if (gw_parse_duration_ns(s, &ns) != 0)
        return -1;
    *out_ms = ns / 1000000ull + (ns % 1000000ull ? 1 : 0);
    return 0;
}

int gw_parse_size(const char *s, uint64_t *out)
{
    uint64_t v;
    const char *u;
    if (parse_number_unit(s, &v, &u) != 0)
        return -1;
    uint64_t mult;
    if (*u == '\0' || strcasecmp(u, "b") == 0)
        mult = 1;
    else if (strcmp(u, "KiB") == 0 || strcasecmp(u, "k") == 0)
        mult = 1024ull;
    else if (strcmp(u, "MiB") == 0 || strcasecmp(u, "m") == 0)
        mult = 1024ull * 1024;
    else if (strcmp(u, "GiB") == 0 || strcasecmp(u, "g") == 0)
        mult = 1024ull * 1024 * 1024;
    else if (strcmp(u, "KB") == 0 || strcmp(u, "kB") == 0)
        mult = 1000ull;
    else if (strcmp(u, "MB") == 0)
        mult = 1000ull * 1000;
    else if (strcmp(u, "GB") == 0)
        mult = 1000ull * 1000 * 1000;
    else
        return -1;
    if (v > UINT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

int gw_random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/*
 * The newest millisecond handed out. Request ids sort by time in the audit log; when the wall
 * clock steps back (NTP), ids keep the last prefix instead of going back with it (RFC 9562
 * §6.2 asks for monotonic ids where order matters).
 */
static _Atomic uint64_t uuid7_last_ms;

/*
 * Random bits for ids come from a small per-thread pool refilled from the kernel, so minting
 * an id does not cost a system call each time.
 */
static void id_random(unsigned char *out, size_t n)
{
    static _Thread_local unsigned char pool[512];
    static _Thread_local size_t avail;
    if (n > sizeof pool) {
        if (gw_random_bytes(out, n) != 0)
            memset(out, 0, n);
        return;
    }
    if (avail < n) {
        if (gw_random_bytes(pool, sizeof pool) != 0)
            memset(pool, 0, sizeof pool);
        avail = sizeof pool;
    }
    memcpy(out, pool + sizeof pool - avail, n);
    memset(pool + sizeof pool - avail, 0, n);
    avail -= n;
}

void gw_uuid7(char out[37])
{
    unsigned char b[16];
    uint64_t ms = gw_now_ns() / 1000000ull;
    uint64_t last = atomic_load_explicit(&uuid7_last_ms, memory_order_relaxed);
    for (;;) {
        if (ms <= last) {
            ms = last;
            break;
        }
        if (atomic_compare_exchange_weak_explicit(&uuid7_last_ms, &last, ms, memory_order_relaxed,
                                                  memory_order_relaxed))
            break;
    }
    id_random(b + 6, 10);
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x70);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

void gw_random_id_bytes(void *out, size_t n)
{
    id_random(out, n);
}
