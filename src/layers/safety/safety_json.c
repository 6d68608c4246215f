/*
 * safety_json: scanning a JSON subtree (every string value and object key), recording the
 * findings and applying redactions in place.
 *
 * The walk is bounded by limits.max_depth and by the message's byte budget
 * (limits.max_scan_bytes); what is beyond a bound is not scanned and the result says so, so
 * the caller can fail closed (or pass with a flag when configured).
 */
#include "layers/safety/safety-int.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"

/* ---- the per-process hash key ------------------------------------------------------------- */

static unsigned char process_key[32];
static int process_key_ok;
static pthread_once_t process_key_once = PTHREAD_ONCE_INIT;

static void process_key_init(void)
{
    process_key_ok = RAND_bytes(process_key, sizeof process_key) == 1;
}

const unsigned char *safety_process_key(void)
{
    pthread_once(&process_key_once, process_key_init);
    return process_key_ok ? process_key : NULL;
}

/* ---- findings ----------------------------------------------------------------------------- */

static enum gw_pii_action pii_action(enum safety_action a)
{
    return a == SAFETY_BLOCK ? GW_PII_BLOCK : a == SAFETY_REDACT ? GW_PII_REDACT : GW_PII_LOG;
}

/* Copies at most cap-1 bytes of s without cutting a UTF-8 sequence. */
static void copy_utf8(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static void add_finding(struct gw_findings *f, const char *type, const char *path,
                        enum gw_pii_action action, enum gw_direction dir)
{
    struct gw_finding tmp;
    if (!f)
        return;
    copy_utf8(tmp.type, sizeof tmp.type, type);
    copy_utf8(tmp.path, sizeof tmp.path, path);
    for (size_t i = 0; i < f->n && i < GW_MAX_FINDINGS; i++) {
        struct gw_finding *x = &f->items[i];
        if (x->direction == dir && strcmp(x->type, tmp.type) == 0 &&
            strcmp(x->path, tmp.path) == 0) {
            x->count++;
            if (action > x->action)
                x->action = action;
            return;
        }
    }
    struct gw_finding *slot = gw_findings_push(f);
    if (!slot)
        return; /* counted as dropped */
    tmp.count = 1;
    tmp.action = action;
    tmp.direction = dir;
    *slot = tmp;
}

/* ---- replacement text --------------------------------------------------------------------- */

static int is_alnum(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int append_placeholder(struct gw_buf *b, const struct safety_detector *d)
{
    return gw_buf_append(b, "[REDACTED:", 10) | gw_buf_append_str(b, d->label) |
           gw_buf_append(b, "]", 1);
}

/* HMAC-SHA256(key, tenant NUL label NUL value): equal values give equal tokens per tenant. */
static int append_hash(struct gw_buf *b, const struct safety_config *sc,
                       const struct safety_detector *d, const char *tenant, const char *s, size_t n)
{
    const unsigned char *key = sc->hash_key_set ? sc->hash_key : safety_process_key();
    char *norm;
    size_t nlen;
    uint32_t *map;
    struct gw_buf in = {0};
    int rc = -1;
    if (!key || safety_normalize(s, n, &norm, &nlen, &map) != 0)
        return -1;
    const char *t = tenant ? tenant : "";
    if (gw_buf_append(&in, t, strlen(t) + 1) != 0 ||
        gw_buf_append(&in, d->label, strlen(d->label) + 1) != 0)
        goto out;
    /* The value's letters and digits only (lower case), so formatting does not matter;
     * secrets are hashed as they are. */
    for (size_t i = 0; i < nlen; i++) {
        char c = norm[i];
        if (!d->secret) {
            if (!is_alnum((unsigned char)c))
                continue;
            if (c >= 'A' && c <= 'Z')
                c = (char)(c + 32);
        }
        if (gw_buf_append(&in, &c, 1) != 0)
            goto out;
    }
    unsigned char md[32];
    size_t mdlen = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, 32, (const unsigned char *)in.data,
                   in.len, md, sizeof md, &mdlen) ||
        mdlen != 32)
        goto out;
    char hex[17]; /* 16 digits and the closing bracket */
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[16] = ']';
    rc = gw_buf_append(b, "[", 1) | gw_buf_append_str(b, d->label) | gw_buf_append(b, ":", 1) |
         gw_buf_append(b, hex, 17);
out:
    gw_buf_free(&in);
    if (norm != s)
        free(norm);
    free(map);
    return rc;
}

