/*
 * config.c - configuration: defaults < file < environment < flags.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "util.h"

#define CONFIG_FILE_MAX (1024 * 1024)

struct shoal_config {
    const struct shoal_config_key *keys;   /* borrowed */
    size_t nkeys;
    char *prefix;
    char **values;                         /* NULL: the default applies */
};

struct shoal_config *shoal_config_new(const struct shoal_config_key *keys,
                                      size_t nkeys, const char *env_prefix)
{
    struct shoal_config *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL)
        return NULL;
    cfg->keys = keys;
    cfg->nkeys = nkeys;
    cfg->prefix = strdup(env_prefix != NULL ? env_prefix : "");
    cfg->values = calloc(nkeys > 0 ? nkeys : 1, sizeof(char *));
    if (cfg->prefix == NULL || cfg->values == NULL) {
        shoal_config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* Values may be secrets (admin_token, a database password): wiped. */
static void free_value(char *v)
{
    if (v == NULL)
        return;
    explicit_bzero(v, strlen(v));
    free(v);
}

void shoal_config_free(struct shoal_config *cfg)
{
    size_t i;

    if (cfg == NULL)
        return;
    for (i = 0; cfg->values != NULL && i < cfg->nkeys; i++)
        free_value(cfg->values[i]);
    free(cfg->values);
    free(cfg->prefix);
    free(cfg);
}

/* 1 when name (its first len bytes) names key; '-' and '_' are equal. */
static int name_is(const char *name, size_t len, const char *key)
{
    size_t i;

    for (i = 0; i < len; i++) {
        char a = name[i] == '-' ? '_' : name[i];
        char b = key[i] == '-' ? '_' : key[i];

        if (b == '\0' || a != b)
            return 0;
    }
    return key[len] == '\0';
}

/* Index of the key named by name[0..len), or -1. */
static long find(const struct shoal_config *cfg, const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < cfg->nkeys; i++)
        if (name_is(name, len, cfg->keys[i].name))
            return (long)i;
    return -1;
}

static int set_at(struct shoal_config *cfg, size_t i, const char *value,
                  struct shoal_err *err)
{
    char *copy = NULL;

    if (value != NULL) {
        copy = strdup(value);
        if (copy == NULL)
            return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    }
    free_value(cfg->values[i]);
    cfg->values[i] = copy;
    return 0;
}

/* A NULL value unsets the key: its default applies again. */
int shoal_config_set(struct shoal_config *cfg, const char *key,
                     const char *value, struct shoal_err *err)
{
    long i = find(cfg, key, strlen(key));

    if (i < 0)
        return shoal_err_set(err, SHOAL_EINVAL, "unknown key '%s'", key);
    return set_at(cfg, (size_t)i, value, err);
}

const char *shoal_config_get(const struct shoal_config *cfg, const char *key)
{
    long i = find(cfg, key, strlen(key));

    if (i < 0)
        return NULL;
    if (cfg->values[i] != NULL)
        return cfg->values[i];
    return cfg->keys[i].def;
}

static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t' || *s == '\r')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        *--end = '\0';
    return s;
}

/* "key = value" lines.  A '#' at the start of a line or after a blank
 * starts a comment, so that values such as URLs may hold a '#'. */
static int load_file(struct shoal_config *cfg, const char *path,
                     struct shoal_err *err)
{
    char *text = NULL;
    char *line;
    char *next;
    size_t len = 0;
    int lineno = 0;
    int rc = -1;

    if (shoal_file_read(path, CONFIG_FILE_MAX, &text, &len, err) != 0)
        return shoal_err_set(err, SHOAL_EINVAL, "cannot read configuration "
                             "file '%s': %s", path, strerror(errno));
    if (strlen(text) != len) {
        shoal_err_set(err, SHOAL_EINVAL, "'%s' is not a text file", path);
        goto out;
    }
    for (line = text; line != NULL; line = next) {
        char *eq;
        char *p;
        char *key;
        long i;

        lineno++;
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        for (p = line; (p = strchr(p, '#')) != NULL; p++) {
            if (p == line || p[-1] == ' ' || p[-1] == '\t') {
                *p = '\0';
                break;
            }
        }
        line = trim(line);
        if (*line == '\0')
            continue;
        eq = strchr(line, '=');
        if (eq == NULL) {
            shoal_err_set(err, SHOAL_EINVAL, "'%s' line %d: expected "
                          "'key = value'", path, lineno);
            goto out;
        }
        *eq = '\0';
        key = trim(line);
        i = find(cfg, key, strlen(key));
        if (i < 0) {
            shoal_err_set(err, SHOAL_EINVAL, "'%s' line %d: unknown key '%s'",
                          path, lineno, key);
            goto out;
        }
        if (set_at(cfg, (size_t)i, trim(eq + 1), err) != 0)
            goto out;
    }
    rc = 0;
out:
    explicit_bzero(text, len);
    free(text);
    return rc;
}

