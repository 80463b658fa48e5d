/*
 * transfer.c - parallel piece uploads over libcurl multi (downloads, from
 * every source at once, are fetch.c's).
 *
 * An upload runs N slots, each an easy handle that keeps its connection
 * alive from one request to the next.  A free slot takes work from the
 * retry queue (pieces that failed, once their back-off has passed), else
 * from the fresh list.  One PUT per piece; libcurl pulls the body through
 * read_up, which preads the file at the piece's offset (no piece copy).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "authhdrs.h"
#include "log.h"
#include "transfer.h"
#include "util.h"

#define BACKOFF 0.25                 /* seconds per failed try */

struct engine;

struct slot {
    struct engine *e;
    CURL *easy;
    int busy;
    uint64_t piece;                  /* the piece of this request */
    uint32_t got;                    /* bytes of it sent so far */
    uint64_t counted;                /* bytes counted in progress */
    unsigned gen;                    /* e->gen when the request started */
    int fatal;                       /* a callback failed for good */
    struct shoal_err ferr;           /* ... with this error */
    struct pr_answer answer;         /* its error answer, truncated */
    char url[1400];
};

struct retry {
    uint64_t piece;
    double ready;                    /* shoal_mono() when it may start */
};

struct engine {
    const struct pr_xfer *x;
    CURLM *multi;
    struct slot *slots;
    int nslots;
    struct pr_auth_hdrs auth;        /* the session headers */
    unsigned gen;                    /* bumped with every new session */
    uint64_t done_since_login;       /* pieces done with this session */
    const uint64_t *todo;
    uint64_t n;
    uint64_t next;                   /* next fresh entry of todo */
    uint64_t left;                   /* pieces not yet done */
    unsigned char *tries;            /* counted failures, by piece number */
    struct retry *retries;
    size_t nretries;
    size_t cap_retries;
    struct shoal_err last;           /* the last failure of a retried piece */
};

/* --- options ------------------------------------------------------------- */

int pr_jobs_parse(const char *s, int *jobs, struct shoal_err *err)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > PR_JOBS_MAX)
        return pr_usage_err(err, "connections '%s' must be from 1 to %d", s,
                            PR_JOBS_MAX);
    *jobs = (int)v;
    return 0;
}

/* --- the engine ---------------------------------------------------------- */

static uint32_t piece_len(const struct engine *e, uint64_t piece)
{
    return shoal_piece_len(e->x->size, e->x->piece_size, piece);
}

/* The request headers with the current session.  -1 on ENOMEM. */
static int headers_make(struct engine *e, struct shoal_err *err)
{
    static const char *const extra[] = {
        "Expect:", "Content-Type: application/octet-stream", NULL,
    };

    if (pr_auth_hdrs_renew(&e->auth, e->x->ctx->session.session_id, extra,
                           err) < 0)
        return -1;
    e->gen++;
    e->done_since_login = 0;
    return 0;
}

static int retry_push(struct engine *e, uint64_t piece, double delay,
                      struct shoal_err *err)
{
    if (e->nretries == e->cap_retries) {
        size_t cap = e->cap_retries ? e->cap_retries * 2 : 16;
        struct retry *r = realloc(e->retries, cap * sizeof(*r));
        if (!r)
            return shoal_err_set(err, SHOAL_EIO, "out of memory");
        e->retries = r;
        e->cap_retries = cap;
    }
    e->retries[e->nretries].piece = piece;
    e->retries[e->nretries].ready = shoal_mono() + delay;
    e->nretries++;
    return 0;
}

/* The index of a retry that may start now, or -1; *wait gets the seconds
 * until the earliest one may. */
static long retry_ready(const struct engine *e, double now, double *wait)
{
    size_t i;

    for (i = 0; i < e->nretries; i++) {
        if (e->retries[i].ready <= now)
            return (long)i;
        if (e->retries[i].ready - now < *wait)
            *wait = e->retries[i].ready - now;
    }
    return -1;
}

/* --- callbacks ------------------------------------------------------------ */


static size_t read_up(char *out, size_t size, size_t nitems, void *arg)
{
    struct slot *s = arg;
    struct engine *e = s->e;
    uint64_t piece = s->piece;
    uint32_t len = piece_len(e, piece);
    size_t want = size * nitems;
    uint64_t off = piece * (uint64_t)e->x->piece_size + s->got;
    ssize_t r;

    if (want > len - s->got)
        want = len - s->got;
    if (want == 0)
        return 0;
    do
        r = pread(e->x->fd, out, want, (off_t)off);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        s->fatal = 1;
        if (r < 0)
            shoal_err_set(&s->ferr, SHOAL_EIO, "cannot read '%s': %s",
                          e->x->local, strerror(errno));
        else
            shoal_err_set(&s->ferr, SHOAL_EIO, "'%s' is shorter than when it "
                          "was hashed: it changed, run put again",
                          e->x->local);
        return CURL_READFUNC_ABORT;
    }
    s->got += (uint32_t)r;
    s->counted += (uint64_t)r;
    pr_progress_add(e->x->progress, r);
    return (size_t)r;
}

