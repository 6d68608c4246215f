/*
 * Fuzz driver: the safety scanner over arbitrary strings and JSON. The first input byte picks
 * what runs on the rest: the text scanner (with a member name), the validators, the
 * normalizer, or the JSON walk with redaction under two configurations. Invariants checked:
 * spans sorted, disjoint and inside the string; the normalizer's map increasing and ending at
 * the input length; redacted JSON still valid UTF-8 that serializes and parses again.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layers/safety/safety-int.h"

static const char custom_yaml[] =
    "safety:\n"
    "  detectors:\n"
    "    email: redact\n"
    "    phone: {action: redact, redact: mask}\n"
    "    mrn: {action: redact, patterns: ['PT-?[0-9]{4,6}'], context: [patient]}\n"
    "  custom:\n"
    "    - {name: badge, pattern: 'B[0-9]{6}', validator: luhn, action: redact}\n"
    "    - {name: acct, pattern: 'AC(?=[0-9])\\K[0-9A-Z]{8}', validator: mod97, action: block}\n"
    "  redaction: {style: hash}\n"
    "  limits: {max_scan_bytes: 4KiB, max_depth: 8, on_oversize: pass}\n";

static struct safety_config *configs[2];

static void setup(void)
{
    struct cfg_doc doc;
    struct cfg_error err;
    configs[0] = safety_config_default();
    if (!configs[0] || cfg_load_string(custom_yaml, sizeof custom_yaml - 1, "fuzz", &doc, &err))
        abort();
    if (safety_config_parse(&doc, cfg_map_get(doc.root, "safety"), &configs[1], &err) != 0)
        abort();
    cfg_doc_free(&doc);
}

static void scan_text(const struct safety_config *sc, const char *s, size_t n)
{
    struct safety_match m[SAFETY_MAX_MATCHES];
    unsigned flags = 0;
    size_t kl = n > 0 ? (unsigned char)s[0] % 16 : 0;
    if (kl > n)
        kl = n;
    int r = safety_scan_text(sc, s + kl, n - kl, s, kl, m, SAFETY_MAX_MATCHES, &flags);
    if (r < 0)
        return;
    size_t prev = 0;
    for (int i = 0; i < r; i++) {
        if (m[i].start < prev || m[i].end <= m[i].start || m[i].end > n - kl)
            abort();
        if (!safety_detector_name(sc, m[i].detector))
            abort();
        prev = m[i].end;
    }
}

static void validators(const char *s, size_t n)
{
    (void)safety_luhn_ok(s, n);
    (void)safety_card_ok(s, n, NULL);
    (void)safety_iban_ok(s, n);
    (void)safety_ssn_ok(s, n);
    (void)safety_itin_ok(s, n);
    (void)safety_npi_ok(s, n);
    (void)safety_dea_ok(s, n);
    (void)safety_ipv4_ok(s, n);
    (void)safety_ipv6_ok(s, n);
    (void)safety_email_ok(s, n);
    (void)safety_phone_ok(s, n);
    (void)safety_entropy(s, n);
    (void)safety_jwt_ok(s, n);
    (void)safety_date_ok(s, n);
}

static void normalize(const char *s, size_t n)
{
    char *out;
    size_t on;
    uint32_t *map;
    if (safety_normalize(s, n, &out, &on, &map) != 0)
        return;
    if (map) {
        if (map[on] != n)
            abort();
        for (size_t i = 0; i < on; i++)
            if (map[i] >= n || (i > 0 && map[i] <= map[i - 1]))
                abort();
        free(out);
        free(map);
    } else if (out != s || on != n) {
        abort();
    }
}

static void scan_json(const struct safety_config *sc, const char *s, size_t n, int dir)
{
    json_error_t jerr;
    json_t *doc = json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!doc)
        return;
    struct gw_findings f;
    memset(&f, 0, sizeof f);
    size_t budget = sc->max_scan_bytes;
    struct safety_scan_opts o = {.direction = dir ? GW_DIR_RESPONSE : GW_DIR_REQUEST,
                                 .tenant = "t1",
                                 .redact = 1,
                                 .budget = &budget};
    struct safety_result res;
    memset(&res, 0, sizeof res);
    safety_scan_json(sc, doc, "/params/arguments", &o, &f, &res);
    if (f.n > GW_MAX_FINDINGS)
        abort();
    char *out = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!out)
        abort();
    json_t *again = json_loads(out, JSON_DECODE_ANY, &jerr);
    if (!again)
        abort();
    json_decref(again);
    free(out);
    json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!configs[0])
        setup();
    if (size < 1)
        return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 6) {
    case 0:
        scan_text(configs[0], s, n);
        break;
    case 1:
        scan_text(configs[1], s, n);
        break;
    case 2:
        validators(s, n);
        break;
    case 3:
        normalize(s, n);
        break;
    case 4:
        scan_json(configs[0], s, n, data[0] & 8);
        break;
    default:
        scan_json(configs[1], s, n, data[0] & 8);
        break;
    }
    return 0;
}
