#include "layers/audit/audit_verify.h"
#include "layers/audit/audit_canon.h"
#include "layers/audit/audit_chain.h"
#include "layers/audit/audit_fastcheck.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int audit_verifier_init(struct audit_verifier *v, EVP_PKEY *pub, int live)
{
    memset(v, 0, sizeof *v);
    v->pub = pub;
    v->live = live;
    if (audit_chain_hasher_init(&v->hasher) != 0 || audit_key_id(pub, v->key_id) != 0) {
        audit_chain_hasher_free(&v->hasher);
        return -1;
    }
    return 0;
}

void audit_verifier_free(struct audit_verifier *v)
{
    audit_chain_hasher_free(&v->hasher);
    free(v->trusted.record);
    v->trusted.record = NULL;
    free(v->inst);
    v->inst = NULL;
    v->n_inst = 0;
}

static int problem(struct audit_verifier *v, const char *instance, uint64_t seq, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));

static int problem(struct audit_verifier *v, const char *instance, uint64_t seq, const char *fmt,
                   ...)
{
    if (v->bad)
        return 1;
    v->bad = 1;
    snprintf(v->bad_instance, sizeof v->bad_instance, "%s", instance);
    v->bad_seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->problem, sizeof v->problem, fmt, ap);
    va_end(ap);
    return 1;
}

