/*
 * tools: the clinic's tools, their input schemas, and the two that run in the background.
 *
 * Every result carries content [{type: "text"}] and structuredContent. Argument problems are
 * tool results with isError true (the model can read and correct them); an unknown tool is a
 * JSON-RPC error (-32602), as the spec asks.
 *
 * slow_report runs on a timer and fetch_url on libuv's thread pool (libcurl easy, blocking,
 * bounded by a 5 s timeout), so neither blocks the worker's loop. Their jobs hold the
 * connection and are cancelled when it closes.
 *
 * fetch_url is naive on purpose: it fetches whatever http(s) URL it is given, including
 * private addresses. Deciding which URLs may be fetched is the gateway's job (its SSRF guard);
 * the demo shows that guard at work. Only http and https are spoken and redirects are not
 * followed, so the backend is not an open file reader.
 */
#include "ehr.h"

#include "lib/timeutil.h"

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FETCH_TIMEOUT_MS 5000L
#define FETCH_MAX_BYTES (256u << 10)
#define FETCH_BODY_SHOWN 2048u
#define FETCH_URL_MAX 2048u
#define SEARCH_LIMIT_MAX 50

#define ID_SCHEMA                                                                                  \
    "\"patient_id\":{\"type\":\"string\",\"pattern\":\"^P[1-9][0-9]*$\","                          \
    "\"description\":\"Patient identifier, e.g. P123\"}"

struct tool_def {
    const char *name;
    const char *title;
    const char *description;
    const char *schema;      /* inputSchema, JSON text */
    const char *annotations; /* JSON text */
};

static const struct tool_def tool_defs[] = {
    {"get_patient", "Get patient record",
     "Returns a patient's demographics, contact details, identifiers (SSN, MRN), allergies, "
     "conditions and latest note.",
     "{\"type\":\"object\",\"properties\":{" ID_SCHEMA "},\"required\":[\"patient_id\"]}",
     "{\"readOnlyHint\":true,\"openWorldHint\":false}"},
    {"search_patients", "Search patients",
     "Finds patients whose name, patient id or MRN contains the query (case-insensitive).",
     "{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\",\"minLength\":1,"
     "\"maxLength\":100,\"description\":\"Part of a name, patient id or MRN\"},"
     "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":50,\"default\":10}},"
     "\"required\":[\"query\"]}",
     "{\"readOnlyHint\":true,\"openWorldHint\":false}"},
    {"update_note", "Update clinical note",
     "Stores a clinical note for a patient, replacing the previous one, and returns it.",
     "{\"type\":\"object\",\"properties\":{" ID_SCHEMA
     ",\"note\":{\"type\":\"string\",\"maxLength\":4096}},\"required\":[\"patient_id\",\"note\"]}",
     "{\"readOnlyHint\":false,\"destructiveHint\":false,\"idempotentHint\":true}"},
    {"delete_patient", "Delete patient",
     "Deletes a patient record (simulated: records are regenerated from the seed).",
     "{\"type\":\"object\",\"properties\":{" ID_SCHEMA "},\"required\":[\"patient_id\"]}",
     "{\"readOnlyHint\":false,\"destructiveHint\":true,\"idempotentHint\":true}"},
    {"charge_card", "Charge a card",
     "Charges a payment card for a patient's bill (test processor) and returns a receipt.",
     "{\"type\":\"object\",\"properties\":{" ID_SCHEMA
     ",\"amount\":{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":10000,"
     "\"description\":\"Amount in USD\"},\"card_number\":{\"type\":\"string\","
     "\"pattern\":\"^[0-9 -]{12,23}$\"}},\"required\":[\"patient_id\",\"amount\",\"card_number\"]}",
     "{\"readOnlyHint\":false,\"destructiveHint\":false,\"idempotentHint\":false,"
     "\"openWorldHint\":true}"},
    {"fetch_url", "Fetch a URL",
     "Fetches an http(s) URL (5 s timeout, no redirects) and returns the status and the first "
     "2 KiB of the body.",
     "{\"type\":\"object\",\"properties\":{\"url\":{\"type\":\"string\",\"format\":\"uri\","
     "\"maxLength\":2048}},\"required\":[\"url\"]}",
     "{\"readOnlyHint\":true,\"openWorldHint\":true}"},
    {"slow_report", "Compile patient report",
     "Compiles a multi-section report for a patient, reporting progress after each step.",
     "{\"type\":\"object\",\"properties\":{" ID_SCHEMA
     ",\"steps\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":20,\"default\":5},"
     "\"interval_ms\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":60000,\"default\":2000}},"
     "\"required\":[\"patient_id\"]}",
     "{\"readOnlyHint\":true,\"openWorldHint\":false}"},
    {"whoami", "Who am I",
     "Reports the caller's identity: the verified token's claims when the server verifies "
     "tokens, else the identity headers the gateway injected; never a token.",
     "{\"type\":\"object\",\"properties\":{}}", "{\"readOnlyHint\":true,\"openWorldHint\":false}"},
};
#define N_TOOLS (sizeof tool_defs / sizeof tool_defs[0])

