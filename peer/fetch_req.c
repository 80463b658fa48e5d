/*
 * fetch_req.c - one request of a download (fetch.c): a GET of /content
 * with a Range over a run of pieces from one source.  The bytes of each
 * piece go into a buffer of the pool as they arrive and, once whole, to
 * the hashing threads; a slot that needs a buffer when none is free is
 * paused until one comes back.  The answer is judged when it ends: a
 * refused session is renewed, a source that failed is dropped or, a file
 * broker, retried.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fetch_int.h"
#include "log.h"
#include "util.h"

/* --- callbacks ------------------------------------------------------------ */


static long slot_status(struct slot *s)
{
    if (!s->status &&
        curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status) !=
        CURLE_OK)
        s->status = 0;
    return s->status;
}

static size_t on_header(char *data, size_t size, size_t nitems, void *arg)
{
    struct slot *s = arg;
    size_t len = size * nitems;
    unsigned long long a;
    unsigned long long b;
    char line[256];

    s->last = shoal_mono();
    if (len >= sizeof(line) || len < 14 ||
        strncasecmp(data, "Content-Range:", 14) != 0)
        return len;
    memcpy(line, data, len);
    line[len] = '\0';
    if (sscanf(line + 14, " bytes %llu-%llu/", &a, &b) == 2) {
        s->range_start = a;
        s->range_end = b;
        s->range_seen = 1;
    }
    return len;
}

/* The first bytes of an answer: is it the range asked for? */
static int range_ok(struct slot *s)
{
    struct engine *e = s->e;
    uint64_t start = s->span[0] * (uint64_t)e->f->piece_size;
    uint64_t last = s->span[s->nspan - 1];
    uint64_t end = last * (uint64_t)e->f->piece_size + piece_len(e, last) - 1;

    if (s->status == 206)
        return s->range_seen && s->range_start == start &&
               s->range_end == end;
    return start == 0 && end == e->f->size - 1;     /* 200: the whole file */
}

/* The buffers a body part of len bytes needs that the slot lacks. */
static int buffers_needed(const struct slot *s, size_t len)
{
    const struct engine *e = s->e;
    uint64_t got = s->got;
    int held = s->buf != NULL;
    int cur = s->cur;
    int need = 0;

    while (len > 0 && cur < s->nspan) {
        uint64_t p = s->span[cur];
        uint64_t plen = piece_len(e, p);
        uint64_t take = len < plen - got ? len : plen - got;

        if (!e->pc[p].done && !held)
            need++;
        held = 1;
        len -= (size_t)take;
        got += take;
        if (got == plen) {
            cur++;
            got = 0;
            held = 0;
        }
    }
    return need;
}

/* The bytes of span[cur] are all in: hand them to the hashing threads
 * (or let them go when another copy won meanwhile). */
static void piece_arrived(struct slot *s)
{
    struct engine *e = s->e;
    uint64_t p = s->span[s->cur];

    e->pc[p].copies--;
    if (s->buf) {
        struct pr_verify_job j;

        memset(&j, 0, sizeof(j));
        j.piece = p;
        j.src = s->src;
        j.len = s->got;
        j.buf = s->buf;
        e->pc[p].hashing++;
        s->buf = NULL;
        fx_hashers_push(e, &j);
    } else {
        piece_check_free(e, p);
    }
    s->cur++;
    s->got = 0;
    s->counted = 0;
}

