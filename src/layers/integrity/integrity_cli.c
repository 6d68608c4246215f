/*
 * `toolgate tools ...`: the operator's side of the quarantine. Decisions go to the pin store
 * with an event each; a running toolgate that uses the store puts the events on its audit
 * chain and sees the decision on the next list or call.
 */
#include "layers/integrity/integrity.h"

#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: toolgate tools list    --config F [--backend ROUTE/BACKEND] [--state S | --pending]\n"
    "                              [--format table|json]\n"
    "       toolgate tools diff    --config F --backend ROUTE/BACKEND [--kind K] NAME\n"
    "       toolgate tools approve --config F --backend ROUTE/BACKEND [--kind K] [--hash H] NAME\n"
    "       toolgate tools reject  --config F --backend ROUTE/BACKEND [--kind K] [--hash H] NAME\n"
    "       toolgate tools pin     --config F --key PRIVATE.pem --out MANIFEST.json\n"
    "                              [--backend ROUTE/BACKEND]\n"
    "ROUTE/BACKEND as `list` prints it; K: tool (default), prompt, resource, resource_template;\n"
    "S: approved, pending, rejected; H: at least 8 leading hex digits of the hash `diff` shows\n"
    "(approve only what you reviewed).\n";

static int usage(void)
{
    fputs(usage_text, stderr);
    return 2;
}

struct opts {
    const char *config, *backend, *state, *kind, *hash, *key, *out, *name, *format;
};

static void print_row(void *arg, const struct integrity_row *r)
{
    int json = *(int *)arg;
    if (json) {
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:s?}", "backend", r->backend, "kind",
                      r->kind, "name", r->name, "state", r->state, "reason", r->reason,
                      "approved_hash", r->approved_hash, "seen_hash", r->seen_hash);
        char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (line)
            printf("%s\n", line);
        free(line);
        json_decref(o);
        return;
    }
    const char *h = strcmp(r->state, "approved") == 0 ? r->approved_hash : r->seen_hash;
    printf("%-9s %-9s %-24s %-28s %.12s  %s\n", r->state, r->kind, r->backend, r->name, h ? h : "-",
           r->reason);
}

/* ---- diff: what awaits a decision against what was approved, member by member ---- */

static void show(const char *sign, const char *path, const json_t *v)
{
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    printf("%s %s: %s\n", sign, path[0] ? path : "/", t ? t : "?");
    free(t);
}

/* JSON Pointer of a member: '~' as ~0 and '/' as ~1 (RFC 6901). */
static void child_path(char *out, size_t len, const char *parent, const char *key)
{
    size_t n = (size_t)snprintf(out, len, "%s/", parent);
    for (const char *k = key; *k && n + 3 < len; k++) {
        if (*k == '~' || *k == '/') {
            out[n++] = '~';
            out[n++] = *k == '~' ? '0' : '1';
        } else {
            out[n++] = *k;
        }
    }
    out[n < len ? n : len - 1] = 0;
}

static int diff_json(const json_t *a, const json_t *b, const char *path, int depth)
{
    if (json_equal((json_t *)a, (json_t *)b))
        return 0;
    if (!json_is_object(a) || !json_is_object(b) || depth > 32) {
        if (a)
            show("-", path, a);
        if (b)
            show("+", path, b);
        return 1;
    }
    int n = 0;
    const char *k;
    json_t *v;
    char sub[1024];
    json_object_foreach((json_t *)a, k, v)
    {
        child_path(sub, sizeof sub, path, k);
        n += diff_json(v, json_object_get(b, k), sub, depth + 1);
    }
    json_object_foreach((json_t *)b, k, v)
    {
        if (json_object_get(a, k))
            continue;
        child_path(sub, sizeof sub, path, k);
        n += diff_json(NULL, v, sub, depth + 1);
    }
    return n;
}

struct diff_ctx {
    const char *kind, *name;
    int shown;
};

static void diff_row(void *arg, const struct integrity_row *r)
{
    struct diff_ctx *d = arg;
    if (strcmp(r->kind, d->kind) != 0 || strcmp(r->name, d->name) != 0)
        return;
    d->shown = 1;
    printf("%s %s on %s: %s (%s)\n", r->kind, r->name, r->backend, r->state, r->reason);
    if (r->seen_hash && (!r->approved_hash || strcmp(r->seen_hash, r->approved_hash) != 0))
        printf("awaiting: %s\n", r->seen_hash);
    if (r->approved_hash)
        printf("approved: %s\n", r->approved_hash);
    json_t *a = r->approved_def ? json_loads(r->approved_def, 0, NULL) : NULL;
    json_t *b = r->seen_def ? json_loads(r->seen_def, 0, NULL) : NULL;
    if (!a && r->approved_hash && strcmp(r->reason, "manifest") == 0)
        printf("(pinned by a manifest: its definition was not seen yet)\n");
    else if (!a)
        printf("(nothing of this name was ever approved: all of it is new)\n");
    if (a && b && diff_json(a, b, "", 0) == 0)
        printf("(no difference)\n");
    else if (!a && b)
        diff_json(NULL, b, "", 0);
    json_decref(a);
    json_decref(b);
}

