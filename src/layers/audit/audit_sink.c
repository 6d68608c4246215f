/*
 * The streaming sinks' runtime (audit_sink.h): one thread per sink, fed by the writer after
 * each commit. Everything here runs beside the store: a sink that fails, stalls or runs out of
 * memory drops and counts records, logs what went wrong (never what a record says), and
 * leaves the writer and the requests alone.
 */
#include "layers/audit/audit_sink.h"
#include "layers/audit/audit_ocsf.h"
#include "layers/audit/audit_syslog.h"

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/timeutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* An answer larger than this is cut off (a bulk answer for 10000 items fits). */
#define SINK_MAX_RESPONSE (4u << 20)
#define SINK_TOKEN_MAX 4096
/* Bytes of records one sink's queue holds at most, whatever `queue` allows in records. */
#define SINK_QUEUE_MAX_BYTES (64ull << 20)
/* While a sink keeps failing, its warning is repeated at most this often. */
#define SINK_WARN_EVERY_MS 60000

/* A committed record's line, shared by the sinks that queued it. */
struct audit_line {
    atomic_uint refs;
    size_t len;
    char data[];
};

/* One record of a batch, prepared for sending. */
struct item {
    struct audit_line *line;
    json_t *rec;   /* parsed line */
    char *payload; /* the OCSF event or the line itself (not owned then) */
    size_t payload_len;
    int owned;
    int done; /* delivered or refused for good */
};

struct sink {
    struct audit_sink_config c; /* strings owned (copied) */
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct audit_line **ring;
    size_t cap, head, count;
    uint64_t queued_bytes;
    int stopping;
    uint64_t stop_deadline_ms;
    atomic_uint_fast64_t sent, dropped, failed, retries, truncated;
    atomic_int up;

    /* Owned by the sink's thread. */
    char *auth; /* "Authorization: ..." (a secret: never logged) */
    SSL_CTX *tls;
    int fd;
    SSL *ssl;
    CURL *curl;
    struct curl_slist *headers;
    struct gw_buf resp;
    char why[256]; /* the last failure, for the log */
    int failing;
    uint64_t last_warn_ms;
};

static struct {
    struct sink *s;
    size_t n;
    char *instance;
    char procid[24];
    atomic_int active;
} S;

static void line_release(struct audit_line *l)
{
    if (l && atomic_fetch_sub(&l->refs, 1) == 1)
        free(l);
}

static void wait_ms(struct sink *k, uint64_t until)
{
    gw_cond_wait_until_ms(&k->cv, &k->mu, until);
}

/* ---- syslog transports ---- */

static void stream_close(struct sink *k)
{
    if (k->ssl) {
        SSL_shutdown(k->ssl);
        SSL_free(k->ssl);
        k->ssl = NULL;
    }
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
}

static void tls_why(struct sink *k, const char *what)
{
    unsigned long e = ERR_get_error();
    char reason[160] = "";
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    snprintf(k->why, sizeof k->why, "%s%s%s", what, reason[0] ? ": " : "", reason);
}

