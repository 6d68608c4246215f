/*
 * safety_dbcache: the compiled pattern database cache (safety.compile_cache). A second start
 * with the same patterns loads the database and finds what a compiled one finds; a changed
 * pattern set, a corrupted or truncated file, a file or directory others may write, and a
 * file of another pattern set under the right name are never used: the patterns are compiled
 * and what they must find is found.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "layers/safety/safety-int.h"

static char dir[] = "/tmp/toolgate-test-dbcache-XXXXXX";
static char file[256];

static struct safety_config *parse(const char *custom)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "safety:\n  compile_cache: \"%s\"\n"
             "  custom: [{name: employee_id, pattern: '%s', action: block}]\n",
             dir, custom);
    struct cfg_doc doc;
    struct cfg_error err = {{0}};
    struct safety_config *sc = NULL;
    if (cfg_load_string(yaml, strlen(yaml), "t.yaml", &doc, &err) != 0)
        return NULL;
    if (safety_config_parse(&doc, cfg_map_get(doc.root, "safety"), &sc, &err) != 0) {
        print_message("parse: %s\n", err.msg);
        sc = NULL;
    }
    cfg_doc_free(&doc);
    return sc;
}

/* Spans of detector `type` found in text. */
static int found(const struct safety_config *sc, const char *text, const char *type)
{
    struct safety_match m[SAFETY_MAX_MATCHES];
    unsigned flags = 0;
    int n = safety_scan_text(sc, text, strlen(text), NULL, 0, m, SAFETY_MAX_MATCHES, &flags);
    assert_true(n >= 0);
    int det = safety_detector_find(sc, type);
    assert_true(det >= 0);
    int c = 0;
    for (int i = 0; i < n; i++)
        c += m[i].detector == det;
    return c;
}

