/*
 * verify.c - pieces checked and written on threads of their own, so that
 * hashing overlaps the network (BASELINES.md: aria2c loses 40% by hashing
 * on its download thread).
 *
 * The caller hands over whole pieces (pr_verify_push); a thread takes
 * one, compares its SHA-256 with the manifest's and pwrites it at its
 * offset only when they match (and keeps them in a piece store when
 * asked to: pr_verify_keep), then queues the result and calls wake.
 * The caller takes the results, with their buffers, on its own thread
 * (pr_verify_take).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fetch.h"

struct pr_verify {
    pthread_t th[PR_VERIFY_MAX];
    int nth;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct pr_verify_job *todo;      /* ring of cap */
    size_t head;
    size_t ntodo;
    struct pr_verify_job *done;      /* cap of them */
    size_t ndone;
    size_t cap;
    int stop;
    /* read only while the threads run */
    int fd;
    uint32_t piece_size;
    const unsigned char (*hashes)[SHOAL_HASH_BYTES];
    void (*wake)(void *);
    void *wake_arg;
    struct shoal_store *keep;        /* set before the first push */
    _Atomic int keep_failed;
    struct shoal_err keep_err;       /* the first failure, under lock */
};

int pr_verify_default_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n = cpus > 1 ? (int)(cpus - 1) : 1;

    return n > PR_VERIFY_MAX ? PR_VERIFY_MAX : n;
}

/* Check j's bytes, and write them when they are right. */
static void check(struct pr_verify *v, struct pr_verify_job *j)
{
    unsigned char md[SHOAL_HASH_BYTES];
    uint64_t off = j->piece * (uint64_t)v->piece_size;
    size_t done = 0;

    shoal_sha256(j->buf, j->len, md);
    j->ok = memcmp(md, v->hashes[j->piece], SHOAL_HASH_BYTES) == 0;
    j->werr = 0;
    while (j->ok && done < j->len) {
        ssize_t w = pwrite(v->fd, j->buf + done, j->len - done,
                           (off_t)(off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            j->werr = w < 0 ? errno : EIO;
            break;
        }
        done += (size_t)w;
    }
    if (j->ok && !j->werr && v->keep && !atomic_load(&v->keep_failed)) {
        struct shoal_err e;

        shoal_err_clear(&e);
        if (shoal_store_put_checked(v->keep, v->hashes[j->piece], j->buf,
                                    j->len, &e) < 0 &&
            !atomic_exchange(&v->keep_failed, 1))
            v->keep_err = e;         /* read once the threads are done */
    }
}

static void *verify_main(void *arg)
{
    struct pr_verify *v = arg;

    pthread_mutex_lock(&v->lock);
    for (;;) {
        struct pr_verify_job j;

        while (v->ntodo == 0 && !v->stop)
            pthread_cond_wait(&v->cond, &v->lock);
        if (v->ntodo == 0)
            break;
        j = v->todo[v->head];
        v->head = (v->head + 1) % v->cap;
        v->ntodo--;
        pthread_mutex_unlock(&v->lock);
        check(v, &j);
        pthread_mutex_lock(&v->lock);
        v->done[v->ndone++] = j;
        if (v->wake)
            v->wake(v->wake_arg);
    }
    pthread_mutex_unlock(&v->lock);
    return NULL;
}

struct pr_verify *pr_verify_new(
    int fd, uint32_t piece_size,
    const unsigned char (*hashes)[SHOAL_HASH_BYTES], int threads, size_t cap,
    void (*wake)(void *), void *arg, struct shoal_err *err)
{
    struct pr_verify *v = calloc(1, sizeof(*v));

    if (!v || !(v->todo = calloc(cap, sizeof(*v->todo))) ||
        !(v->done = calloc(cap, sizeof(*v->done)))) {
        if (v)
            free(v->todo);
        free(v);
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        return NULL;
    }
    v->cap = cap;
    v->fd = fd;
    v->piece_size = piece_size;
    v->hashes = hashes;
    v->wake = wake;
    v->wake_arg = arg;
    if (threads < 1)
        threads = 1;
    if (threads > PR_VERIFY_MAX)
        threads = PR_VERIFY_MAX;
    if (pthread_mutex_init(&v->lock, NULL) != 0)
        goto fail;
    if (pthread_cond_init(&v->cond, NULL) != 0) {
        pthread_mutex_destroy(&v->lock);
        goto fail;
    }
    for (v->nth = 0; v->nth < threads; v->nth++)
        if (pthread_create(&v->th[v->nth], NULL, verify_main, v) != 0)
            break;
    if (v->nth > 0)
        return v;
    pthread_cond_destroy(&v->cond);
    pthread_mutex_destroy(&v->lock);
fail:
    free(v->todo);
    free(v->done);
    free(v);
    shoal_err_set(err, SHOAL_EIO, "cannot start a thread");
    return NULL;
}

void pr_verify_keep(struct pr_verify *v, struct shoal_store *store)
{
    pthread_mutex_lock(&v->lock);
    v->keep = store;
    pthread_mutex_unlock(&v->lock);
}

int pr_verify_keep_failed(struct pr_verify *v, struct shoal_err *err)
{
    if (!v || !atomic_load(&v->keep_failed))
        return 0;
    if (err)
        *err = v->keep_err;
    return 1;
}

void pr_verify_push(struct pr_verify *v, const struct pr_verify_job *j)
{
    pthread_mutex_lock(&v->lock);
    v->todo[(v->head + v->ntodo) % v->cap] = *j;
    v->ntodo++;
    pthread_cond_signal(&v->cond);
    pthread_mutex_unlock(&v->lock);
}

size_t pr_verify_take(struct pr_verify *v, struct pr_verify_job *out,
                      size_t max)
{
    size_t n;

    if (!v)
        return 0;
    pthread_mutex_lock(&v->lock);
    n = v->ndone < max ? v->ndone : max;
    memcpy(out, v->done + v->ndone - n, n * sizeof(*out));
    v->ndone -= n;
    pthread_mutex_unlock(&v->lock);
    return n;
}

void pr_verify_finish(struct pr_verify *v)
{
    int i;

    if (!v || v->stop)
        return;
    pthread_mutex_lock(&v->lock);
    v->stop = 1;
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
    for (i = 0; i < v->nth; i++)
        pthread_join(v->th[i], NULL);
}

void pr_verify_free(struct pr_verify *v)
{
    if (!v)
        return;
    pr_verify_finish(v);
    pthread_cond_destroy(&v->cond);
    pthread_mutex_destroy(&v->lock);
    free(v->todo);
    free(v->done);
    free(v);
}
