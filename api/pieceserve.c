/*
 * pieceserve.c - bytes of a file version out of a piece store (see
 * pieceserve.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pieceserve.h"
#include "range.h"
#include "util.h"

static void release(const struct shoal_pieceserve *src)
{
    if (src->release)
        src->release(src->release_ctx, src->hold);
}

int shoal_pieceserve_index(const struct shoal_req *req, uint64_t npieces,
                           uint64_t *n, struct shoal_err *err)
{
    const char *s = shoal_req_param(req, "n");
    char *end;
    if (s == NULL || *s < '0' || *s > '9' || (s[0] == '0' && s[1] != '\0'))
        return shoal_err_set(err, SHOAL_EINVAL, "piece index '%.32s' is not a"
                             " number", s ? s : "");
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno != 0 || v >= npieces)
        return shoal_err_set(err, SHOAL_EINVAL, "piece %.32s out of range (the"
                             " version has %llu pieces)", s,
                             (unsigned long long)npieces);
    *n = v;
    return 0;
}

char *shoal_pieceserve_have(const struct shoal_store *store,
                            const unsigned char (*hashes)[SHOAL_HASH_BYTES],
                            uint64_t npieces, uint64_t *held)
{
    size_t nbytes = (size_t)((npieces + 7) / 8);
    unsigned char *bits = calloc(nbytes ? nbytes : 1, 1);
    if (bits == NULL)
        return NULL;
    *held = 0;
    for (uint64_t i = 0; i < npieces; i++)
        if (shoal_store_has(store, hashes[i])) {
            bits[i / 8] |= (unsigned char)(0x80u >> (i % 8));
            (*held)++;
        }
    char *b64 = shoal_b64_encode(bits, nbytes);
    free(bits);
    return b64;
}

/* Bytes of a version read piece after piece (ranges across pieces).  The
 * response owns it, and through it the caller's hold. */
struct span {
    struct shoal_pieceserve src;
    uint64_t first;                  /* file offset of position 0 */
    int fd;
    uint64_t fd_piece;
};

static void span_free(void *p)
{
    struct span *s = p;
    if (s->fd >= 0)
        close(s->fd);
    release(&s->src);
    free(s);
}

static long span_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct span *s = cls;
    const struct shoal_pieceserve *v = &s->src;
    uint64_t off = s->first + pos;
    uint64_t piece = off / v->piece_size;
    uint64_t in = off % v->piece_size;

    if (piece >= shoal_piece_count(v->size, v->piece_size))
        return -1;
    if (s->fd < 0 || s->fd_piece != piece) {
        uint64_t size;
        if (s->fd >= 0)
            close(s->fd);
        s->fd = -1;
        if (shoal_store_open_piece(v->store, v->hashes[piece], &s->fd, &size,
                                   NULL) != 0)
            return -1;              /* removed meanwhile: cut the answer */
        s->fd_piece = piece;
    }
    uint64_t plen = shoal_piece_len(v->size, v->piece_size, piece);
    size_t want = max;
    if (want > plen - in)
        want = (size_t)(plen - in);
    if (v->pace)
        want = v->pace(v->pace_ctx, want);
    ssize_t n = pread(s->fd, buf, want, (off_t)in);
    return n > 0 ? (long)n : -1;
}

/* A range across a few pieces, sent from their maps; the response owns
 * it, and through it the maps and the caller's hold. */
struct mapped {
    struct shoal_pieceserve src;
    struct shoal_pmap *maps[SHOAL_PIECESERVE_MAPPED];
    int n;
};

static void mapped_free(void *p)
{
    struct mapped *m = p;
    for (int i = 0; i < m->n; i++)
        shoal_piecemap_put(m->src.maps, m->maps[i]);
    release(&m->src);
    free(m);
}

/* Answer file bytes [a, b] (pieces pa to pb) from maps.  1 when set (the
 * hold went to the response), 0 when the maps cannot do it (nothing
 * changed: the caller reads the pieces instead), -1 on ENOMEM. */
static int send_mapped(struct shoal_req *req, const struct shoal_pieceserve *v,
                       int status, uint64_t a, uint64_t b)
{
    uint64_t pa = a / v->piece_size, pb = b / v->piece_size;
    struct iovec iov[SHOAL_PIECESERVE_MAPPED];
    struct mapped *m = calloc(1, sizeof *m);

    if (m == NULL)
        return 0;
    m->src = *v;
    for (uint64_t p = pa; p <= pb; p++) {
        uint64_t base = p * v->piece_size;
        uint64_t plen = shoal_piece_len(v->size, v->piece_size, p);
        struct shoal_pmap *pm = shoal_piecemap_get(v->maps, v->hashes[p], plen,
                                                   NULL);
        if (pm == NULL) {
            for (int i = 0; i < m->n; i++)
                shoal_piecemap_put(v->maps, m->maps[i]);
            free(m);
            return 0;
        }
        uint64_t from = p == pa ? a - base : 0;
        uint64_t to = p == pb ? b - base + 1 : plen;
        iov[m->n].iov_base = (void *)(shoal_pmap_bytes(pm) + from);
        iov[m->n].iov_len = (size_t)(to - from);
        m->maps[m->n++] = pm;
    }
    if (shoal_req_set_iov(req, status, "application/octet-stream", iov, m->n,
                          mapped_free, m) != 0)
        return -1;                     /* mapped_free released the hold */
    return 1;
}

