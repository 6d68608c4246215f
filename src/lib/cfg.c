#include "lib/cfg.h"
#include "lib/timeutil.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* A config file larger than this is refused before parsing. */
#define CFG_MAX_FILE (16u * 1024 * 1024)
/* Nesting deeper than this is refused (the schema needs far less). */
#define CFG_MAX_DEPTH 64

static struct cfg_node *node_new(enum cfg_kind kind, const yaml_mark_t *mark)
{
    struct cfg_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->kind = kind;
    n->line = (int)mark->line + 1;
    n->column = (int)mark->column + 1;
    return n;
}

static void node_free(struct cfg_node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys)
            free(n->keys[i]);
        node_free(n->items[i]);
    }
    free(n->keys);
    free(n->key_marks);
    free(n->items);
    free(n->scalar);
    free(n);
}

static int node_push(struct cfg_node *parent, char *key, struct cfg_mark key_mark,
                     struct cfg_node *child)
{
    if (parent->kind == CFG_MAP) {
        char **keys = realloc(parent->keys, (parent->n + 1) * sizeof *keys);
        if (!keys)
            return -1;
        parent->keys = keys;
        struct cfg_mark *marks = realloc(parent->key_marks, (parent->n + 1) * sizeof *marks);
        if (!marks)
            return -1;
        parent->key_marks = marks;
    }
    struct cfg_node **items = realloc(parent->items, (parent->n + 1) * sizeof *items);
    if (!items)
        return -1;
    parent->items = items;
    if (parent->kind == CFG_MAP) {
        parent->keys[parent->n] = key;
        parent->key_marks[parent->n] = key_mark;
    }
    parent->items[parent->n] = child;
    parent->n++;
    return 0;
}

int cfg_errorf(struct cfg_error *err, const struct cfg_doc *doc, const struct cfg_node *node,
               const char *path, const char *fmt, ...)
{
    if (!err)
        return -1;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *name = doc && doc->name ? doc->name : "config";
    if (node)
        snprintf(err->msg, sizeof err->msg, "%s:%d:%d: %s%s%s", name, node->line, node->column,
                 path && *path ? path : "", path && *path ? ": " : "", msg);
    else
        snprintf(err->msg, sizeof err->msg, "%s: %s%s%s", name, path && *path ? path : "",
                 path && *path ? ": " : "", msg);
    return -1;
}

/*
 * Builds the tree from libyaml's event stream. The parser is iterative: a small explicit
 * stack of open containers, with the pending map key for each.
 */
struct frame {
    struct cfg_node *node;
    char *pending_key;
    int key_line, key_col;
};