/* <PREFIX><KEY> for every key; an empty variable counts as unset. */
static int load_env(struct shoal_config *cfg, struct shoal_err *err)
{
    size_t i;
    size_t plen = strlen(cfg->prefix);

    for (i = 0; i < cfg->nkeys; i++) {
        const char *name = cfg->keys[i].name;
        size_t klen = strlen(name);
        char *var = malloc(plen + klen + 1);
        const char *value;
        size_t j;

        if (var == NULL)
            return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        memcpy(var, cfg->prefix, plen);
        for (j = 0; j < klen; j++)
            var[plen + j] = name[j] == '-' ? '_' :
                (char)toupper((unsigned char)name[j]);
        var[plen + klen] = '\0';
        value = getenv(var);
        free(var);
        if (value != NULL && *value != '\0' &&
            set_at(cfg, i, value, err) != 0)
            return -1;
    }
    return 0;
}

/*
 * If argv[*k] is a flag this parser takes ("--config" or a table key),
 * point *name at its name (*nlen bytes) and *value at its value (advancing
 * *k past a separate value) and return 1; 0 when it is not one of ours;
 * -1 when it has no value.
 */
static int take_flag(const struct shoal_config *cfg, int argc, char **argv,
                     int *k, const char **name, size_t *nlen,
                     const char **value, struct shoal_err *err)
{
    const char *arg = argv[*k];
    const char *eq;

    if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
        return 0;
    *name = arg + 2;
    eq = strchr(*name, '=');
    *nlen = eq != NULL ? (size_t)(eq - *name) : strlen(*name);
    if (find(cfg, *name, *nlen) < 0 && !name_is(*name, *nlen, "config"))
        return 0;
    if (eq != NULL) {
        *value = eq + 1;
        return 1;
    }
    if (*k + 1 >= argc || strncmp(argv[*k + 1], "--", 2) == 0)
        return shoal_err_set(err, SHOAL_EINVAL, "flag '%s' needs a value", arg);
    *value = argv[++*k];
    return 1;
}

/* The file named by --config, else by <PREFIX>CONFIG, else NULL (*file).
 * -1 when a flag of the table lacks its value. */
static int find_file(const struct shoal_config *cfg, int argc, char **argv,
                     const char **file, struct shoal_err *err)
{
    const char *name;
    const char *value;
    size_t nlen;
    char *var;
    int k;
    int r;

    *file = NULL;
    for (k = 1; k < argc && strcmp(argv[k], "--") != 0; k++) {
        r = take_flag(cfg, argc, argv, &k, &name, &nlen, &value, err);
        if (r < 0)
            return -1;
        if (r == 1 && name_is(name, nlen, "config"))
            *file = value;
    }
    if (*file != NULL)
        return 0;
    if (asprintf(&var, "%sCONFIG", cfg->prefix) < 0)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    *file = getenv(var);
    free(var);
    if (*file != NULL && **file == '\0')
        *file = NULL;
    return 0;
}

static int add_rest(char **rest, int *n, char *arg, struct shoal_err *err)
{
    if (rest == NULL)
        return shoal_err_set(err, SHOAL_EINVAL, "unexpected argument '%s'", arg);
    rest[(*n)++] = arg;
    return 0;
}

int shoal_config_load(struct shoal_config *cfg, int argc, char **argv,
                      char **rest, int *nrest, struct shoal_err *err)
{
    const char *file;
    const char *name;
    const char *value;
    size_t nlen;
    long i;
    int n = 0;
    int k;
    int r;

    if (find_file(cfg, argc, argv, &file, err) != 0)
        return -1;
    if (file != NULL && load_file(cfg, file, err) != 0)
        return -1;
    if (load_env(cfg, err) != 0)
        return -1;
    for (k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--") == 0) {
            for (k++; k < argc; k++)
                if (add_rest(rest, &n, argv[k], err) != 0)
                    return -1;
            break;
        }
        r = take_flag(cfg, argc, argv, &k, &name, &nlen, &value, err);
        if (r < 0)
            return -1;
        if (r == 0) {
            if (add_rest(rest, &n, argv[k], err) != 0)
                return -1;
            continue;
        }
        /* "--config" outside the table only names the file. */
        i = find(cfg, name, nlen);
        if (i >= 0 && set_at(cfg, (size_t)i, value, err) != 0)
            return -1;
    }
    if (nrest != NULL)
        *nrest = n;
    return 0;
}

