/*
 * admin_elide: the configuration as the admin API shows it, without its secrets
 * (admin_api.h states the rule). The rule works on names and shapes, not on a list of the
 * keys that exist today: a key added later whose name says "secret" is elided without anyone
 * remembering to add it, and when in doubt a value is elided.
 */
#include "admin/admin_api.h"
#include "lib/cfg.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ELIDED "[elided]"

int admin_elide_key_is_secret(const char *key)
{
    static const char *const words[] = {"token",  "secret",  "passw", "key",  "credential", "auth",
                                        "cookie", "private", "hmac",  "salt", "signature",  NULL};
    for (const char *const *w = words; *w; w++)
        if (strcasestr(key, *w))
            return 1;
    return 0;
}

/* Maps whose every value is elided: header values may carry credentials of any name. */
static int key_hides_values(const char *key)
{
    return strcasecmp(key, "headers") == 0 || strcasecmp(key, "inject") == 0;
}

char *admin_elide_string(const char *s)
{
    size_t n = strlen(s);
    /* Worst case: the userinfo becomes ELIDED, and every "password=" (9 bytes) becomes
     * "password=" ELIDED (17 bytes), so the output is under twice the input plus one ELIDED. */
    char *out = malloc(n * 2 + sizeof ELIDED * 2 + 1);
    if (!out)
        return NULL;
    size_t o = 0, i = 0;
    /* scheme://userinfo@host: everything between "://" and the last '@' before the path. */
    const char *scheme = strstr(s, "://");
    if (scheme) {
        const char *auth = scheme + 3;
        size_t span = strcspn(auth, "/?#");
        const char *at = NULL;
        for (size_t k = 0; k < span; k++)
            if (auth[k] == '@')
                at = auth + k;
        if (at) {
            size_t head = (size_t)(auth - s);
            memcpy(out, s, head);
            o = head;
            memcpy(out + o, ELIDED, sizeof ELIDED - 1);
            o += sizeof ELIDED - 1;
            i = (size_t)(at - s);
        }
    }
    /* key=value strings (PostgreSQL conninfo, query strings): password=... up to a space/&. */
    while (i < n) {
        if ((i == 0 || s[i - 1] == ' ' || s[i - 1] == '&' || s[i - 1] == '?' || s[i - 1] == ';') &&
            strncasecmp(s + i, "password=", 9) == 0) {
            memcpy(out + o, s + i, 9);
            o += 9;
            i += 9;
            memcpy(out + o, ELIDED, sizeof ELIDED - 1);
            o += sizeof ELIDED - 1;
            while (i < n && s[i] != ' ' && s[i] != '&' && s[i] != ';')
                i++;
            continue;
        }
        out[o++] = s[i++];
    }
    out[o] = '\0';
    return out;
}

static json_t *scalar_json(const struct cfg_node *node)
{
    if (!node->scalar)
        return json_null();
    char *clean = admin_elide_string(node->scalar);
    if (!clean)
        return NULL;
    json_t *v = json_string(clean);
    free(clean);
    /* A scalar that is not UTF-8 is shown as elided rather than dropped silently. */
    return v ? v : json_string(ELIDED);
}

/* A map with its keys kept and every value elided. */
static json_t *elide_values(const struct cfg_node *map)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < map->n; i++)
        if (json_object_set_new(o, map->keys[i], json_string(ELIDED)) != 0) {
            json_decref(o);
            return NULL;
        }
    return o;
}

static json_t *elide(const struct cfg_node *node, int depth, int hide)
{
    if (!node)
        return json_null();
    if (hide)
        return json_string(ELIDED);
    if (depth > 64)
        return json_string(ELIDED);
    switch (node->kind) {
    case CFG_MAP: {
        json_t *o = json_object();
        for (size_t i = 0; o && i < node->n; i++) {
            const char *k = node->keys[i];
            int secret = admin_elide_key_is_secret(k);
            json_t *v = key_hides_values(k) && node->items[i] && node->items[i]->kind == CFG_MAP
                            ? elide_values(node->items[i])
                            : elide(node->items[i], depth + 1, secret);
            if (!v || json_object_set_new(o, k, v) != 0) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    case CFG_SEQ: {
        json_t *a = json_array();
        for (size_t i = 0; a && i < node->n; i++)
            if (json_array_append_new(a, elide(node->items[i], depth + 1, 0)) != 0) {
                json_decref(a);
                return NULL;
            }
        return a;
    }
    default:
        return scalar_json(node);
    }
}

json_t *admin_elide_node(const struct cfg_node *node)
{
    return elide(node, 0, 0);
}
