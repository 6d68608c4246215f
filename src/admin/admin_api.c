/*
 * admin_api: the JSON API of the admin listener (admin_api.h). The dispatcher, the query
 * string parser, the pool jobs that compute answers off the loop, and the one topic the
 * admin code answers itself (the configuration); the modules answer the rest.
 */
#include "admin/admin_api.h"
#include "core/generation.h"
#include "core/module.h"
#include "lib/cfg.h"
#include "lib/digest.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define API_PREFIX "/admin/api/"
#define MAX_TOPIC 32
#define CONFIG_MAX_BYTES (16u * 1024 * 1024)

static void send_json(struct gw_conn *c, int status, json_t *body)
{
    static const struct gw_header extra[] = {
        {GW_SLICE_LIT("Cache-Control"), GW_SLICE_LIT("no-store")},
        {GW_SLICE_LIT("X-Content-Type-Options"), GW_SLICE_LIT("nosniff")},
    };
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!text) {
        static const char oom[] = "{\"error\":\"out of memory\"}";
        gw_conn_respond(c, 503, "application/json", oom, sizeof oom - 1, extra, 2);
    } else {
        gw_conn_respond(c, status, "application/json", text, strlen(text), extra, 2);
    }
    free(text);
    gw_conn_end(c, 0);
}

static void send_error(struct gw_conn *c, int status, const char *message)
{
    json_t *body = json_pack("{s:s}", "error", message);
    send_json(c, status, body);
    json_decref(body);
}

/* ---- query strings ---- */

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes s into out (at most max bytes); '+' is a space. Returns the length or -1. */
static long decode_part(const char *s, size_t n, char *out, size_t max)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            int hi = i + 1 < n ? hex_value(s[i + 1]) : -1;
            int lo = i + 2 < n ? hex_value(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if ((unsigned char)ch < 0x20 || ch == 0x7f || len >= max)
            return -1;
        out[len++] = ch;
    }
    out[len] = '\0';
    return (long)len;
}

int admin_api_parse_query(struct gw_slice query, json_t **out, char *err, size_t errlen)
{
    json_t *params = json_object();
    size_t count = 0;
    if (!params) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *p = query.ptr, *end = query.ptr ? query.ptr + query.len : NULL;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if (stop == p) {
            p = stop + 1;
            continue;
        }
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *name_end = eq ? eq : stop;
        char name[ADMIN_API_MAX_NAME + 1], value[ADMIN_API_MAX_VALUE + 1];
        long nl = decode_part(p, (size_t)(name_end - p), name, ADMIN_API_MAX_NAME);
        if (nl <= 0) {
            snprintf(err, errlen,
                     "a query parameter's name is empty, longer than %d bytes or "
                     "badly encoded",
                     ADMIN_API_MAX_NAME);
            goto fail;
        }
        for (long i = 0; i < nl; i++)
            if (!((name[i] >= 'a' && name[i] <= 'z') || name[i] == '_')) {
                snprintf(err, errlen, "query parameter names are lower-case letters and '_'");
                goto fail;
            }
        long vl = eq ? decode_part(eq + 1, (size_t)(stop - eq - 1), value, ADMIN_API_MAX_VALUE) : 0;
        if (!eq)
            value[0] = '\0';
        if (vl < 0) {
            snprintf(err, errlen,
                     "the value of query parameter \"%s\" is longer than %d bytes, badly "
                     "encoded, or has control characters",
                     name, ADMIN_API_MAX_VALUE);
            goto fail;
        }
        if (json_object_get(params, name)) {
            snprintf(err, errlen, "query parameter \"%s\" is given twice", name);
            goto fail;
        }
        if (++count > ADMIN_API_MAX_PARAMS) {
            snprintf(err, errlen, "more than %d query parameters", ADMIN_API_MAX_PARAMS);
            goto fail;
        }
        json_t *v = json_stringn(value, (size_t)vl);
        if (!v) {
            snprintf(err, errlen, "the value of query parameter \"%s\" is not valid UTF-8", name);
            goto fail;
        }
        json_object_set_new(params, name, v);
        p = stop + 1;
    }
    *out = params;
    return 0;