/* Connects with the sink's timeout; for TLS also the verified handshake. Returns 0 or -1. */
static int stream_open(struct sink *k)
{
    struct addrinfo hints = {0}, *res = NULL;
    int udp = k->c.transport == AUDIT_SINK_UDP;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = udp ? SOCK_DGRAM : SOCK_STREAM;
    int gai = getaddrinfo(k->c.host, k->c.port, &hints, &res);
    if (gai != 0) {
        snprintf(k->why, sizeof k->why, "cannot resolve %s: %s", k->c.host, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int err = 0;
            socklen_t el = sizeof err;
            rc = poll(&p, 1, (int)k->c.timeout_ms) == 1 &&
                         getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0
                     ? 0
                     : -1;
            if (rc != 0)
                errno = err ? err : ETIMEDOUT;
        }
        if (rc != 0) {
            snprintf(k->why, sizeof k->why, "cannot connect to %s:%s: %s", k->c.host, k->c.port,
                     strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    /* Blocking from here on, every read and write bounded by the timeout. */
    struct timeval tv = {.tv_sec = (time_t)(k->c.timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(k->c.timeout_ms % 1000) * 1000};
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    k->fd = fd;
    if (k->c.transport != AUDIT_SINK_TLS)
        return 0;
    const char *name = k->c.server_name ? k->c.server_name : k->c.host;
    struct in6_addr ip;
    int literal = inet_pton(AF_INET, name, &ip) == 1 || inet_pton(AF_INET6, name, &ip) == 1;
    k->ssl = SSL_new(k->tls);
    if (!k->ssl || SSL_set_fd(k->ssl, fd) != 1 ||
        (literal
             ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(k->ssl), name) != 1
             : SSL_set1_host(k->ssl, name) != 1 || SSL_set_tlsext_host_name(k->ssl, name) != 1)) {
        tls_why(k, "cannot set up TLS");
        stream_close(k);
        return -1;
    }
    if (SSL_connect(k->ssl) != 1) {
        long v = SSL_get_verify_result(k->ssl);
        if (v != X509_V_OK) {
            snprintf(k->why, sizeof k->why,
                     "TLS handshake with %s:%s: certificate not verified (%s)", k->c.host,
                     k->c.port, X509_verify_cert_error_string(v));
            ERR_clear_error();
        } else
            tls_why(k, "TLS handshake failed");
        stream_close(k);
        return -1;
    }
    return 0;
}

/*
 * Whether the receiver has closed the connection (or it broke), checked before each batch so
 * a batch is not written into a connection that is gone. A syslog receiver sends nothing
 * else: bytes it does send (TLS 1.3 session tickets, which OpenSSL consumes here) are read and
 * dropped without a wait.
 */
static int stream_stale(struct sink *k)
{
    struct pollfd p = {.fd = k->fd, .events = POLLIN};
    if (poll(&p, 1, 0) == 0)
        return 0;
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL))
        return 1;
    char scratch[4096];
    int flags = fcntl(k->fd, F_GETFL), stale;
    fcntl(k->fd, F_SETFL, flags | O_NONBLOCK);
    if (k->ssl) {
        size_t got = 0;
        int r = SSL_read_ex(k->ssl, scratch, sizeof scratch, &got);
        int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(k->ssl, r);
        stale = !(e == SSL_ERROR_NONE || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
        ERR_clear_error();
    } else {
        ssize_t r = recv(k->fd, scratch, sizeof scratch, 0);
        stale = r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
    fcntl(k->fd, F_SETFL, flags);
    return stale;
}

static int stream_write(struct sink *k, const char *data, size_t len)
{
    while (len) {
        ssize_t w;
        if (k->ssl) {
            size_t done = 0;
            w = SSL_write_ex(k->ssl, data, len, &done) == 1 ? (ssize_t)done : -1;
            if (w < 0)
                tls_why(k, "TLS write failed");
        } else {
            w = send(k->fd, data, len, MSG_NOSIGNAL);
            if (w < 0)
                snprintf(k->why, sizeof k->why, "write to %s:%s failed: %s", k->c.host, k->c.port,
                         errno == EAGAIN ? "timed out" : strerror(errno));
        }
        if (w <= 0)
            return -1;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

/*
 * Sends the batch's messages that are not done yet. Each is marked done once fully handed to
 * the connection, so a retry starts at the first message that was not.
 * Returns 0 (all sent) or 1 (retry).
 */
static int send_syslog(struct sink *k, struct item *it, size_t n, struct gw_buf *msgs,
                       const size_t *off)
{
    struct gw_buf frame = {0};
    int rc = 1;
    if (k->fd >= 0 && k->c.transport != AUDIT_SINK_UDP && stream_stale(k))
        stream_close(k);
    if (k->fd < 0 && stream_open(k) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (it[i].done)
            continue;
        const char *m = msgs->data + off[i];
        size_t ml = off[i + 1] - off[i];
        if (k->c.transport == AUDIT_SINK_UDP) {
            if (send(k->fd, m, ml, MSG_NOSIGNAL) != (ssize_t)ml) {
                snprintf(k->why, sizeof k->why, "datagram to %s:%s failed: %s", k->c.host,
                         k->c.port, strerror(errno));
                stream_close(k);
                goto out;
            }
        } else {
            gw_buf_reset(&frame);
            if (audit_syslog_frame(&frame, m, ml) != 0) {
                snprintf(k->why, sizeof k->why, "out of memory");
                goto out;
            }
            if (stream_write(k, frame.data, frame.len) != 0) {
                stream_close(k);
                goto out;
            }
        }
        it[i].done = 1;
        atomic_fetch_add(&k->sent, 1);
    }
    rc = 0;
out:
    gw_buf_free(&frame);
    return rc;
}

/* ---- HTTP ---- */

static size_t collect(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct sink *k = arg;
    size_t n = size * nmemb;
    if (k->resp.len + n > SINK_MAX_RESPONSE)
        return 0;
    return gw_buf_append(&k->resp, ptr, n) == 0 ? n : 0;
}

/* Ends an attempt still running once the shutdown bound has passed. */
static int progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    struct sink *k = arg;
    pthread_mutex_lock(&k->mu);
    int late = k->stopping && gw_mono_ms() >= k->stop_deadline_ms;
    pthread_mutex_unlock(&k->mu);
    return late;
}

static int http_setup(struct sink *k)
{
    k->curl = curl_easy_init();
    if (!k->curl)
        return -1;
    const char *type = k->c.format == AUDIT_SINK_BULK || k->c.format == AUDIT_SINK_NDJSON
                           ? "Content-Type: application/x-ndjson"
                           : "Content-Type: application/json";
    struct curl_slist *h = curl_slist_append(NULL, type);
    if (h)
        h = curl_slist_append(h, "Expect:");
    if (h && k->auth)
        h = curl_slist_append(h, k->auth);
    if (!h)
        return -1;
    k->headers = h;
    CURL *c = k->curl;
    curl_easy_setopt(c, CURLOPT_URL, k->c.url);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, k->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)k->c.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)k->c.timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (k->c.tls_ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, k->c.tls_ca);
    if (k->c.tls_cert) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, k->c.tls_cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, k->c.tls_key);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, k);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, k);
    return 0;
}

