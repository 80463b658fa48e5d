/*
 * store.c - the content-addressed piece store: <dir>/pieces/ab/<hex>,
 * written through temporary files in <dir>/tmp.
 *
 * A store is immutable once opened (but for its removal hook, set before
 * any thread uses it), so any number of threads may use it at once; the
 * filesystem is the only shared state.  Two writers of the same
 * piece each write their own temporary file and the first rename wins
 * (renameat2 RENAME_NOREPLACE): exactly one of them reports the piece as
 * new.  Each writer holds an flock on its temporary file, so that opening
 * the store again (another process, or the same one) removes only the
 * temporary files that nobody is writing.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "util.h"

/* Pieces of at least DIRECT_MIN bytes are written with O_DIRECT where the
 * filesystem allows it: the bytes go from an aligned buffer to the disk,
 * without a copy into the page cache (which fsync would write out at once
 * anyway).  The end of a piece that is not a whole block goes through the
 * page cache. */
#define DIRECT_MIN (64u << 10)
#define DIRECT_ALIGN 4096u
#define STAGE_BYTES (128u << 10)

/* Room left in SHOAL_STORE_PATH_MAX after the folder for
 * "/pieces/ab/<64 hex>" or "/tmp/<64 hex>.XXXXXX". */
#define PATH_TAIL 96

struct shoal_store {
    char *dir;                         /* without a trailing '/' */
    /* told of every piece removed (see shoal_store_on_remove) */
    void (*on_remove)(void *ctx, const unsigned char hash[SHOAL_HASH_BYTES]);
    void *on_remove_ctx;
};

struct shoal_piece_writer {
    const struct shoal_store *s;
    unsigned char want[SHOAL_HASH_BYTES];
    char hex[2 * SHOAL_HASH_BYTES + 1];
    uint64_t len;
    uint64_t written;
    struct shoal_sha256_ctx *sha;
    int failed;                        /* a write failed: all calls fail */
    struct shoal_err first;            /* how, repeated by later calls */
    int stored;                        /* stored already: hash, write nothing */
    int checked;                       /* the caller has hashed the bytes */
    int fd;                            /* temporary file, or -1 */
    int direct;                        /* fd has O_DIRECT */
    unsigned char *stage;              /* aligned, STAGE_BYTES, when direct */
    size_t staged;                     /* bytes in stage */
    char tmp[SHOAL_STORE_PATH_MAX];    /* its name, or "" */
};

/* 1 for the errors that mean "no room": a full disk, a quota, a file size
 * limit. */
static int no_room(int e)
{
    return e == ENOSPC || e == EDQUOT || e == EFBIG;
}

/*
 * Fill err for a failed system call on the piece named hex: SHOAL_ESTORAGE
 * when there is no room (the message goes to clients: no path in it),
 * SHOAL_EIO naming the path otherwise.  Returns -1.
 */
static int sys_fail(struct shoal_err *err, int e, const char *what,
                    const char *hex, const char *path)
{
    char buf[128];
    const char *msg = strerror_r(e, buf, sizeof(buf));

    if (no_room(e))
        return shoal_err_set(err, SHOAL_ESTORAGE,
                             "cannot store piece '%.12s…': storage full (%s)",
                             hex, msg);
    return shoal_err_set(err, SHOAL_EIO, "cannot %s '%s': %s", what, path, msg);
}

struct shoal_store *shoal_store_open(const char *dir, struct shoal_err *err)
{
    struct shoal_store *s = NULL;
    char path[SHOAL_STORE_PATH_MAX];
    char buf[128];
    struct dirent *de;
    DIR *d = NULL;
    size_t n;

    n = dir != NULL ? strlen(dir) : 0;
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n == 0 || n >= SHOAL_STORE_PATH_MAX - PATH_TAIL) {
        shoal_err_set(err, SHOAL_EINVAL, "store folder is empty or too long");
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->dir = strndup(dir, n)) == NULL) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto fail;
    }
    if (shoal_mkdir_p(s->dir, 0700, err) != 0)
        goto fail;
    snprintf(path, sizeof(path), "%s/pieces", s->dir);
    if (shoal_mkdir_p(path, 0700, err) != 0)
        goto fail;
    snprintf(path, sizeof(path), "%s/tmp", s->dir);
    if (shoal_mkdir_p(path, 0700, err) != 0)
        goto fail;

    /* Remove what crashed writers left: every entry nobody holds a lock on. */
    d = opendir(path);
    if (d == NULL) {
        shoal_err_set(err, SHOAL_EIO, "cannot open folder '%s': %s", path,
                      strerror_r(errno, buf, sizeof(buf)));
        goto fail;
    }
    while ((de = readdir(d)) != NULL) {
        int fd;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        fd = openat(dirfd(d), de->d_name,
                    O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
            close(fd);                 /* a live writer's */
            continue;
        }
        unlinkat(dirfd(d), de->d_name, 0);
        if (fd >= 0)
            close(fd);
    }
    closedir(d);
    return s;
