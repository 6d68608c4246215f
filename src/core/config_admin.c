/*
 * config_admin: the `admin` section: where health, readiness and metrics are served, and the
 * bearer token that guards them.
 *
 * Absent, there is no admin listener: a port nobody asked for would make two instances on
 * one host collide, and would make an upgrade fail to start where the port is taken. `admin:
 * {}` gives the defaults (127.0.0.1:9090, no token, loopback only).
 */
#include "core/config-int.h"
#include "lib/digest.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_DEFAULT_LISTEN "127.0.0.1:9090"
#define ADMIN_MAX_TOKEN 4096
#define ADMIN_MIN_TOKEN 16

static int is_loopback_host(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

static int is_wildcard_host(const char *host)
{
    return strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
}

/*
 * Two sockets on one port bound with SO_REUSEPORT would share its connections: the admin
 * listener may not sit on a port a server listener covers (the same address, or either one
 * a wildcard of the same family).
 */
static int overlaps(const struct gw_listen *a, const struct gw_listen *b)
{
    if (a->port != b->port)
        return 0;
    int a6 = strchr(a->host, ':') != NULL, b6 = strchr(b->host, ':') != NULL;
    if (a6 != b6)
        return 0;
    return strcmp(a->host, b->host) == 0 || is_wildcard_host(a->host) || is_wildcard_host(b->host);
}

/* Reads the token, trims surrounding whitespace and keeps only its SHA-256. */
static int load_token(struct gw_admin_config *ac, const struct cfg_doc *doc,
                      const struct cfg_node *node, struct cfg_error *err)
{
    char *text = NULL;
    size_t len = 0;
    struct cfg_error ferr = {{0}};
    if (cfg_read_file(ac->token_file, ADMIN_MAX_TOKEN, &text, &len, &ferr) != 0)
        return cfg_errorf(err, doc, node, "admin.token_file",
                          "cannot read \"%s\" (at most %d bytes; relative paths are relative to "
                          "the directory toolgate is started in)",
                          ac->token_file, ADMIN_MAX_TOKEN);
    size_t start = 0, end = len;
    while (start < end && (text[start] == ' ' || text[start] == '\t' || text[start] == '\r' ||
                           text[start] == '\n'))
        start++;
    while (end > start && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\r' ||
                           text[end - 1] == '\n'))
        end--;
    int rc = 0;
    if (end - start < ADMIN_MIN_TOKEN) {
        rc = cfg_errorf(err, doc, node, "admin.token_file",
                        "the token in \"%s\" is shorter than %d characters; write a long random "
                        "one, like the output of `openssl rand -hex 32`",
                        ac->token_file, ADMIN_MIN_TOKEN);
        goto out;
    }
    for (size_t i = start; i < end; i++)
        if ((unsigned char)text[i] < 0x21 || (unsigned char)text[i] > 0x7e) {
            rc = cfg_errorf(err, doc, node, "admin.token_file",
                            "the token in \"%s\" has spaces or characters that are not printable "
                            "ASCII; it must fit in an Authorization header",
                            ac->token_file);
            goto out;
        }
    gw_sha256(text + start, end - start, ac->token_sha256);
    ac->has_token = 1;
out:
    if (text) {
        memset(text, 0, len);
        free(text);
    }
    return rc;
}

int config_parse_admin(struct gw_config *cfg, const struct cfg_doc *doc,
                       const struct cfg_node *node, struct cfg_error *err)
{
    static const char *const keys[] = {"listen", "token_file", "tls", NULL};
    struct gw_admin_config *ac = &cfg->admin;
    if (!node)
        return 0; /* no admin listener */
    if (node->kind != CFG_MAP)
        return cfg_errorf(err, doc, node, "admin",
                          "expected a map like {listen: \"127.0.0.1:9090\", token_file: FILE}");
    if (cfg_check_keys(doc, node, "admin", keys, err) != 0)
        return -1;
    ac->enabled = 1;
    char *listen = NULL;
    if (cfg_get_string(doc, node, "admin", "listen", 0, &listen, err) != 0)
        return -1;
    const struct cfg_node *at = config_at_key(node, "listen");
    int rc = config_parse_listen_address(doc, at, "admin.listen",
                                         listen ? listen : ADMIN_DEFAULT_LISTEN, &ac->listen, err);
    free(listen);
    if (rc != 0)
        return -1;
    /* TLS as on server.listen: the same context code serves it (core/tls.c). */
    const struct cfg_node *tls = cfg_map_get(node, "tls");
    if (tls && !cfg_is_null(tls) &&
        config_parse_listen_tls(doc, tls, "admin.tls", &ac->listen, err) != 0)
        return -1;
    if (cfg_get_string(doc, node, "admin", "token_file", 0, &ac->token_file, err) != 0)
        return -1;
    if (ac->token_file && load_token(ac, doc, config_at_key(node, "token_file"), err) != 0)
        return -1;
    if (!ac->has_token && !is_loopback_host(ac->listen.host))
        return cfg_errorf(err, doc, at, "admin.listen",
                          "\"%s\" is not a loopback address and admin.token_file is not set; "
                          "anyone who reaches it could read the metrics. Listen on 127.0.0.1 "
                          "or [::1], or set token_file",
                          ac->listen.address);
    for (size_t i = 0; i < cfg->server.n_listen; i++)
        if (overlaps(&ac->listen, &cfg->server.listen[i]))
            return cfg_errorf(err, doc, at, "admin.listen",
                              "\"%s\" shares its port with server.listen[%zu] (\"%s\"); give the "
                              "admin listener a port of its own",
                              ac->listen.address, i, cfg->server.listen[i].address);
    return 0;
}

void config_free_admin(struct gw_config *cfg)
{
    struct gw_admin_config *ac = &cfg->admin;
    config_listen_free(&ac->listen);
    free(ac->token_file);
    memset(ac, 0, sizeof *ac);
}
