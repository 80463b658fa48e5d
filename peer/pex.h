/*
 * pex.h - peer exchange: the holders a peer knows of, kept in its data
 * folder and shared by 'shoal get' and 'shoal serve' (pex.c), the
 * manifests 'shoal get' keeps to download without the broker (pex.c), and
 * the discovery of holders when the tracker cannot be asked (pexfind.c).
 *
 * Under the data folder:
 *
 *   holders.json                  {"holders":[{"url","kind","file_id",
 *                                 "version","have","seen_at"}, …]}
 *                                 at most PR_HOLDERS_MAX entries, each
 *                                 dropped PR_HOLDERS_AGE seconds after it
 *                                 was last seen; written atomically
 *   manifests/<file id>/<v>.json  the verified manifest of each version
 *                                 'shoal get' downloaded (x_sign included),
 *                                 dropped PR_HOLDERS_AGE after it was
 *                                 written; at most PR_MANIFESTS_MAX
 *
 * Both are caches: a write that races another (get and serve at once)
 * may lose the other's update, never a file's integrity.
 */
#ifndef PR_PEX_H
#define PR_PEX_H

#include <stdint.h>
#include <jansson.h>

#include "err.h"
#include "fetch.h"
#include "serve.h"

#define PR_HOLDERS_MAX 1024              /* entries of holders.json */
#define PR_HOLDERS_PER_FILE 64           /* entries kept per file */
#define PR_HOLDERS_AGE (7 * 86400)       /* seconds an entry lasts */
#define PR_HOLDERS_FILE_MAX (1u << 20)   /* bytes of holders.json read */
#define PR_MANIFESTS_MAX 256             /* manifests kept */
#define PR_PEX_ASK_MAX 8                 /* peers asked GET /v1/peers */
#define PR_PEX_TIMEOUT 5                 /* seconds per question */

/* The entries of holders.json in dir that are younger than
 * PR_HOLDERS_AGE: a new reference to an array (empty when there is no
 * usable file). */
json_t *pr_holders_load(const char *dir);

/*
 * Add or refresh in list (an array from pr_holders_load) the entry of
 * (url, file_id, version): kind "peer" or "broker", have the base64
 * bitfield or NULL (every piece), seen_at now.  -1 on ENOMEM.
 */
int pr_holders_note(json_t *list, const char *url, const char *kind,
                    const char *file_id, uint64_t version, const char *have,
                    time_t now);

/* Write list to dir/holders.json atomically, the oldest entries dropped
 * beyond the limits.  -1 with err. */
int pr_holders_save(const char *dir, json_t *list, struct shoal_err *err);

/* The sources of a finished download, recorded in dir/holders.json
 * (those that are live and hold pieces).  Failures are logged only. */
void pr_holders_record(const char *dir, const char *file_id, uint64_t version,
                       uint64_t pieces, const struct pr_source *s, int n);

/* The answer of GET /v1/files/{id}/manifest rebuilt from what was
 * checked of it: file_id, version, size, piece_size, pieces, root,
 * piece_hashes, x_sign.  New reference, NULL on ENOMEM. */
json_t *pr_manifest_doc(const char *file_id, uint64_t version, uint64_t size,
                        uint32_t piece_size,
                        const unsigned char (*hashes)[SHOAL_HASH_BYTES],
                        uint64_t npieces, const unsigned char *root,
                        const char *xsign);

/*
 * Keep the manifest of a downloaded version in dir/manifests (the answer
 * of GET /v1/files/{id}/manifest rebuilt: file_id, version, size,
 * piece_size, pieces, root, piece_hashes, x_sign).  -1 with err.
 */
int pr_manifest_cache_save(const char *dir, const char *file_id,
                           uint64_t version, uint64_t size,
                           uint32_t piece_size,
                           const unsigned char (*hashes)[SHOAL_HASH_BYTES],
                           uint64_t npieces, const unsigned char *root,
                           const char *xsign, struct shoal_err *err);

/*
 * A manifest of file_id (version 0: the highest kept) from the data
 * folder dir: a seeded version's record (files/) first, else one kept by
 * get (manifests/), checked against the pinned broker of id with an
 * unexpired signature.  New pr_version in *out, or -1 with err
 * (SHOAL_ENOTFOUND when none checks out).
 */
int pr_manifest_cache_load(const char *dir, const struct pr_identity *id,
                           const char *file_id, uint64_t version,
                           struct pr_version **out, struct shoal_err *err);

/*
 * Sources for f without the tracker: the holders of f's version known in
 * f->data_dir, then the holders that the peers among them list on
 * GET /v1/peers?file=ID&version=N (one hop, at most PR_PEX_ASK_MAX peers
 * asked, PR_PEX_TIMEOUT seconds each).  The identity's broker is left
 * out when skip_home is set (it cannot be reached).  Appends to s[*n..]
 * (room for PR_FETCH_SOURCES_MAX); add(arg, kind, url, id, have) adds
 * one.  -1 on ENOMEM.
 */
typedef int pr_pex_add_fn(void *arg, enum pr_source_kind kind,
                          const char *url, const char *id, const char *have);
int pr_pex_find(const struct pr_fetch *f, int skip_home, pr_pex_add_fn *add,
                void *arg);

/* GET /v1/peers?file=ID[&version=N] of shoal serve (route of serve.c). */
int pr_serve_h_peers(struct shoal_req *req, json_t **reply,
                     struct shoal_err *err);

#endif