fail:
    json_decref(params);
    return -1;
}

/* ---- the configuration topic ---- */

/*
 * The running generation's file, secrets elided. The generation keeps no copy of the text,
 * so the file is read again; when its digest is no longer the generation's (the file was
 * edited since it was loaded), nothing of it is shown, since it is not what runs.
 */
static int topic_config(const struct gw_config *cfg, const json_t *params, json_t **out)
{
    if (json_object_size(params) != 0) {
        *out = json_pack("{s:s}", "error", "/admin/api/config takes no query parameters");
        return 400;
    }
    json_t *body = json_pack("{s:s?, s:s}", "path", cfg->path, "sha256", cfg->config_hash);
    if (!body)
        return 503;
    char *text = NULL;
    size_t len = 0;
    struct cfg_error err = {{0}};
    if (!cfg->path || cfg_read_file(cfg->path, CONFIG_MAX_BYTES, &text, &len, &err) != 0) {
        json_object_set_new(body, "config", json_null());
        json_object_set_new(body, "note",
                            json_string("the configuration file cannot be read again now"));
        goto done;
    }
    char hex[65];
    gw_sha256_hex(text, len, hex);
    if (strcmp(hex, cfg->config_hash) != 0) {
        json_object_set_new(body, "config", json_null());
        json_object_set_new(body, "file_changed", json_true());
        json_object_set_new(body, "note",
                            json_string("the file on disk is not the running generation any "
                                        "more; it is shown once it is loaded"));
        goto done;
    }
    struct cfg_doc doc = {0};
    if (cfg_load_string(text, len, cfg->path, &doc, &err) != 0) {
        json_object_set_new(body, "config", json_null());
        goto done;
    }
    json_object_set_new(body, "config", doc.root ? admin_elide_node(doc.root) : json_object());
    json_object_set_new(body, "elided", json_string("[elided]"));
    cfg_doc_free(&doc);
done:
    if (text) {
        memset(text, 0, len);
        free(text);
    }
    *out = body;
    return 200;
}

/* Which code answers a topic: 200..599 with *out set, 0 when no one serves it. */
static int answer_topic(const struct gw_config *cfg, const char *topic, const json_t *params,
                        json_t **out)
{
    if (strcmp(topic, "config") == 0)
        return topic_config(cfg, params, out);
    for (size_t m = 0; m < gw_n_modules; m++) {
        if (!gw_modules[m]->admin_api)
            continue;
        int status = gw_modules[m]->admin_api(cfg, topic, params, out);
        if (status != 0)
            return status;
    }
    return 0;
}

/* ---- pool jobs ---- */

#define MAX_ACTION_ID 64
#define MAX_ACTION_BODY 4096
/* An approver's token is at most this long (as long as the identity layer takes one). */
#define ADMIN_API_MAX_PERSON_TOKEN 8192

/* One answer computed on a pool thread: a topic (GET), or an action when `action` is set. */
struct api_job {
    uv_work_t work;
    struct gw_conn *conn; /* NULL once the client has gone */
    struct gw_worker *worker;
    const struct gw_config *cfg;
    char topic[MAX_TOPIC + 1];
    json_t *params; /* the query's parameters, or the action's body */
    json_t *out;
    int status;
    int action;
    char id[MAX_ACTION_ID + 1];
    char approver[80];
    /* The action's X-Approver-Token (owned, wiped when the job ends), or NULL. */
    char *person_token;
    size_t person_len;
    int person_malformed;
};

/* Wipes and frees the job's copy of an approver's token. */
static void job_forget_token(struct api_job *job)
{
    if (job->person_token) {
        OPENSSL_cleanse(job->person_token, job->person_len);
        free(job->person_token);
    }
    job->person_token = NULL;
    job->person_len = 0;
}

