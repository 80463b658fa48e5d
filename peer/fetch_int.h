/*
 * fetch_int.h - what fetch.c (the schedule: sources, pieces, the loop)
 * and fetch_req.c (one request: libcurl's callbacks, its answer) share.
 * Nothing else includes it.  The fx_ functions are theirs alone.
 */
#ifndef PR_FETCH_INT_H
#define PR_FETCH_INT_H

#include <stdint.h>

#include <curl/curl.h>

#include "authhdrs.h"
#include "fetch.h"

#define SPAN_PIECES 32               /* pieces in one request */
#define SPAN_BYTES (8u << 20)        /* bytes in one request */
#define COPIES_MAX 3                 /* requests for one piece at once */
#define BACKOFF 0.25                 /* seconds per failure in a row */
#define RECV_BUFFER (256L << 10)
#define TICK_MS 100                  /* longest wait between two checks */
#define SWARM_SPAN 2                 /* pieces in one request in a swarm */
#define SHUFFLE_BLOCK 4               /* pieces of a share kept in order */
#define SWARM_WAIT 3                 /* looks at the tracker before pieces
                                      * no one holds fail a swarm download */

struct engine;

struct slot {
    struct engine *e;
    int src;                         /* index in e->src */
    CURL *easy;                      /* NULL until first used */
    int busy;
    int paused;
    uint64_t span[SPAN_PIECES];      /* the pieces of this request */
    int nspan;
    int cur;                         /* index in span of the piece at hand */
    uint32_t got;                    /* bytes of span[cur] received */
    uint32_t counted;                /* of those, counted in progress */
    unsigned char *buf;              /* span[cur]'s bytes, NULL when they
                                      * are skipped (done elsewhere) */
    long status;                     /* HTTP status once known, else 0 */
    uint64_t range_start;            /* the Content-Range of a 206 */
    uint64_t range_end;
    int range_seen;
    int started;                     /* body bytes have arrived */
    unsigned gen;                    /* e->gen when the request started */
    double last;                     /* shoal_mono() of the last byte */
    char fault[160];                 /* what the source did wrong, or "" */
    int fatal;                       /* a local failure (ENOMEM) */
    struct pr_answer answer;         /* its error answer, truncated */
    char url[PR_URL_MAX + 128];
};

struct piece {
    uint16_t copies;                 /* requests that will send it */
    uint16_t hashing;                /* copies with the hashing threads */
    uint16_t avail;                  /* live sources that hold it */
    uint8_t need;                    /* one of the pieces to fetch */
    uint8_t done;                    /* verified and written */
    uint8_t tries;                   /* failures that dropped no source */
    uint8_t queued;                  /* in e->retry */
};

/* Engine-side state of a source (e->src[i] is its public part). */
struct src_run {
    struct slot *slots;              /* e->jobs of them */
    uint64_t cursor;                 /* next entry of e->order to look at */
    int fails;                       /* failures in a row (brokers) */
    double wait_until;               /* no new request before (back-off) */
};

struct engine {
    const struct pr_fetch *f;
    uint64_t count;                  /* pieces of the version */
    struct piece *pc;                /* count of them */
    struct pr_source *src;
    struct src_run *run;
    int nsrc;
    int nlive;
    int jobs;                        /* slots per source */
    double stall;
    CURLM *multi;
    struct pr_auth_hdrs auth;        /* the session headers */
    unsigned gen;                    /* bumped with every new session */
    uint64_t done_since_login;
    uint64_t left;                   /* pieces not yet done */
    uint64_t nfree;                  /* needed, not done, nobody on it */
    uint64_t *order;                 /* needed pieces, rarest first */
    uint64_t norder;
    uint64_t *retry;                 /* pieces given back */
    uint64_t nretry;
    int resort;                      /* availability changed */
    int check_orphans;               /* a piece may have lost its holders */
    uint64_t norphans;               /* free pieces no live source holds */
    /* the piece buffer pool */
    unsigned char **pool;
    int npool;                       /* free buffers in pool */
    int nalloc;                      /* buffers allocated */
    int cap;                         /* at most */
    struct pr_verify *verify;        /* the hashing threads */
    int in_hashers;                  /* jobs given, results not yet taken */
    double loop_last;
    int turn;                        /* the slot slots_watch starts at */
    /* the swarm (f->refresh) */
    double next_refresh;             /* shoal_mono() of the next look */
    double stuck_since;              /* when only orphans were left, or 0 */
    uint64_t *shuffled;              /* the pieces to fetch, in blocks in a
                                      * random order (f->announce_url), or
                                      * NULL: the caller's order */
    uint64_t nshuffled;
    struct pr_swarm_view view;       /* the downloaders, at the last look */
    uint64_t share_left;             /* pieces of this one's share not done */
    struct shoal_err last;           /* the last failure, for messages */
    struct shoal_err fatal;          /* set with code != OK to stop */
};

