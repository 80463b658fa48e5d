/* Unit tests of api/store.c: the content-addressed piece store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "store.h"
#include "util.h"

#define KiB 1024u

/* Each test gets a fresh folder under this one. */
static char top[64];
static char dir[256];
static int mounted;
static struct rlimit fsize_saved;
static int fsize_changed;

static int group_setup(void **state)
{
    (void)state;
    snprintf(top, sizeof(top), "/tmp/shoal-test-store-XXXXXX");
    return mkdtemp(top) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
    return system(cmd) == 0 ? 0 : -1;
}

static int setup(void **state)
{
    static int seq;

    (void)state;
    snprintf(dir, sizeof(dir), "%s/s%d", top, ++seq);
    return 0;
}

/* Undo what a test may have left even when it failed half way. */
static int teardown(void **state)
{
    (void)state;
    if (mounted) {
        umount2(dir, MNT_DETACH);
        mounted = 0;
    }
    if (fsize_changed) {
        setrlimit(RLIMIT_FSIZE, &fsize_saved);
        fsize_changed = 0;
    }
    return 0;
}

/* Deterministic bytes, different for each seed. */
static unsigned char *make_data(size_t len, unsigned seed)
{
    unsigned char *d = malloc(len ? len : 1);
    uint32_t x = seed * 2654435761u + 1;
    size_t i;

    assert_non_null(d);
    for (i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        d[i] = (unsigned char)x;
    }
    return d;
}

/* Number of entries below path (folders not counted), recursively. */
static int count_files(const char *path)
{
    char sub[1024];
    struct dirent *de;
    struct stat st;
    int n = 0;
    DIR *d = opendir(path);

    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            n += count_files(sub);
        else
            n++;
    }
    closedir(d);
    return n;
}

static int count_in(const char *what)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, what);
    return count_files(path);
}

/* The stored piece's bytes equal data. */
static void assert_piece(struct shoal_store *s, const unsigned char *hash,
                         const unsigned char *data, size_t len)
{
    struct shoal_err err;
    unsigned char *back = malloc(len + 1);
    uint64_t size = 99;
    int fd = -1;
    ssize_t n;

    assert_non_null(back);
    assert_int_equal(shoal_store_open_piece(s, hash, &fd, &size, &err), 0);
    assert_true(fd >= 0);
    assert_true(size == len);
    assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    n = pread(fd, back, len + 1, 0);
    assert_int_equal(n, (ssize_t)len);
    if (len > 0)
        assert_memory_equal(back, data, len);
    close(fd);
    free(back);
}

