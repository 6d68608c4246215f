/*
 * `toolgate audit ...`: answers from the audit store.
 *
 *   verify STORE [STORE...] --pubkey F [--closed] [--live] [--instance I]
 *   query  STORE [--user U] [--tenant T] [--tool GLOB] [--decision D] [--since T]
 *                [--until T] [--instance I] [--limit N] [--format table|json|csv]
 *   stats  STORE [--since T] [--until T] [--format table|json] [--from-rows]
 *   export STORE --format jsonl|ocsf [--since T] [--until T]
 *
 * T is a duration back from now ("30d", "12h") or an RFC 3339 time/date. The store is
 * "sqlite:PATH", a bare PATH, or "postgres://...".
 */
#include "layers/audit/audit.h"
#include "layers/audit/audit_canon.h"
#include "layers/audit/audit_cli.h"
#include "layers/audit/audit_chain.h"
#include "layers/audit/audit_ocsf.h"
#include "layers/audit/audit_store.h"
#include "layers/audit/audit_verify.h"

#include "lib/timeutil.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct cli_opts {
    const char *stores[64];
    size_t n_stores;
    const char *pubkey, *user, *tenant, *tool, *decision, *since, *until, *instance, *format;
    const char *state;
    int live, closed, all_signatures, progress, since_checkpoint;
    int from_rows; /* stats: count the rows, not the day counters */
    uint64_t limit;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: toolgate audit <command> STORE [options]\n"
            "  verify STORE [STORE...] --pubkey FILE [--closed] [--live] [--instance I]\n"
            "              [--all-signatures] [--progress] [--since-checkpoint [--state F]]\n"
            "      check hashes, seq, signatures, time order; files of a rotated chain in order;\n"
            "      in a whole run also that the stats day counters match the records;\n"
            "      --closed: the chain must end at the closing checkpoint of a clean stop;\n"
            "      --live: accept unsigned records at the end (stores of earlier versions);\n"
            "      --all-signatures: check every checkpoint's signature, not only the last\n"
            "      (which covers the others); --progress: report on stderr (default on a tty);\n"
            "      --since-checkpoint: read only what follows the checkpoint verified last\n"
            "      time, kept in F (default PATH.verified next to a SQLite store)\n"
            "  query STORE [--user U] [--tenant T] [--tool GLOB] [--decision allow|deny|error]\n"
            "              [--since 30d|RFC3339] [--until ...] [--instance I] [--limit N]\n"
            "              [--format table|json|csv]\n"
            "  stats STORE [--since 1d] [--until ...] [--format table|json] [--from-rows]\n"
            "      --from-rows: count the records themselves, not the day counters the store\n"
            "      keeps for stats (derived data, not covered by verify)\n"
            "  export STORE --format jsonl|ocsf [--since ...] [--until ...]\n"
            "  migrate FROM TO: copy every record into a new store in the compact format\n"
            "STORE: sqlite:PATH, PATH, or postgres://...\n");
}

/* Parses "30d" (back from now) or an RFC 3339 date/time into ns since the epoch. */
static int parse_when(const char *s, int64_t *out)
{
    uint64_t d;
    if (gw_parse_duration_ns(s, &d) == 0) {
        uint64_t now = gw_now_ns();
        *out = d >= now ? 1 : (int64_t)(now - d);
        return 0;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = strptime(s, "%Y-%m-%d", &tm);
    if (!p)
        return -1;
    int64_t frac = 0;
    long offset = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p = strptime(p + 1, "%H:%M:%S", &tm);
        if (!p)
            return -1;
        if (*p == '.') {
            int64_t scale = 100000000;
            for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
                frac += scale * (*p - '0');
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int hh, mm;
            if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
                return -1;
            offset = (hh * 3600 + mm * 60) * (*p == '+' ? 1 : -1);
            p += 6;
        } else {
            return -1;
        }
    }
    if (*p)
        return -1;
    time_t t = timegm(&tm);
    *out = ((int64_t)t - offset) * 1000000000ll + frac;
    return 0;
}

