/*
 * ssrf: the one strict URL parser of the egress guard, canonical forms of every host
 * spelling, the classification of addresses toolgate refuses to reach by default, and the
 * egress allow list.
 *
 * The guard must see what the connecting party will dial. Where parsers disagree (userinfo,
 * backslashes, whitespace, numeric host forms, encodings), the URL is refused rather than
 * guessed at: a refused URL fails closed, a misread one is an SSRF.
 *
 *   - schemes http and https only (case-insensitive), followed by exactly "//";
 *   - no control characters or spaces anywhere; no userinfo ('@' before the path); no '\';
 *   - hosts: an IPv6 literal (zone ids refused), an IPv4 address in any form the C library
 *     or a WHATWG parser accepts (decimal 2130706433, octal 0177.0.0.1, hex 0x7f.1, short
 *     127.1), or an LDH name (one trailing dot dropped, letters lower-cased; "xn--" labels
 *     must be well-formed punycode of non-ASCII text); percent-encoded and non-ASCII hosts
 *     are refused;
 *   - IPv6 forms that carry an IPv4 address (mapped, compatible, SIIT, NAT64 64:ff9b::/96,
 *     6to4) are judged as that IPv4 address; Teredo is refused.
 */
#ifndef GW_SSRF_H
#define GW_SSRF_H

#include <stddef.h>
#include <stdint.h>

/* Longest URL the guard reads; longer ones are refused. */
#define SSRF_MAX_URL 8192
#define SSRF_MAX_HOST 253

struct ssrf_addr {
    int family;        /* AF_INET or AF_INET6 */
    uint8_t bytes[16]; /* network order; IPv4 uses the first 4 */
};

enum ssrf_error {
    SSRF_OK = 0,
    SSRF_E_TOO_LONG = -1,
    SSRF_E_SYNTAX = -2,   /* control characters, spaces, missing "//", empty host... */
    SSRF_E_SCHEME = -3,   /* not http or https */
    SSRF_E_USERINFO = -4, /* '@' before the path */
    SSRF_E_HOST = -5,     /* not a name, not an address */
    SSRF_E_PORT = -6,
    SSRF_E_ENCODED = -7, /* percent-encoded or non-ASCII host */
    SSRF_E_IDNA = -8,    /* an "xn--" label that is not clean punycode */
    SSRF_E_ZONE = -9,    /* IPv6 zone id */
};

struct ssrf_url {
    int https;
    int port; /* explicit or the scheme's default */
    int host_is_ip;
    struct ssrf_addr ip; /* host_is_ip: the address as written (not canonicalized) */
    /*
     * The canonical host: a lower-case name without trailing dot, or the address in standard
     * text form (IPv6 without brackets).
     */
    char host[SSRF_MAX_HOST + 1];
};

/*
 * Parses an absolute http(s) URL from s (len bytes, not NUL-terminated). Returns SSRF_OK and
 * fills out, or a negative ssrf_error. Never reads past len.
 */
int ssrf_url_parse(const char *s, size_t len, struct ssrf_url *out);
/* A short phrase for an ssrf_error, safe to show ("has a userinfo part (user@host)"). */
const char *ssrf_error_text(int err);

/*
 * True when s (len bytes) should be treated as a URL in a tool argument: after leading
 * whitespace, a scheme ([A-Za-z][A-Za-z0-9+.-]*) followed by ':' and '/' or '\', or a
 * leading "//". Such a string is then vetted with ssrf_url_parse (and refused unless it is
 * a clean http(s) URL).
 */
int ssrf_looks_like_url(const char *s, size_t len);

/*
 * Parses an IPv4 host in any form inet_aton and WHATWG accept: 1 to 4 dot-separated parts,
 * each decimal, octal (leading 0) or hex (0x), the last filling the remaining bytes.
 * Returns 0 and the address in host order, or -1.
 */
int ssrf_ipv4_parse(const char *s, size_t len, uint32_t *out);

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
void ssrf_addr_canonical(const struct ssrf_addr *in, struct ssrf_addr *out);
/* Classifies an address (canonicalizing it first). */
enum ssrf_class ssrf_classify(const struct ssrf_addr *a);
/* "loopback", "private", ... ("public" for SSRF_PUBLIC). */
const char *ssrf_class_name(enum ssrf_class c);
/* Standard text form (IPv6 without brackets); out needs 46 bytes. */
void ssrf_addr_format(const struct ssrf_addr *a, char *out, size_t outlen);
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
    struct ssrf_addr addr; /* canonical; CIDR and ADDR_PORT */
    int prefix;            /* CIDR: prefix length in bits of addr's family */
    int port;              /* ADDR_PORT and NAME_PORT */
    char name[SSRF_MAX_HOST + 1];
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
                      const struct ssrf_addr *addr, enum ssrf_class *cls);

#endif
