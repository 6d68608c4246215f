/*
 * The limits ledger on a worker's loop: the changes of one loop turn are written as one
 * transaction before any of their calls goes on (nothing passes before its reservation is
 * durable), changes to one row are added together, settlements ride along without waiting, a
 * batch that cannot be written refuses every call in it and gives their budget back, closing
 * the ledger writes what is still queued, and a kill -9 after a turn loses nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "core/config.h"
#include "fixtures.h"
#include "layers/layer.h"
#include "layers/limits/limits-int.h"

static char tmpdir[64];
static uv_loop_t loop;

static int setup(void **state)
{
    (void)state;
    fx_mkdtemp(tmpdir, sizeof tmpdir);
    if (uv_loop_init(&loop) != 0)
        return -1;
    limits_set_thread_loop(&loop);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    limits_set_thread_loop(NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    int rc = uv_loop_close(&loop);
    fx_rmtree(tmpdir);
    return rc == 0 ? 0 : -1;
}

/* A test that failed half way has not stopped the layer: the next one must start it anew. */
static int test_teardown(void **state)
{
    (void)state;
    limits_stop();
    uv_run(&loop, UV_RUN_NOWAIT);
    return 0;
}

static struct gw_config *config(const char *db, const char *cap)
{
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "limits:\n  ledger: \"sqlite:%s/%s\"\n  loops: {enabled: false}\n"
             "  costs: {default: 0.10}\n"
             "  budgets: [{name: daily, per: user, cap: %s, period: day}]\n",
             tmpdir, db, cap);
    struct gw_config *cfg = fx_load_ok(yaml);
    assert_int_equal(limits_start(cfg), 0);
    return cfg;
}

static struct gw_request *call(const struct gw_config *cfg, const char *sub)
{
    struct gw_request *req = gw_request_new(cfg);
    req->identity.verified = 1;
    req->identity.subject = strdup(sub);
    req->identity.client_id = strdup("runtime");
    fx_req_add_message(req, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\","
                            "\"params\":{\"name\":\"t\",\"arguments\":{}}}");
    return req;
}

/* Starts the check; a waiting verdict is recorded in pipeline_early_verdict when it comes. */
static int begin(struct gw_request *req)
{
    req->pipeline_running = 1; /* resume records the verdict instead of running on */
    req->pipeline_early_verdict = -1;
    req->next_stage = GW_STAGE_LIMITS;
    return limits_layer.check(req, &req->decision[GW_STAGE_LIMITS]);
}

static int verdict(const struct gw_request *req)
{
    return req->pipeline_early_verdict;
}

/* Begins a call for USER, turns the loop once (its reservation's batch) and asserts it passed. */
static struct gw_request *passed_call(struct gw_config *cfg, const char *user)
{
    struct gw_request *r = call(cfg, user);
    assert_int_equal(begin(r), GW_ASYNC);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(verdict(r), GW_PASS);
    return r;
}

/* The response and completion of a call that was sent; cost reported when >= 0. */
static void respond(struct gw_request *req, double cost)
{
    char json[256];
    if (cost >= 0)
        snprintf(json, sizeof json,
                 "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[],"
                 "\"_meta\":{\"toolgate/cost\":%.2f}}}",
                 cost);
    else
        snprintf(json, sizeof json, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}");
    json_t *msg = json_loads(json, 0, NULL);
    assert_non_null(msg);
    int modified = 0;
    struct gw_decision d = {0};
    req->upstream_sent = 1;
    req->upstream_status = 200;
    req->response_status = 200;
    assert_int_equal(limits_layer.on_response(req, msg, &modified, &d), GW_PASS);
    json_decref(msg);
    limits_layer.on_complete(req);
}

/* The path of the test's database DB (with SUFFIX, e.g. "-wal") into path[128]. */
static void db_path(char path[128], const char *db, const char *suffix)
{
    snprintf(path, 128, "%s/%s%s", tmpdir, db, suffix);
}