static int append_mask(struct gw_buf *b, const struct safety_detector *d, const char *s, size_t n)
{
    if (d->builtin == SB_EMAIL) {
        const char *at = memchr(s, '@', n);
        if (at && at > s) {
            if (gw_buf_append(b, s, 1) != 0 || gw_buf_append(b, "***", 3) != 0)
                return -1;
            return gw_buf_append(b, at, n - (size_t)(at - s));
        }
    }
    if (!d->keep_last4)
        return append_placeholder(b, d);
    size_t alnums = 0;
    for (size_t i = 0; i < n; i++)
        alnums += is_alnum((unsigned char)s[i]);
    /* Fewer than 8 letters/digits: four kept would give away half; mask them all. */
    size_t keep = alnums >= 8 ? 4 : 0, seen = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_alnum(c)) {
            seen++;
            char o = seen > alnums - keep ? (char)c : '*';
            if (gw_buf_append(b, &o, 1) != 0)
                return -1;
        } else if (c < 0x80) {
            if (gw_buf_append(b, (const char *)&s[i], 1) != 0)
                return -1;
        } else if (gw_buf_append(b, "*", 1) != 0) {
            /* Non-ASCII (full-width digits): masked too. */
            return -1;
        }
    }
    return 0;
}

static int append_replacement(struct gw_buf *b, const struct safety_config *sc,
                              const struct safety_detector *d, const char *tenant, const char *s,
                              size_t n)
{
    switch (d->style) {
    case SAFETY_STYLE_MASK:
        return append_mask(b, d, s, n);
    case SAFETY_STYLE_HASH:
        return append_hash(b, sc, d, tenant, s, n);
    default:
        return append_placeholder(b, d);
    }
}

/* ---- the walk ----------------------------------------------------------------------------- */

struct walk {
    const struct safety_config *sc;
    const struct safety_scan_opts *o;
    struct gw_findings *f;
    struct safety_result *res;
    char path[1024];
    size_t plen;
    size_t base; /* length of the caller's path: pinned pointers are relative to it */
    int stop;    /* a bound was hit or an error happened: scan nothing more */
    struct safety_prescan *pre; /* the joined prefilter pass over the texts below */
};

/* A value that cannot be rewritten (a redaction there blocks), and whether it is the id. */
#define FIXED 1
#define FIXED_ID 2

static void set_error(struct walk *w, const char *code)
{
    if (!w->res->error) {
        w->res->error = 1;
        snprintf(w->res->error_code, sizeof w->res->error_code, "%s", code);
    }
    w->stop = 1;
}

/* A bound was hit: block (an error) or, with on_oversize: pass, a flag and a log finding. */
static void over_bound(struct walk *w, const char *code)
{
    w->stop = 1;
    if (w->sc->on_oversize == SAFETY_OVERSIZE_PASS) {
        w->res->flagged = 1;
        add_finding(w->f, code + strlen("safety."), w->path, GW_PII_LOG, w->o->direction);
        return;
    }
    set_error(w, code);
}

static size_t path_push_key(struct walk *w, const char *key, size_t klen)
{
    size_t saved = w->plen;
    if (w->plen + 2 >= sizeof w->path)
        return saved;
    w->path[w->plen++] = '/';
    for (size_t i = 0; i < klen && w->plen + 3 < sizeof w->path; i++) {
        if (key[i] == '~') {
            w->path[w->plen++] = '~';
            w->path[w->plen++] = '0';
        } else if (key[i] == '/') {
            w->path[w->plen++] = '~';
            w->path[w->plen++] = '1';
        } else {
            w->path[w->plen++] = key[i];
        }
    }
    w->path[w->plen] = '\0';
    return saved;
}

static size_t path_push_index(struct walk *w, size_t i)
{
    size_t saved = w->plen;
    char d[20];
    size_t n = gw_fmt_u64(d, i);
    /* As snprintf("/%zu") did: an index that does not fit in whole is left out. */
    if (n + 1 < sizeof w->path - w->plen) {
        w->path[w->plen++] = '/';
        memcpy(w->path + w->plen, d, n);
        w->plen += n;
    }
    w->path[w->plen] = '\0';
    return saved;
}

static void path_pop(struct walk *w, size_t saved)
{
    w->plen = saved;
    w->path[saved] = '\0';
}

/* Whether the value at the current path (depth levels below the walk's root) is fixed. */
static int value_fixed(const struct walk *w, size_t depth)
{
    const char *rel = w->path + w->base;
    if (w->o->envelope && depth == 1) {
        if (strcmp(rel, "/id") == 0)
            return FIXED | FIXED_ID;
        if (strcmp(rel, "/method") == 0 || strcmp(rel, "/jsonrpc") == 0)
            return FIXED;
    }
    if (w->o->pinned && depth <= 4)
        for (const char *const *p = w->o->pinned; *p; p++)
            if (strcmp(rel, *p) == 0)
                return FIXED;
    return 0;
}

