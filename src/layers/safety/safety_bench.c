/*
 * safety_bench: scan throughput and latency. Prints one line per measurement:
 *   throughput on string-heavy JSON without PII (goal >= 1 GB/s per core),
 *   throughput with realistic PII density (a finding every ~400 bytes, redacted),
 *   p50/p99 time to scan and redact an 8 KiB argument object (goal p99 <= 50 us),
 *   throughput on prose in other scripts (the normalizer's slow path), on a structured answer
 *   of numbers, and on a binary blob in base64 (decoding gives up on its first bytes).
 */
#include "lib/base64.h"
#include "layers/safety/safety-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/timeutil.h"

static const char *const words[] = {
    "the",     "patient", "reported",  "mild",  "pain",      "after",   "walking", "and",
    "was",     "advised", "to",        "rest",  "for",       "two",     "weeks",   "follow",
    "up",      "visit",   "scheduled", "with",  "primary",   "care",    "notes",   "indicate",
    "stable",  "vitals",  "no",        "known", "allergies", "review",  "plan",    "summary",
    "request", "update",  "record",    "order", "status",    "pending", "shipped", "invoice",
};

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Prose of about len bytes; with pii, a PII value every ~400 bytes. */
static void prose(struct gw_buf *b, size_t len, int pii)
{
    static const char *const values[] = {
        "call 415-555-2671 today",      "mail jane.doe@example.com",   "SSN 134-67-7626 on file",
        "card 4111 1111 1111 1111 exp", "IBAN DE89370400440532013000", "from 10.20.30.40 host",
    };
    size_t next = 400;
    while (b->len < len) {
        if (pii && b->len >= next) {
            gw_buf_append_str(b, values[rng() % 6]);
            gw_buf_append(b, " ", 1);
            next += 400;
            continue;
        }
        gw_buf_append_str(b, words[rng() % (sizeof words / sizeof words[0])]);
        gw_buf_append(b, rng() % 9 == 0 ? ". " : " ", rng() % 9 == 0 ? 2 : 1);
        if (rng() % 23 == 0)
            gw_buf_printf(b, "%u ", (unsigned)(rng() % 1000));
    }
}

/* Words of other scripts (Arabic with Arabic-Indic digits, Devanagari, Chinese, Greek). */
static const char *const words_intl[] = {
    "\u0627\u0644\u0645\u0631\u064a\u0636",
    "\u0635\u0641\u062d\u0629 \u0664\u0662",
    "\u0930\u094b\u0917\u0940",
    "\u0935\u0930\u094d\u0937 \u0968\u0966\u0968\u096a",
    "\u75c5\u4eba",
    "\u62a5\u544a",
    "\u03b1\u03c3\u03b8\u03b5\u03bd\u03ae\u03c2",
    "caf\u00e9",
};

static void prose_intl(struct gw_buf *b, size_t len)
{
    while (b->len < len) {
        gw_buf_append_str(b, words_intl[rng() % (sizeof words_intl / sizeof words_intl[0])]);
        gw_buf_append(b, " ", 1);
    }
}

/* An object of `fields` string members of about `each` bytes. */
static json_t *document(size_t fields, size_t each, int pii)
{
    json_t *o = json_object();
    for (size_t i = 0; i < fields; i++) {
        struct gw_buf b = {0};
        char key[32];
        prose(&b, each, pii);
        snprintf(key, sizeof key, "field_%zu", i);
        json_object_set_new(o, key, json_stringn(b.data, b.len));
        gw_buf_free(&b);
    }
    return o;
}

