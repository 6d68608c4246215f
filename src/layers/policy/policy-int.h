/*
 * policy-int.h: the compiled form of a policy, shared by the policy module's own files
 * (config compile, evaluation, CLI). Not for other modules: they use policy.h.
 */
#ifndef GW_POLICY_INT_H
#define GW_POLICY_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>

#include "layers/policy/policy.h"

struct gw_request;
struct gw_decision;
struct mcp_message;

/* Bounds on a regex match against an argument (PCRE2 match and depth limits). */
#define POLICY_REGEX_MATCH_LIMIT 100000
#define POLICY_REGEX_DEPTH_LIMIT 1000
/* Longest rule id; ids name rules in audit records and decisions. */
#define POLICY_MAX_ID 64

enum policy_effect { POLICY_PERMIT = 0, POLICY_FORBID = 1 };

enum policy_op {
    POLICY_OP_EQ = 0,
    POLICY_OP_IN,
    POLICY_OP_PREFIX,
    POLICY_OP_MATCHES,
    POLICY_OP_RANGE,
    POLICY_OP_EXISTS,
    POLICY_OP_MAX_LEN,
    POLICY_OP_CIDR,
    POLICY_OP_HOST_IN,
    POLICY_OP_EQ_CLAIM,
    POLICY_OP_COUNT
};

enum policy_claim { POLICY_CLAIM_TENANT = 0, POLICY_CLAIM_SUBJECT, POLICY_CLAIM_CLIENT };

/* A YAML scalar as a comparison value: always its text; its number/bool when unquoted. */
struct policy_scalar {
    char *text;
    size_t len;
    int quoted;
    int is_int;
    long long ival;
    int is_real;
    double dval;
    int is_bool;
    int bval;
};

struct policy_cidr {
    int family; /* 4 or 6 */
    unsigned char addr[16];
    int bits;
};

struct policy_pred {
    enum policy_op op;
    int line;
    char *arg;     /* the JSON Pointer as written */
    char **tokens; /* its reference tokens, unescaped */
    size_t n_tokens;

    struct policy_scalar *values; /* eq (1), in (n) */
    size_t n_values;
    char *text; /* prefix; the regex source for matches */
    size_t text_len;
    pcre2_code *re;
    int has_min, has_max;
    double min, max;
    int exists;
    long long max_len;
    struct policy_cidr *cidrs;
    size_t n_cidrs;
    char **hosts; /* lowercased; "*.example.org" matches subdomains */
    size_t n_hosts;
    enum policy_claim claim;
};

struct policy_strs {
    char **v; /* NULL-terminated when non-NULL */
    size_t n;
};

struct policy_rule {
    char *id;
    int line;
    enum policy_effect effect;
    enum policy_action action;
    struct policy_strs targets; /* empty = every target of the action */
    struct policy_strs subjects, roles_any, roles_all, scopes_all, scopes_any, tenants, clients;
    struct policy_strs required_scopes;
    struct policy_pred *when;
    size_t n_when;
    /* `annotations`: per hint, 0 no condition, 1 the hint must read false, 2 true. */
    unsigned char hints[POLICY_HINT_COUNT];
    int n_hints;
    struct policy_approval approval; /* `approval` (permit rules only); by NONE when absent */
    char *message;                   /* optional text for the model on denial */
    char *description;               /* optional, for people */
};

/* One value list in the index maps: rule indexes (exact) or glob indexes (by prefix). */
struct policy_map_entry {
    const char *key; /* borrowed from a rule; NULL = empty slot */
    size_t len;
    uint64_t hash;
    uint32_t *vals;
    size_t n, cap;
};

struct policy_map {
    struct policy_map_entry *slots;
    size_t cap; /* power of two, or 0 */
    size_t used;
};

struct policy_glob {
    const char *pattern; /* borrowed from the rule */
    size_t len;
    uint32_t rule;
};

struct policy_index {
    struct policy_map exact;    /* target name -> rule indexes, ascending */
    struct policy_map prefixes; /* literal prefix of a glob -> glob indexes */
    struct policy_glob *globs;
    size_t n_globs;
    size_t *prefix_lens; /* distinct literal-prefix lengths, ascending */
    size_t n_prefix_lens;
};

/* One scope of policy.scope_implies and every scope pattern it implies (closed over). */
struct policy_implies {
    char *scope;
    char **implied; /* exact scopes, or patterns with '*' */
    size_t n;
};

#define POLICY_MAX_IMPLIES 256
#define POLICY_MAX_IMPLIED 64

/* policy.approvals: how approval is asked for (policy_approval.c). */
struct policy_approvals {
    uint64_t prompt_timeout_ms; /* session era: how long a prompt to the user waits */
    uint64_t role_timeout_ms;   /* how long a call waits for an approver (0: not at all) */
    uint64_t reference_ttl_ms;  /* how long an approver may still act on a reference */
    uint64_t state_ttl_ms;      /* 2026-07-28: how long a sealed requestState is good */
    char *state_key_file;       /* the sealing key's file; NULL: a key of this process */
    uint8_t state_key[32];
    /* Where the states' single-use ids are claimed: NULL host is this process's memory. */
    char *replay_host;
    int replay_port;
    char *replay_prefix;
    uint64_t replay_timeout_ms;
    /* Who decides a role approval: the admin credential alone, or a person with the role. */
    enum { POLICY_APPROVERS_ADMIN = 0, POLICY_APPROVERS_TOKEN } approvers;
};

