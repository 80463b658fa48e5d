/*
 * fetch.c - the multi-source verified download (fetch.h).
 *
 * Every source gets `jobs` slots: easy handles of one libcurl multi that
 * keep their connection alive from one request to the next.  A free slot
 * asks its source for a run of consecutive pieces with one GET of
 * /content and a Range.  The first piece of a run is the rarest one the
 * source holds that nobody is fetching (availability counted over the
 * live sources' bitfields; a piece given back by a failed request comes
 * first); the run goes on with the next pieces while the source holds
 * them, nobody has them and the run stays short enough to share what is
 * left between every slot.  Once every piece is asked for, an idle slot
 * asks again for a piece that another source is still sending (endgame,
 * COPIES_MAX requests for one piece at most): the first copy that
 * verifies wins, requests left with nothing useful are cancelled, and the
 * bytes of a piece already done are skipped.
 *
 * The bytes of a piece go into a buffer from a pool (one per request in
 * flight, and one per hashing thread); once whole, the buffer goes to the
 * hashing threads (verify.c), which compare its SHA-256 with the
 * manifest's and pwrite it at its offset only when they match, while
 * this thread goes on receiving.  A slot that needs a buffer when none is
 * free is paused (CURL_WRITEFUNC_PAUSE) until one comes back.  One
 * request, from its callbacks to its answer, is fetch_req.c's.
 *
 * Faults: a source whose piece fails its hash is dropped; a peer that
 * stalls, disconnects, answers another range or an error is dropped; a
 * file broker is retried with a back-off and dropped after PR_FETCH_TRIES
 * failures in a row.  Their pieces go back to the others.  The pieces
 * that still have a live holder are all fetched; then, when some have
 * none, the download ends with SHOAL_EINCOMPLETE naming them.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fetch_int.h"
#include "log.h"
#include "util.h"

void fx_fatal_set(struct engine *e, enum shoal_code code,
                      const char *fmt, ...)
{
    char msg[SHOAL_ERR_MSG_MAX];
    va_list ap;

    if (e->fatal.code != SHOAL_OK)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    shoal_err_set(&e->fatal, code, "%s", msg);
}

/* A free buffer, or NULL (none left, or ENOMEM: then e->fatal). */
unsigned char *fx_pool_get(struct engine *e)
{
    void *b;

    if (e->npool > 0)
        return e->pool[--e->npool];
    if (e->nalloc >= e->cap)
        return NULL;
    /* aligned, so that a kept piece goes to the store without a copy */
    if (posix_memalign(&b, 4096, e->f->piece_size) != 0) {
        fx_fatal_set(e, SHOAL_EIO, "out of memory");
        return NULL;
    }
    e->nalloc++;
    return b;
}

/* --- hashing threads ------------------------------------------------------ */

static void wake_loop(void *arg)
{
    curl_multi_wakeup(arg);
}

void fx_hashers_push(struct engine *e, const struct pr_verify_job *j)
{
    pr_verify_push(e->verify, j);
    e->in_hashers++;
}

static void job_done(struct engine *e, const struct pr_verify_job *j);

/* Take the results of the hashing threads. */
static void hashers_drain(struct engine *e)
{
    struct pr_verify_job got[64];
    size_t n;
    size_t i;

    do {
        n = pr_verify_take(e->verify, got, 64);
        for (i = 0; i < n; i++)
            job_done(e, &got[i]);
    } while (n == 64);
}

/* Let the threads finish what they were given (verified pieces are
 * written), take the results and end them. */
static void hashers_stop(struct engine *e)
{
    struct shoal_err why;

    if (!e->verify)
        return;
    pr_verify_finish(e->verify);
    hashers_drain(e);
    if (pr_verify_keep_failed(e->verify, &why))
        pr_warn("stopped keeping the pieces of file '%s' to serve them: %s",
                e->f->file_id, why.msg);
    pr_verify_free(e->verify);
    e->verify = NULL;
}
/* --- sources -------------------------------------------------------------- */

/* Rebuild e->order: the needed pieces not done, rarest first (a counting
 * sort by availability, by index within one), and restart the cursors. */
