#include "data.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const first_names_f[] = {
    "Olivia", "Emma",    "Ava",   "Sophia", "Isabella", "Mia",   "Amelia", "Harper",
    "Evelyn", "Abigail", "Emily", "Ella",   "Grace",    "Chloe", "Nora",   "Lily",
    "Hannah", "Zoe",     "Layla", "Aria",   "Maya",     "Leah",  "Ruth",   "Priya",
    "Mei",    "Fatima",  "Sofia", "Ines",   "Aisha",    "Yuki",  "Elena",  "Rosa"};
static const char *const first_names_m[] = {
    "Liam",  "Noah",  "Oliver", "Elijah", "James",  "William", "Benjamin", "Lucas",
    "Henry", "Theo",  "Jack",   "Levi",   "Daniel", "Samuel",  "Owen",     "Leo",
    "Ethan", "Mateo", "Caleb",  "Isaac",  "Omar",   "Ravi",    "Kenji",    "Diego",
    "Andre", "Tomas", "Hugo",   "Felix",  "Arjun",  "Wei",     "Marco",    "Jonah"};
static const char *const last_names[] = {
    "Smith",     "Johnson",  "Williams",  "Brown",   "Jones",    "Garcia",   "Miller",   "Davis",
    "Rodriguez", "Martinez", "Hernandez", "Lopez",   "Gonzalez", "Wilson",   "Anderson", "Thomas",
    "Taylor",    "Moore",    "Jackson",   "Martin",  "Lee",      "Perez",    "Thompson", "White",
    "Harris",    "Sanchez",  "Clark",     "Ramirez", "Lewis",    "Robinson", "Walker",   "Young",
    "Allen",     "King",     "Wright",    "Scott",   "Torres",   "Nguyen",   "Hill",     "Flores",
    "Green",     "Adams",    "Nelson",    "Baker",   "Hall",     "Rivera",   "Campbell", "Mitchell",
    "Carter",    "Roberts",  "Patel",     "Kim",     "Chen",     "Okafor",   "Novak",    "Schmidt"};
static const char *const streets[] = {
    "Maple Street",    "Oak Avenue",     "Pine Road",   "Cedar Lane",
    "Elm Street",      "Birch Court",    "Willow Way",  "Lakeview Drive",
    "Hillside Avenue", "River Road",     "Sunset Blvd", "Park Place",
    "Chestnut Street", "Spruce Terrace", "Harbor Lane", "Meadow Drive"};
static const struct {
    const char *city, *state, *zip3, *area;
} places[] = {{"Springfield", "IL", "627", "217"}, {"Portland", "OR", "972", "503"},
              {"Boston", "MA", "021", "617"},      {"Austin", "TX", "787", "512"},
              {"Madison", "WI", "537", "608"},     {"Denver", "CO", "802", "303"},
              {"Raleigh", "NC", "276", "919"},     {"Columbus", "OH", "432", "614"},
              {"Burlington", "VT", "054", "802"},  {"Tucson", "AZ", "857", "520"},
              {"Sacramento", "CA", "958", "916"},  {"Albany", "NY", "122", "518"}};
static const char *const allergy_pool[] = {"penicillin", "peanuts",   "latex",     "sulfa drugs",
                                           "shellfish",  "aspirin",   "ibuprofen", "codeine",
                                           "eggs",       "bee stings"};
static const char *const condition_pool[] = {"hypertension",   "type 2 diabetes", "asthma",
                                             "hyperlipidemia", "migraine",        "hypothyroidism",
                                             "GERD",           "osteoarthritis"};
static const char *const physicians[] = {"Dr. Maria Alvarez", "Dr. Samuel Okoye",
                                         "Dr. Helen Park",    "Dr. Rajesh Iyer",
                                         "Dr. Claire Dubois", "Dr. Tom Becker"};
/* Public payment test numbers: Luhn-valid, never issued to a real cardholder. */
static const char *const test_cards[] = {"4111111111111111", "4012888888881881",
                                         "5555555555554444", "5105105105105100",
                                         "378282246310005",  "6011111111111117"};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* splitmix64: small, well-mixed, and the same everywhere, which is all a fixture needs. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned rng_below(uint64_t *state, unsigned n)
{
    return (unsigned)(rng_next(state) % n);
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
        return 29;
    return days[month - 1];
}

