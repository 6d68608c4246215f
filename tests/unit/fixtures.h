/*
 * The unit tests' shared fixtures, header-only so each test binary stays one file:
 *
 *   - temporary directories and files, stdout capture;
 *   - configurations from YAML (loaded whole, or expected to fail with a given message);
 *   - request contexts as the core builds them (route, backend, decoded messages, identity);
 *   - real keys generated per test run, token minting, an identity-only configuration;
 *   - a tiny loopback HTTP server that plays an identity provider's JWKS endpoint.
 *
 * Test keys that must stay the same across runs live under tests/keys/ (marked as such).
 */
#ifndef TOOLGATE_TEST_FIXTURES_H
#define TOOLGATE_TEST_FIXTURES_H

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/cfg.h"
#include "core/config.h"
#include "core/request.h"
#include "lib/timeutil.h"
#include "layers/identity/identity.h"
#include "lib/jwk.h"
#include "lib/jwt.h"
#include "mcp/jsonrpc.h"

/* ---- files ------------------------------------------------------------------------------- */

static int fx_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Makes a fresh directory under /tmp into dir (len bytes at least 64); aborts on failure. */
static inline void fx_mkdtemp(char *dir, size_t len)
{
    snprintf(dir, len, "/tmp/toolgate-test-XXXXXX");
    if (!mkdtemp(dir))
        abort();
}