static struct audit_verify_instance *find_instance(struct audit_verifier *v, const char *name,
                                                   int *is_new)
{
    *is_new = 0;
    for (size_t i = v->n_inst; i > 0; i--)
        if (strcmp(v->inst[i - 1].name, name) == 0)
            return &v->inst[i - 1];
    if (v->n_inst >= AUDIT_VERIFY_MAX_INSTANCES || strlen(name) >= sizeof v->inst->name)
        return NULL;
    struct audit_verify_instance *n = realloc(v->inst, (v->n_inst + 1) * sizeof *n);
    if (!n)
        return NULL;
    v->inst = n;
    struct audit_verify_instance *x = &v->inst[v->n_inst++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    *is_new = 1;
    return x;
}

/* A nullable column must equal the record's string field (both absent counts as equal). */
static int column_matches(const char *col, const struct audit_field *f)
{
    if (!col)
        return f->type == AFT_ABSENT;
    return f->type == AFT_STRING && strlen(col) == f->len && memcmp(col, f->str, f->len) == 0;
}

/* The field as a C string in buf (NULL when it is not a string or does not fit). */
static const char *field_str(const struct audit_field *f, char *buf, size_t len)
{
    if (f->type != AFT_STRING || f->len >= len)
        return NULL;
    memcpy(buf, f->str, f->len);
    buf[f->len] = '\0';
    return buf;
}

static int field_is(const struct audit_field *f, const char *s)
{
    return f->type == AFT_STRING && strlen(s) == f->len && memcmp(s, f->str, f->len) == 0;
}

/*
 * A record's time_ns: decimal digits only, as toolgate writes them (no sign, space or
 * leading zero), within int64. 0, or -1 for anything else.
 */
static int parse_time_ns(const char *s, int64_t *out)
{
    uint64_t v = 0;
    size_t n = 0;
    for (; s[n] >= '0' && s[n] <= '9'; n++) {
        if (n >= 19)
            return -1;
        v = v * 10 + (uint64_t)(s[n] - '0');
    }
    if (n == 0 || s[n] || (n > 1 && s[0] == '0') || v > INT64_MAX)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/*
 * The full path: parse with jansson, check the text is what audit_canon makes of it, and
 * take the fields from the tree. `tree` keeps the strings alive. 0 ok, 1 problem reported.
 */
static int slow_fields(struct audit_verifier *v, const struct audit_row *r, json_t **tree,
                       struct audit_fields *out)
{
    json_error_t jerr;
    struct gw_buf canon = {0};
    int ret = 0;
    *tree = json_loadb(r->record, r->record_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(*tree))
        return problem(v, r->instance, r->seq, "record is not a JSON object (edited)");
    if (audit_canon_append(&canon, *tree) != 0 || canon.len != r->record_len ||
        memcmp(canon.data, r->record, r->record_len) != 0) {
        ret = problem(v, r->instance, r->seq, "record is not in canonical form (edited)");
        goto out;
    }
    memset(out, 0, sizeof *out);
    for (int i = 0; i < AF_COUNT; i++) {
        const json_t *x = json_object_get(*tree, audit_field_key((enum audit_field_id)i));
        struct audit_field *f = &out->f[i];
        if (!x)
            continue;
        if (json_is_string(x)) {
            f->type = AFT_STRING;
            f->str = json_string_value(x);
            f->len = json_string_length(x);
        } else if (json_is_integer(x)) {
            f->type = AFT_INTEGER;
            f->num = (int64_t)json_integer_value(x);
        } else
            f->type = json_is_true(x) ? AFT_TRUE : AFT_OTHER;
    }
out:
    gw_buf_free(&canon);
    return ret;
}

static int check_checkpoint(struct audit_verifier *v, const struct audit_row *r,
                            const struct audit_fields *fs, const struct audit_verify_instance *x)
{
    char head_hash[72], tns[32], key_id[72], sig[136];
    const struct audit_field *hs = &fs->f[AF_HEAD_SEQ];
    if (!field_str(&fs->f[AF_HEAD_HASH], head_hash, sizeof head_hash) || hs->type != AFT_INTEGER ||
        !field_str(&fs->f[AF_SIGNED_TIME_NS], tns, sizeof tns) ||
        !field_str(&fs->f[AF_KEY_ID], key_id, sizeof key_id) ||
        !field_str(&fs->f[AF_SIGNATURE], sig, sizeof sig))
        return problem(v, r->instance, r->seq, "checkpoint lacks a signed field");
    if ((uint64_t)hs->num != r->seq - 1 || strcmp(head_hash, x->prev) != 0)
        return problem(v, r->instance, r->seq,
                       "checkpoint does not name the record before it as the chain head");
    if (strcmp(key_id, v->key_id) != 0)
        return problem(v, r->instance, r->seq,
                       "checkpoint was signed by key %.16s..., not by the given public key",
                       key_id);
    if (!field_is(&fs->f[AF_TIME_NS], tns))
        return problem(v, r->instance, r->seq, "checkpoint's signed time is not its time");
    if (strlen(sig) != 128)
        return problem(v, r->instance, r->seq, "checkpoint signature is not valid");
    if (!v->all_signatures) {
        /*
         * Each checkpoint is a chained record, so the last one's signature covers every
         * record and checkpoint before it: changing any of them changes the head it signs.
         * The others are checked in full only with --all-signatures (which also finds the
         * first rewritten record when the last signature fails).
         */
        struct audit_verify_instance *w = (struct audit_verify_instance *)x;
        w->last_sig_seq = r->seq;
        w->last_sig_head_seq = (uint64_t)hs->num;
        memcpy(w->last_sig_head, head_hash, 65);
        snprintf(w->last_sig_time, sizeof w->last_sig_time, "%s", tns);
        memcpy(w->last_sig, sig, 129);
        return 0;
    }
    struct gw_buf payload = {0};
    int ok =
        audit_checkpoint_payload(&payload, r->instance, (uint64_t)hs->num, head_hash, tns) == 0 &&
        audit_sig_ok(v->pub, payload.data, payload.len, sig, strlen(sig));
    gw_buf_free(&payload);
    if (!ok)
        return problem(v, r->instance, r->seq, "checkpoint signature is not valid");
    return 0;
}

static int verify_row(const struct audit_row *r, void *arg)
{
    struct audit_verifier *v = arg;
    int is_new;
    int ret = 0;
    json_t *tree = NULL;
    struct audit_fields fs;
    v->rows++;
    if (v->progress && (v->rows & 0xffff) == 0)
        v->progress(v, v->progress_arg);
    struct audit_verify_instance *x = find_instance(v, r->instance, &is_new);
    if (!x)
        return problem(v, r->instance, r->seq, "too many instances or an overlong instance name");
    if (!is_new && r->seq != x->seq + 1) {
        if (r->seq <= x->seq)
            ret = problem(v, r->instance, r->seq,
                          "seq %llu follows seq %llu: records are duplicated or out of order",
                          (unsigned long long)r->seq, (unsigned long long)x->seq);
        else
            ret = problem(v, r->instance, r->seq, "records seq %llu to %llu are missing (deleted)",
                          (unsigned long long)x->seq + 1, (unsigned long long)r->seq - 1);
        goto out;
    }
    if (r->problem) {
        ret = problem(v, r->instance, r->seq, "%s", r->problem);
        goto out;
    }
    if (is_new && v->trusted.record && strcmp(r->instance, v->trusted.instance) == 0) {
        /* Incremental: the chain resumes at the checkpoint verified last time, unchanged. */
        if (r->seq != v->trusted.seq || r->record_len != v->trusted.len ||
            memcmp(r->record, v->trusted.record, r->record_len) != 0 ||
            strcmp(r->hash, v->trusted.hash) != 0) {
            ret = problem(v, r->instance, r->seq,
                          "the checkpoint verified last time (seq %llu) is not in the store as "
                          "it was: records up to it were changed or removed",
                          (unsigned long long)v->trusted.seq);
            goto out;
        }
        x->first_seq = x->seq = x->last_checkpoint_seq = r->seq;
        memcpy(x->prev, v->trusted.hash, 65);
        x->last_time = v->trusted.time_ns;
        snprintf(x->last_kind, sizeof x->last_kind, "checkpoint");
        x->closing = v->trusted.closing;
        x->records = x->checkpoints = 1;
        if (r->record_len < sizeof x->last_cp) {
            memcpy(x->last_cp, r->record, r->record_len);
            x->last_cp_len = r->record_len;
        }
        goto out;
    }
    if (r->record_len > AUDIT_VERIFY_MAX_RECORD) {
        ret = problem(v, r->instance, r->seq, "record is larger than any toolgate writes");
        goto out;
    }
    int fast = audit_fastcheck(r->record, r->record_len, &fs);
    for (int i = 0; fast && i < AF_COUNT; i++)
        fast = !fs.f[i].escaped;
    if (!fast && (ret = slow_fields(v, r, &tree, &fs)) != 0)
        goto out;
    char kind[16], prev[72], tns[32];
    const struct audit_field *jseq = &fs.f[AF_SEQ];
    if (!field_str(&fs.f[AF_KIND], kind, sizeof kind) || jseq->type != AFT_INTEGER ||
        !field_str(&fs.f[AF_PREV_HASH], prev, sizeof prev) || strlen(prev) != 64 ||
        !field_str(&fs.f[AF_TIME_NS], tns, sizeof tns)) {
        ret = problem(v, r->instance, r->seq, "record lacks a chain field");
        goto out;
    }
    if ((uint64_t)jseq->num != r->seq || !column_matches(r->instance, &fs.f[AF_INSTANCE])) {
        ret = problem(v, r->instance, r->seq, "record's seq or instance differ from its row");
        goto out;
    }
    if (is_new) {
        if (r->seq == 1 && strcmp(prev, AUDIT_GENESIS_HASH) != 0) {
            ret = problem(v, r->instance, r->seq, "first record does not start a chain");
            goto out;
        }
        if (r->seq != 1 && strcmp(kind, "rotation") != 0) {
            ret = problem(v, r->instance, r->seq,
                          "chain starts at seq %llu without a rotation record: the records "
                          "before it are missing",
                          (unsigned long long)r->seq);
            goto out;
        }
        x->first_seq = r->seq;
        memcpy(x->prev, prev, 65);
        memcpy(x->first_prev, prev, 65);
    } else if (strcmp(prev, x->prev) != 0) {
        ret = problem(v, r->instance, r->seq,
                      "prev_hash does not match the hash of seq %llu (inserted or reordered)",
                      (unsigned long long)x->seq);
        goto out;
    }
    char hash[65];
    if (audit_chain_hash_with(&v->hasher, x->prev, r->record, r->record_len, hash) != 0 ||
        strlen(r->hash) != 64 || strcmp(hash, r->hash) != 0) {
        ret = problem(v, r->instance, r->seq, "hash does not match the record (edited)");
        goto out;
    }
    int64_t t;
    if (parse_time_ns(tns, &t) != 0 || t != r->time_ns) {
        ret = problem(v, r->instance, r->seq, "time_ns differs from its row");
        goto out;
    }
    if (t < x->last_time) {
        ret = problem(v, r->instance, r->seq, "time goes backwards from seq %llu",
                      (unsigned long long)x->seq);
        goto out;
    }
    if (!column_matches(r->kind, &fs.f[AF_KIND]) ||
        !column_matches(r->request_id, &fs.f[AF_REQUEST_ID]) ||
        !column_matches(r->subject, &fs.f[AF_SUBJECT]) ||
        !column_matches(r->tenant, &fs.f[AF_TENANT]) || !column_matches(r->tool, &fs.f[AF_TOOL]) ||
        !column_matches(r->decision, &fs.f[AF_DECISION]) ||
        !column_matches(r->layer, &fs.f[AF_LAYER])) {
        ret = problem(v, r->instance, r->seq, "an indexed column differs from the record (edited)");
        goto out;
    }
    int is_checkpoint = strcmp(kind, "checkpoint") == 0;
    if (is_checkpoint && (ret = check_checkpoint(v, r, &fs, x)) != 0)
        goto out;
    x->seq = r->seq;
    memcpy(x->prev, hash, 65);
    x->last_time = t;
    memcpy(x->last_kind, kind, strlen(kind) + 1); /* both 16 bytes: field_str bounded it */
    x->closing = is_checkpoint && fs.f[AF_CLOSING].type == AFT_TRUE;
    x->records++;
    char last_hash[72];
    if (strcmp(kind, "retention") == 0 && fs.f[AF_THROUGH_SEQ].type == AFT_INTEGER &&
        field_str(&fs.f[AF_LAST_HASH], last_hash, sizeof last_hash)) {
        x->retention_seq = r->seq;
        x->retention_through = (uint64_t)fs.f[AF_THROUGH_SEQ].num;
        snprintf(x->retention_hash, sizeof x->retention_hash, "%.64s", last_hash);
    }
    if (strcmp(kind, "start") == 0 && field_is(&fs.f[AF_PREVIOUS_SHUTDOWN], "unclean")) {
        x->unclean_starts++;
        x->last_unclean_seq = r->seq;
    }
    if (is_checkpoint) {
        x->checkpoints++;
        x->last_checkpoint_seq = r->seq;
        x->last_cp_len = 0;
        if (r->record_len < sizeof x->last_cp) {
            memcpy(x->last_cp, r->record, r->record_len);
            x->last_cp_len = r->record_len;
        }
    }
out:
    json_decref(tree);
    return ret;
}

int audit_verifier_feed(struct audit_verifier *v, struct audit_store *st)
{
    if (v->bad)
        return 1;
    struct audit_filter f = {.instance = v->instance};
    if (v->trusted.record) {
        f.instance = v->trusted.instance;
        f.from_seq = v->trusted.seq;
    }
    int rc = st->ops->scan(st, &f, verify_row, v);
    if (rc < 0)
        return -1;
    return v->bad ? 1 : 0;
}

/* The signature of the last checkpoint seen in a chain (when not checked as it was read). */
static int check_last_signature(struct audit_verifier *v, struct audit_verify_instance *x)
{
    if (!x->last_sig_seq)
        return 0;
    struct gw_buf payload = {0};
    int ok = audit_checkpoint_payload(&payload, x->name, x->last_sig_head_seq, x->last_sig_head,
                                      x->last_sig_time) == 0 &&
             audit_sig_ok(v->pub, payload.data, payload.len, x->last_sig, 128);
    gw_buf_free(&payload);
    if (!ok)
        return problem(v, x->name, x->last_sig_seq,
                       "checkpoint signature is not valid: the records it covers were rewritten "
                       "or it was forged (--all-signatures finds the first bad checkpoint)");
    x->last_sig_seq = 0;
    return 0;
}

int audit_verifier_trust(struct audit_verifier *v, const char *instance, const char *record,
                         size_t len, char *err, size_t errlen)
{
    struct audit_fields fs;
    json_t *tree = NULL;
    int rc = -1;
    if (len >= 2048 || strlen(instance) >= sizeof v->trusted.instance) {
        snprintf(err, errlen, "the saved checkpoint is too large");
        return -1;
    }
    struct audit_row r = {.instance = instance, .record = record, .record_len = len};
    /* Its fields, through the same checks as a stored record (canonical, complete). */
    int fast = audit_fastcheck(record, len, &fs);
    for (int i = 0; fast && i < AF_COUNT; i++)
        fast = !fs.f[i].escaped;
    struct audit_verifier probe = *v;
    probe.bad = 0;
    if (!fast && slow_fields(&probe, &r, &tree, &fs) != 0) {
        snprintf(err, errlen, "the saved checkpoint is not canonical JSON");
        goto out;
    }
    char prev[72], tns[32], head[72], sig[136];
    if (!field_is(&fs.f[AF_KIND], "checkpoint") || !column_matches(instance, &fs.f[AF_INSTANCE]) ||
        fs.f[AF_SEQ].type != AFT_INTEGER || fs.f[AF_SEQ].num < 1 ||
        fs.f[AF_HEAD_SEQ].type != AFT_INTEGER ||
        !field_str(&fs.f[AF_PREV_HASH], prev, sizeof prev) ||
        !field_str(&fs.f[AF_HEAD_HASH], head, sizeof head) || strcmp(prev, head) != 0 ||
        !field_str(&fs.f[AF_TIME_NS], tns, sizeof tns) ||
        !field_is(&fs.f[AF_SIGNED_TIME_NS], tns) ||
        !field_str(&fs.f[AF_SIGNATURE], sig, sizeof sig) ||
        !field_is(&fs.f[AF_KEY_ID], v->key_id)) {
        snprintf(err, errlen,
                 "the saved checkpoint is not a checkpoint of instance %s signed by "
                 "the given key",
                 instance);
        goto out;
    }
    struct gw_buf payload = {0};
    int ok = audit_checkpoint_payload(&payload, instance, (uint64_t)fs.f[AF_HEAD_SEQ].num, head,
                                      tns) == 0 &&
             audit_sig_ok(v->pub, payload.data, payload.len, sig, strlen(sig));
    gw_buf_free(&payload);
    if (!ok || !(v->trusted.record = malloc(len ? len : 1))) {
        snprintf(err, errlen,
                 "the saved checkpoint's signature is not valid under the given key "
                 "(forged, or another key)");
        goto out;
    }
    memcpy(v->trusted.record, record, len);
    v->trusted.len = len;
    v->trusted.seq = (uint64_t)fs.f[AF_SEQ].num;
    v->trusted.time_ns = strtoll(tns, NULL, 10);
    v->trusted.closing = fs.f[AF_CLOSING].type == AFT_TRUE;
    snprintf(v->trusted.instance, sizeof v->trusted.instance, "%s", instance);
    if (audit_chain_hash(prev, record, len, v->trusted.hash) != 0) {
        free(v->trusted.record);
        v->trusted.record = NULL;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    json_decref(tree);
    return rc;
}

int audit_verifier_finish(struct audit_verifier *v)
{
    if (v->bad)
        return 1;
    if (v->n_inst == 0)
        return problem(v, "-", 0, "the store holds no records");
    for (size_t i = 0; i < v->n_inst; i++)
        if (check_last_signature(v, &v->inst[i]) != 0)
            return 1;
    for (size_t i = 0; i < v->n_inst; i++) {
        const struct audit_verify_instance *x = &v->inst[i];
        /*
         * The writer ends every commit at a signed checkpoint, so a chain it wrote ends at one
         * whether the writer runs, crashed or stopped. Only a clean stop ends it at a closing
         * one; --closed asks for that. --live is for stores of earlier versions, which could
         * end in unsigned records while running or after a crash.
         */
        if (v->live && !v->closed)
            continue;
        if (!x->checkpoints)
            return problem(v, x->name, x->seq, "no signed checkpoint in the chain");
        if (x->last_checkpoint_seq != x->seq)
            return problem(v, x->name, x->seq,
                           "chain ends %llu records after its last checkpoint (seq %llu): its "
                           "last checkpoint was removed, or an earlier version wrote it (--live "
                           "for such a store)",
                           (unsigned long long)(x->seq - x->last_checkpoint_seq),
                           (unsigned long long)x->last_checkpoint_seq);
        if (v->closed && !x->closing)
            return problem(v, x->name, x->seq,
                           "chain ends at a checkpoint that is not a closing one (--closed): "
                           "records after it were removed, or the writer is running or "
                           "crashed");
    }
    return 0;
}

void audit_verifier_report(const struct audit_verifier *v, FILE *out)
{
    if (v->bad) {
        fprintf(out, "FAIL instance %s seq %llu: %s\n", v->bad_instance,
                (unsigned long long)v->bad_seq, v->problem);
        return;
    }
    for (size_t i = 0; i < v->n_inst; i++) {
        const struct audit_verify_instance *x = &v->inst[i];
        fprintf(out, "ok   instance %s: seq %llu..%llu, %llu records, %llu checkpoints", x->name,
                (unsigned long long)x->first_seq, (unsigned long long)x->seq,
                (unsigned long long)x->records, (unsigned long long)x->checkpoints);
        int retained = x->retention_seq && x->retention_through + 1 == x->first_seq &&
                       strcmp(x->retention_hash, x->first_prev) == 0;
        if (v->trusted.record && strcmp(x->name, v->trusted.instance) == 0)
            fprintf(out, ", from the checkpoint verified last time");
        else if (retained)
            fprintf(out,
                    ", continues after seq %llu, which the retention record at seq %llu "
                    "says was dropped (its last hash matches)",
                    (unsigned long long)x->retention_through, (unsigned long long)x->retention_seq);
        else if (x->first_seq != 1)
            fprintf(out,
                    ", continues an earlier file (give the earlier files first; no "
                    "retention record names what is before seq %llu)",
                    (unsigned long long)x->first_seq);
        if (x->seq != x->last_checkpoint_seq)
            fprintf(out, ", %llu unsigned records after the last checkpoint",
                    (unsigned long long)(x->seq - x->last_checkpoint_seq));
        else if (!x->closing)
            fprintf(out, ", ends at a signed checkpoint that is not a closing one (writer "
                         "running or crashed)");
        else
            fprintf(out, ", ends at a closing checkpoint");
        if (x->unclean_starts)
            fprintf(out,
                    "; warning: %llu restart(s) after an unclean stop (last at seq %llu): the "
                    "writer before each did not stop cleanly (killed, crashed or lost power)",
                    (unsigned long long)x->unclean_starts, (unsigned long long)x->last_unclean_seq);
        fputc('\n', out);
    }
}
