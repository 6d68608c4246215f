/*
 * session: toolgate's own session ids. Issued ids are random and of one shape; a lookup finds
 * a session only for its owner on its route; expiry, eviction and deletion make it unknown;
 * the store's encoding is checked whole when read back; a provided store is used instead of
 * the memory one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixtures.h"
#include "mcp/session.h"

#define ISS "https://idp.test/"

struct seen {
    int rc;
    int calls;
    char backend0[64];
    size_t n_backends;
};

static void on_lookup(void *arg, int rc, struct mcp_session *s)
{
    struct seen *r = arg;
    r->rc = rc;
    r->calls++;
    r->backend0[0] = '\0';
    if (rc == 0 && s->backends[0])
        snprintf(r->backend0, sizeof r->backend0, "%s", s->backends[0]);
    r->n_backends = rc == 0 ? s->n_backends : 0;
}

static int lookup(const char *id, const char *iss, const char *sub, const char *route,
                  struct seen *r)
{
    uint8_t owner[32];
    mcp_session_owner(iss, sub, owner);
    memset(r, 0, sizeof *r);
    mcp_session_lookup(id, owner, route, NULL, on_lookup, r);
    assert_int_equal(r->calls, 1); /* the memory store answers during the call */
    return r->rc;
}

static void test_issue_and_find(void **state)
{
    (void)state;
    assert_int_equal(mcp_session_configure(1000, 60000), 0);
    char a[MCP_SESSION_ID_LEN + 1], b[MCP_SESSION_ID_LEN + 1];
    assert_int_equal(mcp_session_create(ISS, "alice", "ehr", 1, "backend-1", a, NULL), 0);
    assert_int_equal(mcp_session_create(ISS, "alice", "ehr", 1, "backend-1", b, NULL), 0);
    assert_int_equal(strlen(a), MCP_SESSION_ID_LEN);
    assert_string_not_equal(a, b); /* random, never reissued */
    for (const char *c = a; *c; c++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *c));
    struct seen r;
    assert_int_equal(lookup(a, ISS, "alice", "ehr", &r), 0);
    assert_string_equal(r.backend0, "backend-1");
    /* Another user, the same subject at another issuer, the separator moved, another route:
     * each is unknown, not "forbidden". */
    assert_int_equal(lookup(a, ISS, "bob", "ehr", &r), 1);
    assert_int_equal(lookup(a, "https://other/", "alice", "ehr", &r), 1);
    assert_int_equal(lookup(a, "https://idp.test/a", "lice", "ehr", &r), 1);
    assert_int_equal(lookup(a, ISS, "alice", "billing", &r), 1);
    /* Ids toolgate did not issue, of any shape. */
    assert_int_equal(lookup("backend-1", ISS, "alice", "ehr", &r), 1);
    assert_int_equal(lookup("", ISS, "alice", "ehr", &r), 1);
    assert_int_equal(lookup(NULL, ISS, "alice", "ehr", &r), 1);
    char guess[MCP_SESSION_ID_LEN + 1];
    memcpy(guess, a, sizeof guess);
    guess[0] = guess[0] == 'A' ? 'B' : 'A';
    assert_int_equal(lookup(guess, ISS, "alice", "ehr", &r), 1);
    /* Deleted is unknown; the other session is untouched. */
    mcp_session_delete(a, NULL);
    assert_int_equal(lookup(a, ISS, "alice", "ehr", &r), 1);
    assert_int_equal(lookup(b, ISS, "alice", "ehr", &r), 0);
    /* Anonymous callers (identity off) own sessions as ("", "anonymous"). */
    char anon[MCP_SESSION_ID_LEN + 1];
    assert_int_equal(mcp_session_create("", "anonymous", "ehr", 1, NULL, anon, NULL), 0);
    assert_int_equal(lookup(anon, "", "anonymous", "ehr", &r), 0);
    assert_int_equal(lookup(anon, ISS, "anonymous", "ehr", &r), 1);
}

