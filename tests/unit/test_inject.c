/* Unit tests of what the injector shares through api/: address classes
 * and allow-lists (addr.c), the metadata text, freshness and challenge
 * text (injmeta.c), the shoal-inject-v1 signature and X-Sign's meta field
 * (manifest.c), and the test vector of docs/protocol.md, section 14. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>
#include <sodium.h>

#include "addr.h"
#include "injmeta.h"
#include "keys.h"
#include "manifest.h"
#include "util.h"

#define FILE_ID "5f0c6b9e-3d1a-4c2e-9b7a-2e8f1d4c6a30"
#define BROKER_ID "e36cad8f-9ebf-453d-911a-06e5889cee10"

static int setup(void **state)
{
    (void)state;
    return shoal_crypto_init(NULL);
}

/* An address as a sockaddr. */
static const struct sockaddr *sa_of(const char *text)
{
    static struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
        in6->sin6_family = AF_INET6;
    }
    return (const struct sockaddr *)&ss;
}

/* --- addresses ------------------------------------------------------------ */

static void test_addr_classes(void **state)
{
    static const struct { const char *a; enum shoal_addr_class c; } t[] = {
        { "8.8.8.8", SHOAL_ADDR_PUBLIC },
        { "93.184.216.34", SHOAL_ADDR_PUBLIC },
        { "0.0.0.0", SHOAL_ADDR_UNSPECIFIED },
        { "0.1.2.3", SHOAL_ADDR_UNSPECIFIED },
        { "127.0.0.1", SHOAL_ADDR_LOOPBACK },
        { "127.255.255.254", SHOAL_ADDR_LOOPBACK },
        { "10.0.0.1", SHOAL_ADDR_PRIVATE },
        { "172.16.0.1", SHOAL_ADDR_PRIVATE },
        { "172.31.255.255", SHOAL_ADDR_PRIVATE },
        { "172.32.0.1", SHOAL_ADDR_PUBLIC },
        { "192.168.1.1", SHOAL_ADDR_PRIVATE },
        { "100.64.0.1", SHOAL_ADDR_PRIVATE },
        { "100.128.0.1", SHOAL_ADDR_PUBLIC },
        { "169.254.169.254", SHOAL_ADDR_LINK_LOCAL },
        { "224.0.0.1", SHOAL_ADDR_MULTICAST },
        { "239.255.255.250", SHOAL_ADDR_MULTICAST },
        { "255.255.255.255", SHOAL_ADDR_RESERVED },
        { "240.0.0.1", SHOAL_ADDR_RESERVED },
        { "198.18.0.1", SHOAL_ADDR_RESERVED },
        { "192.0.2.7", SHOAL_ADDR_RESERVED },
        { "::", SHOAL_ADDR_UNSPECIFIED },
        { "::1", SHOAL_ADDR_LOOPBACK },
        { "fe80::1", SHOAL_ADDR_LINK_LOCAL },
        { "fd00::1", SHOAL_ADDR_PRIVATE },
        { "fec0::1", SHOAL_ADDR_PRIVATE },
        { "ff02::1", SHOAL_ADDR_MULTICAST },
        { "2001:db8::1", SHOAL_ADDR_RESERVED },
        { "2606:4700::1111", SHOAL_ADDR_PUBLIC },
        { "::ffff:127.0.0.1", SHOAL_ADDR_LOOPBACK },
        { "::ffff:10.1.2.3", SHOAL_ADDR_PRIVATE },
        { "::ffff:8.8.8.8", SHOAL_ADDR_PUBLIC },
        { "64:ff9b::a9fe:a9fe", SHOAL_ADDR_LINK_LOCAL },   /* 169.254.169.254 */
        { "::127.0.0.1", SHOAL_ADDR_RESERVED },            /* IPv4-compatible */
    };
    (void)state;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        enum shoal_addr_class c = shoal_addr_classify(sa_of(t[i].a));
        if (c != t[i].c)
            fail_msg("%s is %s, not %s", t[i].a, shoal_addr_class_name(c),
                     shoal_addr_class_name(t[i].c));
        assert_int_equal(shoal_addr_allowed(NULL, sa_of(t[i].a)),
                         t[i].c == SHOAL_ADDR_PUBLIC);
    }
    char text[64];
    shoal_addr_text(sa_of("::ffff:169.254.169.254"), text, sizeof text);
    assert_string_equal(text, "169.254.169.254");
    shoal_addr_text(sa_of("fe80::1"), text, sizeof text);
    assert_string_equal(text, "fe80::1");
}