fail:
    shoal_store_close(s);
    return NULL;
}

void shoal_store_close(struct shoal_store *s)
{
    if (s == NULL)
        return;
    free(s->dir);
    free(s);
}

void shoal_store_path(const struct shoal_store *s,
                      const unsigned char hash[SHOAL_HASH_BYTES], char *out)
{
    char hex[2 * SHOAL_HASH_BYTES + 1];

    shoal_hex_encode(hash, SHOAL_HASH_BYTES, hex);
    snprintf(out, SHOAL_STORE_PATH_MAX, "%s/pieces/%.2s/%s", s->dir, hex, hex);
}

int shoal_store_has(const struct shoal_store *s,
                    const unsigned char hash[SHOAL_HASH_BYTES])
{
    char path[SHOAL_STORE_PATH_MAX];
    struct stat st;

    shoal_store_path(s, hash, path);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int shoal_store_open_piece(const struct shoal_store *s,
                           const unsigned char hash[SHOAL_HASH_BYTES],
                           int *fd, uint64_t *size, struct shoal_err *err)
{
    char path[SHOAL_STORE_PATH_MAX];
    char buf[128];
    struct stat st;
    int f;
    int e;

    *fd = -1;
    *size = 0;
    shoal_store_path(s, hash, path);
    f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0 && errno == ENOENT)
        return shoal_err_set(err, SHOAL_ENOTFOUND, "piece '%s' not found",
                             strrchr(path, '/') + 1);
    if (f < 0)
        return shoal_err_set(err, SHOAL_EIO, "cannot open '%s': %s", path,
                             strerror_r(errno, buf, sizeof(buf)));
    if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
        e = errno;
        close(f);
        return shoal_err_set(err, SHOAL_EIO, "cannot read '%s': %s", path,
                             S_ISREG(st.st_mode) ? strerror_r(e, buf, sizeof(buf))
                                                 : "not a regular file");
    }
    *fd = f;
    *size = (uint64_t)st.st_size;
    return 0;
}

/* Close and remove the temporary file of w, if it has one. */
static void drop_tmp(struct shoal_piece_writer *w)
{
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
    }
    if (w->tmp[0] != '\0') {
        unlink(w->tmp);
        w->tmp[0] = '\0';
    }
}

/* The error a failed writer reports: the first one, again. */
static int failed_again(const struct shoal_piece_writer *w,
                        struct shoal_err *err)
{
    if (err != NULL)
        *err = w->first;
    return -1;
}

/* sys_fail for the error e of w's temporary file, which is then removed
 * and w marked as failed. */
static int writer_fail(struct shoal_piece_writer *w, struct shoal_err *err,
                       int e, const char *what)
{
    char path[SHOAL_STORE_PATH_MAX];

    memcpy(path, w->tmp, sizeof(path));
    drop_tmp(w);
    w->failed = 1;
    sys_fail(&w->first, e, what, w->hex, path);
    return failed_again(w, err);
}

/* O_DIRECT for w's file when the piece is large enough and the
 * filesystem takes it (tmpfs does not): else w writes through the page
 * cache. */
static void direct_start(struct shoal_piece_writer *w)
{
    int fl;
    void *stage;

    if (w->len < DIRECT_MIN || (fl = fcntl(w->fd, F_GETFL)) < 0 ||
        posix_memalign(&stage, DIRECT_ALIGN, STAGE_BYTES) != 0)
        return;
    if (fcntl(w->fd, F_SETFL, fl | O_DIRECT) != 0) {
        free(stage);
        return;
    }
    w->stage = stage;
    w->direct = 1;
}

/* Back to the page cache (for the end of the piece, or when a direct
 * write is refused).  0, or -1 with errno. */
