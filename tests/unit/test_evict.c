/* Unit tests of peer/evict.c: the choice 'shoal serve --max-storage'
 * makes between serving, waiting and evicting (pr_evict_plan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../peer/evict.c"
#include "../../peer/webseed.c"

/* What pr_serve_evict needs of the rest of the peer; never called by the
 * choice tested here. */
int pr_held_kept(const struct pr_held *h, const char *file_id,
                 uint64_t version)
{
    (void)h; (void)file_id; (void)version;
    fail_msg("pr_held_kept called");
    return 0;
}

int pr_held_forget(struct pr_held *h, const char *file_id, uint64_t version,
                   struct shoal_err *err)
{
    (void)h; (void)file_id; (void)version; (void)err;
    fail_msg("pr_held_forget called");
    return 0;
}

struct shoal_store *pr_held_store(const struct pr_held *h)
{
    (void)h;
    fail_msg("pr_held_store called");
    return NULL;
}

void pr_serve_put(struct pr_srv *srv, struct pr_served *s)
{
    (void)srv; (void)s;
    fail_msg("pr_serve_put called");
}

#define KEPT(sz, t) { .size = (sz), .used_ms = (t), .owned = 0, .complete = 1, .admitted = 1 }
#define OWNED(sz) { .size = (sz), .used_ms = 0, .owned = 1, .complete = 1, .admitted = 1 }