static int build_tree(yaml_parser_t *parser, struct cfg_doc *doc, struct cfg_error *err)
{
    struct frame stack[CFG_MAX_DEPTH];
    int depth = 0;
    int rc = -1;
    int done = 0;
    struct cfg_node *root = NULL;

    while (!done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(parser, &ev)) {
            struct cfg_node at = {.line = (int)parser->problem_mark.line + 1,
                                  .column = (int)parser->problem_mark.column + 1};
            cfg_errorf(err, doc, &at, "", "YAML syntax error: %s%s%s",
                       parser->problem ? parser->problem : "unknown", parser->context ? " " : "",
                       parser->context ? parser->context : "");
            goto out;
        }
        struct cfg_node *node = NULL;
        int close = 0;
        switch (ev.type) {
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_START_EVENT:
            break;
        case YAML_DOCUMENT_END_EVENT:
            break;
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_ALIAS_EVENT: {
            struct cfg_node at = {.line = (int)ev.start_mark.line + 1,
                                  .column = (int)ev.start_mark.column + 1};
            cfg_errorf(err, doc, &at, "", "YAML aliases are not supported in toolgate configs");
            yaml_event_delete(&ev);
            goto out;
        }
        case YAML_SCALAR_EVENT:
            /*
             * A double-quoted "\0" yields a NUL inside the value; the C strings built from it
             * would silently end there ("/mcp\0x" would read as "/mcp"), so refuse it.
             */
            if (memchr(ev.data.scalar.value, '\0', ev.data.scalar.length)) {
                struct cfg_node at = {.line = (int)ev.start_mark.line + 1,
                                      .column = (int)ev.start_mark.column + 1};
                cfg_errorf(err, doc, &at, "", "NUL characters are not allowed in values");
                yaml_event_delete(&ev);
                goto out;
            }
            if (ev.data.scalar.anchor) {
                struct cfg_node at = {.line = (int)ev.start_mark.line + 1,
                                      .column = (int)ev.start_mark.column + 1};
                cfg_errorf(err, doc, &at, "", "YAML anchors are not supported in toolgate configs");
                yaml_event_delete(&ev);
                goto out;
            }
            if (depth > 0 && stack[depth - 1].node->kind == CFG_MAP &&
                !stack[depth - 1].pending_key) {
                /* This scalar is a key. */
                stack[depth - 1].pending_key =
                    strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
                stack[depth - 1].key_line = (int)ev.start_mark.line + 1;
                stack[depth - 1].key_col = (int)ev.start_mark.column + 1;
                if (!stack[depth - 1].pending_key) {
                    yaml_event_delete(&ev);
                    goto oom;
                }
                /* Duplicate keys are an error: the later one would silently win. */
                struct cfg_node *m = stack[depth - 1].node;
                for (size_t i = 0; i < m->n; i++) {
                    if (strcmp(m->keys[i], stack[depth - 1].pending_key) == 0) {
                        struct cfg_node at = {.line = stack[depth - 1].key_line,
                                              .column = stack[depth - 1].key_col};
                        cfg_errorf(err, doc, &at, "", "duplicate key \"%s\"", m->keys[i]);
                        yaml_event_delete(&ev);
                        goto out;
                    }
                }
                break;
            }
            node = node_new(CFG_SCALAR, &ev.start_mark);
            if (!node) {
                yaml_event_delete(&ev);
                goto oom;
            }
            node->scalar = strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
            node->quoted = ev.data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                           ev.data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE ||
                           ev.data.scalar.style == YAML_LITERAL_SCALAR_STYLE ||
                           ev.data.scalar.style == YAML_FOLDED_SCALAR_STYLE;
            if (!node->scalar) {
                free(node);
                yaml_event_delete(&ev);
                goto oom;
            }
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            const yaml_char_t *anchor = ev.type == YAML_SEQUENCE_START_EVENT
                                            ? ev.data.sequence_start.anchor
                                            : ev.data.mapping_start.anchor;
            if (anchor) {
                struct cfg_node at = {.line = (int)ev.start_mark.line + 1,
                                      .column = (int)ev.start_mark.column + 1};
                cfg_errorf(err, doc, &at, "", "YAML anchors are not supported in toolgate configs");
                yaml_event_delete(&ev);
                goto out;
            }
            if (depth > 0 && stack[depth - 1].node->kind == CFG_MAP &&
                !stack[depth - 1].pending_key) {
                struct cfg_node at = {.line = (int)ev.start_mark.line + 1,
                                      .column = (int)ev.start_mark.column + 1};
                cfg_errorf(err, doc, &at, "", "map keys must be plain strings");
                yaml_event_delete(&ev);
                goto out;
            }
            if (depth >= CFG_MAX_DEPTH) {
                struct cfg_node at = {.line = (int)ev.start_mark.line + 1,
                                      .column = (int)ev.start_mark.column + 1};
                cfg_errorf(err, doc, &at, "", "nesting deeper than %d levels", CFG_MAX_DEPTH);
                yaml_event_delete(&ev);
                goto out;
            }
            node =
                node_new(ev.type == YAML_SEQUENCE_START_EVENT ? CFG_SEQ : CFG_MAP, &ev.start_mark);
            if (!node) {
                yaml_event_delete(&ev);
                goto oom;
            }
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            close = 1;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);

        if (node) {
            /* Attach to the parent (or make it the root), then open it if it is a container. */
            if (depth == 0) {
                if (root) {
                    struct cfg_node at = {.line = node->line, .column = node->column};
                    node_free(node);
                    cfg_errorf(err, doc, &at, "", "only one YAML document is allowed");
                    goto out;
                }
                root = node;
            } else {
                struct frame *f = &stack[depth - 1];
                char *key = f->pending_key;
                struct cfg_mark key_mark = {f->key_line, f->key_col};
                f->pending_key = NULL;
                if (node_push(f->node, key, key_mark, node) != 0) {
                    free(key);
                    node_free(node);
                    goto oom;
                }
            }
            if (node->kind != CFG_SCALAR) {
                stack[depth].node = node;
                stack[depth].pending_key = NULL;
                depth++;
            }
        }
        if (close && depth > 0) {
            free(stack[depth - 1].pending_key);
            stack[depth - 1].pending_key = NULL;
            depth--;
        }
    }
    doc->root = root;
    root = NULL;
    rc = 0;
    goto out;
