/*
 * audit_canon: canonical JSON as RFC 8785 (JCS) defines it, for hashing audit records and
 * tool arguments.
 *
 *   - object members sorted by their keys compared as UTF-16 code units;
 *   - no insignificant whitespace;
 *   - strings escaped with the fewest escapes: \" \\ \b \f \n \r \t, \u00xx (lower-case hex)
 *     for the other control characters, everything else as raw UTF-8;
 *   - numbers are IEEE 754 doubles printed as ECMAScript's Number.prototype.toString does
 *     (shortest digits that round-trip); integers whose magnitude is at most 2^53 print as
 *     plain decimal, larger ones go through the double formatting like any other number.
 *
 * Audit records themselves only hold integers below 2^53 (nanosecond times are strings), so
 * the double formatting matters for hashing arguments a client sent.
 */
#ifndef AUDIT_CANON_H
#define AUDIT_CANON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* Deepest nesting audit_canon_append accepts (the request decoder bounds depth lower). */
#define AUDIT_CANON_MAX_DEPTH 128

/*
 * Appends the canonical form of v to out. Returns 0, or -1 on NaN/infinity, nesting beyond
 * AUDIT_CANON_MAX_DEPTH, invalid UTF-8 in a key or string, or memory exhaustion (out then
 * holds a partial result the caller discards).
 */
int audit_canon_append(struct gw_buf *out, const json_t *v);

/*
 * Formats a finite double as ECMAScript does into out (needs >= 32 bytes). Returns the
 * length, or -1 for NaN and infinities (which JSON cannot carry).
 */
int audit_canon_number(double d, char *out, size_t outlen);

/* Appends an integer as canonical JSON does (beyond 2^53 as a double). 0 or -1. */
int audit_canon_int(struct gw_buf *out, int64_t v);

/* Appends s (UTF-8, validated) as a canonical JSON string, quotes included. 0 or -1. */
int audit_canon_string(struct gw_buf *out, const char *s, size_t len);

/*
 * The top-level members of an object, each already in canonical form ("key":value), kept
 * sorted. The writer thread merges its chain fields into a record prepared this way on the
 * submitting thread, so the costly part of canonicalization never runs on the writer.
 */
struct audit_member {
    size_t key_off, key_len; /* raw key in `keys` */
    size_t off, len;         /* "key":value in `text` */
};

struct audit_members {
    struct gw_buf text;
    struct gw_buf keys;
    struct audit_member *m;
    size_t n, cap;
};

/* Adds every member of obj except keys listed in skip (NULL-terminated), sorted. 0 or -1. */
int audit_members_from_object(struct audit_members *out, const json_t *obj,
                              const char *const *skip);
/* Adds one member whose value is already canonical JSON text. Call audit_members_sort after. */
int audit_members_add_raw(struct audit_members *out, const char *key, const char *value,
                          size_t value_len);
void audit_members_sort(struct audit_members *ms);
/*
 * Adds one member whose value is written canonically here: a string (UTF-8, validated), an
 * integer, a JSON value, or the object of sub's members (sorted first). 0, or -1 on invalid
 * UTF-8 or memory exhaustion (the members are then only fit to be freed). Call
 * audit_members_sort after the last one.
 */
int audit_members_add_string(struct audit_members *ms, const char *key, const char *s, size_t len);
int audit_members_add_int(struct audit_members *ms, const char *key, int64_t v);
int audit_members_add_value(struct audit_members *ms, const char *key, const json_t *v);
int audit_members_add_object(struct audit_members *ms, const char *key, struct audit_members *sub);
/* Appends the object holding the members of a and b (disjoint keys), sorted. 0 or -1. */
int audit_members_write(struct gw_buf *out, const struct audit_members *a,
                        const struct audit_members *b);
void audit_members_reset(struct audit_members *ms);
void audit_members_free(struct audit_members *ms);

/* Compares two UTF-8 strings by their UTF-16 code units (RFC 8785 §3.2.3). */
int audit_canon_keycmp(const char *a, size_t alen, const char *b, size_t blen);

#endif
