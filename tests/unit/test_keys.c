/* Unit tests of api/keys.c: signatures, key files, secrets, keyed hashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "keys.h"
#include "util.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    if (shoal_crypto_init(NULL) != 0)
        return -1;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/shoal-test-keys-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void put_file(const char *path, const char *text, int mode)
{
    assert_int_equal(shoal_file_write_atomic(path, text, strlen(text), mode,
                                             NULL), 0);
}

static void test_sign_verify(void **state)
{
    static const unsigned char msg[] = "shoal-manifest-v1\nabc\n1\n";
    unsigned char pk[SHOAL_PK_BYTES], sk[SHOAL_SK_BYTES];
    unsigned char pk2[SHOAL_PK_BYTES], sk2[SHOAL_SK_BYTES];
    unsigned char sig[SHOAL_SIG_BYTES];
    unsigned char tampered[sizeof(msg)];

    (void)state;
    shoal_keypair_new(pk, sk);
    shoal_keypair_new(pk2, sk2);
    assert_memory_not_equal(pk, pk2, SHOAL_PK_BYTES);
    shoal_sign(sk, msg, sizeof(msg), sig);
    assert_int_equal(shoal_sign_verify(pk, msg, sizeof(msg), sig), 0);
    /* One flipped bit in the message. */
    memcpy(tampered, msg, sizeof(msg));
    tampered[5] ^= 0x01;
    assert_int_equal(shoal_sign_verify(pk, tampered, sizeof(msg), sig), -1);
    /* A shorter message. */
    assert_int_equal(shoal_sign_verify(pk, msg, sizeof(msg) - 1, sig), -1);
    /* Another key. */
    assert_int_equal(shoal_sign_verify(pk2, msg, sizeof(msg), sig), -1);
    /* A flipped bit in the signature. */
    sig[10] ^= 0x80;
    assert_int_equal(shoal_sign_verify(pk, msg, sizeof(msg), sig), -1);
    /* The empty message is signable too. */
    shoal_sign(sk2, NULL, 0, sig);
    assert_int_equal(shoal_sign_verify(pk2, NULL, 0, sig), 0);
    assert_int_equal(shoal_sign_verify(pk, NULL, 0, sig), -1);
}

