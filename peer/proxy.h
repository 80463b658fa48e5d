/*
 * proxy.h - 'shoal serve --act-as-proxy': an injector proxy for peers
 * that cannot reach an injector (proxy.c), and the discovery of
 * injectors and proxies by 'shoal fetch' (injfind.c).  docs/protocol.md,
 * section "Injector proxies".
 *
 * A proxy forwards, as its own user, POST /v1/inject (the body streamed
 * back as it comes, the X-Sign and X-Inject-File trailers passed on) and
 * GET/HEAD /v1/inject?url= to the injector it reaches (its broker); with
 * --proxy-connect it also relays HTTP CONNECT to ports 80 and 443 (or
 * those --proxy-ports lists), for dynamic requests.  Every proxied request carries a Bearer session that
 * the serving peer checks (gate.c) as it checks any other.  It is off by
 * default: an open relay is the operator's choice, never a default.
 */
#ifndef PR_PROXY_H
#define PR_PROXY_H

#include <jansson.h>

#include "http.h"
#include "injlist.h"
#include "peer.h"
#include "serve.h"

struct pr_proxy;

/*
 * A proxy that forwards to the injector at injector (base URL) as the
 * user of link (borrowed), relays CONNECT when connect is set, to public
 * addresses and those allow admits (a CIDR list, may be NULL), on the
 * ports listed in ports (pr_connect_ports_parse; NULL: 80 and 443).
 * NULL with err (SHOAL_EINVAL for a bad allow or port list).
 */
struct pr_proxy *pr_proxy_new(const char *injector, struct pr_link *link,
                              int connect, const char *allow,
                              const char *ports, struct shoal_err *err);
void pr_proxy_free(struct pr_proxy *p);

/* 1 when req is on a route of the proxy (its auth is pr_proxy_auth). */
int pr_proxy_owns(const struct shoal_req *req);

/* The session check of a proxy route: 403 when this peer is not a proxy
 * (or does not relay CONNECT), else gate.c's check without a file. */
int pr_proxy_auth(struct shoal_req *req, const char *bearer,
                  struct shoal_err *err);

/* The routes (serve.c's table). */
int pr_proxy_h_inject(struct shoal_req *req, json_t **reply,
                      struct shoal_err *err);
int pr_proxy_h_inject_get(struct shoal_req *req, json_t **reply,
                          struct shoal_err *err);
int pr_proxy_h_connect(struct shoal_req *req, json_t **reply,
                       struct shoal_err *err);
int pr_proxy_h_list(struct shoal_req *req, json_t **reply,
                    struct shoal_err *err);

/* Announce this proxy in the swarm "injector proxies" (a failure is
 * logged), or withdraw it. */
void pr_proxy_announce(struct pr_srv *srv);
void pr_proxy_withdraw(struct pr_srv *srv);

/* --- discovery (injfind.c) --- */

/* The data folder's cache of injectors and proxies that worked. */
#define PR_INJ_CACHE_FILE "injectors.json"
/* The configured injectors and proxies, next to the identity file:
 * {"injectors":[{"url","broker_id","public_key"}], "proxies":["url"]}. */
#define PR_INJ_CONFIG_FILE "injectors.json"

/*
 * Injectors (kind PR_SWARM_INJECTORS) or proxies (PR_SWARM_PROXIES) that
 * ctx may use, best first: the broker (its directory of brokers with the
 * injector role, whose key must be pinned; the swarm "injector proxies"),
 * then the configured ones, the cached ones (data folder dir), and those
 * the peers of dir's holders.json know (GET /v1/proxies).  A new list
 * (injlist.h); never NULL but on ENOMEM.  Sources that fail are skipped.
 */
json_t *pr_injfind(struct pr_ctx *ctx, const char *dir, const char *kind);

/* Remember in dir's cache that url of kind worked (a failure is only a
 * warning). */
void pr_injfind_worked(const char *dir, const char *kind, const char *url);

/*
 * The injector keys pinned by ctx: the broker's of the identity, and the
 * configured ones.  1 when broker_id is pinned with public key pk_b64
 * (NULL: any key of that id), else 0.
 */
int pr_injkey_pinned(const struct pr_ctx *ctx, const char *broker_id,
                     const char *pk_b64);

/* The configuration file next to the identity (PR_INJ_CONFIG_FILE): new
 * reference, or NULL when there is none or it is not a JSON object
 * (warned).  Its extra injector keys: pr_injkeys_config (injlist.h). */
json_t *pr_injconfig_load(const struct pr_ctx *ctx);

#endif