static void job_client_gone(void *arg)
{
    struct api_job *job = arg;
    job->conn = NULL;
}

static void job_run(uv_work_t *work)
{
    struct api_job *job = work->data;
    if (!job->action) {
        job->status = answer_topic(job->cfg, job->topic, job->params, &job->out);
        return;
    }
    /* A person's own token is verified here, off the loop, by the module that verifies. */
    struct gw_identity person = {0};
    struct gw_admin_actor actor = {.credential = job->approver};
    if (job->person_malformed) {
        actor.person = GW_PERSON_MALFORMED;
    } else if (job->person_token) {
        actor.person = GW_PERSON_REFUSED;
        for (size_t m = 0; m < gw_n_modules; m++) {
            if (!gw_modules[m]->verify_person)
                continue;
            struct gw_slice token = {job->person_token, job->person_len};
            int rc = gw_modules[m]->verify_person(job->cfg, token, &person);
            actor.person = rc == 0    ? GW_PERSON_VERIFIED
                           : rc == -2 ? GW_PERSON_UNAVAILABLE
                                      : GW_PERSON_REFUSED;
            break;
        }
        if (actor.person == GW_PERSON_VERIFIED)
            actor.identity = &person;
        job_forget_token(job);
    }
    job->status = 0;
    for (size_t m = 0; m < gw_n_modules && job->status == 0; m++)
        if (gw_modules[m]->admin_action)
            job->status = gw_modules[m]->admin_action(job->cfg, job->topic, job->id, job->params,
                                                      &actor, &job->out);
    gw_identity_clear(&person);
}

static void job_done(uv_work_t *work, int status)
{
    struct api_job *job = work->data;
    if (job->conn) {
        gw_conn_set_hooks(job->conn, NULL, NULL, NULL);
        if (status != 0)
            send_error(job->conn, 503, "the request was cancelled");
        else if (job->status == 0)
            send_error(job->conn, 404,
                       job->action
                           ? "no such admin API action; see docs/operations.md, \"Admin API\""
                           : "no such admin API endpoint; see docs/operations.md, \"Admin API\"");
        else if (!job->out)
            send_error(job->conn, job->status >= 400 ? job->status : 503,
                       "the answer is unavailable now");
        else
            send_json(job->conn, job->status, job->out);
    }
    json_decref(job->out);
    json_decref(job->params);
    job_forget_token(job);
    gw_generation_release(job->cfg);
    gw_worker_unref(job->worker);
    free(job);
}

/*
 * Queues a job on the worker's pool; the connection is answered when it is done (or not at
 * all when the client has gone). Takes the job's params. Returns 0, or -1 after answering.
 */
static int queue_job(struct gw_conn *c, const struct gw_config *cfg, struct api_job *job)
{
    job->conn = c;
    job->worker = gw_conn_worker(c);
    /* The job runs on a pool thread: a reload may retire the worker's generation meanwhile. */
    gw_generation_hold(cfg);
    job->cfg = cfg;
    job->work.data = job;
    gw_conn_set_hooks(c, job_client_gone, NULL, job);
    gw_worker_ref(job->worker);
    if (uv_queue_work(gw_worker_loop(job->worker), &job->work, job_run, job_done) != 0) {
        gw_conn_set_hooks(c, NULL, NULL, NULL);
        gw_generation_release(cfg);
        gw_worker_unref(job->worker);
        json_decref(job->params);
        job_forget_token(job);
        free(job);
        send_error(c, 503, "the admin API cannot take more work now");
        return -1;
    }
    return 0;
}

/* ---- actions (POST /admin/api/<topic>/<id>) ---- */

