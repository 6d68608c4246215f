/*
 * audit_syslog: audit records as syslog messages (RFC 5424) and their framing on a stream
 * (octet counting, RFC 6587 section 3.4.1, which RFC 5425 uses over TLS). Pure functions over
 * buffers: the sink threads (audit_sink.c) call them, the unit tests drive them directly.
 */
#ifndef AUDIT_SYSLOG_H
#define AUDIT_SYSLOG_H

#include <jansson.h>
#include <stddef.h>

#include "lib/buf.h"

/* Header field bounds of RFC 5424 section 6. */
#define AUDIT_SYSLOG_HOSTNAME_MAX 255
#define AUDIT_SYSLOG_APP_NAME_MAX 48
#define AUDIT_SYSLOG_PROCID_MAX 128
#define AUDIT_SYSLOG_MSGID_MAX 32
#define AUDIT_SYSLOG_SD_NAME_MAX 32
/* An SD-PARAM value is cut to this many bytes (at a UTF-8 boundary). */
#define AUDIT_SYSLOG_PARAM_MAX 256
/* The smallest message size a receiver must accept (RFC 5424 6.1 / RFC 5426: 480 octets). */
#define AUDIT_SYSLOG_MIN_LENGTH 480

struct audit_syslog_params {
    int facility;         /* 0..23 */
    const char *hostname; /* HOSTNAME; NULL or empty: "-" */
    const char *app_name; /* APP-NAME */
    const char *procid;   /* PROCID */
    const char *sd_id;    /* SD-ID of the structured data element, e.g. "toolgate@32473" */
    size_t max_length;    /* the whole message at most (>= AUDIT_SYSLOG_MIN_LENGTH) */
};

/*
 * Appends one message for a committed record: PRI from the facility and the record's decision
 * (allow 6, deny 4, error 3, other records 6), VERSION 1, TIMESTAMP from time_ns (microseconds,
 * UTC), HOSTNAME, APP-NAME, PROCID, MSGID = the record's kind, one SD-ELEMENT with the fields
 * a SIEM filters on, and MSG = a UTF-8 BOM and payload. A message longer than max_length has
 * its MSG cut at a UTF-8 boundary (RFC 5424 6.1). Returns 0, 1 when it was cut, -1 on memory.
 */
int audit_syslog_format(struct gw_buf *out, const struct audit_syslog_params *p, const json_t *rec,
                        const char *payload, size_t payload_len);

/* Appends "MSG-LEN SP MSG" (octet counting). Returns 0 or -1. */
int audit_syslog_frame(struct gw_buf *out, const char *msg, size_t len);

/*
 * Appends an SD-PARAM value with '"', '\' and ']' escaped by a backslash (RFC 5424 6.3.3),
 * cut to `max` bytes of input at a UTF-8 boundary. Returns 0 or -1.
 */
int audit_syslog_param_escape(struct gw_buf *out, const char *s, size_t n, size_t max);

/*
 * Copies a header field keeping printable US-ASCII (33..126) and replacing anything else by
 * '_', at most max characters; "-" (the NILVALUE) when s is NULL or empty.
 */
void audit_syslog_header_field(char *out, size_t outlen, const char *s, size_t max);

/*
 * Reads one octet-counted frame from data[0..len): on success *msg and *msg_len name it and the
 * bytes it took are returned; 0 when more bytes are needed; -1 when the bytes are not a frame
 * (no digits, a leading zero, a length over max). For tests and the fuzz driver.
 */
long audit_syslog_unframe(const char *data, size_t len, size_t max, const char **msg,
                          size_t *msg_len);

#endif