static int append_json_string(struct gw_buf *b, const char *s)
{
    return gw_buf_append(b, "\"", 1) || gw_buf_append_json_escaped(b, s, strlen(s)) ||
           gw_buf_append(b, "\"", 1);
}

/* One item in the body of the sink's format. */
static int http_item(struct sink *k, struct gw_buf *b, const struct item *it, int first)
{
    const char *v;
    switch (k->c.format) {
    case AUDIT_SINK_HEC: {
        /* HEC takes events one after another in one body; time in seconds (ms precision). */
        v = json_string_value(json_object_get(it->rec, "time_ns"));
        long long ns = v ? strtoll(v, NULL, 10) : 0;
        if (gw_buf_printf(b, "{\"time\":%lld.%03lld,\"host\":", ns / 1000000000LL,
                          (ns / 1000000LL) % 1000) ||
            append_json_string(b, S.instance) ||
            gw_buf_append_str(b, ",\"source\":\"toolgate\",\"sourcetype\":") ||
            append_json_string(b, k->c.sourcetype                   ? k->c.sourcetype
                                  : k->c.payload == AUDIT_SINK_OCSF ? "ocsf:api_activity"
                                                                    : "toolgate:audit"))
            return -1;
        if (k->c.index &&
            (gw_buf_append_str(b, ",\"index\":") || append_json_string(b, k->c.index)))
            return -1;
        return gw_buf_append_str(b, ",\"event\":") ||
               gw_buf_append(b, it->payload, it->payload_len) || gw_buf_append_str(b, "}\n");
    }
    case AUDIT_SINK_BULK: {
        /* create with the record's own id: a batch sent again is not indexed twice. */
        v = json_string_value(json_object_get(it->rec, "instance"));
        json_int_t seq = json_integer_value(json_object_get(it->rec, "seq"));
        char id[200];
        snprintf(id, sizeof id, "%s-%lld", v ? v : S.instance, (long long)seq);
        return gw_buf_append_str(b, "{\"create\":{\"_index\":") ||
               append_json_string(b, k->c.index) || gw_buf_append_str(b, ",\"_id\":") ||
               append_json_string(b, id) || gw_buf_append_str(b, "}}\n") ||
               gw_buf_append(b, it->payload, it->payload_len) || gw_buf_append(b, "\n", 1);
    }
    case AUDIT_SINK_JSON:
        return gw_buf_append(b, first ? "[" : ",", 1) ||
               gw_buf_append(b, it->payload, it->payload_len);
    default:
        return gw_buf_append(b, it->payload, it->payload_len) || gw_buf_append(b, "\n", 1);
    }
}

static int retryable(long status)
{
    return status == 0 || status == 408 || status == 429 || status >= 500;
}

