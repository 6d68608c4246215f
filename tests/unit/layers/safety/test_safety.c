/*
 * safety: validators, normalization and offset mapping, every built-in detector (valid
 * instances, look-alikes, context rules), custom detectors, and the `safety` configuration
 * section (defaults and errors).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

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

/* Number of spans of detector `type` found in text (with member name key, may be NULL). */
static int count_in(const struct safety_config *sc, const char *text, const char *key,
                    const char *type)
{
    struct safety_match m[SAFETY_MAX_MATCHES];
    unsigned flags = 0;
    int n = safety_scan_text(sc, text, strlen(text), key, key ? strlen(key) : 0, m,
                             SAFETY_MAX_MATCHES, &flags);
    assert_true(n >= 0);
    int det = safety_detector_find(sc, type);
    assert_true(det >= 0);
    int c = 0;
    for (int i = 0; i < n; i++)
        c += m[i].detector == det;
    return c;
}

static int count(const char *text, const char *type)
{
    return count_in(dflt, text, NULL, type);
}

/* Total spans of any type. */
static int total(const char *text, const char *key)
{
    struct safety_match m[SAFETY_MAX_MATCHES];
    unsigned flags = 0;
    int n = safety_scan_text(dflt, text, strlen(text), key, key ? strlen(key) : 0, m,
                             SAFETY_MAX_MATCHES, &flags);
    assert_true(n >= 0);
    return n;
}

#define OK(fn, s) assert_int_equal(fn(s, strlen(s)), 1)
#define BAD(fn, s) assert_int_equal(fn(s, strlen(s)), 0)

/* ---- validators ------------------------------------------------------------------------ */

static void test_luhn(void **state)
{
    (void)state;
    OK(safety_luhn_ok, "79927398713");
    BAD(safety_luhn_ok, "79927398710");
    BAD(safety_luhn_ok, "");
    BAD(safety_luhn_ok, "7992739871a");
}

static int card(const char *s)
{
    return safety_card_ok(s, strlen(s), NULL);
}

static void test_card(void **state)
{
    (void)state;
    const char *brand = NULL;
    assert_int_equal(safety_card_ok("4111111111111111", 16, &brand), 1);
    assert_string_equal(brand, "visa");
    assert_int_equal(card("5555555555554444"), 1); /* mastercard 51-55 */
    assert_int_equal(card("2223003122003222"), 1); /* mastercard 2221-2720 */
    assert_int_equal(card("378282246310005"), 1);  /* amex 15 */
    assert_int_equal(card("6011111111111117"), 1); /* discover */
    assert_int_equal(card("3530111333300000"), 1); /* jcb */
    assert_int_equal(card("30569309025904"), 1);   /* diners 14 */
    assert_int_equal(card("6200000000000005"), 1); /* unionpay */
    assert_int_equal(card("4111 1111 1111 1111"), 1);
    assert_int_equal(card("4111-1111-1111-1111"), 1);
    assert_string_equal((safety_card_ok("378282246310005", 15, &brand), brand), "amex");
    /* Luhn fails, unknown prefix, wrong length for the brand, letters, too short/long. */
    assert_int_equal(card("4111111111111112"), 0);
    assert_int_equal(card("1234567812345670"), 0);
    assert_int_equal(card("411111111111111"), 0);  /* visa 15 */
    assert_int_equal(card("3782822463100050"), 0); /* amex 16 */
    assert_int_equal(card("4111x11111111111"), 0);
    assert_int_equal(card("41111111113"), 0);
    assert_int_equal(card("41111111111111111111"), 0);
    assert_int_equal(card(""), 0);
}

