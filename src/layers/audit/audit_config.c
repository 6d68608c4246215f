/* The `audit:` configuration section. */
#include "layers/audit/audit.h"
#include "layers/audit/audit_sink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int audit_config_defaults(struct audit_config *ac)
{
    char host[256];
    memset(ac, 0, sizeof *ac);
    if (gethostname(host, sizeof host) != 0 || !host[0])
        snprintf(host, sizeof host, "toolgate");
    host[sizeof host - 1] = '\0';
    ac->store = strdup("sqlite:toolgate-audit.db");
    ac->instance_id = strdup(host);
    ac->checkpoint_every = 1000;
    ac->checkpoint_interval_ms = 1000;
    ac->commit_delay_ns = AUDIT_COMMIT_DELAY_DEFAULT_NS;
    ac->arguments = AUDIT_ARGS_REDACTED;
    ac->queue = 65536;
    return ac->store && ac->instance_id ? 0 : -1;
}

void audit_config_free(struct audit_config *ac)
{
    if (!ac)
        return;
    free(ac->store);
    free(ac->mirror);
    free(ac->signing_key);
    free(ac->instance_id);
    audit_sinks_config_free(ac->sinks, ac->n_sinks);
    free(ac);
}

/* Instance ids name chains and appear in file names and queries: keep them plain. */
static int instance_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

