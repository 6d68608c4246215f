/*
 * policy_eval: deciding one query against the compiled rules.
 *
 * Conditions are three-valued: true, false, or unknown (the argument is missing, has the wrong
 * type, or the regex hit its limit). A permit needs every condition true; a forbid matches
 * unless some condition is false, so an argument the gateway cannot read never slips past a
 * forbid and never earns a permit.
 */
#include "layers/policy/policy-int.h"
#include "lib/buf.h"
#include "lib/url.h"

#include <arpa/inet.h>
#include <math.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum tri { TRI_FALSE = 0, TRI_TRUE = 1, TRI_UNKNOWN = 2 };

/* ---- JSON Pointer (RFC 6901) ---- */

int policy_pointer_parse(const char *text, char ***tokens, size_t *n, char *why, size_t whylen)
{
    *tokens = NULL;
    *n = 0;
    if (text[0] == '\0')
        return 0; /* the whole document */
    if (text[0] != '/') {
        snprintf(why, whylen, "a JSON Pointer starts with \"/\" (write \"/%s\")", text);
        return -1;
    }
    size_t count = 0;
    for (const char *p = text; *p; p++)
        if (*p == '/')
            count++;
    char **v = calloc(count + 1, sizeof *v);
    if (!v) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    const char *p = text + 1;
    for (size_t i = 0; i < count; i++) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *tok = malloc(len + 1);
        if (!tok)
            goto fail_oom;
        size_t o = 0;
        for (size_t k = 0; k < len; k++) {
            if (p[k] != '~') {
                tok[o++] = p[k];
                continue;
            }
            if (k + 1 < len && (p[k + 1] == '0' || p[k + 1] == '1')) {
                tok[o++] = p[k + 1] == '0' ? '~' : '/';
                k++;
                continue;
            }
            free(tok);
            snprintf(why, whylen, "\"~\" must be followed by 0 or 1 in a JSON Pointer");
            goto fail;
        }
        tok[o] = '\0';
        v[i] = tok;
        p = end ? end + 1 : p + len;
    }
    *tokens = v;
    *n = count;
    return 0;
fail_oom:
    snprintf(why, whylen, "out of memory");
fail:
    for (size_t i = 0; i < count; i++)
        free(v[i]);
    free(v);
    return -1;
}

/* An array index: "0" or digits without a leading zero, within the array. */
static const json_t *array_at(const json_t *arr, const char *tok)
{
    size_t len = strlen(tok);
    if (len == 0 || len > 9 || (len > 1 && tok[0] == '0'))
        return NULL;
    size_t idx = 0;
    for (size_t i = 0; i < len; i++) {
        if (tok[i] < '0' || tok[i] > '9')
            return NULL;
        idx = idx * 10 + (size_t)(tok[i] - '0');
    }
    return idx < json_array_size(arr) ? json_array_get(arr, idx) : NULL;
}

const json_t *policy_pointer_get(const json_t *root, char *const *tokens, size_t n)
{
    const json_t *cur = root;
    for (size_t i = 0; cur && i < n; i++) {
        if (json_is_object(cur))
            cur = json_object_get(cur, tokens[i]);
        else if (json_is_array(cur))
            cur = array_at(cur, tokens[i]);
        else
            cur = NULL;
    }
    return cur;
}

/* ---- URL host ---- */

/*
 * The host of an absolute URL, as the one URL parser (lib/url) reads it, so that policy and
 * the egress guard agree on where a URL points. Userinfo, backslashes, whitespace and other
 * forms parsers disagree on are refused (-1): the predicate is then unknown, which a forbid
 * counts as a match and a permit as no match.
 */
int policy_url_host(const char *url, size_t len, char *out, size_t outlen)
{
    struct gw_url u;
    if (gw_url_parse(url, len, GW_URL_ANY_SCHEME, &u) != GW_URL_OK)
        return -1;
    size_t hl = strlen(u.host);
    if (hl == 0 || hl + 1 > outlen)
        return -1;
    memcpy(out, u.host, hl + 1);
    return 0;
}

/* ---- CIDR ---- */

