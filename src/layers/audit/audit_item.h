/*
 * audit_item: a record prepared on the submitting thread for the writer (audit_writer.c): its
 * members canonical and sorted, the values of the indexed columns extracted. The writer only
 * merges in the chain fields.
 */
#ifndef GW_AUDIT_ITEM_H
#define GW_AUDIT_ITEM_H

#include <jansson.h>
#include <sys/types.h>

#include "layers/audit/audit_canon.h"

enum {
    COL_KIND,
    COL_REQUEST_ID,
    COL_SUBJECT,
    COL_TENANT,
    COL_TOOL,
    COL_DECISION,
    COL_LAYER,
    COL_COUNT
};

/* The record member each indexed column holds, by COL_*. */
extern const char *const audit_col_keys[COL_COUNT];
/* The COL_* a record member names, or -1: one comparison at most (a record's builder asks for
 * every top-level string member). */
int audit_col_of(const char *key);

struct audit_item {
    struct audit_members body;
    char *cols;                        /* the column values back to back, NUL-terminated */
    ssize_t col_off[COL_COUNT];        /* -1: absent */
    void (*notify)(void *arg, int ok); /* told once the record is committed or lost */
    void *notify_arg;
};

/* Builds an item from a record (not stolen). NULL when it cannot be encoded. */
struct audit_item *audit_item_prepare(const json_t *rec);
void audit_item_free(struct audit_item *it);
/* An indexed column's value, or NULL when the record has none. */
const char *audit_item_col(const struct audit_item *it, int c);

#endif
