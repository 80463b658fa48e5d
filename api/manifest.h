/*
 * manifest.h - what a file version is made of, its Merkle root, and the
 * broker's signature over it (X-Sign).
 *
 * Pieces: a file of size S with piece size P has ceil(S / P) pieces; every
 * piece is P bytes but the last, which holds the rest (S = 0: no piece).
 * P is a power of two from 16 KiB to 16 MiB.
 *
 * Root: the SHA-256 Merkle root of the piece hashes.  The leaves are the
 * piece hashes, padded with zero hashes (32 zero bytes) up to a power of
 * two; a parent is SHA-256(left || right).  One piece: the root is its
 * hash.  No piece: the root is 32 zero bytes.
 *
 * Signature: Ed25519 by the broker over the text
 *   "shoal-manifest-v1\n<file_id>\n<version>\n<size>\n<piece_size>\n"
 *   "<root hex>\n<expires unix>\n"
 * (file_id lowercase, numbers in decimal without leading zeros).  It
 * travels in the header
 *   X-Sign: v=1; key=<broker id>; ver=<version>; size=<bytes>;
 *           piece=<piece size>; root=<hex>; exp=<unix>; sig=<base64>
 * on one line, fields in that order, separated by "; ".
 *
 * Injected objects (docs/protocol.md, section 14) are signed over the text
 *   "shoal-inject-v1\n<file_id>\n<version>\n<size>\n<piece_size>\n"
 *   "<root hex>\n<expires unix>\n<meta hex>\n"
 * where meta is the SHA-256 of the object's metadata text (injmeta.h),
 * and their X-Sign carries one more field before sig:
 *   …; exp=<unix>; meta=<hex>; sig=<base64>
 * A value without meta is a plain file's, signed as shoal-manifest-v1.
 */
#ifndef SHOAL_MANIFEST_H
#define SHOAL_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "keys.h"

#define SHOAL_HASH_BYTES 32
#define SHOAL_PIECE_DEFAULT 524288u
#define SHOAL_PIECE_MIN 16384u
#define SHOAL_PIECE_MAX 16777216u
#define SHOAL_XSIGN_MAX 400            /* longest X-Sign value, with NUL */

/* 1 when p is a power of two from SHOAL_PIECE_MIN to SHOAL_PIECE_MAX. */
int shoal_piece_size_valid(uint64_t p);

/* Number of pieces of a file of size bytes (piece_size valid). */
uint64_t shoal_piece_count(uint64_t size, uint32_t piece_size);

/* Length of piece n (n < count). */
uint32_t shoal_piece_len(uint64_t size, uint32_t piece_size, uint64_t n);

/* SHA-256 (OpenSSL, SHA-NI where the CPU has it). */
void shoal_sha256(const void *data, size_t len,
                  unsigned char out[SHOAL_HASH_BYTES]);

/* Incremental SHA-256 over a piece that arrives in parts.  _new returns
 * NULL on ENOMEM; _final writes the digest and frees the context; _free
 * frees without a digest (accepts NULL). */
struct shoal_sha256_ctx;
struct shoal_sha256_ctx *shoal_sha256_new(void);
void shoal_sha256_update(struct shoal_sha256_ctx *c, const void *data,
                         size_t len);
void shoal_sha256_final(struct shoal_sha256_ctx *c,
                        unsigned char out[SHOAL_HASH_BYTES]);
void shoal_sha256_free(struct shoal_sha256_ctx *c);

/* Merkle root of n piece hashes (n may be 0).  Uses O(log n) memory
 * beyond the input. */
void shoal_merkle_root(const unsigned char (*hashes)[SHOAL_HASH_BYTES],
                       uint64_t n, unsigned char root[SHOAL_HASH_BYTES]);

/* A signed manifest statement: everything X-Sign carries. */
struct shoal_xsign {
    char key[37];                      /* broker id (lowercase UUID) */
    uint64_t version;
    uint64_t size;
    uint32_t piece_size;
    unsigned char root[SHOAL_HASH_BYTES];
    int64_t expires;                   /* unix seconds */
    int has_meta;                      /* an injected object (meta below) */
    unsigned char meta[SHOAL_HASH_BYTES];   /* SHA-256 of its metadata */
    unsigned char sig[SHOAL_SIG_BYTES];
};

/* The exact text that is signed, into out (NUL-terminated).  Returns its
 * length, or -1 when cap is too small, file_id is not a canonical UUID
 * (any case; it is written in lowercase) or expires is negative. */
int shoal_manifest_text(const char *file_id, uint64_t version, uint64_t size,
                        uint32_t piece_size,
                        const unsigned char root[SHOAL_HASH_BYTES],
                        int64_t expires, char *out, size_t cap);

/* The text signed for an injected object (shoal-inject-v1: the manifest
 * text's fields, then the metadata hash), into out; as
 * shoal_manifest_text. */
int shoal_inject_text(const char *file_id, uint64_t version, uint64_t size,
                      uint32_t piece_size,
                      const unsigned char root[SHOAL_HASH_BYTES],
                      int64_t expires,
                      const unsigned char meta[SHOAL_HASH_BYTES], char *out,
                      size_t cap);

/* Sign: fills x->sig for file_id (over the inject text when x->has_meta) with the broker's secret key; the other
 * fields of x must be set.  When shoal_manifest_text refuses them, x->sig
 * is zeroed (it never verifies). */
void shoal_xsign_sign(struct shoal_xsign *x, const char *file_id,
                      const unsigned char sk[SHOAL_SK_BYTES]);

/* The header value of x into out[SHOAL_XSIGN_MAX]. */
void shoal_xsign_format(const struct shoal_xsign *x, char out[SHOAL_XSIGN_MAX]);

/* Parse a header value (strict: every field, in order; key a lowercase
 * UUID, numbers without leading zeros that fit, piece a valid piece size,
 * exp at most INT64_MAX; meta, when present, 64 lowercase hex digits).  -1 with SHOAL_EINVAL naming what is wrong; x is
 * left alone then. */
int shoal_xsign_parse(const char *value, struct shoal_xsign *x,
                      struct shoal_err *err);

/* Verify x for file_id against the broker key pk at time now: the
 * signature must be valid (over the inject text when x->has_meta: the
 * caller then also checks that the metadata it holds hashes to x->meta)
 * and unexpired.  -1 with SHOAL_EPROTO
 * ("signature invalid" / "signature expired"). */
int shoal_xsign_verify(const struct shoal_xsign *x, const char *file_id,
                       const unsigned char pk[SHOAL_PK_BYTES], int64_t now,
                       struct shoal_err *err);

#endif
