/*
 * ehr-backend: command line, listening sockets, worker threads, signals.
 *
 *   ehr-backend --listen 127.0.0.1:9001 [--path /mcp] [--mode json|sse] [--workers N]
 *               [--page-size N] [--seed N] [--patients N] [--sse-ping-ms N]
 *               [--max-sessions N] [--idle-timeout-ms N] [--quiet]
 *               [--jwks-url URL | --jwks-file FILE --issuer ISS --audience AUD]
 *
 * Each worker owns a loop and its own SO_REUSEPORT socket bound to the same address, so the
 * kernel spreads connections over workers. The sockets are all bound here, before any thread
 * starts, so a bad address fails at once with a message; with port 0 the first socket picks
 * the port and the others reuse it. The main thread only waits for SIGINT/SIGTERM, then asks
 * every worker to stop and joins them; exit status 0.
 */
#include "ehr.h"

#include "lib/log.h"

#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_WORKERS 64

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: ehr-backend [options]\n"
        "  --listen HOST:PORT   address to listen on (default 127.0.0.1:9001; port 0 = any)\n"
        "  --path PATH          MCP endpoint path (default /mcp)\n"
        "  --mode json|sse      answer POSTs with JSON or with an SSE stream (default json)\n"
        "  --workers N          worker threads, each with its own loop (default 1, max 64)\n"
        "  --page-size N        tools/list page size; 0 = one page (default 0)\n"
        "  --seed N             seed of the generated records (default 42)\n"
        "  --patients N         number of patients, P1..PN (default 1000)\n"
        "  --sse-ping-ms N      keep-alive comment interval on GET streams (default 15000)\n"
        "  --max-sessions N     sessions kept; the least recently used goes (default 10000)\n"
        "  --idle-timeout-ms N  close connections idle (or mid-request) this long; 0 = never\n"
        "                       (default 60000)\n"
        "  --jwks-url URL       verify the JWT toolgate injects with the keys at URL\n"
        "                       (fetched at start, again on an unknown kid at most every 10 s)\n"
        "  --jwks-file FILE     same, keys from a JWKS file\n"
        "  --issuer ISS         the iss tokens must carry (toolgate's public URL)\n"
        "  --audience AUD       the aud tokens must carry (the route's inject.audience)\n"
        "  --stateless          issue no sessions (GET and DELETE are 405): any replica\n"
        "                       can answer any request\n"
        "  --quiet              no per-request log lines\n"
        "  --version, --help\n");
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Splits HOST:PORT; IPv6 hosts go in brackets ([::1]:9001). */
static int parse_listen(const char *s, struct ehr_options *opt)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -1;
    const char *host = s;
    size_t hlen = (size_t)(colon - s);
    if (host[0] == '[') {
        if (hlen < 3 || host[hlen - 1] != ']')
            return -1;
        host++;
        hlen -= 2;
    }
    unsigned long long port;
    if (hlen >= sizeof opt->host || parse_uint(colon + 1, 65535, &port) != 0)
        return -1;
    memcpy(opt->host, host, hlen);
    opt->host[hlen] = '\0';
    snprintf(opt->port, sizeof opt->port, "%llu", port);
    return 0;
}

