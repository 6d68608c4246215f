/*
 * The poisoning scan: rules are data (id and a PCRE2 pattern a line), the built-in set below
 * plus the operator's own (integrity.rules). Every string of a definition is scanned.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "layers/integrity/integrity.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

/* The built-in rules: `id  pattern`. Patterns match case-insensitively, in UTF mode. */
const char integrity_builtin_rules[] =
    "# hidden directives aimed at the model\n"
    "hidden_tag          <\\s*/?\\s*(important|system|instructions?|secret|hidden|admin|"
    "override|critical)\\b[^>]*>\n"
    "ignore_instructions \\b(ignore|disregard|forget|override)\\b.{0,40}\\b(previous|prior|"
    "above|earlier|all|other|system)\\b.{0,20}\\b(instructions?|rules|prompts?|directions)\n"
    "conceal_from_user   \\b(do\\s*n[o']?t|never|without)\\b.{0,30}\\b(tell|telling|inform|"
    "informing|mention|mentioning|notify|notifying|alert|alerting|show|showing|reveal|"
    "revealing)\\b.{0,20}\\b(the\\s+)?(user|human|operator)\n"
    "conceal_action      \\b(silently|secretly|covertly|quietly|invisibly)\\s+(send|copy|copies|"
    "forward|upload|include|read|add|attach|collect|share|exfiltrate|transmit|post|save|log|"
    "change|modify)|\\bwithout\\s+(the\\s+)?user'?s?\\s+(knowledge|consent|noticing)\\b\n"
    "model_address       \\b(you\\s+must|before\\s+using\\s+this\\s+tool|"
    "before\\s+(calling|invoking)\\s+(this|any)\\s+tool|as\\s+an\\s+ai|assistant\\s+must)\\b\n"
    "tool_shadowing      \\b(when|whenever)\\b.{0,40}\\b(other|another|the)\\b.{0,10}"
    "\\btool\\b.{0,60}\\b(always|must|instead)\\b\n"
    "# requests to read files or secrets\n"
    "secret_path         (~|\\$home|%userprofile%)?[/\\\\]?\\.(ssh|aws|gnupg|kube|docker)\\b|"
    "\\bid_(rsa|dsa|ecdsa|ed25519)\\b|\\.env\\b|\\bmcp\\.json\\b|\\.netrc\\b|"
    "\\bcredentials(\\.json)?\\b|/etc/(passwd|shadow)\\b|\\bprivate[\\s_-]?key\\b\n"
    "secret_request      \\b(read|cat|open|include|attach|pass|paste|provide)\\b.{0,40}"
    "\\b(api[\\s_-]?keys?|tokens?|passwords?|secrets?|ssh\\s+keys?|config(uration)?\\s+files?)\\b\n"
    "# exfiltration\n"
    "url                 \\b(https?|ftp|wss?)://|\\bdata:[a-z]+/\n"
    "send_to             \\b(send|forward|post|upload|transmit|exfiltrate|leak|copy|bcc|cc)\\b"
    ".{0,40}\\b(to|at)\\b\\s+\\S*(@|\\+?\\d[\\d\\s-]{6,}|https?://)\n"
    "sidenote_param      \\b(sidenote|side_note|note_to_self|hidden_param|extra_context|"
    "debug_info|metadata_dump|feedback_for_ai)\\b\n"
    "# invisible text\n"
    "unicode_tags        [\\x{E0000}-\\x{E007F}]\n"
    "bidi_control        [\\x{202A}-\\x{202E}\\x{2066}-\\x{2069}\\x{200E}\\x{200F}\\x{061C}]\n"
    "zero_width          [\\x{200B}\\x{200C}\\x{200D}\\x{2060}\\x{FEFF}\\x{180E}]\n";

struct integrity_rule {
    char id[48];
    pcre2_code *re;
};

struct integrity_rules {
    struct integrity_rule *v;
    size_t n;
};

void integrity_rules_free(struct integrity_rules *rules)
{
    if (!rules)
        return;
    for (size_t i = 0; i < rules->n; i++)
        pcre2_code_free(rules->v[i].re);
    free(rules->v);
    free(rules);
}