static inline uint32_t piece_len(const struct engine *e, uint64_t p)
{
    return shoal_piece_len(e->f->size, e->f->piece_size, p);
}

/* 1 when p is of this downloader's share of a swarm (fetch_swarm.c). */
static inline int in_share(const struct engine *e, uint64_t p)
{
    return e->view.members > 1 &&
           (int)((p / SHUFFLE_BLOCK) % (uint64_t)e->view.members) ==
               e->view.rank;
}

static inline int is_free(const struct engine *e, uint64_t p)
{
    const struct piece *pc = &e->pc[p];

    return pc->need && !pc->done && !pc->copies && !pc->hashing;
}

static inline const char *src_name(const struct engine *e, int si)
{
    return pr_source_kind_name(e->src[si].kind);
}

static inline int pool_avail(const struct engine *e)
{
    return e->npool + (e->cap - e->nalloc);
}

static inline void pool_put(struct engine *e, unsigned char *b)
{
    if (b)
        e->pool[e->npool++] = b;
}

/* --- piece bookkeeping ---------------------------------------------------- */

static inline void piece_take(struct engine *e, uint64_t p)
{
    if (is_free(e, p))
        e->nfree--;
    e->pc[p].copies++;
}

/* p may have become free: count it and queue it for another request. */
static inline void piece_check_free(struct engine *e, uint64_t p)
{
    if (!is_free(e, p))
        return;
    e->nfree++;
    if (!e->pc[p].queued) {
        e->pc[p].queued = 1;
        e->retry[e->nretry++] = p;
    }
}

/* A request gives p up without sending it. */
static inline void piece_release(struct engine *e, uint64_t p)
{
    e->pc[p].copies--;
    piece_check_free(e, p);
}

/* --- between fetch.c and fetch_req.c --- */

/* Stop the download with this error (the first one set wins). */
void fx_fatal_set(struct engine *e, enum shoal_code code, const char *fmt,
                  ...) __attribute__((format(printf, 3, 4)));

/* A free piece buffer, or NULL (none left, or ENOMEM: then e->fatal). */
unsigned char *fx_pool_get(struct engine *e);

/* Hand a whole piece to the hashing threads. */
void fx_hashers_push(struct engine *e, const struct pr_verify_job *j);

/* Drop source si for the rest of the download, with why (also the last
 * failure, with code). */
void fx_source_drop(struct engine *e, int si, enum shoal_code code,
                    const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A request of source si failed at piece: a peer is dropped, a file
 * broker retried with a back-off, then dropped. */
void fx_source_fail(struct engine *e, int si, uint64_t piece,
                    enum shoal_code code, const char *why);

/* (fetch_swarm.c) Announce the pieces kept (f->announce_url), then take
 * the holders the tracker lists now: new peers become sources, and what
 * known ones hold now counts. */
void fx_refresh(struct engine *e);

/* (fetch_swarm.c) With f->announce_url: todo[0..n-1] in blocks of a few
 * pieces in a random order, so that downloaders starting together ask
 * the seed for different pieces.  NULL otherwise, or on ENOMEM. */
uint64_t *fx_shuffle(const struct engine *e, const uint64_t *todo,
                     uint64_t n);

/* (fetch_req.c) The request headers with the current session. */
int fx_headers_make(struct engine *e, struct shoal_err *err);

/* (fetch_req.c) Start the request of slot s for s->span[0..nspan-1]. */
int fx_slot_start(struct engine *e, struct slot *s, struct shoal_err *err);

/* (fetch_req.c) End the request of s, finished or not: the pieces it did
 * not send go back to the others. */
void fx_slot_end(struct engine *e, struct slot *s);

/* (fetch_req.c) The request of slot s ended with rc: judge the answer. */
void fx_slot_done(struct engine *e, struct slot *s, CURLcode rc);

#endif
