/*
 * integrity: pins the definitions a backend lists (tools, resources, resource templates,
 * prompts) the first time toolgate sees them, quarantines what later changes, appears or is
 * renamed until an operator approves it, and scans definitions for instructions aimed at the
 * model (tool poisoning). docs/tool-integrity.md describes the model.
 *
 *   integrity_canon.c   canonical JSON (RFC 8785 style) and the definition hashes
 *   integrity_scan.c    the poisoning rules (data) and the scanner
 *   integrity_db.c      the store's databases (SQLite, PostgreSQL) behind one interface
 *   integrity_store.c   the pins, sets and audit events in that database
 *   integrity_manifest.c signed manifests (pins decided in advance)
 *   integrity_layer.c   the pipeline stage, metrics and the admin API topic
 *   integrity_module.c  configuration, runtime (store, manifest, audit drain), reload
 *   integrity_cli.c     `toolgate tools list|diff|approve|reject|pin`
 */
#ifndef GW_INTEGRITY_H
#define GW_INTEGRITY_H

#include <jansson.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/cfg.h"
#include "lib/digest.h"
#include "core/config.h"
#include "layers/modules.h"

struct gw_metrics_out;

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

/* ---- databases (integrity_db.c) ---- */

struct idb;
typedef int (*idb_row_fn)(void *arg, int ncols, const char *const *cols); /* non-zero: stop */

/* "sqlite:PATH", a plain PATH, ":memory:", or "postgres://..." (tables integrity_*). */
struct idb *idb_open(const char *url, char *err, size_t errlen);
void idb_close(struct idb *db);
int idb_is_postgres_url(const char *url);
/* Statements use ?N parameters, every value text (NULL: SQL NULL). Rows changed, or -1. */
int idb_exec(struct idb *db, const char *sql, const char *const *params, int n);
/* Calls fn for each row (columns as text, NULL for NULL). Rows seen, or -1. */
int idb_query(struct idb *db, const char *sql, const char *const *params, int n, idb_row_fn fn,
              void *arg);
/* One writer at a time across every process sharing the store. 0 or -1. */
int idb_begin(struct idb *db);
int idb_commit(struct idb *db);
void idb_rollback(struct idb *db);
const char *idb_error(const struct idb *db); /* the last failure, a sentence */

/* ---- store (integrity_store.c) ---- */

#define INTEGRITY_N_KINDS 4

struct integrity_store;

struct integrity_pin {
    char state[16]; /* "approved", "pending", "rejected" */
    char reason[128];
    char approved_hash[GW_SHA256_HEX_LEN + 1]; /* "" when nothing was ever approved */
    char seen_hash[GW_SHA256_HEX_LEN + 1];     /* "" when never seen (a manifest pin) */
    char approved_body[GW_SHA256_HEX_LEN + 1];
};

/* Opens (creating the tables) the store at url (idb_open). NULL with err on failure. */
struct integrity_store *integrity_store_open(const char *url, char *err, size_t errlen);
void integrity_store_close(struct integrity_store *s);
const char *integrity_store_error(const struct integrity_store *s);

/* One list (or one page of it) of one backend and kind, as toolgate saw it. */
struct integrity_list {
    const char *backend; /* "route/backend" */
    const char *kind;    /* "tool", "prompt", "resource", "resource_template" */
    int paged;           /* the request named a cursor: a later page */
    int more;            /* the answer names a next cursor */
    int64_t now_ms;
    uint64_t first_window_ms;             /* how long the pages of a first listing are trusted */
    char set_hash[GW_SHA256_HEX_LEN + 1]; /* every entry, names included */
    char body_set_hash[GW_SHA256_HEX_LEN + 1]; /* every entry without its name */
};

