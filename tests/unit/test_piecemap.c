/* Unit tests of api/piecemap.c: the cache of memory maps of stored pieces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "piecemap.h"
#include "store.h"
#include "util.h"

#define PIECE (64u * 1024u)

static char top[64];

static int group_setup(void **state)
{
    (void)state;
    snprintf(top, sizeof top, "/tmp/shoal-test-piecemap-XXXXXX");
    return mkdtemp(top) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
    return system(cmd) == 0 ? 0 : -1;
}

struct fixture {
    struct shoal_store *store;
    unsigned char data[4][PIECE];
    unsigned char hash[4][SHOAL_HASH_BYTES];
};

static int setup(void **state)
{
    static int seq;
    char dir[128];
    struct shoal_err err;
    struct fixture *f = calloc(1, sizeof *f);

    if (f == NULL)
        return -1;
    snprintf(dir, sizeof dir, "%s/s%d", top, ++seq);
    if ((f->store = shoal_store_open(dir, &err)) == NULL)
        return -1;
    for (int i = 0; i < 4; i++) {
        for (size_t j = 0; j < PIECE; j++)
            f->data[i][j] = (unsigned char)(j * 7 + (size_t)i * 131 + j / 251);
        shoal_sha256(f->data[i], PIECE, f->hash[i]);
        if (shoal_store_put(f->store, f->hash[i], f->data[i], PIECE, &err) < 0)
            return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    shoal_store_close(f->store);
    free(f);
    return 0;
}

static uint64_t stat_of(struct shoal_piecemap *m, int which)
{
    uint64_t v[3];
    shoal_piecemap_stats(m, &v[0], &v[1], &v[2]);
    return v[which];
}
#define HITS(m) stat_of(m, 0)
#define MISSES(m) stat_of(m, 1)
#define BYTES(m) stat_of(m, 2)

/* A piece maps to its bytes; asked again, the same map comes back. */
static void test_maps_once_and_reuses(void **state)
{
    struct fixture *f = *state;
    struct shoal_err err;
    struct shoal_piecemap *m = shoal_piecemap_new(f->store, 16 * PIECE);
    assert_non_null(m);

    struct shoal_pmap *a = shoal_piecemap_get(m, f->hash[1], PIECE, &err);
    assert_non_null(a);
    assert_memory_equal(shoal_pmap_bytes(a), f->data[1], PIECE);
    struct shoal_pmap *b = shoal_piecemap_get(m, f->hash[1], PIECE, &err);
    assert_ptr_equal(a, b);
    assert_int_equal(MISSES(m), 1);
    assert_int_equal(HITS(m), 1);
    assert_int_equal(BYTES(m), PIECE);
    shoal_piecemap_put(m, a);
    shoal_piecemap_put(m, b);
    /* released, still cached */
    b = shoal_piecemap_get(m, f->hash[1], PIECE, &err);
    assert_ptr_equal(a, b);
    assert_int_equal(HITS(m), 2);
    shoal_piecemap_put(m, b);
    shoal_piecemap_free(m);
}

/* Absent pieces and pieces of another length give no map. */
static void test_absent_or_wrong_length(void **state)
{
    struct fixture *f = *state;
    struct shoal_err err;
    unsigned char nothing[SHOAL_HASH_BYTES] = { 1, 2, 3 };
    struct shoal_piecemap *m = shoal_piecemap_new(f->store, 16 * PIECE);
    assert_non_null(m);

    shoal_err_clear(&err);
    assert_null(shoal_piecemap_get(m, nothing, PIECE, &err));
    assert_int_equal(err.code, SHOAL_ENOTFOUND);
    shoal_err_clear(&err);
    assert_null(shoal_piecemap_get(m, f->hash[0], PIECE - 1, &err));
    assert_int_equal(err.code, SHOAL_EIO);
    assert_int_equal(BYTES(m), 0);
    shoal_piecemap_free(m);
}

