/* RFC 5424 messages and RFC 6587 octet-counting frames for audit records (audit_syslog.h). */
#include "layers/audit/audit_syslog.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char BOM[] = "\xEF\xBB\xBF";

/* The length of the longest prefix of s[0..n) that is at most max and ends on a UTF-8 start. */
static size_t utf8_cut(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t k = max;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    return k;
}

void audit_syslog_header_field(char *out, size_t outlen, const char *s, size_t max)
{
    size_t n = 0;
    if (outlen == 0)
        return;
    for (; s && s[n] && n < max && n + 1 < outlen; n++) {
        unsigned char c = (unsigned char)s[n];
        out[n] = c >= 33 && c <= 126 ? (char)c : '_';
    }
    if (n == 0 && outlen >= 2)
        out[n++] = '-';
    out[n] = '\0';
}

int audit_syslog_param_escape(struct gw_buf *out, const char *s, size_t n, size_t max)
{
    n = utf8_cut(s, n, max);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '"' && s[i] != '\\' && s[i] != ']')
            continue;
        if (gw_buf_append(out, s + start, i - start) != 0 || gw_buf_append(out, "\\", 1) != 0)
            return -1;
        start = i;
    }
    return gw_buf_append(out, s + start, n - start);
}

static int severity_of(const json_t *rec)
{
    const char *d = json_string_value(json_object_get(rec, "decision"));
    if (!d)
        return 6;
    if (strcmp(d, "deny") == 0)
        return 4;
    if (strcmp(d, "error") == 0)
        return 3;
    return 6;
}

/* "YYYY-MM-DDThh:mm:ss.uuuuuuZ" from nanoseconds since the epoch; "-" when unknown. */
static void timestamp(char *out, size_t outlen, const json_t *rec)
{
    const char *tns = json_string_value(json_object_get(rec, "time_ns"));
    char *end = NULL;
    long long ns = tns ? strtoll(tns, &end, 10) : -1;
    struct tm tm;
    time_t secs = (time_t)(ns / 1000000000LL);
    if (ns < 0 || !end || *end || !gmtime_r(&secs, &tm)) {
        snprintf(out, outlen, "-");
        return;
    }
    size_t k = strftime(out, outlen, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, outlen - k, ".%06lldZ", (ns % 1000000000LL) / 1000);
}

/* The SD-PARAMs, in this order, when the record has them (each a string or an integer). */
static const char *const sd_fields[] = {
    "kind", "seq",     "instance", "request_id", "decision", "layer",    "reason_code", "method",
    "tool", "subject", "tenant",   "client_id",  "backend",  "trace_id", NULL};

static int structured_data(struct gw_buf *out, const char *sd_id, const json_t *rec)
{
    char id[AUDIT_SYSLOG_SD_NAME_MAX + 1];
    audit_syslog_header_field(id, sizeof id, sd_id, AUDIT_SYSLOG_SD_NAME_MAX);
    /* SD-NAME also excludes '=', ']' and '"': replace them as header fields replace spaces. */
    for (char *c = id; *c; c++)
        if (*c == '=' || *c == ']' || *c == '"')
            *c = '_';
    if (gw_buf_printf(out, "[%s", id) != 0)
        return -1;
    for (int i = 0; sd_fields[i]; i++) {
        const json_t *v = json_object_get(rec, sd_fields[i]);
        char num[24];
        const char *s = NULL;
        size_t n = 0;
        if (json_is_string(v)) {
            s = json_string_value(v);
            n = json_string_length(v);
        } else if (json_is_integer(v)) {
            n = (size_t)snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
            s = num;
        } else
            continue;
        if (gw_buf_printf(out, " %s=\"", sd_fields[i]) != 0 ||
            audit_syslog_param_escape(out, s, n, AUDIT_SYSLOG_PARAM_MAX) != 0 ||
            gw_buf_append(out, "\"", 1) != 0)
            return -1;
    }
    return gw_buf_append(out, "]", 1);
}

int audit_syslog_format(struct gw_buf *out, const struct audit_syslog_params *p, const json_t *rec,
                        const char *payload, size_t payload_len)
{
    char ts[40], host[AUDIT_SYSLOG_HOSTNAME_MAX + 1], app[AUDIT_SYSLOG_APP_NAME_MAX + 1];
    char procid[AUDIT_SYSLOG_PROCID_MAX + 1], msgid[AUDIT_SYSLOG_MSGID_MAX + 1];
    size_t mark = out->len, max = p->max_length;
    int facility = p->facility >= 0 && p->facility <= 23 ? p->facility : 13;
    if (max < AUDIT_SYSLOG_MIN_LENGTH)
        max = AUDIT_SYSLOG_MIN_LENGTH;
    timestamp(ts, sizeof ts, rec);
    audit_syslog_header_field(host, sizeof host, p->hostname, AUDIT_SYSLOG_HOSTNAME_MAX);
    audit_syslog_header_field(app, sizeof app, p->app_name, AUDIT_SYSLOG_APP_NAME_MAX);
    audit_syslog_header_field(procid, sizeof procid, p->procid, AUDIT_SYSLOG_PROCID_MAX);
    audit_syslog_header_field(msgid, sizeof msgid, json_string_value(json_object_get(rec, "kind")),
                              AUDIT_SYSLOG_MSGID_MAX);
    if (gw_buf_printf(out, "<%d>1 %s %s %s %s %s ", facility * 8 + severity_of(rec), ts, host, app,
                      procid, msgid) != 0)
        goto oom;
    size_t sd_mark = out->len;
    if (structured_data(out, p->sd_id, rec) != 0)
        goto oom;
    /* Structured data that leaves no room for a message gives way to the NILVALUE. */
    if (out->len - mark + 1 + sizeof BOM - 1 > max) {
        out->len = sd_mark;
        if (gw_buf_append(out, "-", 1) != 0)
            goto oom;
    }
    if (!payload_len)
        return 0;
    if (gw_buf_append(out, " ", 1) != 0 || gw_buf_append(out, BOM, sizeof BOM - 1) != 0)
        goto oom;
    size_t used = out->len - mark, room = used < max ? max - used : 0;
    size_t n = utf8_cut(payload, payload_len, room);
    if (gw_buf_append(out, payload, n) != 0)
        goto oom;
    return n < payload_len ? 1 : 0;
oom:
    out->len = mark;
    return -1;
}

int audit_syslog_frame(struct gw_buf *out, const char *msg, size_t len)
{
    if (gw_buf_printf(out, "%zu ", len) != 0)
        return -1;
    return gw_buf_append(out, msg, len);
}

long audit_syslog_unframe(const char *data, size_t len, size_t max, const char **msg,
                          size_t *msg_len)
{
    size_t i = 0, n = 0;
    while (i < len && data[i] >= '0' && data[i] <= '9') {
        if (i == 0 && data[i] == '0')
            return -1; /* MSG-LEN = NONZERO-DIGIT *DIGIT */
        n = n * 10 + (size_t)(data[i] - '0');
        if (n > max)
            return -1;
        i++;
    }
    if (i == len)
        return 0;
    if (i == 0 || data[i] != ' ')
        return -1;
    i++;
    if (len - i < n)
        return 0;
    *msg = data + i;
    *msg_len = n;
    return (long)(i + n);
}
