/*
 * Fuzz driver for the SSRF guard's URL parser and allow-list parser. Invariants: a URL the
 * parser accepts has a non-empty canonical host of safe characters and a port in range, and
 * its canonical form ("http://host:port/") parses again to the same host and address.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/routing/ssrf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_url u;
    if (gw_url_parse((const char *)data, size, 0, &u) == GW_URL_OK) {
        size_t hl = strlen(u.host);
        if (hl == 0 || u.port < 1 || u.port > 65535)
            abort();
        for (size_t i = 0; i < hl; i++)
            if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789-_.:", u.host[i]))
                abort();
        char again[GW_URL_MAX_HOST + 32];
        int n = snprintf(again, sizeof again, "http://%s%s%s:%d/", u.ip.family == 10 ? "[" : "",
                         u.host, u.ip.family == 10 ? "]" : "", u.port);
        struct gw_url v;
        if (n < 0 || gw_url_parse(again, (size_t)n, 0, &v) != GW_URL_OK ||
            strcmp(u.host, v.host) != 0 || u.host_is_ip != v.host_is_ip)
            abort();
        if (u.host_is_ip && ssrf_classify(&u.ip) != ssrf_classify(&v.ip))
            abort();
        ssrf_addr_allowed(NULL, u.host, u.port, &u.ip, NULL);
    }
    (void)gw_url_looks_like((const char *)data, size);
    if (size < 300) {
        char text[300];
        memcpy(text, data, size);
        text[size] = '\0';
        struct ssrf_allow_entry e;
        const char *why = NULL;
        if (ssrf_allow_parse(text, &e, &why) != 0 && !why)
            abort();
    }
    return 0;
}