static enum safety_action action_for(const struct walk *w, int detector)
{
    enum gw_direction dir = w->o->direction;
    return w->o->actions ? w->o->actions[detector][dir] : w->sc->detectors[detector].action[dir];
}

/*
 * Scans one text (a string, a member name, a number's decimal text, or decoded base64).
 * Returns 0 with a malloc'd replacement in *out (length *out_len) when spans are to be
 * redacted, *out NULL otherwise; -1 on an error (recorded). Findings and the block decision
 * are recorded on the way. In a fixed value a redaction cannot be made: it blocks.
 */
static int scan_one(struct walk *w, const char *s, size_t len, const char *key, size_t klen,
                    const struct safety_sibling_ref *sib, int fixed, char **out, size_t *out_len)
{
    struct safety_match m[SAFETY_MAX_MATCHES];
    unsigned flags = 0;
    enum gw_direction dir = w->o->direction;
    *out = NULL;
    if (len == 0)
        return 0;
    if (len > *w->o->budget) {
        over_bound(w, "safety.too_large");
        return 0;
    }
    *w->o->budget -= len;
    w->res->scanned += len;
    const struct safety_prescan_entry *pe = safety_prescan_take(w->pre, s, len);
    int n = safety_scan_text_pre(w->sc, w->pre, pe, s, len, key, klen, sib, dir, w->o->actions, m,
                                 SAFETY_MAX_MATCHES, &flags);
    if (n < 0) {
        set_error(w, "safety.error");
        return -1;
    }
    if (flags & SAFETY_SCAN_LIMIT) {
        set_error(w, "safety.scan_limit");
        return -1;
    }
    int redact = 0;
    for (int i = 0; i < n; i++) {
        const struct safety_detector *d = &w->sc->detectors[m[i].detector];
        enum safety_action a = action_for(w, m[i].detector);
        if (a == SAFETY_OFF)
            continue;
        if (fixed && a == SAFETY_REDACT)
            a = SAFETY_BLOCK;
        if ((fixed & FIXED_ID) && a >= SAFETY_REDACT)
            w->res->id_finding = 1;
        w->res->findings++;
        safety_count_finding(w->sc, m[i].detector, a, dir == GW_DIR_RESPONSE);
        add_finding(w->f, d->name, w->path, pii_action(a), dir);
        if (a == SAFETY_BLOCK && !w->res->block) {
            w->res->block = 1;
            copy_utf8(w->res->block_type, sizeof w->res->block_type, d->name);
            copy_utf8(w->res->block_path, sizeof w->res->block_path, w->path);
        }
        if (a == SAFETY_REDACT)
            redact = 1;
    }
    if (!redact || !w->o->redact)
        return 0;
    struct gw_buf b = {0};
    if (flags & SAFETY_SCAN_OVERFLOW) {
        /* Too many spans to rewrite one by one: the whole string goes. */
        if (gw_buf_append(&b, "[REDACTED]", 10) != 0)
            goto oom;
        w->res->redactions++;
    } else {
        size_t pos = 0;
        for (int i = 0; i < n; i++) {
            const struct safety_detector *d = &w->sc->detectors[m[i].detector];
            if (action_for(w, m[i].detector) != SAFETY_REDACT)
                continue;
            if (gw_buf_append(&b, s + pos, m[i].start - pos) != 0 ||
                append_replacement(&b, w->sc, d, w->o->tenant, s + m[i].start,
                                   m[i].end - m[i].start) != 0)
                goto oom;
            pos = m[i].end;
            w->res->redactions++;
        }
        if (gw_buf_append(&b, s + pos, len - pos) != 0)
            goto oom;
    }
    if (gw_buf_append(&b, "", 1) != 0)
        goto oom;
    *out_len = b.len - 1;
    *out = b.data; /* ownership moves to the caller */
    return 0;
oom:
    gw_buf_free(&b);
    set_error(w, "safety.error");
    return -1;
}

/*
 * Scans a string as it is written and, when it is base64 of text, as that text. A redaction
 * in the text is encoded back in the same form (alphabet, padding, data: prefix); when both
 * readings redact, neither rewrite would keep the other's, so the whole value is replaced.
 */
