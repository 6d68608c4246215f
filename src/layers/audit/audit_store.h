/*
 * audit_store: where records live. One interface, two back ends:
 *   "sqlite:PATH"        one file per chain segment (WAL, synchronous=FULL), rotatable;
 *   "postgres://..."     shared by many instances, each instance its own chain.
 *
 * A row is the record's canonical JSON (without "hash") plus the hash and copies of the
 * fields that queries filter on. The copies are checked against the JSON by verify, so
 * editing a column is caught like editing the record.
 *
 * Two formats on disk, one interface: the compact format (new stores; audit_store_lite.c,
 * and the compact tables in PostgreSQL) keeps the indexed fields as small integers of a
 * name dictionary and the record compressed with the values its row holds cut out
 * (audit_codec.h); the first format ("audit_records", one text row per record) is still
 * read and appended to, and `toolgate audit migrate` copies it into the compact format.
 */
#ifndef AUDIT_STORE_H
#define AUDIT_STORE_H

#include <stddef.h>
#include <stdint.h>

struct audit_row {
    const char *instance;
    uint64_t seq;
    int64_t time_ns;
    const char *kind;       /* decision | completion | checkpoint | start | rotation */
    const char *request_id; /* NULL when the kind has none (also the fields below) */
    const char *subject;
    const char *tenant;
    const char *tool;
    const char *decision;
    const char *layer;
    const char *record; /* canonical JSON without "hash" */
    size_t record_len;
    const char *hash; /* 64 hex */
    /* Scans: non-NULL when the store could not rebuild the record (damaged or edited). */
    const char *problem;
};

/* Scan flags (hints: a store may return more than asked). */
#define AUDIT_SCAN_NO_RECORD 1u /* record/hash/request_id may be left NULL (stats) */
#define AUDIT_SCAN_ANY_ORDER 2u /* time order is enough (not (instance, seq)) */
#define AUDIT_SCAN_ROWS_ONLY 4u /* tally: count the rows, not derived counters */
/*
 * The record's prev_hash may come back as 64 zeros (a reader that shows neither the chain
 * links nor checks them: no lookup of each row's predecessor in a filtered scan).
 */
#define AUDIT_SCAN_NO_CHAIN 8u

enum audit_store_format { AUDIT_FORMAT_COMPACT = 0, AUDIT_FORMAT_LEGACY = 1 };

struct audit_filter {
    const char *instance; /* NULL: every instance */
    const char *kind;     /* NULL: every kind */
    const char *subject;
    const char *tenant;
    const char *decision;
    int64_t since_ns;      /* 0: open */
    int64_t until_ns;      /* 0: open */
    const char *tool_glob; /* fnmatch(3) pattern the tool must match; NULL: any */
    uint64_t from_seq;     /* rows with seq >= this (0: all) */
    unsigned flags;        /* AUDIT_SCAN_* */
};

/* The last row of an instance's chain. */
struct audit_head {
    uint64_t seq;
    int64_t time_ns;
    char hash[65];
    char kind[16];
    int closing; /* the last row is a closing checkpoint (clean shutdown) */
};

/* Row callback for scans: the row's pointers live until it returns. Non-zero stops. */
typedef int (*audit_row_cb)(const struct audit_row *row, void *arg);

struct audit_store;

struct audit_store_ops {
    int (*begin)(struct audit_store *st);
    int (*append)(struct audit_store *st, const struct audit_row *row);
    int (*commit)(struct audit_store *st);
    void (*rollback)(struct audit_store *st);
    /* Returns 1 and fills head, 0 when the instance has no rows, -1 on error. */
    int (*head)(struct audit_store *st, const char *instance, struct audit_head *head);
    /* Rows matching f in (instance, seq) order. Returns 0, the callback's value, or -1. */
    int (*scan)(struct audit_store *st, const struct audit_filter *f, audit_row_cb cb, void *arg);
    /* Bytes the store occupies (SQLite: file + WAL); 0 when unknown. */
    uint64_t (*size)(struct audit_store *st);
    /*
     * Durability of a commit: full = on stable storage (survives power loss; one fsync per
     * group commit), else written to the operating system (survives a crash of toolgate).
     */
    int (*set_sync)(struct audit_store *st, int full);
    void (*close)(struct audit_store *st);
    /*
     * Optional (NULL, or returns 1: not for this filter; use scan): counts the decision
     * records matching f by decision, layer, tool and subject (dim 0..3), calling
     * cb(arg, dim, name, n) for each name counted (name "-" for none). 0, or -1 on error.
     */
    int (*tally)(struct audit_store *st, const struct audit_filter *f,
                 void (*cb)(void *arg, int dim, const char *name, uint64_t n), void *arg);
    /*
     * Optional (NULL: the store keeps none): compares the derived counters the store keeps
     * for tally with its records. 0 when they agree or are not in use, 1 when they differ
     * (a sentence in problem, naming no value), -1 on error (st->err).
     */
    int (*check_counters)(struct audit_store *st, char *problem, size_t len);
    /*
     * Optional (NULL: nothing to do): the writer calls it between two commits, once what
     * waited for the last one is released, for upkeep no answer should wait for (SQLite:
     * folding the rest of its write-ahead log, so the next commit starts the log over).
     */
    void (*idle)(struct audit_store *st);
};

struct audit_store {
    const struct audit_store_ops *ops;
    char err[256]; /* the last error, as a sentence */
    enum audit_store_format format;
};

/*
 * Opens the store named by url. `create`: create the file/tables when missing (the writer);
 * the command-line tools open without it so a typo does not make an empty store.
 * Returns the store (close with st->ops->close) or NULL with a sentence in err.
 */
struct audit_store *audit_store_open(const char *url, int create, char *err, size_t errlen);
/* The same; a store created here gets `format` (an existing one keeps its own). */
struct audit_store *audit_store_open_format(const char *url, int create,
                                            enum audit_store_format format, char *err,
                                            size_t errlen);

/* Back ends. */
struct audit_store *audit_sqlite_open(const char *path, int create, char *err, size_t errlen);
struct audit_store *audit_pg_open(const char *conninfo, int create, char *err, size_t errlen);
struct audit_store *audit_sqlite_open_format(const char *path, int create,
                                             enum audit_store_format format, char *err,
                                             size_t errlen);
struct audit_store *audit_pg_open_format(const char *conninfo, int create,
                                         enum audit_store_format format, char *err, size_t errlen);

/* Returns the SQLite path of a "sqlite:PATH" url (pointer into url), or NULL. */
const char *audit_store_sqlite_path(const char *url);

#endif
