/*
 * cmd_trust.c - shoal trust add USER_ID | rm USER_ID | ls: the users this
 * user trusts (GET, then PUT /v1/users/{me}/trusted with the new list).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "peer.h"
#include "util.h"

/* The trusted list of the caller: *ans gets the answer (new reference),
 * *ids its "user_ids" array (borrowed from *ans). */
static int trusted_get(struct pr_ctx *ctx, json_t **ans, json_t **ids,
                       struct shoal_err *err)
{
    char path[80];

    snprintf(path, sizeof(path), "/v1/users/%s/trusted", ctx->id->user_id);
    if (pr_call(ctx, "GET", path, NULL, ans, err) < 0)
        return -1;
    if (shoal_json_array(*ans, "user_ids", ids, err) < 0) {
        json_decref(*ans);
        *ans = NULL;
        return pr_err_answer(err, "GET /v1/users/{id}/trusted");
    }
    return 0;
}

/* Replace the trusted list with ids (borrowed); *ans as trusted_get. */
static int trusted_put(struct pr_ctx *ctx, json_t *ids, json_t **ans,
                       struct shoal_err *err)
{
    char path[80];
    json_t *body;
    json_t *list;
    int rc;

    body = json_pack("{s:O}", "user_ids", ids);
    if (!body)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    snprintf(path, sizeof(path), "/v1/users/%s/trusted", ctx->id->user_id);
    rc = pr_call(ctx, "PUT", path, body, ans, err);
    json_decref(body);
    if (rc == 0 && shoal_json_array(*ans, "user_ids", &list, err) < 0) {
        json_decref(*ans);
        *ans = NULL;
        rc = pr_err_answer(err, "PUT /v1/users/{id}/trusted");
    }
    return rc;
}

/* Index of user id in ids, or -1. */
static int find_id(const json_t *ids, const char *user)
{
    const json_t *v;
    size_t i;

    json_array_foreach(ids, i, v) {
        const char *s = json_string_value(v);
        if (s && strcasecmp(s, user) == 0)
            return (int)i;
    }
    return -1;
}

/* Print the answer: JSON as it is, or "<line> <user>". */
static int print_result(const struct pr_ctx *ctx, const json_t *ans,
                        const char *line, const char *user,
                        struct shoal_err *err)
{
    if (ctx->json)
        return pr_json_print(ans, err);
    if (printf("%s %s\n", line, user) < 0)
        return shoal_err_set(err, SHOAL_EIO, "cannot write to stdout");
    return 0;
}

/* The USER_ID argument of add and rm, in lowercase, into user. */
static int user_arg(int argc, char **argv, char user[37],
                    struct shoal_err *err)
{
    if (argc < 3)
        return pr_usage_err(err, "'trust %s' needs a USER_ID", argv[1]);
    if (argc > 3)
        return pr_usage_err(err, "unexpected argument '%s'", argv[3]);
    if (shoal_uuid_normalize(argv[2], user, "USER_ID", NULL) < 0)
        return pr_usage_err(err, "USER_ID '%s' is not a UUID", argv[2]);
    return 0;
}

static int trust_add(struct pr_ctx *ctx, int argc, char **argv,
                     struct shoal_err *err)
{
    json_t *ans = NULL;
    json_t *put = NULL;
    json_t *ids;
    char user[37];
    int rc;

    rc = user_arg(argc, argv, user, err);
    if (rc < 0)
        return rc;
    if (trusted_get(ctx, &ans, &ids, err) < 0)
        return -1;
    if (find_id(ids, user) >= 0) {
        rc = print_result(ctx, ans, "already trusting user", user, err);
        goto out;
    }
    rc = -1;
    if (json_array_append_new(ids, json_string(user)) < 0) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    if (trusted_put(ctx, ids, &put, err) < 0)
        goto out;
    rc = print_result(ctx, put, "trusting user", user, err);
out:
    json_decref(put);
    json_decref(ans);
    return rc;
}

static int trust_rm(struct pr_ctx *ctx, int argc, char **argv,
                    struct shoal_err *err)
{
    json_t *ans = NULL;
    json_t *put = NULL;
    json_t *ids;
    char user[37];
    int i;
    int rc;

    rc = user_arg(argc, argv, user, err);
    if (rc < 0)
        return rc;
    if (trusted_get(ctx, &ans, &ids, err) < 0)
        return -1;
    rc = -1;
    i = find_id(ids, user);
    if (i < 0) {
        shoal_err_set(err, SHOAL_ENOTFOUND, "user '%s' is not trusted", user);
        goto out;
    }
    json_array_remove(ids, (size_t)i);
    if (trusted_put(ctx, ids, &put, err) < 0)
        goto out;
    rc = print_result(ctx, put, "no longer trusting user", user, err);
out:
    json_decref(put);
    json_decref(ans);
    return rc;
}

static int trust_ls(struct pr_ctx *ctx, int argc, char **argv,
                    struct shoal_err *err)
{
    json_t *ans = NULL;
    json_t *ids;
    json_t *v;
    size_t i;
    int rc = 0;

    if (argc > 2)
        return pr_usage_err(err, "unexpected argument '%s'", argv[2]);
    if (trusted_get(ctx, &ans, &ids, err) < 0)
        return -1;
    if (ctx->json) {
        rc = pr_json_print(ans, err);
    } else {
        json_array_foreach(ids, i, v) {
            const char *s = json_string_value(v);
            if (s && printf("%s\n", s) < 0) {
                rc = shoal_err_set(err, SHOAL_EIO, "cannot write to stdout");
                break;
            }
        }
    }
    json_decref(ans);
    return rc;
}

static const struct {
    const char *name;
    pr_cmd_fn fn;
} subcommands[] = {
    { "add", trust_add },
    { "rm", trust_rm },
    { "ls", trust_ls },
};

int pr_cmd_trust(struct pr_ctx *ctx, int argc, char **argv,
                 struct shoal_err *err)
{
    size_t i;
    int n;

    n = pr_opts_parse(NULL, argc, argv, err);
    if (n < 0)
        return n;
    if (n == 0)
        return pr_usage_err(err, "'trust' needs a subcommand: add, rm or ls");
    for (i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].fn(ctx, n + 1, argv, err);
    return pr_usage_err(err, "unknown subcommand 'trust %s'", argv[1]);
}
