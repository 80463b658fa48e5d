/* Unit tests of peer/injlist.c: CONNECT targets and ports, the named
 * swarms, and the lists of injectors and proxies found or cached. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../peer/injlist.c"

static void test_authority(void **state)
{
    char host[PR_HOST_MAX];
    unsigned port = 0;
    (void)state;

    assert_int_equal(pr_authority_parse("example.org:443", host, &port), 0);
    assert_string_equal(host, "example.org");
    assert_int_equal(port, 443);
    assert_int_equal(pr_authority_parse("[2001:db8::1]:80", host, &port), 0);
    assert_string_equal(host, "2001:db8::1");
    assert_int_equal(port, 80);
    assert_int_equal(pr_authority_parse("127.0.0.1:65535", host, &port), 0);
    static const char *const bad[] = {
        "", ":80", "host", "host:", "host:0", "host:080", "host:65536",
        "host:99999", "host:+80", "host:8o", "a b:80", "a/b:80", "[::1]80",
        "[::1", "[zz]:80", "host:80:", "user@host:80", NULL };
    for (int i = 0; bad[i]; i++)
        assert_int_equal(pr_authority_parse(bad[i], host, &port), -1);
    assert_int_equal(pr_authority_parse(NULL, host, &port), -1);
}

static void test_ports(void **state)
{
    struct pr_connect_ports p;
    struct shoal_err e;
    char name[128];
    (void)state;

    /* the default: 80 and 443 */
    assert_int_equal(pr_connect_ports_parse(NULL, &p, NULL), 0);
    assert_true(pr_connect_port_ok(&p, 80));
    assert_true(pr_connect_port_ok(&p, 443));
    assert_false(pr_connect_port_ok(&p, 22));
    assert_false(pr_connect_port_ok(&p, 8080));
    assert_false(pr_connect_port_ok(&p, 0));
    pr_connect_ports_name(&p, name, sizeof(name));
    assert_string_equal(name, "80 and 443");

    /* one, three, the bounds, the most */
    assert_int_equal(pr_connect_ports_parse("8080", &p, NULL), 0);
    assert_int_equal(p.n, 1);
    assert_true(pr_connect_port_ok(&p, 8080));
    assert_false(pr_connect_port_ok(&p, 80));
    pr_connect_ports_name(&p, name, sizeof(name));
    assert_string_equal(name, "8080");
    assert_int_equal(pr_connect_ports_parse("22,80,443", &p, NULL), 0);
    pr_connect_ports_name(&p, name, sizeof(name));
    assert_string_equal(name, "22, 80 and 443");
    assert_int_equal(pr_connect_ports_parse("1,65535", &p, NULL), 0);
    assert_true(pr_connect_port_ok(&p, 1) && pr_connect_port_ok(&p, 65535));
    assert_int_equal(pr_connect_ports_parse("1,2,3,4,5,6,7,8,9,10,11,12,13,"
                                            "14,15,16", &p, NULL), 0);
    assert_int_equal(p.n, PR_CONNECT_PORTS_MAX);
    pr_connect_ports_name(&p, name, 12);          /* truncated, terminated */
    assert_string_equal(name, "1, 2, 3, 4,");

    static const char *const bad[] = {
        "", ",", "80,", ",80", "80,,443", "0", "080", "65536", "99999",
        "123456", "+80", "-1", "8o", " 80", "80 ", "80;443", "80,80",
        "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", NULL };
    for (int i = 0; bad[i]; i++) {
        shoal_err_clear(&e);
        assert_int_equal(pr_connect_ports_parse(bad[i], &p, &e), -1);
        assert_int_equal(e.code, SHOAL_EINVAL);
        assert_true(e.msg[0] != '\0');
        assert_int_equal(p.n, 0);                 /* nothing relayed */
        assert_false(pr_connect_port_ok(&p, 80));
    }
    shoal_err_clear(&e);
    pr_connect_ports_parse("80,8o", &p, &e);
    assert_non_null(strstr(e.msg, "'8o'"));
    pr_connect_ports_parse("443,443", &p, &e);
    assert_non_null(strstr(e.msg, "443"));
}

static void test_named_swarm(void **state)
{
    char hex[65];
    (void)state;
    /* sha256("injectors") */
    pr_named_swarm("injectors", hex);
    assert_int_equal(strlen(hex), 64);
    char again[65];
    pr_named_swarm(PR_SWARM_PROXIES, again);
    assert_string_not_equal(hex, again);
    pr_named_swarm("", again);
    assert_string_equal(again, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b"
                               "934ca495991b7852b855");
}

