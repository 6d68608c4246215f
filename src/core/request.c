#include "core/request.h"
#include "core/module.h"
#include "lib/timeutil.h"
#include "mcp/json_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct gw_request *gw_request_new(const struct gw_config *cfg)
{
    struct gw_request *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->cfg = cfg;
    gw_uuid7(req->id);
    req->deciding_stage = GW_STAGE_NONE;
    req->timing.start_ns = gw_mono_ns();
    return req;
}

static void strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

void gw_identity_clear(struct gw_identity *id)
{
    free(id->subject);
    free(id->issuer);
    free(id->tenant);
    free(id->client_id);
    strv_free(id->roles);
    strv_free(id->scopes);
    memset(id, 0, sizeof *id);
}

struct gw_finding *gw_findings_push(struct gw_findings *f)
{
    if (f->n >= GW_MAX_FINDINGS) {
        f->dropped++;
        return NULL;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 4;
        if (cap > GW_MAX_FINDINGS)
            cap = GW_MAX_FINDINGS;
        struct gw_finding *items = realloc(f->items, cap * sizeof *items);
        if (!items) {
            f->dropped++;
            return NULL;
        }
        f->items = items;
        f->cap = cap;
    }
    struct gw_finding *it = &f->items[f->n++];
    memset(it, 0, sizeof *it);
    return it;
}

void gw_findings_free(struct gw_findings *f)
{
    free(f->items);
    memset(f, 0, sizeof *f);
}

void gw_request_free(struct gw_request *req)
{
    if (!req)
        return;
    for (int i = 0; i < GW_MAX_STAGES; i++)
        if (req->layer_state[i] && req->layer_state_free[i])
            req->layer_state_free[i](req->layer_state[i]);
    gw_identity_clear(&req->identity);
    gw_findings_free(&req->findings);
    mcp_batch_free(&req->rpc);
    free(req->rewritten_body);
    free(req->protocol_version);
    json_decref(req->protocol_error_data);
    json_decref(req->denial_result);
    free(req->session_id);
    mcp_session_clear(&req->session);
    free(req->upstream_session_id);
    gw_buf_free(&req->response_header_storage);
    gw_buf_free(&req->upstream_header_storage);
    free(req);
}

const struct gw_header *gw_header_find(const struct gw_header *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (gw_slice_casecmp_eq(h[i].name, name))
            return &h[i];
    return NULL;
}

struct gw_slice gw_request_header(const struct gw_request *req, const char *name)
{
    const struct gw_header *h = gw_header_find(req->headers, req->n_headers, name);
    return h ? h->value : GW_SLICE_NULL;
}

size_t gw_request_header_count(const struct gw_request *req, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < req->n_headers; i++)
        if (gw_slice_casecmp_eq(req->headers[i].name, name))
            n++;
    return n;
}

struct gw_slice gw_request_upstream_body(const struct gw_request *req)
{
    if (req->rewritten_body)
        return (struct gw_slice){req->rewritten_body, req->rewritten_len};
    return req->body;
}

int gw_decision_deny(struct gw_decision *d, int http_status, int jsonrpc_code,
                     const char *reason_code, const char *reason)
{
    d->verdict = GW_DENY;
    d->http_status = http_status;
    d->jsonrpc_code = jsonrpc_code;
    snprintf(d->reason_code, sizeof d->reason_code, "%s", reason_code ? reason_code : "");
    snprintf(d->reason, sizeof d->reason, "%s", reason ? reason : "");
    return GW_DENY;
}

int gw_host_post(const struct gw_request_host *host, void (*fn)(void *arg), void *arg)
{
    if (!host->post) {
        fn(arg);
        return 0;
    }
    return host->post(host->ctx, fn, arg);
}

int gw_host_stopping(const struct gw_request_host *host)
{
    return host->stopping && host->stopping(host->ctx);
}

int gw_request_post(struct gw_request *req, void (*fn)(void *arg), void *arg)
{
    return gw_host_post(&req->host, fn, arg);
}

struct uv_loop_s *gw_request_loop(const struct gw_request *req)
{
    return req->host.loop;
}

