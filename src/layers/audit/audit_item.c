#include "layers/audit/audit_item.h"
#include "lib/buf.h"

#include <stdlib.h>
#include <string.h>

const char *const audit_col_keys[COL_COUNT] = {"kind", "request_id", "subject", "tenant",
                                               "tool", "decision",   "layer"};
int audit_col_of(const char *key)
{
    int c;
    switch (key[0]) {
    case 'k':
        c = COL_KIND;
        break;
    case 'r':
        c = COL_REQUEST_ID;
        break;
    case 's':
        c = COL_SUBJECT;
        break;
    case 't':
        c = key[1] == 'e' ? COL_TENANT : COL_TOOL;
        break;
    case 'd':
        c = COL_DECISION;
        break;
    case 'l':
        c = COL_LAYER;
        break;
    default:
        return -1;
    }
    return strcmp(key, audit_col_keys[c]) == 0 ? c : -1;
}

/* The chain's own fields, which the writer adds. */
static const char *const chain_keys[] = {"seq",       "instance", "time_ns", "time",
                                         "prev_hash", "hash",     NULL};

void audit_item_free(struct audit_item *it)
{
    if (!it)
        return;
    audit_members_free(&it->body);
    free(it->cols);
    free(it);
}

struct audit_item *audit_item_prepare(const json_t *rec)
{
    struct audit_item *it = calloc(1, sizeof *it);
    struct gw_buf cols = {0};
    if (!it || audit_members_from_object(&it->body, rec, chain_keys) != 0)
        goto fail;
    for (int c = 0; c < COL_COUNT; c++) {
        const json_t *v = json_object_get(rec, audit_col_keys[c]);
        it->col_off[c] = -1;
        if (!json_is_string(v))
            continue;
        it->col_off[c] = (ssize_t)cols.len;
        if (gw_buf_append(&cols, json_string_value(v), json_string_length(v) + 1) != 0)
            goto fail;
    }
    if (it->col_off[COL_KIND] < 0)
        goto fail;
    it->cols = cols.data;
    return it;
fail:
    gw_buf_free(&cols);
    audit_item_free(it);
    return NULL;
}

const char *audit_item_col(const struct audit_item *it, int c)
{
    return it->col_off[c] < 0 ? NULL : it->cols + it->col_off[c];
}