/* Who acts: the admin credential, by a prefix of its hash (never the token itself). */
static void approver_of(const struct http1_parser *p, const struct gw_config *cfg, char *out,
                        size_t size)
{
    struct gw_slice auth = http1_header(p, "Authorization");
    if (!cfg->admin.has_token || !auth.ptr || auth.len <= 7) {
        snprintf(out, size, "admin:loopback");
        return;
    }
    struct gw_slice tok = {auth.ptr + 7, auth.len - 7};
    while (tok.len && tok.ptr[0] == ' ') {
        tok.ptr++;
        tok.len--;
    }
    while (tok.len && (tok.ptr[tok.len - 1] == ' ' || tok.ptr[tok.len - 1] == '\t'))
        tok.len--;
    uint8_t h[GW_SHA256_LEN];
    char hex[2 * GW_SHA256_LEN + 1];
    gw_sha256(tok.ptr, tok.len, h);
    gw_hex(h, 6, hex);
    snprintf(out, size, "admin-token:%s", hex);
}

/*
 * An approver's own token (X-Approver-Token: <JWT>), copied for the job: the module that asks
 * for one decides what its absence means. Sent twice, empty, or longer than a token may be
 * is malformed. Returns 0, or -1 (memory).
 */
static int person_token_of(const struct http1_parser *p, struct api_job *job)
{
    size_t count = http1_header_count(p, "X-Approver-Token");
    if (count == 0)
        return 0;
    struct gw_slice v = http1_header(p, "X-Approver-Token");
    while (v.len && (v.ptr[0] == ' ' || v.ptr[0] == '\t')) {
        v.ptr++;
        v.len--;
    }
    while (v.len && (v.ptr[v.len - 1] == ' ' || v.ptr[v.len - 1] == '\t'))
        v.len--;
    if (count > 1 || v.len == 0 || v.len > ADMIN_API_MAX_PERSON_TOKEN) {
        job->person_malformed = 1;
        return 0;
    }
    if (!(job->person_token = malloc(v.len)))
        return -1;
    memcpy(job->person_token, v.ptr, v.len);
    job->person_len = v.len;
    return 0;
}

/*
 * A page in a browser must not act through the admin listener (a loopback listener without a
 * token trusts its peer): the body must be JSON (a cross-origin page cannot send that without
 * a preflight the listener never answers), and an Origin, when sent, must be the listener's.
 */
static int action_origin_ok(const struct http1_parser *p)
{
    struct gw_slice ct = http1_header(p, "Content-Type");
    if (!ct.ptr || ct.len < 16 || strncasecmp(ct.ptr, "application/json", 16) != 0)
        return 0;
    struct gw_slice origin = http1_header(p, "Origin"), host = http1_header(p, "Host");
    if (!origin.ptr)
        return 1;
    const char *sep = memchr(origin.ptr, ':', origin.len);
    if (!sep || (size_t)(sep - origin.ptr) + 3 > origin.len || sep[1] != '/' || sep[2] != '/')
        return 0;
    struct gw_slice oh = {sep + 3, origin.len - (size_t)(sep + 3 - origin.ptr)};
    return host.ptr && oh.len == host.len && strncasecmp(oh.ptr, host.ptr, host.len) == 0;
}

static void serve_action(struct gw_conn *c, struct http1_parser *p, const struct gw_config *cfg,
                         struct gw_slice topic, struct gw_slice id)
{
    if (!action_origin_ok(p)) {
        send_error(c, 403,
                   "admin actions take a JSON body (Content-Type: application/json) "
                   "and no foreign Origin");
        return;
    }
    if (p->body.len > MAX_ACTION_BODY) {
        send_error(c, 413, "the body is larger than 4 KiB");
        return;
    }
    json_t *body =
        json_loadb(p->body.data ? p->body.data : "", p->body.len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        send_error(c, 400, "the body is not a JSON object");
        return;
    }
    struct api_job *job = calloc(1, sizeof *job);
    if (!job) {
        json_decref(body);
        send_error(c, 503, "out of memory");
        return;
    }
    /* An action may write a store (a transaction, a round trip): never on the loop. */
    job->action = 1;
    memcpy(job->topic, topic.ptr, topic.len);
    memcpy(job->id, id.ptr, id.len);
    approver_of(p, cfg, job->approver, sizeof job->approver);
    if (person_token_of(p, job) != 0) {
        json_decref(body);
        free(job);
        send_error(c, 503, "out of memory");
        return;
    }
    job->params = body;
    queue_job(c, cfg, job);
}

