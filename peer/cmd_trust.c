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
    return pr_call_array(ctx, "GET", path, NULL, "user_ids",
                         "GET /v1/users/{id}/trusted", ans, ids, err);
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
    rc = pr_call_array(ctx, "PUT", path, body, "user_ids",
                       "PUT /v1/users/{id}/trusted", ans, &list, err);
    json_decref(body);
    return rc;
}

/* Print the answer: JSON as it is, or "<line> <user>". */
static int print_result(const struct pr_ctx *ctx, const json_t *ans,
                        const char *line, const char *user,
                        struct shoal_err *err)
{
    if (ctx->json)
        return pr_json_print(ans, err);
    return pr_printf(err, "%s %s\n", line, user);
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

/* add (remove 0) or rm (remove 1) USER_ID. */
static int trust_change(struct pr_ctx *ctx, int argc, char **argv,
                        int remove, struct shoal_err *err)
{
    json_t *ans = NULL;
    json_t *put = NULL;
    json_t *ids;
    char user[37];
    int changed;
    int rc;

    rc = user_arg(argc, argv, user, err);
    if (rc < 0)
        return rc;
    if (trusted_get(ctx, &ans, &ids, err) < 0)
        return -1;
    rc = -1;
    changed = pr_ids_edit(ids, user, remove);
    if (changed == 0 && !remove) {
        rc = print_result(ctx, ans, "already trusting user", user, err);
        goto out;
    }
    if (changed == 0) {
        shoal_err_set(err, SHOAL_ENOTFOUND, "user '%s' is not trusted", user);
        goto out;
    }
    if (changed < 0) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    if (trusted_put(ctx, ids, &put, err) < 0)
        goto out;
    rc = print_result(ctx, put, remove ? "no longer trusting user" :
                      "trusting user", user, err);
out:
    json_decref(put);
    json_decref(ans);
    return rc;
}

static int trust_add(struct pr_ctx *ctx, int argc, char **argv,
                     struct shoal_err *err)
{
    return trust_change(ctx, argc, argv, 0, err);
}

static int trust_rm(struct pr_ctx *ctx, int argc, char **argv,
                    struct shoal_err *err)
{
    return trust_change(ctx, argc, argv, 1, err);
}

/* One line of trust ls: the user id. */
static int trusted_row(const struct pr_ctx *ctx, const json_t *v,
                       struct shoal_err *err)
{
    const char *s = json_string_value(v);

    (void)ctx;
    return s ? pr_printf(err, "%s\n", s) : 0;
}

static int trust_ls(struct pr_ctx *ctx, int argc, char **argv,
                    struct shoal_err *err)
{
    json_t *ans = NULL;
    json_t *ids;
    int rc;

    if (argc > 2)
        return pr_usage_err(err, "unexpected argument '%s'", argv[2]);
    if (trusted_get(ctx, &ans, &ids, err) < 0)
        return -1;
    rc = pr_list_print(ctx, ans, ids, trusted_row, err);
    json_decref(ans);
    return rc;
}

static const struct pr_subcmd subcommands[] = {
    { "add", trust_add },
    { "rm", trust_rm },
    { "ls", trust_ls },
    { NULL, NULL },
};

int pr_cmd_trust(struct pr_ctx *ctx, int argc, char **argv,
                 struct shoal_err *err)
{
    return pr_subcmd_run(ctx, subcommands, argc, argv, err);
}
