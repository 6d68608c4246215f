/*
 * audit_rollup: the counts `audit stats` answers with, kept per UTC day beside the records.
 *
 * For every decision record the compact SQLite store adds one to four counters of its day:
 * by decision, layer, tool and subject (dim 0..3, the name's id in audit_names, 0 for none),
 * in the transaction that appends the record. Stats then reads the whole days of a range
 * from the counters and only the partial days at its ends from the time index, instead of
 * every decision of the range.
 *
 * The counters are derived data: nothing signs them and the chain does not cover them;
 * `audit verify` counts the records again and compares (a separate finding from the chain's). The
 * store uses them only while they account for every row it holds (the last row id of each instance
 * is kept with them, and compared with the table's), and only for the days from which they are
 * complete (a store that had records before it had counters starts them at the next day); anything
 * else is counted from the rows, as before.
 *
 * This module is the pure part: the counters of an open transaction, and the split of a
 * time range into whole days and the ends.
 */
#ifndef AUDIT_ROLLUP_H
#define AUDIT_ROLLUP_H

#include <stddef.h>
#include <stdint.h>

#define AUDIT_ROLLUP_DAY_NS (86400ll * 1000000000ll)
#define AUDIT_ROLLUP_DIMS 4

struct audit_rollup_entry {
    int64_t day; /* t / AUDIT_ROLLUP_DAY_NS */
    uint32_t name;
    uint32_t dim; /* 0..3; AUDIT_ROLLUP_DIMS marks an empty slot */
    uint64_t n;
};

/* Counters not yet written: an open-addressing table, grown at half full. */
struct audit_rollup_pending {
    struct audit_rollup_entry *slots;
    size_t cap, used;
};

/* Adds n to (day, dim, name). Returns 0, or -1 when out of memory (nothing changed). */
int audit_rollup_add(struct audit_rollup_pending *p, int64_t day, uint32_t dim, uint32_t name,
                     uint64_t n);
/* Empties the table (keeps its memory). */
void audit_rollup_clear(struct audit_rollup_pending *p);
void audit_rollup_free(struct audit_rollup_pending *p);

/*
 * The split of [since, until) (ns; until 0 = open) given counters complete from `from` (ns,
 * a day boundary): the whole days [*first_day, *end_day) are answered by counters, and the
 * ends [since, *first_day * DAY) and [*end_day * DAY, until) from rows. Returns 1 when at
 * least one whole day can be read from counters, else 0 (count the range from rows alone).
 */
int audit_rollup_split(int64_t since, int64_t until, int64_t from, int64_t *first_day,
                       int64_t *end_day);

#endif
