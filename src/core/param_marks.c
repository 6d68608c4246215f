#include "core/param_marks.h"
#include "mcp/modern.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static pthread_mutex_t marks_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tool_marks marks[PARAM_MARK_TOOLS];
static uint64_t marks_seq;

/* Appends a property name to a JSON Pointer (escaping '~' and '/'); -1 when it does not fit. */
static int pointer_push(char *ptr, size_t size, const char *name)
{
    size_t used = strlen(ptr);
    if (used + 1 >= size)
        return -1;
    ptr[used++] = '/';
    for (const char *p = name; *p; p++) {
        const char *rep = *p == '~' ? "~0" : *p == '/' ? "~1" : NULL;
        size_t k = rep ? 2 : 1;
        if (used + k >= size)
            return -1;
        memcpy(ptr + used, rep ? rep : p, k);
        used += k;
    }
    ptr[used] = '\0';
    return 0;
}

/* The marked properties of a schema, reached through `properties` only (the revision's rule). */
static void collect(const json_t *schema, char *pointer, size_t size, struct tool_marks *tm,
                    int depth)
{
    const json_t *props = json_object_get(schema, "properties");
    const char *name;
    const json_t *sub;
    if (depth > 8 || !json_is_object(props))
        return;
    json_object_foreach((json_t *)props, name, sub)
    {
        size_t keep = strlen(pointer);
        if (pointer_push(pointer, size, name) != 0) {
            pointer[keep] = '\0'; /* too long to name: skipped, and the siblings intact */
            continue;
        }
        const char *h = json_string_value(json_object_get(sub, "x-mcp-header"));
        const char *type = json_string_value(json_object_get(sub, "type"));
        if (h && !mcp_header_name_ok(h)) {
            tm->invalid = 1; /* not a token: a header line of its own, or nothing */
            h = NULL;
        }
        for (size_t k = 0; h && k < tm->n; k++)
            if (strcasecmp(tm->marks[k].header, h) == 0)
                tm->invalid = 1, h = NULL; /* twice: which value would it carry? */
        if (h && type &&
            (!strcmp(type, "string") || !strcmp(type, "integer") || !strcmp(type, "boolean")) &&
            strlen(h) < sizeof tm->marks[0].header && tm->n < MARKS_PER_TOOL) {
            snprintf(tm->marks[tm->n].header, sizeof tm->marks[0].header, "%s", h);
            snprintf(tm->marks[tm->n].pointer, sizeof tm->marks[0].pointer, "%s", pointer);
            tm->n++;
        }
        collect(sub, pointer, size, tm, depth + 1);
        pointer[keep] = '\0';
    }
}

size_t param_marks_learn(const char *route, json_t *tools)
{
    size_t removed = 0;
    for (size_t i = 0; i < json_array_size(tools);) {
        const json_t *t = json_array_get(tools, i);
        const char *name = json_string_value(json_object_get(t, "name"));
        if (!name || strlen(name) > 128) {
            i++;
            continue;
        }
        struct tool_marks tm = {0};
        char pointer[192] = "";
        snprintf(tm.route, sizeof tm.route, "%s", route);
        snprintf(tm.tool, sizeof tm.tool, "%s", name);
        collect(json_object_get(t, "inputSchema"), pointer, sizeof pointer, &tm, 0);
        if (tm.invalid) {
            json_array_remove(tools, i);
            removed++;
            continue;
        }
        i++;
        pthread_mutex_lock(&marks_lock);
        struct tool_marks *slot = NULL, *oldest = &marks[0];
        for (size_t k = 0; k < PARAM_MARK_TOOLS && !slot; k++) {
            if (!strcmp(marks[k].route, route) && !strcmp(marks[k].tool, name))
                slot = &marks[k];
            else if (marks[k].seq < oldest->seq)
                oldest = &marks[k];
        }
        if (!slot)
            slot = oldest;
        *slot = tm;
        slot->seq = ++marks_seq;
        pthread_mutex_unlock(&marks_lock);
    }
    return removed;
}

int param_marks_of(const char *route, const char *tool, struct tool_marks *out)
{
    int found = 0;
    pthread_mutex_lock(&marks_lock);
    for (size_t k = 0; k < PARAM_MARK_TOOLS && !found; k++)
        if (marks[k].seq && !strcmp(marks[k].route, route) && !strcmp(marks[k].tool, tool)) {
            *out = marks[k];
            found = 1;
        }
    pthread_mutex_unlock(&marks_lock);
    return found;
}

const json_t *param_marks_value(const json_t *arguments, const char *pointer)
{
    const json_t *cur = arguments;
    char seg[192];
    const char *p = pointer;
    while (cur && *p == '/') {
        size_t k = 0;
        p++;
        while (*p && *p != '/' && k + 1 < sizeof seg) {
            if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) {
                seg[k++] = p[1] == '0' ? '~' : '/';
                p += 2;
            } else {
                seg[k++] = *p++;
            }
        }
        seg[k] = '\0';
        cur = json_is_object(cur) ? json_object_get(cur, seg) : NULL;
    }
    return cur;
}