/* Who decides: the account running the command (the audit event names it). */
static void operator_name(char *out, size_t len)
{
    struct passwd *pw = getpwuid(geteuid());
    snprintf(out, len, "cli:%s", pw && pw->pw_name ? pw->pw_name : "unknown");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    for (int i = 2; i < argc; i++) {
        const char **slot = !strcmp(argv[i], "--config")    ? &o->config
                            : !strcmp(argv[i], "--backend") ? &o->backend
                            : !strcmp(argv[i], "--state")   ? &o->state
                            : !strcmp(argv[i], "--kind")    ? &o->kind
                            : !strcmp(argv[i], "--hash")    ? &o->hash
                            : !strcmp(argv[i], "--key")     ? &o->key
                            : !strcmp(argv[i], "--out")     ? &o->out
                            : !strcmp(argv[i], "--format")  ? &o->format
                                                            : NULL;
        if (slot && i + 1 < argc)
            *slot = argv[++i];
        else if (!strcmp(argv[i], "--pending"))
            o->state = "pending";
        else if (!slot && argv[i][0] != '-' && !o->name)
            o->name = argv[i];
        else
            return -1;
    }
    return 0;
}

static int kind_ok(const char *k)
{
    for (size_t i = 0; i < INTEGRITY_N_KINDS; i++)
        if (strcmp(k, integrity_kinds[i].kind) == 0)
            return 1;
    return 0;
}

static int run(const char *cmd, const struct opts *o, struct integrity_store *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (!strcmp(cmd, "list")) {
        int json = o->format && !strcmp(o->format, "json");
        if (!json)
            printf("%-9s %-9s %-24s %-28s %-12s  %s\n", "STATE", "KIND", "BACKEND", "NAME", "HASH",
                   "REASON");
        if (integrity_store_rows(s, o->backend, o->state, print_row, &json) != 0) {
            fprintf(stderr, "cannot read the pins: %s\n", integrity_store_error(s));
            return 1;
        }
        return 0;
    }
    if (!strcmp(cmd, "diff")) {
        struct diff_ctx d = {o->kind, o->name, 0};
        if (integrity_store_rows(s, o->backend, NULL, diff_row, &d) != 0) {
            fprintf(stderr, "cannot read the pins: %s\n", integrity_store_error(s));
            return 1;
        }
        if (!d.shown)
            fprintf(stderr, "no %s named %s is pinned for %s\n", o->kind, o->name, o->backend);
        return d.shown ? 0 : 1;
    }
    if (!strcmp(cmd, "approve") || !strcmp(cmd, "reject")) {
        int approve = !strcmp(cmd, "approve");
        char by[96];
        operator_name(by, sizeof by);
        int r = integrity_store_decide(s, o->backend, o->kind, o->name, o->hash, approve, by, now);
        if (r == INTEGRITY_DECIDE_DONE) {
            printf("%s %s on %s: %s\n", o->kind, o->name, o->backend,
                   approve ? "approved" : "rejected");
            return 0;
        }
        if (r == INTEGRITY_DECIDE_STALE)
            fprintf(stderr,
                    "%s %s on %s: what awaits a decision is not the hash %s (the backend changed "
                    "it again?); see `toolgate tools diff`\n",
                    o->kind, o->name, o->backend, o->hash);
        else if (r == INTEGRITY_DECIDE_NOTHING)
            fprintf(stderr, "%s %s on %s: nothing awaits a decision by that name\n", o->kind,
                    o->name, o->backend);
        else
            fprintf(stderr, "%s %s on %s: the pin store failed: %s\n", o->kind, o->name, o->backend,
                    integrity_store_error(s));
        return 1;
    }
    char why[400];
    int n = integrity_manifest_write(s, o->backend, o->key, o->out, why, sizeof why);
    if (n < 0) {
        fprintf(stderr, "%s\n", why);
        return 1;
    }
    printf("wrote %d pins to %s\n", n, o->out);
    return 0;
}

int integrity_cli_main(int argc, char **argv)
{
    struct opts o = {0};
    const char *cmd = argc > 1 ? argv[1] : NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_text, stdout);
            return 0;
        }
    if (!cmd || parse_opts(argc, argv, &o) != 0 || !o.config)
        return usage();
    if (!o.kind)
        o.kind = "tool";
    int named = !strcmp(cmd, "diff") || !strcmp(cmd, "approve") || !strcmp(cmd, "reject");
    if (!kind_ok(o.kind) || (named && (!o.backend || !o.name)) ||
        (!named && strcmp(cmd, "list") && strcmp(cmd, "pin")) ||
        (!strcmp(cmd, "pin") && (!o.key || !o.out)) ||
        (o.state && strcmp(o.state, "approved") && strcmp(o.state, "pending") &&
         strcmp(o.state, "rejected")) ||
        (o.format && strcmp(o.format, "table") && strcmp(o.format, "json")))
        return usage();
    struct cfg_error err = {{0}};
    struct gw_config *cfg = gw_config_load(o.config, &err);
    if (!cfg) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const struct integrity_config *ic = integrity_config_of(cfg);
    char msg[512];
    struct integrity_store *s = NULL;
    int rc = 1;
    if (!ic || !ic->store_url)
        fprintf(stderr,
                "%s: integrity.store is memory: the pins live in the server's memory only\n",
                o.config);
    else if (!(s = integrity_store_open(ic->store_url, msg, sizeof msg)))
        fprintf(stderr, "%s\n", msg);
    else
        rc = run(cmd, &o, s);
    integrity_store_close(s);
    gw_config_free(cfg);
    return rc;
}