const char *audit_cli_store_url(const char *arg, char *buf, size_t len)
{
    if (strncmp(arg, "sqlite:", 7) == 0 || strncmp(arg, "postgres://", 11) == 0 ||
        strncmp(arg, "postgresql://", 13) == 0)
        return arg;
    snprintf(buf, len, "sqlite:%s", arg);
    return buf;
}

static int parse_opts(int argc, char **argv, struct cli_opts *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "--live") == 0) {
            o->live = 1;
            continue;
        }
        if (strcmp(a, "--closed") == 0) {
            o->closed = 1;
            continue;
        }
        if (strcmp(a, "--from-rows") == 0) {
            o->from_rows = 1;
            continue;
        }
        if (strcmp(a, "--all-signatures") == 0) {
            o->all_signatures = 1;
            continue;
        }
        if (strcmp(a, "--progress") == 0) {
            o->progress = 1;
            continue;
        }
        if (strcmp(a, "--since-checkpoint") == 0) {
            o->since_checkpoint = 1;
            continue;
        }
        if (strcmp(a, "--pubkey") == 0)
            slot = &o->pubkey;
        else if (strcmp(a, "--user") == 0)
            slot = &o->user;
        else if (strcmp(a, "--tenant") == 0)
            slot = &o->tenant;
        else if (strcmp(a, "--tool") == 0)
            slot = &o->tool;
        else if (strcmp(a, "--decision") == 0)
            slot = &o->decision;
        else if (strcmp(a, "--since") == 0)
            slot = &o->since;
        else if (strcmp(a, "--until") == 0)
            slot = &o->until;
        else if (strcmp(a, "--instance") == 0)
            slot = &o->instance;
        else if (strcmp(a, "--format") == 0)
            slot = &o->format;
        else if (strcmp(a, "--state") == 0)
            slot = &o->state;
        else if (strcmp(a, "--limit") == 0) {
            if (i + 1 >= argc)
                goto missing;
            o->limit = strtoull(argv[++i], NULL, 10);
            continue;
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "toolgate audit: unknown option %s\n", a);
            usage(stderr);
            return -1;
        } else {
            if (o->n_stores >= sizeof o->stores / sizeof o->stores[0]) {
                fprintf(stderr, "toolgate audit: too many stores\n");
                return -1;
            }
            o->stores[o->n_stores++] = a;
            continue;
        }
        if (i + 1 >= argc)
            goto missing;
        *slot = argv[++i];
    }
    if (o->n_stores == 0) {
        fprintf(stderr, "toolgate audit %s: name the store (sqlite:PATH or postgres://...)\n",
                argv[1]);
        return -1;
    }
    return 0;
missing:
    fprintf(stderr, "toolgate audit: %s needs a value\n", argv[argc - 1]);
    return -1;
}

static struct audit_store *open_store(const char *arg)
{
    char buf[4200], err[512];
    struct audit_store *st =
        audit_store_open(audit_cli_store_url(arg, buf, sizeof buf), 0, err, sizeof err);
    if (!st)
        fprintf(stderr, "toolgate audit: %s\n", err);
    return st;
}

struct verify_progress {
    uint64_t t0;
};

static void show_progress(const struct audit_verifier *v, void *arg)
{
    struct verify_progress *p = arg;
    double secs = (double)(gw_mono_ns() - p->t0) / 1e9;
    fprintf(stderr, "\rverified %llu records (%.0f/s)", (unsigned long long)v->rows,
            secs > 0 ? (double)v->rows / secs : 0);
    fflush(stderr);
}

#define STATE_HEADER "toolgate-audit-verified 1\n"

/* The state file of --since-checkpoint: where, and the checkpoint it holds (if any). */
static const char *state_path(const struct cli_opts *o, char *buf, size_t len)
{
    if (o->state)
        return o->state;
    char url[4200];
    const char *path = audit_store_sqlite_path(audit_cli_store_url(o->stores[0], url, sizeof url));
    if (!path)
        return NULL;
    snprintf(buf, len, "%s.verified", path);
    return buf;
}