static void order_build(struct engine *e, const uint64_t *todo, uint64_t n)
{
    uint64_t *start = calloc((size_t)e->nsrc + 2, sizeof(*start));
    uint64_t i;
    int k;

    e->norder = 0;
    if (!start) {                    /* keep the order by index */
        for (i = 0; i < n; i++)
            if (!e->pc[todo[i]].done)
                e->order[e->norder++] = todo[i];
    } else {
        for (i = 0; i < n; i++)
            if (!e->pc[todo[i]].done)
                start[e->pc[todo[i]].avail + 1]++;
        for (k = 1; k <= e->nsrc + 1; k++)
            start[k] += start[k - 1];
        for (i = 0; i < n; i++)
            if (!e->pc[todo[i]].done)
                e->order[start[e->pc[todo[i]].avail]++] = todo[i];
        e->norder = start[e->nsrc];
        free(start);
    }
    for (k = 0; k < e->nsrc; k++)
        e->run[k].cursor = 0;
    e->resort = 0;
}

/* Drop source si for the rest of the download: its requests are
 * cancelled and its pieces go to the others.  The reason is also the
 * last failure, with code. */
void fx_source_drop(struct engine *e, int si, enum shoal_code code,
                        const char *fmt, ...)
{
    struct pr_source *src = &e->src[si];
    uint64_t p;
    va_list ap;
    int i;

    if (!src->live)
        return;
    src->live = 0;
    va_start(ap, fmt);
    vsnprintf(src->why, sizeof(src->why), fmt, ap);
    va_end(ap);
    e->nlive--;
    shoal_err_set(&e->last, code, "%s '%s': %s", src_name(e, si), src->url,
                  src->why);
    for (i = 0; i < e->jobs; i++)
        if (e->run[si].slots[i].busy)
            fx_slot_end(e, &e->run[si].slots[i]);
    for (p = 0; p < e->count; p++)
        if (e->pc[p].need && pr_source_has(src, p))
            e->pc[p].avail--;
    e->resort = 1;
    e->check_orphans = 1;
    shoal_log(SHOAL_LOG_INFO, NULL, "dropped %s '%s': %s", src_name(e, si),
              src->url, src->why);
    pr_progress_sources(e->f->progress, e->nlive);
}

/* Source si could not send piece p PR_FETCH_TRIES times: take it as not
 * holding p. */
static void source_forget(struct engine *e, int si, uint64_t p)
{
    struct pr_source *src = &e->src[si];
    size_t nbytes = (size_t)((e->count + 7) / 8);

    if (!src->have) {
        if (!(src->have = malloc(nbytes ? nbytes : 1))) {
            fx_fatal_set(e, SHOAL_EIO, "out of memory");
            return;
        }
        memset(src->have, 0xff, nbytes);
    }
    if (!pr_source_has(src, p))
        return;
    src->have[p / 8] &= (unsigned char)~(0x80u >> (p % 8));
    src->held--;
    e->pc[p].avail--;
    e->resort = 1;
    e->check_orphans = 1;
}

/* A request of source si failed with why (code: SHOAL_ENET for the
 * network, else the answer's): a peer is dropped at once, a file broker
 * after PR_FETCH_TRIES failures in a row (with a back-off meanwhile).
 * piece: the piece at hand. */
void fx_source_fail(struct engine *e, int si, uint64_t piece,
                        enum shoal_code code, const char *why)
{
    struct pr_source *src = &e->src[si];
    struct src_run *r = &e->run[si];

    if (!src->live)
        return;
    if (src->kind == PR_SOURCE_PEER) {
        fx_source_drop(e, si, code, "%s", why);
        return;
    }
    shoal_err_set(&e->last, code, "%s '%s': %s", src_name(e, si), src->url,
                  why);
    shoal_log(SHOAL_LOG_DEBUG, NULL, "%s '%s': %s", src_name(e, si),
              src->url, why);
    if (++r->fails >= PR_FETCH_TRIES) {
        fx_source_drop(e, si, code, "%s (%d failures in a row)", why,
                       r->fails);
        return;
    }
    r->wait_until = shoal_mono() + BACKOFF * r->fails;
    if (++e->pc[piece].tries >= PR_FETCH_TRIES)
        source_forget(e, si, piece);
}

