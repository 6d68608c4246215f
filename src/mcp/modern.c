#include "mcp/modern.h"
#include "lib/base64.h"
#include "lib/uri.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int set_err(struct mcp_modern_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_err(struct mcp_modern_error *err, int code, const char *fmt, ...)
{
    err->http_status = 400;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- header values ---- */

static int b64_value(unsigned char c)
{
    return c == '+' ? 62 : c == '/' ? 63 : gw_b64_alnum(c);
}

/* Standard base64 with padding, strictly: whole quanta, '=' only at the end, zero pad bits. */
static int b64_decode(const char *s, size_t len, struct gw_buf *out)
{
    if (len % 4 != 0)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        int last = i + 4 == len;
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            if (c == '=' && last && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad)
                return -1; /* data after padding */
            v[k] = b64_value(c);
            if (v[k] < 0)
                return -1;
        }
        unsigned n = ((unsigned)v[0] << 18) | ((unsigned)v[1] << 12) | ((unsigned)v[2] << 6) |
                     (unsigned)v[3];
        unsigned char b[3] = {(unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n};
        if ((pad == 1 && (n & 0xff)) || (pad == 2 && (n & 0xffff)))
            return -1; /* non-zero pad bits: not the canonical encoding */
        if (gw_buf_append(out, (const char *)b, 3 - (size_t)pad) != 0)
            return -1;
    }
    return 0;
}

static int utf8_ok(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + n >= len)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

static int plain_ok(const char *v, size_t len)
{
    if (len == 0)
        return 1;
    if (v[0] == ' ' || v[0] == '\t' || v[len - 1] == ' ' || v[len - 1] == '\t')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!(c == ' ' || c == '\t' || (c >= 0x21 && c <= 0x7e)))
            return 0;
    }
    return 1;
}

static int is_wrapped(const char *v, size_t len)
{
    return len >= 11 && memcmp(v, "=?base64?", 9) == 0 && memcmp(v + len - 2, "?=", 2) == 0;
}

int mcp_header_value_decode(const char *v, size_t len, struct gw_buf *out)
{
    if (len > MCP_MAX_HEADER_VALUE)
        return -1;
    size_t start = out->len;
    if (is_wrapped(v, len)) {
        if (b64_decode(v + 9, len - 11, out) != 0 ||
            (out->len > start &&
             !utf8_ok((const unsigned char *)out->data + start, out->len - start))) {
            out->len = start;
            return -1;
        }
        return 0;
    }
    if (!plain_ok(v, len))
        return -1;
    return gw_buf_append(out, v, len);
}

int mcp_header_value_encode(const char *s, size_t len, struct gw_buf *out)
{
    if (len > 0 && plain_ok(s, len) && !is_wrapped(s, len))
        return gw_buf_append(out, s, len);
    static const char tab[] = GW_B64_STD_DIGITS;
    if (gw_buf_append(out, "=?base64?", 9) != 0)
        return -1;
    for (size_t i = 0; i < len; i += 3) {
        unsigned n = (unsigned)(unsigned char)s[i] << 16;
        if (i + 1 < len)
            n |= (unsigned)(unsigned char)s[i + 1] << 8;
        if (i + 2 < len)
            n |= (unsigned char)s[i + 2];
        char q[4] = {tab[(n >> 18) & 63], tab[(n >> 12) & 63],
                     i + 1 < len ? tab[(n >> 6) & 63] : '=', i + 2 < len ? tab[n & 63] : '='};
        if (gw_buf_append(out, q, 4) != 0)
            return -1;
    }
    return gw_buf_append(out, "?=", 2);
}

/* ---- the envelope ---- */

const char *mcp_meta_version(const struct mcp_message *m)
{
    const json_t *params = m && m->json ? json_object_get(m->json, "params") : NULL;
    const json_t *meta = json_object_get(params, "_meta");
    return json_string_value(json_object_get(meta, MCP_META_VERSION));
}