static int add_one(struct integrity_rules *r, const char *id, size_t idlen, const char *pat,
                   size_t patlen, const char *origin, size_t line, char *err, size_t errlen)
{
    if (idlen == 0 || idlen >= sizeof r->v[0].id || patlen == 0) {
        snprintf(err, errlen, "%s:%zu: a rule is `id pattern` (id under 48 bytes)", origin, line);
        return -1;
    }
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, patlen,
                                   PCRE2_UTF | PCRE2_CASELESS | PCRE2_DOTALL, &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        snprintf(err, errlen, "%s:%zu: rule %.*s: %s at offset %zu", origin, line, (int)idlen, id,
                 (const char *)msg, (size_t)off);
        return -1;
    }
    struct integrity_rule *nv = realloc(r->v, (r->n + 1) * sizeof *nv);
    if (!nv) {
        pcre2_code_free(re);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->v = nv;
    memcpy(nv[r->n].id, id, idlen);
    nv[r->n].id[idlen] = 0;
    nv[r->n].re = re;
    r->n++;
    return 0;
}

int integrity_rules_add(struct integrity_rules **rules, const char *text, const char *origin,
                        char *err, size_t errlen)
{
    if (!*rules && !(*rules = calloc(1, sizeof **rules))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *p = text;
    size_t line = 0;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        line++;
        const char *s = p, *end = p + len;
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        if (s < end && *s != '#') {
            const char *id = s;
            while (s < end && *s != ' ' && *s != '\t')
                s++;
            size_t idlen = (size_t)(s - id);
            while (s < end && (*s == ' ' || *s == '\t'))
                s++;
            while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
                end--;
            if (add_one(*rules, id, idlen, s, (size_t)(end - s), origin, line, err, errlen) != 0)
                return -1;
        }
        p += len + (eol ? 1 : 0);
    }
    return 0;
}

struct scan_state {
    const struct integrity_rules *rules;
    pcre2_match_data *md;
    int found;
    char *first;
    size_t first_len;
};

static void hit(struct scan_state *st, const char *id)
{
    if (st->found++ == 0)
        snprintf(st->first, st->first_len, "%s", id);
}

static void scan_text(struct scan_state *st, const char *s, size_t n)
{
    for (size_t i = 0; i < st->rules->n; i++) {
        int rc = pcre2_match(st->rules->v[i].re, (PCRE2_SPTR)s, n, 0, 0, st->md, NULL);
        if (rc >= 0 || rc == PCRE2_ERROR_NOMATCH) {
            if (rc >= 0)
                hit(st, st->rules->v[i].id);
        } else {
            hit(st, "unscannable_text"); /* match limit or bad UTF-8: fail closed */
        }
    }
}

/*
 * Values that identify rather than describe are not text for the model: a schema's `$schema`
 * naming a json-schema.org dialect, the one-word default of a `format: uri` property, and a
 * resource's own uri or uriTemplate (all still part of the pinned hash).
 */
static int identifier(const json_t *parent, const char *key, const json_t *v, int depth)
{
    const char *s = json_string_value(v);
    if (!s)
        return 0;
    if (depth == 1 && (strcmp(key, "uri") == 0 || strcmp(key, "uriTemplate") == 0))
        return 1;
    if (strpbrk(s, " \t\r\n"))
        return 0;
    /* The default of a property declared `format: uri` is a URI, one word long. */
    const char *format = json_string_value(json_object_get(parent, "format"));
    if (strcmp(key, "default") == 0 && format &&
        (strcmp(format, "uri") == 0 || strcmp(format, "url") == 0))
        return 1;
    if (strcmp(key, "$schema") != 0)
        return 0;
    return strncmp(s, "http://json-schema.org/", 23) == 0 ||
           strncmp(s, "https://json-schema.org/", 24) == 0;
}

static void walk(struct scan_state *st, const json_t *v, int depth)
{
    if (depth > 64) {
        hit(st, "too_deep");
        return;
    }
    if (json_is_string(v)) {
        scan_text(st, json_string_value(v), json_string_length(v));
    } else if (json_is_object(v)) {
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m)
        {
            scan_text(st, k, strlen(k)); /* parameter names carry sidenotes */
            if (!identifier(v, k, m, depth + 1))
                walk(st, m, depth + 1);
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            walk(st, json_array_get(v, i), depth + 1);
    }
}

int integrity_scan(const struct integrity_rules *rules, const json_t *def, size_t max_description,
                   char *first_rule, size_t first_len)
{
    struct scan_state st = {rules, NULL, 0, first_rule, first_len};
    if (first_len)
        first_rule[0] = 0;
    const json_t *d = json_object_get(def, "description");
    if (max_description && json_is_string(d) && json_string_length(d) > max_description)
        hit(&st, "oversized_description");
    if (!rules || rules->n == 0)
        return st.found;
    st.md = pcre2_match_data_create(4, NULL);
    if (!st.md) {
        hit(&st, "unscannable_text");
        return st.found;
    }
    walk(&st, def, 0);
    pcre2_match_data_free(st.md);
    return st.found;
}
