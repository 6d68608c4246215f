/*
 * param_marks: which tool arguments a route's tools mirror into Mcp-Param-* headers
 * (x-mcp-header in their input schemas, 2026-07-28), learnt from the tools/list answers that
 * pass. With a tool's marks known, a client's Mcp-Param headers are held to exactly the
 * arguments they name (core/proxy.c), and a bridge can write them (core/bridge_legacy.c).
 * Process-wide, bounded (PARAM_MARK_TOOLS, the oldest replaced).
 */
#ifndef GW_CORE_PARAM_MARKS_H
#define GW_CORE_PARAM_MARKS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define PARAM_MARK_TOOLS 4096
#define MARKS_PER_TOOL 8

struct mark {
    char header[72];   /* the x-mcp-header name */
    char pointer[192]; /* the JSON Pointer of the argument, through properties only */
};

struct tool_marks {
    char route[72];
    char tool[129];
    int invalid; /* a mark that is not a token, or named twice: the tool is not called */
    size_t n;
    struct mark marks[MARKS_PER_TOOL];
    uint64_t seq;
};

/*
 * Learns the marks of every tool of a tools/list result. A tool whose marks are invalid (not a
 * token, named twice) is taken out of the list, as the revision asks of its clients: no header
 * could carry what it declares. Returns how many were taken out.
 */
size_t param_marks_learn(const char *route, json_t *tools);
/* The marks of a route's tool; 0 when they are not known (no tools/list seen, or evicted). */
int param_marks_of(const char *route, const char *tool, struct tool_marks *out);
/* The argument a mark's JSON Pointer names, through objects only; NULL when absent. */
const json_t *param_marks_value(const json_t *arguments, const char *pointer);

#endif
