/*
 * audit_rotate: the rotated files of a SQLite store (PATH.<last seq, 20 digits>).
 */
#ifndef AUDIT_ROTATE_H
#define AUDIT_ROTATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Finds the newest rotated sibling of path (largest suffix). Returns 1 found, 0 none. */
int audit_newest_rotated(const char *path, char *out, size_t outlen);

/*
 * audit.retention: deletes the oldest rotated files whose modification time is past
 * retention_ms, oldest first, stopping at the first one kept. Returns the `retention` record
 * to append (through_seq, last_hash, files, by, retention_ms), or NULL when nothing went.
 */
json_t *audit_retention_sweep(const char *path, const char *instance, uint64_t retention_ms);

#endif
