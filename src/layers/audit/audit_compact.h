/*
 * audit_compact: what the compact stores (SQLite and PostgreSQL) share: the name
 * dictionary (every subject, tenant, tool, kind, decision, layer and instance is a small
 * integer in the rows), and the samples a new store's first records give its compression
 * dictionary.
 */
#ifndef AUDIT_COMPACT_H
#define AUDIT_COMPACT_H

#include <stddef.h>
#include <stdint.h>

#include "layers/audit/audit_codec.h"
#include "layers/audit/audit_store.h"
#include "lib/buf.h"

/*
 * Names with fixed ids, written when a store is created: the partial indexes name the
 * decision kind by its id (1), so it can never move.
 */
#define AUDIT_NAME_DECISION 1
#define AUDIT_NAME_FIXED 14
extern const char *const audit_fixed_names[AUDIT_NAME_FIXED + 1];

/* Ids occupy 40 bits of a row id beside the seq in SQLite; instances fewer than 2^23. */
#define AUDIT_SEQ_BITS 40
#define AUDIT_SEQ_MAX ((1ull << AUDIT_SEQ_BITS) - 1)
#define AUDIT_NAMES_MAX (1u << 22)

struct audit_names {
    char **by_id; /* by_id[id]; NULL when unused */
    size_t cap;   /* entries of by_id */
    uint32_t *slots;
    size_t n_slots, count;
    uint32_t max_id;
};

/* Records id = name. Returns 0, or -1 on OOM, a duplicate or too many names. */
int audit_names_put(struct audit_names *n, uint32_t id, const char *name);
/* The id of name, or 0 when it has none. */
uint32_t audit_names_id(const struct audit_names *n, const char *name);
/* The name of id, or NULL. */
const char *audit_names_name(const struct audit_names *n, uint32_t id);
void audit_names_free(struct audit_names *n);
/* Ids of every name matching an fnmatch(3) pattern (caller frees *ids). Count or -1. */
long audit_names_glob(const struct audit_names *n, const char *pattern, uint32_t **ids);

/*
 * A new store's dictionary is trained from the reduced text of its first records (this much
 * of it, or this many records), AUDIT_DICT_BYTES at most; until then records are compressed
 * without one.
 */
#define AUDIT_DICT_SAMPLE_BYTES (384u << 10)
#define AUDIT_DICT_SAMPLE_RECORDS 1024u
#define AUDIT_DICT_BYTES (16u << 10)

struct audit_dict_trainer {
    struct gw_buf text;
    size_t sizes[AUDIT_DICT_SAMPLE_RECORDS];
    unsigned n;
    int done;
};

/*
 * Adds the reduced text of a record. Returns 1 when a dictionary is ready in dict (its
 * bytes, caller frees), 0 while collecting (or after), -1 on OOM.
 */
int audit_dict_trainer_add(struct audit_dict_trainer *t, const struct gw_buf *reduced,
                           struct gw_buf *dict);
void audit_dict_trainer_free(struct audit_dict_trainer *t);

/*
 * The values a row cuts from its record (audit_codec.h): prev_hex is the hash of the row
 * before it when that row is in the same store, else NULL.
 */
int audit_compact_cut_values(struct audit_cut_values *cv, struct gw_buf *buf,
                             const struct audit_row *r, const char *prev_hex);

#endif
