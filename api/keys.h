/*
 * keys.h - Ed25519 key pairs and secrets (libsodium).
 */
#ifndef SHOAL_KEYS_H
#define SHOAL_KEYS_H

#include <stddef.h>
#include "err.h"

#define SHOAL_PK_BYTES 32
#define SHOAL_SK_BYTES 64
#define SHOAL_SIG_BYTES 64

/* sodium_init once; -1 when libsodium cannot start. */
int shoal_crypto_init(struct shoal_err *err);

/* A fresh Ed25519 key pair. */
void shoal_keypair_new(unsigned char pk[SHOAL_PK_BYTES],
                       unsigned char sk[SHOAL_SK_BYTES]);

/* Load the key pair kept at path (JSON {"public_key","secret_key"} in
 * base64, mode 0600), creating it when the file does not exist.  Refuses a
 * file readable by group or others. */
int shoal_keypair_load_or_create(const char *path,
                                 unsigned char pk[SHOAL_PK_BYTES],
                                 unsigned char sk[SHOAL_SK_BYTES],
                                 struct shoal_err *err);

/* Detached Ed25519 signature of msg. */
void shoal_sign(const unsigned char sk[SHOAL_SK_BYTES],
                const unsigned char *msg, size_t len,
                unsigned char sig[SHOAL_SIG_BYTES]);

/* 0 when sig is a valid signature of msg by pk, -1 otherwise. */
int shoal_sign_verify(const unsigned char pk[SHOAL_PK_BYTES],
                      const unsigned char *msg, size_t len,
                      const unsigned char sig[SHOAL_SIG_BYTES]);

/* Load a 32-byte secret kept in hex at path (mode 0600), creating it with
 * random bytes when the file does not exist. */
int shoal_secret_load_or_create(const char *path, unsigned char key[32],
                                struct shoal_err *err);

/* Keyed BLAKE2b-256 of msg. */
void shoal_keyed_hash(const unsigned char key[32], const void *msg,
                      size_t len, unsigned char out[32]);

/* Constant-time comparison: 0 when equal. */
int shoal_ct_equal(const void *a, const void *b, size_t len);

#endif
