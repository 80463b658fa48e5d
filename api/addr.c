/*
 * addr.c - classes of IP addresses and CIDR allow-lists (see addr.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

#define LIST_MAX 64                    /* blocks in one allow-list */

/* An address reduced to its family and bytes: IPv4 (also when carried by
 * an IPv4-mapped or NAT64 IPv6 address) in b[0..3]. */
struct ip {
    int v4;
    unsigned char b[16];
};

struct cidr {
    struct ip net;
    unsigned bits;
};

struct shoal_cidr_list {
    size_t n;
    struct cidr v[LIST_MAX];
};

static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
static const unsigned char nat64[12] = { 0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0 };

/* 0 with *ip filled, -1 for another family. */
static int ip_of(const struct sockaddr *sa, struct ip *ip)
{
    memset(ip, 0, sizeof *ip);
    if (sa == NULL)
        return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        ip->v4 = 1;
        memcpy(ip->b, &in->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(a, v4mapped, 12) == 0 || memcmp(a, nat64, 12) == 0) {
            ip->v4 = 1;
            memcpy(ip->b, a + 12, 4);
        } else {
            memcpy(ip->b, a, 16);
        }
        return 0;
    }
    return -1;
}

/* 1 when the first bits of a and b agree. */
static int prefix_eq(const unsigned char *a, const unsigned char *b,
                     unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

/* 1 when ip lies in the block written as text/bits (of ip's family). */
static int in_block(const struct ip *ip, const char *text, unsigned bits)
{
    unsigned char net[16];
    if (inet_pton(ip->v4 ? AF_INET : AF_INET6, text, net) != 1)
        return 0;
    return prefix_eq(ip->b, net, bits);
}

static enum shoal_addr_class classify4(const struct ip *ip)
{
    static const struct { const char *net; unsigned bits; enum shoal_addr_class c; } t[] = {
        { "0.0.0.0", 8, SHOAL_ADDR_UNSPECIFIED },
        { "127.0.0.0", 8, SHOAL_ADDR_LOOPBACK },
        { "10.0.0.0", 8, SHOAL_ADDR_PRIVATE },
        { "172.16.0.0", 12, SHOAL_ADDR_PRIVATE },
        { "192.168.0.0", 16, SHOAL_ADDR_PRIVATE },
        { "100.64.0.0", 10, SHOAL_ADDR_PRIVATE },
        { "169.254.0.0", 16, SHOAL_ADDR_LINK_LOCAL },
        { "224.0.0.0", 4, SHOAL_ADDR_MULTICAST },
        { "240.0.0.0", 4, SHOAL_ADDR_RESERVED },
        { "192.0.0.0", 24, SHOAL_ADDR_RESERVED },
        { "192.0.2.0", 24, SHOAL_ADDR_RESERVED },
        { "198.18.0.0", 15, SHOAL_ADDR_RESERVED },
        { "198.51.100.0", 24, SHOAL_ADDR_RESERVED },
        { "203.0.113.0", 24, SHOAL_ADDR_RESERVED },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (in_block(ip, t[i].net, t[i].bits))
            return t[i].c;
    return SHOAL_ADDR_PUBLIC;
}

static enum shoal_addr_class classify6(const struct ip *ip)
{
    static const struct { const char *net; unsigned bits; enum shoal_addr_class c; } t[] = {
        { "::", 128, SHOAL_ADDR_UNSPECIFIED },
        { "::1", 128, SHOAL_ADDR_LOOPBACK },
        { "fe80::", 10, SHOAL_ADDR_LINK_LOCAL },
        { "fc00::", 7, SHOAL_ADDR_PRIVATE },
        { "fec0::", 10, SHOAL_ADDR_PRIVATE },
        { "ff00::", 8, SHOAL_ADDR_MULTICAST },
        { "2001:db8::", 32, SHOAL_ADDR_RESERVED },
        { "100::", 64, SHOAL_ADDR_RESERVED },
        { "::", 8, SHOAL_ADDR_RESERVED },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (in_block(ip, t[i].net, t[i].bits))
            return t[i].c;
    return SHOAL_ADDR_PUBLIC;
}

enum shoal_addr_class shoal_addr_classify(const struct sockaddr *sa)
{
    struct ip ip;
    if (ip_of(sa, &ip) != 0)
        return SHOAL_ADDR_RESERVED;
    return ip.v4 ? classify4(&ip) : classify6(&ip);
}

const char *shoal_addr_class_name(enum shoal_addr_class c)
{
    switch (c) {
    case SHOAL_ADDR_PUBLIC: return "public";
    case SHOAL_ADDR_UNSPECIFIED: return "unspecified";
    case SHOAL_ADDR_LOOPBACK: return "loopback";
    case SHOAL_ADDR_PRIVATE: return "private";
    case SHOAL_ADDR_LINK_LOCAL: return "link-local";
    case SHOAL_ADDR_MULTICAST: return "multicast";
    case SHOAL_ADDR_RESERVED: return "reserved";
    }
    return "reserved";
}

void shoal_addr_text(const struct sockaddr *sa, char *out, size_t cap)
{
    struct ip ip;
    if (cap == 0)
        return;
    out[0] = '\0';
    if (ip_of(sa, &ip) != 0 ||
        inet_ntop(ip.v4 ? AF_INET : AF_INET6, ip.b, out, (socklen_t)cap) == NULL)
        snprintf(out, cap, "?");
}

/* One block "addr[/bits]" into *c; -1 when it is not one. */
static int cidr_parse(const char *s, struct cidr *c)
{
    char text[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof text)
        return -1;
    memcpy(text, s, n);
    text[n] = '\0';
    memset(c, 0, sizeof *c);
    unsigned max;
    if (inet_pton(AF_INET, text, c->net.b) == 1) {
        c->net.v4 = 1;
        max = 32;
    } else if (inet_pton(AF_INET6, text, c->net.b) == 1) {
        max = 128;
    } else {
        return -1;
    }
    c->bits = max;
    if (slash) {
        char *end;
        const char *d = slash + 1;
        if (*d < '0' || *d > '9' || (d[0] == '0' && d[1] != '\0'))
            return -1;
        unsigned long b = strtoul(d, &end, 10);
        if (*end != '\0' || b > max)
            return -1;
        c->bits = (unsigned)b;
    }
    /* Host bits must be zero: "10.0.0.1/8" is more likely a mistake. */
    for (unsigned i = c->bits; i < max; i++)
        if (c->net.b[i / 8] & (0x80u >> (i % 8)))
            return -1;
    /* ::ffff:a.b.c.d/n is an IPv4 block, as addresses are compared. */
    if (!c->net.v4 && c->bits >= 96 && memcmp(c->net.b, v4mapped, 12) == 0) {
        memmove(c->net.b, c->net.b + 12, 4);
        memset(c->net.b + 4, 0, 12);
        c->net.v4 = 1;
        c->bits -= 96;
    }
    return 0;
}

int shoal_cidr_list_parse(const char *text, struct shoal_cidr_list **out,
                          struct shoal_err *err)
{
    *out = NULL;
    struct shoal_cidr_list *l = calloc(1, sizeof *l);
    char *copy = strdup(text ? text : ""), *save = NULL;
    if (l == NULL || copy == NULL) {
        free(l);
        free(copy);
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    }
    for (char *t = strtok_r(copy, ", \t", &save); t;
         t = strtok_r(NULL, ", \t", &save)) {
        if (l->n == LIST_MAX) {
            shoal_err_set(err, SHOAL_EINVAL, "more than %d address blocks",
                          LIST_MAX);
            goto fail;
        }
        if (cidr_parse(t, &l->v[l->n]) != 0) {
            shoal_err_set(err, SHOAL_EINVAL,
                          "'%.64s' is not an address block such as"
                          " 127.0.0.0/8 (no host bits set)", t);
            goto fail;
        }
        l->n++;
    }
    free(copy);
    *out = l;
    return 0;
fail:
    free(copy);
    free(l);
    return -1;
}

void shoal_cidr_list_free(struct shoal_cidr_list *l)
{
    free(l);
}

size_t shoal_cidr_list_len(const struct shoal_cidr_list *l)
{
    return l ? l->n : 0;
}

int shoal_cidr_list_match(const struct shoal_cidr_list *l,
                          const struct sockaddr *sa)
{
    struct ip ip;
    if (l == NULL || ip_of(sa, &ip) != 0)
        return 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].net.v4 == ip.v4 &&
            prefix_eq(ip.b, l->v[i].net.b, l->v[i].bits))
            return 1;
    return 0;
}

int shoal_addr_allowed(const struct shoal_cidr_list *allow,
                       const struct sockaddr *sa)
{
    return shoal_addr_classify(sa) == SHOAL_ADDR_PUBLIC ||
           shoal_cidr_list_match(allow, sa);
}