static void test_update_backends(void **state)
{
    (void)state;
    assert_int_equal(mcp_session_configure(1000, 60000), 0);
    char id[MCP_SESSION_ID_LEN + 1];
    assert_int_equal(mcp_session_create(ISS, "alice", "fed", 3, NULL, id, NULL), 0);
    struct seen r;
    assert_int_equal(lookup(id, ISS, "alice", "fed", &r), 0);
    assert_int_equal(r.n_backends, 3);
    assert_string_equal(r.backend0, "");
    struct mcp_session s = {0};
    mcp_session_owner(ISS, "alice", s.owner);
    snprintf(s.route, sizeof s.route, "fed");
    s.n_backends = 3;
    s.backends[0] = strdup("first");
    s.backends[2] = strdup("third");
    assert_int_equal(mcp_session_update(id, &s, NULL), 0);
    mcp_session_clear(&s);
    assert_int_equal(lookup(id, ISS, "alice", "fed", &r), 0);
    assert_string_equal(r.backend0, "first");
    /* Bounds of what a session may hold. */
    char big[MCP_SESSION_MAX_BACKEND_ID + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(mcp_session_create(ISS, "alice", "fed", 1, big, id, NULL), -1);
    assert_int_equal(mcp_session_create(ISS, "alice", "fed", 0, NULL, id, NULL), -1);
    assert_int_equal(
        mcp_session_create(ISS, "alice", "fed", MCP_SESSION_MAX_BACKENDS + 1, NULL, id, NULL), -1);
}

static void test_idle_expiry(void **state)
{
    (void)state;
    /* Idle 600 ms: each sleep before a use leaves 250 ms for a loaded machine to oversleep,
     * and the second use, 700 ms after the start, finds the session only because the first
     * refreshed it. */
    assert_int_equal(mcp_session_configure(100, 600), 0);
    char id[MCP_SESSION_ID_LEN + 1];
    assert_int_equal(mcp_session_create(ISS, "alice", "ehr", 1, NULL, id, NULL), 0);
    struct seen r;
    usleep(350 * 1000);
    assert_int_equal(lookup(id, ISS, "alice", "ehr", &r), 0); /* use refreshes */
    usleep(350 * 1000);
    assert_int_equal(lookup(id, ISS, "alice", "ehr", &r), 0);
    usleep(900 * 1000);
    assert_int_equal(lookup(id, ISS, "alice", "ehr", &r), 1);
}

/*
 * A full table evicts the least recently used: that session is then unknown (fail closed),
 * and counted. The smallest table is one set of 8 (both choices of every key are that set).
 */
static void test_bounded(void **state)
{
    (void)state;
    assert_int_equal(mcp_session_configure(1, 60000), 0);
    uint64_t evicted = mcp_session_evictions();
    char ids[20][MCP_SESSION_ID_LEN + 1];
    for (int i = 0; i < 20; i++)
        assert_int_equal(mcp_session_create(ISS, "alice", "ehr", 1, NULL, ids[i], NULL), 0);
    assert_int_equal(mcp_session_count(), 8);
    assert_int_equal(mcp_session_evictions() - evicted, 12);
    struct seen r;
    int found = 0;
    for (int i = 0; i < 20; i++)
        found += lookup(ids[i], ISS, "alice", "ehr", &r) == 0;
    assert_int_equal(found, 8);
    assert_int_equal(lookup(ids[19], ISS, "alice", "ehr", &r), 0); /* the newest is there */
    assert_int_equal(lookup(ids[0], ISS, "alice", "ehr", &r), 1);  /* the oldest is not */
}

/*
 * A table sized for N holds N live sessions: under 1% go early (two choices of set a key,
 * an eighth more slots), each one still known with its owner, route and backend afterwards.
 */
static void test_sized_holds_entries(void **state)
{
    (void)state;
    enum { N = 20000 };
    assert_int_equal(mcp_session_configure(N, 600000), 0);
    static char ids[N][MCP_SESSION_ID_LEN + 1];
    char sub[32];
    for (int i = 0; i < N; i++) {
        snprintf(sub, sizeof sub, "user%d", i);
        assert_int_equal(mcp_session_create(ISS, sub, "ehr", 1, "backend-session-1", ids[i], NULL),
                         0);
    }
    size_t held = mcp_session_count();
    print_message("      %d sessions in a table sized for %d: %zu held\n", N, N, held);
    assert_true(held >= N - N / 100);
    struct seen r;
    int found = 0;
    for (int i = 0; i < N; i++) {
        snprintf(sub, sizeof sub, "user%d", i);
        found += lookup(ids[i], ISS, sub, "ehr", &r) == 0;
    }
    assert_int_equal((size_t)found, held);
    /* Another user's or another route's lookup of a held id learns nothing. */
    assert_int_equal(lookup(ids[N - 1], ISS, "user0", "ehr", &r), 1);
    assert_int_equal(lookup(ids[N - 1], ISS, "user19999", "other", &r), 1);
}

static void test_encoding_checked(void **state)
{
    (void)state;
    struct mcp_session s = {0}, back;
    mcp_session_owner(ISS, "alice", s.owner);
    snprintf(s.route, sizeof s.route, "ehr");
    s.n_backends = 2;
    s.backends[1] = strdup("b\"1");
    char *v;
    size_t len;
    assert_int_equal(mcp_session_encode(&s, &v, &len), 0);
    assert_int_equal(mcp_session_decode(v, len, &back), 0);
    assert_memory_equal(back.owner, s.owner, 32);
    assert_null(back.backends[0]);
    assert_string_equal(back.backends[1], "b\"1");
    mcp_session_clear(&back);
    free(v);
    mcp_session_clear(&s);
    static const char *const bad[] = {
        "",
        "[]",
        "{\"o\":\"00\",\"r\":\"ehr\",\"b\":[]}",
        "{\"o\":\"zz00000000000000000000000000000000000000000000000000000000000000\",\"r\":\"e\","
        "\"b\":[]}",
        "{\"o\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"r\":1,"
        "\"b\":[]}",
        "{\"o\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"r\":\"e\","
        "\"b\":[1]}",
        "{\"o\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"r\":\"e\","
        "\"r\":\"f\",\"b\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(mcp_session_decode(bad[i], strlen(bad[i]), &back), -1);
    /* The owner is 64 hex digits and nothing else: no sign, space or prefix a number reader
     * would skip, in any of its places; either case of digit reads the same owner. */
    static const char *const owners[] = {"+f", " f", "f ", "0x", "-1", "g0", "0G", "\t1"};
    for (size_t i = 0; i < sizeof owners / sizeof owners[0]; i++)
        for (size_t at = 0; at < 64; at += 2) {
            char o[65], doc[160];
            memset(o, '0', 64);
            o[64] = '\0';
            memcpy(o + at, owners[i], 2);
            snprintf(doc, sizeof doc, "{\"o\":\"%s\",\"r\":\"e\",\"b\":[null]}", o);
            assert_int_equal(mcp_session_decode(doc, strlen(doc), &back), -1);
        }
    char lower[160], upper[160];
    snprintf(lower, sizeof lower, "{\"o\":\"%s\",\"r\":\"e\",\"b\":[null]}",
             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    snprintf(upper, sizeof upper, "{\"o\":\"%s\",\"r\":\"e\",\"b\":[null]}",
             "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF");
    struct mcp_session up;
    assert_int_equal(mcp_session_decode(lower, strlen(lower), &back), 0);
    assert_int_equal(mcp_session_decode(upper, strlen(upper), &up), 0);
    assert_memory_equal(back.owner, up.owner, 32);
    assert_int_equal(back.owner[0], 0x01);
    assert_int_equal(back.owner[7], 0xef);
    mcp_session_clear(&back);
    mcp_session_clear(&up);
}

/* A store a module provides: what it answers is what lookups see, failures fail closed. */
static int fake_rc = 0;
static char fake_value[512];
static int fake_puts, fake_dels;

static void fake_get(void *ctx, const char *key, uint64_t ttl, void *loop, mcp_session_get_cb *cb,
                     void *arg)
{
    (void)ctx;
    (void)loop;
    assert_true(ttl > 0);
    assert_int_equal(strncmp(key, "tg:s:", 5), 0);
    assert_int_equal(strlen(key), 5 + 64); /* a hash, never the id */
    cb(arg, fake_rc, fake_rc == 0 ? fake_value : NULL, fake_rc == 0 ? strlen(fake_value) : 0);
}

static int fake_put(void *ctx, const char *key, const char *value, size_t len, uint64_t ttl,
                    void *loop)
{
    (void)ctx;
    (void)key;
    (void)loop;
    assert_true(ttl > 0);
    assert_true(len < sizeof fake_value);
    memcpy(fake_value, value, len);
    fake_value[len] = '\0';
    fake_puts++;
    return 0;
}

static void fake_del(void *ctx, const char *key, void *loop)
{
    (void)ctx;
    (void)key;
    (void)loop;
    fake_dels++;
}

static void test_provided_store(void **state)
{
    (void)state;
    static const struct mcp_session_store fake = {"fake", fake_get, fake_put, fake_del, NULL};
    mcp_sessions_use(&fake);
    assert_string_equal(mcp_sessions_store_name(), "fake");
    char id[MCP_SESSION_ID_LEN + 1];
    assert_int_equal(mcp_session_create(ISS, "alice", "ehr", 1, "b", id, NULL), 0);
    assert_int_equal(fake_puts, 1);
    assert_null(strstr(fake_value, id)); /* the id is not in what is stored */
    struct seen r;
    fake_rc = 0;
    assert_int_equal(lookup(id, ISS, "alice", "ehr", &r), 0);
    fake_rc = 1;
    assert_int_equal(lookup(id, ISS, "alice", "ehr", &r), 1);
    fake_rc = -1;
    assert_int_equal(lookup(id, ISS, "alice", "ehr", &r), -1);
    fake_rc = 0;
    snprintf(fake_value, sizeof fake_value, "not json");
    assert_int_equal(lookup(id, ISS, "alice", "ehr", &r), -1); /* a store that lies */
    mcp_session_delete(id, NULL);
    assert_int_equal(fake_dels, 1);
    mcp_sessions_use(NULL);
    assert_string_equal(mcp_sessions_store_name(), "memory");
}

/* All of a session a lookup answered, to compare the memory store's answers with a provided
 * store's (the memory store reads its own bytes, a provided one goes through the encoding). */
struct whole {
    int rc;
    unsigned caps;
    char route[sizeof((struct mcp_session *)0)->route];
    size_t n_backends;
    char backends[MCP_SESSION_MAX_BACKENDS][MCP_SESSION_MAX_BACKEND_ID + 2];
    int present[MCP_SESSION_MAX_BACKENDS];
};

static void on_whole(void *arg, int rc, struct mcp_session *s)
{
    struct whole *w = arg;
    memset(w, 0, sizeof *w);
    w->rc = rc;
    if (rc != 0)
        return;
    w->caps = s->client_caps;
    snprintf(w->route, sizeof w->route, "%s", s->route);
    w->n_backends = s->n_backends;
    for (size_t i = 0; i < s->n_backends && i < MCP_SESSION_MAX_BACKENDS; i++)
        if (s->backends[i]) {
            w->present[i] = 1;
            snprintf(w->backends[i], sizeof w->backends[i], "%s", s->backends[i]);
        }
}

/* Creates the session described, updates its backends, then answers lookups for the owner and
 * for strangers: into out[0] (owner, route), out[1] (another subject), out[2] (another route). */
static void session_round(const char *sub, const char *route, size_t n, char *const *backends,
                          struct whole out[3])
{
    char id[MCP_SESSION_ID_LEN + 1];
    assert_int_equal(mcp_session_create(ISS, sub, route, n, backends[0], id, NULL), 0);
    struct mcp_session s = {0};
    mcp_session_owner(ISS, sub, s.owner);
    snprintf(s.route, sizeof s.route, "%s", route);
    s.client_caps = 5;
    s.n_backends = n;
    for (size_t i = 0; i < n; i++)
        s.backends[i] = backends[i] ? strdup(backends[i]) : NULL;
    assert_int_equal(mcp_session_update(id, &s, NULL), 0);
    mcp_session_clear(&s);
    uint8_t owner[32], other[32];
    mcp_session_owner(ISS, sub, owner);
    mcp_session_owner(ISS, "mallory", other);
    mcp_session_lookup(id, owner, route, NULL, on_whole, &out[0]);
    mcp_session_lookup(id, other, route, NULL, on_whole, &out[1]);
    mcp_session_lookup(id, owner, "elsewhere", NULL, on_whole, &out[2]);
}

static void test_memory_matches_encoding(void **state)
{
    (void)state;
    static char longest[MCP_SESSION_MAX_BACKEND_ID + 1];
    memset(longest, 'L', MCP_SESSION_MAX_BACKEND_ID);
    static char *const one[] = {"backend-1"};
    static char *const gaps[] = {NULL, "b\"q\\", NULL, "\xc3\xa9t\xc3\xa9"};
    static char *const full[] = {"a", longest, "", "d"};
    static char *const none[] = {NULL, NULL};
    struct {
        const char *sub, *route;
        size_t n;
        char *const *b;
    } cases[] = {{"alice", "ehr", 1, one},
                 {"bob", "fed", 4, gaps},
                 {"carol", "r", 4, full},
                 {"d\xc3\xa4n", "ehr", 2, none}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct whole mem[3], enc[3];
        assert_int_equal(mcp_session_configure(1000, 60000), 0);
        session_round(cases[c].sub, cases[c].route, cases[c].n, cases[c].b, mem);
        static const struct mcp_session_store fake = {"fake", fake_get, fake_put, fake_del, NULL};
        mcp_sessions_use(&fake);
        fake_rc = 0;
        session_round(cases[c].sub, cases[c].route, cases[c].n, cases[c].b, enc);
        mcp_sessions_use(NULL);
        assert_int_equal(mem[0].rc, 0);
        assert_int_equal(mem[1].rc, 1);
        assert_int_equal(mem[2].rc, 1);
        assert_int_equal(mem[0].n_backends, cases[c].n);
        assert_int_equal(mem[0].caps, 5);
        assert_string_equal(mem[0].route, cases[c].route);
        for (size_t i = 0; i < cases[c].n; i++) {
            assert_int_equal(mem[0].present[i], cases[c].b[i] != NULL);
            if (cases[c].b[i])
                assert_string_equal(mem[0].backends[i], cases[c].b[i]);
        }
        for (int k = 0; k < 3; k++)
            assert_memory_equal(&mem[k], &enc[k], sizeof mem[k]);
    }
}

struct worker {
    int errors;
};

static void *session_thread(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 500; i++) {
        char id[MCP_SESSION_ID_LEN + 1];
        struct seen r;
        if (mcp_session_create(ISS, "alice", "ehr", 1, "b", id, NULL) != 0)
            w->errors++;
        uint8_t owner[32];
        mcp_session_owner(ISS, "alice", owner);
        memset(&r, 0, sizeof r);
        mcp_session_lookup(id, owner, "ehr", NULL, on_lookup, &r);
        if (r.rc != 0)
            w->errors++;
        mcp_session_delete(id, NULL);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    assert_int_equal(mcp_session_configure(100000, 60000), 0);
    pthread_t t[8];
    struct worker w[8] = {0};
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, session_thread, &w[i]);
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].errors, 0);
    }
    mcp_session_shutdown();
}