int policy_cidr_parse(const char *text, struct policy_cidr *out, char *why, size_t whylen)
{
    char addr[64];
    const char *slash = strchr(text, '/');
    size_t alen = slash ? (size_t)(slash - text) : strlen(text);
    if (alen == 0 || alen >= sizeof addr) {
        snprintf(why, whylen, "\"%s\" is not an address or CIDR block", text);
        return -1;
    }
    memcpy(addr, text, alen);
    addr[alen] = '\0';
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, addr, out->addr) == 1)
        out->family = 4;
    else if (inet_pton(AF_INET6, addr, out->addr) == 1)
        out->family = 6;
    else {
        snprintf(why, whylen, "\"%s\" is not an IPv4 or IPv6 address", addr);
        return -1;
    }
    int maxbits = out->family == 4 ? 32 : 128;
    out->bits = maxbits;
    if (slash) {
        const char *b = slash + 1;
        size_t bl = strlen(b);
        if (bl == 0 || bl > 3 || (bl > 1 && b[0] == '0')) {
            snprintf(why, whylen, "\"%s\": the prefix length must be a number 0-%d", text, maxbits);
            return -1;
        }
        int bits = 0;
        for (size_t i = 0; i < bl; i++) {
            if (!isdigit((unsigned char)b[i])) {
                snprintf(why, whylen, "\"%s\": the prefix length must be a number 0-%d", text,
                         maxbits);
                return -1;
            }
            bits = bits * 10 + (b[i] - '0');
        }
        if (bits > maxbits) {
            snprintf(why, whylen, "\"%s\": the prefix length must be a number 0-%d", text, maxbits);
            return -1;
        }
        out->bits = bits;
    }
    /* Host bits set below the prefix are almost always a typo (10.0.0.1/8): refuse them. */
    int nbytes = maxbits / 8;
    for (int i = 0; i < nbytes; i++) {
        int lo = i * 8;
        unsigned char mask = lo >= out->bits ? 0
                             : lo + 8 <= out->bits
                                 ? 0xff
                                 : (unsigned char)(0xff << (8 - (out->bits - lo)));
        if (out->addr[i] & (unsigned char)~mask) {
            snprintf(why, whylen, "\"%s\" has host bits set below the /%d prefix", text, out->bits);
            return -1;
        }
    }
    return 0;
}

static int cidr_contains(const struct policy_cidr *c, int family, const unsigned char *addr)
{
    if (c->family != family)
        return 0;
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, addr, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (addr[full] & mask);
}

/* ---- predicates ---- */

static int ascii_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/*
 * The number a string stands for, read the way backends coerce strings to numbers, so that
 * `eq: 500` is not missed by "500.0", "0500", " 500", "+5e2" or "0x1f4". Returns 1 with *out
 * for a string every common reading agrees on (optional surrounding ASCII whitespace, a sign,
 * decimal digits with an optional fraction and exponent, or 0x/0o/0b digits); 0 for a string
 * that is not a number in any reading ("P500", "five"); -1 for one that some readings take as
 * a number and others do not ("1_000", "1,000", "500 apples", "Infinity", digits of other
 * scripts): such a predicate is unknown, which a forbid counts as a match and a permit as no
 * match.
 */