static int direct_stop(struct shoal_piece_writer *w)
{
    int fl = fcntl(w->fd, F_GETFL);
    if (fl < 0 || fcntl(w->fd, F_SETFL, fl & ~O_DIRECT) != 0)
        return -1;
    w->direct = 0;
    return 0;
}

/* Write n bytes of buf (aligned, a multiple of DIRECT_ALIGN while
 * direct).  0, or -1 with errno. */
static int raw_write(struct shoal_piece_writer *w, const void *buf, size_t n)
{
    if (w->direct) {
        ssize_t k = write(w->fd, buf, n);
        if (k == (ssize_t)n)
            return 0;
        if (k >= 0 || errno != EINVAL)            /* a short write: go on */
            return k < 0 ? -1 : raw_write(w, (const char *)buf + k, n - (size_t)k);
        if (direct_stop(w) != 0)                  /* refused after all */
            return -1;
    }
    return shoal_write_all(w->fd, buf, n);
}

/* The bytes of a direct writer: whole stages go straight out, the rest
 * waits in the stage.  0, or -1 with errno. */
static int direct_write(struct shoal_piece_writer *w, const unsigned char *data,
                        size_t len)
{
    while (len > 0) {
        if (!w->direct) {                          /* given up on the way */
            if (w->staged > 0) {
                if (shoal_write_all(w->fd, w->stage, w->staged) != 0)
                    return -1;
                w->staged = 0;
            }
            return shoal_write_all(w->fd, data, len);
        }
        if (w->staged == 0 && len >= DIRECT_ALIGN &&
            (uintptr_t)data % DIRECT_ALIGN == 0) {     /* no copy needed */
            size_t whole = len & ~(size_t)(DIRECT_ALIGN - 1);
            if (raw_write(w, data, whole) != 0)
                return -1;
            data += whole;
            len -= whole;
            continue;
        }
        size_t k = STAGE_BYTES - w->staged < len ? STAGE_BYTES - w->staged : len;
        memcpy(w->stage + w->staged, data, k);
        w->staged += k;
        data += k;
        len -= k;
        if (w->staged == STAGE_BYTES) {
            if (raw_write(w, w->stage, STAGE_BYTES) != 0)
                return -1;
            w->staged = 0;
        }
    }
    return 0;
}

/* The end of a direct writer's bytes: whole blocks directly, the tail
 * through the page cache.  0, or -1 with errno. */
static int direct_finish(struct shoal_piece_writer *w)
{
    size_t whole = w->staged & ~(size_t)(DIRECT_ALIGN - 1);

    if (!w->direct || w->staged == 0)
        return 0;
    if (whole > 0 && raw_write(w, w->stage, whole) != 0)
        return -1;
    if (whole < w->staged) {
        if (w->direct && direct_stop(w) != 0)
            return -1;
        if (shoal_write_all(w->fd, w->stage + whole, w->staged - whole) != 0)
            return -1;
    }
    w->staged = 0;
    return 0;
}

/*
 * A piece that is stored already is only hashed (its writer keeps no
 * file), so that sending it again costs no disk writes and works on a full
 * disk.  Otherwise the room is reserved now, so that a full disk is known
 * before the body is read; on filesystems that cannot reserve, the writes
 * find out.
 */
struct shoal_piece_writer *shoal_store_begin(struct shoal_store *s,
                                             const unsigned char hash[SHOAL_HASH_BYTES],
                                             uint64_t len, struct shoal_err *err)
{
    struct shoal_piece_writer *w;
    char dir[SHOAL_STORE_PATH_MAX];
    int e;

    if (len > INT64_MAX) {
        shoal_err_set(err, SHOAL_ETOOLARGE, "piece of %" PRIu64 " bytes", len);
        return NULL;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL || (w->sha = shoal_sha256_new()) == NULL) {
        free(w);
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        return NULL;
    }
    w->s = s;
    w->fd = -1;
    w->len = len;
    memcpy(w->want, hash, SHOAL_HASH_BYTES);
    shoal_hex_encode(hash, SHOAL_HASH_BYTES, w->hex);
    if (shoal_store_has(s, hash)) {
        w->stored = 1;
        return w;
    }
    snprintf(w->tmp, sizeof(w->tmp), "%s/tmp/%s.XXXXXX", s->dir, w->hex);
    w->fd = mkostemp(w->tmp, O_CLOEXEC);       /* mode 0600 */
    if (w->fd < 0) {
        e = errno;
        w->tmp[0] = '\0';
        snprintf(dir, sizeof(dir), "%s/tmp", s->dir);
        sys_fail(err, e, "create a file in", w->hex, dir);
        goto fail;
    }
    /* Marks the file as live for shoal_store_open; harmless if it fails. */
    (void)flock(w->fd, LOCK_EX | LOCK_NB);
    if (len > 0 && fallocate(w->fd, 0, 0, (off_t)len) != 0 && no_room(errno)) {
        writer_fail(w, err, errno, "reserve room in");
        goto fail;
    }
    direct_start(w);
    return w;
fail:
    shoal_piece_abort(w);
    return NULL;
}