static const char *const report_sections[] = {
    "demographics",  "encounter history", "medications",    "allergies",      "lab results",
    "immunizations", "vital signs",       "care plan",      "referrals",      "billing summary",
    "imaging",       "procedures",        "family history", "social history", "problem list",
    "notes",         "insurance",         "consents",       "devices",        "sign-off"};

enum job_kind { JOB_REPORT, JOB_FETCH };

struct ehr_job {
    struct ehr_job *next, *prev;
    struct ehr_conn *conn;
    enum job_kind kind;
    int cancelled;
    json_t *id;
    json_t *token;
    /* slow_report */
    uv_timer_t timer;
    const struct ehr_patient *patient;
    unsigned steps, step, interval_ms;
    /* fetch_url: written by the pool thread, read back on the loop after it ends */
    uv_work_t work;
    char *url;
    struct gw_buf got;
    long http_status;
    int truncated;
    int failed;
    char ctype[128];
    char error[CURL_ERROR_SIZE];
};

/* ---- tools/list pages ---- */

int ehr_tools_init(struct ehr_app *app)
{
    int rc = -1;
    unsigned per = app->opt.page_size ? app->opt.page_size : (unsigned)N_TOOLS;
    unsigned pages = (unsigned)((N_TOOLS + per - 1) / per);
    app->tool_pages = calloc(pages, sizeof *app->tool_pages);
    app->tool_page_lens = calloc(pages, sizeof *app->tool_page_lens);
    if (!app->tool_pages || !app->tool_page_lens)
        goto out;
    app->n_tool_pages = pages;
    for (unsigned p = 0; p < pages; p++) {
        json_t *list = json_array();
        for (unsigned i = p * per; i < N_TOOLS && i < (p + 1) * per; i++) {
            const struct tool_def *d = &tool_defs[i];
            json_error_t err;
            json_t *schema = json_loads(d->schema, 0, &err);
            json_t *ann = json_loads(d->annotations, 0, &err);
            if (!schema || !ann) {
                json_decref(schema);
                json_decref(ann);
                json_decref(list);
                goto out;
            }
            json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:o, s:o}", "name", d->name,
                                                  "title", d->title, "description", d->description,
                                                  "inputSchema", schema, "annotations", ann));
        }
        json_t *page = json_pack("{s:o}", "tools", list);
        if (p + 1 < pages) {
            char cursor[32];
            snprintf(cursor, sizeof cursor, "page:%u", p + 1);
            json_object_set_new(page, "nextCursor", json_string(cursor));
        }
        app->tool_pages[p] = json_dumps(page, JSON_COMPACT);
        json_decref(page);
        if (!app->tool_pages[p])
            goto out;
        app->tool_page_lens[p] = strlen(app->tool_pages[p]);
    }
    rc = 0;
out:
    return rc;
}

