/*
 * lib/uri: canonical resource URIs. The hostile spellings of "one level up" and of separators
 * either become the path a backend would open, or are refused; none keeps a form a glob rule
 * and a backend would read differently.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/uri.h"

static const char *canon(const char *in, const char **why)
{
    static struct gw_buf out;
    gw_buf_free(&out);
    *why = NULL;
    if (gw_uri_canonical(in, strlen(in), &out, why) != 0)
        return NULL;
    return out.data ? out.data : "";
}

static void test_canonical_forms(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"file:///public/a.txt", "file:///public/a.txt"},
        {"FILE:///public/a.txt", "file:///public/a.txt"},
        {"file:///public/./a.txt", "file:///public/a.txt"},
        {"file:///public/x/../a.txt", "file:///public/a.txt"},
        {"file:///public/../secret", "file:///secret"},
        {"file:///public/%2e%2e/secret", "file:///secret"},
        {"file:///public/%2E%2E/secret", "file:///secret"},
        {"file:///public/.%2e/secret", "file:///secret"},
        {"file:///public/%61.txt", "file:///public/a.txt"},
        {"file:///public/a%20b", "file:///public/a%20b"},
        {"file:///public/a%c3%a9", "file:///public/a%C3%A9"},
        {"file:///public/", "file:///public/"},
        {"file:///public/.", "file:///public/"},
        {"file:///public/x/..", "file:///public/"},
        {"https://EXAMPLE.org/a/../b?q=%41#f", "https://example.org/b?q=A#f"},
        {"db://Host/t?x", "db://host/t?x"},
        {"urn:isbn:0451450523", "urn:isbn:0451450523"},
        {"test://static/resource/1", "test://static/resource/1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why;
        const char *got = canon(cases[i].in, &why);
        if (!got || strcmp(got, cases[i].out) != 0)
            fail_msg("%s: got %s (%s), want %s", cases[i].in, got ? got : "(refused)",
                     why ? why : "", cases[i].out);
    }
}

static void test_refused(void **state)
{
    (void)state;
    static const struct {
        const char *in, *why;
    } cases[] = {
        {"file:///public/..%2fsecret", "encoded '/'"},
        {"file:///public/..%2Fsecret", "encoded '/'"},
        {"file:///public/..%5csecret", "encoded '/' or '\\'"},
        {"file:///public\\..\\secret", "'\\'"},
        {"file:///public//secret", "empty path segment"},
        {"file:///public/%00x", "NUL"},
        {"file:///public/%0ax", "control"},
        {"file:///public/a b", "whitespace"},
        {"file:///public/a\tb", "whitespace"},
        {"file:///public/%zz", "two hex digits"},
        {"file:///public/%4", "two hex digits"},
        {"file:///..", "above the root"},
        {"file:///public/../../etc/passwd", "above the root"},
        {"https://user:pw@host/x", "userinfo"},
        {"/public/a.txt", "absolute"},
        {"../a", "absolute"},
        {"", "not a URI"},
        {"urn:a:../b", "not hierarchical"},
        /* Without a root: no empty or '.' segment either. */
        {"file:HTTP://Example.ORG//", "empty path segment"},
        {"mem:notes//1", "empty path segment"},
        {"mem:notes/./1", "'.' segment"},
        {"mem:./notes", "'.' segment"},
        /* The authority is a plain host[:port]. */
        {"ehr://pns%3f/x", "authority"},
        {"ehr://p%2fx/y", "encoded"},
        {"ehr://p%40x/y", "authority"},
        {"ehr://p\xc3\xa9/y", "authority"},
        {"ehr://host<x>/y", "authority"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why;
        const char *got = canon(cases[i].in, &why);
        if (got || !why || !strstr(why, cases[i].why))
            fail_msg("%s: got %s (%s), want refusal \"%s\"", cases[i].in, got ? got : "(refused)",
                     why ? why : "", cases[i].why);
    }
    char big[GW_URI_MAX + 10];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "file:///", 8);
    const char *why;
    assert_null(canon(big, &why));
}

/* Canonical forms are fixed points: canonicalizing again changes nothing. */
static void test_idempotent(void **state)
{
    (void)state;
    const char *ins[] = {"file:///public/x/../a%2e%2E/%7e?%7e#x", "HTTP://H/a/./b/..",
                         "x:/a/b/c/./../d"};
    for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++) {
        const char *why;
        const char *once = canon(ins[i], &why);
        assert_non_null(once);
        char copy[256];
        snprintf(copy, sizeof copy, "%s", once);
        const char *twice = canon(copy, &why);
        assert_non_null(twice);
        assert_string_equal(copy, twice);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_forms),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
