/*
 * keys.c - Ed25519 key pairs, 32-byte secrets, keyed hashes (libsodium).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "keys.h"
#include "util.h"

#define KEY_FILE_MAX 4096

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ok;

static void sodium_start(void)
{
    sodium_ok = sodium_init() >= 0;
}

int shoal_crypto_init(struct shoal_err *err)
{
    if (pthread_once(&sodium_once, sodium_start) != 0 || !sodium_ok)
        return shoal_err_set(err, SHOAL_EINTERNAL, "cannot initialise libsodium");
    return 0;
}

/* For the functions that cannot report: random keys must not be made
 * without a working libsodium. */
static void crypto_must_init(void)
{
    if (shoal_crypto_init(NULL) != 0) {
        fputs("shoal: cannot initialise libsodium\n", stderr);
        abort();
    }
}

void shoal_keypair_new(unsigned char pk[SHOAL_PK_BYTES],
                       unsigned char sk[SHOAL_SK_BYTES])
{
    crypto_must_init();
    if (crypto_sign_keypair(pk, sk) != 0) {
        fputs("shoal: cannot make an Ed25519 key pair\n", stderr);
        abort();
    }
}

/*
 * Read the key file at path into a new NUL-terminated buffer (*out, to be
 * wiped and freed by the caller).  0 when read, 1 when the file does not
 * exist, -1 on error, including a file that group or others may access.
 */
static int read_private(const char *path, char **out, struct shoal_err *err)
{
    struct stat st;
    char *buf = NULL;
    size_t used = 0;
    int fd;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 1;
    if (fd < 0)
        return shoal_err_set(err, SHOAL_EIO, "cannot open '%s': %s", path,
                             strerror(errno));
    if (fstat(fd, &st) != 0) {
        shoal_err_set(err, SHOAL_EIO, "cannot stat '%s': %s", path,
                      strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        shoal_err_set(err, SHOAL_EIO, "'%s' is not a regular file", path);
        goto fail;
    }
    if ((st.st_mode & 077) != 0) {
        shoal_err_set(err, SHOAL_EIO, "'%s' is accessible by group or others "
                      "(mode %04o); it must be 0600", path,
                      (unsigned)(st.st_mode & 07777));
        goto fail;
    }
    buf = malloc(KEY_FILE_MAX + 1);
    if (buf == NULL) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto fail;
    }
    for (;;) {
        ssize_t n = read(fd, buf + used, KEY_FILE_MAX + 1 - used);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            shoal_err_set(err, SHOAL_EIO, "cannot read '%s': %s", path,
                          strerror(errno));
            goto fail;
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used > KEY_FILE_MAX) {
            shoal_err_set(err, SHOAL_EIO, "'%s' is too large for a key file",
                          path);
            goto fail;
        }
    }
    close(fd);
    buf[used] = '\0';
    *out = buf;
    return 0;
fail:
    if (buf != NULL) {
        sodium_memzero(buf, KEY_FILE_MAX + 1);
        free(buf);
    }
    close(fd);
    return -1;
}

static void free_secret_text(char *s)
{
    if (s == NULL)
        return;
    sodium_memzero(s, strlen(s));
    free(s);
}

static int keypair_create(const char *path, unsigned char pk[SHOAL_PK_BYTES],
                          unsigned char sk[SHOAL_SK_BYTES],
                          struct shoal_err *err)
{
    char *pk64 = NULL;
    char *sk64 = NULL;
    char *text = NULL;
    int rc = -1;

    shoal_keypair_new(pk, sk);
    pk64 = shoal_b64_encode(pk, SHOAL_PK_BYTES);
    sk64 = shoal_b64_encode(sk, SHOAL_SK_BYTES);
    /* Built by hand so that no JSON library copy of the secret lingers;
     * base64 needs no escaping. */
    if (pk64 == NULL || sk64 == NULL ||
        asprintf(&text, "{\"public_key\": \"%s\", \"secret_key\": \"%s\"}\n",
                 pk64, sk64) < 0) {
        text = NULL;
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    rc = shoal_file_write_atomic(path, text, strlen(text), 0600, err);
out:
    free_secret_text(text);
    free_secret_text(sk64);
    free(pk64);
    if (rc != 0)
        sodium_memzero(sk, SHOAL_SK_BYTES);
    return rc;
}

int shoal_keypair_load_or_create(const char *path,
                                 unsigned char pk[SHOAL_PK_BYTES],
                                 unsigned char sk[SHOAL_SK_BYTES],
                                 struct shoal_err *err)
{
    unsigned char derived[SHOAL_PK_BYTES];
    struct shoal_err e;
    const char *pk64;
    const char *sk64;
    json_t *doc = NULL;
    char *text = NULL;
    int rc = -1;
    int r;