/* One entry of a list as seen now. */
struct integrity_seen {
    const char *name;
    char hash[GW_SHA256_HEX_LEN + 1];
    char body[GW_SHA256_HEX_LEN + 1];
    char *def;        /* canonical text, owned by the caller */
    char finding[64]; /* first scan finding that quarantines, or "" */
    int visible;      /* out: 1 when what is seen is what was approved */
    char event[24];   /* out: pinned, drift, new, rename, poison, reverted, matched, or "" */
    char detail[128]; /* out: the renamed-from name or the rule */
    char previous[GW_SHA256_HEX_LEN + 1]; /* out: the approved hash it differs from */
};

/*
 * Compares a list with the pins in one transaction: the first list of a backend and kind
 * (and the later pages of that listing, within first_window_ms) is pinned as approved, except
 * entries with findings; later a changed, added or renamed entry becomes pending. Every
 * change is queued as an event for the audit chain in the same transaction. Fills each entry's
 * visible/event. Returns 0, or -1 on a store error (the caller fails closed).
 */
int integrity_store_compare(struct integrity_store *s, const struct integrity_list *l,
                            struct integrity_seen *seen, size_t n);

/* The pin of one name: 1 found, 0 none, -1 store error. */
int integrity_store_get(struct integrity_store *s, const char *backend, const char *kind,
                        const char *name, struct integrity_pin *out);
/* Whether a list of this backend and kind was ever seen (or pinned by a manifest): 1, 0, -1. */
int integrity_store_has_set(struct integrity_store *s, const char *backend, const char *kind);

#define INTEGRITY_DECIDE_DONE 1
#define INTEGRITY_DECIDE_NOTHING 0 /* nothing awaits a decision by that name */
#define INTEGRITY_DECIDE_STALE 2   /* what awaits is not the hash the operator named */
/*
 * Approves or rejects what was seen last under name (pending; or rejected, to approve it
 * after all). hash_prefix (at least 8 hex digits; NULL: any) must begin the hash awaiting the
 * decision, so an operator approves what they reviewed. `by` says who, for the audit event.
 * Returns INTEGRITY_DECIDE_*, or -1 on a store error.
 */
int integrity_store_decide(struct integrity_store *s, const char *backend, const char *kind,
                           const char *name, const char *hash_prefix, int approve, const char *by,
                           int64_t now_ms);

/* One pin row (every string borrowed for the call; the hashes and definitions may be NULL). */
struct integrity_row {
    const char *backend, *kind, *name, *state, *reason;
    const char *approved_hash, *seen_hash, *approved_def, *seen_def;
};
typedef void (*integrity_row_fn)(void *arg, const struct integrity_row *row);
/* Calls fn for each pin (backend, state: NULL for any), in order. The store is locked meanwhile:
 * fn must not call the store. Returns 0 or -1. */
int integrity_store_rows(struct integrity_store *s, const char *backend, const char *state,
                         integrity_row_fn fn, void *arg);

/*
 * Hands up to 256 events not yet on the audit chain to submit (each record a new reference
 * submit steals), marking those it took; stops at the first submit that fails (a full queue).
 * Returns how many it took, or -1.
 */
int integrity_store_drain(struct integrity_store *s, int (*submit)(json_t *rec));

/*
 * Pins what a verified manifest says (approved; the lists of the backends it names get no
 * trust on first use). A manifest with the digest applied last time is skipped, so decisions
 * taken since then survive a restart. Returns the pins applied (0 when skipped), or -1.
 */
int integrity_store_apply_manifest(struct integrity_store *s, const json_t *manifest,
                                   const char *digest, int64_t now_ms);

/* ---- the call path's cached view of the store (integrity_cache.c) ---- */

struct integrity_call_view {
    int found;      /* a pin of this name exists */
    char state[16]; /* its state, when found */
    int listed;     /* not found: a list of this backend and kind was seen (tools, prompts) */
};

/*
 * What the store says about one name, kept for ttl_ms (0: always asks the store). An answer
 * from before the last integrity_cache_invalidate is not used. Returns 0, or -1 on a store
 * error (never kept).
 */