static void test_iban(void **state)
{
    (void)state;
    OK(safety_iban_ok, "DE89370400440532013000");
    OK(safety_iban_ok, "GB82WEST12345698765432");
    OK(safety_iban_ok, "NL91ABNA0417164300");
    OK(safety_iban_ok, "FR1420041010050500013M02606");
    OK(safety_iban_ok, "BE68539007547034");
    OK(safety_iban_ok, "CH9300762011623852957");
    BAD(safety_iban_ok, "DE89370400440532013001"); /* mod 97 */
    BAD(safety_iban_ok, "DE8937040044053201300");  /* length */
    BAD(safety_iban_ok, "XX89370400440532013000"); /* country */
    BAD(safety_iban_ok, "de89370400440532013000"); /* electronic format is upper case */
    BAD(safety_iban_ok, "GB82 WEST 1234 5698 7654 32");
    BAD(safety_iban_ok, "NL91ABNA04171643AA"); /* structure: digits wanted */
    BAD(safety_iban_ok, "BE68539007547035");   /* Belgian national check */
    BAD(safety_iban_ok, "");
}

static void test_ssn_itin(void **state)
{
    (void)state;
    OK(safety_ssn_ok, "134-67-7626");
    OK(safety_ssn_ok, "134 67 7626");
    OK(safety_ssn_ok, "134677626");
    BAD(safety_ssn_ok, "000-67-7626");
    BAD(safety_ssn_ok, "666-67-7626");
    BAD(safety_ssn_ok, "900-67-7626");
    BAD(safety_ssn_ok, "999-67-7626");
    BAD(safety_ssn_ok, "134-00-7626");
    BAD(safety_ssn_ok, "134-67-0000");
    BAD(safety_ssn_ok, "078-05-1120"); /* the wallet sample */
    BAD(safety_ssn_ok, "219-09-9999");
    BAD(safety_ssn_ok, "123-45-6789");
    BAD(safety_ssn_ok, "111-11-1111");
    BAD(safety_ssn_ok, "134-67 7626"); /* mixed delimiters */
    OK(safety_ssn_ok, "134.67.7626");
    BAD(safety_ssn_ok, "134.67-7626");
    BAD(safety_ssn_ok, "13467762");
    OK(safety_itin_ok, "912-70-1234");
    OK(safety_itin_ok, "912 50 1234");
    OK(safety_itin_ok, "912941234");
    BAD(safety_itin_ok, "912-89-1234");
    BAD(safety_itin_ok, "912-93-1234");
    BAD(safety_itin_ok, "912-40-1234");
    BAD(safety_itin_ok, "812-70-1234");
    BAD(safety_itin_ok, "912-70-0000");
}

static void test_npi_dea(void **state)
{
    (void)state;
    OK(safety_npi_ok, "1234567893");
    BAD(safety_npi_ok, "1234567890");
    BAD(safety_npi_ok, "3234567893"); /* starts 1 or 2 */
    BAD(safety_npi_ok, "123456789");
    OK(safety_dea_ok, "AB1234563");
    OK(safety_dea_ok, "F91234563");
    BAD(safety_dea_ok, "AB1234567"); /* checksum */
    BAD(safety_dea_ok, "IB1234563"); /* I is not a registrant type */
    BAD(safety_dea_ok, "Ab1234563");
    BAD(safety_dea_ok, "AB123456");
}

static void test_network(void **state)
{
    (void)state;
    OK(safety_ipv4_ok, "192.168.1.20");
    OK(safety_ipv4_ok, "0.0.0.0");
    BAD(safety_ipv4_ok, "256.1.1.1");
    BAD(safety_ipv4_ok, "01.2.3.4");
    BAD(safety_ipv4_ok, "1.2.3");
    BAD(safety_ipv4_ok, "1.2.3.4.5");
    OK(safety_ipv6_ok, "2001:db8::1");
    OK(safety_ipv6_ok, "fe80::1ff:fe23:4567:890a");
    OK(safety_ipv6_ok, "::ffff:192.0.2.1");
    BAD(safety_ipv6_ok, "12:34:56");
    BAD(safety_ipv6_ok, "::1");
    BAD(safety_ipv6_ok, "2001:db8:::1");
    OK(safety_email_ok, "jane.doe@example.com");
    OK(safety_email_ok, "a+tag@mail.example.co.uk");
    BAD(safety_email_ok, "a..b@example.com");
    BAD(safety_email_ok, ".a@example.com");
    BAD(safety_email_ok, "a@localhost");
    BAD(safety_email_ok, "a@-example.com");
    BAD(safety_email_ok, "a@example.c0m");
    OK(safety_phone_ok, "+1 415-555-2671");
    OK(safety_phone_ok, "+44 20 7946 0958");
    OK(safety_phone_ok, "(415) 555-2671");
    OK(safety_phone_ok, "415.555.2671");
    OK(safety_phone_ok, "14155552671");
    BAD(safety_phone_ok, "123-456-7890"); /* area starts with 1 */
    BAD(safety_phone_ok, "415-155-2671"); /* exchange starts with 1 */
    BAD(safety_phone_ok, "+1 123 555 2671");
    BAD(safety_phone_ok, "+0 20 7946 0958");
    BAD(safety_phone_ok, "+4420");
}