/* The pieces that have no live holder left, as "3, 7-9, 12" in out. */
static uint64_t orphans(const struct engine *e, char *out, size_t size)
{
    uint64_t n = 0;
    uint64_t runs = 0;
    uint64_t p = 0;
    size_t len = 0;

    out[0] = '\0';
    while (p < e->count) {
        uint64_t q;

        if (!e->pc[p].need || e->pc[p].done || e->pc[p].hashing ||
            e->pc[p].avail) {
            p++;
            continue;
        }
        for (q = p; q + 1 < e->count && e->pc[q + 1].need &&
             !e->pc[q + 1].done && !e->pc[q + 1].hashing &&
             !e->pc[q + 1].avail; q++)
            ;
        n += q - p + 1;
        if (++runs <= 12 && len < size) {
            if (q == p)
                len += (size_t)snprintf(out + len, size - len, "%s%" PRIu64,
                                        runs > 1 ? ", " : "", p);
            else
                len += (size_t)snprintf(out + len, size - len, "%s%" PRIu64
                                        "-%" PRIu64, runs > 1 ? ", " : "", p,
                                        q);
        } else if (runs == 13 && len < size) {
            len += (size_t)snprintf(out + len, size - len, ", …");
        }
        p = q + 1;
    }
    return n;
}

/* Count the pieces that have no live holder left: the download goes on
 * with the others, then stops. */
static void orphans_check(struct engine *e)
{
    char list[8];

    e->check_orphans = 0;
    e->norphans = orphans(e, list, sizeof(list));
}

/* Stop for the pieces without a live holder: SHOAL_EINCOMPLETE, or
 * SHOAL_ENET when no source is left and the last one could not be
 * reached. */
static void orphans_fail(struct engine *e)
{
    char list[120];
    uint64_t n = orphans(e, list, sizeof(list));
    int dropped = 0;
    int i;

    for (i = 0; i < e->nsrc; i++)
        dropped += !e->src[i].live;
    if (dropped)
        fx_fatal_set(e, e->nlive == 0 && e->last.code == SHOAL_ENET ?
                     SHOAL_ENET : SHOAL_EINCOMPLETE, "no live source holds "
                     "piece%s %s of file '%s' (%d of %d sources dropped; "
                     "last: %.100s)", n > 1 ? "s" : "", list, e->f->file_id,
                     dropped, e->nsrc, e->last.msg);
    else
        fx_fatal_set(e, SHOAL_EINCOMPLETE, "no source holds piece%s %s of "
                     "file '%s' version %" PRIu64, n > 1 ? "s" : "", list,
                     e->f->file_id, e->f->version);
}
/* 1 when source si already asks for p. */
static int asking(const struct engine *e, int si, uint64_t p)
{
    int i;
    int k;

    for (i = 0; i < e->jobs; i++) {
        const struct slot *s = &e->run[si].slots[i];

        for (k = s->cur; s->busy && k < s->nspan; k++)
            if (s->span[k] == p)
                return 1;
    }
    return 0;
}

/* Endgame: a piece another source is still sending that si holds, among
 * those asked for the fewest times.  1 with *p, else 0. */
static int pick_copy(const struct engine *e, int si, uint64_t *p)
{
    int best = COPIES_MAX;
    int sj;
    int i;
    int k;

    for (sj = 0; sj < e->nsrc; sj++) {
        if (sj == si || !e->src[sj].live)
            continue;
        for (i = 0; i < e->jobs; i++) {
            const struct slot *s = &e->run[sj].slots[i];

            for (k = s->cur; s->busy && k < s->nspan; k++) {
                uint64_t q = s->span[k];

                if (e->pc[q].done || e->pc[q].copies >= best ||
                    !pr_source_has(&e->src[si], q) || asking(e, si, q))
                    continue;
                best = e->pc[q].copies;
                *p = q;
            }
        }
    }
    return best < COPIES_MAX;
}

/* Fill slot s of source si with work.  1 when a request started, 0 when
 * there is nothing for it now, -1 with err. */
static int slot_fill(struct engine *e, int si, struct slot *s,
                     struct shoal_err *err)
{
    const struct pr_source *src = &e->src[si];
    struct src_run *r = &e->run[si];
    uint64_t slots = (uint64_t)e->nlive * (uint64_t)e->jobs;
    uint64_t unasked = e->nfree > e->norphans ? e->nfree - e->norphans : 0;
    uint64_t want = slots ? unasked / slots : 1;
    uint64_t bytes;
    uint64_t p = 0;
    uint64_t i;
    int found = 0;

