/*
 * config.h - configuration from a file, the environment and flags.
 *
 * A program declares its keys in a table (name, default, help).  Values
 * come, lowest precedence first, from: the defaults, the configuration
 * file, the environment, the command-line flags.
 *
 *  - file: lines "key = value"; '#' starts a comment; blank lines ignored;
 *    surrounding whitespace trimmed; an unknown key is an error.  The file
 *    is named by the flag --config PATH, else by the environment variable
 *    <PREFIX>CONFIG, else no file is read.
 *  - environment: <PREFIX><KEY in upper case>, e.g. SHOAL_DATABASE_URL for
 *    the key "database_url" with prefix "SHOAL_".
 *  - flags: --key value or --key=value; '-' and '_' are the same in flag
 *    names (--database-url).  Arguments that are not flags of the table are
 *    left for the caller (shoal_config_load reports how many it used).
 */
#ifndef SHOAL_CONFIG_H
#define SHOAL_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include "err.h"

struct shoal_config_key {
    const char *name;   /* "database_url" */
    const char *def;    /* default value, or NULL for none */
    const char *help;   /* one line for --help and docs */
};

struct shoal_config;

/* A new configuration holding the defaults of the table (borrowed: it must
 * outlive the configuration). */
struct shoal_config *shoal_config_new(const struct shoal_config_key *keys,
                                      size_t nkeys, const char *env_prefix);
void shoal_config_free(struct shoal_config *cfg);

/* Apply file, environment and flags, in that order.  argv is not changed.
 * argv[0] is skipped.  Arguments that are not configuration flags are
 * copied, in order, to rest (an array of at least argc pointers, borrowed
 * from argv) and counted in *nrest.  "--" ends flag parsing: everything
 * after it goes to rest.
 * -1 with SHOAL_EINVAL on an unknown key in the file, a flag of the table
 * without a value, or an unreadable file. */
int shoal_config_load(struct shoal_config *cfg, int argc, char **argv,
                      char **rest, int *nrest, struct shoal_err *err);

/* Set one key (as a flag would).  -1 with SHOAL_EINVAL for unknown keys. */
int shoal_config_set(struct shoal_config *cfg, const char *key,
                     const char *value, struct shoal_err *err);

/* The value of key (borrowed), or NULL when unset and without default. */
const char *shoal_config_get(const struct shoal_config *cfg, const char *key);

/* Typed getters: -1 with SHOAL_EINVAL naming the key when the value does
 * not parse.  Integers accept an optional unit suffix for sizes (k, m, g,
 * KiB, MiB, GiB: powers of 1024) and durations (s, m, h, d) when the
 * corresponding getter is used. */
int shoal_config_long(const struct shoal_config *cfg, const char *key,
                      long long *out, struct shoal_err *err);
int shoal_config_size(const struct shoal_config *cfg, const char *key,
                      unsigned long long *out, struct shoal_err *err);
int shoal_config_seconds(const struct shoal_config *cfg, const char *key,
                         long long *out, struct shoal_err *err);
int shoal_config_bool(const struct shoal_config *cfg, const char *key,
                      int *out, struct shoal_err *err);

/* Print the table with defaults, for --help. */
void shoal_config_usage(const struct shoal_config *cfg, FILE *out);

#endif
