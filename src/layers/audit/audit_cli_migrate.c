/* `toolgate audit migrate FROM TO`: a store copied into the compact format. */
#include "layers/audit/audit_cli.h"
#include "layers/audit/audit_store.h"

#include <stdio.h>
#include <unistd.h>

struct migrate_ctx {
    struct audit_store *to;
    uint64_t n;
};

static int migrate_row(const struct audit_row *r, void *arg)
{
    struct migrate_ctx *m = arg;
    if (r->problem) {
        fprintf(stderr,
                "toolgate audit migrate: instance %s seq %llu: %s; nothing was "
                "migrated past it (verify the source first)\n",
                r->instance, (unsigned long long)r->seq, r->problem);
        return 1;
    }
    /* Large transactions: the copy is one pass, rows in (instance, seq) order. */
    if (m->n % 20000 == 0 && m->n) {
        if (m->to->ops->commit(m->to))
            return -1;
        if (m->to->ops->idle)
            m->to->ops->idle(m->to); /* between two commits, as the writer: the log starts over */
        if (m->to->ops->begin(m->to))
            return -1;
    }
    if (m->to->ops->append(m->to, r) != 0)
        return -1;
    m->n++;
    return 0;
}

/*
 * `migrate FROM TO`: copies every row, canonical bytes and hashes as they are, into a new
 * store in the compact format; verify accepts the copy with the same key.
 */
int audit_cli_migrate(int argc, char **argv)
{
    char buf[2][4200], err[512];
    if (argc != 4) {
        fprintf(stderr, "usage: toolgate audit migrate FROM TO (TO must not exist yet)\n");
        return 2;
    }
    const char *to_url = audit_cli_store_url(argv[3], buf[1], sizeof buf[1]);
    const char *to_path = audit_store_sqlite_path(to_url);
    if (to_path && access(to_path, F_OK) == 0) {
        fprintf(stderr, "toolgate audit migrate: %s exists; name a new file\n", to_path);
        return 2;
    }
    if (!to_path) {
        /* A database (PostgreSQL) that already holds an audit store is not written into. */
        struct audit_store *there = audit_store_open(to_url, 0, err, sizeof err);
        if (there) {
            there->ops->close(there);
            fprintf(stderr,
                    "toolgate audit migrate: %s already holds an audit store; name an "
                    "empty database\n",
                    argv[3][0] == 'p' ? "the target database" : argv[3]);
            return 2;
        }
    }
    struct audit_store *from =
        audit_store_open(audit_cli_store_url(argv[2], buf[0], sizeof buf[0]), 0, err, sizeof err);
    if (!from) {
        fprintf(stderr, "toolgate audit migrate: %s\n", err);
        return 2;
    }
    struct audit_store *to =
        audit_store_open_format(to_url, 1, AUDIT_FORMAT_COMPACT, err, sizeof err);
    if (!to) {
        fprintf(stderr, "toolgate audit migrate: %s\n", err);
        from->ops->close(from);
        return 2;
    }
    struct migrate_ctx m = {.to = to};
    int rc = to->ops->set_sync(to, 0) || to->ops->begin(to) ? -1 : 0;
    if (rc == 0)
        rc = from->ops->scan(from, NULL, migrate_row, &m);
    if (rc == 0 && to->ops->commit(to) != 0)
        rc = -1;
    if (rc != 0) {
        to->ops->rollback(to);
        if (rc < 0)
            fprintf(stderr, "toolgate audit migrate: %s\n", to->err[0] ? to->err : from->err);
    } else
        printf("migrated %llu records into %s\n", (unsigned long long)m.n, argv[3]);
    to->ops->close(to);
    from->ops->close(from);
    return rc == 0 ? 0 : rc < 0 ? 2 : 1;
}