void ehr_tools_free(struct ehr_app *app)
{
    for (unsigned p = 0; app->tool_pages && p < app->n_tool_pages; p++)
        free(app->tool_pages[p]);
    free(app->tool_pages);
    free(app->tool_page_lens);
    app->tool_pages = NULL;
    app->tool_page_lens = NULL;
    app->n_tool_pages = 0;
}

/* ---- helpers ---- */

int ehr_utf8_sanitize(struct gw_buf *out, const char *s, size_t n)
{
    static const char replacement[] = "\xEF\xBF\xBD";
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len = 0;
        uint32_t cp = 0;
        if (c < 0x80) {
            len = 1;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        }
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) {
            unsigned char cc = (unsigned char)s[i + k];
            if ((cc & 0xC0) != 0x80)
                ok = 0;
            cp = (cp << 6) | (cc & 0x3F);
        }
        /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8 either. */
        if (ok && ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
                   (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))))
            ok = 0;
        if (ok) {
            if (gw_buf_append(out, s + i, len) != 0)
                return -1;
            i += len;
        } else {
            if (gw_buf_append(out, replacement, 3) != 0)
                return -1;
            i++;
        }
    }
    return gw_buf_append(out, "", 0);
}

/* A tool result: content [{type: text}] plus structuredContent. Steals `structured`. */
static json_t *tool_result(json_t *structured, const char *text, int is_error)
{
    char *dumped = NULL;
    if (!text) {
        dumped = json_dumps(structured, JSON_COMPACT | JSON_REAL_PRECISION(15));
        text = dumped ? dumped : "";
    }
    json_t *r = json_pack("{s:[{s:s, s:s}], s:o, s:b}", "content", "type", "text", "text", text,
                          "structuredContent", structured, "isError", is_error);
    free(dumped);
    return r;
}

static void tool_error(struct ehr_conn *c, json_t *id, const char *message)
{
    ehr_ex_result(c, id, tool_result(json_pack("{s:s}", "error", message), message, 1));
}

/* Looks up args.patient_id; on failure writes the tool error and returns NULL. */
static const struct ehr_patient *arg_patient(struct ehr_conn *c, json_t *id, json_t *args)
{
    struct ehr_data *d = &c->w->app->data;
    json_t *v = json_object_get(args, "patient_id");
    if (!json_is_string(v)) {
        tool_error(c, id, "patient_id is required and must be a string such as \"P123\"");
        return NULL;
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    const struct ehr_patient *p = ehr_data_find(d, s, n);
    if (!p) {
        char msg[128];
        int ascii_id = n >= 2 && n <= 12 && s[0] == 'P' && strspn(s + 1, "0123456789") == n - 1;
        if (ascii_id)
            snprintf(msg, sizeof msg, "No patient with id %s (ids run from P1 to P%u)", s,
                     d->count);
        else
            snprintf(msg, sizeof msg, "patient_id must look like P123 (ids run from P1 to P%u)",
                     d->count);
        tool_error(c, id, msg);
    }
    return p;
}

/* Reads an optional integer argument within [min, max]; -1 (error written) when invalid. */
static int arg_int(struct ehr_conn *c, json_t *id, json_t *args, const char *key, long long def,
                   long long min, long long max, long long *out)
{
    json_t *v = json_object_get(args, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    /* Clients that send 5.0 for an integer mean 5. */
    double dv = json_is_real(v) ? json_real_value(v) : 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
    } else if (json_is_real(v) && dv == floor(dv) && fabs(dv) < 1e15) {
        *out = (long long)dv;
    } else {
        char msg[96];
        snprintf(msg, sizeof msg, "%s must be an integer", key);
        tool_error(c, id, msg);
        return -1;
    }
    if (*out < min || *out > max) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s must be between %lld and %lld", key, min, max);
        tool_error(c, id, msg);
        return -1;
    }
    return 0;
}

static void append_str_array(struct gw_buf *b, const char *const *items, unsigned n)
{
    gw_buf_append(b, "[", 1);
    for (unsigned i = 0; i < n; i++)
        gw_buf_printf(b, "%s\"%s\"", i ? "," : "", items[i]);
    gw_buf_append(b, "]", 1);
}