static void expect_detects(const struct safety_config *sc, const char *employee)
{
    assert_int_equal(found(sc, "my ssn is 134-67-7626.", "ssn"), 1);
    assert_int_equal(found(sc, "card 4111 1111 1111 1111", "credit_card"), 1);
    assert_int_equal(found(sc, "AKIAIOSFODNN7EXAMPLE is the key", "aws_access_key"), 1);
    assert_int_equal(found(sc, employee, "employee_id"), 1);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(file, sizeof file, "%s/safety.hsdb", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(file);
    rmdir(dir);
    safety_thread_cleanup();
    return 0;
}

static void test_second_start_loads(void **state)
{
    (void)state;
    unlink(file);
    struct safety_config *a = parse("EMP-[0-9]{6}");
    assert_non_null(a);
    assert_false(a->db_from_cache);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    struct safety_config *b = parse("EMP-[0-9]{6}");
    assert_non_null(b);
    assert_true(b->db_from_cache);
    expect_detects(a, "badge EMP-123456");
    expect_detects(b, "badge EMP-123456");
    assert_int_equal(found(b, "badge EMP-12345", "employee_id"), 0);
    safety_config_free(a);
    safety_config_free(b);
}

/* The patterns changed: the cached database (of the old ones) is not used. */
static void test_changed_patterns_compile(void **state)
{
    (void)state;
    unlink(file);
    struct safety_config *a = parse("EMP-[0-9]{6}");
    assert_non_null(a);
    struct safety_config *b = parse("STAFF-[0-9]{4}");
    assert_non_null(b);
    assert_false(b->db_from_cache);
    expect_detects(b, "badge STAFF-1234");
    assert_int_equal(found(b, "badge EMP-123456", "employee_id"), 0);
    /* And the file now holds the new set's database. */
    struct safety_config *c = parse("STAFF-[0-9]{4}");
    assert_true(c->db_from_cache);
    expect_detects(c, "badge STAFF-1234");
    safety_config_free(a);
    safety_config_free(b);
    safety_config_free(c);
}

/* Every byte flipped in turn (a stride of them): never loaded, always detects. */
static void test_corrupted_file_ignored(void **state)
{
    (void)state;
    unlink(file);
    struct safety_config *a = parse("EMP-[0-9]{6}");
    assert_non_null(a);
    safety_config_free(a);
    FILE *f = fopen(file, "rb");
    assert_non_null(f);
    static unsigned char good[1 << 20];
    size_t len = fread(good, 1, sizeof good, f);
    fclose(f);
    assert_true(len > 100 && len < sizeof good);
    size_t stride = len / 23 + 1;
    for (size_t at = 0; at < len; at += stride) {
        f = fopen(file, "wb");
        assert_non_null(f);
        good[at] ^= 0x20;
        assert_int_equal(fwrite(good, 1, len, f), len);
        good[at] ^= 0x20;
        fclose(f);
        chmod(file, 0600);
        struct safety_config *b = parse("EMP-[0-9]{6}");
        assert_non_null(b);
        if (b->db_from_cache)
            fail_msg("a cache file with byte %zu flipped was loaded", at);
        expect_detects(b, "badge EMP-123456");
        safety_config_free(b);
    }
    /* Truncated. */
    f = fopen(file, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(good, 1, len / 2, f), len / 2);
    fclose(f);
    struct safety_config *c = parse("EMP-[0-9]{6}");
    assert_false(c->db_from_cache);
    expect_detects(c, "badge EMP-123456");
    safety_config_free(c);
}

/*
 * A database of other patterns under this set's key (someone wrote the file with a valid
 * check): the key is over the patterns, so a file made for another set is refused; one
 * rewritten with this set's key needs the writer to be toolgate's user, and a file others may
 * write is not read at all.
 */
static void test_others_may_write_refused(void **state)
{
    (void)state;
    unlink(file);
    struct safety_config *a = parse("EMP-[0-9]{6}");
    safety_config_free(a);
    assert_int_equal(chmod(file, 0666), 0);
    struct safety_config *b = parse("EMP-[0-9]{6}");
    assert_non_null(b);
    assert_false(b->db_from_cache);
    expect_detects(b, "badge EMP-123456");
    safety_config_free(b);
    /* The compile wrote a fresh file, for toolgate's user alone. */
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* A directory others may write: the cache is neither read nor written. */
    assert_int_equal(chmod(dir, 0777), 0);
    struct safety_config *c = parse("EMP-[0-9]{6}");
    assert_non_null(c);
    assert_false(c->db_from_cache);
    expect_detects(c, "badge EMP-123456");
    safety_config_free(c);
    assert_int_equal(chmod(dir, 0700), 0);
    /* A symbolic link in the file's place is not followed. */
    unlink(file);
    char target[300];
    snprintf(target, sizeof target, "%s/elsewhere", dir);
    struct safety_config *d = parse("EMP-[0-9]{6}");
    safety_config_free(d);
    assert_int_equal(rename(file, target), 0);
    assert_int_equal(symlink(target, file), 0);
    struct safety_config *e = parse("EMP-[0-9]{6}");
    assert_false(e->db_from_cache);
    expect_detects(e, "badge EMP-123456");
    safety_config_free(e);
    unlink(target);
}

static void test_config_errors(void **state)
{
    (void)state;
    static const char yaml[] = "safety:\n  compile_cache: \"\"\n";
    struct cfg_doc doc;
    struct cfg_error err = {{0}};
    struct safety_config *sc = NULL;
    assert_int_equal(cfg_load_string(yaml, strlen(yaml), "t.yaml", &doc, &err), 0);
    assert_int_equal(safety_config_parse(&doc, cfg_map_get(doc.root, "safety"), &sc, &err), -1);
    assert_non_null(strstr(err.msg, "directory"));
    cfg_doc_free(&doc);
    /* A directory that does not exist: a warning, and the patterns compiled. */
    char yaml2[256];
    snprintf(yaml2, sizeof yaml2, "safety:\n  compile_cache: \"%s/missing\"\n", dir);
    assert_int_equal(cfg_load_string(yaml2, strlen(yaml2), "t.yaml", &doc, &err), 0);
    assert_int_equal(safety_config_parse(&doc, cfg_map_get(doc.root, "safety"), &sc, &err), 0);
    assert_false(sc->db_from_cache);
    assert_int_equal(found(sc, "my ssn is 134-67-7626.", "ssn"), 1);
    safety_config_free(sc);
    cfg_doc_free(&doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_second_start_loads),
        cmocka_unit_test(test_changed_patterns_compile),
        cmocka_unit_test(test_corrupted_file_ignored),
        cmocka_unit_test(test_others_may_write_refused),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