/* Loads the saved checkpoint into v. 1 loaded, 0 no state yet, -1 refused (printed). */
static int load_state(struct audit_verifier *v, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char *line = NULL, err[300];
    size_t cap = 0;
    int rc = -1;
    ssize_t n;
    if ((n = getline(&line, &cap, f)) < 0 || strcmp(line, STATE_HEADER) != 0 ||
        (n = getline(&line, &cap, f)) < 2 || line[n - 1] != '\n') {
        fprintf(stderr, "toolgate audit verify: %s is not a verification state file\n", path);
        goto out;
    }
    line[--n] = '\0';
    char *tab = strchr(line, '\t');
    if (!tab) {
        fprintf(stderr, "toolgate audit verify: %s is not a verification state file\n", path);
        goto out;
    }
    *tab = '\0';
    if (audit_verifier_trust(v, line, tab + 1, (size_t)(line + n - tab - 1), err, sizeof err)) {
        fprintf(stderr, "toolgate audit verify: %s: %s\n", path, err);
        goto out;
    }
    rc = 1;
out:
    free(line);
    fclose(f);
    return rc;
}

/* Saves the last checkpoint verified (one instance only), replacing the file atomically. */
static void save_state(const struct audit_verifier *v, const char *path)
{
    if (v->n_inst != 1 || !v->inst[0].last_cp_len) {
        fprintf(stderr, "toolgate audit verify: no state saved (one instance's chain is kept; "
                        "name it with --instance)\n");
        return;
    }
    char tmp[4400];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return;
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(STATE_HEADER, f) >= 0 &&
             fprintf(f, "%s\t%.*s\n", v->inst[0].name, (int)v->inst[0].last_cp_len,
                     v->inst[0].last_cp) > 0;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "toolgate audit verify: cannot save the state to %s\n", path);
        unlink(tmp);
    }
}

static int cmd_verify(const struct cli_opts *o)
{
    struct verify_progress prog = {gw_mono_ns()};
    char err[512];
    int rc = 2;
    if (!o->pubkey) {
        fprintf(stderr, "toolgate audit verify: --pubkey FILE is required (the .pub next to "
                        "the signing key)\n");
        return 2;
    }
    EVP_PKEY *pub = audit_key_load_public(o->pubkey, err, sizeof err);
    if (!pub) {
        fprintf(stderr, "toolgate audit verify: %s\n", err);
        return 2;
    }
    struct audit_verifier v;
    char counters_bad[300] = "", counters_store[300] = "";
    if (audit_verifier_init(&v, pub, o->live) != 0)
        goto out;
    v.instance = o->instance;
    v.closed = o->closed;
    v.all_signatures = o->all_signatures;
    char statebuf[4300];
    const char *state = o->since_checkpoint ? state_path(o, statebuf, sizeof statebuf) : NULL;
    if (o->since_checkpoint) {
        if (!state) {
            fprintf(stderr, "toolgate audit verify: --since-checkpoint needs --state FILE here\n");
            goto out_v;
        }
        if (o->n_stores != 1) {
            fprintf(stderr, "toolgate audit verify: --since-checkpoint reads one store\n");
            goto out_v;
        }
        int l = load_state(&v, state);
        if (l < 0) {
            rc = 1;
            goto out_v;
        }
        if (l == 0)
            fprintf(stderr, "toolgate audit verify: no state in %s yet: verifying everything\n",
                    state);
    }
    if (o->progress || isatty(STDERR_FILENO)) {
        v.progress = show_progress;
        v.progress_arg = &prog;
    }
    for (size_t i = 0; i < o->n_stores; i++) {
        struct audit_store *st = open_store(o->stores[i]);
        if (!st)
            goto out_v;
        int f = audit_verifier_feed(&v, st);
        if (f < 0)
            fprintf(stderr, "toolgate audit verify: %s\n", st->err);
        /*
         * The stats counters are derived from the records, not covered by the chain: they
         * are compared with the records here (a whole run only: incremental runs read the
         * tail, the comparison reads every decision).
         */
        if (f == 0 && !o->since_checkpoint && !counters_bad[0] && st->ops->check_counters) {
            int c = st->ops->check_counters(st, counters_bad, sizeof counters_bad);
            if (c < 0) {
                fprintf(stderr, "toolgate audit verify: %s\n", st->err);
                f = -1;
            } else if (c > 0)
                snprintf(counters_store, sizeof counters_store, "%s", o->stores[i]);
            else
                counters_bad[0] = '\0';
        }
        st->ops->close(st);
        if (f < 0)
            goto out_v;
        if (f > 0)
            break;
    }
    if (v.progress && v.rows >= 65536)
        fputc('\n', stderr);
    rc = audit_verifier_finish(&v) == 0 ? 0 : 1;
    audit_verifier_report(&v, rc == 0 ? stdout : stderr);
    if (rc == 0 && counters_bad[0]) {
        /* The records are intact; what stats answers from in this store is not. */
        fprintf(stderr,
                "FAIL stats counters of %s: %s; `audit stats --from-rows` counts the records\n",
                counters_store, counters_bad);
        fprintf(stdout, "audit log intact, its stats counters NOT\n");
        rc = 1;
    } else if (rc != 0)
        fprintf(stdout, "audit log NOT intact\n");
    else
        fprintf(stdout, "audit log intact%s\n",
                v.trusted.record ? " after the checkpoint verified last time" : "");
    if (rc == 0 && state)
        save_state(&v, state);
out_v:
    audit_verifier_free(&v);
out:
    EVP_PKEY_free(pub);
    return rc;
}

