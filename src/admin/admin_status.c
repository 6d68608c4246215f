/* admin_status: `toolgate status`, a terminal summary of the admin listener's /admin/status. */
#include "admin/admin.h"
#include "lib/buf.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_MAX_ANSWER (1u << 20)
#define TOKEN_MAX 4096

static void usage(FILE *out)
{
    fprintf(out, "usage: toolgate status --admin URL [--token-file FILE]\n"
                 "  what the gateway behind an admin listener is doing: build, uptime, the\n"
                 "  configuration it runs, its routes and readiness checks\n"
                 "  URL: the admin listener's origin, e.g. http://127.0.0.1:9090\n"
                 "  exit 0 when ready, 1 when not ready or draining, 2 when it cannot be asked\n");
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct gw_buf *b = arg;
    size_t len = size * n;
    if (b->len + len > STATUS_MAX_ANSWER || gw_buf_append(b, data, len) != 0)
        return 0;
    return len;
}

/* The token file's first line, trimmed; NULL (with a message) when it cannot be read. */
static char *read_token(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "toolgate status: cannot read %s\n", path);
        return NULL;
    }
    char *t = calloc(1, TOKEN_MAX + 1);
    size_t n = t ? fread(t, 1, TOKEN_MAX, f) : 0;
    fclose(f);
    if (!t)
        return NULL;
    t[n] = '\0';
    t[strcspn(t, "\r\n")] = '\0';
    size_t len = strlen(t);
    while (len > 0 && (t[len - 1] == ' ' || t[len - 1] == '\t'))
        t[--len] = '\0';
    char *start = t + strspn(t, " \t");
    memmove(t, start, strlen(start) + 1);
    return t;
}

static void print_duration(long long s)
{
    if (s >= 86400)
        printf("%lldd%lldh", s / 86400, (s % 86400) / 3600);
    else if (s >= 3600)
        printf("%lldh%lldm", s / 3600, (s % 3600) / 60);
    else if (s >= 60)
        printf("%lldm%llds", s / 60, s % 60);
    else
        printf("%llds", s);
}

static void print_status(const json_t *st)
{
    const char *state = json_string_value(json_object_get(st, "status"));
    printf("toolgate %s (%s): %s, up ", json_string_value(json_object_get(st, "version")),
           json_string_value(json_object_get(st, "revision")), state ? state : "?");
    print_duration((long long)json_integer_value(json_object_get(st, "uptime_s")));
    printf("\n");
    const json_t *cfg = json_object_get(st, "config");
    const char *path = json_string_value(json_object_get(cfg, "path"));
    const char *sha = json_string_value(json_object_get(cfg, "sha256"));
    printf("config:  %s (sha256 %.12s)\n", path ? path : "(not from a file)", sha ? sha : "");
    const json_t *rl = json_object_get(st, "reload");
    if (json_is_object(rl)) {
        const json_t *last = json_object_get(rl, "last");
        printf("reload:  generation %lld",
               (long long)json_integer_value(json_object_get(rl, "generation")));
        if (json_is_object(last)) {
            const char *msg = json_string_value(json_object_get(last, "message"));
            printf(", last %s: %s", json_is_true(json_object_get(last, "ok")) ? "ok" : "FAILED",
                   msg ? msg : "");
        }
        printf("%s\n", json_is_true(json_object_get(rl, "running")) ? " (one running)" : "");
    }
    printf("routes:\n");
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(cfg, "routes"), i, r)
    {
        printf("  %-16s %-16s %-10s", json_string_value(json_object_get(r, "name")),
               json_string_value(json_object_get(r, "path")),
               json_string_value(json_object_get(r, "kind")));
        size_t k;
        const json_t *b;
        json_array_foreach(json_object_get(r, "backends"), k, b)
        {
            long long n = (long long)json_integer_value(json_object_get(b, "endpoints"));
            printf("%s%s (%lld endpoint%s, %s)", k ? ", " : "",
                   json_string_value(json_object_get(b, "name")), n, n == 1 ? "" : "s",
                   json_string_value(json_object_get(b, "protocol")));
        }
        printf("\n");
    }
    printf("checks:\n");
    const char *name;
    const json_t *c;
    json_object_foreach((json_t *)json_object_get(st, "checks"), name, c)
    {
        const char *cs = json_string_value(json_object_get(c, "state"));
        const char *detail = json_string_value(json_object_get(c, "detail"));
        printf("  %-16s %-8s%s%s\n", name, cs ? cs : "?", detail ? " " : "", detail ? detail : "");
    }
}

int admin_status_main(int argc, char **argv)
{
    const char *admin = NULL, *token_file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--admin") && i + 1 < argc) {
            admin = argv[++i];
        } else if (!strcmp(argv[i], "--token-file") && i + 1 < argc) {
            token_file = argv[++i];
        } else {
            fprintf(stderr, "toolgate status: unknown option %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!admin) {
        usage(stderr);
        return 2;
    }
    char *token = token_file ? read_token(token_file) : NULL;
    if (token_file && !token)
        return 2;
    struct gw_buf url = {0}, auth = {0}, body = {0};
    size_t al = strlen(admin);
    while (al > 0 && admin[al - 1] == '/')
        al--;
    int rc = 2;
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    if (!h || gw_buf_append(&url, admin, al) || gw_buf_append(&url, "/admin/status", 14))
        goto out;
    if (token) {
        if (gw_buf_printf(&auth, "Authorization: Bearer %s", token) != 0)
            goto out;
        hdrs = curl_slist_append(NULL, auth.data);
    }
    curl_easy_setopt(h, CURLOPT_URL, url.data);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    if (hdrs)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK) {
        fprintf(stderr, "toolgate status: cannot reach %.*s: %s\n", (int)al, admin,
                curl_easy_strerror(cc));
        goto out;
    }
    if (status != 200) {
        fprintf(stderr, "toolgate status: the admin listener answered %ld%s\n", status,
                status == 401 || status == 403 ? " (the token is missing or wrong)"
                : status == 404                ? " (not a toolgate admin listener?)"
                                               : "");
        goto out;
    }
    json_error_t je;
    json_t *st = json_loadb(body.data ? body.data : "", body.len, 0, &je);
    if (!json_is_object(st)) {
        json_decref(st);
        fprintf(stderr, "toolgate status: the answer is not a status document\n");
        goto out;
    }
    print_status(st);
    const char *state = json_string_value(json_object_get(st, "status"));
    rc = state && !strcmp(state, "ready") ? 0 : 1;
    json_decref(st);
out:
    if (token) {
        memset(token, 0, strlen(token));
        free(token);
    }
    if (auth.data)
        memset(auth.data, 0, auth.len);
    curl_slist_free_all(hdrs);
    if (h)
        curl_easy_cleanup(h);
    gw_buf_free(&url);
    gw_buf_free(&auth);
    gw_buf_free(&body);
    return rc;
}