static int scan_value(struct walk *w, const char *s, size_t len, const char *key, size_t klen,
                      const struct safety_sibling_ref *sib, int fixed, char **out, size_t *out_len)
{
    char *lit = NULL, *dec = NULL;
    size_t lit_len = 0, dec_len = 0;
    struct safety_b64 b;
    *out = NULL;
    if (scan_one(w, s, len, key, klen, sib, fixed, &lit, &lit_len) != 0)
        return -1;
    int d = w->stop ? 0 : safety_base64_text(s, len, &b);
    if (d < 0) {
        free(lit);
        set_error(w, "safety.error");
        return -1;
    }
    if (d > 0) {
        int rc = scan_one(w, b.text, b.len, key, klen, sib, fixed, &dec, &dec_len);
        if (rc == 0 && dec) {
            struct gw_buf e = {0};
            int bad = lit ? gw_buf_append(&e, "[REDACTED]", 10) != 0
                          : gw_buf_append(&e, s, b.prefix) != 0 ||
                                safety_base64_encode(&e, &b, dec, dec_len) != 0;
            free(lit);
            lit = NULL;
            if (bad || gw_buf_append(&e, "", 1) != 0) {
                gw_buf_free(&e);
                rc = -1;
                set_error(w, "safety.error");
            } else {
                lit = e.data;
                lit_len = e.len - 1;
            }
        }
        free(dec);
        free(b.text);
        if (rc != 0) {
            free(lit);
            return -1;
        }
    }
    *out = lit;
    *out_len = lit_len;
    return 0;
}

static json_t *walk_node(struct walk *w, json_t *node, const char *key, size_t klen,
                         const struct safety_sibling_ref *sib, size_t depth);

/*
 * Before a member's string is rewritten, the object's labels are read as they were written,
 * when that string could be one of them: what the members see as labels does not depend on
 * which of them came first. (What a rewrite writes is never a label: a placeholder, a hash
 * and a mask all hold a bracket or an asterisk. A value with a digit, as nearly every
 * redacted one has, is not a label either, so its rewrite changes no label and reads none.)
 */
static void siblings_before_rewrite(struct walk *w, const struct safety_sibling_ref *sib,
                                    const json_t *node)
{
    if (sib && sib->set && sib->self == node &&
        safety_label_shaped(json_string_value(node), json_string_length(node)) &&
        safety_siblings_read(w->sc, sib->set) != 0)
        set_error(w, "safety.error");
}

static void walk_object(struct walk *w, json_t *obj, size_t depth)
{
    const char *k;
    json_t *v;
    struct rename {
        char *from, *to;
    } *renames = NULL;
    size_t n_ren = 0;
    void *tmp;
    /* The protocol's own member names (envelope; params, result, error) stay as they are. */
    int names_fixed = w->o->envelope && depth <= 1 ? FIXED : 0;
    /* The members' labels, read when a member first needs them (safety_scan.c). */
    struct safety_siblings sibs = {.object = obj};
    json_object_foreach_safe(obj, tmp, k, v)
    {
        if (w->stop)
            break;
        size_t klen = strlen(k);
        size_t saved = path_push_key(w, k, klen);
        char *nk = NULL;
        size_t nkl = 0;
        /* The member name itself may hold a value ({"123-45-6789": {...}}). */
        scan_value(w, k, klen, NULL, 0, NULL, names_fixed, &nk, &nkl);
        struct safety_sibling_ref ref = {.set = &sibs, .self = v};
        /* A number that is redacted becomes a string: a number is no label, so neither. */
        json_t *rep = walk_node(w, v, k, klen, &ref, depth + 1);
        /* Replacing the value of an existing member keeps the member (and k) in place. */
        if (rep && json_object_set_new(obj, k, rep) != 0)
            set_error(w, "safety.error");
        path_pop(w, saved);
        if (nk) {
            struct rename *r = realloc(renames, (n_ren + 1) * sizeof *r);
            if (r)
                renames = r;
            char *from = r ? strdup(k) : NULL;
            if (!from) {
                free(nk);
                set_error(w, "safety.error");
                break;
            }
            renames[n_ren].from = from;
            renames[n_ren].to = nk;
            n_ren++;
        }
    }
    for (size_t i = 0; i < n_ren; i++) {
        json_t *val = json_incref(json_object_get(obj, renames[i].from));
        json_object_del(obj, renames[i].from);
        /* Two names redacted alike must stay two members: number the later ones. */
        char *name = renames[i].to;
        char alt[600];
        for (int c = 2; json_object_get(obj, name) && c < 1000; c++) {
            snprintf(alt, sizeof alt, "%.500s#%d", renames[i].to, c);
            name = alt;
        }
        if (!val || json_object_set_new(obj, name, val) != 0)
            set_error(w, "safety.error");
        free(renames[i].from);
        free(renames[i].to);
    }
    free(renames);
}