/* Output helpers: terminal and CSV output never carry raw control characters. */
static void put_plain(FILE *out, const char *s, int width)
{
    int n = 0;
    for (; s && *s && (width <= 0 || n < width); s++, n++)
        fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, out);
    for (; width > 0 && n < width; n++)
        fputc(' ', out);
}

static void put_csv(FILE *out, const char *s)
{
    if (!s)
        return;
    fputc('"', out);
    /* A leading formula character would run as a formula in spreadsheets. */
    if (strchr("=+-@\t\r", s[0]) && s[0])
        fputc('\'', out);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc((unsigned char)*s < 0x20 && *s != '\t' ? ' ' : *s, out);
    }
    fputc('"', out);
}

struct scan_ctx {
    const struct cli_opts *o;
    FILE *out;
    uint64_t n;
    int first;
    int format; /* 0 table, 1 json, 2 csv, 3 jsonl, 4 ocsf */
    int failed;
    /* stats */
    struct counter *by[4];
    size_t n_by[4], cap_by[4];
};

struct counter {
    char *key;
    uint64_t n;
};

static json_t *full_record(const struct audit_row *r)
{
    if (r->problem) {
        /* Answers go on; the damage is said, and verify says more. */
        fprintf(stderr, "toolgate audit: instance %s seq %llu skipped: %s (run verify)\n",
                r->instance, (unsigned long long)r->seq, r->problem);
        return NULL;
    }
    json_t *rec = json_loadb(r->record, r->record_len, JSON_REJECT_DUPLICATES, NULL);
    if (rec)
        json_object_set_new(rec, "hash", json_string(r->hash));
    return rec;
}

static int row_matches(const struct scan_ctx *c, const struct audit_row *r)
{
    if (c->o->tool && (!r->tool || fnmatch(c->o->tool, r->tool, 0) != 0))
        return 0;
    return 1;
}

static void join_strings(const json_t *a, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v))
            continue;
        int n = snprintf(out + used, len - used, "%s%s", used ? " " : "", json_string_value(v));
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
    }
}

