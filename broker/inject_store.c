/*
 * inject_store.c - storing the pieces of an injection on other threads,
 * so that storing (hash, pin, temporary file, fsync, rename) does not
 * hold up the body on its way to the caller.
 *
 * The connection's thread copies the body into piece buffers; each whole
 * piece goes through a bounded queue to up to STORERS threads (started as
 * the queue needs them), which hash it, pin it (br_inject_pin) and store
 * it, several fsyncs at once.  When every buffer is taken the connection's
 * thread waits: a slow disk slows the origin down, and memory stays at
 * BUFS pieces per injection whatever the object's size.  The end of the
 * body waits for every piece to be stored before the caller commits the
 * version and signs it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inject.h"
#include "log.h"

#define PIECE SHOAL_PIECE_DEFAULT
#define STORERS 8                     /* threads per injection, at most */
#define BUFS 16                       /* pieces in memory per injection (8 MiB) */
#define WAIT_MAX 600                  /* seconds the body waits for the store */

struct job {
    unsigned char *buf;
    size_t len;
    uint64_t index;
};

struct br_inject_store {
    struct br_app *app;
    char id[37];                      /* the injection's, for its pins */
    pthread_mutex_t lock;
    pthread_cond_t work;              /* a job, the end, or an abort */
    pthread_cond_t room;              /* a buffer back, a failure */
    pthread_t threads[STORERS];
    int nthreads;
    unsigned char *bufs[BUFS];        /* every buffer allocated */
    int nbufs;
    unsigned char *spare[BUFS];       /* those free */
    int nspare;
    struct job q[BUFS];               /* whole pieces waiting for a thread */
    int qhead, qlen;
    int busy;                         /* pieces a thread is storing */
    int closing;                      /* no more pieces come */
    int abort;                        /* drop what waits, end the threads */
    int failed;
    struct shoal_err ferr;            /* the first failure */
    int pinned;                       /* a pin may be held */
    unsigned char (*hashes)[32];      /* by piece index */
    uint64_t cap;
    uint64_t pushed, stored;
    uint64_t size;                    /* bytes handed over */
    /* the connection thread's own: the piece being filled */
    unsigned char *cur;
    size_t clen;
};

struct br_inject_store *br_inject_store_new(struct br_app *app,
                                            const char *injection_id,
                                            struct shoal_err *err)
{
    struct br_inject_store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        return NULL;
    }
    s->app = app;
    snprintf(s->id, sizeof s->id, "%s", injection_id);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->room, NULL);
    return s;
}

/* Hash, pin and store one piece.  0, or -1 with err. */
static int store_one(struct br_inject_store *s, const struct job *j,
                     unsigned char hash[32], struct shoal_err *err)
{
    shoal_sha256(j->buf, j->len, hash);
    if (br_inject_pin(s->app, s->id, hash, (uint32_t)j->len, err) != 0)
        return -1;
    return shoal_store_put_checked(s->app->store, hash, j->buf, j->len,
                                   err) < 0 ? -1 : 0;
}

static void *storer_main(void *arg)
{
    struct br_inject_store *s = arg;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->qlen == 0 && !s->closing && !s->abort)
            pthread_cond_wait(&s->work, &s->lock);
        if (s->abort || s->qlen == 0)
            break;
        struct job j = s->q[s->qhead];
        s->qhead = (s->qhead + 1) % BUFS;
        s->qlen--;
        s->busy++;
        s->pinned = 1;
        pthread_mutex_unlock(&s->lock);

        unsigned char hash[32];
        struct shoal_err e;
        shoal_err_clear(&e);
        int rc = store_one(s, &j, hash, &e);

        pthread_mutex_lock(&s->lock);
        if (rc == 0) {
            memcpy(s->hashes[j.index], hash, 32);
            s->stored++;
        } else if (!s->failed) {
            s->failed = 1;
            s->ferr = e;
            s->abort = 1;
            pthread_cond_broadcast(&s->work);
        }
        s->spare[s->nspare++] = j.buf;
        s->busy--;
        pthread_cond_broadcast(&s->room);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Wait on room (lock held) until deadline: -1 with err when it passed. */
static int wait_room(struct br_inject_store *s, const struct timespec *deadline,
                     struct shoal_err *err)
{
    int rc = pthread_cond_timedwait(&s->room, &s->lock, deadline);
    if (rc == ETIMEDOUT)
        return shoal_err_set(err, SHOAL_EIO, "the piece store did not keep up"
                             " for %d s", WAIT_MAX);
    return 0;
}

static void deadline_in(struct timespec *ts, int secs)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += secs;
}

