/* Unit tests of api/urlcanon.c: the canonical form of a web object's URL
 * (docs/protocol.md, section 14), rule by rule, bad inputs, and the test
 * vector of the protocol (its swarm computed independently). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "urlcanon.h"
#include "util.h"

/* canon(in) is want, and canon(want) is want again. */
static void expect_canon(const char *in, const char *want)
{
    struct shoal_err err;
    char *got = NULL, *again = NULL;

    shoal_err_clear(&err);
    if (shoal_url_canon(in, &got, &err) != 0)
        fail_msg("'%s': %s", in, err.msg);
    if (strcmp(got, want) != 0)
        fail_msg("'%s' gave '%s', not '%s'", in, got, want);
    assert_int_equal(shoal_url_canon(got, &again, &err), 0);
    assert_string_equal(again, want);
    free(again);
    free(got);
}

/* canon(in) is 400 with words in its message. */
static void expect_bad(const char *in, const char *words)
{
    struct shoal_err err;
    char *got = (char *)"untouched";

    shoal_err_clear(&err);
    if (shoal_url_canon(in, &got, &err) == 0)
        fail_msg("'%s' was taken as '%s'", in, got);
    assert_null(got);
    assert_int_equal(err.code, SHOAL_EINVAL);
    assert_int_equal(err.status, 400);
    if (strstr(err.msg, words) == NULL)
        fail_msg("'%s': message '%s' lacks '%s'", in, err.msg, words);
}

static void test_scheme_and_host_lowercased(void **state)
{
    (void)state;
    expect_canon("HTTP://Example.COM/a", "http://example.com/a");
    expect_canon("hTTpS://WWW.Example.org/A/B", "https://www.example.org/A/B");
    expect_canon("http://127.0.0.1/X?Q=A", "http://127.0.0.1/X?Q=A");
    expect_canon("http://[::FFFF:1.2.3.4]/", "http://[::ffff:1.2.3.4]/");
    expect_canon("http://[0:0:0:0:0:0:0:1]:8080/", "http://[::1]:8080/");
    expect_canon("http://[FE80::A]/", "http://[fe80::a]/");
}

static void test_default_port_removed(void **state)
{
    (void)state;
    expect_canon("http://example.com:80/a", "http://example.com/a");
    expect_canon("https://example.com:443/a", "https://example.com/a");
    expect_canon("http://example.com:080/a", "http://example.com/a");
    expect_canon("http://example.com:/a", "http://example.com/a");
    expect_canon("http://example.com:443/a", "http://example.com:443/a");
    expect_canon("https://example.com:80/a", "https://example.com:80/a");
    expect_canon("http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x");
    expect_canon("http://[::1]:80/x", "http://[::1]/x");
}

static void test_empty_path(void **state)
{
    (void)state;
    expect_canon("http://example.com", "http://example.com/");
    expect_canon("http://example.com?q", "http://example.com/?q");
    expect_canon("http://example.com:8080", "http://example.com:8080/");
    expect_canon("http://example.com#top", "http://example.com/");
}

static void test_percent_encoding(void **state)
{
    (void)state;
    /* unreserved: ALPHA DIGIT - . _ ~ decoded, in any case */
    expect_canon("http://h/%7e%41%7A%30%2D%2e%5F", "http://h/~Az0-._");
    expect_canon("http://h/%78", "http://h/x");
    /* others kept, hex uppercased */
    expect_canon("http://h/a%2fb%3a%c3%a9%20", "http://h/a%2Fb%3A%C3%A9%20");
    expect_canon("http://h/%25", "http://h/%25");
    expect_canon("http://h/%2541", "http://h/%2541");     /* decoded once */
    /* the query is kept as is */
    expect_canon("http://h/%7e?%7e=%2f", "http://h/~?%7e=%2f");
}

static void test_dot_segments(void **state)
{
    (void)state;
    expect_canon("http://h/./x", "http://h/x");
    expect_canon("http://h/a/b/../c/./d/..", "http://h/a/c/");
    expect_canon("http://h/../a", "http://h/a");
    expect_canon("http://h/a/..", "http://h/");
    expect_canon("http://h/.", "http://h/");
    expect_canon("http://h/a//b/../c", "http://h/a//c");
    expect_canon("http://h/.a/..b/...", "http://h/.a/..b/...");
    /* percent-encoded dots are dots: decoded first */
    expect_canon("http://h/a/%2e%2E/b", "http://h/b");
    expect_canon("http://h/%2E/x", "http://h/x");
    /* not in the query */
    expect_canon("http://h/x?q=/../a", "http://h/x?q=/../a");
}

