/*
 * opts.c - the options of a command: --name VALUE, --name=VALUE, --switch,
 * and one-letter ones: -j VALUE, -jVALUE, -f; and picking a subcommand.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "peer.h"

int pr_usage_err(struct shoal_err *err, const char *fmt, ...)
{
    va_list ap;

    if (err) {
        err->code = SHOAL_EINVAL;
        err->status = 0;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return PR_USAGE;
}

static const struct pr_opt *find_opt(const struct pr_opt *opts,
                                     const char *name, size_t len)
{
    for (; opts && opts->name; opts++)
        if (strlen(opts->name) == len && strncmp(opts->name, name, len) == 0)
            return opts;
    return NULL;
}

int pr_opts_parse(const struct pr_opt *opts, int argc, char **argv,
                  struct shoal_err *err)
{
    int n = 0;
    int i;

    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const struct pr_opt *o;
        const char *eq;
        size_t len;

        if (strcmp(arg, "--") == 0) {
            for (i++; i < argc; i++)
                argv[++n] = argv[i];
            break;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            argv[++n] = argv[i];
            continue;
        }
        if (arg[1] != '-') {
            /* a one-letter option: "-j 4", "-j4", "-f" */
            o = find_opt(opts, arg + 1, 1);
            if (!o)
                return pr_usage_err(err, "unknown option '%s' of '%s'", arg,
                                    argv[0]);
            if (o->flag) {
                if (arg[2])
                    return pr_usage_err(err, "option '-%s' takes no value",
                                        o->name);
                *o->flag = 1;
            } else if (arg[2]) {
                *o->value = arg + 2;
            } else if (i + 1 < argc) {
                *o->value = argv[++i];
            } else {
                return pr_usage_err(err, "option '-%s' needs a value",
                                    o->name);
            }
            continue;
        }
        eq = strchr(arg + 2, '=');
        len = eq ? (size_t)(eq - (arg + 2)) : strlen(arg + 2);
        o = find_opt(opts, arg + 2, len);
        if (!o)
            return pr_usage_err(err, "unknown option '%.*s' of '%s'",
                                (int)len + 2, arg, argv[0]);
        if (o->flag) {
            if (eq)
                return pr_usage_err(err, "option '--%s' takes no value",
                                    o->name);
            *o->flag = 1;
        } else if (eq) {
            *o->value = eq + 1;
        } else if (i + 1 < argc) {
            *o->value = argv[++i];
        } else {
            return pr_usage_err(err, "option '--%s' needs a value", o->name);
        }
    }
    return n;
}

int pr_opts_none(int argc, char **argv, struct shoal_err *err)
{
    int n = pr_opts_parse(NULL, argc, argv, err);

    if (n < 0)
        return n;
    if (n > 0)
        return pr_usage_err(err, "'%s' takes no arguments (got '%s')",
                            argv[0], argv[1]);
    return 0;
}

int pr_subcmd_run(struct pr_ctx *ctx, const struct pr_subcmd *table,
                  int argc, char **argv, struct shoal_err *err)
{
    const struct pr_subcmd *t;
    char names[256];
    size_t len = 0;
    int n = pr_opts_parse(NULL, argc, argv, err);

    if (n < 0)
        return n;
    if (n > 0) {
        for (t = table; t->name; t++)
            if (strcmp(argv[1], t->name) == 0)
                return t->fn(ctx, n + 1, argv, err);
        return pr_usage_err(err, "unknown subcommand '%s %s'", argv[0],
                            argv[1]);
    }
    /* "create, add, rm, ls or delete" */
    names[0] = '\0';
    for (t = table; t->name && len < sizeof(names); t++)
        len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s",
                                t == table ? "" : t[1].name ? ", " : " or ",
                                t->name);
    return pr_usage_err(err, "'%s' needs a subcommand: %s", argv[0], names);
}
