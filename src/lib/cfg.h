/*
 * cfg: the YAML configuration as a tree of nodes that remember where they came from, and
 * typed getters that report errors as "file:line:col: key.path: what is wrong".
 *
 * Modules parse their own section from this tree (config.c for server/routes, each layer for
 * its own). Unknown keys are errors: every map is checked with cfg_check_keys. Anchors and
 * aliases are refused (they let a small file expand without bound).
 */
#ifndef GW_CFG_H
#define GW_CFG_H

#include <stddef.h>
#include <stdint.h>

enum cfg_kind { CFG_SCALAR, CFG_MAP, CFG_SEQ };

struct cfg_mark {
    int line; /* 1-based */
    int column;
};

struct cfg_node {
    enum cfg_kind kind;
    int line; /* 1-based */
    int column;
    char *scalar; /* CFG_SCALAR: the text, NUL-terminated */
    int quoted;   /* CFG_SCALAR: written in quotes (so `null`/`true` are strings) */
    size_t n;     /* CFG_MAP / CFG_SEQ: number of entries */
    char **keys;  /* CFG_MAP: keys[i] names items[i] */
    struct cfg_node **items;
    struct cfg_mark *key_marks; /* CFG_MAP: where keys[i] was written (errors point there) */
};

struct cfg_doc {
    char *name; /* file name used in messages */
    struct cfg_node *root;
};

struct cfg_error {
    char msg[768];
};

/*
 * Reads a whole file of at most max bytes into a malloc'd buffer (caller frees). Returns 0, or
 * -1 with a sentence in err.
 */
int cfg_read_file(const char *path, size_t max, char **out, size_t *out_len, struct cfg_error *err);
/* Loads and parses a YAML file into doc (caller frees with cfg_doc_free). Returns 0 or -1. */
int cfg_load_file(const char *path, struct cfg_doc *doc, struct cfg_error *err);
int cfg_load_string(const char *text, size_t len, const char *name, struct cfg_doc *doc,
                    struct cfg_error *err);
void cfg_doc_free(struct cfg_doc *doc);

/* Formats an error about node (may be NULL) at key path `path`. Always returns -1. */
int cfg_errorf(struct cfg_error *err, const struct cfg_doc *doc, const struct cfg_node *node,
               const char *path, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* True for a scalar `null`, `~` or empty (unquoted). */
int cfg_is_null(const struct cfg_node *node);
/* Returns the value under key in a map, or NULL. */
const struct cfg_node *cfg_map_get(const struct cfg_node *map, const char *key);
/* Fails on the first key of map not in allowed (a NULL-terminated list); the error points at
 * the key and lists the allowed ones. */
int cfg_check_keys(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                   const char *const *allowed, struct cfg_error *err);
/* Requires node to be a map (or a sequence); error otherwise. */
int cfg_expect_map(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                   struct cfg_error *err);
int cfg_expect_seq(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                   struct cfg_error *err);

/* Joins parent path and key ("server" + "limits" -> "server.limits"; index -> "routes[2]"). */
void cfg_path_key(char *out, size_t outlen, const char *parent, const char *key);
void cfg_path_index(char *out, size_t outlen, const char *parent, size_t index);

/*
 * Typed getters on map[key]. When the key is absent, the output is left unchanged (so the
 * caller sets the default first) and 0 is returned, unless `required` is set. On a present key
 * of the wrong type or shape, an error naming file:line and path is written and -1 returned.
 * Strings are malloc'd (the previous *out is freed).
 */
int cfg_get_string(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                   const char *key, int required, char **out, struct cfg_error *err);
int cfg_get_bool(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                 const char *key, int *out, struct cfg_error *err);
int cfg_get_int(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                const char *key, int64_t min, int64_t max, int64_t *out, struct cfg_error *err);
int cfg_get_double(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                   const char *key, double *out, struct cfg_error *err);
int cfg_get_duration_ms(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                        const char *key, uint64_t *out, struct cfg_error *err);
/* The same in nanoseconds, for durations below a millisecond ("200us"). */
int cfg_get_duration_ns(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                        const char *key, uint64_t *out, struct cfg_error *err);
int cfg_get_size(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                 const char *key, uint64_t *out, struct cfg_error *err);
/* A string or a list of strings -> NULL-terminated malloc'd array (free with cfg_strv_free). */
int cfg_get_string_list(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                        const char *key, char ***out, size_t *count, struct cfg_error *err);
void cfg_strv_free(char **v);

/*
 * A path written in the config, relative to the config file's directory (absolute paths and
 * configs without a directory part are taken as they are). Returns a malloc'd string or NULL.
 */
char *cfg_resolve_path(const char *config_name, const char *rel);

/* Scalar conversions for values not under a map key (e.g. sequence items). */
int cfg_scalar_string(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                      char **out, struct cfg_error *err);

#endif
