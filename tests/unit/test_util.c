/* Unit tests of api/util.c: UUIDs, base64, hex, times, JSON fields, files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "util.h"

#define GOOD_UUID "0f8fad5b-d9cb-469f-a165-70867728950e"

static void test_uuid_valid(void **state)
{
    (void)state;
    assert_true(shoal_uuid_valid(GOOD_UUID));
    assert_true(shoal_uuid_valid("0F8FAD5B-D9CB-469F-A165-70867728950E"));
    assert_true(shoal_uuid_valid("0f8FAD5b-d9cb-469f-a165-70867728950E"));
    assert_true(shoal_uuid_valid("00000000-0000-0000-0000-000000000000"));
}

static void test_uuid_not_canonical(void **state)
{
    static const char *const bad[] = {
        "{0f8fad5b-d9cb-469f-a165-70867728950e}",   /* braces */
        "0f8fad5bd9cb-469f-a165-70867728950e",      /* missing hyphen */
        "0f8fad5b0d9cb-469f-a165-70867728950e",     /* hyphen replaced */
        "0f8fad5b-d9cb-469f-a165-70867728950",      /* 35 chars */
        "0f8fad5b-d9cb-469f-a165-70867728950e0",    /* 37 chars */
        "0f8fad5g-d9cb-469f-a165-70867728950e",     /* non-hex */
        "0f8fad5b-d9cb-469f-a165-70867728950e ",    /* trailing space */
        " 0f8fad5b-d9cb-469f-a165-70867728950e",    /* leading space */
        "0f8fad5b-d9cb-469f-a165-70867728950e\n",   /* trailing newline */
        "0f8fad5-bd9cb-469f-a165-70867728950e",     /* hyphen misplaced */
        "0f8fad5bd9cb469fa16570867728950e",         /* no hyphens */
        "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
        "0f8fad5b-d9cb-469f-a165+70867728950e",
        "",
    };
    unsigned char b[16];
    char out[37];
    struct shoal_err err;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(shoal_uuid_valid(bad[i]));
        shoal_err_clear(&err);
        assert_int_equal(shoal_uuid_parse(bad[i], b, "user_id", &err), -1);
        assert_int_equal(err.code, SHOAL_EINVAL);
        assert_non_null(strstr(err.msg, "'user_id'"));
        assert_int_equal(shoal_uuid_normalize(bad[i], out, "sid", &err), -1);
    }
    assert_false(shoal_uuid_valid(NULL));
}

static void test_uuid_parse_format(void **state)
{
    unsigned char b[16];
    char out[37];

    (void)state;
    assert_int_equal(shoal_uuid_parse("0F8FAD5B-D9CB-469F-A165-70867728950E",
                                      b, "x", NULL), 0);
    assert_int_equal(b[0], 0x0f);
    assert_int_equal(b[1], 0x8f);
    assert_int_equal(b[6], 0x46);
    assert_int_equal(b[15], 0x0e);
    shoal_uuid_format(b, out);
    assert_string_equal(out, GOOD_UUID);
    assert_int_equal(shoal_uuid_normalize("0f8FAD5b-d9cb-469f-a165-70867728950E",
                                          out, "x", NULL), 0);
    assert_string_equal(out, GOOD_UUID);
}

static void test_uuid_v4(void **state)
{
    char a[37];
    char b[37];
    int i;

    (void)state;
    for (i = 0; i < 100; i++) {
        shoal_uuid_v4(a);
        shoal_uuid_v4(b);
        assert_true(shoal_uuid_valid(a));
        assert_string_not_equal(a, b);
        assert_int_equal(a[14], '4');
        assert_non_null(strchr("89ab", a[19]));
        for (size_t j = 0; j < 36; j++)
            assert_false(a[j] >= 'A' && a[j] <= 'F');
    }
}

static void test_b64_encode_vectors(void **state)
{
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==",
                                      "Zm9vYmE=", "Zm9vYmFy"};
    size_t i;

    (void)state;
    for (i = 0; i < 7; i++) {
        char *s = shoal_b64_encode((const unsigned char *)in[i], strlen(in[i]));

        assert_non_null(s);
        assert_string_equal(s, out[i]);
        free(s);
    }
}

static void test_b64_round_trip(void **state)
{
    unsigned char key[32];
    unsigned char back[32];
    char *s;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(key); i++)
        key[i] = (unsigned char)(i * 37 + 250);
    s = shoal_b64_encode(key, sizeof(key));
    assert_non_null(s);
    assert_int_equal(strlen(s), 44);
    assert_int_equal(shoal_b64_decode_exact(s, back, 32, "public_key", NULL), 0);
    assert_memory_equal(key, back, 32);
    free(s);
}

