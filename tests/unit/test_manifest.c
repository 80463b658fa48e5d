/* Unit tests of api/manifest.c: pieces, SHA-256, Merkle roots, the signed
 * text, X-Sign, and the test vector of docs/protocol.md. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "keys.h"
#include "manifest.h"
#include "util.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)

#define FILE_ID "5f0c6b9e-3d1a-4c2e-9b7a-2e8f1d4c6a30"
#define BROKER_ID "e36cad8f-9ebf-453d-911a-06e5889cee10"

static int setup(void **state)
{
    (void)state;
    return shoal_crypto_init(NULL);
}

static void hex_of(const unsigned char *bin, size_t len, char *out)
{
    shoal_hex_encode(bin, len, out);
}

static void assert_hash_hex(const unsigned char h[SHOAL_HASH_BYTES],
                            const char *want)
{
    char hex[2 * SHOAL_HASH_BYTES + 1];

    hex_of(h, SHOAL_HASH_BYTES, hex);
    assert_string_equal(hex, want);
}

/* --- pieces ------------------------------------------------------------ */

static void test_piece_size_valid(void **state)
{
    (void)state;
    assert_false(shoal_piece_size_valid(0));
    assert_false(shoal_piece_size_valid(1));
    assert_false(shoal_piece_size_valid(8192));
    assert_true(shoal_piece_size_valid(16384));
    assert_false(shoal_piece_size_valid(16385));
    assert_false(shoal_piece_size_valid(24576));
    assert_true(shoal_piece_size_valid(SHOAL_PIECE_DEFAULT));
    assert_false(shoal_piece_size_valid(SHOAL_PIECE_DEFAULT + 1));
    assert_true(shoal_piece_size_valid(16 * MiB));
    assert_false(shoal_piece_size_valid(32 * MiB));
    assert_false(shoal_piece_size_valid(1ull << 40));
    assert_false(shoal_piece_size_valid((1ull << 32) + 16384));
}

static void test_piece_count_len(void **state)
{
    const uint32_t p = SHOAL_PIECE_DEFAULT;
    const uint64_t big = 1ull << 53;

    (void)state;
    /* Empty file: no piece. */
    assert_int_equal(shoal_piece_count(0, p), 0);
    assert_int_equal(shoal_piece_len(0, p, 0), 0);
    /* One byte, one short piece. */
    assert_int_equal(shoal_piece_count(1, p), 1);
    assert_int_equal(shoal_piece_len(1, p, 0), 1);
    /* One byte short of a piece. */
    assert_int_equal(shoal_piece_count(p - 1, p), 1);
    assert_int_equal(shoal_piece_len(p - 1, p, 0), p - 1);
    /* Exactly one piece. */
    assert_int_equal(shoal_piece_count(p, p), 1);
    assert_int_equal(shoal_piece_len(p, p, 0), p);
    assert_int_equal(shoal_piece_len(p, p, 1), 0);
    /* One byte more: a second piece of 1 byte. */
    assert_int_equal(shoal_piece_count(p + 1, p), 2);
    assert_int_equal(shoal_piece_len(p + 1, p, 0), p);
    assert_int_equal(shoal_piece_len(p + 1, p, 1), 1);
    /* 12 GiB: 24576 whole pieces, beyond 32-bit sizes. */
    assert_int_equal(shoal_piece_count(12 * GiB, p), 24576);
    assert_int_equal(shoal_piece_len(12 * GiB, p, 24575), p);
    assert_int_equal(shoal_piece_len(12 * GiB, p, 24576), 0);
    assert_int_equal(shoal_piece_count(12 * GiB + 1, p), 24577);
    assert_int_equal(shoal_piece_len(12 * GiB + 1, p, 24576), 1);
    assert_int_equal(shoal_piece_count(12 * GiB - 1, p), 24576);
    assert_int_equal(shoal_piece_len(12 * GiB - 1, p, 24575), p - 1);
    /* 2^53 bytes: 2^34 pieces, a count that needs 64 bits. */
    assert_true(shoal_piece_count(big, p) == (1ull << 34));
    assert_int_equal(shoal_piece_len(big, p, (1ull << 34) - 1), p);
    assert_true(shoal_piece_count(big + 1, p) == (1ull << 34) + 1);
    assert_int_equal(shoal_piece_len(big + 1, p, 1ull << 34), 1);
    assert_int_equal(shoal_piece_len(big + 1, p, (1ull << 34) - 1), p);
    /* The largest size does not overflow. */
    assert_true(shoal_piece_count(UINT64_MAX, 16 * MiB) == (1ull << 40));
    assert_int_equal(shoal_piece_len(UINT64_MAX, 16 * MiB, (1ull << 40) - 1),
                     16 * MiB - 1);
    assert_int_equal(shoal_piece_count(100, 16384), 1);
    assert_int_equal(shoal_piece_count(3 * 16384, 16384), 3);
    assert_int_equal(shoal_piece_len(3 * 16384 + 7, 16384, 3), 7);
}

