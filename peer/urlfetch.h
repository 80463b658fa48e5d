/*
 * urlfetch.h - 'shoal fetch URL' (cmd_fetch.c): a web object from its
 * origin, its URL swarm or an injector (urlswarm.c), each checked.
 * docs/protocol.md, section 14, "shoal fetch".
 */
#ifndef PR_URLFETCH_H
#define PR_URLFETCH_H

#include <stdint.h>
#include <jansson.h>

#include "err.h"
#include "manifest.h"
#include "peer.h"

int pr_cmd_fetch(struct pr_ctx *ctx, int argc, char **argv,
                 struct shoal_err *err);

/* An injected object whose signature checked out. */
struct pr_inj {
    char file_id[37];
    char xsign[SHOAL_XSIGN_MAX];
    struct shoal_xsign x;
    int64_t injected_at;   /* unix seconds; 0: not known (the signature
                            * does not say: the swarm record, or the
                            * injection the peer just received, does) */
};

/* The swarm of url: hex SHA-256 of "url:" + its canonical form
 * (urlcanon.h; url as given when it has none), into out[65]. */
void pr_swarm_of(const char *url, char out[65]);

/*
 * Check an injection of url: xsign (an X-Sign with meta) of file_id,
 * signed by a pinned injector key (the identity's pinned broker, with
 * its key only; another injector with a key that injectors.json next to
 * the identity pins for it: pr_injkeys_config, injlist.h), not
 * expired at now, and meta (the metadata text) hashing to its meta field
 * and starting with "url: <the canonical form of url>\n" (urlcanon.h).  Fills inj.  -1 with SHOAL_EPROTO
 * saying why it is refused (SHOAL_EIO without a pinned key).
 */
int pr_inj_check(const struct pr_ctx *ctx, const char *url,
                 const char *file_id, const char *xsign, const char *meta,
                 int64_t now, struct pr_inj *inj, struct shoal_err *err);

/*
 * The swarm record rec (GET /v1/swarms/{swarm}, borrowed) of url: check
 * it as pr_inj_check does, then fetch its pieces from every holder of the
 * signed version at once (the multi-source engine, fetch.h: the tracker's
 * file brokers and peers), each checked against the signed manifest
 * before it is written into fd (sized first).  A holder that sends a
 * wrong piece is dropped with a warning and its pieces fetched elsewhere.
 * With keep_dir (a data folder, or NULL), each verified piece is also
 * kept in its store as it arrives.  *ans gets the manifest answer (new
 * reference) for pr_urlobj_keep; inj->injected_at the record's
 * injected_at (at most now).
 */
int pr_swarm_download(struct pr_ctx *ctx, const char *url, const json_t *rec,
                      int fd, const char *keep_dir, struct pr_inj *inj,
                      json_t **ans, struct shoal_err *err);

/*
 * POST /v1/inject {url} to the broker of ctx: the body goes into fd as it
 * arrives, hashed piece by piece; the X-Sign and X-Inject-File trailers
 * and X-Inject-Meta are checked against those bytes (pr_inj_check, size,
 * root).  fd must be empty.  *bytes gets the size; inj->injected_at now
 * (the injection has just been made).
 */
int pr_inject_fetch(struct pr_ctx *ctx, const char *url, int fd,
                    struct pr_inj *inj, uint64_t *bytes,
                    struct shoal_err *err);

/*
 * Keep the checked object of inj (its bytes in fd), the web object of
 * url, in the peer's data folder dir (NULL: the default) so that 'shoal
 * serve' seeds it: the file's manifest (ans, or asked of the broker when
 * NULL) checked and matched with inj, every piece stored (several at
 * once; fd's bytes must be the checked ones: they are not hashed again),
 * the record written as a cache kept by fetch (serve.h: PR_RECORD_FETCH,
 * with url, inj->injected_at, or now when 0, and inj's X-Sign), which
 * 'shoal serve' seeds under the dCDN policy (webseed.h).  A version the
 * folder owns ('shoal seed') stays owned.
 */
int pr_urlobj_keep(struct pr_ctx *ctx, const char *dir, const char *url,
                   const struct pr_inj *inj, int fd, const json_t *ans,
                   struct shoal_err *err);

/*
 * The record pr_urlobj_keep writes for the web object of url: a copy of
 * the manifest answer ans with PR_RECORD_KEPT "fetch", the URL, the
 * injection time injected_at (RFC 3339) and the injector's X-Sign xsign.
 * New reference, NULL on ENOMEM.
 */
json_t *pr_urlobj_record(const json_t *ans, const char *url,
                         int64_t injected_at, const char *xsign);

#endif