static void lower_copy(char *out, size_t outlen, const char *in)
{
    size_t i = 0;
    for (; in[i] && i + 1 < outlen; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[i] = '\0';
}

static void make_patient(struct ehr_patient *p, uint64_t seed, unsigned idx)
{
    uint64_t st = seed ^ ((uint64_t)(idx + 1) * 0xD1B54A32D192ED03ull);
    rng_next(&st);
    memset(p, 0, sizeof *p);
    snprintf(p->id, sizeof p->id, "P%u", idx + 1);

    int female = (int)(rng_next(&st) & 1);
    const char *first = female ? first_names_f[rng_below(&st, COUNT_OF(first_names_f))]
                               : first_names_m[rng_below(&st, COUNT_OF(first_names_m))];
    snprintf(p->first, sizeof p->first, "%s", first);
    snprintf(p->last, sizeof p->last, "%s", last_names[rng_below(&st, COUNT_OF(last_names))]);
    p->sex[0] = female ? 'F' : 'M';

    int year = 1935 + (int)rng_below(&st, 84);
    int month = 1 + (int)rng_below(&st, 12);
    int day = 1 + (int)rng_below(&st, (unsigned)days_in_month(year, month));
    snprintf(p->dob, sizeof p->dob, "%04d-%02d-%02d", year, month, day);

    /* SSA rules: area 001-899 but not 666, group 01-99, serial 0001-9999. */
    unsigned area;
    do {
        area = 1 + rng_below(&st, 899);
    } while (area == 666);
    unsigned group = 1 + rng_below(&st, 99);
    unsigned serial = 1 + rng_below(&st, 9999);
    snprintf(p->ssn, sizeof p->ssn, "%03u-%02u-%04u", area, group, serial);

    snprintf(p->mrn, sizeof p->mrn, "MRN-%08u", 10000000u + rng_below(&st, 90000000u));

    unsigned place = rng_below(&st, COUNT_OF(places));
    snprintf(p->phone, sizeof p->phone, "+1-%s-555-01%02u", places[place].area,
             rng_below(&st, 100));
    char lf[16], ll[20];
    lower_copy(lf, sizeof lf, p->first);
    lower_copy(ll, sizeof ll, p->last);
    snprintf(p->email, sizeof p->email, "%s.%s%u@example.com", lf, ll, idx + 1);
    snprintf(p->street, sizeof p->street, "%u %s", 1 + rng_below(&st, 9899),
             streets[rng_below(&st, COUNT_OF(streets))]);
    snprintf(p->city, sizeof p->city, "%s", places[place].city);
    snprintf(p->state, sizeof p->state, "%s", places[place].state);
    snprintf(p->zip, sizeof p->zip, "%s%02u", places[place].zip3, rng_below(&st, 100));
    snprintf(p->card, sizeof p->card, "%s", test_cards[rng_below(&st, COUNT_OF(test_cards))]);
    snprintf(p->physician, sizeof p->physician, "%s",
             physicians[rng_below(&st, COUNT_OF(physicians))]);

    /* Distinct picks: walk the pool from a random start with a stride of 3, which never
     * revisits an entry within the three picks the pools of 8 and 10 allow. */
    unsigned na = rng_below(&st, 4);
    unsigned start = rng_below(&st, COUNT_OF(allergy_pool));
    for (unsigned i = 0; i < na; i++)
        p->allergies[i] = allergy_pool[(start + i * 3) % COUNT_OF(allergy_pool)];
    p->n_allergies = na;
    unsigned nc = rng_below(&st, 3);
    start = rng_below(&st, COUNT_OF(condition_pool));
    for (unsigned i = 0; i < nc; i++)
        p->conditions[i] = condition_pool[(start + i * 3) % COUNT_OF(condition_pool)];
    p->n_conditions = nc;
}

int ehr_data_init(struct ehr_data *d, uint64_t seed, unsigned count)
{
    memset(d, 0, sizeof *d);
    if (count == 0 || count > EHR_DATA_MAX_PATIENTS)
        return -1;
    d->patients = calloc(count, sizeof *d->patients);
    if (!d->patients)
        return -1;
    if (pthread_mutex_init(&d->notes_lock, NULL) != 0) {
        free(d->patients);
        d->patients = NULL;
        return -1;
    }
    d->seed = seed;
    d->count = count;
    for (unsigned i = 0; i < count; i++)
        make_patient(&d->patients[i], seed, i);
    return 0;
}

void ehr_data_free(struct ehr_data *d)
{
    if (!d->patients)
        return;
    for (unsigned i = 0; i < EHR_NOTE_SLOTS; i++)
        free(d->notes[i].text);
    pthread_mutex_destroy(&d->notes_lock);
    free(d->patients);
    memset(d, 0, sizeof *d);
}

const struct ehr_patient *ehr_data_find(const struct ehr_data *d, const char *id, size_t len)
{
    if (len < 2 || len > 8 || id[0] != 'P' || id[1] == '0')
        return NULL;
    unsigned long n = 0;
    for (size_t i = 1; i < len; i++) {
        if (id[i] < '0' || id[i] > '9')
            return NULL;
        n = n * 10 + (unsigned long)(id[i] - '0');
    }
    if (n == 0 || n > d->count)
        return NULL;
    return &d->patients[n - 1];
}

unsigned ehr_data_index(const struct ehr_data *d, const struct ehr_patient *p)
{
    return (unsigned)(p - d->patients);
}

/* Case-insensitive search for needle (already lower-case) in hay. */
static int contains_ci(const char *hay, const char *needle, size_t nlen)
{
    size_t hlen = strlen(hay);
    if (nlen > hlen)
        return 0;
    for (size_t i = 0; i + nlen <= hlen; i++) {
        size_t j = 0;
        while (j < nlen && (char)tolower((unsigned char)hay[i + j]) == needle[j])
            j++;
        if (j == nlen)
            return 1;
    }
    return 0;
}

unsigned ehr_data_search(const struct ehr_data *d, const char *query, size_t qlen,
                         const struct ehr_patient **out, unsigned limit)
{
    char needle[128];
    if (qlen == 0 || qlen >= sizeof needle)
        return 0;
    for (size_t i = 0; i < qlen; i++)
        needle[i] = (char)tolower((unsigned char)query[i]);
    needle[qlen] = '\0';
    unsigned total = 0;
    for (unsigned i = 0; i < d->count; i++) {
        const struct ehr_patient *p = &d->patients[i];
        char full[40];
        snprintf(full, sizeof full, "%s %s", p->first, p->last);
        if (contains_ci(full, needle, qlen) || contains_ci(p->id, needle, qlen) ||
            contains_ci(p->mrn, needle, qlen)) {
            if (total < limit)
                out[total] = p;
            total++;
        }
    }
    return total;
}

int64_t ehr_notes_put(struct ehr_data *d, unsigned idx, const char *text, size_t len)
{
    if (len > EHR_NOTE_MAX)
        return -1;
    char *copy = malloc(len + 1);
    if (!copy)
        return -2;
    memcpy(copy, text, len);
    copy[len] = '\0';

    pthread_mutex_lock(&d->notes_lock);
    struct ehr_note_slot *slot = NULL, *oldest = &d->notes[0];
    for (unsigned i = 0; i < EHR_NOTE_SLOTS; i++) {
        struct ehr_note_slot *s = &d->notes[i];
        if (s->patient == idx + 1) {
            slot = s;
            break;
        }
        if (s->patient == 0) {
            if (oldest->patient != 0)
                oldest = s;
        } else if (oldest->patient != 0 && s->seq < oldest->seq) {
            oldest = s;
        }
    }
    if (!slot)
        slot = oldest;
    free(slot->text);
    slot->text = copy;
    slot->len = (uint32_t)len;
    slot->patient = idx + 1;
    slot->seq = ++d->notes_seq;
    int64_t seq = (int64_t)slot->seq;
    pthread_mutex_unlock(&d->notes_lock);
    return seq;
}

long ehr_notes_get(struct ehr_data *d, unsigned idx, char *out, size_t outlen)
{
    long result = -1;
    pthread_mutex_lock(&d->notes_lock);
    for (unsigned i = 0; i < EHR_NOTE_SLOTS; i++) {
        const struct ehr_note_slot *s = &d->notes[i];
        if (s->patient == idx + 1 && outlen > 0) {
            size_t n = s->len < outlen - 1 ? s->len : outlen - 1;
            memcpy(out, s->text, n);
            out[n] = '\0';
            result = (long)n;
            break;
        }
    }
    pthread_mutex_unlock(&d->notes_lock);
    return result;
}

int ehr_luhn_valid(const char *digits, size_t n)
{
    if (n < 2)
        return 0;
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++) {
        char c = digits[n - 1 - i];
        if (c < '0' || c > '9')
            return 0;
        unsigned v = (unsigned)(c - '0');
        if (i & 1) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

int ehr_ssn_valid(const char *s, size_t n)
{
    if (n != 11 || s[3] != '-' || s[6] != '-')
        return 0;
    unsigned v[3] = {0, 0, 0};
    const int start[3] = {0, 4, 7}, width[3] = {3, 2, 4};
    for (int f = 0; f < 3; f++) {
        for (int i = 0; i < width[f]; i++) {
            char c = s[start[f] + i];
            if (c < '0' || c > '9')
                return 0;
            v[f] = v[f] * 10 + (unsigned)(c - '0');
        }
    }
    return v[0] >= 1 && v[0] <= 899 && v[0] != 666 && v[1] != 0 && v[2] != 0;
}
