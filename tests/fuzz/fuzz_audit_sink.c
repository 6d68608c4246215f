/*
 * Fuzz driver for what the audit sinks read or shape from outside: an Elastic bulk answer
 * (the receiver's bytes) must never crash and must give statuses in 100..599 or fail; an
 * octet-counted frame reader must never read past its input; an RFC 5424 message built from
 * hostile record strings must stay within its bound and keep its structured data closed.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layers/audit/audit_sink.h"
#include "layers/audit/audit_syslog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t n = data[0] % 8;
    int status[8];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    if (audit_sink_bulk_result(body, len, n, status) == 0)
        for (size_t i = 0; i < n; i++)
            if (status[i] < 100 || status[i] > 599)
                __builtin_trap();

    const char *msg;
    size_t msg_len;
    long used = audit_syslog_unframe(body, len, 4096, &msg, &msg_len);
    if (used > 0 && ((size_t)used > len || msg + msg_len > body + len || msg < body))
        __builtin_trap();

    /* The input as a record's string fields and as the payload. */
    json_t *rec = json_object();
    json_object_set_new(rec, "kind", json_stringn_nocheck(body, len < 40 ? len : 40));
    json_object_set_new(rec, "tool", json_stringn_nocheck(body, len));
    json_object_set_new(rec, "subject", json_stringn_nocheck(body, len / 2));
    json_object_set_new(rec, "time_ns", json_stringn_nocheck(body, len < 24 ? len : 24));
    struct audit_syslog_params p = {.facility = data[0] % 30,
                                    .hostname = "gw",
                                    .app_name = "toolgate",
                                    .procid = "1",
                                    .sd_id = "toolgate@32473",
                                    .max_length = 480 + (size_t)data[0] * 4};
    struct gw_buf b = {0};
    int rc = audit_syslog_format(&b, &p, rec, body, len);
    if (rc >= 0 && b.len > p.max_length)
        __builtin_trap();
    gw_buf_free(&b);
    json_decref(rec);
    return 0;
}
