/*
 * addr.h - classes of IP addresses and CIDR allow-lists, for an injector
 * that must not be turned against the operator's own network.
 *
 * An address is "public" unless it is unspecified, loopback, private,
 * link-local, multicast or reserved (the classes below; IPv4-mapped and
 * NAT64 IPv6 addresses are judged by the IPv4 address they carry).  An
 * allow-list (e.g. "127.0.0.0/8, ::1/128") admits addresses of any class.
 */
#ifndef SHOAL_ADDR_H
#define SHOAL_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

#include "err.h"

enum shoal_addr_class {
    SHOAL_ADDR_PUBLIC = 0,
    SHOAL_ADDR_UNSPECIFIED,      /* 0.0.0.0/8, :: */
    SHOAL_ADDR_LOOPBACK,         /* 127.0.0.0/8, ::1 */
    SHOAL_ADDR_PRIVATE,          /* 10/8, 172.16/12, 192.168/16, 100.64/10,
                                    fc00::/7, fec0::/10 */
    SHOAL_ADDR_LINK_LOCAL,       /* 169.254/16, fe80::/10 */
    SHOAL_ADDR_MULTICAST,        /* 224/4, ff00::/8 */
    SHOAL_ADDR_RESERVED,         /* 240/4 and broadcast, 192.0.0/24,
                                    192.0.2/24, 198.18/15, 198.51.100/24,
                                    203.0.113/24, 2001:db8::/32, 100::/64,
                                    the rest of ::/8 */
};

/* The class of an AF_INET or AF_INET6 address (other families:
 * SHOAL_ADDR_RESERVED). */
enum shoal_addr_class shoal_addr_classify(const struct sockaddr *sa);

/* "public", "loopback", …: a static string. */
const char *shoal_addr_class_name(enum shoal_addr_class c);

/* The address of sa as text (IPv4-mapped IPv6 shown as IPv4) into out
 * (at least 48 bytes). */
void shoal_addr_text(const struct sockaddr *sa, char *out, size_t cap);

struct shoal_cidr_list;

/* Parse a comma- or space-separated list of CIDR blocks ("10.0.0.0/8",
 * "::1/128"; a bare address is a block of one).  NULL or "" gives an
 * empty list.  New list in *out, or -1 with SHOAL_EINVAL naming the bad
 * entry (a prefix longer than the address, host bits set, not an
 * address). */
int shoal_cidr_list_parse(const char *text, struct shoal_cidr_list **out,
                          struct shoal_err *err);
void shoal_cidr_list_free(struct shoal_cidr_list *l);

/* Number of blocks of l (l may be NULL: 0). */
size_t shoal_cidr_list_len(const struct shoal_cidr_list *l);

/* 1 when sa lies in a block of l (l may be NULL: 0). */
int shoal_cidr_list_match(const struct shoal_cidr_list *l,
                          const struct sockaddr *sa);

/* 1 when sa is public or allow (may be NULL) admits it. */
int shoal_addr_allowed(const struct shoal_cidr_list *allow,
                       const struct sockaddr *sa);

#endif
