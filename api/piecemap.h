/*
 * piecemap.h - a cache of read-only memory maps of stored pieces, so that
 * a range across pieces goes out with one sendmsg from the page cache
 * instead of being read into a buffer first.
 *
 * A piece is mapped the first time a request needs it and stays mapped,
 * least recently used first out, while the maps stay under the cache's
 * size.  Maps in use by a response are never unmapped under it; a piece
 * removed from the store is forgotten at once (and unmapped when its last
 * response ends).  Pieces are immutable once stored: a map always shows
 * the bytes that were verified.  Nothing may shorten a stored piece's file
 * while the serving process runs (the store never does; a map of a file
 * cut short raises SIGBUS when read past its new end).
 *
 * Every call is thread-safe.
 */
#ifndef SHOAL_PIECEMAP_H
#define SHOAL_PIECEMAP_H

#include <stdint.h>

#include "store.h"

struct shoal_piecemap;
struct shoal_pmap;                     /* one map, held by a reference */

/* A cache of at most cap bytes of maps of store's pieces. */
struct shoal_piecemap *shoal_piecemap_new(struct shoal_store *store,
                                          uint64_t cap);
/* Unmaps everything; no reference may be held any more. */
void shoal_piecemap_free(struct shoal_piecemap *m);

/* The bytes of the piece hash, which must be len bytes long: a reference
 * the caller gives back with shoal_piecemap_put.  NULL when the piece is
 * absent, of another length, or cannot be mapped (err says which;
 * SHOAL_ENOTFOUND when absent). */
struct shoal_pmap *shoal_piecemap_get(struct shoal_piecemap *m,
                                      const unsigned char hash[SHOAL_HASH_BYTES],
                                      uint64_t len, struct shoal_err *err);
const unsigned char *shoal_pmap_bytes(const struct shoal_pmap *p);
void shoal_piecemap_put(struct shoal_piecemap *m, struct shoal_pmap *p);

/* The store removed the piece hash: no new reference finds its map. */
void shoal_piecemap_forget(struct shoal_piecemap *m,
                           const unsigned char hash[SHOAL_HASH_BYTES]);

/* Requests answered from a map already there, and maps made. */
void shoal_piecemap_stats(struct shoal_piecemap *m, uint64_t *hits,
                          uint64_t *misses, uint64_t *bytes);

#endif
