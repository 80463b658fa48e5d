/* Unit tests of api/err.c: the code table, setters and the error body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"

/* The wire table of the spec, written out independently of err.c. */
static const struct {
    enum shoal_code code;
    const char *name;
    int status;
} spec[] = {
    {SHOAL_EINVAL, "invalid_request", 400},
    {SHOAL_EJSON, "malformed_json", 400},
    {SHOAL_ESESSION_MISSING, "session_missing", 400},
    {SHOAL_EAUTH, "invalid_auth_id", 401},
    {SHOAL_ESESSION_EXPIRED, "session_expired", 401},
    {SHOAL_EPAYMENT, "balance_exhausted", 402},
    {SHOAL_EFORBIDDEN, "forbidden", 403},
    {SHOAL_ESESSION_UNKNOWN, "session_unknown", 403},
    {SHOAL_ENOTFOUND, "not_found", 404},
    {SHOAL_EMETHOD, "method_not_allowed", 405},
    {SHOAL_EEXISTS, "already_exists", 409},
    {SHOAL_EIPMISMATCH, "ip_mismatch", 409},
    {SHOAL_EGONE, "gone", 410},
    {SHOAL_EQUOTA, "over_quota", 412},
    {SHOAL_ETOOLARGE, "body_too_large", 413},
    {SHOAL_EMEDIA, "unsupported_media_type", 415},
    {SHOAL_ERANGE, "range_not_satisfiable", 416},
    {SHOAL_EUNPROCESSABLE, "unprocessable", 422},
    {SHOAL_EINTERNAL, "internal", 500},
    {SHOAL_EUNAVAILABLE, "unavailable", 503},
    {SHOAL_ESTORAGE, "insufficient_storage", 507},
    {SHOAL_EBADGATEWAY, "bad_gateway", 502},
};

static void test_table_matches_spec(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(spec) / sizeof(spec[0]); i++) {
        assert_string_equal(shoal_code_name(spec[i].code), spec[i].name);
        assert_int_equal(shoal_code_status(spec[i].code), spec[i].status);
        assert_int_equal(shoal_code_from_name(spec[i].name), spec[i].code);
    }
}

static void test_every_code_named_uniquely(void **state)
{
    int i, j;

    (void)state;
    for (i = 0; i < SHOAL_CODE_COUNT; i++) {
        const char *name = shoal_code_name((enum shoal_code)i);

        assert_non_null(name);
        assert_true(strlen(name) > 0);
        assert_int_equal(shoal_code_from_name(name), i);
        for (j = 0; j < i; j++)
            assert_string_not_equal(name, shoal_code_name((enum shoal_code)j));
    }
}

static void test_client_codes_are_500(void **state)
{
    (void)state;
    assert_int_equal(shoal_code_status(SHOAL_ENET), 500);
    assert_int_equal(shoal_code_status(SHOAL_EIO), 500);
    assert_int_equal(shoal_code_status(SHOAL_EPROTO), 500);
    assert_int_equal(shoal_code_status((enum shoal_code)999), 500);
}

static void test_unknown_name(void **state)
{
    (void)state;
    assert_int_equal(shoal_code_from_name("no_such_code"), SHOAL_EPROTO);
    assert_int_equal(shoal_code_from_name(""), SHOAL_EPROTO);
    assert_int_equal(shoal_code_from_name(NULL), SHOAL_EPROTO);
    assert_int_equal(shoal_code_from_name("NOT_FOUND"), SHOAL_EPROTO);
}

static void test_set_and_clear(void **state)
{
    struct shoal_err err;

    (void)state;
    assert_int_equal(shoal_err_set(&err, SHOAL_ESESSION_EXPIRED,
                                   "session '%s' expired", "a1b2"), -1);
    assert_int_equal(err.code, SHOAL_ESESSION_EXPIRED);
    assert_int_equal(err.status, 401);
    assert_string_equal(err.msg, "session 'a1b2' expired");
    shoal_err_clear(&err);
    assert_int_equal(err.code, SHOAL_OK);
    assert_int_equal(err.status, 0);
    assert_string_equal(err.msg, "");
    /* A NULL err is allowed everywhere. */
    assert_int_equal(shoal_err_set(NULL, SHOAL_EINVAL, "x"), -1);
    shoal_err_clear(NULL);
}

static void test_long_message_truncated_on_utf8_boundary(void **state)
{
    char big[600];
    struct shoal_err err;
    json_t *body;
    size_t i;

    (void)state;
    /* "é" is two bytes; with this prefix byte 255 (the one cut off) is
     * the second byte of one, so the first must go too. */
    big[0] = 'x';
    big[1] = 'y';
    for (i = 2; i + 2 < sizeof(big); i += 2) {
        big[i] = (char)0xC3;
        big[i + 1] = (char)0xA9;
    }
    big[i] = '\0';
    shoal_err_set(&err, SHOAL_EINVAL, "%s", big);
    assert_int_equal(strlen(err.msg), SHOAL_ERR_MSG_MAX - 2);
    body = shoal_err_to_json(&err);
    assert_non_null(body);
    assert_string_equal(json_string_value(json_object_get(
        json_object_get(body, "error"), "message")), err.msg);
    json_decref(body);
}

static void test_truncated_inside_three_byte_char(void **state)
{
    char big[600];
    struct shoal_err err;
    size_t i;

    (void)state;
    /* "€" is three bytes; after 'x' the cut keeps two bytes of one. */
    big[0] = 'x';
    for (i = 1; i + 3 < sizeof(big); i += 3)
        memcpy(big + i, "\xe2\x82\xac", 3);
    big[i] = '\0';
    shoal_err_set(&err, SHOAL_EINVAL, "%s", big);
    assert_int_equal(strlen(err.msg), SHOAL_ERR_MSG_MAX - 3);
    assert_memory_equal(err.msg + strlen(err.msg) - 3, "\xe2\x82\xac", 3);
}

