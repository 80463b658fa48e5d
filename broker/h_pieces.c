/*
 * h_pieces.c - the file role: pieces in (PUT, streamed and verified as
 * they arrive), which pieces are held (have), and bytes out (content and
 * single pieces, with Range, by sendfile: api/pieceserve.c, which peers
 * serve with too).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "pieceserve.h"

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
    if (shoal_pieceserve_index(req, v->npieces, &n, err) != 0)
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
    uint64_t held = 0;

    if (need_store(app, err) != 0 ||
        br_file_vent_get(req, BR_ACCESS_READ, &f, &e, err) != 0)
        return -1;
    const struct br_version *v = br_vent_version(e);
    char *b64 = shoal_pieceserve_have(
        app->store, (const unsigned char (*)[SHOAL_HASH_BYTES])v->hashes,
        v->nhashes, &held);
    if (b64 == NULL) {
        br_vent_put(app, e);
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    }
    *reply = json_pack("{s:s, s:i, s:I, s:s, s:I, s:b}", "file_id", f.file_id,
                       "version", v->version, "pieces", (json_int_t)v->npieces,
                       "have", b64, "held", (json_int_t)held,
                       "complete", held == v->npieces);
    free(b64);
    br_vent_put(app, e);
    return 0;
}

/* --- GET|HEAD content and pieces --------------------------------------- */

static void vent_release(void *app, void *e)
{
    br_vent_put(app, e);
}

static int serve(struct shoal_req *req, int one_piece, struct shoal_err *err)
{
    struct br_app *app = br_app_of(req);
    struct br_file f;
    struct br_vent *e = NULL;
    int version;
    char xsign[SHOAL_XSIGN_MAX];
    uint64_t egress = 0;

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
    br_vent_xsign(app, e, f.file_id, xsign);
    struct shoal_pieceserve src = {
        .store = app->store,
        .file_id = f.file_id,
        .size = v->size,
        .piece_size = v->piece_size,
        .hashes = (const unsigned char (*)[SHOAL_HASH_BYTES])v->hashes,
        .root = v->root,
        .xsign = xsign,
        .release = vent_release,     /* e lives until the answer is sent */
        .release_ctx = app,
        .hold = e,
        .maps = app->maps,
    };
    if (shoal_pieceserve_answer(req, &src, one_piece, &egress, err) != 0)
        return -1;
    br_usage_add(app, br_caller(req)->user_id, 0, egress, 0);
    return 0;
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
