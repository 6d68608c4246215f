/*
 * Fuzz driver: the safety scanner over arbitrary strings and JSON. The first input byte picks
 * what runs on the rest: the text scanner (with a member name, in either direction), the
 * validators, the normalizer, the base64 text decoder, or the JSON walk with redaction under
 * two configurations (a subtree, or a whole message with its fixed values). Invariants
 * checked: spans sorted, disjoint and inside the string; the normalizer's map increasing and
 * ending at the input length, its output free of what it drops; decoded base64 is text,
 * shorter than its encoding, and encodes back to what decodes to the same text; redacted JSON
 * still valid UTF-8 that serializes and parses again, the fixed values of a message unchanged;
 * the JSON walk with the joined vectorscan pass gives what it gives without (a pass per
 * string).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "layers/safety/safety-int.h"
#include "lib/buf.h"

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
    enum gw_direction dir = n > 0 && (s[0] & 0x40) ? GW_DIR_RESPONSE : GW_DIR_REQUEST;
    int r =
        safety_scan_text_as(sc, s + kl, n - kl, s, kl, dir, NULL, m, SAFETY_MAX_MATCHES, &flags);
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
        if (map[on] != n || on > n)
            abort();
        for (size_t i = 0; i < on; i++)
            if (map[i] >= n || (i > 0 && map[i] <= map[i - 1]))
                abort();
        /* In text (valid UTF-8, as every JSON string is), nothing it drops is left: zero-width
         * space, word joiner, BOM, tags. */
        json_t *valid = json_stringn(s, n);
        if (valid && (memmem(out, on, "\xe2\x80\x8b", 3) || memmem(out, on, "\xe2\x81\xa0", 3) ||
                      memmem(out, on, "\xef\xbb\xbf", 3) || memmem(out, on, "\xf3\xa0", 2)))
            abort();
        json_decref(valid);
        free(out);
        free(map);
    } else if (out != s || on != n) {
        abort();
    }
}

static void base64(const char *s, size_t n)
{
    struct safety_b64 b;
    int r = safety_base64_text(s, n, &b);
    if (r < 0)
        return;
    if (r == 0) {
        if (b.text)
            abort();
        return;
    }
    if (b.len < SAFETY_B64_MIN_TEXT || b.len > n || b.prefix > n || b.text[b.len] != '\0')
        abort();
    for (size_t i = 0; i < b.len; i++)
        if ((unsigned char)b.text[i] < 0x20 && !strchr("\t\n\r", b.text[i]))
            abort();
    json_t *js = json_stringn(b.text, b.len); /* jansson rejects invalid UTF-8 */
    if (!js)
        abort();
    json_decref(js);
    struct gw_buf e = {0};
    if (safety_base64_encode(&e, &b, b.text, b.len) != 0)
        abort();
    struct safety_b64 again;
    if (safety_base64_text(e.data, e.len, &again) != 1 || again.len != b.len ||
        memcmp(again.text, b.text, b.len) != 0)
        abort();
    free(again.text);
    gw_buf_free(&e);
    free(b.text);
}

