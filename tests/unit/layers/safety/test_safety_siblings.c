/*
 * safety: a member's siblings as context. A weak shape (bare digits, a date, a letter and
 * eight digits) in a member of an object is reported when a label among the object's other
 * members names its type ({"type": "ssn", "value": "427450619"}), in both directions and in
 * arrays of such objects; and not when the label names something else, is free text, holds
 * the word inside another word, sits in a parent or child object, or is the member itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/request-t.h"
#include "layers/safety/safety-int.h"

static struct safety_config *dflt;

static int group_setup(void **state)
{
    (void)state;
    dflt = safety_config_default();
    return dflt ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    safety_config_free(dflt);
    safety_thread_cleanup();
    return 0;
}

struct scanned {
    struct gw_findings f;
    struct safety_result res;
    char *out; /* the document as the scan left it (compact) */
};

static struct scanned scan(enum gw_direction dir, const char *text)
{
    struct scanned s;
    memset(&s, 0, sizeof s);
    json_error_t err;
    json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, &err);
    if (!doc)
        fail_msg("not JSON: %s: %s", err.text, text);
    size_t budget = 1 << 20;
    struct safety_scan_opts o = {.direction = dir, .redact = 1, .budget = &budget};
    safety_scan_json(dflt, doc, "", &o, &s.f, &s.res);
    s.out = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (s.res.error)
        fail_msg("scan error %s: %s", s.res.error_code, text);
    return s;
}

static void scanned_free(struct scanned *s)
{
    gw_findings_free(&s->f);
    free(s->out);
}

static int has(const struct scanned *s, const char *type, const char *path)
{
    for (size_t i = 0; i < s->f.n; i++)
        if (strcmp(s->f.items[i].type, type) == 0 &&
            (!path || strcmp(s->f.items[i].path, path) == 0))
            return 1;
    return 0;
}

/* Found as type at path, in both directions. */
static void expect_found(const char *text, const char *type, const char *path)
{
    for (int d = 0; d < 2; d++) {
        struct scanned s = scan(d ? GW_DIR_RESPONSE : GW_DIR_REQUEST, text);
        if (!has(&s, type, path))
            fail_msg("%s: no %s at %s (%s; %zu findings)", text, type, path,
                     d ? "response" : "request", s.f.n);
        scanned_free(&s);
    }
}

/* Not found as type at path (NULL: anywhere), in both directions. */
static void expect_not_at(const char *text, const char *type, const char *path)
{
    for (int d = 0; d < 2; d++) {
        struct scanned s = scan(d ? GW_DIR_RESPONSE : GW_DIR_REQUEST, text);
        if (has(&s, type, path))
            fail_msg("%s: %s found at %s (%s)", text, type, s.f.items[0].path,
                     d ? "response" : "request");
        scanned_free(&s);
    }
}

static void expect_not(const char *text, const char *type)
{
    expect_not_at(text, type, NULL);
}

static void test_label_in_sibling_value(void **state)
{
    (void)state;
    expect_found("{\"type\":\"ssn\",\"value\":\"427450619\"}", "ssn", "/value");
    expect_found("{\"field\":\"ssn\",\"value\":\"427450619\"}", "ssn", "/value");
    expect_found("{\"name\":\"Social Security Number\",\"value\":\"427450619\"}", "ssn", "/value");
    expect_found("{\"value\":\"427 45 0619\",\"label\":\"SSN\"}", "ssn", "/value");
    expect_found("{\"kind\":\"itin\",\"id\":\"912701234\"}", "itin", "/id");
    expect_found("{\"kind\":\"mrn\",\"id\":\"00412345\"}", "mrn", "/id");
    expect_found("{\"kind\":\"Medical Record\",\"id\":\"00412345\"}", "mrn", "/id");
    expect_found("{\"type\":\"date of birth\",\"value\":\"1984-03-05\"}", "dob", "/value");
    expect_found("{\"type\":\"DOB\",\"value\":\"March 5, 1984\"}", "dob", "/value");
    expect_found("{\"document\":\"passport\",\"number\":\"C03005988\"}", "passport", "/number");
    expect_found("{\"document\":\"driver license\",\"number\":\"D1234567\"}", "drivers_license",
                 "/number");
    expect_found("{\"system\":\"npi\",\"value\":\"1234567893\"}", "npi", "/value");
    expect_found("{\"name\":\"DB_PASSWORD\",\"value\":\"hN7x2Kq9Lm4pZr8T\"}", "generic_secret",
                 "/value");
    /* Numbers take it too, as they take their member name. */
    expect_found("{\"type\":\"ssn\",\"value\":427450619}", "ssn", "/value");
    /* The label after the value counts as much as before it. */
    expect_found("{\"value\":\"427450619\",\"type\":\"ssn\"}", "ssn", "/value");
}

