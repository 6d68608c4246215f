/*
 * The compact store at scale: a realistic store of many calls generated once through the
 * real writer (200,000 calls; TOOLGATE_AUDIT_SCALE_CALLS changes it), its size per call, its
 * answers against a brute-force scan, verification (also of tampered copies: a compressed
 * record, a name, the dictionary, a column), migration from the first format, the codec and
 * the quick verification path against the full one.
 */
#include <fnmatch.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "layers/audit/audit_codec.h"
#include "layers/audit/audit_fastcheck.h"
#include "layers/audit/audit_fixtures.h"
#include "layers/audit/audit_gen.h"
#include "layers/audit/audit_rollup.h"
#include "lib/timeutil.h"

static char dir[64], big[160], pub[200], small[160], small_pub[200];
static uint64_t big_calls;

static int64_t query_int(const char *db, const char *sql)
{
    sqlite3 *h;
    sqlite3_stmt *q;
    int64_t v = -1;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &q, NULL), SQLITE_OK);
    if (sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(h);
    return v;
}

static void exec_sql(const char *db, const char *sql)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    char *err = NULL;
    if (sqlite3_exec(h, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
    sqlite3_close(h);
}

static void generate(const char *path, uint64_t calls, int format, unsigned users)
{
    char url[200], err[256];
    snprintf(url, sizeof url, "sqlite:%s", path);
    struct audit_gen_opts o = {
        .store = url, .calls = calls, .format = format, .users = users, .days = 60};
    if (audit_gen_run(&o, err, sizeof err) != 0)
        fail_msg("generating %s: %s", path, err);
}

static int group_setup(void **state)
{
    fx_mkdtemp(dir, sizeof dir);
    const char *env = getenv("TOOLGATE_AUDIT_SCALE_CALLS");
    big_calls = env ? strtoull(env, NULL, 10) : 200000;
    snprintf(big, sizeof big, "%s/big.db", dir);
    snprintf(pub, sizeof pub, "%s.ed25519.pem.pub", big);
    snprintf(small, sizeof small, "%s/small.db", dir);
    snprintf(small_pub, sizeof small_pub, "%s.ed25519.pem.pub", small);
    generate(big, big_calls, AUDIT_FORMAT_COMPACT, 0);
    generate(small, 3000, AUDIT_FORMAT_COMPACT, 40);
    return 0;
}

static int group_teardown(void **state)
{
    fx_rmtree(dir);
    return 0;
}

static int verify_one(const char *path, const char *pubkey, char *problem, size_t len)
{
    const char *paths[] = {path};
    return verify_paths(pubkey, paths, 1, 0, problem, len);
}

static void test_size_per_call(void **state)
{
    struct stat sb;
    assert_int_equal(stat(big, &sb), 0);
    double per_call = (double)sb.st_size / (double)big_calls;
    print_message("compact store: %.0f bytes per call over %llu calls\n", per_call,
                  (unsigned long long)big_calls);
    assert_true(per_call <= 600);
    /* Two records a call, plus the checkpoints of the commits. */
    int64_t rows = query_int(big, "SELECT count(*) FROM audit_log");
    assert_true(rows >= (int64_t)(2 * big_calls));
}

static void test_big_store_verifies(void **state)
{
    char problem[400];
    assert_int_equal(verify_one(big, pub, problem, sizeof problem), 0);
}

struct collect {
    struct gw_buf out;
    uint64_t n;
};

static int collect_row(const struct audit_row *r, void *arg)
{
    struct collect *c = arg;
    c->n++;
    gw_buf_printf(&c->out, "%s %llu %s|", r->request_id ? r->request_id : "-",
                  (unsigned long long)r->seq, r->subject ? r->subject : "-");
    return 0;
}

/* A filter applied by hand to every row: what the indexed query must give. */
struct brute {
    const struct audit_filter *f;
    struct collect *c;
};

static int brute_row(const struct audit_row *r, void *arg)
{
    struct brute *b = arg;
    const struct audit_filter *f = b->f;
    if (strcmp(r->kind, "decision") != 0 ||
        (f->subject && (!r->subject || strcmp(f->subject, r->subject))) ||
        (f->tenant && (!r->tenant || strcmp(f->tenant, r->tenant))) ||
        (f->decision && (!r->decision || strcmp(f->decision, r->decision))) ||
        (f->tool_glob && (!r->tool || fnmatch(f->tool_glob, r->tool, 0))) ||
        (f->since_ns && r->time_ns < f->since_ns) || (f->until_ns && r->time_ns >= f->until_ns))
        return 0;
    return collect_row(r, b->c);
}

static void expect_same_answers(const char *path, struct audit_filter f)
{
    char err[256];
    struct audit_store *st = audit_sqlite_open(path, 0, err, sizeof err);
    assert_non_null(st);
    struct collect indexed = {0}, brute = {0};
    f.kind = "decision";
    assert_int_equal(st->ops->scan(st, &f, collect_row, &indexed), 0);
    struct brute b = {&f, &brute};
    assert_int_equal(st->ops->scan(st, NULL, brute_row, &b), 0);
    assert_int_equal(indexed.n, brute.n);
    if (indexed.n)
        assert_memory_equal(indexed.out.data, brute.out.data, brute.out.len);
    /* Time order answers the same rows (one instance: the same order too). */
    struct collect timed = {0};
    f.flags = AUDIT_SCAN_ANY_ORDER;
    assert_int_equal(st->ops->scan(st, &f, collect_row, &timed), 0);
    assert_int_equal(timed.n, brute.n);
    if (timed.n)
        assert_memory_equal(timed.out.data, brute.out.data, brute.out.len);
    gw_buf_free(&indexed.out);
    gw_buf_free(&brute.out);
    gw_buf_free(&timed.out);
    st->ops->close(st);
}

static void test_answers_match_brute_force(void **state)
{
    int64_t now = (int64_t)gw_now_ns(), day = 86400ll * 1000000000ll;
    struct audit_filter cases[] = {
        {.subject = "user00003@clinic-3.example"},
        {.subject = "user00003@clinic-3.example", .since_ns = now - 30 * day},
        {.tool_glob = "ehr.get_*", .since_ns = now - 30 * day},
        {.tool_glob = "*delete*", .decision = "deny"},
        {.tenant = "clinic-7", .since_ns = now - 20 * day, .until_ns = now - 10 * day},
        {.decision = "error"},
        {.subject = "nobody@nowhere"},
        {.tool_glob = "no.such.*"},
        {.since_ns = now - 2 * day},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_same_answers(small, cases[i]);
    /* And one user's month over the big store. */
    expect_same_answers(big, cases[1]);
}

/* Copies the small store, applies sql to the copy, expects verify to fail with `want`. */
static void expect_tamper_caught(const char *sql, const char *want)
{
    char copy[200], cmd[600], problem[400];
    snprintf(copy, sizeof copy, "%s/tampered.db", dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", small, copy);
    assert_int_equal(system(cmd), 0);
    exec_sql(copy, sql);
    int rc = verify_one(copy, small_pub, problem, sizeof problem);
    if (rc != 1)
        fail_msg("not caught: %s", sql);
    if (want && !strstr(problem, want))
        fail_msg("%s: caught as \"%s\", expected \"%s\"", sql, problem, want);
    unlink(copy);
}

/* The text the store rebuilds for row seq (malloc'd), "" when it reports it damaged. */
struct rebuilt {
    uint64_t seq;
    char *text;
};

static int rebuilt_row(const struct audit_row *row, void *arg)
{
    struct rebuilt *r = arg;
    if (row->seq != r->seq)
        return 0;
    r->text = row->problem || !row->record ? strdup("") : strndup(row->record, row->record_len);
    return 1;
}

/* A scan that fails at the row (rather than reporting it) counts as damaged in a copy. */
static char *rebuild(const char *path, const char *instance, uint64_t seq, int original)
{
    char err[256];
    struct audit_store *st = audit_sqlite_open(path, 0, err, sizeof err);
    assert_non_null(st);
    struct audit_filter f = {.instance = instance, .from_seq = seq};
    struct rebuilt r = {.seq = seq};
    st->ops->scan(st, &f, rebuilt_row, &r);
    st->ops->close(st);
    if (original)
        assert_non_null(r.text);
    return r.text ? r.text : strdup("");
}

/*
 * Flips one bit of a stored (compressed) record in a copy, starting offset_from_end bytes
 * from its end. A flip can leave the record as it was (a match offset moved to equal bytes,
 * an unused padding bit): verify must then pass the copy, since nothing it covers changed,
 * and the next bit is tried. The first flip that changes what the row rebuilds to (or
 * damages it) must be refused. Returns how many flips left the record as it was.
 */
static int expect_flip_caught(int kind, int offset_from_end)
{
    char copy[200], cmd[600], problem[400], sql[200];
    snprintf(copy, sizeof copy, "%s/flipped.db", dir);
    int unchanged = 0;
    for (int bit = 0; bit < 64; bit++) {
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", small, copy);
        assert_int_equal(system(cmd), 0);
        sqlite3 *h;
        sqlite3_stmt *q, *u;
        assert_int_equal(sqlite3_open(copy, &h), SQLITE_OK);
        snprintf(
            sql, sizeof sql,
            "SELECT l.id, l.rec, n.name FROM audit_log l JOIN audit_names n ON n.id = l.id >> 40"
            " WHERE l.kind = %d ORDER BY l.id LIMIT 1 OFFSET 100",
            kind);
        assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &q, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        int len = sqlite3_column_bytes(q, 1);
        int at = len - offset_from_end - bit / 8;
        assert_true(at >= 0);
        uint64_t seq = (uint64_t)sqlite3_column_int64(q, 0) & ((1ull << 40) - 1);
        char instance[128];
        snprintf(instance, sizeof instance, "%s", (const char *)sqlite3_column_text(q, 2));
        unsigned char *b = malloc((size_t)len);
        memcpy(b, sqlite3_column_blob(q, 1), (size_t)len);
        b[at] ^= (unsigned char)(1u << (bit % 8));
        assert_int_equal(
            sqlite3_prepare_v2(h, "UPDATE audit_log SET rec = ?1 WHERE id = ?2", -1, &u, NULL),
            SQLITE_OK);
        sqlite3_bind_blob(u, 1, b, len, SQLITE_STATIC);
        sqlite3_bind_int64(u, 2, sqlite3_column_int64(q, 0));
        assert_int_equal(sqlite3_step(u), SQLITE_DONE);
        sqlite3_finalize(u);
        sqlite3_finalize(q);
        sqlite3_close(h);
        free(b);
        char *before = rebuild(small, instance, seq, 1), *after = rebuild(copy, instance, seq, 0);
        int same = strcmp(before, after) == 0;
        free(before);
        free(after);
        int refused = verify_one(copy, small_pub, problem, sizeof problem);
        unlink(copy);
        if (!same) {
            assert_int_equal(refused, 1);
            return unchanged;
        }
        assert_int_equal(refused, 0);
        unchanged++;
    }
    fail_msg("no bit flip near the end of a kind %d record changed it", kind);
    return unchanged;
}

static void test_tampering_caught(void **state)
{
    char problem[400];
    assert_int_equal(verify_one(small, small_pub, problem, sizeof problem), 0);
    /* A bit of a compressed decision, completion or checkpoint, at its end or middle. */
    int unchanged = 0;
    for (int kind = 1; kind <= 3; kind++) {
        unchanged += expect_flip_caught(kind, 1);
        unchanged += expect_flip_caught(kind, 20);
    }
    print_message("bit flips that left a record as it was (verify passed them): %d\n", unchanged);
    /* A name the rows share: every record of that user is rebuilt differently. */
    expect_tamper_caught("UPDATE audit_names SET name = 'mallory' WHERE name ="
                         " 'user00003@clinic-3.example'",
                         "hash does not match");
    /* Another user's id in a column: the record rebuilt with it no longer hashes. */
    expect_tamper_caught("UPDATE audit_log SET subj = (SELECT id FROM audit_names WHERE name ="
                         " 'user00004@clinic-4.example') WHERE id = (SELECT id FROM audit_log"
                         " WHERE kind = 1 AND subj = (SELECT id FROM audit_names WHERE name ="
                         " 'user00003@clinic-3.example') LIMIT 1)",
                         "hash does not match");
    /*
     * The dictionary (a byte no record refers to may change unnoticed: what verify checks
     * is that every record rebuilds to the bytes its hash covers).
     */
    expect_tamper_caught("UPDATE audit_dicts SET bytes = zeroblob(length(bytes))", NULL);
    /* A deleted decision: the seq gap (and its completion's reference) are caught. */
    expect_tamper_caught("DELETE FROM audit_log WHERE id = (SELECT id FROM audit_log WHERE"
                         " kind = 1 LIMIT 1 OFFSET 100)",
                         "missing");
    /* The time column (it is also cut from the record). */
    expect_tamper_caught("UPDATE audit_log SET t = t + 1 WHERE id = (SELECT id FROM audit_log"
                         " WHERE kind = 2 LIMIT 1 OFFSET 10)",
                         NULL);
    /* A stored hash. */
    expect_tamper_caught("UPDATE audit_log SET hash = zeroblob(32) WHERE id = (SELECT id FROM"
                         " audit_log WHERE kind = 3 LIMIT 1 OFFSET 3)",
                         NULL);
}

static void test_migrate_from_first_format(void **state)
{
    char legacy[200], migrated[200], legacy_pub[220];
    snprintf(legacy, sizeof legacy, "%s/legacy.db", dir);
    snprintf(legacy_pub, sizeof legacy_pub, "%s.ed25519.pem.pub", legacy);
    snprintf(migrated, sizeof migrated, "%s/migrated.db", dir);
    generate(legacy, 1500, AUDIT_FORMAT_LEGACY, 30);
    assert_true(query_int(legacy, "SELECT count(*) FROM audit_records") > 3000);
    char *argv[] = {"audit", "migrate", legacy, migrated, NULL};
    int rc;
    char *out = fx_capture_stdout(audit_cli_main, 4, argv, &rc);
    assert_int_equal(rc, 0);
    free(out);
    char problem[400];
    assert_int_equal(verify_one(migrated, legacy_pub, problem, sizeof problem), 0);
    char *ea[] = {"audit", "export", legacy, "--format", "jsonl", NULL};
    char *eb[] = {"audit", "export", migrated, "--format", "jsonl", NULL};
    char *a = fx_capture_stdout(audit_cli_main, 5, ea, &rc);
    char *b = fx_capture_stdout(audit_cli_main, 5, eb, &rc);
    assert_string_equal(a, b);
    free(a);
    free(b);
    /* The migrated copy is smaller by far; migrating onto an existing file is refused. */
    struct stat sa, sb;
    assert_int_equal(stat(legacy, &sa), 0);
    assert_int_equal(stat(migrated, &sb), 0);
    assert_true(sb.st_size * 3 < sa.st_size);
    out = fx_capture_stdout(audit_cli_main, 4, argv, &rc);
    assert_int_equal(rc, 2);
    free(out);
}

static void test_codec_round_trip(void **state)
{
    struct audit_codec *c = audit_codec_new(6);
    struct gw_buf blob = {0}, text = {0}, cut = {0};
    struct audit_cut_values cv;
    const char prev[] = "ab54a98ceb1f0ad2ab54a98ceb1f0ad2ab54a98ceb1f0ad2ab54a98ceb1f0ad2";
    const char rec[] = "{\"head_hash\":\"ab54a98ceb1f0ad2ab54a98ceb1f0ad2ab54a98ceb1f0ad2ab54a98ce"
                       "b1f0ad2\",\"kind\":\"checkpoint\",\"prev_hash\":\"ab54a98ceb1f0ad2ab54a98c"
                       "eb1f0ad2ab54a98ceb1f0ad2ab54a98ceb1f0ad2\",\"seq\":42,\"signed_time_ns\":"
                       "\"1700000000000000001\",\"subject\":\"x\\\"y\",\"time_ns\":\"17000000000"
                       "00000001\"}";
    assert_int_equal(
        audit_cut_values_fill(&cv, &cut, prev, 1700000000000000001ll, 42, NULL, "x\"y", NULL, NULL),
        0);
    assert_int_equal(audit_codec_encode(c, rec, strlen(rec), &cv, &blob), 0);
    assert_true(blob.len < strlen(rec) / 2);
    int needs;
    char err[160];
    assert_int_equal(
        audit_codec_decode(c, blob.data, blob.len, &cv, &text, &needs, err, sizeof err), 0);
    assert_int_equal(needs, 0);
    assert_int_equal(text.len, strlen(rec));
    assert_memory_equal(text.data, rec, text.len);
    /* Without the previous hash it asks for it; with another one it rebuilds other bytes. */
    struct audit_cut_values none;
    assert_int_equal(audit_cut_values_fill(&none, &cut, NULL, 1700000000000000001ll, 42, NULL,
                                           "x\"y", NULL, NULL),
                     0);
    assert_int_equal(
        audit_codec_decode(c, blob.data, blob.len, &none, &text, &needs, err, sizeof err), 0);
    assert_int_equal(needs, AUDIT_NEED_PREV);
    /* Every truncation of the blob is refused or rebuilds other bytes, never crashes. */
    assert_int_equal(
        audit_cut_values_fill(&cv, &cut, prev, 1700000000000000001ll, 42, NULL, "x\"y", NULL, NULL),
        0);
    for (size_t n = 0; n < blob.len; n++) {
        int r = audit_codec_decode(c, blob.data, n, &cv, &text, &needs, err, sizeof err);
        assert_true(r != 0 || text.len != strlen(rec) || memcmp(text.data, rec, text.len));
    }
    /* Request ids: UUIDs pack to 16 bytes, anything else is kept as text. */
    unsigned char packed[64];
    char back[64];
    assert_int_equal(audit_reqid_pack("01a23cd2-ea16-7e76-b86d-9d3a03e3a74f", packed, 64), 16);
    assert_int_equal(audit_reqid_unpack(packed, 16, back, sizeof back), 0);
    assert_string_equal(back, "01a23cd2-ea16-7e76-b86d-9d3a03e3a74f");
    assert_int_equal(audit_reqid_pack("01A23CD2-EA16-7E76-B86D-9D3A03E3A74F", packed, 64), 37);
    assert_int_equal(audit_reqid_unpack(packed, 37, back, sizeof back), 0);
    assert_string_equal(back, "01A23CD2-EA16-7E76-B86D-9D3A03E3A74F");
    gw_buf_free(&blob);
    gw_buf_free(&text);
    gw_buf_free(&cut);
    audit_codec_free(c);
}

static void test_fastcheck_agrees(void **state)
{
    struct audit_fields fs;
    /* Canonical and decided. */
    const char *ok[] = {"{}", "{\"a\":[1,-2,{\"b\":null}],\"b\":\"x\\ny\",\"c\":true}",
                        "{\"kind\":\"decision\",\"seq\":7}"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_int_equal(audit_fastcheck(ok[i], strlen(ok[i]), &fs), 1);
    assert_int_equal(audit_fastcheck(ok[2], strlen(ok[2]), &fs), 1);
    assert_int_equal(fs.f[AF_SEQ].num, 7);
    /* Not canonical, or not for the quick path to say: the full path decides. */
    const char *undecided[] = {"{\"b\":1,\"a\":2}",
                               "{\"a\":1,\"a\":1}",
                               "{ \"a\":1}",
                               "{\"a\":01}",
                               "{\"a\":1.5}",
                               "{\"a\":1e3}",
                               "{\"a\":-0}",
                               "{\"a\":\"\\u0041\"}",
                               "{\"a\":\"\\u0000\"}",
                               "{\"a\":\"\xc3\xa9\"}",
                               "{\"a\":\"\\/\"}",
                               "{\"a\":1}x",
                               "{\"a\":1234567890123456}",
                               "{\"a\":\"\\u000A\"}",
                               "[1]"};
    for (size_t i = 0; i < sizeof undecided / sizeof undecided[0]; i++)
        assert_int_equal(audit_fastcheck(undecided[i], strlen(undecided[i]), &fs), 0);
}

/*
 * Strings are scanned several bytes at a time: a byte the quick path must not take (a raw
 * control, a raw quote, 0x7f, non-ASCII) is found at every position of strings of every
 * length around the step, and a plain string of each length is still decided.
 */
static void test_fastcheck_every_position(void **state)
{
    static const unsigned char bad[] = {0x00, 0x01, 0x1f, '"', 0x7f, 0x80, 0xc3, 0xff};
    char text[64];
    struct audit_fields fs;
    for (size_t len = 0; len <= 20; len++) {
        int n = snprintf(text, sizeof text, "{\"a\":\"%.*s\"}", (int)len, "abcdefghijklmnopqrstu");
        assert_int_equal(audit_fastcheck(text, (size_t)n, &fs), 1);
        for (size_t at = 0; at < len; at++)
            for (size_t b = 0; b < sizeof bad; b++) {
                char copy[64];
                memcpy(copy, text, (size_t)n);
                copy[6 + at] = (char)bad[b];
                /* A raw quote may end the string early: then the object is not well formed. */
                assert_int_equal(audit_fastcheck(copy, (size_t)n, &fs), 0);
            }
        /* An escape at each position is decided (canonical \n) and flagged. */
        for (size_t at = 0; at + 1 < len; at++) {
            char copy[64];
            memcpy(copy, text, (size_t)n);
            copy[6 + at] = '\\';
            copy[7 + at] = 'n';
            assert_int_equal(audit_fastcheck(copy, (size_t)n, &fs), 1);
        }
        /* Cut short anywhere inside the string: never decided. */
        for (int cut = 6; cut < n; cut++)
            assert_int_equal(audit_fastcheck(text, (size_t)cut, &fs), 0);
    }
}

static int cli(const char **args, char **out);

/* stats counts through the index by id; the same totals as counting the rows by hand. */
static void test_stats_match_rows(void **state)
{
    int64_t since = (int64_t)gw_now_ns() - 30ll * 86400 * 1000000000ll;
    char sql[300], *out = NULL;
    const char *args[] = {"audit", "stats", small, "--since", "30d", "--format", "json", NULL};
    assert_int_equal(cli(args, &out), 0);
    /* The window moved on by the time the command ran: allow the calls of a few seconds. */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM audit_log WHERE kind = 1 AND t >= %lld",
             (long long)since);
    int64_t total = query_int(small, sql);
    json_t *doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    int64_t got = json_integer_value(json_object_get(doc, "total"));
    assert_true(got <= total && got >= total - 5);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM audit_log WHERE kind = 1 AND t >= %lld AND decision = 7",
             (long long)since);
    int64_t denied = query_int(small, sql);
    int64_t got_denied =
        json_integer_value(json_object_get(json_object_get(doc, "decision"), "deny"));
    assert_true(got_denied <= denied && got_denied >= denied - 5);
    json_decref(doc);
    free(out);
}

static int cli(const char **args, char **out)
{
    int rc, argc = 0;
    while (args[argc])
        argc++;
    char *o = fx_capture_stdout(audit_cli_main, argc, (char **)args, &rc);
    if (out)
        *out = o;
    else
        free(o);
    return rc;
}

/* `audit stats PATH ARGS... --format json` (with --from-rows when asked), its output. */
static char *stats_of(const char *path, const char *since, const char *until, int from_rows)
{
    const char *args[12] = {"audit", "stats", path, "--format", "json"};
    int n = 5;
    if (since) {
        args[n++] = "--since";
        args[n++] = since;
    }
    if (until) {
        args[n++] = "--until";
        args[n++] = until;
    }
    if (from_rows)
        args[n++] = "--from-rows";
    char *out = NULL;
    assert_int_equal(cli(args, &out), 0);
    assert_non_null(out);
    return out;
}

/* The day counters answer what counting the rows answers, byte for byte, for any range. */
static void expect_counters_agree(const char *path, const char *since, const char *until)
{
    char *a = stats_of(path, since, until, 0), *b = stats_of(path, since, until, 1);
    if (strcmp(a, b) != 0)
        fail_msg("%s --since %s --until %s: counters say %s, rows say %s", path,
                 since ? since : "-", until ? until : "-", a, b);
    free(a);
    free(b);
}

static void rfc3339_of(int64_t ns, char *out, size_t len)
{
    time_t secs = (time_t)(ns / 1000000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void test_rollup_split(void **state)
{
    const int64_t D = AUDIT_ROLLUP_DAY_NS;
    int64_t first, end;
    /* Whole days inside the range only; the ends are left to the rows. */
    assert_int_equal(audit_rollup_split(10 * D + 5, 13 * D - 1, 0, &first, &end), 1);
    assert_true(first == 11 && end == 12);
    assert_int_equal(audit_rollup_split(10 * D, 13 * D, 0, &first, &end), 1);
    assert_true(first == 10 && end == 13);
    /* Less than a whole day: rows alone. */
    assert_int_equal(audit_rollup_split(10 * D + 1, 11 * D + 5, 0, &first, &end), 0);
    /* Counters complete only from day 12: days before are rows. */
    assert_int_equal(audit_rollup_split(10 * D, 20 * D, 12 * D, &first, &end), 1);
    assert_true(first == 12 && end == 20);
    /* Open end, open start. */
    assert_int_equal(audit_rollup_split(0, 0, 0, &first, &end), 1);
    assert_true(first == 0 && end == INT64_MAX / D);
    assert_int_equal(audit_rollup_split(INT64_MAX - 5, 0, 0, &first, &end), 0);
}

/*
 * The counters the writer keeps answer as the rows do (ranges on and off day boundaries,
 * open ends, before and past the data); they count every decision.
 */
static void test_rollup_matches_rows(void **state)
{
    char since[40], until[40];
    assert_int_equal(query_int(small, "SELECT value FROM audit_meta WHERE key = 'rollup_from'"), 0);
    assert_int_equal(query_int(small, "SELECT sum(n) FROM audit_rollup WHERE dim = 0"),
                     query_int(small, "SELECT count(*) FROM audit_log WHERE kind = 1"));
    assert_int_equal(query_int(small, "SELECT sum(n) FROM audit_rollup WHERE dim = 3"),
                     query_int(small, "SELECT count(*) FROM audit_log WHERE kind = 1"));
    expect_counters_agree(small, NULL, NULL);
    expect_counters_agree(small, "30d", NULL);
    expect_counters_agree(small, "1d", NULL);
    expect_counters_agree(big, "30d", NULL);
    int64_t lo = query_int(small, "SELECT min(t) FROM audit_log WHERE kind = 1");
    int64_t hi = query_int(small, "SELECT max(t) FROM audit_log WHERE kind = 1");
    const int64_t D = AUDIT_ROLLUP_DAY_NS;
    /* Day boundaries exactly, a second either side, an hour into a day, past the ends. */
    int64_t at[] = {(lo / D + 2) * D,
                    (lo / D + 2) * D + 1000000000,
                    (lo / D + 2) * D - 1000000000,
                    (lo / D + 3) * D + 3600ll * 1000000000,
                    lo - D,
                    hi + D};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
        for (size_t j = 0; j < sizeof at / sizeof at[0]; j++) {
            if (at[i] >= at[j])
                continue;
            rfc3339_of(at[i], since, sizeof since);
            rfc3339_of(at[j] + 20 * D, until, sizeof until);
            expect_counters_agree(small, since, until);
            rfc3339_of(at[j], until, sizeof until);
            expect_counters_agree(small, since, until);
        }
}

/*
 * The counters are derived data: edited, stats from them is wrong (verify judges the
 * records, which are intact), and --from-rows is not; rows appended without them (an
 * earlier version writing) make stats count the rows; a store without counters is counted
 * from its rows and gets counters from the next day when a writer opens it; an edited row
 * is still caught by verify.
 */
static void test_rollup_is_derived(void **state)
{
    char copy[200], cmd[1200], url[220], err[256], problem[400];
    snprintf(copy, sizeof copy, "%s/rollup.db", dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && cp '%s.ed25519.pem' '%s.ed25519.pem'", small, copy,
             small, copy);
    assert_int_equal(system(cmd), 0);
    char *rows = stats_of(copy, NULL, NULL, 1);
    exec_sql(copy, "UPDATE audit_rollup SET n = n + 1000 WHERE dim = 0");
    char *edited = stats_of(copy, NULL, NULL, 0), *still = stats_of(copy, NULL, NULL, 1);
    assert_string_not_equal(edited, rows);
    assert_string_equal(still, rows);
    /* The chain is intact; `audit verify` counts the records again and finds the counters. */
    assert_int_equal(verify_one(copy, small_pub, problem, sizeof problem), 0);
    const char *verify[] = {"audit", "verify", copy, "--pubkey", small_pub, NULL};
    char *said = NULL;
    assert_int_equal(cli(verify, &said), 1);
    assert_non_null(strstr(said, "audit log intact, its stats counters NOT"));
    free(said);
    free(edited);
    free(still);
    /* A row the counters did not count (its instance's last row is not the one they know). */
    exec_sql(copy, "UPDATE audit_rollup_heads SET last_id = last_id - 1");
    char *fallback = stats_of(copy, NULL, NULL, 0);
    assert_string_equal(fallback, rows);
    free(fallback);
    /* Without counters at all (a store of an earlier version): the rows, then a writer. */
    exec_sql(copy, "DROP TABLE audit_rollup; DROP TABLE audit_rollup_heads;"
                   " DELETE FROM audit_meta WHERE key = 'rollup_from'");
    char *old = stats_of(copy, NULL, NULL, 0);
    assert_string_equal(old, rows);
    free(old);
    free(rows);
    int64_t last = query_int(copy, "SELECT max(t) FROM audit_log WHERE kind = 1");
    snprintf(url, sizeof url, "sqlite:%s", copy);
    struct audit_gen_opts o = {.store = url, .calls = 50, .users = 40, .days = 1};
    assert_int_equal(audit_gen_run(&o, err, sizeof err), 0);
    int64_t from = query_int(copy, "SELECT value FROM audit_meta WHERE key = 'rollup_from'");
    assert_int_equal(from, (last / AUDIT_ROLLUP_DAY_NS + 1) * AUDIT_ROLLUP_DAY_NS);
    expect_counters_agree(copy, NULL, NULL);
    expect_counters_agree(copy, "30d", NULL);
    assert_int_equal(verify_one(copy, small_pub, problem, sizeof problem), 0);
    assert_int_equal(cli(verify, NULL), 0);
    /* A decision's column edited: stats may count it either way; verify catches it. */
    exec_sql(copy, "UPDATE audit_log SET decision = 7 WHERE id = (SELECT id FROM audit_log"
                   " WHERE kind = 1 AND decision != 7 LIMIT 1 OFFSET 30)");
    assert_int_equal(verify_one(copy, small_pub, problem, sizeof problem), 1);
    unlink(copy);
}

/* Every kind of edit to the counters is found by `audit verify` (the records are intact). */
static void test_rollup_edits_found(void **state)
{
    static const char *const edits[] = {
        "UPDATE audit_rollup SET n = n + 1 WHERE (day, dim, name) = (SELECT day, dim, name"
        " FROM audit_rollup LIMIT 1 OFFSET 40)",
        "DELETE FROM audit_rollup WHERE day = (SELECT max(day) FROM audit_rollup) AND dim = 3",
        "INSERT INTO audit_rollup VALUES (5, 2, 3, 1)",
        "INSERT INTO audit_rollup SELECT day, dim, name + 100000, n FROM audit_rollup LIMIT 1",
        "UPDATE OR IGNORE audit_rollup SET name = (SELECT id FROM audit_names WHERE name ="
        " 'user00004@clinic-4.example') WHERE dim = 3 AND name = (SELECT id FROM audit_names"
        " WHERE name = 'user00003@clinic-3.example')",
    };
    char copy[200], cmd[600];
    snprintf(copy, sizeof copy, "%s/counters.db", dir);
    const char *verify[] = {"audit", "verify", copy, "--pubkey", small_pub, NULL};
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", small, copy);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(cli(verify, NULL), 0);
        exec_sql(copy, edits[i]);
        if (cli(verify, NULL) != 1)
            fail_msg("not found by verify: %s", edits[i]);
        unlink(copy);
    }
}

static void test_since_checkpoint(void **state)
{
    char copy[200], cmd[1200], url[220], err[256], statef[220];
    snprintf(copy, sizeof copy, "%s/incr.db", dir);
    snprintf(statef, sizeof statef, "%s.verified", copy);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && cp '%s.ed25519.pem' '%s.ed25519.pem'", small, copy,
             small, copy);
    assert_int_equal(system(cmd), 0);
    const char *verify[] = {"audit", "verify", copy, "--pubkey", small_pub, "--since-checkpoint",
                            NULL};
    /* First run: everything, then the last checkpoint is kept. */
    assert_int_equal(cli(verify, NULL), 0);
    assert_int_equal(access(statef, F_OK), 0);
    int64_t kept = query_int(copy, "SELECT max(id) & 1099511627775 FROM audit_log");
    /* The writer carries on (the same key, next to the store); the next run reads only that. */
    snprintf(url, sizeof url, "sqlite:%s", copy);
    struct audit_gen_opts o = {.store = url, .calls = 200, .users = 40, .days = 1};
    assert_int_equal(audit_gen_run(&o, err, sizeof err), 0);
    char *out = NULL;
    assert_int_equal(cli(verify, &out), 0);
    char want[80];
    snprintf(want, sizeof want, "seq %lld..", (long long)kept);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "from the checkpoint verified last time"));
    free(out);
    /* Appended again, then a record after the saved checkpoint is edited: caught. */
    assert_int_equal(audit_gen_run(&o, err, sizeof err), 0);
    int64_t after = query_int(copy, "SELECT max(id) FROM audit_log") - 50;
    snprintf(cmd, sizeof cmd, "UPDATE audit_log SET hash = zeroblob(32) WHERE id = %lld",
             (long long)after);
    exec_sql(copy, cmd);
    assert_int_equal(cli(verify, NULL), 1);
    /* A forged saved checkpoint (its signature changed) is refused, not trusted. */
    FILE *f = fopen(statef, "r+");
    assert_non_null(f);
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    char *sig = strstr(text, "\"signature\":\"");
    assert_non_null(sig);
    sig[13] = sig[13] == 'a' ? 'b' : 'a';
    rewind(f);
    fwrite(text, 1, n, f);
    fclose(f);
    out = NULL;
    assert_int_equal(cli(verify, &out), 1);
    free(out);
    unlink(statef);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_fastcheck_agrees),
        cmocka_unit_test(test_fastcheck_every_position),
        cmocka_unit_test(test_size_per_call),
        cmocka_unit_test(test_big_store_verifies),
        cmocka_unit_test(test_answers_match_brute_force),
        cmocka_unit_test(test_since_checkpoint),
        cmocka_unit_test(test_stats_match_rows),
        cmocka_unit_test(test_rollup_split),
        cmocka_unit_test(test_rollup_matches_rows),
        cmocka_unit_test(test_rollup_is_derived),
        cmocka_unit_test(test_rollup_edits_found),
        cmocka_unit_test(test_tampering_caught),
        cmocka_unit_test(test_migrate_from_first_format),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