/* --- SHA-256 ----------------------------------------------------------- */

static void test_sha256(void **state)
{
    unsigned char h[SHOAL_HASH_BYTES], h2[SHOAL_HASH_BYTES];
    struct shoal_sha256_ctx *c;
    unsigned char *big;
    size_t i, off, step;

    (void)state;
    /* FIPS 180-2 vectors. */
    shoal_sha256("", 0, h);
    assert_hash_hex(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    shoal_sha256(NULL, 0, h);
    assert_hash_hex(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    shoal_sha256("abc", 3, h);
    assert_hash_hex(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    big = malloc(1000000);
    assert_non_null(big);
    memset(big, 'a', 1000000);
    shoal_sha256(big, 1000000, h);
    assert_hash_hex(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

    /* Incremental, in uneven parts, equals one shot. */
    for (i = 0; i < 1000000; i++)
        big[i] = (unsigned char)(i * 7 + (i >> 9));
    shoal_sha256(big, 1000000, h);
    c = shoal_sha256_new();
    assert_non_null(c);
    for (off = 0, step = 1; off < 1000000; off += step, step = step * 3 + 1) {
        if (step > 1000000 - off)
            step = 1000000 - off;
        shoal_sha256_update(c, big + off, step);
        shoal_sha256_update(c, big, 0);
    }
    shoal_sha256_final(c, h2);
    assert_memory_equal(h, h2, SHOAL_HASH_BYTES);

    /* Nothing hashed: the empty hash.  _free without a digest. */
    c = shoal_sha256_new();
    shoal_sha256_final(c, h2);
    assert_hash_hex(h2, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    c = shoal_sha256_new();
    shoal_sha256_update(c, "abc", 3);
    shoal_sha256_free(c);
    shoal_sha256_free(NULL);
    free(big);
}

/* --- Merkle root ------------------------------------------------------- */

/* Leaf i of the tests: SHA-256 of "leaf <i>". */
static unsigned char (*make_leaves(uint64_t n))[SHOAL_HASH_BYTES]
{
    unsigned char (*l)[SHOAL_HASH_BYTES] = calloc(n ? n : 1, SHOAL_HASH_BYTES);
    char buf[32];
    uint64_t i;

    assert_non_null(l);
    for (i = 0; i < n; i++) {
        int len = snprintf(buf, sizeof(buf), "leaf %" PRIu64, i);

        shoal_sha256(buf, (size_t)len, l[i]);
    }
    return l;
}

/* The straightforward way: the whole padded bottom level in memory, then
 * level after level in place. */
static void naive_root(const unsigned char (*leaves)[SHOAL_HASH_BYTES],
                       uint64_t n, unsigned char root[SHOAL_HASH_BYTES])
{
    unsigned char (*lvl)[SHOAL_HASH_BYTES];
    unsigned char pair[2 * SHOAL_HASH_BYTES];
    uint64_t width = 1;
    uint64_t i;

    if (n == 0) {
        memset(root, 0, SHOAL_HASH_BYTES);
        return;
    }
    while (width < n)
        width *= 2;
    lvl = calloc(width, SHOAL_HASH_BYTES);     /* the padding is zeros */
    assert_non_null(lvl);
    memcpy(lvl, leaves, n * SHOAL_HASH_BYTES);
    for (; width > 1; width /= 2) {
        for (i = 0; i < width / 2; i++) {
            memcpy(pair, lvl[2 * i], SHOAL_HASH_BYTES);
            memcpy(pair + SHOAL_HASH_BYTES, lvl[2 * i + 1], SHOAL_HASH_BYTES);
            shoal_sha256(pair, sizeof(pair), lvl[i]);
        }
    }
    memcpy(root, lvl[0], SHOAL_HASH_BYTES);
    free(lvl);
}

/*
 * Fixed values, computed once with Python:
 * python3 -c "
 * import hashlib as h
 * H=lambda b:h.sha256(b).digest()
 * def root(n):
 *   L=[H(b'leaf %d'%i) for i in range(n)]
 *   if not L: return bytes(32)
 *   p=1
 *   while p<n: p*=2
 *   L+=[bytes(32)]*(p-n)
 *   while len(L)>1: L=[H(L[i]+L[i+1]) for i in range(0,len(L),2)]
 *   return L[0]
 * [print(n, root(n).hex()) for n in (0,1,2,3,4,5,1000)]"
 */
static void test_merkle_known(void **state)
{
    static const struct {
        uint64_t n;
        const char *root;
    } known[] = {
        {0, "0000000000000000000000000000000000000000000000000000000000000000"},
        {1, "20e325f06280f9d0d193fed01a0eda5bef79063f2e602d93e3605cbe825d96ad"},
        {2, "06f4672c8871ec3b0085b38a1682a938005d5fa05ef1366bf23b5f9eb46ff543"},
        {3, "4f6052cea31ccdd54b82fdffc8fddda9df3dad174d0a64797f3318fa554a490b"},
        {4, "e912c730a1e4726d70d2b02628e68440b78373a09fbfeffe43263500f3300a3c"},
        {5, "cf45cdecdb2436044d9c3fc60799c85faeb8c2978a42101249b547b85ef122e1"},
        {1000, "564156dc2123c3eead3d29077a9524ef3f7fa46e6fef1ca3b1d68f8f2ee62b4a"},
    };
    unsigned char (*leaves)[SHOAL_HASH_BYTES] = make_leaves(1000);
    unsigned char root[SHOAL_HASH_BYTES];
    unsigned char naive[SHOAL_HASH_BYTES];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        memset(root, 0xAA, sizeof(root));
        shoal_merkle_root(leaves, known[i].n, root);
        assert_hash_hex(root, known[i].root);
        naive_root(leaves, known[i].n, naive);
        assert_memory_equal(root, naive, SHOAL_HASH_BYTES);
    }
    /* One leaf: the root is the leaf itself. */
    shoal_merkle_root(leaves, 1, root);
    assert_memory_equal(root, leaves[0], SHOAL_HASH_BYTES);
    /* No leaf, no input needed. */
    shoal_merkle_root(NULL, 0, root);
    assert_hash_hex(root, known[0].root);
    free(leaves);
}

/* Every n up to 300, and around the powers of two up to 4097, against the
 * naive tree. */
static void test_merkle_vs_naive(void **state)
{
    static const uint64_t extra[] = {511, 512, 513, 1023, 1024, 1025, 2047,
                                     2048, 2049, 4095, 4096, 4097};
    unsigned char (*leaves)[SHOAL_HASH_BYTES] = make_leaves(4097);
    unsigned char root[SHOAL_HASH_BYTES];
    unsigned char naive[SHOAL_HASH_BYTES];
    uint64_t n;
    size_t i;

    (void)state;
    for (n = 0; n <= 300; n++) {
        shoal_merkle_root(leaves, n, root);
        naive_root(leaves, n, naive);
        assert_memory_equal(root, naive, SHOAL_HASH_BYTES);
    }
    for (i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
        shoal_merkle_root(leaves, extra[i], root);
        naive_root(leaves, extra[i], naive);
        assert_memory_equal(root, naive, SHOAL_HASH_BYTES);
    }
    /* Order matters, and so does every leaf. */
    shoal_merkle_root(leaves, 7, root);
    leaves[6][31] ^= 1;
    shoal_merkle_root(leaves, 7, naive);
    assert_memory_not_equal(root, naive, SHOAL_HASH_BYTES);
    free(leaves);
}

/* Padding is at the leaves only: the root of [a, b, 0] is that of
 * [a, b, 0, 0], and not that of [a, b]. */
static void test_merkle_padding_rule(void **state)
{
    unsigned char (*leaves)[SHOAL_HASH_BYTES] = make_leaves(4);
    unsigned char r2[SHOAL_HASH_BYTES], r3[SHOAL_HASH_BYTES];
    unsigned char r4[SHOAL_HASH_BYTES];

    (void)state;
    memset(leaves[2], 0, SHOAL_HASH_BYTES);
    memset(leaves[3], 0, SHOAL_HASH_BYTES);
    shoal_merkle_root(leaves, 2, r2);
    shoal_merkle_root(leaves, 3, r3);
    shoal_merkle_root(leaves, 4, r4);
    assert_memory_equal(r3, r4, SHOAL_HASH_BYTES);
    assert_memory_not_equal(r2, r3, SHOAL_HASH_BYTES);
    free(leaves);
}

/* --- the signed text ---------------------------------------------------- */

static void test_manifest_text(void **state)
{
    unsigned char root[SHOAL_HASH_BYTES];
    static const char want[] =
        "shoal-manifest-v1\n"
        "5f0c6b9e-3d1a-4c2e-9b7a-2e8f1d4c6a30\n"
        "18446744073709551615\n"
        "13743895347200\n"
        "16777216\n"
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
        "0\n";
    char out[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(root); i++)
        root[i] = (unsigned char)i;
    assert_int_equal(shoal_manifest_text(FILE_ID, UINT64_MAX, 12800 * GiB,
                                         16 * MiB, root, 0, out, sizeof(out)),
                     strlen(want));
    assert_string_equal(out, want);
    /* An uppercase file id is written in lowercase. */
    assert_int_equal(shoal_manifest_text("5F0C6B9E-3D1A-4C2E-9B7A-2E8F1D4C6A30",
                                         UINT64_MAX, 12800 * GiB, 16 * MiB,
                                         root, 0, out, sizeof(out)),
                     strlen(want));
    assert_string_equal(out, want);
    /* Exactly the room needed, with the NUL; one byte less fails. */
    assert_int_equal(shoal_manifest_text(FILE_ID, UINT64_MAX, 12800 * GiB,
                                         16 * MiB, root, 0, out, sizeof(want)),
                     strlen(want));
    assert_int_equal(shoal_manifest_text(FILE_ID, UINT64_MAX, 12800 * GiB,
                                         16 * MiB, root, 0, out,
                                         sizeof(want) - 1), -1);
    assert_string_equal(out, "");
    /* Not a UUID, a negative expiry. */
    assert_int_equal(shoal_manifest_text("5f0c6b9e3d1a4c2e9b7a2e8f1d4c6a30", 1, 1,
                                         16384, root, 1, out, sizeof(out)), -1);
    assert_int_equal(shoal_manifest_text(FILE_ID "\n", 1, 1, 16384, root, 1,
                                         out, sizeof(out)), -1);
    assert_int_equal(shoal_manifest_text(FILE_ID, 1, 1, 16384, root, -1, out,
                                         sizeof(out)), -1);
    /* The longest text fits the 256 bytes the library signs from. */
    assert_true(shoal_manifest_text(FILE_ID, UINT64_MAX, UINT64_MAX, UINT32_MAX,
                                    root, INT64_MAX, out, sizeof(out)) == 193);
}

/* --- X-Sign ------------------------------------------------------------- */

struct keypair {
    unsigned char pk[SHOAL_PK_BYTES];
    unsigned char sk[SHOAL_SK_BYTES];
};

static void sample(struct shoal_xsign *x)
{
    size_t i;

    memset(x, 0, sizeof(*x));
    strcpy(x->key, BROKER_ID);
    x->version = 7;
    x->size = 12 * GiB + 5;
    x->piece_size = SHOAL_PIECE_DEFAULT;
    for (i = 0; i < SHOAL_HASH_BYTES; i++)
        x->root[i] = (unsigned char)(0xF0 ^ i);
    x->expires = 1800000000;
}

static void test_xsign_round_trip(void **state)
{
    static const char prefix[] = "v=1; key=" BROKER_ID "; ver=7; "
                                 "size=12884901893; piece=524288; root=f0f1f2f3";
    struct keypair k, other;
    struct shoal_xsign x, y, t;
    struct shoal_err err;
    char hdr[SHOAL_XSIGN_MAX];
    char hdr2[SHOAL_XSIGN_MAX];

    (void)state;
    shoal_keypair_new(k.pk, k.sk);
    shoal_keypair_new(other.pk, other.sk);
    sample(&x);
    shoal_xsign_sign(&x, FILE_ID, k.sk);
    shoal_xsign_format(&x, hdr);
    assert_int_equal(strncmp(hdr, prefix, strlen(prefix)), 0);
    assert_non_null(strstr(hdr, "; exp=1800000000; sig="));
    assert_int_equal(strlen(strstr(hdr, "; sig=")), 6 + 88);

    assert_int_equal(shoal_xsign_parse(hdr, &y, &err), 0);
    assert_string_equal(y.key, x.key);
    assert_true(y.version == x.version);
    assert_true(y.size == x.size);
    assert_int_equal(y.piece_size, x.piece_size);
    assert_memory_equal(y.root, x.root, SHOAL_HASH_BYTES);
    assert_true(y.expires == x.expires);
    assert_memory_equal(y.sig, x.sig, SHOAL_SIG_BYTES);
    shoal_xsign_format(&y, hdr2);
    assert_string_equal(hdr, hdr2);

    /* Valid up to and including the second of expiry. */
    assert_int_equal(shoal_xsign_verify(&y, FILE_ID, k.pk, 1700000000, &err), 0);
    assert_int_equal(shoal_xsign_verify(&y, FILE_ID, k.pk, 1800000000, &err), 0);
    assert_int_equal(shoal_xsign_verify(&y, FILE_ID, k.pk, 1800000001, &err), -1);
    assert_int_equal(err.code, SHOAL_EPROTO);
    assert_string_equal(err.msg, "signature expired");
    /* The file id is checked in any case. */
    assert_int_equal(shoal_xsign_verify(&y, "5F0C6B9E-3D1A-4C2E-9B7A-2E8F1D4C6A30",
                                        k.pk, 1700000000, &err), 0);

    /* Every signed field, tampered with, fails. */
#define TAMPER(stmt) do {                                                    \
        t = y;                                                               \
        stmt;                                                                \
        shoal_err_clear(&err);                                               \
        assert_int_equal(shoal_xsign_verify(&t, FILE_ID, k.pk, 1700000000,   \
                                            &err), -1);                      \
        assert_int_equal(err.code, SHOAL_EPROTO);                            \
        assert_string_equal(err.msg, "signature invalid");                   \
    } while (0)
    TAMPER(t.version++);
    TAMPER(t.version = 0);
    TAMPER(t.size++);
    TAMPER(t.size--);
    TAMPER(t.piece_size *= 2);
    TAMPER(t.root[0] ^= 1);
    TAMPER(t.root[31] ^= 0x80);
    TAMPER(t.expires++);
    TAMPER(t.expires--);
    TAMPER(t.sig[0] ^= 1);
    TAMPER(t.sig[63] ^= 0x40);
#undef TAMPER
    /* Another file, another key. */
    assert_int_equal(shoal_xsign_verify(&y, "5f0c6b9e-3d1a-4c2e-9b7a-2e8f1d4c6a31",
                                        k.pk, 1700000000, &err), -1);
    assert_string_equal(err.msg, "signature invalid");
    assert_int_equal(shoal_xsign_verify(&y, "not-a-uuid", k.pk, 1700000000,
                                        &err), -1);
    assert_int_equal(shoal_xsign_verify(&y, FILE_ID, other.pk, 1700000000,
                                        &err), -1);
    assert_string_equal(err.msg, "signature invalid");
    /* An invalid signature is reported as such even when it has expired. */
    t = y;
    t.size++;
    assert_int_equal(shoal_xsign_verify(&t, FILE_ID, k.pk, 1900000000, &err), -1);
    assert_string_equal(err.msg, "signature invalid");
    /* The key id is not signed: it only chooses the key. */
    t = y;
    strcpy(t.key, "00000000-0000-4000-8000-000000000000");
    assert_int_equal(shoal_xsign_verify(&t, FILE_ID, k.pk, 1700000000, &err), 0);

    /* Tampering with the header text: it parses, but does not verify. */
    strcpy(hdr2, hdr);
    strstr(hdr2, "ver=7")[4] = '8';
    assert_int_equal(shoal_xsign_parse(hdr2, &t, &err), 0);
    assert_int_equal(shoal_xsign_verify(&t, FILE_ID, k.pk, 1700000000, &err), -1);

    /* A file id the text refuses: a zero signature, which never verifies. */
    t = x;
    shoal_xsign_sign(&t, "nope", k.sk);
    assert_true(sodium_is_zero(t.sig, SHOAL_SIG_BYTES));
    assert_int_equal(shoal_xsign_verify(&t, FILE_ID, k.pk, 1700000000, &err), -1);
}

/* The largest values format, fit SHOAL_XSIGN_MAX and parse back. */
static void test_xsign_limits(void **state)
{
    struct shoal_xsign x, y;
    struct shoal_err err;
    char hdr[SHOAL_XSIGN_MAX];

    (void)state;
    sample(&x);
    x.version = UINT64_MAX;
    x.size = UINT64_MAX;
    x.piece_size = SHOAL_PIECE_MAX;
    x.expires = INT64_MAX;
    memset(x.sig, 0xFF, SHOAL_SIG_BYTES);
    shoal_xsign_format(&x, hdr);
    assert_int_equal(strlen(hdr), 304);       /* as docs/protocol.md says */
    assert_int_equal(shoal_xsign_parse(hdr, &y, &err), 0);
    assert_true(y.version == UINT64_MAX);
    assert_true(y.size == UINT64_MAX);
    assert_int_equal(y.piece_size, SHOAL_PIECE_MAX);
    assert_true(y.expires == INT64_MAX);
    assert_memory_equal(y.sig, x.sig, SHOAL_SIG_BYTES);

    x.version = 0;
    x.size = 0;
    x.expires = 0;
    x.piece_size = SHOAL_PIECE_MIN;
    shoal_xsign_format(&x, hdr);
    assert_non_null(strstr(hdr, "; ver=0; size=0; piece=16384; "));
    assert_int_equal(shoal_xsign_parse(hdr, &y, &err), 0);
    assert_true(y.version == 0 && y.size == 0 && y.expires == 0);
}

#define SIG88 "UfesK6mEfLwKoun3TFJuiXpCkhS57i54uMpaVVjxQIlHDV/gL+4GpxXC2U+NJpZ44wDv3QNkF+QNH1fj0Hw/Dg=="
#define ROOT64 "b28a724fb9f19f599b6c20511f29c556cc9954ba22c4c37b67823368abd34ea3"
#define GOOD "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; " \
             "root=" ROOT64 "; exp=1796083200; sig=" SIG88

static void test_xsign_parse_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "v=2; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=01; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=10; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "V=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        " v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        GOOD " ",
        GOOD ";",
        GOOD "; x=1",
        /* missing field */
        "v=1; key=" BROKER_ID "; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200",
        "v=1; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        /* reordered */
        "v=1; key=" BROKER_ID "; size=1049576; ver=3; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; exp=1796083200; root=" ROOT64 "; sig=" SIG88,
        /* extra field */
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; pieces=3; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        /* separators */
        "v=1;key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID ";  ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1, key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver = 3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        /* numbers */
        "v=1; key=" BROKER_ID "; ver=03; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=3; size=01049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=3; size=00; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=+3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=-3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=3x; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=0x3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=18446744073709551616; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=3; size=99999999999999999999; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=9223372036854775808; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=-1; sig=" SIG88,
        /* piece sizes */
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=0; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524289; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=8192; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=4294983680; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        /* key */
        "v=1; key=E36CAD8F-9EBF-453D-911A-06E5889CEE10; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=e36cad8f9ebf453d911a06e5889cee10; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        "v=1; key=; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88,
        /* root */
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=B28A724FB9F19F599B6C20511F29C556CC9954BA22C4C37B67823368ABD34EA3; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "0; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=b28a724fb9f19f599b6c20511f29c556cc9954ba22c4c37b67823368abd34ea; exp=1796083200; sig=" SIG88,
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=g28a724fb9f19f599b6c20511f29c556cc9954ba22c4c37b67823368abd34ea3; exp=1796083200; sig=" SIG88,
        /* sig: unpadded, too short, bad character, url-safe alphabet,
         * non-zero unused bits, trailing garbage */
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=UfesK6mEfLwKoun3TFJuiXpCkhS57i54uMpaVVjxQIlHDV/gL+4GpxXC2U+NJpZ44wDv3QNkF+QNH1fj0Hw/Dg",
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=UfesK6mEfLwKoun3TFJuiXpCkhS57i54uMpaVVjxQIlHDV/gL+4GpxXC2U+NJpZ44wDv3QNkF+QNH1fj0Hw==",
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=UfesK6mEfLwKoun3TFJuiXpCkhS57i54uMpaVVjxQIlHDV/gL+4GpxXC2U+NJpZ44wDv3QNkF+QNH1fj0Hw*Dg==",
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=UfesK6mEfLwKoun3TFJuiXpCkhS57i54uMpaVVjxQIlHDV_gL-4GpxXC2U-NJpZ44wDv3QNkF-QNH1fj0Hw_Dg==",
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=UfesK6mEfLwKoun3TFJuiXpCkhS57i54uMpaVVjxQIlHDV/gL+4GpxXC2U+NJpZ44wDv3QNkF+QNH1fj0Hw/Dh==",
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=" SIG88 "AAAA",
        "v=1; key=" BROKER_ID "; ver=3; size=1049576; piece=524288; root=" ROOT64 "; exp=1796083200; sig=",
    };
    struct shoal_xsign x, before;
    struct shoal_err err;
    char longer[1024];
    size_t i;

    (void)state;
    /* The good one parses: the rejections below are about their flaw. */
    assert_int_equal(shoal_xsign_parse(GOOD, &x, &err), 0);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&x, 0x5A, sizeof(x));
        before = x;
        shoal_err_clear(&err);
        if (shoal_xsign_parse(bad[i], &x, &err) != -1)
            fail_msg("accepted bad X-Sign #%zu: %s", i, bad[i]);
        assert_int_equal(err.code, SHOAL_EINVAL);
        assert_int_equal(err.status, 400);
        assert_true(err.msg[0] != '\0');
        assert_memory_equal(&x, &before, sizeof(x));   /* left alone */
    }
    assert_int_equal(shoal_xsign_parse(NULL, &x, &err), -1);
    /* Far too long. */
    memset(longer, 'a', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    memcpy(longer, GOOD, strlen(GOOD));
    assert_int_equal(shoal_xsign_parse(longer, &x, &err), -1);
    /* Messages name the field. */
    assert_int_equal(shoal_xsign_parse("v=1; key=" BROKER_ID "; ver=03; size=1",
                                       &x, &err), -1);
    assert_string_equal(err.msg,
                        "'X-Sign' field 'ver' must be a decimal number");
    assert_int_equal(shoal_xsign_parse("v=2; key=" BROKER_ID, &x, &err), -1);
    assert_string_equal(err.msg, "'X-Sign' version is not 1");
}

