/*
 * manifest.c - pieces, SHA-256 (OpenSSL), the Merkle root of a file
 * version, the signed manifest text and the X-Sign header.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "manifest.h"
#include "util.h"

#define TEXT_MAX 384                   /* the longest texts: 193 (manifest),
                                          254 (inject) */
#define SIG_B64_LEN 88                 /* padded base64 of 64 bytes */

int shoal_piece_size_valid(uint64_t p)
{
    return p >= SHOAL_PIECE_MIN && p <= SHOAL_PIECE_MAX && (p & (p - 1)) == 0;
}

/* size / p rounded up, without the overflow of (size + p - 1) / p. */
uint64_t shoal_piece_count(uint64_t size, uint32_t piece_size)
{
    if (piece_size == 0)
        return 0;
    return size / piece_size + (size % piece_size != 0);
}

/* 0 for an n out of range. */
uint32_t shoal_piece_len(uint64_t size, uint32_t piece_size, uint64_t n)
{
    uint64_t count = shoal_piece_count(size, piece_size);

    if (n >= count)
        return 0;
    if (n + 1 < count)
        return piece_size;
    return (uint32_t)(size - n * piece_size);  /* n * piece_size < size */
}

/*
 * SHA-256.  The digest is fetched once: with OpenSSL 3 an implicit
 * EVP_sha256() is looked up again on every init, which costs more than
 * hashing the 64 bytes of a Merkle node.  A failure of OpenSSL here is
 * not something a caller can handle: abort.
 */
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_fetched;

