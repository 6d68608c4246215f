/* `audit.sinks`: the streaming sinks' configuration (audit_sink.h). */
#include "layers/audit/audit_sink.h"
#include "layers/audit/audit_syslog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void sink_free(struct audit_sink_config *s)
{
    free(s->name);
    free(s->host);
    free(s->port);
    free(s->app_name);
    free(s->sd_id);
    free(s->url);
    free(s->token_file);
    free(s->index);
    free(s->sourcetype);
    free(s->tls_ca);
    free(s->tls_cert);
    free(s->tls_key);
    free(s->server_name);
    memset(s, 0, sizeof *s);
}

void audit_sinks_config_free(struct audit_sink_config *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        sink_free(&s[i]);
    free(s);
}

/* Picks `value` out of names[] (NULL-terminated); -1 when it is none of them. */
static int one_of(const char *value, const char *const *names)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(value, names[i]) == 0)
            return i;
    return -1;
}

/* Reads an optional enumerated key; *out keeps its value when the key is absent. */
static int get_enum(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                    const char *key, const char *const *names, const char *list, int *out,
                    struct cfg_error *err)
{
    char *v = NULL, where[160];
    if (cfg_get_string(doc, map, path, key, 0, &v, err))
        return -1;
    if (!v)
        return 0;
    int k = one_of(v, names);
    cfg_path_key(where, sizeof where, path, key);
    if (k < 0)
        cfg_errorf(err, doc, cfg_map_get(map, key), where, "\"%s\" is not one of %s", v, list);
    else
        *out = k;
    free(v);
    return k < 0 ? -1 : 0;
}

/* "host:port" or "[v6]:port" into its parts. Returns 0 or -1. */
static int split_address(const char *a, char **host, char **port)
{
    const char *colon, *h = a;
    size_t hl;
    if (a[0] == '[') {
        const char *close = strchr(a, ']');
        if (!close || close[1] != ':')
            return -1;
        h = a + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(a, ':');
        if (!colon || strchr(a, ':') != colon)
            return -1;
        hl = (size_t)(colon - a);
    }
    const char *p = colon + 1;
    size_t pl = strlen(p);
    if (hl == 0 || hl > 253 || pl == 0 || pl > 5 || strspn(p, "0123456789") != pl || atoi(p) < 1 ||
        atoi(p) > 65535)
        return -1;
    for (size_t i = 0; i < hl; i++)
        if (!(h[i] == '.' || h[i] == '-' || h[i] == ':' || h[i] == '_' ||
              (h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'z') ||
              (h[i] >= 'A' && h[i] <= 'Z')))
            return -1;
    *host = strndup(h, hl);
    *port = strdup(p);
    return *host && *port ? 0 : -1;
}

