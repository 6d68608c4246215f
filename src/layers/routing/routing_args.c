/*
 * routing_args: URL-valued tool arguments. Every string of the arguments of the tools
 * egress.url_tools names (or the pointers it lists) that looks like a URL is parsed by the
 * one URL parser and its host vetted like a backend's (routing.c does the lookups).
 */
#include "layers/layer.h"
#include "layers/routing/routing-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A URL argument denial: a tool result the model can act on. */
int routing_deny_arg(struct gw_decision *out, const char *arg, const char *what)
{
    char reason[sizeof out->reason];
    snprintf(reason, sizeof reason, "Argument %.60s: %.180s", arg[0] ? arg : "(arguments)", what);
    gw_decision_deny(out, 200, 0, "routing.ssrf", reason);
    return GW_DENY;
}

int routing_deny_arg_host(struct gw_decision *out, const char *arg, const char *host,
                          enum ssrf_class cls)
{
    char what[224];
    snprintf(what, sizeof what, "URLs to %.120s are not allowed (%s address).", host,
             ssrf_class_name(cls));
    return routing_deny_arg(out, arg, what);
}

/* ---- URL arguments ------------------------------------------------------------------------ */

struct arg_walk {
    struct job *job;
    const struct ssrf_allow *allow;
    size_t vetted;
    char path[80];
    char *const *skip; /* pointers a url_tools entry vetted already (NULL-terminated) */
};

static int skipped(const struct arg_walk *w)
{
    for (char *const *p = w->skip; p && *p; p++)
        if (strcmp(*p, w->path) == 0)
            return 1;
    return 0;
}

static int name_listed(char *const *names, const char *name)
{
    for (char *const *p = names; p && *p; p++) {
        size_t len = strlen(*p);
        if (len && (*p)[len - 1] == '*' ? strncmp(name, *p, len - 1) == 0 : strcmp(name, *p) == 0)
            return 1;
    }
    return 0;
}

static int tool_matches(const struct egress_url_tool *t, const char *name)
{
    for (char **p = t->tools; p && *p; p++) {
        size_t len = strlen(*p);
        if (len && (*p)[len - 1] == '*') {
            if (strncmp(name, *p, len - 1) == 0)
                return 1;
        } else if (strcmp(name, *p) == 0) {
            return 1;
        }
    }
    return 0;
}

static int vet_url(struct arg_walk *w, const char *s, size_t len, struct gw_decision *out)
{
    struct gw_url u;
    if (++w->vetted > w->job->ec->max_url_args)
        return routing_deny_arg(out, w->path, "too many URLs in one call (egress.max_url_args).");
    int rc = gw_url_parse(s, len, 0, &u);
    if (rc != GW_URL_OK) {
        char what[160];
        snprintf(what, sizeof what, "the URL is not allowed: it %s.", gw_url_error_text(rc));
        return routing_deny_arg(out, w->path, what);
    }
    enum ssrf_class cls;
    if (u.host_is_ip) {
        if (!ssrf_addr_allowed(w->allow, u.host, u.port, &u.ip, &cls))
            return routing_deny_arg_host(out, w->path, u.host, cls);
        return GW_PASS;
    }
    if (ssrf_name_is_localhost(u.host)) {
        /* RFC 6761: these names are loopback whatever DNS says; judge them as 127.0.0.1/::1. */
        struct gw_addr v4 = {.family = AF_INET, .bytes = {127, 0, 0, 1}};
        struct gw_addr v6 = {.family = AF_INET6, .bytes = {[15] = 1}};
        if (!ssrf_addr_allowed(w->allow, u.host, u.port, &v4, &cls) ||
            !ssrf_addr_allowed(w->allow, u.host, u.port, &v6, &cls))
            return routing_deny_arg_host(out, w->path, u.host, SSRF_LOOPBACK);
        return GW_PASS;
    }
    if (routing_add_lookup(w->job, &u, 0, w->allow, w->path) != 0)
        return routing_deny_arg(out, w->path, "too many different hosts in one call.");
    return GW_PASS;
}

/* Appends a pointer segment for display: plain characters only, bounded. */
static void path_push(char *path, size_t cap, const char *seg)
{
    size_t len = strlen(path);
    if (len + 2 >= cap)
        return;
    path[len++] = '/';
    for (const char *p = seg; *p && len + 1 < cap; p++) {
        char c = *p;
        int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
        path[len++] = plain ? c : '?';
    }
    path[len] = '\0';
}

/*
 * Every string under v: strict ones must be URLs; others are vetted when they look like one.
 * Arrays keep strictness for their strings; objects below do not.
 */