int shoal_piece_write(struct shoal_piece_writer *w, const void *data,
                      size_t len, struct shoal_err *err)
{
    if (w->failed)
        return failed_again(w, err);
    if (len > w->len - w->written) {
        drop_tmp(w);
        w->failed = 1;
        shoal_err_set(&w->first, SHOAL_ETOOLARGE,
                      "piece '%.12s…' is longer than %" PRIu64 " bytes",
                      w->hex, w->len);
        return failed_again(w, err);
    }
    if (len == 0)
        return 0;
    if (!w->checked)
        shoal_sha256_update(w->sha, data, len);
    if (!w->stored && (w->stage ? direct_write(w, data, len)
                                : shoal_write_all(w->fd, data, len)) != 0)
        return writer_fail(w, err, errno, "write");
    w->written += len;
    return 0;
}

/* fsync a folder.  0, or -1 with errno. */
static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;
    int e;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* Move w's temporary file to target unless target exists.  1 when moved,
 * 0 when target was there, -1 with errno. */
static int move_noreplace(struct shoal_piece_writer *w, const char *target)
{
    struct stat st;

    if (renameat2(AT_FDCWD, w->tmp, AT_FDCWD, target, RENAME_NOREPLACE) == 0)
        return 1;
    if (errno == EEXIST)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return -1;
    /* A filesystem without RENAME_NOREPLACE: two writers may both see the
     * piece as new, which only turns a 200 into a 201. */
    if (stat(target, &st) == 0)
        return 0;
    return rename(w->tmp, target) == 0 ? 1 : -1;
}

/* Put w's verified, synced and closed temporary file in place: 1 when
 * moved, 0 when the piece was there already, -1 with err. */
static int install(struct shoal_piece_writer *w, struct shoal_err *err)
{
    char target[SHOAL_STORE_PATH_MAX];
    char sub[SHOAL_STORE_PATH_MAX];
    char pieces[SHOAL_STORE_PATH_MAX];
    int moved;

    shoal_store_path(w->s, w->want, target);
    snprintf(pieces, sizeof(pieces), "%s/pieces", w->s->dir);
    snprintf(sub, sizeof(sub), "%s/pieces/%.2s", w->s->dir, w->hex);
    /* pieces/ab is made on first use, and its entry synced. */
    if (mkdir(sub, 0700) == 0) {
        if (sync_dir(pieces) != 0)
            return writer_fail(w, err, errno, "sync folder");
    } else if (errno != EEXIST) {
        return writer_fail(w, err, errno, "create folder");
    }
    moved = move_noreplace(w, target);
    if (moved < 0)
        return writer_fail(w, err, errno, "rename");
    if (moved == 0) {
        drop_tmp(w);
        return 0;
    }
    w->tmp[0] = '\0';
    if (sync_dir(sub) != 0)
        return sys_fail(err, errno, "sync folder", w->hex, sub);
    return 1;
}

int shoal_piece_commit(struct shoal_piece_writer *w, struct shoal_err *err)
{
    unsigned char got[SHOAL_HASH_BYTES];
    int rc = -1;

    if (w->failed) {
        failed_again(w, err);
        goto out;
    }
    if (w->written != w->len) {
        shoal_err_set(err, SHOAL_EUNPROCESSABLE,
                      "piece '%.12s…' is %" PRIu64 " bytes, not %" PRIu64,
                      w->hex, w->written, w->len);
        goto out;
    }
    shoal_sha256_final(w->sha, got);
    w->sha = NULL;
    if (!w->checked && memcmp(got, w->want, SHOAL_HASH_BYTES) != 0) {
        shoal_err_set(err, SHOAL_EUNPROCESSABLE,
                      "content does not hash to '%.12s…'", w->hex);
        goto out;
    }
    if (w->stored || shoal_store_has(w->s, w->want)) {
        if (w->stored && !shoal_store_has(w->s, w->want)) {
            shoal_err_set(err, SHOAL_EIO,
                          "piece '%.12s…' was removed while being sent", w->hex);
            goto out;
        }
        rc = 0;                        /* stored already: skip the fsync */
        goto out;
    }
    if (w->stage && direct_finish(w) != 0) {
        writer_fail(w, err, errno, "write");
        goto out;
    }
    if (fsync(w->fd) != 0) {
        writer_fail(w, err, errno, "sync");
        goto out;
    }
    if (close(w->fd) != 0) {
        w->fd = -1;
        writer_fail(w, err, errno, "write");
        goto out;
    }
    w->fd = -1;
    rc = install(w, err);
out:
    shoal_piece_abort(w);
    return rc;
}

