/*
 * Audit store on PostgreSQL: a real server started by the test on loopback in a temp dir
 * (initdb + pg_ctl from /usr/lib/postgresql/15/bin), as `nobody` when the test runs as root,
 * stopped at the end. Two instances append their own chains to one table; both verify,
 * queries answer across them, and tampering through SQL is caught.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "layers/audit/audit_fixtures.h"
#include "lib/log.h"
#include "lib/timeutil.h"

#define PG_BIN "/usr/lib/postgresql/15/bin"

struct pg_fixture {
    char dir[64];
    char url[160];
    char as_user[96]; /* "setpriv ... --" prefix when root, else empty */
    int started;
};

static struct pg_fixture PG;

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return rc == 0 ? 0 : -1;
}

static int pg_setup(void **state)
{
    if (access(PG_BIN "/initdb", X_OK) != 0 || access(PG_BIN "/pg_ctl", X_OK) != 0)
        return 0; /* tests skip with a message */
    fx_mkdtemp(PG.dir, sizeof PG.dir);
    if (geteuid() == 0) {
        /* PostgreSQL refuses to run as root: hand the directory to nobody. */
        struct passwd *pw = getpwnam("nobody");
        if (!pw || chown(PG.dir, pw->pw_uid, pw->pw_gid) != 0)
            return 0;
        snprintf(PG.as_user, sizeof PG.as_user, "setpriv --reuid=%u --regid=%u --clear-groups --",
                 (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
    }
    if (run("cd / && timeout 60 %s " PG_BIN "/initdb -D %s/data -A trust -U toolgate -E UTF8 "
            "--no-sync >%s/initdb.log 2>&1",
            PG.as_user, PG.dir, PG.dir) != 0) {
        fprintf(stderr, "initdb failed; see %s/initdb.log\n", PG.dir);
        return 0;
    }
    for (int attempt = 0; attempt < 5 && !PG.started; attempt++) {
        unsigned r;
        gw_random_bytes(&r, sizeof r);
        int port = 20000 + (int)(r % 30000);
        if (run("cd / && timeout 60 %s " PG_BIN "/pg_ctl -D %s/data -w -t 30 -l %s/pg.log "
                "-o \"-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off\" start "
                ">/dev/null 2>&1",
                PG.as_user, PG.dir, PG.dir, port, PG.dir) == 0) {
            PG.started = 1;
            snprintf(PG.url, sizeof PG.url,
                     "postgresql://toolgate@127.0.0.1:%d/postgres?connect_timeout=5", port);
        }
    }
    return 0;
}

static int pg_teardown(void **state)
{
    if (PG.started)
        run("cd / && timeout 60 %s " PG_BIN "/pg_ctl -D %s/data -m immediate -t 30 stop "
            ">/dev/null 2>&1",
            PG.as_user, PG.dir);
    if (PG.dir[0])
        fx_rmtree(PG.dir);
    return 0;
}

#define REQUIRE_PG()                                                                               \
    do {                                                                                           \
        if (!PG.started) {                                                                         \
            fprintf(stderr, "SKIP: no PostgreSQL server could be started from " PG_BIN "\n");      \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static void pg_exec(const char *sql)
{
    PGconn *c = PQconnectdb(PG.url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

static void write_chain(struct audit_config *ac, const char *instance, int n)
{
    free(ac->instance_id);
    ac->instance_id = strdup(instance);
    assert_int_equal(audit_writer_start(ac, NULL), 0);
    for (int i = 0; i < n; i++) {
        json_t *r = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kind", "decision", "subject",
                              i % 2 ? "alice" : "bob", "tool", "ehr.get_patient", "decision",
                              i % 4 ? "allow" : "deny", "tenant", "clinic-7");
        assert_int_equal(audit_submit(r), 0);
    }
    assert_int_equal(audit_flush(), 0);
    audit_stop();
}

static int verify_pg(const char *pub, const char *instance, char *problem, size_t len)
{
    char err[512];
    EVP_PKEY *key = audit_key_load_public(pub, err, sizeof err);
    assert_non_null(key);
    struct audit_verifier v;
    assert_int_equal(audit_verifier_init(&v, key, 0), 0);
    v.instance = instance;
    struct audit_store *st = audit_store_open(PG.url, 0, err, sizeof err);
    assert_non_null(st);
    int rc = audit_verifier_feed(&v, st);
    st->ops->close(st);
    if (rc == 0)
        rc = audit_verifier_finish(&v);
    snprintf(problem, len, "%s", v.problem);
    size_t n_inst = v.n_inst;
    audit_verifier_free(&v);
    EVP_PKEY_free(key);
    return rc == 0 ? (int)n_inst : -1;
}

static void test_pg_two_instances(void **state)
{
    REQUIRE_PG();
    char keydir[64], key[128], pub[160], problem[512];
    fx_mkdtemp(keydir, sizeof keydir);
    snprintf(key, sizeof key, "%s/shared.pem", keydir);
    snprintf(pub, sizeof pub, "%s.pub", key);
    char err[256];
    EVP_PKEY *k = audit_key_generate(key, err, sizeof err);
    assert_non_null(k);
    EVP_PKEY_free(k);
    struct audit_config *ac = make_test_config(keydir, "unused.db", 25, 1000, 4096);
    free(ac->store);
    ac->store = strdup(PG.url);
    ac->signing_key = strdup(key);
    write_chain(ac, "gw-a", 100);
    write_chain(ac, "gw-b", 60);
    write_chain(ac, "gw-a", 10); /* a restart continues gw-a's chain */

    /* Both chains verify; each starts at seq 1 of its own. */
    assert_int_equal(verify_pg(pub, NULL, problem, sizeof problem), 2);
    assert_int_equal(verify_pg(pub, "gw-b", problem, sizeof problem), 1);

    /* Answers come from the same table, across instances. */
    int rc;
    char *q[] = {"audit", "query", PG.url, "--user", "alice", "--format", "csv"};
    char *out = fx_capture_stdout(audit_cli_main, 7, q, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(fx_count_lines(out), 1 + 50 + 30 + 5);
    free(out);
    char *s[] = {"audit", "stats", PG.url, "--format", "json"};
    out = fx_capture_stdout(audit_cli_main, 5, s, &rc);
    assert_int_equal(rc, 0);
    json_t *st = json_loads(out, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(st, "total")), 170);
    json_decref(st);
    free(out);
    char *v[] = {"audit", "verify", PG.url, "--pubkey", pub};
    out = fx_capture_stdout(audit_cli_main, 5, v, &rc);
    assert_int_equal(rc, 0);
    free(out);

    /* Tampering in one chain is named with its instance; the other still verifies. */
    pg_exec("UPDATE audit_records SET record = replace(record, '\"bob\"', '\"eve\"'),"
            " subject = 'eve' WHERE instance = 'gw-b' AND seq = (SELECT min(seq) FROM"
            " audit_records WHERE instance = 'gw-b' AND kind = 'decision')");
    assert_int_equal(verify_pg(pub, NULL, problem, sizeof problem), -1);
    assert_non_null(strstr(problem, "hash"));
    assert_int_equal(verify_pg(pub, "gw-a", problem, sizeof problem), 1);
    pg_exec("DELETE FROM audit_records WHERE instance = 'gw-a' AND seq = 50");
    assert_int_equal(verify_pg(pub, "gw-a", problem, sizeof problem), -1);
    assert_non_null(strstr(problem, "missing"));

    audit_config_free(ac);
    fx_rmtree(keydir);
}

static void test_pg_unreachable_fails_start(void **state)
{
    REQUIRE_PG();
    char keydir[64];
    fx_mkdtemp(keydir, sizeof keydir);
    struct audit_config *ac = make_test_config(keydir, "unused.db", 25, 1000, 4096);
    free(ac->store);
    /* Port 1 on loopback: nothing listens; the start fails instead of running unaudited. */
    ac->store = strdup("postgresql://toolgate@127.0.0.1:1/postgres?connect_timeout=2");
    assert_true(audit_writer_start(ac, NULL) < 0);
    audit_config_free(ac);
    fx_rmtree(keydir);
}

int main(void)
{
    gw_log_setup(GW_LOG_ERROR + 1, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pg_two_instances),
        cmocka_unit_test(test_pg_unreachable_fails_start),
    };
    return cmocka_run_group_tests(tests, pg_setup, pg_teardown);
}