static void test_cidr_lists(void **state)
{
    struct shoal_cidr_list *l = NULL;
    struct shoal_err err;
    (void)state;

    assert_int_equal(shoal_cidr_list_parse(NULL, &l, &err), 0);
    assert_int_equal(shoal_cidr_list_len(l), 0);
    assert_false(shoal_addr_allowed(l, sa_of("127.0.0.1")));
    shoal_cidr_list_free(l);

    assert_int_equal(shoal_cidr_list_parse("127.0.0.0/8, ::1/128 10.1.2.3", &l,
                                           &err), 0);
    assert_int_equal(shoal_cidr_list_len(l), 3);
    assert_true(shoal_addr_allowed(l, sa_of("127.0.0.1")));
    assert_true(shoal_addr_allowed(l, sa_of("127.9.9.9")));
    assert_true(shoal_addr_allowed(l, sa_of("::ffff:127.0.0.2")));
    assert_true(shoal_addr_allowed(l, sa_of("::1")));
    assert_true(shoal_addr_allowed(l, sa_of("10.1.2.3")));
    assert_false(shoal_addr_allowed(l, sa_of("10.1.2.4")));
    assert_false(shoal_addr_allowed(l, sa_of("169.254.169.254")));
    assert_true(shoal_addr_allowed(l, sa_of("8.8.8.8")));     /* public */
    assert_false(shoal_cidr_list_match(l, sa_of("8.8.8.8")));
    shoal_cidr_list_free(l);

    assert_int_equal(shoal_cidr_list_parse("::ffff:127.0.0.0/104", &l, &err), 0);
    assert_true(shoal_cidr_list_match(l, sa_of("127.3.4.5")));
    shoal_cidr_list_free(l);
    assert_int_equal(shoal_cidr_list_parse("0.0.0.0/0", &l, &err), 0);
    assert_true(shoal_cidr_list_match(l, sa_of("10.0.0.1")));
    assert_false(shoal_cidr_list_match(l, sa_of("fd00::1")));
    shoal_cidr_list_free(l);

    static const char *const bad[] = {
        "127.0.0.1/8", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/08",
        "10.0.0.0/-1", "localhost", "1.2.3", "127.0.0.0/8,nope", "/8",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        l = NULL;
        shoal_err_clear(&err);
        if (shoal_cidr_list_parse(bad[i], &l, &err) != -1)
            fail_msg("'%s' parsed", bad[i]);
        assert_null(l);
        assert_int_equal(err.code, SHOAL_EINVAL);
    }
}

/* --- metadata --------------------------------------------------------------- */

