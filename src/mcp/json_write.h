#ifndef TOOLGATE_MCP_JSON_WRITE_H
#define TOOLGATE_MCP_JSON_WRITE_H

#include <jansson.h>
#include <stddef.h>

#include "lib/buf.h"

/*
 * The compact JSON writer of the messages toolgate relays after a layer changed them (answers
 * with redactions, rewritten requests, stream events). It writes byte for byte what jansson's
 * json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(real_precision)) writes,
 * with jansson's refusals: a string (or key) that is not well-formed UTF-8 fails the whole
 * value. Object members go in the object's own order. One bound more: containers nested more
 * than MCP_JSON_WRITE_MAX_DEPTH deep are refused (the parser never builds one; a tree that
 * holds itself is refused there instead of being followed forever).
 *
 * What it saves over jansson's dump: no callback per piece, no hash table of the containers
 * being written, no printf per container or integer, and runs of plain bytes copied at once.
 *
 * real_precision: 0 for jansson's default (17 significant digits), else 1..31.
 * Appends to out; returns 0, or -1 (memory, a string that is not UTF-8, the depth bound). On
 * failure out keeps its old length.
 */
#define MCP_JSON_WRITE_MAX_DEPTH 4096

int mcp_json_write(struct gw_buf *out, const json_t *v, int real_precision);

/* The same into a new NUL-terminated string (free()), as json_dumps returns it; NULL on failure. */
char *mcp_json_dumps(const json_t *v, int real_precision);

#endif
