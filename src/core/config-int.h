/*
 * config-int: what the parts of the configuration loader share (config.c: the generation and
 * the section table; config_server.c: `server`; config_routes.c: `routes`; config_util.c:
 * the helpers below). Nothing outside src/core/config*.c includes this.
 */
#ifndef GW_CONFIG_INT_H
#define GW_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/config.h"
#include "lib/cfg.h"

/* Bounds on the file and on the counts of things in it (each far above real use). */
#define CONFIG_MAX_FILE (16u * 1024 * 1024)
#define CONFIG_MAX_LISTEN 64
#define CONFIG_MAX_ROUTES 1024
#define CONFIG_MAX_BACKENDS 64
#define CONFIG_MAX_ENDPOINTS 64
#define CONFIG_MAX_NAME 64
#define CONFIG_MAX_ROUTE_PATH 256
#define CONFIG_MAX_URL 2048
#define CONFIG_MAX_HOST 253

#define KiB UINT64_C(1024)
#define MiB (UINT64_C(1024) * KiB)
#define GiB (UINT64_C(1024) * MiB)
#define SEC UINT64_C(1000)
#define MIN (UINT64_C(60) * SEC)
#define HOUR (UINT64_C(60) * MIN)
#define DAY (UINT64_C(24) * HOUR)

/* Key paths are short; this bounds the buffers that build them. */
#define PATH_MAX_LEN 256

static inline int is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static inline int is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static inline int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline int is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 3986 unreserved and sub-delims, plus ':' and '@': what a path segment may hold. */
static inline int is_pchar(char c)
{
    return is_alnum(c) || strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

/* Parses "host:port", "[v6]:port" or ":port" into l (address, host, port); config_server.c. */
int config_parse_listen_address(const struct cfg_doc *doc, const struct cfg_node *node,
                                const char *path, const char *text, struct gw_listen *l,
                                struct cfg_error *err);
/* Parses a listener's `tls: {cert, key}` into l (both files must be readable). */
int config_parse_listen_tls(const struct cfg_doc *doc, const struct cfg_node *tls, const char *path,
                            struct gw_listen *l, struct cfg_error *err);
/* Frees what a listen entry holds and zeroes it. */
void config_listen_free(struct gw_listen *l);
/* The `admin` section (config_admin.c). */
int config_parse_admin(struct gw_config *cfg, const struct cfg_doc *doc,
                       const struct cfg_node *node, struct cfg_error *err);
void config_free_admin(struct gw_config *cfg);

/* Parses 1..5 decimal digits as a TCP port 1..65535; -1 otherwise. */
int config_parse_port(const char *s, size_t len);
/* A size or a duration the way a person would write it in the file (1MiB, 30s). */
void config_format_size(uint64_t v, char *out, size_t outlen);
void config_format_duration(uint64_t ms, char *out, size_t outlen);
/* The node to point an error at: the value when present, else the enclosing map. */
const struct cfg_node *config_at_key(const struct cfg_node *map, const char *key);
/* A required key: present, not null, a scalar. `example` shows what to write. */
int config_get_required_string(const struct cfg_doc *doc, const struct cfg_node *map,
                               const char *path, const char *key, const char *example, char **out,
                               struct cfg_error *err);
/* A whole number in [min, max] under key; `hint` tells what the number means. */
int config_get_count(const struct cfg_doc *doc, const struct cfg_node *map, const char *path,
                     const char *key, int64_t min, int64_t max, const char *hint, int64_t *out,
                     struct cfg_error *err);
/* The file must exist, be a regular file and be readable by this process now. */
int config_check_readable_file(const struct cfg_doc *doc, const struct cfg_node *node,
                               const char *path, const char *file, struct cfg_error *err);
/* A URL with credentials in it is not repeated in errors: they reach logs and terminals. */
const char *config_shown_url(const char *url);
const char *config_shown_quote(const char *url);
/*
 * An absolute http(s) URL as the configuration accepts it (config_util.c). NULL when fine,
 * with *https, *port and *path_out set; else a phrase saying what is wrong.
 */
const char *config_check_http_url(const char *url, int *https, int *port, const char **path_out);

/* The core's sections (node NULL when absent). 0, or -1 with err. */
int config_parse_server(struct gw_config *cfg, const struct cfg_doc *doc,
                        const struct cfg_node *node, struct cfg_error *err);
void config_free_server(struct gw_config *cfg);
/*
 * Checks a backend's keys (`core_keys` plus every module's backend_keys) and offers the map to
 * each module's parse_backend. Returns 1 when a module serves it locally (b->local_owner set;
 * `url`, `endpoints`, `tls` and `health` are then refused), 0 for a network backend, -1.
 */
int config_local_backend(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                         const char *const *core_keys, struct gw_backend *b, struct cfg_error *err);
int config_parse_routes(struct gw_config *cfg, const struct cfg_doc *doc,
                        const struct cfg_node *node, struct cfg_error *err);
void config_free_routes(struct gw_config *cfg);

#endif
