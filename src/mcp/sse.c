#include "mcp/sse.h"
#include "mcp/jsonrpc.h"

#include <string.h>

#define SSE_DEFAULT_MAX_EVENT ((size_t)4 << 20)

static const unsigned char sse_bom[3] = {0xEF, 0xBB, 0xBF};

void sse_parser_init(struct sse_parser *p, size_t max_event)
{
    memset(p, 0, sizeof *p);
    p->max_event = max_event ? max_event : SSE_DEFAULT_MAX_EVENT;
    p->retry = -1;
}

void sse_parser_free(struct sse_parser *p)
{
    gw_buf_free(&p->raw);
    gw_buf_free(&p->data);
    gw_buf_free(&p->event);
    gw_buf_free(&p->id);
}

static void reset_block(struct sse_parser *p)
{
    gw_buf_reset(&p->raw);
    gw_buf_reset(&p->data);
    gw_buf_reset(&p->event);
    gw_buf_reset(&p->id);
    p->has_id = 0;
    p->has_data = 0;
    p->retry = -1;
    p->line_start = 0;
}

/* Appends wire bytes to the block, enforcing the per-event bound. */
static int raw_append(struct sse_parser *p, const char *s, size_t n)
{
    if (n > p->max_event || p->raw.len > p->max_event - n) {
        p->failed = 1;
        return SSE_TOO_LARGE;
    }
    if (gw_buf_append(&p->raw, s, n) != 0) {
        /* Out of memory ends the stream the same way: the event cannot be held. */
        p->failed = 1;
        return SSE_TOO_LARGE;
    }
    return 0;
}

static struct gw_slice buf_slice(const struct gw_buf *b)
{
    struct gw_slice s = {b->data ? b->data : "", b->len};
    return s;
}

static int set_buf(struct gw_buf *b, const char *s, size_t n)
{
    gw_buf_reset(b);
    return gw_buf_append(b, s, n);
}