static void test_label_forms(void **state)
{
    (void)state;
    /* camelCase, snake_case, kebab-case and full-width labels, read as member names are. */
    expect_found("{\"t\":\"socialSecurityNumber\",\"v\":\"427450619\"}", "ssn", "/v");
    expect_found("{\"t\":\"patient_ssn\",\"v\":\"427450619\"}", "ssn", "/v");
    expect_found("{\"t\":\"us-ssn\",\"v\":\"427450619\"}", "ssn", "/v");
    expect_found("{\"t\":\"\xef\xbd\x93\xef\xbd\x93\xef\xbd\x8e\",\"v\":\"427450619\"}", "ssn",
                 "/v");
    expect_found("{\"t\":\"dateOfBirth\",\"v\":\"1984-03-05\"}", "dob", "/v");
    expect_found("{\"t\":\"Patient MRN\",\"v\":\"00412345\"}", "mrn", "/v");
}

static void test_arrays_and_nesting(void **state)
{
    (void)state;
    /* Arrays of labelled objects: each object on its own. */
    expect_found("[{\"kind\":\"mrn\",\"id\":\"00412345\"},{\"kind\":\"ssn\",\"id\":\"427450619\"}]",
                 "mrn", "/0/id");
    expect_found("[{\"kind\":\"mrn\",\"id\":\"00412345\"},{\"kind\":\"ssn\",\"id\":\"427450619\"}]",
                 "ssn", "/1/id");
    expect_not("[{\"kind\":\"mrn\",\"id\":\"x\"},{\"kind\":\"order\",\"id\":\"427450619\"}]",
               "ssn");
    /* Items of an array member take the member's siblings as they take its name. */
    expect_found("{\"type\":\"ssn\",\"values\":[\"427450619\",\"219099991\"]}", "ssn", "/values/0");
    /* Deep inside a message: structuredContent of a result. */
    expect_found("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"structuredContent\":{\"ids\":[{"
                 "\"kind\":\"mrn\",\"id\":\"00412345\"}]}}}",
                 "mrn", "/result/structuredContent/ids/0/id");
    /* A label in a parent, a child or a cousin object is not a sibling. */
    expect_not("{\"type\":\"ssn\",\"inner\":{\"value\":\"427450619\"}}", "ssn");
    expect_not("{\"meta\":{\"type\":\"ssn\"},\"value\":\"427450619\"}", "ssn");
    expect_not("[{\"type\":\"ssn\"},{\"value\":\"427450619\"}]", "ssn");
    expect_not("{\"labels\":[\"ssn\"],\"value\":\"427450619\"}", "ssn");
}

