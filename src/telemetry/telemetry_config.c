/* Parsing `telemetry: {traces: {...}}`. Absent: no traces. */
#include "telemetry/telemetry.h"

#include <stdlib.h>
#include <string.h>

static int header_text_ok(const char *s, int is_name)
{
    if (!*s)
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return 0;
        if (is_name && (*p == ':' || *p == ' '))
            return 0;
    }
    return 1;
}

/* A map of strings -> two NULL-terminated arrays of at most max entries. */
static int string_map(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                      const char *key, size_t max, int headers, char ***keys, char ***values,
                      size_t *n, struct cfg_error *err)
{
    const struct cfg_node *m = cfg_map_get(map, key);
    char p[160];
    cfg_path_key(p, sizeof p, path, key);
    if (!m || cfg_is_null(m))
        return 0;
    if (cfg_expect_map(doc, m, p, err) != 0)
        return -1;
    if (m->n > max)
        return cfg_errorf(err, doc, m, p, "at most %zu entries", max);
    *keys = calloc(m->n + 1, sizeof **keys);
    *values = calloc(m->n + 1, sizeof **values);
    if (!*keys || !*values)
        return cfg_errorf(err, doc, m, p, "out of memory");
    for (size_t i = 0; i < m->n; i++) {
        char ip[200];
        cfg_path_key(ip, sizeof ip, p, m->keys[i]);
        (*keys)[i] = strdup(m->keys[i]);
        if (!(*keys)[i] || cfg_scalar_string(doc, m->items[i], ip, &(*values)[i], err) != 0) {
            *n = i + 1;
            return (*keys)[i] ? -1 : cfg_errorf(err, doc, m, p, "out of memory");
        }
        *n = i + 1;
        if (headers && (!header_text_ok((*keys)[i], 1) || !header_text_ok((*values)[i], 0)))
            return cfg_errorf(err, doc, m->items[i], ip,
                              "a header name or value holds a character HTTP does not allow");
        if (!headers && !*(*values)[i])
            return cfg_errorf(err, doc, m->items[i], ip, "must not be empty");
        if (!headers && strcmp((*keys)[i], "service.name") == 0)
            return cfg_errorf(err, doc, m->items[i], ip,
                              "set it with telemetry.traces.service_name");
    }
    return 0;
}

static int endpoint_parse(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                          char **endpoint, struct cfg_error *err)
{
    char *e = *endpoint;
    size_t scheme = strncmp(e, "http://", 7) == 0 ? 7 : strncmp(e, "https://", 8) == 0 ? 8 : 0;
    if (!scheme || !e[scheme])
        return cfg_errorf(err, doc, node, path, "must be an http:// or https:// URL");
    for (const unsigned char *p = (const unsigned char *)e; *p; p++)
        if (*p <= 0x20 || *p == 0x7f)
            return cfg_errorf(err, doc, node, path, "must not hold spaces or control characters");
    /* A URL without a path (or "/") names the collector: its traces path is /v1/traces. */
    const char *slash = strchr(e + scheme, '/');
    if (!slash || strcmp(slash, "/") == 0) {
        size_t base = slash ? (size_t)(slash - e) : strlen(e);
        char *full = malloc(base + sizeof "/v1/traces");
        if (!full)
            return cfg_errorf(err, doc, node, path, "out of memory");
        memcpy(full, e, base);
        memcpy(full + base, "/v1/traces", sizeof "/v1/traces");
        free(e);
        *endpoint = full;
    }
    return 0;
}

