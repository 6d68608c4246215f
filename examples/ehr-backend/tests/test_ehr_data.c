/*
 * Tests of the demo backend's record generator. The backend is a separate program, so its
 * data module is compiled into this test directly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../data.c"

static int valid_date(const char *s)
{
    int y, m, d;
    if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d", &y, &m, &d) != 3)
        return 0;
    return y >= 1900 && y <= 2030 && m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m);
}

static void test_records_are_valid_and_deterministic(void **state)
{
    (void)state;
    struct ehr_data a, b, other;
    assert_int_equal(ehr_data_init(&a, 42, 1000), 0);
    assert_int_equal(ehr_data_init(&b, 42, 1000), 0);
    assert_int_equal(ehr_data_init(&other, 7, 1000), 0);
    unsigned differing = 0;
    for (unsigned i = 0; i < a.count; i++) {
        const struct ehr_patient *p = &a.patients[i];
        assert_memory_equal(p, &b.patients[i], sizeof *p);
        if (strcmp(p->ssn, other.patients[i].ssn) != 0)
            differing++;
        char id[16];
        snprintf(id, sizeof id, "P%u", i + 1);
        assert_string_equal(p->id, id);
        assert_true(ehr_ssn_valid(p->ssn, strlen(p->ssn)));
        assert_int_equal(strlen(p->mrn), 12);
        assert_memory_equal(p->mrn, "MRN-", 4);
        assert_int_equal(strspn(p->mrn + 4, "0123456789"), 8);
        assert_true(ehr_luhn_valid(p->card, strlen(p->card)));
        assert_non_null(strstr(p->phone, "-555-01"));
        assert_non_null(strstr(p->email, "@example.com"));
        assert_true(valid_date(p->dob));
        assert_true(p->n_allergies <= 3 && p->n_conditions <= 2);
        for (unsigned k = 0; k + 1 < p->n_allergies; k++)
            assert_string_not_equal(p->allergies[k], p->allergies[k + 1]);
        assert_int_equal(strlen(p->zip), 5);
    }
    assert_true(differing > 900); /* another seed gives other people */
    ehr_data_free(&a);
    ehr_data_free(&b);
    ehr_data_free(&other);
}

/* The demo and the end-to-end tests quote these values: changing the generator breaks them. */
static void test_pinned_patient(void **state)
{
    (void)state;
    struct ehr_data d;
    assert_int_equal(ehr_data_init(&d, 42, 1000), 0);
    const struct ehr_patient *p = ehr_data_find(&d, "P123", 4);
    assert_non_null(p);
    assert_string_equal(p->first, "Daniel");
    assert_string_equal(p->last, "Patel");
    assert_string_equal(p->ssn, "134-67-7626");
    assert_string_equal(p->mrn, "MRN-38587809");
    assert_string_equal(p->dob, "1939-06-09");
    ehr_data_free(&d);
}