/* --- the test vector of docs/protocol.md -------------------------------- */

/* The test-vector block of the section, as a new string. */
static char *doc_vector_block(char **doc_out)
{
    const char *root = getenv("SHOAL_ROOT");
    char path[1024];
    char *doc = NULL;
    size_t len = 0;
    struct shoal_err err;
    const char *sec, *p, *end;

    snprintf(path, sizeof(path), "%s/docs/protocol.md",
             root != NULL && root[0] != '\0' ? root : ".");
    if (shoal_file_read(path, 1 << 20, &doc, &len, &err) != 0)
        fail_msg("cannot read the protocol document: %s", err.msg);
    sec = strstr(doc, "\n## 9. Manifests, the Merkle root and X-Sign\n");
    assert_non_null(sec);
    p = strstr(sec, "\n### Test vector\n");
    assert_non_null(p);
    p = strstr(p, "\n```text\n");
    assert_non_null(p);
    p += strlen("\n```text\n");
    end = strstr(p, "\n```\n");
    assert_non_null(end);
    *doc_out = doc;
    return strndup(p, (size_t)(end - p + 1));
}

/* The value of "key" in the block: the rest of its line after the spaces
 * that follow the key.  New string; the test fails when it is missing. */
static char *doc_value(const char *block, const char *key)
{
    size_t klen = strlen(key);
    const char *p = block;
    const char *nl;

    while (*p != '\0') {
        nl = strchr(p, '\n');
        if (nl == NULL)
            nl = p + strlen(p);
        if (strncmp(p, key, klen) == 0 && p[klen] == ' ') {
            p += klen;
            while (*p == ' ')
                p++;
            return strndup(p, (size_t)(nl - p));
        }
        p = *nl != '\0' ? nl + 1 : nl;
    }
    fail_msg("key '%s' missing from the test vector", key);
    return NULL;
}