static size_t on_body(char *data, size_t size, size_t nitems, void *arg)
{
    struct slot *s = arg;
    struct engine *e = s->e;
    size_t len = size * nitems;
    size_t used = 0;

    if (slot_status(s) != 200 && s->status != 206) {
        pr_answer_keep(&s->answer, data, len);
        return len;
    }
    if (!s->started) {
        if (!range_ok(s)) {
            snprintf(s->fault, sizeof(s->fault), "answered another range "
                     "than the one asked for");
            return 0;
        }
        s->started = 1;
    }
    if (buffers_needed(s, len) > pool_avail(e)) {
        s->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    s->last = shoal_mono();
    e->src[s->src].received += len;
    while (used < len) {
        uint64_t p;
        uint32_t plen;
        size_t take;

        if (s->cur >= s->nspan) {
            snprintf(s->fault, sizeof(s->fault), "sent more than asked for");
            return 0;
        }
        p = s->span[s->cur];
        plen = piece_len(e, p);
        take = len - used;
        if (take > plen - s->got)
            take = plen - s->got;
        if (e->pc[p].done) {
            if (s->buf) {            /* another copy won meanwhile */
                pool_put(e, s->buf);
                s->buf = NULL;
                pr_progress_add(e->f->progress, -(int64_t)s->counted);
                s->counted = 0;
            }
        } else {
            if (!s->buf && !(s->buf = fx_pool_get(e))) {
                s->fatal = 1;       /* ENOMEM: e->fatal says so */
                return 0;
            }
            memcpy(s->buf + s->got, data + used, take);
            s->counted += (uint32_t)take;
            pr_progress_add(e->f->progress, (int64_t)take);
        }
        s->got += (uint32_t)take;
        used += take;
        if (s->got == plen)
            piece_arrived(s);
    }
    return len;
}

/* --- requests ------------------------------------------------------------- */

#define SET(opt, val) \
    do { if (curl_easy_setopt(s->easy, opt, val) != CURLE_OK) goto fail; } while (0)

/* Options of an easy handle that stay for the whole download. */
static int slot_init(struct engine *e, struct slot *s, struct shoal_err *err)
{
    long bufsize = e->f->piece_size < RECV_BUFFER ? (long)e->f->piece_size :
                   RECV_BUFFER;

    s->easy = curl_easy_init();
    if (!s->easy)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    SET(CURLOPT_PRIVATE, s);
    SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    SET(CURLOPT_CONNECTTIMEOUT, 15L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_HTTPGET, 1L);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, s);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, s);
    SET(CURLOPT_BUFFERSIZE, bufsize);
    return 0;
fail:
    return shoal_err_set(err, SHOAL_EIO, "cannot set up a transfer");
}

/* Start the request of slot s for span[0..nspan-1]. */
int fx_slot_start(struct engine *e, struct slot *s, struct shoal_err *err)
{
    const struct pr_fetch *f = e->f;
    uint64_t first = s->span[0];
    uint64_t last = s->span[s->nspan - 1];
    char range[64];
    int i;

    if (!s->easy && slot_init(e, s, err) < 0)
        return -1;
    s->cur = 0;
    s->got = 0;
    s->counted = 0;
    s->status = 0;
    s->range_seen = 0;
    s->started = 0;
    s->paused = 0;
    s->fatal = 0;
    s->fault[0] = '\0';
    pr_answer_reset(&s->answer);
    s->last = shoal_mono();
    snprintf(s->url, sizeof(s->url), "%s/v1/files/%s/content?version=%"
             PRIu64, e->src[s->src].url, f->file_id, f->version);
    snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64,
             first * (uint64_t)f->piece_size,
             last * (uint64_t)f->piece_size + piece_len(e, last) - 1);
    SET(CURLOPT_URL, s->url);
    SET(CURLOPT_HTTPHEADER, e->auth.cur);
    SET(CURLOPT_RANGE, range);
    s->gen = e->gen;
    if (curl_multi_add_handle(e->multi, s->easy) != CURLM_OK)
        goto fail;
    for (i = 0; i < s->nspan; i++)
        piece_take(e, s->span[i]);
    s->busy = 1;
    return 0;
fail:
    return shoal_err_set(err, SHOAL_EIO, "cannot set up a transfer");
}

#undef SET

/* End the request of s, finished or not: what it had not sent goes back
 * to the others. */
void fx_slot_end(struct engine *e, struct slot *s)
{
    int i;

    if (!s->busy)
        return;
    curl_multi_remove_handle(e->multi, s->easy);
    s->busy = 0;
    s->paused = 0;
    if (s->buf) {
        pool_put(e, s->buf);
        s->buf = NULL;
    }
    pr_progress_add(e->f->progress, -(int64_t)s->counted);
    s->counted = 0;
    for (i = s->cur; i < s->nspan; i++)
        piece_release(e, s->span[i]);
    s->cur = s->nspan;
}

