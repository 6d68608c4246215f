/*
 * A PostgreSQL server for one test: initdb + pg_ctl from /usr/lib/postgresql/15/bin in a temp
 * dir, on a loopback port, as `nobody` when the test runs as root (PostgreSQL refuses root),
 * stopped at teardown. pg_fixture_url() is NULL when no server could be started (the test then
 * skips with a message).
 */
#ifndef TG_TEST_INTEGRITY_PG_FIXTURE_H
#define TG_TEST_INTEGRITY_PG_FIXTURE_H

#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fixtures.h"
#include "lib/timeutil.h"

#define PG_FIXTURE_BIN "/usr/lib/postgresql/15/bin"

static struct {
    char dir[64];
    char url[160];
    char as_user[96];
    int started;
} pg_fx;

static int pg_fx_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int pg_fx_run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd) == 0 ? 0 : -1;
}

static int pg_fixture_setup(void **state)
{
    (void)state;
    if (access(PG_FIXTURE_BIN "/initdb", X_OK) != 0)
        return 0;
    fx_mkdtemp(pg_fx.dir, sizeof pg_fx.dir);
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("nobody");
        if (!pw || chown(pg_fx.dir, pw->pw_uid, pw->pw_gid) != 0)
            return 0;
        snprintf(pg_fx.as_user, sizeof pg_fx.as_user,
                 "setpriv --reuid=%u --regid=%u --clear-groups --", (unsigned)pw->pw_uid,
                 (unsigned)pw->pw_gid);
    }
    if (pg_fx_run("cd / && timeout 60 %s " PG_FIXTURE_BIN "/initdb -D %s/data -A trust -U "
                  "toolgate -E UTF8 --no-sync >%s/initdb.log 2>&1",
                  pg_fx.as_user, pg_fx.dir, pg_fx.dir) != 0)
        return 0;
    for (int attempt = 0; attempt < 5 && !pg_fx.started; attempt++) {
        unsigned r;
        gw_random_bytes(&r, sizeof r);
        int port = 20000 + (int)(r % 30000);
        if (pg_fx_run("cd / && timeout 60 %s " PG_FIXTURE_BIN "/pg_ctl -D %s/data -w -t 30 -l "
                      "%s/pg.log -o \"-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off\" "
                      "start >/dev/null 2>&1",
                      pg_fx.as_user, pg_fx.dir, pg_fx.dir, port, pg_fx.dir) == 0) {
            pg_fx.started = 1;
            snprintf(pg_fx.url, sizeof pg_fx.url,
                     "postgresql://toolgate@127.0.0.1:%d/postgres?connect_timeout=5", port);
        }
    }
    return 0;
}

static int pg_fixture_teardown(void **state)
{
    (void)state;
    if (pg_fx.started)
        pg_fx_run("cd / && timeout 60 %s " PG_FIXTURE_BIN "/pg_ctl -D %s/data -m immediate -t 30 "
                  "stop >/dev/null 2>&1",
                  pg_fx.as_user, pg_fx.dir);
    if (pg_fx.dir[0])
        fx_rmtree(pg_fx.dir);
    return 0;
}

static inline const char *pg_fixture_url(void)
{
    return pg_fx.started ? pg_fx.url : NULL;
}

#endif
