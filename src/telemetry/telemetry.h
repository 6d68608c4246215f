/*
 * telemetry: the `telemetry` module. It is not a governance layer: it decides nothing. It
 * watches every request that reached a route (module.h: observer hooks), continues or starts
 * a W3C trace for it, passes the context on to the backend, and, once the response has ended,
 * encodes the request's spans (server, one per layer, upstream client) and hands them to the
 * exporter thread (exporter.h), which sends them to an OTLP/HTTP collector. Nothing here can
 * fail or slow a call: a full queue or a dead collector drops spans and counts them.
 */
#ifndef GW_TELEMETRY_H
#define GW_TELEMETRY_H

#include <stddef.h>
#include <stdint.h>

#include "lib/cfg.h"

#define TELEMETRY_MAX_HEADERS 16
#define TELEMETRY_MAX_RESOURCE 32
#define TELEMETRY_MAX_BAGGAGE_KEYS 32

/* telemetry.traces, as parsed; owned by the configuration generation. */
struct telemetry_config {
    char *endpoint;     /* full URL of the collector's /v1/traces */
    char *service_name; /* resource service.name */
    double sample;      /* ratio of new traces kept (parent-based otherwise) */
    uint64_t queue;     /* requests' span sets waiting for export, at most */
    uint64_t batch;     /* requests' span sets per export request, at most */
    uint64_t interval_ms;
    uint64_t timeout_ms; /* one export attempt */
    uint64_t retries;
    uint64_t shutdown_ms; /* the flush at shutdown, all attempts together */
    char **header_names;  /* sent with every export (e.g. an API key); never logged */
    char **header_values;
    size_t n_headers;
    char **resource_keys; /* extra resource attributes */
    char **resource_values;
    size_t n_resource;
    char **baggage; /* baggage keys forwarded to backends (NULL-terminated) */
    size_t n_baggage;
    int enduser_id; /* put the verified subject in enduser.id */
};

struct gw_request;
struct gw_buf;

/*
 * Appends the request's spans (ScopeSpans.spans fields, otlp.h) to b once its answer has
 * ended; *n_spans says how many (0: the request is not sampled or not traced). Returns 0, or
 * -1 when memory ran out (b then holds a partial encoding to discard).
 */
int telemetry_spans_encode(struct gw_request *req, struct gw_buf *b, unsigned *n_spans);

int telemetry_config_parse(const struct cfg_doc *doc, const struct cfg_node *node,
                           struct telemetry_config **out, struct cfg_error *err);
void telemetry_config_free(struct telemetry_config *tc);

/* The module (also declared by the module list, layers/modules.h). */
struct gw_module;
extern const struct gw_module telemetry_module;

#endif
