/*
 * safety: PII and secrets in tool arguments and tool results.
 *
 * Built-in detectors (US SSN and ITIN, payment cards, IBAN, e-mail, phone, IP addresses, NPI,
 * DEA numbers, dates of birth, US passport and driver licence numbers, medical record numbers,
 * cloud and SaaS credentials, private keys, JWTs, generic high-entropy secrets) and custom ones
 * from the configuration. Every member name, string and number of every message, in both
 * directions, goes through one vectorscan pass over the whole pattern set (strings that are
 * base64 of text, decoded, too); hits are confirmed and given exact spans by PCRE2 (JIT) and by
 * validators (Luhn, mod-97, SSA ranges, checksums, entropy); overlapping findings take the
 * strictest action. Text is normalized first (digits of every script folded to ASCII,
 * default-ignorable code points dropped, full-width forms, dashes and spaces folded) and spans
 * are mapped back to the original bytes.
 *
 * A compiled safety_config is immutable and shared by every worker thread; per-thread scratch
 * (vectorscan scratch, PCRE2 match data) is allocated on first use in each thread.
 *
 * Findings carry a type, a JSON Pointer, a count, the action and the direction; values never
 * leave this module (docs/safety.md).
 */
#ifndef GW_SAFETY_H
#define GW_SAFETY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/request-t.h"
#include "lib/cfg.h"
#include "core/config.h"
#include "layers/modules.h"

struct safety_config;

/* What a detector does when it fires. OFF means the detector is disabled for that direction. */
enum safety_action { SAFETY_OFF = 0, SAFETY_LOG, SAFETY_REDACT, SAFETY_BLOCK };

/* How a redacted span is replaced. */
enum safety_style {
    SAFETY_STYLE_PLACEHOLDER = 0, /* [REDACTED:SSN] */
    SAFETY_STYLE_MASK,            /* ***-**-1120 (last 4 kept where the type allows) */
    SAFETY_STYLE_HASH,            /* [SSN:<16 hex of HMAC-SHA256(key, tenant, type, value)>] */
};

/* What happens to a message whose strings exceed limits.max_scan_bytes or limits.max_depth. */
enum safety_oversize { SAFETY_OVERSIZE_BLOCK = 0, SAFETY_OVERSIZE_PASS };

/*
 * Parses and compiles the `safety` section. section == NULL (no section in the file) gives the
 * defaults documented in docs/safety.md (built-in detectors on: secrets, SSN and ITIN block;
 * cards, IBAN and identity documents redact; e-mail, phone, IP and NPI log; responses redact).
 * Compiles the vectorscan database and the PCRE2 confirmers (tens of milliseconds: call it
 * off the event loop, as config loading is). Returns 0 and *out (free with
 * safety_config_free), or -1 with err naming file:line:col and the key path.
 */
int safety_config_parse(const struct cfg_doc *doc, const struct cfg_node *section,
                        struct safety_config **out, struct cfg_error *err);
void safety_config_free(struct safety_config *sc);

/* The defaults (as with no section); NULL when out of memory or the compile failed. */
struct safety_config *safety_config_default(void);

/* ---- scanning ------------------------------------------------------------------------------ */

/* One detection in one string: byte offsets into the original (not normalized) string. */
struct safety_match {
    int detector; /* index into the config's detectors (safety_detector_name) */
    size_t start;
    size_t end;
};

#define SAFETY_MAX_MATCHES 256 /* per string; more sets SAFETY_SCAN_OVERFLOW */

/* Flags returned by safety_scan_text (ORed into *flags). */
#define SAFETY_SCAN_OVERFLOW 1 /* more than max matches: the whole string counts as one */
#define SAFETY_SCAN_LIMIT 2    /* a PCRE2 resource limit was reached: treat as unscannable */

/*
 * Scans one string (len bytes, any content; not NUL-terminated). `key` (may be NULL) is the
 * name of the object member holding the string: it counts as context for detectors that need
 * context words. Writes up to max matches, sorted by start and not overlapping, into out.
 * Returns the number written (>= 0), or a negative error (-1 out of memory / vectorscan error).
 *
 * Actions decide overlaps: `actions` ([detector][direction], a tool's table, or NULL for the
 * detectors' own) in direction `dir`. A detector that is off there finds nothing; spans that
 * overlap become one match covering all of them, named by the strictest detector among them
 * (block > redact > log); when more than max spans are found (SAFETY_SCAN_OVERFLOW) the
 * strictest are the ones written. safety_scan_text is the same with the detectors' request
 * actions.
 */
