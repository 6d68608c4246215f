/*
 * ssrf: address classes and the egress allow list, on the addresses lib/url reads. See
 * ssrf.h for the rules; the comments here say why each one exists.
 */
#include "layers/routing/ssrf.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* ---- addresses ---------------------------------------------------------------------------- */

static void set_v4(struct gw_addr *out, const uint8_t *b)
{
    memset(out, 0, sizeof *out);
    out->family = AF_INET;
    memcpy(out->bytes, b, 4);
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

void ssrf_addr_canonical(const struct gw_addr *in, struct gw_addr *out)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t siit[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    const uint8_t *b = in->bytes;
    if (in->family != AF_INET6) {
        *out = *in;
        return;
    }
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, siit, 12) == 0 || memcmp(b, nat64, 12) == 0) {
        set_v4(out, b + 12);
        return;
    }
    /* IPv4-compatible (deprecated) ::a.b.c.d, but not :: and ::1 themselves. */
    if (all_zero(b, 12) && !(all_zero(b + 12, 3) && b[15] <= 1)) {
        set_v4(out, b + 12);
        return;
    }
    if (b[0] == 0x20 && b[1] == 0x02) {
        set_v4(out, b + 2);
        return;
    }
    *out = *in;
}

static int v4_in(uint32_t a, uint32_t net, int bits)
{
    uint32_t mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
    return (a & mask) == net;
}

