/*
 * otlp: the OTLP/HTTP protobuf encoding of spans (opentelemetry/proto/trace/v1 and
 * collector/trace/v1), written by hand because the messages are few and fixed: a span is
 * encoded once, on the worker that served the request, into a ScopeSpans.spans field (tag
 * and length included) so that the exporter only concatenates them into a request body.
 *
 * Usage: otlp_span_begin, then any number of otlp_attr_* and at most one otlp_status, then
 * otlp_span_end. Every function appends to a gw_buf and returns 0 or -1 (memory); on -1 the
 * caller drops what it was building.
 */
#ifndef GW_OTLP_H
#define GW_OTLP_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

enum otlp_kind { OTLP_KIND_INTERNAL = 1, OTLP_KIND_SERVER = 2, OTLP_KIND_CLIENT = 3 };
enum otlp_status_code { OTLP_STATUS_UNSET = 0, OTLP_STATUS_OK = 1, OTLP_STATUS_ERROR = 2 };

#define OTLP_CONTENT_TYPE "application/x-protobuf"

struct otlp_span {
    const uint8_t *trace_id;       /* 16 bytes */
    const uint8_t *span_id;        /* 8 bytes */
    const uint8_t *parent_span_id; /* 8 bytes, or NULL for a root span */
    int parent_remote;             /* the parent came from another process */
    const char *trace_state;       /* may be NULL or "" */
    const char *name;
    enum otlp_kind kind;
    uint8_t trace_flags;
    uint64_t start_unix_ns, end_unix_ns;
};

/* Starts a span; *mark remembers where, for otlp_span_end. */
int otlp_span_begin(struct gw_buf *b, const struct otlp_span *s, size_t *mark);
/*
 * The length of the longest prefix of valid UTF-8 s[0, n) that is at most max bytes and does
 * not end inside a character (protobuf strings must be valid UTF-8).
 */
size_t otlp_utf8_prefix(const char *s, size_t n, size_t max);

#define OTLP_MAX_VALUE 256 /* bytes of a string attribute; longer ones are cut (UTF-8 safe) */

/*
 * Span attributes. Strings are (pointer, length) of valid UTF-8, cut to OTLP_MAX_VALUE; a NULL
 * or empty string is not written.
 */
int otlp_attr_str(struct gw_buf *b, const char *key, const char *v, size_t n);
int otlp_attr_cstr(struct gw_buf *b, const char *key, const char *v);
int otlp_attr_int(struct gw_buf *b, const char *key, int64_t v);
int otlp_attr_bool(struct gw_buf *b, const char *key, int v);
int otlp_status(struct gw_buf *b, enum otlp_status_code code, const char *message);
/* Writes the span's length where otlp_span_begin left room for it. */
int otlp_span_end(struct gw_buf *b, size_t mark);

/*
 * The resource and scope around spans: an ExportTraceServiceRequest holding one
 * ResourceSpans (attributes keys[i]=values[i]) with one ScopeSpans (scope "toolgate",
 * version) whose spans are the bytes spans[0, n) made by the calls above.
 */
int otlp_request(struct gw_buf *out, const char *const *keys, const char *const *values,
                 size_t n_attrs, const char *scope_version, const struct gw_slice *chunks,
                 size_t n_chunks);

#endif