/* Whether the decoded header value equals the string s exactly. */
static int same_bytes(const struct gw_buf *b, const char *s, size_t len)
{
    return b->len == len && (len == 0 || memcmp(b->data, s, len) == 0);
}

/* The method's mirrored name: params.name, or params.uri (in canonical form). */
static int check_name(const struct mcp_message *m, const struct mcp_modern_headers *h,
                      struct mcp_modern_error *err)
{
    const char *method = m->method;
    int wants = mcp_method_has_name(method);
    if (!wants) {
        if (h->name_count)
            return set_err(err, MCP_HEADER_MISMATCH,
                           "Header mismatch: Mcp-Name does not go with %s", method);
        return 0;
    }
    if (h->name_count != 1)
        return set_err(err, MCP_HEADER_MISMATCH, "Header mismatch: %s needs one Mcp-Name header",
                       method);
    struct gw_buf v = {0};
    if (mcp_header_value_decode(h->name, h->name_len, &v) != 0) {
        gw_buf_free(&v);
        return set_err(err, MCP_HEADER_MISMATCH,
                       "Header mismatch: the Mcp-Name header value is malformed");
    }
    int ok;
    if (strcmp(method, "resources/read") == 0) {
        /* The body's URI is canonical by now; the header's is held to the same form. */
        struct gw_buf c = {0};
        const char *why = NULL;
        ok = v.len > 0 && memchr(v.data, '\0', v.len) == NULL &&
             gw_uri_canonical(v.data, v.len, &c, &why) == 0 && m->target &&
             same_bytes(&c, m->target, strlen(m->target));
        gw_buf_free(&c);
    } else {
        ok = m->target && same_bytes(&v, m->target, strlen(m->target));
    }
    gw_buf_free(&v);
    if (!ok)
        return set_err(err, MCP_HEADER_MISMATCH,
                       "Header mismatch: the Mcp-Name header does not match the body's %s",
                       strcmp(method, "resources/read") == 0 ? "params.uri" : "params.name");
    return 0;
}

/* An RFC 9110 token. */
static int token_ok(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c)))
            return 0;
    }
    return 1;
}

/* Whether a decoded header value stands for the JSON value v (string, integer, boolean). */
static int value_matches(const json_t *v, const struct gw_buf *b)
{
    if (json_is_string(v))
        return same_bytes(b, json_string_value(v), json_string_length(v));
    if (json_is_boolean(v))
        return same_bytes(b, json_is_true(v) ? "true" : "false", json_is_true(v) ? 4 : 5);
    if (json_is_integer(v) || json_is_real(v)) {
        /* Integers by value: "42" and a body's 42 or 42.0 are the same. */
        if (b->len == 0 || b->len > 32)
            return 0;
        char num[40];
        memcpy(num, b->data, b->len);
        num[b->len] = '\0';
        size_t i = num[0] == '-' ? 1 : 0;
        if (!num[i])
            return 0;
        for (; num[i]; i++)
            if (num[i] < '0' || num[i] > '9')
                return 0;
        char *end = NULL;
        errno = 0;
        long long n = strtoll(num, &end, 10);
        if (!end || *end || errno == ERANGE)
            return 0;
        if (json_is_integer(v))
            return json_integer_value(v) == n;
        double d = json_real_value(v);
        return isfinite(d) && floor(d) == d && fabs(d) < 9007199254740992.0 && (long long)d == n;
    }
    return 0;
}

/* Whether some member reachable through objects only holds the value (x-mcp-header's reach). */
static int argument_has(const json_t *obj, const struct gw_buf *b, int depth)
{
    if (depth > 32)
        return 0;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        (void)key;
        if (json_is_object(v) ? argument_has(v, b, depth + 1) : value_matches(v, b))
            return 1;
    }
    return 0;
}