struct policy_config {
    struct policy_approvals approvals;
    struct policy_rule *rules;
    size_t n_rules;
    struct policy_implies *implies;
    size_t n_implies;
    struct policy_index index[POLICY_ACTION_COUNT];
    /*
     * Forbid rules of tools and prompts again, by their targets folded to lower case: a
     * forbid holds whatever case a caller writes the name in ("Delete_Patient"), since a
     * backend may compare names without case. Permits keep exact matching.
     */
    struct policy_index folded[POLICY_ACTION_COUNT];
    char **folded_names; /* the folded copies the folded index points into */
    size_t n_folded_names;
    char **tests; /* resolved paths */
    size_t n_tests;
    pcre2_match_context *match_ctx; /* match limits; read-only once built, shared by threads */
    struct policy_annot_cache *annotations; /* the one mutable part: has its own lock */
};

/* The scope hierarchy (policy_scope.c). */
int policy_parse_implies(const struct cfg_doc *doc, const struct cfg_node *node,
                         struct policy_config *pc, struct cfg_error *err);
void policy_implies_free(struct policy_config *pc);
/* Whether the principal holds scope s, itself or implied; any / all of a list. */
int policy_has_scope(const struct policy_principal *p, const char *s);
int policy_any_scope(const struct policy_strs *want, const struct policy_principal *p);
int policy_all_scopes(const struct policy_strs *want, const struct policy_principal *p);

/* policy.approvals (policy_approval.c); node may be NULL (the defaults). */
int policy_parse_approvals(const struct cfg_doc *doc, const struct cfg_node *node,
                           struct policy_config *pc, struct cfg_error *err);
/*
 * A permitted call whose rule asks for approval (res->approval): passes it when approved
 * before (within the rule's ttl), else asks (the user through MCP, an approver through the
 * admin API) and returns GW_ASYNC, or denies saying why. Fills req->approval.
 */
int policy_approval_check(struct gw_request *req, struct mcp_message *m,
                          const struct policy_approval *ap, struct gw_decision *out);

/* Rule keys `annotations` and `approval` (policy_hints.c). */
int policy_parse_hints(const struct cfg_doc *doc, const struct cfg_node *rule, const char *path,
                       struct policy_rule *r, struct cfg_error *err);
/* True when the rule's annotation conditions hold for a (NULL: unknown). */
int policy_hints_match(const struct policy_rule *r, const struct policy_annotations *a);

/*
 * The annotations learned from tools/list answers (policy_annotations.c): bounded, locked, one
 * per generation. learn copies a; lookup returns 1 and fills *out when the tool is known, else
 * 0 with out->known = 0.
 */
#define POLICY_ANNOTATION_CACHE 4096
struct policy_annot_cache;
struct policy_annot_cache *policy_annot_cache_new(void);
void policy_annot_cache_free(struct policy_annot_cache *c);
void policy_annot_learn(struct policy_annot_cache *c, const char *route, const char *tool,
                        size_t tool_len, const struct policy_annotations *a);
int policy_annot_lookup(struct policy_annot_cache *c, const char *route, const char *tool,
                        size_t tool_len, struct policy_annotations *out);

/* Index (policy_index.c). */
int policy_index_build(struct policy_config *pc);
void policy_index_free(struct policy_index *ix);
/*
 * Appends the indexes of the rules of `action` whose targets match target, ascending and
 * without duplicates, to *out (a malloc'd array grown as needed). Returns the count or -1.
 */
long policy_index_lookup(const struct policy_config *pc, enum policy_action action,
                         const char *target, size_t len, uint32_t **out, size_t *cap);
/* The same over one index (the folded forbid index, say). */
long policy_index_lookup_in(const struct policy_index *ix, const char *target, size_t len,
                            uint32_t **out, size_t *cap);
int policy_glob_match(const char *pat, size_t plen, const char *s, size_t slen);

/* Pieces of evaluation exposed for the CLI and tests (policy_eval.c). */
int policy_pointer_parse(const char *text, char ***tokens, size_t *n, char *why, size_t whylen);
const json_t *policy_pointer_get(const json_t *root, char *const *tokens, size_t n);
/* Extracts the lowercased host of an absolute URL into out; -1 when there is none. */
/*
 * How a string argument reads as a number (policy_eval.c): 1 (*out set), 0 (not a number in
 * any reading), -1 (some readings take it for one: the predicate is unknown).
 */
int policy_numeric_reading(const char *s, size_t n, double *out);
int policy_url_host(const char *url, size_t len, char *out, size_t outlen);
int policy_cidr_parse(const char *text, struct policy_cidr *out, char *why, size_t whylen);

#endif