static int traces_parse(const struct cfg_doc *doc, const struct cfg_node *t,
                        struct telemetry_config *tc, struct cfg_error *err)
{
    static const char *const keys[] = {
        "endpoint", "protocol", "service_name", "sample",     "queue",
        "batch",    "interval", "timeout",      "retries",    "shutdown",
        "headers",  "resource", "baggage",      "enduser_id", NULL,
    };
    const char *path = "telemetry.traces";
    if (cfg_expect_map(doc, t, path, err) != 0 || cfg_check_keys(doc, t, path, keys, err) != 0)
        return -1;
    if (cfg_get_string(doc, t, path, "endpoint", 1, &tc->endpoint, err) != 0 ||
        endpoint_parse(doc, cfg_map_get(t, "endpoint"), "telemetry.traces.endpoint", &tc->endpoint,
                       err) != 0)
        return -1;
    char *protocol = NULL;
    if (cfg_get_string(doc, t, path, "protocol", 0, &protocol, err) != 0)
        return -1;
    if (protocol && strcmp(protocol, "http/protobuf") != 0) {
        free(protocol);
        return cfg_errorf(err, doc, cfg_map_get(t, "protocol"), "telemetry.traces.protocol",
                          "toolgate sends OTLP over HTTP as protobuf: use http/protobuf");
    }
    free(protocol);
    if (cfg_get_string(doc, t, path, "service_name", 0, &tc->service_name, err) != 0)
        return -1;
    if (!*tc->service_name)
        return cfg_errorf(err, doc, t, "telemetry.traces.service_name", "must not be empty");
    if (cfg_get_double(doc, t, path, "sample", &tc->sample, err) != 0)
        return -1;
    if (!(tc->sample >= 0.0 && tc->sample <= 1.0))
        return cfg_errorf(err, doc, cfg_map_get(t, "sample"), "telemetry.traces.sample",
                          "must be between 0 and 1");
    int64_t queue = (int64_t)tc->queue, batch = (int64_t)tc->batch, retries = (int64_t)tc->retries;
    if (cfg_get_int(doc, t, path, "queue", 1, 1000000, &queue, err) != 0 ||
        cfg_get_int(doc, t, path, "batch", 1, 10000, &batch, err) != 0 ||
        cfg_get_int(doc, t, path, "retries", 0, 10, &retries, err) != 0)
        return -1;
    tc->queue = (uint64_t)queue;
    tc->batch = (uint64_t)batch < tc->queue ? (uint64_t)batch : tc->queue;
    tc->retries = (uint64_t)retries;
    if (cfg_get_duration_ms(doc, t, path, "interval", &tc->interval_ms, err) != 0 ||
        cfg_get_duration_ms(doc, t, path, "timeout", &tc->timeout_ms, err) != 0 ||
        cfg_get_duration_ms(doc, t, path, "shutdown", &tc->shutdown_ms, err) != 0)
        return -1;
    if (tc->interval_ms < 10 || tc->interval_ms > 60000)
        return cfg_errorf(err, doc, cfg_map_get(t, "interval"), "telemetry.traces.interval",
                          "must be between 10ms and 60s");
    if (tc->timeout_ms < 10 || tc->timeout_ms > 60000)
        return cfg_errorf(err, doc, cfg_map_get(t, "timeout"), "telemetry.traces.timeout",
                          "must be between 10ms and 60s");
    if (tc->shutdown_ms > 60000)
        return cfg_errorf(err, doc, cfg_map_get(t, "shutdown"), "telemetry.traces.shutdown",
                          "must be at most 60s");
    if (string_map(doc, t, path, "headers", TELEMETRY_MAX_HEADERS, 1, &tc->header_names,
                   &tc->header_values, &tc->n_headers, err) != 0 ||
        string_map(doc, t, path, "resource", TELEMETRY_MAX_RESOURCE, 0, &tc->resource_keys,
                   &tc->resource_values, &tc->n_resource, err) != 0)
        return -1;
    if (cfg_get_string_list(doc, t, path, "baggage", &tc->baggage, &tc->n_baggage, err) != 0)
        return -1;
    if (tc->n_baggage > TELEMETRY_MAX_BAGGAGE_KEYS)
        return cfg_errorf(err, doc, cfg_map_get(t, "baggage"), "telemetry.traces.baggage",
                          "at most %d keys", TELEMETRY_MAX_BAGGAGE_KEYS);
    for (size_t i = 0; i < tc->n_baggage; i++)
        if (!header_text_ok(tc->baggage[i], 1) || strpbrk(tc->baggage[i], "=,;\"\\"))
            return cfg_errorf(err, doc, cfg_map_get(t, "baggage"), "telemetry.traces.baggage",
                              "\"%s\" is not a baggage key", tc->baggage[i]);
    return cfg_get_bool(doc, t, path, "enduser_id", &tc->enduser_id, err);
}

int telemetry_config_parse(const struct cfg_doc *doc, const struct cfg_node *node,
                           struct telemetry_config **out, struct cfg_error *err)
{
    static const char *const keys[] = {"traces", NULL};
    *out = NULL;
    if (!node || cfg_is_null(node))
        return 0;
    if (cfg_expect_map(doc, node, "telemetry", err) != 0 ||
        cfg_check_keys(doc, node, "telemetry", keys, err) != 0)
        return -1;
    const struct cfg_node *t = cfg_map_get(node, "traces");
    if (!t || cfg_is_null(t))
        return 0;
    struct telemetry_config *tc = calloc(1, sizeof *tc);
    if (!tc)
        return cfg_errorf(err, doc, node, "telemetry", "out of memory");
    tc->service_name = strdup("toolgate");
    tc->sample = 1.0;
    tc->queue = 2048;
    tc->batch = 256;
    tc->interval_ms = 1000;
    tc->timeout_ms = 5000;
    tc->retries = 2;
    tc->shutdown_ms = 5000;
    *out = tc;
    if (!tc->service_name)
        return cfg_errorf(err, doc, node, "telemetry", "out of memory");
    return traces_parse(doc, t, tc, err);
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

void telemetry_config_free(struct telemetry_config *tc)
{
    if (!tc)
        return;
    free(tc->endpoint);
    free(tc->service_name);
    strv_free(tc->header_names, tc->n_headers);
    strv_free(tc->header_values, tc->n_headers);
    strv_free(tc->resource_keys, tc->n_resource);
    strv_free(tc->resource_values, tc->n_resource);
    cfg_strv_free(tc->baggage);
    free(tc);
}
