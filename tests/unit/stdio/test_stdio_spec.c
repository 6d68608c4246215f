/* Local backends' definitions: argument vetting, the clean environment, the config keys. */
#include "fixtures.h"
#include "stdio/stdio_spawn.h"
#include "stdio/stdio_spec.h"

static void test_argv_vetting(void **state)
{
    char *ok[] = {"node", "server.js", "--root", "/srv", NULL};
    assert_null(stdio_vet_argv(ok, 4));
    char *abs[] = {"/usr/bin/node", NULL};
    assert_null(stdio_vet_argv(abs, 1));
    char *rel[] = {"./server", NULL};
    assert_non_null(stdio_vet_argv(rel, 1));
    char *shell[] = {"sh", "-c", "rm -rf /", NULL};
    assert_non_null(strstr(stdio_vet_argv(shell, 3), "shell"));
    char *bash[] = {"/bin/bash", "-ec", "id", NULL};
    assert_non_null(stdio_vet_argv(bash, 3));
    char *script[] = {"bash", "/opt/server.sh", NULL}; /* a script file is not a string */
    assert_null(stdio_vet_argv(script, 2));
    char *ctl[] = {"node", "a\nb", NULL};
    assert_non_null(stdio_vet_argv(ctl, 2));
    char *empty[] = {"", NULL};
    assert_non_null(stdio_vet_argv(empty, 1));
    assert_non_null(stdio_vet_argv(NULL, 0));
}

static void test_env_is_only_path_and_listed(void **state)
{
    const char *why = NULL;
    char *names[] = {"HOME", "API_URL"}, *values[] = {"/home/mcp", "https://x"};
    char **env = stdio_build_env(names, values, 2, &why);
    assert_non_null(env);
    assert_string_equal(env[0], "PATH=" STDIO_DEFAULT_PATH);
    assert_string_equal(env[1], "HOME=/home/mcp");
    assert_string_equal(env[2], "API_URL=https://x");
    assert_null(env[3]);
    cfg_strv_free(env);
    char *own[] = {"PATH"}, *ownv[] = {"/opt/bin"};
    env = stdio_build_env(own, ownv, 1, &why);
    assert_string_equal(env[0], "PATH=/opt/bin");
    assert_null(env[1]);
    cfg_strv_free(env);
}

static void test_env_refuses_code_loading_variables(void **state)
{
    const char *bad[] = {
        "LD_PRELOAD", "LD_LIBRARY_PATH", "NODE_OPTIONS", "PYTHONPATH", "BASH_ENV", "1X", "A-B", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_non_null(stdio_vet_env(bad[i], "x"));
    assert_null(stdio_vet_env("NODE_ENV", "production"));
    const char *why = NULL;
    char *names[] = {"A", "A"}, *values[] = {"1", "2"};
    assert_null(stdio_build_env(names, values, 2, &why));
    assert_non_null(why);
}

static void test_resolve_program_uses_path_only(void **state)
{
    char out[256];
    char *env[] = {"PATH=relative:/usr/bin", NULL};
    assert_int_equal(stdio_resolve_program("env", env, out, sizeof out), 0);
    assert_string_equal(out, "/usr/bin/env");
    assert_int_equal(stdio_resolve_program("no-such-program-xyz", env, out, sizeof out), -1);
}

#define ROUTE(backend) "routes:\n  - name: r\n    path: /mcp\n    backends:\n      - " backend "\n"

static void test_config_local_backend(void **state)
{
    struct gw_config *cfg = fx_load_ok(ROUTE(
        "{name: fs, command: [node, srv.js, /srv], env: {HOME: /h}, instances: per_user, "
        "max_instances: 3, sandbox: bwrap, bind: [/srv], network: false, rlimits: {files: 64}}"));
    const struct gw_backend *b = &cfg->routes[0].backends[0];
    assert_non_null(b->local_owner);
    assert_non_null(b->local_socket);
    assert_string_equal(b->url, "http://localhost/stdio/routes-0-backends-0");
    const struct stdio_spec *s = b->local;
    assert_int_equal(s->argc, 3);
    assert_true(s->per_user);
    assert_int_equal(s->max_instances, 3);
    assert_true(s->bwrap);
    assert_int_equal(s->rl_files, 64);
    assert_string_equal(s->env[1], "HOME=/h");
    gw_config_free(cfg);
}

static void test_config_errors(void **state)
{
    fx_expect_error(ROUTE("{name: fs, command: [node], url: \"http://127.0.0.1:1/mcp\"}"), NULL,
                    NULL, "has both `url` and `command`");
    fx_expect_error(ROUTE("{name: fs, command: \"node srv.js\"}"), NULL, NULL, "must be a list");
    fx_expect_error(ROUTE("{name: fs, command: [sh, -c, \"node srv.js\"]}"), NULL, NULL,
                    "through a shell");
    fx_expect_error(ROUTE("{name: fs, command: [node], env: {LD_PRELOAD: /x.so}}"), NULL, NULL,
                    "dynamic loader");
    fx_expect_error(ROUTE("{name: fs, command: [node], instances: many}"), NULL, NULL,
                    "shared or per_user");
    fx_expect_error(ROUTE("{name: fs, command: [node], bind: [/srv]}"), NULL, NULL,
                    "add sandbox: bwrap");
    fx_expect_error(ROUTE("{name: fs, env: {A: b}, url: \"http://127.0.0.1:1/mcp\"}"), NULL, NULL,
                    "needs `command`");
    fx_expect_error(ROUTE("{name: fs, command: [node], colour: red}"), NULL, NULL, "colour");
    fx_expect_error(ROUTE("{name: fs, command: [node], sandbox: bwrap, bind: [relative]}"), NULL,
                    NULL, "absolute");
}

static void test_seccomp_and_bwrap_args(void **state)
{
    char why[200];
    assert_int_equal(stdio_seccomp_build(why, sizeof why), 0);
    stdio_seccomp_free();
    struct stdio_spec s = {0};
    char *argv[] = {"node", "srv.js", NULL};
    char *ro[] = {"/srv", NULL};
    s.argv = argv;
    s.argc = 2;
    s.bind_ro = ro;
    char **v = stdio_bwrap_argv(&s, "/usr/bin/node", 3);
    assert_non_null(v);
    int unshare = 0, share_net = 0, bound = 0, seccomp = 0;
    size_t n = 0;
    for (; v[n]; n++) {
        unshare |= strcmp(v[n], "--unshare-all") == 0;
        share_net |= strcmp(v[n], "--share-net") == 0;
        bound |= strcmp(v[n], "--ro-bind") == 0 && v[n + 1] && strcmp(v[n + 1], "/srv") == 0;
        seccomp |= strcmp(v[n], "--seccomp") == 0 && v[n + 1] && strcmp(v[n + 1], "3") == 0;
    }
    assert_true(unshare && bound && seccomp);
    assert_false(share_net);
    assert_string_equal(v[n - 2], "/usr/bin/node");
    assert_string_equal(v[n - 1], "srv.js");
    cfg_strv_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_argv_vetting),
        cmocka_unit_test(test_env_is_only_path_and_listed),
        cmocka_unit_test(test_env_refuses_code_loading_variables),
        cmocka_unit_test(test_resolve_program_uses_path_only),
        cmocka_unit_test(test_config_local_backend),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_seccomp_and_bwrap_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
