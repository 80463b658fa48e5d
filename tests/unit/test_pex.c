/* Unit tests of peer/pex.c (the holders a peer knows of: noting, merging,
 * what is saved and loaded back; the manifests get keeps) and of the
 * records of held.c that --max-storage relies on (kept by get or owned). */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <ftw.h>
#include <sodium.h>

#include "../../peer/pex.c"
#include "../../peer/held.c"
#include "../../peer/identity.c"
#include "../../peer/progress.c"

#define FID_A "0b6f2f6e-6f0e-4c8e-9a55-1f7d2c1a0001"
#define FID_B "0b6f2f6e-6f0e-4c8e-9a55-1f7d2c1a0002"

static char tmpl[] = "/tmp/shoal-test-pex-XXXXXX";

static int rm_one(const char *p, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    char *dir = strdup(tmpl);
    if (!dir || !mkdtemp(dir))
        return -1;
    *state = dir;
    return 0;
}

static int teardown(void **state)
{
    nftw(*state, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(*state);
    return 0;
}

/* The entry of (url, file, version) in list, or NULL. */
static json_t *entry(json_t *list, const char *url, const char *fid,
                     uint64_t version)
{
    size_t i;
    json_t *e;

    json_array_foreach(list, i, e)
        if (strcmp(json_string_value(json_object_get(e, "url")), url) == 0 &&
            strcasecmp(json_string_value(json_object_get(e, "file_id")),
                       fid) == 0 &&
            (uint64_t)json_integer_value(json_object_get(e, "version")) ==
                version)
            return e;
    return NULL;
}

static void test_note_adds_and_merges(void **state)
{
    json_t *l = json_array();
    time_t now = time(NULL);
    char ts[32];
    (void)state;

    assert_int_equal(pr_holders_note(l, "http://127.0.0.1:7070", "peer", FID_A,
                                     1, "/g==", now - 100), 0);
    assert_int_equal(pr_holders_note(l, "http://127.0.0.1:7071", "peer", FID_A,
                                     1, NULL, now - 50), 0);
    assert_int_equal(pr_holders_note(l, "http://127.0.0.1:7070", "peer", FID_A,
                                     2, "gA==", now - 40), 0);
    assert_int_equal(json_array_size(l), 3);
    json_t *e = entry(l, "http://127.0.0.1:7070", FID_A, 1);
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "kind")), "peer");
    assert_string_equal(json_string_value(json_object_get(e, "have")), "/g==");
    shoal_time_format(now - 100, ts);
    assert_string_equal(json_string_value(json_object_get(e, "seen_at")), ts);
    /* have NULL: every piece */
    assert_true(json_is_null(json_object_get(
        entry(l, "http://127.0.0.1:7071", FID_A, 1), "have")));

    /* the same url, file (any case) and version again: one entry, moved
     * to the end, with what was seen last */
    char upper[37];
    snprintf(upper, sizeof(upper), "%s", FID_A);
    for (char *c = upper; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    assert_int_equal(pr_holders_note(l, "http://127.0.0.1:7070", "broker",
                                     upper, 1, NULL, now), 0);
    assert_int_equal(json_array_size(l), 3);
    e = json_array_get(l, 2);
    assert_string_equal(json_string_value(json_object_get(e, "url")),
                        "http://127.0.0.1:7070");
    assert_int_equal(json_integer_value(json_object_get(e, "version")), 1);
    assert_string_equal(json_string_value(json_object_get(e, "kind")), "broker");
    assert_true(json_is_null(json_object_get(e, "have")));
    shoal_time_format(now, ts);
    assert_string_equal(json_string_value(json_object_get(e, "seen_at")), ts);
    /* the other version's entry is untouched */
    assert_string_equal(json_string_value(json_object_get(
        entry(l, "http://127.0.0.1:7070", FID_A, 2), "have")), "gA==");
    json_decref(l);
}