int admin_api_serve(struct gw_conn *c, struct http1_parser *p, const struct gw_config *cfg)
{
    static const size_t prefix_len = sizeof API_PREFIX - 1;
    if (p->path.len < prefix_len || memcmp(p->path.ptr, API_PREFIX, prefix_len) != 0)
        return 0;
    struct gw_slice topic = {p->path.ptr + prefix_len, p->path.len - prefix_len};
    const char *slash = memchr(topic.ptr, '/', topic.len);
    if (slash) {
        struct gw_slice t = {topic.ptr, (size_t)(slash - topic.ptr)};
        struct gw_slice id = {slash + 1, topic.len - t.len - 1};
        int ok = t.len > 0 && t.len <= MAX_TOPIC && id.len > 0 && id.len <= MAX_ACTION_ID;
        for (size_t i = 0; ok && i < t.len; i++)
            ok = (t.ptr[i] >= 'a' && t.ptr[i] <= 'z') || t.ptr[i] == '_';
        for (size_t i = 0; ok && i < id.len; i++)
            ok = (id.ptr[i] >= 'a' && id.ptr[i] <= 'z') || (id.ptr[i] >= '0' && id.ptr[i] <= '9') ||
                 id.ptr[i] == '-';
        /* A GET of an action's path names no endpoint (what it acts on is listed by topic). */
        if (!ok || p->method == GW_HTTP_GET) {
            send_error(c, 404, "no such admin API endpoint; see docs/operations.md, \"Admin API\"");
        } else if (p->method != GW_HTTP_POST) {
            static const struct gw_header allow = {GW_SLICE_LIT("Allow"), GW_SLICE_LIT("POST")};
            static const char body[] = "{\"error\":\"method not allowed: use POST\"}";
            gw_conn_respond(c, 405, "application/json", body, sizeof body - 1, &allow, 1);
            gw_conn_end(c, 0);
        } else {
            serve_action(c, p, cfg, t, id);
        }
        return 1;
    }
    if (p->method != GW_HTTP_GET) {
        static const struct gw_header allow = {GW_SLICE_LIT("Allow"), GW_SLICE_LIT("GET")};
        static const char body[] = "{\"error\":\"method not allowed: the admin API is GET only\"}";
        gw_conn_respond(c, 405, "application/json", body, sizeof body - 1, &allow, 1);
        gw_conn_end(c, 0);
        return 1;
    }
    int topic_ok = topic.len > 0 && topic.len <= MAX_TOPIC;
    for (size_t i = 0; topic_ok && i < topic.len; i++)
        topic_ok = (topic.ptr[i] >= 'a' && topic.ptr[i] <= 'z') || topic.ptr[i] == '_';
    if (!topic_ok) {
        send_error(c, 404, "no such admin API endpoint; see docs/operations.md, \"Admin API\"");
        return 1;
    }
    char err[256];
    json_t *params = NULL;
    if (admin_api_parse_query(p->query, &params, err, sizeof err) != 0) {
        send_error(c, 400, err);
        return 1;
    }
    if (gw_slice_eq(topic, "events")) {
        admin_feed_serve(c, params);
        json_decref(params);
        return 1;
    }
    struct api_job *job = calloc(1, sizeof *job);
    if (!job) {
        json_decref(params);
        send_error(c, 503, "out of memory");
        return 1;
    }
    memcpy(job->topic, topic.ptr, topic.len);
    job->params = params;
    queue_job(c, cfg, job);
    return 1;
}
