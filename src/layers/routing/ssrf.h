/*
 * ssrf: the classification of addresses toolgate refuses to reach by default, and the egress
 * allow list. URLs are read by lib/url (the one parser); this module judges where they point.
 *
 *   - IPv6 forms that carry an IPv4 address (mapped, compatible, SIIT, NAT64 64:ff9b::/96,
 *     6to4) are judged as that IPv4 address; Teredo is refused.
 */
#ifndef GW_SSRF_H
#define GW_SSRF_H

#include <stddef.h>
#include <stdint.h>

#include "lib/url.h"

enum ssrf_class {
    SSRF_PUBLIC = 0,
    SSRF_UNSPECIFIED,   /* 0.0.0.0/8, :: — never allowed */
    SSRF_LOOPBACK,      /* 127/8, ::1, localhost names */
    SSRF_PRIVATE,       /* 10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10, 64:ff9b:1::/48 */
    SSRF_LINK_LOCAL,    /* 169.254/16 (cloud metadata), fe80::/10 */
    SSRF_CGNAT,         /* 100.64/10 */
    SSRF_MULTICAST,     /* 224/4, ff00::/8 — never allowed */
    SSRF_BROADCAST,     /* 255.255.255.255 — never allowed */
    SSRF_RESERVED,      /* 240/4, 192.0.0/24, 192.88.99/24, IPv6 outside 2000::/3, 2001::/23 */
    SSRF_DOCUMENTATION, /* 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20 */
    SSRF_BENCHMARK,     /* 198.18/15, 2001:2::/48 */
    SSRF_TUNNEL,        /* Teredo 2001::/32 */
    SSRF_CLASS_COUNT
};

/*
 * The canonical form of an address: IPv6 forms that carry an IPv4 address (mapped
 * ::ffff:0:0/96, compatible ::/96 other than :: and ::1, SIIT ::ffff:0:0:0/96, NAT64
 * 64:ff9b::/96, 6to4 2002::/16) become that IPv4 address; everything else is unchanged.
 */
void ssrf_addr_canonical(const struct gw_addr *in, struct gw_addr *out);
/* Classifies an address (canonicalizing it first). */
enum ssrf_class ssrf_classify(const struct gw_addr *a);
/* "loopback", "private", ... ("public" for SSRF_PUBLIC). */
const char *ssrf_class_name(enum ssrf_class c);
/* True for "localhost" and names under ".localhost" (RFC 6761: always loopback). */
int ssrf_name_is_localhost(const char *host);

/* ---- the allow list ---- */

enum ssrf_allow_kind {
    SSRF_ALLOW_CIDR = 0,  /* "10.0.0.0/8", "fd00::/8", or a bare address: any port */
    SSRF_ALLOW_ADDR_PORT, /* "127.0.0.1:9001", "[::1]:9001" */
    SSRF_ALLOW_NAME_PORT, /* "backend.internal:8443": what this name resolves to, on that port */
};

struct ssrf_allow_entry {
    enum ssrf_allow_kind kind;
    struct gw_addr addr; /* canonical; CIDR and ADDR_PORT */
    int prefix;          /* CIDR: prefix length in bits of addr's family */
    int port;            /* ADDR_PORT and NAME_PORT */
    char name[GW_URL_MAX_HOST + 1];
};

struct ssrf_allow {
    struct ssrf_allow_entry *entries; /* owned */
    size_t n;
};

/*
 * Parses one allow-list entry. Returns 0, or -1 with *why set to a phrase saying what is
 * wrong (static text).
 */
int ssrf_allow_parse(const char *text, struct ssrf_allow_entry *out, const char **why);
void ssrf_allow_free(struct ssrf_allow *a);

/*
 * Decides whether connecting to addr, reached as host:port (host: the canonical URL host),
 * is allowed: public addresses are; unspecified, multicast and broadcast never are; the
 * rest only through an allow entry (a CIDR containing it, the same address and port, or
 * the same name and port). allow may be NULL (empty). *cls (may be NULL) gets the class.
 * Returns 1 allowed, 0 denied.
 */
int ssrf_addr_allowed(const struct ssrf_allow *allow, const char *host, int port,
                      const struct gw_addr *addr, enum ssrf_class *cls);

#endif