/*
 * Writes a patient as JSON text. This is the benchmark's hot tool, so it is printed directly
 * rather than built as a jansson tree and dumped: every generated field is plain ASCII from
 * the tables in data.c (no quotes, no backslashes); only the note, which a client wrote, is
 * escaped.
 */
static void patient_write(struct gw_buf *b, struct ehr_data *d, const struct ehr_patient *p)
{
    gw_buf_printf(
        b,
        "{\"patient_id\":\"%s\",\"mrn\":\"%s\",\"name\":\"%s %s\",\"given_name\":\"%s\","
        "\"family_name\":\"%s\",\"sex\":\"%s\",\"date_of_birth\":\"%s\",\"ssn\":\"%s\","
        "\"phone\":\"%s\",\"email\":\"%s\",\"address\":{\"street\":\"%s\",\"city\":\"%s\","
        "\"state\":\"%s\",\"postal_code\":\"%s\",\"country\":\"US\"},\"allergies\":",
        p->id, p->mrn, p->first, p->last, p->first, p->last, p->sex, p->dob, p->ssn, p->phone,
        p->email, p->street, p->city, p->state, p->zip);
    append_str_array(b, p->allergies, p->n_allergies);
    gw_buf_append_str(b, ",\"conditions\":");
    append_str_array(b, p->conditions, p->n_conditions);
    gw_buf_printf(b, ",\"primary_physician\":\"%s\",\"latest_note\":", p->physician);
    char note[EHR_NOTE_MAX + 1];
    long n = ehr_notes_get(d, ehr_data_index(d, p), note, sizeof note);
    if (n >= 0) {
        gw_buf_append(b, "\"", 1);
        gw_buf_append_json_escaped(b, note, (size_t)n);
        gw_buf_append_str(b, "\"}");
    } else {
        gw_buf_append_str(b, "null}");
    }
}

/* ---- the synchronous tools ---- */

static void tool_get_patient(struct ehr_conn *c, json_t *id, json_t *args)
{
    const struct ehr_patient *p = arg_patient(c, id, args);
    if (!p)
        return;
    struct gw_buf *s = &c->w->scratch, *r = &c->w->scratch2;
    gw_buf_reset(s);
    gw_buf_reset(r);
    patient_write(s, &c->w->app->data, p);
    gw_buf_append_str(r, "{\"content\":[{\"type\":\"text\",\"text\":\"");
    gw_buf_append_json_escaped(r, s->data, s->len);
    gw_buf_append_str(r, "\"}],\"structuredContent\":");
    gw_buf_append(r, s->data, s->len);
    gw_buf_append_str(r, ",\"isError\":false}");
    if (!r->data) {
        tool_error(c, id, "out of memory");
        return;
    }
    ehr_ex_result_raw(c, id, r->data, r->len);
}

static void tool_search_patients(struct ehr_conn *c, json_t *id, json_t *args)
{
    struct ehr_data *d = &c->w->app->data;
    json_t *q = json_object_get(args, "query");
    long long limit;
    if (!json_is_string(q) || json_string_length(q) == 0 || json_string_length(q) > 100) {
        tool_error(c, id, "query is required: a string of 1 to 100 characters");
        return;
    }
    if (arg_int(c, id, args, "limit", 10, 1, SEARCH_LIMIT_MAX, &limit) != 0)
        return;
    const struct ehr_patient *found[SEARCH_LIMIT_MAX];
    unsigned total =
        ehr_data_search(d, json_string_value(q), json_string_length(q), found, (unsigned)limit);
    json_t *list = json_array();
    for (unsigned i = 0; i < total && i < (unsigned)limit; i++) {
        char name[48];
        snprintf(name, sizeof name, "%s %s", found[i]->first, found[i]->last);
        json_array_append_new(list, json_pack("{s:s, s:s, s:s}", "patient_id", found[i]->id, "name",
                                              name, "mrn", found[i]->mrn));
    }
    json_t *s =
        json_pack("{s:O, s:i, s:o}", "query", q, "total", (json_int_t)total, "results", list);
    ehr_ex_result(c, id, tool_result(s, NULL, 0));
}

