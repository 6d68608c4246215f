/*
 * audit layer: the pipeline slot. check() queues the decision record before the request may
 * be forwarded, and denies with 503 (audit.unavailable) when it cannot: nothing leaves
 * unaudited. on_response hashes what goes back to the client; on_complete queues the
 * completion record, linked to the decision record by request id.
 */
#include "layers/audit/audit.h"
#include "layers/audit/audit_canon.h"
#include "layers/audit/audit_record.h"
#include "layers/audit/audit_sink.h"
#include "layers/audit/audit_writer.h"
#include "layers/layer.h"

#include "lib/digest.h"
#include "lib/log.h"
#include "lib/timeutil.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Bytes reserved for the canonical text of one answer before it is written. */
#define AUDIT_RESULT_CANON_HINT 8192
/* A thread's buffer for that text is kept between answers up to this size. */
#define AUDIT_RESULT_CANON_KEEP (256 * 1024)

/* One buffer per thread for the canonical text of an answer: no allocation per answer. */
static pthread_key_t canon_key;
static pthread_once_t canon_once = PTHREAD_ONCE_INIT;
static int canon_key_ok;

static void canon_buf_free(void *p)
{
    gw_buf_free(p);
    free(p);
}

static void canon_key_make(void)
{
    canon_key_ok = pthread_key_create(&canon_key, canon_buf_free) == 0;
}

static struct gw_buf *canon_buf(void)
{
    pthread_once(&canon_once, canon_key_make);
    if (!canon_key_ok)
        return NULL;
    struct gw_buf *b = pthread_getspecific(canon_key);
    if (!b && (b = calloc(1, sizeof *b)) && pthread_setspecific(canon_key, b) != 0) {
        free(b);
        b = NULL;
    }
    return b;
}

static const struct audit_config default_record_config = {.arguments = AUDIT_ARGS_REDACTED};

static const struct audit_config *record_config(const struct gw_request *req)
{
    if (audit_config_of(req->cfg))
        return audit_config_of(req->cfg);
    return &default_record_config;
}

static void state_free(void *p)
{
    struct audit_req_state *st = p;
    if (!st)
        return;
    EVP_MD_CTX_free(st->result_md);
    free(st);
}

static struct audit_req_state *state_of(struct gw_request *req)
{
    if (!req->layer_state[GW_STAGE_AUDIT]) {
        req->layer_state[GW_STAGE_AUDIT] = calloc(1, sizeof(struct audit_req_state));
        req->layer_state_free[GW_STAGE_AUDIT] = state_free;
    }
    return req->layer_state[GW_STAGE_AUDIT];
}

static int unavailable(struct gw_decision *out, int why)
{
    gw_log(GW_LOG_ERROR, "audit_unavailable", NULL, NULL,
           "request refused: its audit record could not be queued (%s)",
           why == -EAGAIN ? "queue full"
           : why == -EIO  ? "store failed"
                          : "writer not running");
    return gw_decision_deny(out, 503, JSONRPC_INTERNAL_ERROR, "audit.unavailable",
                            "The gateway cannot record this call right now; try again later.");
}

static int audit_check(struct gw_request *req, struct gw_decision *out)
{
    struct audit_req_state *st = state_of(req);
    if (!st)
        return unavailable(out, -ENOMEM);
    struct audit_item *it = audit_record_decision_item(req, record_config(req));
    if (!it)
        return unavailable(out, -ENOMEM);
    int rc = audit_submit_item(it, NULL, NULL);
    if (rc != 0)
        return unavailable(out, rc);
    st->decision_queued = 1;
    return GW_PASS;
}

static int audit_on_response(struct gw_request *req, json_t *msg, int *modified,
                             struct gw_decision *out)
{
    struct audit_req_state *st = state_of(req);
    if (!st || !msg)
        return GW_PASS;
    if (!st->result_md) {
        st->result_md = EVP_MD_CTX_new();
        if (!st->result_md || EVP_DigestInit_ex(st->result_md, gw_sha256_md(), NULL) != 1) {
            EVP_MD_CTX_free(st->result_md);
            st->result_md = NULL;
            return GW_PASS;
        }
    }
    /*
     * Audit runs last on the response path: this is what the client receives. Room for a
     * typical answer up front: growing from empty by doubling cost more than the walk itself.
     */
    struct gw_buf own = {0}, *b = canon_buf();
    if (!b)
        b = &own;
    gw_buf_reset(b);
    if (gw_buf_reserve(b, AUDIT_RESULT_CANON_HINT) == 0 && audit_canon_append(b, msg) == 0) {
        EVP_DigestUpdate(st->result_md, b->data, b->len);
        st->messages++;
    }
    if (b == &own || b->cap > AUDIT_RESULT_CANON_KEEP)
        gw_buf_free(b);
    return GW_PASS;
}

static void audit_on_complete(struct gw_request *req)
{
    struct audit_req_state *st = req->layer_state[GW_STAGE_AUDIT];
    if (!st || !st->decision_queued)
        return;
    char hex[65], *result = NULL;
    if (st->result_md && st->messages) {
        unsigned char md[32];
        unsigned int len = 0;
        if (EVP_DigestFinal_ex(st->result_md, md, &len) == 1 && len == 32) {
            gw_hex(md, sizeof md, hex);
            result = hex;
        }
    }
    struct audit_item *it = audit_record_completion_item(req, record_config(req), result);
    int hold = req->completion_durable && record_config(req)->durability == AUDIT_DURABLE_COMMIT;
    int rc = !it ? -ENOMEM
                 : audit_submit_item(it, hold ? req->completion_durable : NULL,
                                     hold ? req->completion_arg : NULL);
    if (rc == 0 && hold)
        req->completion_pending = 1;
    if (rc != 0) {
        req->completion_lost = 1;
        gw_log(GW_LOG_ERROR, "audit_completion_lost", req->id, NULL,
               "the completion record of this request could not be queued");
    }
    st->decision_queued = 0;
}

const struct gw_layer_ops audit_layer = {
    .check = audit_check,
    .on_response = audit_on_response,
    .on_complete = audit_on_complete,
};

int audit_start(const struct gw_config *cfg)
{
    struct audit_config defaults;
    const struct audit_config *ac = audit_config_of(cfg);
    int rc;
    if (!ac) {
        if (audit_config_defaults(&defaults) != 0)
            return -ENOMEM;
        rc = audit_writer_start(&defaults, cfg ? cfg->config_hash : NULL);
        free(defaults.store);
        free(defaults.instance_id);
        return rc;
    }
    /* The sinks first, so the start record reaches them; a writer that fails stops them. */
    if (audit_sinks_start(ac->sinks, ac->n_sinks, ac->instance_id) != 0)
        return -EINVAL;
    rc = audit_writer_start(ac, cfg->config_hash[0] ? cfg->config_hash : NULL);
    if (rc != 0)
        audit_sinks_stop();
    return rc;
}
