/* The counters of an open transaction and the split of a range into days (audit_rollup.h). */
#include "layers/audit/audit_rollup.h"

#include <stdlib.h>
#include <string.h>

static size_t slot_of(int64_t day, uint32_t dim, uint32_t name, size_t mask)
{
    uint64_t h = (uint64_t)day * 0x9e3779b97f4a7c15ull ^ ((uint64_t)dim << 32 | name);
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (size_t)h & mask;
}

static int grow(struct audit_rollup_pending *p)
{
    size_t cap = p->cap ? p->cap * 2 : 256;
    struct audit_rollup_entry *n = malloc(cap * sizeof *n);
    if (!n)
        return -1;
    for (size_t i = 0; i < cap; i++)
        n[i].dim = AUDIT_ROLLUP_DIMS;
    for (size_t i = 0; i < p->cap; i++) {
        const struct audit_rollup_entry *e = &p->slots[i];
        if (e->dim == AUDIT_ROLLUP_DIMS)
            continue;
        size_t j = slot_of(e->day, e->dim, e->name, cap - 1);
        while (n[j].dim != AUDIT_ROLLUP_DIMS)
            j = (j + 1) & (cap - 1);
        n[j] = *e;
    }
    free(p->slots);
    p->slots = n;
    p->cap = cap;
    return 0;
}

int audit_rollup_add(struct audit_rollup_pending *p, int64_t day, uint32_t dim, uint32_t name,
                     uint64_t n)
{
    if (dim >= AUDIT_ROLLUP_DIMS)
        return -1;
    if ((p->used + 1) * 2 > p->cap && grow(p) != 0)
        return -1;
    size_t mask = p->cap - 1, j = slot_of(day, dim, name, mask);
    for (; p->slots[j].dim != AUDIT_ROLLUP_DIMS; j = (j + 1) & mask) {
        struct audit_rollup_entry *e = &p->slots[j];
        if (e->day == day && e->dim == dim && e->name == name) {
            e->n += n;
            return 0;
        }
    }
    p->slots[j] = (struct audit_rollup_entry){.day = day, .dim = dim, .name = name, .n = n};
    p->used++;
    return 0;
}

void audit_rollup_clear(struct audit_rollup_pending *p)
{
    for (size_t i = 0; i < p->cap && p->used; i++)
        if (p->slots[i].dim != AUDIT_ROLLUP_DIMS) {
            p->slots[i].dim = AUDIT_ROLLUP_DIMS;
            p->used--;
        }
    p->used = 0;
}

void audit_rollup_free(struct audit_rollup_pending *p)
{
    free(p->slots);
    memset(p, 0, sizeof *p);
}

int audit_rollup_split(int64_t since, int64_t until, int64_t from, int64_t *first_day,
                       int64_t *end_day)
{
    if (since < 0 || from < 0)
        return 0;
    int64_t lo = since > from ? since : from;
    if (until <= 0)
        until = INT64_MAX;
    /* Days wholly inside [lo, until): from the first boundary at or after lo to the last
     * boundary at or before until (no overflow: both divide before they multiply). */
    int64_t first = lo / AUDIT_ROLLUP_DAY_NS + (lo % AUDIT_ROLLUP_DAY_NS != 0);
    int64_t end = until / AUDIT_ROLLUP_DAY_NS;
    if (first >= end)
        return 0;
    *first_day = first;
    *end_day = end;
    return 1;
}
