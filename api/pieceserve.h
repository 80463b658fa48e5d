/*
 * pieceserve.h - bytes of a file version out of a piece store, as every
 * holder answers them: the file broker and a peer's 'shoal serve'.
 *
 *   GET|HEAD /v1/files/{id}/content      the version, with Range
 *   GET|HEAD /v1/files/{id}/pieces/{n}   one piece, with Range inside it
 *   GET      /v1/files/{id}/have         which pieces the store holds
 *
 * Answers carry Accept-Ranges, ETag (the quoted root, or the quoted piece
 * hash, also as X-Piece-Hash), X-Sign, and Content-Range on 206 and 416.
 * A range inside one piece goes out with sendfile straight from the piece
 * file; a range across pieces, or any paced answer, is read piece after
 * piece as it is sent.
 * A byte in a piece the store does not hold answers 409 incomplete.
 */
#ifndef SHOAL_PIECESERVE_H
#define SHOAL_PIECESERVE_H

#include <stdint.h>

#include "err.h"
#include "http.h"
#include "manifest.h"
#include "piecemap.h"
#include "store.h"

/* A version to serve.  file_id, root and xsign are borrowed for the call
 * only; store and hashes until release. */
struct shoal_pieceserve {
    struct shoal_store *store;
    const char *file_id;                               /* for messages */
    uint64_t size;
    uint32_t piece_size;                               /* valid */
    const unsigned char (*hashes)[SHOAL_HASH_BYTES];   /* every piece */
    const unsigned char *root;                         /* 32 bytes */
    const char *xsign;                                 /* X-Sign value */
    /* What keeps hashes alive.  release(release_ctx, hold) is called
     * exactly once, by the answer functions: before they return, or when
     * a response that still reads pieces is done.  May be NULL. */
    void (*release)(void *release_ctx, void *hold);
    void *release_ctx;
    void *hold;
    /* Pacing, or NULL: before each block of the body, pace(pace_ctx,
     * want) says how many of want bytes may go now (1 to want), sleeping
     * first when they may not.  A paced body is read piece after piece
     * (no sendfile), on the connection's thread: for a server with a
     * thread per connection.  pace_ctx lives as long as the server. */
    size_t (*pace)(void *pace_ctx, size_t want);
    void *pace_ctx;
    /* Maps of the store's pieces, or NULL: a range across up to
     * SHOAL_PIECESERVE_MAPPED pieces (not paced) goes out from them in
     * one sendmsg instead of through a buffer. */
    struct shoal_piecemap *maps;
};
#define SHOAL_PIECESERVE_MAPPED 4

/*
 * Answer the content of the version (one_piece 0) or the piece named by
 * the path parameter {n} (one_piece 1), honouring Range.  0 with the
 * response set on req and *egress the body bytes it will send (0 for
 * HEAD), or -1 with err set (400 bad piece index, 409 incomplete, 416
 * with Content-Range set, 500).  src->release is called in every case.
 */
int shoal_pieceserve_answer(struct shoal_req *req,
                            const struct shoal_pieceserve *src, int one_piece,
                            uint64_t *egress, struct shoal_err *err);

/*
 * The bitfield of which of the npieces pieces (hashes) store holds, as
 * base64 of ceil(npieces / 8) bytes, piece i at byte i / 8, bit
 * 0x80 >> (i % 8).  New string (free()), with the number held in *held;
 * NULL on ENOMEM.
 */
char *shoal_pieceserve_have(const struct shoal_store *store,
                            const unsigned char (*hashes)[SHOAL_HASH_BYTES],
                            uint64_t npieces, uint64_t *held);

/* The piece index of path parameter {n}: a decimal number without
 * leading zeros below npieces.  -1 with SHOAL_EINVAL otherwise. */
int shoal_pieceserve_index(const struct shoal_req *req, uint64_t npieces,
                           uint64_t *n, struct shoal_err *err);

#endif