static int query_row(const struct audit_row *r, void *arg)
{
    struct scan_ctx *c = arg;
    if (!row_matches(c, r))
        return 0;
    if (c->o->limit && c->n >= c->o->limit)
        return 1;
    json_t *rec = full_record(r);
    if (!rec)
        return 0;
    c->n++;
    const char *time = json_string_value(json_object_get(rec, "time"));
    const char *reason = json_string_value(json_object_get(rec, "reason_code"));
    char rules[256];
    join_strings(json_object_get(rec, "rule_ids"), rules, sizeof rules);
    if (c->format == 1) {
        struct gw_buf b = {0};
        if (audit_canon_append(&b, rec) == 0)
            fprintf(c->out, "%s%s", c->first ? "[\n" : ",\n", b.data);
        c->first = 0;
        gw_buf_free(&b);
    } else if (c->format == 2) {
        const char *cols[] = {time,        r->request_id,
                              r->decision, r->layer,
                              reason,      r->subject,
                              r->tenant,   json_string_value(json_object_get(rec, "client_id")),
                              r->tool,     rules};
        for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
            if (i)
                fputc(',', c->out);
            put_csv(c->out, cols[i]);
        }
        fputc('\n', c->out);
    } else {
        put_plain(c->out, time, 30);
        fputc(' ', c->out);
        put_plain(c->out, r->decision, 6);
        fputc(' ', c->out);
        put_plain(c->out, r->layer ? r->layer : "-", 8);
        fputc(' ', c->out);
        put_plain(c->out, r->subject ? r->subject : "-", 20);
        fputc(' ', c->out);
        put_plain(c->out, r->tenant ? r->tenant : "-", 12);
        fputc(' ', c->out);
        put_plain(c->out, r->tool ? r->tool : "-", 28);
        fputc(' ', c->out);
        put_plain(c->out, reason ? reason : "-", 0);
        fputc('\n', c->out);
    }
    json_decref(rec);
    return 0;
}

static int setup_filter(const struct cli_opts *o, struct audit_filter *f, const char *kind)
{
    memset(f, 0, sizeof *f);
    f->kind = kind;
    f->instance = o->instance;
    f->subject = o->user;
    f->tenant = o->tenant;
    f->decision = o->decision;
    f->tool_glob = o->tool;
    if (o->decision && strcmp(o->decision, "allow") && strcmp(o->decision, "deny") &&
        strcmp(o->decision, "error")) {
        fprintf(stderr, "toolgate audit: --decision is allow, deny or error\n");
        return -1;
    }
    if (o->since && parse_when(o->since, &f->since_ns) != 0) {
        fprintf(stderr, "toolgate audit: --since \"%s\" is not a duration (30d) or RFC 3339 time\n",
                o->since);
        return -1;
    }
    if (o->until && parse_when(o->until, &f->until_ns) != 0) {
        fprintf(stderr, "toolgate audit: --until \"%s\" is not a duration or RFC 3339 time\n",
                o->until);
        return -1;
    }
    return 0;
}

static int cmd_query(const struct cli_opts *o)
{
    struct scan_ctx c = {.o = o, .out = stdout, .first = 1};
    struct audit_filter f;
    if (setup_filter(o, &f, "decision") != 0)
        return 2;
    if (!o->format || strcmp(o->format, "table") == 0)
        c.format = 0;
    else if (strcmp(o->format, "json") == 0)
        c.format = 1;
    else if (strcmp(o->format, "csv") == 0)
        c.format = 2;
    else {
        fprintf(stderr, "toolgate audit query: --format is table, json or csv\n");
        return 2;
    }
    /*
     * Time order: the store answers from its decision indexes without sorting. The table and
     * CSV show no chain links (json prints whole records, prev_hash included).
     */
    f.flags = AUDIT_SCAN_ANY_ORDER | (c.format != 1 ? AUDIT_SCAN_NO_CHAIN : 0);
    struct audit_store *st = open_store(o->stores[0]);
    if (!st)
        return 2;
    if (c.format == 0)
        fprintf(c.out, "%-30s %-6s %-8s %-20s %-12s %-28s %s\n", "TIME", "RESULT", "LAYER", "USER",
                "TENANT", "TOOL", "REASON");
    else if (c.format == 2)
        fprintf(c.out, "time,request_id,decision,layer,reason_code,subject,tenant,client_id,"
                       "tool,rule_ids\n");
    int rc = st->ops->scan(st, &f, query_row, &c);
    if (rc < 0)
        fprintf(stderr, "toolgate audit query: %s\n", st->err);
    if (c.format == 1)
        fprintf(c.out, "%s]\n", c.first ? "[" : "\n");
    st->ops->close(st);
    return rc < 0 ? 2 : 0;
}