    if (want < 1)
        want = 1;
    if (want > SPAN_PIECES)
        want = SPAN_PIECES;
    /* in a swarm, short requests: a piece promised to a slow seed is not
     * taken from a faster peer that gets it meanwhile */
    if (e->f->announce_url && want > SWARM_SPAN)
        want = SWARM_SPAN;
    /* pieces given back first */
    for (i = 0; i < e->nretry;) {
        uint64_t q = e->retry[i];

        if (!is_free(e, q)) {
            e->pc[q].queued = 0;
            e->retry[i] = e->retry[--e->nretry];
            continue;
        }
        if (pr_source_has(src, q)) {
            e->pc[q].queued = 0;
            e->retry[i] = e->retry[--e->nretry];
            p = q;
            found = 1;
            break;
        }
        i++;
    }
    /* then the rarest piece nobody is on; in a swarm, while this one's
     * share is not all here, a seed (a peer that holds every piece) is not
     * asked for the others' shares that it alone holds: they are getting
     * those from it, and trade them soon */
    while (!found && r->cursor < e->norder) {
        uint64_t q = e->order[r->cursor++];

        if (e->share_left > 0 && src->kind == PR_SOURCE_PEER && !src->have &&
            e->pc[q].avail == 1 && !in_share(e, q)) {
            r->cursor--;        /* rarest first: all after it are held by
                                 * another source too */
            break;
        }
        if (is_free(e, q) && pr_source_has(src, q)) {
            p = q;
            found = 1;
        }
    }
    s->nspan = 0;
    if (found) {
        bytes = piece_len(e, p);
        s->span[s->nspan++] = p;
        while ((uint64_t)s->nspan < want && ++p < e->count &&
               is_free(e, p) && pr_source_has(src, p) &&
               bytes + piece_len(e, p) <= SPAN_BYTES) {
            bytes += piece_len(e, p);
            s->span[s->nspan++] = p;
        }
    } else if (unasked == 0 && pick_copy(e, si, &p)) {
        s->span[s->nspan++] = p;
    } else {
        return 0;
    }
    if (fx_slot_start(e, s, err) < 0)
        return -1;
    return 1;
}
/* A piece came back from the hashing threads. */
static void job_done(struct engine *e, const struct pr_verify_job *j)
{
    struct piece *pc = &e->pc[j->piece];
    struct pr_source *src = &e->src[j->src];

    pool_put(e, j->buf);
    e->in_hashers--;
    pc->hashing--;
    if (j->werr) {
        fx_fatal_set(e, SHOAL_EIO, "cannot write '%s': %s", e->f->local,
                     strerror(j->werr));
        return;
    }
    if (j->ok && !pc->done) {
        pc->done = 1;
        e->left--;
        if (in_share(e, j->piece) && --e->share_left == 0)
            e->resort = 1;           /* the seeds may send the rest now */
        e->done_since_login++;
        src->pieces++;
        src->bytes += j->len;
        return;
    }
    pr_progress_add(e->f->progress, -(int64_t)j->len);
    if (j->ok)
        return;                         /* a copy that came second */
    if (!src->bad) {
        src->bad = 1;
        src->bad_piece = j->piece;
    }
    if (src->live) {
        pr_warn("%s '%s'%s%s%s sent piece %" PRIu64 " of file '%s' with a "
                "wrong hash: dropped it", src_name(e, j->src), src->url,
                src->id ? " (" : "", src->id ? src->id : "",
                src->id ? ")" : "", j->piece, e->f->file_id);
        fx_source_drop(e, j->src, SHOAL_EPROTO, "sent piece %" PRIu64 ", "
                       "which failed its hash check", j->piece);
    }
    piece_check_free(e, j->piece);
    e->check_orphans = 1;
}

/* Requests that can only send pieces done meanwhile are cancelled. */
static void cancel_useless(struct engine *e)
{
    int si;
    int i;
    int k;

    for (si = 0; si < e->nsrc; si++) {
        for (i = 0; e->src[si].live && i < e->jobs; i++) {
            struct slot *s = &e->run[si].slots[i];

            for (k = s->cur; s->busy && k < s->nspan; k++)
                if (!e->pc[s->span[k]].done)
                    break;
            if (s->busy && k == s->nspan)
                fx_slot_end(e, s);
        }
    }
}

/* Drop the sources with a request that got no byte for e->stall seconds
 * (a file broker counts a failure), and resume the paused requests that
 * a free buffer lets go on. */