/* Looks one session up until told to stop; counts the lookups that did not find it. */
struct shared_user {
    const char *id;
    atomic_int *stop;
    long lookups, lost;
};

static void *shared_session_thread(void *arg)
{
    struct shared_user *u = arg;
    uint8_t owner[32];
    mcp_session_owner(ISS, "alice", owner);
    while (!atomic_load(u->stop)) {
        struct seen r = {0};
        mcp_session_lookup(u->id, owner, "ehr", NULL, on_lookup, &r);
        u->lookups++;
        u->lost += r.rc != 0;
    }
    return NULL;
}

/*
 * One session used by several workers at once, as one client's connections land on
 * different workers: each reads the clock before it takes the session's lock, so one may
 * find a later use recorded by another while it waited. That session is fresh and is never
 * dropped (it was, when the clock difference wrapped around and read as idle for ages).
 */
static void test_shared_session_never_dropped(void **state)
{
    (void)state;
    assert_int_equal(mcp_session_configure(1000, 60000), 0);
    char id[MCP_SESSION_ID_LEN + 1];
    assert_int_equal(mcp_session_create(ISS, "alice", "ehr", 1, NULL, id, NULL), 0);
    atomic_int stop = 0;
    pthread_t t[4];
    struct shared_user u[4];
    for (int i = 0; i < 4; i++) {
        u[i] = (struct shared_user){.id = id, .stop = &stop};
        pthread_create(&t[i], NULL, shared_session_thread, &u[i]);
    }
    usleep(1500 * 1000);
    atomic_store(&stop, 1);
    long lookups = 0, lost = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        lookups += u[i].lookups;
        lost += u[i].lost;
    }
    fprintf(stderr, "shared session: %ld lookups from 4 threads, %ld lost\n", lookups, lost);
    assert_true(lookups > 1000);
    assert_int_equal(lost, 0);
    mcp_session_shutdown();
}

