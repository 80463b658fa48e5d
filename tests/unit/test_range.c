/*
 * test_range.c - the Range header parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "range.h"

static void expect_part(const char *v, uint64_t size, uint64_t f, uint64_t l)
{
    uint64_t first = 99, last = 99;
    assert_int_equal(shoal_range_parse(v, size, &first, &last), SHOAL_RANGE_PART);
    assert_true(first == f);
    assert_true(last == l);
}

static void expect_kind(const char *v, uint64_t size, enum shoal_range kind)
{
    uint64_t first = 0, last = 0;
    assert_int_equal(shoal_range_parse(v, size, &first, &last), kind);
}

static void test_parts(void **state)
{
    (void)state;
    expect_part("bytes=0-99", 1000, 0, 99);
    expect_part("bytes=0-0", 1000, 0, 0);
    expect_part("bytes=990-", 1000, 990, 999);
    expect_part("bytes=990-5000", 1000, 990, 999);      /* cut to the end */
    expect_part("bytes=-10", 1000, 990, 999);
    expect_part("bytes=-5000", 1000, 0, 999);           /* more than all */
    expect_part("BYTES=5-6", 1000, 5, 6);            /* unit in any case */
    /* 64-bit offsets: past 4 GiB and 10 GiB in a 12 GiB resource */
    expect_part("bytes=4294967296-4294967395", 12884901888ULL,
                4294967296ULL, 4294967395ULL);
    expect_part("bytes=10737418240-", 12884901888ULL, 10737418240ULL,
                12884901887ULL);
}

static void test_unsatisfiable(void **state)
{
    (void)state;
    expect_kind("bytes=1000-", 1000, SHOAL_RANGE_UNSAT);
    expect_kind("bytes=1000-2000", 1000, SHOAL_RANGE_UNSAT);
    expect_kind("bytes=5-3", 1000, SHOAL_RANGE_UNSAT);  /* reversed */
    expect_kind("bytes=-0", 1000, SHOAL_RANGE_UNSAT);
    expect_kind("bytes=0-", 0, SHOAL_RANGE_UNSAT);      /* empty resource */
    expect_kind("bytes=-1", 0, SHOAL_RANGE_UNSAT);
}

static void test_ignored(void **state)
{
    (void)state;
    expect_kind(NULL, 1000, SHOAL_RANGE_WHOLE);
    expect_kind("", 1000, SHOAL_RANGE_WHOLE);
    expect_kind("bytes=0-1,5-6", 1000, SHOAL_RANGE_WHOLE); /* several */
    expect_kind("items=0-1", 1000, SHOAL_RANGE_WHOLE);
    expect_kind("bytes=", 1000, SHOAL_RANGE_WHOLE);
    expect_kind("bytes=-", 1000, SHOAL_RANGE_WHOLE);
    expect_kind("bytes=a-b", 1000, SHOAL_RANGE_WHOLE);
    expect_kind("bytes=1-2x", 1000, SHOAL_RANGE_WHOLE);
    expect_kind("bytes 0-1", 1000, SHOAL_RANGE_WHOLE);
    expect_kind("bytes=99999999999999999999-", 1000, SHOAL_RANGE_WHOLE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parts),
        cmocka_unit_test(test_unsatisfiable),
        cmocka_unit_test(test_ignored),
    };
    return cmocka_run_group_tests_name("range", tests, NULL, NULL);
}