/* Parses "digits" into *out; returns -1 for anything else, including overflow. */
static int parse_retry(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Interprets one non-empty line (without its terminator). */
static int process_line(struct sse_parser *p, const char *line, size_t n)
{
    if (line[0] == ':')
        return 0; /* a comment: kept in raw only */
    const char *colon = memchr(line, ':', n);
    size_t name_len = colon ? (size_t)(colon - line) : n;
    const char *value = colon ? colon + 1 : line + n;
    size_t value_len = colon ? n - name_len - 1 : 0;
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    struct gw_slice name = {line, name_len};
    /* The buffers below only ever hold a part of raw, which is bounded: no size check. */
    if (gw_slice_eq(name, "data")) {
        if (p->has_data && gw_buf_append(&p->data, "\n", 1) != 0)
            return -1;
        if (gw_buf_append(&p->data, value, value_len) != 0)
            return -1;
        p->has_data = 1;
    } else if (gw_slice_eq(name, "event")) {
        if (set_buf(&p->event, value, value_len) != 0)
            return -1;
    } else if (gw_slice_eq(name, "id")) {
        if (value_len == 0 || memchr(value, '\0', value_len) == NULL) {
            if (set_buf(&p->id, value, value_len) != 0)
                return -1;
            p->has_id = 1;
        }
    } else if (gw_slice_eq(name, "retry")) {
        int64_t v;
        if (parse_retry(value, value_len, &v) == 0)
            p->retry = v;
    }
    return 0;
}

static int dispatch(struct sse_parser *p, sse_event_cb cb, void *userdata)
{
    struct sse_event ev = {
        .event = buf_slice(&p->event),
        .data = buf_slice(&p->data),
        .id = buf_slice(&p->id),
        .has_id = p->has_id,
        .has_data = p->has_data,
        .retry = p->retry,
        .raw = buf_slice(&p->raw),
    };
    int rc = cb ? cb(userdata, &ev) : 0;
    reset_block(p);
    return rc;
}

/*
 * Called when a line terminator (CR or LF, already appended to raw) ends the line that starts
 * at line_start. An empty line ends the block.
 */
static int end_line(struct sse_parser *p, sse_event_cb cb, void *userdata)
{
    size_t term_at = p->raw.len - 1;
    size_t n = term_at - p->line_start;
    if (n == 0) {
        if (p->line_start == 0) {
            /* A blank line with no block before it: nothing to deliver. */
            reset_block(p);
            return 0;
        }
        return dispatch(p, cb, userdata);
    }
    if (process_line(p, p->raw.data + p->line_start, n) != 0) {
        p->failed = 1;
        return SSE_TOO_LARGE;
    }
    p->line_start = p->raw.len;
    return 0;
}

int sse_feed(struct sse_parser *p, const char *buf, size_t len, sse_event_cb cb, void *userdata)
{
    int rc = 0;
    if (p->failed)
        return SSE_TOO_LARGE;

    /* The BOM may arrive split over feeds; its bytes wait in raw (which holds nothing else
     * yet) until they either complete it, and are dropped, or turn out to be data. */
    while (!p->bom_checked && len > 0) {
        if ((unsigned char)buf[0] != sse_bom[p->raw.len]) {
            p->bom_checked = 1;
            break;
        }
        if ((rc = raw_append(p, buf, 1)) != 0)
            return rc;
        buf++;
        len--;
        if (p->raw.len == sizeof sse_bom) {
            gw_buf_reset(&p->raw);
            p->bom_checked = 1;
        }
    }

    while (len > 0) {
        if (p->last_was_cr) {
            p->last_was_cr = 0;
            if (buf[0] == '\n') {
                /* The LF of a CRLF: it ends no line of its own. After a blank line that
                 * delivered its block (raw now empty) it is dropped; otherwise it belongs
                 * to the block's bytes and the next line starts after it. */
                if (p->raw.len > 0) {
                    if ((rc = raw_append(p, buf, 1)) != 0)
                        return rc;
                    p->line_start = p->raw.len;
                }
                buf++;
                len--;
                continue;
            }
        }
        size_t i = 0;
        while (i < len && buf[i] != '\n' && buf[i] != '\r')
            i++;
        if (i == len) {
            rc = raw_append(p, buf, len);
            return rc;
        }
        /* The line's rest and its terminator join raw together. */
        if ((rc = raw_append(p, buf, i + 1)) != 0)
            return rc;
        p->last_was_cr = buf[i] == '\r';
        buf += i + 1;
        len -= i + 1;
        if ((rc = end_line(p, cb, userdata)) != 0)
            return rc;
    }
    return 0;
}

/* Appends "name: value\n". */
static int encode_field(struct gw_buf *out, const char *name, const char *value, size_t n)
{
    if (gw_buf_append_str(out, name) != 0 || gw_buf_append(out, ": ", 2) != 0 ||
        gw_buf_append(out, value, n) != 0 || gw_buf_append(out, "\n", 1) != 0)
        return -1;
    return 0;
}

static int has_line_break(struct gw_slice s)
{
    return s.len > 0 && (memchr(s.ptr, '\n', s.len) || memchr(s.ptr, '\r', s.len));
}

int sse_encode(struct gw_buf *out, struct gw_slice event, struct gw_slice id, int has_id,
               int64_t retry, struct gw_slice data)
{
    size_t start = out->len;
    int rc = -1;

    if (has_line_break(event) || (has_id && has_line_break(id)) ||
        (has_id && id.len > 0 && memchr(id.ptr, '\0', id.len)))
        return -1;
    if (has_id && encode_field(out, "id", id.ptr ? id.ptr : "", id.len) != 0)
        goto out;
    if (event.len > 0 && encode_field(out, "event", event.ptr, event.len) != 0)
        goto out;
    if (retry >= 0 && gw_buf_printf(out, "retry: %lld\n", (long long)retry) != 0)
        goto out;
    size_t pos = 0;
    for (;;) {
        size_t i = pos;
        while (i < data.len && data.ptr[i] != '\n' && data.ptr[i] != '\r')
            i++;
        if (encode_field(out, "data", data.len ? data.ptr + pos : "", i - pos) != 0)
            goto out;
        if (i >= data.len)
            break;
        /* CRLF is one break; CR or LF alone is one too. */
        if (data.ptr[i] == '\r' && i + 1 < data.len && data.ptr[i + 1] == '\n')
            i++;
        pos = i + 1;
    }
    if (gw_buf_append(out, "\n", 1) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0 && out->data) {
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}

/* The first SSE event of an answer whose data is a response: its message. */
static int first_response(void *arg, const struct sse_event *ev)
{
    json_t **out = arg;
    json_t *msg = NULL;
    if (!ev->has_data || mcp_parse_message(ev->data.ptr, ev->data.len, 64, &msg) != 0)
        return 0;
    if (json_object_get(msg, "result") && !json_object_get(msg, "method")) {
        *out = msg;
        return 1;
    }
    json_decref(msg);
    return 0;
}

json_t *sse_answer_result(const char *p, size_t n, size_t max)
{
    json_t *msg = NULL;
    if (n == 0)
        return NULL;
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    if (i < n && p[i] == '{') {
        if (mcp_parse_message(p, n, 64, &msg) != 0)
            return NULL;
    } else {
        struct sse_parser sp;
        sse_parser_init(&sp, max);
        sse_feed(&sp, p, n, first_response, &msg);
        sse_parser_free(&sp);
    }
    json_t *result = json_incref(json_object_get(msg, "result"));
    json_decref(msg);
    return result;
}
