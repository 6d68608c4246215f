#ifndef TOOLGATE_MCP_JSON_PARSE_H
#define TOOLGATE_MCP_JSON_PARSE_H

#include <jansson.h>
#include <stddef.h>

/*
 * The JSON parser of every message toolgate relays (requests and answers). It builds the same
 * jansson tree json_loadb(buf, len, JSON_REJECT_DUPLICATES) builds and accepts exactly what that
 * accepts (RFC 8259, UTF-8 only, no duplicate object keys, no "\u0000", integers that fit
 * json_int_t, reals that do not overflow, nothing but whitespace after the value, values no
 * deeper than jansson's own bound of 2048), with one bound more: more than max_depth containers
 * nested in each other are refused (0: no bound but jansson's). And one difference: jansson
 * skips a NUL byte that directly follows a number or a literal ("[1\0]" reads as [1]); here a
 * NUL byte is refused wherever it is.
 *
 * It reads the input once, in place: strings without escapes are copied once into their
 * json_t, and the UTF-8 check runs over non-ASCII bytes only.
 *
 * MCP_JSON_ANY: any value at the top, not only an object or an array.
 * Returns a new reference, or NULL when the input is refused or memory ran out.
 */
#define MCP_JSON_ANY 1u
#define MCP_JSON_MAX_DEPTH 2048

json_t *mcp_json_parse(const char *buf, size_t len, size_t max_depth, unsigned flags);

#endif
