/*
 * policy: deny-by-default authorization of MCP actions per tool (resource, prompt), user and
 * argument.
 *
 * Rules come from the `policy` section of the configuration and are compiled once, at load,
 * into an index by target name (an exact hash map plus a list of globs bucketed by their
 * literal prefix), so a decision looks only at the rules that can concern its target.
 *
 * Semantics (docs/policy.md has the full language):
 *   - no matching rule -> deny; any matching forbid -> deny; else a matching permit -> allow;
 *   - an argument predicate that cannot be evaluated (missing argument, wrong type, regex
 *     limit reached) fails closed: it counts as matching for a forbid and not for a permit;
 *   - a target the principal cannot see (no permit could match it with argument predicates
 *     and required_scopes ignored, or an unconditional forbid matches) is answered as if it
 *     did not exist;
 *   - a permit kept from matching only by its `required_scopes` gives an insufficient_scope
 *     step-up (HTTP 403).
 *
 * A compiled policy_config is immutable and may be shared by every worker thread.
 */
#ifndef GW_POLICY_H
#define GW_POLICY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/buf.h"
#include "lib/cfg.h"
#include "core/config.h"
#include "layers/modules.h"

struct policy_config;

enum policy_action {
    POLICY_ACTION_TOOL = 0, /* tools/call, target = tool name */
    POLICY_ACTION_RESOURCE, /* resources/read, target = resource URI */
    POLICY_ACTION_PROMPT,   /* prompts/get, target = prompt name */
    POLICY_ACTION_COUNT
};

/* The verified principal a decision is about. Every pointer is borrowed; any may be NULL. */
struct policy_principal {
    const char *subject;
    const char *tenant;
    const char *client_id;
    const char *const *roles;
    size_t n_roles;
    const char *const *scopes;
    size_t n_scopes;
    /*
     * The scope hierarchy (policy.scope_implies) the scopes are read with: a broader scope the
     * principal holds implies the narrower ones it names. NULL: scopes are only themselves.
     */
    const struct policy_config *scope_model;
};

/*
 * MCP tool annotations (hints a backend gives in its tools/list answer), as rule conditions.
 * A hint the backend did not give, and every hint of a tool whose annotations toolgate has
 * not learned, reads as the protocol's default, which is also the riskiest reading:
 * readOnlyHint false, destructiveHint true, idempotentHint false, openWorldHint true.
 */
enum policy_hint {
    POLICY_HINT_READ_ONLY = 0,
    POLICY_HINT_DESTRUCTIVE,
    POLICY_HINT_IDEMPOTENT,
    POLICY_HINT_OPEN_WORLD,
    POLICY_HINT_COUNT
};

/* A tool's annotations as learned: hint[i] is -1 (not given), 0 (false) or 1 (true). */
struct policy_annotations {
    int known; /* 0: the tool's annotations are unknown (every hint reads as its default) */
    signed char hint[POLICY_HINT_COUNT];
};

/* The value a rule condition on hint h compares with (above). */
int policy_hint_value(const struct policy_annotations *a, enum policy_hint h);
const char *policy_hint_name(enum policy_hint h);
/* Reads the hints of an MCP `annotations` object (NULL or not an object: none given). */
void policy_annotations_from_json(const json_t *annotations, struct policy_annotations *out);

/* Who must approve a call a permit rule allows (its `approval`). */
enum policy_approver {
    POLICY_APPROVAL_NONE = 0,
    POLICY_APPROVAL_USER, /* the user the call acts for, asked through MCP */
    POLICY_APPROVAL_ROLE, /* someone holding `role`, through the admin API */
};

#define POLICY_MAX_ROLE 64

struct policy_approval {
    enum policy_approver by;
    char role[POLICY_MAX_ROLE + 1]; /* POLICY_APPROVAL_ROLE */
    uint64_t ttl_ms;                /* how long an approval lets the same call through */
    char rule_id[65];               /* the permit rule that asks for it */
};

struct policy_query {
    enum policy_action action;
    const char *target;      /* borrowed; NUL-terminated; NULL is denied */
    size_t target_len;       /* length of target (no strlen on wire data) */
    const json_t *arguments; /* borrowed; the object `when` predicates address; may be NULL */
    const struct policy_principal *principal;
    /* The tool's annotations; NULL: unknown (each hint reads as its default). */
    const struct policy_annotations *annotations;
};