static int parse_args(int argc, char **argv, struct ehr_options *opt)
{
    memset(opt, 0, sizeof *opt);
    snprintf(opt->host, sizeof opt->host, "127.0.0.1");
    snprintf(opt->port, sizeof opt->port, "9001");
    snprintf(opt->path, sizeof opt->path, "/mcp");
    opt->workers = 1;
    opt->seed = 42;
    opt->patients = 1000;
    opt->ping_ms = 15000;
    opt->max_sessions = 10000;
    opt->idle_ms = 60000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long long n;
        if (strcmp(a, "--quiet") == 0) {
            opt->quiet = 1;
            continue;
        }
        if (strcmp(a, "--stateless") == 0) {
            opt->stateless = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--version") == 0) {
            printf("ehr-backend %s (%s)\n", TOOLGATE_VERSION, TOOLGATE_REV);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "ehr-backend: %s needs a value (see --help)\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--listen") == 0) {
            if (parse_listen(v, opt) != 0) {
                fprintf(stderr, "ehr-backend: --listen wants HOST:PORT, got \"%s\"\n", v);
                return -1;
            }
        } else if (strcmp(a, "--path") == 0) {
            if (v[0] != '/' || strlen(v) >= sizeof opt->path || strpbrk(v, "?# ")) {
                fprintf(stderr, "ehr-backend: --path must start with / and have no query\n");
                return -1;
            }
            snprintf(opt->path, sizeof opt->path, "%s", v);
        } else if (strcmp(a, "--mode") == 0) {
            if (strcmp(v, "json") != 0 && strcmp(v, "sse") != 0) {
                fprintf(stderr, "ehr-backend: --mode is json or sse\n");
                return -1;
            }
            opt->sse_mode = strcmp(v, "sse") == 0;
        } else if (strcmp(a, "--workers") == 0 && parse_uint(v, MAX_WORKERS, &n) == 0 && n > 0) {
            opt->workers = (unsigned)n;
        } else if (strcmp(a, "--page-size") == 0 && parse_uint(v, 1000, &n) == 0) {
            opt->page_size = (unsigned)n;
        } else if (strcmp(a, "--seed") == 0 && parse_uint(v, UINT64_MAX, &n) == 0) {
            opt->seed = n;
        } else if (strcmp(a, "--patients") == 0 && parse_uint(v, EHR_DATA_MAX_PATIENTS, &n) == 0 &&
                   n > 0) {
            opt->patients = (unsigned)n;
        } else if (strcmp(a, "--sse-ping-ms") == 0 && parse_uint(v, 3600000, &n) == 0 && n >= 10) {
            opt->ping_ms = (unsigned)n;
        } else if (strcmp(a, "--idle-timeout-ms") == 0 && parse_uint(v, 86400000, &n) == 0) {
            opt->idle_ms = (unsigned)n;
        } else if (strcmp(a, "--jwks-url") == 0) {
            opt->jwks_url = v;
        } else if (strcmp(a, "--jwks-file") == 0) {
            opt->jwks_file = v;
        } else if (strcmp(a, "--issuer") == 0) {
            opt->issuer = v;
        } else if (strcmp(a, "--audience") == 0) {
            opt->audience = v;
        } else if (strcmp(a, "--max-sessions") == 0 && parse_uint(v, 1000000, &n) == 0 && n > 0) {
            opt->max_sessions = (unsigned)n;
        } else {
            fprintf(stderr, "ehr-backend: bad option or value: %s %s (see --help)\n", a, v);
            return -1;
        }
    }
    if (opt->jwks_url || opt->jwks_file || opt->issuer || opt->audience) {
        if ((!opt->jwks_url) == (!opt->jwks_file) || !opt->issuer || !opt->audience) {
            fprintf(stderr, "ehr-backend: token verification needs one of --jwks-url or "
                            "--jwks-file, plus --issuer and --audience\n");
            return -1;
        }
    }
    return 0;
}

/* Binds one SO_REUSEPORT socket; returns the fd or -1 with a message printed. */
static int bind_socket(const struct ehr_options *opt, const char *port, int probe, char *bound_port,
                       size_t bplen)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(opt->host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "ehr-backend: cannot resolve %s: %s\n", opt->host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (probe && fd >= 0) {
        /* SO_REUSEPORT would let us share a port another process already listens on (and
         * split its traffic); bind once without it so that case fails loudly instead. */
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
            bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
            fprintf(stderr, "ehr-backend: cannot listen on %s:%s: %s\n", opt->host, port,
                    strerror(errno));
            close(fd);
            freeaddrinfo(res);
            return -1;
        }
        close(fd);
        fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        fprintf(stderr, "ehr-backend: cannot listen on %s:%s: %s\n", opt->host, port,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    } else {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        unsigned p = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                              : ntohs(((struct sockaddr_in *)&ss)->sin_port);
        snprintf(bound_port, bplen, "%u", p);
    }
    freeaddrinfo(res);
    return fd;
}

static void on_stop(uv_async_t *a)
{
    struct ehr_worker *w = a->data;
    ehr_server_stop(w);
    uv_close((uv_handle_t *)a, NULL);
}

