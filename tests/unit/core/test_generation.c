/*
 * Tests for generation.c and reload.c: reference counts keep a generation alive while any
 * holder is left, a swap makes the new one current without freeing what is held, section
 * digests tell what changed, keys fixed at start refuse a reload, and a failed reload keeps
 * the running generation while a good one replaces it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/generation.h"
#include "core/reload.h"
#include "fixtures.h"

#define BASE                                                                                       \
    "server: {listen: [\"127.0.0.1:18080\"], workers: 2}\n"                                        \
    "routes: [{name: r, path: /mcp, backends: [{name: b, url: \"http://127.0.0.1:9/mcp\"}]}]\n"    \
    "identity: {mode: \"off\"}\n"

static struct gw_config *load(const char *yaml)
{
    struct cfg_error err = {{0}};
    struct gw_config *cfg = gw_config_load_string(yaml, "t.yaml", &err);
    if (!cfg)
        fail_msg("%s", err.msg);
    return cfg;
}

static void refcounts_and_swap(void **state)
{
    (void)state;
    struct gw_config *a = load(BASE "policy: {rules: [{id: a, effect: permit, tools: [x]}]}\n");
    struct gw_config *b = load(BASE "policy: {rules: [{id: b, effect: permit, tools: [y]}]}\n");
    long alive0 = gw_generation_alive();
    gw_generation_init(a); /* a: the loader's reference + the current pointer's */
    assert_int_equal(gw_generation_current_number(), 1);
    assert_int_equal(gw_generation_alive(), alive0 + 1);

    /* A request holds a (as an exchange does). */
    struct gw_config *req = gw_generation_acquire();
    assert_ptr_equal(req, a);
    assert_int_equal(atomic_load(&a->refs), 3);

    gw_generation_swap(b);
    assert_int_equal(gw_generation_current_number(), 2);
    assert_int_equal(b->generation, 2);
    struct gw_config *cur = gw_generation_acquire();
    assert_ptr_equal(cur, b);
    gw_generation_release(cur);
    /* a lost the current pointer's reference but is still held twice. */
    assert_int_equal(atomic_load(&a->refs), 2);
    assert_int_equal(gw_generation_alive(), alive0 + 2);

    gw_generation_release(req);
    assert_int_equal(gw_generation_alive(), alive0 + 2);
    gw_generation_release(a); /* the loader's: the last one frees it */
    assert_int_equal(gw_generation_alive(), alive0 + 1);

    gw_generation_shutdown(); /* b had only the current pointer's reference */
    assert_int_equal(gw_generation_alive(), alive0);
    assert_int_equal(gw_generation_current_number(), 0);
    assert_null(gw_generation_acquire());
}

static void section_digests(void **state)
{
    (void)state;
    struct gw_config *a = load(BASE "policy: {rules: [{id: a, effect: permit, tools: [x]}]}\n");
    struct gw_config *b = load(BASE "policy: {rules: [{id: a, effect: permit, tools: [y]}]}\n");
    /* Same text in another layout is the same tree. */
    struct gw_config *c =
        load(BASE "policy:\n  rules:\n    - {id: a, effect: permit, tools: [x]}\n");
    assert_true(gw_config_section_same(a, b, "server"));
    assert_true(gw_config_section_same(a, b, "routes"));
    assert_false(gw_config_section_same(a, b, "policy"));
    assert_true(gw_config_section_same(a, c, "policy"));
    /* Both absent is the same; absent and present is not. */
    assert_true(gw_config_section_same(a, b, "limits"));
    struct gw_config *d = load(BASE "limits: {rate: [{per: user, limit: 1, window: 1s}]}\n");
    assert_false(gw_config_section_same(a, d, "limits"));
    gw_config_free(a);
    gw_config_free(b);
    gw_config_free(c);
    gw_config_free(d);
}