/* Returns 0 (nothing left to send) or 1 (retry what is not done). */
static int send_http(struct sink *k, struct item *it, size_t n)
{
    struct gw_buf body = {0};
    size_t *idx = calloc(n, sizeof *idx), m = 0;
    int *status = calloc(n, sizeof *status), rc = 1;
    if (!idx || !status) {
        snprintf(k->why, sizeof k->why, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (it[i].done)
            continue;
        if (http_item(k, &body, &it[i], m == 0) != 0) {
            snprintf(k->why, sizeof k->why, "out of memory");
            goto out;
        }
        idx[m++] = i;
    }
    if (m == 0) {
        rc = 0;
        goto out;
    }
    if (k->c.format == AUDIT_SINK_JSON && gw_buf_append(&body, "]", 1) != 0)
        goto out;
    gw_buf_reset(&k->resp);
    curl_easy_setopt(k->curl, CURLOPT_POSTFIELDS, body.data);
    curl_easy_setopt(k->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body.len);
    CURLcode cc = curl_easy_perform(k->curl);
    long code = 0;
    if (cc == CURLE_OK)
        curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &code);
    else
        snprintf(k->why, sizeof k->why, "POST failed: %s", curl_easy_strerror(cc));
    if (code >= 200 && code < 300 && k->c.format == AUDIT_SINK_BULK) {
        if (audit_sink_bulk_result(k->resp.data, k->resp.len, m, status) != 0) {
            snprintf(k->why, sizeof k->why, "the bulk answer (HTTP %ld) is not understood", code);
            goto out;
        }
    } else {
        for (size_t j = 0; j < m; j++)
            status[j] = (int)code;
        if (cc == CURLE_OK && !(code >= 200 && code < 300))
            snprintf(k->why, sizeof k->why, "the receiver answered HTTP %ld", code);
    }
    rc = 0;
    for (size_t j = 0; j < m; j++) {
        struct item *x = &it[idx[j]];
        /* 409 from create: a document an earlier attempt already wrote. */
        if ((status[j] >= 200 && status[j] < 300) || status[j] == 409) {
            x->done = 1;
            atomic_fetch_add(&k->sent, 1);
        } else if (retryable(status[j])) {
            rc = 1;
        } else {
            x->done = 1;
            atomic_fetch_add(&k->failed, 1);
            snprintf(k->why, sizeof k->why, "the receiver refused records (HTTP %d)", status[j]);
        }
    }
out:
    gw_buf_free(&body);
    free(idx);
    free(status);
    return rc;
}

int audit_sink_bulk_result(const char *body, size_t len, size_t n, int *status)
{
    json_error_t je;
    int rc = -1;
    json_t *doc = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &je) : NULL;
    json_t *items = json_object_get(doc, "items");
    if (!json_is_object(doc) || !json_is_array(items) || json_array_size(items) != n)
        goto out;
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(items, i);
        /* Each item is an object of one member named after the action. */
        if (!json_is_object(item) || json_object_size(item) != 1)
            goto out;
        json_t *res = json_object_iter_value(json_object_iter(item));
        json_t *st = json_object_get(res, "status");
        if (!json_is_integer(st) || json_integer_value(st) < 100 || json_integer_value(st) > 599)
            goto out;
        status[i] = (int)json_integer_value(st);
    }
    rc = 0;
out:
    json_decref(doc);
    return rc;
}

/* ---- batches ---- */

static int prepare(struct sink *k, struct item *it)
{
    it->rec = json_loadb(it->line->data, it->line->len, 0, NULL);
    if (!it->rec)
        return -1;
    if (k->c.payload == AUDIT_SINK_JSONL) {
        it->payload = it->line->data;
        it->payload_len = it->line->len;
        return 0;
    }
    json_t *ev = audit_ocsf_event(it->rec);
    it->payload = ev ? json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(ev);
    if (!it->payload)
        return -1;
    it->payload_len = strlen(it->payload);
    it->owned = 1;
    return 0;
}

/* Marks the sink down and warns, once a minute at most while it stays down: EVENT and a
 * message made of the sink's name, its last error and TAIL. */
static void note_down(struct sink *k, const char *event, const char *tail)
{
    uint64_t now = gw_mono_ms();
    atomic_store(&k->up, 0);
    if (!k->failing || now - k->last_warn_ms >= SINK_WARN_EVERY_MS) {
        char fields[128];
        snprintf(fields, sizeof fields, "\"sink\":\"%s\"", k->c.name);
        gw_log(GW_LOG_WARN, event, NULL, fields, "audit sink %s: %s; %s", k->c.name, k->why, tail);
        k->last_warn_ms = now;
    }
    k->failing = 1;
}

static void note_failure(struct sink *k)
{
    note_down(k, "audit_sink_failed",
              "retrying with backoff (records wait in its queue; see "
              "toolgate_audit_sink_dropped_total)");
}

static void note_success(struct sink *k)
{
    atomic_store(&k->up, 1);
    if (k->failing) {
        char fields[128];
        snprintf(fields, sizeof fields, "\"sink\":\"%s\"", k->c.name);
        gw_log(GW_LOG_INFO, "audit_sink_recovered", NULL, fields, "audit sink %s delivers again",
               k->c.name);
    }
    k->failing = 0;
}