static void test_b64_bad(void **state)
{
    static const struct {
        const char *s;
        size_t want;
    } bad[] = {
        {"Zm9vYg", 4},       /* padding missing */
        {"Zm9vYg=", 4},      /* padding short */
        {"Zm9vYg===", 4},    /* padding long */
        {"Zm9vYg==", 3},     /* decodes to 4, want 3 */
        {"Zm9vYg==", 5},     /* decodes to 4, want 5 */
        {"Zm9v", 4},
        {"Zm9-Yg==", 4},     /* URL-safe alphabet */
        {"Zm9_Yg==", 4},
        {"Zm9 Yg==", 4},     /* space */
        {"Zm9vYg==\n", 4},   /* trailing newline */
        {"Zm9vYh==", 4},     /* non-zero unused bits */
        {"Zm=vYg==", 4},     /* padding in the middle */
        {"", 1},
    };
    unsigned char out[8];
    struct shoal_err err;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        shoal_err_clear(&err);
        assert_int_equal(shoal_b64_decode_exact(bad[i].s, out, bad[i].want,
                                                "key", &err), -1);
        assert_int_equal(err.code, SHOAL_EINVAL);
        assert_non_null(strstr(err.msg, "'key'"));
    }
    assert_int_equal(shoal_b64_decode_exact(NULL, out, 4, "key", NULL), -1);
    assert_int_equal(shoal_b64_decode_exact("Zm9vYg==", out, 4, "key", NULL), 0);
    assert_memory_equal(out, "foob", 4);
}

static void test_hex(void **state)
{
    unsigned char in[4] = {0x00, 0xab, 0x1f, 0xff};
    unsigned char out[4];
    char s[9];
    struct shoal_err err;

    (void)state;
    shoal_hex_encode(in, 4, s);
    assert_string_equal(s, "00ab1fff");
    assert_int_equal(shoal_hex_decode_exact(s, out, 4, "hash", NULL), 0);
    assert_memory_equal(in, out, 4);
    assert_int_equal(shoal_hex_decode_exact("00AB1FFF", out, 4, "hash", &err), -1);
    assert_int_equal(err.code, SHOAL_EINVAL);
    assert_non_null(strstr(err.msg, "'hash'"));
    assert_int_equal(shoal_hex_decode_exact("00aB1fff", out, 4, "h", NULL), -1);
    assert_int_equal(shoal_hex_decode_exact("00ab1ff", out, 4, "h", NULL), -1);
    assert_int_equal(shoal_hex_decode_exact("00ab1fff00", out, 4, "h", NULL), -1);
    assert_int_equal(shoal_hex_decode_exact("00ab1fgf", out, 4, "h", NULL), -1);
    assert_int_equal(shoal_hex_decode_exact("00ab1ff ", out, 4, "h", NULL), -1);
    assert_int_equal(shoal_hex_decode_exact(NULL, out, 4, "h", NULL), -1);
}

static void test_time_format(void **state)
{
    char s[32];

    (void)state;
    shoal_time_format(0, s);
    assert_string_equal(s, "1970-01-01T00:00:00Z");
    shoal_time_format(1795290515, s);
    assert_string_equal(s, "2026-11-21T19:48:35Z");
    shoal_time_format(1709164800, s);
    assert_string_equal(s, "2024-02-29T00:00:00Z");
}

static void test_time_parse_round_trip(void **state)
{
    time_t t;
    time_t back;
    char s[32];

    (void)state;
    for (t = 0; t < 4102444800; t += 86400 * 37 + 3671) {
        shoal_time_format(t, s);
        assert_int_equal(shoal_time_parse(s, &back, NULL), 0);
        assert_int_equal(back, t);
    }
}

static void test_time_parse_offsets(void **state)
{
    static const char *const same[] = {
        "2026-11-21T19:48:35Z",
        "2026-11-21T19:48:35z",
        "2026-11-21t19:48:35Z",
        "2026-11-21T19:48:35+00:00",
        "2026-11-21T19:48:35-00:00",
        "2026-11-21T21:48:35+02:00",
        "2026-11-21T14:18:35-05:30",
        "2026-11-22T01:18:35+05:30",
        "2026-11-21T19:48:35.999Z",
        "2026-11-21T19:48:35.123456789+00:00",
    };
    time_t want;
    time_t t;
    size_t i;

    (void)state;
    assert_int_equal(shoal_time_parse(same[0], &want, NULL), 0);
    assert_int_equal(want, 1795290515);
    for (i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        t = 0;
        assert_int_equal(shoal_time_parse(same[i], &t, NULL), 0);
        assert_int_equal(t, want);
    }
    assert_int_equal(shoal_time_parse("2024-02-29T00:00:00Z", &t, NULL), 0);
    assert_int_equal(t, 1709164800);
}

