/*
 * transfer.h - moving the pieces of a file version from a local file to
 * the broker: the hashing pass over a local file (hash.c), and parallel
 * piece uploads over N keep-alive connections (libcurl multi,
 * transfer.c).  Downloads, from every holder at once, are fetch.h's.
 *
 * Memory stays flat whatever the file size: uploads read the file with
 * pread as libcurl sends (no piece copy).  Offsets are 64-bit.
 */
#ifndef PR_TRANSFER_H
#define PR_TRANSFER_H

#include <stdint.h>

#include "manifest.h"
#include "peer.h"
#include "progress.h"

#define PR_JOBS_DEFAULT 4
#define PR_JOBS_MAX 64
#define PR_PIECE_TRIES 4        /* a first try and 3 retries */

/*
 * (hash.c) Hash every piece of the open file fd (size bytes, piece_size) into
 * hashes[count] with SHA-256, reading with pread on a few threads (one per
 * core, at most 4).  progress (may be NULL) counts the bytes hashed.  -1
 * with SHOAL_EIO when the file cannot be read or is shorter than size.
 */
int pr_hash_file(int fd, uint64_t size, uint32_t piece_size,
                 unsigned char (*hashes)[SHOAL_HASH_BYTES],
                 struct pr_progress *progress, struct shoal_err *err);

/* What a transfer moves: one version of one file, and the local side. */
struct pr_xfer {
    struct pr_ctx *ctx;          /* broker URL and session; a refused
                                  * session is renewed with pr_login */
    const char *file_id;
    uint64_t version;
    uint64_t size;
    uint32_t piece_size;
    int fd;                      /* read as pieces are sent */
    const char *local;           /* the local path, for messages */
    int jobs;                    /* parallel connections, 1..PR_JOBS_MAX */
    struct pr_progress *progress;    /* may be NULL */
};

/*
 * Upload pieces todo[0..n-1] of x->fd, each one PUT
 * /v1/files/{id}/pieces/{n}?version=V, over x->jobs connections.  A piece
 * that fails on the network or with a 5xx is sent again from scratch, at
 * most PR_PIECE_TRIES times in all.  Returns 0 when every piece is stored,
 * else -1 with err (the broker's error for a refused piece).
 */
int pr_xfer_upload(const struct pr_xfer *x, const uint64_t *todo, uint64_t n,
                   struct shoal_err *err);

/* Parse the -j value: 1..PR_JOBS_MAX.  PR_USAGE with err otherwise. */
int pr_jobs_parse(const char *s, int *jobs, struct shoal_err *err);

#endif