oom:
    cfg_errorf(err, doc, NULL, "", "out of memory while parsing");
out:
    for (int i = 0; i < depth; i++)
        free(stack[i].pending_key);
    node_free(root);
    return rc;
}

int cfg_load_string(const char *text, size_t len, const char *name, struct cfg_doc *doc,
                    struct cfg_error *err)
{
    memset(doc, 0, sizeof *doc);
    doc->name = strdup(name ? name : "config");
    if (!doc->name)
        return cfg_errorf(err, NULL, NULL, "", "out of memory");
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        cfg_errorf(err, doc, NULL, "", "cannot initialise the YAML parser");
        cfg_doc_free(doc);
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = build_tree(&parser, doc, err);
    yaml_parser_delete(&parser);
    if (rc == 0 && (!doc->root || cfg_is_null(doc->root))) {
        /* An empty file (or a lone "---") is an empty map: every section has defaults. */
        node_free(doc->root);
        yaml_mark_t m = {0, 0, 0};
        doc->root = node_new(CFG_MAP, &m);
        if (!doc->root)
            rc = cfg_errorf(err, doc, NULL, "", "out of memory while parsing");
    }
    if (rc == 0 && doc->root->kind != CFG_MAP)
        rc = cfg_errorf(err, doc, doc->root, "", "the top level must be a map of sections");
    if (rc != 0) {
        cfg_doc_free(doc);
        return -1;
    }
    return 0;
}

int cfg_read_file(const char *path, size_t max, char **out, size_t *out_len, struct cfg_error *err)
{
    *out = NULL;
    *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err->msg, sizeof err->msg, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    int rc = -1;
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 65536;
            char *p = realloc(text, cap);
            if (!p) {
                snprintf(err->msg, sizeof err->msg, "%s: out of memory", path);
                goto out;
            }
            text = p;
        }
        size_t r = fread(text + len, 1, cap - len, f);
        len += r;
        if (len > max) {
            snprintf(err->msg, sizeof err->msg,
                     "%s: larger than %zu bytes; is this the right file?", path, max);
            goto out;
        }
        if (r == 0) {
            if (ferror(f)) {
                snprintf(err->msg, sizeof err->msg, "%s: read error: %s", path, strerror(errno));
                goto out;
            }
            break;
        }
    }
    *out = text;
    *out_len = len;
    text = NULL;
    rc = 0;
out:
    free(text);
    fclose(f);
    return rc;
}

int cfg_load_file(const char *path, struct cfg_doc *doc, struct cfg_error *err)
{
    memset(doc, 0, sizeof *doc);
    char *text;
    size_t len;
    if (cfg_read_file(path, CFG_MAX_FILE, &text, &len, err) != 0)
        return -1;
    int rc = cfg_load_string(text, len, path, doc, err);
    free(text);
    return rc;
}

void cfg_doc_free(struct cfg_doc *doc)
{
    if (!doc)
        return;
    node_free(doc->root);
    free(doc->name);
    doc->root = NULL;
    doc->name = NULL;
}