static void test_time_parse_bad(void **state)
{
    static const char *const bad[] = {
        "2026-11-21T19:48:35",          /* no zone */
        "2026-11-21 19:48:35Z",         /* space separator */
        "2026-11-21",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2023-02-29T00:00:00Z",         /* not a leap year */
        "2026-11-21T24:00:00Z",
        "2026-11-21T19:60:00Z",
        "2026-11-21T19:48:35+2:00",
        "2026-11-21T19:48:35+02",
        "2026-11-21T19:48:35+24:00",
        "2026-11-21T19:48:35.Z",
        "2026-11-21T19:48:35Zjunk",
        "2026-11-21T19:48:35Z ",
        " 2026-11-21T19:48:35Z",
        "26-11-21T19:48:35Z",
        "",
    };
    struct shoal_err err;
    time_t t;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        shoal_err_clear(&err);
        assert_int_equal(shoal_time_parse(bad[i], &t, &err), -1);
        assert_int_equal(err.code, SHOAL_EINVAL);
    }
}

static void test_clocks(void **state)
{
    double a = shoal_mono();
    double now = shoal_now();

    (void)state;
    assert_true(shoal_mono() >= a);
    assert_true(now > 1.7e9);
    assert_true(now - (double)time(NULL) < 2.0);
}

static void test_json_fields(void **state)
{
    json_t *o = json_pack("{s:s,s:I,s:b,s:[i],s:s,s:n,s:f}", "name", "x",
                          "n", (json_int_t)42, "ok", 1, "list", 1,
                          "id", "0F8FAD5B-D9CB-469F-A165-70867728950E",
                          "nothing", "real", 1.5);
    struct shoal_err err;
    const char *s;
    json_int_t n;
    json_t *a;
    int b;
    char id[37];

    (void)state;
    assert_non_null(o);
    assert_int_equal(shoal_json_str(o, "name", &s, NULL), 0);
    assert_string_equal(s, "x");
    assert_int_equal(shoal_json_str(o, "missing", &s, &err), -1);
    assert_int_equal(err.code, SHOAL_EINVAL);
    assert_non_null(strstr(err.msg, "'missing'"));
    assert_int_equal(shoal_json_str(o, "n", &s, &err), -1);
    assert_non_null(strstr(err.msg, "'n'"));
    assert_int_equal(shoal_json_str_opt(o, "missing", &s, NULL), 0);
    assert_null(s);
    assert_int_equal(shoal_json_str_opt(o, "nothing", &s, NULL), 0);
    assert_null(s);
    assert_int_equal(shoal_json_str_opt(o, "n", &s, NULL), -1);
    assert_int_equal(shoal_json_int(o, "n", &n, NULL), 0);
    assert_int_equal(n, 42);
    assert_int_equal(shoal_json_int(o, "real", &n, &err), -1);
    assert_non_null(strstr(err.msg, "'real'"));
    assert_int_equal(shoal_json_int(o, "name", &n, NULL), -1);
    assert_int_equal(shoal_json_bool(o, "ok", &b, NULL), 0);
    assert_int_equal(b, 1);
    assert_int_equal(shoal_json_bool(o, "n", &b, NULL), -1);
    assert_int_equal(shoal_json_array(o, "list", &a, NULL), 0);
    assert_int_equal(json_array_size(a), 1);
    assert_int_equal(shoal_json_array(o, "name", &a, NULL), -1);
    assert_int_equal(shoal_json_uuid(o, "id", id, NULL), 0);
    assert_string_equal(id, GOOD_UUID);
    assert_int_equal(shoal_json_uuid(o, "name", id, &err), -1);
    assert_non_null(strstr(err.msg, "'name'"));
    json_decref(o);
    /* Not an object at all. */
    a = json_array();
    assert_int_equal(shoal_json_str(a, "x", &s, &err), -1);
    assert_int_equal(err.code, SHOAL_EINVAL);
    json_decref(a);
}