/*
 * The table grows with its sessions instead of being allocated for its bound: 4,000 sessions
 * in a table bounded at 100,000 take well under the 5 MiB a table of the bound would be
 * (session keys are random, so a few thousand touch every page of it).
 */
static void test_table_grows_with_sessions(void **state)
{
    (void)state;
    assert_int_equal(mcp_session_configure(100000, 600000), 0);
    uint64_t evicted = mcp_session_evictions();
    long before = fx_rss_kib();
    enum { N = 4000 };
    static char ids[N][MCP_SESSION_ID_LEN + 1];
    for (int i = 0; i < N; i++)
        assert_int_equal(mcp_session_create(ISS, "alice", "ehr", 1, NULL, ids[i], NULL), 0);
    long grew = fx_rss_kib() - before;
    print_message("      %d sessions: resident memory grew by %ld KiB\n", N, grew);
#ifndef __SANITIZE_ADDRESS__ /* its shadow memory and quarantine grow with every allocation */
    assert_true(before > 0 && grew < 2048);
#endif
    assert_int_equal(mcp_session_count(), N);
    assert_int_equal(mcp_session_evictions(), evicted);
    /* Doubled once past three quarters of its first 3,520 entries: 880 sets, not 14,080. */
    print_message("      table: %zu bytes\n", mcp_session_table_bytes());
    assert_true(mcp_session_table_bytes() < 512 * 1024);
    struct seen r;
    for (int i = 0; i < N; i++)
        assert_int_equal(lookup(ids[i], ISS, "alice", "ehr", &r), 0);
    mcp_session_shutdown();
}