static void test_meta_text(void **state)
{
    const char *names[] = { "Content-Type", "X-Secret", "ETAG", "Vary", "vary",
                            "Link", "Content-Language", "Server", "Expires",
                            "Content-Disposition" };
    const char *values[] = { " text/plain ", "no", "\"1\"", "Accept", "Origin",
                             "bad\x01value", "\tde\t", "x", "", "é" };
    (void)state;
    char *m = shoal_inject_meta("http://a.example/x", 200, names, values, 10);
    assert_non_null(m);
    assert_string_equal(m, "url: http://a.example/x\nstatus: 200\n"
                           "content-type: text/plain\ncontent-language: de\n"
                           "expires: \netag: \"1\"\nvary: Accept, Origin\n");
    free(m);
    m = shoal_inject_meta("http://a.example/", 204, NULL, NULL, 0);
    assert_string_equal(m, "url: http://a.example/\nstatus: 204\n");
    free(m);
    /* Too long a value is left out. */
    char big[SHOAL_INJECT_VALUE_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *n1[] = { "etag" }, *v1[] = { big };
    m = shoal_inject_meta("http://a/", 200, n1, v1, 1);
    assert_string_equal(m, "url: http://a/\nstatus: 200\n");
    free(m);
    big[SHOAL_INJECT_VALUE_MAX] = '\0';
    m = shoal_inject_meta("http://a/", 200, n1, v1, 1);
    assert_int_equal(strlen(m), strlen("url: http://a/\nstatus: 200\netag: \n") +
                                SHOAL_INJECT_VALUE_MAX);
    free(m);
}

static void test_freshness(void **state)
{
    (void)state;
    const long long now = 1796083200;
    assert_int_equal(shoal_inject_freshness(NULL, NULL, NULL, now), -1);
    assert_int_equal(shoal_inject_freshness("public", NULL, NULL, now), -1);
    assert_int_equal(shoal_inject_freshness("max-age=60", NULL, NULL, now), 60);
    assert_int_equal(shoal_inject_freshness("public, MAX-AGE=\"90\"", NULL, NULL, now), 90);
    assert_int_equal(shoal_inject_freshness("max-age=60, s-maxage=600", NULL, NULL, now), 600);
    assert_int_equal(shoal_inject_freshness("max-age=60, no-cache", NULL, NULL, now), 0);
    assert_int_equal(shoal_inject_freshness("no-store", NULL, NULL, now), 0);
    assert_int_equal(shoal_inject_freshness("private, max-age=60", NULL, NULL, now), 0);
    assert_int_equal(shoal_inject_freshness("max-age=x", "Tue, 01 Dec 2026 00:05:00 GMT",
                                            NULL, now), 300);
    assert_int_equal(shoal_inject_freshness("max-age=99999999999999999999", NULL, NULL,
                                            now) > 100000000000LL, 1);
    assert_int_equal(shoal_inject_freshness("x-max-age=5", NULL, NULL, now), -1);
    /* Expires minus Date, else minus now; unparsable or past: 0. */
    assert_int_equal(shoal_inject_freshness(NULL, "Tue, 01 Dec 2026 01:00:00 GMT",
                                            "Tue, 01 Dec 2026 00:30:00 GMT", now), 1800);
    assert_int_equal(shoal_inject_freshness(NULL, "Tue, 01 Dec 2026 01:00:00 GMT",
                                            NULL, now), 3600);
    assert_int_equal(shoal_inject_freshness(NULL, "0", NULL, now), 0);
    assert_int_equal(shoal_inject_freshness(NULL, "Mon, 30 Nov 2026 00:00:00 GMT",
                                            NULL, now), 0);
}

/* --- signatures ------------------------------------------------------------- */

static void test_inject_xsign(void **state)
{
    unsigned char pk[SHOAL_PK_BYTES], sk[SHOAL_SK_BYTES];
    struct shoal_xsign x, y, t;
    struct shoal_err err;
    char hdr[SHOAL_XSIGN_MAX], text[512];
    (void)state;

    shoal_keypair_new(pk, sk);
    memset(&x, 0, sizeof x);
    strcpy(x.key, BROKER_ID);
    x.version = 2;
    x.size = 1000;
    x.piece_size = SHOAL_PIECE_DEFAULT;
    x.expires = 1800000000;
    x.has_meta = 1;
    for (int i = 0; i < 32; i++) {
        x.root[i] = (unsigned char)i;
        x.meta[i] = (unsigned char)(0xa0 + i);
    }
    shoal_xsign_sign(&x, FILE_ID, sk);
    shoal_xsign_format(&x, hdr);
    assert_non_null(strstr(hdr, "; exp=1800000000; meta=a0a1a2a3"));
    assert_int_equal(shoal_xsign_parse(hdr, &y, &err), 0);
    assert_true(y.has_meta);
    assert_memory_equal(y.meta, x.meta, 32);
    assert_int_equal(shoal_xsign_verify(&y, FILE_ID, pk, 1700000000, &err), 0);
    /* The meta hash is signed; without it, the text is another one. */
    t = y;
    t.meta[5] ^= 1;
    assert_int_equal(shoal_xsign_verify(&t, FILE_ID, pk, 1700000000, &err), -1);
    assert_string_equal(err.msg, "signature invalid");
    t = y;
    t.has_meta = 0;
    assert_int_equal(shoal_xsign_verify(&t, FILE_ID, pk, 1700000000, &err), -1);
    /* A plain manifest signature does not pass for an injection. */
    t = y;
    t.has_meta = 0;
    shoal_xsign_sign(&t, FILE_ID, sk);
    t.has_meta = 1;
    assert_int_equal(shoal_xsign_verify(&t, FILE_ID, pk, 1700000000, &err), -1);
    assert_int_equal(shoal_xsign_verify(&y, FILE_ID, pk, 1800000001, &err), -1);
    assert_string_equal(err.msg, "signature expired");

    /* The longest value fits. */
    t = y;
    t.version = UINT64_MAX;
    t.size = UINT64_MAX;
    t.expires = INT64_MAX;
    t.piece_size = SHOAL_PIECE_MAX;
    shoal_xsign_format(&t, hdr);
    assert_int_equal(strlen(hdr), 375);
    assert_int_equal(shoal_xsign_parse(hdr, &y, &err), 0);
    assert_int_equal(shoal_inject_text(FILE_ID, UINT64_MAX, UINT64_MAX,
                                       SHOAL_PIECE_MAX, t.root, INT64_MAX, t.meta,
                                       text, sizeof text), 254);
    assert_int_equal(shoal_inject_text(FILE_ID, 1, 1, SHOAL_PIECE_MAX, t.root, 1,
                                       t.meta, text, 20), -1);
    assert_string_equal(text, "");

    /* Bad meta fields. */
    shoal_xsign_format(&x, hdr);
    char *m = strstr(hdr, "meta=") + 5;
    char save = m[0];
    m[0] = 'A';
    assert_int_equal(shoal_xsign_parse(hdr, &y, &err), -1);
    assert_string_equal(err.msg, "'X-Sign' field 'meta' must be 64 lowercase hex digits");
    m[0] = save;
    memmove(m + 63, m + 64, strlen(m + 64) + 1);         /* 63 digits */
    assert_int_equal(shoal_xsign_parse(hdr, &y, &err), -1);
    sodium_memzero(sk, sizeof sk);
}

static void test_challenge_text(void **state)
{
    char out[128];
    (void)state;
    assert_int_equal(shoal_challenge_text(BROKER_ID, "AAAA", out, sizeof out),
                     (int)strlen("shoal-challenge-v1\n" BROKER_ID "\nAAAA\n"));
    assert_string_equal(out, "shoal-challenge-v1\n" BROKER_ID "\nAAAA\n");
    assert_int_equal(shoal_challenge_text(BROKER_ID, "AAAA", out, 20), -1);
}

/* --- the test vector of docs/protocol.md, section 14 ------------------------ */

static char *doc_block(char **doc_out)
{
    const char *root = getenv("SHOAL_ROOT");
    char path[1024];
    char *doc = NULL;
    size_t len = 0;
    struct shoal_err err;
    snprintf(path, sizeof path, "%s/docs/protocol.md",
             root != NULL && root[0] != '\0' ? root : ".");
    if (shoal_file_read(path, 1 << 20, &doc, &len, &err) != 0)
        fail_msg("cannot read the protocol document: %s", err.msg);
    const char *p = strstr(doc, "\n## 14. The injector\n");
    assert_non_null(p);
    p = strstr(p, "\n### Test vector\n");
    assert_non_null(p);
    p = strstr(p, "\n```text\n");
    assert_non_null(p);
    p += strlen("\n```text\n");
    const char *end = strstr(p, "\n```\n");
    assert_non_null(end);
    *doc_out = doc;
    return strndup(p, (size_t)(end - p + 1));
}

static char *doc_value(const char *block, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = block; *p;) {
        const char *nl = strchr(p, '\n');
        if (nl == NULL)
            nl = p + strlen(p);
        if (strncmp(p, key, klen) == 0 && p[klen] == ' ') {
            p += klen;
            while (*p == ' ')
                p++;
            return strndup(p, (size_t)(nl - p));
        }
        p = *nl ? nl + 1 : nl;
    }
    fail_msg("key '%s' missing from the test vector", key);
    return NULL;
}