/* Removes a directory made by fx_mkdtemp with everything in it. */
static inline void fx_rmtree(const char *dir)
{
    if (dir && dir[0])
        nftw(dir, fx_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- processes --------------------------------------------------------------------------- */

/* Kills the child PID with SIGKILL and asserts it died of that signal. */
static inline void fx_kill9(pid_t pid)
{
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

/* The parent's side of a kill -9 test: waits for the child's one byte on FD (written once what
 * it did is durable), closes FD, then kills the child (fx_kill9). */
static inline void fx_kill9_when_ready(pid_t pid, int fd)
{
    char c = 0;
    assert_int_equal(read(fd, &c, 1), 1);
    close(fd);
    fx_kill9(pid);
}

/* ---- memory ------------------------------------------------------------------------------ */

/* This process's resident memory in KiB (/proc/self/statm), -1 when it cannot be read. */
static inline long fx_rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Allocates 64 MiB in 1,024 blocks of 64 KiB, touches every byte, frees them all; returns the
 * resident KiB while they were live. For tests of what the allocator gives back. */
static inline long fx_churn_64mib(void)
{
    enum { FX_BLOCKS = 1024, FX_BLOCK = 64 * 1024 };
    char **blocks = calloc(FX_BLOCKS, sizeof *blocks);
    if (!blocks)
        abort();
    for (int i = 0; i < FX_BLOCKS; i++) {
        if (!(blocks[i] = malloc(FX_BLOCK)))
            abort();
        memset(blocks[i], i & 0xff, FX_BLOCK);
    }
    long live = fx_rss_kib();
    for (int i = 0; i < FX_BLOCKS; i++)
        free(blocks[i]);
    free(blocks);
    return live;
}

/* Runs fn(argc, argv) with stdout captured; returns what it printed (malloc'd), *rc its exit. */
static inline char *fx_capture_stdout(int (*fn)(int, char **), int argc, char **argv, int *rc)
{
    fflush(stdout);
    char path[] = "/tmp/toolgate-test-out-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    int saved = dup(STDOUT_FILENO);
    dup2(fd, STDOUT_FILENO);
    *rc = fn(argc, argv);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    off_t size = lseek(fd, 0, SEEK_END);
    char *out = calloc(1, (size_t)size + 1);
    if (size > 0 && pread(fd, out, (size_t)size, 0) != size)
        abort();
    close(fd);
    unlink(path);
    return out;
}

static inline size_t fx_count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

static inline size_t fx_count_substr(const char *s, const char *sub)
{
    size_t n = 0;
    for (const char *p = s; p && (p = strstr(p, sub)); p += strlen(sub))
        n++;
    return n;
}

/* ---- configurations ------------------------------------------------------------------------ */

/* A whole generation from YAML; the test fails with the loader's message when it does not load. */
static inline struct gw_config *fx_load_ok(const char *yaml)
{
    struct cfg_error err = {{0}};
    struct gw_config *cfg = gw_config_load_string(yaml, "t.yaml", &err);
    if (!cfg)
        fail_msg("unexpected error: %s", err.msg);
    return cfg;
}

/*
 * Loads yaml expecting failure; the message must start with "t.yaml:<where>: <path>: " (where
 * NULL: anywhere) and contain `what`.
 */
static inline void fx_expect_error(const char *yaml, const char *where, const char *path,
                                   const char *what)
{
    struct cfg_error err = {{0}};
    struct gw_config *cfg = gw_config_load_string(yaml, "t.yaml", &err);
    if (cfg) {
        gw_config_free(cfg);
        fail_msg("expected an error (%s) for:\n%s", what, yaml);
    }
    char prefix[256] = "";
    if (where)
        snprintf(prefix, sizeof prefix, "t.yaml:%s: %s: ", where, path);
    if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || !strstr(err.msg, what))
        fail_msg("error\n  %s\ndoes not start with\n  %s\nor lacks\n  %s", err.msg, prefix, what);
}

/* ---- requests -------------------------------------------------------------------------------- */

/*
 * A request context on the route with this path, its backend chosen as the route kind does
 * (the first), as the proxy builds it before the layers run.
 */
static inline struct gw_request *fx_req_on(const struct gw_config *cfg, const char *route_path)
{
    struct gw_request *req = gw_request_new(cfg);
    req->route = gw_config_route_for(cfg, route_path, strlen(route_path));
    if (!req->route)
        fail_msg("no route %s in the test configuration", route_path);
    req->backend = &req->route->backends[0];
    req->path = (struct gw_slice){req->route->path, strlen(req->route->path)};
    req->method = GW_HTTP_POST;
    return req;
}

/* Appends one message to the request, decoded by the real JSON-RPC decoder (2025-03-26 rules). */
static inline void fx_req_add_message(struct gw_request *req, const char *json)
{
    struct mcp_batch one = {0};
    struct mcp_limits lim = {0};
    struct mcp_decode_error derr = {0};
    if (mcp_decode(json, strlen(json), &lim, NULL, &one, &derr) != 0)
        fail_msg("test message does not decode: %s", derr.message);
    req->rpc.msgs = realloc(req->rpc.msgs, (req->rpc.n + one.n) * sizeof *req->rpc.msgs);
    memcpy(req->rpc.msgs + req->rpc.n, one.msgs, one.n * sizeof *one.msgs);
    req->rpc.n += one.n;
    req->rpc.is_batch = req->rpc.n > 1;
    free(one.msgs);
}

/*
 * Appends a message the decoder would refuse (a tools/call notification, one without a name),
 * its fields filled the way the decoder fills them: for layers' defence in depth.
 */
static inline void fx_req_add_raw_message(struct gw_request *req, const char *json)
{
    json_error_t je;
    json_t *j = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        fail_msg("test message is not JSON: %s", je.text);
    req->rpc.msgs = realloc(req->rpc.msgs, (req->rpc.n + 1) * sizeof *req->rpc.msgs);
    struct mcp_message *m = &req->rpc.msgs[req->rpc.n++];
    memset(m, 0, sizeof *m);
    m->json = j;
    m->method = json_string_value(json_object_get(j, "method"));
    m->id = json_object_get(j, "id");
    m->kind = !m->method ? MCP_RESPONSE : m->id ? MCP_REQUEST : MCP_NOTIFICATION;
    json_t *params = json_object_get(j, "params");
    if (m->method && strcmp(m->method, "resources/read") == 0)
        m->target = json_string_value(json_object_get(params, "uri"));
    else if (m->method &&
             (strcmp(m->method, "tools/call") == 0 || strcmp(m->method, "prompts/get") == 0))
        m->target = json_string_value(json_object_get(params, "name"));
    json_t *args = json_object_get(params, "arguments");
    m->arguments = json_is_object(args) ? args : NULL;
    req->rpc.is_batch = req->rpc.n > 1;
}

/* A NULL-terminated malloc'd list of up to two strings (NULLs skipped). */
static inline char **fx_strv(const char *a, const char *b)
{
    char **v = calloc(3, sizeof *v);
    size_t n = 0;
    if (a)
        v[n++] = strdup(a);
    if (b)
        v[n++] = strdup(b);
    return v;
}

/* A verified identity (roles and scopes taken, may be NULL), expiring at exp. */
static inline void fx_identity(struct gw_identity *id, const char *sub, char **roles, char **scopes,
                               int64_t exp)
{
    memset(id, 0, sizeof *id);
    id->verified = 1;
    id->subject = strdup(sub);
    id->issuer = strdup("https://idp.test/");
    id->roles = roles ? roles : calloc(1, sizeof(char *));
    id->scopes = scopes ? scopes : calloc(1, sizeof(char *));
    for (char **r = id->roles; *r; r++)
        id->n_roles++;
    for (char **r = id->scopes; *r; r++)
        id->n_scopes++;
    id->expires_at = exp;
}

/* ---- keys and tokens ------------------------------------------------------------------------ */

#define FX_ISSUER "https://idp.test/"
#define FX_AUD "http://127.0.0.1:8080/mcp"

enum fx_key { FX_RSA, FX_P256, FX_P384, FX_ED25519, FX_RSA_B, FX_KEY_COUNT };

static EVP_PKEY *fx_keys[FX_KEY_COUNT];

static inline EVP_PKEY *fx_key(enum fx_key k)
{
    if (!fx_keys[k]) {
        switch (k) {
        case FX_RSA:
        case FX_RSA_B:
            fx_keys[k] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
            break;
        case FX_P256:
            fx_keys[k] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
            break;
        case FX_P384:
            fx_keys[k] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
            break;
        case FX_ED25519:
            fx_keys[k] = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
            break;
        default:
            break;
        }
    }
    return fx_keys[k];
}

static inline void fx_free_keys(void)
{
    for (int i = 0; i < FX_KEY_COUNT; i++) {
        EVP_PKEY_free(fx_keys[i]);
        fx_keys[i] = NULL;
    }
}

static inline const char *fx_kid(enum fx_key k)
{
    static const char *const kids[FX_KEY_COUNT] = {"rsa-1", "p256-1", "p384-1", "ed-1", "rsa-2"};
    return kids[k];
}

/* Signs header/payload JSON texts as given. Caller frees. */
static inline char *fx_sign_raw(EVP_PKEY *key, enum jwt_alg alg, const char *header,
                                const char *payload)
{
    struct gw_buf b = {0};
    if (jwt_sign_compact(key, alg, header, strlen(header), payload, strlen(payload), &b) != 0) {
        gw_buf_free(&b);
        return NULL;
    }
    return b.data;
}

static inline int64_t fx_now(void)
{
    return (int64_t)(gw_now_ns() / 1000000000ull);
}

/* A well-formed token for FX_ISSUER/FX_AUD with `extra` claims merged (a JSON object text,
 * may be NULL); members of extra override the defaults (null deletes one). */
static inline char *fx_token_ex(enum fx_key k, enum jwt_alg alg, const char *kid, const char *extra)
{
    json_t *p = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "iss", FX_ISSUER, "sub", "alice", "aud",
                          FX_AUD, "iat", (json_int_t)fx_now(), "nbf", (json_int_t)fx_now(), "exp",
                          (json_int_t)(fx_now() + 300));
    if (extra) {
        json_t *e = json_loads(extra, 0, NULL);
        const char *name;
        json_t *v;
        json_object_foreach(e, name, v)
        {
            if (json_is_null(v))
                json_object_del(p, name);
            else
                json_object_set(p, name, v);
        }
        json_decref(e);
    }
    json_t *h = kid ? json_pack("{s:s,s:s,s:s}", "alg", jwt_alg_name(alg), "typ", "JWT", "kid", kid)
                    : json_pack("{s:s,s:s}", "alg", jwt_alg_name(alg), "typ", "JWT");
    char *ht = json_dumps(h, JSON_COMPACT);
    char *pt = json_dumps(p, JSON_COMPACT);
    char *tok = fx_sign_raw(fx_key(k), alg, ht, pt);
    free(ht);
    free(pt);
    json_decref(h);
    json_decref(p);
    return tok;
}

static inline enum jwt_alg fx_default_alg(enum fx_key k)
{
    switch (k) {
    case FX_P256:
        return JWT_ES256;
    case FX_P384:
        return JWT_ES384;
    case FX_ED25519:
        return JWT_EDDSA;
    default:
        return JWT_RS256;
    }
}

static inline char *fx_token(enum fx_key k, const char *extra)
{
    return fx_token_ex(k, fx_default_alg(k), fx_kid(k), extra);
}

/* JWKS text with the public halves of the listed keys (terminated by -1). Caller frees. */
static inline char *fx_jwks(const int *which)
{
    json_t *keys = json_array();
    for (const int *k = which; *k >= 0; k++)
        json_array_append_new(keys, jwk_public_json(fx_key((enum fx_key) * k), fx_kid(*k), NULL));
    json_t *set = json_pack("{s:o}", "keys", keys);
    char *text = json_dumps(set, JSON_COMPACT);
    json_decref(set);
    return text;
}

static char fx_dir[256];

static inline const char *fx_tmpdir(void)
{
    if (!fx_dir[0]) {
        snprintf(fx_dir, sizeof fx_dir, "/tmp/toolgate-identity-XXXXXX");
        if (!mkdtemp(fx_dir))
            abort();
    }
    return fx_dir;
}

static inline void fx_rm_tmpdir(void)
{
    if (fx_dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", fx_dir);
        fx_dir[0] = '\0';
    }
}

static inline char *fx_write_file(const char *name, const char *text)
{
    char *path = malloc(512);
    snprintf(path, 512, "%s/%s", fx_tmpdir(), name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* A configuration generation with only what the identity layer reads. */
struct fx_config {
    struct gw_config cfg;
    struct gw_route route;
};

static inline struct fx_config *fx_config_yaml(const char *yaml, struct cfg_error *err)
{
    struct cfg_doc doc;
    if (cfg_load_string(yaml, strlen(yaml), "test.yaml", &doc, err) != 0)
        return NULL;
    struct fx_config *fx = calloc(1, sizeof *fx);
    fx->cfg.server.public_url = strdup("http://127.0.0.1:8080");
    fx->route.path = strdup("/mcp");
    fx->route.name = strdup("mcp");
    struct identity_config *ic = NULL;
    int rc = identity_config_parse(&doc, cfg_map_get(doc.root, "identity"), &ic, err);
    fx->cfg.modules[GW_STAGE_IDENTITY] = ic;
    if (rc != 0) {
        free(fx->cfg.server.public_url);
        free(fx->route.path);
        free(fx->route.name);
        free(fx);
        fx = NULL;
    }
    cfg_doc_free(&doc);
    return fx;
}

static inline void fx_config_free(struct fx_config *fx)
{
    if (!fx)
        return;
    identity_config_free(fx->cfg.modules[GW_STAGE_IDENTITY]);
    free(fx->cfg.server.public_url);
    free(fx->route.path);
    free(fx->route.name);
    free(fx);
}

/* A request with the given headers ("Name", "value" pairs, NULL-terminated) and query. */
struct fx_request {
    struct gw_request *req;
    struct gw_header headers[8];
};

static inline struct fx_request *fx_request(struct fx_config *fx, const char *query, ...)
{
    struct fx_request *r = calloc(1, sizeof *r);
    r->req = gw_request_new(&fx->cfg);
    r->req->route = &fx->route;
    r->req->path = GW_SLICE_LIT("/mcp");
    if (query)
        r->req->query = (struct gw_slice){query, strlen(query)};
    va_list ap;
    va_start(ap, query);
    size_t n = 0;
    for (;;) {
        const char *name = va_arg(ap, const char *);
        if (!name || n == 8)
            break;
        const char *value = va_arg(ap, const char *);
        r->headers[n].name = (struct gw_slice){name, strlen(name)};
        r->headers[n].value = (struct gw_slice){value, strlen(value)};
        n++;
    }
    va_end(ap);
    r->req->headers = r->headers;
    r->req->n_headers = n;
    return r;
}

static inline void fx_request_free(struct fx_request *r)
{
    if (!r)
        return;
    gw_request_free(r->req);
    free(r);
}

/* ---- a loopback JWKS server ------------------------------------------------------------ */

struct fx_server {
    int fd;
    int port;
    pthread_t thread;
    pthread_mutex_t lock;
    int stop;
    int status; /* 0: close the connection without answering */
    char *body; /* owned */
    char cache_control[64];
    int requests;
    int delay_ms;
};

static inline void *fx_server_main(void *arg)
{
    struct fx_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        int stop = s->stop;
        pthread_mutex_unlock(&s->lock);
        if (stop)
            break;
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        char req[4096];
        size_t got = 0;
        while (got < sizeof req - 1) {
            struct pollfd cp = {.fd = c, .events = POLLIN};
            if (poll(&cp, 1, 1000) <= 0)
                break;
            ssize_t r = read(c, req + got, sizeof req - 1 - got);
            if (r <= 0)
                break;
            got += (size_t)r;
            req[got] = '\0';
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        pthread_mutex_lock(&s->lock);
        s->requests++;
        int status = s->status, delay = s->delay_ms;
        char *body = strdup(s->body ? s->body : "");
        char cc[64];
        snprintf(cc, sizeof cc, "%s", s->cache_control);
        pthread_mutex_unlock(&s->lock);
        if (delay)
            usleep((useconds_t)delay * 1000);
        if (status) {
            char head[512];
            int n = snprintf(head, sizeof head,
                             "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                             "Content-Length: %zu\r\nConnection: close\r\n%s%s%s\r\n",
                             status, strlen(body), cc[0] ? "Cache-Control: " : "", cc,
                             cc[0] ? "\r\n" : "");
            if (write(c, head, (size_t)n) < 0 || write(c, body, strlen(body)) < 0)
                fprintf(stderr, "fx_server: write failed\n");
        }
        free(body);
        close(c);
    }
    return NULL;
}

static inline struct fx_server *fx_server_start(void)
{
    struct fx_server *s = calloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    s->status = 200;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->fd, 16) != 0)
        abort();
    socklen_t len = sizeof a;
    getsockname(s->fd, (struct sockaddr *)&a, &len);
    s->port = ntohs(a.sin_port);
    pthread_create(&s->thread, NULL, fx_server_main, s);
    return s;
}

static inline void fx_server_set(struct fx_server *s, int status, const char *body, const char *cc)
{
    pthread_mutex_lock(&s->lock);
    s->status = status;
    free(s->body);
    s->body = body ? strdup(body) : NULL;
    snprintf(s->cache_control, sizeof s->cache_control, "%s", cc ? cc : "");
    pthread_mutex_unlock(&s->lock);
}

static inline void fx_server_delay(struct fx_server *s, int delay_ms)
{
    pthread_mutex_lock(&s->lock);
    s->delay_ms = delay_ms;
    pthread_mutex_unlock(&s->lock);
}

static inline int fx_server_requests(struct fx_server *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->requests;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static inline void fx_server_stop(struct fx_server *s)
{
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    close(s->fd);
    free(s->body);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

#endif