static void restart_keys(void **state)
{
    (void)state;
    struct gw_config *a = load(BASE);
    struct gw_config *workers = load("server: {listen: [\"127.0.0.1:18080\"], workers: 3}\n"
                                     "routes: [{name: r, path: /mcp, backends: [{name: b, url: "
                                     "\"http://127.0.0.1:9/mcp\"}]}]\n");
    struct gw_config *listen = load("server: {listen: [\"127.0.0.1:18081\"], workers: 2}\n"
                                    "routes: [{name: r, path: /mcp, backends: [{name: b, url: "
                                    "\"http://127.0.0.1:9/mcp\"}]}]\n");
    struct gw_config *url =
        load("server: {listen: [\"127.0.0.1:18080\"], workers: 2, public_url: \"http://gw.test\"}\n"
             "routes: [{name: r, path: /mcp, backends: [{name: b, url: "
             "\"http://127.0.0.1:9/mcp\"}]}]\n");
    char err[512];
    assert_int_equal(gw_reload_check_restart(a, workers, err, sizeof err), -1);
    assert_non_null(strstr(err, "server.workers"));
    assert_non_null(strstr(err, "restart"));
    assert_int_equal(gw_reload_check_restart(a, listen, err, sizeof err), -1);
    assert_non_null(strstr(err, "server.listen"));
    assert_int_equal(gw_reload_check_restart(a, url, err, sizeof err), 0);
    gw_config_free(a);
    gw_config_free(workers);
    gw_config_free(listen);
    gw_config_free(url);
}

/* ---- a whole reload, through the thread ------------------------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int done_count;
static struct {
    int ok, status, line;
    char code[32], message[768];
    uint64_t generation;
} got;

static void on_done(void *arg, const struct gw_reload_outcome *o)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    got.ok = o->ok;
    got.status = o->status;
    got.line = o->line;
    got.generation = o->generation;
    snprintf(got.code, sizeof got.code, "%s", o->code);
    snprintf(got.message, sizeof got.message, "%s", o->message);
    done_count++;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

static void reload_and_wait(void)
{
    pthread_mutex_lock(&mu);
    int want = done_count + 1;
    pthread_mutex_unlock(&mu);
    assert_int_equal(gw_reload_request("test", on_done, NULL), GW_RELOAD_STARTED);
    pthread_mutex_lock(&mu);
    while (done_count < want)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void failure_keeps_the_old(void **state)
{
    (void)state;
    char dir[64], path[128];
    fx_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/t.yaml", dir);
    write_text(path, BASE "policy: {rules: [{id: a, effect: permit, tools: [x]}]}\n");
    struct cfg_error err = {{0}};
    struct gw_config *boot = gw_config_load(path, &err);
    assert_non_null(boot);
    gw_generation_init(boot);
    gw_reload_setup(path);

    /* An unknown key: refused with the line, generation 1 keeps serving. */
    write_text(path, BASE "policy: {rules: [{id: a, effect: permit, tools: [x]}]}\nnope: 1\n");
    reload_and_wait();
    assert_false(got.ok);
    assert_int_equal(got.status, 422);
    assert_int_equal(got.line, 5);
    assert_non_null(strstr(got.message, "nope"));
    assert_int_equal(gw_generation_current_number(), 1);

    /* A key fixed at start: 409, named. */
    write_text(path, "server: {listen: [\"127.0.0.1:18080\"], workers: 5}\n"
                     "routes: [{name: r, path: /mcp, backends: [{name: b, url: "
                     "\"http://127.0.0.1:9/mcp\"}]}]\n");
    reload_and_wait();
    assert_int_equal(got.status, 409);
    assert_string_equal(got.code, "restart_required");
    assert_int_equal(gw_generation_current_number(), 1);

    /* A missing file. */
    remove(path);
    reload_and_wait();
    assert_int_equal(got.status, 422);
    assert_int_equal(gw_generation_current_number(), 1);

    /* A good file: generation 2, while a holder of 1 keeps it. */
    struct gw_config *held = gw_generation_acquire();
    write_text(path, BASE "policy: {rules: [{id: b, effect: permit, tools: [y]}]}\n");
    reload_and_wait();
    assert_true(got.ok);
    assert_int_equal(got.generation, 2);
    assert_int_equal(gw_generation_current_number(), 2);
    assert_ptr_equal(held, boot);
    assert_int_equal(atomic_load(&boot->refs), 2); /* the loader's and ours */
    gw_generation_release(held);

    json_t *s = gw_reload_status_json();
    assert_int_equal(json_integer_value(json_object_get(s, "succeeded")), 1);
    assert_int_equal(json_integer_value(json_object_get(s, "failed")), 3);
    json_decref(s);

    gw_reload_shutdown();
    assert_int_equal(gw_reload_request("test", on_done, NULL), GW_RELOAD_REFUSED);
    gw_generation_shutdown();
    gw_generation_release(boot);
    fx_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(refcounts_and_swap),
        cmocka_unit_test(section_digests),
        cmocka_unit_test(restart_keys),
        cmocka_unit_test(failure_keeps_the_old),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