/* The value of key for a typed getter: -1 when unknown or unset. */
static int value_of(const struct shoal_config *cfg, const char *key,
                    const char **out, struct shoal_err *err)
{
    long i = find(cfg, key, strlen(key));

    if (i < 0)
        return shoal_err_set(err, SHOAL_EINVAL, "unknown key '%s'", key);
    *out = cfg->values[i] != NULL ? cfg->values[i] : cfg->keys[i].def;
    if (*out == NULL)
        return shoal_err_set(err, SHOAL_EINVAL, "'%s' is not set", key);
    return 0;
}

int shoal_config_long(const struct shoal_config *cfg, const char *key,
                      long long *out, struct shoal_err *err)
{
    const char *s;
    char *end;
    long long v;

    if (value_of(cfg, key, &s, err) != 0)
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || isspace((unsigned char)*s))
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'%s' must be an integer, not '%s'", key, s);
    *out = v;
    return 0;
}

struct unit {
    const char *suffix;
    unsigned long long mult;
};

/* Digits then one of units (case-insensitive; "" for none).  -1 on
 * anything else or on overflow. */
static int number_with_unit(const char *s, const struct unit *units,
                            unsigned long long *out)
{
    unsigned long long v = 0;
    const char *p = s;
    size_t i;

    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (ULLONG_MAX - (unsigned)(*p - '0')) / 10)
            return -1;
        v = v * 10 + (unsigned)(*p - '0');
    }
    for (i = 0; units[i].suffix != NULL; i++) {
        if (strcasecmp(p, units[i].suffix) != 0)
            continue;
        if (v != 0 && units[i].mult > ULLONG_MAX / v)
            return -1;
        *out = v * units[i].mult;
        return 0;
    }
    return -1;
}

int shoal_config_size(const struct shoal_config *cfg, const char *key,
                      unsigned long long *out, struct shoal_err *err)
{
    static const struct unit units[] = {
        {"", 1}, {"b", 1},
        {"k", 1ULL << 10}, {"kib", 1ULL << 10},
        {"m", 1ULL << 20}, {"mib", 1ULL << 20},
        {"g", 1ULL << 30}, {"gib", 1ULL << 30},
        {"t", 1ULL << 40}, {"tib", 1ULL << 40},
        {NULL, 0},
    };
    const char *s;

    if (value_of(cfg, key, &s, err) != 0)
        return -1;
    if (number_with_unit(s, units, out) != 0)
        return shoal_err_set(err, SHOAL_EINVAL, "'%s' must be a size such as "
                             "512k or 1MiB, not '%s'", key, s);
    return 0;
}

int shoal_config_seconds(const struct shoal_config *cfg, const char *key,
                         long long *out, struct shoal_err *err)
{
    static const struct unit units[] = {
        {"", 1}, {"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}, {NULL, 0},
    };
    unsigned long long v;
    const char *s;

    if (value_of(cfg, key, &s, err) != 0)
        return -1;
    if (number_with_unit(s, units, &v) != 0 || v > LLONG_MAX)
        return shoal_err_set(err, SHOAL_EINVAL, "'%s' must be a duration "
                             "such as 30s, 5m, 24h or 7d, not '%s'", key, s);
    *out = (long long)v;
    return 0;
}

int shoal_config_bool(const struct shoal_config *cfg, const char *key,
                      int *out, struct shoal_err *err)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    const char *s;
    size_t i;

    if (value_of(cfg, key, &s, err) != 0)
        return -1;
    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return shoal_err_set(err, SHOAL_EINVAL,
                         "'%s' must be true or false, not '%s'", key, s);
}

void shoal_config_usage(const struct shoal_config *cfg, FILE *out)
{
    size_t i;
    size_t j;

    for (i = 0; i < cfg->nkeys; i++) {
        const struct shoal_config_key *k = &cfg->keys[i];

        fputs("  --", out);
        for (j = 0; k->name[j] != '\0'; j++)
            fputc(k->name[j] == '_' ? '-' : k->name[j], out);
        fprintf(out, " VALUE\n      %s", k->help != NULL ? k->help : "");
        if (k->def != NULL)
            fprintf(out, " (default: %s)", k->def);
        fputc('\n', out);
    }
    if (find(cfg, "config", 6) < 0)
        fprintf(out, "  --config PATH\n      configuration file (also "
                "%sCONFIG)\n", cfg->prefix);
    fprintf(out, "Every key can also be set in the environment as %s<KEY>.\n",
            cfg->prefix);
}