static int not_here(const struct shoal_pieceserve *v, uint64_t piece,
                    struct shoal_err *err)
{
    return shoal_err_set(err, SHOAL_EINCOMPLETE,
                         "piece %llu of file '%s' is not stored here yet",
                         (unsigned long long)piece, v->file_id);
}

/* Answer bytes [lo, lo + total) of the version, or the Range the client
 * asked for within them.  The hold is released here or handed to the
 * response. */
static int send_bytes(struct shoal_req *req, const struct shoal_pieceserve *v,
                      uint64_t lo, uint64_t total, uint64_t *egress,
                      struct shoal_err *err)
{
    char cr[96];
    uint64_t first = 0, last = 0;
    int rc = -1, held = 1;

    shoal_req_add_header(req, "X-Sign", v->xsign);
    shoal_req_add_header(req, "Accept-Ranges", "bytes");
    enum shoal_range kind = shoal_range_parse(shoal_req_header(req, "Range"),
                                              total, &first, &last);
    if (kind == SHOAL_RANGE_UNSAT) {
        snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)total);
        shoal_req_add_header(req, "Content-Range", cr);
        shoal_err_set(err, SHOAL_ERANGE, "range '%.64s' is outside the %llu bytes",
                      shoal_req_header(req, "Range"), (unsigned long long)total);
        goto out;
    }
    if (total == 0) {
        if (shoal_req_set_body(req, 200, "application/octet-stream", "", 0) != 0) {
            shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
            goto out;
        }
        *egress = 0;
        rc = 0;
        goto out;
    }
    int status = 200;
    if (kind == SHOAL_RANGE_PART) {
        status = 206;
        snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)first,
                 (unsigned long long)last, (unsigned long long)total);
        shoal_req_add_header(req, "Content-Range", cr);
    } else {
        first = 0;
        last = total - 1;
    }
    uint64_t a = lo + first, b = lo + last;      /* file offsets */
    uint64_t pa = a / v->piece_size, pb = b / v->piece_size;
    uint64_t out_bytes = strcmp(shoal_req_method(req), "HEAD") ? b + 1 - a : 0;
    if (pa == pb && v->pace == NULL) {  /* one piece: straight from its file */
        int fd;
        uint64_t size;
        if (shoal_store_open_piece(v->store, v->hashes[pa], &fd, &size, err) != 0) {
            if (err && err->code == SHOAL_ENOTFOUND)
                not_here(v, pa, err);
            goto out;
        }
        if (shoal_req_set_fd(req, status, "application/octet-stream", fd,
                             a % v->piece_size, b + 1 - a) != 0) {
            shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
            goto out;
        }
        *egress = out_bytes;
        rc = 0;
        goto out;
    }
    /* Across a few pieces, from their maps (a piece the store does not
     * hold has none). */
    if (v->maps != NULL && v->pace == NULL && pb - pa < SHOAL_PIECESERVE_MAPPED) {
        int r = send_mapped(req, v, status, a, b);
        if (r != 0) {
            held = 0;                  /* the response (or its failure) released it */
            if (r < 0)
                shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
            else {
                *egress = out_bytes;
                rc = 0;
            }
            goto out;
        }
    }
    /* Across pieces, or paced: every one must be here before the headers
     * go. */
    for (uint64_t p = pa; p <= pb; p++)
        if (!shoal_store_has(v->store, v->hashes[p])) {
            not_here(v, p, err);
            goto out;
        }
    struct span *s = calloc(1, sizeof *s);
    if (s == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    s->src = *v;                     /* the response holds it now */
    held = 0;
    s->first = a;
    s->fd = -1;
    if (shoal_req_set_reader(req, status, "application/octet-stream",
                             b + 1 - a, span_read, s, span_free) != 0) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    *egress = out_bytes;
    rc = 0;
out:
    if (held)
        release(v);
    return rc;
}

int shoal_pieceserve_answer(struct shoal_req *req,
                            const struct shoal_pieceserve *src, int one_piece,
                            uint64_t *egress, struct shoal_err *err)
{
    uint64_t lo = 0, total = src->size;
    char hx[65], etag[70];

    *egress = 0;
    if (one_piece) {
        uint64_t n;
        if (shoal_pieceserve_index(req, shoal_piece_count(src->size,
                                                          src->piece_size),
                                   &n, err) != 0) {
            release(src);
            return -1;
        }
        lo = n * src->piece_size;
        total = shoal_piece_len(src->size, src->piece_size, n);
        shoal_hex_encode(src->hashes[n], SHOAL_HASH_BYTES, hx);
        shoal_req_add_header(req, "X-Piece-Hash", hx);
    } else {
        shoal_hex_encode(src->root, SHOAL_HASH_BYTES, hx);
    }
    snprintf(etag, sizeof etag, "\"%s\"", hx);
    shoal_req_add_header(req, "ETag", etag);
    return send_bytes(req, src, lo, total, egress, err);
}
