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
#include <time.h>

#include <cmocka.h>

#include "layers/audit/audit_fixtures.h"
#include "layers/audit/audit_cli.h"
#include "layers/audit/audit_gen.h"
#include "lib/digest.h"
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

/* The store the counter tests copy: generated calls over three days, and a second instance. */
static char rollup_dir[64], rollup_key[128], rollup_pub[160], rollup_url[256];

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
    if (rollup_dir[0])
        fx_rmtree(rollup_dir);
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

/* A new checkpoint key in dir: key is its file, pub the public key beside it. */
static void new_key(const char *dir, const char *name, char *key, size_t klen, char *pub,
                    size_t plen)
{
    char err[256];
    snprintf(key, klen, "%s/%s", dir, name);
    snprintf(pub, plen, "%s.pub", key);
    EVP_PKEY *k = audit_key_generate(key, err, sizeof err);
    if (!k)
        fail_msg("generating %s: %s", key, err);
    EVP_PKEY_free(k);
}

/* A writer's configuration for the compact store at url, signing with key. */
static struct audit_config *pg_writer_config(const char *dir, const char *url, const char *key,
                                             uint64_t every, uint64_t interval_ms, uint64_t queue)
{
    struct audit_config *ac = make_test_config(dir, "unused.db", every, interval_ms, queue);
    free(ac->store);
    ac->store = strdup(url);
    ac->signing_key = strdup(key);
    ac->store_format = AUDIT_FORMAT_COMPACT;
    return ac;
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
    new_key(keydir, "shared.pem", key, sizeof key, pub, sizeof pub);
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

/* The records a scan gives, one line each, with their prev_hash as it came. */
static int collect_cb(const struct audit_row *r, void *arg)
{
    assert_null(r->problem);
    struct gw_buf *b = arg;
    assert_int_equal(gw_buf_append(b, r->record, r->record_len), 0);
    assert_int_equal(gw_buf_append(b, "\n", 1), 0);
    return 0;
}

/*
 * A filtered scan that may leave out the chain links gives the same records but for their
 * prev_hash, which is 64 zeros; a whole scan keeps it (its rows follow each other).
 */
static void no_chain_scan_same_but_links(const char *url)
{
    char err[256];
    struct audit_store *st = audit_store_open(url, 0, err, sizeof err);
    assert_non_null(st);
    struct audit_filter f = {.kind = "decision", .subject = "user00001@clinic-1.example"};
    struct gw_buf with = {0}, without = {0};
    assert_int_equal(st->ops->scan(st, &f, collect_cb, &with), 0);
    f.flags = AUDIT_SCAN_NO_CHAIN;
    assert_int_equal(st->ops->scan(st, &f, collect_cb, &without), 0);
    assert_true(with.len > 0);
    assert_int_equal(with.len, without.len);
    const char *key = "\"prev_hash\":\"";
    size_t links = 0;
    for (const char *a = with.data, *b = without.data; (a = strstr(a, key)) != NULL;) {
        b = strstr(b, key);
        assert_non_null(b);
        a += strlen(key);
        b += strlen(key);
        assert_int_equal(
            strncmp(b, "0000000000000000000000000000000000000000000000000000000000000000\"", 65),
            0);
        assert_int_not_equal(strncmp(a, b, 64), 0);
        memcpy((char *)b, a, 64); /* the rest must be the same */
        links++;
    }
    assert_true(links > 0);
    assert_memory_equal(with.data, without.data, with.len);
    gw_buf_free(&with);
    gw_buf_free(&without);
    st->ops->close(st);
}

static void test_pg_compact_round_trip(void **state)
{
    REQUIRE_PG();
    char dir[64], db[128], sqlite_url[160], key[128], pub[160], url[256], problem[512], err[512];
    fx_mkdtemp(dir, sizeof dir);
    snprintf(db, sizeof db, "%s/gen.db", dir);
    snprintf(sqlite_url, sizeof sqlite_url, "sqlite:%s", db);
    new_key(dir, "k.pem", key, sizeof key, pub, sizeof pub);
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
    no_chain_scan_same_but_links(url);

    /* The writer appends to it (new names, the dictionary of the store) and it verifies. */
    struct audit_gen_opts more = {.store = url, .key = key, .calls = 200, .seed = 7};
    assert_int_equal(audit_gen_run(&more, err, sizeof err), 0);
    struct audit_config *ac = pg_writer_config(dir, url, key, 25, 1000, 4096);
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
    new_key(dir, "k.pem", key, sizeof key, pub, sizeof pub);
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

/* ---- The day counters of stats ---- */

#define DAY_NS (86400ll * 1000000000ll)

/* Counts by dimension and name, as "dim name" -> n in a JSON object. */
static void put_count(json_t *o, int dim, const char *name, uint64_t n)
{
    char key[600];
    snprintf(key, sizeof key, "%d %s", dim, name ? name : "-");
    json_t *v = json_object_get(o, key);
    json_object_set_new(o, key, json_integer((v ? json_integer_value(v) : 0) + (json_int_t)n));
}

static void tally_put(void *arg, int dim, const char *name, uint64_t n)
{
    put_count(arg, dim, name, n);
}

static int scan_put(const struct audit_row *r, void *arg)
{
    put_count(arg, 0, r->decision, 1);
    put_count(arg, 1, r->layer, 1);
    put_count(arg, 2, r->tool, 1);
    put_count(arg, 3, r->subject, 1);
    return 0;
}

enum count_by { BY_COUNTERS, BY_TALLIED_ROWS, BY_SCAN };

/* What the store counts for the decisions of [since, until) (0: open), counted `how`. */
static char *counts_of(const char *url, int64_t since, int64_t until, enum count_by how)
{
    char err[256];
    struct audit_store *st = audit_store_open(url, 0, err, sizeof err);
    assert_non_null(st);
    assert_non_null(st->ops->tally);
    json_t *o = json_object();
    struct audit_filter f = {.kind = "decision",
                             .since_ns = since,
                             .until_ns = until,
                             .flags = AUDIT_SCAN_NO_RECORD | AUDIT_SCAN_ANY_ORDER |
                                      (how == BY_TALLIED_ROWS ? AUDIT_SCAN_ROWS_ONLY : 0)};
    int rc =
        how == BY_SCAN ? st->ops->scan(st, &f, scan_put, o) : st->ops->tally(st, &f, tally_put, o);
    if (rc != 0)
        fail_msg("counting: %s", st->err);
    st->ops->close(st);
    char *text = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(o);
    return text;
}

/* `audit stats URL [--since S] [--until U] --format json [--from-rows]`, its output. */
static char *stats_json(const char *url, const char *since, const char *until, int from_rows)
{
    char *argv[10] = {"audit", "stats", (char *)url, "--format", "json"};
    int argc = 5, rc;
    if (since) {
        argv[argc++] = "--since";
        argv[argc++] = (char *)since;
    }
    if (until) {
        argv[argc++] = "--until";
        argv[argc++] = (char *)until;
    }
    if (from_rows)
        argv[argc++] = "--from-rows";
    char *out = fx_capture_stdout(audit_cli_main, argc, argv, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(out);
    return out;
}

/* The day counters answer what the rows answer, byte for byte: stats itself, and the counts. */
static void expect_counters_agree(const char *url, const char *since, const char *until)
{
    char *a = stats_json(url, since, until, 0), *b = stats_json(url, since, until, 1);
    if (strcmp(a, b) != 0)
        fail_msg("stats --since %s --until %s: counters say %s, rows say %s", since ? since : "-",
                 until ? until : "-", a, b);
    free(a);
    free(b);
}

static void expect_counts_agree(const char *url, int64_t since, int64_t until)
{
    char *a = counts_of(url, since, until, BY_COUNTERS);
    char *b = counts_of(url, since, until, BY_TALLIED_ROWS);
    char *c = counts_of(url, since, until, BY_SCAN);
    if (strcmp(a, b) != 0 || strcmp(b, c) != 0)
        fail_msg("[%lld, %lld): counters say %s, the rows counted on the server %s, a scan %s",
                 (long long)since, (long long)until, a, b, c);
    free(a);
    free(b);
    free(c);
}

static void rfc3339_of(int64_t ns, char *out, size_t len)
{
    time_t secs = (time_t)(ns / 1000000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* `audit verify URL --pubkey PUB`: its exit status, what it printed on stdout in *out. */
static int verify_cli(const char *url, const char *pub, char **out)
{
    int rc;
    char *o = cli(&rc, "verify", url, "--pubkey", pub, NULL, NULL);
    if (out)
        *out = o;
    else
        free(o);
    return rc;
}

/* What the store's comparison of its counters with its records gives (problem: its sentence). */
static int counters_problem(const char *url, char *problem, size_t len)
{
    char err[256];
    struct audit_store *st = audit_store_open(url, 0, err, sizeof err);
    assert_non_null(st);
    assert_non_null(st->ops->check_counters);
    int rc = st->ops->check_counters(st, problem, len);
    if (rc < 0)
        fail_msg("checking the counters: %s", st->err);
    st->ops->close(st);
    return rc;
}

static void rollup_base(void)
{
    char err[512];
    if (rollup_url[0])
        return;
    fx_mkdtemp(rollup_dir, sizeof rollup_dir);
    new_key(rollup_dir, "k.pem", rollup_key, sizeof rollup_key, rollup_pub, sizeof rollup_pub);
    pg_exec("CREATE DATABASE rollup_base");
    db_url("rollup_base", rollup_url, sizeof rollup_url);
    struct audit_gen_opts o = {
        .store = rollup_url, .key = rollup_key, .calls = 1500, .days = 3, .users = 40};
    assert_int_equal(audit_gen_run(&o, err, sizeof err), 0);
    struct audit_config *ac = pg_writer_config(rollup_dir, rollup_url, rollup_key, 25, 1000, 4096);
    write_chain(ac, "gw-other", 40);
    audit_config_free(ac);
}

/*
 * The counters the writer keeps (in the transaction of the records, per instance) answer as the
 * rows do: ranges on and off day boundaries, open ends, before and past the data; the counts
 * from the counters, from the rows counted on the server and from a scan are the same.
 */
static void test_pg_rollup_matches_rows(void **state)
{
    REQUIRE_PG();
    rollup_base();
    const char *url = rollup_url;
    char since[40], until[40];
    assert_int_equal(db_int(url, "SELECT value::bigint FROM audit_meta WHERE key = 'rollup_from'"),
                     0);
    long long decisions = db_int(url, "SELECT count(*) FROM audit_log WHERE kind = 1");
    assert_int_equal(decisions, 1540);
    for (int d = 0; d < 4; d++) {
        char sql[120];
        snprintf(sql, sizeof sql, "SELECT sum(n) FROM audit_rollup WHERE dim = %d", d);
        assert_int_equal(db_int(url, sql), decisions);
    }
    assert_int_equal(db_int(url, "SELECT count(DISTINCT inst) FROM audit_rollup"), 2);
    assert_int_equal(db_int(url, "SELECT count(*) FROM audit_rollup_heads"), 2);
    assert_int_equal(verify_cli(url, rollup_pub, NULL), 0);
    expect_counters_agree(url, NULL, NULL);
    expect_counters_agree(url, "30d", NULL);
    expect_counters_agree(url, "1d", NULL);
    expect_counters_agree(url, "2d", "1d");
    expect_counts_agree(url, 0, 0);
    int64_t lo = db_int(url, "SELECT min(t) FROM audit_log WHERE kind = 1");
    int64_t hi = db_int(url, "SELECT max(t) FROM audit_log WHERE kind = 1");
    const int64_t D = DAY_NS;
    /* Day boundaries exactly, a second either side, an hour into a day, past the ends. */
    int64_t at[] = {(lo / D + 1) * D,
                    (lo / D + 1) * D + 1000000000,
                    (lo / D + 1) * D - 1000000000,
                    (lo / D + 2) * D + 3600ll * 1000000000,
                    lo - D,
                    hi + D};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        expect_counts_agree(url, at[i], 0);
        expect_counts_agree(url, 0, at[i]);
        for (size_t j = 0; j < sizeof at / sizeof at[0]; j++) {
            if (at[i] >= at[j])
                continue;
            expect_counts_agree(url, at[i], at[j]);
            rfc3339_of(at[i], since, sizeof since);
            rfc3339_of(at[j], until, sizeof until);
            expect_counters_agree(url, since, until);
        }
    }
}

/*
 * The counters are derived data: edited, stats from them is wrong and verify says so while the
 * chain is intact, and --from-rows is not; rows appended without them (an earlier version
 * writing) make stats count the rows; a store without counters (an earlier version's) is counted
 * from its rows, a reader does not add them, and a writer starts them from the next day.
 */
static void test_pg_rollup_is_derived(void **state)
{
    REQUIRE_PG();
    rollup_base();
    char copy[256], err[512], *said = NULL;
    db_copy("rollup_base", "rollup_derived", copy, sizeof copy);
    char *rows = stats_json(copy, NULL, NULL, 1);
    db_exec(copy, "UPDATE audit_rollup SET n = n + 1000 WHERE dim = 0");
    char *edited = stats_json(copy, NULL, NULL, 0), *still = stats_json(copy, NULL, NULL, 1);
    assert_string_not_equal(edited, rows);
    assert_string_equal(still, rows);
    free(edited);
    free(still);
    assert_int_equal(verify_cli(copy, rollup_pub, &said), 1);
    assert_non_null(strstr(said, "audit log intact, its stats counters NOT"));
    free(said);

    /* A row the counters did not count (its instance's last row is not the one they know). */
    db_exec(copy, "UPDATE audit_rollup_heads SET last_id = last_id - 1 WHERE inst = (SELECT"
                  " min(inst) FROM audit_rollup_heads)");
    char *fallback = stats_json(copy, NULL, NULL, 0);
    assert_string_equal(fallback, rows);
    free(fallback);
    /* An instance they do not know of at all. */
    db_exec(copy, "UPDATE audit_rollup_heads SET last_id = last_id + 1 WHERE inst = (SELECT"
                  " min(inst) FROM audit_rollup_heads);"
                  " DELETE FROM audit_rollup_heads WHERE inst = (SELECT max(inst) FROM"
                  " audit_rollup_heads)");
    fallback = stats_json(copy, NULL, NULL, 0);
    assert_string_equal(fallback, rows);
    free(fallback);

    /* Without counters at all (a store of an earlier version): the rows, and a reader adds
     * nothing; then a writer starts them from the day after the last decision. */
    db_exec(copy, "DROP TABLE audit_rollup; DROP TABLE audit_rollup_heads;"
                  " DELETE FROM audit_meta WHERE key = 'rollup_from'");
    char *old = stats_json(copy, NULL, NULL, 0);
    assert_string_equal(old, rows);
    free(old);
    free(rows);
    expect_counters_agree(copy, "2d", NULL);
    assert_int_equal(verify_cli(copy, rollup_pub, NULL), 0);
    assert_int_equal(
        db_int(copy, "SELECT count(*) FROM pg_class WHERE relname LIKE 'audit_rollup%'"), 0);
    long long last = db_int(copy, "SELECT max(t) FROM audit_log WHERE kind = 1");
    struct audit_gen_opts o = {
        .store = copy, .key = rollup_key, .calls = 50, .users = 40, .days = 1, .seed = 3};
    assert_int_equal(audit_gen_run(&o, err, sizeof err), 0);
    long long from = db_int(copy, "SELECT value::bigint FROM audit_meta WHERE key = 'rollup_from'");
    assert_int_equal(from, (last / DAY_NS + 1) * DAY_NS);
    assert_int_equal(db_int(copy, "SELECT count(*) FROM audit_rollup_heads"), 2);
    expect_counters_agree(copy, NULL, NULL);
    expect_counters_agree(copy, "30d", NULL);
    expect_counts_agree(copy, 0, 0);
    expect_counts_agree(copy, from - DAY_NS, from + DAY_NS);
    assert_int_equal(verify_cli(copy, rollup_pub, NULL), 0);
    /* The writer, opened again, keeps them where they are. */
    assert_int_equal(audit_gen_run(&o, err, sizeof err), 0);
    assert_int_equal(db_int(copy, "SELECT value::bigint FROM audit_meta WHERE key = 'rollup_from'"),
                     from);
    assert_int_equal(verify_cli(copy, rollup_pub, NULL), 0);
    /* Counters said complete from a day before they started: the days without them are found. */
    char sql[200];
    snprintf(sql, sizeof sql, "UPDATE audit_meta SET value = '%lld' WHERE key = 'rollup_from'",
             from - DAY_NS);
    db_exec(copy, sql);
    assert_int_equal(verify_cli(copy, rollup_pub, NULL), 1);
    char problem[400];
    assert_int_equal(counters_problem(copy, problem, sizeof problem), 1);
    assert_non_null(strstr(problem, "stats counter"));
    /* A decision's column edited: verify catches it in the chain. */
    snprintf(sql, sizeof sql, "UPDATE audit_meta SET value = '%lld' WHERE key = 'rollup_from'",
             from);
    db_exec(copy, sql);
    assert_int_equal(verify_cli(copy, rollup_pub, NULL), 0);
    db_exec(copy, "UPDATE audit_log SET decision = 7 WHERE id = (SELECT id FROM audit_log"
                  " WHERE kind = 1 AND decision <> 7 ORDER BY id LIMIT 1 OFFSET 30)");
    assert_int_equal(verify_cli(copy, rollup_pub, NULL), 1);
}

/* Every kind of edit to the counters is found by `audit verify` (the records are intact). */
static void test_pg_rollup_edits_found(void **state)
{
    REQUIRE_PG();
    rollup_base();
    static const struct {
        const char *sql, *finds;
    } edits[] = {
        {"UPDATE audit_rollup SET n = n + 1 WHERE (day, inst, dim, name) = (SELECT day, inst,"
         " dim, name FROM audit_rollup ORDER BY day, inst, dim, name LIMIT 1 OFFSET 40)",
         "does not match the records"},
        {"UPDATE audit_rollup SET n = 0 WHERE (day, inst, dim, name) = (SELECT day, inst,"
         " dim, name FROM audit_rollup WHERE dim = 2 ORDER BY day, name LIMIT 1)",
         "does not match the records"},
        {"DELETE FROM audit_rollup WHERE day = (SELECT max(day) FROM audit_rollup) AND dim = 3",
         "does not keep (deleted)"},
        {"DELETE FROM audit_rollup WHERE (day, inst, dim, name) = (SELECT day, inst, dim, name"
         " FROM audit_rollup ORDER BY day DESC, n LIMIT 1)",
         "does not keep (deleted)"},
        {"INSERT INTO audit_rollup SELECT 5, inst, 2, 3, 1 FROM audit_rollup_heads LIMIT 1",
         "days without those records"},
        {"INSERT INTO audit_rollup SELECT (SELECT max(day) FROM audit_rollup) + 1, inst, 0, 2, 1"
         " FROM audit_rollup_heads LIMIT 1",
         "days without those records"},
        {"INSERT INTO audit_rollup SELECT day, inst, dim, name + 100000, n FROM audit_rollup"
         " ORDER BY day LIMIT 1",
         "does not match the records"},
        {"INSERT INTO audit_rollup SELECT day, inst, 9, name, n FROM audit_rollup"
         " ORDER BY day LIMIT 1",
         "does not match the records"},
        /* One user's counts moved to another's: the totals stay, the names do not. */
        {"WITH x AS (DELETE FROM audit_rollup WHERE (day, inst, dim, name) = (SELECT day, inst,"
         " dim, name FROM audit_rollup WHERE dim = 3 ORDER BY day, inst, name LIMIT 1)"
         " RETURNING day, inst, n) UPDATE audit_rollup r SET n = r.n + x.n FROM x WHERE"
         " r.day = x.day AND r.inst = x.inst AND r.dim = 3 AND r.name = (SELECT max(name) FROM"
         " audit_rollup WHERE dim = 3 AND day = x.day AND inst = x.inst)",
         NULL},
        /* An instance's counters given to the other instance: those of the last day on which
         * the first one has some that the other has not (the generated history ends now, so
         * just after midnight the store's last day may hold only counters both have). */
        {"UPDATE audit_rollup SET inst = (SELECT max(inst) FROM audit_rollup_heads) WHERE"
         " inst = (SELECT min(inst) FROM audit_rollup_heads) AND day = (SELECT max(r.day) FROM"
         " audit_rollup r WHERE r.inst = (SELECT min(inst) FROM audit_rollup_heads) AND NOT"
         " EXISTS (SELECT 1 FROM audit_rollup q WHERE q.day = r.day AND q.dim = r.dim AND"
         " q.name = r.name AND q.inst <> r.inst)) AND NOT EXISTS (SELECT 1 FROM audit_rollup o"
         " WHERE o.day = audit_rollup.day AND o.dim = audit_rollup.dim AND o.name ="
         " audit_rollup.name AND o.inst <> audit_rollup.inst)",
         NULL},
    };
    char copy[256];
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char name[32], *said = NULL;
        snprintf(name, sizeof name, "rollup_e%zu", i);
        db_copy("rollup_base", name, copy, sizeof copy);
        assert_int_equal(verify_cli(copy, rollup_pub, NULL), 0);
        db_exec(copy, edits[i].sql);
        if (verify_cli(copy, rollup_pub, &said) != 1 || !strstr(said, "its stats counters NOT"))
            fail_msg("not found by verify: %s", edits[i].sql);
        free(said);
        char problem[400] = "";
        assert_int_equal(counters_problem(copy, problem, sizeof problem), 1);
        if (edits[i].finds && !strstr(problem, edits[i].finds))
            fail_msg("edit %zu: \"%s\" does not say \"%s\"", i, problem, edits[i].finds);
    }
}

/* A decision record with `bytes` (even) of arguments that do not compress: random bytes' hex. */
static json_t *bulky_decision(int i, size_t bytes)
{
    unsigned char *raw = malloc(bytes / 2);
    char *hex = malloc(bytes + 1);
    assert_non_null(raw);
    assert_non_null(hex);
    gw_random_bytes(raw, bytes / 2);
    gw_hex(raw, bytes / 2, hex);
    free(raw);
    json_t *r = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s}}", "kind", "decision", "subject",
                          i % 2 ? "alice" : "bob", "tool", "ehr.get_patient", "decision", "allow",
                          "tenant", "clinic-7", "arguments", "note", hex);
    free(hex);
    return r;
}