int safety_scan_text_as(const struct safety_config *sc, const char *s, size_t len, const char *key,
                        size_t key_len, enum gw_direction dir,
                        const enum safety_action (*actions)[2], struct safety_match *out,
                        size_t max, unsigned *flags);
int safety_scan_text(const struct safety_config *sc, const char *s, size_t len, const char *key,
                     size_t key_len, struct safety_match *out, size_t max, unsigned *flags);

/* Detector metadata. */
size_t safety_detector_count(const struct safety_config *sc);
const char *safety_detector_name(const struct safety_config *sc, int detector);
/* -1 when no detector has that name. */
int safety_detector_find(const struct safety_config *sc, const char *name);
enum safety_action safety_detector_action(const struct safety_config *sc, int detector,
                                          enum gw_direction dir);

/* ---- JSON ---------------------------------------------------------------------------------- */

/*
 * The outcome of scanning one JSON subtree. `block_*` name the first finding whose action is
 * block (type and JSON Pointer, never the value). `error` is set when the subtree could not be
 * scanned completely (oversize, too deep, a resource limit, out of memory) and names why with
 * a reason code ("safety.too_large", "safety.too_deep", "safety.scan_limit", "safety.error").
 */
struct safety_result {
    int block;
    char block_type[32];
    char block_path[160];
    unsigned redactions; /* spans replaced in the tree */
    unsigned findings;   /* spans found (all actions) */
    size_t scanned;      /* bytes of strings and keys scanned */
    int error;
    char error_code[40];
    int flagged;    /* oversize or too deep, passed because limits.on_oversize is pass */
    int id_finding; /* the message's JSON-RPC id holds what blocks or redacts (envelope) */
};

/*
 * Scans every string, number and object key under `node` (modified in place when redactions
 * apply; a redacted number becomes a string), and the text of every string that is base64 of
 * text (re-encoded when redacted). `path` is the JSON Pointer of node (its prefix in findings).
 * `budget` carries the bytes left for this message (limits.max_scan_bytes) across several calls.
 * Findings are merged into `findings` (may be NULL). `tenant` keys the hash style (may be NULL).
 * Redaction happens only when `redact` is set (a dry run otherwise: findings and block are
 * reported).
 */
struct safety_scan_opts {
    enum gw_direction direction;
    const char *tenant;
    int redact;
    size_t *budget;
    /* Per-detector actions [detector][direction] replacing the configured ones (a tool's
     * `safety.tools` override, safety_tool_actions); NULL: the detectors' own. */
    const enum safety_action (*actions)[2];
    /* `node` is a whole JSON-RPC message: the names of its members and of the members of its
     * params, result or error (the protocol's own names), and the values of jsonrpc, id and
     * method cannot be rewritten without changing what the message is; a finding there that
     * would be redacted blocks instead. */
    int envelope;
    /* JSON Pointers, relative to node, of more values that cannot be rewritten (a governed
     * action's target: the decoded request borrows it); NULL-terminated, may be NULL. */
    const char *const *pinned;
};

/* The action table of the first `safety.tools` entry whose globs match the tool name, or
 * NULL when none does (or name is NULL). Borrowed from sc. */
const enum safety_action (*safety_tool_actions(const struct safety_config *sc,
                                               const char *name))[2];
void safety_scan_json(const struct safety_config *sc, json_t *node, const char *path,
                      const struct safety_scan_opts *opts, struct gw_findings *findings,
                      struct safety_result *res);

/* ---- validators (exposed for tests and the CLI) --------------------------------------------- */

/* Luhn over ASCII digits; non-digits make it fail. */
int safety_luhn_ok(const char *digits, size_t len);
/*
 * Payment card number: separators ' ' and '-' ignored, 12..19 digits, a brand whose prefix
 * and length match (best-match rules as in docs/safety.md), Luhn. Writes the brand name to
 * *brand when non-NULL. Returns 1 valid, 0 not.
 */
int safety_card_ok(const char *s, size_t len, const char **brand);
/* IBAN in electronic format (no spaces, upper case): country length, BBAN structure, national
 * check digits where defined, ISO 7064 mod-97. Returns 1 valid, 0 not. */
