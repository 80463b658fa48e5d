/* Unit tests of api/config.c: defaults < file < environment < flags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "util.h"

#define PREFIX "SHOALTEST_"

static const struct shoal_config_key keys[] = {
    {"listen", "127.0.0.1:8080", "address to listen on"},
    {"database_url", NULL, "PostgreSQL connection"},
    {"log_level", "info", "lowest level logged"},
    {"threads", "2", "worker threads"},
    {"body_limit", "1MiB", "largest request body"},
    {"session_ttl", "24h", "session lifetime"},
    {"verbose", "no", "say more"},
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static char tmpdir[64];
static char conf_path[128];

static void clear_env(void)
{
    static const char *const vars[] = {
        PREFIX "LISTEN", PREFIX "DATABASE_URL", PREFIX "LOG_LEVEL",
        PREFIX "THREADS", PREFIX "BODY_LIMIT", PREFIX "SESSION_TTL",
        PREFIX "VERBOSE", PREFIX "CONFIG",
    };
    size_t i;

    for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
}

static int setup(void **state)
{
    (void)state;
    clear_env();
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/shoal-test-config-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(conf_path, sizeof(conf_path), "%s/broker.conf", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    clear_env();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_conf(const char *text)
{
    assert_int_equal(shoal_file_write_atomic(conf_path, text, strlen(text),
                                             0600, NULL), 0);
}

/* A configuration loaded from argv (NULL-terminated, argv[0] included). */
static int load(struct shoal_config **cfg, char **argv, char **rest,
                int *nrest, struct shoal_err *err)
{
    int argc = 0;

    while (argv[argc] != NULL)
        argc++;
    *cfg = shoal_config_new(keys, NKEYS, PREFIX);
    assert_non_null(*cfg);
    shoal_err_clear(err);
    return shoal_config_load(*cfg, argc, argv, rest, nrest, err);
}