static enum ssrf_class classify_v4(const uint8_t *b)
{
    uint32_t a = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    static const struct {
        uint32_t net;
        int bits;
        enum ssrf_class cls;
    } table[] = {
        {0x00000000, 8, SSRF_UNSPECIFIED},    {0x0a000000, 8, SSRF_PRIVATE},
        {0x64400000, 10, SSRF_CGNAT},         {0x7f000000, 8, SSRF_LOOPBACK},
        {0xa9fe0000, 16, SSRF_LINK_LOCAL},    {0xac100000, 12, SSRF_PRIVATE},
        {0xc0000000, 24, SSRF_RESERVED},      {0xc0000200, 24, SSRF_DOCUMENTATION},
        {0xc0586300, 24, SSRF_RESERVED},      {0xc0a80000, 16, SSRF_PRIVATE},
        {0xc6120000, 15, SSRF_BENCHMARK},     {0xc6336400, 24, SSRF_DOCUMENTATION},
        {0xcb007100, 24, SSRF_DOCUMENTATION}, {0xe0000000, 4, SSRF_MULTICAST},
        {0xffffffff, 32, SSRF_BROADCAST},     {0xf0000000, 4, SSRF_RESERVED},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (v4_in(a, table[i].net, table[i].bits))
            return table[i].cls;
    return SSRF_PUBLIC;
}

static int v6_prefix(const uint8_t *b, const uint8_t *net, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(b, net, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (b[full] & mask) == (net[full] & mask);
}

static enum ssrf_class classify_v6(const uint8_t *b)
{
    static const uint8_t zero[16] = {0};
    static const uint8_t one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    if (memcmp(b, zero, 16) == 0)
        return SSRF_UNSPECIFIED;
    if (memcmp(b, one, 16) == 0)
        return SSRF_LOOPBACK;
    if (b[0] == 0xff)
        return SSRF_MULTICAST;
    if ((b[0] & 0xfe) == 0xfc)
        return SSRF_PRIVATE; /* unique local, fd00:ec2::254 among them */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return SSRF_LINK_LOCAL;
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
        return SSRF_PRIVATE; /* site-local, deprecated but still routed on some networks */
    static const uint8_t nat64_local[16] = {0, 0x64, 0xff, 0x9b, 0, 1};
    if (v6_prefix(b, nat64_local, 48))
        return SSRF_PRIVATE;
    /* Only 2000::/3 is global unicast; everything else is reserved or special. */
    if ((b[0] & 0xe0) != 0x20)
        return SSRF_RESERVED;
    static const uint8_t teredo[16] = {0x20, 0x01, 0, 0};
    static const uint8_t bench[16] = {0x20, 0x01, 0, 0x02, 0, 0};
    static const uint8_t doc[16] = {0x20, 0x01, 0x0d, 0xb8};
    static const uint8_t doc2[16] = {0x3f, 0xff};
    static const uint8_t ietf[16] = {0x20, 0x01};
    if (v6_prefix(b, teredo, 32))
        return SSRF_TUNNEL;
    if (v6_prefix(b, bench, 48))
        return SSRF_BENCHMARK;
    if (v6_prefix(b, doc, 32) || v6_prefix(b, doc2, 20))
        return SSRF_DOCUMENTATION;
    if (v6_prefix(b, ietf, 23))
        return SSRF_RESERVED;
    return SSRF_PUBLIC;
}

enum ssrf_class ssrf_classify(const struct gw_addr *a)
{
    struct gw_addr c;
    ssrf_addr_canonical(a, &c);
    if (c.family == AF_INET)
        return classify_v4(c.bytes);
    if (c.family == AF_INET6)
        return classify_v6(c.bytes);
    return SSRF_RESERVED;
}

const char *ssrf_class_name(enum ssrf_class c)
{
    static const char *const names[SSRF_CLASS_COUNT] = {
        [SSRF_PUBLIC] = "public",          [SSRF_UNSPECIFIED] = "unspecified",
        [SSRF_LOOPBACK] = "loopback",      [SSRF_PRIVATE] = "private",
        [SSRF_LINK_LOCAL] = "link-local",  [SSRF_CGNAT] = "shared (CGNAT)",
        [SSRF_MULTICAST] = "multicast",    [SSRF_BROADCAST] = "broadcast",
        [SSRF_RESERVED] = "reserved",      [SSRF_DOCUMENTATION] = "documentation",
        [SSRF_BENCHMARK] = "benchmarking", [SSRF_TUNNEL] = "Teredo tunnel",
    };
    return (unsigned)c < SSRF_CLASS_COUNT ? names[c] : "unknown";
}

int ssrf_name_is_localhost(const char *host)
{
    size_t len = strlen(host);
    static const char suffix[] = ".localhost";
    if (strcmp(host, "localhost") == 0)
        return 1;
    return len > sizeof suffix - 1 && strcmp(host + len - (sizeof suffix - 1), suffix) == 0;
}

/* ---- the allow list ---------------------------------------------------------------------- */

static int addr_in_cidr(const struct gw_addr *a, const struct gw_addr *net, int bits)
{
    if (a->family != net->family)
        return 0;
    return v6_prefix(a->bytes, net->bytes, bits);
}

int ssrf_allow_parse(const char *text, struct ssrf_allow_entry *out, const char **why)
{
    char buf[GW_URL_MAX_HOST + 16];
    size_t len = strlen(text);
    memset(out, 0, sizeof *out);
    if (len == 0 || len >= sizeof buf) {
        *why = "is empty or too long";
        return -1;
    }
    memcpy(buf, text, len + 1);
    const char *slash = strchr(buf, '/');
    if (slash) {
        size_t alen = (size_t)(slash - buf);
        buf[alen] = '\0';
        const char *bits = slash + 1;
        struct gw_addr a = {0};
        int max;
        if (inet_pton(AF_INET, buf, a.bytes) == 1) {
            a.family = AF_INET;
            max = 32;
        } else if (inet_pton(AF_INET6, buf, a.bytes) == 1) {
            a.family = AF_INET6;
            max = 128;
        } else {
            *why = "is not a CIDR range (write it like 10.0.0.0/8 or fd00::/8)";
            return -1;
        }
        int v = 0;
        size_t bl = strlen(bits);
        if (bl == 0 || bl > 3) {
            *why = "has a prefix length that is not a number";
            return -1;
        }
        for (size_t i = 0; i < bl; i++) {
            if (!is_digit(bits[i])) {
                *why = "has a prefix length that is not a number";
                return -1;
            }
            v = v * 10 + (bits[i] - '0');
        }
        if (v > max) {
            *why = "has a prefix length larger than the address";
            return -1;
        }
        /* Host bits set ("10.0.0.1/8") usually mean a typo; say so rather than guess. */
        for (int bit = v; bit < max; bit++)
            if (a.bytes[bit / 8] & (0x80 >> (bit % 8))) {
                *why = "has bits set after the prefix length (write the network address, like "
                       "10.0.0.0/8)";
                return -1;
            }
        out->kind = SSRF_ALLOW_CIDR;
        out->addr = a;
        out->prefix = v;
        return 0;
    }
    /* A bare address: that one address, any port. */
    struct gw_addr a = {0};
    if (inet_pton(AF_INET, buf, a.bytes) == 1 || inet_pton(AF_INET6, buf, a.bytes) == 1) {
        a.family = strchr(buf, ':') ? AF_INET6 : AF_INET;
        out->kind = SSRF_ALLOW_CIDR;
        ssrf_addr_canonical(&a, &out->addr);
        out->prefix = out->addr.family == AF_INET ? 32 : 128;
        return 0;
    }
    /* host:port, [v6]:port */
    char *colon = strrchr(buf, ':');
    if (!colon) {
        *why = "needs a port (write host:port, like 127.0.0.1:9001), or a CIDR range";
        return -1;
    }
    *colon = '\0';
    int port;
    if (gw_url_parse_port(colon + 1, strlen(colon + 1), &port) != GW_URL_OK) {
        *why = "has a port that is not a number from 1 to 65535";
        return -1;
    }
    char *host = buf;
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        host++;
        if (inet_pton(AF_INET6, host, a.bytes) != 1) {
            *why = "has an invalid IPv6 address";
            return -1;
        }
        a.family = AF_INET6;
    } else if (inet_pton(AF_INET, host, a.bytes) == 1) {
        a.family = AF_INET;
    } else {
        struct gw_url u;
        memset(&u, 0, sizeof u);
        int rc = gw_url_parse_host(host, hl, &u);
        if (rc != GW_URL_OK || u.host_is_ip) {
            *why = u.host_is_ip ? "has an address that is not a dotted quad (write 127.0.0.1)"
                                : "has a host that is neither a name nor an address";
            return -1;
        }
        out->kind = SSRF_ALLOW_NAME_PORT;
        out->port = port;
        memcpy(out->name, u.host, sizeof out->name);
        return 0;
    }
    out->kind = SSRF_ALLOW_ADDR_PORT;
    ssrf_addr_canonical(&a, &out->addr);
    out->port = port;
    return 0;
}

void ssrf_allow_free(struct ssrf_allow *a)
{
    if (!a)
        return;
    free(a->entries);
    a->entries = NULL;
    a->n = 0;
}

int ssrf_addr_allowed(const struct ssrf_allow *allow, const char *host, int port,
                      const struct gw_addr *addr, enum ssrf_class *cls)
{
    struct gw_addr c;
    ssrf_addr_canonical(addr, &c);
    enum ssrf_class k = ssrf_classify(&c);
    if (cls)
        *cls = k;
    if (k == SSRF_PUBLIC)
        return 1;
    /* Connecting to these is never what an allow entry meant (0.0.0.0 reaches this host). */
    if (k == SSRF_UNSPECIFIED || k == SSRF_MULTICAST || k == SSRF_BROADCAST)
        return 0;
    for (size_t i = 0; allow && i < allow->n; i++) {
        const struct ssrf_allow_entry *e = &allow->entries[i];
        switch (e->kind) {
        case SSRF_ALLOW_CIDR:
            if (addr_in_cidr(&c, &e->addr, e->prefix))
                return 1;
            break;
        case SSRF_ALLOW_ADDR_PORT:
            if (port == e->port && addr_in_cidr(&c, &e->addr, c.family == AF_INET ? 32 : 128))
                return 1;
            break;
        case SSRF_ALLOW_NAME_PORT:
            if (host && port == e->port && strcmp(host, e->name) == 0)
                return 1;
            break;
        }
    }
    return 0;
}