static void *worker_main(void *arg)
{
    struct ehr_worker *w = arg;
    int rc = ehr_server_start(w);
    if (rc != 0) {
        gw_log_error("worker_error", "worker %u cannot listen: %s", w->index, uv_strerror(rc));
        ehr_server_stop(w);
        uv_close((uv_handle_t *)&w->stop, NULL);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

static struct ehr_worker *workers[MAX_WORKERS];
static unsigned n_workers;

static void on_signal(uv_signal_t *s, int signum)
{
    gw_log_info("shutdown", "signal %d: stopping %u worker(s)", signum, n_workers);
    for (unsigned i = 0; i < n_workers; i++)
        uv_async_send(&workers[i]->stop);
    uv_close((uv_handle_t *)s, NULL);
    uv_signal_t *other = s->data;
    if (!uv_is_closing((uv_handle_t *)other))
        uv_close((uv_handle_t *)other, NULL);
}

int main(int argc, char **argv)
{
    static struct ehr_app app;
    int status = 1;
    unsigned started = 0;
    uv_loop_t main_loop;
    uv_signal_t sigint, sigterm;
    int main_loop_ready = 0;

    if (parse_args(argc, argv, &app.opt) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    /* fetch_url blocks a pool thread for up to 5 s; give the pool room unless told. */
    setenv("UV_THREADPOOL_SIZE", "16", 0);
    /* Seed jansson's hash function here, once, rather than racing on it from the workers. */
    json_object_seed(0);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "ehr-backend: libcurl failed to initialise\n");
        return 1;
    }
    if (ehr_data_init(&app.data, app.opt.seed, app.opt.patients) != 0 ||
        ehr_sessions_init(&app.sessions, app.opt.max_sessions, 3600u * 1000u) != 0 ||
        ehr_tools_init(&app) != 0) {
        fprintf(stderr, "ehr-backend: out of memory while starting\n");
        goto out;
    }
    if (app.opt.issuer) {
        /* Keys before the sockets: a backend that cannot verify must not serve. A URL is
         * retried for a while, so toolgate may be started after the backend. */
        char why[512];
        if (ehr_auth_init(&app.auth, app.opt.jwks_url, app.opt.jwks_file, app.opt.issuer,
                          app.opt.audience, EHR_AUTH_START_RETRY_MS, why, sizeof why) != 0) {
            fprintf(stderr, "ehr-backend: %s\n", why);
            ehr_auth_free(&app.auth);
            goto out;
        }
        app.auth_on = 1;
    }

    char port[8];
    snprintf(port, sizeof port, "%s", app.opt.port);
    for (unsigned i = 0; i < app.opt.workers; i++) {
        struct ehr_worker *w = calloc(1, sizeof *w);
        if (!w)
            goto out;
        workers[n_workers++] = w;
        w->app = &app;
        w->index = i;
        w->listen_fd = -1;
        w->listen_fd =
            bind_socket(&app.opt, port, i == 0 && strcmp(port, "0") != 0, port, sizeof port);
        if (w->listen_fd < 0)
            goto out;
        if (uv_loop_init(&w->loop) != 0)
            goto out;
        if (uv_async_init(&w->loop, &w->stop, on_stop) != 0) {
            uv_loop_close(&w->loop);
            goto out;
        }
        w->loop_ready = 1;
        w->stop.data = w;
    }

    if (uv_loop_init(&main_loop) != 0)
        goto out;
    main_loop_ready = 1;
    uv_signal_init(&main_loop, &sigint);
    uv_signal_init(&main_loop, &sigterm);
    sigint.data = &sigterm;
    sigterm.data = &sigint;
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);

    for (; started < n_workers; started++) {
        if (pthread_create(&workers[started]->thread, NULL, worker_main, workers[started]) != 0)
            break;
    }
    if (started < n_workers) {
        fprintf(stderr, "ehr-backend: cannot start worker threads\n");
        for (unsigned i = 0; i < started; i++)
            uv_async_send(&workers[i]->stop);
        uv_close((uv_handle_t *)&sigint, NULL);
        uv_close((uv_handle_t *)&sigterm, NULL);
    } else {
        struct gw_buf fields = {0};
        gw_buf_append_str(&fields, "\"host\":\"");
        gw_buf_append_json_escaped(&fields, app.opt.host, strlen(app.opt.host));
        gw_buf_printf(&fields, "\",\"port\":%s,\"path\":\"", port);
        gw_buf_append_json_escaped(&fields, app.opt.path, strlen(app.opt.path));
        gw_buf_printf(&fields,
                      "\",\"mode\":\"%s\",\"workers\":%u,\"patients\":%u,\"seed\":%llu,"
                      "\"verify_tokens\":%s",
                      app.opt.sse_mode ? "sse" : "json", app.opt.workers, app.opt.patients,
                      (unsigned long long)app.opt.seed, app.auth_on ? "true" : "false");
        gw_log(GW_LOG_INFO, "listening", NULL, fields.data, "ehr-backend listening on port %s",
               port);
        gw_buf_free(&fields);
        status = 0;
    }
    uv_run(&main_loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < started; i++)
        pthread_join(workers[i]->thread, NULL);
    if (started < n_workers)
        status = 1;

out:
    for (unsigned i = 0; i < n_workers; i++) {
        struct ehr_worker *w = workers[i];
        if (w->loop_ready) {
            /* Workers that never ran still hold their stop handle and socket. */
            if (i >= started) {
                uv_close((uv_handle_t *)&w->stop, NULL);
                if (w->listen_fd >= 0)
                    close(w->listen_fd);
            }
            uv_run(&w->loop, UV_RUN_DEFAULT);
            uv_loop_close(&w->loop);
        }
        gw_buf_free(&w->scratch);
        gw_buf_free(&w->scratch2);
        if (!w->loop_ready && w->listen_fd >= 0)
            close(w->listen_fd);
        free(w);
    }
    if (main_loop_ready)
        uv_loop_close(&main_loop);
    if (app.auth_on)
        ehr_auth_free(&app.auth);
    ehr_tools_free(&app);
    ehr_sessions_free(&app.sessions);
    ehr_data_free(&app.data);
    curl_global_cleanup();
    return status;
}
