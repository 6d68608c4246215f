/*
 * The SSRF guard on its own: what the one URL parser (lib/url) and the address classes make
 * of a corpus of hostile spellings, and the allow list. The parser's own fields are tested in
 * tests/unit/lib/test_url.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <sys/socket.h>

#include "layers/routing/ssrf.h"

/* What the guard makes of a URL before any lookup. */
enum outcome {
    ALLOW = 1,   /* literal public address (or allow-listed) */
    DENY = 0,    /* literal address refused */
    NAME = 2,    /* a name: resolution decides */
    LOCAL = 3,   /* a localhost name: loopback without lookup */
    REFUSE = -1, /* the parser refuses the URL */
};

struct url_case {
    const char *url;
    enum outcome want;
    const char *host; /* canonical host when not NULL */
};

static int judge(const char *url, const struct ssrf_allow *allow, struct gw_url *u)
{
    int rc = gw_url_parse(url, strlen(url), 0, u);
    if (rc != GW_URL_OK)
        return REFUSE;
    if (!u->host_is_ip)
        return ssrf_name_is_localhost(u->host) ? LOCAL : NAME;
    return ssrf_addr_allowed(allow, u->host, u->port, &u->ip, NULL) ? ALLOW : DENY;
}

static const struct url_case corpus[] = {
    /* loopback, every spelling */
    {"http://127.0.0.1/", DENY, "127.0.0.1"},
    {"http://127.0.0.1:80/", DENY, "127.0.0.1"},
    {"http://127.1/", DENY, "127.0.0.1"},
    {"http://127.0.1/", DENY, "127.0.0.1"},
    {"http://2130706433/", DENY, "127.0.0.1"},
    {"http://017700000001/", DENY, "127.0.0.1"},
    {"http://0x7f000001/", DENY, "127.0.0.1"},
    {"http://0X7F000001/", DENY, "127.0.0.1"},
    {"http://0x7f.1/", DENY, "127.0.0.1"},
    {"http://0x7f.0.0.1/", DENY, "127.0.0.1"},
    {"http://0177.0.0.1/", DENY, "127.0.0.1"},
    {"http://0177.0.0.01/", DENY, "127.0.0.1"},
    {"http://00000177.0.0.1/", DENY, "127.0.0.1"},
    {"http://0177.1/", DENY, "127.0.0.1"},
    {"http://127.000.000.001/", DENY, "127.0.0.1"},
    {"http://127.0.0.1./", DENY, "127.0.0.1"},
    {"http://127.255.255.254/", DENY, "127.255.255.254"},
    {"http://127.0.0.1:9001/mcp", DENY, "127.0.0.1"},
    {"HTTP://127.0.0.1/", DENY, "127.0.0.1"},
    {"hTTpS://127.0.0.1/", DENY, "127.0.0.1"},
    {"http://[::1]/", DENY, "::1"},
    {"http://[0:0:0:0:0:0:0:1]/", DENY, "::1"},
    {"http://[0000:0000:0000:0000:0000:0000:0000:0001]/", DENY, "::1"},
    {"http://[::ffff:127.0.0.1]/", DENY, "::ffff:127.0.0.1"},
    {"http://[::ffff:7f00:1]/", DENY, NULL},
    {"http://[::127.0.0.1]/", DENY, NULL},
    {"http://[64:ff9b::127.0.0.1]/", DENY, NULL},
    {"http://[64:ff9b::7f00:1]/", DENY, NULL},
    {"http://[2002:7f00:1::]/", DENY, NULL},
    {"http://[2002:7f00:0001:0:0:0:0:1]/", DENY, NULL},
    {"http://[::ffff:0:127.0.0.1]/", DENY, NULL},
    {"http://localhost/", LOCAL, "localhost"},
    {"http://LOCALHOST/", LOCAL, "localhost"},
    {"http://localhost./", LOCAL, "localhost"},
    {"http://api.localhost/", LOCAL, "api.localhost"},
    {"http://a.b.localhost:8080/", LOCAL, "a.b.localhost"},
    /* unspecified: reaches this host on Linux */
    {"http://0.0.0.0/", DENY, "0.0.0.0"},
    {"http://0/", DENY, "0.0.0.0"},
    {"http://0x0/", DENY, "0.0.0.0"},
    {"http://00/", DENY, "0.0.0.0"},
    {"http://0.0.0.0:9001/", DENY, NULL},
    {"http://[::]/", DENY, "::"},
    {"http://[::ffff:0.0.0.0]/", DENY, NULL},
    {"http://0.1.2.3/", DENY, NULL},
    /* private ranges */
    {"http://10.0.0.1/", DENY, NULL},
    {"http://10.255.255.255/", DENY, NULL},
    {"http://012.0.0.1/", DENY, "10.0.0.1"},
    {"http://0xa.0.0.1/", DENY, "10.0.0.1"},
    {"http://167772161/", DENY, "10.0.0.1"},
    {"http://10.1/", DENY, "10.0.0.1"},
    {"http://172.16.0.1/", DENY, NULL},
    {"http://172.31.255.255/", DENY, NULL},
    {"http://172.15.255.255/", ALLOW, NULL},
    {"http://172.32.0.0/", ALLOW, NULL},
    {"http://192.168.0.1/", DENY, NULL},
    {"http://192.168.1.1:8443/admin", DENY, NULL},
    {"http://0xc0a80101/", DENY, "192.168.1.1"},
    {"http://3232235777/", DENY, "192.168.1.1"},
    {"http://0300.0250.01.01/", DENY, "192.168.1.1"},
    {"http://192.168.257/", DENY, "192.168.1.1"},
    {"http://[::ffff:10.0.0.1]/", DENY, NULL},
    {"http://[::ffff:a00:1]/", DENY, NULL},
    {"http://[::ffff:192.168.0.1]/", DENY, NULL},
    {"http://[64:ff9b::10.0.0.1]/", DENY, NULL},
    {"http://[64:ff9b::192.168.1.1]/", DENY, NULL},
    {"http://[2002:c0a8:0101::1]/", DENY, NULL},
    {"http://[2002:0a00:0001::]/", DENY, NULL},
    {"http://[fc00::1]/", DENY, NULL},
    {"http://[fd00::1]/", DENY, NULL},
    {"http://[fdff:ffff::1]/", DENY, NULL},
    {"http://[fec0::1]/", DENY, NULL},
    {"http://[64:ff9b:1::10.0.0.1]/", DENY, NULL},
    /* link-local and cloud metadata */
    {"http://169.254.169.254/latest/meta-data/", DENY, NULL},
    {"http://169.254.169.254:80/", DENY, NULL},
    {"http://2852039166/", DENY, "169.254.169.254"},
    {"http://0xa9fea9fe/", DENY, "169.254.169.254"},
    {"http://0xa9.0xfe.0xa9.0xfe/", DENY, "169.254.169.254"},
    {"http://0251.0376.0251.0376/", DENY, "169.254.169.254"},
    {"http://169.254.43518/", DENY, "169.254.169.254"},
    {"http://169.16689662/", DENY, "169.254.169.254"},
    {"http://[::ffff:169.254.169.254]/", DENY, NULL},
    {"http://[::ffff:a9fe:a9fe]/", DENY, NULL},
    {"http://[64:ff9b::169.254.169.254]/", DENY, NULL},
    {"http://[2002:a9fe:a9fe::]/", DENY, NULL},
    {"http://[fd00:ec2::254]/", DENY, "fd00:ec2::254"},
    {"http://[fe80::1]/", DENY, NULL},
    {"http://[fe80::a9fe:a9fe]/", DENY, NULL},
    {"http://[febf::1]/", DENY, NULL},
    {"http://169.254.0.1/", DENY, NULL},
    /* CGNAT */
    {"http://100.64.0.1/", DENY, NULL},
    {"http://100.127.255.255/", DENY, NULL},
    {"http://100.63.255.255/", ALLOW, NULL},
    {"http://100.128.0.0/", ALLOW, NULL},
    {"http://[::ffff:100.64.0.1]/", DENY, NULL},
    /* multicast, broadcast, reserved */
    {"http://224.0.0.1/", DENY, NULL},
    {"http://239.255.255.250/", DENY, NULL},
    {"http://255.255.255.255/", DENY, NULL},
    {"http://4294967295/", DENY, "255.255.255.255"},
    {"http://0xffffffff/", DENY, "255.255.255.255"},
    {"http://240.0.0.1/", DENY, NULL},
    {"http://250.1.2.3/", DENY, NULL},
    {"http://192.0.0.8/", DENY, NULL},
    {"http://192.88.99.1/", DENY, NULL},
    {"http://[ff02::1]/", DENY, NULL},
    {"http://[ff05::2]/", DENY, NULL},
    {"http://[100::1]/", DENY, NULL},
    {"http://[::1:2:3:4]/", DENY, NULL},
    {"http://[4000::1]/", DENY, NULL},
    {"http://[5f00::1]/", DENY, NULL},
    {"http://[2001:10::1]/", DENY, NULL},
    {"http://[2001:20::1]/", DENY, NULL},
    {"http://[2001:1::1]/", DENY, NULL},
    /* documentation and benchmarking */
    {"http://192.0.2.1/", DENY, NULL},
    {"http://198.51.100.7/", DENY, NULL},
    {"http://203.0.113.9/", DENY, NULL},
    {"http://198.18.0.1/", DENY, NULL},
    {"http://198.19.255.255/", DENY, NULL},
    {"http://198.20.0.0/", ALLOW, NULL},
    {"http://[2001:db8::1]/", DENY, NULL},
    {"http://[3fff::1]/", DENY, NULL},
    {"http://[2001:2::1]/", DENY, NULL},
    /* Teredo: refused outright */
    {"http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", DENY, NULL},
    {"http://[2001::1]/", DENY, NULL},
    /* public addresses and their disguises */
    {"http://8.8.8.8/", ALLOW, "8.8.8.8"},
    {"https://1.1.1.1/dns-query", ALLOW, NULL},
    {"http://134744072/", ALLOW, "8.8.8.8"},
    {"http://0x08080808/", ALLOW, "8.8.8.8"},
    {"http://010.010.010.010/", ALLOW, "8.8.8.8"},
    {"http://8.8.2056/", ALLOW, "8.8.8.8"},
    {"http://93.184.216.34:8080/", ALLOW, NULL},
    {"http://[2606:4700:4700::1111]/", ALLOW, "2606:4700:4700::1111"},
    {"http://[2606:4700:4700:0:0:0:0:1111]/", ALLOW, "2606:4700:4700::1111"},
    {"http://[2001:4860:4860::8888]:443/", ALLOW, NULL},
    {"http://[::ffff:8.8.8.8]/", ALLOW, NULL},
    {"http://[64:ff9b::8.8.8.8]/", ALLOW, NULL},
    {"http://[2002:0808:0808::1]/", ALLOW, NULL},
    {"http://[2a00:1450:4001:80b::200e]/", ALLOW, NULL},
    /* names */
    {"http://example.com/", NAME, "example.com"},
    {"https://EXAMPLE.com./path?q=1#f", NAME, "example.com"},
    {"http://a-b.example.org:8080/x", NAME, "a-b.example.org"},
    {"http://under_score.example.com/", NAME, "under_score.example.com"},
    {"http://127.0.0.1.nip.io/", NAME, "127.0.0.1.nip.io"},
    {"http://0x7f.example.com/", NAME, NULL},
    {"http://169.254.169.254.xip.io/", NAME, NULL},
    {"http://metadata.google.internal/", NAME, NULL},
    {"http://localhost.example.com/", NAME, NULL},
    {"http://xn--bcher-kva.example/", NAME, "xn--bcher-kva.example"},
    {"http://xn--nxasmq6b.com/", NAME, NULL},
    {"http://example.com/path@with-at", NAME, "example.com"},
    {"http://example.com/a\\b", NAME, NULL},
    {"http://example.com?q=a@b", REFUSE, NULL},
    {"http://example.com/?q=a@b", NAME, NULL},
    {"http://example.com/Köln", NAME, NULL},
    /* userinfo tricks */
    {"http://user@127.0.0.1/", REFUSE, NULL},
    {"http://user:pass@example.com/", REFUSE, NULL},
    {"http://example.com@127.0.0.1/", REFUSE, NULL},
    {"http://127.0.0.1@example.com/", REFUSE, NULL},
    {"http://example.com:80@127.0.0.1/", REFUSE, NULL},
    {"http://@127.0.0.1/", REFUSE, NULL},
    {"http://example.com#@127.0.0.1/", REFUSE, NULL},
    {"http://example.com?@127.0.0.1/", REFUSE, NULL},
    {"http://example.com\\@127.0.0.1/", REFUSE, NULL},
    {"http://127.0.0.1\\@example.com/", REFUSE, NULL},
    {"http://example.com%40127.0.0.1/", REFUSE, NULL},
    {"http://a@b@127.0.0.1/", REFUSE, NULL},
    {"http://[::1]@example.com/", REFUSE, NULL},
    /* backslashes and slashes */
    {"http:\\\\127.0.0.1/", REFUSE, NULL},
    {"http:/127.0.0.1/", REFUSE, NULL},
    {"http:127.0.0.1/", REFUSE, NULL},
    {"http:///127.0.0.1/", REFUSE, NULL},
    {"http://\\127.0.0.1/", REFUSE, NULL},
    {"http:/\\127.0.0.1/", REFUSE, NULL},
    {"http://example.com\\.127.0.0.1/", REFUSE, NULL},
    /* whitespace and controls anywhere */
    {" http://127.0.0.1/", REFUSE, NULL},
    {"http://127.0.0.1/ ", REFUSE, NULL},
    {"http://12\t7.0.0.1/", REFUSE, NULL},
    {"http://127.0.0.1\n/", REFUSE, NULL},
    {"http://exa\rmple.com/", REFUSE, NULL},
    {"http://example.com/\x7f", REFUSE, NULL},
    {"http://exa mple.com/", REFUSE, NULL},
    /* schemes */
    {"file:///etc/passwd", REFUSE, NULL},
    {"gopher://127.0.0.1:6379/_INFO", REFUSE, NULL},
    {"dict://127.0.0.1:11211/stat", REFUSE, NULL},
    {"ftp://example.com/", REFUSE, NULL},
    {"ldap://127.0.0.1/", REFUSE, NULL},
    {"jar:http://example.com!/", REFUSE, NULL},
    {"ws://example.com/", REFUSE, NULL},
    {"javascript://example.com/%0aalert(1)", REFUSE, NULL},
    {"httpx://example.com/", REFUSE, NULL},
    {"htt://example.com/", REFUSE, NULL},
    {"//127.0.0.1/", REFUSE, NULL},
    {"127.0.0.1", REFUSE, NULL},
    {"example.com/path", REFUSE, NULL},
    {"", REFUSE, NULL},
    {"http://", REFUSE, NULL},
    {"http:///", REFUSE, NULL},
    {"http://:80/", REFUSE, NULL},
    /* ports */
    {"http://example.com:0/", REFUSE, NULL},
    {"http://example.com:65536/", REFUSE, NULL},
    {"http://example.com:/", REFUSE, NULL},
    {"http://example.com:8o/", REFUSE, NULL},
    {"http://example.com:-1/", REFUSE, NULL},
    {"http://example.com:000080/", REFUSE, NULL},
    {"http://example.com:80:80/", REFUSE, NULL},
    {"http://example.com:+80/", REFUSE, NULL},
    {"http://[::1]:/", REFUSE, NULL},
    {"http://[::1]x/", REFUSE, NULL},
    {"http://example.com:65535/", NAME, NULL},
    /* numeric hosts that parsers disagree on */
    {"http://127.0.0.1.1/", REFUSE, NULL},
    {"http://1.2.3.4.5/", REFUSE, NULL},
    {"http://256.0.0.1/", REFUSE, NULL},
    {"http://127.0.0.256/", REFUSE, NULL},
    {"http://4294967296/", REFUSE, NULL},
    {"http://0x100000000/", REFUSE, NULL},
    {"http://08.0.0.1/", REFUSE, NULL},
    {"http://0189.0.0.1/", REFUSE, NULL},
    {"http://0x/", REFUSE, NULL},
    {"http://0xg.0.0.1/", REFUSE, NULL},
    {"http://1e3/", REFUSE, NULL},
    {"http://127..1/", REFUSE, NULL},
    {"http://127.0.0.1../", REFUSE, NULL},
    {"http://.127.0.0.1/", REFUSE, NULL},
    {"http://example.123/", REFUSE, NULL},
    {"http://example.0x7f/", REFUSE, NULL},
    {"http://0000000000000000000000000000000000000127.0.0.1/", REFUSE, NULL},
    {"http://127.0.0.1%2f/", REFUSE, NULL},
    /* percent-encoded and non-ASCII hosts */
    {"http://%31%32%37.0.0.1/", REFUSE, NULL},
    {"http://127.0.0.%31/", REFUSE, NULL},
    {"http://%6c%6f%63%61%6c%68%6f%73%74/", REFUSE, NULL},
    {"http://exam%70le.com/", REFUSE, NULL},
    {"http://[::1%25eth0]/", REFUSE, NULL},
    {"http://[fe80::1%25lo]/", REFUSE, NULL},
    {"http://[fe80::1%lo]/", REFUSE, NULL},
    {"http://\xef\xbc\x91\xef\xbc\x92\xef\xbc\x97.0.0.1/", REFUSE, NULL},
    {"http://127\xe3\x80\x82"
     "0.0.1/",
     REFUSE, NULL},
    {"http://b\xc3\xbc"
     "cher.example/",
     REFUSE, NULL},
    {"http://\xe2\x91\xa0\xe2\x91\xa1\xe2\x91\xa6.0.0.1/", REFUSE, NULL},
    {"http://localhost\xef\xbc\x8e/", REFUSE, NULL},
    /* punycode that is not clean */
    {"http://xn--/", REFUSE, NULL},
    {"http://xn--abc/", REFUSE, NULL},
    {"http://xn--127-0-0-1/", REFUSE, NULL},
    {"http://xn--1-2n0i.example/", REFUSE, NULL},
    {"http://xn--8g7c.example/", REFUSE, NULL},
    {"http://xn--ab-r13a.example/", REFUSE, NULL},
    {"http://xn--a-.example/", REFUSE, NULL},
    {"http://xn--1-x0t.example/", NAME, NULL},
    {"http://ab--cd.example/", REFUSE, NULL},
    {"http://xn--ls8h.example/", NAME, NULL},
    /* malformed names and literals */
    {"http://-example.com/", REFUSE, NULL},
    {"http://example-.com/", REFUSE, NULL},
    {"http://exa$mple.com/", REFUSE, NULL},
    {"http://exa*mple.com/", REFUSE, NULL},
    {"http://example..com/", REFUSE, NULL},
    {"http://[::1/", REFUSE, NULL},
    {"http://::1/", REFUSE, NULL},
    {"http://[127.0.0.1]/", REFUSE, NULL},
    {"http://[v1.abc]/", REFUSE, NULL},
    {"http://[::ffff:127.1]/", REFUSE, NULL},
    {"http://[12345::1]/", REFUSE, NULL},
    {"http://[1:2:3:4:5:6:7:8:9]/", REFUSE, NULL},
    {"http://[]/", REFUSE, NULL},
    {"http://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com/", REFUSE, NULL},
};