static void test_json_only_and_dump(void **state)
{
    static const char *const allowed[] = {"user_id", "public_key", NULL};
    json_t *o = json_pack("{s:s}", "user_id", "u");
    struct shoal_err err;
    char *text;

    (void)state;
    assert_non_null(o);
    assert_int_equal(shoal_json_only(o, allowed, NULL), 0);
    assert_int_equal(json_object_set_new(o, "extra", json_true()), 0);
    assert_int_equal(shoal_json_only(o, allowed, &err), -1);
    assert_int_equal(err.code, SHOAL_EINVAL);
    assert_non_null(strstr(err.msg, "'extra'"));
    json_object_del(o, "extra");
    text = shoal_json_dump(o);
    assert_string_equal(text, "{\"user_id\":\"u\"}");
    free(text);
    json_decref(o);
    o = json_string("s");
    text = shoal_json_dump(o);
    assert_string_equal(text, "\"s\"");
    free(text);
    json_decref(o);
}

static char tmpdir[64];

static int make_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/shoal-test-util-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int remove_tmpdir(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_file_write_read(void **state)
{
    char path[256];
    char *text = NULL;
    size_t len = 0;
    struct stat st;
    struct shoal_err err;
    DIR *d;
    struct dirent *e;
    int entries = 0;

    (void)state;
    snprintf(path, sizeof(path), "%s/a/b/c.txt", tmpdir);
    assert_int_equal(shoal_file_write_atomic(path, "hello", 5, 0640, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(shoal_file_write_atomic(path, "bye\n", 4, 0600, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(shoal_file_read(path, 100, &text, &len, &err), 0);
    assert_int_equal(len, 4);
    assert_string_equal(text, "bye\n");
    free(text);
    /* No temporary file is left beside it. */
    snprintf(path, sizeof(path), "%s/a/b", tmpdir);
    d = opendir(path);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            entries++;
    closedir(d);
    assert_int_equal(entries, 1);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

static void test_file_read_errors(void **state)
{
    char path[256];
    char *text = NULL;
    struct shoal_err err;

    (void)state;
    snprintf(path, sizeof(path), "%s/absent", tmpdir);
    assert_int_equal(shoal_file_read(path, 100, &text, NULL, &err), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(err.code, SHOAL_EIO);
    assert_non_null(strstr(err.msg, path));
    snprintf(path, sizeof(path), "%s/big", tmpdir);
    assert_int_equal(shoal_file_write_atomic(path, "0123456789", 10, 0600, NULL), 0);
    assert_int_equal(shoal_file_read(path, 9, &text, NULL, &err), -1);
    assert_int_equal(errno, EFBIG);
    assert_int_equal(shoal_file_read(path, 10, &text, NULL, &err), 0);
    assert_string_equal(text, "0123456789");
    free(text);
}

static void test_mkdir_p(void **state)
{
    char path[256];
    struct stat st;
    struct shoal_err err;

    (void)state;
    snprintf(path, sizeof(path), "%s/m/n//o/", tmpdir);
    assert_int_equal(shoal_mkdir_p(path, 0750, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(shoal_mkdir_p(path, 0750, &err), 0);   /* exists */
    snprintf(path, sizeof(path), "%s/file", tmpdir);
    assert_int_equal(shoal_file_write_atomic(path, "x", 1, 0600, NULL), 0);
    snprintf(path, sizeof(path), "%s/file/sub", tmpdir);
    assert_int_equal(shoal_mkdir_p(path, 0700, &err), -1);
    assert_int_equal(err.code, SHOAL_EIO);
    /* A file where the atomic write wants a folder. */
    snprintf(path, sizeof(path), "%s/file/x.txt", tmpdir);
    assert_int_equal(shoal_file_write_atomic(path, "x", 1, 0600, &err), -1);
}

static void test_write_all(void **state)
{
    int fds[2];
    char buf[6] = {0};

    (void)state;
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(shoal_write_all(fds[1], "hello", 5), 0);
    assert_int_equal(read(fds[0], buf, 5), 5);
    assert_string_equal(buf, "hello");
    close(fds[0]);
    close(fds[1]);
    assert_int_equal(shoal_write_all(fds[1], "x", 1), -1);
    assert_int_equal(errno, EBADF);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid_valid),
        cmocka_unit_test(test_uuid_not_canonical),
        cmocka_unit_test(test_uuid_parse_format),
        cmocka_unit_test(test_uuid_v4),
        cmocka_unit_test(test_b64_encode_vectors),
        cmocka_unit_test(test_b64_round_trip),
        cmocka_unit_test(test_b64_bad),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_time_parse_round_trip),
        cmocka_unit_test(test_time_parse_offsets),
        cmocka_unit_test(test_time_parse_bad),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_json_fields),
        cmocka_unit_test(test_json_only_and_dump),
        cmocka_unit_test(test_file_write_read),
        cmocka_unit_test(test_file_read_errors),
        cmocka_unit_test(test_mkdir_p),
        cmocka_unit_test(test_write_all),
    };

    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