/* Records the receiver refused for good: said once a minute at most, never retried. */
static void note_refused(struct sink *k, uint64_t n)
{
    char tail[192];
    snprintf(tail, sizeof tail,
             "%llu records are not sent again (see toolgate_audit_sink_failed_total; check the "
             "sink's token, index and url)",
             (unsigned long long)n);
    note_down(k, "audit_sink_refused", tail);
}

/* Delivers one batch: retries with capped backoff until sent, refused, or out of time. */
static void deliver(struct sink *k, struct item *it, size_t n)
{
    struct gw_buf msgs = {0};
    size_t *off = NULL;
    for (size_t i = 0; i < n; i++)
        if (prepare(k, &it[i]) != 0) {
            it[i].done = 1;
            atomic_fetch_add(&k->dropped, 1);
        }
    if (k->c.kind == AUDIT_SINK_SYSLOG) {
        /* The messages are formatted once; retries resend them as they are. */
        struct audit_syslog_params p = {.facility = k->c.facility,
                                        .hostname = S.instance,
                                        .app_name = k->c.app_name ? k->c.app_name : "toolgate",
                                        .procid = S.procid,
                                        .sd_id = k->c.sd_id ? k->c.sd_id : "toolgate@32473",
                                        .max_length = (size_t)k->c.max_length};
        off = calloc(n + 1, sizeof *off);
        for (size_t i = 0; off && i < n; i++) {
            off[i] = msgs.len;
            if (it[i].done)
                continue;
            int rc = audit_syslog_format(&msgs, &p, it[i].rec, it[i].payload, it[i].payload_len);
            if (rc < 0) {
                it[i].done = 1;
                atomic_fetch_add(&k->dropped, 1);
            } else if (rc == 1)
                atomic_fetch_add(&k->truncated, 1);
        }
        if (!off) {
            for (size_t i = 0; i < n; i++)
                if (!it[i].done) {
                    it[i].done = 1;
                    atomic_fetch_add(&k->dropped, 1);
                }
            goto out;
        }
        off[n] = msgs.len;
    }
    uint64_t backoff = k->c.retry_initial_ms;
    for (unsigned attempt = 0;; attempt++) {
        uint64_t failed0 = atomic_load(&k->failed);
        int again = k->c.kind == AUDIT_SINK_SYSLOG ? send_syslog(k, it, n, &msgs, off)
                                                   : send_http(k, it, n);
        uint64_t refused = atomic_load(&k->failed) - failed0;
        if (refused)
            note_refused(k, refused);
        if (!again) {
            if (!refused)
                note_success(k);
            break;
        }
        atomic_fetch_add(&k->retries, 1);
        note_failure(k);
        pthread_mutex_lock(&k->mu);
        /* At shutdown, what the bound leaves no time for is dropped and counted. */
        int give_up = k->stopping && gw_mono_ms() + backoff >= k->stop_deadline_ms;
        uint64_t until = gw_mono_ms() + backoff;
        while (!give_up && gw_mono_ms() < until) {
            /* A stop during the backoff ends the wait by the shutdown bound at the latest. */
            wait_ms(k, k->stopping && k->stop_deadline_ms < until ? k->stop_deadline_ms : until);
            if (k->stopping && gw_mono_ms() >= k->stop_deadline_ms)
                give_up = 1;
        }
        pthread_mutex_unlock(&k->mu);
        if (give_up) {
            for (size_t i = 0; i < n; i++)
                if (!it[i].done) {
                    it[i].done = 1;
                    atomic_fetch_add(&k->dropped, 1);
                }
            break;
        }
        backoff = backoff * 2 > k->c.retry_max_ms ? k->c.retry_max_ms : backoff * 2;
    }
out:
    gw_buf_free(&msgs);
    free(off);
}