static void test_list(void **state)
{
    json_t *l = json_array();
    (void)state;

    assert_int_equal(pr_inj_list_add(l, "http://a:1/", "broker", 0), 1);
    assert_int_equal(pr_inj_list_add(l, "http://a:1", "config", 0), 0);
    assert_int_equal(pr_inj_list_add(l, "https://b", "cache", 0), 1);
    assert_int_equal(pr_inj_list_add(l, "ftp://c", "cache", 0), -1);
    assert_int_equal(pr_inj_list_add(l, "http://c/?q", "cache", 0), -1);
    assert_int_equal(pr_inj_list_add(l, "http://", "cache", 0), -1);
    assert_int_equal(pr_inj_list_add(l, "http://c d", "cache", 0), -1);
    assert_int_equal(pr_inj_list_add(l, NULL, "cache", 0), -1);
    assert_int_equal(json_array_size(l), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0),
                                                          "url")), "http://a:1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0),
                                                          "from")), "broker");
    for (int i = 0; i < 2 * PR_INJ_LIST_MAX; i++) {
        char u[64];
        snprintf(u, sizeof(u), "http://h%d", i);
        pr_inj_list_add(l, u, "pex", 0);
    }
    assert_int_equal(json_array_size(l), PR_INJ_LIST_MAX);
    json_decref(l);
}

static void test_cache(void **state)
{
    json_t *c = json_object();
    time_t now = 1700000000;
    (void)state;

    assert_int_equal(pr_inj_cache_note(c, PR_SWARM_PROXIES, "http://p1", now), 0);
    assert_int_equal(pr_inj_cache_note(c, PR_SWARM_PROXIES, "http://p2", now + 1), 0);
    /* seen again: first */
    assert_int_equal(pr_inj_cache_note(c, PR_SWARM_PROXIES, "http://p1/", now + 2), 0);
    json_t *l = json_object_get(c, PR_SWARM_PROXIES);
    assert_int_equal(json_array_size(l), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0),
                                                          "url")), "http://p1");
    /* old entries go */
    assert_int_equal(pr_inj_cache_note(c, PR_SWARM_PROXIES, "http://p3",
                                       now + PR_INJ_CACHE_AGE + 2), 0);
    l = json_object_get(c, PR_SWARM_PROXIES);
    assert_int_equal(json_array_size(l), 2);      /* p3, and p1 (seen at +2) */
    assert_int_equal(pr_inj_cache_note(c, PR_SWARM_PROXIES, "nope", now), -1);
    json_decref(c);
}

static void test_injkeys_config(void **state)
{
    unsigned char pk[4][32];
    unsigned char want[32];
    (void)state;

    for (int i = 0; i < 32; i++)
        want[i] = (unsigned char)i;
    /* standard padded base64 of bytes 0..31 */
    const char *b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    json_t *cfg = json_pack(
        "{s:[{s:s, s:s}, {s:s, s:s}, {s:s}, {s:s, s:s}, {s:s, s:s}, s]}",
        "injectors",
        "broker_id", "E36CAD8F-9EBF-453D-911A-06E5889CEE10", "public_key", b64,
        "broker_id", "e36cad8f-9ebf-453d-911a-06e5889cee10",
        "public_key", "not a key",
        "broker_id", "e36cad8f-9ebf-453d-911a-06e5889cee10",
        "broker_id", "e36cad8f-9ebf-453d-911a-06e5889cee10",
        "public_key", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "broker_id", "00000000-0000-4000-8000-000000000000", "public_key", b64,
        "http://injector.example");
    assert_non_null(cfg);
    /* the two keys of that id (any case), not the bad one nor the other id */
    assert_int_equal(pr_injkeys_config(cfg, "e36cad8f-9ebf-453d-911a-"
                                       "06e5889cee10", pk, 4), 2);
    assert_memory_equal(pk[0], want, 32);
    assert_int_equal(pk[1][0], 0);
    assert_int_equal(pr_injkeys_config(cfg, "e36cad8f-9ebf-453d-911a-"
                                       "06e5889cee10", pk, 1), 1);
    /* an id not pinned, no id, no configuration */
    assert_int_equal(pr_injkeys_config(cfg, "11111111-1111-4111-8111-"
                                       "111111111111", pk, 4), 0);
    assert_int_equal(pr_injkeys_config(cfg, NULL, pk, 4), 0);
    assert_int_equal(pr_injkeys_config(NULL, "e36cad8f-9ebf-453d-911a-"
                                       "06e5889cee10", pk, 4), 0);
    json_decref(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authority),
        cmocka_unit_test(test_ports),
        cmocka_unit_test(test_named_swarm),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_cache),
        cmocka_unit_test(test_injkeys_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
