/*
 * Fuzz driver for the resource URI canonicaliser. Beyond memory safety it checks its promises:
 * a canonical form is canonical (canonicalising it again gives the same bytes), holds no dot
 * segment, no empty segment, no raw backslash, whitespace or control character, no encoded
 * '/', '\' or control character, and only upper-case hex in its percent-encodings; a refusal
 * says why.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/uri.h"

static void check_canonical(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '\\')
            abort();
        if (c == '%') {
            if (i + 2 >= n)
                abort();
            char h1 = s[i + 1], h2 = s[i + 2];
            if (!isxdigit((unsigned char)h1) || !isxdigit((unsigned char)h2) ||
                islower((unsigned char)h1) || islower((unsigned char)h2))
                abort();
            unsigned v = (unsigned)strtoul((char[]){h1, h2, 0}, NULL, 16);
            if (v == '/' || v == '\\' || v < 0x20 || v == 0x7f)
                abort();
            /* Unreserved characters are never left encoded. */
            if (isalnum((int)v) || v == '-' || v == '.' || v == '_' || v == '~')
                abort();
        }
    }
    /* The path: after "scheme://authority" or "scheme:". */
    const char *colon = memchr(s, ':', n);
    if (!colon)
        abort();
    const char *p = colon + 1;
    const char *end = s + n;
    const char *q = p;
    while (q < end && *q != '?' && *q != '#')
        q++;
    if (q - p >= 2 && p[0] == '/' && p[1] == '/') {
        p += 2;
        while (p < q && *p != '/')
            p++;
    }
    /* Segments of the path: none is "." or "..", none is empty but the last. */
    while (p < q) {
        if (*p != '/') {
            p++;
            continue;
        }
        const char *seg = p + 1;
        const char *e = seg;
        while (e < q && *e != '/')
            e++;
        size_t len = (size_t)(e - seg);
        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            abort();
        if (len == 0 && e < q)
            abort();
        p = e;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_buf out = {0}, again = {0};
    const char *why = NULL;
    if (gw_uri_canonical((const char *)data, size, &out, &why) == 0) {
        const char *s = out.data ? out.data : "";
        check_canonical(s, out.len);
        const char *why2 = NULL;
        if (gw_uri_canonical(s, out.len, &again, &why2) != 0 || again.len != out.len ||
            memcmp(again.data ? again.data : "", s, out.len) != 0)
            abort();
    } else if (!why || !why[0]) {
        abort();
    }
    gw_buf_free(&out);
    gw_buf_free(&again);
    return 0;
}