static void test_save_load_round_trip(void **state)
{
    const char *dir = *state;
    json_t *l = json_array();
    struct shoal_err e;
    struct stat st;
    char path[PATH_MAX];
    time_t now = time(NULL);

    /* nothing saved: an empty list */
    json_t *none = pr_holders_load(dir);
    assert_true(json_is_array(none) && json_array_size(none) == 0);
    json_decref(none);
    none = pr_holders_load(NULL);
    assert_true(json_is_array(none) && json_array_size(none) == 0);
    json_decref(none);

    assert_int_equal(pr_holders_note(l, "http://127.0.0.1:7070", "peer", FID_A,
                                     1, "/g==", now - 10), 0);
    assert_int_equal(pr_holders_note(l, "https://peer.example", "broker",
                                     FID_B, 3, NULL, now), 0);
    /* too old to be kept */
    assert_int_equal(pr_holders_note(l, "http://127.0.0.1:7072", "peer", FID_A,
                                     1, NULL, now - PR_HOLDERS_AGE - 5), 0);
    shoal_err_clear(&e);
    assert_int_equal(pr_holders_save(dir, l, &e), 0);
    snprintf(path, sizeof(path), "%s/holders.json", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    json_t *back = pr_holders_load(dir);
    assert_int_equal(json_array_size(back), 2);
    json_t *a = entry(back, "http://127.0.0.1:7070", FID_A, 1);
    json_t *b = entry(back, "https://peer.example", FID_B, 3);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(json_equal(a, entry(l, "http://127.0.0.1:7070", FID_A, 1)));
    assert_true(json_equal(b, entry(l, "https://peer.example", FID_B, 3)));
    assert_null(entry(back, "http://127.0.0.1:7072", FID_A, 1));
    json_decref(back);
    json_decref(l);
}

static void test_load_drops_what_is_not_an_entry(void **state)
{
    const char *dir = *state;
    char path[PATH_MAX];
    char ok[32], future[32], old[32], soon[32];
    time_t now = time(NULL);
    struct shoal_err e;

    shoal_time_format(now - 5, ok);
    shoal_time_format(now + 3600, future);
    shoal_time_format(now - PR_HOLDERS_AGE - 1, old);
    shoal_time_format(now + 30, soon);          /* a clock a little ahead */
    json_t *doc = json_pack(
        "{s:[{s:s, s:s, s:s, s:i, s:s, s:s}, {s:s, s:s, s:s, s:i, s:s},"
        "    {s:s, s:s, s:s, s:i, s:s}, {s:s, s:s, s:s, s:i, s:s},"
        "    {s:s, s:s, s:s, s:i, s:s}, {s:s, s:s, s:s, s:i, s:s},"
        "    {s:s, s:s, s:s, s:i, s:s}, {s:s, s:s, s:s, s:i, s:s},"
        "    {s:s, s:s, s:s, s:i, s:i, s:s}, {s:s, s:s, s:s, s:i, s:s},"
        "    {s:s, s:s, s:s, s:i, s:s}, {s:s, s:s, s:s, s:i}, s]}",
        "holders",
        "url", "http://127.0.0.1:1", "kind", "peer", "file_id", FID_A,
        "version", 1, "have", "/g==", "seen_at", ok,
        "url", "http://127.0.0.1:2", "kind", "peer", "file_id", FID_A,
        "version", 1, "seen_at", soon,
        "url", "ftp://127.0.0.1:3", "kind", "peer", "file_id", FID_A,
        "version", 1, "seen_at", ok,
        "url", "http://127.0.0.1:4/", "kind", "peer", "file_id", FID_A,
        "version", 1, "seen_at", ok,                /* not normalized */
        "url", "http://127.0.0.1:5", "kind", "tracker", "file_id", FID_A,
        "version", 1, "seen_at", ok,
        "url", "http://127.0.0.1:6", "kind", "peer", "file_id", "nope",
        "version", 1, "seen_at", ok,
        "url", "http://127.0.0.1:7", "kind", "peer", "file_id", FID_A,
        "version", 0, "seen_at", ok,
        "url", "http://127.0.0.1:8", "kind", "peer", "file_id", FID_A,
        "version", 1, "seen_at", future,
        "url", "http://127.0.0.1:9", "kind", "peer", "file_id", FID_A,
        "version", 1, "have", 5, "seen_at", ok,
        "url", "http://127.0.0.1:10", "kind", "peer", "file_id", FID_A,
        "version", 1, "seen_at", old,
        "url", "http://127.0.0.1:11", "kind", "peer", "file_id", FID_A,
        "version", 1, "seen_at", "yesterday",
        "url", "http://127.0.0.1:12", "kind", "peer", "file_id", FID_A,
        "version", 1,                               /* no seen_at */
        "not an entry");
    assert_non_null(doc);
    char *text = json_dumps(doc, 0);
    snprintf(path, sizeof(path), "%s/holders.json", dir);
    shoal_err_clear(&e);
    assert_int_equal(shoal_file_write_atomic(path, text, strlen(text), 0600,
                                             &e), 0);
    free(text);
    json_decref(doc);

    json_t *back = pr_holders_load(dir);
    assert_int_equal(json_array_size(back), 2);
    assert_non_null(entry(back, "http://127.0.0.1:1", FID_A, 1));
    assert_non_null(entry(back, "http://127.0.0.1:2", FID_A, 1));
    json_decref(back);

    /* not JSON, or not the shape: nothing */
    assert_int_equal(shoal_file_write_atomic(path, "{\"holders\":", 11, 0600,
                                             &e), 0);
    back = pr_holders_load(dir);
    assert_int_equal(json_array_size(back), 0);
    json_decref(back);
    assert_int_equal(shoal_file_write_atomic(path, "[1,2]", 5, 0600, &e), 0);
    back = pr_holders_load(dir);
    assert_int_equal(json_array_size(back), 0);
    json_decref(back);
}

static void test_save_keeps_the_newest_within_the_limits(void **state)
{
    const char *dir = *state;
    json_t *l = json_array();
    struct shoal_err e;
    char url[64];
    char fid[37];
    time_t now = time(NULL);

    /* one file: PR_HOLDERS_PER_FILE + 6 holders, noted oldest last */
    for (int i = 0; i < PR_HOLDERS_PER_FILE + 6; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d", 1000 + i);
        assert_int_equal(pr_holders_note(l, url, "peer", FID_A, 1, NULL,
                                         now - i), 0);
    }
    shoal_err_clear(&e);
    assert_int_equal(pr_holders_save(dir, l, &e), 0);
    json_t *back = pr_holders_load(dir);
    assert_int_equal(json_array_size(back), PR_HOLDERS_PER_FILE);
    for (int i = 0; i < PR_HOLDERS_PER_FILE + 6; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d", 1000 + i);
        if (i < PR_HOLDERS_PER_FILE)
            assert_non_null(entry(back, url, FID_A, 1));
        else
            assert_null(entry(back, url, FID_A, 1));
    }
    json_decref(back);
    json_decref(l);

    /* many files: PR_HOLDERS_MAX in all, the newest */
    l = json_array();
    int total = PR_HOLDERS_MAX + 40;
    for (int i = 0; i < total; i++) {
        snprintf(fid, sizeof(fid), "0b6f2f6e-6f0e-4c8e-9a55-%012d", i);
        assert_int_equal(pr_holders_note(l, "http://127.0.0.1:9", "peer", fid,
                                         1, NULL, now - total + i), 0);
    }
    assert_int_equal(pr_holders_save(dir, l, &e), 0);
    back = pr_holders_load(dir);
    assert_int_equal(json_array_size(back), PR_HOLDERS_MAX);
    snprintf(fid, sizeof(fid), "0b6f2f6e-6f0e-4c8e-9a55-%012d", total - 1);
    assert_non_null(entry(back, "http://127.0.0.1:9", fid, 1));
    snprintf(fid, sizeof(fid), "0b6f2f6e-6f0e-4c8e-9a55-%012d", 39);
    assert_null(entry(back, "http://127.0.0.1:9", fid, 1));
    snprintf(fid, sizeof(fid), "0b6f2f6e-6f0e-4c8e-9a55-%012d", 40);
    assert_non_null(entry(back, "http://127.0.0.1:9", fid, 1));
    json_decref(back);
    json_decref(l);
}

/* --- signed manifests: the cache of get, the records of held.c ------- */

struct signer {
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
    struct pr_identity id;
};

static void signer_init(struct signer *s)
{
    assert_int_equal(sodium_init() >= 0, 1);
    crypto_sign_keypair(s->pk, s->sk);
    memset(&s->id, 0, sizeof(s->id));
    shoal_uuid_v4(s->id.broker_id);
    char *b64 = shoal_b64_encode(s->pk, sizeof(s->pk));
    assert_non_null(b64);
    snprintf(s->id.broker_key, sizeof(s->id.broker_key), "%s", b64);
    free(b64);
}

/* The manifest answer of (fid, version) over npieces made-up pieces,
 * signed by s until expires: a new reference. */
static json_t *signed_manifest(const struct signer *s, const char *fid,
                               uint64_t version, uint64_t npieces,
                               int64_t expires)
{
    unsigned char (*h)[SHOAL_HASH_BYTES] = calloc(npieces, sizeof(*h));
    struct shoal_xsign x;
    char xs[SHOAL_XSIGN_MAX];

    assert_non_null(h);
    for (uint64_t i = 0; i < npieces; i++) {
        char seed[64];
        int n = snprintf(seed, sizeof(seed), "%s/%" PRIu64 "/%" PRIu64, fid,
                         version, i);
        shoal_sha256(seed, (size_t)n, h[i]);
    }
    memset(&x, 0, sizeof(x));
    snprintf(x.key, sizeof(x.key), "%s", s->id.broker_id);
    x.version = version;
    x.piece_size = 16384;
    x.size = npieces * 16384;
    shoal_merkle_root((const unsigned char (*)[SHOAL_HASH_BYTES])h, npieces,
                      x.root);
    x.expires = expires;
    shoal_xsign_sign(&x, fid, s->sk);
    shoal_xsign_format(&x, xs);
    json_t *doc = pr_manifest_doc(fid, version, x.size, x.piece_size,
                                  (const unsigned char (*)[SHOAL_HASH_BYTES])h,
                                  npieces, x.root, xs);
    free(h);
    assert_non_null(doc);
    return doc;
}

static void test_manifest_cache(void **state)
{
    const char *dir = *state;
    struct signer s;
    struct pr_version *v = NULL, *got = NULL;
    struct shoal_err e;
    int64_t later = (int64_t)time(NULL) + 3600;

    signer_init(&s);
    shoal_err_clear(&e);
    assert_int_equal(pr_manifest_cache_load(dir, &s.id, FID_A, 0, &got, &e), -1);
    assert_int_equal(e.code, SHOAL_ENOTFOUND);
    assert_null(got);

    for (uint64_t ver = 1; ver <= 2; ver++) {
        json_t *doc = signed_manifest(&s, FID_A, ver, 3, later);
        assert_int_equal(pr_manifest_verify(&s.id, FID_A, doc, NULL, 0, &v, &e),
                         0);
        assert_int_equal(pr_manifest_cache_save(
            dir, FID_A, v->version, v->size, v->piece_size,
            (const unsigned char (*)[SHOAL_HASH_BYTES])v->hashes, v->npieces,
            v->root, v->xsign, &e), 0);
        pr_version_free(v);
        json_decref(doc);
    }
    /* version 0: the highest kept; or the one asked for */
    assert_int_equal(pr_manifest_cache_load(dir, &s.id, FID_A, 0, &got, &e), 0);
    assert_int_equal(got->version, 2);
    assert_int_equal(got->npieces, 3);
    pr_version_free(got);
    assert_int_equal(pr_manifest_cache_load(dir, &s.id, FID_A, 1, &got, &e), 0);
    assert_int_equal(got->version, 1);
    pr_version_free(got);
    assert_int_equal(pr_manifest_cache_load(dir, &s.id, FID_A, 3, &got, &e), -1);

    /* another broker's key: nothing checks out */
    struct signer other;
    signer_init(&other);
    shoal_err_clear(&e);
    assert_int_equal(pr_manifest_cache_load(dir, &other.id, FID_A, 0, &got, &e),
                     -1);
    assert_int_equal(e.code, SHOAL_ENOTFOUND);
    assert_non_null(strstr(e.msg, "no usable manifest"));

    /* an expired one is not used */
    json_t *doc = signed_manifest(&s, FID_B, 1, 2, (int64_t)time(NULL) - 10);
    assert_int_equal(pr_manifest_verify(&s.id, FID_B, doc, NULL, 0, &v, &e), 0);
    assert_int_equal(pr_manifest_cache_save(
        dir, FID_B, 1, v->size, v->piece_size,
        (const unsigned char (*)[SHOAL_HASH_BYTES])v->hashes, v->npieces,
        v->root, v->xsign, &e), 0);
    pr_version_free(v);
    json_decref(doc);
    assert_int_equal(pr_manifest_cache_load(dir, &s.id, FID_B, 1, &got, &e), -1);
}

static void collect(void *arg, struct pr_version *v)
{
    json_t *seen = arg;
    char key[64];
    snprintf(key, sizeof(key), "%s/%" PRIu64, v->file_id, v->version);
    json_object_set_new(seen, key, json_integer(v->kept));
    pr_version_free(v);
}

static void test_records_kept_by_get_or_owned(void **state)
{
    const char *dir = *state;
    struct signer s;
    struct pr_version *v = NULL, *got = NULL;
    struct shoal_err e;
    char path[PATH_MAX];

    signer_init(&s);
    shoal_err_clear(&e);
    struct pr_held *h = pr_held_open(dir, &e);
    assert_non_null(h);
    json_t *a1 = signed_manifest(&s, FID_A, 1, 2, (int64_t)time(NULL) + 3600);
    json_t *b1 = signed_manifest(&s, FID_B, 1, 2, (int64_t)time(NULL) + 3600);
    json_t *a1_copy = json_deep_copy(a1);
    assert_int_equal(pr_manifest_verify(&s.id, FID_A, a1, NULL, 0, &v, &e), 0);

    assert_int_equal(pr_held_kept(h, FID_A, 1), -1);          /* none */
    assert_int_equal(pr_held_record_kept(h, v, a1, &e), 0);
    assert_true(json_equal(a1, a1_copy));                      /* unchanged */
    assert_int_equal(pr_held_kept(h, FID_A, 1), 1);
    /* the record still checks out, and says it is a cache */
    snprintf(path, sizeof(path), "%s/files/%s/1.json", dir, FID_A);
    json_t *rec = json_load_file(path, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(rec, PR_RECORD_KEPT)),
                        "get");
    json_decref(rec);
    assert_int_equal(pr_manifest_cache_load(dir, &s.id, FID_A, 1, &got, &e), 0);
    pr_version_free(got);

    struct pr_version *vb = NULL;
    assert_int_equal(pr_manifest_verify(&s.id, FID_B, b1, NULL, 0, &vb, &e), 0);
    assert_int_equal(pr_held_record(h, vb, b1, &e), 0);        /* owned */
    assert_int_equal(pr_held_kept(h, FID_B, 1), 0);
    json_t *seen = json_object();
    assert_int_equal(pr_held_each(h, &s.id, NULL, collect, seen, &e), 2);
    assert_int_equal(json_integer_value(json_object_get(seen, FID_A "/1")), 1);
    assert_int_equal(json_integer_value(json_object_get(seen, FID_B "/1")), 0);
    json_decref(seen);

    /* a get over an owned record leaves it owned */
    assert_int_equal(pr_held_record_kept(h, vb, b1, &e), 0);
    assert_int_equal(pr_held_kept(h, FID_B, 1), 0);
    /* a seed over a kept one makes it owned */
    assert_int_equal(pr_held_record(h, v, a1, &e), 0);
    assert_int_equal(pr_held_kept(h, FID_A, 1), 0);
    assert_int_equal(pr_held_record_kept(h, v, a1, &e), 0);
    assert_int_equal(pr_held_kept(h, FID_A, 1), 0);
    /* a record that cannot be read is not evictable */
    snprintf(path, sizeof(path), "%s/files/%s/1.json", dir, FID_B);
    assert_int_equal(shoal_file_write_atomic(path, "{\"kept", 6, 0600, &e), 0);
    assert_int_equal(pr_held_kept(h, FID_B, 1), 0);

    /* forget: the record goes, and the file's folder when it is empty */
    assert_int_equal(pr_held_forget(h, FID_A, 1, &e), 0);
    assert_int_equal(pr_held_kept(h, FID_A, 1), -1);
    snprintf(path, sizeof(path), "%s/files/%s", dir, FID_A);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(pr_held_forget(h, FID_A, 1, &e), 0);     /* none: fine */

    pr_version_free(v);
    pr_version_free(vb);
    json_decref(a1);
    json_decref(a1_copy);
    json_decref(b1);
    pr_held_close(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_note_adds_and_merges),
        cmocka_unit_test_setup_teardown(test_save_load_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_drops_what_is_not_an_entry,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_keeps_the_newest_within_the_limits,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_kept_by_get_or_owned,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