/* libcurl rewinds the body when it has to send it again (a reused
 * connection found closed). */
static int seek_up(void *arg, curl_off_t offset, int origin)
{
    struct slot *s = arg;

    if (origin != SEEK_SET || offset < 0 ||
        (uint64_t)offset > piece_len(s->e, s->piece))
        return CURL_SEEKFUNC_FAIL;
    pr_progress_add(s->e->x->progress, (int64_t)offset - (int64_t)s->got);
    s->counted = (uint64_t)offset;
    s->got = (uint32_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t write_up(char *data, size_t size, size_t nitems, void *arg)
{
    pr_answer_keep(&((struct slot *)arg)->answer, data, size * nitems);
    return size * nitems;
}

/* --- requests ------------------------------------------------------------ */

#define SET(opt, val) \
    do { if (curl_easy_setopt(s->easy, opt, val) != CURLE_OK) goto fail; } while (0)

/* Start the request of slot s for s->piece. */
static int slot_start(struct engine *e, struct slot *s, struct shoal_err *err)
{
    const struct pr_xfer *x = e->x;

    s->got = 0;
    s->counted = 0;
    s->fatal = 0;
    pr_answer_reset(&s->answer);
    snprintf(s->url, sizeof(s->url), "%s/v1/files/%s/pieces/%" PRIu64
             "?version=%" PRIu64, x->ctx->id->broker, x->file_id, s->piece,
             x->version);
    SET(CURLOPT_URL, s->url);
    SET(CURLOPT_HTTPHEADER, e->auth.cur);
    s->gen = e->gen;
    SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)piece_len(e, s->piece));
    if (curl_multi_add_handle(e->multi, s->easy) != CURLM_OK)
        goto fail;
    s->busy = 1;
    return 0;
fail:
    return shoal_err_set(err, SHOAL_EIO, "cannot set up a transfer");
}

/* Options of an easy handle that stay for the whole transfer. */
static int slot_init(struct engine *e, struct slot *s, struct shoal_err *err)
{
    s->e = e;
    s->easy = curl_easy_init();
    if (!s->easy)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    SET(CURLOPT_PRIVATE, s);
    SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    SET(CURLOPT_CONNECTTIMEOUT, 15L);
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);       /* a stalled transfer fails */
    SET(CURLOPT_LOW_SPEED_TIME, 60L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_UPLOAD, 1L);
    SET(CURLOPT_READFUNCTION, read_up);
    SET(CURLOPT_READDATA, s);
    SET(CURLOPT_SEEKFUNCTION, seek_up);
    SET(CURLOPT_SEEKDATA, s);
    SET(CURLOPT_WRITEFUNCTION, write_up);
    SET(CURLOPT_WRITEDATA, s);
    SET(CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024);
    return 0;
fail:
    return shoal_err_set(err, SHOAL_EIO, "cannot set up a transfer");
}

#undef SET

/* Fill slot s with work: a retry that is ready, else a fresh piece.
 * Returns 1 when started, 0 when there is nothing to start now, -1 with
 * err. */
static int slot_fill(struct engine *e, struct slot *s, double now,
                     double *wait, struct shoal_err *err)
{
    long r = retry_ready(e, now, wait);

    if (r >= 0) {
        s->piece = e->retries[r].piece;
        e->retries[r] = e->retries[--e->nretries];
    } else if (e->next < e->n) {
        s->piece = e->todo[e->next++];
    } else {
        return 0;
    }
    if (slot_start(e, s, err) < 0)
        return -1;
    return 1;
}

/* 1 when the broker refused the session of this answer. */

/*
 * Put the piece of slot s back in the queue: counting a failed try when
 * count is set (which fails the transfer after PR_PIECE_TRIES).
 */
static int slot_requeue(struct engine *e, struct slot *s, int count,
                        struct shoal_err *err)
{
    uint64_t p = s->piece;
    double delay = 0.0;

    pr_progress_add(e->x->progress, -(int64_t)s->counted);
    s->counted = 0;
    if (count) {
        if (++e->tries[p] >= PR_PIECE_TRIES) {
            if (err)
                *err = e->last;
            return -1;
        }
        delay = BACKOFF * e->tries[p];
    }
    return retry_push(e, p, delay, err);
}

/* A request of slot s ended with result rc.  -1 with err ends the whole
 * transfer. */
static int slot_done(struct engine *e, struct slot *s, CURLcode rc,
                     struct shoal_err *err)
{
    struct shoal_err berr;
    long status = 0;