int policy_numeric_reading(const char *s, size_t n, double *out)
{
    size_t a = 0, b = n;
    while (a < b && ascii_space(s[a]))
        a++;
    while (b > a && ascii_space(s[b - 1]))
        b--;
    if (a == b)
        return 0;
    char buf[128];
    if (b - a >= sizeof buf)
        return -1;
    memcpy(buf, s + a, b - a);
    buf[b - a] = '\0';
    const char *p = buf;
    int neg = 0;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    int base = 0;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
        base = 16;
    else if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O'))
        base = 8;
    else if (p[0] == '0' && (p[1] == 'b' || p[1] == 'B'))
        base = 2;
    if (base) {
        const char *d = p + 2;
        if (!*d)
            return -1;
        double v = 0;
        for (; *d; d++) {
            int x = isdigit((unsigned char)*d)    ? *d - '0'
                    : isxdigit((unsigned char)*d) ? tolower((unsigned char)*d) - 'a' + 10
                                                  : 99;
            if (x >= base)
                return -1;
            v = v * base + x;
        }
        *out = neg ? -v : v;
        return 1;
    }
    /* Strict decimal: digits [. digits] [e [sign] digits], or . digits. */
    const char *q = p;
    size_t int_digits = 0, frac_digits = 0;
    while (isdigit((unsigned char)*q))
        q++, int_digits++;
    if (*q == '.') {
        q++;
        while (isdigit((unsigned char)*q))
            q++, frac_digits++;
    }
    int ok = int_digits + frac_digits > 0;
    if (ok && (*q == 'e' || *q == 'E')) {
        q++;
        if (*q == '+' || *q == '-')
            q++;
        size_t exp_digits = 0;
        while (isdigit((unsigned char)*q))
            q++, exp_digits++;
        ok = exp_digits > 0;
    }
    if (ok && *q == '\0') {
        *out = strtod(buf, NULL);
        return isfinite(*out) ? 1 : -1;
    }
    /*
     * Not strictly a number. Any digit, non-ASCII byte or number word left means some reading
     * may still take it for one; a letter of another kind means none does.
     */
    int digit = 0, other = 0;
    for (const char *c = buf; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if (isdigit(u) || u >= 0x80)
            digit = 1;
        else if (!strchr("+-._,eE ", *c))
            other = 1;
    }
    if (strcasecmp(p, "inf") == 0 || strcasecmp(p, "infinity") == 0 || strcasecmp(p, "nan") == 0)
        return -1;
    /* A leading number is what lenient readers (parseInt, atoi) take: "500 apples" is 500. */
    if (isdigit((unsigned char)p[0]) || (p[0] == '.' && isdigit((unsigned char)p[1])))
        return -1;
    return digit && !other ? -1 : 0;
}

/* A configured number (unquoted) against an argument: numbers compare by value. */
static enum tri number_eq(const struct policy_scalar *sv, const json_t *v)
{
    double want = sv->is_int ? (double)sv->ival : sv->dval;
    if (json_is_integer(v)) {
        if (sv->is_int)
            return json_integer_value(v) == sv->ival ? TRI_TRUE : TRI_FALSE;
        return (double)json_integer_value(v) == want ? TRI_TRUE : TRI_FALSE;
    }
    if (json_is_real(v))
        return json_real_value(v) == want ? TRI_TRUE : TRI_FALSE;
    if (json_is_string(v)) {
        double d;
        int r = policy_numeric_reading(json_string_value(v), json_string_length(v), &d);
        if (r < 0)
            return TRI_UNKNOWN;
        return r == 1 && d == want ? TRI_TRUE : TRI_FALSE;
    }
    if (json_is_boolean(v))
        return TRI_FALSE;
    return TRI_UNKNOWN;
}

static enum tri scalar_eq(const struct policy_scalar *sv, const json_t *v)
{
    if (!sv->quoted && (sv->is_int || sv->is_real))
        return number_eq(sv, v);
    if (json_is_string(v))
        return json_string_length(v) == sv->len &&
                       memcmp(json_string_value(v), sv->text, sv->len) == 0
                   ? TRI_TRUE
                   : TRI_FALSE;
    if (json_is_integer(v)) {
        if (sv->quoted)
            return TRI_FALSE;
        if (sv->is_int)
            return json_integer_value(v) == sv->ival ? TRI_TRUE : TRI_FALSE;
        return sv->is_real && (double)json_integer_value(v) == sv->dval ? TRI_TRUE : TRI_FALSE;
    }
    if (json_is_real(v))
        return !sv->quoted && (sv->is_real || sv->is_int) && json_real_value(v) == sv->dval
                   ? TRI_TRUE
                   : TRI_FALSE;
    if (json_is_boolean(v))
        return !sv->quoted && sv->is_bool && json_is_true(v) == sv->bval ? TRI_TRUE : TRI_FALSE;
    return TRI_UNKNOWN; /* null, object, array: not comparable with a scalar */
}

