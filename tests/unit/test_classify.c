/* Unit tests of peer/classify.c: which requests 'shoal fetch' may take
 * from a URL swarm (static) and which go to the origin only (dynamic). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../peer/classify.c"

#define U "https://example.org/a.html"

static enum pr_class cls(const char *method, int body, const char *url,
                         const char *h1, const char *h2)
{
    const char *h[2];
    size_t n = 0;
    const char *why = NULL;
    enum pr_class c;

    if (h1)
        h[n++] = h1;
    if (h2)
        h[n++] = h2;
    c = pr_classify(method, body, url, h, n, &why);
    assert_non_null(why);
    assert_int_equal(c == PR_CLASS_STATIC, why[0] == '\0');
    return c;
}

static void test_plain_get_is_static(void **state)
{
    (void)state;
    assert_int_equal(cls(NULL, 0, U, NULL, NULL), PR_CLASS_STATIC);
    assert_int_equal(cls("GET", 0, U, NULL, NULL), PR_CLASS_STATIC);
    assert_int_equal(cls(NULL, 0, U, "Accept: text/html",
                         "Cache-Control: max-age=0"), PR_CLASS_STATIC);
    assert_int_equal(cls(NULL, 0, U, "Cache-Control: no-cache",
                         "X-Private: 1"), PR_CLASS_STATIC);
    /* '@' after the authority is not userinfo */
    assert_int_equal(cls(NULL, 0, "http://h/a@b?c=d@e", NULL, NULL),
                     PR_CLASS_STATIC);
}

static void test_methods_and_bodies_are_dynamic(void **state)
{
    (void)state;
    assert_int_equal(cls("POST", 0, U, NULL, NULL), PR_CLASS_DYNAMIC);
    assert_int_equal(cls("HEAD", 0, U, NULL, NULL), PR_CLASS_DYNAMIC);
    assert_int_equal(cls("get", 0, U, NULL, NULL), PR_CLASS_DYNAMIC);
    assert_int_equal(cls(NULL, 1, U, NULL, NULL), PR_CLASS_DYNAMIC);
}

static void test_credentials_are_dynamic(void **state)
{
    (void)state;
    assert_int_equal(cls(NULL, 0, "https://me@example.org/", NULL, NULL),
                     PR_CLASS_DYNAMIC);
    assert_int_equal(cls(NULL, 0, "http://me:pw@h:8080/x", NULL, NULL),
                     PR_CLASS_DYNAMIC);
    assert_int_equal(cls(NULL, 0, U, "authorization: Bearer x", NULL),
                     PR_CLASS_DYNAMIC);
    assert_int_equal(cls(NULL, 0, U, "Proxy-Authorization: Basic eA==", NULL),
                     PR_CLASS_DYNAMIC);
    assert_int_equal(cls(NULL, 0, U, "Accept: */*", "COOKIE: a=b"),
                     PR_CLASS_DYNAMIC);
}

static void test_cache_control(void **state)
{
    (void)state;
    assert_int_equal(cls(NULL, 0, U, "Cache-Control: private", NULL),
                     PR_CLASS_DYNAMIC);
    assert_int_equal(cls(NULL, 0, U, "cache-control: max-age=5, No-Store",
                         NULL), PR_CLASS_DYNAMIC);
    assert_int_equal(cls(NULL, 0, U, "Cache-Control:private=\"x\"", NULL),
                     PR_CLASS_DYNAMIC);
    assert_int_equal(cls(NULL, 0, U, "Cache-Control: privately", NULL),
                     PR_CLASS_STATIC);
    assert_int_equal(cls(NULL, 0, U, "Cache-Control: x=\"no\", public", NULL),
                     PR_CLASS_STATIC);
}

static void test_headers_and_domains(void **state)
{
    char d[64];

    (void)state;
    assert_true(pr_header_valid("Accept: x"));
    assert_true(pr_header_valid("X-A:"));
    assert_false(pr_header_valid(": x"));
    assert_false(pr_header_valid("Bad Name: x"));
    assert_false(pr_header_valid("NoColon"));
    assert_false(pr_header_valid("A: x\r\nB: y"));
    assert_int_equal(pr_url_domain("http://U:p@Example.ORG:81/x?y", d,
                                   sizeof d), 0);
    assert_string_equal(d, "example.org:81");
    assert_int_equal(pr_url_domain("https://h", d, sizeof d), 0);
    assert_string_equal(d, "h");
    assert_int_equal(pr_url_domain("nope", d, sizeof d), -1);
    assert_int_equal(pr_url_domain("http:///x", d, sizeof d), -1);
    assert_int_equal(pr_url_domain("http://averyveryverylonghost/", d, 8), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_get_is_static),
        cmocka_unit_test(test_methods_and_bodies_are_dynamic),
        cmocka_unit_test(test_credentials_are_dynamic),
        cmocka_unit_test(test_cache_control),
        cmocka_unit_test(test_headers_and_domains),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