/* A "…" value with \n, \\ and \" escapes.  New string. */
static char *doc_string(const char *block, const char *key)
{
    char *v = doc_value(block, key);
    size_t n = strlen(v), o = 0;
    char *out = malloc(n + 1);
    assert_non_null(out);
    assert_true(n >= 2 && v[0] == '"' && v[n - 1] == '"');
    for (size_t i = 1; i + 1 < n; i++) {
        if (v[i] != '\\') {
            out[o++] = v[i];
            continue;
        }
        i++;
        assert_true(v[i] == 'n' || v[i] == '\\' || v[i] == '"');
        out[o++] = v[i] == 'n' ? '\n' : v[i];
    }
    out[o] = '\0';
    free(v);
    return out;
}

static uint64_t doc_u64(const char *block, const char *key)
{
    char *v = doc_value(block, key), *end;
    uint64_t n = strtoull(v, &end, 10);
    assert_true(*v != '\0' && *end == '\0');
    free(v);
    return n;
}

static void doc_equal(const char *block, const char *key, const char *computed)
{
    char *v = doc_value(block, key);
    if (strcmp(v, computed) != 0)
        fail_msg("docs/protocol.md section 14 '%s' is\n  %s\nbut the code gives\n  %s",
                 key, v, computed);
    free(v);
}

