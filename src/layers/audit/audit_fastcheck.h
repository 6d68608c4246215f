/*
 * audit_fastcheck: the quick path of verification. Checks that a record is canonical JSON
 * (RFC 8785) and picks out its top-level fields in one pass without building a tree, for the
 * records toolgate writes: ASCII keys and strings, integers of at most 15 digits. Anything
 * else (non-ASCII text, fractions, exponents, long numbers, \u0000) it does not decide: the
 * caller then takes the full path (jansson + audit_canon), which remains the judge. It never
 * accepts what the full path would refuse.
 */
#ifndef AUDIT_FASTCHECK_H
#define AUDIT_FASTCHECK_H

#include <stddef.h>
#include <stdint.h>

enum audit_field_id {
    AF_CLOSING,
    AF_DECISION,
    AF_HEAD_HASH,
    AF_HEAD_SEQ,
    AF_INSTANCE,
    AF_KEY_ID,
    AF_KIND,
    AF_LAST_HASH,
    AF_LAYER,
    AF_PREV_HASH,
    AF_PREVIOUS_SHUTDOWN,
    AF_REQUEST_ID,
    AF_SEQ,
    AF_SIGNATURE,
    AF_SIGNED_TIME_NS,
    AF_SUBJECT,
    AF_TENANT,
    AF_THROUGH_SEQ,
    AF_TIME_NS,
    AF_TOOL,
    AF_COUNT
};

enum audit_field_type { AFT_ABSENT = 0, AFT_STRING, AFT_INTEGER, AFT_TRUE, AFT_OTHER };

struct audit_field {
    enum audit_field_type type;
    const char *str; /* AFT_STRING: the contents (escapes left as they are) */
    size_t len;
    int escaped; /* the string holds an escape: compare through the full path */
    int64_t num; /* AFT_INTEGER */
};

struct audit_fields {
    struct audit_field f[AF_COUNT];
};

/* The key of a field ("kind", ...). */
const char *audit_field_key(enum audit_field_id id);

/* 1: canonical, fields filled; 0: not decided here (take the full path). */
int audit_fastcheck(const char *text, size_t len, struct audit_fields *out);

#endif
