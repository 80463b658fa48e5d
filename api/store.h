/*
 * store.h - the content-addressed piece store, shared by the file broker
 * and the serving peer.
 *
 * A piece lives at <dir>/pieces/<first 2 hex>/<64 hex of its SHA-256>.  It
 * is written to a temporary file in <dir>/tmp, hashed as it arrives,
 * fsynced and renamed into place only when its hash is the expected one:
 * a crash never leaves a partial piece under a real name, and a piece
 * shared by many files is stored once.  Temporary files left by a crash
 * are removed when the store is opened.
 */
#ifndef SHOAL_STORE_H
#define SHOAL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "manifest.h"

struct shoal_store;

/* Open (creating folders 0700) the store under dir.  NULL with err. */
struct shoal_store *shoal_store_open(const char *dir, struct shoal_err *err);
void shoal_store_close(struct shoal_store *s);

/* Path of a piece into out (at least SHOAL_STORE_PATH_MAX bytes). */
#define SHOAL_STORE_PATH_MAX 4096
void shoal_store_path(const struct shoal_store *s,
                      const unsigned char hash[SHOAL_HASH_BYTES], char *out);

/* 1 when the piece is stored, 0 when not. */
int shoal_store_has(const struct shoal_store *s,
                    const unsigned char hash[SHOAL_HASH_BYTES]);

/* Open a stored piece for reading: fd and size.  -1 with SHOAL_ENOTFOUND
 * when absent, SHOAL_EIO otherwise.  The caller closes fd. */
int shoal_store_open_piece(const struct shoal_store *s,
                           const unsigned char hash[SHOAL_HASH_BYTES],
                           int *fd, uint64_t *size, struct shoal_err *err);

/* Writing a piece that arrives in parts. */
struct shoal_piece_writer;

/* Start writing a piece expected to hash to 'hash' and be 'len' bytes.
 * The room is reserved now where the filesystem can; a piece that is
 * stored already is only hashed, nothing is written.  NULL with err
 * (SHOAL_ESTORAGE when the disk is full, SHOAL_EIO). */
struct shoal_piece_writer *shoal_store_begin(struct shoal_store *s,
                                             const unsigned char hash[SHOAL_HASH_BYTES],
                                             uint64_t len, struct shoal_err *err);

/* Append data.  -1 with SHOAL_ETOOLARGE past the expected length,
 * SHOAL_ESTORAGE on a full disk (ENOSPC, EDQUOT, EFBIG), SHOAL_EIO
 * otherwise; the temporary file is removed at once, and the writer must
 * then be aborted (until then, every call repeats that first error). */
int shoal_piece_write(struct shoal_piece_writer *w, const void *data,
                      size_t len, struct shoal_err *err);

/* Finish: the length and hash must be the expected ones (else
 * SHOAL_EUNPROCESSABLE and nothing is kept); fsync, rename, fsync of the
 * folder.  Returns 1 when the piece was newly stored, 0 when it was
 * already there, -1 with err.  The writer is freed in every case. */
int shoal_piece_commit(struct shoal_piece_writer *w, struct shoal_err *err);

/* Drop a writer and its temporary file.  Accepts NULL. */
void shoal_piece_abort(struct shoal_piece_writer *w);

/* Store a whole piece held in memory (begin + write + commit). */
int shoal_store_put(struct shoal_store *s,
                    const unsigned char hash[SHOAL_HASH_BYTES],
                    const void *data, size_t len, struct shoal_err *err);

/* shoal_store_put of bytes the caller has just checked against hash
 * itself (a downloader's verified piece): they are not hashed again. */
int shoal_store_put_checked(struct shoal_store *s,
                            const unsigned char hash[SHOAL_HASH_BYTES],
                            const void *data, size_t len,
                            struct shoal_err *err);

/* Remove a piece (absent is fine).  -1 with SHOAL_EIO. */
int shoal_store_remove(struct shoal_store *s,
                       const unsigned char hash[SHOAL_HASH_BYTES],
                       struct shoal_err *err);

/* fn(ctx, hash) after each piece shoal_store_remove removes (a cache of
 * the store's pieces forgets it); NULL for none.  Set it before threads
 * use the store. */
void shoal_store_on_remove(struct shoal_store *s,
                           void (*fn)(void *ctx,
                                      const unsigned char hash[SHOAL_HASH_BYTES]),
                           void *ctx);

/* Call fn for every stored piece, in no particular order, until it
 * returns non-zero (which is then returned).  -1 with SHOAL_EIO when the
 * store cannot be listed. */
int shoal_store_each(const struct shoal_store *s,
                     int (*fn)(void *arg, const unsigned char hash[SHOAL_HASH_BYTES]),
                     void *arg, struct shoal_err *err);

#endif