static void test_negatives(void **state)
{
    (void)state;
    expect_not("{\"type\":\"order\",\"value\":\"427450619\"}", "ssn");
    expect_not("{\"type\":\"order\",\"value\":\"00412345\"}", "mrn");
    expect_not("{\"type\":\"created\",\"value\":\"1984-03-05\"}", "dob");
    /* The word inside another word. */
    expect_not("{\"type\":\"ssnx\",\"value\":\"427450619\"}", "ssn");
    expect_not("{\"type\":\"lessn\",\"value\":\"427450619\"}", "ssn");
    expect_not("{\"type\":\"mrna\",\"value\":\"00412345\"}", "mrn");
    expect_not("{\"type\":\"adobe\",\"value\":\"1984-03-05\"}", "dob");
    /* Unlike in a member name, a longer word in a label must be whole words. */
    expect_not("{\"ward\":\"newborns\",\"value\":\"1984-03-05\"}", "dob");
    expect_not("{\"field\":\"birthplace\",\"value\":\"1984-03-05\"}", "dob");
    expect_found("{\"field\":\"birthDate\",\"value\":\"1984-03-05\"}", "dob", "/value");
    expect_found("{\"field\":\"Place of birth\",\"value\":\"1984-03-05\"}", "dob", "/value");
    /* Free text is not a label: more than four words, or longer than 64 bytes. */
    expect_not("{\"note\":\"call me about my ssn tomorrow\",\"id\":\"427450619\"}", "ssn");
    expect_not("{\"note\":\"ssn-and-everything-else-that-goes-into-a-very-long-single-word-xyz\","
               "\"id\":\"427450619\"}",
               "ssn");
    /* A value with a digit is data, not a label (MRN-17876879 does not make 97243123 an MRN). */
    expect_not_at("{\"mrn\":\"MRN-17876879\",\"value\":\"972431234\"}", "mrn", "/value");
    expect_not("{\"a\":\"ssn 1\",\"value\":\"427450619\"}", "ssn");
    /* Sibling member names are not context: in a record every member would lend its type to
     * every other one. */
    expect_not("{\"ssn\":\"***-**-0619\",\"value\":\"427450619\"}", "ssn");
    expect_not_at("{\"date_of_birth\":\"1966-04-08\",\"value\":\"2024-03-05\"}", "dob", "/value");
    /* A member's own value is not its own sibling. */
    expect_not("{\"value\":\"427450619\",\"other\":\"x\"}", "ssn");
}

static void test_redaction_on_the_member(void **state)
{
    (void)state;
    /* Responses redact SSNs by default: the value, not the label. */
    struct scanned s = scan(GW_DIR_RESPONSE, "{\"type\":\"ssn\",\"value\":\"427450619\"}");
    assert_string_equal(s.out, "{\"type\":\"ssn\",\"value\":\"[REDACTED:SSN]\"}");
    assert_int_equal(s.f.n, 1);
    assert_string_equal(s.f.items[0].path, "/value");
    scanned_free(&s);
    s = scan(GW_DIR_RESPONSE, "{\"id\":427450619,\"kind\":\"SSN\"}");
    assert_string_equal(s.out, "{\"id\":\"[REDACTED:SSN]\",\"kind\":\"SSN\"}");
    scanned_free(&s);
    /* Requests block them and redact MRNs. */
    s = scan(GW_DIR_REQUEST, "{\"field\":\"ssn\",\"value\":\"427450619\"}");
    assert_true(s.res.block);
    assert_string_equal(s.res.block_type, "ssn");
    assert_string_equal(s.res.block_path, "/value");
    scanned_free(&s);
    s = scan(GW_DIR_REQUEST, "[{\"kind\":\"mrn\",\"id\":\"00412345\"}]");
    assert_false(s.res.block);
    assert_string_equal(s.out, "[{\"kind\":\"mrn\",\"id\":\"[REDACTED:MRN]\"}]");
    scanned_free(&s);
}

static void test_redaction_is_not_a_label(void **state)
{
    (void)state;
    /* "[REDACTED:SSN]" written into the first member must not make the second one an SSN. */
    struct scanned s = scan(GW_DIR_RESPONSE, "{\"a\":\"427-45-0619\",\"value\":\"427450619\"}");
    assert_string_equal(s.out, "{\"a\":\"[REDACTED:SSN]\",\"value\":\"427450619\"}");
    assert_int_equal(s.f.n, 1);
    scanned_free(&s);
    s = scan(GW_DIR_RESPONSE, "{\"a\":\"MRN-00412345\",\"id\":\"00412346\"}");
    assert_string_equal(s.out, "{\"a\":\"[REDACTED:MRN]\",\"id\":\"00412346\"}");
    scanned_free(&s);
    /* Nor when it comes back in the next message (a model echoes what it was shown). */
    expect_not("{\"a\":\"[REDACTED:SSN]\",\"value\":\"427450619\"}", "ssn");
    expect_not("{\"label\":\"[REDACTED:DOB]\",\"value\":\"2024-03-05\"}", "dob");
    expect_not("{\"label\":\"[REDACTED]\",\"id\":\"00412345\"}", "mrn");
}