static void test_dates_jwt_entropy(void **state)
{
    (void)state;
    OK(safety_date_ok, "1984-03-05");
    OK(safety_date_ok, "03/05/1984");
    OK(safety_date_ok, "25.12.1970");
    OK(safety_date_ok, "March 5, 1984");
    OK(safety_date_ok, "5th March 1984");
    OK(safety_date_ok, "02/29/2000");
    BAD(safety_date_ok, "02/29/1900");
    BAD(safety_date_ok, "02/30/1990");
    BAD(safety_date_ok, "13/13/2000");
    BAD(safety_date_ok, "1850-01-01");
    BAD(safety_date_ok, "Smarch 5, 1984");
    OK(safety_jwt_ok, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
                      "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c");
    /* The header must be a JSON object with "alg". */
    BAD(safety_jwt_ok, "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.abc");
    BAD(safety_jwt_ok, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
    assert_true(safety_entropy("aaaa", 4) == 0.0);
    assert_true(safety_entropy("abcd", 4) == 2.0);
}

/* ---- normalization --------------------------------------------------------------------- */

static void test_normalize(void **state)
{
    (void)state;
    char *out;
    size_t n;
    uint32_t *map;
    const char *ascii = "plain 123";
    assert_int_equal(safety_normalize(ascii, strlen(ascii), &out, &n, &map), 0);
    assert_ptr_equal(out, ascii);
    assert_null(map);
    /* Full-width "１２" (3 bytes each), a zero-width space, an en dash, NBSP. */
    const char *s = "a\xef\xbc\x91\xef\xbc\x92\xe2\x80\x8b-\xe2\x80\x93\xc2\xa0z";
    assert_int_equal(safety_normalize(s, strlen(s), &out, &n, &map), 0);
    assert_int_equal(n, 7);
    assert_memory_equal(out, "a12-- z", 7);
    uint32_t want[] = {0, 1, 4, 10, 11, 14, 16, 17};
    for (size_t i = 0; i <= n; i++)
        assert_int_equal(map[i], want[i]);
    free(out);
    free(map);
    /* Non-ASCII that needs no folding leaves the text alone. */
    const char *e = "caf\xc3\xa9 123";
    assert_int_equal(safety_normalize(e, strlen(e), &out, &n, &map), 0);
    assert_ptr_equal(out, e);
}

static void test_offsets_mapped_back(void **state)
{
    (void)state;
    struct safety_match m[8];
    unsigned flags = 0;
    /* "SSN １３４-６７-７６２６ ok": full-width digits, spans mapped to the original bytes. */
    const char *s = "SSN \xef\xbc\x91\xef\xbc\x93\xef\xbc\x94-\xef\xbc\x96\xef\xbc\x97-"
                    "\xef\xbc\x97\xef\xbc\x96\xef\xbc\x92\xef\xbc\x96 ok";
    int n = safety_scan_text(dflt, s, strlen(s), NULL, 0, m, 8, &flags);
    assert_int_equal(n, 1);
    assert_string_equal(safety_detector_name(dflt, m[0].detector), "ssn");
    assert_int_equal(m[0].start, 4);
    assert_int_equal(m[0].end, strlen(s) - 3);
    /* Zero-width characters inside the number. */
    const char *z = "card 4111\xe2\x80\x8b 1111 1111\xe2\x80\x8c 1111.";
    n = safety_scan_text(dflt, z, strlen(z), NULL, 0, m, 8, &flags);
    assert_int_equal(n, 1);
    assert_string_equal(safety_detector_name(dflt, m[0].detector), "credit_card");
    assert_int_equal(m[0].start, 5);
    assert_int_equal(m[0].end, strlen(z) - 1);
}

/* ---- detectors ------------------------------------------------------------------------- */

static void test_detect_ids(void **state)
{
    (void)state;
    assert_int_equal(count("my ssn is 134-67-7626.", "ssn"), 1);
    assert_int_equal(count("call me: 134-67-7626", "ssn"), 1); /* dashed: no context needed */
    assert_int_equal(count("order 078-05-1120", "ssn"), 0);
    assert_int_equal(count("ORD-134-67-7626", "ssn"), 0); /* part of a longer id */
    assert_int_equal(count("134-67-7626-01", "ssn"), 0);
    assert_int_equal(count("order #134-67-7626", "ssn"), 0); /* named as something else */
    assert_int_equal(count("invoice no. 134-67-7626", "ssn"), 0);
    assert_int_equal(count("SSN on order 134-67-7626", "ssn"), 1); /* unless the context says */
    assert_int_equal(count("order status: pending 134-67-7626", "ssn"), 1);
    assert_int_equal(count("ref 507-483-2364-89", "credit_card"), 0); /* not card grouping */
    assert_int_equal(count("IE26FAAH64170991161153", "credit_card"), 0);
    assert_int_equal(count("ref 134677626", "ssn"), 0); /* bare: context needed */
    assert_int_equal(count("SSN: 134677626", "ssn"), 1);
    assert_int_equal(count_in(dflt, "134677626", "ssn", "ssn"), 1);
    assert_int_equal(count_in(dflt, "134677626", "socialSecurityNumber", "ssn"), 1);
    assert_int_equal(count_in(dflt, "134677626", "lesson", "ssn"), 0);
    assert_int_equal(count("ITIN 912-70-1234", "itin"), 1);
    assert_int_equal(count("tax id 912701234", "itin"), 1);
    assert_int_equal(count("pay with 4111 1111 1111 1111 exp 12/27", "credit_card"), 1);
    assert_int_equal(count("4111111111111111", "credit_card"), 1);
    assert_int_equal(count("4111111111111112", "credit_card"), 0);
    assert_int_equal(count("ref 1234 4111 1111 1111 1111", "credit_card"), 1);
    assert_int_equal(count("41111111111111110000", "credit_card"), 0);
    assert_int_equal(count("IBAN DE89 3704 0044 0532 0130 00 thanks", "iban"), 1);
    assert_int_equal(count("GB82WEST12345698765432", "iban"), 1);
    assert_int_equal(count("DE89 3704 0044 0532 0130 01", "iban"), 0);
    assert_int_equal(count("NPI 1234567893", "npi"), 1);
    assert_int_equal(count("id 1234567893", "npi"), 0);
    assert_int_equal(count("DEA AB1234563", "dea"), 1);
    assert_int_equal(count("DEA AB1234567", "dea"), 0);
    assert_int_equal(count("code AB1234563", "dea"), 0); /* a weak shape: context needed */
}

static void test_detect_contact(void **state)
{
    (void)state;
    assert_int_equal(count("write to jane.doe@example.com.", "email"), 1);
    assert_int_equal(count("a@b", "email"), 0);
    assert_int_equal(count("+1 (415) 555-2671", "phone"), 1);
    assert_int_equal(count("ring 415-555-2671 now", "phone"), 1);
    assert_int_equal(count("+44 20 7946 0958", "phone"), 1);
    assert_int_equal(count("id 4155552671", "phone"), 0);
    assert_int_equal(count("phone 4155552671", "phone"), 1);
    assert_int_equal(count("ID-415-555-2671", "phone"), 0);
    assert_int_equal(count("from 10.1.2.3 to 2001:db8::7", "ip_address"), 2);
    assert_int_equal(count("at 12:34:56 on 2024-05-01", "ip_address"), 0);
    assert_int_equal(count("version 1.2.3.4.5", "ip_address"), 0);
}

static void test_detect_context_types(void **state)
{
    (void)state;
    assert_int_equal(count("DOB: 03/05/1984", "dob"), 1);
    assert_int_equal(count("born March 5, 1984 in Ohio", "dob"), 1);
    assert_int_equal(count("meeting on 03/05/1984", "dob"), 0);
    assert_int_equal(count_in(dflt, "1984-03-05", "date_of_birth", "dob"), 1);
    assert_int_equal(count_in(dflt, "1984-03-05", "created_at", "dob"), 0);
    assert_int_equal(count("passport no. C12345678", "passport"), 1);
    assert_int_equal(count("ticket C12345678", "passport"), 0);
    assert_int_equal(count("driver's license D1234567", "drivers_license"), 1);
    assert_int_equal(count_in(dflt, "D1234567", "dl_number", "drivers_license"), 1);
    assert_int_equal(count("code D1234567", "drivers_license"), 0);
    assert_int_equal(count("MRN-38587809", "mrn"), 1);
    assert_int_equal(count("chart 38587809", "mrn"), 1);
    assert_int_equal(count("invoice 38587809", "mrn"), 0);
}

static void test_detect_secrets(void **state)
{
    (void)state;
    char buf[512];
    assert_int_equal(count("key AKIAIOSFODNN7EXAMPLE", "aws_access_key"), 1);
    assert_int_equal(
        count("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_key"),
        1);
    assert_int_equal(count("hash 0123456789abcdef0123456789abcdef01234567", "aws_secret_key"), 0);
    snprintf(buf, sizeof buf, "token gh%s_%s", "p", "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5");
    assert_int_equal(count(buf, "github_token"), 1);
    snprintf(buf, sizeof buf, "gl%s-%s", "pat", "xY7zA9bC1dE3fG5hJ7kL");
    assert_int_equal(count(buf, "gitlab_token"), 1);
    snprintf(buf, sizeof buf, "xox%s-%s", "b", "123456789012-AbCdEfGhIjKl");
    assert_int_equal(count(buf, "slack_token"), 1);
    snprintf(buf, sizeof buf, "sk_%s_%s", "live", "4eC39HqLyjWDarjtT1zdp7dc");
    assert_int_equal(count(buf, "stripe_key"), 1);
    snprintf(buf, sizeof buf, "AI%s%s", "za", "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY");
    assert_int_equal(count(buf, "google_api_key"), 1);
    const char *pem = "here: -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\n"
                      "-----END RSA PRIVATE KEY----- done";
    struct safety_match m[4];
    unsigned flags = 0;
    int n = safety_scan_text(dflt, pem, strlen(pem), NULL, 0, m, 4, &flags);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].start, 6);
    assert_int_equal(m[0].end, strlen(pem) - 5);
    assert_int_equal(count("Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOi"
                           "IxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
                           "jwt"),
                     1);
    assert_int_equal(count("api_key = 'Zx8Qp2Lm9Rt4Vw7Yk3Nb'", "generic_secret"), 1);
    assert_int_equal(count("password: aaaaaaaaaaaa1", "generic_secret"), 0); /* low entropy */
    assert_int_equal(count_in(dflt, "Zx8Qp2Lm9Rt4Vw7Yk3Nb", "client_secret", "generic_secret"), 1);
    assert_int_equal(count_in(dflt, "Zx8Qp2Lm9Rt4Vw7Yk3Nb", "description", "generic_secret"), 0);
}