static void test_doc_vector(void **state)
{
    char *doc = NULL, *block = doc_block(&doc);
    char *file_id = doc_value(block, "file_id");
    char *broker_id = doc_value(block, "broker_id");
    char *url = doc_value(block, "url");
    char *seed_hex = doc_value(block, "seed");
    char *names[4], *values[4], hex[129], num[32], text[512];
    unsigned char hashes[3][32], seed[32], pk[SHOAL_PK_BYTES], sk[SHOAL_SK_BYTES];
    unsigned char sig[SHOAL_SIG_BYTES];
    struct shoal_xsign x, y;
    struct shoal_err err;
    char hdr[SHOAL_XSIGN_MAX];
    (void)state;

    assert_string_equal(file_id, FILE_ID);
    assert_string_equal(broker_id, BROKER_ID);

    /* The swarm. */
    size_t ul = strlen(url);
    char *prefixed = malloc(ul + 5);
    assert_non_null(prefixed);
    memcpy(prefixed, "url:", 4);
    memcpy(prefixed + 4, url, ul + 1);
    shoal_sha256(prefixed, ul + 4, hashes[0]);
    free(prefixed);
    shoal_hex_encode(hashes[0], 32, hex);
    doc_equal(block, "swarm", hex);

    /* The metadata text from the header fields as received. */
    for (int i = 0; i < 4; i++) {
        char key[32];
        snprintf(key, sizeof key, "header_%d", i);
        char *field = doc_string(block, key), *colon = strchr(field, ':');
        assert_non_null(colon);
        names[i] = strndup(field, (size_t)(colon - field));
        values[i] = strdup(colon + 1);
        free(field);
    }
    char *meta = shoal_inject_meta(url, (int)doc_u64(block, "status"),
                                   (const char *const *)names,
                                   (const char *const *)values, 4);
    char *want_meta = doc_string(block, "meta");
    assert_string_equal(meta, want_meta);
    free(want_meta);
    memset(&x, 0, sizeof x);
    shoal_sha256(meta, strlen(meta), x.meta);
    x.has_meta = 1;
    shoal_hex_encode(x.meta, 32, hex);
    doc_equal(block, "meta_hash", hex);

    /* The content of section 9. */
    for (int i = 0; i < 3; i++) {
        char piece[32];
        snprintf(piece, sizeof piece, "shoal piece %d", i);
        shoal_sha256(piece, strlen(piece), hashes[i]);
    }
    strcpy(x.key, broker_id);
    x.version = doc_u64(block, "version");
    x.size = doc_u64(block, "size");
    x.piece_size = (uint32_t)doc_u64(block, "piece_size");
    x.expires = (int64_t)doc_u64(block, "expires");
    shoal_merkle_root((const unsigned char (*)[32])hashes, 3, x.root);
    shoal_hex_encode(x.root, 32, hex);
    doc_equal(block, "root", hex);

    int n = shoal_inject_text(file_id, x.version, x.size, x.piece_size, x.root,
                              x.expires, x.meta, text, sizeof text);
    char *want = doc_string(block, "text");
    assert_string_equal(text, want);
    free(want);
    snprintf(num, sizeof num, "%d", n);
    doc_equal(block, "text_bytes", num);

    assert_int_equal(shoal_hex_decode_exact(seed_hex, seed, sizeof seed, "seed", &err), 0);
    assert_int_equal(crypto_sign_seed_keypair(pk, sk, seed), 0);
    shoal_xsign_sign(&x, file_id, sk);
    char *b64 = shoal_b64_encode(x.sig, SHOAL_SIG_BYTES);
    doc_equal(block, "signature", b64);
    free(b64);
    shoal_xsign_format(&x, hdr);
    doc_equal(block, "x_sign", hdr);
    char *literal = doc_value(block, "x_sign");
    assert_int_equal(shoal_xsign_parse(literal, &y, &err), 0);
    free(literal);
    assert_int_equal(shoal_xsign_verify(&y, file_id, pk, x.expires, &err), 0);
    assert_int_equal(shoal_xsign_verify(&y, file_id, pk, x.expires + 1, &err), -1);

    /* The challenge. */
    char *nonce = doc_value(block, "nonce");
    n = shoal_challenge_text(broker_id, nonce, text, sizeof text);
    want = doc_string(block, "challenge_text");
    assert_string_equal(text, want);
    free(want);
    shoal_sign(sk, (const unsigned char *)text, (size_t)n, sig);
    b64 = shoal_b64_encode(sig, sizeof sig);
    doc_equal(block, "challenge_signature", b64);
    free(b64);
    free(nonce);

    for (int i = 0; i < 4; i++) {
        free(names[i]);
        free(values[i]);
    }
    sodium_memzero(sk, sizeof sk);
    free(meta);
    free(seed_hex);
    free(url);
    free(broker_id);
    free(file_id);
    free(block);
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_classes),
        cmocka_unit_test(test_cidr_lists),
        cmocka_unit_test(test_meta_text),
        cmocka_unit_test(test_freshness),
        cmocka_unit_test(test_inject_xsign),
        cmocka_unit_test(test_challenge_text),
        cmocka_unit_test(test_doc_vector),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