static void tool_update_note(struct ehr_conn *c, json_t *id, json_t *args)
{
    struct ehr_data *d = &c->w->app->data;
    const struct ehr_patient *p = arg_patient(c, id, args);
    if (!p)
        return;
    json_t *note = json_object_get(args, "note");
    if (!json_is_string(note)) {
        tool_error(c, id, "note is required and must be a string");
        return;
    }
    int64_t seq =
        ehr_notes_put(d, ehr_data_index(d, p), json_string_value(note), json_string_length(note));
    if (seq == -1) {
        tool_error(c, id, "note is longer than 4096 bytes");
        return;
    }
    if (seq < 0) {
        tool_error(c, id, "the note store is out of memory");
        return;
    }
    json_t *s = json_pack("{s:s, s:I, s:O, s:b}", "patient_id", p->id, "note_id", (json_int_t)seq,
                          "note", note, "stored", 1);
    ehr_ex_result(c, id, tool_result(s, NULL, 0));
}

static void tool_delete_patient(struct ehr_conn *c, json_t *id, json_t *args)
{
    const struct ehr_patient *p = arg_patient(c, id, args);
    if (!p)
        return;
    json_t *s = json_pack("{s:s, s:s, s:b}", "status", "ok", "patient_id", p->id, "deleted", 1);
    ehr_ex_result(c, id, tool_result(s, NULL, 0));
}

static void tool_charge_card(struct ehr_conn *c, json_t *id, json_t *args)
{
    const struct ehr_patient *p = arg_patient(c, id, args);
    if (!p)
        return;
    json_t *amount_j = json_object_get(args, "amount");
    double amount = json_number_value(amount_j);
    if (!json_is_number(amount_j) || !(amount > 0) || amount > 10000) {
        tool_error(c, id, "amount must be a number greater than 0 and at most 10000");
        return;
    }
    json_t *card_j = json_object_get(args, "card_number");
    const char *card = json_string_value(card_j);
    char digits[24];
    size_t nd = 0;
    int bad = !card || json_string_length(card_j) > 23;
    for (size_t i = 0; !bad && card[i]; i++) {
        if (card[i] >= '0' && card[i] <= '9' && nd < sizeof digits - 1)
            digits[nd++] = card[i];
        else if (card[i] != ' ' && card[i] != '-')
            bad = 1;
    }
    if (bad || nd < 12 || nd > 19) {
        tool_error(c, id, "card_number must be 12 to 19 digits (spaces and dashes allowed)");
        return;
    }
    digits[nd] = '\0';

    unsigned char rnd[6];
    char receipt[16];
    if (gw_random_bytes(rnd, sizeof rnd) != 0)
        memset(rnd, 0, sizeof rnd);
    snprintf(receipt, sizeof receipt, "R-%02X%02X%02X%02X%02X%02X", rnd[0], rnd[1], rnd[2], rnd[3],
             rnd[4], rnd[5]);
    char masked[24];
    snprintf(masked, sizeof masked, "**** **** **** %s", digits + nd - 4);
    /* The card on file is a public test number, printed whole the way careless receipts do:
     * it is what a response-side safety layer is there to catch. */
    char on_file[24];
    const char *f = p->card;
    size_t fl = strlen(f), o = 0;
    for (size_t i = 0; i < fl; i++) {
        if (i > 0 && i % 4 == 0)
            on_file[o++] = ' ';
        on_file[o++] = f[i];
    }
    on_file[o] = '\0';
    char text[320];
    snprintf(text, sizeof text,
             "Charged USD %.2f to card %s for patient %s. Receipt %s, status approved. "
             "Card on file for refunds: %s.",
             amount, masked, p->id, receipt, on_file);
    json_t *s =
        json_pack("{s:s, s:s, s:f, s:s, s:s, s:s}", "receipt_id", receipt, "patient_id", p->id,
                  "amount", amount, "currency", "USD", "card", masked, "status", "approved");
    json_t *r = tool_result(s, text, 0);
    json_object_set_new(r, "_meta", json_pack("{s:f}", "toolgate/cost", amount * 0.01));
    ehr_ex_result(c, id, r);
}