static void test_find(void **state)
{
    (void)state;
    struct ehr_data d;
    assert_int_equal(ehr_data_init(&d, 1, 1000), 0);
    assert_ptr_equal(ehr_data_find(&d, "P1", 2), &d.patients[0]);
    assert_ptr_equal(ehr_data_find(&d, "P1000", 5), &d.patients[999]);
    assert_int_equal(ehr_data_index(&d, ehr_data_find(&d, "P57", 3)), 56);
    /* A slice: the bytes after len do not count. */
    assert_ptr_equal(ehr_data_find(&d, "P12xyz", 3), &d.patients[11]);
    const char *bad[] = {"",    "P",   "P0",  "P01", "P1001",        "p1",
                         "P1x", "P-1", "P+1", "Q1",  "P99999999999", " P1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_null(ehr_data_find(&d, bad[i], strlen(bad[i])));
    ehr_data_free(&d);
}

static void test_init_bounds(void **state)
{
    (void)state;
    struct ehr_data d;
    assert_int_equal(ehr_data_init(&d, 1, 0), -1);
    assert_int_equal(ehr_data_init(&d, 1, EHR_DATA_MAX_PATIENTS + 1), -1);
    ehr_data_free(&d); /* freeing a failed init is harmless */
    assert_int_equal(ehr_data_init(&d, 1, 1), 0);
    assert_non_null(ehr_data_find(&d, "P1", 2));
    assert_null(ehr_data_find(&d, "P2", 2));
    ehr_data_free(&d);
}

static void test_search(void **state)
{
    (void)state;
    struct ehr_data d;
    assert_int_equal(ehr_data_init(&d, 42, 1000), 0);
    const struct ehr_patient *out[50];
    unsigned total = ehr_data_search(&d, "SMI", 3, out, 3);
    unsigned again = ehr_data_search(&d, "smith", 5, out + 10, 50);
    assert_true(total >= again && again > 3);
    for (unsigned i = 0; i < 3; i++)
        assert_string_equal(out[i]->last, "Smith");
    assert_true(out[0] < out[1] && out[1] < out[2]); /* id order */

    /* Searching by id and by MRN finds that patient first. */
    assert_true(ehr_data_search(&d, "P123", 4, out, 1) >= 1);
    assert_string_equal(out[0]->id, "P123");
    const struct ehr_patient *p = ehr_data_find(&d, "P500", 4);
    assert_int_equal(ehr_data_search(&d, p->mrn, strlen(p->mrn), out, 5), 1);
    assert_ptr_equal(out[0], p);

    assert_int_equal(ehr_data_search(&d, "", 0, out, 5), 0);
    assert_int_equal(ehr_data_search(&d, "zzzzqqq", 7, out, 5), 0);
    char longq[200];
    memset(longq, 'a', sizeof longq);
    assert_int_equal(ehr_data_search(&d, longq, sizeof longq, out, 5), 0);
    ehr_data_free(&d);
}

static void test_notes(void **state)
{
    (void)state;
    struct ehr_data d;
    char buf[EHR_NOTE_MAX + 1];
    assert_int_equal(ehr_data_init(&d, 42, 1000), 0);
    assert_int_equal(ehr_notes_get(&d, 5, buf, sizeof buf), -1);
    int64_t s1 = ehr_notes_put(&d, 5, "first", 5);
    int64_t s2 = ehr_notes_put(&d, 5, "second\0x", 8); /* bytes, not C strings */
    assert_true(s1 > 0 && s2 > s1);
    assert_int_equal(ehr_notes_get(&d, 5, buf, sizeof buf), 8);
    assert_memory_equal(buf, "second\0x", 8);
    assert_int_equal(ehr_notes_get(&d, 5, buf, 4), 3); /* truncated to the room given */
    assert_string_equal(buf, "sec");

    char big[EHR_NOTE_MAX + 1];
    memset(big, 'n', sizeof big);
    assert_int_equal(ehr_notes_put(&d, 6, big, EHR_NOTE_MAX + 1), -1);
    assert_true(ehr_notes_put(&d, 6, big, EHR_NOTE_MAX) > 0);

    /* The store is bounded: filling it drops the oldest notes first. */
    for (unsigned i = 100; i < 100 + EHR_NOTE_SLOTS - 2; i++) /* 2 already held */
        assert_true(ehr_notes_put(&d, i, "x", 1) > 0);
    assert_int_equal(ehr_notes_get(&d, 5, buf, sizeof buf), 8);  /* still there: 256 kept */
    assert_true(ehr_notes_put(&d, 900, "y", 1) > 0);             /* one more */
    assert_int_equal(ehr_notes_get(&d, 5, buf, sizeof buf), -1); /* oldest went */
    assert_int_equal(ehr_notes_get(&d, 6, buf, sizeof buf), EHR_NOTE_MAX);
    assert_int_equal(ehr_notes_get(&d, 900, buf, sizeof buf), 1);
    ehr_data_free(&d);
}

static void test_luhn_and_ssn(void **state)
{
    (void)state;
    assert_true(ehr_luhn_valid("4111111111111111", 16));
    assert_true(ehr_luhn_valid("378282246310005", 15));
    assert_false(ehr_luhn_valid("4111111111111112", 16));
    assert_false(ehr_luhn_valid("4111 1111", 9));
    assert_false(ehr_luhn_valid("0", 1));
    assert_true(ehr_ssn_valid("123-45-6789", 11));
    assert_true(ehr_ssn_valid("899-99-9999", 11));
    const char *bad[] = {"000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000",
                         "123456789",   "123-45-678",  "12a-45-6789", "123-45-67890"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(ehr_ssn_valid(bad[i], strlen(bad[i])));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records_are_valid_and_deterministic),
        cmocka_unit_test(test_pinned_patient),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_init_bounds),
        cmocka_unit_test(test_search),
        cmocka_unit_test(test_notes),
        cmocka_unit_test(test_luhn_and_ssn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