static void test_what_was_found_stays_found(void **state)
{
    (void)state;
    /* A label that names another type takes nothing away. */
    expect_found("{\"type\":\"order\",\"ssn\":\"427450619\"}", "ssn", "/ssn");
    expect_found("{\"type\":\"order\",\"value\":\"427-45-0619\"}", "ssn", "/value");
    expect_found("{\"type\":\"mrn\",\"value\":\"SSN 427450619\"}", "ssn", "/value");
}

/* Members that hold a value of a type named beside them: only those take labels. */
static void test_only_holders_take_labels(void **state)
{
    (void)state;
    /* A tool's input schema: a description beside numbers that are limits, not licences. */
    expect_not("{\"type\":\"integer\",\"description\":\"Driver ID\",\"minimum\":100000,"
               "\"maximum\":99999999}",
               "drivers_license");
    expect_not("{\"type\":\"chart\",\"updated\":1712345678,\"points\":[1200345,1300456]}", "mrn");
    expect_not("{\"role\":\"driver\",\"zip\":\"94110\",\"employee_id\":\"12345678\"}",
               "drivers_license");
    expect_not("{\"method\":\"auth\",\"request_id\":\"a8Fk2LmQ9xZ3pQ7w\"}", "generic_secret");
    expect_not("{\"event\":\"Birthday party\",\"date\":\"2024-06-01\"}", "dob");
    expect_not("{\"title\":\"Passport renewal\",\"ticket\":\"C03005988\"}", "passport");
    /* The names that do, however they are written. */
    expect_found("{\"type\":\"ssn\",\"Value\":\"427450619\"}", "ssn", "/Value");
    expect_found("{\"type\":\"ssn\",\"ID\":\"427450619\"}", "ssn", "/ID");
    expect_found("{\"type\":\"ssn\",\"identifier\":\"427450619\"}", "ssn", "/identifier");
    expect_found("{\"type\":\"ssn\",\"no\":\"427450619\"}", "ssn", "/no");
    expect_found("{\"question\":\"Date of birth\",\"answer\":\"1984-03-05\"}", "dob", "/answer");
    expect_not("{\"type\":\"ssn\",\"value_id\":\"427450619\"}", "ssn");
}

/* Initials spell their word, in a member name and in a label: "D.O.B.", "S_S_N". */
static void test_initials(void **state)
{
    (void)state;
    expect_found("{\"D.O.B.\":\"1984-03-05\"}", "dob", "/D.O.B.");
    expect_found("{\"patient_s_s_n\":\"427450619\"}", "ssn", "/patient_s_s_n");
    expect_found("{\"label\":\"D.O.B.\",\"value\":\"1984-03-05\"}", "dob", "/value");
    expect_found("{\"field\":\"S.S.N.\",\"value\":\"427450619\"}", "ssn", "/value");
    /* Other initials spell other words; one letter is no word. */
    expect_not("{\"a.b.c\":\"1984-03-05\"}", "dob");
    expect_not("{\"d.o\":\"1984-03-05\"}", "dob");
    expect_not("{\"d\":\"1984-03-05\"}", "dob");
    expect_not("{\"label\":\"U.S.A.\",\"value\":\"427450619\"}", "ssn");
}