enum policy_outcome {
    POLICY_ALLOW = 0,
    POLICY_DENY_FORBIDDEN, /* a forbid matched (target visible) */
    POLICY_DENY_NO_MATCH,  /* no permit matched (target visible) */
    POLICY_DENY_SCOPE,     /* only required_scopes kept a permit from matching */
    POLICY_DENY_HIDDEN,    /* the principal cannot see the target at all */
    POLICY_DENY_INVALID,   /* no target, or one longer than the bound */
};

struct policy_result {
    enum policy_outcome outcome;
    int visible;       /* the target is visible to the principal */
    char rule_id[128]; /* determining rule ids, comma-separated (truncated at an id) */
    char scopes[256];  /* POLICY_DENY_SCOPE: space-separated scopes that would allow it */
    char message[256]; /* the rule's `message`, when the determining rule has one */
    /*
     * POLICY_ALLOW: the approval the call still needs (by NONE: none). When several matching
     * permits ask for one, the first in file order is the one asked for.
     */
    struct policy_approval approval;
};

/* Longest target (tool name, URI) a decision looks at; longer ones are denied. */
#define POLICY_MAX_TARGET 8192

/*
 * Parses and compiles the `policy` section (`section` is its node; doc names the file for
 * errors). Test file paths in policy.tests are resolved against the directory of doc->name.
 * Returns 0 and sets *out (free with policy_config_free), or -1 with err naming file:line:col
 * and the key path (bad rule, bad regex with its PCRE2 offset, bad CIDR, duplicate id,
 * unknown key).
 */
int policy_config_parse(const struct cfg_doc *doc, const struct cfg_node *section,
                        struct policy_config **out, struct cfg_error *err);
void policy_config_free(struct policy_config *pc);

size_t policy_config_rule_count(const struct policy_config *pc);
/* policy.tests, resolved paths; borrowed from pc. */
size_t policy_config_test_count(const struct policy_config *pc);
const char *policy_config_test_path(const struct policy_config *pc, size_t i);

/* Maps an MCP method to a governed action; returns -1 for methods the policy does not govern. */
int policy_action_for_method(const char *method);
const char *policy_action_name(enum policy_action action);
/* Stable reason code for an outcome: "policy.permit", "policy.forbidden", ... */
const char *policy_outcome_code(enum policy_outcome outcome);

/*
 * Decides one query. pc == NULL (no policy section) denies every query, as hidden. When
 * explain is non-NULL, one line per rule considered is appended to it: matched, or the first
 * condition that failed. Returns the outcome (also in res->outcome).
 */
enum policy_outcome policy_decide(const struct policy_config *pc, const struct policy_query *q,
                                  struct policy_result *res, struct gw_buf *explain);

/* True when some permit could match (arguments ignored) and no unconditional forbid does. */
int policy_visible(const struct policy_config *pc, enum policy_action action, const char *target,
                   size_t target_len, const struct policy_principal *principal);

/*
 * Runs the test cases of one test file against pc, prints a table to out. Returns the number
 * of mismatches (0 = all passed), or -1 when the file cannot be read or parsed (the reason is
 * printed to out).
 */
int policy_run_tests(const struct policy_config *pc, const char *file, FILE *out);

/*
 * `toolgate policy ...`: argv[0] is "policy", argv[1] the subcommand:
 *   test --config F [FILE...]     run test files (default: the config's policy.tests)
 *   explain --config F --sub S [--roles R] [--scopes S] [--tenant T] [--client C]
 *           (--tool N | --resource URI | --prompt N) [--args JSON]
 * Returns the process exit code: 0 success/allow, 1 test mismatch/deny, 2 usage or config error.
 */
int policy_cli_main(int argc, char **argv);

/*
 * Decision latency benchmark at 10, 1,000 and 100,000 rules (or the counts given as
 * arguments); prints p50/p99 nanoseconds per decision. Returns 0, or 1 on failure.
 */
int policy_bench_main(int argc, char **argv);

/* The policy layer's section in a generation (NULL: see policy_config_parse). */
static inline const struct policy_config *policy_config_of(const struct gw_config *cfg)
{
    return cfg ? cfg->modules[GW_STAGE_POLICY] : NULL;
}

/* The layer's pipeline stage (its struct gw_module is policy_module, layers/modules.h). */
extern const struct gw_layer_ops policy_layer;

#endif