int integrity_cache_lookup(struct integrity_store *s, const char *backend, const char *kind,
                           const char *name, uint64_t ttl_ms, struct integrity_call_view *out);
/* This process changed the store: what was kept is stale. */
void integrity_cache_invalidate(void);
void integrity_cache_counts(uint64_t *hits, uint64_t *misses);
/* Frees what is kept (at stop). */
void integrity_cache_clear(void);

/* ---- manifests (integrity_manifest.c) ---- */

#define INTEGRITY_MANIFEST_MAX (8u * 1024 * 1024)
#define INTEGRITY_MANIFEST_MAX_PINS 100000

/*
 * Parses and verifies a manifest held in memory:
 *   {"format": "toolgate-pins/1", "pins": [{"backend", "kind", "name", "hash"}...],
 *    "signature": "<128 hex digits: Ed25519 over the canonical JSON of the rest>"}
 * The key is an Ed25519 public key (EVP_PKEY). Returns the manifest (a new reference) and its
 * digest (hex SHA-256 of the signed text), or NULL with a sentence in err.
 */
struct evp_pkey_st;
json_t *integrity_manifest_parse(const char *text, size_t len, struct evp_pkey_st *key,
                                 char digest[GW_SHA256_HEX_LEN + 1], char *err, size_t errlen);
/* Reads the file and the PEM public key, then integrity_manifest_parse. */
json_t *integrity_manifest_load(const char *path, const char *pubkey_pem,
                                char digest[GW_SHA256_HEX_LEN + 1], char *err, size_t errlen);
/* Writes a manifest of every approved pin (backend NULL: every backend), signed. -1 with err. */
int integrity_manifest_write(struct integrity_store *s, const char *backend,
                             const char *privkey_pem, const char *out_path, char *err,
                             size_t errlen);

/* ---- configuration and module (integrity_module.c, integrity_layer.c) ---- */

struct integrity_backend_mode {
    char *backend; /* "route/backend" or "backend" */
    enum integrity_mode mode;
};

struct integrity_config {
    char *store_url; /* NULL: a process-private in-memory store */
    enum integrity_mode mode;
    enum integrity_scan_action scan;
    size_t max_description;
    uint64_t first_window_ms;
    uint64_t cache_ttl_ms; /* how long the call path keeps what the store said */
    char *manifest;        /* signed manifest to pin from at start; NULL: none */
    char *manifest_key;    /* the Ed25519 public key (PEM) it must verify with */
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
/* The mode of one backend: "route/backend" first, then "backend", then the default. */
enum integrity_mode integrity_mode_for(const struct integrity_config *ic, const char *route,
                                       const char *backend);

extern const struct gw_layer_ops integrity_layer;
/* The store the running server uses (NULL before start or after stop). */
struct integrity_store *integrity_running_store(void);
int integrity_cli_main(int argc, char **argv);
void integrity_metrics(const struct gw_config *cfg, struct gw_metrics_out *out);
int integrity_admin_api(const struct gw_config *cfg, const char *topic, const json_t *params,
                        json_t **out);

/* A pin's id in the admin API: "pin-" and 16 hex digits of a digest of backend, kind, name. */
#define INTEGRITY_PIN_ID_LEN 20
void integrity_pin_id(const char *backend, const char *kind, const char *name,
                      char id[INTEGRITY_PIN_ID_LEN + 1]);
/*
 * POST /admin/api/integrity/<id>: body {"decision": "approve" | "reject", "hash": "<8 to 64
 * leading hex digits of the hash awaiting the decision>"}. Decides in the store's
 * transaction with an event naming `approver` (it reaches the audit chain through the
 * drain) and makes this process's kept view stale. Returns 200 {"pin"}, 400 (the body), 404
 * (no such pin), 409 {"error", "pin"} (another hash awaits, or nothing does), 503 (store).
 */
int integrity_admin_decide(struct integrity_store *s, const char *id, const json_t *body,
                           const char *approver, int64_t now_ms, json_t **out);

#endif