static void test_invalid_utf8_message_still_encodes(void **state)
{
    struct shoal_err err;
    json_t *body;

    (void)state;
    shoal_err_set(&err, SHOAL_EINVAL, "bad name '%s'", "a\xff" "b");
    body = shoal_err_to_json(&err);
    assert_non_null(body);
    assert_string_equal(json_string_value(json_object_get(
        json_object_get(body, "error"), "message")), "bad name 'a?b'");
    json_decref(body);
}

static void test_to_json_shape(void **state)
{
    struct shoal_err err;
    json_t *body;
    json_t *inner;

    (void)state;
    shoal_err_set(&err, SHOAL_ENOTFOUND, "user '%d' not found", 7);
    body = shoal_err_to_json(&err);
    assert_non_null(body);
    assert_int_equal(json_object_size(body), 1);
    inner = json_object_get(body, "error");
    assert_true(json_is_object(inner));
    assert_int_equal(json_object_size(inner), 2);
    assert_string_equal(json_string_value(json_object_get(inner, "code")),
                        "not_found");
    assert_string_equal(json_string_value(json_object_get(inner, "message")),
                        "user '7' not found");
    json_decref(body);
}

static void test_client_codes_go_out_as_internal(void **state)
{
    static const enum shoal_code local[] = {SHOAL_ENET, SHOAL_EIO, SHOAL_EPROTO};
    struct shoal_err err;
    json_t *body;
    size_t i;

    (void)state;
    for (i = 0; i < 3; i++) {
        shoal_err_set(&err, local[i], "local trouble");
        body = shoal_err_to_json(&err);
        assert_non_null(body);
        assert_string_equal(json_string_value(json_object_get(
            json_object_get(body, "error"), "code")), "internal");
        json_decref(body);
    }
}

static void test_round_trip(void **state)
{
    struct shoal_err in;
    struct shoal_err out;
    json_t *body;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(spec) / sizeof(spec[0]); i++) {
        shoal_err_set(&in, spec[i].code, "message %zu", i);
        body = shoal_err_to_json(&in);
        assert_non_null(body);
        shoal_err_clear(&out);
        assert_int_equal(shoal_err_from_json(&out, spec[i].status, body), -1);
        assert_int_equal(out.code, spec[i].code);
        assert_int_equal(out.status, spec[i].status);
        assert_string_equal(out.msg, in.msg);
        json_decref(body);
    }
}

static void check_not_error_body(const char *text, int status)
{
    struct shoal_err err;
    json_t *body = text != NULL ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;

    if (text != NULL)
        assert_non_null(body);
    shoal_err_clear(&err);
    assert_int_equal(shoal_err_from_json(&err, status, body), -1);
    assert_int_equal(err.code, SHOAL_EPROTO);
    assert_int_equal(err.status, status);
    assert_non_null(strstr(err.msg, "status"));
    json_decref(body);
}

static void test_from_json_not_error_body(void **state)
{
    (void)state;
    check_not_error_body(NULL, 502);
    check_not_error_body("{\"status\":\"ok\"}", 500);
    check_not_error_body("[1,2]", 400);
    check_not_error_body("\"error\"", 404);
    check_not_error_body("{\"error\":\"not_found\"}", 404);
    check_not_error_body("{\"error\":{\"message\":\"x\"}}", 404);
    check_not_error_body("{\"error\":{\"code\":404,\"message\":\"x\"}}", 404);
    check_not_error_body("{\"error\":{\"code\":\"gone\",\"message\":3}}", 410);
}

static void test_from_json_unknown_or_client_code(void **state)
{
    struct shoal_err err;
    json_t *body;

    (void)state;
    body = json_pack("{s:{s:s,s:s}}", "error", "code", "teapot",
                     "message", "short and stout");
    assert_non_null(body);
    shoal_err_from_json(&err, 418, body);
    assert_int_equal(err.code, SHOAL_EPROTO);
    assert_int_equal(err.status, 418);
    assert_non_null(strstr(err.msg, "teapot"));
    json_decref(body);
    /* A server cannot claim a client-side code. */
    body = json_pack("{s:{s:s,s:s}}", "error", "code",
                     shoal_code_name(SHOAL_ENET), "message", "x");
    assert_non_null(body);
    shoal_err_from_json(&err, 500, body);
    assert_int_equal(err.code, SHOAL_EPROTO);
    json_decref(body);
}

static void test_from_json_message_optional(void **state)
{
    struct shoal_err err;
    json_t *body = json_pack("{s:{s:s}}", "error", "code", "gone");

    (void)state;
    assert_non_null(body);
    shoal_err_from_json(&err, 410, body);
    assert_int_equal(err.code, SHOAL_EGONE);
    assert_int_equal(err.status, 410);
    assert_string_equal(err.msg, "gone");
    json_decref(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_matches_spec),
        cmocka_unit_test(test_every_code_named_uniquely),
        cmocka_unit_test(test_client_codes_are_500),
        cmocka_unit_test(test_unknown_name),
        cmocka_unit_test(test_set_and_clear),
        cmocka_unit_test(test_long_message_truncated_on_utf8_boundary),
        cmocka_unit_test(test_truncated_inside_three_byte_char),
        cmocka_unit_test(test_invalid_utf8_message_still_encodes),
        cmocka_unit_test(test_to_json_shape),
        cmocka_unit_test(test_client_codes_go_out_as_internal),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_from_json_not_error_body),
        cmocka_unit_test(test_from_json_unknown_or_client_code),
        cmocka_unit_test(test_from_json_message_optional),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
