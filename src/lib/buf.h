/*
 * buf: growable byte buffers and (pointer, length) slices.
 *
 * Bytes that came off the wire are handled as slices; nothing assumes a NUL terminator
 * (gw_buf keeps one after its data for convenience of callers that build text, but the
 * length is the truth). A gw_buf owns its storage; gw_buf_free releases it.
 */
#ifndef GW_BUF_H
#define GW_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

struct gw_slice {
    const char *ptr;
    size_t len;
};

#define GW_SLICE_LIT(s) ((struct gw_slice){(s), sizeof(s) - 1})
#define GW_SLICE_NULL ((struct gw_slice){NULL, 0})

struct gw_buf {
    char *data;
    size_t len;
    size_t cap;
};

/* gw_buf_reserve's slow path: grows the storage. 0, or -1 when memory is exhausted. */
int gw_buf_grow(struct gw_buf *b, size_t n);

/* Ensures room for n more bytes (and the NUL). 0, or -1 when memory is exhausted. */
static inline int gw_buf_reserve(struct gw_buf *b, size_t n)
{
    return b->cap - b->len > n ? 0 : gw_buf_grow(b, n);
}

/*
 * Appends n bytes; returns 0, or -1 when memory is exhausted. Keeps data NUL-terminated.
 * Inline: it is called for every piece of every record and message built.
 */
static inline int gw_buf_append(struct gw_buf *b, const void *p, size_t n)
{
    if (gw_buf_reserve(b, n) != 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}
int gw_buf_append_str(struct gw_buf *b, const char *s);
/*
 * Copies src into dst of cap bytes as snprintf(dst, cap, "%s", src) does (at most cap - 1
 * bytes, always terminated when cap > 0) without printf; returns strlen(src).
 */
size_t gw_strlcpy(char *dst, const char *src, size_t cap);
/*
 * v in decimal, as printf's %llu / %lld write it (no printf on the request path): into out,
 * unterminated, returning the length (at most 20, or 21 with a minus sign); or appended.
 */
size_t gw_fmt_u64(char out[20], uint64_t v);
size_t gw_fmt_i64(char out[21], int64_t v);
int gw_buf_append_u64(struct gw_buf *b, uint64_t v);
int gw_buf_append_i64(struct gw_buf *b, int64_t v);
/*
 * The JSON escape of an ASCII byte that needs one (a control byte, '"' or '\\') into e:
 * \" \\ \b \f \n \r \t, else \u00XX with upper- or lower-case hex digits; its length (2 or 6).
 */
size_t gw_json_escape_byte(unsigned char c, char e[6], int upper_hex);
int gw_buf_printf(struct gw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int gw_buf_vprintf(struct gw_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/*
 * Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF), or 0 when the bytes there (at most avail) are not one.
 */
size_t gw_utf8_seq_len(const unsigned char *p, size_t avail);
/* Appends s as the inside of a JSON string (quotes not included), escaping as RFC 8259 asks.
 * Bytes that are not well-formed UTF-8 are written as \ufffd, so the result is always valid. */
int gw_buf_append_json_escaped(struct gw_buf *b, const char *s, size_t n);
/* Drops the first n bytes. */
void gw_buf_consume(struct gw_buf *b, size_t n);
void gw_buf_reset(struct gw_buf *b);
void gw_buf_free(struct gw_buf *b);
/* Hands the storage to the caller (who frees it with free()) and empties the buffer. */
char *gw_buf_steal(struct gw_buf *b, size_t *len);

/*
 * Whether a is lit, exactly or without regard to ASCII case. Inline: for a literal the
 * compiler knows its length, so a slice of another length costs one comparison (header
 * lookups ask dozens of these a request).
 */
static inline int gw_slice_eq(struct gw_slice a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && (n == 0 || memcmp(a.ptr, lit, n) == 0);
}
static inline int gw_slice_casecmp_eq(struct gw_slice a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && (n == 0 || strncasecmp(a.ptr, lit, n) == 0);
}
/* Returns a malloc'd NUL-terminated copy, or NULL. */
char *gw_slice_dup(struct gw_slice s);

#endif