/* Creates sessions while looking up earlier ones, from several threads as the table grows. */
struct grower {
    int index;
    long lost, created;
};

static void *grow_thread(void *arg)
{
    struct grower *g = arg;
    enum { PER = 6000 };
    char(*ids)[MCP_SESSION_ID_LEN + 1] = calloc(PER, sizeof *ids);
    char sub[32];
    uint8_t owner[32];
    snprintf(sub, sizeof sub, "grower%d", g->index);
    mcp_session_owner(ISS, sub, owner);
    for (int i = 0; ids && i < PER; i++) {
        if (mcp_session_create(ISS, sub, "ehr", 1, NULL, ids[i], NULL) != 0) {
            g->lost++;
            continue;
        }
        g->created++;
        int j = (int)(((unsigned)i * 2654435761u) % (unsigned)(i + 1));
        struct seen r = {0};
        mcp_session_lookup(ids[j], owner, "ehr", NULL, on_lookup, &r);
        g->lost += r.rc != 0;
    }
    for (int i = 0; ids && i < PER; i++) {
        struct seen r = {0};
        mcp_session_lookup(ids[i], owner, "ehr", NULL, on_lookup, &r);
        g->lost += r.rc != 0;
    }
    free(ids);
    return NULL;
}

/*
 * Four threads create 24,000 sessions between them, each looking up its own earlier ones as
 * it goes, while the table doubles four times under them: every session is found, during the
 * growth and after it, and none is dropped to make room.
 */
