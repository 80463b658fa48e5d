/* Unit tests of peer/rate.c: the token bucket of --max-upload-rate (no
 * burst at start, what is saved up while idle, chunks when short, one
 * limit shared by many threads).  Times are checked from below strictly
 * (the limit is never beaten) and from above loosely (a busy machine). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../peer/rate.c"

#define MIB (1024.0 * 1024.0)

static double since(double t0)
{
    return shoal_mono() - t0;
}

/* Take total bytes in asks of want; the bytes given in all. */
static uint64_t drain(struct pr_rate *r, uint64_t total, size_t want)
{
    uint64_t got = 0;
    while (got < total) {
        size_t ask = total - got < want ? (size_t)(total - got) : want;
        size_t n = pr_rate_take(r, ask);
        assert_true(n >= 1 && n <= ask);
        got += n;
    }
    return got;
}

static void test_new_and_free(void **state)
{
    (void)state;
    assert_null(pr_rate_new(0));
    pr_rate_free(NULL);
    struct pr_rate *r = pr_rate_new(1);
    assert_non_null(r);
    assert_int_equal(pr_rate_take(r, 0), 0);       /* nothing asked */
    pr_rate_free(r);
}

static void test_no_burst_at_start(void **state)
{
    (void)state;
    /* 1 MiB/s: a chunk is 1/20 s worth; the first ask waits for it */
    struct pr_rate *r = pr_rate_new(1 << 20);
    double t0 = shoal_mono();
    size_t n = pr_rate_take(r, 1 << 20);
    double took = since(t0);
    assert_int_equal(n, (size_t)((1 << 20) / 20));
    assert_true(took >= 0.045);
    assert_true(took < 1.0);
    pr_rate_free(r);
}

static void test_small_and_tiny_rates(void **state)
{
    (void)state;
    /* 10 B/s: chunks of 1 byte, a tenth of a second each */
    struct pr_rate *r = pr_rate_new(10);
    double t0 = shoal_mono();
    assert_int_equal(pr_rate_take(r, 1000), 1);
    assert_int_equal(pr_rate_take(r, 1000), 1);
    assert_true(since(t0) >= 0.19);
    pr_rate_free(r);
    /* 100 MiB/s: a chunk is at most 256 KiB */
    r = pr_rate_new(100u << 20);
    assert_int_equal(pr_rate_take(r, 8u << 20), 256u << 10);
    pr_rate_free(r);
}

static void test_steady_rate(void **state)
{
    (void)state;
    /* 1.5 MiB at 1 MiB/s in asks of 64 KiB: at least 1.5 s less what the
     * bucket may save up (nothing at start) */
    struct pr_rate *r = pr_rate_new(1 << 20);
    double t0 = shoal_mono();
    assert_int_equal(drain(r, 3u << 19, 64u << 10), 3u << 19);
    double took = since(t0);
    assert_true(took >= 1.5 - 0.01);
    assert_true(took < 3.5);
    pr_rate_free(r);
}

static void test_burst_is_bounded(void **state)
{
    (void)state;
    /* idle for 0.5 s at 1 MiB/s: a tenth of a second's worth is saved,
     * not half a second's, and goes at once */
    struct pr_rate *r = pr_rate_new(1 << 20);
    struct timespec ts = { 0, 500 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    double t0 = shoal_mono();
    size_t n = pr_rate_take(r, 1 << 20);
    assert_true(since(t0) < 0.03);
    assert_true(n >= (size_t)((1 << 20) / 20));
    assert_true(n <= (size_t)((1 << 20) / 10) + 1);
    /* a small ask within what is left goes at once, whole */
    nanosleep(&ts, NULL);
    t0 = shoal_mono();
    assert_int_equal(pr_rate_take(r, 1000), 1000);
    assert_int_equal(pr_rate_take(r, 1000), 1000);
    assert_true(since(t0) < 0.03);
    /* after the saved tokens, the pace is the rate again: 0.5 MiB more
     * take at least 0.4 s (0.5 s less the tenth saved) */
    t0 = shoal_mono();
    drain(r, 1u << 19, 32u << 10);
    assert_true(since(t0) >= 0.4 - 0.01);
    pr_rate_free(r);
}

struct worker {
    struct pr_rate *r;
    uint64_t total;
    uint64_t got;
    size_t most;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    while (w->got < w->total) {
        size_t ask = w->total - w->got < (48u << 10) ?
                     (size_t)(w->total - w->got) : (48u << 10);
        size_t n = pr_rate_take(w->r, ask);
        if (n < 1 || n > ask)
            break;
        if (n > w->most)
            w->most = n;
        w->got += n;
    }
    return NULL;
}

static void test_many_threads_share_one_limit(void **state)
{
    (void)state;
    /* 8 threads, 256 KiB each, 2 MiB in all at 2 MiB/s: about 1 s, not
     * 1/8 s: one limit for all */
    enum { N = 8 };
    struct pr_rate *r = pr_rate_new(2u << 20);
    struct worker w[N];
    pthread_t t[N];
    double t0 = shoal_mono();

    for (int i = 0; i < N; i++) {
        w[i] = (struct worker){ .r = r, .total = 256u << 10 };
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    double took = since(t0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(w[i].got, 256u << 10);
        /* no one gets more than a tenth of a second's worth at once */
        assert_true(w[i].most <= (size_t)((2u << 20) / 10) + 1);
    }
    assert_true(took >= 1.0 - 0.01);
    assert_true(took < 4.0);
    pr_rate_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_and_free),
        cmocka_unit_test(test_no_burst_at_start),
        cmocka_unit_test(test_small_and_tiny_rates),
        cmocka_unit_test(test_steady_rate),
        cmocka_unit_test(test_burst_is_bounded),
        cmocka_unit_test(test_many_threads_share_one_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
