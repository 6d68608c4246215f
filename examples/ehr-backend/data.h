/*
 * data: the fictional clinic's records, generated deterministically from a seed.
 *
 * Every patient is derived from (seed, index) alone, so two processes started with the same
 * seed serve identical records and tests can assert on them. The generated values look real
 * (SSNs follow the SSA assignment rules, card numbers pass the Luhn check) so a safety layer
 * in front has something to find, but they are fake: phone numbers use the 555-01xx range
 * reserved for fiction, e-mail addresses use example.com, cards are public test numbers.
 *
 * The patient table is built once at start and is read-only afterwards, so worker threads
 * share it without locks. Notes are the only mutable part; they live in a small bounded
 * store with its own mutex.
 */
#ifndef EHR_DATA_H
#define EHR_DATA_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define EHR_DATA_MAX_PATIENTS 1000000u
#define EHR_NOTE_MAX 4096u  /* bytes per note */
#define EHR_NOTE_SLOTS 256u /* notes kept; the oldest is dropped when full */

struct ehr_patient {
    char id[12]; /* "P123" */
    char first[16];
    char last[20];
    char sex[2];    /* "F" or "M" */
    char dob[36];   /* YYYY-MM-DD (sized so the compiler can prove no truncation) */
    char ssn[36];   /* AAA-GG-SSSS, SSA rules */
    char mrn[16];   /* MRN-12345678 */
    char phone[24]; /* +1-AAA-555-01NN */
    char email[64];
    char street[40];
    char city[24];
    char state[3];
    char zip[16];
    char card[20]; /* test card number on file, digits only */
    char physician[40];
    const char *allergies[3];
    unsigned n_allergies;
    const char *conditions[2];
    unsigned n_conditions;
};

struct ehr_note_slot {
    uint32_t patient; /* index + 1; 0 = empty */
    uint32_t len;
    uint64_t seq;
    char *text; /* malloc'd, owned by the store */
};

struct ehr_data {
    uint64_t seed;
    unsigned count;
    struct ehr_patient *patients; /* count entries, read-only after init */
    pthread_mutex_t notes_lock;
    uint64_t notes_seq;
    struct ehr_note_slot notes[EHR_NOTE_SLOTS];
};

/* Builds `count` patients (1..EHR_DATA_MAX_PATIENTS) from `seed`. Returns 0 or -1 (memory). */
int ehr_data_init(struct ehr_data *d, uint64_t seed, unsigned count);
/* Frees the table and every stored note. */
void ehr_data_free(struct ehr_data *d);

/*
 * Looks up "P<n>" (n in 1..count, no leading zeros, no sign). Returns the record (owned by
 * d) or NULL. `id` is a slice: it need not be NUL-terminated.
 */
const struct ehr_patient *ehr_data_find(const struct ehr_data *d, const char *id, size_t len);
/* Index of a record returned by ehr_data_find. */
unsigned ehr_data_index(const struct ehr_data *d, const struct ehr_patient *p);

/*
 * Case-insensitive substring search over "First Last", patient id and MRN. Writes up to
 * `limit` matches into out (in id order) and returns the total number of matches.
 */
unsigned ehr_data_search(const struct ehr_data *d, const char *query, size_t qlen,
                         const struct ehr_patient **out, unsigned limit);

/*
 * Stores a note for patient index `idx`, replacing that patient's previous note; when the
 * store is full the oldest note goes. Copies `text`. Returns the note's sequence number
 * (> 0), -1 when len > EHR_NOTE_MAX, -2 on memory exhaustion. Thread-safe.
 */
int64_t ehr_notes_put(struct ehr_data *d, unsigned idx, const char *text, size_t len);
/*
 * Copies the note of patient `idx` into out (at most outlen - 1 bytes plus NUL) and returns its
 * length, or -1 when there is none. Thread-safe.
 */
long ehr_notes_get(struct ehr_data *d, unsigned idx, char *out, size_t outlen);

/* 1 when the n digits pass the Luhn check (n >= 2, digits only), else 0. */
int ehr_luhn_valid(const char *digits, size_t n);
/* 1 when s is "AAA-GG-SSSS" with area 001-899 except 666, group != 00, serial != 0000. */
int ehr_ssn_valid(const char *s, size_t n);

#endif