int cfg_is_null(const struct cfg_node *node)
{
    if (!node || node->kind != CFG_SCALAR || node->quoted)
        return 0;
    const char *s = node->scalar;
    return *s == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

const struct cfg_node *cfg_map_get(const struct cfg_node *map, const char *key)
{
    if (!map || map->kind != CFG_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0)
            return map->items[i];
    return NULL;
}

void cfg_path_key(char *out, size_t outlen, const char *parent, const char *key)
{
    if (parent && *parent)
        snprintf(out, outlen, "%s.%s", parent, key);
    else
        snprintf(out, outlen, "%s", key);
}

void cfg_path_index(char *out, size_t outlen, const char *parent, size_t index)
{
    snprintf(out, outlen, "%s[%zu]", parent ? parent : "", index);
}

int cfg_check_keys(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                   const char *const *allowed, struct cfg_error *err)
{
    if (cfg_expect_map(doc, map, path, err) != 0)
        return -1;
    for (size_t i = 0; i < map->n; i++) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, map->keys[i]) == 0)
                ok = 1;
        if (!ok) {
            char p[256];
            cfg_path_key(p, sizeof p, path, map->keys[i]);
            char known[400] = "";
            size_t used = 0;
            for (const char *const *a = allowed; *a && used + 2 < sizeof known; a++) {
                int w = snprintf(known + used, sizeof known - used, "%s%s",
                                 a == allowed ? "" : ", ", *a);
                if (w < 0)
                    break;
                used += (size_t)w;
            }
            struct cfg_node at = {.line = map->key_marks[i].line,
                                  .column = map->key_marks[i].column};
            return cfg_errorf(err, doc, &at, p, "unknown key (known here: %s)", known);
        }
    }
    return 0;
}

int cfg_expect_map(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                   struct cfg_error *err)
{
    if (!node || node->kind != CFG_MAP)
        return cfg_errorf(err, doc, node, path, "expected a map of keys");
    return 0;
}

int cfg_expect_seq(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                   struct cfg_error *err)
{
    if (!node || node->kind != CFG_SEQ)
        return cfg_errorf(err, doc, node, path, "expected a list");
    return 0;
}

/* Looks up key; on absence returns 1 (nothing to do), on a non-scalar value an error. */
static int get_scalar(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                      const char *key, const struct cfg_node **out, char *fullpath, size_t fplen,
                      struct cfg_error *err)
{
    cfg_path_key(fullpath, fplen, path, key);
    const struct cfg_node *n = cfg_map_get(map, key);
    if (!n || cfg_is_null(n))
        return 1;
    if (n->kind != CFG_SCALAR)
        return cfg_errorf(err, doc, n, fullpath, "expected a single value, not a %s",
                          n->kind == CFG_MAP ? "map" : "list");
    *out = n;
    return 0;
}

int cfg_scalar_string(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                      char **out, struct cfg_error *err)
{
    if (!node || node->kind != CFG_SCALAR)
        return cfg_errorf(err, doc, node, path, "expected a string");
    char *s = strdup(node->scalar);
    if (!s)
        return cfg_errorf(err, doc, node, path, "out of memory");
    free(*out);
    *out = s;
    return 0;
}

int cfg_get_string(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                   const char *key, int required, char **out, struct cfg_error *err)
{
    char p[256];
    const struct cfg_node *n = NULL;
    int rc = get_scalar(doc, map, path, key, &n, p, sizeof p, err);
    if (rc < 0)
        return -1;
    if (rc == 1)
        return required ? cfg_errorf(err, doc, map, p, "required key is missing") : 0;
    return cfg_scalar_string(doc, n, p, out, err);
}

int cfg_get_bool(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                 const char *key, int *out, struct cfg_error *err)
{
    char p[256];
    const struct cfg_node *n = NULL;
    int rc = get_scalar(doc, map, path, key, &n, p, sizeof p, err);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    const char *s = n->scalar;
    if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 || strcmp(s, "on") == 0)
        *out = 1;
    else if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0 || strcmp(s, "off") == 0)
        *out = 0;
    else
        return cfg_errorf(err, doc, n, p, "\"%s\" is not true or false", s);
    return 0;
}

int cfg_get_int(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                const char *key, int64_t min, int64_t max, int64_t *out, struct cfg_error *err)
{
    char p[256];
    const struct cfg_node *n = NULL;
    int rc = get_scalar(doc, map, path, key, &n, p, sizeof p, err);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(n->scalar, &end, 10);
    if (errno || end == n->scalar || *end)
        return cfg_errorf(err, doc, n, p, "\"%s\" is not a whole number", n->scalar);
    if (v < min || v > max)
        return cfg_errorf(err, doc, n, p, "%lld is out of range [%lld, %lld]", v, (long long)min,
                          (long long)max);
    *out = v;
    return 0;
}