    s->busy = 0;
    curl_multi_remove_handle(e->multi, s->easy);
    if (s->fatal) {
        if (err)
            *err = s->ferr;
        return -1;
    }
    if (curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status) !=
        CURLE_OK)
        status = 0;
    /* a broker that refuses an upload may answer before reading it all:
     * its error counts, not the failed send */
    if (rc != CURLE_OK && !(status >= 400 && s->answer.len > 0)) {
        shoal_err_set(&e->last, SHOAL_ENET, "cannot reach '%s': %s "
                      "(piece %" PRIu64 ", %d tries)", e->x->ctx->id->broker,
                      curl_easy_strerror(rc), s->piece, PR_PIECE_TRIES);
        return slot_requeue(e, s, 1, err);
    }
    if (status >= 200 && status <= 299) {
        e->left--;
        e->done_since_login++;
        s->counted = 0;
        return 0;
    }
    pr_answer_error(&s->answer, status, &berr);
    if (pr_auth_refused(&berr) && s->gen != e->gen)
        return slot_requeue(e, s, 0, err);  /* sent with an older session */
    if (pr_auth_refused(&berr) && (e->gen == 1 || e->done_since_login)) {
        /* log in again, unless the last new session got nothing done */
        shoal_log(SHOAL_LOG_DEBUG, NULL, "broker refused the session of a "
                  "piece transfer (%s), logging in again",
                  shoal_code_name(berr.code));
        if (pr_login(e->x->ctx, NULL, err) < 0 || headers_make(e, err) < 0)
            return -1;
        return slot_requeue(e, s, 0, err);
    }
    if (status >= 500 && status != 507) {
        e->last = berr;
        return slot_requeue(e, s, 1, err);
    }
    if (status == 422) {
        /* the bytes sent do not hash as declared: the file changed, or
         * they were damaged on the way */
        shoal_err_set(&e->last, SHOAL_EUNPROCESSABLE, "piece %" PRIu64 " of "
                      "'%s' no longer matches its hash: the file changed "
                      "since it was hashed, run put again", s->piece,
                      e->x->local);
        return slot_requeue(e, s, 1, err);
    }
    if (err)
        *err = berr;
    return -1;
}

static void engine_free(struct engine *e)
{
    int i;

    for (i = 0; e->slots && i < e->nslots; i++) {
        struct slot *s = &e->slots[i];

        if (s->busy)
            curl_multi_remove_handle(e->multi, s->easy);
        if (s->easy)
            curl_easy_cleanup(s->easy);
    }
    free(e->slots);
    if (e->multi)
        curl_multi_cleanup(e->multi);
    pr_auth_hdrs_free(&e->auth);
    free(e->retries);
    free(e->tries);
}

int pr_xfer_upload(const struct pr_xfer *x, const uint64_t *todo, uint64_t n,
                   struct shoal_err *err)
{
    struct engine e;
    uint64_t count = shoal_piece_count(x->size, x->piece_size);
    int rc = -1;
    int i;

    if (n == 0)
        return 0;
    memset(&e, 0, sizeof(e));
    e.x = x;
    e.todo = todo;
    e.n = n;
    e.left = n;
    e.nslots = x->jobs < 1 ? 1 : x->jobs;
    if ((uint64_t)e.nslots > n)
        e.nslots = (int)n;
    shoal_err_set(&e.last, SHOAL_ENET, "transfer failed");
    if (!pr_connect(x->ctx, err))
        return -1;
    e.tries = calloc(count, 1);
    e.slots = calloc((size_t)e.nslots, sizeof(*e.slots));
    e.multi = curl_multi_init();
    if (!e.tries || !e.slots || !e.multi) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    curl_multi_setopt(e.multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      (long)e.nslots);
    curl_multi_setopt(e.multi, CURLMOPT_MAXCONNECTS, (long)e.nslots + 1);
    if (headers_make(&e, err) < 0)
        goto out;
    for (i = 0; i < e.nslots; i++)
        if (slot_init(&e, &e.slots[i], err) < 0)
            goto out;

    while (e.left > 0) {
        double now = shoal_mono();
        double wait = 1.0;
        int active = 0;
        int running = 0;
        int left_msgs = 0;
        int freed = 0;
        CURLMsg *msg;

        for (i = 0; i < e.nslots; i++) {
            struct slot *s = &e.slots[i];

            if (!s->busy && slot_fill(&e, s, now, &wait, err) < 0)
                goto out;
            active += s->busy;
        }
        if (active == 0) {
            if (e.nretries == 0) {
                shoal_err_set(err, SHOAL_EINTERNAL, "transfer stalled with "
                              "%" PRIu64 " pieces left", e.left);
                goto out;
            }
            usleep((useconds_t)(wait * 1e6) + 1000);
            continue;
        }
        if (curl_multi_perform(e.multi, &running) != CURLM_OK) {
            shoal_err_set(err, SHOAL_EIO, "transfer failed");
            goto out;
        }
        while ((msg = curl_multi_info_read(e.multi, &left_msgs))) {
            struct slot *s = NULL;

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &s);
            if (slot_done(&e, s, msg->data.result, err) < 0)
                goto out;
            freed = 1;
        }
        /* a freed slot takes new work at once; otherwise wait for the
         * sockets (or the first retry due) */
        if (!freed && running > 0 &&
            curl_multi_poll(e.multi, NULL, 0, (int)(wait * 1000) + 1,
                            NULL) != CURLM_OK) {
            shoal_err_set(err, SHOAL_EIO, "transfer failed");
            goto out;
        }
    }
    rc = 0;
out:
    engine_free(&e);
    return rc;
}