static void test_hard_negatives(void **state)
{
    (void)state;
    assert_int_equal(total("order ORD-2024-118822 shipped 2024-05-01T12:34:56Z", NULL), 0);
    assert_int_equal(total("id 550e8400-e29b-41d4-a716-446655440000", NULL), 0);
    assert_int_equal(total("ts 1716912345678 and 1716912345", NULL), 0);
    assert_int_equal(total("the patient reported mild pain after walking", NULL), 0);
    assert_int_equal(total("", NULL), 0);
}

static void test_overlap_resolution(void **state)
{
    (void)state;
    struct safety_match m[8];
    unsigned flags = 0;
    /* Two findings, sorted and not overlapping. */
    const char *s = "mail jane@example.com or call 415-555-2671";
    int n = safety_scan_text(dflt, s, strlen(s), NULL, 0, m, 8, &flags);
    assert_int_equal(n, 2);
    assert_true(m[0].end <= m[1].start);
    /* More spans than asked for: the overflow flag. */
    char big[4096] = "";
    for (int i = 0; i < 40; i++)
        strcat(big, "x@example.com ");
    flags = 0;
    n = safety_scan_text(dflt, big, strlen(big), NULL, 0, m, 8, &flags);
    assert_int_equal(n, 8);
    assert_true(flags & SAFETY_SCAN_OVERFLOW);
}