/* Length of a UTF-8 string in code points (jansson has checked it is valid UTF-8). */
static size_t utf8_len(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            c++;
    return c;
}

static const char *claim_value(const struct policy_principal *p, enum policy_claim c)
{
    if (!p)
        return NULL;
    switch (c) {
    case POLICY_CLAIM_TENANT:
        return p->tenant;
    case POLICY_CLAIM_SUBJECT:
        return p->subject;
    case POLICY_CLAIM_CLIENT:
        return p->client_id;
    }
    return NULL;
}

struct eval_ctx {
    const struct policy_config *pc;
    pcre2_match_data *md; /* created on first regex use, freed after the decision */
};

static enum tri pred_eval(struct eval_ctx *ctx, const struct policy_pred *pd, const json_t *args,
                          const struct policy_principal *pr)
{
    const json_t *v = args ? policy_pointer_get(args, pd->tokens, pd->n_tokens) : NULL;
    if (pd->op == POLICY_OP_EXISTS)
        return (v != NULL) == (pd->exists != 0) ? TRI_TRUE : TRI_FALSE;
    if (!v)
        return TRI_UNKNOWN;
    switch (pd->op) {
    case POLICY_OP_EQ:
    case POLICY_OP_IN: {
        enum tri r = TRI_FALSE;
        for (size_t i = 0; i < pd->n_values; i++) {
            enum tri t = scalar_eq(&pd->values[i], v);
            if (t == TRI_TRUE)
                return TRI_TRUE;
            if (t == TRI_UNKNOWN)
                r = TRI_UNKNOWN;
        }
        return r;
    }
    case POLICY_OP_PREFIX:
        if (!json_is_string(v))
            return TRI_UNKNOWN;
        return json_string_length(v) >= pd->text_len &&
                       memcmp(json_string_value(v), pd->text, pd->text_len) == 0
                   ? TRI_TRUE
                   : TRI_FALSE;
    case POLICY_OP_MATCHES: {
        if (!json_is_string(v))
            return TRI_UNKNOWN;
        if (!ctx->md) {
            ctx->md = pcre2_match_data_create(1, NULL);
            if (!ctx->md)
                return TRI_UNKNOWN;
        }
        int rc = pcre2_match(pd->re, (PCRE2_SPTR)json_string_value(v), json_string_length(v), 0, 0,
                             ctx->md, ctx->pc->match_ctx);
        if (rc >= 0)
            return TRI_TRUE;
        return rc == PCRE2_ERROR_NOMATCH ? TRI_FALSE : TRI_UNKNOWN;
    }
    case POLICY_OP_RANGE: {
        double d;
        if (json_is_number(v)) {
            d = json_number_value(v);
        } else if (json_is_string(v)) {
            /* A string the backend would read as a number is judged as that number. */
            if (policy_numeric_reading(json_string_value(v), json_string_length(v), &d) != 1)
                return TRI_UNKNOWN;
        } else {
            return TRI_UNKNOWN;
        }
        if (pd->has_min && !(d >= pd->min))
            return TRI_FALSE;
        if (pd->has_max && !(d <= pd->max))
            return TRI_FALSE;
        return TRI_TRUE;
    }
    case POLICY_OP_MAX_LEN:
        if (json_is_string(v))
            return (long long)utf8_len(json_string_value(v), json_string_length(v)) <= pd->max_len
                       ? TRI_TRUE
                       : TRI_FALSE;
        if (json_is_array(v))
            return (long long)json_array_size(v) <= pd->max_len ? TRI_TRUE : TRI_FALSE;
        return TRI_UNKNOWN;
    case POLICY_OP_CIDR: {
        /* inet_pton reads up to a NUL: a string with an embedded NUL is not an address. */
        if (!json_is_string(v) || json_string_length(v) >= 64 ||
            strlen(json_string_value(v)) != json_string_length(v))
            return TRI_UNKNOWN;
        unsigned char addr[16];
        int family = 0;
        if (inet_pton(AF_INET, json_string_value(v), addr) == 1)
            family = 4;
        else if (inet_pton(AF_INET6, json_string_value(v), addr) == 1) {
            family = 6;
            /* ::ffff:a.b.c.d is the IPv4 address a.b.c.d on the wire: match it as one. */
            static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
            if (memcmp(addr, mapped, 12) == 0) {
                memmove(addr, addr + 12, 4);
                family = 4;
            }
        } else
            return TRI_UNKNOWN;
        for (size_t i = 0; i < pd->n_cidrs; i++)
            if (cidr_contains(&pd->cidrs[i], family, addr))
                return TRI_TRUE;
        return TRI_FALSE;
    }
    case POLICY_OP_HOST_IN: {
        char host[256];
        if (!json_is_string(v) ||
            policy_url_host(json_string_value(v), json_string_length(v), host, sizeof host) != 0)
            return TRI_UNKNOWN;
        size_t hl = strlen(host);
        for (size_t i = 0; i < pd->n_hosts; i++) {
            const char *h = pd->hosts[i];
            if (h[0] == '*' && h[1] == '.') {
                size_t sl = strlen(h + 1); /* ".example.org" */
                if (hl > sl && memcmp(host + hl - sl, h + 1, sl) == 0)
                    return TRI_TRUE;
            } else if (strcmp(h, host) == 0) {
                return TRI_TRUE;
            }
        }
        return TRI_FALSE;
    }
    case POLICY_OP_EQ_CLAIM: {
        const char *c = claim_value(pr, pd->claim);
        if (!json_is_string(v) || !c)
            return TRI_UNKNOWN;
        size_t cl = strlen(c);
        return json_string_length(v) == cl && memcmp(json_string_value(v), c, cl) == 0 ? TRI_TRUE
                                                                                       : TRI_FALSE;
    }
    default:
        return TRI_UNKNOWN;
    }
}