static void test_fragment_and_query(void **state)
{
    (void)state;
    expect_canon("http://h/x#frag", "http://h/x");
    expect_canon("http://h/x#", "http://h/x");
    expect_canon("http://h/x?a=1&b=%7E#f", "http://h/x?a=1&b=%7E");
    expect_canon("http://h/x?", "http://h/x?");           /* empty query kept */
    expect_canon("http://h/x?#f", "http://h/x?");
    expect_canon("http://h/x?b=2&a=1", "http://h/x?b=2&a=1");
}

static void test_numeric_ipv4(void **state)
{
    (void)state;
    expect_canon("http://127.1/", "http://127.0.0.1/");
    expect_canon("http://0x7f.0.0.1/", "http://127.0.0.1/");
    expect_canon("http://2130706433/", "http://127.0.0.1/");
}

static void test_everything_at_once(void **state)
{
    (void)state;
    expect_canon("HTTP://Example.COM:80/a/./b/../%7Ec%2f?q=%7e#frag",
                 "http://example.com/a/~c%2F?q=%7e");
}

/* The vector of docs/protocol.md, section 14; the swarm was computed with
 * Python's hashlib, not with this code. */
static void test_protocol_vector(void **state)
{
    static const char in[] = "HTTP://Example.COM:80/a/./b/../%7Ec%2f?q=%7e#frag";
    struct shoal_err err;
    unsigned char md[32];
    char hex[65], *c = NULL;

    (void)state;
    assert_int_equal(shoal_url_canon(in, &c, &err), 0);
    assert_string_equal(c, "http://example.com/a/~c%2F?q=%7e");
    shoal_url_swarm(c, md);
    shoal_hex_encode(md, sizeof md, hex);
    assert_string_equal(hex, "66cfc05f5e623dafe96329f94d0c8cf2c017a501d978871d993b80f5679f9d69");
    free(c);
    shoal_url_swarm("http://127.0.0.1:8080/x", md);
    shoal_hex_encode(md, sizeof md, hex);
    assert_string_equal(hex, "6a204d33a919ddbfe42ecf9e835fa2cb5492b41c9df3696816ef53c5e316a524");
}

static void test_bad_inputs(void **state)
{
    char long_url[SHOAL_URL_MAX + 2];

    (void)state;
    expect_bad("", "1 to 2048 bytes");
    memset(long_url, 'a', sizeof long_url - 1);
    memcpy(long_url, "http://h/", 9);
    long_url[sizeof long_url - 1] = '\0';
    expect_bad(long_url, "1 to 2048 bytes");
    expect_bad("ftp://h/x", "scheme 'ftp' of 'url' is not http or https");
    expect_bad("file:///etc/passwd", "scheme 'file'");
    expect_bad("javascript:alert(1)", "scheme 'javascript'");
    expect_bad("httpx://h/", "scheme 'httpx'");
    expect_bad("not a url", "absolute http or https");
    expect_bad("/relative/path", "absolute http or https");
    expect_bad("//h/x", "absolute http or https");
    expect_bad("http:h/x", "absolute http or https");
    expect_bad("http:/h/x", "absolute http or https");
    expect_bad("http://", "absolute http or https");
    expect_bad("http:///x", "absolute http or https");
    expect_bad("http://?q", "absolute http or https");
    expect_bad("http://#f", "absolute http or https");
    expect_bad("http://h/a b", "absolute http or https");
    expect_bad("http://h/\xc3\xa9", "absolute http or https");
    expect_bad("http://h/a\\b", "absolute http or https");
    expect_bad("http://h/%2", "absolute http or https");
    expect_bad("http://h/%zz", "absolute http or https");
    expect_bad("http://h/x?a=%g1", "absolute http or https");
    expect_bad("http://user:pw@h/", "credentials");
    expect_bad("http://@h/", "credentials");
    expect_bad("http://h%41/x", "percent-encode its host");
    expect_bad("http://[fe80::1%25eth0]/", "percent-encode its host");
    expect_bad("http://h:0/", "port 0");
    expect_bad("http://h:99999/", "not a valid URL");
    expect_bad("http://h:80a/", "not a valid URL");
    expect_bad("http://[::1/", "not a valid URL");
    expect_bad("http://[v1.x]/", "not a valid URL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scheme_and_host_lowercased),
        cmocka_unit_test(test_default_port_removed),
        cmocka_unit_test(test_empty_path),
        cmocka_unit_test(test_percent_encoding),
        cmocka_unit_test(test_dot_segments),
        cmocka_unit_test(test_fragment_and_query),
        cmocka_unit_test(test_numeric_ipv4),
        cmocka_unit_test(test_everything_at_once),
        cmocka_unit_test(test_protocol_vector),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