static json_t *header_json(const struct ehr_request *req, enum ehr_hdr h)
{
    struct gw_slice v = req->hdr[h];
    if (!v.ptr)
        return json_null();
    struct gw_buf b = {0};
    if (ehr_utf8_sanitize(&b, v.ptr, v.len > 1024 ? 1024 : v.len) != 0) {
        gw_buf_free(&b);
        return json_null();
    }
    json_t *j = json_stringn(b.data, b.len);
    gw_buf_free(&b);
    return j ? j : json_null();
}

static json_t *string_or_null(const char *s)
{
    json_t *j = s ? json_string(s) : NULL;
    return j ? j : json_null();
}

/*
 * With token verification on, the identity is what the verified token says (the X-Toolgate-*
 * headers are ignored: anyone can send them); without it, the headers as received.
 */
static void tool_whoami(struct ehr_conn *c, const struct ehr_request *req, json_t *id)
{
    json_t *s;
    if (c->authenticated) {
        const struct ehr_principal *p = &c->principal;
        s = json_pack("{s:o, s:o, s:O, s:O, s:o, s:o, s:b, s:b}", "subject",
                      string_or_null(p->subject), "tenant", string_or_null(p->tenant), "roles",
                      p->roles, "scopes", p->scopes, "client", string_or_null(p->client),
                      "request_id", header_json(req, EHR_H_TG_REQUEST_ID), "authorization_present",
                      1, "verified", 1);
    } else {
        s = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:b, s:b}", "subject",
                      header_json(req, EHR_H_TG_SUBJECT), "tenant",
                      header_json(req, EHR_H_TG_TENANT), "roles", header_json(req, EHR_H_TG_ROLES),
                      "scopes", header_json(req, EHR_H_TG_SCOPES), "client",
                      header_json(req, EHR_H_TG_CLIENT), "request_id",
                      header_json(req, EHR_H_TG_REQUEST_ID), "authorization_present",
                      req->hdr[EHR_H_AUTHORIZATION].ptr != NULL, "verified", 0);
    }
    ehr_ex_result(c, id, tool_result(s, NULL, 0));
}

/* ---- jobs ---- */

static struct ehr_job *job_new(struct ehr_conn *c, enum job_kind kind, json_t *id)
{
    struct ehr_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->conn = c;
    j->kind = kind;
    j->id = json_incref(id);
    j->timer.data = j;
    j->work.data = j;
    ehr_conn_hold(c);
    j->next = c->ex.jobs;
    if (c->ex.jobs)
        c->ex.jobs->prev = j;
    c->ex.jobs = j;
    c->ex.pending++;
    return j;
}

static void job_unlink(struct ehr_job *j)
{
    struct ehr_exchange *ex = &j->conn->ex;
    if (j->prev)
        j->prev->next = j->next;
    else if (ex->jobs == j)
        ex->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    j->next = j->prev = NULL;
}

static void job_free(struct ehr_job *j)
{
    json_decref(j->id);
    json_decref(j->token);
    free(j->url);
    gw_buf_free(&j->got);
    ehr_conn_release(j->conn);
    free(j);
}

static void on_job_timer_closed(uv_handle_t *h)
{
    job_free(h->data);
}

void ehr_tools_cancel(struct ehr_conn *c)
{
    struct ehr_job *j = c->ex.jobs;
    c->ex.jobs = NULL;
    while (j) {
        struct ehr_job *next = j->next;
        j->next = j->prev = NULL;
        j->cancelled = 1;
        if (j->kind == JOB_REPORT) {
            uv_timer_stop(&j->timer);
            uv_close((uv_handle_t *)&j->timer, on_job_timer_closed);
        } else {
            /* Succeeds only if the fetch has not started; else it ends within 5 s. */
            uv_cancel((uv_req_t *)&j->work);
        }
        j = next;
    }
}

