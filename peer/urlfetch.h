/*
 * urlfetch.h - 'shoal fetch URL' (cmd_fetch.c): a web object from its
 * origin, its URL swarm or an injector (urlswarm.c), each checked.
 * docs/protocol.md, section 14, "shoal fetch".
 *
 * The pieces of a swarm copy are fetched here one after another from the
 * holders the swarm lists; this belongs in the multi-source engine of
 * fetch.c, and will move there.
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
};

/* The swarm of url: hex SHA-256 of "url:" + url, into out[65]. */
void pr_swarm_of(const char *url, char out[65]);

/*
 * Check an injection of url: xsign (an X-Sign with meta) of file_id,
 * signed by a pinned injector key (the identity's pinned broker), not
 * expired at now, and meta (the metadata text) hashing to its meta field
 * and starting with "url: <url>\n".  Fills inj.  -1 with SHOAL_EPROTO
 * saying why it is refused (SHOAL_EIO without a pinned key).
 */
int pr_inj_check(const struct pr_ctx *ctx, const char *url,
                 const char *file_id, const char *xsign, const char *meta,
                 int64_t now, struct pr_inj *inj, struct shoal_err *err);

/*
 * The swarm record rec (GET /v1/swarms/{swarm}, borrowed) of url: check
 * it as pr_inj_check does, then fetch its pieces from the holders it
 * lists (peers first, file brokers last), each checked against the
 * signed manifest, into fd (truncated to the size first).  A holder that
 * sends a wrong piece is dropped with a warning.  *ans gets the manifest
 * answer (new reference) for pr_urlobj_keep.
 */
int pr_swarm_download(struct pr_ctx *ctx, const char *url, const json_t *rec,
                      int fd, struct pr_inj *inj, json_t **ans,
                      struct shoal_err *err);

/*
 * POST /v1/inject {url} to the broker of ctx: the body goes into fd as it
 * arrives, hashed piece by piece; the X-Sign and X-Inject-File trailers
 * and X-Inject-Meta are checked against those bytes (pr_inj_check, size,
 * root).  fd must be empty.  *bytes gets the size.
 */
int pr_inject_fetch(struct pr_ctx *ctx, const char *url, int fd,
                    struct pr_inj *inj, uint64_t *bytes,
                    struct shoal_err *err);

/*
 * Keep the checked object of inj (its bytes in fd) in the peer's data
 * folder dir (NULL: the default) so that 'shoal serve' seeds it: the
 * file's manifest (ans, or asked of the broker when NULL) checked and
 * matched with inj, every piece imported, the record written.
 */
int pr_urlobj_keep(struct pr_ctx *ctx, const char *dir,
                   const struct pr_inj *inj, int fd, const json_t *ans,
                   struct shoal_err *err);

#endif