static uint64_t key_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Counts key in dimension dim: an open-addressing table, grown at half full. */
static int count(struct scan_ctx *c, int dim, const char *key)
{
    if (!key)
        key = "-";
    if ((c->n_by[dim] + 1) * 2 > c->cap_by[dim]) {
        size_t cap = c->cap_by[dim] ? c->cap_by[dim] * 2 : 64;
        struct counter *n = calloc(cap, sizeof *n);
        if (!n)
            return -1;
        for (size_t i = 0; i < c->cap_by[dim]; i++) {
            struct counter *old = &c->by[dim][i];
            if (!old->key)
                continue;
            size_t j = key_hash(old->key) & (cap - 1);
            while (n[j].key)
                j = (j + 1) & (cap - 1);
            n[j] = *old;
        }
        free(c->by[dim]);
        c->by[dim] = n;
        c->cap_by[dim] = cap;
    }
    size_t mask = c->cap_by[dim] - 1, j = key_hash(key) & mask;
    for (; c->by[dim][j].key; j = (j + 1) & mask)
        if (strcmp(c->by[dim][j].key, key) == 0) {
            c->by[dim][j].n++;
            return 0;
        }
    char *k = strdup(key);
    if (!k)
        return -1;
    c->by[dim][j] = (struct counter){k, 1};
    c->n_by[dim]++;
    return 0;
}

static int stats_row(const struct audit_row *r, void *arg)
{
    struct scan_ctx *c = arg;
    if (!row_matches(c, r))
        return 0;
    c->n++;
    if (count(c, 0, r->decision) || count(c, 1, r->layer) || count(c, 2, r->tool) ||
        count(c, 3, r->subject))
        return -1;
    return 0;
}

/* Adds n to key's count (count() adds one). */
static int count_n(struct scan_ctx *c, int dim, const char *key, uint64_t n)
{
    if (count(c, dim, key) != 0)
        return -1;
    size_t mask = c->cap_by[dim] - 1, j = key_hash(key) & mask;
    for (; c->by[dim][j].key; j = (j + 1) & mask)
        if (strcmp(c->by[dim][j].key, key) == 0) {
            c->by[dim][j].n += n - 1;
            break;
        }
    return 0;
}

static void tally_cb(void *arg, int dim, const char *name, uint64_t n)
{
    struct scan_ctx *c = arg;
    if (dim == 0)
        c->n += n;
    if (count_n(c, dim, name, n) != 0)
        c->failed = 1;
}

static int counter_cmp(const void *a, const void *b)
{
    const struct counter *x = a, *y = b;
    if (x->n != y->n)
        return x->n > y->n ? -1 : 1;
    return strcmp(x->key, y->key);
}

static int cmd_stats(const struct cli_opts *o)
{
    static const char *const dims[4] = {"decision", "layer", "tool", "user"};
    struct scan_ctx c = {.o = o, .out = stdout};
    struct audit_filter f;
    int json = o->format && strcmp(o->format, "json") == 0;
    if (o->format && !json && strcmp(o->format, "table") != 0) {
        fprintf(stderr, "toolgate audit stats: --format is table or json\n");
        return 2;
    }
    if (setup_filter(o, &f, "decision") != 0)
        return 2;
    /* Counting needs the columns only, in any order: the store answers from an index. */
    f.flags =
        AUDIT_SCAN_NO_RECORD | AUDIT_SCAN_ANY_ORDER | (o->from_rows ? AUDIT_SCAN_ROWS_ONLY : 0);
    struct audit_store *st = open_store(o->stores[0]);
    if (!st)
        return 2;
    int rc = st->ops->tally ? st->ops->tally(st, &f, tally_cb, &c) : 1;
    if (rc == 1)
        rc = st->ops->scan(st, &f, stats_row, &c);
    if (rc == 0 && c.failed)
        rc = 1;
    if (rc != 0)
        fprintf(stderr, "toolgate audit stats: %s\n", rc < 0 ? st->err : "out of memory");
    st->ops->close(st);
    json_t *doc = json ? json_pack("{s:I}", "total", (json_int_t)c.n) : NULL;
    if (!json)
        printf("total %llu\n", (unsigned long long)c.n);
    for (int d = 0; d < 4; d++) {
        /* Pack the table's entries to the front, then sort them by count. */
        size_t used = 0;
        for (size_t i = 0; i < c.cap_by[d]; i++)
            if (c.by[d][i].key)
                c.by[d][used++] = c.by[d][i];
        if (used)
            qsort(c.by[d], used, sizeof *c.by[d], counter_cmp);
        json_t *obj = json ? json_object() : NULL;
        if (!json)
            printf("\nby %s:\n", dims[d]);
        for (size_t i = 0; i < used; i++) {
            if (json)
                json_object_set_new(obj, c.by[d][i].key, json_integer((json_int_t)c.by[d][i].n));
            else {
                printf("  %10llu  ", (unsigned long long)c.by[d][i].n);
                put_plain(stdout, c.by[d][i].key, 0);
                putchar('\n');
            }
            free(c.by[d][i].key);
        }
        free(c.by[d]);
        if (json)
            json_object_set_new(doc, dims[d], obj);
    }
    if (json) {
        struct gw_buf b = {0};
        if (audit_canon_append(&b, doc) == 0)
            printf("%s\n", b.data);
        gw_buf_free(&b);
        json_decref(doc);
    }
    return rc != 0 ? 2 : 0;
}