const char *gw_stage_name(int stage)
{
    return stage >= 0 && (size_t)stage < gw_n_modules ? gw_modules[stage]->name : "protocol";
}

int gw_request_allowed(const struct gw_request *req)
{
    return req->deciding_stage == GW_STAGE_NONE && !req->protocol_error;
}

const struct gw_decision *gw_request_denial(const struct gw_request *req)
{
    if (req->protocol_error)
        return &req->protocol_decision;
    if (req->deciding_stage != GW_STAGE_NONE)
        return &req->decision[req->deciding_stage];
    return NULL;
}

const char *gw_request_denial_layer(const struct gw_request *req)
{
    if (req->protocol_error)
        return "protocol";
    if (req->deciding_stage != GW_STAGE_NONE)
        return gw_stage_name(req->deciding_stage);
    return NULL;
}

/*
 * Header slices point into `storage`, which may move when it grows: offsets are taken before
 * growing it and the slices rebuilt after.
 */
static int add_header(struct gw_header *table, size_t *n, size_t max, struct gw_buf *storage,
                      const char *name, const char *value)
{
    if (*n >= max)
        return -1;
    size_t nl = strlen(name), vl = strlen(value);
    size_t name_off[GW_MAX_UPSTREAM_HEADERS + GW_MAX_RESPONSE_HEADERS];
    size_t value_off[GW_MAX_UPSTREAM_HEADERS + GW_MAX_RESPONSE_HEADERS];
    for (size_t i = 0; i < *n; i++) {
        name_off[i] = (size_t)(table[i].name.ptr - storage->data);
        value_off[i] = (size_t)(table[i].value.ptr - storage->data);
    }
    size_t off = storage->len;
    if (gw_buf_append(storage, name, nl) != 0 || gw_buf_append(storage, value, vl) != 0)
        return -1;
    for (size_t i = 0; i < *n; i++) {
        table[i].name.ptr = storage->data + name_off[i];
        table[i].value.ptr = storage->data + value_off[i];
    }
    table[*n].name = (struct gw_slice){storage->data + off, nl};
    table[*n].value = (struct gw_slice){storage->data + off + nl, vl};
    (*n)++;
    return 0;
}

int gw_request_add_response_header(struct gw_request *req, const char *name, const char *value)
{
    return add_header(req->response_headers, &req->n_response_headers, GW_MAX_RESPONSE_HEADERS,
                      &req->response_header_storage, name, value);
}

int gw_request_add_upstream_header(struct gw_request *req, const char *name, const char *value)
{
    return add_header(req->upstream_headers, &req->n_upstream_headers, GW_MAX_UPSTREAM_HEADERS,
                      &req->upstream_header_storage, name, value);
}

int gw_request_reserialize(struct gw_request *req)
{
    json_t *body;
    if (req->rpc.is_batch) {
        body = json_array();
        for (size_t i = 0; body && i < req->rpc.n; i++)
            if (json_array_append(body, req->rpc.msgs[i].json) != 0) {
                json_decref(body);
                body = NULL;
            }
    } else {
        body = req->rpc.n ? json_incref(req->rpc.msgs[0].json) : NULL;
    }
    if (!body)
        return -1;
    char *s = mcp_json_dumps(body, 17);
    json_decref(body);
    if (!s)
        return -1;
    free(req->rewritten_body);
    req->rewritten_body = s;
    req->rewritten_len = strlen(s);
    return 0;
}

int gw_request_target_has_finding(const struct gw_request *req)
{
    static const char *const ends[] = {"/params/name", "/params/uri", "/params/ref/name",
                                       "/params/ref/uri", NULL};
    if (req->findings.dropped > 0)
        return 1;
    for (size_t i = 0; i < req->findings.n && i < GW_MAX_FINDINGS; i++) {
        const struct gw_finding *f = &req->findings.items[i];
        size_t pl = strnlen(f->path, sizeof f->path);
        if (f->direction != GW_DIR_REQUEST)
            continue;
        for (const char *const *e = ends; *e; e++) {
            size_t el = strlen(*e);
            if (pl >= el && memcmp(f->path + pl - el, *e, el) == 0)
                return 1;
        }
    }
    return 0;
}
