/*
 * `toolgate bench routing`: what the routing layer costs per call. Mints with a throwaway
 * key (no file is written), so it runs anywhere.
 */
#include "layers/routing/inject.h"
#include "layers/routing/routing.h"
#include "lib/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double per_call_ns(uint64_t t0, long n)
{
    return (double)(gw_mono_ns() - t0) / (double)n;
}

int routing_bench_main(int argc, char **argv)
{
    long n = 20000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc)
            n = strtol(argv[++i], NULL, 10);
        else {
            int help = strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
            fprintf(help ? stdout : stderr, "usage: toolgate bench routing [--iterations N]\n");
            return help ? 0 : 2;
        }
    }
    if (n < 1 || n > 100000000)
        n = 20000;
    char dir[] = "/tmp/toolgate-bench-routing-XXXXXX", key[64], why[256];
    if (!mkdtemp(dir))
        return 1;
    snprintf(key, sizeof key, "%s/k.pem", dir);
    /* Generate into the temporary directory by starting from there, then clean it away. */
    char cwd[1024];
    if (!getcwd(cwd, sizeof cwd) || chdir(dir) != 0)
        return 1;
    int rc = inject_start(NULL, why, sizeof why);
    unlink(ROUTING_DEFAULT_KEY_PATH);
    if (chdir(cwd) != 0 || rc != 0) {
        rmdir(dir);
        fprintf(stderr, "bench routing: %s\n", why);
        return 1;
    }
    rmdir(dir);
    char *roles[] = {"doctor", NULL}, *scopes[] = {"patients.read", NULL};
    struct gw_identity id = {.verified = 1,
                             .subject = "dr-alice",
                             .tenant = "acme",
                             .client_id = "bench",
                             .roles = roles,
                             .scopes = scopes};
    int64_t now = (int64_t)(gw_now_ns() / 1000000000u);
    id.expires_at = now + 3600;
    struct gw_buf b = {0};
    long mint_n = n / 10 > 0 ? n / 10 : 1;
    uint64_t t0 = gw_mono_ns();
    for (long i = 0; i < mint_n; i++) {
        inject_cache_flush();
        gw_buf_reset(&b);
        inject_token(&id, "http://127.0.0.1:8080", "ehr-backend", 60000, now, &b, NULL);
    }
    /* The flush itself walks the whole cache; measure it alone and take it out. */
    double uncached = per_call_ns(t0, mint_n);
    t0 = gw_mono_ns();
    for (long i = 0; i < mint_n; i++)
        inject_cache_flush();
    uncached -= per_call_ns(t0, mint_n);
    t0 = gw_mono_ns();
    for (long i = 0; i < n; i++) {
        gw_buf_reset(&b);
        inject_token(&id, "http://127.0.0.1:8080", "ehr-backend", 60000, now, &b, NULL);
    }
    double cached = per_call_ns(t0, n);
    static const char *const urls[] = {
        "https://public.example.com/some/page?q=1",
        "http://0x7f.1/",
        "http://[::ffff:169.254.169.254]/latest",
        "http://user@127.0.0.1/",
    };
    struct ssrf_allow none = {0};
    volatile int sink = 0;
    t0 = gw_mono_ns();
    for (long i = 0; i < n; i++) {
        const char *u = urls[i % 4];
        struct gw_url pu;
        if (gw_url_parse(u, strlen(u), 0, &pu) == GW_URL_OK && pu.host_is_ip)
            sink += ssrf_addr_allowed(&none, pu.host, pu.port, &pu.ip, NULL);
    }
    double vet = per_call_ns(t0, n);
    (void)sink;
    printf("routing mint uncached: %.0f ns/call (%s)\n", uncached, inject_kid()[0] ? "EdDSA" : "?");
    printf("routing mint cached: %.0f ns/call\n", cached);
    printf("routing url vet (literal host): %.0f ns/call\n", vet);
    gw_buf_free(&b);
    inject_stop();
    return 0;
}