static int check_params(const struct mcp_message *m, const struct mcp_modern_headers *h,
                        struct mcp_modern_error *err)
{
    if (h->too_many_params)
        return set_err(err, MCP_HEADER_MISMATCH, "Header mismatch: more than %d Mcp-Param headers",
                       MCP_MAX_PARAM_HEADERS);
    if (h->n_params == 0)
        return 0;
    if (strcmp(m->method, "tools/call") != 0)
        return set_err(err, MCP_HEADER_MISMATCH,
                       "Header mismatch: Mcp-Param headers only go with tools/call");
    for (size_t i = 0; i < h->n_params; i++) {
        const struct mcp_header_view *p = &h->params[i];
        const size_t pre = sizeof "Mcp-Param-" - 1;
        if (p->name_len <= pre || !token_ok(p->name + pre, p->name_len - pre))
            return set_err(err, MCP_HEADER_MISMATCH,
                           "Header mismatch: an Mcp-Param header has an invalid name");
        struct gw_buf v = {0};
        int ok = mcp_header_value_decode(p->value, p->value_len, &v) == 0 && m->arguments &&
                 argument_has(m->arguments, &v, 0);
        gw_buf_free(&v);
        if (!ok)
            return set_err(err, MCP_HEADER_MISMATCH,
                           "Header mismatch: %.*s does not match an argument of the call",
                           (int)(p->name_len > 80 ? 80 : p->name_len), p->name);
    }
    return 0;
}

int mcp_modern_check(const struct mcp_message *m, const char *version,
                     const struct mcp_modern_headers *h, struct mcp_modern_error *err)
{
    memset(err, 0, sizeof *err);
    const json_t *params = json_object_get(m->json, "params");
    const json_t *meta = json_object_get(params, "_meta");
    if (!json_is_object(meta))
        return set_err(err, JSONRPC_INVALID_PARAMS,
                       "Invalid params: revision %s needs params._meta on every request", version);
    const json_t *v = json_object_get(meta, MCP_META_VERSION);
    if (!json_is_string(v))
        return set_err(err, JSONRPC_INVALID_PARAMS,
                       "Invalid params: _meta needs " MCP_META_VERSION);
    if (strcmp(json_string_value(v), version) != 0)
        return set_err(err, MCP_HEADER_MISMATCH,
                       "Header mismatch: MCP-Protocol-Version does not match _meta's "
                       "protocolVersion");
    if (!json_is_object(json_object_get(meta, MCP_META_CAPABILITIES)))
        return set_err(err, JSONRPC_INVALID_PARAMS,
                       "Invalid params: _meta needs " MCP_META_CAPABILITIES " as an object");
    if (h->method_count != 1 || !h->method ||
        !(h->method_len == strlen(m->method) && memcmp(h->method, m->method, h->method_len) == 0))
        return set_err(err, MCP_HEADER_MISMATCH,
                       "Header mismatch: the Mcp-Method header %s the body's method",
                       h->method_count ? "does not match" : "is missing; it must name");
    if (check_name(m, h, err) != 0)
        return -1;
    return check_params(m, h, err);
}

int mcp_param_still_mirrors(const struct mcp_message *m, const char *value, size_t len)
{
    const json_t *args =
        m && m->json ? json_object_get(json_object_get(m->json, "params"), "arguments") : NULL;
    if (!json_is_object(args))
        return 0;
    struct gw_buf v = {0};
    int ok = mcp_header_value_decode(value, len, &v) == 0 && argument_has(args, &v, 0);
    gw_buf_free(&v);
    return ok;
}

int mcp_header_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n > 0 && n <= 64 && token_ok(name, n);
}

int mcp_param_value_matches(const json_t *v, const char *value, size_t len)
{
    struct gw_buf b = {0};
    int ok = v && mcp_header_value_decode(value, len, &b) == 0 && value_matches(v, &b);
    gw_buf_free(&b);
    return ok;
}

int mcp_method_has_name(const char *method)
{
    return method && (strcmp(method, "tools/call") == 0 || strcmp(method, "prompts/get") == 0 ||
                      strcmp(method, "resources/read") == 0);
}