/*
 * Walks one value. Returns a new value to put in its place (a number that was redacted
 * becomes the redaction string), or NULL when it stays (strings are rewritten in place).
 */
static json_t *walk_node(struct walk *w, json_t *node, const char *key, size_t klen,
                         const struct safety_sibling_ref *sib, size_t depth)
{
    if (w->stop || !node)
        return NULL;
    if (depth > w->sc->max_depth) {
        over_bound(w, "safety.too_deep");
        return NULL;
    }
    switch (json_typeof(node)) {
    case JSON_STRING: {
        char *rep = NULL;
        size_t rl = 0;
        scan_value(w, json_string_value(node), json_string_length(node), key, klen, sib,
                   value_fixed(w, depth), &rep, &rl);
        if (rep) {
            siblings_before_rewrite(w, sib, node);
            if (json_string_setn(node, rep, rl) != 0)
                set_error(w, "safety.error");
            free(rep);
        }
        return NULL;
    }
    case JSON_INTEGER:
    case JSON_REAL: {
        char num[64], *rep = NULL;
        const char *text = num;
        size_t rl = 0, nl;
        /* The joined pass made the decimal text already (formatting a real costs more than
         * scanning it). */
        const struct safety_prescan_entry *pe = safety_prescan_peek_number(w->pre, node);
        if (pe) {
            text = pe->orig;
            nl = pe->len;
        } else {
            nl = safety_number_text(node, num, sizeof num);
        }
        /* The root cannot be replaced by its parent: it is fixed. */
        int fixed = depth == 0 ? FIXED : value_fixed(w, depth);
        json_t *out = NULL;
        if (scan_one(w, text, nl, key, klen, sib, fixed, &rep, &rl) == 0 && rep &&
            !(out = json_stringn(rep, rl)))
            set_error(w, "safety.error");
        free(rep);
        return out;
    }
    case JSON_OBJECT:
        walk_object(w, node, depth);
        return NULL;
    case JSON_ARRAY:
        for (size_t i = 0; i < json_array_size(node) && !w->stop; i++) {
            size_t saved = path_push_index(w, i);
            /* Items of an array keep the array's member name and siblings as context
             * ("phones": [...]). */
            json_t *rep = walk_node(w, json_array_get(node, i), key, klen, sib, depth + 1);
            if (rep && json_array_set_new(node, i, rep) != 0)
                set_error(w, "safety.error");
            path_pop(w, saved);
        }
        return NULL;
    default:
        return NULL;
    }
}

/*
 * Adds the texts the walk will scan, in the order it scans them (a member's name, then its
 * value; array items in order), to the joined prefilter pass. What is past a bound is left
 * out: the walk reports the bound itself. Decoded base64 is not known yet and is scanned on
 * its own.
 */
static void collect(struct safety_prescan *p, const struct safety_config *sc, json_t *node,
                    size_t depth)
{
    if (!node || p->failed || depth > sc->max_depth)
        return;
    switch (json_typeof(node)) {
    case JSON_STRING:
        safety_prescan_add(p, json_string_value(node), json_string_length(node), NULL);
        return;
    case JSON_INTEGER:
    case JSON_REAL: {
        char num[64];
        size_t nl = safety_number_text(node, num, sizeof num);
        safety_prescan_add(p, num, nl, node);
        return;
    }
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        json_object_foreach(node, k, v)
        {
            safety_prescan_add(p, k, strlen(k), NULL);
            collect(p, sc, v, depth + 1);
        }
        return;
    }
    case JSON_ARRAY:
        for (size_t i = 0; i < json_array_size(node); i++)
            collect(p, sc, json_array_get(node, i), depth + 1);
        return;
    default:
        return;
    }
}

void safety_scan_json(const struct safety_config *sc, json_t *node, const char *path,
                      const struct safety_scan_opts *opts, struct gw_findings *findings,
                      struct safety_result *res)
{
    struct walk w = {.sc = sc, .o = opts, .f = findings, .res = res};
    copy_utf8(w.path, sizeof w.path, path ? path : "");
    w.plen = strlen(w.path);
    w.base = w.plen;
    if (!sc || !node)
        return;
    unsigned before = res->redactions;
    struct safety_prescan pre;
    safety_prescan_init(&pre, sc, *opts->budget);
    collect(&pre, sc, node, 0);
    safety_prescan_run(&pre);
    w.pre = &pre;
    json_t *rep = walk_node(&w, node, NULL, 0, NULL, 0);
    json_decref(rep); /* never set: a root number is fixed */
    safety_prescan_free(&pre);
    if (findings)
        findings->redactions += res->redactions - before;
}
