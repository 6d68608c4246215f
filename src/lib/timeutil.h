/* timeutil: clocks, RFC 3339 formatting, durations and sizes as the config writes them. */
#ifndef GW_TIMEUTIL_H
#define GW_TIMEUTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Wall clock, nanoseconds since the Unix epoch. */
uint64_t gw_now_ns(void);
/* Monotonic clock in nanoseconds and milliseconds. */
uint64_t gw_mono_ns(void);
uint64_t gw_mono_ms(void);
/* Initialises cv so that its timed waits follow the monotonic clock (wall-clock steps do not
 * move them). 0, or an errno value. */
int gw_cond_init_monotonic(pthread_cond_t *cv);
/* Waits on cv (made by gw_cond_init_monotonic, mu held) until the gw_mono_ms() time until_ms,
 * a signal or a spurious wake-up; returns at once when until_ms has passed. */
void gw_cond_wait_until_ms(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t until_ms);
/* The same to the gw_mono_ns() time until_ns. */
void gw_cond_wait_until_ns(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t until_ns);
/* Formats ns-since-epoch as 2026-01-02T03:04:05.123456789Z (UTC); out needs >= 32 bytes. */
void gw_time_rfc3339(uint64_t ns, char *out, size_t outlen);

/*
 * Parses a duration such as "250ms", "30s", "5m", "1h", "1d" (also "us", "ns"; a bare "0").
 * Result in milliseconds (ns/us are rounded up to 1 ms when non-zero). Returns 0, or -1.
 */
int gw_parse_duration_ms(const char *s, uint64_t *out_ms);
/* Same, result in nanoseconds. */
int gw_parse_duration_ns(const char *s, uint64_t *out_ns);
/* Parses a size such as "1MiB", "16KiB", "512", "2MB", "1GiB". Returns 0, or -1. */
int gw_parse_size(const char *s, uint64_t *out);

/* Writes a random UUIDv7 (RFC 9562) as 36 characters plus NUL into out. */
void gw_uuid7(char out[37]);
/* Fills buf with n cryptographically random bytes; returns 0 or -1. */
int gw_random_bytes(void *buf, size_t n);
/* Random bytes for ids (trace and span ids), from a per-thread pool; never fails. */
void gw_random_id_bytes(void *out, size_t n);

#endif