static void on_report_step(uv_timer_t *t)
{
    struct ehr_job *j = t->data;
    struct ehr_conn *c = j->conn;
    j->step++;
    const char *section = report_sections[(j->step - 1) % 20];
    if (j->token) {
        char msg[96];
        snprintf(msg, sizeof msg, "Compiled %s (%u of %u)", section, j->step, j->steps);
        ehr_ex_notify(c,
                      json_pack("{s:s, s:s, s:{s:O, s:i, s:i, s:s}}", "jsonrpc", "2.0", "method",
                                "notifications/progress", "params", "progressToken", j->token,
                                "progress", (int)j->step, "total", (int)j->steps, "message", msg));
    }
    if (j->step < j->steps) {
        uv_timer_start(&j->timer, on_report_step, j->interval_ms, 0);
        return;
    }
    const struct ehr_patient *p = j->patient;
    json_t *sections = json_array();
    for (unsigned i = 0; i < j->steps; i++)
        json_array_append_new(sections, json_string(report_sections[i % 20]));
    char summary[256];
    snprintf(summary, sizeof summary,
             "Report for %s %s (%s, born %s): %u sections compiled. Primary physician: %s.",
             p->first, p->last, p->id, p->dob, j->steps, p->physician);
    json_t *s = json_pack("{s:s, s:s, s:i, s:o, s:s}", "patient_id", p->id, "mrn", p->mrn, "steps",
                          (int)j->steps, "sections", sections, "summary", summary);
    job_unlink(j);
    ehr_ex_result(c, j->id, tool_result(s, NULL, 0));
    uv_close((uv_handle_t *)&j->timer, on_job_timer_closed);
    ehr_ex_job_done(c);
}

static void tool_slow_report(struct ehr_conn *c, json_t *id, json_t *args, json_t *token)
{
    const struct ehr_patient *p = arg_patient(c, id, args);
    long long steps, interval;
    if (!p || arg_int(c, id, args, "steps", 5, 1, 20, &steps) != 0 ||
        arg_int(c, id, args, "interval_ms", 2000, 0, 60000, &interval) != 0)
        return;
    struct ehr_job *j = job_new(c, JOB_REPORT, id);
    if (!j) {
        tool_error(c, id, "out of memory");
        return;
    }
    j->token = token ? json_incref(token) : NULL;
    j->patient = p;
    j->steps = (unsigned)steps;
    j->interval_ms = (unsigned)interval;
    uv_timer_init(&c->w->loop, &j->timer);
    uv_timer_start(&j->timer, on_report_step, j->interval_ms, 0);
}

static size_t on_fetch_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct ehr_job *j = userdata;
    size_t n = size * nmemb;
    size_t room = FETCH_MAX_BYTES - j->got.len;
    if (n > room) {
        gw_buf_append(&j->got, ptr, room);
        j->truncated = 1;
        return 0; /* stop here: 256 KiB is all this tool reads */
    }
    return gw_buf_append(&j->got, ptr, n) == 0 ? n : 0;
}

/* Runs on a pool thread: blocking libcurl easy, bounded in time and size. */
static void fetch_work(uv_work_t *w)
{
    struct ehr_job *j = w->data;
    CURL *h = curl_easy_init();
    if (!h) {
        j->failed = 1;
        snprintf(j->error, sizeof j->error, "cannot start a transfer");
        return;
    }
    curl_easy_setopt(h, CURLOPT_URL, j->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, FETCH_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, FETCH_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ehr-backend/" TOOLGATE_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_fetch_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, j->error);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &j->http_status);
    char *ct = NULL;
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
        snprintf(j->ctype, sizeof j->ctype, "%s", ct);
    if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && j->truncated)) {
        j->failed = 1;
        if (!j->error[0])
            snprintf(j->error, sizeof j->error, "%s", curl_easy_strerror(rc));
    }
    curl_easy_cleanup(h);
}

