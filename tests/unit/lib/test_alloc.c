/* lib/alloc: which allocator serves malloc in this build (every library's allocations
 * included), and that collecting and lean mode give freed memory back to the system. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fixtures.h"
#include "lib/alloc.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <unistd.h>

static void test_allocator_named(void **state)
{
    (void)state;
    const char *name = gw_allocator();
#ifdef TOOLGATE_MIMALLOC
    /* "mimalloc M.m.p": the interposition worked, for this file's malloc at least. */
    assert_int_equal(strncmp(name, "mimalloc ", 9), 0);
    assert_true(strlen(name) >= strlen("mimalloc 1.0.0"));
#elif defined(__SANITIZE_ADDRESS__)
    assert_string_equal(name, "sanitizer");
#else
    assert_string_equal(name, "libc");
#endif
    assert_ptr_equal(gw_allocator(), name); /* probed once, the same static text */
}

/* What the libraries allocate comes from the same allocator as toolgate's own memory. */
static void test_libraries_share_it(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:s}", "k", "v");
    char *dumped = json_dumps(o, 0);              /* jansson */
    void *ossl = OPENSSL_malloc(100);             /* OpenSSL */
    char *esc = curl_easy_escape(NULL, "a b", 0); /* libcurl */
    char *dup = strdup("toolgate");               /* libc itself */
    void *own = malloc(100);
    assert_non_null(dumped);
    assert_non_null(ossl);
    assert_non_null(esc);
    assert_non_null(dup);
    assert_non_null(own);
#ifdef TOOLGATE_MIMALLOC
    bool expect = true;
#else
    bool expect = false;
#endif
    assert_int_equal(gw_allocator_owns(own), expect);
    assert_int_equal(gw_allocator_owns(dumped), expect);
    assert_int_equal(gw_allocator_owns(ossl), expect);
    assert_int_equal(gw_allocator_owns(esc), expect);
    assert_int_equal(gw_allocator_owns(dup), expect);
    assert_false(gw_allocator_owns(NULL));
    free(own);
    free(dup);
    curl_free(esc);
    OPENSSL_free(ossl);
    free(dumped);
    json_decref(o);
}

/* 64 MiB freed and collected is no longer resident. mimalloc keeps what was freed in the
 * last 25 ms (its decommit delay) for reuse; the workers collect after a quiet second. */
static void test_collect_returns_memory(void **state)
{
    (void)state;
    long live = fx_churn_64mib();
    usleep(100 * 1000);
    gw_allocator_collect();
    long after = fx_rss_kib();
#ifndef __SANITIZE_ADDRESS__ /* ASan's allocator holds freed memory in its quarantine */
    assert_true(live - after >= 48 * 1024);
#else
    (void)live;
    (void)after;
#endif
}

/* In lean mode memory freed goes back at once, without a collect; leaving it restores
 * reuse, and a second leave is harmless. (With glibc's allocator lean mode changes nothing.) */
static void test_lean_mode(void **state)
{
    (void)state;
    gw_allocator_lean(true);
    gw_allocator_lean(true); /* entered twice: the kept setting is the original one */
    long live = fx_churn_64mib();
    long after = fx_rss_kib();
    gw_allocator_lean(false);
    gw_allocator_lean(false);
#ifdef TOOLGATE_MIMALLOC
    assert_true(live - after >= 48 * 1024);
    /* Out of lean mode, freed memory is kept for reuse again (the decommit delay is back). */
    long live2 = fx_churn_64mib();
    long kept = fx_rss_kib();
    assert_true(live2 - kept < 16 * 1024);
#else
    (void)live;
    (void)after;
#endif
    /* Allocation still works after leaving lean mode. */
    fx_churn_64mib();
    gw_allocator_collect();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocator_named),
        cmocka_unit_test(test_libraries_share_it),
        cmocka_unit_test(test_collect_returns_memory),
        cmocka_unit_test(test_lean_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
