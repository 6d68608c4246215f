/*
 * Fuzz driver for the admin API's integrity decision (POST /admin/api/integrity/<id>): the
 * input is an id, a newline, and the body. The id "P" stands for the pending pin's own id and
 * "A" for the approved one's, so the fuzzer reaches the store. Invariants: the answer is one
 * of 200, 400, 404, 409 and always an object (an "error" string unless 200); a 200 names a
 * decision and a hash that is 8 to 64 hex digits beginning the pending definition's hash; the
 * approved pin never changes; nothing but the pending pin is ever decided.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "layers/integrity/integrity.h"

static void seen(const char *name, const char *desc, struct integrity_seen *e)
{
    char text[128];
    snprintf(text, sizeof text, "{\"name\":\"%s\",\"description\":\"%s\"}", name, desc);
    json_t *v = json_loads(text, 0, NULL);
    memset(e, 0, sizeof *e);
    e->name = name;
    if (!v || integrity_hash_def(v, "name", e->hash, e->body) != 0)
        abort();
    e->def = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(v);
}

static int compare(struct integrity_store *s, struct integrity_seen *e, size_t n)
{
    struct integrity_list l = {"r/b", "tool", 0, 0, 1000000, 60000, {0}, {0}};
    memset(l.set_hash, 'a', 64);
    memset(l.body_set_hash, 'b', 64);
    l.set_hash[0] = (char)('0' + (int)n);
    return integrity_store_compare(s, &l, e, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl || (size_t)(nl - data) > 64)
        return 0;
    char id[65];
    memcpy(id, data, (size_t)(nl - data));
    id[nl - data] = '\0';
    if (strlen(id) != (size_t)(nl - data))
        return 0;
    json_t *body = json_loadb((const char *)nl + 1, size - (size_t)(nl - data) - 1,
                              JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        return 0;
    }
    char err[256];
    struct integrity_store *s = integrity_store_open(":memory:", err, sizeof err);
    if (!s)
        abort();
    struct integrity_seen e[2];
    seen("read", "Reads.", &e[0]);
    seen("keep", "Keeps.", &e[1]);
    if (compare(s, e, 2) != 0)
        abort();
    free(e[0].def);
    seen("read", "Reads, then mails it out.", &e[0]);
    if (compare(s, e, 2) != 0)
        abort();
    char pending_id[INTEGRITY_PIN_ID_LEN + 1], approved_id[INTEGRITY_PIN_ID_LEN + 1];
    integrity_pin_id("r/b", "tool", "read", pending_id);
    integrity_pin_id("r/b", "tool", "keep", approved_id);
    const char *use = strcmp(id, "P") == 0 ? pending_id : strcmp(id, "A") == 0 ? approved_id : id;

    json_t *out = NULL;
    int status = integrity_admin_decide(s, use, body, "admin-token:000000000000", 2000000, &out);
    if (!json_is_object(out))
        abort();
    if (status != 200 && status != 400 && status != 404 && status != 409)
        abort();
    if (status != 200 && !json_is_string(json_object_get(out, "error")))
        abort();
    struct integrity_pin keep, read;
    if (integrity_store_get(s, "r/b", "tool", "keep", &keep) != 1 ||
        integrity_store_get(s, "r/b", "tool", "read", &read) != 1)
        abort();
    if (strcmp(keep.state, "approved") != 0 || strcmp(keep.approved_hash, e[1].hash) != 0)
        abort();
    if (status == 200) {
        const char *d = json_string_value(json_object_get(body, "decision"));
        const char *h = json_string_value(json_object_get(body, "hash"));
        size_t hl = h ? strlen(h) : 0;
        if (!d || strcmp(use, pending_id) != 0 || hl < 8 || hl > 64 ||
            strncasecmp(h, e[0].hash, hl) != 0)
            abort();
        if (strcmp(read.state, strcmp(d, "approve") == 0 ? "approved" : "rejected") != 0)
            abort();
    } else if (strcmp(read.state, "pending") != 0) {
        abort();
    }
    json_decref(out);
    json_decref(body);
    free(e[0].def);
    free(e[1].def);
    integrity_cache_clear();
    integrity_store_close(s);
    return 0;
}