/* Syslog facilities by name (RFC 5424 table 1), or a number 0..23. */
static int facility_of(const char *s)
{
    static const char *const names[] = {
        "kern",   "user",     "mail",   "daemon", "auth",   "syslog", "lpr",   "news",   "uucp",
        "cron",   "authpriv", "ftp",    "ntp",    "audit",  "alert",  "clock", "local0", "local1",
        "local2", "local3",   "local4", "local5", "local6", "local7", NULL};
    int k = one_of(s, names);
    if (k >= 0)
        return k;
    size_t n = strlen(s);
    if (n == 0 || n > 2 || strspn(s, "0123456789") != n || atoi(s) > 23)
        return -1;
    return atoi(s);
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 48 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* A key that belongs to the other kind of sink is an error, not something silently ignored. */
static int refuse(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                  const char *const *keys, const char *why, struct cfg_error *err)
{
    char where[160];
    for (int i = 0; keys[i]; i++) {
        const struct cfg_node *n = cfg_map_get(map, keys[i]);
        if (n) {
            cfg_path_key(where, sizeof where, path, keys[i]);
            return cfg_errorf(err, doc, n, where, "%s", why);
        }
    }
    return 0;
}

static int parse_tls(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                     struct audit_sink_config *s, struct cfg_error *err)
{
    static const char *const keys[] = {"ca", "cert", "key", "server_name", NULL};
    const struct cfg_node *t = cfg_map_get(map, "tls");
    char where[160];
    if (!t || cfg_is_null(t))
        return 0;
    cfg_path_key(where, sizeof where, path, "tls");
    if (cfg_expect_map(doc, t, where, err) || cfg_check_keys(doc, t, where, keys, err) ||
        cfg_get_string(doc, t, where, "ca", 0, &s->tls_ca, err) ||
        cfg_get_string(doc, t, where, "cert", 0, &s->tls_cert, err) ||
        cfg_get_string(doc, t, where, "key", 0, &s->tls_key, err) ||
        cfg_get_string(doc, t, where, "server_name", 0, &s->server_name, err))
        return -1;
    if (!s->tls_cert != !s->tls_key)
        return cfg_errorf(err, doc, t, where, "give both cert and key for a client certificate");
    return 0;
}

static int parse_delivery(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                          struct audit_sink_config *s, struct cfg_error *err)
{
    static const char *const batch_keys[] = {"max_records", "max_wait", NULL};
    static const char *const retry_keys[] = {"initial", "max", NULL};
    char where[160];
    int64_t queue = (int64_t)s->queue, max_records = (int64_t)s->batch_max;
    if (cfg_get_int(doc, map, path, "queue", 16, 1000000, &queue, err))
        return -1;
    s->queue = (uint64_t)queue;
    const struct cfg_node *b = cfg_map_get(map, "batch");
    if (b && !cfg_is_null(b)) {
        cfg_path_key(where, sizeof where, path, "batch");
        if (cfg_expect_map(doc, b, where, err) || cfg_check_keys(doc, b, where, batch_keys, err) ||
            cfg_get_int(doc, b, where, "max_records", 1, 10000, &max_records, err) ||
            cfg_get_duration_ms(doc, b, where, "max_wait", &s->batch_wait_ms, err))
            return -1;
        s->batch_max = (uint64_t)max_records;
        if (s->batch_wait_ms > 60000)
            return cfg_errorf(err, doc, cfg_map_get(b, "max_wait"), where,
                              "max_wait must be at most 1m");
    }
    if (s->batch_max > s->queue)
        return cfg_errorf(err, doc, b, path, "batch.max_records (%llu) exceeds queue (%llu)",
                          (unsigned long long)s->batch_max, (unsigned long long)s->queue);
    const struct cfg_node *r = cfg_map_get(map, "retry");
    if (r && !cfg_is_null(r)) {
        cfg_path_key(where, sizeof where, path, "retry");
        if (cfg_expect_map(doc, r, where, err) || cfg_check_keys(doc, r, where, retry_keys, err) ||
            cfg_get_duration_ms(doc, r, where, "initial", &s->retry_initial_ms, err) ||
            cfg_get_duration_ms(doc, r, where, "max", &s->retry_max_ms, err))
            return -1;
        if (s->retry_initial_ms < 10 || s->retry_initial_ms > 60000)
            return cfg_errorf(err, doc, r, where, "initial must be between 10ms and 1m");
        if (s->retry_max_ms < s->retry_initial_ms || s->retry_max_ms > 3600000)
            return cfg_errorf(err, doc, r, where, "max must be between initial and 1h");
    }
    if (cfg_get_duration_ms(doc, map, path, "timeout", &s->timeout_ms, err))
        return -1;
    if (s->timeout_ms < 100 || s->timeout_ms > 300000)
        return cfg_errorf(err, doc, cfg_map_get(map, "timeout"), path,
                          "timeout must be between 100ms and 5m");
    return 0;
}

static int parse_syslog(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                        struct audit_sink_config *s, struct cfg_error *err)
{
    static const char *const not_here[] = {"url",   "format",     "token_file",
                                           "index", "sourcetype", NULL};
    static const char *const transports[] = {"tcp", "tls", "udp", NULL};
    char *address = NULL, *facility = NULL, where[160];
    int transport = AUDIT_SINK_TCP, rc = -1;
    if (refuse(doc, map, path, not_here, "applies to http sinks, not syslog", err) ||
        get_enum(doc, map, path, "transport", transports, "tcp, tls, udp", &transport, err) ||
        cfg_get_string(doc, map, path, "address", 1, &address, err) ||
        cfg_get_string(doc, map, path, "facility", 0, &facility, err) ||
        cfg_get_string(doc, map, path, "app_name", 0, &s->app_name, err) ||
        cfg_get_string(doc, map, path, "sd_id", 0, &s->sd_id, err))
        goto out;
    s->transport = (enum audit_sink_transport)transport;
    cfg_path_key(where, sizeof where, path, "address");
    if (split_address(address, &s->host, &s->port) != 0) {
        cfg_errorf(err, doc, cfg_map_get(map, "address"), where,
                   "\"%s\" is not host:port (or [v6]:port)", address);
        goto out;
    }
    if (facility && (s->facility = facility_of(facility)) < 0) {
        cfg_path_key(where, sizeof where, path, "facility");
        cfg_errorf(err, doc, cfg_map_get(map, "facility"), where,
                   "\"%s\" is not a facility: 0..23 or a name (audit, authpriv, local0, ...)",
                   facility);
        goto out;
    }
    if (s->app_name && (!s->app_name[0] || strlen(s->app_name) > AUDIT_SYSLOG_APP_NAME_MAX ||
                        strspn(s->app_name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789._-") != strlen(s->app_name))) {
        cfg_path_key(where, sizeof where, path, "app_name");
        cfg_errorf(err, doc, cfg_map_get(map, "app_name"), where,
                   "use 1-48 letters, digits, '.', '_' or '-'");
        goto out;
    }
    if (s->sd_id) {
        size_t n = strlen(s->sd_id);
        const char *at = strchr(s->sd_id, '@');
        if (n == 0 || n > AUDIT_SYSLOG_SD_NAME_MAX || !at || at == s->sd_id || !at[1] ||
            strspn(at + 1, "0123456789.") != strlen(at + 1) || strcspn(s->sd_id, " =]\"") != n) {
            cfg_path_key(where, sizeof where, path, "sd_id");
            cfg_errorf(err, doc, cfg_map_get(map, "sd_id"), where,
                       "write name@<private enterprise number>, at most 32 characters");
            goto out;
        }
    }
    /* An OCSF event is about 2.5 KB: the RFC's 2048 would cut nearly every one. */
    int64_t max_length = 8192;
    if (cfg_get_int(doc, map, path, "max_length", AUDIT_SYSLOG_MIN_LENGTH,
                    s->transport == AUDIT_SINK_UDP ? 65000 : 1048576, &max_length, err))
        goto out;
    s->max_length = (uint64_t)max_length;
    if (parse_tls(doc, map, path, s, err))
        goto out;
    if (s->transport != AUDIT_SINK_TLS && cfg_map_get(map, "tls")) {
        cfg_path_key(where, sizeof where, path, "tls");
        cfg_errorf(err, doc, cfg_map_get(map, "tls"), where, "applies to transport: tls only");
        goto out;
    }
    rc = 0;
out:
    free(address);
    free(facility);
    return rc;
}

static int parse_http(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                      struct audit_sink_config *s, struct cfg_error *err)
{
    static const char *const not_here[] = {"address", "transport",  "facility", "app_name",
                                           "sd_id",   "max_length", NULL};
    static const char *const formats[] = {"hec", "bulk", "json", "ndjson", NULL};
    char where[160];
    int format = -1;
    if (refuse(doc, map, path, not_here, "applies to syslog sinks, not http", err) ||
        cfg_get_string(doc, map, path, "url", 1, &s->url, err) ||
        get_enum(doc, map, path, "format", formats, "hec, bulk, json, ndjson", &format, err) ||
        cfg_get_string(doc, map, path, "token_file", 0, &s->token_file, err) ||
        cfg_get_string(doc, map, path, "index", 0, &s->index, err) ||
        cfg_get_string(doc, map, path, "sourcetype", 0, &s->sourcetype, err) ||
        parse_tls(doc, map, path, s, err))
        return -1;
    cfg_path_key(where, sizeof where, path, "url");
    size_t ul = strlen(s->url);
    if (!((strncmp(s->url, "http://", 7) == 0 && ul > 7) ||
          (strncmp(s->url, "https://", 8) == 0 && ul > 8)) ||
        ul > 2048 || strcspn(s->url, " \t\r\n\"") != ul || strchr(s->url, '@'))
        return cfg_errorf(err, doc, cfg_map_get(map, "url"), where,
                          "write an http:// or https:// URL (no credentials in it: use "
                          "token_file)");
    if (format < 0) {
        cfg_path_key(where, sizeof where, path, "format");
        return cfg_errorf(err, doc, map, where, "required: hec, bulk, json or ndjson");
    }
    s->format = (enum audit_sink_format)format;
    if (s->format == AUDIT_SINK_HEC && !s->token_file) {
        cfg_path_key(where, sizeof where, path, "token_file");
        return cfg_errorf(err, doc, map, where, "a Splunk HEC sink needs its token in a file");
    }
    if (s->format == AUDIT_SINK_BULK && !s->index) {
        cfg_path_key(where, sizeof where, path, "index");
        return cfg_errorf(err, doc, map, where, "an Elastic bulk sink needs the index to write to");
    }
    if (s->index &&
        (!s->index[0] || strlen(s->index) > 255 ||
         strspn(s->index, "abcdefghijklmnopqrstuvwxyz0123456789._-") != strlen(s->index))) {
        cfg_path_key(where, sizeof where, path, "index");
        return cfg_errorf(err, doc, cfg_map_get(map, "index"), where,
                          "use 1-255 lower-case letters, digits, '.', '_' or '-'");
    }
    if (s->sourcetype && (!s->sourcetype[0] || strlen(s->sourcetype) > 128 ||
                          strcspn(s->sourcetype, "\"\\\r\n") != strlen(s->sourcetype))) {
        cfg_path_key(where, sizeof where, path, "sourcetype");
        return cfg_errorf(err, doc, cfg_map_get(map, "sourcetype"), where,
                          "1-128 characters, no quotes, backslashes or line breaks");
    }
    if (s->index && s->format != AUDIT_SINK_HEC && s->format != AUDIT_SINK_BULK) {
        cfg_path_key(where, sizeof where, path, "index");
        return cfg_errorf(err, doc, cfg_map_get(map, "index"), where,
                          "applies to format: hec or bulk only");
    }
    if (s->sourcetype && s->format != AUDIT_SINK_HEC) {
        cfg_path_key(where, sizeof where, path, "sourcetype");
        return cfg_errorf(err, doc, cfg_map_get(map, "sourcetype"), where,
                          "applies to format: hec only");
    }
    if (s->server_name) {
        cfg_path_key(where, sizeof where, path, "tls.server_name");
        return cfg_errorf(err, doc, cfg_map_get(map, "tls"), where,
                          "applies to syslog over TLS; an https sink checks the URL's host");
    }
    return 0;
}

static int parse_one(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                     struct audit_sink_config *s, struct cfg_error *err)
{
    static const char *const keys[] = {
        "name",  "type",       "payload", "address", "transport",  "facility", "app_name",
        "sd_id", "max_length", "url",     "format",  "token_file", "index",    "sourcetype",
        "tls",   "queue",      "batch",   "retry",   "timeout",    NULL};
    static const char *const kinds[] = {"syslog", "http", NULL};
    static const char *const payloads[] = {"ocsf", "jsonl", NULL};
    char where[160];
    int kind = -1, payload = AUDIT_SINK_OCSF;
    s->facility = 13; /* log audit */
    s->queue = 10000;
    s->batch_max = 100;
    s->batch_wait_ms = 1000;
    s->retry_initial_ms = 250;
    s->retry_max_ms = 30000;
    s->timeout_ms = 5000;
    if (cfg_expect_map(doc, map, path, err) || cfg_check_keys(doc, map, path, keys, err) ||
        cfg_get_string(doc, map, path, "name", 1, &s->name, err) ||
        get_enum(doc, map, path, "type", kinds, "syslog, http", &kind, err) ||
        get_enum(doc, map, path, "payload", payloads, "ocsf, jsonl", &payload, err))
        return -1;
    if (!name_ok(s->name)) {
        cfg_path_key(where, sizeof where, path, "name");
        return cfg_errorf(err, doc, cfg_map_get(map, "name"), where,
                          "use 1-48 lower-case letters, digits, '_' or '-'");
    }
    if (kind < 0) {
        cfg_path_key(where, sizeof where, path, "type");
        return cfg_errorf(err, doc, map, where, "required: syslog or http");
    }
    s->kind = (enum audit_sink_kind)kind;
    s->payload = (enum audit_sink_payload)payload;
    if (s->kind == AUDIT_SINK_SYSLOG ? parse_syslog(doc, map, path, s, err)
                                     : parse_http(doc, map, path, s, err))
        return -1;
    return parse_delivery(doc, map, path, s, err);
}

int audit_sinks_config_parse(const struct cfg_doc *doc, const struct cfg_node *node,
                             struct audit_sink_config **out, size_t *n, struct cfg_error *err)
{
    const char *P = "audit.sinks";
    *out = NULL;
    *n = 0;
    if (!node || cfg_is_null(node))
        return 0;
    if (cfg_expect_seq(doc, node, P, err))
        return -1;
    if (node->n > AUDIT_SINKS_MAX)
        return cfg_errorf(err, doc, node, P, "at most %d sinks", AUDIT_SINKS_MAX);
    struct audit_sink_config *s = calloc(node->n ? node->n : 1, sizeof *s);
    if (!s)
        return cfg_errorf(err, doc, node, P, "out of memory");
    for (size_t i = 0; i < node->n; i++) {
        char where[64];
        cfg_path_index(where, sizeof where, P, i);
        if (parse_one(doc, node->items[i], where, &s[i], err) != 0)
            goto fail;
        for (size_t j = 0; j < i; j++)
            if (strcmp(s[j].name, s[i].name) == 0) {
                cfg_errorf(err, doc, node->items[i], where, "a second sink named \"%s\"",
                           s[i].name);
                goto fail;
            }
    }
    *out = s;
    *n = node->n;
    return 0;
fail:
    audit_sinks_config_free(s, node->n);
    return -1;
}
