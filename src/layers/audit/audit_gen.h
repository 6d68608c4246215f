/* audit_gen: realistic generated audit stores (benchmarks, tests); see audit_gen.c. */
#ifndef AUDIT_GEN_H
#define AUDIT_GEN_H

#include <stddef.h>
#include <stdint.h>

struct audit_gen_opts {
    const char *store;    /* "sqlite:PATH" or "postgres://..." */
    const char *key;      /* signing key PEM; NULL: generated next to the store */
    const char *instance; /* NULL: "gen-1" */
    uint64_t calls;
    unsigned days, users, tenants, tools; /* 0: 60 days, 5000, 60, 150 */
    uint64_t calls_per_commit;            /* 0: 10 */
    uint64_t seed;
    int format; /* enum audit_store_format */
};

/* Writes o->calls calls through the real writer. Returns 0, or -1 with a sentence in err. */
int audit_gen_run(const struct audit_gen_opts *o, char *err, size_t errlen);

/* `toolgate bench audit gen|scale ...`. */
int audit_gen_main(int argc, char **argv);
int audit_scale_main(int argc, char **argv);

#endif