static void test_defaults(void **state)
{
    char *argv[] = {"prog", NULL};
    struct shoal_config *cfg;
    struct shoal_err err;
    long long n;

    (void)state;
    clear_env();
    assert_int_equal(load(&cfg, argv, NULL, NULL, &err), 0);
    assert_string_equal(shoal_config_get(cfg, "listen"), "127.0.0.1:8080");
    assert_null(shoal_config_get(cfg, "database_url"));
    assert_null(shoal_config_get(cfg, "no_such_key"));
    assert_int_equal(shoal_config_long(cfg, "threads", &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_int_equal(shoal_config_long(cfg, "database_url", &n, &err), -1);
    assert_int_equal(err.code, SHOAL_EINVAL);
    assert_non_null(strstr(err.msg, "'database_url'"));
    shoal_config_free(cfg);
}

static void test_precedence(void **state)
{
    char *argv[] = {"prog", "--config", conf_path, "--log-level", "error", NULL};
    struct shoal_config *cfg;
    struct shoal_err err;

    (void)state;
    clear_env();
    write_conf("listen = 10.0.0.1:1\n"
               "database_url = from-file\n"
               "log_level = debug\n");
    assert_int_equal(setenv(PREFIX "DATABASE_URL", "from-env", 1), 0);
    assert_int_equal(setenv(PREFIX "LOG_LEVEL", "warn", 1), 0);
    assert_int_equal(load(&cfg, argv, NULL, NULL, &err), 0);
    assert_string_equal(shoal_config_get(cfg, "listen"), "10.0.0.1:1");
    assert_string_equal(shoal_config_get(cfg, "database_url"), "from-env");
    assert_string_equal(shoal_config_get(cfg, "log_level"), "error");
    assert_string_equal(shoal_config_get(cfg, "threads"), "2");
    shoal_config_free(cfg);
    clear_env();
}

static void test_config_file_from_env(void **state)
{
    char other[160];
    char flag[200];
    char *argv[] = {"prog", NULL};
    char *with_flag[] = {"prog", flag, NULL};
    struct shoal_config *cfg;
    struct shoal_err err;

    (void)state;
    clear_env();
    write_conf("threads = 7\n");
    assert_int_equal(setenv(PREFIX "CONFIG", conf_path, 1), 0);
    assert_int_equal(load(&cfg, argv, NULL, NULL, &err), 0);
    assert_string_equal(shoal_config_get(cfg, "threads"), "7");
    shoal_config_free(cfg);
    /* --config names another file and wins over the environment. */
    snprintf(other, sizeof(other), "%s/other.conf", tmpdir);
    assert_int_equal(shoal_file_write_atomic(other, "threads=9", 9, 0600, NULL), 0);
    snprintf(flag, sizeof(flag), "--config=%s", other);
    assert_int_equal(load(&cfg, with_flag, NULL, NULL, &err), 0);
    assert_string_equal(shoal_config_get(cfg, "threads"), "9");
    shoal_config_free(cfg);
    /* No file is read when neither names one. */
    clear_env();
    assert_int_equal(load(&cfg, argv, NULL, NULL, &err), 0);
    assert_string_equal(shoal_config_get(cfg, "threads"), "2");
    shoal_config_free(cfg);
}

static void test_file_syntax(void **state)
{
    char *argv[] = {"prog", "--config", conf_path, NULL};
    struct shoal_config *cfg;
    struct shoal_err err;

    (void)state;
    clear_env();
    write_conf("# broker settings\n"
               "\n"
               "   listen\t=   0.0.0.0:80   \r\n"
               "database_url = postgresql://u:p#w@db/x  # the database\n"
               "log-level = warn\n"
               "session_ttl =\n");
    assert_int_equal(load(&cfg, argv, NULL, NULL, &err), 0);
    assert_string_equal(shoal_config_get(cfg, "listen"), "0.0.0.0:80");
    assert_string_equal(shoal_config_get(cfg, "database_url"),
                        "postgresql://u:p#w@db/x");
    assert_string_equal(shoal_config_get(cfg, "log_level"), "warn");
    assert_string_equal(shoal_config_get(cfg, "session_ttl"), "");
    shoal_config_free(cfg);
}

static void test_file_errors(void **state)
{
    char *argv[] = {"prog", "--config", conf_path, NULL};
    char *absent[] = {"prog", "--config", "/nonexistent/shoal.conf", NULL};
    struct shoal_config *cfg;
    struct shoal_err err;

    (void)state;
    clear_env();
    write_conf("listen = x\nlisten_port = 80\n");
    assert_int_equal(load(&cfg, argv, NULL, NULL, &err), -1);
    assert_int_equal(err.code, SHOAL_EINVAL);
    assert_non_null(strstr(err.msg, "'listen_port'"));
    assert_non_null(strstr(err.msg, "line 2"));
    shoal_config_free(cfg);
    write_conf("listen 80\n");
    assert_int_equal(load(&cfg, argv, NULL, NULL, &err), -1);
    assert_int_equal(err.code, SHOAL_EINVAL);
    assert_non_null(strstr(err.msg, "line 1"));
    shoal_config_free(cfg);
    /* A NUL byte would hide the lines after it. */
    assert_int_equal(shoal_file_write_atomic(conf_path, "threads=3\n\0bogus=1\n",
                                             19, 0600, NULL), 0);
    assert_int_equal(load(&cfg, argv, NULL, NULL, &err), -1);
    assert_int_equal(err.code, SHOAL_EINVAL);
    shoal_config_free(cfg);
    assert_int_equal(load(&cfg, absent, NULL, NULL, &err), -1);
    assert_int_equal(err.code, SHOAL_EINVAL);
    assert_non_null(strstr(err.msg, "/nonexistent/shoal.conf"));
    shoal_config_free(cfg);
}

static void test_env_empty_is_unset(void **state)
{
    char *argv[] = {"prog", NULL};
    struct shoal_config *cfg;
    struct shoal_err err;

    (void)state;
    clear_env();
    assert_int_equal(setenv(PREFIX "LISTEN", "", 1), 0);
    assert_int_equal(setenv(PREFIX "THREADS", "5", 1), 0);
    assert_int_equal(load(&cfg, argv, NULL, NULL, &err), 0);
    assert_string_equal(shoal_config_get(cfg, "listen"), "127.0.0.1:8080");
    assert_string_equal(shoal_config_get(cfg, "threads"), "5");
    shoal_config_free(cfg);
    clear_env();
}

static void test_flags_and_rest(void **state)
{
    char *argv[] = {"prog", "register", "--database-url", "db1", "--json",
                    "--threads=4", "-v", "--LISTEN", "x", "--", "--listen",
                    "y", NULL};
    char *copy[13];
    char *rest[13];
    struct shoal_config *cfg;
    struct shoal_err err;
    int nrest = -1;

    (void)state;
    clear_env();
    memcpy(copy, argv, sizeof(copy));
    assert_int_equal(load(&cfg, argv, rest, &nrest, &err), 0);
    assert_memory_equal(copy, argv, sizeof(copy));      /* argv unchanged */
    assert_string_equal(shoal_config_get(cfg, "database_url"), "db1");
    assert_string_equal(shoal_config_get(cfg, "threads"), "4");
    assert_string_equal(shoal_config_get(cfg, "listen"), "127.0.0.1:8080");
    assert_int_equal(nrest, 7);
    assert_string_equal(rest[0], "register");
    assert_string_equal(rest[1], "--json");
    assert_string_equal(rest[2], "-v");
    assert_string_equal(rest[3], "--LISTEN");
    assert_string_equal(rest[4], "x");
    assert_string_equal(rest[5], "--listen");
    assert_string_equal(rest[6], "y");
    shoal_config_free(cfg);
}

static void test_flag_without_value(void **state)
{
    char *last[] = {"prog", "--threads", NULL};
    char *before_flag[] = {"prog", "--listen", "--threads", "3", NULL};
    char *cfg_last[] = {"prog", "--config", NULL};
    char *positional[] = {"prog", "extra", NULL};
    char *rest[4];
    struct shoal_config *cfg;
    struct shoal_err err;

    (void)state;
    clear_env();
    assert_int_equal(load(&cfg, last, rest, NULL, &err), -1);
    assert_int_equal(err.code, SHOAL_EINVAL);
    assert_non_null(strstr(err.msg, "'--threads'"));
    shoal_config_free(cfg);
    assert_int_equal(load(&cfg, before_flag, rest, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "'--listen'"));
    shoal_config_free(cfg);
    assert_int_equal(load(&cfg, cfg_last, rest, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "'--config'"));
    shoal_config_free(cfg);
    /* No rest array: a stray argument is an error. */
    assert_int_equal(load(&cfg, positional, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "'extra'"));
    shoal_config_free(cfg);
}

static void test_set_and_unknown(void **state)
{
    struct shoal_config *cfg = shoal_config_new(keys, NKEYS, PREFIX);
    struct shoal_err err;

    (void)state;
    assert_non_null(cfg);
    assert_int_equal(shoal_config_set(cfg, "threads", "8", NULL), 0);
    assert_string_equal(shoal_config_get(cfg, "threads"), "8");
    assert_int_equal(shoal_config_set(cfg, "threads", NULL, NULL), 0);
    assert_string_equal(shoal_config_get(cfg, "threads"), "2");
    assert_int_equal(shoal_config_set(cfg, "bogus", "1", &err), -1);
    assert_int_equal(err.code, SHOAL_EINVAL);
    assert_non_null(strstr(err.msg, "'bogus'"));
    shoal_config_free(cfg);
    shoal_config_free(NULL);
}

static void test_sizes(void **state)
{
    static const struct {
        const char *s;
        unsigned long long v;
    } good[] = {
        {"0", 0}, {"512", 512}, {"1k", 1024}, {"1K", 1024}, {"3KiB", 3072},
        {"2m", 2ULL << 20}, {"1MiB", 1ULL << 20}, {"5g", 5ULL << 30},
        {"20GiB", 20ULL << 30}, {"2t", 2ULL << 40},
    };
    static const char *const bad[] = {
        "", "1.5M", "-1", "1 MiB", " 1", "1x", "k", "1MB2",
        "18446744073709551616", "18014398509481984k",
    };
    struct shoal_config *cfg = shoal_config_new(keys, NKEYS, PREFIX);
    unsigned long long v;
    struct shoal_err err;
    size_t i;

    (void)state;
    assert_non_null(cfg);
    assert_int_equal(shoal_config_size(cfg, "body_limit", &v, NULL), 0);
    assert_int_equal(v, 1048576);
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(shoal_config_set(cfg, "body_limit", good[i].s, NULL), 0);
        v = 12345;
        assert_int_equal(shoal_config_size(cfg, "body_limit", &v, NULL), 0);
        assert_int_equal(v, good[i].v);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(shoal_config_set(cfg, "body_limit", bad[i], NULL), 0);
        assert_int_equal(shoal_config_size(cfg, "body_limit", &v, &err), -1);
        assert_int_equal(err.code, SHOAL_EINVAL);
        assert_non_null(strstr(err.msg, "'body_limit'"));
    }
    shoal_config_free(cfg);
}

static void test_seconds(void **state)
{
    static const struct {
        const char *s;
        long long v;
    } good[] = {
        {"0", 0}, {"30", 30}, {"30s", 30}, {"5m", 300}, {"24h", 86400},
        {"7d", 604800}, {"2H", 7200},
    };
    static const char *const bad[] = {"", "1w", "-5s", "5 s", "1.5h", "s",
                                      "99999999999999999999"};
    struct shoal_config *cfg = shoal_config_new(keys, NKEYS, PREFIX);
    struct shoal_err err;
    long long v;
    size_t i;

    (void)state;
    assert_non_null(cfg);
    assert_int_equal(shoal_config_seconds(cfg, "session_ttl", &v, NULL), 0);
    assert_int_equal(v, 86400);
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(shoal_config_set(cfg, "session_ttl", good[i].s, NULL), 0);
        v = -1;
        assert_int_equal(shoal_config_seconds(cfg, "session_ttl", &v, NULL), 0);
        assert_int_equal(v, good[i].v);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(shoal_config_set(cfg, "session_ttl", bad[i], NULL), 0);
        assert_int_equal(shoal_config_seconds(cfg, "session_ttl", &v, &err), -1);
        assert_non_null(strstr(err.msg, "'session_ttl'"));
    }
    shoal_config_free(cfg);
}

