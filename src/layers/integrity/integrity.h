/*
 * integrity: pins the definitions a backend lists (tools, resources, resource templates,
 * prompts) the first time toolgate sees them, quarantines what later changes, appears or is
 * renamed until an operator approves it, and scans definitions for instructions aimed at the
 * model (tool poisoning). docs/tool-integrity.md describes the model.
 *
 *   integrity_canon.c   canonical JSON (RFC 8785 style) and the definition hashes
 *   integrity_scan.c    the poisoning rules (data) and the scanner
 *   integrity_store.c   the pin store (SQLite)
 *   integrity_module.c  configuration, the pipeline stage, the `toolgate tools` command
 */
#ifndef GW_INTEGRITY_H
#define GW_INTEGRITY_H

#include <jansson.h>
#include <stdio.h>
#include <stddef.h>

#include "lib/buf.h"
#include "lib/cfg.h"
#include "lib/digest.h"
#include "core/config.h"
#include "layers/modules.h"

enum integrity_mode { INTEGRITY_OFF = 0, INTEGRITY_WARN, INTEGRITY_ENFORCE };
enum integrity_scan_action { SCAN_OFF = 0, SCAN_LOG, SCAN_QUARANTINE };

/* ---- canonical form (integrity_canon.c) ---- */

/*
 * Appends the canonical JSON text of v: object members sorted by the UTF-16 code units of
 * their names, no whitespace, strings with only the escapes RFC 8785 requires, integers in
 * decimal, other numbers in their shortest round-trip form. Returns 0, or -1 past max_depth.
 */
int integrity_canonical(const json_t *v, struct gw_buf *out, int max_depth);

/* The list kinds, the member naming each entry, the name the store uses for the kind. */
struct integrity_kind {
    const char *list;  /* result member: "tools" */
    const char *field; /* entry member that names it: "name" */
    const char *kind;  /* "tool" */
};
extern const struct integrity_kind integrity_kinds[4];

/*
 * Hashes one definition: hash of the canonical form of the whole entry, body of the entry
 * without its naming member (the same body under another name is a rename). Hex SHA-256.
 * Returns 0, or -1 when the entry is not an object or too deep.
 */
int integrity_hash_def(const json_t *def, const char *field, char hash[GW_SHA256_HEX_LEN + 1],
                       char body[GW_SHA256_HEX_LEN + 1]);

/* ---- poisoning scan (integrity_scan.c) ---- */

struct integrity_rules; /* compiled rules, opaque */

/*
 * Compiles rules text: one rule a line, `id <TAB or spaces> regex` (PCRE2, UTF, caseless);
 * `#` starts a comment line. The built-in rules are integrity_builtin_rules. Returns 0, or -1
 * with a message in err (line and what is wrong).
 */
int integrity_rules_add(struct integrity_rules **rules, const char *text, const char *origin,
                        char *err, size_t errlen);
void integrity_rules_free(struct integrity_rules *rules);
extern const char integrity_builtin_rules[];

/*
 * Scans every string of a definition (names, descriptions, titles, enums, defaults, prompt
 * arguments: every string value anywhere in it, and member names of schemas). Returns the
 * number of findings; the first rule id goes to first_rule. A description longer than
 * max_description bytes is a finding ("oversized_description").
 */
int integrity_scan(const struct integrity_rules *rules, const json_t *def, size_t max_description,
                   char *first_rule, size_t first_len);

/* ---- store (integrity_store.c) ---- */

struct integrity_store;

struct integrity_pin {
    char state[16]; /* "approved", "pending", "rejected" */
    char hash[GW_SHA256_HEX_LEN + 1];
    char reason[128];
};

/* Opens (creating) the SQLite store at path; ":memory:" for a process-private one. */
struct integrity_store *integrity_store_open(const char *path, char *err, size_t errlen);
void integrity_store_close(struct integrity_store *s);

/* One entry of a list as seen now. */
struct integrity_seen {
    const char *name;
    char hash[GW_SHA256_HEX_LEN + 1];
    char body[GW_SHA256_HEX_LEN + 1];
    char *def;        /* canonical text, owned by the caller */
    char finding[64]; /* first scan finding, or "" */
    int visible;      /* out: 1 when approved with this very hash */
    char event[24];   /* out: "pinned", "drift", "new", "rename", "poison", "" */
    char detail[128]; /* out: the renamed-from name or the rule */
};

/*
 * Compares a whole list of one backend and kind with the pins, in one transaction (the first
 * writer of a backend's first list wins for every process sharing the store): the first list
 * ever seen is pinned as approved (except entries with findings); later changes, additions
 * and renames become pending. Fills each entry's visible/event. Returns 0, or -1 on a store
 * error (the caller fails closed).
 */
int integrity_store_compare(struct integrity_store *s, const char *backend, const char *kind,
                            struct integrity_seen *seen, size_t n, char set_hash[65]);

/* The pin of one name: 1 found, 0 none, -1 store error. */
int integrity_store_get(struct integrity_store *s, const char *backend, const char *kind,
                        const char *name, struct integrity_pin *out);

/* Approves or rejects a pending entry. Returns 1 done, 0 nothing pending by that name, -1. */
int integrity_store_decide(struct integrity_store *s, const char *backend, const char *kind,
                           const char *name, int approve);

/* Writes the pins as JSON lines (list) or the pending entries' diff to f. Returns 0 or -1. */
int integrity_store_list(struct integrity_store *s, FILE *f, int pending_only);
int integrity_store_diff(struct integrity_store *s, FILE *f, const char *backend, const char *kind,
                         const char *name);

/* ---- configuration and module (integrity_module.c) ---- */

struct integrity_backend_mode {
    char *backend;
    enum integrity_mode mode;
};

struct integrity_config {
    char *store_path; /* NULL: a process-private in-memory store */
    enum integrity_mode mode;
    enum integrity_scan_action scan;
    size_t max_description;
    struct integrity_backend_mode *backends;
    size_t n_backends;
    struct integrity_rules *rules;
};

static inline const struct integrity_config *integrity_config_of(const struct gw_config *cfg)
{
    return cfg ? cfg->modules[GW_STAGE_INTEGRITY] : NULL;
}

int integrity_config_parse(const struct cfg_doc *doc, const struct cfg_node *node,
                           const char *config_name, struct integrity_config **out,
                           struct cfg_error *err);
void integrity_config_free(struct integrity_config *ic);

extern const struct gw_layer_ops integrity_layer;
int integrity_cli_main(int argc, char **argv);

#endif
