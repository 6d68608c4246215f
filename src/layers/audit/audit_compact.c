#include "layers/audit/audit_compact.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

const char *const audit_fixed_names[AUDIT_NAME_FIXED + 1] = {
    NULL,    "decision", "completion", "checkpoint", "start",  "rotation", "allow", "deny",
    "error", "identity", "safety",     "policy",     "limits", "routing",  "audit",
};

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int rehash(struct audit_names *n, size_t slots)
{
    uint32_t *s = calloc(slots, sizeof *s);
    if (!s)
        return -1;
    for (size_t id = 1; id < n->cap; id++) {
        if (!n->by_id[id])
            continue;
        size_t i = name_hash(n->by_id[id]) & (slots - 1);
        while (s[i])
            i = (i + 1) & (slots - 1);
        s[i] = (uint32_t)id;
    }
    free(n->slots);
    n->slots = s;
    n->n_slots = slots;
    return 0;
}

uint32_t audit_names_id(const struct audit_names *n, const char *name)
{
    if (!n->n_slots || !name)
        return 0;
    size_t i = name_hash(name) & (n->n_slots - 1);
    for (; n->slots[i]; i = (i + 1) & (n->n_slots - 1))
        if (strcmp(n->by_id[n->slots[i]], name) == 0)
            return n->slots[i];
    return 0;
}

const char *audit_names_name(const struct audit_names *n, uint32_t id)
{
    return id < n->cap ? n->by_id[id] : NULL;
}

int audit_names_put(struct audit_names *n, uint32_t id, const char *name)
{
    if (id == 0 || id >= AUDIT_NAMES_MAX || !name || audit_names_id(n, name) ||
        (id < n->cap && n->by_id[id]))
        return -1;
    if (id >= n->cap) {
        size_t cap = n->cap ? n->cap : 64;
        while (cap <= id)
            cap *= 2;
        char **b = realloc(n->by_id, cap * sizeof *b);
        if (!b)
            return -1;
        memset(b + n->cap, 0, (cap - n->cap) * sizeof *b);
        n->by_id = b;
        n->cap = cap;
    }
    if ((n->count + 1) * 2 > n->n_slots && rehash(n, n->n_slots ? n->n_slots * 2 : 128) != 0)
        return -1;
    if (!(n->by_id[id] = strdup(name)))
        return -1;
    size_t i = name_hash(name) & (n->n_slots - 1);
    while (n->slots[i])
        i = (i + 1) & (n->n_slots - 1);
    n->slots[i] = id;
    n->count++;
    if (id > n->max_id)
        n->max_id = id;
    return 0;
}

void audit_names_free(struct audit_names *n)
{
    for (size_t i = 0; i < n->cap; i++)
        free(n->by_id[i]);
    free(n->by_id);
    free(n->slots);
    memset(n, 0, sizeof *n);
}

long audit_names_glob(const struct audit_names *n, const char *pattern, uint32_t **ids)
{
    size_t cnt = 0, cap = 0;
    *ids = NULL;
    for (size_t id = 1; id < n->cap; id++) {
        if (!n->by_id[id] || fnmatch(pattern, n->by_id[id], 0) != 0)
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            uint32_t *x = realloc(*ids, cap * sizeof *x);
            if (!x) {
                free(*ids);
                *ids = NULL;
                return -1;
            }
            *ids = x;
        }
        (*ids)[cnt++] = (uint32_t)id;
    }
    return (long)cnt;
}

int audit_compact_cut_values(struct audit_cut_values *cv, struct gw_buf *buf,
                             const struct audit_row *r, const char *prev_hex)
{
    return audit_cut_values_fill(cv, buf, prev_hex, r->time_ns, r->seq, r->request_id, r->subject,
                                 r->tenant, r->tool);
}

int audit_dict_trainer_add(struct audit_dict_trainer *t, const struct gw_buf *reduced,
                           struct gw_buf *dict)
{
    if (t->done)
        return 0;
    if (gw_buf_append(&t->text, reduced->data, reduced->len) != 0)
        return -1;
    t->sizes[t->n++] = reduced->len;
    if (t->n < AUDIT_DICT_SAMPLE_RECORDS && t->text.len < AUDIT_DICT_SAMPLE_BYTES)
        return 0;
    t->done = 1;
    gw_buf_reset(dict);
    if (gw_buf_reserve(dict, AUDIT_DICT_BYTES) != 0)
        return -1;
    size_t z = audit_codec_train(t->text.data, t->sizes, t->n, dict->data, AUDIT_DICT_BYTES);
    if (z == 0) {
        /* Too few or too alike to train on: the text itself serves as the dictionary. */
        z = t->text.len < AUDIT_DICT_BYTES ? t->text.len : AUDIT_DICT_BYTES;
        memcpy(dict->data, t->text.data + t->text.len - z, z);
    }
    dict->len = z;
    gw_buf_free(&t->text);
    return 1;
}

void audit_dict_trainer_free(struct audit_dict_trainer *t)
{
    gw_buf_free(&t->text);
    memset(t, 0, sizeof *t);
}