/*
 * The rows of a commit go to the server as one COPY, sent early once they pass 4 MB: a held
 * batch of 3,000 records of 6,000 hex digits (about 9 MB compressed) lands whole in one commit
 * and verifies. A commit whose COPY the server refuses (a row already holds one of its ids)
 * fails: none of its rows are kept, the writer reports it, and the chain before it verifies.
 */
static void test_pg_copy_batches(void **state)
{
    REQUIRE_PG();
    char keydir[64], key[128], pub[160], problem[512], url[256];
    fx_mkdtemp(keydir, sizeof keydir);
    new_key(keydir, "k.pem", key, sizeof key, pub, sizeof pub);
    pg_exec("CREATE DATABASE copy_batches");
    db_url("copy_batches", url, sizeof url);
    struct audit_config *ac = pg_writer_config(keydir, url, key, 0, 600000, 8192);
    free(ac->instance_id);
    ac->instance_id = strdup("gw-copy");
    assert_int_equal(audit_writer_start(ac, NULL), 0);
    audit_writer_hold(1);
    for (int i = 0; i < 3000; i++)
        assert_int_equal(audit_submit(bulky_decision(i, 6000)), 0);
    audit_writer_hold(0);
    assert_int_equal(audit_flush(), 0);
    struct audit_writer_stats ws;
    audit_writer_stats(&ws);
    assert_true(ws.committed >= 3000);
    audit_stop();
    assert_true(db_int(url, "SELECT sum(length(rec)) FROM audit_log") > 8 * 1000 * 1000);
    assert_int_equal(db_int(url, "SELECT count(*) FROM audit_log WHERE kind = 1"), 3000);
    assert_int_equal(verify_pg_url(pub, url, NULL, problem, sizeof problem), 1);
    long long before = db_int(url, "SELECT count(*) FROM audit_log");

    /*
     * The server now refuses new decisions (a constraint the rows already there are not held
     * to): a restart commits its start record and that one's checkpoint, then the calls'
     * COPY fails, and all of their commit with it.
     */
    db_exec(url, "ALTER TABLE audit_log ADD CONSTRAINT no_decisions CHECK (kind <> 1) NOT VALID");
    assert_int_equal(audit_writer_start(ac, NULL), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(audit_submit(bulky_decision(i, 100)), 0);
    assert_int_equal(audit_flush(), -EIO);
    audit_writer_stats(&ws);
    assert_true(ws.failed);
    audit_stop();
    assert_int_equal(db_int(url, "SELECT count(*) FROM audit_log"), before + 2);
    assert_int_equal(db_int(url, "SELECT count(*) FROM audit_log WHERE kind = 1"), 3000);
    db_exec(url, "ALTER TABLE audit_log DROP CONSTRAINT no_decisions");
    assert_int_equal(verify_pg_url(pub, url, NULL, problem, sizeof problem), 1);

    audit_config_free(ac);
    fx_rmtree(keydir);
}

/* url with its user replaced by `user`. */
static void url_as(const char *url, const char *user, char *out, size_t len)
{
    const char *at = strchr(url, '@'), *scheme = strstr(url, "://");
    assert_non_null(at);
    assert_non_null(scheme);
    snprintf(out, len, "%.*s%s%s", (int)(scheme + 3 - url), url, user, at);
}

/*
 * A writer whose role may not create anything in the schema: on a store an owner created, the
 * privileges docs/audit.md lists are enough to append, keep the day counters current and
 * restart them; on an empty database it fails to start, saying the role lacks a privilege.
 */
static void test_pg_least_privilege_writer(void **state)
{
    REQUIRE_PG();
    char keydir[64], key[128], pub[160], problem[512], url[256], as_writer[256];
    fx_mkdtemp(keydir, sizeof keydir);
    new_key(keydir, "k.pem", key, sizeof key, pub, sizeof pub);
    pg_exec("CREATE DATABASE least_priv");
    pg_exec("CREATE DATABASE least_priv_empty");
    pg_exec("CREATE ROLE audit_appender LOGIN");
    db_url("least_priv", url, sizeof url);
    struct audit_config *ac = pg_writer_config(keydir, url, key, 25, 1000, 4096);
    write_chain(ac, "gw-owner", 30); /* the owner creates the store */
    db_exec(url, "GRANT SELECT, INSERT ON audit_log, audit_names, audit_dicts TO audit_appender;"
                 "GRANT SELECT, INSERT, UPDATE ON audit_meta TO audit_appender;"
                 "GRANT SELECT, INSERT, UPDATE, DELETE ON audit_rollup, audit_rollup_heads"
                 " TO audit_appender;"
                 "GRANT USAGE ON SEQUENCE audit_names_id TO audit_appender");
    assert_int_equal(db_int(url, "SELECT has_schema_privilege('audit_appender', 'public',"
                                 " 'CREATE')::int"),
                     0);
    url_as(url, "audit_appender", as_writer, sizeof as_writer);
    free(ac->store);
    ac->store = strdup(as_writer);
    write_chain(ac, "gw-appender", 40); /* new names, its own counters */
    write_chain(ac, "gw-appender", 10); /* a restart */
    assert_int_equal(db_int(url, "SELECT count(*) FROM audit_rollup_heads h WHERE h.last_id ="
                                 " (SELECT max(id) FROM audit_log WHERE id >> 40 = h.inst)"),
                     2);
    assert_int_equal(counters_problem(url, problem, sizeof problem), 0);
    assert_int_equal(verify_pg_url(pub, url, NULL, problem, sizeof problem), 2);

    /* Counters stale (rows an older writer appended): the appender restarts them. */
    db_exec(url, "UPDATE audit_rollup_heads SET last_id = last_id - 1");
    assert_int_equal(db_int(url, "SELECT value::bigint FROM audit_meta WHERE key = 'rollup_from'"),
                     0);
    write_chain(ac, "gw-appender", 5);
    assert_int_equal(db_int(url, "SELECT count(*) FROM audit_rollup_heads h WHERE h.last_id ="
                                 " (SELECT max(id) FROM audit_log WHERE id >> 40 = h.inst)"),
                     2);
    assert_true(db_int(url, "SELECT value::bigint FROM audit_meta WHERE key = 'rollup_from'") > 0);
    assert_int_equal(verify_pg_url(pub, url, NULL, problem, sizeof problem), 2);

    /* Nothing to append to, and no right to create it: the writer does not start. */
    char empty[256];
    db_url("least_priv_empty", empty, sizeof empty);
    url_as(empty, "audit_appender", as_writer, sizeof as_writer);
    free(ac->store);
    ac->store = strdup(as_writer);
    assert_int_not_equal(audit_writer_start(ac, NULL), 0);
    assert_int_equal(db_int(empty, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
                     0);

    audit_config_free(ac);
    fx_rmtree(keydir);
}

/* How many times the server's log holds s (the log of this test's server, read whole). */
static size_t server_log_count(const char *s)
{
    char path[128];
    snprintf(path, sizeof path, "%s/pg.log", PG.dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    struct gw_buf b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(gw_buf_append(&b, chunk, n), 0);
    fclose(f);
    size_t c = b.data ? fx_count_substr(b.data, s) : 0;
    gw_buf_free(&b);
    return c;
}

/*
 * A reader's session asks the server to prefetch the pages of its bitmap scans (a user's month
 * lies one call to a page); the writer's does not (it reads nothing at random).
 */
static void test_pg_reader_prefetches(void **state)
{
    REQUIRE_PG();
    char dir[64], key[128], pub[160], url[256], err[512];
    static const char set[] = "SET effective_io_concurrency = 64";
    fx_mkdtemp(dir, sizeof dir);
    new_key(dir, "k.pem", key, sizeof key, pub, sizeof pub);
    pg_exec("CREATE DATABASE prefetch");
    pg_exec("ALTER DATABASE prefetch SET log_statement = 'all'");
    db_url("prefetch", url, sizeof url);
    size_t before = server_log_count(set);
    struct audit_gen_opts o = {.store = url, .key = key, .calls = 40, .days = 2};
    assert_int_equal(audit_gen_run(&o, err, sizeof err), 0);
    assert_int_equal(server_log_count(set), before);
    int rc;
    char *out = cli(&rc, "query", url, "--user", "user00001@clinic-1.example", NULL, NULL);
    assert_int_equal(rc, 0);
    free(out);
    assert_int_equal(server_log_count(set), before + 1);
    /* A store opened to read through the API asks for it too. */
    char msg[256];
    struct audit_store *st = audit_store_open(url, 0, msg, sizeof msg);
    assert_non_null(st);
    st->ops->close(st);
    assert_int_equal(server_log_count(set), before + 2);
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
        cmocka_unit_test(test_pg_rollup_matches_rows),
        cmocka_unit_test(test_pg_rollup_is_derived),
        cmocka_unit_test(test_pg_rollup_edits_found),
        cmocka_unit_test(test_pg_copy_batches),
        cmocka_unit_test(test_pg_least_privilege_writer),
        cmocka_unit_test(test_pg_reader_prefetches),
        cmocka_unit_test(test_pg_unreachable_fails_start),
    };
    return cmocka_run_group_tests(tests, pg_setup, pg_teardown);
}