int safety_iban_ok(const char *s, size_t len);
/* SSN "AAA-GG-SSSS", "AAA GG SSSS" or 9 digits: SSA ranges and known sample numbers. */
int safety_ssn_ok(const char *s, size_t len);
/* ITIN: 9XX-[50-65|70-88|90-92|94-99]-XXXX, same delimiter rules as SSN. */
int safety_itin_ok(const char *s, size_t len);
/* NPI: 10 digits starting 1 or 2, Luhn over "80840" + the number. */
int safety_npi_ok(const char *s, size_t len);
/* DEA registration number: 2 letters + 7 digits with the DEA checksum. */
int safety_dea_ok(const char *s, size_t len);
int safety_ipv4_ok(const char *s, size_t len);
int safety_ipv6_ok(const char *s, size_t len);
int safety_email_ok(const char *s, size_t len);
/* Phone: E.164 (+ and 8..15 digits, NANP rules for +1) or a NANP national number. */
int safety_phone_ok(const char *s, size_t len);
/* Shannon entropy in bits per byte. */
double safety_entropy(const char *s, size_t len);
/* A JWT: three base64url parts, the first decoding to a JSON object with "alg". */
int safety_jwt_ok(const char *s, size_t len);
/* A date of birth (m/d/y, y-m-d, d.m.y, "March 5, 1984", "5 March 1984"), year 1900..2099. */
int safety_date_ok(const char *s, size_t len);

/* ---- normalization (exposed for tests) ------------------------------------------------------ */

/*
 * Folds full-width ASCII forms (U+FF01..U+FF5E) to ASCII, the decimal digits of every script
 * (Unicode Nd) to '0'..'9', dash punctuation and the minus sign to '-', space separators to
 * ' ', the one-dot leader and small full stop to '.', and drops default-ignorable code points
 * (soft hyphen, zero-width and bidirectional controls, variation selectors, tags, ...) and
 * the combining marks of the general combining blocks. Pure ASCII is recognised eight bytes at
 * a time and left alone. On return
 * *out (len *out_len) is the normalized text and map[i] the offset in s of the character that
 * produced out[i]; map[*out_len] == len. When nothing changes, *out == s and *map == NULL.
 * Otherwise *out and *map are malloc'd (caller frees). Returns 0, or -1 when out of memory.
 */
int safety_normalize(const char *s, size_t len, char **out, size_t *out_len, uint32_t **map);

/* ---- counters (process-wide, for metrics) --------------------------------------------------- */

struct safety_counters {
    uint64_t messages;   /* messages scanned */
    uint64_t bytes;      /* bytes of strings scanned */
    uint64_t findings;   /* spans found */
    uint64_t redactions; /* spans replaced */
    uint64_t blocks;     /* messages denied for a finding */
    uint64_t oversize;   /* messages over a bound (blocked or passed with a flag) */
    uint64_t errors;     /* scan errors (fail closed) */
};
void safety_counters_get(struct safety_counters *out);
/* Findings per built-in type name (custom detectors count under "custom"); 0 when unknown. */
uint64_t safety_counter_type(const char *type);
/* GET /metrics: findings by type, action and direction, and the totals above. */
void safety_metrics(const struct gw_config *cfg, struct gw_metrics_out *out);

/* ---- command line ---------------------------------------------------------------------------- */

/*
 * `toolgate safety ...` (argv[0] == "safety"):
 *   validate --type iban|card|ssn|itin|npi|dea|email|phone|ipv4|ipv6
 *            reads one candidate per line on stdin, prints 1 or 0 per line
 *   scan [--config F] [--direction request|response] FILE.json|-
 *            prints the findings (type, path, count, action) of a JSON document
 *   redact [--config F] [--direction request|response] FILE.json|-
 *            prints the document with the redactions applied
 * Returns 0 on success (scan: also when findings), 1 when scan found a blocking finding,
 * 2 usage or config error.
 */
int safety_cli_main(int argc, char **argv);

/* Throughput and latency benchmark; prints one line per measurement. Returns 0 or 1. */
int safety_bench_main(int argc, char **argv);

/* The safety layer's section in a generation (NULL: see safety_config_parse). */
static inline const struct safety_config *safety_config_of(const struct gw_config *cfg)
{
    return cfg ? cfg->modules[GW_STAGE_SAFETY] : NULL;
}

/* The layer's pipeline stage (its struct gw_module is safety_module, layers/modules.h). */
extern const struct gw_layer_ops safety_layer;

#endif