/* What another connection reads from the ledger: the row's amount, -1 when there is none. */
static long long stored(const char *db, const char *key)
{
    char path[128];
    db_path(path, db, "");
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;
    assert_int_equal(sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT amount FROM limits_spend WHERE budget = 'daily' "
                                        "AND key = ?1;",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

static long long wal_size(const char *db)
{
    char path[128];
    db_path(path, db, "-wal");
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : 0;
}

static void exec_sql(const char *db, const char *sql)
{
    char path[128];
    db_path(path, db, "");
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
}

/*
 * Forty calls of one turn wait for the turn's batch; none is decided and nothing is in the
 * ledger before it. After one turn all passed, the row holds all forty reservations, and the
 * write-ahead log grew by one commit of one page, not forty.
 */
static void test_one_commit_per_turn(void **state)
{
    (void)state;
    struct gw_config *cfg = config("turn.db", "100.00");
    struct gw_request *warm = passed_call(cfg, "ann");
    assert_int_equal(stored("turn.db", "ann"), 100000);
    long long wal0 = wal_size("turn.db");

    enum { N = 40 };
    struct gw_request *reqs[N];
    for (int i = 0; i < N; i++) {
        reqs[i] = call(cfg, "ann");
        assert_int_equal(begin(reqs[i]), GW_ASYNC);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(verdict(reqs[i]), -1);
    assert_int_equal(stored("turn.db", "ann"), 100000);
    uv_run(&loop, UV_RUN_NOWAIT);
    for (int i = 0; i < N; i++) {
        assert_int_equal(verdict(reqs[i]), GW_PASS);
        assert_int_equal(reqs[i]->limits.cost_reserved, 100000);
    }
    assert_int_equal(stored("turn.db", "ann"), 41LL * 100000);
    /* One frame (a page and its 24-byte header) per page a commit changes: one leaf here. */
    long long grew = wal_size("turn.db") - wal0;
    assert_true(grew > 0 && grew <= 2 * (4096 + 24));

    /* The last of them: budget 100.00 - 4.10 left, as the memory store counted it. */
    assert_int_equal(reqs[N - 1]->limits.budget_remaining, 100000000 - 41LL * 100000);
    for (int i = 0; i < N; i++)
        gw_request_free(reqs[i]);
    gw_request_free(warm);
    limits_stop();
    gw_config_free(cfg);
}

/*
 * Settlements go with the next batch and nobody waits for them: reported costs replace the
 * estimates in the ledger, a call that never left is refunded, and the reservation and
 * refund of a call in one batch leave the row as it was.
 */
static void test_settlements_ride_along(void **state)
{
    (void)state;
    struct gw_config *cfg = config("settle.db", "10.00");
    struct gw_request *a = call(cfg, "bo"), *b = call(cfg, "bo"), *c = call(cfg, "cy");
    assert_int_equal(begin(a), GW_ASYNC);
    assert_int_equal(begin(b), GW_ASYNC);
    assert_int_equal(begin(c), GW_ASYNC);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(verdict(a), GW_PASS);
    assert_int_equal(verdict(b), GW_PASS);
    assert_int_equal(verdict(c), GW_PASS);
    assert_int_equal(stored("settle.db", "bo"), 200000);
    assert_int_equal(stored("settle.db", "cy"), 100000);
    respond(a, 0.75);                                    /* reported: 0.75 instead of 0.10 */
    respond(b, -1);                                      /* not reported: the estimate stays */
    limits_layer.on_complete(c);                         /* never sent: refunded */
    assert_int_equal(stored("settle.db", "bo"), 200000); /* queued, not yet written */
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(stored("settle.db", "bo"), 850000);
    assert_int_equal(stored("settle.db", "cy"), 0);

    /* A reservation and its refund in the same batch: the row does not move. */
    struct gw_request *d = passed_call(cfg, "cy");
    struct gw_request *e = call(cfg, "cy");
    assert_int_equal(begin(e), GW_ASYNC);
    limits_layer.on_complete(d); /* d never left: refunded in e's batch */
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(verdict(e), GW_PASS);
    assert_int_equal(stored("settle.db", "cy"), 100000);
    gw_request_free(a);
    gw_request_free(b);
    gw_request_free(c);
    gw_request_free(d);
    gw_request_free(e);
    limits_stop();
    gw_config_free(cfg);
}

/*
 * Many principals in one batch (the rows are merged by a hash table): each row gets exactly
 * its own calls, and a principal whose calls pass its cap within the turn is refused by the
 * memory store before the ledger is involved.
 */
static void test_many_rows_in_one_batch(void **state)
{
    (void)state;
    struct gw_config *cfg = config("many.db", "0.50");
    enum { USERS = 150, CALLS = 6 }; /* 6 x 0.10 against a cap of 0.50: the sixth is refused */
    static struct gw_request *reqs[USERS * CALLS];
    char sub[32];
    for (int c = 0; c < CALLS; c++)
        for (int u = 0; u < USERS; u++) {
            snprintf(sub, sizeof sub, "user-%03d", u);
            reqs[c * USERS + u] = call(cfg, sub);
            int v = begin(reqs[c * USERS + u]);
            assert_int_equal(v, c < 5 ? GW_ASYNC : GW_DENY);
        }
    uv_run(&loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 5 * USERS; i++)
        assert_int_equal(verdict(reqs[i]), GW_PASS);
    for (int u = 0; u < USERS; u++) {
        snprintf(sub, sizeof sub, "user-%03d", u);
        assert_int_equal(stored("many.db", sub), 500000);
    }
    for (int i = 0; i < USERS * CALLS; i++)
        gw_request_free(reqs[i]);
    limits_stop();
    gw_config_free(cfg);
}

/*
 * A batch that cannot be written refuses every call waiting for it (503, limits.unavailable)
 * and gives their reservations back: once the ledger can be written again, the whole budget
 * is there.
 */
static void test_unwritable_batch_refuses_all(void **state)
{
    (void)state;
    struct gw_config *cfg = config("fail.db", "0.30");
    struct gw_request *ok = passed_call(cfg, "dee");
    limits_layer.on_complete(ok); /* never sent: refunded */
    uv_run(&loop, UV_RUN_NOWAIT);

    exec_sql("fail.db", "DROP TABLE limits_spend;");
    struct gw_request *r[3];
    for (int i = 0; i < 3; i++) {
        r[i] = call(cfg, "dee");
        assert_int_equal(begin(r[i]), GW_ASYNC);
    }
    uv_run(&loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(verdict(r[i]), GW_DENY);
        assert_int_equal(r[i]->decision[GW_STAGE_LIMITS].http_status, 503);
        assert_string_equal(r[i]->decision[GW_STAGE_LIMITS].reason_code, "limits.unavailable");
        assert_false(r[i]->limits.cost_reserved);
    }

    exec_sql("fail.db", "CREATE TABLE limits_spend(budget TEXT NOT NULL, key TEXT NOT NULL,"
                        " period INTEGER NOT NULL, expires INTEGER NOT NULL, amount INTEGER NOT"
                        " NULL, PRIMARY KEY(budget, key, period)) WITHOUT ROWID;");
    struct gw_request *again[3];
    for (int i = 0; i < 3; i++) {
        again[i] = call(cfg, "dee");
        assert_int_equal(begin(again[i]), GW_ASYNC);
    }
    uv_run(&loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 3; i++)
        assert_int_equal(verdict(again[i]), GW_PASS);
    assert_int_equal(stored("fail.db", "dee"), 300000);
    for (int i = 0; i < 3; i++) {
        gw_request_free(r[i]);
        gw_request_free(again[i]);
    }
    gw_request_free(ok);
    limits_stop();
    gw_config_free(cfg);
}

/* Stopping the layer with a batch still queued writes it; its calls are decided afterwards. */
static void test_close_writes_queued_batch(void **state)
{
    (void)state;
    struct gw_config *cfg = config("close.db", "1.00");
    struct gw_request *a = call(cfg, "eve");
    assert_int_equal(begin(a), GW_ASYNC);
    struct gw_request *b = call(cfg, "eve");
    assert_int_equal(begin(b), GW_ASYNC);
    limits_stop();
    assert_int_equal(stored("close.db", "eve"), 200000);
    uv_run(&loop, UV_RUN_NOWAIT);
    /* The layer is gone: nothing can settle these calls any more, so they are refused. */
    assert_int_equal(verdict(a), GW_DENY);
    assert_int_equal(verdict(b), GW_DENY);
    gw_request_free(a);
    gw_request_free(b);
    gw_config_free(cfg);
}

/*
 * kill -9 after a turn loses nothing: a child has one call settled (reported 0.20) and one
 * reserved (0.10) through the loop, tells the parent, and is killed.
 */
static void test_kill_after_turn(void **state)
{
    (void)state;
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "limits:\n  ledger: \"sqlite:%s/kill.db\"\n  costs: {default: 0.10}\n"
             "  budgets: [{name: daily, per: user, cap: 0.50, period: day}]\n",
             tmpdir);
    struct gw_config *cfg = fx_load_ok(yaml);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (limits_start(cfg) != 0)
            _exit(2);
        struct gw_request *a = call(cfg, "fay"), *b = call(cfg, "fay");
        if (begin(a) != GW_ASYNC || begin(b) != GW_ASYNC)
            _exit(3);
        uv_run(&loop, UV_RUN_NOWAIT);
        if (verdict(a) != GW_PASS || verdict(b) != GW_PASS)
            _exit(4);
        respond(a, 0.20);
        uv_run(&loop, UV_RUN_NOWAIT);
        if (write(fds[1], "k", 1) != 1)
            _exit(5);
        for (;;)
            pause();
    }
    close(fds[1]);
    fx_kill9_when_ready(pid, fds[0]);
    assert_int_equal(stored("kill.db", "fay"), 300000);
    assert_int_equal(limits_start(cfg), 0);
    /* 0.30 recorded: two more 0.10 calls fit, the third does not. */
    struct gw_request *r[3];
    for (int i = 0; i < 3; i++)
        r[i] = call(cfg, "fay");
    assert_int_equal(begin(r[0]), GW_ASYNC);
    assert_int_equal(begin(r[1]), GW_ASYNC);
    assert_int_equal(begin(r[2]), GW_DENY);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(verdict(r[1]), GW_PASS);
    assert_int_equal(r[1]->limits.budget_remaining, 0);
    for (int i = 0; i < 3; i++)
        gw_request_free(r[i]);
    limits_stop();
    gw_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_one_commit_per_turn, test_teardown),
        cmocka_unit_test_teardown(test_settlements_ride_along, test_teardown),
        cmocka_unit_test_teardown(test_many_rows_in_one_batch, test_teardown),
        cmocka_unit_test_teardown(test_unwritable_batch_refuses_all, test_teardown),
        cmocka_unit_test_teardown(test_close_writes_queued_batch, test_teardown),
        cmocka_unit_test_teardown(test_kill_after_turn, test_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
