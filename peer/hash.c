/*
 * hash.c - the hashing pass over a local file: the SHA-256 of every piece,
 * read with pread on one thread per core (the calling thread is one of
 * them and draws the progress), each with one read buffer of at most
 * 1 MiB.  put runs it before it creates the file (the broker needs every
 * piece hash first); get runs it over an OUT it resumes.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "transfer.h"

#define HASH_CHUNK (1u << 20)
#define HASH_THREADS_MAX 4

struct hash_run {
    int fd;
    uint64_t size;
    uint32_t piece_size;
    uint64_t count;
    unsigned char (*hashes)[SHOAL_HASH_BYTES];
    atomic_uint_fast64_t next;       /* next piece to take */
    atomic_uint_fast64_t bytes;      /* bytes hashed */
    atomic_int failed;
    pthread_mutex_t lock;
    struct shoal_err err;            /* the first failure (under lock) */
};

static void hash_fail(struct hash_run *h, int errnum, uint64_t off)
{
    pthread_mutex_lock(&h->lock);
    if (!atomic_load(&h->failed)) {
        if (errnum)
            shoal_err_set(&h->err, SHOAL_EIO, "cannot read at offset %" PRIu64
                          ": %s", off, strerror(errnum));
        else
            shoal_err_set(&h->err, SHOAL_EIO, "file ends at offset %" PRIu64
                          ": it changed while being read", off);
        atomic_store(&h->failed, 1);
    }
    pthread_mutex_unlock(&h->lock);
}

/* Hash pieces until none is left.  progress is set on the calling
 * thread only (NULL on the others). */
static void hash_pieces(struct hash_run *h, unsigned char *buf, size_t cap,
                        struct pr_progress *progress)
{
    for (;;) {
        uint64_t i = atomic_fetch_add(&h->next, 1);
        struct shoal_sha256_ctx *c;
        uint64_t off;
        uint32_t len;
        uint32_t done = 0;

        if (i >= h->count || atomic_load(&h->failed))
            return;
        off = i * (uint64_t)h->piece_size;
        len = shoal_piece_len(h->size, h->piece_size, i);
        c = len > cap ? shoal_sha256_new() : NULL;
        if (len > cap && !c) {
            hash_fail(h, ENOMEM, off);
            return;
        }
        while (done < len) {
            size_t want = len - done < cap ? len - done : cap;
            ssize_t r = pread(h->fd, buf, want, (off_t)(off + done));

            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                shoal_sha256_free(c);
                hash_fail(h, r < 0 ? errno : 0, off + done);
                return;
            }
            if (c)
                shoal_sha256_update(c, buf, (size_t)r);
            else if ((size_t)r < want) {
                /* one-shot piece read short: finish it as parts */
                c = shoal_sha256_new();
                if (!c) {
                    hash_fail(h, ENOMEM, off);
                    return;
                }
                shoal_sha256_update(c, buf, (size_t)r);
            }
            else
                shoal_sha256(buf, (size_t)r, h->hashes[i]);
            done += (uint32_t)r;
        }
        if (c)
            shoal_sha256_final(c, h->hashes[i]);
        atomic_fetch_add(&h->bytes, len);
        if (progress)
            pr_progress_set(progress, atomic_load(&h->bytes));
    }
}

struct hash_worker {
    pthread_t tid;
    struct hash_run *h;
    unsigned char *buf;
    size_t cap;
};

static void *hash_thread(void *arg)
{
    struct hash_worker *w = arg;

    hash_pieces(w->h, w->buf, w->cap, NULL);
    return NULL;
}

int pr_hash_file(int fd, uint64_t size, uint32_t piece_size,
                 unsigned char (*hashes)[SHOAL_HASH_BYTES],
                 struct pr_progress *progress, struct shoal_err *err)
{
    struct hash_worker workers[HASH_THREADS_MAX];
    struct hash_run h;
    size_t cap = piece_size < HASH_CHUNK ? piece_size : HASH_CHUNK;
    unsigned char *buf;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nthreads;
    int started = 0;
    int i;

    memset(&h, 0, sizeof(h));
    h.fd = fd;
    h.size = size;
    h.piece_size = piece_size;
    h.count = shoal_piece_count(size, piece_size);
    h.hashes = hashes;
    atomic_init(&h.next, 0);
    atomic_init(&h.bytes, 0);
    atomic_init(&h.failed, 0);
    if (h.count == 0)
        return 0;
    pthread_mutex_init(&h.lock, NULL);
    nthreads = ncpu < 1 ? 1 : ncpu > HASH_THREADS_MAX ? HASH_THREADS_MAX :
               (int)ncpu;
    if ((uint64_t)nthreads > h.count)
        nthreads = (int)h.count;
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    buf = malloc(cap);
    if (!buf) {
        pthread_mutex_destroy(&h.lock);
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    }
    for (i = 0; i < nthreads - 1; i++) {
        workers[i].h = &h;
        workers[i].cap = cap;
        workers[i].buf = malloc(cap);
        if (!workers[i].buf)
            break;
        if (pthread_create(&workers[i].tid, NULL, hash_thread,
                           &workers[i]) != 0) {
            free(workers[i].buf);
            break;
        }
        started++;
    }
    hash_pieces(&h, buf, cap, progress);
    for (i = 0; i < started; i++) {
        pthread_join(workers[i].tid, NULL);
        free(workers[i].buf);
    }
    free(buf);
    pthread_mutex_destroy(&h.lock);
    if (atomic_load(&h.failed)) {
        if (err)
            *err = h.err;
        return -1;
    }
    return 0;
}