static void slots_watch(struct engine *e, double now)
{
    int total = e->nsrc * e->jobs;
    int si;
    int i;
    int k;

    /* this thread did not run for a while (stopped, swapped out): the
     * silence is not the sources' fault */
    if (now - e->loop_last > e->stall / 2)
        for (si = 0; si < e->nsrc; si++)
            for (i = 0; i < e->jobs; i++)
                e->run[si].slots[i].last = now;
    e->loop_last = now;
    /* each time from another slot, so that buffers go round */
    for (k = 0; k < total; k++) {
        int t = (e->turn + k) % total;

        si = t / e->jobs;
        i = t % e->jobs;
        if (e->src[si].live) {
            struct slot *s = &e->run[si].slots[i];
            char why[80];

            if (!s->busy)
                continue;
            if (s->paused) {
                if (pool_avail(e) > 0) {
                    s->paused = 0;
                    s->last = now;
                    curl_easy_pause(s->easy, CURLPAUSE_CONT);
                }
                continue;
            }
            if (now - s->last > e->stall) {
                uint64_t at = s->span[s->cur < s->nspan ? s->cur : 0];

                snprintf(why, sizeof(why), "stalled: no byte for %.0f s "
                         "(piece %" PRIu64 ")", now - s->last, at);
                fx_slot_end(e, s);
                fx_source_fail(e, si, at, SHOAL_ENET, why);
            }
        }
    }
    e->turn = total ? (e->turn + 1) % total : 0;
}

/* --- the loop ------------------------------------------------------------- */

static int engine_init(struct engine *e, const struct pr_fetch *f,
                       const uint64_t *todo, uint64_t n,
                       struct shoal_err *err)
{
    uint64_t i;
    int threads;
    int bufs;
    int si;
    int k;

    e->count = shoal_piece_count(f->size, f->piece_size);
    e->jobs = f->jobs < 1 ? 1 : f->jobs;
    e->stall = f->stall > 0 ? f->stall : PR_FETCH_STALL_DEFAULT;
    e->left = n;
    e->nfree = n;
    shoal_err_set(&e->last, SHOAL_ENET, "transfer failed");
    shoal_err_clear(&e->fatal);
    if (pr_sources_find(f, &e->src, &e->nsrc, err) < 0)
        return -1;
    e->nlive = e->nsrc;
    e->pc = calloc(e->count, sizeof(*e->pc));
    e->order = calloc(n, sizeof(*e->order));
    e->retry = calloc(n, sizeof(*e->retry));
    /* room for the sources a look at the tracker may add (fetch_swarm.c) */
    e->run = calloc(PR_FETCH_SOURCES_MAX, sizeof(*e->run));
    threads = pr_verify_default_threads() + (f->keep ? PR_VERIFY_KEEP : 0);
    if (threads > PR_VERIFY_MAX)
        threads = PR_VERIFY_MAX;
    e->cap = e->nsrc * e->jobs + threads + 1;
    bufs = PR_FETCH_SOURCES_MAX * e->jobs + threads + 1;
    e->pool = calloc((size_t)bufs, sizeof(*e->pool));
    e->multi = curl_multi_init();
    if (!e->pc || !e->order || !e->retry || !e->run || !e->pool ||
        !e->multi)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    for (si = 0; si < e->nsrc; si++) {
        e->run[si].slots = calloc((size_t)e->jobs, sizeof(struct slot));
        if (!e->run[si].slots)
            return shoal_err_set(err, SHOAL_EIO, "out of memory");
        for (k = 0; k < e->jobs; k++) {
            e->run[si].slots[k].e = e;
            e->run[si].slots[k].src = si;
        }
    }
    for (i = 0; i < n; i++)
        e->pc[todo[i]].need = 1;
    for (si = 0; si < e->nsrc; si++)
        for (i = 0; i < n; i++)
            if (pr_source_has(&e->src[si], todo[i]))
                e->pc[todo[i]].avail++;
    e->shuffled = fx_shuffle(e, todo, n);
    e->nshuffled = e->shuffled ? n : 0;
    order_build(e, e->shuffled ? e->shuffled : todo, n);
    /* the first look soon: the downloaders that started together have
     * announced themselves by then */
    e->next_refresh = shoal_mono() + f->refresh / (f->announce_url ? 4 : 1);
    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS,
                      (long)(e->nsrc * e->jobs + 1));
    if (fx_headers_make(e, err) < 0)
        return -1;
    e->verify = pr_verify_new(f->fd, f->piece_size, f->hashes, threads,
                              (size_t)bufs, wake_loop, e->multi, err);
    if (!e->verify)
        return -1;
    if (f->keep)
        pr_verify_keep(e->verify, f->keep);
    return 0;
}