/* ---- configuration --------------------------------------------------------------------- */

static struct safety_config *parse(const char *yaml, struct cfg_error *err)
{
    struct cfg_doc doc;
    struct safety_config *sc = NULL;
    if (cfg_load_string(yaml, strlen(yaml), "t.yaml", &doc, err) != 0)
        return NULL;
    if (safety_config_parse(&doc, cfg_map_get(doc.root, "safety"), &sc, err) != 0)
        sc = NULL;
    cfg_doc_free(&doc);
    return sc;
}

static void expect_error(const char *yaml, const char *fragment)
{
    struct cfg_error err = {{0}};
    struct safety_config *sc = parse(yaml, &err);
    if (sc || !strstr(err.msg, fragment))
        fail_msg("expected an error with \"%s\", got %s: %s", fragment, sc ? "success" : "error",
                 err.msg);
    safety_config_free(sc);
}

static void test_config_defaults(void **state)
{
    (void)state;
    struct cfg_error err = {{0}};
    struct safety_config *sc = parse("other: 1\n", &err);
    assert_non_null(sc);
    int ssn = safety_detector_find(sc, "ssn"), card_d = safety_detector_find(sc, "credit_card");
    int email = safety_detector_find(sc, "email"), jwt = safety_detector_find(sc, "jwt");
    assert_int_equal(safety_detector_action(sc, ssn, GW_DIR_REQUEST), SAFETY_BLOCK);
    assert_int_equal(safety_detector_action(sc, ssn, GW_DIR_RESPONSE), SAFETY_REDACT);
    assert_int_equal(safety_detector_action(sc, card_d, GW_DIR_REQUEST), SAFETY_REDACT);
    assert_int_equal(safety_detector_action(sc, email, GW_DIR_REQUEST), SAFETY_LOG);
    assert_int_equal(safety_detector_action(sc, jwt, GW_DIR_REQUEST), SAFETY_BLOCK);
    assert_int_equal(sc->max_scan_bytes, 1024 * 1024);
    assert_int_equal(sc->max_depth, 64);
    assert_int_equal(sc->on_oversize, SAFETY_OVERSIZE_BLOCK);
    /* Every built-in rule has a vectorscan prefilter (none fell back to PCRE2-only). */
    for (size_t i = 0; i < sc->n_rules; i++)
        assert_non_null(sc->rules[i].hs_expr);
    safety_config_free(sc);
}

