#include "core/http1.h"
#include "lib/bytescan.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

static struct http1_parser *self(http_parser *hp)
{
    return (struct http1_parser *)hp->data;
}

static int fail(struct http1_parser *p, int status, const char *msg)
{
    if (p->state != HTTP1_ERROR) {
        p->state = HTTP1_ERROR;
        p->error_status = status;
        p->error_msg = msg;
    }
    return -1;
}

/* Counts head bytes as they arrive; the parser's own limit backs this up. */
static int count_head(struct http1_parser *p, size_t n)
{
    p->header_bytes += n;
    if (p->header_bytes > p->max_header)
        return fail(p, 431, "Request header fields too large");
    return 0;
}

static int on_message_begin(http_parser *hp)
{
    (void)hp;
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
    struct http1_parser *p = self(hp);
    if (count_head(p, len) != 0)
        return -1;
    if (p->url_len == 0)
        p->url_off = p->head.len;
    if (gw_buf_append(&p->head, at, len) != 0)
        return fail(p, 503, "Out of memory");
    p->url_len += len;
    return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
    struct http1_parser *p = self(hp);
    if (count_head(p, len + 4) != 0)
        return -1;
    if (p->in_value || p->n_headers == 0) {
        /* A new header begins. */
        if (p->n_headers >= HTTP1_MAX_HEADERS)
            return fail(p, 431, "Too many header fields");
        p->raw_headers[p->n_headers].name_off = p->head.len;
        p->raw_headers[p->n_headers].name_len = 0;
        p->raw_headers[p->n_headers].value_off = 0;
        p->raw_headers[p->n_headers].value_len = 0;
        p->n_headers++;
        p->in_value = 0;
    }
    if (gw_buf_append(&p->head, at, len) != 0)
        return fail(p, 503, "Out of memory");
    p->raw_headers[p->n_headers - 1].name_len += len;
    return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
    struct http1_parser *p = self(hp);
    if (count_head(p, len) != 0)
        return -1;
    if (p->n_headers == 0)
        return fail(p, 400, "Malformed header");
    if (!p->in_value) {
        p->raw_headers[p->n_headers - 1].value_off = p->head.len;
        p->in_value = 1;
    }
    if (gw_buf_append(&p->head, at, len) != 0)
        return fail(p, 503, "Out of memory");
    p->raw_headers[p->n_headers - 1].value_len += len;
    return 0;
}

/* Header values may not carry control characters other than tab (RFC 9110 §5.5). */
static int value_is_clean(struct gw_slice v)
{
    return gw_field_value_end((const unsigned char *)v.ptr, 0, v.len) == v.len;
}

/* RFC 9110 tchar: DIGIT / ALPHA / "!#$%&'*+-.^_`|~", one bit per byte value. */
static int is_tchar(unsigned char c)
{
    static const uint64_t bits[2] = {UINT64_C(0x03ff6cfa00000000), UINT64_C(0x57ffffffc7fffffe)};
    return c < 128 && ((bits[c >> 6] >> (c & 63)) & 1);
}

/* Length of the line starting at s (without its CRLF or LF), or -1 when none ends in n. */
static ssize_t line_len(const char *s, size_t n, size_t *eol_len)
{
    const char *nl = memchr(s, '\n', n);
    if (!nl)
        return -1;
    size_t l = (size_t)(nl - s);
    *eol_len = 1;
    if (l > 0 && s[l - 1] == '\r') {
        l--;
        *eol_len = 2;
    }
    return (ssize_t)l;
}

/*
 * The request line and header lines checked against RFC 9112 on the bytes as received; the
 * underlying parser is lenient about some of these, and a gateway must not read a request
 * differently from what a stricter server behind or beside it would. Returns 0 or fails.
 */