static void engine_free(struct engine *e)
{
    int si;
    int k;

    hashers_stop(e);                 /* its results may touch the slots */
    for (si = 0; e->run && si < e->nsrc; si++) {
        for (k = 0; e->run[si].slots && k < e->jobs; k++) {
            struct slot *s = &e->run[si].slots[k];

            if (s->busy)
                curl_multi_remove_handle(e->multi, s->easy);
            if (s->easy)
                curl_easy_cleanup(s->easy);
            free(s->buf);
        }
        free(e->run[si].slots);
    }
    free(e->run);
    for (k = 0; k < e->npool; k++)
        free(e->pool[k]);
    free(e->pool);
    if (e->multi)
        curl_multi_cleanup(e->multi);
    pr_auth_hdrs_free(&e->auth);
    free(e->order);
    free(e->retry);
    free(e->shuffled);
    free(e->pc);
}

/* Only pieces that no live source holds are left.  In a swarm
 * (f->refresh), a peer may get them yet: 1 to wait for the next looks at
 * the tracker, until SWARM_WAIT looks found none; then 0. */
static int swarm_wait(struct engine *e, double now)
{
    if (e->f->refresh <= 0)
        return 0;
    if (e->stuck_since == 0)
        e->stuck_since = now;
    return now - e->stuck_since < SWARM_WAIT * e->f->refresh;
}

/* Nothing to do until the next look at the tracker (or a result). */
static void idle(struct engine *e, double now)
{
    double wait = e->next_refresh - now;

    if (wait > TICK_MS / 1000.0)
        wait = TICK_MS / 1000.0;
    if (wait > 0)
        curl_multi_poll(e->multi, NULL, 0, (int)(wait * 1000) + 1, NULL);
}

/* Run until every piece is done, or something stops the download. */
static int engine_loop(struct engine *e, const uint64_t *todo, uint64_t n,
                       struct shoal_err *err)
{
    const uint64_t *order = e->shuffled ? e->shuffled : todo;

    e->loop_last = shoal_mono();
    pr_progress_sources(e->f->progress, e->nlive);
    while (e->left > 0) {
        double now = shoal_mono();
        double wait = TICK_MS / 1000.0;
        int active = 0;
        int running = 0;
        int left_msgs = 0;
        int freed = 0;
        CURLMsg *msg;
        int si;
        int k;

        hashers_drain(e);
        if (e->left == 0)
            break;
        if (e->f->refresh > 0 && now >= e->next_refresh) {
            fx_refresh(e);
            now = shoal_mono();
            e->next_refresh = now + e->f->refresh;
        }
        cancel_useless(e);
        slots_watch(e, now);            /* may drop sources */
        if (e->check_orphans)
            orphans_check(e);
        if (e->fatal.code != SHOAL_OK)
            break;
        if (e->left == e->norphans && e->in_hashers == 0) {
            if (swarm_wait(e, now)) {
                idle(e, now);
                continue;
            }
            orphans_fail(e);            /* all the others are done */
            break;
        }
        e->stuck_since = 0;
        if (e->resort)
            order_build(e, order, n);
        for (si = 0; si < e->nsrc; si++) {
            struct src_run *r = &e->run[si];

            if (!e->src[si].live)
                continue;
            if (r->wait_until > now) {
                if (r->wait_until - now < wait)
                    wait = r->wait_until - now;
            }
            for (k = 0; k < e->jobs; k++) {
                struct slot *s = &r->slots[k];

                if (!s->busy && r->wait_until <= now &&
                    slot_fill(e, si, s, err) < 0)
                    return -1;
                active += s->busy;
            }
        }
        if (e->fatal.code != SHOAL_OK)
            break;
        if (active == 0 && e->in_hashers == 0 && e->nlive > 0) {
            int waiting = 0;

            for (si = 0; si < e->nsrc; si++)
                waiting += e->src[si].live && e->run[si].wait_until > now;
            if (!waiting) {
                orphans_check(e);
                if (e->left == e->norphans && swarm_wait(e, now)) {
                    idle(e, now);
                    continue;
                }
                if (e->left == e->norphans)
                    orphans_fail(e);
                fx_fatal_set(e, SHOAL_EINTERNAL, "download stalled with %"
                             PRIu64 " pieces left", e->left);
                break;
            }
        }
        if (curl_multi_perform(e->multi, &running) != CURLM_OK) {
            fx_fatal_set(e, SHOAL_EIO, "transfer failed");
            break;
        }
        while ((msg = curl_multi_info_read(e->multi, &left_msgs))) {
            struct slot *s = NULL;

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &s);
            fx_slot_done(e, s, msg->data.result);
            freed = 1;
        }
        /* a freed slot takes new work at once; otherwise wait for the
         * sockets, the hashing threads or the next check */
        if (!freed &&
            curl_multi_poll(e->multi, NULL, 0, (int)(wait * 1000) + 1,
                            NULL) != CURLM_OK) {
            fx_fatal_set(e, SHOAL_EIO, "transfer failed");
            break;
        }
    }
    if (e->left > 0)
        fx_fatal_set(e, SHOAL_EINTERNAL, "download stopped with %" PRIu64
                     " pieces left", e->left);
    if (e->fatal.code != SHOAL_OK) {
        if (err)
            *err = e->fatal;
        return -1;
    }
    return 0;
}

