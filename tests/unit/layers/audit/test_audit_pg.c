/*
 * Audit store on PostgreSQL: a real server started by the test on loopback in a temp dir
 * (initdb + pg_ctl from /usr/lib/postgresql/15/bin), as `nobody` when the test runs as root,
 * stopped at the end. Two instances append their own chains to one table; both verify,
 * queries answer across them, and tampering through SQL is caught: in the first format
 * (one text row per record) and in the compact one, whose records are packed (codec
 * version 2) and whose completions share their decision's columns.
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
#include "layers/audit/audit_cli.h"
#include "layers/audit/audit_gen.h"
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

static int verify_pg_url(const char *pub, const char *url, const char *instance, char *problem,
                         size_t len);

static int verify_pg(const char *pub, const char *instance, char *problem, size_t len)
{
    return verify_pg_url(pub, PG.url, instance, problem, len);
}

/* Verifies the store at url: the number of chains when intact, -1 with the problem. */
static int verify_pg_url(const char *pub, const char *url, const char *instance, char *problem,
                         size_t len)
{
    char err[512];
    EVP_PKEY *key = audit_key_load_public(pub, err, sizeof err);
    assert_non_null(key);
    struct audit_verifier v;
    assert_int_equal(audit_verifier_init(&v, key, 0), 0);
    v.instance = instance;
    struct audit_store *st = audit_store_open(url, 0, err, sizeof err);
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

/* The URL of database `name` on the test server. */
static void db_url(const char *name, char *out, size_t len)
{
    const char *slash = strrchr(PG.url, '/');
    const char *query = strchr(slash, '?');
    snprintf(out, len, "%.*s/%s%s", (int)(slash - PG.url), PG.url, name, query ? query : "");
}

/* One integer a query on database url gives. */
static long long db_int(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return v;
}

static void db_exec(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

/* What a command of `toolgate audit` prints, with its exit status in *rc. */
static char *cli(int *rc, const char *a0, const char *a1, const char *a2, const char *a3,
                 const char *a4, const char *a5)
{
    char *argv[8] = {"audit",    (char *)a0, (char *)a1, (char *)a2,
                     (char *)a3, (char *)a4, (char *)a5};
    int argc = 1;
    while (argc < 7 && argv[argc])
        argc++;
    return fx_capture_stdout(audit_cli_main, argc, argv, rc);
}

/* The same command over two stores prints the same bytes. */
static void same_answer(const char *a, const char *b, const char *cmd, const char *o1,
                        const char *v1, const char *o2, const char *v2)
{
    int rc1, rc2;
    char *x = cli(&rc1, cmd, a, o1, v1, o2, v2), *y = cli(&rc2, cmd, b, o1, v1, o2, v2);
    assert_int_equal(rc1, 0);
    assert_int_equal(rc2, 0);
    assert_true(strlen(x) > 10);
    if (strcmp(x, y) != 0)
        fail_msg("audit %s %s %s: the stores answer differently", cmd, o1 ? o1 : "", v1 ? v1 : "");
    free(x);
    free(y);
}

/*
 * Realistic calls (the generator, through the real writer) into a SQLite file, copied into a
 * compact PostgreSQL database by migrate: every record comes back byte for byte (export),
 * query and stats answer the same bytes, the copy verifies; the rows are in the compact
 * format (version 2 records, completions sharing their decision's columns). Then a writer
 * appends to the PostgreSQL store directly, and that verifies too.
 */
struct stop_ctx {
    int stop_after, seen;
};

static int stop_cb(const struct audit_row *r, void *arg)
{
    (void)r;
    struct stop_ctx *c = arg;
    return ++c->seen >= c->stop_after;
}

/*
 * A scan stopped by its callback (a query's --limit) is cancelled on the server, not drained
 * row by row; the connection then answers the next scans whole, and again after a stop.
 */
static void scan_stopped_then_whole(const char *url, int records)
{
    char err[256];
    struct audit_store *st = audit_store_open(url, 0, err, sizeof err);
    assert_non_null(st);
    for (int round = 0; round < 2; round++) {
        struct stop_ctx stop = {.stop_after = 3};
        assert_int_equal(st->ops->scan(st, NULL, stop_cb, &stop), 1);
        assert_int_equal(stop.seen, 3);
        struct audit_filter f = {.since_ns = 1};
        stop = (struct stop_ctx){.stop_after = 2};
        assert_int_equal(st->ops->scan(st, &f, stop_cb, &stop), 1);
        assert_int_equal(stop.seen, 2);
        struct stop_ctx all = {.stop_after = 1 << 30};
        assert_int_equal(st->ops->scan(st, NULL, stop_cb, &all), 0);
        assert_int_equal(all.seen, records);
    }
    st->ops->close(st);
}

static void test_pg_compact_round_trip(void **state)
{
    REQUIRE_PG();
    char dir[64], db[128], sqlite_url[160], key[128], pub[160], url[256], problem[512], err[512];
    fx_mkdtemp(dir, sizeof dir);
    snprintf(db, sizeof db, "%s/gen.db", dir);
    snprintf(sqlite_url, sizeof sqlite_url, "sqlite:%s", db);
    snprintf(key, sizeof key, "%s/k.pem", dir);
    snprintf(pub, sizeof pub, "%s.pub", key);
    EVP_PKEY *k = audit_key_generate(key, err, sizeof err);
    assert_non_null(k);
    EVP_PKEY_free(k);
    struct audit_gen_opts o = {.store = sqlite_url, .key = key, .calls = 1500, .days = 3};
    assert_int_equal(audit_gen_run(&o, err, sizeof err), 0);
    pg_exec("CREATE DATABASE compact_rt");
    db_url("compact_rt", url, sizeof url);
    int rc;
    char *out = cli(&rc, "migrate", db, url, NULL, NULL, NULL);
    assert_int_equal(rc, 0);
    free(out);
    /* Migrate writes only into a database without an audit store. */
    out = cli(&rc, "migrate", db, url, NULL, NULL, NULL);
    assert_int_equal(rc, 2);
    free(out);

    assert_int_equal(db_int(url, "SELECT count(*) FROM audit_meta WHERE value = 'compact-1'"), 1);
    assert_int_equal(db_int(url, "SELECT count(*) FROM audit_log WHERE get_byte(rec, 0) <> 2"), 0);
    long long completions = db_int(url, "SELECT count(*) FROM audit_log WHERE kind = 2");
    assert_int_equal(completions, 1500);
    assert_true(db_int(url, "SELECT count(*) FROM audit_log WHERE kind = 2 AND subj IS NULL AND"
                            " get_byte(req, 0) = 1") > completions * 9 / 10);
    assert_int_equal(db_int(url, "SELECT count(*) FROM audit_log WHERE kind = 1 AND subj IS NULL"),
                     0);
    assert_true(db_int(url, "SELECT count(*) FROM audit_dicts") == 1);

    same_answer(sqlite_url, url, "export", "--format", "jsonl", NULL, NULL);
    same_answer(sqlite_url, url, "export", "--format", "ocsf", "--since", "2d");
    same_answer(sqlite_url, url, "query", "--format", "csv", NULL, NULL);
    same_answer(sqlite_url, url, "query", "--tool", "ehr.get_*", "--format", "json");
    same_answer(sqlite_url, url, "query", "--user", "user00001@clinic-1.example", NULL, NULL);
    same_answer(sqlite_url, url, "query", "--tenant", "clinic-3", "--decision", "deny");
    same_answer(sqlite_url, url, "stats", "--format", "json", NULL, NULL);
    same_answer(sqlite_url, url, "stats", "--since", "1d", NULL, NULL);
    same_answer(sqlite_url, url, "stats", "--until", "1d", "--format", "json");
    /* A filter over every kind keeps the completions that share their decision's columns. */
    same_answer(sqlite_url, url, "export", "--format", "jsonl", "--user",
                "user00001@clinic-1.example");
    out = cli(&rc, "verify", url, "--pubkey", pub, NULL, NULL);
    assert_int_equal(rc, 0);
    free(out);
    scan_stopped_then_whole(url, (int)db_int(url, "SELECT count(*) FROM audit_log"));

    /* The writer appends to it (new names, the dictionary of the store) and it verifies. */
    struct audit_gen_opts more = {.store = url, .key = key, .calls = 200, .seed = 7};
    assert_int_equal(audit_gen_run(&more, err, sizeof err), 0);
    struct audit_config *ac = make_test_config(dir, "unused.db", 25, 1000, 4096);
    free(ac->store);
    ac->store = strdup(url);
    ac->signing_key = strdup(key);
    ac->store_format = AUDIT_FORMAT_COMPACT;
    write_chain(ac, "gw-other", 40);
    assert_int_equal(verify_pg_url(pub, url, NULL, problem, sizeof problem), 2);
    out = cli(&rc, "query", url, "--user", "alice", "--format", "csv");
    assert_int_equal(rc, 0);
    assert_int_equal(fx_count_lines(out), 1 + 20);
    free(out);
    audit_config_free(ac);
    fx_rmtree(dir);
}

/* Copies database `from` into a new one and returns its URL in out. */
static void db_copy(const char *from, const char *name, char *out, size_t len)
{
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s TEMPLATE %s", name, from);
    pg_exec(sql);
    db_url(name, out, len);
}

/*
 * Tampering with compact rows through SQL, each on a fresh copy of one store: verify refuses
 * every one and says what it found.
 */
static void test_pg_compact_tampering(void **state)
{
    REQUIRE_PG();
    char dir[64], key[128], pub[160], url[256], copy[256], problem[512], err[512];
    fx_mkdtemp(dir, sizeof dir);
    snprintf(key, sizeof key, "%s/k.pem", dir);
    snprintf(pub, sizeof pub, "%s.pub", key);
    EVP_PKEY *k = audit_key_generate(key, err, sizeof err);
    assert_non_null(k);
    EVP_PKEY_free(k);
    pg_exec("CREATE DATABASE compact_base");
    db_url("compact_base", url, sizeof url);
    struct audit_gen_opts o = {.store = url, .key = key, .calls = 1200, .days = 2};
    assert_int_equal(audit_gen_run(&o, err, sizeof err), 0);
    assert_int_equal(verify_pg_url(pub, url, NULL, problem, sizeof problem), 1);
    static const struct {
        const char *sql, *finds;
    } cases[] = {
        /* Another decision's packed record in place of one. */
        {"UPDATE audit_log SET rec = (SELECT rec FROM audit_log WHERE kind = 1 ORDER BY id"
         " OFFSET 700 LIMIT 1) WHERE id = (SELECT id FROM audit_log WHERE kind = 1 ORDER BY id"
         " OFFSET 600 LIMIT 1)",
         NULL},
        /* A decision's user column set to another user. */
        {"UPDATE audit_log SET subj = (SELECT subj FROM audit_log WHERE kind = 1 AND subj > 14"
         " ORDER BY subj DESC LIMIT 1) WHERE id = (SELECT id FROM audit_log WHERE kind = 1 AND"
         " subj > 14 ORDER BY subj LIMIT 1 OFFSET 3)",
         NULL},
        /* A completion made to share the columns of another decision. */
        {"UPDATE audit_log SET req = '\\x0103' WHERE id = (SELECT id FROM audit_log WHERE"
         " kind = 2 AND get_byte(req, 0) = 1 ORDER BY id OFFSET 500 LIMIT 1)",
         NULL},
        /* Its shared columns pointed past the start of the chain. */
        {"UPDATE audit_log SET req = '\\x01ffffff7f' WHERE id = (SELECT id FROM audit_log WHERE"
         " kind = 2 AND get_byte(req, 0) = 1 ORDER BY id OFFSET 10 LIMIT 1)",
         "missing or damaged"},
        /* A name in the dictionary renamed: every row of that user reads another name. */
        {"UPDATE audit_names SET name = 'eve@evil.example' WHERE id = (SELECT max(subj) FROM"
         " audit_log)",
         NULL},
        /* The compression dictionary edited where records refer to it (its last bytes). */
        {"UPDATE audit_dicts SET bytes = overlay(bytes placing decode(repeat('20', 4000), 'hex')"
         " from length(bytes) - 3999 for 4000)",
         NULL},
        /* A checkpoint's request column given a value. */
        {"UPDATE audit_log SET req = '\\x00616263' WHERE kind = 3 AND id = (SELECT max(id) FROM"
         " audit_log WHERE kind = 3)",
         NULL},
        /* A row deleted, and one moved in time. */
        {"DELETE FROM audit_log WHERE id = (SELECT id FROM audit_log ORDER BY id OFFSET 900"
         " LIMIT 1)",
         "missing"},
        {"UPDATE audit_log SET t = t + 1 WHERE id = (SELECT id FROM audit_log WHERE kind = 2"
         " ORDER BY id OFFSET 300 LIMIT 1)",
         NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "compact_t%zu", i);
        db_copy("compact_base", name, copy, sizeof copy);
        db_exec(copy, cases[i].sql);
        problem[0] = '\0';
        if (verify_pg_url(pub, copy, NULL, problem, sizeof problem) != -1)
            fail_msg("tampering %zu was not caught: %s", i, cases[i].sql);
        if (cases[i].finds && !strstr(problem, cases[i].finds))
            fail_msg("tampering %zu: \"%s\" does not say \"%s\"", i, problem, cases[i].finds);
    }
    fx_rmtree(dir);
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
        cmocka_unit_test(test_pg_compact_round_trip),
        cmocka_unit_test(test_pg_compact_tampering),
        cmocka_unit_test(test_pg_unreachable_fails_start),
    };
    return cmocka_run_group_tests(tests, pg_setup, pg_teardown);
}
