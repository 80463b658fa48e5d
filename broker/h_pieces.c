/*
 * h_pieces.c - the file role: pieces in (PUT, streamed and verified as
 * they arrive), which pieces are held (have), and bytes out (content and
 * single pieces, with Range, by sendfile).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"
#include "range.h"

/* Piece index {n} of the request, < npieces. */
static int piece_arg(const struct shoal_req *req, uint64_t npieces,
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

static int need_store(const struct br_app *app, struct shoal_err *err)
{
    if (app->store == NULL)
        return shoal_err_set(err, SHOAL_ENOTFOUND,
                             "this broker does not play the file role");
    return 0;
}

/* --- PUT /v1/files/{id}/pieces/{n} ---------------------------------- */

struct upload {
    struct shoal_piece_writer *w;
    char file_id[37];
    int version;
    uint64_t piece;
    uint64_t len;
    unsigned char hash[32];
};

static void upload_free(void *p)
{
    struct upload *u = p;
    if (u == NULL)
        return;
    shoal_piece_abort(u->w);
    free(u);
}

/* Headers in: who, which piece, how long; the writer is ready. */
static int upload_begin(struct shoal_req *req, struct shoal_err *err)
{
    struct br_app *app = br_app_of(req);
    struct br_file f;
    struct br_vent *e;
    struct upload *u = NULL;
    uint64_t n;
    int rc = -1;

    if (need_store(app, err) != 0 ||
        br_file_vent_get(req, BR_ACCESS_WRITE, &f, &e, err) != 0)
        return -1;
    const struct br_version *v = br_vent_version(e);
    if (piece_arg(req, v->npieces, &n, err) != 0)
        goto out;
    if ((u = calloc(1, sizeof *u)) == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    memcpy(u->file_id, f.file_id, sizeof u->file_id);
    u->version = v->version;
    u->piece = n;
    u->len = shoal_piece_len(v->size, v->piece_size, n);
    memcpy(u->hash, v->hashes[n], 32);
    const char *cl = shoal_req_header(req, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > u->len) {
        shoal_err_set(err, SHOAL_ETOOLARGE, "piece %llu is %llu bytes, not %s",
                      (unsigned long long)n, (unsigned long long)u->len, cl);
        goto out;
    }
    if ((u->w = shoal_store_begin(app->store, u->hash, u->len, err)) == NULL)
        goto out;
    shoal_req_set_state(req, u, upload_free);
    u = NULL;
    rc = 0;
out:
    upload_free(u);
    br_vent_put(app, e);
    return rc;
}

int br_piece_body(struct shoal_req *req, const char *data, size_t len,
                  struct shoal_err *err)
{
    if (data == NULL)
        return upload_begin(req, err);
    struct upload *u = shoal_req_state(req);
    return shoal_piece_write(u->w, data, len, err);
}

BR_HANDLER(h_piece_put)
{
    struct upload *u = shoal_req_state(req);
    char hx[65];

    int fresh = shoal_piece_commit(u->w, err);
    u->w = NULL;
    if (fresh < 0) {
        if (err && err->code == SHOAL_EUNPROCESSABLE)
            shoal_err_set(err, SHOAL_EUNPROCESSABLE,
                          "piece %llu of file '%s' does not match its hash"
                          " (%llu bytes expected): nothing was kept",
                          (unsigned long long)u->piece, u->file_id,
                          (unsigned long long)u->len);
        return -1;
    }
    br_usage_add(br_app_of(req), br_caller(req)->user_id, u->len, 0, 0);
    shoal_hex_encode(u->hash, 32, hx);
    *reply = json_pack("{s:s, s:i, s:I, s:s, s:b}", "file_id", u->file_id,
                       "version", u->version, "piece", (json_int_t)u->piece,
                       "hash", hx, "stored", 1);
    shoal_req_set_status(req, fresh ? 201 : 200);
    return 0;
}

/* --- GET /v1/files/{id}/have ------------------------------------------ */

BR_HANDLER(h_piece_have)
{
    struct br_app *app = br_app_of(req);
    struct br_file f;
    struct br_vent *e;
    unsigned char *bits = NULL;
    int rc = -1;

    if (need_store(app, err) != 0 ||
        br_file_vent_get(req, BR_ACCESS_READ, &f, &e, err) != 0)
        return -1;
    const struct br_version *v = br_vent_version(e);
    size_t nbytes = (size_t)((v->npieces + 7) / 8);
    bits = calloc(nbytes ? nbytes : 1, 1);
    if (bits == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    uint64_t held = 0;
    for (uint64_t i = 0; i < v->nhashes; i++)
        if (shoal_store_has(app->store, v->hashes[i])) {
            bits[i / 8] |= (unsigned char)(0x80u >> (i % 8));
            held++;
        }
    char *b64 = shoal_b64_encode(bits, nbytes);
    if (b64 == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    *reply = json_pack("{s:s, s:i, s:I, s:s, s:I, s:b}", "file_id", f.file_id,
                       "version", v->version, "pieces", (json_int_t)v->npieces,
                       "have", b64, "held", (json_int_t)held,
                       "complete", held == v->npieces);
    free(b64);
    rc = 0;
out:
    free(bits);
    br_vent_put(app, e);
    return rc;
}

/* --- GET|HEAD content and pieces --------------------------------------- */

/* Bytes of a version read piece after piece (ranges across pieces). */
struct span {
    struct br_app *app;
    struct br_vent *e;               /* held until the answer is sent */
    uint64_t first;                  /* file offset of position 0 */
    int fd;
    uint64_t fd_piece;
};

static void span_free(void *p)
{
    struct span *s = p;
    if (s->fd >= 0)
        close(s->fd);
    br_vent_put(s->app, s->e);
    free(s);
}

static long span_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct span *s = cls;
    const struct br_version *v = br_vent_version(s->e);
    uint64_t off = s->first + pos;
    uint64_t piece = off / v->piece_size;
    uint64_t in = off % v->piece_size;

    if (piece >= v->nhashes)
        return -1;
    if (s->fd < 0 || s->fd_piece != piece) {
        uint64_t size;
        if (s->fd >= 0)
            close(s->fd);
        s->fd = -1;
        if (shoal_store_open_piece(s->app->store, v->hashes[piece], &s->fd,
                                   &size, NULL) != 0)
            return -1;              /* removed meanwhile: cut the answer */
        s->fd_piece = piece;
    }
    uint64_t plen = shoal_piece_len(v->size, v->piece_size, piece);
    size_t want = max;
    if (want > plen - in)
        want = (size_t)(plen - in);
    ssize_t n = pread(s->fd, buf, want, (off_t)in);
    return n > 0 ? (long)n : -1;
}

/* Answer bytes [lo, lo + total) of the version held in e, or the Range
 * the client asked for within them.  e is released here (or handed to
 * the response). */
static int send_bytes(struct shoal_req *req, struct br_app *app,
                      const char *file_id, struct br_vent *e, uint64_t lo,
                      uint64_t total, struct shoal_err *err)
{
    const struct br_version *v = br_vent_version(e);
    char xsign[SHOAL_XSIGN_MAX], cr[96];
    uint64_t first = 0, last = 0;
    int rc = -1;

    br_vent_xsign(app, e, file_id, xsign);
    shoal_req_add_header(req, "X-Sign", xsign);
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
        rc = shoal_req_set_body(req, 200, "application/octet-stream", "", 0);
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
    unsigned long long egress = strcmp(shoal_req_method(req), "HEAD") ? b + 1 - a : 0;
    if (pa == pb) {                  /* one piece: straight from its file */
        int fd;
        uint64_t size;
        if (shoal_store_open_piece(app->store, v->hashes[pa], &fd, &size, err) != 0) {
            if (err && err->code == SHOAL_ENOTFOUND)
                shoal_err_set(err, SHOAL_EINCOMPLETE,
                              "piece %llu of file '%s' is not stored here yet",
                              (unsigned long long)pa, file_id);
            goto out;
        }
        br_usage_add(app, br_caller(req)->user_id, 0, egress, 0);
        if (shoal_req_set_fd(req, status, "application/octet-stream", fd,
                             a % v->piece_size, b + 1 - a) != 0) {
            shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
            goto out;
        }
        rc = 0;
        goto out;
    }
    /* Across pieces: every one must be here before the headers go. */
    for (uint64_t p = pa; p <= pb; p++)
        if (!shoal_store_has(app->store, v->hashes[p])) {
            shoal_err_set(err, SHOAL_EINCOMPLETE,
                          "piece %llu of file '%s' is not stored here yet",
                          (unsigned long long)p, file_id);
            goto out;
        }
    br_usage_add(app, br_caller(req)->user_id, 0, egress, 0);
    struct span *s = calloc(1, sizeof *s);
    if (s == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    s->app = app;
    s->e = e;                        /* the response holds the entry now */
    e = NULL;
    s->first = a;
    s->fd = -1;
    if (shoal_req_set_reader(req, status, "application/octet-stream",
                             b + 1 - a, span_read, s, span_free) != 0) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    rc = 0;
out:
    br_vent_put(app, e);
    return rc;
}

static int serve(struct shoal_req *req, int one_piece, struct shoal_err *err)
{
    struct br_app *app = br_app_of(req);
    struct br_file f;
    struct br_vent *e = NULL;
    int version;
    uint64_t lo = 0, total;
    char hx[65], etag[70];

    if (need_store(app, err) != 0)
        return -1;
    PGconn *c = br_db_get(app->db, err);
    if (c == NULL)
        return -1;
    int rc = br_file_open(c, req, BR_ACCESS_READ, &f, err) != 0 ||
             br_version_arg(req, &f, &version, err) != 0 ||
             br_vent_get(app, c, f.file_id, version, &e, err) != 0 ? -1 : 0;
    br_db_put(app->db, c);
    if (rc != 0)
        return -1;
    const struct br_version *v = br_vent_version(e);
    total = v->size;
    if (one_piece) {
        uint64_t n;
        if (piece_arg(req, v->npieces, &n, err) != 0) {
            br_vent_put(app, e);
            return -1;
        }
        lo = n * v->piece_size;
        total = shoal_piece_len(v->size, v->piece_size, n);
        shoal_hex_encode(v->hashes[n], 32, hx);
        shoal_req_add_header(req, "X-Piece-Hash", hx);
    } else {
        shoal_hex_encode(v->root, 32, hx);
    }
    snprintf(etag, sizeof etag, "\"%s\"", hx);
    shoal_req_add_header(req, "ETag", etag);
    return send_bytes(req, app, f.file_id, e, lo, total, err);
}

BR_HANDLER(h_file_content)
{
    (void)reply;
    return serve(req, 0, err);
}

BR_HANDLER(h_piece_get)
{
    (void)reply;
    return serve(req, 1, err);
}