static void test_put_has_open(void **state)
{
    struct shoal_err err;
    struct shoal_store *s;
    unsigned char hash[SHOAL_HASH_BYTES];
    char hex[2 * SHOAL_HASH_BYTES + 1];
    char path[SHOAL_STORE_PATH_MAX];
    char want[SHOAL_STORE_PATH_MAX];
    unsigned char *data = make_data(100000, 1);
    struct stat st;

    (void)state;
    s = shoal_store_open(dir, &err);
    assert_non_null(s);
    shoal_sha256(data, 100000, hash);
    shoal_hex_encode(hash, SHOAL_HASH_BYTES, hex);
    assert_int_equal(shoal_store_has(s, hash), 0);
    assert_int_equal(shoal_store_put(s, hash, data, 100000, &err), 1);
    assert_int_equal(shoal_store_has(s, hash), 1);
    assert_piece(s, hash, data, 100000);

    /* The documented layout, mode 0600, folders 0700. */
    shoal_store_path(s, hash, path);
    snprintf(want, sizeof(want), "%s/pieces/%.2s/%s", dir, hex, hex);
    assert_string_equal(path, want);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_true(st.st_size == 100000);
    snprintf(want, sizeof(want), "%s/pieces", dir);
    assert_int_equal(stat(want, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(count_in("pieces"), 1);
    assert_int_equal(count_in("tmp"), 0);
    shoal_store_close(s);

    /* Still there when the store is opened again. */
    s = shoal_store_open(dir, &err);
    assert_non_null(s);
    assert_int_equal(shoal_store_has(s, hash), 1);
    assert_piece(s, hash, data, 100000);
    shoal_store_close(s);
    free(data);
}

static void test_parts_and_empty(void **state)
{
    struct shoal_err err;
    struct shoal_store *s = shoal_store_open(dir, &err);
    struct shoal_piece_writer *w;
    unsigned char hash[SHOAL_HASH_BYTES];
    unsigned char *data = make_data(SHOAL_PIECE_DEFAULT + 3, 2);
    size_t off, step;

    (void)state;
    assert_non_null(s);
    shoal_sha256(data, SHOAL_PIECE_DEFAULT + 3, hash);
    w = shoal_store_begin(s, hash, SHOAL_PIECE_DEFAULT + 3, &err);
    assert_non_null(w);
    assert_int_equal(count_in("tmp"), 1);     /* written aside */
    assert_int_equal(shoal_store_has(s, hash), 0);
    for (off = 0, step = 1; off < SHOAL_PIECE_DEFAULT + 3; off += step) {
        step = step * 2 + 1;
        if (step > SHOAL_PIECE_DEFAULT + 3 - off)
            step = SHOAL_PIECE_DEFAULT + 3 - off;
        assert_int_equal(shoal_piece_write(w, data + off, step, &err), 0);
        assert_int_equal(shoal_piece_write(w, data, 0, &err), 0);
    }
    assert_int_equal(shoal_store_has(s, hash), 0);  /* not before commit */
    assert_int_equal(shoal_piece_commit(w, &err), 1);
    assert_piece(s, hash, data, SHOAL_PIECE_DEFAULT + 3);
    assert_int_equal(count_in("tmp"), 0);

    /* The empty piece. */
    shoal_sha256("", 0, hash);
    assert_int_equal(shoal_store_put(s, hash, "", 0, &err), 1);
    assert_piece(s, hash, NULL, 0);
    assert_int_equal(shoal_store_put(s, hash, "", 0, &err), 0);
    shoal_store_close(s);
    free(data);
}

/* Pieces around the sizes where writing switches to O_DIRECT (64 KiB),
 * fills its 128 KiB stage, or ends on a partial block, written in parts
 * of many sizes and whole, from page-aligned memory (written without a
 * copy) and from unaligned memory (copied to the stage): every byte
 * lands. */
static void test_direct_sizes(void **state)
{
    static const size_t sizes[] = {
        64 * KiB - 1, 64 * KiB, 64 * KiB + 1, 128 * KiB, 128 * KiB + 4095,
        128 * KiB + 4096, 256 * KiB - 1, 512 * KiB, 1024 * KiB + 5,
    };
    struct shoal_err err;
    struct shoal_store *s = shoal_store_open(dir, &err);
    unsigned i;

    (void)state;
    assert_non_null(s);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t len = sizes[i];
        unsigned char *data = make_data(len + 1, 40 + i);
        unsigned char hash[SHOAL_HASH_BYTES];
        unsigned char *src = data + (i & 1);   /* unaligned every other */
        void *aligned = NULL;
        size_t off, step;

        if (i % 2 == 0) {                      /* page-aligned the others */
            assert_int_equal(posix_memalign(&aligned, 4096, len + 1), 0);
            memcpy(aligned, data, len + 1);
            src = aligned;
        }

        shoal_sha256(src, len, hash);
        struct shoal_piece_writer *w = shoal_store_begin(s, hash, len, &err);
        assert_non_null(w);
        for (off = 0, step = 4093; off < len; off += step) {
            step = (step * 3) % (200 * KiB) + 1;
            if (step > len - off)
                step = len - off;
            assert_int_equal(shoal_piece_write(w, src + off, step, &err), 0);
        }
        assert_int_equal(shoal_piece_commit(w, &err), 1);
        assert_piece(s, hash, src, len);
        assert_int_equal(shoal_store_remove(s, hash, &err), 0);
        /* whole, in one call */
        assert_int_equal(shoal_store_put(s, hash, src, len, &err), 1);
        assert_piece(s, hash, src, len);
        free(aligned);
        free(data);
    }
    assert_int_equal(count_in("tmp"), 0);
    shoal_store_close(s);
}

static void test_already_stored(void **state)
{
    struct shoal_err err;
    struct shoal_store *s = shoal_store_open(dir, &err);
    struct shoal_piece_writer *w;
    unsigned char hash[SHOAL_HASH_BYTES];
    unsigned char *data = make_data(5000, 3);
    unsigned char *bad = make_data(5000, 4);
    struct stat st1, st2;
    char path[SHOAL_STORE_PATH_MAX];

    (void)state;
    assert_non_null(s);
    shoal_sha256(data, 5000, hash);
    assert_int_equal(shoal_store_put(s, hash, data, 5000, &err), 1);
    shoal_store_path(s, hash, path);
    assert_int_equal(stat(path, &st1), 0);
    assert_int_equal(shoal_store_put(s, hash, data, 5000, &err), 0);
    assert_int_equal(stat(path, &st2), 0);
    assert_true(st1.st_ino == st2.st_ino);     /* left in place */

    /* Sent again in parts: nothing is written aside, 0 at the end. */
    w = shoal_store_begin(s, hash, 5000, &err);
    assert_non_null(w);
    assert_int_equal(count_in("tmp"), 0);
    assert_int_equal(shoal_piece_write(w, data, 2000, &err), 0);
    assert_int_equal(shoal_piece_write(w, data + 2000, 3000, &err), 0);
    assert_int_equal(shoal_piece_commit(w, &err), 0);

    /* Still verified: wrong bytes for a stored piece are a 422. */
    w = shoal_store_begin(s, hash, 5000, &err);
    assert_non_null(w);
    assert_int_equal(shoal_piece_write(w, bad, 5000, &err), 0);
    assert_int_equal(shoal_piece_commit(w, &err), -1);
    assert_int_equal(err.code, SHOAL_EUNPROCESSABLE);
    assert_piece(s, hash, data, 5000);
    /* ... and too many bytes a 413. */
    w = shoal_store_begin(s, hash, 5000, &err);
    assert_non_null(w);
    assert_int_equal(shoal_piece_write(w, data, 5000, &err), 0);
    assert_int_equal(shoal_piece_write(w, data, 1, &err), -1);
    assert_int_equal(err.code, SHOAL_ETOOLARGE);
    shoal_piece_abort(w);
    assert_int_equal(count_in("pieces"), 1);
    shoal_store_close(s);
    free(bad);
    free(data);
}

static void test_wrong_hash(void **state)
{
    struct shoal_err err;
    struct shoal_store *s = shoal_store_open(dir, &err);
    struct shoal_piece_writer *w;
    unsigned char hash[SHOAL_HASH_BYTES];
    unsigned char *data = make_data(70000, 5);

    (void)state;
    assert_non_null(s);
    shoal_sha256(data, 70000, hash);
    data[69999] ^= 1;                           /* one bit off */
    assert_int_equal(shoal_store_put(s, hash, data, 70000, &err), -1);
    assert_int_equal(err.code, SHOAL_EUNPROCESSABLE);
    assert_int_equal(err.status, 422);
    assert_int_equal(shoal_store_has(s, hash), 0);
    assert_int_equal(count_in("pieces"), 0);
    assert_int_equal(count_in("tmp"), 0);

    /* Too short: 422 as well, nothing kept. */
    data[69999] ^= 1;
    w = shoal_store_begin(s, hash, 70000, &err);
    assert_non_null(w);
    assert_int_equal(shoal_piece_write(w, data, 69999, &err), 0);
    assert_int_equal(shoal_piece_commit(w, &err), -1);
    assert_int_equal(err.code, SHOAL_EUNPROCESSABLE);
    assert_non_null(strstr(err.msg, "69999 bytes, not 70000"));
    assert_int_equal(count_in("pieces"), 0);
    assert_int_equal(count_in("tmp"), 0);

    /* Aborted half way: nothing kept. */
    w = shoal_store_begin(s, hash, 70000, &err);
    assert_non_null(w);
    assert_int_equal(shoal_piece_write(w, data, 1000, &err), 0);
    shoal_piece_abort(w);
    shoal_piece_abort(NULL);
    assert_int_equal(count_in("pieces"), 0);
    assert_int_equal(count_in("tmp"), 0);
    shoal_store_close(s);
    free(data);
}

static void test_too_long(void **state)
{
    struct shoal_err err;
    struct shoal_store *s = shoal_store_open(dir, &err);
    struct shoal_piece_writer *w;
    unsigned char hash[SHOAL_HASH_BYTES];
    unsigned char *data = make_data(100, 6);

    (void)state;
    assert_non_null(s);
    shoal_sha256(data, 100, hash);
    w = shoal_store_begin(s, hash, 100, &err);
    assert_non_null(w);
    assert_int_equal(shoal_piece_write(w, data, 60, &err), 0);
    assert_int_equal(shoal_piece_write(w, data + 60, 41, &err), -1);
    assert_int_equal(err.code, SHOAL_ETOOLARGE);
    assert_int_equal(err.status, 413);
    assert_int_equal(count_in("tmp"), 0);      /* removed at once */
    /* The writer is dead: more writes and the commit fail the same way. */
    shoal_err_clear(&err);
    assert_int_equal(shoal_piece_write(w, data + 60, 40, &err), -1);
    assert_int_equal(err.code, SHOAL_ETOOLARGE);
    shoal_err_clear(&err);
    assert_int_equal(shoal_piece_commit(w, &err), -1);
    assert_int_equal(err.code, SHOAL_ETOOLARGE);
    assert_int_equal(shoal_store_has(s, hash), 0);
    assert_int_equal(count_in("pieces"), 0);
    assert_int_equal(count_in("tmp"), 0);
    shoal_store_close(s);
    free(data);
}

static void test_remove_and_missing(void **state)
{
    struct shoal_err err;
    struct shoal_store *s = shoal_store_open(dir, &err);
    unsigned char hash[SHOAL_HASH_BYTES];
    uint64_t size = 5;
    int fd = 5;

    (void)state;
    assert_non_null(s);
    shoal_sha256("x", 1, hash);
    assert_int_equal(shoal_store_open_piece(s, hash, &fd, &size, &err), -1);
    assert_int_equal(err.code, SHOAL_ENOTFOUND);
    assert_int_equal(fd, -1);
    assert_int_equal(shoal_store_remove(s, hash, &err), 0);
    assert_int_equal(shoal_store_put(s, hash, "x", 1, &err), 1);
    assert_int_equal(shoal_store_remove(s, hash, &err), 0);
    assert_int_equal(shoal_store_has(s, hash), 0);
    assert_int_equal(count_in("pieces"), 0);
    assert_int_equal(shoal_store_put(s, hash, "x", 1, &err), 1);
    shoal_store_close(s);
    shoal_store_close(NULL);
}

static void test_open_errors(void **state)
{
    struct shoal_err err;
    char path[512];
    char *longdir;

    (void)state;
    assert_null(shoal_store_open("", &err));
    longdir = malloc(SHOAL_STORE_PATH_MAX);
    assert_non_null(longdir);
    memset(longdir, 'a', SHOAL_STORE_PATH_MAX - 1);
    longdir[0] = '/';
    longdir[SHOAL_STORE_PATH_MAX - 1] = '\0';
    assert_null(shoal_store_open(longdir, &err));
    free(longdir);
    /* A file where the folder should be. */
    assert_int_equal(shoal_mkdir_p(dir, 0700, NULL), 0);
    snprintf(path, sizeof(path), "%s/pieces", dir);
    assert_int_equal(shoal_file_write_atomic(path, "x", 1, 0600, NULL), 0);
    assert_null(shoal_store_open(dir, &err));
    assert_int_equal(err.code, SHOAL_EIO);
}

static void test_leftover_tmp(void **state)
{
    struct shoal_err err;
    struct shoal_store *s, *s2;
    struct shoal_piece_writer *w;
    unsigned char hash[SHOAL_HASH_BYTES];
    unsigned char *data = make_data(3000, 7);
    char path[512];
    int fd;

    (void)state;
    s = shoal_store_open(dir, &err);
    assert_non_null(s);
    shoal_store_close(s);
    /* What a crash leaves: half-written temporary files. */
    snprintf(path, sizeof(path), "%s/tmp/%s", dir,
             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.a1B2c3");
    assert_int_equal(shoal_file_write_atomic(path, "half", 4, 0600, NULL), 0);
    snprintf(path, sizeof(path), "%s/tmp/junk", dir);
    assert_int_equal(shoal_file_write_atomic(path, "", 0, 0600, NULL), 0);
    /* Even one whose writer kept a lock but died: the lock died with it.
     * (Here: locked, then closed.) */
    snprintf(path, sizeof(path), "%s/tmp/locked-then-closed", dir);
    fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    close(fd);
    assert_int_equal(count_in("tmp"), 3);
    s = shoal_store_open(dir, &err);
    assert_non_null(s);
    assert_int_equal(count_in("tmp"), 0);

    /* A live writer's temporary file survives another open of the store. */
    shoal_sha256(data, 3000, hash);
    w = shoal_store_begin(s, hash, 3000, &err);
    assert_non_null(w);
    assert_int_equal(shoal_piece_write(w, data, 1000, &err), 0);
    s2 = shoal_store_open(dir, &err);
    assert_non_null(s2);
    assert_int_equal(count_in("tmp"), 1);
    assert_int_equal(shoal_piece_write(w, data + 1000, 2000, &err), 0);
    assert_int_equal(shoal_piece_commit(w, &err), 1);
    assert_int_equal(shoal_store_has(s2, hash), 1);
    assert_piece(s2, hash, data, 3000);
    shoal_store_close(s2);
    shoal_store_close(s);
    free(data);
}

/* --- several threads ---------------------------------------------------- */

#define THREADS 4

struct job {
    struct shoal_store *s;
    pthread_barrier_t *go;
    const unsigned char *data;
    size_t len;
    const unsigned char *hash;
    int rc;
    enum shoal_code code;
};

/* Write the piece in 8 KiB parts, yielding between them so that the
 * writers interleave. */
static void *writer_thread(void *arg)
{
    struct job *j = arg;
    struct shoal_err err;
    struct shoal_piece_writer *w;
    size_t off;

    shoal_err_clear(&err);
    pthread_barrier_wait(j->go);
    w = shoal_store_begin(j->s, j->hash, j->len, &err);
    j->rc = -1;
    if (w != NULL) {
        for (off = 0; off < j->len; off += 8 * KiB) {
            size_t n = j->len - off < 8 * KiB ? j->len - off : 8 * KiB;

            if (shoal_piece_write(w, j->data + off, n, &err) != 0) {
                shoal_piece_abort(w);
                w = NULL;
                break;
            }
            sched_yield();
        }
        if (w != NULL)
            j->rc = shoal_piece_commit(w, &err);
    }
    j->code = err.code;
    return NULL;
}

static void test_concurrent_same_piece(void **state)
{
    struct shoal_err err;
    struct shoal_store *s = shoal_store_open(dir, &err);
    pthread_barrier_t go;
    pthread_t th[THREADS];
    struct job jobs[THREADS];
    unsigned char hash[SHOAL_HASH_BYTES];
    unsigned char *data;
    int round, i, fresh;

    (void)state;
    assert_non_null(s);
    for (round = 0; round < 10; round++) {
        data = make_data(SHOAL_PIECE_DEFAULT, 100 + (unsigned)round);
        shoal_sha256(data, SHOAL_PIECE_DEFAULT, hash);
        assert_int_equal(pthread_barrier_init(&go, NULL, THREADS), 0);
        for (i = 0; i < THREADS; i++) {
            jobs[i] = (struct job){s, &go, data, SHOAL_PIECE_DEFAULT, hash,
                                   -2, SHOAL_OK};
            assert_int_equal(pthread_create(&th[i], NULL, writer_thread,
                                            &jobs[i]), 0);
        }
        for (i = 0; i < THREADS; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        /* All succeed; exactly one stored it. */
        fresh = 0;
        for (i = 0; i < THREADS; i++) {
            if (jobs[i].rc < 0)
                fail_msg("writer %d failed with code %d", i, jobs[i].code);
            fresh += jobs[i].rc;
        }
        assert_int_equal(fresh, 1);
        assert_piece(s, hash, data, SHOAL_PIECE_DEFAULT);
        free(data);
    }
    assert_int_equal(count_in("pieces"), 10);
    assert_int_equal(count_in("tmp"), 0);
    shoal_store_close(s);
}

struct many {
    struct shoal_store *s;
    unsigned first;
    int failures;
};

/* 64 different small pieces, many sharing their pieces/ab folder with
 * pieces of other threads: pieces/ab is created concurrently. */
static void *many_thread(void *arg)
{
    struct many *m = arg;
    struct shoal_err err;
    unsigned char hash[SHOAL_HASH_BYTES];
    unsigned k;

    for (k = 0; k < 64; k++) {
        unsigned char *d = make_data(1000 + k, m->first + k);

        shoal_sha256(d, 1000 + k, hash);
        if (shoal_store_put(m->s, hash, d, 1000 + k, &err) != 1)
            m->failures++;
        free(d);
    }
    return NULL;
}

static void test_concurrent_many_pieces(void **state)
{
    struct shoal_err err;
    struct shoal_store *s = shoal_store_open(dir, &err);
    pthread_t th[THREADS];
    struct many m[THREADS];
    unsigned char hash[SHOAL_HASH_BYTES];
    unsigned k;
    int i;

    (void)state;
    assert_non_null(s);
    for (i = 0; i < THREADS; i++) {
        m[i] = (struct many){s, 1000u * (unsigned)(i + 1), 0};
        assert_int_equal(pthread_create(&th[i], NULL, many_thread, &m[i]), 0);
    }
    for (i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (i = 0; i < THREADS; i++) {
        assert_int_equal(m[i].failures, 0);
        for (k = 0; k < 64; k++) {
            unsigned char *d = make_data(1000 + k, m[i].first + k);

            shoal_sha256(d, 1000 + k, hash);
            assert_piece(s, hash, d, 1000 + k);
            free(d);
        }
    }
    assert_int_equal(count_in("pieces"), THREADS * 64);
    assert_int_equal(count_in("tmp"), 0);
    shoal_store_close(s);
}

/* --- a full disk --------------------------------------------------------- */

/* A 1 MiB tmpfs: the second 600 KiB piece does not fit. */
static void test_full_tmpfs(void **state)
{
    struct shoal_err err;
    struct shoal_store *s;
    unsigned char ha[SHOAL_HASH_BYTES], hb[SHOAL_HASH_BYTES];
    unsigned char *a = make_data(600 * KiB, 8);
    unsigned char *b = make_data(600 * KiB, 9);

    (void)state;
    assert_int_equal(shoal_mkdir_p(dir, 0700, NULL), 0);
    if (mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700") != 0) {
        print_message("cannot mount a tmpfs (%s): the RLIMIT_FSIZE test "
                      "covers full disks\n", strerror(errno));
        free(a);
        free(b);
        skip();
    }
    mounted = 1;
    s = shoal_store_open(dir, &err);
    assert_non_null(s);
    shoal_sha256(a, 600 * KiB, ha);
    shoal_sha256(b, 600 * KiB, hb);
    assert_int_equal(shoal_store_put(s, ha, a, 600 * KiB, &err), 1);
    shoal_err_clear(&err);
    assert_int_equal(shoal_store_put(s, hb, b, 600 * KiB, &err), -1);
    assert_int_equal(err.code, SHOAL_ESTORAGE);
    assert_int_equal(err.status, 507);
    assert_non_null(strstr(err.msg, "storage full"));
    assert_null(strstr(err.msg, dir));          /* no path for clients */
    assert_int_equal(shoal_store_has(s, hb), 0);
    assert_int_equal(count_in("tmp"), 0);
    assert_int_equal(count_in("pieces"), 1);
    assert_piece(s, ha, a, 600 * KiB);
    /* A stored piece sent again still succeeds on the full disk. */
    assert_int_equal(shoal_store_put(s, ha, a, 600 * KiB, &err), 0);
    /* Room made: the failed attempt left nothing behind, so b fits. */
    assert_int_equal(shoal_store_remove(s, ha, &err), 0);
    assert_int_equal(shoal_store_put(s, hb, b, 600 * KiB, &err), 1);
    assert_piece(s, hb, b, 600 * KiB);
    shoal_store_close(s);
    assert_int_equal(umount2(dir, 0), 0);
    mounted = 0;
    free(a);
    free(b);
}

/* RLIMIT_FSIZE makes writes past the limit fail with EFBIG (SIGXFSZ
 * ignored): both when the room is reserved and in the middle of writes. */
static void test_full_rlimit(void **state)
{
    struct shoal_err err;
    struct shoal_store *s = shoal_store_open(dir, &err);
    struct shoal_piece_writer *w;
    struct rlimit lim;
    unsigned char hash[SHOAL_HASH_BYTES];
    unsigned char *data = make_data(128 * KiB, 10);

    (void)state;
    assert_non_null(s);
    assert_true(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &fsize_saved), 0);
    fsize_changed = 1;
    shoal_sha256(data, 128 * KiB, hash);

    /* Reserving 128 KiB under a 64 KiB limit fails at once. */
    lim = fsize_saved;
    lim.rlim_cur = 64 * KiB;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    shoal_err_clear(&err);
    assert_null(shoal_store_begin(s, hash, 128 * KiB, &err));
    assert_int_equal(err.code, SHOAL_ESTORAGE);
    assert_int_equal(err.status, 507);
    assert_non_null(strstr(err.msg, "storage full"));
    assert_int_equal(count_in("tmp"), 0);
    shoal_err_clear(&err);
    assert_int_equal(shoal_store_put(s, hash, data, 128 * KiB, &err), -1);
    assert_int_equal(err.code, SHOAL_ESTORAGE);

    /* The limit falls after the room was reserved: the write fails. */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &fsize_saved), 0);
    w = shoal_store_begin(s, hash, 128 * KiB, &err);
    assert_non_null(w);
    assert_int_equal(shoal_piece_write(w, data, 16 * KiB, &err), 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    shoal_err_clear(&err);
    assert_int_equal(shoal_piece_write(w, data + 16 * KiB, 112 * KiB, &err), -1);
    assert_int_equal(err.code, SHOAL_ESTORAGE);
    assert_non_null(strstr(err.msg, "File too large"));
    assert_int_equal(count_in("tmp"), 0);      /* removed at once */
    shoal_err_clear(&err);
    assert_int_equal(shoal_piece_commit(w, &err), -1);
    assert_int_equal(err.code, SHOAL_ESTORAGE);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &fsize_saved), 0);
    fsize_changed = 0;
    assert_int_equal(shoal_store_has(s, hash), 0);
    assert_int_equal(count_in("pieces"), 0);

    /* Without the limit it is stored. */
    assert_int_equal(shoal_store_put(s, hash, data, 128 * KiB, &err), 1);
    shoal_store_close(s);
    free(data);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_put_has_open),
        T(test_parts_and_empty),
        T(test_direct_sizes),
        T(test_already_stored),
        T(test_wrong_hash),
        T(test_too_long),
        T(test_remove_and_missing),
        T(test_open_errors),
        T(test_leftover_tmp),
        T(test_concurrent_same_piece),
        T(test_concurrent_many_pieces),
        T(test_full_tmpfs),
        T(test_full_rlimit),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