static void test_config_actions(void **state)
{
    (void)state;
    struct cfg_error err = {{0}};
    struct safety_config *sc =
        parse("safety:\n"
              "  detectors:\n"
              "    ssn: log\n"
              "    secrets: redact\n"
              "    jwt: {request: block, response: log, redact: hash}\n"
              "    credit_card: {action: redact, redact: mask, context: [payment]}\n"
              "    email: off\n"
              "    mrn: {action: block, patterns: ['PT[0-9]{5}'], context: [patient]}\n"
              "  responses: {default: block}\n"
              "  redaction: {style: placeholder}\n"
              "  limits: {max_scan_bytes: 64KiB, max_depth: 10, on_oversize: pass}\n"
              "  context_window: 32\n"
              "  entropy_threshold: 3.0\n",
              &err);
    if (!sc)
        fail_msg("%s", err.msg);
    int d;
    d = safety_detector_find(sc, "ssn");
    assert_int_equal(safety_detector_action(sc, d, GW_DIR_REQUEST), SAFETY_LOG);
    assert_int_equal(safety_detector_action(sc, d, GW_DIR_RESPONSE), SAFETY_LOG);
    d = safety_detector_find(sc, "aws_access_key");
    assert_int_equal(safety_detector_action(sc, d, GW_DIR_REQUEST), SAFETY_REDACT);
    assert_int_equal(safety_detector_action(sc, d, GW_DIR_RESPONSE), SAFETY_BLOCK);
    d = safety_detector_find(sc, "jwt");
    assert_int_equal(safety_detector_action(sc, d, GW_DIR_REQUEST), SAFETY_BLOCK);
    assert_int_equal(safety_detector_action(sc, d, GW_DIR_RESPONSE), SAFETY_LOG);
    assert_int_equal(sc->detectors[d].style, SAFETY_STYLE_HASH);
    d = safety_detector_find(sc, "email");
    assert_int_equal(safety_detector_action(sc, d, GW_DIR_REQUEST), SAFETY_OFF);
    assert_int_equal(count_in(sc, "jane@example.com", NULL, "email"), 0);
    assert_int_equal(sc->max_scan_bytes, 65536);
    assert_int_equal(sc->max_depth, 10);
    assert_int_equal(sc->on_oversize, SAFETY_OVERSIZE_PASS);
    assert_int_equal(sc->context_window, 32);
    /* The extra MRN pattern needs its context word. */
    assert_int_equal(count_in(sc, "patient PT12345", NULL, "mrn"), 1);
    assert_int_equal(count_in(sc, "code PT12345", NULL, "mrn"), 0);
    safety_config_free(sc);
}