/* ---- principal conditions ---- */

static int has(const char *const *set, size_t n, const char *s)
{
    if (!s)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (set[i] && strcmp(set[i], s) == 0)
            return 1;
    return 0;
}

static int any_of(const struct policy_strs *want, const char *const *set, size_t n)
{
    for (size_t i = 0; i < want->n; i++)
        if (has(set, n, want->v[i]))
            return 1;
    return 0;
}

static int all_of(const struct policy_strs *want, const char *const *set, size_t n)
{
    for (size_t i = 0; i < want->n; i++)
        if (!has(set, n, want->v[i]))
            return 0;
    return 1;
}

static int in_list(const struct policy_strs *want, const char *s)
{
    return has((const char *const *)want->v, want->n, s);
}

/*
 * Checks the principal conditions of a rule, required_scopes excluded. Returns the name of
 * the first that fails, or NULL when all hold.
 */
static const char *principal_fails(const struct policy_rule *r, const struct policy_principal *p)
{
    static const struct policy_principal none = {0};
    if (!p)
        p = &none;
    if (r->subjects.n && !in_list(&r->subjects, p->subject))
        return "subjects";
    if (r->tenants.n && !in_list(&r->tenants, p->tenant))
        return "tenants";
    if (r->clients.n && !in_list(&r->clients, p->client_id))
        return "clients";
    if (r->roles_any.n && !any_of(&r->roles_any, p->roles, p->n_roles))
        return "roles_any";
    if (r->roles_all.n && !all_of(&r->roles_all, p->roles, p->n_roles))
        return "roles_all";
    if (r->scopes_any.n && !policy_any_scope(&r->scopes_any, p))
        return "scopes_any";
    if (r->scopes_all.n && !policy_all_scopes(&r->scopes_all, p))
        return "scopes_all";
    return NULL;
}

static int required_scopes_held(const struct policy_rule *r, const struct policy_principal *p)
{
    return r->required_scopes.n == 0 || (p && policy_all_scopes(&r->required_scopes, p));
}

/* ---- decisions ---- */

/* Copies s, truncated if need be at a UTF-8 character boundary. */
static void copy_utf8(char *dst, size_t size, const char *s)
{
    size_t len = strlen(s);
    if (len >= size) {
        len = size - 1;
        while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
            len--;
    }
    memcpy(dst, s, len);
    dst[len] = '\0';
}