static void md_fetch(void)
{
    md_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *md_sha256(void)
{
    if (pthread_once(&md_once, md_fetch) != 0 || md_fetched == NULL)
        return EVP_sha256();
    return md_fetched;
}

static void sha256_fail(void)
{
    fputs("shoal: OpenSSL SHA-256 failed\n", stderr);
    abort();
}

void shoal_sha256(const void *data, size_t len,
                  unsigned char out[SHOAL_HASH_BYTES])
{
    unsigned int outlen = 0;

    if (EVP_Digest(len > 0 ? data : "", len, out, &outlen, md_sha256(),
                   NULL) != 1 || outlen != SHOAL_HASH_BYTES)
        sha256_fail();
}

struct shoal_sha256_ctx {
    EVP_MD_CTX *md;
};

struct shoal_sha256_ctx *shoal_sha256_new(void)
{
    struct shoal_sha256_ctx *c = malloc(sizeof(*c));

    if (c == NULL)
        return NULL;
    c->md = EVP_MD_CTX_new();
    if (c->md == NULL || EVP_DigestInit_ex(c->md, md_sha256(), NULL) != 1) {
        shoal_sha256_free(c);
        return NULL;
    }
    return c;
}

void shoal_sha256_update(struct shoal_sha256_ctx *c, const void *data,
                         size_t len)
{
    if (len > 0 && EVP_DigestUpdate(c->md, data, len) != 1)
        sha256_fail();
}

void shoal_sha256_final(struct shoal_sha256_ctx *c,
                        unsigned char out[SHOAL_HASH_BYTES])
{
    unsigned int outlen = 0;

    if (EVP_DigestFinal_ex(c->md, out, &outlen) != 1 ||
        outlen != SHOAL_HASH_BYTES)
        sha256_fail();
    shoal_sha256_free(c);
}

void shoal_sha256_free(struct shoal_sha256_ctx *c)
{
    if (c == NULL)
        return;
    EVP_MD_CTX_free(c->md);
    free(c);
}

/* out = SHA-256(left || right); out may alias either input.  md is a
 * context reused from node to node (saves an allocation per node), or
 * NULL. */
static void node_hash(EVP_MD_CTX *md, const unsigned char left[SHOAL_HASH_BYTES],
                      const unsigned char right[SHOAL_HASH_BYTES],
                      unsigned char out[SHOAL_HASH_BYTES])
{
    unsigned char both[2 * SHOAL_HASH_BYTES];
    unsigned int outlen = 0;

    memcpy(both, left, SHOAL_HASH_BYTES);
    memcpy(both + SHOAL_HASH_BYTES, right, SHOAL_HASH_BYTES);
    if (md == NULL) {
        shoal_sha256(both, sizeof(both), out);
        return;
    }
    if (EVP_DigestInit_ex(md, NULL, NULL) != 1 ||
        EVP_DigestUpdate(md, both, sizeof(both)) != 1 ||
        EVP_DigestFinal_ex(md, out, &outlen) != 1 || outlen != SHOAL_HASH_BYTES)
        sha256_fail();
}

/*
 * The leaves go in one by one onto a stack of complete subtrees: after i
 * leaves, level l holds the root of a complete subtree of 2^l leaves
 * exactly when bit l of i is set (like a binary counter, whose carries are
 * the parent hashes).  At the end the partial subtrees are closed from the
 * bottom up, each missing right sibling being the root of an all-zero
 * subtree of its level (Z0 = 32 zero bytes, Z(l+1) = H(Zl || Zl)).
 * Memory: 65 levels of 32 bytes, whatever n is.
 */
void shoal_merkle_root(const unsigned char (*hashes)[SHOAL_HASH_BYTES],
                       uint64_t n, unsigned char root[SHOAL_HASH_BYTES])
{
    unsigned char level[65][SHOAL_HASH_BYTES];
    unsigned char cur[SHOAL_HASH_BYTES];
    unsigned char zero[SHOAL_HASH_BYTES];
    EVP_MD_CTX *md;
    int have_cur = 0;
    int depth = 0;
    uint64_t i;
    int l;

    if (n == 0) {
        memset(root, 0, SHOAL_HASH_BYTES);
        return;
    }
    md = EVP_MD_CTX_new();
    if (md != NULL && EVP_DigestInit_ex(md, md_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        md = NULL;
    }
    for (i = 0; i < n; i++) {
        memcpy(cur, hashes[i], SHOAL_HASH_BYTES);
        /* Carry: the set low bits of i are the subtrees cur completes. */
        for (l = 0; (i >> l) & 1; l++)
            node_hash(md, level[l], cur, cur);
        memcpy(level[l], cur, SHOAL_HASH_BYTES);
    }
    /* depth = ceil(log2(n)): the padded tree has 2^depth leaves. */
    while (depth < 64 && ((uint64_t)1 << depth) < n)
        depth++;
    if ((n & (n - 1)) != 0) {
        memset(zero, 0, SHOAL_HASH_BYTES);
        for (l = 0; l < depth; l++) {
            if ((n >> l) & 1) {
                node_hash(md, level[l], have_cur ? cur : zero, cur);
                have_cur = 1;
            } else if (have_cur) {
                node_hash(md, cur, zero, cur);
            }
            node_hash(md, zero, zero, zero);    /* Z(l+1) */
        }
        memcpy(root, cur, SHOAL_HASH_BYTES);
    } else {
        /* n is a power of two: one complete tree. */
        memcpy(root, level[depth], SHOAL_HASH_BYTES);
    }
    EVP_MD_CTX_free(md);
}

int shoal_manifest_text(const char *file_id, uint64_t version, uint64_t size,
                        uint32_t piece_size,
                        const unsigned char root[SHOAL_HASH_BYTES],
                        int64_t expires, char *out, size_t cap)
{
    char id[37];
    char hex[2 * SHOAL_HASH_BYTES + 1];
    int n;

    if (cap > 0)
        out[0] = '\0';
    if (shoal_uuid_normalize(file_id, id, "file_id", NULL) != 0 || expires < 0)
        return -1;
    shoal_hex_encode(root, SHOAL_HASH_BYTES, hex);
    n = snprintf(out, cap,
                 "shoal-manifest-v1\n%s\n%" PRIu64 "\n%" PRIu64 "\n%" PRIu32
                 "\n%s\n%" PRId64 "\n",
                 id, version, size, piece_size, hex, expires);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return -1;
    }
    return n;
}

int shoal_inject_text(const char *file_id, uint64_t version, uint64_t size,
                      uint32_t piece_size,
                      const unsigned char root[SHOAL_HASH_BYTES],
                      int64_t expires,
                      const unsigned char meta[SHOAL_HASH_BYTES], char *out,
                      size_t cap)
{
    char manifest[TEXT_MAX];
    char hex[2 * SHOAL_HASH_BYTES + 1];
    int n;

    if (cap > 0)
        out[0] = '\0';
    /* The manifest text's lines after its first, then the meta line. */
    if (shoal_manifest_text(file_id, version, size, piece_size, root, expires,
                            manifest, sizeof(manifest)) < 0)
        return -1;
    shoal_hex_encode(meta, SHOAL_HASH_BYTES, hex);
    n = snprintf(out, cap, "shoal-inject-v1\n%s%s\n",
                 strchr(manifest, '\n') + 1, hex);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return -1;
    }
    return n;
}

