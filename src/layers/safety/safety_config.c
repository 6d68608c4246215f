/*
 * safety_config: the `safety` section. Every error names file:line:col, the key path and
 * what to write instead. The compiled result (detectors, PCRE2 codes, the vectorscan
 * database) belongs to the configuration generation.
 */
#include "layers/safety/safety-int.h"

#include <errno.h>
#include <fnmatch.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SAFETY_MAX_PATTERNS 64
#define SAFETY_MAX_PATTERN_LEN 4096
#define SAFETY_MAX_CONTEXT 64
#define P_LEN 300

static const char *const action_names[] = {"off", "log", "redact", "block", NULL};
static const char *const style_names[] = {"placeholder", "mask", "hash", NULL};

void safety_config_free(struct safety_config *sc)
{
    if (!sc)
        return;
    for (size_t i = 0; i < sc->n_tools; i++) {
        cfg_strv_free(sc->tools[i].globs);
        free(sc->tools[i].actions);
    }
    free(sc->tools);
    safety_engine_free(sc);
    free(sc->compile_cache);
    free(sc);
}

static int lookup(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

static int parse_enum(const struct cfg_doc *doc, const struct cfg_node *node, const char *path,
                      const char *const *names, const char *what, int *out, struct cfg_error *err)
{
    if (!node || node->kind != CFG_SCALAR || cfg_is_null(node))
        return cfg_errorf(err, doc, node, path, "expected %s", what);
    int v = lookup(names, node->scalar);
    if (v < 0)
        return cfg_errorf(err, doc, node, path, "\"%s\" is not %s", node->scalar, what);
    *out = v;
    return 0;
}

static const char *const action_what = "an action (off, log, redact or block)";
static const char *const style_what = "a redaction style (placeholder, mask or hash)";

/* Settings that one `detectors` entry carries (unset fields are -1 / NULL). */
struct entry {
    int action;  /* the scalar form or `action:` */
    int request; /* explicit per-direction actions */
    int response;
    int style;
    char **context;
    size_t n_context;
    char **patterns; /* mrn only */
    size_t n_patterns;
    int context_required; /* mrn patterns: -1 default (yes) */
};

static void entry_free(struct entry *e)
{
    cfg_strv_free(e->context);
    cfg_strv_free(e->patterns);
}

static int parse_entry(const struct cfg_doc *doc, const struct cfg_node *n, const char *path,
                       int allow_patterns, struct entry *e, struct cfg_error *err)
{
    static const char *const keys[] = {"action", "request", "response", "redact", "context", NULL};
    static const char *const mrn_keys[] = {"action",  "request",  "response",         "redact",
                                           "context", "patterns", "context_required", NULL};
    char p[P_LEN];
    memset(e, 0, sizeof *e);
    e->action = e->request = e->response = e->style = e->context_required = -1;
    if (n && n->kind == CFG_SCALAR)
        return parse_enum(doc, n, path, action_names, action_what, &e->action, err);
    if (!n || n->kind != CFG_MAP)
        return cfg_errorf(err, doc, n, path,
                          "expected an action (off, log, redact, block) or a map like "
                          "{request: block, response: redact, redact: mask}");
    if (cfg_check_keys(doc, n, path, allow_patterns ? mrn_keys : keys, err) != 0)
        return -1;
    const struct {
        const char *key;
        int *out;
        const char *const *names;
        const char *what;
    } enums[] = {
        {"action", &e->action, action_names, action_what},
        {"request", &e->request, action_names, action_what},
        {"response", &e->response, action_names, action_what},
        {"redact", &e->style, style_names, style_what},
    };
    const struct cfg_node *am = cfg_map_get(n, "action");
    if (am && am->kind == CFG_MAP) {
        /* action: {request: block, response: redact} */
        static const char *const dir_keys[] = {"request", "response", NULL};
        cfg_path_key(p, sizeof p, path, "action");
        if (cfg_check_keys(doc, am, p, dir_keys, err) != 0)
            return -1;
        char pp[P_LEN];
        for (int k = 0; k < 2; k++) {
            const struct cfg_node *v = cfg_map_get(am, dir_keys[k]);
            cfg_path_key(pp, sizeof pp, p, dir_keys[k]);
            if (v && parse_enum(doc, v, pp, action_names, action_what,
                                k ? &e->response : &e->request, err) != 0)
                return -1;
        }
    }
    for (size_t i = 0; i < sizeof enums / sizeof enums[0]; i++) {
        const struct cfg_node *v = cfg_map_get(n, enums[i].key);
        if (!v || (i == 0 && v->kind == CFG_MAP))
            continue;
        cfg_path_key(p, sizeof p, path, enums[i].key);
        if (parse_enum(doc, v, p, enums[i].names, enums[i].what, enums[i].out, err) != 0)
            return -1;
    }
    if (cfg_get_string_list(doc, n, path, "context", &e->context, &e->n_context, err) != 0)
        return -1;
    if (e->n_context > SAFETY_MAX_CONTEXT) {
        cfg_path_key(p, sizeof p, path, "context");
        return cfg_errorf(err, doc, cfg_map_get(n, "context"), p, "at most %d context words",
                          SAFETY_MAX_CONTEXT);
    }
    for (size_t i = 0; i < e->n_context; i++) {
        if (!e->context[i][0] || strlen(e->context[i]) > 60) {
            cfg_path_key(p, sizeof p, path, "context");
            return cfg_errorf(err, doc, cfg_map_get(n, "context"), p,
                              "context words are 1 to 60 characters");
        }
    }
    if (allow_patterns) {
        if (cfg_get_string_list(doc, n, path, "patterns", &e->patterns, &e->n_patterns, err) != 0)
            return -1;
        if (e->n_patterns > SAFETY_MAX_PATTERNS) {
            cfg_path_key(p, sizeof p, path, "patterns");
            return cfg_errorf(err, doc, cfg_map_get(n, "patterns"), p, "at most %d patterns",
                              SAFETY_MAX_PATTERNS);
        }
        if (cfg_map_get(n, "context_required")) {
            int b = 1;
            if (cfg_get_bool(doc, n, path, "context_required", &b, err) != 0)
                return -1;
            e->context_required = b;
        }
    }
    return 0;
}

/*
 * Applies an entry to a detector. The request action is `request`, else `action`; the
 * response action is `response`, else (for an entry that blocks or redacts) the section's
 * responses.default, else the same as the request.
 */
static void apply_entry(struct safety_detector *d, const struct entry *e, int resp_default)
{
    if (e->action >= 0) {
        d->action[GW_DIR_REQUEST] = (enum safety_action)e->action;
        int a = e->action;
        if ((a == SAFETY_BLOCK || a == SAFETY_REDACT) && resp_default >= 0)
            a = resp_default;
        d->action[GW_DIR_RESPONSE] = (enum safety_action)a;
    }
    if (e->request >= 0)
        d->action[GW_DIR_REQUEST] = (enum safety_action)e->request;
    if (e->response >= 0)
        d->action[GW_DIR_RESPONSE] = (enum safety_action)e->response;
    if (e->style >= 0)
        d->style = (enum safety_style)e->style;
}

static int compile_error(const struct cfg_doc *doc, const struct cfg_node *n, const char *path,
                         const char *why, struct cfg_error *err)
{
    return cfg_errorf(err, doc, n, path, "the pattern does not compile: %s", why);
}

static int parse_detectors(const struct cfg_doc *doc, const struct cfg_node *map,
                           struct safety_config *sc, int resp_default, struct cfg_error *err)
{
    const char *P = "safety.detectors";
    char p[P_LEN], why[200];
    if (cfg_expect_map(doc, map, P, err) != 0)
        return -1;
    /* The `secrets` group first, so that a named secret detector can override it. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < map->n; i++) {
            const char *name = map->keys[i];
            int is_group = strcmp(name, "secrets") == 0;
            if (is_group != (pass == 0))
                continue;
            cfg_path_key(p, sizeof p, P, name);
            int det = is_group ? -1 : safety_detector_find(sc, name);
            if (!is_group && (det < 0 || sc->detectors[det].builtin < 0)) {
                const struct cfg_mark *m = &map->key_marks[i];
                struct cfg_node at = {.kind = CFG_SCALAR, .line = m->line, .column = m->column};
                return cfg_errorf(
                    err, doc, &at, p,
                    "unknown detector \"%s\"; built-in detectors are secrets (all of: "
                    "private_key, aws_access_key, aws_secret_key, github_token, gitlab_token, "
                    "slack_token, stripe_key, google_api_key, jwt, generic_secret), ssn, itin, "
                    "credit_card, iban, email, phone, ip_address, npi, dea, dob, passport, "
                    "drivers_license, mrn (custom ones go under safety.custom)",
                    name);
            }
            struct entry e;
            int rc = parse_entry(doc, map->items[i], p, det == SB_MRN, &e, err);
            if (rc == 0) {
                for (size_t d = 0; d < sc->n_detectors; d++) {
                    if (is_group ? sc->detectors[d].secret : (int)d == det)
                        apply_entry(&sc->detectors[d], &e, resp_default);
                }
                if (!is_group && e.n_context &&
                    safety_detector_add_context(sc, det, e.context) != 0)
                    rc = cfg_errorf(err, doc, map->items[i], p, "out of memory");
                if (is_group && e.n_context)
                    rc = cfg_errorf(err, doc, map->items[i], p,
                                    "context words are set per detector, not for the group");
            }
            for (size_t k = 0; rc == 0 && k < e.n_patterns; k++) {
                char pp[P_LEN];
                cfg_path_key(pp, sizeof pp, p, "patterns");
                const struct cfg_node *pn = cfg_map_get(map->items[i], "patterns");
                if (strlen(e.patterns[k]) > SAFETY_MAX_PATTERN_LEN) {
                    rc = cfg_errorf(err, doc, pn, pp, "a pattern is longer than %d bytes",
                                    SAFETY_MAX_PATTERN_LEN);
                    break;
                }
                struct safety_rule_spec spec = {
                    .detector = det,
                    .re = e.patterns[k],
                    .need_context = e.context_required != 0,
                    .hs = e.patterns[k],
                    .hs_flags = HS_FLAG_PREFILTER,
                    .keyword_filter = 1,
                    .check = SC_NONE,
                };
                if (safety_add_rule(sc, &spec, why, sizeof why) != 0)
                    rc = compile_error(doc, pn && pn->kind == CFG_SEQ ? pn->items[k] : pn, pp, why,
                                       err);
            }
            entry_free(&e);
            if (rc != 0)
                return -1;
        }
    }
    return 0;
}

#define SAFETY_MAX_TOOL_RULES 1024

static int parse_tools(const struct cfg_doc *doc, const struct cfg_node *seq,
                       struct safety_config *sc, int resp_default, struct cfg_error *err)
{
    static const char *const keys[] = {"tools", "detectors", NULL};
    const char *P = "safety.tools";
    char p[P_LEN], pp[P_LEN];
    if (cfg_expect_seq(doc, seq, P, err) != 0)
        return -1;
    if (seq->n > SAFETY_MAX_TOOL_RULES)
        return cfg_errorf(err, doc, seq, P, "at most %d entries", SAFETY_MAX_TOOL_RULES);
    sc->tools = calloc(seq->n ? seq->n : 1, sizeof *sc->tools);
    if (!sc->tools)
        return cfg_errorf(err, doc, seq, P, "out of memory");
    for (size_t i = 0; i < seq->n; i++) {
        const struct cfg_node *n = seq->items[i];
        struct safety_tool_override *t = &sc->tools[sc->n_tools++];
        cfg_path_index(p, sizeof p, P, i);
        if (cfg_expect_map(doc, n, p, err) != 0 || cfg_check_keys(doc, n, p, keys, err) != 0 ||
            cfg_get_string_list(doc, n, p, "tools", &t->globs, &t->n_globs, err) != 0)
            return -1;
        if (t->n_globs == 0)
            return cfg_errorf(err, doc, n, p,
                              "`tools` is required: the tool names (globs) this entry is for, "
                              "like [\"billing.charge_card\"]");
        t->actions = calloc(sc->n_detectors, sizeof *t->actions);
        if (!t->actions)
            return cfg_errorf(err, doc, n, p, "out of memory");
        for (size_t d = 0; d < sc->n_detectors; d++)
            memcpy(t->actions[d], sc->detectors[d].action, sizeof t->actions[d]);
        const struct cfg_node *dm = cfg_map_get(n, "detectors");
        cfg_path_key(pp, sizeof pp, p, "detectors");
        if (!dm || cfg_expect_map(doc, dm, pp, err) != 0)
            return dm ? -1
                      : cfg_errorf(err, doc, n, p,
                                   "`detectors` is required, like {credit_card: log}");
        for (size_t k = 0; k < dm->n; k++) {
            char kp[P_LEN];
            cfg_path_key(kp, sizeof kp, pp, dm->keys[k]);
            int group = strcmp(dm->keys[k], "secrets") == 0;
            int det = group ? -1 : safety_detector_find(sc, dm->keys[k]);
            if (!group && det < 0)
                return cfg_errorf(err, doc, dm->items[k], kp,
                                  "unknown detector \"%s\" (a built-in one, secrets, or a name "
                                  "from safety.custom)",
                                  dm->keys[k]);
            struct entry e;
            int rc = parse_entry(doc, dm->items[k], kp, 0, &e, err);
            if (rc == 0 && (e.n_context || e.style >= 0))
                rc = cfg_errorf(err, doc, dm->items[k], kp,
                                "only actions can differ per tool (action, request, response)");
            for (size_t d = 0; rc == 0 && d < sc->n_detectors; d++) {
                if (group ? !sc->detectors[d].secret : (int)d != det)
                    continue;
                struct safety_detector tmp = sc->detectors[d];
                memcpy(tmp.action, t->actions[d], sizeof tmp.action);
                apply_entry(&tmp, &e, resp_default);
                memcpy(t->actions[d], tmp.action, sizeof tmp.action);
            }
            entry_free(&e);
            if (rc != 0)
                return -1;
        }
    }
    return 0;
}

const enum safety_action (*safety_tool_actions(const struct safety_config *sc, const char *name))[2]
{
    if (!sc || !name)
        return NULL;
    for (size_t i = 0; i < sc->n_tools; i++)
        for (size_t g = 0; g < sc->tools[i].n_globs; g++)
            if (fnmatch(sc->tools[i].globs[g], name, 0) == 0)
                return (const enum safety_action(*)[2])sc->tools[i].actions;
    return NULL;
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 31 || !(s[0] >= 'a' && s[0] <= 'z'))
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

static int parse_custom(const struct cfg_doc *doc, const struct cfg_node *seq,
                        struct safety_config *sc, int resp_default, struct cfg_error *err)
{
    static const char *const keys[] = {"name",      "pattern", "context", "context_required",
                                       "validator", "action",  "request", "response",
                                       "redact",    NULL};
    static const char *const validators[] = {"none", "luhn", "mod97", NULL};
    const char *P = "safety.custom";
    char p[P_LEN], pp[P_LEN], why[200];
    if (cfg_expect_seq(doc, seq, P, err) != 0)
        return -1;
    if (seq->n > SAFETY_MAX_CUSTOM)
        return cfg_errorf(err, doc, seq, P, "at most %d custom detectors", SAFETY_MAX_CUSTOM);
    for (size_t i = 0; i < seq->n; i++) {
        const struct cfg_node *n = seq->items[i];
        char *name = NULL, *pattern = NULL, *validator = NULL;
        struct entry e;
        int rc = -1;
        memset(&e, 0, sizeof e);
        cfg_path_index(p, sizeof p, P, i);
        if (cfg_expect_map(doc, n, p, err) != 0 || cfg_check_keys(doc, n, p, keys, err) != 0)
            return -1;
        if (cfg_get_string(doc, n, p, "name", 1, &name, err) != 0 ||
            cfg_get_string(doc, n, p, "pattern", 1, &pattern, err) != 0 ||
            cfg_get_string(doc, n, p, "validator", 0, &validator, err) != 0)
            goto next;
        cfg_path_key(pp, sizeof pp, p, "name");
        if (!name_ok(name)) {
            cfg_errorf(err, doc, cfg_map_get(n, "name"), pp,
                       "\"%s\": names are 1 to 31 lower-case letters, digits and '_', starting "
                       "with a letter",
                       name);
            goto next;
        }
        if (safety_detector_find(sc, name) >= 0 || strcmp(name, "secrets") == 0) {
            cfg_errorf(err, doc, cfg_map_get(n, "name"), pp,
                       "\"%s\" is already a detector; pick another name", name);
            goto next;
        }
        /* The entry parser reads action/request/response/redact/context of the same map;
         * a custom map has more keys, which were checked above. */
        {
            struct cfg_node copy = *n;
            static const char *const entry_keys[] = {"action", "request", "response", "redact",
                                                     "context"};
            char *k2[9];
            struct cfg_node *i2[9];
            struct cfg_mark m2[9];
            size_t c = 0;
            for (size_t k = 0; k < n->n && c < 9; k++) {
                for (size_t j = 0; j < 5; j++) {
                    if (strcmp(n->keys[k], entry_keys[j]) == 0) {
                        k2[c] = n->keys[k];
                        i2[c] = n->items[k];
                        m2[c] = n->key_marks[k];
                        c++;
                    }
                }
            }
            copy.n = c;
            copy.keys = k2;
            copy.items = i2;
            copy.key_marks = m2;
            if (parse_entry(doc, &copy, p, 0, &e, err) != 0)
                goto next;
        }
        int check = 0;
        if (validator) {
            check = lookup(validators, validator);
            if (check < 0) {
                cfg_path_key(pp, sizeof pp, p, "validator");
                cfg_errorf(err, doc, cfg_map_get(n, "validator"), pp,
                           "\"%s\" is not a validator (none, luhn or mod97)", validator);
                goto next;
            }
        }
        int need_context = e.n_context > 0;
        if (cfg_map_get(n, "context_required") &&
            cfg_get_bool(doc, n, p, "context_required", &need_context, err) != 0)
            goto next;
        if (need_context && e.n_context == 0) {
            cfg_path_key(pp, sizeof pp, p, "context_required");
            cfg_errorf(err, doc, cfg_map_get(n, "context_required"), pp,
                       "context_required needs `context` words");
            goto next;
        }
        cfg_path_key(pp, sizeof pp, p, "pattern");
        if (strlen(pattern) == 0 || strlen(pattern) > SAFETY_MAX_PATTERN_LEN) {
            cfg_errorf(err, doc, cfg_map_get(n, "pattern"), pp, "the pattern must be 1 to %d bytes",
                       SAFETY_MAX_PATTERN_LEN);
            goto next;
        }
        int det = safety_add_detector(sc, name, -1);
        if (det < 0) {
            cfg_errorf(err, doc, n, p, "out of memory");
            goto next;
        }
        struct safety_detector *d = &sc->detectors[det];
        d->action[GW_DIR_REQUEST] = SAFETY_BLOCK;
        d->action[GW_DIR_RESPONSE] =
            resp_default >= 0 ? (enum safety_action)resp_default : SAFETY_BLOCK;
        d->keep_last4 = 1;
        apply_entry(d, &e, resp_default);
        if (e.n_context && safety_detector_add_context(sc, det, e.context) != 0) {
            cfg_errorf(err, doc, n, p, "out of memory");
            goto next;
        }
        struct safety_rule_spec spec = {
            .detector = det,
            .re = pattern,
            .need_context = need_context,
            .hs = pattern,
            .hs_flags = HS_FLAG_PREFILTER,
            .keyword_filter = 1,
            .check = check == 1   ? SC_LUHN
                     : check == 2 ? SC_MOD97
                                  : SC_NONE,
        };
        if (safety_add_rule(sc, &spec, why, sizeof why) != 0) {
            compile_error(doc, cfg_map_get(n, "pattern"), pp, why, err);
            goto next;
        }
        rc = 0;
    next:
        free(name);
        free(pattern);
        free(validator);
        entry_free(&e);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* The hash key is the SHA-256 of the file's bytes (at least 32 of them, at most 4 KiB). */
static int load_hash_key(const struct cfg_doc *doc, const struct cfg_node *n, const char *path,
                         const char *file, struct safety_config *sc, struct cfg_error *err)
{
    unsigned char buf[4097];
    char *full = cfg_resolve_path(doc ? doc->name : NULL, file);
    if (!full)
        return cfg_errorf(err, doc, n, path, "out of memory");
    int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        cfg_errorf(err, doc, n, path, "cannot read \"%s\": %s", full, strerror(e));
        free(full);
        return -1;
    }
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof buf - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == sizeof buf)
            break;
    }
    close(fd);
    free(full);
    if (len < 32 || len > 4096)
        return cfg_errorf(err, doc, n, path,
                          "the hash key file must hold 32 to 4096 bytes of secret (for example "
                          "`head -c 32 /dev/urandom > FILE`)");
    unsigned int mdlen = 0;
    if (EVP_Digest(buf, len, sc->hash_key, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return cfg_errorf(err, doc, n, path, "cannot derive the hash key");
    sc->hash_key_set = 1;
    return 0;
}

static struct safety_config *config_new(void)
{
    struct safety_config *sc = calloc(1, sizeof *sc);
    if (!sc)
        return NULL;
    sc->enabled = 1;
    sc->responses_enabled = 1;
    sc->max_scan_bytes = 1024 * 1024;
    sc->max_depth = 64;
    sc->on_oversize = SAFETY_OVERSIZE_BLOCK;
    sc->match_limit = 100000;
    sc->context_window = 64;
    sc->entropy_threshold = 3.5;
    if (safety_add_builtins(sc) != 0) {
        safety_config_free(sc);
        return NULL;
    }
    return sc;
}

struct safety_config *safety_config_default(void)
{
    char why[200];
    struct safety_config *sc = config_new();
    if (sc && safety_compile(sc, why, sizeof why) != 0) {
        safety_config_free(sc);
        sc = NULL;
    }
    return sc;
}

int safety_config_parse(const struct cfg_doc *doc, const struct cfg_node *section,
                        struct safety_config **out, struct cfg_error *err)
{
    static const char *const keys[] = {
        "enabled",           "detectors",     "custom", "tools",
        "responses",         "redaction",     "limits", "context_window",
        "entropy_threshold", "compile_cache", NULL};
    static const char *const resp_keys[] = {"enabled", "default", NULL};
    static const char *const red_keys[] = {"style", "hash_key_file", NULL};
    static const char *const lim_keys[] = {"max_scan_bytes", "max_depth", "on_oversize",
                                           "match_limit", NULL};
    const char *P = "safety";
    char why[200];
    char *s = NULL;
    int resp_default = SAFETY_REDACT;
    struct safety_config *sc = config_new();
    *out = NULL;
    if (!sc) {
        cfg_errorf(err, doc, section, P, "out of memory or a built-in pattern failed to compile");
        return -1;
    }
    if (!section)
        goto compile;
    if (cfg_expect_map(doc, section, P, err) != 0 || cfg_check_keys(doc, section, P, keys, err))
        goto fail;
    if (cfg_get_bool(doc, section, P, "enabled", &sc->enabled, err) != 0 ||
        cfg_get_string(doc, section, P, "compile_cache", 0, &sc->compile_cache, err) != 0)
        goto fail;
    if (sc->compile_cache && (sc->compile_cache[0] == '\0' || strlen(sc->compile_cache) > 4000)) {
        cfg_errorf(err, doc, cfg_map_get(section, "compile_cache"), "safety.compile_cache",
                   "write the path of a directory (at most 4000 bytes) or leave the key out");
        goto fail;
    }
    const struct cfg_node *resp = cfg_map_get(section, "responses");
    if (resp && !cfg_is_null(resp)) {
        if (cfg_expect_map(doc, resp, "safety.responses", err) != 0 ||
            cfg_check_keys(doc, resp, "safety.responses", resp_keys, err) != 0 ||
            cfg_get_bool(doc, resp, "safety.responses", "enabled", &sc->responses_enabled, err))
            goto fail;
        const struct cfg_node *dn = cfg_map_get(resp, "default");
        if (dn) {
            static const char *const resp_names[] = {"off", "log", "redact", "block", "same", NULL};
            if (parse_enum(doc, dn, "safety.responses.default", resp_names,
                           "an action (off, log, redact, block) or same", &resp_default, err))
                goto fail;
            if (resp_default == 4)
                resp_default = -1; /* same as the request */
        }
        /* The built-in defaults follow responses.default too. */
        for (size_t i = 0; i < sc->n_detectors; i++) {
            struct safety_detector *d = &sc->detectors[i];
            enum safety_action a = d->action[GW_DIR_REQUEST];
            if (a == SAFETY_BLOCK || a == SAFETY_REDACT)
                d->action[GW_DIR_RESPONSE] =
                    resp_default >= 0 ? (enum safety_action)resp_default : a;
        }
    }
    const struct cfg_node *red = cfg_map_get(section, "redaction");
    if (red && !cfg_is_null(red)) {
        if (cfg_expect_map(doc, red, "safety.redaction", err) != 0 ||
            cfg_check_keys(doc, red, "safety.redaction", red_keys, err) != 0)
            goto fail;
        const struct cfg_node *st = cfg_map_get(red, "style");
        if (st) {
            int style;
            if (parse_enum(doc, st, "safety.redaction.style", style_names, style_what, &style,
                           err) != 0)
                goto fail;
            for (size_t i = 0; i < sc->n_detectors; i++)
                sc->detectors[i].style = (enum safety_style)style;
        }
        if (cfg_get_string(doc, red, "safety.redaction", "hash_key_file", 0, &s, err) != 0)
            goto fail;
        if (s && load_hash_key(doc, cfg_map_get(red, "hash_key_file"),
                               "safety.redaction.hash_key_file", s, sc, err) != 0)
            goto fail;
    }
    const struct cfg_node *lim = cfg_map_get(section, "limits");
    if (lim && !cfg_is_null(lim)) {
        const char *LP = "safety.limits";
        uint64_t bytes = sc->max_scan_bytes;
        int64_t depth = (int64_t)sc->max_depth, ml = sc->match_limit;
        if (cfg_expect_map(doc, lim, LP, err) != 0 ||
            cfg_check_keys(doc, lim, LP, lim_keys, err) != 0 ||
            cfg_get_size(doc, lim, LP, "max_scan_bytes", &bytes, err) != 0 ||
            cfg_get_int(doc, lim, LP, "max_depth", 1, 1000, &depth, err) != 0 ||
            cfg_get_int(doc, lim, LP, "match_limit", 1000, 100000000, &ml, err) != 0)
            goto fail;
        if (bytes < 1024 || bytes > (UINT64_C(1) << 32)) {
            cfg_errorf(err, doc, cfg_map_get(lim, "max_scan_bytes"), "safety.limits.max_scan_bytes",
                       "write a size from 1KiB to 4GiB");
            goto fail;
        }
        sc->max_scan_bytes = (size_t)bytes;
        sc->max_depth = (size_t)depth;
        sc->match_limit = (uint32_t)ml;
        const struct cfg_node *ov = cfg_map_get(lim, "on_oversize");
        if (ov) {
            static const char *const ov_names[] = {"block", "pass", NULL};
            int v;
            if (parse_enum(doc, ov, "safety.limits.on_oversize", ov_names, "block or pass", &v,
                           err) != 0)
                goto fail;
            sc->on_oversize = (enum safety_oversize)v;
        }
    }
    int64_t win = (int64_t)sc->context_window;
    if (cfg_get_int(doc, section, P, "context_window", 8, 1024, &win, err) != 0)
        goto fail;
    sc->context_window = (size_t)win;
    double ent = sc->entropy_threshold;
    if (cfg_get_double(doc, section, P, "entropy_threshold", &ent, err) != 0)
        goto fail;
    if (ent < 1.0 || ent > 8.0) {
        cfg_errorf(err, doc, cfg_map_get(section, "entropy_threshold"), "safety.entropy_threshold",
                   "write a number of bits per character from 1 to 8 (default 3.5)");
        goto fail;
    }
    sc->entropy_threshold = ent;
    const struct cfg_node *det = cfg_map_get(section, "detectors");
    if (det && !cfg_is_null(det) && parse_detectors(doc, det, sc, resp_default, err) != 0)
        goto fail;
    const struct cfg_node *cus = cfg_map_get(section, "custom");
    if (cus && !cfg_is_null(cus) && parse_custom(doc, cus, sc, resp_default, err) != 0)
        goto fail;
    /* After the detectors and custom ones: a tool's entry starts from their final actions. */
    const struct cfg_node *tools = cfg_map_get(section, "tools");
    if (tools && !cfg_is_null(tools) && parse_tools(doc, tools, sc, resp_default, err) != 0)
        goto fail;
compile:
    if (safety_compile(sc, why, sizeof why) != 0) {
        cfg_errorf(err, doc, section, P, "%s", why);
        goto fail;
    }
    free(s);
    *out = sc;
    return 0;
fail:
    free(s);
    safety_config_free(sc);
    return -1;
}