static const char *const op_names[POLICY_OP_COUNT] = {
    "eq", "in", "prefix", "matches", "range", "exists", "max_len", "cidr", "host_in", "eq_claim",
};

static void append_id(char *buf, size_t len, const char *id)
{
    size_t used = strlen(buf), idl = strlen(id);
    if (used + (used ? 1 : 0) + idl + 1 > len)
        return; /* keep whole ids only */
    if (used)
        buf[used++] = ',';
    memcpy(buf + used, id, idl + 1);
}

static void explainf(struct gw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void explainf(struct gw_buf *b, const char *fmt, ...)
{
    if (!b)
        return;
    va_list ap;
    va_start(ap, fmt);
    gw_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

static const char *effect_name(const struct policy_rule *r)
{
    return r->effect == POLICY_FORBID ? "forbid" : "permit";
}

static int cmp_rule(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * Adds the forbid rules whose targets match the name in lower case (the folded index) to the
 * n candidates, keeping them ascending and unique. Returns the new count or -1.
 */
static long add_folded_forbids(const struct policy_config *pc, const struct policy_query *q,
                               uint32_t **cands, size_t *cap, size_t n)
{
    char low[POLICY_MAX_TARGET + 1];
    for (size_t i = 0; i < q->target_len; i++)
        low[i] = q->target[i] >= 'A' && q->target[i] <= 'Z' ? (char)(q->target[i] - 'A' + 'a')
                                                            : q->target[i];
    uint32_t *extra = NULL;
    size_t ecap = 0;
    long m = policy_index_lookup_in(&pc->folded[q->action], low, q->target_len, &extra, &ecap);
    if (m <= 0) {
        free(extra);
        return m < 0 ? -1 : (long)n;
    }
    if (n + (size_t)m > *cap) {
        uint32_t *nv = realloc(*cands, (n + (size_t)m) * sizeof *nv);
        if (!nv) {
            free(extra);
            return -1;
        }
        *cands = nv;
        *cap = n + (size_t)m;
    }
    memcpy(*cands + n, extra, (size_t)m * sizeof *extra);
    free(extra);
    size_t total = n + (size_t)m, k = 0;
    qsort(*cands, total, sizeof **cands, cmp_rule);
    for (size_t i = 0; i < total; i++)
        if (k == 0 || (*cands)[k - 1] != (*cands)[i])
            (*cands)[k++] = (*cands)[i];
    return (long)k;
}

/* Evaluates a rule's `when` list: TRI_TRUE when all true, TRI_FALSE when one is false. */
static enum tri when_eval(struct eval_ctx *ctx, const struct policy_rule *r, const json_t *args,
                          const struct policy_principal *p, size_t *first_bad, enum tri *bad_val)
{
    enum tri acc = TRI_TRUE;
    *first_bad = (size_t)-1;
    for (size_t i = 0; i < r->n_when; i++) {
        enum tri t = pred_eval(ctx, &r->when[i], args, p);
        if (t == TRI_TRUE)
            continue;
        if (*first_bad == (size_t)-1 || t == TRI_FALSE) {
            *first_bad = i;
            *bad_val = t;
        }
        if (t == TRI_FALSE)
            return TRI_FALSE;
        acc = TRI_UNKNOWN;
    }
    return acc;
}

enum policy_outcome policy_decide(const struct policy_config *pc, const struct policy_query *q,
                                  struct policy_result *res, struct gw_buf *explain)
{
    memset(res, 0, sizeof *res);
    res->outcome = POLICY_DENY_INVALID;
    if (!q->target || q->target_len == 0 || q->target_len > POLICY_MAX_TARGET ||
        (unsigned)q->action >= POLICY_ACTION_COUNT) {
        explainf(explain, "  no target, or a target longer than %d bytes\n", POLICY_MAX_TARGET);
        return res->outcome;
    }
    if (!pc) {
        res->outcome = POLICY_DENY_HIDDEN;
        explainf(explain, "  no policy section: every governed action is denied\n");
        return res->outcome;
    }
    struct eval_ctx ctx = {.pc = pc, .md = NULL};
    uint32_t *cands = NULL;
    size_t cap = 0;
    long n = policy_index_lookup(pc, q->action, q->target, q->target_len, &cands, &cap);
    if (n >= 0 && q->action != POLICY_ACTION_RESOURCE)
        n = add_folded_forbids(pc, q, &cands, &cap, (size_t)n);
    if (n < 0) {
        res->outcome = POLICY_DENY_INVALID;
        explainf(explain, "  out of memory\n");
        goto out;
    }
    if (explain && n == 0)
        explainf(explain, "  no rule names this %s\n",
                 q->action == POLICY_ACTION_RESOURCE ? "resource"
                 : q->action == POLICY_ACTION_PROMPT ? "prompt"
                                                     : "tool");

    int visible_permit = 0, unconditional_forbid = 0;
    int forbid_hit = 0, permit_hit = 0;
    long scope_near = -1;
    char forbid_ids[128] = "", permit_ids[128] = "";
    const char *forbid_msg = NULL;
    const struct policy_principal *p = q->principal;
    for (long c = 0; c < n; c++) {
        const struct policy_rule *r = &pc->rules[cands[c]];
        const char *pf = principal_fails(r, p);
        if (pf) {
            explainf(explain, "  %s %s (line %d): no match: %s does not hold for this principal\n",
                     effect_name(r), r->id, r->line, pf);
            continue;
        }
        size_t bad = 0;
        enum tri badv = TRI_TRUE;
        enum tri w = when_eval(&ctx, r, q->arguments, p, &bad, &badv);
        /* Annotation conditions read unknown hints as their riskiest value: never unknown. */
        if (r->n_hints && !policy_hints_match(r, q->annotations)) {
            explainf(explain,
                     "  %s %s (line %d): no match: its annotations conditions do not hold\n",
                     effect_name(r), r->id, r->line);
            if (r->effect == POLICY_PERMIT)
                visible_permit = 1;
            continue;
        }
        if (r->effect == POLICY_FORBID) {
            if (r->n_when == 0 && r->n_hints == 0)
                unconditional_forbid = 1;
            if (w == TRI_FALSE) {
                explainf(explain, "  forbid %s (line %d): no match: when[%zu] %s %s is false\n",
                         r->id, r->line, bad, r->when[bad].arg, op_names[r->when[bad].op]);
                continue;
            }
            if (!forbid_hit)
                forbid_msg = r->message;
            forbid_hit = 1;
            append_id(forbid_ids, sizeof forbid_ids, r->id);
            if (w == TRI_UNKNOWN)
                explainf(explain,
                         "  forbid %s (line %d): MATCH (when[%zu] %s %s cannot be evaluated: "
                         "fails closed)\n",
                         r->id, r->line, bad, r->when[bad].arg, op_names[r->when[bad].op]);
            else
                explainf(explain, "  forbid %s (line %d): MATCH\n", r->id, r->line);
            continue;
        }
        visible_permit = 1;
        if (w != TRI_TRUE) {
            explainf(explain, "  permit %s (line %d): no match: when[%zu] %s %s %s\n", r->id,
                     r->line, bad, r->when[bad].arg, op_names[r->when[bad].op],
                     badv == TRI_FALSE ? "is false"
                                       : "cannot be evaluated (missing or wrong type)");
            continue;
        }
        if (!required_scopes_held(r, p)) {
            explainf(explain, "  permit %s (line %d): no match: required_scopes missing:", r->id,
                     r->line);
            for (size_t k = 0; explain && k < r->required_scopes.n; k++)
                if (!p || !policy_has_scope(p, r->required_scopes.v[k]))
                    explainf(explain, " %s", r->required_scopes.v[k]);
            explainf(explain, "\n");
            if (scope_near < 0)
                scope_near = (long)cands[c];
            continue;
        }
        permit_hit = 1;
        if (r->approval.by != POLICY_APPROVAL_NONE && res->approval.by == POLICY_APPROVAL_NONE)
            res->approval = r->approval;
        append_id(permit_ids, sizeof permit_ids, r->id);
        explainf(explain, "  permit %s (line %d): MATCH\n", r->id, r->line);
    }
    res->visible = visible_permit && !unconditional_forbid;
    if (!res->visible) {
        res->outcome = POLICY_DENY_HIDDEN;
        gw_strlcpy(res->rule_id, forbid_ids, sizeof res->rule_id);
    } else if (forbid_hit) {
        res->outcome = POLICY_DENY_FORBIDDEN;
        gw_strlcpy(res->rule_id, forbid_ids, sizeof res->rule_id);
        if (forbid_msg)
            copy_utf8(res->message, sizeof res->message, forbid_msg);
    } else if (permit_hit) {
        res->outcome = POLICY_ALLOW;
        gw_strlcpy(res->rule_id, permit_ids, sizeof res->rule_id);
    } else if (scope_near >= 0) {
        const struct policy_rule *r = &pc->rules[scope_near];
        res->outcome = POLICY_DENY_SCOPE;
        gw_strlcpy(res->rule_id, r->id, sizeof res->rule_id);
        /*
         * Every scope the operation needs, in one challenge: the rule's scopes_all (held, or
         * it would not be near) and its required_scopes, each once.
         */
        const struct policy_strs *lists[] = {&r->scopes_all, &r->required_scopes};
        for (size_t l = 0; l < 2; l++)
            for (size_t i = 0; i < lists[l]->n; i++) {
                const char *sc = lists[l]->v[i];
                if (l == 1 && in_list(&r->scopes_all, sc))
                    continue;
                size_t used = strlen(res->scopes);
                snprintf(res->scopes + used, sizeof res->scopes - used, "%s%s", used ? " " : "",
                         sc);
            }
        if (r->message)
            copy_utf8(res->message, sizeof res->message, r->message);
    } else {
        res->outcome = POLICY_DENY_NO_MATCH;
    }
out:
    if (ctx.md)
        pcre2_match_data_free(ctx.md);
    free(cands);
    return res->outcome;
}

int policy_visible(const struct policy_config *pc, enum policy_action action, const char *target,
                   size_t target_len, const struct policy_principal *principal)
{
    if (!pc || !target || target_len == 0 || target_len > POLICY_MAX_TARGET ||
        (unsigned)action >= POLICY_ACTION_COUNT)
        return 0;
    uint32_t *cands = NULL;
    size_t cap = 0;
    long n = policy_index_lookup(pc, action, target, target_len, &cands, &cap);
    int permit = 0, forbid = 0;
    for (long c = 0; c < n && !forbid; c++) {
        const struct policy_rule *r = &pc->rules[cands[c]];
        if (principal_fails(r, principal))
            continue;
        if (r->effect == POLICY_FORBID)
            forbid = r->n_when == 0 && r->n_hints == 0;
        else
            permit = 1;
    }
    free(cands);
    return n > 0 && permit && !forbid;
}

int policy_action_for_method(const char *method)
{
    if (!method)
        return -1;
    if (strcmp(method, "tools/call") == 0)
        return POLICY_ACTION_TOOL;
    if (strcmp(method, "resources/read") == 0)
        return POLICY_ACTION_RESOURCE;
    if (strcmp(method, "prompts/get") == 0)
        return POLICY_ACTION_PROMPT;
    return -1;
}

const char *policy_action_name(enum policy_action action)
{
    switch (action) {
    case POLICY_ACTION_TOOL:
        return "tools/call";
    case POLICY_ACTION_RESOURCE:
        return "resources/read";
    case POLICY_ACTION_PROMPT:
        return "prompts/get";
    default:
        return "?";
    }
}

const char *policy_outcome_code(enum policy_outcome outcome)
{
    switch (outcome) {
    case POLICY_ALLOW:
        return "policy.permit";
    case POLICY_DENY_FORBIDDEN:
        return "policy.forbidden";
    case POLICY_DENY_NO_MATCH:
        return "policy.no_match";
    case POLICY_DENY_SCOPE:
        return "policy.insufficient_scope";
    case POLICY_DENY_HIDDEN:
        return "policy.hidden";
    case POLICY_DENY_INVALID:
    default:
        return "policy.invalid_request";
    }
}