static double throughput(const struct safety_config *sc, json_t *doc, int redact, size_t rounds,
                         size_t *bytes_out)
{
    uint64_t total = 0, ns = 0;
    for (size_t r = 0; r < rounds; r++) {
        json_t *d = redact ? json_deep_copy(doc) : json_incref(doc);
        struct gw_findings f;
        memset(&f, 0, sizeof f);
        size_t budget = SIZE_MAX;
        struct safety_scan_opts o = {
            .direction = GW_DIR_REQUEST, .redact = redact, .budget = &budget};
        struct safety_result res;
        memset(&res, 0, sizeof res);
        uint64_t t0 = gw_mono_ns();
        safety_scan_json(sc, d, "", &o, &f, &res);
        ns += gw_mono_ns() - t0;
        total += res.scanned;
        gw_findings_free(&f);
        json_decref(d);
    }
    *bytes_out = (size_t)total;
    return ns ? (double)total / ((double)ns / 1e9) : 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int usage(FILE *to)
{
    fprintf(to, "usage: toolgate bench safety [--file MESSAGE.json [--rounds N]]\n"
                "  scan throughput (prose, PII, other scripts, numbers, base64) and latency;\n"
                "  --file: the time to scan and redact one message read from a file, as the\n"
                "  gateway scans a backend's answer (N rounds, 20000 by default)\n");
    return to == stdout ? 0 : 2;
}

/* One message from a file, scanned and redacted N times as an answer: time per scan. */
static int bench_file(const struct safety_config *sc, const char *path, long rounds)
{
    json_error_t err;
    json_t *msg = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!msg) {
        if (err.line > 0)
            fprintf(stderr, "safety bench: %s:%d: %s\n", path, err.line, err.text);
        else
            fprintf(stderr, "safety bench: %s\n", err.text);
        return 1;
    }
    uint64_t *lat = malloc((size_t)rounds * sizeof *lat);
    if (!lat) {
        json_decref(msg);
        return 1;
    }
    size_t findings = 0, scanned = 0;
    uint64_t total = 0;
    for (long i = 0; i < rounds; i++) {
        json_t *d = json_deep_copy(msg);
        struct gw_findings f;
        memset(&f, 0, sizeof f);
        size_t budget = sc->max_scan_bytes;
        struct safety_scan_opts o = {
            .direction = GW_DIR_RESPONSE, .redact = 1, .budget = &budget, .envelope = 1};
        struct safety_result res;
        memset(&res, 0, sizeof res);
        uint64_t t0 = gw_mono_ns();
        safety_scan_json(sc, d, "", &o, &f, &res);
        lat[i] = gw_mono_ns() - t0;
        total += lat[i];
        findings = f.n + f.dropped;
        scanned = res.scanned;
        gw_findings_free(&f);
        json_decref(d);
    }
    qsort(lat, (size_t)rounds, sizeof *lat, cmp_u64);
    printf("safety scan+redact of %s: %.2f us a scan (p50 %.2f, p99 %.2f; %ld rounds), "
           "%zu bytes scanned, %zu findings\n",
           path, (double)total / 1e3 / (double)rounds, (double)lat[rounds / 2] / 1e3,
           (double)lat[(size_t)((double)rounds * 0.99)] / 1e3, rounds, scanned, findings);
    free(lat);
    json_decref(msg);
    return 0;
}

