/*
 * injlist.h - the small pure rules of injector proxies and their
 * discovery (injlist.c), kept apart so that unit tests include them
 * without the rest of the peer: the target of an HTTP CONNECT, the
 * named swarms, and the lists of addresses found or cached.
 *
 * A list is a JSON array of {"url", "from"[, "seen_at"]} objects, best
 * first, without two entries of one URL.
 */
#ifndef PR_INJLIST_H
#define PR_INJLIST_H

#include <stddef.h>
#include <time.h>
#include <jansson.h>

#include "err.h"

#define PR_SWARM_INJECTORS "injectors"
#define PR_SWARM_PROXIES "injector proxies"
#define PR_INJ_LIST_MAX 64            /* entries of a list, found or cached */
#define PR_INJ_CACHE_AGE (30 * 86400) /* seconds a cached address lasts */
#define PR_HOST_MAX 256

/* The swarm of a name: hex SHA-256 of the name, into out[65]. */
void pr_named_swarm(const char *name, char out[65]);

/*
 * The target of a CONNECT request, "host:port" or "[IPv6]:port": host
 * (brackets removed) into host, port into *port.  Host names are letters,
 * digits, '-' and '.'; the port is 1 to 65535 in decimal.  -1 when it is
 * not such a target.
 */
int pr_authority_parse(const char *s, char host[PR_HOST_MAX],
                       unsigned *port);

/* The ports a proxy relays CONNECT to ('shoal serve --proxy-ports'). */
#define PR_CONNECT_PORTS_DEFAULT "80,443"
#define PR_CONNECT_PORTS_MAX 16
struct pr_connect_ports {
    size_t n;
    unsigned port[PR_CONNECT_PORTS_MAX];
};

/*
 * Parse s, comma-separated ports (1 to 65535 in decimal, no leading zero,
 * no blanks, none twice, at most PR_CONNECT_PORTS_MAX), into *out; NULL
 * is PR_CONNECT_PORTS_DEFAULT.  -1 with err (SHOAL_EINVAL, the bad
 * entry named) when s is not such a list; *out is then empty.
 */
int pr_connect_ports_parse(const char *s, struct pr_connect_ports *out,
                           struct shoal_err *err);

/* 1 when ports holds port, else 0. */
int pr_connect_port_ok(const struct pr_connect_ports *ports, unsigned port);

/* The ports for a message, "80 and 443", "8080", "22, 80 and 443", into
 * out (cap bytes, truncated if need be). */
void pr_connect_ports_name(const struct pr_connect_ports *ports, char *out,
                           size_t cap);

/*
 * Add url (an http:// or https:// base URL; trailing slashes dropped)
 * from source from ("broker", "config", "cache", "pex") at the end of
 * list, unless list has it already or is full.  seen_at (0: none) is
 * kept for the cache.  1 when added, 0 when not, -1 when url is not such
 * a URL or on ENOMEM.
 */
int pr_inj_list_add(json_t *list, const char *url, const char *from,
                    time_t seen_at);

/*
 * The cache kept in the data folder: {"injectors":[…], "proxies":[…]}
 * lists with seen_at.  Mark url of kind ("injectors" or "proxies") seen
 * at now (moved first), and drop the entries older than
 * PR_INJ_CACHE_AGE at now or beyond PR_INJ_LIST_MAX.  -1 on ENOMEM or a
 * bad URL.
 */
int pr_inj_cache_note(json_t *cache, const char *kind, const char *url,
                      time_t now);

/*
 * The injector keys the configuration cfg (the object of injectors.json
 * next to the identity, borrowed; NULL: none) pins for broker_id: the
 * "public_key" of each entry of its "injectors" whose "broker_id" is
 * broker_id (any case), decoded, at most max of them into pk.  Entries
 * whose key is not 32 bytes of standard padded base64 are skipped.
 * Returns the number of keys.
 */
size_t pr_injkeys_config(const json_t *cfg, const char *broker_id,
                         unsigned char (*pk)[32], size_t max);

#endif