static int export_row(const struct audit_row *r, void *arg)
{
    struct scan_ctx *c = arg;
    if (!row_matches(c, r))
        return 0;
    if (c->format == 4 &&
        (!r->kind || (strcmp(r->kind, "decision") != 0 && strcmp(r->kind, "completion") != 0)))
        return 0;
    json_t *rec = full_record(r);
    if (!rec)
        return 0;
    json_t *ev = rec;
    if (c->format == 4) {
        ev = audit_ocsf_event(rec);
        json_decref(rec);
        if (!ev)
            return -1;
    }
    struct gw_buf b = {0};
    if (audit_canon_append(&b, ev) == 0)
        fprintf(c->out, "%s\n", b.data);
    gw_buf_free(&b);
    json_decref(ev);
    c->n++;
    return 0;
}

static int cmd_export(const struct cli_opts *o)
{
    struct scan_ctx c = {.o = o, .out = stdout};
    struct audit_filter f;
    if (!o->format || (strcmp(o->format, "jsonl") && strcmp(o->format, "ocsf"))) {
        fprintf(stderr, "toolgate audit export: --format jsonl or --format ocsf\n");
        return 2;
    }
    c.format = strcmp(o->format, "ocsf") == 0 ? 4 : 3;
    /* OCSF events describe calls (decision and completion records; export_row skips the
     * others). jsonl exports every record. */
    if (setup_filter(o, &f, NULL) != 0)
        return 2;
    struct audit_store *st = open_store(o->stores[0]);
    if (!st)
        return 2;
    int rc = st->ops->scan(st, &f, export_row, &c);
    if (rc != 0)
        fprintf(stderr, "toolgate audit export: %s\n", rc < 0 ? st->err : "out of memory");
    st->ops->close(st);
    return rc != 0 ? 2 : 0;
}

int audit_cli_main(int argc, char **argv)
{
    struct cli_opts o;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    if (strcmp(argv[1], "migrate") == 0)
        return audit_cli_migrate(argc, argv);
    static const char *const commands[] = {"verify", "query", "stats", "export", NULL};
    int known = 0;
    for (const char *const *c = commands; *c; c++)
        known |= strcmp(argv[1], *c) == 0;
    if (!known) {
        fprintf(stderr, "toolgate audit: unknown command \"%s\"\n", argv[1]);
        usage(stderr);
        return 2;
    }
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    if (strcmp(argv[1], "verify") == 0)
        return cmd_verify(&o);
    if (strcmp(argv[1], "query") == 0)
        return cmd_query(&o);
    if (strcmp(argv[1], "stats") == 0)
        return cmd_stats(&o);
    if (strcmp(argv[1], "export") == 0)
        return cmd_export(&o);
    fprintf(stderr, "toolgate audit: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