static void test_config_custom(void **state)
{
    (void)state;
    struct cfg_error err = {{0}};
    struct safety_config *sc =
        parse("safety:\n"
              "  custom:\n"
              "    - {name: employee_id, pattern: 'EMP-[0-9]{6}', context: [employee],\n"
              "       action: {request: block, response: redact}}\n"
              "    - {name: loyalty, pattern: 'LY[0-9]{8}', validator: luhn, action: redact}\n"
              "    - {name: ticket, pattern: 'TK\\K[0-9]{6}', action: log}\n"
              "    - {name: acct, pattern: 'AC[0-9A-Z]{10}', validator: mod97}\n",
              &err);
    if (!sc)
        fail_msg("%s", err.msg);
    assert_int_equal(count_in(sc, "employee EMP-123456", NULL, "employee_id"), 1);
    assert_int_equal(count_in(sc, "EMP-123456", NULL, "employee_id"), 0);
    assert_int_equal(count_in(sc, "EMP-123456", "employeeRef", "employee_id"), 1);
    assert_int_equal(count_in(sc, "LY12345674", NULL, "loyalty"), 1); /* Luhn ok */
    assert_int_equal(count_in(sc, "LY12345675", NULL, "loyalty"), 0);
    /* \K cannot go through vectorscan: that rule runs PCRE2 alone, and still finds it. */
    int t = safety_detector_find(sc, "ticket");
    for (size_t i = 0; i < sc->n_rules; i++)
        if (sc->rules[i].detector == t)
            assert_null(sc->rules[i].hs_expr);
    struct safety_match m[4];
    unsigned flags = 0;
    assert_int_equal(safety_scan_text(sc, "x TK123456 y", 12, NULL, 0, m, 4, &flags), 1);
    assert_int_equal(m[0].start, 4);
    assert_int_equal(m[0].end, 10);
    int d = safety_detector_find(sc, "acct");
    assert_int_equal(safety_detector_action(sc, d, GW_DIR_REQUEST), SAFETY_BLOCK);
    safety_config_free(sc);
}