static void test_long_and_bool(void **state)
{
    static const char *const yes[] = {"true", "yes", "on", "1", "TRUE", "Yes"};
    static const char *const no[] = {"false", "no", "off", "0", "OFF"};
    static const char *const bad_bool[] = {"", "maybe", "2", "y", "truee"};
    static const char *const bad_long[] = {"", "abc", "12abc", " 12", "1k",
                                           "99999999999999999999"};
    struct shoal_config *cfg = shoal_config_new(keys, NKEYS, PREFIX);
    long long n;
    int b;
    size_t i;

    (void)state;
    assert_non_null(cfg);
    assert_int_equal(shoal_config_set(cfg, "threads", "-12", NULL), 0);
    assert_int_equal(shoal_config_long(cfg, "threads", &n, NULL), 0);
    assert_int_equal(n, -12);
    for (i = 0; i < sizeof(bad_long) / sizeof(bad_long[0]); i++) {
        assert_int_equal(shoal_config_set(cfg, "threads", bad_long[i], NULL), 0);
        assert_int_equal(shoal_config_long(cfg, "threads", &n, NULL), -1);
    }
    assert_int_equal(shoal_config_bool(cfg, "verbose", &b, NULL), 0);
    assert_int_equal(b, 0);
    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        assert_int_equal(shoal_config_set(cfg, "verbose", yes[i], NULL), 0);
        b = 0;
        assert_int_equal(shoal_config_bool(cfg, "verbose", &b, NULL), 0);
        assert_int_equal(b, 1);
    }
    for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        assert_int_equal(shoal_config_set(cfg, "verbose", no[i], NULL), 0);
        b = 1;
        assert_int_equal(shoal_config_bool(cfg, "verbose", &b, NULL), 0);
        assert_int_equal(b, 0);
    }
    for (i = 0; i < sizeof(bad_bool) / sizeof(bad_bool[0]); i++) {
        assert_int_equal(shoal_config_set(cfg, "verbose", bad_bool[i], NULL), 0);
        assert_int_equal(shoal_config_bool(cfg, "verbose", &b, NULL), -1);
    }
    shoal_config_free(cfg);
}

static void test_usage(void **state)
{
    struct shoal_config *cfg = shoal_config_new(keys, NKEYS, PREFIX);
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    (void)state;
    assert_non_null(cfg);
    f = open_memstream(&text, &len);
    assert_non_null(f);
    shoal_config_usage(cfg, f);
    assert_int_equal(fclose(f), 0);
    assert_non_null(strstr(text, "--database-url"));
    assert_non_null(strstr(text, "--body-limit"));
    assert_non_null(strstr(text, "1MiB"));
    assert_non_null(strstr(text, "PostgreSQL connection"));
    free(text);
    shoal_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_config_file_from_env),
        cmocka_unit_test(test_file_syntax),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_env_empty_is_unset),
        cmocka_unit_test(test_flags_and_rest),
        cmocka_unit_test(test_flag_without_value),
        cmocka_unit_test(test_set_and_unknown),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_seconds),
        cmocka_unit_test(test_long_and_bool),
        cmocka_unit_test(test_usage),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