static void test_corpus(void **state)
{
    (void)state;
    size_t n = sizeof corpus / sizeof corpus[0];
    assert_true(n >= 200);
    int failures = 0;
    for (size_t i = 0; i < n; i++) {
        struct gw_url u;
        int got = judge(corpus[i].url, NULL, &u);
        if (got != (int)corpus[i].want) {
            print_error("case %zu \"%s\": got %d want %d\n", i, corpus[i].url, got,
                        (int)corpus[i].want);
            failures++;
            continue;
        }
        if (corpus[i].host && strcmp(u.host, corpus[i].host) != 0) {
            print_error("case %zu \"%s\": host \"%s\" want \"%s\"\n", i, corpus[i].url, u.host,
                        corpus[i].host);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

static struct gw_addr addr(const char *text)
{
    struct gw_addr a = {0};
    if (inet_pton(AF_INET, text, a.bytes) == 1)
        a.family = AF_INET;
    else if (inet_pton(AF_INET6, text, a.bytes) == 1)
        a.family = AF_INET6;
    return a;
}

static void test_classes_and_canonical(void **state)
{
    (void)state;
    static const struct {
        const char *a;
        enum ssrf_class c;
    } cases[] = {
        {"127.0.0.1", SSRF_LOOPBACK},
        {"::1", SSRF_LOOPBACK},
        {"::", SSRF_UNSPECIFIED},
        {"0.0.0.0", SSRF_UNSPECIFIED},
        {"10.1.2.3", SSRF_PRIVATE},
        {"fd00:ec2::254", SSRF_PRIVATE},
        {"169.254.169.254", SSRF_LINK_LOCAL},
        {"fe80::1", SSRF_LINK_LOCAL},
        {"100.64.1.1", SSRF_CGNAT},
        {"224.0.0.251", SSRF_MULTICAST},
        {"ff02::fb", SSRF_MULTICAST},
        {"255.255.255.255", SSRF_BROADCAST},
        {"240.0.0.1", SSRF_RESERVED},
        {"192.0.2.55", SSRF_DOCUMENTATION},
        {"2001:db8::55", SSRF_DOCUMENTATION},
        {"198.18.5.5", SSRF_BENCHMARK},
        {"2001:2::5", SSRF_BENCHMARK},
        {"2001:0:1:2:3:4:5:6", SSRF_TUNNEL},
        {"::ffff:10.0.0.1", SSRF_PRIVATE},
        {"64:ff9b::a9fe:a9fe", SSRF_LINK_LOCAL},
        {"2002:a00:1::", SSRF_PRIVATE},
        {"8.8.4.4", SSRF_PUBLIC},
        {"2606:4700::1", SSRF_PUBLIC},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct gw_addr a = addr(cases[i].a);
        assert_int_not_equal(a.family, 0);
        if (ssrf_classify(&a) != cases[i].c)
            fail_msg("%s: class %s, want %s", cases[i].a, ssrf_class_name(ssrf_classify(&a)),
                     ssrf_class_name(cases[i].c));
    }
    struct gw_addr a = addr("::ffff:192.168.1.1"), c;
    ssrf_addr_canonical(&a, &c);
    assert_int_equal(c.family, AF_INET);
    char text[46];
    gw_addr_format(&c, text, sizeof text);
    assert_string_equal(text, "192.168.1.1");
    a = addr("::1");
    ssrf_addr_canonical(&a, &c);
    assert_int_equal(c.family, AF_INET6); /* ::1 is not the compatible form of 0.0.0.1 */
    assert_string_equal(ssrf_class_name(SSRF_CLASS_COUNT), "unknown");
}

static struct ssrf_allow make_allow(const char *const *items)
{
    struct ssrf_allow al = {0};
    size_t n = 0;
    while (items[n])
        n++;
    al.entries = calloc(n + 1, sizeof *al.entries);
    for (size_t i = 0; i < n; i++) {
        const char *why = NULL;
        if (ssrf_allow_parse(items[i], &al.entries[i], &why) != 0)
            fail_msg("allow entry %s: %s", items[i], why);
    }
    al.n = n;
    return al;
}

static void test_allow_list(void **state)
{
    (void)state;
    static const char *const items[] = {
        "127.0.0.1:9001", "10.20.0.0/16", "[::1]:9002", "backend.internal:8443",
        "192.168.5.5",    "fd00::/8",     NULL,
    };
    struct ssrf_allow al = make_allow(items);
    static const struct {
        const char *url;
        enum outcome want;
    } cases[] = {
        {"http://127.0.0.1:9001/mcp", ALLOW},
        {"http://127.0.0.1:9002/mcp", DENY},
        {"http://127.1:9001/", ALLOW},
        {"http://2130706433:9001/", ALLOW},
        {"http://[::ffff:127.0.0.1]:9001/", ALLOW},
        {"http://[::1]:9001/", DENY},
        {"http://[::1]:9002/", ALLOW},
        {"http://10.20.3.4/", ALLOW},
        {"http://10.20.3.4:1234/", ALLOW},
        {"http://10.21.0.1/", DENY},
        {"http://10.20.0.0:80/", ALLOW},
        {"http://[::ffff:10.20.1.1]/", ALLOW},
        {"http://192.168.5.5:1/", ALLOW},
        {"http://[fd12::1]/", ALLOW},
        {"http://[fe80::1]/", DENY},
        {"http://[::]/", DENY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct gw_url u;
        int got = judge(cases[i].url, &al, &u);
        if (got != (int)cases[i].want)
            fail_msg("%s: got %d want %d", cases[i].url, got, (int)cases[i].want);
    }
    /* Name entries allow what the name resolves to, on that port only. */
    struct gw_addr priv = addr("10.99.0.1");
    assert_true(ssrf_addr_allowed(&al, "backend.internal", 8443, &priv, NULL));
    assert_false(ssrf_addr_allowed(&al, "backend.internal", 443, &priv, NULL));
    assert_false(ssrf_addr_allowed(&al, NULL, 8443, &priv, NULL));
    struct gw_addr loop = addr("127.0.0.2");
    assert_false(ssrf_addr_allowed(&al, "other.internal", 8443, &loop, NULL));
    assert_true(ssrf_addr_allowed(&al, "backend.internal", 8443, &loop, NULL));
    ssrf_allow_free(&al);

    /* 0.0.0.0/0 lists every IPv4 address, but never unspecified, multicast or broadcast. */
    static const char *const everything[] = {"0.0.0.0/0", "::/0", NULL};
    al = make_allow(everything);
    static const struct {
        const char *url;
        enum outcome want;
    } wide[] = {
        {"http://10.21.0.1/", ALLOW},
        {"http://127.0.0.1/", ALLOW},
        {"http://[fe80::1]/", ALLOW},
        {"http://0.0.0.0:9001/", DENY},
        {"http://0/", DENY},
        {"http://224.0.0.1/", DENY},
        {"http://255.255.255.255/", DENY},
        {"http://[::]/", DENY},
        {"http://[ff02::1]/", DENY},
        {"http://[::ffff:0.0.0.0]/", DENY},
    };
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++) {
        struct gw_url u;
        int got = judge(wide[i].url, &al, &u);
        if (got != (int)wide[i].want)
            fail_msg("%s: got %d want %d", wide[i].url, got, (int)wide[i].want);
    }
    ssrf_allow_free(&al);

    /* An empty list allows only public addresses. */
    struct ssrf_allow none = {0};
    struct gw_addr pub = addr("8.8.8.8");
    assert_true(ssrf_addr_allowed(&none, "x", 80, &pub, NULL));
    assert_false(ssrf_addr_allowed(&none, "x", 80, &priv, NULL));
    assert_false(ssrf_addr_allowed(NULL, "x", 80, &priv, NULL));
}

static void test_allow_parse_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",           "127.0.0.1",  "10.0.0.1/8",    "10.0.0.0/33", "10.0.0.0/x",
        "fd00::/129", "host",       "host:0",        "host:99999",  "[::1",
        "[zz]:80",    "127.1:9001", "2130706433:80", "-bad-:80",    "10.0.0.0/",
        "a/b/c",      "host:port",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct ssrf_allow_entry e;
        const char *why = NULL;
        int rc = ssrf_allow_parse(bad[i], &e, &why);
        if (strcmp(bad[i], "127.0.0.1") == 0) {
            assert_int_equal(rc, 0); /* a bare address is fine: any port */
            assert_int_equal(e.kind, SSRF_ALLOW_CIDR);
            assert_int_equal(e.prefix, 32);
            continue;
        }
        if (rc == 0)
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_non_null(why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_classes_and_canonical),
        cmocka_unit_test(test_allow_list),
        cmocka_unit_test(test_allow_parse_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