static void test_no_limit_serves_all(void **state)
{
    struct pr_evict_item it[] = { KEPT(100, 1), OWNED(1000), KEPT(5, 2) };
    enum pr_evict_fate f[3];
    (void)state;

    memset(f, 0xff, sizeof(f));
    assert_int_equal(pr_evict_plan(it, 3, 0, f), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(f[i], PR_EVICT_SERVE);
    assert_int_equal(pr_evict_plan(it, 0, 10, f), 0);      /* nothing held */
}

static void test_within_limit_evicts_nothing(void **state)
{
    struct pr_evict_item it[] = { KEPT(100, 1), OWNED(50), KEPT(50, 2) };
    enum pr_evict_fate f[3];
    (void)state;

    assert_int_equal(pr_evict_plan(it, 3, 200, f), 0);     /* exactly full */
    for (int i = 0; i < 3; i++)
        assert_int_equal(f[i], PR_EVICT_SERVE);
}

static void test_least_recently_used_first(void **state)
{
    /* 4 of 100 bytes under 250: the two used longest ago go */
    struct pr_evict_item it[] = { KEPT(100, 40), KEPT(100, 10), KEPT(100, 30),
                                  KEPT(100, 20) };
    enum pr_evict_fate f[4];
    (void)state;

    assert_int_equal(pr_evict_plan(it, 4, 250, f), 2);
    assert_int_equal(f[0], PR_EVICT_SERVE);
    assert_int_equal(f[1], PR_EVICT_OUT);
    assert_int_equal(f[2], PR_EVICT_SERVE);
    assert_int_equal(f[3], PR_EVICT_OUT);
    /* only as many as needed: a small one used long ago, a big one later */
    struct pr_evict_item two[] = { KEPT(10, 1), KEPT(200, 2), KEPT(60, 3) };
    enum pr_evict_fate g[3];
    assert_int_equal(pr_evict_plan(two, 3, 265, g), 1);
    assert_int_equal(g[0], PR_EVICT_OUT);
    assert_int_equal(g[1], PR_EVICT_SERVE);
    assert_int_equal(g[2], PR_EVICT_SERVE);
    /* ties go in the order given */
    struct pr_evict_item tie[] = { KEPT(100, 5), KEPT(100, 5), KEPT(100, 5) };
    assert_int_equal(pr_evict_plan(tie, 3, 200, g), 1);
    assert_int_equal(g[0], PR_EVICT_OUT);
    assert_int_equal(g[1], PR_EVICT_SERVE);
    assert_int_equal(g[2], PR_EVICT_SERVE);
}

static void test_owned_never_evicted(void **state)
{
    /* the owned one is the oldest and the biggest: the cache goes */
    struct pr_evict_item it[] = { OWNED(300), KEPT(100, 50), KEPT(100, 60) };
    enum pr_evict_fate f[3];
    (void)state;

    assert_int_equal(pr_evict_plan(it, 3, 400, f), 1);
    assert_int_equal(f[0], PR_EVICT_SERVE);
    assert_int_equal(f[1], PR_EVICT_OUT);
    assert_int_equal(f[2], PR_EVICT_SERVE);
    /* owned alone over the limit: it waits, and the cache that fits in
     * what is left stays */
    struct pr_evict_item big[] = { OWNED(1000), KEPT(100, 1), KEPT(100, 2) };
    big[0].admitted = 0;
    assert_int_equal(pr_evict_plan(big, 3, 250, f), 0);
    assert_int_equal(f[0], PR_EVICT_WAIT);
    assert_int_equal(f[1], PR_EVICT_SERVE);
    assert_int_equal(f[2], PR_EVICT_SERVE);
    /* owned ones only: served while they fit, in order, the rest waits */
    struct pr_evict_item own[] = { OWNED(100), OWNED(200), OWNED(50) };
    own[1].admitted = own[2].admitted = 0;
    assert_int_equal(pr_evict_plan(own, 3, 160, f), 0);
    assert_int_equal(f[0], PR_EVICT_SERVE);
    assert_int_equal(f[1], PR_EVICT_WAIT);
    assert_int_equal(f[2], PR_EVICT_SERVE);
}

static void test_served_ones_keep_their_place(void **state)
{
    /* a new owned version that does not fit beside the owned one served */
    struct pr_evict_item it[] = { OWNED(100), OWNED(100) };
    enum pr_evict_fate f[2];
    (void)state;

    it[0].admitted = 0;              /* new, first in the order */
    assert_int_equal(pr_evict_plan(it, 2, 150, f), 0);
    assert_int_equal(f[0], PR_EVICT_WAIT);
    assert_int_equal(f[1], PR_EVICT_SERVE);
}

static void test_download_under_way(void **state)
{
    /* an incomplete version kept by get is never evicted, and makes room
     * for itself: the cache's least recently used goes */
    struct pr_evict_item it[] = { KEPT(100, 10), KEPT(100, 20), KEPT(100, 1) };
    enum pr_evict_fate f[3];
    (void)state;

    it[2].complete = 0;
    it[2].admitted = 0;
    assert_int_equal(pr_evict_plan(it, 3, 200, f), 1);
    assert_int_equal(f[0], PR_EVICT_OUT);
    assert_int_equal(f[1], PR_EVICT_SERVE);
    assert_int_equal(f[2], PR_EVICT_SERVE);
    /* one bigger than the limit waits; the cache stays */
    it[2].size = 500;
    assert_int_equal(pr_evict_plan(it, 3, 200, f), 0);
    assert_int_equal(f[0], PR_EVICT_SERVE);
    assert_int_equal(f[1], PR_EVICT_SERVE);
    assert_int_equal(f[2], PR_EVICT_WAIT);
}

static void test_too_big_for_the_room_goes_first(void **state)
{
    /* the most recently used does not fit in the room the owned one
     * leaves: it goes, and the older small one stays */
    struct pr_evict_item it[] = { OWNED(150), KEPT(20, 1), KEPT(90, 99) };
    enum pr_evict_fate f[3];
    (void)state;

    it[1].admitted = it[2].admitted = 0;
    assert_int_equal(pr_evict_plan(it, 3, 200, f), 1);
    assert_int_equal(f[0], PR_EVICT_SERVE);
    assert_int_equal(f[1], PR_EVICT_SERVE);
    assert_int_equal(f[2], PR_EVICT_OUT);
}

static void test_large_sizes(void **state)
{
    /* sums near 2^64 do not wrap */
    struct pr_evict_item it[] = { OWNED(UINT64_MAX - 10), KEPT(UINT64_MAX / 2, 1),
                                  KEPT(5, 2) };
    enum pr_evict_fate f[3];
    (void)state;

    assert_int_equal(pr_evict_plan(it, 3, UINT64_MAX - 4, f), 1);
    assert_int_equal(f[0], PR_EVICT_SERVE);
    assert_int_equal(f[1], PR_EVICT_OUT);
    assert_int_equal(f[2], PR_EVICT_SERVE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_limit_serves_all),
        cmocka_unit_test(test_within_limit_evicts_nothing),
        cmocka_unit_test(test_least_recently_used_first),
        cmocka_unit_test(test_owned_never_evicted),
        cmocka_unit_test(test_served_ones_keep_their_place),
        cmocka_unit_test(test_download_under_way),
        cmocka_unit_test(test_too_big_for_the_room_goes_first),
        cmocka_unit_test(test_large_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