int cfg_get_double(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                   const char *key, double *out, struct cfg_error *err)
{
    char p[256];
    const struct cfg_node *n = NULL;
    int rc = get_scalar(doc, map, path, key, &n, p, sizeof p, err);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    char *end = NULL;
    errno = 0;
    double v = strtod(n->scalar, &end);
    /* strtod also reads "nan", "inf" and hex floats; none of them is a sensible setting. */
    if (errno || end == n->scalar || *end || !isfinite(v) || strpbrk(n->scalar, "xX") != NULL)
        return cfg_errorf(err, doc, n, p, "\"%s\" is not a number (write it like 0.05)", n->scalar);
    *out = v;
    return 0;
}

/* A duration in nanoseconds; `like` shows how to write one in the error. */
static int get_duration(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                        const char *key, uint64_t *out_ns, const char *like, struct cfg_error *err)
{
    char p[256];
    const struct cfg_node *n = NULL;
    int rc = get_scalar(doc, map, path, key, &n, p, sizeof p, err);
    if (rc != 0)
        return rc < 0 ? -1 : 1;
    if (gw_parse_duration_ns(n->scalar, out_ns) != 0)
        return cfg_errorf(err, doc, n, p, "\"%s\" is not a duration (write it like %s)", n->scalar,
                          like);
    return 0;
}

int cfg_get_duration_ms(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                        const char *key, uint64_t *out, struct cfg_error *err)
{
    uint64_t ns;
    int rc = get_duration(doc, map, path, key, &ns, "250ms, 30s, 5m, 1h, 1d", err);
    if (rc == 0) /* as gw_parse_duration_ms: a part of a millisecond counts as one */
        *out = ns / 1000000ull + (ns % 1000000ull ? 1 : 0);
    return rc < 0 ? -1 : 0;
}

int cfg_get_duration_ns(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                        const char *key, uint64_t *out, struct cfg_error *err)
{
    int rc = get_duration(doc, map, path, key, out, "200us, 1ms, 250ms, 30s", err);
    return rc < 0 ? -1 : 0;
}

int cfg_get_size(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                 const char *key, uint64_t *out, struct cfg_error *err)
{
    char p[256];
    const struct cfg_node *n = NULL;
    int rc = get_scalar(doc, map, path, key, &n, p, sizeof p, err);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (gw_parse_size(n->scalar, out) != 0)
        return cfg_errorf(err, doc, n, p,
                          "\"%s\" is not a size (write it like 512, 16KiB, 1MiB, 1GiB)", n->scalar);
    return 0;
}

void cfg_strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

int cfg_get_string_list(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                        const char *key, char ***out, size_t *count, struct cfg_error *err)
{
    char p[256];
    cfg_path_key(p, sizeof p, path, key);
    const struct cfg_node *n = cfg_map_get(map, key);
    if (!n || cfg_is_null(n))
        return 0;
    size_t want = n->kind == CFG_SEQ ? n->n : 1;
    if (n->kind == CFG_MAP)
        return cfg_errorf(err, doc, n, p, "expected a string or a list of strings");
    char **v = calloc(want + 1, sizeof *v);
    if (!v)
        return cfg_errorf(err, doc, n, p, "out of memory");
    for (size_t i = 0; i < want; i++) {
        const struct cfg_node *item = n->kind == CFG_SEQ ? n->items[i] : n;
        char ip[280];
        cfg_path_index(ip, sizeof ip, p, i);
        if (item->kind != CFG_SCALAR) {
            cfg_strv_free(v);
            return cfg_errorf(err, doc, item, ip, "expected a string");
        }
        v[i] = strdup(item->scalar);
        if (!v[i]) {
            cfg_strv_free(v);
            return cfg_errorf(err, doc, item, ip, "out of memory");
        }
    }
    cfg_strv_free(*out);
    *out = v;
    if (count)
        *count = want;
    return 0;
}

char *cfg_resolve_path(const char *config_name, const char *rel)
{
    const char *slash = config_name ? strrchr(config_name, '/') : NULL;
    if (rel[0] == '/' || !slash)
        return strdup(rel);
    size_t dl = (size_t)(slash - config_name) + 1;
    size_t rl = strlen(rel);
    char *out = malloc(dl + rl + 1);
    if (!out)
        return NULL;
    memcpy(out, config_name, dl);
    memcpy(out + dl, rel, rl + 1);
    return out;
}
