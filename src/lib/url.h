/*
 * url: the one URL parser of toolgate, for configuration, the egress guard and policy alike.
 *
 * It reads what the connecting party (curl, a WHATWG parser) will dial, and refuses what
 * parsers read differently; a refused URL fails closed, a misread one is an SSRF or a policy
 * bypass.
 *
 *   - a scheme ([A-Za-z][A-Za-z0-9+.-]*, lower-cased; http and https unless asked otherwise),
 *     followed by exactly "//";
 *   - no control characters or spaces anywhere; no userinfo ('@' before the path); no '\\'
 *     in the authority;
 *   - hosts: an IPv6 literal (zone ids refused), an IPv4 address in any form the C library
 *     or a WHATWG parser accepts (decimal 2130706433, octal 0177.0.0.1, hex 0x7f.1, short
 *     127.1), or an LDH name (one trailing dot dropped, letters lower-cased; "xn--" labels
 *     must be well-formed punycode of non-ASCII text); percent-encoded and non-ASCII hosts
 *     are refused.
 */
#ifndef GW_LIB_URL_H
#define GW_LIB_URL_H

#include <stddef.h>
#include <stdint.h>

/* Longest URL read; longer ones are refused. */
#define GW_URL_MAX 8192
#define GW_URL_MAX_HOST 253

struct gw_addr {
    int family;        /* AF_INET or AF_INET6 */
    uint8_t bytes[16]; /* network order; IPv4 uses the first 4 */
};

enum gw_url_error {
    GW_URL_OK = 0,
    GW_URL_E_TOO_LONG = -1,
    GW_URL_E_SYNTAX = -2,   /* control characters, spaces, missing "//", empty host... */
    GW_URL_E_SCHEME = -3,   /* not http or https (without GW_URL_ANY_SCHEME) */
    GW_URL_E_USERINFO = -4, /* '@' before the path */
    GW_URL_E_HOST = -5,     /* not a name, not an address */
    GW_URL_E_PORT = -6,
    GW_URL_E_ENCODED = -7, /* percent-encoded or non-ASCII host */
    GW_URL_E_IDNA = -8,    /* an "xn--" label that is not clean punycode */
    GW_URL_E_ZONE = -9,    /* IPv6 zone id */
};

struct gw_url {
    char scheme[33];  /* lower-case */
    int scheme_lower; /* 1 when it was written in lower case */
    int https;
    int port; /* explicit, or the scheme's default (http 80, https 443, others 0) */
    int port_given;
    int host_is_ip;
    struct gw_addr ip; /* host_is_ip: the address as written (not canonicalized) */
    /*
     * The canonical host: a lower-case name without trailing dot, or the address in standard
     * text form (IPv6 without brackets).
     */
    char host[GW_URL_MAX_HOST + 1];
    /* What follows the authority, as offsets into the parsed text (not decoded). */
    size_t path_off, path_len;
    int has_query;
    size_t query_off, query_len;
    int has_fragment;
    size_t fragment_off, fragment_len;
    /* On failure only: a phrase saying what is wrong, safe to show ("has no host"). */
    const char *why;
};

/* gw_url_parse flags. */
#define GW_URL_ANY_SCHEME 0x01 /* any "scheme://", not only http and https */

/*
 * Parses an absolute URL from s (len bytes, not NUL-terminated): http or https unless flags
 * has GW_URL_ANY_SCHEME. Returns GW_URL_OK and fills out, or a negative gw_url_error (out is
 * zeroed then). Never reads past len.
 */
int gw_url_parse(const char *s, size_t len, unsigned flags, struct gw_url *out);
/*
 * The host part alone (a name, an IPv4 address in any form, or a bracketed IPv6 literal), as
 * gw_url_parse reads it: fills out->host (canonical), host_is_ip and ip. Returns GW_URL_OK or
 * a negative gw_url_error.
 */
int gw_url_parse_host(const char *h, size_t len, struct gw_url *out);
/* A port: 1 to 65535 in decimal digits only. Returns GW_URL_OK or GW_URL_E_PORT. */
int gw_url_parse_port(const char *p, size_t len, int *out);
/* A short phrase for a gw_url_error, safe to show ("has a userinfo part (user@host)"). */
const char *gw_url_error_text(int err);

/*
 * True when s (len bytes) should be treated as a URL in a tool argument: after leading
 * whitespace, a scheme ([A-Za-z][A-Za-z0-9+.-]*) followed by ':' and '/' or '\', a scheme
 * fetchers dial (http, https, ws, ftp, file, gopher...) followed by ':' at all ("http:host"
 * is a URL to WHATWG parsers), or a leading "//". Such a string is then vetted with gw_url_parse
 * (and refused unless it is a clean http(s) URL).
 */
int gw_url_looks_like(const char *s, size_t len);

/*
 * Parses an IPv4 host in any form inet_aton and WHATWG accept: 1 to 4 dot-separated parts,
 * each decimal, octal (leading 0) or hex (0x), the last filling the remaining bytes.
 * Returns 0 and the address in host order, or -1.
 */
int gw_ipv4_parse(const char *s, size_t len, uint32_t *out);

/* Standard text form of an address (IPv6 without brackets); out needs 46 bytes. */
void gw_addr_format(const struct gw_addr *a, char *out, size_t outlen);

#endif