/* What is not a label: punctuation other than a name's, too many words however joined. */
static void test_label_shape(void **state)
{
    (void)state;
    /* The envelope's method is not a label for its id. */
    expect_not("{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"id\":2125550143}", "phone");
    expect_not("{\"t\":\"call/phone\",\"value\":\"2125550143\"}", "phone");
    expect_not("{\"t\":\"see: ssn\",\"value\":\"427450619\"}", "ssn");
    /* A URL is a label by its last path segment only (a FHIR identifier's system). */
    expect_found("{\"system\":\"http://hl7.org/fhir/sid/us-ssn\",\"value\":\"427450619\"}", "ssn",
                 "/value");
    expect_found("{\"system\":\"HTTPS://example.org/ids/mrn\",\"value\":\"00412345\"}", "mrn",
                 "/value");
    expect_not("{\"t\":\"https://example.com/ssn/lookup?id=1\",\"value\":\"427450619\"}", "ssn");
    expect_not("{\"t\":\"https://ssn.example.com\",\"value\":\"427450619\"}", "ssn");
    expect_not("{\"t\":\"ftp://example.com/ssn\",\"value\":\"427450619\"}", "ssn");
    expect_not("{\"t\":\"https://example.com/order\",\"value\":\"427450619\"}", "ssn");
    /* The path's last segment, not the query's or the fragment's; a trailing slash aside. */
    expect_not("{\"t\":\"https://x.example/search?next=/ssn\",\"value\":\"427450619\"}", "ssn");
    expect_not("{\"t\":\"https://x.example/page#ssn\",\"value\":\"427450619\"}", "ssn");
    expect_found("{\"t\":\"https://x.example/ids/ssn?v=2#top\",\"value\":\"427450619\"}", "ssn",
                 "/value");
    expect_found("{\"t\":\"http://hl7.org/fhir/sid/us-ssn/\",\"value\":\"427450619\"}", "ssn",
                 "/value");
    expect_not("{\"t\":\"https://\",\"value\":\"427450619\"}", "ssn");
    expect_not("{\"t\":\"https://x.example//\",\"value\":\"427450619\"}", "ssn");
    expect_not("{\"t\":\"call-me-about-my-ssn-tomorrow\",\"value\":\"427450619\"}", "ssn");
    expect_not("{\"t\":\"callMeAboutMySsnTomorrow\",\"value\":\"427450619\"}", "ssn");
    expect_not("{\"t\":\"a\",\"value\":\"427450619\"}", "ssn");
    /* A name's own punctuation is fine. */
    expect_found("{\"t\":\"SSN #\",\"value\":\"427450619\"}", "ssn", "/value");
    expect_found("{\"t\":\"Soc. Sec. No.\",\"value\":\"427450619\"}", "ssn", "/value");
    expect_found("{\"t\":\"patient's ssn\",\"value\":\"427450619\"}", "ssn", "/value");
}

/* An object of n members: labels that name nothing, then one that names the type. */
static char *big_object(size_t n, const char *last)
{
    size_t cap = n * 40 + 64, len = 0;
    char *b = malloc(cap);
    assert_non_null(b);
    b[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(b + len, cap - len, "\"k%zu\":\"%s\",", i,
                                i + 1 == n ? last : "order");
    len += (size_t)snprintf(b + len, cap - len, "\"value\":\"427450619\",\"id\":\"219099991\"}");
    return b;
}

static void test_many_siblings(void **state)
{
    (void)state;
    /* Every member is consulted: a label behind 10,000 others counts, for each holder. */
    char *b = big_object(10000, "ssn");
    struct scanned s = scan(GW_DIR_RESPONSE, b);
    assert_int_equal(s.res.findings, 2);
    scanned_free(&s);
    free(b);
    /* Many labels that name nothing: no finding. */
    b = big_object(3000, "order");
    s = scan(GW_DIR_RESPONSE, b);
    assert_int_equal(s.res.findings, 0);
    scanned_free(&s);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_in_sibling_value),
        cmocka_unit_test(test_label_forms),
        cmocka_unit_test(test_arrays_and_nesting),
        cmocka_unit_test(test_negatives),
        cmocka_unit_test(test_redaction_on_the_member),
        cmocka_unit_test(test_redaction_is_not_a_label),
        cmocka_unit_test(test_what_was_found_stays_found),
        cmocka_unit_test(test_only_holders_take_labels),
        cmocka_unit_test(test_label_shape),
        cmocka_unit_test(test_initials),
        cmocka_unit_test(test_many_siblings),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