static void *sink_main(void *arg)
{
    struct sink *k = arg;
    /*
     * OpenSSL writes with write(2): a receiver that closes under a TLS write would raise
     * SIGPIPE, whatever the process's disposition is at that moment. Blocked on this thread,
     * the write fails with EPIPE instead and the batch is retried.
     */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    struct item *batch = calloc(k->c.batch_max, sizeof *batch);
    for (;;) {
        pthread_mutex_lock(&k->mu);
        while (!k->count && !k->stopping)
            pthread_cond_wait(&k->cv, &k->mu);
        if (!k->count) {
            pthread_mutex_unlock(&k->mu);
            break;
        }
        /* A batch waits for company at most batch.max_wait after its first record. */
        uint64_t until = gw_mono_ms() + k->c.batch_wait_ms;
        while (!k->stopping && k->count < k->c.batch_max && gw_mono_ms() < until)
            wait_ms(k, until);
        if (k->stopping && gw_mono_ms() >= k->stop_deadline_ms) {
            /* Past the shutdown bound: what is left is dropped and counted. */
            while (k->count) {
                line_release(k->ring[k->head]);
                k->head = (k->head + 1) % k->cap;
                k->count--;
                atomic_fetch_add(&k->dropped, 1);
            }
            pthread_mutex_unlock(&k->mu);
            break;
        }
        size_t n = 0;
        while (batch && k->count && n < k->c.batch_max) {
            batch[n++] = (struct item){.line = k->ring[k->head]};
            k->queued_bytes -= k->ring[k->head]->len;
            k->head = (k->head + 1) % k->cap;
            k->count--;
        }
        pthread_mutex_unlock(&k->mu);
        if (!batch)
            break;
        deliver(k, batch, n);
        for (size_t i = 0; i < n; i++) {
            json_decref(batch[i].rec);
            if (batch[i].owned)
                free(batch[i].payload);
            line_release(batch[i].line);
        }
    }
    free(batch);
    return NULL;
}

/* ---- start, stop, offer ---- */

static char *dup_opt(const char *s, int *fail)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *fail = 1;
    return d;
}

static int copy_config(struct audit_sink_config *d, const struct audit_sink_config *s)
{
    int fail = 0;
    *d = *s;
    d->name = dup_opt(s->name, &fail);
    d->host = dup_opt(s->host, &fail);
    d->port = dup_opt(s->port, &fail);
    d->app_name = dup_opt(s->app_name, &fail);
    d->sd_id = dup_opt(s->sd_id, &fail);
    d->url = dup_opt(s->url, &fail);
    d->token_file = dup_opt(s->token_file, &fail);
    d->index = dup_opt(s->index, &fail);
    d->sourcetype = dup_opt(s->sourcetype, &fail);
    d->tls_ca = dup_opt(s->tls_ca, &fail);
    d->tls_cert = dup_opt(s->tls_cert, &fail);
    d->tls_key = dup_opt(s->tls_key, &fail);
    d->server_name = dup_opt(s->server_name, &fail);
    return fail ? -1 : 0;
}

/* The Authorization header from the token file; the token itself never reaches a log. */
static int load_token(struct sink *k)
{
    if (!k->c.token_file)
        return 0;
    FILE *f = fopen(k->c.token_file, "re");
    char buf[SINK_TOKEN_MAX + 2];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    int err = f ? ferror(f) : errno;
    if (f)
        fclose(f);
    if (!f || err) {
        gw_log_error("audit_sink_token", "audit sink %s: cannot read token_file %s: %s", k->c.name,
                     k->c.token_file, strerror(f ? EIO : err));
        return -1;
    }
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    size_t ok = 0;
    while (ok < n && buf[ok] > 32 && buf[ok] < 127)
        ok++;
    if (n == 0 || n > SINK_TOKEN_MAX || ok != n) {
        gw_log_error("audit_sink_token",
                     "audit sink %s: token_file %s must hold one token of 1-%d printable "
                     "characters (no spaces or line breaks inside)",
                     k->c.name, k->c.token_file, SINK_TOKEN_MAX);
        OPENSSL_cleanse(buf, sizeof buf);
        return -1;
    }
    const char *scheme = k->c.format == AUDIT_SINK_HEC    ? "Splunk"
                         : k->c.format == AUDIT_SINK_BULK ? "ApiKey"
                                                          : "Bearer";
    size_t len = strlen("Authorization: ") + strlen(scheme) + 1 + n + 1;
    k->auth = malloc(len);
    if (k->auth) {
        int w = snprintf(k->auth, len, "Authorization: %s ", scheme);
        memcpy(k->auth + w, buf, n + 1);
    }
    OPENSSL_cleanse(buf, sizeof buf);
    return k->auth ? 0 : -1;
}

static int tls_setup(struct sink *k)
{
    if (k->c.kind != AUDIT_SINK_SYSLOG || k->c.transport != AUDIT_SINK_TLS)
        return 0;
    k->tls = SSL_CTX_new(TLS_client_method());
    if (!k->tls)
        return -1;
    SSL_CTX_set_min_proto_version(k->tls, TLS1_2_VERSION);
    SSL_CTX_set_verify(k->tls, SSL_VERIFY_PEER, NULL);
    const char *what = NULL;
    if (k->c.tls_ca ? SSL_CTX_load_verify_locations(k->tls, k->c.tls_ca, NULL) != 1
                    : SSL_CTX_set_default_verify_paths(k->tls) != 1)
        what = "cannot load the CA file (tls.ca)";
    else if (k->c.tls_cert &&
             (SSL_CTX_use_certificate_chain_file(k->tls, k->c.tls_cert) != 1 ||
              SSL_CTX_use_PrivateKey_file(k->tls, k->c.tls_key, SSL_FILETYPE_PEM) != 1 ||
              SSL_CTX_check_private_key(k->tls) != 1))
        what = "cannot load the client certificate and key (tls.cert, tls.key)";
    if (what) {
        tls_why(k, what);
        gw_log_error("audit_sink_tls", "audit sink %s: %s", k->c.name, k->why);
        return -1;
    }
    return 0;
}

