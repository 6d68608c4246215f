#include "lib/log.h"
#include "lib/buf.h"
#include "lib/timeutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static enum gw_log_level log_min = GW_LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void gw_log_setup(enum gw_log_level min, int fd)
{
    log_min = min;
    log_fd = fd;
}

int gw_log_level_parse(const char *s, enum gw_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum gw_log_level)i;
            return 0;
        }
    }
    return -1;
}

int gw_log_enabled(enum gw_log_level lvl)
{
    return lvl >= log_min;
}

void gw_log(enum gw_log_level lvl, const char *event, const char *request_id, const char *fields,
            const char *fmt, ...)
{
    if (lvl < log_min)
        return;
    char stackbuf[1024];
    struct gw_buf line = {0};
    char ts[40];
    gw_time_rfc3339(gw_now_ns(), ts, sizeof ts);

    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(stackbuf, sizeof stackbuf, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    size_t msglen = (size_t)n < sizeof stackbuf ? (size_t)n : sizeof stackbuf - 1;

    gw_buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":\"", ts, level_names[lvl]);
    gw_buf_append_json_escaped(&line, event, strlen(event));
    gw_buf_append_str(&line, "\"");
    if (request_id) {
        gw_buf_append_str(&line, ",\"request_id\":\"");
        gw_buf_append_json_escaped(&line, request_id, strlen(request_id));
        gw_buf_append_str(&line, "\"");
    }
    gw_buf_append_str(&line, ",\"msg\":\"");
    gw_buf_append_json_escaped(&line, stackbuf, msglen);
    gw_buf_append_str(&line, "\"");
    if (fields && *fields) {
        gw_buf_append_str(&line, ",");
        gw_buf_append_str(&line, fields);
    }
    gw_buf_append_str(&line, "}\n");
    if (line.data) {
        /* One write per line keeps lines whole when several worker threads log at once. */
        ssize_t w = write(log_fd, line.data, line.len);
        (void)w;
    }
    gw_buf_free(&line);
}