/* Over the cap, the least recently used map that nothing holds goes. */
static void test_evicts_least_recently_used(void **state)
{
    struct fixture *f = *state;
    struct shoal_err err;
    struct shoal_piecemap *m = shoal_piecemap_new(f->store, 2 * PIECE);
    assert_non_null(m);

    for (int i = 0; i < 2; i++)
        shoal_piecemap_put(m, shoal_piecemap_get(m, f->hash[i], PIECE, &err));
    /* use 0 again: 1 is now the least recent */
    shoal_piecemap_put(m, shoal_piecemap_get(m, f->hash[0], PIECE, &err));
    shoal_piecemap_put(m, shoal_piecemap_get(m, f->hash[2], PIECE, &err));
    assert_int_equal(BYTES(m), 2 * PIECE);
    uint64_t misses = MISSES(m);
    shoal_piecemap_put(m, shoal_piecemap_get(m, f->hash[0], PIECE, &err));
    shoal_piecemap_put(m, shoal_piecemap_get(m, f->hash[2], PIECE, &err));
    assert_int_equal(MISSES(m), misses);           /* both still there */
    shoal_piecemap_put(m, shoal_piecemap_get(m, f->hash[1], PIECE, &err));
    assert_int_equal(MISSES(m), misses + 1);       /* 1 had gone */
    shoal_piecemap_free(m);
}

/* A held map is never unmapped under its holder: the cache may go over
 * its size while every map is held, and comes back under it after. */
static void test_held_maps_stay(void **state)
{
    struct fixture *f = *state;
    struct shoal_err err;
    struct shoal_pmap *held[4];
    struct shoal_piecemap *m = shoal_piecemap_new(f->store, PIECE);
    assert_non_null(m);

    for (int i = 0; i < 4; i++)
        assert_non_null(held[i] = shoal_piecemap_get(m, f->hash[i], PIECE, &err));
    assert_int_equal(BYTES(m), 4 * PIECE);
    for (int i = 0; i < 4; i++)
        assert_memory_equal(shoal_pmap_bytes(held[i]), f->data[i], PIECE);
    for (int i = 0; i < 4; i++)
        shoal_piecemap_put(m, held[i]);
    shoal_piecemap_put(m, shoal_piecemap_get(m, f->hash[0], PIECE, &err));
    assert_true(BYTES(m) <= PIECE);
    shoal_piecemap_free(m);
}

/* A piece removed from the store is forgotten at once; a response that
 * holds its map still reads the right bytes. */
static void test_removed_piece_is_forgotten(void **state)
{
    struct fixture *f = *state;
    struct shoal_err err;
    struct shoal_piecemap *m = shoal_piecemap_new(f->store, 16 * PIECE);
    assert_non_null(m);

    struct shoal_pmap *a = shoal_piecemap_get(m, f->hash[3], PIECE, &err);
    assert_non_null(a);
    assert_int_equal(shoal_store_remove(f->store, f->hash[3], &err), 0);
    assert_int_equal(BYTES(m), 0);
    shoal_err_clear(&err);
    assert_null(shoal_piecemap_get(m, f->hash[3], PIECE, &err));
    assert_int_equal(err.code, SHOAL_ENOTFOUND);
    assert_memory_equal(shoal_pmap_bytes(a), f->data[3], PIECE);
    shoal_piecemap_put(m, a);                     /* unmapped now */
    shoal_piecemap_free(m);
    /* without a cache, removing tells nobody */
    assert_int_equal(shoal_store_remove(f->store, f->hash[2], &err), 0);
}

/* Threads taking and giving back maps of a few pieces through a small
 * cache always read the right bytes. */
struct racer {
    struct fixture *f;
    struct shoal_piecemap *m;
    int seed;
    int bad;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct shoal_err err;
    unsigned s = (unsigned)r->seed;
    for (int k = 0; k < 2000; k++) {
        int i = (int)(rand_r(&s) % 4);
        struct shoal_pmap *p = shoal_piecemap_get(r->m, r->f->hash[i], PIECE, &err);
        if (p == NULL || memcmp(shoal_pmap_bytes(p) + (k % PIECE),
                                r->f->data[i] + (k % PIECE), 64) != 0)
            r->bad++;
        shoal_piecemap_put(r->m, p);
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct fixture *f = *state;
    struct shoal_piecemap *m = shoal_piecemap_new(f->store, 2 * PIECE);
    pthread_t t[4];
    struct racer r[4];
    assert_non_null(m);
    for (int i = 0; i < 4; i++) {
        r[i] = (struct racer){ f, m, i + 1, 0 };
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].bad, 0);
    }
    assert_true(BYTES(m) <= 2 * PIECE);
    assert_int_equal(HITS(m) + MISSES(m), 4 * 2000);
    shoal_piecemap_free(m);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_maps_once_and_reuses),
        T(test_absent_or_wrong_length),
        T(test_evicts_least_recently_used),
        T(test_held_maps_stay),
        T(test_removed_piece_is_forgotten),
        T(test_threads),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