/* A "…" value with \n, \\ and \" escapes.  New string. */
static char *unquote(const char *v)
{
    size_t n = strlen(v);
    char *out = malloc(n + 1);
    size_t i, o = 0;

    assert_non_null(out);
    assert_true(n >= 2 && v[0] == '"' && v[n - 1] == '"');
    for (i = 1; i + 1 < n; i++) {
        if (v[i] != '\\') {
            out[o++] = v[i];
            continue;
        }
        i++;
        assert_true(i + 1 < n);
        assert_true(v[i] == 'n' || v[i] == '\\' || v[i] == '"');
        out[o++] = v[i] == 'n' ? '\n' : v[i];
    }
    out[o] = '\0';
    return out;
}

static uint64_t doc_u64(const char *block, const char *key)
{
    char *v = doc_value(block, key);
    char *end;
    uint64_t n = strtoull(v, &end, 10);

    assert_true(*v != '\0' && *end == '\0');
    free(v);
    return n;
}

static void assert_doc_equal(const char *block, const char *key,
                             const char *computed)
{
    char *v = doc_value(block, key);

    if (strcmp(v, computed) != 0)
        fail_msg("docs/protocol.md test vector '%s' is\n  %s\nbut the code gives\n  %s",
                 key, v, computed);
    free(v);
}