static void test_keypair_file(void **state)
{
    unsigned char pk[SHOAL_PK_BYTES], sk[SHOAL_SK_BYTES];
    unsigned char pk2[SHOAL_PK_BYTES], sk2[SHOAL_SK_BYTES];
    unsigned char filepk[SHOAL_PK_BYTES];
    unsigned char sig[SHOAL_SIG_BYTES];
    char path[160];
    char *text = NULL;
    json_t *doc;
    const char *s;
    struct stat st;
    struct shoal_err err;

    (void)state;
    snprintf(path, sizeof(path), "%s/conf/shoal/identity.key", tmpdir);
    assert_int_equal(shoal_keypair_load_or_create(path, pk, sk, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    /* The file holds the same pair in base64. */
    assert_int_equal(shoal_file_read(path, 4096, &text, NULL, NULL), 0);
    doc = json_loads(text, 0, NULL);
    assert_non_null(doc);
    assert_int_equal(shoal_json_str(doc, "public_key", &s, NULL), 0);
    assert_int_equal(strlen(s), 44);
    assert_int_equal(shoal_b64_decode_exact(s, filepk, sizeof(filepk), "pk",
                                            NULL), 0);
    assert_memory_equal(filepk, pk, SHOAL_PK_BYTES);
    assert_int_equal(shoal_json_str(doc, "secret_key", &s, NULL), 0);
    assert_int_equal(strlen(s), 88);
    json_decref(doc);
    free(text);
    /* Loading again gives the same pair, and it signs. */
    assert_int_equal(shoal_keypair_load_or_create(path, pk2, sk2, &err), 0);
    assert_memory_equal(pk, pk2, SHOAL_PK_BYTES);
    assert_memory_equal(sk, sk2, SHOAL_SK_BYTES);
    shoal_sign(sk2, (const unsigned char *)"x", 1, sig);
    assert_int_equal(shoal_sign_verify(pk, (const unsigned char *)"x", 1, sig), 0);
}

static void test_keypair_file_refused_when_shared(void **state)
{
    static const int modes[] = {0644, 0640, 0604, 0620, 0602, 0660};
    unsigned char pk[SHOAL_PK_BYTES], sk[SHOAL_SK_BYTES];
    char path[160];
    struct shoal_err err;
    size_t i;

    (void)state;
    snprintf(path, sizeof(path), "%s/shared.key", tmpdir);
    assert_int_equal(shoal_keypair_load_or_create(path, pk, sk, NULL), 0);
    for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        assert_int_equal(chmod(path, (mode_t)modes[i]), 0);
        memset(sk, 0xAA, sizeof(sk));
        shoal_err_clear(&err);
        assert_int_equal(shoal_keypair_load_or_create(path, pk, sk, &err), -1);
        assert_int_equal(err.code, SHOAL_EIO);
        assert_non_null(strstr(err.msg, path));
        assert_non_null(strstr(err.msg, "group or others"));
        assert_int_equal(sk[0], 0);
        assert_int_equal(sk[SHOAL_SK_BYTES - 1], 0);
    }
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(shoal_keypair_load_or_create(path, pk, sk, &err), 0);
}

static void check_bad_keyfile(const char *text)
{
    unsigned char pk[SHOAL_PK_BYTES], sk[SHOAL_SK_BYTES];
    unsigned char zero[SHOAL_SK_BYTES] = {0};
    char path[160];
    struct shoal_err err;

    snprintf(path, sizeof(path), "%s/bad.key", tmpdir);
    put_file(path, text, 0600);
    memset(sk, 0xAA, sizeof(sk));
    shoal_err_clear(&err);
    assert_int_equal(shoal_keypair_load_or_create(path, pk, sk, &err), -1);
    assert_int_equal(err.code, SHOAL_EIO);
    assert_non_null(strstr(err.msg, path));
    assert_memory_equal(sk, zero, sizeof(zero));     /* nothing half-loaded */
}

static void test_keypair_file_bad_content(void **state)
{
    unsigned char pk[SHOAL_PK_BYTES], sk[SHOAL_SK_BYTES];
    unsigned char pk2[SHOAL_PK_BYTES], sk2[SHOAL_SK_BYTES];
    char *pk64, *sk64, *pk2_64;
    char text[512];

    (void)state;
    check_bad_keyfile("");
    check_bad_keyfile("not json");
    check_bad_keyfile("{\"public_key\": \"AAAA\"}");
    shoal_keypair_new(pk, sk);
    shoal_keypair_new(pk2, sk2);
    pk64 = shoal_b64_encode(pk, sizeof(pk));
    sk64 = shoal_b64_encode(sk, sizeof(sk));
    pk2_64 = shoal_b64_encode(pk2, sizeof(pk2));
    assert_non_null(pk64);
    assert_non_null(sk64);
    assert_non_null(pk2_64);
    /* A public key that is not the secret key's. */
    snprintf(text, sizeof(text), "{\"public_key\":\"%s\",\"secret_key\":\"%s\"}",
             pk2_64, sk64);
    check_bad_keyfile(text);
    /* Keys swapped: wrong lengths. */
    snprintf(text, sizeof(text), "{\"public_key\":\"%s\",\"secret_key\":\"%s\"}",
             sk64, pk64);
    check_bad_keyfile(text);
    /* A truncated secret key. */
    snprintf(text, sizeof(text), "{\"public_key\":\"%s\",\"secret_key\":\"%.84s\"}",
             pk64, sk64);
    check_bad_keyfile(text);
    /* The matching pair is accepted. */
    snprintf(text, sizeof(text), "{\"public_key\":\"%s\",\"secret_key\":\"%s\"}",
             pk64, sk64);
    {
        char path[160];
        unsigned char lpk[SHOAL_PK_BYTES], lsk[SHOAL_SK_BYTES];

        snprintf(path, sizeof(path), "%s/good.key", tmpdir);
        put_file(path, text, 0600);
        assert_int_equal(shoal_keypair_load_or_create(path, lpk, lsk, NULL), 0);
        assert_memory_equal(lpk, pk, sizeof(pk));
        assert_memory_equal(lsk, sk, sizeof(sk));
    }
    free(pk64);
    free(sk64);
    free(pk2_64);
}

static void test_secret_file(void **state)
{
    unsigned char key[32], again[32];
    unsigned char zero[32] = {0};
    char path[160];
    char *text = NULL;
    size_t len = 0;
    struct stat st;
    struct shoal_err err;
    size_t i;

    (void)state;
    snprintf(path, sizeof(path), "%s/secrets/epoch.secret", tmpdir);
    assert_int_equal(shoal_secret_load_or_create(path, key, &err), 0);
    assert_memory_not_equal(key, zero, sizeof(key));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(shoal_file_read(path, 4096, &text, &len, NULL), 0);
    assert_int_equal(len, 65);
    assert_int_equal(text[64], '\n');
    for (i = 0; i < 64; i++)
        assert_non_null(strchr("0123456789abcdef", text[i]));
    free(text);
    assert_int_equal(shoal_secret_load_or_create(path, again, &err), 0);
    assert_memory_equal(key, again, sizeof(key));
    /* Refused once group or others may read it. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(shoal_secret_load_or_create(path, again, &err), -1);
    assert_int_equal(err.code, SHOAL_EIO);
    assert_int_equal(chmod(path, 0600), 0);
}

static void test_secret_file_bad_content(void **state)
{
    static const char *const bad[] = {
        "",
        "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\n",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef\n",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00\n",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n\n",
        "0011223344556677889 aabbccddeeff00112233445566778899aabbccddeeff",
    };
    unsigned char key[32];
    char path[160];
    struct shoal_err err;
    size_t i;

    (void)state;
    snprintf(path, sizeof(path), "%s/bad.secret", tmpdir);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        put_file(path, bad[i], 0600);
        assert_int_equal(shoal_secret_load_or_create(path, key, &err), -1);
        assert_int_equal(err.code, SHOAL_EIO);
    }
    /* Without the final newline it is fine. */
    put_file(path, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
             0600);
    assert_int_equal(shoal_secret_load_or_create(path, key, &err), 0);
    assert_int_equal(key[0], 0x00);
    assert_int_equal(key[5], 0x55);
    assert_int_equal(key[31], 0xff);
}

static void test_keyed_hash(void **state)
{
    unsigned char key[32], key2[32];
    unsigned char out[32], out2[32];
    char hex[65];
    size_t i;

    (void)state;
    for (i = 0; i < 32; i++) {
        key[i] = (unsigned char)i;
        key2[i] = (unsigned char)i;
    }
    key2[31] ^= 1;
    /* Known answers: keyed BLAKE2b with a 32-byte digest. */
    shoal_keyed_hash(key, "shoal", 5, out);
    shoal_hex_encode(out, 32, hex);
    assert_string_equal(hex, "6de23b9414e9c32eac276f4b6d1f14c1"
                             "a32128b470533da32c846907e3bcb99a");
    shoal_keyed_hash(key, "", 0, out);
    shoal_hex_encode(out, 32, hex);
    assert_string_equal(hex, "4e51e7a913fc80137da52880fecca175"
                             "bf81e117d5c68126dc2774033517ea0d");
    shoal_keyed_hash(key, "shoal", 5, out);
    shoal_keyed_hash(key2, "shoal", 5, out2);
    assert_memory_not_equal(out, out2, 32);
    shoal_keyed_hash(key, "shoaL", 5, out2);
    assert_memory_not_equal(out, out2, 32);
}

static void test_ct_equal(void **state)
{
    unsigned char a[16], b[16];

    (void)state;
    memset(a, 7, sizeof(a));
    memset(b, 7, sizeof(b));
    assert_int_equal(shoal_ct_equal(a, b, sizeof(a)), 0);
    b[15] = 8;
    assert_int_equal(shoal_ct_equal(a, b, sizeof(a)), -1);
    assert_int_equal(shoal_ct_equal(a, b, 15), 0);
    b[0] = 0;
    assert_int_equal(shoal_ct_equal(a, b, 15), -1);
    assert_int_equal(shoal_ct_equal(a, b, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_keypair_file),
        cmocka_unit_test(test_keypair_file_refused_when_shared),
        cmocka_unit_test(test_keypair_file_bad_content),
        cmocka_unit_test(test_secret_file),
        cmocka_unit_test(test_secret_file_bad_content),
        cmocka_unit_test(test_keyed_hash),
        cmocka_unit_test(test_ct_equal),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
