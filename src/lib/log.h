/*
 * log: structured logs, one JSON object per line on stderr (or a configured file).
 *
 * Every line carries "ts", "level", "event" and "msg"; lines about one request carry its
 * "request_id". Messages are text written by toolgate: never pass tokens, argument values or
 * anything else a client sent, except identifiers that are safe to log.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

enum gw_log_level { GW_LOG_DEBUG = 0, GW_LOG_INFO, GW_LOG_WARN, GW_LOG_ERROR };

/* Sets the minimum level written and the destination fd (default: info, stderr). */
void gw_log_setup(enum gw_log_level min, int fd);
/* Parses "debug"/"info"/"warn"/"error"; returns -1 on anything else. */
int gw_log_level_parse(const char *s, enum gw_log_level *out);
int gw_log_enabled(enum gw_log_level lvl);

/*
 * Writes one line. `event` is a short stable name (e.g. "request", "upstream_error");
 * `request_id` may be NULL; `fields` may be NULL or a JSON member list without braces,
 * already escaped (e.g. "\"status\":200,\"route\":\"mcp\"").
 */
void gw_log(enum gw_log_level lvl, const char *event, const char *request_id, const char *fields,
            const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define gw_log_info(event, ...) gw_log(GW_LOG_INFO, event, NULL, NULL, __VA_ARGS__)
#define gw_log_warn(event, ...) gw_log(GW_LOG_WARN, event, NULL, NULL, __VA_ARGS__)
#define gw_log_error(event, ...) gw_log(GW_LOG_ERROR, event, NULL, NULL, __VA_ARGS__)
#define gw_log_debug(event, ...) gw_log(GW_LOG_DEBUG, event, NULL, NULL, __VA_ARGS__)

#endif