/* Tell the broker which sources sent a piece that failed its hash check
 * (POST /v1/files/{id}/reports), one report each.  Best effort: a report
 * the broker refuses is a warning; once it cannot be reached, the others
 * are not tried. */
static void sources_report(const struct pr_fetch *f, const struct pr_source *src,
                           int nsrc)
{
    char path[128];
    int i;

    snprintf(path, sizeof(path), "/v1/files/%s/reports", f->file_id);
    for (i = 0; i < nsrc; i++) {
        const struct pr_source *s = &src[i];
        struct shoal_err err;
        char reason[128];
        json_t *body;
        json_t *ans = NULL;
        int rc;

        if (!s->bad)
            continue;
        shoal_err_clear(&err);
        snprintf(reason, sizeof(reason), "sent piece %" PRIu64 ", which "
                 "failed its hash check", s->bad_piece);
        body = json_pack("{s:s, s:I, s:I, s:s}", "url", s->url,
                         "piece", (json_int_t)s->bad_piece,
                         "version", (json_int_t)f->version,
                         "reason", reason);
        if (!body) {
            pr_warn("cannot report %s '%s': out of memory",
                    pr_source_kind_name(s->kind), s->url);
            return;
        }
        rc = pr_call(f->ctx, "POST", path, body, &ans, &err);
        json_decref(body);
        json_decref(ans);
        if (rc < 0) {
            pr_warn("cannot report %s '%s' to the broker: %s",
                    pr_source_kind_name(s->kind), s->url, err.msg);
            if (err.code == SHOAL_ENET)
                return;
            continue;
        }
        shoal_log(SHOAL_LOG_INFO, NULL, "reported %s '%s' for piece %"
                  PRIu64 " of file '%s'", pr_source_kind_name(s->kind),
                  s->url, s->bad_piece, f->file_id);
    }
}

int pr_fetch_run(const struct pr_fetch *f, const uint64_t *todo, uint64_t n,
                 struct pr_fetch_report **report, struct shoal_err *err)
{
    struct engine e;
    int rc = -1;

    if (report)
        *report = NULL;
    memset(&e, 0, sizeof(e));
    e.f = f;
    if (n > 0) {
        if (!pr_connect(f->ctx, err) || engine_init(&e, f, todo, n, err) < 0)
            goto out;
        e.check_orphans = 1;
        rc = engine_loop(&e, todo, n, err);
    } else {
        rc = 0;
    }
out:
    /* verified pieces still with the hashing threads get written */
    hashers_stop(&e);
    engine_free(&e);
    if (e.src)
        sources_report(f, e.src, e.nsrc);
    if (report && (*report = calloc(1, sizeof(**report)))) {
        (*report)->sources = e.src;
        (*report)->n = e.nsrc;
        e.src = NULL;
    }
    pr_sources_free(e.src, e.nsrc);
    return rc;
}