static int check_request_line(struct http1_parser *p, const char **sp, size_t *np)
{
    const char *s = p->raw_head.data;
    size_t n = p->raw_head.len, eol;
    ssize_t l;
    /* At most a couple of empty lines may precede the request line (RFC 9112 §2.2). */
    for (int skipped = 0; n > 0 && (s[0] == '\r' || s[0] == '\n'); skipped++) {
        if (skipped >= 4 || (l = line_len(s, n, &eol)) != 0)
            return fail(p, 400, "Malformed request line");
        s += eol;
        n -= eol;
    }
    if ((l = line_len(s, n, &eol)) < 0)
        return fail(p, 400, "Malformed request line");
    /* method SP request-target SP HTTP-version */
    size_t i = 0, len = (size_t)l;
    while (i < len && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i >= len || s[i] != ' ')
        return fail(p, 400, "Malformed request line");
    size_t t0 = ++i;
    while (i < len && (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f)
        i++;
    if (i == t0 || i >= len || s[i] != ' ')
        return fail(p, 400, "Malformed request line");
    i++;
    if (len - i != 8 || memcmp(s + i, "HTTP/", 5) != 0 || s[i + 6] != '.' || s[i + 5] < '0' ||
        s[i + 5] > '9' || s[i + 7] < '0' || s[i + 7] > '9')
        return fail(p, 400, "Malformed request line");
    if (s[i + 5] != '1' || s[i + 7] > '1')
        return fail(p, 505, "HTTP version not supported");
    *sp = s + len + eol;
    *np = n - len - eol;
    return 0;
}

static int check_head_grammar(struct http1_parser *p)
{
    const char *s;
    size_t n, eol, len, i;
    ssize_t l;
    if (check_request_line(p, &s, &n) != 0)
        return -1;
    /* field-name ":" OWS field-value OWS, until the empty line. */
    while ((l = line_len(s, n, &eol)) > 0) {
        len = (size_t)l;
        if (s[0] == ' ' || s[0] == '\t')
            return fail(p, 400, "Obsolete header line folding is not accepted");
        i = 0;
        while (i < len && is_tchar((unsigned char)s[i]))
            i++;
        if (i == 0 || i >= len || s[i] != ':')
            return fail(p, 400, "Malformed header");
        if (gw_field_value_end((const unsigned char *)s, i + 1, len) != len)
            return fail(p, 400, "Malformed header");
        s += len + eol;
        n -= len + eol;
    }
    if (l < 0)
        return fail(p, 400, "Malformed header");
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    struct http1_parser *p = self(hp);
    if (check_head_grammar(p) != 0)
        return -1;
    const char *base = p->head.data ? p->head.data : "";
    if (hp->http_major != 1)
        return fail(p, 505, "HTTP version not supported");
    p->http_minor = hp->http_minor;
    p->target = (struct gw_slice){base + p->url_off, p->url_len};
    if (p->target.len == 0 || p->target.ptr[0] != '/')
        return fail(p, 400, "Request target must be an absolute path");
    const char *q = memchr(p->target.ptr, '?', p->target.len);
    if (q) {
        p->path = (struct gw_slice){p->target.ptr, (size_t)(q - p->target.ptr)};
        p->query = (struct gw_slice){q + 1, p->target.len - p->path.len - 1};
    } else {
        p->path = p->target;
        p->query = GW_SLICE_NULL;
    }
    const char *frag = memchr(p->path.ptr, '#', p->path.len);
    if (frag)
        return fail(p, 400, "Request target must not carry a fragment");

    int hosts = 0;
    for (size_t i = 0; i < p->n_headers; i++) {
        struct gw_header *h = &p->headers[i];
        h->name = (struct gw_slice){base + p->raw_headers[i].name_off, p->raw_headers[i].name_len};
        h->value =
            (struct gw_slice){base + p->raw_headers[i].value_off, p->raw_headers[i].value_len};
        /* Trim optional whitespace around the value. */
        while (h->value.len && (h->value.ptr[0] == ' ' || h->value.ptr[0] == '\t')) {
            h->value.ptr++;
            h->value.len--;
        }
        while (h->value.len &&
               (h->value.ptr[h->value.len - 1] == ' ' || h->value.ptr[h->value.len - 1] == '\t'))
            h->value.len--;
        if (h->name.len == 0 || !value_is_clean(h->value))
            return fail(p, 400, "Malformed header");
        if (gw_slice_casecmp_eq(h->name, "host"))
            hosts++;
        else if (gw_slice_casecmp_eq(h->name, "transfer-encoding")) {
            /* Only "chunked" is understood; anything else must not be guessed at. */
            if (!gw_slice_casecmp_eq(h->value, "chunked"))
                return fail(p, 501, "Only Transfer-Encoding: chunked is supported");
        } else if (gw_slice_casecmp_eq(h->name, "expect")) {
            if (gw_slice_casecmp_eq(h->value, "100-continue"))
                p->expect_continue = 1;
            else
                return fail(p, 417, "Only Expect: 100-continue is supported");
        }
    }
    if (hosts > 1 || (hosts == 0 && p->http_minor == 1))
        return fail(p, 400, "Exactly one Host header is required");

    switch (hp->method) {
    case HTTP_GET:
        p->method = GW_HTTP_GET;
        break;
    case HTTP_POST:
        p->method = GW_HTTP_POST;
        break;
    case HTTP_DELETE:
        p->method = GW_HTTP_DELETE;
        break;
    default:
        p->method = GW_HTTP_OTHER;
        break;
    }
    p->method_name =
        (struct gw_slice){http_method_str(hp->method), strlen(http_method_str(hp->method))};
    p->keep_alive = http_should_keep_alive(hp);
    p->chunked = (hp->flags & F_CHUNKED) != 0;
    p->has_content_length = (hp->flags & F_CONTENTLENGTH) != 0;
    p->content_length = p->has_content_length ? hp->content_length : 0;
    if (p->has_content_length && p->content_length > p->max_body)
        return fail(p, 413, "Request body too large");
    p->state = HTTP1_BODY;
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
    struct http1_parser *p = self(hp);
    if (p->body.len + len > p->max_body)
        return fail(p, 413, "Request body too large");
    if (gw_buf_append(&p->body, at, len) != 0)
        return fail(p, 503, "Out of memory");
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    struct http1_parser *p = self(hp);
    p->state = HTTP1_DONE;
    /* Stop here: the next pipelined request waits until this one is answered. */
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http1_init(struct http1_parser *p, uint64_t max_header, uint64_t max_body)
{
    memset(p, 0, sizeof *p);
    p->max_header = max_header;
    p->max_body = max_body;
    http_parser_init(&p->hp, HTTP_REQUEST);
    p->hp.data = p;
}

void http1_reset(struct http1_parser *p)
{
    struct gw_buf head = p->head, body = p->body, raw = p->raw_head;
    uint64_t mh = p->max_header, mb = p->max_body;
    memset(p, 0, sizeof *p);
    p->head = head;
    p->body = body;
    p->raw_head = raw;
    gw_buf_reset(&p->head);
    gw_buf_reset(&p->body);
    gw_buf_reset(&p->raw_head);
    p->max_header = mh;
    p->max_body = mb;
    http_parser_init(&p->hp, HTTP_REQUEST);
    p->hp.data = p;
}

void http1_free(struct http1_parser *p)
{
    gw_buf_free(&p->head);
    gw_buf_free(&p->body);
    gw_buf_free(&p->raw_head);
}

size_t http1_feed(struct http1_parser *p, const char *data, size_t len)
{
    if (p->state == HTTP1_DONE || p->state == HTTP1_ERROR || len == 0)
        return 0;
    if (p->state == HTTP1_HEAD) {
        /* Keep the head's raw bytes for the grammar check (bounded like the head itself). */
        size_t room = p->max_header + 8 > p->raw_head.len ? p->max_header + 8 - p->raw_head.len : 0;
        if (gw_buf_append(&p->raw_head, data, len < room ? len : room) != 0) {
            fail(p, 503, "Out of memory");
            return 0;
        }
    }
    size_t n = http_parser_execute(&p->hp, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
    if (p->state == HTTP1_DONE) {
        /*
         * Paused after a complete message: n counts the bytes of that message. A protocol
         * upgrade (websocket, h2c) is not offered: the request is answered as plain HTTP and
         * the connection closed after, since the client may already be sending other bytes.
         */
        if (p->hp.upgrade)
            p->keep_alive = 0;
        return n;
    }
    if (p->state == HTTP1_ERROR)
        return n;
    if (e != HPE_OK) {
        /* A request line the grammar refuses is a 400 whatever the parser tripped over. */
        const char *rest;
        size_t rest_len;
        if (p->state == HTTP1_HEAD && memchr(p->raw_head.data, '\n', p->raw_head.len) &&
            check_request_line(p, &rest, &rest_len) != 0)
            return n;
        switch (e) {
        case HPE_HEADER_OVERFLOW:
            fail(p, 431, "Request header fields too large");
            break;
        case HPE_INVALID_VERSION:
            fail(p, 505, "HTTP version not supported");
            break;
        default:
            fail(p, 400, "Malformed HTTP request");
            break;
        }
        return n;
    }
    return n;
}

struct gw_slice http1_header(const struct http1_parser *p, const char *name)
{
    for (size_t i = 0; i < p->n_headers; i++)
        if (gw_slice_casecmp_eq(p->headers[i].name, name))
            return p->headers[i].value;
    return GW_SLICE_NULL;
}

size_t http1_header_count(const struct http1_parser *p, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_headers; i++)
        if (gw_slice_casecmp_eq(p->headers[i].name, name))
            n++;
    return n;
}

const char *http1_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}