/* --- answers -------------------------------------------------------------- */


/* The request headers with the current session.  -1 on ENOMEM. */
int fx_headers_make(struct engine *e, struct shoal_err *err)
{
    if (pr_auth_hdrs_renew(&e->auth, e->f->ctx->session.session_id, NULL,
                           err) < 0)
        return -1;
    e->gen++;
    e->done_since_login = 0;
    return 0;
}

/* An error answer (status >= 300) to the request of slot s, whose
 * piece at hand was at. */
static void slot_refused(struct engine *e, struct slot *s, long status,
                         uint64_t at)
{
    int si = s->src;
    struct pr_source *src = &e->src[si];
    struct shoal_err berr;
    struct shoal_err lerr;
    char why[200];

    pr_answer_error(&s->answer, status, &berr);
    snprintf(why, sizeof(why), "answered %ld %s: %.120s", status,
             shoal_code_name(berr.code), berr.msg);
    if (pr_auth_refused(&berr)) {
        if (s->gen != e->gen)
            return;                     /* sent with an older session */
        if (e->gen == 1 || e->done_since_login) {
            /* log in again, unless the last new session got nothing
             * done */
            shoal_log(SHOAL_LOG_DEBUG, NULL, "%s '%s' refused the session "
                      "of a piece transfer (%s), logging in again",
                      src_name(e, si), src->url, shoal_code_name(berr.code));
            shoal_err_clear(&lerr);
            if (pr_login(e->f->ctx, NULL, &lerr) < 0 ||
                fx_headers_make(e, &lerr) < 0)
                e->fatal = lerr;
            return;
        }
        if (src->kind == PR_SOURCE_BROKER)
            e->fatal = berr;
        else
            fx_source_drop(e, si, berr.code, "%s", why);
        return;
    }
    if (status >= 500 && status != 507) {
        fx_source_fail(e, si, at, berr.code, why);
        return;
    }
    if (berr.code == SHOAL_EINCOMPLETE) {
        fx_source_drop(e, si, SHOAL_EINCOMPLETE, "does not hold all of pieces "
                       "%" PRIu64 "-%" PRIu64 " (%s)", s->span[0],
                       s->span[s->nspan - 1], why);
        return;
    }
    if (src->kind == PR_SOURCE_BROKER) {
        e->fatal = berr;                /* the file is gone, or refused */
        return;
    }
    fx_source_drop(e, si, berr.code, "%s", why);
}

/* A request of slot s ended with result rc. */
void fx_slot_done(struct engine *e, struct slot *s, CURLcode rc)
{
    int si = s->src;
    uint64_t at = s->span[s->cur < s->nspan ? s->cur : 0];
    long status = 0;
    char why[200];

    if (curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status) !=
        CURLE_OK)
        status = 0;
    if (s->fatal) {
        fx_slot_end(e, s);
        return;                         /* e->fatal says why */
    }
    if (s->fault[0]) {
        snprintf(why, sizeof(why), "%s", s->fault);
        fx_slot_end(e, s);
        fx_source_drop(e, si, SHOAL_EPROTO, "%s", why);
        return;
    }
    if (rc != CURLE_OK) {
        snprintf(why, sizeof(why), "%s (piece %" PRIu64 ")",
                 curl_easy_strerror(rc), at);
        fx_slot_end(e, s);
        fx_source_fail(e, si, at, SHOAL_ENET, why);
        return;
    }
    if (status >= 200 && status <= 299) {
        if (s->cur == s->nspan) {
            e->run[si].fails = 0;
            fx_slot_end(e, s);
            return;
        }
        snprintf(why, sizeof(why), "sent less than asked for (piece %"
                 PRIu64 ")", at);
        fx_slot_end(e, s);
        fx_source_fail(e, si, at, SHOAL_EPROTO, why);
        return;
    }
    fx_slot_end(e, s);
    slot_refused(e, s, status, at);
}
