/*
 * fetch.h - the verified download of a file version from every holder at
 * once: the file brokers and the peers the tracker lists (sources.c), the
 * threads that check and write pieces (verify.c), and the engine that
 * takes pieces from the sources (fetch.c, fetch_req.c).
 *
 * The broker alone is one source among others: without peers (the
 * tracker lists none, or cannot be reached) a download is the broker's
 * N keep-alive connections, as it always was.
 *
 * Memory stays flat whatever the file size: at most one piece buffer per
 * request in flight (and one per hashing thread), a few bytes of state per
 * piece.  Offsets are 64-bit.
 */
#ifndef PR_FETCH_H
#define PR_FETCH_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "manifest.h"
#include "peer.h"
#include "progress.h"
#include "store.h"

#define PR_FETCH_STALL_DEFAULT 5.0     /* seconds without a byte */
#define PR_FETCH_SOURCES_MAX 32        /* sources used at once */

/* What a download fetches, and where it writes. */
struct pr_fetch {
    struct pr_ctx *ctx;          /* the broker and the session; a refused
                                  * session is renewed with pr_login */
    const char *file_id;
    uint64_t version;
    uint64_t size;
    uint32_t piece_size;
    /* the expected piece hashes, from the verified manifest (borrowed) */
    const unsigned char (*hashes)[SHOAL_HASH_BYTES];
    int fd;                      /* written with pwrite at piece offsets */
    const char *local;           /* the local path, for messages */
    int jobs;                    /* requests in flight per source */
    double stall;                /* seconds without a byte before a source
                                  * is dropped (0: PR_FETCH_STALL_DEFAULT) */
    int broker_only;             /* 1: do not ask the tracker for peers */
    struct pr_progress *progress;    /* may be NULL */
    const char *data_dir;        /* the data folder whose holders.json is
                                  * used when the tracker cannot be asked
                                  * (pex.h), or NULL */
    /* the swarm: every field may stay 0 / NULL */
    struct shoal_store *keep;    /* keep every verified piece here too */
    double refresh;              /* seconds between two looks at the
                                  * tracker for new holders and what they
                                  * hold now (0: only at the start) */
    const char *self_url;        /* this peer's own shoal serve: never a
                                  * source */
    const char *announce_url;    /* with keep: at each look, announce the
                                  * pieces kept there as held by the serve
                                  * at this URL */
};

/* --- sources (sources.c) --- */

enum pr_source_kind {
    PR_SOURCE_BROKER,            /* the broker of the identity */
    PR_SOURCE_FILE_BROKER,       /* another file broker of the directory */
    PR_SOURCE_PEER               /* a peer's shoal serve */
};

/* One holder of pieces, and what it did for this download. */
struct pr_source {
    enum pr_source_kind kind;
    char *url;                   /* base URL, without a trailing '/' */
    char *id;                    /* broker_id or user_id, or NULL */
    unsigned char *have;         /* bitfield of the pieces it holds
                                  * (protocol.md, section 11), or NULL
                                  * when it is taken to hold them all */
    uint64_t held;               /* pieces it holds */
    /* what it did */
    int live;                    /* 0 once dropped */
    char why[200];               /* why it was dropped */
    uint64_t pieces;             /* pieces it delivered first, verified */
    uint64_t bytes;              /* their bytes */
    uint64_t received;           /* body bytes it sent, good or not */
    int bad;                     /* 1 once it sent a piece that failed its
                                  * hash check: reported to the broker */
    uint64_t bad_piece;          /* the first such piece */
};

/* 1 when source s holds piece p. */
static inline int pr_source_has(const struct pr_source *s, uint64_t p)
{
    return !s->have || (s->have[p / 8] & (0x80u >> (p % 8)));
}

/*
 * The holders of f's version: GET /v1/files/{id}/peers?version=V, file
 * brokers first (the identity's own broker at the URL of the identity;
 * another file broker, listed without a bitfield, is asked its /have),
 * then the peers that hold at least one piece, at most
 * PR_FETCH_SOURCES_MAX in all.  When the tracker cannot be asked, the
 * holders known in f->data_dir and those the peers among them list
 * (pr_pex_find; the identity's broker first, unless it cannot be
 * reached at all).  With f->broker_only, or when that finds no one or the
 * tracker answers something unusable, the identity's broker alone, taken
 * to hold every piece.  f->self_url is never one of them.  New array of
 * room PR_FETCH_SOURCES_MAX in *out (*n entries; pr_sources_free).  -1
 * with err only on ENOMEM.
 */
int pr_sources_find(const struct pr_fetch *f, struct pr_source **out,
                    int *n, struct shoal_err *err);

/* The downloaders of a swarm as the tracker lists them: the peers with an
 * incomplete copy, this one (f->self_url) included, and the place of this
 * one among them in the order of their URLs. */
struct pr_swarm_view {
    int members;
    int rank;
};

/*
 * A later look at the tracker during a download: the peers (not the
 * brokers) holding pieces of f's version now, f->self_url left out, in an
 * array of room PR_FETCH_SOURCES_MAX.  A tracker that cannot be asked
 * gives none.  With f->self_url, *view (may be NULL) gets the downloaders
 * (members 0 when the tracker could not be asked).  -1 with err only on
 * ENOMEM.
 */