int audit_config_parse(const struct cfg_doc *doc, const struct cfg_node *section,
                       struct audit_config **out, struct cfg_error *err)
{
    static const char *const keys[] = {
        "store", "mirror", "signing_key", "instance_id", "checkpoint",   "arguments", "durability",
        "sync",  "queue",  "rotate",      "retention",   "commit_delay", "sinks",     NULL};
    static const char *const cp_keys[] = {"every", "interval", NULL};
    static const char *const rot_keys[] = {"max_records", "max_bytes", NULL};
    const char *P = "audit";
    char *args = NULL;
    int64_t every, queue, max_records = 0;
    struct audit_config *ac = calloc(1, sizeof *ac);
    *out = NULL;
    if (!ac || audit_config_defaults(ac) != 0) {
        cfg_errorf(err, doc, section, P, "out of memory");
        goto fail;
    }
    if (!section || cfg_is_null(section)) {
        *out = ac;
        return 0;
    }
    if (cfg_expect_map(doc, section, P, err) || cfg_check_keys(doc, section, P, keys, err))
        goto fail;
    if (cfg_get_string(doc, section, P, "store", 0, &ac->store, err) ||
        cfg_get_string(doc, section, P, "mirror", 0, &ac->mirror, err) ||
        cfg_get_string(doc, section, P, "signing_key", 0, &ac->signing_key, err) ||
        cfg_get_string(doc, section, P, "instance_id", 0, &ac->instance_id, err) ||
        cfg_get_string(doc, section, P, "arguments", 0, &args, err))
        goto fail;
    const struct cfg_node *n = cfg_map_get(section, "store");
    if (!(strncmp(ac->store, "sqlite:", 7) == 0 && ac->store[7]) &&
        strncmp(ac->store, "postgres://", 11) != 0 &&
        strncmp(ac->store, "postgresql://", 13) != 0) {
        cfg_errorf(err, doc, n, "audit.store",
                   "\"%s\" is not a store: write \"sqlite:PATH\" or \"postgres://...\"", ac->store);
        goto fail;
    }
    n = cfg_map_get(section, "mirror");
    if (ac->mirror && strcmp(ac->mirror, "stdout") != 0 &&
        !(strncmp(ac->mirror, "jsonl:", 6) == 0 && ac->mirror[6])) {
        cfg_errorf(err, doc, n, "audit.mirror", "write \"jsonl:PATH\" or \"stdout\"");
        goto fail;
    }
    if (!instance_ok(ac->instance_id)) {
        cfg_errorf(err, doc, cfg_map_get(section, "instance_id"), "audit.instance_id",
                   "use 1-128 letters, digits, '.', '_' or '-'");
        goto fail;
    }
    if (args) {
        if (strcmp(args, "none") == 0)
            ac->arguments = AUDIT_ARGS_NONE;
        else if (strcmp(args, "hash") == 0)
            ac->arguments = AUDIT_ARGS_HASH;
        else if (strcmp(args, "redacted") == 0)
            ac->arguments = AUDIT_ARGS_REDACTED;
        else {
            cfg_errorf(err, doc, cfg_map_get(section, "arguments"), "audit.arguments",
                       "\"%s\" is not one of none, hash, redacted", args);
            goto fail;
        }
    }
    char *durability = NULL;
    if (cfg_get_string(doc, section, P, "durability", 0, &durability, err))
        goto fail;
    if (durability) {
        int bad = 0;
        if (strcmp(durability, "commit") == 0)
            ac->durability = AUDIT_DURABLE_COMMIT;
        else if (strcmp(durability, "queued") == 0)
            ac->durability = AUDIT_DURABLE_QUEUED;
        else
            bad = 1;
        if (bad)
            cfg_errorf(err, doc, cfg_map_get(section, "durability"), "audit.durability",
                       "\"%s\" is not one of commit, queued", durability);
        free(durability);
        if (bad)
            goto fail;
    }
    char *sync = NULL;
    if (cfg_get_string(doc, section, P, "sync", 0, &sync, err))
        goto fail;
    if (sync) {
        int bad = strcmp(sync, "full") != 0 && strcmp(sync, "normal") != 0;
        if (bad)
            cfg_errorf(err, doc, cfg_map_get(section, "sync"), "audit.sync",
                       "\"%s\" is not one of full, normal", sync);
        else
            ac->sync_full = strcmp(sync, "full") == 0;
        free(sync);
        if (bad)
            goto fail;
    }
    const struct cfg_node *cp = cfg_map_get(section, "checkpoint");
    if (cp && !cfg_is_null(cp)) {
        every = (int64_t)ac->checkpoint_every;
        if (cfg_expect_map(doc, cp, "audit.checkpoint", err) ||
            cfg_check_keys(doc, cp, "audit.checkpoint", cp_keys, err) ||
            cfg_get_int(doc, cp, "audit.checkpoint", "every", 1, 100000000, &every, err) ||
            cfg_get_duration_ms(doc, cp, "audit.checkpoint", "interval",
                                &ac->checkpoint_interval_ms, err))
            goto fail;
        ac->checkpoint_every = (uint64_t)every;
        if (ac->checkpoint_interval_ms == 0 || ac->checkpoint_interval_ms > 3600000ull) {
            cfg_errorf(err, doc, cfg_map_get(cp, "interval"), "audit.checkpoint.interval",
                       "must be between 1ms and 1h");
            goto fail;
        }
    }
    if (cfg_get_duration_ns(doc, section, P, "commit_delay", &ac->commit_delay_ns, err))
        goto fail;
    if (ac->commit_delay_ns > AUDIT_COMMIT_DELAY_MAX_NS) {
        cfg_errorf(err, doc, cfg_map_get(section, "commit_delay"), "audit.commit_delay",
                   "must be between 0 (commit at once) and 100ms");
        goto fail;
    }
    queue = (int64_t)ac->queue;
    if (cfg_get_int(doc, section, P, "queue", 16, 16777216, &queue, err))
        goto fail;
    ac->queue = (uint64_t)queue;
    const struct cfg_node *rot = cfg_map_get(section, "rotate");
    if (rot && !cfg_is_null(rot)) {
        if (cfg_expect_map(doc, rot, "audit.rotate", err) ||
            cfg_check_keys(doc, rot, "audit.rotate", rot_keys, err) ||
            cfg_get_int(doc, rot, "audit.rotate", "max_records", 1000, INT64_MAX, &max_records,
                        err) ||
            cfg_get_size(doc, rot, "audit.rotate", "max_bytes", &ac->rotate_max_bytes, err))
            goto fail;
        ac->rotate_max_records = (uint64_t)max_records;
        if (!ac->rotate_max_records && !ac->rotate_max_bytes) {
            cfg_errorf(err, doc, rot, "audit.rotate", "set max_records or max_bytes");
            goto fail;
        }
        if (strncmp(ac->store, "sqlite:", 7) != 0) {
            cfg_errorf(err, doc, rot, "audit.rotate",
                       "rotation applies to SQLite stores; PostgreSQL keeps one table");
            goto fail;
        }
    }
    if (cfg_get_duration_ms(doc, section, P, "retention", &ac->retention_ms, err))
        goto fail;
    if (ac->retention_ms && !ac->rotate_max_records && !ac->rotate_max_bytes) {
        cfg_errorf(err, doc, cfg_map_get(section, "retention"), "audit.retention",
                   "retention deletes rotated files: set audit.rotate as well");
        goto fail;
    }
    if (audit_sinks_config_parse(doc, cfg_map_get(section, "sinks"), &ac->sinks, &ac->n_sinks, err))
        goto fail;
    free(args);
    *out = ac;
    return 0;
fail:
    free(args);
    audit_config_free(ac);
    return -1;
}