static void sink_free(struct sink *k)
{
    stream_close(k);
    SSL_CTX_free(k->tls);
    if (k->curl)
        curl_easy_cleanup(k->curl);
    curl_slist_free_all(k->headers);
    gw_buf_free(&k->resp);
    if (k->auth) {
        OPENSSL_cleanse(k->auth, strlen(k->auth));
        free(k->auth);
    }
    while (k->ring && k->count) {
        line_release(k->ring[k->head]);
        k->head = (k->head + 1) % k->cap;
        k->count--;
    }
    free(k->ring);
    free(k->c.name);
    free(k->c.host);
    free(k->c.port);
    free(k->c.app_name);
    free(k->c.sd_id);
    free(k->c.url);
    free(k->c.token_file);
    free(k->c.index);
    free(k->c.sourcetype);
    free(k->c.tls_ca);
    free(k->c.tls_cert);
    free(k->c.tls_key);
    free(k->c.server_name);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
}

int audit_sinks_start(const struct audit_sink_config *s, size_t n, const char *instance)
{
    if (S.s || n == 0)
        return S.s ? -1 : 0;
    S.s = calloc(n, sizeof *S.s);
    S.instance = strdup(instance ? instance : "toolgate");
    snprintf(S.procid, sizeof S.procid, "%ld", (long)getpid());
    if (!S.s || !S.instance)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        struct sink *k = &S.s[i];
        pthread_mutex_init(&k->mu, NULL);
        gw_cond_init_monotonic(&k->cv);
        k->fd = -1;
        S.n = i + 1;
        if (copy_config(&k->c, &s[i]) != 0)
            goto fail;
        k->cap = (size_t)k->c.queue;
        k->ring = calloc(k->cap, sizeof *k->ring);
        if (!k->ring || load_token(k) != 0 || tls_setup(k) != 0 ||
            (k->c.kind == AUDIT_SINK_HTTP && http_setup(k) != 0))
            goto fail;
        if (k->auth && strncmp(k->c.url, "http://", 7) == 0 && !strstr(k->c.url, "://127.") &&
            !strstr(k->c.url, "://localhost") && !strstr(k->c.url, "://[::1]"))
            gw_log_warn("audit_sink_plaintext",
                        "audit sink %s sends its token over plain http to a host that is not "
                        "loopback; use https",
                        k->c.name);
    }
    for (size_t i = 0; i < n; i++) {
        struct sink *k = &S.s[i];
        if (pthread_create(&k->thread, NULL, sink_main, k) != 0) {
            gw_log_error("audit_sink_start", "audit sink %s: cannot start its thread", k->c.name);
            goto fail;
        }
        k->started = 1;
        pthread_setname_np(k->thread, "tg-audit-sink");
    }
    atomic_store(&S.active, 1);
    gw_log_info("audit_sinks_started", "%zu audit sink(s) started", n);
    return 0;
fail:
    audit_sinks_stop();
    return -1;
}

void audit_sinks_stop(void)
{
    if (!S.s)
        return;
    atomic_store(&S.active, 0);
    for (size_t i = 0; i < S.n; i++) {
        struct sink *k = &S.s[i];
        pthread_mutex_lock(&k->mu);
        k->stopping = 1;
        k->stop_deadline_ms = gw_mono_ms() + k->c.timeout_ms + k->c.batch_wait_ms;
        pthread_cond_broadcast(&k->cv);
        pthread_mutex_unlock(&k->mu);
    }
    for (size_t i = 0; i < S.n; i++) {
        struct sink *k = &S.s[i];
        if (k->started)
            pthread_join(k->thread, NULL);
        /* What no thread sent any more is counted as dropped before it goes. */
        atomic_fetch_add(&k->dropped, k->count);
        uint64_t dropped = atomic_load(&k->dropped);
        if (dropped)
            gw_log_warn("audit_sink_stopped",
                        "audit sink %s stopped; %llu records were never sent to it (the store "
                        "has them: toolgate audit export --since)",
                        k->c.name, (unsigned long long)dropped);
        sink_free(k);
    }
    free(S.s);
    free(S.instance);
    S.s = NULL;
    S.instance = NULL;
    S.n = 0;
}

