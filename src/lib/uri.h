/*
 * uri: the canonical form of a resource URI (RFC 3986 §6.2.2), made once before any layer
 * compares it, so that a rule on "file:///public/" and everything below means what it says: the
 * scheme and host lower-cased, percent-encodings of unreserved characters decoded and the others
 * written with upper-case hex, dot segments removed.
 *
 * What cannot be made canonical safely is refused rather than guessed at, because a backend
 * may read it differently than the rule did: an encoded '/' or '\' (%2F, %5C), an encoded
 * NUL or control character, a raw '\', whitespace or control characters, an empty path
 * segment ("//", which file systems fold and RFC 3986 does not), a '..' that would climb above
 * the root, userinfo in the authority, a malformed percent-encoding, a relative reference.
 */
#ifndef GW_LIB_URI_H
#define GW_LIB_URI_H

#include <stddef.h>

#include "lib/buf.h"

#define GW_URI_MAX 8192

/*
 * Appends the canonical form of the absolute URI s (len bytes) to out. Returns 0, or -1 with
 * *why set to a phrase saying what is wrong (static text, safe to show; nothing of the input).
 */
int gw_uri_canonical(const char *s, size_t len, struct gw_buf *out, const char **why);

#endif
