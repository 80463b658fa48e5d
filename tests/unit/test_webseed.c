/* Unit tests of peer/webseed.c: the dCDN seeding policy of the web
 * objects 'shoal fetch' keeps (supersession, a week, the injector's
 * signature). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../peer/webseed.c"

#define F1 "11111111-1111-4111-8111-111111111111"
#define F2 "22222222-2222-4222-8222-222222222222"
#define U1 "https://example.org/a"
#define U2 "https://example.org/b"
#define NOW 1800000000LL
#define WEEK PR_WEB_AGE_DEFAULT

static struct pr_web_item item(const char *url, const char *fid, uint64_t ver,
                               int64_t at, int64_t exp)
{
    struct pr_web_item it = { url, fid, ver, at, exp };
    return it;
}

static void test_default_is_a_week(void **state)
{
    (void)state;
    assert_int_equal(PR_WEB_AGE_DEFAULT, 604800);
}

static void test_newer(void **state)
{
    (void)state;
    /* one file: the version decides, whatever the times say */
    struct pr_web_item a = item(U1, F1, 3, NOW - 100, 0);
    struct pr_web_item b = item(U1, F1, 2, NOW, 0);
    assert_true(pr_web_newer(&a, &b));
    assert_false(pr_web_newer(&b, &a));
    assert_false(pr_web_newer(&a, &a));
    /* two injectors: the later injection */
    struct pr_web_item c = item(U1, F2, 1, NOW - 50, 0);
    assert_true(pr_web_newer(&c, &a));
    assert_false(pr_web_newer(&a, &c));
    /* the same time: the version, then the file id */
    struct pr_web_item d = item(U1, F2, 1, NOW - 100, 0);
    assert_true(pr_web_newer(&a, &d));
    struct pr_web_item e = item(U1, F1, 1, NOW - 100, 0);
    assert_true(pr_web_newer(&d, &e));
    assert_false(pr_web_newer(&e, &d));
}

static void test_fate_of(void **state)
{
    (void)state;
    struct pr_web_item it = item(U1, F1, 1, NOW - WEEK + 1, NOW + 10);
    assert_int_equal(pr_web_fate_of(&it, NOW, WEEK), PR_WEB_SEED);
    it.injected_at = NOW - WEEK;                      /* a week to the second */
    assert_int_equal(pr_web_fate_of(&it, NOW, WEEK), PR_WEB_AGED);
    assert_int_equal(pr_web_fate_of(&it, NOW, 0), PR_WEB_SEED);   /* no limit */
    it.inj_expires = NOW;                             /* expiry comes first */
    assert_int_equal(pr_web_fate_of(&it, NOW, WEEK), PR_WEB_EXPIRED);
    it.inj_expires = 0;                               /* unknown: not expired */
    it.injected_at = NOW;
    assert_int_equal(pr_web_fate_of(&it, NOW, WEEK), PR_WEB_SEED);
    it.injected_at = 0;                               /* a record without it */
    assert_int_equal(pr_web_fate_of(&it, NOW, WEEK), PR_WEB_AGED);
    assert_string_equal(pr_web_fate_name(PR_WEB_SEED), "seed");
    assert_string_equal(pr_web_fate_name(PR_WEB_SUPERSEDED), "superseded");
    assert_string_equal(pr_web_fate_name(PR_WEB_AGED), "age");
    assert_string_equal(pr_web_fate_name(PR_WEB_EXPIRED), "expired");
}

static void test_plan_supersession(void **state)
{
    (void)state;
    struct pr_web_item it[] = {
        item(U1, F1, 1, NOW - 300, 0),        /* superseded by version 2 */
        item(U2, F2, 1, NOW - 10, 0),         /* alone: seeded */
        item(U1, F1, 2, NOW - 200, 0),        /* superseded by F2's injection */
        item(U1, F2, 5, NOW - 100, 0),        /* the newest of U1 */
    };
    enum pr_web_fate fate[4];
    assert_int_equal(pr_web_plan(it, 4, NOW, WEEK, fate), 2);
    assert_int_equal(fate[0], PR_WEB_SUPERSEDED);
    assert_int_equal(fate[1], PR_WEB_SEED);
    assert_int_equal(fate[2], PR_WEB_SUPERSEDED);
    assert_int_equal(fate[3], PR_WEB_SEED);
}

static void test_plan_age_and_expiry(void **state)
{
    (void)state;
    struct pr_web_item it[] = {
        item(U1, F1, 2, NOW - WEEK - 1, NOW + 99),   /* the newest, too old */
        item(U1, F1, 1, NOW - WEEK - 9, NOW + 99),   /* superseded anyway */
        item(U2, F2, 1, NOW - 5, NOW - 1),           /* signature expired */
    };
    enum pr_web_fate fate[3];
    assert_int_equal(pr_web_plan(it, 3, NOW, WEEK, fate), 3);
    assert_int_equal(fate[0], PR_WEB_AGED);
    assert_int_equal(fate[1], PR_WEB_SUPERSEDED);
    assert_int_equal(fate[2], PR_WEB_EXPIRED);
    /* a shorter age (--max-web-age 4s) */
    struct pr_web_item young[] = { item(U2, F2, 1, NOW - 3, 0),
                                   item(U1, F1, 1, NOW - 4, 0) };
    enum pr_web_fate f2[2];
    assert_int_equal(pr_web_plan(young, 2, NOW, 4, f2), 1);
    assert_int_equal(f2[0], PR_WEB_SEED);
    assert_int_equal(f2[1], PR_WEB_AGED);
}

static void test_plan_nothing(void **state)
{
    (void)state;
    enum pr_web_fate fate[1] = { PR_WEB_EXPIRED };
    assert_int_equal(pr_web_plan(NULL, 0, NOW, WEEK, fate), 0);
    struct pr_web_item one[] = { item(U1, F1, 7, NOW, 0) };
    assert_int_equal(pr_web_plan(one, 1, NOW, WEEK, fate), 0);
    assert_int_equal(fate[0], PR_WEB_SEED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_is_a_week),
        cmocka_unit_test(test_newer),
        cmocka_unit_test(test_fate_of),
        cmocka_unit_test(test_plan_supersession),
        cmocka_unit_test(test_plan_age_and_expiry),
        cmocka_unit_test(test_plan_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