void shoal_piece_abort(struct shoal_piece_writer *w)
{
    if (w == NULL)
        return;
    drop_tmp(w);
    shoal_sha256_free(w->sha);
    free(w->stage);
    free(w);
}

int shoal_store_put(struct shoal_store *s,
                    const unsigned char hash[SHOAL_HASH_BYTES],
                    const void *data, size_t len, struct shoal_err *err)
{
    struct shoal_piece_writer *w = shoal_store_begin(s, hash, len, err);

    if (w == NULL)
        return -1;
    if (shoal_piece_write(w, data, len, err) != 0) {
        shoal_piece_abort(w);
        return -1;
    }
    return shoal_piece_commit(w, err);
}

int shoal_store_put_checked(struct shoal_store *s,
                            const unsigned char hash[SHOAL_HASH_BYTES],
                            const void *data, size_t len,
                            struct shoal_err *err)
{
    struct shoal_piece_writer *w = shoal_store_begin(s, hash, len, err);

    if (w == NULL)
        return -1;
    w->checked = 1;
    if (shoal_piece_write(w, data, len, err) != 0) {
        shoal_piece_abort(w);
        return -1;
    }
    return shoal_piece_commit(w, err);
}

int shoal_store_remove(struct shoal_store *s,
                       const unsigned char hash[SHOAL_HASH_BYTES],
                       struct shoal_err *err)
{
    char path[SHOAL_STORE_PATH_MAX];
    char buf[128];

    shoal_store_path(s, hash, path);
    if (unlink(path) != 0 && errno != ENOENT)
        return shoal_err_set(err, SHOAL_EIO, "cannot remove '%s': %s", path,
                             strerror_r(errno, buf, sizeof(buf)));
    if (s->on_remove)
        s->on_remove(s->on_remove_ctx, hash);
    return 0;
}

void shoal_store_on_remove(struct shoal_store *s,
                           void (*fn)(void *ctx,
                                      const unsigned char hash[SHOAL_HASH_BYTES]),
                           void *ctx)
{
    s->on_remove = fn;
    s->on_remove_ctx = ctx;
}

int shoal_store_each(const struct shoal_store *s,
                     int (*fn)(void *arg, const unsigned char hash[SHOAL_HASH_BYTES]),
                     void *arg, struct shoal_err *err)
{
    char top[SHOAL_STORE_PATH_MAX];
    snprintf(top, sizeof top, "%s/pieces", s->dir);
    DIR *d = opendir(top);
    if (d == NULL)
        return shoal_err_set(err, SHOAL_EIO, "cannot list the piece store: %s",
                             strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strlen(e->d_name) != 2 || !isxdigit((unsigned char)e->d_name[0]) ||
            !isxdigit((unsigned char)e->d_name[1]))
            continue;
        char sub[SHOAL_STORE_PATH_MAX + 4];
        snprintf(sub, sizeof sub, "%s/%.2s", top, e->d_name);
        DIR *d2 = opendir(sub);
        if (d2 == NULL)
            continue;
        struct dirent *f;
        while (rc == 0 && (f = readdir(d2)) != NULL) {
            unsigned char hash[SHOAL_HASH_BYTES];
            if (strlen(f->d_name) != 2 * SHOAL_HASH_BYTES ||
                strncmp(f->d_name, e->d_name, 2) != 0 ||
                shoal_hex_decode_exact(f->d_name, hash, sizeof hash, "piece",
                                       NULL) != 0)
                continue;
            rc = fn(arg, hash);
        }
        closedir(d2);
    }
    closedir(d);
    return rc;
}