int safety_bench_main(int argc, char **argv)
{
    const char *file = NULL;
    long rounds = 20000;
    int rounds_given = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            char *end = NULL;
            rounds = strtol(argv[++i], &end, 10);
            rounds_given = 1;
            if (!end || *end || rounds < 1 || rounds > 100000000)
                return usage(stderr);
        } else {
            return usage(stderr);
        }
    }
    if (!file && rounds_given) /* the built-in measurements have rounds of their own */
        return usage(stderr);
    struct safety_config *sc = safety_config_default();
    if (!sc) {
        fprintf(stderr, "safety bench: cannot compile the detectors\n");
        return 1;
    }
    if (file) {
        int rc = bench_file(sc, file, rounds);
        safety_config_free(sc);
        safety_thread_cleanup();
        return rc;
    }
    size_t bytes;
    json_t *clean = document(256, 4096, 0); /* 1 MiB of prose */
    double warm = throughput(sc, clean, 0, 2, &bytes);
    (void)warm;
    double clean_bps = throughput(sc, clean, 0, 20, &bytes);
    printf("safety scan, no PII:      %8.1f MB/s  (%zu MiB of string-heavy JSON, 1 core)\n",
           clean_bps / 1e6, bytes >> 20);
    json_t *dirty = document(256, 4096, 1);
    double dirty_bps = throughput(sc, dirty, 1, 10, &bytes);
    printf("safety scan+redact, PII:  %8.1f MB/s  (a finding every ~400 bytes)\n", dirty_bps / 1e6);

    /* 8 KiB argument objects: 16 fields of 512 bytes, about one finding per field. */
    enum { N = 20000 };
    uint64_t *lat = malloc(N * sizeof *lat);
    json_t *small = document(16, 512, 1);
    for (size_t i = 0; lat && i < N; i++) {
        json_t *d = json_deep_copy(small);
        struct gw_findings f;
        memset(&f, 0, sizeof f);
        size_t budget = sc->max_scan_bytes;
        struct safety_scan_opts o = {.direction = GW_DIR_REQUEST, .redact = 1, .budget = &budget};
        struct safety_result res;
        memset(&res, 0, sizeof res);
        uint64_t t0 = gw_mono_ns();
        safety_scan_json(sc, d, "/params/arguments", &o, &f, &res);
        lat[i] = gw_mono_ns() - t0;
        gw_findings_free(&f);
        json_decref(d);
    }
    int rc = 0;
    if (lat) {
        qsort(lat, N, sizeof *lat, cmp_u64);
        printf("safety 8 KiB arguments:   p50 %6.1f us  p99 %6.1f us  (scan + redact, %d runs)\n",
               lat[N / 2] / 1e3, lat[N * 99 / 100] / 1e3, N);
    } else {
        rc = 1;
    }
    free(lat);

    /* 1 MiB of prose in other scripts, without PII. */
    json_t *intl = json_object();
    for (size_t i = 0; i < 256; i++) {
        struct gw_buf b = {0};
        char key[32];
        prose_intl(&b, 4096);
        snprintf(key, sizeof key, "field_%zu", i);
        json_object_set_new(intl, key, json_stringn(b.data, b.len));
        gw_buf_free(&b);
    }
    double intl_bps = throughput(sc, intl, 0, 10, &bytes);
    printf("safety scan, other scripts: %6.1f MB/s  (Arabic, Devanagari, Chinese, Greek prose)\n",
           intl_bps / 1e6);
    json_decref(intl);

    /* A structured answer of 100,000 numbers (integers and reals). */
    json_t *nums = json_array();
    for (size_t i = 0; i < 100000; i++)
        json_array_append_new(nums, i % 2 ? json_integer((json_int_t)(rng() % 1000000))
                                          : json_real((double)(rng() % 100000000) / 1e4));
    uint64_t t0 = gw_mono_ns();
    throughput(sc, nums, 0, 5, &bytes);
    double per = (double)(gw_mono_ns() - t0) / 5 / 100000;
    printf("safety scan, numbers:     %8.1f ns/number  (100,000 integers and reals)\n", per);
    json_decref(nums);

    /* A 1 MiB binary blob, base64. */
    struct gw_buf raw = {0}, enc = {0};
    for (size_t i = 0; i < (1u << 20); i++) {
        unsigned char c = (unsigned char)(rng() >> 24);
        gw_buf_append(&raw, (const char *)&c, 1);
    }
    static const char b64[] = GW_B64_STD_DIGITS;
    for (size_t i = 0; i + 3 <= raw.len; i += 3) {
        const unsigned char *u = (const unsigned char *)raw.data + i;
        unsigned v = (unsigned)u[0] << 16 | (unsigned)u[1] << 8 | u[2];
        char q[4] = {b64[v >> 18], b64[(v >> 12) & 63], b64[(v >> 6) & 63], b64[v & 63]};
        gw_buf_append(&enc, q, 4);
    }
    json_t *blob = json_pack("{s:s%}", "blob", enc.data, enc.len);
    double blob_bps = throughput(sc, blob, 0, 10, &bytes);
    printf("safety scan, binary blob: %8.1f MB/s  (1 MiB of base64 in one string)\n",
           blob_bps / 1e6);
    json_decref(blob);
    gw_buf_free(&raw);
    gw_buf_free(&enc);
    json_decref(small);
    json_decref(clean);
    json_decref(dirty);
    safety_config_free(sc);
    safety_thread_cleanup();
    return rc;
}