    if (shoal_crypto_init(err) != 0)
        return -1;
    r = read_private(path, &text, err);
    if (r < 0)
        goto out;
    if (r == 1)
        return keypair_create(path, pk, sk, err);
    doc = json_loads(text, 0, NULL);
    if (doc == NULL) {
        shoal_err_set(err, SHOAL_EIO, "invalid key file '%s': not JSON", path);
        goto out;
    }
    if (shoal_json_str(doc, "public_key", &pk64, &e) != 0 ||
        shoal_json_str(doc, "secret_key", &sk64, &e) != 0 ||
        shoal_b64_decode_exact(pk64, pk, SHOAL_PK_BYTES, "public_key", &e) != 0 ||
        shoal_b64_decode_exact(sk64, sk, SHOAL_SK_BYTES, "secret_key", &e) != 0) {
        shoal_err_set(err, SHOAL_EIO, "invalid key file '%s': %s", path, e.msg);
        goto out;
    }
    if (crypto_sign_ed25519_sk_to_pk(derived, sk) != 0 ||
        sodium_memcmp(derived, pk, SHOAL_PK_BYTES) != 0) {
        shoal_err_set(err, SHOAL_EIO, "invalid key file '%s': the public key "
                      "does not match the secret key", path);
        goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        sodium_memzero(sk, SHOAL_SK_BYTES);
    json_decref(doc);
    free_secret_text(text);
    return rc;
}

void shoal_sign(const unsigned char sk[SHOAL_SK_BYTES],
                const unsigned char *msg, size_t len,
                unsigned char sig[SHOAL_SIG_BYTES])
{
    /* Cannot fail for a well-formed secret key. */
    if (crypto_sign_detached(sig, NULL, msg, len, sk) != 0)
        memset(sig, 0, SHOAL_SIG_BYTES);
}

int shoal_sign_verify(const unsigned char pk[SHOAL_PK_BYTES],
                      const unsigned char *msg, size_t len,
                      const unsigned char sig[SHOAL_SIG_BYTES])
{
    return crypto_sign_verify_detached(sig, msg, len, pk) == 0 ? 0 : -1;
}

int shoal_secret_load_or_create(const char *path, unsigned char key[32],
                                struct shoal_err *err)
{
    struct shoal_err e;
    char hex[65];
    char *text = NULL;
    size_t len;
    int rc = -1;
    int r;

    if (shoal_crypto_init(err) != 0)
        return -1;
    r = read_private(path, &text, err);
    if (r < 0)
        goto out;
    if (r == 1) {
        randombytes_buf(key, 32);
        shoal_hex_encode(key, 32, hex);
        hex[64] = '\n';
        rc = shoal_file_write_atomic(path, hex, sizeof(hex), 0600, err);
        sodium_memzero(hex, sizeof(hex));
        goto out;
    }
    len = strlen(text);
    if (len > 0 && text[len - 1] == '\n')
        text[len - 1] = '\0';
    if (shoal_hex_decode_exact(text, key, 32, "secret", &e) != 0) {
        shoal_err_set(err, SHOAL_EIO, "invalid secret file '%s': it must "
                      "hold 64 lowercase hex digits", path);
        goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        sodium_memzero(key, 32);
    free_secret_text(text);
    return rc;
}

void shoal_keyed_hash(const unsigned char key[32], const void *msg,
                      size_t len, unsigned char out[32])
{
    /* Cannot fail with these fixed, valid lengths; a constant hash would
     * make every keyed value equal, so never return one. */
    if (crypto_generichash(out, 32, msg, len, key, 32) != 0) {
        fputs("shoal: keyed hash failed\n", stderr);
        abort();
    }
}

int shoal_ct_equal(const void *a, const void *b, size_t len)
{
    return sodium_memcmp(a, b, len) == 0 ? 0 : -1;
}