/* The text x is signed over, for file_id: its length, or -1. */
static int signed_text(const struct shoal_xsign *x, const char *file_id,
                       char text[TEXT_MAX])
{
    if (x->has_meta)
        return shoal_inject_text(file_id, x->version, x->size, x->piece_size,
                                 x->root, x->expires, x->meta, text, TEXT_MAX);
    return shoal_manifest_text(file_id, x->version, x->size, x->piece_size,
                               x->root, x->expires, text, TEXT_MAX);
}

void shoal_xsign_sign(struct shoal_xsign *x, const char *file_id,
                      const unsigned char sk[SHOAL_SK_BYTES])
{
    char text[TEXT_MAX];
    int n;

    n = signed_text(x, file_id, text);
    if (n < 0) {
        memset(x->sig, 0, SHOAL_SIG_BYTES);    /* never verifies */
        return;
    }
    shoal_sign(sk, (const unsigned char *)text, (size_t)n, x->sig);
}

void shoal_xsign_format(const struct shoal_xsign *x, char out[SHOAL_XSIGN_MAX])
{
    char hex[2 * SHOAL_HASH_BYTES + 1];
    char meta[2 * SHOAL_HASH_BYTES + 8];
    char b64[SIG_B64_LEN + 1];

    shoal_hex_encode(x->root, SHOAL_HASH_BYTES, hex);
    meta[0] = '\0';
    if (x->has_meta) {
        memcpy(meta, "; meta=", 7);
        shoal_hex_encode(x->meta, SHOAL_HASH_BYTES, meta + 7);
    }
    sodium_bin2base64(b64, sizeof(b64), x->sig, SHOAL_SIG_BYTES,
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(out, SHOAL_XSIGN_MAX,
             "v=1; key=%s; ver=%" PRIu64 "; size=%" PRIu64 "; piece=%" PRIu32
             "; root=%s; exp=%" PRId64 "%s; sig=%s",
             x->key, x->version, x->size, x->piece_size, hex, x->expires, meta,
             b64);
}

/* Skip the literal lit at *p.  0 when it is there. */
static int take_lit(const char **p, const char *lit)
{
    size_t n = strlen(lit);

    if (strncmp(*p, lit, n) != 0)
        return -1;
    *p += n;
    return 0;
}

/* A decimal number at *p of at most max, without sign or leading zeros,
 * followed by end or ';'. */
static int take_num(const char **p, uint64_t max, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;

    if (*s < '0' || *s > '9' || (s[0] == '0' && s[1] >= '0' && s[1] <= '9'))
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');

        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (*s != ';' && *s != '\0')
        return -1;
    *p = s;
    *out = v;
    return 0;
}

/* The characters at *p up to ';' or the end, into buf[cap]. */
static int take_token(const char **p, char *buf, size_t cap)
{
    size_t n = strcspn(*p, ";");

    if (n >= cap)
        return -1;
    memcpy(buf, *p, n);
    buf[n] = '\0';
    *p += n;
    return 0;
}

static int bad_field(struct shoal_err *err, const char *field, const char *what)
{
    return shoal_err_set(err, SHOAL_EINVAL, "'X-Sign' field '%s' %s", field,
                         what);
}

int shoal_xsign_parse(const char *value, struct shoal_xsign *x,
                      struct shoal_err *err)
{
    struct shoal_xsign t;
    const char *p = value;
    char tok[2 * SHOAL_HASH_BYTES + 2];
    uint64_t num;
    size_t i;

    memset(&t, 0, sizeof(t));
    if (value == NULL || strnlen(value, SHOAL_XSIGN_MAX) >= SHOAL_XSIGN_MAX)
        return shoal_err_set(err, SHOAL_EINVAL, "'X-Sign' is missing or too long");
    if (take_lit(&p, "v=") != 0)
        return shoal_err_set(err, SHOAL_EINVAL, "'X-Sign' must start with 'v='");
    if (take_lit(&p, "1") != 0 || (*p != ';' && *p != '\0'))
        return shoal_err_set(err, SHOAL_EINVAL, "'X-Sign' version is not 1");

    if (take_lit(&p, "; key=") != 0)
        return bad_field(err, "key", "is missing or out of place");
    if (take_token(&p, tok, sizeof(tok)) != 0 || !shoal_uuid_valid(tok))
        return bad_field(err, "key", "must be a lowercase UUID");
    for (i = 0; tok[i] != '\0'; i++)
        if (tok[i] >= 'A' && tok[i] <= 'F')
            return bad_field(err, "key", "must be a lowercase UUID");
    memcpy(t.key, tok, sizeof(t.key));

    if (take_lit(&p, "; ver=") != 0)
        return bad_field(err, "ver", "is missing or out of place");
    if (take_num(&p, UINT64_MAX, &t.version) != 0)
        return bad_field(err, "ver", "must be a decimal number");

    if (take_lit(&p, "; size=") != 0)
        return bad_field(err, "size", "is missing or out of place");
    if (take_num(&p, UINT64_MAX, &t.size) != 0)
        return bad_field(err, "size", "must be a decimal number");

    if (take_lit(&p, "; piece=") != 0)
        return bad_field(err, "piece", "is missing or out of place");
    if (take_num(&p, UINT32_MAX, &num) != 0 || !shoal_piece_size_valid(num))
        return bad_field(err, "piece",
                         "must be a power of two from 16384 to 16777216");
    t.piece_size = (uint32_t)num;

    if (take_lit(&p, "; root=") != 0)
        return bad_field(err, "root", "is missing or out of place");
    if (take_token(&p, tok, sizeof(tok)) != 0 ||
        shoal_hex_decode_exact(tok, t.root, SHOAL_HASH_BYTES, "root", NULL) != 0)
        return bad_field(err, "root", "must be 64 lowercase hex digits");

    if (take_lit(&p, "; exp=") != 0)
        return bad_field(err, "exp", "is missing or out of place");
    if (take_num(&p, INT64_MAX, &num) != 0)
        return bad_field(err, "exp", "must be a decimal number");
    t.expires = (int64_t)num;

    if (take_lit(&p, "; meta=") == 0) {
        if (take_token(&p, tok, sizeof(tok)) != 0 ||
            shoal_hex_decode_exact(tok, t.meta, SHOAL_HASH_BYTES, "meta", NULL) != 0)
            return bad_field(err, "meta", "must be 64 lowercase hex digits");
        t.has_meta = 1;
    }

    if (take_lit(&p, "; sig=") != 0)
        return bad_field(err, "sig", "is missing or out of place");
    /* The rest of the value: exactly 88 characters of padded base64. */
    if (strchr(p, ';') != NULL)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'X-Sign' has something after field 'sig'");
    if (shoal_b64_decode_exact(p, t.sig, SHOAL_SIG_BYTES, "sig", NULL) != 0)
        return bad_field(err, "sig", "must be padded base64 of 64 bytes");

    *x = t;
    return 0;
}

int shoal_xsign_verify(const struct shoal_xsign *x, const char *file_id,
                       const unsigned char pk[SHOAL_PK_BYTES], int64_t now,
                       struct shoal_err *err)
{
    char text[TEXT_MAX];
    int n;

    n = signed_text(x, file_id, text);
    if (n < 0 || shoal_sign_verify(pk, (const unsigned char *)text,
                                   (size_t)n, x->sig) != 0)
        return shoal_err_set(err, SHOAL_EPROTO, "signature invalid");
    if (now > x->expires)
        return shoal_err_set(err, SHOAL_EPROTO, "signature expired");
    return 0;
}