static void test_config_errors(void **state)
{
    (void)state;
    expect_error("safety: {colour: red}\n", "colour");
    expect_error("safety: {detectors: {sn: block}}\n", "unknown detector \"sn\"");
    expect_error("safety: {detectors: {ssn: maybe}}\n", "\"maybe\" is not an action");
    expect_error("safety: {detectors: {ssn: {request: block, color: 1}}}\n", "color");
    expect_error("safety: {detectors: {ssn: {redact: blur}}}\n", "redaction style");
    expect_error("safety: {detectors: {ssn: {patterns: ['x']}}}\n", "patterns");
    expect_error("safety: {detectors: {mrn: {patterns: ['(unclosed']}}}\n", "does not compile");
    expect_error("safety: {detectors: {secrets: {context: [x]}}}\n", "per detector");
    expect_error("safety: {custom: [{name: x1, pattern: '([a-z'}]}\n", "offset");
    expect_error("safety: {custom: [{name: X, pattern: 'a'}]}\n", "lower-case");
    expect_error("safety: {custom: [{name: ssn, pattern: 'a'}]}\n", "already a detector");
    expect_error("safety: {custom: [{name: a, pattern: 'a'}, {name: a, pattern: 'b'}]}\n",
                 "already a detector");
    expect_error("safety: {custom: [{pattern: 'a'}]}\n", "name");
    expect_error("safety: {custom: [{name: a}]}\n", "pattern");
    expect_error("safety: {custom: [{name: a, pattern: 'a', validator: crc}]}\n", "validator");
    expect_error("safety: {custom: [{name: a, pattern: 'a', context_required: true}]}\n",
                 "context_required needs");
    expect_error("safety: {custom: {name: a}}\n", "safety.custom");
    expect_error("safety: {responses: {default: maybe}}\n", "safety.responses.default");
    expect_error("safety: {limits: {max_depth: 0}}\n", "max_depth");
    expect_error("safety: {limits: {max_scan_bytes: 10}}\n", "1KiB");
    expect_error("safety: {limits: {on_oversize: drop}}\n", "block or pass");
    expect_error("safety: {entropy_threshold: 9}\n", "bits per character");
    expect_error("safety: {redaction: {hash_key_file: /nonexistent/key}}\n", "cannot read");
    char path[] = "/tmp/safety-key-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "short", 5), 5);
    close(fd);
    char yaml[256];
    snprintf(yaml, sizeof yaml, "safety: {redaction: {hash_key_file: %s}}\n", path);
    expect_error(yaml, "32 to 4096 bytes");
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "0123456789abcdef0123456789abcdef", 32), 32);
    close(fd);
    struct cfg_error err = {{0}};
    struct safety_config *sc = parse(yaml, &err);
    assert_non_null(sc);
    assert_int_equal(sc->hash_key_set, 1);
    safety_config_free(sc);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_luhn),
        cmocka_unit_test(test_card),
        cmocka_unit_test(test_iban),
        cmocka_unit_test(test_ssn_itin),
        cmocka_unit_test(test_npi_dea),
        cmocka_unit_test(test_network),
        cmocka_unit_test(test_dates_jwt_entropy),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_offsets_mapped_back),
        cmocka_unit_test(test_detect_ids),
        cmocka_unit_test(test_detect_contact),
        cmocka_unit_test(test_detect_context_types),
        cmocka_unit_test(test_detect_secrets),
        cmocka_unit_test(test_hard_negatives),
        cmocka_unit_test(test_overlap_resolution),
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_actions),
        cmocka_unit_test(test_config_custom),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