static void test_growth_under_concurrency(void **state)
{
    (void)state;
    assert_int_equal(mcp_session_configure(100000, 600000), 0);
    uint64_t evicted = mcp_session_evictions();
    pthread_t t[4];
    struct grower g[4] = {{0}};
    for (int i = 0; i < 4; i++) {
        g[i].index = i;
        pthread_create(&t[i], NULL, grow_thread, &g[i]);
    }
    long lost = 0, created = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        lost += g[i].lost;
        created += g[i].created;
    }
    assert_int_equal(created, 24000);
    assert_int_equal(lost, 0);
    assert_int_equal(mcp_session_count(), 24000);
    assert_int_equal(mcp_session_evictions(), evicted);
    /* 24,000 sessions are held in at least 24,000 / 0.75 slots of 40 bytes and their locks. */
    assert_true(mcp_session_table_bytes() >= 32000 * 40);
    mcp_session_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_and_find),
        cmocka_unit_test(test_update_backends),
        cmocka_unit_test(test_idle_expiry),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_encoding_checked),
        cmocka_unit_test(test_provided_store),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_shared_session_never_dropped),
        cmocka_unit_test(test_sized_holds_entries),
        cmocka_unit_test(test_memory_matches_encoding),
        cmocka_unit_test(test_table_grows_with_sessions),
        cmocka_unit_test(test_growth_under_concurrency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