/* A buffer for the next piece into s->cur, waiting for one when all are
 * taken (lock held).  -1 with err. */
static int take_buffer(struct br_inject_store *s, struct shoal_err *err)
{
    struct timespec deadline;
    deadline_in(&deadline, WAIT_MAX);
    for (;;) {
        if (s->failed) {
            if (err)
                *err = s->ferr;
            return -1;
        }
        if (s->nspare > 0) {
            s->cur = s->spare[--s->nspare];
            return 0;
        }
        if (s->nbufs < BUFS) {
            void *b;                      /* aligned: stored without a copy */
            if (posix_memalign(&b, 4096, PIECE) != 0)
                return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
            s->cur = b;
            s->bufs[s->nbufs++] = s->cur;
            return 0;
        }
        if (wait_room(s, &deadline, err) != 0)
            return -1;
    }
}

/* Hand s->cur (s->clen bytes) to the threads (lock held).  -1 with err. */
static int push(struct br_inject_store *s, struct shoal_err *err)
{
    if (s->failed) {
        if (err)
            *err = s->ferr;
        return -1;
    }
    if (s->pushed == s->cap) {
        uint64_t cap = s->cap ? 2 * s->cap : 64;
        unsigned char (*h)[32] = realloc(s->hashes, cap * 32);
        if (h == NULL)
            return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        s->hashes = h;
        s->cap = cap;
    }
    s->q[(s->qhead + s->qlen) % BUFS] = (struct job){ s->cur, s->clen, s->pushed };
    s->qlen++;
    s->pushed++;
    s->size += s->clen;
    s->cur = NULL;
    s->clen = 0;
    if (s->nthreads < STORERS && s->busy + s->qlen > s->nthreads) {
        if (pthread_create(&s->threads[s->nthreads], NULL, storer_main, s) == 0)
            s->nthreads++;
        else if (s->nthreads == 0)
            return shoal_err_set(err, SHOAL_EINTERNAL,
                                 "cannot start a storing thread");
    }
    pthread_cond_signal(&s->work);
    return 0;
}

int br_inject_store_feed(struct br_inject_store *s, const char *data, size_t n,
                         struct shoal_err *err)
{
    while (n > 0) {
        if (s->cur == NULL) {
            pthread_mutex_lock(&s->lock);
            int rc = take_buffer(s, err);
            pthread_mutex_unlock(&s->lock);
            if (rc != 0)
                return -1;
        }
        size_t k = PIECE - s->clen < n ? PIECE - s->clen : n;
        memcpy(s->cur + s->clen, data, k);
        s->clen += k;
        data += k;
        n -= k;
        if (s->clen == PIECE) {
            pthread_mutex_lock(&s->lock);
            int rc = push(s, err);
            pthread_mutex_unlock(&s->lock);
            if (rc != 0)
                return -1;
        }
    }
    return 0;
}

/* End the threads (lock not held). */
static void join_all(struct br_inject_store *s)
{
    for (int i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    s->nthreads = 0;
}

int br_inject_store_finish(struct br_inject_store *s,
                           const unsigned char (**hashes)[32], uint64_t *n,
                           uint64_t *size, struct shoal_err *err)
{
    struct timespec deadline;
    int rc = 0;

    deadline_in(&deadline, WAIT_MAX);
    pthread_mutex_lock(&s->lock);
    if (s->cur != NULL && s->clen > 0)
        rc = push(s, err);
    s->closing = 1;
    pthread_cond_broadcast(&s->work);
    while (rc == 0 && !s->failed && s->stored < s->pushed)
        rc = wait_room(s, &deadline, err);
    if (rc == 0 && s->failed) {
        if (err)
            *err = s->ferr;
        rc = -1;
    }
    if (rc != 0) {
        s->abort = 1;
        pthread_cond_broadcast(&s->work);
    }
    pthread_mutex_unlock(&s->lock);
    join_all(s);
    if (rc != 0)
        return -1;
    *hashes = (const unsigned char (*)[32])s->hashes;
    *n = s->pushed;
    *size = s->size;
    return 0;
}

int br_inject_store_stop(struct br_inject_store *s)
{
    if (s == NULL)
        return 0;
    pthread_mutex_lock(&s->lock);
    s->abort = 1;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->lock);
    join_all(s);
    return s->pinned;
}

void br_inject_store_free(struct br_inject_store *s)
{
    if (s == NULL)
        return;
    br_inject_store_stop(s);
    for (int i = 0; i < s->nbufs; i++)
        free(s->bufs[i]);
    free(s->hashes);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->room);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
