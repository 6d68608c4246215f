/*
 * audit_ocsf: a decision or completion record as an OCSF API Activity event (class 6003). The one
 * mapping behind `toolgate audit export --format ocsf` and the sinks' `payload: ocsf`; the table in
 * docs/audit.md says which record field goes where.
 */
#ifndef AUDIT_OCSF_H
#define AUDIT_OCSF_H

#include <jansson.h>

/* The OCSF schema version the events claim (metadata.version). */
#define AUDIT_OCSF_VERSION "1.3.0"

/*
 * The event for one committed record with its chain fields and "hash" (a new reference the
 * caller frees), or NULL when the record is neither a decision nor a completion record, or
 * memory ran out. Only
 * fields the record already carries are used: no secret or PII value can appear that the
 * record did not hold.
 */
json_t *audit_ocsf_event(const json_t *rec);

#endif