static void test_doc_vector(void **state)
{
    char *doc = NULL;
    char *block = doc_vector_block(&doc);
    char *file_id = doc_value(block, "file_id");
    char *broker_id = doc_value(block, "broker_id");
    char *seed_hex = doc_value(block, "seed");
    uint64_t version = doc_u64(block, "version");
    uint64_t size = doc_u64(block, "size");
    uint64_t piece = doc_u64(block, "piece_size");
    uint64_t expires = doc_u64(block, "expires");
    unsigned char hashes[3][SHOAL_HASH_BYTES];
    unsigned char seed[32];
    struct keypair k;
    struct shoal_xsign x, y;
    struct shoal_err err;
    char text[256];
    char hdr[SHOAL_XSIGN_MAX];
    char hex[2 * SHOAL_SIG_BYTES + 1];
    char key[32];
    char num[32];
    char *b64;
    char *quoted;
    char *literal;
    int i;
    int n;

    (void)state;
    /* The inputs are the expected ones (a sanity check of the parsing). */
    assert_string_equal(file_id, FILE_ID);
    assert_string_equal(broker_id, BROKER_ID);
    assert_true(shoal_piece_size_valid(piece));

    snprintf(num, sizeof(num), "%" PRIu64, shoal_piece_count(size, (uint32_t)piece));
    assert_doc_equal(block, "pieces", num);
    assert_string_equal(num, "3");
    snprintf(num, sizeof(num), "%" PRIu32,
             shoal_piece_len(size, (uint32_t)piece, 2));
    assert_doc_equal(block, "last_piece_len", num);

    for (i = 0; i < 3; i++) {
        char *v;

        snprintf(key, sizeof(key), "piece_%d", i);
        v = unquote(quoted = doc_value(block, key));
        free(quoted);
        shoal_sha256(v, strlen(v), hashes[i]);
        free(v);
        snprintf(key, sizeof(key), "hash_%d", i);
        hex_of(hashes[i], SHOAL_HASH_BYTES, hex);
        assert_doc_equal(block, key, hex);
    }

    memset(&x, 0, sizeof(x));
    strcpy(x.key, broker_id);
    x.version = version;
    x.size = size;
    x.piece_size = (uint32_t)piece;
    x.expires = (int64_t)expires;
    shoal_merkle_root((const unsigned char (*)[SHOAL_HASH_BYTES])hashes, 3, x.root);
    hex_of(x.root, SHOAL_HASH_BYTES, hex);
    assert_doc_equal(block, "root", hex);

    n = shoal_manifest_text(file_id, version, size, (uint32_t)piece, x.root,
                            (int64_t)expires, text, sizeof(text));
    assert_true(n > 0);
    literal = unquote(quoted = doc_value(block, "text"));
    assert_string_equal(literal, text);
    free(literal);
    free(quoted);
    snprintf(num, sizeof(num), "%d", n);
    assert_doc_equal(block, "text_bytes", num);
    /* The text, as lines, in its own block. */
    literal = malloc(strlen(text) + 32);
    assert_non_null(literal);
    sprintf(literal, "\n```text\n%s```\n", text);
    assert_non_null(strstr(doc, literal));
    free(literal);

    assert_int_equal(shoal_hex_decode_exact(seed_hex, seed, sizeof(seed),
                                            "seed", &err), 0);
    assert_int_equal(crypto_sign_seed_keypair(k.pk, k.sk, seed), 0);
    b64 = shoal_b64_encode(k.pk, SHOAL_PK_BYTES);
    assert_doc_equal(block, "public_key", b64);
    free(b64);
    hex_of(k.pk, SHOAL_PK_BYTES, hex);
    assert_doc_equal(block, "public_key_hex", hex);

    shoal_xsign_sign(&x, file_id, k.sk);
    b64 = shoal_b64_encode(x.sig, SHOAL_SIG_BYTES);
    assert_doc_equal(block, "signature", b64);
    free(b64);
    shoal_xsign_format(&x, hdr);
    assert_doc_equal(block, "x_sign", hdr);

    /* And a client accepts it until, not after, the expiry. */
    literal = doc_value(block, "x_sign");
    assert_int_equal(shoal_xsign_parse(literal, &y, &err), 0);
    free(literal);
    assert_int_equal(shoal_xsign_verify(&y, file_id, k.pk, (int64_t)expires, &err), 0);
    assert_int_equal(shoal_xsign_verify(&y, file_id, k.pk, (int64_t)expires + 1,
                                        &err), -1);
    assert_string_equal(err.msg, "signature expired");
    /* The page says so in words too. */
    assert_non_null(strstr(doc, "up to and including 1796083200"));

    sodium_memzero(k.sk, sizeof(k.sk));
    free(seed_hex);
    free(broker_id);
    free(file_id);
    free(block);
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_piece_size_valid),
        cmocka_unit_test(test_piece_count_len),
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_merkle_known),
        cmocka_unit_test(test_merkle_vs_naive),
        cmocka_unit_test(test_merkle_padding_rule),
        cmocka_unit_test(test_manifest_text),
        cmocka_unit_test(test_xsign_round_trip),
        cmocka_unit_test(test_xsign_limits),
        cmocka_unit_test(test_xsign_parse_rejects),
        cmocka_unit_test(test_doc_vector),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