int pr_sources_peers(const struct pr_fetch *f, struct pr_source **out,
                     int *n, struct pr_swarm_view *view,
                     struct shoal_err *err);

void pr_sources_free(struct pr_source *s, int n);

/* "broker", "file-broker" or "peer". */
const char *pr_source_kind_name(enum pr_source_kind kind);

/* --- checking and writing pieces on other threads (verify.c) --- */

#define PR_VERIFY_MAX 8              /* threads */
#define PR_VERIFY_KEEP 3             /* more of them when pieces are also
                                      * kept: those wait on fsync */

/* A whole piece on its way through the verifying threads. */
struct pr_verify_job {
    uint64_t piece;
    int src;                     /* the caller's: who sent it */
    uint32_t len;
    unsigned char *buf;          /* its bytes: the caller's buffer, handed
                                  * back with the result */
    int ok;                      /* result: its SHA-256 is the manifest's */
    int werr;                    /* result: errno of a failed pwrite, or 0 */
};

struct pr_verify;

/* One thread per core but one, 1 to PR_VERIFY_MAX. */
int pr_verify_default_threads(void);

/*
 * Start threads that check pieces against hashes (borrowed) and pwrite
 * the right ones at their offset (piece * piece_size) in fd.  cap: the
 * most jobs given and not taken back at any time.  wake(arg) is called,
 * on a verifying thread, after each result.  NULL with err.
 */
struct pr_verify *pr_verify_new(
    int fd, uint32_t piece_size,
    const unsigned char (*hashes)[SHOAL_HASH_BYTES], int threads, size_t cap,
    void (*wake)(void *), void *arg, struct shoal_err *err);

/* Also keep every right piece in store (before the first push; NULL:
 * not).  A piece that cannot be kept does not fail the download: keeping
 * stops, and pr_verify_keep_failed says why once the threads are done. */
void pr_verify_keep(struct pr_verify *v, struct shoal_store *store);

/* 1 with the first failure to keep a piece in err, after
 * pr_verify_finish; else 0.  Accepts NULL. */
int pr_verify_keep_failed(struct pr_verify *v, struct shoal_err *err);

/* Hand a piece over (its buffer is the threads' until taken back). */
void pr_verify_push(struct pr_verify *v, const struct pr_verify_job *j);

/* Take at most max results (with their buffers) into out; how many. */
size_t pr_verify_take(struct pr_verify *v, struct pr_verify_job *out,
                      size_t max);

/* Let the threads finish every piece given (right ones are written), and
 * end them; the results stay to take.  Accepts NULL. */
void pr_verify_finish(struct pr_verify *v);

/* pr_verify_finish, then free (results not taken are lost).  Accepts
 * NULL. */
void pr_verify_free(struct pr_verify *v);

/* --- the download (fetch.c) --- */

/* Who served what: the sources of a download, in the tracker's order. */
struct pr_fetch_report {
    struct pr_source *sources;
    int n;
};

/*
 * Download pieces todo[0..n-1] of f from every source that holds them,
 * jobs requests in flight per source (libcurl multi, keep-alive, Range
 * over runs of pieces), rarest piece first, the last ones asked of
 * several sources at once (endgame: the first verified copy wins, the
 * others are cancelled).  Each piece is hashed as it arrives, on other
 * threads, and written at its offset only once its SHA-256 equals
 * f->hashes[p].
 *
 * A source that sends a piece that fails its hash is dropped at once,
 * warned about, and reported to the broker once the download ends
 * (POST /v1/files/{id}/reports, best effort: a report that fails is a
 * warning); a peer that stalls (f->stall seconds without a byte),
 * disconnects, or refuses is dropped; a file broker is dropped after
 * PR_FETCH_TRIES failures in a row.  Their pieces go to the other
 * holders.  When some pieces have no live holder left, the others are
 * still fetched, then the download fails with SHOAL_EINCOMPLETE naming
 * them (SHOAL_ENET when no source is left and the last one could not be
 * reached); what was written stays, for a later get to resume.
 *
 * *report (may be NULL) gets who served what, also on failure (NULL only
 * on ENOMEM); pr_fetch_report_free.  Returns 0 when every piece is
 * written, else -1 with err.
 */
int pr_fetch_run(const struct pr_fetch *f, const uint64_t *todo, uint64_t n,
                 struct pr_fetch_report **report, struct shoal_err *err);

#define PR_FETCH_TRIES 4         /* failures in a row that drop a broker */

/* Print one line per source on out: kind, URL, pieces, bytes, and why
 * it was dropped. */
void pr_fetch_report_print(const struct pr_fetch_report *r, FILE *out);

/* The sources as a JSON array of {kind, url, id, pieces, bytes, held,
 * dropped}.  New reference, NULL on ENOMEM. */
json_t *pr_fetch_report_json(const struct pr_fetch_report *r);

void pr_fetch_report_free(struct pr_fetch_report *r);

#endif