int audit_sinks_active(void)
{
    return atomic_load(&S.active);
}

void audit_sinks_offer(const char *line, size_t len, int call)
{
    if (!atomic_load(&S.active))
        return;
    struct audit_line *l = malloc(sizeof *l + len + 1);
    if (l) {
        atomic_init(&l->refs, 1); /* the offer's own, released below */
        l->len = len;
        memcpy(l->data, line, len);
        l->data[len] = '\0';
    }
    for (size_t i = 0; i < S.n; i++) {
        struct sink *k = &S.s[i];
        if (k->c.payload == AUDIT_SINK_OCSF && !call)
            continue;
        pthread_mutex_lock(&k->mu);
        if (!l || k->count >= k->cap || k->queued_bytes + len > SINK_QUEUE_MAX_BYTES ||
            k->stopping) {
            atomic_fetch_add(&k->dropped, 1);
        } else {
            atomic_fetch_add(&l->refs, 1);
            k->ring[(k->head + k->count) % k->cap] = l;
            k->count++;
            k->queued_bytes += len;
            if (k->count == 1 || k->count == k->c.batch_max)
                pthread_cond_signal(&k->cv);
        }
        pthread_mutex_unlock(&k->mu);
    }
    line_release(l);
}

size_t audit_sinks_stats(struct audit_sink_stats *out, size_t max)
{
    size_t i;
    for (i = 0; S.s && i < S.n && i < max; i++) {
        struct sink *k = &S.s[i];
        struct audit_sink_stats *o = &out[i];
        memset(o, 0, sizeof *o);
        snprintf(o->name, sizeof o->name, "%s", k->c.name);
        o->sent = atomic_load(&k->sent);
        o->dropped = atomic_load(&k->dropped);
        o->failed = atomic_load(&k->failed);
        o->retries = atomic_load(&k->retries);
        o->truncated = atomic_load(&k->truncated);
        o->up = atomic_load(&k->up);
        pthread_mutex_lock(&k->mu);
        o->queued = k->count;
        pthread_mutex_unlock(&k->mu);
        o->capacity = k->cap;
    }
    return S.s ? S.n : 0;
}

void audit_sinks_metrics(struct gw_metrics_out *out)
{
    struct audit_sink_stats st[AUDIT_SINKS_MAX];
    size_t n = audit_sinks_stats(st, AUDIT_SINKS_MAX);
    if (n == 0)
        return;
    static const struct {
        const char *name, *type, *help;
        size_t at;
    } fam[] = {
        {"toolgate_audit_sink_sent_total", "counter", "Audit records a sink delivered.",
         offsetof(struct audit_sink_stats, sent)},
        {"toolgate_audit_sink_dropped_total", "counter",
         "Audit records a sink never sent (its queue was full, or shutdown ran out of time).",
         offsetof(struct audit_sink_stats, dropped)},
        {"toolgate_audit_sink_failed_total", "counter",
         "Audit records a sink's receiver refused for good.",
         offsetof(struct audit_sink_stats, failed)},
        {"toolgate_audit_sink_retries_total", "counter",
         "Delivery attempts of a sink that failed and were retried.",
         offsetof(struct audit_sink_stats, retries)},
        {"toolgate_audit_sink_truncated_total", "counter",
         "Syslog messages cut to the sink's max_length.",
         offsetof(struct audit_sink_stats, truncated)},
        {"toolgate_audit_sink_queue_depth", "gauge", "Audit records waiting in a sink's queue.",
         offsetof(struct audit_sink_stats, queued)},
        {"toolgate_audit_sink_queue_capacity", "gauge",
         "Audit records a sink's queue holds (when full, new records are dropped).",
         offsetof(struct audit_sink_stats, capacity)},
    };
    for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
        metrics_family(out, fam[f].name, fam[f].type, fam[f].help);
        for (size_t i = 0; i < n; i++) {
            struct metrics_label l = {"sink", st[i].name};
            uint64_t v;
            memcpy(&v, (const char *)&st[i] + fam[f].at, sizeof v);
            metrics_sample_u64(out, fam[f].name, &l, 1, v);
        }
    }
    metrics_family(out, "toolgate_audit_sink_up", "gauge",
                   "1 when a sink's last delivery attempt succeeded.");
    for (size_t i = 0; i < n; i++) {
        struct metrics_label l = {"sink", st[i].name};
        metrics_sample_u64(out, "toolgate_audit_sink_up", &l, 1, st[i].up ? 1 : 0);
    }
}