static void fetch_done(uv_work_t *w, int status)
{
    struct ehr_job *j = w->data;
    struct ehr_conn *c = j->conn;
    if (status == UV_ECANCELED || j->cancelled) {
        job_free(j);
        return;
    }
    job_unlink(j);
    if (j->failed) {
        struct gw_buf msg = {0};
        gw_buf_append_str(&msg, "fetch failed: ");
        ehr_utf8_sanitize(&msg, j->error, strnlen(j->error, sizeof j->error));
        tool_error(c, j->id, msg.data ? msg.data : "fetch failed");
        gw_buf_free(&msg);
    } else {
        struct gw_buf body = {0}, text = {0}, ctype = {0};
        size_t shown = j->got.len < FETCH_BODY_SHOWN ? j->got.len : FETCH_BODY_SHOWN;
        ehr_utf8_sanitize(&body, j->got.data ? j->got.data : "", shown);
        ehr_utf8_sanitize(&ctype, j->ctype, strlen(j->ctype));
        gw_buf_printf(&text, "HTTP %ld, %zu bytes%s\n\n", j->http_status, j->got.len,
                      j->truncated ? " (truncated at 256 KiB)" : "");
        gw_buf_append(&text, body.data, body.len);
        json_t *s = json_pack("{s:s, s:i, s:s, s:I, s:b, s:s%}", "url", j->url, "status",
                              (int)j->http_status, "content_type", ctype.data ? ctype.data : "",
                              "bytes", (json_int_t)j->got.len, "truncated", j->truncated, "body",
                              body.data ? body.data : "", body.len);
        ehr_ex_result(c, j->id, tool_result(s, text.data ? text.data : "", 0));
        gw_buf_free(&body);
        gw_buf_free(&text);
        gw_buf_free(&ctype);
    }
    ehr_ex_job_done(c);
    job_free(j);
}

static void tool_fetch_url(struct ehr_conn *c, json_t *id, json_t *args)
{
    json_t *u = json_object_get(args, "url");
    const char *url = json_string_value(u);
    size_t n = json_string_length(u);
    if (!url || n == 0 || n > FETCH_URL_MAX || memchr(url, '\0', n) ||
        (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)) {
        tool_error(c, id, "url must be an http:// or https:// URL of at most 2048 characters");
        return;
    }
    struct ehr_job *j = job_new(c, JOB_FETCH, id);
    if (!j || !(j->url = strdup(url))) {
        if (j) {
            job_unlink(j);
            c->ex.pending--;
            job_free(j);
        }
        tool_error(c, id, "out of memory");
        return;
    }
    if (uv_queue_work(&c->w->loop, &j->work, fetch_work, fetch_done) != 0) {
        job_unlink(j);
        c->ex.pending--;
        job_free(j);
        tool_error(c, id, "cannot start the fetch");
    }
}

int ehr_tools_call(struct ehr_conn *c, const struct ehr_request *req, json_t *id, const char *name,
                   json_t *args, json_t *progress_token)
{
    static const char *const names[] = {"get_patient",    "search_patients", "update_note",
                                        "delete_patient", "charge_card",     "fetch_url",
                                        "slow_report",    "whoami"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i]) == 0)
            c->log_tool = names[i];
    }
    if (strcmp(name, "get_patient") == 0)
        tool_get_patient(c, id, args);
    else if (strcmp(name, "search_patients") == 0)
        tool_search_patients(c, id, args);
    else if (strcmp(name, "update_note") == 0)
        tool_update_note(c, id, args);
    else if (strcmp(name, "delete_patient") == 0)
        tool_delete_patient(c, id, args);
    else if (strcmp(name, "charge_card") == 0)
        tool_charge_card(c, id, args);
    else if (strcmp(name, "fetch_url") == 0)
        tool_fetch_url(c, id, args);
    else if (strcmp(name, "slow_report") == 0)
        tool_slow_report(c, id, args, progress_token);
    else if (strcmp(name, "whoami") == 0)
        tool_whoami(c, req, id);
    else
        return -1;
    return 0;
}