static int walk(struct arg_walk *w, const json_t *v, int strict, int depth, struct gw_decision *out)
{
    if (depth > ROUTING_MAX_ARG_DEPTH)
        return routing_deny_arg(out, w->path, "the arguments nest too deeply to check.");
    if (depth > 0 && skipped(w))
        return GW_PASS;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (strict || gw_url_looks_like(s, len))
            return vet_url(w, s, len, out);
        return GW_PASS;
    }
    char saved[sizeof w->path];
    memcpy(saved, w->path, sizeof saved);
    int rc = GW_PASS;
    if (json_is_array(v)) {
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            char idx[24];
            snprintf(idx, sizeof idx, "%zu", i);
            path_push(w->path, sizeof w->path, idx);
            rc = walk(w, item, strict, depth + 1, out);
            memcpy(w->path, saved, sizeof saved);
            if (rc != GW_PASS)
                break;
        }
    } else if (json_is_object(v)) {
        const char *key;
        const json_t *item;
        json_object_foreach((json_t *)v, key, item)
        {
            path_push(w->path, sizeof w->path, key);
            rc = walk(w, item, 0, depth + 1, out);
            memcpy(w->path, saved, sizeof saved);
            if (rc != GW_PASS)
                break;
        }
    }
    return rc;
}

/* RFC 6901 lookup in the arguments object. NULL when absent. */
static const json_t *pointer_get(const json_t *root, const char *ptr)
{
    const json_t *cur = root;
    const char *p = ptr;
    while (cur && *p) {
        char tok[257];
        size_t n = 0;
        p++; /* the '/' */
        while (*p && *p != '/' && n + 1 < sizeof tok) {
            if (p[0] == '~' && p[1] == '1') {
                tok[n++] = '/';
                p += 2;
            } else if (p[0] == '~' && p[1] == '0') {
                tok[n++] = '~';
                p += 2;
            } else {
                tok[n++] = *p++;
            }
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end = NULL;
            if (!n || (n > 1 && tok[0] == '0') || tok[0] < '0' || tok[0] > '9')
                return NULL;
            unsigned long idx = strtoul(tok, &end, 10);
            if (*end)
                return NULL;
            cur = json_array_get(cur, idx);
        } else {
            return NULL;
        }
    }
    return cur;
}

/*
 * Every tools/call: the url_tools entries that name the tool vet their pointers (strictly,
 * with their own allow lists) or everything; then every other string of the arguments that
 * looks like a URL is vetted with no private destination allowed, unless the tool is listed
 * in egress.url_exempt. Vetting is on for every tool by default: operators opt tools out.
 */
int routing_vet_arguments(struct job *job, const struct gw_request *req, struct gw_decision *out)
{
    const struct egress_config *ec = job->ec;
    static const struct ssrf_allow none = {0};
    if (!ec->url_args)
        return GW_PASS;
    struct arg_walk w = {.job = job};
    for (size_t m = 0; m < req->rpc.n; m++) {
        const struct mcp_message *msg = &req->rpc.msgs[m];
        if (!msg->method || strcmp(msg->method, "tools/call") != 0 || !msg->target ||
            !msg->arguments || name_listed(ec->url_exempt, msg->target))
            continue;
        int walked_all = 0;
        char *skip[EGRESS_MAX_LIST + 1];
        size_t n_skip = 0;
        for (size_t t = 0; t < ec->n_url_tools; t++) {
            const struct egress_url_tool *ut = &ec->url_tools[t];
            if (!tool_matches(ut, msg->target))
                continue;
            w.allow = &ut->allow;
            w.skip = NULL;
            int rc = GW_PASS;
            if (!ut->args) {
                w.path[0] = '\0';
                rc = walk(&w, msg->arguments, 0, 0, out);
                walked_all = 1;
            }
            for (char **a = ut->args; a && *a && rc == GW_PASS; a++) {
                if (n_skip < EGRESS_MAX_LIST)
                    skip[n_skip++] = *a;
                const json_t *v = pointer_get(msg->arguments, *a);
                if (!v || json_is_null(v))
                    continue;
                snprintf(w.path, sizeof w.path, "%s", *a);
                if (!json_is_string(v) && !json_is_array(v) && !json_is_object(v)) {
                    rc = routing_deny_arg(out, w.path, "expected a URL.");
                    break;
                }
                rc = walk(&w, v, 1, 0, out);
            }
            if (rc != GW_PASS)
                return rc;
        }
        if (walked_all)
            continue;
        skip[n_skip] = NULL;
        w.allow = &none;
        w.skip = skip;
        w.path[0] = '\0';
        int rc = walk(&w, msg->arguments, 0, 0, out);
        w.skip = NULL;
        if (rc != GW_PASS)
            return rc;
    }
    return GW_PASS;
}
