/* safety-t.h: what the safety layer found (types only). Values are never stored. */
#ifndef GW_SAFETY_T_H
#define GW_SAFETY_T_H

#include <stddef.h>

enum gw_pii_action { GW_PII_LOG = 0, GW_PII_REDACT, GW_PII_BLOCK };
enum gw_direction { GW_DIR_REQUEST = 0, GW_DIR_RESPONSE };

struct gw_finding {
    char type[32];  /* "ssn", "credit_card", "aws_key", custom detector name ... */
    char path[160]; /* JSON Pointer into the message: "/params/arguments/note" */
    unsigned count;
    enum gw_pii_action action;
    enum gw_direction direction;
};

#define GW_MAX_FINDINGS 64

struct gw_findings {
    struct gw_finding items[GW_MAX_FINDINGS];
    size_t n;
    size_t dropped; /* findings beyond GW_MAX_FINDINGS, counted but not itemised */
    unsigned redactions;
};

#endif