/* A whole message: the id, the method and the targets must come out as they went in. */
static void scan_message(const struct safety_config *sc, const char *s, size_t n, int dir)
{
    json_error_t jerr;
    json_t *doc = json_loadb(s, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return;
    }
    static const char *const pinned[] = {"/params/name", "/params/uri", NULL};
    json_t *before = json_deep_copy(doc);
    struct gw_findings f;
    memset(&f, 0, sizeof f);
    size_t budget = sc->max_scan_bytes;
    struct safety_scan_opts o = {.direction = dir ? GW_DIR_RESPONSE : GW_DIR_REQUEST,
                                 .tenant = "t1",
                                 .redact = 1,
                                 .budget = &budget,
                                 .envelope = 1,
                                 .pinned = pinned};
    struct safety_result res;
    memset(&res, 0, sizeof res);
    safety_scan_json(sc, doc, "", &o, &f, &res);
    /* Fixed are the scalar values (what the decoder and the relay accept there); inside an
     * object or array in those places, redaction goes on as anywhere. */
    const char *fixed[] = {"id", "method", "jsonrpc"};
    for (size_t i = 0; i < 3; i++) {
        json_t *was = json_object_get(before, fixed[i]);
        if ((json_is_string(was) || json_is_number(was)) &&
            !json_equal(json_object_get(doc, fixed[i]), was))
            abort();
    }
    json_t *p0 = json_object_get(before, "params"), *p1 = json_object_get(doc, "params");
    if (json_is_object(p0)) {
        const char *k;
        json_t *v;
        json_object_foreach(p0, k, v)
        {
            if (!json_object_get(p1, k))
                abort();
        }
        for (size_t i = 0; i < 2; i++) {
            const char *t = i ? "uri" : "name";
            if (json_is_string(json_object_get(p0, t)) &&
                !json_equal(json_object_get(p0, t), json_object_get(p1, t)))
                abort();
        }
    }
    char *out = json_dumps(doc, JSON_COMPACT);
    if (!out)
        abort();
    json_t *again = json_loads(out, 0, &jerr);
    if (!again)
        abort();
    json_decref(again);
    free(out);
    gw_findings_free(&f);
    json_decref(before);
    json_decref(doc);
}

/* Scans doc; returns it serialized with sorted keys (malloc'd) and the result. */
static char *scan_tree(const struct safety_config *sc, json_t *doc, int dir,
                       struct safety_result *res, struct gw_findings *f)
{
    memset(f, 0, sizeof *f);
    memset(res, 0, sizeof *res);
    size_t budget = sc->max_scan_bytes;
    struct safety_scan_opts o = {.direction = dir ? GW_DIR_RESPONSE : GW_DIR_REQUEST,
                                 .tenant = "t1",
                                 .redact = 1,
                                 .budget = &budget};
    safety_scan_json(sc, doc, "/params/arguments", &o, f, res);
    if (f->n > GW_MAX_FINDINGS)
        abort();
    return json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
}

/* With a joined database, the scan must come out as without it and the rule masks (a
 * vectorscan pass per string, every rule looked at in turn). */
static void scan_json(struct safety_config *sc, const char *s, size_t n, int dir)
{
    json_error_t jerr;
    json_t *doc = json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!doc)
        return;
    json_t *twin = sc->db_joined ? json_deep_copy(doc) : NULL;
    struct gw_findings f, f2;
    struct safety_result res, res2;
    char *out = scan_tree(sc, doc, dir, &res, &f);
    if (!out)
        abort();
    json_t *again = json_loads(out, JSON_DECODE_ANY, &jerr);
    if (!again)
        abort();
    json_decref(again);
    if (twin) {
        hs_database_t *joined = sc->db_joined;
        int masks = sc->rule_masks;
        sc->db_joined = NULL;
        sc->rule_masks = 0;
        char *out2 = scan_tree(sc, twin, dir, &res2, &f2);
        sc->db_joined = joined;
        sc->rule_masks = masks;
        if (!out2 || strcmp(out, out2) != 0 || res.findings != res2.findings ||
            res.redactions != res2.redactions || res.block != res2.block ||
            res.error != res2.error || res.flagged != res2.flagged || res.scanned != res2.scanned ||
            strcmp(res.block_path, res2.block_path) != 0 ||
            strcmp(res.error_code, res2.error_code) != 0 || f.n != f2.n)
            abort();
        free(out2);
        gw_findings_free(&f2);
        json_decref(twin);
    }
    free(out);
    gw_findings_free(&f);
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
    switch (data[0] % 8) {
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
    case 5:
        scan_json(configs[1], s, n, data[0] & 8);
        break;
    case 6:
        base64(s, n);
        break;
    default:
        scan_message(configs[data[0] & 16 ? 1 : 0], s, n, data[0] & 8);
        break;
    }
    return 0;
}
